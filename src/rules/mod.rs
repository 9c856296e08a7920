//! Rules: which events matter, which template renders them, which channel they go to.
//!
//! In: the rule files (`rules/*.yaml`, each a list of rules), the configured sources and the
//! names of the loaded templates. Out: a [`RuleSet`] whose [`RuleSet::matches`] picks the
//! rules for an event, in file order. Loading is two-phase: each rule as written
//! ([`RuleConfig`]) is compiled into a [`Rule`], and every problem in every file is reported
//! in one pass as `file:line:col: rule "<name>": message`.
//!
//! Its rooms: [`cond`] (`when:` conditions), [`expr`] (`if:` expressions in CEL), [`known`]
//! (the payload shapes a `when` path is checked against), [`schema`] (the rule files' JSON
//! Schema).

pub mod cond;
pub mod expr;
pub mod known;
pub mod schema;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::SourceConfig;
use crate::event::Event;
use crate::render::CardKind;
use crate::yaml::{Document, Problem, Problems};
use cond::Cond;
use expr::{Expr, Vars};

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
    /// A CEL expression that must be true.
    #[serde(default, rename = "if")]
    pub if_expr: Option<String>,
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
    /// At most this many cards; what exceeds it is folded into a summary (noise control).
    #[serde(default)]
    pub limit: Option<LimitConfig>,
    /// Drop repeats of the same key inside a window (noise control).
    #[serde(default)]
    pub dedup: Option<DedupConfig>,
    /// Whether this rule's cards may wait for a connection's digest (default) or always go at once.
    #[serde(default = "yes")]
    pub digest: bool,
    /// What a later card of the same subject (its template's `key`) does to the first one's
    /// message: `replace`, `reply` or `new`; the template's own `update` when not given.
    #[serde(default)]
    pub update: Option<crate::render::Update>,
}

/// `limit:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    /// `count/duration`, e.g. `5/1m`.
    pub rate: String,
    /// How many may go at once; defaults to the count.
    #[serde(default)]
    pub burst: Option<u32>,
    /// A template expression; each of its values gets its own limit (e.g. per repository).
    #[serde(default)]
    pub per: Option<String>,
}

/// `dedup:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupConfig {
    /// A template expression naming what counts as the same event.
    pub key: String,
    /// How long a key is remembered, e.g. `10m`.
    pub window: String,
}

/// A compiled rate limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    /// Cards allowed per `period`.
    pub count: u32,
    /// The period.
    pub period: Duration,
    /// Cards allowed at once.
    pub burst: u32,
    /// The key template, if limits are per value.
    pub per: Option<String>,
}

/// A compiled dedup setting.
#[derive(Debug, Clone, PartialEq)]
pub struct Dedup {
    /// The key template.
    pub key: String,
    /// How long a key is remembered.
    pub window: Duration,
}

/// Checks a template expression such as `{{payload.repository.full_name}}`.
fn check_template_expr(s: &str) -> Result<(), String> {
    handlebars::Template::compile(s)
        .map(drop)
        .map_err(|e| format!("template expression {s:?} does not compile: {}", e.reason()))
}

/// The rule index a path starts with: `[3].when` → 3.
fn item_index(path: &str) -> Option<usize> {
    path.strip_prefix('[')?.split(']').next()?.parse().ok()
}

/// Why a rule did or did not take an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The rule.
    pub rule: String,
    /// Whether it matched.
    pub matched: bool,
    /// Why not, naming the first check that failed and the value it saw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
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
    /// The CEL condition.
    pub expr: Option<Expr>,
    /// The template name.
    pub template: String,
    /// The channel.
    pub channel: String,
    /// Whether it is on.
    pub enabled: bool,
    /// Whether matching stops here.
    pub stop: bool,
    /// The rate limit.
    pub limit: Option<Limit>,
    /// The dedup setting.
    pub dedup: Option<Dedup>,
    /// Whether its cards may wait for a digest.
    pub digest: bool,
    /// What a later card of the same subject does, over its template's `update`.
    pub update: Option<crate::render::Update>,
    /// The file it came from.
    pub file: PathBuf,
    /// Where its `template:` stands in that file.
    pub template_at: crate::yaml::Pos,
    /// Why it takes no events although it is enabled: its source is not configured (a rule
    /// pack for a source a team does not use loads, checked, but idle).
    pub inactive: Option<String>,
}

impl Rule {
    /// Whether a connection listening to `channels` takes this rule's cards (none: every
    /// channel).
    pub fn sends_to(&self, channels: &[String]) -> bool {
        channels.is_empty() || channels.contains(&self.channel)
    }

    /// Whether the rule takes the event.
    pub fn matches(&self, event: &Event, vars: &Vars<'_>) -> bool {
        self.enabled
            && self.inactive.is_none()
            && self.source == event.source
            && self.event == event.event_type
            && self.action_ok(event)
            && self.when.as_ref().is_none_or(|c| c.holds(event))
            && self.expr.as_ref().is_none_or(|x| x.eval(vars) == Ok(true))
    }

    /// Adds what the rule's conditions read of the payload to `need` (a CEL expression is
    /// not analysed: it reads the whole payload).
    pub fn reads(&self, need: &mut crate::needs::Need) {
        if let Some(c) = &self.when {
            c.reads(need);
        }
        if self.expr.is_some() {
            need.add(&[], true);
        }
    }

    fn action_ok(&self, event: &Event) -> bool {
        self.actions.is_empty()
            || event
                .action
                .as_ref()
                .is_some_and(|a| self.actions.iter().any(|x| x == a))
    }

    /// Why the rule does not take the event (the first check that fails), or Ok.
    pub fn explain(&self, event: &Event, vars: &Vars<'_>) -> Result<(), String> {
        if !self.enabled {
            return Err("the rule is disabled (enabled: false)".into());
        }
        if let Some(why) = &self.inactive {
            return Err(format!("the rule is inactive: {why}"));
        }
        if self.source != event.source {
            return Err(format!(
                "source is {:?}, the rule wants {:?}",
                event.source, self.source
            ));
        }
        if self.event != event.event_type {
            return Err(format!(
                "event is {:?}, the rule wants {:?}",
                event.event_type, self.event
            ));
        }
        if !self.action_ok(event) {
            return Err(format!(
                "action is {}, the rule wants one of [{}]",
                event
                    .action
                    .as_deref()
                    .map(|a| format!("{a:?}"))
                    .unwrap_or_else(|| "missing".into()),
                self.actions.join(", ")
            ));
        }
        if let Some(c) = &self.when {
            c.explain(event, "when")?;
        }
        if let Some(x) = &self.expr {
            match x.eval(vars) {
                Ok(true) => {}
                Ok(false) => return Err(format!("if: {:?} is false", x.source)),
                Err(e) => return Err(format!("if: {e}")),
            }
        }
        Ok(())
    }
}

/// One load of rule files: what every file is checked against, and what the load found.
struct Loader<'a, T> {
    sources: &'a BTreeMap<String, SourceConfig>,
    has_template: &'a T,
    shapes: known::Shapes,
    /// Rule names already used, and where.
    seen: HashMap<String, PathBuf>,
    rules: Vec<Rule>,
    problems: Vec<Problem>,
}

/// Problems with one rule, as (path in the file, message); a path ending in `#key` points at
/// the key rather than its value.
type Report = Vec<(String, String)>;

impl<T: Fn(&str, CardKind) -> bool> Loader<'_, T> {
    /// Checks one file: its shape against the schema first (every problem at its place), then
    /// each rule whose shape is right.
    fn load_file(&mut self, file: &PathBuf, text: &str) {
        let doc = match Document::parse(file, text) {
            Ok(d) => d,
            Err(p) => {
                self.problems.push(p);
                return;
            }
        };
        let mut broken = HashSet::new();
        let mut file_broken = false;
        for vi in schema::validate(&doc.value) {
            let idx = item_index(&vi.path);
            match idx {
                Some(i) => {
                    broken.insert(i);
                }
                None => file_broken = true,
            }
            let name = idx
                .and_then(|i| doc.value.get(i))
                .map(|r| r.get("name").and_then(Value::as_str).unwrap_or("?"));
            let prefix = name.map(|n| format!("rule {n:?}: ")).unwrap_or_default();
            let pos = if vi.at_key {
                doc.key_pos(&vi.path)
            } else {
                doc.pos(&vi.path)
            };
            self.problems
                .push(Problem::new(file, pos, format!("{prefix}{}", vi.message)));
        }
        let items = match &doc.value {
            Value::Array(items) if !file_broken => items.as_slice(),
            _ => return,
        };
        for (i, item) in items
            .iter()
            .enumerate()
            .filter(|(i, _)| !broken.contains(i))
        {
            self.load_rule(file, &doc, i, item);
        }
    }

    /// Compiles one rule, or reports every problem it has.
    fn load_rule(&mut self, file: &PathBuf, doc: &Document, i: usize, item: &Value) {
        let at = format!("[{i}]");
        let name = item
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        let rc: RuleConfig = match doc.deserialize_at(&at, item) {
            Ok(rc) => rc,
            Err(p) => {
                self.problems.push(Problem {
                    message: format!("rule {name:?}: {}", p.message),
                    ..p
                });
                return;
            }
        };
        let mut errs: Report = Vec::new();
        self.check_name(&rc, file, &at, &mut errs);
        let inactive = self.check_source(&rc, &at, &mut errs);
        self.check_template(&rc, &at, &mut errs);
        if rc.event.trim().is_empty() {
            errs.push((format!("{at}.event"), "the event is empty".into()));
        }
        let when = self.compile_when(&rc, &at, &mut errs);
        let expr = compile_if(&rc, &at, &mut errs);
        let limit = compile_limit(&rc, &at, &mut errs);
        let dedup = compile_dedup(&rc, &at, &mut errs);
        if !errs.is_empty() {
            self.problems.extend(errs.into_iter().map(|(path, m)| {
                let pos = match path.strip_suffix("#key") {
                    Some(p) => doc.key_pos(p),
                    None => doc.pos(&path),
                };
                Problem::new(file, pos, format!("rule {name:?}: {m}"))
            }));
            return;
        }
        self.rules.push(Rule {
            channel: rc.channel.unwrap_or_else(|| rc.source.clone()),
            name: rc.name,
            source: rc.source,
            event: rc.event,
            actions: rc.actions,
            when,
            template: rc.template,
            enabled: rc.enabled,
            stop: rc.stop,
            expr,
            limit,
            dedup,
            digest: rc.digest,
            update: rc.update,
            file: file.clone(),
            template_at: doc.pos(&format!("{at}.template")),
            inactive,
        });
    }

    /// The name: not empty, not used by another rule.
    fn check_name(&mut self, rc: &RuleConfig, file: &std::path::Path, at: &str, errs: &mut Report) {
        if rc.name.trim().is_empty() {
            errs.push((format!("{at}.name"), "the name is empty".into()));
        } else if let Some(first) = self.seen.get(&rc.name) {
            errs.push((
                format!("{at}.name"),
                format!("the name is already used in {}", first.display()),
            ));
        } else {
            self.seen.insert(rc.name.clone(), file.to_path_buf());
        }
    }

    /// The source: configured, or a typo of a configured one (an error), or neither (the rule
    /// is inactive; returns why).
    fn check_source(&self, rc: &RuleConfig, at: &str, errs: &mut Report) -> Option<String> {
        if self.sources.contains_key(&rc.source) {
            return None;
        }
        let names: Vec<&str> = self.sources.keys().map(String::as_str).collect();
        match source_typo(&rc.source, &names) {
            Some(meant) => {
                errs.push((
                    format!("{at}.source"),
                    format!(
                        "unknown source {:?}: did you mean {meant:?}? configured sources: {}",
                        rc.source,
                        names.join(", ")
                    ),
                ));
                None
            }
            None => Some(format!("source {} not configured", rc.source)),
        }
    }

    /// The template exists in some kind: a `.card.hbs` (every kind) or a `<name>.<kind>.hbs`.
    /// Which kinds the connections need is `cardwire check --connections`'s question.
    fn check_template(&self, rc: &RuleConfig, at: &str, errs: &mut Report) {
        if !CardKind::ALL
            .into_iter()
            .any(|k| (self.has_template)(&rc.template, k))
        {
            errs.push((
                format!("{at}.template"),
                format!(
                    "template {:?} not found (expected templates/{}.card.hbs for every kind of chat, or templates/{}.<kind>.hbs for one of {})",
                    rc.template,
                    rc.template,
                    rc.template,
                    CardKind::ALL.map(CardKind::as_str).join(", ")
                ),
            ));
        }
    }

    /// `when:` compiled; a path that can never exist in the event's payload (where its shape
    /// is known) is reported.
    fn compile_when(&self, rc: &RuleConfig, at: &str, errs: &mut Report) -> Option<Cond> {
        let c = match Cond::compile(rc.when.as_ref()?, "when") {
            Ok(c) => c,
            Err((path, message)) => {
                // Point at the key: `matches:` rather than the regex after it.
                errs.push((format!("{at}.{path}#key"), format!("{path}: {message}")));
                return None;
            }
        };
        let github = self
            .sources
            .get(&rc.source)
            .is_some_and(|s| s.kind == crate::event::SourceKind::Github);
        if github {
            for (path, test_at) in c.paths() {
                let Some(bad) = known::check_github(&self.shapes, &rc.event, &rc.actions, path)
                else {
                    continue;
                };
                let hint = bad
                    .suggestion
                    .map(|s| format!("; did you mean `{s}` there?"))
                    .unwrap_or_default();
                let actions = if rc.actions.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", rc.actions.join(", "))
                };
                errs.push((
                    format!("{at}.{test_at}.path"),
                    format!(
                        "{test_at}.path: `{}` can never exist in a GitHub {} event{actions}: no `{}`{hint}",
                        path.text, rc.event, bad.at
                    ),
                ));
            }
        }
        Some(c)
    }
}

/// `if:` compiled.
fn compile_if(rc: &RuleConfig, at: &str, errs: &mut Report) -> Option<Expr> {
    match Expr::compile(rc.if_expr.as_ref()?) {
        Ok(x) => Some(x),
        Err(e) => {
            errs.push((format!("{at}.if"), format!("if: {e}")));
            None
        }
    }
}

/// `limit:` compiled: its rate, burst and `per` expression.
fn compile_limit(rc: &RuleConfig, at: &str, errs: &mut Report) -> Option<Limit> {
    let l = rc.limit.as_ref()?;
    let rate = crate::units::parse_rate(&l.rate)
        .map_err(|e| errs.push((format!("{at}.limit.rate"), format!("limit.rate: {e}"))))
        .ok();
    if let Some(per) = &l.per {
        if let Err(e) = check_template_expr(per) {
            errs.push((format!("{at}.limit.per"), format!("limit.per: {e}")));
        }
    }
    rate.map(|(count, period)| Limit {
        count,
        period,
        burst: l.burst.unwrap_or(count),
        per: l.per.clone(),
    })
}

/// `dedup:` compiled: its key expression and window.
fn compile_dedup(rc: &RuleConfig, at: &str, errs: &mut Report) -> Option<Dedup> {
    let d = rc.dedup.as_ref()?;
    if let Err(e) = check_template_expr(&d.key) {
        errs.push((format!("{at}.dedup.key"), format!("dedup.key: {e}")));
    }
    match crate::units::parse_duration(&d.window) {
        Ok(window) => Some(Dedup {
            key: d.key.clone(),
            window,
        }),
        Err(e) => {
            errs.push((format!("{at}.dedup.window"), format!("dedup.window: {e}")));
            None
        }
    }
}

/// The configured source a rule's unknown source is a typo of: close to one by edit distance
/// (one edit, or one in four characters), and not itself the name of a source kind, which
/// the shipped rule packs use and which is a deliberate name (`gitlab` is two edits from
/// `github`). A rule whose source is neither is inactive rather than an error.
fn source_typo<'a>(source: &str, configured: &[&'a str]) -> Option<&'a str> {
    if crate::event::SourceKind::NAMES.contains(&source) {
        return None;
    }
    let allowed = 1.max(source.chars().count() / 4);
    configured
        .iter()
        .map(|c| (strsim::damerau_levenshtein(source, c), *c))
        .filter(|(d, _)| *d <= allowed)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Every rule, in file order.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

impl RuleSet {
    /// One line for the rules that are inactive because their sources are not configured,
    /// grouped by source: `13 rules inactive: sources gitlab, alertmanager are not configured`.
    pub fn inactive_summary(&self) -> Option<String> {
        let mut sources: Vec<&str> = Vec::new();
        let mut count = 0;
        for r in self.rules.iter().filter(|r| r.inactive.is_some()) {
            count += 1;
            if !sources.contains(&r.source.as_str()) {
                sources.push(&r.source);
            }
        }
        let rules = if count == 1 { "rule" } else { "rules" };
        match sources.as_slice() {
            [] => None,
            [one] => Some(format!(
                "{count} {rules} inactive: source {one} is not configured"
            )),
            many => Some(format!(
                "{count} {rules} inactive: sources {} are not configured",
                many.join(", ")
            )),
        }
    }

    /// The configured sources that no rule takes and that are one slip from a source the rules
    /// use but the config lacks (a source name typed wrong in the config), each as a line:
    /// `source githb: no rule takes it; did you mean github? 16 rules take github`.
    pub fn unused_sources<'a>(&self, configured: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let configured: Vec<&str> = configured.into_iter().collect();
        let mut wanted: Vec<&str> = Vec::new();
        for r in &self.rules {
            if !configured.contains(&r.source.as_str()) && !wanted.contains(&r.source.as_str()) {
                wanted.push(&r.source);
            }
        }
        configured
            .iter()
            .filter(|c| !self.rules.iter().any(|r| r.source == **c))
            .filter_map(|c| {
                let allowed = 1.max(c.chars().count() / 4);
                let (_, meant) = wanted
                    .iter()
                    .map(|w| (strsim::damerau_levenshtein(c, w), *w))
                    .filter(|(d, _)| *d <= allowed)
                    .min_by_key(|(d, _)| *d)?;
                let n = self.rules.iter().filter(|r| r.source == meant).count();
                let rules = if n == 1 { "rule takes" } else { "rules take" };
                Some(format!(
                    "source {c}: no rule takes it; did you mean {meant}? {n} {rules} {meant}"
                ))
            })
            .collect()
    }

    /// Compiles rule files. `files` are (name for messages, text); `has_template` says whether
    /// a template exists for a name and card kind.
    pub fn load(
        files: &[(PathBuf, String)],
        sources: &BTreeMap<String, SourceConfig>,
        has_template: impl Fn(&str, CardKind) -> bool,
    ) -> Result<Self, Problems> {
        let mut loader = Loader {
            sources,
            has_template: &has_template,
            // Parsed on first use, dropped at the end of this load.
            shapes: known::Shapes::default(),
            seen: HashMap::new(),
            rules: Vec::new(),
            problems: Vec::new(),
        };
        for (file, text) in files {
            let first = loader.problems.len();
            loader.load_file(file, text);
            // Report in the order of the file, whichever check found what.
            loader.problems[first..].sort_by_key(|p| (p.pos.line, p.pos.col));
        }
        if loader.problems.is_empty() {
            Ok(Self {
                rules: loader.rules,
            })
        } else {
            Err(Problems(loader.problems))
        }
    }

    /// The rules that take the event, in order, up to and including the first with `stop`.
    pub fn matches(&self, event: &Event) -> Vec<&Rule> {
        let vars = Vars::new(event);
        let mut out = Vec::new();
        for rule in &self.rules {
            if rule.matches(event, &vars) {
                out.push(rule);
                if rule.stop {
                    break;
                }
            }
        }
        out
    }

    /// For every rule of the event's source: whether it matched, and if not, why.
    pub fn explain(&self, event: &Event) -> Vec<Explanation> {
        let vars = Vars::new(event);
        let mut stopped_by: Option<&str> = None;
        let mut out = Vec::new();
        for rule in self.rules.iter().filter(|r| r.source == event.source) {
            let result = match stopped_by {
                Some(by) => Err(format!(
                    "not tried: rule {by:?} matched before it and has stop: true"
                )),
                None => rule.explain(event, &vars),
            };
            if result.is_ok() && rule.stop {
                stopped_by = Some(&rule.name);
            }
            out.push(Explanation {
                rule: rule.name.clone(),
                matched: result.is_ok(),
                reason: result.err(),
            });
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

    /// Regression: a config with only `github` refused the shipped GitLab and Alertmanager
    /// packs, one error per rule. Rules of an unconfigured source load inactive; a typo of a
    /// configured one is still an error at its place.
    #[test]
    fn rules_of_an_unconfigured_source_are_inactive_but_a_typo_fails() {
        let config = Config::from_text(
            std::path::Path::new("c.yaml"),
            "sources:\n  github: {kind: github}\n",
        )
        .unwrap();
        let load = |text: &str| {
            RuleSet::load(
                &[(PathBuf::from("rules/t.yaml"), text.to_string())],
                &config.sources,
                |_, _| true,
            )
        };
        let rules = load(
            "- name: a\n  source: gitlab\n  event: Push Hook\n  template: t\n\
             - name: b\n  source: alertmanager\n  event: alert\n  template: t\n\
             - name: c\n  source: gitlab\n  event: Note Hook\n  template: t\n\
             - name: d\n  source: github\n  event: push\n  template: t\n\
             - name: e\n  source: jenkins-prod\n  event: build\n  template: t\n",
        )
        .unwrap();
        let inactive: Vec<(&str, Option<&str>)> = rules
            .rules()
            .iter()
            .map(|r| (r.name.as_str(), r.inactive.as_deref()))
            .collect();
        assert_eq!(
            inactive,
            [
                ("a", Some("source gitlab not configured")),
                ("b", Some("source alertmanager not configured")),
                ("c", Some("source gitlab not configured")),
                ("d", None),
                ("e", Some("source jenkins-prod not configured")),
            ]
        );
        assert_eq!(
            rules.inactive_summary().as_deref(),
            Some("4 rules inactive: sources gitlab, alertmanager, jenkins-prod are not configured")
        );
        // They take no events, and explain says why.
        let push = Event::for_test("gitlab", "Push Hook", json!({}), &[]);
        assert!(rules.matches(&push).is_empty());
        let why = rules.rules()[0]
            .explain(&push, &Vars::new(&push))
            .unwrap_err();
        assert_eq!(why, "the rule is inactive: source gitlab not configured");

        let err = load("- name: a\n  source: githb\n  event: push\n  template: t\n").unwrap_err();
        assert_eq!(
            err.0[0].to_string(),
            "rules/t.yaml:2:11: rule \"a\": unknown source \"githb\": did you mean \"github\"? configured sources: github"
        );
        let one = load("- name: a\n  source: gitlab\n  event: x\n  template: t\n").unwrap();
        assert_eq!(
            one.inactive_summary().as_deref(),
            Some("1 rule inactive: source gitlab is not configured")
        );
        // A source typed wrong in the config: no rule takes it, and the rules' source is near.
        assert_eq!(
            rules.unused_sources(["github", "gitlb", "deploys"]),
            ["source gitlb: no rule takes it; did you mean gitlab? 2 rules take gitlab"]
        );
        assert!(rules.unused_sources(["github", "gitlab"]).is_empty());
        assert_eq!(source_typo("GitHub", &["github"]), None, "two edits in six");
        assert_eq!(source_typo("gthub", &["github"]), Some("github"));
        assert_eq!(
            source_typo("alertmanger", &["alertmanager"]),
            Some("alertmanager")
        );
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
             - name: c\n  source: github\n  evnt: push\n  template: t\n\
             - name: d\n  source: github\n  event: push\n  template: t\n  if: 'paylod.x == 1'\n  limit: {rate: 5/fortnight}\n  dedup: {key: '{{#if x}}', window: 10m}\n",
        )
        .unwrap_err();
        let lines: Vec<String> = err.0.iter().map(|p| p.to_string()).collect();
        let expect = [
            "rules/t.yaml:2:11: rule \"a\": unknown source \"githb\": did you mean \"github\"?",
            "rules/t.yaml:4:13: rule \"a\": template \"missing\" not found",
            "rules/t.yaml:9:19: rule \"a\": unknown field `equal`: did you mean `equals`?",
            "rules/t.yaml:10:3: rule \"c\": missing required key `event`",
            "rules/t.yaml:12:3: rule \"c\": unknown field `evnt`: did you mean `event`?",
            "rules/t.yaml:18:7: rule \"d\": if: CEL uses the unknown variable `paylod` (did you mean `payload`?)",
            "rules/t.yaml:19:17: rule \"d\": limit.rate: ",
            "rules/t.yaml:20:16: rule \"d\": dedup.key: template expression",
        ];
        assert_eq!(lines.len(), expect.len(), "{lines:#?}");
        for (line, want) in lines.iter().zip(expect) {
            assert!(
                line.starts_with(want),
                "{line}\n  does not start with\n{want}"
            );
        }
    }

    #[test]
    fn a_path_that_cannot_exist_in_the_event_is_reported() {
        let err = load(
            "- name: p\n  source: github\n  event: pull_request\n  actions: [closed]\n  when: {all: [{path: action, equals: closed}, {path: pull_request.mergd, equals: true}]}\n  template: t\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "rules/t.yaml:5:55: rule \"p\": when.all[1].path: `pull_request.mergd` can never exist in a GitHub pull_request event (closed): no `pull_request.mergd`; did you mean `merged` there?"
        );
        // Generic sources have no known shape: no claim.
        let config = Config::default();
        let ok = RuleSet::load(
            &[(PathBuf::from("g.yaml"), "- name: g\n  source: generic\n  event: x\n  when: {path: anything.at.all, exists: true}\n  template: t\n".into())],
            &config.sources,
            |_, _| true,
        );
        assert!(ok.is_ok());
    }

    #[test]
    fn names_are_unique_across_files() {
        let config = Config::default();
        let rule = "- name: a\n  source: github\n  event: push\n  template: t\n";
        let err = RuleSet::load(
            &[
                (PathBuf::from("one.yaml"), rule.into()),
                (PathBuf::from("two.yaml"), rule.into()),
            ],
            &config.sources,
            |_, _| true,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "two.yaml:1:9: rule \"a\": the name is already used in one.yaml"
        );
    }

    #[test]
    fn a_rule_reads_the_paths_it_tests_and_cel_reads_everything() {
        use crate::needs::Need;
        let rules = load(
            "- name: a\n  source: github\n  event: pull_request\n  template: t\n  when: {any: [{path: pull_request.merged, equals: true}, {not: {path: 'pull_request.labels.*.name', equals: x}}, {header: x-a, equals: b}]}\n\
             - name: b\n  source: github\n  event: push\n  template: t\n  if: 'action == \"opened\"'\n",
        )
        .unwrap();
        let mut need = Need::new();
        rules.rules()[0].reads(&mut need);
        let body = serde_json::json!({
            "pull_request": {"merged": true, "title": "t", "labels": [{"name": "x", "color": "c"}]},
            "other": 1,
        });
        let kept = need.compile().parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(
            kept,
            serde_json::json!({"pull_request": {"merged": true, "labels": [{"name": "x"}]}})
        );
        let mut need = Need::new();
        rules.rules()[1].reads(&mut need);
        assert!(need.is_whole());
    }

    #[test]
    fn cel_limit_dedup_and_digest_compile() {
        let rules = load(
            "- name: a\n  source: github\n  event: push\n  template: t\n  if: 'size(payload.commits) > 1'\n  limit: {rate: 5/1m, per: '{{payload.repository.full_name}}'}\n  dedup: {key: '{{payload.after}}', window: 10m}\n  digest: false\n",
        )
        .unwrap();
        let r = &rules.rules()[0];
        assert_eq!(
            r.limit,
            Some(Limit {
                count: 5,
                period: Duration::from_secs(60),
                burst: 5,
                per: Some("{{payload.repository.full_name}}".into())
            })
        );
        assert_eq!(
            r.dedup,
            Some(Dedup {
                key: "{{payload.after}}".into(),
                window: Duration::from_secs(600)
            })
        );
        assert!(!r.digest);
        let two = Event::for_test("github", "push", json!({"commits": [1, 2]}), &[]);
        let one = Event::for_test("github", "push", json!({"commits": [1]}), &[]);
        assert_eq!(rules.matches(&two).len(), 1);
        assert!(rules.matches(&one).is_empty());
        assert_eq!(
            rules.explain(&one)[0].reason.as_deref(),
            Some("if: \"size(payload.commits) > 1\" is false")
        );
        assert_eq!(
            crate::units::parse_rate("100 / h"),
            Ok((100, Duration::from_secs(3600)))
        );
        assert!(crate::units::parse_rate("0/1m").is_err());
    }

    #[test]
    fn explain_says_why_each_rule_did_or_did_not_match() {
        let rules = load(
            "- name: merged\n  source: github\n  event: pull_request\n  actions: [closed]\n  when: {all: [{path: action, equals: closed}, {path: pull_request.merged, equals: true}]}\n  template: t\n  stop: true\n\
             - name: opened\n  source: github\n  event: pull_request\n  actions: [opened]\n  template: t\n\
             - name: push\n  source: github\n  event: push\n  template: t\n\
             - name: any-pr\n  source: github\n  event: pull_request\n  template: t\n\
             - name: other-source\n  source: gitlab\n  event: x\n  template: t\n",
        )
        .unwrap();
        let closed = Event::for_test(
            "github",
            "pull_request",
            json!({"action": "closed", "pull_request": {"merged": false}}),
            &[],
        );
        let e = rules.explain(&closed);
        let reasons: Vec<(&str, bool, Option<&str>)> = e
            .iter()
            .map(|x| (x.rule.as_str(), x.matched, x.reason.as_deref()))
            .collect();
        assert_eq!(
            reasons,
            [
                (
                    "merged",
                    false,
                    Some("when.all[1]: pull_request.merged is false, expected true")
                ),
                (
                    "opened",
                    false,
                    Some("action is \"closed\", the rule wants one of [opened]")
                ),
                (
                    "push",
                    false,
                    Some("event is \"pull_request\", the rule wants \"push\"")
                ),
                ("any-pr", true, None),
            ]
        );
        let merged = Event::for_test(
            "github",
            "pull_request",
            json!({"action": "closed", "pull_request": {"merged": true}}),
            &[],
        );
        let e = rules.explain(&merged);
        assert!(e[0].matched);
        assert_eq!(
            e[3].reason.as_deref(),
            Some("not tried: rule \"merged\" matched before it and has stop: true")
        );
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use crate::config::Config;
    use crate::event::SourceKind;
    use proptest::prelude::*;
    use serde_json::Map;

    /// Keys that the shipped rules look at, mixed with arbitrary ones, so that generated
    /// payloads reach deep into the conditions.
    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "action",
                "pull_request",
                "merged",
                "ref",
                "deleted",
                "forced",
                "workflow_run",
                "workflow_job",
                "check_run",
                "check_suite",
                "conclusion",
                "object_attributes",
                "status",
                "review",
                "state",
                "deployment_status",
                "commits",
                "before_sha",
                "sha",
                "system",
            ])
            .prop_map(str::to_string),
            "[a-z_]{1,10}",
        ]
    }

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            prop_oneof![
                prop::sample::select(vec![
                    "closed",
                    "failure",
                    "refs/heads/main",
                    "refs/tags/v1",
                    "approved",
                    "success",
                    "failed"
                ])
                .prop_map(str::to_string),
                ".{0,20}",
            ]
            .prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(key(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
            ]
        })
    }

    fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
        prop::collection::vec(
            (
                prop_oneof![Just("x-github-hook-id".to_string()), "[a-z-]{1,12}"],
                ".{0,16}",
            ),
            0..4,
        )
    }

    fn shipped() -> &'static (Config, RuleSet) {
        static SHIPPED: std::sync::OnceLock<(Config, RuleSet)> = std::sync::OnceLock::new();
        SHIPPED.get_or_init(|| {
            let config = Config::default();
            let pipeline = crate::pipeline::Pipeline::load(&config).expect("shipped rules load");
            (config, pipeline.rules)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Whatever arrives, matching and explaining do not panic, and the explanation says
        /// "matched" for exactly the rules that match.
        #[test]
        fn matching_and_explaining_agree_and_never_panic(
            payload in json(),
            headers in headers(),
            pick in any::<prop::sample::Index>(),
        ) {
            let (config, rules) = shipped();
            let rule = pick.get(rules.rules());
            let kind = config.sources[&rule.source].kind;
            let payload = match (kind, payload) {
                (SourceKind::Generic, p) => p,
                (_, Value::Object(o)) => Value::Object(o),
                (_, other) => serde_json::json!({"action": "closed", "value": other}),
            };
            let event = Event::new(&rule.source, kind, rule.event.clone(), None, headers, payload);
            let matched: Vec<&str> = rules.matches(&event).iter().map(|r| r.name.as_str()).collect();
            let explanation = rules.explain(&event);
            let explained: Vec<&str> =
                explanation.iter().filter(|e| e.matched).map(|e| e.rule.as_str()).collect();
            prop_assert_eq!(matched, explained);
            for e in explanation {
                prop_assert_eq!(e.matched, e.reason.is_none());
            }
        }

        /// Arbitrary condition trees either fail to compile with a message, or evaluate and
        /// explain without panicking.
        #[test]
        fn arbitrary_conditions_compile_or_fail_cleanly(cond in json(), payload in json()) {
            let event = Event::for_test("github", "push", payload, &[]);
            if let Ok(c) = Cond::compile(&cond, "when") {
                let holds = c.holds(&event);
                prop_assert_eq!(holds, c.explain(&event, "when").is_ok());
            }
        }
    }
}
