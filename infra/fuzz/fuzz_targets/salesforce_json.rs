//! Anything Salesforce (or something pretending to be it) can send back must be decoded or
//! refused with a typed error, never a panic: query pages of Cases and of EmailMessages, what
//! becomes of each Case record, error bodies (JSON arrays or HTML), the limit header, datetimes
//! and HTML bodies.
#![no_main]

use casesync_core::domain::{ChannelName, ConnectionId, InstanceUrl};
use casesync_core::mapping::{MappingContext, html_to_text, map_case, parse_datetime};
use casesync_core::salesforce::SalesforceError;
use casesync_core::salesforce::limits::ApiUsage;
use casesync_core::salesforce::records::{CaseRecord, EmailRecord, decode_page};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ctx = MappingContext {
        connection_id: ConnectionId::parse("conn_0123456789abcdef0123456789abcdef").unwrap(),
        channel: ChannelName::parse("fuzz").unwrap(),
        instance_url: InstanceUrl::parse("https://acme.my.salesforce.com").unwrap(),
    };
    if let Ok((page, _errors)) = decode_page::<CaseRecord>(data) {
        let _ = page.next();
        for record in page.records {
            if let Ok(point) = map_case(&ctx, record) {
                // Whatever maps must serialise to the contract and hash.
                let _ = point.content_hash();
            }
        }
    }
    let _ = decode_page::<EmailRecord>(data);
    for status in [400, 401, 403, 414, 500, 502] {
        let _ = SalesforceError::from_response(status, data).to_string();
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ApiUsage::parse(text);
        let _ = parse_datetime(text);
        if text.len() < 64 * 1024 {
            let _ = html_to_text(text);
        }
    }
});
