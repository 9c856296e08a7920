//! `GET /api/deliveries`: what is queued and what was given up on (dead letters), so a card
//! that never arrived can be found with the reason.

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::admin::Admin;
use crate::app::AppState;
use crate::error::ApiError;
use crate::store::OutboxRecord;

/// The query of `GET /api/deliveries`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// `queued` or `dead`.
    #[serde(default)]
    pub state: Option<String>,
    /// Only this connection's.
    #[serde(default)]
    pub connection: Option<String>,
}

/// The routes under /api/deliveries.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/deliveries", get(list_deliveries))
}

fn summary(r: &OutboxRecord, state: &str) -> Value {
    json!({
        "id": r.id,
        "state": state,
        "event": r.event,
        "connection": r.connection,
        "rule": r.rule,
        "kind": r.kind,
        "attempts": r.attempts,
        "created_ms": r.created_ms,
        "last_error": r.last_error,
    })
}

async fn list_deliveries(
    _: Admin,
    State(app): State<AppState>,
    query: Result<Query<DeliveriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let wanted = |r: &OutboxRecord| {
        q.connection
            .as_deref()
            .is_none_or(|c| r.connection.as_str() == c)
    };
    let mut out = Vec::new();
    match q.state.as_deref() {
        None | Some("queued") | Some("dead") => {}
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("state {other:?} is not one of queued, dead"),
            ))
        }
    }
    if matches!(q.state.as_deref(), None | Some("queued")) {
        let queued = app
            .store
            .queued_records()
            .map_err(|e| ApiError::internal(&e))?;
        out.extend(
            queued
                .iter()
                .filter(|r| wanted(r))
                .map(|r| summary(r, "queued")),
        );
    }
    if matches!(q.state.as_deref(), None | Some("dead")) {
        let dead = app
            .store
            .dead_letters()
            .map_err(|e| ApiError::internal(&e))?;
        out.extend(dead.iter().filter(|d| wanted(&d.record)).map(|d| {
            let mut v = summary(&d.record, "dead");
            v["reason"] = json!(d.reason);
            v["dead_ms"] = json!(d.dead_ms);
            v
        }));
    }
    Ok(Json(json!({"deliveries": out})))
}
