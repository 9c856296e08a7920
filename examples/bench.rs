//! The whole pipeline under load, against the HTTP floor of this machine.
//!
//! ```sh
//! cargo run --release --example bench -- [--duration 30s] [--connections 32] [--targets 1]
//!     [--spread] [--rate N] [--backlog 100000] [--floors] [--store sled|postgres]
//!     [--instances N] [--slow-clients N] [--history N,N,...] [--soak 1h [--rate 500]]
//!     [--against OLD_BINARY [--against-templates DIR] [--rounds 5]] [--peers]
//! ```
//!
//! It builds and starts the release `cardwire` binary as a subprocess (a real config file, sled
//! in a temp dir, pacing off, durability batched), a receiver on loopback standing in for Teams,
//! and a load generator (keep-alive, `--connections` concurrent requests) that posts a real
//! ~8 KB GitHub push payload (`tests/fixtures/github/push.event.4.json`, from
//! `@octokit/webhooks-examples`) with a valid signature. In the same run, the same load
//! generator drives a bare axum server that reads the body and answers 202: the baseline,
//! measured before cardwire's phase and again after it (the ratio is to their mean). The
//! baseline runs in a process of its own, as cardwire does (this program again, with a hidden
//! `--serve-floor`); in the load generator's own process it would share that runtime's
//! threads and come out some 10–15 % faster.
//!
//! With `--floors`, servers between the two are measured as well, each doing the baseline's
//! work plus, step by step, what every accepted event needs: check the HMAC signature, parse
//! the JSON, queue one card (of the size cardwire rendered) in cardwire's store and answer
//! after its group commit. They show how much of the gap is the bare minimum of durable work.
//!
//! With `--targets N`, each event's card goes to N webhook URLs; with `--spread` as well, the
//! events are spread over them instead (the payload under N repository names, one rule and one
//! URL per name), one card per event.
//! With `--rate N`, cardwire is offered N requests a second in all instead of as many as it
//! takes, and the cards that arrive during the load tell whether the pipeline keeps up.
//!
//! Then two start-up measurements: ready to serve with 200 rules, and ready after a restart
//! with `--backlog` (100,000) cards queued, plus the time to drain them and the cards lost.
//!
//! With `--slow-clients N`, none of the above: N clients that send half a request's headers
//! and then nothing, against the gateway's memory and its answers to others (see
//! `slow_clients`).
//!
//! With `--history 0,100000,1000000`, none of the above: the disk, start-up time and idle RSS
//! of a gateway keeping that many delivered records (each with its upstream delivery id), the
//! time a lookup of a new id takes on that store (and as a ratio to the empty one's in the same
//! run), and the disk after they are pruned (see `history`).
//!
//! With `--soak 1h --rate 500`, none of the above: an hour (any duration) at 500 events/s
//! against a receiver that fails one request in ten and answers 429 for 5 s every 2 minutes;
//! RSS, disk, queue depth and CPU every 10 s into a CSV and a PNG, then the events lost and the
//! slope of RSS and disk once pruning has started (see `soak`).
//!
//! With `--instances N`, none of the above: the load on sled, then on PostgreSQL with 1 to N
//! gateways sharing one database, the load spread over them (see `instances`).
//!
//! With `--instructions [--against OLD_BINARY --against-templates DIR] [--telemetry]`, none of the above:
//! the instructions an event costs, counted under valgrind (see `instructions`), for this
//! binary and another in the same run. Load phases on a shared machine spread ±15 % a round;
//! these counts repeat to within a few hundred instructions.
//!
//! With `--against OLD_BINARY [--against-templates DIR] [--rounds 5]` alone, none of the
//! above: the load A/B (see `ab`). Each round runs the load phase on both builds, one after the
//! other (the order alternating between rounds), each a fresh gateway with its own shipped
//! rules and templates; then, per build, the median of the rounds' requests/s, cards/s, p50 and
//! p99, CPU an event (every thread of the gateway's process) and peak RSS, and the ratios.
//!
//! With `--peers [--rounds 5]`, none of the above: cardwire and Node-RED (installed with npm into
//! `target/peers`, running a flow that verifies, matches, renders a MessageCard and posts it)
//! under the same load, alternating; cardwire's cards/s as a multiple of Node-RED's (see
//! `peers`).
//!
//! Everything talks to 127.0.0.1 only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cardwire::store::prelude::*;

use anyhow::{bail, Context, Result};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use clap::Parser;

/// jemalloc, as the `cardwire` binary has: the floor servers run in this program, and on
/// another allocator they would not be the floor that cardwire's work is added to.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const SECRET: &str = "bench-secret";
const TOKEN: &str = "bench-admin-token";

#[derive(Parser, Debug)]
#[command(about = "cardwire's end-to-end benchmark (see the module docs)")]
struct Args {
    /// How long each load phase runs.
    #[arg(long, default_value = "30s", value_parser = cardwire::units::parse_duration)]
    duration: Duration,
    /// Concurrent keep-alive connections of the load generator.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Webhook URLs (connections in cardwire) each event's card goes to.
    #[arg(long, default_value_t = 1)]
    targets: usize,
    /// Spread events over the targets instead: one card per event, to one of them. The load
    /// posts the payload under `--targets` repository names, each routed by a rule of its own
    /// to one webhook URL (one team's channel each).
    #[arg(long)]
    spread: bool,
    /// Offer cardwire this many requests a second in all, instead of as many as it takes (the
    /// baseline is always measured flat out): whether the whole pipeline keeps up with a given
    /// rate, cards arriving as fast as events come in.
    #[arg(long, value_parser = parse_rate)]
    rate: Option<f64>,
    /// Cards queued before the restart measurement (0 skips it).
    #[arg(long, default_value_t = 100_000)]
    backlog: usize,
    /// The cardwire binary (default: build target/release/cardwire).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// The templates folder the gateway loads (default: the repository's `templates/`; an
    /// older binary in an A/B run wants its own: `git archive REV templates | tar -x -C DIR`).
    #[arg(long)]
    templates: Option<PathBuf>,
    /// Where the gateway keeps its state: `sled` (default) or `postgres` (a server this bench
    /// starts in a temp dir from Debian's `postgresql`, on loopback, a database per phase; its
    /// own CPU is reported beside cardwire's).
    #[arg(long, value_enum, default_value = "sled")]
    store: StoreKind,
    /// Instead of the load phases: several gateways on one PostgreSQL database, the load
    /// spread over them. Measures sled (one instance) and PostgreSQL with 1 to N instances in
    /// the same run: events/s, cards/s, CPU an event (every instance's, and PostgreSQL's).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=8))]
    instances: Option<u16>,
    /// Instead of the load phases: this many clients (4,000, say) each send half a request's
    /// headers and then nothing; the gateway's memory while they hang on, a signed push's
    /// latency meanwhile, and how many the gateway closed by `limits.header_timeout`.
    #[arg(long)]
    slow_clients: Option<usize>,
    /// Instead of the load phases: the cost of the history kept. For each N given
    /// (`--history 0,100000,1000000`), a store holding N delivered records and N message
    /// references (each card keyed, as delivery leaves them), then the disk they take, a
    /// lookup of a new upstream id, how long the gateway takes to start on it and its idle
    /// RSS; then every record pruned, and the disk after a restart. See [`history`].
    #[arg(long, value_delimiter = ',')]
    history: Option<Vec<usize>>,
    /// Instead of the load phases: keyed cards. Pull requests to one Discord-like webhook,
    /// `--rounds` rounds of two phases each, alternating: every event a new post (the rule's
    /// `update: new`), then every event an update of one of this many keys (`replace`: the
    /// first card of a key posts, every later one edits its message); the cards/s of each and
    /// their ratio. See [`updates`].
    #[arg(long)]
    updates: Option<usize>,
    /// Instead of the load phases: this long at `--rate` (default 500 events/s) against a
    /// receiver that fails 10 % of requests and answers 429 for 5 s every 2 minutes, with
    /// delivered records and delivery ids kept a fifth of the run; RSS, disk, queue depth and CPU sampled every
    /// 10 s into `--out`/soak.csv and soak.png. See [`soak`].
    #[arg(long, value_parser = cardwire::units::parse_duration)]
    soak: Option<Duration>,
    /// Where `--soak` writes its CSV and plot.
    #[arg(long, default_value = "target/soak")]
    out: PathBuf,
    /// Instead of the load phases: count the instructions an event costs under valgrind's
    /// callgrind, repeatable to the instruction whatever else the machine does, for this
    /// binary and, in the same run, the `--against` one. See [`instructions`].
    #[arg(long)]
    instructions: bool,
    /// With `--instructions`: this binary once more with traces on (every event sampled,
    /// exported over OTLP/HTTP to a sink in this process that answers 200).
    #[arg(long, requires = "instructions")]
    telemetry: bool,
    /// The binary to compare with (an older build, say): alone, the load A/B (see [`ab`]);
    /// with `--instructions`, the instructions an event of both.
    #[arg(long)]
    against: Option<PathBuf>,
    /// With `--against`: the templates folder that binary loads (default: `--templates`).
    #[arg(long, requires = "against")]
    against_templates: Option<PathBuf>,
    /// With `--against`: the rules folder whose `github.yaml` that binary loads (default: the
    /// `rules` folder beside `--against-templates`, if there is one, else this repository's).
    #[arg(long, requires = "against")]
    against_rules: Option<PathBuf>,
    /// With `--against` (the load A/B) or `--peers`: how many rounds, each running both
    /// servers' load phase one after the other, the order alternating.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Instead of the load phases: cardwire against its peers under the same load (Node-RED,
    /// installed with npm into `target/peers`), alternating for `--rounds` rounds. See
    /// [`peers`].
    #[arg(long)]
    peers: bool,
    /// Also measure floors between the baseline and cardwire: the bare server plus, step by
    /// step, the work every accepted event needs (HMAC check, JSON parse, one journaled record).
    #[arg(long)]
    floors: bool,
    /// Internal: be a floor server, doing this much for each request, and nothing else.
    #[arg(long, hide = true, requires_all = ["port", "data", "card_bytes"])]
    serve_floor: Option<Floor>,
    /// Internal: the floor server's port.
    #[arg(long, hide = true)]
    port: Option<u16>,
    /// Internal: the floor server's data directory.
    #[arg(long, hide = true)]
    data: Option<PathBuf>,
    /// Internal: the size of the card body the floor server journals.
    #[arg(long, hide = true)]
    card_bytes: Option<usize>,
}

/// Where the gateway under test keeps its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum StoreKind {
    /// sled under the data folder.
    Sled,
    /// PostgreSQL.
    Postgres,
}

/// The PostgreSQL server of a `--store postgres` run: the tests' own harness.
#[allow(dead_code)]
#[path = "../tests/it/pg.rs"]
mod pg;

/// The secrets key of a gateway on PostgreSQL.
const PG_KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

/// A fresh database on `server` for one phase; its URL.
fn pg_database(server: &pg::Postgres, n: usize) -> String {
    server.database(&format!("bench_{n}"))
}

/// CPU seconds of the PostgreSQL server: its postmaster and every backend it forked.
fn pg_cpu(server: &pg::Postgres) -> f64 {
    let Some(postmaster) = server.postmaster() else {
        return 0.0;
    };
    let mut total = usage(postmaster).2;
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command's closing parenthesis: state, ppid, ...
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(postmaster) {
            total += usage(pid).2;
        }
    }
    total
}

/// What a floor server does for each request before it answers 202, each step on top of the
/// ones before it: what the work that every accepted event needs costs on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
enum Floor {
    /// Reads the body and answers 202: the baseline.
    Bare,
    /// Checks the GitHub signature, HMAC-SHA256 over the body.
    Verify,
    /// Checks that the body is JSON (parsed, nothing kept).
    Parse,
    /// Queues one outbox record, its body the size of cardwire's card for this payload,
    /// through cardwire's own store, and answers after its group commit.
    Journal,
}

impl Floor {
    fn describe(self, card_bytes: usize) -> String {
        match self {
            Floor::Bare => "bare axum: read the body, answer 202 (the baseline)".into(),
            Floor::Verify => "+ check the HMAC-SHA256 signature".into(),
            Floor::Parse => "+ parse the body as JSON (nothing kept)".into(),
            Floor::Journal => format!(
                "+ queue one {card_bytes} B card in cardwire's store, answer after its group commit"
            ),
        }
    }
}

/// A rate in requests a second: a finite number above zero.
fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "{s:?} is not a rate: give requests a second, above 0"
        )),
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// --- the receiver and the baseline ---

/// What the receiver has seen; it can be told to throttle (429) instead.
#[derive(Default)]
struct Receiver {
    received: AtomicU64,
    bytes: AtomicU64,
    first_ns: AtomicU64,
    last_ns: AtomicU64,
    throttle: AtomicBool,
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

async fn start_receiver(epoch: Instant) -> (Arc<Receiver>, SocketAddr) {
    let r = Arc::new(Receiver::default());
    let router = Router::new()
        .route(
            "/hook/{n}",
            post(
                move |State(r): State<Arc<Receiver>>, body: axum::body::Bytes| async move {
                    if r.throttle.load(Ordering::Relaxed) {
                        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "");
                    }
                    let now = epoch.elapsed().as_nanos() as u64;
                    let _ =
                        r.first_ns
                            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
                    r.last_ns.fetch_max(now, Ordering::Relaxed);
                    r.received.fetch_add(1, Ordering::Relaxed);
                    r.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                    // What the Office 365 connector answers.
                    (StatusCode::OK, [("retry-after", "0")], "1")
                },
            ),
        )
        .with_state(r.clone());
    (r, serve(router).await)
}

/// A floor server, for `--serve-floor`: until killed.
async fn serve_floor(floor: Floor, port: u16, data: &Path, card_bytes: usize) -> Result<()> {
    let store = match floor {
        Floor::Journal => {
            std::fs::create_dir_all(data)?;
            Some(cardwire::store::Store::open(data, None)?)
        }
        _ => None,
    };
    let connection = cardwire::ids::ConnectionId::new();
    let card = "x".repeat(card_bytes);
    let router = Router::new().route(
        "/hooks/github",
        post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| async move {
                if floor >= Floor::Verify {
                    let given = headers
                        .get("x-hub-signature-256")
                        .map(|v| v.as_bytes())
                        .unwrap_or_default();
                    let want = cardwire::ingest::verify::sign(SECRET, &body);
                    if !bool::from(subtle::ConstantTimeEq::ct_eq(given, want.as_bytes())) {
                        return StatusCode::UNAUTHORIZED;
                    }
                }
                if floor >= Floor::Parse
                    && serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err()
                {
                    return StatusCode::BAD_REQUEST;
                }
                if let Some(store) = &store {
                    let rec = cardwire::store::OutboxRecord::new(
                        cardwire::ids::EventId::new(),
                        connection.clone(),
                        "bench",
                        cardwire::render::CardKind::Workflow,
                        card.clone(),
                        cardwire::store::now_ms(),
                    );
                    if store.enqueue(&rec).is_err() || store.commit().await.is_err() {
                        return StatusCode::INTERNAL_SERVER_ERROR;
                    }
                }
                StatusCode::ACCEPTED
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, router).await?;
    Ok(())
}

/// Starts a floor server in a process of its own, as cardwire runs: this program again, with
/// `--serve-floor`. It is killed when the returned guard is dropped.
async fn start_floor(
    floor: Floor,
    data: &Path,
    card_bytes: usize,
    body: &bytes::Bytes,
    http: &reqwest::Client,
) -> Result<(FloorProcess, String)> {
    let port = free_port();
    let child = Command::new(std::env::current_exe()?)
        .arg("--serve-floor")
        .arg(format!("{floor:?}").to_lowercase())
        .args([
            "--port",
            &port.to_string(),
            "--card-bytes",
            &card_bytes.to_string(),
        ])
        .arg("--data")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start a floor server")?;
    let mut guard = FloorProcess(child);
    let url = format!("http://127.0.0.1:{port}/hooks/github");
    let started = Instant::now();
    loop {
        let answer = http
            .post(&url)
            .header(
                "x-hub-signature-256",
                cardwire::ingest::verify::sign(SECRET, body),
            )
            .body(body.clone())
            .send()
            .await;
        match answer {
            Ok(r) if r.status() == StatusCode::ACCEPTED => return Ok((guard, url)),
            Ok(r) => bail!("the {floor:?} floor server answered {}", r.status()),
            Err(_) => {}
        }
        if let Some(status) = guard.0.try_wait()? {
            bail!("the {floor:?} floor server exited at start: {status}");
        }
        if started.elapsed() > Duration::from_secs(10) {
            bail!("the {floor:?} floor server did not answer in 10 s");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A floor server's process, killed on drop.
struct FloorProcess(Child);

impl FloorProcess {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for FloorProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// --- cardwire as a subprocess ---

/// A cardwire process, killed on drop unless [`Gateway::stop`] stopped it.
struct Gateway {
    child: Child,
    addr: SocketAddr,
}

impl Gateway {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops it with SIGTERM (a graceful stop) and waits.
    fn stop(mut self) -> Result<()> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        self.child.wait()?;
        Ok(())
    }
}

/// A gateway not stopped (the bench failed on the way) is killed rather than left running.
impl Drop for Gateway {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn write_config(
    dir: &Path,
    port: u16,
    rules: &Path,
    templates: &Path,
    store: Option<&str>,
) -> Result<PathBuf> {
    let path = dir.join("cardwire.yaml");
    let store = match store {
        Some(url) => format!(
            "store:\n  postgres: {{url: \"{url}\", pool: 16}}\nconnect:\n  secrets_key: \"{PG_KEY}\"\n"
        ),
        None => String::new(),
    };
    std::fs::write(
        &path,
        store
            + &format!(
                "listen: 127.0.0.1:{port}\n\
             data_dir: {data}\n\
             rules_dir: {rules}\n\
             templates_dir: {templates}\n\
             admin_token: {TOKEN}\n\
             watch_files: false\n\
             durability: batched\n\
             sources:\n  github: {{kind: github, secret: {SECRET}}}\n\
             targets:\n  allow_http: true\n  allowed_hosts: [\"127.0.0.1\"]\n\
             delivery:\n  pacing: false\n  retry_schedule: [100ms, 200ms, 400ms, 1s, 2s, 5s]\n",
                data = dir.join("data").display(),
                rules = rules.display(),
                templates = templates.display(),
            ),
    )?;
    Ok(path)
}

/// A gateway's folder, port and config with the shipped rules (sled, or PostgreSQL at
/// `store`): what most phases start.
fn shipped_config(
    templates: &Path,
    store: Option<&str>,
) -> Result<(tempfile::TempDir, u16, PathBuf)> {
    let dir = tempfile::tempdir()?;
    let port = free_port();
    let config = write_config(
        dir.path(),
        port,
        &rules_with(dir.path(), 0, 0)?,
        templates,
        store,
    )?;
    Ok((dir, port, config))
}

/// Starts the binary and waits until /healthz answers; returns it and how long that took.
async fn start_gateway(
    binary: &Path,
    config: &Path,
    port: u16,
    http: &reqwest::Client,
) -> Result<(Gateway, Duration)> {
    let mut command = Command::new(binary);
    command.stderr(Stdio::inherit());
    start(command, config, port, http, Duration::from_secs(30)).await
}

/// [`start_gateway`] through `command` (the binary, or valgrind running it), allowing it
/// `ready_within`.
async fn start(
    mut command: Command,
    config: &Path,
    port: u16,
    http: &reqwest::Client,
    ready_within: Duration,
) -> Result<(Gateway, Duration)> {
    let started = Instant::now();
    let child = command
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {:?}", command.get_program()))?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut g = Gateway { child, addr };
    loop {
        if let Ok(r) = http.get(format!("http://{addr}/healthz")).send().await {
            if r.status().is_success() {
                return Ok((g, started.elapsed()));
            }
        }
        if let Some(status) = g.child.try_wait()? {
            bail!("cardwire exited at start: {status}");
        }
        if started.elapsed() > ready_within {
            bail!("cardwire did not become ready in {ready_within:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Peak and current resident memory (MB) and CPU seconds of a process, from /proc.
fn usage(pid: u32) -> (f64, f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime is 14th, stime 15th.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let cpu = (ticks(11) + ticks(12)) / 100.0; // USER_HZ is 100 on Linux
    (kb("VmHWM:") / 1024.0, kb("VmRSS:") / 1024.0, cpu)
}

/// Runs a load phase; returns it with the CPU seconds used during it by the server `pid` and
/// by this process (the load generator, and the receiver while cardwire delivers).
async fn with_cpu(pid: u32, phase: impl std::future::Future<Output = Load>) -> (Load, f64, f64) {
    let me = std::process::id();
    let (server, generator) = (usage(pid).2, usage(me).2);
    let l = phase.await;
    (l, usage(pid).2 - server, usage(me).2 - generator)
}

/// Microseconds of CPU a request.
fn per_request(cpu_s: f64, requests: u64) -> f64 {
    cpu_s * 1e6 / requests.max(1) as f64
}

// --- the load generator ---

struct Load {
    requests: u64,
    accepted: u64,
    failed: u64,
    elapsed: Duration,
    latencies_us: Vec<u32>,
}

impl Load {
    fn rps(&self) -> f64 {
        self.accepted as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }
}

/// Posts the payload from `connections` concurrent keep-alive connections for `duration`, or
/// until `count` requests were sent when given; at `rate` requests a second in all when given
/// (each connection on a schedule of its own: a late request is sent at once, not skipped),
/// otherwise as fast as the answers come.
async fn load(
    url: &str,
    bodies: &[bytes::Bytes],
    connections: usize,
    duration: Duration,
    count: Option<u64>,
    rate: Option<f64>,
) -> Load {
    load_over(
        &[url.to_string()],
        bodies,
        connections,
        duration,
        count,
        rate,
    )
    .await
}

/// [`load`] spread over several gateways' URLs: connection `i` posts to `urls[i % n]` (a load
/// balancer's round robin, per keep-alive connection).
async fn load_over(
    urls: &[String],
    bodies: &[bytes::Bytes],
    connections: usize,
    duration: Duration,
    count: Option<u64>,
    rate: Option<f64>,
) -> Load {
    let every = rate.map(|r| Duration::from_secs_f64(connections as f64 / r));
    // Each request posts the next payload in turn, with its signature.
    let signed: Arc<Vec<(bytes::Bytes, String)>> = Arc::new(
        bodies
            .iter()
            .map(|b| (b.clone(), cardwire::ingest::verify::sign(SECRET, b)))
            .collect(),
    );
    let sent = Arc::new(AtomicU64::new(0));
    // Every request's X-GitHub-Delivery is new, across the loads of one run too (a warm-up,
    // then the measured load, on one gateway).
    static LOADS: AtomicU64 = AtomicU64::new(0);
    let run = LOADS.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..connections {
        // One client per task: its own keep-alive connection.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()
            .unwrap();
        let (url, signed, sent) = (
            urls[task % urls.len()].clone(),
            signed.clone(),
            sent.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(1 << 16);
            let (mut ok, mut failed) = (0u64, 0u64);
            let mut i = 0u64;
            loop {
                let n = sent.fetch_add(1, Ordering::Relaxed);
                if count.is_some_and(|c| n >= c)
                    || (count.is_none() && started.elapsed() >= duration)
                {
                    break;
                }
                if let Some(every) = every {
                    tokio::time::sleep_until((started + every * i as u32).into()).await;
                }
                i += 1;
                let (body, signature) = &signed[n as usize % signed.len()];
                let t = Instant::now();
                let res = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-github-event", "push")
                    .header("x-github-delivery", format!("bench-{run}-{task}-{i}"))
                    .header("x-hub-signature-256", signature)
                    .body(body.clone())
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status() == StatusCode::ACCEPTED => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        ok += 1;
                    }
                    Ok(r) => {
                        failed += 1;
                        if failed < 3 {
                            eprintln!(
                                "load: {} {}",
                                r.status(),
                                r.text().await.unwrap_or_default()
                            );
                        }
                    }
                    Err(e) => {
                        failed += 1;
                        if failed < 3 {
                            eprintln!("load: {e}");
                        }
                    }
                }
            }
            (ok, failed, lat)
        }));
    }
    let mut out = Load {
        requests: 0,
        accepted: 0,
        failed: 0,
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
    };
    for t in tasks {
        let (ok, failed, lat) = t.await.unwrap();
        out.accepted += ok;
        out.failed += failed;
        out.latencies_us.extend(lat);
    }
    out.elapsed = started.elapsed();
    out.requests = out.accepted + out.failed;
    out.latencies_us.sort_unstable();
    out
}

/// Two seconds of load that are not measured: connections opened, caches warm.
async fn warm_up(url: &str, bodies: &[bytes::Bytes], connections: usize) {
    let _ = load(url, bodies, connections, Duration::from_secs(2), None, None).await;
}

/// Waits until the receiver has `expected` cards or nothing arrives for `quiet`; returns
/// when the last one arrived.
async fn drain(r: &Receiver, expected: u64, quiet: Duration) -> Instant {
    let mut last = (r.received.load(Ordering::Relaxed), Instant::now());
    loop {
        let n = r.received.load(Ordering::Relaxed);
        if n >= expected {
            return Instant::now();
        }
        if n != last.0 {
            last = (n, Instant::now());
        } else if last.1.elapsed() > quiet {
            return last.1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn connect(
    http: &reqwest::Client,
    g: &Gateway,
    receiver: SocketAddr,
    n: usize,
    channel: &str,
) -> Result<()> {
    let res = http
        .post(format!("http://{}/api/connections", g.addr))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({
            "name": format!("bench {n}"),
            "url": format!("http://{receiver}/hook/{n}"),
            "kind": "teams",
            "channels": [channel],
        }))
        .send()
        .await?;
    if res.status() != StatusCode::CREATED {
        bail!("cannot add a connection: {}", res.text().await?);
    }
    Ok(())
}

/// A rules folder with the shipped GitHub rules and more up to `n` in all (the source is the
/// only one configured), plus one rule per team for `teams` spread targets.
fn rules_with(dir: &Path, n: usize, teams: usize) -> Result<PathBuf> {
    rules_from(&root().join("rules"), dir, n, teams)
}

/// [`rules_with`], the shipped GitHub rules taken from the rules folder `shipped`.
fn rules_from(shipped: &Path, dir: &Path, n: usize, teams: usize) -> Result<PathBuf> {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules)?;
    let mut count = 0;
    for e in std::fs::read_dir(shipped)? {
        let p = e?.path();
        if p.file_name().and_then(|n| n.to_str()) == Some("github.yaml") {
            let text = std::fs::read_to_string(&p)?;
            count += text.matches("\n- name:").count() + usize::from(text.starts_with("- name:"));
            std::fs::write(rules.join("github.yaml"), text)?;
        }
    }
    let mut extra = String::new();
    for i in count..n {
        extra.push_str(&format!(
            "- name: bench-extra-{i}\n  source: github\n  event: issues\n  actions: [labeled]\n  \
             when: {{path: label.name, equals: \"bench-{i}\"}}\n  template: github/issue\n  channel: bench-{i}\n\n"
        ));
    }
    for t in 0..teams {
        extra.push_str(&format!(
            "- name: bench-team-{t}\n  source: github\n  event: push\n  \
             when: {{path: repository.name, equals: \"{}\"}}\n  template: github/push\n  \
             channel: {}\n\n",
            team_repo(t),
            team_channel(t)
        ));
    }
    if !extra.is_empty() {
        std::fs::write(rules.join("extra.yaml"), extra)?;
    }
    Ok(rules)
}

/// The repository name of team `t`'s pushes in a spread run.
fn team_repo(t: usize) -> String {
    format!("Hello-World-{t}")
}

/// The channel of team `t`'s webhook URL in a spread run.
fn team_channel(t: usize) -> String {
    format!("bench-team-{t}")
}

/// The push payload under team `t`'s repository name.
fn team_payload(body: &[u8], t: usize) -> Result<bytes::Bytes> {
    let text = std::str::from_utf8(body)?;
    let name = "\"name\": \"Hello-World\",";
    if !text.contains(name) {
        bail!("the push payload has no {name} to spread over teams");
    }
    Ok(bytes::Bytes::from(text.replacen(
        name,
        &format!("\"name\": \"{}\",", team_repo(t)),
        1,
    )))
}

fn binary(args: &Args) -> Result<PathBuf> {
    if let Some(b) = &args.binary {
        return Ok(b.clone());
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        // The binary alone: built together with this example, it would link a library with
        // the dev-dependencies' features unified in, which cost 10-15 % more CPU an event
        // (examples/BENCHMARKS.md). Cargo keeps both builds, so neither is rebuilt per run.
        .args(["build", "--release", "--locked", "--bin", "cardwire"])
        .current_dir(root());
    // `cargo run` gave this process its package's CARGO_* variables; build scripts that watch
    // them would see a change and rebuild everything twice per run.
    for (k, _) in std::env::vars() {
        if k.starts_with("CARGO_") && k != "CARGO_HOME" && k != "CARGO_TARGET_DIR" {
            build.env_remove(k);
        }
    }
    let status = build.status()?;
    if !status.success() {
        bail!("cargo build --release failed");
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target"));
    Ok(target.join("release/cardwire"))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if let (Some(floor), Some(port), Some(data), Some(card_bytes)) =
        (args.serve_floor, args.port, &args.data, args.card_bytes)
    {
        return serve_floor(floor, port, data, card_bytes).await;
    }
    let binary = binary(&args)?;
    let templates = args
        .templates
        .clone()
        .unwrap_or_else(|| root().join("templates"));
    if args.instructions {
        return instructions(&args, &binary, &templates).await;
    }
    if let Some(other) = &args.against {
        return ab(&args, &binary, &templates, other).await;
    }
    if args.peers {
        return peers(&args, &binary, &templates).await;
    }
    if let Some(n) = args.instances {
        return instances(&args, &binary, &templates, n.into()).await;
    }
    if let Some(duration) = args.soak {
        let rate = args.rate.map_or(500, |r| r as u64);
        return soak(&binary, &templates, duration, rate, &args.out).await;
    }
    if let Some(sizes) = &args.history {
        return history(&binary, &templates, sizes).await;
    }
    if let Some(keys) = args.updates {
        return updates(&binary, &templates, &args, keys).await;
    }
    if let Some(n) = args.slow_clients {
        return slow_clients(&binary, &templates, n).await;
    }
    let body = bytes::Bytes::from(std::fs::read(
        root().join("tests/fixtures/github/push.event.4.json"),
    )?);
    let epoch = Instant::now();
    let http = reqwest::Client::new();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let bodies = if args.spread {
        (0..args.targets)
            .map(|t| team_payload(&body, t))
            .collect::<Result<Vec<_>>>()?
    } else {
        vec![body.clone()]
    };
    let teams = if args.spread { args.targets } else { 0 };
    println!(
        "cardwire bench: state in {:?}, {} s per phase, {} connections{}, {} target(s){}, {} B payload, {cores} cores",
        args.store,
        args.duration.as_secs(),
        args.connections,
        match args.rate {
            Some(r) => format!(" offering cardwire {r:.0} requests/s"),
            None => String::new(),
        },
        args.targets,
        if args.spread { " (events spread over them)" } else { "" },
        body.len()
    );

    // The baseline: the HTTP floor, a process of its own as cardwire is.
    let floors_dir = tempfile::tempdir()?;
    let (_baseline, base_url) =
        start_floor(Floor::Bare, floors_dir.path(), 0, &body, &http).await?;
    warm_up(&base_url, &bodies, args.connections).await;
    // Flat out for the whole phase: the floor, before cardwire's phase and after it.
    let floor_phase = || {
        load(
            &base_url,
            &bodies,
            args.connections,
            args.duration,
            None,
            None,
        )
    };
    let (base, base_cpu, base_gen_cpu) = with_cpu(_baseline.pid(), floor_phase()).await;

    // cardwire under the same load.
    let (receiver, receiver_addr) = start_receiver(epoch).await;
    let dir = tempfile::tempdir()?;
    let port = free_port();
    // With --store postgres: the server, started before cardwire's phase, a database a phase.
    // Durable as in production: every commit reaches the disk, as sled's group commit does.
    let pg_server = (args.store == StoreKind::Postgres).then(|| pg::Postgres::start_with(true));
    let pg_url = |n: usize| pg_server.as_ref().map(|s| pg_database(s, n));
    let config = write_config(
        dir.path(),
        port,
        &rules_with(dir.path(), 0, teams)?,
        &templates,
        pg_url(0).as_deref(),
    )?;
    let pg_cpu_before = pg_server.as_ref().map_or(0.0, pg_cpu);
    let (g, _) = start_gateway(&binary, &config, port, &http).await?;
    for n in 0..args.targets {
        let channel = if args.spread {
            team_channel(n)
        } else {
            "github".into()
        };
        connect(&http, &g, receiver_addr, n, &channel).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, idle_rss, _) = usage(g.pid());
    let cw_url = format!("http://{}/hooks/github", g.addr);
    let load_start = epoch.elapsed();
    let (cw, cw_cpu, cw_gen_cpu) = with_cpu(
        g.pid(),
        load(
            &cw_url,
            &bodies,
            args.connections,
            args.duration,
            None,
            args.rate,
        ),
    )
    .await;
    let load_end = Instant::now();
    let during_load = receiver.received.load(Ordering::Relaxed);
    let (_, _, cpu_load) = usage(g.pid());
    let per_event = if args.spread { 1 } else { args.targets as u64 };
    let expected = cw.accepted * per_event;
    let last = drain(&receiver, expected, Duration::from_secs(30)).await;
    let drained = last.saturating_duration_since(load_end);
    let received = receiver.received.load(Ordering::Relaxed);
    let first = Duration::from_nanos(receiver.first_ns.load(Ordering::Relaxed));
    let last_card = Duration::from_nanos(receiver.last_ns.load(Ordering::Relaxed));
    let cards_window = last_card.saturating_sub(first.max(load_start));
    let cards_per_s = received as f64 / cards_window.as_secs_f64().max(1e-9);
    let (peak_rss, _, cpu) = usage(g.pid());
    let pg_cpu_used = pg_server.as_ref().map_or(0.0, pg_cpu) - pg_cpu_before;
    g.stop()?;
    drop(dir);
    // The floor again, once cardwire is gone: the machine's speed drifts within a run too, and
    // the ratio is taken to the mean of both.
    let (base_after, after_cpu, after_gen_cpu) = with_cpu(_baseline.pid(), floor_phase()).await;
    drop(_baseline);
    let base_requests = base.accepted + base_after.accepted;
    let base_cpu = per_request(base_cpu + after_cpu, base_requests);
    let base_gen_cpu = per_request(base_gen_cpu + after_gen_cpu, base_requests);

    // With --floors, the steps between: each server does the baseline's work and the steps
    // before its own, in a process of its own, under the same load. The journal step stores
    // records of the size of the cards cardwire rendered for this payload.
    let card_bytes = (receiver.bytes.load(Ordering::Relaxed) / received.max(1)) as usize;
    let mut steps = Vec::new();
    if args.floors {
        for floor in [Floor::Verify, Floor::Parse, Floor::Journal] {
            let data = floors_dir.path().join(format!("{floor:?}"));
            let (server, url) = start_floor(floor, &data, card_bytes, &body, &http).await?;
            warm_up(&url, &bodies, args.connections).await;
            let phase = load(&url, &bodies, args.connections, args.duration, None, None);
            steps.push((floor, with_cpu(server.pid(), phase).await));
            drop(server);
        }
    }

    // Ready with 200 rules.
    let dir = tempfile::tempdir()?;
    let rules = rules_with(dir.path(), 200, 0)?;
    let port = free_port();
    let config = write_config(dir.path(), port, &rules, &templates, pg_url(1).as_deref())?;
    let mut ready_200 = Duration::MAX;
    for _ in 0..3 {
        let (g, ready) = start_gateway(&binary, &config, port, &http).await?;
        ready_200 = ready_200.min(ready);
        g.stop()?;
    }
    drop(dir);

    // Ready after a restart with a backlog, then drained.
    let restart = if args.backlog > 0 {
        let (receiver, receiver_addr) = start_receiver(epoch).await;
        receiver.throttle.store(true, Ordering::Relaxed);
        let (_dir, port, config) = shipped_config(&templates, pg_url(2).as_deref())?;
        let (g, _) = start_gateway(&binary, &config, port, &http).await?;
        connect(&http, &g, receiver_addr, 0, "github").await?;
        let url = format!("http://{}/hooks/github", g.addr);
        let filled = load(
            &url,
            std::slice::from_ref(&body),
            args.connections,
            Duration::MAX,
            Some(args.backlog as u64),
            None,
        )
        .await;
        g.stop()?;
        receiver.throttle.store(false, Ordering::Relaxed);
        // Every card stays queued: the receiver throttled each attempt with Retry-After: 1,
        // so after the restart they are due within a second.
        let (g, ready) = start_gateway(&binary, &config, port, &http).await?;
        let started = Instant::now();
        let last = drain(&receiver, filled.accepted, Duration::from_secs(30)).await;
        let got = receiver.received.load(Ordering::Relaxed);
        let (peak, _, _) = usage(g.pid());
        g.stop()?;
        Some((
            filled.accepted,
            ready,
            last.saturating_duration_since(started),
            got,
            peak,
        ))
    } else {
        None
    };

    let floor = (base.rps() + base_after.rps()) / 2.0;
    let ratio = cw.rps() / floor;
    println!();
    println!("| measure | baseline (bare axum) | cardwire | target |");
    println!("|---|---|---|---|");
    println!(
        "| ingest requests/s | {:.0} (before {:.0}, after {:.0}) | {:.0}{} | ≥ 40 % of baseline: **{:.0} %** |",
        floor,
        base.rps(),
        base_after.rps(),
        cw.rps(),
        match args.rate {
            Some(r) => format!(" (offered {r:.0})"),
            None => String::new(),
        },
        ratio * 100.0
    );
    println!(
        "| ingest latency p50 / p99 | {:.2} / {:.2} ms | {:.2} / {:.2} ms | p99 ≤ 5 ms |",
        base.percentile(0.5),
        base.percentile(0.99),
        cw.percentile(0.5),
        cw.percentile(0.99)
    );
    println!(
        "| requests failed | {} | {} | 0 |",
        base.failed + base_after.failed,
        cw.failed
    );
    // Cards that arrived while the load ran, over the time from the load's start (or the first
    // card) to its end; and all of them, first card to last, the drain included.
    let load_window = load_end
        .saturating_duration_since(epoch)
        .saturating_sub(first.max(load_start));
    println!(
        "| cards/s at the receiver: during the load / first card to last | | {:.0} / {cards_per_s:.0} | ≥ 10,000 |",
        during_load as f64 / load_window.as_secs_f64().max(1e-9)
    );
    println!(
        "| backlog drained after the load | | {:.2} s | |",
        drained.as_secs_f64()
    );
    println!(
        "| cards lost | | {} of {expected} | 0 |",
        expected.saturating_sub(received)
    );
    println!(
        "| peak RSS under load / idle | | {peak_rss:.1} / {idle_rss:.1} MB | ≤ 64 / ≤ 20 MB |"
    );
    println!(
        "| CPU seconds (cardwire): load / load and drain | | {cpu_load:.1} / {cpu:.1} s ({:.0} µs an event) | |",
        cpu * 1e6 / cw.accepted.max(1) as f64
    );
    if pg_server.is_some() {
        println!(
            "| CPU seconds (PostgreSQL, its processes): load and drain | | {pg_cpu_used:.1} s ({:.0} µs an event) | |",
            pg_cpu_used * 1e6 / cw.accepted.max(1) as f64
        );
    }
    println!(
        "| ready with 200 rules | | {:.0} ms | ≤ 200 ms |",
        ready_200.as_secs_f64() * 1000.0
    );
    if let Some((queued, ready, drain, got, peak)) = restart {
        println!(
            "| restart with {queued} queued: ready / drained | | {:.0} ms / {:.2} s | ≤ 1 s |",
            ready.as_secs_f64() * 1000.0,
            drain.as_secs_f64()
        );
        println!(
            "| cards lost across the restart (peak RSS) | | {} ({peak:.1} MB) | 0 |",
            queued.saturating_sub(got)
        );
    }
    if !steps.is_empty() {
        println!();
        println!(
            "| floor (each step adds to the ones above) | requests/s | p99 | of baseline | CPU a request: server / load generator |"
        );
        println!("|---|---|---|---|---|");
        println!(
            "| {} | {floor:.0} | {:.2} ms | 100 % | {base_cpu:.0} / {base_gen_cpu:.0} µs |",
            Floor::Bare.describe(card_bytes),
            base.percentile(0.99)
        );
        for (step, (l, server, generator)) in &steps {
            println!(
                "| {} | {:.0} | {:.2} ms | {:.0} % | {:.0} / {:.0} µs |",
                step.describe(card_bytes),
                l.rps(),
                l.percentile(0.99),
                l.rps() / floor * 100.0,
                per_request(*server, l.accepted),
                per_request(*generator, l.accepted),
            );
        }
        println!(
            "| cardwire: the whole pipeline, delivering as it goes (its receiver is in the load generator) | {:.0} | {:.2} ms | {:.0} % | {:.0} / {:.0} µs |",
            cw.rps(),
            cw.percentile(0.99),
            ratio * 100.0,
            per_request(cw_cpu, cw.accepted),
            per_request(cw_gen_cpu, cw.accepted),
        );
    }
    Ok(())
}

// --- the load A/B ---

/// One build's load phase in an A/B round.
#[derive(Clone, Copy, Debug, Default)]
struct Phase {
    rps: f64,
    cards_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// CPU of the gateway's process, every thread, over the load and the drain, an event.
    cpu_us: f64,
    peak_rss_mb: f64,
    failed: u64,
    lost: u64,
}

/// A build in the A/B: the binary, its templates and the rules folder its shipped GitHub
/// rules come from.
struct Build {
    name: &'static str,
    binary: PathBuf,
    templates: PathBuf,
    rules: PathBuf,
}

/// `--against`: the load phase on both builds, alternating, for `--rounds` rounds; medians
/// and ratios. A round's two phases run back to back, so that the machine's drift between
/// rounds (±15 % here) moves both builds alike; the medians of the ratios are reported as well.
async fn ab(args: &Args, binary: &Path, templates: &Path, other: &Path) -> Result<()> {
    let against_templates = args
        .against_templates
        .clone()
        .unwrap_or_else(|| templates.to_path_buf());
    let against_rules = args.against_rules.clone().unwrap_or_else(|| {
        let beside = against_templates.with_file_name("rules");
        if beside.join("github.yaml").is_file() {
            beside
        } else {
            root().join("rules")
        }
    });
    let builds = [
        Build {
            name: "this build",
            binary: binary.to_path_buf(),
            templates: templates.to_path_buf(),
            rules: root().join("rules"),
        },
        Build {
            name: "--against",
            binary: other.to_path_buf(),
            templates: against_templates,
            rules: against_rules,
        },
    ];
    let body = bytes::Bytes::from(std::fs::read(
        root().join("tests/fixtures/github/push.event.4.json"),
    )?);
    println!(
        "cardwire bench --against: {} rounds, {} s a phase, {} connections, a {} B signed push with a fresh X-GitHub-Delivery a request",
        args.rounds,
        args.duration.as_secs(),
        args.connections,
        body.len()
    );
    let mut runs: [Vec<Phase>; 2] = [Vec::new(), Vec::new()];
    for round in 0..args.rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let b = &builds[i];
            let p = ab_phase(b, &body, args)
                .await
                .with_context(|| format!("{}: {}", b.name, b.binary.display()))?;
            println!(
                "round {} {:>10}: {:.0} requests/s, {:.0} cards/s, p50 {:.2} ms, p99 {:.2} ms, {:.0} µs an event, peak RSS {:.1} MB, {} failed, {} lost",
                round + 1,
                b.name,
                p.rps,
                p.cards_per_s,
                p.p50_ms,
                p.p99_ms,
                p.cpu_us,
                p.peak_rss_mb,
                p.failed,
                p.lost
            );
            runs[i].push(p);
        }
    }
    let med = |i: usize, f: fn(&Phase) -> f64| median(runs[i].iter().map(f).collect());
    let ratio = |f: fn(&Phase) -> f64| {
        median(
            runs[0]
                .iter()
                .zip(&runs[1])
                .map(|(a, b)| f(a) / f(b).max(1e-9))
                .collect(),
        )
    };
    println!();
    println!(
        "| build | requests/s | cards/s | p50 | p99 | CPU an event | peak RSS | failed / lost |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (i, b) in builds.iter().enumerate() {
        println!(
            "| {}: {} | {:.0} | {:.0} | {:.2} ms | {:.2} ms | {:.0} µs | {:.1} MB | {} / {} |",
            b.name,
            b.binary.display(),
            med(i, |p| p.rps),
            med(i, |p| p.cards_per_s),
            med(i, |p| p.p50_ms),
            med(i, |p| p.p99_ms),
            med(i, |p| p.cpu_us),
            med(i, |p| p.peak_rss_mb),
            runs[i].iter().map(|p| p.failed).sum::<u64>(),
            runs[i].iter().map(|p| p.lost).sum::<u64>(),
        );
    }
    println!(
        "| this build / --against (median of the rounds' ratios) | {:.2}× | {:.2}× | {:.2}× | {:.2}× | {:.2}× | {:.2}× | |",
        ratio(|p| p.rps),
        ratio(|p| p.cards_per_s),
        ratio(|p| p.p50_ms),
        ratio(|p| p.p99_ms),
        ratio(|p| p.cpu_us),
        ratio(|p| p.peak_rss_mb),
    );
    Ok(())
}

/// The median of `v` (0 when empty).
fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One build under the load: a fresh gateway (its own shipped GitHub rules and templates, sled
/// in a temp dir), one connection to a counting receiver, two seconds of warm-up, then the
/// load for `--duration`; cards/s are those that arrived while the load ran, over its time;
/// then the drain, and the CPU of the whole process (every thread) over both, an event.
async fn ab_phase(b: &Build, body: &bytes::Bytes, args: &Args) -> Result<Phase> {
    let http = reqwest::Client::new();
    let (receiver, receiver_addr) = start_receiver(Instant::now()).await;
    let dir = tempfile::tempdir()?;
    let port = free_port();
    let rules = rules_from(&b.rules, dir.path(), 0, 0)?;
    let config = write_config(dir.path(), port, &rules, &b.templates, None)?;
    let (g, _) = start_gateway(&b.binary, &config, port, &http).await?;
    connect(&http, &g, receiver_addr, 0, "github").await?;
    let url = format!("http://{}/hooks/github", g.addr);
    let phase = measure(g.pid(), &url, &receiver, body, args).await;
    g.stop()?;
    Ok(phase)
}

/// The load phase against the server `pid` at `url`, whose cards go to `receiver`: 2 s of
/// warm-up, then `--duration` of load; cards/s are those that arrived while it ran, over its
/// time; then the drain, and the CPU of the server's process (every thread) over both, an
/// event, and its peak RSS.
async fn measure(
    pid: u32,
    url: &str,
    receiver: &Receiver,
    body: &bytes::Bytes,
    args: &Args,
) -> Phase {
    let bodies = std::slice::from_ref(body);
    let warm = load(
        url,
        bodies,
        args.connections,
        Duration::from_secs(2),
        None,
        None,
    )
    .await;
    drain(receiver, warm.accepted, Duration::from_secs(30)).await;
    let before = receiver.received.load(Ordering::Relaxed);
    let cpu_before = usage(pid).2;
    let started = Instant::now();
    let l = load(url, bodies, args.connections, args.duration, None, None).await;
    let during = receiver.received.load(Ordering::Relaxed) - before;
    let elapsed = started.elapsed();
    let expected = before + l.accepted;
    drain(receiver, expected, Duration::from_secs(30)).await;
    let (peak_rss_mb, _, cpu_after) = usage(pid);
    let received = receiver.received.load(Ordering::Relaxed);
    Phase {
        rps: l.rps(),
        cards_per_s: during as f64 / elapsed.as_secs_f64(),
        p50_ms: l.percentile(0.5),
        p99_ms: l.percentile(0.99),
        cpu_us: per_request(cpu_after - cpu_before, l.accepted),
        peak_rss_mb,
        failed: l.failed,
        lost: expected.saturating_sub(received),
    }
}

// --- the peers ---

/// The Node-RED release the peers' run installs: the last line that runs on Node.js 20 (5.x
/// needs 22), from the npm registry.
const NODE_RED: &str = "4.1.8";

/// `--peers`: cardwire (this build) and its peers under the same load, alternating for
/// `--rounds` rounds: Node-RED, installed with npm into `target/peers/node-red` (once), running
/// the flow a team builds today to do what cardwire does for this push (see [`NODE_RED_FLOW`]):
/// check the signature, match the event, render a MessageCard and post it to the same
/// counting receiver, answering 202 once it is posted. Medians, and cardwire's cards/s as a
/// multiple of each peer's.
async fn peers(args: &Args, binary: &Path, templates: &Path) -> Result<()> {
    let node_red = install_node_red()?;
    let body = bytes::Bytes::from(std::fs::read(
        root().join("tests/fixtures/github/push.event.4.json"),
    )?);
    let build = Build {
        name: "cardwire",
        binary: binary.to_path_buf(),
        templates: templates.to_path_buf(),
        rules: root().join("rules"),
    };
    println!(
        "cardwire bench --peers: {} rounds, {} s a phase, {} connections, a {} B signed push with a fresh X-GitHub-Delivery a request; Node-RED {NODE_RED} on node {}",
        args.rounds,
        args.duration.as_secs(),
        args.connections,
        body.len(),
        String::from_utf8_lossy(&Command::new("node").arg("--version").output()?.stdout).trim()
    );
    let names = ["cardwire", "Node-RED"];
    let mut runs: [Vec<Phase>; 2] = [Vec::new(), Vec::new()];
    for round in 0..args.rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let p = match i {
                0 => ab_phase(&build, &body, args).await?,
                _ => node_red_phase(&node_red, &body, args).await?,
            };
            println!(
                "round {} {:>9}: {:.0} requests/s, {:.0} cards/s, p50 {:.2} ms, p99 {:.2} ms, {:.0} µs an event, peak RSS {:.1} MB, {} failed, {} lost",
                round + 1,
                names[i],
                p.rps,
                p.cards_per_s,
                p.p50_ms,
                p.p99_ms,
                p.cpu_us,
                p.peak_rss_mb,
                p.failed,
                p.lost
            );
            runs[i].push(p);
        }
    }
    let med = |i: usize, f: fn(&Phase) -> f64| median(runs[i].iter().map(f).collect());
    println!();
    println!(
        "| server | requests/s | cards/s | p50 | p99 | CPU an event | peak RSS | failed / lost |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (i, name) in names.iter().enumerate() {
        println!(
            "| {name} | {:.0} | {:.0} | {:.2} ms | {:.2} ms | {:.0} µs | {:.1} MB | {} / {} |",
            med(i, |p| p.rps),
            med(i, |p| p.cards_per_s),
            med(i, |p| p.p50_ms),
            med(i, |p| p.p99_ms),
            med(i, |p| p.cpu_us),
            med(i, |p| p.peak_rss_mb),
            runs[i].iter().map(|p| p.failed).sum::<u64>(),
            runs[i].iter().map(|p| p.lost).sum::<u64>(),
        );
    }
    let ratio = median(
        runs[0]
            .iter()
            .zip(&runs[1])
            .map(|(c, n)| c.cards_per_s / n.cards_per_s.max(1e-9))
            .collect(),
    );
    println!("| cardwire's cards/s as a multiple of Node-RED's (median of the rounds' ratios) | | {ratio:.1}× | | | | | |");
    Ok(())
}

/// Node-RED's folder under `target/peers`, installed there with npm the first time.
fn install_node_red() -> Result<PathBuf> {
    let dir = root().join("target/peers/node-red");
    let red = dir.join("node_modules/node-red/red.js");
    let installed = std::fs::read_to_string(dir.join("node_modules/node-red/package.json"))
        .ok()
        .and_then(|p| serde_json::from_str::<serde_json::Value>(&p).ok())
        .and_then(|p| Some(p.get("version")?.as_str()? == NODE_RED));
    if red.is_file() && installed == Some(true) {
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("package.json"),
        format!(
            "{{\"name\": \"cardwire-bench-peers\", \"private\": true, \"dependencies\": {{\"node-red\": \"{NODE_RED}\"}}}}\n"
        ),
    )?;
    eprintln!(
        "installing Node-RED {NODE_RED} with npm into {}",
        dir.display()
    );
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--omit=optional"])
        .current_dir(&dir)
        .status()
        .context("--peers needs Node.js and npm (Debian's nodejs and npm packages)")?;
    if !status.success() || !red.is_file() {
        bail!(
            "npm could not install node-red@{NODE_RED} into {}",
            dir.display()
        );
    }
    Ok(dir)
}

/// The flow Node-RED runs: `http in` (the raw body kept for the signature) → a function that
/// checks `X-Hub-Signature-256`, takes `push` events and renders a MessageCard of the push
/// (repository, branch, pusher, compare link, each commit's id, message and author) → `http
/// request` to the receiver → 202. Wrong signatures get 401 and other events 202 with nothing
/// posted, as a relay in front of Teams would answer.
const NODE_RED_FLOW: &str = r#"
const crypto = global.get("crypto");
const raw = msg.payload;
const given = Buffer.from(String(msg.req.headers["x-hub-signature-256"] || ""));
const want = Buffer.from("sha256=" + crypto.createHmac("sha256", env.get("SECRET")).update(raw).digest("hex"));
if (given.length !== want.length || !crypto.timingSafeEqual(given, want)) {
    msg.statusCode = 401;
    msg.payload = {error: "bad signature"};
    return [null, msg];
}
if (msg.req.headers["x-github-event"] !== "push") {
    msg.statusCode = 202;
    msg.payload = {ignored: true};
    return [null, msg];
}
const p = JSON.parse(raw.toString("utf8"));
const branch = String(p.ref || "").replace(/^refs\/heads\//, "");
const md = (s) => String(s == null ? "" : s).replace(/[\`*_{}\[\]()#+\-.!|<>]/g, (c) => "\\" + c);
const commits = (p.commits || []).slice(0, 10).map((c) =>
    "- [" + String(c.id).slice(0, 7) + "](" + c.url + ") " + md(String(c.message).split("\n")[0]) +
    " — " + md(c.author && c.author.name));
msg.url = env.get("TARGET");
msg.method = "POST";
msg.headers = {"content-type": "application/json"};
msg.payload = JSON.stringify({
    "@type": "MessageCard",
    "@context": "https://schema.org/extensions",
    summary: p.repository.full_name + ": " + (p.commits || []).length + " commits to " + branch,
    themeColor: "24292E",
    title: md(p.pusher && p.pusher.name) + " pushed to " + md(p.repository.full_name) + " (" + md(branch) + ")",
    sections: [{
        activityTitle: md(p.sender && p.sender.login),
        activityImage: p.sender && p.sender.avatar_url,
        facts: [
            {name: "Repository", value: md(p.repository.full_name)},
            {name: "Branch", value: md(branch)},
            {name: "Commits", value: String((p.commits || []).length)},
        ],
        text: commits.join("\n"),
        markdown: true,
    }],
    potentialAction: [{"@type": "OpenUri", name: "Compare", targets: [{os: "default", uri: p.compare}]}],
});
return [msg, null];
"#;

/// One Node-RED phase: a fresh user folder with the flow, Node-RED started on loopback (no
/// editor, no telemetry), the same load as cardwire's.
async fn node_red_phase(dir: &Path, body: &bytes::Bytes, args: &Args) -> Result<Phase> {
    let (receiver, receiver_addr) = start_receiver(Instant::now()).await;
    let user = tempfile::tempdir()?;
    let port = free_port();
    let flow = serde_json::json!([
        {"id": "tab", "type": "tab", "label": "cardwire bench"},
        {"id": "in", "type": "http in", "z": "tab", "url": "/hooks/github", "method": "post",
         "upload": false, "skipBodyParsing": true, "wires": [["card"]]},
        {"id": "card", "type": "function", "z": "tab", "func": NODE_RED_FLOW, "outputs": 2,
         "wires": [["post"], ["answer"]]},
        {"id": "post", "type": "http request", "z": "tab", "method": "use", "ret": "txt",
         "url": "", "wires": [["accepted"]]},
        {"id": "accepted", "type": "function", "z": "tab", "outputs": 1,
         "func": "msg.statusCode = msg.statusCode >= 200 && msg.statusCode < 300 ? 202 : 502;\nmsg.headers = {};\nmsg.payload = {ok: msg.statusCode === 202};\nreturn msg;",
         "wires": [["answer"]]},
        {"id": "answer", "type": "http response", "z": "tab", "wires": []}
    ]);
    std::fs::write(user.path().join("flows.json"), serde_json::to_vec(&flow)?)?;
    let settings = user.path().join("settings.js");
    std::fs::write(
        &settings,
        format!(
            "module.exports = {{\n  uiHost: \"127.0.0.1\",\n  uiPort: {port},\n  userDir: {user:?},\n  flowFile: \"flows.json\",\n  httpAdminRoot: false,\n  credentialSecret: false,\n  functionGlobalContext: {{ crypto: require(\"crypto\") }},\n  logging: {{ console: {{ level: \"warn\", metrics: false, audit: false }} }},\n  diagnostics: {{ enabled: false }},\n  telemetry: {{ enabled: false, updateNotification: false }},\n  externalModules: {{ autoInstall: false, palette: {{ allowInstall: false }}, modules: {{ allowInstall: false }} }},\n}};\n",
            user = user.path().display().to_string()
        ),
    )?;
    let child = Command::new("node")
        .arg(dir.join("node_modules/node-red/red.js"))
        .arg("--settings")
        .arg(&settings)
        .arg("--userDir")
        .arg(user.path())
        .env("SECRET", SECRET)
        .env("TARGET", format!("http://{receiver_addr}/hook/0"))
        .env("NODE_RED_ENABLE_PROJECTS", "false")
        .current_dir(user.path())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start Node-RED (node)")?;
    let mut guard = FloorProcess(child);
    let url = format!("http://127.0.0.1:{port}/hooks/github");
    let http = reqwest::Client::new();
    let started = Instant::now();
    loop {
        let answer = http
            .post(&url)
            .header("x-github-event", "push")
            .header(
                "x-hub-signature-256",
                cardwire::ingest::verify::sign(SECRET, body),
            )
            .body(body.clone())
            .send()
            .await;
        match answer {
            Ok(r) if r.status() == StatusCode::ACCEPTED => break,
            Ok(r) if r.status() != StatusCode::NOT_FOUND => {
                bail!("Node-RED answered {}: {}", r.status(), r.text().await?)
            }
            _ => {}
        }
        if let Some(status) = guard.0.try_wait()? {
            bail!("Node-RED exited at start: {status}");
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("Node-RED did not answer in 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let phase = measure(guard.pid(), &url, &receiver, body, args).await;
    drop(guard);
    Ok(phase)
}

// --- instructions ---

/// The events of the smaller and the larger run: an event's cost is the difference between
/// the two runs' counts over the difference between their events, so that start-up, the
/// connection's creation and the stop cancel out.
const FEW: u64 = 200;
const MANY: u64 = 1_200;

/// What callgrind counted in one run of the gateway, inclusive of what each function calls.
#[derive(Clone, Copy, Default)]
struct Counted {
    /// The hook handler: read, verify, parse, rules, render, noise, commit, answer.
    handler: u64,
    /// Rendering alone (inside the handler).
    render: u64,
    /// The delivery workers: read the outbox, POST, record.
    deliver: u64,
}

/// `--instructions`: each binary started under `valgrind --tool=callgrind`, FEW and then MANY
/// signed pushes sent one at a time (so that no batching or timing changes what is counted),
/// each card delivered, the gateway stopped, and the counts of the hook handler, rendering
/// and delivery read from `callgrind_annotate`. Background threads (sled's flusher, timers)
/// are left out: what they count depends on how long the run takes, not on the events. The
/// counts repeat to within a few hundred instructions an event; CPU time follows them only
/// roughly (memory waits and the CPU's SHA instructions, which valgrind does not run, are
/// not in them), but an A/B of the same work reads true.
async fn instructions(args: &Args, binary: &Path, templates: &Path) -> Result<()> {
    for tool in ["valgrind", "callgrind_annotate"] {
        if Command::new(tool).arg("--version").output().is_err() {
            bail!("--instructions needs {tool} (Debian's valgrind package)");
        }
    }
    let mut runs = vec![(
        "this binary",
        binary.to_path_buf(),
        templates.to_path_buf(),
        None,
    )];
    if let Some(other) = &args.against {
        let t = args
            .against_templates
            .clone()
            .unwrap_or_else(|| templates.to_path_buf());
        runs.push(("--against", other.clone(), t, None));
    }
    if args.telemetry {
        // An OTLP sink: every export answered 200, nothing kept.
        let sink = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(|_: bytes::Bytes| async { "{}" }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let at = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, sink).await });
        runs.push((
            "this binary, traces on",
            binary.to_path_buf(),
            templates.to_path_buf(),
            Some(format!("http://{at}")),
        ));
    }
    let http = reqwest::Client::new();
    let (receiver, receiver_addr) = start_receiver(Instant::now()).await;
    let mut results = Vec::new();
    for (name, binary, templates, otlp) in &runs {
        let mut per = [Counted::default(); 2];
        for (slot, events) in [FEW, MANY].into_iter().enumerate() {
            per[slot] = count_run(
                binary,
                templates,
                events,
                &http,
                &receiver,
                receiver_addr,
                otlp.as_deref(),
            )
            .await
            .with_context(|| format!("{name}: {}", binary.display()))?;
        }
        let each = |f: fn(&Counted) -> u64| {
            f(&per[1]).saturating_sub(f(&per[0])) as f64 / (MANY - FEW) as f64
        };
        results.push((
            *name,
            binary.clone(),
            templates.clone(),
            each(|c| c.handler),
            each(|c| c.render),
            each(|c| c.deliver),
        ));
    }
    println!(
        "cardwire bench --instructions: instructions an event (callgrind, {FEW} and {MANY} events, one at a time)"
    );
    println!();
    println!(
        "| binary | templates | hook handler | of which render | delivery | handler + delivery |"
    );
    println!("|---|---|---|---|---|---|");
    let first = results[0].3 + results[0].5;
    for (i, (name, binary, templates, handler, render, deliver)) in results.iter().enumerate() {
        let all = handler + deliver;
        println!(
            "| {name}: {} | {} | {handler:.0} | {render:.0} | {deliver:.0} | {all:.0}{} |",
            binary.display(),
            templates.display(),
            if i == 0 {
                String::new()
            } else {
                format!(" (this binary: {:+.1} %)", (first / all - 1.0) * 100.0)
            }
        );
    }
    Ok(())
}

/// One gateway under callgrind: `events` pushes in, their cards out, stopped; its counts.
async fn count_run(
    binary: &Path,
    templates: &Path,
    events: u64,
    http: &reqwest::Client,
    receiver: &Receiver,
    receiver_addr: SocketAddr,
    otlp: Option<&str>,
) -> Result<Counted> {
    let (dir, port, config) = shipped_config(templates, None)?;
    let out = dir.path().join("callgrind.out");
    let log = dir.path().join("valgrind.log");
    let mut command = Command::new("valgrind");
    if let Some(endpoint) = otlp {
        // Traces on as an operator would turn them on without editing the config.
        command.env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint);
    }
    command
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(binary)
        .stderr(std::fs::File::create(&log)?);
    let (g, _) = start(command, &config, port, http, Duration::from_secs(300)).await?;
    connect(http, &g, receiver_addr, 0, "github").await?;
    let before = receiver.received.load(Ordering::Relaxed);
    let body = bytes::Bytes::from(std::fs::read(
        root().join("tests/fixtures/github/push.event.4.json"),
    )?);
    let url = format!("http://{}/hooks/github", g.addr);
    let sent = load(&url, &[body], 1, Duration::MAX, Some(events), None).await;
    if sent.accepted != events {
        bail!("{} of {events} events accepted", sent.accepted);
    }
    drain(receiver, before + events, Duration::from_secs(60)).await;
    let delivered = receiver.received.load(Ordering::Relaxed) - before;
    if delivered != events {
        bail!("{delivered} of {events} cards delivered");
    }
    g.stop()?;
    let report = Command::new("callgrind_annotate")
        .arg("--inclusive=yes")
        .arg(&out)
        .output()?;
    if !report.status.success() {
        bail!(
            "callgrind_annotate failed: {}",
            String::from_utf8_lossy(&report.stderr)
        );
    }
    let text = String::from_utf8_lossy(&report.stdout);
    // The first of `functions` the report names (the compiler inlines one or another).
    let find = |functions: &[&str]| -> Result<u64> {
        functions
            .iter()
            .find_map(|function| {
                text.lines()
                    .find(|l| l.contains(function))
                    .and_then(|l| l.split_whitespace().next())
                    .and_then(|n| n.replace(',', "").parse().ok())
            })
            .with_context(|| {
                format!(
                    "none of {functions:?} in callgrind's report ({})",
                    out.display()
                )
            })
    };
    let counted = Counted {
        handler: find(&["cardwire::ingest::handle_hook::{{closure}} ["])?,
        render: find(&[
            "cardwire::render::Renderer::render_with [",
            "cardwire::render::Renderer::render_card_with [",
        ])?,
        deliver: find(&["cardwire::deliver::Deliverer::work::{{closure}} ["])?,
    };
    // Kept only while the report is read.
    drop(dir);
    Ok(counted)
}

// --- several instances ---

/// `--instances N`: the same load on sled (one instance), then on PostgreSQL with 1, 2 … N
/// instances on one database (each its own process, data folder and port; the load
/// generator's connections spread over them), each phase on a fresh database. A phase's
/// figures: events accepted a second, cards a second at the receiver (first card to last,
/// so the drain counts), CPU an event of every instance together and of PostgreSQL, and cards
/// lost.
async fn instances(args: &Args, binary: &Path, templates: &Path, n: usize) -> Result<()> {
    let body = bytes::Bytes::from(std::fs::read(
        root().join("tests/fixtures/github/push.event.4.json"),
    )?);
    let http = reqwest::Client::new();
    let epoch = Instant::now();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "cardwire bench --instances {n}: {} s per phase, {} connections spread over the instances, {} B payload, {cores} cores, PostgreSQL durable on the same machine",
        args.duration.as_secs(),
        args.connections,
        body.len()
    );
    let server = pg::Postgres::start_with(true);
    let mut rows = Vec::new();
    let phases: Vec<(StoreKind, usize)> = std::iter::once((StoreKind::Sled, 1))
        .chain((1..=n).map(|i| (StoreKind::Postgres, i)))
        .collect();
    for (phase, (store, count)) in phases.into_iter().enumerate() {
        let url = (store == StoreKind::Postgres).then(|| pg_database(&server, 100 + phase));
        let dir = tempfile::tempdir()?;
        let rules = rules_with(dir.path(), 0, 0)?;
        let mut gateways = Vec::new();
        for i in 0..count {
            let own = dir.path().join(format!("i{i}"));
            std::fs::create_dir_all(&own)?;
            let port = free_port();
            let config = write_config(&own, port, &rules, templates, url.as_deref())?;
            gateways.push(start_gateway(binary, &config, port, &http).await?.0);
        }
        let (receiver, receiver_addr) = start_receiver(epoch).await;
        connect(&http, &gateways[0], receiver_addr, 0, "github").await?;
        // The others read the connection when told (or at their next backstop round).
        for g in &gateways[1..] {
            let started = Instant::now();
            loop {
                let listed: serde_json::Value = http
                    .get(format!("http://{}/api/connections", g.addr))
                    .bearer_auth(TOKEN)
                    .send()
                    .await?
                    .json()
                    .await?;
                if listed.as_array().is_some_and(|c| !c.is_empty()) {
                    break;
                }
                if started.elapsed() > Duration::from_secs(15) {
                    bail!("an instance never saw the connection");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let urls: Vec<String> = gateways
            .iter()
            .map(|g| format!("http://{}/hooks/github", g.addr))
            .collect();
        let cpu = |gs: &[Gateway]| gs.iter().map(|g| usage(g.pid()).2).sum::<f64>();
        let (cpu_before, pg_before) = (cpu(&gateways), pg_cpu(&server));
        let load_start = epoch.elapsed();
        let done = load_over(
            &urls,
            std::slice::from_ref(&body),
            args.connections,
            args.duration,
            None,
            None,
        )
        .await;
        drain(&receiver, done.accepted, Duration::from_secs(30)).await;
        let received = receiver.received.load(Ordering::Relaxed);
        let first = Duration::from_nanos(receiver.first_ns.load(Ordering::Relaxed));
        let last = Duration::from_nanos(receiver.last_ns.load(Ordering::Relaxed));
        let window = last.saturating_sub(first.max(load_start));
        let used = cpu(&gateways) - cpu_before;
        let pg_used = if store == StoreKind::Postgres {
            pg_cpu(&server) - pg_before
        } else {
            0.0
        };
        for g in gateways {
            g.stop()?;
        }
        let name = match store {
            StoreKind::Sled => "sled, 1 instance".to_string(),
            StoreKind::Postgres => format!(
                "PostgreSQL, {count} instance{}",
                if count == 1 { "" } else { "s" }
            ),
        };
        println!(
            "{name}: {:.0} events/s, {:.0} cards/s, {} lost",
            done.rps(),
            received as f64 / window.as_secs_f64().max(1e-9),
            done.accepted.saturating_sub(received)
        );
        rows.push((
            name,
            done.rps(),
            received as f64 / window.as_secs_f64().max(1e-9),
            per_request(used, done.accepted),
            per_request(pg_used, done.accepted),
            done.accepted.saturating_sub(received),
            done.failed,
        ));
    }
    let sled_cards = rows[0].2;
    println!();
    println!("| store | events/s | cards/s (share of sled's) | CPU an event: cardwire / PostgreSQL | cards lost | requests failed |");
    println!("|---|---|---|---|---|---|");
    for (name, eps, cps, cw, pgc, lost, failed) in &rows {
        println!(
            "| {name} | {eps:.0} | {cps:.0} ({:.0} %) | {cw:.0} / {pgc:.0} µs | {lost} | {failed} |",
            cps / sled_cards.max(1e-9) * 100.0
        );
    }
    Ok(())
}

// --- slow clients ---

/// `--slow-clients N`: the gateway on its default `limits` (sled), N clients that each open a
/// connection and send half a request's headers, then nothing. Measured: its RSS before and
/// while they hang on, 20 signed pushes' latency meanwhile (on the connection the bench
/// opened before them, kept alive: a new connection waits for a place while the crowd holds
/// `max_connections`), and how many of the N the gateway closed, and when.
async fn slow_clients(binary: &Path, templates: &Path, n: usize) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let http = reqwest::Client::new();
    let epoch = Instant::now();
    let (_dir, port, config) = shipped_config(templates, None)?;
    let (g, _) = start_gateway(binary, &config, port, &http).await?;
    let (_receiver, receiver_addr) = start_receiver(epoch).await;
    connect(&http, &g, receiver_addr, 0, "github").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, idle_rss, _) = usage(g.pid());
    let opened = Instant::now();
    let clients: Vec<_> = (0..n)
        .map(|i| {
            let addr = g.addr;
            tokio::spawn(async move {
                // A hundred every 10 ms: a crowd, not a SYN flood (whose drops would measure
                // the kernel's queues rather than the gateway).
                tokio::time::sleep(Duration::from_millis((i / 100) as u64 * 10)).await;
                let mut s = tokio::time::timeout(
                    Duration::from_secs(5),
                    tokio::net::TcpStream::connect(addr),
                )
                .await
                .ok()?
                .ok()?;
                s.write_all(b"POST /hooks/github HTTP/1.1\r\nHost: cardwire\r\nX-GitHub-Eve")
                    .await
                    .ok()?;
                // Held until the gateway closes it (or the bench gives up).
                let mut buf = [0u8; 256];
                let closed = tokio::time::timeout(Duration::from_secs(30), async {
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                    }
                })
                .await
                .is_ok();
                Some(closed.then(|| opened.elapsed()))
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, held_rss, _) = usage(g.pid());
    let body = bytes::Bytes::from(std::fs::read(
        root().join("tests/fixtures/github/push.event.4.json"),
    )?);
    let signature = cardwire::ingest::verify::sign(SECRET, &body);
    let mut latencies = Vec::new();
    let mut accepted = 0;
    for i in 0..20 {
        let t = Instant::now();
        let res = http
            .post(format!("http://{}/hooks/github", g.addr))
            .header("content-type", "application/json")
            .header("x-github-event", "push")
            .header("x-github-delivery", format!("slow-{i}"))
            .header("x-hub-signature-256", &signature)
            .body(body.clone())
            .timeout(Duration::from_secs(30))
            .send()
            .await;
        if res.is_ok_and(|r| r.status() == StatusCode::ACCEPTED) {
            accepted += 1;
        }
        latencies.push(t.elapsed());
    }
    latencies.sort();
    let (mut connected, mut closed, mut last_close) = (0, 0, Duration::ZERO);
    let mut first_close = Duration::MAX;
    for c in clients {
        if let Some(result) = c.await? {
            connected += 1;
            if let Some(at) = result {
                closed += 1;
                last_close = last_close.max(at);
                first_close = first_close.min(at);
            }
        }
    }
    let (peak_rss, _, _) = usage(g.pid());
    g.stop()?;
    println!("cardwire bench --slow-clients {n}: default limits (header_timeout 10s, max_connections 1024)");
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| clients connected / closed by the gateway | {connected} / {closed} (from {:.1} s to {:.1} s after they opened) |",
        first_close.min(last_close).as_secs_f64(),
        last_close.as_secs_f64()
    );
    println!("| RSS idle / while they hang on / peak | {idle_rss:.1} / {held_rss:.1} / {peak_rss:.1} MB |");
    println!(
        "| 20 signed pushes meanwhile, on a connection kept alive from before: accepted, latency p50 / max | {accepted}, {:.1} / {:.1} ms |",
        latencies[latencies.len() / 2].as_secs_f64() * 1000.0,
        latencies[latencies.len() - 1].as_secs_f64() * 1000.0
    );
    Ok(())
}

/// Bytes a folder takes on disk (allocated blocks, not file lengths: sled's files may have
/// holes).
fn disk_used(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_used(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

/// Writes `n` delivered records into the store under `data`, as delivery leaves them: a
/// card of the shipped push template queued with its event's upstream delivery id, then
/// delivered with one attempt (its body dropped). In a runtime of its own, dropped at the end, so that the folder is free.
fn fill_history(data: &Path, n: usize, card: &str) -> Result<()> {
    let data = data.to_path_buf();
    let card = card.to_string();
    std::thread::spawn(move || -> Result<()> {
        let rt = tokio::runtime::Runtime::new()?;
        rt.block_on(async {
            let store = cardwire::store::Store::open(&data, None)?;
            let con = cardwire::ids::ConnectionId::new();
            let now = cardwire::store::now_ms();
            for i in 0..n {
                let mut rec = cardwire::store::OutboxRecord::new(
                    cardwire::ids::EventId::new(),
                    con.clone(),
                    "github-push",
                    cardwire::render::kind::CardKind::Teams,
                    card.clone(),
                    now,
                );
                // With its upstream delivery id, as a push has (random, as GitHub's UUIDs are).
                let claim = format!("{:032x}", rand::random::<u128>());
                let event = rec.event.clone();
                store
                    .enqueue_event(Some((&claim, &event)), std::slice::from_mut(&mut rec))?
                    .map_err(|_| anyhow::anyhow!("a random delivery id came twice"))?;
                let key = store
                    .next_for(&con)?
                    .ok_or_else(|| anyhow::anyhow!("the card just queued is not there"))?
                    .0;
                rec.attempts = 1;
                rec.attempt_log.push(cardwire::store::Attempt {
                    at_ms: now,
                    status: Some(200),
                    result: "delivered: 1".into(),
                });
                // With its message reference, as a keyed card's delivery leaves one (a subject
                // of its own: every reference kept).
                let reference = cardwire::store::MessageRef {
                    connection: con.clone(),
                    key: format!("octo-org/octo-repo#{i}"),
                    message: format!("{}", 1_100_000_000_000_000_000u64 + i as u64),
                    place: None,
                    delivery: rec.id.clone(),
                    at_ms: now,
                };
                store.deliver_with_ref(&key, &rec, &reference, true)?;
                if i % 10_000 == 9_999 {
                    store.commit().await?;
                    store.move_claims()?;
                    store.move_refs()?;
                }
            }
            store.flush()?;
            anyhow::Ok(())
        })?;
        drop(rt);
        Ok(())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("filling the history panicked"))?
}

/// The time a lookup of an upstream delivery id the store under `data` has not seen takes (what
/// every event with one pays twice: when it is staged and when it is claimed), over 100,000
/// random ids, in a runtime of its own.
fn new_id_lookup(data: &Path) -> Result<Duration> {
    let data = data.to_path_buf();
    std::thread::spawn(move || -> Result<Duration> {
        let rt = tokio::runtime::Runtime::new()?;
        let took = rt.block_on(async {
            let store = cardwire::store::Store::open(&data, None)?;
            let event = cardwire::ids::EventId::new();
            let ids: Vec<String> = (0..100_000)
                .map(|_| format!("{:032x}", rand::random::<u128>()))
                .collect();
            let started = Instant::now();
            for id in &ids {
                if store.reserve_delivery(id, &event)?.is_some() {
                    bail!("a random delivery id was taken");
                }
            }
            let took = started.elapsed() / ids.len() as u32;
            store.flush()?;
            anyhow::Ok(took)
        })?;
        drop(rt);
        Ok(took)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the lookups panicked"))?
}

/// Prunes every delivered record of the store under `data` (what `keep_delivered` does once
/// they are old enough), in a runtime of its own.
fn prune_history(data: &Path) -> Result<usize> {
    let data = data.to_path_buf();
    std::thread::spawn(move || -> Result<usize> {
        let rt = tokio::runtime::Runtime::new()?;
        let pruned = rt.block_on(async {
            let store = cardwire::store::Store::open(&data, None)?;
            let pruned = store.prune_delivered(Duration::ZERO)?;
            store.prune_seen(Duration::ZERO)?;
            store.prune_message_refs(Duration::ZERO)?;
            store.flush()?;
            anyhow::Ok(pruned)
        })?;
        drop(rt);
        Ok(pruned)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("pruning panicked"))?
}

/// `--history`: for each size, a store with that many delivered records; the disk it takes,
/// the gateway's start-up time and idle RSS on it, and the disk once every record is pruned
/// (and the gateway started again).
async fn history(binary: &Path, templates: &Path, sizes: &[usize]) -> Result<()> {
    let http = reqwest::Client::new();
    // A card as the shipped push template renders it (its body is dropped on delivery; the
    // queue holds it meanwhile).
    let card =
        serde_json::json!({"@type": "MessageCard", "summary": "push", "text": "x".repeat(900)})
            .to_string();
    println!("| delivered records and message references kept | disk | disk a record | of it, references | start-up | idle RSS | new-id lookup (× empty) | pruned: disk after restart |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut empty_disk = None;
    let mut empty_lookup = None;
    for &n in sizes {
        let (dir, port, config) = shipped_config(templates, None)?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)?;
        let filled = Instant::now();
        fill_history(&data, n, &card)?;
        let fill_time = filled.elapsed();
        let lookup = new_id_lookup(&data)?;
        let lookup_base = *empty_lookup.get_or_insert(lookup);
        let (g, ready) = start_gateway(binary, &config, port, &http).await?;
        // Idle: what a quiet gateway keeps (it hands freed pages back when traffic stops).
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (_, idle_rss, _) = usage(g.pid());
        g.stop()?;
        let disk = disk_used(&data);
        let refs = disk_used(&data.join("message_refs"));
        let base = *empty_disk.get_or_insert(disk);
        let per_record = if n > 0 {
            format!("{:.0} B", disk.saturating_sub(base) as f64 / n as f64)
        } else {
            "—".into()
        };
        let pruned = prune_history(&data)?;
        let (g, _) = start_gateway(binary, &config, port, &http).await?;
        g.stop()?;
        let after = disk_used(&data);
        eprintln!("{n}: filled in {fill_time:.1?}, pruned {pruned}");
        println!(
            "| {n} | {:.1} MB | {per_record} | {:.1} MB | {:.0} ms | {idle_rss:.1} MB | {:.2} µs (× {:.1}) | {:.1} MB |",
            disk as f64 / 1e6,
            refs as f64 / 1e6,
            ready.as_secs_f64() * 1e3,
            lookup.as_secs_f64() * 1e6,
            lookup.as_secs_f64() / lookup_base.as_secs_f64(),
            after as f64 / 1e6,
        );
    }
    Ok(())
}

// --- keyed cards ---

/// A Discord webhook's side, for `--updates`: a post answers its message (`?wait=true`), an
/// edit (`PATCH …/messages/{id}`) the edited one; each counted with when it arrived.
async fn start_discord_receiver(epoch: Instant) -> (Arc<Receiver>, SocketAddr) {
    let r = Arc::new(Receiver::default());
    let note = move |r: &Receiver, body: &[u8]| {
        let now = epoch.elapsed().as_nanos() as u64;
        let _ = r
            .first_ns
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        r.last_ns.fetch_max(now, Ordering::Relaxed);
        r.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
        r.received.fetch_add(1, Ordering::Relaxed)
    };
    let router = Router::new()
        .route(
            "/api/webhooks/{n}/{token}",
            post(
                move |State(r): State<Arc<Receiver>>, body: axum::body::Bytes| async move {
                    let id = 1_100_000_000_000_000_000u64 + note(&r, &body);
                    (
                        StatusCode::OK,
                        format!("{{\"id\": \"{id}\", \"channel_id\": \"1\"}}"),
                    )
                },
            ),
        )
        .route(
            "/api/webhooks/{n}/{token}/messages/{id}",
            axum::routing::patch(
                move |State(r): State<Arc<Receiver>>,
                      axum::extract::Path((_, _, id)): axum::extract::Path<(
                    String,
                    String,
                    String,
                )>,
                      body: axum::body::Bytes| async move {
                    note(&r, &body);
                    (
                        StatusCode::OK,
                        format!("{{\"id\": \"{id}\", \"channel_id\": \"1\"}}"),
                    )
                },
            ),
        )
        .with_state(r.clone());
    (r, serve(router).await)
}

/// `--updates K`: the cards/s of keyed cards that edit one of `keys` messages against that
/// of new posts, alternating phases on fresh gateways, `--rounds` rounds; each phase posts
/// `--duration` of signed pull requests (numbered `i % keys`, or all different for new
/// posts), then waits for the receiver to have every card.
async fn updates(binary: &Path, templates: &Path, args: &Args, keys: usize) -> Result<()> {
    let http = reqwest::Client::new();
    let opened: serde_json::Value = serde_json::from_slice(&std::fs::read(
        root().join("tests/fixtures/github/pull_request.opened.0.json"),
    )?)?;
    // Enough distinct pull requests that no phase runs out (a new post each).
    let bodies = |count: usize| -> Vec<(bytes::Bytes, String)> {
        (0..count)
            .map(|n| {
                let mut v = opened.clone();
                v["number"] = serde_json::json!(n + 1);
                v["pull_request"]["number"] = serde_json::json!(n + 1);
                let body = serde_json::to_vec(&v).unwrap();
                let sig = cardwire::ingest::verify::sign(SECRET, &body);
                (bytes::Bytes::from(body), sig)
            })
            .collect()
    };
    let distinct = Arc::new(bodies(200_000));
    let keyed = Arc::new(bodies(keys.max(1)));
    println!("| round | phase | events/s | cards/s | of new posts |");
    println!("|---|---|---|---|---|");
    let mut ratios = Vec::new();
    for round in 0..args.rounds {
        let mut cps = [0.0f64; 2];
        let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for phase in order {
            let (update, signed) = if phase == 0 {
                ("new", distinct.clone())
            } else {
                ("replace", keyed.clone())
            };
            let dir = tempfile::tempdir()?;
            let rules = dir.path().join("rules");
            std::fs::create_dir_all(&rules)?;
            std::fs::write(
                rules.join("prs.yaml"),
                format!("- name: prs\n  source: github\n  event: pull_request\n  template: github/pull_request\n  update: {update}\n"),
            )?;
            let port = free_port();
            let config = write_config(dir.path(), port, &rules, templates, None)?;
            let epoch = Instant::now();
            let (receiver, raddr) = start_discord_receiver(epoch).await;
            let (g, _) = start_gateway(binary, &config, port, &http).await?;
            let res = http
                .post(format!("http://{}/api/connections", g.addr))
                .bearer_auth(TOKEN)
                .json(&serde_json::json!({
                    "name": "discord", "url": format!("http://{raddr}/api/webhooks/1/t"),
                    "kind": "discord",
                }))
                .send()
                .await?;
            if res.status() != StatusCode::CREATED {
                bail!("cannot add the connection: {}", res.text().await?);
            }
            let url = format!("http://{}/hooks/github", g.addr);
            let started = Instant::now();
            let sent = Arc::new(AtomicU64::new(0));
            let mut tasks = Vec::new();
            for task in 0..args.connections {
                let (url, signed, sent) = (url.clone(), signed.clone(), sent.clone());
                let duration = args.duration;
                tasks.push(tokio::spawn(async move {
                    let client = reqwest::Client::new();
                    let mut ok = 0u64;
                    while started.elapsed() < duration {
                        let n = sent.fetch_add(1, Ordering::Relaxed) as usize;
                        let (body, sig) = &signed[n % signed.len()];
                        let res = client
                            .post(&url)
                            .header("content-type", "application/json")
                            .header("x-github-event", "pull_request")
                            .header("x-github-delivery", format!("u-{round}-{phase}-{task}-{n}"))
                            .header("x-hub-signature-256", sig)
                            .body(body.clone())
                            .send()
                            .await;
                        if res.is_ok_and(|r| r.status() == StatusCode::ACCEPTED) {
                            ok += 1;
                        }
                    }
                    ok
                }));
            }
            let mut accepted = 0;
            for t in tasks {
                accepted += t.await?;
            }
            let elapsed = started.elapsed();
            drain(&receiver, accepted, Duration::from_secs(10)).await;
            let got = receiver.received.load(Ordering::Relaxed);
            let span = Duration::from_nanos(
                receiver.last_ns.load(Ordering::Relaxed)
                    - receiver.first_ns.load(Ordering::Relaxed),
            );
            g.stop()?;
            if got < accepted {
                bail!("{update}: {got} of {accepted} cards arrived");
            }
            cps[phase] = got as f64 / span.as_secs_f64();
            println!(
                "| {} | {} | {:.0} | {:.0} | {} |",
                round + 1,
                if phase == 0 { "new posts" } else { "updates" },
                accepted as f64 / elapsed.as_secs_f64(),
                cps[phase],
                if cps[0] > 0.0 && cps[1] > 0.0 {
                    format!("{:.2}×", cps[1] / cps[0])
                } else {
                    "—".into()
                },
            );
        }
        ratios.push(cps[1] / cps[0]);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "\nupdates of {keys} keys: {:.2}× the cards/s of new posts (median of {} rounds)",
        ratios[ratios.len() / 2],
        ratios.len()
    );
    Ok(())
}

// --- the soak ---

/// The soak's receiver: fails every tenth request (500), answers 429 while `throttle` is
/// set, and keeps the distinct cards it got (by Idempotency-Key).
#[derive(Default)]
struct SoakReceiver {
    requests: AtomicU64,
    throttle: AtomicBool,
    cards: std::sync::Mutex<std::collections::HashSet<String>>,
}

async fn start_soak_receiver() -> (Arc<SoakReceiver>, SocketAddr) {
    let r = Arc::new(SoakReceiver::default());
    let router = Router::new()
        .route(
            "/hook/{n}",
            post(
                |State(r): State<Arc<SoakReceiver>>, headers: axum::http::HeaderMap| async move {
                    let n = r.requests.fetch_add(1, Ordering::Relaxed);
                    if r.throttle.load(Ordering::Relaxed) {
                        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "");
                    }
                    if n % 10 == 9 {
                        return (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            [("retry-after", "0")],
                            "",
                        );
                    }
                    if let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok())
                    {
                        r.cards.lock().unwrap().insert(key.to_string());
                    }
                    (StatusCode::OK, [("retry-after", "0")], "1")
                },
            ),
        )
        .with_state(r.clone());
    (r, serve(router).await)
}

/// A column of the soak's samples.
type Field = fn(&Sample) -> f64;

/// One sample of the soak.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Seconds since the load started.
    t: f64,
    rss_mb: f64,
    disk_mb: f64,
    /// The disk's parts: sled's log (the queue), delivered records, upstream delivery ids.
    sled_mb: f64,
    delivered_mb: f64,
    ids_mb: f64,
    queued: f64,
    /// CPU of the gateway over the last interval, in % of one core.
    cpu_pct: f64,
}

/// A gauge of `/metrics`, by its full name with labels.
async fn metric(http: &reqwest::Client, addr: SocketAddr, name: &str) -> Option<f64> {
    let text = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The least-squares slope of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(num, den), (x, y)| {
        (num + (x - mx) * (y - my), den + (x - mx) * (x - mx))
    });
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

/// `--soak D --rate R`: see the module's opening. The events are spread over 50 teams
/// connections, each a channel of its own.
async fn soak(
    binary: &Path,
    templates: &Path,
    duration: Duration,
    rate: u64,
    out: &Path,
) -> Result<()> {
    let http = reqwest::Client::new();
    std::fs::create_dir_all(out)?;
    let (receiver, receiver_addr) = start_soak_receiver().await;
    // Spread over 50 team channels (10 cards/s each at 500 events/s): one connection's
    // queue is sent in order, so a retry holds up only its own team's cards, as in real use.
    const TEAMS: usize = 50;
    let dir = tempfile::tempdir()?;
    let port = free_port();
    let config = write_config(
        dir.path(),
        port,
        &rules_with(dir.path(), 0, TEAMS)?,
        templates,
        None,
    )?;
    // Records and upstream delivery ids kept a fifth of the run (at least a minute), so that
    // pruning runs for most of it.
    let keep = (duration / 5).max(Duration::from_secs(60));
    let text = std::fs::read_to_string(&config)?.replace(
        "delivery:\n  pacing: false\n",
        &format!(
            "delivery:\n  pacing: false\n  keep_delivered: {0}s\n  keep_delivery_ids: {0}s\n",
            keep.as_secs()
        ),
    );
    std::fs::write(&config, text)?;
    let data = dir.path().join("data");
    // Its log (a warning for each failed attempt) beside the samples.
    let mut command = Command::new(binary);
    command.stderr(std::fs::File::create(out.join("gateway.log"))?);
    let (g, _) = start(command, &config, port, &http, Duration::from_secs(30)).await?;
    for t in 0..TEAMS {
        connect(&http, &g, receiver_addr, t, &team_channel(t)).await?;
    }
    let body = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/github/push.event.4.json"),
    )?;
    let bodies = (0..TEAMS)
        .map(|t| team_payload(&body, t))
        .collect::<Result<Vec<_>>>()?;
    let url = format!("http://{}/hooks/github", g.addr);
    let started = Instant::now();
    let load_task =
        tokio::spawn(
            async move { load(&url, &bodies, 8, duration, None, Some(rate as f64)).await },
        );
    // 429s for 5 s every 2 minutes.
    let throttler = {
        let receiver = receiver.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(115)).await;
                receiver.throttle.store(true, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(5)).await;
                receiver.throttle.store(false, Ordering::Relaxed);
            }
        })
    };
    let csv_path = out.join("soak.csv");
    let mut csv =
        String::from("t_s,rss_mb,disk_mb,sled_mb,delivered_mb,delivery_ids_mb,queued,cpu_pct\n");
    let mut samples = Vec::new();
    let mut last_cpu = usage(g.pid()).2;
    let mut last_t = 0.0;
    let every = Duration::from_secs(10);
    let mut next = started + every;
    let load_done = loop {
        tokio::time::sleep_until(next.into()).await;
        next += every;
        let t = started.elapsed().as_secs_f64();
        let (_, rss, cpu) = usage(g.pid());
        let queued = metric(&http, g.addr, "cardwire_queue_depth{state=\"queued\"}")
            .await
            .unwrap_or(f64::NAN);
        let s = Sample {
            t,
            rss_mb: rss,
            disk_mb: disk_used(&data) as f64 / 1e6,
            sled_mb: disk_used(&data.join("sled")) as f64 / 1e6,
            delivered_mb: disk_used(&data.join("delivered")) as f64 / 1e6,
            ids_mb: disk_used(&data.join("delivery_ids")) as f64 / 1e6,
            queued,
            cpu_pct: (cpu - last_cpu) / (t - last_t) * 100.0,
        };
        (last_cpu, last_t) = (cpu, t);
        csv.push_str(&format!(
            "{:.0},{:.1},{:.1},{:.1},{:.1},{:.1},{:.0},{:.1}\n",
            s.t, s.rss_mb, s.disk_mb, s.sled_mb, s.delivered_mb, s.ids_mb, s.queued, s.cpu_pct
        ));
        std::fs::write(&csv_path, &csv)?;
        samples.push(s);
        eprintln!(
            "{:>6.0} s  RSS {:>5.1} MB  disk {:>6.1} MB  queued {:>6.0}  CPU {:>5.1} %",
            s.t, s.rss_mb, s.disk_mb, s.queued, s.cpu_pct
        );
        if load_task.is_finished() {
            break load_task.await?;
        }
    };
    throttler.abort();
    receiver.throttle.store(false, Ordering::Relaxed);
    // Drained: every card delivered or buried.
    let drain_deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < drain_deadline
        && metric(&http, g.addr, "cardwire_queue_depth{state=\"queued\"}")
            .await
            .unwrap_or(1.0)
            > 0.0
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dead = metric(&http, g.addr, "cardwire_queue_depth{state=\"dead\"}")
        .await
        .unwrap_or(0.0) as u64;
    let queued = metric(&http, g.addr, "cardwire_queue_depth{state=\"queued\"}")
        .await
        .unwrap_or(0.0) as u64;
    let delivered = receiver.cards.lock().unwrap().len() as u64;
    g.stop()?;
    // The store as the run left it, for a look at what it holds (`--out`/data).
    let kept = out.join("data");
    let _ = std::fs::remove_dir_all(&kept);
    let copied = Command::new("cp")
        .arg("-a")
        .arg(&data)
        .arg(&kept)
        .status()?;
    if !copied.success() {
        bail!("cannot copy the store to {}", kept.display());
    }
    let lost = load_done.accepted.saturating_sub(delivered + dead + queued);

    // Once pruning has started: the first file of records (which takes them for a tenth of
    // keep, and is sealed and removed at the pruning ticks after) can have gone.
    let pruning = keep.as_secs_f64() * 1.1 + 2.0 * cardwire::app::prune_every(keep).as_secs_f64();
    let steady: Vec<&Sample> = samples.iter().filter(|s| s.t >= pruning).collect();
    let per_hour = |f: Field| {
        slope(
            &steady
                .iter()
                .map(|s| (s.t / 3600.0, f(s)))
                .collect::<Vec<_>>(),
        )
    };
    let (rss_slope, disk_slope) = (per_hour(|s| s.rss_mb), per_hour(|s| s.disk_mb));
    let png = out.join("soak.png");
    plot(&samples, pruning, &png)?;
    let max = |f: Field| samples.iter().map(f).fold(0.0, f64::max);
    println!();
    println!(
        "soak: {:?} at {rate} events/s, records and delivery ids kept {}s; samples in {}, plot in {}",
        duration,
        keep.as_secs(),
        csv_path.display(),
        png.display()
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| events accepted / refused | {} / {} |",
        load_done.accepted,
        load_done.requests - load_done.accepted
    );
    println!("| cards delivered / dead letters / still queued | {delivered} / {dead} / {queued} |");
    println!("| **lost** | **{lost}** |");
    println!(
        "| receiver: requests in all (10 % failed, 429 for 5 s every 2 min) | {} |",
        receiver.requests.load(Ordering::Relaxed)
    );
    println!(
        "| RSS max / slope once pruning runs (from {pruning:.0} s) | {:.1} MB / {rss_slope:+.2} MB/h |",
        max(|s| s.rss_mb)
    );
    println!(
        "| disk max / slope once pruning runs | {:.1} MB / {disk_slope:+.2} MB/h |",
        max(|s| s.disk_mb)
    );
    for (part, f) in [
        ("sled's log", (|s| s.sled_mb) as Field),
        ("delivered records", |s| s.delivered_mb),
        ("upstream delivery ids", |s| s.ids_mb),
    ] {
        println!(
            "| disk: {part}, max / slope once pruning runs | {:.1} MB / {:+.2} MB/h |",
            max(f),
            per_hour(f)
        );
    }
    println!("| queue depth max | {:.0} |", max(|s| s.queued));
    println!(
        "| CPU mean | {:.1} % of a core |",
        samples.iter().map(|s| s.cpu_pct).sum::<f64>() / samples.len().max(1) as f64
    );
    Ok(())
}

/// RSS, disk (and, fainter, its parts), queue depth and CPU against minutes, one panel each,
/// into a PNG.
fn plot(samples: &[Sample], pruning_from: f64, png: &Path) -> Result<()> {
    use plotters::prelude::*;
    // Text needs a font: DejaVu Sans where Debian has it; without one, the lines alone.
    let font = ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"]
        .iter()
        .find_map(|p| std::fs::read(p).ok());
    let labelled = match font {
        Some(bytes) => {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| anyhow::anyhow!("the font does not load"))?;
            true
        }
        None => false,
    };
    let root = BitMapBackend::new(png, (1200, 800)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((2, 2));
    let series: [(&str, Field, RGBColor); 4] = [
        ("RSS (MB)", |s| s.rss_mb, BLUE),
        ("disk (MB; fainter: sled, records, ids)", |s| s.disk_mb, RED),
        ("queue depth (cards)", |s| s.queued, GREEN),
        ("CPU (% of a core)", |s| s.cpu_pct, MAGENTA),
    ];
    let t_max = samples.last().map_or(1.0, |s| s.t / 60.0).max(1.0);
    for (panel, (name, f, color)) in panels.iter().zip(series) {
        let y_max = samples.iter().map(f).fold(1.0, f64::max) * 1.1;
        let mut chart = ChartBuilder::on(panel);
        chart.margin(10).x_label_area_size(30).y_label_area_size(50);
        if labelled {
            chart.caption(name, ("sans-serif", 20));
        }
        let mut chart = chart.build_cartesian_2d(0.0..t_max, 0.0..y_max)?;
        if labelled {
            chart
                .configure_mesh()
                .x_desc("minutes")
                .label_style(("sans-serif", 12))
                .draw()?;
        }
        chart.draw_series(LineSeries::new(
            samples.iter().map(|s| (s.t / 60.0, f(s))),
            &color,
        ))?;
        // The disk's parts beside it, fainter: sled's log, delivered records, delivery ids.
        if name.starts_with("disk") {
            let parts: [(Field, RGBColor); 3] = [
                (|s| s.sled_mb, BLACK),
                (|s| s.delivered_mb, RED),
                (|s| s.ids_mb, BLUE),
            ];
            for (part, c) in parts {
                chart.draw_series(LineSeries::new(
                    samples.iter().map(|s| (s.t / 60.0, part(s))),
                    &c.mix(0.4),
                ))?;
            }
        }
        // Where pruning has started.
        let x = pruning_from / 60.0;
        chart.draw_series(LineSeries::new([(x, 0.0), (x, y_max)], &BLACK.mix(0.3)))?;
    }
    root.present()?;
    Ok(())
}
