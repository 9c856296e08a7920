//! Rules: which events matter, which template renders them, which channel they go to.
//!
//! In: the rule files (`rules/*.yaml`, each a list of rules), the configured sources and the
//! names of the loaded templates. Out: a [`RuleSet`] whose [`RuleSet::matches`] picks the
//! rules for an event, in file order. Loading is two-phase: each rule as written
//! ([`RuleConfig`]) is compiled into a [`Rule`], and every problem in every file is reported
//! in one pass as `file:line:col: rule "<name>": message`.

pub mod cond;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use crate::config::SourceConfig;
use crate::event::Event;
use crate::render::CardKind;
use crate::yaml::{Document, Problem, Problems};
use cond::Cond;

/// A rule as written in YAML.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique across all rule files.
    pub name: String,
    /// The configured source it listens to.
    pub source: String,
    /// The source's event type (`push`, `Merge Request Hook`, `alert`, ...).
    pub event: String,
    /// Only these values of the payload's action; empty means any.
    #[serde(default)]
    pub actions: Vec<String>,
    /// Conditions on the payload and headers.
    #[serde(default)]
    pub when: Option<Value>,
    /// The template (without the `.teams.hbs` / `.workflow.hbs` ending).
    pub template: String,
    /// The channel its cards go to; defaults to the source's name.
    #[serde(default)]
    pub channel: Option<String>,
    /// Off rules are loaded and checked but match nothing.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// When this rule matches, later rules are not tried for the event.
    #[serde(default)]
    pub stop: bool,
}

fn yes() -> bool {
    true
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Its name.
    pub name: String,
    /// The source it listens to.
    pub source: String,
    /// The event type.
    pub event: String,
    /// Accepted actions; empty means any.
    pub actions: Vec<String>,
    /// Conditions.
    pub when: Option<Cond>,
    /// The template name.
    pub template: String,
    /// The channel.
    pub channel: String,
    /// Whether it is on.
    pub enabled: bool,
    /// Whether matching stops here.
    pub stop: bool,
    /// The file it came from.
    pub file: PathBuf,
}

impl Rule {
    /// Whether the rule takes the event.
    pub fn matches(&self, event: &Event) -> bool {
        self.enabled
            && self.source == event.source
            && self.event == event.event_type
            && (self.actions.is_empty()
                || event
                    .action
                    .as_ref()
                    .is_some_and(|a| self.actions.iter().any(|x| x == a)))
            && self.when.as_ref().is_none_or(|c| c.holds(event))
    }
}

/// Every rule, in file order.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

impl RuleSet {
    /// Compiles rule files. `files` are (name for messages, text); `has_template` says whether
    /// a template exists for a name and card kind.
    pub fn load(
        files: &[(PathBuf, String)],
        sources: &BTreeMap<String, SourceConfig>,
        has_template: impl Fn(&str, CardKind) -> bool,
    ) -> Result<Self, Problems> {
        let mut rules = Vec::new();
        let mut problems = Vec::new();
        let mut seen: HashMap<String, PathBuf> = HashMap::new();
        for (file, text) in files {
            let doc = match Document::parse(file, text) {
                Ok(d) => d,
                Err(p) => {
                    problems.push(p);
                    continue;
                }
            };
            let items = match &doc.value {
                Value::Array(items) => items.as_slice(),
                Value::Null => &[],
                _ => {
                    problems.push(doc.problem(
                        "",
                        "a rule file is a list of rules (each starting with `- name: ...`)",
                    ));
                    continue;
                }
            };
            for (i, item) in items.iter().enumerate() {
                let at = format!("[{i}]");
                let name = item
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string();
                let rc: RuleConfig = match doc.deserialize_at(&at, item) {
                    Ok(rc) => rc,
                    Err(p) => {
                        problems.push(Problem {
                            message: format!("rule {name:?}: {}", p.message),
                            ..p
                        });
                        continue;
                    }
                };
                let mut errs: Vec<(String, String)> = Vec::new();
                let mut report =
                    |path: &str, message: String| errs.push((path.to_string(), message));
                if rc.name.trim().is_empty() {
                    report(&format!("{at}.name"), "the name is empty".into());
                } else if let Some(first) = seen.get(&rc.name) {
                    report(
                        &format!("{at}.name"),
                        format!("the name is already used in {}", first.display()),
                    );
                } else {
                    seen.insert(rc.name.clone(), file.clone());
                }
                if !sources.contains_key(&rc.source) {
                    let names: Vec<&str> = sources.keys().map(String::as_str).collect();
                    let hint = crate::yaml::closest(&rc.source, &names)
                        .map(|b| format!("did you mean {b:?}? "))
                        .unwrap_or_default();
                    report(
                        &format!("{at}.source"),
                        format!(
                            "unknown source {:?}: {hint}configured sources: {}",
                            rc.source,
                            if names.is_empty() {
                                "none".to_string()
                            } else {
                                names.join(", ")
                            }
                        ),
                    );
                }
                let missing: Vec<&str> = [CardKind::Teams, CardKind::Workflow]
                    .into_iter()
                    .filter(|k| !has_template(&rc.template, *k))
                    .map(CardKind::as_str)
                    .collect();
                if !missing.is_empty() {
                    report(
                        &format!("{at}.template"),
                        format!(
                            "template {:?} has no {} version (expected {})",
                            rc.template,
                            missing.join(" or "),
                            missing
                                .iter()
                                .map(|k| format!("templates/{}.{k}.hbs", rc.template))
                                .collect::<Vec<_>>()
                                .join(" and ")
                        ),
                    );
                }
                if rc.event.trim().is_empty() {
                    report(&format!("{at}.event"), "the event is empty".into());
                }
                let when = match &rc.when {
                    None => None,
                    Some(v) => match Cond::compile(v, "when") {
                        Ok(c) => Some(c),
                        Err((path, message)) => {
                            // Point at the key: `matches:` rather than the regex after it.
                            let key = format!("{at}.{path}");
                            report(&format!("{key}#key"), format!("{path}: {message}"));
                            None
                        }
                    },
                };
                let ok = errs.is_empty();
                problems.extend(errs.into_iter().map(|(path, m)| {
                    let pos = match path.strip_suffix("#key") {
                        Some(p) => doc.key_pos(p),
                        None => doc.pos(&path),
                    };
                    Problem::new(file, pos, format!("rule {name:?}: {m}"))
                }));
                if ok {
                    rules.push(Rule {
                        channel: rc.channel.unwrap_or_else(|| rc.source.clone()),
                        name: rc.name,
                        source: rc.source,
                        event: rc.event,
                        actions: rc.actions,
                        when,
                        template: rc.template,
                        enabled: rc.enabled,
                        stop: rc.stop,
                        file: file.clone(),
                    });
                }
            }
        }
        if problems.is_empty() {
            Ok(Self { rules })
        } else {
            Err(Problems(problems))
        }
    }

    /// The rules that take the event, in order, up to and including the first with `stop`.
    pub fn matches(&self, event: &Event) -> Vec<&Rule> {
        let mut out = Vec::new();
        for rule in &self.rules {
            if rule.matches(event) {
                out.push(rule);
                if rule.stop {
                    break;
                }
            }
        }
        out
    }

    /// Every rule.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The channels rules send to.
    pub fn channels(&self) -> HashSet<&str> {
        self.rules.iter().map(|r| r.channel.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use serde_json::json;

    fn load(text: &str) -> Result<RuleSet, Problems> {
        let config = Config::default();
        RuleSet::load(
            &[(PathBuf::from("rules/t.yaml"), text.to_string())],
            &config.sources,
            |name, _| name != "missing",
        )
    }

    #[test]
    fn actions_conditions_and_stop() {
        let rules = load(
            "- name: merged\n  source: github\n  event: pull_request\n  actions: [closed]\n  when: {path: pull_request.merged, equals: true}\n  template: t\n  stop: true\n\
             - name: closed\n  source: github\n  event: pull_request\n  actions: [closed]\n  template: t\n\
             - name: disabled\n  source: github\n  event: pull_request\n  template: t\n  enabled: false\n",
        )
        .unwrap();
        let merged = Event::for_test(
            "github",
            "pull_request",
            json!({"action": "closed", "pull_request": {"merged": true}}),
            &[],
        );
        let names: Vec<_> = rules
            .matches(&merged)
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(names, ["merged"]);
        let closed = Event::for_test(
            "github",
            "pull_request",
            json!({"action": "closed", "pull_request": {"merged": false}}),
            &[],
        );
        let names: Vec<_> = rules
            .matches(&closed)
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(names, ["closed"]);
        let opened = Event::for_test("github", "pull_request", json!({"action": "opened"}), &[]);
        assert!(rules.matches(&opened).is_empty());
        assert_eq!(rules.rules()[0].channel, "github");
    }

    #[test]
    fn every_problem_is_reported_with_its_place() {
        let err = load(
            "- name: a\n  source: githb\n  event: push\n  template: missing\n\
             - name: a\n  source: github\n  event: push\n  template: t\n  when: {path: x, equal: 1}\n\
             - name: c\n  source: github\n  evnt: push\n  template: t\n",
        )
        .unwrap_err();
        let lines: Vec<String> = err.0.iter().map(|p| p.to_string()).collect();
        assert_eq!(lines.len(), 5, "{lines:#?}");
        assert!(
            lines[0].starts_with(
                "rules/t.yaml:2:11: rule \"a\": unknown source \"githb\": did you mean \"github\"?"
            ),
            "{}",
            lines[0]
        );
        assert!(lines[1].starts_with("rules/t.yaml:4:13: rule \"a\": template \"missing\" has no teams or workflow version"), "{}", lines[1]);
        assert!(
            lines[2].starts_with("rules/t.yaml:5:9: rule \"a\": the name is already used"),
            "{}",
            lines[2]
        );
        assert!(
            lines[3].starts_with("rules/t.yaml:9:19: rule \"a\": when.equal: unknown operator"),
            "{}",
            lines[3]
        );
        assert!(
            lines[4].starts_with(
                "rules/t.yaml:12:3: rule \"c\": unknown field `evnt`: did you mean `event`?"
            ),
            "{}",
            lines[4]
        );
    }
}
