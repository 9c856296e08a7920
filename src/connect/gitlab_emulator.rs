//! A local stand-in for GitLab's project hooks API (`connect.emulator: true`; on by default
//! without a config file), so that **Add a GitLab hook** on /sources runs without an account or
//! a network.
//!
//! In: cardwire's API calls with a `PRIVATE-TOKEN`. Out: GitLab's answers, and test events.
//! Guarantees: it answers as GitLab's `project_webhooks` API documents
//! (`shared/reference/message-lifecycle.md`, "GitLab"), with GitLab's error shapes:
//!
//! - `GET /emulator/gitlab` shows its projects, the tokens to try and each project's hooks.
//! - `POST /emulator/gitlab/api/v4/projects/{id}/hooks` (`{id}` a number or the URL-encoded
//!   path) makes a hook: `201` and the hook; `400 {"error": "url is missing"}`; `401
//!   {"message": "401 Unauthorized"}` for a token it does not know; `403` for a token without
//!   the `api` scope (`insufficient_scope`) or a user who is not a maintainer of the project;
//!   `404 {"message": "404 Project Not Found"}`.
//! - `GET …/hooks` lists a project's hooks (their tokens never shown, as GitLab does);
//!   `DELETE …/hooks/{hook_id}` removes one (`204`; `404 {"message": "404 Not found"}`).
//! - `POST …/hooks/{hook_id}/test/{trigger}` sends the hook a real payload of GitLab's docs
//!   (vendored, `tests/fixtures/gitlab/`) for that trigger, with the hook's token as
//!   `X-Gitlab-Token` and GitLab's headers (`X-Gitlab-Event`, `X-Gitlab-Event-UUID`,
//!   `X-Gitlab-Webhook-UUID`, `Idempotency-Key`): `201 {"message": "201 Created"}`, `422` when
//!   the hook's URL does not answer 2xx (`[Hook execution failed: …]`) or the trigger has no
//!   test.
//!
//! Its hooks live as long as the process; its projects and tokens are fixed.

use std::sync::{Arc, Mutex};

use axum::extract::{FromRef, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::html::{esc, page};

/// The emulated projects: (id, path). Those of the vendored payloads.
pub const PROJECTS: &[(u64, &str)] = &[
    (15, "mike/diaspora"),
    (1, "gitlab-org/gitlab-test"),
    (2, "jsmith/example"),
];

/// A personal access token with the `api` scope, of a user who maintains every project but
/// `jsmith/example` (there a developer: `403`).
pub const TOKEN: &str = "glpat-cardwire-emulator-0";

/// A token with `read_api` only: `403 insufficient_scope` on writes.
pub const READ_ONLY_TOKEN: &str = "glpat-cardwire-readonly-0";

/// Which project the maintainer token cannot add hooks to.
const DEVELOPER_ONLY: &str = "jsmith/example";

/// The test event of each trigger: `X-Gitlab-Event` and the vendored payload.
const TESTS: &[(&str, &str, &str)] = &[
    ("push_events", "Push Hook", "gitlab/push.json"),
    ("tag_push_events", "Tag Push Hook", "gitlab/tag_push.json"),
    (
        "merge_requests_events",
        "Merge Request Hook",
        "gitlab/merge_request.json",
    ),
    ("pipeline_events", "Pipeline Hook", "gitlab/pipeline.json"),
    ("issues_events", "Issue Hook", "gitlab/issue.json"),
    ("note_events", "Note Hook", "gitlab/note-issue.json"),
    ("releases_events", "Release Hook", "gitlab/release.json"),
];

/// A hook it made.
#[derive(Clone)]
struct Hook {
    id: u64,
    project_id: u64,
    url: String,
    token: String,
    flags: Vec<String>,
    uuid: String,
}

/// What the GitLab emulator remembers: the hooks made.
#[derive(Default)]
pub struct GitLabState {
    hooks: Mutex<Vec<Hook>>,
    next: Mutex<u64>,
}

/// What the GitLab emulator reaches (`None` when it is off).
#[derive(Clone)]
pub struct GitLabEmulator {
    /// Its hooks.
    pub state: Option<Arc<GitLabState>>,
}

/// The routes under /emulator/gitlab.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    GitLabEmulator: FromRef<S>,
{
    Router::new()
        .route("/emulator/gitlab", get(overview))
        .route(
            "/emulator/gitlab/api/v4/projects/{id}/hooks",
            post(create).get(list),
        )
        .route(
            "/emulator/gitlab/api/v4/projects/{id}/hooks/{hook_id}",
            delete(remove),
        )
        .route(
            "/emulator/gitlab/api/v4/projects/{id}/hooks/{hook_id}/test/{trigger}",
            post(test),
        )
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

/// The project `{id}` names (a number or a path), for the token in `headers`, as GitLab
/// checks them: the token first (`401`, `403` without `api` when `write`), then the project
/// (`404`), then the role (`403`) when `write`.
fn authorize<'a>(
    app: &'a GitLabEmulator,
    headers: &HeaderMap,
    id: &str,
    write: bool,
) -> Result<(&'a GitLabState, u64, &'static str), Box<Response>> {
    let Some(gl) = app.state.as_deref() else {
        return Err(Box::new(off()));
    };
    let token = headers
        .get("private-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if token != TOKEN && token != READ_ONLY_TOKEN {
        return Err(Box::new(answer(
            StatusCode::UNAUTHORIZED,
            json!({"message": "401 Unauthorized"}),
        )));
    }
    if write && token == READ_ONLY_TOKEN {
        return Err(Box::new(answer(
            StatusCode::FORBIDDEN,
            json!({"error": "insufficient_scope",
                   "error_description": "The request requires higher privileges than provided by the access token.",
                   "scope": "api"}),
        )));
    }
    let Some(&(pid, path)) = PROJECTS
        .iter()
        .find(|(pid, path)| *path == id || pid.to_string() == id)
    else {
        return Err(Box::new(answer(
            StatusCode::NOT_FOUND,
            json!({"message": "404 Project Not Found"}),
        )));
    };
    if path == DEVELOPER_ONLY {
        return Err(Box::new(answer(
            StatusCode::FORBIDDEN,
            json!({"message": "403 Forbidden"}),
        )));
    }
    Ok((gl, pid, path))
}

fn off() -> Response {
    (StatusCode::NOT_FOUND, "the emulator is off").into_response()
}

/// A hook as GitLab's API shows it (never its token).
fn shown(h: &Hook) -> Value {
    let mut v = json!({
        "id": h.id, "url": h.url, "project_id": h.project_id,
        "enable_ssl_verification": true, "created_at": "2026-12-07T00:00:00Z",
    });
    for (flag, _) in crate::connect::gitlab::FLAGS {
        v[*flag] = json!(h.flags.iter().any(|f| f == flag));
    }
    v
}

async fn create(
    State(app): State<GitLabEmulator>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let (gl, project_id, _) = match authorize(&app, &headers, &id, true) {
        Ok(p) => p,
        Err(res) => return *res,
    };
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let Some(url) = v["url"].as_str().filter(|u| !u.is_empty()) else {
        return answer(StatusCode::BAD_REQUEST, json!({"error": "url is missing"}));
    };
    if url::Url::parse(url).is_err() {
        return answer(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"message": {"url": ["is blocked: Only allowed schemes are http, https"]}}),
        );
    }
    let flags = crate::connect::gitlab::FLAGS
        .iter()
        .filter(|(flag, _)| {
            // GitLab's default: push on unless said otherwise.
            v[*flag].as_bool().unwrap_or(*flag == "push_events")
        })
        .map(|(flag, _)| flag.to_string())
        .collect();
    let hook_id = {
        let mut next = gl.next.lock().expect("ids lock");
        *next += 1;
        *next
    };
    let hook = Hook {
        id: hook_id,
        project_id,
        url: url.to_string(),
        token: v["token"].as_str().unwrap_or_default().to_string(),
        flags,
        uuid: crate::html::uuid_like(),
    };
    let shown = shown(&hook);
    gl.hooks.lock().expect("hooks lock").push(hook);
    answer(StatusCode::CREATED, shown)
}

async fn list(
    State(app): State<GitLabEmulator>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (gl, project_id, _) = match authorize(&app, &headers, &id, false) {
        Ok(p) => p,
        Err(res) => return *res,
    };
    let hooks: Vec<Value> = gl
        .hooks
        .lock()
        .expect("hooks lock")
        .iter()
        .filter(|h| h.project_id == project_id)
        .map(shown)
        .collect();
    answer(StatusCode::OK, Value::Array(hooks))
}

async fn remove(
    State(app): State<GitLabEmulator>,
    Path((id, hook_id)): Path<(String, u64)>,
    headers: HeaderMap,
) -> Response {
    let (gl, project_id, _) = match authorize(&app, &headers, &id, true) {
        Ok(p) => p,
        Err(res) => return *res,
    };
    let mut hooks = gl.hooks.lock().expect("hooks lock");
    let before = hooks.len();
    hooks.retain(|h| !(h.id == hook_id && h.project_id == project_id));
    if hooks.len() == before {
        return answer(StatusCode::NOT_FOUND, json!({"message": "404 Not found"}));
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn test(
    State(app): State<GitLabEmulator>,
    Path((id, hook_id, trigger)): Path<(String, u64, String)>,
    headers: HeaderMap,
) -> Response {
    let (gl, project_id, path) = match authorize(&app, &headers, &id, true) {
        Ok(p) => p,
        Err(res) => return *res,
    };
    let Some(hook) = gl
        .hooks
        .lock()
        .expect("hooks lock")
        .iter()
        .find(|h| h.id == hook_id && h.project_id == project_id)
        .cloned()
    else {
        return answer(StatusCode::NOT_FOUND, json!({"message": "404 Not found"}));
    };
    let Some(&(_, event, file)) = TESTS.iter().find(|(t, _, _)| *t == trigger) else {
        return answer(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"message": format!("Testing not available for trigger {trigger}")}),
        );
    };
    let mut payload: Value = crate::samples::raw(file)
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null);
    // GitLab's test event is of the hook's own project.
    if let Some(p) = payload.get_mut("project").and_then(Value::as_object_mut) {
        p.insert("id".into(), json!(project_id));
        p.insert("path_with_namespace".into(), json!(path));
        p.insert("name".into(), json!(path.rsplit('/').next()));
    }
    if payload.get("project_id").is_some() {
        payload["project_id"] = json!(project_id);
    }
    let uuid = crate::html::uuid_like();
    let sent = reqwest::Client::new()
        .post(&hook.url)
        .header("content-type", "application/json")
        .header("user-agent", "GitLab/17.6.0")
        .header("x-gitlab-event", event)
        .header("x-gitlab-token", &hook.token)
        .header("x-gitlab-event-uuid", &uuid)
        .header("x-gitlab-webhook-uuid", &hook.uuid)
        .header("idempotency-key", &uuid)
        .header("x-gitlab-instance", "https://gitlab.example")
        .body(payload.to_string())
        .send()
        .await;
    match sent {
        Ok(res) if res.status().is_success() => {
            answer(StatusCode::CREATED, json!({"message": "201 Created"}))
        }
        Ok(res) => answer(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"message": format!("[Hook execution failed: {}]", res.status())}),
        ),
        Err(_) => answer(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"message": "[Hook execution failed: connection refused]"}),
        ),
    }
}

async fn overview(State(app): State<GitLabEmulator>) -> Response {
    let Some(gl) = app.state.as_deref() else {
        return off();
    };
    let hooks = gl.hooks.lock().expect("hooks lock").clone();
    let rows: String = PROJECTS
        .iter()
        .map(|(pid, path)| {
            let theirs: String = hooks
                .iter()
                .filter(|h| h.project_id == *pid)
                .map(|h| {
                    format!(
                        "<p class=\"hook\">hook {}: <code>{}</code> ({})</p>",
                        h.id,
                        esc(&h.url),
                        esc(&h.flags.join(", "))
                    )
                })
                .collect();
            let role = if *path == DEVELOPER_ONLY { "Developer" } else { "Maintainer" };
            format!("<tr><td>{pid}</td><td><code>{path}</code></td><td>{role}</td><td>{theirs}</td></tr>")
        })
        .collect();
    page(
        StatusCode::OK,
        "GitLab emulator",
        &format!(
            "<p class=\"banner\">GitLab <strong>emulator</strong> — a stand-in for a GitLab's project hooks API.</p>\
             <h1>Projects</h1><p>Personal access token with the <code>api</code> scope: <code id=\"token\">{TOKEN}</code> \
             (<code>{READ_ONLY_TOKEN}</code> has <code>read_api</code> only).</p>\
             <table><tr><th>Id</th><th>Path</th><th>The token's role</th><th>Hooks</th></tr>{rows}</table>"
        ),
    )
}
