//! The GitHub layer end to end: `flotilla --mcp-stdio` against a local fake GitHub replaying
//! recorded responses (with their headers) from `shared/fixtures/github`; and the seed's
//! warning when there is no token.

mod common;

use common::*;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "ghs_e2eTOKENneverShown0123456789";

fn recorded(name: &str) -> Value {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/github/pygithub_extracted"
    );
    serde_json::from_str(&std::fs::read_to_string(format!("{p}/{name}.json")).unwrap()).unwrap()
}

/// The recorded response with its headers, minus those that no longer hold for a
/// re-serialized body (encoding, length, hop-by-hop).
fn replay(r: &Value, body: &Value) -> ResponseTemplate {
    let mut t = ResponseTemplate::new(r["status"].as_u64().unwrap() as u16).set_body_json(body);
    for h in r["headers"].as_array().unwrap() {
        let (k, v) = (h[0].as_str().unwrap(), h[1].as_str().unwrap());
        let lk = k.to_ascii_lowercase();
        if [
            "content-encoding",
            "content-length",
            "transfer-encoding",
            "status",
            "connection",
            "link",
        ]
        .contains(&lk.as_str())
        {
            continue;
        }
        t = t.insert_header(k, v);
    }
    t
}

async fn mount_recorded(server: &MockServer, name: &str) -> String {
    let r = recorded(name);
    let p = r["path"]
        .as_str()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string();
    Mock::given(method("GET"))
        .and(path(p.clone()))
        .respond_with(replay(&r, &r["body"]))
        .mount(server)
        .await;
    p
}

#[tokio::test]
async fn repos_runs_and_cache_stats_through_mcp() {
    let gh = MockServer::start().await;
    mount_recorded(&gh, "Repository.testGetWorkflowRuns.02").await;
    mount_recorded(&gh, "SelfHostedActionsRunner.setUp.01").await; // /users/ReDASers: an org
    let repo = recorded("SelfHostedActionsRunner.setUp.02");
    Mock::given(method("GET"))
        .and(path("/orgs/ReDASers/repos"))
        .respond_with(replay(&repo, &json!([repo["body"].clone()])))
        .mount(&gh)
        .await;

    let d = tempfile::tempdir().unwrap();
    // SAFETY: no other thread of this test binary reads the environment meanwhile.
    unsafe { std::env::set_var("GH_TOKEN", TOKEN) };
    let c = mcp_client(d.path(), &["--github-api-url", &gh.uri()]).await;
    // Token discovery runs in the background: wait until the layer is on.
    let mut outputs = Vec::new();
    for _ in 0..100 {
        let h = ok(&c, "get_service_health", json!({"services": ["github"]})).await;
        if !h["services"][0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("starting")
        {
            assert_eq!(h["services"][0]["status"], "ok", "{h}");
            outputs.push(h.to_string());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let runs = ok(&c, "gh_workflow_runs", json!({"repo": "PyGithub/PyGithub"})).await;
    let n = runs["runs"].as_array().unwrap().len();
    assert!(n > 0, "{runs}");
    assert!(
        runs["rate_limit"]["limit"].as_u64().unwrap() > 0,
        "recorded X-RateLimit headers read"
    );
    let again = ok(
        &c,
        "gh_workflow_runs",
        json!({"repo": "PyGithub/PyGithub", "status": null}),
    )
    .await;
    assert_eq!(again["runs"].as_array().unwrap().len(), n);
    let stats = ok(&c, "gh_cache_stats", json!({})).await;
    assert!(
        stats["hits"].as_u64().unwrap() >= 1,
        "second lookup inside the freshness window: {stats}"
    );
    assert!(stats["api_calls_saved"].as_u64().unwrap() >= 1);
    let run_requests = gh
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().ends_with("/actions/runs"))
        .count();
    assert_eq!(run_requests, 1, "the cached lookup must not reach GitHub");

    let repos = ok(
        &c,
        "gh_list_repos",
        json!({"owner": "ReDASers", "type": "all", "limit": 10}),
    )
    .await;
    assert_eq!(
        repos["repos"][0]["full_name"], "ReDASers/Phishing-Detection",
        "{repos}"
    );
    let st = ok(&c, "get_system_status", json!({})).await;
    assert!(st["github_rate_limit"]["remaining"].is_u64(), "{st}");
    outputs.extend([runs.to_string(), repos.to_string(), st.to_string()]);
    outputs.push(
        ok(
            &c,
            "get_recent_logs",
            json!({"lines": 1000, "level": "debug"}),
        )
        .await
        .to_string(),
    );
    for o in &outputs {
        assert!(!o.contains(TOKEN), "token in MCP output: {o}");
    }
    for r in gh.received_requests().await.unwrap() {
        assert_eq!(
            r.headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_string()),
            Some(format!("Bearer {TOKEN}"))
        );
    }
    c.cancel().await.unwrap();
    let db = std::fs::read(d.path().join("flotilla.db")).unwrap();
    let wal = std::fs::read(d.path().join("flotilla.db-wal")).unwrap_or_default();
    assert!(!String::from_utf8_lossy(&db).contains(TOKEN));
    assert!(!String::from_utf8_lossy(&wal).contains(TOKEN));
}
