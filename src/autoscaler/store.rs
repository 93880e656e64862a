//! SQLite persistence for the autoscaler: runners, the jobs they were asked for, and
//! counters. Migration 5 of the main store ([`MIGRATION_SQL`]).
//!
//! - `as_runners`: one row per runner ever requested, written *before* any call that creates
//!   something (JIT config, instance), so a restart finds every half-done operation. Holds the
//!   provider's instance reference (no secret: the JIT config and registration tokens are
//!   never stored) and lifecycle timestamps.
//! - `as_jobs`: queued GitHub jobs seen by the checks (`pending` until they leave the queue),
//!   with the times that give the queue-wait and startup figures. Demand over the max stays
//!   here and is served as capacity frees.
//! - `as_meta`: counters and switches that survive a restart (checks, orphans removed, paused,
//!   per-provider failure streaks).
//!
//! Times are unix milliseconds (UTC).

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use super::policy::{JobKey, RunnerFacts, RunnerState};
use crate::clock::Millis;
pub use crate::store::StoreError;
use crate::store::classify;

/// Result alias.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Schema (STRICT tables). Migration 5 of the main store.
pub const MIGRATION_SQL: &str = r#"
CREATE TABLE as_runners (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    scope        TEXT NOT NULL,
    provider     TEXT NOT NULL,
    labels       TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN
        ('requested','provisioning','idle','busy','offline','removing','gone','failed')),
    gh_runner_id INTEGER,
    instance     TEXT,
    job_repo     TEXT,
    job_id       INTEGER,
    current_job  TEXT,
    draining     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    created_at   INTEGER NOT NULL,
    state_since  INTEGER NOT NULL,
    launched_at  INTEGER,
    online_at    INTEGER,
    busy_at      INTEGER,
    gone_at      INTEGER
) STRICT;
CREATE INDEX as_runners_state ON as_runners(state);
CREATE TABLE as_jobs (
    repo         TEXT NOT NULL,
    job_id       INTEGER NOT NULL,
    run_id       INTEGER NOT NULL,
    name         TEXT NOT NULL,
    workflow     TEXT NOT NULL,
    labels       TEXT NOT NULL,
    p2p          INTEGER NOT NULL DEFAULT 0,
    state        TEXT NOT NULL CHECK (state IN ('pending','started','gone')),
    queued_at    INTEGER NOT NULL,
    first_seen   INTEGER NOT NULL,
    last_seen    INTEGER NOT NULL,
    launched_at  INTEGER,
    started_at   INTEGER,
    runner_name  TEXT,
    PRIMARY KEY (repo, job_id)
) STRICT;
CREATE INDEX as_jobs_state ON as_jobs(state, queued_at);
CREATE TABLE as_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
"#;

/// A stored runner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunnerRow {
    /// Our id (`run-<ulid>`).
    pub id: String,
    /// Runner name at GitHub (`<prefix>-<provider>-<ulid>`), chosen before any call.
    pub name: String,
    /// `repo:owner/name` or `org:acme`.
    pub scope: String,
    /// Provider name.
    pub provider: String,
    /// Labels it registers with.
    pub labels: Vec<String>,
    /// Lifecycle state.
    pub state: RunnerState,
    /// GitHub runner id once registered (JIT config generated).
    pub gh_runner_id: Option<u64>,
    /// Provider instance reference (JSON, no secrets).
    pub instance: Option<String>,
    /// The job it was requested for.
    pub job: Option<JobKey>,
    /// Job it is running, as GitHub reports it.
    pub current_job: Option<String>,
    /// Retire once idle.
    pub draining: bool,
    /// Last failure (secrets redacted by the caller).
    pub last_error: Option<String>,
    /// Requested at.
    pub created_at: Millis,
    /// Entered its state at.
    pub state_since: Millis,
    /// Instance launched at.
    pub launched_at: Option<Millis>,
    /// First seen online at GitHub.
    pub online_at: Option<Millis>,
    /// First seen busy.
    pub busy_at: Option<Millis>,
    /// Gone at.
    pub gone_at: Option<Millis>,
}

impl RunnerRow {
    /// The repository of a `repo:` scope.
    pub fn repo(&self) -> Option<&str> {
        self.scope.strip_prefix("repo:")
    }

    /// What the policy sees.
    pub fn facts(&self) -> RunnerFacts {
        RunnerFacts {
            id: self.id.clone(),
            provider: self.provider.clone(),
            state: self.state,
            since: self.state_since,
            created: self.created_at,
            draining: self.draining,
            scope: self.repo().map(str::to_string),
        }
    }
}

/// A new runner row.
#[derive(Debug, Clone)]
pub struct NewRunner<'a> {
    /// Id.
    pub id: &'a str,
    /// Name.
    pub name: &'a str,
    /// Scope (`repo:o/n`, `org:o`).
    pub scope: &'a str,
    /// Provider.
    pub provider: &'a str,
    /// Labels.
    pub labels: &'a [String],
    /// Job it is for.
    pub job: Option<&'a JobKey>,
}

/// A tracked job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobRow {
    /// Key.
    pub key: JobKey,
    /// Run id.
    pub run_id: u64,
    /// Job name.
    pub name: String,
    /// Workflow (name or path).
    pub workflow: String,
    /// `runs-on` labels.
    pub labels: Vec<String>,
    /// Handed to the mesh scheduler (a `p2p-only` / `p2p-eligible` workflow).
    pub p2p: bool,
    /// `pending`, `started` or `gone`.
    pub state: String,
    /// Queued at (GitHub's `created_at` of the job).
    pub queued_at: Millis,
    /// First seen by a check.
    pub first_seen: Millis,
    /// Last seen queued.
    pub last_seen: Millis,
    /// A runner's instance was launched for it at.
    pub launched_at: Option<Millis>,
    /// GitHub started it at.
    pub started_at: Option<Millis>,
    /// Runner that took it.
    pub runner_name: Option<String>,
}

/// The autoscaler's tables on one connection.
#[derive(Debug)]
pub struct AutoscalerStore<'c> {
    conn: &'c Connection,
}

const RUNNER_COLS: &str = "id, name, scope, provider, labels, state, gh_runner_id, instance, \
    job_repo, job_id, current_job, draining, last_error, created_at, state_since, launched_at, \
    online_at, busy_at, gone_at";
const JOB_COLS: &str = "repo, job_id, run_id, name, workflow, labels, p2p, state, queued_at, \
    first_seen, last_seen, launched_at, started_at, runner_name";

fn corrupt(table: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        table,
        reason: e.to_string(),
    }
}

fn runner_row(r: &Row<'_>) -> rusqlite::Result<(RunnerRow, String, String)> {
    let labels: String = r.get(4)?;
    let state: String = r.get(5)?;
    let job_repo: Option<String> = r.get(8)?;
    let job_id: Option<i64> = r.get(9)?;
    Ok((
        RunnerRow {
            id: r.get(0)?,
            name: r.get(1)?,
            scope: r.get(2)?,
            provider: r.get(3)?,
            labels: Vec::new(),
            state: RunnerState::Requested,
            gh_runner_id: r.get::<_, Option<i64>>(6)?.map(|v| v as u64),
            instance: r.get(7)?,
            job: job_repo.zip(job_id).map(|(repo, id)| JobKey {
                repo,
                job_id: id as u64,
            }),
            current_job: r.get(10)?,
            draining: r.get::<_, i64>(11)? != 0,
            last_error: r.get(12)?,
            created_at: r.get(13)?,
            state_since: r.get(14)?,
            launched_at: r.get(15)?,
            online_at: r.get(16)?,
            busy_at: r.get(17)?,
            gone_at: r.get(18)?,
        },
        labels,
        state,
    ))
}

fn finish_runner((mut row, labels, state): (RunnerRow, String, String)) -> Result<RunnerRow> {
    row.labels = serde_json::from_str(&labels).map_err(|e| corrupt("as_runners.labels", e))?;
    row.state = RunnerState::parse(&state)
        .ok_or_else(|| corrupt("as_runners.state", format!("unknown state {state:?}")))?;
    Ok(row)
}

fn job_row(r: &Row<'_>) -> rusqlite::Result<(JobRow, String)> {
    Ok((
        JobRow {
            key: JobKey {
                repo: r.get(0)?,
                job_id: r.get::<_, i64>(1)? as u64,
            },
            run_id: r.get::<_, i64>(2)? as u64,
            name: r.get(3)?,
            workflow: r.get(4)?,
            labels: Vec::new(),
            p2p: r.get::<_, i64>(6)? != 0,
            state: r.get(7)?,
            queued_at: r.get(8)?,
            first_seen: r.get(9)?,
            last_seen: r.get(10)?,
            launched_at: r.get(11)?,
            started_at: r.get(12)?,
            runner_name: r.get(13)?,
        },
        r.get(5)?,
    ))
}

fn finish_job((mut row, labels): (JobRow, String)) -> Result<JobRow> {
    row.labels = serde_json::from_str(&labels).map_err(|e| corrupt("as_jobs.labels", e))?;
    Ok(row)
}

/// Median of a list (sorted in place); `None` when empty.
pub fn median(v: &mut [Millis]) -> Option<Millis> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    })
}

impl<'c> AutoscalerStore<'c> {
    /// Wrap a connection whose schema is migrated.
    pub fn new(conn: &'c Connection) -> Self {
        Self { conn }
    }

    // ---- runners ----

    /// Insert a runner in state `requested` (before any call that creates something).
    ///
    /// # Errors
    /// [`StoreError`] (a duplicate name is a constraint error).
    pub fn insert_runner(&self, n: &NewRunner<'_>, now: Millis) -> Result<RunnerRow> {
        let labels = serde_json::to_string(n.labels).map_err(|e| corrupt("labels", e))?;
        self.conn
            .execute(
                "INSERT INTO as_runners (id, name, scope, provider, labels, state, job_repo, \
                 job_id, created_at, state_since) VALUES (?1, ?2, ?3, ?4, ?5, 'requested', ?6, \
                 ?7, ?8, ?8)",
                params![
                    n.id,
                    n.name,
                    n.scope,
                    n.provider,
                    labels,
                    n.job.map(|j| j.repo.as_str()),
                    n.job.map(|j| j.job_id as i64),
                    now
                ],
            )
            .map_err(classify("recording a new runner"))?;
        self.runner(n.id)?
            .ok_or_else(|| corrupt("as_runners", "row vanished after insert"))
    }

    /// One runner.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn runner(&self, id: &str) -> Result<Option<RunnerRow>> {
        self.conn
            .query_row(
                &format!("SELECT {RUNNER_COLS} FROM as_runners WHERE id = ?1"),
                [id],
                runner_row,
            )
            .optional()
            .map_err(classify("reading a runner"))?
            .map(finish_runner)
            .transpose()
    }

    /// Runners, newest first; `live_only` leaves out `gone` ones.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn runners(&self, live_only: bool) -> Result<Vec<RunnerRow>> {
        let sql = format!(
            "SELECT {RUNNER_COLS} FROM as_runners {} ORDER BY created_at DESC, id DESC",
            if live_only {
                "WHERE state != 'gone'"
            } else {
                ""
            }
        );
        let mut st = self
            .conn
            .prepare(&sql)
            .map_err(classify("listing runners"))?;
        let rows = st
            .query_map([], runner_row)
            .map_err(classify("listing runners"))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(classify("listing runners"))?;
        rows.into_iter().map(finish_runner).collect()
    }

    /// Move a runner to `state` (a no-op if it is already there, so `state_since` keeps the
    /// first entry). Sets `online_at`/`busy_at`/`gone_at` the first time.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn set_state(&self, id: &str, state: RunnerState, now: Millis) -> Result<()> {
        let extra = match state {
            RunnerState::Idle => ", online_at = COALESCE(online_at, ?3)",
            RunnerState::Busy => {
                ", online_at = COALESCE(online_at, ?3), busy_at = COALESCE(busy_at, ?3)"
            }
            RunnerState::Gone => ", gone_at = COALESCE(gone_at, ?3)",
            _ => "",
        };
        self.conn
            .execute(
                &format!(
                    "UPDATE as_runners SET state = ?2, state_since = ?3{extra} \
                     WHERE id = ?1 AND state != ?2"
                ),
                params![id, state.as_str(), now],
            )
            .map_err(classify("updating a runner's state"))?;
        Ok(())
    }

    /// Record the GitHub runner id (after `generate-jitconfig`).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn set_registered(&self, id: &str, gh_runner_id: u64) -> Result<()> {
        self.conn
            .execute(
                "UPDATE as_runners SET gh_runner_id = ?2 WHERE id = ?1",
                params![id, gh_runner_id as i64],
            )
            .map_err(classify("recording a runner's registration"))?;
        Ok(())
    }

    /// Record the launched instance and move to `provisioning`.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn set_launched(&self, id: &str, instance: &str, now: Millis) -> Result<()> {
        self.conn
            .execute(
                "UPDATE as_runners SET instance = ?2, launched_at = ?3, state = 'provisioning', \
                 state_since = ?3 WHERE id = ?1",
                params![id, instance, now],
            )
            .map_err(classify("recording a launched runner"))?;
        Ok(())
    }

    /// Record a failure (and move to `failed`).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn set_failed(&self, id: &str, error: &str, now: Millis) -> Result<()> {
        self.conn
            .execute(
                "UPDATE as_runners SET last_error = ?2, state = 'failed', state_since = ?3 \
                 WHERE id = ?1",
                params![id, error, now],
            )
            .map_err(classify("recording a runner failure"))?;
        Ok(())
    }

    /// Note an error without changing state.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn set_error(&self, id: &str, error: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE as_runners SET last_error = ?2 WHERE id = ?1",
                params![id, error],
            )
            .map_err(classify("recording a runner error"))?;
        Ok(())
    }

    /// The job GitHub says the runner runs.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn set_current_job(&self, id: &str, job: Option<&str>) -> Result<()> {
        self.conn
            .execute(
                "UPDATE as_runners SET current_job = ?2 WHERE id = ?1",
                params![id, job],
            )
            .map_err(classify("recording a runner's job"))?;
        Ok(())
    }

    /// Mark for draining.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn set_draining(&self, id: &str, draining: bool) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "UPDATE as_runners SET draining = ?2 WHERE id = ?1 AND state != 'gone'",
                params![id, draining as i64],
            )
            .map_err(classify("draining a runner"))?;
        Ok(n > 0)
    }

    /// Count of live runners per state.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn counts_by_state(&self) -> Result<Vec<(RunnerState, u64)>> {
        let mut st = self
            .conn
            .prepare("SELECT state, COUNT(*) FROM as_runners GROUP BY state")
            .map_err(classify("counting runners"))?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(classify("counting runners"))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(classify("counting runners"))?;
        let mut out = Vec::new();
        for (s, n) in rows {
            let st = RunnerState::parse(&s)
                .ok_or_else(|| corrupt("as_runners.state", format!("unknown state {s:?}")))?;
            out.push((st, n as u64));
        }
        Ok(out)
    }

    // ---- jobs ----

    /// Insert or refresh a queued job (it stays `pending`; `last_seen` moves).
    ///
    /// # Errors
    /// [`StoreError`].
    #[allow(clippy::too_many_arguments)]
    pub fn upsert_queued_job(
        &self,
        key: &JobKey,
        run_id: u64,
        name: &str,
        workflow: &str,
        labels: &[String],
        p2p: bool,
        queued_at: Millis,
        now: Millis,
    ) -> Result<()> {
        let labels = serde_json::to_string(labels).map_err(|e| corrupt("labels", e))?;
        self.conn
            .execute(
                "INSERT INTO as_jobs (repo, job_id, run_id, name, workflow, labels, p2p, state, \
                 queued_at, first_seen, last_seen) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, \
                 'pending', ?8, ?9, ?9) ON CONFLICT (repo, job_id) DO UPDATE SET \
                 last_seen = ?9, p2p = ?7, \
                 state = CASE WHEN state = 'started' THEN state ELSE 'pending' END",
                params![
                    key.repo,
                    key.job_id as i64,
                    run_id as i64,
                    name,
                    workflow,
                    labels,
                    p2p as i64,
                    queued_at,
                    now
                ],
            )
            .map_err(classify("recording a queued job"))?;
        Ok(())
    }

    /// A job left the queue: `started` (with GitHub's start time and runner) or `gone`
    /// (cancelled, or no longer found).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn set_job_left(
        &self,
        key: &JobKey,
        started_at: Option<Millis>,
        runner_name: Option<&str>,
    ) -> Result<()> {
        let state = if started_at.is_some() {
            "started"
        } else {
            "gone"
        };
        self.conn
            .execute(
                "UPDATE as_jobs SET state = ?3, started_at = ?4, runner_name = ?5 \
                 WHERE repo = ?1 AND job_id = ?2 AND state = 'pending'",
                params![key.repo, key.job_id as i64, state, started_at, runner_name],
            )
            .map_err(classify("recording a job that left the queue"))?;
        Ok(())
    }

    /// A runner's instance was launched for this job.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn set_job_launched(&self, key: &JobKey, now: Millis) -> Result<()> {
        self.conn
            .execute(
                "UPDATE as_jobs SET launched_at = COALESCE(launched_at, ?3) \
                 WHERE repo = ?1 AND job_id = ?2",
                params![key.repo, key.job_id as i64, now],
            )
            .map_err(classify("recording a job's runner launch"))?;
        Ok(())
    }

    /// Whether GitHub reported a job taken by the runner `name`.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn job_taken_by(&self, name: &str) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM as_jobs WHERE runner_name = ?1)",
                [name],
                |r| r.get::<_, bool>(0),
            )
            .map_err(classify("reading jobs"))
    }

    /// Jobs still `pending`, oldest first.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn pending_jobs(&self) -> Result<Vec<JobRow>> {
        self.jobs_where("state = 'pending' ORDER BY queued_at, repo, job_id")
    }

    /// One job.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn job(&self, key: &JobKey) -> Result<Option<JobRow>> {
        self.conn
            .query_row(
                &format!("SELECT {JOB_COLS} FROM as_jobs WHERE repo = ?1 AND job_id = ?2"),
                params![key.repo, key.job_id as i64],
                job_row,
            )
            .optional()
            .map_err(classify("reading a job"))?
            .map(finish_job)
            .transpose()
    }

    fn jobs_where(&self, clause: &str) -> Result<Vec<JobRow>> {
        let mut st = self
            .conn
            .prepare(&format!("SELECT {JOB_COLS} FROM as_jobs WHERE {clause}"))
            .map_err(classify("listing jobs"))?;
        let rows = st
            .query_map([], job_row)
            .map_err(classify("listing jobs"))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(classify("listing jobs"))?;
        rows.into_iter().map(finish_job).collect()
    }

    /// Median queue wait (queued → started at GitHub) and startup (queued → our runner's
    /// instance launched), in ms, over the last `n` jobs that have them.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn wait_figures(&self, n: usize) -> Result<(Option<Millis>, Option<Millis>)> {
        let q = |sql: &str| -> Result<Vec<Millis>> {
            let mut st = self.conn.prepare(sql).map_err(classify("job figures"))?;
            let v = st
                .query_map([n as i64], |r| r.get::<_, i64>(0))
                .map_err(classify("job figures"))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(classify("job figures"))?;
            Ok(v)
        };
        let mut wait = q(
            "SELECT MAX(0, started_at - queued_at) FROM as_jobs WHERE started_at IS NOT NULL \
             ORDER BY started_at DESC LIMIT ?1",
        )?;
        let mut start = q(
            "SELECT MAX(0, launched_at - queued_at) FROM as_jobs WHERE launched_at IS NOT NULL \
             ORDER BY launched_at DESC LIMIT ?1",
        )?;
        Ok((median(&mut wait), median(&mut start)))
    }

    // ---- meta ----

    /// A counter or switch.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM as_meta WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(classify("reading autoscaler state"))
    }

    /// Set a counter or switch.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO as_meta (key, value) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET value = ?2",
                params![key, value],
            )
            .map_err(classify("writing autoscaler state"))?;
        Ok(())
    }

    /// Numeric counter (0 when unset or unreadable).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn counter(&self, key: &str) -> Result<u64> {
        Ok(self.meta(key)?.and_then(|v| v.parse().ok()).unwrap_or(0))
    }

    /// Add to a counter; returns the new value.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn bump(&self, key: &str, by: u64) -> Result<u64> {
        let v = self.counter(key)? + by;
        self.set_meta(key, &v.to_string())?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(MIGRATION_SQL).unwrap();
        c
    }

    #[test]
    fn runner_lifecycle_round_trip() {
        let c = conn();
        let s = AutoscalerStore::new(&c);
        let job = JobKey {
            repo: "acme/app".into(),
            job_id: 7,
        };
        let labels = vec!["self-hosted".to_string(), "linux".to_string()];
        let r = s
            .insert_runner(
                &NewRunner {
                    id: "run-1",
                    name: "flotilla-local-1",
                    scope: "repo:acme/app",
                    provider: "local",
                    labels: &labels,
                    job: Some(&job),
                },
                100,
            )
            .unwrap();
        assert_eq!(r.state, RunnerState::Requested);
        assert_eq!(r.job.as_ref(), Some(&job));
        assert_eq!(r.facts().scope.as_deref(), Some("acme/app"));
        s.set_registered("run-1", 42).unwrap();
        s.set_launched("run-1", r#"{"id":"pid:1"}"#, 110).unwrap();
        s.set_state("run-1", RunnerState::Idle, 120).unwrap();
        s.set_state("run-1", RunnerState::Idle, 130).unwrap();
        let r = s.runner("run-1").unwrap().unwrap();
        assert_eq!(r.state_since, 120, "re-entering a state keeps its start");
        assert_eq!(r.online_at, Some(120));
        s.set_state("run-1", RunnerState::Busy, 140).unwrap();
        s.set_state("run-1", RunnerState::Gone, 150).unwrap();
        let r = s.runner("run-1").unwrap().unwrap();
        assert_eq!(
            (r.gh_runner_id, r.launched_at, r.busy_at, r.gone_at),
            (Some(42), Some(110), Some(140), Some(150))
        );
        assert!(s.runners(true).unwrap().is_empty());
        assert_eq!(s.runners(false).unwrap().len(), 1);
        // Names are unique: a second insert with the same name fails, nothing is lost.
        let dup = s.insert_runner(
            &NewRunner {
                id: "run-2",
                name: "flotilla-local-1",
                scope: "org:acme",
                provider: "local",
                labels: &labels,
                job: None,
            },
            200,
        );
        assert!(dup.is_err());
    }

    #[test]
    fn jobs_and_figures() {
        let c = conn();
        let s = AutoscalerStore::new(&c);
        let k = |id| JobKey {
            repo: "acme/app".into(),
            job_id: id,
        };
        let l = vec!["self-hosted".to_string()];
        for (id, q) in [(1, 1_000), (2, 2_000), (3, 3_000)] {
            s.upsert_queued_job(&k(id), 9, "build", "ci.yml", &l, false, q, q + 10)
                .unwrap();
        }
        s.upsert_queued_job(&k(1), 9, "build", "ci.yml", &l, false, 1_000, 5_000)
            .unwrap();
        assert_eq!(s.pending_jobs().unwrap().len(), 3);
        assert_eq!(s.job(&k(1)).unwrap().unwrap().last_seen, 5_000);
        s.set_job_launched(&k(1), 1_500).unwrap();
        s.set_job_launched(&k(2), 4_000).unwrap();
        s.set_job_left(&k(1), Some(3_000), Some("flotilla-x"))
            .unwrap();
        s.set_job_left(&k(3), None, None).unwrap();
        let p = s.pending_jobs().unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].key.job_id, 2);
        let (wait, start) = s.wait_figures(100).unwrap();
        assert_eq!(wait, Some(2_000));
        assert_eq!(start, Some((500 + 2_000) / 2));
        assert_eq!(s.bump("checks", 1).unwrap(), 1);
        assert_eq!(s.bump("checks", 2).unwrap(), 3);
        assert_eq!(s.counter("missing").unwrap(), 0);
    }

    #[test]
    fn median_of_odd_even_empty() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3, 1, 2]), Some(2));
        assert_eq!(median(&mut [4, 1, 2, 3]), Some(2));
    }
}
