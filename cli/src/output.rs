//! Protocol messages as JSON for `--json`, tables for people, and the
//! report written to disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use agentmesh_proto::report::{report, secs};
use agentmesh_proto::v1::RunFinished;
pub use agentmesh_proto::view::{endpoint, health_name, planned, run_summary, state_name, ts};
use serde_json::{Value, json};

/// Writes a line to stdout. A closed stdout (`meshctl ... | head`) ends the
/// process quietly instead of panicking.
pub fn emit(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        std::process::exit(0);
    }
}

/// `println!` through [`emit`].
macro_rules! say {
    () => { $crate::output::emit("") };
    ($($t:tt)*) => { $crate::output::emit(&format!($($t)*)) };
}
pub(crate) use say;

/// Prints rows as an aligned table.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
            .collect();
        say!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| (*h).to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

/// A file name safe to write inside the output folder.
fn safe_name(name: &str) -> String {
    let base = Path::new(name)
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.trim_matches('.').is_empty() {
        "artifact".into()
    } else {
        clean
    }
}

/// Writes the report files and `report.json`; returns the folder.
pub fn write_report(
    out: &Path,
    run_id: &str,
    goal: &str,
    finished: &RunFinished,
    files: &BTreeMap<String, Vec<u8>>,
    outputs: &BTreeMap<String, Value>,
) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(out)?;
    let mut written = Vec::new();
    for (name, bytes) in files {
        let name = safe_name(name);
        std::fs::write(out.join(&name), bytes)?;
        written.push(name);
    }
    let doc = json!({
        "run_id": run_id,
        "goal": goal,
        "state": state_name(finished.state()),
        "reason": finished.reason,
        "message": finished.message,
        "report": finished.report.as_ref().map(report),
        "steps": outputs,
        "files": written,
    });
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    std::fs::write(out.join("report.json"), text)?;
    Ok(out.to_path_buf())
}
