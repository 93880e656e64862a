//! The engine's orchestrator service: every `orchestrator.interval` it checks the watched
//! repositories for failed runs (through the GitHub layer's cache), classifies the failed jobs'
//! logs, stores one issue per (repo, workflow, issue type, run), applies the fixes the policy
//! allows (re-run flaky jobs within `--retries`, open or update one GitHub issue per class,
//! with `--allow-push` a pull request for a missing pip dependency or an unformatted file),
//! and writes the seed's reports.
//!
//! The monitor borrows a SQLite connection across awaits, so the service runs on its own
//! thread with a current-thread runtime; the engine talks to it through a channel. Reads
//! (issue lists, evidence) go through the engine's own store connection.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::clock::SharedClock;
use crate::config::OrchestratorConfig;
use crate::github::GithubClient;
use crate::orchestrator::fixes::{ExecOptions, FixExecutor, FixOutcome, FixPolicy};
use crate::orchestrator::monitor::{Monitor, RepoRef, parse_repo_list};
use crate::orchestrator::report::{RunSummary, write_reports};
use crate::orchestrator::store::IssueStore;

/// Requests to the service thread.
enum Req {
    Apply {
        ids: Vec<String>,
        opts: ExecOptions,
        reply: oneshot::Sender<Vec<FixOutcome>>,
    },
}

/// Handle to the running service.
#[derive(Debug, Clone)]
pub struct OrchestratorHandle {
    tx: mpsc::Sender<Req>,
}

impl OrchestratorHandle {
    /// Apply (or, with `dry_run`, plan) the fixes of these issues.
    pub async fn apply(
        &self,
        ids: Vec<String>,
        opts: ExecOptions,
    ) -> Result<Vec<FixOutcome>, String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Req::Apply { ids, opts, reply })
            .await
            .map_err(|_| "the orchestrator has stopped".to_string())?;
        rx.await
            .map_err(|_| "the orchestrator has stopped".to_string())
    }
}

/// Settings the service runs with.
#[derive(Debug, Clone)]
pub struct OrchestratorOptions {
    /// Config section.
    pub cfg: OrchestratorConfig,
    /// Store file.
    pub db_path: PathBuf,
    /// Where reports go.
    pub reports_dir: PathBuf,
    /// Read-only mode: check and classify, never fix.
    pub read_only: bool,
}

/// Start the service thread. `changed` is called after each check.
pub fn start(
    client: Arc<GithubClient>,
    opts: OrchestratorOptions,
    clock: SharedClock,
    changed: impl Fn() + Send + 'static,
) -> Result<OrchestratorHandle, String> {
    let explicit = parse_repo_list(&opts.cfg.repos)?;
    if explicit.is_empty() && opts.cfg.owner.is_none() {
        return Err(
            "no repositories to watch: give --orchestrator-repo OWNER/NAME or orchestrator.owner \
             (GITHUB_AUTOSCALER_OWNER)"
                .into(),
        );
    }
    let conn = Connection::open(&opts.db_path).map_err(|e| format!("orchestrator store: {e}"))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| format!("orchestrator store: {e}"))?;
    let (tx, mut rx) = mpsc::channel::<Req>(16);
    std::thread::Builder::new()
        .name("flotilla-orchestrator".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("orchestrator runtime: {e}");
                    return;
                }
            };
            rt.block_on(async move {
                let policy = FixPolicy {
                    retries: opts.cfg.retries,
                    formatters: opts.cfg.formatters.clone(),
                    ..FixPolicy::default()
                };
                let mut tick = tokio::time::interval(opts.cfg.interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            check_once(&client, &conn, &clock, &opts, &explicit, &policy).await;
                            changed();
                        }
                        req = rx.recv() => match req {
                            Some(Req::Apply { ids, opts: eo, reply }) => {
                                let ex = FixExecutor::new(&client, &conn, clock.clone(), policy.clone());
                                let out = ex.apply(&ids, eo).await;
                                let _ = reply.send(out);
                                changed();
                            }
                            None => break,
                        }
                    }
                }
            });
        })
        .map_err(|e| format!("cannot start the orchestrator thread: {e}"))?;
    Ok(OrchestratorHandle { tx })
}

async fn check_once(
    client: &GithubClient,
    conn: &Connection,
    clock: &SharedClock,
    opts: &OrchestratorOptions,
    explicit: &[RepoRef],
    policy: &FixPolicy,
) {
    let repos = if explicit.is_empty() {
        let owner = opts.cfg.owner.clone().unwrap_or_default();
        match client
            .repos_pushed_within(&owner, opts.cfg.since_days)
            .await
        {
            Ok(r) => RepoRef::from_repositories(&r),
            Err(e) => {
                tracing::warn!("orchestrator: cannot list repositories of {owner}: {e}");
                return;
            }
        }
    } else {
        explicit.to_vec()
    };
    let catalogue = match crate::orchestrator::cmd::catalogue(&opts.cfg.patterns) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("orchestrator patterns: {e}");
            return;
        }
    };
    let monitor = Monitor::new(client, conn, clock.clone()).with_catalogue(catalogue);
    let report = monitor.check(&repos).await;
    for e in report.errors() {
        tracing::warn!("orchestrator: {e}");
    }
    tracing::info!(
        repos = repos.len(),
        new_issues = report.new_issues(),
        "orchestrator check done"
    );
    let outcomes = if opts.cfg.auto_fix && !opts.read_only {
        let ex = FixExecutor::new(client, conn, clock.clone(), policy.clone());
        match ex
            .apply_open(
                None,
                ExecOptions {
                    allow_push: opts.cfg.allow_push,
                    dry_run: false,
                },
            )
            .await
        {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!("orchestrator fixes: {e}");
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    for o in outcomes.iter().filter(|o| o.applied) {
        tracing::info!(issue = %o.issue_id, "fix applied: {}", o.result.summary());
    }
    let store = IssueStore::new(conn);
    match RunSummary::collect(&store, &report, &outcomes, clock.now_ms()) {
        Ok(summary) => {
            if let Err(e) = write_reports(&opts.reports_dir, &summary) {
                tracing::warn!(dir = %opts.reports_dir.display(), "cannot write the orchestrator report: {e}");
            }
        }
        Err(e) => tracing::warn!("orchestrator report: {e}"),
    }
}
