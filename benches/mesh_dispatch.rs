//! Mesh scheduler dispatch: a mesh of separate `flotilla --mcp-stdio` processes, one workflow
//! of many tiny tasks submitted on node 1, how fast the mesh gets through them and how long a
//! task waits between the submit and its start on a remote peer.
//!
//! ```text
//! cargo bench -j1 --bench mesh_dispatch              # 200 tasks
//! cargo bench -j1 --bench mesh_dispatch -- --quick   # 40 tasks
//! ```
//!
//! Setup, all on 127.0.0.1: `MESH_BENCH_NODES` (default 5) processes of the bench-built
//! binary, each on its own temporary data dir, `--p2p-listen /ip4/127.0.0.1/tcp/0`, no mDNS,
//! one `FLOTILLA_P2P_SECRET`, `--max-concurrent-tasks MESH_BENCH_SLOTS` (default 4); node 1
//! starts first and the others bootstrap to its first listen multiaddr. The bench waits until
//! every node is connected to every other one and has seen its heartbeats, then runs one
//! warm-up workflow (2 tasks per node), not counted.
//!
//! Workload: one `p2p-eligible` workflow of `MESH_BENCH_TASKS` tasks (default 200, 40 with
//! `--quick`) submitted on node 1; each task is `sh -c` appending
//! `$FLOTILLA_TASK_ID $(date +%s%N)` to a log file, so its start time is known to the
//! nanosecond on the shared wall clock.
//!
//! Figures (lines starting `FIGURE mesh_dispatch`):
//! - `tasks_per_s`: tasks / (submit call started .. node 1 reports the workflow completed,
//!   polled every 20 ms);
//! - `submit_call_ms`: how long the submit_p2p_workflow call itself took;
//! - `remote_start_p50_ms`, `remote_start_p99_ms`, `remote_start_max_ms`: submit call
//!   started .. the task's logged start, for tasks whose owner is not node 1; the same for
//!   node 1's own tasks (`local_start_*`) for comparison;
//! - `remote_first_start_min_ms`, `remote_first_start_max_ms`: over the remote peers, the
//!   earliest start on each (dispatch latency without the queue behind it);
//! - tasks per owner.
//!
//! The process exits with status 1 if the workflow does not complete with every task
//! succeeded within `MESH_BENCH_TIMEOUT_S` (default 300) seconds.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_flotilla");
const SECRET: &str = "mesh-dispatch-bench-secret";

type Client = RunningService<RoleClient, ()>;

fn env_u64(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn unix_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128
}

/// Call a tool that must succeed; its structured content.
async fn ok(c: &Client, tool: &str, args: Value) -> Value {
    let mut p = CallToolRequestParams::new(tool.to_string());
    if let Value::Object(m) = args {
        p = p.with_arguments(m);
    }
    let r = c.call_tool(p).await.expect("tools/call transport");
    assert_ne!(r.is_error, Some(true), "{tool} failed: {r:?}");
    r.structured_content.expect("structured content")
}

/// One node: its MCP client, peer ID and first listen multiaddr.
struct Node {
    client: Client,
    peer_id: String,
    addr: String,
}

async fn start(data_dir: &Path, bootstrap: Option<&str>, slots: u64) -> Node {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("--mcp-stdio")
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "--set",
            "p2p.enabled=true",
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-mdns",
            "--disable-autoscaler",
            "--max-concurrent-tasks",
        ])
        .arg(slots.to_string())
        .args(bootstrap.map(|b| ["--bootstrap", b]).into_iter().flatten())
        .env("FLOTILLA_LOG", "warn")
        .env("FLOTILLA_P2P_SECRET", SECRET)
        .env("XDG_CONFIG_HOME", data_dir.join("no-config"))
        .env_remove("MCP_P2P_BOOTSTRAP_PEERS")
        .env_remove("FLOTILLA_P2P_ENABLED");
    let transport = TokioChildProcess::builder(cmd)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn flotilla")
        .0;
    let client = ().serve(transport).await.expect("MCP initialize");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = ok(&client, "get_p2p_network_status", json!({})).await;
        if s["health"] != "starting"
            && s["peer_id"].is_string()
            && s["listen_addrs"].as_array().is_some_and(|a| !a.is_empty())
        {
            return Node {
                peer_id: s["peer_id"].as_str().unwrap().to_string(),
                addr: s["listen_addrs"][0].as_str().unwrap().to_string(),
                client,
            };
        }
        assert!(Instant::now() < deadline, "node never started: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every node connected to every other one, with heartbeats seen.
async fn await_mesh(nodes: &[Node]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut missing = 0;
        for n in nodes {
            let s = ok(&n.client, "get_p2p_network_status", json!({})).await;
            let peers = s["peers"].as_array().cloned().unwrap_or_default();
            missing += nodes
                .iter()
                .filter(|o| o.peer_id != n.peer_id)
                .filter(|o| {
                    !peers.iter().any(|p| {
                        p["peer_id"] == o.peer_id.as_str()
                            && p["connected"] == true
                            && !p["last_heartbeat"].is_null()
                    })
                })
                .count();
        }
        if missing == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "mesh did not form: {missing} links missing"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn tasks(n: u64, log: &Path) -> Vec<Value> {
    let line = format!(
        "echo \"$FLOTILLA_TASK_ID $(date +%s%N)\" >> '{}'",
        log.display()
    );
    (0..n)
        .map(|_| json!({"command": ["sh", "-c", line], "timeout_s": 60}))
        .collect()
}

/// Submit on node 1 and wait for the end: the final status, when the submit call started
/// (unix ns) and how long the call took.
async fn run(
    node1: &Client,
    name: &str,
    tasks: Vec<Value>,
    timeout: Duration,
) -> (Value, i128, Duration) {
    let t0 = Instant::now();
    let submit_ns = unix_ns();
    let sub = ok(
        node1,
        "submit_p2p_workflow",
        json!({"name": name, "tag": "p2p-eligible", "tasks": tasks}),
    )
    .await;
    let submit_took = t0.elapsed();
    let wf = sub["workflow_id"].as_str().unwrap().to_string();
    loop {
        let s = ok(node1, "get_workflow_status", json!({"workflow_id": wf})).await;
        if ["completed", "failed", "cancelled"].contains(&s["status"].as_str().unwrap_or("")) {
            if s["status"] != "completed" {
                eprintln!("workflow {name} ended {}: {s:#}", s["status"]);
                std::process::exit(1);
            }
            return (s, submit_ns, submit_took);
        }
        if t0.elapsed() > timeout {
            eprintln!("workflow {name} not done after {timeout:?}: {s:#}");
            std::process::exit(1);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Nearest-rank percentile of sorted milliseconds.
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // `cargo bench` passes `--bench`; `--quick` shrinks the run.
    let quick = std::env::args().any(|a| a == "--quick");
    let n_nodes = env_u64("MESH_BENCH_NODES", 5).max(2) as usize;
    let n_tasks = env_u64("MESH_BENCH_TASKS", if quick { 40 } else { 200 }).max(1);
    let slots = env_u64("MESH_BENCH_SLOTS", 4).max(1);
    let timeout = Duration::from_secs(env_u64("MESH_BENCH_TIMEOUT_S", 300));

    let root = tempfile::tempdir().unwrap();
    let t_start = Instant::now();
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..n_nodes {
        let dir = root.path().join(format!("node{}", i + 1));
        std::fs::create_dir_all(&dir).unwrap();
        let boot = nodes.first().map(|n| n.addr.clone());
        nodes.push(start(&dir, boot.as_deref(), slots).await);
    }
    await_mesh(&nodes).await;
    println!(
        "mesh of {n_nodes} processes formed in {:.2} s",
        t_start.elapsed().as_secs_f64()
    );

    let warm = root.path().join("warmup.log");
    run(
        &nodes[0].client,
        "warm-up",
        tasks(2 * n_nodes as u64, &warm),
        timeout,
    )
    .await;

    let log = root.path().join("started.log");
    let (status, submit_ns, submit_took) =
        run(&nodes[0].client, "dispatch", tasks(n_tasks, &log), timeout).await;
    let wall_s = (unix_ns() - submit_ns) as f64 / 1e9;

    let starts: BTreeMap<String, i128> = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (id, ns) = l.trim().split_once(' ')?;
            Some((id.to_string(), ns.parse().ok()?))
        })
        .collect();
    let name_of: BTreeMap<&str, String> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.peer_id.as_str(), format!("node{}", i + 1)))
        .collect();
    let mut per_owner: BTreeMap<String, usize> = BTreeMap::new();
    let (mut remote, mut local) = (Vec::new(), Vec::new());
    // Earliest start on each remote peer: dispatch latency without the queueing behind it.
    let mut first_remote: BTreeMap<String, f64> = BTreeMap::new();
    let mut unlogged = 0;
    for t in status["tasks"].as_array().expect("tasks") {
        let owner = t["owner"].as_str().unwrap_or("");
        *per_owner
            .entry(
                name_of
                    .get(owner)
                    .cloned()
                    .unwrap_or_else(|| format!("?{owner}")),
            )
            .or_default() += 1;
        let Some(start) = starts.get(t["task_id"].as_str().unwrap_or("")) else {
            unlogged += 1;
            continue;
        };
        let ms = (start - submit_ns) as f64 / 1e6;
        if owner == nodes[0].peer_id {
            local.push(ms);
        } else {
            remote.push(ms);
            let f = first_remote.entry(owner.to_string()).or_insert(ms);
            *f = f.min(ms);
        }
    }
    remote.sort_by(f64::total_cmp);
    local.sort_by(f64::total_cmp);

    println!(
        "\n== mesh_dispatch: {n_tasks} tasks on {n_nodes} nodes x {slots} slots, submitted on node1 =="
    );
    println!("tasks per owner: {per_owner:?}; tasks without a start line: {unlogged}");
    println!(
        "FIGURE mesh_dispatch nodes={n_nodes} tasks={n_tasks} wall_s={wall_s:.3} tasks_per_s={:.1}",
        n_tasks as f64 / wall_s
    );
    println!(
        "FIGURE mesh_dispatch submit_call_ms={:.1}",
        submit_took.as_secs_f64() * 1000.0
    );
    println!(
        "FIGURE mesh_dispatch remote_tasks={} remote_start_p50_ms={:.1} remote_start_p99_ms={:.1} remote_start_max_ms={:.1}",
        remote.len(),
        pct(&remote, 50.0),
        pct(&remote, 99.0),
        remote.last().copied().unwrap_or(f64::NAN)
    );
    let mut firsts: Vec<f64> = first_remote.into_values().collect();
    firsts.sort_by(f64::total_cmp);
    println!(
        "FIGURE mesh_dispatch remote_peers={} remote_first_start_min_ms={:.1} remote_first_start_max_ms={:.1}",
        firsts.len(),
        firsts.first().copied().unwrap_or(f64::NAN),
        firsts.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "FIGURE mesh_dispatch local_tasks={} local_start_p50_ms={:.1} local_start_p99_ms={:.1}",
        local.len(),
        pct(&local, 50.0),
        pct(&local, 99.0)
    );
    for n in nodes {
        n.client.cancel().await.ok();
    }
}
