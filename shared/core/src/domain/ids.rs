//! Salesforce record ids, parsed and normalised to their 18-character form.
//!
//! A 15-character id is case-sensitive; the 18-character form appends a 3-character checksum that
//! encodes the case of the first 15, so it survives case-insensitive systems. Every id that enters
//! casesync is parsed here: only `[0-9A-Za-z]` is accepted, which is also what keeps ids safe to
//! place inside a SOQL string literal.

use std::fmt;

use serde::{Deserialize, Serialize};

const CHECKSUM_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} id must be 15 or 18 characters, got {len}")]
    Length { kind: &'static str, len: usize },
    #[error("{kind} id may contain only letters and digits")]
    Charset { kind: &'static str },
    #[error("{kind} id must start with {prefix}, got {got:?}")]
    Prefix {
        kind: &'static str,
        prefix: &'static str,
        got: String,
    },
    #[error("{kind} id has an invalid checksum suffix")]
    Checksum { kind: &'static str },
}

/// The 3-character checksum of a 15-character id.
fn checksum(id15: &[u8]) -> [u8; 3] {
    let mut out = [0u8; 3];
    for (group, slot) in out.iter_mut().enumerate() {
        let mut bits = 0usize;
        for i in 0..5 {
            if id15[group * 5 + i].is_ascii_uppercase() {
                bits |= 1 << i;
            }
        }
        *slot = CHECKSUM_ALPHABET[bits];
    }
    out
}

/// Parse any Salesforce id to its canonical 18-character form.
///
/// An 18-character id whose letters were lower- or upper-cased by some other system is repaired
/// from its checksum; an 18-character id whose checksum cannot describe its first 15 characters
/// (a digit marked as upper case) is rejected.
fn canonical(kind: &'static str, raw: &str) -> Result<String, IdError> {
    let raw = raw.trim();
    if !raw.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(IdError::Charset { kind });
    }
    match raw.len() {
        15 => {
            let mut id = raw.as_bytes().to_vec();
            id.extend_from_slice(&checksum(raw.as_bytes()));
            Ok(String::from_utf8(id).expect("ascii alphanumerics are utf-8"))
        }
        18 => {
            let bytes = raw.as_bytes();
            let mut body = bytes[..15].to_vec();
            for group in 0..3 {
                let suffix = bytes[15 + group].to_ascii_uppercase();
                let bits = CHECKSUM_ALPHABET
                    .iter()
                    .position(|&c| c == suffix)
                    .ok_or(IdError::Checksum { kind })?;
                for i in 0..5 {
                    let c = &mut body[group * 5 + i];
                    let upper = bits & (1 << i) != 0;
                    if c.is_ascii_alphabetic() {
                        *c = if upper {
                            c.to_ascii_uppercase()
                        } else {
                            c.to_ascii_lowercase()
                        };
                    } else if upper {
                        return Err(IdError::Checksum { kind });
                    }
                }
            }
            let sum = checksum(&body);
            body.extend_from_slice(&sum);
            Ok(String::from_utf8(body).expect("ascii alphanumerics are utf-8"))
        }
        len => Err(IdError::Length { kind, len }),
    }
}

macro_rules! salesforce_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// Parse a 15- or 18-character id; the result is always the 18-character form.
            pub fn parse(raw: &str) -> Result<Self, IdError> {
                let id = canonical($kind, raw)?;
                if !id.starts_with($prefix) {
                    return Err(IdError::Prefix {
                        kind: $kind,
                        prefix: $prefix,
                        got: id.chars().take(3).collect(),
                    });
                }
                Ok(Self(id))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

salesforce_id!(
    /// The id of a `Case` record (key prefix `500`).
    CaseId,
    "Case",
    "500"
);
salesforce_id!(
    /// The id of a queue, which Salesforce stores as a `Group` of type `Queue` (key prefix `00G`).
    QueueId,
    "queue",
    "00G"
);
salesforce_id!(
    /// The id of a Salesforce org (`Organization`, key prefix `00D`): what change events name.
    OrgId,
    "org",
    "00D"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifteen_character_ids_gain_their_checksum() {
        // The worked example from Salesforce's documentation of the algorithm.
        let id = canonical("Contact", "003G000001SUbc4").unwrap();
        assert_eq!(id, "003G000001SUbc4IAD");
        let case = CaseId::parse("500xx000003DHb0").unwrap();
        assert_eq!(case.as_str().len(), 18);
        assert_eq!(&case.as_str()[..15], "500xx000003DHb0");
    }

    #[test]
    fn eighteen_character_ids_are_kept_and_their_case_is_repaired() {
        let canonical = CaseId::parse("500xx000003DHb0AAG").unwrap();
        assert_eq!(canonical.as_str(), "500xx000003DHb0AAG");
        assert_eq!(
            CaseId::parse(&canonical.as_str().to_ascii_lowercase()).unwrap(),
            canonical
        );
        assert_eq!(
            CaseId::parse(&canonical.as_str().to_ascii_uppercase()).unwrap(),
            canonical
        );
    }

    #[test]
    fn a_checksum_that_marks_a_digit_upper_case_is_rejected() {
        // 'Z' sets bit 0..4 of the first group; position 1 and 2 of "500xx" are digits.
        assert_eq!(
            CaseId::parse("500xx000003DHb0ZAG"),
            Err(IdError::Checksum { kind: "Case" })
        );
    }

    #[test]
    fn wrong_prefix_length_and_characters_are_rejected() {
        assert!(matches!(
            QueueId::parse("500xx000003DHb0AAG"),
            Err(IdError::Prefix { .. })
        ));
        assert!(matches!(
            QueueId::parse("00G123"),
            Err(IdError::Length { len: 6, .. })
        ));
        assert!(matches!(
            QueueId::parse("00Gxx000000AB'D"),
            Err(IdError::Charset { .. })
        ));
        assert!(matches!(
            QueueId::parse("00Gxx000000AB\\D"),
            Err(IdError::Charset { .. })
        ));
        assert!(matches!(
            QueueId::parse("00Gxx 000000ABD"),
            Err(IdError::Charset { .. })
        ));
    }

    #[test]
    fn ids_round_trip_through_serde() {
        let q = QueueId::parse("00Gxx000000ABCD").unwrap();
        let json = serde_json::to_string(&q).unwrap();
        assert_eq!(serde_json::from_str::<QueueId>(&json).unwrap(), q);
        assert!(serde_json::from_str::<QueueId>("\"00G'; DROP\"").is_err());
    }
}
