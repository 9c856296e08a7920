//! The event: what ingest hands to the rules once a request is verified and parsed.
//!
//! An [`Event`] carries the payload (parsed once, as much of it as rules and templates read:
//! see [`crate::needs`]), the event type and action as the source kind defines them, the
//! upstream's delivery id (for dedup), and the request headers minus credentials. It is built
//! only from a verified request (see `ingest`).

use serde_json::{Map, Value};

use crate::ids::EventId;

/// The kinds of upstream cardwire understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// GitHub webhooks.
    Github,
    /// GitLab webhooks.
    Gitlab,
    /// Prometheus Alertmanager's webhook receiver (version 4).
    Alertmanager,
    /// Any JSON; the event type comes from a header or a field.
    Generic,
}

impl SourceKind {
    /// Every kind's name, as written in config and rules.
    pub const NAMES: [&'static str; 4] = ["github", "gitlab", "alertmanager", "generic"];

    /// The name used in config and rules.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Github => "github",
            Self::Gitlab => "gitlab",
            Self::Alertmanager => "alertmanager",
            Self::Generic => "generic",
        }
    }
}

/// Headers that carry credentials and never reach rules, templates or storage.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "x-hub-signature",
    "x-hub-signature-256",
    "x-gitlab-token",
];

/// One accepted upstream event.
#[derive(Debug, Clone)]
pub struct Event {
    /// Its id.
    pub id: EventId,
    /// The configured source's name.
    pub source: String,
    /// The source's kind.
    pub kind: SourceKind,
    /// The event type (`push`, `Merge Request Hook`, `alert`, ...).
    pub event_type: String,
    /// The payload's action (`opened`, `closed`, ...), when it has one.
    pub action: Option<String>,
    /// The upstream's delivery id, used to accept a redelivery once.
    pub delivery_key: Option<String>,
    /// Request headers, names in lower case, credentials removed.
    pub headers: Vec<(String, String)>,
    /// The payload's bytes as received, when ingest has them (kept for the playground's
    /// ring without serializing the payload again).
    pub raw: Option<bytes::Bytes>,
    /// Its trace's context (a W3C `traceparent`), when telemetry is on: stored with each card.
    pub trace: Option<String>,
    /// What templates see (see [`Event::context`]), wrapped once for Handlebars: the payload
    /// lives inside it, so it is neither copied nor parsed again on the way to the templates
    /// (rendering from a bare `&Value` would copy the whole payload for every card).
    context: handlebars::Context,
}

impl Event {
    /// Builds an event from a verified request's parts.
    pub fn new(
        source: &str,
        kind: SourceKind,
        event_type: String,
        delivery_key: Option<String>,
        headers: Vec<(String, String)>,
        payload: Value,
    ) -> Self {
        // What this reads is in `Event::reads`.
        let action = match kind {
            SourceKind::Gitlab => payload
                .pointer("/object_attributes/action")
                .or_else(|| payload.get("action")),
            SourceKind::Alertmanager => payload.get("status"),
            _ => payload.get("action"),
        }
        .and_then(Value::as_str)
        .map(str::to_string);
        let headers: Vec<(String, String)> = headers
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .filter(|(k, _)| !SECRET_HEADERS.contains(&k.as_str()))
            .collect();
        let id = EventId::new();
        let header_map: Map<String, Value> = headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let mut ctx = Map::new();
        ctx.insert("payload".into(), payload);
        ctx.insert("event".into(), Value::String(event_type.clone()));
        ctx.insert(
            "action".into(),
            action.clone().map(Value::String).unwrap_or(Value::Null),
        );
        ctx.insert("source".into(), Value::String(source.to_string()));
        ctx.insert("event_id".into(), Value::String(id.to_string()));
        ctx.insert("headers".into(), Value::Object(header_map));
        Self {
            id,
            source: source.to_string(),
            kind,
            event_type,
            action,
            delivery_key,
            headers,
            raw: None,
            trace: None,
            context: handlebars::Context::from(Value::Object(ctx)),
        }
    }

    /// The payload paths an event of `kind` reads to find its action (see [`crate::needs`]).
    pub fn reads(kind: SourceKind) -> &'static [&'static str] {
        match kind {
            SourceKind::Gitlab => &["object_attributes.action", "action"],
            SourceKind::Alertmanager => &["status"],
            _ => &["action"],
        }
    }

    /// The JSON body: what rules, templates and noise control read of it (see
    /// [`crate::needs`]), or all of it where it was parsed whole.
    pub fn payload(&self) -> &Value {
        &self.context.data()["payload"]
    }

    /// A header's value by name, any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// What templates see: `payload`, `event`, `action`, `source`, `headers`, `event_id`.
    pub fn context(&self) -> &Value {
        self.context.data()
    }

    /// The same, wrapped for [`crate::render::Renderer::render_with`].
    pub fn template_context(&self) -> &handlebars::Context {
        &self.context
    }

    /// An event for tests.
    #[doc(hidden)]
    pub fn for_test(
        source: &str,
        event_type: &str,
        payload: Value,
        headers: &[(&str, &str)],
    ) -> Self {
        Self::new(
            source,
            SourceKind::Github,
            event_type.to_string(),
            None,
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            payload,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn credentials_never_reach_the_context() {
        let e = Event::for_test(
            "github",
            "push",
            json!({"action": "opened"}),
            &[
                ("X-Hub-Signature-256", "sha256=00"),
                ("Authorization", "Bearer t"),
                ("X-GitHub-Event", "push"),
            ],
        );
        let ctx = e.context();
        assert_eq!(ctx["headers"].as_object().unwrap().len(), 1);
        assert_eq!(ctx["headers"]["x-github-event"], "push");
        assert_eq!(ctx["action"], "opened");
        assert_eq!(e.header("X-GITHUB-EVENT"), Some("push"));
    }
}
