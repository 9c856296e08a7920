//! The command line: `serve`, `check` and `render`.
//!
//! Arguments are parsed by clap, then each command loads what it needs through the library
//! and returns an exit code from one place: 0 for success, 1 when the user's files or input
//! have problems (printed one per line as `file:line:col: message`), 2 for usage errors
//! (clap's own).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::pipeline::Pipeline;
use crate::render::CardKind;

/// cardwire: a gateway that turns upstream webhooks into chat cards.
#[derive(Debug, Parser)]
#[command(name = "cardwire", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Log output formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve(ServeArgs),
    /// Check the config, rules and templates; print every problem.
    Check(CheckArgs),
    /// Render the cards a payload would produce, one JSON line per matching rule.
    Render(RenderArgs),
    /// Manage the connections of a running gateway (through its admin API).
    Connections(ConnectionsArgs),
    /// See and retry deliveries of a running gateway (through its admin API).
    Deliveries(DeliveriesArgs),
    /// The PostgreSQL schema (`store.postgres`): upgrade it, or with --check say whether it is
    /// up to date without changing it.
    Migrate(MigrateArgs),
    /// The Connect to Office 365 button.
    Connect(ConnectArgs),
}

/// `cardwire migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Change nothing: print where the schema stands; exit 1 unless it is this version's.
    #[arg(long, conflicts_with = "from_sled")]
    check: bool,
    /// Copy the state of a sled data folder (a single instance's `data_dir`, its gateway
    /// stopped) into the configured PostgreSQL database, which must hold none yet. The folder
    /// is opened as a start would open it and read, nothing taken out.
    #[arg(long, value_name = "DIR")]
    from_sled: Option<std::path::PathBuf>,
}

/// Where a running gateway is and how to sign in to its admin API. Global, so that
/// `cardwire connections list --server URL --token T` works as well as
/// `cardwire connections --server URL --token T list`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The gateway's base URL.
    #[arg(
        long,
        global = true,
        env = "CARDWIRE_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
    /// The admin token.
    #[arg(
        long,
        global = true,
        env = "CARDWIRE_ADMIN_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
}

impl ServerArgs {
    fn client(&self) -> anyhow::Result<AdminClient> {
        let Some(token) = self.token.as_deref() else {
            bail!("no admin token: give --token or set CARDWIRE_ADMIN_TOKEN");
        };
        AdminClient::new(&self.server, token)
    }
}

/// `cardwire connections`.
#[derive(Debug, Args)]
pub struct ConnectionsArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    action: ConnectionsAction,
}

/// What to do with connections.
#[derive(Debug, Subcommand)]
pub enum ConnectionsAction {
    /// List them (URLs masked).
    List,
    /// Pause one: it receives nothing until resumed.
    Pause {
        /// The connection id (con_…).
        id: String,
    },
    /// Resume a paused one.
    Resume {
        /// The connection id (con_…).
        id: String,
    },
    /// Remove one; its URL is erased.
    Remove {
        /// The connection id (con_…).
        id: String,
    },
    /// Choose its digest: cards wait and go out together at the chosen time.
    Digest {
        /// The connection id (con_…).
        id: String,
        /// Every so often, e.g. 1h.
        #[arg(long, conflicts_with_all = ["at", "off"])]
        every: Option<String>,
        /// At a time of day, e.g. 09:00.
        #[arg(long, conflicts_with = "off")]
        at: Option<String>,
        /// With --at: the weekdays, e.g. mon,tue,wed,thu,fri (default every day).
        #[arg(long, requires = "at", value_delimiter = ',')]
        days: Vec<String>,
        /// With --at: the time zone, e.g. Europe/Berlin (default UTC).
        #[arg(long, requires = "at")]
        tz: Option<String>,
        /// No digest: cards as they happen.
        #[arg(long)]
        off: bool,
    },
}

/// `cardwire deliveries`.
#[derive(Debug, Args)]
pub struct DeliveriesArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    action: DeliveriesAction,
}

/// What to do with deliveries.
#[derive(Debug, Subcommand)]
pub enum DeliveriesAction {
    /// List deliveries (all pages).
    List {
        /// queued, retrying, dead or delivered.
        #[arg(long)]
        state: Option<String>,
        /// Only this connection's.
        #[arg(long)]
        connection: Option<String>,
    },
    /// Show one delivery with every attempt.
    Show {
        /// The delivery id (dlv_…).
        id: String,
    },
    /// Queue dead letters again: one by id, or every one (of a connection) with --all.
    Retry {
        /// The delivery id (dlv_…).
        id: Option<String>,
        /// Every dead letter (with --connection: that connection's).
        #[arg(long, conflicts_with = "id")]
        all: bool,
        /// With --all: only this connection's.
        #[arg(long, requires = "all")]
        connection: Option<String>,
    },
}

/// `cardwire connect`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    #[command(subcommand)]
    action: ConnectAction,
}

/// What to do about the Connect button.
#[derive(Debug, Subcommand)]
pub enum ConnectAction {
    /// Print the HTML snippet of the Connect to Office 365 button, to embed in your own app.
    Snippet(ConfigArg),
}

/// The config file option.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The config file (YAML). Without one, built-in defaults apply.
    #[arg(long, short, env = "CARDWIRE_CONFIG")]
    pub config: Option<PathBuf>,
}

/// `cardwire check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Print a JSON Schema (for editors) and exit: of rule files (`rules`, the default) or of
    /// the portable card a `.card.hbs` template renders (`card`).
    #[arg(long, value_name = "WHICH", num_args = 0..=1, default_missing_value = "rules")]
    print_schema: Option<SchemaWhich>,
    /// Also check a running gateway's connections (through its admin API: --server, --token):
    /// each rule's template must render the kind of every connection its cards go to.
    #[arg(long)]
    connections: bool,
    #[command(flatten)]
    server: ServerArgs,
}

/// A connection as `check --connections` reads it from `GET /api/connections`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ConnectionSeen {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its kind of card.
    pub kind: CardKind,
    /// The channels it listens to (none: all).
    #[serde(default)]
    pub channels: Vec<String>,
}

/// Every (rule, connection) whose cards would have no template of the connection's kind: a
/// line each, naming the rule's file, the rule, the template, the kind and the connection.
pub fn kind_gaps(
    rules: &[crate::rules::Rule],
    has: impl Fn(&str, CardKind) -> bool,
    connections: &[ConnectionSeen],
) -> Vec<String> {
    let mut gaps = Vec::new();
    for rule in rules.iter().filter(|r| r.enabled && r.inactive.is_none()) {
        for c in connections.iter().filter(|c| rule.sends_to(&c.channels)) {
            if !has(&rule.template, c.kind) {
                gaps.push(format!(
                    "{}:{}:{}: rule {:?}: template {:?} has no {kind} card, and connection {} ({:?}, {kind}) takes this rule's cards: add templates/{t}.card.hbs (every kind) or templates/{t}.{kind}.hbs",
                    rule.file.display(),
                    rule.template_at.line,
                    rule.template_at.col,
                    rule.name,
                    rule.template,
                    c.id,
                    c.name,
                    kind = c.kind.as_str(),
                    t = rule.template,
                ));
            }
        }
    }
    gaps
}

/// Which JSON Schema `check --print-schema` prints.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SchemaWhich {
    /// Rule files.
    Rules,
    /// The portable card.
    Card,
}

/// `cardwire serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Listen on this address instead of the config's.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Keep data here instead of the config's data_dir.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Turn the admin API on with this bearer token (overrides the config's admin_token).
    #[arg(long, env = "CARDWIRE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
}

/// `cardwire render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The configured source the payload comes from.
    #[arg(long)]
    source: String,
    /// The JSON payload file (`-` for standard input).
    #[arg(long)]
    payload: PathBuf,
    /// A request header, as `Name: value` (repeatable), e.g. `X-GitHub-Event: push`.
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// The card kind.
    #[arg(long, value_enum, default_value_t = KindArg::Teams)]
    kind: KindArg,
    /// Instead of cards, say for every rule of the source whether it matched, and why not.
    #[arg(long)]
    explain: bool,
}

/// Card kinds on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KindArg {
    /// MessageCard, for Office 365 connectors.
    Teams,
    /// Adaptive Card in a message envelope, for Teams Workflows.
    Workflow,
    /// Block Kit, for Slack incoming webhooks.
    Slack,
    /// An embed, for Discord webhooks.
    Discord,
    /// cardsV2, for Google Chat incoming webhooks.
    #[value(name = "google_chat")]
    GoogleChat,
    /// An attachment, for Mattermost incoming webhooks.
    Mattermost,
}

impl From<KindArg> for CardKind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::Teams => CardKind::Teams,
            KindArg::Workflow => CardKind::Workflow,
            KindArg::Slack => CardKind::Slack,
            KindArg::Discord => CardKind::Discord,
            KindArg::GoogleChat => CardKind::GoogleChat,
            KindArg::Mattermost => CardKind::Mattermost,
        }
    }
}

/// Runs a parsed command line; the one place exit codes are decided.
pub fn run(cli: Cli) -> ExitCode {
    init_tracing(cli.log_format);
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Check(args) => check(&args),
        Command::Render(args) => render(&args),
        Command::Connections(args) => connections(&args),
        Command::Deliveries(args) => deliveries(&args),
        Command::Migrate(args) => migrate(&args),
        Command::Connect(ConnectArgs {
            action: ConnectAction::Snippet(c),
        }) => snippet(&c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cardwire: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Loads the config and the pipeline; problems are printed and turn into exit code 1.
fn load(config: Option<&Path>) -> Result<(Config, Pipeline), ExitCode> {
    let config = Config::load(config).map_err(print_problems)?;
    let pipeline = Pipeline::load(&config).map_err(print_problems)?;
    Ok((config, pipeline))
}

fn print_problems(p: crate::yaml::Problems) -> ExitCode {
    for problem in &p.0 {
        eprintln!("{problem}");
    }
    eprintln!(
        "{} problem{}",
        p.0.len(),
        if p.0.len() == 1 { "" } else { "s" }
    );
    ExitCode::FAILURE
}

/// What `check` says of a config that keeps its state in PostgreSQL: what every instance on
/// the database must share.
pub fn shared_state_note(digest: &str) -> String {
    format!(
        "state in PostgreSQL: every instance on this database needs the same connect.secrets_key (webhook URLs are sealed with it) and the same rules and templates (GET /api/rules answers their digest; this set's is {digest})"
    )
}

/// `cardwire migrate [--check]`: the schema of the configured PostgreSQL database. The
/// gateway migrates by itself when it starts; this is for checking before a deploy, or
/// upgrading ahead of it.
fn migrate(args: &MigrateArgs) -> anyhow::Result<ExitCode> {
    use crate::store::pg::migrations;
    let config = match Config::load(args.config.config.as_deref()) {
        Ok(c) => c,
        Err(p) => return Ok(print_problems(p)),
    };
    let Some(pg) = &config.store.postgres else {
        anyhow::bail!(
            "the config keeps its state in sled (no store.postgres): there is no schema to migrate"
        );
    };
    let mut pg_config: postgres::Config = pg.url.parse().context("store.postgres.url")?;
    if pg_config.get_connect_timeout().is_none() {
        // As the gateway does: a server that does not answer is an error in seconds.
        pg_config.connect_timeout(std::time::Duration::from_secs(5));
    }
    let mut client = pg_config
        .connect(postgres::NoTls)
        .context("cannot reach PostgreSQL (store.postgres.url)")?;
    if !args.check {
        // A database from a newer cardwire is left alone; the status below says so.
        migrations::migrate(&mut client)?;
    }
    let status = migrations::status(&mut client)?;
    println!("{}", status.describe());
    if !status.up_to_date() {
        return Ok(ExitCode::FAILURE);
    }
    drop(client);
    if let Some(dir) = &args.from_sled {
        import_sled(&config, pg, dir)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `cardwire migrate --from-sled DIR`: a sled data folder's state into PostgreSQL.
fn import_sled(
    config: &Config,
    pg: &crate::config::PostgresConfig,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    if !dir.join("sled").is_dir() {
        anyhow::bail!(
            "{} is not a cardwire data folder (no sled/ in it): name the data_dir of the instance to move",
            dir.display()
        );
    }
    let Some(shared) = config.connect.secrets_key.as_deref() else {
        anyhow::bail!("store.postgres needs connect.secrets_key (see `cardwire check`)");
    };
    // The folder's own key if it made one, else the configured one (which it then used).
    let folder_key = (!dir.join("secrets.key").exists()).then_some(shared);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let imported = runtime.block_on(async {
        let from = crate::store::Store::open(dir, folder_key)
            .with_context(|| format!("cannot open the sled store in {}", dir.display()))?;
        let settings = crate::store::pg::PgSettings {
            url: pg.url.clone(),
            pool: 2,
            lease: pg.lease,
        };
        let to = crate::store::pg::PgStore::open(&settings, shared, Default::default())
            .context("cannot open the PostgreSQL store (store.postgres.url)")?;
        let from2 = from.clone();
        let imported =
            tokio::task::spawn_blocking(move || crate::store::pg::import::import(&from2, &to))
                .await
                .context("the import panicked")??;
        anyhow::Ok(imported)
    })?;
    println!("imported from {}: {imported}", dir.display());
    Ok(())
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let (mut config, pipeline) = match load(args.config.config.as_deref()) {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(token) = args.admin_token.filter(|t| !t.is_empty()) {
        config.admin_token = Some(token);
    }
    if let Some(dir) = args.data_dir {
        // A flag is relative to the working directory, not to the config file.
        config.data_dir = std::env::current_dir()?.join(dir);
    }
    tracing::info!(
        tcache_max = tikv_jemalloc_ctl::opt::tcache_max::read().unwrap_or(0),
        "allocator"
    );
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let signal = crate::app::shutdown_signal();
        tokio::pin!(signal);
        let mut server = crate::app::Server::start(config.clone(), pipeline).await?;
        // Opened again, it listens where it listened (port 0 resolved).
        config.listen = server.addr();
        loop {
            tokio::select! {
                _ = &mut signal => return server.run_until(async {}).await,
                _ = server.broken() => {}
            }
            // sled stopped writing (a full disk): stop, and open the store again until it
            // opens, recovering what reached the disk; no operator needed.
            if let Err(e) = server.stop().await {
                tracing::warn!(error = %crate::error::ErrorChain(e.as_ref()), "stopping after the store's error");
            }
            server = loop {
                let wait = tokio::time::sleep(std::time::Duration::from_secs(2));
                tokio::select! {
                    _ = &mut signal => return Ok(()),
                    _ = wait => {}
                }
                match reopen(&config).await {
                    Ok(server) => break server,
                    Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot start again yet; retrying in 2 s"),
                }
            };
            tracing::info!("the store is open again; serving");
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Starts the gateway again after its store failed, with the rules and templates as they are
/// on disk now.
async fn reopen(config: &Config) -> anyhow::Result<crate::app::Server> {
    let pipeline = Pipeline::load(config).map_err(|p| {
        let first = p.0.first().map(|p| p.to_string()).unwrap_or_default();
        anyhow::anyhow!("the rules or templates do not load: {first}")
    })?;
    crate::app::Server::start(config.clone(), pipeline).await
}

/// Which kinds the rules' templates render, and how: `kinds: 24 templates: teams, workflow by
/// their own template; slack, discord, google_chat, mattermost by the MessageCard template`, one
/// line per way of rendering.
fn kinds_summary(pipeline: &crate::pipeline::Pipeline) -> Vec<String> {
    let templates: std::collections::BTreeSet<&str> = pipeline
        .rules
        .rules()
        .iter()
        .map(|r| r.template.as_str())
        .collect();
    let mut ways: std::collections::BTreeMap<String, usize> = Default::default();
    for t in &templates {
        let mut by: Vec<(&str, Vec<&str>)> = Vec::new();
        for kind in CardKind::ALL {
            let how = pipeline
                .renderer
                .how(t, kind)
                .unwrap_or("nothing (no template)");
            match by.iter_mut().find(|(h, _)| *h == how) {
                Some((_, kinds)) => kinds.push(kind.as_str()),
                None => by.push((how, vec![kind.as_str()])),
            }
        }
        let way = by
            .iter()
            .map(|(how, kinds)| {
                let line = format!("{} by {how}", kinds.join(", "));
                if kinds.len() > 1 {
                    line.replace("by its own template", "by their own templates")
                } else {
                    line
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
        *ways.entry(way).or_default() += 1;
    }
    ways.into_iter()
        .map(|(way, n)| {
            format!(
                "kinds: {n} {}: {way}",
                if n == 1 { "template" } else { "templates" }
            )
        })
        .collect()
}

fn check(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    if let Some(which) = args.print_schema {
        let schema = match which {
            SchemaWhich::Rules => crate::rules::schema::SCHEMA,
            SchemaWhich::Card => crate::render::portable::SCHEMA,
        };
        println!("{}", schema.trim_end());
        return Ok(ExitCode::SUCCESS);
    }
    match load(args.config.config.as_deref()) {
        Ok((config, pipeline)) => {
            let problems = render_samples(&config, &pipeline);
            if !problems.is_empty() {
                return Ok(print_problems(crate::yaml::Problems(problems)));
            }
            println!(
                "ok: {} rules from {}, templates from {}",
                pipeline.rules.rules().len(),
                pipeline.rules_origin,
                pipeline.templates_origin
            );
            if let Some(inactive) = pipeline.rules.inactive_summary() {
                println!("{inactive}");
            }
            for line in kinds_summary(&pipeline) {
                println!("{line}");
            }
            if config.store.postgres.is_some() {
                println!("{}", shared_state_note(&pipeline.digest));
            }
            if !args.connections {
                return Ok(ExitCode::SUCCESS);
            }
            let api = args.server.client()?;
            let runtime =
                tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            let listed = runtime
                .block_on(api.call(reqwest::Method::GET, "/api/connections", None))
                .context("cannot read the gateway's connections")?;
            let connections: Vec<ConnectionSeen> = serde_json::from_value(listed)
                .context("the gateway's connections are not what this version reads")?;
            let gaps = kind_gaps(
                pipeline.rules.rules(),
                |t, k| pipeline.renderer.has(t, k),
                &connections,
            );
            if gaps.is_empty() {
                println!(
                    "connections: {} at {}, each rendered by every rule that sends to it",
                    connections.len(),
                    args.server.server
                );
                Ok(ExitCode::SUCCESS)
            } else {
                for g in &gaps {
                    eprintln!("{g}");
                }
                eprintln!(
                    "{} rule and connection pairs without a template of the connection's kind; such cards go out as fallback cards",
                    gaps.len()
                );
                Ok(ExitCode::from(1))
            }
        }
        Err(code) => Ok(code),
    }
}

/// Renders every rule's templates, in both kinds, with every built-in sample payload the rule
/// takes; a failure is a problem at the template's line and column.
fn render_samples(config: &Config, pipeline: &Pipeline) -> Vec<crate::yaml::Problem> {
    use crate::yaml::{Pos, Problem};
    let templates = match &pipeline.templates_origin {
        crate::pipeline::Origin::Dir(d) => d.clone(),
        crate::pipeline::Origin::Embedded(n) => PathBuf::from(n),
    };
    let mut problems = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for sample in crate::samples::all() {
        for (name, source) in config.sources.iter().filter(|(_, s)| s.kind == sample.kind) {
            let mut headers = HeaderMap::new();
            let header = match sample.kind {
                crate::event::SourceKind::Github => Some("x-github-event"),
                crate::event::SourceKind::Gitlab => Some("x-gitlab-event"),
                _ => None,
            };
            if let (Some(h), Ok(v)) = (header, HeaderValue::from_str(&sample.event)) {
                headers.insert(h, v);
            }
            let Ok(event) = crate::ingest::verify::Verified::trusted(name, source, &headers)
                .event(sample.payload.clone())
            else {
                continue;
            };
            for rule in pipeline.rules.matches(&event) {
                // Every kind the template renders: its own files and, with a portable
                // template, every kind.
                for kind in CardKind::ALL
                    .into_iter()
                    .filter(|k| pipeline.renderer.has(&rule.template, *k))
                {
                    let Err(e) = pipeline.renderer.render_with(
                        &rule.template,
                        kind,
                        event.template_context(),
                    ) else {
                        continue;
                    };
                    // One report per template and problem, naming the first sample that shows it.
                    if !seen.insert((rule.template.clone(), kind, e.to_string())) {
                        continue;
                    }
                    let file = if pipeline.renderer.is_portable(&rule.template, kind) {
                        templates.join(format!("{}.card.hbs", rule.template))
                    } else {
                        templates.join(format!("{}.{}.hbs", rule.template, kind.as_str()))
                    };
                    let (pos, message) = match &e {
                        crate::render::RenderError::Template {
                            pos: Some((line, col)),
                            message,
                            ..
                        } => (
                            Pos {
                                line: *line,
                                col: *col,
                            },
                            message.clone(),
                        ),
                        other => (Pos { line: 1, col: 1 }, other.to_string()),
                    };
                    problems.push(Problem::new(
                        file,
                        pos,
                        format!(
                            "rule {:?}: with the sample payload {}: {message}",
                            rule.name, sample.name
                        ),
                    ));
                }
            }
        }
    }
    problems
}

fn render(args: &RenderArgs) -> anyhow::Result<ExitCode> {
    let (config, pipeline) = match load(args.config.config.as_deref()) {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let Some(source) = config.sources.get(&args.source) else {
        let names: Vec<&str> = config.sources.keys().map(String::as_str).collect();
        bail!(
            "no source named {:?}; configured: {}",
            args.source,
            names.join(", ")
        );
    };
    let text = if args.payload == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?
    } else {
        std::fs::read_to_string(&args.payload)
            .with_context(|| format!("cannot read {}", args.payload.display()))?
    };
    let payload: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", args.payload.display()))?;
    let headers = parse_headers(&args.headers)?;
    let event = crate::ingest::verify::Verified::trusted(&args.source, source, &headers)
        .event(payload)
        .map_err(|e| anyhow::anyhow!("{}", e.detail))?;
    if args.explain {
        for e in pipeline.rules.explain(&event) {
            match e.reason {
                None => println!("✓ {}", e.rule),
                Some(why) => println!("✗ {}: {why}", e.rule),
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let kind = CardKind::from(args.kind);
    let mut failed = false;
    // The card staging would queue (crate::stage::card_of): the template's, or when it fails
    // what render_errors sends instead (shown, with the error on stderr and exit status 1).
    for rule in pipeline.rules.matches(&event) {
        match crate::stage::card_of(&pipeline, rule, &event, kind, config.render_errors) {
            Ok(crate::stage::Carded::Card(body)) => {
                let body: serde_json::Value = serde_json::from_str(&body)?;
                println!(
                    "{}",
                    serde_json::json!({"rule": rule.name, "kind": kind.as_str(), "body": body})
                );
            }
            Ok(crate::stage::Carded::Fallback(body, why)) => {
                let body: serde_json::Value = serde_json::from_str(&body)?;
                println!(
                    "{}",
                    serde_json::json!({"rule": rule.name, "kind": kind.as_str(), "body": body, "fallback": why})
                );
                eprintln!(
                    "rule {:?}: template {} failed ({}); the fallback card above goes instead",
                    rule.name, why.template, why.reason
                );
                failed = true;
            }
            Ok(crate::stage::Carded::Failed(e)) => {
                eprintln!("rule {:?}: {e}", rule.name);
                failed = true;
            }
            Err(e) => {
                eprintln!("rule {:?}: {e}", rule.name);
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn connections(args: &ConnectionsArgs) -> anyhow::Result<ExitCode> {
    let api = args.server.client()?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let (method, path, body) = match &args.action {
            ConnectionsAction::List => (reqwest::Method::GET, "/api/connections".to_string(), None),
            ConnectionsAction::Pause { id } => (
                reqwest::Method::PATCH,
                format!("/api/connections/{id}"),
                Some(serde_json::json!({"paused": true})),
            ),
            ConnectionsAction::Resume { id } => (
                reqwest::Method::PATCH,
                format!("/api/connections/{id}"),
                Some(serde_json::json!({"paused": false})),
            ),
            ConnectionsAction::Remove { id } => (
                reqwest::Method::DELETE,
                format!("/api/connections/{id}"),
                None,
            ),
            ConnectionsAction::Digest { id, every, at, days, tz, off } => {
                let digest = match (every, at, off) {
                    (Some(e), _, _) => serde_json::json!({"every": e}),
                    (None, Some(a), _) => {
                        let mut d = serde_json::json!({"at": a, "tz": tz.clone().unwrap_or_else(|| "UTC".into())});
                        if !days.is_empty() {
                            d["days"] = serde_json::json!(days);
                        }
                        d
                    }
                    (None, None, true) => serde_json::Value::Null,
                    (None, None, false) => bail!("give --every, --at or --off"),
                };
                (reqwest::Method::PATCH, format!("/api/connections/{id}"), Some(serde_json::json!({"digest": digest})))
            }
        };
        let answer = api.call(method, &path, body).await?;
        match &args.action {
            ConnectionsAction::List => {
                for c in answer.as_array().into_iter().flatten() {
                    let channels = c["channels"].as_array().filter(|a| !a.is_empty()).map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str())
                            .collect::<Vec<_>>()
                            .join(",")
                    });
                    println!(
                        "{}  {:8}  {:9}  {:7}  {}  {}  channels={}",
                        c["id"].as_str().unwrap_or("?"),
                        c["kind"].as_str().unwrap_or("?"),
                        c["via"].as_str().unwrap_or("?"),
                        if c["paused"].as_bool() == Some(true) {
                            "paused"
                        } else {
                            "active"
                        },
                        c["name"].as_str().unwrap_or("?"),
                        c["url"].as_str().unwrap_or("?"),
                        channels.as_deref().unwrap_or("all"),
                    );
                }
            }
            ConnectionsAction::Pause { id } => println!("paused {id}"),
            ConnectionsAction::Resume { id } => println!("resumed {id}"),
            ConnectionsAction::Remove { id } => println!("removed {id}"),
            ConnectionsAction::Digest { id, .. } => {
                let c = answer;
                println!("{id}: digest {}", if c["digest"].is_null() { "off".to_string() } else { c["digest"].to_string() });
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// A client of a running gateway's admin API.
struct AdminClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl AdminClient {
    fn new(server: &str, token: &str) -> anyhow::Result<Self> {
        Ok(Self {
            base: server.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()?,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_string());
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        if !status.is_success() {
            bail!("{status}: {}", v["detail"].as_str().unwrap_or(&text));
        }
        Ok(v)
    }

    /// Every delivery that `GET /api/deliveries?{query}` lists, page after page.
    async fn all_deliveries(&self, query: &str) -> anyhow::Result<Vec<serde_json::Value>> {
        let mut all = Vec::new();
        let mut path = format!("/api/deliveries?{query}");
        loop {
            let mut page = self.call(reqwest::Method::GET, &path, None).await?;
            if let Some(rows) = page["deliveries"].as_array_mut() {
                all.append(rows);
            }
            match page["next"].as_str() {
                Some(n) => path = format!("/api/deliveries?{query}&after={n}"),
                None => return Ok(all),
            }
        }
    }

    /// Queues a dead letter again.
    async fn retry(&self, id: &str) -> anyhow::Result<()> {
        self.call(
            reqwest::Method::POST,
            &format!("/api/deliveries/{id}/retry"),
            None,
        )
        .await
        .map(drop)
    }
}

fn deliveries(args: &DeliveriesArgs) -> anyhow::Result<ExitCode> {
    let api = args.server.client()?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        match &args.action {
            DeliveriesAction::List { state, connection } => {
                let query = deliveries_query(state.as_deref(), connection.as_deref());
                for d in api.all_deliveries(&query).await? {
                    println!(
                        "{}  {:9}  {}  {}  attempts={}  {}",
                        d["id"].as_str().unwrap_or("?"),
                        d["state"].as_str().unwrap_or("?"),
                        d["connection"].as_str().unwrap_or("?"),
                        d["rule"].as_str().unwrap_or("?"),
                        d["attempts"],
                        d["reason"]
                            .as_str()
                            .or(d["last_error"].as_str())
                            .unwrap_or(""),
                    );
                }
            }
            DeliveriesAction::Show { id } => {
                let d = api
                    .call(reqwest::Method::GET, &format!("/api/deliveries/{id}"), None)
                    .await?;
                println!("{}", serde_json::to_string_pretty(&d)?);
            }
            DeliveriesAction::Retry { id: Some(id), .. } => {
                api.retry(id).await?;
                println!("queued {id} again");
            }
            DeliveriesAction::Retry {
                id: None,
                all: true,
                connection,
            } => {
                let query = deliveries_query(Some("dead"), connection.as_deref());
                let ids: Vec<String> = api
                    .all_deliveries(&query)
                    .await?
                    .iter()
                    .filter_map(|d| d["id"].as_str().map(str::to_string))
                    .collect();
                // One by one, so a long retry shows its progress.
                let bar = indicatif::ProgressBar::new(ids.len() as u64);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{bar:40} {pos}/{len} dead letters queued again ({eta})",
                    )
                    .expect("a valid template"),
                );
                for id in &ids {
                    api.retry(id).await?;
                    bar.inc(1);
                }
                bar.finish();
                println!(
                    "queued {} again",
                    crate::render::plural_count(ids.len(), "dead letter")
                );
            }
            DeliveriesAction::Retry {
                id: None,
                all: false,
                ..
            } => bail!("give a delivery id, or --all"),
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The query of `GET /api/deliveries` for a state and a connection, as a whole page.
fn deliveries_query(state: Option<&str>, connection: Option<&str>) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("limit", "1000");
    if let Some(s) = state {
        q.append_pair("state", s);
    }
    if let Some(c) = connection {
        q.append_pair("connection", c);
    }
    q.finish()
}

fn snippet(args: &ConfigArg) -> anyhow::Result<ExitCode> {
    let config = match Config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(p) => return Ok(print_problems(p)),
    };
    let emulator = args.config.is_none() || config.emulator();
    let Some(app_id) = config.connect.app_id_or_dev(emulator) else {
        bail!("connect.app_id is not set in the config");
    };
    let base = config.public_url();
    let connect = config.connect.url.clone().unwrap_or_else(|| {
        if emulator {
            format!("{base}/emulator/connectors/Connect")
        } else {
            "https://outlook.office.com/connectors/Connect".to_string()
        }
    });
    let mut url = url::Url::parse(&connect).context("connect.url is not a URL")?;
    url.query_pairs_mut()
        .append_pair("state", "STATE")
        .append_pair("app_id", &app_id)
        .append_pair("callback_url", &format!("{base}/connect/callback"));
    let href = url.as_str().replace("state=STATE", "state={state}");
    println!("<!-- Connect to Office 365: replace {{state}} with a fresh, unguessable value you keep for this user. -->");
    println!(
        "<a href=\"{}\"><img src=\"{base}/assets/connect-button.svg\" alt=\"Connect to Office 365\"></a>",
        crate::html::esc(&href)
    );
    Ok(ExitCode::SUCCESS)
}

fn parse_headers(raw: &[String]) -> anyhow::Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    for h in raw {
        let (name, value) = h
            .split_once(':')
            .with_context(|| format!("header {h:?} is not `Name: value`"))?;
        headers.append(
            HeaderName::from_bytes(name.trim().as_bytes())
                .with_context(|| format!("{name:?} is not a header name"))?,
            HeaderValue::from_str(value.trim())
                .with_context(|| format!("{value:?} is not a header value"))?,
        );
    }
    Ok(headers)
}
