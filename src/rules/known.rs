//! Known payload shapes: a `when` path that can never exist in the rule's event is a mistake
//! worth reporting before the rule silently never matches.
//!
//! For GitHub the shapes are the JSON Schemas of `@octokit/webhooks-schemas` 7.6.1 (MIT licence,
//! (c) Octokit contributors), vendored as `github-webhooks.schema.json` (whitespace removed,
//! content unchanged). The check is conservative: a path is reported only when every schema
//! branch of the event — narrowed to the rule's actions when it names some — rules it out;
//! wherever a schema leaves an object open, anything may follow.

use std::cell::OnceCell;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use serde_json::Value;

use super::cond::{FieldPath, Segment};

/// The known shapes, parsed when a check first needs them and kept only while a load holds
/// them: parsed, the GitHub schemas take about 5 MB of heap, which a running gateway does not
/// need between rule loads.
#[derive(Default)]
pub struct Shapes {
    github: OnceCell<Arc<Value>>,
}

impl Shapes {
    fn github(&self) -> &Value {
        static GITHUB: Shared = Shared::new();
        self.github.get_or_init(|| GITHUB.get())
    }
}

/// The parsed GitHub schemas, shared by every holder at a time (a reload while another load
/// holds them does not parse them twice) and freed when the last holder drops them.
struct Shared(Mutex<Weak<Value>>);

impl Shared {
    const fn new() -> Self {
        Self(Mutex::new(Weak::new()))
    }

    fn get(&self) -> Arc<Value> {
        let mut shared = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = shared.upgrade() {
            return held;
        }
        let parsed = Arc::new(
            serde_json::from_str(include_str!("github-webhooks.schema.json"))
                .expect("the vendored GitHub webhook schema is JSON"),
        );
        *shared = Arc::downgrade(&parsed);
        parsed
    }
}

/// Why a path cannot exist: the first segment no branch allows, and a suggestion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Impossible {
    /// The path up to and including the segment that cannot exist.
    pub at: String,
    /// The closest key that does exist there, if one is close.
    pub suggestion: Option<String>,
}

/// Checks a GitHub path. `None` when it can exist or when the event has no known schema.
pub fn check_github(
    shapes: &Shapes,
    event: &str,
    actions: &[String],
    path: &FieldPath,
) -> Option<Impossible> {
    let schema = shapes.github();
    let defs = schema.get("definitions")?;
    let roots: Vec<&Value> = if actions.is_empty() {
        vec![defs
            .get(format!("{event}_event"))
            .or_else(|| defs.get(format!("{event}$event")))?]
    } else {
        let found: Vec<&Value> = actions
            .iter()
            .filter_map(|a| defs.get(format!("{event}${a}")))
            .collect();
        if found.len() != actions.len() {
            return None; // an action the schema does not know: no claim either way
        }
        found
    };
    let mut nodes: Vec<&Value> = roots.into_iter().flat_map(|n| expand(schema, n)).collect();
    let mut so_far = String::new();
    for seg in path.segments() {
        let mut next = Vec::new();
        let mut keys_here = Vec::new();
        for node in &nodes {
            match step(node, seg, &mut keys_here) {
                Step::Open => return None,
                Step::To(children) => {
                    next.extend(children.into_iter().flat_map(|n| expand(schema, n)))
                }
                Step::Closed => {}
            }
        }
        so_far = match seg {
            Segment::Key(k) if so_far.is_empty() => k.clone(),
            Segment::Key(k) => format!("{so_far}.{k}"),
            Segment::Index(i) => format!("{so_far}[{i}]"),
            Segment::Each => format!("{so_far}.*"),
        };
        if next.is_empty() {
            let suggestion = match seg {
                Segment::Key(k) => {
                    let candidates: Vec<&str> = keys_here.iter().map(String::as_str).collect();
                    crate::yaml::closest(k, &candidates).map(str::to_string)
                }
                _ => None,
            };
            return Some(Impossible {
                at: so_far,
                suggestion,
            });
        }
        nodes = next;
    }
    None
}

enum Step<'a> {
    /// Anything may follow here.
    Open,
    /// These schemas describe what follows.
    To(Vec<&'a Value>),
    /// This branch rules the segment out.
    Closed,
}

/// Follows `$ref`s and spreads `allOf`/`anyOf`/`oneOf` into the branches a value may match.
/// A key allowed by any member of an `allOf` is allowed (the octokit schemas split an object's
/// properties across `allOf` members). `$ref`s point into `schema`.
fn expand<'a>(schema: &'a Value, node: &'a Value) -> Vec<&'a Value> {
    let mut out = Vec::new();
    let mut stack = vec![node];
    let mut seen = 0;
    while let Some(n) = stack.pop() {
        seen += 1;
        if seen > 10_000 {
            break; // a cycle; what was found is enough for a conservative answer
        }
        if let Some(r) = n.get("$ref").and_then(Value::as_str) {
            if let Some(target) = r.strip_prefix('#').and_then(|p| schema.pointer(p)) {
                stack.push(target);
            }
            continue;
        }
        let mut combined = false;
        for key in ["allOf", "anyOf", "oneOf"] {
            if let Some(branches) = n.get(key).and_then(Value::as_array) {
                stack.extend(branches);
                combined = true;
            }
        }
        if !combined || n.get("properties").is_some() || n.get("items").is_some() {
            out.push(n);
        }
    }
    out
}

fn step<'a>(node: &'a Value, seg: &Segment, keys_here: &mut Vec<String>) -> Step<'a> {
    let types: Vec<&str> = match node.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let is = |t: &str| types.is_empty() || types.contains(&t);
    match seg {
        Segment::Key(k) => {
            if !is("object") {
                return Step::Closed;
            }
            match node.get("properties").and_then(Value::as_object) {
                Some(props) => {
                    keys_here.extend(props.keys().cloned());
                    if let Some(child) = props.get(k) {
                        return Step::To(vec![child]);
                    }
                    match additional(node) {
                        Some(Value::Bool(false)) => Step::Closed,
                        Some(schema @ Value::Object(_)) => Step::To(vec![schema]),
                        _ => Step::Open,
                    }
                }
                None if types.is_empty() && node.get("items").is_some() => Step::Closed,
                None => match additional(node) {
                    Some(schema @ Value::Object(_)) => Step::To(vec![schema]),
                    Some(Value::Bool(false)) => Step::Closed,
                    _ => Step::Open,
                },
            }
        }
        Segment::Index(_) | Segment::Each => {
            if let Some(items) = node.get("items") {
                return Step::To(vec![items]);
            }
            if matches!(seg, Segment::Each) && is("object") {
                if let Some(props) = node.get("properties").and_then(Value::as_object) {
                    return Step::To(props.values().collect());
                }
                return Step::Open;
            }
            if is("array") {
                Step::Open
            } else {
                Step::Closed
            }
        }
    }
}

/// `additionalProperties`, or the octokit schemas' `tsAdditionalProperties`, which they use on
/// the `allOf` members that extend a closed object.
fn additional(node: &Value) -> Option<&Value> {
    node.get("additionalProperties")
        .or_else(|| node.get("tsAdditionalProperties"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(event: &str, actions: &[&str], path: &str) -> Option<Impossible> {
        let actions: Vec<String> = actions.iter().map(|s| s.to_string()).collect();
        check_github(
            &Shapes::default(),
            event,
            &actions,
            &FieldPath::parse(path).unwrap(),
        )
    }

    #[test]
    fn the_schemas_are_shared_while_held_and_freed_after() {
        let shared = Shared::new();
        let first = shared.get();
        let second = shared.get();
        assert!(Arc::ptr_eq(&first, &second), "parsed once while held");
        assert!(first.pointer("/definitions/push$event").is_some());
        drop(first);
        drop(second);
        assert!(
            shared.0.lock().unwrap().upgrade().is_none(),
            "nobody holds them: freed"
        );
    }

    #[test]
    fn real_paths_exist() {
        assert_eq!(
            check("pull_request", &["closed"], "pull_request.merged"),
            None
        );
        assert_eq!(check("pull_request", &[], "pull_request.user.login"), None);
        assert_eq!(check("push", &[], "commits[0].author.name"), None);
        assert_eq!(check("push", &[], "commits.*.id"), None);
        assert_eq!(check("issues", &["opened"], "issue.labels.*.name"), None);
        assert_eq!(
            check("workflow_run", &["completed"], "workflow_run.conclusion"),
            None
        );
        // An event with no schema: no claim.
        assert_eq!(check("no_such_event", &[], "anything"), None);
    }

    #[test]
    fn impossible_paths_are_named_with_a_suggestion() {
        let e = check("pull_request", &["closed"], "pull_request.mergd").unwrap();
        assert_eq!(e.at, "pull_request.mergd");
        assert_eq!(e.suggestion.as_deref(), Some("merged"));
        let e = check("push", &[], "comits[0].id").unwrap();
        assert_eq!(
            (e.at.as_str(), e.suggestion.as_deref()),
            ("comits", Some("commits"))
        );
        let e = check("push", &[], "ref.name").unwrap();
        assert_eq!(e.at, "ref.name");
    }
}
