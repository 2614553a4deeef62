//! Salesforce record ids: 15-character case-sensitive form, 18-character case-insensitive-safe
//! form with its 3-character checksum, and a generator of monotonically increasing ids.

use std::fmt;

/// Key prefixes of the objects the simulator knows.
pub mod prefix {
    pub const CASE: &str = "500";
    pub const EMAIL_MESSAGE: &str = "02s";
    pub const GROUP: &str = "00G";
    pub const USER: &str = "005";
    pub const CONTACT: &str = "003";
    pub const ORGANIZATION: &str = "00D";
    pub const QUERY_LOCATOR: &str = "01g";
}

const CHECKSUM_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
/// Base-62 digits in ASCII order, so a fixed-width base-62 counter sorts like the number.
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// An 18-character Salesforce id (always stored in its canonical 18-character form).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SfId([u8; 18]);

/// The 15-character case-sensitive form of an id: what comparisons use.
pub type IdKey = [u8; 15];

impl SfId {
    /// Builds the 18-character id from a 15-character case-sensitive id.
    pub fn from_key(key: &IdKey) -> SfId {
        let mut out = [0u8; 18];
        out[..15].copy_from_slice(key);
        for group in 0..3 {
            let mut bits = 0usize;
            for j in 0..5 {
                if key[group * 5 + j].is_ascii_uppercase() {
                    bits |= 1 << j;
                }
            }
            out[15 + group] = CHECKSUM_ALPHABET[bits];
        }
        SfId(out)
    }

    /// Parses a 15- or 18-character id. An 18-character id is case-insensitive: the checksum
    /// restores the case of the first 15 characters. Returns `None` for anything else.
    pub fn parse(s: &str) -> Option<SfId> {
        let b = s.as_bytes();
        if !b.iter().all(u8::is_ascii_alphanumeric) {
            return None;
        }
        match b.len() {
            15 => {
                let mut key = [0u8; 15];
                key.copy_from_slice(b);
                Some(SfId::from_key(&key))
            }
            18 => {
                let mut key = [0u8; 15];
                key.copy_from_slice(&b[..15]);
                for group in 0..3 {
                    let c = b[15 + group].to_ascii_uppercase();
                    let bits = CHECKSUM_ALPHABET.iter().position(|&x| x == c)?;
                    for j in 0..5 {
                        let ch = &mut key[group * 5 + j];
                        let upper = bits & (1 << j) != 0;
                        if ch.is_ascii_alphabetic() {
                            *ch = if upper {
                                ch.to_ascii_uppercase()
                            } else {
                                ch.to_ascii_lowercase()
                            };
                        } else if upper {
                            return None;
                        }
                    }
                }
                Some(SfId::from_key(&key))
            }
            _ => None,
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("SfId holds ASCII alphanumerics only")
    }

    /// The 15-character case-sensitive key.
    pub fn key(&self) -> IdKey {
        let mut k = [0u8; 15];
        k.copy_from_slice(&self.0[..15]);
        k
    }

    /// The 3-character key prefix (`500`, `02s`, ...).
    pub fn prefix(&self) -> &str {
        &self.as_str()[..3]
    }
}

impl fmt::Display for SfId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SfId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SfId({})", self.as_str())
    }
}

impl serde::Serialize for SfId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Normalises a 15/18-character id to its 15-character key.
pub fn key_of(s: &str) -> Option<IdKey> {
    SfId::parse(s).map(|id| id.key())
}

/// Generates ids `<prefix><pod:2><counter:10 base-62>`; the counter only grows, so ids of one
/// prefix sort (as 15-character keys, ASCII order) in creation order.
#[derive(Clone, Debug)]
pub struct IdGen {
    pod: [u8; 2],
    counters: Vec<(String, u64)>,
}

impl IdGen {
    pub fn new(pod: [u8; 2]) -> IdGen {
        IdGen {
            pod,
            counters: Vec::new(),
        }
    }

    /// The next id for `prefix`, `step` counter units after the previous one (`step >= 1`).
    pub fn next_with_step(&mut self, prefix: &str, step: u64) -> SfId {
        let step = step.max(1);
        let idx = match self.counters.iter().position(|(p, _)| p == prefix) {
            Some(i) => i,
            None => {
                // Start high enough that ids show a realistic mix of digits and letters.
                self.counters.push((prefix.to_string(), 3_000_000_000));
                self.counters.len() - 1
            }
        };
        self.counters[idx].1 += step;
        let n = self.counters[idx].1;
        make_id(prefix, self.pod, n)
    }

    pub fn next(&mut self, prefix: &str) -> SfId {
        self.next_with_step(prefix, 1)
    }
}

fn make_id(prefix: &str, pod: [u8; 2], mut n: u64) -> SfId {
    let mut key = [b'0'; 15];
    key[..3].copy_from_slice(&prefix.as_bytes()[..3]);
    key[3..5].copy_from_slice(&pod);
    for i in (5..15).rev() {
        key[i] = BASE62[(n % 62) as usize];
        n /= 62;
    }
    SfId::from_key(&key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_the_documented_example() {
        let id = SfId::parse("003G000001SUbc4").expect("valid 15-char id");
        assert_eq!(id.as_str(), "003G000001SUbc4IAD");
    }

    #[test]
    fn eighteen_char_ids_are_case_insensitive() {
        let id = SfId::parse("003g000001subc4iad").expect("valid 18-char id");
        assert_eq!(id.as_str(), "003G000001SUbc4IAD");
        assert_eq!(&id.key(), b"003G000001SUbc4");
    }

    #[test]
    fn invalid_ids_are_rejected() {
        assert!(SfId::parse("003G000001SUbc").is_none());
        assert!(SfId::parse("003G000001SUbc4IA!").is_none());
        assert!(SfId::parse("003G000001SUbc4I9D").is_none());
        assert!(SfId::parse("").is_none());
    }

    #[test]
    fn generated_ids_sort_in_creation_order() {
        let mut g = IdGen::new(*b"Dn");
        let mut prev = g.next(prefix::CASE);
        for i in 0..10_000u64 {
            let next = g.next_with_step(prefix::CASE, 1 + i % 7);
            assert!(next.key() > prev.key(), "{next} after {prev}");
            assert_eq!(SfId::parse(next.as_str()), Some(next));
            prev = next;
        }
    }
}
