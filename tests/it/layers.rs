//! The source's own structure: the layers of the `src/lib.rs` map, each file importing only
//! from its own layer or those below; no file importing, through a chain of others, a file
//! that imports it back, and no folder either (an import loop makes the layers meaningless: a
//! change anywhere in the loop can break anything in it); and only `app.rs` naming the whole
//! shared state.
//!
//! A path counts in every form it takes: `crate::a::b`, `super::` (and `super::super::`),
//! `self::`, a bare child module (`pages::Sessions` in `admin/mod.rs`), inline or in a `use`
//! (groups, nested groups, `self`, `as`); an item a module re-exports (`pub use child::Item`)
//! counts as the file that defines it. The test of the test plants each form.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/`, by module path (`connect::flow`), with its code: comments,
/// the `mod tests` at the end and test-only files (`tests.rs`: tests may reach anywhere) left
/// out.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files
        .into_iter()
        .filter_map(|path| {
            let rel = path.strip_prefix(&src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            if parts.first().is_some_and(|p| p == "bin")
                || parts.last().is_some_and(|p| p == "tests")
            {
                return None;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let text = text.split("#[cfg(test)]\nmod tests").next().unwrap();
            Some((parts.join("::"), code_of(text)))
        })
        .collect()
}

/// A file's text without its comments.
fn code_of(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths a `use` tree stands for: `crate::{a::{X, Y}, b}` is `crate::a::X`,
/// `crate::a::Y` and `crate::b`; `a::X as Y` is `a::X`.
fn expand_use(tree: &str) -> Vec<String> {
    let tree = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    let tree = tree.replace(" as ", "@").replace(' ', "");
    let Some(open) = tree.find('{') else {
        return vec![tree.split('@').next().unwrap_or("").to_string()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    // The items of the group, split at its own commas (not those of a nested group).
    let mut items = Vec::new();
    let (mut depth, mut from) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[from..]);
    items
        .into_iter()
        .filter(|i| !i.is_empty())
        .flat_map(expand_use)
        .map(|p| match p.as_str() {
            "self" => prefix.trim_end_matches("::").to_string(),
            _ => format!("{prefix}{p}"),
        })
        .collect()
}

/// A module's `use` items (whether public, and the tree) and its code without them.
fn split_uses(code: &str) -> (Vec<(bool, String)>, String) {
    let mut uses = Vec::new();
    let mut rest = String::with_capacity(code.len());
    let mut at = 0;
    for (i, _) in code.match_indices("use ") {
        if i < at {
            continue;
        }
        // A `use` item starts its line (after `pub`, `pub(crate)` and the like).
        let line = code[code[..i].rfind('\n').map_or(0, |n| n + 1)..i].trim();
        if !(line.is_empty() || line.starts_with("pub") && !line.contains(' ')) {
            continue;
        }
        let Some(end) = code[i..].find(';') else {
            break;
        };
        rest.push_str(&code[at..i]);
        uses.push((
            line.starts_with("pub"),
            code[i + "use ".len()..i + end].to_string(),
        ));
        at = i + end + 1;
    }
    rest.push_str(&code[at..]);
    (uses, rest)
}

fn join(base: &str, rest: &str) -> String {
    match (base.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_string(),
        (_, true) => base.to_string(),
        _ => format!("{base}::{rest}"),
    }
}

/// The source's modules and what each re-exports.
struct Source {
    all: BTreeMap<String, String>,
    /// Per module: an item it re-exports (`pub use child::Item`) -> where that path leads.
    reexports: BTreeMap<String, BTreeMap<String, String>>,
}

impl Source {
    fn new(all: BTreeMap<String, String>) -> Self {
        let mut source = Source {
            all,
            reexports: BTreeMap::new(),
        };
        let mut reexports = BTreeMap::new();
        for (name, code) in &source.all {
            let (uses, _) = split_uses(code);
            for (_, tree) in uses.iter().filter(|(public, _)| *public) {
                let flat = tree.split_whitespace().collect::<Vec<_>>().join(" ");
                for (path, alias) in expand_use(tree).into_iter().zip(aliases(&flat)) {
                    if let Some(abs) = source.absolute(name, &path) {
                        let item = alias
                            .unwrap_or_else(|| abs.rsplit("::").next().unwrap_or("").to_string());
                        reexports
                            .entry(name.clone())
                            .or_insert_with(BTreeMap::new)
                            .insert(item, abs);
                    }
                }
            }
        }
        source.reexports = reexports;
        source
    }

    /// A path as written in `name`, from the crate's root: `None` for another crate's.
    fn absolute(&self, name: &str, path: &str) -> Option<String> {
        if let Some(rest) = path.strip_prefix("crate::") {
            return Some(rest.to_string());
        }
        if let Some(rest) = path.strip_prefix("self::") {
            return Some(join(name, rest));
        }
        let (mut base, mut rest, mut climbed) = (name.to_string(), path, false);
        while let Some(r) = rest.strip_prefix("super::") {
            base = base
                .rsplit_once("::")
                .map_or(String::new(), |(p, _)| p.to_string());
            rest = r;
            climbed = true;
        }
        if climbed {
            return Some(join(&base, rest));
        }
        // A bare path: a child module's, or another crate's.
        let first = rest.split("::").next().unwrap_or("");
        self.all
            .contains_key(&join(name, first))
            .then(|| join(name, rest))
    }

    /// The file a path from the crate's root leads to, through re-exports.
    fn resolve(&self, path: &str) -> Option<String> {
        let mut path = path.to_string();
        for _ in 0..8 {
            let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
            let n = (1..=parts.len())
                .rev()
                .find(|&n| self.all.contains_key(&parts[..n].join("::")))?;
            let module = parts[..n].join("::");
            let through = parts
                .get(n)
                .and_then(|item| self.reexports.get(&module)?.get(*item));
            match through {
                Some(to) if *to != path => {
                    path = format!(
                        "{to}{}",
                        parts[n + 1..]
                            .iter()
                            .map(|p| format!("::{p}"))
                            .collect::<String>()
                    );
                }
                _ => return Some(module),
            }
        }
        None
    }

    /// The files a module's code names.
    fn imports(&self, name: &str) -> BTreeSet<String> {
        let (uses, code) = split_uses(&self.all[name]);
        let mut out = BTreeSet::new();
        for (_, tree) in &uses {
            for path in expand_use(tree) {
                out.extend(self.absolute(name, &path).and_then(|p| self.resolve(&p)));
            }
        }
        let path_at = |rest: &str| -> String {
            rest.chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect::<String>()
                .trim_end_matches(':')
                .to_string()
        };
        let mut last = None;
        for (i, c) in code.char_indices() {
            let starts = (c.is_alphabetic() || c == '_')
                && !last.is_some_and(|b: char| b.is_alphanumeric() || b == '_' || b == ':');
            last = Some(c);
            if !starts {
                continue;
            }
            let path = path_at(&code[i..]);
            // `pub(in crate::store)` says who may see an item, not what it uses.
            if path.contains("::") && !code[..i].ends_with("(in ") {
                out.extend(self.absolute(name, &path).and_then(|p| self.resolve(&p)));
            }
        }
        out.remove(name);
        out.remove("");
        out
    }

    /// Every file's imports (`lib.rs`, which declares every module, left out).
    fn graph(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.all
            .keys()
            .filter(|name| !name.is_empty())
            .map(|name| (name.clone(), self.imports(name)))
            .collect()
    }
}

/// For each path of a flattened `use` tree, its `as` name if it has one.
fn aliases(tree: &str) -> Vec<Option<String>> {
    // Each leaf of the tree is a run between `{`, `,` and `}`.
    tree.split(['{', ',', '}'])
        .map(str::trim)
        .filter(|leaf| !leaf.is_empty() && !leaf.ends_with("::"))
        .map(|leaf| leaf.split_once(" as ").map(|(_, a)| a.trim().to_string()))
        .collect()
}

/// The folders' graph: each top-level module (a folder or a file of `src/`) imports those its
/// files import, other than itself.
fn folders(graph: &BTreeMap<String, BTreeSet<String>>) -> BTreeMap<String, BTreeSet<String>> {
    let top = |m: &str| m.split("::").next().unwrap_or("").to_string();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, tos) in graph {
        let entry = out.entry(top(from)).or_default();
        for to in tos {
            if top(to) != top(from) {
                entry.insert(top(to));
            }
        }
    }
    out
}

/// A loop through `start`, if there is one: the modules in order.
fn cycle_through(start: &str, graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_string(), vec![start.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((at, path)) = stack.pop() {
        for next in graph.get(&at).into_iter().flatten() {
            if next == start {
                return Some(path);
            }
            if seen.insert(next.clone()) {
                let mut p = path.clone();
                p.push(next.clone());
                stack.push((next.clone(), p));
            }
        }
    }
    None
}

/// Every loop of a graph, once each (as it runs from its least module).
fn loops(graph: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<String> {
    graph
        .keys()
        .filter_map(|m| cycle_through(m, graph))
        .map(|mut c| {
            let least = c
                .iter()
                .enumerate()
                .min_by_key(|(_, m)| *m)
                .map_or(0, |(i, _)| i);
            c.rotate_left(least);
            c.join(" -> ")
        })
        .collect()
}

/// The imports that run from a layer to one above it.
fn upward(
    graph: &BTreeMap<String, BTreeSet<String>>,
    layer: impl Fn(&str) -> usize,
) -> Vec<String> {
    let mut up = Vec::new();
    for (name, tos) in graph {
        for to in tos {
            if layer(to) > layer(name) {
                up.push(format!(
                    "src/{} (layer {}) imports {to} (layer {})",
                    name.replace("::", "/"),
                    layer(name),
                    layer(to)
                ));
            }
        }
    }
    up
}

#[test]
fn no_file_imports_itself_through_others() {
    let graph = Source::new(modules()).graph();
    // The reader sees what it should: these are known edges of the design.
    assert!(graph["ingest"].contains("stage"), "{:?}", graph["ingest"]);
    assert!(
        graph["stage"].contains("store::outbox"),
        "{:?}",
        graph["stage"]
    );
    assert!(graph["connect::oauth"].contains("connect::flow"));
    let found = loops(&graph);
    assert!(found.is_empty(), "import loops:\n{found:#?}");
}

#[test]
fn no_folder_imports_itself_through_others() {
    let found = loops(&folders(&Source::new(modules()).graph()));
    assert!(
        found.is_empty(),
        "folders' import loops:\n{}",
        found.into_iter().collect::<Vec<_>>().join("\n")
    );
}

/// The test of the test: every form of path, planted as an upward import or a loop, is seen.
#[test]
fn every_form_of_path_is_seen() {
    let files = [
        ("", "pub mod low; pub mod high; pub mod base; pub mod user;"),
        ("high", "pub struct Thing;"),
        (
            "low",
            "pub mod a; pub mod b; pub mod c; pub mod d; pub mod child;\nfn f(_: child::Thing) {}",
        ),
        ("low::child", "pub struct Thing;"),
        ("low::a", "fn f() -> crate::high::Thing { todo!() }"),
        ("low::b", "use super::super::high::Thing;"),
        (
            "low::c",
            "pub(crate) use crate::{\n    ids,\n    high::{self, Thing as T},\n};",
        ),
        (
            "low::d",
            "use self::inner::X;\nfn g(_: super::child::Thing) {}",
        ),
        ("base", "pub mod inner;\npub use self::inner::Thing;"),
        ("base::inner", "pub struct Thing(pub(in crate::high) u8);"),
        ("user", "use crate::base::Thing;"),
    ];
    let all: BTreeMap<String, String> = files
        .iter()
        .map(|(n, c)| (n.to_string(), code_of(c)))
        .collect();
    let graph = Source::new(all).graph();
    let layer = |m: &str| usize::from(matches!(m, "high" | "low::child" | "base::inner"));
    let up = upward(&graph, layer);
    for (from, to) in [
        ("src/low ", "low::child"),
        ("src/low/a ", "high"),
        ("src/low/b ", "high"),
        ("src/low/c ", "high"),
        ("src/low/d ", "low::child"),
        ("src/user ", "base::inner"),
    ] {
        assert!(
            up.iter()
                .any(|u| u.starts_with(from) && u.contains(&format!("imports {to} "))),
            "{from}-> {to} not seen in {up:#?}"
        );
    }
    // A visibility (`pub(in crate::high)`) names no import.
    assert!(
        !graph["base::inner"].contains("high"),
        "{:?}",
        graph["base::inner"]
    );
    // A parent naming a child that imports the parent back is a loop; so is a folder's.
    let mut planted = graph.clone();
    planted
        .get_mut("high")
        .unwrap()
        .insert("low::a".to_string());
    assert!(
        loops(&planted).contains("high -> low::a"),
        "{:?}",
        loops(&planted)
    );
    assert!(loops(&folders(&planted)).contains("high -> low"));
}

/// The layers, lowest first; a module not listed takes its parent's layer.
const LAYERS: &[&[&str]] = &[
    // Foundations: ids, errors, units, the YAML reader, HTML helpers.
    &[
        "ids", "error", "units", "yaml", "alloc", "live", "needs", "html",
    ],
    // What an event is and how a card is made of it.
    &["event", "render"],
    // Settings, rules, the vendored samples, durable state.
    &["config", "rules", "samples", "store"],
    // Rules and templates together, noise control, metrics, the connections' cache, targets,
    // the chat platforms' OAuth clients.
    &[
        "pipeline",
        "noise",
        "metrics",
        "telemetry",
        "connections",
        "sources",
        "connect",
        "deliver::policy",
        "deliver::guard",
    ],
    // Staging and delivery.
    &["stage", "deliver"],
    // HTTP in: the admin gate, ingest, reload.
    &["gate", "ingest", "reload"],
    // The admin API, the pages, the Connect flow and its emulator, the playground.
    &[
        "connect::api",
        "connect::flow",
        "connect::oauth",
        "connect::emulator",
        "connect::chat_emulator",
        "connect::mattermost_emulator",
        "connect::github_emulator",
        "connect::gitlab_emulator",
        "admin::sources",
        "deliver::api",
        "admin",
        "playground",
    ],
    // The whole: shared state and routers, the command line.
    &["app", "cli"],
];

fn layer(module: &str) -> usize {
    let mut m = module;
    loop {
        if let Some(n) = LAYERS.iter().position(|l| l.contains(&m)) {
            return n;
        }
        match m.rsplit_once("::") {
            Some((parent, _)) => m = parent,
            None => panic!("src/{module}: in no layer of tests/it/layers.rs"),
        }
    }
}

#[test]
fn no_layer_imports_from_a_layer_above_it() {
    let up = upward(&Source::new(modules()).graph(), layer);
    assert!(
        up.is_empty(),
        "imports from a layer above:\n{}",
        up.join("\n")
    );
}

/// The layers above the store reach it through its traits (`store::SharedStore`), so that a
/// second backend changes nothing else; only `app` (which opens it) and `cli` (whose
/// `migrate --from-sled` reads a folder) name sled's.
#[test]
fn only_the_store_and_app_name_the_sled_store() {
    for (name, code) in modules() {
        if name == "store"
            || name.starts_with("store::")
            || name == "app"
            || name == "cli"
            || name.starts_with("cli::")
            || name.ends_with("tests")
        {
            continue;
        }
        for needle in ["store::Store", "Arc<Store>", "Store::open", "&Store"] {
            // The type itself, not `StoreError` and the like.
            let named = code.match_indices(needle).any(|(i, _)| {
                !code[i + needle.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
            });
            assert!(
                !named,
                "src/{}: names {needle}; hold a store::SharedStore",
                name.replace("::", "/")
            );
        }
    }
}

#[test]
fn only_app_names_the_whole_state() {
    for (name, code) in modules() {
        if matches!(name.as_str(), "app" | "cli" | "") || name.starts_with("cli::") {
            continue;
        }
        for needle in ["crate::app", "AppState", "app::App"] {
            assert!(
                !code.contains(needle),
                "src/{}: names {needle}; take a sub-state (axum's FromRef) instead",
                name.replace("::", "/")
            );
        }
    }
}

/// The map is true: `src/lib.rs` names every top-level module, and every folder's `mod.rs`
/// names each of its files in its opening, so that the room of any idea is found from the top.
#[test]
fn every_room_is_on_the_map() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let names: Vec<String> = modules()
        .into_keys()
        .filter(|m| !m.is_empty() && !m.starts_with("bin"))
        .collect();
    let mut missing = Vec::new();
    for module in &names {
        let (parent, child) = module.rsplit_once("::").unwrap_or(("", module));
        let opening_of = |path: PathBuf| {
            std::fs::read_to_string(path)
                .unwrap()
                .lines()
                .take_while(|l| l.starts_with("//!") || l.trim().is_empty())
                .collect::<Vec<_>>()
                .join("\n")
        };
        let opening = if parent.is_empty() {
            opening_of(src.join("lib.rs"))
        } else {
            let folder = src.join(parent.replace("::", "/"));
            let file = folder.with_extension("rs");
            opening_of(if file.exists() {
                file
            } else {
                folder.join("mod.rs")
            })
        };
        let named = opening.match_indices(child).any(|(i, _)| {
            let before = opening[..i].chars().last();
            let after = opening[i + child.len()..].chars().next();
            !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
        });
        if !named {
            missing.push(format!(
                "{module} (not named in {}'s opening)",
                if parent.is_empty() {
                    "lib.rs".to_string()
                } else {
                    format!("{parent}/mod.rs")
                }
            ));
        }
    }
    assert!(
        missing.is_empty(),
        "rooms off the map:\n{}",
        missing.join("\n")
    );
}
