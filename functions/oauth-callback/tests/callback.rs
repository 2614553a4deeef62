//! `GET /oauth/callback` as Salesforce's redirect reaches it: API Gateway HTTP API (payload
//! 2.0) events, DynamoDB and Secrets Manager on moto, Salesforce's OAuth endpoints on the
//! simulator over HTTP. The flow is started with `connect::start`, as the management API does.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use casesync_aws::testing::{Moto, ResourceNames};
use casesync_aws::{DynamoAuthStateStore, DynamoConnectionStore, SecretsManagerStore};
use casesync_core::domain::{
    ApiVersion, BackfillWindow, ChannelName, ConnectionId, ConnectionState, LoginUrl, QueueScope,
};
use casesync_core::manage::connect::{self, ConnectionSettings};
use casesync_core::ports::{Clock, PendingAuthorization};
use casesync_core::salesforce::{HttpSettings, OAuthApp, RetryPolicy, Salesforce};
use casesync_oauth_callback::Callback;
use chrono::{DateTime, SubsecRound, TimeDelta, TimeZone, Utc};
use secrecy::SecretString;
use sf_simulator::{
    AuthorizeMode, FaultKind, FaultRule, FaultTarget, Org, SimConfig, SimHandle, Simulator,
};
use url::Url;

const DOMAIN: &str = "abc123def4.execute-api.eu-west-1.amazonaws.com";
const APP_URL: &str = "https://app.example.com/integrations/salesforce?tab=connections";

fn callback_url() -> String {
    format!("https://{DOMAIN}/oauth/callback")
}

/// A clock that stands still, so cursors can be compared exactly.
struct FixedClock(DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

/// Now, to the millisecond (what DynamoDB keeps of a cursor).
fn now_ms() -> DateTime<Utc> {
    Utc.timestamp_millis_opt(Utc::now().timestamp_millis())
        .single()
        .expect("a current timestamp")
}

struct World {
    aws: Moto,
    names: ResourceNames,
    sim: SimHandle,
    salesforce: Salesforce,
    callback: Callback,
    now: DateTime<Utc>,
}

fn http() -> HttpSettings {
    HttpSettings {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        retry: RetryPolicy::fast(),
    }
}

async fn world(mode: AuthorizeMode) -> World {
    let aws = casesync_aws::testing::moto().await;
    let names = aws.tables("callback").await;
    let config = SimConfig {
        allowed_redirect_uris: Some(vec![callback_url()]),
        authorize_mode: mode,
        ..SimConfig::default()
    };
    let sim = Simulator::start(config, Org::sample(1, Utc::now()))
        .await
        .expect("the simulator starts");
    let salesforce = Salesforce::new(
        OAuthApp {
            client_id: sim.client_id(),
            client_secret: Some(SecretString::from(sim.client_secret())),
        },
        &http(),
    )
    .expect("the HTTP client builds");
    let now = now_ms();
    let callback = Callback {
        oauth: salesforce.oauth.clone(),
        connections: Arc::new(DynamoConnectionStore::new(
            aws.dynamodb(),
            &names.tables.connections,
        )),
        auth_states: Arc::new(DynamoAuthStateStore::new(
            aws.dynamodb(),
            &names.tables.auth_states,
        )),
        secrets: Arc::new(SecretsManagerStore::new(
            aws.secrets_manager(),
            &names.secret_prefix,
        )),
        app_url: Some(Url::parse(APP_URL).unwrap()),
        clock: Arc::new(FixedClock(now)),
    };
    World {
        aws,
        names,
        sim,
        salesforce,
        callback,
        now,
    }
}

impl World {
    fn login_url(&self) -> LoginUrl {
        LoginUrl::parse(&self.sim.login_url()).unwrap()
    }

    /// What `POST /connections` does: a stored state, and the authorize URL.
    async fn start(&self, backfill: BackfillWindow) -> Url {
        connect::start(
            &self.salesforce.oauth,
            self.callback.auth_states.as_ref(),
            self.login_url(),
            &callback_url(),
            ConnectionSettings {
                channel: ChannelName::parse("support").unwrap(),
                scope: QueueScope::All,
                backfill,
                api_version: ApiVersion::DEFAULT,
            },
            connect::Purpose::Create,
            self.now,
        )
        .await
        .expect("the flow starts")
        .authorize_url
    }

    /// The browser: follows the authorize URL to the simulator, returns the callback's query.
    async fn authorize(&self, authorize_url: &Url) -> String {
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let response = browser.get(authorize_url.as_str()).send().await.unwrap();
        assert_eq!(
            response.status(),
            302,
            "the simulator redirects the browser"
        );
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let (base, query) = location.split_once('?').expect("a query on the callback");
        assert_eq!(base, callback_url());
        query.to_owned()
    }

    async fn call(&self, raw_query: &str) -> ApiGatewayV2httpResponse {
        self.callback.handle(event("GET", raw_query)).await
    }

    async fn connection_ids(&self) -> Vec<ConnectionId> {
        self.callback
            .connections
            .list_connections()
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect()
    }

    /// Every secret under this test's prefix: (name, value).
    async fn secrets(&self) -> Vec<(String, String)> {
        self.aws.secrets_under(&self.names.secret_prefix).await
    }

    async fn assert_nothing_stored(&self) {
        assert!(self.connection_ids().await.is_empty(), "no connection");
        assert!(self.secrets().await.is_empty(), "no secret");
        assert_eq!(self.sim.stats().token_code, 0, "no code was exchanged");
    }
}

/// An API Gateway HTTP API payload 2.0 event, as API Gateway sends it for the callback route.
fn event(method: &str, raw_query: &str) -> ApiGatewayV2httpRequest {
    let mut params = serde_json::Map::new();
    for (k, v) in url::form_urlencoded::parse(raw_query.as_bytes()) {
        // API Gateway joins repeated parameters with commas.
        let joined = match params.get(k.as_ref()).and_then(|x| x.as_str()) {
            Some(prev) => format!("{prev},{v}"),
            None => v.into_owned(),
        };
        params.insert(k.into_owned(), joined.into());
    }
    let json = serde_json::json!({
        "version": "2.0",
        "routeKey": "GET /oauth/callback",
        "rawPath": "/oauth/callback",
        "rawQueryString": raw_query,
        "headers": {
            "accept": "text/html,application/xhtml+xml",
            "accept-encoding": "gzip, deflate, br",
            "host": DOMAIN,
            "user-agent": "Mozilla/5.0 (X11; Linux x86_64)",
            "x-amzn-trace-id": "Root=1-65f1c2d3-0123456789abcdef01234567",
            "x-forwarded-for": "203.0.113.7",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https"
        },
        "queryStringParameters": params,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123def4",
            "domainName": DOMAIN,
            "domainPrefix": "abc123def4",
            "http": {
                "method": method,
                "path": "/oauth/callback",
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "Mozilla/5.0 (X11; Linux x86_64)"
            },
            "requestId": "Jx1Q2jKLoAMEVXw=",
            "routeKey": "GET /oauth/callback",
            "stage": "$default",
            "time": "12/Mar/2024:10:00:00 +0000",
            "timeEpoch": 1710237600000i64
        },
        "isBase64Encoded": false
    });
    serde_json::from_value(json).expect("a valid payload 2.0 event")
}

fn body(r: &ApiGatewayV2httpResponse) -> String {
    match &r.body {
        Some(aws_lambda_events::encodings::Body::Text(t)) => t.clone(),
        Some(other) => panic!("unexpected body {other:?}"),
        None => String::new(),
    }
}

fn header<'a>(r: &'a ApiGatewayV2httpResponse, name: &str) -> &'a str {
    r.headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

/// A refusal page: the status, HTML, private headers, a link back, and nothing from the query.
fn assert_page(r: &ApiGatewayV2httpResponse, status: i64, says: &str, query: &str) {
    let html = body(r);
    assert_eq!(r.status_code, status, "{html}");
    assert!(header(r, "content-type").starts_with("text/html"));
    assert_eq!(header(r, "cache-control"), "no-store");
    assert_eq!(header(r, "referrer-policy"), "no-referrer");
    assert!(r.headers.get("location").is_none());
    assert!(html.contains(says), "expected {says:?} in {html}");
    assert!(
        html.contains("href=\"https://app.example.com/integrations/salesforce?tab=connections\""),
        "{html}"
    );
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if (k == "code" || k == "state") && v.len() > 8 {
            assert!(!html.contains(v.as_ref()), "the page shows the {k}");
        }
    }
}

fn param(query: &str, name: &str) -> String {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no {name} in {query}"))
}

#[tokio::test]
async fn an_approved_authorization_creates_the_connection_and_redirects_to_the_app() {
    let w = world(AuthorizeMode::AutoApprove).await;
    let url = w.start(BackfillWindow::Days90).await;
    let query = w.authorize(&url).await;

    let r = w.call(&query).await;

    assert_eq!(r.status_code, 302, "{}", body(&r));
    assert_eq!(header(&r, "cache-control"), "no-store");
    assert_eq!(header(&r, "referrer-policy"), "no-referrer");
    let location = Url::parse(header(&r, "location")).unwrap();
    assert!(location.as_str().starts_with(APP_URL), "{location}");
    let ids = w.connection_ids().await;
    assert_eq!(ids.len(), 1);
    let id = &ids[0];
    let pairs: Vec<(String, String)> = location.query_pairs().into_owned().collect();
    assert!(pairs.contains(&("connection".into(), id.to_string())));
    assert!(pairs.contains(&("status".into(), "connected".into())));
    assert!(!location.as_str().contains(&param(&query, "code")));

    let c = w
        .callback
        .connections
        .get_connection(id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.state, ConnectionState::Active);
    assert_eq!(c.channel.as_str(), "support");
    assert_eq!(c.backfill, BackfillWindow::Days90);
    // The start of the 90-day window, in whole seconds (SystemModstamp's granularity).
    assert_eq!(
        c.cursor.system_modstamp,
        (w.now - TimeDelta::days(90)).trunc_subsecs(0)
    );
    assert_eq!(c.cursor.case_id, None);
    assert_eq!(c.instance_url.as_str(), w.sim.instance_url());

    let secrets = w.secrets().await;
    assert_eq!(secrets.len(), 1);
    assert_eq!(secrets[0].0, format!("{}/{id}", w.names.secret_prefix));
    assert!(
        w.sim.is_token_active(&secrets[0].1),
        "the stored secret is the live refresh token"
    );
}

#[tokio::test]
async fn without_an_app_url_the_browser_goes_to_the_stacks_console() {
    let mut w = world(AuthorizeMode::AutoApprove).await;
    w.callback.app_url = None;
    let url = w.start(BackfillWindow::Days30).await;
    let query = w.authorize(&url).await;

    let r = w.call(&query).await;

    assert_eq!(r.status_code, 302, "{}", body(&r));
    let location = Url::parse(header(&r, "location")).unwrap();
    let id = &w.connection_ids().await[0];
    assert_eq!(
        location.as_str(),
        format!("https://{DOMAIN}/console?connection={id}&status=connected")
    );

    // A failure's page links back to the console too.
    let r = w.call("state=forged&code=x").await;
    assert_eq!(r.status_code, 400, "{}", body(&r));
    assert!(
        body(&r).contains(&format!("https://{DOMAIN}/console")),
        "{}",
        body(&r)
    );
}

#[tokio::test]
async fn a_replayed_callback_fails_and_creates_nothing_more() {
    let w = world(AuthorizeMode::AutoApprove).await;
    let query = w.authorize(&w.start(BackfillWindow::Days30).await).await;
    assert_eq!(w.call(&query).await.status_code, 302);

    let again = w.call(&query).await;

    assert_page(&again, 400, "already used", &query);
    assert_eq!(w.connection_ids().await.len(), 1);
    assert_eq!(w.secrets().await.len(), 1);
    assert_eq!(w.sim.stats().token_code, 1, "the code was exchanged once");
}

#[tokio::test]
async fn a_forged_state_is_refused() {
    let w = world(AuthorizeMode::AutoApprove).await;
    let query =
        "code=aPrxForgedCode0123456789abcdefghij%3D%3D&state=forgedstate0123456789abcdefghijklmnop";

    let r = w.call(query).await;

    assert_page(&r, 400, "unknown or was already used", query);
    w.assert_nothing_stored().await;
}

#[tokio::test]
async fn an_expired_state_is_refused_and_its_code_never_exchanged() {
    let w = world(AuthorizeMode::AutoApprove).await;
    // A flow started 20 minutes ago (it expired 10 minutes ago).
    let started = w.now - TimeDelta::minutes(20);
    let request = w
        .salesforce
        .oauth
        .authorize(&w.login_url(), &callback_url());
    w.callback
        .auth_states
        .put_auth_state(&PendingAuthorization {
            state: request.state.clone(),
            verifier: request.verifier,
            channel: ChannelName::parse("support").unwrap(),
            login_url: w.login_url(),
            redirect_uri: callback_url(),
            scope: QueueScope::All,
            backfill: BackfillWindow::Days30,
            api_version: ApiVersion::DEFAULT,
            reauthorize: None,
            pending_setup: false,
            created_at: started,
            expires_at: started + connect::STATE_TTL,
        })
        .await
        .unwrap();
    // The browser still got a genuine code for it.
    let query = w.authorize(&request.url).await;
    assert_eq!(param(&query, "state"), request.state);

    let r = w.call(&query).await;

    assert_page(&r, 410, "expired", &query);
    w.assert_nothing_stored().await;
    assert_page(&w.call(&query).await, 400, "already used", &query);
}

#[tokio::test]
async fn a_declined_authorization_says_so_and_stores_nothing() {
    let w = world(AuthorizeMode::Deny).await;
    let url = w.start(BackfillWindow::Days30).await;
    let query = w.authorize(&url).await;
    assert_eq!(param(&query, "error"), "access_denied");

    let r = w.call(&query).await;

    assert_page(&r, 403, "You declined access in Salesforce", &query);
    w.assert_nothing_stored().await;
    // The state is used up: the same flow cannot be completed afterwards.
    let state = param(&query, "state");
    assert!(
        w.callback
            .auth_states
            .take_auth_state(&state)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn an_app_that_is_not_installed_sends_the_user_to_an_administrator() {
    let w = world(AuthorizeMode::AppNotInstalled).await;
    let query = w.authorize(&w.start(BackfillWindow::Days30).await).await;
    assert_eq!(param(&query, "error"), "OAUTH_APPROVAL_ERROR_GENERIC");

    let r = w.call(&query).await;

    assert_page(
        &r,
        403,
        "Ask a Salesforce administrator to install it",
        &query,
    );
    assert!(body(&r).contains("not approved"));
    w.assert_nothing_stored().await;
}

#[tokio::test]
async fn malformed_queries_are_refused_and_burn_their_state() {
    let w = world(AuthorizeMode::AutoApprove).await;
    let tampers: [fn(&str) -> String; 5] = [
        |q: &str| format!("{q}&code=aPrxSecondCode"),
        |q: &str| format!("{q}&state=another"),
        |q: &str| format!("{q}&padding={}", "x".repeat(5000)),
        |q: &str| format!("{q}&note=a%00b"),
        |q: &str| format!("{q}&{}", "y=1&".repeat(5000)),
    ];
    for tamper in tampers {
        let query = w.authorize(&w.start(BackfillWindow::Days30).await).await;
        let tampered = tamper(&query);

        let r = w.call(&tampered).await;

        assert_page(&r, 400, "not valid", &tampered);
        w.assert_nothing_stored().await;
        // The untampered callback of the same flow is refused too: its state is gone.
        assert_page(&w.call(&query).await, 400, "already used", &query);
        w.assert_nothing_stored().await;
    }
}

#[tokio::test]
async fn a_callback_without_state_or_code_is_refused() {
    let w = world(AuthorizeMode::AutoApprove).await;
    assert_page(&w.call("").await, 400, "missing its state parameter", "");
    let query = w.authorize(&w.start(BackfillWindow::Days30).await).await;
    let without_code = format!("state={}", param(&query, "state"));
    assert_page(
        &w.call(&without_code).await,
        400,
        "missing its code parameter",
        "",
    );
    w.assert_nothing_stored().await;
}

#[tokio::test]
async fn a_code_salesforce_refuses_connects_nothing() {
    let w = world(AuthorizeMode::AutoApprove).await;
    let query = w.authorize(&w.start(BackfillWindow::Days30).await).await;
    w.sim.expire_authorization_codes();

    let r = w.call(&query).await;

    assert_page(
        &r,
        400,
        "Salesforce did not accept the authorization code",
        &query,
    );
    assert!(w.connection_ids().await.is_empty());
    assert!(w.secrets().await.is_empty());
}

#[tokio::test]
async fn salesforce_failing_is_a_502_and_connects_nothing() {
    let w = world(AuthorizeMode::AutoApprove).await;
    let query = w.authorize(&w.start(BackfillWindow::Days30).await).await;
    w.sim
        .inject(FaultRule::always(FaultTarget::Token, FaultKind::Status503));

    let r = w.call(&query).await;

    assert_page(&r, 502, "did not answer, or answered with an error", &query);
    assert!(w.connection_ids().await.is_empty());
    assert!(w.secrets().await.is_empty());
}

#[tokio::test]
async fn a_store_failure_is_a_500_without_internals_and_leaves_no_secret() {
    let mut w = world(AuthorizeMode::AutoApprove).await;
    let query = w.authorize(&w.start(BackfillWindow::Days30).await).await;
    // The connections table is missing: the secret is written, the connection is not.
    w.callback.connections = Arc::new(DynamoConnectionStore::new(
        w.aws.dynamodb(),
        "no-such-table",
    ));

    let r = w.call(&query).await;

    assert_page(&r, 500, "could not save the connection", &query);
    let html = body(&r);
    assert!(
        !html.contains("no-such-table") && !html.contains("ResourceNotFound"),
        "{html}"
    );
    assert!(
        w.secrets().await.is_empty(),
        "the orphaned refresh token was removed"
    );
}

#[tokio::test]
async fn only_get_is_allowed() {
    let w = world(AuthorizeMode::AutoApprove).await;
    let query = w.authorize(&w.start(BackfillWindow::Days30).await).await;

    let r = w.callback.handle(event("POST", &query)).await;

    assert_eq!(r.status_code, 405);
    assert_eq!(header(&r, "allow"), "GET");
    // The flow was not touched: the browser's GET still completes it.
    assert_eq!(w.call(&query).await.status_code, 302);
}
