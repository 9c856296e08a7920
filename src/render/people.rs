//! The people map: upstream identities → Teams users, for mentions.
//!
//! `people.yaml` (its path is `people` in the config) is a list of people:
//!
//! ```yaml
//! - name: Mona Lisa            # the display name Teams shows
//!   upn: mona@contoso.com      # the Teams user principal name (or Entra object id)
//!   github: octocat            # any of: GitHub login, GitLab username, email
//!   gitlab: mona
//!   email: mona@example.com
//! ```
//!
//! `{{mention login}}` renders `<at>Mona Lisa</at>` for a known person (an Adaptive Card then
//! carries the matching `msteams.entities` mention) and the login as plain text otherwise; a
//! MessageCard cannot mention, so there the name is plain text.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::yaml::{Document, Problem};

/// One person.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Person {
    /// The display name in Teams.
    pub name: String,
    /// The Teams user principal name or Entra object id.
    pub upn: String,
    /// GitHub login.
    #[serde(default)]
    pub github: Option<String>,
    /// GitLab username.
    #[serde(default)]
    pub gitlab: Option<String>,
    /// Email address.
    #[serde(default)]
    pub email: Option<String>,
}

/// The people, found by any of their upstream identities (case-insensitive).
#[derive(Debug, Clone, Default)]
pub struct People {
    by_identity: HashMap<String, Person>,
    by_name: HashMap<String, Person>,
}

impl People {
    /// Reads a people file; every problem with its position.
    pub fn load(path: &Path) -> Result<Self, Vec<Problem>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![Problem::new(
                path,
                crate::yaml::Pos { line: 1, col: 1 },
                format!("cannot read the people file: {e}"),
            )]
        })?;
        let doc = Document::parse(path, &text).map_err(|p| vec![p])?;
        let items = match &doc.value {
            Value::Array(a) => a.clone(),
            Value::Null => Vec::new(),
            _ => {
                return Err(vec![doc.problem(
                    "",
                    "a people file is a list of people (`- name: ..., upn: ...`)",
                )])
            }
        };
        let mut people = Vec::new();
        let mut problems = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match doc.deserialize_at::<Person>(&format!("[{i}]"), item) {
                Ok(p) if p.github.is_none() && p.gitlab.is_none() && p.email.is_none() => problems
                    .push(doc.problem(
                        &format!("[{i}]"),
                        format!("{:?} has no github, gitlab or email to be found by", p.name),
                    )),
                Ok(p) => people.push(p),
                Err(p) => problems.push(p),
            }
        }
        if problems.is_empty() {
            Ok(Self::new(people))
        } else {
            Err(problems)
        }
    }

    /// A map of these people.
    pub fn new(people: Vec<Person>) -> Self {
        let mut by_identity = HashMap::new();
        let mut by_name = HashMap::new();
        for p in people {
            for id in [&p.github, &p.gitlab, &p.email].into_iter().flatten() {
                by_identity.insert(id.to_lowercase(), p.clone());
            }
            by_name.insert(p.name.clone(), p);
        }
        Self {
            by_identity,
            by_name,
        }
    }

    /// The person behind an upstream identity.
    pub fn find(&self, identity: &str) -> Option<&Person> {
        self.by_identity.get(&identity.to_lowercase())
    }

    /// Adds `msteams.entities` for every `<at>Name</at>` of a known person in an Adaptive Card
    /// envelope's texts.
    pub fn add_mention_entities(&self, envelope: &mut Value) {
        let mut names = Vec::new();
        collect_mentions(envelope, &mut names);
        names.sort();
        names.dedup();
        let entities: Vec<Value> = names
            .iter()
            .filter_map(|n| self.by_name.get(n))
            .map(|p| json!({"type": "mention", "text": format!("<at>{}</at>", p.name), "mentioned": {"id": p.upn, "name": p.name}}))
            .collect();
        if entities.is_empty() {
            return;
        }
        let Some(card) = envelope
            .pointer_mut("/attachments/0/content")
            .and_then(Value::as_object_mut)
        else {
            return;
        };
        let msteams = card.entry("msteams").or_insert_with(|| json!({}));
        if let Some(m) = msteams.as_object_mut() {
            m.insert("entities".into(), Value::Array(entities));
        }
    }
}

fn collect_mentions(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(start) = rest.find("<at>") {
                let after = &rest[start + 4..];
                let Some(end) = after.find("</at>") else {
                    break;
                };
                out.push(after[..end].to_string());
                rest = &after[end + 5..];
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_mentions(x, out)),
        Value::Object(o) => o.values().for_each(|x| collect_mentions(x, out)),
        _ => {}
    }
}

/// Replaces `<at>Name</at>` with `Name`, for cards that cannot mention.
pub fn strip_mentions(v: &mut Value) {
    match v {
        Value::String(s) if s.contains("<at>") => *s = s.replace("<at>", "").replace("</at>", ""),
        Value::Array(a) => a.iter_mut().for_each(strip_mentions),
        Value::Object(o) => o.values_mut().for_each(strip_mentions),
        _ => {}
    }
}
