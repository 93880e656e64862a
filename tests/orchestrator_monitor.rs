//! The failed-run monitor, its fixes and reports against a fake GitHub (wiremock on 127.0.0.1)
//! built from REAL recorded responses in `shared/fixtures/github` and real failed job logs from
//! `shared/fixtures/logs/dev`.
//!
//! What is recorded and what the test builds (generic rules, no fixture special-cased):
//! - the failed run is PyGithub's recorded run 3881497935 (`WorkflowRun.test_rerun_failed_jobs.01`,
//!   conclusion `failure`, attempt 2), served inside a runs listing with the recorded listing's
//!   headers (`Repository.testGetWorkflowRuns.02`); a second failed run of the same workflow is
//!   the recorded run 3910280793 (`WorkflowRun.test_rerun.01`). Where a scenario needs another
//!   attempt or a later update, only `run_attempt`/`updated_at` are changed;
//! - its jobs are the recorded jobs of that run (`WorkflowRun.test_jobs.01`, all `success` when
//!   recorded): the scenario sets some jobs' `conclusion` (and failing step) to `failure`,
//!   `timed_out` or `cancelled`;
//! - the job-log endpoint answers the recorded `302` (`WorkflowJob.testAttributes.01`) whose
//!   `Location` (a signed URL on another host) is moved to a second fake server, with the job id
//!   put in its path so each job gets its own log; that server answers a real dev log;
//! - annotations are octocrab's recorded `check_run_annotations.json`;
//! - `rerun-failed-jobs` answers the recorded `201` (`WorkflowRun.test_rerun_failed_jobs.02`);
//! - issues and commit comments have no recording: their answers are built in the shape of the
//!   GitHub docs (`201` with `id`, `number`, `html_url`) and the requests' bodies are checked;
//! - patches (`--allow-push`): the repository is the recorded `GET /repos/PyGithub/PyGithub`
//!   (`Repository.testGetWorkflowRuns.01`, default branch `master`), the run's branch the
//!   recorded `GET …/branches/{b}` (`Workflow.testCreateDispatchWithBranch.04`, renamed);
//!   contents, Git references and pull requests have no recording and are built in the shape
//!   of the GitHub docs, with the recorded 422's headers for the "already exists" answers.
//!
//! Hop-by-hop and encoding headers are dropped from replays since bodies are re-serialized.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use base64::Engine;
use flotilla::clock::{Clock, ManualClock, SharedClock};
use flotilla::github::cache::GithubCache;
use flotilla::github::ratelimit::RetryPolicy;
use flotilla::github::types::parse_timestamp;
use flotilla::github::{ClientConfig, GithubClient, GithubToken};
use flotilla::orchestrator::fixes::{ExecOptions, FixExecutor, FixPolicy, FixResult};
use flotilla::orchestrator::monitor::{Monitor, RepoRef};
use flotilla::orchestrator::patterns::{FixAction, IssueType, Severity};
use flotilla::orchestrator::report::{FAILURE_REPORT, RunSummary, SUCCESS_REPORT, write_reports};
use flotilla::orchestrator::store::{
    IssueFilter, IssueRecord, IssueStatus, IssueStore, UpsertKind, apply_schema,
};
use rusqlite::Connection;
use serde_json::{Value, json};
use wiremock::matchers::{any, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const TOKEN: &str = "fake-gh-token-0123456789abcdefSECRET";
const OWNER: &str = "PyGithub";
const NAME: &str = "PyGithub";
const RUN: u64 = 3_881_497_935;
const RUN2: u64 = 3_910_280_793;
/// Recorded job ids of run 3881497935, in order.
const JOBS: [u64; 5] = [
    10_545_727_758,
    10_545_727_888,
    10_545_728_039,
    10_545_728_190,
    10_545_728_356,
];

fn shared(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures")).join(rel)
}

fn dev_log(name: &str) -> String {
    std::fs::read_to_string(shared(&format!("logs/dev/{name}.log"))).unwrap()
}

/// One recorded exchange of `pygithub_extracted`.
struct Rec {
    headers: Vec<(String, String)>,
    status: u16,
    body: Value,
}

fn rec(name: &str) -> Rec {
    let p = shared(&format!("github/pygithub_extracted/{name}.json"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    Rec {
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
        status: v["status"].as_u64().unwrap() as u16,
        body: v["body"].clone(),
    }
}

const DROP: &[&str] = &[
    "content-encoding",
    "content-length",
    "transfer-encoding",
    "status",
    "connection",
];

/// Absolute URLs: `api.github.com` → the fake API, any other host → the fake blob server.
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

/// The recorded headers and status with `body` as the JSON body.
fn replay_with(r: &Rec, body: &Value) -> ResponseTemplate {
    let mut t = ResponseTemplate::new(r.status);
    for (k, v) in &r.headers {
        if !DROP.contains(&k.to_ascii_lowercase().as_str()) {
            t = t.append_header(k.as_str(), v.as_str());
        }
    }
    t.set_body_bytes(serde_json::to_vec(body).unwrap())
}

fn json_response(v: &Value, status: u16) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("content-type", "application/json; charset=utf-8")
        .set_body_bytes(serde_json::to_vec(v).unwrap())
}

fn t(s: &str) -> i64 {
    parse_timestamp(s).unwrap()
}

/// The recorded failed run, with `run_attempt` and `updated_at` set.
fn failed_run(attempt: u32, updated_at: &str) -> Value {
    let mut r = rec("WorkflowRun.test_rerun_failed_jobs.01").body;
    assert_eq!(r["conclusion"], "failure");
    r["run_attempt"] = json!(attempt);
    r["updated_at"] = json!(updated_at);
    r
}

/// The recorded second failed run of the same workflow, `updated_at` moved into the window.
fn second_failed_run(updated_at: &str) -> Value {
    let mut r = rec("WorkflowRun.test_rerun.01").body;
    assert_eq!(r["conclusion"], "failure");
    r["updated_at"] = json!(updated_at);
    r
}

/// A recorded successful run (must never be analyzed).
fn successful_run() -> Value {
    let r = rec("WorkflowJob.setUp.02").body;
    assert_eq!(r["conclusion"], "success");
    r
}

fn runs_listing(runs: &[Value]) -> ResponseTemplate {
    let r = rec("Repository.testGetWorkflowRuns.02");
    replay_with(
        &r,
        &json!({"total_count": runs.len(), "workflow_runs": runs}),
    )
}

/// The recorded jobs of run 3881497935 moved to `run_id`/`attempt`, with `outcomes[i]` =
/// `(conclusion, failing step)` applied to job `i` (`None` keeps the recorded `success`).
fn jobs_listing(run_id: u64, attempt: u32, outcomes: &[Option<(&str, &str)>]) -> ResponseTemplate {
    let r = rec("WorkflowRun.test_jobs.01");
    let mut body = r.body.clone();
    for (i, job) in body["jobs"].as_array_mut().unwrap().iter_mut().enumerate() {
        job["run_id"] = json!(run_id);
        job["run_attempt"] = json!(attempt);
        if let Some(Some((conclusion, step))) = outcomes.get(i) {
            job["conclusion"] = json!(conclusion);
            for s in job["steps"].as_array_mut().unwrap() {
                if s["name"] == *step {
                    s["conclusion"] = json!(if *conclusion == "failure" {
                        "failure"
                    } else {
                        "cancelled"
                    });
                }
            }
        }
    }
    replay_with(&r, &body)
}

fn test_policy() -> RetryPolicy {
    RetryPolicy {
        secondary_base: Duration::from_millis(20),
        server_error_base: Duration::from_millis(10),
        server_error_retries: 1,
        max_wait: Duration::from_secs(2),
        ..RetryPolicy::default()
    }
}

/// The fake GitHub: API server and a second origin for signed log URLs.
struct Fake {
    api: MockServer,
    blob: MockServer,
    clock: ManualClock,
    client: GithubClient,
    conn: Connection,
}

impl Fake {
    async fn new(now: &str) -> Fake {
        let api = MockServer::start().await;
        let blob = MockServer::start().await;
        let clock = ManualClock::new(t(now));
        let shared_clock: SharedClock = Arc::new(clock.clone());
        let client = GithubClient::new(
            GithubToken::new(TOKEN),
            ClientConfig {
                base_url: api.uri(),
                policy: test_policy(),
                ..ClientConfig::default()
            },
            GithubCache::in_memory(1 << 22).unwrap(),
            shared_clock,
        )
        .unwrap();
        let conn = Connection::open_in_memory().unwrap();
        apply_schema(&conn).unwrap();
        Fake {
            api,
            blob,
            clock,
            client,
            conn,
        }
    }

    fn shared_clock(&self) -> SharedClock {
        Arc::new(self.clock.clone())
    }

    fn monitor(&self) -> Monitor<'_> {
        Monitor::new(&self.client, &self.conn, self.shared_clock())
    }

    fn fixer(&self) -> FixExecutor<'_> {
        FixExecutor::new(
            &self.client,
            &self.conn,
            self.shared_clock(),
            FixPolicy::default(),
        )
    }

    fn store(&self) -> IssueStore<'_> {
        IssueStore::new(&self.conn)
    }

    fn repo(&self) -> Vec<RepoRef> {
        vec![RepoRef::new(OWNER, NAME)]
    }

    async fn mount_runs(&self, runs: &[Value]) {
        Mock::given(method("GET"))
            .and(path(format!("/repos/{OWNER}/{NAME}/actions/runs")))
            .respond_with(runs_listing(runs))
            .mount(&self.api)
            .await;
    }

    async fn mount_jobs(&self, run_id: u64, attempt: u32, outcomes: &[Option<(&str, &str)>]) {
        Mock::given(method("GET"))
            .and(path(format!(
                "/repos/{OWNER}/{NAME}/actions/runs/{run_id}/jobs"
            )))
            .and(query_param("filter", "latest"))
            .respond_with(jobs_listing(run_id, attempt, outcomes))
            .mount(&self.api)
            .await;
    }

    /// The job's log endpoint answers the recorded 302 to a per-job signed URL on the blob
    /// server, which serves the dev log `log`.
    async fn mount_log(&self, job_id: u64, log: &str) {
        let r = rec("WorkflowJob.testAttributes.01");
        let loc = r
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("location"))
            .unwrap()
            .1
            .replace(
                "/signedlogcontent/5?",
                &format!("/signedlogcontent/{job_id}?"),
            );
        let loc = rewrite_url(&loc, &self.api.uri(), &self.blob.uri());
        let blob_path = loc
            .strip_prefix(&self.blob.uri())
            .unwrap()
            .split('?')
            .next()
            .unwrap()
            .to_string();
        let mut tpl = ResponseTemplate::new(r.status);
        for (k, v) in &r.headers {
            let lk = k.to_ascii_lowercase();
            if DROP.contains(&lk.as_str()) {
                continue;
            }
            let v = if lk == "location" {
                loc.clone()
            } else {
                v.clone()
            };
            tpl = tpl.append_header(k.as_str(), v.as_str());
        }
        Mock::given(method("GET"))
            .and(path(format!(
                "/repos/{OWNER}/{NAME}/actions/jobs/{job_id}/logs"
            )))
            .respond_with(tpl)
            .mount(&self.api)
            .await;
        Mock::given(method("GET"))
            .and(path(blob_path))
            .and(query_param("urlSigningMethod", "HMACV1"))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("content-type", "text/plain")
                    .set_body_bytes(dev_log(log).into_bytes()),
            )
            .mount(&self.blob)
            .await;
    }

    /// A job whose log must never be fetched.
    async fn forbid_log(&self, job_id: u64) {
        Mock::given(method("GET"))
            .and(path(format!(
                "/repos/{OWNER}/{NAME}/actions/jobs/{job_id}/logs"
            )))
            .respond_with(ResponseTemplate::new(500))
            .expect(0)
            .named(format!("log of successful job {job_id}"))
            .mount(&self.api)
            .await;
    }

    async fn mount_annotations(&self, job_id: u64) {
        let body: Value = serde_json::from_str(
            &std::fs::read_to_string(shared("github/octocrab/check_run_annotations.json")).unwrap(),
        )
        .unwrap();
        Mock::given(method("GET"))
            .and(path(format!(
                "/repos/{OWNER}/{NAME}/check-runs/{job_id}/annotations"
            )))
            .respond_with(json_response(&body, 200))
            .mount(&self.api)
            .await;
    }

    async fn mount_rerun(&self, run_id: u64) {
        let r = rec("WorkflowRun.test_rerun_failed_jobs.02");
        Mock::given(method("POST"))
            .and(path(format!(
                "/repos/{OWNER}/{NAME}/actions/runs/{run_id}/rerun-failed-jobs"
            )))
            .respond_with(replay_with(&r, &r.body))
            .mount(&self.api)
            .await;
    }

    /// Issue endpoints: listing (none open), creation (#77), reading #77 (open), comments,
    /// commit comments.
    async fn mount_issue_endpoints(&self) {
        let issues = format!("/repos/{OWNER}/{NAME}/issues");
        Mock::given(method("GET"))
            .and(path(issues.clone()))
            .and(query_param("state", "open"))
            .and(query_param("labels", "flotilla"))
            .respond_with(json_response(&json!([]), 200))
            .mount(&self.api)
            .await;
        Mock::given(method("POST"))
            .and(path(issues.clone()))
            .respond_with(|req: &Request| {
                let b: Value = serde_json::from_slice(&req.body).unwrap();
                json_response(
                    &json!({"id": 1_000_077, "number": 77, "title": b["title"], "state": "open",
                            "html_url": "https://github.com/PyGithub/PyGithub/issues/77"}),
                    201,
                )
            })
            .mount(&self.api)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("{issues}/77")))
            .respond_with(json_response(
                &json!({"id": 1_000_077, "number": 77, "title": "[flotilla] CI: test_failure",
                        "state": "open"}),
                200,
            ))
            .mount(&self.api)
            .await;
        Mock::given(method("POST"))
            .and(path(format!("{issues}/77/comments")))
            .respond_with(json_response(
                &json!({"id": 501, "body": "…",
                        "html_url": "https://github.com/PyGithub/PyGithub/issues/77#issuecomment-501"}),
                201,
            ))
            .mount(&self.api)
            .await;
        Mock::given(method("POST"))
            .and(|req: &Request| {
                req.url
                    .path()
                    .starts_with(&format!("/repos/{OWNER}/{NAME}/commits/"))
                    && req.url.path().ends_with("/comments")
            })
            .respond_with(|req: &Request| {
                let sha = req.url.path().split('/').nth(5).unwrap_or("").to_string();
                json_response(&json!({"id": 9001, "body": "…", "commit_id": sha}), 201)
            })
            .mount(&self.api)
            .await;
    }

    fn fixer_with(&self, policy: FixPolicy) -> FixExecutor<'_> {
        FixExecutor::new(&self.client, &self.conn, self.shared_clock(), policy)
    }

    /// The recorded repository, its default branch replaced when `default_branch` is given.
    async fn mount_repo(&self, default_branch: Option<&str>) {
        let r = rec("Repository.testGetWorkflowRuns.01");
        let mut body = r.body.clone();
        if let Some(b) = default_branch {
            body["default_branch"] = json!(b);
        }
        Mock::given(method("GET"))
            .and(path(format!("/repos/{OWNER}/{NAME}")))
            .respond_with(replay_with(&r, &body))
            .mount(&self.api)
            .await;
    }

    /// The recorded branch answer, renamed to `name` (the run's branch exists).
    async fn mount_branch(&self, name: &str) {
        let r = rec("Workflow.testCreateDispatchWithBranch.04");
        let mut body = r.body.clone();
        body["name"] = json!(name);
        Mock::given(method("GET"))
            .and(path(format!("/repos/{OWNER}/{NAME}/branches/{name}")))
            .respond_with(replay_with(&r, &body))
            .mount(&self.api)
            .await;
    }

    /// `GET …/contents/{file}?ref={git_ref}`: the file (base64 wrapped at 60 columns, as GitHub
    /// sends it) with blob `blob`, or GitHub's 404.
    async fn mount_file(&self, file: &str, git_ref: &str, content: Option<&[u8]>, blob: &str) {
        let resp = match content {
            Some(c) => {
                let b64 = base64::engine::general_purpose::STANDARD.encode(c);
                let wrapped: Vec<String> = b64
                    .as_bytes()
                    .chunks(60)
                    .map(|l| format!("{}\n", String::from_utf8_lossy(l)))
                    .collect();
                json_response(
                    &json!({
                        "type": "file", "encoding": "base64", "size": c.len(),
                        "name": file.rsplit('/').next().unwrap(), "path": file,
                        "content": wrapped.concat(), "sha": blob,
                        "url": format!("https://api.github.com/repos/{OWNER}/{NAME}/contents/{file}?ref={git_ref}"),
                        "html_url": format!("https://github.com/{OWNER}/{NAME}/blob/{git_ref}/{file}"),
                    }),
                    200,
                )
            }
            None => json_response(
                &json!({"message": "Not Found",
                        "documentation_url": "https://docs.github.com/rest/repos/contents#get-repository-content",
                        "status": "404"}),
                404,
            ),
        };
        Mock::given(method("GET"))
            .and(path(format!("/repos/{OWNER}/{NAME}/contents/{file}")))
            .and(query_param("ref", git_ref))
            .respond_with(resp)
            .mount(&self.api)
            .await;
    }

    /// `POST …/git/refs`: `201` with the reference, or (`exists`) GitHub's
    /// `422 Reference already exists` with the recorded 422's headers.
    async fn mount_create_ref(&self, exists: bool) {
        let refs = Mock::given(method("POST")).and(path(format!("/repos/{OWNER}/{NAME}/git/refs")));
        if exists {
            let r = rec("Workflow.testCreateDispatchException.03");
            refs.respond_with(replay_with(
                &r,
                &json!({"message": "Reference already exists",
                        "documentation_url": "https://docs.github.com/rest/git/refs#create-a-reference",
                        "status": "422"}),
            ))
            .mount(&self.api)
            .await;
            return;
        }
        refs.respond_with(|req: &Request| {
            let b: Value = serde_json::from_slice(&req.body).unwrap();
            let (r, sha) = (b["ref"].as_str().unwrap(), b["sha"].as_str().unwrap());
            json_response(
                &json!({"ref": r, "node_id": "REF_kwDO",
                        "url": format!("https://api.github.com/repos/{OWNER}/{NAME}/git/{r}"),
                        "object": {"sha": sha, "type": "commit",
                                   "url": format!("https://api.github.com/repos/{OWNER}/{NAME}/git/commits/{sha}")}}),
                201,
            )
        })
        .mount(&self.api)
        .await;
    }

    /// `PUT …/contents/{file}`: `200` with the new entry and commit `c0ffee…`.
    async fn mount_put(&self, file: &str) {
        let file = file.to_string();
        Mock::given(method("PUT"))
            .and(path(format!("/repos/{OWNER}/{NAME}/contents/{file}")))
            .respond_with(move |_: &Request| {
                json_response(
                    &json!({"content": {"type": "file", "name": file.rsplit('/').next().unwrap(),
                                        "path": file, "sha": "95b966ae1c166bd92f8ae7d1c313e738c731dfc3"},
                            "commit": {"sha": "c0ffee0000000000000000000000000000000001",
                                       "html_url": format!("https://github.com/{OWNER}/{NAME}/commit/c0ffee0000000000000000000000000000000001"),
                                       "message": "flotilla"}}),
                    200,
                )
            })
            .mount(&self.api)
            .await;
    }

    /// `POST …/pulls`: `201` with pull request #5, or (`exists`) GitHub's 422 and the open
    /// pull request #5 from the branch in `GET …/pulls?head=…&state=open`.
    async fn mount_pulls(&self, exists: bool) {
        let pulls = format!("/repos/{OWNER}/{NAME}/pulls");
        let pr = |b: &Value| {
            json!({"id": 1_000_005, "number": 5, "state": "open", "title": b["title"],
                   "html_url": format!("https://github.com/{OWNER}/{NAME}/pull/5"),
                   "head": {"ref": b["head"], "sha": "c0ffee0000000000000000000000000000000001"},
                   "base": {"ref": b["base"], "sha": "9268749d34be56976fbc1fedd1a72aad057ab751"}})
        };
        if exists {
            let r = rec("Workflow.testCreateDispatchException.03");
            let branch = "flotilla/fix-python_import_error-3881497935";
            Mock::given(method("POST"))
                .and(path(pulls.clone()))
                .respond_with(replay_with(
                    &r,
                    &json!({"message": "Validation Failed",
                            "errors": [{"resource": "PullRequest", "code": "custom",
                                        "message": format!("A pull request already exists for {OWNER}:{branch}.")}],
                            "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request",
                            "status": "422"}),
                ))
                .mount(&self.api)
                .await;
            Mock::given(method("GET"))
                .and(path(pulls))
                .and(query_param("head", format!("{OWNER}:{branch}")))
                .and(query_param("state", "open"))
                .respond_with(json_response(
                    &json!([pr(
                        &json!({"title": "[flotilla] CI: earlier", "head": branch, "base": "main"})
                    )]),
                    200,
                ))
                .mount(&self.api)
                .await;
        } else {
            Mock::given(method("POST"))
                .and(path(pulls))
                .respond_with(move |req: &Request| {
                    let b: Value = serde_json::from_slice(&req.body).unwrap();
                    json_response(&pr(&b), 201)
                })
                .mount(&self.api)
                .await;
        }
    }

    /// Record a code-change issue of the recorded failed run (as the monitor would).
    fn code_issue(
        &self,
        issue_type: IssueType,
        action: FixAction,
        args: &[(&str, &str)],
        evidence: &str,
    ) -> String {
        let run = failed_run(2, "2024-07-30T21:36:21Z");
        self.store()
            .upsert(
                &IssueRecord {
                    repo: format!("{OWNER}/{NAME}"),
                    workflow: "CI".into(),
                    workflow_path: Some(".github/workflows/ci.yml".into()),
                    run_id: RUN,
                    run_attempt: 2,
                    run_url: Some(run["html_url"].as_str().unwrap().to_string()),
                    head_sha: Some(run["head_sha"].as_str().unwrap().to_string()),
                    head_branch: Some(run["head_branch"].as_str().unwrap().to_string()),
                    job_id: Some(JOBS[0]),
                    job_name: Some("test (Python 3.7)".into()),
                    issue_type,
                    severity: Severity::High,
                    auto_fixable: true,
                    fix_description: "Fix it".into(),
                    fix_action: Some(action),
                    fix_args: args
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    primary: true,
                    evidence: evidence.into(),
                    evidence_lines: vec![40],
                    context: format!(">    40 | {evidence}\n"),
                },
                self.clock.now_ms(),
            )
            .unwrap()
            .id
    }

    async fn requests(&self, m: &str, p: &str) -> Vec<Request> {
        self.api
            .received_requests()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.method.as_str() == m && r.url.path() == p)
            .collect()
    }

    async fn posts(&self) -> Vec<Request> {
        self.api
            .received_requests()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.method.as_str() != "GET")
            .collect()
    }
}

fn by_type(
    store: &IssueStore<'_>,
    run_id: u64,
    t: IssueType,
) -> flotilla::orchestrator::store::StoredIssue {
    store
        .list_for_run(&format!("{OWNER}/{NAME}"), run_id)
        .unwrap()
        .into_iter()
        .find(|i| i.record.issue_type == t)
        .unwrap_or_else(|| panic!("no {t} issue for run {run_id}"))
}

// ---------------------------------------------------------------------------------------------

/// A check finds the failed run, fetches only the failed and timed-out jobs' logs, classifies
/// them (the timed-out job through its conclusion), stores one issue per type; a second check
/// uses the cursor and skips the analyzed attempt; a later attempt updates the same issues.
#[tokio::test]
async fn check_finds_classifies_and_dedups() {
    let f = Fake::new("2024-07-30T21:40:00Z").await;
    f.mount_runs(&[failed_run(2, "2024-07-30T21:36:21Z"), successful_run()])
        .await;
    f.mount_jobs(
        RUN,
        2,
        &[
            Some(("failure", "Run tests")),
            Some(("timed_out", "Run tests")),
        ],
    )
    .await;
    f.mount_log(JOBS[0], "dev-08").await;
    f.mount_log(JOBS[1], "dev-14").await;
    for j in &JOBS[2..] {
        f.forbid_log(*j).await;
    }
    f.mount_annotations(JOBS[1]).await;
    let monitor = f.monitor();

    let report = monitor.check(&f.repo()).await;
    assert!(report.errors().is_empty(), "{:?}", report.errors());
    let rc = &report.repos[0];
    assert_eq!(rc.runs_listed, 2);
    assert_eq!(rc.runs_analyzed, vec![RUN]);
    assert_eq!(rc.logs_fetched, 2);
    assert!(rc.cursor_advanced);
    // Listing: completed runs, created within a day before the window (first look-back 24 h).
    let listing = f
        .requests("GET", &format!("/repos/{OWNER}/{NAME}/actions/runs"))
        .await;
    assert_eq!(listing.len(), 1);
    let q: Vec<(String, String)> = listing[0].url.query_pairs().into_owned().collect();
    assert!(q.contains(&("status".into(), "completed".into())), "{q:?}");
    assert!(
        q.contains(&("created".into(), ">=2024-07-28T21:40:00Z".into())),
        "{q:?}"
    );
    // Annotations only for the timed-out job.
    let ann = |j: u64| format!("/repos/{OWNER}/{NAME}/check-runs/{j}/annotations");
    assert_eq!(f.requests("GET", &ann(JOBS[1])).await.len(), 1);
    assert!(f.requests("GET", &ann(JOBS[0])).await.is_empty());

    let store = f.store();
    let issues = store.list_for_run(&format!("{OWNER}/{NAME}"), RUN).unwrap();
    assert_eq!(issues.len(), rc.issues.len());
    let mut types: Vec<_> = issues.iter().map(|i| i.record.issue_type).collect();
    types.sort();
    types.dedup();
    assert_eq!(types.len(), issues.len(), "one issue per type");
    let tf = by_type(&store, RUN, IssueType::TestFailure);
    assert!(tf.record.primary);
    assert_eq!(tf.record.job_name.as_deref(), Some("test (Python 3.7)"));
    assert_eq!(tf.record.job_id, Some(JOBS[0]));
    assert_eq!(tf.record.workflow, "CI");
    assert_eq!(
        tf.record.workflow_path.as_deref(),
        Some(".github/workflows/ci.yml")
    );
    assert_eq!(tf.record.run_attempt, 2);
    assert_eq!(
        tf.record.run_url.as_deref(),
        Some("https://github.com/PyGithub/PyGithub/actions/runs/3881497935")
    );
    assert_eq!(tf.record.head_branch.as_deref(), Some("main"));
    assert!(!tf.record.evidence_lines.is_empty());
    for l in &tf.record.evidence_lines {
        assert!(
            tf.record.context.contains(&format!(">{l:>6} | ")),
            "{}",
            tf.record.context
        );
    }
    assert!(!tf.record.context.contains('\x1b'));
    assert!(tf.id.starts_with("iss-"));
    assert_eq!(tf.status, IssueStatus::Open);
    // The timed-out job's log ends like a cancelled one; its conclusion makes it a timeout.
    let to = by_type(&store, RUN, IssueType::Timeout);
    assert!(to.record.primary);
    assert_eq!(to.record.job_id, Some(JOBS[1]));
    assert!(to.record.evidence.contains("The operation was canceled."));
    assert!(
        issues
            .iter()
            .all(|i| i.record.issue_type != IssueType::Cancelled)
    );
    // Secondary findings are kept, marked as such.
    assert!(issues.iter().any(|i| !i.record.primary));
    let count = store.count().unwrap();

    // Second check, a minute later: window from the cursor minus the overlap; the run's
    // attempt was analyzed, so no job or log is fetched again and nothing is duplicated.
    f.clock.advance(60_000);
    let report2 = monitor.check(&f.repo()).await;
    assert!(report2.errors().is_empty(), "{:?}", report2.errors());
    assert_eq!(report2.repos[0].since, t("2024-07-30T21:30:00Z"));
    assert!(report2.repos[0].runs_analyzed.is_empty());
    assert_eq!(store.count().unwrap(), count);
    let listing = f
        .requests("GET", &format!("/repos/{OWNER}/{NAME}/actions/runs"))
        .await;
    assert_eq!(listing.len(), 2);
    let q: Vec<(String, String)> = listing[1].url.query_pairs().into_owned().collect();
    assert!(
        q.contains(&("created".into(), ">=2024-07-29T21:30:00Z".into())),
        "{q:?}"
    );
    let jobs_path = format!("/repos/{OWNER}/{NAME}/actions/runs/{RUN}/jobs");
    assert_eq!(f.requests("GET", &jobs_path).await.len(), 1);
    assert_eq!(
        store.cursor(&format!("{OWNER}/{NAME}")).unwrap(),
        Some(t("2024-07-30T21:41:00Z"))
    );

    // The run is re-run and fails again (attempt 3): the same issues are updated, not added.
    f.api.verify().await;
    f.api.reset().await;
    f.blob.reset().await;
    f.mount_runs(&[failed_run(3, "2024-07-30T22:00:00Z")]).await;
    f.mount_jobs(
        RUN,
        3,
        &[
            Some(("failure", "Run tests")),
            Some(("timed_out", "Run tests")),
        ],
    )
    .await;
    f.mount_log(JOBS[0], "dev-08").await;
    f.mount_log(JOBS[1], "dev-14").await;
    f.mount_annotations(JOBS[1]).await;
    for j in &JOBS[2..] {
        f.forbid_log(*j).await;
    }
    f.clock.set(t("2024-07-30T22:05:00Z"));
    let report3 = monitor.check(&f.repo()).await;
    assert!(report3.errors().is_empty(), "{:?}", report3.errors());
    assert_eq!(report3.repos[0].runs_analyzed, vec![RUN]);
    assert_eq!(report3.new_issues(), 0);
    assert!(
        report3.repos[0]
            .issues
            .iter()
            .all(|c| c.kind == UpsertKind::Updated)
    );
    assert_eq!(store.count().unwrap(), count);
    let tf3 = by_type(&store, RUN, IssueType::TestFailure);
    assert_eq!(tf3.id, tf.id);
    assert_eq!(tf3.record.run_attempt, 3);
}

/// Flaky class → re-run requested; the loop stops at the retry bound (the 4th attempt is
/// refused and the issue stays open with the reason).
#[tokio::test]
async fn flaky_rerun_loop_stops_at_retry_bound() {
    let f = Fake::new("2024-07-30T21:40:00Z").await;
    let attempt = Arc::new(AtomicU32::new(1));
    let a = attempt.clone();
    Mock::given(method("GET"))
        .and(path(format!("/repos/{OWNER}/{NAME}/actions/runs")))
        .respond_with(move |_: &Request| {
            let n = a.load(Ordering::SeqCst);
            let updated =
                flotilla::clock::rfc3339(t("2024-07-30T21:36:21Z") + i64::from(n - 1) * 600_000);
            runs_listing(&[failed_run(n, &updated)])
        })
        .mount(&f.api)
        .await;
    let a = attempt.clone();
    Mock::given(method("GET"))
        .and(path(format!(
            "/repos/{OWNER}/{NAME}/actions/runs/{RUN}/jobs"
        )))
        .respond_with(move |_: &Request| {
            jobs_listing(
                RUN,
                a.load(Ordering::SeqCst),
                &[Some(("failure", "Install tox"))],
            )
        })
        .mount(&f.api)
        .await;
    f.mount_log(JOBS[0], "dev-06").await;
    for j in &JOBS[1..] {
        f.forbid_log(*j).await;
    }
    f.mount_rerun(RUN).await;
    let monitor = f.monitor();
    let fixer = f.fixer();
    let store = f.store();
    let rerun_path = format!("/repos/{OWNER}/{NAME}/actions/runs/{RUN}/rerun-failed-jobs");

    for n in 1..=4u32 {
        let report = monitor.check(&f.repo()).await;
        assert!(report.errors().is_empty(), "{:?}", report.errors());
        assert_eq!(report.repos[0].runs_analyzed, vec![RUN], "attempt {n}");
        let net = by_type(&store, RUN, IssueType::NetworkError);
        assert_eq!(net.status, IssueStatus::Open, "attempt {n}");
        assert_eq!(net.record.run_attempt, n);
        let outcomes = fixer
            .apply(&report.issue_ids(), ExecOptions::default())
            .await;
        let o = outcomes.iter().find(|o| o.issue_id == net.id).unwrap();
        let net = store.get(&net.id).unwrap().unwrap();
        if n <= 3 {
            assert_eq!(o.result, FixResult::RerunRequested { rerun: n });
            assert!(o.applied);
            assert_eq!(net.status, IssueStatus::Fixed);
            assert_eq!(net.reruns, n);
        } else {
            let FixResult::Held { reason } = &o.result else {
                panic!("4th attempt must be refused: {o:?}")
            };
            assert!(reason.contains("retry bound reached"), "{reason}");
            assert!(!o.applied);
            assert_eq!(net.status, IssueStatus::Open);
            assert!(net.status_reason.contains("retry bound reached"));
            assert_eq!(net.reruns, 3);
        }
        // The secondary finding (the generic exit code) is not acted on.
        for s in outcomes.iter().filter(|o| o.issue_id != net.id) {
            assert!(matches!(s.result, FixResult::Ignored { .. }), "{s:?}");
        }
        assert_eq!(
            f.requests("POST", &rerun_path).await.len(),
            n.min(3) as usize
        );
        // GitHub re-runs the failed jobs; the new attempt fails the same way.
        attempt.store(n + 1, Ordering::SeqCst);
        f.clock.advance(600_000);
    }
    // Only re-runs were posted: no issue, no comment.
    assert_eq!(f.posts().await.len(), 3);
}

/// Non-flaky class → one GitHub issue opened (with the evidence) and a commit comment; a
/// second run of the same class comments on that issue instead of opening another.
#[tokio::test]
async fn non_flaky_opens_one_issue_then_updates_it() {
    let f = Fake::new("2024-07-30T21:40:00Z").await;
    f.mount_runs(&[failed_run(2, "2024-07-30T21:36:21Z")]).await;
    f.mount_jobs(RUN, 2, &[Some(("failure", "Run tests"))])
        .await;
    f.mount_log(JOBS[0], "dev-08").await;
    for j in &JOBS[1..] {
        f.forbid_log(*j).await;
    }
    f.mount_issue_endpoints().await;
    let monitor = f.monitor();
    let fixer = f.fixer();
    let store = f.store();

    let report = monitor.check(&f.repo()).await;
    assert!(report.errors().is_empty(), "{:?}", report.errors());
    let outcomes = fixer
        .apply_open(None, ExecOptions::default())
        .await
        .unwrap();
    let tf = by_type(&store, RUN, IssueType::TestFailure);
    let o = outcomes.iter().find(|o| o.issue_id == tf.id).unwrap();
    assert_eq!(
        o.result,
        FixResult::IssueOpened {
            number: 77,
            url: Some("https://github.com/PyGithub/PyGithub/issues/77".into())
        }
    );
    assert!(o.notes.is_empty(), "{:?}", o.notes);
    assert_eq!(tf.status, IssueStatus::Fixed);
    assert_eq!(tf.github_issue_number, Some(77));
    let created = f
        .requests("POST", &format!("/repos/{OWNER}/{NAME}/issues"))
        .await;
    assert_eq!(created.len(), 1);
    let body: Value = serde_json::from_slice(&created[0].body).unwrap();
    assert_eq!(body["title"], "[flotilla] CI: test_failure");
    assert_eq!(body["labels"], json!(["flotilla"]));
    let text = body["body"].as_str().unwrap();
    assert!(text.contains("https://github.com/PyGithub/PyGithub/actions/runs/3881497935"));
    assert!(text.contains("test (Python 3.7)"));
    assert!(text.contains("```text\n"));
    assert!(text.contains(&tf.record.evidence));
    assert!(text.contains(&tf.record.fix_description));
    let run_sha = failed_run(2, "x")["head_sha"].as_str().unwrap().to_string();
    let commit = f
        .requests(
            "POST",
            &format!("/repos/{OWNER}/{NAME}/commits/{run_sha}/comments"),
        )
        .await;
    assert_eq!(commit.len(), 1);
    let cb: Value = serde_json::from_slice(&commit[0].body).unwrap();
    let cb = cb["body"].as_str().unwrap();
    assert!(cb.contains("test_failure") && cb.contains("#77"), "{cb}");

    // A second failed run of the same workflow and class.
    f.clock.advance(30 * 60_000);
    f.api.verify().await;
    f.api.reset().await;
    f.blob.reset().await;
    f.mount_runs(&[
        second_failed_run("2024-07-30T22:05:00Z"),
        failed_run(2, "2024-07-30T21:36:21Z"),
    ])
    .await;
    f.mount_jobs(RUN2, 1, &[Some(("failure", "Run tests"))])
        .await;
    f.mount_log(JOBS[0], "dev-08").await;
    for j in &JOBS[1..] {
        f.forbid_log(*j).await;
    }
    f.mount_issue_endpoints().await;
    let report = monitor.check(&f.repo()).await;
    assert!(report.errors().is_empty(), "{:?}", report.errors());
    assert_eq!(report.repos[0].runs_analyzed, vec![RUN2]);
    let outcomes = fixer
        .apply_open(None, ExecOptions::default())
        .await
        .unwrap();
    let tf2 = by_type(&store, RUN2, IssueType::TestFailure);
    assert_ne!(tf2.id, tf.id);
    let o = outcomes.iter().find(|o| o.issue_id == tf2.id).unwrap();
    assert_eq!(o.result, FixResult::IssueUpdated { number: 77 });
    assert_eq!(tf2.status, IssueStatus::Fixed);
    assert!(
        f.requests("POST", &format!("/repos/{OWNER}/{NAME}/issues"))
            .await
            .is_empty(),
        "no second issue"
    );
    let comments = f
        .requests("POST", &format!("/repos/{OWNER}/{NAME}/issues/77/comments"))
        .await;
    assert_eq!(comments.len(), 1);
    let cb: Value = serde_json::from_slice(&comments[0].body).unwrap();
    assert!(cb["body"].as_str().unwrap().contains("runs/3910280793"));
    let sha2 = second_failed_run("x")["head_sha"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        f.requests(
            "POST",
            &format!("/repos/{OWNER}/{NAME}/commits/{sha2}/comments")
        )
        .await
        .len(),
        1
    );
}

/// Dry run: plans for every open issue, no POST (no request at all), no status change; a code
/// change is reported as needing `--allow-push`; a cancelled job is `cancelled`, not a timeout.
#[tokio::test]
async fn dry_run_posts_nothing_and_patches_need_allow_push() {
    let f = Fake::new("2024-07-30T21:40:00Z").await;
    f.mount_runs(&[failed_run(2, "2024-07-30T21:36:21Z")]).await;
    f.mount_jobs(
        RUN,
        2,
        &[
            Some(("failure", "Run tests")),
            Some(("failure", "Install tox")),
            Some(("cancelled", "Run tests")),
        ],
    )
    .await;
    f.mount_log(JOBS[0], "dev-08").await;
    f.mount_log(JOBS[1], "dev-06").await;
    f.mount_log(JOBS[2], "dev-14").await;
    f.mount_annotations(JOBS[2]).await;
    for j in &JOBS[3..] {
        f.forbid_log(*j).await;
    }
    let store = f.store();
    let report = f.monitor().check(&f.repo()).await;
    assert!(report.errors().is_empty(), "{:?}", report.errors());
    let cancelled = by_type(&store, RUN, IssueType::Cancelled);
    assert_eq!(cancelled.record.job_id, Some(JOBS[2]));
    assert!(
        store
            .list_for_run(&format!("{OWNER}/{NAME}"), RUN)
            .unwrap()
            .iter()
            .all(|i| i.record.issue_type != IssueType::Timeout)
    );
    // A code-change issue (as the classifier records a missing Python module).
    let patch = store
        .upsert(
            &IssueRecord {
                repo: format!("{OWNER}/{NAME}"),
                workflow: "CI".into(),
                workflow_path: None,
                run_id: RUN,
                run_attempt: 2,
                run_url: None,
                head_sha: None,
                head_branch: Some("main".into()),
                job_id: Some(JOBS[0]),
                job_name: None,
                issue_type: IssueType::PythonImportError,
                severity: Severity::High,
                auto_fixable: true,
                fix_description: "Missing Python dependency".into(),
                fix_action: Some(FixAction::AddDependency),
                fix_args: [("package".to_string(), "yaml".to_string())].into(),
                primary: true,
                evidence: "ModuleNotFoundError: No module named 'yaml'".into(),
                evidence_lines: vec![3],
                context: String::new(),
            },
            f.clock.now_ms(),
        )
        .unwrap()
        .id;
    let before = f.api.received_requests().await.unwrap().len();
    let open_before = store
        .list(IssueFilter {
            status: Some(IssueStatus::Open),
            repo: None,
        })
        .unwrap();
    let fixer = f.fixer();
    let outcomes = fixer
        .apply_open(
            None,
            ExecOptions {
                dry_run: true,
                allow_push: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(outcomes.len(), open_before.len());
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o.result, FixResult::DryRun { .. }) && !o.applied)
    );
    let would: Vec<String> = outcomes.iter().map(|o| o.result.summary()).collect();
    assert!(
        would
            .iter()
            .any(|w| w.contains("re-run failed jobs of run 3881497935")),
        "{would:?}"
    );
    assert!(
        would
            .iter()
            .any(|w| w.contains("[flotilla] CI: test_failure")),
        "{would:?}"
    );
    assert!(f.posts().await.is_empty());
    assert_eq!(f.api.received_requests().await.unwrap().len(), before);
    let open_after = store
        .list(IssueFilter {
            status: Some(IssueStatus::Open),
            repo: None,
        })
        .unwrap();
    assert_eq!(open_after, open_before, "dry run changes no status");

    // For real, but only the code change and the cancellation: no request either.
    let outcomes = fixer
        .apply(
            &[patch.clone(), cancelled.id.clone()],
            ExecOptions::default(),
        )
        .await;
    let p = outcomes.iter().find(|o| o.issue_id == patch).unwrap();
    let FixResult::NeedsAllowPush { description } = &p.result else {
        panic!("{p:?}")
    };
    assert!(description.contains("`yaml`"));
    let stored = store.get(&patch).unwrap().unwrap();
    assert_eq!(stored.status, IssueStatus::Open);
    assert!(stored.status_reason.starts_with("needs --allow-push"));
    // With --allow-push, but the run's head commit is unknown: held, nothing sent.
    let outcomes = fixer
        .apply(
            std::slice::from_ref(&patch),
            ExecOptions {
                allow_push: true,
                dry_run: false,
            },
        )
        .await;
    let FixResult::Held { reason } = &outcomes[0].result else {
        panic!("{:?}", outcomes[0])
    };
    assert!(reason.contains("head commit is unknown"), "{reason}");
    assert_eq!(
        store.get(&patch).unwrap().unwrap().status,
        IssueStatus::Open
    );
    assert_eq!(
        store.get(&cancelled.id).unwrap().unwrap().status,
        IssueStatus::Ignored
    );
    assert!(f.posts().await.is_empty());
}

/// Errors of one repository are collected; the other repository is still checked, and the
/// failing one's cursor does not move.
#[tokio::test]
async fn errors_per_repo_do_not_abort_the_check() {
    let f = Fake::new("2024-07-30T21:40:00Z").await;
    let missing = rec("SpecificExceptions.testUnknownObject.02");
    Mock::given(method("GET"))
        .and(path("/repos/PyGithub/Missing/actions/runs"))
        .respond_with(replay_with(&missing, &missing.body))
        .mount(&f.api)
        .await;
    f.mount_runs(&[failed_run(2, "2024-07-30T21:36:21Z")]).await;
    f.mount_jobs(RUN, 2, &[Some(("failure", "Run tests"))])
        .await;
    f.mount_log(JOBS[0], "dev-08").await;
    let repos = vec![RepoRef::new(OWNER, "Missing"), RepoRef::new(OWNER, NAME)];
    let report = f.monitor().check(&repos).await;
    let errors = report.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("PyGithub/Missing: GET /repos/PyGithub/Missing/actions/runs: 404"),
        "{}",
        errors[0]
    );
    assert!(!report.repos[0].cursor_advanced);
    assert!(report.repos[1].cursor_advanced);
    assert!(!report.repos[1].issues.is_empty());
    assert_eq!(f.store().cursor("PyGithub/Missing").unwrap(), None);
}

/// Reports: a failure report while a high-severity issue is open, then, once the fixes are
/// applied, a success report (and the stale failure report is gone).
#[tokio::test]
async fn reports_have_the_seed_names_and_fields() {
    let f = Fake::new("2024-07-30T21:40:00Z").await;
    f.mount_runs(&[failed_run(2, "2024-07-30T21:36:21Z")]).await;
    f.mount_jobs(
        RUN,
        2,
        &[
            Some(("failure", "Run tests")),
            Some(("timed_out", "Run tests")),
        ],
    )
    .await;
    f.mount_log(JOBS[0], "dev-08").await;
    f.mount_log(JOBS[1], "dev-14").await;
    f.mount_annotations(JOBS[1]).await;
    f.mount_rerun(RUN).await;
    f.mount_issue_endpoints().await;
    let dir = tempfile::tempdir().unwrap();
    let store = f.store();
    let report = f.monitor().check(&f.repo()).await;
    f.clock.advance(2_500);

    let summary = RunSummary::collect(&store, &report, &[], f.clock.now_ms()).unwrap();
    let p = write_reports(dir.path(), &summary).unwrap();
    assert_eq!(p.file_name().unwrap(), FAILURE_REPORT);
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    assert_eq!(v["status"], "FAILURE");
    assert_eq!(v["duration_s"], 2.5);
    assert_eq!(v["issues_found"], report.issue_ids().len());
    assert_eq!(v["fixes_applied"], 0);
    assert_eq!(v["errors"], json!([]));
    assert_eq!(v["generated_at"], "2024-07-30T21:40:02.500Z");
    let timeout = v["issues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "timeout")
        .unwrap();
    for k in [
        "id", "repo", "workflow", "run", "type", "severity", "status",
    ] {
        assert!(!timeout[k].is_null(), "{k}");
    }
    assert_eq!(timeout["severity"], "high");
    assert_eq!(timeout["status"], "open");
    assert_eq!(timeout["run"], RUN);

    let outcomes = f
        .fixer()
        .apply(&report.issue_ids(), ExecOptions::default())
        .await;
    f.clock.advance(1_000);
    let summary = RunSummary::collect(&store, &report, &outcomes, f.clock.now_ms()).unwrap();
    let p = write_reports(dir.path(), &summary).unwrap();
    assert_eq!(p.file_name().unwrap(), SUCCESS_REPORT);
    assert!(!dir.path().join(FAILURE_REPORT).exists());
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    assert_eq!(v["status"], "SUCCESS");
    assert_eq!(v["fixes_applied"], 2, "one re-run, one issue filed");
    let fixes = v["fixes"].as_array().unwrap();
    assert_eq!(fixes.len(), outcomes.len());
    assert!(fixes.iter().any(|x| x["result"] == "re-run requested (#1)"));
    assert!(fixes.iter().any(|x| x["result"] == "opened issue #77"));
    assert!(
        v["issues"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["status"] != "open")
    );
}

/// Without a stored number, an open issue labelled `flotilla` with the same title is found and
/// commented on (pull requests listed by the same endpoint are skipped); none is opened.
#[tokio::test]
async fn existing_issue_found_by_label_and_title() {
    let f = Fake::new("2024-07-30T21:40:00Z").await;
    f.mount_runs(&[failed_run(2, "2024-07-30T21:36:21Z")]).await;
    f.mount_jobs(RUN, 2, &[Some(("failure", "Run tests"))])
        .await;
    f.mount_log(JOBS[0], "dev-08").await;
    let issues = format!("/repos/{OWNER}/{NAME}/issues");
    Mock::given(method("GET"))
        .and(path(issues.clone()))
        .and(query_param("state", "open"))
        .and(query_param("labels", "flotilla"))
        .respond_with(json_response(
            &json!([
                {"id": 1, "number": 11, "title": "[flotilla] CI: test_failure", "state": "open",
                 "pull_request": {"url": "https://api.github.com/repos/PyGithub/PyGithub/pulls/11"}},
                {"id": 2, "number": 12, "title": "[flotilla] CI: lint_failure", "state": "open"},
                {"id": 3, "number": 13, "title": "[flotilla] CI: test_failure", "state": "open"}
            ]),
            200,
        ))
        .mount(&f.api)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{issues}/13/comments")))
        .respond_with(json_response(&json!({"id": 7, "body": "…"}), 201))
        .expect(1)
        .mount(&f.api)
        .await;
    Mock::given(method("POST"))
        .and(path(issues.clone()))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&f.api)
        .await;
    Mock::given(method("POST"))
        .and(|req: &Request| req.url.path().contains("/commits/"))
        .respond_with(json_response(&json!({"id": 9, "body": "…"}), 201))
        .expect(1)
        .mount(&f.api)
        .await;
    let report = f.monitor().check(&f.repo()).await;
    assert!(report.errors().is_empty(), "{:?}", report.errors());
    let outcomes = f
        .fixer()
        .apply(&report.issue_ids(), ExecOptions::default())
        .await;
    let tf = by_type(&f.store(), RUN, IssueType::TestFailure);
    let o = outcomes.iter().find(|o| o.issue_id == tf.id).unwrap();
    assert_eq!(o.result, FixResult::IssueUpdated { number: 13 });
    assert_eq!(tf.github_issue_number, Some(13));
    f.api.verify().await;
}

/// The orchestrator through the real binary: `flotilla --mcp-stdio` watching a repository on
/// the fake GitHub finds the failed run, and the MCP tools list, explain, refuse an
/// unconfirmed fix, plan one, ignore the issue, and classify a log; the seed's report lands
/// in the data dir.
#[tokio::test]
async fn through_the_binary_issues_evidence_fix_and_ignore() {
    use common::{call, error_text, mcp_client, ok};
    use flotilla::clock::{Clock, SystemClock};
    let now = flotilla::clock::rfc3339(SystemClock.now_ms() - 60_000);
    let f = Fake::new(&now).await;
    f.mount_runs(&[failed_run(1, &now)]).await;
    f.mount_jobs(RUN, 1, &[Some(("failure", "Run tests"))])
        .await;
    f.mount_log(JOBS[0], "dev-08").await;
    for j in &JOBS[1..] {
        f.forbid_log(*j).await;
    }
    let d = tempfile::tempdir().unwrap();
    // SAFETY: no other thread of this test reads the environment meanwhile.
    unsafe { std::env::set_var("GH_TOKEN", TOKEN) };
    let api = f.api.uri();
    let repo = format!("{OWNER}/{NAME}");
    let c = mcp_client(
        d.path(),
        &[
            "--github-api-url",
            &api,
            "--orchestrator-repo",
            &repo,
            "--set",
            "orchestrator.interval=1s",
            "--set",
            "orchestrator.auto_fix=false",
        ],
    )
    .await;
    let mut issues = json!([]);
    for _ in 0..200 {
        issues =
            ok(&c, "list_orchestrator_issues", json!({"status": "open"})).await["issues"].clone();
        if !issues.as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let list = issues.as_array().unwrap();
    assert!(!list.is_empty(), "no issue found");
    let primary = list
        .iter()
        .find(|i| i["primary"] == true)
        .expect("a primary issue");
    assert_eq!(primary["repo"], repo);
    assert_eq!(primary["run_id"], RUN);
    let id = primary["issue_id"].as_str().unwrap().to_string();

    let ev = ok(&c, "get_issue_evidence", json!({"issue_id": id})).await;
    assert!(!ev["lines"].as_array().unwrap().is_empty(), "{ev}");
    assert!(!ev["context"].as_str().unwrap().is_empty());

    let r = call(&c, "apply_fix", json!({"issue_id": id})).await;
    assert!(error_text(&r).contains("confirm=true"));
    let plan = ok(&c, "apply_fix", json!({"issue_id": id, "dry_run": true})).await;
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["applied"], false, "{plan}");
    let ig = ok(&c, "ignore_issue", json!({"issue_id": id})).await;
    assert_eq!(ig["status"], "ignored");

    let cl = ok(&c, "classify_log", json!({"text": dev_log("dev-08")})).await;
    assert_eq!(cl["issues"][0]["issue_type"], primary["issue_type"]);
    c.cancel().await.unwrap();
    let reports: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("mcp_orchestrator_"))
        .collect();
    assert_eq!(reports.len(), 1, "{reports:?}");
}

// ---------------------------------------------------------------------------------------------
// Patches proposed as pull requests (--allow-push)

const BRANCH: &str = "flotilla/fix-python_import_error-3881497935";
const REQS: &str = "requests>=2.14.0\npynacl>=1.4.0\npyjwt[crypto]>=2.4.0\n";

fn head_sha() -> String {
    failed_run(2, "x")["head_sha"].as_str().unwrap().to_string()
}

fn push() -> ExecOptions {
    ExecOptions {
        allow_push: true,
        dry_run: false,
    }
}

fn body_of(r: &Request) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

fn decoded(v: &Value) -> String {
    let b = base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap())
        .unwrap();
    String::from_utf8(b).unwrap()
}

/// A missing Python module with --allow-push: branch `flotilla/fix-…` created at the run's
/// head commit, `requirements.txt` committed there with the distribution appended, and a pull
/// request into the run's branch; the issue is `fixing` with the pull request's URL. Nothing
/// is written to any other branch and the token appears nowhere.
#[tokio::test]
async fn allow_push_adds_the_requirement_and_opens_a_pull_request() {
    let f = Fake::new("2024-07-30T21:40:00Z").await;
    let sha = head_sha();
    f.mount_repo(None).await;
    f.mount_file(
        "requirements.txt",
        &sha,
        Some(REQS.as_bytes()),
        "blob-at-head",
    )
    .await;
    f.mount_create_ref(false).await;
    f.mount_put("requirements.txt").await;
    f.mount_branch("main").await;
    f.mount_pulls(false).await;
    let id = f.code_issue(
        IssueType::PythonImportError,
        FixAction::AddDependency,
        &[("package", "yaml"), ("ecosystem", "pip")],
        "ModuleNotFoundError: No module named 'yaml'",
    );

    let out = f.fixer().apply(std::slice::from_ref(&id), push()).await;
    let o = &out[0];
    assert_eq!(
        o.result,
        FixResult::PullRequestOpened {
            number: 5,
            url: Some(format!("https://github.com/{OWNER}/{NAME}/pull/5")),
            branch: BRANCH.into(),
        },
        "{o:?}"
    );
    assert!(o.applied);
    assert!(o.notes.is_empty(), "{:?}", o.notes);
    let stored = f.store().get(&id).unwrap().unwrap();
    assert_eq!(stored.status, IssueStatus::Fixing);
    assert!(
        stored
            .status_reason
            .contains("https://github.com/PyGithub/PyGithub/pull/5"),
        "{}",
        stored.status_reason
    );

    // The branch, from the failed run's commit.
    let refs = f
        .requests("POST", &format!("/repos/{OWNER}/{NAME}/git/refs"))
        .await;
    assert_eq!(refs.len(), 1);
    assert_eq!(
        body_of(&refs[0]),
        json!({"ref": format!("refs/heads/{BRANCH}"), "sha": sha})
    );
    // The commit: the old content kept, the distribution (not the import name) appended.
    let puts = f
        .requests(
            "PUT",
            &format!("/repos/{OWNER}/{NAME}/contents/requirements.txt"),
        )
        .await;
    assert_eq!(puts.len(), 1);
    let put = body_of(&puts[0]);
    assert_eq!(decoded(&put["content"]), format!("{REQS}PyYAML\n"));
    assert_eq!(put["branch"], BRANCH);
    assert_eq!(put["sha"], "blob-at-head");
    assert!(
        put["message"]
            .as_str()
            .unwrap()
            .starts_with("flotilla: add PyYAML (for module yaml) to requirements.txt"),
        "{put}"
    );
    // The pull request: from the flotilla branch into the run's branch, which is not the
    // default branch (`master`) and not the head.
    let pulls = f
        .requests("POST", &format!("/repos/{OWNER}/{NAME}/pulls"))
        .await;
    assert_eq!(pulls.len(), 1);
    let pr = body_of(&pulls[0]);
    assert_eq!(pr["head"], BRANCH);
    assert_eq!(pr["base"], "main");
    assert_ne!(pr["head"], pr["base"]);
    let text = pr["body"].as_str().unwrap();
    assert!(text.contains("https://github.com/PyGithub/PyGithub/actions/runs/3881497935"));
    assert!(text.contains("No module named 'yaml'"), "{text}");
    assert!(text.contains("add `PyYAML` (for module `yaml`) to requirements.txt"));
    assert!(
        text.to_lowercase()
            .contains("opened by flotilla --allow-push"),
        "{text}"
    );
    assert!(pr["title"].as_str().unwrap().starts_with("[flotilla] CI: "));
    // Every write names only the flotilla branch; no reference is ever updated.
    for r in f.posts().await {
        assert_ne!(r.method.as_str(), "PATCH", "{}", r.url);
        let b = body_of(&r);
        for k in ["branch", "head"] {
            if let Some(v) = b.get(k) {
                assert_eq!(v, BRANCH, "{} {}", r.method, r.url);
            }
        }
    }
    // The token appears in no reason, outcome or request body.
    let all = serde_json::to_string(&out).unwrap() + &stored.status_reason;
    assert!(!all.contains(TOKEN));
    for r in f.api.received_requests().await.unwrap() {
        assert!(!String::from_utf8_lossy(&r.body).contains(TOKEN));
    }

    // The issue is `fixing` now: a second pass leaves it (and GitHub) alone.
    let before = f.api.received_requests().await.unwrap().len();
    assert!(f.fixer().apply(&[id], push()).await.is_empty());
    assert_eq!(f.api.received_requests().await.unwrap().len(), before);
}

/// A second attempt: the branch exists (422) and is reused (the commit is made with the
/// branch's blob, or skipped when the branch already has it), and the pull request that is
/// already open (422) is found and reported.
#[tokio::test]
async fn existing_branch_and_pull_request_are_reused() {
    let f = Fake::new("2024-07-30T21:40:00Z").await;
    let sha = head_sha();
    f.mount_repo(None).await;
    f.mount_file(
        "requirements.txt",
        &sha,
        Some(REQS.as_bytes()),
        "blob-at-head",
    )
    .await;
    f.mount_file(
        "requirements.txt",
        BRANCH,
        Some(REQS.as_bytes()),
        "blob-on-branch",
    )
    .await;
    f.mount_create_ref(true).await;
    f.mount_put("requirements.txt").await;
    f.mount_branch("main").await;
    f.mount_pulls(true).await;
    let args = [("package", "yaml"), ("ecosystem", "pip")];
    let ev = "ModuleNotFoundError: No module named 'yaml'";
    let id = f.code_issue(
        IssueType::PythonImportError,
        FixAction::AddDependency,
        &args,
        ev,
    );

    let out = f.fixer().apply(std::slice::from_ref(&id), push()).await;
    let FixResult::PullRequestOpened { number, branch, .. } = &out[0].result else {
        panic!("{:?}", out[0])
    };
    assert_eq!((*number, branch.as_str()), (5, BRANCH));
    assert!(
        out[0].notes.iter().any(|n| n.contains("reused")),
        "{:?}",
        out[0].notes
    );
    let puts = f
        .requests(
            "PUT",
            &format!("/repos/{OWNER}/{NAME}/contents/requirements.txt"),
        )
        .await;
    assert_eq!(puts.len(), 1);
    assert_eq!(body_of(&puts[0])["sha"], "blob-on-branch");
    let stored = f.store().get(&id).unwrap().unwrap();
    assert_eq!(stored.status, IssueStatus::Fixing);
    assert!(
        stored.status_reason.contains("already open"),
        "{}",
        stored.status_reason
    );

    // The branch already holds the change: no second commit.
    f.api.reset().await;
    f.mount_repo(None).await;
    f.mount_file(
        "requirements.txt",
        &sha,
        Some(REQS.as_bytes()),
        "blob-at-head",
    )
    .await;
    let patched = format!("{REQS}PyYAML\n");
    f.mount_file(
        "requirements.txt",
        BRANCH,
        Some(patched.as_bytes()),
        "blob-new",
    )
    .await;
    f.mount_create_ref(true).await;
    f.mount_branch("main").await;
    f.mount_pulls(true).await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .named("no second commit")
        .mount(&f.api)
        .await;
    f.store()
        .set_status(&id, IssueStatus::Open, "again", f.clock.now_ms())
        .unwrap();
    let out = f.fixer().apply(std::slice::from_ref(&id), push()).await;
    assert!(
        matches!(
            out[0].result,
            FixResult::PullRequestOpened { number: 5, .. }
        ),
        "{:?}",
        out[0]
    );
    assert!(!out[0].applied, "nothing new was done");
    f.api.verify().await;
}

/// The branch guard: a repository whose default branch is the fix branch's name gets no
/// branch, no commit and no pull request; the issue stays open with the reason.
#[tokio::test]
async fn branch_guard_refuses_the_default_branch() {
    let f = Fake::new("2024-07-30T21:40:00Z").await;
    f.mount_repo(Some(BRANCH)).await;
    for (m, what) in [("POST", "git/refs"), ("PUT", "contents"), ("POST", "pulls")] {
        Mock::given(method(m))
            .and(move |r: &Request| r.url.path().contains(what))
            .respond_with(ResponseTemplate::new(500))
            .expect(0)
            .named(format!("{m} {what}"))
            .mount(&f.api)
            .await;
    }
    let id = f.code_issue(
        IssueType::PythonImportError,
        FixAction::AddDependency,
        &[("package", "yaml")],
        "ModuleNotFoundError: No module named 'yaml'",
    );
    let out = f.fixer().apply(std::slice::from_ref(&id), push()).await;
    let FixResult::Held { reason } = &out[0].result else {
        panic!("{:?}", out[0])
    };
    assert!(reason.contains("default branch"), "{reason}");
    assert!(reason.contains(BRANCH), "{reason}");
    let stored = f.store().get(&id).unwrap().unwrap();
    assert_eq!(stored.status, IssueStatus::Open);
    assert_eq!(&stored.status_reason, reason);
    f.api.verify().await;
}

/// Dry run of a patch: not one request, no status change, and the outcome says what would be
/// done (and that it needs --allow-push when not given).
#[tokio::test]
async fn dry_run_of_a_patch_sends_no_request() {
    let f = Fake::new("2024-07-30T21:40:00Z").await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .named("any request")
        .mount(&f.api)
        .await;
    let id = f.code_issue(
        IssueType::PythonImportError,
        FixAction::AddDependency,
        &[("package", "yaml"), ("ecosystem", "pip")],
        "ModuleNotFoundError: No module named 'yaml'",
    );
    for allow_push in [false, true] {
        let out = f
            .fixer()
            .apply(
                std::slice::from_ref(&id),
                ExecOptions {
                    allow_push,
                    dry_run: true,
                },
            )
            .await;
        let FixResult::DryRun { would } = &out[0].result else {
            panic!("{:?}", out[0])
        };
        assert!(would.contains("propose a pull request"), "{would}");
        assert!(would.contains(BRANCH), "{would}");
        assert_eq!(would.contains("needs --allow-push"), !allow_push, "{would}");
        assert!(!out[0].applied);
        assert_eq!(
            f.store().get(&id).unwrap().unwrap().status,
            IssueStatus::Open
        );
    }
    f.api.verify().await;
}

/// Nothing to patch creates nothing: the distribution already listed (any spelling), or no
/// requirements.txt at all; the issue stays open with the reason.
#[tokio::test]
async fn nothing_to_patch_creates_no_branch() {
    let f = Fake::new("2024-07-30T21:40:00Z").await;
    let sha = head_sha();
    f.mount_repo(None).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .named("no branch, no pull request")
        .mount(&f.api)
        .await;
    f.mount_file(
        "requirements.txt",
        &sha,
        Some(b"requests\npyyaml>=6\n"),
        "b1",
    )
    .await;
    let id = f.code_issue(
        IssueType::PythonImportError,
        FixAction::AddDependency,
        &[("package", "yaml"), ("ecosystem", "pip")],
        "ModuleNotFoundError: No module named 'yaml'",
    );
    let out = f.fixer().apply(std::slice::from_ref(&id), push()).await;
    let FixResult::Held { reason } = &out[0].result else {
        panic!("{:?}", out[0])
    };
    assert!(
        reason.contains("already listed") && reason.contains("pyyaml>=6"),
        "{reason}"
    );
    assert_eq!(
        f.store().get(&id).unwrap().unwrap().status,
        IssueStatus::Open
    );

    // Another repository state (a commit's content is cached for an hour: move past that).
    f.clock.advance(2 * 3_600_000);
    f.api.reset().await;
    f.mount_repo(None).await;
    f.mount_file("requirements.txt", &sha, None, "").await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&f.api)
        .await;
    let out = f.fixer().apply(std::slice::from_ref(&id), push()).await;
    let FixResult::Held { reason } = &out[0].result else {
        panic!("{:?}", out[0])
    };
    assert!(
        reason.contains("no requirements.txt at the repository root"),
        "{reason}"
    );
    assert!(reason.contains("PyYAML"), "{reason}");
    let stored = f.store().get(&id).unwrap().unwrap();
    assert_eq!(stored.status, IssueStatus::Open);
    assert_eq!(&stored.status_reason, reason);
    f.api.verify().await;
}

/// rustfmt's finding, classified from its log line, becomes a patch of the file it names:
/// the real `rustfmt` formats the badly formatted file the fake serves, and exactly its output
/// is committed on the fix branch.
#[tokio::test]
async fn formatter_patch_commits_rustfmt_output() {
    use flotilla::orchestrator::classify::classify;
    use flotilla::orchestrator::patterns::Catalogue;
    let f = Fake::new("2024-07-30T21:40:00Z").await;
    let sha = head_sha();
    let ugly = "fn main(){let x=1;\nprintln!(\"{}\",x);}\n";
    let mut rustfmt = std::process::Command::new("rustfmt")
        .args(["--edition", "2021", "--emit", "stdout"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("rustfmt is installed");
    std::io::Write::write_all(&mut rustfmt.stdin.take().unwrap(), ugly.as_bytes()).unwrap();
    let want = String::from_utf8(rustfmt.wait_with_output().unwrap().stdout).unwrap();
    assert_ne!(want, ugly);

    let line = format!("Diff in /home/runner/work/{NAME}/{NAME}/src/lib.rs:1:");
    let c = classify(&Catalogue::builtin(), &line, None);
    let fix = c.primary().fix.clone().expect("rustfmt_check has a fix");
    let args: Vec<(&str, &str)> = fix
        .args
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let id = f.code_issue(IssueType::LintFailure, fix.action, &args, &line);
    let branch = "flotilla/fix-lint_failure-3881497935";
    f.mount_repo(None).await;
    f.mount_file("src/lib.rs", &sha, Some(ugly.as_bytes()), "blob-lib")
        .await;
    f.mount_create_ref(false).await;
    f.mount_put("src/lib.rs").await;
    f.mount_branch("main").await;
    f.mount_pulls(false).await;

    let out = f.fixer().apply(std::slice::from_ref(&id), push()).await;
    assert!(
        matches!(&out[0].result, FixResult::PullRequestOpened { branch: b, .. } if b == branch),
        "{:?}",
        out[0]
    );
    let puts = f
        .requests("PUT", &format!("/repos/{OWNER}/{NAME}/contents/src/lib.rs"))
        .await;
    assert_eq!(puts.len(), 1);
    let put = body_of(&puts[0]);
    assert_eq!(decoded(&put["content"]), want);
    assert_eq!(put["branch"], branch);
    assert_eq!(put["sha"], "blob-lib");
    let pr = body_of(
        &f.requests("POST", &format!("/repos/{OWNER}/{NAME}/pulls"))
            .await[0],
    );
    assert!(
        pr["body"]
            .as_str()
            .unwrap()
            .contains("format `src/lib.rs` with cargo fmt")
    );
}

/// A formatter that is not installed: a clear reason on the issue, which stays open; no
/// branch is created.
#[tokio::test]
async fn missing_formatter_binary_keeps_the_issue_open() {
    let f = Fake::new("2024-07-30T21:40:00Z").await;
    let sha = head_sha();
    f.mount_repo(None).await;
    f.mount_file("src/app.py", &sha, Some(b"x = 1\n"), "blob-app")
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .named("no branch, no pull request")
        .mount(&f.api)
        .await;
    let mut policy = FixPolicy::default();
    policy.formatters.insert(
        "black".into(),
        vec![
            "flotilla-test-no-such-black".into(),
            "-q".into(),
            "-".into(),
        ],
    );
    let id = f.code_issue(
        IssueType::LintFailure,
        FixAction::RunFormatter,
        &[("tool", "black"), ("path", "src/app.py")],
        "would reformat src/app.py",
    );
    let out = f
        .fixer_with(policy)
        .apply(std::slice::from_ref(&id), push())
        .await;
    let FixResult::Held { reason } = &out[0].result else {
        panic!("{:?}", out[0])
    };
    assert!(reason.contains("flotilla-test-no-such-black"), "{reason}");
    assert!(reason.contains("not installed"), "{reason}");
    let stored = f.store().get(&id).unwrap().unwrap();
    assert_eq!(stored.status, IssueStatus::Open);
    assert_eq!(&stored.status_reason, reason);
    f.api.verify().await;
}
