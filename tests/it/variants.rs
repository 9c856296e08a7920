//! Payloads the fixtures do not contain: every shipped rule, with every vendored payload it
//! takes, rendered in every kind with variants of that payload that its upstream may really
//! send — and no shipped template may fail on one.
//!
//! Where the variants come from:
//! - GitHub: the event's published JSON Schema (`@octokit/webhooks-schemas`, built into the
//!   binary for rule checks): each field the schema lets be `null` set to null, each field it
//!   does not require removed, one at a time and all at once. Besides the schema, what GitHub
//!   documents and the schema does not say: the `sender` is empty for actions not taken by a
//!   user (GitHub Enterprise Server sends `"sender": null`, e.g. on `code_scanning_alert`).
//! - GitLab and Alertmanager publish no schema. Their documentation gives example payloads, and
//!   fields arrive with later versions (GitLab's `draft`, `detailed_merge_status`, a pipeline's
//!   `name` and `url`; Alertmanager's `truncatedAlerts`, `fingerprint`) or are null when unset
//!   (descriptions, `finished_at`, `merge_request` of a pipeline); an older version's payload
//!   lacks what a later one added. No list of fields assumed present holds across versions
//!   (an earlier one here did not), so every field is treated as optional and nullable: a
//!   template must not fail on any field it reads being absent, except those its rule's
//!   conditions require (a variant the rule no longer takes makes no card).
//!
//! One-at-a-time variants touch only what the rule and its template read of the payload (the
//! projection ingest builds, see `cardwire::needs`): a field nothing reads cannot change the
//! card. A variant the rule no longer takes is not rendered (no card would be).

use serde_json::Value;

use cardwire::render::CardKind;

use crate::shipped::{request, shipped, TABLE};
use crate::utils::*;

/// One step of a path into a payload.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

/// What a variant does at a path.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Change {
    Null,
    Remove,
}

type Path = Vec<Step>;

fn show(path: &Path) -> String {
    let mut s = String::new();
    for step in path {
        match step {
            Step::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Step::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Applies a change; false when the path is no longer there (a parent already changed).
fn apply(v: &mut Value, path: &[Step], change: Change) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut at = v;
    for step in parents {
        at = match (step, at) {
            (Step::Key(k), Value::Object(m)) => match m.get_mut(k) {
                Some(x) => x,
                None => return false,
            },
            (Step::Index(i), Value::Array(a)) => match a.get_mut(*i) {
                Some(x) => x,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, at, change) {
        (Step::Key(k), Value::Object(m), Change::Null) if m.contains_key(k) => {
            m.insert(k.clone(), Value::Null);
            true
        }
        (Step::Key(k), Value::Object(m), Change::Remove) => m.remove(k).is_some(),
        (Step::Index(i), Value::Array(a), Change::Null) if *i < a.len() => {
            a[*i] = Value::Null;
            true
        }
        _ => false,
    }
}

/// The GitHub webhook schemas, with `$ref`, `allOf`, `anyOf` and `oneOf` followed.
struct Schemas {
    root: Value,
}

impl Schemas {
    fn load() -> Self {
        let text =
            std::fs::read_to_string(root().join("src/rules/github-webhooks.schema.json")).unwrap();
        Self {
            root: serde_json::from_str(&text).unwrap(),
        }
    }

    fn def(&self, name: &str) -> Option<&Value> {
        self.root["definitions"].get(name)
    }

    /// The schema of an event with an action: `{event}${action}`, else the event's.
    fn event(&self, event: &str, action: Option<&str>) -> Option<&Value> {
        action
            .and_then(|a| self.def(&format!("{event}${a}")))
            .or_else(|| self.def(&format!("{event}$event")))
            .or_else(|| self.def(&format!("{event}_event")))
    }

    /// Every node a schema stands for: itself and its `allOf` / `anyOf` / `oneOf` branches,
    /// references followed.
    fn nodes<'a>(&'a self, s: &'a Value, out: &mut Vec<&'a Value>) {
        if out.len() > 64 {
            return;
        }
        let s = match s.get("$ref").and_then(Value::as_str) {
            Some(r) => match r.strip_prefix("#/definitions/").and_then(|n| self.def(n)) {
                Some(d) => d,
                None => return,
            },
            None => s,
        };
        out.push(s);
        for key in ["allOf", "anyOf", "oneOf"] {
            for b in s.get(key).and_then(Value::as_array).into_iter().flatten() {
                self.nodes(b, out);
            }
        }
    }

    fn allows_null(&self, s: &Value) -> bool {
        let mut nodes = Vec::new();
        self.nodes(s, &mut nodes);
        nodes.iter().any(|n| match n.get("type") {
            Some(Value::String(t)) => t == "null",
            Some(Value::Array(ts)) => ts.iter().any(|t| t == "null"),
            _ => n
                .get("enum")
                .and_then(Value::as_array)
                .is_some_and(|e| e.contains(&Value::Null)),
        })
    }
}

/// Where a field may be null or absent, as found walking a payload.
#[derive(Default)]
struct Found {
    nullable: Vec<Path>,
    optional: Vec<Path>,
}

/// Walks a GitHub payload alongside its schema nodes.
fn walk_github(schemas: &Schemas, nodes: &[&Value], v: &Value, path: &mut Path, found: &mut Found) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let with_k: Vec<&Value> = nodes
                    .iter()
                    .copied()
                    .filter(|n| {
                        n.pointer(&format!(
                            "/properties/{}",
                            k.replace('~', "~0").replace('/', "~1")
                        ))
                        .is_some()
                    })
                    .collect();
                if with_k.is_empty() {
                    continue;
                }
                path.push(Step::Key(k.clone()));
                let schemas_of_k: Vec<&Value> =
                    with_k.iter().map(|n| &n["properties"][k]).collect();
                if !child.is_null() && schemas_of_k.iter().any(|s| schemas.allows_null(s)) {
                    found.nullable.push(path.clone());
                }
                let required = |n: &&Value| {
                    n.get("required")
                        .and_then(Value::as_array)
                        .is_some_and(|r| r.iter().any(|x| x == k))
                };
                if !with_k.iter().all(required) {
                    found.optional.push(path.clone());
                }
                let mut below = Vec::new();
                for s in schemas_of_k {
                    schemas.nodes(s, &mut below);
                }
                walk_github(schemas, &below, child, path, found);
                path.pop();
            }
        }
        Value::Array(items) => {
            let mut below = Vec::new();
            for n in nodes {
                if let Some(s) = n.get("items") {
                    schemas.nodes(s, &mut below);
                }
            }
            for (i, item) in items.iter().enumerate().take(2) {
                path.push(Step::Index(i));
                walk_github(schemas, &below, item, path, found);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Every field of a GitLab or Alertmanager payload, as optional and nullable: neither publishes
/// a schema, and older versions leave out fields newer ones send, so no field is assumed
/// present. (What a rule's own conditions require is not varied in effect: a variant the rule
/// no longer takes makes no card and is not rendered.)
fn walk_documented(v: &Value, path: &mut Path, found: &mut Found) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                path.push(Step::Key(k.clone()));
                found.optional.push(path.clone());
                if !child.is_null() {
                    found.nullable.push(path.clone());
                }
                walk_documented(child, path, found);
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate().take(2) {
                // An index is never a field of its own: its item's fields are.
                path.push(Step::Index(i));
                walk_documented(item, path, found);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Whether `path` lies inside what the projection kept (what rules and templates read).
fn read(projected: &Value, path: &[Step]) -> bool {
    let mut at = projected;
    for step in path {
        at = match (step, at) {
            (Step::Key(k), Value::Object(m)) => match m.get(k) {
                Some(x) => x,
                None => return false,
            },
            (Step::Index(i), Value::Array(a)) => match a.get(*i) {
                Some(x) => x,
                None => return false,
            },
            _ => return false,
        };
    }
    true
}

/// The variants of a payload: (what was changed, the payload).
fn variants(
    schemas: &Schemas,
    fixture_name: &str,
    payload: &Value,
    projected: &Value,
) -> Vec<(String, Value)> {
    let (source, headers) = request(fixture_name);
    let mut found = Found::default();
    let mut path = Vec::new();
    if source == "github" {
        let event = headers["x-github-event"].to_str().unwrap();
        let action = payload["action"].as_str();
        let root = schemas
            .event(event, action)
            .unwrap_or_else(|| panic!("{fixture_name}: no schema for {event}"));
        let mut nodes = Vec::new();
        schemas.nodes(root, &mut nodes);
        walk_github(schemas, &nodes, payload, &mut path, &mut found);
        // Documented outside the schema: the sender is empty for actions no user took.
        let sender = vec![Step::Key("sender".into())];
        if payload.get("sender").is_some() {
            found.nullable.push(sender.clone());
            found.optional.push(sender);
        }
    } else {
        walk_documented(payload, &mut path, &mut found);
    }
    let mut out = Vec::new();
    let mut all_null = payload.clone();
    let mut all_removed = payload.clone();
    for (paths, change, all) in [
        (&found.nullable, Change::Null, &mut all_null),
        (&found.optional, Change::Remove, &mut all_removed),
    ] {
        for p in paths {
            apply(all, p, change);
            if read(projected, p) {
                let mut v = payload.clone();
                if apply(&mut v, p, change) {
                    out.push((format!("{} {:?}", show(p), change), v));
                }
            }
        }
    }
    out.push(("every nullable field null".into(), all_null));
    out.push(("every optional field removed".into(), all_removed));
    out
}

#[test]
fn no_shipped_template_fails_on_a_payload_variant() {
    let (config, pipeline) = shipped();
    let schemas = Schemas::load();
    let mut failures: Vec<String> = Vec::new();
    let (mut rendered, mut untaken) = (0, 0);
    let mut sdk_bodies = Vec::new();
    for (fixture_name, rules) in TABLE.iter().filter(|(_, r)| !r.is_empty()) {
        let (source, headers) = request(fixture_name);
        let bytes = fixture(fixture_name);
        let payload: Value = serde_json::from_slice(&bytes).unwrap();
        let hint = cardwire::ingest::verify::event_type_hint(&config.sources[source], &headers);
        let projected = pipeline
            .needs
            .projection(source, hint.as_deref())
            .parse(&bytes)
            .unwrap();
        for (what, variant) in variants(&schemas, fixture_name, &payload, &projected) {
            let Ok(event) = cardwire::ingest::verify::Verified::trusted(
                source,
                &config.sources[source],
                &headers,
            )
            .event(variant) else {
                continue;
            };
            let taken = pipeline.rules.matches(&event);
            for name in rules.iter() {
                let Some(rule) = taken.iter().find(|r| r.name == *name) else {
                    untaken += 1;
                    continue;
                };
                for kind in CardKind::ALL {
                    rendered += 1;
                    match pipeline
                        .renderer
                        .render(&rule.template, kind, event.context())
                    {
                        Err(e) => failures.push(format!(
                            "{fixture_name} ({what}) with {} as {}: {e}",
                            rule.name,
                            kind.as_str()
                        )),
                        Ok(body) if crate::sdk::CHECKED.contains(&kind) => sdk_bodies.push((
                            format!("{fixture_name} ({what}) with {}", rule.name),
                            kind,
                            body,
                        )),
                        Ok(_) => {}
                    }
                }
            }
        }
    }
    eprintln!(
        "{rendered} cards rendered from variants; {untaken} variants the rule no longer takes"
    );
    assert!(rendered > 1000, "only {rendered} variant cards rendered");
    assert!(
        failures.is_empty(),
        "{} of {rendered} variant cards failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // And what they render to, as Slack's and Google's own models read it.
    let refused = crate::sdk::refused(&sdk_bodies);
    assert!(
        refused.is_empty(),
        "{} of {} variant bodies refused by the SDK models:\n{}",
        refused.len(),
        sdk_bodies.len(),
        refused.join("\n")
    );
}

/// The variants are real: the schema walk finds fields GitHub documents as nullable or
/// optional, and the documented walk leaves the core alone.
#[test]
fn the_variants_cover_what_the_upstreams_document() {
    let schemas = Schemas::load();
    let names = |fixture_name: &str| -> Vec<String> {
        let payload: Value = serde_json::from_slice(&fixture(fixture_name)).unwrap();
        // Everything counts as read here, so every variant is listed.
        variants(&schemas, fixture_name, &payload, &payload)
            .into_iter()
            .map(|(what, _)| what)
            .collect()
    };
    let pr = names("github/pull_request.opened.0.json");
    for want in [
        "pull_request.body Null",
        "pull_request.head.repo Null",
        "repository.disabled Remove",
        "sender Null",
        "every nullable field null",
        "every optional field removed",
    ] {
        assert!(
            pr.iter().any(|v| v == want),
            "no variant {want:?} in {pr:#?}"
        );
    }
    assert!(
        !pr.iter()
            .any(|v| v == "pull_request.number Null" || v == "repository Remove"),
        "required, non-null fields stay"
    );
    // GitLab and Alertmanager: no field is assumed present, not even the project or an
    // alert's status (an older version's payload may lack any of them).
    let mr = names("gitlab/merge_request.json");
    for want in [
        "object_attributes.description Null",
        "project.path_with_namespace Remove",
        "project Null",
        "user Remove",
        "object_attributes.iid Remove",
    ] {
        assert!(
            mr.iter().any(|v| v == want),
            "no variant {want:?} in {mr:#?}"
        );
    }
    let am = names("alertmanager/firing.json");
    for want in [
        "alerts[0].generatorURL Remove",
        "alerts[0].status Remove",
        "commonLabels Remove",
        "alerts Null",
    ] {
        assert!(
            am.iter().any(|v| v == want),
            "no variant {want:?} in {am:#?}"
        );
    }
}
