//! How a command ends: its exit code, and the errors that stop it.

use std::process::ExitCode;

/// The exit codes scripts can rely on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    Success,
    /// Salesforce's API limit stopped a sync; the cursor is kept and a later sync resumes.
    /// The contract has three codes for `sync` (0, 3, 1): this is "another failure", 1, with
    /// its own message; it ranks below re-authorization, which needs a person.
    RateLimited,
    /// A connection needs re-authorization (`casesync connect --reauthorize`).
    NeedsReauth,
    /// Another failure.
    Failure,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Failure => 1,
            Self::NeedsReauth => 3,
            Self::RateLimited => 1,
        }
    }

    /// The exit of several results: a failure first, then re-authorization, then rate limits.
    pub fn worst(self, other: Self) -> Self {
        self.max(other)
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e.code())
    }
}

pub const EXIT_USAGE: u8 = 2;
pub const EXIT_INTERRUPTED: u8 = 130;

/// Why a command stopped. Every message is one line and never holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line or the environment is wrong. Nothing was changed.
    #[error("{0}")]
    Input(String),
    /// The connection's refresh token was refused: authorize again.
    #[error("{0}")]
    NeedsReauth(String),
    /// Ctrl-C.
    #[error("interrupted")]
    Interrupted,
    #[error("{0:#}")]
    Failed(#[from] anyhow::Error),
}

impl CliError {
    pub fn input(message: impl Into<String>) -> Self {
        Self::Input(message.into())
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Input(_) => EXIT_USAGE,
            Self::NeedsReauth(_) => Exit::NeedsReauth.code(),
            Self::Interrupted => EXIT_INTERRUPTED,
            Self::Failed(_) => Exit::Failure.code(),
        }
    }
}

/// `anyhow::anyhow!` for a failure, as a `CliError`.
macro_rules! failed {
    ($($arg:tt)*) => {
        $crate::error::CliError::Failed(anyhow::anyhow!($($arg)*))
    };
}
pub(crate) use failed;

/// Context for store and I/O errors, giving a `CliError::Failed`.
pub trait Context<T> {
    fn context(self, what: impl std::fmt::Display) -> Result<T, CliError>;
}

impl<T, E> Context<T> for Result<T, E>
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn context(self, what: impl std::fmt::Display) -> Result<T, CliError> {
        self.map_err(|e| CliError::Failed(anyhow::Error::new(e).context(what.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_outranks_reauthorization_which_outranks_rate_limits() {
        assert_eq!(
            Exit::RateLimited.worst(Exit::NeedsReauth),
            Exit::NeedsReauth
        );
        assert_eq!(Exit::NeedsReauth.worst(Exit::Failure), Exit::Failure);
        assert_eq!(Exit::Success.worst(Exit::RateLimited), Exit::RateLimited);
        assert_eq!(Exit::Success.worst(Exit::Success).code(), 0);
    }

    #[test]
    fn failures_read_as_one_line_with_their_cause() {
        let e: Result<(), std::io::Error> = Err(std::io::Error::other("disk full"));
        let msg = e.context("writing the export").unwrap_err().to_string();
        assert_eq!(msg, "writing the export: disk full");
    }
}
