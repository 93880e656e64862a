//! A stateful fake of the GitHub Actions API for the autoscaler tests, on 127.0.0.1.
//!
//! Every answer is built from the recorded OpenAPI examples in
//! `../shared/fixtures/github/openapi_examples` (runs, jobs, runners, runner groups, JIT
//! config), with the fields the scenario needs overwritten. It keeps a queue of jobs and a
//! list of runners; `generate-jitconfig` registers an offline runner and hands out a fresh
//! JIT config; `DELETE .../runners/{id}` removes one. Answers carry an `ETag` and honour
//! `If-None-Match` (304), and count every request and the ones that would cost rate limit.
//!
//! [`FakeGithub::runner_connects`] / [`FakeGithub::job_done`] play the part of the Actions
//! runner and the service: a runner that comes online takes the oldest queued job its labels
//! cover; when the job ends the ephemeral runner unregisters.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::{Value, json};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/github/openapi_examples")
}

/// The default example of an operation's `status` answer.
pub fn example(op: &str, status: &str) -> Value {
    let p = fixtures().join(format!("{op}.json"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    v["responses"][status]["content"]["application/json"]["examples"]["default"].clone()
}

/// A job in the fake queue.
#[derive(Debug, Clone)]
pub struct FakeJob {
    pub id: u64,
    pub run_id: u64,
    pub repo: String,
    pub workflow_path: String,
    pub labels: Vec<String>,
    /// `queued`, `in_progress`, `completed`.
    pub status: String,
    pub runner_name: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    /// Wall clock (ms) when the job was queued, for the startup figure.
    pub queued_ms: i64,
}

/// A registered runner.
#[derive(Debug, Clone)]
pub struct FakeRunner {
    pub id: u64,
    pub name: String,
    pub online: bool,
    pub busy: bool,
    pub labels: Vec<String>,
    pub jit: String,
}

#[derive(Debug, Default)]
pub struct State {
    pub owner: String,
    pub repos: Vec<String>,
    pub jobs: Vec<FakeJob>,
    pub runners: Vec<FakeRunner>,
    pub next_id: u64,
    /// Every JIT config handed out, by runner name.
    pub jit_issued: BTreeMap<String, String>,
    pub deleted_runners: Vec<u64>,
    /// Workflow files by (repo, path).
    pub files: BTreeMap<(String, String), String>,
    /// Requests seen: `METHOD path`.
    pub requests: Vec<String>,
    /// Requests answered 304 (no rate-limit cost).
    pub not_modified: u64,
    /// Answer generate-jitconfig with this status instead (e.g. 403).
    pub jit_status: Option<u16>,
    /// Registration tokens handed out.
    pub reg_tokens: Vec<String>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn iso(ms: i64) -> String {
    flotilla::clock::rfc3339(ms)
}

impl State {
    fn runner_json(&self, r: &FakeRunner) -> Value {
        let mut v =
            example("actions__list-self-hosted-runners-for-org", "200")["runners"][0].clone();
        v["id"] = json!(r.id);
        v["name"] = json!(r.name);
        v["status"] = json!(if r.online { "online" } else { "offline" });
        v["busy"] = json!(r.busy);
        v["ephemeral"] = json!(true);
        v["labels"] = Value::Array(
            r.labels
                .iter()
                .enumerate()
                .map(|(i, l)| json!({"id": i + 1, "name": l, "type": "custom"}))
                .collect(),
        );
        v
    }

    fn job_json(&self, j: &FakeJob) -> Value {
        let mut v = example("actions__get-job-for-workflow-run", "200");
        v["id"] = json!(j.id);
        v["run_id"] = json!(j.run_id);
        v["status"] = json!(j.status);
        v["conclusion"] = if j.status == "completed" {
            json!("success")
        } else {
            Value::Null
        };
        v["labels"] = json!(j.labels);
        v["runner_name"] = json!(j.runner_name);
        v["runner_id"] = Value::Null;
        v["created_at"] = json!(j.created_at);
        v["started_at"] = json!(j.started_at.clone().unwrap_or_else(|| j.created_at.clone()));
        if j.status != "completed" {
            v["completed_at"] = Value::Null;
        }
        if j.status == "queued" {
            v["steps"] = json!([]);
        }
        v
    }

    fn run_status(&self, repo: &str, run_id: u64) -> &'static str {
        let js: Vec<&FakeJob> = self
            .jobs
            .iter()
            .filter(|j| j.repo == repo && j.run_id == run_id)
            .collect();
        if js.iter().all(|j| j.status == "completed") {
            "completed"
        } else if js.iter().all(|j| j.status == "queued") {
            "queued"
        } else {
            "in_progress"
        }
    }

    fn runs_json(&self, repo: &str, status: &str) -> Value {
        let template =
            example("actions__list-workflow-runs-for-repo", "200")["workflow_runs"][0].clone();
        let mut ids: Vec<(u64, String, String)> = self
            .jobs
            .iter()
            .filter(|j| j.repo == repo)
            .map(|j| (j.run_id, j.workflow_path.clone(), j.created_at.clone()))
            .collect();
        ids.sort();
        ids.dedup_by_key(|x| x.0);
        let runs: Vec<Value> = ids
            .into_iter()
            .filter(|(id, _, _)| self.run_status(repo, *id) == status)
            .map(|(id, path, created)| {
                let mut v = template.clone();
                v["id"] = json!(id);
                v["status"] = json!(status);
                v["conclusion"] = Value::Null;
                v["path"] = json!(path);
                v["name"] = json!(path.rsplit('/').next().unwrap_or("ci"));
                v["created_at"] = json!(created);
                v
            })
            .collect();
        json!({"total_count": runs.len(), "workflow_runs": runs})
    }

    fn answer(&mut self, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let org = self.owner.clone();
        match (method, parts.as_slice()) {
            ("GET", ["users", o]) => (
                200,
                json!({"login": o, "id": 1, "type": if *o == org { "Organization" } else { "User" }}),
            ),
            ("GET", ["orgs", _, "repos"]) => {
                let recent = iso(now_ms() - 3_600_000);
                let list: Vec<Value> = self
                    .repos
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        let (o, n) = r.split_once('/').unwrap();
                        json!({"id": i + 1, "name": n, "full_name": r, "owner": {"login": o},
                               "private": false, "pushed_at": recent, "default_branch": "main"})
                    })
                    .collect();
                (200, Value::Array(list))
            }
            ("GET", ["orgs", _, "actions", "runner-groups"]) => (
                200,
                example("actions__list-self-hosted-runner-groups-for-org", "200"),
            ),
            ("GET", ["orgs", _, "actions", "runners"]) => {
                let rs: Vec<Value> = self.runners.iter().map(|r| self.runner_json(r)).collect();
                (200, json!({"total_count": rs.len(), "runners": rs}))
            }
            ("POST", ["orgs", _, "actions", "runners", "generate-jitconfig"]) => {
                if let Some(s) = self.jit_status {
                    return (
                        s,
                        json!({"message": "Resource not accessible by integration"}),
                    );
                }
                let req: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                let name = req["name"].as_str().unwrap_or("?").to_string();
                if self.runners.iter().any(|r| r.name == name) {
                    return (
                        409,
                        json!({"message": "Already exists - A runner with the name already exists."}),
                    );
                }
                self.next_id += 1;
                let jit = base64::engine::general_purpose::STANDARD
                    .encode(format!("jit-{}-{}-secretpart", self.next_id, name));
                let labels: Vec<String> = req["labels"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|l| l.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                let r = FakeRunner {
                    id: 1000 + self.next_id,
                    name: name.clone(),
                    online: false,
                    busy: false,
                    labels,
                    jit: jit.clone(),
                };
                let mut v = example("actions__generate-runner-jitconfig-for-org", "201");
                v["runner"] = self.runner_json(&r);
                v["encoded_jit_config"] = json!(jit);
                self.jit_issued.insert(name, jit);
                self.runners.push(r);
                (201, v)
            }
            ("POST", ["orgs", _, "actions", "runners", "registration-token"]) => {
                self.next_id += 1;
                let token = format!("AABF3JGZDX3P5PMEXLND6TS{}REGTOKEN", self.next_id);
                let mut v = example("actions__create-registration-token-for-org", "201");
                v["token"] = json!(token);
                self.reg_tokens.push(token);
                (201, v)
            }
            ("DELETE", ["orgs", _, "actions", "runners", id]) => {
                let id: u64 = id.parse().unwrap_or(0);
                match self.runners.iter().position(|r| r.id == id) {
                    Some(i) if self.runners[i].busy => (
                        422,
                        json!({"message": "Bad request - Runner \"x\" is still running a job\""}),
                    ),
                    Some(i) => {
                        self.runners.remove(i);
                        self.deleted_runners.push(id);
                        (204, Value::Null)
                    }
                    None => (404, json!({"message": "Not Found"})),
                }
            }
            ("GET", ["repos", o, n, "actions", "runs"]) => {
                let repo = format!("{o}/{n}");
                // status comes from the query, handled by the caller
                (200, json!({"repo": repo}))
            }
            ("GET", ["repos", o, n, "actions", "runs", run, "jobs"]) => {
                let repo = format!("{o}/{n}");
                let run: u64 = run.parse().unwrap_or(0);
                let js: Vec<Value> = self
                    .jobs
                    .iter()
                    .filter(|j| j.repo == repo && j.run_id == run)
                    .map(|j| self.job_json(j))
                    .collect();
                (200, json!({"total_count": js.len(), "jobs": js}))
            }
            ("GET", ["repos", o, n, "actions", "jobs", id]) => {
                let repo = format!("{o}/{n}");
                let id: u64 = id.parse().unwrap_or(0);
                match self.jobs.iter().find(|j| j.repo == repo && j.id == id) {
                    Some(j) => (200, self.job_json(j)),
                    None => (404, json!({"message": "Not Found"})),
                }
            }
            ("GET", ["repos", o, n, "contents", rest @ ..]) => {
                let repo = format!("{o}/{n}");
                let path = rest.join("/");
                match self.files.get(&(repo, path.clone())) {
                    Some(text) => (
                        200,
                        json!({"type": "file", "name": path.rsplit('/').next(), "path": path,
                               "sha": "abc", "size": text.len(), "encoding": "base64",
                               "content": base64::engine::general_purpose::STANDARD.encode(text)}),
                    ),
                    None => (404, json!({"message": "Not Found"})),
                }
            }
            _ => (
                404,
                json!({"message": format!("fake: no route for {method} {path}")}),
            ),
        }
    }
}

/// The fake and its server.
#[derive(Clone)]
pub struct FakeGithub {
    pub state: Arc<Mutex<State>>,
    pub uri: String,
}

struct Responder(Arc<Mutex<State>>);

impl Respond for Responder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut st = self.0.lock().unwrap();
        let method = req.method.to_string();
        let path = req.url.path().to_string();
        st.requests.push(format!("{method} {path}"));
        let (status, body) = if method == "GET" && path.ends_with("/actions/runs") {
            let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
            let repo = format!("{}/{}", parts[1], parts[2]);
            let status = req
                .url
                .query_pairs()
                .find(|(k, _)| k == "status")
                .map(|(_, v)| v.to_string())
                .unwrap_or_default();
            (200, st.runs_json(&repo, &status))
        } else {
            st.answer(&method, &path, &req.body)
        };
        if status == 204 {
            return ResponseTemplate::new(204);
        }
        let text = serde_json::to_string(&body).unwrap();
        let etag = format!("\"{:x}\"", {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            text.hash(&mut h);
            h.finish()
        });
        let rl = |t: ResponseTemplate| {
            t.insert_header("x-ratelimit-limit", "5000")
                .insert_header("x-ratelimit-remaining", "4990")
                .insert_header("x-ratelimit-used", "10")
                .insert_header("x-ratelimit-reset", "4102444800")
                .insert_header("x-ratelimit-resource", "core")
        };
        if method == "GET"
            && status == 200
            && req
                .headers
                .get("if-none-match")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v == etag)
        {
            st.not_modified += 1;
            return rl(ResponseTemplate::new(304).insert_header("etag", etag.as_str()));
        }
        rl(ResponseTemplate::new(status)
            .insert_header("etag", etag.as_str())
            .set_body_raw(text, "application/json"))
    }
}

impl FakeGithub {
    /// Start it for organization `owner` with `repos` (`owner/name`).
    pub async fn start(owner: &str, repos: &[&str]) -> (FakeGithub, MockServer) {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State {
            owner: owner.to_string(),
            repos: repos.iter().map(|s| s.to_string()).collect(),
            ..State::default()
        }));
        Mock::given(any())
            .respond_with(Responder(state.clone()))
            .mount(&server)
            .await;
        (
            FakeGithub {
                state,
                uri: server.uri(),
            },
            server,
        )
    }

    /// Queue a job (and its run, if new).
    pub fn queue_job(&self, repo: &str, run_id: u64, job_id: u64, labels: &[&str]) {
        let mut st = self.state.lock().unwrap();
        let now = now_ms();
        st.jobs.push(FakeJob {
            id: job_id,
            run_id,
            repo: repo.into(),
            workflow_path: ".github/workflows/ci.yml".into(),
            labels: labels.iter().map(|s| s.to_string()).collect(),
            status: "queued".into(),
            runner_name: None,
            created_at: iso(now),
            started_at: None,
            queued_ms: now,
        });
    }

    /// A runner process started with `jit`: if GitHub issued that config to `name`, the runner
    /// comes online and takes the oldest queued job its labels cover. Returns the job id.
    pub fn runner_connects(&self, name: &str, jit: &str) -> Result<Option<u64>, String> {
        let mut st = self.state.lock().unwrap();
        match st.jit_issued.get(name) {
            Some(j) if j == jit => {}
            Some(_) => return Err(format!("{name}: wrong JIT config")),
            None => return Err(format!("{name}: no JIT config issued")),
        }
        let Some(ri) = st.runners.iter().position(|r| r.name == name) else {
            return Err(format!("{name}: not registered (deleted?)"));
        };
        st.runners[ri].online = true;
        let labels: Vec<String> = st.runners[ri]
            .labels
            .iter()
            .map(|l| l.to_lowercase())
            .collect();
        let mut queued: Vec<usize> = (0..st.jobs.len())
            .filter(|&i| {
                st.jobs[i].status == "queued"
                    && st.jobs[i]
                        .labels
                        .iter()
                        .all(|l| labels.contains(&l.to_lowercase()))
            })
            .collect();
        queued.sort_by_key(|&i| (st.jobs[i].created_at.clone(), st.jobs[i].id));
        if let Some(&i) = queued.first() {
            st.jobs[i].status = "in_progress".into();
            st.jobs[i].runner_name = Some(name.to_string());
            st.jobs[i].started_at = Some(iso(now_ms()));
            st.runners[ri].busy = true;
            return Ok(Some(st.jobs[i].id));
        }
        Ok(None)
    }

    /// A runner configured with a registration token (`config.sh --token`) registers itself
    /// under `name`; then it behaves as [`FakeGithub::runner_connects`].
    pub fn runner_registers(
        &self,
        name: &str,
        token: &str,
        labels: &[String],
    ) -> Result<Option<u64>, String> {
        {
            let mut st = self.state.lock().unwrap();
            if !st.reg_tokens.iter().any(|t| t == token) {
                return Err(format!("{name}: unknown registration token"));
            }
            st.next_id += 1;
            let id = 1000 + st.next_id;
            let mut l: Vec<String> = vec!["self-hosted".into()];
            l.extend(labels.iter().cloned());
            st.runners.push(FakeRunner {
                id,
                name: name.into(),
                online: false,
                busy: false,
                labels: l,
                jit: String::new(),
            });
            st.jit_issued
                .insert(name.into(), format!("registration:{token}"));
        }
        self.runner_connects(name, &format!("registration:{token}"))
    }

    /// The runner's job ends: the job completes and the ephemeral runner unregisters.
    pub fn job_done(&self, name: &str) {
        let mut st = self.state.lock().unwrap();
        for j in st.jobs.iter_mut() {
            if j.runner_name.as_deref() == Some(name) && j.status == "in_progress" {
                j.status = "completed".into();
            }
        }
        st.runners.retain(|r| r.name != name);
    }

    /// Jobs with `status`.
    pub fn jobs_with(&self, status: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .jobs
            .iter()
            .filter(|j| j.status == status)
            .count()
    }

    /// Registered runners.
    pub fn runner_names(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .runners
            .iter()
            .map(|r| r.name.clone())
            .collect()
    }

    /// Requests so far and 304s.
    pub fn request_counts(&self) -> (usize, u64) {
        let st = self.state.lock().unwrap();
        (st.requests.len(), st.not_modified)
    }
}
