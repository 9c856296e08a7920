//! What of a payload the pipeline reads, and a parser that builds only that.
//!
//! In: the paths that rules (conditions, CEL), templates (every `{{path}}`, helper argument and
//! block) and the gateway itself (the action, the repository of a digest item) read, collected
//! into a [`Need`] per source and event type when rules and templates load. Out: for a request
//! body, the same `serde_json::Value` a full parse gives, minus the members nothing reads
//! ([`Projection::parse`]). A GitHub `push` carries about 300 members, mostly the repository's
//! URLs; its templates read a dozen. Skipping a member still checks its syntax but builds
//! nothing, which is most of the cost of a parse.
//!
//! Guarantees: every path that is read is kept whole where a test or helper could look at the
//! whole value (truthiness, equality, `len`, `json`), so a rule or card cannot tell the
//! difference; anything the analysis cannot follow (CEL, a custom block helper, an inline
//! partial) keeps the whole payload. The body is still checked to be JSON and UTF-8 in full.
//! Where the body is kept for people (the playground's ring, `?explain`), it is parsed whole.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// One step of a path that is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// An object member (or, on an array, an index written as a name).
    Key(String),
    /// Every member of an object or element of an array.
    Each,
}

/// The paths read below one point of a value, as a tree.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Need {
    /// The whole value is read.
    all: bool,
    /// Members read by name.
    keys: Vec<(String, Need)>,
    /// What is read of every member or element.
    each: Option<Box<Need>>,
}

impl Need {
    /// Nothing read.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything read.
    pub fn whole() -> Self {
        Self {
            all: true,
            ..Self::default()
        }
    }

    /// Whether everything is read.
    pub fn is_whole(&self) -> bool {
        self.all
    }

    /// Records that `path` is read: the whole value there when `whole`, else only that it is
    /// there (its shape: an object's or array's members as far as other paths read them).
    pub fn add(&mut self, path: &[Step], whole: bool) {
        let mut node = self;
        for step in path {
            if node.all {
                return;
            }
            node = match step {
                Step::Key(k) => {
                    let i = match node.keys.iter().position(|(n, _)| n == k) {
                        Some(i) => i,
                        None => {
                            node.keys.push((k.clone(), Need::new()));
                            node.keys.len() - 1
                        }
                    };
                    &mut node.keys[i].1
                }
                Step::Each => node.each.get_or_insert_with(Box::default),
            };
        }
        if whole {
            *node = Need::whole();
        }
    }

    /// What is read below `key` (the payload below the context's `payload`).
    pub fn below(&self, key: &str) -> Need {
        if self.all {
            return Need::whole();
        }
        let named = self.keys.iter().find(|(k, _)| k == key).map(|(_, n)| n);
        match (named, &self.each) {
            (Some(n), Some(e)) => n.clone().merged(e),
            (Some(n), None) => n.clone(),
            (None, Some(e)) => (**e).clone(),
            (None, None) => Need::new(),
        }
    }

    /// Both needs together.
    pub fn merged(mut self, other: &Need) -> Need {
        if self.all || other.all {
            return Need::whole();
        }
        for (k, n) in &other.keys {
            match self.keys.iter_mut().find(|(s, _)| s == k) {
                Some((_, mine)) => *mine = std::mem::take(mine).merged(n),
                None => self.keys.push((k.clone(), n.clone())),
            }
        }
        if let Some(e) = &other.each {
            self.each = Some(Box::new(match self.each.take() {
                Some(mine) => mine.merged(e),
                None => (**e).clone(),
            }));
        }
        self
    }

    /// The form the parser walks.
    pub fn compile(&self) -> Projection {
        if self.all {
            return Projection::Whole;
        }
        let each = self.each.as_deref();
        // On an array, a numeric step is an index (`commits.0`): elements keep what `*` and
        // any index read (other names find nothing in an array, whole or not).
        let indexes: Vec<&Need> = self
            .keys
            .iter()
            .filter(|(k, _)| k.parse::<usize>().is_ok())
            .map(|(_, n)| n)
            .collect();
        let elements = indexes
            .iter()
            .fold(each.cloned().unwrap_or_default(), |acc, n| acc.merged(n));
        let others = each.map(|e| Arc::new(e.compile()));
        Projection::Part(Part {
            keys: self
                .keys
                .iter()
                .map(|(k, n)| {
                    let n = match each {
                        Some(e) => n.clone().merged(e),
                        None => n.clone(),
                    };
                    (k.clone(), n.compile())
                })
                .collect(),
            elements: if indexes.is_empty() {
                // The same as the members', compiled once.
                others.clone()
            } else {
                Some(Arc::new(elements.compile()))
            },
            others,
        })
    }
}

/// A compiled [`Need`]: what the parser keeps at one point of the value.
#[derive(Debug, Clone, PartialEq)]
pub enum Projection {
    /// The whole value.
    Whole,
    /// Some of it.
    Part(Part),
}

/// What is kept of an object or array (a scalar is always kept).
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// Members kept by name, and what of them.
    keys: Vec<(String, Projection)>,
    /// What is kept of members not named (none when only named ones are read).
    others: Option<Arc<Projection>>,
    /// What is kept of each element of an array (none: elements are kept as empty shells).
    elements: Option<Arc<Projection>>,
}

/// How deep a payload may nest (arrays and objects), the same for every source: serde_json's
/// own limit (it refuses a 128th level), so that a body parsed whole and one mostly skipped are held to one rule (a
/// skipped member is otherwise skipped at any depth). Real payloads nest a dozen levels.
pub const MAX_DEPTH: usize = 127;

/// How many `[` and `{` `bytes` holds (in strings too). One comparison a byte (`[` and `{`
/// differ only in bit 5) counted into a byte per chunk of 255, which the compiler turns into
/// vector instructions: 14 times faster than a filter and count (2.9 µs to 0.2 µs on an
/// 8.8 KB push), run on every event's body.
fn openers(bytes: &[u8]) -> usize {
    bytes
        .chunks(255)
        .map(|chunk| {
            chunk
                .iter()
                .fold(0u8, |n, &b| n.wrapping_add(u8::from(b | 0x20 == b'{'))) as usize
        })
        .sum()
}

/// Where `bytes` (JSON, or anything) first nests deeper than `max` arrays and objects,
/// brackets inside strings not counted: the byte offset, or `None`. A body with no more than
/// `max` opening brackets in all cannot, and is not scanned further (a GitHub push has some
/// 60).
pub fn too_deep(bytes: &[u8], max: usize) -> Option<usize> {
    if openers(bytes) <= max {
        return None;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Some(i);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Nothing of an object's members or an array's elements beyond their count.
static SHELL: Projection = Projection::Part(Part {
    keys: Vec::new(),
    others: None,
    elements: None,
});

impl Projection {
    /// Parses `bytes` as JSON, keeping what this projection says. Errors are serde_json's, with
    /// line and column, for the whole body: a skipped member is still checked.
    pub fn parse(&self, bytes: &[u8]) -> Result<Value, serde_json::Error> {
        if let Projection::Whole = self {
            return serde_json::from_slice(bytes);
        }
        // Skipped strings are not checked for UTF-8 by the parser: check the whole body once,
        // then parse it as text.
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t,
            // Let serde_json report it, with its position.
            Err(_) => return serde_json::from_slice(bytes),
        };
        let mut de = serde_json::Deserializer::from_str(text);
        let v = Keep(self).deserialize(&mut de)?;
        de.end()?;
        Ok(v)
    }
}

/// The seed and visitor that build the kept part of one value.
#[derive(Clone, Copy)]
struct Keep<'a>(&'a Projection);

impl<'de> DeserializeSeed<'de> for Keep<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        match self.0 {
            Projection::Whole => de::Deserialize::deserialize(d),
            Projection::Part(_) => d.deserialize_any(self),
        }
    }
}

impl<'de> Visitor<'de> for Keep<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let part = match self.0 {
            Projection::Part(p) => p,
            Projection::Whole => unreachable!("a whole value is deserialized directly"),
        };
        let element = part.elements.as_deref().unwrap_or(&SHELL);
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Keep(element))? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let part = match self.0 {
            Projection::Part(p) => p,
            Projection::Whole => unreachable!("a whole value is deserialized directly"),
        };
        let mut out = Map::new();
        while let Some(key) = map.next_key_seed(KeyName)? {
            let kept = part
                .keys
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, p)| p)
                .or(part.others.as_deref());
            match kept {
                Some(p) => {
                    let v = map.next_value_seed(Keep(p))?;
                    out.insert(key.into_owned(), v);
                }
                None => {
                    map.next_value_seed(Skip)?;
                }
            }
        }
        Ok(Value::Object(out))
    }
}

/// A member nothing reads: checked as a full parse checks it, and dropped. Not serde's
/// `IgnoredAny`, which scans numbers without converting them: `1e999` would pass here and
/// fail a full parse ("number out of range"; found by the `needs` fuzz target).
struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(Skip)?.is_some() {
            map.next_value_seed(Skip)?;
        }
        Ok(())
    }
}

/// An object key, borrowed from the body when it has no escapes.
struct KeyName;

impl<'de> DeserializeSeed<'de> for KeyName {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyName {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// The projections of a pipeline: one per source and event type its rules name, and one per
/// source for events whose type is known only from the payload.
#[derive(Debug, Default)]
pub struct Needs {
    /// By source, then event type.
    by_event: HashMap<String, HashMap<String, Arc<Projection>>>,
    /// What any event of a source needs (for an event type no rule names).
    base: HashMap<String, Arc<Projection>>,
    /// What any rule of a source reads (for an event type not known before the payload).
    by_source: HashMap<String, Arc<Projection>>,
}

impl Needs {
    /// Builds the projections from what each (source, event type) reads, and what each source
    /// reads for any event (`common`, e.g. the action).
    pub fn new(by_event: HashMap<(String, String), Need>, common: HashMap<String, Need>) -> Self {
        let mut by_source: HashMap<String, Need> = common.clone();
        for ((source, _), need) in &by_event {
            let all = by_source.remove(source).unwrap_or_default().merged(need);
            by_source.insert(source.clone(), all);
        }
        let mut nested: HashMap<String, HashMap<String, Arc<Projection>>> = HashMap::new();
        for ((source, event), need) in by_event {
            let need = match common.get(&source) {
                Some(c) => need.merged(c),
                None => need,
            };
            nested
                .entry(source)
                .or_default()
                .insert(event, Arc::new(need.compile()));
        }
        let compile = |m: HashMap<String, Need>| {
            m.into_iter()
                .map(|(s, n)| (s, Arc::new(n.compile())))
                .collect()
        };
        Self {
            by_event: nested,
            base: compile(common),
            by_source: compile(by_source),
        }
    }

    /// What to keep of a payload from `source`, whose event type is `event` when known before
    /// the payload is read. A source with no entry keeps everything.
    pub fn projection(&self, source: &str, event: Option<&str>) -> Arc<Projection> {
        static WHOLE: std::sync::LazyLock<Arc<Projection>> =
            std::sync::LazyLock::new(|| Arc::new(Projection::Whole));
        let found = match event {
            Some(e) => self
                .by_event
                .get(source)
                .and_then(|m| m.get(e))
                // An event type no rule names: only what every event of the source needs.
                .or_else(|| self.base.get(source)),
            None => self.by_source.get(source),
        };
        found.unwrap_or(&WHOLE).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(depth: usize) -> String {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn openers_are_counted_as_a_plain_count_does_across_chunks() {
        // Every byte value, in bodies longer than a chunk, and a chunk of nothing but
        // brackets (255 of them: the most a byte holds).
        let every: Vec<u8> = (0..=255u8).cycle().take(256 * 7 + 13).collect();
        let brackets = vec![b'{'; 255 * 3 + 1];
        for bytes in [&every[..], &brackets[..], b"", b"[{", &every[..255]] {
            let plain = bytes.iter().filter(|&&b| b == b'[' || b == b'{').count();
            assert_eq!(openers(bytes), plain);
        }
    }

    #[test]
    fn depth_is_counted_outside_strings_and_found_where_it_goes_over() {
        assert_eq!(too_deep(nested(127).as_bytes(), MAX_DEPTH), None);
        assert_eq!(too_deep(nested(128).as_bytes(), MAX_DEPTH), Some(127));
        // Siblings do not add up: many arrays one level deep are one level.
        let wide = format!("[{}]", vec!["[1]"; 500].join(","));
        assert_eq!(too_deep(wide.as_bytes(), MAX_DEPTH), None);
        // Brackets in strings (escaped quotes included) are text.
        let text = format!(
            r#"{{"a": "{}\"{}", "b": [1]}}"#,
            "[".repeat(300),
            "{".repeat(300)
        );
        assert_eq!(too_deep(text.as_bytes(), MAX_DEPTH), None);
        let mixed = format!(r#"{}{{"k": 1}}"#, "[{\"a\":".repeat(70));
        // Two levels a unit of 6 bytes: the 128th opening bracket is the `{` of the 64th.
        assert_eq!(too_deep(mixed.as_bytes(), MAX_DEPTH), Some(63 * 6 + 1));
        // Whatever serde_json parses whole, the check lets through, and the other way round.
        assert!(serde_json::from_str::<Value>(&nested(MAX_DEPTH)).is_ok());
        assert!(serde_json::from_str::<Value>(&nested(MAX_DEPTH + 1)).is_err());
        // Not JSON at all: no panic, no answer beyond depth.
        assert_eq!(too_deep(b"]]]]}}}", MAX_DEPTH), None);
    }

    fn path(p: &str) -> Vec<Step> {
        p.split('.')
            .map(|s| match s {
                "*" => Step::Each,
                k => Step::Key(k.to_string()),
            })
            .collect()
    }

    fn need(paths: &[(&str, bool)]) -> Need {
        let mut n = Need::new();
        for (p, whole) in paths {
            n.add(&path(p), *whole);
        }
        n
    }

    fn parse(n: &Need, v: &Value) -> Value {
        n.compile().parse(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn keeps_what_is_read_and_drops_the_rest() {
        let body = json!({
            "ref": "refs/heads/main",
            "repository": {"full_name": "o/r", "forks": 3, "owner": {"login": "o", "id": 1}},
            "commits": [{"id": "a", "message": "m", "added": ["x"]}, {"id": "b", "message": "n"}],
            "sender": {"login": "u", "id": 2},
        });
        let n = need(&[
            ("ref", true),
            ("repository.full_name", true),
            ("commits.*.id", true),
            ("sender", true),
        ]);
        assert_eq!(
            parse(&n, &body),
            json!({
                "ref": "refs/heads/main",
                "repository": {"full_name": "o/r"},
                "commits": [{"id": "a"}, {"id": "b"}],
                "sender": {"login": "u", "id": 2},
            })
        );
    }

    #[test]
    fn an_index_or_a_shape_keeps_every_element() {
        let body = json!({"commits": [{"id": "a", "m": 1}, {"id": "b"}], "labels": [{"n": 1}, 2]});
        // `commits.0.id` reads the first element's id; elements are kept (count and order).
        let n = need(&[("commits.0.id", true), ("labels", false)]);
        assert_eq!(
            parse(&n, &body),
            json!({"commits": [{"id": "a"}, {"id": "b"}], "labels": [{}, 2]})
        );
    }

    #[test]
    fn a_name_on_an_array_keeps_nothing_of_its_elements() {
        // `labels.name` finds nothing in an array, with or without the elements' members.
        let body = json!({"labels": [{"name": "a", "id": 1}], "repo": {"name": "r", "id": 2}});
        let n = need(&[("labels.name", true), ("repo.name", true)]);
        assert_eq!(
            parse(&n, &body),
            json!({"labels": [{}], "repo": {"name": "r"}})
        );
    }

    #[test]
    fn a_deep_path_compiles_to_a_projection_of_its_size() {
        fn nodes(p: &Projection) -> usize {
            match p {
                Projection::Whole => 1,
                Projection::Part(part) => {
                    1 + part.keys.iter().map(|(_, p)| nodes(p)).sum::<usize>()
                        + part.others.as_deref().map_or(0, nodes)
                        + part.elements.as_deref().map_or(0, nodes)
                }
            }
        }
        let deep: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
        let n = need(&[(&deep.join("."), true)]);
        assert_eq!(nodes(&n.compile()), 41);
        // Forty nested `#each`: members and elements share one compiled projection per level
        // (compiled apart, they doubled per level).
        let n = need(&[(&vec!["*"; 40].join("."), false)]);
        let p = n.compile();
        assert_eq!(
            p.parse(br#"{"a": [[1, {"b": 2}]]}"#).unwrap(),
            json!({"a": [[1, {"b": 2}]]})
        );
    }

    #[test]
    fn every_member_of_an_object_when_it_is_iterated() {
        let body = json!({"labels": {"a": {"x": 1, "y": 2}, "b": {"x": 3}}, "other": 1});
        let n = need(&[("labels.*.x", true)]);
        assert_eq!(
            parse(&n, &body),
            json!({"labels": {"a": {"x": 1}, "b": {"x": 3}}})
        );
    }

    #[test]
    fn whole_wins_and_merging_is_a_union() {
        let mut n = need(&[("a.b", true), ("a", true)]);
        assert_eq!(n.compile(), need(&[("a", true)]).compile());
        n = need(&[("a.b", true)]).merged(&need(&[("a.c", true)]));
        assert_eq!(
            parse(&n, &json!({"a": {"b": 1, "c": 2, "d": 3}})),
            json!({"a": {"b": 1, "c": 2}})
        );
        assert!(need(&[("x", true)]).merged(&Need::whole()).is_whole());
        assert_eq!(
            need(&[("payload.a", true)]).below("payload"),
            need(&[("a", true)])
        );
    }

    #[test]
    fn the_body_is_still_checked_in_full() {
        let n = need(&[("a", true)]).compile();
        // Bad syntax, bad UTF-8 and trailing bytes in what is skipped are still errors.
        assert!(n.parse(br#"{"a": 1, "b": [1, }"#).is_err());
        assert!(n.parse(b"{\"a\": 1, \"b\": \"\xff\"}").is_err());
        assert!(n.parse(br#"{"a": 1} x"#).is_err());
        // Reported where a full parse reports it.
        let bad = b"{\"a\": 1,\n \"b\": tru}";
        let (e, full) = (
            n.parse(bad).unwrap_err(),
            serde_json::from_slice::<Value>(bad).unwrap_err(),
        );
        assert_eq!((e.line(), e.column()), (full.line(), full.column()));
        // Not an object at the top: kept as it is.
        assert_eq!(n.parse(b"[1, 2]").unwrap(), json!([1, 2]));
        assert_eq!(n.parse(b"\"s\"").unwrap(), json!("s"));
    }

    #[test]
    fn a_number_out_of_range_fails_where_nothing_reads_it_as_a_full_parse_does() {
        // Found by the `needs` fuzz target (tests/fuzz/found/needs/): skipped members were
        // scanned, not converted, so `1e999` passed the projection and failed a full parse.
        for body in [
            r#"{"ref": "x", "size": 1e999}"#,
            r#"{"ref": "x", "a": [{"b": -1e400}]}"#,
        ] {
            assert!(serde_json::from_str::<Value>(body).is_err());
            let n = need(&[("ref", true)]);
            assert!(n.compile().parse(body.as_bytes()).is_err(), "{body}");
        }
    }

    #[test]
    fn numbers_and_escapes_are_those_of_a_full_parse() {
        let text = r#"{"a": [-1, 18446744073709551615, 1.5e300, 2.5, "é\"\u00e9", null, true], "k\u0041": 1}"#;
        let full: Value = serde_json::from_str(text).unwrap();
        let n = need(&[("a", false), ("a.*", true), ("kA", true)]);
        assert_eq!(n.compile().parse(text.as_bytes()).unwrap(), full);
        assert_eq!(
            Need::whole().compile().parse(text.as_bytes()).unwrap(),
            full
        );
    }

    #[test]
    fn projections_by_source_and_event() {
        let mut by_event = HashMap::new();
        by_event.insert(
            ("gh".to_string(), "push".to_string()),
            need(&[("ref", true)]),
        );
        by_event.insert(
            ("gh".to_string(), "issues".to_string()),
            need(&[("issue", true)]),
        );
        let mut common = HashMap::new();
        common.insert("gh".to_string(), need(&[("action", true)]));
        let needs = Needs::new(by_event, common);
        let body = br#"{"ref": "r", "issue": {"n": 1}, "action": "opened", "x": 1}"#;
        let p = |e: Option<&str>| needs.projection("gh", e).parse(body).unwrap();
        assert_eq!(p(Some("push")), json!({"ref": "r", "action": "opened"}));
        assert_eq!(
            p(Some("issues")),
            json!({"issue": {"n": 1}, "action": "opened"})
        );
        assert_eq!(p(Some("star")), json!({"action": "opened"}));
        assert_eq!(
            p(None),
            json!({"ref": "r", "issue": {"n": 1}, "action": "opened"})
        );
        let other = needs.projection("gl", Some("push")).parse(body).unwrap();
        assert_eq!(other, serde_json::from_slice::<Value>(body).unwrap());
    }
}
