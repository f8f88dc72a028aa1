//! The admin pages, end to end: Debian's chromium, headless, driven through chromedriver by
//! fantoccini, against a real Herald and a real receiver. Every page visited is saved as a
//! screenshot under `target/ui-screenshots/<backend>/`.

#[path = "../common/mod.rs"]
mod common;

use crate::common::{wait_for, Backend, Behavior, TestApp, TestReceiver};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const WAIT: Duration = Duration::from_secs(20);

/// chromedriver on a free port, in a process group of its own with the browsers it starts:
/// the whole group ends when this is dropped, even when a failing test never closed its
/// session.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = self
            .child
            .id()
            .and_then(|pid| rustix::process::Pid::from_raw(pid as i32));
        if let Some(group) = group {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
    }
}

async fn start_driver() -> Driver {
    assert!(
        std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists(),
        "the UI tests need Debian's chromium and chromium-driver: run tests/setup.sh"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .process_group(0)
        .spawn()
        .expect("start chromedriver");
    let url = format!("http://127.0.0.1:{port}");
    let status = format!("{url}/status");
    wait_for(WAIT, "chromedriver to listen", || {
        let status = status.clone();
        async move {
            let r = reqwest::get(&status).await.ok()?;
            r.status().is_success().then_some(())
        }
    })
    .await;
    Driver { child, url }
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1000", "--force-prefers-reduced-motion"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a chromium session")
}

/// The browser, the app and where screenshots go.
struct Ui {
    c: Client,
    app: TestApp,
}

impl Ui {
    async fn go(&self, path: &str) {
        self.c.goto(&self.app.url(path)).await.unwrap();
    }

    /// The path and query the browser is at.
    async fn path(&self) -> String {
        let url = self.c.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }
    }

    /// Checks what every page must have, and saves its picture as `name`.
    async fn page(&self, name: &str) {
        let title = self.c.title().await.unwrap();
        assert!(title.ends_with(" | Herald"), "{name}: title {title:?}");
        let source = self.c.source().await.unwrap();
        for raw in [
            "panicked at",
            "stack backtrace",
            "minijinja",
            "undefined value",
            "Internal Server Error",
        ] {
            assert!(!source.contains(raw), "{name} shows raw error text {raw:?}");
        }
        let png = self.c.screenshot().await.unwrap();
        let backend = if self.app.dir.on_postgres() {
            "postgres"
        } else {
            "sqlite"
        };
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/ui-screenshots")
            .join(backend);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    async fn text(&self, css: &str) -> String {
        match self.c.find(Locator::Css(css)).await {
            Ok(el) => el.text().await.unwrap(),
            Err(e) => {
                let body = self.c.find(Locator::Css("body")).await.unwrap().text().await.unwrap();
                panic!("no {css} on {}: {e}\n--- the page reads:\n{body}", self.path().await);
            }
        }
    }

    async fn fill(&self, css: &str, value: &str) {
        let field = self.c.find(Locator::Css(css)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.c.find(Locator::Css(css)).await.unwrap().click().await.unwrap();
    }

    /// Clicks what leads to another page, and waits until that page has loaded.
    async fn follow(&self, css: &str) {
        let old = self.c.find(Locator::Css("html")).await.unwrap();
        self.click(css).await;
        let deadline = std::time::Instant::now() + WAIT;
        while old.tag_name().await.is_ok() {
            assert!(std::time::Instant::now() < deadline, "clicking {css} led nowhere");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        loop {
            let state = self.c.execute("return document.readyState", vec![]).await;
            if state.is_ok_and(|s| s == "complete") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the page after {css} never loaded"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Reloads until the text of `css` satisfies `ok`.
    async fn reload_until(&self, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Ok(el) = self.c.find(Locator::Css(css)).await {
                let text = el.text().await.unwrap_or_default();
                if ok(&text) {
                    return text;
                }
            }
            if std::time::Instant::now() > deadline {
                let body = self.c.find(Locator::Css("body")).await.unwrap().text().await.unwrap();
                panic!("timed out waiting for {what}\n--- the page reads:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            self.c.refresh().await.unwrap();
        }
    }

    async fn api(&self, method: &str, path: &str, body: Value) -> Value {
        let (status, answer) = self.app.call(method, path, Some(body)).await;
        assert!((200..300).contains(&status), "{method} {path}: {status} {answer}");
        answer
    }
}

async fn an_operator_runs_webhooks_from_the_browser(backend: Backend) {
    let driver = start_driver().await;
    let receiver = TestReceiver::start().await;
    let ui = Ui {
        c: browser(&driver).await,
        app: TestApp::spawn(backend).await,
    };

    // Anonymous: sent to log in, and back afterwards.
    ui.go("/extras/webhooks/").await;
    assert_eq!(ui.path().await, "/login/?next=%2Fextras%2Fwebhooks%2F");
    ui.page("login").await;
    ui.fill("#id_username", "admin").await;
    ui.fill("#id_password", "wrong").await;
    ui.follow("button[type=submit]").await;
    assert!(ui.text(".alert.danger").await.contains("Invalid username or password"));
    assert_eq!(
        ui.c.find(Locator::Css("#id_username"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("admin")
    );
    ui.page("login-failed").await;
    ui.fill("#id_password", "admin-password").await;
    ui.follow("button[type=submit]").await;
    assert_eq!(ui.path().await, "/extras/webhooks/");
    let cookie = ui.c.get_named_cookie("herald_session").await.unwrap();
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Lax)");
    ui.page("webhooks-empty").await;

    // Keyboard: the first Tab reaches "Skip to content".
    ui.go("/").await;
    ui.c.find(Locator::Css("body"))
        .await
        .unwrap()
        .send_keys("\u{E004}")
        .await
        .unwrap();
    let focused = ui.c.active_element().await.unwrap();
    assert_eq!(focused.text().await.unwrap(), "Skip to content");
    ui.page("dashboard-empty").await;

    // A webhook through the form: a template error shows inline with its line; fixed, it
    // previews and saves.
    ui.go("/extras/webhooks/add/").await;
    ui.page("webhook-add").await;
    ui.fill("#id_name", "Sites to the receiver").await;
    ui.c.find(Locator::Css("#id_content_types"))
        .await
        .unwrap()
        .select_by_value("dcim.site")
        .await
        .unwrap();
    ui.click("#id_type_create").await;
    ui.click("#id_type_update").await;
    ui.fill("#id_payload_url", &receiver.url("/hook")).await;
    ui.fill(
        "#id_body_template",
        "{\"site\": \"{{ data.name }}\",\n\"event\": \"{{ event }\"}",
    )
    .await;
    ui.fill("#id_secret", "s3cret").await;
    ui.fill("#id_retry_schedule", "600").await;
    ui.follow("button[value=save]:not(.sr-only)").await;
    let error = ui.text("#body_template_errors").await;
    assert!(error.contains("line 2"), "the template error names its line: {error}");
    assert!(ui.text("#error-summary").await.contains("body_template"));
    assert_eq!(ui.path().await, "/extras/webhooks/add/", "nothing saved");
    ui.page("webhook-add-error").await;
    ui.fill(
        "#id_body_template",
        "{\"site\": \"{{ data.name }}\", \"event\": \"{{ event }}\"}",
    )
    .await;
    // The secret typed before the error is still there: previewed, then saved, it is kept.
    ui.follow("button[value=preview]").await;
    let preview = ui.text("#preview-result").await;
    assert!(preview.contains(&receiver.url("/hook")), "{preview}");
    assert!(preview.contains("X-Hook-Signature"), "{preview}");
    assert!(preview.contains("\"event\": \"created\""), "{preview}");
    ui.page("webhook-preview").await;
    ui.follow("button[value=save]:not(.sr-only)").await;
    assert!(ui
        .text(".alert.success")
        .await
        .contains("Webhook Sites to the receiver created."));
    let webhook_path = ui.path().await;
    assert!(webhook_path.starts_with("/extras/webhooks/"), "{webhook_path}");
    ui.page("webhook-detail").await;

    // A change through the REST API: its delivery shows in the queue and succeeds.
    let site = ui
        .api(
            "POST",
            "/api/dcim/sites/",
            json!({"name": "Amsterdam 1", "slug": "ams1"}),
        )
        .await;
    ui.go("/extras/deliveries/").await;
    ui.reload_until("tbody tr:first-child td:nth-child(6)", "the delivery to succeed", |t| {
        t.contains("Succeeded")
    })
    .await;
    let sent = receiver.wait_for(1).await;
    assert!(sent[0].text().contains("Amsterdam 1"));
    {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha512>::new_from_slice(b"s3cret").unwrap();
        mac.update(&sent[0].body);
        assert_eq!(
            sent[0].header("x-hook-signature"),
            Some(hex::encode(mac.finalize().into_bytes()).as_str()),
            "signed by the secret typed before the error and the preview"
        );
    }
    ui.page("deliveries").await;

    // The receiver fails: the failure shows with its response.
    receiver.set(Behavior::Status(503, "maintenance until noon".into()));
    ui.api(
        "PATCH",
        &format!("/api/dcim/sites/{}/", site["id"]),
        json!({"description": "moved"}),
    )
    .await;
    ui.reload_until("tbody tr:first-child td:nth-child(6)", "the delivery to fail", |t| {
        t.contains("Retrying")
    })
    .await;
    ui.follow("tbody tr:first-child td:first-child a").await;
    let attempt = ui.text(".attempt").await;
    assert!(
        attempt.contains("503") && attempt.contains("maintenance until noon"),
        "{attempt}"
    );
    ui.page("delivery-failed").await;

    // Recovered: a retry by hand succeeds.
    receiver.set(Behavior::Status(200, "ok".into()));
    ui.follow("form[action$='/retry/'] button").await;
    assert!(ui.text(".alert.success").await.contains("queued again"));
    ui.reload_until("h1 .badge", "the retried delivery to succeed", |t| {
        t.contains("Succeeded")
    })
    .await;
    assert_eq!(ui.c.find_all(Locator::Css(".attempt")).await.unwrap().len(), 2);
    ui.page("delivery-retried").await;

    // The rest of the pages.
    ui.go("/").await;
    assert!(ui.text(".stats").await.to_lowercase().contains("success rate"));
    assert!(ui.c.find(Locator::Css("svg.chart rect.ok")).await.is_ok());
    ui.page("dashboard").await;
    ui.go("/dcim/sites/").await;
    assert!(ui.text("tbody").await.contains("Amsterdam 1"));
    ui.page("sites").await;
    ui.follow("tbody tr:first-child td:first-child a").await;
    assert!(ui.text(".card").await.contains("ams1"));
    ui.page("site").await;
    ui.go("/extras/changelog/").await;
    ui.page("changelog").await;
    ui.follow("tbody tr:first-child td:first-child a").await;
    assert!(ui.text("table.diff").await.contains("moved"));
    let produced = ui.text("section[aria-labelledby=c-deliveries] tbody").await;
    assert!(
        produced.contains("Sites to the receiver"),
        "the change's delivery: {produced}"
    );
    ui.page("change").await;
    ui.go("/user/api-tokens/").await;
    ui.fill("#id_description", "deploy script").await;
    ui.follow("form[action='/user/api-tokens/'] button[type=submit]").await;
    let key = ui.text("#new-token").await;
    let (status, _) = ui.app.call_as(&key, "GET", "/api/status/", None).await;
    assert_eq!(status, 200, "the token shown works");
    ui.page("tokens").await;
    ui.go("/user/password/").await;
    ui.page("password").await;
    ui.go("/extras/nothing-here/").await;
    assert!(ui.text("h1").await.contains("Not found"));
    ui.page("not-found").await;

    // An event rule, from the webhook's page: without an event it is refused, naming the
    // field; with one it saves, and its deliveries show beside the webhook's own.
    ui.go(&webhook_path).await;
    ui.follow("a[href^='/extras/event-rules/add/']").await;
    ui.page("event-rule-add").await;
    ui.fill("#id_name", "New sites, by rule").await;
    ui.c.find(Locator::Css("#id_object_types"))
        .await
        .unwrap()
        .select_by_value("dcim.site")
        .await
        .unwrap();
    ui.follow("button[type=submit].primary").await;
    assert!(ui.text("#event_types_errors").await.contains("may not be empty"));
    assert!(ui.text("#error-summary").await.contains("event_types"));
    ui.page("event-rule-add-error").await;
    ui.click("#id_event_created").await;
    ui.follow("button[type=submit].primary").await;
    assert!(ui
        .text(".alert.success")
        .await
        .contains("Event rule New sites, by rule created."));
    let rule_path = ui.path().await;
    assert!(ui
        .text("section[aria-labelledby=c-action]")
        .await
        .contains("Sites to the receiver"));
    ui.api("POST", "/api/dcim/sites/", json!({"name": "Rotterdam", "slug": "rtm"}))
        .await;
    let queued = ui
        .reload_until("section[aria-labelledby=c-deliveries]", "the rule's delivery", |t| {
            t.contains("dcim.site created") && t.contains("Succeeded")
        })
        .await;
    assert!(queued.contains("All 1 deliveries of this rule"), "{queued}");
    ui.page("event-rule-detail").await;
    ui.follow("section[aria-labelledby=c-deliveries] tbody a").await;
    assert!(ui.text(".card").await.contains("event rule New sites, by rule"));
    ui.page("delivery-by-rule").await;
    ui.go("/extras/event-rules/").await;
    assert!(ui.text("tbody").await.contains("Sites to the receiver"));
    ui.page("event-rules").await;
    ui.go(&webhook_path).await;
    assert!(ui
        .text("section[aria-labelledby=c-rules]")
        .await
        .contains("New sites, by rule"));
    ui.page("webhook-with-rule").await;
    assert!(rule_path.starts_with("/extras/event-rules/"), "{rule_path}");

    // A form without its CSRF token is refused, and nothing happens.
    ui.go(&format!("{webhook_path}delete/")).await;
    ui.page("webhook-delete").await;
    ui.c.execute(
        "document.querySelectorAll('input[name=csrf_token]').forEach(e => e.remove())",
        vec![],
    )
    .await
    .unwrap();
    ui.follow("button.danger").await;
    assert_eq!(ui.c.title().await.unwrap(), "Form refused | Herald");
    ui.page("csrf-refused").await;
    ui.go("/extras/webhooks/").await;
    assert!(ui.text("tbody").await.contains("Sites to the receiver"));

    // Deleting, with its token.
    ui.go(&format!("{webhook_path}delete/")).await;
    ui.follow("button.danger").await;
    assert!(ui.text(".alert.success").await.contains("deleted"));
    assert!(ui.c.find(Locator::Css("tbody")).await.is_err(), "no webhooks left");
    ui.page("webhooks-after-delete").await;

    // Logging out ends the session.
    ui.follow(".usermenu button").await;
    assert!(ui.path().await.starts_with("/login/"));
    ui.go("/").await;
    assert_eq!(ui.path().await, "/login/?next=%2F");

    ui.c.close().await.unwrap();
    ui.app.stop().await;
}

crate::on_each_backend!(; multi_thread: an_operator_runs_webhooks_from_the_browser);
