//! `flotilla classify FILE... [--json]`: the classifier's command-line shell.
//!
//! Reads each file (or stdin for `-` or no file) as bytes, decodes lossily (binary input is
//! classified, never a crash), and prints one verdict per file: with `--json`, one JSON object
//! per line (`{file, issues: [...]}`, primary verdict first); otherwise a short text report.

use std::io::{Read, Write};
use std::path::PathBuf;

use super::classify::{classify, render_json};
use super::patterns::Catalogue;

/// Errors before any file is read.
#[derive(Debug, thiserror::Error)]
pub enum ClassifyCmdError {
    /// A user pattern file could not be read or is invalid.
    #[error("pattern file {path}: {reason}")]
    Patterns {
        /// File.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Build the catalogue: built-in patterns, then each user file in order (same id replaces).
pub fn catalogue(extra: &[PathBuf]) -> Result<Catalogue, ClassifyCmdError> {
    let mut cat = Catalogue::builtin();
    for p in extra {
        let text = std::fs::read_to_string(p).map_err(|e| ClassifyCmdError::Patterns {
            path: p.clone(),
            reason: e.to_string(),
        })?;
        cat.extend_from_toml(&text, &p.display().to_string())
            .map_err(|e| ClassifyCmdError::Patterns {
                path: p.clone(),
                reason: e.to_string(),
            })?;
    }
    Ok(cat)
}

/// Classify `files` (stdin for `-` or none) and print to `out`. Returns how many files could
/// not be read (reported on `err`).
pub fn run(
    cat: &Catalogue,
    files: &[PathBuf],
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<usize> {
    let stdin_only = [PathBuf::from("-")];
    let files = if files.is_empty() {
        &stdin_only[..]
    } else {
        files
    };
    let mut failed = 0;
    for f in files {
        let mut bytes = Vec::new();
        let read = if f.as_os_str() == "-" {
            std::io::stdin().read_to_end(&mut bytes)
        } else {
            std::fs::File::open(f).and_then(|mut h| h.read_to_end(&mut bytes))
        };
        let name = f.display().to_string();
        if let Err(e) = read {
            writeln!(err, "flotilla classify: cannot read {name}: {e}")?;
            failed += 1;
            continue;
        }
        let text = String::from_utf8_lossy(&bytes);
        let c = classify(cat, &text, None);
        if json {
            writeln!(out, "{}", render_json(&name, &c))?;
        } else {
            let p = c.primary();
            writeln!(
                out,
                "{name}: {} ({}, line {}){}",
                p.issue_type,
                p.severity,
                p.line,
                if p.auto_fixable { ", auto-fixable" } else { "" }
            )?;
            if !p.evidence.is_empty() {
                writeln!(out, "    {}", p.evidence)?;
            }
            if !p.fix_description.is_empty() {
                writeln!(out, "    fix: {}", p.fix_description)?;
            }
            for o in c.issues.iter().skip(1) {
                writeln!(
                    out,
                    "  also {} (line {}): {}",
                    o.issue_type, o.line, o.evidence
                )?;
            }
        }
    }
    Ok(failed)
}
