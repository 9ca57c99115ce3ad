//! The architecture's one hard rule, enforced: imports between the
//! top-level modules of every crate point one way (no cycles), so the
//! layers in docs/architecture.md stay layers. Code only: comments and doc
//! links may point anywhere, and test modules may import what they test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules of a crate's `src`: name → its source files.
fn modules(src: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(src).expect("src").flatten() {
        let p = e.path();
        let name = p
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("")
            .to_string();
        if p.is_dir() {
            out.insert(name, rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") && name != "lib" && name != "main" {
            out.insert(name, vec![p]);
        }
    }
    out
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).expect("dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            v.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs")
            && p.file_stem().is_some_and(|s| s != "tests")
        {
            v.push(p);
        }
    }
    v
}

/// The code of a file: without its `#[cfg(test)] mod tests` and comments.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Which top-level modules `text` uses through `crate::`.
fn uses(text: &str, names: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let word: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if names.contains(&word) {
            out.insert(word);
        }
    }
    out
}

type Graph = BTreeMap<String, BTreeSet<String>>;

fn graph(src: &Path) -> Graph {
    let mods = modules(src);
    let names: BTreeSet<String> = mods.keys().cloned().collect();
    mods.iter()
        .map(|(m, files)| {
            let mut deps = BTreeSet::new();
            for f in files {
                let text = std::fs::read_to_string(f).expect("read");
                deps.extend(uses(&code(&text), &names));
            }
            deps.remove(m);
            (m.clone(), deps)
        })
        .collect()
}

fn visit(
    n: &str,
    g: &Graph,
    path: &mut Vec<String>,
    done: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if let Some(i) = path.iter().position(|p| p == n) {
        let mut c = path[i..].to_vec();
        c.push(n.to_string());
        return Some(c);
    }
    if done.contains(n) {
        return None;
    }
    path.push(n.to_string());
    for d in g.get(n).into_iter().flatten() {
        if let Some(c) = visit(d, g, path, done) {
            return Some(c);
        }
    }
    path.pop();
    done.insert(n.to_string());
    None
}

/// A cycle in `g`, if any, as the path that closes it.
fn cycle(g: &Graph) -> Option<Vec<String>> {
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|n| visit(n, g, &mut Vec::new(), &mut done))
}

#[test]
fn no_crate_has_an_import_cycle_between_its_top_level_modules() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut checked = 0;
    for e in std::fs::read_dir(&crates).expect("crates").flatten() {
        let src = e.path().join("src");
        if !src.is_dir() {
            continue;
        }
        if let Some(c) = cycle(&graph(&src)) {
            panic!("{}: import cycle {}", e.path().display(), c.join(" -> "));
        }
        checked += 1;
    }
    assert!(checked >= 4, "found the workspace's crates ({checked})");
}

#[test]
fn the_cycle_finder_finds_cycles_and_ignores_comments() {
    let g = |edges: &[(&str, &str)]| {
        let mut m = Graph::new();
        for (a, b) in edges {
            m.entry((*a).into()).or_default().insert((*b).into());
            m.entry((*b).into()).or_default();
        }
        m
    };
    assert_eq!(cycle(&g(&[("a", "b"), ("b", "c")])), None);
    assert_eq!(
        cycle(&g(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    let names: BTreeSet<String> = ["registry", "forward"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let text = code("use crate::forward::End; // crate::registry\n/// [`crate::registry`]\n");
    assert_eq!(uses(&text, &names), BTreeSet::from(["forward".to_string()]));
}

/// Most lines a non-test source file may have: past it, a file mixes
/// concerns (split it along them, as `registry/` and `forward/` are).
const MAX_LINES: usize = 800;

#[test]
fn no_source_file_is_over_800_lines() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut long = Vec::new();
    for e in std::fs::read_dir(&crates).expect("crates").flatten() {
        let src = e.path().join("src");
        if !src.is_dir() {
            continue;
        }
        for f in rust_files(&src) {
            let n = std::fs::read_to_string(&f).expect("read").lines().count();
            if n > MAX_LINES {
                long.push(format!("{} ({n} lines)", f.display()));
            }
        }
    }
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:?}");
}
