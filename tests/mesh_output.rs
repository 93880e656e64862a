//! A mesh task's output stays on the peer that ran it; `get_task_output` on any other node
//! fetches it from there (request-response `sched.output`). Two `flotilla` processes on
//! 127.0.0.1: the task requires `cuda`, which only the second has.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_of_a_task_run_elsewhere_is_fetched_from_its_peer() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let base = [
        "--set",
        "p2p.enabled=true",
        "--p2p-listen",
        "/ip4/127.0.0.1/tcp/0",
        "--no-mdns",
        "--set",
        "p2p.heartbeat_timeout=4s",
    ];
    let env = [("FLOTILLA_P2P_SECRET", "output-test-mesh")];
    let a = mcp_client_env(da.path(), &base, &env).await;
    let sa = status(&a).await;
    let addr = sa["listen_addrs"][0].as_str().unwrap().to_string();
    let mut args = base.to_vec();
    args.extend(["--bootstrap", addr.as_str(), "--capabilities", "cuda"]);
    let b = mcp_client_env(db.path(), &args, &env).await;
    let sb = status(&b).await;
    let bid = sb["peer_id"].as_str().unwrap().to_string();
    // Wait until A has heard B's heartbeat (its labels).
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let s = ok(&a, "get_p2p_network_status", json!({})).await;
        let heard = s["peers"].as_array().unwrap().iter().any(|p| {
            p["peer_id"] == bid.as_str()
                && p["capabilities"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|l| l == "cuda"))
        });
        if heard {
            break;
        }
        assert!(Instant::now() < end, "no heartbeat from B: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = ok(
        &a,
        "submit_p2p_workflow",
        json!({"name": "gpu", "tag": "p2p-eligible", "tasks": [
            {"command": ["sh", "-c", "echo ran $FLOTILLA_TASK_ID"], "requires": ["cuda"]}
        ]}),
    )
    .await;
    let wf = r["workflow_id"].as_str().unwrap().to_string();
    let task = format!("{wf}.0");
    let end = Instant::now() + Duration::from_secs(20);
    let st = loop {
        let st = ok(&a, "get_workflow_status", json!({"workflow_id": wf})).await;
        if st["status"] == "completed" {
            break st;
        }
        assert!(
            st["status"] != "failed" && Instant::now() < end,
            "workflow did not complete: {st}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(st["tasks"][0]["owner"], bid.as_str(), "{st}");
    // A never ran it, yet gives its output: fetched from B.
    let out = ok(&a, "get_task_output", json!({"task_id": task})).await;
    assert_eq!(
        out["output"].as_str().unwrap().trim(),
        format!("ran {task}"),
        "{out}"
    );
    assert_eq!(out["state"], "succeeded");
    // With B gone, A says where the output is instead of returning nothing.
    b.cancel().await.unwrap();
    let r = call(&a, "get_task_output", json!({"task_id": task})).await;
    let text = error_text(&r);
    assert!(
        text.contains(&bid) && text.contains("keeps its output"),
        "{text}"
    );
    a.cancel().await.unwrap();
}
