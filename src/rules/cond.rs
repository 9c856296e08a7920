//! `when:` conditions: parsed from YAML into [`Cond`], then evaluated against an event.
//!
//! A condition is a test on one field — `{path: pull_request.merged, equals: true}`, or
//! `{header: X-GitHub-Hook-ID, exists: true}` — or a combination: `{all: [...]}`,
//! `{any: [...]}`, `{not: {...}}`. Paths are dotted, with `[N]` for an index and `*` for every
//! element (`labels.*.name`); a test on a path with `*` holds when it holds for any element.
//! Operators: `equals`, `not` (not equal), `in`, `matches` (regex), `exists`, `contains`,
//! `gt`, `lt`.

use regex::Regex;
use serde_json::{Map, Value};

use crate::event::Event;

/// A compiled condition.
#[derive(Debug, Clone)]
pub enum Cond {
    /// Every one holds.
    All(Vec<Cond>),
    /// At least one holds.
    Any(Vec<Cond>),
    /// It does not hold.
    Not(Box<Cond>),
    /// A test on one field.
    Test {
        /// Where the value comes from.
        field: Field,
        /// What is checked.
        op: Op,
        /// Where the test stands in the rule (`when.all[1]`).
        at: String,
    },
}

/// The value a test looks at.
#[derive(Debug, Clone)]
pub enum Field {
    /// A path in the payload.
    Path(FieldPath),
    /// A request header (name in lower case).
    Header(String),
}

/// A parsed payload path.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldPath {
    /// The path as written.
    pub text: String,
    segments: Vec<Segment>,
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    /// An object key.
    Key(String),
    /// An array index.
    Index(usize),
    /// Every element (`*`).
    Each,
}

/// What a test checks.
#[derive(Debug, Clone)]
pub enum Op {
    /// The value equals this.
    Equals(Value),
    /// The value does not equal this (a missing value counts as not equal).
    NotEquals(Value),
    /// The value is one of these.
    In(Vec<Value>),
    /// The value is a string that matches.
    Matches(Regex),
    /// The value is there (true) or is not (false). `null` counts as there.
    Exists(bool),
    /// A string holds this substring, or an array holds this element.
    Contains(Value),
    /// A number greater than this.
    Gt(f64),
    /// A number less than this.
    Lt(f64),
}

/// The operator keys, for messages and suggestions.
pub const OPERATORS: &[&str] = &[
    "equals", "not", "in", "matches", "exists", "contains", "gt", "lt",
];
const COMBINATORS: &[&str] = &["all", "any", "not"];

impl FieldPath {
    /// Parses `a.b[0].*.c`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut segments = Vec::new();
        if text.trim().is_empty() {
            return Err("the path is empty".into());
        }
        for part in text.split('.') {
            let (name, mut rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            match name {
                "" if rest.is_empty() => return Err(format!("path {text:?} has an empty segment")),
                "" => {}
                "*" => segments.push(Segment::Each),
                n => segments.push(Segment::Key(n.to_string())),
            }
            while let Some(r) = rest.strip_prefix('[') {
                let end = r
                    .find(']')
                    .ok_or_else(|| format!("path {text:?} has a `[` without `]`"))?;
                let idx = &r[..end];
                if idx == "*" {
                    segments.push(Segment::Each);
                } else {
                    let n = idx
                        .parse()
                        .map_err(|_| format!("path {text:?}: `[{idx}]` is not an index"))?;
                    segments.push(Segment::Index(n));
                }
                rest = &r[end + 1..];
            }
            if !rest.is_empty() {
                return Err(format!("path {text:?}: unexpected {rest:?}"));
            }
        }
        Ok(Self {
            text: text.to_string(),
            segments,
        })
    }

    /// Every value the path reaches in `root` (more than one only through `*`).
    pub fn resolve<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        let mut current = vec![root];
        for seg in &self.segments {
            let mut next = Vec::new();
            for v in current {
                match seg {
                    Segment::Key(k) => next.extend(v.get(k.as_str())),
                    Segment::Index(i) => next.extend(v.get(*i)),
                    Segment::Each => match v {
                        Value::Array(a) => next.extend(a.iter()),
                        Value::Object(o) => next.extend(o.values()),
                        _ => {}
                    },
                }
            }
            current = next;
        }
        current
    }

    /// The path as steps of what it reads (see [`crate::needs`]).
    pub fn steps(&self) -> Vec<crate::needs::Step> {
        use crate::needs::Step;
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Key(k) => Step::Key(k.clone()),
                Segment::Index(i) => Step::Key(i.to_string()),
                Segment::Each => Step::Each,
            })
            .collect()
    }

    /// The steps of the path.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Whether the path has a `*`.
    pub fn fans_out(&self) -> bool {
        self.segments.contains(&Segment::Each)
    }
}

impl Cond {
    /// Adds the payload paths the condition tests to `need`, each read whole.
    pub fn reads(&self, need: &mut crate::needs::Need) {
        match self {
            Cond::All(cs) | Cond::Any(cs) => cs.iter().for_each(|c| c.reads(need)),
            Cond::Not(c) => c.reads(need),
            Cond::Test {
                field: Field::Path(p),
                ..
            } => need.add(&p.steps(), true),
            Cond::Test {
                field: Field::Header(_),
                ..
            } => {}
        }
    }

    /// Compiles a condition from its YAML form. Errors carry the path inside the condition
    /// (`all[1].matches`) and a message.
    pub fn compile(v: &Value, at: &str) -> Result<Self, (String, String)> {
        let Value::Object(map) = v else {
            return Err((
                at.into(),
                format!("a condition is a mapping (`path:` and an operator, or `all`/`any`/`not`), not {}", kind_of(v)),
            ));
        };
        match Self::field(map, at)? {
            Some(field) => Self::test(field, map, at),
            None => Self::combine(map, at),
        }
    }

    /// What a test reads: `path` or `header` (none: the condition combines others).
    fn field(map: &Map<String, Value>, at: &str) -> Result<Option<Field>, (String, String)> {
        match (map.get("path"), map.get("header")) {
            (Some(_), Some(_)) => Err((
                at.into(),
                "a test reads either `path` or `header`, not both".into(),
            )),
            (Some(Value::String(p)), None) => Ok(Some(Field::Path(
                FieldPath::parse(p).map_err(|e| (join(at, "path"), e))?,
            ))),
            (None, Some(Value::String(h))) => Ok(Some(Field::Header(h.to_ascii_lowercase()))),
            (Some(_), None) => Err((join(at, "path"), "`path` must be a string".into())),
            (None, Some(_)) => Err((join(at, "header"), "`header` must be a string".into())),
            (None, None) => Ok(None),
        }
    }

    /// A test: the field and exactly one operator with its argument.
    fn test(field: Field, map: &Map<String, Value>, at: &str) -> Result<Self, (String, String)> {
        let ops: Vec<&String> = map
            .keys()
            .filter(|k| *k != "path" && *k != "header")
            .collect();
        if let Some(bad) = ops.iter().find(|k| !OPERATORS.contains(&k.as_str())) {
            return Err((join(at, bad), unknown_key(bad, OPERATORS, "operator")));
        }
        let [key] = ops.as_slice() else {
            return Err((
                at.into(),
                format!(
                    "a test needs exactly one operator ({}); found {}",
                    OPERATORS.join(", "),
                    ops.len()
                ),
            ));
        };
        Ok(Cond::Test {
            field,
            op: operator(key, &map[key.as_str()], &join(at, key))?,
            at: at.to_string(),
        })
    }

    /// `all`, `any` or `not` of other conditions.
    fn combine(map: &Map<String, Value>, at: &str) -> Result<Self, (String, String)> {
        if let Some(bad) = map.keys().find(|k| !COMBINATORS.contains(&k.as_str())) {
            let mut valid = COMBINATORS.to_vec();
            valid.extend(["path", "header"]);
            return Err((join(at, bad), unknown_key(bad, &valid, "key")));
        }
        if map.len() != 1 {
            return Err((
                at.into(),
                "use one of `all`, `any` or `not` per condition; nest them to combine".into(),
            ));
        }
        let (key, arg) = map.iter().next().expect("one entry");
        let here = join(at, key);
        if key == "not" {
            return Ok(Cond::Not(Box::new(Cond::compile(arg, &here)?)));
        }
        let Value::Array(items) = arg else {
            return Err((here, format!("`{key}` takes a list of conditions")));
        };
        let conds = items
            .iter()
            .enumerate()
            .map(|(i, c)| Cond::compile(c, &format!("{here}[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(if key == "all" {
            Cond::All(conds)
        } else {
            Cond::Any(conds)
        })
    }

    /// Whether the condition holds for the event.
    pub fn holds(&self, event: &Event) -> bool {
        match self {
            Cond::All(cs) => cs.iter().all(|c| c.holds(event)),
            Cond::Any(cs) => cs.iter().any(|c| c.holds(event)),
            Cond::Not(c) => !c.holds(event),
            Cond::Test { field, op, .. } => match field {
                Field::Path(p) => {
                    let values = p.resolve(event.payload());
                    match op {
                        Op::Exists(want) => values.is_empty() != *want,
                        // "not equal" over several values: none of them equals.
                        Op::NotEquals(x) => !values.contains(&x),
                        _ => values.iter().any(|v| op.test(v)),
                    }
                }
                Field::Header(h) => {
                    let value = event.header(h).map(|s| Value::String(s.to_string()));
                    match (op, value) {
                        (Op::Exists(want), v) => v.is_some() == *want,
                        (Op::NotEquals(_), None) => true,
                        (_, None) => false,
                        (op, Some(v)) => op.test(&v),
                    }
                }
            },
        }
    }
}

impl Cond {
    /// Every payload path the condition reads, with where its test stands.
    pub fn paths(&self) -> Vec<(&FieldPath, &str)> {
        match self {
            Cond::All(cs) | Cond::Any(cs) => cs.iter().flat_map(Cond::paths).collect(),
            Cond::Not(c) => c.paths(),
            Cond::Test {
                field: Field::Path(p),
                at,
                ..
            } => vec![(p, at.as_str())],
            Cond::Test { .. } => Vec::new(),
        }
    }

    /// Why the condition does not hold, naming the first failing test by its place
    /// (`when.all[1]`) and the value it saw; Ok when it holds.
    pub fn explain(&self, event: &Event, at: &str) -> Result<(), String> {
        if self.holds(event) {
            return Ok(());
        }
        match self {
            Cond::All(cs) => {
                let (i, c) = cs
                    .iter()
                    .enumerate()
                    .find(|(_, c)| !c.holds(event))
                    .expect("a failing `all` has a failing member");
                c.explain(event, &format!("{at}.all[{i}]"))
            }
            Cond::Any(cs) => {
                let reasons: Vec<String> = cs
                    .iter()
                    .enumerate()
                    .filter_map(|(i, c)| c.explain(event, &format!("{at}.any[{i}]")).err())
                    .collect();
                Err(format!(
                    "{at}.any: none of {} held ({})",
                    cs.len(),
                    reasons.join("; ")
                ))
            }
            Cond::Not(_) => Err(format!("{at}.not: the condition inside held")),
            Cond::Test { field, op, .. } => {
                let (what, seen) = match field {
                    Field::Path(p) => {
                        let values = p.resolve(event.payload());
                        let seen = match values.as_slice() {
                            [] => "missing".to_string(),
                            [one] => format!("{}", Shown(one)),
                            many => format!(
                                "[{}]",
                                many.iter()
                                    .map(|v| Shown(v).to_string())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        };
                        (p.text.clone(), seen)
                    }
                    Field::Header(h) => (
                        format!("header {h}"),
                        event
                            .header(h)
                            .map(|v| Shown(&Value::String(v.to_string())).to_string())
                            .unwrap_or_else(|| "missing".into()),
                    ),
                };
                Err(format!(
                    "{at}: {what} is {seen}, expected {}",
                    op.expected()
                ))
            }
        }
    }
}

/// A value for an explanation: compact JSON, cut at 80 characters.
struct Shown<'a>(&'a Value);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.0.to_string();
        if s.chars().count() > 80 {
            write!(f, "{}…", s.chars().take(79).collect::<String>())
        } else {
            f.write_str(&s)
        }
    }
}

impl Op {
    /// What the operator wants, for explanations.
    fn expected(&self) -> String {
        match self {
            Op::Equals(x) => format!("{}", Shown(x)),
            Op::NotEquals(x) => format!("anything but {}", Shown(x)),
            Op::In(xs) => format!("one of {}", Shown(&Value::Array(xs.clone()))),
            Op::Matches(re) => format!("a string matching /{}/", re.as_str()),
            Op::Exists(true) => "it to exist".into(),
            Op::Exists(false) => "it to be missing".into(),
            Op::Contains(x) => format!("something containing {}", Shown(x)),
            Op::Gt(n) => format!("a number > {n}"),
            Op::Lt(n) => format!("a number < {n}"),
        }
    }

    fn test(&self, v: &Value) -> bool {
        match self {
            Op::Equals(x) => v == x,
            Op::NotEquals(x) => v != x,
            Op::In(xs) => xs.contains(v),
            Op::Matches(re) => v.as_str().is_some_and(|s| re.is_match(s)),
            Op::Exists(want) => *want,
            Op::Contains(x) => match (v, x) {
                (Value::String(s), Value::String(sub)) => s.contains(sub.as_str()),
                (Value::Array(a), x) => a.contains(x),
                _ => false,
            },
            Op::Gt(n) => v.as_f64().is_some_and(|f| f > *n),
            Op::Lt(n) => v.as_f64().is_some_and(|f| f < *n),
        }
    }
}

fn join(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_string()
    } else {
        format!("{at}.{key}")
    }
}

fn unknown_key(bad: &str, valid: &[&str], what: &str) -> String {
    match crate::yaml::closest(bad, valid) {
        Some(best) => format!(
            "unknown {what} `{bad}`: did you mean `{best}`? (valid: {})",
            valid.join(", ")
        ),
        None => format!("unknown {what} `{bad}` (valid: {})", valid.join(", ")),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// An operator (checked to be one of [`OPERATORS`]) with its argument; `here` names it in
/// errors.
fn operator(key: &str, arg: &Value, here: &str) -> Result<Op, (String, String)> {
    let wrong = |what: &str| (here.to_string(), format!("`{key}` takes {what}"));
    Ok(match key {
        "equals" => Op::Equals(arg.clone()),
        "not" => Op::NotEquals(arg.clone()),
        "in" => match arg {
            Value::Array(a) => Op::In(a.clone()),
            _ => return Err(wrong("a list")),
        },
        "matches" => match arg {
            Value::String(s) => Op::Matches(
                Regex::new(s).map_err(|e| (here.to_string(), format!("invalid regex: {e}")))?,
            ),
            _ => return Err(wrong("a regex string")),
        },
        "exists" => match arg {
            Value::Bool(b) => Op::Exists(*b),
            _ => return Err(wrong("true or false")),
        },
        "contains" => Op::Contains(arg.clone()),
        "gt" => Op::Gt(arg.as_f64().ok_or_else(|| wrong("a number"))?),
        "lt" => Op::Lt(arg.as_f64().ok_or_else(|| wrong("a number"))?),
        _ => unreachable!("operators were checked before"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(payload: Value) -> Event {
        Event::for_test("github", "push", payload, &[("X-Hook", "7")])
    }

    fn holds(cond: Value, payload: Value) -> bool {
        Cond::compile(&cond, "when").unwrap().holds(&event(payload))
    }

    #[test]
    fn paths_with_indices_and_wildcards() {
        let p = json!({"commits": [{"author": {"name": "a"}}, {"author": {"name": "b"}}], "labels": [{"name": "bug"}]});
        assert!(holds(
            json!({"path": "commits[1].author.name", "equals": "b"}),
            p.clone()
        ));
        assert!(holds(
            json!({"path": "labels.*.name", "equals": "bug"}),
            p.clone()
        ));
        assert!(holds(
            json!({"path": "commits[*].author.name", "in": ["x", "a"]}),
            p.clone()
        ));
        assert!(!holds(
            json!({"path": "commits[5].author.name", "exists": true}),
            p.clone()
        ));
        assert!(holds(
            json!({"path": "commits.*.author.name", "not": "c"}),
            p
        ));
    }

    #[test]
    fn every_operator() {
        let p = json!({"n": 5, "s": "refs/heads/main", "a": ["x", "y"], "z": null});
        assert!(holds(json!({"path": "n", "gt": 4}), p.clone()));
        assert!(!holds(json!({"path": "n", "lt": 5}), p.clone()));
        assert!(holds(
            json!({"path": "s", "matches": "^refs/heads/"}),
            p.clone()
        ));
        assert!(holds(json!({"path": "s", "contains": "main"}), p.clone()));
        assert!(holds(json!({"path": "a", "contains": "y"}), p.clone()));
        assert!(holds(json!({"path": "z", "exists": true}), p.clone()));
        assert!(holds(
            json!({"path": "missing", "exists": false}),
            p.clone()
        ));
        assert!(holds(json!({"path": "missing", "not": 1}), p.clone()));
        assert!(holds(json!({"header": "x-hook", "equals": "7"}), p.clone()));
        assert!(holds(
            json!({"header": "X-Other", "exists": false}),
            p.clone()
        ));
        assert!(holds(
            json!({"all": [{"path": "n", "equals": 5}, {"not": {"path": "s", "equals": "x"}}, {"any": [{"path": "n", "equals": 1}, {"path": "n", "equals": 5}]}]}),
            p
        ));
    }

    #[test]
    fn explanations_name_the_failing_test_and_the_value() {
        let cond = Cond::compile(
            &json!({"all": [{"path": "action", "equals": "closed"}, {"path": "pull_request.merged", "equals": true}]}),
            "when",
        )
        .unwrap();
        let e = event(json!({"action": "closed", "pull_request": {"merged": false}}));
        assert_eq!(
            cond.explain(&e, "when"),
            Err("when.all[1]: pull_request.merged is false, expected true".into())
        );
        let e = event(json!({"action": "closed"}));
        assert_eq!(
            cond.explain(&e, "when"),
            Err("when.all[1]: pull_request.merged is missing, expected true".into())
        );
        let e = event(json!({"action": "closed", "pull_request": {"merged": true}}));
        assert_eq!(cond.explain(&e, "when"), Ok(()));
        let any = Cond::compile(
            &json!({"any": [{"path": "n", "gt": 5}, {"header": "x-hook", "matches": "^9"}]}),
            "when",
        )
        .unwrap();
        let msg = any.explain(&event(json!({"n": 1})), "when").unwrap_err();
        assert_eq!(msg, "when.any: none of 2 held (when.any[0]: n is 1, expected a number > 5; when.any[1]: header x-hook is \"7\", expected a string matching /^9/)");
    }

    #[test]
    fn compile_errors_name_the_place_and_suggest() {
        let e = Cond::compile(&json!({"all": [{"path": "a", "equal": 1}]}), "when").unwrap_err();
        assert_eq!(e.0, "when.all[0].equal");
        assert!(e.1.contains("did you mean `equals`"), "{}", e.1);
        let e = Cond::compile(&json!({"path": "a", "matches": "("}), "when").unwrap_err();
        assert_eq!(e.0, "when.matches");
        assert!(e.1.contains("invalid regex"));
        let e = Cond::compile(&json!({"alll": []}), "when").unwrap_err();
        assert!(e.1.contains("did you mean `all`"), "{}", e.1);
        let e = Cond::compile(&json!({"path": "a[x]", "equals": 1}), "when").unwrap_err();
        assert_eq!(e.0, "when.path");
        assert!(Cond::compile(&json!({"path": "a"}), "when").is_err());
        assert!(Cond::compile(&json!("a"), "when").is_err());
    }
}
