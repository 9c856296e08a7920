//! Rules and templates, loaded and checked together: what the gateway does with an event.
//!
//! In: the config (which folders). Out: a [`Pipeline`] — the compiled [`RuleSet`] and
//! [`Renderer`], and what they read of each source's payloads ([`Needs`]) — or every problem
//! in every file. Folders on disk win; when the config names none and `./rules` or
//! `./templates` does not exist, the copies built into the binary are used, so the binary
//! alone runs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use include_dir::{include_dir, Dir};

use crate::config::Config;
use crate::event::Event;
use crate::needs::{Need, Needs};
use crate::noise::ITEM_READS;
use crate::render::{CardKind, Renderer};
use crate::rules::cond::FieldPath;
use crate::rules::RuleSet;
use crate::yaml::{Pos, Problem, Problems};

static EMBEDDED_RULES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/rules");
static EMBEDDED_TEMPLATES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/templates");

/// Where a set of files comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A folder on disk.
    Dir(PathBuf),
    /// The copy built into the binary.
    Embedded(&'static str),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Dir(p) => write!(f, "{}", p.display()),
            Origin::Embedded(name) => write!(f, "{name} (built in)"),
        }
    }
}

/// The rules and templates in force.
#[derive(Debug)]
pub struct Pipeline {
    /// The rules.
    pub rules: RuleSet,
    /// The templates.
    pub renderer: Renderer,
    /// Where the rules came from.
    pub rules_origin: Origin,
    /// Where the templates came from.
    pub templates_origin: Origin,
    /// When they were loaded.
    pub loaded_at: SystemTime,
    /// A hash of every rule and template file loaded (their paths and texts): instances that
    /// answer the same hash in `GET /api/rules` run the same set.
    pub digest: String,
    /// What of each source's payloads they read: ingest parses only that.
    pub needs: Needs,
}

impl Pipeline {
    /// Loads templates, then rules (which refer to templates), reporting every problem.
    pub fn load(config: &Config) -> Result<Self, Problems> {
        let mut problems = Vec::new();
        let rules_origin = origin(config, config.rules_dir.as_deref(), "rules", &mut problems);
        let templates_origin = origin(
            config,
            config.templates_dir.as_deref(),
            "templates",
            &mut problems,
        );
        if !problems.is_empty() {
            return Err(Problems(problems));
        }
        let template_files = read(
            &templates_origin,
            &EMBEDDED_TEMPLATES,
            |_| true,
            true,
            &mut problems,
        );
        let rule_files = read(
            &rules_origin,
            &EMBEDDED_RULES,
            |p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")),
            false,
            &mut problems,
        );
        let shown = match &templates_origin {
            Origin::Dir(p) => p.display().to_string(),
            Origin::Embedded(n) => n.to_string(),
        };
        let people = match &config.people {
            None => crate::render::people::People::default(),
            Some(path) => match crate::render::people::People::load(&config.resolve(path)) {
                Ok(p) => p,
                Err(p) => {
                    problems.extend(p);
                    crate::render::people::People::default()
                }
            },
        };
        let renderer = match Renderer::load_with_people(&shown, &template_files, people) {
            Ok(r) => Some(r),
            Err(p) => {
                problems.extend(p.0);
                None
            }
        };
        // Check the rules even when some templates failed to compile, so one run reports
        // everything: a template counts as there when its file is.
        // A portable template (`<name>.card.hbs`) renders every kind.
        let template_names: std::collections::HashSet<_> = template_files
            .iter()
            .filter_map(|(p, _)| crate::render::split_name(&p.to_string_lossy().replace('\\', "/")))
            .collect();
        let portable_names: std::collections::HashSet<String> = template_files
            .iter()
            .filter_map(|(p, _)| {
                p.to_string_lossy()
                    .replace('\\', "/")
                    .strip_suffix(".card.hbs")
                    .map(str::to_string)
            })
            .collect();
        // The packs cover every kind of source; the rules of a source this config does not
        // have load inactive (built in or on disk alike), and a typo of one it has fails.
        let rules = RuleSet::load(&rule_files, &config.sources, |name, kind| {
            template_names.contains(&(name.to_string(), kind)) || portable_names.contains(name)
        });
        let rules = match rules {
            Ok(r) => Some(r),
            Err(p) => {
                problems.extend(p.0);
                None
            }
        };
        match (rules, renderer) {
            (Some(rules), Some(mut renderer)) if problems.is_empty() => {
                renderer.prepare_exprs(rules.rules().iter().flat_map(|r| {
                    let per = r.limit.as_ref().and_then(|l| l.per.as_deref());
                    r.dedup
                        .as_ref()
                        .map(|d| d.key.as_str())
                        .into_iter()
                        .chain(per)
                }));
                Ok(Self {
                    digest: digest(&rule_files, &template_files),
                    needs: needs(config, &rules, &renderer),
                    rules,
                    renderer,
                    rules_origin,
                    templates_origin,
                    loaded_at: SystemTime::now(),
                })
            }
            _ => Err(Problems(problems)),
        }
    }
}

/// `sha256:` and the hex SHA-256 of the rule files, then the template files, each in path
/// order as path, length and text: the same files give the same hash on every machine.
fn digest(rules: &[(PathBuf, String)], templates: &[(PathBuf, String)]) -> String {
    use sha2::{Digest as _, Sha256};
    let mut hash = Sha256::new();
    for (part, files) in [("rules", rules), ("templates", templates)] {
        let mut sorted: Vec<(String, &String)> = files
            .iter()
            .map(|(p, text)| (p.to_string_lossy().replace('\\', "/"), text))
            .collect();
        sorted.sort();
        hash.update(part.as_bytes());
        for (path, text) in sorted {
            hash.update([0]);
            hash.update(path.as_bytes());
            hash.update((text.len() as u64).to_be_bytes());
            hash.update(text.as_bytes());
        }
    }
    format!("sha256:{}", hex::encode(hash.finalize()))
}

/// What the rules and their templates read of each source's payloads, per event type, and
/// what the gateway reads of every event (its action, the repository a digest names). A path
/// that does not parse counts as reading everything.
fn needs(config: &Config, rules: &RuleSet, renderer: &Renderer) -> Needs {
    let steps = |p: &str| FieldPath::parse(p).map(|f| f.steps()).unwrap_or_default();
    let mut common = HashMap::new();
    for (name, source) in &config.sources {
        let mut need = Need::new();
        let fixed = Event::reads(source.kind).iter().chain(ITEM_READS).copied();
        let fixed = fixed.chain(crate::render::fallback::reads());
        for p in fixed.map(str::to_string).chain(source.event_field.clone()) {
            let p = p.as_str();
            need.add(&steps(p), true);
        }
        common.insert(name.clone(), need);
    }
    let mut by_event: HashMap<(String, String), Need> = HashMap::new();
    for rule in rules.rules() {
        let mut ctx = Need::new();
        for kind in CardKind::ALL {
            renderer.reads(&rule.template, kind, &mut ctx);
        }
        if let Some(d) = &rule.dedup {
            renderer.expr_reads(&d.key, &mut ctx);
        }
        if let Some(per) = rule.limit.as_ref().and_then(|l| l.per.as_deref()) {
            renderer.expr_reads(per, &mut ctx);
        }
        let need = by_event
            .entry((rule.source.clone(), rule.event.clone()))
            .or_default();
        rule.reads(need);
        *need = std::mem::take(need).merged(&ctx.below("payload"));
    }
    Needs::new(by_event, common)
}

fn origin(
    config: &Config,
    set: Option<&Path>,
    default: &'static str,
    problems: &mut Vec<Problem>,
) -> Origin {
    match set {
        Some(p) => {
            let p = config.resolve(p);
            if !p.is_dir() {
                problems.push(Problem::new(
                    &p,
                    Pos { line: 1, col: 1 },
                    format!("the {default} folder does not exist"),
                ));
            }
            Origin::Dir(p)
        }
        None => {
            let p = config.resolve(Path::new(default));
            if p.is_dir() {
                Origin::Dir(p)
            } else {
                Origin::Embedded(default)
            }
        }
    }
}

/// Reads the files of an origin as (path, text): for a folder, paths joined to it (rules) or
/// relative to it (templates, whose relative path is their name). Hidden files and editor
/// backups are skipped.
fn read(
    origin: &Origin,
    embedded: &'static Dir<'static>,
    wanted: impl Fn(&Path) -> bool,
    relative: bool,
    problems: &mut Vec<Problem>,
) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    match origin {
        Origin::Embedded(name) => {
            let mut stack = vec![embedded];
            while let Some(dir) = stack.pop() {
                stack.extend(dir.dirs());
                for f in dir.files() {
                    if wanted(f.path()) && !skipped(f.path()) {
                        let shown = if relative {
                            f.path().to_path_buf()
                        } else {
                            Path::new(name).join(f.path())
                        };
                        out.push((shown, f.contents_utf8().unwrap_or_default().to_string()));
                    }
                }
            }
        }
        Origin::Dir(root) => {
            let mut stack = vec![root.clone()];
            while let Some(dir) = stack.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) => {
                        problems.push(Problem::new(
                            &dir,
                            Pos { line: 1, col: 1 },
                            format!("cannot read: {e}"),
                        ));
                        continue;
                    }
                };
                for entry in entries.flatten() {
                    let path = entry.path();
                    if skipped(&path) {
                        continue;
                    }
                    if path.is_dir() {
                        if relative {
                            stack.push(path);
                        }
                    } else if wanted(&path) {
                        match std::fs::read_to_string(&path) {
                            Ok(text) => {
                                let shown = if relative {
                                    path.strip_prefix(root).unwrap_or(&path).to_path_buf()
                                } else {
                                    path.clone()
                                };
                                out.push((shown, text));
                            }
                            Err(e) => problems.push(Problem::new(
                                &path,
                                Pos { line: 1, col: 1 },
                                format!("cannot read: {e}"),
                            )),
                        }
                    }
                }
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn skipped(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    name.starts_with('.') || name.ends_with('~') || name.ends_with(".swp")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<(PathBuf, String)> {
        list.iter()
            .map(|(p, t)| (PathBuf::from(p), t.to_string()))
            .collect()
    }

    /// Two instances given the same files, read in any order, answer the same hash; a change
    /// of a text, a path, or a file moved between rules and templates changes it.
    #[test]
    fn the_digest_is_the_files_not_their_order() {
        let rules = files(&[("github.yaml", "- name: a"), ("gitlab.yaml", "- name: b")]);
        let templates = files(&[("github/push.card.hbs", "{}")]);
        let base = digest(&rules, &templates);
        let reversed: Vec<_> = rules.iter().rev().cloned().collect();
        assert_eq!(digest(&reversed, &templates), base);
        let edited = files(&[("github.yaml", "- name: A"), ("gitlab.yaml", "- name: b")]);
        assert_ne!(digest(&edited, &templates), base);
        let moved = files(&[("github2.yaml", "- name: a"), ("gitlab.yaml", "- name: b")]);
        assert_ne!(digest(&moved, &templates), base);
        assert_ne!(digest(&templates, &rules), base);
        // A text's end cannot run into the next path.
        let a = files(&[("x", "ab"), ("y", "c")]);
        let b = files(&[("x", "a"), ("by", "c")]);
        assert_ne!(digest(&a, &[]), digest(&b, &[]));
    }
}
