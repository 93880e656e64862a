//! The engine's autoscaler service: the [`Controller`] on its own thread (it borrows a SQLite
//! connection across awaits, like the orchestrator), checking every `autoscaler.interval` and
//! serving the operator commands (provision, remove, drain, pause, status) between checks.
//!
//! It starts when the GitHub layer is on, unless `--disable-autoscaler`, read-only mode, or
//! no owner/repositories to watch. Its runner rows are read by the engine's own store
//! connection for the snapshot; everything that calls GitHub or a provider runs here.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::command::{AutoscalerStatus, Done, ProviderView, RunnerList, RunnerRemoved, RunnerView};
use super::{Command, EngineError, Reply};
use crate::autoscaler::controller::{ControlError, Controller, P2pSink, Settings};
use crate::autoscaler::policy::Limits;
use crate::autoscaler::provider::{self, Provider};
use crate::autoscaler::store::{AutoscalerStore, RunnerRow};
use crate::clock::{SharedClock, rfc3339};
use crate::config::{AutoscalerConfig, ComputeConfig};
use crate::github::GithubClient;

/// Settings the service runs with.
#[derive(Debug, Clone)]
pub struct AutoscaleOptions {
    /// `[autoscaler]`.
    pub cfg: AutoscalerConfig,
    /// `[compute]` (Fly access for `fly` providers).
    pub compute: ComputeConfig,
    /// Store file.
    pub db_path: PathBuf,
    /// Data dir (local providers keep their instance records under `runners/`).
    pub data_dir: PathBuf,
}

enum Req {
    Exec(Command, oneshot::Sender<Result<Reply, EngineError>>),
}

/// Handle to the running service.
#[derive(Debug, Clone)]
pub struct AutoscalerHandle {
    tx: mpsc::Sender<Req>,
}

impl AutoscalerHandle {
    /// Run one autoscaler command on the service thread.
    ///
    /// # Errors
    /// [`EngineError`].
    pub async fn execute(&self, cmd: Command) -> Result<Reply, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Req::Exec(cmd, tx))
            .await
            .map_err(|_| EngineError::Invalid("the autoscaler has stopped".into()))?;
        rx.await
            .map_err(|_| EngineError::Invalid("the autoscaler has stopped".into()))?
    }
}

/// The face's view of a runner row.
pub fn runner_view(r: &RunnerRow) -> RunnerView {
    RunnerView {
        id: r.id.clone(),
        name: r.name.clone(),
        scope: r.scope.clone(),
        labels: r.labels.clone(),
        provider: r.provider.clone(),
        state: r.state.as_str().to_string(),
        job: r.current_job.clone(),
        for_job: r.job.as_ref().map(|j| j.to_string()),
        started_at: rfc3339(r.created_at),
        state_since: rfc3339(r.state_since),
        github_id: r.gh_runner_id,
        draining: r.draining,
        last_error: r.last_error.clone(),
    }
}

/// Settings for the controller from the config.
/// `node_tag`: this node's tag in runner names ([`node_tag`]).
pub fn settings(cfg: &AutoscalerConfig, node_tag: &str) -> Settings {
    Settings {
        owner: cfg.owner.clone(),
        repos: cfg.repos.clone(),
        since_days: cfg.since_days,
        limits: Limits {
            max_runners: cfg.max_runners,
            min_idle: cfg.min_idle,
            idle_grace_ms: cfg.idle_grace.as_millis() as i64,
            bootstrap_timeout_ms: cfg.bootstrap_timeout.as_millis() as i64,
        },
        failure_limit: cfg.failure_limit,
        name_prefix: cfg.name_prefix.clone(),
        node_tag: node_tag.to_string(),
        backoff_ms: (cfg.interval.as_millis() as i64).clamp(1_000, 60_000),
        runs_per_repo: 50,
    }
}

/// This node's tag in runner names: 6 hex digits of SHA-256 of its data dir's canonical
/// path, stable across restarts and distinct between nodes (peers) watching one owner.
pub fn node_tag(data_dir: &std::path::Path) -> String {
    use sha2::{Digest, Sha256};
    let p = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let d = Sha256::digest(p.to_string_lossy().as_bytes());
    d.iter().take(3).map(|b| format!("{b:02x}")).collect()
}

/// Build the configured providers.
///
/// # Errors
/// The first provider that cannot be built, named.
pub fn providers(opts: &AutoscaleOptions) -> Result<Vec<Arc<dyn Provider>>, String> {
    let ctx = provider::BuildContext {
        runners_dir: opts.data_dir.join("runners"),
        fly: if opts.compute.enabled() {
            let get = |k: &str| opts.compute.var(k);
            crate::compute::FlyConfig::from_env(get).ok()
        } else {
            None
        },
    };
    opts.cfg
        .providers
        .iter()
        .map(|p| provider::build(p, &ctx).map_err(|e| format!("provider {}: {e}", p.name)))
        .collect()
}

/// Start the service thread. `changed` is called after each check and command.
///
/// # Errors
/// Why it is off (no owner or repositories, a provider that cannot be built, no thread).
pub fn start(
    client: Arc<GithubClient>,
    opts: AutoscaleOptions,
    clock: SharedClock,
    sink: Option<Arc<dyn P2pSink>>,
    changed: impl Fn() + Send + 'static,
) -> Result<AutoscalerHandle, String> {
    if opts.cfg.owner.is_none() && opts.cfg.repos.is_empty() {
        return Err(
            "no owner to watch: give --autoscaler-owner (GITHUB_AUTOSCALER_OWNER) or \
             autoscaler.repos"
                .into(),
        );
    }
    let provs = providers(&opts)?;
    if provs.is_empty() {
        tracing::warn!(
            "autoscaler: no [[autoscaler.providers]] configured: queued jobs are counted, no \
             runner is started"
        );
    }
    let conn = Connection::open(&opts.db_path).map_err(|e| format!("autoscaler store: {e}"))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| format!("autoscaler store: {e}"))?;
    let (tx, mut rx) = mpsc::channel::<Req>(16);
    std::thread::Builder::new()
        .name("flotilla-autoscaler".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("autoscaler runtime: {e}");
                    return;
                }
            };
            rt.block_on(async move {
                let mut ctl = Controller::new(
                    &client,
                    &conn,
                    provs,
                    clock.clone(),
                    settings(&opts.cfg, &node_tag(&opts.data_dir)),
                    sink,
                );
                ctl.recover().await;
                let mut tick = tokio::time::interval(opts.cfg.interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            ctl.check().await;
                            changed();
                        }
                        req = rx.recv() => match req {
                            Some(Req::Exec(cmd, reply)) => {
                                let r = exec(&mut ctl, &opts, &client, cmd).await;
                                let _ = reply.send(r);
                                changed();
                            }
                            None => break,
                        }
                    }
                }
            });
        })
        .map_err(|e| format!("cannot start the autoscaler thread: {e}"))?;
    Ok(AutoscalerHandle { tx })
}

fn control(e: ControlError) -> EngineError {
    match e {
        ControlError::NotFound(id) => EngineError::NotFound { what: "runner", id },
        other => EngineError::Invalid(other.to_string()),
    }
}

async fn exec(
    ctl: &mut Controller<'_>,
    opts: &AutoscaleOptions,
    client: &GithubClient,
    cmd: Command,
) -> Result<Reply, EngineError> {
    let inv = |e: crate::store::StoreError| EngineError::Invalid(e.to_string());
    match cmd {
        Command::ProvisionRunner {
            repo,
            labels,
            count,
        } => {
            if !(1..=100).contains(&count) {
                return Err(EngineError::Invalid(format!(
                    "count must be 1..=100, got {count}"
                )));
            }
            let rows = ctl
                .provision(&repo, &labels, count)
                .await
                .map_err(control)?;
            Ok(Reply::Runners(RunnerList {
                runners: rows.iter().map(runner_view).collect(),
            }))
        }
        Command::RemoveRunner { runner_id, dry_run } => {
            let o = ctl.remove(&runner_id, dry_run).await.map_err(control)?;
            Ok(Reply::RunnerRemoved(RunnerRemoved {
                id: o.id,
                name: o.name,
                steps: o.steps,
                dry_run: o.dry_run,
                state: o.state.as_str().to_string(),
            }))
        }
        Command::DrainRunner { runner_id } => {
            ctl.drain(&runner_id).map_err(control)?;
            Ok(Reply::Done(Done {
                message: format!("runner {runner_id} drains: no new work, retired once idle"),
            }))
        }
        Command::PauseAutoscaler { paused } => {
            ctl.set_paused(paused).map_err(inv)?;
            if !paused {
                ctl.reset_failures();
            }
            tracing::info!(
                "autoscaler {}",
                if paused {
                    "paused: no new runners (clean-up goes on)"
                } else {
                    "resumed"
                }
            );
            Ok(Reply::Done(Done {
                message: if paused {
                    "autoscaler paused: no new runners; clean-up goes on".into()
                } else {
                    "autoscaler resumed (provider failure counts cleared)".into()
                },
            }))
        }
        Command::CheckAutoscaler => {
            let r = ctl.check().await;
            Ok(Reply::Done(Done {
                message: format!(
                    "check #{}: {} queued job(s), {} runner(s) started, {} retired{}",
                    r.n,
                    r.queued_jobs,
                    r.provisioned.len(),
                    r.retired.len(),
                    if r.errors.is_empty() {
                        String::new()
                    } else {
                        format!("; {} problem(s): {}", r.errors.len(), r.errors.join("; "))
                    }
                ),
            }))
        }
        Command::GetAutoscalerStatus => {
            let now = ctl.clock_now();
            let mut st = status_from_store(ctl.conn_ref(), opts).map_err(inv)?;
            st.enabled = true;
            st.paused = ctl.paused().map_err(inv)?;
            st.rate_limit_remaining = client.rate_limit("core").map(|r| r.remaining);
            st.providers = ctl
                .provider_status(now)
                .into_iter()
                .map(|p| ProviderView {
                    name: p.name,
                    kind: p.kind,
                    labels: p.labels,
                    max_runners: p.max_runners,
                    failures_in_a_row: p.failures_in_a_row,
                    stopped: p.stopped,
                    last_error: p.last_error,
                })
                .collect();
            Ok(Reply::Autoscaler(Box::new(st)))
        }
        other => Err(EngineError::Invalid(format!(
            "{} is not an autoscaler command",
            other.kind().name()
        ))),
    }
}

/// The status figures the store holds (the engine uses this when the service is off, too).
///
/// # Errors
/// [`crate::store::StoreError`].
pub fn status_from_store(
    conn: &Connection,
    opts: &AutoscaleOptions,
) -> Result<AutoscalerStatus, crate::store::StoreError> {
    let s = AutoscalerStore::new(conn);
    let mut by_state = BTreeMap::new();
    for (st, n) in s.counts_by_state()? {
        if st != crate::autoscaler::policy::RunnerState::Gone {
            by_state.insert(st.as_str().to_string(), n);
        }
    }
    let (wait, start) = s.wait_figures(100)?;
    Ok(AutoscalerStatus {
        enabled: false,
        reason: None,
        paused: s.meta("paused")?.as_deref() == Some("true"),
        owner: opts.cfg.owner.clone(),
        checks: s.counter("checks")?,
        pending_jobs: s.pending_jobs()?.iter().filter(|j| !j.p2p).count() as u64,
        runners_by_state: by_state,
        last_check: s
            .meta("last_check")?
            .and_then(|v| v.parse::<i64>().ok())
            .map(rfc3339),
        interval_s: opts.cfg.interval.as_secs(),
        max_runners: opts.cfg.max_runners,
        queue_wait_p50_s: wait.map(|ms| ms as f64 / 1000.0),
        startup_p50_s: start.map(|ms| ms as f64 / 1000.0),
        orphans_removed: s.counter("orphans_removed")?,
        api_calls_last_check: s.counter("last_api_calls")?,
        rate_limit_remaining: None,
        providers: Vec::new(),
    })
}
