//! Real sample payloads built into the binary: the vendored fixtures of `tests/fixtures/`
//! (GitHub's from `@octokit/webhooks-examples`, GitLab's from its documentation, Alertmanager's
//! in its documented shape; each folder's README gives the origin).
//!
//! `cardwire check` renders every rule's templates against the samples of the rule's event, so a
//! template that reads a field those payloads never have is reported before it fails in
//! production.

use include_dir::{include_dir, Dir};
use serde_json::Value;

use crate::event::SourceKind;

static FIXTURES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/tests/fixtures");

/// One sample payload.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Its path under tests/fixtures, e.g. `github/push.event.4.json`.
    pub name: String,
    /// The kind of source that sends it.
    pub kind: SourceKind,
    /// Its event type, as the source would name it (`push`, `Merge Request Hook`, `alert`).
    pub event: String,
    /// The payload.
    pub payload: Value,
}

/// A vendored payload's text as it is (`github/push.event.4.json`), for an emulator to send.
pub fn raw(name: &str) -> Option<&'static str> {
    FIXTURES.get_file(name)?.contents_utf8()
}

/// Every sample, in name order.
pub fn all() -> Vec<Sample> {
    let mut out = Vec::new();
    for (dir, kind) in [
        ("github", SourceKind::Github),
        ("gitlab", SourceKind::Gitlab),
        ("alertmanager", SourceKind::Alertmanager),
    ] {
        let Some(d) = FIXTURES.get_dir(dir) else {
            continue;
        };
        for f in d.files() {
            let name = f.path().to_string_lossy().replace('\\', "/");
            if !name.ends_with(".json") {
                continue;
            }
            let Some(payload) = f
                .contents_utf8()
                .and_then(|t| serde_json::from_str::<Value>(t).ok())
            else {
                continue;
            };
            let file = name.rsplit('/').next().unwrap_or_default();
            let event = match kind {
                SourceKind::Github => file.split('.').next().unwrap_or_default().to_string(),
                SourceKind::Gitlab => gitlab_event(&payload),
                _ => "alert".to_string(),
            };
            out.push(Sample {
                name,
                kind,
                event,
                payload,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The `X-Gitlab-Event` header GitLab sends with a payload, from its `object_kind`.
pub fn gitlab_event(payload: &Value) -> String {
    match payload
        .get("object_kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
    {
        "push" => "Push Hook",
        "tag_push" => "Tag Push Hook",
        "issue" | "work_item" => "Issue Hook",
        "note" => "Note Hook",
        "merge_request" => "Merge Request Hook",
        "pipeline" => "Pipeline Hook",
        "build" => "Job Hook",
        "deployment" => "Deployment Hook",
        "release" => "Release Hook",
        "wiki_page" => "Wiki Page Hook",
        "feature_flag" => "Feature Flag Hook",
        "milestone" => "Milestone Hook",
        _ => "",
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn samples_are_built_in_with_their_events() {
        let all = super::all();
        assert!(all.len() > 100);
        let mr = all
            .iter()
            .find(|s| s.name == "gitlab/merge_request.json")
            .unwrap();
        assert_eq!(mr.event, "Merge Request Hook");
        let push = all
            .iter()
            .find(|s| s.name == "github/push.event.4.json")
            .unwrap();
        assert_eq!(push.event, "push");
        assert!(
            all.iter().all(|s| !s.event.is_empty()),
            "every sample has an event type"
        );
    }
}
