//! cardwire: upstream webhooks in, chat cards out.
//!
//! # Layout
//!
//! The pipeline, in the order data flows (one module per stage):
//!
//! ```text
//! POST /hooks/{source}
//!   ingest   read the body (size limit, floor rate: ingest::floor; NDJSON line by line:
//!            ingest::lines), check its depth, verify (HMAC / token), parse once -> Event,
//!            building only the members that rules and templates read (see needs)
//!   stage    the event through the steps below, before the commit (stage::stage):
//!   rules      which rules take the event (RuleSet::matches)
//!   render     each matching rule's template -> card JSON per connection kind: Teams,
//!              Workflows, Slack, Discord, Google Chat, Mattermost, one portable template
//!              for all (Renderer::render; a fallback card when the template fails)
//!   noise      dedup, limits that fold into summaries, Teams' caps, digests (Noise::decide)
//!   store      the event's outbox records and its delivery-id claim, all or nothing,
//!              group-committed to sled (or PostgreSQL) -> 202
//!   deliver  per-connection FIFO workers POST the cards (paced, SSRF-guarded), retry on a
//!            persisted schedule, pause on 429, bury what fails for good, keep what was delivered
//!            (on sled in segment files pruned whole: store::sled::history); a card with a key
//!            edits or replies to its key's earlier message where the chat allows, through a
//!            stored message reference (deliver::updates, store::refs); they run on a thread of
//!            their own, so that delivery keeps pace with ingest
//! ```
//!
//! The journal of accepted work *is* the outbox: an event is rendered before the 202 and only
//! what later stages need (one record per card and connection) is persisted, so the hot path
//! writes each card once and flushes once per batch of concurrent requests (group commit),
//! never once per event. What is delivered is deleted.
//!
//! Around the pipeline:
//! - [`config`]: the YAML config file, `${VAR}` references, checks with `file:line:col`.
//! - [`yaml`]: the YAML reader shared by config and rules, with a position for every node.
//! - [`units`]: sizes, durations and rates as config, rules and the API write them.
//! - [`pipeline`]: rules and templates loaded together from disk or from the binary.
//! - [`needs`]: what rules and templates read of each source's payloads, and the parser that
//!   builds only that.
//! - [`reload`]: hot reload on file changes or SIGHUP; `GET /api/rules`.
//! - [`samples`]: the vendored real payloads, built in, that `check` renders every template with.
//! - [`sources`]: the GitHub Apps made for sources, whose webhook secrets verify them.
//! - [`connections`]: the connections' cache (webhook URLs in memory, every change through
//!   the store first), their counters, URL masking.
//! - [`connect`]: the connections' admin API ([`connect::api`]), the Connect to Office 365
//!   flow, Add to Slack and Add to Discord ([`connect::oauth`]), and the emulators of all
//!   three and of a Mattermost server (their channels keep messages with their edits and
//!   threads: [`connect::inboxes`]), and of GitHub's side of a GitHub App made from a manifest
//!   ([`connect::github_emulator`]).
//! - [`gate`]: the admin token check and the pages' sessions shared by everything under /api,
//!   and the JSON body reader of the API's handlers.
//! - [`html`]: the pages' one layout, HTML escaping, cookies and tokens, the built-in assets.
//! - [`admin`]: the /connections pages, /sources (a GitHub App made from a manifest for a
//!   source: [`admin::sources`]), the home page, /docs (README and the reference pages
//!   of `src/docs/`, built in) and the 404 page for browsers.
//! - [`metrics`]: `GET /metrics` in the Prometheus text format.
//! - [`telemetry`]: OpenTelemetry traces over OTLP (off by default): one trace per event, from
//!   the ingest request through staging to each delivery attempt, its context stored with
//!   each card.
//! - [`playground`]: the /playground page and its API: render, preview, send, recent events,
//!   the live tail.
//! - [`live`]: the live tail's broadcast of events, matches, queued cards and outcomes.
//! - [`app`]: shared state, the router, the accept loop (`limits`: header timeout, connection
//!   cap), background tasks (among them the store's watchdog, [`app::Server::broken`]) and
//!   graceful shutdown. Only `app`
//!   names the whole state: each group of handlers takes its part (a sub-state such as
//!   [`stage::Stager`] or [`deliver::api::Registry`], built with axum's `FromRef`).
//!
//! Layers, lowest first (a file imports only from its own layer or those below, and no file
//! imports itself through others, file by file and folder by folder: `tests/it/layers.rs`):
//! foundations (ids, error, units, yaml, live, needs, html); event, render; config, rules,
//! samples, store; pipeline, noise, metrics, telemetry, connections, sources, connect's OAuth clients; stage,
//! deliver; gate, ingest, reload; the admin API and pages, the connect flows and their
//! emulators, the playground; app, cli.
//! - [`cli`]: `serve` (which opens the store again when sled's log failed on a full disk),
//!   `check` and `render`.
//! - [`alloc`]: freed memory handed back to the system when the gateway goes quiet.
//! - [`store`]: the store's contract (one trait per kind of record, [`store::Backend`]) and
//!   what both engines share; [`store::sled`]: the embedded engine, the default.
//! - [`store::pg`]: the same store on PostgreSQL (`store.postgres`), with its migrations,
//!   shared by several instances: delivery leases per connection and wake-ups between
//!   instances ([`store::pg::leases`]), limits kept in the database, and the import of a sled
//!   folder ([`store::pg::import`], `cardwire migrate --from-sled`).

pub mod admin;
pub mod alloc;
pub mod app;
pub mod cli;
pub mod config;
pub mod connect;
pub mod connections;
pub mod deliver;
pub mod error;
pub mod event;
pub mod gate;
pub mod html;
pub mod ids;
pub mod ingest;
pub mod live;
pub mod metrics;
pub mod needs;
pub mod noise;
pub mod pipeline;
pub mod playground;
pub mod reload;
pub mod render;
pub mod rules;
pub mod samples;
pub mod sources;
pub mod stage;
pub mod store;
pub mod telemetry;
pub mod units;
pub mod yaml;

/// The unit tests run on jemalloc too, as the binary does ([`alloc`] is tested against it).
#[cfg(test)]
#[global_allocator]
static TEST_ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
