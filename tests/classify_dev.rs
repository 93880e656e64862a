//! The classifier against the shared fixtures (`../shared/fixtures` from the crate root).
//!
//! - `logs/dev`: 28 real failed job logs with `labels.tsv` (columns: `file`, `class`,
//!   `upstream` = where the log came from). The primary class must match the label for at
//!   least 90% of the files; misses are printed as a confusion list.
//! - `logs/eval`: run only to check that nothing panics and every file gets a finding (no
//!   class is asserted or printed for these files).
//! - `workflows/actionlint_testdata/err/*.out`: actionlint's expected reports for invalid
//!   workflows, which must classify as `workflow_syntax_error` (an invalid workflow yields no
//!   job log, so this is where that class is tested against real text).

use std::path::{Path, PathBuf};

use flotilla::orchestrator::classify::{JobContext, classify, render_json};
use flotilla::orchestrator::patterns::{Catalogue, IssueType};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures");

fn read_lossy(p: &Path) -> String {
    let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
    String::from_utf8_lossy(&bytes).into_owned()
}

fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    v
}

#[test]
fn dev_logs_match_labels() {
    let dir = Path::new(FIXTURES).join("logs/dev");
    let labels = read_lossy(&dir.join("labels.tsv"));
    let mut lines = labels.lines();
    let header: Vec<&str> = lines
        .next()
        .expect("labels.tsv header")
        .split('\t')
        .collect();
    assert_eq!(header[..2], ["file", "class"], "labels.tsv columns changed");
    // labels.tsv carries no job API data (no `conclusion` column), so every log is
    // classified from its text alone (JobContext = None).
    assert!(
        !header.contains(&"conclusion"),
        "labels.tsv now has a conclusion column: build a JobContext from it"
    );
    let cat = Catalogue::builtin();
    let (mut total, mut hits) = (0usize, 0usize);
    let mut misses = Vec::new();
    for row in lines.filter(|l| !l.trim().is_empty()) {
        let cols: Vec<&str> = row.split('\t').collect();
        let (file, want) = (cols[0], cols[1]);
        let want: IssueType = want
            .parse()
            .unwrap_or_else(|e| panic!("labels.tsv row {row:?}: {e}"));
        let log = read_lossy(&dir.join(file));
        let c = classify(&cat, &log, None::<&JobContext>);
        assert!(!c.issues.is_empty());
        let got = c.primary_type();
        total += 1;
        println!(
            "{} {file:<12} expected {want:<20} got {got:<20} line {:<5} {}",
            if got == want { "ok  " } else { "MISS" },
            c.primary().line,
            c.primary().evidence.chars().take(90).collect::<String>()
        );
        if got == want {
            hits += 1;
        } else {
            misses.push((file.to_owned(), want, got));
        }
        // The CLI rendering works for every file.
        let v = render_json(file, &c);
        assert_eq!(v["issues"][0]["issue_type"], got.as_str());
    }
    assert_eq!(total, 28, "labels.tsv should list 28 logs");
    let pct = 100.0 * hits as f64 / total as f64;
    println!("dev accuracy: {hits}/{total} = {pct:.1}%");
    if !misses.is_empty() {
        println!("confusion (file, expected, got):");
        for (f, w, g) in &misses {
            println!("  {f}\t{w}\t{g}");
        }
    }
    assert!(
        pct >= 90.0,
        "dev accuracy {pct:.1}% < 90%: misses {misses:?}"
    );
}

#[test]
fn eval_logs_never_panic() {
    let dir = Path::new(FIXTURES).join("logs/eval");
    let files = files_with_ext(&dir, "log");
    assert!(!files.is_empty(), "no eval logs under {}", dir.display());
    let cat = Catalogue::builtin();
    for p in &files {
        let log = read_lossy(p);
        let c = classify(&cat, &log, None);
        assert!(!c.issues.is_empty(), "{}: no finding", p.display());
        let lines = log.split('\n').count();
        for f in &c.issues {
            assert!(
                f.line <= lines,
                "{}: line {} out of range",
                p.display(),
                f.line
            );
        }
        // With job data too (only totality is checked; no class is asserted for eval files).
        let job = JobContext {
            conclusion: Some("timed_out".into()),
            annotations: vec!["Process completed with exit code 1.".into()],
            step_name: Some("Run tests".into()),
        };
        assert!(!classify(&cat, &log, Some(&job)).issues.is_empty());
    }
    println!("{} eval logs classified without panics", files.len());
}

#[test]
fn actionlint_reports_are_workflow_syntax_errors() {
    let dir = Path::new(FIXTURES).join("workflows/actionlint_testdata/err");
    let cat = Catalogue::builtin();
    let (mut total, mut hits) = (0usize, 0usize);
    for p in files_with_ext(&dir, "out") {
        // Lines wrapped in /.../ are regexes of expected output, not output.
        let text: String = read_lossy(&p)
            .lines()
            .filter(|l| !l.starts_with('/') && !l.trim().is_empty())
            .map(|l| format!("{l}\n"))
            .collect();
        if text.is_empty() {
            continue;
        }
        total += 1;
        let got = classify(&cat, &text, None).primary_type();
        if got == IssueType::WorkflowSyntaxError {
            hits += 1;
        } else {
            println!("MISS {}: {got}", p.display());
        }
    }
    println!("actionlint err reports: {hits}/{total} workflow_syntax_error");
    assert!(
        total >= 50,
        "expected the actionlint err cases, found {total}"
    );
    assert!(hits * 100 >= total * 95, "{hits}/{total}");
}
