//! The connections' admin API: `GET/POST /api/connections`, `GET/PATCH/DELETE
//! /api/connections/{id}`, and the change every surface (API, CLI, pages) makes to one.
//!
//! In: requests with the admin token. Out: connections in the store and its cache, masked
//! URLs in answers. Guarantees: a URL is checked against `targets` before it is stored; a
//! connection that resumes has its worker woken.

use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::connections::{mask_url, Stats};
use crate::deliver::api::Registry;
use crate::error::ApiError;
use crate::gate::{Admin, JsonBody};
use crate::ids::ConnectionId;
use crate::render::CardKind;
use crate::store::Connection;

/// `POST /api/connections`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionIn {
    /// A name for people.
    pub name: String,
    /// The webhook URL.
    pub url: String,
    /// `teams` (MessageCard), `workflow` (Adaptive Card), `slack`, `discord`, `google_chat`
    /// or `mattermost`; when absent, the URL's host says ([`crate::connections::kind_of_url`]).
    #[serde(default)]
    pub kind: Option<CardKind>,
    /// The channels it receives; absent or empty means all.
    #[serde(default)]
    pub channels: Vec<String>,
    /// Mattermost: a bot's token and the id of the channel it posts in, so that cards with a
    /// key are edited and threaded through the server's API.
    #[serde(default)]
    pub bot: Option<BotIn>,
}

/// A Mattermost bot as the API takes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BotIn {
    /// The bot's access token.
    pub token: String,
    /// The channel's id.
    pub channel: String,
}

/// The bot of a Mattermost connection (`kind`, webhook `url`), checked.
pub fn bot_for(kind: CardKind, url: &str, bot: &BotIn) -> Result<crate::store::Bot, ApiError> {
    if kind != CardKind::Mattermost {
        return Err(ApiError::bad_request(
            "invalid_connection",
            "`bot` is for Mattermost connections (Slack's comes from Add to Slack)",
        ));
    }
    crate::connections::mattermost_bot(url, &bot.token, &bot.channel)
        .map_err(|e| ApiError::bad_request("invalid_connection", format!("`bot`: {e}")))
}

/// A connection as the API shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct ConnectionOut {
    /// Its id.
    pub id: ConnectionId,
    /// Its name.
    pub name: String,
    /// The URL, masked.
    pub url: String,
    /// The card kind.
    pub kind: CardKind,
    /// The channels it receives (empty: all).
    pub channels: Vec<String>,
    /// When it was created (Unix milliseconds).
    pub created_ms: u64,
    /// Whether it is paused.
    pub paused: bool,
    /// How it was made: `api`, `connect` (Office 365), `slack`, `discord` or `paste`.
    pub via: String,
    /// From the Office 365 callback: mail, groups or teams.
    pub app_type: Option<String>,
    /// From the Office 365 callback: the group's name.
    pub group_name: Option<String>,
    /// From Add to Slack / Discord: the channel (`#deploys`), as the platform named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// From Add to Slack / Discord: the channel's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<String>,
    /// From Add to Slack / Discord: the workspace's (`team.id`) or server's (`guild_id`) id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    /// From Add to Slack: the workspace's name; Discord: the webhook's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_name: Option<String>,
    /// From Add to Slack: where the webhook's settings live on Slack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration_url: Option<String>,
    /// The digest schedule, if any.
    pub digest: Option<serde_json::Value>,
    /// Its own limit, if any.
    pub limit: Option<String>,
    /// Discord: the webhook posts into a forum channel.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forum: bool,
    /// It carries a chat's bot token (Slack's from Add to Slack, Mattermost's given with it):
    /// cards with a key are edited and threaded through the chat's API. The token itself is
    /// never shown.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bot: bool,
    /// Cards not queued while it was paused (since the gateway started).
    pub skipped: u64,
    /// When a card was last delivered to it (Unix milliseconds).
    pub last_delivery_ms: Option<u64>,
    /// Why its URL is broken (404/410), if it is: nothing is sent until its dead letters are
    /// retried.
    pub broken: Option<String>,
}

impl ConnectionOut {
    /// A connection as the API shows it, with its counters.
    pub fn new(c: &Connection, stats: Stats) -> Self {
        Self {
            id: c.id.clone(),
            name: c.name.clone(),
            url: mask_url(&c.url),
            kind: c.kind,
            channels: c.channels.clone(),
            created_ms: c.created_ms,
            paused: c.paused,
            via: c.origin.via.clone(),
            app_type: c.origin.app_type.clone(),
            group_name: c.origin.group_name.clone(),
            channel: c.origin.channel.clone(),
            channel_id: c.origin.channel_id.clone(),
            team_id: c.origin.team_id.clone(),
            team_name: c.origin.team_name.clone(),
            configuration_url: c.origin.configuration_url.clone(),
            digest: c.digest.clone(),
            limit: c.limit.clone(),
            forum: c.forum,
            bot: c.bot.is_some(),
            skipped: stats.skipped,
            last_delivery_ms: stats.last_delivery_ms,
            broken: c.broken.clone(),
        }
    }
}

/// `PATCH /api/connections/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionPatch {
    /// Pause (true) or resume (false).
    #[serde(default)]
    pub paused: Option<bool>,
    /// The channels it receives (empty: all).
    #[serde(default)]
    pub channels: Option<Vec<String>>,
    /// The digest: `{"every": "1h"}`, `{"at": "09:00", "days": [...], "tz": "..."}`, or
    /// `null` for none (cards as they happen).
    #[serde(default, deserialize_with = "present")]
    pub digest: Option<serde_json::Value>,
    /// A limit for everything it receives (`count/period`, e.g. `20/1h`), or `null` for none.
    #[serde(default, deserialize_with = "present")]
    pub limit: Option<serde_json::Value>,
    /// Discord: whether the webhook posts into a forum channel (cards open and join threads).
    #[serde(default)]
    pub forum: Option<bool>,
    /// Mattermost: a bot (`{"token", "channel"}`), or `null` for none.
    #[serde(default, deserialize_with = "present")]
    pub bot: Option<serde_json::Value>,
}

/// A field that is present, even as `null` (which plain `Option` would read as absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    Ok(Some(serde_json::Value::deserialize(d)?))
}

/// The routes under /api/connections.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Registry: FromRef<S>,
    crate::gate::Gate: FromRef<S>,
{
    Router::new()
        .route(
            "/api/connections",
            get(list_connections).post(create_connection),
        )
        .route(
            "/api/connections/{id}",
            delete(delete_connection)
                .patch(patch_connection)
                .get(get_connection),
        )
}

async fn list_connections(_: Admin, State(app): State<Registry>) -> Json<Vec<ConnectionOut>> {
    Json(
        app.connections
            .all()
            .iter()
            .map(|c| ConnectionOut::new(c, app.connections.stats(&c.id)))
            .collect(),
    )
}

fn parse_id(id: &str) -> Result<ConnectionId, ApiError> {
    ConnectionId::parse(id)
        .ok_or_else(|| ApiError::not_found(format!("{id:?} is not a connection id (con_…)")))
}

async fn get_connection(
    _: Admin,
    State(app): State<Registry>,
    Path(id): Path<String>,
) -> Result<Json<ConnectionOut>, ApiError> {
    let id = parse_id(&id)?;
    let c = app
        .connections
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("no connection {id}")))?;
    Ok(Json(ConnectionOut::new(&c, app.connections.stats(&id))))
}

/// Pauses, resumes or re-channels a connection: the change every surface (API, CLI, page) makes.
pub async fn change_connection(
    app: &Registry,
    id: &ConnectionId,
    patch: ConnectionPatch,
) -> Result<Connection, ApiError> {
    if let Some(bad) = patch
        .channels
        .iter()
        .flatten()
        .find(|c| c.trim().is_empty())
    {
        return Err(ApiError::bad_request(
            "invalid_connection",
            format!("channel {bad:?} is empty"),
        ));
    }
    if let Some(d) = patch.digest.as_ref().filter(|d| !d.is_null()) {
        crate::noise::schedule::Schedule::parse(d)
            .map_err(|e| ApiError::bad_request("invalid_digest", e))?;
    }
    if patch.forum == Some(true) {
        let kind = app.connections.get(id).map(|c| c.kind);
        if kind.is_some_and(|k| k != CardKind::Discord) {
            return Err(ApiError::bad_request(
                "invalid_connection",
                "forum is for Discord connections (a webhook of a forum channel)",
            ));
        }
    }
    let bot = match &patch.bot {
        None => None,
        Some(serde_json::Value::Null) => Some(None),
        Some(v) => {
            let input: BotIn = serde_json::from_value(v.clone())
                .map_err(|e| ApiError::bad_request("invalid_connection", format!("`bot`: {e}")))?;
            let c = app
                .connections
                .get(id)
                .ok_or_else(|| ApiError::not_found(format!("no connection {id}")))?;
            Some(Some(bot_for(c.kind, &c.url, &input)?))
        }
    };
    let digest_changed = patch.digest.is_some();
    let limit = match &patch.limit {
        None => None,
        Some(serde_json::Value::Null) => Some(None),
        Some(serde_json::Value::String(r)) => {
            crate::units::parse_rate(r).map_err(|e| ApiError::bad_request("invalid_limit", e))?;
            Some(Some(r.clone()))
        }
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_limit",
                format!("limit is a rate such as \"20/1h\", or null; not {other}"),
            ))
        }
    };
    let changed = app
        .connections
        .update(id, |c| {
            if let Some(p) = patch.paused {
                c.paused = p;
            }
            if let Some(ch) = patch.channels {
                c.channels = ch;
            }
            if let Some(d) = patch.digest {
                c.digest = (!d.is_null()).then_some(d);
            }
            if let Some(l) = limit {
                c.limit = l;
            }
            if let Some(f) = patch.forum {
                c.forum = f;
            }
            if let Some(b) = bot {
                c.bot = b;
            }
        })
        .map_err(|e| ApiError::internal(&e))?
        .ok_or_else(|| ApiError::not_found(format!("no connection {id}")))?;
    if digest_changed {
        // The new schedule starts from now.
        app.store
            .clear_digest_due(id)
            .map_err(|e| ApiError::internal(&e))?;
    }
    app.store
        .commit()
        .await
        .map_err(|e| ApiError::internal(&e))?;
    if !changed.paused {
        // Cards held while it was paused go out now.
        app.deliverer.wake(id);
    }
    tracing::info!(connection = %id, paused = changed.paused, channels = ?changed.channels, "connection changed");
    Ok(changed)
}

async fn patch_connection(
    _: Admin,
    State(app): State<Registry>,
    Path(id): Path<String>,
    JsonBody(patch): JsonBody<ConnectionPatch>,
) -> Result<Json<ConnectionOut>, ApiError> {
    let id = parse_id(&id)?;
    let c = change_connection(&app, &id, patch).await?;
    Ok(Json(ConnectionOut::new(&c, app.connections.stats(&id))))
}

async fn create_connection(
    _: Admin,
    State(app): State<Registry>,
    JsonBody(input): JsonBody<ConnectionIn>,
) -> Result<impl IntoResponse, ApiError> {
    if input.name.trim().is_empty() {
        return Err(ApiError::bad_request(
            "invalid_connection",
            "`name` is empty",
        ));
    }
    if let Some(bad) = input.channels.iter().find(|c| c.trim().is_empty()) {
        return Err(ApiError::bad_request(
            "invalid_connection",
            format!("channel {bad:?} is empty"),
        ));
    }
    let url = app
        .policy
        .check(&input.url)
        .map_err(|e| ApiError::bad_request("target_not_allowed", e.to_string()))?;
    let kind = input.kind.or_else(|| crate::connections::kind_of_url(&url)).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_connection",
            "`kind` is needed: the URL's host does not say which chat it is (teams, workflow, slack, discord, google_chat, mattermost)",
        )
    })?;
    app.policy
        .check_kind(url.as_str(), kind)
        .map_err(|e| ApiError::bad_request("target_not_allowed", e.to_string()))?;
    let bot = input
        .bot
        .as_ref()
        .map(|b| bot_for(kind, url.as_str(), b))
        .transpose()?;
    let conn = Connection {
        bot,
        ..Connection::new(
            input.name.trim(),
            url.as_str(),
            kind,
            input.channels,
            crate::store::ConnectionOrigin::via("api"),
        )
    };
    app.connections
        .put(conn.clone())
        .map_err(|e| ApiError::internal(&e))?;
    app.store
        .commit()
        .await
        .map_err(|e| ApiError::internal(&e))?;
    tracing::info!(connection = %conn.id, name = %conn.name, kind = conn.kind.as_str(), url = %mask_url(&conn.url), "connection added");
    Ok((
        StatusCode::CREATED,
        Json(ConnectionOut::new(&conn, Default::default())),
    ))
}

async fn delete_connection(
    _: Admin,
    State(app): State<Registry>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = ConnectionId::parse(&id)
        .ok_or_else(|| ApiError::not_found(format!("{id:?} is not a connection id (con_…)")))?;
    if !app
        .connections
        .remove(&id)
        .map_err(|e| ApiError::internal(&e))?
    {
        return Err(ApiError::not_found(format!("no connection {id}")));
    }
    app.store
        .commit()
        .await
        .map_err(|e| ApiError::internal(&e))?;
    tracing::info!(connection = %id, "connection removed");
    Ok(StatusCode::NO_CONTENT)
}
