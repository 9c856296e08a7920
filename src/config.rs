//! The runtime settings: one YAML file, `${VAR}` references, then CLI flags on top.
//!
//! In: the path of the config file (or none). Out: a checked [`Config`], or every problem found
//! as `file:line:col: message`. Reading has two phases: the text as written (environment
//! references expanded, unknown keys refused with a suggestion) and then a check of meaning
//! (source kinds and their secrets, URLs, host patterns), all reported in one pass.
//!
//! What the gateway *does* lives in rules/ and templates/; this file only says where things are
//! and how the gateway talks to the world. `examples/cardwire.yaml` shows every key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::event::SourceKind;
use crate::yaml::{Document, Pos, Problem, Problems};

/// Everything the gateway needs to know at start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The address the HTTP server binds to. Loopback by default.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where sled keeps the outbox, connections and other state.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Where state lives: sled under `data_dir` (the default), or PostgreSQL.
    #[serde(default)]
    pub store: StoreConfig,
    /// The rule files; unset means `./rules`, or the rules built into the binary when that
    /// folder does not exist.
    #[serde(default)]
    pub rules_dir: Option<PathBuf>,
    /// The card templates; unset means `./templates`, or the built-in ones.
    #[serde(default)]
    pub templates_dir: Option<PathBuf>,
    /// A people map (YAML) from upstream identities to Teams users, for mentions.
    #[serde(default)]
    pub people: Option<PathBuf>,
    /// Reload rules and templates when their files change (SIGHUP always reloads). Turn off
    /// where file events do not arrive, e.g. on some network file systems.
    #[serde(default = "yes")]
    pub watch_files: bool,
    /// The gateway's external base URL (what upstreams and browsers reach it at).
    #[serde(default)]
    pub public_url: Option<String>,
    /// The bearer token of the admin API under /api; without one the admin API is off.
    #[serde(default)]
    pub admin_token: Option<String>,
    /// The largest request body accepted on /hooks (bytes, or `25MiB`, `512KiB`, ...).
    #[serde(default = "default_max_body", deserialize_with = "de_size")]
    pub max_body: u64,
    /// The upstreams that may post to `/hooks/{name}`.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
    /// Which webhook URLs cards may be delivered to.
    #[serde(default)]
    pub targets: TargetsConfig,
    /// The Connect to Office 365 flow.
    #[serde(default)]
    pub connect: ConnectConfig,
    /// How cards are delivered.
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// When an accepted event is on disk: `batched` (default: the 202 waits for a group commit
    /// shared with concurrent requests) or `sync` (a flush of its own per event).
    #[serde(default)]
    pub durability: Durability,
    /// What a connection gets when a matched rule's template fails on an event: `fallback`
    /// (default: a plain card built without the template, naming the event and what failed)
    /// or `dead_letter` (no card; the failure is kept as a dead letter).
    #[serde(default)]
    pub render_errors: RenderErrors,
    /// The playground.
    #[serde(default)]
    pub playground: PlaygroundConfig,
    /// What a client may hold of the server: time, and connections.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Traces over OpenTelemetry's OTLP (off by default).
    #[serde(default)]
    pub telemetry: Option<TelemetryConfig>,

    /// The folder relative paths in this file are resolved against (the file's own folder;
    /// the working directory when there is no file).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// `telemetry:` where traces go.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// An OTLP collector (`OTEL_EXPORTER_OTLP_ENDPOINT` and its friends when absent).
    #[serde(default)]
    pub otlp: Option<OtlpConfig>,
}

/// `telemetry.otlp`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// The collector's URL: `http://collector:4318` (HTTP: `/v1/traces` is added to a bare
    /// one) or `http://collector:4317` (gRPC).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `http/protobuf` (default) or `grpc`.
    #[serde(default)]
    pub protocol: Option<OtlpProtocol>,
    /// Headers sent with every export (a collector's API key; write `${VAR}`).
    #[serde(default)]
    pub headers: std::collections::HashMap<String, String>,
    /// The share of traces kept, 0 to 1 (default 1); a sender's sampled trace is followed.
    #[serde(default)]
    pub sample_ratio: Option<f64>,
    /// `service.name` (default `cardwire`).
    #[serde(default)]
    pub service_name: Option<String>,
}

/// How spans go to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum OtlpProtocol {
    /// Protobuf over HTTP (port 4318).
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// gRPC (port 4317).
    #[serde(rename = "grpc")]
    Grpc,
}

/// `limits:` what a client may hold of the server, so that slow or idle clients (or many
/// of them) cannot tie it up.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// A request's headers must have arrived this long after the connection opened or the
    /// previous answer went out; so it is also how long a kept-alive connection may sit idle
    /// (default 10s).
    #[serde(default = "default_header_timeout", deserialize_with = "de_duration")]
    pub header_timeout: Duration,
    /// How long a request body may take before `body_min_rate` applies (default 10s).
    #[serde(default = "default_body_timeout", deserialize_with = "de_duration")]
    pub body_timeout: Duration,
    /// The slowest a body may arrive, in bytes a second, past `body_timeout` (default 1KiB): a
    /// body of N bytes has `body_timeout + N / body_min_rate` in all.
    #[serde(default = "default_body_min_rate", deserialize_with = "de_size")]
    pub body_min_rate: u64,
    /// Connections served at once; more wait to be accepted (default 1024).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Free space kept on the disk holding `data_dir` (default 64MiB): below it, new events
    /// are refused with `503 storage_full` while delivery goes on in the room kept. `0` turns
    /// the check off. sled only: PostgreSQL's server says when its disk is full.
    #[serde(default = "default_min_free_disk", deserialize_with = "de_size")]
    pub min_free_disk: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            header_timeout: default_header_timeout(),
            body_timeout: default_body_timeout(),
            body_min_rate: default_body_min_rate(),
            max_connections: default_max_connections(),
            min_free_disk: default_min_free_disk(),
        }
    }
}

fn default_header_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_body_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_body_min_rate() -> u64 {
    1024
}

fn default_min_free_disk() -> u64 {
    64 << 20
}

fn default_max_connections() -> usize {
    1024
}

/// `store:` where state lives.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// PostgreSQL instead of sled: `{url: "${DATABASE_URL}", pool: 16}`.
    #[serde(default)]
    pub postgres: Option<PostgresConfig>,
}

/// `store.postgres`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/database` (write `${DATABASE_URL}` to keep the
    /// password out of the file).
    pub url: String,
    /// Connections to the server, each on a thread of its own (default 16).
    #[serde(default = "default_pool")]
    pub pool: usize,
    /// A delivery lease's term (default 15s): how long the cards of an instance that died
    /// wait before another instance takes them over. Renewed every third of it.
    #[serde(default = "default_lease", deserialize_with = "de_duration")]
    pub lease: Duration,
    /// TLS to the server, besides (or instead of) the URL's `sslmode` and `sslrootcert`.
    #[serde(default)]
    pub tls: Option<PgTlsConfig>,
}

/// `store.postgres.tls`: libpq's `sslmode` and `sslrootcert` as keys.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgTlsConfig {
    /// `disable`, `prefer` (the default, as libpq's), `require`, `verify-ca` or `verify-full`.
    #[serde(default)]
    pub mode: Option<String>,
    /// The CA's certificates (PEM) the server's chain is checked against (a relative path is
    /// the config file's folder's); the system's roots when absent.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl PostgresConfig {
    /// The URL connections are made with: `url` with `tls` in it (checked by `check`, so a
    /// contradiction here falls back to the URL as written, which the store then refuses).
    pub fn connect_url(&self) -> String {
        let tls = self.tls.clone().unwrap_or_default();
        crate::store::pg::tls::with_settings(&self.url, tls.mode.as_deref(), tls.ca_file.as_deref())
            .unwrap_or_else(|_| self.url.clone())
    }
}

fn default_lease() -> Duration {
    crate::store::pg::LEASE
}

fn default_pool() -> usize {
    16
}

/// The playground (`/playground`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaygroundConfig {
    /// Whether "Save template" may write edited templates back to the templates folder (the
    /// hot reload then checks and loads them). Off by default.
    #[serde(default)]
    pub write: bool,
}

/// One upstream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// What sends to it: github, gitlab, alertmanager or generic.
    pub kind: SourceKind,
    /// The shared secret: GitHub's HMAC key (`X-Hub-Signature-256`), GitLab's `X-Gitlab-Token`,
    /// or for a generic source an HMAC key checked like GitHub's.
    #[serde(default)]
    pub secret: Option<String>,
    /// A bearer token the sender must present as `Authorization: Bearer <token>`.
    #[serde(default)]
    pub token: Option<String>,
    /// Generic sources: the header that names the event type (default `X-Event-Type`).
    #[serde(default)]
    pub event_header: Option<String>,
    /// Generic sources: the payload field that names the event type, when no header does.
    #[serde(default)]
    pub event_field: Option<String>,
    /// GitHub: deliveries are verified with the secret of the GitHub App made for this source
    /// on /sources (a source without a `secret` uses its app's as soon as one is made; with
    /// `app: true` nothing is accepted before).
    #[serde(default)]
    pub app: bool,
    /// GitHub: where GitHub is for the app flow (`https://github.com`, or a GitHub Enterprise
    /// Server's URL); the emulator while it is on.
    #[serde(default)]
    pub github_url: Option<String>,
    /// GitLab: where GitLab is for adding hooks on /sources (`https://gitlab.com`, or a
    /// self-managed GitLab's URL); the emulator while it is on.
    #[serde(default)]
    pub gitlab_url: Option<String>,
}

/// Which webhook URLs are acceptable targets.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetsConfig {
    /// Accept plain http URLs (for tests and local receivers).
    #[serde(default)]
    pub allow_http: bool,
    /// Hosts accepted besides the built-in chat webhook hosts; `*.example.com` matches
    /// subdomains. Listing an IP address or `localhost` also allows that private address.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

/// The Connect to Office 365 flow, and what the connector registration asks for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectConfig {
    /// The connector's app id (a GUID), sent with the Connect button.
    #[serde(default)]
    pub app_id: Option<String>,
    /// Where the Connect button goes; default the Office 365 page, or the emulator when it is on.
    #[serde(default)]
    pub url: Option<String>,
    /// Serve the local Office 365 emulator (on by default without a config file).
    #[serde(default)]
    pub emulator: Option<bool>,
    /// The groups the emulator's picker offers (an inbox is always offered too).
    #[serde(default = "default_emulator_groups")]
    pub emulator_groups: Vec<EmulatorGroup>,
    /// The connector's name, as the picker shows it.
    #[serde(default = "default_connector_name")]
    pub name: String,
    /// The connector's logo: a jpg, jpeg, png or gif file under 60 KB.
    #[serde(default)]
    pub logo: Option<PathBuf>,
    /// One line about the connector.
    #[serde(default = "default_short_description")]
    pub short_description: String,
    /// What the connector does, in a paragraph.
    #[serde(default = "default_description")]
    pub description: String,
    /// The company's web site (https).
    #[serde(default)]
    pub company_url: Option<String>,
    /// https URLs that receive card actions (domains of actionable messages).
    #[serde(default)]
    pub action_targets: Vec<String>,
    /// The key that encrypts webhook URLs at rest (base64 of 32 bytes); without it a key is
    /// generated into `<data_dir>/secrets.key` (mode 0600) on first start.
    #[serde(default)]
    pub secrets_key: Option<String>,
    /// Add to Slack: the Slack app's OAuth client (scope `incoming-webhook`).
    #[serde(default)]
    pub slack: Option<OAuthClient>,
    /// Add to Discord: the Discord application's OAuth2 client (scope `webhook.incoming`).
    #[serde(default)]
    pub discord: Option<OAuthClient>,
}

/// An OAuth client registered with a chat platform, for an "Add to …" flow.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OAuthClient {
    /// The client id the platform gave the app.
    pub client_id: String,
    /// The client secret (write `${ENV_VAR}` to keep it out of the file).
    pub client_secret: String,
    /// Slack only: the workspace (team id, `T…`) an install is restricted to.
    #[serde(default)]
    pub team: Option<String>,
    /// Where the button goes: the platform's authorize page, or the emulator's while it is on.
    #[serde(default)]
    pub authorize_url: Option<String>,
    /// Where the code is exchanged: the platform's token endpoint, or the emulator's.
    #[serde(default)]
    pub token_url: Option<String>,
    /// Slack only: ask for `chat:write` beside `incoming-webhook`, so that the install's bot
    /// token posts cards with a key and edits or threads them (on by default).
    #[serde(default = "yes")]
    pub updates: bool,
}

/// A group the emulator's picker offers.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EmulatorGroup {
    /// Its name.
    pub name: String,
    /// `teams` (a Teams channel) or `groups` (an Office 365 group).
    #[serde(default = "default_app_type")]
    pub app_type: String,
}

fn default_emulator_groups() -> Vec<EmulatorGroup> {
    ["Engineering", "Operations"]
        .into_iter()
        .zip(["teams", "groups"])
        .map(|(n, t)| EmulatorGroup {
            name: n.into(),
            app_type: t.into(),
        })
        .collect()
}
fn default_app_type() -> String {
    "teams".into()
}
fn default_connector_name() -> String {
    "cardwire".into()
}
fn default_short_description() -> String {
    "Cards from GitHub, GitLab, CI and alerts, without the noise.".into()
}
fn default_description() -> String {
    "cardwire turns your webhooks into cards for this group: the events that matter, digests at the time you choose, and nothing twice.".into()
}

impl Default for ConnectConfig {
    fn default() -> Self {
        Self {
            app_id: None,
            url: None,
            emulator: None,
            emulator_groups: default_emulator_groups(),
            name: default_connector_name(),
            logo: None,
            short_description: default_short_description(),
            description: default_description(),
            company_url: None,
            action_targets: Vec::new(),
            secrets_key: None,
            slack: None,
            discord: None,
        }
    }
}

impl ConnectConfig {
    /// The app id in use: the configured one, or a development id while the emulator is on.
    pub fn app_id_or_dev(&self, emulator: bool) -> Option<String> {
        self.app_id
            .clone()
            .or_else(|| emulator.then(|| "00000000-0000-0000-0000-00000000c0de".to_string()))
    }
}

/// When an accepted event counts as on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Concurrent requests share one flush (a flush starts as soon as one is waiting; what
    /// arrives during it waits for the next). The 202 still waits for its flush.
    #[default]
    Batched,
    /// Every event flushes on its own.
    Sync,
}

/// What happens to a card whose template fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RenderErrors {
    /// The connection receives a minimal card of its kind, built without the template.
    #[default]
    Fallback,
    /// Nothing is sent; the failure is kept as a dead letter.
    DeadLetter,
}

/// How cards are delivered.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// The longest one delivery attempt may take, connect included.
    #[serde(default = "default_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// The waits between attempts (each ±20 %); after the last one a card becomes a dead letter.
    #[serde(default = "default_schedule", deserialize_with = "de_durations")]
    pub retry_schedule: Vec<Duration>,
    /// The most cards queued in all; above it /hooks answers 503 with Retry-After.
    #[serde(default = "default_max_queued")]
    pub max_queued: usize,
    /// The most attempts in flight at once, across connections.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Pace requests per webhook URL within Teams' limits (4 per second, 60 per 30 seconds), so
    /// throttling is rare; `false` turns pacing off, and with it the folding at Teams' hourly and
    /// daily caps (tests, benchmarks).
    #[serde(default)]
    pub pacing: PacingConfig,
    /// How long delivered records are kept (for the API) before they are pruned.
    #[serde(default = "default_keep_delivered", deserialize_with = "de_duration")]
    pub keep_delivered: Duration,
    /// How long upstream delivery ids (`X-GitHub-Delivery`, `Idempotency-Key`) are
    /// remembered, so that a redelivery within it is accepted once (GitHub offers to redeliver
    /// for 3 days).
    #[serde(
        default = "default_keep_delivery_ids",
        deserialize_with = "de_duration"
    )]
    pub keep_delivery_ids: Duration,
    /// How long a keyed card's message reference is kept after its last use, so that later
    /// cards with the same key edit or reply to its message (30 days by default).
    #[serde(
        default = "default_keep_message_refs",
        deserialize_with = "de_duration"
    )]
    pub keep_message_refs: Duration,
}

/// Pacing: `false`, `true` (the Teams windows for both kinds), or per kind.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum PacingConfig {
    /// On (the defaults) or off.
    Switch(bool),
    /// Per card kind: a list of windows such as `["4/1s", "60/30s"]`; an empty list is no pacing.
    PerKind {
        /// Windows for MessageCard (legacy connector) URLs.
        #[serde(default = "default_windows")]
        teams: Vec<String>,
        /// Windows for Workflows URLs.
        #[serde(default = "default_windows")]
        workflow: Vec<String>,
        /// Windows for Slack URLs (Slack: one message a second, short bursts allowed).
        #[serde(default = "default_slack_windows")]
        slack: Vec<String>,
        /// Windows for Discord URLs (5 requests per 2 seconds a webhook, 30 a minute a channel).
        #[serde(default = "default_discord_windows")]
        discord: Vec<String>,
        /// Windows for Google Chat URLs (one a second per space, 60 a minute).
        #[serde(default = "default_google_chat_windows")]
        google_chat: Vec<String>,
        /// Windows for Mattermost URLs: none by default (a Mattermost server's own rate limit is
        /// off by default; `["10/1s"]` matches its default when an admin turns it on).
        #[serde(default = "default_mattermost_windows")]
        mattermost: Vec<String>,
    },
}

impl Default for PacingConfig {
    fn default() -> Self {
        Self::Switch(true)
    }
}

impl PacingConfig {
    /// Each kind's list of windows, when they are given per kind.
    fn per_kind(&self) -> Option<[(crate::render::CardKind, &Vec<String>); 6]> {
        use crate::render::CardKind;
        match self {
            Self::Switch(_) => None,
            Self::PerKind {
                teams,
                workflow,
                slack,
                discord,
                google_chat,
                mattermost,
            } => Some([
                (CardKind::Teams, teams),
                (CardKind::Workflow, workflow),
                (CardKind::Slack, slack),
                (CardKind::Discord, discord),
                (CardKind::GoogleChat, google_chat),
                (CardKind::Mattermost, mattermost),
            ]),
        }
    }

    /// The windows (count per period) for a kind.
    pub fn windows(&self, kind: crate::render::CardKind) -> Vec<(u32, Duration)> {
        let list = match (self, self.per_kind()) {
            (Self::Switch(false), _) => return Vec::new(),
            (_, Some(lists)) => lists
                .into_iter()
                .find(|(k, _)| *k == kind)
                .map(|(_, l)| l.clone())
                .unwrap_or_default(),
            _ => default_windows_of(kind),
        };
        list.iter()
            .filter_map(|w| crate::units::parse_rate(w).ok())
            .collect()
    }
}

fn default_windows() -> Vec<String> {
    vec!["4/1s".into(), "60/30s".into()]
}
fn default_slack_windows() -> Vec<String> {
    vec!["3/3s".into()]
}
fn default_discord_windows() -> Vec<String> {
    vec!["5/2s".into(), "30/60s".into()]
}
fn default_google_chat_windows() -> Vec<String> {
    vec!["1/1s".into(), "60/60s".into()]
}
fn default_mattermost_windows() -> Vec<String> {
    Vec::new()
}

/// The pacing windows a kind gets by default: each platform's documented limits.
fn default_windows_of(kind: crate::render::CardKind) -> Vec<String> {
    use crate::render::CardKind;
    match kind {
        CardKind::Teams | CardKind::Workflow => default_windows(),
        CardKind::Slack => default_slack_windows(),
        CardKind::Discord => default_discord_windows(),
        CardKind::GoogleChat => default_google_chat_windows(),
        CardKind::Mattermost => default_mattermost_windows(),
    }
}
fn default_max_queued() -> usize {
    1_000_000
}
fn default_concurrency() -> usize {
    64
}
fn default_keep_delivered() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_keep_delivery_ids() -> Duration {
    crate::store::seen::SEEN_FOR
}
fn default_keep_message_refs() -> Duration {
    crate::store::KEEP_REFS
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            timeout: default_timeout(),
            retry_schedule: default_schedule(),
            max_queued: default_max_queued(),
            concurrency: default_concurrency(),
            pacing: PacingConfig::default(),
            keep_delivered: default_keep_delivered(),
            keep_delivery_ids: default_keep_delivery_ids(),
            keep_message_refs: default_keep_message_refs(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}
fn default_max_body() -> u64 {
    25 * 1024 * 1024
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_schedule() -> Vec<Duration> {
    // 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 3 h, 6 h, 6 h: about 17 hours in all.
    [5, 30, 120, 600, 1800, 3600, 3 * 3600, 6 * 3600, 6 * 3600]
        .into_iter()
        .map(Duration::from_secs)
        .collect()
}

impl Default for Config {
    /// The settings of `cardwire serve` with no config file: every kind of source under its
    /// own name, without secrets (the server binds loopback only).
    fn default() -> Self {
        let sources = [
            SourceKind::Github,
            SourceKind::Gitlab,
            SourceKind::Alertmanager,
            SourceKind::Generic,
        ]
        .into_iter()
        .map(|kind| {
            let source = SourceConfig {
                kind,
                secret: None,
                token: None,
                event_header: None,
                event_field: None,
                app: false,
                github_url: None,
                gitlab_url: None,
            };
            (kind.as_str().to_string(), source)
        })
        .collect();
        Self {
            listen: default_listen(),
            data_dir: default_data_dir(),
            store: StoreConfig::default(),
            rules_dir: None,
            templates_dir: None,
            people: None,
            watch_files: true,
            public_url: None,
            admin_token: None,
            max_body: default_max_body(),
            sources,
            playground: PlaygroundConfig::default(),
            targets: TargetsConfig::default(),
            connect: ConnectConfig {
                emulator: Some(true),
                ..ConnectConfig::default()
            },
            delivery: DeliveryConfig::default(),
            durability: Durability::default(),
            render_errors: RenderErrors::default(),
            limits: LimitsConfig::default(),
            telemetry: None,
            base_dir: PathBuf::from("."),
        }
    }
}

impl Config {
    /// Reads and checks the config file, or gives the defaults when there is none.
    pub fn load(path: Option<&Path>) -> Result<Self, Problems> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            Problems(vec![Problem::new(
                path,
                Pos { line: 1, col: 1 },
                format!("cannot read the config file: {e}"),
            )])
        })?;
        Self::from_text(path, &text)
    }

    /// Parses and checks config text; `file` names it in problems.
    pub fn from_text(file: &Path, text: &str) -> Result<Self, Problems> {
        let text = expand_env(file, text, |name| std::env::var(name).ok())?;
        let doc = Document::parse(file, &text).map_err(|p| Problems(vec![p]))?;
        let value = if doc.value.is_null() {
            serde_json::json!({})
        } else {
            doc.value.clone()
        };
        let mut config: Config = doc
            .deserialize_at("", &value)
            .map_err(|p| Problems(vec![p]))?;
        // Relative paths in the file are relative to the file's folder.
        config.base_dir = file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        // As every path in the file: the CA file relative to the file's folder.
        let base = config.base_dir.clone();
        if let Some(ca) = config
            .store
            .postgres
            .as_mut()
            .and_then(|pg| pg.tls.as_mut())
            .and_then(|tls| tls.ca_file.as_mut())
        {
            if ca.is_relative() {
                *ca = base.join(&*ca);
            }
        }
        let problems = config.check(&doc);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(Problems(problems))
        }
    }

    /// The checks of meaning, each problem at its place in the file.
    /// Every section's checks, each in a function of its own.
    fn check(&self, doc: &Document) -> Vec<Problem> {
        let mut problems = Vec::new();
        for section in [
            Self::check_sources,
            Self::check_public_url,
            Self::check_store,
            Self::check_limits,
            Self::check_admin_token,
            Self::check_targets,
            Self::check_connect,
            Self::check_connect_clients,
            Self::check_connect_emulator,
            Self::check_secrets_key,
            Self::check_delivery,
            Self::check_telemetry,
        ] {
            section(self, doc, &mut problems);
        }
        problems
    }

    /// `telemetry.otlp`: an http(s) endpoint, a ratio from 0 to 1, headers that are headers.
    fn check_telemetry(&self, doc: &Document, problems: &mut Vec<Problem>) {
        let Some(otlp) = self.telemetry.as_ref().and_then(|t| t.otlp.as_ref()) else {
            return;
        };
        if let Some(e) = &otlp.endpoint {
            if !matches!(url::Url::parse(e), Ok(u) if matches!(u.scheme(), "http" | "https")) {
                problems.push(doc.problem(
                    "telemetry.otlp.endpoint",
                    format!("{e:?} is not an http(s) URL (http://otel-collector:4318, or :4317 for grpc)"),
                ));
            }
        }
        if let Some(r) = otlp.sample_ratio {
            if !(0.0..=1.0).contains(&r) {
                problems.push(doc.problem(
                    "telemetry.otlp.sample_ratio",
                    format!("sample_ratio is the share of traces kept, 0 to 1 (not {r})"),
                ));
            }
        }
        for (name, value) in &otlp.headers {
            if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err()
                || axum::http::HeaderValue::from_str(value).is_err()
            {
                problems.push(doc.problem(
                    &format!("telemetry.otlp.headers.{name}"),
                    format!("{name:?} with its value is not an HTTP header"),
                ));
            }
        }
    }

    /// `sources`: names, and each kind's credentials and event settings.
    fn check_sources(&self, doc: &Document, problems: &mut Vec<Problem>) {
        for (name, source) in &self.sources {
            let at = format!("sources.{name}");
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                problems.push(doc.problem(
                    &at,
                    format!("source name {name:?} may only hold letters, digits, '-' and '_'"),
                ));
            }
            if source.kind == SourceKind::Alertmanager && source.secret.is_some() {
                problems.push(doc.problem(
                    &format!("{at}.secret"),
                    "alertmanager does not sign its requests; use `token` (Authorization: Bearer) instead",
                ));
            }
            if source.kind != SourceKind::Github && (source.app || source.github_url.is_some()) {
                problems.push(doc.problem(
                    &at,
                    format!(
                        "app and github_url are for github sources, not {} ones (a GitHub App sends GitHub's events)",
                        source.kind.as_str()
                    ),
                ));
            }
            if source.kind != SourceKind::Gitlab && source.gitlab_url.is_some() {
                problems.push(doc.problem(
                    &format!("{at}.gitlab_url"),
                    format!(
                        "gitlab_url is for gitlab sources, not {} ones (a GitLab hook sends GitLab's events)",
                        source.kind.as_str()
                    ),
                ));
            }
            for (key, u, what) in [
                (
                    "github_url",
                    &source.github_url,
                    "https://github.com, or a GitHub Enterprise Server's",
                ),
                (
                    "gitlab_url",
                    &source.gitlab_url,
                    "https://gitlab.com, or a self-managed GitLab's",
                ),
            ] {
                let Some(u) = u else { continue };
                if !matches!(url::Url::parse(u), Ok(p) if p.scheme() == "https" || p.scheme() == "http")
                {
                    problems.push(doc.problem(
                        &format!("{at}.{key}"),
                        format!("{u:?} is not an http(s) URL ({what})"),
                    ));
                }
            }
            if source.app && source.secret.is_some() {
                problems.push(doc.problem(
                    &format!("{at}.secret"),
                    "a source with `app: true` verifies with its GitHub App's secret: drop `secret`, or `app`",
                ));
            }
            if source.kind != SourceKind::Generic
                && (source.event_header.is_some() || source.event_field.is_some())
            {
                problems.push(doc.problem(
                    &at,
                    format!(
                        "event_header and event_field are for generic sources; a {} source names its events itself",
                        source.kind.as_str()
                    ),
                ));
            }
            for (key, value) in [("secret", &source.secret), ("token", &source.token)] {
                if value.as_deref() == Some("") {
                    problems.push(doc.problem(
                        &format!("{at}.{key}"),
                        format!("{key} is empty; remove it or set a value"),
                    ));
                }
            }
        }
    }

    /// `public_url`: an http(s) URL.
    fn check_public_url(&self, doc: &Document, problems: &mut Vec<Problem>) {
        if let Some(url) = &self.public_url {
            match url::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                Ok(_) => {
                    problems.push(doc.problem("public_url", "public_url must be http or https"))
                }
                Err(e) => problems
                    .push(doc.problem("public_url", format!("public_url is not a URL: {e}"))),
            }
        }
    }

    /// `store.postgres`: the URL, the pool, the lease, and what PostgreSQL needs besides.
    fn check_store(&self, doc: &Document, problems: &mut Vec<Problem>) {
        if let Some(pg) = &self.store.postgres {
            let tls = pg.tls.clone().unwrap_or_default();
            if let Some(mode) = &tls.mode {
                if let Err(e) = crate::store::pg::tls::Mode::parse(mode) {
                    problems.push(doc.problem("store.postgres.tls.mode", e));
                }
            }
            match crate::store::pg::tls::split(&pg.url) {
                Err(e) => problems.push(doc.problem("store.postgres.url", e)),
                Ok(split) => {
                    if let Err(e) = split.rest.parse::<postgres::Config>() {
                        problems.push(doc.problem(
                            "store.postgres.url",
                            format!("url is not a PostgreSQL URL (postgres://user:password@host:port/database): {e}"),
                        ));
                    }
                    let at = if tls.mode.is_some() || tls.ca_file.is_some() {
                        "store.postgres.tls"
                    } else {
                        "store.postgres.url"
                    };
                    match crate::store::pg::tls::with_settings(
                        &pg.url,
                        tls.mode
                            .as_deref()
                            .filter(|m| crate::store::pg::tls::Mode::parse(m).is_ok()),
                        tls.ca_file.as_deref(),
                    ) {
                        Err(e) => problems.push(doc.problem(at, e)),
                        Ok(_) => {
                            let ca = split.ca_file.or(tls.ca_file.clone());
                            if let Some(ca) = ca.filter(|c| !c.is_file()) {
                                let key = if tls.ca_file.is_some() {
                                    "store.postgres.tls.ca_file"
                                } else {
                                    "store.postgres.url"
                                };
                                problems.push(doc.problem(
                                    key,
                                    format!("the CA file {} does not exist", ca.display()),
                                ));
                            }
                        }
                    }
                }
            }
            if !(1..=256).contains(&pg.pool) {
                problems.push(doc.problem(
                    "store.postgres.pool",
                    "pool is the number of connections to PostgreSQL, 1 to 256",
                ));
            }
            if !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&pg.lease) {
                problems.push(doc.problem(
                    "store.postgres.lease",
                    "lease is how long an instance's connections wait after it dies before another takes them, 1s to 10m (renewed every third of it, so under 1s it would be renewed more often than the database can be asked)",
                ));
            }
            if self.connect.secrets_key.is_none() {
                problems.push(doc.problem(
                    "store.postgres",
                    "with PostgreSQL, set connect.secrets_key (base64 of 32 bytes, `openssl rand -base64 32`, usually `${CARDWIRE_SECRETS_KEY}`): webhook URLs are sealed with it, and every instance must use the same key, so it cannot be made up in a data folder",
                ));
            }
            if self.durability == Durability::Sync {
                problems.push(doc.problem(
                    "durability",
                    "durability is for sled; with PostgreSQL every event commits before its 202",
                ));
            }
        }
    }

    /// `limits`: what a client may hold of the server.
    fn check_limits(&self, doc: &Document, problems: &mut Vec<Problem>) {
        if self.limits.header_timeout.is_zero() {
            problems.push(doc.problem(
                "limits.header_timeout",
                "header_timeout must be above 0 (how long a client has to send a request's headers)",
            ));
        }
        if self.limits.body_min_rate == 0 {
            problems.push(doc.problem(
                "limits.body_min_rate",
                "body_min_rate must be above 0 bytes a second (the slowest a body may arrive)",
            ));
        }
        if self.limits.max_connections == 0 {
            problems.push(doc.problem(
                "limits.max_connections",
                "max_connections must be at least 1",
            ));
        }
    }

    /// `admin_token`: not empty.
    fn check_admin_token(&self, doc: &Document, problems: &mut Vec<Problem>) {
        if self.admin_token.as_deref() == Some("") {
            problems.push(doc.problem(
                "admin_token",
                "admin_token is empty; remove it to turn the admin API off",
            ));
        }
    }

    /// `targets.allowed_hosts`: host names or patterns.
    fn check_targets(&self, doc: &Document, problems: &mut Vec<Problem>) {
        for (i, host) in self.targets.allowed_hosts.iter().enumerate() {
            let bare = host.strip_prefix("*.").unwrap_or(host);
            if bare.is_empty() || bare.contains(['/', ':', '*', ' ']) {
                problems.push(doc.problem(
                    &format!("targets.allowed_hosts[{i}]"),
                    format!("{host:?} is not a host name or pattern (write `example.com` or `*.example.com`, no scheme or port)"),
                ));
            }
        }
    }

    /// `connect`: what the connector registration asks for.
    fn check_connect(&self, doc: &Document, problems: &mut Vec<Problem>) {
        let c = &self.connect;
        if let Some(id) = &c.app_id {
            let hex = id.replace('-', "");
            if id.len() != 36 || hex.len() != 32 || !hex.chars().all(|x| x.is_ascii_hexdigit()) {
                problems.push(doc.problem(
                    "connect.app_id",
                    format!("app_id {id:?} is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"),
                ));
            }
        }
        if let Some(logo) = &c.logo {
            let path = self.resolve(logo);
            let ext = path
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase);
            if !matches!(ext.as_deref(), Some("jpg" | "jpeg" | "png" | "gif")) {
                problems.push(doc.problem(
                    "connect.logo",
                    "the logo must be a jpg, jpeg, png or gif file",
                ));
            }
            match std::fs::metadata(&path) {
                Ok(m) if m.len() >= 60 * 1024 => problems.push(doc.problem(
                    "connect.logo",
                    format!("the logo is {} bytes; it must be under 60 KB", m.len()),
                )),
                Ok(_) => {}
                Err(e) => problems.push(doc.problem(
                    "connect.logo",
                    format!("cannot read the logo {}: {e}", path.display()),
                )),
            }
        }
        if c.name.trim().is_empty() {
            problems.push(doc.problem("connect.name", "the connector needs a name"));
        }
        if c.short_description.chars().count() > 80 {
            problems.push(doc.problem(
                "connect.short_description",
                "short_description is at most 80 characters",
            ));
        }
        let https = |u: &str| {
            url::Url::parse(u).is_ok_and(|u| u.scheme() == "https" && u.host_str().is_some())
        };
        if let Some(u) = &c.company_url {
            if !https(u) {
                problems.push(doc.problem(
                    "connect.company_url",
                    format!("company_url {u:?} must be an https URL"),
                ));
            }
        }
        for (i, u) in c.action_targets.iter().enumerate() {
            if !https(u) {
                problems.push(doc.problem(
                    &format!("connect.action_targets[{i}]"),
                    format!("action target {u:?} must be an https URL"),
                ));
            }
        }
        if let Some(u) = &c.url {
            if url::Url::parse(u)
                .map(|u| u.query().is_some() || !matches!(u.scheme(), "http" | "https"))
                .unwrap_or(true)
            {
                problems.push(doc.problem(
                    "connect.url",
                    format!("connect.url {u:?} must be an http(s) URL without a query"),
                ));
            }
        }
    }

    /// `connect.slack`, `connect.discord`: the OAuth clients.
    fn check_connect_clients(&self, doc: &Document, problems: &mut Vec<Problem>) {
        let c = &self.connect;
        for (name, client) in [("slack", &c.slack), ("discord", &c.discord)] {
            let Some(client) = client else { continue };
            for (key, value) in [
                ("client_id", &client.client_id),
                ("client_secret", &client.client_secret),
            ] {
                if value.trim().is_empty() {
                    problems.push(doc.problem(
                        &format!("connect.{name}.{key}"),
                        format!("connect.{name}.{key} is empty"),
                    ));
                }
            }
            for (key, value) in [
                ("authorize_url", &client.authorize_url),
                ("token_url", &client.token_url),
            ] {
                let Some(u) = value else { continue };
                if url::Url::parse(u)
                    .map(|u| !matches!(u.scheme(), "http" | "https") || u.host_str().is_none())
                    .unwrap_or(true)
                {
                    problems.push(doc.problem(
                        &format!("connect.{name}.{key}"),
                        format!("connect.{name}.{key} {u:?} must be an http(s) URL"),
                    ));
                }
            }
            if name == "discord" && client.team.is_some() {
                problems.push(doc.problem(
                    "connect.discord.team",
                    "team restricts a Slack install to one workspace; Discord has no such setting",
                ));
            }
        }
    }

    /// `connect.emulator_groups`: what the emulator's picker offers.
    fn check_connect_emulator(&self, doc: &Document, problems: &mut Vec<Problem>) {
        let c = &self.connect;
        for (i, g) in c.emulator_groups.iter().enumerate() {
            if !matches!(g.app_type.as_str(), "teams" | "groups") {
                problems.push(doc.problem(
                    &format!("connect.emulator_groups[{i}].app_type"),
                    "app_type is teams or groups",
                ));
            }
        }
    }

    /// `connect.secrets_key`: base64 of 32 bytes.
    fn check_secrets_key(&self, doc: &Document, problems: &mut Vec<Problem>) {
        let c = &self.connect;
        if let Some(k) = &c.secrets_key {
            use base64::Engine as _;
            let ok = base64::engine::general_purpose::STANDARD
                .decode(k.trim())
                .is_ok_and(|b| b.len() == 32);
            if !ok {
                problems.push(doc.problem(
                    "connect.secrets_key",
                    "secrets_key must be base64 of 32 bytes (e.g. `openssl rand -base64 32`)",
                ));
            }
        }
    }

    /// `delivery`: the schedule, the bounds, pacing's windows.
    fn check_delivery(&self, doc: &Document, problems: &mut Vec<Problem>) {
        if self.delivery.retry_schedule.len() > 50 {
            problems.push(doc.problem("delivery.retry_schedule", "at most 50 retries"));
        }
        if self.delivery.concurrency == 0 || self.delivery.max_queued == 0 {
            problems.push(doc.problem("delivery", "concurrency and max_queued must be at least 1"));
        }
        if let Some(lists) = self.delivery.pacing.per_kind() {
            for (kind, list) in lists {
                let kind = kind.as_str();
                for (i, w) in list.iter().enumerate() {
                    if let Err(e) = crate::units::parse_rate(w) {
                        problems.push(doc.problem(&format!("delivery.pacing.{kind}[{i}]"), e));
                    }
                }
            }
        }
    }

    /// Whether the Office 365 emulator is on: as set, else on without a config file.
    pub fn emulator(&self) -> bool {
        self.connect.emulator.unwrap_or(false)
    }

    /// Resolves a path from this file against its folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// The base URL the gateway is reached at.
    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => format!("http://{}", self.listen),
        }
    }
}

/// Replaces `${VAR}` with the variable's value (`$${` stands for a literal `${`). An unset
/// variable, or a value with a line break (which could change the YAML's structure), is a
/// problem at the reference.
pub fn expand_env(
    file: &Path,
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, Problems> {
    let mut out = String::with_capacity(text.len());
    let mut problems = Vec::new();
    for (line_no, full_line) in text.split_inclusive('\n').enumerate() {
        // References in comments are left alone: a comment may mention `${VAR}`.
        let (line, comment) = full_line.split_at(comment_start(full_line));
        let mut rest = line;
        let mut col = 1;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            col += rest[..i].chars().count();
            let tail = &rest[i..];
            if let Some(after) = tail.strip_prefix("$${") {
                out.push_str("${");
                rest = after;
                col += 3;
                continue;
            }
            let Some(body) = tail.strip_prefix("${") else {
                out.push('$');
                rest = &tail[1..];
                col += 1;
                continue;
            };
            let pos = Pos {
                line: line_no + 1,
                col,
            };
            let Some(end) = body.find('}') else {
                problems.push(Problem::new(file, pos, "`${` without a closing `}`"));
                out.push_str(tail);
                rest = "";
                continue;
            };
            let name = &body[..end];
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                problems.push(Problem::new(
                    file,
                    pos,
                    format!("`${{{name}}}` is not a valid environment variable name"),
                ));
            } else {
                match lookup(name) {
                    Some(v) if v.contains(['\n', '\r']) => problems.push(Problem::new(
                        file,
                        pos,
                        format!("environment variable {name} holds a line break, which is not allowed in config values"),
                    )),
                    Some(v) => out.push_str(&v),
                    None => problems.push(Problem::new(
                        file,
                        pos,
                        format!("environment variable {name} is not set"),
                    )),
                }
            }
            col += name.chars().count() + 3;
            rest = &body[end + 1..];
        }
        out.push_str(rest);
        out.push_str(comment);
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(Problems(problems))
    }
}

/// Where a YAML comment starts on this line (its length when there is none): a `#` at the
/// start or after white space, outside quotes.
fn comment_start(line: &str) -> usize {
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && prev.is_whitespace() => return i,
            None => {}
        }
        prev = c;
    }
    line.len()
}

fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        N(u64),
        S(String),
    }
    match Size::deserialize(d)? {
        Size::N(n) => Ok(n),
        Size::S(s) => crate::units::parse_size(&s).map_err(serde::de::Error::custom),
    }
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    crate::units::parse_duration(&s).map_err(serde::de::Error::custom)
}

fn de_durations<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    v.iter()
        .map(|s| crate::units::parse_duration(s).map_err(serde::de::Error::custom))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, Problems> {
        Config::from_text(Path::new("c.yaml"), text)
    }

    #[test]
    fn each_platform_is_paced_by_its_documented_limits() {
        use crate::render::CardKind::*;
        let on = PacingConfig::default();
        let s = |n: u64| Duration::from_secs(n);
        assert_eq!(on.windows(Teams), vec![(4, s(1)), (60, s(30))]);
        assert_eq!(on.windows(Slack), vec![(3, s(3))]);
        assert_eq!(on.windows(Discord), vec![(5, s(2)), (30, s(60))]);
        assert_eq!(on.windows(GoogleChat), vec![(1, s(1)), (60, s(60))]);
        // A Mattermost server's own limit is off by default: nothing to keep to.
        assert!(on.windows(Mattermost).is_empty());
        assert!(PacingConfig::Switch(false).windows(Slack).is_empty());
    }

    #[test]
    fn empty_file_gives_defaults_without_sources() {
        let c = load("").unwrap();
        assert_eq!(c.listen, default_listen());
        assert!(c.sources.is_empty());
        assert_eq!(c.max_body, 25 * 1024 * 1024);
    }

    #[test]
    fn unknown_key_names_line_column_and_suggestion() {
        let err = load("listen: 127.0.0.1:9000\nadmin_tokn: x\n").unwrap_err();
        let s = err.to_string();
        assert!(
            s.starts_with("c.yaml:2:1: unknown field `admin_tokn`: did you mean `admin_token`?"),
            "{s}"
        );
    }

    #[test]
    fn a_github_app_is_for_github_sources_without_a_secret() {
        let err = load("sources:\n  am:\n    kind: alertmanager\n    app: true\n").unwrap_err();
        assert!(
            err.to_string().contains(
                "c.yaml:3:5: app and github_url are for github sources, not alertmanager ones"
            ),
            "{err}"
        );
        let err =
            load("sources:\n  gh:\n    kind: github\n    app: true\n    secret: s\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("c.yaml:5:13: a source with `app: true`"),
            "{err}"
        );
        let err =
            load("sources:\n  gh:\n    kind: github\n    github_url: ghe.example\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("c.yaml:4:17: \"ghe.example\" is not an http(s) URL"),
            "{err}"
        );
        let e = load("sources:\n  gh:\n    kind: github\n    gitlab_url: https://gl.example\n")
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("c.yaml:4:17: gitlab_url is for gitlab sources, not github ones"),
            "{e}"
        );
        let e =
            load("sources:\n  gl:\n    kind: gitlab\n    gitlab_url: gl.example\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("c.yaml:4:17: \"gl.example\" is not an http(s) URL (https://gitlab.com"),
            "{e}"
        );
        let e = load("telemetry:\n  otlp:\n    protocol: grcp\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("c.yaml:3:15: unknown variant `grcp`"),
            "{e}"
        );
        let e = load("telemetry:\n  otlp:\n    endpoint: collector:4318\n    sample_ratio: 1.5\n")
            .unwrap_err();
        let said = e.to_string();
        assert!(
            said.contains("c.yaml:3:15: \"collector:4318\" is not an http(s) URL"),
            "{said}"
        );
        assert!(
            said.contains(
                "c.yaml:4:19: sample_ratio is the share of traces kept, 0 to 1 (not 1.5)"
            ),
            "{said}"
        );
        let ok = load(
            "telemetry:\n  otlp: {endpoint: \"http://127.0.0.1:4318\", sample_ratio: 0.5, protocol: grpc}\n",
        )
        .unwrap();
        assert_eq!(
            ok.telemetry.unwrap().otlp.unwrap().protocol,
            Some(OtlpProtocol::Grpc)
        );
        let ok =
            load("sources:\n  gl:\n    kind: gitlab\n    gitlab_url: https://gitlab.example\n")
                .unwrap();
        assert_eq!(
            ok.sources["gl"].gitlab_url.as_deref(),
            Some("https://gitlab.example")
        );
        let ok = load("sources:\n  gh:\n    kind: github\n    app: true\n    github_url: https://ghe.example\n").unwrap();
        assert!(ok.sources["gh"].app);
    }

    #[test]
    fn nested_unknown_key_and_unknown_kind() {
        let err = load("sources:\n  gh:\n    kind: github\n    secrt: x\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("c.yaml:4:5: unknown field `secrt`"),
            "{err}"
        );
        let err = load("sources:\n  gh:\n    kind: gitthub\n").unwrap_err();
        let s = err.to_string();
        assert!(
            s.contains("3:11") && s.contains("github") && s.contains("generic"),
            "{s}"
        );
    }

    #[test]
    fn env_references_expand_and_unset_ones_are_named() {
        let text = "admin_token: ${CW_TOKEN}\npublic_url: https://x/$${literal}\n";
        let out = expand_env(Path::new("c.yaml"), text, |n| {
            (n == "CW_TOKEN").then(|| "s3cret".into())
        })
        .unwrap();
        assert_eq!(
            out,
            "admin_token: s3cret\npublic_url: https://x/${literal}\n"
        );
        let err = expand_env(Path::new("c.yaml"), "a: 1\nb: x${NOPE}\n", |_| None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.yaml:2:5: environment variable NOPE is not set"
        );
        let err =
            expand_env(Path::new("c.yaml"), "a: ${X}\n", |_| Some("1\nb: 2".into())).unwrap_err();
        assert!(err.to_string().contains("line break"));
        let out = expand_env(
            Path::new("c.yaml"),
            "a: 1 # see ${UNSET}\nb: \"#${X}\"\n",
            |_| Some("v".into()),
        )
        .unwrap();
        assert_eq!(out, "a: 1 # see ${UNSET}\nb: \"#v\"\n");
    }

    #[test]
    fn meaning_checks_report_every_problem_at_once() {
        let text = "sources:\n  am:\n    kind: alertmanager\n    secret: x\n  gh:\n    kind: github\n    event_header: X\ntargets:\n  allowed_hosts: [\"https://x.com\"]\n";
        let err = load(text).unwrap_err();
        assert_eq!(err.0.len(), 3, "{err}");
        assert!(
            err.0[0]
                .to_string()
                .starts_with("c.yaml:4:13: alertmanager"),
            "{err}"
        );
    }

    #[test]
    fn the_add_to_slack_and_discord_clients_are_checked_where_they_are_written() {
        let ok = load("connect:\n  slack:\n    client_id: \"1.2\"\n    client_secret: s\n    team: T1\n  discord:\n    client_id: \"3\"\n    client_secret: s\n").unwrap();
        assert_eq!(ok.connect.slack.unwrap().team.as_deref(), Some("T1"));
        let text = "connect:\n  slack:\n    client_id: \"\"\n    client_secret: s\n    token_url: ftp://x\n  discord:\n    client_id: \"3\"\n    client_secret: s\n    team: T1\n";
        let err = load(text).unwrap_err();
        let all: Vec<String> = err.0.iter().map(|p| p.to_string()).collect();
        assert_eq!(all.len(), 3, "{all:?}");
        assert!(
            all[0].starts_with("c.yaml:3:16: connect.slack.client_id is empty"),
            "{all:?}"
        );
        assert!(
            all[1].starts_with(
                "c.yaml:5:16: connect.slack.token_url \"ftp://x\" must be an http(s) URL"
            ),
            "{all:?}"
        );
        assert!(all[2].starts_with("c.yaml:9:11: team restricts"), "{all:?}");
        // A key that is not a client's names the line and suggests.
        let err =
            load("connect:\n  slack:\n    client_id: a\n    client_secret: b\n    teams: T1\n")
                .unwrap_err();
        assert!(err.to_string().contains("did you mean `team`"), "{err}");
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(crate::units::parse_size("25MiB").unwrap(), 25 << 20);
        assert_eq!(crate::units::parse_size("1000").unwrap(), 1000);
        assert_eq!(crate::units::parse_size("2 KB").unwrap(), 2000);
        assert!(crate::units::parse_size("12 parsecs").is_err());
        let c = load("max_body: 1KiB\ndelivery:\n  retry_schedule: [1s, 2m]\n").unwrap();
        assert_eq!(c.max_body, 1024);
        assert_eq!(
            c.delivery.retry_schedule,
            vec![Duration::from_secs(1), Duration::from_secs(120)]
        );
        let err = load("delivery:\n  timeout: soon\n").unwrap_err();
        assert!(err.to_string().starts_with("c.yaml:2:12:"), "{err}");
    }
}
