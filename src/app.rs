//! The running gateway: shared state, the router, background tasks and shutdown.
//!
//! [`Server::start`] opens the store, loads rules and templates, resumes delivery of what was
//! queued before, binds the listener and serves; [`Server::stop`] stops accepting, lets
//! requests in flight finish, stops the delivery workers (their cards stay queued), flushes
//! and releases the data directory, so the same process can start again on it.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use axum::extract::FromRef;
use axum::routing::get;
use axum::Router;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::pages::Pages;
use crate::config::Config;
use crate::connect::emulator::Emulator;
use crate::connect::flow::Flows;
use crate::connections::Connections;
use crate::deliver::api::Registry;
use crate::deliver::policy::TargetPolicy;
use crate::deliver::Deliverer;
use crate::gate::Gate;
use crate::metrics::Scrape;
use crate::pipeline::Pipeline;
use crate::playground::Playground;
use crate::reload::Reloader;
use crate::stage::Stager;
use crate::store::Store;

/// Everything the gateway shares. Only this module names it: each group of handlers takes the
/// part it needs (a sub-state, built from this one with axum's [`FromRef`]), and the routers
/// are assembled here.
pub struct App {
    /// The settings.
    pub config: Arc<Config>,
    /// The rules and templates in force (swapped whole on reload).
    pub pipeline: Arc<ArcSwap<Pipeline>>,
    /// Durable state.
    pub store: crate::store::SharedStore,
    /// The connections, cached.
    pub connections: Arc<Connections>,
    /// The delivery workers.
    pub deliverer: Arc<Deliverer>,
    /// Which webhook URLs are acceptable.
    pub policy: Arc<TargetPolicy>,
    /// The last change to rules or templates that did not load.
    pub last_rejected: Arc<arc_swap::ArcSwapOption<crate::reload::Rejected>>,
    /// The Office 365 emulator's inboxes, when the emulator is on (the Slack and Discord
    /// emulators' channels too).
    pub inboxes: Option<Arc<crate::connect::inboxes::Inboxes>>,
    /// The Slack and Discord emulators' codes and webhooks, when the emulator is on.
    pub chats: Option<Arc<crate::connect::chat_emulator::Chats>>,
    /// The GitHub emulator's codes and apps, when the emulator is on.
    pub github: Option<Arc<crate::connect::github_emulator::GitHubState>>,
    /// The GitLab emulator's hooks, when the emulator is on.
    pub gitlab: Option<Arc<crate::connect::gitlab_emulator::GitLabState>>,
    /// The HTTP client of the Add to Slack / Discord code exchanges.
    pub oauth_http: reqwest::Client,
    /// Signed-in sessions of the /connections pages.
    pub sessions: Arc<crate::gate::Sessions>,
    /// The Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Noise control: dedup, limits that fold, caps, digests.
    pub noise: Arc<crate::noise::Noise>,
    /// The live tail (`GET /api/stream`).
    pub live: crate::live::Live,
    /// Template failures already logged (once per template and reason).
    pub render_failures: Arc<crate::stage::RenderFailures>,
    /// The sources' GitHub Apps' secrets and GitLab hooks' tokens.
    pub source_secrets: Arc<crate::sources::SourceSecrets>,
    /// Traces over OTLP (off by default).
    pub telemetry: Arc<crate::telemetry::Telemetry>,
}

/// The state the router holds.
pub type AppState = Arc<App>;

impl App {
    /// What staging reaches.
    pub fn stager(&self) -> Stager {
        Stager {
            config: self.config.clone(),
            pipeline: self.pipeline.clone(),
            store: self.store.clone(),
            connections: self.connections.clone(),
            deliverer: self.deliverer.clone(),
            live: self.live.clone(),
            metrics: self.metrics.clone(),
            noise: self.noise.clone(),
            render_failures: self.render_failures.clone(),
            source_secrets: self.source_secrets.clone(),
            telemetry: self.telemetry.clone(),
        }
    }

    fn registry(&self) -> Registry {
        Registry {
            store: self.store.clone(),
            connections: self.connections.clone(),
            deliverer: self.deliverer.clone(),
            policy: self.policy.clone(),
        }
    }

    /// What reloading reaches.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            config: self.config.clone(),
            pipeline: self.pipeline.clone(),
            metrics: self.metrics.clone(),
            noise: self.noise.clone(),
            last_rejected: self.last_rejected.clone(),
        }
    }
}

impl FromRef<AppState> for Stager {
    fn from_ref(app: &AppState) -> Self {
        app.stager()
    }
}

impl FromRef<AppState> for Gate {
    fn from_ref(app: &AppState) -> Self {
        Gate {
            config: app.config.clone(),
            sessions: app.sessions.clone(),
        }
    }
}

impl FromRef<AppState> for Pages {
    fn from_ref(app: &AppState) -> Self {
        Pages {
            config: app.config.clone(),
            sessions: app.sessions.clone(),
            store: app.store.clone(),
            connections: app.connections.clone(),
            deliverer: app.deliverer.clone(),
            policy: app.policy.clone(),
            pipeline: app.pipeline.clone(),
            source_secrets: app.source_secrets.clone(),
            http: app.oauth_http.clone(),
        }
    }
}

impl FromRef<AppState> for crate::connect::github_emulator::GitHubEmulator {
    fn from_ref(app: &AppState) -> Self {
        Self {
            config: app.config.clone(),
            state: app.github.clone(),
        }
    }
}

impl FromRef<AppState> for crate::connect::gitlab_emulator::GitLabEmulator {
    fn from_ref(app: &AppState) -> Self {
        Self {
            state: app.gitlab.clone(),
        }
    }
}

impl FromRef<AppState> for Registry {
    fn from_ref(app: &AppState) -> Self {
        app.registry()
    }
}

impl FromRef<AppState> for Emulator {
    fn from_ref(app: &AppState) -> Self {
        Emulator {
            config: app.config.clone(),
            inboxes: app.inboxes.clone(),
        }
    }
}

impl FromRef<AppState> for crate::connect::chat_emulator::ChatEmulator {
    fn from_ref(app: &AppState) -> Self {
        Self {
            config: app.config.clone(),
            inboxes: app.inboxes.clone(),
            chats: app.chats.clone(),
        }
    }
}

impl FromRef<AppState> for Flows {
    fn from_ref(app: &AppState) -> Self {
        Flows {
            config: app.config.clone(),
            pipeline: app.pipeline.clone(),
            store: app.store.clone(),
            connections: app.connections.clone(),
            policy: app.policy.clone(),
            http: app.oauth_http.clone(),
        }
    }
}

impl FromRef<AppState> for Scrape {
    fn from_ref(app: &AppState) -> Self {
        Scrape {
            metrics: app.metrics.clone(),
            store: app.store.clone(),
        }
    }
}

impl FromRef<AppState> for Reloader {
    fn from_ref(app: &AppState) -> Self {
        app.reloader()
    }
}

impl FromRef<AppState> for Playground {
    fn from_ref(app: &AppState) -> Self {
        Playground {
            stage: app.stager(),
            sessions: app.sessions.clone(),
            reloader: app.reloader(),
        }
    }
}

/// All routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health))
        .route("/readyz", get(health))
        .merge(crate::ingest::router())
        .merge(crate::connect::api::router())
        .merge(crate::reload::router())
        .merge(crate::deliver::api::router())
        .merge(crate::connect::flow::router())
        .merge(crate::connect::emulator::router())
        .merge(crate::connect::oauth::router())
        .merge(crate::connect::chat_emulator::router())
        .merge(crate::connect::mattermost_emulator::router())
        .merge(crate::connect::github_emulator::router())
        .merge(crate::connect::gitlab_emulator::router())
        .merge(crate::admin::pages::router())
        .merge(crate::admin::sources::router())
        .merge(crate::admin::gitlab::router())
        .merge(crate::admin::home::router())
        .merge(crate::metrics::router())
        .merge(crate::playground::router())
        .fallback(crate::admin::home::not_found)
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// `/healthz` and `/readyz` (for load balancers): `ok` while the store takes writes, else
/// `503 {"error": "store_unavailable"}` (its database does not answer) or `503 {"error":
/// "storage_full"}` (no room kept on its disk): an instance that cannot accept events is
/// taken out of rotation, and put back when its database answers or space returns.
async fn health(
    axum::extract::State(app): axum::extract::State<AppState>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let store = app.store.clone();
    let checked = tokio::task::spawn_blocking(move || store.health()).await;
    match checked {
        Ok(Ok(())) => "ok".into_response(),
        Ok(Err(e)) => {
            app.metrics.store_error(e.kind());
            crate::stage::store_failed(&e).into_response()
        }
        Err(_) => {
            crate::error::ApiError::internal(&crate::store::StoreError::Closed).into_response()
        }
    }
}

/// How often [`spawn_watchdog`] asks the store whether it still writes.
const WATCHDOG_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Asks the store every [`WATCHDOG_EVERY`] whether it still writes, and cancels `broken` when
/// it will not until opened again. Holds the store weakly, so that a stopped server releases
/// its data folder without waiting for it.
fn spawn_watchdog(store: std::sync::Weak<dyn crate::store::Backend>, broken: CancellationToken) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(WATCHDOG_EVERY).await;
            let Some(store) = store.upgrade() else { return };
            let checked = tokio::task::spawn_blocking(move || store.health()).await;
            if let Ok(Err(e)) = checked {
                if e.needs_reopen() {
                    tracing::error!(error = %crate::error::ErrorChain(&e), "the store stopped writing after an I/O error; opening it again");
                    broken.cancel();
                    return;
                }
            }
        }
    });
}

/// A running server.
pub struct Server {
    app: Arc<App>,
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
    /// Stops the delivery workers when the server is dropped without [`Server::stop`] (a
    /// test's runtime ending): they hold the deliverer, which holds their runtime and the
    /// store, whose connections (PostgreSQL) would otherwise stay open.
    _workers: tokio_util::sync::DropGuard,
    /// Cancelled when the store stopped writing for good until it is opened again (see
    /// [`Server::broken`]).
    broken: CancellationToken,
}

impl Server {
    /// Starts the gateway with a loaded pipeline.
    pub async fn start(mut config: Config, pipeline: Pipeline) -> anyhow::Result<Self> {
        let store = open_store(&config)?;
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let connections = Arc::new(Connections::load(store.clone())?);
        let live = crate::live::Live::default();
        let telemetry = Arc::new(crate::telemetry::Telemetry::start(
            config.telemetry.as_ref(),
        )?);
        let deliverer = Deliverer::new(
            store.clone(),
            connections.clone(),
            &config.delivery,
            guard(&config),
            metrics.clone(),
            live.clone(),
            telemetry.clone(),
        )?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        if config.public_url.is_none() {
            // Listening on port 0: links (callback, emulator inboxes) name the real port.
            config.public_url = Some(format!("http://{addr}"));
        }
        log_start(&config, &pipeline, connections.all().len(), store.queued());
        let source_secrets = Arc::new(
            crate::sources::SourceSecrets::load(store.clone())
                .context("cannot read the sources' GitHub Apps")?,
        );
        let app = Arc::new(App {
            source_secrets,
            telemetry: telemetry.clone(),
            policy: Arc::new(policy(&config)),
            inboxes: config.emulator().then(Default::default),
            chats: config.emulator().then(Default::default),
            github: config.emulator().then(Default::default),
            gitlab: config.emulator().then(Default::default),
            oauth_http: crate::connect::oauth::http_client(),
            sessions: Default::default(),
            live,
            render_failures: Default::default(),
            noise: Arc::new(crate::noise::Noise::new(
                store.clone(),
                config.delivery.pacing != crate::config::PacingConfig::Switch(false),
            )),
            metrics,
            config: Arc::new(config),
            pipeline: Arc::new(ArcSwap::from_pointee(pipeline)),
            store: store.clone(),
            connections,
            deliverer: deliverer.clone(),
            last_rejected: Default::default(),
        });
        let resumed = deliverer.resume()?;
        if resumed > 0 {
            tracing::info!(
                connections = resumed,
                "resuming delivery of cards queued before the last stop"
            );
        }
        let broken = CancellationToken::new();
        if !store.blocking() {
            spawn_watchdog(Arc::downgrade(&store), broken.clone());
        }
        let (stop, task) = serve(app.clone(), listener, deliverer, store);
        // What loading used and dropped (the rule checks' GitHub schemas, parse trees) goes
        // back to the system now rather than when traffic comes.
        crate::alloc::release_free_pages();
        tracing::info!(%addr, "cardwire is listening");
        Ok(Self {
            _workers: app.deliverer.stopping().drop_guard(),
            app,
            addr,
            stop,
            task,
            broken,
        })
    }

    /// Resolves when the store has stopped writing until it is opened again (sled, after an
    /// I/O error in its log such as a full disk): the caller stops this server and starts
    /// another on the same config (`cardwire serve` does), which recovers what reached the
    /// disk. Never resolves on PostgreSQL, whose sessions come back by themselves.
    pub async fn broken(&self) {
        self.broken.cancelled().await
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The running app (for tests and embedding).
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Stops gracefully and waits until the data directory is released.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.app.live.close();
        drop(self.app);
        self.stop.cancel();
        self.task.await.context("the server task panicked")?
    }

    /// Serves until `signal` fires, then stops gracefully.
    pub async fn run_until(
        self,
        signal: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        signal.await;
        tracing::info!("shutting down");
        self.stop().await
    }
}

/// The SSRF guard: the listed hosts, and the gateway's own host while the emulator (whose
/// inboxes it serves) is on.
/// Serves until `stop`, with the background tasks (reloads, pruning, the noise ticker); then
/// lets delivery finish what is in flight and flushes the store.
fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    deliverer: Arc<Deliverer>,
    store: crate::store::SharedStore,
) -> (CancellationToken, JoinHandle<anyhow::Result<()>>) {
    let telemetry = app.telemetry.clone();
    let stop = CancellationToken::new();
    let reloader = crate::reload::spawn(app.reloader(), stop.clone());
    let pruner = spawn_pruner(app.clone(), stop.clone());
    let ticker = spawn_noise_ticker(app.clone(), stop.clone());
    let wakeups = spawn_wakeups(app.clone(), stop.clone());
    let limits = app.config.limits.clone();
    let router = router(app).layer(axum::middleware::from_fn_with_state(
        limits.clone(),
        crate::ingest::floor::body_floor,
    ));
    let signal = stop.clone();
    let task = tokio::spawn(async move {
        let served = serve_http(listener, router, limits, signal).await;
        let _ = reloader.await;
        let _ = pruner.await;
        let _ = ticker.await;
        if let Some(w) = wakeups {
            let _ = w.await;
        }
        deliverer.shutdown().await;
        drop(deliverer);
        // The last spans out (on a blocking thread: the exporter's task runs on this runtime).
        if telemetry.is_on() {
            let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
        }
        store.flush()?;
        drop(store);
        served.context("the HTTP server failed")
    });
    (stop, task)
}

/// Serves HTTP/1 on `listener` until `signal`, holding clients to `limits`: at most
/// `max_connections` at once (the others wait in the listen queue, untouched, until one
/// closes), each given `header_timeout` for a request's headers (from when it connected or
/// was last answered: a half-sent request or an idle kept-alive connection is closed then).
/// At `signal`: no new connection; requests in flight are answered (within 10 s).
async fn serve_http(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: crate::config::LimitsConfig,
    signal: CancellationToken,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = signal.cancelled() => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment, as axum does.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = signal.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let service =
            hyper_util::service::TowerToHyperService::new(tower::ServiceExt::map_request(
                router.clone(),
                |r: axum::http::Request<hyper::body::Incoming>| r.map(axum::body::Body::new),
            ));
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // A client that goes away or times out is its own business, not an error.
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(std::time::Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open 10 s after the stop began; closing them");
    }
    Ok(())
}

/// Opens the store the config names: sled under `data_dir`, or PostgreSQL.
fn open_store(config: &Config) -> anyhow::Result<crate::store::SharedStore> {
    if let Some(pg) = &config.store.postgres {
        let key = config
            .connect
            .secrets_key
            .as_deref()
            .context("store.postgres needs connect.secrets_key, shared by every instance")?;
        let settings = crate::store::pg::PgSettings {
            url: pg.connect_url(),
            pool: pg.pool,
            lease: pg.lease,
        };
        let store = crate::store::pg::PgStore::open(&settings, key, Default::default())
            .context("cannot open the PostgreSQL store (store.postgres.url)")?;
        tracing::info!(pool = pg.pool, instance = %store.instance(), "state in PostgreSQL");
        return Ok(store);
    }
    let data_dir = config.resolve(&config.data_dir);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let store = Store::open_with(
        &data_dir,
        config.connect.secrets_key.as_deref(),
        config.durability == crate::config::Durability::Sync,
    )?;
    store.set_min_free(config.limits.min_free_disk);
    Ok(store)
}

/// Says at start what an operator should know: what is open, what is loaded.
fn log_start(config: &Config, pipeline: &Pipeline, connections: usize, queued: usize) {
    if config.admin_token.is_none() {
        tracing::warn!("no admin_token is configured: the admin API under /api is off");
    }
    for (name, source) in &config.sources {
        if source.secret.is_none() && source.token.is_none() {
            tracing::warn!(source = %name, "source has no secret or token: anyone who can reach the gateway can post to it");
        }
    }
    tracing::info!(
        rules = pipeline.rules.rules().len(),
        rules_from = %pipeline.rules_origin,
        templates_from = %pipeline.templates_origin,
        connections,
        queued,
        "pipeline loaded"
    );
    if let Some(inactive) = pipeline.rules.inactive_summary() {
        tracing::info!("{inactive}");
    }
    for line in pipeline
        .rules
        .unused_sources(config.sources.keys().map(String::as_str))
    {
        tracing::warn!("{line}");
    }
    if config.emulator() {
        tracing::info!(picker = %format!("{}/connect", config.public_url()), "the Office 365 emulator is on");
    }
}

/// Which webhook URLs connections may have: the configured targets, and the emulator's
/// inboxes while it is on.
fn policy(config: &Config) -> TargetPolicy {
    let policy = TargetPolicy::new(&config.targets);
    if config.emulator() {
        let public = config.public_url();
        let [slack, discord] = crate::connect::chat_emulator::hook_prefixes(&public);
        policy
            .allow_prefix(crate::connect::emulator::inbox_prefix(&public))
            .allow_prefix(slack)
            .allow_prefix(discord)
            .allow_prefix(crate::connect::mattermost_emulator::hook_prefix(&public))
    } else {
        policy
    }
}

fn guard(config: &Config) -> crate::deliver::guard::AddressGuard {
    let mut g = crate::deliver::guard::AddressGuard::new(&config.targets.allowed_hosts);
    if config.emulator() {
        if let Some(host) = url::Url::parse(&config.public_url())
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
        {
            g = g.allow(host.trim_start_matches('[').trim_end_matches(']'));
        }
    }
    g
}

/// Sends the summaries and digests that are due, every second (at start too: a digest that
/// fell due while cardwire was down goes out now).
fn spawn_noise_ticker(app: Arc<App>, stop: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            // Off the runtime's threads: on PostgreSQL the store's calls wait on the network.
            let app2 = app.clone();
            let ticked = tokio::task::spawn_blocking(move || {
                let pipeline = app2.pipeline.load();
                let connections = app2.connections.all();
                app2.noise.tick(&pipeline.renderer, &connections)
            })
            .await
            .unwrap_or_else(|_| Ok(Vec::new()));
            match ticked {
                Ok(wake) if !wake.is_empty() => {
                    if let Err(e) = app.store.commit().await {
                        tracing::error!(error = %crate::error::ErrorChain(&e), "cannot commit summaries and digests");
                    }
                    for con in &wake {
                        app.deliverer.wake(con);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %crate::error::ErrorChain(&e), "cannot send summaries and digests")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                _ = stop.cancelled() => return,
            }
        }
    })
}

/// How often an instance sharing its store looks for cards it may deliver without having
/// been told (a notification lost, an instance dead whose leases expired).
const BACKSTOP: std::time::Duration = std::time::Duration::from_secs(2);

/// Every how many backstop rounds the connections are read again without a notification.
const RELOAD_EVERY: u32 = 5;

/// What a round of wake-ups comes to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct WakePlan {
    /// Read the connections again.
    pub reload: bool,
    /// Look for every connection with cards this instance may deliver.
    pub resume: bool,
    /// Wake these connections' workers.
    pub cards: Vec<crate::ids::ConnectionId>,
}

/// Folds the wake-ups that arrived together into what to do once: a burst of notifications
/// reads the connections once and wakes each worker once.
pub fn wake_plan(wakes: &[crate::store::Wake]) -> WakePlan {
    use crate::store::Wake;
    let mut plan = WakePlan::default();
    for w in wakes {
        match w {
            Wake::Cards(con) => plan.cards.push(con.clone()),
            Wake::Connections => {
                plan.reload = true;
                plan.resume = true;
            }
            Wake::All => {
                plan.reload = true;
                plan.resume = true;
            }
        }
    }
    if plan.resume {
        plan.cards.clear();
    }
    plan.cards.sort();
    plan.cards.dedup();
    plan
}

/// With a store that other instances share: wakes workers when told (`LISTEN` / `NOTIFY`),
/// reads the connections again when they change, and every [`BACKSTOP`] looks for cards
/// nobody was told about, so a lost notification only delays. `None` on sled.
fn spawn_wakeups(app: Arc<App>, stop: CancellationToken) -> Option<JoinHandle<()>> {
    use crate::store::Wake;
    let mut rx = app.store.wakeups()?;
    Some(tokio::spawn(async move {
        let mut backstop = tokio::time::interval(BACKSTOP);
        backstop.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut rounds = 0u32;
        loop {
            let mut wakes = tokio::select! {
                w = rx.recv() => match w {
                    Some(w) => vec![w],
                    None => return,
                },
                _ = backstop.tick() => {
                    rounds += 1;
                    if rounds.is_multiple_of(RELOAD_EVERY) { vec![Wake::All] } else { vec![] }
                }
                _ = stop.cancelled() => return,
            };
            let polled = wakes.is_empty();
            while let Ok(w) = rx.try_recv() {
                wakes.push(w);
            }
            let mut plan = wake_plan(&wakes);
            plan.resume |= polled;
            let app2 = app.clone();
            let done = tokio::task::spawn_blocking(move || {
                if plan.reload {
                    if let Err(e) = app2.connections.reload() {
                        tracing::warn!(error = %crate::error::ErrorChain(&e), "cannot read the connections again");
                    }
                }
                if plan.resume {
                    if let Err(e) = app2.deliverer.resume() {
                        tracing::warn!(error = %crate::error::ErrorChain(&e), "cannot look for cards to deliver");
                    }
                }
                for con in &plan.cards {
                    app2.deliverer.wake(con);
                }
            })
            .await;
            if done.is_err() {
                return;
            }
        }
    }))
}

pub use crate::store::seen::SEEN_FOR;

/// How often delivered records are pruned: a tenth of `keep_delivered` (so a record outlives
/// its keep by at most a tenth), between 10 s and an hour (hourly for the default 7 days).
pub fn prune_every(keep: std::time::Duration) -> std::time::Duration {
    (keep / 10).clamp(
        std::time::Duration::from_secs(10),
        std::time::Duration::from_secs(3600),
    )
}

/// Prunes delivered records older than `delivery.keep_delivered`, upstream delivery ids
/// older than `delivery.keep_delivery_ids` ([`SEEN_FOR`] by default) and message references
/// unused for `delivery.keep_message_refs`, at start and then every [`prune_every`].
fn spawn_pruner(app: Arc<App>, stop: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let store = app.store.clone();
            let keep = app.config.delivery.keep_delivered;
            let keep_ids = app.config.delivery.keep_delivery_ids;
            let keep_refs = app.config.delivery.keep_message_refs;
            let pruned = tokio::task::spawn_blocking(move || {
                Ok::<_, crate::store::StoreError>((
                    store.prune_delivered(keep)?,
                    store.prune_seen(keep_ids)?,
                    store.prune_message_refs(keep_refs)?,
                ))
            })
            .await;
            match pruned {
                Ok(Ok((n, ids, refs))) if n + ids + refs > 0 => tracing::info!(
                    pruned = n,
                    delivery_ids = ids,
                    message_refs = refs,
                    "delivered records past delivery.keep_delivered, delivery ids past delivery.keep_delivery_ids and message references past delivery.keep_message_refs removed"
                ),
                Ok(Err(e)) => {
                    tracing::warn!(error = %crate::error::ErrorChain(&e), "cannot prune delivered records")
                }
                _ => {}
            }
            tokio::select! {
                _ = tokio::time::sleep(prune_every(app.config.delivery.keep_delivered)) => {}
                _ = stop.cancelled() => return,
            }
        }
    })
}

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_pruned_every_tenth_of_their_keep_between_10_s_and_an_hour() {
        use std::time::Duration;
        assert_eq!(
            prune_every(Duration::from_secs(7 * 86_400)),
            Duration::from_secs(3600)
        );
        assert_eq!(
            prune_every(Duration::from_secs(600)),
            Duration::from_secs(60)
        );
        assert_eq!(prune_every(Duration::from_secs(5)), Duration::from_secs(10));
    }
    use crate::ids::ConnectionId;
    use crate::store::Wake;

    #[test]
    fn a_burst_of_wake_ups_is_one_round_of_work() {
        let (a, b) = (ConnectionId::new(), ConnectionId::new());
        let plan = wake_plan(&[
            Wake::Cards(b.clone()),
            Wake::Cards(a.clone()),
            Wake::Cards(b.clone()),
        ]);
        let mut both = vec![a.clone(), b.clone()];
        both.sort();
        assert_eq!(
            plan,
            WakePlan {
                reload: false,
                resume: false,
                cards: both,
            },
            "each worker woken once"
        );
        // A change of connections reads them once and looks at every connection, which
        // covers the workers named too.
        let plan = wake_plan(&[Wake::Cards(a), Wake::Connections, Wake::Connections]);
        assert_eq!(
            plan,
            WakePlan {
                reload: true,
                resume: true,
                cards: Vec::new(),
            }
        );
        assert_eq!(
            wake_plan(&[Wake::All]),
            WakePlan {
                reload: true,
                resume: true,
                cards: Vec::new(),
            }
        );
        assert_eq!(wake_plan(&[]), WakePlan::default());
    }
}
