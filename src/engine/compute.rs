//! The engine's compute service: the [`VmManager`] on its own SQLite connection (same WAL
//! database), its scheduler (idle shutdown and reconciliation every
//! `compute.scheduler_interval`), and the translation between engine commands and VM
//! operations. VM calls run off the engine's actor (they wait on the Machines API), so a slow
//! Fly never stalls the queue or the faces.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;

use super::command::{ComputeCostsReport, TerminateReport, VmList, VmSsh, VmView};
use super::snapshot::{VmFeed, VmRow};
use super::{Command, EngineError, Reply};
use crate::clock::{Millis, SharedClock, rfc3339};
use crate::compute::costs::{self, format_usd};
use crate::compute::{
    ComputeSettings, ComputeStore, FlyClient, FlyConfig, Pricing, UserVm, VmError, VmManager,
    VmStatus,
};
use crate::config::ComputeConfig;

/// The running compute service.
#[derive(Debug, Clone)]
pub struct ComputeService {
    mgr: Arc<VmManager<FlyClient>>,
    pricing: Arc<Pricing>,
    interval: Duration,
}

/// Errors starting the service (it then stays off, with the reason shown).
pub fn start(
    cfg: &ComputeConfig,
    db_path: &Path,
    clock: SharedClock,
) -> Result<ComputeService, String> {
    if !cfg.enabled() {
        return Err(
            "set FLY_API_TOKEN and FLY_APP_NAME (or [compute] fly_api_token, fly_app_name)".into(),
        );
    }
    let get = |k: &str| cfg.var(k);
    let fly = FlyConfig::from_env(get).map_err(|e| e.to_string())?;
    let client = FlyClient::new(fly).map_err(|e| e.to_string())?;
    let settings = ComputeSettings::from_env(get).map_err(|e| e.to_string())?;
    let pricing = Pricing::embedded().map_err(|e| e.to_string())?;
    settings.validate(&pricing).map_err(|e| e.to_string())?;
    let conn = Connection::open(db_path).map_err(|e| format!("compute store: {e}"))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| format!("compute store: {e}"))?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(|e| format!("compute store: {e}"))?;
    let mgr = VmManager::new(
        client,
        Arc::new(Mutex::new(conn)),
        clock,
        settings,
        pricing.clone(),
    );
    Ok(ComputeService {
        mgr: Arc::new(mgr),
        pricing: Arc::new(pricing),
        interval: cfg.scheduler_interval,
    })
}

impl ComputeService {
    /// The scheduler loop: one pass at once (start-up reconcile), then every interval;
    /// `changed` is called after each pass.
    pub async fn run_scheduler(self, changed: impl Fn() + Send + 'static) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.mgr.scheduler_pass().await {
                Ok(report) => {
                    if let Err(e) = &report.reconcile {
                        tracing::warn!("compute reconcile failed: {e}");
                    }
                    for vm in &report.terminated {
                        tracing::info!(vm = %vm.id, user = %vm.user_id, "idle VM terminated");
                    }
                }
                Err(e) => tracing::warn!("compute scheduler pass failed: {e}"),
            }
            changed();
        }
    }

    /// Run one compute command.
    pub async fn execute(&self, cmd: Command, now: Millis) -> Result<Reply, EngineError> {
        let m = &self.mgr;
        let e = |e: VmError| match e {
            VmError::NotFound(id) => EngineError::NotFound { what: "VM", id },
            other => EngineError::Invalid(other.to_string()),
        };
        match cmd {
            Command::ListVms {
                user,
                include_terminated,
            } => {
                let vms = match &user {
                    Some(u) => m.list_vms(u, include_terminated).map_err(e)?,
                    None => self.with_store(|s| s.list_all(include_terminated))?,
                };
                let views = vms.iter().map(|v| self.view(v, now)).collect();
                Ok(Reply::Vms(VmList { vms: views }))
            }
            Command::ProvisionVm {
                user,
                session,
                cpu_type,
                memory_mb,
                region,
            } => {
                let vm = m
                    .provision_vm(
                        &user,
                        session.as_deref(),
                        cpu_type.as_deref(),
                        memory_mb,
                        region.as_deref(),
                    )
                    .await
                    .map_err(e)?;
                tracing::info!(vm = %vm.id, user = %vm.user_id, region = %vm.region, "VM provisioned");
                Ok(Reply::Vm(Box::new(self.view(&vm, now))))
            }
            Command::TerminateVm {
                vm_id,
                force,
                dry_run,
            } => {
                let vm = self.with_store(|s| s.get_vm(&vm_id))?.ok_or_else(|| {
                    EngineError::NotFound {
                        what: "VM",
                        id: vm_id.clone(),
                    }
                })?;
                let action = terminate_plan(&vm, force);
                if dry_run {
                    return Ok(Reply::Terminated(Box::new(TerminateReport {
                        vm: self.view(&vm, now),
                        dry_run: true,
                        action: format!("would {action}"),
                    })));
                }
                let vm = m.terminate_vm(&vm_id, force).await.map_err(e)?;
                tracing::info!(vm = %vm.id, "VM terminated");
                Ok(Reply::Terminated(Box::new(TerminateReport {
                    vm: self.view(&vm, now),
                    dry_run: false,
                    action,
                })))
            }
            Command::GetVmSsh { vm_id } => {
                let c = m.ssh_credentials(&vm_id).await.map_err(e)?;
                let host = c.tailscale_ip.clone().unwrap_or_else(|| c.hostname.clone());
                Ok(Reply::Ssh(VmSsh {
                    command: format!("ssh -p {} {}@{}", c.port, c.username, host),
                    hostname: c.hostname,
                    port: c.port,
                    username: c.username,
                    machine_id: c.machine_id,
                    region: c.region,
                    tailscale_ip: c.tailscale_ip,
                }))
            }
            Command::ExtendVmActivity { vm_id } => {
                let vm = m.update_vm_activity(&vm_id).map_err(e)?;
                Ok(Reply::Vm(Box::new(self.view(&vm, now))))
            }
            Command::GetComputeCosts { user, days } => {
                if !(1..=366).contains(&days) {
                    return Err(EngineError::Invalid(format!(
                        "days {days} is out of range 1..=366"
                    )));
                }
                let c = m.get_user_compute_costs(&user, days).map_err(e)?;
                Ok(Reply::Costs(ComputeCostsReport {
                    user_id: c.user_id,
                    period_days: c.period_days,
                    total_centicents: c.total_centicents,
                    total_cost_cents: c.total_centicents as f64 / 100.0,
                    total_cost_dollars: c.total_centicents as f64 / 10_000.0,
                    usage_count: c.usage_count,
                    running_count: c.running_count,
                }))
            }
            other => Err(EngineError::Invalid(format!(
                "{} is not a compute command",
                other.kind().name()
            ))),
        }
    }

    /// What terminating `vm_id` would do, if the VM exists.
    pub fn plan(&self, vm_id: &str, force: bool) -> Option<String> {
        let vm = self.with_store(|s| s.get_vm(vm_id)).ok()??;
        Some(terminate_plan(&vm, force))
    }

    fn with_store<T>(
        &self,
        f: impl FnOnce(ComputeStore<'_>) -> crate::compute::store::Result<T>,
    ) -> Result<T, EngineError> {
        self.mgr
            .with_store(f)
            .map_err(|e| EngineError::Invalid(e.to_string()))
    }

    fn cost_of(&self, vm: &UserVm, now: Millis) -> i64 {
        self.with_store(|s| s.usage_for_vm(&vm.id))
            .map(|u| {
                u.iter()
                    .map(|x| x.cost_within(i64::MIN / 2, now, now))
                    .sum()
            })
            .unwrap_or(0)
    }

    fn view(&self, vm: &UserVm, now: Millis) -> VmView {
        let cost = self.cost_of(vm, now);
        let _ = &self.pricing;
        VmView {
            vm_id: vm.id.clone(),
            name: vm.name.clone(),
            user: vm.user_id.clone(),
            region: vm.region.clone(),
            cpu_type: vm.cpu_type.clone(),
            memory_mb: vm.memory_mb,
            status: vm.status.as_str().to_string(),
            machine_id: vm.machine_id.clone(),
            private_ip: vm.private_ip.clone(),
            tailscale_ip: vm.tailscale_ip.clone(),
            last_activity_at: vm.last_activity_at.map(rfc3339),
            auto_shutdown_at: vm.auto_shutdown_at.map(rfc3339),
            idle_left_s: idle_left(vm, now),
            cost_centicents: cost,
            cost_usd: format_usd(cost),
            error: vm.error.clone(),
        }
    }

    /// The VMs pane's rows and this month's total (all users), read from the store.
    pub fn feed(&self, now: Millis) -> VmFeed {
        let vms = self.with_store(|s| s.list_all(false)).unwrap_or_default();
        let month = costs::YearMonth::of(now).start_ms();
        let month_total = self
            .with_store(|s| s.usage_overlapping_all(month, now))
            .map(|u| u.iter().map(|x| x.cost_within(month, now, now)).sum())
            .unwrap_or(0);
        VmFeed::On {
            rows: vms
                .iter()
                .map(|v| VmRow {
                    vm_id: v.id.clone(),
                    name: v.name.clone(),
                    user: v.user_id.clone(),
                    region: v.region.clone(),
                    cpu_type: v.cpu_type.clone(),
                    memory_mb: v.memory_mb,
                    status: v.status.as_str().to_string(),
                    auto_shutdown_at: v.auto_shutdown_at,
                    cost_centicents: self.cost_of(v, now),
                })
                .collect(),
            month_centicents: month_total,
        }
    }
}

/// Seconds until the idle shutdown of a live VM (pure).
pub fn idle_left(vm: &UserVm, now: Millis) -> Option<i64> {
    match vm.status {
        VmStatus::Running | VmStatus::Stopped => {
            vm.auto_shutdown_at.map(|d| ((d - now) / 1000).max(0))
        }
        _ => None,
    }
}

/// What terminating `vm` does (pure; used for dry runs and confirmation texts).
pub fn terminate_plan(vm: &UserVm, force: bool) -> String {
    let m = vm.machine_id.as_deref().unwrap_or("(no machine)");
    match vm.status {
        VmStatus::Terminated => format!("do nothing: VM {} is already terminated", vm.id),
        VmStatus::Running if force => format!(
            "destroy running machine {m} of VM {} ({}) at once, ending its billing",
            vm.id, vm.user_id
        ),
        VmStatus::Running => format!(
            "stop machine {m} of VM {} ({}), then destroy it, ending its billing",
            vm.id, vm.user_id
        ),
        _ => format!("destroy machine {m} of VM {} ({})", vm.id, vm.user_id),
    }
}
