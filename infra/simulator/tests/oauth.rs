//! OAuth over HTTP: authorize (+PKCE), code exchange, refresh with and without rotation,
//! revoke, and the separation of login and instance hosts.

mod common;

use base64::Engine;
use common::*;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use sf_simulator::{AuthorizeMode, Org, SimConfig, Simulator};
use sha2::{Digest, Sha256};

const REDIRECT: &str = "http://127.0.0.1:8765/oauth/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXkdBjftJeZ4CVP-mB92K27uhbU";

fn challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

async fn authorize(
    sim: &sf_simulator::SimHandle,
    params: &[(&str, &str)],
) -> (StatusCode, Option<url::Url>, String) {
    let r = client()
        .get(format!("{}/services/oauth2/authorize", sim.login_url()))
        .query(params)
        .send()
        .await
        .expect("authorize");
    let status = r.status();
    let location = r
        .headers()
        .get("location")
        .map(|l| url::Url::parse(l.to_str().expect("ascii")).expect("absolute URL"));
    (status, location, r.text().await.unwrap_or_default())
}

fn q(u: &url::Url, name: &str) -> Option<String> {
    u.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

async fn code_for(sim: &sf_simulator::SimHandle, scope: &str) -> String {
    let id = sim.client_id();
    let ch = challenge(VERIFIER);
    let (status, loc, _) = authorize(
        sim,
        &[
            ("response_type", "code"),
            ("client_id", &id),
            ("redirect_uri", REDIRECT),
            ("scope", scope),
            ("state", "s1"),
            ("code_challenge", &ch),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::FOUND);
    q(&loc.expect("redirect"), "code").expect("code")
}

fn exchange_form<'a>(
    sim_id: &'a str,
    secret: &'a str,
    code: &'a str,
    verifier: Option<&'a str>,
) -> Vec<(&'a str, &'a str)> {
    let mut f = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("client_id", sim_id),
        ("client_secret", secret),
        ("redirect_uri", REDIRECT),
    ];
    if let Some(v) = verifier {
        f.push(("code_verifier", v));
    }
    f
}

#[tokio::test]
async fn code_flow_with_pkce_issues_salesforce_shaped_tokens() {
    let sim = Simulator::start(SimConfig::default(), Org::new())
        .await
        .expect("starts");
    let http = client();
    let (id, secret) = (sim.client_id(), sim.client_secret());
    let ch = challenge(VERIFIER);
    // Given an authorize request with PKCE and a state that needs encoding
    let (status, loc, _) = authorize(
        &sim,
        &[
            ("response_type", "code"),
            ("client_id", &id),
            ("redirect_uri", REDIRECT),
            ("scope", "api refresh_token"),
            ("state", "a b+c/d"),
            ("code_challenge", &ch),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    // Then the browser is redirected to the callback with a code and the state echoed
    assert_eq!(status, StatusCode::FOUND);
    let loc = loc.expect("Location");
    assert!(loc.as_str().starts_with(REDIRECT));
    assert!(loc.as_str().contains("state=a%20b%2Bc%2Fd"), "{loc}");
    assert!(
        loc.as_str().contains("%3D%3D"),
        "the code is URL-encoded: {loc}"
    );
    let code = q(&loc, "code").expect("code");
    assert_eq!(q(&loc, "state").as_deref(), Some("a b+c/d"));

    // When the code is exchanged with the right verifier
    let (status, body) = token_request(
        &sim,
        &http,
        &exchange_form(&id, &secret, &code, Some(VERIFIER)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let obj = body.as_object().expect("object");
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    for k in [
        "access_token",
        "refresh_token",
        "signature",
        "scope",
        "instance_url",
        "id",
        "token_type",
        "issued_at",
    ] {
        assert!(keys.contains(&k), "missing {k}: {body}");
    }
    assert!(
        !keys.contains(&"expires_in"),
        "Salesforce never sends expires_in"
    );
    let access = body["access_token"].as_str().expect("string");
    assert!(
        access.starts_with("00D") && access[15..].starts_with("!AR"),
        "{access}"
    );
    assert_eq!(body["instance_url"], sim.instance_url());
    assert_ne!(sim.instance_url(), sim.login_url());
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "api refresh_token");
    let id_url = body["id"].as_str().expect("id");
    let tail = id_url
        .strip_prefix(&format!("{}/id/", sim.login_url()))
        .expect("identity URL on the login host");
    let parts: Vec<&str> = tail.split('/').collect();
    assert!(
        parts.len() == 2 && parts[0].len() == 18 && parts[1].len() == 18,
        "{id_url}"
    );
    let issued_at = body["issued_at"].as_str().expect("issued_at is a string");
    assert!(issued_at.len() >= 13 && issued_at.bytes().all(|b| b.is_ascii_digit()));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{id_url}{issued_at}").as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(body["signature"], expected);

    // And the access token works on the instance host, not on the login host
    let ok = http
        .get(format!("{}{V}/limits", sim.instance_url()))
        .bearer_auth(access)
        .send()
        .await
        .expect("limits");
    assert_eq!(ok.status(), StatusCode::OK);
    let wrong_host = http
        .get(format!("{}{V}/limits", sim.login_url()))
        .bearer_auth(access)
        .send()
        .await
        .expect("limits on login host");
    assert_eq!(wrong_host.status(), StatusCode::NOT_FOUND);
    let token_on_instance = http
        .post(format!("{}/services/oauth2/token", sim.instance_url()))
        .form(&[("grant_type", "refresh_token")])
        .send()
        .await
        .expect("token on instance");
    assert_eq!(token_on_instance.status(), StatusCode::NOT_FOUND);

    // And the code is single-use
    let (status, body) = token_request(
        &sim,
        &http,
        &exchange_form(&id, &secret, &code, Some(VERIFIER)),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(body["error_description"], "expired authorization code");
    assert_eq!(sim.stats().token_code, 2);
    assert_eq!(sim.stats().authorizes, 1);
}

#[tokio::test]
async fn pkce_and_client_checks_fail_like_salesforce() {
    let sim = Simulator::start(SimConfig::default(), Org::new())
        .await
        .expect("starts");
    let http = client();
    let (id, secret) = (sim.client_id(), sim.client_secret());

    let code = code_for(&sim, "api refresh_token").await;
    let (status, body) = token_request(
        &sim,
        &http,
        &exchange_form(
            &id,
            &secret,
            &code,
            Some("wrong-verifier-wrong-verifier-wrong-verifier-xx"),
        ),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );

    let code = code_for(&sim, "api refresh_token").await;
    let (status, body) =
        token_request(&sim, &http, &exchange_form(&id, &secret, &code, None)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );

    let code = code_for(&sim, "api refresh_token").await;
    let (status, body) = token_request(
        &sim,
        &http,
        &exchange_form(&id, "not-the-secret", &code, Some(VERIFIER)),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(body["error_description"], "invalid client credentials");

    let code = code_for(&sim, "api refresh_token").await;
    let (status, body) = token_request(
        &sim,
        &http,
        &exchange_form("someone-else", &secret, &code, Some(VERIFIER)),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_client_id"))
    );

    let code = code_for(&sim, "api refresh_token").await;
    let mut form = exchange_form(&id, &secret, &code, Some(VERIFIER));
    form[4] = ("redirect_uri", "http://127.0.0.1:9999/other");
    let (status, body) = token_request(&sim, &http, &form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("redirect_uri_mismatch"))
    );

    let code = code_for(&sim, "api refresh_token").await;
    sim.expire_authorization_codes();
    let (_, body) = token_request(
        &sim,
        &http,
        &exchange_form(&id, &secret, &code, Some(VERIFIER)),
    )
    .await;
    assert_eq!(body["error"], "invalid_grant");

    let (status, body) = token_request(&sim, &http, &[("grant_type", "password")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unsupported_grant_type"))
    );
    let (status, body) = token_request(&sim, &http, &[("client_id", "x")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );

    // Without the refresh_token scope there is no refresh token.
    let code = code_for(&sim, "api").await;
    let (status, body) = token_request(
        &sim,
        &http,
        &exchange_form(&id, &secret, &code, Some(VERIFIER)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.get("refresh_token").is_none(), "{body}");
}

#[tokio::test]
async fn authorize_errors_and_modes() {
    let sim = Simulator::start(SimConfig::default(), Org::new())
        .await
        .expect("starts");
    let id = sim.client_id();
    // Unknown client: an error page, no redirect.
    let (status, loc, body) = authorize(
        &sim,
        &[
            ("response_type", "code"),
            ("client_id", "nope"),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(loc.is_none());
    assert!(body.contains("invalid_client_id"));
    // Redirect URI that is not allowed: an error page, no redirect.
    let (status, loc, body) = authorize(
        &sim,
        &[
            ("response_type", "code"),
            ("client_id", &id),
            ("redirect_uri", "https://evil.example/cb"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(loc.is_none());
    assert!(body.contains("redirect_uri_mismatch"));
    // A configured allow-list is matched exactly.
    sim.update_config(|c| c.allowed_redirect_uris = Some(vec!["http://127.0.0.1:1/cb".into()]));
    let (status, _, _) = authorize(
        &sim,
        &[
            ("response_type", "code"),
            ("client_id", &id),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    sim.update_config(|c| c.allowed_redirect_uris = None);

    // The user denies.
    sim.update_config(|c| c.authorize_mode = AuthorizeMode::Deny);
    let (status, loc, _) = authorize(
        &sim,
        &[
            ("response_type", "code"),
            ("client_id", &id),
            ("redirect_uri", REDIRECT),
            ("state", "xyz"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(
        loc.expect("redirect").as_str(),
        format!(
            "{REDIRECT}?error=access_denied&error_description=end-user%20denied%20authorization&state=xyz"
        )
    );
    // The app is not installed for the org.
    sim.update_config(|c| c.authorize_mode = AuthorizeMode::AppNotInstalled);
    let (_, loc, _) = authorize(
        &sim,
        &[
            ("response_type", "code"),
            ("client_id", &id),
            ("redirect_uri", REDIRECT),
            ("state", "xyz"),
        ],
    )
    .await;
    let loc = loc.expect("redirect");
    assert_eq!(
        q(&loc, "error").as_deref(),
        Some("OAUTH_APPROVAL_ERROR_GENERIC")
    );
    assert_eq!(q(&loc, "state").as_deref(), Some("xyz"));
}

#[tokio::test]
async fn refresh_without_rotation_keeps_the_refresh_token() {
    let sim = Simulator::start(SimConfig::default(), Org::new())
        .await
        .expect("starts");
    let http = client();
    let rt = sim.mint_refresh_token();
    let a = refresh(&sim, &http, &rt).await;
    let b = refresh(&sim, &http, &rt).await;
    assert!(a.get("refresh_token").is_none() && b.get("refresh_token").is_none());
    assert_ne!(a["access_token"], b["access_token"]);
    assert!(sim.is_token_active(&rt));
    assert!(sim.is_token_active(a["access_token"].as_str().expect("s")));
    assert_eq!(sim.stats().token_refresh, 2);

    let (status, body) = token_request(
        &sim,
        &http,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "5Aep861unknown"),
            ("client_id", &sim.client_id()),
            ("client_secret", &sim.client_secret()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        serde_json::json!({"error": "invalid_grant", "error_description": "expired access/refresh token"})
    );
}

#[tokio::test]
async fn rotation_replay_of_an_old_refresh_token_revokes_the_family() {
    let config = SimConfig {
        rotate_refresh_tokens: true,
        ..SimConfig::default()
    };
    let ctx = start(config, Org::new()).await;
    let (sim, http) = (&ctx.sim, &ctx.http);
    // ctx.refresh_token was already used once by start(): it is rotated out.
    assert!(!sim.is_token_active(&ctx.refresh_token));
    let rt1 = sim.mint_refresh_token();
    let r = refresh(sim, http, &rt1).await;
    let rt2 = r["refresh_token"]
        .as_str()
        .expect("rotated token")
        .to_string();
    let at2 = r["access_token"].as_str().expect("at").to_string();
    assert_ne!(rt1, rt2);
    assert!(!sim.is_token_active(&rt1));
    let r = refresh(sim, http, &rt2).await;
    let rt3 = r["refresh_token"]
        .as_str()
        .expect("rotated token")
        .to_string();
    let at3 = r["access_token"].as_str().expect("at").to_string();
    assert!(sim.is_token_active(&rt3) && sim.is_token_active(&at3) && sim.is_token_active(&at2));

    // Replaying rt1 fails and kills the whole family.
    let (status, body) = token_request(
        sim,
        http,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt1),
            ("client_id", &sim.client_id()),
            ("client_secret", &sim.client_secret()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(body["error_description"], "expired access/refresh token");
    for t in [&rt2, &rt3, &at2, &at3] {
        assert!(!sim.is_token_active(t));
    }
    let dead = http
        .get(format!("{}{V}/limits", sim.instance_url()))
        .bearer_auth(&at3)
        .send()
        .await
        .expect("call");
    assert_eq!(dead.status(), StatusCode::UNAUTHORIZED);
    // Another family is untouched.
    let other = sim.mint_refresh_token();
    assert!(refresh(sim, http, &other).await["refresh_token"].is_string());
}

#[tokio::test]
async fn revoke_refresh_and_access_tokens() {
    let ctx = start(SimConfig::default(), Org::new()).await;
    let (sim, http) = (&ctx.sim, &ctx.http);
    let revoke = |token: String, post: bool| {
        let http = http.clone();
        let url = format!("{}/services/oauth2/revoke", sim.login_url());
        async move {
            let req = if post {
                http.post(url).form(&[("token", token)])
            } else {
                http.get(url).query(&[("token", token)])
            };
            collect(req.send().await.expect("revoke")).await
        }
    };
    // Revoking an access token (GET form) kills only that token.
    let at = refresh(sim, http, &ctx.refresh_token).await["access_token"]
        .as_str()
        .expect("at")
        .to_string();
    let got = revoke(at.clone(), false).await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(got.body.is_empty());
    assert!(!sim.is_token_active(&at));
    assert!(sim.is_token_active(&ctx.refresh_token));
    // Revoking the refresh token kills it and every access token derived from it.
    let got = revoke(ctx.refresh_token.clone(), true).await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(!sim.is_token_active(&ctx.refresh_token));
    assert!(!sim.is_token_active(&ctx.token));
    assert_eq!(
        ctx.get(&format!("{V}/limits")).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Unknown (or already revoked) tokens are an error.
    let got = revoke(ctx.refresh_token.clone(), true).await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
    assert_eq!(got.json()["error"], "invalid_token");
    assert_eq!(sim.stats().revokes, 3);
}

#[tokio::test]
async fn revoke_all_and_expire_access_tokens() {
    let ctx = start(SimConfig::default(), Org::new()).await;
    ctx.sim.expire_access_tokens();
    let got = ctx.get(&format!("{V}/limits")).await;
    assert_eq!(got.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        got.body,
        r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#
    );
    assert!(ctx.sim.is_token_active(&ctx.refresh_token));
    ctx.sim.revoke_all_tokens();
    assert!(!ctx.sim.is_token_active(&ctx.refresh_token));
}
