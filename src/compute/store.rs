//! SQLite persistence for user VMs and their compute usage.
//!
//! Two tables, created by [`MIGRATION_SQL`] (appended as migration 2 to the main store's
//! `rusqlite_migration` list; [`apply_schema`] runs it on a bare connection for tests and tools):
//!
//! - `user_vms`: one row per VM ever provisioned (the seed's `UserVM`), including its state,
//!   machine, addresses, activity/auto-shutdown deadlines and lifecycle timestamps.
//! - `compute_usage`: one row per billable run of a VM (the seed's `ComputeUsage`): opened when
//!   the machine starts running, closed with `duration_ms` and `total_centicents` when it stops,
//!   is terminated or disappears. At most one open usage per VM (partial unique index).
//!
//! Times are unix milliseconds (UTC); money is integer centicents
//! ([`crate::compute::costs::Centicents`]). No secret (API token, Tailscale key, machine env)
//! is ever stored. [`ComputeStore`] borrows a `rusqlite::Connection`; multi-statement updates run
//! in their own transaction, so the connection must not be inside another one.

use std::fmt;

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::clock::Millis;
use crate::compute::costs::{self, Centicents};

/// Schema of the compute tables (STRICT). Migration 2 of the main store.
pub const MIGRATION_SQL: &str = r#"
CREATE TABLE user_vms (
    id               TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL,
    session_id       TEXT,
    machine_id       TEXT UNIQUE,
    instance_id      TEXT,
    name             TEXT NOT NULL UNIQUE,
    region           TEXT NOT NULL,
    status           TEXT NOT NULL
        CHECK (status IN ('provisioning', 'running', 'stopped', 'terminated', 'error')),
    cpu_type         TEXT NOT NULL,
    memory_mb        INTEGER NOT NULL CHECK (memory_mb > 0),
    disk_gb          INTEGER,
    private_ip       TEXT,
    public_ip        TEXT,
    ssh_host         TEXT,
    tailscale_ip     TEXT,
    last_activity_at INTEGER,
    auto_shutdown_at INTEGER,
    provisioned_at   INTEGER NOT NULL,
    started_at       INTEGER,
    stopped_at       INTEGER,
    terminated_at    INTEGER,
    error            TEXT
) STRICT;
CREATE INDEX user_vms_user ON user_vms(user_id, status);
CREATE INDEX user_vms_status ON user_vms(status, auto_shutdown_at);
CREATE TABLE compute_usage (
    id                       INTEGER PRIMARY KEY AUTOINCREMENT,
    vm_id                    TEXT NOT NULL REFERENCES user_vms(id),
    user_id                  TEXT NOT NULL,
    started_at               INTEGER NOT NULL,
    ended_at                 INTEGER,
    duration_ms              INTEGER,
    cpu_type                 TEXT NOT NULL,
    memory_mb                INTEGER NOT NULL,
    region                   TEXT NOT NULL,
    rate_centicents_per_hour INTEGER NOT NULL CHECK (rate_centicents_per_hour >= 0),
    total_centicents         INTEGER,
    CHECK (ended_at IS NULL OR ended_at >= started_at)
) STRICT;
CREATE UNIQUE INDEX compute_usage_open ON compute_usage(vm_id) WHERE ended_at IS NULL;
CREATE INDEX compute_usage_user ON compute_usage(user_id, started_at);
"#;

/// Run [`MIGRATION_SQL`] on a connection (standalone use; the main store runs it as a
/// migration instead).
pub fn apply_schema(conn: &Connection) -> Result<()> {
    conn.execute_batch(MIGRATION_SQL)
        .map_err(classify("creating the compute tables"))
}

/// Compute store errors: the main store's (full disk, SQLite, corrupt row), as the compute
/// tables live in the same database.
pub use crate::store::StoreError as ComputeStoreError;
use crate::store::classify;

/// Result alias for the compute store.
pub type Result<T> = std::result::Result<T, ComputeStoreError>;

/// Lifecycle status of a user VM (seed: provisioning, running, stopped, terminated, error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VmStatus {
    /// Row written, machine being created (or the create's outcome is not yet recorded).
    Provisioning,
    /// Machine started; usage open.
    Running,
    /// Machine stopped; no usage open.
    Stopped,
    /// Machine destroyed (final).
    Terminated,
    /// Provisioning failed or the machine was lost (final).
    Error,
}

impl VmStatus {
    /// Database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            VmStatus::Provisioning => "provisioning",
            VmStatus::Running => "running",
            VmStatus::Stopped => "stopped",
            VmStatus::Terminated => "terminated",
            VmStatus::Error => "error",
        }
    }
    /// Parse the database spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "provisioning" => VmStatus::Provisioning,
            "running" => VmStatus::Running,
            "stopped" => VmStatus::Stopped,
            "terminated" => VmStatus::Terminated,
            "error" => VmStatus::Error,
            _ => return None,
        })
    }
    /// Provisioning, running or stopped: counts against `VM_MAX_PER_USER` and may own a machine.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            VmStatus::Provisioning | VmStatus::Running | VmStatus::Stopped
        )
    }
}

impl fmt::Display for VmStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const LIVE_SQL: &str = "('provisioning', 'running', 'stopped')";

/// A user VM (seed: `UserVM`). Times are unix ms.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UserVm {
    /// Flotilla id, `vm-<ulid>`.
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// Session that asked for it.
    pub session_id: Option<String>,
    /// Fly machine id, once created.
    pub machine_id: Option<String>,
    /// Fly instance id (machine version), once created.
    pub instance_id: Option<String>,
    /// Machine name, `flotilla-<user>-<ulid>`; unique, chosen before the create call.
    pub name: String,
    /// Fly region, e.g. `iad`.
    pub region: String,
    /// Status.
    pub status: VmStatus,
    /// CPU preset, e.g. `shared-cpu-1x`.
    pub cpu_type: String,
    /// Memory, MB.
    pub memory_mb: u32,
    /// Disk, GB (rootfs only when unset).
    pub disk_gb: Option<u32>,
    /// Private 6PN IPv6 address.
    pub private_ip: Option<String>,
    /// Public IP, if one was allocated.
    pub public_ip: Option<String>,
    /// Host to SSH to (the private address).
    pub ssh_host: Option<String>,
    /// Tailscale address, once the VM reported it.
    pub tailscale_ip: Option<String>,
    /// Last user activity.
    pub last_activity_at: Option<Millis>,
    /// When the idle sweep may terminate it.
    pub auto_shutdown_at: Option<Millis>,
    /// When the row was written (before the create call).
    pub provisioned_at: Millis,
    /// Last (re)start.
    pub started_at: Option<Millis>,
    /// Last stop.
    pub stopped_at: Option<Millis>,
    /// Termination.
    pub terminated_at: Option<Millis>,
    /// Why it failed (secrets redacted).
    pub error: Option<String>,
}

/// What [`ComputeStore::insert_vm_within_limit`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVm {
    /// Flotilla id.
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// Session.
    pub session_id: Option<String>,
    /// Machine name.
    pub name: String,
    /// Region.
    pub region: String,
    /// CPU preset.
    pub cpu_type: String,
    /// Memory, MB.
    pub memory_mb: u32,
    /// Disk, GB.
    pub disk_gb: Option<u32>,
    /// Now.
    pub provisioned_at: Millis,
    /// Initial idle deadline.
    pub auto_shutdown_at: Millis,
}

/// Outcome of a limited insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Row written.
    Inserted,
    /// The user already has `active` live VMs (>= the limit); nothing written.
    LimitReached {
        /// Live VMs of the user.
        active: u32,
    },
}

/// One billable run (seed: `ComputeUsage`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ComputeUsage {
    /// Row id.
    pub id: i64,
    /// VM.
    pub vm_id: String,
    /// Owner.
    pub user_id: String,
    /// Start, unix ms.
    pub started_at: Millis,
    /// End, unix ms; `None` while running.
    pub ended_at: Option<Millis>,
    /// `ended_at - started_at`, once closed.
    pub duration_ms: Option<i64>,
    /// CPU preset.
    pub cpu_type: String,
    /// Memory, MB.
    pub memory_mb: u32,
    /// Region.
    pub region: String,
    /// Rate, centicents per hour.
    pub rate_centicents_per_hour: Centicents,
    /// `costs::cost(rate, started_at, ended_at)`, once closed.
    pub total_centicents: Option<Centicents>,
}

impl ComputeUsage {
    /// Cost of the part of this usage inside `[from, to)`, counting an open usage up to `now`.
    pub fn cost_within(&self, from: Millis, to: Millis, now: Millis) -> Centicents {
        let end = self.ended_at.unwrap_or(now);
        costs::cost_within(
            self.rate_centicents_per_hour,
            self.started_at,
            end,
            from,
            to,
        )
    }
}

const VM_COLS: &str = "id, user_id, session_id, machine_id, instance_id, name, region, status, \
    cpu_type, memory_mb, disk_gb, private_ip, public_ip, ssh_host, tailscale_ip, \
    last_activity_at, auto_shutdown_at, provisioned_at, started_at, stopped_at, terminated_at, error";

const USAGE_COLS: &str = "id, vm_id, user_id, started_at, ended_at, duration_ms, cpu_type, \
    memory_mb, region, rate_centicents_per_hour, total_centicents";

fn vm_from_row(r: &Row<'_>) -> rusqlite::Result<std::result::Result<UserVm, String>> {
    let status: String = r.get(7)?;
    let Some(status) = VmStatus::parse(&status) else {
        return Ok(Err(format!("unknown status {status:?}")));
    };
    Ok(Ok(UserVm {
        id: r.get(0)?,
        user_id: r.get(1)?,
        session_id: r.get(2)?,
        machine_id: r.get(3)?,
        instance_id: r.get(4)?,
        name: r.get(5)?,
        region: r.get(6)?,
        status,
        cpu_type: r.get(8)?,
        memory_mb: r.get(9)?,
        disk_gb: r.get(10)?,
        private_ip: r.get(11)?,
        public_ip: r.get(12)?,
        ssh_host: r.get(13)?,
        tailscale_ip: r.get(14)?,
        last_activity_at: r.get(15)?,
        auto_shutdown_at: r.get(16)?,
        provisioned_at: r.get(17)?,
        started_at: r.get(18)?,
        stopped_at: r.get(19)?,
        terminated_at: r.get(20)?,
        error: r.get(21)?,
    }))
}

fn usage_from_row(r: &Row<'_>) -> rusqlite::Result<ComputeUsage> {
    Ok(ComputeUsage {
        id: r.get(0)?,
        vm_id: r.get(1)?,
        user_id: r.get(2)?,
        started_at: r.get(3)?,
        ended_at: r.get(4)?,
        duration_ms: r.get(5)?,
        cpu_type: r.get(6)?,
        memory_mb: r.get(7)?,
        region: r.get(8)?,
        rate_centicents_per_hour: r.get(9)?,
        total_centicents: r.get(10)?,
    })
}

/// Typed queries over the compute tables.
#[derive(Debug, Clone, Copy)]
pub struct ComputeStore<'a> {
    conn: &'a Connection,
}

impl<'a> ComputeStore<'a> {
    /// Wrap a connection whose schema includes [`MIGRATION_SQL`].
    pub fn new(conn: &'a Connection) -> Self {
        ComputeStore { conn }
    }

    fn vms(&self, op: &'static str, where_: &str, p: impl rusqlite::Params) -> Result<Vec<UserVm>> {
        let sql = format!("SELECT {VM_COLS} FROM user_vms WHERE {where_}");
        let mut st = self.conn.prepare_cached(&sql).map_err(classify(op))?;
        let rows = st
            .query_map(p, vm_from_row)
            .map_err(classify(op))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(classify(op))?;
        rows.into_iter()
            .map(|r| {
                r.map_err(|reason| ComputeStoreError::Corrupt {
                    table: "user_vms",
                    reason,
                })
            })
            .collect()
    }

    /// Insert a `provisioning` row unless the user already has `max` live VMs. Count and
    /// insert are one statement, so two concurrent provisions cannot both pass the check.
    pub fn insert_vm_within_limit(&self, vm: &NewVm, max: u32) -> Result<InsertOutcome> {
        let n = self
            .conn
            .execute(
                &format!(
                    "INSERT INTO user_vms (id, user_id, session_id, name, region, status, cpu_type, \
                     memory_mb, disk_gb, last_activity_at, auto_shutdown_at, provisioned_at) \
                     SELECT ?1, ?2, ?3, ?4, ?5, 'provisioning', ?6, ?7, ?8, ?9, ?10, ?9 \
                     WHERE (SELECT count(*) FROM user_vms WHERE user_id = ?2 AND status IN {LIVE_SQL}) < ?11"
                ),
                params![
                    vm.id,
                    vm.user_id,
                    vm.session_id,
                    vm.name,
                    vm.region,
                    vm.cpu_type,
                    vm.memory_mb,
                    vm.disk_gb,
                    vm.provisioned_at,
                    vm.auto_shutdown_at,
                    max
                ],
            )
            .map_err(classify("inserting a VM"))?;
        if n == 1 {
            Ok(InsertOutcome::Inserted)
        } else {
            Ok(InsertOutcome::LimitReached {
                active: self.count_live(&vm.user_id)?,
            })
        }
    }

    /// Live (provisioning/running/stopped) VMs of a user.
    pub fn count_live(&self, user_id: &str) -> Result<u32> {
        self.conn
            .query_row(
                &format!(
                    "SELECT count(*) FROM user_vms WHERE user_id = ?1 AND status IN {LIVE_SQL}"
                ),
                [user_id],
                |r| r.get(0),
            )
            .map_err(classify("counting VMs"))
    }

    /// One VM by id.
    pub fn get_vm(&self, id: &str) -> Result<Option<UserVm>> {
        Ok(self.vms("reading a VM", "id = ?1", [id])?.pop())
    }

    /// One VM by machine name.
    pub fn find_vm_by_name(&self, name: &str) -> Result<Option<UserVm>> {
        Ok(self.vms("reading a VM", "name = ?1", [name])?.pop())
    }

    /// One VM by Fly machine id.
    pub fn find_vm_by_machine(&self, machine_id: &str) -> Result<Option<UserVm>> {
        Ok(self
            .vms("reading a VM", "machine_id = ?1", [machine_id])?
            .pop())
    }

    /// A user's VMs, newest first; terminated ones only if asked.
    pub fn list_vms(&self, user_id: &str, include_terminated: bool) -> Result<Vec<UserVm>> {
        let w = if include_terminated {
            "user_id = ?1 ORDER BY provisioned_at DESC, id DESC"
        } else {
            "user_id = ?1 AND status != 'terminated' ORDER BY provisioned_at DESC, id DESC"
        };
        self.vms("listing VMs", w, [user_id])
    }

    /// Every user's VMs, newest first (terminated ones only with `include_terminated`).
    pub fn list_all(&self, include_terminated: bool) -> Result<Vec<UserVm>> {
        let w = if include_terminated {
            "1 = 1 ORDER BY provisioned_at DESC, id DESC"
        } else {
            "status != 'terminated' ORDER BY provisioned_at DESC, id DESC"
        };
        self.vms("listing VMs", w, [])
    }

    /// All live VMs, oldest first.
    pub fn live_vms(&self) -> Result<Vec<UserVm>> {
        self.vms(
            "listing live VMs",
            &format!("status IN {LIVE_SQL} ORDER BY provisioned_at, id"),
            [],
        )
    }

    /// Record the machine a create returned (status unchanged).
    pub fn record_machine(
        &self,
        vm_id: &str,
        machine_id: &str,
        instance_id: Option<&str>,
        private_ip: Option<&str>,
    ) -> Result<()> {
        self.conn
            .execute(
                "UPDATE user_vms SET machine_id = ?2, instance_id = ?3, \
                 private_ip = coalesce(?4, private_ip), ssh_host = coalesce(?4, ssh_host) \
                 WHERE id = ?1",
                params![vm_id, machine_id, instance_id, private_ip],
            )
            .map_err(classify("recording a machine"))?;
        Ok(())
    }

    fn tx(&self, op: &'static str) -> Result<rusqlite::Transaction<'a>> {
        self.conn.unchecked_transaction().map_err(classify(op))
    }

    /// Mark a live VM running from `since` (unix ms) and open its usage at `since` with `rate`
    /// unless one is open. Idempotent. Returns whether the row was live.
    pub fn mark_running(&self, vm_id: &str, since: Millis, rate: Centicents) -> Result<bool> {
        let op = "marking a VM running";
        let tx = self.tx(op)?;
        let n = tx
            .execute(
                &format!(
                    "UPDATE user_vms SET status = 'running', \
                     started_at = CASE WHEN status = 'running' THEN started_at ELSE ?2 END \
                     WHERE id = ?1 AND status IN {LIVE_SQL}"
                ),
                params![vm_id, since],
            )
            .map_err(classify(op))?;
        if n == 1 {
            tx.execute(
                "INSERT INTO compute_usage (vm_id, user_id, started_at, cpu_type, memory_mb, \
                 region, rate_centicents_per_hour) \
                 SELECT id, user_id, ?2, cpu_type, memory_mb, region, ?3 FROM user_vms \
                 WHERE id = ?1 AND NOT EXISTS \
                   (SELECT 1 FROM compute_usage WHERE vm_id = ?1 AND ended_at IS NULL)",
                params![vm_id, since, rate],
            )
            .map_err(classify(op))?;
        }
        tx.commit().map_err(classify(op))?;
        Ok(n == 1)
    }

    fn close_usage(tx: &Connection, vm_id: &str, now: Millis, op: &'static str) -> Result<()> {
        let open: Option<(i64, Millis, Centicents)> = tx
            .query_row(
                "SELECT id, started_at, rate_centicents_per_hour FROM compute_usage \
                 WHERE vm_id = ?1 AND ended_at IS NULL",
                [vm_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(classify(op))?;
        if let Some((id, start, rate)) = open {
            let end = now.max(start);
            tx.execute(
                "UPDATE compute_usage SET ended_at = ?2, duration_ms = ?3, total_centicents = ?4 \
                 WHERE id = ?1",
                params![id, end, end - start, costs::cost(rate, start, end)],
            )
            .map_err(classify(op))?;
        }
        Ok(())
    }

    /// Mark a live VM stopped at `now` and close its usage. Returns whether the row was live.
    pub fn mark_stopped(&self, vm_id: &str, now: Millis) -> Result<bool> {
        let op = "marking a VM stopped";
        let tx = self.tx(op)?;
        let n = tx
            .execute(
                &format!(
                    "UPDATE user_vms SET status = 'stopped', stopped_at = ?2 \
                     WHERE id = ?1 AND status IN {LIVE_SQL}"
                ),
                params![vm_id, now],
            )
            .map_err(classify(op))?;
        Self::close_usage(&tx, vm_id, now, op)?;
        tx.commit().map_err(classify(op))?;
        Ok(n == 1)
    }

    /// Mark a VM terminated at `now` (with an optional note in `error`) and close its usage.
    /// Idempotent: a terminated row keeps its first `terminated_at`. Returns whether it changed.
    pub fn mark_terminated(&self, vm_id: &str, now: Millis, note: Option<&str>) -> Result<bool> {
        let op = "marking a VM terminated";
        let tx = self.tx(op)?;
        let n = tx
            .execute(
                "UPDATE user_vms SET status = 'terminated', terminated_at = ?2, \
                 stopped_at = coalesce(stopped_at, ?2), auto_shutdown_at = NULL, \
                 error = coalesce(?3, error) \
                 WHERE id = ?1 AND status != 'terminated'",
                params![vm_id, now, note],
            )
            .map_err(classify(op))?;
        Self::close_usage(&tx, vm_id, now, op)?;
        tx.commit().map_err(classify(op))?;
        Ok(n == 1)
    }

    /// Mark a non-terminated VM `error` with a message (secrets already redacted) and close its
    /// usage. Returns whether it changed.
    pub fn mark_error(&self, vm_id: &str, now: Millis, message: &str) -> Result<bool> {
        let op = "marking a VM failed";
        let tx = self.tx(op)?;
        let n = tx
            .execute(
                "UPDATE user_vms SET status = 'error', error = ?3, auto_shutdown_at = NULL, \
                 stopped_at = CASE WHEN status = 'running' THEN ?2 ELSE stopped_at END \
                 WHERE id = ?1 AND status NOT IN ('terminated', 'error')",
                params![vm_id, now, message],
            )
            .map_err(classify(op))?;
        Self::close_usage(&tx, vm_id, now, op)?;
        tx.commit().map_err(classify(op))?;
        Ok(n == 1)
    }

    /// Record activity at `now` and move the idle deadline to `shutdown_at`. Only live VMs;
    /// returns whether the row was live.
    pub fn touch_activity(&self, vm_id: &str, now: Millis, shutdown_at: Millis) -> Result<bool> {
        let n = self
            .conn
            .execute(
                &format!(
                    "UPDATE user_vms SET last_activity_at = ?2, auto_shutdown_at = ?3 \
                     WHERE id = ?1 AND status IN {LIVE_SQL}"
                ),
                params![vm_id, now, shutdown_at],
            )
            .map_err(classify("recording VM activity"))?;
        Ok(n == 1)
    }

    /// Set the Tailscale address a VM reported.
    pub fn set_tailscale_ip(&self, vm_id: &str, ip: Option<&str>) -> Result<()> {
        self.conn
            .execute(
                "UPDATE user_vms SET tailscale_ip = ?2 WHERE id = ?1",
                params![vm_id, ip],
            )
            .map_err(classify("recording a Tailscale address"))?;
        Ok(())
    }

    /// Usage rows of one VM, oldest first.
    pub fn usage_for_vm(&self, vm_id: &str) -> Result<Vec<ComputeUsage>> {
        let op = "reading usage";
        let mut st = self
            .conn
            .prepare_cached(&format!(
                "SELECT {USAGE_COLS} FROM compute_usage WHERE vm_id = ?1 ORDER BY started_at, id"
            ))
            .map_err(classify(op))?;
        st.query_map([vm_id], usage_from_row)
            .map_err(classify(op))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(classify(op))
    }

    /// A user's usage rows overlapping `[from, to)` (open rows count as running until now).
    pub fn usage_overlapping(
        &self,
        user_id: &str,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<ComputeUsage>> {
        let op = "reading usage";
        let mut st = self
            .conn
            .prepare_cached(&format!(
                "SELECT {USAGE_COLS} FROM compute_usage WHERE user_id = ?1 AND started_at < ?3 \
                 AND (ended_at IS NULL OR ended_at > ?2) ORDER BY started_at, id"
            ))
            .map_err(classify(op))?;
        st.query_map(params![user_id, from, to], usage_from_row)
            .map_err(classify(op))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(classify(op))
    }

    /// Every user's usage rows overlapping `[from, to)`.
    pub fn usage_overlapping_all(&self, from: Millis, to: Millis) -> Result<Vec<ComputeUsage>> {
        let op = "reading usage";
        let mut st = self
            .conn
            .prepare_cached(&format!(
                "SELECT {USAGE_COLS} FROM compute_usage WHERE started_at < ?2 \
                 AND (ended_at IS NULL OR ended_at > ?1) ORDER BY started_at, id"
            ))
            .map_err(classify(op))?;
        st.query_map(params![from, to], usage_from_row)
            .map_err(classify(op))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(classify(op))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.pragma_update(None, "foreign_keys", "ON").unwrap();
        apply_schema(&c).unwrap();
        c
    }

    fn new_vm(id: &str, user: &str, t: Millis) -> NewVm {
        NewVm {
            id: id.into(),
            user_id: user.into(),
            session_id: None,
            name: format!("flotilla-{user}-{id}"),
            region: "iad".into(),
            cpu_type: "shared-cpu-1x".into(),
            memory_mb: 1024,
            disk_gb: None,
            provisioned_at: t,
            auto_shutdown_at: t + 1_800_000,
        }
    }

    #[test]
    fn limit_is_enforced_in_one_statement() {
        let c = db();
        let s = ComputeStore::new(&c);
        for i in 0..3 {
            assert_eq!(
                s.insert_vm_within_limit(&new_vm(&format!("vm-{i}"), "alice", 0), 3)
                    .unwrap(),
                InsertOutcome::Inserted
            );
        }
        assert_eq!(
            s.insert_vm_within_limit(&new_vm("vm-3", "alice", 0), 3)
                .unwrap(),
            InsertOutcome::LimitReached { active: 3 }
        );
        assert!(s.get_vm("vm-3").unwrap().is_none());
        // Terminated VMs free a slot; other users are independent.
        s.mark_terminated("vm-0", 5, None).unwrap();
        assert_eq!(
            s.insert_vm_within_limit(&new_vm("vm-3", "alice", 0), 3)
                .unwrap(),
            InsertOutcome::Inserted
        );
        assert_eq!(
            s.insert_vm_within_limit(&new_vm("vm-b", "bob", 0), 3)
                .unwrap(),
            InsertOutcome::Inserted
        );
    }

    #[test]
    fn usage_opens_and_closes_with_exact_totals() {
        let c = db();
        let s = ComputeStore::new(&c);
        s.insert_vm_within_limit(&new_vm("vm-1", "alice", 1_000), 3)
            .unwrap();
        s.record_machine("vm-1", "m1", Some("i1"), Some("fdaa::2"))
            .unwrap();
        assert!(s.mark_running("vm-1", 1_000, 79).unwrap());
        // Idempotent: a second mark_running does not open a second usage.
        assert!(s.mark_running("vm-1", 2_000, 79).unwrap());
        assert_eq!(s.usage_for_vm("vm-1").unwrap().len(), 1);
        let hour = 3_600_000;
        s.mark_stopped("vm-1", 1_000 + hour).unwrap();
        s.mark_running("vm-1", 1_000 + 2 * hour, 79).unwrap();
        s.mark_terminated("vm-1", 1_000 + 4 * hour, None).unwrap();
        let u = s.usage_for_vm("vm-1").unwrap();
        assert_eq!(u.len(), 2);
        assert_eq!(u[0].total_centicents, Some(79));
        assert_eq!(u[1].total_centicents, Some(158));
        assert_eq!(u[1].duration_ms, Some(2 * hour));
        let vm = s.get_vm("vm-1").unwrap().unwrap();
        assert_eq!(vm.status, VmStatus::Terminated);
        assert_eq!(vm.ssh_host.as_deref(), Some("fdaa::2"));
        // Terminating twice changes nothing.
        assert!(!s.mark_terminated("vm-1", 9 * hour, Some("again")).unwrap());
        assert_eq!(
            s.get_vm("vm-1").unwrap().unwrap().terminated_at,
            Some(1_000 + 4 * hour)
        );
        assert!(!s.touch_activity("vm-1", 1, 2).unwrap());
        // Overlap queries clip correctly.
        let o = s
            .usage_overlapping("alice", 1_000 + hour, 1_000 + 3 * hour)
            .unwrap();
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].cost_within(1_000, 1_000 + 3 * hour, 0), 79);
    }

    #[test]
    fn one_open_usage_per_vm_is_a_constraint() {
        let c = db();
        let s = ComputeStore::new(&c);
        s.insert_vm_within_limit(&new_vm("vm-1", "a", 0), 3)
            .unwrap();
        s.mark_running("vm-1", 0, 1).unwrap();
        let e = c.execute(
            "INSERT INTO compute_usage (vm_id, user_id, started_at, cpu_type, memory_mb, region, \
             rate_centicents_per_hour) VALUES ('vm-1', 'a', 5, 'x', 1, 'r', 1)",
            [],
        );
        assert!(e.is_err());
        let e = c.execute("UPDATE user_vms SET status = 'bogus'", []);
        assert!(e.is_err(), "status CHECK");
    }

    #[test]
    fn error_rows_close_usage_and_keep_the_message() {
        let c = db();
        let s = ComputeStore::new(&c);
        s.insert_vm_within_limit(&new_vm("vm-1", "a", 0), 3)
            .unwrap();
        s.mark_running("vm-1", 0, 36_000).unwrap();
        assert!(s.mark_error("vm-1", 1_000, "lost").unwrap());
        let vm = s.get_vm("vm-1").unwrap().unwrap();
        assert_eq!(
            (vm.status, vm.error.as_deref()),
            (VmStatus::Error, Some("lost"))
        );
        assert_eq!(
            s.usage_for_vm("vm-1").unwrap()[0].total_centicents,
            Some(10)
        );
        assert!(!s.mark_error("vm-1", 2_000, "again").unwrap());
        assert_eq!(s.count_live("a").unwrap(), 0);
    }

    #[test]
    fn corrupt_status_is_reported() {
        let c = Connection::open_in_memory().unwrap();
        // Same columns without the CHECK, to simulate a row written by a future version.
        c.execute_batch(&MIGRATION_SQL.replace(
            "CHECK (status IN ('provisioning', 'running', 'stopped', 'terminated', 'error'))",
            "",
        ))
        .unwrap();
        c.execute(
            "INSERT INTO user_vms (id, user_id, name, region, status, cpu_type, memory_mb, provisioned_at) \
             VALUES ('v', 'u', 'n', 'r', 'hibernating', 'c', 256, 0)",
            [],
        )
        .unwrap();
        let e = ComputeStore::new(&c).get_vm("v").unwrap_err();
        assert!(e.to_string().contains("hibernating"), "{e}");
    }
}
