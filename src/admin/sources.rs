//! The `/sources` page and its flow: a GitHub App made from a manifest for a GitHub source,
//! whose webhook secret then verifies that source's deliveries (a GitLab source's hooks, made
//! by token: [`super::gitlab`]).
//!
//! In: a signed-in admin's choices (the source, a personal account or an organization, the
//! app's name); GitHub's redirect back to `/connect/github/callback` with `code` and `state`.
//! Out: the manifest POSTed by the browser to GitHub's new-app page; the app kept (its secrets
//! sealed at rest), and the browser sent to the app's installation page. Guarantees: the state
//! is as for Connect (random, 10 minutes, single use, bound to the browser, good only at this
//! flow's callback, naming its source); the start is a signed-in admin's, with the session's
//! CSRF token; every failure is a page that says what happened and stores nothing; the code is
//! exchanged server side, never logged; the app's secrets are never shown.

use std::collections::HashMap;

use axum::extract::{FromRef, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use super::pages::{events_of, login_page, signed_form, Pages};
use crate::connect::flow::{bad, begin, take_state, COOKIE};
use crate::connect::github;
use crate::event::SourceKind;
use crate::html::{esc, page};

/// The routes of `/sources` and the app flow's callback.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Pages: FromRef<S>,
{
    Router::new()
        .route("/sources", get(sources_page))
        .route("/sources/{name}/github-app", post(start))
        .route("/connect/github/callback", get(callback))
}

/// The flow name a state of `source`'s app flow carries.
fn flow_of(source: &str) -> String {
    format!("github-app:{source}")
}

/// The Connect flows' part of the pages' state (their states and their cookie).
fn flows_of(app: &Pages) -> crate::connect::flow::Flows {
    crate::connect::flow::Flows {
        config: app.config.clone(),
        pipeline: app.pipeline.clone(),
        store: app.store.clone(),
        connections: app.connections.clone(),
        policy: app.policy.clone(),
        http: app.http.clone(),
    }
}

async fn sources_page(State(app): State<Pages>, headers: HeaderMap) -> Response {
    let Some(session) = app.sessions.get(&headers) else {
        return login_page(&app.config, None, "/sources");
    };
    let (apps, hooks) = match (app.source_secrets.apps(), app.source_secrets.hooks()) {
        (Ok(a), Ok(h)) => (a, h),
        (Err(e), _) | (_, Err(e)) => return crate::error::ApiError::internal(&e).into_response(),
    };
    let host = url::Url::parse(&app.config.public_url())
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    let rows: String = app
        .config
        .sources
        .iter()
        .map(|(name, s)| {
            let hooked = hooks.iter().filter(|h| h.source == *name).count();
            let verified = match (&s.secret, s.token.is_some(), apps.iter().find(|a| a.source == *name)) {
                (Some(_), _, _) => "its configured secret".to_string(),
                (None, _, None) if hooked > 0 => format!(
                    "the tokens of its GitLab hooks ({hooked}), each made with its own"
                ),
                (None, _, Some(a)) => format!(
                    "the secret of the GitHub App <a href=\"{}\" rel=\"noreferrer\">{}</a> (owner {})",
                    esc(&a.html_url),
                    esc(&a.name),
                    esc(&a.owner)
                ),
                (None, true, None) => "its bearer token".to_string(),
                (None, false, None) if s.app => "<span class=\"error\">nothing yet: it takes no delivery until its app is made</span>".to_string(),
                (None, false, None) => "<span class=\"error\">nothing: it takes unsigned deliveries</span>".to_string(),
            };
            let create = if s.kind == SourceKind::Github && s.secret.is_none() {
                let form = format!(
                    "<form method=\"post\" action=\"/sources/{n}/github-app\" class=\"inline\">\
                     <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                     <label>Name <input type=\"text\" name=\"app_name\" value=\"cardwire ({host})\"></label>\
                     <label><input type=\"radio\" name=\"owner\" value=\"user\" checked> my account</label>\
                     <label><input type=\"radio\" name=\"owner\" value=\"org\"> the organization \
                     <input type=\"text\" name=\"org\" placeholder=\"octo-org\"></label>\
                     <button type=\"submit\" id=\"create-{n}\">Create a GitHub App</button></form>",
                    n = esc(name),
                    csrf = esc(&session.csrf),
                    host = esc(&host),
                );
                if apps.iter().any(|a| a.source == *name) {
                    format!("<details><summary>Make another app (it replaces this one)</summary>{form}</details>")
                } else {
                    form
                }
            } else if s.kind == SourceKind::Gitlab && s.secret.is_none() {
                super::gitlab::section(&app, name, &session.csrf, &hooks)
            } else {
                String::new()
            };
            let installed = apps
                .iter()
                .find(|a| a.source == *name)
                .map(|a| format!("<div class=\"installed\">Installed: {}</div>", installations(&a.installations)))
                .unwrap_or_default();
            format!(
                "<section class=\"source\" id=\"source-{n}\"><h2><code>/hooks/{n}</code> <span class=\"muted\">{kind}</span></h2>\
                 <p>Verified with {verified}.</p>{installed}{create}</section>",
                n = esc(name),
                kind = s.kind.as_str(),
            )
        })
        .collect();
    let body = format!(
        "<p><a href=\"/connections\">Connections</a></p><h1>Sources</h1>\
         <p class=\"muted\">Where upstreams send, and how cardwire knows a delivery is theirs. \
         A GitHub App made here sends the events your rules read, signed with a secret GitHub \
         makes and cardwire keeps sealed; a GitLab hook added here carries a token cardwire makes \
         and keeps sealed: nothing to paste.</p>\
         {rows}"
    );
    page(StatusCode::OK, "Sources", &body)
}

/// Where an app is installed, for /sources: each installation's account and repositories
/// (all, or those selected), or that it was removed.
fn installations(list: &[crate::store::Installation]) -> String {
    if list.is_empty() {
        return "<span class=\"muted\">not yet</span>".into();
    }
    list.iter()
        .map(|i| {
            let what = if i.removed {
                "removed".to_string()
            } else if i.selection == "all" {
                "all repositories".to_string()
            } else {
                i.repositories.join(", ")
            };
            format!(
                "<p class=\"installation{}\">{}: {}</p>",
                if i.removed { " removed" } else { "" },
                esc(&i.account),
                esc(&what)
            )
        })
        .collect()
}

/// Starts the flow: checks the session and its CSRF token, keeps a state bound to this
/// browser, and answers a page whose form POSTs the manifest to GitHub's new-app page (sent at
/// once by the page's script; a button without one).
async fn start(
    State(app): State<Pages>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: String,
) -> Response {
    let form = match signed_form(&app, &headers, &body) {
        Ok(f) => f,
        Err(res) => return *res,
    };
    let get = |k: &str| form.get(k).map(|v| v.trim()).unwrap_or_default();
    let Some(source) = app.config.sources.get(&name) else {
        return bad(
            "Cannot create the app",
            &format!("There is no source {name:?}."),
        );
    };
    if source.kind != SourceKind::Github {
        return bad(
            "Cannot create the app",
            &format!(
                "{name} is a {} source: GitHub Apps send to GitHub sources.",
                source.kind.as_str()
            ),
        );
    }
    let org = match get("owner") {
        "org" if get("org").is_empty() => {
            return bad(
                "Cannot create the app",
                "Name the organization the app belongs to.",
            )
        }
        "org" => Some(get("org").to_string()),
        _ => None,
    };
    let app_name = match get("app_name") {
        "" => "cardwire".to_string(),
        n => n.chars().take(34).collect(),
    };
    let flows = flows_of(&app);
    let (state, browser) = match begin(&flows, &headers, "", Some(&flow_of(&name))) {
        Ok(started) => started,
        Err(res) => return res,
    };
    let web = github::web_url(&app.config, &name);
    let Ok(target) = github::new_app_url(&web, org.as_deref(), &state) else {
        return bad(
            "Cannot create the app",
            &format!("{web} is not a URL GitHub answers at."),
        );
    };
    let manifest = github::manifest(&app.config, &name, &app_name, &events_of(&app, &name));
    let body = format!(
        "<h1>To GitHub</h1><p>Your browser takes the app's manifest to GitHub, which shows the app \
         before making it.</p>\
         <form method=\"post\" action=\"{action}\" id=\"manifest-form\">\
         <input type=\"hidden\" name=\"manifest\" value=\"{manifest}\">\
         <button type=\"submit\" id=\"to-github\">Continue to GitHub</button></form>\
         <script src=\"/assets/submit.js\"></script>",
        action = esc(target.as_str()),
        manifest = esc(&manifest.to_string()),
    );
    let mut res = page(StatusCode::OK, "To GitHub", &body);
    let secure = if app.config.public_url().starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!(
            "{COOKIE}={browser}; Path=/connect; HttpOnly; SameSite=Lax; Max-Age=600{secure}"
        ))
        .expect("a token is a valid header value"),
    );
    crate::html::no_referrer(&mut res);
    res
}

/// GitHub's redirect back: the state checked and taken, the code exchanged at
/// `POST /app-manifests/{code}/conversions`, the app kept, and the browser sent on to install
/// it.
async fn callback(
    State(app): State<Pages>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let flows = flows_of(&app);
    // Which source's flow this is, from the state itself (a state names its flow).
    let source = params
        .get("state")
        .and_then(|s| app.store.flow_state(s).ok().flatten())
        .and_then(|r| r.provider)
        .and_then(|p| p.strip_prefix("github-app:").map(str::to_string));
    let Some(source) = source else {
        return bad(
            "Cannot create the app",
            "This link is unknown or was already used. Start again from /sources.",
        );
    };
    if let Err(res) = take_state(&flows, &params, &headers, Some(&flow_of(&source)), "GitHub") {
        return res;
    }
    let Some(code) = params.get("code").filter(|c| !c.is_empty()) else {
        return bad(
            "Cannot create the app",
            "GitHub sent no code: the app was not made. Start again from /sources.",
        );
    };
    let api = github::api_url(&github::web_url(&app.config, &source));
    let url = format!(
        "{api}/app-manifests/{}/conversions",
        url::form_urlencoded::byte_serialize(code.as_bytes()).collect::<String>()
    );
    let answer = app
        .http
        .post(&url)
        .header(header::ACCEPT, "application/vnd.github+json")
        .send()
        .await;
    let (status, body) = match answer {
        Ok(res) => (res.status().as_u16(), res.text().await.unwrap_or_default()),
        Err(_) => {
            tracing::warn!(source, "GitHub cannot be reached for the app's conversion");
            return bad(
                "Cannot create the app",
                "GitHub cannot be reached. Nothing was kept; start again from /sources once it answers.",
            );
        }
    };
    let made = match github::read_conversion(&source, status, &body, crate::store::now_ms()) {
        Ok(a) => a,
        Err(why) => {
            tracing::warn!(source, error = %why, "GitHub refused the app's conversion");
            let hint = match status {
                404 => " (the code is unknown, or older than an hour)",
                422 => " (the code was used already)",
                _ => "",
            };
            return bad(
                "Cannot create the app",
                &format!("GitHub refused the code: {why}{hint}. Nothing was kept; start again from /sources."),
            );
        }
    };
    if let Err(e) = app.source_secrets.put(&made) {
        return crate::error::ApiError::internal(&e).into_response();
    }
    tracing::info!(source, app = %made.slug, owner = %made.owner, "GitHub App made; its webhook secret verifies the source's deliveries");
    let mut res = Redirect::to(&format!("{}/installations/new", made.html_url)).into_response();
    crate::html::no_referrer(&mut res);
    res
}
