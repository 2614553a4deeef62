//! A hand-written SOQL subset: tokenizer, recursive-descent parser, compiler (name resolution
//! and type checks against the schema) and evaluator. Errors carry Salesforce's error codes and
//! its positional message format.

pub mod eval;
pub mod lexer;
pub mod parser;
#[cfg(test)]
mod tests;

pub use eval::{Filter, OutItem, Plan, compile, run};

/// Maximum SOQL statement length.
pub const MAX_STATEMENT_CHARS: usize = 100_000;

/// A query error as Salesforce reports it: `[{"message": ..., "errorCode": ...}]` with 400.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SoqlError {
    pub code: &'static str,
    pub message: String,
}

pub const MALFORMED_QUERY: &str = "MALFORMED_QUERY";
pub const INVALID_FIELD: &str = "INVALID_FIELD";
pub const INVALID_TYPE: &str = "INVALID_TYPE";
pub const INVALID_QUERY_FILTER_OPERATOR: &str = "INVALID_QUERY_FILTER_OPERATOR";
pub const QUERY_TIMEOUT: &str = "QUERY_TIMEOUT";

impl SoqlError {
    pub fn plain(code: &'static str, message: impl Into<String>) -> SoqlError {
        SoqlError {
            code,
            message: message.into(),
        }
    }

    /// `"\n<line>\n<spaces>^\nERROR at Row:R:Column:C\n<detail>"`, like Salesforce.
    pub fn at(src: &str, pos: usize, code: &'static str, detail: impl AsRef<str>) -> SoqlError {
        let pos = pos.min(src.len());
        let before = &src[..pos];
        let row = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let line_end = src[pos..].find('\n').map(|i| pos + i).unwrap_or(src.len());
        let line = &src[line_start..line_end];
        let col = src[line_start..pos].chars().count() + 1;
        // Long lines are shown as a window around the error.
        let chars: Vec<char> = line.chars().collect();
        let from = col.saturating_sub(1).saturating_sub(100);
        let to = (col + 100).min(chars.len());
        let shown: String = chars[from..to.max(from)].iter().collect();
        let caret = " ".repeat(col - 1 - from);
        SoqlError {
            code,
            message: format!(
                "\n{shown}\n{caret}^\nERROR at Row:{row}:Column:{col}\n{}",
                detail.as_ref()
            ),
        }
    }
}

impl std::fmt::Display for SoqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for SoqlError {}

/// Parses and compiles `soql` against the org's schema and permissions.
pub fn prepare(soql: &str, org: &crate::org::Org) -> Result<Plan, SoqlError> {
    if soql.chars().count() > MAX_STATEMENT_CHARS {
        return Err(SoqlError::plain(
            MALFORMED_QUERY,
            format!("SOQL statements cannot be longer than {MAX_STATEMENT_CHARS} characters."),
        ));
    }
    let ast = parser::parse(soql)?;
    compile(&ast, soql, org)
}
