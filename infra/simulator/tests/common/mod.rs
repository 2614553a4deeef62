//! Shared helpers of the HTTP tests: a started simulator plus an access token.
#![allow(dead_code)]

use reqwest::StatusCode;
use serde_json::Value;
use sf_simulator::{Org, SimConfig, SimHandle, Simulator};

pub const V: &str = "/services/data/v59.0";

pub struct Ctx {
    pub sim: SimHandle,
    pub http: reqwest::Client,
    pub refresh_token: String,
    pub token: String,
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

pub async fn start(config: SimConfig, org: Org) -> Ctx {
    let sim = Simulator::start(config, org).await.expect("starts");
    let http = client();
    let refresh_token = sim.mint_refresh_token();
    let token = refresh(&sim, &http, &refresh_token).await["access_token"]
        .as_str()
        .expect("access token")
        .to_string();
    sim.reset_stats();
    Ctx {
        sim,
        http,
        refresh_token,
        token,
    }
}

pub async fn refresh(sim: &SimHandle, http: &reqwest::Client, rt: &str) -> Value {
    let r = token_request(
        sim,
        http,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", &sim.client_id()),
            ("client_secret", &sim.client_secret()),
        ],
    )
    .await;
    assert_eq!(r.0, StatusCode::OK, "refresh failed: {}", r.1);
    r.1
}

pub async fn token_request(
    sim: &SimHandle,
    http: &reqwest::Client,
    form: &[(&str, &str)],
) -> (StatusCode, Value) {
    let r = http
        .post(format!("{}/services/oauth2/token", sim.login_url()))
        .form(form)
        .send()
        .await
        .expect("token request");
    let status = r.status();
    let body = r
        .json::<Value>()
        .await
        .expect("token endpoints answer JSON");
    (status, body)
}

pub struct Got {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Got {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    pub fn error_code(&self) -> String {
        self.json()[0]["errorCode"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
    pub fn limit_info(&self) -> Option<String> {
        self.headers
            .get("sforce-limit-info")
            .map(|v| v.to_str().expect("ascii").to_string())
    }
}

impl Ctx {
    /// GET a path (or full URL) on the instance host with the access token.
    pub async fn get(&self, path: &str) -> Got {
        self.get_with(path, &[]).await
    }

    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Got {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.sim.instance_url())
        };
        let mut req = self.http.get(url).bearer_auth(&self.token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        collect(req.send().await.expect("request")).await
    }

    /// A new query, `q` form-encoded properly, optionally with `Sforce-Query-Options`.
    pub async fn query(&self, soql: &str, batch: Option<u32>) -> Got {
        let mut req = self
            .http
            .get(format!("{}{V}/query", self.sim.instance_url()))
            .query(&[("q", soql)])
            .bearer_auth(&self.token);
        if let Some(b) = batch {
            req = req.header("Sforce-Query-Options", format!("batchSize={b}"));
        }
        collect(req.send().await.expect("request")).await
    }

    /// Runs a query and follows `nextRecordsUrl` to the end; returns the pages.
    pub async fn query_all_pages(&self, soql: &str, batch: Option<u32>) -> Vec<Value> {
        let first = self.query(soql, batch).await;
        assert_eq!(first.status, StatusCode::OK, "{}", first.body);
        let mut pages = vec![first.json()];
        while let Some(next) = pages.last().and_then(|p| p["nextRecordsUrl"].as_str()) {
            let next = next.to_string();
            let got = self.get(&next).await;
            assert_eq!(got.status, StatusCode::OK, "{}", got.body);
            pages.push(got.json());
        }
        pages
    }
}

pub async fn collect(r: reqwest::Response) -> Got {
    let status = r.status();
    let headers = r.headers().clone();
    let body = r.text().await.expect("body");
    Got {
        status,
        headers,
        body,
    }
}

pub fn record_ids(pages: &[Value]) -> Vec<String> {
    pages
        .iter()
        .flat_map(|p| p["records"].as_array().cloned().unwrap_or_default())
        .map(|r| r["Id"].as_str().expect("Id").to_string())
        .collect()
}
