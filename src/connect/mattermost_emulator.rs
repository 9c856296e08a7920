//! A local stand-in for a Mattermost server (`connect.emulator: true`; on by default without a
//! config file): the incoming webhooks and the posts API a bot uses, so that a pasted
//! Mattermost connection, with or without a bot, runs without a server.
//!
//! In: cards POSTed to its webhooks; a bot's posts and patches. Out: the server's answers,
//! and each channel's inbox. Guarantees: it answers as Mattermost's REST API v4 documents:
//!
//! - `GET /emulator/mattermost` is the System Console's view of it: each channel's incoming
//!   webhook URL and id, and the bot's access token, to paste on /connect.
//! - `POST /emulator/mattermost/hooks/{key}` answers `200 ok`, `400` (`Unable to parse
//!   incoming data`, or no text and no attachment) or `404` (an unknown webhook).
//! - With `Authorization: Bearer <the bot's token>`: `POST /emulator/mattermost/api/v4/posts`
//!   (`channel_id`, `message`, `props.attachments`, `root_id` for a reply) answers `201` and the
//!   post; `PUT /emulator/mattermost/api/v4/posts/{id}/patch` answers `200` and the post, `404`
//!   when there is none; `DELETE /emulator/mattermost/api/v4/posts/{id}` deletes it, as a
//!   person may. A missing or revoked token is `401`, a channel the bot is not in `403`, a
//!   reply to a post that is gone `400` (`api.post.create_post.root_id.app_error`).
//! - `GET /emulator/mattermost/api/v4/channels/{id}/posts` lists a channel's posts
//!   (`{"order", "posts"}`), props included.
//! - `POST /emulator/mattermost/bot/revoke` revokes the bot's token, as an admin does in the
//!   System Console.
//! - `GET /emulator/mattermost/inbox/{channel}` shows what a channel received (as the Slack and
//!   Discord inboxes do, [`super::inboxes`]).
//!
//! A webhook's key and the bot's token are fixed, so that they work across restarts.

use axum::extract::{FromRef, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post, put};
use axum::Router;
use serde_json::{json, Value};

use super::chat_emulator::ChatEmulator;
use super::inboxes::Inboxes;
use crate::html::{esc, page};

/// The emulated channels: (id, name, its incoming webhook's key). Ids and keys have
/// Mattermost's shape (26 lower-case letters and digits).
pub const CHANNELS: &[(&str, &str, &str)] = &[
    (
        "4yqrg8o1h7dm5f3k9b2n6c0e1p",
        "deploys",
        "emuhookdeploys0000000000aa",
    ),
    (
        "9kd3m1x7q5w2e8r4t6y0u1i3oa",
        "alerts",
        "emuhookalerts00000000000bb",
    ),
];

/// The emulated bot's access token.
pub const BOT_TOKEN: &str = "emubottoken000000000000000";

/// The prefix of the emulator's webhook URLs (accepted as targets while it is on).
pub fn hook_prefix(public_url: &str) -> String {
    format!("{public_url}/emulator/mattermost/hooks/")
}

/// The routes under /emulator/mattermost.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    ChatEmulator: FromRef<S>,
{
    Router::new()
        .route("/emulator/mattermost", get(console))
        .route("/emulator/mattermost/hooks/{key}", post(hook))
        .route("/emulator/mattermost/api/v4/posts", post(create))
        .route("/emulator/mattermost/api/v4/posts/{id}/patch", put(patch))
        .route(
            "/emulator/mattermost/api/v4/posts/{id}",
            axum::routing::delete(remove),
        )
        .route(
            "/emulator/mattermost/api/v4/channels/{id}/posts",
            get(channel_posts),
        )
        .route("/emulator/mattermost/bot/revoke", post(revoke))
}

fn off() -> Response {
    (StatusCode::NOT_FOUND, "the emulator is off").into_response()
}

/// Mattermost's error shape.
fn error(status: StatusCode, id: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"id": id, "message": message, "status_code": status.as_u16()})),
    )
        .into_response()
}

fn inbox(channel_id: &str) -> Option<String> {
    CHANNELS
        .iter()
        .find(|(id, _, _)| *id == channel_id)
        .map(|(_, name, _)| format!("mattermost/{name}"))
}

async fn console(State(app): State<ChatEmulator>) -> Response {
    if app.inboxes.is_none() {
        return off();
    }
    let public = app.config.public_url();
    let rows: String = CHANNELS
        .iter()
        .map(|(id, name, key)| {
            format!(
                "<tr><td>~{name}</td><td><code>{}</code></td><td><code>{id}</code></td>\
                 <td><a href=\"/emulator/mattermost/inbox/{name}\">inbox</a></td></tr>",
                esc(&format!("{}{key}", hook_prefix(&public)))
            )
        })
        .collect();
    let body = format!(
        "<p class=\"banner\">Mattermost <strong>emulator</strong> — a stand-in for a Mattermost server's System Console.</p>\
         <h1>Integrations</h1><h2>Incoming webhooks</h2>\
         <table><tr><th>Channel</th><th>Webhook URL</th><th>Channel id</th><th></th></tr>{rows}</table>\
         <h2>Bot account</h2><p>cardwire-bot, a member of every channel above. Access token: <code>{BOT_TOKEN}</code>{revoked}</p>\
         <form method=\"post\" action=\"/emulator/mattermost/bot/revoke\"><button type=\"submit\" class=\"secondary\">Revoke the token</button></form>\
         <p class=\"muted\">Paste a webhook URL on <a href=\"/connect\">/connect</a>; with the bot's token and the channel's id, cards with a key are edited and threaded.</p>",
        revoked = if revoked(&app) { " (revoked)" } else { "" },
    );
    page(StatusCode::OK, "Mattermost emulator", &body)
}

async fn hook(State(app): State<ChatEmulator>, Path(key): Path<String>, body: String) -> Response {
    let Some(inboxes) = &app.inboxes else {
        return off();
    };
    let Some((id, _, _)) = CHANNELS.iter().find(|(_, _, k)| *k == key) else {
        return (StatusCode::NOT_FOUND, "Unable to find the webhook").into_response();
    };
    let Ok(card) = serde_json::from_str::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "Unable to parse incoming data").into_response();
    };
    let has = |k: &str| card.get(k).is_some_and(|v| !v.is_null() && v != "");
    if !has("text") && !has("attachments") {
        return (StatusCode::BAD_REQUEST, "Unable to parse incoming data").into_response();
    }
    inboxes.push(&inbox(id).expect("a known channel"), card);
    (StatusCode::OK, "ok").into_response()
}

/// Whether the bot's token was revoked (until a restart).
fn revoked(app: &ChatEmulator) -> bool {
    app.chats.as_ref().is_some_and(|c| {
        c.mattermost_revoked
            .load(std::sync::atomic::Ordering::Relaxed)
    })
}

/// A call of the bot: the inboxes, once its token is checked, and its JSON body, if it has one
/// (`Err`: the emulator is off, Mattermost's 401, or its 400).
fn bot_call<'a>(
    app: &'a ChatEmulator,
    headers: &HeaderMap,
    body: Option<&str>,
) -> Result<(&'a Inboxes, Value), Box<Response>> {
    let Some(inboxes) = &app.inboxes else {
        return Err(Box::new(off()));
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if token != Some(BOT_TOKEN) || revoked(app) {
        return Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "api.context.session_expired.app_error",
            "Invalid or expired session, please login again.",
        )));
    }
    let post = match body.map(serde_json::from_str::<Value>) {
        None => Value::Null,
        Some(Ok(post)) => post,
        Some(Err(_)) => {
            return Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                "api.context.invalid_body_param.app_error",
                "Invalid or missing post in request body.",
            )))
        }
    };
    Ok((inboxes, post))
}

/// A post as the inbox keeps it: the webhook's shape, so that one layout shows both, with
/// the post's props.
fn as_card(post: &Value) -> Value {
    json!({
        "text": post.get("message").cloned().unwrap_or(Value::Null),
        "attachments": post.pointer("/props/attachments").cloned().unwrap_or(json!([])),
        "props": post.get("props").cloned().unwrap_or(json!({})),
    })
}

/// A post as the API answers it.
fn answer(id: &str, channel: &str, post: &Value) -> Value {
    json!({
        "id": id, "channel_id": channel, "user_id": "emulatedbotuser00000000000",
        "root_id": post.get("root_id").cloned().unwrap_or(json!("")),
        "message": post.get("message").cloned().unwrap_or(json!("")),
        "props": post.get("props").cloned().unwrap_or(json!({})),
        "create_at": crate::store::now_ms(), "type": "",
    })
}

/// Where a post is: its channel's id and inbox.
fn find(app: &ChatEmulator, id: &str) -> Option<(&'static str, String)> {
    let inboxes = app.inboxes.as_ref()?;
    CHANNELS.iter().find_map(|(channel, _, _)| {
        let inbox = inbox(channel)?;
        inboxes.find(&inbox, id).map(|_| (*channel, inbox))
    })
}

async fn create(State(app): State<ChatEmulator>, headers: HeaderMap, body: String) -> Response {
    let (inboxes, post) = match bot_call(&app, &headers, Some(&body)) {
        Ok(call) => call,
        Err(refused) => return *refused,
    };
    let channel = post["channel_id"].as_str().unwrap_or_default();
    let Some(group) = inbox(channel) else {
        return error(
            StatusCode::FORBIDDEN,
            "api.context.permissions.app_error",
            "You do not have the appropriate permissions.",
        );
    };
    let root = post["root_id"]
        .as_str()
        .filter(|r| !r.is_empty())
        .map(str::to_string);
    let id = match &root {
        Some(r) => match inboxes.reply(&group, r, as_card(&post)) {
            Some(id) => id,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "api.post.create_post.root_id.app_error",
                    "Invalid RootId parameter.",
                )
            }
        },
        None => inboxes.push(&group, as_card(&post)),
    };
    (StatusCode::CREATED, axum::Json(answer(&id, channel, &post))).into_response()
}

async fn patch(
    State(app): State<ChatEmulator>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: String,
) -> Response {
    let (inboxes, post) = match bot_call(&app, &headers, Some(&body)) {
        Ok(call) => call,
        Err(refused) => return *refused,
    };
    let Some((channel, group)) = find(&app, &id) else {
        return error(
            StatusCode::NOT_FOUND,
            "app.post.get.app_error",
            "Unable to get the post.",
        );
    };
    inboxes.edit(&group, &id, as_card(&post));
    axum::Json(answer(&id, channel, &post)).into_response()
}

async fn remove(
    State(app): State<ChatEmulator>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let inboxes = match bot_call(&app, &headers, None) {
        Ok((inboxes, _)) => inboxes,
        Err(refused) => return *refused,
    };
    match find(&app, &id) {
        Some((_, group)) => {
            inboxes.delete(&group, &id);
            axum::Json(json!({"status": "OK"})).into_response()
        }
        None => error(
            StatusCode::NOT_FOUND,
            "app.post.get.app_error",
            "Unable to get the post.",
        ),
    }
}

/// `GET /api/v4/channels/{id}/posts`: the channel's posts, newest first, in Mattermost's
/// shape (`{"order": [ids], "posts": {id: post}}`). (`since` is accepted; the emulator's
/// channels are short, so every post is given.)
async fn channel_posts(
    State(app): State<ChatEmulator>,
    headers: HeaderMap,
    Path(channel): Path<String>,
) -> Response {
    let inboxes = match bot_call(&app, &headers, None) {
        Ok((inboxes, _)) => inboxes,
        Err(refused) => return *refused,
    };
    let Some(group) = inbox(&channel) else {
        return error(
            StatusCode::FORBIDDEN,
            "api.context.permissions.app_error",
            "You do not have the appropriate permissions.",
        );
    };
    let messages = inboxes.messages(&group);
    let order: Vec<&str> = messages.iter().rev().map(|m| m.id.as_str()).collect();
    let posts: serde_json::Map<String, Value> = messages
        .iter()
        .map(|m| {
            let post = json!({"message": m.card["text"], "props": m.card["props"],
                              "root_id": m.thread.clone().unwrap_or_default()});
            (m.id.clone(), answer(&m.id, &channel, &post))
        })
        .collect();
    axum::Json(json!({"order": order, "posts": posts})).into_response()
}

async fn revoke(State(app): State<ChatEmulator>) -> Response {
    let Some(chats) = &app.chats else {
        return off();
    };
    chats
        .mattermost_revoked
        .store(true, std::sync::atomic::Ordering::Relaxed);
    Redirect::to("/emulator/mattermost").into_response()
}
