//! docs/WRITING-AN-AGENT.md shows the shipped agents' code: every code
//! block (but the shell commands) is marked `<!-- from PATH#NAME -->` and
//! must equal the lines between `doc:begin NAME` and `doc:end NAME` in
//! PATH, less their common indentation. A block that drifted from its
//! source fails here, with the source's current text.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The lines between the `doc:begin`/`doc:end` markers `name` in `path`,
/// dedented.
fn region(path: &str, name: &str) -> String {
    let text = std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    let marker = |kind: &str, line: &str| {
        let l = line.trim();
        l == format!("# doc:{kind} {name}") || l == format!("// doc:{kind} {name}")
    };
    let lines: Vec<&str> = text.lines().collect();
    let begin = lines
        .iter()
        .position(|l| marker("begin", l))
        .unwrap_or_else(|| panic!("{path}: no doc:begin {name}"));
    let end = lines[begin..]
        .iter()
        .position(|l| marker("end", l))
        .map(|i| begin + i)
        .unwrap_or_else(|| panic!("{path}: no doc:end {name}"));
    let body = &lines[begin + 1..end];
    let indent = body
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    body.iter()
        .map(|l| {
            if l.trim().is_empty() {
                ""
            } else {
                &l[indent..]
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_code_block_of_writing_an_agent_is_the_shipped_code() {
    let doc = std::fs::read_to_string(repo().join("docs/WRITING-AN-AGENT.md")).unwrap();
    let lines: Vec<&str> = doc.lines().collect();
    let mut checked = 0;
    let mut i = 0;
    while i < lines.len() {
        let Some(lang) = lines[i].strip_prefix("```") else {
            i += 1;
            continue;
        };
        let close = lines[i + 1..]
            .iter()
            .position(|l| *l == "```")
            .map(|k| i + 1 + k)
            .unwrap_or_else(|| panic!("line {}: an unclosed code block", i + 1));
        let body = lines[i + 1..close].join("\n");
        let source = i
            .checked_sub(1)
            .and_then(|k| lines[k].strip_prefix("<!-- from "))
            .and_then(|l| l.strip_suffix(" -->"));
        match (lang, source) {
            ("sh", None) => {
                // Commands to type: the scripts they name exist.
                for word in body
                    .split_whitespace()
                    .filter(|w| w.starts_with("services/"))
                {
                    assert!(
                        repo().join(word).is_file(),
                        "line {}: {word} does not exist",
                        i + 1
                    );
                }
            }
            (_, None) => panic!(
                "line {}: a ```{lang} block without <!-- from PATH#NAME -->",
                i + 1
            ),
            (_, Some(source)) => {
                let (path, name) = source.split_once('#').unwrap();
                let want = region(path, name);
                assert!(
                    body == want,
                    "docs/WRITING-AN-AGENT.md line {}: the block from {source} differs from the \
                     source; it is now:\n{want}",
                    i + 1
                );
                checked += 1;
            }
        }
        i = close + 1;
    }
    // Python, TypeScript and Rust, side by side.
    assert!(checked >= 18, "only {checked} blocks from sources");
}
