//! Salesforce endpoints casesync is willing to talk to.
//!
//! Both the login URL a user gives and the `instance_url` a token response carries must be https
//! to `login.salesforce.com`, `test.salesforce.com` or `*.my.salesforce.com` (which includes
//! sandboxes, `*.sandbox.my.salesforce.com`). Anything else could be an attacker's host
//! receiving the client secret or a token, so it never gets that far.
//!
//! Loopback (plain http or https to 127.0.0.1, localhost or [::1]) is the one exception, for the
//! simulator, and it is narrow:
//! - a **login URL** on loopback is accepted by [`LoginUrl::parse`], because the person who
//!   typed it runs both ends (the CLI against the bundled simulator). Deployed runtimes refuse
//!   it before it gets here (the management API's `allow_loopback_login` is off in production);
//! - an **instance URL** on loopback is accepted only from a login host that is itself on
//!   loopback ([`InstanceUrl::issued_by`]): a token response from a real Salesforce login host
//!   that names a loopback instance is refused, and [`InstanceUrl::parse`] alone never accepts
//!   loopback.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use url::{Host, Url};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("{what} {raw:?} is not a valid URL")]
    Malformed { what: &'static str, raw: String },
    #[error(
        "{what} {raw:?} is not allowed: use https://login.salesforce.com, https://test.salesforce.com \
         or https://<MyDomain>.my.salesforce.com (plain http only for 127.0.0.1, localhost or [::1])"
    )]
    NotSalesforce { what: &'static str, raw: String },
    #[error(
        "{what} {raw:?} must be just scheme and host, without a path, query, fragment or user info"
    )]
    NotAnOrigin { what: &'static str, raw: String },
}

fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
        Host::Ipv6(ip) => IpAddr::V6(*ip).is_loopback(),
    }
}

fn is_salesforce_host(host: &Host<&str>) -> bool {
    let Host::Domain(d) = host else { return false };
    let d = d.to_ascii_lowercase();
    if d == "login.salesforce.com" || d == "test.salesforce.com" {
        return true;
    }
    match d.strip_suffix(".my.salesforce.com") {
        // A My Domain label, optionally "<domain>--<sandbox>.sandbox": letters, digits, '-' and '.'.
        Some(label) => {
            !label.is_empty()
                && !label.starts_with(['.', '-'])
                && !label.ends_with(['.', '-'])
                && !label.contains("..")
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        }
        None => false,
    }
}

/// Parse and check an endpoint; the result is its origin, e.g. `https://acme.my.salesforce.com`.
fn parse_origin(what: &'static str, raw: &str, allow_loopback: bool) -> Result<Url, UrlError> {
    let malformed = || UrlError::Malformed {
        what,
        raw: raw.to_owned(),
    };
    let url = Url::parse(raw.trim()).map_err(|_| malformed())?;
    let host = url.host().ok_or_else(malformed)?;
    let allowed = match url.scheme() {
        "https" => {
            (allow_loopback && is_loopback(&host))
                || (is_salesforce_host(&host) && url.port().is_none())
        }
        "http" => allow_loopback && is_loopback(&host),
        _ => false,
    };
    if !allowed {
        return Err(UrlError::NotSalesforce {
            what,
            raw: raw.to_owned(),
        });
    }
    if !(url.path() == "/" || url.path().is_empty())
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(UrlError::NotAnOrigin {
            what,
            raw: raw.to_owned(),
        });
    }
    Url::parse(&url.origin().ascii_serialization()).map_err(|_| malformed())
}

macro_rules! origin_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, loopback: $loopback:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Url);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, UrlError> {
                parse_origin($what, raw, $loopback).map(Self)
            }

            /// The origin without a trailing slash, e.g. `https://acme.my.salesforce.com`.
            pub fn as_str(&self) -> &str {
                self.0.as_str().trim_end_matches('/')
            }

            /// `path` must start with `/`.
            pub fn join(&self, path: &str) -> String {
                format!("{}{}", self.as_str(), path)
            }

            pub fn is_loopback(&self) -> bool {
                self.0.host().is_some_and(|h| is_loopback(&h))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UrlError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = UrlError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(u: $name) -> String {
                u.as_str().to_owned()
            }
        }
    };
}

origin_type!(
    /// Where OAuth happens: authorize, token and revoke endpoints live under it.
    LoginUrl,
    "login URL",
    loopback: true
);
origin_type!(
    /// The org's API host, from the token response's `instance_url`.
    InstanceUrl,
    "instance URL",
    loopback: false
);

impl InstanceUrl {
    /// The `instance_url` of a token response from `login`: a Salesforce host, or loopback when
    /// `login` is itself on loopback (the simulator). Also how a stored connection's instance
    /// URL is read back, beside the login URL it was issued by.
    pub fn issued_by(raw: &str, login: &LoginUrl) -> Result<Self, UrlError> {
        parse_origin("instance URL", raw, login.is_loopback()).map(Self)
    }
}

impl Default for LoginUrl {
    fn default() -> Self {
        Self::parse("https://login.salesforce.com").expect("the default login URL is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salesforce_hosts_are_accepted_over_https() {
        for ok in [
            "https://login.salesforce.com",
            "https://test.salesforce.com/",
            "https://acme.my.salesforce.com",
            "https://ACME--uat.sandbox.my.salesforce.com",
        ] {
            let u = LoginUrl::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert!(!u.as_str().ends_with('/'));
        }
    }

    #[test]
    fn a_loopback_login_url_is_accepted_over_http() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:1234/",
            "http://[::1]:9",
            "https://127.0.0.1:8443",
        ] {
            assert!(LoginUrl::parse(ok).unwrap().is_loopback(), "{ok}");
        }
    }

    #[test]
    fn a_loopback_instance_url_needs_a_loopback_login_host() {
        let simulator = LoginUrl::parse("http://127.0.0.1:8080").unwrap();
        let salesforce = LoginUrl::default();
        for raw in [
            "http://127.0.0.1:9090",
            "https://localhost:8443",
            "http://[::1]:9",
        ] {
            assert!(InstanceUrl::parse(raw).is_err(), "{raw} alone");
            assert!(
                InstanceUrl::issued_by(raw, &salesforce).is_err(),
                "{raw} from login.salesforce.com"
            );
            assert!(
                InstanceUrl::issued_by(raw, &simulator)
                    .unwrap()
                    .is_loopback(),
                "{raw} from the simulator"
            );
        }
        let real = "https://acme.my.salesforce.com";
        assert!(InstanceUrl::parse(real).is_ok());
        assert!(InstanceUrl::issued_by(real, &salesforce).is_ok());
        assert!(InstanceUrl::issued_by(real, &simulator).is_ok());
    }

    #[test]
    fn everything_else_is_refused() {
        for bad in [
            "http://login.salesforce.com",
            "https://evil.com",
            "https://login.salesforce.com.evil.com",
            "https://evilsalesforce.com",
            "https://my.salesforce.com",
            "https://.my.salesforce.com",
            "https://a..b.my.salesforce.com",
            "https://acme.my.salesforce.com:8443",
            "http://10.0.0.1",
            "http://192.168.1.1:80",
            "ftp://127.0.0.1",
            "https://acme.my.salesforce.com/services",
            "https://user:pw@acme.my.salesforce.com",
            "https://acme.my.salesforce.com?x=1",
            "not a url",
            "",
        ] {
            assert!(LoginUrl::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
