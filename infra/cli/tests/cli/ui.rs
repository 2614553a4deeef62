//! `casesync ui`: the web console, driven in a real browser (Chromium through chromedriver)
//! against the simulator over HTTP, and probed with a plain HTTP client for what a browser
//! would never show (refusals, headers).
//!
//! Screenshots of each step go to `$CASESYNC_SCREENSHOTS` when it is set (the docs' images are
//! made that way).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use chrono::TimeDelta;
use fantoccini::{Client, ClientBuilder, Locator};
use sf_simulator::{NewCase, NewEmail, Org};

use crate::support::{
    Casesync, REFRESH_TOKEN_PREFIX, Running, TestEnv, closed_case, files_under, free_port,
    minutes_ago, occurrences,
};

/// A headless Chromium driven through its chromedriver, in a throwaway profile.
struct Browser {
    client: Client,
    driver: tokio::process::Child,
    _profile: tempfile::TempDir,
    shots: Option<PathBuf>,
}

fn chromedriver() -> String {
    std::env::var("CASESYNC_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into())
}

fn chromium() -> String {
    std::env::var("CASESYNC_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

impl Browser {
    async fn start() -> Self {
        let port = free_port();
        let driver = tokio::process::Command::new(chromedriver())
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver runs (test.sh installs Debian's chromium-driver)");
        let profile = tempfile::tempdir().expect("a temp dir");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium(),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let client = loop {
            let attempt = ClientBuilder::rustls()
                .expect("TLS roots")
                .capabilities(caps.clone())
                .connect(&url)
                .await;
            match attempt {
                Ok(c) => break c,
                Err(e) if tokio::time::Instant::now() > deadline => {
                    panic!("no browser session: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        Self {
            client,
            driver,
            _profile: profile,
            shots: std::env::var_os("CASESYNC_SCREENSHOTS").map(PathBuf::from),
        }
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("the page loads");
    }

    /// The element `xpath` names, waited for (pages change after a click).
    async fn find(&self, xpath: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::XPath(xpath))
            .await
        {
            Ok(e) => e,
            Err(e) => {
                let url = self.client.current_url().await.map(|u| u.to_string());
                let text = self
                    .client
                    .find(Locator::Css("body"))
                    .await
                    .ok()
                    .map(|b| async move { b.text().await.ok() });
                let text = match text {
                    Some(t) => t.await,
                    None => None,
                };
                panic!("no {xpath} on the page ({e}); at {url:?}: {text:?}")
            }
        }
    }

    async fn click(&self, xpath: &str) {
        self.find(xpath).await.click().await.expect("clickable");
    }

    /// A button by its exact accessible text.
    async fn press(&self, text: &str) {
        self.click(&format!("//button[normalize-space()='{text}']"))
            .await;
    }

    /// A link by its exact text.
    async fn follow(&self, text: &str) {
        self.click(&format!("//a[normalize-space()='{text}']"))
            .await;
    }

    /// A radio button or check box by its label's exact text.
    async fn choose(&self, label: &str) {
        self.click(&format!("//label[normalize-space()='{label}']/input"))
            .await;
    }

    async fn checked(&self, label: &str) -> bool {
        self.find(&format!("//label[normalize-space()='{label}']/input"))
            .await
            .prop("checked")
            .await
            .expect("a check box")
            .as_deref()
            == Some("true")
    }

    /// A text field by its label's exact text.
    async fn fill(&self, label: &str, value: &str) {
        let field = self
            .find(&format!(
                "//*[@id=(//label[normalize-space()='{label}']/@for)]"
            ))
            .await;
        field.clear().await.expect("a text field");
        field.send_keys(value).await.expect("typing works");
    }

    async fn heading(&self) -> String {
        self.find("//h1").await.text().await.expect("text")
    }

    /// Waits until the page's `h1` reads `text`.
    async fn on_page(&self, text: &str) {
        self.find(&format!("//h1[normalize-space()=\"{text}\"]"))
            .await;
    }

    async fn text(&self, xpath: &str) -> String {
        self.find(xpath).await.text().await.expect("text")
    }

    async fn body(&self) -> String {
        self.text("//body").await
    }

    /// Waits until `xpath`'s text satisfies `pred` (the Sources page refreshes itself).
    async fn until_text(&self, xpath: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let text = self.text(xpath).await;
            if pred(&text) {
                return text;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{xpath} still reads {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn rows(&self) -> Vec<String> {
        let mut out = Vec::new();
        for row in self
            .client
            .find_all(Locator::XPath("//tbody/tr"))
            .await
            .expect("rows")
        {
            out.push(row.text().await.expect("text"));
        }
        out
    }

    async fn screenshot(&self, name: &str) {
        if let Some(dir) = &self.shots {
            std::fs::create_dir_all(dir).expect("the screenshot folder");
            let png = self.client.screenshot().await.expect("a screenshot");
            std::fs::write(dir.join(format!("{name}.png")), png).expect("write the screenshot");
        }
    }

    async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill().await;
    }
}

/// `casesync ui` on a free port against the simulator's Connected App; returns it and the
/// address it printed.
async fn console(env: &TestEnv, extra: &[&str]) -> (Running, String, u16) {
    let port = free_port().to_string();
    let client_id = env.sim.client_id();
    let mut args = vec![
        "ui",
        "--no-browser",
        "--port",
        &port,
        "--client-id",
        &client_id,
        "--interval",
        "1",
    ];
    args.extend_from_slice(extra);
    let running = Running::start(env.casesync(&args));
    let line = running
        .stdout_line(|l| l.starts_with("casesync console: "))
        .await;
    let url = line["casesync console: ".len()..].to_owned();
    (running, url, port.parse().expect("a port"))
}

/// Sends SIGTERM, as a service manager does.
fn terminate(running: &Running) {
    running.signal("-TERM");
}

const XSS_SUBJECT: &str = "<img src=x onerror=alert(1)>";
const XSS_BODY: &str = "<script>alert(1)</script> Please refund order 1234.";

/// Support's org: two queues to import, one to leave out, and Cases in and out of the backfill.
fn support_org() -> (Org, Vec<String>) {
    let mut org = Org::new();
    let tier1 = org.add_queue("Tier 1 Support", "Tier_1_Support");
    let billing = org.add_queue("Billing", "Billing");
    let spam = org.add_queue("Spam", "Spam");
    let mut imported = Vec::new();
    for i in 0..3 {
        imported.push(closed_case(
            &mut org,
            &tier1,
            minutes_ago(60 + i),
            &format!("Login fails {i}"),
        ));
    }
    imported.push(closed_case(
        &mut org,
        &billing,
        minutes_ago(50),
        "Invoice missing",
    ));
    // Text written by a stranger, meant to run in the console.
    let hostile = org.add_case(NewCase {
        subject: Some(XSS_SUBJECT.into()),
        status: "Closed".into(),
        owner_id: Some(billing.clone()),
        system_modstamp: Some(minutes_ago(40)),
        closed_date: Some(minutes_ago(40)),
        created_date: Some(minutes_ago(45)),
        ..NewCase::default()
    });
    org.add_email(
        &hostile,
        NewEmail {
            message_date: Some(minutes_ago(44)),
            from_address: Some("mallory@example.com".into()),
            from_name: Some("Mallory".into()),
            incoming: true,
            subject: Some(XSS_SUBJECT.into()),
            text_body: Some(XSS_BODY.into()),
            ..NewEmail::default()
        },
        false,
    );
    imported.push(hostile);
    // Not imported: another queue, and older than the backfill.
    closed_case(&mut org, &spam, minutes_ago(30), "Buy now");
    closed_case(
        &mut org,
        &tier1,
        minutes_ago(0) - TimeDelta::days(40),
        "Too old",
    );
    (org, imported)
}

#[tokio::test]
async fn console_connects_imports_browses_disconnects_and_deletes() {
    let (org, imported) = support_org();
    let env = TestEnv::start(org).await;
    let (running, url, port) = console(&env, &[]).await;
    let b = Browser::start().await;
    let base = format!("http://127.0.0.1:{port}");

    // The printed address signs the browser in, then leaves the address bar.
    b.goto(&url).await;
    b.on_page("Sources").await;
    let here = b.client.current_url().await.expect("a URL");
    assert!(!here.as_str().contains("launch"), "{here}");
    assert!(b.body().await.contains("No source is connected yet."));
    b.screenshot("01-sources-empty").await;

    // Connect data source → Salesforce → back to Configure import.
    b.follow("Connect data source").await;
    b.on_page("Connect data source").await;
    b.choose("Custom domain").await;
    b.fill("My Domain URL", &env.sim.login_url()).await;
    b.screenshot("02-connect").await;
    b.press("Continue to Salesforce").await;
    b.on_page("Configure import").await;
    assert!(b.checked("All queues").await, "every queue is the default");
    assert!(b.checked("Last 30 days").await, "30 days is the default");
    b.fill("Channel", "Support Trends").await;
    b.choose("All queues").await;
    b.choose("Tier 1 Support").await;
    b.choose("Billing").await;
    b.choose("Last 30 days").await;
    assert!(!b.checked("Spam").await);
    b.screenshot("03-configure").await;
    b.press("Import").await;

    // The Sources page follows the import by itself (no reload).
    b.on_page("Sources").await;
    let progress = "//*[@data-progress-for]";
    b.until_text(progress, |t| t == "Up to date").await;
    let points = b
        .until_text("//*[@data-points-for]", |t| t == imported.len().to_string())
        .await;
    assert_eq!(points, "5");
    let row = b.text("//tbody/tr").await;
    assert!(row.contains("Support Trends"), "{row}");
    assert!(row.contains("2 queues"), "{row}");
    assert!(row.contains("Last 30 days"), "{row}");
    b.screenshot("04-sources-imported").await;

    // The Channel: newest first, every imported Case, the hostile one as plain text.
    b.follow("Support Trends").await;
    b.on_page("Channel: Support Trends").await;
    // The chart: one bar per week, holding every imported Case.
    let bars = b
        .client
        .execute(
            "return Array.from(document.querySelectorAll('svg.chart title'), t => t.textContent);",
            vec![],
        )
        .await
        .expect("a script runs");
    let closed: u64 = bars
        .as_array()
        .expect("titles")
        .iter()
        .filter_map(|t| {
            t.as_str()?
                .split(": ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert_eq!(closed, 5, "{bars}");
    let rows = b.rows().await;
    assert_eq!(rows.len(), 5, "{rows:#?}");
    for subject in [
        "Login fails 0",
        "Login fails 1",
        "Login fails 2",
        "Invoice missing",
        XSS_SUBJECT,
    ] {
        assert!(
            rows.iter().any(|r| r.contains(subject)),
            "{subject}: {rows:#?}"
        );
    }
    assert!(b.client.get_alert_text().await.is_err(), "hostile text ran");

    // While the console runs, it keeps importing: a Case re-saved in Salesforce comes back
    // changed, at the top (newest change first).
    env.sim.with_org(|o| {
        o.update_case(&imported[0], |c| {
            c.subject = Some("Login fails again".into())
        });
        o.touch(&imported[0], minutes_ago(6));
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        b.client.refresh().await.expect("a reload");
        let rows = b.rows().await;
        if rows
            .first()
            .is_some_and(|r| r.contains("Login fails again"))
        {
            assert_eq!(rows.len(), 5, "the same Case, updated: {rows:#?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{rows:#?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    b.screenshot("05-channel").await;

    // Search, then one data point and its conversation.
    b.fill("Search", "invoice").await;
    b.press("Search").await;
    b.find("//p[contains(., 'matching')]").await;
    let rows = b.rows().await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert!(rows[0].contains("Invoice missing"));
    b.click("//tbody/tr/td[1]/a").await;
    b.find("//h1[contains(., 'Invoice missing')]").await;
    let conversation = b.text("//ol[@aria-label='Conversation']").await;
    assert!(
        conversation.contains("Inbound: Jane Doe <jane@example.com>"),
        "{conversation}"
    );
    assert!(conversation.contains("Help, please."), "{conversation}");
    assert!(conversation.contains("Outbound: Support"), "{conversation}");
    let link = b
        .find("//a[normalize-space()='Open in Salesforce']")
        .await
        .attr("href")
        .await
        .expect("an attribute")
        .expect("a link");
    assert!(link.starts_with(&env.sim.instance_url()), "{link}");
    b.screenshot("06-data-point").await;

    // The hostile Case's page: its text shown as written, nothing of it run.
    b.follow("Back to Support Trends").await;
    b.click("//tbody/tr[contains(., 'onerror')]/td[1]/a").await;
    b.find("//h1[contains(., 'onerror')]").await;
    assert!(b.heading().await.contains(XSS_SUBJECT));
    assert!(b.body().await.contains(XSS_BODY));
    // An alert would be open now (and every other command would fail).
    assert!(b.client.get_alert_text().await.is_err(), "hostile text ran");
    assert!(
        b.client
            .find_all(Locator::Css("main img, main script"))
            .await
            .expect("a query")
            .is_empty(),
        "hostile text became markup"
    );

    // Disconnect: the product's words; the data stays.
    b.goto(&format!("{base}/sources")).await;
    b.click("//summary[normalize-space()='More actions']").await;
    b.follow("Disconnect").await;
    let host = env
        .sim
        .instance_url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    assert_eq!(
        b.text("//*[@role='alertdialog']//p").await,
        format!(
            "Are you sure you want to disconnect Salesforce ({host}) from Support Trends? This \
             will immediately stop the Channel from ingesting any new data. Any data already \
             imported from this source will remain in the Channel."
        )
    );
    b.screenshot("07-disconnect").await;
    b.press("Disconnect").await;
    b.on_page("Sources").await;
    let row = b.text("//tbody/tr").await;
    assert!(row.contains("Disconnected"), "{row}");
    assert_eq!(b.text("//*[@data-points-for]").await, "5");
    assert_eq!(env.sim.stats().revokes, 0, "disconnect keeps the token");

    // Delete: the product's words; everything goes, the token is revoked.
    b.click("//summary[normalize-space()='More actions']").await;
    b.follow("Delete").await;
    assert_eq!(
        b.text("//*[@role='alertdialog']//p").await,
        format!(
            "Are you sure you want to delete Salesforce ({host}) from Support Trends? This will \
             delete all associated data points. This is permanent and cannot be undone."
        )
    );
    b.screenshot("08-delete").await;
    b.press("Delete").await;
    b.on_page("Deleted").await;
    let status = b.text("//*[@role='status']").await;
    assert!(status.contains("5 data points removed"), "{status}");
    assert_eq!(env.sim.stats().revokes, 1);
    b.follow("Back to Sources").await;
    assert!(b.body().await.contains("No source is connected yet."));
    b.close().await;

    terminate(&running);
    let out = running.finish().await;
    out.assert_code(0);
    assert!(env.export().await.is_empty());
    assert!(env.status().await.is_empty());
    // The refresh token was only ever in the secrets store (now empty of it), never in the
    // console's output.
    assert_eq!(
        occurrences(out.all().as_bytes(), REFRESH_TOKEN_PREFIX.as_bytes()),
        0
    );
    for file in files_under(&env.data_dir) {
        let bytes = std::fs::read(&file).expect("readable");
        assert_eq!(
            occurrences(&bytes, REFRESH_TOKEN_PREFIX.as_bytes()),
            0,
            "{}",
            file.display()
        );
    }
}

/// A client that keeps redirects and cookies to itself.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client")
}

/// The session cookie the printed address sets.
async fn sign_in(url: &str) -> String {
    let response = http().get(url).send().await.expect("the console answers");
    assert_eq!(response.status(), 303);
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a cookie")
        .to_owned();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert_eq!(
        response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok()),
        Some("/")
    );
    cookie.split(';').next().expect("a pair").to_owned()
}

#[tokio::test]
async fn console_refuses_strangers_other_sites_and_forged_forms() {
    let (org, _) = support_org();
    let env = TestEnv::start(org).await;
    let (running, url, port) = console(&env, &[]).await;
    let base = format!("http://127.0.0.1:{port}");
    let secret = url
        .split("launch=")
        .nth(1)
        .expect("a launch secret")
        .to_owned();

    // No cookie, a wrong secret, a foreign Host name (DNS rebinding): nothing.
    let r = http()
        .get(format!("{base}/sources"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(r.status(), 401);
    let r = http()
        .get(format!("{base}/?launch=not-{secret}"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(r.status(), 403);
    let r = http()
        .get(&url)
        .header("host", format!("evil.example:{port}"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(r.status(), 421);
    assert!(r.headers().get("set-cookie").is_none());

    // Signed in: the page's headers, and no secret in it.
    let cookie = sign_in(&url).await;
    let r = http()
        .get(format!("{base}/connect"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("an answer");
    assert_eq!(r.status(), 200);
    let csp = r
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .expect("a CSP")
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(
        r.headers()
            .get("x-frame-options")
            .and_then(|v| v.to_str().ok()),
        Some("DENY")
    );
    let page = r.text().await.expect("a page");
    assert!(!page.contains(&secret));
    let csrf = csrf_of(&page);

    // A form posted from another site, or without the token, does nothing.
    let form = |token: &str| {
        format!(
            "csrf={token}&environment=custom&my_domain={}",
            urlencode(&env.sim.login_url())
        )
    };
    let attempts = [
        ("sec-fetch-site", "cross-site".to_owned(), form(&csrf)),
        ("origin", "http://evil.example".to_owned(), form(&csrf)),
        ("origin", base.clone(), form("")),
        ("origin", base.clone(), form("forged")),
    ];
    for (name, value, body) in attempts {
        let r = http()
            .post(format!("{base}/connect"))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .header(name, value.clone())
            .body(body)
            .send()
            .await
            .expect("an answer");
        assert_eq!(r.status(), 403, "{name}: {value}");
    }
    assert_eq!(env.sim.stats().authorizes, 0);

    // The same form, from the console itself, goes to Salesforce.
    let r = http()
        .post(format!("{base}/connect"))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", &base)
        .body(form(&csrf))
        .send()
        .await
        .expect("an answer");
    assert_eq!(r.status(), 303);
    let to = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("a redirect");
    assert!(
        to.starts_with(&format!(
            "{}/services/oauth2/authorize?",
            env.sim.login_url()
        )),
        "{to}"
    );

    // Bad input gets a clear page, not a crash: a login host that is not Salesforce's.
    let r = http()
        .post(format!("{base}/connect"))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", &base)
        .body(format!(
            "csrf={csrf}&environment=custom&my_domain=http%3A%2F%2Fevil.example"
        ))
        .send()
        .await
        .expect("an answer");
    assert_eq!(r.status(), 400);
    assert!(r.text().await.expect("a page").contains("role=\"alert\""));

    terminate(&running);
    let out = running.finish().await;
    out.assert_code(0);
    assert!(out.stderr.contains("Stopped."), "{}", out.stderr);
    assert!(
        !out.stderr.contains(&secret),
        "the secret is printed once, on stdout"
    );
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Follows redirects by hand with the console's cookie (to the simulator's authorize page and
/// back); returns the last address and its page.
async fn follow_redirects(cookie: &str, mut url: String) -> (String, String) {
    for _ in 0..10 {
        let r = http()
            .get(&url)
            .header("cookie", cookie)
            .send()
            .await
            .expect("an answer");
        if !r.status().is_redirection() {
            assert_eq!(r.status(), 200, "{url}");
            return (url, r.text().await.expect("a page"));
        }
        let to = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .expect("a redirect")
            .to_owned();
        url = reqwest::Url::parse(&url)
            .and_then(|u| u.join(&to))
            .expect("a URL")
            .to_string();
    }
    panic!("too many redirects");
}

fn csrf_of(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the form's CSRF token")
        .to_owned()
}

#[tokio::test]
async fn console_demo_connects_its_simulator_and_retires_it_on_stop() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let data_dir = tmp.path().join("data");
    let port = free_port().to_string();
    let base = format!("http://127.0.0.1:{port}");
    let running = Running::start(Casesync::new(
        &data_dir,
        &[
            "ui",
            "--demo",
            "--no-browser",
            "--port",
            &port,
            "--interval",
            "1",
        ],
    ));
    let line = running
        .stdout_line(|l| l.starts_with("casesync console: "))
        .await;
    let url = &line["casesync console: ".len()..];
    let cookie = sign_in(url).await;
    let page = http()
        .get(format!("{base}/connect"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("an answer")
        .text()
        .await
        .expect("a page");
    // The simulator's login host is offered, pre-selected as the custom domain.
    let offered = page
        .split("id=\"my-domain\"")
        .nth(1)
        .and_then(|rest| rest.split("value=\"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .expect("a pre-filled My Domain URL")
        .to_owned();
    assert!(offered.starts_with("http://127.0.0.1:"), "{offered}");

    // Through Salesforce's (the simulator's) authorization and back, then Import.
    let r = http()
        .post(format!("{base}/connect"))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("sec-fetch-site", "same-origin")
        .body(format!(
            "csrf={}&environment=custom&my_domain={}",
            csrf_of(&page),
            urlencode(&offered)
        ))
        .send()
        .await
        .expect("an answer");
    assert_eq!(r.status(), 303);
    let authorize = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("to Salesforce")
        .to_owned();
    let (at, page) = follow_redirects(&cookie, authorize).await;
    assert!(at.ends_with("/configure"), "{at}");
    let r = http()
        .post(&at)
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("sec-fetch-site", "same-origin")
        .body(format!(
            "csrf={}&channel=Demo&all_queues=yes&backfill=30d",
            csrf_of(&page)
        ))
        .send()
        .await
        .expect("an answer");
    assert_eq!(r.status(), 303);

    // The sample org's closed queue Cases arrive while the console runs.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let progress: serde_json::Value = http()
            .get(format!("{base}/sources/progress"))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("an answer")
            .json()
            .await
            .expect("JSON");
        let source = &progress["sources"][0];
        if source["importing"] == false && source["data_points"].as_u64() > Some(0) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{progress}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Stopped, the simulator goes with it: its connection is disconnected, its token gone,
    // its data kept.
    terminate(&running);
    let out = running.finish().await;
    out.assert_code(0);
    assert!(
        out.stderr
            .contains("The demo's 1 connection(s) are now disconnected"),
        "{}",
        out.stderr
    );
    let status = Casesync::new(&data_dir, &["status", "--json"])
        .output()
        .await;
    status.assert_code(0);
    let status: Vec<serde_json::Value> = serde_json::from_str(&status.stdout).expect("JSON");
    assert_eq!(status.len(), 1);
    assert_eq!(status[0]["state"], "disconnected", "{:#?}", status[0]);
    let exported = Casesync::new(&data_dir, &["export"]).output().await;
    assert!(exported.stdout.lines().count() > 0);
    let secrets = std::fs::read(data_dir.join("secrets.json")).unwrap_or_default();
    assert_eq!(occurrences(&secrets, REFRESH_TOKEN_PREFIX.as_bytes()), 0);
}
