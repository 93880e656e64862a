//! The MCP face end to end: the real binary over stdio, driven by rmcp's client, and by raw
//! bytes for what a client library would never send.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::*;
use flotilla::engine::Danger;
use flotilla::mcp::server::{TOOL_TABLE, tool_kind};
use serde_json::{Value, json};

#[tokio::test]
async fn tools_have_schemas_and_policy_annotations() {
    let d = tempfile::tempdir().unwrap();
    let c = mcp_client(d.path(), &[]).await;
    let tools = c.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), TOOL_TABLE.len());
    for t in &tools {
        let kind = tool_kind(&t.name).unwrap_or_else(|| panic!("{} not in policy table", t.name));
        let a = t.annotations.as_ref().expect("annotations");
        assert_eq!(
            a.read_only_hint,
            Some(kind.danger() == Danger::Read),
            "{}",
            t.name
        );
        assert_eq!(
            a.destructive_hint,
            Some(kind.danger() == Danger::Destructive),
            "{}",
            t.name
        );
        assert!(t.output_schema.is_some(), "{} has no outputSchema", t.name);
        assert!(t.description.as_ref().is_some_and(|d| !d.is_empty()));
    }
    c.cancel().await.unwrap();
}

#[tokio::test]
async fn submit_run_cancel_and_errors() {
    let d = tempfile::tempdir().unwrap();
    let c = mcp_client(d.path(), &["--max-concurrent-tasks", "2"]).await;
    let sub = ok(
        &c,
        "submit_p2p_workflow",
        json!({"name": "three", "priority": 10, "tag": "unit-test", "tasks": [
            {"command": ["sh", "-c", "echo one"]},
            {"command": ["echo", "two"]},
            {"command": ["sh", "-c", "exit 3"]}
        ]}),
    )
    .await;
    let wf = sub["workflow_id"].as_str().unwrap().to_string();
    assert_eq!(sub["tasks"], 3);
    let s = wait_status(&c, &wf, "failed", 30).await;
    assert_eq!(
        (
            s["total"].clone(),
            s["completed"].clone(),
            s["failed"].clone()
        ),
        (json!(3), json!(2), json!(1))
    );
    assert_eq!(s["tasks"][2]["exit_code"], 3);
    let out = ok(&c, "get_task_output", json!({"task_id": format!("{wf}.1")})).await;
    assert_eq!(out["output"], "two\n");

    // Destructive without confirm is refused and changes nothing.
    let long = ok(
        &c,
        "submit_p2p_workflow",
        json!({"name": "long", "tasks": [{"command": ["sleep", "30"]}]}),
    )
    .await["workflow_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_status(&c, &long, "running", 10).await;
    let r = call(&c, "cancel_workflow", json!({"workflow_id": long})).await;
    assert!(error_text(&r).contains("confirm=true"));
    wait_status(&c, &long, "running", 1).await;
    let rep = ok(
        &c,
        "cancel_workflow",
        json!({"workflow_id": long, "confirm": true}),
    )
    .await;
    assert_eq!(rep["killed_running"], 1);
    wait_status(&c, &long, "cancelled", 10).await;

    // Another task shape names the field; wrong types are a tool error, not a crash.
    let r = call(
        &c,
        "submit_p2p_workflow",
        json!({"name": "seed", "tasks": [{"model": "bert-base", "input": "text1"}]}),
    )
    .await;
    assert!(error_text(&r).contains("tasks[0]"));
    let r = call(&c, "submit_p2p_workflow", json!({"name": 5, "tasks": []})).await;
    assert!(error_text(&r).contains("deserialize"));
    let r = call(&c, "get_workflow_status", json!({"workflow_id": "wf-nope"})).await;
    assert!(error_text(&r).contains("not found"));

    let l = ok(&c, "list_workflows", json!({"status": "cancelled"})).await;
    assert_eq!(l["workflows"].as_array().unwrap().len(), 1);
    let h = ok(
        &c,
        "get_service_health",
        json!({"services": ["store", "scheduler"]}),
    )
    .await;
    assert_eq!(h["services"].as_array().unwrap().len(), 2);
    let logs = ok(
        &c,
        "search_logs",
        json!({"query": "workflow submitted", "time_range": "1h"}),
    )
    .await;
    assert!(logs["matched"].as_u64().unwrap() >= 2, "{logs}");
    let logs = ok(
        &c,
        "get_recent_logs",
        json!({"level": "warning", "lines": 50}),
    )
    .await;
    assert!(
        logs["records"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["level"] == "warning" || r["level"] == "error")
    );
    let hw = ok(&c, "detect_hardware", json!({})).await;
    assert!(hw["cores"].as_u64().unwrap() >= 1);
    c.cancel().await.unwrap();
}

#[tokio::test]
async fn read_only_refuses_state_changes() {
    let d = tempfile::tempdir().unwrap();
    let c = mcp_client(d.path(), &["--read-only"]).await;
    let r = call(
        &c,
        "submit_p2p_workflow",
        json!({"name": "x", "tasks": [{"command": ["true"]}]}),
    )
    .await;
    assert!(error_text(&r).contains("read-only"));
    let r = call(
        &c,
        "cancel_workflow",
        json!({"workflow_id": "wf-x", "confirm": true}),
    )
    .await;
    assert!(error_text(&r).contains("read-only"));
    let s = ok(&c, "get_system_status", json!({})).await;
    assert_eq!(s["read_only"], true);
    c.cancel().await.unwrap();
}

/// Raw JSON-RPC: malformed lines get -32700/-32600, the server keeps going, and stdout holds
/// nothing but JSON-RPC frames.
#[test]
fn malformed_input_is_answered_and_stdout_is_pure_json_rpc() {
    let d = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["--mcp-stdio", "--no-p2p", "--data-dir"])
        .arg(d.path())
        .env("FLOTILLA_LOG", "debug")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut send = |s: &str| {
        stdin.write_all(s.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    };
    let mut next = || -> Value {
        let l = lines.next().unwrap().unwrap();
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}"))
    };
    send(
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#,
    );
    assert_eq!(next()["id"], 1);
    send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    send("this is not json");
    let e = next();
    assert_eq!(e["error"]["code"], -32700, "{e}");
    assert_eq!(e["id"], Value::Null);
    send(r#"{"jsonrpc":"2.0","id":"x"}"#);
    let e = next();
    assert_eq!(
        (e["error"]["code"].clone(), e["id"].clone()),
        (json!(-32600), json!("x"))
    );
    send("[1,2,3]");
    assert_eq!(next()["error"]["code"], -32600);
    send(
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get_system_status","arguments":{}}}"#,
    );
    let r = next();
    assert_eq!(r["id"], 2);
    assert_eq!(r["result"]["structuredContent"]["health"], "ok");
    send(r#"{"jsonrpc":"2.0","id":3,"method":"no/such/method"}"#);
    let r = next();
    assert_eq!(r["id"], 3);
    assert!(r["error"]["code"].is_number(), "{r}");
    drop(stdin);
    // End of stdin ends the server cleanly, and nothing else reached stdout.
    for l in lines {
        let l = l.unwrap();
        serde_json::from_str::<Value>(&l)
            .unwrap_or_else(|e| panic!("non-JSON on stdout ({e}): {l}"));
    }
    assert!(child.wait().unwrap().success());
}

/// `classify_log` works offline, and an operator's own pattern file extends the catalogue.
#[tokio::test]
async fn classify_log_with_user_patterns() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("mine.toml");
    std::fs::write(
        &p,
        "[[pattern]]\nid = \"acme_flaky_db\"\nissue_type = \"network_error\"\nregex = 'ACME-DB-UNREACHABLE'\nseverity = \"medium\"\nauto_fixable = false\nfix_description = \"the ACME database was down\"\n",
    )
    .unwrap();
    let set = format!("orchestrator.patterns=[{:?}]", p.display().to_string());
    let c = mcp_client(d.path(), &["--set", &set]).await;
    let log = "2024-01-02T03:04:05.1234567Z starting\n2024-01-02T03:04:06.1234567Z ##[error]ACME-DB-UNREACHABLE at boot\n";
    let r = ok(&c, "classify_log", json!({"text": log})).await;
    assert_eq!(r["issues"][0]["issue_type"], "network_error", "{r}");
    assert_eq!(r["issues"][0]["line"], 2);
    assert_eq!(
        r["issues"][0]["fix_description"],
        "the ACME database was down"
    );
    let r = ok(&c, "classify_log", json!({"text": ""})).await;
    assert_eq!(r["issues"][0]["issue_type"], "unknown");
    c.cancel().await.unwrap();
}
