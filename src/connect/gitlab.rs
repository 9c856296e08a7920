//! GitLab hooks made by token for a source: where GitLab is, which of a hook's events the
//! source's rules take, the hook GitLab is asked to make, and how its answers read.
//!
//! In: the settings, the events of a source's enabled rules, the projects a user typed;
//! GitLab's answers to `POST /api/v4/projects/:id/hooks`, `…/test/:trigger` and `DELETE`.
//! Out: the requests' paths and bodies; a hook made, or what went wrong by name. Guarantees:
//! pure functions (the handlers are in [`crate::admin::gitlab`], GitLab's stand-in in
//! [`super::gitlab_emulator`]); every event flag a hook has is set, true only for an event a
//! rule takes (GitLab turns `push_events` on when it is left out); TLS verification on.

use serde_json::{json, Map, Value};

use crate::config::Config;

/// Where GitLab is for `source`: its `gitlab_url`, the emulator's while it is on, or
/// `https://gitlab.com`.
pub fn web_url(config: &Config, source: &str) -> String {
    let configured = config
        .sources
        .get(source)
        .and_then(|s| s.gitlab_url.clone());
    match configured {
        Some(u) => u.trim_end_matches('/').to_string(),
        None if config.emulator() => format!("{}/emulator/gitlab", config.public_url()),
        None => "https://gitlab.com".into(),
    }
}

/// The `X-Gitlab-Event` a project hook's flag sends, for every flag a project hook has.
pub const FLAGS: &[(&str, &str)] = &[
    ("push_events", "Push Hook"),
    ("tag_push_events", "Tag Push Hook"),
    ("merge_requests_events", "Merge Request Hook"),
    ("pipeline_events", "Pipeline Hook"),
    ("job_events", "Job Hook"),
    ("issues_events", "Issue Hook"),
    ("confidential_issues_events", "Confidential Issue Hook"),
    ("note_events", "Note Hook"),
    ("confidential_note_events", "Confidential Note Hook"),
    ("deployment_events", "Deployment Hook"),
    ("releases_events", "Release Hook"),
    ("wiki_page_events", "Wiki Page Hook"),
    ("feature_flag_events", "Feature Flag Hook"),
    ("emoji_events", "Emoji Hook"),
    ("resource_access_token_events", "Resource Access Token Hook"),
];

/// The flags of the events `events` (`X-Gitlab-Event` values, as rules name them), in
/// [`FLAGS`]' order; the events no project hook sends are left out.
pub fn flags(events: &[String]) -> Vec<&'static str> {
    FLAGS
        .iter()
        .filter(|(_, event)| events.iter().any(|e| e == event))
        .map(|(flag, _)| *flag)
        .collect()
}

/// The hook GitLab is asked to make: `url`, `token`, every flag (on only for `on`), TLS
/// verification on.
pub fn hook_body(url: &str, token: &str, on: &[&str]) -> Value {
    let mut body = Map::new();
    body.insert("url".into(), json!(url));
    body.insert("token".into(), json!(token));
    for (flag, _) in FLAGS {
        body.insert((*flag).into(), json!(on.contains(flag)));
    }
    body.insert("enable_ssl_verification".into(), json!(true));
    Value::Object(body)
}

/// A project as typed (`group/project`, `group/sub/project`, its URL on `web`, with or without
/// `.git`), as the project's path; `None` for an empty line.
pub fn project_path(web: &str, typed: &str) -> Option<String> {
    let t = typed.trim();
    let t = t.strip_prefix(web).unwrap_or(t);
    let t = t
        .trim_matches('/')
        .trim_end_matches(".git")
        .split("/-/")
        .next()
        .unwrap_or_default()
        .trim_matches('/');
    (!t.is_empty()).then(|| t.to_string())
}

/// The API's URL of a project's hooks: `{web}/api/v4/projects/{path, URL-encoded}/hooks`.
pub fn hooks_url(web: &str, project: &str) -> String {
    format!(
        "{web}/api/v4/projects/{}/hooks",
        url::form_urlencoded::byte_serialize(project.as_bytes()).collect::<String>()
    )
}

/// What GitLab's error answer says: its `message` (a text or the fields' complaints), its
/// `error_description` or `error`.
fn message(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let text = match (&v["message"], &v["error_description"], &v["error"]) {
        (Value::String(m), _, _) => m.clone(),
        (Value::Object(fields), _, _) => fields
            .iter()
            .map(|(k, v)| {
                let said = match v {
                    Value::Array(a) => a
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", "),
                    other => other.to_string(),
                };
                format!("{k} {said}")
            })
            .collect::<Vec<_>>()
            .join("; "),
        (_, Value::String(d), _) => d.clone(),
        (_, _, Value::String(e)) => e.clone(),
        _ => body.chars().take(200).collect(),
    };
    text.trim().to_string()
}

/// What a refusal of GitLab's means for `project`, by status, with GitLab's own words.
pub fn refusal(status: u16, body: &str, project: &str) -> String {
    let said = message(body);
    match status {
        401 => format!("401: the token is not valid (wrong, expired or revoked) — GitLab said {said:?}"),
        403 if said.contains("insufficient_scope") || body.contains("insufficient_scope") => {
            "403: the token lacks the api scope".to_string()
        }
        403 => format!("403: the token's user is not a maintainer of {project} (a hook needs the Maintainer role)"),
        404 => format!("404: there is no project {project} on this GitLab, or the token cannot see it"),
        _ => format!("{status}: GitLab said {said:?}"),
    }
}

/// A hook made: its id and its project's id, from a `201` answer; otherwise what went wrong.
pub fn read_hook(status: u16, body: &str, project: &str) -> Result<(u64, u64), String> {
    if status != 201 && status != 200 {
        return Err(refusal(status, body, project));
    }
    let v: Value =
        serde_json::from_str(body).map_err(|_| format!("{status}: GitLab's answer is not JSON"))?;
    match (v["id"].as_u64(), v["project_id"].as_u64()) {
        (Some(id), Some(project_id)) => Ok((id, project_id)),
        _ => Err(format!("{status}: GitLab's answer names no hook id")),
    }
}

/// The trigger GitLab's test endpoint takes for a hook: the first of its flags a test can send
/// (`push_events` and the like; `tag_push_events`, …), `push_events` when it has none.
pub fn test_trigger(events: &[String]) -> &str {
    events
        .iter()
        .map(String::as_str)
        .find(|f| FLAGS.iter().any(|(flag, _)| flag == f))
        .unwrap_or("push_events")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hooks_flags_are_the_rules_events_and_every_flag_is_set() {
        let events: Vec<String> = [
            "Merge Request Hook",
            "Push Hook",
            "Push Hook",
            "System Hook",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(flags(&events), ["push_events", "merge_requests_events"]);
        let body = hook_body("https://cw.example/hooks/gitlab", "tok", &flags(&events));
        assert_eq!(body["push_events"], true);
        assert_eq!(body["merge_requests_events"], true);
        assert_eq!(
            body["tag_push_events"], false,
            "set, so GitLab's defaults do not add it"
        );
        assert_eq!(body["enable_ssl_verification"], true);
        assert_eq!(body["token"], "tok");
        assert_eq!(
            body.as_object().unwrap().len(),
            FLAGS.len() + 3,
            "url, token, TLS and every flag"
        );
        // A rules set without push still turns push off (GitLab's default is on).
        assert_eq!(hook_body("u", "t", &[])["push_events"], false);
    }

    #[test]
    fn a_project_is_its_path_however_typed() {
        let web = "https://gitlab.example";
        for typed in [
            "group/project",
            " group/project/ ",
            "https://gitlab.example/group/project",
            "https://gitlab.example/group/project.git",
            "https://gitlab.example/group/project/-/merge_requests/4",
        ] {
            assert_eq!(
                project_path(web, typed).as_deref(),
                Some("group/project"),
                "{typed}"
            );
        }
        assert_eq!(project_path(web, "  "), None);
        assert_eq!(
            hooks_url(web, "group/sub/project"),
            "https://gitlab.example/api/v4/projects/group%2Fsub%2Fproject/hooks"
        );
    }

    #[test]
    fn gitlabs_answers_read_by_name() {
        // The shapes of GitLab's docs (`doc/api/rest/troubleshooting.md`, project_webhooks.md).
        assert_eq!(
            read_hook(
                201,
                r#"{"id": 1, "url": "http://example.com/hook", "project_id": 3}"#,
                "g/p"
            ),
            Ok((1, 3))
        );
        let e = read_hook(401, r#"{"message": "401 Unauthorized"}"#, "g/p").unwrap_err();
        assert!(
            e.starts_with("401: the token is not valid") && e.contains("401 Unauthorized"),
            "{e}"
        );
        let e = read_hook(403, r#"{"message": "403 Forbidden"}"#, "g/p").unwrap_err();
        assert!(e.contains("not a maintainer of g/p"), "{e}");
        let e = read_hook(
            403,
            r#"{"error": "insufficient_scope", "error_description": "The request requires higher privileges than provided by the access token.", "scope": "api"}"#,
            "g/p",
        )
        .unwrap_err();
        assert_eq!(e, "403: the token lacks the api scope");
        let e = read_hook(404, r#"{"message": "404 Project Not Found"}"#, "g/p").unwrap_err();
        assert!(e.contains("no project g/p"), "{e}");
        let e = read_hook(
            422,
            r#"{"message": {"url": ["is blocked: Requests to the local network are not allowed"]}}"#,
            "g/p",
        )
        .unwrap_err();
        assert!(
            e.contains("url is blocked: Requests to the local network"),
            "{e}"
        );
        let e = read_hook(400, r#"{"error": "url is missing"}"#, "g/p").unwrap_err();
        assert!(e.contains("url is missing"), "{e}");
        assert!(read_hook(201, "<html>", "g/p")
            .unwrap_err()
            .contains("not JSON"));
        assert_eq!(
            test_trigger(&["merge_requests_events".into()]),
            "merge_requests_events"
        );
        assert_eq!(test_trigger(&[]), "push_events");
    }
}
