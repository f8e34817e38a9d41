//! The orchestrator's architecture as its modules show it: no module
//! imports another that (through others) imports it back, and the run
//! core names nothing of the goal front-end, the report or the sales
//! domain. (That the run core builds without them is checked by CI:
//! `cargo check -p agentmesh-orchestrator --no-default-features`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../orchestrator/src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `run/step.rs` → `run::step`; `run/mod.rs` → `run`.
fn module_of(path: &Path) -> String {
    let rel = path.strip_prefix(src()).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts.join("::")
}

/// The code of a file without its comments (a doc link is no import) and
/// its unit tests.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => &text,
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::a::b` path in `text`, as its segments.
fn crate_paths(text: &str) -> Vec<Vec<String>> {
    text.match_indices("crate::")
        .map(|(i, m)| {
            text[i + m.len()..]
                .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .next()
                .unwrap_or_default()
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .collect()
}

/// Module → the modules it names (the longest known prefix of each path;
/// a module naming its own parent is not counted: that is `mod.rs` glue).
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f)).collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        let from = module_of(file);
        let mut to = BTreeSet::new();
        for mut path in crate_paths(&code(file)) {
            while !path.is_empty() && !modules.contains(&path.join("::")) {
                path.pop();
            }
            let target = path.join("::");
            if !target.is_empty() && target != from && !from.starts_with(&format!("{target}::")) {
                to.insert(target);
            }
        }
        graph.insert(from, to);
    }
    graph
}

#[test]
fn no_module_of_the_orchestrator_imports_itself_back() {
    let graph = imports();
    assert!(graph.contains_key("run::engine") && graph.contains_key("routing::registry"));
    // Depth-first search for a back edge.
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if done.contains(n) {
            return;
        }
        if let Some(at) = path.iter().position(|p| p == n) {
            panic!("import circle: {} -> {n}", path[at..].join(" -> "));
        }
        path.push(n.to_string());
        for next in graph.get(n).into_iter().flatten() {
            visit(next, graph, path, done);
        }
        path.pop();
        done.insert(n.to_string());
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        visit(n, &graph, &mut Vec::new(), &mut done);
    }
}

#[test]
fn the_run_core_knows_no_goal_report_or_domain() {
    let mut files = Vec::new();
    rust_files(&src().join("run"), &mut files);
    for dir in ["routing", "store"] {
        rust_files(&src().join(dir), &mut files);
    }
    for file in files {
        let text = code(&file);
        for word in [
            "crate::goal",
            "crate::report",
            "crate::service",
            "agentmesh_sales",
            "sales.",
        ] {
            assert!(!text.contains(word), "{} names {word}", file.display());
        }
    }
}
