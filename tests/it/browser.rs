//! Browser tests: headless Chromium, driven through chromedriver (Debian's `chromium` and
//! `chromium-driver` packages, which `.ci/run` installs), clicks through the pages as a person
//! would: /connect → channels → the emulator's picker → Allow → callback → 302 → done page; a
//! GitHub event's card in the emulator inbox; the Deny path; pausing on /connections stops
//! delivery; and README's quick start as written, on the binary's defaults. Screenshots of the
//! pages go to `target/browser-artifacts/`.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::utils::*;

/// A chromedriver process, ended when dropped.
struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver() -> Driver {
    let path = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("chromedriver is not installed: `apt-get install chromium chromium-driver` (.ci/run does)");
    // A free port is only free until someone takes it: tests start servers on port 0 in
    // parallel. A chromedriver that could not bind exits; start another on a new port.
    for _ in 0..5 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if child.try_wait().unwrap().is_some() {
                break; // exited: the port was taken
            }
            let up = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            if up {
                return Driver {
                    child,
                    port,
                    _profile: tempfile::tempdir().unwrap(),
                };
            }
            assert!(
                std::time::Instant::now() < deadline,
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("chromedriver exited five times: no port it could listen on")
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let mut options = json!({"args": [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--window-size=1200,900",
        format!("--user-data-dir={}", driver._profile.path().display()),
    ]});
    if let Some(bin) = chromium {
        options["binary"] = json!(bin);
    }
    caps.insert("goog:chromeOptions".into(), options);
    // chromedriver answers its port before it takes sessions on some starts: a refused
    // connection is tried again, for a few seconds.
    let mut tries = 0;
    loop {
        let got = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await;
        match got {
            Ok(c) => return c,
            Err(fantoccini::error::NewSessionError::FailedC(_)) if tries < 20 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("cannot start headless Chromium through chromedriver: {e}"),
        }
    }
}

/// The page's main text; retried while a navigation replaces the page under it.
async fn text(c: &Client) -> String {
    let mut tries = 0;
    loop {
        let got = match c.find(Locator::Css("main")).await {
            Ok(main) => main.text().await,
            Err(e) => Err(e),
        };
        match got {
            Ok(t) => return t,
            Err(_) if tries < 40 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot read the page: {e}"),
        }
    }
}

/// Clicks the element `at` finds.
async fn click(c: &Client, at: Locator<'_>) {
    c.find(at)
        .await
        .unwrap_or_else(|e| panic!("nothing to click: {e}"))
        .click()
        .await
        .unwrap();
}

/// Signs in on the sign-in form the page shows.
async fn sign_in(c: &Client) {
    sign_in_with(c, ADMIN_TOKEN).await
}

/// Signs in with `token` on the sign-in form the page shows.
async fn sign_in_with(c: &Client, token: &str) {
    c.find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(token)
        .await
        .unwrap();
    click(c, Locator::Id("login")).await;
}

/// Waits until the page's main text contains `needle`.
async fn wait_main(c: &Client, needle: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let t = text(c).await;
        if t.contains(needle) {
            return t;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the page never said {needle:?}: {t}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn screenshot(c: &Client, name: &str) {
    let dir = root().join("target/browser-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    if let Ok(png) = c.screenshot().await {
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

async fn inbox_cards(g: &Gateway, group: &str) -> usize {
    let html = g.get_text(&format!("/emulator/inbox/{group}")).await;
    html.matches("<article class=\"card\"").count()
}

/// Ticks the channel `channel` on the /connect page, unless it is ticked already.
async fn tick_channel(c: &Client, channel: &str) {
    let tick = c
        .find(Locator::Css(&format!(
            "input[name=channel][value={channel}]"
        )))
        .await
        .unwrap();
    if !tick.is_selected().await.unwrap() {
        tick.click().await.unwrap();
    }
}

/// On /connect: ticks `channel`, presses Connect to Office 365, picks `group` in the emulator's
/// picker and allows; returns on the done page.
async fn connect_through_the_picker(c: &Client, base: &str, channel: &str, group: &str) {
    c.goto(&format!("{base}/connect")).await.unwrap();
    assert!(text(c).await.contains("Office 365 emulator"));
    tick_channel(c, channel).await;
    screenshot(c, "connect").await;
    click(c, Locator::Id("connect")).await;
    c.wait().for_element(Locator::Id("allow")).await.unwrap();
    assert!(c
        .current_url()
        .await
        .unwrap()
        .path()
        .starts_with("/emulator/connectors/Connect"));
    click(
        c,
        Locator::Css(&format!("input[name=target][value='teams:{group}']")),
    )
    .await;
    screenshot(c, "picker").await;
    click(c, Locator::Id("allow")).await;
    // Wherever Allow leads — the done page, or one of the emulator's pages that say why not
    // (served at the picker's own path) — say what it shows.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let done = loop {
        let url = c.current_url().await.unwrap();
        let refused = || async {
            let t = text(c).await;
            t.contains("Nothing was sent back") || t.contains("Invalid Request")
        };
        if url.path().starts_with("/connect/done/")
            || tokio::time::Instant::now() >= deadline
            || refused().await
        {
            break url;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let page = text(c).await;
    assert!(
        done.path().starts_with("/connect/done/con_"),
        "Allow led to {done}, which says: {page}"
    );
    assert!(
        done.query().is_none(),
        "the done page's URL carries no webhook data"
    );
    c.wait().for_element(Locator::Css("h1.ok")).await.unwrap();
    wait_main(c, group).await;
    screenshot(c, "done").await;
}

/// On /connect: presses Add to `flow` (`slack` or `discord`) and waits for the emulated
/// platform's page; its URL.
async fn press_add(c: &Client, flow: &str) -> url::Url {
    click(c, Locator::Id(&format!("add-{flow}"))).await;
    c.wait().for_element(Locator::Id("allow")).await.unwrap();
    let at = c.current_url().await.unwrap();
    assert!(at.path().starts_with(&format!("/emulator/{flow}/")), "{at}");
    at
}

/// /connect on `base`, tick `source`, press Add to `flow` (`slack` or `discord`), pick
/// `channel` (its id) on the emulated platform's page and press `decision` (`allow` or
/// `cancel`); the page that follows is the caller's to check. Returns the platform page's text.
async fn add_through_the_emulator(
    c: &Client,
    base: &str,
    flow: &str,
    source: &str,
    channel: &str,
    decision: &str,
) -> String {
    c.goto(&format!("{base}/connect")).await.unwrap();
    tick_channel(c, source).await;
    press_add(c, flow).await;
    click(
        c,
        Locator::Css(&format!("input[name=channel][value='{channel}']")),
    )
    .await;
    let shown = text(c).await;
    screenshot(c, &format!("{flow}-authorize")).await;
    click(c, Locator::Id(decision)).await;
    shown
}

/// `cardwire serve` as README's first step runs it: no config file, in `folder` (so the
/// built-in rules, templates and defaults apply), with the quick start's admin token.
fn defaults(folder: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cardwire"));
    cmd.arg("serve")
        .current_dir(folder)
        .env("CARDWIRE_ADMIN_TOKEN", "change-me")
        .env_remove("CARDWIRE_CONFIG")
        .env("RUST_LOG", "info");
    cmd
}

/// An emulated channel's messages (its inbox as JSON), once `ok` holds of them (30 s at most).
async fn inbox_until(inbox: &str, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let all: serde_json::Value = http
            .get(inbox)
            .header("accept", "application/json")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if ok(&all) {
            return all;
        }
        assert!(tokio::time::Instant::now() < deadline, "{all:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A child process killed when dropped (a failing test leaves no server behind).
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fenced `sh` block of README's quick start that contains `needle`, as written.
fn quick_start_block(needle: &str) -> String {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme
        .find("## Quick start")
        .expect("README has a quick start");
    let end = readme[start + 3..]
        .find("\n## ")
        .map_or(readme.len(), |i| start + 3 + i);
    let quick = &readme[start..end];
    quick
        .split("```sh")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .find(|b| b.contains(needle))
        .unwrap_or_else(|| panic!("no sh block with {needle:?} in README's quick start"))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// README's quick start, as a newcomer runs it: the binary started as step 1 says, with no
/// config file and in a fresh folder (so the built-in rules, templates and defaults apply);
/// step 2 as written: /connect, tick github and gitlab, Add to Slack, #deploys in the Slack
/// emulator, Allow; step 3's `curl` run as written (before the app exists), then its buttons:
/// Create a GitHub App in the emulator, Create, Install, Send a push (a push signed with
/// another secret refused), and Add a GitLab hook, Send a test event (a wrong token refused);
/// each card in the channel step 4 names. The log names none of the secrets made.
/// (Regression: on the defaults the emulator refused the http callback, and every test set
/// `targets.allow_http`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_quick_start_works_on_the_defaults() {
    let start = quick_start_block("serve");
    assert_eq!(
        start, "CARDWIRE_ADMIN_TOKEN=change-me cargo run --release -- serve",
        "README's first step changed: update this test with it"
    );
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for step in [
        "tick `github` and `gitlab`, press\n   **Add to Slack**, pick `#deploys`",
        "press **Create a GitHub App** beside `github`",
        "press **Create GitHub App**, then\n   **Install**, then **Send a push**",
        "open **Add a GitLab hook** beside `gitlab`",
        "then **Send a test event**",
        "<http://127.0.0.1:8080/emulator/slack/inbox/deploys>",
    ] {
        assert!(
            readme.contains(step),
            "README's quick start changed: update this test with it ({step})"
        );
    }
    let folder = tempfile::tempdir().unwrap();
    let mut cmd = defaults(folder.path());
    // The documented address when it is free; another port otherwise, said out loud (the
    // defaults are otherwise the same: public_url follows the address bound).
    if TcpListener::bind("127.0.0.1:8080").is_err() {
        eprintln!("127.0.0.1:8080 is taken: the quick start runs with --listen 127.0.0.1:0");
        cmd.args(["--listen", "127.0.0.1:0"]);
    }
    let (child, addr, log) = spawn_serve(cmd);
    let mut child = Kill(child);
    let base = format!("http://{addr}");

    let driver = chromedriver();
    let c = browser(&driver).await;
    // Step 2: /connect, tick github and gitlab, Add to Slack, #deploys, Allow.
    c.goto(&format!("{base}/connect")).await.unwrap();
    tick_channel(&c, "github").await;
    tick_channel(&c, "gitlab").await;
    press_add(&c, "slack").await;
    click(&c, Locator::Css("input[name=channel][value='C0EMUDEPLOY']")).await;
    assert!(text(&c).await.contains("#deploys"));
    click(&c, Locator::Id("allow")).await;
    c.wait().for_element(Locator::Css("h1.ok")).await.unwrap();

    // Step 3's curl, as written, from the repository's root (it names a fixture by path).
    let curl = quick_start_block("/hooks/github").replace("http://127.0.0.1:8080", &base);
    let out = Command::new("bash")
        .args(["-c", &curl])
        .current_dir(root())
        .output()
        .expect("curl (README's step 3) runs");
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && answer.contains("\"id\":\"evt_"),
        "README's curl answered {answer:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inbox = format!("{base}/emulator/slack/inbox/deploys");
    let http = reqwest::Client::new();
    inbox_until(&inbox, |all| all.as_array().map_or(0, Vec::len) >= 1).await;

    // Step 3's buttons: /sources (sign in), Create a GitHub App, Create, Install.
    c.goto(&format!("{base}/sources")).await.unwrap();
    sign_in_with(&c, "change-me").await;
    wait_main(&c, "Create a GitHub App").await;
    screenshot(&c, "sources").await;
    click(&c, Locator::Id("create-github")).await;
    c.wait()
        .for_element(Locator::Id("create-app"))
        .await
        .unwrap();
    let shown = text(&c).await;
    assert!(
        shown.contains(&format!("{base}/hooks/github")) && shown.contains("pull_request"),
        "the emulated GitHub shows the app asked for: {shown}"
    );
    screenshot(&c, "github-manifest").await;
    click(&c, Locator::Id("create-app")).await;
    c.wait().for_element(Locator::Id("install")).await.unwrap();
    click(&c, Locator::Id("install")).await;
    wait_main(&c, "octocat: Codertocat/Hello-World").await;
    // The app's page, from /sources; Send a push.
    click(&c, Locator::Css("a[href*='/emulator/github/apps/']")).await;
    c.wait()
        .for_element(Locator::Id("send-push"))
        .await
        .unwrap();
    click(&c, Locator::Id("send-push")).await;
    wait_main(&c, "answered 202").await;
    let all = inbox_until(&inbox, |all| all.as_array().map_or(0, Vec::len) >= 2).await;
    assert!(
        all.to_string().contains("Codertocat/Hello-World"),
        "{all:#}"
    );
    // A push signed with another secret, or not signed (as README's curl), is refused now.
    let push = fixture("github/push.event.4.json");
    for signature in [Some("sha256=0000"), None] {
        let mut req = http
            .post(format!("{base}/hooks/github"))
            .header("content-type", "application/json")
            .header("x-github-event", "push");
        if let Some(s) = signature {
            req = req.header("x-hub-signature-256", s);
        }
        let res = req.body(push.clone()).send().await.unwrap();
        assert_eq!(res.status(), 401, "{signature:?}");
    }

    // GitLab: Add a GitLab hook (the emulator's project and token filled in), Send a test
    // event.
    c.goto(&format!("{base}/sources")).await.unwrap();
    click(&c, Locator::Id("add-hooks-gitlab")).await;
    wait_main(&c, "GitLab hooks added").await;
    screenshot(&c, "gitlab-hooks-added").await;
    click(&c, Locator::Id("back")).await;
    wait_main(&c, "mike/diaspora").await;
    click(&c, Locator::Css("button[id^='test-hook-']")).await;
    wait_main(&c, "Test event sent").await;
    c.goto(&format!("{base}/sources")).await.unwrap();
    wait_main(&c, "the tokens of its GitLab hooks (1)").await;
    screenshot(&c, "sources-connected").await;
    let sources_page = c.source().await.unwrap();
    let all = inbox_until(&inbox, |all| all.as_array().map_or(0, Vec::len) >= 3).await;
    assert!(all.to_string().contains("mike/diaspora"), "{all:#}");
    let res = http
        .post(format!("{base}/hooks/gitlab"))
        .header("content-type", "application/json")
        .header("x-gitlab-event", "Push Hook")
        .header("x-gitlab-token", "guess")
        .body(fixture("gitlab/push.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // Step 4's promise: the cards in the channel's inbox.
    c.goto(&inbox).await.unwrap();
    let shown = text(&c).await;
    assert!(
        shown.contains("Codertocat/Hello-World") && shown.contains("pushed to"),
        "{shown}"
    );
    screenshot(&c, "quick-start-inbox").await;
    c.close().await.unwrap();

    // The log names none of the secrets made: the app's, the hook's, the access token.
    let _ = child.0.kill();
    let _ = child.0.wait();
    let lines: Vec<String> = log.try_iter().collect();
    assert!(
        lines.iter().any(|l| l.contains("GitHub App made")),
        "{lines:#?}"
    );
    let store = cardwire::store::Store::open(&folder.path().join("data"), None).unwrap();
    use cardwire::store::{SourceApps as _, SourceHooks as _};
    let app = store.source_apps().unwrap().remove(0);
    let hook = store.source_hooks().unwrap().remove(0);
    let pem_body = app.pem.lines().nth(1).unwrap_or_default().to_string();
    for secret in [
        app.webhook_secret.as_str(),
        app.client_secret.as_str(),
        pem_body.as_str(),
        hook.token.as_str(),
        cardwire::connect::gitlab_emulator::TOKEN,
    ] {
        assert!(!secret.is_empty());
        assert!(
            lines.iter().all(|l| !l.contains(secret)),
            "a log line names a secret"
        );
    }
    // Nor does /sources (the emulator's access token is no secret: the page offers it).
    for secret in [
        &app.webhook_secret,
        &app.client_secret,
        &pem_body,
        &hook.token,
    ] {
        assert!(
            !sources_page.contains(secret.as_str()),
            "/sources shows a secret"
        );
    }
}

/// On the defaults, as a newcomer: Add to Slack in the emulator (its bot gets `chat:write`),
/// then a pull request opened and merged: one message in the channel, that changed ("edited",
/// its first version on click).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_request_is_one_slack_message_that_changes_in_a_real_browser() {
    let folder = tempfile::tempdir().unwrap();
    let mut cmd = defaults(folder.path());
    cmd.args(["--listen", "127.0.0.1:0"]);
    let (child, addr, _log) = spawn_serve(cmd);
    let _child = Kill(child);
    let base = format!("http://{addr}");
    let driver = chromedriver();
    let c = browser(&driver).await;
    let page = add_through_the_emulator(&c, &base, "slack", "github", "C0EMUDEPLOY", "allow").await;
    assert!(
        page.contains("edit and reply"),
        "the bot's scope is asked for: {page}"
    );
    c.wait().for_element(Locator::Css("h1.ok")).await.unwrap();
    let http = reqwest::Client::new();
    for step in [
        "github/pull_request.opened.0.json",
        "github/pull_request.closed-merged.3.derived.json",
    ] {
        let res = http
            .post(format!("{base}/hooks/github"))
            .header("Content-Type", "application/json")
            .header("X-GitHub-Event", "pull_request")
            .body(fixture(step))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
    }
    let inbox = format!("{base}/emulator/slack/inbox/deploys");
    let messages = inbox_until(&inbox, |m| {
        m[0]["edits"].as_array().map_or(0, Vec::len) == 1
    })
    .await;
    assert_eq!(messages.as_array().unwrap().len(), 1, "{messages:#}");
    c.goto(&inbox).await.unwrap();
    let shown = text(&c).await;
    assert!(shown.contains("1 message"), "{shown}");
    assert!(shown.contains("pull request #2 merged"), "{shown}");
    assert!(
        !shown.contains("pull request #2 opened"),
        "the first version is folded: {shown}"
    );
    click(&c, Locator::Css("details.edits summary")).await;
    let shown = text(&c).await;
    assert!(shown.contains("pull request #2 opened"), "{shown}");
    screenshot(&c, "one-message-edited").await;
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_deny_and_pause_in_a_real_browser() {
    let g = emulated().await;
    let driver = chromedriver();
    let c = browser(&driver).await;

    // Connect: choose the github channel, press the button, pick a group, allow.
    connect_through_the_picker(&c, &g.url(""), "github", "Engineering").await;

    // A GitHub event: its card shows in the group's inbox.
    assert_eq!(
        g.github("push", &fixture("github/push.event.4.json"), Some("b1"))
            .await
            .status(),
        202
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while inbox_cards(&g, "engineering").await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no card in the inbox"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.goto(&g.url("/emulator/inbox/engineering")).await.unwrap();
    let inbox = text(&c).await;
    assert!(
        inbox.contains("Codertocat/Hello-World") && inbox.contains("pushed to master"),
        "{inbox}"
    );
    screenshot(&c, "inbox").await;

    // Deny: nothing is connected.
    c.goto(&g.url("/connect")).await.unwrap();
    click(&c, Locator::Id("connect")).await;
    c.wait().for_element(Locator::Id("deny")).await.unwrap();
    click(&c, Locator::Id("deny")).await;
    wait_main(&c, "You declined").await;
    assert_eq!(
        g.admin_get("/api/connections")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Pause on /connections: the next event is not delivered.
    c.goto(&g.url("/connections")).await.unwrap();
    sign_in(&c).await;
    c.wait().for_element(Locator::Css("table")).await.unwrap();
    click(&c, Locator::Css("button[value=pause]")).await;
    c.wait()
        .for_element(Locator::Css("button[value=resume]"))
        .await
        .unwrap();
    wait_main(&c, "paused").await;
    screenshot(&c, "connections").await;
    let before = inbox_cards(&g, "engineering").await;
    assert_eq!(
        g.github("push", &fixture("github/push.event.5.json"), Some("b2"))
            .await
            .status(),
        202
    );
    // Recorded before the 202: the paused connection's card was skipped, not queued.
    g.wait_settled().await;
    assert_eq!(
        inbox_cards(&g, "engineering").await,
        before,
        "a paused connection receives nothing"
    );
    let list = g.admin_get("/api/connections").await;
    assert_eq!(
        (list[0]["paused"].as_bool(), list[0]["skipped"].as_u64()),
        (Some(true), Some(1))
    );

    c.close().await.unwrap();
}

/// Add to Slack and Add to Discord in a real browser, on the defaults (no config file, in a
/// fresh folder): from /connect through each emulated platform's page to the done page;
/// Cancel says "you declined" and stores nothing; a card of each platform's kind reaches the
/// channel picked, laid out as the platform shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_to_slack_and_discord_in_a_real_browser_on_the_defaults() {
    let folder = tempfile::tempdir().unwrap();
    let mut cmd = defaults(folder.path());
    cmd.args(["--listen", "127.0.0.1:0"]);
    let (child, addr, _log) = spawn_serve(cmd);
    let _child = Kill(child);
    let base = format!("http://{addr}");
    let driver = chromedriver();
    let c = browser(&driver).await;
    let http = reqwest::Client::new();
    let connections = || async {
        http.get(format!("{base}/api/connections"))
            .bearer_auth("change-me")
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .len()
    };

    for (flow, channel, allow) in [
        ("slack", "C0EMUALERTS", "allow"),
        ("discord", "345626669224982403", "allow"),
    ] {
        // Cancel first: nothing is connected.
        let before = connections().await;
        for decision in ["cancel", allow] {
            add_through_the_emulator(&c, &base, flow, "github", channel, decision).await;
            if decision == "cancel" {
                wait_main(&c, "You declined").await;
                assert_eq!(connections().await, before, "{flow}: cancel stored nothing");
            } else {
                c.wait().for_element(Locator::Css("h1.ok")).await.unwrap();
                let done = c.current_url().await.unwrap();
                assert!(done.path().starts_with("/connect/done/con_"), "{done}");
                assert!(done.query().is_none());
                screenshot(&c, &format!("{flow}-done")).await;
                assert_eq!(connections().await, before + 1);
            }
        }
    }

    // A push reaches both channels picked (the defaults' github source has no secret).
    let res = http
        .post(format!("{base}/hooks/github"))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", "browser-oauth-1")
        .body(std::fs::read(root().join("tests/fixtures/github/push.event.4.json")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
    for flow in ["slack", "discord"] {
        let inbox = format!("{base}/emulator/{flow}/inbox/alerts");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let html = http.get(&inbox).send().await.unwrap().text().await.unwrap();
            if html.contains(&format!("card {flow}")) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {flow} card: {html}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        c.goto(&inbox).await.unwrap();
        let shown = text(&c).await;
        assert!(shown.contains("Codertocat/Hello-World"), "{flow}: {shown}");
        screenshot(&c, &format!("{flow}-inbox")).await;
    }
    c.close().await.unwrap();
}

/// The refusals of both "Add to …" flows in a real browser: a forged state, a replayed one, an
/// expired one, and a code the platform refuses to exchange. Each is a 400 page saying why, and
/// none stores a connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_to_slack_and_discord_refusals_in_a_real_browser() {
    let g = emulated().await;
    let driver = chromedriver();
    let c = browser(&driver).await;
    let store = g.server.as_ref().unwrap().app().store.clone();

    for flow in ["slack", "discord"] {
        // Starts the flow in the browser; returns the state on the platform's page.
        let start = || async {
            c.goto(&g.url("/connect")).await.unwrap();
            let url = press_add(&c, flow).await;
            url.query_pairs()
                .find(|(k, _)| k == "state")
                .map(|(_, v)| v.to_string())
                .unwrap()
        };
        let callback = |state: &str, code: &str| {
            g.url(&format!(
                "/connect/{flow}/callback?code={code}&state={state}"
            ))
        };

        // Forged.
        c.goto(&callback("forged-0123456789abcdefghij", "x"))
            .await
            .unwrap();
        wait_main(&c, "unknown or was already used").await;

        // A code the platform never issued: the exchange fails, named.
        let state = start().await;
        c.goto(&callback(&state, "not-a-code")).await.unwrap();
        wait_main(
            &c,
            if flow == "slack" {
                "invalid_code"
            } else {
                "invalid_grant"
            },
        )
        .await;
        screenshot(&c, &format!("{flow}-failed-exchange")).await;

        // Replayed: that state is used up.
        c.goto(&callback(&state, "another")).await.unwrap();
        wait_main(&c, "already used").await;

        // Expired: started, then left for more than 10 minutes before Allow.
        let state = start().await;
        let mut record = store.flow_state(&state).unwrap().unwrap();
        record.created_ms -= 11 * 60 * 1000;
        store.put_flow_state(&state, &record).unwrap();
        click(&c, Locator::Id("allow")).await;
        wait_main(&c, "expired").await;
    }
    assert_eq!(
        g.admin_get("/api/connections")
            .await
            .as_array()
            .unwrap()
            .len(),
        0,
        "no refusal stored a connection"
    );
    c.close().await.unwrap();
}

/// Waits until the element's text satisfies `ok`; returns that text.
async fn wait_text(c: &Client, id: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        // A read that fails (the element replaced under us) is read again.
        let t = match c.find(Locator::Id(id)).await {
            Ok(e) => e.text().await.ok(),
            Err(_) => None,
        };
        let t = t.unwrap_or_else(|| "(not readable)".to_string());
        if t != "(not readable)" && ok(&t) {
            return t;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "#{id} never got there; it shows: {t}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sets a textarea's value as typing would, firing its input event.
async fn edit(c: &Client, id: &str, script: &str) {
    c.execute(
        &format!(
            "const t = document.getElementById('{id}'); t.value = ({script})(t.value); \
             t.dispatchEvent(new Event('input'));"
        ),
        vec![],
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_playground_previews_edits_and_sends_a_card() {
    let g = emulated().await;
    g.connect(&g.url("/emulator/inbox/playground"), "teams", &["github"])
        .await;
    let driver = chromedriver();
    let c = browser(&driver).await;

    // Signing in leads back to the playground.
    c.goto(&g.url("/playground")).await.unwrap();
    sign_in(&c).await;
    c.wait().for_element(Locator::Id("template")).await.unwrap();
    assert_eq!(c.current_url().await.unwrap().path(), "/playground");

    // Pick the push fixture: the rule matches and the preview shows the repository.
    c.wait()
        .for_element(Locator::XPath(
            "//select[@id='event']//option[text()='github/push.event.4.json']",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, "rules", |t| t.contains("✔ github-push")).await;
    wait_text(&c, "preview", |t| t.contains("Codertocat/Hello-World")).await;
    let original: String = c
        .execute("return document.getElementById('template').value", vec![])
        .await
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        original.contains("\"title\"") && !original.contains("MessageCard"),
        "the shipped push template is portable: {original}"
    );
    // The file shown is the one that exists, and Save says what it writes.
    let label = wait_text(&c, "template-name", |t| t.contains(".hbs")).await;
    assert!(
        label.starts_with("templates/github/push.card.hbs")
            && label.contains("the portable template, for every kind without an override"),
        "{label}"
    );
    if let Ok(png) = c
        .find(Locator::Id("preview"))
        .await
        .unwrap()
        .screenshot()
        .await
    {
        let dir = root().join("target/browser-artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("playground-preview.png"), png).unwrap();
    }

    // Break the template on its second line (a field the payload lacks): the error names that line.
    edit(
        &c,
        "template",
        "v => { const l = v.split('\\n'); l.splice(1, 0, '{{payload.no_such_field}}'); return l.join('\\n'); }",
    )
    .await;
    let errors = wait_text(&c, "errors", |t| !t.is_empty()).await;
    assert!(errors.contains("line 2"), "{errors}");
    screenshot(&c, "playground-error").await;

    // Fix it: the error goes and the preview is back.
    let fixed = serde_json::to_string(&original).unwrap();
    edit(&c, "template", &format!("() => {fixed}")).await;
    wait_text(&c, "errors", str::is_empty).await;
    wait_text(&c, "preview", |t| t.contains("Codertocat/Hello-World")).await;
    wait_text(&c, "size", |t| t.ends_with("of 28672 bytes")).await;

    // Edit the card JSON itself: the preview follows; broken JSON is named as such.
    edit(
        &c,
        "card",
        "v => v.replaceAll('Codertocat/Hello-World: pushed', 'Edited by hand: pushed')",
    )
    .await;
    wait_text(&c, "preview", |t| t.contains("Edited by hand")).await;
    edit(&c, "card", "v => v + ','").await;
    wait_text(&c, "errors", |t| t.contains("not JSON")).await;
    edit(&c, "card", "v => v.slice(0, -1)").await;
    wait_text(&c, "errors", str::is_empty).await;

    // Send it to the emulator's group: the outcome shows and the card arrives.
    click(&c, Locator::Id("send")).await;
    wait_text(&c, "outcome", |t| t.starts_with("Delivered")).await;
    // The live tail saw it go.
    wait_text(&c, "live", |t| {
        t.contains("queued") && t.contains("delivered")
    })
    .await;
    assert_eq!(inbox_cards(&g, "playground").await, 1);
    c.goto(&g.url("/emulator/inbox/playground")).await.unwrap();
    assert!(text(&c).await.contains("Codertocat/Hello-World"));

    // The Adaptive Card of the same rule, laid out by Microsoft's renderer.
    c.goto(&g.url("/playground")).await.unwrap();
    c.wait()
        .for_element(Locator::XPath(
            "//select[@id='event']//option[text()='github/push.event.4.json']",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, "preview", |t| t.contains("Codertocat/Hello-World")).await;
    click(
        &c,
        Locator::XPath("//select[@id='kind']/option[@value='workflow']"),
    )
    .await;
    c.wait()
        .for_element(Locator::Css("#preview .ac-adaptiveCard"))
        .await
        .unwrap();
    wait_text(&c, "preview", |t| t.contains("Hello-World")).await;
    screenshot(&c, "playground-adaptive").await;

    c.close().await.unwrap();
}

/// README's second command passes on a machine with only the Rust toolchain: it is `.ci/run`,
/// which installs every program these tests start (chromium, chromedriver, and curl for the
/// quick start) before it runs `cargo test`. (Regression: README said `cargo test`, which
/// panicked here where chromedriver was not installed.)
#[test]
fn the_readme_test_command_installs_what_the_tests_run() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let commands: Vec<&str> = readme
        .split("```sh")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(commands[0].starts_with("cargo run --release -- serve"));
    assert!(
        commands[1].starts_with(".ci/run "),
        "README's second command: {}",
        commands[1]
    );
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    for (program, package) in [
        ("chromium", "chromium"),
        ("chromedriver", "chromium-driver"),
        ("curl", "curl"),
    ] {
        assert!(
            ci.contains(&format!("command -v {program} "))
                && ci.contains(&format!("+=({package})")),
            ".ci/run does not install {package} for {program}"
        );
    }
    assert!(ci.contains("apt-get install") && ci.contains("cargo test --locked"));
    // The SDK models the Slack and Google Chat bodies are checked with (tests/it/sdk.rs).
    assert!(ci.contains("target/sdk-venv/bin/pip install -q -r tests/sdk/requirements.txt"));
}
