//! VM manager: user VMs on Fly Machines with limits, idle shutdown, cost tracking and
//! crash-safe reconciliation (the seed's `VMManager` and `VMScheduler`).
//!
//! # Write-ahead provisioning
//!
//! [`VmManager::provision_vm`] writes a `provisioning` row *before* calling the API, with a
//! client-chosen machine name (`flotilla-<user>-<ulid>`) and metadata
//! `flotilla_vm_id=<row id>` on the machine, so that whatever a crash leaves behind can be
//! matched up later. Then: create (1 request) → record the machine → wait for `started`
//! (1 request) → `running` with a usage row opened. Stop is stop + wait (2 requests);
//! terminate is one delete (force, or of a stopped machine), or stop + wait + delete for a
//! running VM without force. A VM's full lifecycle (provision, stop, terminate) is 5 requests.
//!
//! # Reconciliation
//!
//! [`VmManager::reconcile`] (at start-up and on every scheduler pass) compares the app's
//! machines with the store and repairs half-done operations in both directions. The decision
//! is the pure function [`plan_reconcile`]; VMs with an operation in flight in this process are
//! skipped. A machine is *ours* if it carries `flotilla_vm_id` metadata or a row claims it by
//! machine id or name; other machines in the app are never touched. Its *claimant* is the row
//! with its machine id, else the row named by its tag, else the row with its name.
//!
//! | machine (not destroyed) | claimant row | action |
//! |---|---|---|
//! | tagged ours | none | destroy (orphan: the row was never written or was lost) |
//! | any | terminated / error | destroy (we already gave up on it) |
//! | any | live, `machine_id` = another machine | destroy (duplicate from a retried create) |
//! | any | live, no `machine_id` | adopt (crash after create, before the store write); if several machines claim one row, the one with the row's name (else the smallest id) is adopted and the rest destroyed |
//! | any | `provisioning`, `machine_id` = it | adopt (crash before the `running` write) |
//! | stopped/suspended | `running`, `machine_id` = it | mark stopped, close usage |
//! | started/starting | `stopped`, `machine_id` = it | mark running, open usage |
//!
//! | live row | machines | action |
//! |---|---|---|
//! | `machine_id` set | that machine absent or destroyed | `running`/`stopped` → terminated, `provisioning` → error; usage closed at now (crash after delete, before the store write; or destroyed behind our back) |
//! | no `machine_id`, `provisioning` | no machine claims it | error: the create never happened or failed |
//!
//! Adopted running VMs are billed from `provisioned_at` (the machine was created right after
//! the row was written; over-charging by the creation latency beats missing the crash window);
//! usage of a vanished machine is closed at the reconcile time (the latest it can have run).
//! Applying a plan and planning again yields no action (property-tested).
//!
//! # Idle shutdown
//!
//! Every provision and [`VmManager::update_vm_activity`] sets `auto_shutdown_at = now +
//! VM_IDLE_TIMEOUT_MINUTES`; each scheduler pass terminates (force) running or stopped VMs whose
//! deadline has passed ([`is_idle_expired`]). With a pass every `interval`, a VM is terminated
//! within `[0, interval)` after its deadline ([`idle_termination_delay`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::clock::{Millis, SharedClock};
use crate::compute::costs::{self, Centicents, CostError, CpuType, Pricing};
use crate::compute::fly::{
    self, CreateMachineRequest, Env, FlyApi, FlyError, Guest, Machine, MachineConfig, MachineState,
    Restart, WaitState,
};
use crate::compute::store::{
    ComputeStore, ComputeStoreError, InsertOutcome, NewVm, UserVm, VmStatus,
};

/// Machine metadata key holding the Flotilla VM id.
pub const TAG_VM_ID: &str = "flotilla_vm_id";
/// Machine metadata key holding the owning user.
pub const TAG_USER: &str = "flotilla_user";
/// Machine env var carrying the Tailscale auth key (read by the VM's setup script).
pub const ENV_TAILSCALE_AUTH_KEY: &str = "TAILSCALE_AUTH_KEY";
/// Machine env var carrying the Flotilla VM id.
pub const ENV_VM_ID: &str = "FLOTILLA_VM_ID";

// ---------------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------------

/// A bad setting. The value of a secret is never included.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}={value:?}: {reason}")]
pub struct SettingsError {
    /// Variable name.
    pub var: &'static str,
    /// Value as given.
    pub value: String,
    /// What is wrong.
    pub reason: String,
}

/// VM limits and defaults (seed's environment variables). `Debug` redacts the Tailscale key.
#[derive(Debug, Clone)]
pub struct ComputeSettings {
    /// `VM_MAX_PER_USER` (default 3): live VMs per user.
    pub max_per_user: u32,
    /// `VM_IDLE_TIMEOUT_MINUTES` (default 30), in ms.
    pub idle_timeout_ms: Millis,
    /// `VM_DEFAULT_REGION` (default `iad`).
    pub default_region: String,
    /// `VM_DEFAULT_CPU_TYPE` (default `shared-cpu-1x`).
    pub default_cpu_type: CpuType,
    /// `VM_DEFAULT_MEMORY_MB` (default 1024).
    pub default_memory_mb: u32,
    /// `VM_IMAGE` (default `ubuntu:24.04`): the image to boot; it should run sshd and the
    /// Tailscale setup script.
    pub image: String,
    /// `TAILSCALE_AUTH_KEY`: put in the machine's env at create time; never shown or stored.
    pub tailscale_auth_key: Option<SecretString>,
    /// How long to wait for a machine to reach a state (at most 60 s, Fly's limit).
    pub wait_timeout: Duration,
    /// SSH user on the VM.
    pub ssh_username: String,
    /// SSH port on the VM.
    pub ssh_port: u16,
}

impl Default for ComputeSettings {
    fn default() -> Self {
        ComputeSettings {
            max_per_user: 3,
            idle_timeout_ms: 30 * 60_000,
            default_region: "iad".into(),
            default_cpu_type: CpuType {
                kind: costs::CpuKind::Shared,
                cpus: 1,
            },
            default_memory_mb: 1024,
            image: "ubuntu:24.04".into(),
            tailscale_auth_key: None,
            wait_timeout: fly::MAX_WAIT,
            ssh_username: "root".into(),
            ssh_port: 22,
        }
    }
}

/// Check a Fly region code: three lowercase ASCII letters (`iad`, `ord`, ...).
pub fn valid_region(r: &str) -> bool {
    r.len() == 3 && r.bytes().all(|b| b.is_ascii_lowercase())
}

impl ComputeSettings {
    /// Read the seed's variables through `get` (e.g. `|k| std::env::var(k).ok()`); unset or
    /// empty variables take the defaults. Errors name the variable and the expected form.
    pub fn from_env(
        get: impl Fn(&str) -> Option<String>,
    ) -> std::result::Result<Self, SettingsError> {
        let mut s = ComputeSettings::default();
        let val = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let err = |var: &'static str, value: &str, reason: &str| SettingsError {
            var,
            value: value.to_string(),
            reason: reason.to_string(),
        };
        if let Some(v) = val("VM_MAX_PER_USER") {
            s.max_per_user = v
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| err("VM_MAX_PER_USER", &v, "expected an integer from 1 to 1000"))?;
        }
        if let Some(v) = val("VM_IDLE_TIMEOUT_MINUTES") {
            let m = v
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=10_080).contains(n))
                .ok_or_else(|| {
                    err(
                        "VM_IDLE_TIMEOUT_MINUTES",
                        &v,
                        "expected whole minutes from 1 to 10080 (a week)",
                    )
                })?;
            s.idle_timeout_ms = m * 60_000;
        }
        if let Some(v) = val("VM_DEFAULT_REGION") {
            if !valid_region(&v) {
                return Err(err(
                    "VM_DEFAULT_REGION",
                    &v,
                    "expected a Fly region code: three lowercase letters, e.g. iad",
                ));
            }
            s.default_region = v;
        }
        if let Some(v) = val("VM_DEFAULT_CPU_TYPE") {
            s.default_cpu_type = v
                .parse()
                .map_err(|e: CostError| err("VM_DEFAULT_CPU_TYPE", &v, &e.to_string()))?;
        }
        if let Some(v) = val("VM_DEFAULT_MEMORY_MB") {
            s.default_memory_mb = v
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0 && n.is_multiple_of(256))
                .ok_or_else(|| {
                    err(
                        "VM_DEFAULT_MEMORY_MB",
                        &v,
                        "expected a positive multiple of 256, e.g. 1024",
                    )
                })?;
        }
        if let Some(v) = val("VM_IMAGE") {
            if v.chars().any(char::is_whitespace) {
                return Err(err("VM_IMAGE", &v, "an image reference has no spaces"));
            }
            s.image = v;
        }
        if let Some(v) = val(ENV_TAILSCALE_AUTH_KEY) {
            s.tailscale_auth_key = Some(SecretString::from(v));
        }
        Ok(s)
    }

    /// Check the defaults against a pricing table (valid, priced size).
    pub fn validate(&self, pricing: &Pricing) -> std::result::Result<(), SettingsError> {
        pricing
            .rate(self.default_cpu_type, self.default_memory_mb)
            .map(drop)
            .map_err(|e| SettingsError {
                var: "VM_DEFAULT_MEMORY_MB",
                value: self.default_memory_mb.to_string(),
                reason: e.to_string(),
            })
    }
}

// ---------------------------------------------------------------------------------------------
// Errors and results
// ---------------------------------------------------------------------------------------------

/// VM manager errors.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// The user is at `VM_MAX_PER_USER`.
    #[error("user {user} has {active} of {max} VMs (VM_MAX_PER_USER)")]
    LimitReached {
        /// User.
        user: String,
        /// Live VMs.
        active: u32,
        /// The limit.
        max: u32,
    },
    /// No such VM.
    #[error("no VM {0}")]
    NotFound(String),
    /// The VM's status does not allow the operation.
    #[error("VM {vm_id} is {status}: cannot {action}")]
    InvalidState {
        /// VM.
        vm_id: String,
        /// Its status.
        status: VmStatus,
        /// What was asked.
        action: &'static str,
    },
    /// Another operation on the VM is in flight in this process.
    #[error("VM {0} is busy with another operation; retry shortly")]
    Busy(String),
    /// The machine no longer exists; the VM has been marked terminated.
    #[error(
        "VM {vm_id}: machine {machine_id} no longer exists on Fly; the VM is marked terminated"
    )]
    MachineGone {
        /// VM.
        vm_id: String,
        /// Machine.
        machine_id: String,
    },
    /// A bad argument (user id, region, size).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Size not priced or not valid.
    #[error(transparent)]
    Pricing(#[from] CostError),
    /// Machines API failure.
    #[error(transparent)]
    Fly(#[from] FlyError),
    /// Store failure.
    #[error(transparent)]
    Store(#[from] ComputeStoreError),
    /// The store mutex was poisoned by a panic.
    #[error("the compute store lock is poisoned (a thread panicked while holding it)")]
    Poisoned,
}

/// Result alias for the VM manager.
pub type Result<T> = std::result::Result<T, VmError>;

/// SSH connection details for a VM (seed: `GET /v1/compute/machines/{vm_id}/ssh`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SshCredentials {
    /// The machine's private 6PN address (reachable over Fly WireGuard), or
    /// `<machine_id>.vm.<app>.internal` if Fly reported none.
    pub hostname: String,
    /// SSH port.
    pub port: u16,
    /// SSH user.
    pub username: String,
    /// Fly machine id.
    pub machine_id: String,
    /// Fly region.
    pub region: String,
    /// Tailscale address, once the VM has reported one.
    pub tailscale_ip: Option<String>,
}

/// A user's compute costs over a period (seed: `GET /v1/compute/costs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComputeCosts {
    /// User.
    pub user_id: String,
    /// Days covered.
    pub period_days: u32,
    /// Period start, unix ms.
    pub from: Millis,
    /// Period end (now), unix ms.
    pub to: Millis,
    /// Total, centicents: usage clipped to the period, running VMs counted up to now.
    pub total_centicents: Centicents,
    /// Usage rows overlapping the period.
    pub usage_count: u32,
    /// Of which still running.
    pub running_count: u32,
}

/// A VM with the machine state Fly reported just now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VmStatusReport {
    /// The (refreshed) row.
    pub vm: UserVm,
    /// Fly's state, if the machine could be read.
    pub machine_state: Option<String>,
    /// Why Fly could not be read (the row is then as stored).
    pub fly_error: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Pure decisions
// ---------------------------------------------------------------------------------------------

/// Whether the idle sweep should terminate `vm` at `now`: running or stopped, with
/// `auto_shutdown_at <= now`.
pub fn is_idle_expired(vm: &UserVm, now: Millis) -> bool {
    matches!(vm.status, VmStatus::Running | VmStatus::Stopped)
        && vm.auto_shutdown_at.is_some_and(|d| now >= d)
}

/// The first scheduler pass at or after `deadline`, for passes at `first_pass + k * interval_ms`
/// (k >= 0, `interval_ms > 0`).
pub fn first_pass_at_or_after(deadline: Millis, first_pass: Millis, interval_ms: Millis) -> Millis {
    if deadline <= first_pass {
        return first_pass;
    }
    let k = (deadline - first_pass + interval_ms - 1).div_euclid(interval_ms);
    first_pass + k * interval_ms
}

/// How long after its idle deadline a VM is terminated by passes every `interval_ms` starting
/// at `first_pass` (<= deadline): always in `[0, interval_ms)`.
pub fn idle_termination_delay(deadline: Millis, first_pass: Millis, interval_ms: Millis) -> Millis {
    first_pass_at_or_after(deadline, first_pass, interval_ms) - deadline
}

/// Machine name for a VM: `flotilla-<user>-<ulid>`, the user part lowercased, reduced to
/// `[a-z0-9-]` and cut to 20 characters.
pub fn machine_name(user_id: &str, ulid: &str) -> String {
    let mut u: String = user_id
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() { c } else { '-' }
        })
        .take(20)
        .collect();
    u = u.trim_matches('-').to_string();
    if u.is_empty() {
        u.push('u');
    }
    format!("flotilla-{u}-{}", ulid.to_ascii_lowercase())
}

/// Why reconcile destroys a machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DestroyReason {
    /// Tagged ours, but no row claims it.
    Orphan,
    /// Its row is terminated or failed.
    Finished,
    /// Its row already owns another machine.
    Duplicate,
}

/// One repair step (see the decision table in the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ReconcileAction {
    /// Destroy (force) a machine.
    Destroy {
        /// Machine.
        machine_id: String,
        /// Why.
        reason: DestroyReason,
    },
    /// Attach a machine to a provisioning row; `running` from the machine's state.
    Adopt {
        /// VM.
        vm_id: String,
        /// Machine.
        machine_id: String,
        /// Whether the machine is started (else stopped).
        running: bool,
    },
    /// The row says stopped, the machine runs: mark running, open usage.
    MarkRunning {
        /// VM.
        vm_id: String,
    },
    /// The row says running, the machine is stopped: mark stopped, close usage.
    MarkStopped {
        /// VM.
        vm_id: String,
    },
    /// The row's machine is gone: terminated (or error if it was provisioning), usage closed.
    MarkGone {
        /// VM.
        vm_id: String,
        /// The vanished machine.
        machine_id: String,
    },
    /// A provisioning row that no machine claims: error.
    MarkFailed {
        /// VM.
        vm_id: String,
    },
}

/// Plan repairs from the store rows (live rows plus any row a machine points to) and the app's
/// machines, skipping VMs in `busy`. Pure; see the decision tables in the module docs.
pub fn plan_reconcile(
    rows: &[UserVm],
    machines: &[Machine],
    busy: &HashSet<String>,
) -> Vec<ReconcileAction> {
    let mut live: Vec<&Machine> = machines.iter().filter(|m| !m.state.is_gone()).collect();
    live.sort_by(|a, b| a.id.cmp(&b.id));
    live.dedup_by(|a, b| a.id == b.id);
    let live_ids: HashSet<&str> = live.iter().map(|m| m.id.as_str()).collect();
    let by_id: HashMap<&str, &UserVm> = rows.iter().map(|r| (r.id.as_str(), r)).collect();
    let by_name: HashMap<&str, &UserVm> = rows.iter().map(|r| (r.name.as_str(), r)).collect();
    let by_machine: HashMap<&str, &UserVm> = rows
        .iter()
        .filter_map(|r| r.machine_id.as_deref().map(|m| (m, r)))
        .collect();

    let mut actions = Vec::new();
    let mut candidates: BTreeMap<&str, Vec<&Machine>> = BTreeMap::new();
    for m in &live {
        let tag = m.metadata(TAG_VM_ID);
        let claimant = by_machine
            .get(m.id.as_str())
            .or_else(|| tag.and_then(|t| by_id.get(t)))
            .or_else(|| by_name.get(m.name.as_str()))
            .copied();
        let Some(r) = claimant else {
            if tag.is_some() {
                actions.push(ReconcileAction::Destroy {
                    machine_id: m.id.clone(),
                    reason: DestroyReason::Orphan,
                });
            }
            continue;
        };
        if busy.contains(&r.id) {
            continue;
        }
        if !r.status.is_live() {
            actions.push(ReconcileAction::Destroy {
                machine_id: m.id.clone(),
                reason: DestroyReason::Finished,
            });
            continue;
        }
        match r.machine_id.as_deref() {
            Some(mid) if mid == m.id => match r.status {
                VmStatus::Provisioning => actions.push(ReconcileAction::Adopt {
                    vm_id: r.id.clone(),
                    machine_id: m.id.clone(),
                    running: m.state.is_running_like(),
                }),
                VmStatus::Running if m.state.is_stopped_like() => {
                    actions.push(ReconcileAction::MarkStopped {
                        vm_id: r.id.clone(),
                    })
                }
                VmStatus::Stopped if m.state.is_running_like() => {
                    actions.push(ReconcileAction::MarkRunning {
                        vm_id: r.id.clone(),
                    })
                }
                _ => {}
            },
            Some(_) => actions.push(ReconcileAction::Destroy {
                machine_id: m.id.clone(),
                reason: DestroyReason::Duplicate,
            }),
            None => candidates.entry(r.id.as_str()).or_default().push(m),
        }
    }
    for (vm_id, ms) in &candidates {
        let r = by_id[vm_id];
        let chosen = ms
            .iter()
            .find(|m| m.name == r.name)
            .or_else(|| ms.first())
            .copied();
        for m in ms {
            if chosen.is_some_and(|c| c.id == m.id) {
                actions.push(ReconcileAction::Adopt {
                    vm_id: r.id.clone(),
                    machine_id: m.id.clone(),
                    running: m.state.is_running_like(),
                });
            } else {
                actions.push(ReconcileAction::Destroy {
                    machine_id: m.id.clone(),
                    reason: DestroyReason::Duplicate,
                });
            }
        }
    }
    for r in rows {
        if !r.status.is_live() || busy.contains(&r.id) {
            continue;
        }
        match r.machine_id.as_deref() {
            Some(mid) if !live_ids.contains(mid) => actions.push(ReconcileAction::MarkGone {
                vm_id: r.id.clone(),
                machine_id: mid.to_string(),
            }),
            Some(_) => {}
            None if !candidates.contains_key(r.id.as_str()) => {
                actions.push(ReconcileAction::MarkFailed {
                    vm_id: r.id.clone(),
                })
            }
            None => {}
        }
    }
    actions
}

/// What a reconcile did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    /// Actions applied.
    pub applied: Vec<ReconcileAction>,
    /// Actions that failed, with the error (retried next pass).
    pub failed: Vec<(ReconcileAction, String)>,
}

/// What a scheduler pass did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PassReport {
    /// The reconcile, or why it could not run.
    pub reconcile: std::result::Result<ReconcileReport, String>,
    /// VMs terminated for idleness.
    pub terminated: Vec<UserVm>,
}

// ---------------------------------------------------------------------------------------------
// The manager
// ---------------------------------------------------------------------------------------------

/// The VM manager. Holds the Machines API, a SQLite connection to the store (shared behind a
/// mutex that is never held across an `.await`; the main store can give it its own connection
/// to the same WAL database), a clock, settings and prices. Its futures are `Send`, so the
/// scheduler can be spawned.
pub struct VmManager<A: FlyApi> {
    api: A,
    db: Arc<Mutex<Connection>>,
    clock: SharedClock,
    settings: ComputeSettings,
    pricing: Pricing,
    busy: Mutex<HashSet<String>>,
}

impl<A: FlyApi> fmt::Debug for VmManager<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VmManager")
            .field("app", &self.api.app_name())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Marks a VM busy for the lifetime of an operation (also when its future is dropped).
struct BusyGuard<'a> {
    set: &'a Mutex<HashSet<String>>,
    id: String,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        let mut s = self.set.lock().unwrap_or_else(|p| p.into_inner());
        s.remove(&self.id);
    }
}

impl<A: FlyApi> VmManager<A> {
    /// A manager. `db` must hold the compute schema ([`crate::compute::store::MIGRATION_SQL`]).
    pub fn new(
        api: A,
        db: Arc<Mutex<Connection>>,
        clock: SharedClock,
        settings: ComputeSettings,
        pricing: Pricing,
    ) -> Self {
        VmManager {
            api,
            db,
            clock,
            settings,
            pricing,
            busy: Mutex::new(HashSet::new()),
        }
    }

    /// The Machines API in use.
    pub fn api(&self) -> &A {
        &self.api
    }

    /// The settings in use.
    pub fn settings(&self) -> &ComputeSettings {
        &self.settings
    }

    fn now(&self) -> Millis {
        self.clock.now_ms()
    }

    fn store<T>(
        &self,
        f: impl FnOnce(ComputeStore<'_>) -> crate::compute::store::Result<T>,
    ) -> Result<T> {
        let c = self.db.lock().map_err(|_| VmError::Poisoned)?;
        Ok(f(ComputeStore::new(&c))?)
    }

    /// Read or write the compute tables directly (e.g. listing every user's VMs). The lock
    /// is held only for `f`.
    pub fn with_store<T>(
        &self,
        f: impl FnOnce(ComputeStore<'_>) -> crate::compute::store::Result<T>,
    ) -> Result<T> {
        self.store(f)
    }

    fn claim(&self, vm_id: &str) -> Result<BusyGuard<'_>> {
        let mut s = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        if !s.insert(vm_id.to_string()) {
            return Err(VmError::Busy(vm_id.to_string()));
        }
        Ok(BusyGuard {
            set: &self.busy,
            id: vm_id.to_string(),
        })
    }

    fn busy_snapshot(&self) -> HashSet<String> {
        self.busy.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn vm(&self, vm_id: &str) -> Result<UserVm> {
        self.store(|s| s.get_vm(vm_id))?
            .ok_or_else(|| VmError::NotFound(vm_id.to_string()))
    }

    /// Scrub the Tailscale key from a message before it is stored or returned.
    fn scrub(&self, msg: &str) -> String {
        match &self.settings.tailscale_auth_key {
            Some(k) => fly::redact(msg, &[k.expose_secret()]),
            None => msg.to_string(),
        }
    }

    fn rate_of(&self, vm: &UserVm) -> Result<Centicents> {
        let cpu: CpuType = vm.cpu_type.parse()?;
        Ok(self.pricing.rate(cpu, vm.memory_mb)?.centicents_per_hour)
    }

    /// Provision a VM for `user_id` (defaults from the settings for `None`s): refuse over
    /// `VM_MAX_PER_USER`, write the `provisioning` row, create the machine, wait for `started`,
    /// mark `running` and open its usage. On an API failure the row becomes `error` (message
    /// without secrets) and the error is returned; reconcile cleans up any machine left behind.
    pub async fn provision_vm(
        &self,
        user_id: &str,
        session_id: Option<&str>,
        cpu_type: Option<&str>,
        memory_mb: Option<u32>,
        region: Option<&str>,
    ) -> Result<UserVm> {
        if user_id.trim().is_empty() || user_id.len() > 128 {
            return Err(VmError::Invalid(
                "user id must be 1 to 128 characters".into(),
            ));
        }
        let cpu = match cpu_type {
            Some(c) => c.parse()?,
            None => self.settings.default_cpu_type,
        };
        let memory_mb = memory_mb.unwrap_or(self.settings.default_memory_mb);
        let region = region.unwrap_or(&self.settings.default_region).to_string();
        if !valid_region(&region) {
            return Err(VmError::Invalid(format!(
                "region {region:?} is not a Fly region code (three lowercase letters, e.g. iad)"
            )));
        }
        let rate = self.pricing.rate(cpu, memory_mb)?.centicents_per_hour;

        let now = self.now();
        let ulid = ulid::Ulid::new().to_string().to_ascii_lowercase();
        let vm_id = format!("vm-{ulid}");
        let name = machine_name(user_id, &ulid);
        let _guard = self.claim(&vm_id)?;
        let new = NewVm {
            id: vm_id.clone(),
            user_id: user_id.to_string(),
            session_id: session_id.map(str::to_string),
            name: name.clone(),
            region: region.clone(),
            cpu_type: cpu.to_string(),
            memory_mb,
            disk_gb: None,
            provisioned_at: now,
            auto_shutdown_at: now + self.settings.idle_timeout_ms,
        };
        let max = self.settings.max_per_user;
        if let InsertOutcome::LimitReached { active } =
            self.store(|s| s.insert_vm_within_limit(&new, max))?
        {
            return Err(VmError::LimitReached {
                user: user_id.to_string(),
                active,
                max,
            });
        }

        let mut env = Env::default();
        env.0.insert(ENV_VM_ID.into(), vm_id.clone());
        if let Some(k) = &self.settings.tailscale_auth_key {
            env.0
                .insert(ENV_TAILSCALE_AUTH_KEY.into(), k.expose_secret().to_string());
        }
        let req = CreateMachineRequest {
            name: Some(name),
            region: Some(region),
            config: MachineConfig {
                image: self.settings.image.clone(),
                guest: Some(Guest {
                    cpu_kind: cpu.kind.as_str().into(),
                    cpus: cpu.cpus,
                    memory_mb,
                }),
                env,
                metadata: BTreeMap::from([
                    (TAG_VM_ID.to_string(), vm_id.clone()),
                    (TAG_USER.to_string(), user_id.to_string()),
                ]),
                auto_destroy: Some(false),
                restart: Some(Restart {
                    policy: "on-failure".into(),
                }),
                extra: Default::default(),
            },
            skip_launch: None,
        };
        tracing::info!(vm_id, user_id, %cpu, memory_mb, "provisioning VM");
        let machine = match self.api.create_machine(&req).await {
            Ok(m) => m,
            Err(e) => {
                let msg = self.scrub(&e.to_string());
                self.store(|s| s.mark_error(&vm_id, self.now(), &msg))?;
                tracing::warn!(vm_id, "provisioning failed: {msg}");
                return Err(e.into());
            }
        };
        drop(req);
        let created_at = self.now();
        self.store(|s| {
            s.record_machine(
                &vm_id,
                &machine.id,
                machine.instance_id.as_deref(),
                machine.private_ip.as_deref(),
            )
        })?;
        if let Err(e) = self
            .api
            .wait_for_state(
                &machine.id,
                machine.instance_id.as_deref(),
                WaitState::Started,
                self.settings.wait_timeout,
            )
            .await
        {
            let msg = self.scrub(&e.to_string());
            // Best effort; if this fails too, reconcile destroys the machine of an error row.
            if let Err(d) = self.api.delete_machine(&machine.id, true).await {
                tracing::warn!(vm_id, "cannot destroy the machine of a failed VM: {d}");
            }
            self.store(|s| s.mark_error(&vm_id, self.now(), &msg))?;
            return Err(e.into());
        }
        self.store(|s| s.mark_running(&vm_id, created_at, rate))?;
        self.vm(&vm_id)
    }

    /// Stop a running VM (stop + wait for `stopped`), closing its usage. The VM keeps its slot
    /// and can be started again.
    pub async fn stop_vm(&self, vm_id: &str) -> Result<UserVm> {
        let _g = self.claim(vm_id)?;
        let vm = self.vm(vm_id)?;
        let mid = match (&vm.status, &vm.machine_id) {
            (VmStatus::Running, Some(m)) => m.clone(),
            _ => {
                return Err(VmError::InvalidState {
                    vm_id: vm_id.into(),
                    status: vm.status,
                    action: "stop",
                });
            }
        };
        let r = async {
            self.api.stop_machine(&mid).await?;
            self.api
                .wait_for_state(
                    &mid,
                    vm.instance_id.as_deref(),
                    WaitState::Stopped,
                    self.settings.wait_timeout,
                )
                .await
        }
        .await;
        match r {
            Ok(()) => {
                self.store(|s| s.mark_stopped(vm_id, self.now()))?;
                self.vm(vm_id)
            }
            Err(e) if e.is_not_found() => Err(self.gone(vm_id, &mid)?),
            Err(e) => Err(e.into()),
        }
    }

    /// Start a stopped VM (start + wait for `started`), opening a usage and resetting its idle
    /// deadline.
    pub async fn start_vm(&self, vm_id: &str) -> Result<UserVm> {
        let _g = self.claim(vm_id)?;
        let vm = self.vm(vm_id)?;
        let mid = match (&vm.status, &vm.machine_id) {
            (VmStatus::Stopped, Some(m)) => m.clone(),
            _ => {
                return Err(VmError::InvalidState {
                    vm_id: vm_id.into(),
                    status: vm.status,
                    action: "start",
                });
            }
        };
        let rate = self.rate_of(&vm)?;
        let r = async {
            self.api.start_machine(&mid).await?;
            self.api
                .wait_for_state(
                    &mid,
                    vm.instance_id.as_deref(),
                    WaitState::Started,
                    self.settings.wait_timeout,
                )
                .await
        }
        .await;
        match r {
            Ok(()) => {
                let now = self.now();
                let deadline = now + self.settings.idle_timeout_ms;
                self.store(|s| {
                    s.mark_running(vm_id, now, rate)?;
                    s.touch_activity(vm_id, now, deadline)
                })?;
                self.vm(vm_id)
            }
            Err(e) if e.is_not_found() => Err(self.gone(vm_id, &mid)?),
            Err(e) => Err(e.into()),
        }
    }

    fn gone(&self, vm_id: &str, machine_id: &str) -> Result<VmError> {
        let note = format!("machine {machine_id} no longer exists on Fly");
        self.store(|s| s.mark_terminated(vm_id, self.now(), Some(&note)))?;
        Ok(VmError::MachineGone {
            vm_id: vm_id.into(),
            machine_id: machine_id.into(),
        })
    }

    /// Terminate a VM: destroy its machine and mark it `terminated`, closing its usage.
    /// `force` destroys a running machine directly (1 request); without it a running machine
    /// is stopped first (stop + wait + delete). A machine Fly no longer knows counts as
    /// destroyed. Terminating a terminated VM returns it unchanged.
    pub async fn terminate_vm(&self, vm_id: &str, force: bool) -> Result<UserVm> {
        let _g = self.claim(vm_id)?;
        let vm = self.vm(vm_id)?;
        if vm.status == VmStatus::Terminated {
            return Ok(vm);
        }
        if let Some(mid) = vm.machine_id.as_deref() {
            let r = async {
                let mut force_delete = force || vm.status != VmStatus::Stopped;
                if vm.status == VmStatus::Running && !force {
                    self.api.stop_machine(mid).await?;
                    self.api
                        .wait_for_state(
                            mid,
                            vm.instance_id.as_deref(),
                            WaitState::Stopped,
                            self.settings.wait_timeout,
                        )
                        .await?;
                    force_delete = false;
                }
                self.api.delete_machine(mid, force_delete).await
            }
            .await;
            match r {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {
                    tracing::info!(vm_id, machine_id = mid, "machine already gone");
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.store(|s| s.mark_terminated(vm_id, self.now(), None))?;
        tracing::info!(vm_id, "VM terminated");
        self.vm(vm_id)
    }

    /// The VM, refreshed from Fly: its status is synced with the machine's state (stopped,
    /// started or gone). If Fly cannot be read, the stored row is returned with `fly_error`.
    pub async fn get_vm_status(&self, vm_id: &str) -> Result<VmStatusReport> {
        let vm = self.vm(vm_id)?;
        let Some(mid) = vm.machine_id.clone().filter(|_| vm.status.is_live()) else {
            return Ok(VmStatusReport {
                vm,
                machine_state: None,
                fly_error: None,
            });
        };
        let fetched = self.api.get_machine(&mid).await;
        let Ok(_g) = self.claim(vm_id) else {
            // Another operation is changing it; report what is stored.
            return Ok(VmStatusReport {
                machine_state: fetched.as_ref().ok().map(|m| m.state.to_string()),
                fly_error: fetched.err().map(|e| e.to_string()),
                vm,
            });
        };
        let (state, err) = match fetched {
            Ok(m) => {
                let now = self.now();
                if m.state.is_gone() {
                    self.gone(vm_id, &mid)?;
                } else if vm.status == VmStatus::Running && m.state.is_stopped_like() {
                    self.store(|s| s.mark_stopped(vm_id, now))?;
                } else if vm.status == VmStatus::Stopped && m.state.is_running_like() {
                    let rate = self.rate_of(&vm)?;
                    self.store(|s| s.mark_running(vm_id, now, rate))?;
                }
                (Some(m.state.to_string()), None)
            }
            Err(e) if e.is_not_found() => {
                self.gone(vm_id, &mid)?;
                (None, Some(e.to_string()))
            }
            Err(e) => (None, Some(e.to_string())),
        };
        Ok(VmStatusReport {
            vm: self.vm(vm_id)?,
            machine_state: state,
            fly_error: err,
        })
    }

    /// Record user activity: `last_activity_at = now`, `auto_shutdown_at = now + idle timeout`.
    /// Only for live VMs.
    pub fn update_vm_activity(&self, vm_id: &str) -> Result<UserVm> {
        let now = self.now();
        let deadline = now + self.settings.idle_timeout_ms;
        if !self.store(|s| s.touch_activity(vm_id, now, deadline))? {
            let vm = self.vm(vm_id)?;
            return Err(VmError::InvalidState {
                vm_id: vm_id.into(),
                status: vm.status,
                action: "record activity",
            });
        }
        self.vm(vm_id)
    }

    /// Terminate (force) every running or stopped VM whose `auto_shutdown_at` is at or before
    /// `now` ([`is_idle_expired`]); returns the terminated VMs. Failures are logged and retried
    /// on the next pass; busy VMs are skipped.
    pub async fn check_idle_vms(&self, now: Millis) -> Result<Vec<UserVm>> {
        let due: Vec<UserVm> = self
            .store(|s| s.live_vms())?
            .into_iter()
            .filter(|v| is_idle_expired(v, now))
            .collect();
        let mut done = Vec::new();
        for v in due {
            match self.terminate_vm(&v.id, true).await {
                Ok(t) => {
                    tracing::info!(vm_id = v.id, user = v.user_id, "idle VM terminated");
                    done.push(t);
                }
                Err(VmError::Busy(_)) => {}
                Err(e) => tracing::warn!(vm_id = v.id, "cannot terminate idle VM: {e}"),
            }
        }
        Ok(done)
    }

    /// Costs of `user_id` over the last `days` days up to now: closed usage clipped to the
    /// period plus running VMs up to now (exact centicents, see [`costs`]).
    pub fn get_user_compute_costs(&self, user_id: &str, days: u32) -> Result<ComputeCosts> {
        if days == 0 || days > 3660 {
            return Err(VmError::Invalid("days must be 1 to 3660".into()));
        }
        let to = self.now();
        let from = to - days as i64 * costs::MS_PER_DAY;
        let usage = self.store(|s| s.usage_overlapping(user_id, from, to))?;
        Ok(ComputeCosts {
            user_id: user_id.to_string(),
            period_days: days,
            from,
            to,
            total_centicents: usage.iter().map(|u| u.cost_within(from, to, to)).sum(),
            usage_count: usage.len() as u32,
            running_count: usage.iter().filter(|u| u.ended_at.is_none()).count() as u32,
        })
    }

    /// SSH details of a running VM, from the machine's current addresses (one `get`).
    pub async fn ssh_credentials(&self, vm_id: &str) -> Result<SshCredentials> {
        let vm = self.vm(vm_id)?;
        let (VmStatus::Running, Some(mid)) = (vm.status, vm.machine_id.clone()) else {
            return Err(VmError::InvalidState {
                vm_id: vm_id.into(),
                status: vm.status,
                action: "open an SSH session",
            });
        };
        let m = match self.api.get_machine(&mid).await {
            Ok(m) => m,
            Err(e) if e.is_not_found() => return Err(self.gone(vm_id, &mid)?),
            Err(e) => return Err(e.into()),
        };
        if m.state != MachineState::Started {
            return Err(VmError::Invalid(format!(
                "VM {vm_id}: machine {mid} is {}, not started",
                m.state
            )));
        }
        if m.private_ip.is_some() && m.private_ip != vm.private_ip {
            self.store(|s| {
                s.record_machine(
                    vm_id,
                    &mid,
                    m.instance_id.as_deref(),
                    m.private_ip.as_deref(),
                )
            })?;
        }
        let hostname = m
            .private_ip
            .clone()
            .or(vm.ssh_host.clone())
            .unwrap_or_else(|| format!("{mid}.vm.{}.internal", self.api.app_name()));
        Ok(SshCredentials {
            hostname,
            port: self.settings.ssh_port,
            username: self.settings.ssh_username.clone(),
            machine_id: mid,
            region: if m.region.is_empty() {
                vm.region
            } else {
                m.region
            },
            tailscale_ip: vm.tailscale_ip,
        })
    }

    /// A user's VMs, newest first (terminated ones only if asked).
    pub fn list_vms(&self, user_id: &str, include_terminated: bool) -> Result<Vec<UserVm>> {
        self.store(|s| s.list_vms(user_id, include_terminated))
    }

    /// Compare the app's machines with the store and repair (see the module docs). One `list`
    /// plus one `delete` per machine to destroy.
    pub async fn reconcile(&self) -> Result<ReconcileReport> {
        let machines = self.api.list_machines().await?;
        let busy = self.busy_snapshot();
        let rows = self.store(|s| {
            let mut rows = s.live_vms()?;
            let mut seen: HashSet<String> = rows.iter().map(|r| r.id.clone()).collect();
            for m in &machines {
                let found = [
                    s.find_vm_by_machine(&m.id)?,
                    match m.metadata(TAG_VM_ID) {
                        Some(t) => s.get_vm(t)?,
                        None => None,
                    },
                    s.find_vm_by_name(&m.name)?,
                ];
                for r in found.into_iter().flatten() {
                    if seen.insert(r.id.clone()) {
                        rows.push(r);
                    }
                }
            }
            Ok(rows)
        })?;
        let plan = plan_reconcile(&rows, &machines, &busy);
        let by_id: HashMap<&str, &UserVm> = rows.iter().map(|r| (r.id.as_str(), r)).collect();
        let machine_by_id: HashMap<&str, &Machine> =
            machines.iter().map(|m| (m.id.as_str(), m)).collect();
        let mut report = ReconcileReport::default();
        for a in plan {
            let r = self.apply(&a, &by_id, &machine_by_id).await;
            match r {
                Ok(()) => {
                    tracing::info!(action = ?a, "reconciled");
                    report.applied.push(a);
                }
                Err(e) => {
                    tracing::warn!(action = ?a, "reconcile step failed: {e}");
                    report.failed.push((a, self.scrub(&e.to_string())));
                }
            }
        }
        Ok(report)
    }

    async fn apply(
        &self,
        a: &ReconcileAction,
        rows: &HashMap<&str, &UserVm>,
        machines: &HashMap<&str, &Machine>,
    ) -> Result<()> {
        let now = self.now();
        match a {
            ReconcileAction::Destroy { machine_id, .. } => {
                match self.api.delete_machine(machine_id, true).await {
                    Err(e) if !e.is_not_found() => Err(e.into()),
                    _ => Ok(()),
                }
            }
            ReconcileAction::Adopt {
                vm_id,
                machine_id,
                running,
            } => {
                let _g = self.claim(vm_id)?;
                let row = rows[vm_id.as_str()];
                let m = machines[machine_id.as_str()];
                let rate = self.rate_of(row)?;
                self.store(|s| {
                    s.record_machine(
                        vm_id,
                        machine_id,
                        m.instance_id.as_deref(),
                        m.private_ip.as_deref(),
                    )?;
                    if *running {
                        s.mark_running(vm_id, row.provisioned_at, rate)?;
                    } else {
                        s.mark_stopped(vm_id, now)?;
                    }
                    Ok(())
                })
            }
            ReconcileAction::MarkRunning { vm_id } => {
                let _g = self.claim(vm_id)?;
                let rate = self.rate_of(rows[vm_id.as_str()])?;
                self.store(|s| s.mark_running(vm_id, now, rate).map(drop))
            }
            ReconcileAction::MarkStopped { vm_id } => {
                let _g = self.claim(vm_id)?;
                self.store(|s| s.mark_stopped(vm_id, now).map(drop))
            }
            ReconcileAction::MarkGone { vm_id, machine_id } => {
                let _g = self.claim(vm_id)?;
                let row = rows[vm_id.as_str()];
                let note =
                    format!("machine {machine_id} no longer exists on Fly (found by reconcile)");
                self.store(|s| {
                    if row.status == VmStatus::Provisioning {
                        s.mark_error(vm_id, now, &note).map(drop)
                    } else {
                        s.mark_terminated(vm_id, now, Some(&note)).map(drop)
                    }
                })
            }
            ReconcileAction::MarkFailed { vm_id } => {
                let _g = self.claim(vm_id)?;
                self.store(|s| {
                    s.mark_error(
                        vm_id,
                        now,
                        "provisioning did not complete: no machine found by reconcile",
                    )
                    .map(drop)
                })
            }
        }
    }

    /// One scheduler pass: reconcile, then the idle sweep at the clock's now.
    pub async fn scheduler_pass(&self) -> Result<PassReport> {
        let reconcile = self.reconcile().await.map_err(|e| {
            tracing::warn!("reconcile failed: {e}");
            e.to_string()
        });
        let terminated = self.check_idle_vms(self.now()).await?;
        Ok(PassReport {
            reconcile,
            terminated,
        })
    }

    /// Run scheduler passes every `interval` (the seed: 60 s; the first pass at once, which is
    /// the start-up reconcile) until `shutdown` becomes true or its sender is dropped.
    pub async fn run_scheduler(
        &self,
        interval: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        tracing::info!(?interval, "VM scheduler started");
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = self.scheduler_pass().await {
                        tracing::warn!("scheduler pass failed: {e}");
                    }
                }
                r = shutdown.changed() => {
                    if r.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
            }
        }
        tracing::info!("VM scheduler stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn row(id: &str, status: VmStatus, machine: Option<&str>) -> UserVm {
        UserVm {
            id: id.into(),
            user_id: "u".into(),
            session_id: None,
            machine_id: machine.map(str::to_string),
            instance_id: None,
            name: format!("n-{id}"),
            region: "iad".into(),
            status,
            cpu_type: "shared-cpu-1x".into(),
            memory_mb: 256,
            disk_gb: None,
            private_ip: None,
            public_ip: None,
            ssh_host: None,
            tailscale_ip: None,
            last_activity_at: None,
            auto_shutdown_at: Some(1_000),
            provisioned_at: 0,
            started_at: None,
            stopped_at: None,
            terminated_at: None,
            error: None,
        }
    }

    fn machine(id: &str, state: MachineState, tag: Option<&str>, name: &str) -> Machine {
        let mut config = MachineConfig::default();
        if let Some(t) = tag {
            config.metadata.insert(TAG_VM_ID.into(), t.into());
        }
        Machine {
            id: id.into(),
            name: name.into(),
            state,
            config: Some(config),
            ..Machine::default()
        }
    }

    #[test]
    fn settings_defaults_and_errors() {
        let s = ComputeSettings::from_env(|_| None).unwrap();
        assert_eq!(
            (s.max_per_user, s.idle_timeout_ms, s.default_memory_mb),
            (3, 1_800_000, 1024)
        );
        assert_eq!(s.default_cpu_type.to_string(), "shared-cpu-1x");
        s.validate(&Pricing::embedded().unwrap()).unwrap();
        let one = |k: &'static str, v: &'static str| move |q: &str| (q == k).then(|| v.to_string());
        let e = ComputeSettings::from_env(one("VM_MAX_PER_USER", "lots")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "VM_MAX_PER_USER=\"lots\": expected an integer from 1 to 1000"
        );
        assert!(ComputeSettings::from_env(one("VM_IDLE_TIMEOUT_MINUTES", "0")).is_err());
        assert!(ComputeSettings::from_env(one("VM_DEFAULT_REGION", "IAD1")).is_err());
        assert!(ComputeSettings::from_env(one("VM_DEFAULT_CPU_TYPE", "big")).is_err());
        assert!(ComputeSettings::from_env(one("VM_DEFAULT_MEMORY_MB", "1000")).is_err());
        let s = ComputeSettings::from_env(one("TAILSCALE_AUTH_KEY", "tskey-auth-abcdef")).unwrap();
        assert!(s.tailscale_auth_key.is_some());
        assert!(!format!("{s:?}").contains("tskey"));
        let s = ComputeSettings::from_env(one("VM_DEFAULT_MEMORY_MB", "8192")).unwrap();
        assert!(s.validate(&Pricing::embedded().unwrap()).is_err());
    }

    #[test]
    fn limit_error_names_the_limit() {
        let e = VmError::LimitReached {
            user: "alice".into(),
            active: 3,
            max: 3,
        };
        assert_eq!(e.to_string(), "user alice has 3 of 3 VMs (VM_MAX_PER_USER)");
    }

    #[test]
    fn names_are_safe() {
        assert_eq!(
            machine_name("Alice@Example.com", "01ABC"),
            "flotilla-alice-example-com-01abc"
        );
        assert_eq!(machine_name("!!!", "x"), "flotilla-u-x");
        assert!(machine_name(&"a".repeat(100), "x").len() < 40);
    }

    #[test]
    fn idle_decision() {
        let mut v = row("a", VmStatus::Running, Some("m"));
        assert!(!is_idle_expired(&v, 999));
        assert!(is_idle_expired(&v, 1_000));
        v.status = VmStatus::Provisioning;
        assert!(!is_idle_expired(&v, 5_000));
        v.status = VmStatus::Terminated;
        assert!(!is_idle_expired(&v, 5_000));
        v.status = VmStatus::Stopped;
        v.auto_shutdown_at = None;
        assert!(!is_idle_expired(&v, 5_000));
    }

    #[test]
    fn termination_delay_examples() {
        assert_eq!(idle_termination_delay(1_000, 1_000, 60_000), 0);
        assert_eq!(idle_termination_delay(1_001, 1_000, 60_000), 59_999);
        assert_eq!(idle_termination_delay(61_000, 0, 60_000), 59_000);
        assert_eq!(first_pass_at_or_after(10, 50, 60), 50);
    }

    #[test]
    fn plan_covers_the_decision_table() {
        let busy = HashSet::new();
        let rows = vec![
            row("p-nomachine", VmStatus::Provisioning, None),
            row("p-lost", VmStatus::Provisioning, None),
            row("r-ok", VmStatus::Running, Some("m-ok")),
            row("r-gone", VmStatus::Running, Some("m-gone")),
            row("r-drift", VmStatus::Running, Some("m-drift")),
            row("s-drift", VmStatus::Stopped, Some("m-up")),
            row("t-done", VmStatus::Terminated, Some("m-zombie")),
        ];
        let ms = vec![
            machine(
                "m-new",
                MachineState::Started,
                Some("p-nomachine"),
                "n-p-nomachine",
            ),
            machine(
                "m-twin",
                MachineState::Started,
                Some("p-nomachine"),
                "other",
            ),
            machine("m-ok", MachineState::Started, Some("r-ok"), "n-r-ok"),
            machine(
                "m-drift",
                MachineState::Stopped,
                Some("r-drift"),
                "n-r-drift",
            ),
            machine("m-up", MachineState::Started, Some("s-drift"), "n-s-drift"),
            machine(
                "m-zombie",
                MachineState::Started,
                Some("t-done"),
                "n-t-done",
            ),
            machine("m-orphan", MachineState::Stopped, Some("vm-unknown"), "x"),
            machine("m-foreign", MachineState::Started, None, "someone-elses"),
            machine("m-dead", MachineState::Destroyed, Some("vm-unknown2"), "y"),
        ];
        let plan = plan_reconcile(&rows, &ms, &busy);
        use ReconcileAction::*;
        let expect = [
            Adopt {
                vm_id: "p-nomachine".into(),
                machine_id: "m-new".into(),
                running: true,
            },
            Destroy {
                machine_id: "m-twin".into(),
                reason: DestroyReason::Duplicate,
            },
            MarkFailed {
                vm_id: "p-lost".into(),
            },
            MarkGone {
                vm_id: "r-gone".into(),
                machine_id: "m-gone".into(),
            },
            MarkStopped {
                vm_id: "r-drift".into(),
            },
            MarkRunning {
                vm_id: "s-drift".into(),
            },
            Destroy {
                machine_id: "m-zombie".into(),
                reason: DestroyReason::Finished,
            },
            Destroy {
                machine_id: "m-orphan".into(),
                reason: DestroyReason::Orphan,
            },
        ];
        for e in &expect {
            assert!(plan.contains(e), "missing {e:?} in {plan:#?}");
        }
        assert_eq!(plan.len(), expect.len(), "{plan:#?}");
        // Busy VMs are left alone.
        let busy: HashSet<String> = ["p-nomachine".to_string(), "r-gone".to_string()].into();
        let plan = plan_reconcile(&rows, &ms, &busy);
        assert!(plan.iter().all(|a| !matches!(a,
            Adopt { vm_id, .. } | MarkGone { vm_id, .. } if vm_id == "p-nomachine" || vm_id == "r-gone")));
        assert!(!plan.contains(&Destroy {
            machine_id: "m-twin".into(),
            reason: DestroyReason::Duplicate
        }));
    }

    /// Apply a plan to the model of rows and machines.
    fn apply_model(rows: &mut [UserVm], ms: &mut Vec<Machine>, plan: &[ReconcileAction]) {
        for a in plan {
            match a {
                ReconcileAction::Destroy { machine_id, .. } => ms.retain(|m| &m.id != machine_id),
                ReconcileAction::Adopt {
                    vm_id,
                    machine_id,
                    running,
                } => {
                    let r = rows.iter_mut().find(|r| &r.id == vm_id).unwrap();
                    r.machine_id = Some(machine_id.clone());
                    r.status = if *running {
                        VmStatus::Running
                    } else {
                        VmStatus::Stopped
                    };
                }
                ReconcileAction::MarkRunning { vm_id } => {
                    rows.iter_mut().find(|r| &r.id == vm_id).unwrap().status = VmStatus::Running
                }
                ReconcileAction::MarkStopped { vm_id } => {
                    rows.iter_mut().find(|r| &r.id == vm_id).unwrap().status = VmStatus::Stopped
                }
                ReconcileAction::MarkGone { vm_id, .. } => {
                    let r = rows.iter_mut().find(|r| &r.id == vm_id).unwrap();
                    r.status = if r.status == VmStatus::Provisioning {
                        VmStatus::Error
                    } else {
                        VmStatus::Terminated
                    };
                }
                ReconcileAction::MarkFailed { vm_id } => {
                    rows.iter_mut().find(|r| &r.id == vm_id).unwrap().status = VmStatus::Error
                }
            }
        }
    }

    fn arb_world() -> impl Strategy<Value = (Vec<UserVm>, Vec<Machine>)> {
        let statuses = prop_oneof![
            Just(VmStatus::Provisioning),
            Just(VmStatus::Running),
            Just(VmStatus::Stopped),
            Just(VmStatus::Terminated),
            Just(VmStatus::Error),
        ];
        let states = prop_oneof![
            Just(MachineState::Started),
            Just(MachineState::Stopped),
            Just(MachineState::Created),
            Just(MachineState::Suspended),
            Just(MachineState::Destroyed),
            Just(MachineState::Failed),
        ];
        (
            proptest::collection::vec((statuses, proptest::option::of(0usize..8)), 0..6),
            proptest::collection::vec(
                (
                    states,
                    proptest::option::of(0usize..8),
                    0usize..10,
                    any::<bool>(),
                ),
                0..8,
            ),
        )
            .prop_map(|(rs, ms)| {
                // Rows own distinct machine ids (the store's UNIQUE constraint).
                let mut used = HashSet::new();
                let rows: Vec<UserVm> = rs
                    .into_iter()
                    .enumerate()
                    .map(|(i, (st, m))| {
                        let m = m.filter(|m| used.insert(*m)).map(|m| format!("m{m}"));
                        row(&format!("v{i}"), st, m.as_deref())
                    })
                    .collect();
                let mut seen = HashSet::new();
                let machines = ms
                    .into_iter()
                    .enumerate()
                    .filter_map(|(i, (st, idx, tag, by_name))| {
                        let id = format!("m{}", idx.unwrap_or(8 + i));
                        if !seen.insert(id.clone()) {
                            return None;
                        }
                        // Tags: v0..v5 (some unknown), or none (foreign, or matched by name).
                        let (tag, name) = match (tag < 7, by_name) {
                            (true, _) => (Some(format!("v{tag}")), format!("x{i}")),
                            (false, true) => (None, format!("n-v{}", tag - 7)),
                            (false, false) => (None, format!("foreign{i}")),
                        };
                        Some(machine(&id, st, tag.as_deref(), &name))
                    })
                    .collect();
                (rows, machines)
            })
    }

    proptest! {
        /// The plan converges (a second plan after applying the first is empty), touches only
        /// our machines, acts at most once per machine and per row, and leaves every live row
        /// with a machine owning exactly one live machine.
        #[test]
        fn reconcile_plan_converges((rows, machines) in arb_world()) {
            let busy = HashSet::new();
            let plan = plan_reconcile(&rows, &machines, &busy);
            let mut machine_actions = HashSet::new();
            let mut row_actions = HashSet::new();
            for a in &plan {
                match a {
                    ReconcileAction::Destroy { machine_id, .. } => {
                        prop_assert!(machine_actions.insert(machine_id.clone()));
                        let m = machines.iter().find(|m| &m.id == machine_id).unwrap();
                        let ours = m.metadata(TAG_VM_ID).is_some()
                            || rows.iter().any(|r| r.name == m.name || r.machine_id.as_deref() == Some(&m.id));
                        prop_assert!(ours, "destroyed a foreign machine {}", m.id);
                    }
                    ReconcileAction::Adopt { vm_id, machine_id, .. } => {
                        prop_assert!(machine_actions.insert(machine_id.clone()));
                        prop_assert!(row_actions.insert(vm_id.clone()));
                    }
                    ReconcileAction::MarkRunning { vm_id }
                    | ReconcileAction::MarkStopped { vm_id }
                    | ReconcileAction::MarkGone { vm_id, .. }
                    | ReconcileAction::MarkFailed { vm_id } => {
                        prop_assert!(row_actions.insert(vm_id.clone()));
                    }
                }
            }
            let (mut rows2, mut ms2) = (rows.clone(), machines.clone());
            apply_model(&mut rows2, &mut ms2, &plan);
            let again = plan_reconcile(&rows2, &ms2, &busy);
            prop_assert!(again.is_empty(), "not converged: {:?}", again);
            for r in rows2.iter().filter(|r| r.status.is_live()) {
                let mid = r.machine_id.as_deref();
                prop_assert!(mid.is_some(), "live row {} without machine", r.id);
                prop_assert!(ms2.iter().any(|m| Some(m.id.as_str()) == mid && !m.state.is_gone()));
            }
            // Foreign machines survive.
            for m in machines.iter().filter(|m| m.name.starts_with("foreign")) {
                prop_assert!(ms2.iter().any(|x| x.id == m.id) || rows.iter().any(|r| r.machine_id.as_deref() == Some(&m.id)));
            }
        }

        /// Passes every `interval` terminate a VM within [0, interval) after its deadline.
        #[test]
        fn idle_termination_delay_is_below_one_interval(
            deadline in 0i64..10_000_000_000,
            back in 0i64..10_000_000,
            interval in 1i64..600_000,
        ) {
            let first = deadline - back;
            let d = idle_termination_delay(deadline, first, interval);
            prop_assert!((0..interval).contains(&d));
            prop_assert_eq!((deadline + d - first) % interval, 0);
        }

        /// Activity at `t` keeps a VM alive until exactly `t + timeout`.
        #[test]
        fn activity_extends_the_deadline(t in 0i64..1i64 << 40, timeout in 60_000i64..86_400_000, probe in 0i64..1i64 << 41) {
            let mut v = row("a", VmStatus::Running, Some("m"));
            v.auto_shutdown_at = Some(t + timeout);
            prop_assert_eq!(is_idle_expired(&v, probe), probe >= t + timeout);
        }
    }
}
