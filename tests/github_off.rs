//! With no token anywhere, GitHub is off with the seed's warning and everything else runs.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn no_token_means_github_off_with_the_seed_warning() {
    // SAFETY: set before any thread of this test binary reads the environment.
    unsafe {
        std::env::remove_var("GH_TOKEN");
        std::env::remove_var("GITHUB_TOKEN");
        std::env::set_var("PATH", "/nonexistent");
    }
    let d = tempfile::tempdir().unwrap();
    let c = mcp_client(d.path(), &[]).await;
    let mut detail = String::new();
    for _ in 0..100 {
        let h = ok(&c, "get_service_health", json!({"services": ["github"]})).await;
        detail = h["services"][0]["detail"].as_str().unwrap().to_string();
        if !detail.starts_with("starting") {
            assert_eq!(h["services"][0]["status"], "disabled");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        detail.contains("GitHub CLI not authenticated - autoscaler disabled"),
        "{detail}"
    );
    assert!(detail.contains("To enable: gh auth login"), "{detail}");
    let r = call(&c, "gh_cache_stats", json!({})).await;
    assert!(error_text(&r).contains("GitHub is off"));
    // The rest works.
    ok(
        &c,
        "submit_p2p_workflow",
        json!({"name": "x", "tasks": [{"command": ["true"]}]}),
    )
    .await;
    c.cancel().await.unwrap();
}
