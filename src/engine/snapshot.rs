//! What the faces read: an immutable [`Snapshot`] of engine state, published through a
//! `tokio::sync::watch` channel as an `Arc` whenever something changes.

use crate::clock::Millis;
use crate::engine::command::ServiceHealth;
use crate::sched::workflow::{TaskState, WorkflowTag};
use crate::store::Counts;

/// This node as the Peers pane shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeView {
    /// Node name (host name unless configured).
    pub name: String,
    /// libp2p peer ID, once the mesh runs.
    pub peer_id: Option<String>,
    /// Addresses (multiaddrs) it listens on.
    pub addresses: Vec<String>,
    /// Capability labels.
    pub capabilities: Vec<String>,
    /// Tasks running.
    pub running: usize,
    /// `scheduler.max_concurrent_tasks`.
    pub max_tasks: usize,
    /// Host 1-minute load average.
    pub load_avg: Option<f64>,
    /// Read-only mode.
    pub read_only: bool,
    /// Engine start time, unix ms.
    pub started_at: Millis,
    /// Engine pid.
    pub pid: u32,
    /// Data dir.
    pub data_dir: String,
}

/// One task row in the Queue pane.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueRow {
    /// Task id.
    pub task_id: String,
    /// Workflow id.
    pub workflow_id: String,
    /// Workflow name.
    pub workflow_name: String,
    /// Workflow tag.
    pub tag: WorkflowTag,
    /// Index in the workflow.
    pub index: u32,
    /// State.
    pub state: TaskState,
    /// Base priority.
    pub priority: u16,
    /// Effective priority after boosts (queued tasks), else the base.
    pub effective_priority: f64,
    /// When it entered the queue.
    pub enqueued_at: Millis,
    /// When its current attempt started.
    pub started_at: Option<Millis>,
    /// When it finished.
    pub finished_at: Option<Millis>,
    /// Who runs or ran it.
    pub owner: Option<String>,
    /// Why it waits, if not for a slot.
    pub waiting_for: Option<String>,
    /// Exit status.
    pub exit_code: Option<i32>,
    /// Times re-queued after an interrupted run.
    pub retried: u32,
    /// The argv, joined for display.
    pub command: String,
}

/// A pane whose service is not running: what would feed it and how to turn it on.
#[derive(Debug, Clone, PartialEq)]
pub struct OffFeed {
    /// What feeds the pane when on.
    pub feeds_from: String,
    /// How to turn it on.
    pub enable: String,
}

/// One VM in the VMs pane.
#[derive(Debug, Clone, PartialEq)]
pub struct VmRow {
    /// Flotilla VM id.
    pub vm_id: String,
    /// Machine name.
    pub name: String,
    /// Owner.
    pub user: String,
    /// Region.
    pub region: String,
    /// CPU preset.
    pub cpu_type: String,
    /// Memory, MB.
    pub memory_mb: u32,
    /// Status name.
    pub status: String,
    /// Idle shutdown deadline, unix ms.
    pub auto_shutdown_at: Option<Millis>,
    /// Cost so far, hundredths of a cent.
    pub cost_centicents: i64,
}

/// The VMs pane's feed.
#[derive(Debug, Clone, PartialEq)]
pub enum VmFeed {
    /// Compute is not configured.
    Off(OffFeed),
    /// Live VMs and this month's cost.
    On {
        /// VMs, newest first.
        rows: Vec<VmRow>,
        /// This calendar month's compute cost, all users, hundredths of a cent.
        month_centicents: i64,
    },
}

/// The Runners pane's feed.
#[derive(Debug, Clone, PartialEq)]
pub enum RunnerFeed {
    /// The autoscaler is not running.
    Off(OffFeed),
    /// Runners (live ones, then the most recently gone), and the header figures.
    On {
        /// Runners, newest first.
        rows: Vec<crate::engine::command::RunnerView>,
        /// Paused by an operator.
        paused: bool,
        /// Jobs waiting for a runner.
        pending_jobs: u64,
        /// Checks so far.
        checks: u64,
        /// Most runners.
        max_runners: u32,
        /// Median queued → started at GitHub, ms (last 100 jobs).
        queue_wait_p50_ms: Option<i64>,
        /// Orphans removed so far.
        orphans_removed: u64,
    },
}

/// The Issues pane's feed.
#[derive(Debug, Clone, PartialEq)]
pub enum IssueFeed {
    /// The orchestrator is not running.
    Off(OffFeed),
    /// Issues, newest first.
    On(Vec<crate::engine::command::IssueView>),
}

/// The engine state a face renders from.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Increases with each publish.
    pub version: u64,
    /// When it was taken, unix ms.
    pub taken_at: Millis,
    /// This node.
    pub node: NodeView,
    /// Running tasks, then queued ones in heap order, then recently finished, newest first.
    pub queue: Vec<QueueRow>,
    /// Store-wide counts.
    pub counts: Counts,
    /// Runners pane feed.
    pub runners: RunnerFeed,
    /// VMs pane feed.
    pub vms: VmFeed,
    /// Issues pane feed.
    pub issues: IssueFeed,
    /// Service health.
    pub health: Vec<ServiceHealth>,
    /// Mesh peers (other nodes).
    pub peers: Vec<crate::engine::mesh::PeerRow>,
    /// Mesh state: `starting`, `on`, `private`, or `off: <why>`.
    pub mesh: String,
    /// GitHub rate limit and cache figures, when the GitHub layer is on.
    pub github: Option<crate::engine::github::GithubView>,
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            version: 0,
            taken_at: 0,
            node: NodeView::default(),
            queue: Vec::new(),
            counts: Counts::default(),
            runners: RunnerFeed::Off(off_runners()),
            vms: VmFeed::Off(off_vms()),
            issues: IssueFeed::Off(off_issues()),
            health: Vec::new(),
            peers: Vec::new(),
            mesh: "starting".into(),
            github: None,
        }
    }
}

/// Runners pane when the autoscaler is not running.
pub fn off_runners() -> OffFeed {
    OffFeed {
        feeds_from: "the autoscaler: ephemeral self-hosted runners for queued GitHub jobs".into(),
        enable: "needs a GitHub token (GH_TOKEN or `gh auth login`) and --autoscaler-owner \
                 (GITHUB_AUTOSCALER_OWNER); runners start through [[autoscaler.providers]]"
            .into(),
    }
}

/// VMs pane when compute is not configured.
pub fn off_vms() -> OffFeed {
    OffFeed {
        feeds_from: "the compute service: Fly Machines VMs per user, idle shutdown, costs".into(),
        enable: "set FLY_API_TOKEN and FLY_APP_NAME (or [compute] in config.toml)".into(),
    }
}

/// Issues pane when the orchestrator is not running.
pub fn off_issues() -> OffFeed {
    OffFeed {
        feeds_from: "the orchestrator: failed workflow runs, classified from their logs".into(),
        enable: "needs a GitHub token and monitored repos; `flotilla classify FILE` works offline"
            .into(),
    }
}
