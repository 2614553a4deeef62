//! How the functions are configured: environment variables, read once at start, every missing
//! or invalid one reported at once. [`crate::Wiring`] builds the adapters from them.
//!
//! | variable | used by | meaning |
//! |---|---|---|
//! | `CONNECTIONS_TABLE` | all | the connections table |
//! | `DATA_POINTS_TABLE` | worker, api | the data points table |
//! | `AUTH_STATES_TABLE` | oauth-callback, api | pending OAuth flows (TTL `expires_at`) |
//! | `WORK_QUEUE_URL` | scheduler, worker | the FIFO work queue |
//! | `DLQ_URL` | worker | the work queue's FIFO dead-letter queue (poison messages) |
//! | `SECRET_PREFIX` | worker, oauth-callback, api | refresh tokens live at `<prefix>/<connection id>` |
//! | `SALESFORCE_CLIENT_ID` | worker, oauth-callback, api | the Connected App's consumer key |
//! | `SALESFORCE_CLIENT_SECRET_ARN` | worker, oauth-callback, api | the secret holding its consumer secret |
//! | `APP_URL` | oauth-callback | where the browser goes after connecting |
//! | `CALLBACK_URL` | oauth-callback, api | the OAuth redirect URI (optional: else derived from the request's host) |

use secrecy::SecretString;

pub const CONNECTIONS_TABLE: &str = "CONNECTIONS_TABLE";
pub const DATA_POINTS_TABLE: &str = "DATA_POINTS_TABLE";
pub const AUTH_STATES_TABLE: &str = "AUTH_STATES_TABLE";
pub const WORK_QUEUE_URL: &str = "WORK_QUEUE_URL";
pub const SECRET_PREFIX: &str = "SECRET_PREFIX";
pub const SALESFORCE_CLIENT_ID: &str = "SALESFORCE_CLIENT_ID";
pub const SALESFORCE_CLIENT_SECRET_ARN: &str = "SALESFORCE_CLIENT_SECRET_ARN";
pub const APP_URL: &str = "APP_URL";
pub const CALLBACK_URL: &str = "CALLBACK_URL";
/// The work queue's FIFO dead-letter queue: where the worker moves a message whose body can
/// never be processed (the redrive policy moves the ones that keep failing).
pub const DLQ_URL: &str = "DLQ_URL";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: {}", self.describe())]
pub struct ConfigError {
    pub missing: Vec<&'static str>,
    pub invalid: Vec<String>,
}

impl ConfigError {
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(format!(
                "missing environment variables {}",
                self.missing.join(", ")
            ));
        }
        parts.extend(self.invalid.iter().cloned());
        parts.join("; ")
    }
}

type Lookup = Box<dyn Fn(&str) -> Option<String>>;

/// Reads variables, collecting every problem before failing.
#[derive(Default)]
pub struct Env {
    missing: Vec<&'static str>,
    invalid: Vec<String>,
    lookup: Option<Lookup>,
}

impl Env {
    /// Reads the process environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads from a function instead (tests).
    pub fn from_fn(lookup: impl Fn(&str) -> Option<String> + 'static) -> Self {
        Self {
            lookup: Some(Box::new(lookup)),
            ..Self::default()
        }
    }

    /// Reads from fixed name/value pairs instead (tests).
    pub fn from_pairs(pairs: Vec<(&'static str, &'static str)>) -> Self {
        Self::from_fn(move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    pub fn optional(&self, name: &str) -> Option<String> {
        let value = match &self.lookup {
            Some(f) => f(name),
            None => std::env::var(name).ok(),
        };
        value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    /// A required variable; `""` when missing (the error comes from [`Env::finish`]).
    pub fn required(&mut self, name: &'static str) -> String {
        self.optional(name).unwrap_or_else(|| {
            self.missing.push(name);
            String::new()
        })
    }

    /// A required variable parsed with `parse`; `None` when missing or invalid.
    pub fn parsed<T, E: std::fmt::Display>(
        &mut self,
        name: &'static str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        let raw = self.optional(name);
        match raw {
            None => {
                self.missing.push(name);
                None
            }
            Some(raw) => match parse(&raw) {
                Ok(v) => Some(v),
                Err(e) => {
                    self.invalid.push(format!("{name}: {e}"));
                    None
                }
            },
        }
    }

    pub fn finish(self) -> Result<(), ConfigError> {
        if self.missing.is_empty() && self.invalid.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                missing: self.missing,
                invalid: self.invalid,
            })
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientSecretError {
    #[error("could not read the Connected App's client secret {arn}: {reason}")]
    Unreadable { arn: String, reason: String },
    #[error("the secret {arn} holds no string value")]
    Empty { arn: String },
}

/// Reads the Connected App's consumer secret from Secrets Manager: either the plain string, or
/// a JSON object with a `client_secret` key.
pub async fn read_client_secret(
    client: &aws_sdk_secretsmanager::Client,
    arn: &str,
) -> Result<SecretString, ClientSecretError> {
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| ClientSecretError::Unreadable {
            arn: arn.to_owned(),
            reason: aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
        })?;
    let raw = out
        .secret_string()
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ClientSecretError::Empty {
            arn: arn.to_owned(),
        })?;
    #[derive(serde::Deserialize)]
    struct Wrapped {
        client_secret: String,
    }
    let value = match serde_json::from_str::<Wrapped>(raw) {
        Ok(w) => w.client_secret,
        Err(_) => raw.trim().to_owned(),
    };
    Ok(SecretString::from(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_missing_and_invalid_variable_is_reported_at_once() {
        let mut env = Env::from_fn(|name| match name {
            "A" => Some("a".into()),
            "NUM" => Some("x".into()),
            _ => None,
        });
        assert_eq!(env.required("A"), "a");
        env.required("B");
        env.required("C");
        env.parsed("NUM", |s| s.parse::<u32>());
        let err = env.finish().unwrap_err();
        assert_eq!(err.missing, vec!["B", "C"]);
        let text = err.to_string();
        assert!(
            text.contains("missing environment variables B, C"),
            "{text}"
        );
        assert!(text.contains("NUM: invalid digit"), "{text}");
    }
}
