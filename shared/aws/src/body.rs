//! A data point's stored body: its JSON, zstd-compressed, inline in the head item or split into
//! part items when it is too large for one.

use std::io::Write;

use anyhow::anyhow;
use casesync_core::ports::{StoreError, StoreResult};

use crate::error::corrupt;

/// A compressed body up to this size stays inline in the head item. DynamoDB's item limit is
/// 400 KB (409,600 bytes) counting attribute names and values; the rest of a head is < 1 KB.
pub(crate) const INLINE_LIMIT: usize = 350_000;
/// The body bytes per part item when a body is split.
pub(crate) const PART_SIZE: usize = 350_000;
const ZSTD_LEVEL: i32 = 3;

/// The data point's JSON (the contract shape), compressed as one zstd frame with a content
/// checksum: a body reassembled from the wrong or missing parts fails to decompress instead of
/// decoding to something else.
pub(crate) fn compress(json: &[u8]) -> StoreResult<Vec<u8>> {
    let fail = |e: std::io::Error| StoreError::Unexpected(anyhow!("compress data point: {e}"));
    let mut enc =
        zstd::stream::Encoder::new(Vec::with_capacity(json.len() / 4), ZSTD_LEVEL).map_err(fail)?;
    enc.include_checksum(true).map_err(fail)?;
    enc.include_contentsize(true).map_err(fail)?;
    enc.set_pledged_src_size(Some(json.len() as u64))
        .map_err(fail)?;
    enc.write_all(json).map_err(fail)?;
    enc.finish().map_err(fail)
}

/// The stored contract JSON, as it was written.
pub(crate) fn decompress_json(what: &str, bytes: &[u8]) -> StoreResult<Vec<u8>> {
    zstd::stream::decode_all(bytes)
        .map_err(|e| corrupt(what, format_args!("body does not decompress: {e}")))
}

/// The sort key of part `index` of part set `set` of a Case: `<case id>#<set>#<index>`. `#`
/// sorts before every character of a Case id, so a Case's parts sort right after its head and
/// before the next Case.
pub(crate) fn part_key(case_id: &str, set: &str, index: usize) -> String {
    format!("{case_id}#{set}#{index:04}")
}

/// A new part set id: unique per write attempt, so a writer never overwrites or deletes parts
/// that another writer's head refers to.
pub(crate) fn new_part_set() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_of_the_wrong_parts_fails_loudly() {
        let bytes = b"not a zstd frame".to_vec();
        assert!(decompress_json("x", &bytes).is_err());
    }

    #[test]
    fn part_keys_sort_between_their_case_and_the_next() {
        let head = "500xx000003DHb0AAG";
        let next = "500xx000003DHb1AAG";
        let k0 = part_key(head, "ab", 0);
        let k9 = part_key(head, "ab", 9);
        assert!(head < k0.as_str() && k0 < k9 && k9.as_str() < next);
        assert_eq!(k9, "500xx000003DHb0AAG#ab#0009");
    }
}
