//! The MCP tools: each one builds a [`Command`] and runs it through the engine's policy gate.
//! Tool names and arguments follow the seed documents; every tool has an output schema and
//! `readOnlyHint`/`destructiveHint` annotations taken from the policy table.

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{Implementation, ServerCapabilities, ServerConfig, ToolAnnotations};
use rmcp::{Json, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::engine::command::*;
use crate::engine::{Command, CommandKind, Danger, EngineError, EngineHandle, Reply, Source};
use crate::sched::workflow::{TaskSpec, WorkflowSpec};

/// MCP tool name -> engine command kind: the one table tool annotations come from.
pub const TOOL_TABLE: &[(&str, CommandKind)] = &[
    ("submit_p2p_workflow", CommandKind::SubmitWorkflow),
    ("list_workflows", CommandKind::ListWorkflows),
    ("get_workflow_status", CommandKind::GetWorkflowStatus),
    ("cancel_workflow", CommandKind::CancelWorkflow),
    ("set_task_priority", CommandKind::SetTaskPriority),
    ("get_task_output", CommandKind::GetTaskOutput),
    ("get_system_status", CommandKind::GetSystemStatus),
    ("get_service_health", CommandKind::GetServiceHealth),
    ("get_recent_logs", CommandKind::GetRecentLogs),
    ("search_logs", CommandKind::SearchLogs),
    ("detect_hardware", CommandKind::DetectHardware),
    ("list_vms", CommandKind::ListVms),
    ("provision_vm", CommandKind::ProvisionVm),
    ("terminate_vm", CommandKind::TerminateVm),
    ("get_vm_ssh", CommandKind::GetVmSsh),
    ("extend_vm_activity", CommandKind::ExtendVmActivity),
    ("get_compute_costs", CommandKind::GetComputeCosts),
    ("gh_list_repos", CommandKind::GhListRepos),
    ("gh_workflow_runs", CommandKind::GhWorkflowRuns),
    ("gh_cache_stats", CommandKind::GhCacheStats),
    ("get_p2p_network_status", CommandKind::GetP2pNetworkStatus),
    ("rebalance_p2p_tasks", CommandKind::RebalanceP2p),
    ("disconnect_peer", CommandKind::DisconnectPeer),
    ("ban_peer", CommandKind::BanPeer),
    ("unban_peer", CommandKind::UnbanPeer),
    (
        "list_orchestrator_issues",
        CommandKind::ListOrchestratorIssues,
    ),
    ("get_issue_evidence", CommandKind::GetIssueEvidence),
    ("apply_fix", CommandKind::ApplyFix),
    ("ignore_issue", CommandKind::IgnoreIssue),
    ("classify_log", CommandKind::ClassifyLog),
    ("list_runners", CommandKind::ListRunners),
    ("gh_provision_runner", CommandKind::ProvisionRunner),
    ("remove_runner", CommandKind::RemoveRunner),
    ("drain_runner", CommandKind::DrainRunner),
    ("pause_autoscaler", CommandKind::PauseAutoscaler),
    ("check_autoscaler", CommandKind::CheckAutoscaler),
    ("get_autoscaler_status", CommandKind::GetAutoscalerStatus),
];

/// The command kind behind a tool name.
pub fn tool_kind(name: &str) -> Option<CommandKind> {
    TOOL_TABLE.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
}

/// Arguments of `submit_p2p_workflow`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SubmitArgs {
    /// Workflow name.
    pub name: String,
    /// Tasks: each `{"command": [argv...], "env": {...}, "timeout_s": N, "requires": [...]}`.
    #[schemars(with = "Vec<TaskSpec>")]
    pub tasks: Value,
    /// 0..=1000, lower is more urgent (default 500).
    #[serde(default)]
    pub priority: Option<i64>,
    /// One of github-api, p2p-eligible (default), p2p-only, unit-test, code-generation,
    /// web-scraping, data-processing.
    #[serde(default)]
    pub tag: Option<String>,
}

/// Arguments of `list_workflows`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct ListArgs {
    /// queued, running, completed, failed, cancelled, or all (default).
    #[serde(default)]
    pub status: Option<String>,
    /// Only workflows with this tag.
    #[serde(default)]
    pub tag: Option<String>,
    /// At most this many, newest first (default 50, max 1000).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// A workflow id.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct WorkflowIdArgs {
    /// Workflow id, e.g. `wf-01jd...`.
    pub workflow_id: String,
}

/// Arguments of `cancel_workflow`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CancelArgs {
    /// Workflow id.
    pub workflow_id: String,
    /// Must be true: cancelling kills running tasks.
    #[serde(default)]
    pub confirm: bool,
}

/// Arguments of `set_task_priority`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct PriorityArgs {
    /// Task id (`<workflow id>.<index>`).
    pub task_id: String,
    /// New priority 0..=1000 (lower is more urgent).
    pub priority: u16,
}

/// A task id.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct TaskIdArgs {
    /// Task id (`<workflow id>.<index>`).
    pub task_id: String,
}

/// Arguments of `get_service_health`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct HealthArgs {
    /// Services to report (default all): engine, store, scheduler, mcp, p2p, github,
    /// autoscaler, compute, orchestrator.
    #[serde(default)]
    pub services: Vec<String>,
}

/// Arguments of `get_recent_logs`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct RecentLogsArgs {
    /// Minimum level: debug, info, warning, error (default: all).
    #[serde(default)]
    pub level: Option<String>,
    /// How many records (default 100, max 10000).
    #[serde(default)]
    pub lines: Option<usize>,
    /// Only this service (engine, scheduler, store, mcp, tui, ...).
    #[serde(default)]
    pub service: Option<String>,
}

/// Arguments of `search_logs`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SearchLogsArgs {
    /// Regex (case-insensitive; taken literally if it is not a valid regex).
    pub query: String,
    /// Look back this far, e.g. 15m, 1h, 24h (default: all retained records).
    #[serde(default)]
    pub time_range: Option<String>,
}

/// Arguments of `list_vms`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct ListVmsArgs {
    /// Only this user's VMs (default: everyone's).
    #[serde(default)]
    pub user: Option<String>,
    /// Include terminated VMs (default false).
    #[serde(default)]
    pub include_terminated: bool,
}

/// Arguments of `provision_vm`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ProvisionVmArgs {
    /// Owner of the VM.
    pub user: String,
    /// CPU preset, e.g. shared-cpu-1x or performance-cpu-2x (default VM_DEFAULT_CPU_TYPE).
    #[serde(default)]
    pub cpu_type: Option<String>,
    /// Memory in MB, a multiple of 256 (default VM_DEFAULT_MEMORY_MB).
    #[serde(default)]
    pub memory_mb: Option<u32>,
    /// Fly region, e.g. iad (default VM_DEFAULT_REGION).
    #[serde(default)]
    pub region: Option<String>,
    /// Session that asked for it.
    #[serde(default)]
    pub session: Option<String>,
}

/// Arguments of `terminate_vm`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct TerminateVmArgs {
    /// VM id (`vm-...`).
    pub vm_id: String,
    /// Destroy a running machine at once instead of stopping it first.
    #[serde(default)]
    pub force: bool,
    /// Must be true to terminate (not needed for a dry run).
    #[serde(default)]
    pub confirm: bool,
    /// Only say what would happen.
    #[serde(default)]
    pub dry_run: bool,
}

/// Arguments of `list_runners`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct ListRunnersArgs {
    /// Include runners that are gone (default false).
    #[serde(default)]
    pub include_gone: bool,
}

/// Arguments of `gh_provision_runner`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ProvisionRunnerArgs {
    /// Repository, `owner/name` (an organization owner's runners are registered to the
    /// organization).
    pub repo: String,
    /// Labels the runners must offer, e.g. ["self-hosted", "linux"] (default: the first
    /// provider's labels).
    #[serde(default)]
    pub labels: Vec<String>,
    /// How many, 1..=100 (default 1).
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

/// Arguments of `remove_runner`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct RemoveRunnerArgs {
    /// Runner id (`run-...`, from list_runners).
    pub id: String,
    /// Must be true to remove (not needed for a dry run).
    #[serde(default)]
    pub confirm: bool,
    /// Only say what would happen.
    #[serde(default)]
    pub dry_run: bool,
}

/// Arguments of `rebalance_p2p_tasks`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct RebalanceArgs {
    /// `load` (least loaded peer), `latency` (lowest ping RTT) or `proximity` (closest
    /// capability labels, then load). Default `load`.
    #[serde(default)]
    pub strategy: Option<String>,
}

/// A peer, for disconnect and ban.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct PeerArgs {
    /// Peer ID (from get_p2p_network_status).
    pub peer_id: String,
    /// Must be true (disconnect and ban are destructive; unban does not need it).
    #[serde(default)]
    pub confirm: bool,
}

/// A runner id.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct RunnerIdArgs {
    /// Runner id (`run-...`).
    pub id: String,
}

/// Arguments of `pause_autoscaler`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct PauseArgs {
    /// true pauses (no new runners; clean-up goes on), false resumes.
    pub paused: bool,
}

/// A VM id.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct VmIdArgs {
    /// VM id (`vm-...`).
    pub vm_id: String,
}

/// Arguments of `get_compute_costs`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CostsArgs {
    /// User.
    pub user: String,
    /// Days back (default 30, 1..=366).
    #[serde(default)]
    pub days: Option<u32>,
}

/// Arguments of `gh_list_repos`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct GhListReposArgs {
    /// GitHub user or organization.
    pub owner: String,
    /// all (default), public or private.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// At most this many (default 50).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// Arguments of `gh_workflow_runs`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct GhRunsArgs {
    /// Repository as owner/name.
    pub repo: String,
    /// Workflow name or file name, e.g. ci.yml (default: all workflows).
    #[serde(default)]
    pub workflow: Option<String>,
    /// Status or conclusion: queued, in_progress, completed, failure, success, ...
    #[serde(default)]
    pub status: Option<String>,
    /// At most this many (default 30).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// Arguments of `list_orchestrator_issues`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct ListIssuesArgs {
    /// open, fixing, fixed, ignored or all (default).
    #[serde(default)]
    pub status: Option<String>,
    /// Only this repository, owner/name.
    #[serde(default)]
    pub repo: Option<String>,
}

/// An issue id.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct IssueIdArgs {
    /// Issue id (`iss-...`).
    pub issue_id: String,
}

/// Arguments of `apply_fix`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ApplyFixArgs {
    /// Issue id (`iss-...`).
    pub issue_id: String,
    /// Must be true: a fix re-runs jobs, files a GitHub issue or opens a pull request (not
    /// needed for a dry run).
    #[serde(default)]
    pub confirm: bool,
    /// Only say what would be done.
    #[serde(default)]
    pub dry_run: bool,
}

/// Arguments of `classify_log`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ClassifyArgs {
    /// A raw GitHub Actions job log (timestamps, ##[group], ANSI codes are fine).
    pub text: String,
}

/// The MCP server over one engine.
#[derive(Clone)]
pub struct FlotillaMcp {
    engine: EngineHandle,
    tool_router: ToolRouter<Self>,
}

fn err(e: EngineError) -> String {
    e.to_string()
}

fn unexpected(r: Reply) -> String {
    format!("internal error: unexpected reply {r:?}")
}

#[tool_router(router = tool_router)]
impl FlotillaMcp {
    /// A server on `engine`; annotations are set from the policy table.
    pub fn new(engine: EngineHandle) -> Self {
        Self {
            engine,
            tool_router: Self::annotated_router(),
        }
    }

    fn annotated_router() -> ToolRouter<Self> {
        let mut tool_router = Self::tool_router();
        for route in tool_router.map.values_mut() {
            if let Some(kind) = tool_kind(&route.attr.name) {
                let d = kind.danger();
                let mut a = ToolAnnotations::default();
                a.read_only_hint = Some(d == Danger::Read);
                a.destructive_hint = Some(d == Danger::Destructive);
                a.idempotent_hint = Some(d == Danger::Read);
                a.open_world_hint = Some(false);
                route.attr.annotations = Some(a);
            }
        }
        tool_router
    }

    /// Every tool with its schemas and annotations, as `tools/list` gives them, sorted by
    /// name. Needs no engine.
    pub fn tool_list() -> Vec<rmcp::model::Tool> {
        Self::annotated_router().list_all()
    }

    async fn run(&self, cmd: Command, confirmed: bool) -> Result<Reply, String> {
        self.engine
            .execute(cmd, confirmed, Source::Mcp)
            .await
            .map_err(err)
    }

    /// Submit a workflow of process tasks to the queue; returns its id once it is stored.
    #[tool(name = "submit_p2p_workflow")]
    async fn submit_p2p_workflow(
        &self,
        Parameters(a): Parameters<SubmitArgs>,
    ) -> Result<Json<Submitted>, String> {
        let spec = WorkflowSpec::from_parts(&a.name, &a.tasks, a.priority, a.tag.as_deref())
            .map_err(|e| format!("invalid workflow: {e}"))?;
        match self.run(Command::SubmitWorkflow(spec), false).await? {
            Reply::Submitted(s) => Ok(Json(s)),
            r => Err(unexpected(r)),
        }
    }

    /// List workflows, newest first, filtered by status and tag.
    #[tool(name = "list_workflows")]
    async fn list_workflows(
        &self,
        Parameters(a): Parameters<ListArgs>,
    ) -> Result<Json<WorkflowList>, String> {
        let status = match a.status.as_deref() {
            None | Some("all") | Some("") => None,
            Some(s) => Some(
                s.parse()
                    .map_err(|e: String| format!("status: {e} or all"))?,
            ),
        };
        let tag = match a.tag.as_deref() {
            None | Some("") => None,
            Some(t) => Some(
                t.parse()
                    .map_err(|e: crate::sched::workflow::SpecError| e.to_string())?,
            ),
        };
        let cmd = Command::ListWorkflows {
            status,
            tag,
            limit: a.limit.unwrap_or(50),
        };
        match self.run(cmd, false).await? {
            Reply::Workflows(w) => Ok(Json(w)),
            r => Err(unexpected(r)),
        }
    }

    /// A workflow's status (queued, running, completed, failed, cancelled), counts and tasks.
    #[tool(name = "get_workflow_status")]
    async fn get_workflow_status(
        &self,
        Parameters(a): Parameters<WorkflowIdArgs>,
    ) -> Result<Json<WorkflowStatusReport>, String> {
        let cmd = Command::GetWorkflowStatus {
            workflow_id: a.workflow_id,
        };
        match self.run(cmd, false).await? {
            Reply::WorkflowStatus(w) => Ok(Json(*w)),
            r => Err(unexpected(r)),
        }
    }

    /// Cancel a workflow: drops its queued tasks and kills its running ones. Destructive:
    /// needs confirm=true.
    #[tool(name = "cancel_workflow")]
    async fn cancel_workflow(
        &self,
        Parameters(a): Parameters<CancelArgs>,
    ) -> Result<Json<CancelReport>, String> {
        let cmd = Command::CancelWorkflow {
            workflow_id: a.workflow_id,
        };
        match self.run(cmd, a.confirm).await? {
            Reply::Cancelled(c) => Ok(Json(c)),
            r => Err(unexpected(r)),
        }
    }

    /// Set a queued task's priority (0..=1000, lower is more urgent).
    #[tool(name = "set_task_priority")]
    async fn set_task_priority(
        &self,
        Parameters(a): Parameters<PriorityArgs>,
    ) -> Result<Json<PriorityReport>, String> {
        let cmd = Command::SetTaskPriority {
            task_id: a.task_id,
            priority: a.priority,
        };
        match self.run(cmd, false).await? {
            Reply::Priority(p) => Ok(Json(p)),
            r => Err(unexpected(r)),
        }
    }

    /// The captured output (tail of stdout and stderr) of a task.
    #[tool(name = "get_task_output")]
    async fn get_task_output(
        &self,
        Parameters(a): Parameters<TaskIdArgs>,
    ) -> Result<Json<TaskOutput>, String> {
        match self
            .run(Command::GetTaskOutput { task_id: a.task_id }, false)
            .await?
        {
            Reply::Output(o) => Ok(Json(o)),
            r => Err(unexpected(r)),
        }
    }

    /// Node, queue and service summary: health, load, capabilities, counts.
    #[tool(name = "get_system_status")]
    async fn get_system_status(&self) -> Result<Json<SystemStatus>, String> {
        match self.run(Command::GetSystemStatus, false).await? {
            Reply::System(s) => Ok(Json(*s)),
            r => Err(unexpected(r)),
        }
    }

    /// Health of services (engine, store, scheduler, mcp, p2p, github, autoscaler, compute,
    /// orchestrator).
    #[tool(name = "get_service_health")]
    async fn get_service_health(
        &self,
        Parameters(a): Parameters<HealthArgs>,
    ) -> Result<Json<ServiceHealthReport>, String> {
        match self
            .run(
                Command::GetServiceHealth {
                    services: a.services,
                },
                false,
            )
            .await?
        {
            Reply::Health(h) => Ok(Json(h)),
            r => Err(unexpected(r)),
        }
    }

    /// The most recent log records, filtered by minimum level and service.
    #[tool(name = "get_recent_logs")]
    async fn get_recent_logs(
        &self,
        Parameters(a): Parameters<RecentLogsArgs>,
    ) -> Result<Json<LogReport>, String> {
        let cmd = Command::GetRecentLogs {
            level: a.level,
            lines: a.lines.unwrap_or(100),
            service: a.service,
        };
        match self.run(cmd, false).await? {
            Reply::Logs(l) => Ok(Json(l)),
            r => Err(unexpected(r)),
        }
    }

    /// Search log records by regex within a time range.
    #[tool(name = "search_logs")]
    async fn search_logs(
        &self,
        Parameters(a): Parameters<SearchLogsArgs>,
    ) -> Result<Json<LogReport>, String> {
        let cmd = Command::SearchLogs {
            query: a.query,
            time_range: a.time_range,
        };
        match self.run(cmd, false).await? {
            Reply::Logs(l) => Ok(Json(l)),
            r => Err(unexpected(r)),
        }
    }

    /// Cloud VMs (Fly Machines) with status, idle time left and cost so far.
    #[tool(name = "list_vms")]
    async fn list_vms(
        &self,
        Parameters(a): Parameters<ListVmsArgs>,
    ) -> Result<Json<VmList>, String> {
        let cmd = Command::ListVms {
            user: a.user,
            include_terminated: a.include_terminated,
        };
        match self.run(cmd, false).await? {
            Reply::Vms(v) => Ok(Json(v)),
            r => Err(unexpected(r)),
        }
    }

    /// Provision a cloud VM for a user on Fly Machines; refused over VM_MAX_PER_USER.
    #[tool(name = "provision_vm")]
    async fn provision_vm(
        &self,
        Parameters(a): Parameters<ProvisionVmArgs>,
    ) -> Result<Json<VmView>, String> {
        let cmd = Command::ProvisionVm {
            user: a.user,
            session: a.session,
            cpu_type: a.cpu_type,
            memory_mb: a.memory_mb,
            region: a.region,
        };
        match self.run(cmd, false).await? {
            Reply::Vm(v) => Ok(Json(*v)),
            r => Err(unexpected(r)),
        }
    }

    /// Terminate a VM (its machine is destroyed and billing ends). Destructive: needs
    /// confirm=true; dry_run=true only says what would happen.
    #[tool(name = "terminate_vm")]
    async fn terminate_vm(
        &self,
        Parameters(a): Parameters<TerminateVmArgs>,
    ) -> Result<Json<TerminateReport>, String> {
        let cmd = Command::TerminateVm {
            vm_id: a.vm_id,
            force: a.force,
            dry_run: a.dry_run,
        };
        match self.run(cmd, a.confirm).await? {
            Reply::Terminated(t) => Ok(Json(*t)),
            r => Err(unexpected(r)),
        }
    }

    /// SSH connection details of a VM (host, port, user, machine, region, Tailscale IP).
    #[tool(name = "get_vm_ssh")]
    async fn get_vm_ssh(&self, Parameters(a): Parameters<VmIdArgs>) -> Result<Json<VmSsh>, String> {
        match self
            .run(Command::GetVmSsh { vm_id: a.vm_id }, false)
            .await?
        {
            Reply::Ssh(s) => Ok(Json(s)),
            r => Err(unexpected(r)),
        }
    }

    /// Record activity on a VM: its idle auto-shutdown moves to now + VM_IDLE_TIMEOUT_MINUTES.
    #[tool(name = "extend_vm_activity")]
    async fn extend_vm_activity(
        &self,
        Parameters(a): Parameters<VmIdArgs>,
    ) -> Result<Json<VmView>, String> {
        match self
            .run(Command::ExtendVmActivity { vm_id: a.vm_id }, false)
            .await?
        {
            Reply::Vm(v) => Ok(Json(*v)),
            r => Err(unexpected(r)),
        }
    }

    /// A user's compute costs over the last N days (running VMs counted up to now).
    #[tool(name = "get_compute_costs")]
    async fn get_compute_costs(
        &self,
        Parameters(a): Parameters<CostsArgs>,
    ) -> Result<Json<ComputeCostsReport>, String> {
        let cmd = Command::GetComputeCosts {
            user: a.user,
            days: a.days.unwrap_or(30),
        };
        match self.run(cmd, false).await? {
            Reply::Costs(c) => Ok(Json(c)),
            r => Err(unexpected(r)),
        }
    }

    /// Repositories of a GitHub user or organization, most recently pushed first (through
    /// the ETag cache).
    #[tool(name = "gh_list_repos")]
    async fn gh_list_repos(
        &self,
        Parameters(a): Parameters<GhListReposArgs>,
    ) -> Result<Json<GhRepoList>, String> {
        let cmd = Command::GhListRepos {
            owner: a.owner,
            kind: a.kind.unwrap_or_else(|| "all".into()),
            limit: a.limit.unwrap_or(50),
        };
        match self.run(cmd, false).await? {
            Reply::GhRepos(r) => Ok(Json(r)),
            r => Err(unexpected(r)),
        }
    }

    /// Workflow runs of a repository, filtered by workflow and status (through the ETag
    /// cache).
    #[tool(name = "gh_workflow_runs")]
    async fn gh_workflow_runs(
        &self,
        Parameters(a): Parameters<GhRunsArgs>,
    ) -> Result<Json<GhRunList>, String> {
        let cmd = Command::GhWorkflowRuns {
            repo: a.repo,
            workflow: a.workflow,
            status: a.status,
            limit: a.limit.unwrap_or(30),
        };
        match self.run(cmd, false).await? {
            Reply::GhRuns(r) => Ok(Json(r)),
            r => Err(unexpected(r)),
        }
    }

    /// GitHub API cache statistics: hit_rate, api_calls_saved, peer_hits, connected_peers,
    /// p2p_enabled, misses, 304s, evictions, rejected (peer entries refused).
    #[tool(name = "gh_cache_stats")]
    async fn gh_cache_stats(&self) -> Result<Json<GhCacheStats>, String> {
        match self.run(Command::GhCacheStats, false).await? {
            Reply::GhCache(c) => Ok(Json(c)),
            r => Err(unexpected(r)),
        }
    }

    /// This node's P2P mesh: peer ID, full listen multiaddrs (with /p2p/), peers with RTT and
    /// last seen, active tasks, health.
    #[tool(name = "get_p2p_network_status")]
    async fn get_p2p_network_status(&self) -> Result<Json<P2pStatus>, String> {
        match self.run(Command::GetP2pNetworkStatus, false).await? {
            Reply::P2p(p) => Ok(Json(*p)),
            r => Err(unexpected(r)),
        }
    }

    /// Hand this node's queued mesh tasks (not yet started) to better peers: strategy `load`
    /// (least loaded), `latency` (lowest ping RTT) or `proximity` (closest labels, then
    /// load). Returns the moves `{task_id, from, to}`; an empty list means already balanced.
    #[tool(name = "rebalance_p2p_tasks")]
    async fn rebalance_p2p_tasks(
        &self,
        Parameters(a): Parameters<RebalanceArgs>,
    ) -> Result<Json<crate::engine::command::Rebalanced>, String> {
        let strategy = a.strategy.as_deref().unwrap_or("load").parse()?;
        match self.run(Command::RebalanceP2p { strategy }, false).await? {
            Reply::Rebalanced(r) => Ok(Json(r)),
            r => Err(unexpected(r)),
        }
    }

    /// Close the connections to a peer (it may reconnect). Destructive: needs confirm=true.
    #[tool(name = "disconnect_peer")]
    async fn disconnect_peer(
        &self,
        Parameters(a): Parameters<PeerArgs>,
    ) -> Result<Json<crate::engine::command::Done>, String> {
        let cmd = Command::DisconnectPeer { peer_id: a.peer_id };
        match self.run(cmd, a.confirm).await? {
            Reply::Done(d) => Ok(Json(d)),
            r => Err(unexpected(r)),
        }
    }

    /// Ban a peer: disconnect it and refuse its connections until unban_peer. Its tasks go to
    /// other peers after the heartbeat timeout. Destructive: needs confirm=true.
    #[tool(name = "ban_peer")]
    async fn ban_peer(
        &self,
        Parameters(a): Parameters<PeerArgs>,
    ) -> Result<Json<crate::engine::command::Done>, String> {
        let cmd = Command::BanPeer { peer_id: a.peer_id };
        match self.run(cmd, a.confirm).await? {
            Reply::Done(d) => Ok(Json(d)),
            r => Err(unexpected(r)),
        }
    }

    /// Accept a banned peer again.
    #[tool(name = "unban_peer")]
    async fn unban_peer(
        &self,
        Parameters(a): Parameters<PeerArgs>,
    ) -> Result<Json<crate::engine::command::Done>, String> {
        let cmd = Command::UnbanPeer { peer_id: a.peer_id };
        match self.run(cmd, a.confirm).await? {
            Reply::Done(d) => Ok(Json(d)),
            r => Err(unexpected(r)),
        }
    }

    /// Orchestrator issues found in failed workflow runs (severity, type, repo, workflow, run,
    /// status).
    #[tool(name = "list_orchestrator_issues")]
    async fn list_orchestrator_issues(
        &self,
        Parameters(a): Parameters<ListIssuesArgs>,
    ) -> Result<Json<IssueList>, String> {
        let cmd = Command::ListOrchestratorIssues {
            status: a.status,
            repo: a.repo,
        };
        match self.run(cmd, false).await? {
            Reply::Issues(i) => Ok(Json(i)),
            r => Err(unexpected(r)),
        }
    }

    /// An issue's evidence: the matched log lines, their line numbers, and the lines around.
    #[tool(name = "get_issue_evidence")]
    async fn get_issue_evidence(
        &self,
        Parameters(a): Parameters<IssueIdArgs>,
    ) -> Result<Json<IssueEvidence>, String> {
        match self
            .run(
                Command::GetIssueEvidence {
                    issue_id: a.issue_id,
                },
                false,
            )
            .await?
        {
            Reply::Evidence(e) => Ok(Json(*e)),
            r => Err(unexpected(r)),
        }
    }

    /// Apply an issue's fix: re-run failed jobs for flaky classes (within --retries), open or
    /// update the GitHub issue for its class, or, with --allow-push, open a pull request from a
    /// new flotilla/ branch that adds a missing pip dependency or a formatter's output (never a
    /// default branch). Destructive: needs confirm=true; dry_run plans only.
    #[tool(name = "apply_fix")]
    async fn apply_fix(
        &self,
        Parameters(a): Parameters<ApplyFixArgs>,
    ) -> Result<Json<FixReport>, String> {
        let cmd = Command::ApplyFix {
            issue_id: a.issue_id,
            dry_run: a.dry_run,
        };
        match self.run(cmd, a.confirm).await? {
            Reply::Fix(f) => Ok(Json(f)),
            r => Err(unexpected(r)),
        }
    }

    /// Mark an orchestrator issue ignored.
    #[tool(name = "ignore_issue")]
    async fn ignore_issue(
        &self,
        Parameters(a): Parameters<IssueIdArgs>,
    ) -> Result<Json<IssueView>, String> {
        match self
            .run(
                Command::IgnoreIssue {
                    issue_id: a.issue_id,
                },
                false,
            )
            .await?
        {
            Reply::Issue(i) => Ok(Json(*i)),
            r => Err(unexpected(r)),
        }
    }

    /// Classify a failed job's log: failure class, severity, evidence line and fix, primary
    /// verdict first (works offline).
    #[tool(name = "classify_log")]
    async fn classify_log(
        &self,
        Parameters(a): Parameters<ClassifyArgs>,
    ) -> Result<Json<Classified>, String> {
        match self
            .run(Command::ClassifyLog { text: a.text }, false)
            .await?
        {
            Reply::Classified(c) => Ok(Json(c)),
            r => Err(unexpected(r)),
        }
    }

    /// Self-hosted runners the autoscaler manages: id, name, scope, labels, provider, state,
    /// job, started_at.
    #[tool(name = "list_runners")]
    async fn list_runners(
        &self,
        Parameters(a): Parameters<ListRunnersArgs>,
    ) -> Result<Json<RunnerList>, String> {
        match self
            .run(
                Command::ListRunners {
                    include_gone: a.include_gone,
                },
                false,
            )
            .await?
        {
            Reply::Runners(r) => Ok(Json(r)),
            r => Err(unexpected(r)),
        }
    }

    /// Start ephemeral self-hosted runners for a repository now (one JIT config each),
    /// within the autoscaler's max runners.
    #[tool(name = "gh_provision_runner")]
    async fn gh_provision_runner(
        &self,
        Parameters(a): Parameters<ProvisionRunnerArgs>,
    ) -> Result<Json<RunnerList>, String> {
        let cmd = Command::ProvisionRunner {
            repo: a.repo,
            labels: a.labels,
            count: a.count,
        };
        match self.run(cmd, false).await? {
            Reply::Runners(r) => Ok(Json(r)),
            r => Err(unexpected(r)),
        }
    }

    /// Remove a runner: stop its instance and unregister it at GitHub. A busy runner is
    /// refused (drain it). Destructive: needs confirm=true; dry_run=true only says what would
    /// happen.
    #[tool(name = "remove_runner")]
    async fn remove_runner(
        &self,
        Parameters(a): Parameters<RemoveRunnerArgs>,
    ) -> Result<Json<RunnerRemoved>, String> {
        let cmd = Command::RemoveRunner {
            runner_id: a.id,
            dry_run: a.dry_run,
        };
        match self.run(cmd, a.confirm).await? {
            Reply::RunnerRemoved(r) => Ok(Json(r)),
            r => Err(unexpected(r)),
        }
    }

    /// Drain a runner: it gets no new work and is retired once idle.
    #[tool(name = "drain_runner")]
    async fn drain_runner(
        &self,
        Parameters(a): Parameters<RunnerIdArgs>,
    ) -> Result<Json<Done>, String> {
        match self
            .run(Command::DrainRunner { runner_id: a.id }, false)
            .await?
        {
            Reply::Done(d) => Ok(Json(d)),
            r => Err(unexpected(r)),
        }
    }

    /// Pause (no new runners; clean-up goes on) or resume the autoscaler.
    #[tool(name = "pause_autoscaler")]
    async fn pause_autoscaler(
        &self,
        Parameters(a): Parameters<PauseArgs>,
    ) -> Result<Json<Done>, String> {
        match self
            .run(Command::PauseAutoscaler { paused: a.paused }, false)
            .await?
        {
            Reply::Done(d) => Ok(Json(d)),
            r => Err(unexpected(r)),
        }
    }

    /// Check the queues now instead of waiting for the next interval.
    #[tool(name = "check_autoscaler")]
    async fn check_autoscaler(&self) -> Result<Json<Done>, String> {
        match self.run(Command::CheckAutoscaler, false).await? {
            Reply::Done(d) => Ok(Json(d)),
            r => Err(unexpected(r)),
        }
    }

    /// The autoscaler: enabled, owner, checks, pending jobs, runners by state, last check,
    /// queue-wait and startup medians (s), orphans removed, API calls of the last check.
    #[tool(name = "get_autoscaler_status")]
    async fn get_autoscaler_status(&self) -> Result<Json<AutoscalerStatus>, String> {
        match self.run(Command::GetAutoscalerStatus, false).await? {
            Reply::Autoscaler(s) => Ok(Json(*s)),
            r => Err(unexpected(r)),
        }
    }

    /// Detected hardware (CPU, memory, accelerators) and this node's capability labels.
    #[tool(name = "detect_hardware")]
    async fn detect_hardware(&self) -> Result<Json<HardwareReport>, String> {
        match self.run(Command::DetectHardware, false).await? {
            Reply::Hardware(h) => Ok(Json(h)),
            r => Err(unexpected(r)),
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for FlotillaMcp {
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::new(ServerCapabilities::builder().enable_tools().build());
        info.server_info = Implementation::new("flotilla", env!("CARGO_PKG_VERSION"));
        info.instructions = Some(
            "Flotilla: control center for self-hosted CI fleets. Submit process workflows with \
             submit_p2p_workflow, follow them with get_workflow_status, read the node with \
             get_system_status. Destructive tools need confirm=true."
                .into(),
        );
        info
    }
}

/// The tool reference in Markdown (docs/mcp-tools.md is this text; a test keeps them equal).
pub fn tools_markdown() -> String {
    let mut out = String::from(
        "# MCP tools\n\n\
         Generated from the server's own tool list (`cargo test --test docs` checks this file;\n\
         `UPDATE_DOCS=1 cargo test --test docs` rewrites it). Every tool returns structured\n\
         content matching its output schema. Danger comes from the engine's policy table:\n\
         `read` tools only look (`readOnlyHint`), `write` tools add or change state, and\n\
         `destructive` tools (`destructiveHint`) need `confirm: true` and are refused, like every\n\
         `write` tool, under `--read-only`.\n\n\
         | tool | danger | what it does |\n|---|---|---|\n",
    );
    let tools = FlotillaMcp::tool_list();
    let danger = |name: &str| match tool_kind(name).map(|k| k.danger()) {
        Some(Danger::Read) => "read",
        Some(Danger::Write) => "write",
        Some(Danger::Destructive) => "destructive",
        None => "?",
    };
    for t in &tools {
        let desc = t.description.as_deref().unwrap_or("").replace('\n', " ");
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            t.name,
            danger(&t.name),
            desc
        ));
    }
    for t in &tools {
        out.push_str(&format!("\n## `{}`\n\n", t.name));
        out.push_str(t.description.as_deref().unwrap_or(""));
        out.push_str("\n\n");
        let schema = serde_json::Value::Object((*t.input_schema).clone());
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        match schema["properties"].as_object() {
            Some(props) if !props.is_empty() => {
                out.push_str("| argument | type | required | description |\n|---|---|---|---|\n");
                for (name, p) in props {
                    let ty = p["type"]
                        .as_str()
                        .map(str::to_string)
                        .or_else(|| {
                            p["type"].as_array().map(|a| {
                                a.iter()
                                    .filter_map(|v| v.as_str())
                                    .collect::<Vec<_>>()
                                    .join(" or ")
                            })
                        })
                        .unwrap_or_else(|| "object".into());
                    let d = p["description"].as_str().unwrap_or("").replace('\n', " ");
                    out.push_str(&format!(
                        "| `{name}` | {ty} | {} | {d} |\n",
                        if required.contains(&name.as_str()) {
                            "yes"
                        } else {
                            "no"
                        }
                    ));
                }
            }
            _ => out.push_str("No arguments.\n"),
        }
        if let Some(os) = &t.output_schema {
            let props: Vec<String> = os
                .get("properties")
                .and_then(|p| p.as_object())
                .map(|p| p.keys().map(|k| format!("`{k}`")).collect())
                .unwrap_or_default();
            out.push_str(&format!("\nReturns: {}.\n", props.join(", ")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_table_covers_every_command_kind_once() {
        for k in CommandKind::ALL {
            assert_eq!(
                TOOL_TABLE.iter().filter(|(_, tk)| *tk == k).count(),
                1,
                "{k:?}"
            );
        }
    }
}
