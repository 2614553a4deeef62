//! Salesforce: OAuth, the REST client, SOQL and the wire records.

pub mod client;
pub mod context;
pub mod error;
pub mod http;
pub mod limits;
pub mod oauth;
pub mod records;
pub mod soql;
pub mod tokens;

pub use client::{OrgApi, SObject};
pub use context::Salesforce;
pub use error::SalesforceError;
pub use http::{HttpSettings, RetryPolicy, build_client};
pub use limits::ApiUsage;
pub use oauth::{AuthorizationRequest, OAuthApp, OAuthClient, TokenGrant};
pub use tokens::{AccessToken, AccessTokens, RefreshingTokens, StaticToken, TokenCache};
