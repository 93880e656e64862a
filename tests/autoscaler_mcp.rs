//! The autoscaler through the binary's MCP face: `flotilla --mcp-stdio` with the seed's
//! `--autoscaler-*` flags, a fake GitHub on 127.0.0.1 and a `local` provider from the config
//! file. Agents provision, list, drain and remove runners and read the status; nothing they
//! see holds the token or a JIT config.

mod common;
#[path = "common/gh_fake.rs"]
mod gh_fake;

use std::time::Duration;

use common::{Client, call, error_text, ok};
use gh_fake::FakeGithub;
use rmcp::ServiceExt;
use rmcp::transport::TokioChildProcess;
use serde_json::{Value, json};

const TOKEN: &str = "fake-mcp-autoscaler-token-0123456789";

async fn spawn(dir: &std::path::Path, api: &str, extra: &[&str]) -> Client {
    let script = dir.join("runner.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n# waits like an idle runner until stopped\nwhile true; do sleep 0.1; done\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[autoscaler]
max_runners = 3
idle_grace = "10m"

[[autoscaler.providers]]
name = "local-linux"
kind = "local"
labels = ["self-hosted", "linux", "x64"]
command = ["{}"]
stop_grace_secs = 1
"#,
            script.display()
        ),
    )
    .unwrap();
    let mut cmd = tokio::process::Command::new(common::BIN);
    cmd.arg("--mcp-stdio")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--config")
        .arg(&cfg)
        .arg("--github-api-url")
        .arg(api)
        .args(["--autoscaler-owner", "acme", "--autoscaler-interval", "1"])
        .args(extra)
        .env("GH_TOKEN", TOKEN)
        .env_remove("GITHUB_TOKEN")
        .env("FLOTILLA_LOG", "info")
        .env("FLOTILLA_P2P_ENABLED", "false")
        .env("XDG_CONFIG_HOME", dir.join("no-config"));
    let transport = TokioChildProcess::builder(cmd)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn flotilla")
        .0;
    ().serve(transport).await.expect("MCP initialize")
}

async fn wait_for<F: Fn(&Value) -> bool>(c: &Client, tool: &str, args: Value, f: F) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = call(c, tool, args.clone()).await;
        if r.is_error != Some(true)
            && let Some(v) = r.structured_content.clone()
            && f(&v)
        {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "{tool}: {r:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn agents_manage_runners_over_mcp() {
    let (gh, _server) = FakeGithub::start("acme", &["acme/app"]).await;
    let dir = tempfile::tempdir().unwrap();
    let c = spawn(dir.path(), &gh.uri, &[]).await;
    let mut seen = String::new();

    // The autoscaler starts with the GitHub layer and checks every second.
    let st = wait_for(&c, "get_autoscaler_status", json!({}), |v| {
        v["enabled"] == true && v["checks"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    assert_eq!(st["owner"], "acme");
    assert_eq!(st["max_runners"], 3);
    assert_eq!(st["providers"][0]["name"], "local-linux");
    seen.push_str(&st.to_string());

    // Over the max is refused with a clear reason.
    let r = call(
        &c,
        "gh_provision_runner",
        json!({"repo": "acme/app", "count": 4}),
    )
    .await;
    assert!(error_text(&r).contains("max of 3"), "{r:?}");
    // No provider offers a GPU.
    let r = call(
        &c,
        "gh_provision_runner",
        json!({"repo": "acme/app", "labels": ["self-hosted", "gpu"]}),
    )
    .await;
    assert!(error_text(&r).contains("no provider offers"), "{r:?}");

    let made = ok(
        &c,
        "gh_provision_runner",
        json!({"repo": "acme/app", "count": 2}),
    )
    .await;
    seen.push_str(&made.to_string());
    let runners = made["runners"].as_array().unwrap();
    assert_eq!(runners.len(), 2);
    for r in runners {
        assert_eq!(r["provider"], "local-linux");
        assert_eq!(r["scope"], "org:acme");
        assert_eq!(r["state"], "provisioning");
        let name = r["name"].as_str().unwrap();
        assert!(
            name.starts_with("flotilla-") && name.contains("-local-linux-"),
            "{name}"
        );
    }
    assert_eq!(
        gh.runner_names().len(),
        2,
        "registered through generate-jitconfig"
    );
    let id = runners[0]["id"].as_str().unwrap().to_string();

    let list = ok(&c, "list_runners", json!({})).await;
    assert_eq!(list["runners"].as_array().unwrap().len(), 2);
    seen.push_str(&list.to_string());

    // remove_runner is destructive: confirm, or a dry run.
    let r = call(&c, "remove_runner", json!({"id": id})).await;
    assert!(error_text(&r).contains("confirm"), "{r:?}");
    let dry = ok(&c, "remove_runner", json!({"id": id, "dry_run": true})).await;
    assert_eq!(dry["dry_run"], true);
    assert!(
        dry["steps"].to_string().contains("would stop instance"),
        "{dry}"
    );
    assert_eq!(gh.runner_names().len(), 2, "a dry run changes nothing");
    let done = ok(&c, "remove_runner", json!({"id": id, "confirm": true})).await;
    assert_eq!(done["state"], "gone");
    assert_eq!(gh.runner_names().len(), 1, "unregistered at GitHub");
    let r = call(
        &c,
        "remove_runner",
        json!({"id": "run-nope", "confirm": true}),
    )
    .await;
    assert!(error_text(&r).contains("run-nope"), "{r:?}");

    // Drain and pause are operator switches too.
    let other = runners[1]["id"].as_str().unwrap();
    ok(&c, "drain_runner", json!({"id": other})).await;
    let list = ok(&c, "list_runners", json!({})).await;
    assert_eq!(list["runners"][0]["draining"], true);
    ok(&c, "pause_autoscaler", json!({"paused": true})).await;
    let st = ok(&c, "get_autoscaler_status", json!({})).await;
    assert_eq!(st["paused"], true);
    seen.push_str(&st.to_string());

    // Secrets never reach an agent.
    let jits: Vec<String> = gh
        .state
        .lock()
        .unwrap()
        .jit_issued
        .values()
        .cloned()
        .collect();
    for s in jits.iter().map(String::as_str).chain([TOKEN]) {
        assert!(!seen.contains(s), "a secret reached MCP output");
    }
    c.cancel().await.ok();
}

#[tokio::test]
async fn disabled_autoscaler_says_why() {
    let (gh, _server) = FakeGithub::start("acme", &["acme/app"]).await;
    let dir = tempfile::tempdir().unwrap();
    let c = spawn(dir.path(), &gh.uri, &["--disable-autoscaler"]).await;
    let st = wait_for(&c, "get_autoscaler_status", json!({}), |v| {
        v["reason"]
            .as_str()
            .is_some_and(|r| r.contains("--disable-autoscaler"))
    })
    .await;
    assert_eq!(st["enabled"], false);
    let r = call(&c, "gh_provision_runner", json!({"repo": "acme/app"})).await;
    assert!(error_text(&r).contains("autoscaler is off"), "{r:?}");
    assert!(gh.runner_names().is_empty());
    c.cancel().await.ok();
}
