//! YAML documents with positions: the one reader behind the config file and the rule files.
//!
//! In: YAML text and the file's name. Out: a [`Document`], the tree as a `serde_json::Value`
//! plus an index from every node's path (`[2].when.all[0].path`) to its line and column, so
//! that a check that runs long after parsing can still say `file:line:col` for what it finds.
//! Syntax errors come out as a [`Problem`] with the position the parser gives.
//!
//! Typed structs are read from the tree with [`Document::deserialize_at`], which reports an
//! unknown or misspelt key at the key's own position and suggests the closest valid one.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use granit_parser::{Event, Parser};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A line and column, both counted from 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub col: usize,
}

/// One thing wrong in a user's file, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file, as the user named it.
    pub file: PathBuf,
    /// Where in the file.
    pub pos: Pos,
    /// What is wrong, in words a person can act on.
    pub message: String,
}

impl Problem {
    /// A problem at a position in a file.
    pub fn new(file: impl Into<PathBuf>, pos: Pos, message: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            pos,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.pos.line,
            self.pos.col,
            self.message
        )
    }
}

impl std::error::Error for Problem {}

/// Every problem found in one pass over the user's files.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// A parsed YAML document and where each of its nodes stands in the text.
#[derive(Debug)]
pub struct Document {
    /// The file name used in problems.
    pub file: PathBuf,
    /// The document as JSON.
    pub value: Value,
    keys: HashMap<String, Pos>,
    values: HashMap<String, Pos>,
}

impl Document {
    /// Parses `text`; an empty document is `null`.
    pub fn parse(file: &Path, text: &str) -> Result<Self, Problem> {
        let value: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_saphyr::from_str(text).map_err(|e| {
                let pos = e
                    .location()
                    .map(|l| Pos {
                        line: l.line() as usize,
                        col: l.column() as usize,
                    })
                    .unwrap_or(Pos { line: 1, col: 1 });
                Problem::new(file, pos, first_line(&e.to_string()))
            })?
        };
        let (keys, values) = index(text);
        Ok(Self {
            file: file.to_path_buf(),
            value,
            keys,
            values,
        })
    }

    /// Where the node at `path` starts (its value), or failing that its key, or failing that
    /// the nearest enclosing node that has a position.
    pub fn pos(&self, path: &str) -> Pos {
        let mut p = path;
        loop {
            if let Some(pos) = self.values.get(p).or_else(|| self.keys.get(p)) {
                return *pos;
            }
            match parent(p) {
                Some(up) => p = up,
                None => return Pos { line: 1, col: 1 },
            }
        }
    }

    /// Where the key of the mapping entry at `path` stands (falls back like [`Document::pos`]).
    pub fn key_pos(&self, path: &str) -> Pos {
        self.keys
            .get(path)
            .copied()
            .unwrap_or_else(|| self.pos(path))
    }

    /// A problem at `path` in this document.
    pub fn problem(&self, path: &str, message: impl Into<String>) -> Problem {
        Problem::new(&self.file, self.pos(path), message)
    }

    /// Reads a `T` from the node at `path`. An unknown key is reported at that key, with the
    /// closest valid key suggested; other shape errors at the deepest node serde reached.
    pub fn deserialize_at<T: DeserializeOwned>(
        &self,
        path: &str,
        node: &Value,
    ) -> Result<T, Problem> {
        serde_path_to_error::deserialize::<_, T>(node).map_err(|e| {
            let inner = e.path().to_string();
            let full = join_path(path, &inner);
            let message = suggest(&e.inner().to_string());
            if message.starts_with("unknown field") {
                // serde's path names the parent of the unknown key; point at the key itself.
                let key = message.split('`').nth(1).unwrap_or_default();
                let at = if full.ends_with(key) {
                    full
                } else {
                    join_path(&full, key)
                };
                Problem::new(&self.file, self.key_pos(&at), message)
            } else {
                Problem::new(&self.file, self.pos(&full), message)
            }
        })
    }
}

/// `base` + `rest` as one path (`[0]` + `when.all` → `[0].when.all`).
pub fn join_path(base: &str, rest: &str) -> String {
    match (base.is_empty(), rest.is_empty() || rest == ".") {
        (_, true) => base.to_string(),
        (true, false) => rest.to_string(),
        (false, false) if rest.starts_with('[') => format!("{base}{rest}"),
        (false, false) => format!("{base}.{rest}"),
    }
}

fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(&path[..cut])
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).trim().to_string()
}

/// Turns serde's `unknown field `x`, expected one of `a`, `b`` into a message that suggests
/// the closest valid key.
fn suggest(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_string();
    };
    let Some((unknown, expected)) = rest.split_once('`') else {
        return message.to_string();
    };
    let valid: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    match closest(unknown, &valid) {
        Some(best) => format!(
            "unknown field `{unknown}`: did you mean `{best}`? ({})",
            expected.trim_start_matches([',', ' '])
        ),
        None => message.to_string(),
    }
}

/// The candidate closest to `word` by edit distance, if any is close enough to be a typo.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Frames of the walk over parser events: a mapping waiting for a key or a value, or a sequence.
enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

/// Walks the parser's events and records where every node and key starts. A document that
/// does not parse yields what was seen before the error (the value parse reports the error).
fn index(text: &str) -> (HashMap<String, Pos>, HashMap<String, Pos>) {
    let mut keys = HashMap::new();
    let mut values = HashMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    for item in Parser::new_from_str(text) {
        let Ok((event, span)) = item else { break };
        let pos = Pos {
            line: span.start.line(),
            col: span.start.col() + 1,
        };
        // The path of the node this event starts, if it is a node (not a key).
        let mut node_path = |stack: &mut Vec<Frame>, is_scalar: Option<&str>| -> Option<String> {
            match stack.last_mut() {
                None => Some(String::new()),
                Some(Frame::Seq { path, next }) => {
                    let p = format!("{path}[{next}]");
                    *next += 1;
                    Some(p)
                }
                Some(Frame::Map { path, key }) => match key.take() {
                    Some(k) => Some(join_path(path, &k)),
                    None => {
                        // This event is a key.
                        let k = is_scalar.unwrap_or("?").to_string();
                        keys.insert(join_path(path, &k), pos);
                        *key = Some(k);
                        None
                    }
                },
            }
        };
        match event {
            Event::Scalar(s, ..) => {
                if let Some(p) = node_path(&mut stack, Some(&s)) {
                    values.insert(p, pos);
                }
            }
            Event::Alias(..) => {
                if let Some(p) = node_path(&mut stack, Some("*")) {
                    values.insert(p, pos);
                }
            }
            Event::MappingStart(..) => {
                let p = node_path(&mut stack, None).unwrap_or_default();
                values.insert(p.clone(), pos);
                stack.push(Frame::Map { path: p, key: None });
            }
            Event::SequenceStart(..) => {
                let p = node_path(&mut stack, None).unwrap_or_default();
                values.insert(p.clone(), pos);
                stack.push(Frame::Seq { path: p, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            _ => {}
        }
    }
    (keys, values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    const TEXT: &str = "\
- name: a
  when:
    all:
      - path: x
        equals: 1
- name: b
  template: t
";

    #[test]
    fn positions_of_nested_nodes() {
        let doc = Document::parse(Path::new("r.yaml"), TEXT).unwrap();
        assert_eq!(doc.pos("[0].name"), Pos { line: 1, col: 9 });
        assert_eq!(doc.key_pos("[0].when"), Pos { line: 2, col: 3 });
        assert_eq!(doc.pos("[0].when.all[0].equals"), Pos { line: 5, col: 17 });
        assert_eq!(doc.key_pos("[1].template"), Pos { line: 7, col: 3 });
        // A path with no node falls back to its nearest ancestor.
        assert_eq!(doc.pos("[1].template.nothing"), Pos { line: 7, col: 13 });
    }

    #[test]
    fn unknown_key_is_reported_at_the_key_with_a_suggestion() {
        #[derive(Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct R {
            name: String,
            template: Option<String>,
            when: Option<Value>,
        }
        let text = "- name: a\n  tempalte: t\n";
        let doc = Document::parse(Path::new("r.yaml"), text).unwrap();
        let node = &doc.value[0];
        let err = doc.deserialize_at::<R>("[0]", node).unwrap_err();
        assert_eq!(err.pos, Pos { line: 2, col: 3 });
        assert!(
            err.message.contains("did you mean `template`"),
            "{}",
            err.message
        );
        assert!(err.to_string().starts_with("r.yaml:2:3: "));
    }

    #[test]
    fn syntax_error_has_a_position() {
        let err = Document::parse(Path::new("c.yaml"), "a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.line >= 1);
        assert!(err.to_string().starts_with("c.yaml:"));
    }
}
