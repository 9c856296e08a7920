//! `GET /metrics`, in the Prometheus text format: what came in, what was carded, what was
//! delivered and how fast, what is waiting.
//!
//! Counters: `cardwire_events_total{source,outcome,reason}`,
//! `cardwire_cards_total{rule,result}` (rendered / invalid / fallback: a template failed and a
//! plain card went instead),
//! `cardwire_deliveries_total{connection,outcome}` (delivered / retry / throttled / failed /
//! gone), `cardwire_retries_total{connection}`, `cardwire_dead_letters_total`,
//! `cardwire_rule_reloads_total{result}`, `cardwire_deduped_total{rule}`,
//! `cardwire_folded_total{rule}`. Gauges, read at scrape time:
//! `cardwire_queue_depth{state}` (queued, retrying, dead, delivered). Histogram:
//! `cardwire_delivery_latency_seconds`.

use std::sync::Mutex;
use std::time::Duration;

use axum::extract::{FromRef, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::ids::ConnectionId;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    source: String,
    outcome: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CardLabels {
    rule: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    connection: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabels {
    connection: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

/// Every metric cardwire keeps.
pub struct Metrics {
    registry: Mutex<Registry>,
    events: Family<EventLabels, Counter>,
    cards: Family<CardLabels, Counter>,
    deliveries: Family<DeliveryLabels, Counter>,
    retries: Family<ConnectionLabels, Counter>,
    dead: Counter,
    reloads: Family<ResultLabels, Counter>,
    deduped: Family<RuleLabels, Counter>,
    folded: Family<RuleLabels, Counter>,
    depth: Family<StateLabels, Gauge>,
    latency: Histogram,
    store_errors: Family<KindLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Self {
            registry: Mutex::new(Registry::with_prefix("cardwire")),
            events: Family::default(),
            cards: Family::default(),
            deliveries: Family::default(),
            retries: Family::default(),
            dead: Counter::default(),
            reloads: Family::default(),
            deduped: Family::default(),
            folded: Family::default(),
            depth: Family::default(),
            latency: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            store_errors: Family::default(),
        };
        {
            let mut r = m.registry.lock().expect("registry lock");
            r.register(
                "events",
                "Upstream events by source, outcome and reason",
                m.events.clone(),
            );
            r.register(
                "cards",
                "Cards rendered or refused as invalid, by rule",
                m.cards.clone(),
            );
            r.register(
                "deliveries",
                "Delivery attempts by connection and outcome",
                m.deliveries.clone(),
            );
            r.register(
                "retries",
                "Attempts that will be retried, by connection",
                m.retries.clone(),
            );
            r.register(
                "dead_letters",
                "Cards moved to the dead letters",
                m.dead.clone(),
            );
            r.register(
                "rule_reloads",
                "Reloads of rules and templates, by result",
                m.reloads.clone(),
            );
            r.register(
                "deduped",
                "Repeats dropped by a rule's dedup",
                m.deduped.clone(),
            );
            r.register(
                "folded",
                "Cards folded into summaries, by rule",
                m.folded.clone(),
            );
            r.register("queue_depth", "Cards by state", m.depth.clone());
            r.register(
                "store_errors",
                "Store operations that failed, by kind (storage_full, unavailable, lease_lost, decode, io)",
                m.store_errors.clone(),
            );
            r.register(
                "delivery_latency_seconds",
                "Time of one delivery attempt",
                m.latency.clone(),
            );
        }
        m
    }
}

impl Metrics {
    /// An upstream request: `accepted`, or `rejected` with the error code.
    pub fn event(&self, source: &str, outcome: &str, reason: &str) {
        self.events
            .get_or_create(&EventLabels {
                source: source.into(),
                outcome: outcome.into(),
                reason: reason.into(),
            })
            .inc();
    }

    /// A card rendered (`ok`) or refused.
    pub fn card(&self, rule: &str, ok: bool) {
        self.card_result(rule, if ok { "rendered" } else { "invalid" });
    }

    /// A card of a rule whose template failed, sent as a fallback card built without it.
    pub fn card_fallback(&self, rule: &str) {
        self.card_result(rule, "fallback");
    }

    fn card_result(&self, rule: &str, result: &str) {
        self.cards
            .get_or_create(&CardLabels {
                rule: rule.into(),
                result: result.into(),
            })
            .inc();
    }

    /// A delivery attempt and how long it took.
    /// `outcome` is the label: delivered, retry, throttled, failed or gone.
    pub fn delivery(&self, con: &ConnectionId, outcome: &str, took: Duration) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                connection: con.to_string(),
                outcome: outcome.into(),
            })
            .inc();
        self.latency.observe(took.as_secs_f64());
    }

    /// An attempt that will be retried.
    pub fn retry(&self, con: &ConnectionId) {
        self.retries
            .get_or_create(&ConnectionLabels {
                connection: con.to_string(),
            })
            .inc();
    }

    /// Cards moved to the dead letters.
    pub fn dead_letters(&self, n: usize) {
        self.dead.inc_by(n as u64);
    }

    /// A repeat dropped by dedup.
    pub fn deduped(&self, rule: &str) {
        self.deduped
            .get_or_create(&RuleLabels { rule: rule.into() })
            .inc();
    }

    /// A card folded into a summary.
    pub fn folded(&self, rule: &str) {
        self.folded
            .get_or_create(&RuleLabels { rule: rule.into() })
            .inc();
    }

    /// A store operation that failed, by [`crate::store::StoreError::kind`].
    pub fn store_error(&self, kind: &str) {
        self.store_errors
            .get_or_create(&KindLabels { kind: kind.into() })
            .inc();
    }

    /// A reload of rules and templates.
    pub fn reload(&self, ok: bool) {
        let result = if ok { "applied" } else { "rejected" };
        self.reloads
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
    }

    /// The text format, with the queue depths given.
    pub fn encode(&self, depths: &[(&str, usize)]) -> String {
        for (state, n) in depths {
            self.depth
                .get_or_create(&StateLabels {
                    state: (*state).into(),
                })
                .set(*n as i64);
        }
        let mut out = String::new();
        let r = self.registry.lock().expect("registry lock");
        prometheus_client::encoding::text::encode(&mut out, &r)
            .expect("writing to a String cannot fail");
        out
    }
}

/// What `GET /metrics` reads: the metrics and the store's card counts.
#[derive(Clone)]
pub struct Scrape {
    /// The metrics.
    pub metrics: std::sync::Arc<Metrics>,
    /// The store (card counts).
    pub store: crate::store::SharedStore,
}

/// The route `/metrics`.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Scrape: FromRef<S>,
{
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(app): State<Scrape>) -> impl IntoResponse {
    let c = app.store.counts();
    let body = app.metrics.encode(&[
        ("queued", c.queued),
        ("retrying", c.retrying),
        ("dead", c.dead),
        ("delivered", c.delivered),
    ]);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}
