//! The test harness: a real gateway on 127.0.0.1:0 with sled in a temp dir (or, with
//! `CARDWIRE_TEST_STORE=postgres`, a database of its own on a PostgreSQL server the suite
//! starts), and a receiver whose answers a test can script.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::any;
use axum::Router;
use cardwire::app::Server;
use cardwire::config::Config;
use cardwire::pipeline::Pipeline;
use serde_json::{json, Value};
use tokio::sync::Notify;

pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const GITHUB_SECRET: &str = "It's a Secret to Everybody";
pub const GITLAB_SECRET: &str = "gitlab-token";

/// The repository's root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A vendored fixture.
pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(root().join("tests/fixtures").join(name))
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// The config every test starts from: the shipped rules and templates, loopback targets
/// allowed, short retries.
pub fn test_config(data_dir: &Path) -> Config {
    let text = format!(
        r#"
listen: 127.0.0.1:0
data_dir: {data}
rules_dir: {root}/rules
templates_dir: {root}/templates
admin_token: {ADMIN_TOKEN}
max_body: 1MiB
sources:
  github: {{kind: github, secret: "{GITHUB_SECRET}"}}
  gitlab: {{kind: gitlab, secret: {GITLAB_SECRET}}}
  alertmanager: {{kind: alertmanager}}
  generic: {{kind: generic, event_field: type}}
targets:
  allow_http: true
  allowed_hosts: ["127.0.0.1"]
delivery:
  timeout: 5s
  retry_schedule: [50ms, 100ms, 150ms]
  pacing: false
"#,
        data = data_dir.display(),
        root = root().display(),
    );
    let mut config =
        Config::from_text(Path::new("test.yaml"), &text).unwrap_or_else(|e| panic!("{e}"));
    if crate::pg::on_postgres() {
        // The suite on PostgreSQL: a fresh database of the suite's server for each gateway.
        config.store.postgres = Some(cardwire::config::PostgresConfig {
            url: crate::pg::SharedPg::get().database(),
            pool: 4,
            lease: cardwire::store::pg::LEASE,
            tls: None,
        });
        config.connect.secrets_key = Some(PG_SECRETS_KEY.into());
    }
    config
}

/// The secrets key of gateways on PostgreSQL (a database has no data folder to keep one in).
pub const PG_SECRETS_KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

/// A gateway under test.
pub struct Gateway {
    pub server: Option<Server>,
    pub config: Config,
    pub client: reqwest::Client,
    _dir: Option<tempfile::TempDir>,
}

impl Gateway {
    /// Starts a gateway with the test config in a fresh data dir.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = test_config(dir.path());
        let mut g = Self::start_with(config).await;
        g._dir = Some(dir);
        g
    }

    /// Starts a gateway with this config.
    pub async fn start_with(config: Config) -> Self {
        let pipeline = Pipeline::load(&config).unwrap_or_else(|e| panic!("{e}"));
        let server = Server::start(config.clone(), pipeline).await.unwrap();
        Self {
            server: Some(server),
            config,
            client: reqwest::Client::new(),
            _dir: None,
        }
    }

    /// Keeps a temp dir alive as long as the gateway.
    pub fn keep(&mut self, dir: tempfile::TempDir) {
        self._dir = Some(dir);
    }

    /// Stops and starts again on the same data dir.
    pub async fn restart(&mut self) {
        self.stop().await;
        let pipeline = Pipeline::load(&self.config).unwrap();
        self.server = Some(Server::start(self.config.clone(), pipeline).await.unwrap());
    }

    /// Stops gracefully.
    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop().await.unwrap();
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.as_ref().expect("running").addr()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    /// Posts a GitHub event, signed.
    pub async fn github(
        &self,
        event: &str,
        body: &[u8],
        delivery: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .post(self.url("/hooks/github"))
            .header("Content-Type", "application/json")
            .header("X-GitHub-Event", event)
            .header(
                "X-Hub-Signature-256",
                cardwire::ingest::verify::sign(GITHUB_SECRET, body),
            )
            .body(body.to_vec());
        if let Some(d) = delivery {
            req = req.header("X-GitHub-Delivery", d);
        }
        req.send().await.unwrap()
    }

    /// GETs an admin API path and returns the JSON answer (asserting 200).
    pub async fn admin_get(&self, path: &str) -> Value {
        let res = self
            .client
            .get(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "GET {path}");
        res.json().await.unwrap()
    }

    /// GETs a path without credentials; the body as text.
    pub async fn get_text(&self, path: &str) -> String {
        let res = self.client.get(self.url(path)).send().await.unwrap();
        res.text().await.unwrap()
    }

    /// GETs an admin path until `ok` holds of its JSON (a card's outcome is recorded just
    /// after the receiver answered; polls for up to 5 s, then panics with what it got).
    pub async fn admin_get_until(&self, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let v = self.admin_get(path).await;
            if ok(&v) {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "GET {path}: still {v:#}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The deliveries `GET /api/deliveries?{query}` lists (one page of up to 1000).
    pub async fn deliveries(&self, query: &str) -> Vec<Value> {
        let v = self
            .admin_get(&format!("/api/deliveries?limit=1000&{query}"))
            .await;
        v["deliveries"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until no card is queued or retrying: every card staged so far has been delivered
    /// or buried, so nothing more can reach a receiver until another event comes (or a summary
    /// or digest falls due). What a test then asserts about the receiver is recorded state, not
    /// what happened to arrive within a sleep.
    pub async fn wait_settled(&self) {
        self.admin_get_until("/api/deliveries?state=queued&limit=1", |v| {
            v["deliveries"].as_array().is_some_and(Vec::is_empty)
        })
        .await;
        self.admin_get_until("/api/deliveries?state=retrying&limit=1", |v| {
            v["deliveries"].as_array().is_some_and(Vec::is_empty)
        })
        .await;
    }

    /// Adds a connection through the admin API; returns its id.
    pub async fn connect(&self, url: &str, kind: &str, channels: &[&str]) -> String {
        let res = self
            .client
            .post(self.url("/api/connections"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"name": format!("test {kind}"), "url": url, "kind": kind, "channels": channels}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
        let v: Value = res.json().await.unwrap();
        v["id"].as_str().unwrap().to_string()
    }
}

/// A rule's noise counters in an answer of `GET /api/rules`.
pub fn rule_stats(rules: &Value, name: &str) -> Value {
    rules["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no rule {name}: {rules}"))["stats"]
        .clone()
}

/// GETs a page with a client of the test's own (cookies, redirects as it is set up); the body.
pub async fn page(client: &reqwest::Client, url: &str) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

/// GETs an admin API path of a gateway running as a process (`cardwire serve`); the JSON.
pub async fn api_get(addr: &str, path: &str, token: &str) -> Value {
    reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    /// `POST`, `PATCH`, ...
    pub method: String,
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Value,
    /// When it arrived.
    pub at: std::time::Instant,
}

/// A scripted answer: status, body, headers.
type Answer = (u16, String, Vec<(String, String)>);

#[derive(Default)]
struct ReceiverState {
    received: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<Answer>>,
    delay: Mutex<Duration>,
    default: Mutex<(u16, String)>,
    arrived: Notify,
}

/// An HTTP receiver standing in for Teams. It answers `200 1` unless scripted otherwise.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<ReceiverState>,
}

impl Receiver {
    pub async fn start() -> Self {
        let state = Arc::new(ReceiverState::default());
        *state.default.lock().unwrap() = (200, "1".into());
        let app = Router::new()
            .route("/{*path}", any(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, state }
    }

    /// A webhook URL on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    /// The next answers, in order, before the default applies again.
    pub fn script(&self, answers: &[(u16, &str)]) {
        let mut s = self.state.script.lock().unwrap();
        s.extend(answers.iter().map(|(c, b)| (*c, b.to_string(), Vec::new())));
    }

    /// The next answer, with these headers.
    pub fn script_with(&self, status: u16, body: &str, headers: &[(&str, &str)]) {
        self.state.script.lock().unwrap().push_back((
            status,
            body.to_string(),
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ));
    }

    /// The next answer is a 429 with this Retry-After.
    pub fn throttle(&self, retry_after: &str) {
        self.state.script.lock().unwrap().push_back((
            429,
            "slow down".into(),
            vec![("retry-after".into(), retry_after.into())],
        ));
    }

    /// Every answer waits this long first.
    pub fn delay(&self, d: Duration) {
        *self.state.delay.lock().unwrap() = d;
    }

    /// The answer when nothing is scripted.
    pub fn answer(&self, status: u16, body: &str) {
        *self.state.default.lock().unwrap() = (status, body.to_string());
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Each request's method and path, in arrival order.
    pub fn calls(&self) -> Vec<(String, String)> {
        self.received()
            .iter()
            .map(|r| (r.method.clone(), r.path.clone()))
            .collect()
    }

    /// Waits until at least `n` requests arrived (panics after 10 s).
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.state.arrived.notified();
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("expected {n} requests, got {}: {:#?}", got.len(), got);
            }
        }
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.received.lock().unwrap().push(Received {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers,
        body,
        at: std::time::Instant::now(),
    });
    state.arrived.notify_waiters();
    let answer = state.script.lock().unwrap().pop_front().unwrap_or_else(|| {
        let (c, b) = state.default.lock().unwrap().clone();
        (c, b, Vec::new())
    });
    let delay = *state.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut res = (StatusCode::from_u16(answer.0).unwrap(), answer.1).into_response();
    for (k, v) in answer.2 {
        res.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    res
}

/// Starts `cardwire serve` as configured by `cmd` and returns it with the address it logged.
/// Its log is read on a thread, so the pipe never fills and a missing line cannot hang a test;
/// the whole log, from its first line, comes through the returned channel.
pub fn spawn_serve(
    mut cmd: std::process::Command,
) -> (
    std::process::Child,
    String,
    std::sync::mpsc::Receiver<String>,
) {
    use std::io::{BufRead, BufReader};
    let mut child = cmd.stderr(std::process::Stdio::piped()).spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let (log_tx, log) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    loop {
        let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(20)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server did not log its address");
        };
        let addr = line
            .contains("listening")
            .then(|| line.split("addr=").nth(1))
            .flatten()
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_string);
        let _ = log_tx.send(line);
        if let Some(addr) = addr {
            std::thread::spawn(move || {
                for line in rx {
                    let _ = log_tx.send(line);
                }
            });
            return (child, addr, log);
        }
    }
}

/// A browser: its own cookies, redirects not followed (the test follows them by hand).
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A gateway with the emulators on.
pub async fn emulated() -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.connect.emulator = Some(true);
    let mut g = Gateway::start_with(config).await;
    g.keep(dir);
    g
}

/// A redirect's target.
pub fn location(res: &reqwest::Response) -> String {
    res.headers()[reqwest::header::LOCATION]
        .to_str()
        .unwrap()
        .to_string()
}

/// A URL's query, by name.
pub fn query(url: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// What a Discord webhook at `/api/webhooks/1/t` receives for one message edited twice: the
/// post (its answer named message 9001), then two edits of it.
pub fn discord_post_then_two_edits() -> Vec<(String, String)> {
    vec![
        ("POST".into(), "/api/webhooks/1/t".into()),
        ("PATCH".into(), "/api/webhooks/1/t/messages/9001".into()),
        ("PATCH".into(), "/api/webhooks/1/t/messages/9001".into()),
    ]
}

/// Every file under `dir`, its folders' too.
pub fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}
