//! SOQL tokenizer.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};

use super::{MALFORMED_QUERY, SoqlError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// A name or keyword, possibly dotted (`Contact.Name`).
    Ident(String),
    /// A quoted string: its value, and whether it contained the LIKE escapes `\%` / `\_`
    /// (kept in `like_raw` with the backslash).
    Str {
        value: String,
        like_raw: String,
    },
    Num(f64),
    DateTime(DateTime<Utc>),
    Date(NaiveDate),
    LParen,
    RParen,
    Comma,
    Op(CmpOp),
    Eof,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub start: usize,
    pub end: usize,
}

impl Token {
    pub fn text<'a>(&self, src: &'a str) -> &'a str {
        if self.tok == Tok::Eof {
            "<EOF>"
        } else {
            &src[self.start..self.end]
        }
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

pub fn tokenize(src: &str) -> Result<Vec<Token>, SoqlError> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = src.char_indices().collect();
    let mut i = 0;
    let end_of = |i: usize| chars.get(i).map(|c| c.0).unwrap_or(src.len());
    while i < chars.len() {
        let (pos, c) = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let single = match c {
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            ',' => Some(Tok::Comma),
            _ => None,
        };
        if let Some(t) = single {
            out.push(Token {
                tok: t,
                start: pos,
                end: pos + 1,
            });
            i += 1;
            continue;
        }
        let next = chars.get(i + 1).map(|c| c.1);
        match c {
            '=' => {
                out.push(Token {
                    tok: Tok::Op(CmpOp::Eq),
                    start: pos,
                    end: pos + 1,
                });
                i += 1;
                continue;
            }
            '!' if next == Some('=') => {
                out.push(Token {
                    tok: Tok::Op(CmpOp::Ne),
                    start: pos,
                    end: pos + 2,
                });
                i += 2;
                continue;
            }
            '<' => {
                let (op, n) = match next {
                    Some('=') => (CmpOp::Le, 2),
                    Some('>') => (CmpOp::Ne, 2),
                    _ => (CmpOp::Lt, 1),
                };
                out.push(Token {
                    tok: Tok::Op(op),
                    start: pos,
                    end: pos + n,
                });
                i += n;
                continue;
            }
            '>' => {
                let (op, n) = if next == Some('=') {
                    (CmpOp::Ge, 2)
                } else {
                    (CmpOp::Gt, 1)
                };
                out.push(Token {
                    tok: Tok::Op(op),
                    start: pos,
                    end: pos + n,
                });
                i += n;
                continue;
            }
            '\'' => {
                let (tok, ni) = lex_string(src, &chars, i)?;
                out.push(Token {
                    tok,
                    start: pos,
                    end: end_of(ni),
                });
                i = ni;
                continue;
            }
            _ => {}
        }
        if is_ident_start(c) {
            let mut j = i;
            while j < chars.len() && is_ident_char(chars[j].1) {
                j += 1;
            }
            let text = &src[pos..end_of(j)];
            out.push(Token {
                tok: Tok::Ident(text.to_string()),
                start: pos,
                end: end_of(j),
            });
            i = j;
            continue;
        }
        if c.is_ascii_digit() || (c == '-' && next.is_some_and(|n| n.is_ascii_digit())) {
            let mut j = i + 1;
            while j < chars.len()
                && (chars[j].1.is_ascii_alphanumeric()
                    || matches!(chars[j].1, ':' | '.' | '+' | '-'))
            {
                j += 1;
            }
            let text = &src[pos..end_of(j)];
            let tok = classify_literal(text).ok_or_else(|| {
                SoqlError::at(
                    src,
                    pos,
                    MALFORMED_QUERY,
                    format!("unexpected token: '{text}'"),
                )
            })?;
            out.push(Token {
                tok,
                start: pos,
                end: end_of(j),
            });
            i = j;
            continue;
        }
        return Err(SoqlError::at(
            src,
            pos,
            MALFORMED_QUERY,
            format!("no viable alternative at character '{c}'"),
        ));
    }
    out.push(Token {
        tok: Tok::Eof,
        start: src.len(),
        end: src.len(),
    });
    Ok(out)
}

fn lex_string(src: &str, chars: &[(usize, char)], open: usize) -> Result<(Tok, usize), SoqlError> {
    let mut value = String::new();
    let mut like_raw = String::new();
    let mut j = open + 1;
    while j < chars.len() {
        let c = chars[j].1;
        match c {
            '\'' => {
                return Ok((Tok::Str { value, like_raw }, j + 1));
            }
            '\\' => {
                let Some(&(_, e)) = chars.get(j + 1) else {
                    break;
                };
                let v = match e {
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    '"' => '"',
                    '\'' => '\'',
                    '\\' => '\\',
                    '%' | '_' => e,
                    _ => {
                        let lit: String = chars[open..chars.len().min(j + 2)]
                            .iter()
                            .map(|c| c.1)
                            .collect();
                        return Err(SoqlError::at(
                            src,
                            chars[open].0,
                            MALFORMED_QUERY,
                            format!(
                                "Invalid string literal {lit}. Illegal character sequence '\\{e}' in string literal."
                            ),
                        ));
                    }
                };
                value.push(v);
                if matches!(e, '%' | '_' | '\\') {
                    like_raw.push('\\');
                }
                like_raw.push(v);
                j += 2;
            }
            _ => {
                value.push(c);
                like_raw.push(c);
                j += 1;
            }
        }
    }
    Err(SoqlError::at(
        src,
        chars[open].0,
        MALFORMED_QUERY,
        "unterminated string literal (missing closing quote)",
    ))
}

fn digits(s: &str, n: usize) -> Option<u32> {
    if s.len() == n && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// Number, date (`2024-01-31`) or datetime (`2024-01-31T10:00:00[.SSS](Z|+hh:mm|-hh:mm|+hhmm)`).
fn classify_literal(text: &str) -> Option<Tok> {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    if !unsigned.is_empty()
        && unsigned.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && unsigned.matches('.').count() <= 1
        && !unsigned.starts_with('.')
        && !unsigned.ends_with('.')
    {
        return text.parse().ok().map(Tok::Num);
    }
    if text.starts_with('-') || text.len() < 10 {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(
        digits(&text[0..4], 4)? as i32,
        {
            (text.as_bytes()[4] == b'-').then_some(())?;
            digits(&text[5..7], 2)?
        },
        {
            (text.as_bytes()[7] == b'-').then_some(())?;
            digits(text.get(8..10)?, 2)?
        },
    )?;
    if text.len() == 10 {
        return Some(Tok::Date(date));
    }
    let rest = text.get(10..)?;
    let rest = rest.strip_prefix('T')?;
    let hms = rest.get(0..8)?;
    let b = hms.as_bytes();
    if b[2] != b':' || b[5] != b':' {
        return None;
    }
    let time = NaiveTime::from_hms_opt(
        digits(&hms[0..2], 2)?,
        digits(&hms[3..5], 2)?,
        digits(&hms[6..8], 2)?,
    )?;
    let mut rest = &rest[8..];
    let mut millis = 0u32;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 3 {
            return None; // microseconds are rejected, like Salesforce
        }
        let f: u32 = frac[..n].parse().ok()?;
        millis = f * 10u32.pow(3 - n as u32);
        rest = &frac[n..];
    }
    let offset_secs: i64 = if rest == "Z" {
        0
    } else {
        let sign = match rest.as_bytes().first()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let z = &rest[1..];
        let (h, m) = match z.len() {
            5 if z.as_bytes()[2] == b':' => (digits(&z[0..2], 2)?, digits(&z[3..5], 2)?),
            4 => (digits(&z[0..2], 2)?, digits(&z[2..4], 2)?),
            _ => return None,
        };
        if h > 23 || m > 59 {
            return None;
        }
        sign * (i64::from(h) * 3600 + i64::from(m) * 60)
    };
    let naive = NaiveDateTime::new(date, time) + chrono::Duration::milliseconds(i64::from(millis))
        - chrono::Duration::seconds(offset_secs);
    Some(Tok::DateTime(naive.and_utc()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::org::utc;

    fn dt(text: &str) -> Option<DateTime<Utc>> {
        match classify_literal(text) {
            Some(Tok::DateTime(d)) => Some(d),
            _ => None,
        }
    }

    #[test]
    fn datetime_literal_forms() {
        let t = utc(2024, 1, 1, 0, 0, 0);
        assert_eq!(dt("2024-01-01T00:00:00Z"), Some(t));
        assert_eq!(dt("2024-01-01T00:00:00.000Z"), Some(t));
        assert_eq!(
            dt("2024-01-01T00:00:00.5Z"),
            Some(t + chrono::Duration::milliseconds(500))
        );
        assert_eq!(dt("2024-01-01T01:00:00+01:00"), Some(t));
        assert_eq!(dt("2024-01-01T01:00:00.000+0100"), Some(t));
        assert_eq!(dt("2023-12-31T19:00:00-05:00"), Some(t));
        // Rejected: no zone, microseconds, bad values.
        assert_eq!(dt("2024-01-01T00:00:00"), None);
        assert_eq!(dt("2024-01-01T00:00:00.000001Z"), None);
        assert_eq!(dt("2024-13-01T00:00:00Z"), None);
        assert_eq!(dt("2024-01-01T25:00:00Z"), None);
        assert!(matches!(classify_literal("2024-01-31"), Some(Tok::Date(_))));
        assert!(matches!(classify_literal("42"), Some(Tok::Num(n)) if n == 42.0));
        assert!(matches!(classify_literal("-1.5"), Some(Tok::Num(n)) if n == -1.5));
    }

    #[test]
    fn strings_unescape() {
        let toks = tokenize(r"'it\'s a \\ \n test \%'").expect("lexes");
        assert_eq!(
            toks[0].tok,
            Tok::Str {
                value: "it's a \\ \n test %".into(),
                like_raw: "it's a \\\\ \n test \\%".into()
            }
        );
        assert!(tokenize(r"'bad \q'").is_err());
        assert!(tokenize("'open").is_err());
    }

    #[test]
    fn operators() {
        let toks = tokenize("a = b != c <> d < e <= f > g >= h").expect("lexes");
        let ops: Vec<CmpOp> = toks
            .iter()
            .filter_map(|t| match t.tok {
                Tok::Op(o) => Some(o),
                _ => None,
            })
            .collect();
        use CmpOp::*;
        assert_eq!(ops, vec![Eq, Ne, Ne, Lt, Le, Gt, Ge]);
    }
}
