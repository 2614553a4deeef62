//! casesync core: imports closed Salesforce Cases with their email threads as data points.
//!
//! Follow one Case through the files: `salesforce::soql` builds the query, `salesforce::client`
//! fetches pages (and truncated email lists), `mapping` turns a Case record into a
//! [`data_point::DataPoint`], and `sync` writes pages through the [`ports`] and advances the
//! [`domain::Cursor`]. [`manage`] holds the use cases every shell (CLI, API, console) calls.
//! Nothing here knows about Lambda, SQLite or AWS: adapters implement the ports in
//! `casesync-local` and `casesync-aws`.

pub mod changes;
pub mod channel;
pub mod data_point;
pub mod diagnostics;
pub mod domain;
pub mod events;
pub mod manage;
pub mod mapping;
/// In-memory adapters for the core's own unit tests (and, with the `test-support` feature, for
/// other crates' tests of the core). Never used by a runtime.
#[cfg(any(test, feature = "test-support"))]
pub mod memory;
pub mod ports;
pub mod salesforce;
pub mod sync;

/// Serde for a `SecretString` that must be stored (never logged): a plain string on the wire.
pub mod secret_serde {
    use secrecy::{ExposeSecret, SecretString};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(s: &SecretString, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(s.expose_secret())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
        String::deserialize(d).map(SecretString::from)
    }
}
