//! One engine per data dir, two faces: a headless owner (`flotilla mcp start`, the same
//! engine the TUI runs) and `flotilla --mcp-stdio` relays that reach it through its socket;
//! plus the CLI's config handling.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::json;

struct Owner(Child);

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_owner(dir: &std::path::Path) -> Owner {
    let child = Command::new(BIN)
        .args(["mcp", "start", "--no-p2p", "--data-dir"])
        .arg(dir)
        .env("FLOTILLA_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sock = dir.join("engine.sock");
    for _ in 0..100 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(sock.exists(), "owner never opened its socket");
    Owner(child)
}

#[tokio::test]
async fn relays_share_the_owner_engine() {
    let d = tempfile::tempdir().unwrap();
    let owner = start_owner(d.path());
    let mode = std::fs::metadata(d.path().join("engine.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "socket must be private to its owner");

    let a = mcp_client(d.path(), &[]).await;
    let b = mcp_client(d.path(), &[]).await;
    let st = ok(&a, "get_system_status", json!({})).await;
    assert_eq!(
        st["pid"],
        owner.0.id(),
        "relay ran its own engine instead of relaying"
    );
    let wf = ok(
        &a,
        "submit_p2p_workflow",
        json!({"name": "via-relay", "tasks": [{"command": ["echo", "relayed"]}]}),
    )
    .await["workflow_id"]
        .as_str()
        .unwrap()
        .to_string();
    // The other client (and so the owner's TUI) sees it at once.
    let s = wait_status(&b, &wf, "completed", 20).await;
    assert_eq!(s["completed"], 1);

    // `flotilla mcp status` reports on the running engine.
    let out = Command::new(BIN)
        .args(["mcp", "status", "--data-dir"])
        .arg(d.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["pid"], owner.0.id());
    assert_eq!(v["autoscaler"]["enabled"], false, "{v:#}");
    a.cancel().await.unwrap();
    b.cancel().await.unwrap();

    // A second owner on the same data dir is refused with the holder's pid.
    let out = Command::new(BIN)
        .args(["mcp", "start", "--no-p2p", "--data-dir"])
        .arg(d.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("pid {}", owner.0.id())), "{err}");
}

#[test]
fn mcp_status_without_engine_says_so() {
    let d = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["mcp", "status", "--data-dir"])
        .arg(d.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no engine is running"));
}

#[test]
fn config_show_masks_secrets_and_names_origins() {
    let d = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["config", "show", "--data-dir"])
        .arg(d.path())
        .args(["--set", "p2p.heartbeat_timeout=5s"])
        .env("GH_TOKEN", "ghs_notarealtoken0123456789")
        .env("XDG_CONFIG_HOME", d.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(!s.contains("notarealtoken"), "{s}");
    assert!(
        s.contains("token = \"****\"  # from environment variable GH_TOKEN"),
        "{s}"
    );
    assert!(
        s.contains("heartbeat_timeout = \"5s\"  # from flag --set p2p.heartbeat_timeout=5s"),
        "{s}"
    );
}

#[test]
fn bad_config_is_one_line_naming_key_value_origin() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("config.toml");
    std::fs::write(&cfg, "[scheduler]\npriority_boost_factor = 7\n").unwrap();
    for (args, needles) in [
        (
            vec!["--set", "p2p.heartbeat_timeout=soon"],
            vec!["p2p.heartbeat_timeout", "\"soon\"", "--set"],
        ),
        (
            vec!["--config", cfg.to_str().unwrap()],
            vec!["scheduler.priority_boost_factor", "7", "config.toml"],
        ),
        (vec!["--set", "nope"], vec!["bad --set argument"]),
    ] {
        let out = Command::new(BIN)
            .args(["config", "show"])
            .args(&args)
            .env("XDG_CONFIG_HOME", d.path().join("none"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        for n in needles {
            assert!(err.contains(n), "{args:?}: {err}");
        }
    }
}
