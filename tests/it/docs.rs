//! The documentation: README short enough to read to its end, every link and anchor of README
//! and the reference pages (`src/docs/`) landing, on a code host (files and headings) and as
//! the gateway serves them (`/docs`, `/docs/<page>`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::utils::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README and every reference page.
fn documents() -> Vec<PathBuf> {
    let mut out = vec![root().join("README.md")];
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root().join("src/docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    out.extend(pages);
    out
}

/// A Markdown text without its fenced code blocks and inline code.
fn prose(md: &str) -> String {
    let mut out = String::new();
    let mut fence = false;
    for line in md.lines() {
        let t = line.trim_start();
        let t = t
            .strip_prefix(|c: char| c.is_ascii_digit())
            .map(|r| r.trim_start_matches(|c: char| c.is_ascii_digit()))
            .and_then(|r| r.strip_prefix(". "))
            .unwrap_or(t)
            .trim_start();
        if t.starts_with("```") {
            fence = !fence;
            continue;
        }
        if !fence {
            // Inline code: every other run between backticks.
            let kept: String = line
                .split('`')
                .enumerate()
                .filter(|(i, _)| i % 2 == 0)
                .map(|(_, s)| s)
                .collect::<Vec<_>>()
                .join(" ");
            out.push_str(&kept);
            out.push('\n');
        }
    }
    out
}

/// The anchors GitHub gives a Markdown file's headings.
fn anchors(md: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut fence = false;
    for line in md.lines() {
        if line.trim_start().starts_with("```") || line.contains(". ```") {
            fence = !fence;
            continue;
        }
        if fence || !line.starts_with('#') {
            continue;
        }
        let text = line.trim_start_matches('#').trim().replace('`', "");
        // A link in a heading counts by its label.
        let text = text
            .split("](")
            .enumerate()
            .map(|(i, part)| match (i, part.split_once(')')) {
                (1.., Some((_, rest))) => rest,
                _ => part,
            })
            .collect::<String>()
            .replace('[', "");
        out.insert(
            text.to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect(),
        );
    }
    out
}

/// Every `[label](target)` of a Markdown text's prose.
fn links(md: &str) -> Vec<String> {
    let text = prose(md);
    text.match_indices("](")
        .filter_map(|(i, _)| {
            let rest = &text[i + 2..];
            let end = rest.find(|c: char| c == ')' || c.is_whitespace())?;
            Some(rest[..end].to_string())
        })
        .collect()
}

#[test]
fn readme_is_at_most_500_lines() {
    let n = std::fs::read_to_string(root().join("README.md"))
        .unwrap()
        .lines()
        .count();
    assert!(n <= 500, "README.md has {n} lines");
}

#[test]
fn every_link_and_anchor_lands_on_a_code_host() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        let md = std::fs::read_to_string(&doc).unwrap();
        let dir = doc.parent().unwrap();
        for link in links(&md) {
            if link.starts_with("http://")
                || link.starts_with("https://")
                || link.starts_with("mailto:")
            {
                continue;
            }
            checked += 1;
            let (file, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target = if file.is_empty() {
                doc.clone()
            } else {
                dir.join(file)
            };
            let name = doc.strip_prefix(root()).unwrap().display().to_string();
            if !target.exists() {
                broken.push(format!("{name}: {link}: no such file"));
                continue;
            }
            if !anchor.is_empty() {
                let text = std::fs::read_to_string(&target).unwrap_or_default();
                if !anchors(&text).contains(anchor) {
                    broken.push(format!("{name}: {link}: no such heading"));
                }
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} links read: the reader is broken"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The test's own readers: a link inside code is not a link; a heading's anchor is GitHub's.
#[test]
fn the_readers_see_links_and_headings_as_github_does() {
    let md = "# A `b` & C (d)\n\n## See [this](x.md) too\n\n[x](y.md#z) `[no](link)`\n\n```sh\n# not a heading [no](link2)\n```\n\n2. ```yaml\n   [no](link3)\n   ```\n";
    assert_eq!(links(md), vec!["x.md".to_string(), "y.md#z".to_string()]);
    assert_eq!(
        anchors(md),
        BTreeSet::from(["a-b--c-d".to_string(), "see-this-too".to_string()])
    );
}

#[tokio::test]
async fn every_page_is_served_and_its_links_land() {
    let g = Gateway::start().await;
    let b = browser();
    let names: Vec<String> = documents()
        .iter()
        .skip(1)
        .filter_map(|p| p.file_stem()?.to_str().map(str::to_string))
        .filter(|n| n != "README")
        .collect();
    assert!(names.len() >= 10, "{names:?}");
    let mut served: BTreeMap<String, String> = BTreeMap::new();
    for path in
        std::iter::once("/docs".to_string()).chain(names.iter().map(|n| format!("/docs/{n}")))
    {
        let res = b.get(g.url(&path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        served.insert(path, res.text().await.unwrap());
    }
    // A page's title is its first heading; README's links to the pages go to /docs/<page>.
    assert!(served["/docs/rules"].contains("<title>Rules · cardwire</title>"));
    assert!(served["/docs"].contains("href=\"/docs/rules\""));
    let mut broken = Vec::new();
    for (path, html) in &served {
        for (i, _) in html.match_indices("href=\"") {
            let href = &html[i + 6..];
            let href = &href[..href.find('"').unwrap()];
            if href.starts_with("http") || href.starts_with("/assets/") {
                continue;
            }
            let (page, anchor) = href.split_once('#').unwrap_or((href, ""));
            let page = if page.is_empty() { path.as_str() } else { page };
            if !page.starts_with("/docs") {
                continue; // the gateway's own pages (/connect, ...), tested where they are
            }
            match served.get(page) {
                None => broken.push(format!("{path}: {href}: not a page")),
                Some(target)
                    if !anchor.is_empty() && !target.contains(&format!("id=\"{anchor}\"")) =>
                {
                    broken.push(format!("{path}: {href}: no such heading"))
                }
                _ => {}
            }
        }
    }
    assert!(
        broken.is_empty(),
        "broken links as served:\n{}",
        broken.join("\n")
    );
    // A page that does not exist is the browser's 404.
    let res = b
        .get(g.url("/docs/nope"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}
