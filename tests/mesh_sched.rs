//! The mesh scheduler across separate `flotilla --mcp-stdio` processes on 127.0.0.1 (mDNS
//! off, OS-chosen ports, node 1 first and the others bootstrapping to its first listen
//! multiaddr, one `FLOTILLA_P2P_SECRET`, `p2p.heartbeat_timeout=4s`):
//!
//! - placement by `requires`: only the `cuda` node runs the `cuda` tasks, every task runs
//!   once, and all nodes agree on every task's state and owner;
//! - a node SIGKILLed while it runs tasks: the survivors re-place its tasks after the
//!   heartbeat timeout and every task ends `succeeded`, owned by a survivor;
//! - a node with another mesh secret cannot join (no connection either way) and runs its
//!   workflows alone;
//! - a partition made with `ban_peer` on both sides: each side completes its own workflow;
//!   after `unban_peer` both sides see both workflows and their clock hashes agree;
//! - a node stopped while a workflow finishes elsewhere catches up after a restart on the
//!   same data dir.
//!
//! Tasks are `sh -c` lines that append `<$FLOTILLA_TASK_ID> <$PPID> start` and, after a short
//! sleep, `... end` to a `ran.log` shared by the test's nodes (short `>>` appends are atomic):
//! the evidence of how often, and on which engine process, each task ran.
//! The tests take a lock and run one at a time: 2 cores running up to 5 debug engines plus
//! their tasks must not starve the heartbeats. Every wait polls with a deadline; a timeout
//! panics with each node's network status, the workflows' status on each node and the tail
//! of each node's stderr (`MESH_SCHED_KEEP=1` keeps the tempdirs for a closer look).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{BIN, Client, call, ok};
use rmcp::ServiceExt;
use rmcp::transport::TokioChildProcess;
use serde_json::{Value, json};

const SECRET: &str = "mesh-sched-test-secret-a";
const OTHER_SECRET: &str = "mesh-sched-test-secret-b";
/// A peer silent this long loses its tasks; heartbeats go out every second.
const HEARTBEAT_TIMEOUT_S: u64 = 4;

/// One test at a time (see the module doc).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One `flotilla` process of a mesh, with what it takes to restart it.
struct Node {
    name: String,
    data_dir: PathBuf,
    stderr_log: PathBuf,
    secret: String,
    args: Vec<String>,
    client: Option<Client>,
    pid: u32,
    peer_id: String,
    addr: String,
}

impl Node {
    fn c(&self) -> &Client {
        self.client
            .as_ref()
            .unwrap_or_else(|| panic!("{} is not running", self.name))
    }

    async fn spawn(&mut self) {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.arg("--mcp-stdio")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.args)
            .env("FLOTILLA_LOG", "warn,flotilla::engine::meshsched=info")
            .env("FLOTILLA_P2P_SECRET", &self.secret)
            .env("XDG_CONFIG_HOME", self.data_dir.join("no-config"))
            .env_remove("MCP_P2P_BOOTSTRAP_PEERS")
            .env_remove("FLOTILLA_P2P_ENABLED");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_log)
            .expect("open stderr log");
        let transport = TokioChildProcess::builder(cmd)
            .stderr(stderr)
            .spawn()
            .expect("spawn flotilla")
            .0;
        self.pid = transport.id().expect("child pid");
        self.client = Some(().serve(transport).await.expect("MCP initialize"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = ok(self.c(), "get_p2p_network_status", json!({})).await;
            let addrs = s["listen_addrs"].as_array().map_or(0, Vec::len);
            if s["health"] != "starting" && addrs > 0 && s["peer_id"].is_string() {
                self.peer_id = s["peer_id"].as_str().unwrap().to_string();
                self.addr = s["listen_addrs"][0].as_str().unwrap().to_string();
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} never started its mesh node: {s:#}\nstderr:\n{}",
                self.name,
                tail(&self.stderr_log)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Close stdin and wait for the process to exit (rmcp's graceful shutdown).
    async fn stop(&mut self) {
        if let Some(c) = self.client.take() {
            c.cancel().await.expect("stop node");
        }
    }

    /// SIGKILL the process: no goodbye to its peers.
    fn kill(&mut self) {
        // SAFETY: plain kill(2) on the pid of a child we spawned and have not reaped.
        let rc = unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
        assert_eq!(rc, 0, "kill -9 {}", self.pid);
        // Dropping the transport reaps the child.
        drop(self.client.take());
    }
}

/// Last lines of a node's stderr, for failure messages.
fn tail(p: &Path) -> String {
    let s = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// The nodes of one test, their data dirs and the shared task log under one tempdir.
struct Mesh {
    root: tempfile::TempDir,
    nodes: Vec<Node>,
}

impl Mesh {
    /// With `MESH_SCHED_KEEP=1` the tempdir (data dirs, stderr logs, ran.log) is kept and
    /// its path printed, for a look after a failure.
    fn new() -> Self {
        let mut root = tempfile::tempdir().unwrap();
        if std::env::var_os("MESH_SCHED_KEEP").is_some_and(|v| v == "1") {
            root.disable_cleanup(true);
            eprintln!("keeping {}", root.path().display());
        }
        Self {
            root,
            nodes: Vec::new(),
        }
    }

    fn ran_log(&self) -> PathBuf {
        self.root.path().join("ran.log")
    }

    /// Start node `nodes.len() + 1`; all but the first bootstrap to node 1.
    async fn add(&mut self, secret: &str, extra: &[&str]) -> usize {
        let i = self.nodes.len();
        let name = format!("node{}", i + 1);
        let data_dir = self.root.path().join(&name);
        std::fs::create_dir_all(&data_dir).unwrap();
        let mut args: Vec<String> = [
            "--set",
            "p2p.enabled=true",
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-mdns",
            "--disable-autoscaler",
            "--set",
            &format!("p2p.heartbeat_timeout={HEARTBEAT_TIMEOUT_S}s"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(first) = self.nodes.first() {
            args.extend(["--bootstrap".to_string(), first.addr.clone()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut node = Node {
            stderr_log: self.root.path().join(format!("{name}.stderr")),
            name,
            data_dir,
            secret: secret.to_string(),
            args,
            client: None,
            pid: 0,
            peer_id: String::new(),
            addr: String::new(),
        };
        node.spawn().await;
        self.nodes.push(node);
        i
    }

    fn peer(&self, i: usize) -> &str {
        &self.nodes[i].peer_id
    }

    /// Which node a process ID belongs to, for messages.
    fn who_pid(&self, pid: u32) -> String {
        self.nodes
            .iter()
            .find(|n| n.pid == pid)
            .map_or_else(|| format!("?pid{pid}"), |n| n.name.clone())
    }

    /// Which node a peer ID belongs to, for messages.
    fn who(&self, peer_id: &str) -> String {
        self.nodes
            .iter()
            .find(|n| n.peer_id == peer_id)
            .map_or_else(|| format!("?{peer_id}"), |n| n.name.clone())
    }

    /// Everything the nodes that run can say about themselves and these workflows.
    async fn dump(&self, wfs: &[&str]) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            out.push_str(&format!("\n===== {} (peer {}) =====\n", n.name, n.peer_id));
            if let Some(c) = &n.client {
                let r = call(c, "get_p2p_network_status", json!({})).await;
                out.push_str(&format!(
                    "get_p2p_network_status: {}\n",
                    r.structured_content
                        .map_or_else(|| format!("{:?}", r.content), |v| v.to_string())
                ));
                for wf in wfs {
                    let s = match wf_status(c, wf).await {
                        Ok(v) => v.to_string(),
                        Err(e) => format!("error: {e}"),
                    };
                    out.push_str(&format!("get_workflow_status {wf}: {s}\n"));
                }
            } else {
                out.push_str("(not running)\n");
            }
            out.push_str(&format!("stderr tail:\n{}\n", tail(&n.stderr_log)));
        }
        out
    }

    /// Running nodes in `group`, each connected to every other one with heartbeats seen.
    async fn await_mesh(&self, group: &[usize], secs: u64) {
        let dl = Deadline::new(secs, "the mesh to form (connected peers, heartbeats seen)");
        loop {
            let mut missing = Vec::new();
            for &i in group {
                let s = ok(self.nodes[i].c(), "get_p2p_network_status", json!({})).await;
                for &j in group.iter().filter(|&&j| j != i) {
                    let seen = peers(&s).into_iter().any(|p| {
                        p["peer_id"] == self.peer(j)
                            && p["connected"] == true
                            && !p["last_heartbeat"].is_null()
                    });
                    if !seen {
                        missing.push(format!("{} -> {}", self.nodes[i].name, self.nodes[j].name));
                    }
                }
            }
            if missing.is_empty() {
                return;
            }
            dl.tick(self, &[], &format!("missing {missing:?}")).await;
        }
    }

    /// Submit a workflow on node `i`; returns its id.
    async fn submit(&self, i: usize, name: &str, tasks: Vec<Value>) -> String {
        let n = tasks.len();
        let sub = ok(
            self.nodes[i].c(),
            "submit_p2p_workflow",
            json!({"name": name, "tag": "p2p-eligible", "tasks": tasks}),
        )
        .await;
        assert_eq!(sub["tasks"], n, "{sub}");
        sub["workflow_id"].as_str().unwrap().to_string()
    }

    /// Poll node `i` until it reports workflow `wf` in `status`.
    async fn await_status(&self, i: usize, wf: &str, status: &str, secs: u64) -> Value {
        let dl = Deadline::new(
            secs,
            &format!("{wf} to be {status} on {}", self.nodes[i].name),
        );
        loop {
            let last = wf_status(self.nodes[i].c(), wf).await;
            if let Ok(s) = &last
                && s["status"] == status
            {
                return s.clone();
            }
            dl.tick(self, &[wf], &format!("last: {last:?}")).await;
        }
    }

    /// Poll the nodes in `group` until each reports `wf` completed with the same
    /// `(task_id, state, owner)` for every task; returns that common view.
    async fn await_agreement(&self, group: &[usize], wf: &str, secs: u64) -> TaskView {
        let names: Vec<&str> = group.iter().map(|&i| self.nodes[i].name.as_str()).collect();
        let dl = Deadline::new(secs, &format!("{names:?} to agree that {wf} completed"));
        loop {
            let mut views = Vec::new();
            for &i in group {
                views.push(match wf_status(self.nodes[i].c(), wf).await {
                    Ok(s) if s["status"] == "completed" => Some(task_view(&s)),
                    _ => None,
                });
            }
            if views.iter().all(Option::is_some) && views.windows(2).all(|w| w[0] == w[1]) {
                return views.pop().flatten().unwrap();
            }
            dl.tick(self, &[wf], "").await;
        }
    }
}

/// A deadline for a polling loop; [`Deadline::tick`] sleeps or panics with a dump.
struct Deadline {
    until: Instant,
    what: String,
}

impl Deadline {
    fn new(secs: u64, what: &str) -> Self {
        Self {
            until: Instant::now() + Duration::from_secs(secs),
            what: what.to_string(),
        }
    }

    async fn tick(&self, mesh: &Mesh, wfs: &[&str], last: &str) {
        if Instant::now() >= self.until {
            panic!(
                "timed out waiting for {} {last}\n{}",
                self.what,
                mesh.dump(wfs).await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn peers(status: &Value) -> Vec<Value> {
    status["peers"].as_array().cloned().unwrap_or_default()
}

/// get_workflow_status, or the tool error's text (e.g. a workflow this node never heard of).
async fn wf_status(c: &Client, wf: &str) -> Result<Value, String> {
    let r = call(c, "get_workflow_status", json!({"workflow_id": wf})).await;
    if r.is_error == Some(true) {
        return Err(serde_json::to_string(&r.content).unwrap());
    }
    r.structured_content
        .ok_or_else(|| "no structured content".to_string())
}

/// `(task_id, state, owner)` per task, in index order.
type TaskView = Vec<(String, String, String)>;

fn task_view(status: &Value) -> TaskView {
    status["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| {
            (
                t["task_id"].as_str().unwrap_or_default().to_string(),
                t["state"].as_str().unwrap_or_default().to_string(),
                t["owner"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// A task that appends `<task id> <engine pid> start` to `log`, sleeps `sleep_s`, then
/// appends `<task id> <engine pid> end`. `$PPID` is the engine that spawned the task.
fn task(log: &Path, sleep_s: f64, requires: &[&str]) -> Value {
    let log = log.display();
    let line = format!(
        "echo \"$FLOTILLA_TASK_ID $PPID start\" >> '{log}'; sleep {sleep_s}; echo \"$FLOTILLA_TASK_ID $PPID end\" >> '{log}'"
    );
    json!({"command": ["sh", "-c", line], "timeout_s": 60, "requires": requires})
}

/// Executions in `log`: per task id, `(engine pid, finished)` for each start, in order.
fn runs(log: &Path) -> BTreeMap<String, Vec<(u32, bool)>> {
    let mut m: BTreeMap<String, Vec<(u32, bool)>> = BTreeMap::new();
    for l in std::fs::read_to_string(log).unwrap_or_default().lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let [id, pid, kind] = f[..] else {
            panic!("bad line in the task log: {l:?}");
        };
        let pid: u32 = pid.parse().expect("pid");
        let v = m.entry(id.to_string()).or_default();
        match kind {
            "start" => v.push((pid, false)),
            _ => match v.iter_mut().find(|(p, done)| *p == pid && !done) {
                Some(r) => r.1 = true,
                None => panic!("end without a start: {l:?}"),
            },
        }
    }
    m
}

/// How many executions of each task ran to the end.
fn ran(log: &Path) -> BTreeMap<String, usize> {
    runs(log)
        .into_iter()
        .map(|(id, v)| (id, v.iter().filter(|(_, done)| *done).count()))
        .collect()
}

/// Every task of `view` started exactly once, ran to the end, and on the node the status
/// names as its owner.
fn assert_ran_once_on_owner(mesh: &Mesh, log: &Path, view: &TaskView) {
    let runs = runs(log);
    for (task_id, _, owner) in view {
        let v = runs.get(task_id).cloned().unwrap_or_default();
        let [(pid, true)] = v[..] else {
            panic!("{task_id} should have run once, to the end: {runs:?}");
        };
        assert_eq!(
            mesh.who_pid(pid),
            mesh.who(owner),
            "{task_id} ran on another node than its owner"
        );
    }
    assert_eq!(
        runs.len(),
        view.len(),
        "tasks of other workflows ran: {runs:?}"
    );
}

/// `(peer id -> node name)` counts of a task view, for messages.
fn by_owner(mesh: &Mesh, view: &TaskView) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for (_, _, o) in view {
        *m.entry(mesh.who(o)).or_insert(0) += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuda_tasks_go_to_the_cuda_node_and_all_nodes_agree() {
    let _serial = SERIAL.lock().await;
    let t0 = Instant::now();
    let mut mesh = Mesh::new();
    mesh.add(SECRET, &["--max-concurrent-tasks", "2"]).await;
    mesh.add(SECRET, &["--max-concurrent-tasks", "2"]).await;
    mesh.add(
        SECRET,
        &["--max-concurrent-tasks", "2", "--capabilities", "cuda"],
    )
    .await;
    mesh.await_mesh(&[0, 1, 2], 30).await;
    // Node 1 must know node 3 offers cuda before it places the cuda tasks.
    {
        let dl = Deadline::new(10, "node1 to see node3's cuda capability");
        loop {
            let s = ok(mesh.nodes[0].c(), "get_p2p_network_status", json!({})).await;
            let cuda = peers(&s).into_iter().any(|p| {
                p["peer_id"] == mesh.peer(2)
                    && p["capabilities"]
                        .as_array()
                        .is_some_and(|c| c.iter().any(|l| l == "cuda"))
            });
            if cuda {
                break;
            }
            dl.tick(&mesh, &[], "").await;
        }
    }

    let log = mesh.ran_log();
    let cuda_idx = [1usize, 4];
    let tasks: Vec<Value> = (0..6)
        .map(|i| {
            if cuda_idx.contains(&i) {
                task(&log, 0.3, &["cuda"])
            } else {
                task(&log, 0.3, &[])
            }
        })
        .collect();
    let wf = mesh.submit(0, "cuda-mix", tasks).await;
    mesh.await_status(0, &wf, "completed", 30).await;
    let view = mesh.await_agreement(&[0, 1, 2], &wf, 20).await;

    let ids: BTreeSet<&str> = mesh.nodes.iter().map(|n| n.peer_id.as_str()).collect();
    for (i, (task_id, state, owner)) in view.iter().enumerate() {
        assert_eq!(state, "succeeded", "{task_id}: {view:?}");
        assert!(ids.contains(owner.as_str()), "{task_id} owner {owner}");
        if cuda_idx.contains(&i) {
            assert_eq!(
                owner,
                mesh.peer(2),
                "cuda task {task_id} ran on {}",
                mesh.who(owner)
            );
        }
    }
    assert_ran_once_on_owner(&mesh, &log, &view);
    eprintln!(
        "cuda placement: owners {:?}, {:.1} s",
        by_owner(&mesh, &view),
        t0.elapsed().as_secs_f64()
    );
    for n in &mut mesh.nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_node_loses_its_tasks_to_the_survivors() {
    let _serial = SERIAL.lock().await;
    let t0 = Instant::now();
    let mut mesh = Mesh::new();
    for _ in 0..5 {
        mesh.add(SECRET, &["--max-concurrent-tasks", "2"]).await;
    }
    mesh.await_mesh(&[0, 1, 2, 3, 4], 40).await;
    let log = mesh.ran_log();
    let n = 20;
    let wf = mesh
        .submit(
            0,
            "kill-one",
            (0..n).map(|_| task(&log, 2.5, &[])).collect(),
        )
        .await;

    // Node 1 sees node 4 running some of them.
    let n4 = mesh.peer(3).to_string();
    let before_kill = {
        let dl = Deadline::new(20, "node1 to see tasks running on node4");
        loop {
            if let Ok(s) = wf_status(mesh.nodes[0].c(), &wf).await {
                let v = task_view(&s);
                if v.iter().any(|(_, st, o)| st == "running" && *o == n4) {
                    break v;
                }
            }
            dl.tick(&mesh, &[&wf], "").await;
        }
    };
    mesh.nodes[3].kill();
    let killed_at = Instant::now();
    // Tasks node 4 had already finished, as node 1 saw just before the kill, may keep it as
    // owner; no other may.
    let done_by_4: BTreeSet<String> = before_kill
        .iter()
        .filter(|(_, st, o)| st == "succeeded" && *o == n4)
        .map(|(t, _, _)| t.clone())
        .collect();

    let survivors = [0, 1, 2, 4];
    let view = mesh
        .await_agreement(&survivors, &wf, HEARTBEAT_TIMEOUT_S + 40)
        .await;
    let recovered_in = killed_at.elapsed();
    assert_eq!(view.len(), n, "{view:?}");
    let ids: BTreeSet<&str> = view.iter().map(|(t, _, _)| t.as_str()).collect();
    assert_eq!(ids.len(), n, "a task listed twice: {view:?}");
    for (task_id, state, owner) in &view {
        assert_eq!(state, "succeeded", "{task_id}: {view:?}");
        assert!(
            *owner != n4 || done_by_4.contains(task_id),
            "{task_id} still owned by the killed node4: {view:?}"
        );
    }
    // At-least-once: a task node 4 was running may have run twice.
    let runs = runs(&log);
    let ran = ran(&log);
    for (task_id, _, _) in &view {
        assert!(
            ran.get(task_id) >= Some(&1),
            "{task_id} never finished: {runs:?}"
        );
    }
    let pid4 = mesh.nodes[3].pid;
    let reran: Vec<String> = runs
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(t, v)| {
            let on: Vec<String> = v
                .iter()
                .map(|(pid, done)| {
                    format!("{}{}", mesh.who_pid(*pid), if *done { "" } else { "(cut)" })
                })
                .collect();
            let why = if v.iter().any(|(pid, _)| *pid == pid4) {
                "node4 had started it"
            } else {
                "never started on node4: an extra run"
            };
            format!("{t} on {on:?} ({why})")
        })
        .collect();
    let mut dropped = Vec::new();
    for &i in &survivors {
        let s = ok(mesh.nodes[i].c(), "get_p2p_network_status", json!({})).await;
        assert!(
            s["duplicates_dropped"].is_u64(),
            "duplicates_dropped on {}: {s}",
            mesh.nodes[i].name
        );
        assert!(
            !peers(&s)
                .iter()
                .any(|p| p["peer_id"] == n4.as_str() && p["connected"] == true),
            "{} still lists node4 connected: {s}",
            mesh.nodes[i].name
        );
        dropped.push(s["duplicates_dropped"].as_u64().unwrap());
    }
    eprintln!(
        "sigkill: before kill {:?}; final owners {:?}; started more than once {reran:#?}; duplicates_dropped {dropped:?}; all succeeded {:.1} s after the kill, {:.1} s in all",
        by_owner(&mesh, &before_kill),
        by_owner(&mesh, &view),
        recovered_in.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    for n in &mut mesh.nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_with_another_secret_cannot_join_and_runs_alone() {
    let _serial = SERIAL.lock().await;
    let t0 = Instant::now();
    let mut mesh = Mesh::new();
    mesh.add(SECRET, &[]).await;
    mesh.add(SECRET, &[]).await;
    mesh.await_mesh(&[0, 1], 30).await;
    mesh.add(OTHER_SECRET, &[]).await;
    let n3 = mesh.peer(2).to_string();

    // A few seconds of bootstrap attempts: never connected, on either side.
    let watch_until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < watch_until {
        let s3 = ok(mesh.nodes[2].c(), "get_p2p_network_status", json!({})).await;
        let s1 = ok(mesh.nodes[0].c(), "get_p2p_network_status", json!({})).await;
        assert_eq!(s3["peer_count"], 0, "node3 (other secret) got peers: {s3}");
        assert_eq!(s1["peer_count"], 1, "node1 should see only node2: {s1}");
        assert!(
            !peers(&s1)
                .iter()
                .any(|p| p["peer_id"] == n3.as_str() && p["connected"] == true),
            "node1 lists node3 as connected: {s1}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let log = mesh.ran_log();
    let wf = mesh
        .submit(2, "alone", (0..3).map(|_| task(&log, 0.1, &[])).collect())
        .await;
    let s = mesh.await_status(2, &wf, "completed", 20).await;
    let view = task_view(&s);
    for (task_id, state, owner) in &view {
        assert_eq!(state, "succeeded", "{s}");
        assert_eq!(*owner, n3, "{task_id} ran on {}: {s}", mesh.who(owner));
    }
    assert_ran_once_on_owner(&mesh, &log, &view);
    for i in [0, 1] {
        let r = wf_status(mesh.nodes[i].c(), &wf).await;
        assert!(
            r.is_err(),
            "{} knows node3's private workflow: {r:?}",
            mesh.nodes[i].name
        );
    }
    eprintln!("other secret: {:.1} s", t0.elapsed().as_secs_f64());
    for n in &mut mesh.nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_by_ban_heals_after_unban() {
    let _serial = SERIAL.lock().await;
    let t0 = Instant::now();
    let mut mesh = Mesh::new();
    for _ in 0..3 {
        mesh.add(SECRET, &[]).await;
    }
    mesh.await_mesh(&[0, 1, 2], 30).await;
    let (n1, n2, n3) = (
        mesh.peer(0).to_string(),
        mesh.peer(1).to_string(),
        mesh.peer(2).to_string(),
    );

    // Cut node 3 off: a ban is local, so both ends ban.
    for (i, other) in [(0, &n3), (1, &n3), (2, &n1), (2, &n2)] {
        ok(
            mesh.nodes[i].c(),
            "ban_peer",
            json!({"peer_id": other, "confirm": true}),
        )
        .await;
    }
    {
        let dl = Deadline::new(15, "the partition {node1,node2} | {node3}");
        loop {
            let mut counts = Vec::new();
            for n in &mesh.nodes {
                let s = ok(n.c(), "get_p2p_network_status", json!({})).await;
                counts.push(s["peer_count"].as_u64().unwrap_or(99));
            }
            if counts == [1, 1, 0] {
                break;
            }
            dl.tick(&mesh, &[], &format!("peer counts {counts:?}"))
                .await;
        }
    }

    let log = mesh.ran_log();
    let wf_a = mesh
        .submit(0, "side-a", (0..3).map(|_| task(&log, 0.2, &[])).collect())
        .await;
    let wf_b = mesh
        .submit(2, "side-b", (0..3).map(|_| task(&log, 0.2, &[])).collect())
        .await;
    // Generous: a scheduler may place on node 3 until its heartbeats are overdue.
    let sa = mesh
        .await_status(0, &wf_a, "completed", HEARTBEAT_TIMEOUT_S + 25)
        .await;
    let sb = mesh.await_status(2, &wf_b, "completed", 20).await;
    for (task_id, state, owner) in task_view(&sa) {
        assert_eq!(state, "succeeded", "{sa}");
        assert!(
            owner == n1 || owner == n2,
            "{task_id} of side A ran on {}",
            mesh.who(&owner)
        );
    }
    for (task_id, state, owner) in task_view(&sb) {
        assert_eq!(state, "succeeded", "{sb}");
        assert_eq!(owner, n3, "{task_id} of side B ran on {}", mesh.who(&owner));
    }
    let cross = [
        (2, &wf_a, "node3 knows side A's workflow"),
        (0, &wf_b, "node1 knows side B's workflow"),
    ];
    for (i, wf, msg) in cross {
        let r = wf_status(mesh.nodes[i].c(), wf).await;
        assert!(r.is_err(), "{msg} during the partition: {r:?}");
    }

    // Heal.
    let healed_at = Instant::now();
    for (i, other) in [(0, &n3), (1, &n3), (2, &n1), (2, &n2)] {
        ok(mesh.nodes[i].c(), "unban_peer", json!({"peer_id": other})).await;
    }
    mesh.await_mesh(&[0, 1, 2], 30).await;
    let va = mesh.await_agreement(&[0, 1, 2], &wf_a, 20).await;
    let vb = mesh.await_agreement(&[0, 1, 2], &wf_b, 20).await;
    assert_eq!(va, task_view(&sa));
    assert_eq!(vb, task_view(&sb));
    let hashes = {
        let dl = Deadline::new(20, "equal clock hashes on the three nodes");
        loop {
            let mut hashes = Vec::new();
            for n in &mesh.nodes {
                let s = ok(n.c(), "get_p2p_network_status", json!({})).await;
                hashes.push(s["clock"]["hash"].clone());
            }
            if hashes[0].is_string() && hashes.windows(2).all(|w| w[0] == w[1]) {
                break hashes;
            }
            dl.tick(&mesh, &[&wf_a, &wf_b], &format!("hashes {hashes:?}"))
                .await;
        }
    };
    let both: TaskView = va.iter().chain(&vb).cloned().collect();
    assert_ran_once_on_owner(&mesh, &log, &both);
    eprintln!(
        "partition: healed in {:.1} s (clock {}), {:.1} s in all",
        healed_at.elapsed().as_secs_f64(),
        hashes[0],
        t0.elapsed().as_secs_f64()
    );
    for n in &mut mesh.nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_catches_up_on_a_workflow_finished_while_it_was_down() {
    let _serial = SERIAL.lock().await;
    let t0 = Instant::now();
    let mut mesh = Mesh::new();
    // Only nodes 1 and 2 can run the tasks: node 3 just watches.
    mesh.add(SECRET, &["--capabilities", "build"]).await;
    mesh.add(SECRET, &["--capabilities", "build"]).await;
    mesh.add(SECRET, &[]).await;
    mesh.await_mesh(&[0, 1, 2], 30).await;
    let n3 = mesh.peer(2).to_string();

    let log = mesh.ran_log();
    let wf = mesh
        .submit(
            0,
            "while-away",
            (0..4).map(|_| task(&log, 2.0, &["build"])).collect(),
        )
        .await;
    // Node 3 has heard of it, then stops before it finishes.
    let seen = {
        let dl = Deadline::new(10, "node3 to hear of the workflow");
        loop {
            if let Ok(s) = wf_status(mesh.nodes[2].c(), &wf).await {
                break s;
            }
            dl.tick(&mesh, &[&wf], "").await;
        }
    };
    mesh.nodes[2].stop().await;
    assert_ne!(
        seen["status"], "completed",
        "node3 saw the end before it stopped; the test proves nothing: {seen}"
    );

    let done = mesh.await_status(0, &wf, "completed", 30).await;
    let final_view = task_view(&done);
    for (task_id, state, owner) in &final_view {
        assert_eq!(state, "succeeded", "{done}");
        assert_ne!(*owner, n3, "{task_id} ran on node3 without the build label");
    }

    let restarted_at = Instant::now();
    mesh.nodes[2].spawn().await;
    assert_eq!(
        mesh.peer(2),
        n3,
        "node3's identity changed over the restart"
    );
    let caught_up = mesh.await_agreement(&[0, 1, 2], &wf, 30).await;
    assert_eq!(caught_up, final_view);
    assert_ran_once_on_owner(&mesh, &log, &final_view);
    eprintln!(
        "restart: node3 saw {} before stopping, caught up {:.1} s after restarting, {:.1} s in all",
        seen["status"],
        restarted_at.elapsed().as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    for n in &mut mesh.nodes {
        n.stop().await;
    }
}
