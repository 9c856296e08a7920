//! The Connect to Office 365 flow, as the connector documentation describes it.
//!
//! 1. `GET /connect`: the user picks what the connection receives (channels) and an optional
//!    digest, and presses "Connect to Office 365".
//! 2. `POST /connect/start` stores those choices server side under a fresh `state` (128+ random
//!    bits, 10-minute lifetime, single use) bound to this browser by an HttpOnly, SameSite=Lax
//!    cookie, and redirects to `connect.url` with `app_id`, `callback_url` (no query) and `state`.
//! 3. Office 365 (or the emulator) redirects back to `GET /connect/callback` with `state` and
//!    `webhook_url`, `app_type`, `group_name`, `user_objectId` — or `error`.
//! 4. The callback checks the state and the URL, stores the connection (secrets sealed), and
//!    answers **302** to `/connect/done/{id}`, whose URL carries no webhook data.
//!
//! Every page here answers with `Referrer-Policy: no-referrer` and carries the meta tag. A Teams
//! Workflows URL can be pasted on the same page instead (new Office 365 connectors can no longer
//! be registered); that needs the admin token, since no Microsoft sign-in stands behind it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Form, FromRef, Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use crate::config::Config;
use crate::html::{self as pages, esc, page};
use crate::ids::ConnectionId;
use crate::render::CardKind;
use crate::store::{now_ms, Connection, ConnectionOrigin, FlowState};

/// How long a state lives.
pub const STATE_TTL_MS: u64 = 10 * 60 * 1000;
/// The cookie that binds a state to the browser that started the flow.
/// The cookie that binds a flow's state to the browser that started it (path `/connect`).
pub const COOKIE: &str = "cw_connect";

/// The routes under /connect and /assets.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Flows: FromRef<S>,
    crate::gate::Gate: FromRef<S>,
{
    Router::new()
        .route("/connect", get(connect_page))
        .route("/connect/start", post(start_flow))
        .route("/connect/callback", get(receive_callback))
        .route("/connect/done/{id}", get(done_page))
        .route("/connect/paste", post(paste_url))
        .route("/connect/logo", get(logo))
        .route(
            "/assets/{name}",
            get(|Path(n): Path<String>| async move { pages::asset(&n) }),
        )
}

/// What the Connect flow reaches.
#[derive(Clone)]
pub struct Flows {
    /// The settings.
    pub config: Arc<Config>,
    /// The rules and templates in force (for the channels they name).
    pub pipeline: Arc<arc_swap::ArcSwap<crate::pipeline::Pipeline>>,
    /// Durable state (flow states).
    pub store: crate::store::SharedStore,
    /// The connections, cached.
    pub connections: Arc<crate::connections::Connections>,
    /// Which webhook URLs are acceptable.
    pub policy: Arc<crate::deliver::policy::TargetPolicy>,
    /// The HTTP client of the OAuth code exchanges.
    pub http: reqwest::Client,
}

/// Where the Connect button goes.
pub fn connect_url(config: &Config) -> String {
    match &config.connect.url {
        Some(u) => u.clone(),
        None if config.emulator() => {
            format!("{}/emulator/connectors/Connect", config.public_url())
        }
        None => "https://outlook.office.com/connectors/Connect".to_string(),
    }
}

/// The registered redirect URL.
pub fn callback_url(config: &Config) -> String {
    format!("{}/connect/callback", config.public_url())
}

fn banner(config: &Config) -> String {
    if config.emulator() && connect_url(config).starts_with(&config.public_url()) {
        "<p class=\"banner\">This is the local <strong>Office 365 emulator</strong>, Slack's and \
         Discord's too: the buttons go to stand-in pages served by this cardwire, no Microsoft, \
         Slack or Discord account is involved, and what you connect receives its cards in the \
         emulator's inboxes.</p>"
            .to_string()
    } else {
        String::new()
    }
}

fn connector_box(config: &Config) -> String {
    let c = &config.connect;
    let company = c
        .company_url
        .as_ref()
        .map(|u| {
            format!(
                " · <a href=\"{}\" rel=\"noreferrer\">{}</a>",
                esc(u),
                esc(u)
            )
        })
        .unwrap_or_default();
    format!(
        "<div class=\"connector\"><img src=\"/connect/logo\" alt=\"\"><div><strong>{}</strong><br>\
         <span class=\"muted\">{}</span>{company}</div></div><p>{}</p>",
        esc(&c.name),
        esc(&c.short_description),
        esc(&c.description)
    )
}

async fn connect_page(State(app): State<Flows>) -> Response {
    let channels: Vec<String> = {
        let p = app.pipeline.load();
        let mut c: Vec<String> = p.rules.channels().into_iter().map(str::to_string).collect();
        c.sort();
        c
    };
    let boxes: String = channels
        .iter()
        .map(|c| {
            format!(
                "<label><input type=\"checkbox\" name=\"channel\" value=\"{0}\"> {0}</label>",
                esc(c)
            )
        })
        .collect();
    let body = format!(
        "{banner}<h1>Connect cardwire</h1>{connector}\
         <form method=\"post\" action=\"/connect/start\">\
         <fieldset><legend>What this connection receives</legend>{boxes}\
         <p class=\"muted\">Choose none to receive every channel.</p></fieldset>\
         <fieldset><legend>Digest</legend>{digest}</fieldset>\
         <button type=\"submit\" id=\"connect\" style=\"background:none;padding:0\">\
         <img src=\"/assets/connect-button.svg\" alt=\"Connect to Office 365\"></button>{others}\
         </form>\
         <h2>Or paste a webhook URL</h2>\
         <p class=\"muted\">A Teams Workflows URL (the Workflow <em>When a Teams webhook request is \
         received</em>), or a Slack, Discord, Google Chat or Mattermost incoming webhook. Pasting a URL \
         needs the admin token.</p>\
         <form method=\"post\" action=\"/connect/paste\">\
         <label>Name <input type=\"text\" name=\"name\" required></label>\
         <label>Webhook URL <input type=\"url\" name=\"url\" required></label>\
         <label>Chat <select name=\"kind\" id=\"kind\"><option value=\"\">from the URL</option>\
         <option value=\"workflow\">Teams Workflows</option><option value=\"slack\">Slack</option>\
         <option value=\"discord\">Discord</option><option value=\"google_chat\">Google Chat</option>\
         <option value=\"mattermost\">Mattermost</option></select></label>\
         <label>Channels (comma-separated, empty for all) <input type=\"text\" name=\"channels\"></label>\
         <details><summary>Mattermost: a bot, to edit and thread cards (optional)</summary>\
         <label>Bot token <input type=\"password\" name=\"bot_token\" autocomplete=\"off\"></label>\
         <label>Channel id <input type=\"text\" name=\"bot_channel\"></label></details>\
         <label>Admin token <input type=\"password\" name=\"token\" required></label>\
         <button type=\"submit\">Add</button></form>",
        banner = banner(&app.config),
        connector = connector_box(&app.config),
        digest = digest_fields(),
        others = other_buttons(&app.config),
    );
    page(StatusCode::OK, "Connect", &body)
}

/// "Add to Slack" and "Add to Discord", for the flows that are set up: they submit the same
/// choices to their own start.
fn other_buttons(config: &Config) -> String {
    use super::providers::{client, Provider};
    Provider::ALL
        .into_iter()
        .filter(|p| client(config, *p).is_some())
        .map(|p| {
            format!(
                " <button type=\"submit\" id=\"add-{slug}\" class=\"add {slug}\" \
                 formaction=\"/connect/{slug}/start\">Add to {title}</button>",
                slug = p.slug(),
                title = p.title()
            )
        })
        .collect()
}

fn digest_fields() -> String {
    "<label><input type=\"radio\" name=\"digest\" value=\"none\" checked> No digest: cards as they happen</label>\
     <label><input type=\"radio\" name=\"digest\" value=\"hourly\"> An hourly digest</label>\
     <label><input type=\"radio\" name=\"digest\" value=\"daily\"> A daily digest at \
     <input type=\"text\" name=\"at\" value=\"09:00\" size=\"5\" style=\"width:5em\"> on weekdays, time zone \
     <input type=\"text\" name=\"tz\" value=\"UTC\" style=\"width:12em\"></label>"
        .to_string()
}

/// The form of `POST /connect/start`.
#[derive(Debug, Deserialize)]
struct StartForm {
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    at: Option<String>,
    #[serde(default)]
    tz: Option<String>,
}

fn parse_digest(form: &StartForm) -> Result<Option<Value>, String> {
    match form.digest.as_deref().unwrap_or("none") {
        "none" => Ok(None),
        "hourly" => Ok(Some(json!({"every": "1h"}))),
        "daily" => {
            let at = form.at.as_deref().unwrap_or("09:00").trim();
            let valid_time = at.split_once(':').is_some_and(|(h, m)| {
                h.parse::<u8>().is_ok_and(|h| h < 24)
                    && m.len() == 2
                    && m.parse::<u8>().is_ok_and(|m| m < 60)
            });
            if !valid_time {
                return Err(format!("{at:?} is not a time of day such as 09:00"));
            }
            let tz = form.tz.as_deref().unwrap_or("UTC").trim();
            if jiff::tz::TimeZone::get(tz).is_err() {
                return Err(format!("{tz:?} is not a time zone such as Europe/Berlin"));
            }
            Ok(Some(
                json!({"at": at, "days": ["mon", "tue", "wed", "thu", "fri"], "tz": tz}),
            ))
        }
        other => Err(format!("unknown digest choice {other:?}")),
    }
}

async fn start_flow(State(app): State<Flows>, headers: HeaderMap, body: String) -> Response {
    let Some(app_id) = app.config.connect.app_id_or_dev(app.config.emulator()) else {
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Not configured",
            "<h1>Connecting is not set up</h1><p>The administrator has not set <code>connect.app_id</code>.</p>",
        );
    };
    let (state, browser) = match begin(&app, &headers, &body, None) {
        Ok(started) => started,
        Err(res) => return res,
    };
    let mut target =
        url::Url::parse(&connect_url(&app.config)).expect("connect.url was checked at start");
    target
        .query_pairs_mut()
        .append_pair("state", &state)
        .append_pair("app_id", &app_id)
        .append_pair("callback_url", &callback_url(&app.config));
    away(&app.config, &target, &browser)
}

/// Starts a flow from the /connect form (`body`: its `channel` and digest fields): stores its
/// choices under a fresh state bound to this browser; returns the state and the browser's
/// cookie value (for [`away`]).
#[allow(clippy::result_large_err)]
pub(crate) fn begin(
    app: &Flows,
    headers: &HeaderMap,
    body: &str,
    provider: Option<&str>,
) -> Result<(String, String), Response> {
    // Repeated `channel` fields: read the raw form.
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let channels: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "channel")
        .map(|(_, v)| v.clone())
        .collect();
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let form = StartForm {
        digest: get("digest"),
        at: get("at"),
        tz: get("tz"),
    };
    let digest = parse_digest(&form).map_err(|e| page(StatusCode::BAD_REQUEST, "Cannot connect", &format!("<h1>Cannot connect</h1><p class=\"error\">{}</p><p><a href=\"/connect\">Back</a></p>", esc(&e))))?;
    let browser = pages::cookie(headers, COOKIE)
        .filter(|c| c.len() >= 22)
        .unwrap_or_else(|| pages::token(16));
    let state = pages::token(24);
    let record = FlowState {
        browser: pages::digest(&browser),
        channels,
        digest,
        created_ms: now_ms(),
        provider: provider.map(str::to_string),
    };
    app.store
        .put_flow_state(&state, &record)
        .map_err(|e| crate::error::ApiError::internal(&e).into_response())?;
    Ok((state, browser))
}

/// The redirect to a provider's page that starts a flow, setting the browser's cookie.
pub(super) fn away(config: &Config, target: &url::Url, browser: &str) -> Response {
    let secure = if config.public_url().starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let mut res = Redirect::to(target.as_str()).into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!(
            "{COOKIE}={browser}; Path=/connect; HttpOnly; SameSite=Lax; Max-Age=600{secure}"
        ))
        .expect("a token is a valid header value"),
    );
    pages::no_referrer(&mut res);
    res
}

pub(crate) fn bad(title: &str, message: &str) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        title,
        &format!(
            "<h1>{}</h1><p class=\"error\">{}</p><p><a href=\"/connect\">Start again</a></p>",
            esc(title),
            esc(message)
        ),
    )
}

/// Checks a callback's state against this browser and consumes it. (The error is the page to
/// answer with; it is built on a rare path, so its size does not matter.)
///
/// `provider` is the flow whose callback this is (`None`: Office 365's), `who` the service's
/// name for messages.
#[allow(clippy::result_large_err)]
pub(crate) fn take_state(
    app: &Flows,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
    provider: Option<&str>,
    who: &str,
) -> Result<FlowState, Response> {
    let Some(state) = params.get("state").filter(|s| !s.is_empty()) else {
        return Err(bad(
            "Cannot connect",
            &format!("The answer from {who} carries no state. Start again from this page."),
        ));
    };
    let record = match app.store.flow_state(state) {
        Ok(Some(r)) => r,
        Ok(None) => {
            return Err(bad(
                "Cannot connect",
                "This link is unknown or was already used. Start again.",
            ))
        }
        Err(e) => return Err(crate::error::ApiError::internal(&e).into_response()),
    };
    let browser = pages::cookie(headers, COOKIE)
        .map(|c| pages::digest(&c))
        .unwrap_or_default();
    if record.provider.as_deref() != provider {
        // A state issued for another flow's callback: refused, and left for that flow.
        return Err(bad(
            "Cannot connect",
            "This link belongs to another way of connecting. Start again.",
        ));
    }
    if !bool::from(browser.as_bytes().ct_eq(record.browser.as_bytes())) {
        // A state started in another browser: refused, and left for its owner.
        return Err(bad(
            "Cannot connect",
            "This connection was started in another browser. Start again here.",
        ));
    }
    match app.store.take_flow_state(state) {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Err(bad(
                "Cannot connect",
                "This link was already used. Start again.",
            ))
        }
        Err(e) => return Err(crate::error::ApiError::internal(&e).into_response()),
    }
    if now_ms().saturating_sub(record.created_ms) > STATE_TTL_MS {
        return Err(bad(
            "Cannot connect",
            "This link expired (it lasts 10 minutes). Start again.",
        ));
    }
    Ok(record)
}

/// What Office 365's callback says, read from its query (the state is checked apart).
#[derive(Debug, PartialEq, Eq)]
pub enum CallbackAnswer {
    /// The user declined (`error=AccessDenied`).
    Declined,
    /// Another `error`.
    Error(String),
    /// A webhook URL to connect, and where it posts.
    Connect {
        /// `webhook_url`.
        webhook_url: String,
        /// `app_type`: mail, groups or teams.
        app_type: String,
        /// `group_name` (required but for mail).
        group_name: Option<String>,
        /// `user_objectId`.
        user_object_id: String,
    },
}

/// Reads the callback's parameters (the query, decoded): an error, or every parameter a
/// connection needs; `Err` says, for the page, what is missing or wrong.
pub fn read_callback(params: &HashMap<String, String>) -> Result<CallbackAnswer, String> {
    if let Some(error) = params.get("error") {
        return Ok(if error == "AccessDenied" {
            CallbackAnswer::Declined
        } else {
            CallbackAnswer::Error(error.clone())
        });
    }
    let given = |key: &str| params.get(key).filter(|v| !v.is_empty()).cloned();
    let mut missing: Vec<&str> = ["webhook_url", "app_type", "user_objectId"]
        .into_iter()
        .filter(|k| given(k).is_none())
        .collect();
    let app_type = given("app_type").unwrap_or_default();
    if !app_type.is_empty() && !matches!(app_type.as_str(), "mail" | "groups" | "teams") {
        return Err(format!(
            "app_type {app_type:?} is not mail, groups or teams."
        ));
    }
    let group_name = given("group_name");
    if app_type != "mail" && !app_type.is_empty() && group_name.is_none() {
        missing.push("group_name");
    }
    match (given("webhook_url"), given("user_objectId")) {
        (Some(webhook_url), Some(user_object_id)) if missing.is_empty() => {
            Ok(CallbackAnswer::Connect {
                webhook_url,
                app_type,
                group_name,
                user_object_id,
            })
        }
        _ => Err(format!(
            "The answer from Office 365 lacks {}.",
            missing.join(", ")
        )),
    }
}

async fn receive_callback(
    State(app): State<Flows>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params: HashMap<String, String> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let record = match take_state(&app, &params, &headers, None, "Office 365") {
        Ok(r) => r,
        Err(res) => return res,
    };
    let (webhook_url, app_type, group_name, user_object_id) = match read_callback(&params) {
        Ok(CallbackAnswer::Connect {
            webhook_url,
            app_type,
            group_name,
            user_object_id,
        }) => (webhook_url, app_type, group_name, user_object_id),
        Ok(CallbackAnswer::Declined) => {
            return page(StatusCode::OK, "Not connected", "<h1>Not connected</h1><p>You declined in Office 365, so nothing was connected.</p><p><a href=\"/connect\">Start again</a></p>")
        }
        Ok(CallbackAnswer::Error(error)) => {
            return bad(
                "Not connected",
                &format!("Office 365 answered with the error {error}. Nothing was connected."),
            )
        }
        Err(why) => return bad("Cannot connect", &why),
    };
    let url = match app.policy.check_kind(&webhook_url, CardKind::Teams) {
        Ok(u) => u,
        Err(e) => {
            return bad(
                "Cannot connect",
                &format!("The webhook URL is not accepted: {e}."),
            )
        }
    };
    let conn = Connection {
        digest: record.digest,
        ..Connection::new(
            group_name.clone().unwrap_or_else(|| "Inbox".into()),
            url.as_str(),
            CardKind::Teams,
            record.channels,
            ConnectionOrigin {
                app_type: Some(app_type),
                group_name,
                user_object_id: Some(user_object_id),
                ..ConnectionOrigin::via("connect")
            },
        )
    };
    keep(&app, conn).await
}

/// Stores a new connection durably and answers **302** to its done page, whose URL carries no
/// webhook data.
pub(super) async fn keep(app: &Flows, conn: Connection) -> Response {
    if let Err(e) = app.connections.put(conn.clone()) {
        return crate::error::ApiError::internal(&e).into_response();
    }
    if let Err(e) = app.store.commit().await {
        return crate::error::ApiError::internal(&e).into_response();
    }
    let o = &conn.origin;
    tracing::info!(connection = %conn.id, kind = conn.kind.as_str(), via = %o.via, app_type = ?o.app_type, group = ?o.group_name, channel = ?o.channel, url = %crate::connections::mask_url(&conn.url), "connected");
    let mut res = Redirect::to(&format!("/connect/done/{}", conn.id)).into_response();
    *res.status_mut() = StatusCode::FOUND;
    pages::no_referrer(&mut res);
    res
}

async fn done_page(State(app): State<Flows>, Path(id): Path<String>) -> Response {
    let Some(conn) = ConnectionId::parse(&id).and_then(|id| app.connections.get(&id)) else {
        return page(
            StatusCode::NOT_FOUND,
            "Not found",
            "<h1>No such connection</h1>",
        );
    };
    let channels = if conn.channels.is_empty() {
        "every channel".to_string()
    } else {
        conn.channels.join(", ")
    };
    let digest = match &conn.digest {
        None => "cards as they happen".to_string(),
        Some(d) => format!("a digest: <code>{}</code>", esc(&d.to_string())),
    };
    let body = format!(
        "{banner}<h1 class=\"ok\">Connected</h1><p><strong>{name}</strong> ({app_type}) now receives {channels}, {digest}.</p>\
         <p class=\"muted\">Connection <code>{id}</code>. The administrator can pause or remove it on \
         <a href=\"/connections\">/connections</a>.</p>",
        banner = banner(&app.config),
        name = esc(&conn.name),
        app_type = esc(&match (&conn.origin.app_type, &conn.origin.channel) {
            (Some(t), _) => t.clone(),
            (None, Some(c)) => format!("{} channel {c}", conn.kind.as_str()),
            (None, None) => conn.origin.via.clone(),
        }),
        channels = esc(&channels),
        id = conn.id,
    );
    page(StatusCode::OK, "Connected", &body)
}

/// The form of `POST /connect/paste`.
#[derive(Debug, Deserialize)]
struct PasteForm {
    name: String,
    url: String,
    /// A kind's name, or empty: the URL's host says.
    #[serde(default)]
    kind: String,
    #[serde(default)]
    channels: String,
    token: String,
    /// Mattermost: a bot's token and channel id (both, or neither).
    #[serde(default)]
    bot_token: String,
    #[serde(default)]
    bot_channel: String,
}

async fn paste_url(State(app): State<Flows>, Form(form): Form<PasteForm>) -> Response {
    let Some(admin) = app.config.admin_token.as_deref() else {
        return bad(
            "Cannot add",
            "The admin API is off (no admin_token), so URLs cannot be pasted.",
        );
    };
    if !bool::from(form.token.trim().as_bytes().ct_eq(admin.as_bytes())) {
        return page(StatusCode::UNAUTHORIZED, "Cannot add", "<h1>Cannot add</h1><p class=\"error\">The admin token is wrong.</p><p><a href=\"/connect\">Back</a></p>");
    }
    if form.name.trim().is_empty() {
        return bad("Cannot add", "The connection needs a name.");
    }
    let url = match app.policy.check(&form.url) {
        Ok(u) => u,
        Err(e) => return bad("Cannot add", &format!("The URL is not accepted: {e}.")),
    };
    let kind = match form.kind.trim() {
        "" => crate::connections::kind_of_url(&url).unwrap_or(CardKind::Workflow),
        k => match CardKind::parse(k) {
            Some(k) => k,
            None => return bad("Cannot add", &format!("{k:?} is not a kind of chat.")),
        },
    };
    if let Err(e) = app.policy.check_kind(url.as_str(), kind) {
        return bad("Cannot add", &format!("The URL is not accepted: {e}."));
    }
    let channels: Vec<String> = form
        .channels
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect();
    let bot = match (form.bot_token.trim(), form.bot_channel.trim()) {
        ("", "") => None,
        (token, channel) => {
            let input = super::api::BotIn {
                token: token.to_string(),
                channel: channel.to_string(),
            };
            match super::api::bot_for(kind, url.as_str(), &input) {
                Ok(bot) => Some(bot),
                Err(e) => return bad("Cannot add", &e.detail),
            }
        }
    };
    let conn = Connection {
        bot,
        ..Connection::new(
            form.name.trim(),
            url.as_str(),
            kind,
            channels,
            ConnectionOrigin::via("paste"),
        )
    };
    keep(&app, conn).await
}

async fn logo(State(app): State<Flows>) -> Response {
    match &app.config.connect.logo {
        None => pages::asset("logo.svg"),
        Some(path) => {
            let path = app.config.resolve(path);
            let ty = match path
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                Some("png") => "image/png",
                Some("gif") => "image/gif",
                _ => "image/jpeg",
            };
            match tokio::fs::read(&path).await {
                Ok(bytes) => ([(header::CONTENT_TYPE, ty)], bytes).into_response(),
                Err(_) => pages::asset("logo.svg"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_choices() {
        let f = |d: &str, at: &str, tz: &str| {
            parse_digest(&StartForm {
                digest: Some(d.into()),
                at: Some(at.into()),
                tz: Some(tz.into()),
            })
        };
        assert_eq!(f("none", "", ""), Ok(None));
        assert_eq!(f("hourly", "", ""), Ok(Some(json!({"every": "1h"}))));
        assert_eq!(
            f("daily", "08:30", "Europe/Berlin"),
            Ok(Some(
                json!({"at": "08:30", "days": ["mon", "tue", "wed", "thu", "fri"], "tz": "Europe/Berlin"})
            ))
        );
        assert!(f("daily", "25:00", "UTC").is_err());
        assert!(f("daily", "09:00", "Mars/Olympus").is_err());
    }

    #[test]
    fn the_callback_says_declined_an_error_or_everything_a_connection_needs() {
        let q = |query: &str| {
            let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
            read_callback(&params)
        };
        assert_eq!(
            q("state=s&error=AccessDenied"),
            Ok(CallbackAnswer::Declined)
        );
        assert_eq!(
            q("error=ServerError"),
            Ok(CallbackAnswer::Error("ServerError".into()))
        );
        assert_eq!(
            q("webhook_url=https%3A%2F%2Fx&app_type=teams&group_name=Ops&user_objectId=u"),
            Ok(CallbackAnswer::Connect {
                webhook_url: "https://x".into(),
                app_type: "teams".into(),
                group_name: Some("Ops".into()),
                user_object_id: "u".into(),
            })
        );
        // An inbox has no group.
        assert!(matches!(
            q("webhook_url=https%3A%2F%2Fx&app_type=mail&user_objectId=u"),
            Ok(CallbackAnswer::Connect {
                group_name: None,
                ..
            })
        ));
        assert_eq!(
            q("webhook_url=&app_type=teams&user_objectId=u"),
            Err("The answer from Office 365 lacks webhook_url, group_name.".into())
        );
        assert_eq!(
            q("webhook_url=h&app_type=fax&user_objectId=u"),
            Err("app_type \"fax\" is not mail, groups or teams.".into())
        );
    }
}
