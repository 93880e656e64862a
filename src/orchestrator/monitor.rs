//! The failed-run monitor: finds failed workflow runs, reads their failed jobs' logs, classifies
//! them and records one orchestrator issue per failure class and run.
//!
//! # A check
//! [`Monitor::check`] takes the repositories to look at (the autoscaler's repositories of an
//! owner pushed within N days, see [`RepoRef::from_repositories`], or an explicit
//! `--orchestrator-repo owner/name` list, see [`parse_repo_list`]) and for each one:
//!
//! 1. computes the window ([`window_start`]): since the repository's cursor (the start of its
//!    last successful check) minus [`MonitorConfig::overlap_ms`], or
//!    [`MonitorConfig::first_lookback_ms`] before now on the first check;
//! 2. lists completed runs through the client's cached call
//!    (`GET /repos/{o}/{r}/actions/runs?status=completed&created=>=…`, [`run_filter`]; the
//!    `created` bound reaches [`MonitorConfig::max_run_duration_ms`] further back, since a run
//!    created before the window may have completed inside it);
//! 3. keeps the runs that concluded `failure`, `cancelled` or `timed_out`, were updated inside
//!    the window and whose attempt was not already analyzed ([`select_runs`], pure);
//! 4. lists each run's jobs (latest attempt) and keeps the failed, timed-out and cancelled ones
//!    ([`select_jobs`], pure): only their logs are fetched (`/actions/jobs/{id}/logs`, redirect
//!    followed); the check-run annotations are fetched only for timed-out and cancelled jobs
//!    ([`wants_annotations`]), where they tell a timeout from a cancellation;
//! 5. classifies each log with a [`JobContext`] of the job's conclusion, those annotations and
//!    the failing step's name ([`job_context`]), and derives evidence line numbers and a
//!    context window ([`analyze_log`], pure);
//! 6. merges the findings of the run's jobs: one per issue type, a primary verdict of any job
//!    winning over a secondary finding, then the higher score ([`merge_run_findings`]); and
//!    upserts one issue per type into the [`IssueStore`] (which dedups across checks).
//!
//! A run whose conclusion is `failure` but that has no job at all (GitHub could not start it,
//! usually because the workflow file is invalid) is recorded as `workflow_syntax_error`.
//!
//! Errors are collected per repository ([`RepoCheck::errors`]) and never abort the check of the
//! other repositories. A run is marked analyzed, and a repository's cursor advanced, only when
//! nothing failed for it, so the next check retries what failed (the store's upsert makes the
//! retry harmless).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::str::FromStr;

use rusqlite::Connection;
use serde::Serialize;

use super::classify::{
    EVIDENCE_MAX_CHARS, Finding, JOB_CONCLUSION_ID, JobContext, classify, normalize_line,
};
use super::patterns::{Catalogue, IssueType, Severity};
use super::store::{
    CONTEXT_RADIUS, IssueRecord, IssueStore, MAX_EVIDENCE_LINES, UpsertKind, bound_context,
};
use crate::clock::{Millis, SharedClock, rfc3339};
use crate::github::types::{Annotation, Job, Repository, WorkflowRun, parse_timestamp};
use crate::github::{GithubClient, RunFilter};

/// Run conclusions the monitor looks at.
pub const FAILED_RUN_CONCLUSIONS: [&str; 3] = ["failure", "cancelled", "timed_out"];
/// Job conclusions whose logs are fetched.
pub const FAILED_JOB_CONCLUSIONS: [&str; 3] = ["failure", "timed_out", "cancelled"];

/// A repository as `owner/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct RepoRef {
    /// Owner (user or organization).
    pub owner: String,
    /// Repository name.
    pub name: String,
}

impl RepoRef {
    /// A repository reference.
    pub fn new(owner: impl Into<String>, name: impl Into<String>) -> Self {
        RepoRef {
            owner: owner.into(),
            name: name.into(),
        }
    }

    /// The repositories the autoscaler found (`repos_pushed_within`), in their order.
    pub fn from_repositories(repos: &[Repository]) -> Vec<RepoRef> {
        repos
            .iter()
            .map(|r| RepoRef::new(r.owner.login.clone(), r.name.clone()))
            .collect()
    }
}

impl fmt::Display for RepoRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl FromStr for RepoRef {
    type Err = String;

    /// Parses `owner/name` (surrounding spaces ignored); the error says what is wrong.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let (owner, name) = t
            .split_once('/')
            .ok_or_else(|| format!("{t:?} is not owner/name"))?;
        if !valid_segment(owner) || !valid_segment(name) {
            return Err(format!(
                "{t:?} is not owner/name (letters, digits, '-', '_', '.')"
            ));
        }
        Ok(RepoRef::new(owner, name))
    }
}

/// Parse `--orchestrator-repo` values (`owner/name` each; duplicates dropped, order kept).
///
/// # Errors
/// The first invalid value's message.
pub fn parse_repo_list<S: AsRef<str>>(items: &[S]) -> Result<Vec<RepoRef>, String> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for i in items {
        let r: RepoRef = i.as_ref().parse()?;
        if seen.insert(r.clone()) {
            out.push(r);
        }
    }
    Ok(out)
}

/// Monitor settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorConfig {
    /// How far back the first check of a repository looks (default 24 h).
    pub first_lookback_ms: Millis,
    /// How far before the cursor later checks start, for runs GitHub reports late (default
    /// 10 min). Runs seen twice are skipped ([`select_runs`]) or deduplicated by the store.
    pub overlap_ms: Millis,
    /// How long before the window a run may have been created and still completed inside it
    /// (the `created` bound of the listing; default 24 h).
    pub max_run_duration_ms: Millis,
    /// Most runs listed per repository and check (default 100).
    pub max_runs_per_repo: usize,
    /// Longest log classified, in bytes; longer logs keep their end (default 16 MiB).
    pub max_log_bytes: usize,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            first_lookback_ms: 24 * 3_600_000,
            overlap_ms: 10 * 60_000,
            max_run_duration_ms: 24 * 3_600_000,
            max_runs_per_repo: 100,
            max_log_bytes: 16 << 20,
        }
    }
}

/// Start of a check's window: the cursor minus the overlap, or the first look-back before now.
pub fn window_start(cursor: Option<Millis>, now: Millis, cfg: &MonitorConfig) -> Millis {
    match cursor {
        Some(c) => c.min(now) - cfg.overlap_ms,
        None => now - cfg.first_lookback_ms,
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`, the date-time form of GitHub's search syntax.
fn search_time(ms: Millis) -> String {
    let s = rfc3339(ms);
    format!("{}Z", &s[..19])
}

/// The listing filter of a window starting at `since`: completed runs created at most
/// [`MonitorConfig::max_run_duration_ms`] before it.
pub fn run_filter(since: Millis, cfg: &MonitorConfig) -> RunFilter {
    RunFilter {
        status: Some("completed".into()),
        created: Some(format!(
            ">={}",
            search_time(since - cfg.max_run_duration_ms)
        )),
        limit: Some(cfg.max_runs_per_repo.max(1)),
        ..RunFilter::default()
    }
}

fn is_one_of(v: Option<&str>, set: &[&str]) -> bool {
    v.is_some_and(|v| set.iter().any(|s| s.eq_ignore_ascii_case(v)))
}

/// The runs to analyze: completed, concluded `failure`/`cancelled`/`timed_out`, updated at or
/// after `since` (runs without a readable `updated_at` are kept), and whose attempt is newer
/// than the one `analyzed` reports for the run id. Each run id once, in listing order.
pub fn select_runs(
    runs: &[WorkflowRun],
    since: Millis,
    analyzed: impl Fn(u64) -> Option<u32>,
) -> Vec<&WorkflowRun> {
    let mut seen = HashSet::new();
    runs.iter()
        .filter(|r| is_one_of(r.status.as_deref(), &["completed"]))
        .filter(|r| is_one_of(r.conclusion.as_deref(), &FAILED_RUN_CONCLUSIONS))
        .filter(|r| {
            r.updated_at
                .as_deref()
                .and_then(parse_timestamp)
                .is_none_or(|t| t >= since)
        })
        .filter(|r| analyzed(r.id).is_none_or(|a| a < r.run_attempt.unwrap_or(1)))
        .filter(|r| seen.insert(r.id))
        .collect()
}

/// The jobs whose logs are fetched: completed (or without a status) and concluded `failure`,
/// `timed_out` or `cancelled`.
pub fn select_jobs(jobs: &[Job]) -> Vec<&Job> {
    jobs.iter()
        .filter(|j| j.status.is_none() || is_one_of(j.status.as_deref(), &["completed"]))
        .filter(|j| is_one_of(j.conclusion.as_deref(), &FAILED_JOB_CONCLUSIONS))
        .collect()
}

/// Whether a job's check-run annotations are worth a call: only for `timed_out` and `cancelled`
/// jobs, whose logs end alike.
pub fn wants_annotations(job: &Job) -> bool {
    is_one_of(job.conclusion.as_deref(), &["timed_out", "cancelled"])
}

/// The failing step's name: the first step that failed, else the first that timed out, else
/// the first cancelled one.
pub fn failing_step(job: &Job) -> Option<&str> {
    let mut steps: Vec<_> = job.steps.iter().collect();
    steps.sort_by_key(|s| s.number);
    ["failure", "timed_out", "cancelled"]
        .iter()
        .find_map(|c| {
            steps.iter().find(|s| {
                s.conclusion
                    .as_deref()
                    .is_some_and(|x| x.eq_ignore_ascii_case(c))
            })
        })
        .map(|s| s.name.as_str())
}

/// The classifier's job data: conclusion, annotation messages (with their titles), failing step.
pub fn job_context(job: &Job, annotations: &[Annotation]) -> JobContext {
    JobContext {
        conclusion: job.conclusion.clone(),
        annotations: annotations
            .iter()
            .filter(|a| !a.message.trim().is_empty())
            .map(
                |a| match a.title.as_deref().filter(|t| !t.trim().is_empty()) {
                    Some(t) if !a.message.contains(t) => format!("{t}: {}", a.message),
                    _ => a.message.clone(),
                },
            )
            .collect(),
        step_name: failing_step(job).map(str::to_owned),
    }
}

/// One finding of one job's log, with where it is in the log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobFinding {
    /// The classifier's finding (its `line` is a line of the whole log).
    pub finding: Finding,
    /// Whether it is the job's primary verdict.
    pub primary: bool,
    /// Numbers of the log lines that matched the class (the finding's line first kept; at most
    /// [`MAX_EVIDENCE_LINES`], ascending); empty for annotation/conclusion findings.
    pub evidence_lines: Vec<usize>,
    /// Normalized lines around the evidence lines ([`CONTEXT_RADIUS`] each side), bounded.
    pub context: String,
}

/// Keep the end of a log longer than `max` bytes (cut at a line start); returns the kept text
/// and how many lines were dropped.
fn tail_of(log: &str, max: usize) -> (&str, usize) {
    if log.len() <= max {
        return (log, 0);
    }
    let mut start = log.len() - max;
    while !log.is_char_boundary(start) {
        start += 1;
    }
    let start =
        memchr::memchr(b'\n', &log.as_bytes()[start..]).map_or(log.len(), |i| start + i + 1);
    let dropped = memchr::memchr_iter(b'\n', &log.as_bytes()[..start]).count();
    (&log[start..], dropped)
}

fn cut_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// Line numbers (1-based, within `lines`) that match any pattern of `f`'s class: the
/// finding's own line plus the last others, at most [`MAX_EVIDENCE_LINES`], ascending.
fn evidence_lines(cat: &Catalogue, lines: &[&str], f: &Finding) -> Vec<usize> {
    if f.line == 0 || f.line > lines.len() {
        return Vec::new();
    }
    if f.pattern_id == JOB_CONCLUSION_ID || f.count <= 1 {
        return vec![f.line];
    }
    let pats: Vec<_> = cat
        .patterns()
        .iter()
        .filter(|p| p.issue_type == f.issue_type)
        .collect();
    let mut others: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|&(i, _)| i + 1 != f.line)
        .filter(|(_, raw)| {
            let n = normalize_line(raw);
            pats.iter().any(|p| p.regex.is_match(n.as_bytes()))
        })
        .map(|(i, _)| i + 1)
        .collect();
    let keep = MAX_EVIDENCE_LINES.saturating_sub(1);
    if others.len() > keep {
        others.drain(..others.len() - keep);
    }
    others.push(f.line);
    others.sort_unstable();
    others
}

/// The normalized lines within [`CONTEXT_RADIUS`] of each evidence line, as
/// `"> 123 | text"` (evidence) or `"  124 | text"`, gaps shown as `...`; bounded.
fn context_window(lines: &[&str], evidence: &[usize]) -> String {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for &l in evidence {
        let lo = l.saturating_sub(CONTEXT_RADIUS).max(1);
        let hi = (l + CONTEXT_RADIUS).min(lines.len());
        match ranges.last_mut() {
            Some(last) if lo <= last.1 + 1 => last.1 = last.1.max(hi),
            _ => ranges.push((lo, hi)),
        }
    }
    let mut out = String::new();
    for (k, (lo, hi)) in ranges.iter().enumerate() {
        if k > 0 {
            out.push_str("      ...\n");
        }
        for n in *lo..=*hi {
            let mark = if evidence.contains(&n) { '>' } else { ' ' };
            let text = cut_chars(&normalize_line(lines[n - 1]), EVIDENCE_MAX_CHARS);
            out.push_str(&format!("{mark}{n:>6} | {text}\n"));
        }
    }
    bound_context(&out)
}

/// Classify one job's log with its job data and locate the evidence of every finding. Logs
/// longer than `max_log_bytes` are classified by their end (line numbers stay those of the
/// whole log). Pure.
pub fn analyze_log(
    cat: &Catalogue,
    log: &str,
    job: &JobContext,
    max_log_bytes: usize,
) -> Vec<JobFinding> {
    let (text, dropped) = tail_of(log, max_log_bytes);
    let c = classify(cat, text, Some(job));
    let lines: Vec<&str> = text.split('\n').collect();
    c.issues
        .into_iter()
        .enumerate()
        .map(|(i, mut f)| {
            let local = evidence_lines(cat, &lines, &f);
            let context = if !local.is_empty() {
                context_window(&lines, &local)
                    .lines()
                    .map(|l| shift_context_line(l, dropped))
                    .collect::<Vec<_>>()
                    .join("\n")
                    + "\n"
            } else if f.pattern_id == JOB_CONCLUSION_ID {
                format!(
                    "job conclusion: {}\n",
                    job.conclusion.as_deref().unwrap_or("?")
                )
            } else if !f.evidence.is_empty() {
                format!("annotation: {}\n", f.evidence)
            } else {
                String::new()
            };
            if f.line > 0 {
                f.line += dropped;
            }
            JobFinding {
                primary: i == 0,
                evidence_lines: local.iter().map(|l| l + dropped).collect(),
                context: bound_context(&context),
                finding: f,
            }
        })
        .collect()
}

/// Renumber a context line (`"> 12 | text"`) by `by` dropped lines.
fn shift_context_line(line: &str, by: usize) -> String {
    if by == 0 {
        return line.to_string();
    }
    let (Some(mark), Some(rest)) = (line.get(..1), line.get(1..)) else {
        return line.to_string();
    };
    match rest.split_once(" | ") {
        Some((num, text)) => match num.trim().parse::<usize>() {
            Ok(n) => format!("{mark}{:>6} | {text}", n + by),
            Err(_) => line.to_string(),
        },
        None => line.to_string(),
    }
}

/// Merge the findings of a run's jobs (`(job index, findings)`): one per issue type, a primary
/// verdict beating a secondary finding, then the higher score, then the earlier job. Pure.
pub fn merge_run_findings(
    per_job: Vec<(usize, Vec<JobFinding>)>,
) -> BTreeMap<IssueType, (usize, JobFinding)> {
    let mut out: BTreeMap<IssueType, (usize, JobFinding)> = BTreeMap::new();
    for (job, findings) in per_job {
        for f in findings {
            let t = f.finding.issue_type;
            let better = match out.get(&t) {
                None => true,
                Some((_, cur)) => (f.primary, f.finding.score) > (cur.primary, cur.finding.score),
            };
            if better {
                out.insert(t, (job, f));
            }
        }
    }
    out
}

/// The workflow's name as recorded: the run's name, else the job's workflow name, else the
/// file path, else `workflow <id>`.
pub fn workflow_name(run: &WorkflowRun) -> String {
    run.name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .or_else(|| workflow_path(run))
        .unwrap_or_else(|| format!("workflow {}", run.workflow_id.unwrap_or(run.id)))
}

/// The workflow file path without the `@ref` suffix newer API versions add.
pub fn workflow_path(run: &WorkflowRun) -> Option<String> {
    run.path
        .as_deref()
        .map(|p| p.split('@').next().unwrap_or(p).to_string())
        .filter(|p| !p.is_empty())
}

/// The issue record of one merged finding. Pure.
pub fn issue_record(
    repo: &RepoRef,
    run: &WorkflowRun,
    job: Option<&Job>,
    f: &JobFinding,
) -> IssueRecord {
    let fix = f.finding.fix.as_ref();
    IssueRecord {
        repo: repo.to_string(),
        workflow: run
            .name
            .clone()
            .or_else(|| job.and_then(|j| j.workflow_name.clone()))
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| workflow_name(run)),
        workflow_path: workflow_path(run),
        run_id: run.id,
        run_attempt: run.run_attempt.unwrap_or(1).max(1),
        run_url: run.html_url.clone(),
        head_sha: run.head_sha.clone(),
        head_branch: run.head_branch.clone(),
        job_id: job.map(|j| j.id),
        job_name: job.map(|j| j.name.clone()),
        issue_type: f.finding.issue_type,
        severity: f.finding.severity,
        auto_fixable: f.finding.auto_fixable,
        fix_description: f.finding.fix_description.clone(),
        fix_action: fix.map(|x| x.action),
        fix_args: fix.map(|x| x.args.clone()).unwrap_or_default(),
        primary: f.primary,
        evidence: f.finding.evidence.clone(),
        evidence_lines: f.evidence_lines.clone(),
        context: f.context.clone(),
    }
}

/// The record of a `failure` run that has no job: GitHub could not start it.
fn jobless_record(cat: &Catalogue, repo: &RepoRef, run: &WorkflowRun) -> IssueRecord {
    let p = cat
        .patterns()
        .iter()
        .find(|p| p.issue_type == IssueType::WorkflowSyntaxError);
    let finding = Finding {
        issue_type: IssueType::WorkflowSyntaxError,
        severity: p.map_or(Severity::High, |p| p.severity),
        auto_fixable: false,
        line: 0,
        evidence: "the run failed without starting any job (GitHub could not run the workflow \
                   file)"
            .into(),
        fix_description: p.map_or_else(
            || "Fix the workflow file (check it with actionlint)".into(),
            |p| p.fix_description.clone(),
        ),
        pattern_id: JOB_CONCLUSION_ID.into(),
        score: 0.0,
        count: 0,
        fix: None,
    };
    let jf = JobFinding {
        context: format!(
            "run conclusion: {} with no job\n",
            run.conclusion.as_deref().unwrap_or("?")
        ),
        finding,
        primary: true,
        evidence_lines: Vec::new(),
    };
    issue_record(repo, run, None, &jf)
}

/// One issue recorded by a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssueChange {
    /// Issue id.
    pub id: String,
    /// Run.
    pub run_id: u64,
    /// Class.
    pub issue_type: IssueType,
    /// Primary verdict of one of the run's jobs.
    pub primary: bool,
    /// What the store did.
    pub kind: UpsertKind,
}

/// What a check did for one repository.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RepoCheck {
    /// `owner/name`.
    pub repo: String,
    /// Start of the window (unix ms).
    pub since: Millis,
    /// Runs the listing returned.
    pub runs_listed: usize,
    /// Runs analyzed (ids).
    pub runs_analyzed: Vec<u64>,
    /// Jobs whose logs were fetched and classified.
    pub logs_fetched: usize,
    /// Issues recorded.
    pub issues: Vec<IssueChange>,
    /// What failed (endpoint and reason); the rest of the check went on.
    pub errors: Vec<String>,
    /// Whether the cursor moved to this check's start (only without errors).
    pub cursor_advanced: bool,
}

/// The result of [`Monitor::check`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CheckReport {
    /// When the check started (unix ms); the new cursor of each repository checked cleanly.
    pub started_at: Millis,
    /// When it ended (unix ms).
    pub finished_at: Millis,
    /// Per repository, in the order given.
    pub repos: Vec<RepoCheck>,
}

impl CheckReport {
    /// All errors, each prefixed with its repository.
    pub fn errors(&self) -> Vec<String> {
        self.repos
            .iter()
            .flat_map(|r| r.errors.iter().map(move |e| format!("{}: {e}", r.repo)))
            .collect()
    }

    /// Ids of the issues recorded, each once, in order.
    pub fn issue_ids(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        self.repos
            .iter()
            .flat_map(|r| r.issues.iter())
            .filter(|i| seen.insert(i.id.clone()))
            .map(|i| i.id.clone())
            .collect()
    }

    /// Issues newly inserted by this check.
    pub fn new_issues(&self) -> usize {
        self.repos
            .iter()
            .flat_map(|r| r.issues.iter())
            .filter(|i| i.kind == UpsertKind::Inserted)
            .count()
    }
}

/// The failed-run monitor over a GitHub client, the store's connection and a clock.
pub struct Monitor<'a> {
    client: &'a GithubClient,
    store: IssueStore<'a>,
    clock: SharedClock,
    catalogue: Catalogue,
    config: MonitorConfig,
}

impl fmt::Debug for Monitor<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Monitor")
            .field("client", self.client)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<'a> Monitor<'a> {
    /// A monitor with the built-in pattern catalogue and [`MonitorConfig::default`]. `conn`
    /// must have the orchestrator tables ([`super::store::MIGRATION_SQL`]).
    pub fn new(client: &'a GithubClient, conn: &'a Connection, clock: SharedClock) -> Self {
        Monitor {
            client,
            store: IssueStore::new(conn),
            clock,
            catalogue: Catalogue::builtin(),
            config: MonitorConfig::default(),
        }
    }

    /// Use another catalogue (built-in plus the user's pattern files).
    pub fn with_catalogue(mut self, catalogue: Catalogue) -> Self {
        self.catalogue = catalogue;
        self
    }

    /// Use other settings.
    pub fn with_config(mut self, config: MonitorConfig) -> Self {
        self.config = config;
        self
    }

    /// The issue store.
    pub fn store(&self) -> IssueStore<'a> {
        self.store
    }

    /// Check `repos` once (see the module docs). Never fails as a whole: errors are in the
    /// report, per repository.
    pub async fn check(&self, repos: &[RepoRef]) -> CheckReport {
        let started_at = self.clock.now_ms();
        let mut report = CheckReport {
            started_at,
            ..CheckReport::default()
        };
        for repo in repos {
            let rc = self.check_repo(repo, started_at).await;
            if !rc.errors.is_empty() {
                tracing::warn!(repo = %rc.repo, errors = rc.errors.len(), "orchestrator check had errors");
            }
            report.repos.push(rc);
        }
        report.finished_at = self.clock.now_ms();
        report
    }

    async fn check_repo(&self, repo: &RepoRef, started_at: Millis) -> RepoCheck {
        let full = repo.to_string();
        let mut rc = RepoCheck {
            repo: full.clone(),
            ..RepoCheck::default()
        };
        let cursor = match self.store.cursor(&full) {
            Ok(c) => c,
            Err(e) => {
                rc.errors.push(e.to_string());
                return rc;
            }
        };
        let since = window_start(cursor, started_at, &self.config);
        rc.since = since;
        let filter = run_filter(since, &self.config);
        let runs = match self
            .client
            .workflow_runs(&repo.owner, &repo.name, &filter)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                rc.errors.push(e.to_string());
                return rc;
            }
        };
        rc.runs_listed = runs.len();
        let selected = select_runs(&runs, since, |id| {
            self.store.analyzed_attempt(&full, id).ok().flatten()
        });
        for run in selected {
            self.check_run(repo, run, &mut rc).await;
        }
        if rc.errors.is_empty() {
            match self.store.set_cursor(&full, started_at) {
                Ok(()) => rc.cursor_advanced = true,
                Err(e) => rc.errors.push(e.to_string()),
            }
        }
        rc
    }

    async fn check_run(&self, repo: &RepoRef, run: &WorkflowRun, rc: &mut RepoCheck) {
        let full = repo.to_string();
        let errors_before = rc.errors.len();
        let jobs = match self.client.run_jobs(&repo.owner, &repo.name, run.id).await {
            Ok(j) => j,
            Err(e) => {
                rc.errors.push(format!("run {}: {e}", run.id));
                return;
            }
        };
        let mut records = Vec::new();
        if jobs.is_empty() && is_one_of(run.conclusion.as_deref(), &["failure"]) {
            records.push(jobless_record(&self.catalogue, repo, run));
        }
        let failed = select_jobs(&jobs);
        let mut per_job = Vec::new();
        for (idx, job) in failed.iter().enumerate() {
            let annotations = if wants_annotations(job) {
                match self
                    .client
                    .check_run_annotations(&repo.owner, &repo.name, job.id)
                    .await
                {
                    Ok(a) => a,
                    Err(e) => {
                        rc.errors
                            .push(format!("run {} job {}: annotations: {e}", run.id, job.id));
                        Vec::new()
                    }
                }
            } else {
                Vec::new()
            };
            let log = match self.client.job_log(&repo.owner, &repo.name, job.id).await {
                Ok(l) => l,
                Err(e) => {
                    rc.errors
                        .push(format!("run {} job {}: log: {e}", run.id, job.id));
                    continue;
                }
            };
            rc.logs_fetched += 1;
            let ctx = job_context(job, &annotations);
            per_job.push((
                idx,
                analyze_log(&self.catalogue, &log, &ctx, self.config.max_log_bytes),
            ));
        }
        for (_, (idx, f)) in merge_run_findings(per_job) {
            records.push(issue_record(repo, run, Some(failed[idx]), &f));
        }
        let now = self.clock.now_ms();
        for rec in &records {
            match self.store.upsert(rec, now) {
                Ok(u) => rc.issues.push(IssueChange {
                    id: u.id,
                    run_id: run.id,
                    issue_type: rec.issue_type,
                    primary: rec.primary,
                    kind: u.kind,
                }),
                Err(e) => rc.errors.push(format!("run {}: {e}", run.id)),
            }
        }
        rc.runs_analyzed.push(run.id);
        if rc.errors.len() == errors_before
            && let Err(e) =
                self.store
                    .mark_analyzed(&full, run.id, run.run_attempt.unwrap_or(1), now)
        {
            rc.errors.push(format!("run {}: {e}", run.id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::types::Step;

    fn run(
        id: u64,
        status: &str,
        conclusion: Option<&str>,
        updated: &str,
        attempt: u32,
    ) -> WorkflowRun {
        WorkflowRun {
            id,
            name: Some("CI".into()),
            head_branch: Some("main".into()),
            head_sha: Some("abc".into()),
            run_number: Some(1),
            run_attempt: Some(attempt),
            event: Some("push".into()),
            status: Some(status.into()),
            conclusion: conclusion.map(Into::into),
            workflow_id: Some(9),
            path: Some(".github/workflows/ci.yml@main".into()),
            html_url: None,
            created_at: None,
            updated_at: Some(updated.into()),
            run_started_at: None,
        }
    }

    fn job(id: u64, conclusion: &str, steps: &[(&str, &str)]) -> Job {
        Job {
            id,
            run_id: 1,
            run_attempt: Some(1),
            name: format!("job {id}"),
            workflow_name: Some("CI".into()),
            head_branch: None,
            status: Some("completed".into()),
            conclusion: Some(conclusion.into()),
            labels: vec![],
            runner_id: None,
            runner_name: None,
            runner_group_id: None,
            runner_group_name: None,
            created_at: None,
            started_at: None,
            completed_at: None,
            html_url: None,
            steps: steps
                .iter()
                .enumerate()
                .map(|(i, (n, c))| Step {
                    name: (*n).into(),
                    status: Some("completed".into()),
                    conclusion: Some((*c).into()),
                    number: i as u32 + 1,
                    started_at: None,
                    completed_at: None,
                })
                .collect(),
        }
    }

    #[test]
    fn repo_refs_parse() {
        assert_eq!("o/r".parse::<RepoRef>().unwrap(), RepoRef::new("o", "r"));
        assert_eq!(
            parse_repo_list(&[" a/b ", "c/d.e", "a/b"]).unwrap(),
            vec![RepoRef::new("a", "b"), RepoRef::new("c", "d.e")]
        );
        for bad in ["", "o", "o/", "/r", "o/r/x", "o/..", "o r/x"] {
            assert!(bad.parse::<RepoRef>().is_err(), "{bad}");
        }
        assert_eq!(RepoRef::new("o", "r").to_string(), "o/r");
    }

    #[test]
    fn window_and_filter() {
        let cfg = MonitorConfig::default();
        let now = 1_722_375_600_000; // 2024-07-30T21:40:00Z
        assert_eq!(window_start(None, now, &cfg), now - cfg.first_lookback_ms);
        assert_eq!(
            window_start(Some(now - 5), now, &cfg),
            now - 5 - cfg.overlap_ms
        );
        let f = run_filter(now, &cfg);
        assert_eq!(f.status.as_deref(), Some("completed"));
        assert_eq!(f.created.as_deref(), Some(">=2024-07-29T21:40:00Z"));
    }

    #[test]
    fn selects_failed_recent_unanalyzed_runs_once() {
        let since = parse_timestamp("2024-07-30T00:00:00Z").unwrap();
        let runs = vec![
            run(1, "completed", Some("failure"), "2024-07-30T01:00:00Z", 1),
            run(2, "completed", Some("success"), "2024-07-30T01:00:00Z", 1),
            run(3, "in_progress", None, "2024-07-30T01:00:00Z", 1),
            run(4, "completed", Some("timed_out"), "2024-07-29T23:00:00Z", 1),
            run(5, "completed", Some("cancelled"), "2024-07-30T02:00:00Z", 2),
            run(6, "completed", Some("failure"), "2024-07-30T02:00:00Z", 1),
            run(1, "completed", Some("failure"), "2024-07-30T01:00:00Z", 1),
            run(7, "completed", Some("skipped"), "2024-07-30T02:00:00Z", 1),
        ];
        let analyzed = |id| match id {
            5 => Some(1),
            6 => Some(1),
            _ => None,
        };
        let ids: Vec<u64> = select_runs(&runs, since, analyzed)
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, vec![1, 5]);
    }

    #[test]
    fn selects_failed_jobs_and_steps() {
        let jobs = vec![
            job(1, "success", &[("Run tests", "success")]),
            job(
                2,
                "failure",
                &[("Setup", "success"), ("Run tests", "failure")],
            ),
            job(3, "timed_out", &[("Build", "cancelled")]),
            job(4, "skipped", &[]),
            job(5, "cancelled", &[]),
        ];
        let ids: Vec<u64> = select_jobs(&jobs).iter().map(|j| j.id).collect();
        assert_eq!(ids, vec![2, 3, 5]);
        assert!(!wants_annotations(&jobs[1]));
        assert!(wants_annotations(&jobs[2]));
        assert!(wants_annotations(&jobs[4]));
        assert_eq!(failing_step(&jobs[1]), Some("Run tests"));
        assert_eq!(failing_step(&jobs[2]), Some("Build"));
        assert_eq!(failing_step(&jobs[4]), None);
        let ann = Annotation {
            path: ".github".into(),
            start_line: None,
            end_line: None,
            annotation_level: Some("failure".into()),
            title: None,
            message: "The job has exceeded the maximum execution time of 5m0s".into(),
            raw_details: None,
        };
        let ctx = job_context(&jobs[2], &[ann]);
        assert_eq!(ctx.conclusion.as_deref(), Some("timed_out"));
        assert_eq!(ctx.annotations.len(), 1);
        assert_eq!(ctx.step_name.as_deref(), Some("Build"));
    }

    #[test]
    fn evidence_lines_and_context_window() {
        let cat = Catalogue::builtin();
        let mut log = String::new();
        for i in 1..=20 {
            if i == 5 || i == 15 {
                log.push_str(
                    "2024-01-01T00:00:00.0000000Z curl: (6) Could not resolve host: example.com\n",
                );
            } else {
                log.push_str(&format!(
                    "2024-01-01T00:00:00.0000000Z \x1b[32mline {i}\x1b[0m\n"
                ));
            }
        }
        let ctx = JobContext {
            conclusion: Some("failure".into()),
            ..JobContext::default()
        };
        let found = analyze_log(&cat, &log, &ctx, 1 << 20);
        let net = found
            .iter()
            .find(|f| f.finding.issue_type == IssueType::NetworkError)
            .expect("network error found");
        assert!(net.primary);
        assert_eq!(net.evidence_lines, vec![5, 15]);
        assert!(
            net.context
                .contains(">     5 | curl: (6) Could not resolve host")
        );
        assert!(
            net.context.contains("      2 | line 2\n"),
            "{}",
            net.context
        );
        assert!(net.context.contains("      ...\n"));
        assert!(!net.context.contains('\x1b'));
        assert!(!net.context.contains("line 9\n"));
        // Same log cut to its end: numbers stay those of the whole log.
        let cut = analyze_log(&cat, &log, &ctx, 400);
        let net = cut
            .iter()
            .find(|f| f.finding.issue_type == IssueType::NetworkError)
            .unwrap();
        assert_eq!(net.finding.line, 15);
        assert_eq!(net.evidence_lines, vec![15]);
        assert!(net.context.contains(">    15 | curl"), "{}", net.context);
    }

    #[test]
    fn merge_prefers_primary_then_score() {
        let cat = Catalogue::builtin();
        let ctx = JobContext::default();
        let a = analyze_log(
            &cat,
            "FAILED tests/test_x.py::test_a - AssertionError\n##[error]Process completed with exit code 1.\n",
            &ctx,
            1 << 20,
        );
        let b = analyze_log(
            &cat,
            "##[error]Process completed with exit code 2.\n",
            &ctx,
            1 << 20,
        );
        let m = merge_run_findings(vec![(0, a), (1, b)]);
        let (job, script) = &m[&IssueType::ScriptError];
        assert_eq!(*job, 1, "the job where script_error is primary wins");
        assert!(script.primary);
        assert!(m[&IssueType::TestFailure].1.primary);
    }
}
