//! A local stand-in for GitHub's side of "Create a GitHub App" from a manifest
//! (`connect.emulator: true`; on by default without a config file), so that the flow on
//! /sources runs without an account or a network.
//!
//! In: the browser with a manifest; cardwire's code conversion. Out: pages, GitHub's answers,
//! and signed pushes. Guarantees: it answers as GitHub documents
//! (`shared/reference/message-lifecycle.md`, "GitHub App from a manifest"):
//!
//! - `POST /emulator/github/settings/apps/new?state=…` (and
//!   `/emulator/github/organizations/{org}/settings/apps/new`) with the form field `manifest`
//!   shows the app that will be made (its name, webhook, events, permissions), Create or
//!   Cancel; Create redirects to the manifest's `redirect_url` with `code` and `state`,
//!   Cancel to its `setup_url`, making nothing.
//! - `POST /emulator/github/api/v3/app-manifests/{code}/conversions` answers `201` with the
//!   app (`id`, `slug`, `owner`, `name`, `html_url`, `client_id`, `client_secret`,
//!   `webhook_secret`, `pem`); `404` for a code it never gave or one older than an hour, `422`
//!   for a code used already.
//! - `GET /emulator/github/apps/{slug}/installations/new` (and the app's page, its
//!   `html_url`, `/emulator/github/apps/{slug}`) is the app's installation page:
//!   **Install** (the repositories ticked) sends the `installation` event (`created`, signed with
//!   the app's secret) and redirects to the manifest's `setup_url` with `installation_id` and
//!   `setup_action=install`; **Uninstall** sends `deleted`; **Send a push**: `POST /emulator/github/apps/{slug}/push` posts a vendored push
//!   (`github/push.event.4.json`) to the app's webhook, signed with the app's secret, as GitHub
//!   delivers (`X-GitHub-Event`, `X-GitHub-Delivery`, `X-Hub-Signature-256`).
//!
//! The apps it made live as long as the process.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::{FromRef, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use crate::html::{esc, page, token};

/// How long a code lives: GitHub's hour.
const CODE_TTL_MS: u64 = 60 * 60 * 1000;

/// A code handed out by Create.
struct Code {
    manifest: Value,
    owner: String,
    created_ms: u64,
    used: bool,
}

/// An app the emulator made.
#[derive(Clone)]
struct MadeApp {
    name: String,
    owner: String,
    hook: String,
    webhook_secret: String,
    /// Where GitHub sends the browser after an installation (the manifest's `setup_url`).
    setup_url: String,
    /// Its installation, once installed.
    installation: Option<u64>,
}

/// The repositories the installation page offers.
const REPOSITORIES: &[&str] = &["Codertocat/Hello-World", "octo-org/octo-repo"];

/// What the GitHub emulator remembers: codes and the apps made.
#[derive(Default)]
pub struct GitHubState {
    codes: Mutex<HashMap<String, Code>>,
    apps: Mutex<HashMap<String, MadeApp>>,
}

/// What the GitHub emulator reaches: the settings and its memory (`None` when it is off).
#[derive(Clone)]
pub struct GitHubEmulator {
    /// The settings.
    pub config: std::sync::Arc<crate::config::Config>,
    /// Codes and apps.
    pub state: Option<std::sync::Arc<GitHubState>>,
}

/// The routes under /emulator/github.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    GitHubEmulator: FromRef<S>,
{
    Router::new()
        .route(
            "/emulator/github/settings/apps/new",
            post(|s, q, b| manifest_page(s, q, b, None)),
        )
        .route(
            "/emulator/github/organizations/{org}/settings/apps/new",
            post(|s, Path(org): Path<String>, q, b| manifest_page(s, q, b, Some(org))),
        )
        .route("/emulator/github/settings/apps/decide", post(decide))
        .route(
            "/emulator/github/api/v3/app-manifests/{code}/conversions",
            post(convert),
        )
        .route(
            "/emulator/github/apps/{slug}/installations/new",
            get(install_page),
        )
        .route("/emulator/github/apps/{slug}", get(install_page))
        .route("/emulator/github/apps/{slug}/push", post(send_push))
        .route("/emulator/github/apps/{slug}/installations", post(install))
}

fn state_of(app: &GitHubEmulator) -> Option<&GitHubState> {
    app.state.as_deref()
}

fn off() -> Response {
    (StatusCode::NOT_FOUND, "the emulator is off").into_response()
}

fn form_of(body: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

/// The form's `manifest`, read; `Err`: GitHub's page saying it is not one.
fn manifest_of(form: &HashMap<String, String>) -> Result<Value, Box<Response>> {
    form.get("manifest")
        .and_then(|m| serde_json::from_str::<Value>(m).ok())
        .ok_or_else(|| Box::new(refused("The manifest is missing or is not JSON.")))
}

/// The manifest's text at `pointer` (`/hook_attributes/url`), empty when it has none.
fn text_at<'a>(manifest: &'a Value, pointer: &str) -> &'a str {
    manifest
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn refused(why: &str) -> Response {
    page(
        StatusCode::UNPROCESSABLE_ENTITY,
        "GitHub emulator",
        &format!(
            "<p class=\"banner\">GitHub <strong>emulator</strong></p><h1>Invalid GitHub App configuration</h1><p class=\"error\">{}</p>",
            esc(why)
        ),
    )
}

async fn manifest_page(
    State(app): State<GitHubEmulator>,
    RawQuery(query): RawQuery,
    body: String,
    org: Option<String>,
) -> Response {
    if state_of(&app).is_none() {
        return off();
    }
    let state = form_of(&query.unwrap_or_default())
        .remove("state")
        .unwrap_or_default();
    let form = form_of(&body);
    let manifest = match manifest_of(&form) {
        Ok(m) => m,
        Err(refused) => return *refused,
    };
    let text = |k: &str| text_at(&manifest, k);
    if text("/url").is_empty() || text("/hook_attributes/url").is_empty() {
        return refused("The manifest needs url and hook_attributes.url.");
    }
    let list = |k: &str| match manifest.get(k) {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or("?")))
            .collect::<Vec<_>>()
            .join(", "),
        _ => String::new(),
    };
    let owner = org.clone().unwrap_or_else(|| "octocat".into());
    let body = format!(
        "<p class=\"banner\">GitHub <strong>emulator</strong> — a stand-in for GitHub's own page.</p>\
         <h1>Create GitHub App for {owner}</h1>\
         <dl class=\"facts\"><dt>Name</dt><dd>{name}</dd><dt>Homepage</dt><dd>{url}</dd>\
         <dt>Webhook</dt><dd>{hook}</dd><dt>Events</dt><dd>{events}</dd><dt>Permissions</dt><dd>{perms}</dd>\
         <dt>Visibility</dt><dd>{public}</dd></dl>\
         <form method=\"post\" action=\"/emulator/github/settings/apps/decide\">\
         <input type=\"hidden\" name=\"manifest\" value=\"{manifest}\">\
         <input type=\"hidden\" name=\"state\" value=\"{state}\">\
         <input type=\"hidden\" name=\"owner\" value=\"{owner}\">\
         <button type=\"submit\" name=\"decision\" value=\"create\" id=\"create-app\">Create GitHub App for {owner}</button> \
         <button type=\"submit\" name=\"decision\" value=\"cancel\" id=\"cancel\" class=\"secondary\">Cancel</button></form>",
        owner = esc(&owner),
        name = esc(text("/name")),
        url = esc(text("/url")),
        hook = esc(text("/hook_attributes/url")),
        events = esc(&list("default_events")),
        perms = esc(&list("default_permissions")),
        public = if manifest["public"] == true { "public" } else { "private (only on this account)" },
        manifest = esc(&manifest.to_string()),
        state = esc(&state),
    );
    page(StatusCode::OK, "Create GitHub App", &body)
}

async fn decide(State(app): State<GitHubEmulator>, body: String) -> Response {
    let Some(gh) = state_of(&app) else {
        return off();
    };
    let form = form_of(&body);
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    let manifest = match manifest_of(&form) {
        Ok(m) => m,
        Err(refused) => return *refused,
    };
    let text = |k: &str| text_at(&manifest, k).to_string();
    if get("decision") != "create" {
        let back = text("/setup_url");
        return Redirect::to(if back.is_empty() { "/" } else { &back }).into_response();
    }
    let Ok(mut back) = url::Url::parse(&text("/redirect_url")) else {
        return refused("The manifest's redirect_url is not a URL.");
    };
    let code = token(20);
    gh.codes.lock().expect("codes lock").insert(
        code.clone(),
        Code {
            manifest,
            owner: get("owner"),
            created_ms: crate::store::now_ms(),
            used: false,
        },
    );
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &get("state"));
    Redirect::to(back.as_str()).into_response()
}

async fn convert(State(app): State<GitHubEmulator>, Path(code): Path<String>) -> Response {
    let Some(gh) = state_of(&app) else {
        return off();
    };
    let not_found = || {
        (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest/apps/apps#create-a-github-app-from-a-manifest"})),
        )
            .into_response()
    };
    let mut codes = gh.codes.lock().expect("codes lock");
    let Some(c) = codes.get_mut(&code) else {
        return not_found();
    };
    if crate::store::now_ms().saturating_sub(c.created_ms) > CODE_TTL_MS {
        return not_found();
    }
    if c.used {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({"message": "Validation Failed", "errors": [{"resource": "Integration", "code": "already_exists"}]})),
        )
            .into_response();
    }
    c.used = true;
    let m = c.manifest.clone();
    let owner = c.owner.clone();
    drop(codes);
    let name = m["name"].as_str().unwrap_or("app").to_string();
    let slug: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '-' })
        .collect::<String>()
        .split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    let slug = format!("{slug}-{}", &token(4).to_ascii_lowercase()[..4]);
    let webhook_secret = hex::encode(rand::random::<[u8; 20]>());
    let id = 100_000 + u64::from(rand::random::<u16>());
    gh.apps.lock().expect("apps lock").insert(
        slug.clone(),
        MadeApp {
            name: name.clone(),
            owner: owner.clone(),
            hook: text_at(&m, "/hook_attributes/url").to_string(),
            webhook_secret: webhook_secret.clone(),
            setup_url: text_at(&m, "/setup_url").to_string(),
            installation: None,
        },
    );
    let public = app.config.public_url();
    let answer = json!({
        "id": id, "slug": slug, "node_id": format!("A_{}", token(8)),
        "owner": {"login": owner, "id": 583231, "type": "User"},
        "name": name, "description": m["description"], "external_url": m["url"],
        "html_url": format!("{public}/emulator/github/apps/{slug}"),
        "created_at": "2026-12-07T00:00:00Z", "updated_at": "2026-12-07T00:00:00Z",
        "permissions": m["default_permissions"], "events": m["default_events"],
        "client_id": format!("Iv1.{}", hex::encode(rand::random::<[u8; 8]>())),
        "client_secret": hex::encode(rand::random::<[u8; 20]>()),
        "webhook_secret": webhook_secret,
        "pem": format!("-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----\n", token(48)),
    });
    (StatusCode::CREATED, axum::Json(answer)).into_response()
}

async fn install_page(State(app): State<GitHubEmulator>, Path(slug): Path<String>) -> Response {
    let Some(gh) = state_of(&app) else {
        return off();
    };
    let Some(made) = gh.apps.lock().expect("apps lock").get(&slug).cloned() else {
        return (StatusCode::NOT_FOUND, "no such app").into_response();
    };
    let repos: String = REPOSITORIES
        .iter()
        .map(|r| {
            format!(
                "<label><input type=\"checkbox\" name=\"repository\" value=\"{r}\" checked> {r}</label>"
            )
        })
        .collect();
    let installed = match made.installation {
        Some(id) => format!(
            "<p id=\"installed\">Installed (installation {id}).</p>\
             <form method=\"post\" action=\"/emulator/github/apps/{slug}/installations\">\
             <button type=\"submit\" name=\"action\" value=\"deleted\" id=\"uninstall\" class=\"secondary\">Uninstall</button></form>",
            slug = esc(&slug)
        ),
        None => format!(
            "<form method=\"post\" action=\"/emulator/github/apps/{slug}/installations\">\
             <fieldset><legend>Install on {owner}: which repositories?</legend>{repos}</fieldset>\
             <button type=\"submit\" name=\"action\" value=\"created\" id=\"install\">Install</button></form>",
            slug = esc(&slug),
            owner = esc(&made.owner),
        ),
    };
    let body = format!(
        "<p class=\"banner\">GitHub <strong>emulator</strong></p><h1>{name}</h1>\
         <p>Made for {owner}; its webhook is <code>{hook}</code>.</p>{installed}\
         <form method=\"post\" action=\"/emulator/github/apps/{slug}/push\">\
         <button type=\"submit\" id=\"send-push\">Send a push</button></form>\
         <p class=\"muted\">Sends a real push (<code>push.event.4.json</code> of @octokit/webhooks-examples), \
         signed with the app's webhook secret, as GitHub delivers it.</p>",
        name = esc(&made.name),
        owner = esc(&made.owner),
        hook = esc(&made.hook),
        slug = esc(&slug),
    );
    page(StatusCode::OK, &made.name, &body)
}

async fn send_push(State(app): State<GitHubEmulator>, Path(slug): Path<String>) -> Response {
    let Some(gh) = state_of(&app) else {
        return off();
    };
    let Some(made) = gh.apps.lock().expect("apps lock").get(&slug).cloned() else {
        return (StatusCode::NOT_FOUND, "no such app").into_response();
    };
    let body = crate::samples::raw("github/push.event.4.json").unwrap_or("{}");
    let said = deliver(&made, "push", body.as_bytes()).await;
    page(
        StatusCode::OK,
        &made.name,
        &format!(
            "<p class=\"banner\">GitHub <strong>emulator</strong></p><h1>Push sent</h1><p id=\"answer\">{}</p>\
             <p><a href=\"/emulator/github/apps/{}/installations/new\">Back</a></p>",
            esc(&said),
            esc(&slug)
        ),
    )
}

/// Delivers an event to the app's webhook as GitHub does (`X-GitHub-Event`,
/// `X-GitHub-Delivery`, `X-Hub-Signature-256` with the app's secret); what came of it.
async fn deliver(made: &MadeApp, event: &str, body: &[u8]) -> String {
    let sent = reqwest::Client::new()
        .post(&made.hook)
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", crate::html::uuid_like())
        .header(
            "x-hub-signature-256",
            crate::ingest::verify::sign(&made.webhook_secret, body),
        )
        .body(body.to_vec())
        .send()
        .await;
    match sent {
        Ok(res) => format!("{} answered {}", made.hook, res.status()),
        Err(_) => format!("{} cannot be reached", made.hook),
    }
}

/// `POST /emulator/github/apps/{slug}/installations` (`action` `created` with the
/// repositories ticked, or `deleted`): the `installation` event GitHub sends, signed with the
/// app's secret, then, for an installation, the browser to the app's `setup_url` with
/// `installation_id` and `setup_action=install`.
async fn install(
    State(app): State<GitHubEmulator>,
    Path(slug): Path<String>,
    body: String,
) -> Response {
    let Some(gh) = state_of(&app) else {
        return off();
    };
    let Some(made) = gh.apps.lock().expect("apps lock").get(&slug).cloned() else {
        return (StatusCode::NOT_FOUND, "no such app").into_response();
    };
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let action = pairs
        .iter()
        .find(|(k, _)| k == "action")
        .map_or("created", |(_, v)| v.as_str());
    let repos: Vec<Value> = pairs
        .iter()
        .filter(|(k, _)| k == "repository")
        .map(|(_, r)| json!({"full_name": r, "name": r.rsplit('/').next(), "private": false}))
        .collect();
    let id = made
        .installation
        .unwrap_or_else(|| 40_000_000 + u64::from(rand::random::<u16>()));
    // The shape of @octokit/webhooks-examples' installation.created.
    let event = json!({
        "action": action,
        "installation": {"id": id, "account": {"login": made.owner, "type": "User"},
                         "repository_selection": "selected", "app_slug": slug},
        "repositories": if action == "created" { Value::Array(repos) } else { Value::Null },
        "sender": {"login": made.owner, "type": "User"},
    });
    let said = deliver(&made, "installation", event.to_string().as_bytes()).await;
    if let Some(a) = gh.apps.lock().expect("apps lock").get_mut(&slug) {
        a.installation = (action == "created").then_some(id);
    }
    if action != "created" {
        return Redirect::to(&format!("/emulator/github/apps/{slug}/installations/new"))
            .into_response();
    }
    let Ok(mut back) = url::Url::parse(&made.setup_url) else {
        return page(
            StatusCode::OK,
            &made.name,
            &format!("<p id=\"answer\">{}</p>", esc(&said)),
        );
    };
    back.query_pairs_mut()
        .append_pair("installation_id", &id.to_string())
        .append_pair("setup_action", "install");
    Redirect::to(back.as_str()).into_response()
}
