//! The card a connection gets when a matched rule's template fails on an event: built here,
//! without any template, so that a template error never loses the event.
//!
//! In: what the gateway knows of the event without a template (source, event type, action,
//! the repository or project, the main link; see [`reads`]) and what failed. Out: a card of
//! the connection's kind, compact JSON. Guarantees: the card is valid for its kind (unit tests
//! run it through [`super::validate`]), every upstream text in it is Markdown-escaped, and it
//! stays far below the size limit (texts are cut).

use serde_json::{json, Value};

use super::helpers::{md_escape, truncate};
use super::CardKind;

/// Where a payload names what it is about: a repository, a project, an alert.
const SUBJECTS: &[&str] = &[
    "repository.full_name",
    "project.path_with_namespace",
    "commonLabels.alertname",
];

/// Where a payload has its main link, the event's own before its repository's.
const LINKS: &[&str] = &[
    "pull_request.html_url",
    "issue.html_url",
    "comment.html_url",
    "review.html_url",
    "alert.html_url",
    "release.html_url",
    "workflow_run.html_url",
    "workflow_job.html_url",
    "check_run.html_url",
    "deployment_status.target_url",
    "object_attributes.url",
    "compare",
    "repository.html_url",
    "project.web_url",
    "externalURL",
];

/// The payload paths a fallback card reads, for [`crate::needs`]: ingest builds them for every
/// event, since any template may fail.
pub fn reads() -> impl Iterator<Item = &'static str> {
    SUBJECTS.iter().chain(LINKS).copied()
}

/// What a fallback card says.
#[derive(Debug, Clone, PartialEq)]
pub struct Fallback {
    /// The configured source (`github`).
    pub source: String,
    /// The event type (`push`, `Merge Request Hook`).
    pub event: String,
    /// The payload's action, if any.
    pub action: Option<String>,
    /// The repository, project or alert the event is about, if the payload names one.
    pub subject: Option<String>,
    /// The event's main link (http or https), if the payload has one.
    pub link: Option<String>,
    /// Which template failed, where and why: `github/security.teams.hbs at 11:217: …`.
    pub failed: String,
}

impl Fallback {
    /// What the payload says of the subject and the main link (the first found).
    pub fn from_payload(
        source: &str,
        event: &str,
        action: Option<&str>,
        payload: &Value,
        failed: String,
    ) -> Self {
        let text = |path: &str| {
            payload
                .pointer(path)
                .and_then(Value::as_str)
                .filter(|s| !s.trim().is_empty())
                .map(str::to_string)
        };
        let at = |path: &str| text(&format!("/{}", path.replace('.', "/")));
        let subject = SUBJECTS.iter().find_map(|p| at(p));
        let link = LINKS
            .iter()
            .filter_map(|p| at(p))
            .find(|u| u.starts_with("https://") || u.starts_with("http://"));
        Self {
            source: source.to_string(),
            event: event.to_string(),
            action: action.map(str::to_string),
            subject,
            link,
            failed,
        }
    }

    /// The headline: `octo/repo: push (opened)`, Markdown-escaped.
    fn title(&self) -> String {
        self.title_with(md_escape)
    }

    /// The headline, each upstream text passed through `esc`.
    fn title_with(&self, esc: impl Fn(&str) -> String) -> String {
        let mut t = String::new();
        if let Some(s) = &self.subject {
            t.push_str(&esc(&truncate(s, 200)));
            t.push_str(": ");
        }
        t.push_str(&esc(&truncate(&self.event, 100)));
        if let Some(a) = &self.action {
            t.push_str(&format!(" ({})", esc(&truncate(a, 100))));
        }
        t
    }

    fn facts(&self) -> Vec<(&'static str, String)> {
        self.facts_with(md_escape)
    }

    fn facts_with(&self, esc: impl Fn(&str) -> String) -> Vec<(&'static str, String)> {
        let mut f = vec![
            ("Source", esc(&self.source)),
            ("Event", esc(&truncate(&self.event, 100))),
        ];
        if let Some(a) = &self.action {
            f.push(("Action", esc(&truncate(a, 100))));
        }
        if let Some(s) = &self.subject {
            f.push(("About", esc(&truncate(s, 200))));
        }
        f
    }

    /// The fallback as a portable card (plain texts; the converter escapes them), for the
    /// kinds other than Teams'.
    fn portable(&self) -> super::portable::Card {
        use super::portable::{Card, Fact, Link, Severity};
        let plain = |s: &str| s.to_string();
        Card {
            title: Some(self.title_with(plain)),
            text: Some(self.note()),
            severity: Some(Severity::Warning),
            facts: self
                .facts_with(plain)
                .into_iter()
                .map(|(n, v)| Fact {
                    name: n.into(),
                    value: v,
                })
                .collect(),
            link: self.link.clone(),
            links: self
                .link
                .iter()
                .map(|l| Link {
                    label: "Open".into(),
                    url: l.clone(),
                })
                .collect(),
            ..Card::default()
        }
    }

    fn note(&self) -> String {
        format!(
            "The template failed, so this card was built without it: {}",
            md_escape(&truncate(&self.failed, 500))
        )
    }

    /// The card, as the compact JSON body of its kind.
    pub fn card(&self, kind: CardKind) -> String {
        let title = self.title();
        let card = match kind {
            CardKind::Teams => {
                let mut c = json!({
                    "@type": "MessageCard",
                    "@context": "https://schema.org/extensions",
                    "summary": md_escape(&format!("{} {}", self.source, truncate(&self.event, 100))),
                    "themeColor": "BF8700",
                    "title": title,
                    "sections": [{
                        "facts": self.facts().into_iter().map(|(n, v)| json!({"name": n, "value": v})).collect::<Vec<_>>(),
                        "text": self.note(),
                        "markdown": true,
                    }],
                });
                if let Some(link) = &self.link {
                    c["potentialAction"] = json!([{"@type": "OpenUri", "name": "Open",
                        "targets": [{"os": "default", "uri": link}]}]);
                }
                c
            }
            CardKind::Workflow => {
                let mut content = json!({
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [
                        {"type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": true, "text": title},
                        {"type": "FactSet", "facts": self.facts().into_iter().map(|(n, v)| json!({"title": n, "value": v})).collect::<Vec<_>>()},
                        {"type": "TextBlock", "wrap": true, "isSubtle": true, "text": self.note()},
                    ],
                });
                if let Some(link) = &self.link {
                    content["actions"] =
                        json!([{"type": "Action.OpenUrl", "title": "Open", "url": link}]);
                }
                json!({"type": "message", "attachments": [{
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "contentUrl": null,
                    "content": content,
                }]})
            }
            _ => super::portable::convert(&self.portable(), kind),
        };
        card.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed() -> String {
        "template github/security.teams.hbs at 11:217: Helper/Decorator md param with name s required but not found".into()
    }

    #[test]
    fn a_fallback_card_is_valid_in_every_kind_and_names_the_event() {
        let payload = json!({"action": "created", "repository": {"full_name": "octo/hello_world",
            "html_url": "https://github.com/octo/hello_world"},
            "alert": {"html_url": "https://github.com/octo/hello_world/security/code-scanning/3"}, "sender": null});
        let f = Fallback::from_payload(
            "github",
            "code_scanning_alert",
            Some("created"),
            &payload,
            failed(),
        );
        assert_eq!(f.subject.as_deref(), Some("octo/hello_world"));
        assert_eq!(
            f.link.as_deref(),
            Some("https://github.com/octo/hello_world/security/code-scanning/3"),
            "the event's own link before the repository's"
        );
        for kind in CardKind::ALL {
            let body = f.card(kind);
            let card: Value = serde_json::from_str(&body).unwrap();
            super::super::validate::validate(kind, &card)
                .unwrap_or_else(|e| panic!("{}: {e:?}\n{body}", kind.as_str()));
            let headline = if kind.is_teams() {
                "octo/hello\\\\_world: code\\\\_scanning\\\\_alert (created)"
            } else {
                "octo/hello_world: code_scanning_alert (created)"
            };
            assert!(body.contains(headline), "{}: {body}", kind.as_str());
            assert!(
                body.contains("github/security.teams.hbs at 11:217"),
                "{body}"
            );
            assert!(body.contains("/security/code-scanning/3"));
        }
    }

    #[test]
    fn a_fallback_card_without_subject_or_link_and_with_hostile_text_is_still_valid() {
        let f = Fallback::from_payload(
            "generic",
            &"<b>@everyone</b> [x](javascript:alert(1))".repeat(50),
            None,
            &json!({"repository": {"html_url": "javascript:alert(1)"}}),
            "x".repeat(10_000),
        );
        assert_eq!((f.subject.as_deref(), f.link.as_deref()), (None, None));
        for kind in CardKind::ALL {
            let body = f.card(kind);
            let card: Value = serde_json::from_str(&body).unwrap();
            super::super::validate::validate(kind, &card).unwrap();
            assert!(body.len() < 4096, "{} bytes", body.len());
            // In every text of the card, each `<` and `]` of the upstream text is escaped
            // (`\<`, `\]`): no HTML, no link.
            fn texts<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
                match v {
                    Value::String(s) => out.push(s),
                    Value::Array(a) => a.iter().for_each(|x| texts(x, out)),
                    Value::Object(m) => m.values().for_each(|x| texts(x, out)),
                    _ => {}
                }
            }
            let mut all = Vec::new();
            texts(&card, &mut all);
            if !kind.is_teams() {
                // The other kinds escape in their own dialects (render::portable's tests).
                assert!(!body.contains("<b>"), "{body}");
                continue;
            }
            for t in all {
                let bare = |c: char| t.match_indices(c).any(|(i, _)| !t[..i].ends_with('\\'));
                assert!(!bare('<') && !bare(']'), "{t}");
            }
        }
    }
}
