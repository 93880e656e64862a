//! The engine: owns all state and services; the TUI and MCP faces reach it only through an
//! [`EngineHandle`].
//!
//! The engine is one tokio task (an actor). Faces send a [`Command`] with
//! [`EngineHandle::execute`]; the policy gate ([`policy::Policy`]) checks it; the engine
//! applies it, writes what must survive to SQLite *before* replying, and publishes a new
//! [`Snapshot`] (watch channel) and [`Event`]s (broadcast channel).

pub mod autoscale;
pub mod command;
pub mod compute;
pub mod github;
pub mod hardware;
pub mod lock;
pub mod logbuf;
pub mod mesh;
pub mod meshsched;
pub mod orch;
pub mod policy;
pub mod runner;
pub mod snapshot;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use regex::RegexBuilder;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::{debug, error, info, warn};

use crate::clock::{Millis, SharedClock, rfc3339};
use crate::config::Config;
use crate::sched::queue::TaskQueue;
use crate::sched::workflow::{SpecError, TaskState, WorkflowStatus, WorkflowTag, workflow_status};
use crate::store::{Store, StoreError, TaskRow, WorkflowRow};
use command::*;
pub use command::{Command, Reply, Source};
use logbuf::{LogBuffer, level_name, parse_level};
pub use policy::{CommandKind, Danger, Policy, PolicyError};
use runner::{RunDone, RunHandle, RunRequest, spawn_task};
pub use snapshot::Snapshot;
use snapshot::{NodeView, QueueRow};

/// Engine errors, as both faces report them.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Refused by the policy gate.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The store failed; nothing was acknowledged.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An invalid workflow or task.
    #[error("invalid workflow: {0}")]
    Spec(#[from] SpecError),
    /// No such object.
    #[error("{what} {id} not found")]
    NotFound {
        /// Kind of object.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// Bad arguments.
    #[error("{0}")]
    Invalid(String),
    /// The engine has stopped.
    #[error("the engine has stopped")]
    Stopped,
}

/// Things that happened, for faces that want to react (notifications, status lines).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A workflow was accepted (it is in the store).
    WorkflowSubmitted {
        /// Id.
        workflow_id: String,
        /// Name.
        name: String,
        /// Who submitted it.
        source: &'static str,
    },
    /// A task's process started.
    TaskStarted {
        /// Task id.
        task_id: String,
    },
    /// A task finished.
    TaskFinished {
        /// Task id.
        task_id: String,
        /// Final state.
        state: TaskState,
    },
    /// A workflow reached a terminal status.
    WorkflowFinished {
        /// Id.
        workflow_id: String,
        /// Final status.
        status: WorkflowStatus,
    },
}

/// Engine settings, taken from [`Config`].
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// SQLite file.
    pub db_path: PathBuf,
    /// Data dir (shown in status).
    pub data_dir: PathBuf,
    /// Node name.
    pub node_name: String,
    /// Read-only mode.
    pub read_only: bool,
    /// Tasks at once.
    pub max_concurrent_tasks: usize,
    /// Starvation boost factor.
    pub boost_factor: f64,
    /// Starvation boost interval.
    pub boost_interval: Duration,
    /// Default task timeout.
    pub default_timeout: Duration,
    /// Output tail bytes per task.
    pub output_limit: usize,
    /// SIGTERM-to-SIGKILL grace.
    pub kill_grace: Duration,
    /// Extra capability labels.
    pub capabilities: Vec<String>,
    /// Cap on the store's size in bytes (0 = none).
    pub max_store_bytes: u64,
    /// Fly Machines access and VM limits (compute is off unless token and app are set).
    pub compute: crate::config::ComputeConfig,
    /// GitHub API access.
    pub github: crate::config::GithubConfig,
    /// P2P node settings.
    pub p2p: crate::config::P2pConfig,
    /// Orchestrator settings.
    pub orchestrator: crate::config::OrchestratorConfig,
    /// Autoscaler settings.
    pub autoscaler: crate::config::AutoscalerConfig,
}

impl EngineOptions {
    /// Options from the effective config.
    pub fn from_config(c: &Config) -> Self {
        Self {
            db_path: c.db_path(),
            data_dir: c.general.data_dir.clone(),
            node_name: c.general.node_name.clone(),
            read_only: c.general.read_only,
            max_concurrent_tasks: c.scheduler.max_concurrent_tasks,
            boost_factor: c.scheduler.priority_boost_factor,
            boost_interval: c.scheduler.boost_interval,
            default_timeout: c.scheduler.default_task_timeout,
            output_limit: c.scheduler.output_limit_bytes,
            kill_grace: c.scheduler.kill_grace,
            capabilities: c.p2p.capabilities.clone(),
            max_store_bytes: c.general.max_store_bytes,
            compute: c.compute.clone(),
            github: c.github.clone(),
            p2p: c.p2p.clone(),
            orchestrator: c.orchestrator.clone(),
            autoscaler: c.autoscaler.clone(),
        }
    }
}

struct Envelope {
    cmd: Command,
    confirmed: bool,
    source: Source,
    reply: oneshot::Sender<Result<Reply, EngineError>>,
}

enum Msg {
    Exec(Envelope),
    /// A service changed state the snapshot shows (VMs).
    Refresh,
    /// GitHub token discovery finished.
    GithubReady(Result<github::GithubService, String>),
    /// The P2P node started (or could not).
    MeshReady(Result<mesh::MeshService, String>),
    /// The P2P node's peers or addresses changed.
    MeshView(mesh::MeshView),
    /// Input for the mesh scheduler.
    Sched(meshsched::SchedIn),
    Shutdown(oneshot::Sender<()>),
}

/// A cloneable handle the faces use to talk to the engine.
#[derive(Debug, Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Msg>,
    snap: watch::Receiver<Arc<Snapshot>>,
    events: broadcast::Sender<Event>,
    policy: Policy,
    logs: LogBuffer,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Exec(e) => write!(f, "Exec({:?})", e.cmd.kind()),
            Msg::Refresh => write!(f, "Refresh"),
            Msg::GithubReady(r) => write!(f, "GithubReady(ok: {})", r.is_ok()),
            Msg::MeshReady(r) => write!(f, "MeshReady(ok: {})", r.is_ok()),
            Msg::MeshView(v) => write!(f, "MeshView({} peers)", v.peers.len()),
            Msg::Sched(i) => write!(f, "Sched({i:?})"),
            Msg::Shutdown(_) => write!(f, "Shutdown"),
        }
    }
}

impl EngineHandle {
    /// Run one command through the policy gate. `confirmed` is the face's explicit
    /// confirmation (dialog answered, `confirm: true`) for destructive commands.
    pub async fn execute(
        &self,
        cmd: Command,
        confirmed: bool,
        source: Source,
    ) -> Result<Reply, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Exec(Envelope {
                cmd,
                confirmed,
                source,
                reply,
            }))
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snap.borrow().clone()
    }

    /// A receiver that changes on every publish.
    pub fn watch(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snap.clone()
    }

    /// Subscribe to events.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// The policy in force (faces use it to hide refused actions).
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// The log ring.
    pub fn logs(&self) -> &LogBuffer {
        &self.logs
    }

    /// Stop the engine: running tasks are killed (they are re-queued on the next start) and
    /// the loop ends. Returns when it has.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

struct ActiveWorkflow {
    row: WorkflowRow,
    tasks: Vec<String>,
}

/// The engine's state. Built by [`Engine::start`], which runs it on a tokio task.
pub struct Engine {
    opts: EngineOptions,
    store: Store,
    clock: SharedClock,
    policy: Policy,
    queue: TaskQueue,
    parked: HashMap<String, String>,
    tasks: HashMap<String, TaskRow>,
    workflows: HashMap<String, ActiveWorkflow>,
    running: HashMap<String, RunHandle>,
    cancel_requested: std::collections::HashSet<String>,
    recent: VecDeque<QueueRow>,
    hardware: HardwareReport,
    logs: LogBuffer,
    done_tx: mpsc::UnboundedSender<RunDone>,
    snap_tx: watch::Sender<Arc<Snapshot>>,
    events: broadcast::Sender<Event>,
    version: u64,
    dirty: bool,
    started_at: Millis,
    store_error: Option<String>,
    load_avg: Option<f64>,
    compute: Result<compute::ComputeService, String>,
    catalogue: Option<crate::orchestrator::patterns::Catalogue>,
    github: GithubState,
    mesh: MeshState,
    orch: Result<orch::OrchestratorHandle, String>,
    autoscaler: Result<autoscale::AutoscalerHandle, String>,
    self_tx: mpsc::Sender<Msg>,
    vm_rows: usize,
    sched: meshsched::MeshSched,
}

const RECENT: usize = 50;
/// Minimum spacing of snapshot publishes.
const PUBLISH_EVERY: Duration = Duration::from_millis(20);

impl Engine {
    /// Open the store, restore the queue (tasks that were running are re-queued and marked
    /// retried) and start the engine loop. The caller must hold the data dir lock.
    pub fn start(
        opts: EngineOptions,
        clock: SharedClock,
        logs: LogBuffer,
    ) -> Result<(EngineHandle, tokio::task::JoinHandle<()>), EngineError> {
        let mut store = Store::open(&opts.db_path)?;
        if opts.max_store_bytes > 0 {
            store.set_max_bytes(opts.max_store_bytes)?;
        }
        let requeued = store.requeue_interrupted()?;
        let now = clock.now_ms();
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (snap_tx, snap_rx) = watch::channel(Arc::new(Snapshot::default()));
        let (events, _) = broadcast::channel(1024);
        let policy = Policy {
            read_only: opts.read_only,
        };
        let hardware = hardware::detect(&opts.capabilities);
        let (tx, rx) = mpsc::channel(256);
        let compute = compute::start(&opts.compute, &opts.db_path, clock.clone());
        // Compiled on first use: building it costs tens of ms the cold start does not need.
        let catalogue = None;
        match &compute {
            Ok(_) => info!(app = ?opts.compute.fly_app_name, "compute on: Fly Machines VMs"),
            Err(why) => debug!("compute off: {why}"),
        }
        let opts_p2p = opts.p2p.clone();
        let mut engine = Engine {
            queue: TaskQueue::new(opts.boost_factor, opts.boost_interval.as_millis() as Millis),
            opts,
            store,
            clock,
            policy,
            parked: HashMap::new(),
            tasks: HashMap::new(),
            workflows: HashMap::new(),
            running: HashMap::new(),
            cancel_requested: Default::default(),
            recent: VecDeque::new(),
            hardware,
            logs: logs.clone(),
            done_tx,
            snap_tx,
            events: events.clone(),
            version: 0,
            dirty: true,
            started_at: now,
            store_error: None,
            load_avg: hardware::load_avg_1m(),
            compute,
            catalogue,
            github: GithubState::Starting,
            mesh: MeshState::Starting,
            orch: Err("waits for the GitHub layer (a token)".into()),
            autoscaler: Err("waits for the GitHub layer (a token)".into()),
            self_tx: tx.clone(),
            vm_rows: 0,
            sched: meshsched::MeshSched::new(&opts_p2p),
        };
        engine.restore(now)?;
        if requeued > 0 {
            warn!(
                requeued,
                "re-queued tasks that were running when the engine last stopped (marked retried)"
            );
        }
        engine.dispatch();
        engine.publish();
        {
            // Token discovery may run `gh auth token`: off the start path.
            let notify = tx.clone();
            let cfg = engine.opts.github.clone();
            let db = engine.opts.db_path.clone();
            let clock = engine.clock.clone();
            tokio::spawn(async move {
                let r = github::start(&cfg, &db, clock).await;
                let _ = notify.send(Msg::GithubReady(r)).await;
            });
        }
        {
            let notify = tx.clone();
            let cfg = engine.opts.p2p.clone();
            let dir = engine.opts.data_dir.clone();
            let name = engine.opts.node_name.clone();
            let clock = engine.clock.clone();
            tokio::spawn(async move {
                let r = mesh::start(&cfg, &dir, &name, clock).await;
                let _ = notify.send(Msg::MeshReady(r)).await;
            });
        }
        if let Ok(svc) = &engine.compute {
            let notify = tx.clone();
            tokio::spawn(svc.clone().run_scheduler(move || {
                let _ = notify.try_send(Msg::Refresh);
            }));
        }
        let handle = EngineHandle {
            tx,
            snap: snap_rx,
            events,
            policy,
            logs,
        };
        let join = tokio::spawn(engine.run(rx, done_rx));
        Ok((handle, join))
    }

    fn restore(&mut self, now: Millis) -> Result<(), EngineError> {
        let active = self
            .store
            .list_workflows(Some(WorkflowStatus::Queued), None, usize::MAX >> 1)?
            .into_iter()
            .chain(self.store.list_workflows(
                Some(WorkflowStatus::Running),
                None,
                usize::MAX >> 1,
            )?)
            .collect::<Vec<_>>();
        for wf in active {
            let tasks = self.store.tasks_of(&wf.id)?;
            let status = workflow_status(tasks.iter().map(|t| t.state));
            if status.is_terminal() {
                self.store.set_workflow_status(&wf.id, status, now)?;
                continue;
            }
            let ids = tasks.iter().map(|t| t.id.clone()).collect();
            // Mesh tasks wait for the mesh scheduler: it queues the ones this node owns.
            let mesh = self.store.mesh_origin(&wf.id)?.is_some();
            for t in tasks {
                if t.state == TaskState::Queued && !mesh {
                    let _ = self
                        .queue
                        .push(&t.id, t.priority, t.enqueued_at, t.seq, now);
                }
                self.tasks.insert(t.id.clone(), t);
            }
            self.workflows.insert(
                wf.id.clone(),
                ActiveWorkflow {
                    row: wf,
                    tasks: ids,
                },
            );
        }
        for t in self.store.recent_finished_tasks(RECENT)? {
            let name = self
                .store
                .workflow(&t.workflow_id)?
                .map(|w| (w.name, w.tag));
            if let Some((name, tag)) = name {
                self.recent.push_back(row_of(&t, &name, tag, None, None));
            }
        }
        info!(
            queued = self.queue.len(),
            workflows = self.workflows.len(),
            "engine state restored from the store"
        );
        Ok(())
    }

    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Msg>,
        mut done_rx: mpsc::UnboundedReceiver<RunDone>,
    ) {
        let mut boost = tokio::time::interval(self.opts.boost_interval);
        boost.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut sched_tick = tokio::time::interval(Duration::from_millis(100));
        sched_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut housekeeping = tokio::time::interval(Duration::from_secs(5));
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut shutdown_reply = None;
        // Snapshots are published at most every PUBLISH_EVERY; a burst of commands costs one
        // snapshot, not one per command.
        let mut last_publish = tokio::time::Instant::now();
        loop {
            let publish_at = last_publish + PUBLISH_EVERY;
            let dirty = self.dirty;
            tokio::select! {
                _ = tokio::time::sleep_until(publish_at), if dirty => {}
                msg = rx.recv() => match msg {
                    Some(Msg::Exec(env)) => self.handle(env),
                    Some(Msg::Refresh) => self.dirty = true,
                    Some(Msg::MeshReady(r)) => {
                        self.mesh = match r {
                            Ok(svc) => {
                                let (vtx, mut vrx) = mpsc::channel(16);
                                tokio::spawn(svc.clone().watch(vtx));
                                let notify = self.self_tx.clone();
                                tokio::spawn(async move {
                                    while let Some(v) = vrx.recv().await {
                                        if notify.send(Msg::MeshView(v)).await.is_err() {
                                            break;
                                        }
                                    }
                                });
                                self.mesh_sched_start(&svc);
                                MeshState::On(svc, None)
                            }
                            Err(why) => {
                                if self.opts.p2p.enabled {
                                    warn!("P2P node not started: {why}");
                                }
                                self.mesh_fallback_local();
                                MeshState::Off(why)
                            }
                        };
                        self.attach_cache_share();
                        self.dirty = true;
                    }
                    Some(Msg::MeshView(v)) => {
                        if let MeshState::On(_, view) = &mut self.mesh {
                            *view = Some(v);
                        }
                        self.dirty = true;
                    }
                    Some(Msg::GithubReady(r)) => {
                        match &r {
                            Ok(svc) => info!(token = %svc.source, "GitHub layer on"),
                            Err(why) => warn!("{why}"),
                        }
                        if let Ok(svc) = &r {
                            self.start_orchestrator(svc);
                            self.start_autoscaler(svc);
                        }
                        self.github = match r {
                            Ok(svc) => GithubState::On(svc),
                            Err(why) => GithubState::Off(why),
                        };
                        self.attach_cache_share();
                        self.dirty = true;
                    }
                    Some(Msg::Sched(input)) => self.mesh_input(input),
                    Some(Msg::Shutdown(tx)) => { shutdown_reply = Some(tx); break; }
                    None => break,
                },
                Some(done) = done_rx.recv() => self.on_done(done),
                _ = sched_tick.tick(), if self.sched.active() => self.mesh_tick(),
                _ = boost.tick() => {
                    let n = self.queue.boost(self.clock.now_ms());
                    if n > 0 {
                        debug!(boosted = n, "starvation boost applied");
                        self.dirty = true;
                    }
                }
                _ = housekeeping.tick() => {
                    let la = hardware::load_avg_1m();
                    if la != self.load_avg { self.load_avg = la; self.dirty = true; }
                    // Running VMs accrue cost: refresh what the VMs pane shows.
                    if self.vm_rows > 0 { self.dirty = true; }
                    // A store that failed may have recovered (space freed): retry dispatch.
                    if self.store_error.is_some() && self.store.ping().is_ok() {
                        self.dispatch();
                    }
                }
            }
            self.mesh_flush_clock();
            if self.dirty && tokio::time::Instant::now() >= last_publish + PUBLISH_EVERY {
                self.publish();
                last_publish = tokio::time::Instant::now();
            }
        }
        self.stop_all().await;
        if let Some(tx) = shutdown_reply {
            let _ = tx.send(());
        }
    }

    async fn stop_all(&mut self) {
        if let MeshState::On(svc, _) = &self.mesh {
            svc.handle.shutdown().await;
        }
        if self.running.is_empty() {
            return;
        }
        info!(
            running = self.running.len(),
            "engine stopping: killing running tasks; they are re-queued on the next start"
        );
        for (_, h) in self.running.iter_mut() {
            if let Some(pid) = h.pid {
                runner::kill_group(pid, libc::SIGKILL);
            }
        }
        self.running.clear();
    }

    fn handle(&mut self, env: Envelope) {
        let kind = env.cmd.kind();
        let what = self.describe(&env.cmd);
        // A dry run changes nothing: it passes the gate like a read.
        let dry_run = matches!(
            env.cmd,
            Command::TerminateVm { dry_run: true, .. }
                | Command::ApplyFix { dry_run: true, .. }
                | Command::RemoveRunner { dry_run: true, .. }
        );
        let gate = if dry_run {
            Ok(())
        } else {
            self.policy.check(kind, env.confirmed, &what)
        };
        if gate.is_ok() && is_compute(kind) {
            return self.run_compute(env);
        }
        if gate.is_ok() && is_github(kind) {
            return self.run_github(env);
        }
        if gate.is_ok() && kind == CommandKind::ApplyFix {
            return self.run_fix(env);
        }
        if gate.is_ok()
            && let Command::GetTaskOutput { task_id } = &env.cmd
            && let Some((peer, node)) = self.mesh_output_peer(task_id)
        {
            return self.run_remote_output(env, peer, node);
        }
        if gate.is_ok()
            && matches!(
                kind,
                CommandKind::DisconnectPeer | CommandKind::BanPeer | CommandKind::UnbanPeer
            )
        {
            return self.run_peer(env);
        }
        if gate.is_ok() && is_autoscaler(kind) && kind != CommandKind::ListRunners {
            return self.run_autoscaler(env);
        }
        let result = gate
            .map_err(EngineError::from)
            .and_then(|_| self.apply(env.cmd, env.source));
        if let Err(e) = &result {
            match e {
                EngineError::Policy(_) | EngineError::NotFound { .. } | EngineError::Spec(_) => {
                    info!(
                        command = kind.name(),
                        source = env.source.as_str(),
                        "refused: {e}"
                    )
                }
                _ => error!(
                    command = kind.name(),
                    source = env.source.as_str(),
                    "failed: {e}"
                ),
            }
        }
        let _ = env.reply.send(result);
    }

    /// Compute commands wait on the Machines API: run them on their own task and reply from
    /// there; the snapshot refreshes when they finish.
    fn run_compute(&mut self, env: Envelope) {
        let svc = match &self.compute {
            Ok(svc) => svc.clone(),
            Err(why) => {
                let _ = env
                    .reply
                    .send(Err(EngineError::Invalid(format!("compute is off: {why}"))));
                return;
            }
        };
        let now = self.clock.now_ms();
        let notify = self.self_tx.clone();
        let kind = env.cmd.kind();
        tokio::spawn(async move {
            let r = svc.execute(env.cmd, now).await;
            if let Err(e) = &r {
                info!(command = kind.name(), "refused or failed: {e}");
            }
            let _ = env.reply.send(r);
            let _ = notify.send(Msg::Refresh).await;
        });
    }

    /// Once both the mesh (with cache sharing) and the GitHub client are up, share the cache.
    fn attach_cache_share(&self) {
        if let (MeshState::On(m, _), GithubState::On(g)) = (&self.mesh, &self.github)
            && let Some(share) = &m.cache_share
            && !share.is_attached()
        {
            share.attach(g.client());
        }
    }

    fn start_orchestrator(&mut self, gh: &github::GithubService) {
        if !self.opts.orchestrator.enabled {
            self.orch = Err("off (orchestrator.enabled = false)".into());
            return;
        }
        let notify = self.self_tx.clone();
        let opts = orch::OrchestratorOptions {
            cfg: self.opts.orchestrator.clone(),
            db_path: self.opts.db_path.clone(),
            reports_dir: self
                .opts
                .orchestrator
                .reports_dir
                .clone()
                .unwrap_or_else(|| self.opts.data_dir.clone()),
            read_only: self.opts.read_only,
        };
        self.orch = orch::start(gh.client().clone(), opts, self.clock.clone(), move || {
            let _ = notify.try_send(Msg::Refresh);
        });
        match &self.orch {
            Ok(_) => info!("orchestrator watching failed runs"),
            Err(why) => info!("orchestrator idle: {why}"),
        }
    }

    fn autoscale_options(&self) -> autoscale::AutoscaleOptions {
        autoscale::AutoscaleOptions {
            cfg: self.opts.autoscaler.clone(),
            compute: self.opts.compute.clone(),
            db_path: self.opts.db_path.clone(),
            data_dir: self.opts.data_dir.clone(),
        }
    }

    fn start_autoscaler(&mut self, gh: &github::GithubService) {
        if !self.opts.autoscaler.enabled {
            self.autoscaler = Err("off (--disable-autoscaler)".into());
            return;
        }
        if self.opts.read_only {
            self.autoscaler = Err("off in read-only mode".into());
            return;
        }
        let notify = self.self_tx.clone();
        let sink: Arc<dyn crate::autoscaler::controller::P2pSink> = Arc::new(P2pQueue {
            tx: self.self_tx.clone(),
            command: self.opts.autoscaler.p2p_command.clone(),
        });
        self.autoscaler = autoscale::start(
            gh.client().clone(),
            self.autoscale_options(),
            self.clock.clone(),
            Some(sink),
            move || {
                let _ = notify.try_send(Msg::Refresh);
            },
        );
        match &self.autoscaler {
            Ok(_) => info!(
                owner = ?self.opts.autoscaler.owner,
                interval = %crate::config::duration::format(self.opts.autoscaler.interval),
                max_runners = self.opts.autoscaler.max_runners,
                "✓ GitHub Actions autoscaler started"
            ),
            Err(why) => info!("autoscaler off: {why}"),
        }
    }

    /// Autoscaler commands call GitHub and providers: off the actor, on its thread.
    fn run_autoscaler(&mut self, env: Envelope) {
        let handle = match &self.autoscaler {
            Ok(h) => h.clone(),
            Err(why) => {
                let r = if env.cmd.kind() == CommandKind::GetAutoscalerStatus {
                    autoscale::status_from_store(self.store.conn(), &self.autoscale_options())
                        .map(|mut st| {
                            st.reason = Some(why.clone());
                            Reply::Autoscaler(Box::new(st))
                        })
                        .map_err(|e| EngineError::Invalid(e.to_string()))
                } else {
                    Err(EngineError::Invalid(format!(
                        "the autoscaler is off: {why}"
                    )))
                };
                let _ = env.reply.send(r);
                return;
            }
        };
        let notify = self.self_tx.clone();
        tokio::spawn(async move {
            let kind = env.cmd.kind();
            let r = handle.execute(env.cmd).await;
            match &r {
                Ok(_) => info!(command = kind.name(), source = env.source.as_str(), "done"),
                Err(e) => info!(command = kind.name(), "refused or failed: {e}"),
            }
            let _ = env.reply.send(r);
            let _ = notify.send(Msg::Refresh).await;
        });
    }

    /// Fixes call GitHub: run them off the actor.
    fn run_fix(&mut self, env: Envelope) {
        let handle = match &self.orch {
            Ok(h) => h.clone(),
            Err(why) => {
                let _ = env.reply.send(Err(EngineError::Invalid(format!(
                    "the orchestrator is not running: {why}"
                ))));
                return;
            }
        };
        let Command::ApplyFix { issue_id, dry_run } = env.cmd else {
            return;
        };
        let exists = crate::orchestrator::store::IssueStore::new(self.store.conn())
            .get(&issue_id)
            .ok()
            .flatten()
            .is_some();
        if !exists {
            let _ = env.reply.send(Err(EngineError::NotFound {
                what: "issue",
                id: issue_id,
            }));
            return;
        }
        let notify = self.self_tx.clone();
        let allow_push = self.opts.orchestrator.allow_push;
        tokio::spawn(async move {
            let opts = crate::orchestrator::fixes::ExecOptions {
                allow_push,
                dry_run,
            };
            let r = match handle.apply(vec![issue_id.clone()], opts).await {
                Ok(mut out) if !out.is_empty() => {
                    let o = out.remove(0);
                    Ok(Reply::Fix(FixReport {
                        issue_id: o.issue_id,
                        plan: o.plan.summary(),
                        result: o.result.summary(),
                        applied: o.applied,
                        status: o.status.as_str().to_string(),
                        dry_run,
                    }))
                }
                Ok(_) => Err(EngineError::NotFound {
                    what: "issue",
                    id: issue_id,
                }),
                Err(e) => Err(EngineError::Invalid(e)),
            };
            let _ = env.reply.send(r);
            let _ = notify.send(Msg::Refresh).await;
        });
    }

    /// GitHub commands wait on the API (and its rate-limit pacing): off the actor too.
    /// A mesh task's output lives on the peer that ran it: ask it (on its own task).
    fn run_remote_output(
        &mut self,
        env: Envelope,
        peer: libp2p::PeerId,
        node: crate::p2p::NodeHandle,
    ) {
        let Command::GetTaskOutput { task_id } = env.cmd else {
            return;
        };
        let state = self.store.task(&task_id).ok().flatten().map(|t| t.state);
        let now = self.clock.now_ms();
        tokio::spawn(async move {
            use crate::sched::mesh::{KIND_OUTPUT, OutputAnswer, OutputRequest};
            let req = crate::p2p::protocol::Envelope::new(
                KIND_OUTPUT,
                now,
                &OutputRequest {
                    task: task_id.clone(),
                },
            )
            .and_then(|e| e.encode());
            let answer = match req {
                Err(e) => Err(e.to_string()),
                Ok(bytes) => match node.request(peer, bytes).await {
                    Err(e) => Err(e.to_string()),
                    Ok(a) => match crate::p2p::router::read_answer(
                        &a,
                        crate::p2p::protocol::MAX_RESPONSE_BYTES,
                    ) {
                        Ok(env) => env.body_as::<OutputAnswer>().map_err(|e| e.to_string()),
                        Err(e) => Err(e
                            .map(|b| b.message)
                            .unwrap_or_else(|| "malformed answer".into())),
                    },
                },
            };
            let r = match answer {
                Ok(a) if a.task == task_id => Ok(Reply::Output(TaskOutput {
                    task_id,
                    state: state.unwrap_or(TaskState::Queued),
                    output: a.output,
                    truncated: a.truncated,
                })),
                Ok(a) => Err(EngineError::Invalid(format!(
                    "peer {peer} answered for task {} instead of {task_id}",
                    a.task
                ))),
                Err(e) => Err(EngineError::Invalid(format!(
                    "task {task_id} ran on peer {peer}, which keeps its output; it did not answer: {e}"
                ))),
            };
            let _ = env.reply.send(r);
        });
    }

    /// Peer commands wait on the node task: run them on their own task.
    fn run_peer(&mut self, env: Envelope) {
        let node = match &self.mesh {
            MeshState::On(svc, _) => svc.handle.clone(),
            _ => {
                let _ = env.reply.send(Err(EngineError::Invalid(
                    "the mesh is not running (--no-p2p, or the node has not started)".into(),
                )));
                return;
            }
        };
        let notify = self.self_tx.clone();
        tokio::spawn(async move {
            let (peer_id, what) = match &env.cmd {
                Command::DisconnectPeer { peer_id } => (peer_id.clone(), "disconnect"),
                Command::BanPeer { peer_id } => (peer_id.clone(), "ban"),
                Command::UnbanPeer { peer_id } => (peer_id.clone(), "unban"),
                _ => unreachable!("run_peer gets peer commands only"),
            };
            let r = match peer_id.parse::<libp2p::PeerId>() {
                Err(e) => Err(EngineError::Invalid(format!(
                    "{peer_id:?} is not a peer ID ({e}); copy one from get_p2p_network_status"
                ))),
                Ok(p) => {
                    let done = match what {
                        "disconnect" => node.disconnect(p).await.map(|was| {
                            if was {
                                format!("disconnected {p} (it may reconnect)")
                            } else {
                                format!("{p} was not connected")
                            }
                        }),
                        "ban" => node.ban(p).await.map(|_| {
                            format!("banned {p}: disconnected and refused until unbanned")
                        }),
                        _ => node.unban(p).await.map(|_| format!("unbanned {p}")),
                    };
                    done.map(|message| Reply::Done(command::Done { message }))
                        .map_err(|e| EngineError::Invalid(format!("{what} {p}: {e}")))
                }
            };
            if let Ok(Reply::Done(d)) = &r {
                info!("{}", d.message);
            }
            let _ = env.reply.send(r);
            let _ = notify.send(Msg::Refresh).await;
        });
    }

    fn run_github(&mut self, env: Envelope) {
        let svc = match &self.github {
            GithubState::On(svc) => svc.clone(),
            GithubState::Starting => {
                let _ = env.reply.send(Err(EngineError::Invalid(
                    "the GitHub layer is still starting (looking for a token); retry shortly"
                        .into(),
                )));
                return;
            }
            GithubState::Off(why) => {
                let _ = env.reply.send(Err(EngineError::Invalid(format!(
                    "GitHub is off: {}",
                    why.replace('\n', " ")
                ))));
                return;
            }
        };
        let notify = self.self_tx.clone();
        tokio::spawn(async move {
            let r = svc.execute(env.cmd).await;
            let _ = env.reply.send(r);
            let _ = notify.send(Msg::Refresh).await;
        });
    }

    fn describe(&self, cmd: &Command) -> String {
        match cmd {
            Command::CancelWorkflow { workflow_id } => match self.workflows.get(workflow_id) {
                Some(w) => {
                    let running = w
                        .tasks
                        .iter()
                        .filter(|t| self.running.contains_key(*t))
                        .count();
                    format!(
                        "cancel workflow {workflow_id} ({}): {running} running task(s) would be killed",
                        w.row.name
                    )
                }
                None => format!("cancel workflow {workflow_id}"),
            },
            Command::TerminateVm { vm_id, force, .. } => {
                let plan = self
                    .compute
                    .as_ref()
                    .ok()
                    .and_then(|svc| svc.plan(vm_id, *force));
                match plan {
                    Some(p) => format!("terminate VM {vm_id}: would {p}"),
                    None => format!("terminate VM {vm_id}"),
                }
            }
            other => other.kind().name().to_string(),
        }
    }

    fn apply(&mut self, cmd: Command, source: Source) -> Result<Reply, EngineError> {
        let now = self.clock.now_ms();
        match cmd {
            Command::SubmitWorkflow(spec) => {
                let id = format!("wf-{}", ulid::Ulid::new().to_string().to_lowercase());
                // p2p-eligible and p2p-only workflows go to the mesh when it runs; github-api
                // and the rest stay on this node.
                let wire = (matches!(spec.tag, WorkflowTag::P2pEligible | WorkflowTag::P2pOnly)
                    && self.sched.active())
                .then(|| self.mesh_wire(&id, &spec, now));
                let rows = match &wire {
                    Some(w) => self.store.insert_mesh_workflow(w, source.as_str(), now)?,
                    None => self.store.insert_workflow(
                        &id,
                        &spec.name,
                        spec.tag,
                        spec.priority,
                        &spec.tasks,
                        source.as_str(),
                        now,
                    )?,
                };
                let wf = self.store.workflow(&id)?.ok_or(EngineError::NotFound {
                    what: "workflow",
                    id: id.clone(),
                })?;
                let n = rows.len();
                let ids = rows.iter().map(|r| r.id.clone()).collect();
                for r in &rows {
                    if wire.is_none() {
                        let _ = self
                            .queue
                            .push(&r.id, r.priority, r.enqueued_at, r.seq, now);
                    }
                    self.tasks.insert(r.id.clone(), r.clone());
                }
                info!(
                    workflow = %id,
                    name = %spec.name,
                    tag = %spec.tag,
                    priority = spec.priority,
                    tasks = n,
                    source = source.as_str(),
                    "workflow submitted"
                );
                let _ = self.events.send(Event::WorkflowSubmitted {
                    workflow_id: id.clone(),
                    name: spec.name.clone(),
                    source: source.as_str(),
                });
                self.workflows.insert(
                    id.clone(),
                    ActiveWorkflow {
                        row: wf,
                        tasks: ids,
                    },
                );
                if let Some(w) = wire {
                    self.mesh_announce(w, &rows, now);
                }
                self.dirty = true;
                self.dispatch();
                Ok(Reply::Submitted(Submitted {
                    workflow_id: id,
                    tasks: n,
                }))
            }
            Command::CancelWorkflow { workflow_id } => {
                let r = self.cancel(&workflow_id, now)?;
                self.mesh_cancelled(&workflow_id);
                Ok(r)
            }
            Command::RebalanceP2p { strategy } => {
                if !self.sched.active() {
                    return Err(EngineError::Invalid(
                        "the mesh is not running (--no-p2p, or the node has not started)".into(),
                    ));
                }
                let moved = self
                    .mesh_rebalance(strategy)
                    .into_iter()
                    .map(|(task_id, from, to)| command::TaskMove { task_id, from, to })
                    .collect();
                self.dispatch();
                Ok(Reply::Rebalanced(command::Rebalanced { strategy, moved }))
            }
            Command::SetTaskPriority { task_id, priority } => {
                if priority > crate::sched::workflow::MAX_PRIORITY {
                    return Err(EngineError::Invalid(format!(
                        "priority {priority} is out of range 0..=1000"
                    )));
                }
                let state = self.tasks.get(&task_id).map(|t| t.state);
                match state {
                    None => {
                        return Err(match self.store.task(&task_id)? {
                            Some(t) => EngineError::Invalid(format!(
                                "task {task_id} is {}; only queued tasks can be reprioritised",
                                t.state.as_str()
                            )),
                            None => EngineError::NotFound {
                                what: "task",
                                id: task_id,
                            },
                        });
                    }
                    Some(s) if s != TaskState::Queued => {
                        return Err(EngineError::Invalid(format!(
                            "task {task_id} is {}; only queued tasks can be reprioritised",
                            s.as_str()
                        )));
                    }
                    Some(_) => {}
                }
                self.store.set_task_priority(&task_id, priority)?;
                let effective = if self.queue.contains(&task_id) {
                    self.queue
                        .set_priority(&task_id, priority, now)
                        .map_err(|e| EngineError::Invalid(e.to_string()))?
                        .priority()
                } else {
                    priority as f64
                };
                if let Some(t) = self.tasks.get_mut(&task_id) {
                    t.priority = priority;
                }
                info!(task = %task_id, priority, "task priority set");
                self.dirty = true;
                Ok(Reply::Priority(PriorityReport {
                    task_id,
                    priority,
                    effective_priority: effective,
                }))
            }
            Command::ListWorkflows { status, tag, limit } => {
                let limit = limit.clamp(1, 1000);
                let rows = self.store.list_workflows(status, tag, limit)?;
                let mut out = Vec::with_capacity(rows.len());
                for w in rows {
                    let tasks = self.store.tasks_of(&w.id)?;
                    out.push(WorkflowSummary {
                        total: tasks.len(),
                        completed: tasks
                            .iter()
                            .filter(|t| t.state == TaskState::Succeeded)
                            .count(),
                        failed: tasks
                            .iter()
                            .filter(|t| matches!(t.state, TaskState::Failed | TaskState::TimedOut))
                            .count(),
                        workflow_id: w.id,
                        name: w.name,
                        tag: w.tag,
                        priority: w.priority,
                        status: w.status,
                        created_at: rfc3339(w.created_at),
                        source: w.source,
                    });
                }
                Ok(Reply::Workflows(WorkflowList { workflows: out }))
            }
            Command::GetWorkflowStatus { workflow_id } => {
                let w =
                    self.store
                        .workflow(&workflow_id)?
                        .ok_or_else(|| EngineError::NotFound {
                            what: "workflow",
                            id: workflow_id.clone(),
                        })?;
                let tasks = self.store.tasks_of(&workflow_id)?;
                Ok(Reply::WorkflowStatus(Box::new(
                    self.status_report(w, tasks),
                )))
            }
            Command::GetTaskOutput { task_id } => {
                let t = self
                    .store
                    .task(&task_id)?
                    .ok_or_else(|| EngineError::NotFound {
                        what: "task",
                        id: task_id.clone(),
                    })?;
                let (output, truncated) = self.store.task_output(&task_id)?.unwrap_or_default();
                Ok(Reply::Output(TaskOutput {
                    task_id,
                    state: t.state,
                    output,
                    truncated,
                }))
            }
            Command::GetSystemStatus => Ok(Reply::System(Box::new(self.system_status(now)?))),
            Command::GetServiceHealth { services } => {
                let all = self.health();
                let known: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
                for s in &services {
                    if !known.contains(&s.as_str()) {
                        return Err(EngineError::Invalid(format!(
                            "unknown service {s:?}; known: {}",
                            known.join(", ")
                        )));
                    }
                }
                let chosen: Vec<ServiceHealth> = all
                    .into_iter()
                    .filter(|s| services.is_empty() || services.contains(&s.name))
                    .collect();
                let overall = if chosen
                    .iter()
                    .all(|s| s.status == "ok" || s.status == "disabled")
                {
                    "ok"
                } else {
                    "degraded"
                };
                Ok(Reply::Health(ServiceHealthReport {
                    overall: overall.into(),
                    services: chosen,
                }))
            }
            Command::GetRecentLogs {
                level,
                lines,
                service,
            } => {
                let min = match level.as_deref() {
                    None => tracing::Level::TRACE,
                    Some(l) => parse_level(l).ok_or_else(|| {
                        EngineError::Invalid(format!(
                            "unknown level {l:?}; expected debug, info, warning or error"
                        ))
                    })?,
                };
                let lines = lines.clamp(1, 10_000);
                let (recs, matched) = self.logs.select(lines, |r| {
                    r.level <= min && service.as_deref().is_none_or(|s| r.service == s)
                });
                Ok(Reply::Logs(log_report(recs, matched)))
            }
            Command::SearchLogs { query, time_range } => {
                if query.is_empty() {
                    return Err(EngineError::Invalid("query must not be empty".into()));
                }
                let since = match time_range.as_deref() {
                    None | Some("") | Some("all") => i64::MIN,
                    Some(r) => {
                        now - crate::config::duration::parse(r)
                            .map_err(|e| EngineError::Invalid(format!("time_range {r:?}: {e}")))?
                            .as_millis() as i64
                    }
                };
                let re = RegexBuilder::new(&query)
                    .case_insensitive(true)
                    .size_limit(1 << 20)
                    .build()
                    .or_else(|_| {
                        RegexBuilder::new(&regex::escape(&query))
                            .case_insensitive(true)
                            .build()
                    })
                    .map_err(|e| EngineError::Invalid(e.to_string()))?;
                let (recs, matched) = self.logs.select(1000, |r| {
                    r.at >= since && (re.is_match(&r.message) || re.is_match(&r.service))
                });
                Ok(Reply::Logs(log_report(recs, matched)))
            }
            Command::DetectHardware => {
                self.hardware = hardware::detect(&self.opts.capabilities);
                Ok(Reply::Hardware(self.hardware.clone()))
            }
            Command::GetP2pNetworkStatus => Ok(Reply::P2p(Box::new(self.p2p_status()))),
            Command::ListOrchestratorIssues { status, repo } => {
                use crate::orchestrator::store::{IssueFilter, IssueStatus, IssueStore};
                let status = match status.as_deref() {
                    None | Some("") | Some("all") => None,
                    Some(s) => Some(s.parse::<IssueStatus>().map_err(|_| {
                        EngineError::Invalid(format!(
                            "status {s:?}: expected open, fixing, fixed, ignored or all"
                        ))
                    })?),
                };
                let list = IssueStore::new(self.store.conn())
                    .list(IssueFilter {
                        status,
                        repo: repo.as_deref(),
                    })
                    .map_err(|e| EngineError::Invalid(e.to_string()))?;
                Ok(Reply::Issues(IssueList {
                    issues: list.iter().map(issue_view).collect(),
                }))
            }
            Command::GetIssueEvidence { issue_id } => {
                let i = crate::orchestrator::store::IssueStore::new(self.store.conn())
                    .get(&issue_id)
                    .map_err(|e| EngineError::Invalid(e.to_string()))?
                    .ok_or_else(|| EngineError::NotFound {
                        what: "issue",
                        id: issue_id.clone(),
                    })?;
                Ok(Reply::Evidence(Box::new(IssueEvidence {
                    issue: issue_view(&i),
                    evidence: i.record.evidence.clone(),
                    lines: i.record.evidence_lines.clone(),
                    context: i.record.context.clone(),
                })))
            }
            Command::IgnoreIssue { issue_id } => {
                use crate::orchestrator::store::{IssueStatus, IssueStore};
                let st = IssueStore::new(self.store.conn());
                let changed = st
                    .set_status(
                        &issue_id,
                        IssueStatus::Ignored,
                        "ignored by an operator",
                        now,
                    )
                    .map_err(|e| EngineError::Invalid(e.to_string()))?;
                if !changed {
                    return Err(EngineError::NotFound {
                        what: "issue",
                        id: issue_id,
                    });
                }
                let i = st
                    .get(&issue_id)
                    .map_err(|e| EngineError::Invalid(e.to_string()))?
                    .ok_or(EngineError::NotFound {
                        what: "issue",
                        id: issue_id,
                    })?;
                self.dirty = true;
                Ok(Reply::Issue(Box::new(issue_view(&i))))
            }
            Command::ClassifyLog { text } => {
                let patterns = &self.opts.orchestrator.patterns;
                let cat = self.catalogue.get_or_insert_with(|| {
                    // Config validation checked the files; one changed since is a warning.
                    crate::orchestrator::cmd::catalogue(patterns).unwrap_or_else(|e| {
                        warn!("orchestrator patterns: {e}; using the built-in catalogue");
                        crate::orchestrator::patterns::Catalogue::builtin()
                    })
                });
                let c = crate::orchestrator::classify::classify(cat, &text, None);
                Ok(Reply::Classified(Classified {
                    issues: c
                        .issues
                        .iter()
                        .map(|f| LogFinding {
                            issue_type: f.issue_type.to_string(),
                            severity: f.severity.to_string(),
                            auto_fixable: f.auto_fixable,
                            line: f.line,
                            evidence: f.evidence.clone(),
                            fix_description: f.fix_description.clone(),
                        })
                        .collect(),
                }))
            }
            Command::ListRunners { include_gone } => {
                let rows = crate::autoscaler::store::AutoscalerStore::new(self.store.conn())
                    .runners(!include_gone)?;
                Ok(Reply::Runners(RunnerList {
                    runners: rows.iter().map(autoscale::runner_view).collect(),
                }))
            }
            Command::ProvisionRunner { .. }
            | Command::RemoveRunner { .. }
            | Command::DrainRunner { .. }
            | Command::PauseAutoscaler { .. }
            | Command::CheckAutoscaler
            | Command::GetAutoscalerStatus => Err(EngineError::Invalid(
                "autoscaler commands run on the autoscaler's thread".into(),
            )),
            other => Err(EngineError::Invalid(format!(
                "{} is handled by its service",
                other.kind().name()
            ))),
        }
    }

    fn cancel(&mut self, workflow_id: &str, now: Millis) -> Result<Reply, EngineError> {
        let Some(wf) = self.workflows.get(workflow_id) else {
            let w = self
                .store
                .workflow(workflow_id)?
                .ok_or_else(|| EngineError::NotFound {
                    what: "workflow",
                    id: workflow_id.into(),
                })?;
            return Ok(Reply::Cancelled(CancelReport {
                workflow_id: workflow_id.into(),
                cancelled_queued: 0,
                killed_running: 0,
                status: w.status,
            }));
        };
        let task_ids = wf.tasks.clone();
        let cancelled = self.store.cancel_queued(workflow_id, now)?;
        for id in &cancelled {
            let _ = self.queue.remove(id);
            self.parked.remove(id);
            if let Some(t) = self.tasks.get_mut(id) {
                t.state = TaskState::Cancelled;
                t.finished_at = Some(now);
                t.error = Some("cancelled while queued".into());
            }
        }
        let mut killed = 0;
        for id in &task_ids {
            if let Some(h) = self.running.get_mut(id) {
                h.cancel();
                self.cancel_requested.insert(id.clone());
                killed += 1;
            }
        }
        info!(
            workflow = %workflow_id,
            cancelled_queued = cancelled.len(),
            killed_running = killed,
            "workflow cancelled"
        );
        self.dirty = true;
        let status = self.refresh_workflow(workflow_id, now)?;
        Ok(Reply::Cancelled(CancelReport {
            workflow_id: workflow_id.into(),
            cancelled_queued: cancelled.len(),
            killed_running: killed,
            status,
        }))
    }

    fn refresh_workflow(
        &mut self,
        workflow_id: &str,
        now: Millis,
    ) -> Result<WorkflowStatus, EngineError> {
        let Some(wf) = self.workflows.get(workflow_id) else {
            return Ok(WorkflowStatus::Completed);
        };
        let status = workflow_status(
            wf.tasks
                .iter()
                .filter_map(|t| self.tasks.get(t).map(|t| t.state)),
        );
        if status != wf.row.status {
            self.store.set_workflow_status(workflow_id, status, now)?;
        }
        if status.is_terminal() {
            if let Some(wf) = self.workflows.remove(workflow_id) {
                for t in &wf.tasks {
                    if let Some(row) = self.tasks.remove(t) {
                        self.recent
                            .push_front(row_of(&row, &wf.row.name, wf.row.tag, None, None));
                    }
                }
                self.recent.truncate(RECENT);
                info!(workflow = %workflow_id, status = status.as_str(), "workflow finished");
                let _ = self.events.send(Event::WorkflowFinished {
                    workflow_id: workflow_id.into(),
                    status,
                });
            }
        } else if let Some(wf) = self.workflows.get_mut(workflow_id) {
            wf.row.status = status;
        }
        Ok(status)
    }

    fn dispatch(&mut self) {
        let mut later = vec![];
        while self.running.len() < self.opts.max_concurrent_tasks {
            let Some((entry, key)) = self.queue.pop() else {
                break;
            };
            let Some(task) = self.tasks.get(&entry.task_id).cloned() else {
                continue;
            };
            let mesh = self.sched.is_mesh(&task.workflow_id);
            if mesh && !self.mesh_may_start(&task) {
                if self.sched.owns(&task.id) {
                    // Catching up after a restart: keep it.
                    later.push((entry, key));
                }
                continue;
            }
            if let Some(missing) = task
                .spec
                .requires
                .iter()
                .find(|r| !self.hardware.capabilities.contains(r))
            {
                let why = format!("a node with {missing:?}");
                warn!(task = %task.id, "task parked: this node lacks capability {missing:?}");
                self.parked.insert(task.id.clone(), why);
                self.dirty = true;
                continue;
            }
            let now = self.clock.now_ms();
            let owner = match (&self.sched.me, mesh) {
                (Some(me), true) => me.clone(),
                _ => self.opts.node_name.clone(),
            };
            if let Err(e) = self.store.mark_started(&task.id, &owner, now) {
                error!(task = %task.id, "cannot record task start, not starting it: {e}");
                self.store_error = Some(e.to_string());
                let _ = self.queue.push(
                    &task.id,
                    entry.base_priority,
                    entry.enqueued_at,
                    key.seq,
                    now,
                );
                break;
            }
            self.store_error = None;
            let timeout = task
                .spec
                .timeout_s
                .map(Duration::from_secs)
                .unwrap_or(self.opts.default_timeout);
            let handle = spawn_task(
                RunRequest {
                    task_id: task.id.clone(),
                    spec: task.spec.clone(),
                    timeout,
                    output_limit: self.opts.output_limit,
                    kill_grace: self.opts.kill_grace,
                },
                self.done_tx.clone(),
            );
            info!(task = %task.id, pid = ?handle.pid, "task started");
            if let Some(t) = self.tasks.get_mut(&task.id) {
                t.state = TaskState::Running;
                t.started_at = Some(now);
                t.attempts += 1;
                t.owner = Some(owner);
            }
            self.running.insert(task.id.clone(), handle);
            if mesh {
                self.mesh_started(&task.id);
            }
            let _ = self.events.send(Event::TaskStarted {
                task_id: task.id.clone(),
            });
            let wf = task.workflow_id.clone();
            if let Err(e) = self.refresh_workflow(&wf, now) {
                error!(workflow = %wf, "cannot update workflow status: {e}");
            }
            self.dirty = true;
        }
        let now = self.clock.now_ms();
        for (e, k) in later {
            let _ = self
                .queue
                .push(&e.task_id, e.base_priority, e.enqueued_at, k.seq, now);
        }
    }

    fn on_done(&mut self, done: RunDone) {
        let now = self.clock.now_ms();
        self.running.remove(&done.task_id);
        let mut outcome = done.outcome;
        if self.cancel_requested.remove(&done.task_id) && outcome.state != TaskState::Succeeded {
            outcome.state = TaskState::Cancelled;
        }
        let mesh_wf = self
            .tasks
            .get(&done.task_id)
            .map(|t| t.workflow_id.clone())
            .filter(|w| self.sched.is_mesh(w));
        if mesh_wf.is_some() && !self.mesh_finished(&done.task_id, &outcome) {
            // Another peer owns it now, or completed it first: this run's result is dropped.
            if let Some(t) = self.tasks.get_mut(&done.task_id)
                && t.state == TaskState::Running
            {
                t.state = TaskState::Queued;
                t.started_at = None;
                let _ = self.store.mark_requeued(&done.task_id);
            }
            self.dirty = true;
            self.dispatch();
            return;
        }
        if let Err(e) = self.store.mark_finished(&done.task_id, &outcome, now) {
            // The row stays `running`; the next start re-queues it (at-least-once).
            error!(task = %done.task_id, "cannot record task result: {e}");
            self.store_error = Some(e.to_string());
        }
        let level_warn = !matches!(outcome.state, TaskState::Succeeded | TaskState::Cancelled);
        if level_warn {
            warn!(
                task = %done.task_id,
                state = outcome.state.as_str(),
                exit_code = ?outcome.exit_code,
                duration_ms = outcome.duration_ms,
                "task finished: {}",
                outcome.error.as_deref().unwrap_or("")
            );
        } else {
            info!(
                task = %done.task_id,
                state = outcome.state.as_str(),
                duration_ms = outcome.duration_ms,
                "task finished"
            );
        }
        let _ = self.events.send(Event::TaskFinished {
            task_id: done.task_id.clone(),
            state: outcome.state,
        });
        let wf = if let Some(t) = self.tasks.get_mut(&done.task_id) {
            t.state = outcome.state;
            t.exit_code = outcome.exit_code;
            t.signal = outcome.signal;
            t.duration_ms = Some(outcome.duration_ms);
            t.finished_at = Some(now);
            t.error = outcome.error;
            Some(t.workflow_id.clone())
        } else {
            None
        };
        if let Some(wf) = wf
            && let Err(e) = self.refresh_workflow(&wf, now)
        {
            error!(workflow = %wf, "cannot update workflow status: {e}");
        }
        self.dirty = true;
        self.dispatch();
    }

    fn status_report(&self, w: WorkflowRow, tasks: Vec<TaskRow>) -> WorkflowStatusReport {
        let count = |f: &dyn Fn(TaskState) -> bool| tasks.iter().filter(|t| f(t.state)).count();
        let status = workflow_status(tasks.iter().map(|t| t.state));
        WorkflowStatusReport {
            total: tasks.len(),
            completed: count(&|s| s == TaskState::Succeeded),
            failed: count(&|s| matches!(s, TaskState::Failed | TaskState::TimedOut)),
            cancelled: count(&|s| s == TaskState::Cancelled),
            running: count(&|s| s == TaskState::Running),
            queued: count(&|s| s == TaskState::Queued),
            workflow_id: w.id,
            name: w.name,
            tag: w.tag,
            priority: w.priority,
            status,
            created_at: rfc3339(w.created_at),
            finished_at: w.finished_at.map(rfc3339),
            tasks: tasks
                .into_iter()
                .map(|t| TaskReport {
                    waiting_for: self.parked.get(&t.id).cloned(),
                    task_id: t.id,
                    index: t.idx,
                    state: t.state,
                    command: t.spec.command,
                    requires: t.spec.requires,
                    priority: t.priority,
                    exit_code: t.exit_code,
                    signal: t.signal,
                    duration_ms: t.duration_ms,
                    attempts: t.attempts,
                    retried: t.retried,
                    owner: t.owner,
                    error: t.error,
                })
                .collect(),
        }
    }

    fn p2p_status(&self) -> P2pStatus {
        let active_tasks = self.running.len();
        match &self.mesh {
            MeshState::Starting => P2pStatus {
                peer_id: None,
                listen_addrs: vec![],
                peer_count: 0,
                peers: vec![],
                active_tasks,
                health: "starting".into(),
                detail: None,
                private: false,
                clock: None,
                duplicates_dropped: 0,
                owned_tasks: 0,
            },
            MeshState::Off(why) => P2pStatus {
                peer_id: None,
                listen_addrs: vec![],
                peer_count: 0,
                peers: vec![],
                active_tasks,
                health: "off".into(),
                detail: Some(why.clone()),
                private: false,
                clock: None,
                duplicates_dropped: 0,
                owned_tasks: 0,
            },
            MeshState::On(svc, view) => {
                let v = view.clone().unwrap_or_else(|| mesh::MeshView {
                    peer_id: svc.handle.peer_id().to_string(),
                    listen_addrs: vec![],
                    peers: vec![],
                    private: svc.private,
                });
                let peer_count = v.peers.iter().filter(|p| p.connected).count();
                P2pStatus {
                    peer_id: Some(v.peer_id),
                    listen_addrs: v.listen_addrs,
                    peer_count,
                    peers: v
                        .peers
                        .into_iter()
                        .map(|p| {
                            let hb = self.sched.peers.get(&p.peer_id);
                            P2pPeer {
                                capabilities: hb
                                    .map(|h| h.capabilities.clone())
                                    .unwrap_or_default(),
                                load: hb.map(|h| format!("{}/{}", h.running, h.max)),
                                queued: hb.map(|h| h.queued),
                                name: hb.map(|h| h.name.clone()),
                                last_heartbeat: hb.map(|h| rfc3339(h.last_heard)),
                                peer_id: p.peer_id,
                                addrs: p.addrs,
                                rtt_ms: p.rtt_ms,
                                last_seen: rfc3339(p.last_seen_ms),
                                connected: p.connected,
                                agent: p.agent,
                            }
                        })
                        .collect(),
                    active_tasks,
                    health: if peer_count > 0 { "ok" } else { "no peers" }.into(),
                    detail: None,
                    private: v.private,
                    clock: self.sched.active().then(|| command::ClockView {
                        hash: self.sched.clock.get_hash(),
                        entries: self.sched.clock.entries().clone(),
                    }),
                    duplicates_dropped: self.sched.duplicates,
                    owned_tasks: self
                        .sched
                        .me
                        .as_deref()
                        .map(|me| self.sched.book.owned_by(me).count())
                        .unwrap_or(0),
                }
            }
        }
    }

    fn health(&self) -> Vec<ServiceHealth> {
        let h = |name: &str, status: &str, detail: String| ServiceHealth {
            name: name.into(),
            status: status.into(),
            detail,
        };
        let store = match (&self.store_error, self.store.ping()) {
            (_, Err(e)) => h("store", "error", e.to_string()),
            (Some(e), Ok(())) => h("store", "degraded", format!("last write failed: {e}")),
            (None, Ok(())) => h(
                "store",
                "ok",
                format!("SQLite WAL at {}", self.opts.db_path.display()),
            ),
        };
        vec![
            h(
                "engine",
                "ok",
                format!(
                    "pid {}, {} workflow(s) active",
                    std::process::id(),
                    self.workflows.len()
                ),
            ),
            store,
            h(
                "scheduler",
                "ok",
                format!(
                    "{} queued, {} running of {} slots, {} parked",
                    self.queue.len(),
                    self.running.len(),
                    self.opts.max_concurrent_tasks,
                    self.parked.len()
                ),
            ),
            h("mcp", "ok", "stdio and Unix socket faces".into()),
            match &self.mesh {
                MeshState::Starting => h("p2p", "ok", "starting".into()),
                MeshState::Off(why) => h("p2p", "disabled", why.clone()),
                MeshState::On(svc, view) => h(
                    "p2p",
                    "ok",
                    format!(
                        "peer {} ({}), {} peer(s) connected",
                        svc.handle.peer_id(),
                        if svc.private {
                            "private mesh"
                        } else {
                            "OPEN mesh"
                        },
                        view.as_ref()
                            .map(|v| v.peers.iter().filter(|p| p.connected).count())
                            .unwrap_or(0)
                    ),
                ),
            },
            match &self.github {
                GithubState::Starting => h("github", "ok", "starting: looking for a token".into()),
                GithubState::On(svc) => h(
                    "github",
                    "ok",
                    match svc.rate() {
                        Some(r) => format!(
                            "token from {}; rate limit {}/{} until {}",
                            svc.source, r.remaining, r.limit, r.reset_at
                        ),
                        None => format!("token from {}", svc.source),
                    },
                ),
                GithubState::Off(why) => h("github", "disabled", why.replace('\n', " ")),
            },
            match &self.autoscaler {
                Ok(_) => h(
                    "autoscaler",
                    "ok",
                    format!(
                        "watching {} every {}, max {} runner(s), {} provider(s)",
                        if self.opts.autoscaler.repos.is_empty() {
                            format!(
                                "repos of {}",
                                self.opts.autoscaler.owner.as_deref().unwrap_or("?")
                            )
                        } else {
                            self.opts.autoscaler.repos.join(", ")
                        },
                        crate::config::duration::format(self.opts.autoscaler.interval),
                        self.opts.autoscaler.max_runners,
                        self.opts.autoscaler.providers.len()
                    ),
                ),
                Err(why) => h("autoscaler", "disabled", why.clone()),
            },
            match &self.compute {
                Ok(_) => h(
                    "compute",
                    "ok",
                    format!(
                        "Fly app {}, {} live VM(s)",
                        self.opts.compute.fly_app_name.as_deref().unwrap_or("?"),
                        self.vm_rows
                    ),
                ),
                Err(why) => h("compute", "disabled", why.clone()),
            },
            match &self.orch {
                Ok(_) => h(
                    "orchestrator",
                    "ok",
                    format!(
                        "watching {} every {}",
                        if self.opts.orchestrator.repos.is_empty() {
                            format!(
                                "repos of {}",
                                self.opts.orchestrator.owner.as_deref().unwrap_or("?")
                            )
                        } else {
                            self.opts.orchestrator.repos.join(", ")
                        },
                        crate::config::duration::format(self.opts.orchestrator.interval)
                    ),
                ),
                Err(why) => h("orchestrator", "disabled", why.clone()),
            },
        ]
    }

    fn system_status(&self, now: Millis) -> Result<SystemStatus, EngineError> {
        let counts = self.store.counts()?;
        let health = self.health();
        let degraded = health
            .iter()
            .any(|s| s.status == "error" || s.status == "degraded");
        Ok(SystemStatus {
            version: env!("CARGO_PKG_VERSION").into(),
            node: self.opts.node_name.clone(),
            pid: std::process::id(),
            uptime_s: ((now - self.started_at).max(0) / 1000) as u64,
            read_only: self.opts.read_only,
            data_dir: self.opts.data_dir.display().to_string(),
            health: if degraded { "degraded" } else { "ok" }.into(),
            queue: QueueStatus {
                queued: self.queue.len() + self.parked.len(),
                running: self.running.len(),
                max_concurrent_tasks: self.opts.max_concurrent_tasks,
                tasks_by_state: counts.tasks,
                workflows_by_status: counts.workflows,
            },
            load_avg_1m: self.load_avg,
            capabilities: self.hardware.capabilities.clone(),
            services: health,
            github_rate_limit: match &self.github {
                GithubState::On(svc) => svc.rate().and_then(|r| serde_json::to_value(r).ok()),
                _ => None,
            },
        })
    }

    fn publish(&mut self) {
        let now = self.clock.now_ms();
        let mut queue = Vec::with_capacity(self.tasks.len() + self.recent.len());
        let wf_of = |t: &TaskRow| {
            self.workflows
                .get(&t.workflow_id)
                .map(|w| (w.row.name.clone(), w.row.tag))
        };
        let mut running: Vec<&TaskRow> = self
            .tasks
            .values()
            .filter(|t| t.state == TaskState::Running)
            .collect();
        running.sort_by_key(|t| (t.started_at, t.seq));
        for t in running {
            if let Some((n, tag)) = wf_of(t) {
                queue.push(row_of(t, &n, tag, None, None));
            }
        }
        for (e, k) in self.queue.ordered() {
            if let Some(t) = self.tasks.get(&e.task_id)
                && let Some((n, tag)) = wf_of(t)
            {
                queue.push(row_of(t, &n, tag, Some(k.priority()), None));
            }
        }
        let mut parked: Vec<_> = self.parked.iter().collect();
        parked.sort();
        for (id, why) in parked {
            if let Some(t) = self.tasks.get(id)
                && let Some((n, tag)) = wf_of(t)
            {
                queue.push(row_of(t, &n, tag, None, Some(why.clone())));
            }
        }
        // Mesh tasks queued on other peers (or settling after a claim).
        let mut elsewhere: Vec<&TaskRow> = self
            .tasks
            .values()
            .filter(|t| {
                t.state == TaskState::Queued
                    && !self.queue.contains(&t.id)
                    && !self.parked.contains_key(&t.id)
            })
            .collect();
        elsewhere.sort_by_key(|t| (t.priority, t.seq));
        for t in elsewhere {
            if let Some((n, tag)) = wf_of(t) {
                let why = match &t.owner {
                    Some(o) if Some(o) != self.sched.me.as_ref() => {
                        format!("a slot on peer {}", crate::p2p::short_peer(o))
                    }
                    Some(_) => "its claim to settle".to_string(),
                    None => "placement".to_string(),
                };
                queue.push(row_of(t, &n, tag, None, Some(why)));
            }
        }
        queue.extend(self.recent.iter().cloned());
        let counts = self.store.counts().unwrap_or_default();
        let vms = match &self.compute {
            Ok(svc) => svc.feed(now),
            Err(_) => snapshot::VmFeed::Off(snapshot::off_vms()),
        };
        self.vm_rows = match &vms {
            snapshot::VmFeed::On { rows, .. } => rows.len(),
            snapshot::VmFeed::Off(_) => 0,
        };
        self.version += 1;
        let snap = Snapshot {
            version: self.version,
            taken_at: now,
            node: NodeView {
                name: self.opts.node_name.clone(),
                peer_id: match &self.mesh {
                    MeshState::On(svc, _) => Some(svc.handle.peer_id().to_string()),
                    _ => None,
                },
                addresses: match &self.mesh {
                    MeshState::On(_, Some(v)) => v.listen_addrs.clone(),
                    _ => Vec::new(),
                },
                capabilities: self.hardware.capabilities.clone(),
                running: self.running.len(),
                max_tasks: self.opts.max_concurrent_tasks,
                load_avg: self.load_avg,
                read_only: self.opts.read_only,
                started_at: self.started_at,
                pid: std::process::id(),
                data_dir: self.opts.data_dir.display().to_string(),
            },
            queue,
            counts,
            health: self.health(),
            peers: match &self.mesh {
                MeshState::On(_, Some(v)) => v
                    .peers
                    .iter()
                    .map(|p| {
                        let mut p = p.clone();
                        p.sched = self.sched.peers.get(&p.peer_id).map(|h| mesh::PeerSched {
                            name: h.name.clone(),
                            capabilities: h.capabilities.clone(),
                            running: h.running,
                            max: h.max,
                            queued: h.queued,
                            last_heartbeat_ms: h.last_heard,
                            owned: self.sched.book.owned_by(&p.peer_id).count(),
                        });
                        p
                    })
                    .collect(),
                _ => Vec::new(),
            },
            mesh: match &self.mesh {
                MeshState::Starting => "starting".into(),
                MeshState::On(svc, _) if svc.private => "private".into(),
                MeshState::On(..) => "open".into(),
                MeshState::Off(why) => format!("off: {why}"),
            },
            vms,
            issues: match &self.orch {
                Ok(_) => snapshot::IssueFeed::On(
                    crate::orchestrator::store::IssueStore::new(self.store.conn())
                        .list(crate::orchestrator::store::IssueFilter {
                            status: None,
                            repo: None,
                        })
                        .map(|l| l.iter().take(500).map(issue_view).collect())
                        .unwrap_or_default(),
                ),
                Err(why) => {
                    let mut off = snapshot::off_issues();
                    off.enable = format!("{why}; `flotilla classify FILE` works offline");
                    snapshot::IssueFeed::Off(off)
                }
            },
            github: match &self.github {
                GithubState::On(svc) => Some(svc.view()),
                _ => None,
            },
            runners: self.runner_feed(),
        };
        self.snap_tx.send_replace(Arc::new(snap));
        self.dirty = false;
    }
}

impl Engine {
    fn runner_feed(&self) -> snapshot::RunnerFeed {
        use crate::autoscaler::store::AutoscalerStore;
        match &self.autoscaler {
            Err(why) => {
                let mut off = snapshot::off_runners();
                off.enable = format!("{why}; {}", off.enable);
                snapshot::RunnerFeed::Off(off)
            }
            Ok(_) => {
                let s = AutoscalerStore::new(self.store.conn());
                let all = s.runners(false).unwrap_or_default();
                let (live, gone): (Vec<_>, Vec<_>) = all
                    .iter()
                    .partition(|r| r.state != crate::autoscaler::policy::RunnerState::Gone);
                let rows = live
                    .into_iter()
                    .chain(gone.into_iter().take(20))
                    .map(autoscale::runner_view)
                    .collect();
                snapshot::RunnerFeed::On {
                    rows,
                    paused: s.meta("paused").ok().flatten().as_deref() == Some("true"),
                    pending_jobs: s
                        .pending_jobs()
                        .map(|v| v.iter().filter(|j| !j.p2p).count() as u64)
                        .unwrap_or(0),
                    checks: s.counter("checks").unwrap_or(0),
                    max_runners: self.opts.autoscaler.max_runners,
                    queue_wait_p50_ms: s.wait_figures(100).ok().and_then(|(w, _)| w),
                    orphans_removed: s.counter("orphans_removed").unwrap_or(0),
                }
            }
        }
    }
}

/// The autoscaler's door into the queue: P2P-tagged GitHub runs become workflows here.
struct P2pQueue {
    tx: mpsc::Sender<Msg>,
    command: Vec<String>,
}

impl crate::autoscaler::controller::P2pSink for P2pQueue {
    fn submit<'a>(
        &'a self,
        h: &'a crate::autoscaler::controller::P2pHandoff,
    ) -> crate::autoscaler::provider::BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            if self.command.is_empty() {
                return Err("no autoscaler.p2p_command configured to run it".into());
            }
            let mut env = std::collections::BTreeMap::new();
            env.insert("FLOTILLA_GH_REPO".to_string(), h.repo.clone());
            env.insert("FLOTILLA_GH_RUN_ID".to_string(), h.run_id.to_string());
            env.insert("FLOTILLA_GH_WORKFLOW".to_string(), h.workflow_path.clone());
            if let Some(sha) = &h.head_sha {
                env.insert("FLOTILLA_GH_SHA".to_string(), sha.clone());
            }
            let spec = crate::sched::workflow::WorkflowSpec {
                name: format!("{} {} #{}", h.repo, h.workflow, h.run_id),
                tag: h.tag,
                priority: 100,
                tasks: vec![crate::sched::workflow::TaskSpec {
                    command: self.command.clone(),
                    env,
                    timeout_s: None,
                    requires: Vec::new(),
                }],
            };
            let (reply, rx) = oneshot::channel();
            self.tx
                .send(Msg::Exec(Envelope {
                    cmd: Command::SubmitWorkflow(spec),
                    confirmed: false,
                    source: Source::Autoscaler,
                    reply,
                }))
                .await
                .map_err(|_| "the engine has stopped".to_string())?;
            match rx.await.map_err(|_| "the engine has stopped".to_string())? {
                Ok(Reply::Submitted(s)) => Ok(s.workflow_id),
                Ok(_) => Err("unexpected reply".into()),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}

/// Where the P2P node stands.
enum MeshState {
    /// Starting (identity, listeners).
    Starting,
    /// Running, with its latest view.
    On(mesh::MeshService, Option<mesh::MeshView>),
    /// Off, with the reason.
    Off(String),
}

/// Where the GitHub layer stands.
enum GithubState {
    /// Token discovery is running.
    Starting,
    /// Usable.
    On(github::GithubService),
    /// Off, with the reason (the seed's warning when there is no token).
    Off(String),
}

fn issue_view(i: &crate::orchestrator::store::StoredIssue) -> IssueView {
    IssueView {
        issue_id: i.id.clone(),
        severity: i.record.severity.to_string(),
        issue_type: i.record.issue_type.to_string(),
        repo: i.record.repo.clone(),
        workflow: i.record.workflow.clone(),
        run_id: i.record.run_id,
        run_url: i.record.run_url.clone(),
        job: i.record.job_name.clone(),
        status: i.status.as_str().to_string(),
        status_reason: i.status_reason.clone(),
        primary: i.record.primary,
        fix_description: i.record.fix_description.clone(),
        created_at: rfc3339(i.created_at),
        github_issue: i.github_issue_number,
        reruns: i.reruns,
    }
}

fn is_autoscaler(kind: CommandKind) -> bool {
    matches!(
        kind,
        CommandKind::ListRunners
            | CommandKind::ProvisionRunner
            | CommandKind::RemoveRunner
            | CommandKind::DrainRunner
            | CommandKind::PauseAutoscaler
            | CommandKind::CheckAutoscaler
            | CommandKind::GetAutoscalerStatus
    )
}

fn is_github(kind: CommandKind) -> bool {
    matches!(
        kind,
        CommandKind::GhListRepos | CommandKind::GhWorkflowRuns | CommandKind::GhCacheStats
    )
}

fn is_compute(kind: CommandKind) -> bool {
    matches!(
        kind,
        CommandKind::ListVms
            | CommandKind::ProvisionVm
            | CommandKind::TerminateVm
            | CommandKind::GetVmSsh
            | CommandKind::ExtendVmActivity
            | CommandKind::GetComputeCosts
    )
}

fn row_of(
    t: &TaskRow,
    name: &str,
    tag: crate::sched::workflow::WorkflowTag,
    effective: Option<f64>,
    waiting_for: Option<String>,
) -> QueueRow {
    QueueRow {
        task_id: t.id.clone(),
        workflow_id: t.workflow_id.clone(),
        workflow_name: name.to_string(),
        tag,
        index: t.idx,
        state: t.state,
        priority: t.priority,
        effective_priority: effective.unwrap_or(t.priority as f64),
        enqueued_at: t.enqueued_at,
        started_at: t.started_at,
        finished_at: t.finished_at,
        owner: t.owner.clone(),
        waiting_for,
        exit_code: t.exit_code,
        retried: t.retried,
        command: t.spec.command.join(" "),
    }
}

fn log_report(recs: Vec<logbuf::LogRecord>, matched: usize) -> LogReport {
    LogReport {
        records: recs
            .into_iter()
            .map(|r| LogLine {
                time: rfc3339(r.at),
                level: level_name(r.level).into(),
                service: r.service,
                message: r.message,
            })
            .collect(),
        matched,
    }
}
