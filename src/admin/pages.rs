//! The `/connections` pages: sign in with the admin token (a session cookie follows), see every
//! connection with where it came from, and pause, resume or remove it.
//!
//! Sessions live in memory (signing in again after a restart is the price of keeping no session
//! secrets on disk), last 12 hours, and travel in an HttpOnly, SameSite=Strict cookie; every
//! form that changes something also carries the session's CSRF token.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Form, FromRef, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::config::Config;
use crate::connect::api::ConnectionPatch;
use crate::connections::mask_url;
use crate::html::{esc, page};
use crate::ids::ConnectionId;

use crate::gate::{Sessions, COOKIE};

/// What the admin pages (these and the home page) reach.
#[derive(Clone)]
pub struct Pages {
    /// The settings.
    pub config: Arc<Config>,
    /// Signed-in sessions.
    pub sessions: Arc<Sessions>,
    /// Durable state.
    pub store: crate::store::SharedStore,
    /// The connections, cached.
    pub connections: Arc<crate::connections::Connections>,
    /// The delivery workers (woken when a connection resumes).
    pub deliverer: Arc<crate::deliver::Deliverer>,
    /// Which webhook URLs are acceptable.
    pub policy: Arc<crate::deliver::policy::TargetPolicy>,
    /// The rules and templates in force (the events a source's app takes).
    pub pipeline: Arc<arc_swap::ArcSwap<crate::pipeline::Pipeline>>,
    /// The sources' GitHub Apps.
    pub source_secrets: Arc<crate::sources::SourceSecrets>,
    /// The HTTP client of the code exchanges.
    pub http: reqwest::Client,
}

impl Pages {
    fn registry(&self) -> crate::deliver::api::Registry {
        crate::deliver::api::Registry {
            store: self.store.clone(),
            connections: self.connections.clone(),
            deliverer: self.deliverer.clone(),
            policy: self.policy.clone(),
        }
    }
}

/// The routes under /connections.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Pages: FromRef<S>,
{
    Router::new()
        .route("/connections", get(list_page))
        .route("/connections/login", post(login))
        .route("/connections/logout", post(logout))
        .route("/connections/{id}", get(detail_page))
        .route("/connections/{id}/{action}", post(act))
}

/// The sign-in page; after signing in the browser goes to `next` (`/connections` or
/// `/playground`).
pub fn login_page(config: &Config, error: Option<&str>, next: &str) -> Response {
    if config.admin_token.is_none() {
        return page(
            StatusCode::NOT_FOUND,
            "Connections",
            "<h1>Connections</h1><p>The admin pages are off: set <code>admin_token</code> in the config \
             (or start with <code>--admin-token</code>).</p>",
        );
    }
    let error = error
        .map(|e| format!("<p class=\"error\">{}</p>", esc(e)))
        .unwrap_or_default();
    page(
        if error.is_empty() { StatusCode::OK } else { StatusCode::UNAUTHORIZED },
        "Sign in",
        &format!(
            "<h1>Connections</h1>{error}<form method=\"post\" action=\"/connections/login\">\
             <input type=\"hidden\" name=\"next\" value=\"{next}\">\
             <label>Admin token <input type=\"password\" name=\"token\" id=\"token\" required autofocus></label>\
             <button type=\"submit\" id=\"login\">Sign in</button></form>"
        ),
    )
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    #[serde(default)]
    next: Option<String>,
}

/// Where a sign-in may lead: only our own pages, never an open redirect.
fn next_page(next: Option<&str>) -> &'static str {
    match next {
        Some("/playground") => "/playground",
        Some("/sources") => "/sources",
        Some("/") => "/",
        _ => "/connections",
    }
}

async fn login(State(app): State<Pages>, Form(f): Form<LoginForm>) -> Response {
    let Some(admin) = app.config.admin_token.as_deref() else {
        return login_page(&app.config, None, "/connections");
    };
    if !bool::from(f.token.trim().as_bytes().ct_eq(admin.as_bytes())) {
        return login_page(
            &app.config,
            Some("The admin token is wrong."),
            next_page(f.next.as_deref()),
        );
    }
    let (id, _) = app.sessions.start();
    let secure = if app.config.public_url().starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let mut res = Redirect::to(next_page(f.next.as_deref())).into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!(
            "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200{secure}"
        ))
        .expect("a token is a valid header value"),
    );
    res
}

async fn logout(State(app): State<Pages>, headers: HeaderMap) -> Response {
    app.sessions.end(&headers);
    let mut res = Redirect::to("/connections").into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("cw_admin=; Path=/; Max-Age=0"),
    );
    res
}

fn when(ms: Option<u64>) -> String {
    ms.and_then(|ms| jiff::Timestamp::from_millisecond(ms as i64).ok())
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "never".into())
}

/// What a later card with the same key does on this connection (its chat, its bot, a Discord
/// forum), as a sentence.
fn keyed_cards(c: &crate::store::Connection) -> String {
    use crate::deliver::updates::{can, effective};
    use crate::render::Update;
    let can = can(c.kind, c.bot.is_some(), c.forum);
    let says = |u: Update| match effective(u, can) {
        Update::Replace => "edit the first message",
        Update::Reply => "reply in its thread",
        Update::New => "post anew",
    };
    let how = match (c.kind, c.bot.is_some()) {
        (crate::render::CardKind::Slack | crate::render::CardKind::Mattermost, true) => {
            " (through its bot)"
        }
        _ => "",
    };
    format!(
        "replace: {}; reply: {}{how}",
        says(Update::Replace),
        says(Update::Reply)
    )
}

fn origin(c: &crate::store::Connection) -> String {
    match c.origin.via.as_str() {
        "connect" => format!(
            "Office 365: {}{}",
            esc(c.origin.app_type.as_deref().unwrap_or("?")),
            c.origin
                .group_name
                .as_deref()
                .map(|g| format!(", {}", esc(g)))
                .unwrap_or_else(|| " (inbox)".into())
        ),
        "slack" | "discord" => {
            let o = &c.origin;
            let place = o.team_name.as_deref().or(o.team_id.as_deref());
            let channel = o
                .channel
                .as_deref()
                .or(o.channel_id.as_deref())
                .unwrap_or("?");
            let settings = o
                .configuration_url
                .as_deref()
                .map(|u| {
                    format!(
                        " · <a href=\"{}\" rel=\"noreferrer\">its settings there</a>",
                        esc(u)
                    )
                })
                .unwrap_or_default();
            format!(
                "Add to {}: {}{}{settings}",
                if o.via == "slack" { "Slack" } else { "Discord" },
                esc(channel),
                place.map(|p| format!(" in {}", esc(p))).unwrap_or_default()
            )
        }
        "paste" => format!("a pasted {} URL", c.kind.as_str()),
        _ => "the admin API".into(),
    }
}

async fn list_page(State(app): State<Pages>, headers: HeaderMap) -> Response {
    let Some(session) = app.sessions.get(&headers) else {
        return login_page(&app.config, None, "/connections");
    };
    let rows: String = app
        .connections
        .all()
        .iter()
        .map(|c| {
            let stats = app.connections.stats(&c.id);
            format!(
                "<tr id=\"{id}\"><td><a href=\"/connections/{id}\">{name}</a><br><span class=\"muted\">{url}</span></td>\
                 <td>{kind}</td><td>{channels}</td><td>{origin}</td><td class=\"state\">{state}</td><td>{buttons}</td></tr>",
                id = c.id,
                name = esc(&c.name),
                url = esc(&mask_url(&c.url)),
                kind = c.kind.as_str(),
                channels = if c.channels.is_empty() { "all".into() } else { esc(&c.channels.join(", ")) },
                origin = origin(c),
                state = match (&c.broken, c.paused) {
                    (Some(why), _) => format!("<span class=\"error\">broken: {}</span>", esc(why)),
                    (None, true) => format!("paused ({} skipped)", stats.skipped),
                    (None, false) => "active".into(),
                },
                buttons = buttons(&c.id, c.paused, &session.csrf),
            )
        })
        .collect();
    let table = if rows.is_empty() {
        "<p class=\"muted\">No connections yet: <a href=\"/connect\">connect one</a>.</p>"
            .to_string()
    } else {
        format!("<table><tr><th>Connection</th><th>Kind</th><th>Channels</th><th>From</th><th>State</th><th></th></tr>{rows}</table>")
    };
    page(
        StatusCode::OK,
        "Connections",
        &format!(
            "<h1>Connections</h1>{table}<p><a href=\"/connect\">Connect another</a></p>\
             <form method=\"post\" action=\"/connections/logout\"><button class=\"secondary\">Sign out</button></form>"
        ),
    )
}

fn buttons(id: &ConnectionId, paused: bool, csrf: &str) -> String {
    let form = |action: &str, label: &str, class: &str| {
        format!(
            "<form method=\"post\" action=\"/connections/{id}/{action}\" style=\"display:inline\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button class=\"{class}\" name=\"do\" value=\"{action}\">{label}</button></form> "
        )
    };
    let toggle = if paused {
        form("resume", "Resume", "")
    } else {
        form("pause", "Pause", "secondary")
    };
    format!("{toggle}{}", form("remove", "Remove", "danger"))
}

async fn detail_page(
    State(app): State<Pages>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some(session) = app.sessions.get(&headers) else {
        return login_page(&app.config, None, "/connections");
    };
    let Some(c) = ConnectionId::parse(&id).and_then(|id| app.connections.get(&id)) else {
        return page(
            StatusCode::NOT_FOUND,
            "Not found",
            "<h1>No such connection</h1><p><a href=\"/connections\">All connections</a></p>",
        );
    };
    let stats = app.connections.stats(&c.id);
    let body = format!(
        "<p><a href=\"/connections\">All connections</a></p><h1>{name}</h1><dl class=\"facts\">\
         <dt>From</dt><dd>{origin}</dd><dt>App type</dt><dd>{app_type}</dd><dt>Group</dt><dd>{group}</dd>\
         <dt>Kind</dt><dd>{kind}</dd><dt>URL</dt><dd>{url}</dd><dt>Channels</dt><dd>{channels}</dd>\
         <dt>Digest</dt><dd>{digest}</dd><dt>Cards with a key</dt><dd>{keyed}</dd>\
         <dt>Created</dt><dd>{created}</dd><dt>Last delivery</dt><dd>{last}</dd>\
         <dt>State</dt><dd>{state}</dd></dl>{buttons}",
        name = esc(&c.name),
        origin = origin(&c),
        app_type = esc(c.origin.app_type.as_deref().unwrap_or("—")),
        group = esc(c.origin.group_name.as_deref().unwrap_or("—")),
        kind = c.kind.as_str(),
        url = esc(&mask_url(&c.url)),
        channels = if c.channels.is_empty() { "all".into() } else { esc(&c.channels.join(", ")) },
        digest = c.digest.as_ref().map(|d| esc(&d.to_string())).unwrap_or_else(|| "none".into()),
        keyed = esc(&keyed_cards(&c)),
        created = when(Some(c.created_ms)),
        last = when(stats.last_delivery_ms),
        state = match (&c.broken, c.paused) {
            (Some(why), _) => format!("<span class=\"error\">broken: {}</span> — fix the URL's side, then retry its dead letters", esc(why)),
            (None, true) => format!(
                "paused, {} skipped",
                crate::render::plural_count(stats.skipped as usize, "card")
            ),
            (None, false) => "active".into(),
        },
        buttons = buttons(&c.id, c.paused, &session.csrf),
    );
    page(StatusCode::OK, &c.name, &body)
}

#[derive(Deserialize)]
struct ActForm {
    csrf: String,
}

async fn act(
    State(app): State<Pages>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Form(f): Form<ActForm>,
) -> Response {
    let Some(session) = app.sessions.get(&headers) else {
        return login_page(&app.config, None, "/connections");
    };
    if !bool::from(f.csrf.as_bytes().ct_eq(session.csrf.as_bytes())) {
        return page(
            StatusCode::FORBIDDEN,
            "Refused",
            "<h1>Refused</h1><p class=\"error\">This form is stale; reload the page.</p>",
        );
    }
    let Some(id) = ConnectionId::parse(&id) else {
        return page(
            StatusCode::NOT_FOUND,
            "Not found",
            "<h1>No such connection</h1>",
        );
    };
    let result = match action.as_str() {
        "pause" | "resume" => {
            let patch = ConnectionPatch {
                paused: Some(action == "pause"),
                channels: None,
                digest: None,
                limit: None,
                forum: None,
                bot: None,
            };
            crate::connect::api::change_connection(&app.registry(), &id, patch)
                .await
                .map(drop)
        }
        "remove" => match app.connections.remove(&id) {
            Ok(true) => app
                .store
                .commit()
                .await
                .map_err(|e| crate::error::ApiError::internal(&e)),
            Ok(false) => Err(crate::error::ApiError::not_found("no such connection")),
            Err(e) => Err(crate::error::ApiError::internal(&e)),
        },
        _ => Err(crate::error::ApiError::not_found("no such action")),
    };
    match result {
        Ok(()) => Redirect::to("/connections").into_response(),
        Err(e) => page(
            e.status,
            "Not done",
            &format!("<h1>Not done</h1><p class=\"error\">{}</p>", esc(&e.detail)),
        ),
    }
}

/// A /sources form's fields, after the session and its CSRF token are checked; `Err`: the page
/// to answer (sign in, or a stale form).
pub(super) fn signed_form(
    app: &Pages,
    headers: &HeaderMap,
    body: &str,
) -> Result<HashMap<String, String>, Box<Response>> {
    let Some(session) = app.sessions.get(headers) else {
        return Err(Box::new(login_page(&app.config, None, "/sources")));
    };
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let csrf = form.get("csrf").map(String::as_str).unwrap_or_default();
    if !bool::from(csrf.as_bytes().ct_eq(session.csrf.as_bytes())) {
        return Err(Box::new(page(
            StatusCode::FORBIDDEN,
            "Refused",
            "<h1>Refused</h1><p class=\"error\">This form is stale; reload the page.</p>",
        )));
    }
    Ok(form)
}

/// The events `source`'s enabled rules take.
pub(super) fn events_of(app: &Pages, source: &str) -> Vec<String> {
    app.pipeline
        .load()
        .rules
        .rules()
        .iter()
        .filter(|r| r.source == source && r.enabled)
        .map(|r| r.event.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Connection, ConnectionOrigin};

    fn made(via: &str, kind: crate::render::CardKind, origin: ConnectionOrigin) -> Connection {
        Connection::new(
            "n",
            "https://hooks.slack.com/services/T/B/x",
            kind,
            vec![],
            ConnectionOrigin {
                via: via.into(),
                ..origin
            },
        )
    }

    #[test]
    fn each_connection_says_where_it_came_from() {
        use crate::render::CardKind;
        let slack = made(
            "slack",
            CardKind::Slack,
            ConnectionOrigin {
                channel: Some("#deploys".into()),
                team_name: Some("Acme <Eng>".into()),
                configuration_url: Some("https://acme.slack.com/services/B1".into()),
                ..Default::default()
            },
        );
        assert_eq!(
            origin(&slack),
            "Add to Slack: #deploys in Acme &lt;Eng&gt; · <a href=\"https://acme.slack.com/services/B1\" rel=\"noreferrer\">its settings there</a>"
        );
        let discord = made(
            "discord",
            CardKind::Discord,
            ConnectionOrigin {
                channel_id: Some("345".into()),
                team_id: Some("290".into()),
                ..Default::default()
            },
        );
        assert_eq!(origin(&discord), "Add to Discord: 345 in 290");
        let pasted = made("paste", CardKind::GoogleChat, ConnectionOrigin::default());
        assert_eq!(origin(&pasted), "a pasted google_chat URL");
        assert_eq!(
            keyed_cards(&pasted),
            "replace: reply in its thread; reply: reply in its thread"
        );
        let bot = Connection {
            bot: Some(crate::store::Bot {
                token: "t".into(),
                api: "https://slack.com/api/".into(),
                channel: "C1".into(),
            }),
            ..slack.clone()
        };
        assert_eq!(keyed_cards(&slack), "replace: post anew; reply: post anew");
        assert_eq!(
            keyed_cards(&bot),
            "replace: edit the first message; reply: reply in its thread (through its bot)"
        );
    }
}
