//! The orchestrator's run reports, as the seed names them.
//!
//! [`write_reports`] writes `mcp_orchestrator_success_report.json` when no error happened and
//! no `open` (or stuck `fixing`) issue of severity `high` or `critical` remains, else
//! `mcp_orchestrator_failure_report.json`, and removes the other file if an earlier run left
//! it, so the directory always holds the verdict of the latest run. The write is atomic: a
//! temporary file in the same directory, synced, then renamed over the target.
//!
//! Fields: `status` (`SUCCESS`/`FAILURE`), `duration_s`, `issues_found`, `fixes_applied`,
//! `errors`, `issues` (`id, repo, workflow, run, run_url, type, severity, status, primary,
//! status_reason`), `fixes` (`issue_id, repo, run, type, action, result, applied`),
//! `started_at` and `generated_at` (RFC 3339, UTC).

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::fixes::{FixOutcome, FixResult};
use super::monitor::CheckReport;
use super::patterns::{IssueType, Severity};
use super::store::{IssueFilter, IssueStatus, IssueStore, StoreError, StoredIssue};
use crate::clock::{Millis, rfc3339};

/// File name of the report of a run that left nothing serious behind.
pub const SUCCESS_REPORT: &str = "mcp_orchestrator_success_report.json";
/// File name of the report of a run with errors or open high/critical issues.
pub const FAILURE_REPORT: &str = "mcp_orchestrator_failure_report.json";

/// The verdict of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ReportStatus {
    /// No error, no open high/critical issue.
    #[serde(rename = "SUCCESS")]
    Success,
    /// Errors, or open high/critical issues remain.
    #[serde(rename = "FAILURE")]
    Failure,
}

/// One issue as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportIssue {
    /// Issue id.
    pub id: String,
    /// `owner/name`.
    pub repo: String,
    /// Workflow name.
    pub workflow: String,
    /// Run id.
    pub run: u64,
    /// Run URL.
    pub run_url: Option<String>,
    /// Class.
    #[serde(rename = "type")]
    pub issue_type: IssueType,
    /// Severity.
    pub severity: Severity,
    /// Status after the run.
    pub status: IssueStatus,
    /// A job's primary verdict.
    pub primary: bool,
    /// Why the status is what it is.
    pub status_reason: String,
}

impl From<&StoredIssue> for ReportIssue {
    fn from(i: &StoredIssue) -> Self {
        ReportIssue {
            id: i.id.clone(),
            repo: i.record.repo.clone(),
            workflow: i.record.workflow.clone(),
            run: i.record.run_id,
            run_url: i.record.run_url.clone(),
            issue_type: i.record.issue_type,
            severity: i.record.severity,
            status: i.status,
            primary: i.record.primary,
            status_reason: i.status_reason.clone(),
        }
    }
}

/// One fix as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportFix {
    /// Issue id.
    pub issue_id: String,
    /// `owner/name`.
    pub repo: String,
    /// Run id.
    pub run: u64,
    /// Class.
    #[serde(rename = "type")]
    pub issue_type: IssueType,
    /// The plan, in words.
    pub action: String,
    /// What happened, in words.
    pub result: String,
    /// Whether something was done on GitHub.
    pub applied: bool,
}

impl From<&FixOutcome> for ReportFix {
    fn from(o: &FixOutcome) -> Self {
        ReportFix {
            issue_id: o.issue_id.clone(),
            repo: o.repo.clone(),
            run: o.run_id,
            issue_type: o.issue_type,
            action: o.plan.summary(),
            result: o.result.summary(),
            applied: o.applied,
        }
    }
}

/// Everything a report says about one orchestrator run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Start (unix ms).
    pub started_at: Millis,
    /// End (unix ms); also the report's `generated_at`.
    pub finished_at: Millis,
    /// Issues detected by this run's check.
    pub issues_found: usize,
    /// The issues to report (those of this run, then still-open ones of the same repositories).
    pub issues: Vec<ReportIssue>,
    /// The fixes tried.
    pub fixes: Vec<ReportFix>,
    /// Errors (check errors, failed fixes, fix notes).
    pub errors: Vec<String>,
}

impl RunSummary {
    /// Gather a summary from a check and the fixes that followed: the check's issues as they
    /// are now in the store, then the other still-open issues of the checked repositories.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn collect(
        store: &IssueStore<'_>,
        check: &CheckReport,
        outcomes: &[FixOutcome],
        finished_at: Millis,
    ) -> Result<Self, StoreError> {
        let ids = check.issue_ids();
        let mut seen: HashSet<String> = HashSet::new();
        let mut issues = Vec::new();
        for id in &ids {
            if let Some(i) = store.get(id)?
                && seen.insert(i.id.clone())
            {
                issues.push(ReportIssue::from(&i));
            }
        }
        for r in &check.repos {
            for status in [IssueStatus::Open, IssueStatus::Fixing] {
                for i in store.list(IssueFilter {
                    status: Some(status),
                    repo: Some(&r.repo),
                })? {
                    if seen.insert(i.id.clone()) {
                        issues.push(ReportIssue::from(&i));
                    }
                }
            }
        }
        let mut errors = check.errors();
        for o in outcomes {
            if let FixResult::Failed { error } = &o.result {
                errors.push(format!(
                    "{} ({} run {}): {error}",
                    o.issue_id, o.repo, o.run_id
                ));
            }
            for n in &o.notes {
                errors.push(format!("{} ({} run {}): {n}", o.issue_id, o.repo, o.run_id));
            }
        }
        Ok(RunSummary {
            started_at: check.started_at,
            finished_at,
            issues_found: ids.len(),
            issues,
            fixes: outcomes.iter().map(ReportFix::from).collect(),
            errors,
        })
    }

    /// `SUCCESS` when there is no error and no open/fixing issue of severity high or critical.
    pub fn status(&self) -> ReportStatus {
        let serious = self.issues.iter().any(|i| {
            matches!(i.status, IssueStatus::Open | IssueStatus::Fixing)
                && i.severity >= Severity::High
        });
        if self.errors.is_empty() && !serious {
            ReportStatus::Success
        } else {
            ReportStatus::Failure
        }
    }

    /// Fixes that did something on GitHub.
    pub fn fixes_applied(&self) -> usize {
        self.fixes.iter().filter(|f| f.applied).count()
    }

    /// Duration in seconds.
    pub fn duration_s(&self) -> f64 {
        (self.finished_at - self.started_at).max(0) as f64 / 1000.0
    }

    /// The report's JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "status": self.status(),
            "duration_s": self.duration_s(),
            "issues_found": self.issues_found,
            "fixes_applied": self.fixes_applied(),
            "errors": self.errors,
            "issues": self.issues,
            "fixes": self.fixes,
            "started_at": rfc3339(self.started_at),
            "generated_at": rfc3339(self.finished_at),
        })
    }
}

/// Write `bytes` to `path` atomically: a temporary file next to it, synced, renamed over it.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Write the report of `summary` into `dir` (created if missing) and return its path: the
/// success or failure file by [`RunSummary::status`]; the other file is removed if present.
///
/// # Errors
/// I/O errors creating the directory or writing the file.
pub fn write_reports(dir: &Path, summary: &RunSummary) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let (name, other) = match summary.status() {
        ReportStatus::Success => (SUCCESS_REPORT, FAILURE_REPORT),
        ReportStatus::Failure => (FAILURE_REPORT, SUCCESS_REPORT),
    };
    let path = dir.join(name);
    let mut bytes = serde_json::to_vec_pretty(&summary.to_json()).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    write_atomic(&path, &bytes)?;
    match std::fs::remove_file(dir.join(other)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(sev: Severity, status: IssueStatus) -> ReportIssue {
        ReportIssue {
            id: "iss-1".into(),
            repo: "o/r".into(),
            workflow: "CI".into(),
            run: 1,
            run_url: None,
            issue_type: IssueType::TestFailure,
            severity: sev,
            status,
            primary: true,
            status_reason: String::new(),
        }
    }

    #[test]
    fn status_rules() {
        let mut s = RunSummary {
            started_at: 1_000,
            finished_at: 3_500,
            ..RunSummary::default()
        };
        assert_eq!(s.status(), ReportStatus::Success);
        s.issues.push(issue(Severity::Medium, IssueStatus::Open));
        s.issues.push(issue(Severity::Critical, IssueStatus::Fixed));
        s.issues.push(issue(Severity::High, IssueStatus::Ignored));
        assert_eq!(s.status(), ReportStatus::Success);
        s.issues.push(issue(Severity::High, IssueStatus::Open));
        assert_eq!(s.status(), ReportStatus::Failure);
        s.issues.pop();
        s.errors.push("o/r: GET /x: 500".into());
        assert_eq!(s.status(), ReportStatus::Failure);
        assert_eq!(s.duration_s(), 2.5);
    }

    #[test]
    fn writes_one_file_atomically_and_removes_the_stale_one() {
        let d = tempfile::tempdir().unwrap();
        let mut s = RunSummary {
            started_at: 0,
            finished_at: 1_000,
            errors: vec!["boom".into()],
            ..RunSummary::default()
        };
        let p = write_reports(d.path(), &s).unwrap();
        assert_eq!(p.file_name().unwrap(), FAILURE_REPORT);
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(v["status"], "FAILURE");
        assert_eq!(v["errors"][0], "boom");
        assert_eq!(v["generated_at"], "1970-01-01T00:00:01.000Z");
        s.errors.clear();
        let p = write_reports(d.path(), &s).unwrap();
        assert_eq!(p.file_name().unwrap(), SUCCESS_REPORT);
        let names: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![SUCCESS_REPORT.to_string()]);
    }
}
