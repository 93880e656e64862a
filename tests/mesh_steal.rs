//! Moving queued work between two `flotilla` processes on 127.0.0.1. Node A (one slot) gets a
//! backlog of mesh tasks before B exists, so all are placed on A; then B joins idle.
//! - With stealing on, B asks A for work and A hands off queued tasks it has not started.
//! - With stealing off, nothing moves until an operator calls `rebalance_p2p_tasks` on A.
//!
//! Either way every task runs exactly once and some run on B.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

async fn status(c: &Client) -> Value {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let s = ok(c, "get_p2p_network_status", json!({})).await;
        if s["health"] != "starting" && !s["listen_addrs"].as_array().unwrap().is_empty() {
            return s;
        }
        assert!(Instant::now() < end, "mesh never started: {s}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn task_owners(st: &Value) -> Vec<String> {
    st["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["owner"].as_str().unwrap_or("-").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_by_load_hands_queued_tasks_to_an_idle_peer() {
    let (da, db, out) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let base = [
        "--set",
        "p2p.enabled=true",
        "--p2p-listen",
        "/ip4/127.0.0.1/tcp/0",
        "--no-mdns",
        "--set",
        "p2p.heartbeat_timeout=4s",
        "--set",
        "p2p.enable_task_stealing=false",
    ];
    let env = [("FLOTILLA_P2P_SECRET", "rebalance-test-mesh")];
    let mut a_args = base.to_vec();
    a_args.extend(["--max-concurrent-tasks", "1"]);
    let a = mcp_client_env(da.path(), &a_args, &env).await;
    let sa = status(&a).await;
    let aid = sa["peer_id"].as_str().unwrap().to_string();
    let addr = sa["listen_addrs"][0].as_str().unwrap().to_string();
    let log = out.path().join("ran.log");
    let line = format!("echo \"$FLOTILLA_TASK_ID\" >> {}; sleep 1", log.display());
    let tasks: Vec<Value> = (0..6)
        .map(|_| json!({"command": ["sh", "-c", line.clone()]}))
        .collect();
    let r = ok(
        &a,
        "submit_p2p_workflow",
        json!({"name": "backlog", "tag": "p2p-eligible", "tasks": tasks}),
    )
    .await;
    let wf = r["workflow_id"].as_str().unwrap().to_string();

    let mut b_args = base.to_vec();
    b_args.extend(["--bootstrap", addr.as_str(), "--max-concurrent-tasks", "4"]);
    let b = mcp_client_env(db.path(), &b_args, &env).await;
    let bid = status(&b).await["peer_id"].as_str().unwrap().to_string();
    // A must have heard B's heartbeat (its load) before it can hand anything over.
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let s = ok(&a, "get_p2p_network_status", json!({})).await;
        if s["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["peer_id"] == bid.as_str() && p["load"].is_string())
        {
            break;
        }
        assert!(Instant::now() < end, "no heartbeat from B: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Stealing is off: B stays idle.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let st = ok(&a, "get_workflow_status", json!({"workflow_id": wf})).await;
    assert!(task_owners(&st).iter().all(|o| *o == aid), "{st}");

    let bad = call(&a, "rebalance_p2p_tasks", json!({"strategy": "fastest"})).await;
    assert!(error_text(&bad).contains("latency"), "{bad:?}");
    let moved = ok(&a, "rebalance_p2p_tasks", json!({"strategy": "load"})).await;
    assert_eq!(moved["strategy"], "load");
    let moves = moved["moved"].as_array().unwrap();
    assert!(!moves.is_empty(), "{moved}");
    assert!(
        moves
            .iter()
            .all(|m| m["from"] == aid.as_str() && m["to"] == bid.as_str()),
        "{moved}"
    );

    let end = Instant::now() + Duration::from_secs(30);
    let st = loop {
        let st = ok(&a, "get_workflow_status", json!({"workflow_id": wf})).await;
        if st["status"] == "completed" {
            break st;
        }
        assert!(
            st["status"] != "failed" && Instant::now() < end,
            "workflow did not complete: {st}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let owners = task_owners(&st);
    for m in moves {
        let idx: usize = m["task_id"]
            .as_str()
            .unwrap()
            .rsplit('.')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(owners[idx], bid, "moved task not run on B: {st}");
    }
    let ran = std::fs::read_to_string(&log).unwrap();
    let mut ids: Vec<&str> = ran.lines().collect();
    ids.sort();
    ids.dedup();
    assert_eq!((ran.lines().count(), ids.len()), (6, 6), "{ran}");
    a.cancel().await.unwrap();
    b.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_peer_takes_queued_work_from_a_full_one_and_nothing_runs_twice() {
    let (da, db, out) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let base = [
        "--set",
        "p2p.enabled=true",
        "--p2p-listen",
        "/ip4/127.0.0.1/tcp/0",
        "--no-mdns",
        "--set",
        "p2p.heartbeat_timeout=4s",
    ];
    let env = [("FLOTILLA_P2P_SECRET", "steal-test-mesh")];
    let mut a_args = base.to_vec();
    a_args.extend(["--max-concurrent-tasks", "1"]);
    let a = mcp_client_env(da.path(), &a_args, &env).await;
    let sa = status(&a).await;
    let aid = sa["peer_id"].as_str().unwrap().to_string();
    let addr = sa["listen_addrs"][0].as_str().unwrap().to_string();

    let log = out.path().join("ran.log");
    let line = format!("echo \"$FLOTILLA_TASK_ID\" >> {}; sleep 1", log.display());
    let tasks: Vec<Value> = (0..8)
        .map(|_| json!({"command": ["sh", "-c", line.clone()]}))
        .collect();
    let r = ok(
        &a,
        "submit_p2p_workflow",
        json!({"name": "backlog", "tag": "p2p-eligible", "tasks": tasks}),
    )
    .await;
    let wf = r["workflow_id"].as_str().unwrap().to_string();
    // Alone, A owns everything.
    let st = ok(&a, "get_workflow_status", json!({"workflow_id": wf})).await;
    assert!(
        st["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["owner"] == aid.as_str()),
        "{st}"
    );

    let mut b_args = base.to_vec();
    b_args.extend(["--bootstrap", addr.as_str(), "--max-concurrent-tasks", "2"]);
    let b = mcp_client_env(db.path(), &b_args, &env).await;
    let bid = status(&b).await["peer_id"].as_str().unwrap().to_string();

    let end = Instant::now() + Duration::from_secs(30);
    let st = loop {
        let st = ok(&a, "get_workflow_status", json!({"workflow_id": wf})).await;
        if st["status"] == "completed" {
            break st;
        }
        assert!(
            st["status"] != "failed" && Instant::now() < end,
            "workflow did not complete: {st}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let owners: Vec<&str> = st["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["owner"].as_str().unwrap())
        .collect();
    let on_b = owners.iter().filter(|o| **o == bid.as_str()).count();
    assert!(on_b >= 2, "B stole nothing: {owners:?}");
    assert!(
        owners
            .iter()
            .all(|o| *o == aid.as_str() || *o == bid.as_str())
    );
    // Stealing is a hand-off of queued tasks: no task started twice.
    let ran = std::fs::read_to_string(&log).unwrap();
    let mut ids: Vec<&str> = ran.lines().collect();
    ids.sort();
    let n = ids.len();
    ids.dedup();
    assert_eq!((n, ids.len()), (8, 8), "{ran}");
    // B's view converges to the same result (the last completion may still be in flight).
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let sb = ok(&b, "get_workflow_status", json!({"workflow_id": wf})).await;
        if sb["status"] == "completed" {
            break;
        }
        assert!(
            Instant::now() < end,
            "B never saw the workflow complete: {sb}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.cancel().await.unwrap();
    b.cancel().await.unwrap();
}
