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
//! 4. a fix that changes code (the pattern's `add_dependency` or `run_formatter`) that can be
//!    made as a patch → [`FixPlan::ProposePatch`], on the branch [`fix_branch`]
//!    (`flotilla/fix-{issue_type}-{run_id}`):
//!    - `add_dependency` for pip (the pattern's `ecosystem`, or a `python_import_error`
//!      without one): append the module's distribution ([`pip_distribution`]: `yaml` →
//!      `PyYAML`, ...) to `requirements.txt` at the repository root;
//!    - `run_formatter` with a `path` and a tool that has a command
//!      ([`FixPolicy::formatters`], `orchestrator.formatters`): format that file (the log's
//!      runner-absolute path made repository-relative, [`repo_relative_path`]).
//!
//!    A code change that cannot be a patch goes to step 5, with the reason in the issue: an
//!    npm `add_dependency` (that pattern fires on a registry 404: the name is wrong, adding it
//!    cannot help), another ecosystem, a formatter finding without a path (prettier's summary
//!    line) or with a path outside the checkout, a tool without a command;
//! 5. anything else → [`FixPlan::FileIssue`]: open or update one GitHub issue per
//!    `(repo, workflow, issue_type)`, titled [`issue_title`], labelled [`FixPolicy::label`],
//!    and comment on the run's commit with a short verdict.
//!
//! # Execution
//! [`FixExecutor::apply`] acts on `open` issues only. Statuses move `open → fixing → fixed`
//! (re-run requested / issue filed or updated), `open → fixing` (pull request opened: it stays
//! `fixing` while people review it), or stay `open` with the reason (action failed, retry
//! bound reached, patch needs `--allow-push`, patch not possible), or become `ignored`. With
//! [`ExecOptions::dry_run`] nothing is sent to GitHub (no request at all), no formatter runs
//! and no status changes: each outcome says what would be done.
//!
//! A patch is applied only with [`ExecOptions::allow_push`] (`--allow-push`; without it:
//! [`FixResult::NeedsAllowPush`]), through the REST API, in this order:
//! 1. `GET /repos/{o}/{r}`: the default branch; the branch guard ([`check_fix_branch`]) refuses
//!    any branch that does not start with `flotilla/` or that is the default branch or the
//!    run's head branch, before anything is written;
//! 2. `GET …/contents/{file}?ref={head_sha}`: the file as the failed run saw it; the new
//!    content is computed from it ([`add_requirement`], or the formatter run locally,
//!    [`super::formatter`]). No change needed (already listed, already formatted), no
//!    `requirements.txt`, a missing formatter: the issue stays `open` with that reason and
//!    nothing is created;
//! 3. `POST …/git/refs`: the branch at the run's `head_sha`; `422 Reference already exists`
//!    (an earlier attempt) reuses it: its file is read again, the commit is skipped if it
//!    already holds the new content, and a branch someone else changed is left alone;
//! 4. `PUT …/contents/{file}` with the blob SHA: the commit on the branch;
//! 5. `POST …/pulls` from the branch into the run's head branch if it still exists
//!    (`GET …/branches/{b}`), else the default branch; if one is already open (`422`), it is
//!    found with `GET …/pulls?head={owner}:{branch}&state=open` and reported.
//!
//! The executor never pushes to, and never writes a commit on, any branch but its own
//! `flotilla/…` branch.
//!
//! Finding the GitHub issue to update: the number stored for `(repo, workflow, issue_type)`
//! first (used if that issue is still open), else the open issues labelled
//! [`FixPolicy::label`] with the same title, else a new issue. Later occurrences are added as
//! comments. The commit comment is made once per run and class.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;
use rusqlite::Connection;
use serde::Serialize;

use super::formatter::run_formatter;
use super::patch::{
    PatchChange, RequirementsEdit, add_requirement, check_fix_branch, default_formatters,
    fix_branch, formatter_argv, pip_distribution, repo_relative_path,
};
use super::patterns::{FixAction, IssueType};
use super::store::{IssueFilter, IssueStatus, IssueStore, StoreError, StoredIssue};
use crate::clock::SharedClock;
use crate::github::types::{BranchCreation, FileUpdate, NewIssue, NewPullRequest};
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
    /// Formatter command per pattern tool (`black`, `cargo fmt`, `prettier`, ...): program and
    /// arguments, reading stdin and writing stdout, `{path}` replaced by the file's path
    /// (default [`default_formatters`]; `orchestrator.formatters`).
    pub formatters: BTreeMap<String, Vec<String>>,
    /// Longest a formatter may run on one file (default 60 s).
    pub formatter_timeout: Duration,
}

impl Default for FixPolicy {
    fn default() -> Self {
        Self {
            retries: 3,
            label: "flotilla".into(),
            ignore_types: vec![IssueType::Cancelled],
            formatters: default_formatters(),
            formatter_timeout: Duration::from_secs(60),
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
    /// A code change (add a dependency, run a formatter), proposed as a pull request from
    /// `branch` (with `--allow-push` only).
    ProposePatch {
        /// What the patch does, and on which branch.
        description: String,
        /// The branch it is committed on ([`fix_branch`]).
        branch: String,
        /// The change.
        change: PatchChange,
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
            FixPlan::ProposePatch { description, .. } => {
                format!("propose a pull request: {description}")
            }
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

fn issue_body(issue: &StoredIssue, no_patch: Option<&str>) -> String {
    let r = &issue.record;
    let no_patch = no_patch
        .map(|w| format!("**Not patched automatically:** {w}.\n\n"))
        .unwrap_or_default();
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
         **Job:** {}\n\n{}\n**Suggested fix:** {}\n\n{no_patch}<sub>Filed by flotilla's failure \
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

/// Whether `name` can be written into `requirements.txt` as a distribution name (PEP 508
/// names: letters, digits, `-`, `_`, `.`, starting and ending with a letter or digit).
fn is_distribution_name(name: &str) -> bool {
    let ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    ok(name.chars().next())
        && ok(name.chars().last())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The patch of a code-change fix, or why it cannot be one; `None` if the fix changes no code.
fn code_fix(issue: &StoredIssue, policy: &FixPolicy) -> Option<Result<PatchChange, String>> {
    let r = &issue.record;
    let arg = |k: &str| {
        r.fix_args
            .get(k)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    };
    Some(match r.fix_action? {
        FixAction::AddDependency => {
            let Some(package) = arg("package") else {
                return Some(Err("the log names no package".into()));
            };
            let inferred = (r.issue_type == IssueType::PythonImportError).then_some("pip");
            match arg("ecosystem").or(inferred) {
                Some("pip") => {
                    let module = package.split('.').next().unwrap_or(package);
                    let (dist, alternatives) = pip_distribution(module);
                    if is_distribution_name(dist) {
                        Ok(PatchChange::AddRequirement {
                            module: module.to_string(),
                            distribution: dist.to_string(),
                            alternatives: alternatives.iter().map(|s| s.to_string()).collect(),
                        })
                    } else {
                        Err(format!("`{package}` is not a valid distribution name"))
                    }
                }
                Some("npm") => Err(format!(
                    "the npm registry answered 404 for `{package}`: the name (or its scope) is \
                     wrong, so adding it to package.json cannot help"
                )),
                Some(other) => Err(format!("adding a {other} dependency is not supported")),
                None => Err(format!(
                    "the pattern does not say which ecosystem `{package}` is from"
                )),
            }
        }
        FixAction::RunFormatter => {
            let Some(tool) = arg("tool") else {
                return Some(Err("the pattern names no formatter".into()));
            };
            let Some(command) = policy.formatters.get(tool) else {
                return Some(Err(format!(
                    "no command for formatter {tool} (orchestrator.formatters)"
                )));
            };
            let Some(raw) = arg("path") else {
                return Some(Err(format!(
                    "the log does not say which file {tool} would change"
                )));
            };
            let name = r.repo.split_once('/').map_or(r.repo.as_str(), |(_, n)| n);
            match repo_relative_path(raw, name) {
                Some(path) => Ok(PatchChange::Format {
                    tool: tool.to_string(),
                    command: formatter_argv(command, &path),
                    path,
                }),
                None => Err(format!(
                    "`{raw}` is not a path inside the repository's checkout"
                )),
            }
        }
        FixAction::RerunFailedJobs | FixAction::OpenIssue => return None,
    })
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
    let no_patch = match code_fix(issue, policy) {
        Some(Ok(change)) => {
            let branch = fix_branch(r.issue_type, r.run_id);
            return FixPlan::ProposePatch {
                description: format!(
                    "{}, on a new branch `{branch}` (never the default branch)",
                    change.describe()
                ),
                branch,
                change,
            };
        }
        Some(Err(why)) => Some(why),
        None => None,
    };
    FixPlan::FileIssue {
        title: issue_title(&r.workflow, r.issue_type),
        labels: vec![policy.label.clone()],
        body: issue_body(issue, no_patch.as_deref()),
        update: issue_update(issue),
        commit_sha: r.head_sha.clone().filter(|s| !s.is_empty()),
        commit_comment: commit_verdict(issue),
    }
}

/// Executor switches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecOptions {
    /// `--allow-push`: code changes are committed on a new `flotilla/…` branch and proposed as
    /// a pull request (without it they are only reported).
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
    /// The patch was committed on its branch and a pull request is open (opened now, or
    /// found open from an earlier attempt).
    PullRequestOpened {
        /// Its number.
        number: u64,
        /// Web URL.
        url: Option<String>,
        /// The branch with the patch.
        branch: String,
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
            FixResult::PullRequestOpened { number, branch, .. } => {
                format!("pull request #{number} open from {branch}")
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
    /// Whether something was done on GitHub (re-run requested, issue opened or commented,
    /// patch committed or pull request opened).
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

/// Why a patch stopped: `Hold` keeps the issue open with a reason (nothing to do, not
/// possible here), `Fail` is an error of GitHub or the store.
enum PatchStop {
    Hold(String),
    Fail(String),
}

/// The pull request a patch ended in.
struct OpenedPr {
    number: u64,
    url: Option<String>,
    /// Opened now (not found open from an earlier attempt).
    created: bool,
    /// The commit was made now.
    committed: bool,
}

/// Body of a patch's pull request: the failure, its evidence and what was changed.
fn pr_body(
    issue: &StoredIssue,
    change: &PatchChange,
    branch: &str,
    commit: Option<&str>,
) -> String {
    let r = &issue.record;
    let commit = commit
        .map(|c| format!(" in commit `{}`", short_sha(Some(c))))
        .unwrap_or_default();
    let how = match change {
        PatchChange::AddRequirement { module, .. } => format!(
            "The job failed because Python module `{module}` is missing; this adds the \
             distribution that provides it."
        ),
        PatchChange::Format { command, .. } => format!(
            "The formatter check failed; this is the file as `{}` formats it.",
            command.join(" ")
        ),
    };
    format!(
        "**Workflow:** {}\n**Class:** `{}` (severity {})\n**Run:** {}{} at `{}`\n**Job:** {}\n\n\
         {}\n**Change:** {}{commit} on `{branch}`. {how}\n\n<sub>Opened by flotilla \
         --allow-push from the failed run's commit; flotilla never pushes to a default branch. \
         Review before merging.</sub>\n",
        r.workflow,
        r.issue_type,
        r.severity,
        run_link(issue),
        r.head_branch
            .as_deref()
            .map(|b| format!(" on `{b}`"))
            .unwrap_or_default(),
        short_sha(r.head_sha.as_deref()),
        r.job_name.as_deref().unwrap_or("-"),
        evidence_block(issue),
        change.describe(),
    )
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
            let mut would = plan.summary();
            if matches!(plan, FixPlan::ProposePatch { .. }) && !opts.allow_push {
                would.push_str(" (needs --allow-push)");
            }
            (FixResult::DryRun { would }, false, issue.status)
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
            FixPlan::ProposePatch {
                description,
                branch,
                change,
            } => {
                if !opts.allow_push {
                    self.set(
                        id,
                        IssueStatus::Open,
                        &format!("needs --allow-push: {description}"),
                        notes,
                    );
                    let result = FixResult::NeedsAllowPush {
                        description: description.clone(),
                    };
                    return (result, false, IssueStatus::Open);
                }
                self.set(
                    id,
                    IssueStatus::Fixing,
                    &format!("preparing a pull request from `{branch}`"),
                    notes,
                );
                match self.propose_patch(issue, branch, change, notes).await {
                    Ok(pr) => {
                        let at = pr.url.clone().unwrap_or_else(|| format!("#{}", pr.number));
                        let reason = if pr.created {
                            format!(
                                "pull request #{} opened: {at} (branch `{branch}`)",
                                pr.number
                            )
                        } else {
                            format!(
                                "pull request #{} already open: {at} (branch `{branch}`)",
                                pr.number
                            )
                        };
                        self.set(id, IssueStatus::Fixing, &reason, notes);
                        let applied = pr.created || pr.committed;
                        let result = FixResult::PullRequestOpened {
                            number: pr.number,
                            url: pr.url,
                            branch: branch.clone(),
                        };
                        (result, applied, IssueStatus::Fixing)
                    }
                    Err(PatchStop::Hold(reason)) => {
                        self.set(id, IssueStatus::Open, &reason, notes);
                        (FixResult::Held { reason }, false, IssueStatus::Open)
                    }
                    Err(PatchStop::Fail(e)) => {
                        self.set(
                            id,
                            IssueStatus::Open,
                            &format!("pull request failed: {e}"),
                            notes,
                        );
                        (FixResult::Failed { error: e }, false, IssueStatus::Open)
                    }
                }
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

    /// The new content of `change`'s file, from its content `old` at `at` (a commit, for
    /// messages). `Hold` when nothing needs to change or the formatter cannot run.
    async fn patched(
        &self,
        change: &PatchChange,
        old: &[u8],
        at: &str,
    ) -> Result<Vec<u8>, PatchStop> {
        match change {
            PatchChange::AddRequirement {
                distribution,
                alternatives,
                ..
            } => {
                let text = std::str::from_utf8(old).map_err(|_| {
                    PatchStop::Hold(format!(
                        "{} at {at} is not UTF-8 text; add `{distribution}` by hand",
                        change.file()
                    ))
                })?;
                let alts: Vec<&str> = alternatives.iter().map(String::as_str).collect();
                match add_requirement(text, distribution, &alts) {
                    RequirementsEdit::Added(new) => Ok(new.into_bytes()),
                    RequirementsEdit::AlreadyListed(line) => Err(PatchStop::Hold(format!(
                        "`{distribution}` is already listed in {} at {at} (`{line}`): the import \
                         error has another cause (install step, environment, module name)",
                        change.file()
                    ))),
                }
            }
            PatchChange::Format {
                tool,
                path,
                command,
            } => {
                let out = run_formatter(tool, command, old, self.policy.formatter_timeout)
                    .await
                    .map_err(|e| PatchStop::Hold(e.to_string()))?;
                if out == old {
                    Err(PatchStop::Hold(format!(
                        "{tool} on this host leaves `{path}` at {at} unchanged: the CI check may \
                         use another version or configuration"
                    )))
                } else if out.is_empty() {
                    Err(PatchStop::Hold(format!(
                        "{tool} gave no output for `{path}`: not committing an empty file"
                    )))
                } else {
                    Ok(out)
                }
            }
        }
    }

    /// Commit `change` on `branch` and open (or find) the pull request; see the module docs
    /// for the steps.
    async fn propose_patch(
        &self,
        issue: &StoredIssue,
        branch: &str,
        change: &PatchChange,
        notes: &mut Vec<String>,
    ) -> Result<OpenedPr, PatchStop> {
        let r = &issue.record;
        let (owner, name) = split_repo(&r.repo).map_err(PatchStop::Fail)?;
        let Some(head_sha) = r.head_sha.as_deref().filter(|s| !s.is_empty()) else {
            return Err(PatchStop::Hold(
                "the failed run's head commit is unknown: a patch branch starts from it".into(),
            ));
        };
        let at = format!("`{}`", short_sha(Some(head_sha)));
        let fail = |what: &str, e: GithubError| PatchStop::Fail(format!("{what}: {e}"));
        let repo = self
            .client
            .repository(owner, name)
            .await
            .map_err(|e| fail("reading the repository", e))?;
        let default_branch = repo
            .default_branch
            .filter(|b| !b.is_empty())
            .ok_or_else(|| {
                PatchStop::Fail(format!("GitHub named no default branch for {}", r.repo))
            })?;
        let head_branch = r.head_branch.as_deref().filter(|b| !b.is_empty());
        check_fix_branch(branch, &default_branch, head_branch).map_err(PatchStop::Hold)?;

        let file = change.file();
        let old = match self.client.file_entry(owner, name, file, head_sha).await {
            Ok(e) => e,
            Err(GithubError::Api { status: 404, .. }) => {
                return Err(PatchStop::Hold(match change {
                    PatchChange::AddRequirement { distribution, .. } => format!(
                        "there is no {file} at the repository root at {at}: add `{distribution}` \
                         to the project's manifest (pyproject.toml, setup.cfg, ...) by hand"
                    ),
                    PatchChange::Format { .. } => format!("`{file}` does not exist at {at}"),
                }));
            }
            Err(e) => return Err(fail(&format!("reading {file} at {at}"), e)),
        };
        let old_bytes = old
            .decode()
            .map_err(|e| PatchStop::Fail(format!("reading {file} at {at}: {e}")))?;
        let new = self.patched(change, &old_bytes, &at).await?;

        // The branch, then the commit on it (skipped if an earlier attempt made it).
        let mut blob = old.sha.clone();
        let mut commit_needed = true;
        match self
            .client
            .create_branch(owner, name, branch, head_sha)
            .await
            .map_err(|e| fail(&format!("creating branch `{branch}`"), e))?
        {
            BranchCreation::Created(_) => {}
            BranchCreation::AlreadyExists => {
                notes.push(format!(
                    "branch `{branch}` exists from an earlier attempt: reused"
                ));
                let cur = match self.client.file_entry(owner, name, file, branch).await {
                    Ok(e) => e,
                    Err(e) => return Err(fail(&format!("reading {file} on `{branch}`"), e)),
                };
                let cur_bytes = cur
                    .decode()
                    .map_err(|e| PatchStop::Fail(format!("reading {file} on `{branch}`: {e}")))?;
                if cur_bytes == new {
                    commit_needed = false;
                } else if cur_bytes == old_bytes {
                    blob = cur.sha;
                } else {
                    return Err(PatchStop::Hold(format!(
                        "branch `{branch}` already holds another change to {file}: left for a \
                         person to review"
                    )));
                }
            }
        }
        let describe = change.describe();
        let mut commit_sha = None;
        if commit_needed {
            let message = format!(
                "flotilla: {}\n\nFor the {} failure of {} run {}{}.\n",
                describe.replace('`', ""),
                r.issue_type,
                r.workflow,
                r.run_id,
                r.run_url
                    .as_deref()
                    .map(|u| format!(" ({u})"))
                    .unwrap_or_default()
            );
            let done = self
                .client
                .put_file(
                    owner,
                    name,
                    file,
                    &FileUpdate::new(&message, &new, blob, branch),
                )
                .await
                .map_err(|e| fail(&format!("committing {file} on `{branch}`"), e))?;
            commit_sha = Some(done.commit.sha);
        }

        // The pull request: into the run's branch while it exists, else the default branch.
        let base = match head_branch {
            Some(hb) => match self.client.branch(owner, name, hb).await {
                Ok(_) => hb.to_string(),
                Err(GithubError::Api { status: 404, .. }) => {
                    notes.push(format!(
                        "the run's branch `{hb}` is gone: the pull request goes into \
                         `{default_branch}`"
                    ));
                    default_branch.clone()
                }
                Err(e) => return Err(fail(&format!("reading branch `{hb}`"), e)),
            },
            None => default_branch.clone(),
        };
        let pr = NewPullRequest {
            title: format!("[flotilla] {}: {describe}", r.workflow),
            head: branch.to_string(),
            base: base.clone(),
            body: pr_body(issue, change, branch, commit_sha.as_deref()),
            maintainer_can_modify: true,
        };
        match self.client.create_pull_request(owner, name, &pr).await {
            Ok(p) => Ok(OpenedPr {
                number: p.number,
                url: p.html_url,
                created: true,
                committed: commit_needed,
            }),
            Err(e @ GithubError::Api { status: 422, .. }) => {
                let head = format!("{owner}:{branch}");
                let open = self
                    .client
                    .pull_requests_from(owner, name, &head, "open")
                    .await
                    .map_err(|e| fail("looking for the open pull request", e))?;
                match open.into_iter().next() {
                    Some(p) => Ok(OpenedPr {
                        number: p.number,
                        url: p.html_url,
                        created: false,
                        committed: commit_needed,
                    }),
                    None => Err(fail(&format!("opening the pull request into `{base}`"), e)),
                }
            }
            Err(e) => Err(fail(&format!("opening the pull request into `{base}`"), e)),
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
        let FixPlan::ProposePatch {
            description,
            branch,
            change,
        } = plan_fix(&i, &p)
        else {
            panic!()
        };
        assert_eq!(
            description,
            "add `PyYAML` (for module `yaml`) to requirements.txt, on a new branch \
             `flotilla/fix-python_import_error-42` (never the default branch)"
        );
        assert_eq!(branch, "flotilla/fix-python_import_error-42");
        assert_eq!(change.file(), "requirements.txt");
        let mut s = issue(IssueType::ScriptError, "exit code 1");
        s.record.primary = false;
        assert!(matches!(plan_fix(&s, &p), FixPlan::Ignore { .. }));
        let c = issue(IssueType::Cancelled, "The operation was canceled.");
        assert!(matches!(plan_fix(&c, &p), FixPlan::Ignore { .. }));
        let mut f = issue(IssueType::NetworkError, "x");
        f.status = IssueStatus::Fixed;
        assert!(matches!(plan_fix(&f, &p), FixPlan::Hold { .. }));
    }

    fn with_fix(t: IssueType, action: FixAction, args: &[(&str, &str)]) -> StoredIssue {
        let mut i = issue(t, "evidence");
        i.record.fix_action = Some(action);
        i.record.fix_args = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        i
    }

    fn filed_body(plan: FixPlan) -> String {
        match plan {
            FixPlan::FileIssue { body, .. } => body,
            other => panic!("expected FileIssue, got {other:?}"),
        }
    }

    #[test]
    fn npm_404_is_filed_not_patched() {
        let p = FixPolicy::default();
        let i = with_fix(
            IssueType::DependencyInstall,
            FixAction::AddDependency,
            &[("package", "@scope%2fpkg"), ("ecosystem", "npm")],
        );
        let body = filed_body(plan_fix(&i, &p));
        assert!(body.contains("**Not patched automatically:** the npm registry answered 404"));
        assert!(body.contains("cannot help"), "{body}");
        // Other ecosystems, or none, are not patched either.
        let cargo = with_fix(
            IssueType::DependencyInstall,
            FixAction::AddDependency,
            &[("package", "serde"), ("ecosystem", "cargo")],
        );
        assert!(filed_body(plan_fix(&cargo, &p)).contains("cargo dependency is not supported"));
        let none = with_fix(
            IssueType::DependencyInstall,
            FixAction::AddDependency,
            &[("package", "x")],
        );
        assert!(filed_body(plan_fix(&none, &p)).contains("which ecosystem"));
        // A python_import_error without an ecosystem is pip.
        let py = with_fix(
            IssueType::PythonImportError,
            FixAction::AddDependency,
            &[("package", "cv2")],
        );
        let FixPlan::ProposePatch { change, .. } = plan_fix(&py, &p) else {
            panic!()
        };
        assert!(matches!(
            change,
            PatchChange::AddRequirement { ref distribution, .. } if distribution == "opencv-python"
        ));
        // A captured name that is not a distribution name is never written to a file.
        let bad = with_fix(
            IssueType::PythonImportError,
            FixAction::AddDependency,
            &[("package", "x\n-e git+https://evil"), ("ecosystem", "pip")],
        );
        assert!(filed_body(plan_fix(&bad, &p)).contains("not a valid distribution name"));
    }

    #[test]
    fn a_patch_plan_needs_its_arguments() {
        let p = FixPolicy::default();
        // rustfmt's path, runner-absolute in the log, becomes repository-relative.
        let ok = with_fix(
            IssueType::LintFailure,
            FixAction::RunFormatter,
            &[
                ("tool", "cargo fmt"),
                ("path", "/home/runner/work/r/r/src/lib.rs"),
            ],
        );
        let FixPlan::ProposePatch { branch, change, .. } = plan_fix(&ok, &p) else {
            panic!()
        };
        assert_eq!(branch, "flotilla/fix-lint_failure-42");
        assert_eq!(
            change,
            PatchChange::Format {
                tool: "cargo fmt".into(),
                path: "src/lib.rs".into(),
                command: p.formatters["cargo fmt"].clone(),
            }
        );
        // Prettier's summary line names no file.
        let prettier = with_fix(
            IssueType::LintFailure,
            FixAction::RunFormatter,
            &[("tool", "prettier"), ("path", "")],
        );
        assert!(filed_body(plan_fix(&prettier, &p)).contains("does not say which file"));
        let outside = with_fix(
            IssueType::LintFailure,
            FixAction::RunFormatter,
            &[("tool", "black"), ("path", "/tmp/x.py")],
        );
        assert!(filed_body(plan_fix(&outside, &p)).contains("not a path inside"));
        let unknown = with_fix(
            IssueType::LintFailure,
            FixAction::RunFormatter,
            &[("tool", "gofmt"), ("path", "main.go")],
        );
        assert!(filed_body(plan_fix(&unknown, &p)).contains("orchestrator.formatters"));
        // {path} in a command is filled in.
        let pr = with_fix(
            IssueType::LintFailure,
            FixAction::RunFormatter,
            &[("tool", "prettier"), ("path", "./web/app.ts")],
        );
        let FixPlan::ProposePatch { change, .. } = plan_fix(&pr, &p) else {
            panic!()
        };
        let PatchChange::Format { command, .. } = change else {
            panic!()
        };
        assert_eq!(command, ["prettier", "--stdin-filepath", "web/app.ts"]);
    }
}
