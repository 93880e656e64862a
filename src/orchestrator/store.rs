//! SQLite persistence of the failed-run monitor: orchestrator issues, per-repository cursors and
//! the runs already analyzed.
//!
//! Three STRICT tables, created by [`MIGRATION_SQL`] (appended as a later migration of the main
//! store; [`apply_schema`] runs it on a bare connection for tests and tools):
//!
//! - `orchestrator_issues`: one row per `(repo, workflow, issue_type, run_id)`. A check that sees
//!   the same run again (overlapping windows, a re-run attempt) updates the row instead of adding
//!   one ([`IssueStore::upsert`]). The row keeps the evidence (the classifier's matched line), the
//!   numbers of the log lines that matched the class, a bounded context window around them
//!   (normalized lines, [`CONTEXT_RADIUS`] lines each side, at most [`MAX_CONTEXT_BYTES`]), the
//!   fix state (`status`, with the reason of the last transition), the re-runs requested for the
//!   run and the number of the GitHub issue filed for `(repo, workflow, issue_type)`.
//! - `orchestrator_cursors`: per repository, when the last successful check started; the next
//!   check looks only at runs completed since then (minus an overlap).
//! - `orchestrator_runs`: per run, the attempt last analyzed without error, so overlapping
//!   windows do not fetch the same logs twice.
//!
//! Times are unix milliseconds (UTC). [`IssueStore`] borrows a `rusqlite::Connection` and is
//! cheap to copy; each method is one statement (or one read then one write of the same rows).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use super::patterns::{FixAction, IssueType, Severity};
use crate::clock::Millis;

/// Schema of the orchestrator tables (STRICT), to be appended to the main store's migrations.
pub const MIGRATION_SQL: &str = r#"
CREATE TABLE orchestrator_issues (
    id                  TEXT PRIMARY KEY,
    repo                TEXT NOT NULL,
    workflow            TEXT NOT NULL,
    workflow_path       TEXT,
    run_id              INTEGER NOT NULL,
    run_attempt         INTEGER NOT NULL CHECK (run_attempt >= 1),
    run_url             TEXT,
    head_sha            TEXT,
    head_branch         TEXT,
    job_id              INTEGER,
    job_name            TEXT,
    issue_type          TEXT NOT NULL,
    severity            TEXT NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    auto_fixable        INTEGER NOT NULL CHECK (auto_fixable IN (0, 1)),
    fix_description     TEXT NOT NULL,
    fix_action          TEXT,
    fix_args            TEXT NOT NULL DEFAULT '{}',
    is_primary          INTEGER NOT NULL CHECK (is_primary IN (0, 1)),
    evidence            TEXT NOT NULL,
    evidence_lines      TEXT NOT NULL DEFAULT '[]',
    context             TEXT NOT NULL DEFAULT '',
    status              TEXT NOT NULL CHECK (status IN ('open', 'fixing', 'fixed', 'ignored')),
    status_reason       TEXT NOT NULL DEFAULT '',
    reruns              INTEGER NOT NULL DEFAULT 0 CHECK (reruns >= 0),
    github_issue_number INTEGER,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    UNIQUE (repo, workflow, issue_type, run_id)
) STRICT;
CREATE INDEX orchestrator_issues_status ON orchestrator_issues(status, repo);
CREATE INDEX orchestrator_issues_run ON orchestrator_issues(repo, run_id);
CREATE INDEX orchestrator_issues_class ON orchestrator_issues(repo, workflow, issue_type);
CREATE TABLE orchestrator_cursors (
    repo          TEXT PRIMARY KEY,
    last_check_at INTEGER NOT NULL
) STRICT;
CREATE TABLE orchestrator_runs (
    repo        TEXT NOT NULL,
    run_id      INTEGER NOT NULL,
    run_attempt INTEGER NOT NULL,
    analyzed_at INTEGER NOT NULL,
    PRIMARY KEY (repo, run_id)
) STRICT;
"#;

/// Log lines kept on each side of an evidence line in the context window.
pub const CONTEXT_RADIUS: usize = 3;
/// Upper bound of a stored context window, in bytes (cut at a line end, then marked).
pub const MAX_CONTEXT_BYTES: usize = 8 * 1024;
/// Most evidence line numbers kept per issue.
pub const MAX_EVIDENCE_LINES: usize = 5;
/// Upper bound of the stored evidence text, in bytes.
pub const MAX_EVIDENCE_BYTES: usize = 2 * 1024;

/// Run [`MIGRATION_SQL`] on a connection (standalone use; the main store runs it as a
/// migration instead).
///
/// # Errors
/// [`StoreError`] if a table already exists or SQLite fails.
pub fn apply_schema(conn: &Connection) -> Result<()> {
    conn.execute_batch(MIGRATION_SQL)
        .map_err(classify("creating the orchestrator tables"))
}

/// Errors of the issue store: the main store's (full disk, SQLite, corrupt row), as the
/// orchestrator tables live in the same database.
pub use crate::store::StoreError;
use crate::store::classify;

/// Result alias for the issue store.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Fix state of an orchestrator issue. Moves `open → fixing → fixed`, back to `open` when the
/// fix action fails or the run fails again; `ignored` when no action is meant (secondary
/// findings, classes the policy leaves alone, or a person's decision).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IssueStatus {
    /// Found, nothing done yet (or the last attempt failed; see the reason).
    Open,
    /// A fix action is under way (a pull request stays `fixing` until a person merges it).
    Fixing,
    /// The fix action was done: failed jobs re-run or a GitHub issue filed/updated.
    Fixed,
    /// Nothing will be done.
    Ignored,
}

impl IssueStatus {
    /// Every status.
    pub const ALL: [IssueStatus; 4] = [
        IssueStatus::Open,
        IssueStatus::Fixing,
        IssueStatus::Fixed,
        IssueStatus::Ignored,
    ];

    /// Database and JSON spelling, e.g. `"open"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            IssueStatus::Open => "open",
            IssueStatus::Fixing => "fixing",
            IssueStatus::Fixed => "fixed",
            IssueStatus::Ignored => "ignored",
        }
    }
}

impl fmt::Display for IssueStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for IssueStatus {
    type Err = String;

    /// Parses `open`, `fixing`, `fixed` or `ignored`; the error is the rejected text.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        IssueStatus::ALL
            .iter()
            .copied()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| s.to_owned())
    }
}

/// What the monitor found for one issue type of one run: the input of [`IssueStore::upsert`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IssueRecord {
    /// `owner/name`.
    pub repo: String,
    /// Workflow name (the run's `name`; its path when it has none).
    pub workflow: String,
    /// Workflow file path, e.g. `.github/workflows/ci.yml`.
    pub workflow_path: Option<String>,
    /// Run id.
    pub run_id: u64,
    /// Run attempt analyzed (1 for the first).
    pub run_attempt: u32,
    /// Web URL of the run.
    pub run_url: Option<String>,
    /// Commit of the run.
    pub head_sha: Option<String>,
    /// Branch of the run.
    pub head_branch: Option<String>,
    /// Job whose log gave the finding.
    pub job_id: Option<u64>,
    /// That job's name.
    pub job_name: Option<String>,
    /// Failure class.
    pub issue_type: IssueType,
    /// Severity of the matching pattern.
    pub severity: Severity,
    /// Whether the pattern's fix may be applied without a person.
    pub auto_fixable: bool,
    /// What to do about it, for people.
    pub fix_description: String,
    /// The pattern's fix action, if it has one.
    pub fix_action: Option<FixAction>,
    /// The fix's resolved arguments (e.g. `package`).
    pub fix_args: BTreeMap<String, String>,
    /// Whether this class was the primary verdict of one of the run's jobs.
    pub primary: bool,
    /// The matched (normalized) line, or the annotation text.
    pub evidence: String,
    /// 1-based numbers of the log lines that matched the class (at most
    /// [`MAX_EVIDENCE_LINES`]; empty when the evidence is an annotation or the conclusion).
    pub evidence_lines: Vec<usize>,
    /// Normalized lines around the evidence lines (bounded by [`MAX_CONTEXT_BYTES`]).
    pub context: String,
}

/// A stored orchestrator issue.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredIssue {
    /// `iss-<ulid>`.
    pub id: String,
    /// What was found (latest analyzed attempt).
    #[serde(flatten)]
    pub record: IssueRecord,
    /// Fix state.
    pub status: IssueStatus,
    /// Why the status is what it is (last transition), e.g. "retry bound reached".
    pub status_reason: String,
    /// Re-runs of the failed jobs requested for this run, across checks.
    pub reruns: u32,
    /// GitHub issue opened or updated for `(repo, workflow, issue_type)`.
    pub github_issue_number: Option<u64>,
    /// First seen (unix ms).
    pub created_at: Millis,
    /// Last changed (unix ms).
    pub updated_at: Millis,
}

/// What [`IssueStore::upsert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpsertKind {
    /// A new row.
    Inserted,
    /// The row existed; its evidence was refreshed, its status kept.
    Updated,
    /// The row existed as `fixing`/`fixed` and a newer attempt failed again: back to `open`.
    Reopened,
    /// The row already holds a newer attempt; nothing changed.
    Stale,
}

/// Result of [`IssueStore::upsert`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Upserted {
    /// The row's id.
    pub id: String,
    /// What happened.
    pub kind: UpsertKind,
}

/// Filter of [`IssueStore::list`]; `None` fields match everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IssueFilter<'f> {
    /// Only this status.
    pub status: Option<IssueStatus>,
    /// Only this repository (`owner/name`).
    pub repo: Option<&'f str>,
}

const COLS: &str = "id, repo, workflow, workflow_path, run_id, run_attempt, run_url, head_sha, \
    head_branch, job_id, job_name, issue_type, severity, auto_fixable, fix_description, \
    fix_action, fix_args, is_primary, evidence, evidence_lines, context, status, status_reason, \
    reruns, github_issue_number, created_at, updated_at";

fn u64_col(v: Option<i64>) -> Option<u64> {
    v.and_then(|x| u64::try_from(x).ok())
}

fn issue_from_row(r: &Row<'_>) -> rusqlite::Result<std::result::Result<StoredIssue, String>> {
    let issue_type: String = r.get(11)?;
    let severity: String = r.get(12)?;
    let fix_action: Option<String> = r.get(15)?;
    let fix_args: String = r.get(16)?;
    let evidence_lines: String = r.get(19)?;
    let status: String = r.get(21)?;
    let run_id: i64 = r.get(4)?;
    let run_attempt: i64 = r.get(5)?;
    let reruns: i64 = r.get(23)?;
    let id: String = r.get(0)?;
    let parsed = (|| {
        let issue_type = IssueType::from_str(&issue_type).map_err(|e| e.to_string())?;
        let severity =
            Severity::from_str(&severity).map_err(|s| format!("unknown severity {s:?}"))?;
        let fix_action = match fix_action {
            Some(a) => Some(FixAction::from_str(&a).map_err(|a| format!("unknown fix {a:?}"))?),
            None => None,
        };
        let fix_args: BTreeMap<String, String> =
            serde_json::from_str(&fix_args).map_err(|e| format!("fix_args: {e}"))?;
        let evidence_lines: Vec<usize> =
            serde_json::from_str(&evidence_lines).map_err(|e| format!("evidence_lines: {e}"))?;
        let status = IssueStatus::from_str(&status).map_err(|s| format!("unknown status {s:?}"))?;
        Ok::<_, String>((
            issue_type,
            severity,
            fix_action,
            fix_args,
            evidence_lines,
            status,
        ))
    })();
    let (issue_type, severity, fix_action, fix_args, evidence_lines, status) = match parsed {
        Ok(p) => p,
        Err(e) => return Ok(Err(format!("{id}: {e}"))),
    };
    Ok(Ok(StoredIssue {
        record: IssueRecord {
            repo: r.get(1)?,
            workflow: r.get(2)?,
            workflow_path: r.get(3)?,
            run_id: run_id as u64,
            run_attempt: u32::try_from(run_attempt).unwrap_or(u32::MAX),
            run_url: r.get(6)?,
            head_sha: r.get(7)?,
            head_branch: r.get(8)?,
            job_id: u64_col(r.get(9)?),
            job_name: r.get(10)?,
            issue_type,
            severity,
            auto_fixable: r.get::<_, i64>(13)? != 0,
            fix_description: r.get(14)?,
            fix_action,
            fix_args,
            primary: r.get::<_, i64>(17)? != 0,
            evidence: r.get(18)?,
            evidence_lines,
            context: r.get(20)?,
        },
        id,
        status,
        status_reason: r.get(22)?,
        reruns: u32::try_from(reruns).unwrap_or(u32::MAX),
        github_issue_number: u64_col(r.get(24)?),
        created_at: r.get(25)?,
        updated_at: r.get(26)?,
    }))
}

/// Cut `s` to at most `max` bytes at a char boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Bound a context window to [`MAX_CONTEXT_BYTES`]: whole lines are kept while they fit, then a
/// last line says how much was left out.
pub fn bound_context(ctx: &str) -> String {
    if ctx.len() <= MAX_CONTEXT_BYTES {
        return ctx.to_string();
    }
    let marker_room = 64;
    let mut out = String::new();
    for line in ctx.split_inclusive('\n') {
        if out.len() + line.len() > MAX_CONTEXT_BYTES - marker_room {
            break;
        }
        out.push_str(line);
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&format!(
        "... ({} more bytes not kept)\n",
        ctx.len() - out.len()
    ));
    out
}

/// The orchestrator's issues, cursors and analyzed runs over one connection.
#[derive(Debug, Clone, Copy)]
pub struct IssueStore<'a> {
    conn: &'a Connection,
}

impl<'a> IssueStore<'a> {
    /// Wrap a connection whose schema includes [`MIGRATION_SQL`].
    pub fn new(conn: &'a Connection) -> Self {
        IssueStore { conn }
    }

    /// The connection.
    pub fn connection(&self) -> &'a Connection {
        self.conn
    }

    fn issues(
        &self,
        op: &'static str,
        where_: &str,
        p: impl rusqlite::Params,
    ) -> Result<Vec<StoredIssue>> {
        let sql = format!("SELECT {COLS} FROM orchestrator_issues WHERE {where_}");
        let mut st = self.conn.prepare_cached(&sql).map_err(classify(op))?;
        let rows = st
            .query_map(p, issue_from_row)
            .map_err(classify(op))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(classify(op))?;
        rows.into_iter()
            .map(|r| {
                r.map_err(|reason| StoreError::Corrupt {
                    table: "orchestrator_issues",
                    reason,
                })
            })
            .collect()
    }

    /// Insert the issue of `(repo, workflow, issue_type, run_id)` or update the existing one.
    ///
    /// On an existing row: a record of an older attempt than stored changes nothing
    /// ([`UpsertKind::Stale`]); otherwise the evidence, job and attempt are refreshed, and if the
    /// attempt is newer and the row was `fixing`/`fixed` (the fix did not hold), it goes back to
    /// `open` ([`UpsertKind::Reopened`]). `ignored` rows stay ignored. Evidence and context are
    /// bounded ([`MAX_EVIDENCE_BYTES`], [`MAX_CONTEXT_BYTES`], [`MAX_EVIDENCE_LINES`]).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn upsert(&self, rec: &IssueRecord, now: Millis) -> Result<Upserted> {
        const OP: &str = "recording an orchestrator issue";
        let new_id = format!("iss-{}", ulid::Ulid::new().to_string().to_ascii_lowercase());
        let fix_args = serde_json::to_string(&rec.fix_args).unwrap_or_else(|_| "{}".into());
        let mut lines = rec.evidence_lines.clone();
        lines.sort_unstable();
        lines.dedup();
        lines.truncate(MAX_EVIDENCE_LINES);
        let lines = serde_json::to_string(&lines).unwrap_or_else(|_| "[]".into());
        let context = bound_context(&rec.context);
        let before: Option<(String, i64, String)> = self
            .conn
            .query_row(
                "SELECT id, run_attempt, status FROM orchestrator_issues \
                 WHERE repo = ?1 AND workflow = ?2 AND issue_type = ?3 AND run_id = ?4",
                params![
                    rec.repo,
                    rec.workflow,
                    rec.issue_type.as_str(),
                    rec.run_id as i64
                ],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(classify(OP))?;
        let returned: Option<(String, String)> = self
            .conn
            .query_row(
                "INSERT INTO orchestrator_issues (id, repo, workflow, workflow_path, run_id, \
                 run_attempt, run_url, head_sha, head_branch, job_id, job_name, issue_type, \
                 severity, auto_fixable, fix_description, fix_action, fix_args, is_primary, \
                 evidence, evidence_lines, context, status, status_reason, reruns, \
                 github_issue_number, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, \
                 ?17, ?18, ?19, ?20, ?21, 'open', '', 0, NULL, ?22, ?22) \
                 ON CONFLICT (repo, workflow, issue_type, run_id) DO UPDATE SET \
                   status = CASE WHEN excluded.run_attempt > orchestrator_issues.run_attempt \
                                  AND orchestrator_issues.status IN ('fixing', 'fixed') \
                             THEN 'open' ELSE orchestrator_issues.status END, \
                   status_reason = CASE WHEN excluded.run_attempt > orchestrator_issues.run_attempt \
                                  AND orchestrator_issues.status IN ('fixing', 'fixed') \
                             THEN 'failed again in attempt ' || excluded.run_attempt \
                             ELSE orchestrator_issues.status_reason END, \
                   workflow_path = excluded.workflow_path, run_attempt = excluded.run_attempt, \
                   run_url = excluded.run_url, head_sha = excluded.head_sha, \
                   head_branch = excluded.head_branch, job_id = excluded.job_id, \
                   job_name = excluded.job_name, severity = excluded.severity, \
                   auto_fixable = excluded.auto_fixable, \
                   fix_description = excluded.fix_description, fix_action = excluded.fix_action, \
                   fix_args = excluded.fix_args, is_primary = excluded.is_primary, \
                   evidence = excluded.evidence, evidence_lines = excluded.evidence_lines, \
                   context = excluded.context, updated_at = excluded.updated_at \
                 WHERE excluded.run_attempt >= orchestrator_issues.run_attempt \
                 RETURNING id, status",
                params![
                    new_id,
                    rec.repo,
                    rec.workflow,
                    rec.workflow_path,
                    rec.run_id as i64,
                    i64::from(rec.run_attempt.max(1)),
                    rec.run_url,
                    rec.head_sha,
                    rec.head_branch,
                    rec.job_id.map(|j| j as i64),
                    rec.job_name,
                    rec.issue_type.as_str(),
                    rec.severity.as_str(),
                    i64::from(rec.auto_fixable),
                    rec.fix_description,
                    rec.fix_action.map(FixAction::as_str),
                    fix_args,
                    i64::from(rec.primary),
                    cut(&rec.evidence, MAX_EVIDENCE_BYTES),
                    lines,
                    context,
                    now,
                ],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(classify(OP))?;
        Ok(match (before, returned) {
            (None, Some((id, _))) => Upserted {
                id,
                kind: UpsertKind::Inserted,
            },
            (Some((id, _, old_status)), Some((_, new_status))) => Upserted {
                id,
                kind: if old_status != new_status && new_status == "open" {
                    UpsertKind::Reopened
                } else {
                    UpsertKind::Updated
                },
            },
            (Some((id, _, _)), None) => Upserted {
                id,
                kind: UpsertKind::Stale,
            },
            (None, None) => {
                return Err(StoreError::Corrupt {
                    table: "orchestrator_issues",
                    reason: "upsert returned no row".into(),
                });
            }
        })
    }

    /// One issue by id.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn get(&self, id: &str) -> Result<Option<StoredIssue>> {
        Ok(self
            .issues("reading an orchestrator issue", "id = ?1", params![id])?
            .into_iter()
            .next())
    }

    /// Issues matching `filter`, oldest first.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn list(&self, filter: IssueFilter<'_>) -> Result<Vec<StoredIssue>> {
        self.issues(
            "listing orchestrator issues",
            "(?1 IS NULL OR status = ?1) AND (?2 IS NULL OR repo = ?2) \
             ORDER BY created_at, id",
            params![filter.status.map(IssueStatus::as_str), filter.repo],
        )
    }

    /// Issues of one run, oldest first.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn list_for_run(&self, repo: &str, run_id: u64) -> Result<Vec<StoredIssue>> {
        self.issues(
            "listing a run's orchestrator issues",
            "repo = ?1 AND run_id = ?2 ORDER BY created_at, id",
            params![repo, run_id as i64],
        )
    }

    /// Number of issues stored.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn count(&self) -> Result<u64> {
        let n: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM orchestrator_issues", [], |r| r.get(0))
            .map_err(classify("counting orchestrator issues"))?;
        Ok(n as u64)
    }

    /// Set an issue's status and the reason; `false` if there is no such issue.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn set_status(
        &self,
        id: &str,
        status: IssueStatus,
        reason: &str,
        now: Millis,
    ) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "UPDATE orchestrator_issues SET status = ?2, status_reason = ?3, updated_at = ?4 \
                 WHERE id = ?1",
                params![id, status.as_str(), reason, now],
            )
            .map_err(classify("setting an orchestrator issue's status"))?;
        Ok(n == 1)
    }

    /// Re-runs requested so far for a run (the largest count among its issues; 0 if none).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn reruns_for_run(&self, repo: &str, run_id: u64) -> Result<u32> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT COALESCE(MAX(reruns), 0) FROM orchestrator_issues \
                 WHERE repo = ?1 AND run_id = ?2",
                params![repo, run_id as i64],
                |r| r.get(0),
            )
            .map_err(classify("reading a run's re-runs"))?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Count one more re-run requested for a run, on all its issues; returns the new count.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn record_rerun(&self, repo: &str, run_id: u64, now: Millis) -> Result<u32> {
        let n: Option<i64> = self
            .conn
            .query_row(
                "UPDATE orchestrator_issues SET \
                   reruns = (SELECT MAX(reruns) FROM orchestrator_issues \
                             WHERE repo = ?1 AND run_id = ?2) + 1, \
                   updated_at = ?3 \
                 WHERE repo = ?1 AND run_id = ?2 RETURNING reruns",
                params![repo, run_id as i64, now],
                |r| r.get(0),
            )
            .optional()
            .map_err(classify("recording a re-run"))?;
        Ok(n.map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)))
    }

    /// Remember the GitHub issue opened or updated for this issue.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn record_github_issue(&self, id: &str, number: u64, now: Millis) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "UPDATE orchestrator_issues SET github_issue_number = ?2, updated_at = ?3 \
                 WHERE id = ?1",
                params![id, number as i64, now],
            )
            .map_err(classify("recording a GitHub issue number"))?;
        Ok(n == 1)
    }

    /// The GitHub issue last recorded for `(repo, workflow, issue_type)`, if any.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn github_issue_for(
        &self,
        repo: &str,
        workflow: &str,
        issue_type: IssueType,
    ) -> Result<Option<u64>> {
        let n: Option<i64> = self
            .conn
            .query_row(
                "SELECT github_issue_number FROM orchestrator_issues \
                 WHERE repo = ?1 AND workflow = ?2 AND issue_type = ?3 \
                   AND github_issue_number IS NOT NULL \
                 ORDER BY updated_at DESC, id DESC LIMIT 1",
                params![repo, workflow, issue_type.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(classify("looking up a GitHub issue number"))?;
        Ok(u64_col(n))
    }

    /// When the last successful check of `repo` started, if any.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn cursor(&self, repo: &str) -> Result<Option<Millis>> {
        self.conn
            .query_row(
                "SELECT last_check_at FROM orchestrator_cursors WHERE repo = ?1",
                params![repo],
                |r| r.get(0),
            )
            .optional()
            .map_err(classify("reading a check cursor"))
    }

    /// Set `repo`'s cursor (never moves it back).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn set_cursor(&self, repo: &str, at: Millis) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO orchestrator_cursors (repo, last_check_at) VALUES (?1, ?2) \
                 ON CONFLICT (repo) DO UPDATE SET \
                   last_check_at = MAX(last_check_at, excluded.last_check_at)",
                params![repo, at],
            )
            .map_err(classify("setting a check cursor"))?;
        Ok(())
    }

    /// All cursors, by repository.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn cursors(&self) -> Result<Vec<(String, Millis)>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT repo, last_check_at FROM orchestrator_cursors ORDER BY repo")
            .map_err(classify("listing check cursors"))?;
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(classify("listing check cursors"))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(classify("listing check cursors"))
    }

    /// The run attempt last analyzed without error, if any.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn analyzed_attempt(&self, repo: &str, run_id: u64) -> Result<Option<u32>> {
        let n: Option<i64> = self
            .conn
            .query_row(
                "SELECT run_attempt FROM orchestrator_runs WHERE repo = ?1 AND run_id = ?2",
                params![repo, run_id as i64],
                |r| r.get(0),
            )
            .optional()
            .map_err(classify("reading an analyzed run"))?;
        Ok(n.map(|n| u32::try_from(n).unwrap_or(u32::MAX)))
    }

    /// Remember that `attempt` of a run was analyzed without error (never moves back).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn mark_analyzed(&self, repo: &str, run_id: u64, attempt: u32, now: Millis) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO orchestrator_runs (repo, run_id, run_attempt, analyzed_at) \
                 VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (repo, run_id) DO UPDATE SET \
                   run_attempt = MAX(run_attempt, excluded.run_attempt), \
                   analyzed_at = excluded.analyzed_at",
                params![repo, run_id as i64, i64::from(attempt), now],
            )
            .map_err(classify("recording an analyzed run"))?;
        Ok(())
    }

    /// Forget analyzed runs older than `before` (their runs are outside any check window).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn prune_analyzed(&self, before: Millis) -> Result<usize> {
        self.conn
            .execute(
                "DELETE FROM orchestrator_runs WHERE analyzed_at < ?1",
                params![before],
            )
            .map_err(classify("pruning analyzed runs"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        apply_schema(&c).unwrap();
        c
    }

    fn rec(run_id: u64, attempt: u32, t: IssueType) -> IssueRecord {
        IssueRecord {
            repo: "o/r".into(),
            workflow: "CI".into(),
            workflow_path: Some(".github/workflows/ci.yml".into()),
            run_id,
            run_attempt: attempt,
            run_url: Some(format!("https://github.com/o/r/actions/runs/{run_id}")),
            head_sha: Some("abc".into()),
            head_branch: Some("feature".into()),
            job_id: Some(7),
            job_name: Some("test".into()),
            issue_type: t,
            severity: Severity::Medium,
            auto_fixable: true,
            fix_description: "Re-run".into(),
            fix_action: Some(FixAction::RerunFailedJobs),
            fix_args: BTreeMap::new(),
            primary: true,
            evidence: "curl: (6) Could not resolve host".into(),
            evidence_lines: vec![12, 3, 12],
            context: "> 12 | x\n".into(),
        }
    }

    #[test]
    fn upsert_dedups_and_reopens_on_newer_attempt() {
        let c = conn();
        let s = IssueStore::new(&c);
        let a = s.upsert(&rec(1, 1, IssueType::NetworkError), 10).unwrap();
        assert_eq!(a.kind, UpsertKind::Inserted);
        assert!(a.id.starts_with("iss-") && a.id.len() == 30, "{}", a.id);
        let b = s.upsert(&rec(1, 1, IssueType::NetworkError), 20).unwrap();
        assert_eq!(
            b,
            Upserted {
                id: a.id.clone(),
                kind: UpsertKind::Updated
            }
        );
        assert_eq!(s.count().unwrap(), 1);
        let got = s.get(&a.id).unwrap().unwrap();
        assert_eq!(got.record.evidence_lines, vec![3, 12]);
        assert_eq!(got.created_at, 10);
        assert_eq!(got.updated_at, 20);
        assert_eq!(got.status, IssueStatus::Open);

        s.set_status(&a.id, IssueStatus::Fixed, "rerun requested", 30)
            .unwrap();
        // Same attempt again: status kept.
        assert_eq!(
            s.upsert(&rec(1, 1, IssueType::NetworkError), 40)
                .unwrap()
                .kind,
            UpsertKind::Updated
        );
        assert_eq!(s.get(&a.id).unwrap().unwrap().status, IssueStatus::Fixed);
        // Newer attempt failed again: reopened.
        let r = s.upsert(&rec(1, 2, IssueType::NetworkError), 50).unwrap();
        assert_eq!(r.kind, UpsertKind::Reopened);
        let got = s.get(&a.id).unwrap().unwrap();
        assert_eq!(got.status, IssueStatus::Open);
        assert_eq!(got.record.run_attempt, 2);
        assert_eq!(got.status_reason, "failed again in attempt 2");
        // Older attempt: stale, nothing changes.
        let st = s.upsert(&rec(1, 1, IssueType::NetworkError), 60).unwrap();
        assert_eq!(st.kind, UpsertKind::Stale);
        assert_eq!(s.get(&a.id).unwrap().unwrap().updated_at, 50);
        // Another type of the same run is another issue.
        s.upsert(&rec(1, 2, IssueType::ScriptError), 70).unwrap();
        assert_eq!(s.count().unwrap(), 2);
        assert_eq!(s.list_for_run("o/r", 1).unwrap().len(), 2);
    }

    #[test]
    fn ignored_stays_ignored() {
        let c = conn();
        let s = IssueStore::new(&c);
        let a = s.upsert(&rec(1, 1, IssueType::Cancelled), 1).unwrap();
        s.set_status(&a.id, IssueStatus::Ignored, "cancelled", 2)
            .unwrap();
        s.upsert(&rec(1, 3, IssueType::Cancelled), 3).unwrap();
        assert_eq!(s.get(&a.id).unwrap().unwrap().status, IssueStatus::Ignored);
    }

    #[test]
    fn reruns_are_per_run() {
        let c = conn();
        let s = IssueStore::new(&c);
        s.upsert(&rec(1, 1, IssueType::NetworkError), 1).unwrap();
        s.upsert(&rec(1, 1, IssueType::Timeout), 1).unwrap();
        s.upsert(&rec(2, 1, IssueType::Timeout), 1).unwrap();
        assert_eq!(s.reruns_for_run("o/r", 1).unwrap(), 0);
        assert_eq!(s.record_rerun("o/r", 1, 5).unwrap(), 1);
        assert_eq!(s.record_rerun("o/r", 1, 6).unwrap(), 2);
        assert_eq!(s.reruns_for_run("o/r", 1).unwrap(), 2);
        assert!(
            s.list_for_run("o/r", 1)
                .unwrap()
                .iter()
                .all(|i| i.reruns == 2)
        );
        assert_eq!(s.reruns_for_run("o/r", 2).unwrap(), 0);
        assert_eq!(s.record_rerun("o/r", 99, 7).unwrap(), 0);
    }

    #[test]
    fn list_filters_cursor_and_github_numbers() {
        let c = conn();
        let s = IssueStore::new(&c);
        let a = s.upsert(&rec(1, 1, IssueType::TestFailure), 1).unwrap();
        let mut other = rec(2, 1, IssueType::TestFailure);
        other.repo = "o/other".into();
        s.upsert(&other, 2).unwrap();
        s.set_status(&a.id, IssueStatus::Fixed, "filed", 3).unwrap();
        assert_eq!(s.list(IssueFilter::default()).unwrap().len(), 2);
        let open = s
            .list(IssueFilter {
                status: Some(IssueStatus::Open),
                repo: None,
            })
            .unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].record.repo, "o/other");
        assert_eq!(
            s.list(IssueFilter {
                status: Some(IssueStatus::Fixed),
                repo: Some("o/r"),
            })
            .unwrap()
            .len(),
            1
        );
        assert_eq!(
            s.github_issue_for("o/r", "CI", IssueType::TestFailure)
                .unwrap(),
            None
        );
        s.record_github_issue(&a.id, 42, 4).unwrap();
        assert_eq!(
            s.github_issue_for("o/r", "CI", IssueType::TestFailure)
                .unwrap(),
            Some(42)
        );
        assert_eq!(s.cursor("o/r").unwrap(), None);
        s.set_cursor("o/r", 100).unwrap();
        s.set_cursor("o/r", 50).unwrap();
        assert_eq!(s.cursor("o/r").unwrap(), Some(100));
        assert_eq!(s.cursors().unwrap(), vec![("o/r".to_string(), 100)]);
        assert_eq!(s.analyzed_attempt("o/r", 1).unwrap(), None);
        s.mark_analyzed("o/r", 1, 2, 10).unwrap();
        s.mark_analyzed("o/r", 1, 1, 11).unwrap();
        assert_eq!(s.analyzed_attempt("o/r", 1).unwrap(), Some(2));
        assert_eq!(s.prune_analyzed(12).unwrap(), 1);
    }

    #[test]
    fn context_and_evidence_are_bounded() {
        let c = conn();
        let s = IssueStore::new(&c);
        let mut r = rec(1, 1, IssueType::TestFailure);
        r.context = "line of context\n".repeat(10_000);
        r.evidence = "é".repeat(5_000);
        r.evidence_lines = (1..100).collect();
        let id = s.upsert(&r, 1).unwrap().id;
        let got = s.get(&id).unwrap().unwrap();
        assert!(got.record.context.len() <= MAX_CONTEXT_BYTES);
        assert!(got.record.context.ends_with("more bytes not kept)\n"));
        assert!(got.record.evidence.len() <= MAX_EVIDENCE_BYTES);
        assert_eq!(got.record.evidence_lines.len(), MAX_EVIDENCE_LINES);
    }

    #[test]
    fn strict_schema_rejects_bad_status() {
        let c = conn();
        let s = IssueStore::new(&c);
        let id = s.upsert(&rec(1, 1, IssueType::TestFailure), 1).unwrap().id;
        let e = c.execute(
            "UPDATE orchestrator_issues SET status = 'bogus' WHERE id = ?1",
            params![id],
        );
        assert!(e.is_err());
    }
}
