//! The GitHub client against a fake GitHub (wiremock on 127.0.0.1) that replays REAL recorded
//! responses from `shared/fixtures/github`, with their recorded headers.
//!
//! Replay rules (generic, no fixture special-cased): hop-by-hop and encoding headers
//! (`Content-Encoding`, `Content-Length`, `Transfer-Encoding`, `Status`, `Connection`) are dropped
//! because the body is re-serialized uncompressed; absolute URLs in `Link`/`Location` are moved
//! from `https://api.github.com` to the fake API server and from any other host to a second
//! fake "blob" server (a different origin, like GitHub's log storage). Where no recording
//! exists (repository lists, contents, issues), the test builds the answer from a recorded
//! object or a real workflow file and says so.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine;
use flotilla::clock::{ManualClock, SharedClock, SystemClock};
use flotilla::github::cache::GithubCache;
use flotilla::github::ratelimit::RetryPolicy;
use flotilla::github::types::{JitConfigRequest, NewIssue};
use flotilla::github::{
    ClientConfig, GithubClient, GithubError, GithubToken, RunFilter, RunnerScope,
};
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const TOKEN: &str = "fake-gh-token-0123456789abcdefSECRET";
const BEARER: &str = "Bearer fake-gh-token-0123456789abcdefSECRET";

fn fixtures() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/github"
    ))
}

fn shared(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures")).join(rel)
}

/// One recorded exchange.
struct Rec {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    status: u16,
    headers: Vec<(String, String)>,
    body: Option<Value>,
}

fn rec(name: &str) -> Rec {
    let p = fixtures()
        .join("pygithub_extracted")
        .join(format!("{name}.json"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    let full = v["path"].as_str().unwrap();
    let (path, q) = full.split_once('?').unwrap_or((full, ""));
    Rec {
        method: v["method"].as_str().unwrap().to_string(),
        path: path.to_string(),
        query: q
            .split('&')
            .filter(|s| !s.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_string(), v.to_string())
            })
            .collect(),
        status: v["status"].as_u64().unwrap() as u16,
        headers: v["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h[0].as_str().unwrap().to_string(),
                    h[1].as_str().unwrap().to_string(),
                )
            })
            .collect(),
        body: match &v["body"] {
            Value::Null => None,
            b => Some(b.clone()),
        },
    }
}

fn openapi_example(name: &str, status: &str) -> Value {
    let p = fixtures()
        .join("openapi_examples")
        .join(format!("{name}.json"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    v["responses"][status]["content"]["application/json"]["examples"]["default"].clone()
}

const DROP: &[&str] = &[
    "content-encoding",
    "content-length",
    "transfer-encoding",
    "status",
    "connection",
];

fn rewrite_url(v: &str, api: &str, blob: &str) -> String {
    let v = v.replace("https://api.github.com", api);
    match v.strip_prefix("https://") {
        Some(rest) => {
            let pq = rest.find('/').map_or("/", |i| &rest[i..]);
            format!("{blob}{pq}")
        }
        None => v,
    }
}

/// The recorded response as a wiremock template.
fn replay(r: &Rec, api: &str, blob: &str) -> ResponseTemplate {
    let mut t = ResponseTemplate::new(r.status);
    for (k, v) in &r.headers {
        let lk = k.to_ascii_lowercase();
        if DROP.contains(&lk.as_str()) {
            continue;
        }
        let v = if lk == "link" || lk == "location" {
            rewrite_url(v, api, blob)
        } else {
            v.clone()
        };
        t = t.append_header(k.as_str(), v.as_str());
    }
    if let Some(b) = &r.body {
        t = t.set_body_bytes(serde_json::to_vec(b).unwrap());
    }
    t
}

fn header_value(r: &Rec, name: &str) -> Option<String> {
    r.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

fn json_response(v: &Value, status: u16) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("content-type", "application/json; charset=utf-8")
        .set_body_bytes(serde_json::to_vec(v).unwrap())
}

fn test_policy() -> RetryPolicy {
    RetryPolicy {
        secondary_base: Duration::from_millis(20),
        server_error_base: Duration::from_millis(10),
        max_wait: Duration::from_secs(2),
        ..RetryPolicy::default()
    }
}

fn client_with(base: &str, clock: SharedClock, per_page: u32, cache: GithubCache) -> GithubClient {
    logs();
    GithubClient::new(
        GithubToken::new(TOKEN),
        ClientConfig {
            base_url: base.to_string(),
            policy: test_policy(),
            per_page,
            ..ClientConfig::default()
        },
        cache,
        clock,
    )
    .unwrap()
}

fn client(base: &str) -> GithubClient {
    client_with(
        base,
        Arc::new(SystemClock),
        100,
        GithubCache::in_memory(1 << 20).unwrap(),
    )
}

async fn received(s: &MockServer) -> usize {
    s.received_requests().await.unwrap().len()
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn pagination_follows_link_over_two_pages() {
    let api = MockServer::start().await;
    let p1 = rec("PullRequest1684.testGetRunners.01");
    let p2 = rec("PullRequest1684.testGetRunners.02");
    // Page 1 at its recorded path and query, page 2 where page 1's Link points.
    let link = rewrite_url(&header_value(&p1, "link").unwrap(), &api.uri(), "x");
    let next = flotilla::github::client::next_link(&link).unwrap();
    let next_path = next
        .strip_prefix(&api.uri())
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string();
    Mock::given(method("GET"))
        .and(path(p1.path.as_str()))
        .and(query_param("per_page", "1"))
        .and(header("authorization", BEARER))
        .respond_with(replay(&p1, &api.uri(), "http://unused"))
        .expect(1)
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path(next_path.as_str()))
        .and(query_param("page", "2"))
        .and(header("authorization", BEARER))
        .respond_with(replay(&p2, &api.uri(), "http://unused"))
        .expect(1)
        .mount(&api)
        .await;
    let c = client_with(
        &api.uri(),
        Arc::new(SystemClock),
        1,
        GithubCache::in_memory(1 << 20).unwrap(),
    );
    let runners = c
        .runners(&RunnerScope::repo("ReDASers", "Phishing-Detection"))
        .await
        .unwrap();
    let page2 = p2.body.as_ref().unwrap()["runners"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(runners.len(), 1 + page2);
    assert_eq!(runners[0].id, 1363);
    assert_eq!(runners[0].label_names(), ["self-hosted", "Windows", "X64"]);
    assert_eq!(received(&api).await, 2);
    // The recorded rate-limit headers were read.
    let rl = c.rate_limit("core").unwrap();
    assert_eq!(rl.limit, 5000);
}

#[tokio::test]
async fn etag_304_and_freshness_window() {
    let api = MockServer::start().await;
    let r = rec("Repository.testGetWorkflowRuns.02");
    let etag = header_value(&r, "etag").unwrap();
    let recorded_remaining: u64 = header_value(&r, "x-ratelimit-remaining")
        .unwrap()
        .parse()
        .unwrap();
    Mock::given(method("GET"))
        .and(path(r.path.as_str()))
        .and(header("if-none-match", etag.as_str()))
        .respond_with(ResponseTemplate::new(304).insert_header("etag", etag.as_str()))
        .with_priority(1)
        .expect(1)
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path(r.path.as_str()))
        .and(|req: &Request| !req.headers.contains_key("if-none-match"))
        .respond_with(replay(&r, &api.uri(), "http://unused"))
        .expect(1)
        .mount(&api)
        .await;
    let clock = ManualClock::new(1_700_000_000_000);
    let c = client_with(
        &api.uri(),
        Arc::new(clock.clone()),
        100,
        GithubCache::in_memory(1 << 20).unwrap(),
    );
    let first = c
        .workflow_runs("PyGithub", "PyGithub", &RunFilter::default())
        .await
        .unwrap();
    assert_eq!(first.len(), 5);
    assert_eq!(first[0].id, 110932306);
    assert_eq!(c.cache_stats().misses, 1);

    // Past the 30 s window of an unfiltered run list: a conditional request, answered 304.
    clock.advance(31_000);
    let second = c
        .workflow_runs("PyGithub", "PyGithub", &RunFilter::default())
        .await
        .unwrap();
    assert_eq!(second, first);
    let s = c.cache_stats();
    assert_eq!(s.not_modified, 1);
    assert_eq!(s.api_calls, 2);
    assert_eq!(received(&api).await, 2);
    // A 304 does not count against the primary limit.
    assert_eq!(c.rate_limit("core").unwrap().remaining, recorded_remaining);

    // Within the window restarted by the 304: no request at all.
    clock.advance(5_000);
    let third = c
        .workflow_runs("PyGithub", "PyGithub", &RunFilter::default())
        .await
        .unwrap();
    assert_eq!(third, first);
    assert_eq!(received(&api).await, 2);
    let s = c.cache_stats();
    assert_eq!(s.hits, 1);
    assert_eq!(s.api_calls, 2);
    assert_eq!(s.api_calls_saved, 2);
    assert!((s.hit_rate - 2.0 / 3.0).abs() < 1e-9);
    let v = serde_json::to_value(&s).unwrap();
    for k in [
        "hit_rate",
        "api_calls_saved",
        "peer_hits",
        "connected_peers",
        "p2p_enabled",
    ] {
        assert!(v.get(k).is_some(), "{k}");
    }
}

#[tokio::test]
async fn two_tokens_never_share_cache_entries() {
    let api = MockServer::start().await;
    let r = rec("Repository.testGetWorkflowRuns.02");
    Mock::given(method("GET"))
        .and(path(r.path.as_str()))
        .respond_with(replay(&r, &api.uri(), "http://unused"))
        .expect(2)
        .mount(&api)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let open = || {
        let conn = rusqlite::Connection::open(&db).unwrap();
        GithubCache::new(conn, 1 << 20).unwrap()
    };
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(flotilla::github::cache::MIGRATION_SQL)
            .unwrap();
    }
    let a = client_with(&api.uri(), Arc::new(SystemClock), 100, open());
    logs();
    let b = GithubClient::new(
        GithubToken::new("another-fake-token"),
        ClientConfig {
            base_url: api.uri(),
            ..ClientConfig::default()
        },
        open(),
        Arc::new(SystemClock),
    )
    .unwrap();
    a.workflow_runs("PyGithub", "PyGithub", &RunFilter::default())
        .await
        .unwrap();
    // Fresh for token A, but B must not see A's entry.
    b.workflow_runs("PyGithub", "PyGithub", &RunFilter::default())
        .await
        .unwrap();
    assert_eq!(received(&api).await, 2);
    // A's second call is served fresh from the shared file.
    a.workflow_runs("PyGithub", "PyGithub", &RunFilter::default())
        .await
        .unwrap();
    assert_eq!(received(&api).await, 2);
    assert_ne!(
        a.cache_key("/x").as_str(),
        b.cache_key("/x").as_str(),
        "keys differ per token"
    );
}

#[tokio::test]
async fn recorded_secondary_limit_with_retry_after_reports_clear_error_and_blocks() {
    let api = MockServer::start().await;
    // Recorded 403 "abuse detection" with Retry-After: 60, served on an endpoint the client uses.
    let r = rec("SpecificExceptions.testAuthenticatedRateLimitExceeded.02");
    Mock::given(method("GET"))
        .and(path("/users/jacquev6"))
        .respond_with(replay(&r, &api.uri(), "http://unused"))
        .expect(1)
        .mount(&api)
        .await;
    let c = client(&api.uri());
    let t0 = std::time::Instant::now();
    let err = c.account("jacquev6").await.unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(2), "did not sleep 60 s");
    let GithubError::RateLimited { retry_after, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*retry_after, Duration::from_secs(60));
    let msg = err.to_string();
    assert!(
        msg.starts_with("GET /users/jacquev6: GitHub rate limit (Retry-After); retry in 60 s"),
        "{msg}"
    );
    assert!(msg.contains("abuse detection"), "{msg}");
    // Until the wait is over, no request is sent at all.
    let again = c.account("jacquev6").await.unwrap_err();
    assert!(matches!(again, GithubError::RateLimited { .. }), "{again}");
    assert_eq!(received(&api).await, 1);
}

#[tokio::test]
async fn recorded_primary_limit_403_backs_off_then_succeeds() {
    let api = MockServer::start().await;
    let limited = rec("SpecificExceptions.testRateLimitExceeded.02");
    let ok = rec("SpecificExceptions.testRateLimitExceeded.01");
    assert_eq!(limited.path, ok.path);
    Mock::given(method("GET"))
        .and(path(limited.path.as_str()))
        .respond_with(replay(&limited, &api.uri(), "http://unused"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path(ok.path.as_str()))
        .respond_with(replay(&ok, &api.uri(), "http://unused"))
        .mount(&api)
        .await;
    let c = client(&api.uri());
    let acct = c.account("jacquev6").await.unwrap();
    assert_eq!(acct.login, "jacquev6");
    assert_eq!(acct.kind, flotilla::github::types::AccountKind::User);
    assert_eq!(received(&api).await, 2);
}

#[tokio::test]
async fn recorded_permission_403_is_not_retried() {
    let api = MockServer::start().await;
    let r = rec("WorkflowRun.test_cancel.02");
    Mock::given(method(r.method.as_str()))
        .and(path(r.path.as_str()))
        .respond_with(replay(&r, &api.uri(), "http://unused"))
        .expect(1)
        .mount(&api)
        .await;
    let c = client(&api.uri());
    let err = c
        .cancel_run("PyGithub", "PyGithub", 3911660493)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(403));
    assert_eq!(
        err.to_string(),
        "POST /repos/PyGithub/PyGithub/actions/runs/3911660493/cancel: 403 Forbidden: Must have admin rights to Repository."
    );
    assert_eq!(received(&api).await, 1);
}

#[tokio::test]
async fn server_error_then_success_and_bounded_retries() {
    let api = MockServer::start().await;
    let r = rec("PullRequest1684.testGetRunners.02");
    Mock::given(method("GET"))
        .and(path(r.path.as_str()))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path(r.path.as_str()))
        .respond_with(replay(&r, &api.uri(), "http://unused"))
        .mount(&api)
        .await;
    // Always 500 elsewhere: 1 try + 3 retries, then an error.
    Mock::given(method("GET"))
        .and(path("/orgs/BeaverSoftware/actions/runners"))
        .respond_with(ResponseTemplate::new(500))
        .expect(4)
        .mount(&api)
        .await;
    // POST is not retried on 5xx.
    Mock::given(method("POST"))
        .and(path(
            "/orgs/BeaverSoftware/actions/runners/registration-token",
        ))
        .respond_with(ResponseTemplate::new(503))
        .expect(1)
        .mount(&api)
        .await;
    let c = client(&api.uri());
    let runners = c
        .runners(&RunnerScope::repo("ReDASers", "Phishing-Detection"))
        .await
        .unwrap();
    assert_eq!(runners.len(), 19);
    let err = c
        .runners(&RunnerScope::org("BeaverSoftware"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(500));
    let err = c
        .registration_token(&RunnerScope::org("BeaverSoftware"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(503));
}

#[tokio::test]
async fn truncated_body_is_a_clear_error_naming_the_endpoint() {
    let api = MockServer::start().await;
    let r = rec("Repository.testGetWorkflowRuns.02");
    let full = serde_json::to_vec(r.body.as_ref().unwrap()).unwrap();
    Mock::given(method("GET"))
        .and(path(r.path.as_str()))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "application/json; charset=utf-8")
                .set_body_bytes(full[..full.len() / 2].to_vec()),
        )
        .mount(&api)
        .await;
    let c = client(&api.uri());
    let err = c
        .workflow_runs("PyGithub", "PyGithub", &RunFilter::default())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(
            "GET /repos/PyGithub/PyGithub/actions/runs: malformed JSON at line 1 column "
        ),
        "{msg}"
    );
    assert!(msg.contains("EOF while parsing"), "{msg}");
    // The broken body was not cached: the next call asks again.
    assert!(
        c.workflow_runs("PyGithub", "PyGithub", &RunFilter::default())
            .await
            .is_err()
    );
    assert_eq!(received(&api).await, 2);
}

#[tokio::test]
async fn job_log_redirect_is_followed_without_authorization() {
    let api = MockServer::start().await;
    let blob = MockServer::start().await;
    let r = rec("WorkflowJob.testAttributes.01");
    let location = rewrite_url(
        &header_value(&r, "location").unwrap(),
        &api.uri(),
        &blob.uri(),
    );
    let blob_path = location
        .strip_prefix(&blob.uri())
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string();
    let log = std::fs::read_to_string(shared("logs/dev/dev-01.log")).unwrap();
    Mock::given(method("GET"))
        .and(path(r.path.as_str()))
        .and(header("authorization", BEARER))
        .respond_with(replay(&r, &api.uri(), &blob.uri()))
        .expect(1)
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path(blob_path.as_str()))
        .and(query_param("urlSigningMethod", "HMACV1"))
        .and(|req: &Request| !req.headers.contains_key("authorization"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/plain")
                .set_body_bytes(log.clone().into_bytes()),
        )
        .expect(1)
        .mount(&blob)
        .await;
    Mock::given(method("GET"))
        .and(|req: &Request| req.headers.contains_key("authorization"))
        .respond_with(ResponseTemplate::new(403))
        .expect(0)
        .mount(&blob)
        .await;
    let c = client(&api.uri());
    let text = c
        .job_log("PyGithub", "PyGithub", 11421878319)
        .await
        .unwrap();
    assert_eq!(text, log);
    for req in blob.received_requests().await.unwrap() {
        assert!(!req.headers.contains_key("authorization"));
    }
}

#[tokio::test]
async fn generate_jitconfig_body_shape_and_default_group() {
    let api = MockServer::start().await;
    let r = rec("Organization.testSelfHostedRunnerJitConfig.01");
    Mock::given(method("POST"))
        .and(path(r.path.as_str()))
        .and(header("authorization", BEARER))
        .and(body_json(json!({
            "name": "flotilla-abc",
            "runner_group_id": 1,
            "labels": ["self-hosted", "linux", "x64"],
            "work_folder": "_work"
        })))
        .respond_with(replay(&r, &api.uri(), "http://unused"))
        .expect(1)
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path("/orgs/BeaverSoftware/actions/runner-groups"))
        .respond_with(json_response(
            &openapi_example("actions__list-self-hosted-runner-groups-for-org", "200"),
            200,
        ))
        .mount(&api)
        .await;
    let c = client(&api.uri());
    let scope = RunnerScope::org("BeaverSoftware");
    let group = c.default_runner_group_id(&scope).await.unwrap();
    assert_eq!(group, 1);
    assert_eq!(
        c.default_runner_group_id(&RunnerScope::repo("o", "r"))
            .await
            .unwrap(),
        1
    );
    let jit = c
        .generate_jitconfig(
            &scope,
            &JitConfigRequest {
                name: "flotilla-abc".into(),
                runner_group_id: group,
                labels: vec!["self-hosted".into(), "linux".into(), "x64".into()],
                work_folder: "_work".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(jit.runner.id, 545658);
    assert_eq!(jit.runner.runner_group_id, Some(1));
    assert_eq!(jit.encoded_jit_config.expose(), "fake");
    assert!(!format!("{jit:?}").contains("fake\""));
}

#[tokio::test]
async fn tokens_runners_delete_rerun_annotations_jobs() {
    let api = MockServer::start().await;
    for name in [
        "Organization.testSelfHostedRunnerGetRegistrationToken.01",
        "Organization.testSelfHostedRunnerGetRemoveToken.01",
        "Organization.testDeleteSelfHostedRunner.01",
        "WorkflowRun.test_rerun_failed_jobs.02",
        "WorkflowRun.test_jobs.01",
        "Repository.testGetWorkflowRunsCreated.02",
        "Repository.testGetWorkflows.02",
        "Organization.testSelfHostedRunnerJitConfig.02",
    ] {
        let r = rec(name);
        let mut m = Mock::given(method(r.method.as_str())).and(path(r.path.as_str()));
        for (k, v) in &r.query {
            m = m.and(query_param(k.as_str(), v.as_str()));
        }
        m.respond_with(replay(&r, &api.uri(), "http://unused"))
            .expect(1)
            .mount(&api)
            .await;
    }
    let annotations: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("octocrab/check_run_annotations.json")).unwrap(),
    )
    .unwrap();
    Mock::given(method("GET"))
        .and(path(
            "/repos/PyGithub/PyGithub/check-runs/10545727758/annotations",
        ))
        .respond_with(json_response(&annotations, 200))
        .expect(1)
        .mount(&api)
        .await;
    let c = client(&api.uri());
    let org = RunnerScope::org("BeaverSoftware");
    let reg = c.registration_token(&org).await.unwrap();
    assert_eq!(reg.token.expose(), "XXXXXX");
    assert!(!format!("{reg:?}").contains("XXXXXX"));
    let rm = c.remove_token(&org).await.unwrap();
    assert!(!rm.token.expose().is_empty());
    let runners = c.runners(&org).await.unwrap();
    assert_eq!(runners.len(), 15);
    assert!(
        runners
            .iter()
            .any(|r| r.status.as_deref() == Some("online"))
    );
    c.delete_runner(&org, 42).await.unwrap();
    c.rerun_failed_jobs("PyGithub", "PyGithub", 3881497935)
        .await
        .unwrap();
    let jobs = c.run_jobs("PyGithub", "PyGithub", 3881497935).await;
    // The recorded request had no query; the client asks filter=latest&per_page=100, which the
    // recorded mock (no query matcher) still answers.
    let jobs = jobs.unwrap();
    assert!(!jobs.is_empty());
    assert_eq!(jobs[0].id, 10545727758);
    assert_eq!(jobs[0].conclusion.as_deref(), Some("success"));
    assert!(jobs[0].steps.len() >= 6);
    let runs = c
        .workflow_runs(
            "PyGithub",
            "PyGithub",
            &RunFilter {
                created: Some("2022-12-24".into()),
                ..RunFilter::default()
            },
        )
        .await
        .unwrap();
    assert!(!runs.is_empty());
    let wfs = c.workflows("PyGithub", "PyGithub").await.unwrap();
    assert!(!wfs.is_empty());
    let ann = c
        .check_run_annotations("PyGithub", "PyGithub", 10545727758)
        .await
        .unwrap();
    assert_eq!(ann[0].annotation_level.as_deref(), Some("warning"));
}

#[tokio::test]
async fn queued_filter_uses_status_query() {
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/octo-org/octo-repo/actions/runs"))
        .and(query_param("status", "queued"))
        .and(query_param("branch", "main"))
        .and(query_param("event", "push"))
        .respond_with(json_response(
            &openapi_example("actions__list-workflow-runs-for-repo", "200"),
            200,
        ))
        .expect(1)
        .mount(&api)
        .await;
    let c = client(&api.uri());
    let runs = c
        .workflow_runs(
            "octo-org",
            "octo-repo",
            &RunFilter {
                status: Some("queued".into()),
                branch: Some("main".into()),
                event: Some("push".into()),
                ..RunFilter::default()
            },
        )
        .await
        .unwrap();
    assert!(!runs.is_empty());
}

#[tokio::test]
async fn enterprise_base_path_is_kept() {
    let api = MockServer::start().await;
    let r = rec("SelfHostedActionsRunner.setUp.01");
    Mock::given(method("GET"))
        .and(path(format!("/api/v3{}", r.path)))
        .and(header("authorization", BEARER))
        .respond_with(replay(&r, &api.uri(), "http://unused"))
        .expect(1)
        .mount(&api)
        .await;
    let c = client(&format!("{}/api/v3", api.uri()));
    let a = c.account("ReDASers").await.unwrap();
    assert_eq!(a.kind, flotilla::github::types::AccountKind::Organization);
}

/// Synthetic repository list built from the recorded repository object (no recorded list
/// exists): two recent pushes, then an old one; paging stops there.
#[tokio::test]
async fn repos_pushed_within_stops_paging_at_older() {
    let api = MockServer::start().await;
    let owner = rec("SelfHostedActionsRunner.setUp.01"); // an Organization
    let repo = rec("SelfHostedActionsRunner.setUp.02").body.unwrap();
    Mock::given(method("GET"))
        .and(path(owner.path.as_str()))
        .respond_with(replay(&owner, &api.uri(), "http://unused"))
        .mount(&api)
        .await;
    let now = 1_700_000_000_000i64;
    let iso = |ms: i64| flotilla::clock::rfc3339(ms);
    let mk = |id: u64, name: &str, pushed: String| {
        let mut r = repo.clone();
        r["id"] = json!(id);
        r["name"] = json!(name);
        r["full_name"] = json!(format!("ReDASers/{name}"));
        r["pushed_at"] = json!(pushed);
        r
    };
    let page1 = json!([
        mk(1, "a", iso(now - 3_600_000)),
        mk(2, "b", iso(now - 86_400_000)),
        mk(3, "c", iso(now - 10 * 86_400_000)),
    ]);
    Mock::given(method("GET"))
        .and(path("/orgs/ReDASers/repos"))
        .and(query_param("sort", "pushed"))
        .and(query_param("direction", "desc"))
        .respond_with(json_response(&page1, 200).insert_header(
            "link",
            format!("<{}/orgs/ReDASers/repos?page=2>; rel=\"next\"", api.uri()).as_str(),
        ))
        .expect(1)
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path("/orgs/ReDASers/repos"))
        .and(query_param("page", "2"))
        .respond_with(json_response(&json!([]), 200))
        .with_priority(1)
        .expect(0)
        .mount(&api)
        .await;
    let c = client_with(
        &api.uri(),
        Arc::new(ManualClock::new(now)),
        100,
        GithubCache::in_memory(1 << 20).unwrap(),
    );
    let repos = c.repos_pushed_within("ReDASers", 2).await.unwrap();
    let names: Vec<&str> = repos.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
}

/// Synthetic contents answers built from a real workflow file (no recorded contents response).
#[tokio::test]
async fn workflow_files_via_contents_api() {
    let api = MockServer::start().await;
    let text = std::fs::read_to_string(shared(
        "workflows/popular/rust-lang_rust_.github_workflows_ci.yml",
    ))
    .unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
    // GitHub wraps the base64 at 60 characters.
    let wrapped: String = b64
        .as_bytes()
        .chunks(60)
        .map(|c| format!("{}\n", std::str::from_utf8(c).unwrap()))
        .collect();
    Mock::given(method("GET"))
        .and(path("/repos/o/r/contents/.github/workflows"))
        .respond_with(json_response(
            &json!([
                {"type": "file", "name": "ci.yml", "path": ".github/workflows/ci.yml", "sha": "abc", "size": text.len()},
                {"type": "file", "name": "README.md", "path": ".github/workflows/README.md", "sha": "def", "size": 3},
            ]),
            200,
        ))
        .expect(1)
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/o/r/contents/.github/workflows/ci.yml"))
        .respond_with(json_response(
            &json!({"type": "file", "name": "ci.yml", "path": ".github/workflows/ci.yml",
                    "sha": "abc", "size": text.len(), "encoding": "base64", "content": wrapped}),
            200,
        ))
        .expect(1)
        .mount(&api)
        .await;
    let c = client(&api.uri());
    let files = c.workflow_files("o", "r", None).await.unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].path, ".github/workflows/ci.yml");
    assert_eq!(files[0].text, text);
    // Within the 1 h window: no more requests.
    c.workflow_files("o", "r", None).await.unwrap();
    assert_eq!(received(&api).await, 2);
}

/// Synthetic issue answers (no recording): request bodies are checked.
#[tokio::test]
async fn create_issue_and_comment() {
    let api = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/repos/o/r/issues"))
        .and(body_json(json!({"title": "CI failure", "body": "details", "labels": ["ci"]})))
        .respond_with(json_response(
            &json!({"id": 1, "number": 7, "title": "CI failure", "state": "open", "html_url": "https://github.com/o/r/issues/7"}),
            201,
        ))
        .expect(1)
        .mount(&api)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/o/r/issues/7/comments"))
        .and(body_json(json!({"body": "still failing"})))
        .respond_with(json_response(
            &json!({"id": 9, "body": "still failing"}),
            201,
        ))
        .expect(1)
        .mount(&api)
        .await;
    let c = client(&api.uri());
    let i = c
        .create_issue(
            "o",
            "r",
            &NewIssue {
                title: "CI failure".into(),
                body: Some("details".into()),
                labels: vec!["ci".into()],
            },
        )
        .await
        .unwrap();
    assert_eq!(i.number, 7);
    let cm = c.comment_issue("o", "r", 7, "still failing").await.unwrap();
    assert_eq!(cm.id, 9);
}

// ---------------------------------------------------------------------------------------------

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Every test's log output, at TRACE, from every crate (octocrab's HTTP spans included): one
/// global subscriber, installed before the first client is built, so callsite interest caching
/// cannot hide events.
fn logs() -> &'static Capture {
    static LOGS: OnceLock<Capture> = OnceLock::new();
    LOGS.get_or_init(|| {
        let cap = Capture::default();
        let sub = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(cap.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(sub).unwrap();
        cap
    })
}

#[tokio::test]
async fn token_never_appears_in_logs_or_errors() {
    let cap = logs();

    let api = MockServer::start().await;
    let blob = MockServer::start().await;
    let mut texts: Vec<String> = Vec::new();
    for name in [
        "WorkflowRun.test_cancel.02",
        "SpecificExceptions.testBadCredentials.01",
        "WorkflowJob.testAttributes.01",
    ] {
        let r = rec(name);
        Mock::given(method(r.method.as_str()))
            .and(path(r.path.as_str()))
            .respond_with(replay(&r, &api.uri(), &blob.uri()))
            .mount(&api)
            .await;
    }
    // The recorded secondary-limit 403 (Retry-After: 60) on an endpoint the client uses.
    let abuse = rec("SpecificExceptions.testAuthenticatedRateLimitExceeded.02");
    Mock::given(method("GET"))
        .and(path("/users/jacquev6"))
        .respond_with(replay(&abuse, &api.uri(), &blob.uri()))
        .mount(&api)
        .await;
    // A GitHub error body that (maliciously) echoes the token.
    Mock::given(method("GET"))
        .and(path("/users/echo"))
        .respond_with(json_response(
            &json!({"message": format!("bad token {TOKEN}")}),
            422,
        ))
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/o/r/actions/runs"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(b"log line\n".to_vec()))
        .mount(&blob)
        .await;
    let c = client(&api.uri());
    texts.push(format!("{c:?}"));
    let results: Vec<Result<String, GithubError>> = vec![
        c.cancel_run("PyGithub", "PyGithub", 3911660493)
            .await
            .map(|_| String::new()),
        c.authenticated_user().await.map(|a| a.login),
        c.account("echo").await.map(|a| a.login),
        c.workflow_runs("o", "r", &RunFilter::default())
            .await
            .map(|r| r.len().to_string()),
        c.job_log("PyGithub", "PyGithub", 11421878319).await,
        // Last: its Retry-After blocks the client for 60 s.
        c.account("jacquev6").await.map(|a| a.login),
    ];
    for r in &results {
        match r {
            Ok(s) => texts.push(s.clone()),
            Err(e) => {
                texts.push(e.to_string());
                texts.push(format!("{e:?}"));
            }
        }
    }
    assert!(results.iter().filter(|r| r.is_err()).count() >= 5);
    assert_eq!(results[4].as_ref().unwrap(), "log line\n");
    let echoed = results[2].as_ref().unwrap_err().to_string();
    assert!(echoed.contains("bad token ****"), "{echoed}");
    let logs = String::from_utf8(cap.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("GitHub response"),
        "logs were captured: {logs}"
    );
    assert!(!logs.contains(TOKEN), "token in logs");
    assert!(!logs.contains("FAKEtoken"), "token fragment in logs");
    for t in &texts {
        assert!(
            !t.contains(TOKEN) && !t.contains("FAKEtoken"),
            "token in: {t}"
        );
    }
}

// ---- mesh sharing through the PeerCache seam (a scripted in-memory mesh) -----------------------

use flotilla::github::cache::CacheKey;
use flotilla::github::{PeerCache, PeerFetchError, PeerRef, SealedExporter};

/// What a scripted peer answers.
#[derive(Clone)]
enum Answer {
    /// Export from this node's cache.
    From(SealedExporter),
    /// Export, then flip one bit.
    Tampered(SealedExporter),
    /// Not held.
    Missing,
    /// Not a valid answer.
    Garbage,
    /// Never answers in time.
    Slow,
}

/// A scripted mesh: candidates in the order given, answers per peer, calls recorded.
#[derive(Default, Clone)]
struct FakeMesh {
    peers: Arc<Mutex<Vec<(PeerRef, Answer)>>>,
    announced: Arc<Mutex<Vec<(String, i64)>>>,
    rejected: Arc<Mutex<Vec<PeerRef>>>,
    asked: Arc<Mutex<Vec<PeerRef>>>,
}

impl std::fmt::Debug for FakeMesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FakeMesh")
    }
}

impl FakeMesh {
    fn with(peers: Vec<(&str, Answer)>) -> Self {
        let m = FakeMesh::default();
        *m.peers.lock().unwrap() = peers.into_iter().map(|(p, a)| (p.to_string(), a)).collect();
        m
    }
}

impl PeerCache for FakeMesh {
    fn candidates(
        &self,
        _key: &CacheKey,
        _now: i64,
        _fresh_only: bool,
        limit: usize,
    ) -> Vec<PeerRef> {
        self.peers
            .lock()
            .unwrap()
            .iter()
            .take(limit)
            .map(|(p, _)| p.clone())
            .collect()
    }
    fn fetch<'a>(
        &'a self,
        peer: &'a PeerRef,
        key: &'a CacheKey,
    ) -> futures::future::BoxFuture<'a, Result<Option<Vec<u8>>, PeerFetchError>> {
        self.asked.lock().unwrap().push(peer.clone());
        let answer = self
            .peers
            .lock()
            .unwrap()
            .iter()
            .find(|(p, _)| p == peer)
            .map(|(_, a)| a.clone());
        Box::pin(async move {
            match answer {
                Some(Answer::From(x)) => Ok(x.export(key, 1 << 22)),
                Some(Answer::Tampered(x)) => Ok(x.export(key, 1 << 22).map(|mut s| {
                    let i = s.len() / 2;
                    s[i] ^= 0x40;
                    s
                })),
                Some(Answer::Garbage) => Err(PeerFetchError::Invalid("not an envelope".into())),
                Some(Answer::Slow) => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Ok(None)
                }
                Some(Answer::Missing) | None => Ok(None),
            }
        })
    }
    fn announce(&self, key: &CacheKey, fresh_until_ms: i64) {
        self.announced
            .lock()
            .unwrap()
            .push((key.as_str().to_string(), fresh_until_ms));
    }
    fn reject(&self, peer: &PeerRef, _reason: &str) {
        self.rejected.lock().unwrap().push(peer.clone());
    }
    fn connected_peers(&self) -> u32 {
        self.peers.lock().unwrap().len() as u32
    }
}

const MESH_SECRET: &[u8] = b"mesh-secret-for-tests";

/// The recorded run list, served once with a 200 (`expect`), and 304 to its ETag.
async fn runs_server(expect_200: u64, expect_304: u64) -> (MockServer, Rec) {
    let api = MockServer::start().await;
    let r = rec("Repository.testGetWorkflowRuns.02");
    let etag = header_value(&r, "etag").unwrap();
    Mock::given(method("GET"))
        .and(path(r.path.as_str()))
        .and(header("if-none-match", etag.as_str()))
        .respond_with(ResponseTemplate::new(304).insert_header("etag", etag.as_str()))
        .with_priority(1)
        .expect(expect_304)
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path(r.path.as_str()))
        .and(|req: &Request| !req.headers.contains_key("if-none-match"))
        .respond_with(replay(&r, &api.uri(), "http://unused"))
        .expect(expect_200)
        .mount(&api)
        .await;
    (api, r)
}

fn mem_client(base: &str, clock: &ManualClock) -> GithubClient {
    client_with(
        base,
        Arc::new(clock.clone()),
        100,
        GithubCache::in_memory(1 << 20).unwrap(),
    )
}

async fn runs(c: &GithubClient) -> Vec<u64> {
    c.workflow_runs("PyGithub", "PyGithub", &RunFilter::default())
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect()
}

#[tokio::test]
async fn peer_entry_is_served_without_a_request_and_announced() {
    let (api, _) = runs_server(1, 0).await;
    let clock = ManualClock::new(1_700_000_000_000);
    let a = mem_client(&api.uri(), &clock);
    let mesh_a = FakeMesh::default();
    let export_a = a.enable_sharing(Arc::new(mesh_a.clone()), MESH_SECRET);
    let first = runs(&a).await;
    // A announced what it fetched, fresh for the run list's 30 s.
    let ann = mesh_a.announced.lock().unwrap().clone();
    assert_eq!(ann.len(), 1);
    assert_eq!(ann[0].1, 1_700_000_000_000 + 30_000);
    assert!(
        ann[0]
            .0
            .ends_with("GET /repos/PyGithub/PyGithub/actions/runs?per_page=100"),
        "{ann:?}"
    );

    clock.advance(2_000);
    let b = mem_client(&api.uri(), &clock);
    let mesh_b = FakeMesh::with(vec![("peer-a", Answer::From(export_a))]);
    b.enable_sharing(Arc::new(mesh_b.clone()), MESH_SECRET);
    assert_eq!(runs(&b).await, first);
    assert_eq!(received(&api).await, 1, "B sent no request");
    let s = b.cache_stats();
    assert_eq!(
        (s.peer_hits, s.api_calls, s.misses, s.rejected),
        (1, 0, 0, 0)
    );
    assert!(s.p2p_enabled);
    assert_eq!(s.connected_peers, 1);
    assert_eq!(s.api_calls_saved, 1);
    // B holds it now and says so, with A's window (not a new one).
    assert_eq!(
        mesh_b.announced.lock().unwrap()[0].1,
        1_700_000_000_000 + 30_000
    );
    // Stored locally: the next lookup is a plain hit.
    assert_eq!(runs(&b).await, first);
    assert_eq!(b.cache_stats().hits, 1);
    assert_eq!(mesh_b.asked.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn tampered_and_garbage_answers_are_rejected_counted_and_reported() {
    let (api, _) = runs_server(1, 0).await;
    let clock = ManualClock::new(1_700_000_000_000);
    let a = mem_client(&api.uri(), &clock);
    let export_a = a.enable_sharing(Arc::new(FakeMesh::default()), MESH_SECRET);
    let first = runs(&a).await;
    let mesh_b = FakeMesh::with(vec![
        ("evil", Answer::Tampered(export_a.clone())),
        ("junk", Answer::Garbage),
        ("gone", Answer::Missing),
        ("peer-a", Answer::From(export_a)),
    ]);
    let b_cfg = ClientConfig {
        base_url: api.uri(),
        policy: test_policy(),
        peer_candidates: 4,
        ..ClientConfig::default()
    };
    let b = GithubClient::new(
        GithubToken::new(TOKEN),
        b_cfg,
        GithubCache::in_memory(1 << 20).unwrap(),
        Arc::new(clock.clone()),
    )
    .unwrap();
    b.enable_sharing(Arc::new(mesh_b.clone()), MESH_SECRET);
    assert_eq!(runs(&b).await, first);
    assert_eq!(received(&api).await, 1);
    let s = b.cache_stats();
    assert_eq!((s.rejected, s.peer_hits, s.api_calls), (2, 1, 0));
    assert_eq!(*mesh_b.rejected.lock().unwrap(), ["evil", "junk"]);
    assert_eq!(
        *mesh_b.asked.lock().unwrap(),
        ["evil", "junk", "gone", "peer-a"]
    );
}

#[tokio::test]
async fn other_mesh_secret_or_token_cannot_open_and_falls_back_to_github() {
    let (api, _) = runs_server(3, 0).await;
    let clock = ManualClock::new(1_700_000_000_000);
    let a = mem_client(&api.uri(), &clock);
    let export_a = a.enable_sharing(Arc::new(FakeMesh::default()), MESH_SECRET);
    runs(&a).await;
    // Same token, other mesh secret.
    let b = mem_client(&api.uri(), &clock);
    let mesh_b = FakeMesh::with(vec![("peer-a", Answer::From(export_a.clone()))]);
    b.enable_sharing(Arc::new(mesh_b.clone()), b"another-mesh-secret");
    runs(&b).await;
    let s = b.cache_stats();
    assert_eq!((s.rejected, s.peer_hits, s.misses), (1, 0, 1));
    assert_eq!(*mesh_b.rejected.lock().unwrap(), ["peer-a"]);
    // Same mesh secret, other token: the entry is bound to A's cache key and key.
    logs();
    let c = GithubClient::new(
        GithubToken::new("another-fake-token"),
        ClientConfig {
            base_url: api.uri(),
            policy: test_policy(),
            ..ClientConfig::default()
        },
        GithubCache::in_memory(1 << 20).unwrap(),
        Arc::new(clock.clone()),
    )
    .unwrap();
    let mesh_c = FakeMesh::with(vec![("peer-a", Answer::From(export_a))]);
    c.enable_sharing(Arc::new(mesh_c), MESH_SECRET);
    c.workflow_runs("PyGithub", "PyGithub", &RunFilter::default())
        .await
        .unwrap();
    let s = c.cache_stats();
    assert_eq!((s.peer_hits, s.misses), (0, 1));
    assert_eq!(received(&api).await, 3);
}

#[tokio::test]
async fn stale_peer_entry_makes_the_request_conditional() {
    let (api, _) = runs_server(1, 1).await;
    let clock = ManualClock::new(1_700_000_000_000);
    let a = mem_client(&api.uri(), &clock);
    let export_a = a.enable_sharing(Arc::new(FakeMesh::default()), MESH_SECRET);
    let first = runs(&a).await;
    // Past the 30 s window: A's entry is stale, but its ETag is good.
    clock.advance(60_000);
    let b = mem_client(&api.uri(), &clock);
    let mesh_b = FakeMesh::with(vec![("peer-a", Answer::From(export_a))]);
    b.enable_sharing(Arc::new(mesh_b.clone()), MESH_SECRET);
    assert_eq!(runs(&b).await, first);
    let s = b.cache_stats();
    assert_eq!(
        (s.peer_hits, s.not_modified, s.misses, s.api_calls),
        (0, 1, 0, 1)
    );
    // Revalidated: announced with a new window.
    assert_eq!(
        mesh_b.announced.lock().unwrap()[0].1,
        1_700_000_000_000 + 60_000 + 30_000
    );
}

#[tokio::test]
async fn slow_peers_cost_at_most_the_budget() {
    let (api, _) = runs_server(1, 0).await;
    let clock = ManualClock::new(1_700_000_000_000);
    let b = mem_client(&api.uri(), &clock);
    let mesh_b = FakeMesh::with(vec![("slow", Answer::Slow), ("slow2", Answer::Slow)]);
    b.enable_sharing(Arc::new(mesh_b.clone()), MESH_SECRET);
    let t0 = std::time::Instant::now();
    runs(&b).await;
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    // The budget ran out on the first: the second was never asked.
    assert_eq!(*mesh_b.asked.lock().unwrap(), ["slow"]);
    assert_eq!(b.cache_stats().misses, 1);
}

#[tokio::test]
async fn revalidation_skips_peers_and_goes_to_github() {
    let api = MockServer::start().await;
    let r = rec("Repository.testGetWorkflowJob.02");
    Mock::given(method("GET"))
        .and(path(r.path.as_str()))
        .respond_with(replay(&r, &api.uri(), "http://unused"))
        .expect(2)
        .mount(&api)
        .await;
    let clock = ManualClock::new(1_700_000_000_000);
    let a = mem_client(&api.uri(), &clock);
    let export_a = a.enable_sharing(Arc::new(FakeMesh::default()), MESH_SECRET);
    let job = a.job("PyGithub", "PyGithub", 54251022208).await.unwrap();
    let b = mem_client(&api.uri(), &clock);
    let mesh_b = FakeMesh::with(vec![("peer-a", Answer::From(export_a))]);
    b.enable_sharing(Arc::new(mesh_b.clone()), MESH_SECRET);
    // The autoscaler's re-check wants GitHub's answer now, not a peer's fresh copy.
    let now = b
        .job_now("PyGithub", "PyGithub", 54251022208)
        .await
        .unwrap();
    assert_eq!(now.id, job.id);
    assert!(mesh_b.asked.lock().unwrap().is_empty());
    assert_eq!(b.cache_stats().peer_hits, 0);
    assert_eq!(received(&api).await, 2);
}
