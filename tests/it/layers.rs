//! The source's own structure: the layers of the `src/lib.rs` map, each file importing only
//! from its own layer or those below; no file importing, through a chain of others, a file
//! that imports it back (an import loop makes the layers meaningless: a change anywhere in the
//! loop can break anything in it); and only `app.rs` naming the whole shared state.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/`, by module path (`connect::flow`), with its code: comments
/// and the `mod tests` at the end (tests may reach anywhere) left out.
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
        .map(|path| {
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
            let text = std::fs::read_to_string(&path).unwrap();
            let text = text.split("#[cfg(test)]\nmod tests").next().unwrap();
            let code: Vec<&str> = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect();
            (parts.join("::"), code.join("\n"))
        })
        .collect()
}

/// The modules a module's code names: `crate::a::b::Item` is module `a::b` when that is a
/// file, else `a`; `super::x` is resolved from the module's parent; `use crate::{a, b}` too.
fn imports(name: &str, code: &str, all: &BTreeMap<String, String>) -> BTreeSet<String> {
    let resolve = |path: &str| -> Option<String> {
        let parts: Vec<&str> = path.split("::").collect();
        (1..=parts.len())
            .rev()
            .map(|n| parts[..n].join("::"))
            .find(|m| all.contains_key(m))
    };
    let path_at = |rest: &str| -> String {
        rest.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect::<String>()
            .trim_end_matches(':')
            .to_string()
    };
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(list) = rest.strip_prefix('{') {
            for item in list.split('}').next().unwrap_or("").split(',') {
                out.extend(resolve(item.trim().split("::").next().unwrap_or("")));
            }
        } else {
            out.extend(resolve(&path_at(rest)));
        }
    }
    let parent = name.rsplit_once("::").map_or("", |(p, _)| p);
    for (i, _) in code.match_indices("super::") {
        let before = code[..i].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = path_at(&code[i + "super::".len()..]);
        let full = if parent.is_empty() {
            rest
        } else {
            format!("{parent}::{rest}")
        };
        out.extend(resolve(&full));
    }
    out.remove(name);
    out.remove("");
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

#[test]
fn no_file_imports_itself_through_others() {
    let all = modules();
    let graph: BTreeMap<String, BTreeSet<String>> = all
        .iter()
        .map(|(name, code)| (name.clone(), imports(name, code, &all)))
        .collect();
    // The reader sees what it should: these are known edges of the design.
    assert!(graph["ingest"].contains("stage"), "{:?}", graph["ingest"]);
    assert!(graph["stage"].contains("store"), "{:?}", graph["stage"]);
    assert!(graph["store::outbox"].contains("store"));
    assert!(graph["connect::flow"].contains("connect::pages"));
    let loops: Vec<String> = graph
        .keys()
        .filter_map(|m| cycle_through(m, &graph))
        .map(|c| c.join(" -> "))
        .collect();
    assert!(loops.is_empty(), "import loops:\n{}", loops.join("\n"));
}

/// The layers, lowest first; a module not listed takes its parent's layer.
const LAYERS: &[&[&str]] = &[
    // Foundations: ids, errors, units, the YAML reader, HTML helpers.
    &[
        "ids",
        "error",
        "units",
        "yaml",
        "alloc",
        "live",
        "needs",
        "connect::pages",
    ],
    // What an event is and how a card is made of it.
    &["event", "render"],
    // Settings, rules, the vendored samples, durable state.
    &["config", "rules", "samples", "store"],
    // Rules and templates together, noise control, metrics, the connections' cache, targets.
    &[
        "pipeline",
        "noise",
        "metrics",
        "connect",
        "deliver::policy",
        "deliver::guard",
    ],
    // Staging and delivery.
    &["stage", "deliver"],
    // HTTP in: the admin gate, ingest, reload.
    &["admin", "ingest", "reload"],
    // The admin API, the pages, the Connect flow and its emulator, the playground.
    &[
        "connect::api",
        "connect::flow",
        "connect::oauth",
        "connect::emulator",
        "connect::chat_emulator",
        "deliver::api",
        "admin::pages",
        "admin::home",
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
    let all = modules();
    let mut up = Vec::new();
    for (name, code) in &all {
        if name.is_empty() {
            continue; // lib.rs declares every module
        }
        for to in imports(name, code, &all) {
            if layer(&to) > layer(name) {
                up.push(format!(
                    "src/{} (layer {}) imports {to} (layer {})",
                    name.replace("::", "/"),
                    layer(name),
                    layer(&to)
                ));
            }
        }
    }
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
        if matches!(name.as_str(), "app" | "cli" | "") {
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
