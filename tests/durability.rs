//! Durable before acknowledged: restart order, re-queue of interrupted tasks, and SIGKILL in
//! the middle of a burst of submissions.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::BIN;
use flotilla::clock::SystemClock;
use flotilla::config::Config;
use flotilla::engine::logbuf::LogBuffer;
use flotilla::engine::{Command as Cmd, Engine, EngineHandle, EngineOptions, Reply, Source};
use flotilla::sched::workflow::{TaskState, WorkflowSpec};
use flotilla::store::Store;
use serde_json::{Value, json};

fn opts(dir: &std::path::Path, max: usize) -> EngineOptions {
    let mut c = Config::default();
    c.general.data_dir = dir.to_path_buf();
    c.scheduler.max_concurrent_tasks = max;
    c.scheduler.kill_grace = Duration::from_millis(200);
    // The local queue is under test: no node on the default port 9100.
    c.p2p.enabled = false;
    EngineOptions::from_config(&c)
}

async fn submit(e: &EngineHandle, name: &str, prio: i64, cmd: &[&str]) -> String {
    let spec =
        WorkflowSpec::from_parts(name, &json!([{ "command": cmd }]), Some(prio), None).unwrap();
    match e
        .execute(Cmd::SubmitWorkflow(spec), false, Source::Cli)
        .await
        .unwrap()
    {
        Reply::Submitted(s) => s.workflow_id,
        r => panic!("{r:?}"),
    }
}

fn queued_names(e: &EngineHandle) -> Vec<String> {
    e.snapshot()
        .queue
        .iter()
        .filter(|r| r.state == TaskState::Queued)
        .map(|r| r.workflow_name.clone())
        .collect()
}

#[tokio::test]
async fn queue_comes_back_in_heap_order_after_restart() {
    let d = tempfile::tempdir().unwrap();
    let (e, j) = Engine::start(
        opts(d.path(), 0),
        Arc::new(SystemClock),
        LogBuffer::default(),
    )
    .unwrap();
    for (name, p) in [("c", 300), ("a", 10), ("d", 300), ("b", 20), ("e", 999)] {
        submit(&e, name, p, &["true"]).await;
    }
    // Snapshots trail commands by up to one publish interval.
    let mut w = e.watch();
    while w.borrow_and_update().queue.len() < 5 {
        w.changed().await.unwrap();
    }
    // Raise "e" to the front through decrease-key.
    let e_task = e
        .snapshot()
        .queue
        .iter()
        .find(|r| r.workflow_name == "e")
        .unwrap()
        .task_id
        .clone();
    e.execute(
        Cmd::SetTaskPriority {
            task_id: e_task,
            priority: 5,
        },
        false,
        Source::Cli,
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = queued_names(&e);
    assert_eq!(before, ["e", "a", "b", "c", "d"]);
    e.shutdown().await;
    j.await.unwrap();

    let (e, j) = Engine::start(
        opts(d.path(), 0),
        Arc::new(SystemClock),
        LogBuffer::default(),
    )
    .unwrap();
    assert_eq!(queued_names(&e), before);
    e.shutdown().await;
    j.await.unwrap();
}

#[tokio::test]
async fn running_tasks_are_requeued_and_marked_retried() {
    let d = tempfile::tempdir().unwrap();
    let (e, j) = Engine::start(
        opts(d.path(), 1),
        Arc::new(SystemClock),
        LogBuffer::default(),
    )
    .unwrap();
    let wf = submit(&e, "long", 1, &["sleep", "30"]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(e.snapshot().node.running, 1);
    e.shutdown().await; // kills the process; the row still says running, as after a crash
    j.await.unwrap();

    let (e, j) = Engine::start(
        opts(d.path(), 0),
        Arc::new(SystemClock),
        LogBuffer::default(),
    )
    .unwrap();
    let Reply::WorkflowStatus(s) = e
        .execute(
            Cmd::GetWorkflowStatus { workflow_id: wf },
            false,
            Source::Cli,
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(s.tasks[0].state, TaskState::Queued);
    assert_eq!(s.tasks[0].retried, 1);
    assert_eq!(s.tasks[0].attempts, 1);
    e.shutdown().await;
    j.await.unwrap();
}

#[tokio::test]
async fn full_store_refuses_submission_clearly_and_engine_goes_on() {
    let d = tempfile::tempdir().unwrap();
    let mut o = opts(d.path(), 1);
    o.max_store_bytes = 256 * 1024;
    let (e, j) = Engine::start(o, Arc::new(SystemClock), LogBuffer::default()).unwrap();
    let small = submit(&e, "small", 1, &["true"]).await;
    let big: Vec<Value> = (0..5_000)
        .map(|i| json!({"command": ["echo", format!("{i:0>200}")]}))
        .collect();
    let spec = WorkflowSpec::from_parts("big", &Value::Array(big), None, None).unwrap();
    let err = e
        .execute(Cmd::SubmitWorkflow(spec), false, Source::Cli)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("free disk space"), "{err}");
    // Nothing of the refused workflow was written; earlier work is intact and runs.
    let Reply::Workflows(l) = e
        .execute(
            Cmd::ListWorkflows {
                status: None,
                tag: None,
                limit: 10,
            },
            false,
            Source::Cli,
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(l.workflows.len(), 1);
    assert_eq!(l.workflows[0].workflow_id, small);
    for _ in 0..100 {
        if e.snapshot().counts.workflows.get("completed") == Some(&1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(e.snapshot().counts.workflows.get("completed"), Some(&1));
    e.shutdown().await;
    j.await.unwrap();
}

/// Submissions are acknowledged only once committed: kill -9 mid-burst loses none of the
/// acknowledged ones.
#[test]
fn sigkill_during_burst_loses_no_acknowledged_workflow() {
    let d = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "--mcp-stdio",
            "--no-p2p",
            "--max-concurrent-tasks",
            "0",
            "--data-dir",
        ])
        .arg(d.path())
        .env("FLOTILLA_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    writeln!(stdin, r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"2025-11-25","capabilities":{{}},"clientInfo":{{"name":"burst","version":"0"}}}}}}"#).unwrap();
    lines.next().unwrap().unwrap();
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#
    )
    .unwrap();
    // Writer: a burst of 2000 submissions, pipelined.
    let writer = std::thread::spawn(move || {
        for i in 1..=2000 {
            let msg = json!({"jsonrpc":"2.0","id":i,"method":"tools/call","params":{
                "name":"submit_p2p_workflow",
                "arguments":{"name": format!("burst-{i}"), "tasks":[{"command":["true"]}]}}});
            if writeln!(stdin, "{msg}").is_err() {
                break;
            }
        }
    });
    let mut acked = Vec::new();
    for l in lines.by_ref() {
        let v: Value = serde_json::from_str(&l.unwrap()).unwrap();
        if let Some(id) = v["result"]["structuredContent"]["workflow_id"].as_str() {
            acked.push(id.to_string());
        }
        if acked.len() == 150 {
            child.kill().unwrap(); // SIGKILL
            break;
        }
    }
    let _ = child.wait();
    let _ = writer.join();
    assert_eq!(acked.len(), 150);
    let store = Store::open(&d.path().join("flotilla.db")).unwrap();
    for id in &acked {
        let w = store.workflow(id).unwrap();
        assert!(w.is_some(), "acknowledged workflow {id} lost");
        assert_eq!(store.tasks_of(id).unwrap().len(), 1);
    }
}
