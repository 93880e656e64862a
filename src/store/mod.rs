//! SQLite store: everything that must survive a restart.
//!
//! One database file in the data dir, WAL journal, `synchronous = FULL` (a commit is on disk
//! before the engine acknowledges it), foreign keys on, versioned migrations through
//! `rusqlite_migration` (schema version in `PRAGMA user_version`). Timestamps are unix
//! milliseconds (UTC). A full disk surfaces as [`StoreError::Full`], and the operation that hit
//! it is rolled back: nothing half-written, nothing acknowledged.

pub mod mesh;

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Row, params};
use rusqlite_migration::{M, Migrations};

use crate::clock::Millis;
use crate::sched::workflow::{TaskSpec, TaskState, WorkflowStatus, WorkflowTag};

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The disk (or the database's page limit) is full; the operation was rolled back.
    #[error(
        "store is full while {op}: free disk space in the data dir and retry; nothing was written"
    )]
    Full {
        /// What was being written.
        op: &'static str,
    },
    /// Another SQLite error.
    #[error("store error while {op}: {source}")]
    Sqlite {
        /// What was being done.
        op: &'static str,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// Schema migration failed.
    #[error("cannot migrate the store schema: {0}; is this data dir from a newer flotilla?")]
    Migration(String),
    /// A row holds data this version cannot read.
    #[error("corrupt row in {table}: {reason}")]
    Corrupt {
        /// Table name.
        table: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Map a SQLite error of operation `op` to [`StoreError`]: `Full` for a full disk (or page
/// limit), `Sqlite` otherwise. Shared by every module store in this database.
pub(crate) fn classify(op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => StoreError::Full { op },
        _ => StoreError::Sqlite { op, source: e },
    }
}

/// Result alias for store operations.
pub type Result<T> = std::result::Result<T, StoreError>;

fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(
            r#"
        CREATE TABLE workflows (
            id          TEXT PRIMARY KEY,
            name        TEXT NOT NULL,
            tag         TEXT NOT NULL,
            priority    INTEGER NOT NULL,
            created_at  INTEGER NOT NULL,
            finished_at INTEGER,
            status      TEXT NOT NULL,
            source      TEXT NOT NULL DEFAULT 'local'
        ) STRICT;
        CREATE INDEX workflows_status ON workflows(status, created_at);
        CREATE TABLE tasks (
            seq         INTEGER PRIMARY KEY AUTOINCREMENT,
            id          TEXT NOT NULL UNIQUE,
            workflow_id TEXT NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
            idx         INTEGER NOT NULL,
            spec        TEXT NOT NULL,
            priority    INTEGER NOT NULL,
            state       TEXT NOT NULL,
            enqueued_at INTEGER NOT NULL,
            started_at  INTEGER,
            finished_at INTEGER,
            attempts    INTEGER NOT NULL DEFAULT 0,
            retried     INTEGER NOT NULL DEFAULT 0,
            exit_code   INTEGER,
            signal      INTEGER,
            duration_ms INTEGER,
            output      TEXT,
            output_truncated INTEGER NOT NULL DEFAULT 0,
            error       TEXT,
            owner       TEXT
        ) STRICT;
        CREATE INDEX tasks_workflow ON tasks(workflow_id, idx);
        CREATE INDEX tasks_state ON tasks(state);
        "#,
        ),
        M::up(crate::compute::store::MIGRATION_SQL),
        M::up(crate::github::cache::MIGRATION_SQL),
        M::up(crate::orchestrator::store::MIGRATION_SQL),
        M::up(crate::autoscaler::store::MIGRATION_SQL),
        M::up(mesh::MIGRATION_SQL),
    ])
}

/// A stored workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowRow {
    /// Workflow id, e.g. `wf-01jd...`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Tag.
    pub tag: WorkflowTag,
    /// Priority as submitted, 0..=1000.
    pub priority: u16,
    /// Submission time (unix ms).
    pub created_at: Millis,
    /// When it reached a terminal status (unix ms).
    pub finished_at: Option<Millis>,
    /// Status as last derived.
    pub status: WorkflowStatus,
    /// Who submitted it: `mcp`, `tui`, `cli`.
    pub source: String,
}

/// A stored task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    /// Global submission sequence (FIFO tie-break in the queue).
    pub seq: u64,
    /// Task id, `<workflow id>.<index>`.
    pub id: String,
    /// Owning workflow.
    pub workflow_id: String,
    /// Index within the workflow.
    pub idx: u32,
    /// What to run.
    pub spec: TaskSpec,
    /// Current base priority, 0..=1000.
    pub priority: u16,
    /// State.
    pub state: TaskState,
    /// When it (last) entered the queue, unix ms.
    pub enqueued_at: Millis,
    /// When its current/last attempt started.
    pub started_at: Option<Millis>,
    /// When it finished.
    pub finished_at: Option<Millis>,
    /// Attempts started.
    pub attempts: u32,
    /// Times it was re-queued after its node stopped mid-run.
    pub retried: u32,
    /// Exit status, if it exited.
    pub exit_code: Option<i32>,
    /// Terminating signal, if killed.
    pub signal: Option<i32>,
    /// Run time of the last attempt, ms.
    pub duration_ms: Option<i64>,
    /// Why it failed to start or was stopped.
    pub error: Option<String>,
    /// Peer ID (or node name) that ran or runs it.
    pub owner: Option<String>,
}

/// What a finished attempt recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskOutcome {
    /// Terminal state.
    pub state: TaskState,
    /// Exit status.
    pub exit_code: Option<i32>,
    /// Terminating signal.
    pub signal: Option<i32>,
    /// Run time, ms.
    pub duration_ms: i64,
    /// Tail of combined stdout/stderr.
    pub output: String,
    /// Whether output was cut to its tail.
    pub output_truncated: bool,
    /// Failure reason (spawn error, timeout, cancel).
    pub error: Option<String>,
}

/// Counts of tasks and workflows by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Counts {
    /// Workflows by status name.
    pub workflows: std::collections::BTreeMap<String, u64>,
    /// Tasks by state name.
    pub tasks: std::collections::BTreeMap<String, u64>,
}

/// The SQLite store.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

const TASK_COLS: &str = "seq, id, workflow_id, idx, spec, priority, state, enqueued_at, started_at, \
     finished_at, attempts, retried, exit_code, signal, duration_ms, error, owner";

impl Store {
    /// Open (creating if needed) the database at `path`, set WAL and migrate to the latest
    /// schema.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path).map_err(classify("opening the database"))?;
        Self::init(conn)
    }

    /// An in-memory store, for tests.
    pub fn open_in_memory() -> Result<Self> {
        let conn = Connection::open_in_memory().map_err(classify("opening the database"))?;
        Self::init(conn)
    }

    fn init(mut conn: Connection) -> Result<Self> {
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(classify("setting WAL mode"))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(classify("setting synchronous"))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(classify("enabling foreign keys"))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(classify("setting busy timeout"))?;
        migrations()
            .to_latest(&mut conn)
            .map_err(|e| StoreError::Migration(e.to_string()))?;
        Ok(Self { conn })
    }

    /// Schema version (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<i64> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(classify("reading schema version"))
    }

    /// The journal mode in force (`wal` expected).
    pub fn journal_mode(&self) -> Result<String> {
        self.conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .map_err(classify("reading journal mode"))
    }

    /// Cap the database file at about `bytes` (rounded down to whole pages; at least the
    /// current size). Writes beyond it fail with [`StoreError::Full`].
    pub fn set_max_bytes(&self, bytes: u64) -> Result<()> {
        let page: i64 = self
            .conn
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .map_err(classify("reading page size"))?;
        self.set_max_page_count(bytes / page.max(1) as u64)
    }

    /// Limit the database size in pages (SQLite keeps at least the current page count).
    pub fn set_max_page_count(&self, pages: u64) -> Result<()> {
        self.conn
            .pragma_update(None, "max_page_count", pages as i64)
            .map_err(classify("setting max_page_count"))
    }

    /// The connection, for module stores that keep their own tables in this database
    /// (e.g. [`crate::compute::ComputeStore`]). Do not hold it across an engine command.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Run `SELECT 1` to check the connection answers.
    pub fn ping(&self) -> Result<()> {
        self.conn
            .query_row("SELECT 1", [], |_| Ok(()))
            .map_err(classify("pinging"))
    }

    /// Insert a workflow and its tasks in one transaction; returns the task rows with their
    /// sequence numbers. Nothing is written if any insert fails.
    #[allow(clippy::too_many_arguments)]
    pub fn insert_workflow(
        &mut self,
        id: &str,
        name: &str,
        tag: WorkflowTag,
        priority: u16,
        tasks: &[TaskSpec],
        source: &str,
        now: Millis,
    ) -> Result<Vec<TaskRow>> {
        let tx = self
            .conn
            .savepoint()
            .map_err(classify("starting a transaction"))?;
        tx.execute(
            "INSERT INTO workflows (id, name, tag, priority, created_at, status, source) \
             VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6)",
            params![id, name, tag.as_str(), priority, now, source],
        )
        .map_err(classify("inserting a workflow"))?;
        let mut rows = Vec::with_capacity(tasks.len());
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO tasks (id, workflow_id, idx, spec, priority, state, enqueued_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6)",
                )
                .map_err(classify("preparing task insert"))?;
            for (i, t) in tasks.iter().enumerate() {
                let tid = format!("{id}.{i}");
                let spec = serde_json::to_string(t).map_err(|e| StoreError::Corrupt {
                    table: "tasks",
                    reason: e.to_string(),
                })?;
                stmt.execute(params![tid, id, i as i64, spec, priority, now])
                    .map_err(classify("inserting a task"))?;
                rows.push(TaskRow {
                    seq: tx.last_insert_rowid() as u64,
                    id: tid,
                    workflow_id: id.into(),
                    idx: i as u32,
                    spec: t.clone(),
                    priority,
                    state: TaskState::Queued,
                    enqueued_at: now,
                    started_at: None,
                    finished_at: None,
                    attempts: 0,
                    retried: 0,
                    exit_code: None,
                    signal: None,
                    duration_ms: None,
                    error: None,
                    owner: None,
                });
            }
        }
        tx.commit().map_err(classify("committing a workflow"))?;
        Ok(rows)
    }

    /// Tasks that were running when the engine last stopped become queued again, with
    /// `retried` incremented. Returns how many. Mesh tasks are left to the mesh scheduler: a
    /// `running` one may be running on another peer.
    pub fn requeue_interrupted(&mut self) -> Result<usize> {
        self.conn
            .execute(
                "UPDATE tasks SET state = 'queued', retried = retried + 1, started_at = NULL, \
                 owner = NULL WHERE state = 'running' AND workflow_id NOT IN \
                 (SELECT workflow_id FROM mesh_workflows)",
                [],
            )
            .map_err(classify("re-queueing interrupted tasks"))
    }

    /// All queued tasks, in sequence order.
    pub fn queued_tasks(&self) -> Result<Vec<TaskRow>> {
        self.query_tasks(
            &format!("SELECT {TASK_COLS} FROM tasks WHERE state = 'queued' ORDER BY seq"),
            [],
        )
    }

    /// Record that an attempt started.
    pub fn mark_started(&mut self, task_id: &str, owner: &str, now: Millis) -> Result<()> {
        self.conn
            .execute(
                "UPDATE tasks SET state = 'running', started_at = ?2, attempts = attempts + 1, \
                 owner = ?3 WHERE id = ?1",
                params![task_id, now, owner],
            )
            .map_err(classify("marking a task started"))?;
        Ok(())
    }

    /// Record a finished attempt.
    pub fn mark_finished(&mut self, task_id: &str, o: &TaskOutcome, now: Millis) -> Result<()> {
        self.conn
            .execute(
                "UPDATE tasks SET state = ?2, exit_code = ?3, signal = ?4, duration_ms = ?5, \
                 output = ?6, output_truncated = ?7, error = ?8, finished_at = ?9 WHERE id = ?1",
                params![
                    task_id,
                    o.state.as_str(),
                    o.exit_code,
                    o.signal,
                    o.duration_ms,
                    o.output,
                    o.output_truncated,
                    o.error,
                    now
                ],
            )
            .map_err(classify("recording a task result"))?;
        Ok(())
    }

    /// Mark queued tasks of a workflow cancelled (running ones are handled by the engine
    /// when their process exits). Returns the ids changed.
    pub fn cancel_queued(&mut self, workflow_id: &str, now: Millis) -> Result<Vec<String>> {
        let tx = self
            .conn
            .savepoint()
            .map_err(classify("starting a transaction"))?;
        let ids: Vec<String> = {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT id FROM tasks WHERE workflow_id = ?1 AND state = 'queued' ORDER BY idx",
                )
                .map_err(classify("listing tasks to cancel"))?;
            stmt.query_map([workflow_id], |r| r.get(0))
                .map_err(classify("listing tasks to cancel"))?
                .collect::<std::result::Result<_, _>>()
                .map_err(classify("listing tasks to cancel"))?
        };
        tx.execute(
            "UPDATE tasks SET state = 'cancelled', finished_at = ?2, error = 'cancelled while queued' \
             WHERE workflow_id = ?1 AND state = 'queued'",
            params![workflow_id, now],
        )
        .map_err(classify("cancelling tasks"))?;
        tx.commit().map_err(classify("committing a cancel"))?;
        Ok(ids)
    }

    /// Set a task's base priority.
    pub fn set_task_priority(&mut self, task_id: &str, priority: u16) -> Result<()> {
        self.conn
            .execute(
                "UPDATE tasks SET priority = ?2 WHERE id = ?1",
                params![task_id, priority],
            )
            .map_err(classify("setting a task priority"))?;
        Ok(())
    }

    /// Store a workflow's derived status (and finish time when terminal).
    pub fn set_workflow_status(
        &mut self,
        id: &str,
        status: WorkflowStatus,
        now: Millis,
    ) -> Result<()> {
        let fin = status.is_terminal().then_some(now);
        self.conn
            .execute(
                "UPDATE workflows SET status = ?2, finished_at = COALESCE(finished_at, ?3) WHERE id = ?1",
                params![id, status.as_str(), fin],
            )
            .map_err(classify("updating a workflow status"))?;
        Ok(())
    }

    /// One workflow by id.
    pub fn workflow(&self, id: &str) -> Result<Option<WorkflowRow>> {
        self.conn
            .query_row(
                "SELECT id, name, tag, priority, created_at, finished_at, status, source \
                 FROM workflows WHERE id = ?1",
                [id],
                workflow_from_row,
            )
            .optional()
            .map_err(classify("reading a workflow"))
    }

    /// Workflows, newest first, optionally filtered by status and tag; at most `limit`.
    pub fn list_workflows(
        &self,
        status: Option<WorkflowStatus>,
        tag: Option<WorkflowTag>,
        limit: usize,
    ) -> Result<Vec<WorkflowRow>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, name, tag, priority, created_at, finished_at, status, source \
                 FROM workflows WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR tag = ?2) \
                 ORDER BY created_at DESC, id DESC LIMIT ?3",
            )
            .map_err(classify("listing workflows"))?;
        stmt.query_map(
            params![
                status.map(|s| s.as_str()),
                tag.map(|t| t.as_str()),
                limit as i64
            ],
            workflow_from_row,
        )
        .map_err(classify("listing workflows"))?
        .collect::<std::result::Result<_, _>>()
        .map_err(classify("listing workflows"))
    }

    /// A workflow's tasks in index order.
    pub fn tasks_of(&self, workflow_id: &str) -> Result<Vec<TaskRow>> {
        self.query_tasks(
            &format!("SELECT {TASK_COLS} FROM tasks WHERE workflow_id = ?1 ORDER BY idx"),
            [workflow_id],
        )
    }

    /// One task by id.
    pub fn task(&self, task_id: &str) -> Result<Option<TaskRow>> {
        Ok(self
            .query_tasks(
                &format!("SELECT {TASK_COLS} FROM tasks WHERE id = ?1"),
                [task_id],
            )?
            .pop())
    }

    /// The stored output tail of a task and whether it was truncated.
    pub fn task_output(&self, task_id: &str) -> Result<Option<(String, bool)>> {
        self.conn
            .query_row(
                "SELECT COALESCE(output, ''), output_truncated FROM tasks WHERE id = ?1",
                [task_id],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? != 0)),
            )
            .optional()
            .map_err(classify("reading task output"))
    }

    /// Recently finished tasks (newest first), for the Queue pane's history.
    pub fn recent_finished_tasks(&self, limit: usize) -> Result<Vec<TaskRow>> {
        self.query_tasks(
            &format!(
                "SELECT {TASK_COLS} FROM tasks WHERE finished_at IS NOT NULL \
                 ORDER BY finished_at DESC, seq DESC LIMIT ?1"
            ),
            [limit as i64],
        )
    }

    /// Counts of workflows and tasks by state.
    pub fn counts(&self) -> Result<Counts> {
        let mut c = Counts::default();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT status, COUNT(*) FROM workflows GROUP BY status")
            .map_err(classify("counting workflows"))?;
        for r in stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(classify("counting workflows"))?
        {
            let (k, n) = r.map_err(classify("counting workflows"))?;
            c.workflows.insert(k, n as u64);
        }
        let mut stmt = self
            .conn
            .prepare_cached("SELECT state, COUNT(*) FROM tasks GROUP BY state")
            .map_err(classify("counting tasks"))?;
        for r in stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(classify("counting tasks"))?
        {
            let (k, n) = r.map_err(classify("counting tasks"))?;
            c.tasks.insert(k, n as u64);
        }
        Ok(c)
    }

    fn query_tasks<P: rusqlite::Params>(&self, sql: &str, p: P) -> Result<Vec<TaskRow>> {
        let mut stmt = self
            .conn
            .prepare_cached(sql)
            .map_err(classify("reading tasks"))?;
        let rows = stmt
            .query_map(p, task_from_row)
            .map_err(classify("reading tasks"))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(classify("reading tasks"))?;
        Ok(rows)
    }
}

fn bad(col: usize, e: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        col,
        rusqlite::types::Type::Text,
        e.to_string().into(),
    )
}

fn workflow_from_row(r: &Row<'_>) -> rusqlite::Result<WorkflowRow> {
    let tag: String = r.get(2)?;
    let status: String = r.get(6)?;
    Ok(WorkflowRow {
        id: r.get(0)?,
        name: r.get(1)?,
        tag: tag.parse().map_err(|e| bad(2, e))?,
        priority: r.get(3)?,
        created_at: r.get(4)?,
        finished_at: r.get(5)?,
        status: status.parse().map_err(|e| bad(6, e))?,
        source: r.get(7)?,
    })
}

fn task_from_row(r: &Row<'_>) -> rusqlite::Result<TaskRow> {
    let spec: String = r.get(4)?;
    let state: String = r.get(6)?;
    Ok(TaskRow {
        seq: r.get::<_, i64>(0)? as u64,
        id: r.get(1)?,
        workflow_id: r.get(2)?,
        idx: r.get(3)?,
        spec: serde_json::from_str(&spec).map_err(|e| bad(4, e))?,
        priority: r.get(5)?,
        state: state.parse().map_err(|e| bad(6, e))?,
        enqueued_at: r.get(7)?,
        started_at: r.get(8)?,
        finished_at: r.get(9)?,
        attempts: r.get(10)?,
        retried: r.get(11)?,
        exit_code: r.get(12)?,
        signal: r.get(13)?,
        duration_ms: r.get(14)?,
        error: r.get(15)?,
        owner: r.get(16)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cmd: &str) -> TaskSpec {
        TaskSpec {
            command: vec![cmd.into()],
            env: Default::default(),
            timeout_s: None,
            requires: vec![],
        }
    }

    #[test]
    fn migrations_are_valid() {
        migrations().validate().unwrap();
    }

    #[test]
    fn wal_and_schema_on_disk() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("db")).unwrap();
        assert_eq!(s.journal_mode().unwrap(), "wal");
        assert_eq!(
            s.schema_version().unwrap(),
            6,
            "1: queue, 2: compute, 3: GitHub cache, 4: orchestrator, 5: autoscaler, 6: mesh"
        );
    }

    #[test]
    fn workflow_round_trip_and_requeue() {
        let mut s = Store::open_in_memory().unwrap();
        let rows = s
            .insert_workflow(
                "wf-1",
                "w",
                WorkflowTag::UnitTest,
                7,
                &[spec("a"), spec("b")],
                "cli",
                100,
            )
            .unwrap();
        assert_eq!(rows.len(), 2);
        assert!(rows[0].seq < rows[1].seq);
        s.mark_started("wf-1.0", "node", 110).unwrap();
        assert_eq!(s.requeue_interrupted().unwrap(), 1);
        let q = s.queued_tasks().unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(q[0].retried, 1);
        assert_eq!(q[0].attempts, 1);
        let w = s.workflow("wf-1").unwrap().unwrap();
        assert_eq!(w.tag, WorkflowTag::UnitTest);
        assert_eq!(s.list_workflows(None, None, 10).unwrap().len(), 1);
        assert_eq!(
            s.list_workflows(Some(WorkflowStatus::Completed), None, 10)
                .unwrap()
                .len(),
            0
        );
        let ids = s.cancel_queued("wf-1", 200).unwrap();
        assert_eq!(ids, ["wf-1.0", "wf-1.1"]);
        assert_eq!(s.counts().unwrap().tasks["cancelled"], 2);
    }

    #[test]
    fn full_disk_is_clear_error_and_writes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Store::open(&d.path().join("db")).unwrap();
        let pages: i64 = s
            .conn
            .pragma_query_value(None, "page_count", |r| r.get(0))
            .unwrap();
        s.set_max_page_count(pages as u64).unwrap();
        let big: Vec<TaskSpec> = (0..2000)
            .map(|i| spec(&format!("{i}-{}", "x".repeat(200))))
            .collect();
        let err = s
            .insert_workflow("wf-big", "w", WorkflowTag::UnitTest, 1, &big, "cli", 1)
            .unwrap_err();
        assert!(matches!(err, StoreError::Full { .. }), "{err}");
        assert!(err.to_string().contains("free disk space"), "{err}");
        assert!(s.workflow("wf-big").unwrap().is_none());
        assert!(s.tasks_of("wf-big").unwrap().is_empty());
    }
}
