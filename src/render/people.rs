//! The people map: upstream identities → chat users, for mentions.
//!
//! `people.yaml` (its path is `people` in the config) is a list of people:
//!
//! ```yaml
//! - name: Mona Lisa            # the display name
//!   upn: mona@contoso.com      # Teams: the user principal name (or Entra object id)
//!   slack: U024BE7LH           # Slack: the member id
//!   discord: "80351110224678912"  # Discord: the user id (quoted: YAML would round it)
//!   github: octocat            # found by any of: GitHub login, GitLab username, email
//!   gitlab: mona
//!   email: mona@example.com
//! ```
//!
//! `{{mention login}}` renders `<at>Mona Lisa</at>` for a known person with a `upn` (an
//! Adaptive Card then carries the matching `msteams.entities` mention) and the login as plain
//! text otherwise; a MessageCard cannot mention, so there the name is plain text. A portable
//! card's `mentions` become `<@U…>` on Slack and `<@id>` on Discord (the message's
//! `allowed_mentions` naming exactly those users) for people with those ids.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::yaml::{Document, Problem};

/// One person.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Person {
    /// The display name.
    pub name: String,
    /// The Teams user principal name or Entra object id.
    #[serde(default)]
    pub upn: Option<String>,
    /// The Slack member id (`U…` or `W…`).
    #[serde(default)]
    pub slack: Option<String>,
    /// The Discord user id (a snowflake: digits).
    #[serde(default)]
    pub discord: Option<String>,
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
                Ok(p) if p.slack.as_deref().is_some_and(|s| !slack_id(s)) => problems.push(
                    doc.problem(
                        &format!("[{i}].slack"),
                        format!(
                            "{:?} is not a Slack member id (U or W, then capital letters and digits, e.g. U024BE7LH; Slack shows it under the profile's ⋮ > Copy member ID)",
                            p.slack.unwrap_or_default()
                        ),
                    ),
                ),
                Ok(p) if p.discord.as_deref().is_some_and(|s| !discord_id(s)) => problems.push(
                    doc.problem(
                        &format!("[{i}].discord"),
                        format!(
                            "{:?} is not a Discord user id (17 to 20 digits, in quotes; Discord shows it under the profile's Copy User ID in developer mode)",
                            p.discord.unwrap_or_default()
                        ),
                    ),
                ),
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
            .filter_map(|p| Some((p, p.upn.as_ref()?)))
            .map(|(p, upn)| json!({"type": "mention", "text": format!("<at>{}</at>", p.name), "mentioned": {"id": upn, "name": p.name}}))
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

/// A Slack member id: `U` or `W`, then capital letters and digits.
fn slack_id(s: &str) -> bool {
    s.len() >= 3
        && s.starts_with(['U', 'W'])
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// A Discord user id: a snowflake, 17 to 20 digits.
fn discord_id(s: &str) -> bool {
    (17..=20).contains(&s.len()) && s.chars().all(|c| c.is_ascii_digit())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<People, Vec<Problem>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("people.yaml");
        std::fs::write(&path, text).unwrap();
        People::load(&path)
    }

    #[test]
    fn the_example_loads_with_every_chat_id() {
        let text = include_str!("../../examples/people.yaml");
        let people = load(text).unwrap();
        let mona = people.find("OCTOCAT").unwrap();
        assert_eq!(mona.slack.as_deref(), Some("U024BE7LH"));
        assert_eq!(mona.discord.as_deref(), Some("80351110224678912"));
        assert_eq!(mona.upn.as_deref(), Some("mona@contoso.com"));
    }

    #[test]
    fn chat_ids_of_the_wrong_shape_are_named_where_they_are() {
        let errs = load(
            "- name: A\n  github: a\n  slack: '<!channel>'\n- name: B\n  github: b\n  discord: '12ab'\n",
        )
        .err()
        .unwrap();
        let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 2, "{shown:#?}");
        assert!(
            shown[0].contains(":3:") && shown[0].contains("Slack member id"),
            "{shown:#?}"
        );
        assert!(
            shown[1].contains(":6:") && shown[1].contains("Discord user id"),
            "{shown:#?}"
        );
        // Only a Slack id, no Teams upn: fine.
        let people = load("- name: C\n  github: c\n  slack: W0123ABC\n").unwrap();
        assert_eq!(people.find("c").unwrap().upn, None);
    }
}
