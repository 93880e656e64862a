//! Throughput of `classify` (plain `main`, no harness): `cargo bench -j1 --bench classify`.
//!
//! 1. the largest dev log, classified repeatedly for at least one second;
//! 2. one buffer of about 1 GiB made in memory by concatenating the dev logs repeatedly
//!    (`FLOTILLA_BENCH_MB=256` makes it smaller), classified 3 times;
//! 3. the eval logs, timed only (their classes are not printed).
//!
//! Prints MB/s (10^6 bytes per second, one core) and per-class counts.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flotilla::orchestrator::classify::classify;
use flotilla::orchestrator::patterns::{Catalogue, IssueType};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/logs");

fn logs(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, String::from_utf8_lossy(&bytes).into_owned())
        })
        .collect()
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

fn main() {
    let cat = Catalogue::builtin();
    let dev = logs(&Path::new(FIXTURES).join("dev"));
    assert!(!dev.is_empty(), "no dev logs under {FIXTURES}/dev");

    // 1. Largest dev log, repeated for >= 1 s.
    let (path, largest) = dev.iter().max_by_key(|(_, t)| t.len()).expect("dev logs");
    let mut runs = 0usize;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(1) {
        black_box(classify(&cat, black_box(largest), None));
        runs += 1;
    }
    let el = t0.elapsed();
    println!(
        "largest dev log {} ({} bytes): {runs} runs in {:.2} s = {:.0} MB/s",
        path.file_name().unwrap_or_default().to_string_lossy(),
        largest.len(),
        el.as_secs_f64(),
        mbps(largest.len() * runs, el)
    );

    // Primary classes over the dev set.
    let mut dev_counts = [0usize; IssueType::ALL.len()];
    for (_, t) in &dev {
        dev_counts[classify(&cat, t, None).primary_type().index()] += 1;
    }
    print_counts("dev set primary verdicts (files)", &dev_counts);

    // 2. ~1 GiB of concatenated dev logs.
    let target_mb: usize = std::env::var("FLOTILLA_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let target = target_mb << 20;
    let mut big = String::with_capacity(target + largest.len() + 1);
    'fill: loop {
        for (_, t) in &dev {
            big.push_str(t);
            if !t.ends_with('\n') {
                big.push('\n');
            }
            if big.len() >= target {
                break 'fill;
            }
        }
    }
    println!(
        "big buffer: {} bytes ({} MiB) of concatenated dev logs",
        big.len(),
        big.len() >> 20
    );
    let mut last = None;
    for i in 1..=3 {
        let t0 = Instant::now();
        let c = black_box(classify(&cat, black_box(&big), None));
        let el = t0.elapsed();
        println!(
            "  run {i}: {:.2} s = {:.0} MB/s",
            el.as_secs_f64(),
            mbps(big.len(), el)
        );
        last = Some(c);
    }
    if let Some(c) = last {
        let mut counts = [0usize; IssueType::ALL.len()];
        for f in &c.issues {
            counts[f.issue_type.index()] = f.count;
        }
        println!("  primary: {}", c.primary_type());
        print_counts("big buffer matched lines per class", &counts);
    }

    // 3. Eval logs: timing only.
    let eval = logs(&Path::new(FIXTURES).join("eval"));
    if !eval.is_empty() {
        let bytes: usize = eval.iter().map(|(_, t)| t.len()).sum();
        let mut rounds = 0usize;
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(1) {
            for (_, t) in &eval {
                black_box(classify(&cat, black_box(t), None));
            }
            rounds += 1;
        }
        let el = t0.elapsed();
        println!(
            "eval set ({} files, {bytes} bytes): {:.0} MB/s, {:.1} us per file",
            eval.len(),
            mbps(bytes * rounds, el),
            el.as_secs_f64() * 1e6 / (rounds * eval.len()) as f64
        );
    }
}

fn print_counts(title: &str, counts: &[usize]) {
    println!("{title}:");
    for t in IssueType::ALL {
        if counts[t.index()] > 0 {
            println!("  {:<22} {}", t.as_str(), counts[t.index()]);
        }
    }
}
