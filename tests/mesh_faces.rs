//! The P2P node through the faces: two `flotilla` processes on 127.0.0.1 peer through a
//! bootstrap multiaddr; `get_p2p_network_status` shows full multiaddrs with the OS-chosen
//! port; a bad multiaddr is a clear error that names it; the identity persists.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

async fn status(c: &Client) -> Value {
    for _ in 0..200 {
        let s = ok(c, "get_p2p_network_status", json!({})).await;
        if s["health"] != "starting" && !s["listen_addrs"].as_array().unwrap().is_empty() {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("mesh never started");
}

#[tokio::test]
async fn two_nodes_peer_over_a_bootstrap_multiaddr() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let listen = [
        "--set",
        "p2p.enabled=true",
        "--p2p-listen",
        "/ip4/127.0.0.1/tcp/0",
        "--no-mdns",
    ];
    let a = mcp_client(da.path(), &listen).await;
    let sa = status(&a).await;
    let addr = sa["listen_addrs"][0].as_str().unwrap().to_string();
    assert!(addr.starts_with("/ip4/127.0.0.1/tcp/"), "{addr}");
    assert!(
        !addr.contains("/tcp/0/"),
        "the OS-chosen port is shown: {addr}"
    );
    assert!(
        addr.ends_with(&format!("/p2p/{}", sa["peer_id"].as_str().unwrap())),
        "{addr}"
    );

    let mut args = listen.to_vec();
    args.extend(["--bootstrap", addr.as_str()]);
    let b = mcp_client(db.path(), &args).await;
    let mut sb = status(&b).await;
    for _ in 0..200 {
        if sb["peer_count"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        sb = ok(&b, "get_p2p_network_status", json!({})).await;
    }
    assert_eq!(sb["peer_count"], 1, "{sb}");
    assert_eq!(sb["peers"][0]["peer_id"], sa["peer_id"]);
    assert_eq!(sb["health"], "ok");
    let sa2 = ok(&a, "get_p2p_network_status", json!({})).await;
    assert!(
        sa2["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["peer_id"] == sb["peer_id"]),
        "{sa2}"
    );
    // Open mesh without a secret: private is false and the health detail says so.
    assert_eq!(sb["private"], false);
    let h = ok(&b, "get_service_health", json!({"services": ["p2p"]})).await;
    assert!(
        h["services"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("OPEN mesh"),
        "{h}"
    );
    let first_id = sa["peer_id"].clone();
    a.cancel().await.unwrap();
    b.cancel().await.unwrap();

    // Same data dir, same peer ID.
    let a = mcp_client(da.path(), &listen).await;
    assert_eq!(status(&a).await["peer_id"], first_id);
    a.cancel().await.unwrap();
}

#[test]
fn bad_multiaddr_is_a_clear_error_naming_it() {
    let d = tempfile::tempdir().unwrap();
    for (flag, bad) in [
        ("--p2p-listen", "/ip4/300.1.1.1/tcp/9100"),
        ("--bootstrap", "not-a-multiaddr"),
    ] {
        let out = Command::new(BIN)
            .args(["config", "show", "--data-dir"])
            .arg(d.path())
            .args([flag, bad])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(bad), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}
