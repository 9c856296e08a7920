//! A local stand-in for Slack's and Discord's side of "Add to …" (`connect.emulator: true`;
//! on by default without a config file), so that both flows run without an account or a
//! network.
//!
//! In: the browser on the authorize pages; cardwire's code exchange; cards POSTed to the
//! webhooks it handed out. Out: pages, the platforms' answers, and inboxes that show each
//! card laid out as its platform shows it. Guarantees: it answers as the platforms document
//! (shapes and error names from `shared/reference/more-chats.md`):
//!
//! - Slack: `GET /emulator/slack/oauth/v2/authorize?client_id&scope&state&redirect_uri[&team]`
//!   (pick a workspace and a channel; Allow redirects with `code` and `state`, Cancel with
//!   `error=access_denied`); `POST /emulator/slack/api/oauth.v2.access` (HTTP Basic or form
//!   client credentials; `{"ok": false, "error": "invalid_code" | "code_already_used" |
//!   "bad_redirect_uri" | "invalid_client_id" | "bad_client_secret"}`, or the full success
//!   shape with `incoming_webhook`, and with `chat:write` asked for, a bot token bound to the
//!   workspace and channel picked); `POST /emulator/slack/services/T…/B…/…` answers `200 ok`,
//!   `400 invalid_payload`, `400 no_text` or `404 no_service`; with the bot token,
//!   `POST /emulator/slack/api/chat.postMessage` (`thread_ts` for a reply) and `chat.update`
//!   answer as Slack's Web API does (`{"ok": true, "channel", "ts"}`, or HTTP 200 with
//!   `not_authed`, `invalid_auth`, `token_revoked`, `not_in_channel`, `channel_not_found`,
//!   `no_text`, `invalid_blocks`, `message_not_found`, `thread_not_found`), and
//!   `auth.revoke` revokes the token; `POST /emulator/slack/workspaces/{team}/uninstall`
//!   removes the app from a workspace, as an admin does in Slack (its tokens revoked).
//! - Discord: `GET /emulator/discord/oauth2/authorize?response_type=code&client_id&scope&state&redirect_uri`;
//!   `POST /emulator/discord/api/oauth2/token` (form-encoded only; `invalid_client`,
//!   `unsupported_grant_type`, `invalid_grant`, or the token answer with its `webhook`);
//!   `POST /emulator/discord/api/webhooks/{id}/{token}` answers `204` (`200` and the message,
//!   with its `id` and `channel_id`, with `?wait=true`; `?thread_id=` posts in a forum thread,
//!   whose id is its first message's, `404` code 10003 when there is none), `400` (code 50006,
//!   an empty message) or `404` (Unknown Webhook, code 10015);
//!   `PATCH`, `GET` and `DELETE` on `…/{id}/{token}/messages/{message_id}` edit, read and
//!   delete a message the webhook made (`404` code 10008, Unknown Message).
//! - `GET /emulator/{slack,discord}/inbox/{channel}` shows what a channel received: one entry
//!   a message, "edited" with its earlier versions on click, replies under their thread's
//!   first message ([`super::inboxes`]); asked for JSON (`Accept: application/json`), the
//!   same as data.
//!
//! A code lives 10 minutes and is good once; a webhook's URL names its channel, so it keeps
//! working across restarts (an unknown channel answers as a deleted webhook).

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::{FromRef, Path, Query, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use super::emulator::render_card_of;
use super::inboxes::{self, Inboxes};
use super::providers::{self, Provider};
use crate::html::{esc, page, token};
use crate::render::CardKind;

/// How long a code lives.
const CODE_TTL_MS: u64 = 10 * 60 * 1000;

/// The channels the pickers offer: (id, name).
const SLACK_CHANNELS: &[(&str, &str)] = &[
    ("C0EMUDEPLOY", "#deploys"),
    ("C0EMUALERTS", "#alerts"),
    ("C0EMUGENRAL", "#general"),
];
const DISCORD_CHANNELS: &[(&str, &str)] = &[
    ("345626669224982402", "deploys"),
    ("345626669224982403", "alerts"),
];
/// The emulated Slack workspace and Discord server.
const SLACK_TEAMS: &[(&str, &str)] = &[
    ("T0EMULATED", "Emulated Workspace"),
    ("T0SECONDWS", "Second Workspace"),
];
const DISCORD_GUILDS: &[(&str, &str)] = &[
    ("290926792226357250", "Emulated Server"),
    ("290926792226357251", "Second Server"),
];

/// A code handed out by an authorize page.
#[derive(Debug, Clone)]
struct Grant {
    provider: Provider,
    client_id: String,
    redirect_uri: String,
    channel: (String, String),
    /// The workspace or server picked: (id, name).
    place: (String, String),
    created_ms: u64,
    used: bool,
    /// Slack: `chat:write` was granted (a bot token comes with the webhook).
    bot: bool,
}

/// What the Slack and Discord emulators reach: the settings (the app they know), the inboxes
/// (shared with the Office 365 emulator's) and what they remember; both `None` when the
/// emulator is off.
#[derive(Clone)]
pub struct ChatEmulator {
    /// The settings.
    pub config: std::sync::Arc<crate::config::Config>,
    /// The channels' inboxes.
    pub inboxes: Option<std::sync::Arc<Inboxes>>,
    /// Codes and webhooks.
    pub chats: Option<std::sync::Arc<Chats>>,
}

/// What the emulated platforms remember: the codes they handed out, the bot tokens revoked,
/// the last message timestamp. (A webhook or a bot token they hand out names its workspace
/// and channel, so that it works after a restart, as a real one does.)
#[derive(Default)]
pub struct Chats {
    grants: Mutex<HashMap<String, Grant>>,
    revoked: Mutex<std::collections::HashSet<String>>,
    /// Workspaces the app was removed from: every bot token of theirs is revoked.
    uninstalled: Mutex<std::collections::HashSet<String>>,
    /// Whether the emulated Mattermost bot's token was revoked ([`super::mattermost_emulator`]).
    pub(super) mattermost_revoked: std::sync::atomic::AtomicBool,
    last_ts: Mutex<(u64, u64)>,
}

impl Chats {
    /// A Slack message timestamp (`1700000000.000100`), unique and increasing.
    fn slack_ts(&self) -> String {
        let now = crate::store::now_ms() / 1000;
        let mut last = self.last_ts.lock().expect("ts lock");
        *last = if now > last.0 {
            (now, 0)
        } else {
            (last.0, last.1 + 1)
        };
        format!("{}.{:06}", last.0, last.1)
    }
}

/// The prefixes of the webhook URLs the emulated platforms hand out (accepted as targets
/// while the emulator is on).
pub fn hook_prefixes(public_url: &str) -> [String; 2] {
    [
        format!("{public_url}/emulator/slack/services/"),
        format!("{public_url}/emulator/discord/api/webhooks/"),
    ]
}

/// The routes under /emulator/slack and /emulator/discord.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    ChatEmulator: FromRef<S>,
{
    Router::new()
        .route(
            "/emulator/slack/oauth/v2/authorize",
            get(|s, q| authorize_page(s, q, Provider::Slack))
                .post(|s, b| decide(s, b, Provider::Slack)),
        )
        .route("/emulator/slack/api/oauth.v2.access", post(slack_token))
        .route("/emulator/slack/services/{t}/{b}/{key}", post(slack_hook))
        .route("/emulator/slack/api/chat.postMessage", post(slack_post))
        .route("/emulator/slack/api/chat.update", post(slack_update))
        .route("/emulator/slack/api/auth.revoke", post(slack_revoke))
        .route(
            "/emulator/slack/workspaces/{team}/uninstall",
            post(slack_uninstall),
        )
        .route(
            "/emulator/discord/oauth2/authorize",
            get(|s, q| authorize_page(s, q, Provider::Discord))
                .post(|s, b| decide(s, b, Provider::Discord)),
        )
        .route("/emulator/discord/api/oauth2/token", post(discord_token))
        .route(
            "/emulator/discord/api/webhooks/{id}/{token}",
            post(discord_hook),
        )
        .route(
            "/emulator/discord/api/webhooks/{id}/{token}/messages/{message}",
            get(discord_edit).patch(discord_edit).delete(discord_edit),
        )
        .route("/emulator/{platform}/inbox/{channel}", get(show_inbox))
}

fn off() -> Response {
    (StatusCode::NOT_FOUND, "the emulator is off").into_response()
}

fn channels(p: Provider) -> &'static [(&'static str, &'static str)] {
    match p {
        Provider::Slack => SLACK_CHANNELS,
        Provider::Discord => DISCORD_CHANNELS,
    }
}

/// The platform's error page for an authorize request that does not match the app.
fn refused(p: Provider, why: &str) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        &format!("{} emulator", p.title()),
        &format!(
            "<p class=\"banner\">{} <strong>emulator</strong></p><h1>Something went wrong</h1>\
             <p class=\"error\">{}</p>",
            p.title(),
            esc(why)
        ),
    )
}

/// Why an authorize request is refused, as the platform would say it.
fn check_request(
    app: &ChatEmulator,
    p: Provider,
    q: &HashMap<String, String>,
) -> Result<(), String> {
    let client = providers::client(&app.config, p).ok_or("no app is registered")?;
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    if get("client_id") != client.client_id {
        return Err(match p {
            Provider::Slack => "Invalid client_id parameter".into(),
            Provider::Discord => "Unknown Application".into(),
        });
    }
    if get("redirect_uri") != providers::redirect_uri(&app.config, p) {
        return Err(match p {
            Provider::Slack => format!(
                "redirect_uri did not match any configured URIs. Passed URI: {}",
                get("redirect_uri")
            ),
            Provider::Discord => "Invalid OAuth2 redirect_uri".into(),
        });
    }
    let scopes: Vec<&str> = get("scope").split([',', ' ']).collect();
    if !scopes.contains(&p.scope(false)) {
        return Err(format!(
            "Invalid scope: this app asks for {}",
            p.scope(false)
        ));
    }
    if let Some(other) = scopes
        .iter()
        .find(|s| **s != p.scope(false) && !(p == Provider::Slack && **s == "chat:write"))
    {
        return Err(format!("Invalid scope: {other}"));
    }
    if p == Provider::Discord && get("response_type") != "code" {
        return Err("Invalid response_type".into());
    }
    if p == Provider::Slack
        && q.get("team")
            .is_some_and(|t| !t.is_empty() && !places(p).iter().any(|(id, _)| id == t))
    {
        return Err(format!("Unknown workspace {}", get("team")));
    }
    Ok(())
}

/// The workspaces (Slack) or servers (Discord) the picker offers.
fn places(p: Provider) -> &'static [(&'static str, &'static str)] {
    match p {
        Provider::Slack => SLACK_TEAMS,
        Provider::Discord => DISCORD_GUILDS,
    }
}

async fn authorize_page(
    State(app): State<ChatEmulator>,
    Query(q): Query<HashMap<String, String>>,
    p: Provider,
) -> Response {
    if app.chats.is_none() {
        return off();
    }
    if let Err(why) = check_request(&app, p, &q) {
        return refused(p, &why);
    }
    let place_kind = match p {
        Provider::Slack => "workspace",
        Provider::Discord => "server",
    };
    // Slack's `team` restricts the install to one workspace.
    let restrict = q.get("team").filter(|t| !t.is_empty());
    let place_options: String = places(p)
        .iter()
        .filter(|(id, _)| restrict.is_none_or(|t| t == id))
        .enumerate()
        .map(|(i, (id, name))| {
            format!(
                "<label><input type=\"radio\" name=\"place\" value=\"{id}\"{checked}> {}</label>",
                esc(name),
                checked = if i == 0 { " checked" } else { "" },
            )
        })
        .collect();
    let options: String =
        channels(p)
            .iter()
            .enumerate()
            .map(|(i, (id, name))| {
                format!(
                "<label><input type=\"radio\" name=\"channel\" value=\"{id}\"{checked}> {}</label>",
                esc(&if p == Provider::Discord { format!("#{name}") } else { name.to_string() }),
                checked = if i == 0 { " checked" } else { "" },
            )
            })
            .collect();
    let hidden: String = ["client_id", "state", "redirect_uri", "team", "scope"]
        .iter()
        .map(|k| {
            format!(
                "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
                esc(q.get(*k).map(String::as_str).unwrap_or_default())
            )
        })
        .collect();
    let (allow, cancel) = match p {
        Provider::Slack => ("Allow", "Cancel"),
        Provider::Discord => ("Authorize", "Cancel"),
    };
    let body = format!(
        "<p class=\"banner\">{title} <strong>emulator</strong> — a stand-in for {title}'s own page.</p>\
         <h1>{name} is requesting permission to access a {place_kind}</h1>\
         <p class=\"muted\">It will be able to post messages to the channel you pick{edit}.</p>\
         <form method=\"post\">{hidden}\
         <fieldset><legend>Which {place_kind}?</legend>{place_options}</fieldset>\
         <fieldset><legend>Where should {name} post?</legend>{options}</fieldset>\
         <button type=\"submit\" name=\"decision\" value=\"allow\" id=\"allow\">{allow}</button> \
         <button type=\"submit\" name=\"decision\" value=\"cancel\" id=\"cancel\" class=\"secondary\">{cancel}</button></form>",
        title = p.title(),
        name = esc(&app.config.connect.name),
        edit = if q
            .get("scope")
            .is_some_and(|s| s.split([',', ' ']).any(|s| s == "chat:write"))
        {
            ", and to edit and reply to the messages it posts there"
        } else {
            ""
        },
    );
    page(StatusCode::OK, &format!("{} emulator", p.title()), &body)
}

async fn decide(State(app): State<ChatEmulator>, body: String, p: Provider) -> Response {
    let Some(chats) = &app.chats else {
        return off();
    };
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    if let Err(why) = check_request(&app, p, &{
        let mut q = form.clone();
        q.entry("scope".into())
            .or_insert_with(|| p.scope(false).into());
        q.insert("response_type".into(), "code".into());
        q
    }) {
        return refused(p, &why);
    }
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    let Ok(mut back) = url::Url::parse(&get("redirect_uri")) else {
        return refused(p, "redirect_uri is not a URL");
    };
    {
        let mut q = back.query_pairs_mut();
        if get("decision") == "allow" {
            let Some((id, name)) = channels(p).iter().find(|(id, _)| *id == get("channel")) else {
                return refused(p, "pick a channel");
            };
            let restrict = get("team");
            let Some(place) = places(p)
                .iter()
                .find(|(id, _)| *id == get("place") && (restrict.is_empty() || restrict == *id))
            else {
                return refused(p, "pick a workspace or server this app may use");
            };
            let code = token(24);
            chats.grants.lock().expect("grants lock").insert(
                code.clone(),
                Grant {
                    provider: p,
                    client_id: get("client_id"),
                    redirect_uri: get("redirect_uri"),
                    channel: (id.to_string(), name.to_string()),
                    place: (place.0.to_string(), place.1.to_string()),
                    created_ms: crate::store::now_ms(),
                    used: false,
                    bot: p == Provider::Slack
                        && get("scope").split([',', ' ']).any(|s| s == "chat:write"),
                },
            );
            q.append_pair("code", &code);
        } else {
            q.append_pair("error", "access_denied");
            if p == Provider::Discord {
                q.append_pair(
                    "error_description",
                    "The resource owner or authorization server denied the request",
                );
            }
        }
        q.append_pair("state", &get("state"));
    }
    Redirect::to(back.as_str()).into_response()
}

/// The client credentials of a token request: HTTP Basic, or `client_id` / `client_secret`
/// in the form.
fn credentials(headers: &HeaderMap, form: &HashMap<String, String>) -> (String, String) {
    use base64::Engine as _;
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        });
    basic.unwrap_or_else(|| {
        (
            form.get("client_id").cloned().unwrap_or_default(),
            form.get("client_secret").cloned().unwrap_or_default(),
        )
    })
}

/// Why a code cannot be exchanged: `Err((error, description))`; the grant when it can (it is
/// then used up).
fn redeem(
    chats: &Chats,
    p: Provider,
    code: &str,
    client_id: &str,
    redirect_uri: &str,
) -> Result<Grant, (&'static str, &'static str)> {
    let mut grants = chats.grants.lock().expect("grants lock");
    let Some(g) = grants.get_mut(code).filter(|g| g.provider == p) else {
        return Err(("invalid_code", "Invalid \"code\" in request."));
    };
    if g.used {
        return Err(("code_already_used", "Invalid \"code\" in request."));
    }
    if crate::store::now_ms().saturating_sub(g.created_ms) > CODE_TTL_MS || g.client_id != client_id
    {
        return Err(("invalid_code", "Invalid \"code\" in request."));
    }
    if g.redirect_uri != redirect_uri {
        return Err(("bad_redirect_uri", "Invalid \"redirect_uri\" in request."));
    }
    g.used = true;
    Ok(g.clone())
}

fn form_of(body: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

async fn slack_token(
    State(app): State<ChatEmulator>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let Some(chats) = &app.chats else {
        return off();
    };
    let form = form_of(&body);
    let fail = |error: &str| axum::Json(json!({"ok": false, "error": error})).into_response();
    let Some(client) = providers::client(&app.config, Provider::Slack) else {
        return fail("invalid_client_id");
    };
    let (id, secret) = credentials(&headers, &form);
    if id != client.client_id {
        return fail("invalid_client_id");
    }
    if secret != client.client_secret {
        return fail("bad_client_secret");
    }
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let grant = match redeem(
        chats,
        Provider::Slack,
        get("code"),
        &id,
        get("redirect_uri"),
    ) {
        Ok(g) => g,
        Err((error, _)) => return fail(error),
    };
    // The channel is in the webhook's path, so that its URL outlives a restart.
    let hook = format!("{}/B{}/{}", grant.place.0, grant.channel.0, token(18));
    let public = app.config.public_url();
    // A bot token names its workspace and channel (the one the bot was added to).
    let (scope, bot_token) = if grant.bot {
        (
            "incoming-webhook,chat:write",
            format!("xoxb-{}-{}-{}", grant.place.0, grant.channel.0, token(18)),
        )
    } else {
        ("incoming-webhook", format!("xoxb-{}", token(18)))
    };
    axum::Json(json!({
        "ok": true,
        "app_id": "A0EMULATED",
        "authed_user": {"id": "U0EMULATED", "scope": "", "access_token": format!("xoxp-{}", token(12)), "token_type": "user"},
        "scope": scope,
        "token_type": "bot",
        "access_token": bot_token,
        "bot_user_id": "U0EMULBOT",
        "team": {"id": grant.place.0, "name": grant.place.1},
        "enterprise": null,
        "is_enterprise_install": false,
        "incoming_webhook": {
            "channel": grant.channel.1,
            "channel_id": grant.channel.0,
            "configuration_url": format!("{public}/emulator/slack/inbox/{}", grant.channel.1.trim_start_matches('#')),
            "url": format!("{public}/emulator/slack/services/{hook}"),
        },
    }))
    .into_response()
}

async fn discord_token(
    State(app): State<ChatEmulator>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let Some(chats) = &app.chats else {
        return off();
    };
    let oauth_error = |status: StatusCode, error: &str, description: Option<&str>| {
        let mut v = json!({"error": error});
        if let Some(d) = description {
            v["error_description"] = json!(d);
        }
        (status, axum::Json(v)).into_response()
    };
    // "The token endpoints will only accept a content type of x-www-form-urlencoded."
    let form_encoded = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    if !form_encoded {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some("Content-Type must be application/x-www-form-urlencoded"),
        );
    }
    let form = form_of(&body);
    let Some(client) = providers::client(&app.config, Provider::Discord) else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", None);
    };
    let (id, secret) = credentials(&headers, &form);
    if id != client.client_id || secret != client.client_secret {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", None);
    }
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    if get("grant_type") != "authorization_code" {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", None);
    }
    let grant = match redeem(
        chats,
        Provider::Discord,
        get("code"),
        &id,
        get("redirect_uri"),
    ) {
        Ok(g) => g,
        Err((_, description)) => {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", Some(description))
        }
    };
    // The webhook's id names its channel, so that its URL outlives a restart.
    let hook_id = format!("{}{}", grant.channel.0, rand::random::<u16>() % 10);
    let hook_token = token(48);
    axum::Json(json!({
        "token_type": "Bearer",
        "access_token": token(24),
        "scope": "webhook.incoming",
        "expires_in": 604800,
        "refresh_token": token(24),
        "webhook": {
            "application_id": client.client_id,
            "name": app.config.connect.name,
            "url": format!("{}/emulator/discord/api/webhooks/{hook_id}/{hook_token}", app.config.public_url()),
            "channel_id": grant.channel.0,
            "token": hook_token,
            "type": 1,
            "avatar": null,
            "guild_id": grant.place.0,
            "id": hook_id,
        },
    }))
    .into_response()
}

/// The inbox of a Slack webhook (`B` and its channel's id) the emulator hands out.
fn slack_inbox(b: &str) -> Option<String> {
    let channel = b.strip_prefix('B')?;
    SLACK_CHANNELS
        .iter()
        .find(|(id, _)| *id == channel)
        .map(|(_, name)| format!("slack/{}", name.trim_start_matches('#')))
}

/// The inbox of a Discord webhook (its channel's id and a digit) the emulator hands out.
fn discord_inbox(id: &str) -> Option<String> {
    let channel = id.get(..id.len().checked_sub(1)?)?;
    DISCORD_CHANNELS
        .iter()
        .find(|(c, _)| *c == channel)
        .map(|(_, name)| format!("discord/{name}"))
}

async fn slack_hook(
    State(app): State<ChatEmulator>,
    Path((_team, b, _key)): Path<(String, String, String)>,
    body: String,
) -> Response {
    let Some(inboxes) = &app.inboxes else {
        return off();
    };
    let Some(inbox) = slack_inbox(&b) else {
        return (StatusCode::NOT_FOUND, "no_service").into_response();
    };
    let Ok(card) = serde_json::from_str::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "invalid_payload").into_response();
    };
    let has = |k: &str| card.get(k).is_some_and(|v| !v.is_null());
    if !has("text") && !has("blocks") && !has("attachments") {
        return (StatusCode::BAD_REQUEST, "no_text").into_response();
    }
    inboxes.push(&inbox, card);
    (StatusCode::OK, "ok").into_response()
}

/// What a Discord webhook's query says: `wait=true`, and the thread to post in.
fn discord_query(query: Option<String>) -> (bool, Option<String>) {
    let mut wait = false;
    let mut thread = None;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*k {
            "wait" => wait = v == "true",
            "thread_id" => thread = Some(v.into_owned()),
            _ => {}
        }
    }
    (wait, thread)
}

fn discord_error(status: StatusCode, message: &str, code: u32) -> Response {
    (
        status,
        axum::Json(json!({"message": message, "code": code})),
    )
        .into_response()
}

/// The inboxes and the channel of a Discord webhook the emulator handed out, or the answer
/// when the emulator is off or the webhook unknown (Discord's 10015).
fn discord_channel<'a>(
    app: &'a ChatEmulator,
    id: &str,
) -> Result<(&'a Inboxes, String), Box<Response>> {
    let Some(inboxes) = &app.inboxes else {
        return Err(Box::new(off()));
    };
    match discord_inbox(id) {
        Some(inbox) => Ok((inboxes, inbox)),
        None => Err(Box::new(discord_error(
            StatusCode::NOT_FOUND,
            "Unknown Webhook",
            10015,
        ))),
    }
}

/// A card a Discord webhook takes: JSON with a content or an embed (`None`: Discord's 50006).
fn discord_card(body: &str) -> Option<Value> {
    let card = serde_json::from_str::<Value>(body).ok();
    let empty = |c: &Value| {
        c.get("content")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
            && c.get("embeds")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
    };
    card.filter(|c| !empty(c))
}

fn empty_message() -> Response {
    discord_error(
        StatusCode::BAD_REQUEST,
        "Cannot send an empty message",
        50006,
    )
}

/// A message as Discord's webhook answers it.
fn discord_message(card: &Value, id: &str, channel: &str, webhook: &str) -> Value {
    let mut message = card.clone();
    message["id"] = json!(id);
    message["channel_id"] = json!(channel);
    message["webhook_id"] = json!(webhook);
    message
}

async fn discord_hook(
    State(app): State<ChatEmulator>,
    Path((id, _token)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    body: String,
) -> Response {
    let (inboxes, inbox) = match discord_channel(&app, &id) {
        Ok(found) => found,
        Err(refused) => return *refused,
    };
    let Some(card) = discord_card(&body) else {
        return empty_message();
    };
    let (wait, thread) = discord_query(query);
    let channel = id[..id.len() - 1].to_string();
    let (message, channel) = match thread {
        // A forum thread's id is its first message's.
        Some(t) => match inboxes.reply(&inbox, &t, card.clone()) {
            Some(m) => (m, t),
            None => return discord_error(StatusCode::NOT_FOUND, "Unknown Channel", 10003),
        },
        None => {
            let forum_post = card.get("thread_name").is_some();
            let m = inboxes.push(&inbox, card.clone());
            let channel = if forum_post { m.clone() } else { channel };
            (m, channel)
        }
    };
    if wait {
        let answer = discord_message(&card, &message, &channel, &id);
        (StatusCode::OK, axum::Json(answer)).into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

/// `PATCH` (edit), `GET` or `DELETE` on `/webhooks/{id}/{token}/messages/{message_id}`: a
/// message the webhook made (`?thread_id=` for one in a forum thread). An unknown message is
/// `404` with code 10008.
async fn discord_edit(
    State(app): State<ChatEmulator>,
    method: axum::http::Method,
    Path((id, _token, message)): Path<(String, String, String)>,
    body: String,
) -> Response {
    let (inboxes, inbox) = match discord_channel(&app, &id) {
        Ok(found) => found,
        Err(refused) => return *refused,
    };
    let Some(found) = inboxes.find(&inbox, &message) else {
        return discord_error(StatusCode::NOT_FOUND, "Unknown Message", 10008);
    };
    let channel = found
        .thread
        .clone()
        .unwrap_or_else(|| id[..id.len() - 1].to_string());
    match method {
        axum::http::Method::DELETE => {
            inboxes.delete(&inbox, &message);
            StatusCode::NO_CONTENT.into_response()
        }
        axum::http::Method::PATCH => {
            let Some(card) = discord_card(&body) else {
                return empty_message();
            };
            inboxes.edit(&inbox, &message, card.clone());
            let answer = discord_message(&card, &message, &channel, &id);
            (StatusCode::OK, axum::Json(answer)).into_response()
        }
        _ => {
            let answer = discord_message(&found.card, &message, &channel, &id);
            (StatusCode::OK, axum::Json(answer)).into_response()
        }
    }
}

/// A Slack Web API answer: `{"ok": false, "error": …}` with HTTP 200, as Slack answers every
/// error but rate limits.
fn slack_error(error: &str) -> Response {
    axum::Json(json!({"ok": false, "error": error})).into_response()
}

/// The inbox of the channel a bot token was granted for (`xoxb-{team}-{channel}-{secret}`),
/// or the error Slack answers: `not_authed`, `invalid_auth`, `token_revoked`, and
/// `not_in_channel` / `channel_not_found` for a channel the bot is not in.
fn slack_bot(chats: &Chats, headers: &HeaderMap, channel: &str) -> Result<String, &'static str> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or("not_authed")?;
    let mut parts = token
        .strip_prefix("xoxb-")
        .unwrap_or_default()
        .splitn(3, '-');
    let (Some(team), Some(bound), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("invalid_auth");
    };
    if !SLACK_TEAMS.iter().any(|(id, _)| *id == team) {
        return Err("invalid_auth");
    }
    if chats.revoked.lock().expect("revoked lock").contains(token)
        || chats
            .uninstalled
            .lock()
            .expect("uninstalled lock")
            .contains(team)
    {
        return Err("token_revoked");
    }
    if channel != bound {
        return Err(if SLACK_CHANNELS.iter().any(|(id, _)| *id == channel) {
            "not_in_channel"
        } else {
            "channel_not_found"
        });
    }
    slack_inbox(&format!("B{bound}")).ok_or("channel_not_found")
}

/// What chat.postMessage and chat.update read: JSON with `channel` and a `text`, `blocks` or
/// `attachments`; `Err` is the error Slack names.
fn slack_message(body: &str) -> Result<Value, &'static str> {
    let v: Value = serde_json::from_str(body).map_err(|_| "invalid_json")?;
    let has = |k: &str| v.get(k).is_some_and(|x| !x.is_null());
    if !has("text") && !has("blocks") && !has("attachments") {
        return Err("no_text");
    }
    if v.get("blocks").is_some_and(|b| !b.is_array()) {
        return Err("invalid_blocks");
    }
    Ok(v)
}

/// A bot's Web API call: the emulator's memory, the message it sends, its channel and that
/// channel's inbox, once the body and the token are checked (`Err`: Slack's answer).
#[allow(clippy::type_complexity)]
fn slack_call<'a>(
    app: &'a ChatEmulator,
    headers: &HeaderMap,
    body: &str,
) -> Result<(&'a Chats, &'a Inboxes, Value, String, String), Box<Response>> {
    let (Some(chats), Some(inboxes)) = (&app.chats, &app.inboxes) else {
        return Err(Box::new(off()));
    };
    let card = slack_message(body).map_err(|e| Box::new(slack_error(e)))?;
    let channel = card["channel"].as_str().unwrap_or_default().to_string();
    let inbox = slack_bot(chats, headers, &channel).map_err(|e| Box::new(slack_error(e)))?;
    Ok((chats, inboxes, card, channel, inbox))
}

/// `POST /api/chat.postMessage` with a bot token: a message in the bot's channel, or a reply
/// in the thread of `thread_ts` (`thread_not_found` when there is no such message).
async fn slack_post(State(app): State<ChatEmulator>, headers: HeaderMap, body: String) -> Response {
    let (chats, inboxes, card, channel, inbox) = match slack_call(&app, &headers, &body) {
        Ok(call) => call,
        Err(refused) => return *refused,
    };
    let ts = chats.slack_ts();
    let thread = card["thread_ts"].as_str().map(str::to_string);
    if let Some(root) = &thread {
        if inboxes.find(&inbox, root).is_none() {
            return slack_error("thread_not_found");
        }
    }
    inboxes.push_as(&inbox, &ts, card.clone(), thread);
    axum::Json(json!({"ok": true, "channel": channel, "ts": ts, "message": card})).into_response()
}

/// `POST /api/chat.update` with a bot token: the message `ts` in `channel` replaced
/// (`message_not_found` when there is none).
async fn slack_update(
    State(app): State<ChatEmulator>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let (_, inboxes, card, channel, inbox) = match slack_call(&app, &headers, &body) {
        Ok(call) => call,
        Err(refused) => return *refused,
    };
    let ts = card["ts"].as_str().unwrap_or_default().to_string();
    if !inboxes.edit(&inbox, &ts, card.clone()) {
        return slack_error("message_not_found");
    }
    axum::Json(json!({"ok": true, "channel": channel, "ts": ts, "text": card["text"]}))
        .into_response()
}

/// `POST /emulator/slack/workspaces/{team}/uninstall`: the app removed from a workspace, as an
/// admin does in Slack (every bot token of the workspace revoked); back to the channel list.
async fn slack_uninstall(State(app): State<ChatEmulator>, Path(team): Path<String>) -> Response {
    let Some(chats) = &app.chats else {
        return off();
    };
    if !SLACK_TEAMS.iter().any(|(id, _)| *id == team) {
        return (StatusCode::NOT_FOUND, "no such workspace").into_response();
    }
    chats
        .uninstalled
        .lock()
        .expect("uninstalled lock")
        .insert(team);
    Redirect::to("/emulator/slack/inbox/deploys").into_response()
}

/// `POST /api/auth.revoke` with a bot token: the token stops working (`{"ok": true,
/// "revoked": true}`), as when the app is removed from the workspace.
async fn slack_revoke(State(app): State<ChatEmulator>, headers: HeaderMap) -> Response {
    let Some(chats) = &app.chats else {
        return off();
    };
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return slack_error("not_authed");
    };
    chats
        .revoked
        .lock()
        .expect("revoked lock")
        .insert(token.to_string());
    axum::Json(json!({"ok": true, "revoked": true})).into_response()
}

async fn show_inbox(
    State(app): State<ChatEmulator>,
    Path((platform, channel)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some(inboxes) = &app.inboxes else {
        return off();
    };
    let kind = match platform.as_str() {
        "slack" => CardKind::Slack,
        "discord" => CardKind::Discord,
        "mattermost" => CardKind::Mattermost,
        _ => return (StatusCode::NOT_FOUND, "no such platform").into_response(),
    };
    let messages = inboxes.messages(&format!("{platform}/{channel}"));
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    if accept.is_some_and(|a| a.contains("application/json")) {
        return axum::Json(inboxes::as_json(&messages)).into_response();
    }
    let list = inboxes::show(&messages, kind, |c| render_card_of(kind, c));
    let body = format!(
        "<p class=\"banner\">{} <strong>emulator</strong> channel.</p><h1>#{}</h1><p class=\"muted\">{}, newest first.</p>{list}",
        match kind {
            CardKind::Slack => "Slack",
            CardKind::Mattermost => "Mattermost",
            _ => "Discord",
        },
        esc(&channel),
        crate::render::plural_count(messages.len(), "message")
    );
    page(StatusCode::OK, &format!("#{channel}"), &body)
}
