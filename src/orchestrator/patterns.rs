//! The failure-pattern catalogue.
//!
//! A [`Catalogue`] is an ordered list of [`Pattern`]s. The built-in one is
//! `assets/patterns.toml`, embedded in the binary ([`Catalogue::builtin`]); users add or
//! replace entries with their own files of the same schema
//! ([`Catalogue::extend_from_toml`]). The file format is documented at the top of
//! `assets/patterns.toml`:
//!
//! ```toml
//! [[pattern]]
//! id = "python_import_error"
//! issue_type = "python_import_error"
//! regex = '''ModuleNotFoundError: No module named '([A-Za-z0-9_\-]+)[^']*''''
//! severity = "high"
//! auto_fixable = true
//! fix_description = "Missing Python dependency"
//! fix = { action = "add_dependency", package = "$1", ecosystem = "pip" }
//! weight = 2.0
//! ```
//!
//! Regexes use the `regex` crate's syntax, compiled in ASCII mode (`\w`, `\d`, `\s`, `\b`
//! and `(?i)` are ASCII-only; `.` matches any byte but a newline) and are matched against
//! one normalized log line at a time (see
//! [`normalize_line`](super::classify::normalize_line)); `^`/`$` are that line's ends.
//!
//! Loading validates every entry and reports the first problem as a [`PatternError`] that
//! names the pattern id and the file: unknown `issue_type`/`severity`/fix action, a regex
//! that does not compile or matches an empty line, a bad weight, an `auto_fixable` entry
//! without a fix, a fix argument the action does not take or a `$N` that the regex does not
//! capture, and an id used twice in one file.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::str::FromStr;

use regex::bytes::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use serde::{Deserialize, Serialize};

/// The embedded built-in catalogue (`assets/patterns.toml`).
pub const BUILTIN_TOML: &str = include_str!("../../assets/patterns.toml");

/// Name used for the built-in catalogue in error messages and [`Pattern::source`].
pub const BUILTIN_SOURCE: &str = "assets/patterns.toml (built in)";

/// Compiled-program size limit for a single pattern and for the combined matcher, in bytes.
const REGEX_SIZE_LIMIT: usize = 64 << 20;
/// Lazy-DFA cache size for the combined matcher, in bytes.
const DFA_SIZE_LIMIT: usize = 32 << 20;
/// Largest accepted `weight`.
const MAX_WEIGHT: f64 = 100.0;

/// The failure classes (the orchestrator's `issue_type` vocabulary).
///
/// Serialized in snake_case (`"dependency_install"`), the same spelling as
/// [`IssueType::as_str`], [`FromStr`] and [`fmt::Display`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueType {
    /// A package manager could not resolve, download or build a dependency.
    DependencyInstall,
    /// A Python import failed (`ModuleNotFoundError`, `ImportError`).
    PythonImportError,
    /// Tests ran and failed (or could not be collected).
    TestFailure,
    /// The code did not compile or link.
    CompileError,
    /// A linter, formatter check or type checker failed.
    LintFailure,
    /// The job, a step or a command hit a time limit.
    Timeout,
    /// The job was cancelled (by a user, a newer run, or fail-fast).
    Cancelled,
    /// A process or GPU ran out of memory (including exit code 137).
    OutOfMemory,
    /// Docker could not build, pull or run an image.
    DockerFailure,
    /// Missing permissions or credentials (file modes, tokens, cloud IAM).
    PermissionDenied,
    /// A network operation failed (DNS, connection, TLS, HTTP 5xx).
    NetworkError,
    /// A service rate-limited the job (HTTP 429, GitHub API rate limit).
    RateLimited,
    /// A git operation failed (missing ref, rejected push, conflict).
    GitError,
    /// The runner went away mid-job (shutdown signal, lost communication).
    RunnerLost,
    /// An artifact to upload or download was missing.
    ArtifactMissing,
    /// A script failed without a more specific known cause (generic exit code).
    ScriptError,
    /// The workflow file itself is invalid.
    WorkflowSyntaxError,
    /// Nothing known matched.
    Unknown,
}

impl IssueType {
    /// Every class, in declaration order.
    pub const ALL: [IssueType; 18] = [
        IssueType::DependencyInstall,
        IssueType::PythonImportError,
        IssueType::TestFailure,
        IssueType::CompileError,
        IssueType::LintFailure,
        IssueType::Timeout,
        IssueType::Cancelled,
        IssueType::OutOfMemory,
        IssueType::DockerFailure,
        IssueType::PermissionDenied,
        IssueType::NetworkError,
        IssueType::RateLimited,
        IssueType::GitError,
        IssueType::RunnerLost,
        IssueType::ArtifactMissing,
        IssueType::ScriptError,
        IssueType::WorkflowSyntaxError,
        IssueType::Unknown,
    ];

    /// The snake_case name, e.g. `"test_failure"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            IssueType::DependencyInstall => "dependency_install",
            IssueType::PythonImportError => "python_import_error",
            IssueType::TestFailure => "test_failure",
            IssueType::CompileError => "compile_error",
            IssueType::LintFailure => "lint_failure",
            IssueType::Timeout => "timeout",
            IssueType::Cancelled => "cancelled",
            IssueType::OutOfMemory => "out_of_memory",
            IssueType::DockerFailure => "docker_failure",
            IssueType::PermissionDenied => "permission_denied",
            IssueType::NetworkError => "network_error",
            IssueType::RateLimited => "rate_limited",
            IssueType::GitError => "git_error",
            IssueType::RunnerLost => "runner_lost",
            IssueType::ArtifactMissing => "artifact_missing",
            IssueType::ScriptError => "script_error",
            IssueType::WorkflowSyntaxError => "workflow_syntax_error",
            IssueType::Unknown => "unknown",
        }
    }

    /// Position in [`IssueType::ALL`] (0..18), handy for per-class arrays.
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for IssueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Error of [`IssueType::from_str`]: the text is not one of the class names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown issue type `{0}`; expected one of: {list}", list = issue_type_list())]
pub struct ParseIssueTypeError(pub String);

impl FromStr for IssueType {
    type Err = ParseIssueTypeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IssueType::ALL
            .iter()
            .copied()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| ParseIssueTypeError(s.to_owned()))
    }
}

fn issue_type_list() -> String {
    IssueType::ALL
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// How bad a failure is. Ordered `Low < Medium < High < Critical`; serialized lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Cosmetic or self-inflicted and cheap to fix (formatting, cancellation).
    Low,
    /// Needs attention but blocks little (a flaky network, failing tests).
    Medium,
    /// Blocks the pipeline (build, dependencies, permissions).
    High,
    /// Infrastructure or configuration is broken (runner lost, invalid workflow).
    Critical,
}

impl Severity {
    /// The lowercase name, e.g. `"high"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;

    /// Parses `low`, `medium`, `high` or `critical`; the error is the rejected text.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "low" => Ok(Severity::Low),
            "medium" => Ok(Severity::Medium),
            "high" => Ok(Severity::High),
            "critical" => Ok(Severity::Critical),
            other => Err(other.to_owned()),
        }
    }
}

/// What the orchestrator can do about a finding. Serialized in snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FixAction {
    /// Re-run the failed jobs of the run (transient causes). Takes no arguments.
    RerunFailedJobs,
    /// Open an issue for a person. Optional arguments: `title`, `labels` (comma-separated).
    OpenIssue,
    /// Add a missing dependency. Arguments: `package` (required), `ecosystem` (optional:
    /// `pip`, `npm`, `cargo`, ...).
    AddDependency,
    /// Run a formatter and commit the result. Arguments: `tool` (required), `path` (optional).
    RunFormatter,
}

impl FixAction {
    /// Every action.
    pub const ALL: [FixAction; 4] = [
        FixAction::RerunFailedJobs,
        FixAction::OpenIssue,
        FixAction::AddDependency,
        FixAction::RunFormatter,
    ];

    /// The snake_case name, e.g. `"add_dependency"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            FixAction::RerunFailedJobs => "rerun_failed_jobs",
            FixAction::OpenIssue => "open_issue",
            FixAction::AddDependency => "add_dependency",
            FixAction::RunFormatter => "run_formatter",
        }
    }

    /// Argument names the action accepts.
    pub const fn allowed_args(self) -> &'static [&'static str] {
        match self {
            FixAction::RerunFailedJobs => &[],
            FixAction::OpenIssue => &["title", "labels"],
            FixAction::AddDependency => &["package", "ecosystem"],
            FixAction::RunFormatter => &["tool", "path"],
        }
    }

    /// Argument names the action requires.
    pub const fn required_args(self) -> &'static [&'static str] {
        match self {
            FixAction::RerunFailedJobs | FixAction::OpenIssue => &[],
            FixAction::AddDependency => &["package"],
            FixAction::RunFormatter => &["tool"],
        }
    }
}

impl fmt::Display for FixAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for FixAction {
    type Err = String;

    /// Parses an action name; the error is the rejected text.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FixAction::ALL
            .iter()
            .copied()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| s.to_owned())
    }
}

/// A pattern's fix: an action plus argument templates in which `$1`..`$9` stand for the
/// matched line's capture groups (`$$` is a literal `$`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FixTemplate {
    /// The action to take.
    pub action: FixAction,
    /// Argument name to template, e.g. `package = "$1"`.
    pub args: BTreeMap<String, String>,
}

/// One validated catalogue entry.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// Unique id within the catalogue.
    pub id: String,
    /// The class this pattern is evidence for (never [`IssueType::Unknown`]).
    pub issue_type: IssueType,
    /// The regex as written in the file.
    pub regex_source: String,
    /// The compiled regex (ASCII mode, multi-line), matched against one normalized line.
    pub regex: Regex,
    /// Severity reported with a finding from this pattern.
    pub severity: Severity,
    /// Whether the orchestrator may apply [`Pattern::fix`] without a person.
    pub auto_fixable: bool,
    /// One-sentence description for people.
    pub fix_description: String,
    /// Optional fix action.
    pub fix: Option<FixTemplate>,
    /// Evidence strength multiplier (> 0; default 1.0).
    pub weight: f64,
    /// Where the entry came from (file name given to the loader).
    pub source: String,
}

/// Why a catalogue file was rejected. Every message names the file, and the pattern id
/// when there is one, and says what to change.
#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    /// The text is not valid TOML or does not follow the schema (unknown field, wrong type,
    /// missing field).
    #[error(
        "cannot read pattern file {file}: {error}\nfix the TOML; each entry is a [[pattern]] table with id, issue_type, regex, severity, auto_fixable, fix_description and optional fix, weight"
    )]
    Parse {
        /// File name as given to the loader.
        file: String,
        /// The TOML/serde error (with line and column).
        #[source]
        error: toml::de::Error,
    },
    /// A required text field is empty.
    #[error("pattern `{id}` in {file}: field `{field}` is empty; give it a value")]
    EmptyField {
        /// File name.
        file: String,
        /// Pattern id (empty if the id itself is empty).
        id: String,
        /// The empty field.
        field: &'static str,
    },
    /// The same id appears twice in one file.
    #[error(
        "pattern id `{id}` appears more than once in {file}; ids must be unique within a file (to replace a built-in pattern, reuse its id once)"
    )]
    DuplicateId {
        /// File name.
        file: String,
        /// The repeated id.
        id: String,
    },
    /// `issue_type` is not in the vocabulary (or is the reserved `unknown`).
    #[error("pattern `{id}` in {file}: issue_type `{value}` is not allowed; use one of: {allowed}")]
    UnknownIssueType {
        /// File name.
        file: String,
        /// Pattern id.
        id: String,
        /// The rejected value.
        value: String,
        /// The accepted values.
        allowed: String,
    },
    /// `severity` is not one of low/medium/high/critical.
    #[error(
        "pattern `{id}` in {file}: severity `{value}` is not allowed; use one of: low, medium, high, critical"
    )]
    UnknownSeverity {
        /// File name.
        file: String,
        /// Pattern id.
        id: String,
        /// The rejected value.
        value: String,
    },
    /// The regex does not compile.
    #[error(
        "pattern `{id}` in {file}: invalid regex: {error}\nfix the regex (regex crate syntax, ASCII mode; write it as a TOML literal string '...')"
    )]
    BadRegex {
        /// File name.
        file: String,
        /// Pattern id.
        id: String,
        /// The compiler's error.
        #[source]
        error: regex::Error,
    },
    /// The regex matches an empty line, so it would flag every line.
    #[error(
        "pattern `{id}` in {file}: regex `{regex}` matches an empty line and would flag every line; make it require some text"
    )]
    MatchesEmpty {
        /// File name.
        file: String,
        /// Pattern id.
        id: String,
        /// The regex.
        regex: String,
    },
    /// `weight` is not a finite number in (0, 100].
    #[error("pattern `{id}` in {file}: weight {value} is not allowed; use a number > 0 and <= 100")]
    BadWeight {
        /// File name.
        file: String,
        /// Pattern id.
        id: String,
        /// The rejected value.
        value: f64,
    },
    /// The fix table has no `action` key.
    #[error(
        "pattern `{id}` in {file}: fix has no `action`; write fix = {{ action = \"...\" }} with one of: rerun_failed_jobs, open_issue, add_dependency, run_formatter"
    )]
    MissingFixAction {
        /// File name.
        file: String,
        /// Pattern id.
        id: String,
    },
    /// The fix action is not known.
    #[error(
        "pattern `{id}` in {file}: fix action `{value}` is not known; use one of: rerun_failed_jobs, open_issue, add_dependency, run_formatter"
    )]
    UnknownFixAction {
        /// File name.
        file: String,
        /// Pattern id.
        id: String,
        /// The rejected value.
        value: String,
    },
    /// The fix has an argument its action does not take.
    #[error(
        "pattern `{id}` in {file}: fix action `{action}` does not take argument `{arg}`; it takes: {allowed}"
    )]
    UnknownFixArgument {
        /// File name.
        file: String,
        /// Pattern id.
        id: String,
        /// The action.
        action: FixAction,
        /// The rejected argument.
        arg: String,
        /// The accepted arguments (or "nothing").
        allowed: String,
    },
    /// The fix lacks an argument its action requires.
    #[error(
        "pattern `{id}` in {file}: fix action `{action}` needs argument `{arg}`; add it to the fix table"
    )]
    MissingFixArgument {
        /// File name.
        file: String,
        /// Pattern id.
        id: String,
        /// The action.
        action: FixAction,
        /// The missing argument.
        arg: &'static str,
    },
    /// A fix argument refers to a capture group the regex does not have.
    #[error(
        "pattern `{id}` in {file}: fix argument `{arg}` uses ${group} but the regex has {groups} capture group(s); add a (...) group or change the reference"
    )]
    BadCaptureRef {
        /// File name.
        file: String,
        /// Pattern id.
        id: String,
        /// The argument.
        arg: String,
        /// The referenced group.
        group: usize,
        /// How many groups the regex has.
        groups: usize,
    },
    /// `auto_fixable = true` without a fix action.
    #[error(
        "pattern `{id}` in {file}: auto_fixable = true needs a fix action; add fix = {{ action = \"...\" }} or set auto_fixable = false"
    )]
    AutoFixableWithoutFix {
        /// File name.
        file: String,
        /// Pattern id.
        id: String,
    },
    /// All patterns together are too large to compile into one matcher.
    #[error(
        "the catalogue with the patterns of {file} is too large to compile into one matcher: {error}\nremove or simplify patterns (fewer bounded repetitions like {{1000}})"
    )]
    TooLarge {
        /// File whose patterns were being added.
        file: String,
        /// The compiler's error.
        #[source]
        error: regex::Error,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    pattern: Vec<RawPattern>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPattern {
    id: String,
    issue_type: String,
    regex: String,
    severity: String,
    auto_fixable: bool,
    fix_description: String,
    #[serde(default)]
    fix: Option<BTreeMap<String, String>>,
    #[serde(default)]
    weight: Option<f64>,
}

/// Compiled matchers over the whole catalogue, used by the classifier.
#[derive(Debug, Clone)]
pub(crate) struct Matcher {
    /// `(?:p0)|(?:p1)|...`: finds the lines where some pattern may match.
    pub(crate) combined: Regex,
    /// All patterns, for telling which ones match one line.
    pub(crate) set: RegexSet,
}

/// An ordered, validated set of [`Pattern`]s with the compiled matchers the classifier uses.
#[derive(Debug, Clone)]
pub struct Catalogue {
    patterns: Vec<Pattern>,
    matcher: Option<Matcher>,
}

impl Catalogue {
    /// The built-in catalogue (`assets/patterns.toml`, embedded at compile time).
    ///
    /// # Panics
    /// Only if the embedded file is invalid, which this module's tests rule out.
    pub fn builtin() -> Catalogue {
        match Catalogue::from_toml(BUILTIN_TOML, BUILTIN_SOURCE) {
            Ok(c) => c,
            Err(e) => panic!("built-in pattern catalogue is invalid: {e}"),
        }
    }

    /// A catalogue with no patterns (everything classifies as `unknown`).
    pub fn empty() -> Catalogue {
        Catalogue {
            patterns: Vec::new(),
            matcher: None,
        }
    }

    /// A catalogue made only of the patterns in `text` (TOML, the schema above); `source`
    /// names the file in errors.
    ///
    /// # Errors
    /// Any [`PatternError`] for the first invalid entry.
    pub fn from_toml(text: &str, source: &str) -> Result<Catalogue, PatternError> {
        let mut c = Catalogue::empty();
        c.extend_from_toml(text, source)?;
        Ok(c)
    }

    /// Adds the patterns of a user's file: an entry whose id already exists replaces that
    /// pattern in place; new ids are appended. All-or-nothing: on error the catalogue is
    /// unchanged.
    ///
    /// # Errors
    /// [`PatternError`] naming the file (`source`), the pattern id and what to change:
    /// bad TOML/schema, unknown issue_type/severity/fix action or argument, bad regex,
    /// regex matching an empty line, bad weight, bad `$N` reference, `auto_fixable`
    /// without a fix, duplicate id within the file, or a catalogue too large to compile.
    pub fn extend_from_toml(&mut self, text: &str, source: &str) -> Result<(), PatternError> {
        let raw: RawFile = toml::from_str(text).map_err(|error| PatternError::Parse {
            file: source.to_owned(),
            error,
        })?;
        let mut seen = HashSet::new();
        let mut new = Vec::with_capacity(raw.pattern.len());
        for rp in raw.pattern {
            if !seen.insert(rp.id.clone()) {
                return Err(PatternError::DuplicateId {
                    file: source.to_owned(),
                    id: rp.id,
                });
            }
            new.push(validate(rp, source)?);
        }
        let mut patterns = self.patterns.clone();
        for p in new {
            match patterns.iter_mut().find(|q| q.id == p.id) {
                Some(slot) => *slot = p,
                None => patterns.push(p),
            }
        }
        let matcher = build_matcher(&patterns, source)?;
        self.patterns = patterns;
        self.matcher = matcher;
        Ok(())
    }

    /// The patterns, in catalogue order.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// The pattern with this id, if any.
    pub fn get(&self, id: &str) -> Option<&Pattern> {
        self.patterns.iter().find(|p| p.id == id)
    }

    /// Number of patterns.
    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    /// True when there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub(crate) fn matcher(&self) -> Option<&Matcher> {
        self.matcher.as_ref()
    }
}

impl Default for Catalogue {
    /// The built-in catalogue.
    fn default() -> Self {
        Catalogue::builtin()
    }
}

fn compile(re: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(re)
        .unicode(false)
        .multi_line(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

fn validate(rp: RawPattern, file: &str) -> Result<Pattern, PatternError> {
    let f = || file.to_owned();
    let id = rp.id.trim().to_owned();
    if id.is_empty() {
        return Err(PatternError::EmptyField {
            file: f(),
            id,
            field: "id",
        });
    }
    for (field, value) in [
        ("regex", &rp.regex),
        ("fix_description", &rp.fix_description),
    ] {
        if value.trim().is_empty() {
            return Err(PatternError::EmptyField {
                file: f(),
                id,
                field,
            });
        }
    }
    let issue_type = match rp.issue_type.parse::<IssueType>() {
        Ok(t) if t != IssueType::Unknown => t,
        _ => {
            return Err(PatternError::UnknownIssueType {
                file: f(),
                id,
                value: rp.issue_type,
                allowed: IssueType::ALL[..IssueType::ALL.len() - 1]
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    };
    let severity =
        rp.severity
            .parse::<Severity>()
            .map_err(|value| PatternError::UnknownSeverity {
                file: f(),
                id: id.clone(),
                value,
            })?;
    let regex = compile(&rp.regex).map_err(|error| PatternError::BadRegex {
        file: f(),
        id: id.clone(),
        error,
    })?;
    if regex.is_match(b"") {
        return Err(PatternError::MatchesEmpty {
            file: f(),
            id,
            regex: rp.regex,
        });
    }
    let weight = rp.weight.unwrap_or(1.0);
    if !(weight.is_finite() && weight > 0.0 && weight <= MAX_WEIGHT) {
        return Err(PatternError::BadWeight {
            file: f(),
            id,
            value: weight,
        });
    }
    let fix = match rp.fix {
        None => None,
        Some(mut table) => {
            let action_name =
                table
                    .remove("action")
                    .ok_or_else(|| PatternError::MissingFixAction {
                        file: f(),
                        id: id.clone(),
                    })?;
            let action = action_name.parse::<FixAction>().map_err(|value| {
                PatternError::UnknownFixAction {
                    file: f(),
                    id: id.clone(),
                    value,
                }
            })?;
            for arg in table.keys() {
                if !action.allowed_args().contains(&arg.as_str()) {
                    let allowed = if action.allowed_args().is_empty() {
                        "nothing".to_owned()
                    } else {
                        action.allowed_args().join(", ")
                    };
                    return Err(PatternError::UnknownFixArgument {
                        file: f(),
                        id,
                        action,
                        arg: arg.clone(),
                        allowed,
                    });
                }
            }
            for &arg in action.required_args() {
                if !table.contains_key(arg) {
                    return Err(PatternError::MissingFixArgument {
                        file: f(),
                        id,
                        action,
                        arg,
                    });
                }
            }
            let groups = regex.captures_len() - 1;
            for (arg, template) in &table {
                for group in capture_refs(template) {
                    if group > groups {
                        return Err(PatternError::BadCaptureRef {
                            file: f(),
                            id,
                            arg: arg.clone(),
                            group,
                            groups,
                        });
                    }
                }
            }
            Some(FixTemplate {
                action,
                args: table,
            })
        }
    };
    if rp.auto_fixable && fix.is_none() {
        return Err(PatternError::AutoFixableWithoutFix { file: f(), id });
    }
    Ok(Pattern {
        id,
        issue_type,
        regex_source: rp.regex,
        regex,
        severity,
        auto_fixable: rp.auto_fixable,
        fix_description: rp.fix_description,
        fix,
        weight,
        source: file.to_owned(),
    })
}

/// The capture-group numbers referenced as `$N` (N = 1..=9) in a fix template.
pub(crate) fn capture_refs(template: &str) -> Vec<usize> {
    let b = template.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'$' {
            match b[i + 1] {
                b'$' => i += 2,
                d @ b'1'..=b'9' => {
                    out.push(usize::from(d - b'0'));
                    i += 2;
                }
                _ => i += 1,
            }
        } else {
            i += 1;
        }
    }
    out
}

fn build_matcher(patterns: &[Pattern], file: &str) -> Result<Option<Matcher>, PatternError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let too_large = |error| PatternError::TooLarge {
        file: file.to_owned(),
        error,
    };
    let combined_src = patterns
        .iter()
        .map(|p| format!("(?:{})", p.regex_source))
        .collect::<Vec<_>>()
        .join("|");
    let combined = RegexBuilder::new(&combined_src)
        .unicode(false)
        .multi_line(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(DFA_SIZE_LIMIT)
        .build()
        .map_err(too_large)?;
    let set = RegexSetBuilder::new(patterns.iter().map(|p| p.regex_source.as_str()))
        .unicode(false)
        .multi_line(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(DFA_SIZE_LIMIT)
        .build()
        .map_err(too_large)?;
    Ok(Some(Matcher { combined, set }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(extra: &str) -> String {
        format!(
            "[[pattern]]\nid = \"x\"\nissue_type = \"network_error\"\nregex = 'boom (\\w+)'\nseverity = \"low\"\nauto_fixable = false\nfix_description = \"d\"\n{extra}"
        )
    }

    #[test]
    fn builtin_loads_and_covers_every_class() {
        let c = Catalogue::builtin();
        assert!(c.len() >= 40, "only {} patterns", c.len());
        for t in IssueType::ALL {
            if t == IssueType::Unknown {
                continue;
            }
            assert!(
                c.patterns().iter().any(|p| p.issue_type == t),
                "no pattern for {t}"
            );
        }
        for id in [
            "npm_dependency_error",
            "python_import_error",
            "pytest_failure",
            "docker_build_error",
        ] {
            assert!(c.get(id).is_some(), "seed pattern {id} missing");
        }
        assert!(c.patterns().iter().all(|p| p.source == BUILTIN_SOURCE));
    }

    #[test]
    fn issue_type_round_trips() {
        for t in IssueType::ALL {
            assert_eq!(t.as_str().parse::<IssueType>().unwrap(), t);
            assert_eq!(t.to_string(), t.as_str());
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
            let back: IssueType = serde_json::from_str(&json).unwrap();
            assert_eq!(back, t);
            assert_eq!(IssueType::ALL[t.index()], t);
        }
        let err = "nope".parse::<IssueType>().unwrap_err();
        assert!(err.to_string().contains("nope"));
        assert!(err.to_string().contains("test_failure"));
    }

    #[test]
    fn severity_and_fix_action_parse() {
        assert_eq!("critical".parse::<Severity>().unwrap(), Severity::Critical);
        assert!("urgent".parse::<Severity>().is_err());
        assert!(Severity::Low < Severity::Critical);
        for a in FixAction::ALL {
            assert_eq!(a.as_str().parse::<FixAction>().unwrap(), a);
        }
    }

    #[test]
    fn user_file_replaces_and_appends() {
        let mut c = Catalogue::builtin();
        let n = c.len();
        let user = r#"
[[pattern]]
id = "pytest_failure"
issue_type = "test_failure"
regex = '^FAILED (\S+)'
severity = "high"
auto_fixable = false
fix_description = "custom"

[[pattern]]
id = "my_flaky_service"
issue_type = "network_error"
regex = 'flaky-service unavailable'
severity = "low"
auto_fixable = true
fix_description = "retry"
fix = { action = "rerun_failed_jobs" }
weight = 2.5
"#;
        c.extend_from_toml(user, "team.toml").unwrap();
        assert_eq!(c.len(), n + 1);
        let p = c.get("pytest_failure").unwrap();
        assert_eq!(p.fix_description, "custom");
        assert_eq!(p.severity, Severity::High);
        assert_eq!(p.source, "team.toml");
        let q = c.get("my_flaky_service").unwrap();
        assert_eq!(q.weight, 2.5);
        assert_eq!(c.patterns().last().unwrap().id, "my_flaky_service");
        // Replacement keeps the position.
        let pos_builtin = Catalogue::builtin()
            .patterns()
            .iter()
            .position(|p| p.id == "pytest_failure");
        let pos_now = c.patterns().iter().position(|p| p.id == "pytest_failure");
        assert_eq!(pos_builtin, pos_now);
    }

    #[test]
    fn failed_extension_leaves_catalogue_unchanged() {
        let mut c = Catalogue::builtin();
        let n = c.len();
        let bad = format!("{}\n{}", one(""), one("").replace("boom", "(unclosed"));
        assert!(c.extend_from_toml(&bad, "bad.toml").is_err());
        assert_eq!(c.len(), n);
        assert!(c.get("x").is_none());
    }

    #[test]
    fn valid_minimal_entry() {
        let c = Catalogue::from_toml(&one(""), "u.toml").unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c.patterns()[0].weight, 1.0);
        assert!(Catalogue::from_toml("", "empty.toml").unwrap().is_empty());
    }

    fn err(text: &str) -> String {
        Catalogue::from_toml(text, "user.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn rejects_bad_toml_and_unknown_fields() {
        let e = err("[[pattern]\nid=");
        assert!(e.contains("user.toml"), "{e}");
        let e = err(&one("colour = \"red\""));
        assert!(e.contains("colour"), "{e}");
        let e = err("[[pattern]]\nid = \"x\"\n");
        assert!(
            e.contains("user.toml") && e.contains("missing field"),
            "{e}"
        );
    }

    #[test]
    fn rejects_unknown_issue_type_and_reserved_unknown() {
        let e = err(&one("").replace("network_error", "cosmic_rays"));
        assert!(e.contains("`x`") && e.contains("cosmic_rays") && e.contains("user.toml"));
        assert!(e.contains("dependency_install"));
        let e = err(&one("").replace("network_error", "unknown"));
        assert!(e.contains("issue_type `unknown`"), "{e}");
    }

    #[test]
    fn rejects_unknown_severity() {
        let e = err(&one("").replace("\"low\"", "\"urgent\""));
        assert!(e.contains("severity `urgent`") && e.contains("`x`"), "{e}");
    }

    #[test]
    fn rejects_bad_regex_naming_id_and_file() {
        let e = err(&one("").replace("boom (\\w+)", "boom (unclosed"));
        assert!(e.contains("pattern `x` in user.toml: invalid regex"), "{e}");
    }

    #[test]
    fn rejects_regex_matching_empty_line() {
        let e = err(&one("").replace("boom (\\w+)", "x*"));
        assert!(e.contains("matches an empty line"), "{e}");
    }

    #[test]
    fn rejects_duplicate_ids_in_one_file() {
        let e = err(&format!("{}\n{}", one(""), one("")));
        assert!(e.contains("`x` appears more than once in user.toml"), "{e}");
    }

    #[test]
    fn rejects_bad_weight() {
        for w in ["0.0", "-1.0", "1000.0", "nan", "inf"] {
            let e = err(&one(&format!("weight = {w}")));
            assert!(e.contains("weight"), "{w}: {e}");
        }
    }

    #[test]
    fn rejects_bad_fixes() {
        let e = err(&one("fix = { action = \"reboot_universe\" }"));
        assert!(e.contains("fix action `reboot_universe`"), "{e}");
        let e = err(&one("fix = { package = \"$1\" }"));
        assert!(e.contains("fix has no `action`"), "{e}");
        let e = err(&one(
            "fix = { action = \"rerun_failed_jobs\", package = \"a\" }",
        ));
        assert!(e.contains("does not take argument `package`"), "{e}");
        let e = err(&one("fix = { action = \"add_dependency\" }"));
        assert!(e.contains("needs argument `package`"), "{e}");
        let e = err(&one(
            "fix = { action = \"add_dependency\", package = \"$2\" }",
        ));
        assert!(e.contains("$2") && e.contains("1 capture group"), "{e}");
        let e = err(&one("").replace("auto_fixable = false", "auto_fixable = true"));
        assert!(e.contains("auto_fixable = true needs a fix"), "{e}");
        let e = err(&one("").replace("fix_description = \"d\"", "fix_description = \" \""));
        assert!(e.contains("`fix_description` is empty"), "{e}");
    }

    /// One example line (already normalized) per built-in pattern, plus a near miss that
    /// the pattern must not match. Every built-in pattern must appear here.
    const EXAMPLES: &[(&str, &str, &str)] = &[
        (
            "npm_dependency_error",
            "npm ERR! 404 Not Found - GET https://registry.npmjs.org/left-padx - Not found",
            "npm ERR! 404 Not Found - GET https://example.org/x",
        ),
        (
            "npm_code_error",
            "npm error code ERESOLVE",
            "npm error code ELIFECYCLE",
        ),
        (
            "npm_resolve",
            "npm ERR! ERESOLVE unable to resolve dependency tree",
            "resolved dependency tree",
        ),
        (
            "yarn_pnpm_install",
            " ERR_PNPM_OUTDATED_LOCKFILE  Cannot install with \"frozen-lockfile\"",
            "pnpm install done",
        ),
        (
            "node_cannot_find_module",
            "Error: Cannot find module 'express'",
            "Error: Cannot find module './local'",
        ),
        (
            "pip_no_matching_distribution",
            "ERROR: No matching distribution found for torch==9.9",
            "Looking for a matching distribution",
        ),
        (
            "pip_resolution_impossible",
            "ERROR: ResolutionImpossible: for help visit https://pip.pypa.io",
            "Resolution done",
        ),
        (
            "pip_wheel_build_failed",
            "  ERROR: Failed building wheel for lxml",
            "Building wheel for lxml (pyproject.toml): finished with status 'done'",
        ),
        (
            "cargo_dependency_resolution",
            "error: no matching package named `serde_jsonx` found",
            "Updating crates.io index",
        ),
        (
            "go_module_error",
            "main.go:5:2: missing go.sum entry for module providing package github.com/x/y",
            "go: downloading github.com/x/y v1.0.0",
        ),
        (
            "jvm_dependency_resolution",
            "[ERROR] Failed to execute goal on project app: Could not resolve dependencies for project com.x:app:jar:1.0",
            "[INFO] Resolving dependencies",
        ),
        (
            "composer_unresolvable",
            "Your requirements could not be resolved to an installable set of packages.",
            "Installing dependencies from lock file",
        ),
        (
            "ruby_gem_missing",
            "Could not find gem 'rails (~> 9.0)' in locally installed gems.",
            "Fetching gem metadata",
        ),
        (
            "system_package_missing",
            "E: Unable to locate package libfoo-dev",
            "Reading package lists... Done",
        ),
        (
            "python_import_error",
            "ModuleNotFoundError: No module named 'yaml'",
            "No module named yaml in the docs",
        ),
        (
            "python_cannot_import_name",
            "ImportError: cannot import name 'foo' from 'bar' (/x/bar.py)",
            "import bar",
        ),
        (
            "python_import_error_other",
            "ImportError while importing test module '/w/tests/test_x.py'.",
            "importing test module",
        ),
        (
            "python_import_error_generic",
            "ImportError: something odd",
            "  raise ImportError(msg)",
        ),
        (
            "pytest_failure",
            "FAILED tests/test_a.py::test_b - assert 1 == 2",
            "FAILED: build.ninja",
        ),
        (
            "pytest_failed_verbose",
            "tests/test_a.py::test_b FAILED                          [ 50%]",
            "tests/test_a.py::test_b PASSED",
        ),
        (
            "pytest_summary",
            "===== 1 failed, 3 passed in 0.12s =====",
            "===== 4 passed in 0.12s =====",
        ),
        (
            "pytest_collection_error",
            "ERROR collecting tests/test_a.py",
            "collecting ... collected 12 items",
        ),
        (
            "test_runner_shard_failed",
            "test_ops 3/4 failed!",
            "test_ops 3/4 was successful",
        ),
        ("unittest_failure", "FAILED (failures=2)", "OK (skipped=1)"),
        (
            "jest_vitest_failure",
            "Tests:       1 failed, 9 passed, 10 total",
            "Tests:       10 passed, 10 total",
        ),
        (
            "mocha_rspec_failing",
            "12 examples, 2 failures",
            "12 examples, 0 failures",
        ),
        (
            "cargo_test_failure",
            "test result: FAILED. 9 passed; 1 failed; 0 ignored",
            "test result: ok. 10 passed; 0 failed",
        ),
        (
            "go_test_failure",
            "--- FAIL: TestParse (0.00s)",
            "--- PASS: TestParse (0.00s)",
        ),
        (
            "jvm_test_failure",
            "Tests run: 10, Failures: 1, Errors: 0, Skipped: 0",
            "Tests run: 10, Failures: 0, Errors: 0, Skipped: 0",
        ),
        (
            "rustc_error",
            "error[E0308]: mismatched types",
            "warning[E0308]: mismatched types",
        ),
        (
            "gcc_clang_error",
            "src/a.cpp:12:3: error: expected ';' after expression",
            "src/a.cpp:12:3: warning: unused variable",
        ),
        (
            "msvc_error",
            "C:\\w\\a.cpp(253): error C2065: 'X': undeclared identifier",
            "C:\\w\\a.cpp(253): warning C4996: deprecated",
        ),
        (
            "linker_error",
            "collect2: error: ld returned 1 exit status",
            "Linking CXX executable app",
        ),
        (
            "build_tool_failed",
            "make[2]: *** [CMakeFiles/app.dir/build.make:76: app.o] Error 1",
            "make[2]: Leaving directory '/w'",
        ),
        (
            "typescript_error",
            "src/a.ts(3,7): error TS2322: Type 'string' is not assignable to type 'number'.",
            "tsc --noEmit",
        ),
        (
            "jvm_compile_error",
            "[ERROR] /w/src/Main.java:[3,8] ... Compilation failure",
            "Compilation failures                   4",
        ),
        (
            "go_compile_error",
            "./main.go:12:2: undefined: Foo",
            "./main.go:12:2: note",
        ),
        (
            "black_would_reformat",
            "would reformat src/app.py",
            "reformatted src/app.py",
        ),
        (
            "prettier_check",
            "[warn] Code style issues found in 2 files. Run Prettier with --write to fix.",
            "All matched files use Prettier code style!",
        ),
        (
            "rustfmt_check",
            "Diff in /w/src/lib.rs at line 3:",
            "Diff in behaviour",
        ),
        (
            "clippy_lint",
            "  = note: `-D clippy::needless-return` implied by `-D warnings`",
            "  = note: `-D warnings` implied",
        ),
        (
            "eslint_problems",
            "\u{2716} 3 problems (3 errors, 0 warnings)",
            "\u{2716} 3 problems (0 errors, 3 warnings)",
        ),
        (
            "python_linter",
            "src/x.py:1:1: F401 'os' imported but unused",
            "src/x.py:1:1 fine",
        ),
        (
            "lintrunner_failure",
            ">>> Lint for torch/x.py:",
            ">>> Done linting",
        ),
        (
            "precommit_failed",
            "flake8...................................................................Failed",
            "flake8...................................................................Passed",
        ),
        (
            "other_linters",
            "10 files inspected, 2 offenses detected",
            "10 files inspected, no offenses detected",
        ),
        (
            "job_max_execution_time",
            "The job running on runner r1 has exceeded the maximum execution time of 360 minutes.",
            "maximum execution time is configurable",
        ),
        (
            "step_timed_out",
            "##[error]The action 'Run tests' has timed out after 30 minutes.",
            "The action 'Run tests' finished",
        ),
        (
            "timeout_exit_124",
            "Got exit code 124",
            "Got exit code 1240",
        ),
        (
            "test_timeout",
            "Failed: Timeout >900.0s",
            "Timeout set to 900s",
        ),
        (
            "generic_timed_out_after",
            "Waiting for service: timed out after 300 seconds",
            "Operation timed out after 300000 milliseconds",
        ),
        (
            "operation_canceled",
            "##[error]The operation was canceled.",
            "The operation was canceled by the user, continuing",
        ),
        (
            "run_canceled_by",
            "The run was canceled by @octocat.",
            "The run was not canceled",
        ),
        (
            "gpu_out_of_memory",
            "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB",
            "CUDA memory usage: 2.00 GiB",
        ),
        (
            "process_out_of_memory",
            "java.lang.OutOfMemoryError: Java heap space",
            "java.lang.OutOfMemory handling enabled",
        ),
        (
            "exit_code_137",
            "##[error]Process completed with exit code 137.",
            "##[error]Process completed with exit code 1370.",
        ),
        (
            "docker_build_error",
            "failed to build: exit status 1",
            "Failed to build one or more wheels",
        ),
        (
            "buildkit_failed_to_solve",
            "ERROR: failed to solve: failed to compute cache key",
            "#5 DONE 0.1s",
        ),
        (
            "docker_daemon_error",
            "Error response from daemon: pull access denied for x",
            "Docker daemon API version: '1.51'",
        ),
        (
            "permission_denied_fs",
            "bash: ./run.sh: Permission denied",
            "storage write check failed: PermissionDenied (permanent)",
        ),
        (
            "git_push_denied",
            "remote: Permission to o/r.git denied to github-actions[bot].",
            "remote: Resolving deltas",
        ),
        (
            "http_auth_failure",
            "gh: Bad credentials (HTTP 401)",
            "credentials loaded",
        ),
        (
            "cloud_access_denied",
            "An error occurred (AccessDenied) when calling the PutObject operation: Access Denied",
            "S3Error { code: \"AccessDenied\" }",
        ),
        (
            "credentials_not_found",
            "botocore.exceptions.NoCredentialsError: Unable to locate credentials",
            "Found credentials in environment variables.",
        ),
        (
            "dns_failure",
            "curl: (6) Could not resolve host: example.org",
            "Resolved host example.org",
        ),
        (
            "connection_failure",
            "Error: connect ECONNREFUSED 127.0.0.1:5432",
            "connection established",
        ),
        (
            "http_client_timeout",
            "urllib3.exceptions.ReadTimeoutError: HTTPSConnectionPool(host='x', port=443): Read timed out.",
            "read timeout=10 configured",
        ),
        (
            "download_failed",
            "error: RPC failed; curl 56 GnuTLS recv error (-9)",
            "Receiving objects: 100% done",
        ),
        (
            "tls_failure",
            "ssl.SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed",
            "TLS 1.3 connection established",
        ),
        (
            "github_api_rate_limit",
            "API rate limit exceeded for installation ID 1.",
            "x-ratelimit-remaining: 4999",
        ),
        ("http_429", "HTTP 429: Too Many Requests", "HTTP 200 OK"),
        (
            "git_remote_ref",
            "fatal: couldn't find remote ref refs/heads/gone",
            "From https://github.com/o/r",
        ),
        (
            "git_push_rejected",
            " ! [rejected]        main -> main (fetch first)",
            " * [new branch]      main -> main",
        ),
        (
            "git_merge_conflict",
            "CONFLICT (content): Merge conflict in a.txt",
            "Auto-merging a.txt",
        ),
        (
            "git_process_failed",
            "##[error]fatal: unable to access 'https://x/': The requested URL returned error: 500",
            "gcc: fatal error: no input files",
        ),
        (
            "runner_shutdown_signal",
            "##[error]The runner has received a shutdown signal.",
            "Runner shut down cleanly after the job",
        ),
        (
            "runner_lost_communication",
            "The self-hosted runner: r1 lost communication with the server.",
            "Runner connection is good",
        ),
        (
            "artifact_upload_no_files",
            "##[error]No files were found with the provided path: dist. No artifacts will be uploaded.",
            "No files were found with the provided path: dist. No artifacts will be uploaded.",
        ),
        (
            "artifact_download_missing",
            "Error: Unable to download artifact(s): Artifact not found for name: wheels",
            "Artifact download has finished successfully",
        ),
        (
            "invalid_workflow_file",
            "Invalid workflow file: .github/workflows/ci.yml#L12",
            "Workflow file loaded",
        ),
        (
            "actionlint_report",
            "ci.yaml:3:5: unexpected key \"job\" for \"workflow\" section [syntax-check]",
            "ci.yaml:3:5: note",
        ),
        (
            "action_resolution",
            "Error: Unable to resolve action `actions/chekout@v4`, repository not found",
            "Download action repository 'actions/checkout@v4'",
        ),
        (
            "shell_command_not_found",
            "./build.sh: line 3: jq: command not found",
            "command found",
        ),
        (
            "python_uncaught_exception",
            "RuntimeError: boom",
            "  raise RuntimeError(\"boom\")",
        ),
        (
            "script_lifecycle_failed",
            "npm ERR! code ELIFECYCLE",
            "npm notice",
        ),
        (
            "disk_full",
            "OSError: [Errno 28] No space left on device",
            "Space left on device: 12 GB",
        ),
        (
            "exit_code_generic",
            "##[error]Process completed with exit code 1.",
            "Process completed with exit code 0.",
        ),
    ];

    #[test]
    fn every_builtin_pattern_has_a_matching_example_and_a_near_miss() {
        let c = Catalogue::builtin();
        for p in c.patterns() {
            let (_, yes, no) = EXAMPLES
                .iter()
                .find(|(id, _, _)| *id == p.id)
                .unwrap_or_else(|| panic!("no example for pattern {}", p.id));
            assert!(
                p.regex.is_match(yes.as_bytes()),
                "{} does not match {yes:?}",
                p.id
            );
            assert!(
                !p.regex.is_match(no.as_bytes()),
                "{} matches near miss {no:?}",
                p.id
            );
            // The combined matcher finds the line too.
            let m = c.matcher().unwrap();
            assert!(m.combined.is_match(yes.as_bytes()), "{}", p.id);
            let hits: Vec<usize> = m.set.matches(yes.as_bytes()).into_iter().collect();
            let idx = c.patterns().iter().position(|q| q.id == p.id).unwrap();
            assert!(hits.contains(&idx), "{}", p.id);
        }
        for (id, _, _) in EXAMPLES {
            assert!(c.get(id).is_some(), "example for unknown pattern {id}");
        }
    }

    #[test]
    fn capture_refs_parse() {
        assert_eq!(capture_refs("$1-$2 $$3 $x $"), vec![1, 2]);
        assert!(capture_refs("plain").is_empty());
    }
}
