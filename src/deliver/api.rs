//! The deliveries API: what is queued, retrying, dead or delivered, one delivery in full, and
//! retrying dead letters (one, or all that match a filter).
//!
//! - `GET /api/deliveries?state=queued|retrying|dead|delivered&connection=con_…&limit=100&after=dlv_…`
//!   — newest last, paged by id (`next` is the `after` of the next page);
//! - `GET /api/deliveries/{id}` — with every attempt (time, status, excerpt) and, for a dead
//!   letter, why;
//! - `POST /api/deliveries/{id}/retry` and `POST /api/deliveries/retry`
//!   `{"connection"?: "con_…"}` — dead letters back to the outbox; a broken connection that is
//!   retried counts as fixed.

use axum::extract::{FromRef, Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use std::sync::Arc;

use crate::connections::Connections;
use crate::error::ApiError;
use crate::gate::{Admin, JsonBody};
use crate::ids::{ConnectionId, DeliveryId};
use crate::store::OutboxRecord;

/// The states a delivery can be in.
pub const STATES: &[&str] = &["queued", "retrying", "dead", "delivered"];

/// The query of `GET /api/deliveries`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// `queued`, `retrying`, `dead` or `delivered`; all when absent.
    #[serde(default)]
    pub state: Option<String>,
    /// Only this connection's.
    #[serde(default)]
    pub connection: Option<String>,
    /// At most this many (default 100, at most 1000).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Only those after this id (the `next` of the previous page).
    #[serde(default)]
    pub after: Option<String>,
}

/// What the connections' and deliveries' admin API (and the pages' changes) reach.
#[derive(Clone)]
pub struct Registry {
    /// Durable state.
    pub store: crate::store::SharedStore,
    /// The connections, cached.
    pub connections: Arc<Connections>,
    /// The delivery workers (woken when a connection resumes or a card is retried).
    pub deliverer: Arc<crate::deliver::Deliverer>,
    /// Which webhook URLs are acceptable.
    pub policy: Arc<crate::deliver::policy::TargetPolicy>,
}

/// The routes under /api/deliveries.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Registry: FromRef<S>,
    crate::gate::Gate: FromRef<S>,
{
    Router::new()
        .route("/api/deliveries", get(list_deliveries))
        .route("/api/deliveries/retry", post(retry_matching))
        .route("/api/deliveries/{id}", get(get_delivery))
        .route("/api/deliveries/{id}/retry", post(retry_one))
}

fn summary(r: &OutboxRecord, state: &str) -> Value {
    let mut v = json!({
        "id": r.id,
        "state": state,
        "event": r.event,
        "connection": r.connection,
        "rule": r.rule,
        "kind": r.kind,
        "attempts": r.attempts,
        "created_ms": r.created_ms,
        "not_before_ms": r.not_before_ms,
        "last_error": r.last_error,
    });
    if let Some(f) = &r.fallback {
        v["fallback"] = json!(f);
    }
    if let Some(k) = &r.key {
        v["key"] = json!(k);
        v["update"] = json!(r.update.unwrap_or_default());
    }
    v
}

fn dead_summary(d: &crate::store::DeadLetter) -> Value {
    let mut v = summary(&d.record, "dead");
    v["reason"] = json!(d.reason);
    v["dead_ms"] = json!(d.dead_ms);
    v
}

fn delivered_summary(d: &crate::store::Delivered) -> Value {
    let mut v = summary(&d.record, "delivered");
    v["delivered_ms"] = json!(d.delivered_ms);
    v
}

fn queued_state(r: &OutboxRecord) -> &'static str {
    if r.attempts > 0 {
        "retrying"
    } else {
        "queued"
    }
}

/// One page of deliveries in id order: the queued cards (the outbox is bounded by
/// `delivery.max_queued`), and from the dead and delivered records, which are keyed by id, only
/// as many as the page can show.
fn page(app: &Registry, q: &DeliveriesQuery, limit: usize) -> Result<Vec<Value>, ApiError> {
    let internal = |e: crate::store::StoreError| ApiError::internal(&e);
    let want = |s: &str| q.state.as_deref().is_none_or(|w| w == s);
    let after = q.after.as_deref();
    let keep = |r: &OutboxRecord| {
        q.connection
            .as_deref()
            .is_none_or(|c| r.connection.as_str() == c)
            && after.is_none_or(|a| r.id.as_str() > a)
    };
    let mut rows = Vec::new();
    if want("queued") || want("retrying") {
        for r in app.store.queued_records().map_err(internal)? {
            if keep(&r) && want(queued_state(&r)) {
                rows.push(summary(&r, queued_state(&r)));
            }
        }
    }
    // One more than the page, to know whether another follows.
    if want("dead") {
        let dead = app
            .store
            .dead_page(after, limit + 1, &keep)
            .map_err(internal)?;
        rows.extend(dead.iter().map(dead_summary));
    }
    if want("delivered") {
        let delivered = app
            .store
            .delivered_page(after, limit + 1, &keep)
            .map_err(internal)?;
        rows.extend(delivered.iter().map(delivered_summary));
    }
    rows.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    Ok(rows)
}

async fn list_deliveries(
    _: Admin,
    State(app): State<Registry>,
    query: Result<Query<DeliveriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    if let Some(s) = q.state.as_deref().filter(|s| !STATES.contains(s)) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("state {s:?} is not one of {}", STATES.join(", ")),
        ));
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let mut rows = page(&app, &q, limit)?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = if more {
        rows.last().map(|v| v["id"].clone())
    } else {
        None
    };
    Ok(Json(json!({"deliveries": rows, "next": next})))
}

async fn get_delivery(
    _: Admin,
    State(app): State<Registry>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let internal = |e: crate::store::StoreError| ApiError::internal(&e);
    // The dead letters and delivered records by id, then the outbox (a walk). Every move
    // writes where a card goes before the card leaves where it was, so a card that moved out of
    // the outbox during the walk is in the dead letters or delivered records by now: they are
    // looked at once more before the answer is 404.
    let terminal = || -> Result<Option<(Value, OutboxRecord)>, ApiError> {
        Ok(
            if let Some(d) = app.store.dead_letter(&id).map_err(internal)? {
                Some((dead_summary(&d), d.record))
            } else {
                app.store
                    .delivered_record(&id)
                    .map_err(internal)?
                    .map(|d| (delivered_summary(&d), d.record))
            },
        )
    };
    let found = match terminal()? {
        Some(f) => Some(f),
        None => match app.store.queued_record(&id).map_err(internal)? {
            Some(r) => Some((summary(&r, queued_state(&r)), r)),
            None => terminal()?,
        },
    };
    let (mut summary, record) = if let Some(f) = found {
        f
    } else {
        return Err(ApiError::not_found(format!("no delivery {id}")));
    };
    summary["attempt_log"] = json!(record.attempt_log);
    summary["body_bytes"] = json!(record.body.len());
    Ok(Json(summary))
}

/// Puts dead letters back in the outbox, un-breaks their connections and wakes them.
async fn revive(app: &Registry, ids: Vec<DeliveryId>) -> Result<usize, ApiError> {
    let cons = app.store.revive(&ids).map_err(|e| ApiError::internal(&e))?;
    for con in &cons {
        app.connections
            .update(con, |c| c.broken = None)
            .map_err(|e| ApiError::internal(&e))?;
    }
    app.store
        .commit()
        .await
        .map_err(|e| ApiError::internal(&e))?;
    for con in &cons {
        app.deliverer.wake(con);
    }
    tracing::info!(
        cards = ids.len(),
        connections = cons.len(),
        "dead letters queued again"
    );
    Ok(ids.len())
}

async fn retry_one(
    _: Admin,
    State(app): State<Registry>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = DeliveryId::parse(&id)
        .ok_or_else(|| ApiError::not_found(format!("{id:?} is not a delivery id (dlv_…)")))?;
    let dead = app
        .store
        .dead_letter(id.as_str())
        .map_err(|e| ApiError::internal(&e))?;
    if dead.is_none() {
        return Err(ApiError::not_found(format!("{id} is not a dead letter")));
    }
    revive(&app, vec![id.clone()]).await?;
    Ok(Json(json!({"retried": [id]})))
}

/// `POST /api/deliveries/retry`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryFilter {
    /// Only this connection's dead letters.
    #[serde(default)]
    pub connection: Option<String>,
}

async fn retry_matching(
    _: Admin,
    State(app): State<Registry>,
    JsonBody(filter): JsonBody<RetryFilter>,
) -> Result<Json<Value>, ApiError> {
    let con = match &filter.connection {
        Some(c) => Some(ConnectionId::parse(c).ok_or_else(|| {
            ApiError::bad_request("invalid_body", format!("{c:?} is not a connection id"))
        })?),
        None => None,
    };
    let ids: Vec<DeliveryId> = app
        .store
        .dead_letters()
        .map_err(|e| ApiError::internal(&e))?
        .into_iter()
        .filter(|d| con.as_ref().is_none_or(|c| &d.record.connection == c))
        .map(|d| d.record.id)
        .collect();
    let n = revive(&app, ids).await?;
    Ok(Json(json!({"retried": n})))
}
