//! What every API test needs: moto (DynamoDB, Secrets Manager), the simulator, the `api` and
//! `oauth-callback` handlers wired to them, and API Gateway HTTP API (payload 2.0) events.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use casesync_api::Api;
use casesync_aws::testing::{Moto, ResourceNames};
use casesync_aws::{
    DynamoAuthStateStore, DynamoConnectionStore, DynamoDataPointStore, SecretsManagerStore,
};
use casesync_core::channel::CursorKey;
use casesync_core::data_point::{ContentSource, DataPoint, Direction, Message, Participant};
use casesync_core::domain::{CaseId, ChannelName, ConnectionId};
use casesync_core::manage::{Manager, Policy};
use casesync_core::ports::{DataPointWriter, SystemClock};
use casesync_core::salesforce::{HttpSettings, OAuthApp, RetryPolicy, Salesforce};
use casesync_oauth_callback::Callback;
use chrono::{DateTime, TimeDelta, Utc};
use lambda_http::{Body, Response};
use secrecy::SecretString;
use serde_json::Value;
use sf_simulator::{Org, SimConfig, SimHandle, Simulator};
use url::Url;

pub const DOMAIN: &str = "k7x2m9q4ab.execute-api.eu-west-1.amazonaws.com";
pub const APP_URL: &str = "https://app.example.com/salesforce";
pub const CALLER: &str = "arn:aws:iam::123456789012:user/ops-admin";
/// How far behind now the read API reads in these tests.
pub const VISIBILITY_LAG: chrono::TimeDelta = chrono::TimeDelta::milliseconds(300);

pub fn callback_url() -> String {
    format!("https://{DOMAIN}/oauth/callback")
}

pub fn http() -> HttpSettings {
    HttpSettings {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        retry: RetryPolicy::fast(),
    }
}

pub struct World {
    pub aws: Moto,
    pub names: ResourceNames,
    pub sim: SimHandle,
    pub api: Api,
    pub callback: Callback,
    pub connections: Arc<DynamoConnectionStore>,
    pub data_points: Arc<DynamoDataPointStore>,
    pub secrets: Arc<SecretsManagerStore>,
}

/// A simulator serving the sample org (3 queues, 150 Cases), fresh tables, both handlers.
pub async fn world() -> World {
    world_with(SimConfig::default()).await
}

pub async fn world_with(config: SimConfig) -> World {
    let aws = casesync_aws::testing::moto().await;
    let names = aws.tables("api").await;
    let sim = Simulator::start(
        SimConfig {
            allowed_redirect_uris: Some(vec![callback_url()]),
            ..config
        },
        Org::sample(1, Utc::now()),
    )
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
    let connections = Arc::new(DynamoConnectionStore::new(
        aws.dynamodb(),
        &names.tables.connections,
    ));
    // Moto updates indexes with the write: a short visibility lag keeps the tests quick.
    let data_points = Arc::new(
        DynamoDataPointStore::new(aws.dynamodb(), &names.tables.data_points)
            .with_visibility_lag(VISIBILITY_LAG),
    );
    let auth_states = Arc::new(DynamoAuthStateStore::new(
        aws.dynamodb(),
        &names.tables.auth_states,
    ));
    let secrets = Arc::new(SecretsManagerStore::new(
        aws.secrets_manager(),
        &names.secret_prefix,
    ));
    let api = Api {
        manager: Manager {
            connections: connections.clone(),
            data_points: data_points.clone(),
            auth_states: auth_states.clone(),
            secrets: secrets.clone(),
            salesforce: salesforce.clone(),
            clock: Arc::new(SystemClock),
            policy: Policy {
                allow_loopback_login: true,
                delete_wait: Duration::from_millis(600),
                ..Policy::default()
            },
            actor: "the management API",
        },
        callback_url: None,
        feed: data_points.clone(),
        cursor_key: Arc::new(CursorKey::new(b"test cursor key".to_vec())),
    };
    let callback = Callback {
        oauth: salesforce.oauth.clone(),
        connections: connections.clone(),
        auth_states,
        secrets: secrets.clone(),
        app_url: Some(Url::parse(APP_URL).unwrap()),
        clock: Arc::new(SystemClock),
    };
    World {
        aws,
        names,
        sim,
        api,
        callback,
        connections,
        data_points,
        secrets,
    }
}

/// An answer of the API: status, JSON body, headers.
pub struct Answer {
    pub status: u16,
    pub json: Value,
    pub text: String,
    pub response: Response<Body>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
    }

    /// An error answer: asserts the status and code, returns the message.
    pub fn error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(self.json["code"], code, "{}", self.text);
        self.json["message"].as_str().expect("a message").to_owned()
    }
}

/// A payload 2.0 event as API Gateway sends it for an IAM-authorized route.
pub fn event(method: &str, path: &str, body: Option<&str>) -> String {
    let (raw_path, raw_query) = path.split_once('?').unwrap_or((path, ""));
    let route_key = format!("{method} {}", route_of(raw_path));
    let mut json = serde_json::json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": {
            "accept": "application/json",
            "content-length": body.map_or(0, str::len).to_string(),
            "content-type": "application/json",
            "host": DOMAIN,
            "user-agent": "aws-cli/2.15.0",
            "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
            "x-amz-date": "20240312T100000Z",
            "x-amz-security-token": "IQoJb3JpZ2luX2VjEXAMPLE",
            "x-amzn-trace-id": "Root=1-65f1c2d3-0123456789abcdef01234567",
            "x-forwarded-for": "198.51.100.20",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https"
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "k7x2m9q4ab",
            "authorizer": {
                "iam": {
                    "accessKey": "ASIAEXAMPLEKEY",
                    "accountId": "123456789012",
                    "callerId": "AIDAEXAMPLECALLER",
                    "cognitoIdentity": null,
                    "principalOrgId": null,
                    "userArn": CALLER,
                    "userId": "AIDAEXAMPLECALLER"
                }
            },
            "domainName": DOMAIN,
            "domainPrefix": "k7x2m9q4ab",
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": "198.51.100.20",
                "userAgent": "aws-cli/2.15.0"
            },
            "requestId": "Jx1Q2jKLoAMEVXw=",
            "routeKey": route_key,
            "stage": "$default",
            "time": "12/Mar/2024:10:00:00 +0000",
            "timeEpoch": 1710237600000i64
        },
        "isBase64Encoded": false
    });
    if let Some(id) = raw_path.split('/').nth(2) {
        json["pathParameters"] = serde_json::json!({ "id": id });
    }
    if let Some(body) = body {
        json["body"] = body.into();
    }
    json.to_string()
}

fn route_of(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').collect();
    match segments.as_slice() {
        ["", "connections", _, rest @ ..] => {
            let mut route = "/connections/{id}".to_owned();
            for s in rest {
                route.push('/');
                route.push_str(s);
            }
            route
        }
        _ => path.to_owned(),
    }
}

impl World {
    /// Sends a request through `lambda_http`'s own event decoding, as the runtime does.
    pub async fn call(&self, method: &str, path: &str, body: Option<&str>) -> Answer {
        self.call_event(&event(method, path, body)).await
    }

    pub async fn call_event(&self, event_json: &str) -> Answer {
        let req = lambda_http::request::from_str(event_json).expect("a valid payload 2.0 event");
        let response = self.api.handle(req).await;
        let text = match response.body() {
            Body::Text(t) => t.clone(),
            Body::Empty => String::new(),
            Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
        };
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status: response.status().as_u16(),
            json,
            text,
            response,
        }
    }

    /// The browser at Salesforce: GET the authorize URL, return the callback's query string.
    pub async fn authorize(&self, authorize_url: &str) -> String {
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let response = browser.get(authorize_url).send().await.unwrap();
        assert_eq!(
            response.status(),
            302,
            "the simulator redirects the browser"
        );
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let (base, query) = location.split_once('?').expect("a query on the callback");
        assert_eq!(base, callback_url(), "Salesforce returns to our callback");
        query.to_owned()
    }

    /// The browser back at casesync: the callback function handles Salesforce's redirect.
    pub async fn callback(&self, query: &str) -> ApiGatewayV2httpResponse {
        let json = serde_json::json!({
            "version": "2.0",
            "routeKey": "GET /oauth/callback",
            "rawPath": "/oauth/callback",
            "rawQueryString": query,
            "headers": {"host": DOMAIN, "accept": "text/html", "x-forwarded-proto": "https"},
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "k7x2m9q4ab",
                "domainName": DOMAIN,
                "domainPrefix": "k7x2m9q4ab",
                "http": {"method": "GET", "path": "/oauth/callback", "protocol": "HTTP/1.1",
                         "sourceIp": "203.0.113.7", "userAgent": "Mozilla/5.0"},
                "requestId": "Kx1Q2jKLoAMEVXw=",
                "routeKey": "GET /oauth/callback",
                "stage": "$default",
                "time": "12/Mar/2024:10:00:05 +0000",
                "timeEpoch": 1710237605000i64
            },
            "isBase64Encoded": false
        });
        self.callback
            .handle(serde_json::from_value(json).expect("a valid payload 2.0 event"))
            .await
    }

    /// The whole flow: `POST /connections`, Salesforce, the callback. Returns the connection
    /// id and the callback's query (it holds the code).
    pub async fn connect(&self, body: &str) -> (ConnectionId, String) {
        let started = self.call("POST", "/connections", Some(body)).await;
        assert_eq!(started.status, 201, "{}", started.text);
        let url = started.json["authorize_url"].as_str().unwrap().to_owned();
        let query = self.authorize(&url).await;
        let done = self.callback(&query).await;
        assert_eq!(done.status_code, 302, "{:?}", done.body);
        let location = Url::parse(done.headers["location"].to_str().unwrap()).unwrap();
        let id = location
            .query_pairs()
            .find(|(k, _)| k == "connection")
            .map(|(_, v)| ConnectionId::parse(&v).unwrap())
            .expect("the redirect names the connection");
        (id, query)
    }

    /// Every secret under this test's prefix: (name, value).
    pub async fn secret_values(&self) -> Vec<(String, String)> {
        self.aws.secrets_under(&self.names.secret_prefix).await
    }

    /// Every item of the three tables, as debug text (for "never stored" checks).
    pub async fn all_items(&self) -> String {
        let ddb = self.aws.dynamodb();
        let mut out = String::new();
        for table in [
            &self.names.tables.connections,
            &self.names.tables.data_points,
            &self.names.tables.auth_states,
        ] {
            let scan = ddb.scan().table_name(table).send().await.unwrap();
            out.push_str(&format!("{:?}\n", scan.items()));
        }
        out
    }

    /// Stores `n` data points for `connection`, as a worker would.
    pub async fn seed_points(&self, connection: &ConnectionId, n: usize) {
        let points: Vec<DataPoint> = (0..n).map(|i| point(connection, i)).collect();
        self.data_points.upsert_data_points(&points).await.unwrap();
    }
}

pub fn point(connection: &ConnectionId, i: usize) -> DataPoint {
    let case = CaseId::parse(&format!("500xx{i:010}")).unwrap();
    let at: DateTime<Utc> = "2024-03-01T09:15:02Z".parse().unwrap();
    DataPoint {
        id: DataPoint::id_for(connection, &case),
        connection_id: connection.clone(),
        channel: ChannelName::parse("support").unwrap(),
        case_number: format!("{:08}", i),
        case_id: case,
        subject: Some(format!("Printer {i} is on fire")),
        status: "Closed".into(),
        priority: Some("High".into()),
        origin: Some("Email".into()),
        case_type: None,
        created_date: at,
        system_modstamp: at + TimeDelta::minutes(i as i64),
        salesforce_link: "https://acme.my.salesforce.com/lightning/r/Case/x/view".into(),
        participant: Participant {
            email: Some("jane@example.com".into()),
            name: Some("Jane Doe".into()),
        },
        content_source: ContentSource::EmailThread,
        conversation: vec![Message {
            message_id: Some(format!("02sxx{i:010}")),
            direction: Some(Direction::Inbound),
            from_address: Some("jane@example.com".into()),
            from_name: Some("Jane Doe".into()),
            to_address: Some("support@acme.com".into()),
            sent_at: at,
            subject: Some("printer".into()),
            text: "Help, the printer is on fire.".into(),
        }],
    }
}

/// Whether `text` holds something shaped like a simulator access token (`<org id>!AR...`).
pub fn has_access_token(text: &str) -> bool {
    text.match_indices("!AR").any(|(i, _)| {
        i >= 15 && text.is_char_boundary(i - 15) && text[i - 15..i].starts_with("00D")
    })
}
