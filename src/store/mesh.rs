//! What the mesh scheduler keeps across restarts: which workflows came through the mesh (and
//! their origin), every mesh task's lease and recorded completion, and this node's Merkle
//! clock. Task rows themselves are the ordinary `tasks` rows, so every face reads a mesh
//! workflow like a local one.

use rusqlite::{OptionalExtension, params};

use super::{Result, Store, StoreError, TASK_COLS, TaskRow, classify};
use crate::clock::Millis;
use crate::sched::lease::{Claim, Completion, TaskLease};
use crate::sched::mesh::{Done, TaskWire, WorkflowWire};
#[cfg(test)]
use crate::sched::workflow::TaskState;

/// Migration 6: mesh workflows, leases, scheduler metadata.
pub const MIGRATION_SQL: &str = r#"
CREATE TABLE mesh_workflows (
    workflow_id TEXT PRIMARY KEY REFERENCES workflows(id) ON DELETE CASCADE,
    origin      TEXT NOT NULL
) STRICT;
CREATE TABLE mesh_tasks (
    task_id     TEXT PRIMARY KEY REFERENCES tasks(id) ON DELETE CASCADE,
    lease_peer  TEXT NOT NULL,
    lease_epoch INTEGER NOT NULL,
    done_peer   TEXT,
    done_epoch  INTEGER,
    duplicates  INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE TABLE mesh_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
"#;

/// A stored lease: the winning claim, the recorded completion, duplicates dropped.
pub type StoredLease = (Claim, Option<Completion>, u32);

impl Store {
    /// Store a workflow heard from the mesh (or submitted here with `origin` this node):
    /// inserts what is new, leaves what is known. Returns the task rows inserted.
    ///
    /// # Errors
    /// [`StoreError`] on a database failure (nothing is half-written: one transaction).
    pub fn insert_mesh_workflow(
        &mut self,
        w: &WorkflowWire,
        source: &str,
        now: Millis,
    ) -> Result<Vec<TaskRow>> {
        let tx = self
            .conn
            .savepoint()
            .map_err(classify("starting a transaction"))?;
        tx.execute(
            "INSERT OR IGNORE INTO workflows (id, name, tag, priority, created_at, status, source) \
             VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6)",
            params![
                w.id,
                w.name,
                w.tag.as_str(),
                w.priority,
                w.created_at,
                source
            ],
        )
        .map_err(classify("inserting a mesh workflow"))?;
        tx.execute(
            "INSERT OR IGNORE INTO mesh_workflows (workflow_id, origin) VALUES (?1, ?2)",
            params![w.id, w.origin],
        )
        .map_err(classify("inserting a mesh workflow"))?;
        let mut ids = vec![];
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO tasks (id, workflow_id, idx, spec, priority, state, \
                     enqueued_at) VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6)",
                )
                .map_err(classify("preparing task insert"))?;
            for t in &w.tasks {
                let spec = serde_json::to_string(&t.spec).map_err(|e| StoreError::Corrupt {
                    table: "tasks",
                    reason: e.to_string(),
                })?;
                let n = stmt
                    .execute(params![t.id, w.id, t.idx, spec, t.priority, now])
                    .map_err(classify("inserting a mesh task"))?;
                if n == 1 {
                    ids.push(t.id.clone());
                }
            }
        }
        tx.commit()
            .map_err(classify("committing a mesh workflow"))?;
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let new: std::collections::HashSet<String> = ids.into_iter().collect();
        Ok(self
            .tasks_of(&w.id)?
            .into_iter()
            .filter(|t| new.contains(&t.id))
            .collect())
    }

    /// Start a batch: the writes until [`Store::end_batch`] commit together (one WAL sync
    /// instead of one per lease). Ignored inside a batch.
    pub fn begin_batch(&mut self) {
        if self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("BEGIN");
        }
    }

    /// Commit the batch started by [`Store::begin_batch`] (nothing outside one).
    ///
    /// # Errors
    /// [`StoreError`] if the commit fails (e.g. a full disk); the batch is rolled back.
    pub fn end_batch(&mut self) -> Result<()> {
        if self.conn.is_autocommit() {
            return Ok(());
        }
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(classify("committing a batch")(e));
        }
        Ok(())
    }

    /// The origin (peer ID) of a mesh workflow; `None` for a local-only one.
    pub fn mesh_origin(&self, workflow_id: &str) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT origin FROM mesh_workflows WHERE workflow_id = ?1",
                [workflow_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(classify("reading a workflow origin"))
    }

    /// Record a task's lease (and completion); the task's `owner` becomes the lease holder
    /// (or the peer whose completion was recorded).
    pub fn save_lease(&mut self, l: &TaskLease) -> Result<()> {
        let owner = l.done.as_ref().map(|d| &d.peer).unwrap_or(&l.owner.peer);
        self.conn
            .execute(
                "INSERT INTO mesh_tasks (task_id, lease_peer, lease_epoch, done_peer, done_epoch, \
                 duplicates) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(task_id) DO UPDATE SET \
                 lease_peer = ?2, lease_epoch = ?3, done_peer = ?4, done_epoch = ?5, duplicates = ?6",
                params![
                    l.owner.task,
                    l.owner.peer,
                    l.owner.epoch as i64,
                    l.done.as_ref().map(|d| d.peer.clone()),
                    l.done.as_ref().map(|d| d.epoch as i64),
                    l.duplicates
                ],
            )
            .map_err(classify("recording a lease"))?;
        self.conn
            .execute(
                "UPDATE tasks SET owner = ?2 WHERE id = ?1",
                params![l.owner.task, owner],
            )
            .map_err(classify("recording a lease"))?;
        Ok(())
    }

    /// Leases of the tasks of unfinished mesh workflows, and of those finished after `since`
    /// (unix ms: late duplicates of their completions are still recognised), to rebuild the
    /// lease book.
    pub fn mesh_leases(&self, since: Millis) -> Result<Vec<StoredLease>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT m.task_id, m.lease_peer, m.lease_epoch, m.done_peer, m.done_epoch, \
                 m.duplicates, t.exit_code FROM mesh_tasks m JOIN tasks t ON t.id = m.task_id \
                 JOIN workflows w ON w.id = t.workflow_id \
                 WHERE w.status IN ('queued', 'running') OR w.finished_at > ?1",
            )
            .map_err(classify("reading leases"))?;
        stmt.query_map([since], |r| {
            let task: String = r.get(0)?;
            let owner = Claim {
                task: task.clone(),
                peer: r.get(1)?,
                epoch: r.get::<_, i64>(2)? as u64,
            };
            let done = match r.get::<_, Option<String>>(3)? {
                Some(peer) => Some(Completion {
                    task,
                    peer,
                    epoch: r.get::<_, Option<i64>>(4)?.unwrap_or(1) as u64,
                    exit_code: r.get(6)?,
                }),
                None => None,
            };
            Ok((owner, done, r.get::<_, i64>(5)? as u32))
        })
        .map_err(classify("reading leases"))?
        .collect::<std::result::Result<_, _>>()
        .map_err(classify("reading leases"))
    }

    /// Another peer started the task.
    pub fn mark_remote_started(&mut self, task_id: &str, peer: &str, now: Millis) -> Result<()> {
        self.conn
            .execute(
                "UPDATE tasks SET state = 'running', started_at = ?2, owner = ?3, \
                 attempts = attempts + 1 WHERE id = ?1 AND state IN ('queued', 'running')",
                params![task_id, now, peer],
            )
            .map_err(classify("marking a task started"))?;
        Ok(())
    }

    /// A task went back to the queue (its owner lost the lease before finishing).
    pub fn mark_requeued(&mut self, task_id: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE tasks SET state = 'queued', started_at = NULL, retried = retried + 1 \
                 WHERE id = ?1 AND state = 'running'",
                [task_id],
            )
            .map_err(classify("re-queueing a task"))?;
        Ok(())
    }

    /// Record the result a peer reported (the recorded completion).
    pub fn mark_remote_done(&mut self, d: &Done, now: Millis) -> Result<()> {
        self.conn
            .execute(
                "UPDATE tasks SET state = ?2, exit_code = ?3, signal = ?4, duration_ms = ?5, \
                 error = ?6, finished_at = COALESCE(finished_at, ?7), owner = ?8 WHERE id = ?1",
                params![
                    d.task,
                    d.state.as_str(),
                    d.exit_code,
                    d.signal,
                    d.duration_ms,
                    d.error,
                    now,
                    d.peer
                ],
            )
            .map_err(classify("recording a peer's task result"))?;
        Ok(())
    }

    /// Mesh workflows to share in a sync answer: every unfinished one, then the most recently
    /// created finished ones, `limit` in all, each with its tasks' states, leases, results.
    pub fn mesh_export(&self, limit: usize) -> Result<Vec<WorkflowWire>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT w.id, w.name, w.tag, w.priority, w.created_at, m.origin FROM workflows w \
                 JOIN mesh_workflows m ON m.workflow_id = w.id \
                 ORDER BY (w.status IN ('queued', 'running')) DESC, w.created_at DESC LIMIT ?1",
            )
            .map_err(classify("exporting mesh workflows"))?;
        let heads = stmt
            .query_map([limit as i64], |r| {
                let tag: String = r.get(2)?;
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    tag,
                    r.get::<_, u16>(3)?,
                    r.get::<_, Millis>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })
            .map_err(classify("exporting mesh workflows"))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(classify("exporting mesh workflows"))?;
        let mut out = Vec::with_capacity(heads.len());
        for (id, name, tag, priority, created_at, origin) in heads {
            let Ok(tag) = tag.parse() else { continue };
            let leases: std::collections::HashMap<String, (Claim, Option<(String, u64)>)> = {
                let mut s = self
                    .conn
                    .prepare_cached(
                        "SELECT m.task_id, m.lease_peer, m.lease_epoch, m.done_peer, m.done_epoch \
                         FROM mesh_tasks m JOIN tasks t ON t.id = m.task_id WHERE t.workflow_id = ?1",
                    )
                    .map_err(classify("exporting leases"))?;
                s.query_map([&id], |r| {
                    let task: String = r.get(0)?;
                    Ok((
                        task.clone(),
                        (
                            Claim {
                                task,
                                peer: r.get(1)?,
                                epoch: r.get::<_, i64>(2)? as u64,
                            },
                            match r.get::<_, Option<String>>(3)? {
                                Some(p) => {
                                    Some((p, r.get::<_, Option<i64>>(4)?.unwrap_or(1) as u64))
                                }
                                None => None,
                            },
                        ),
                    ))
                })
                .map_err(classify("exporting leases"))?
                .collect::<std::result::Result<_, _>>()
                .map_err(classify("exporting leases"))?
            };
            let tasks = self
                .tasks_of(&id)?
                .into_iter()
                .map(|t| {
                    let (lease, done_by) = match leases.get(&t.id) {
                        Some((c, d)) => (Some(c.clone()), d.clone()),
                        None => (None, None),
                    };
                    let done = match (done_by, t.state.is_terminal()) {
                        (Some((peer, epoch)), true) => Some(Done {
                            task: t.id.clone(),
                            peer,
                            epoch,
                            state: t.state,
                            exit_code: t.exit_code,
                            signal: t.signal,
                            duration_ms: t.duration_ms.unwrap_or(0),
                            error: t.error.clone(),
                            clock: None,
                        }),
                        _ => None,
                    };
                    TaskWire {
                        id: t.id,
                        idx: t.idx,
                        spec: t.spec,
                        priority: t.priority,
                        // A cancelled task with no recorded completion travels as cancelled.
                        state: t.state,
                        lease,
                        done,
                    }
                })
                .collect();
            out.push(WorkflowWire {
                id,
                name,
                tag,
                priority,
                created_at,
                origin,
                tasks,
            });
        }
        Ok(out)
    }

    /// A scheduler metadata value (e.g. the Merkle clock as JSON).
    pub fn mesh_meta(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM mesh_meta WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(classify("reading scheduler metadata"))
    }

    /// Set a scheduler metadata value.
    pub fn set_mesh_meta(&mut self, key: &str, value: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO mesh_meta (key, value) VALUES (?1, ?2) \
                 ON CONFLICT(key) DO UPDATE SET value = ?2",
                params![key, value],
            )
            .map_err(classify("writing scheduler metadata"))?;
        Ok(())
    }

    /// Tasks of a workflow that are still queued, for re-reading after a sync.
    pub fn queued_tasks_of(&self, workflow_id: &str) -> Result<Vec<TaskRow>> {
        self.query_tasks(
            &format!(
                "SELECT {TASK_COLS} FROM tasks WHERE workflow_id = ?1 AND state = 'queued' ORDER BY idx"
            ),
            [workflow_id],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::mesh::TaskWire;
    use crate::sched::workflow::{TaskSpec, WorkflowTag};

    fn wire(id: &str, n: u32) -> WorkflowWire {
        WorkflowWire {
            id: id.into(),
            name: "mesh".into(),
            tag: WorkflowTag::P2pEligible,
            priority: 10,
            created_at: 5,
            origin: "peer-a".into(),
            tasks: (0..n)
                .map(|i| TaskWire {
                    id: format!("{id}.{i}"),
                    idx: i,
                    spec: TaskSpec {
                        command: vec!["true".into()],
                        env: Default::default(),
                        timeout_s: None,
                        requires: vec![],
                    },
                    priority: 10,
                    state: TaskState::Queued,
                    lease: None,
                    done: None,
                })
                .collect(),
        }
    }

    #[test]
    fn a_batch_holds_a_workflow_insert_and_commits_once() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("db");
        let mut s = Store::open(&path).unwrap();
        s.begin_batch();
        s.begin_batch(); // nested: ignored
        assert_eq!(
            s.insert_mesh_workflow(&wire("wf-b", 3), "mesh", 1)
                .unwrap()
                .len(),
            3
        );
        s.set_mesh_meta("clock", "{}").unwrap();
        s.end_batch().unwrap();
        s.end_batch().unwrap(); // outside a batch: nothing
        drop(s);
        let s = Store::open(&path).unwrap();
        assert_eq!(s.tasks_of("wf-b").unwrap().len(), 3);
        assert_eq!(s.mesh_meta("clock").unwrap().as_deref(), Some("{}"));
    }

    #[test]
    fn mesh_workflow_round_trip_lease_done_and_export() {
        let mut s = Store::open_in_memory().unwrap();
        let rows = s
            .insert_mesh_workflow(&wire("wf-x", 2), "mesh", 100)
            .unwrap();
        assert_eq!(rows.len(), 2);
        // Idempotent: a second announcement inserts nothing.
        assert!(
            s.insert_mesh_workflow(&wire("wf-x", 2), "mesh", 200)
                .unwrap()
                .is_empty()
        );
        assert_eq!(s.mesh_origin("wf-x").unwrap().as_deref(), Some("peer-a"));
        let mut book = crate::sched::lease::LeaseBook::new();
        book.claim(
            Claim {
                task: "wf-x.0".into(),
                peer: "peer-b".into(),
                epoch: 1,
            },
            0,
        );
        s.save_lease(book.get("wf-x.0").unwrap()).unwrap();
        assert_eq!(
            s.task("wf-x.0").unwrap().unwrap().owner.as_deref(),
            Some("peer-b")
        );
        s.mark_remote_started("wf-x.0", "peer-b", 300).unwrap();
        let d = Done {
            task: "wf-x.0".into(),
            peer: "peer-b".into(),
            epoch: 1,
            state: TaskState::Succeeded,
            exit_code: Some(0),
            signal: None,
            duration_ms: 12,
            error: None,
            clock: None,
        };
        s.mark_remote_done(&d, 400).unwrap();
        book.complete(
            Completion {
                task: "wf-x.0".into(),
                peer: "peer-b".into(),
                epoch: 1,
                exit_code: Some(0),
            },
            400,
        );
        s.save_lease(book.get("wf-x.0").unwrap()).unwrap();
        let leases = s.mesh_leases(0).unwrap();
        assert_eq!(leases.len(), 1);
        assert_eq!(leases[0].1.as_ref().unwrap().peer, "peer-b");
        let ex = s.mesh_export(10).unwrap();
        assert_eq!(ex.len(), 1);
        let t0 = &ex[0].tasks[0];
        assert_eq!(t0.state, TaskState::Succeeded);
        assert_eq!(t0.done.as_ref().unwrap().peer, "peer-b");
        assert_eq!(ex[0].tasks[1].state, TaskState::Queued);
        assert!(ex[0].tasks[1].lease.is_none());
        s.set_mesh_meta("clock", "{}").unwrap();
        assert_eq!(s.mesh_meta("clock").unwrap().as_deref(), Some("{}"));
    }
}
