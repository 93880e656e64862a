//! The autoscaler's check loop (the I/O shell around [`policy::plan`]).
//!
//! One [`Controller::check`]:
//! 1. lists the watched repositories (explicit ones, or the owner's pushed within
//!    `since_days`), their `queued` and `in_progress` runs and those runs' jobs — jobs, not
//!    runs: a run's later jobs queue while the run is in progress;
//! 2. records queued jobs in SQLite (`pending` until they leave the queue; the ones that left
//!    get their start time and runner for the queue-wait figure);
//! 3. finds the workflows tagged `p2p-only` / `p2p-eligible` (`env: WORKFLOW_TAGS` in the
//!    workflow file) and hands their queued runs to the mesh scheduler instead of asking for
//!    GitHub runners;
//! 4. reconciles both ways: our runner rows against GitHub's runner list and the providers'
//!    instances (state moves; orphans on either side are removed; half-done operations from a
//!    crash are cleaned up);
//! 5. asks the policy for a plan and carries it out: retirements (stop the instance, remove
//!    the GitHub runner, never a busy one) and provisions (re-check the job is still queued,
//!    write the runner row, `generate-jitconfig`, launch; a failure removes what was made and
//!    backs the provider off; after `failure_limit` failures in a row it stops).
//!
//! Every check writes the seed's summary lines to the log (the Logs pane):
//! `--- Check #N at ... ---`, `P2P workflows: 3 pending, 2 assigned`,
//! `Found 2 repos with 4 workflows`, `Allocating 3 runners for P2P tasks, 5 for GitHub
//! workflows`, ...
//!
//! Secrets: JIT configs and registration tokens go from the GitHub answer to the provider and
//! nowhere else (not the store, not a log line, not an error text).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use rusqlite::Connection;
use serde::Serialize;

use super::policy::{
    self, Inputs, JobKey, Limits, P2pDemand, ProviderFacts, QueuedJob, RetireReason, RunnerState,
    labels,
};
use super::provider::{InstanceRef, InstanceState, LaunchSpec, Provider};
use super::store::{AutoscalerStore, NewRunner, RunnerRow, StoreError};
use crate::clock::{Millis, SharedClock, rfc3339};
use crate::github::types::{JitConfigRequest, parse_timestamp};
use crate::github::{GithubClient, GithubError, RunFilter, RunnerScope};
use crate::sched::workflow::WorkflowTag;

/// Controller settings (`[autoscaler]`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Owner (user or organization) whose repositories are watched.
    pub owner: Option<String>,
    /// Explicit `owner/name` repositories (used instead of the owner's list when set).
    pub repos: Vec<String>,
    /// Repositories pushed within this many days.
    pub since_days: u32,
    /// Policy limits.
    pub limits: Limits,
    /// Launch failures in a row after which a provider gets no more runners (0 = never stop).
    pub failure_limit: u32,
    /// Runner name prefix; runners at GitHub named `<prefix>-<node_tag>-...` are this node's.
    pub name_prefix: String,
    /// This node's tag in runner names (a few hex digits of its identity), so several nodes
    /// that watch one owner never take each other's runners for orphans.
    pub node_tag: String,
    /// Base back-off after a provider failure (doubles per failure, capped at 10 minutes), ms.
    pub backoff_ms: Millis,
    /// Most runs per repository and status read per check.
    pub runs_per_repo: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            owner: None,
            repos: Vec::new(),
            since_days: 1,
            limits: Limits {
                max_runners: 4,
                min_idle: 0,
                idle_grace_ms: 5 * 60_000,
                bootstrap_timeout_ms: 20 * 60_000,
            },
            failure_limit: 5,
            name_prefix: "flotilla".into(),
            node_tag: "local".into(),
            backoff_ms: 10_000,
            runs_per_repo: 50,
        }
    }
}

/// A P2P-tagged GitHub run handed to the mesh scheduler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct P2pHandoff {
    /// `owner/name`.
    pub repo: String,
    /// Run id.
    pub run_id: u64,
    /// Workflow file path.
    pub workflow_path: String,
    /// Workflow name.
    pub workflow: String,
    /// `p2p-only` or `p2p-eligible`.
    pub tag: WorkflowTag,
    /// Commit.
    pub head_sha: Option<String>,
    /// Queued jobs of the run.
    pub jobs: u32,
}

/// Where P2P runs go (the engine's queue).
pub trait P2pSink: Send + Sync {
    /// Submit one run; resolves to the mesh workflow id. Called once per run.
    ///
    /// # Errors
    /// A text for the log.
    fn submit<'a>(
        &'a self,
        h: &'a P2pHandoff,
    ) -> super::provider::BoxFuture<'a, Result<String, String>>;
}

/// What one check saw and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// Check number (1-based, survives restarts).
    pub n: u64,
    /// Start (ms).
    pub at: Millis,
    /// Repositories checked.
    pub repos: usize,
    /// Distinct workflows with queued or running runs.
    pub workflows: usize,
    /// Runs in progress.
    pub running_runs: usize,
    /// Queued jobs for GitHub runners.
    pub queued_jobs: usize,
    /// P2P workflows waiting / handed to the mesh.
    pub p2p_pending: u32,
    /// P2P workflows assigned.
    pub p2p_assigned: u32,
    /// Slots for P2P.
    pub p2p_slots: u32,
    /// Runner names started.
    pub provisioned: Vec<String>,
    /// Runner names retired, with why.
    pub retired: Vec<(String, String)>,
    /// Jobs waiting for capacity.
    pub deferred: usize,
    /// Jobs no provider covers.
    pub unmatched: usize,
    /// Orphans removed this check.
    pub orphans: u64,
    /// GitHub requests this check made (304s included; cache hits not).
    pub api_calls: u64,
    /// Problems (the check goes on past them).
    pub errors: Vec<String>,
}

impl CheckReport {
    /// The seed's log lines for this check.
    pub fn lines(&self) -> Vec<String> {
        let mut v = vec![
            format!("--- Check #{} at {} ---", self.n, seed_time(self.at)),
            "Checking workflow queues...".to_string(),
            format!(
                "P2P workflows: {} pending, {} assigned",
                self.p2p_pending, self.p2p_assigned
            ),
            format!(
                "Found {} repos with {} workflows",
                self.repos, self.workflows
            ),
            format!(
                "  Running: {}, Queued jobs: {}",
                self.running_runs, self.queued_jobs
            ),
            format!(
                "Allocating {} runners for P2P tasks, {} for GitHub workflows",
                self.p2p_slots,
                self.provisioned.len()
            ),
        ];
        if !self.provisioned.is_empty() {
            v.push(format!(
                "✓ Generated {} runner token(s)",
                self.provisioned.len()
            ));
        }
        for (name, why) in &self.retired {
            v.push(format!("Retired {name}: {why}"));
        }
        if self.deferred > 0 {
            v.push(format!(
                "{} job(s) wait for capacity (max runners reached)",
                self.deferred
            ));
        }
        if self.orphans > 0 {
            v.push(format!("Removed {} orphan(s)", self.orphans));
        }
        v.push(format!(
            "P2P Summary: {} pending, {} assigned, {} runners allocated for P2P",
            self.p2p_pending, self.p2p_assigned, self.p2p_slots
        ));
        v
    }
}

/// `2025-11-17 14:30:00` (UTC), the seed's check header format.
fn seed_time(ms: Millis) -> String {
    let s = rfc3339(ms);
    s.get(..19).unwrap_or(&s).replace('T', " ")
}

/// Errors of operator commands.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No such runner.
    #[error("no runner {0}")]
    NotFound(String),
    /// Refused, with why.
    #[error("{0}")]
    Refused(String),
    /// Store.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a removal did (or, dry, would do).
#[derive(Debug, Clone, Serialize)]
pub struct RemoveOutcome {
    /// Runner id.
    pub id: String,
    /// Runner name.
    pub name: String,
    /// Steps taken or planned.
    pub steps: Vec<String>,
    /// Dry run.
    pub dry_run: bool,
    /// State after.
    pub state: RunnerState,
}

/// Per-provider state the controller keeps.
#[derive(Debug, Clone, Default)]
struct ProviderHealth {
    streak: u32,
    next_try: Millis,
    last_error: Option<String>,
}

/// The controller. Borrows a store connection; not `Send` across awaits with it, so it runs
/// on its own thread (see `engine::autoscale`).
pub struct Controller<'a> {
    client: &'a GithubClient,
    conn: &'a Connection,
    providers: Vec<Arc<dyn Provider>>,
    clock: SharedClock,
    /// Settings (public so an operator change can be applied between checks).
    pub settings: Settings,
    p2p: Option<Arc<dyn P2pSink>>,
    org: Option<bool>,
    groups: HashMap<String, u64>,
    tags: HashMap<(String, String), (Option<WorkflowTag>, Millis)>,
    health: BTreeMap<String, ProviderHealth>,
}

fn split(repo: &str) -> Option<(&str, &str)> {
    repo.split_once('/')
        .filter(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/'))
}

fn scope_of(s: &str) -> Option<RunnerScope> {
    if let Some(r) = s.strip_prefix("repo:") {
        let (o, n) = split(r)?;
        Some(RunnerScope::repo(o, n))
    } else {
        s.strip_prefix("org:").map(RunnerScope::org)
    }
}

/// The tag of a workflow file: its top-level `env.WORKFLOW_TAGS` (comma or space separated)
/// holding `p2p-only` (wins) or `p2p-eligible`. `None` for any other file, or one that does
/// not parse.
pub fn p2p_tag(workflow_yaml: &str) -> Option<WorkflowTag> {
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(workflow_yaml).ok()?;
    let tags = doc.get("env")?.get("WORKFLOW_TAGS")?;
    let text = match tags {
        serde_yaml_ng::Value::String(s) => s.clone(),
        serde_yaml_ng::Value::Sequence(v) => v
            .iter()
            .filter_map(|x| x.as_str())
            .collect::<Vec<_>>()
            .join(","),
        _ => return None,
    };
    let set: BTreeSet<String> = text
        .split([',', ' '])
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    if set.contains("p2p-only") {
        Some(WorkflowTag::P2pOnly)
    } else if set.contains("p2p-eligible") {
        Some(WorkflowTag::P2pEligible)
    } else {
        None
    }
}

/// Redact anything that looks like a credential from an error text before it is stored or
/// logged (GitHub never echoes the JIT config, but a provider's stderr might).
fn clean(e: impl std::fmt::Display, secrets: &[&str]) -> String {
    let mut s = e.to_string();
    for sec in secrets.iter().filter(|s| s.len() >= 8) {
        s = s.replace(sec, "[redacted]");
    }
    s.chars().take(500).collect()
}

impl<'a> Controller<'a> {
    /// A controller over `conn` (migrated), with providers in config order.
    pub fn new(
        client: &'a GithubClient,
        conn: &'a Connection,
        providers: Vec<Arc<dyn Provider>>,
        clock: SharedClock,
        settings: Settings,
        p2p: Option<Arc<dyn P2pSink>>,
    ) -> Self {
        // Failure streaks survive restarts (a stopped provider stays stopped).
        let store = AutoscalerStore::new(conn);
        let health = providers
            .iter()
            .filter_map(|p| {
                let n = store.counter(&format!("failures:{}", p.name())).ok()?;
                (n > 0).then(|| {
                    (
                        p.name().to_string(),
                        ProviderHealth {
                            streak: n as u32,
                            next_try: 0,
                            last_error: Some(format!(
                                "{n} launch failure(s) in a row before the restart"
                            )),
                        },
                    )
                })
            })
            .collect();
        Self {
            client,
            conn,
            providers,
            clock,
            settings,
            p2p,
            org: None,
            groups: HashMap::new(),
            tags: HashMap::new(),
            health,
        }
    }

    /// Now, by the controller's clock (ms).
    pub fn clock_now(&self) -> Millis {
        self.clock.now_ms()
    }

    /// The store connection.
    pub fn conn_ref(&self) -> &'a Connection {
        self.conn
    }

    fn store(&self) -> AutoscalerStore<'a> {
        AutoscalerStore::new(self.conn)
    }

    fn provider(&self, name: &str) -> Option<&Arc<dyn Provider>> {
        self.providers.iter().find(|p| p.name() == name)
    }

    /// Whether the operator paused scaling.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn paused(&self) -> Result<bool, StoreError> {
        Ok(self.store().meta("paused")?.as_deref() == Some("true"))
    }

    /// Pause or resume scaling (clean-up goes on while paused).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn set_paused(&self, paused: bool) -> Result<(), StoreError> {
        self.store()
            .set_meta("paused", if paused { "true" } else { "false" })
    }

    /// Provider facts for the policy and status.
    pub fn provider_facts(&self, now: Millis) -> Vec<ProviderFacts> {
        self.providers
            .iter()
            .map(|p| {
                let h = self.health.get(p.name()).cloned().unwrap_or_default();
                let limit = self.settings.failure_limit;
                ProviderFacts {
                    name: p.name().to_string(),
                    labels: labels(p.labels()),
                    max_runners: p.max_runners(),
                    stopped: (limit > 0 && h.streak >= limit) || now < h.next_try,
                }
            })
            .collect()
    }

    /// Provider status rows: (name, kind, labels, max, failures in a row, stopped, last error).
    pub fn provider_status(&self, now: Millis) -> Vec<ProviderStatus> {
        let facts = self.provider_facts(now);
        self.providers
            .iter()
            .zip(facts)
            .map(|(p, f)| {
                let h = self.health.get(p.name()).cloned().unwrap_or_default();
                ProviderStatus {
                    name: p.name().to_string(),
                    kind: p.kind().to_string(),
                    labels: p.labels().to_vec(),
                    max_runners: p.max_runners(),
                    failures_in_a_row: h.streak,
                    stopped: f.stopped,
                    last_error: h.last_error,
                }
            })
            .collect()
    }

    async fn is_org(&mut self) -> Option<bool> {
        if self.org.is_none()
            && let Some(owner) = self.settings.owner.clone()
        {
            {
                match self.client.account(&owner).await {
                    Ok(a) => {
                        self.org = Some(matches!(
                            a.kind,
                            crate::github::types::AccountKind::Organization
                        ))
                    }
                    Err(e) => tracing::warn!("autoscaler: cannot read account {owner}: {e}"),
                }
            }
        }
        self.org
    }

    /// Scope for a new runner: the organization when the owner is one, else the job's
    /// repository.
    async fn scope_for(&mut self, repo: Option<&str>) -> Option<String> {
        let owner = self.settings.owner.clone();
        if self.is_org().await == Some(true)
            && let Some(o) = owner
        {
            {
                // A repository outside the organization needs its own runner.
                if repo.is_none_or(|r| split(r).is_some_and(|(ro, _)| ro.eq_ignore_ascii_case(&o)))
                {
                    return Some(format!("org:{o}"));
                }
            }
        }
        repo.filter(|r| split(r).is_some())
            .map(|r| format!("repo:{r}"))
    }

    async fn repos(&mut self) -> Result<Vec<String>, String> {
        if !self.settings.repos.is_empty() {
            return Ok(self.settings.repos.clone());
        }
        let Some(owner) = self.settings.owner.clone() else {
            return Err(
                "no owner: give --autoscaler-owner (GITHUB_AUTOSCALER_OWNER) or autoscaler.repos"
                    .into(),
            );
        };
        self.client
            .repos_pushed_within(&owner, self.settings.since_days)
            .await
            .map(|v| v.into_iter().map(|r| r.full_name).collect())
            .map_err(|e| format!("cannot list repositories of {owner}: {e}"))
    }

    async fn tag_of(&mut self, repo: &str, path: &str) -> Option<WorkflowTag> {
        let key = (repo.to_string(), path.to_string());
        let now = self.clock.now_ms();
        // Re-read a workflow file every 10 minutes (a 304 when unchanged): tags can change.
        if let Some((t, at)) = self.tags.get(&key)
            && now - at < 600_000
        {
            return *t;
        }
        let (o, n) = split(repo)?;
        let t = match self.client.file_content(o, n, path, None).await {
            Ok(bytes) => p2p_tag(&String::from_utf8_lossy(&bytes)),
            // Gone (or never there): not a P2P workflow.
            Err(GithubError::Api { status: 404, .. }) => None,
            Err(e) => {
                tracing::debug!("autoscaler: workflow file {repo}/{path}: {e}");
                return None;
            }
        };
        self.tags.insert(key, (t, now));
        t
    }

    /// One check. Never fails as a whole: problems are in [`CheckReport::errors`] and logged.
    pub async fn check(&mut self) -> CheckReport {
        let now = self.clock.now_ms();
        let calls0 = self.client.cache_stats().api_calls;
        let store = self.store();
        let mut rep = CheckReport {
            n: store.bump("checks", 1).unwrap_or(0),
            at: now,
            ..CheckReport::default()
        };
        if let Err(e) = store.set_meta("last_check", &now.to_string()) {
            rep.errors.push(e.to_string());
        }
        if let Err(e) = self.check_inner(now, &mut rep).await {
            rep.errors.push(e);
        }
        rep.api_calls = self.client.cache_stats().api_calls.saturating_sub(calls0);
        for l in rep.lines() {
            tracing::info!(target: "flotilla::autoscaler", "{l}");
        }
        for e in &rep.errors {
            tracing::warn!(target: "flotilla::autoscaler", "{e}");
        }
        let _ = self
            .store()
            .set_meta("last_api_calls", &rep.api_calls.to_string());
        rep
    }

    async fn check_inner(&mut self, now: Millis, rep: &mut CheckReport) -> Result<(), String> {
        let store = self.store();
        // Without the repository list the queues are unknown: no new runners this check, but
        // reconciliation and retirements still run (instances must not outlive their use).
        let (repos, blind) = match self.repos().await {
            Ok(r) => (r, false),
            Err(e) => {
                rep.errors.push(e);
                (Vec::new(), true)
            }
        };
        rep.repos = repos.len();

        // 1. Runs and jobs.
        let mut queued: Vec<(QueuedJob, u64, String, String)> = Vec::new();
        let mut left: HashMap<JobKey, (Option<Millis>, Option<String>)> = HashMap::new();
        let mut busy_job: HashMap<String, String> = HashMap::new();
        let mut workflows: BTreeSet<(String, String)> = BTreeSet::new();
        let mut p2p_runs: Vec<P2pHandoff> = Vec::new();
        for repo in &repos {
            let Some((o, n)) = split(repo) else {
                rep.errors
                    .push(format!("not an owner/name repository: {repo:?}"));
                continue;
            };
            for status in ["queued", "in_progress"] {
                let filter = RunFilter {
                    status: Some(status.into()),
                    limit: Some(self.settings.runs_per_repo),
                    ..RunFilter::default()
                };
                let runs = match self.client.workflow_runs(o, n, &filter).await {
                    Ok(r) => r,
                    Err(e) => {
                        rep.errors.push(format!("{repo}: {status} runs: {e}"));
                        continue;
                    }
                };
                if status == "in_progress" {
                    rep.running_runs += runs.len();
                }
                for run in runs {
                    let wf = run
                        .path
                        .clone()
                        .or_else(|| run.name.clone())
                        .unwrap_or_else(|| format!("workflow {}", run.workflow_id.unwrap_or(0)));
                    workflows.insert((repo.clone(), wf.clone()));
                    let jobs = match self.client.run_jobs(o, n, run.id).await {
                        Ok(j) => j,
                        Err(e) => {
                            rep.errors
                                .push(format!("{repo}: jobs of run {}: {e}", run.id));
                            continue;
                        }
                    };
                    let mut run_queued = Vec::new();
                    for j in jobs {
                        let key = JobKey {
                            repo: repo.clone(),
                            job_id: j.id,
                        };
                        match j.status.as_deref() {
                            // `waiting`/`pending` jobs wait for an approval or a concurrency
                            // group, not for a runner.
                            Some("waiting") | Some("pending") => {}
                            Some("queued") => {
                                let at = j
                                    .created_at
                                    .as_deref()
                                    .or(run.created_at.as_deref())
                                    .and_then(parse_timestamp)
                                    .unwrap_or(now);
                                run_queued.push((
                                    QueuedJob {
                                        key,
                                        labels: labels(&j.labels),
                                        queued_at: at,
                                    },
                                    run.id,
                                    j.name.clone(),
                                    wf.clone(),
                                ));
                            }
                            _ => {
                                let started = j.started_at.as_deref().and_then(parse_timestamp);
                                if let Some(r) = &j.runner_name
                                    && j.status.as_deref() == Some("in_progress")
                                {
                                    busy_job.insert(r.clone(), j.name.clone());
                                }
                                left.insert(key, (started, j.runner_name.clone()));
                            }
                        }
                    }
                    if run_queued.is_empty() {
                        continue;
                    }
                    let tag = match run.path.as_deref() {
                        Some(p) => self.tag_of(repo, p).await,
                        None => None,
                    };
                    // Without a way to hand runs to the mesh, a `p2p-eligible` run is an
                    // ordinary GitHub job; a `p2p-only` one waits for the mesh.
                    let tag = tag.filter(|t| *t == WorkflowTag::P2pOnly || self.p2p.is_some());
                    if let Some(tag) = tag {
                        for (q, run_id, name, wf) in &run_queued {
                            let _ = store.upsert_queued_job(
                                &q.key,
                                *run_id,
                                name,
                                wf,
                                &q.labels.iter().cloned().collect::<Vec<_>>(),
                                true,
                                q.queued_at,
                                now,
                            );
                        }
                        p2p_runs.push(P2pHandoff {
                            repo: repo.clone(),
                            run_id: run.id,
                            workflow_path: run.path.clone().unwrap_or_default(),
                            workflow: run.name.clone().unwrap_or_else(|| wf.clone()),
                            tag,
                            head_sha: run.head_sha.clone(),
                            jobs: run_queued.len() as u32,
                        });
                    } else {
                        queued.extend(run_queued);
                    }
                }
            }
        }
        rep.workflows = workflows.len();
        rep.queued_jobs = queued.len();

        // 2. Jobs in the store.
        for (q, run_id, name, wf) in &queued {
            let l: Vec<String> = q.labels.iter().cloned().collect();
            store
                .upsert_queued_job(&q.key, *run_id, name, wf, &l, false, q.queued_at, now)
                .map_err(|e| e.to_string())?;
        }
        let queued_keys: BTreeSet<&JobKey> = queued.iter().map(|q| &q.0.key).collect();
        let p2p_keys: BTreeSet<(String, u64)> = p2p_runs
            .iter()
            .map(|h| (h.repo.clone(), h.run_id))
            .collect();
        let pending = store.pending_jobs().map_err(|e| e.to_string())?;
        let mut rechecks = 0;
        for j in pending {
            if queued_keys.contains(&j.key) || p2p_keys.contains(&(j.key.repo.clone(), j.run_id)) {
                continue;
            }
            if let Some((started, runner)) = left.get(&j.key) {
                let _ = store.set_job_left(&j.key, *started, runner.as_deref());
                continue;
            }
            // Not seen in this check: its run finished between checks, or paging stopped
            // early. Ask for the job itself (bounded per check).
            if rechecks >= 20 {
                continue;
            }
            rechecks += 1;
            if let Some((o, n)) = split(&j.key.repo) {
                match self.client.job(o, n, j.key.job_id).await {
                    Ok(job) if job.status.as_deref() == Some("queued") => {}
                    Ok(job) => {
                        let started = job.started_at.as_deref().and_then(parse_timestamp);
                        let _ = store.set_job_left(&j.key, started, job.runner_name.as_deref());
                    }
                    Err(GithubError::Api { status: 404, .. }) => {
                        let _ = store.set_job_left(&j.key, None, None);
                    }
                    Err(e) => rep.errors.push(format!("job {}: {e}", j.key)),
                }
            }
        }

        // 3. P2P hand-off.
        let mut p2p = P2pDemand::default();
        for h in &p2p_runs {
            let key = format!("p2p:{}#{}", h.repo, h.run_id);
            match store.meta(&key).map_err(|e| e.to_string())? {
                Some(_) => p2p.assigned += 1,
                None => match &self.p2p {
                    Some(sink) => match sink.submit(h).await {
                        Ok(wf) => {
                            store.set_meta(&key, &wf).map_err(|e| e.to_string())?;
                            p2p.assigned += 1;
                            tracing::info!(
                                "P2P workflow {} #{} ({}) handed to the mesh scheduler as {wf}",
                                h.repo,
                                h.run_id,
                                h.tag
                            );
                        }
                        Err(e) => {
                            p2p.pending += 1;
                            rep.errors.push(format!(
                                "P2P workflow {} #{} not handed over: {e}",
                                h.repo, h.run_id
                            ));
                        }
                    },
                    None => p2p.pending += 1,
                },
            }
        }
        rep.p2p_pending = p2p.pending;
        rep.p2p_assigned = p2p.assigned;

        // 4. Reconcile runners.
        self.reconcile(now, &busy_job, rep).await;

        // 5. Plan and act. Jobs waiting from earlier checks count too (a missed signal never
        // strands a job): the store's pending list is the demand.
        let demand: Vec<QueuedJob> = store
            .pending_jobs()
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|j| !j.p2p)
            .map(|j| QueuedJob {
                key: j.key,
                labels: labels(&j.labels),
                queued_at: j.queued_at,
            })
            .collect();
        let rows = store.runners(true).map_err(|e| e.to_string())?;
        let facts: Vec<_> = rows.iter().map(RunnerRow::facts).collect();
        let providers = self.provider_facts(now);
        let paused = self.paused().map_err(|e| e.to_string())? || blind;
        let plan = policy::plan(&Inputs {
            jobs: &demand,
            p2p,
            runners: &facts,
            providers: &providers,
            limits: self.settings.limits,
            paused,
            now,
        });
        rep.p2p_slots = plan.p2p_slots;
        rep.deferred = plan.deferred.len();
        rep.unmatched = plan.unmatched.len();
        for r in &plan.retire {
            if let Some(row) = rows.iter().find(|x| x.id == r.runner) {
                match self.teardown(row, r.reason.as_str()).await {
                    Ok(_) => rep
                        .retired
                        .push((row.name.clone(), r.reason.as_str().into())),
                    Err(e) => rep.errors.push(format!("retiring {}: {e}", row.name)),
                }
            }
        }
        for p in &plan.provision {
            match self.launch(&p.provider, p.job.as_ref(), None).await {
                Ok(Some(row)) => rep.provisioned.push(row.name),
                Ok(None) => {}
                Err(e) => rep.errors.push(e),
            }
        }
        Ok(())
    }

    /// Bring our rows in line with GitHub and the providers; remove orphans on both sides;
    /// finish teardowns that failed before.
    async fn reconcile(
        &mut self,
        now: Millis,
        busy_job: &HashMap<String, String>,
        rep: &mut CheckReport,
    ) {
        let store = self.store();
        let rows = match store.runners(true) {
            Ok(r) => r,
            Err(e) => {
                rep.errors.push(e.to_string());
                return;
            }
        };
        // GitHub's runners, per scope we have or may use.
        let mut scopes: BTreeSet<String> = rows.iter().map(|r| r.scope.clone()).collect();
        if self.is_org().await == Some(true)
            && let Some(o) = &self.settings.owner
        {
            scopes.insert(format!("org:{o}"));
        }
        let prefix = format!("{}-{}-", self.settings.name_prefix, self.settings.node_tag);
        let mut listed: BTreeSet<String> = BTreeSet::new();
        let mut gh: Vec<(String, crate::github::types::Runner)> = Vec::new();
        for s in &scopes {
            let Some(scope) = scope_of(s) else { continue };
            match self.client.runners_now(&scope).await {
                Ok(list) => {
                    listed.insert(s.clone());
                    gh.extend(
                        list.into_iter()
                            .filter(|r| r.name.starts_with(&prefix))
                            .map(|r| (s.clone(), r)),
                    );
                }
                Err(e) => rep.errors.push(format!("runners of {s}: {e}")),
            }
        }
        let mut matched: BTreeSet<u64> = BTreeSet::new();
        let mut instances: BTreeSet<String> = BTreeSet::new();
        for row in &rows {
            let inst: Option<InstanceRef> = row
                .instance
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok());
            if let Some(i) = &inst {
                instances.insert(format!("{}/{}", i.provider, i.id));
            }
            let ghr = gh
                .iter()
                .find(|(s, r)| {
                    s == &row.scope && (Some(r.id) == row.gh_runner_id || r.name == row.name)
                })
                .map(|(_, r)| r.clone());
            if let Some(r) = &ghr {
                matched.insert(r.id);
                // A runner registered with a token (no JIT) is known by name until seen here.
                if row.gh_runner_id.is_none() {
                    let _ = store.set_registered(&row.id, r.id);
                }
            }
            match row.state {
                // A crash between writing the row and launching: nothing runs for it; the
                // JIT config is lost (never stored). Remove the registration, if any.
                RunnerState::Requested => {
                    let _ = self.teardown(row, "half-done launch found").await;
                    continue;
                }
                // A teardown that failed earlier: try again.
                RunnerState::Removing => {
                    let _ = self.teardown(row, "finishing removal").await;
                    continue;
                }
                RunnerState::Failed | RunnerState::Gone => continue,
                _ => {}
            }
            let istate = match (&inst, self.provider(&row.provider)) {
                (Some(i), Some(p)) => match p.state(i).await {
                    Ok(s) => Some(s),
                    Err(e) => {
                        rep.errors.push(format!("state of {}: {e}", row.name));
                        None
                    }
                },
                _ => None,
            };
            let exited = matches!(
                istate,
                Some(InstanceState::Exited { .. }) | Some(InstanceState::Gone)
            );
            let set = |st: RunnerState| {
                if let Err(e) = store.set_state(&row.id, st, now) {
                    tracing::warn!("autoscaler: {e}");
                }
            };
            match ghr {
                Some(r) => {
                    let online = r.status.as_deref() == Some("online");
                    if r.busy {
                        set(RunnerState::Busy);
                        let _ = store
                            .set_current_job(&row.id, busy_job.get(&row.name).map(String::as_str));
                    } else if online {
                        set(RunnerState::Idle);
                        let _ = store.set_current_job(&row.id, None);
                    } else if row.online_at.is_some() {
                        set(RunnerState::Offline);
                    } else if exited
                        && (matches!(istate, Some(InstanceState::Exited { code: Some(0) }))
                            || store.job_taken_by(&row.name).unwrap_or(false))
                    {
                        // Ran its job between two checks; GitHub has not dropped it yet.
                        let _ = self.teardown(row, "job done").await;
                    } else if exited {
                        let why = match istate {
                            Some(InstanceState::Exited { code }) => format!(
                                "runner exited (code {}) before coming online",
                                code.map_or("?".into(), |c| c.to_string())
                            ),
                            _ => "runner instance disappeared before coming online".into(),
                        };
                        let _ = store.set_failed(&row.id, &why, now);
                        self.note_failure(&row.provider, &why, now);
                    }
                }
                None if listed.contains(&row.scope) => {
                    let ran_a_job = row.online_at.is_some()
                        || row.busy_at.is_some()
                        || matches!(istate, Some(InstanceState::Exited { code: Some(0) }))
                        || store.job_taken_by(&row.name).unwrap_or(false);
                    if ran_a_job {
                        // An ephemeral runner unregisters after its one job (perhaps between
                        // two checks): done.
                        let _ = self.teardown(row, "job done, runner unregistered").await;
                    } else if exited {
                        let why = match istate {
                            Some(InstanceState::Exited { code: Some(c) }) => {
                                format!("runner exited (code {c}) without registering at GitHub")
                            }
                            _ => "runner not registered at GitHub and its instance is gone"
                                .to_string(),
                        };
                        let _ = store.set_failed(&row.id, &why, now);
                        self.note_failure(&row.provider, &why, now);
                    }
                    // Else still starting (a token runner registers itself a little later);
                    // the bootstrap timeout bounds the wait.
                }
                None => {}
            }
        }
        // Orphans at GitHub: runners with our prefix that no live row owns.
        let store_all = store.runners(false).unwrap_or_default();
        for (s, r) in &gh {
            if matched.contains(&r.id) {
                continue;
            }
            let live = store_all.iter().any(|x| {
                x.state != RunnerState::Gone && (x.gh_runner_id == Some(r.id) || x.name == r.name)
            });
            if live || r.busy {
                continue;
            }
            if let Some(scope) = scope_of(s) {
                match self.client.delete_runner(&scope, r.id).await {
                    Ok(()) | Err(GithubError::Api { status: 404, .. }) => {
                        rep.orphans += 1;
                        tracing::info!("autoscaler: removed orphan runner {} at GitHub", r.name);
                    }
                    Err(e) => rep.errors.push(format!("orphan runner {}: {e}", r.name)),
                }
            }
        }
        // Orphans at the providers: instances no live row refers to.
        let live_instances: BTreeSet<String> = store
            .runners(true)
            .unwrap_or_default()
            .iter()
            .filter_map(|r| r.instance.as_deref())
            .filter_map(|s| serde_json::from_str::<InstanceRef>(s).ok())
            .map(|i| format!("{}/{}", i.provider, i.id))
            .collect();
        for p in self.providers.clone() {
            // A Fly app may hold other nodes' runner machines: only local instances (recorded
            // under this node's data dir) are swept here.
            if p.kind() != "local" {
                continue;
            }
            match p.list().await {
                Ok(list) => {
                    for i in list {
                        if live_instances.contains(&format!("{}/{}", i.provider, i.id)) {
                            continue;
                        }
                        match p.stop(&i).await {
                            Ok(()) => {
                                rep.orphans += 1;
                                tracing::info!(
                                    "autoscaler: stopped orphan instance {} of {}",
                                    i.id,
                                    p.name()
                                );
                            }
                            Err(e) => rep.errors.push(format!("orphan instance {}: {e}", i.id)),
                        }
                    }
                }
                Err(e) => rep.errors.push(format!("instances of {}: {e}", p.name())),
            }
        }
        if rep.orphans > 0 {
            let _ = store.bump("orphans_removed", rep.orphans);
        }
    }

    fn note_failure(&mut self, provider: &str, why: &str, now: Millis) {
        let h = self.health.entry(provider.to_string()).or_default();
        h.streak += 1;
        let backoff = self
            .settings
            .backoff_ms
            .saturating_mul(1 << h.streak.min(16).saturating_sub(1))
            .min(600_000);
        h.next_try = now + backoff;
        h.last_error = Some(why.to_string());
        let streak = h.streak;
        // Kept in the store: a restart must not reset a provider the failure limit stopped.
        let _ = self
            .store()
            .set_meta(&format!("failures:{provider}"), &streak.to_string());
        let h = &self.health[provider];
        let limit = self.settings.failure_limit;
        if limit > 0 && h.streak == limit {
            tracing::warn!(
                "autoscaler: provider {provider} stopped after {limit} failures in a row \
                 (last: {why}); resume the autoscaler to try again"
            );
        }
    }

    /// Whether a refused `generate-jitconfig` may fall back to a registration token (always;
    /// a hook for a future `autoscaler.jit_only` switch).
    async fn jit_refused_ok(&self, _scope: &RunnerScope) -> bool {
        true
    }

    /// The web URL a runner registers at, from the API base: `https://api.github.com` →
    /// `https://github.com/<org or owner/repo>`; GHES `https://host/api/v3` →
    /// `https://host/<...>`.
    fn web_url(&self, scope: &str) -> String {
        let base = self.client.base_url().trim_end_matches('/');
        let web = if let Some(rest) = base.strip_prefix("https://api.") {
            format!("https://{rest}")
        } else {
            base.trim_end_matches("/api/v3").to_string()
        };
        let path = scope
            .strip_prefix("repo:")
            .or_else(|| scope.strip_prefix("org:"))
            .unwrap_or(scope);
        format!("{web}/{path}")
    }

    /// Clear failure streaks (an operator's resume).
    pub fn reset_failures(&mut self) {
        for p in self.health.keys() {
            let _ = self.store().set_meta(&format!("failures:{p}"), "0");
        }
        self.health.clear();
    }

    /// Stop the instance and remove the GitHub registration; `gone` when both are done,
    /// `removing` (retried next check) otherwise. Refuses a busy runner.
    async fn teardown(&self, row: &RunnerRow, why: &str) -> Result<Vec<String>, String> {
        let store = self.store();
        let now = self.clock.now_ms();
        let mut steps = Vec::new();
        // (The policy never retires a busy runner and an operator's remove refuses one; a row
        // still marked busy here is one GitHub no longer lists: its job is over.)
        // Unregister first: GitHub refuses (422) to delete a runner that is running a job, so
        // a runner handed a job since the last look is never killed mid-job.
        if let (Some(id), Some(scope)) = (row.gh_runner_id, scope_of(&row.scope)) {
            match self.client.delete_runner(&scope, id).await {
                Ok(()) | Err(GithubError::Api { status: 404, .. }) => {
                    steps.push(format!("removed runner {id} at GitHub"))
                }
                Err(GithubError::Api { status: 422, .. }) => {
                    let _ = store.set_state(&row.id, RunnerState::Busy, now);
                    return Err(format!(
                        "runner {} took a job meanwhile (GitHub refused to remove it): kept",
                        row.name
                    ));
                }
                Err(e) => {
                    let _ = store.set_state(&row.id, RunnerState::Removing, now);
                    let _ = store.set_error(&row.id, &clean(&e, &[]));
                    return Err(format!("could not remove runner {id} at GitHub: {e}"));
                }
            }
        }
        store
            .set_state(&row.id, RunnerState::Removing, now)
            .map_err(|e| e.to_string())?;
        let mut ok = true;
        if let Some(i) = row
            .instance
            .as_deref()
            .and_then(|s| serde_json::from_str::<InstanceRef>(s).ok())
        {
            match self.provider(&row.provider) {
                Some(p) => match p.stop(&i).await {
                    Ok(()) => steps.push(format!("stopped instance {}", i.id)),
                    Err(e) => {
                        ok = false;
                        let _ = store.set_error(&row.id, &clean(&e, &[]));
                        steps.push(format!("could not stop instance {}: {e}", i.id));
                    }
                },
                None => steps.push(format!(
                    "provider {} is no longer configured: instance {} left alone",
                    row.provider, i.id
                )),
            }
        }
        if ok {
            store
                .set_state(&row.id, RunnerState::Gone, now)
                .map_err(|e| e.to_string())?;
            tracing::info!("autoscaler: runner {} removed ({why})", row.name);
            Ok(steps)
        } else {
            Err(steps.join("; "))
        }
    }

    /// Start one runner on `provider`, for `job` (re-checked to be still queued) or for the
    /// warm pool / an operator (`repo` scopes it when the owner is not an organization).
    /// `Ok(None)` when the job no longer needs it.
    async fn launch(
        &mut self,
        provider: &str,
        job: Option<&JobKey>,
        repo: Option<&str>,
    ) -> Result<Option<RunnerRow>, String> {
        let p = self
            .provider(provider)
            .cloned()
            .ok_or_else(|| format!("no provider {provider}"))?;
        let store = self.store();
        if let Some(j) = job {
            // Re-check just before launching, past the cache: it may have been taken or
            // cancelled since the runs were listed.
            if let Some((o, n)) = split(&j.repo) {
                match self.client.job_now(o, n, j.job_id).await {
                    Ok(g) if g.status.as_deref() == Some("queued") => {}
                    Ok(g) => {
                        let started = g.started_at.as_deref().and_then(parse_timestamp);
                        let _ = store.set_job_left(j, started, g.runner_name.as_deref());
                        return Ok(None);
                    }
                    Err(GithubError::Api { status: 404, .. }) => {
                        let _ = store.set_job_left(j, None, None);
                        return Ok(None);
                    }
                    Err(e) => return Err(format!("re-checking job {j}: {e}")),
                }
            }
        }
        let Some(scope) = self.scope_for(job.map(|j| j.repo.as_str()).or(repo)).await else {
            return Err(
                "no scope for a warm runner: min_idle needs an organization owner".to_string(),
            );
        };
        let gh_scope = scope_of(&scope).ok_or_else(|| format!("bad scope {scope}"))?;
        let ulid = ulid::Ulid::new().to_string().to_ascii_lowercase();
        let id = format!("run-{ulid}");
        let name = format!(
            "{}-{}-{}-{}",
            self.settings.name_prefix, self.settings.node_tag, provider, ulid
        );
        let labels: Vec<String> = p.labels().to_vec();
        let now = self.clock.now_ms();
        let row = store
            .insert_runner(
                &NewRunner {
                    id: &id,
                    name: &name,
                    scope: &scope,
                    provider,
                    labels: &labels,
                    job,
                },
                now,
            )
            .map_err(|e| e.to_string())?;
        let group = match self.groups.get(&scope) {
            Some(g) => *g,
            None => match self.client.default_runner_group_id(&gh_scope).await {
                Ok(g) => {
                    self.groups.insert(scope.clone(), g);
                    g
                }
                Err(e) => {
                    let why = format!("runner group of {scope}: {e}");
                    let _ = store.set_failed(&id, &why, now);
                    return Err(why);
                }
            },
        };
        let req = JitConfigRequest {
            name: name.clone(),
            runner_group_id: group,
            labels: labels.clone(),
            work_folder: "_work".into(),
        };
        let (spec, gh_id) = match self.client.generate_jitconfig(&gh_scope, &req).await {
            Ok(jit) => (
                LaunchSpec {
                    name: name.clone(),
                    labels,
                    jit_config: jit.encoded_jit_config,
                    registration: None,
                },
                Some(jit.runner.id),
            ),
            // JIT configs not allowed here (older GHES: 404; a policy or app permission: 403,
            // 422): fall back to a registration token, one per runner.
            Err(GithubError::Api { status, .. })
                if matches!(status, 403 | 404 | 422) && self.jit_refused_ok(&gh_scope).await =>
            {
                match self.client.registration_token(&gh_scope).await {
                    Ok(t) => {
                        tracing::info!(
                            "autoscaler: generate-jitconfig refused ({status}) for {scope}; \
                             runner {name} registers with a registration token"
                        );
                        (
                            LaunchSpec {
                                name: name.clone(),
                                labels,
                                jit_config: crate::github::types::SecretValue::new(""),
                                registration: Some(super::provider::Registration {
                                    url: self.web_url(&scope),
                                    token: t.token,
                                }),
                            },
                            None,
                        )
                    }
                    Err(e) => {
                        let why = format!(
                            "generate-jitconfig refused ({status}) and no registration token \
                             for {name}: {e}"
                        );
                        let _ = store.set_failed(&id, &why, self.clock.now_ms());
                        self.note_failure(provider, &why, self.clock.now_ms());
                        return Err(why);
                    }
                }
            }
            Err(e) => {
                let why = format!("generate-jitconfig for {name}: {e}");
                let _ = store.set_failed(&id, &why, self.clock.now_ms());
                self.note_failure(provider, &why, self.clock.now_ms());
                return Err(why);
            }
        };
        if let Some(g) = gh_id {
            let _ = store.set_registered(&id, g);
        }
        match p.launch(&spec).await {
            Ok(inst) => {
                let now = self.clock.now_ms();
                let recorded = serde_json::to_string(&inst)
                    .map_err(|e| e.to_string())
                    .and_then(|json| {
                        store
                            .set_launched(&id, &json, now)
                            .map_err(|e| e.to_string())
                    });
                if let Err(e) = recorded {
                    // Not recorded (a full disk): an instance nobody knows of must not run.
                    let _ = p.stop(&inst).await;
                    if let Some(g) = gh_id {
                        let _ = self.client.delete_runner(&gh_scope, g).await;
                    }
                    let _ =
                        store.set_failed(&id, &format!("could not record the launch: {e}"), now);
                    return Err(format!(
                        "launching {name}: could not record it ({e}); undone"
                    ));
                }
                if let Some(j) = job {
                    let _ = store.set_job_launched(j, now);
                }
                if let Some(h) = self.health.get_mut(provider)
                    && h.streak > 0
                {
                    h.streak = 0;
                    h.next_try = 0;
                    let _ = store.set_meta(&format!("failures:{provider}"), "0");
                }
                tracing::info!(
                    "autoscaler: runner {name} launched on {provider}{}",
                    job.map(|j| format!(" for job {j}")).unwrap_or_default()
                );
                Ok(store.runner(&id).map_err(|e| e.to_string())?.or(Some(row)))
            }
            Err(e) => {
                let why = clean(&e, &[spec.secret()]);
                let now = self.clock.now_ms();
                // Remove the registration: a runner that never starts must not linger.
                if let Some(g) = gh_id {
                    let _ = self.client.delete_runner(&gh_scope, g).await;
                }
                let _ = store.set_failed(&id, &format!("launch failed: {why}"), now);
                self.note_failure(provider, &why, now);
                Err(format!("launching {name} on {provider}: {why}"))
            }
        }
    }

    /// Operator: start `count` runners for `repo` on the first provider covering `want`
    /// labels (the first provider when empty), within the limits.
    ///
    /// # Errors
    /// [`ControlError::Refused`] when no provider covers the labels or the max is reached.
    pub async fn provision(
        &mut self,
        repo: &str,
        want: &[String],
        count: u32,
    ) -> Result<Vec<RunnerRow>, ControlError> {
        if split(repo).is_none() {
            return Err(ControlError::Refused(format!(
                "repo must be owner/name, got {repo:?}"
            )));
        }
        if self.paused()? {
            return Err(ControlError::Refused(
                "the autoscaler is paused: resume it first".into(),
            ));
        }
        let want = labels(want);
        let provider = self
            .providers
            .iter()
            .find(|p| want.is_empty() || policy::covers(&labels(p.labels()), &want))
            .map(|p| p.name().to_string())
            .ok_or_else(|| {
                ControlError::Refused(format!(
                    "no provider offers labels {:?}",
                    want.iter().collect::<Vec<_>>()
                ))
            })?;
        let live = self.store().runners(true)?;
        let held = live.len() as u32;
        let max = self.settings.limits.max_runners;
        if held + count > max {
            return Err(ControlError::Refused(format!(
                "{count} more runner(s) would exceed the max of {max} ({held} running)"
            )));
        }
        if let Some(pm) = self.provider(&provider).and_then(|p| p.max_runners()) {
            let on = live.iter().filter(|r| r.provider == provider).count() as u32;
            if on + count > pm {
                return Err(ControlError::Refused(format!(
                    "{count} more runner(s) would exceed provider {provider}'s max of {pm}"
                )));
            }
        }
        let mut out = Vec::new();
        for _ in 0..count {
            match self.launch(&provider, None, Some(repo)).await {
                Ok(Some(r)) => out.push(r),
                Ok(None) => {}
                Err(e) => {
                    if out.is_empty() {
                        return Err(ControlError::Refused(e));
                    }
                    tracing::warn!("autoscaler: {e}");
                }
            }
        }
        Ok(out)
    }

    /// Operator: remove a runner (never a busy one). `dry_run` only says what would happen.
    ///
    /// # Errors
    /// [`ControlError`].
    pub async fn remove(&self, id: &str, dry_run: bool) -> Result<RemoveOutcome, ControlError> {
        let row = self
            .store()
            .runner(id)?
            .ok_or_else(|| ControlError::NotFound(id.to_string()))?;
        if row.state == RunnerState::Busy {
            return Err(ControlError::Refused(format!(
                "runner {} is busy{}: drain it instead, it is retired once its job ends",
                row.name,
                row.current_job
                    .as_deref()
                    .map(|j| format!(" with job {j}"))
                    .unwrap_or_default()
            )));
        }
        if row.state == RunnerState::Gone {
            return Ok(RemoveOutcome {
                id: row.id,
                name: row.name,
                steps: vec!["already gone".into()],
                dry_run,
                state: RunnerState::Gone,
            });
        }
        if dry_run {
            let mut steps = Vec::new();
            if let Some(i) = &row.instance {
                steps.push(format!("would stop instance {i} on {}", row.provider));
            }
            if let Some(g) = row.gh_runner_id {
                steps.push(format!("would remove runner {g} at GitHub ({})", row.scope));
            }
            steps.push("would mark it gone".into());
            return Ok(RemoveOutcome {
                id: row.id,
                name: row.name,
                steps,
                dry_run,
                state: row.state,
            });
        }
        let steps = self
            .teardown(&row, "removed by an operator")
            .await
            .map_err(ControlError::Refused)?;
        Ok(RemoveOutcome {
            id: row.id,
            name: row.name,
            steps,
            dry_run,
            state: RunnerState::Gone,
        })
    }

    /// Operator: drain a runner (no new work; retired once idle).
    ///
    /// # Errors
    /// [`ControlError::NotFound`].
    pub fn drain(&self, id: &str) -> Result<(), ControlError> {
        if self.store().set_draining(id, true)? {
            Ok(())
        } else {
            Err(ControlError::NotFound(id.to_string()))
        }
    }

    /// The startup recovery pass: finish or undo what a crash left half done (rows in
    /// `requested` or `removing`), before the first check launches anything.
    pub async fn recover(&mut self) -> usize {
        let rows = self.store().runners(true).unwrap_or_default();
        let mut n = 0;
        for row in rows {
            if matches!(row.state, RunnerState::Requested | RunnerState::Removing) {
                match self
                    .teardown(&row, "recovering a half-done operation")
                    .await
                {
                    Ok(_) => n += 1,
                    Err(e) => tracing::warn!("autoscaler: recovering {}: {e}", row.name),
                }
            }
        }
        if n > 0 {
            tracing::info!(
                "autoscaler: cleaned up {n} half-done runner operation(s) from before the restart"
            );
        }
        n
    }
}

/// One provider's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderStatus {
    /// Name.
    pub name: String,
    /// `local` or `fly`.
    pub kind: String,
    /// Labels.
    pub labels: Vec<String>,
    /// Its cap.
    pub max_runners: Option<u32>,
    /// Launch failures in a row.
    pub failures_in_a_row: u32,
    /// Gets no new runners (failure limit or back-off).
    pub stopped: bool,
    /// Last failure.
    pub last_error: Option<String>,
}

/// Whether a retire reason came from the policy (for tests and status).
pub fn is_policy_reason(r: RetireReason) -> bool {
    !matches!(r, RetireReason::Drained)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p2p_tags_come_from_the_top_level_env() {
        let y = "name: x\non: push\nenv:\n  WORKFLOW_TAGS: p2p-eligible, unit-test\njobs:\n  a:\n    runs-on: self-hosted\n    steps: []\n";
        assert_eq!(p2p_tag(y), Some(WorkflowTag::P2pEligible));
        let y = "env:\n  WORKFLOW_TAGS: \"github-api p2p-only\"\n";
        assert_eq!(p2p_tag(y), Some(WorkflowTag::P2pOnly));
        let y = "env:\n  WORKFLOW_TAGS: [p2p-only]\n";
        assert_eq!(p2p_tag(y), Some(WorkflowTag::P2pOnly));
        // Job-level env and other tags do not count; garbage does not crash.
        let y = "jobs:\n  a:\n    env:\n      WORKFLOW_TAGS: p2p-only\n";
        assert_eq!(p2p_tag(y), None);
        assert_eq!(p2p_tag("env:\n  WORKFLOW_TAGS: github-api\n"), None);
        assert_eq!(p2p_tag(":\n- ]["), None);
    }

    #[test]
    fn real_workflow_files_are_not_p2p() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/fixtures/workflows/popular");
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return;
        };
        let mut n = 0;
        for e in rd.flatten() {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            assert_eq!(p2p_tag(&text), None, "{}", e.path().display());
            n += 1;
        }
        assert!(n > 0);
    }

    #[test]
    fn seed_lines() {
        let r = CheckReport {
            n: 1,
            at: 1_763_389_800_000,
            repos: 2,
            workflows: 4,
            p2p_pending: 3,
            p2p_assigned: 2,
            p2p_slots: 3,
            provisioned: vec!["a".into(); 5],
            ..CheckReport::default()
        };
        let l = r.lines();
        assert_eq!(l[0], "--- Check #1 at 2025-11-17 14:30:00 ---");
        assert!(l.contains(&"P2P workflows: 3 pending, 2 assigned".to_string()));
        assert!(l.contains(&"Found 2 repos with 4 workflows".to_string()));
        assert!(
            l.contains(&"Allocating 3 runners for P2P tasks, 5 for GitHub workflows".to_string())
        );
        assert!(l.contains(&"✓ Generated 5 runner token(s)".to_string()));
        assert!(l.contains(
            &"P2P Summary: 3 pending, 2 assigned, 3 runners allocated for P2P".to_string()
        ));
    }

    #[test]
    fn scopes_parse() {
        assert!(matches!(
            scope_of("repo:a/b"),
            Some(RunnerScope::Repo { .. })
        ));
        assert!(matches!(scope_of("org:a"), Some(RunnerScope::Org { .. })));
        assert!(scope_of("repo:ab").is_none());
        assert!(scope_of("x").is_none());
    }

    #[test]
    fn errors_are_cleaned_of_secrets() {
        let s = clean("bad config AAAABBBBCCCC here", &["AAAABBBBCCCC"]);
        assert_eq!(s, "bad config [redacted] here");
    }
}
