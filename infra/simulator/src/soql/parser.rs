//! SOQL recursive-descent parser producing an unresolved AST (names + positions).

use chrono::{DateTime, NaiveDate, Utc};

use super::lexer::{CmpOp, Tok, Token, tokenize};
use super::{MALFORMED_QUERY, SoqlError};

#[derive(Clone, Debug, PartialEq)]
pub struct Name {
    pub text: String,
    pub pos: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Lit {
    Str { value: String, like_raw: String },
    Num(f64),
    Bool(bool),
    Null,
    DateTime(DateTime<Utc>),
    Date(NaiveDate),
}

#[derive(Clone, Debug, PartialEq)]
pub struct LitAt {
    pub lit: Lit,
    pub pos: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum SelItem {
    Field(Name),
    Count(usize),
    Sub(Box<QueryAst>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Cond {
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Not(Box<Cond>),
    Cmp {
        field: Name,
        op: CmpOp,
        lit: LitAt,
    },
    Like {
        field: Name,
        lit: LitAt,
    },
    In {
        field: Name,
        negated: bool,
        list: Vec<LitAt>,
    },
    SemiJoin {
        field: Name,
        negated: bool,
        sub: Box<QueryAst>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct OrderAst {
    pub field: Name,
    pub desc: bool,
    pub nulls_first: Option<bool>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct QueryAst {
    pub select: Vec<SelItem>,
    pub from: Name,
    pub where_: Option<Cond>,
    pub order: Vec<OrderAst>,
    pub limit: Option<u64>,
    pub pos: usize,
}

const KEYWORDS: &[&str] = &[
    "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "ASC", "DESC",
    "NULLS", "FIRST", "LAST", "LIMIT", "OFFSET", "HAVING", "WITH", "FOR", "USING", "TRUE", "FALSE",
    "NULL", "INCLUDES", "EXCLUDES",
];

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token>,
    i: usize,
}

pub fn parse(src: &str) -> Result<QueryAst, SoqlError> {
    let toks = tokenize(src)?;
    let mut p = Parser { src, toks, i: 0 };
    let q = p.query()?;
    p.expect_eof()?;
    Ok(q)
}

impl<'a> Parser<'a> {
    fn peek(&self) -> &Token {
        &self.toks[self.i.min(self.toks.len() - 1)]
    }
    fn peek_at(&self, k: usize) -> &Token {
        &self.toks[(self.i + k).min(self.toks.len() - 1)]
    }
    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if self.i < self.toks.len() - 1 {
            self.i += 1;
        }
        t
    }
    fn unexpected(&self) -> SoqlError {
        let t = self.peek();
        SoqlError::at(
            self.src,
            t.start,
            MALFORMED_QUERY,
            format!("unexpected token: '{}'", t.text(self.src)),
        )
    }
    fn is_kw(&self, kw: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
    }
    fn is_kw_at(&self, k: usize, kw: &str) -> bool {
        matches!(&self.peek_at(k).tok, Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
    }
    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.bump();
            true
        } else {
            false
        }
    }
    fn expect_kw(&mut self, kw: &str) -> Result<(), SoqlError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }
    fn expect(&mut self, tok: Tok) -> Result<(), SoqlError> {
        if self.peek().tok == tok {
            self.bump();
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }
    fn expect_eof(&self) -> Result<(), SoqlError> {
        if self.peek().tok == Tok::Eof {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }
    /// A field or object name (not a keyword).
    fn name(&mut self) -> Result<Name, SoqlError> {
        match &self.peek().tok {
            Tok::Ident(s)
                if !KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(s))
                    && !s.starts_with('.')
                    && !s.ends_with('.')
                    && !s.contains("..") =>
            {
                let name = Name {
                    text: s.clone(),
                    pos: self.peek().start,
                };
                self.bump();
                Ok(name)
            }
            _ => Err(self.unexpected()),
        }
    }

    fn query(&mut self) -> Result<QueryAst, SoqlError> {
        let pos = self.peek().start;
        self.expect_kw("SELECT")?;
        let mut select = vec![self.sel_item()?];
        while self.peek().tok == Tok::Comma {
            self.bump();
            select.push(self.sel_item()?);
        }
        self.expect_kw("FROM")?;
        let from = self.name()?;
        let where_ = if self.eat_kw("WHERE") {
            Some(self.cond()?)
        } else {
            None
        };
        let mut order = Vec::new();
        if self.is_kw("ORDER") {
            self.bump();
            self.expect_kw("BY")?;
            loop {
                let field = self.name()?;
                let desc = if self.eat_kw("DESC") {
                    true
                } else {
                    self.eat_kw("ASC");
                    false
                };
                let nulls_first = if self.eat_kw("NULLS") {
                    if self.eat_kw("FIRST") {
                        Some(true)
                    } else {
                        self.expect_kw("LAST")?;
                        Some(false)
                    }
                } else {
                    None
                };
                order.push(OrderAst {
                    field,
                    desc,
                    nulls_first,
                });
                if self.peek().tok == Tok::Comma {
                    self.bump();
                } else {
                    break;
                }
            }
        }
        let limit = if self.eat_kw("LIMIT") {
            match self.peek().tok {
                Tok::Num(n) if n >= 0.0 && n.fract() == 0.0 => {
                    self.bump();
                    Some(n as u64)
                }
                _ => return Err(self.unexpected()),
            }
        } else {
            None
        };
        Ok(QueryAst {
            select,
            from,
            where_,
            order,
            limit,
            pos,
        })
    }

    fn sel_item(&mut self) -> Result<SelItem, SoqlError> {
        if self.peek().tok == Tok::LParen {
            self.bump();
            let sub = self.query()?;
            self.expect(Tok::RParen)?;
            return Ok(SelItem::Sub(Box::new(sub)));
        }
        if self.is_kw("COUNT") && self.peek_at(1).tok == Tok::LParen {
            let pos = self.peek().start;
            self.bump();
            self.bump();
            if self.peek().tok != Tok::RParen {
                return Err(SoqlError::at(
                    self.src,
                    pos,
                    MALFORMED_QUERY,
                    "aggregate functions other than COUNT() are not supported by this simulator",
                ));
            }
            self.bump();
            return Ok(SelItem::Count(pos));
        }
        Ok(SelItem::Field(self.name()?))
    }

    /// `unit ((AND unit)* | (OR unit)*)`, or `NOT unit`. Mixing AND/OR, or NOT with either,
    /// needs parentheses (Salesforce rejects the query otherwise).
    fn cond(&mut self) -> Result<Cond, SoqlError> {
        if self.eat_kw("NOT") {
            let inner = self.unit()?;
            if self.is_kw("AND") || self.is_kw("OR") {
                return Err(self.unexpected());
            }
            return Ok(Cond::Not(Box::new(inner)));
        }
        let first = self.unit()?;
        if self.is_kw("AND") {
            let mut items = vec![first];
            while self.eat_kw("AND") {
                items.push(self.unit()?);
            }
            if self.is_kw("OR") {
                return Err(self.unexpected());
            }
            return Ok(Cond::And(items));
        }
        if self.is_kw("OR") {
            let mut items = vec![first];
            while self.eat_kw("OR") {
                items.push(self.unit()?);
            }
            if self.is_kw("AND") {
                return Err(self.unexpected());
            }
            return Ok(Cond::Or(items));
        }
        Ok(first)
    }

    fn unit(&mut self) -> Result<Cond, SoqlError> {
        if self.peek().tok == Tok::LParen {
            self.bump();
            let c = self.cond()?;
            self.expect(Tok::RParen)?;
            return Ok(c);
        }
        self.condition()
    }

    fn condition(&mut self) -> Result<Cond, SoqlError> {
        let field = self.name()?;
        if let Tok::Op(op) = self.peek().tok {
            self.bump();
            let lit = self.literal()?;
            return Ok(Cond::Cmp { field, op, lit });
        }
        if self.eat_kw("LIKE") {
            let lit = self.literal()?;
            return Ok(Cond::Like { field, lit });
        }
        let negated = if self.is_kw("NOT") && self.is_kw_at(1, "IN") {
            self.bump();
            true
        } else {
            false
        };
        if self.eat_kw("IN") {
            self.expect(Tok::LParen)?;
            if self.is_kw("SELECT") {
                let sub = self.query()?;
                self.expect(Tok::RParen)?;
                return Ok(Cond::SemiJoin {
                    field,
                    negated,
                    sub: Box::new(sub),
                });
            }
            let mut list = vec![self.literal()?];
            while self.peek().tok == Tok::Comma {
                self.bump();
                list.push(self.literal()?);
            }
            self.expect(Tok::RParen)?;
            return Ok(Cond::In {
                field,
                negated,
                list,
            });
        }
        Err(self.unexpected())
    }

    fn literal(&mut self) -> Result<LitAt, SoqlError> {
        let t = self.peek().clone();
        let lit = match &t.tok {
            Tok::Str { value, like_raw } => Lit::Str {
                value: value.clone(),
                like_raw: like_raw.clone(),
            },
            Tok::Num(n) => Lit::Num(*n),
            Tok::DateTime(d) => Lit::DateTime(*d),
            Tok::Date(d) => Lit::Date(*d),
            Tok::Ident(s) if s.eq_ignore_ascii_case("true") => Lit::Bool(true),
            Tok::Ident(s) if s.eq_ignore_ascii_case("false") => Lit::Bool(false),
            Tok::Ident(s) if s.eq_ignore_ascii_case("null") => Lit::Null,
            _ => return Err(self.unexpected()),
        };
        self.bump();
        Ok(LitAt { lit, pos: t.start })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(src: &str) -> SoqlError {
        parse(src).expect_err("should fail")
    }

    #[test]
    fn parses_the_connector_query_shape() {
        let q = parse(
            "SELECT Id, Contact.Name, (SELECT Id FROM EmailMessages ORDER BY MessageDate ASC LIMIT 5) \
             FROM Case WHERE IsClosed = true AND OwnerId IN ('00G000000000001', '00G000000000002') \
             AND (SystemModstamp > 2024-01-01T00:00:00Z OR (SystemModstamp = 2024-01-01T00:00:00Z AND Id > '500000000000001')) \
             ORDER BY SystemModstamp ASC, Id ASC NULLS LAST LIMIT 10",
        )
        .expect("parses");
        assert_eq!(q.select.len(), 3);
        assert_eq!(q.limit, Some(10));
        assert_eq!(q.order.len(), 2);
        assert_eq!(q.order[1].nulls_first, Some(false));
        match q.where_ {
            Some(Cond::And(items)) => {
                assert_eq!(items.len(), 3);
                assert!(matches!(items[2], Cond::Or(_)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn mixing_and_or_without_parentheses_is_rejected() {
        let e =
            err("SELECT Id FROM Case WHERE Status = 'New' AND Priority = 'High' OR Origin = 'Web'");
        assert_eq!(e.code, MALFORMED_QUERY);
        assert!(
            e.message.contains("unexpected token: 'OR'"),
            "{}",
            e.message
        );
        let e =
            err("SELECT Id FROM Case WHERE Status = 'New' OR Priority = 'High' AND Origin = 'Web'");
        assert!(
            e.message.contains("unexpected token: 'AND'"),
            "{}",
            e.message
        );
        // NOT binds to one unit; combining it needs parentheses too.
        assert!(parse("SELECT Id FROM Case WHERE Status = 'New' AND NOT Origin = 'Web'").is_err());
        assert!(parse("SELECT Id FROM Case WHERE NOT Origin = 'Web' AND Status = 'New'").is_err());
        assert!(parse("SELECT Id FROM Case WHERE Status = 'New' AND (NOT Origin = 'Web')").is_ok());
        assert!(parse("SELECT Id FROM Case WHERE NOT (Origin = 'Web' OR Status = 'New')").is_ok());
    }

    #[test]
    fn syntax_errors_carry_position() {
        let e = err("SELECT Id FROM Case WHERE");
        assert_eq!(e.code, MALFORMED_QUERY);
        assert_eq!(
            e.message,
            "\nSELECT Id FROM Case WHERE\n                         ^\nERROR at Row:1:Column:26\nunexpected token: '<EOF>'"
        );
        assert!(parse("SELECT FROM Case").is_err());
        assert!(parse("SELECT Id FROM Case LIMIT x").is_err());
        assert!(parse("SELECT Id FROM Case GROUP BY Id").is_err());
        assert!(parse("SELECT Id, FROM Case").is_err());
        assert!(parse("SELECT Id FROM Case WHERE Id IN ()").is_err());
    }

    #[test]
    fn unencoded_plus_decoded_to_space_is_malformed() {
        let e = err("SELECT Id FROM Case WHERE SystemModstamp > 2024-01-01T00:00:00.000 0000");
        assert_eq!(e.code, MALFORMED_QUERY);
        let e = err("SELECT Id FROM Case WHERE SystemModstamp > 2024-01-01T00:00:00 00:00");
        assert_eq!(e.code, MALFORMED_QUERY);
    }

    #[test]
    fn microsecond_datetimes_are_malformed() {
        let e = err("SELECT Id FROM Case WHERE SystemModstamp > 2024-01-01T12:52:08.062712+00:00");
        assert_eq!(e.code, MALFORMED_QUERY);
        assert!(
            e.message
                .contains("unexpected token: '2024-01-01T12:52:08.062712+00:00'")
        );
    }

    #[test]
    fn keywords_are_case_insensitive() {
        let q =
            parse("select id from case where isclosed = TRUE order by id desc nulls first limit 1")
                .expect("parses");
        assert!(q.order[0].desc);
        assert_eq!(q.order[0].nulls_first, Some(true));
    }
}
