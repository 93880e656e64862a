//! Fix actions for orchestrator issues: a pure plan ([`plan_fix`]) first, then an executor
//! ([`FixExecutor`]) that carries it out through the GitHub client.
//!
//! # Plans
//! For an `open` issue, in this order:
//! 1. a secondary finding (the class was never a job's primary verdict) → [`FixPlan::Ignore`]:
//!    the run's primary verdict is acted on instead;
//! 2. a class the policy leaves alone ([`FixPolicy::ignore_types`], by default `cancelled`: a
//!    person or a newer run cancelled it) → [`FixPlan::Ignore`];
//! 3. a flaky class ([`is_flaky`]: `network_error`, `timeout`, `runner_lost`, `rate_limited`,
//!    and `docker_failure` when its evidence points at the network or a registry) →
//!    [`FixPlan::RerunFailedJobs`], at most [`FixPolicy::retries`] times per run across checks
//!    (the count is stored); past the bound → [`FixPlan::Hold`] with the reason;
//! 4. a fix that changes code (the pattern's `add_dependency` or `run_formatter`) →
//!    [`FixPlan::ProposePatch`]: never applied here. Without `--allow-push` it is reported as
//!    needing it; with it, as not implemented (branch, commit and pull-request work is left out
//!    of this module). Such a patch would go to a new `flotilla/…` branch, never a default
//!    branch;
//! 5. anything else → [`FixPlan::FileIssue`]: open or update one GitHub issue per
//!    `(repo, workflow, issue_type)`, titled [`issue_title`], labelled [`FixPolicy::label`],
//!    and comment on the run's commit with a short verdict.
//!
//! # Execution
//! [`FixExecutor::apply`] acts on `open` issues only. Statuses move `open → fixing → fixed`
//! (re-run requested / issue filed or updated), or stay `open` with the reason (action failed,
//! retry bound reached, patch needs `--allow-push`), or become `ignored`. With
//! [`ExecOptions::dry_run`] nothing is sent to GitHub (no request at all) and no status
//! changes: each outcome says what would be done. The executor never pushes, never creates a
//! branch and never touches a default branch.
//!
//! Finding the GitHub issue to update: the number stored for `(repo, workflow, issue_type)`
//! first (used if that issue is still open), else the open issues labelled
//! [`FixPolicy::label`] with the same title, else a new issue. Later occurrences are added as
//! comments. The commit comment is made once per run and class.

use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;

use regex::Regex;
use rusqlite::Connection;
use serde::Serialize;

use super::patterns::{FixAction, IssueType};
use super::store::{IssueFilter, IssueStatus, IssueStore, StoreError, StoredIssue};
use crate::clock::SharedClock;
use crate::github::types::NewIssue;
use crate::github::{GithubClient, GithubError};

/// Classes whose failures are usually transient: re-running the failed jobs is the fix.
pub const FLAKY_TYPES: [IssueType; 4] = [
    IssueType::NetworkError,
    IssueType::Timeout,
    IssueType::RunnerLost,
    IssueType::RateLimited,
];

/// Fix policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixPolicy {
    /// Most re-runs of a run's failed jobs, across checks (default 3).
    pub retries: u32,
    /// Label of the GitHub issues the orchestrator files (default `flotilla`).
    pub label: String,
    /// Classes left alone (status `ignored`; default `cancelled`).
    pub ignore_types: Vec<IssueType>,
}

impl Default for FixPolicy {
    fn default() -> Self {
        Self {
            retries: 3,
            label: "flotilla".into(),
            ignore_types: vec![IssueType::Cancelled],
        }
    }
}

/// Evidence of a Docker failure caused by the network or a registry (transient).
static DOCKER_NETWORK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(registry|toomanyrequests|pull rate limit|rate limit|i/o timeout|dial tcp|tls handshake|connection (?:reset|refused|timed out)|no such host|temporary failure in name resolution|network is unreachable|unexpected eof|net/http|context deadline exceeded|50[234] (?:bad gateway|service unavailable|gateway time-?out)|timeout exceeded|timed out)\b",
    )
    .expect("valid regex")
});

/// Evidence of a permanent Docker failure even when a registry is named (a missing image or tag,
/// refused credentials): re-running does not help.
static DOCKER_PERMANENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(manifest unknown|not found|unauthorized|denied|no basic auth credentials|invalid reference format)")
        .expect("valid regex")
});

/// Whether Docker failure evidence points at the network or a registry (and not at a missing
/// image or refused credentials).
pub fn docker_network_evidence(text: &str) -> bool {
    DOCKER_NETWORK.is_match(text) && !DOCKER_PERMANENT.is_match(text)
}

/// The evidence lines of an issue: its evidence text and the context lines marked `>`.
fn evidence_text(issue: &StoredIssue) -> String {
    let mut t = issue.record.evidence.clone();
    for l in issue.record.context.lines().filter(|l| l.starts_with('>')) {
        t.push('\n');
        t.push_str(l);
    }
    t
}

/// Whether an issue's class is transient (see the module docs).
pub fn is_flaky(issue: &StoredIssue) -> bool {
    let t = issue.record.issue_type;
    FLAKY_TYPES.contains(&t)
        || (t == IssueType::DockerFailure && docker_network_evidence(&evidence_text(issue)))
}

/// Title of the one GitHub issue per `(repo, workflow, issue_type)`:
/// `[flotilla] <workflow>: <issue_type>`.
pub fn issue_title(workflow: &str, issue_type: IssueType) -> String {
    format!("[flotilla] {workflow}: {issue_type}")
}

/// What to do about one issue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum FixPlan {
    /// `POST …/actions/runs/{run_id}/rerun-failed-jobs`.
    RerunFailedJobs {
        /// Run.
        run_id: u64,
        /// Which re-run this is (1-based).
        rerun: u32,
        /// The bound.
        retries: u32,
    },
    /// Open or update the GitHub issue of `(repo, workflow, issue_type)`, then comment on the
    /// run's commit.
    FileIssue {
        /// Issue title ([`issue_title`]).
        title: String,
        /// Labels of a new issue.
        labels: Vec<String>,
        /// Body of a new issue.
        body: String,
        /// Comment added to an existing issue.
        update: String,
        /// Commit to comment on (the run's head), if known.
        commit_sha: Option<String>,
        /// The commit comment (the issue number is appended when known).
        commit_comment: String,
    },
    /// A code change (add a dependency, run a formatter): proposed, never applied here.
    ProposePatch {
        /// What the patch would do.
        description: String,
    },
    /// Do nothing now; the issue stays `open` with the reason.
    Hold {
        /// Why.
        reason: String,
    },
    /// Nothing to do; the issue becomes `ignored` with the reason.
    Ignore {
        /// Why.
        reason: String,
    },
}

impl FixPlan {
    /// One line for people: what the plan does.
    pub fn summary(&self) -> String {
        match self {
            FixPlan::RerunFailedJobs {
                run_id,
                rerun,
                retries,
            } => format!("re-run failed jobs of run {run_id} ({rerun} of {retries})"),
            FixPlan::FileIssue { title, .. } => format!("open or update issue \"{title}\""),
            FixPlan::ProposePatch { description } => format!("propose patch: {description}"),
            FixPlan::Hold { reason } => format!("hold: {reason}"),
            FixPlan::Ignore { reason } => format!("ignore: {reason}"),
        }
    }
}

/// A Markdown code fence longer than any backtick run in `text`.
fn fence(text: &str) -> String {
    let mut longest = 0;
    let mut cur = 0;
    for c in text.chars() {
        if c == '`' {
            cur += 1;
            longest = longest.max(cur);
        } else {
            cur = 0;
        }
    }
    "`".repeat((longest + 1).max(3))
}

fn code_block(text: &str) -> String {
    let f = fence(text);
    let body = text.trim_end_matches('\n');
    format!("{f}text\n{body}\n{f}\n")
}

fn short_sha(sha: Option<&str>) -> String {
    sha.map_or_else(|| "?".into(), |s| s.chars().take(7).collect())
}

fn run_link(issue: &StoredIssue) -> String {
    let r = &issue.record;
    let label = format!("run {} (attempt {})", r.run_id, r.run_attempt);
    match &r.run_url {
        Some(u) => format!("[{label}]({u})"),
        None => label,
    }
}

fn evidence_block(issue: &StoredIssue) -> String {
    let r = &issue.record;
    let lines = if r.evidence_lines.is_empty() {
        String::new()
    } else {
        format!(
            " (log line{} {})",
            if r.evidence_lines.len() > 1 { "s" } else { "" },
            r.evidence_lines
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let text = if r.context.trim().is_empty() {
        &r.evidence
    } else {
        &r.context
    };
    format!("Evidence{lines}:\n\n{}", code_block(text))
}

fn issue_body(issue: &StoredIssue) -> String {
    let r = &issue.record;
    let path = r
        .workflow_path
        .as_deref()
        .map(|p| format!(" (`{p}`)"))
        .unwrap_or_default();
    let branch = r
        .head_branch
        .as_deref()
        .map(|b| format!(" on `{b}`"))
        .unwrap_or_default();
    format!(
        "**Workflow:** {}{path}\n**Class:** `{}` (severity {})\n**Run:** {}{branch} at `{}`\n\
         **Job:** {}\n\n{}\n**Suggested fix:** {}\n\n<sub>Filed by flotilla's failure \
         orchestrator; later occurrences are added as comments.</sub>\n",
        r.workflow,
        r.issue_type,
        r.severity,
        run_link(issue),
        short_sha(r.head_sha.as_deref()),
        r.job_name.as_deref().unwrap_or("-"),
        evidence_block(issue),
        if r.fix_description.is_empty() {
            "-"
        } else {
            &r.fix_description
        },
    )
}

fn issue_update(issue: &StoredIssue) -> String {
    let r = &issue.record;
    format!(
        "Seen again in {} at `{}`, job {}.\n\n{}",
        run_link(issue),
        short_sha(r.head_sha.as_deref()),
        r.job_name.as_deref().unwrap_or("-"),
        evidence_block(issue)
    )
}

fn commit_verdict(issue: &StoredIssue) -> String {
    let r = &issue.record;
    let mut ev: String = r.evidence.chars().take(200).collect();
    if ev.len() < r.evidence.len() {
        ev.push_str("...");
    }
    let ev = ev.replace('`', "'");
    format!(
        "flotilla: {} failed in job {}: **{}** ({}). `{}`{}",
        r.workflow,
        r.job_name.as_deref().unwrap_or("-"),
        r.issue_type,
        r.severity,
        ev,
        if r.fix_description.is_empty() {
            String::new()
        } else {
            format!(
                " Suggested fix: {}.",
                r.fix_description.trim_end_matches('.')
            )
        }
    )
}

fn patch_description(issue: &StoredIssue) -> Option<String> {
    let r = &issue.record;
    let arg = |k: &str| {
        r.fix_args
            .get(k)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let what = match r.fix_action? {
        FixAction::AddDependency => format!(
            "add the missing dependency `{}`{} to the project's manifest",
            arg("package")?,
            arg("ecosystem")
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ),
        FixAction::RunFormatter => format!(
            "run `{}` on {} and commit the result",
            arg("tool")?,
            arg("path").map_or_else(|| "the repository".to_string(), |p| format!("`{p}`"))
        ),
        FixAction::RerunFailedJobs | FixAction::OpenIssue => return None,
    };
    Some(format!(
        "{what}, on a new branch `flotilla/fix-{}-{}` (never the default branch)",
        r.issue_type, r.run_id
    ))
}

/// Plan the fix of one issue (see the module docs). Pure: the same issue and policy always
/// give the same plan. Issues that are not `open` get [`FixPlan::Hold`].
pub fn plan_fix(issue: &StoredIssue, policy: &FixPolicy) -> FixPlan {
    let r = &issue.record;
    if issue.status != IssueStatus::Open {
        return FixPlan::Hold {
            reason: format!("status is {}", issue.status),
        };
    }
    if !r.primary {
        return FixPlan::Ignore {
            reason: format!(
                "secondary finding of run {}: its primary verdict is acted on instead",
                r.run_id
            ),
        };
    }
    if policy.ignore_types.contains(&r.issue_type) {
        return FixPlan::Ignore {
            reason: format!("the policy leaves {} alone", r.issue_type),
        };
    }
    if is_flaky(issue) {
        if issue.reruns >= policy.retries {
            return FixPlan::Hold {
                reason: format!(
                    "retry bound reached: {} of {} re-runs of run {} already requested; \
                     needs a person",
                    issue.reruns, policy.retries, r.run_id
                ),
            };
        }
        return FixPlan::RerunFailedJobs {
            run_id: r.run_id,
            rerun: issue.reruns + 1,
            retries: policy.retries,
        };
    }
    if let Some(description) = patch_description(issue) {
        return FixPlan::ProposePatch { description };
    }
    FixPlan::FileIssue {
        title: issue_title(&r.workflow, r.issue_type),
        labels: vec![policy.label.clone()],
        body: issue_body(issue),
        update: issue_update(issue),
        commit_sha: r.head_sha.clone().filter(|s| !s.is_empty()),
        commit_comment: commit_verdict(issue),
    }
}

/// Executor switches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecOptions {
    /// `--allow-push`: code changes may be pushed to a new branch (not implemented: such plans
    /// are still only reported).
    pub allow_push: bool,
    /// Plan only: no request to GitHub, no status change.
    pub dry_run: bool,
}

/// What the executor did for one issue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum FixResult {
    /// The failed jobs' re-run was requested.
    RerunRequested {
        /// Re-runs of this run so far, this one included.
        rerun: u32,
    },
    /// Another issue of the same run already requested the re-run in this batch.
    RerunCovered {
        /// That issue.
        by_issue: String,
    },
    /// A new GitHub issue was opened.
    IssueOpened {
        /// Its number.
        number: u64,
        /// Its URL.
        url: Option<String>,
    },
    /// The existing GitHub issue got a comment.
    IssueUpdated {
        /// Its number.
        number: u64,
    },
    /// A code change that needs `--allow-push`.
    NeedsAllowPush {
        /// What it would do.
        description: String,
    },
    /// `--allow-push` was given, but applying patches is not implemented.
    PatchNotImplemented {
        /// What it would do.
        description: String,
    },
    /// Nothing done; the issue stays open.
    Held {
        /// Why.
        reason: String,
    },
    /// Nothing to do; the issue is ignored.
    Ignored {
        /// Why.
        reason: String,
    },
    /// Dry run: what would be done.
    DryRun {
        /// The plan's summary.
        would: String,
    },
    /// The action failed; the issue stays open.
    Failed {
        /// The error.
        error: String,
    },
}

impl FixResult {
    /// One line for people.
    pub fn summary(&self) -> String {
        match self {
            FixResult::RerunRequested { rerun } => format!("re-run requested (#{rerun})"),
            FixResult::RerunCovered { by_issue } => {
                format!("re-run already requested by {by_issue}")
            }
            FixResult::IssueOpened { number, .. } => format!("opened issue #{number}"),
            FixResult::IssueUpdated { number } => format!("commented on issue #{number}"),
            FixResult::NeedsAllowPush { description } => {
                format!("needs --allow-push: {description}")
            }
            FixResult::PatchNotImplemented { description } => {
                format!("patch application is not implemented: {description}")
            }
            FixResult::Held { reason } => format!("held: {reason}"),
            FixResult::Ignored { reason } => format!("ignored: {reason}"),
            FixResult::DryRun { would } => format!("dry run: would {would}"),
            FixResult::Failed { error } => format!("failed: {error}"),
        }
    }
}

/// The outcome of one issue's fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FixOutcome {
    /// Issue id.
    pub issue_id: String,
    /// `owner/name`.
    pub repo: String,
    /// Workflow.
    pub workflow: String,
    /// Run.
    pub run_id: u64,
    /// Class.
    pub issue_type: IssueType,
    /// The plan.
    pub plan: FixPlan,
    /// What happened.
    pub result: FixResult,
    /// Whether something was done on GitHub (re-run requested, issue opened or commented).
    pub applied: bool,
    /// The issue's status afterwards.
    pub status: IssueStatus,
    /// Non-fatal problems (e.g. the commit comment failed after the issue was filed).
    pub notes: Vec<String>,
}

/// Carries out fix plans through the GitHub client and records them in the store.
pub struct FixExecutor<'a> {
    client: &'a GithubClient,
    store: IssueStore<'a>,
    clock: SharedClock,
    policy: FixPolicy,
}

impl std::fmt::Debug for FixExecutor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FixExecutor")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

fn split_repo(repo: &str) -> Result<(&str, &str), String> {
    repo.split_once('/')
        .filter(|(o, n)| !o.is_empty() && !n.is_empty())
        .ok_or_else(|| format!("{repo:?} is not owner/name"))
}

enum Filed {
    Opened(u64, Option<String>),
    Updated(u64),
}

impl<'a> FixExecutor<'a> {
    /// An executor over `conn` (with the orchestrator tables) and `client`.
    pub fn new(
        client: &'a GithubClient,
        conn: &'a Connection,
        clock: SharedClock,
        policy: FixPolicy,
    ) -> Self {
        FixExecutor {
            client,
            store: IssueStore::new(conn),
            clock,
            policy,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &FixPolicy {
        &self.policy
    }

    /// Apply fixes to every `open` issue (of `repo`, or of all repositories).
    ///
    /// # Errors
    /// [`StoreError`] if the open issues cannot be listed.
    pub async fn apply_open(
        &self,
        repo: Option<&str>,
        opts: ExecOptions,
    ) -> Result<Vec<FixOutcome>, StoreError> {
        let ids: Vec<String> = self
            .store
            .list(IssueFilter {
                status: Some(IssueStatus::Open),
                repo,
            })?
            .into_iter()
            .map(|i| i.id)
            .collect();
        Ok(self.apply(&ids, opts).await)
    }

    /// Apply fixes to the issues `ids` that are `open` (others are skipped silently), primary
    /// findings first. A run is re-run at most once per call.
    pub async fn apply(&self, ids: &[String], opts: ExecOptions) -> Vec<FixOutcome> {
        let mut issues = Vec::new();
        let mut seen = BTreeSet::new();
        for id in ids {
            if !seen.insert(id.as_str()) {
                continue;
            }
            match self.store.get(id) {
                Ok(Some(i)) if i.status == IssueStatus::Open => issues.push(i),
                Ok(_) => {}
                Err(e) => tracing::warn!(issue = %id, "cannot read orchestrator issue: {e}"),
            }
        }
        issues.sort_by_key(|i| !i.record.primary);
        let mut reran: HashMap<(String, u64), String> = HashMap::new();
        let mut out = Vec::new();
        for issue in issues {
            out.push(self.apply_one(issue, opts, &mut reran).await);
        }
        out
    }

    fn set(&self, id: &str, status: IssueStatus, reason: &str, notes: &mut Vec<String>) {
        if let Err(e) = self
            .store
            .set_status(id, status, reason, self.clock.now_ms())
        {
            notes.push(format!("cannot record status {status}: {e}"));
        }
    }

    async fn apply_one(
        &self,
        issue: StoredIssue,
        opts: ExecOptions,
        reran: &mut HashMap<(String, u64), String>,
    ) -> FixOutcome {
        let plan = plan_fix(&issue, &self.policy);
        let r = &issue.record;
        let mut notes = Vec::new();
        let (result, applied, status) = if opts.dry_run {
            (
                FixResult::DryRun {
                    would: plan.summary(),
                },
                false,
                issue.status,
            )
        } else {
            self.execute(&issue, &plan, opts, reran, &mut notes).await
        };
        FixOutcome {
            issue_id: issue.id.clone(),
            repo: r.repo.clone(),
            workflow: r.workflow.clone(),
            run_id: r.run_id,
            issue_type: r.issue_type,
            plan,
            result,
            applied,
            status,
            notes,
        }
    }

    async fn execute(
        &self,
        issue: &StoredIssue,
        plan: &FixPlan,
        opts: ExecOptions,
        reran: &mut HashMap<(String, u64), String>,
        notes: &mut Vec<String>,
    ) -> (FixResult, bool, IssueStatus) {
        let r = &issue.record;
        let id = issue.id.as_str();
        match plan {
            FixPlan::Hold { reason } => {
                self.set(id, IssueStatus::Open, reason, notes);
                (
                    FixResult::Held {
                        reason: reason.clone(),
                    },
                    false,
                    IssueStatus::Open,
                )
            }
            FixPlan::Ignore { reason } => {
                self.set(id, IssueStatus::Ignored, reason, notes);
                (
                    FixResult::Ignored {
                        reason: reason.clone(),
                    },
                    false,
                    IssueStatus::Ignored,
                )
            }
            FixPlan::ProposePatch { description } => {
                let (result, reason) = if opts.allow_push {
                    (
                        FixResult::PatchNotImplemented {
                            description: description.clone(),
                        },
                        format!("patch application is not implemented: {description}"),
                    )
                } else {
                    (
                        FixResult::NeedsAllowPush {
                            description: description.clone(),
                        },
                        format!("needs --allow-push: {description}"),
                    )
                };
                self.set(id, IssueStatus::Open, &reason, notes);
                (result, false, IssueStatus::Open)
            }
            FixPlan::RerunFailedJobs { run_id, .. } => {
                let key = (r.repo.clone(), *run_id);
                if let Some(by) = reran.get(&key) {
                    let reason = format!("covered by the re-run requested for {by}");
                    self.set(id, IssueStatus::Fixed, &reason, notes);
                    return (
                        FixResult::RerunCovered {
                            by_issue: by.clone(),
                        },
                        false,
                        IssueStatus::Fixed,
                    );
                }
                self.set(
                    id,
                    IssueStatus::Fixing,
                    "requesting a re-run of the failed jobs",
                    notes,
                );
                let sent = match split_repo(&r.repo) {
                    Ok((o, n)) => self
                        .client
                        .rerun_failed_jobs(o, n, *run_id)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e),
                };
                match sent {
                    Ok(()) => {
                        let now = self.clock.now_ms();
                        let count = match self.store.record_rerun(&r.repo, *run_id, now) {
                            Ok(c) => c,
                            Err(e) => {
                                notes.push(format!("cannot record the re-run: {e}"));
                                issue.reruns + 1
                            }
                        };
                        reran.insert(key, id.to_string());
                        let reason = format!(
                            "re-run of the failed jobs requested ({count} of {})",
                            self.policy.retries
                        );
                        self.set(id, IssueStatus::Fixed, &reason, notes);
                        (
                            FixResult::RerunRequested { rerun: count },
                            true,
                            IssueStatus::Fixed,
                        )
                    }
                    Err(e) => {
                        self.set(
                            id,
                            IssueStatus::Open,
                            &format!("re-run request failed: {e}"),
                            notes,
                        );
                        (FixResult::Failed { error: e }, false, IssueStatus::Open)
                    }
                }
            }
            FixPlan::FileIssue {
                title,
                labels,
                body,
                update,
                commit_sha,
                commit_comment,
            } => {
                self.set(id, IssueStatus::Fixing, "filing a GitHub issue", notes);
                let (owner, name) = match split_repo(&r.repo) {
                    Ok(x) => x,
                    Err(e) => {
                        self.set(id, IssueStatus::Open, &e, notes);
                        return (FixResult::Failed { error: e }, false, IssueStatus::Open);
                    }
                };
                let filed = self
                    .file_issue(issue, owner, name, title, labels, body, update)
                    .await;
                let (number, result) = match filed {
                    Ok(Filed::Opened(n, url)) => (n, FixResult::IssueOpened { number: n, url }),
                    Ok(Filed::Updated(n)) => (n, FixResult::IssueUpdated { number: n }),
                    Err(e) => {
                        let e = e.to_string();
                        self.set(
                            id,
                            IssueStatus::Open,
                            &format!("filing the issue failed: {e}"),
                            notes,
                        );
                        return (FixResult::Failed { error: e }, false, IssueStatus::Open);
                    }
                };
                let first_for_run = issue.github_issue_number.is_none();
                if let Err(e) = self
                    .store
                    .record_github_issue(id, number, self.clock.now_ms())
                {
                    notes.push(format!("cannot record issue #{number}: {e}"));
                }
                if let Some(sha) = commit_sha.as_deref().filter(|_| first_for_run) {
                    let body = format!("{commit_comment} Tracked in #{number}.");
                    if let Err(e) = self.client.comment_commit(owner, name, sha, &body).await {
                        notes.push(format!("commit comment failed: {e}"));
                    }
                }
                let reason = match &result {
                    FixResult::IssueOpened { .. } => format!("filed as GitHub issue #{number}"),
                    _ => format!("added to GitHub issue #{number}"),
                };
                self.set(id, IssueStatus::Fixed, &reason, notes);
                (result, true, IssueStatus::Fixed)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn file_issue(
        &self,
        issue: &StoredIssue,
        owner: &str,
        name: &str,
        title: &str,
        labels: &[String],
        body: &str,
        update: &str,
    ) -> Result<Filed, GithubError> {
        let r = &issue.record;
        let stored = self
            .store
            .github_issue_for(&r.repo, &r.workflow, r.issue_type)
            .map_err(|e| GithubError::Invalid(e.to_string()))?;
        if let Some(n) = stored {
            match self.client.issue(owner, name, n).await {
                Ok(i)
                    if !i
                        .state
                        .as_deref()
                        .is_some_and(|s| s.eq_ignore_ascii_case("closed")) =>
                {
                    self.client.comment_issue(owner, name, n, update).await?;
                    return Ok(Filed::Updated(n));
                }
                Ok(_)
                | Err(GithubError::Api {
                    status: 404 | 410, ..
                }) => {}
                Err(e) => return Err(e),
            }
        }
        let label: Vec<&str> = labels.iter().map(String::as_str).collect();
        let open = self.client.list_issues(owner, name, "open", &label).await?;
        if let Some(found) = open.iter().find(|i| i.title == title) {
            self.client
                .comment_issue(owner, name, found.number, update)
                .await?;
            return Ok(Filed::Updated(found.number));
        }
        let created = self
            .client
            .create_issue(
                owner,
                name,
                &NewIssue {
                    title: title.to_string(),
                    body: Some(body.to_string()),
                    labels: labels.to_vec(),
                },
            )
            .await?;
        Ok(Filed::Opened(created.number, created.html_url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::patterns::Severity;
    use crate::orchestrator::store::IssueRecord;
    use std::collections::BTreeMap;

    fn issue(t: IssueType, evidence: &str) -> StoredIssue {
        StoredIssue {
            id: "iss-1".into(),
            record: IssueRecord {
                repo: "o/r".into(),
                workflow: "CI".into(),
                workflow_path: Some(".github/workflows/ci.yml".into()),
                run_id: 42,
                run_attempt: 1,
                run_url: Some("https://github.com/o/r/actions/runs/42".into()),
                head_sha: Some("0123456789abcdef".into()),
                head_branch: Some("main".into()),
                job_id: Some(7),
                job_name: Some("build".into()),
                issue_type: t,
                severity: Severity::High,
                auto_fixable: false,
                fix_description: "Look at it".into(),
                fix_action: None,
                fix_args: BTreeMap::new(),
                primary: true,
                evidence: evidence.into(),
                evidence_lines: vec![3],
                context: format!("      2 | before\n>     3 | {evidence}\n"),
            },
            status: IssueStatus::Open,
            status_reason: String::new(),
            reruns: 0,
            github_issue_number: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn flaky_classes_rerun_until_the_bound() {
        let p = FixPolicy::default();
        for t in FLAKY_TYPES {
            let mut i = issue(t, "x");
            assert_eq!(
                plan_fix(&i, &p),
                FixPlan::RerunFailedJobs {
                    run_id: 42,
                    rerun: 1,
                    retries: 3
                }
            );
            i.reruns = 3;
            let FixPlan::Hold { reason } = plan_fix(&i, &p) else {
                panic!("{t}: expected hold")
            };
            assert!(reason.contains("retry bound reached"), "{reason}");
        }
    }

    #[test]
    fn docker_failure_is_flaky_only_for_network_or_registry() {
        let p = FixPolicy::default();
        let net = issue(
            IssueType::DockerFailure,
            "ERROR: failed to solve: failed to fetch: dial tcp 1.2.3.4:443: i/o timeout",
        );
        assert!(matches!(
            plan_fix(&net, &p),
            FixPlan::RerunFailedJobs { .. }
        ));
        let reg = issue(
            IssueType::DockerFailure,
            "toomanyrequests: You have reached your pull rate limit",
        );
        assert!(is_flaky(&reg));
        let missing = issue(
            IssueType::DockerFailure,
            "Error response from daemon: manifest for registry.example/img:1 not found: manifest unknown",
        );
        assert!(!is_flaky(&missing));
        let build = issue(
            IssueType::DockerFailure,
            "ERROR: failed to solve: process \"/bin/sh -c make\" did not complete successfully: exit code: 2",
        );
        assert!(matches!(plan_fix(&build, &p), FixPlan::FileIssue { .. }));
    }

    #[test]
    fn other_classes_file_one_issue_with_evidence() {
        let p = FixPolicy::default();
        let i = issue(IssueType::TestFailure, "FAILED tests/x.py::t - ```boom```");
        let FixPlan::FileIssue {
            title,
            labels,
            body,
            update,
            commit_sha,
            commit_comment,
        } = plan_fix(&i, &p)
        else {
            panic!()
        };
        assert_eq!(title, "[flotilla] CI: test_failure");
        assert_eq!(labels, vec!["flotilla".to_string()]);
        assert!(body.contains("[run 42 (attempt 1)](https://github.com/o/r/actions/runs/42)"));
        assert!(body.contains("**Job:** build"));
        assert!(
            body.contains("````text\n"),
            "fence longer than the evidence's: {body}"
        );
        assert!(body.contains("Look at it"));
        assert!(update.starts_with("Seen again in [run 42"));
        assert_eq!(commit_sha.as_deref(), Some("0123456789abcdef"));
        assert!(commit_comment.contains("**test_failure**"));
        assert!(!commit_comment.contains("```"));
    }

    #[test]
    fn code_changes_are_proposed_secondaries_and_cancelled_ignored() {
        let p = FixPolicy::default();
        let mut i = issue(IssueType::PythonImportError, "No module named 'yaml'");
        i.record.fix_action = Some(FixAction::AddDependency);
        i.record.fix_args = BTreeMap::from([
            ("package".to_string(), "yaml".to_string()),
            ("ecosystem".to_string(), "pip".to_string()),
        ]);
        let FixPlan::ProposePatch { description } = plan_fix(&i, &p) else {
            panic!()
        };
        assert!(description.contains("`yaml` (pip)"));
        assert!(description.contains("never the default branch"));
        let mut s = issue(IssueType::ScriptError, "exit code 1");
        s.record.primary = false;
        assert!(matches!(plan_fix(&s, &p), FixPlan::Ignore { .. }));
        let c = issue(IssueType::Cancelled, "The operation was canceled.");
        assert!(matches!(plan_fix(&c, &p), FixPlan::Ignore { .. }));
        let mut f = issue(IssueType::NetworkError, "x");
        f.status = IssueStatus::Fixed;
        assert!(matches!(plan_fix(&f, &p), FixPlan::Hold { .. }));
    }
}
