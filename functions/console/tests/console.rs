//! The console on AWS: its router as `lambda_http` serves it, wired by `ConsoleFn::from_env`
//! to DynamoDB, Secrets Manager and a Cognito user pool, all in moto's server over HTTP (the
//! real AWS SDK; the access tokens are moto's RS256 JWTs, checked against the pool's JWKS).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use aws_sdk_cognitoidentityprovider::types::{
    AttributeType, ExplicitAuthFlowsType, MessageActionType,
};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response};
use casesync_aws::Env;
use casesync_aws::testing::{Moto, ResourceNames};
use casesync_console_fn::ConsoleFn;
use casesync_console_fn::session::{CHALLENGE_COOKIE, RENEW_COOKIE, SESSION_COOKIE};
use casesync_core::ports::Clock;
use chrono::{DateTime, TimeDelta, Utc};
use http_body_util::BodyExt;
use tower::ServiceExt;

const HOST: &str = "k7x2m9q4ab.execute-api.us-east-1.amazonaws.com";
const USER: &str = "alice@example.com";
const TEMPORARY: &str = "Temporary-Passw0rd!";
const PASSWORD: &str = "A-much-longer-passw0rd!";

/// The wall clock, shifted by a settable number of seconds (expired sessions).
#[derive(Default)]
struct ShiftedClock(AtomicI64);

impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + TimeDelta::seconds(self.0.load(Ordering::SeqCst))
    }
}

struct World {
    _aws: Moto,
    _names: ResourceNames,
    app: Router,
    clock: Arc<ShiftedClock>,
    cognito: aws_sdk_cognitoidentityprovider::Client,
    pool_id: String,
}

async fn world() -> World {
    let aws = casesync_aws::testing::moto().await;
    let names = aws.tables("console").await;
    let sm = aws.secrets_manager();
    let app_secret = format!("{}/connected-app", names.secret_prefix);
    sm.create_secret()
        .name(&app_secret)
        .secret_string("the-consumer-secret")
        .send()
        .await
        .unwrap();
    let cursor_secret = format!("{}/cursor-key", names.secret_prefix);
    sm.create_secret()
        .name(&cursor_secret)
        .secret_string("a-generated-cursor-signing-key-0123456789")
        .send()
        .await
        .unwrap();

    // The stack's pool: no self sign-up, one app client without a secret.
    let cognito = aws_sdk_cognitoidentityprovider::Client::new(aws.sdk_config());
    let pool = cognito
        .create_user_pool()
        .pool_name(format!("{}-console", names.secret_prefix.replace('/', "-")))
        .admin_create_user_config(
            aws_sdk_cognitoidentityprovider::types::AdminCreateUserConfigType::builder()
                .allow_admin_create_user_only(true)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let pool_id = pool.user_pool().unwrap().id().unwrap().to_owned();
    let client = cognito
        .create_user_pool_client()
        .user_pool_id(&pool_id)
        .client_name("console")
        .explicit_auth_flows(ExplicitAuthFlowsType::AllowUserPasswordAuth)
        .explicit_auth_flows(ExplicitAuthFlowsType::AllowRefreshTokenAuth)
        .send()
        .await
        .unwrap();
    let client_id = client
        .user_pool_client()
        .unwrap()
        .client_id()
        .unwrap()
        .to_owned();
    // The one documented admin command: a user with a temporary password.
    cognito
        .admin_create_user()
        .user_pool_id(&pool_id)
        .username(USER)
        .user_attributes(
            AttributeType::builder()
                .name("email")
                .value(USER)
                .build()
                .unwrap(),
        )
        .temporary_password(TEMPORARY)
        .message_action(MessageActionType::Suppress)
        .send()
        .await
        .unwrap();

    let vars: Vec<(&'static str, String)> = vec![
        ("CONNECTIONS_TABLE", names.tables.connections.clone()),
        ("DATA_POINTS_TABLE", names.tables.data_points.clone()),
        ("AUTH_STATES_TABLE", names.tables.auth_states.clone()),
        ("SECRET_PREFIX", names.secret_prefix.clone()),
        ("SALESFORCE_CLIENT_ID", "3MVG9-the-consumer-key".into()),
        ("SALESFORCE_CLIENT_SECRET_ARN", app_secret),
        ("CURSOR_SECRET_ARN", cursor_secret),
        ("USER_POOL_ID", pool_id.clone()),
        ("USER_POOL_CLIENT_ID", client_id),
    ];
    let env = Env::from_fn(move |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    });
    let clock = Arc::new(ShiftedClock::default());
    let console = ConsoleFn::from_env_with_clock(aws.sdk_config(), env, clock.clone())
        .await
        .expect("the console starts");
    World {
        app: console.router(),
        _aws: aws,
        _names: names,
        clock,
        cognito,
        pool_id,
    }
}

struct Answer {
    status: u16,
    response: Response<Body>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
    }

    fn location(&self) -> &str {
        self.header("location").expect("a redirect")
    }

    /// The `Set-Cookie` header for `name`.
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }

    /// The value a `Set-Cookie` sets for `name` (`""` when it clears it).
    fn cookie_value(&self, name: &str) -> Option<String> {
        self.set_cookie(name)
            .map(|c| c.split(';').next().unwrap()[name.len() + 1..].to_owned())
    }

    fn csrf(&self) -> String {
        self.body
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a CSRF token in the page")
            .to_owned()
    }
}

/// The cookies of a signed-in browser.
#[derive(Clone, Default)]
struct Jar(Vec<(String, String)>);

impl Jar {
    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Takes what an answer sets (and drops what it clears), as a browser does.
    fn take(&mut self, a: &Answer) {
        for name in [SESSION_COOKIE, RENEW_COOKIE, CHALLENGE_COOKIE] {
            if let Some(value) = a.cookie_value(name) {
                self.0.retain(|(k, _)| k != name);
                if !value.is_empty() {
                    self.0.push((name.to_owned(), value));
                }
            }
        }
    }

    fn without(&self, name: &str) -> Jar {
        Jar(self.0.iter().filter(|(k, _)| k != name).cloned().collect())
    }
}

impl World {
    async fn send(&self, method: &str, path: &str, jar: &Jar, form: Option<&str>) -> Answer {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", HOST)
            .header("x-forwarded-proto", "https");
        if !jar.0.is_empty() {
            req = req.header("cookie", jar.header());
        }
        let req = match form {
            Some(body) => req
                .header("content-type", "application/x-www-form-urlencoded")
                .header("sec-fetch-site", "same-origin")
                .body(Body::from(body.to_owned())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let response = self.app.clone().oneshot(req).await.unwrap();
        let status = response.status().as_u16();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        Answer {
            status,
            response: Response::from_parts(parts, Body::empty()),
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, path: &str, jar: &Jar) -> Answer {
        self.send("GET", path, jar, None).await
    }

    async fn post(&self, path: &str, jar: &Jar, form: &str) -> Answer {
        self.send("POST", path, jar, Some(form)).await
    }

    /// A user whose password is already theirs, signed in.
    async fn signed_in(&self) -> Jar {
        self.cognito
            .admin_set_user_password()
            .user_pool_id(&self.pool_id)
            .username(USER)
            .password(PASSWORD)
            .permanent(true)
            .send()
            .await
            .unwrap();
        let a = self
            .post(
                "/console/sign-in",
                &Jar::default(),
                &format!(
                    "username={}&password={PASSWORD}&next=%2Fconsole%2Fsources",
                    enc(USER)
                ),
            )
            .await;
        assert_eq!(a.status, 303, "{}", a.body);
        let mut jar = Jar::default();
        jar.take(&a);
        assert!(jar.get(SESSION_COOKIE).is_some() && jar.get(RENEW_COOKIE).is_some());
        jar
    }
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn every_console_route_needs_a_signed_in_user() {
    let w = world().await;
    let nobody = Jar::default();

    // A page goes to sign-in, and says where it will come back to.
    let a = w.get("/console/sources", &nobody).await;
    assert_eq!(a.status, 303);
    assert_eq!(
        a.location(),
        "/console/sign-in?next=%2Fconsole%2Fsources&reason=required"
    );
    for path in ["/console", "/console/connect", "/console/channels/support"] {
        assert_eq!(w.get(path, &nobody).await.status, 303, "{path}");
    }
    // What is not a page is refused outright.
    assert_eq!(
        w.get("/console/sources/progress", &nobody).await.status,
        401
    );
    let a = w
        .post("/console/connect", &nobody, "environment=sandbox&csrf=x")
        .await;
    assert_eq!(a.status, 401);
    assert_eq!(
        w.post("/console/sign-out", &nobody, "csrf=x").await.status,
        401
    );

    // A token that is not the pool's (a forged or mangled JWT) is no session, and is dropped.
    let forged = Jar(vec![(
        SESSION_COOKIE.into(),
        "eyJhbGciOiJSUzI1NiIsImtpZCI6ImR1bW15In0.eyJzdWIiOiJtYWxsb3J5In0.c2lnbmF0dXJl".into(),
    )]);
    let a = w.get("/console/sources", &forged).await;
    assert_eq!(a.status, 303);
    assert_eq!(a.cookie_value(SESSION_COOKIE).as_deref(), Some(""));

    // Sign-in and the style sheet need nobody.
    let a = w.get("/console/sign-in", &nobody).await;
    assert_eq!(a.status, 200);
    assert!(a.body.contains("Sign in to casesync"));
    let csp = a.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(
        w.get("/console/assets/console.css", &nobody).await.status,
        200
    );
}

#[tokio::test]
async fn the_first_sign_in_chooses_a_password_then_the_console_opens() {
    let w = world().await;
    let nobody = Jar::default();

    // Wrong password, unknown user: the same words (no user enumeration).
    for (user, password) in [(USER, "wrong-password"), ("mallory@example.com", TEMPORARY)] {
        let a = w
            .post(
                "/console/sign-in",
                &nobody,
                &format!("username={}&password={}", enc(user), enc(password)),
            )
            .await;
        assert_eq!(a.status, 401, "{user}");
        assert!(
            a.body.contains("Incorrect username or password."),
            "{}",
            a.body
        );
        assert!(a.set_cookie(SESSION_COOKIE).is_none());
    }

    // The temporary password asks for a new one; Cognito's challenge stays in a cookie.
    let a = w
        .post(
            "/console/sign-in",
            &nobody,
            &format!(
                "username={}&password={}&next=%2Fconsole%2Fchannels%2Fsupport",
                enc(USER),
                enc(TEMPORARY)
            ),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("Choose a new password"));
    let challenge = a
        .cookie_value(CHALLENGE_COOKIE)
        .expect("the challenge cookie");
    assert!(!challenge.is_empty());
    assert!(
        !a.body.contains(&challenge),
        "the challenge is not in the page"
    );
    let mut jar = Jar::default();
    jar.take(&a);

    let a = w
        .post(
            "/console/new-password",
            &jar,
            &format!(
                "username={}&new_password=one-Passw0rd!&confirm_password=another-Passw0rd!",
                enc(USER)
            ),
        )
        .await;
    assert_eq!(a.status, 400);
    assert!(a.body.contains("The two passwords differ."));

    let a = w
        .post(
            "/console/new-password",
            &jar,
            &format!(
                "username={}&new_password={PASSWORD}&confirm_password={PASSWORD}&next=%2Fconsole%2Fchannels%2Fsupport",
                enc(USER)
            ),
        )
        .await;
    assert_eq!(a.status, 303, "{}", a.body);
    assert_eq!(a.location(), "/console/channels/support");
    for name in [SESSION_COOKIE, RENEW_COOKIE] {
        let cookie = a.set_cookie(name).expect("a session cookie");
        for flag in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
            assert!(cookie.contains(flag), "{name}: {flag} in {cookie}");
        }
    }
    assert_eq!(a.cookie_value(CHALLENGE_COOKIE).as_deref(), Some(""));
    jar.take(&a);

    // Signed in: the pages, with the user's name and a way out; no token in them.
    let a = w.get("/console/sources", &jar).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains(USER));
    assert!(a.body.contains("Sign out"));
    for token in [SESSION_COOKIE, RENEW_COOKIE] {
        assert!(!a.body.contains(jar.get(token).unwrap()));
    }
    assert_eq!(w.get("/console/sources/progress", &jar).await.status, 200);

    // The password now works directly.
    let a = w
        .post(
            "/console/sign-in",
            &nobody,
            &format!("username={}&password={}", enc(USER), enc(PASSWORD)),
        )
        .await;
    assert_eq!(a.status, 303);
    assert_eq!(a.location(), "/console/sources");
    // And no sign-in sends anyone off the console.
    let a = w
        .post(
            "/console/sign-in",
            &nobody,
            &format!(
                "username={}&password={}&next={}",
                enc(USER),
                enc(PASSWORD),
                enc("https://evil.example/")
            ),
        )
        .await;
    assert_eq!(a.location(), "/console/sources");
}

#[tokio::test]
async fn an_expired_session_is_renewed_or_goes_back_to_sign_in() {
    let w = world().await;
    let jar = w.signed_in().await;
    let old = jar.get(SESSION_COOKIE).unwrap().to_owned();
    // Moto's tokens live an hour, stamped in whole seconds: a few seconds later, move the
    // clock so that this token has expired but one issued now has not.
    tokio::time::sleep(Duration::from_secs(3)).await;
    w.clock.0.store(3600 - 1, Ordering::SeqCst);

    // With the refresh token: renewed on the way, the page served.
    let a = w.get("/console/sources", &jar).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let renewed = a.cookie_value(SESSION_COOKIE).expect("a renewed session");
    assert!(!renewed.is_empty() && renewed != old);

    // Without it: back to sign-in.
    let a = w.get("/console/sources", &jar.without(RENEW_COOKIE)).await;
    assert_eq!(a.status, 303);
    assert!(
        a.location().starts_with("/console/sign-in?"),
        "{}",
        a.location()
    );
}

#[tokio::test]
async fn sign_out_ends_the_session_everywhere() {
    let w = world().await;
    let jar = w.signed_in().await;
    let page = w.get("/console/sources", &jar).await;
    assert_eq!(page.status, 200);

    // Without the page's token (a forged form), nothing happens.
    let a = w.post("/console/sign-out", &jar, "csrf=forged").await;
    assert_eq!(a.status, 403);

    let a = w
        .post("/console/sign-out", &jar, &format!("csrf={}", page.csrf()))
        .await;
    assert_eq!(a.status, 303);
    assert_eq!(a.location(), "/console/sign-in?reason=signed-out");
    for name in [SESSION_COOKIE, RENEW_COOKIE, CHALLENGE_COOKIE] {
        assert_eq!(a.cookie_value(name).as_deref(), Some(""), "{name} cleared");
    }
    assert!(
        w.get("/console/sign-in?reason=signed-out", &Jar::default())
            .await
            .body
            .contains("You are signed out.")
    );

    // A copy of the refresh cookie no longer renews anything: Cognito revoked it.
    let a = w
        .get("/console/sources", &jar.without(SESSION_COOKIE))
        .await;
    assert_eq!(a.status, 303);
    assert_eq!(
        a.location(),
        "/console/sign-in?next=%2Fconsole%2Fsources&reason=ended"
    );
}

#[tokio::test]
async fn connecting_goes_to_salesforce_with_the_stacks_callback() {
    let w = world().await;
    let jar = w.signed_in().await;
    let page = w.get("/console/connect", &jar).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Salesforce environment"));

    // Another site's form, or a wrong token: refused.
    let a = w
        .post("/console/connect", &jar, "environment=sandbox&csrf=forged")
        .await;
    assert_eq!(a.status, 403);

    let a = w
        .post(
            "/console/connect",
            &jar,
            &format!("environment=sandbox&csrf={}", page.csrf()),
        )
        .await;
    assert_eq!(a.status, 303, "{}", a.body);
    let to = url::Url::parse(a.location()).unwrap();
    assert_eq!(to.host_str(), Some("test.salesforce.com"));
    assert_eq!(to.path(), "/services/oauth2/authorize");
    let redirect = to
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| v.into_owned());
    assert_eq!(
        redirect.as_deref(),
        Some(format!("https://{HOST}/oauth/callback").as_str())
    );
    assert!(
        to.query_pairs().any(|(k, _)| k == "code_challenge"),
        "PKCE: {to}"
    );
}
