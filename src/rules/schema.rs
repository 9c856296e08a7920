//! The JSON Schema of rule files: shipped in the binary, printed by
//! `cardwire check --print-schema` for editors, and the first check every rule file passes.
//!
//! Schema errors are turned into the same `file:line:col` problems as every other check, in
//! words a person can act on: an unknown key names the closest valid one, a missing key is
//! named, a wrong type says what was expected.

use std::sync::LazyLock;

use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

/// The schema, as shipped.
pub const SCHEMA: &str = include_str!("schema.json");

static PARSED: LazyLock<Value> =
    LazyLock::new(|| serde_json::from_str(SCHEMA).expect("the shipped rule schema is JSON"));

static VALIDATOR: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    jsonschema::validator_for(&PARSED).expect("the shipped rule schema is a valid JSON Schema")
});

/// One schema violation: where (a dotted path such as `[2].when.all[0]`), whether the position
/// is a key's, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The path of the node (or of the key, when `at_key`).
    pub path: String,
    /// Whether `path` names a key (an unknown one) rather than a value.
    pub at_key: bool,
    /// What is wrong.
    pub message: String,
}

/// Checks a rule file's tree against the schema.
pub fn validate(value: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    for error in VALIDATOR.iter_errors(value) {
        let path = dotted(&error.instance_path().to_string());
        let schema_path = error.schema_path().to_string();
        match error.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                let valid = valid_keys(&schema_path);
                let valid: Vec<&str> = valid.iter().map(String::as_str).collect();
                for key in unexpected {
                    let hint = crate::yaml::closest(key, &valid)
                        .map(|b| format!(": did you mean `{b}`?"))
                        .unwrap_or_default();
                    out.push(Violation {
                        path: crate::yaml::join_path(&path, key),
                        at_key: true,
                        message: format!(
                            "unknown field `{key}`{hint} (valid: {})",
                            valid.join(", ")
                        ),
                    });
                }
            }
            ValidationErrorKind::Required { property } => out.push(Violation {
                path,
                at_key: false,
                message: format!(
                    "missing required key `{}`",
                    property.as_str().unwrap_or("?")
                ),
            }),
            ValidationErrorKind::Enum { options } => {
                let valid: Vec<&str> = options
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let given = error.instance().to_string();
                let hint = error
                    .instance()
                    .as_str()
                    .and_then(|g| crate::yaml::closest(g, &valid))
                    .map(|b| format!(": did you mean `{b}`?"))
                    .unwrap_or_default();
                out.push(Violation {
                    path: path.clone(),
                    at_key: false,
                    message: format!(
                        "`{}`: {given} is not one of {}{hint}",
                        path.rsplit('.').next().unwrap_or(&path),
                        valid.join(", ")
                    ),
                });
            }
            ValidationErrorKind::Type { .. } if path.is_empty() => out.push(Violation {
                path,
                at_key: false,
                message: "a rule file is a list of rules (each starting with `- name: ...`)".into(),
            }),
            _ => out.push(Violation {
                path: path.clone(),
                at_key: false,
                message: format!("{}: {error}", if path.is_empty() { "file" } else { &path }),
            }),
        }
    }
    out
}

/// `/0/when/all/1` → `[0].when.all[1]`.
fn dotted(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if seg.parse::<usize>().is_ok() {
            out.push_str(&format!("[{seg}]"));
        } else {
            out = crate::yaml::join_path(&out, &seg);
        }
    }
    out
}

/// The property names allowed where an `additionalProperties` keyword failed.
fn valid_keys(schema_path: &str) -> Vec<String> {
    let parent = schema_path
        .strip_suffix("/additionalProperties")
        .unwrap_or(schema_path);
    // The path runs through `$ref`s; the keyword's own object is the last definition named.
    let parent = match parent.rfind("/definitions/") {
        Some(i) => &parent[i..],
        None => parent,
    };
    PARSED
        .pointer(parent)
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn violations_are_worded_for_people() {
        let v = validate(&json!([
            {"name": "a", "source": "s", "event": "e", "tempalte": "t"},
            {"name": "b", "source": "s", "event": "e", "template": "t", "when": {"all": [{"path": "x", "equls": 1}]}},
            {"name": "c", "source": "s", "event": "e", "template": "t", "limit": {"rate": "five"}, "enabled": "yes"},
            {"name": "d", "source": "s", "event": "e", "template": "t", "update": "replac"}
        ]));
        let messages: Vec<String> = v
            .iter()
            .map(|v| format!("{} {}", v.path, v.message))
            .collect();
        assert!(
            messages.iter().any(|m| m
                .starts_with("[0].tempalte unknown field `tempalte`: did you mean `template`?")),
            "{messages:#?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.starts_with("[0] missing required key `template`")),
            "{messages:#?}"
        );
        assert!(
            messages.iter().any(|m| m.starts_with(
                "[1].when.all[0].equls unknown field `equls`: did you mean `equals`?"
            )),
            "{messages:#?}"
        );
        assert!(
            messages.iter().any(|m| m.starts_with("[2].limit.rate")),
            "{messages:#?}"
        );
        assert!(
            messages.iter().any(|m| m.starts_with("[2].enabled")),
            "{messages:#?}"
        );
        assert!(
            messages.contains(
                &"[3].update `update`: \"replac\" is not one of replace, reply, new: did you mean `replace`?"
                    .to_string()
            ),
            "{messages:#?}"
        );
        assert_eq!(
            validate(&json!({"a": 1}))[0].message,
            "a rule file is a list of rules (each starting with `- name: ...`)"
        );
    }

    #[test]
    fn the_shipped_schema_compiles() {
        assert!(validate(&json!([])).is_empty());
    }
}
