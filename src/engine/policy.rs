//! The policy gate: one table that says how dangerous each command is, enforced in the
//! engine for both faces.
//!
//! - [`Danger::Read`] commands only look.
//! - [`Danger::Write`] commands change state additively (submit, reprioritise).
//! - [`Danger::Destructive`] commands stop or delete something (cancel); they need an explicit
//!   confirmation: the TUI's confirm dialog, MCP's `confirm: true`.
//!
//! `--read-only` refuses everything but [`Danger::Read`] (as k9s' read-only mode removes every
//! mutating action). MCP tool annotations (`readOnlyHint`, `destructiveHint`) and the TUI's
//! hints, help and confirm dialogs are all derived from [`CommandKind::danger`].

use serde::Serialize;

/// How dangerous a command is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Danger {
    /// Reads only.
    Read,
    /// Changes state, nothing is lost.
    Write,
    /// Stops, cancels or deletes something; needs confirmation.
    Destructive,
}

/// Every kind of engine command, without its arguments: the policy table's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandKind {
    /// Submit a workflow.
    SubmitWorkflow,
    /// Cancel a workflow (kills its running tasks).
    CancelWorkflow,
    /// Change a waiting task's priority.
    SetTaskPriority,
    /// List workflows.
    ListWorkflows,
    /// One workflow's status and tasks.
    GetWorkflowStatus,
    /// A task's captured output.
    GetTaskOutput,
    /// Node, queue and services summary.
    GetSystemStatus,
    /// Per-service health.
    GetServiceHealth,
    /// Recent log records.
    GetRecentLogs,
    /// Search log records.
    SearchLogs,
    /// Hardware and capability labels.
    DetectHardware,
    /// List VMs.
    ListVms,
    /// Create a VM (costs money; not destructive).
    ProvisionVm,
    /// Destroy a VM.
    TerminateVm,
    /// SSH details of a VM.
    GetVmSsh,
    /// Push a VM's idle shutdown back.
    ExtendVmActivity,
    /// A user's compute costs.
    GetComputeCosts,
    /// Repositories of a GitHub owner.
    GhListRepos,
    /// Workflow runs of a repository.
    GhWorkflowRuns,
    /// GitHub API cache statistics.
    GhCacheStats,
    /// This node's mesh: peer ID, addresses, peers.
    GetP2pNetworkStatus,
    /// Move queued mesh tasks to better peers.
    RebalanceP2p,
    /// Disconnect a peer.
    DisconnectPeer,
    /// Ban a peer.
    BanPeer,
    /// Unban a peer.
    UnbanPeer,
    /// Orchestrator issues.
    ListOrchestratorIssues,
    /// One issue's evidence in context.
    GetIssueEvidence,
    /// Apply an issue's fix (re-run jobs, file a GitHub issue).
    ApplyFix,
    /// Mark an issue ignored.
    IgnoreIssue,
    /// Classify a log text.
    ClassifyLog,
    /// List autoscaler runners.
    ListRunners,
    /// Start runners.
    ProvisionRunner,
    /// Remove a runner.
    RemoveRunner,
    /// Drain a runner.
    DrainRunner,
    /// Pause or resume the autoscaler.
    PauseAutoscaler,
    /// Run a check now.
    CheckAutoscaler,
    /// Autoscaler figures.
    GetAutoscalerStatus,
}

impl CommandKind {
    /// Every kind, for tables and tests.
    pub const ALL: [CommandKind; 37] = [
        CommandKind::SubmitWorkflow,
        CommandKind::CancelWorkflow,
        CommandKind::SetTaskPriority,
        CommandKind::ListWorkflows,
        CommandKind::GetWorkflowStatus,
        CommandKind::GetTaskOutput,
        CommandKind::GetSystemStatus,
        CommandKind::GetServiceHealth,
        CommandKind::GetRecentLogs,
        CommandKind::SearchLogs,
        CommandKind::DetectHardware,
        CommandKind::ListVms,
        CommandKind::ProvisionVm,
        CommandKind::TerminateVm,
        CommandKind::GetVmSsh,
        CommandKind::ExtendVmActivity,
        CommandKind::GetComputeCosts,
        CommandKind::GhListRepos,
        CommandKind::GhWorkflowRuns,
        CommandKind::GhCacheStats,
        CommandKind::GetP2pNetworkStatus,
        CommandKind::RebalanceP2p,
        CommandKind::DisconnectPeer,
        CommandKind::BanPeer,
        CommandKind::UnbanPeer,
        CommandKind::ListOrchestratorIssues,
        CommandKind::GetIssueEvidence,
        CommandKind::ApplyFix,
        CommandKind::IgnoreIssue,
        CommandKind::ClassifyLog,
        CommandKind::ListRunners,
        CommandKind::ProvisionRunner,
        CommandKind::RemoveRunner,
        CommandKind::DrainRunner,
        CommandKind::PauseAutoscaler,
        CommandKind::CheckAutoscaler,
        CommandKind::GetAutoscalerStatus,
    ];

    /// The policy table.
    pub fn danger(self) -> Danger {
        use CommandKind::*;
        match self {
            SubmitWorkflow | SetTaskPriority | ProvisionVm | ExtendVmActivity | IgnoreIssue
            | ProvisionRunner | DrainRunner | PauseAutoscaler | CheckAutoscaler | RebalanceP2p
            | UnbanPeer => Danger::Write,
            CancelWorkflow | TerminateVm | ApplyFix | RemoveRunner | DisconnectPeer | BanPeer => {
                Danger::Destructive
            }
            ListRunners | GetAutoscalerStatus => Danger::Read,
            ListOrchestratorIssues | GetIssueEvidence | ClassifyLog => Danger::Read,
            ListWorkflows | GetWorkflowStatus | GetTaskOutput | GetSystemStatus
            | GetServiceHealth | GetRecentLogs | SearchLogs | DetectHardware | ListVms
            | GetVmSsh | GetComputeCosts | GhListRepos | GhWorkflowRuns | GhCacheStats
            | GetP2pNetworkStatus => Danger::Read,
        }
    }

    /// Stable snake_case name, used in errors and logs.
    pub fn name(self) -> &'static str {
        use CommandKind::*;
        match self {
            SubmitWorkflow => "submit_workflow",
            CancelWorkflow => "cancel_workflow",
            SetTaskPriority => "set_task_priority",
            ListWorkflows => "list_workflows",
            GetWorkflowStatus => "get_workflow_status",
            GetTaskOutput => "get_task_output",
            GetSystemStatus => "get_system_status",
            GetServiceHealth => "get_service_health",
            GetRecentLogs => "get_recent_logs",
            SearchLogs => "search_logs",
            DetectHardware => "detect_hardware",
            ListVms => "list_vms",
            ProvisionVm => "provision_vm",
            TerminateVm => "terminate_vm",
            GetVmSsh => "get_vm_ssh",
            ExtendVmActivity => "extend_vm_activity",
            GetComputeCosts => "get_compute_costs",
            GhListRepos => "gh_list_repos",
            GhWorkflowRuns => "gh_workflow_runs",
            GhCacheStats => "gh_cache_stats",
            GetP2pNetworkStatus => "get_p2p_network_status",
            RebalanceP2p => "rebalance_p2p_tasks",
            DisconnectPeer => "disconnect_peer",
            BanPeer => "ban_peer",
            UnbanPeer => "unban_peer",
            ListOrchestratorIssues => "list_orchestrator_issues",
            GetIssueEvidence => "get_issue_evidence",
            ApplyFix => "apply_fix",
            IgnoreIssue => "ignore_issue",
            ClassifyLog => "classify_log",
            ListRunners => "list_runners",
            ProvisionRunner => "provision_runner",
            RemoveRunner => "remove_runner",
            DrainRunner => "drain_runner",
            PauseAutoscaler => "pause_autoscaler",
            CheckAutoscaler => "check_autoscaler",
            GetAutoscalerStatus => "get_autoscaler_status",
        }
    }
}

/// Refusals of the policy gate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Read-only mode refuses every state-changing command.
    #[error(
        "{command} refused: flotilla runs read-only (--read-only); restart without it to change state"
    )]
    ReadOnly {
        /// Command name.
        command: &'static str,
    },
    /// A destructive command arrived without confirmation.
    #[error("{command} is destructive and needs confirmation: {what}; repeat with confirm=true")]
    NeedsConfirmation {
        /// Command name.
        command: &'static str,
        /// What would happen.
        what: String,
    },
}

/// The gate's settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    /// Refuse all but read commands.
    pub read_only: bool,
}

impl Policy {
    /// Whether `kind` would be allowed at all in this mode (for hiding TUI actions).
    pub fn permits(&self, kind: CommandKind) -> bool {
        !self.read_only || kind.danger() == Danger::Read
    }

    /// Check one command. `what` describes the effect for the confirmation message.
    pub fn check(&self, kind: CommandKind, confirmed: bool, what: &str) -> Result<(), PolicyError> {
        if !self.permits(kind) {
            return Err(PolicyError::ReadOnly {
                command: kind.name(),
            });
        }
        if kind.danger() == Danger::Destructive && !confirmed {
            return Err(PolicyError::NeedsConfirmation {
                command: kind.name(),
                what: what.to_string(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_refuses_every_non_read_command() {
        let p = Policy { read_only: true };
        for k in CommandKind::ALL {
            let r = p.check(k, true, "x");
            assert_eq!(r.is_ok(), k.danger() == Danger::Read, "{k:?}");
        }
    }

    #[test]
    fn destructive_needs_confirmation() {
        let p = Policy::default();
        for k in CommandKind::ALL {
            let r = p.check(k, false, "cancel wf-1");
            assert_eq!(r.is_err(), k.danger() == Danger::Destructive, "{k:?}");
            assert!(p.check(k, true, "").is_ok());
        }
        let e = p
            .check(
                CommandKind::CancelWorkflow,
                false,
                "cancel wf-1 (2 running)",
            )
            .unwrap_err();
        assert!(e.to_string().contains("confirm=true"));
    }
}
