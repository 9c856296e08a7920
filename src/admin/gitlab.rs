//! GitLab hooks made by token for a GitLab source, on /sources: **Add a GitLab hook** (one
//! per project typed), and per hook **Send a test event** and **Remove**.
//!
//! In: a signed-in admin's form (the GitLab, the projects, an access token with `api`, whether
//! to keep it); GitLab's answers. Out: the hooks made, kept with their tokens sealed; a page
//! that says what was made and what failed. Guarantees: the session's CSRF token is checked
//! first; each hook is kept as soon as GitLab made it, so a failure on the third of five
//! projects leaves the first two listed, and the page names the one that failed, why (GitLab's
//! `401`, `403`, `404` by name) and those not tried; a hook GitLab made that cannot be kept
//! is deleted on GitLab again; the access token is dropped after the request unless kept
//! (sealed); tokens are never logged or shown.

use std::collections::HashMap;

use axum::extract::{FromRef, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

use super::pages::{events_of, signed_form, Pages};
use crate::connect::gitlab;
use crate::event::SourceKind;
use crate::html::{esc, page};
use crate::store::SourceHook;

/// The routes of the GitLab hooks' forms.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Pages: FromRef<S>,
{
    Router::new()
        .route("/sources/{name}/gitlab-hooks", post(add))
        .route("/sources/{name}/gitlab-hooks/{hook}/test", post(test))
        .route("/sources/{name}/gitlab-hooks/{hook}/remove", post(remove))
}

/// A result page, with the way back.
fn said(status: StatusCode, title: &str, html: &str) -> Response {
    page(
        status,
        title,
        &format!(
            "<h1>{}</h1>{html}<p><a href=\"/sources\" id=\"back\">Back to Sources</a></p>",
            esc(title)
        ),
    )
}

fn refused(title: &str, why: &str) -> Response {
    said(
        StatusCode::BAD_REQUEST,
        title,
        &format!("<p class=\"error\">{}</p>", esc(why)),
    )
}

/// The GitLab source `name` that takes hooks made here; `Err`: why not.
fn hookable(app: &Pages, name: &str) -> Result<(), String> {
    match app.config.sources.get(name) {
        None => Err(format!("There is no source {name:?}.")),
        Some(s) if s.kind != SourceKind::Gitlab => Err(format!(
            "{name} is a {} source: GitLab hooks send to GitLab sources.",
            s.kind.as_str()
        )),
        Some(s) if s.secret.is_some() => Err(format!(
            "{name} verifies with the token in its config (sources.{name}.secret): a hook made here \
             would carry another. Drop `secret` to verify with the hooks' tokens."
        )),
        Some(_) => Ok(()),
    }
}

/// /sources' part for a GitLab source: its hooks, each with its buttons, and the form that adds
/// more.
pub fn section(app: &Pages, name: &str, csrf: &str, hooks: &[SourceHook]) -> String {
    let web = gitlab::web_url(&app.config, name);
    let emulated = web.ends_with("/emulator/gitlab") && app.config.emulator();
    let listed: String = hooks
        .iter()
        .filter(|h| h.source == name)
        .map(|h| {
            let token_field = if h.api_token.is_some() {
                String::new()
            } else {
                "<input type=\"password\" name=\"token\" placeholder=\"access token (not kept)\" autocomplete=\"off\">".to_string()
            };
            let form = |what: &str, label: &str, class: &str| {
                format!(
                    "<form method=\"post\" action=\"/sources/{n}/gitlab-hooks/{id}/{what}\" class=\"inline\">\
                     <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                     <input type=\"hidden\" name=\"gitlab\" value=\"{gl}\">{token_field}\
                     <button type=\"submit\" id=\"{what}-hook-{id}\"{class}>{label}</button></form>",
                    n = esc(name),
                    id = h.hook_id,
                    csrf = esc(csrf),
                    gl = esc(&h.gitlab_url),
                )
            };
            format!(
                "<div class=\"hook\" id=\"hook-{id}\"><p><strong>{project}</strong> on {gl}: hook {id}, \
                 {events}{kept}</p>{test}{remove}</div>",
                id = h.hook_id,
                project = esc(&h.project),
                gl = esc(&h.gitlab_url),
                events = esc(&h.events.join(", ")),
                kept = if h.api_token.is_some() { " (token kept, sealed)" } else { "" },
                test = form("test", "Send a test event", ""),
                remove = form("remove", "Remove", " class=\"secondary\""),
            )
        })
        .collect();
    let hint = if emulated {
        format!(
            "<p class=\"muted\">This is the GitLab <a href=\"/emulator/gitlab\">emulator</a>: its projects \
             are <code>mike/diaspora</code> and <code>gitlab-org/gitlab-test</code>, its token \
             <code>{}</code>.</p>",
            crate::connect::gitlab_emulator::TOKEN
        )
    } else {
        String::new()
    };
    let token_value = if emulated {
        crate::connect::gitlab_emulator::TOKEN
    } else {
        ""
    };
    format!(
        "{listed}<details{open}><summary>Add a GitLab hook</summary>\
         <form method=\"post\" action=\"/sources/{n}/gitlab-hooks\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label>GitLab <input type=\"url\" name=\"gitlab\" value=\"{web}\"></label>\
         <label>Projects, one per line <textarea name=\"projects\" rows=\"3\" placeholder=\"group/project\">{projects}</textarea></label>\
         <label>Access token with the <code>api</code> scope (Maintainer) \
         <input type=\"password\" name=\"token\" value=\"{token_value}\" autocomplete=\"off\"></label>\
         <label><input type=\"checkbox\" name=\"keep\" value=\"1\"{keep}> keep the token, sealed, to remove the hooks later</label>\
         <button type=\"submit\" id=\"add-hooks-{n}\">Add a GitLab hook</button></form>{hint}</details>",
        open = if hooks.iter().any(|h| h.source == name) { "" } else { " open" },
        n = esc(name),
        csrf = esc(csrf),
        web = esc(&web),
        projects = if emulated { "mike/diaspora" } else { "" },
        // The emulator's token is no secret: kept, its buttons work without typing it again.
        keep = if emulated { " checked" } else { "" },
    )
}

/// What a call to GitLab came to: its status and body, or that it could not be reached.
async fn call(req: reqwest::RequestBuilder) -> Result<(u16, String), String> {
    match req.send().await {
        Ok(res) => Ok((res.status().as_u16(), res.text().await.unwrap_or_default())),
        Err(_) => Err("GitLab cannot be reached".into()),
    }
}

/// `POST /sources/{name}/gitlab-hooks`: a hook on each project typed, in order, each kept as
/// soon as GitLab made it; the first failure stops the rest.
async fn add(
    State(app): State<Pages>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: String,
) -> Response {
    const TITLE: &str = "Cannot add the hooks";
    let form = match signed_form(&app, &headers, &body) {
        Ok(f) => f,
        Err(res) => return *res,
    };
    if let Err(why) = hookable(&app, &name) {
        return refused(TITLE, &why);
    }
    let get = |k: &str| form.get(k).map(|v| v.trim()).unwrap_or_default();
    let web = get("gitlab").trim_end_matches('/').to_string();
    if !matches!(url::Url::parse(&web), Ok(u) if u.scheme() == "https" || u.scheme() == "http") {
        return refused(
            TITLE,
            &format!("{web:?} is not a GitLab's URL (https://gitlab.com, or your own GitLab's)."),
        );
    }
    let mut projects: Vec<String> = Vec::new();
    for line in get("projects").lines() {
        if let Some(p) = gitlab::project_path(&web, line) {
            if !projects.contains(&p) {
                projects.push(p);
            }
        }
    }
    if projects.is_empty() {
        return refused(TITLE, "Name a project (group/project), one per line.");
    }
    let token = get("token").to_string();
    if token.is_empty() {
        return refused(TITLE, "An access token with the api scope is needed to add the hooks (used once, then dropped unless kept).");
    }
    let keep = get("keep") == "1";
    let events = events_of(&app, &name);
    let flags = gitlab::flags(&events);
    if flags.is_empty() {
        return refused(
            TITLE,
            &format!("No enabled rule of {name} takes an event a project hook sends: a hook would send nothing a rule reads."),
        );
    }
    let hook_url = format!("{}/hooks/{name}", app.config.public_url());
    let mut made: Vec<SourceHook> = Vec::new();
    let mut failed: Option<(String, String)> = None;
    for project in &projects {
        let secret = crate::html::token(24);
        let answer = call(
            app.http
                .post(gitlab::hooks_url(&web, project))
                .header("private-token", &token)
                .header("content-type", "application/json")
                .body(gitlab::hook_body(&hook_url, &secret, &flags).to_string()),
        )
        .await
        .and_then(|(status, body)| gitlab::read_hook(status, &body, project));
        let (hook_id, project_id) = match answer {
            Ok(ids) => ids,
            Err(why) => {
                tracing::warn!(source = %name, project, error = %why, "GitLab did not make the hook");
                failed = Some((project.clone(), why));
                break;
            }
        };
        let hook = SourceHook {
            source: name.clone(),
            gitlab_url: web.clone(),
            project: project.clone(),
            project_id,
            hook_id,
            events: flags.iter().map(|f| f.to_string()).collect(),
            token: secret,
            api_token: keep.then(|| token.clone()),
            created_ms: crate::store::now_ms(),
        };
        if let Err(e) = app.source_secrets.put_hook(&hook) {
            // Not kept: not left on GitLab either.
            let _ = call(
                app.http
                    .delete(format!("{}/{hook_id}", gitlab::hooks_url(&web, project)))
                    .header("private-token", &token),
            )
            .await;
            tracing::error!(source = %name, project, error = %crate::error::ErrorChain(&e), "cannot keep a GitLab hook; deleted it on GitLab");
            failed = Some((project.clone(), "cardwire cannot keep it (its store refused the write); it was deleted on GitLab again".into()));
            break;
        }
        tracing::info!(source = %name, project, hook_id, "GitLab hook made; its token verifies the source's deliveries");
        made.push(hook);
    }
    let listed: String = made
        .iter()
        .map(|h| {
            format!(
                "<li class=\"made\">{}: hook {} ({})</li>",
                esc(&h.project),
                h.hook_id,
                esc(&h.events.join(", "))
            )
        })
        .collect();
    let mut html = if made.is_empty() {
        String::new()
    } else {
        format!(
            "<p>Made on {}, each sending to <code>{}</code>:</p><ul>{listed}</ul>",
            esc(&web),
            esc(&hook_url)
        )
    };
    let Some((project, why)) = failed else {
        html.push_str("<p>Send a test event from Sources to see a card.</p>");
        return said(StatusCode::OK, "GitLab hooks added", &html);
    };
    let at = projects.iter().position(|p| *p == project).unwrap_or(0);
    let untried = &projects[at + 1..];
    html.push_str(&format!(
        "<p class=\"error\" id=\"failed\">{}: {}</p>",
        esc(&project),
        esc(&why)
    ));
    if !untried.is_empty() {
        html.push_str(&format!(
            "<p id=\"untried\">Not tried: {}.</p>",
            esc(&untried.join(", "))
        ));
    }
    let status = if why.starts_with("GitLab cannot be reached") {
        StatusCode::BAD_GATEWAY
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let title = if made.is_empty() {
        TITLE
    } else {
        "Some GitLab hooks added"
    };
    said(status, title, &html)
}

/// The hook a button of /sources names (`{hook}` on the form's GitLab, of source `name`), after
/// the session and its CSRF token are checked, and the access token to call GitLab with (kept,
/// or typed beside the button); `Err`: the page to answer.
fn pressed(
    app: &Pages,
    headers: &HeaderMap,
    body: &str,
    name: &str,
    hook: u64,
    title: &str,
) -> Result<(SourceHook, Option<String>), Box<Response>> {
    let form = signed_form(app, headers, body)?;
    hook_of(app, name, hook, &form).map_err(|why| Box::new(refused(title, &why)))
}

/// The hook `{hook}` on the form's GitLab, of source `name`, and the access token to call
/// GitLab with (kept, or typed in the form).
fn hook_of(
    app: &Pages,
    name: &str,
    hook: u64,
    form: &HashMap<String, String>,
) -> Result<(SourceHook, Option<String>), String> {
    let gl = form.get("gitlab").map(String::as_str).unwrap_or_default();
    let hooks = app.source_secrets.hooks().map_err(|e| e.to_string())?;
    let Some(h) = hooks
        .into_iter()
        .find(|h| h.source == name && h.gitlab_url == gl && h.hook_id == hook)
    else {
        return Err(format!(
            "{name} has no hook {hook} on {gl}: it was removed already."
        ));
    };
    let typed = form
        .get("token")
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    let token = typed.or_else(|| h.api_token.clone());
    Ok((h, token))
}

/// `POST /sources/{name}/gitlab-hooks/{hook}/test`: GitLab's hook test endpoint, with the
/// first event the hook sends.
async fn test(
    State(app): State<Pages>,
    headers: HeaderMap,
    Path((name, hook)): Path<(String, u64)>,
    body: String,
) -> Response {
    const TITLE: &str = "Cannot send a test event";
    let (h, token) = match pressed(&app, &headers, &body, &name, hook, TITLE) {
        Ok(found) => found,
        Err(res) => return *res,
    };
    let Some(token) = token else {
        return refused(
            TITLE,
            "This hook's access token was not kept: type one (api scope) beside the button.",
        );
    };
    let trigger = gitlab::test_trigger(&h.events);
    let url = format!(
        "{}/api/v4/projects/{}/hooks/{}/test/{trigger}",
        h.gitlab_url, h.project_id, h.hook_id
    );
    match call(app.http.post(url).header("private-token", &token)).await {
        Ok((201 | 200, _)) => said(
            StatusCode::OK,
            "Test event sent",
            &format!(
                "<p id=\"sent\">GitLab sent hook {} of {} a test event ({trigger}); its card is on its way to the connections whose rules take it.</p>",
                h.hook_id,
                esc(&h.project)
            ),
        ),
        Ok((status, body)) => refused(TITLE, &gitlab::refusal(status, &body, &h.project)),
        Err(why) => said(StatusCode::BAD_GATEWAY, TITLE, &format!("<p class=\"error\">{}</p>", esc(&why))),
    }
}

/// `POST /sources/{name}/gitlab-hooks/{hook}/remove`: the hook deleted on GitLab (with the
/// token kept or typed; one GitLab no longer has counts as deleted), then forgotten here;
/// without a token, forgotten here only, and the page says to delete it on GitLab.
async fn remove(
    State(app): State<Pages>,
    headers: HeaderMap,
    Path((name, hook)): Path<(String, u64)>,
    body: String,
) -> Response {
    const TITLE: &str = "Cannot remove the hook";
    let (h, token) = match pressed(&app, &headers, &body, &name, hook, TITLE) {
        Ok(found) => found,
        Err(res) => return *res,
    };
    let on_gitlab = match &token {
        Some(token) => {
            let url = format!(
                "{}/api/v4/projects/{}/hooks/{}",
                h.gitlab_url, h.project_id, h.hook_id
            );
            match call(app.http.delete(url).header("private-token", token)).await {
                Ok((200 | 204 | 404, _)) => "It was deleted on GitLab.".to_string(),
                Ok((status, body)) => {
                    return refused(TITLE, &format!("{} (nothing removed)", gitlab::refusal(status, &body, &h.project)))
                }
                Err(why) => {
                    return said(
                        StatusCode::BAD_GATEWAY,
                        TITLE,
                        &format!("<p class=\"error\">{} (nothing removed)</p>", esc(&why)),
                    )
                }
            }
        }
        None => format!(
            "Its access token was not kept: delete it on GitLab too ({}/{}/-/hooks), or GitLab keeps sending and cardwire refuses.",
            h.gitlab_url, h.project
        ),
    };
    if let Err(e) = app.source_secrets.remove_hook(&h.key()) {
        return crate::error::ApiError::internal(&e).into_response();
    }
    tracing::info!(source = %name, project = %h.project, hook_id = h.hook_id, "GitLab hook removed");
    said(
        StatusCode::OK,
        "Hook removed",
        &format!(
            "<p id=\"removed\">Hook {} of {} no longer verifies deliveries. {}</p>",
            h.hook_id,
            esc(&h.project),
            esc(&on_gitlab)
        ),
    )
}
