//! MCP stdio latency, flotilla against a trivial server on the official Python SDK.
//!
//! ```text
//! cargo build --release -j1 && cargo bench -j1 --bench mcp_latency
//! ```
//!
//! Servers, side by side in one run:
//! - A: `flotilla --mcp-stdio --data-dir <tmp>`; binary from `FLOTILLA_BIN`, default
//!   `target/release/flotilla` (under `CARGO_TARGET_DIR` if that is set).
//! - B: `python benches/py_trivial_server.py` (`mcp.server.mcpserver.MCPServer`, one tool
//!   `get_system_status` returning a small dict); python from `MCP_PYTHON`, default
//!   `.venv-test/bin/python` (made by `scripts/test`). Skipped, with a message, if missing.
//!
//! Measures, over raw newline-delimited JSON-RPC on the child's pipes (blocking std I/O, so
//! the driver adds next to nothing):
//! - cold start: spawn -> `initialize` response, `MCP_BENCH_COLD` times (default 20), each
//!   flotilla spawn on a fresh data dir (so it includes creating and migrating the store);
//! - call latency: in one session, `MCP_BENCH_WARMUP` (200) then `MCP_BENCH_CALLS` (2000)
//!   `tools/call get_system_status`, one at a time: request written -> response read.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

const PROTOCOL_VERSION: &str = "2025-11-25";
/// The whole bench is aborted past this (a hung server must not hang CI).
const WATCHDOG: Duration = Duration::from_secs(600);

fn env_usize(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// How to start one server.
struct ServerSpec {
    label: String,
    program: PathBuf,
    /// Arguments; `{data}` is replaced by a fresh data dir per spawn.
    args: Vec<String>,
    env: Vec<(String, String)>,
}

/// A running server and its pipes.
struct Session {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr_path: PathBuf,
    next_id: u64,
    line: String,
}

impl ServerSpec {
    fn spawn(&self, scratch: &Path, n: usize) -> Result<Session> {
        let data = scratch.join(format!("data-{n}"));
        std::fs::create_dir_all(&data)?;
        let stderr_path = scratch.join(format!("stderr-{n}.log"));
        let stderr = std::fs::File::create(&stderr_path)?;
        let args: Vec<String> = self
            .args
            .iter()
            .map(|a| a.replace("{data}", &data.to_string_lossy()))
            .collect();
        let mut child = Command::new(&self.program)
            .args(&args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .with_context(|| format!("cannot spawn {}", self.program.display()))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::with_capacity(1 << 16, child.stdout.take().expect("piped stdout"));
        Ok(Session {
            child,
            stdin,
            stdout,
            stderr_path,
            next_id: 1,
            line: String::with_capacity(4096),
        })
    }
}

impl Session {
    fn send(&mut self, line: &str) -> Result<()> {
        // One write of the whole line (request + '\n'); ChildStdin is unbuffered.
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        self.stdin
            .write_all(&buf)
            .map_err(|e| self.died(format!("write failed: {e}")))
    }

    /// Send a request and block until the response with its id; returns that response.
    fn request(&mut self, method: &str, params: &str) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{params}}}"#
        ))?;
        loop {
            self.line.clear();
            let n = self
                .stdout
                .read_line(&mut self.line)
                .map_err(|e| self.died(format!("read failed: {e}")))?;
            if n == 0 {
                return Err(self.died(format!("stdout closed while waiting for {method}")));
            }
            let msg: Value = match serde_json::from_str(self.line.trim()) {
                Ok(v) => v,
                Err(_) => continue, // not JSON-RPC: ignore (a server should not do this)
            };
            if msg.get("id").and_then(Value::as_u64) != Some(id) {
                continue; // a notification or a server->client request
            }
            if let Some(err) = msg.get("error") {
                bail!("{method} answered with an error: {err}");
            }
            return Ok(msg);
        }
    }

    fn initialize(&mut self) -> Result<Value> {
        self.request(
            "initialize",
            &format!(
                r#"{{"protocolVersion":"{PROTOCOL_VERSION}","capabilities":{{}},"clientInfo":{{"name":"mcp_latency","version":"0"}}}}"#
            ),
        )
    }

    fn initialized(&mut self) -> Result<()> {
        self.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
    }

    fn call_status(&mut self) -> Result<Value> {
        self.request(
            "tools/call",
            r#"{"name":"get_system_status","arguments":{}}"#,
        )
    }

    /// An error carrying the tail of the server's stderr.
    fn died(&mut self, what: String) -> anyhow::Error {
        let status = self.child.try_wait().ok().flatten();
        let mut log = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.stderr_path) {
            let _ = f.read_to_string(&mut log);
        }
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        anyhow!(
            "{what} (exit: {}); stderr tail:\n{}",
            status.map_or("still running".into(), |s| s.to_string()),
            tail.join("\n")
        )
    }

    /// Close stdin (the MCP stdio shutdown), wait up to 5 s, then kill.
    fn close(self) {
        let Session {
            mut child, stdin, ..
        } = self;
        drop(stdin);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
            }
        }
    }
}

/// Summary of a sample, in milliseconds.
struct Stats {
    n: usize,
    min: f64,
    p50: f64,
    p99: f64,
    max: f64,
    mean: f64,
}

fn stats(samples: &[Duration]) -> Stats {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        // Nearest rank.
        let rank = ((p / 100.0) * ms.len() as f64).ceil() as usize;
        ms[rank.clamp(1, ms.len()) - 1]
    };
    Stats {
        n: ms.len(),
        min: ms[0],
        p50: pct(50.0),
        p99: pct(99.0),
        max: ms[ms.len() - 1],
        mean: ms.iter().sum::<f64>() / ms.len() as f64,
    }
}

struct Outcome {
    label: String,
    server: String,
    cold: Stats,
    calls: Stats,
}

fn bench(spec: &ServerSpec, cold_runs: usize, warmup: usize, calls: usize) -> Result<Outcome> {
    let scratch = tempfile::Builder::new().prefix("mcp-latency-").tempdir()?;
    eprintln!("[{}] {} cold starts ...", spec.label, cold_runs);
    let mut cold = Vec::with_capacity(cold_runs);
    let mut server = String::new();
    for i in 0..cold_runs {
        let t0 = Instant::now();
        let mut s = spec.spawn(scratch.path(), i)?;
        let init = s.initialize()?;
        cold.push(t0.elapsed());
        if i == 0 {
            let info = &init["result"]["serverInfo"];
            server = format!(
                "{} {} (protocol {})",
                info["name"].as_str().unwrap_or("?"),
                info["version"].as_str().unwrap_or("?"),
                init["result"]["protocolVersion"].as_str().unwrap_or("?")
            );
        }
        s.close();
    }

    eprintln!("[{}] {warmup} warm-up + {calls} calls ...", spec.label);
    let mut s = spec.spawn(scratch.path(), cold_runs)?;
    s.initialize()?;
    s.initialized()?;
    let first = s.call_status()?;
    let result = &first["result"];
    if result["isError"].as_bool() == Some(true) || !result["structuredContent"].is_object() {
        bail!(
            "[{}] get_system_status did not succeed with structuredContent: {first}",
            spec.label
        );
    }
    for _ in 0..warmup {
        s.call_status()?;
    }
    let mut lat = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t0 = Instant::now();
        s.call_status()?;
        lat.push(t0.elapsed());
    }
    s.close();
    Ok(Outcome {
        label: spec.label.clone(),
        server,
        cold: stats(&cold),
        calls: stats(&lat),
    })
}

fn print_table(outcomes: &[Outcome], warmup: usize) {
    println!();
    println!("MCP stdio latency (ms; raw JSON-RPC, protocol {PROTOCOL_VERSION})");
    for o in outcomes {
        println!("  {:<12} {}", o.label, o.server);
    }
    println!();
    let w = 12;
    println!(
        "{:<w$} | {:>5} {:>8} {:>8} {:>8} | {:>5} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "server", "cold", "p50", "min", "max", "calls", "p50", "p99", "mean", "min", "max",
    );
    println!("{}", "-".repeat(w + 3 + 5 + 9 * 3 + 3 + 5 + 9 * 5));
    for o in outcomes {
        let (c, l) = (&o.cold, &o.calls);
        println!(
            "{:<w$} | {:>5} {:>8.2} {:>8.2} {:>8.2} | {:>5} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
            o.label, c.n, c.p50, c.min, c.max, l.n, l.p50, l.p99, l.mean, l.min, l.max,
        );
    }
    if let [a, b] = outcomes {
        println!();
        println!(
            "{} vs {}: cold start p50 {:.1}x faster, call p50 {:.1}x faster, call p99 {:.1}x faster",
            a.label,
            b.label,
            b.cold.p50 / a.cold.p50,
            b.calls.p50 / a.calls.p50,
            b.calls.p99 / a.calls.p99,
        );
    }
    println!(
        "(cold = spawn -> initialize response; calls = tools/call get_system_status one at a \
         time in one session, after {warmup} warm-up calls)"
    );
}

fn resolve(p: &str, base: &Path) -> PathBuf {
    let p = PathBuf::from(p);
    if p.is_absolute() { p } else { base.join(p) }
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench` (and any filter); nothing here takes arguments.
    std::thread::spawn(|| {
        std::thread::sleep(WATCHDOG);
        eprintln!("mcp_latency: gave up after {WATCHDOG:?} (a server hung?)");
        std::process::exit(1);
    });

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let cwd = std::env::current_dir()?;
    let cold_runs = env_usize("MCP_BENCH_COLD", 20).max(1);
    let warmup = env_usize("MCP_BENCH_WARMUP", 200);
    let calls = env_usize("MCP_BENCH_CALLS", 2000).max(1);

    let flotilla = match std::env::var("FLOTILLA_BIN") {
        Ok(p) if !p.is_empty() => resolve(&p, &cwd),
        _ => {
            let target = std::env::var("CARGO_TARGET_DIR")
                .map(|t| resolve(&t, &root))
                .unwrap_or_else(|_| root.join("target"));
            target.join("release").join("flotilla")
        }
    };
    if !flotilla.is_file() {
        bail!(
            "no flotilla binary at {} (build it with `cargo build --release -j1`, or set FLOTILLA_BIN)",
            flotilla.display()
        );
    }

    let mut specs = vec![ServerSpec {
        label: "flotilla".into(),
        program: flotilla,
        args: vec![
            "--mcp-stdio".into(),
            "--no-p2p".into(),
            "--data-dir".into(),
            "{data}".into(),
        ],
        env: vec![
            ("FLOTILLA_LOG".into(), "warn".into()),
            // No user config file: defaults only.
            (
                "XDG_CONFIG_HOME".into(),
                std::env::temp_dir()
                    .join("mcp-latency-no-config")
                    .to_string_lossy()
                    .into_owned(),
            ),
        ],
    }];

    let python = match std::env::var("MCP_PYTHON") {
        Ok(p) if !p.is_empty() => resolve(&p, &cwd),
        _ => root.join(".venv-test/bin/python"),
    };
    let script = root.join("benches/py_trivial_server.py");
    if python.is_file() && script.is_file() {
        specs.push(ServerSpec {
            label: "python-mcp".into(),
            program: python,
            args: vec![script.to_string_lossy().into_owned()],
            env: vec![("PYTHONDONTWRITEBYTECODE".into(), "1".into())],
        });
    } else {
        println!(
            "mcp_latency: skipping the Python SDK baseline: no python at {} (set MCP_PYTHON, or \
             run scripts/test once to make .venv-test with `mcp` installed)",
            python.display()
        );
    }

    let mut outcomes = Vec::new();
    for spec in &specs {
        match bench(spec, cold_runs, warmup, calls) {
            Ok(o) => outcomes.push(o),
            Err(e) if spec.label != "flotilla" => {
                println!("mcp_latency: skipping {}: {e:#}", spec.label);
            }
            Err(e) => return Err(e.context(format!("benchmarking {}", spec.label))),
        }
    }
    print_table(&outcomes, warmup);
    Ok(())
}
