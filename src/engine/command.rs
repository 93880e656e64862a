//! Commands the faces send to the engine, and the typed replies they get back.
//!
//! Replies are `Serialize + JsonSchema`: the MCP face returns them as structured tool
//! output and publishes their schemas as `outputSchema`.

use schemars::JsonSchema;
use serde::Serialize;

use super::policy::{CommandKind, Danger};
use crate::sched::workflow::{TaskState, WorkflowSpec, WorkflowStatus, WorkflowTag};

/// Who sent a command (recorded with submissions, shown in logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The terminal UI.
    Tui,
    /// An MCP client.
    Mcp,
    /// A one-shot CLI call.
    Cli,
    /// The autoscaler (P2P workflows it hands to the mesh).
    Autoscaler,
}

impl Source {
    /// Name as stored: `tui`, `mcp`, `cli`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Tui => "tui",
            Source::Mcp => "mcp",
            Source::Cli => "cli",
            Source::Autoscaler => "autoscaler",
        }
    }
}

/// One operator or agent action.
#[derive(Debug, Clone)]
pub enum Command {
    /// Submit a validated workflow; replies [`Reply::Submitted`] once it is in SQLite.
    SubmitWorkflow(WorkflowSpec),
    /// Cancel a workflow: queued tasks are dropped, running ones killed (process group).
    CancelWorkflow {
        /// Workflow id.
        workflow_id: String,
    },
    /// Set a waiting task's base priority (0..=1000; lower is more urgent).
    SetTaskPriority {
        /// Task id.
        task_id: String,
        /// New priority.
        priority: u16,
    },
    /// List workflows, newest first.
    ListWorkflows {
        /// Only this status.
        status: Option<WorkflowStatus>,
        /// Only this tag.
        tag: Option<WorkflowTag>,
        /// At most this many (1..=1000).
        limit: usize,
    },
    /// One workflow's status with its tasks.
    GetWorkflowStatus {
        /// Workflow id.
        workflow_id: String,
    },
    /// A task's captured output tail.
    GetTaskOutput {
        /// Task id.
        task_id: String,
    },
    /// Node, queue and service summary.
    GetSystemStatus,
    /// Health of the named services (all when empty).
    GetServiceHealth {
        /// Service names, e.g. `engine`, `store`, `scheduler`, `mcp`, `p2p`.
        services: Vec<String>,
    },
    /// The most recent log records at or above `level`.
    GetRecentLogs {
        /// Minimum level: `debug`, `info`, `warning`, `error`.
        level: Option<String>,
        /// How many (1..=10000).
        lines: usize,
        /// Only this service.
        service: Option<String>,
    },
    /// Log records matching `query` (regex, or literal if not a valid regex, case-insensitive)
    /// within the last `time_range`.
    SearchLogs {
        /// Query.
        query: String,
        /// Span such as `1h`, `15m`; all retained records when absent.
        time_range: Option<String>,
    },
    /// Detected hardware and capability labels.
    DetectHardware,
    /// VMs of one user, or of everyone when `user` is absent.
    ListVms {
        /// Owner.
        user: Option<String>,
        /// Include terminated VMs.
        include_terminated: bool,
    },
    /// Create a VM for a user (defaults from `[compute]` for absent sizes).
    ProvisionVm {
        /// Owner.
        user: String,
        /// Session that asked for it.
        session: Option<String>,
        /// CPU preset, e.g. `shared-cpu-1x`.
        cpu_type: Option<String>,
        /// Memory, MB.
        memory_mb: Option<u32>,
        /// Fly region, e.g. `iad`.
        region: Option<String>,
    },
    /// Destroy a VM (`force` kills a running machine at once); `dry_run` only says what would
    /// happen.
    TerminateVm {
        /// VM id.
        vm_id: String,
        /// Kill without a graceful stop.
        force: bool,
        /// Describe only.
        dry_run: bool,
    },
    /// SSH details of a VM.
    GetVmSsh {
        /// VM id.
        vm_id: String,
    },
    /// Record activity: the idle shutdown moves to now + the idle timeout.
    ExtendVmActivity {
        /// VM id.
        vm_id: String,
    },
    /// A user's compute costs over the last `days`.
    GetComputeCosts {
        /// Owner.
        user: String,
        /// Days back (1..=366).
        days: u32,
    },
    /// Repositories of a GitHub user or organization, most recently pushed first.
    GhListRepos {
        /// User or organization.
        owner: String,
        /// `all`, `public` or `private`.
        kind: String,
        /// At most this many.
        limit: usize,
    },
    /// Workflow runs of a repository.
    GhWorkflowRuns {
        /// `owner/name`.
        repo: String,
        /// Workflow name or file name (`ci.yml`), or all.
        workflow: Option<String>,
        /// Status or conclusion filter (`queued`, `completed`, `failure`, ...).
        status: Option<String>,
        /// At most this many.
        limit: usize,
    },
    /// Cache statistics of the GitHub layer.
    GhCacheStats,
    /// This node's mesh status.
    GetP2pNetworkStatus,
    /// Hand this node's queued mesh tasks to better peers.
    RebalanceP2p {
        /// How to rank peers.
        strategy: crate::sched::peer_select::PlaceBy,
    },
    /// Close the connections to a peer (it may reconnect).
    DisconnectPeer {
        /// Peer ID.
        peer_id: String,
    },
    /// Disconnect a peer and refuse it until unbanned.
    BanPeer {
        /// Peer ID.
        peer_id: String,
    },
    /// Accept a banned peer again.
    UnbanPeer {
        /// Peer ID.
        peer_id: String,
    },
    /// Orchestrator issues, newest first.
    ListOrchestratorIssues {
        /// open, fixing, fixed or ignored.
        status: Option<String>,
        /// `owner/name`.
        repo: Option<String>,
    },
    /// One issue with its evidence lines in context.
    GetIssueEvidence {
        /// Issue id (`iss-...`).
        issue_id: String,
    },
    /// Apply an issue's fix; `dry_run` only plans.
    ApplyFix {
        /// Issue id.
        issue_id: String,
        /// Plan only.
        dry_run: bool,
    },
    /// Mark an issue ignored.
    IgnoreIssue {
        /// Issue id.
        issue_id: String,
    },
    /// Classify a log text with the pattern catalogue.
    ClassifyLog {
        /// Raw job log.
        text: String,
    },
    /// Runners the autoscaler manages, newest first.
    ListRunners {
        /// Include runners that are gone.
        include_gone: bool,
    },
    /// Start `count` ephemeral runners for a repository (JIT config, first provider whose
    /// labels cover `labels`).
    ProvisionRunner {
        /// `owner/name`.
        repo: String,
        /// Labels the runners must offer (empty: the first provider's).
        labels: Vec<String>,
        /// How many (1..=100).
        count: u32,
    },
    /// Remove a runner: stop its instance, unregister it at GitHub. A busy runner is refused
    /// (drain it). `dry_run` only says what would happen.
    RemoveRunner {
        /// Runner id.
        runner_id: String,
        /// Describe only.
        dry_run: bool,
    },
    /// Give a runner no new work and retire it once idle.
    DrainRunner {
        /// Runner id.
        runner_id: String,
    },
    /// Pause (no new runners; clean-up goes on) or resume the autoscaler.
    PauseAutoscaler {
        /// Pause when true, resume when false.
        paused: bool,
    },
    /// Run an autoscaler check now.
    CheckAutoscaler,
    /// Autoscaler figures.
    GetAutoscalerStatus,
}

impl Command {
    /// The command's row in the policy table.
    pub fn kind(&self) -> CommandKind {
        match self {
            Command::SubmitWorkflow(_) => CommandKind::SubmitWorkflow,
            Command::CancelWorkflow { .. } => CommandKind::CancelWorkflow,
            Command::SetTaskPriority { .. } => CommandKind::SetTaskPriority,
            Command::ListWorkflows { .. } => CommandKind::ListWorkflows,
            Command::GetWorkflowStatus { .. } => CommandKind::GetWorkflowStatus,
            Command::GetTaskOutput { .. } => CommandKind::GetTaskOutput,
            Command::GetSystemStatus => CommandKind::GetSystemStatus,
            Command::GetServiceHealth { .. } => CommandKind::GetServiceHealth,
            Command::GetRecentLogs { .. } => CommandKind::GetRecentLogs,
            Command::SearchLogs { .. } => CommandKind::SearchLogs,
            Command::DetectHardware => CommandKind::DetectHardware,
            Command::ListVms { .. } => CommandKind::ListVms,
            Command::ProvisionVm { .. } => CommandKind::ProvisionVm,
            Command::TerminateVm { .. } => CommandKind::TerminateVm,
            Command::GetVmSsh { .. } => CommandKind::GetVmSsh,
            Command::ExtendVmActivity { .. } => CommandKind::ExtendVmActivity,
            Command::GetComputeCosts { .. } => CommandKind::GetComputeCosts,
            Command::GhListRepos { .. } => CommandKind::GhListRepos,
            Command::GhWorkflowRuns { .. } => CommandKind::GhWorkflowRuns,
            Command::GhCacheStats => CommandKind::GhCacheStats,
            Command::GetP2pNetworkStatus => CommandKind::GetP2pNetworkStatus,
            Command::RebalanceP2p { .. } => CommandKind::RebalanceP2p,
            Command::DisconnectPeer { .. } => CommandKind::DisconnectPeer,
            Command::BanPeer { .. } => CommandKind::BanPeer,
            Command::UnbanPeer { .. } => CommandKind::UnbanPeer,
            Command::ListOrchestratorIssues { .. } => CommandKind::ListOrchestratorIssues,
            Command::GetIssueEvidence { .. } => CommandKind::GetIssueEvidence,
            Command::ApplyFix { .. } => CommandKind::ApplyFix,
            Command::IgnoreIssue { .. } => CommandKind::IgnoreIssue,
            Command::ClassifyLog { .. } => CommandKind::ClassifyLog,
            Command::ListRunners { .. } => CommandKind::ListRunners,
            Command::ProvisionRunner { .. } => CommandKind::ProvisionRunner,
            Command::RemoveRunner { .. } => CommandKind::RemoveRunner,
            Command::DrainRunner { .. } => CommandKind::DrainRunner,
            Command::PauseAutoscaler { .. } => CommandKind::PauseAutoscaler,
            Command::CheckAutoscaler => CommandKind::CheckAutoscaler,
            Command::GetAutoscalerStatus => CommandKind::GetAutoscalerStatus,
        }
    }

    /// How dangerous it is (see [`super::policy`]).
    pub fn danger(&self) -> Danger {
        self.kind().danger()
    }
}

/// Reply to [`Command::SubmitWorkflow`].
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Submitted {
    /// The new workflow's id.
    pub workflow_id: String,
    /// Number of tasks queued.
    pub tasks: usize,
}

/// A workflow in a list.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct WorkflowSummary {
    /// Workflow id.
    pub workflow_id: String,
    /// Name.
    pub name: String,
    /// Tag.
    pub tag: WorkflowTag,
    /// Priority 0..=1000.
    pub priority: u16,
    /// Status.
    pub status: WorkflowStatus,
    /// Tasks in all.
    pub total: usize,
    /// Tasks that succeeded.
    pub completed: usize,
    /// Tasks that failed or timed out.
    pub failed: usize,
    /// Submission time, RFC 3339 UTC.
    pub created_at: String,
    /// Who submitted it: `mcp`, `tui`, `cli`.
    pub source: String,
}

/// Reply to [`Command::ListWorkflows`].
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct WorkflowList {
    /// Workflows, newest first.
    pub workflows: Vec<WorkflowSummary>,
}

/// One task in a status report.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct TaskReport {
    /// Task id (`<workflow id>.<index>`).
    pub task_id: String,
    /// Index in the workflow.
    pub index: u32,
    /// State.
    pub state: TaskState,
    /// argv.
    pub command: Vec<String>,
    /// Required capability labels.
    pub requires: Vec<String>,
    /// Current base priority.
    pub priority: u16,
    /// Exit status, once exited.
    pub exit_code: Option<i32>,
    /// Terminating signal, if killed.
    pub signal: Option<i32>,
    /// Run time of the last attempt, ms.
    pub duration_ms: Option<i64>,
    /// Attempts started.
    pub attempts: u32,
    /// Times re-queued after its node stopped mid-run.
    pub retried: u32,
    /// Node (peer ID or node name) that runs or ran it.
    pub owner: Option<String>,
    /// Failure reason, if any.
    pub error: Option<String>,
    /// Why a queued task waits, if not for a free slot (e.g. a missing capability).
    pub waiting_for: Option<String>,
}

/// Reply to [`Command::GetWorkflowStatus`]: the seed's
/// `{workflow_id, status, total, completed, failed, tasks}` plus details.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct WorkflowStatusReport {
    /// Workflow id.
    pub workflow_id: String,
    /// Name.
    pub name: String,
    /// Tag.
    pub tag: WorkflowTag,
    /// Priority.
    pub priority: u16,
    /// queued, running, completed, failed or cancelled.
    pub status: WorkflowStatus,
    /// Tasks in all.
    pub total: usize,
    /// Tasks that succeeded.
    pub completed: usize,
    /// Tasks that failed or timed out.
    pub failed: usize,
    /// Tasks cancelled.
    pub cancelled: usize,
    /// Tasks running now.
    pub running: usize,
    /// Tasks waiting.
    pub queued: usize,
    /// Submission time, RFC 3339 UTC.
    pub created_at: String,
    /// Finish time, RFC 3339 UTC.
    pub finished_at: Option<String>,
    /// The tasks in index order.
    pub tasks: Vec<TaskReport>,
}

/// Reply to [`Command::CancelWorkflow`].
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CancelReport {
    /// Workflow id.
    pub workflow_id: String,
    /// Queued tasks dropped.
    pub cancelled_queued: usize,
    /// Running tasks whose process group was signalled.
    pub killed_running: usize,
    /// Status after the cancel (running tasks finish as cancelled shortly).
    pub status: WorkflowStatus,
}

/// Reply to [`Command::SetTaskPriority`].
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PriorityReport {
    /// Task id.
    pub task_id: String,
    /// New base priority.
    pub priority: u16,
    /// Effective priority after starvation boosts.
    pub effective_priority: f64,
}

/// Reply to [`Command::GetTaskOutput`].
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct TaskOutput {
    /// Task id.
    pub task_id: String,
    /// State.
    pub state: TaskState,
    /// Tail of combined stdout and stderr (lossy UTF-8).
    pub output: String,
    /// Whether earlier output was dropped to keep the tail.
    pub truncated: bool,
}

/// Queue figures.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct QueueStatus {
    /// Tasks waiting.
    pub queued: usize,
    /// Tasks running.
    pub running: usize,
    /// `scheduler.max_concurrent_tasks`.
    pub max_concurrent_tasks: usize,
    /// Tasks by state over the store's lifetime.
    pub tasks_by_state: std::collections::BTreeMap<String, u64>,
    /// Workflows by status over the store's lifetime.
    pub workflows_by_status: std::collections::BTreeMap<String, u64>,
}

/// Reply to [`Command::GetSystemStatus`].
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SystemStatus {
    /// Flotilla version.
    pub version: String,
    /// Node name.
    pub node: String,
    /// Engine process id.
    pub pid: u32,
    /// Seconds since the engine started.
    pub uptime_s: u64,
    /// Read-only mode.
    pub read_only: bool,
    /// Data dir.
    pub data_dir: String,
    /// Overall health: `ok` or `degraded`.
    pub health: String,
    /// Queue figures.
    pub queue: QueueStatus,
    /// 1-minute load average of the host.
    pub load_avg_1m: Option<f64>,
    /// Capability labels of this node.
    pub capabilities: Vec<String>,
    /// Services and their state.
    pub services: Vec<ServiceHealth>,
    /// GitHub API rate limit (not available until the GitHub layer runs).
    pub github_rate_limit: Option<serde_json::Value>,
}

/// One service's health.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ServiceHealth {
    /// Service name.
    pub name: String,
    /// `ok`, `degraded`, `disabled` or `error`.
    pub status: String,
    /// What it is doing or why not.
    pub detail: String,
}

/// Reply to [`Command::GetServiceHealth`].
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ServiceHealthReport {
    /// `ok` when every requested enabled service is ok.
    pub overall: String,
    /// The services asked for.
    pub services: Vec<ServiceHealth>,
}

/// One log record.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct LogLine {
    /// Time, RFC 3339 UTC.
    pub time: String,
    /// `debug`, `info`, `warning`, `error`.
    pub level: String,
    /// Service (engine, scheduler, store, mcp, tui, ...).
    pub service: String,
    /// Message with its fields.
    pub message: String,
}

/// Reply to [`Command::GetRecentLogs`] and [`Command::SearchLogs`].
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct LogReport {
    /// Matching records, oldest first.
    pub records: Vec<LogLine>,
    /// How many matched before `lines` cut them.
    pub matched: usize,
}

/// A GPU or accelerator.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub struct Accelerator {
    /// `nvidia`, `amd`, ...
    pub vendor: String,
    /// Device or driver description.
    pub name: String,
}

/// Reply to [`Command::DetectHardware`].
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub struct HardwareReport {
    /// Operating system (`linux`).
    pub os: String,
    /// Architecture as GitHub runner labels name it: `x64`, `arm64`.
    pub arch: String,
    /// CPU model name.
    pub cpu_model: String,
    /// Logical cores.
    pub cores: usize,
    /// Total memory, MiB.
    pub memory_mb: u64,
    /// GPUs and other accelerators found.
    pub accelerators: Vec<Accelerator>,
    /// Capability labels this node offers for `requires` matching.
    pub capabilities: Vec<String>,
}

/// A VM as faces show it.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub struct VmView {
    /// Flotilla VM id, `vm-...`.
    pub vm_id: String,
    /// Machine name.
    pub name: String,
    /// Owner.
    pub user: String,
    /// Fly region.
    pub region: String,
    /// CPU preset.
    pub cpu_type: String,
    /// Memory, MB.
    pub memory_mb: u32,
    /// provisioning, running, stopped, terminated or error.
    pub status: String,
    /// Fly machine id.
    pub machine_id: Option<String>,
    /// Private (6PN) address.
    pub private_ip: Option<String>,
    /// Tailscale address, once known.
    pub tailscale_ip: Option<String>,
    /// Last activity, RFC 3339.
    pub last_activity_at: Option<String>,
    /// When the idle sweep may terminate it, RFC 3339.
    pub auto_shutdown_at: Option<String>,
    /// Seconds until the idle shutdown (0 when due).
    pub idle_left_s: Option<i64>,
    /// Cost so far, hundredths of a cent (integer; running VMs counted up to now).
    pub cost_centicents: i64,
    /// The same in dollars, e.g. `$0.0123`.
    pub cost_usd: String,
    /// Failure reason, if any (no secrets).
    pub error: Option<String>,
}

/// Reply to [`Command::ListVms`].
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct VmList {
    /// VMs, newest first.
    pub vms: Vec<VmView>,
}

/// Reply to [`Command::TerminateVm`].
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct TerminateReport {
    /// The VM after the call (unchanged for a dry run).
    pub vm: VmView,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// What was (or would be) done.
    pub action: String,
}

/// Reply to [`Command::GetVmSsh`] (the seed's SSH credentials).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct VmSsh {
    /// Host to connect to.
    pub hostname: String,
    /// SSH port.
    pub port: u16,
    /// User.
    pub username: String,
    /// Fly machine id.
    pub machine_id: String,
    /// Region.
    pub region: String,
    /// Tailscale address, if known.
    pub tailscale_ip: Option<String>,
    /// A ready `ssh` command line.
    pub command: String,
}

/// Reply to [`Command::GetComputeCosts`].
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ComputeCostsReport {
    /// Owner.
    pub user_id: String,
    /// Days covered.
    pub period_days: u32,
    /// Total, hundredths of a cent.
    pub total_centicents: i64,
    /// Total in cents (the seed's `total_cost_cents`), integer hundredths kept exact in
    /// `total_centicents`.
    pub total_cost_cents: f64,
    /// Total in dollars (the seed's `total_cost_dollars`).
    pub total_cost_dollars: f64,
    /// Usage records in the period.
    pub usage_count: u32,
    /// Of which still running.
    pub running_count: u32,
}

/// GitHub's primary (core) rate limit as last reported.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub struct GhRateLimit {
    /// Requests per window.
    pub limit: u64,
    /// Requests left.
    pub remaining: u64,
    /// Requests used.
    pub used: u64,
    /// When the window resets, RFC 3339.
    pub reset_at: String,
}

/// A repository.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct GhRepo {
    /// `owner/name`.
    pub full_name: String,
    /// Private.
    pub private: bool,
    /// Archived.
    pub archived: bool,
    /// Last push, ISO 8601.
    pub pushed_at: Option<String>,
    /// Default branch.
    pub default_branch: Option<String>,
    /// Web URL.
    pub html_url: Option<String>,
}

/// Reply to [`Command::GhListRepos`].
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct GhRepoList {
    /// Repositories, most recently pushed first.
    pub repos: Vec<GhRepo>,
    /// Rate limit after the call.
    pub rate_limit: Option<GhRateLimit>,
}

/// A workflow run.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct GhRun {
    /// Run id.
    pub id: u64,
    /// Workflow name.
    pub name: Option<String>,
    /// Workflow file path.
    pub path: Option<String>,
    /// Branch.
    pub head_branch: Option<String>,
    /// Trigger event.
    pub event: Option<String>,
    /// queued, in_progress, completed, ...
    pub status: Option<String>,
    /// success, failure, cancelled, timed_out, ...
    pub conclusion: Option<String>,
    /// Created, ISO 8601.
    pub created_at: Option<String>,
    /// Web URL.
    pub html_url: Option<String>,
}

/// Reply to [`Command::GhWorkflowRuns`].
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct GhRunList {
    /// Runs, newest first.
    pub runs: Vec<GhRun>,
    /// Rate limit after the call.
    pub rate_limit: Option<GhRateLimit>,
}

/// Reply to [`Command::GhCacheStats`]: the seed's names plus detail.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub struct GhCacheStats {
    /// Share of lookups that cost no primary rate limit.
    pub hit_rate: f64,
    /// Lookups answered without a counted API call (hits + 304s + peer hits).
    pub api_calls_saved: u64,
    /// Answered from an entry a mesh peer shared.
    pub peer_hits: u64,
    /// Entries from peers rejected as forged, tampered or malformed.
    pub rejected: u64,
    /// Mesh peers connected.
    pub connected_peers: u32,
    /// Whether mesh sharing is on.
    pub p2p_enabled: bool,
    /// Fresh entries served with no request.
    pub hits: u64,
    /// Full responses fetched.
    pub misses: u64,
    /// Revalidated with 304 Not Modified.
    pub not_modified: u64,
    /// Entries evicted (LRU) to stay under the size bound.
    pub evictions: u64,
    /// HTTP requests sent to GitHub.
    pub api_calls: u64,
    /// Entries stored.
    pub entries: u64,
    /// Bytes stored.
    pub bytes: u64,
}

/// Reply to [`Command::GetP2pNetworkStatus`].
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct P2pStatus {
    /// This node's peer ID (absent while the node starts or when the mesh is off).
    pub peer_id: Option<String>,
    /// Full listen multiaddrs, ending in `/p2p/<peer id>`.
    pub listen_addrs: Vec<String>,
    /// Peers connected now.
    pub peer_count: usize,
    /// Peers seen, with RTT and last-seen time, and (from their heartbeats) labels and load.
    pub peers: Vec<P2pPeer>,
    /// Tasks running on this node.
    pub active_tasks: usize,
    /// `ok`, `starting`, `off` or `no peers`.
    pub health: String,
    /// Why the mesh is off, if it is.
    pub detail: Option<String>,
    /// Private network (pnet) on.
    pub private: bool,
    /// This node's Merkle clock: `{hash, entries: {peer ID: counter}}` (absent while off).
    pub clock: Option<ClockView>,
    /// Completions dropped because another peer's was recorded first.
    pub duplicates_dropped: u64,
    /// Mesh tasks this node owns: running and queued here.
    pub owned_tasks: usize,
}

/// A Merkle clock as faces show it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ClockView {
    /// Merkle root over the sorted entries (hex SHA-256).
    pub hash: String,
    /// Counter per peer ID.
    pub entries: std::collections::BTreeMap<String, u64>,
}

/// One peer in [`P2pStatus`].
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct P2pPeer {
    /// Peer ID.
    pub peer_id: String,
    /// Addresses.
    pub addrs: Vec<String>,
    /// Capability labels (from its heartbeats; empty until one arrives).
    pub capabilities: Vec<String>,
    /// `running/max` tasks (from its heartbeats).
    pub load: Option<String>,
    /// Tasks queued there.
    pub queued: Option<u32>,
    /// Node name (from its heartbeats).
    pub name: Option<String>,
    /// Last heartbeat received, RFC 3339.
    pub last_heartbeat: Option<String>,
    /// Last ping RTT, ms.
    pub rtt_ms: Option<f64>,
    /// Last seen, RFC 3339.
    pub last_seen: String,
    /// Connected now.
    pub connected: bool,
    /// Identify agent.
    pub agent: Option<String>,
}

/// An orchestrator issue as faces show it.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
pub struct IssueView {
    /// Issue id.
    pub issue_id: String,
    /// low, medium, high, critical.
    pub severity: String,
    /// Failure class.
    pub issue_type: String,
    /// `owner/name`.
    pub repo: String,
    /// Workflow name.
    pub workflow: String,
    /// Run id.
    pub run_id: u64,
    /// Run URL.
    pub run_url: Option<String>,
    /// Job name.
    pub job: Option<String>,
    /// open, fixing, fixed, ignored.
    pub status: String,
    /// Why it has that status.
    pub status_reason: String,
    /// The primary verdict of its run (else a secondary finding).
    pub primary: bool,
    /// What would fix it.
    pub fix_description: String,
    /// First seen, RFC 3339.
    pub created_at: String,
    /// GitHub issue filed for its class, if any.
    pub github_issue: Option<u64>,
    /// Re-runs requested for its run.
    pub reruns: u32,
}

/// Reply to [`Command::ListOrchestratorIssues`].
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct IssueList {
    /// Issues, newest first.
    pub issues: Vec<IssueView>,
}

/// Reply to [`Command::GetIssueEvidence`].
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct IssueEvidence {
    /// The issue.
    pub issue: IssueView,
    /// The matched lines.
    pub evidence: String,
    /// Their line numbers in the job log.
    pub lines: Vec<usize>,
    /// The lines around them (normalized).
    pub context: String,
}

/// One fix outcome.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct FixReport {
    /// Issue id.
    pub issue_id: String,
    /// What the plan is.
    pub plan: String,
    /// What happened.
    pub result: String,
    /// Whether anything was done.
    pub applied: bool,
    /// Status after.
    pub status: String,
    /// Dry run.
    pub dry_run: bool,
}

/// One finding of [`Command::ClassifyLog`].
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct LogFinding {
    /// Failure class.
    pub issue_type: String,
    /// low, medium, high, critical.
    pub severity: String,
    /// A fix exists that can run unattended.
    pub auto_fixable: bool,
    /// Line in the log (1-based; 0 = not from the log).
    pub line: usize,
    /// The matched line.
    pub evidence: String,
    /// What would fix it.
    pub fix_description: String,
}

/// Reply to [`Command::ClassifyLog`]: the primary verdict first.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Classified {
    /// Findings, primary first.
    pub issues: Vec<LogFinding>,
}

/// A command's reply.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Reply {
    /// See [`Submitted`].
    Submitted(Submitted),
    /// See [`WorkflowList`].
    Workflows(WorkflowList),
    /// See [`WorkflowStatusReport`].
    WorkflowStatus(Box<WorkflowStatusReport>),
    /// See [`CancelReport`].
    Cancelled(CancelReport),
    /// See [`PriorityReport`].
    Priority(PriorityReport),
    /// See [`TaskOutput`].
    Output(TaskOutput),
    /// See [`SystemStatus`].
    System(Box<SystemStatus>),
    /// See [`ServiceHealthReport`].
    Health(ServiceHealthReport),
    /// See [`LogReport`].
    Logs(LogReport),
    /// See [`HardwareReport`].
    Hardware(HardwareReport),
    /// See [`VmList`].
    Vms(VmList),
    /// One VM after an operation.
    Vm(Box<VmView>),
    /// See [`TerminateReport`].
    Terminated(Box<TerminateReport>),
    /// See [`VmSsh`].
    Ssh(VmSsh),
    /// See [`ComputeCostsReport`].
    Costs(ComputeCostsReport),
    /// See [`GhRepoList`].
    GhRepos(GhRepoList),
    /// See [`GhRunList`].
    GhRuns(GhRunList),
    /// See [`GhCacheStats`].
    GhCache(GhCacheStats),
    /// See [`P2pStatus`].
    P2p(Box<P2pStatus>),
    /// See [`IssueList`].
    Issues(IssueList),
    /// See [`IssueEvidence`].
    Evidence(Box<IssueEvidence>),
    /// See [`FixReport`].
    Fix(FixReport),
    /// One issue after a status change.
    Issue(Box<IssueView>),
    /// See [`Classified`].
    Classified(Classified),
    /// See [`RunnerList`].
    Runners(RunnerList),
    /// See [`RunnerRemoved`].
    RunnerRemoved(RunnerRemoved),
    /// See [`AutoscalerStatus`].
    Autoscaler(Box<AutoscalerStatus>),
    /// A command that changed a switch: what it did.
    Done(Done),
    /// See [`Rebalanced`].
    Rebalanced(Rebalanced),
}

/// One task moved by `rebalance_p2p_tasks`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct TaskMove {
    /// Task id.
    pub task_id: String,
    /// Peer ID it left (this node).
    pub from: String,
    /// Peer ID that owns it now.
    pub to: String,
}

/// Reply to [`Command::RebalanceP2p`].
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Rebalanced {
    /// The strategy used.
    pub strategy: crate::sched::peer_select::PlaceBy,
    /// Queued tasks handed to other peers (empty: already balanced).
    pub moved: Vec<TaskMove>,
}

/// A runner as the faces show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct RunnerView {
    /// Our id (`run-...`).
    pub id: String,
    /// Name at GitHub.
    pub name: String,
    /// `repo:owner/name` or `org:owner`.
    pub scope: String,
    /// Labels it registers with.
    pub labels: Vec<String>,
    /// Provider name.
    pub provider: String,
    /// requested, provisioning, idle, busy, offline, removing, gone, failed.
    pub state: String,
    /// Job it runs (GitHub's job name), if busy.
    pub job: Option<String>,
    /// Job it was started for (`owner/name#job_id`).
    pub for_job: Option<String>,
    /// Requested at, RFC 3339.
    pub started_at: String,
    /// In its state since, RFC 3339.
    pub state_since: String,
    /// GitHub runner id, once registered.
    pub github_id: Option<u64>,
    /// Marked to drain.
    pub draining: bool,
    /// Last problem.
    pub last_error: Option<String>,
}

/// Reply to [`Command::ListRunners`] and [`Command::ProvisionRunner`].
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RunnerList {
    /// Runners.
    pub runners: Vec<RunnerView>,
}

/// Reply to [`Command::RemoveRunner`].
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RunnerRemoved {
    /// Runner id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Steps taken (or, dry, planned).
    pub steps: Vec<String>,
    /// Nothing was done.
    pub dry_run: bool,
    /// State after.
    pub state: String,
}

/// One provider in [`AutoscalerStatus`].
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ProviderView {
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

/// Reply to [`Command::GetAutoscalerStatus`].
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct AutoscalerStatus {
    /// Running (GitHub on, not disabled).
    pub enabled: bool,
    /// Why not, when off.
    pub reason: Option<String>,
    /// Paused by an operator.
    pub paused: bool,
    /// Watched owner.
    pub owner: Option<String>,
    /// Checks so far (survives restarts).
    pub checks: u64,
    /// Jobs waiting for a runner.
    pub pending_jobs: u64,
    /// Live runners per state.
    pub runners_by_state: std::collections::BTreeMap<String, u64>,
    /// Last check, RFC 3339.
    pub last_check: Option<String>,
    /// Poll interval, seconds.
    pub interval_s: u64,
    /// Max runners.
    pub max_runners: u32,
    /// Median queued → started at GitHub, seconds (last 100 jobs).
    pub queue_wait_p50_s: Option<f64>,
    /// Median queued → our runner launched, seconds (last 100 jobs).
    pub startup_p50_s: Option<f64>,
    /// Orphan runners/instances removed so far.
    pub orphans_removed: u64,
    /// GitHub requests made by the last check.
    pub api_calls_last_check: u64,
    /// Core rate limit remaining, if known.
    pub rate_limit_remaining: Option<u64>,
    /// Providers.
    pub providers: Vec<ProviderView>,
}

/// Reply to switch commands.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Done {
    /// What changed.
    pub message: String,
}
