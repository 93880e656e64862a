//! Helpers shared by integration tests: spawn the real binary, talk MCP to it.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_flotilla");

pub type Client = RunningService<RoleClient, ()>;

/// A `flotilla --mcp-stdio` child on `data_dir`, driven by rmcp's client.
pub async fn mcp_client(data_dir: &Path, extra: &[&str]) -> Client {
    mcp_client_env(data_dir, extra, &[]).await
}

/// [`mcp_client`] with extra environment variables for the child only (e.g. `GH_TOKEN`).
pub async fn mcp_client_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Client {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.envs(env.iter().copied());
    cmd.arg("--mcp-stdio")
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .env("FLOTILLA_LOG", "warn")
        .env("FLOTILLA_P2P_ENABLED", "false")
        .env("XDG_CONFIG_HOME", data_dir.join("no-config"));
    let transport = TokioChildProcess::builder(cmd)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn flotilla")
        .0;
    ().serve(transport).await.expect("MCP initialize")
}

pub async fn call(c: &Client, tool: &str, args: Value) -> CallToolResult {
    let mut p = CallToolRequestParams::new(tool.to_string());
    if let Value::Object(m) = args {
        p = p.with_arguments(m);
    }
    c.call_tool(p).await.expect("tools/call transport")
}

/// Call a tool that must succeed; returns its structured content.
pub async fn ok(c: &Client, tool: &str, args: Value) -> Value {
    let r = call(c, tool, args).await;
    assert_ne!(r.is_error, Some(true), "{tool} failed: {r:?}");
    r.structured_content.clone().expect("structured content")
}

/// Text of an error result.
pub fn error_text(r: &CallToolResult) -> String {
    assert_eq!(r.is_error, Some(true), "expected an error, got {r:?}");
    serde_json::to_string(&r.content).unwrap()
}

/// Poll get_workflow_status until `status` (or panic after `secs`).
pub async fn wait_status(c: &Client, wf: &str, status: &str, secs: u64) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let s = ok(c, "get_workflow_status", json!({"workflow_id": wf})).await;
        if s["status"] == status {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "workflow {wf} did not reach {status}: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
