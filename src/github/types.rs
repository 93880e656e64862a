//! Typed shapes of the GitHub REST responses and request bodies Flotilla uses.
//!
//! Every response type tolerates unknown fields and missing optional ones (`#[serde(default)]`),
//! since GitHub adds fields freely and GitHub Enterprise Server versions lag behind. Timestamps are
//! kept as GitHub sends them (ISO 8601 strings, `Z` or `±hh:mm` offsets); [`parse_timestamp`]
//! turns one into unix milliseconds. Shapes follow <https://docs.github.com/en/rest/actions>.
//!
//! Credentials inside responses (runner registration/remove tokens, JIT configs) are held as
//! [`SecretValue`], which never prints.

use std::fmt;

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::clock::Millis;

/// A credential received from GitHub. `Debug` and `Serialize` print `****`.
#[derive(Clone)]
pub struct SecretValue(SecretString);

impl SecretValue {
    /// Wrap a value.
    pub fn new(s: impl Into<String>) -> Self {
        SecretValue(SecretString::from(s.into()))
    }
    /// The value; call only where it is handed to its one consumer (e.g. `config.sh`).
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(****)")
    }
}

impl Serialize for SecretValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("****")
    }
}

impl<'de> Deserialize<'de> for SecretValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(SecretValue::new(String::deserialize(d)?))
    }
}

/// Whether an account is a user or an organization (`GET /users/{owner}` → `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum AccountKind {
    /// `"User"`.
    User,
    /// `"Organization"`.
    Organization,
    /// `"Bot"` or anything else.
    #[default]
    #[serde(other)]
    Other,
}

/// An account (`GET /users/{username}`, `GET /user`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// Login name.
    pub login: String,
    /// Numeric id.
    #[serde(default)]
    pub id: u64,
    /// User or organization.
    #[serde(rename = "type", default)]
    pub kind: AccountKind,
}

/// A repository's owner as embedded in a repository object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepoOwner {
    /// Login name.
    pub login: String,
}

/// A repository (`GET /orgs/{org}/repos`, `GET /users/{u}/repos`, `GET /user/repos`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Repository {
    /// Numeric id.
    pub id: u64,
    /// Name, e.g. `PyGithub`.
    pub name: String,
    /// `owner/name`.
    pub full_name: String,
    /// Owner.
    pub owner: RepoOwner,
    /// Private repository.
    #[serde(default)]
    pub private: bool,
    /// Fork of another repository.
    #[serde(default)]
    pub fork: bool,
    /// Archived (read-only; no runs).
    #[serde(default)]
    pub archived: bool,
    /// Disabled.
    #[serde(default)]
    pub disabled: bool,
    /// Last push, ISO 8601; `null` for an empty repository.
    #[serde(default)]
    pub pushed_at: Option<String>,
    /// Default branch.
    #[serde(default)]
    pub default_branch: Option<String>,
    /// Web URL.
    #[serde(default)]
    pub html_url: Option<String>,
}

/// A workflow run (`GET /repos/{owner}/{repo}/actions/runs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowRun {
    /// Run id.
    pub id: u64,
    /// Workflow name.
    #[serde(default)]
    pub name: Option<String>,
    /// Branch.
    #[serde(default)]
    pub head_branch: Option<String>,
    /// Commit.
    #[serde(default)]
    pub head_sha: Option<String>,
    /// Run number within its workflow.
    #[serde(default)]
    pub run_number: Option<u64>,
    /// Attempt (1 for the first).
    #[serde(default)]
    pub run_attempt: Option<u32>,
    /// Trigger event, e.g. `push`, `pull_request`.
    #[serde(default)]
    pub event: Option<String>,
    /// `queued`, `in_progress`, `completed`, `waiting`, `requested`, `pending`.
    #[serde(default)]
    pub status: Option<String>,
    /// `success`, `failure`, `cancelled`, `timed_out`, ... once completed.
    #[serde(default)]
    pub conclusion: Option<String>,
    /// The workflow's id.
    #[serde(default)]
    pub workflow_id: Option<u64>,
    /// Path of the workflow file, e.g. `.github/workflows/ci.yml`.
    #[serde(default)]
    pub path: Option<String>,
    /// Web URL.
    #[serde(default)]
    pub html_url: Option<String>,
    /// Created, ISO 8601.
    #[serde(default)]
    pub created_at: Option<String>,
    /// Updated, ISO 8601.
    #[serde(default)]
    pub updated_at: Option<String>,
    /// Started (of this attempt), ISO 8601.
    #[serde(default)]
    pub run_started_at: Option<String>,
}

/// One page of `GET /repos/{owner}/{repo}/actions/runs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkflowRunsPage {
    /// Total matching runs.
    #[serde(default)]
    pub total_count: u64,
    /// This page's runs.
    #[serde(default)]
    pub workflow_runs: Vec<WorkflowRun>,
}

/// A step of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Step name.
    pub name: String,
    /// `queued`, `in_progress`, `completed`.
    #[serde(default)]
    pub status: Option<String>,
    /// Outcome once completed.
    #[serde(default)]
    pub conclusion: Option<String>,
    /// 1-based position.
    #[serde(default)]
    pub number: u32,
    /// Started, ISO 8601.
    #[serde(default)]
    pub started_at: Option<String>,
    /// Completed, ISO 8601.
    #[serde(default)]
    pub completed_at: Option<String>,
}

/// A job of a run (`GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Job id (also its check-run id).
    pub id: u64,
    /// Run id.
    #[serde(default)]
    pub run_id: u64,
    /// Run attempt.
    #[serde(default)]
    pub run_attempt: Option<u32>,
    /// Job name.
    pub name: String,
    /// Workflow name.
    #[serde(default)]
    pub workflow_name: Option<String>,
    /// Branch.
    #[serde(default)]
    pub head_branch: Option<String>,
    /// `queued`, `in_progress`, `completed`, `waiting`, ...
    #[serde(default)]
    pub status: Option<String>,
    /// Outcome once completed.
    #[serde(default)]
    pub conclusion: Option<String>,
    /// `runs-on` labels, e.g. `["self-hosted", "linux", "x64"]`.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Runner that took it.
    #[serde(default)]
    pub runner_id: Option<u64>,
    /// Runner name.
    #[serde(default)]
    pub runner_name: Option<String>,
    /// Runner group id.
    #[serde(default)]
    pub runner_group_id: Option<u64>,
    /// Runner group name.
    #[serde(default)]
    pub runner_group_name: Option<String>,
    /// Created, ISO 8601.
    #[serde(default)]
    pub created_at: Option<String>,
    /// Started, ISO 8601.
    #[serde(default)]
    pub started_at: Option<String>,
    /// Completed, ISO 8601.
    #[serde(default)]
    pub completed_at: Option<String>,
    /// Web URL.
    #[serde(default)]
    pub html_url: Option<String>,
    /// Steps (absent while queued).
    #[serde(default)]
    pub steps: Vec<Step>,
}

/// One page of jobs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobsPage {
    /// Total jobs.
    #[serde(default)]
    pub total_count: u64,
    /// This page's jobs.
    #[serde(default)]
    pub jobs: Vec<Job>,
}

/// A runner label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunnerLabel {
    /// Label id.
    #[serde(default)]
    pub id: Option<u64>,
    /// Label, e.g. `self-hosted`.
    pub name: String,
    /// `read-only` (default labels) or `custom`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
}

/// A self-hosted runner (`GET /repos/{o}/{r}/actions/runners`, `GET /orgs/{org}/actions/runners`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Runner {
    /// Runner id.
    pub id: u64,
    /// Name.
    pub name: String,
    /// OS as reported.
    #[serde(default)]
    pub os: Option<String>,
    /// `online` or `offline`.
    #[serde(default)]
    pub status: Option<String>,
    /// Running a job.
    #[serde(default)]
    pub busy: bool,
    /// Labels.
    #[serde(default)]
    pub labels: Vec<RunnerLabel>,
    /// Group (not always present).
    #[serde(default)]
    pub runner_group_id: Option<u64>,
    /// Ephemeral (JIT) runner.
    #[serde(default)]
    pub ephemeral: Option<bool>,
}

impl Runner {
    /// Label names.
    pub fn label_names(&self) -> Vec<&str> {
        self.labels.iter().map(|l| l.name.as_str()).collect()
    }
}

/// One page of runners.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunnersPage {
    /// Total runners.
    #[serde(default)]
    pub total_count: u64,
    /// This page's runners.
    #[serde(default)]
    pub runners: Vec<Runner>,
}

/// A registration or remove token (`POST .../actions/runners/registration-token`, `.../remove-token`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunnerToken {
    /// The token (secret).
    pub token: SecretValue,
    /// Expiry, ISO 8601 (about one hour).
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// Body of `POST .../actions/runners/generate-jitconfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JitConfigRequest {
    /// Runner name (unique within the scope).
    pub name: String,
    /// Runner group: repos use `1`; orgs see [`RunnerGroup::default`].
    pub runner_group_id: u64,
    /// Custom labels (1..=100), e.g. `["self-hosted", "linux", "flotilla"]`.
    pub labels: Vec<String>,
    /// Working directory relative to the runner's install dir; GitHub's default is `_work`.
    pub work_folder: String,
}

/// Answer of `generate-jitconfig`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JitConfig {
    /// The runner GitHub registered.
    pub runner: Runner,
    /// Base64 config for `run.sh --jitconfig` (secret).
    pub encoded_jit_config: SecretValue,
}

/// A runner group of an organization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunnerGroup {
    /// Group id.
    pub id: u64,
    /// Name.
    pub name: String,
    /// The org's default group.
    #[serde(default)]
    pub default: bool,
    /// `all`, `selected`, `private`.
    #[serde(default)]
    pub visibility: Option<String>,
    /// Public repositories may use it.
    #[serde(default)]
    pub allows_public_repositories: Option<bool>,
}

/// One page of runner groups.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunnerGroupsPage {
    /// Total groups.
    #[serde(default)]
    pub total_count: u64,
    /// This page's groups.
    #[serde(default)]
    pub runner_groups: Vec<RunnerGroup>,
}

/// A workflow (`GET /repos/{o}/{r}/actions/workflows`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workflow {
    /// Workflow id.
    pub id: u64,
    /// Name.
    pub name: String,
    /// File path, e.g. `.github/workflows/ci.yml`.
    pub path: String,
    /// `active`, `disabled_manually`, ...
    #[serde(default)]
    pub state: Option<String>,
}

/// One page of workflows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkflowsPage {
    /// Total workflows.
    #[serde(default)]
    pub total_count: u64,
    /// This page's workflows.
    #[serde(default)]
    pub workflows: Vec<Workflow>,
}

/// A file or directory entry of the contents API (`GET /repos/{o}/{r}/contents/{path}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentEntry {
    /// `file`, `dir`, `symlink`, `submodule`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// File name.
    pub name: String,
    /// Path in the repository.
    pub path: String,
    /// Blob SHA.
    #[serde(default)]
    pub sha: Option<String>,
    /// Size in bytes.
    #[serde(default)]
    pub size: u64,
    /// `base64` when `content` is present.
    #[serde(default)]
    pub encoding: Option<String>,
    /// Content, base64 with line breaks (files up to 1 MB).
    #[serde(default)]
    pub content: Option<String>,
}

impl ContentEntry {
    /// Decode `content` (base64, line breaks ignored) as bytes.
    ///
    /// # Errors
    /// A message if there is no content, the encoding is not base64, or it does not decode.
    pub fn decode(&self) -> Result<Vec<u8>, String> {
        let content = self
            .content
            .as_deref()
            .ok_or_else(|| format!("{}: no content in the answer", self.path))?;
        match self.encoding.as_deref() {
            Some("base64") | None => {}
            Some(other) => return Err(format!("{}: unsupported encoding {other}", self.path)),
        }
        let compact: String = content.chars().filter(|c| !c.is_whitespace()).collect();
        base64::engine::general_purpose::STANDARD
            .decode(compact.as_bytes())
            .map_err(|e| format!("{}: invalid base64 content: {e}", self.path))
    }
}

/// A workflow file read through the contents API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkflowFile {
    /// Path, e.g. `.github/workflows/ci.yml`.
    pub path: String,
    /// Blob SHA.
    pub sha: Option<String>,
    /// Decoded text (lossy UTF-8).
    pub text: String,
}

/// Body of `POST /repos/{o}/{r}/issues`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewIssue {
    /// Title.
    pub title: String,
    /// Markdown body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Labels (must exist or the token must be able to create them).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub labels: Vec<String>,
}

/// An issue as created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Issue {
    /// Global id.
    pub id: u64,
    /// Number within the repository.
    pub number: u64,
    /// Title.
    #[serde(default)]
    pub title: String,
    /// `open` or `closed`.
    #[serde(default)]
    pub state: Option<String>,
    /// Web URL.
    #[serde(default)]
    pub html_url: Option<String>,
}

/// An issue comment as created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssueComment {
    /// Comment id.
    pub id: u64,
    /// Body.
    #[serde(default)]
    pub body: Option<String>,
    /// Web URL.
    #[serde(default)]
    pub html_url: Option<String>,
}

/// A commit comment as created (`POST /repos/{o}/{r}/commits/{sha}/comments`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommitComment {
    /// Comment id.
    pub id: u64,
    /// Body.
    #[serde(default)]
    pub body: Option<String>,
    /// Commit it is on.
    #[serde(default)]
    pub commit_id: Option<String>,
    /// Web URL.
    #[serde(default)]
    pub html_url: Option<String>,
}

/// A branch (`GET /repos/{o}/{r}/branches/{branch}`,
/// <https://docs.github.com/en/rest/branches/branches#get-a-branch>).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Branch {
    /// Branch name, e.g. `main`.
    pub name: String,
    /// Its head commit.
    #[serde(default)]
    pub commit: Option<ShaRef>,
    /// Whether branch protection is on.
    #[serde(default)]
    pub protected: bool,
}

/// An object named by its SHA (a branch's commit, a reference's target, a created commit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShaRef {
    /// Object SHA (40 hex digits).
    pub sha: String,
    /// `commit`, `tag`, ... (references only).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Web URL (created commits only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html_url: Option<String>,
}

/// A Git reference as created (`POST /repos/{o}/{r}/git/refs`,
/// <https://docs.github.com/en/rest/git/refs#create-a-reference>).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GitRef {
    /// Full name, e.g. `refs/heads/flotilla/fix-lint_failure-42`.
    #[serde(rename = "ref")]
    pub name: String,
    /// The object it points at.
    pub object: ShaRef,
}

/// What `POST /repos/{o}/{r}/git/refs` did for a branch.
#[derive(Debug, Clone, PartialEq)]
pub enum BranchCreation {
    /// The branch was created at the requested commit.
    Created(GitRef),
    /// GitHub answered `422 Reference already exists`: an earlier attempt made it.
    AlreadyExists,
}

/// Body of `PUT /repos/{o}/{r}/contents/{path}`
/// (<https://docs.github.com/en/rest/repos/contents#create-or-update-file-contents>): one
/// commit on `branch` that sets the file to `content`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileUpdate {
    /// Commit message.
    pub message: String,
    /// The new content, base64 (standard alphabet, padded, no line breaks).
    pub content: String,
    /// Blob SHA of the file being replaced (required when it exists; GitHub answers `409` if
    /// it is not the branch's current one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha: Option<String>,
    /// Branch to commit on.
    pub branch: String,
}

impl FileUpdate {
    /// An update of the file whose blob is `sha` to `content` (bytes, encoded here).
    pub fn new(message: &str, content: &[u8], sha: Option<String>, branch: &str) -> Self {
        FileUpdate {
            message: message.to_string(),
            content: base64::engine::general_purpose::STANDARD.encode(content),
            sha,
            branch: branch.to_string(),
        }
    }
}

/// Answer of `PUT /repos/{o}/{r}/contents/{path}`: the new file entry and the commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileCommit {
    /// The file as written (no `content`).
    #[serde(default)]
    pub content: Option<ContentEntry>,
    /// The commit made.
    pub commit: ShaRef,
}

/// Body of `POST /repos/{o}/{r}/pulls`
/// (<https://docs.github.com/en/rest/pulls/pulls#create-a-pull-request>).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewPullRequest {
    /// Title.
    pub title: String,
    /// Branch with the changes (`branch`, or `owner:branch` across forks).
    pub head: String,
    /// Branch the changes go into.
    pub base: String,
    /// Markdown body.
    pub body: String,
    /// Let maintainers push to the head branch.
    pub maintainer_can_modify: bool,
}

/// A branch end of a pull request (`head` or `base`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullRequestEnd {
    /// Branch name.
    #[serde(rename = "ref")]
    pub branch: String,
    /// Commit.
    #[serde(default)]
    pub sha: Option<String>,
}

/// A pull request (`POST /repos/{o}/{r}/pulls`, `GET /repos/{o}/{r}/pulls`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullRequest {
    /// Global id.
    #[serde(default)]
    pub id: u64,
    /// Number within the repository.
    pub number: u64,
    /// `open` or `closed`.
    #[serde(default)]
    pub state: Option<String>,
    /// Title.
    #[serde(default)]
    pub title: String,
    /// Web URL.
    #[serde(default)]
    pub html_url: Option<String>,
    /// The branch with the changes.
    #[serde(default)]
    pub head: Option<PullRequestEnd>,
    /// The branch they go into.
    #[serde(default)]
    pub base: Option<PullRequestEnd>,
}

/// A check-run annotation (`GET /repos/{o}/{r}/check-runs/{id}/annotations`); a job's timeout
/// message lives here, not in its log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Annotation {
    /// File path (`.github` for run-level notes).
    #[serde(default)]
    pub path: String,
    /// First line.
    #[serde(default)]
    pub start_line: Option<u64>,
    /// Last line.
    #[serde(default)]
    pub end_line: Option<u64>,
    /// `notice`, `warning`, `failure`.
    #[serde(default)]
    pub annotation_level: Option<String>,
    /// Title.
    #[serde(default)]
    pub title: Option<String>,
    /// Message, e.g. "The job running on runner X has exceeded the maximum execution time".
    #[serde(default)]
    pub message: String,
    /// Details.
    #[serde(default)]
    pub raw_details: Option<String>,
}

/// Parse an ISO 8601 / RFC 3339 timestamp as GitHub writes them (`2023-01-10T08:24:21Z`,
/// `2023-01-10T08:24:27.000Z`, `2020-01-08T23:48:37.000-08:00`) into unix milliseconds (UTC).
/// `None` if malformed.
pub fn parse_timestamp(s: &str) -> Option<Millis> {
    let b = s.trim().as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (h, mi, se) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let frac = &s.trim()[start..i];
        let first3: String = frac.chars().chain("000".chars()).take(3).collect();
        ms = first3.parse().ok()?;
    }
    let offset_s = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = digits(i + 1..i + 3)?;
            let om = digits(i + 4..i + 6)?;
            let v = oh * 3600 + om * 60;
            if *sign == b'-' { -v } else { v }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset_s;
    Some(secs * 1000 + ms)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::rfc3339;

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_timestamp("2023-11-14T22:13:20.123Z"),
            Some(1_700_000_000_123)
        );
        assert_eq!(
            rfc3339(parse_timestamp("2020-01-08T23:48:37.000-08:00").unwrap()),
            "2020-01-09T07:48:37.000Z"
        );
        assert_eq!(
            rfc3339(parse_timestamp("2025-02-17T21:11:49.260-08:00").unwrap()),
            "2025-02-18T05:11:49.260Z"
        );
        assert_eq!(
            parse_timestamp("2000-02-29T00:00:00+00:00"),
            Some(951_782_400_000)
        );
        for bad in [
            "",
            "2023-01-10",
            "2023-01-10T08:24:21",
            "2023-13-10T08:24:21Z",
            "2023-01-10T08:24:21.Z",
            "2023-01-10T08:24:21Zjunk",
            "2023-01-10T08:24:21+0800",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn secrets_do_not_print() {
        let t: RunnerToken =
            serde_json::from_str(r#"{"token":"LLBF3JGZ","expires_at":"x","extra":1}"#).unwrap();
        assert_eq!(t.token.expose(), "LLBF3JGZ");
        assert!(!format!("{t:?}").contains("LLBF3JGZ"));
        assert!(!serde_json::to_string(&t).unwrap().contains("LLBF3JGZ"));
    }

    #[test]
    fn content_decodes_with_line_breaks() {
        let e = ContentEntry {
            kind: "file".into(),
            name: "ci.yml".into(),
            path: ".github/workflows/ci.yml".into(),
            sha: None,
            size: 11,
            encoding: Some("base64".into()),
            content: Some("b246IHB1\nc2gK\n".into()),
        };
        assert_eq!(e.decode().unwrap(), b"on: push\n");
        let bad = ContentEntry {
            content: Some("!!!".into()),
            ..e.clone()
        };
        assert!(bad.decode().unwrap_err().contains("invalid base64"));
    }

    #[test]
    fn account_kind_tolerates_unknown() {
        let a: Account = serde_json::from_str(r#"{"login":"x","type":"Bot"}"#).unwrap();
        assert_eq!(a.kind, AccountKind::Other);
        let a: Account = serde_json::from_str(r#"{"login":"x","type":"Organization"}"#).unwrap();
        assert_eq!(a.kind, AccountKind::Organization);
    }
}
