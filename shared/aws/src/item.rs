//! Small helpers for DynamoDB items and expressions.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_types::Blob;

use casesync_core::ports::StoreError;

use crate::error::corrupt;

pub(crate) type Item = HashMap<String, AttributeValue>;

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn b(v: Vec<u8>) -> AttributeValue {
    AttributeValue::B(Blob::new(v))
}

/// Typed access to the attributes of one stored item; `what` names the item in errors.
pub(crate) struct Attrs<'a> {
    pub item: &'a Item,
    pub what: &'a str,
}

impl<'a> Attrs<'a> {
    pub fn new(item: &'a Item, what: &'a str) -> Self {
        Self { item, what }
    }

    pub fn opt_s(&self, name: &str) -> Result<Option<&'a str>, StoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v)),
            Some(_) => Err(self.wrong_type(name, "S")),
        }
    }

    pub fn s(&self, name: &str) -> Result<&'a str, StoreError> {
        self.opt_s(name)?.ok_or_else(|| self.missing(name))
    }

    pub fn opt_n(&self, name: &str) -> Result<Option<u64>, StoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::N(v)) => v.parse().map(Some).map_err(|_| {
                corrupt(
                    self.what,
                    format_args!("attribute {name} = {v:?} is not a count"),
                )
            }),
            Some(_) => Err(self.wrong_type(name, "N")),
        }
    }

    pub fn opt_b(&self, name: &str) -> Result<Option<&'a [u8]>, StoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::B(v)) => Ok(Some(v.as_ref())),
            Some(_) => Err(self.wrong_type(name, "B")),
        }
    }

    pub fn b(&self, name: &str) -> Result<&'a [u8], StoreError> {
        self.opt_b(name)?.ok_or_else(|| self.missing(name))
    }

    /// Parses a string attribute with a domain parser.
    pub fn parse<T, E: std::fmt::Display>(
        &self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<T, StoreError> {
        let raw = self.s(name)?;
        parse(raw).map_err(|e| corrupt(self.what, format_args!("attribute {name}: {e}")))
    }

    fn missing(&self, name: &str) -> StoreError {
        corrupt(self.what, format_args!("attribute {name} is missing"))
    }

    fn wrong_type(&self, name: &str, expected: &str) -> StoreError {
        corrupt(
            self.what,
            format_args!("attribute {name} is not of type {expected}"),
        )
    }
}

/// Collects the `#name` and `:value` placeholders of one request's expressions. Every attribute
/// name goes through a placeholder, so DynamoDB's long list of reserved words (`state`, ...)
/// never bites.
#[derive(Default)]
pub(crate) struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    pub fn new() -> Self {
        Self::default()
    }

    /// `#name` for attribute `name` (letters, digits and `_`).
    pub fn name(&mut self, name: &str) -> String {
        let key = format!("#{name}");
        self.names.insert(key.clone(), name.to_owned());
        key
    }

    /// `:key` bound to `value`.
    pub fn value(&mut self, key: &str, value: AttributeValue) -> String {
        let key = format!(":{key}");
        self.values.insert(key.clone(), value);
        key
    }

    pub fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    /// DynamoDB refuses an empty `ExpressionAttributeValues`, so none is `None`.
    pub fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}
