//! Pure failure classification: a job log (and optional job API data) in, ranked findings out.
//!
//! No I/O, no clock: the same input always gives the same [`Classification`].
//!
//! # Input
//! `log` is a raw GitHub Actions job log: each line may start with a timestamp
//! (`2024-01-02T03:04:05.1234567Z `), may carry ANSI escape sequences and may end in CR.
//! Every line is compared in its normalized form ([`normalize_line`]): leading BOM and
//! timestamps, ANSI sequences and trailing CRs removed. Line numbers in findings are
//! 1-based numbers of lines in the raw log (`\n`-separated); 0 means "not from the log"
//! (from [`JobContext`]).
//!
//! # Matching (one pass)
//! The log is cut into chunks of about 1 MiB at line ends. Each chunk is normalized into a
//! reused buffer (lines keep their numbers) and searched with one combined regex of all
//! patterns (`(?:p0)|(?:p1)|...`), which skips over lines no pattern can match. For each
//! line where the combined regex finds a match, a `RegexSet` of all patterns tells which
//! patterns match that line; the search then resumes at the next line. Nothing is
//! allocated per line.
//!
//! # Scoring
//! A matched line scores `weight × position × marker` for each pattern it matches:
//! - `weight`: the pattern's `weight` (default 1.0);
//! - `position`: `0.5 + 0.5 × offset / len` where `offset` is the byte offset of the line's
//!   start in the raw log and `len` the log's length: the last lines weigh up to twice the
//!   first ones, because the cause of a failure is usually printed near the end;
//! - `marker`: 1.5 when the normalized line starts with `##[error]`, 0.5 when it starts
//!   with `##[warning]`, else 1.0.
//!
//! Job annotations ([`JobContext::annotations`]) are matched too and score
//! `weight × 1.0 × 1.5` with line 0. For each issue type only its best-scoring line is kept
//! (a later line wins a tie); `count` says how many lines matched the type. When
//! [`JobContext::step_name`] hints at a class (e.g. "Run tests" → `test_failure`, "Lint" →
//! `lint_failure`), that class's score is multiplied by 1.25.
//!
//! # Verdict
//! `script_error` (a generic failed script or exit code) and `cancelled` are fallback
//! classes; every other class is a *specific cause*. The first finding is the primary
//! verdict, chosen in this order:
//! 1. job conclusion `timed_out` → `timeout` (synthesized from the conclusion, at the
//!    cancellation line if any, when no line matched); the `cancelled` finding is dropped
//!    since the timeout explains it;
//! 2. job conclusion `cancelled` → `runner_lost` if found (a lost runner also cancels),
//!    else `cancelled` (synthesized when no line matched);
//! 3. otherwise, if a `cancelled` line was found: the best-scoring specific cause whose
//!    first matching line is not after the first cancellation line (annotations, line 0,
//!    count as before), else `cancelled` (errors printed after a cancellation are its
//!    consequences);
//! 4. otherwise the best-scoring specific cause, else `script_error`, else `unknown`.
//!
//! The other findings follow: specific causes by score, then `cancelled`, then
//! `script_error`. At most one finding per issue type. When nothing matches, the result is
//! exactly one `unknown` finding of severity `low`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use memchr::memchr;
use serde::{Deserialize, Serialize};

use super::patterns::{Catalogue, FixAction, IssueType, Pattern, Severity};

/// Longest evidence text in a finding, in characters (longer lines are cut and end in "...").
pub const EVIDENCE_MAX_CHARS: usize = 300;
/// Target chunk size for the matching pass, in bytes (chunks end at line ends).
const CHUNK_BYTES: usize = 1 << 20;
/// Longest matched line kept for capture-group resolution, in bytes.
const KEEP_LINE_BYTES: usize = 64 << 10;
/// Score multiplier for lines starting with `##[error]`.
const ERROR_MARKER: f64 = 1.5;
/// Score multiplier for lines starting with `##[warning]`.
const WARNING_MARKER: f64 = 0.5;
/// Score multiplier for a class hinted at by the failed step's name.
const STEP_HINT: f64 = 1.25;
/// Pattern id of findings made from the job conclusion rather than a log line.
pub const JOB_CONCLUSION_ID: &str = "job_conclusion";

/// Job data from the GitHub API that the raw log lacks.
///
/// A timed-out job's log ends like a cancelled one (`##[error]The operation was canceled.`);
/// only the job's `conclusion` and the check run's annotations ("... has exceeded the
/// maximum execution time of N minutes") tell them apart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobContext {
    /// The job's `conclusion` as the API gives it: `failure`, `timed_out`, `cancelled`,
    /// `success`, ... (case-insensitive).
    pub conclusion: Option<String>,
    /// Messages of the check run's annotations (each matched like a log line, line 0).
    pub annotations: Vec<String>,
    /// Name of the failed step, used as a hint (see the module docs).
    pub step_name: Option<String>,
}

/// A fix resolved for one finding: the pattern's fix with `$N` replaced by the captures of
/// the matched line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FixSuggestion {
    /// What to do.
    pub action: FixAction,
    /// Resolved arguments (e.g. `package = "requests"`).
    pub args: BTreeMap<String, String>,
}

/// One failure cause found in a log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// The failure class.
    pub issue_type: IssueType,
    /// Severity of the pattern that produced the finding.
    pub severity: Severity,
    /// Whether the orchestrator may apply `fix` without a person.
    pub auto_fixable: bool,
    /// 1-based line number in the raw log; 0 when the finding comes from [`JobContext`]
    /// or nothing matched.
    pub line: usize,
    /// The normalized matched line, at most [`EVIDENCE_MAX_CHARS`] characters (longer lines
    /// are cut and end in "..."); empty for `unknown`.
    pub evidence: String,
    /// What to do about it, for people.
    pub fix_description: String,
    /// Id of the pattern that matched ([`JOB_CONCLUSION_ID`] for findings made from the job
    /// conclusion, empty for `unknown`).
    pub pattern_id: String,
    /// Score of the best line (see the module docs); 0 for `unknown`.
    pub score: f64,
    /// Number of log lines (and annotations) that matched this issue type.
    pub count: usize,
    /// The pattern's fix with captures filled in, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<FixSuggestion>,
}

/// The result of [`classify`]: never empty; `issues[0]` is the verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Classification {
    /// The primary finding first, then the other matched issue types (one each).
    pub issues: Vec<Finding>,
}

impl Classification {
    /// The primary verdict.
    pub fn primary(&self) -> &Finding {
        &self.issues[0]
    }

    /// The primary verdict's class.
    pub fn primary_type(&self) -> IssueType {
        self.primary().issue_type
    }
}

/// Strips one log line for matching: a leading UTF-8 BOM and GitHub timestamps
/// (`2024-01-02T03:04:05.1234567Z`, each with one following space if any), ANSI escape
/// sequences (CSI such as `\x1b[31m`, OSC, and two-byte escapes) and trailing CRs.
///
/// Borrows when only a prefix/suffix is cut; allocates only when the line contains ESC.
/// Idempotent: `normalize_line(&normalize_line(x)) == normalize_line(x)`.
pub fn normalize_line(raw: &str) -> Cow<'_, str> {
    let bytes = raw.as_bytes();
    if memchr(0x1b, bytes).is_none() {
        let (a, b) = trim_bounds(bytes);
        // Only ASCII bytes and the 3-byte BOM are cut, so `a..b` are char boundaries.
        return Cow::Borrowed(&raw[a..b]);
    }
    let mut out = Vec::with_capacity(bytes.len());
    normalize_into(bytes, &mut out);
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

/// Bounds of `s` without trailing CRs and leading BOM/timestamps (`s` has no ESC).
fn trim_bounds(s: &[u8]) -> (usize, usize) {
    let mut end = s.len();
    while end > 0 && s[end - 1] == b'\r' {
        end -= 1;
    }
    let mut start = 0;
    loop {
        let rest = &s[start..end];
        if rest.starts_with(b"\xEF\xBB\xBF") {
            start += 3;
        } else if let Some(n) = timestamp_len(rest) {
            start += n;
        } else {
            break;
        }
    }
    (start, end)
}

/// Length of a leading `YYYY-MM-DDTHH:MM:SS[.fff...]Z` plus one space if present.
fn timestamp_len(s: &[u8]) -> Option<usize> {
    const SHAPE: &[u8; 19] = b"dddd-dd-ddTdd:dd:dd";
    if s.len() < 20 {
        return None;
    }
    for (i, &c) in SHAPE.iter().enumerate() {
        let ok = if c == b'd' {
            s[i].is_ascii_digit()
        } else {
            s[i] == c
        };
        if !ok {
            return None;
        }
    }
    let mut i = 19;
    if s[i] == b'.' {
        i += 1;
        let digits = s[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        i += digits;
    }
    if s.get(i) != Some(&b'Z') {
        return None;
    }
    i += 1;
    if s.get(i) == Some(&b' ') {
        i += 1;
    }
    Some(i)
}

/// Appends the normalized form of `line` (no newline) to `out`.
fn normalize_into(line: &[u8], out: &mut Vec<u8>) {
    if memchr(0x1b, line).is_none() {
        let (a, b) = trim_bounds(line);
        out.extend_from_slice(&line[a..b]);
        return;
    }
    let start = out.len();
    strip_ansi_into(line, out);
    let (a, b) = trim_bounds(&out[start..]);
    out.truncate(start + b);
    if a > 0 {
        out.drain(start..start + a);
    }
}

/// Appends `line` without its escape sequences. Only ASCII bytes of escape sequences are
/// consumed (OSC/DCS strings up to an ASCII terminator), so UTF-8 stays valid.
fn strip_ansi_into(line: &[u8], out: &mut Vec<u8>) {
    let n = line.len();
    let mut i = 0;
    while let Some(off) = memchr(0x1b, &line[i..]) {
        out.extend_from_slice(&line[i..i + off]);
        let mut j = i + off + 1;
        match line.get(j).copied() {
            None => {}
            Some(b'[') => {
                j += 1;
                while j < n && (0x30..=0x3f).contains(&line[j]) {
                    j += 1;
                }
                while j < n && (0x20..=0x2f).contains(&line[j]) {
                    j += 1;
                }
                if j < n && (0x40..=0x7e).contains(&line[j]) {
                    j += 1;
                }
            }
            Some(b']' | b'P' | b'X' | b'^' | b'_') => {
                j += 1;
                while j < n {
                    match line[j] {
                        0x07 => {
                            j += 1;
                            break;
                        }
                        0x1b => {
                            if line.get(j + 1) == Some(&b'\\') {
                                j += 2;
                            }
                            break;
                        }
                        _ => j += 1,
                    }
                }
            }
            Some(c) if (0x20..=0x2f).contains(&c) => {
                j += 1;
                while j < n && (0x20..=0x2f).contains(&line[j]) {
                    j += 1;
                }
                if j < n && (0x30..=0x7e).contains(&line[j]) {
                    j += 1;
                }
            }
            Some(c) if (0x30..=0x7e).contains(&c) => j += 1,
            Some(_) => {}
        }
        i = j;
    }
    out.extend_from_slice(&line[i..]);
}

/// Best line so far for one issue type.
#[derive(Debug)]
struct Best {
    pattern: usize,
    score: f64,
    line: usize,
    first_line: usize,
    last_line: usize,
    count: usize,
    text: Vec<u8>,
}

/// Per-class accumulator for one classification.
struct Acc {
    best: Vec<Option<Best>>,
    hits: Vec<bool>,
}

impl Acc {
    fn new(patterns: usize) -> Acc {
        Acc {
            best: (0..IssueType::ALL.len()).map(|_| None).collect(),
            hits: vec![false; patterns],
        }
    }

    /// Records every pattern matching `line` (normalized) at raw line number `line_no`.
    fn record_line(
        &mut self,
        cat: &Catalogue,
        set: &regex::bytes::RegexSet,
        line: &[u8],
        line_no: usize,
        position: f64,
    ) {
        self.hits.iter_mut().for_each(|h| *h = false);
        if !set.matches_read_at(&mut self.hits, line, 0) {
            return;
        }
        let marker = if line.starts_with(b"##[error]") {
            ERROR_MARKER
        } else if line.starts_with(b"##[warning]") {
            WARNING_MARKER
        } else {
            1.0
        };
        for (pi, p) in cat.patterns().iter().enumerate() {
            if !self.hits[pi] {
                continue;
            }
            let score = p.weight * position * marker;
            let slot = &mut self.best[p.issue_type.index()];
            match slot {
                None => {
                    *slot = Some(Best {
                        pattern: pi,
                        score,
                        line: line_no,
                        first_line: line_no,
                        last_line: line_no,
                        count: 1,
                        text: keep(line),
                    });
                }
                Some(b) => {
                    if b.last_line != line_no {
                        b.count += 1;
                        b.last_line = line_no;
                    }
                    b.first_line = b.first_line.min(line_no);
                    if score >= b.score {
                        b.score = score;
                        b.pattern = pi;
                        b.line = line_no;
                        b.text.clear();
                        b.text
                            .extend_from_slice(&line[..line.len().min(KEEP_LINE_BYTES)]);
                    }
                }
            }
        }
    }
}

fn keep(line: &[u8]) -> Vec<u8> {
    line[..line.len().min(KEEP_LINE_BYTES)].to_vec()
}

/// Classifies one job log. Never panics; always returns at least one finding.
///
/// `job` adds API data (conclusion, annotations, step name) when the caller has it. See the
/// module docs for matching, scoring and how the verdict is chosen.
pub fn classify(cat: &Catalogue, log: &str, job: Option<&JobContext>) -> Classification {
    let Some(matcher) = cat.matcher() else {
        return Classification {
            issues: vec![unknown_finding()],
        };
    };
    let mut acc = Acc::new(cat.len());
    scan_log(cat, matcher, log.as_bytes(), &mut acc);
    if let Some(job) = job {
        let mut buf = Vec::new();
        for a in &job.annotations {
            for part in a.as_bytes().split(|&b| b == b'\n') {
                buf.clear();
                normalize_into(part, &mut buf);
                // Annotations are failure summaries: weigh them like `##[error]` lines at
                // the end of the log (record_line adds the marker itself when present).
                let factor = if buf.starts_with(b"##[error]") {
                    1.0
                } else {
                    ERROR_MARKER
                };
                acc.record_line(cat, &matcher.set, &buf, 0, factor);
            }
        }
    }
    finish(cat, acc, job)
}

fn scan_log(cat: &Catalogue, matcher: &super::patterns::Matcher, raw: &[u8], acc: &mut Acc) {
    let len = raw.len().max(1) as f64;
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK_BYTES.min(raw.len()) + 1024);
    // (start in `buf`, start in `raw`) of each line of the current chunk.
    let mut lines: Vec<(usize, usize)> = Vec::new();
    let mut lines_before = 0usize;
    let mut pos = 0usize;
    while pos < raw.len() {
        let mut end = (pos + CHUNK_BYTES).min(raw.len());
        if end < raw.len() {
            end = match memchr(b'\n', &raw[end..]) {
                Some(k) => end + k + 1,
                None => raw.len(),
            };
        }
        buf.clear();
        lines.clear();
        let mut ls = pos;
        while ls < end {
            let le = memchr(b'\n', &raw[ls..end]).map_or(end, |k| ls + k);
            lines.push((buf.len(), ls));
            normalize_into(&raw[ls..le], &mut buf);
            buf.push(b'\n');
            ls = le + 1;
        }
        let mut at = 0usize;
        while at < buf.len() {
            let Some(m) = matcher.combined.find_at(&buf, at) else {
                break;
            };
            let s = m.start();
            let li = lines.partition_point(|&(b, _)| b <= s).saturating_sub(1);
            let (lb, lraw) = lines[li];
            let le = memchr(b'\n', &buf[lb..]).map_or(buf.len(), |k| lb + k);
            let position = 0.5 + 0.5 * (lraw as f64 / len);
            acc.record_line(
                cat,
                &matcher.set,
                &buf[lb..le],
                lines_before + li + 1,
                position,
            );
            at = le + 1;
        }
        lines_before += lines.len();
        pos = end;
    }
}

/// Classes that a failed step's name hints at.
fn step_hints(step: &str) -> Vec<IssueType> {
    let s = step.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| s.contains(w));
    let mut out = Vec::new();
    if has(&[
        "lint",
        "format",
        "fmt",
        "clippy",
        "flake8",
        "ruff",
        "eslint",
        "prettier",
        "mypy",
        "pre-commit",
        "black",
    ]) {
        out.push(IssueType::LintFailure);
    }
    if has(&["test", "pytest", "jest", "spec"]) {
        out.push(IssueType::TestFailure);
    }
    if has(&["build", "compile", "cmake", "make"]) {
        out.push(IssueType::CompileError);
    }
    if has(&["install", "dependenc", "deps", "npm ci", "pip", "restore"]) {
        out.push(IssueType::DependencyInstall);
    }
    if has(&["docker", "image", "container"]) {
        out.push(IssueType::DockerFailure);
    }
    if has(&["checkout", "clone", "fetch", "git "]) {
        out.push(IssueType::GitError);
    }
    if has(&["artifact"]) {
        out.push(IssueType::ArtifactMissing);
    }
    out
}

fn is_fallback(t: IssueType) -> bool {
    matches!(
        t,
        IssueType::ScriptError | IssueType::Cancelled | IssueType::Unknown
    )
}

fn fallback_rank(t: IssueType) -> u8 {
    match t {
        IssueType::Cancelled => 1,
        IssueType::ScriptError => 2,
        IssueType::Unknown => 3,
        _ => 0,
    }
}

fn finish(cat: &Catalogue, acc: Acc, job: Option<&JobContext>) -> Classification {
    let hints = job
        .and_then(|j| j.step_name.as_deref())
        .map(step_hints)
        .unwrap_or_default();
    // (finding, first_line)
    let mut found: Vec<(Finding, usize)> = Vec::new();
    for (ti, slot) in acc.best.into_iter().enumerate() {
        let Some(b) = slot else { continue };
        let p = &cat.patterns()[b.pattern];
        let mut f = finding_from(p, &b);
        if hints.contains(&IssueType::ALL[ti]) {
            f.score *= STEP_HINT;
        }
        found.push((f, b.first_line));
    }
    let conclusion = job
        .and_then(|j| j.conclusion.as_deref())
        .map(|c| c.trim().to_ascii_lowercase().replace([' ', '-'], "_"));
    let take = |found: &mut Vec<(Finding, usize)>, t: IssueType| {
        found
            .iter()
            .position(|(f, _)| f.issue_type == t)
            .map(|i| found.remove(i))
    };
    let primary: Option<(Finding, usize)> = match conclusion.as_deref() {
        Some("timed_out") => {
            let cancel = take(&mut found, IssueType::Cancelled);
            Some(take(&mut found, IssueType::Timeout).unwrap_or_else(|| {
                let (line, evidence) = cancel
                    .map(|(c, _)| (c.line, c.evidence))
                    .unwrap_or((0, "job conclusion: timed_out".to_owned()));
                (
                    synthesized(
                        IssueType::Timeout,
                        Severity::High,
                        line,
                        evidence,
                        "The job hit its time limit (timeout-minutes); speed up the slow step or raise the limit",
                    ),
                    0,
                )
            }))
        }
        Some("cancelled" | "canceled") => take(&mut found, IssueType::RunnerLost).or_else(|| {
            Some(take(&mut found, IssueType::Cancelled).unwrap_or_else(|| {
                (
                    synthesized(
                        IssueType::Cancelled,
                        Severity::Low,
                        0,
                        "job conclusion: cancelled".to_owned(),
                        "The job was cancelled (by a user, a newer run, or fail-fast); rerun if needed",
                    ),
                    0,
                )
            }))
        }),
        _ => None,
    };
    let primary = primary.or_else(|| {
        let cancel_first = found
            .iter()
            .find(|(f, _)| f.issue_type == IssueType::Cancelled)
            .map(|&(_, first)| first);
        let best_specific = |limit: Option<usize>| {
            found
                .iter()
                .enumerate()
                .filter(|(_, (f, first))| {
                    !is_fallback(f.issue_type) && limit.is_none_or(|c| *first <= c)
                })
                .max_by(|(_, (a, _)), (_, (b, _))| a.score.total_cmp(&b.score))
                .map(|(i, _)| i)
        };
        let pick = match cancel_first {
            Some(c) => best_specific(Some(c)).or_else(|| {
                found
                    .iter()
                    .position(|(f, _)| f.issue_type == IssueType::Cancelled)
            }),
            None => best_specific(None).or_else(|| {
                found
                    .iter()
                    .position(|(f, _)| f.issue_type == IssueType::ScriptError)
            }),
        };
        pick.map(|i| found.remove(i))
    });
    let Some((primary, _)) = primary else {
        return Classification {
            issues: vec![unknown_finding()],
        };
    };
    let mut rest: Vec<Finding> = found.into_iter().map(|(f, _)| f).collect();
    rest.sort_by(|a, b| {
        fallback_rank(a.issue_type)
            .cmp(&fallback_rank(b.issue_type))
            .then(b.score.total_cmp(&a.score))
    });
    let mut issues = Vec::with_capacity(rest.len() + 1);
    issues.push(primary);
    issues.extend(rest);
    Classification { issues }
}

fn finding_from(p: &Pattern, b: &Best) -> Finding {
    let fix = p.fix.as_ref().map(|t| {
        let caps = p.regex.captures(&b.text);
        let args = t
            .args
            .iter()
            .map(|(k, v)| (k.clone(), expand(v, caps.as_ref())))
            .collect();
        FixSuggestion {
            action: t.action,
            args,
        }
    });
    Finding {
        issue_type: p.issue_type,
        severity: p.severity,
        auto_fixable: p.auto_fixable,
        line: b.line,
        evidence: evidence(&b.text),
        fix_description: p.fix_description.clone(),
        pattern_id: p.id.clone(),
        score: b.score,
        count: b.count,
        fix,
    }
}

/// Replaces `$1`..`$9` with capture groups (empty when absent) and `$$` with `$`.
fn expand(template: &str, caps: Option<&regex::bytes::Captures<'_>>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        match chars.peek().copied() {
            Some('$') => {
                chars.next();
                out.push('$');
            }
            Some(d @ '1'..='9') => {
                chars.next();
                let g = d as usize - '0' as usize;
                if let Some(m) = caps.and_then(|c| c.get(g)) {
                    out.push_str(&String::from_utf8_lossy(m.as_bytes()));
                }
            }
            _ => out.push('$'),
        }
    }
    out
}

/// The line as text, cut to [`EVIDENCE_MAX_CHARS`] characters.
fn evidence(line: &[u8]) -> String {
    let s = String::from_utf8_lossy(line);
    let s = s.trim();
    match s.char_indices().nth(EVIDENCE_MAX_CHARS) {
        None => s.to_owned(),
        Some((cut, _)) => format!("{}...", &s[..cut]),
    }
}

fn synthesized(
    t: IssueType,
    severity: Severity,
    line: usize,
    evidence: String,
    fix_description: &str,
) -> Finding {
    Finding {
        issue_type: t,
        severity,
        auto_fixable: false,
        line,
        evidence,
        fix_description: fix_description.to_owned(),
        pattern_id: JOB_CONCLUSION_ID.to_owned(),
        score: 0.0,
        count: 0,
        fix: None,
    }
}

fn unknown_finding() -> Finding {
    Finding {
        issue_type: IssueType::Unknown,
        severity: Severity::Low,
        auto_fixable: false,
        line: 0,
        evidence: String::new(),
        fix_description: "No known failure pattern matched; read the last error lines of the log"
            .to_owned(),
        pattern_id: String::new(),
        score: 0.0,
        count: 0,
        fix: None,
    }
}

/// The CLI's JSON for one file: `{file, issues: [{issue_type, severity, auto_fixable, line,
/// evidence, fix_description}]}` with issues in [`Classification`] order (primary first).
pub fn render_json(file: &str, c: &Classification) -> serde_json::Value {
    let issues: Vec<serde_json::Value> = c
        .issues
        .iter()
        .map(|f| {
            serde_json::json!({
                "issue_type": f.issue_type,
                "severity": f.severity,
                "auto_fixable": f.auto_fixable,
                "line": f.line,
                "evidence": f.evidence,
                "fix_description": f.fix_description,
            })
        })
        .collect();
    serde_json::json!({ "file": file, "issues": issues })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::LazyLock;

    static CAT: LazyLock<Catalogue> = LazyLock::new(Catalogue::builtin);

    fn primary(log: &str) -> IssueType {
        classify(&CAT, log, None).primary_type()
    }

    fn assert_class(t: IssueType, line: &str) {
        let c = classify(&CAT, line, None);
        assert_eq!(
            c.primary_type(),
            t,
            "line {line:?} classified as {:?}",
            c.issues
        );
        assert_eq!(c.primary().line, 1, "{line:?}");
    }

    /// Per class: lines quoted from the dev fixtures (or actionlint's expected output for
    /// workflow errors), then synthetic variants from other tools.
    #[test]
    fn every_class_real_and_synthetic_lines() {
        use IssueType::*;
        let cases: &[(IssueType, &[&str])] = &[
            (
                DependencyInstall,
                &[
                    "2026-07-29T19:59:45.5530245Z \x1b[31mERROR: Failed to build one or more wheels\x1b[0m\x1b[31m",
                    "##[error]Your lock file does not contain a compatible set of packages. Please run composer update.",
                    "ERROR: Could not find a version that satisfies the requirement torch==9.9 (from versions: none)",
                    "npm ERR! 404 Not Found - GET https://registry.npmjs.org/left-padx - Not found",
                    "npm error code ERESOLVE",
                    "error: failed to select a version for the requirement `serde = \"^9\"`",
                    "Could not resolve all files for configuration ':app:debugCompileClasspath'.",
                    "E: Unable to locate package libfoo-dev",
                    "go: updates to go.mod needed; to update it:",
                ],
            ),
            (
                PythonImportError,
                &[
                    "2026-07-28T19:53:48.9572564Z ImportError: cannot import name 'python_constant_richcompare_impl' from 'torch._dynamo.variables.object_protocol' (/opt/x.py)",
                    "ModuleNotFoundError: No module named 'yaml'",
                    "E   ModuleNotFoundError: No module named 'foo.bar'",
                    "ImportError: libcudart.so.12: cannot open shared object file: No such file or directory",
                ],
            ),
            (
                TestFailure,
                &[
                    "2024-07-12T17:22:03.2269527Z FAILED [0.0114s] inductor/test_triton_kernels.py::KernelTests::test_triton_kernel_tracing_dynamic_True - TypeError: unhashable type: non-nested SymInt",
                    "2026-07-31T06:28:05.2272960Z nn/test_pruning 1/1 failed! Received signal: SIGBUS",
                    "FAILED tests/test_api.py::test_login - AssertionError: assert 401 == 200",
                    "tests/test_api.py::test_login FAILED                                  [ 50%]",
                    "========= 2 failed, 10 passed in 1.23s =========",
                    "--- FAIL: TestParse (0.00s)",
                    "test result: FAILED. 3 passed; 1 failed; 0 ignored",
                    "Tests:       2 failed, 10 passed, 12 total",
                    "  3 failing",
                    "Tests run: 12, Failures: 2, Errors: 0, Skipped: 0",
                ],
            ),
            (
                CompileError,
                &[
                    "2026-07-29T10:43:38.1148809Z C:\\actions-runner\\_work\\p\\src\\XpuptiActivityApi.cpp(253): error C2065: 'PTI_VIEW_COMMUNICATION': undeclared identifier",
                    "2026-07-30T13:29:28.8216179Z ninja: build stopped: subcommand failed.",
                    "error[E0425]: cannot find value `x` in this scope",
                    "error: could not compile `flotilla` (lib) due to 2 previous errors",
                    "src/main.c:10:5: error: 'foo' undeclared (first use in this function)",
                    "./main.go:12:2: undefined: Foo",
                    "src/app.ts(3,7): error TS2322: Type 'string' is not assignable to type 'number'.",
                    "/usr/bin/ld: main.o: undefined reference to `frobnicate'",
                ],
            ),
            (
                LintFailure,
                &[
                    "2026-07-28T19:45:58.8164948Z >>> General linter failure:",
                    "would reformat src/app.py",
                    "Oh no! \u{1f4a5} \u{1f494} \u{1f4a5} 3 files would be reformatted.",
                    "\u{2716} 3 problems (3 errors, 0 warnings)",
                    "src/x.py:1:1: F401 'os' imported but unused",
                    "Diff in /home/runner/work/x/src/lib.rs at line 3:",
                    "[warn] Code style issues found in 2 files. Run Prettier with --write to fix.",
                    "black....................................................................Failed",
                ],
            ),
            (
                Timeout,
                &[
                    "2026-07-30T11:29:42.0798678Z Got exit code 124",
                    "##[error]The job running on runner GitHub Actions 2 has exceeded the maximum execution time of 360 minutes.",
                    "##[error]The action 'Run tests' has timed out after 30 minutes.",
                    "panic: test timed out after 10m0s",
                    "+++++++++++++++++++++++++++++++++++ Timeout ++++++++++++++++++++++++++++++++++++",
                ],
            ),
            (
                Cancelled,
                &[
                    "2026-07-28T23:09:28.2898610Z ##[error]The operation was canceled.",
                    "##[error]The operation was cancelled.",
                    "Canceling since a higher priority waiting request for 'ci-refs/heads/main' exists",
                ],
            ),
            (
                OutOfMemory,
                &[
                    "2026-07-30T03:36:29.7354318Z torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 4.39 GiB.",
                    "##[error]Process completed with exit code 137.",
                    "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
                    "c++: fatal error: Killed signal terminated program cc1plus",
                ],
            ),
            (
                DockerFailure,
                &[
                    "2026-07-29T09:10:41.8997929Z Error response from daemon: manifest for python:3.14t not found: manifest unknown: manifest unknown",
                    "ERROR: failed to solve: process \"/bin/sh -c make\" did not complete successfully: exit code: 2",
                    "failed to build: exit status 1",
                    "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?",
                ],
            ),
            (
                PermissionDenied,
                &[
                    "2026-07-31T01:17:30.9756718Z ##[error]Credentials could not be loaded, please check your action inputs: Could not load credentials from any providers",
                    "##[error]User: arn:aws:sts::1:assumed-role/ro/x is not authorized to perform: s3:PutObject on resource: \"arn:aws:s3:::b/k\"",
                    "remote: Permission to octo/repo.git denied to github-actions[bot].",
                    "bash: ./deploy.sh: Permission denied",
                    "npm ERR! code E403",
                    "Error: Resource not accessible by integration",
                ],
            ),
            (
                NetworkError,
                &[
                    "2026-07-29T17:45:22.4792510Z   Caused by: dns error",
                    "requests.exceptions.ReadTimeout: HTTPSConnectionPool(host='example.org', port=443): Read timed out. (read timeout=10)",
                    "fatal: unable to access 'https://github.com/a/b/': Could not resolve host: github.com",
                    "npm ERR! code ECONNRESET",
                    "curl: (28) Operation timed out after 300000 milliseconds with 0 bytes received",
                    "TimeoutError: The read operation timed out",
                    "dial tcp 10.0.0.1:443: i/o timeout",
                ],
            ),
            (
                RateLimited,
                &[
                    "\t\"message\": \"API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help\",",
                    "HTTP 429 Too Many Requests",
                    "Error response from daemon: toomanyrequests: You have reached your pull rate limit.",
                    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                ],
            ),
            (
                GitError,
                &[
                    "2026-07-29T04:35:59.6896036Z ##[error]fatal: couldn't find remote ref refs/tags/ciflow/b200/1",
                    "error: failed to push some refs to 'https://github.com/o/r'",
                    "CONFLICT (content): Merge conflict in src/lib.rs",
                    "##[error]The process '/usr/bin/git' failed with exit code 128",
                ],
            ),
            (
                RunnerLost,
                &[
                    "2026-07-29T18:08:10.2373950Z ##[error]The runner has received a shutdown signal. This can happen when the runner service is stopped, or a manually started runner is canceled.",
                    "##[error]The self-hosted runner: gpu-7 lost communication with the server. Verify the machine is running.",
                ],
            ),
            (
                ArtifactMissing,
                &[
                    "2026-07-29T23:48:10.0849640Z ##[error]No files were found with the provided path: /__w/_temp/out/. No artifacts will be uploaded.",
                    "##[error]Unable to find any artifacts for the associated workflow",
                    "Error: Unable to download artifact(s): Artifact not found for name: wheels",
                ],
            ),
            (
                ScriptError,
                &[
                    "2026-07-28T23:19:32.6026261Z ##[error]Process completed with exit code 1.",
                    "./build.sh: line 3: jq: command not found",
                    "RuntimeError: something went wrong in the release script",
                ],
            ),
            (
                WorkflowSyntaxError,
                &[
                    "test.yaml:11:19: expecting a single ${{...}} expression or boolean literal \"true\" or \"false\", but found plain text node [syntax-check]",
                    "Invalid workflow file: .github/workflows/ci.yml#L12",
                    "The workflow is not valid. .github/workflows/ci.yml (Line: 12, Col: 7): Unexpected value 'runs_on'",
                    "##[error]Can't find 'action.yml', 'action.yaml' or 'Dockerfile' under '/home/runner/work/x/x/.github/actions/setup'.",
                ],
            ),
        ];
        let mut covered = Vec::new();
        for (t, lines) in cases {
            covered.push(*t);
            for line in *lines {
                assert_class(*t, line);
            }
        }
        for t in IssueType::ALL {
            assert!(
                t == IssueType::Unknown || covered.contains(&t),
                "no test lines for {t}"
            );
        }
    }

    #[test]
    fn negative_lines_stay_unknown() {
        for line in [
            "Successfully installed pyyaml-6.0.2",
            "ERROR: pip's dependency resolver does not currently take into account all the packages that are installed.",
            "No files were found with the provided path: ./**/core.[1-9]*. No artifacts will be uploaded.",
            "storage write check failed: PermissionDenied (permanent) at write => S3Error { code: \"AccessDenied\" }",
            "Compilation failures                   4",
            "Cache timeouts                         0",
            "test_foo.py::test_bar PASSED [0.01s] [ 50%]",
            "sudo: setrlimit(RLIMIT_STACK): Operation not permitted",
            "Runner name: 'i-0fc893cd09f13bc2a'",
            "=========== 12 passed in 3.2s ===========",
            "1182 passed, 1523 skipped, 24 xfailed in 497.69s",
            "warning: unused variable `x`",
            "x-ratelimit-remaining: 4999",
            "Found 0 errors.",
            "  0 failing",
            "Tests run: 5, Failures: 0, Errors: 0, Skipped: 0",
            "Executing the custom container implementation failed. Please contact your self hosted runner administrator.",
            "Node 20 is being deprecated. This workflow is running with Node 24 by default.",
            "Your PR is 3174 LOC which is more than the 2000 maximum",
            "##[group]Run actions/checkout@v4",
            "Download action repository 'actions/checkout@v4' (SHA:abc)",
            "The operation was canceled by the user, continuing", // not the runner's own line
        ] {
            let c = classify(&CAT, line, None);
            assert_eq!(
                c.primary_type(),
                IssueType::Unknown,
                "{line:?} -> {:?}",
                c.issues
            );
            assert_eq!(c.issues.len(), 1);
        }
    }

    #[test]
    fn fixes_resolve_capture_groups() {
        let c = classify(
            &CAT,
            "E   ModuleNotFoundError: No module named 'foo.bar'",
            None,
        );
        let f = c.primary();
        assert!(f.auto_fixable);
        let fix = f.fix.as_ref().expect("fix");
        assert_eq!(fix.action, FixAction::AddDependency);
        assert_eq!(fix.args["package"], "foo");
        assert_eq!(fix.args["ecosystem"], "pip");

        let c = classify(
            &CAT,
            "npm error 404 Not Found - GET https://registry.npmjs.org/@scope%2fpkg - Not found",
            None,
        );
        assert_eq!(c.primary().pattern_id, "npm_dependency_error");
        assert_eq!(
            c.primary().fix.as_ref().unwrap().args["package"],
            "@scope%2fpkg"
        );

        let c = classify(&CAT, "would reformat src/app.py", None);
        let fix = c.primary().fix.as_ref().unwrap();
        assert_eq!(fix.action, FixAction::RunFormatter);
        assert_eq!(fix.args["path"], "src/app.py");
        let c = classify(&CAT, "Would reformat: src/b.py", None);
        assert_eq!(c.primary().fix.as_ref().unwrap().args["path"], "src/b.py");

        // rustfmt names the file in both of its formats (old `at line N`, new `:N`).
        for (line, want) in [
            (
                "Diff in /home/runner/work/x/x/src/lib.rs at line 3:",
                "/home/runner/work/x/x/src/lib.rs",
            ),
            (
                "Diff in /home/runner/work/x/x/src/main.rs:12:",
                "/home/runner/work/x/x/src/main.rs",
            ),
            (r"Diff in D:\a\x\x\src\x.rs:1:", r"D:\a\x\x\src\x.rs"),
        ] {
            let c = classify(&CAT, line, None);
            assert_eq!(c.primary().pattern_id, "rustfmt_check", "{line}");
            let fix = c.primary().fix.as_ref().unwrap();
            assert_eq!(fix.args["tool"], "cargo fmt");
            assert_eq!(fix.args["path"], want, "{line}");
        }
        assert_eq!(expand("$$1 $9 $", None), "$1  $");
    }

    #[test]
    fn normalize_strips_timestamps_ansi_bom_and_cr() {
        let cases = [
            ("2024-01-02T03:04:05.1234567Z hello", "hello"),
            ("2024-01-02T03:04:05Z hi", "hi"),
            ("2024-01-02T03:04:05.1234567Z", ""),
            ("2024-01-02T03:04:05.1234567Z\r", ""),
            ("2026-02-22T14:21:01.4371312Z Problem 1\r", "Problem 1"),
            (
                "\u{feff}2026-07-29T18:08:09.3849214Z Current runner version: '2.336.0'",
                "Current runner version: '2.336.0'",
            ),
            (
                "2026-07-28T23:19:32.4966348Z \x1b[36;1mbash .github/scripts/x.sh\x1b[0m",
                "bash .github/scripts/x.sh",
            ),
            (
                "  \x1b[41m\x1b[1mError\x1b[0m (LINT) \x1b[4mLinter failed\x1b[0m",
                "  Error (LINT) Linter failed",
            ),
            (
                "Loading:   3%|\u{258e}   | 4/146\x1b[A",
                "Loading:   3%|\u{258e}   | 4/146",
            ),
            ("\x1b]8;;http://x\x07link\x1b]8;;\x07", "link"),
            ("\x1b[0m\x1b[?25hFailed to build x", "Failed to build x"),
            ("\x1b(Bplain\x1b=", "plain"),
            ("abc\x1b", "abc"),
            ("\x1b[31m\u{2713} ok\x1b[0m", "\u{2713} ok"),
            ("2024-01-02T03:04:05Z 2024-01-02T03:04:06Z nested", "nested"),
            ("\x1b[0m2024-01-02T03:04:05Z after-ansi", "after-ansi"),
            (
                "2024-01-02 03:04:05 not github",
                "2024-01-02 03:04:05 not github",
            ),
            (
                "2024-01-02T03:04:05.Z bad fraction",
                "2024-01-02T03:04:05.Z bad fraction",
            ),
            ("no escapes here", "no escapes here"),
            ("", ""),
        ];
        for (raw, want) in cases {
            let got = normalize_line(raw);
            assert_eq!(got, want, "{raw:?}");
            assert_eq!(normalize_line(&got), got, "not idempotent on {raw:?}");
        }
        assert!(matches!(
            normalize_line("2024-01-02T03:04:05Z x"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(normalize_line("\x1b[1mx"), Cow::Owned(_)));
    }

    #[test]
    fn evidence_is_normalized_and_truncated() {
        let long = format!(
            "2024-01-02T03:04:05Z \x1b[31mCould not resolve host: github.com {}\x1b[0m",
            "é".repeat(1000)
        );
        let c = classify(&CAT, &long, None);
        let f = c.primary();
        assert_eq!(f.issue_type, IssueType::NetworkError);
        assert!(f.evidence.starts_with("Could not resolve host"));
        assert!(f.evidence.ends_with("..."));
        assert_eq!(f.evidence.chars().count(), EVIDENCE_MAX_CHARS + 3);
    }

    #[test]
    fn line_numbers_count_raw_lines_across_chunks() {
        // ~3 MiB: crosses several chunk boundaries.
        let filler =
            "2024-01-02T03:04:05.1234567Z \x1b[32mcompiling something quite ordinary\x1b[0m\r\n";
        let mut log = String::new();
        let mut marks = Vec::new();
        for i in 1..=60_000usize {
            if i % 9_973 == 0 || i == 1 || i == 60_000 {
                log.push_str("2024-01-02T03:04:05Z FAILED tests/t.py::test_x - boom\n");
                marks.push(i);
            } else {
                log.push_str(filler);
            }
        }
        assert!(log.len() > 3 * CHUNK_BYTES);
        let c = classify(&CAT, &log, None);
        let f = c.primary();
        assert_eq!(f.issue_type, IssueType::TestFailure);
        assert_eq!(f.line, 60_000, "best line is the last one");
        assert_eq!(f.count, marks.len());
        // A single mark: its exact number is reported.
        for &at in &[1usize, 14_169, 14_170, 28_339, 59_999, 60_000] {
            let mut log = String::new();
            for i in 1..=60_000usize {
                log.push_str(if i == at {
                    "##[error]fatal: couldn't find remote ref refs/heads/x\n"
                } else {
                    filler
                });
            }
            let c = classify(&CAT, &log, None);
            assert_eq!(c.primary_type(), IssueType::GitError);
            assert_eq!(c.primary().line, at);
        }
    }

    #[test]
    fn matches_never_span_lines() {
        let mut cat = Catalogue::empty();
        cat.extend_from_toml(
            "[[pattern]]\nid = \"span\"\nissue_type = \"network_error\"\nregex = 'foo\\s+bar'\nseverity = \"low\"\nauto_fixable = false\nfix_description = \"d\"\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(
            classify(&cat, "foo\nbar\n", None).primary_type(),
            IssueType::Unknown
        );
        assert_eq!(classify(&cat, "x\nfoo  bar\n", None).primary().line, 2);
    }

    const CANCEL_LOG: &str = "2026-07-28T22:57:42.4533520Z Successfully installed delocate-0.10.4\n\
        2026-07-28T23:09:28.2898610Z ##[error]The operation was canceled.\n\
        2026-07-28T23:09:28.2993230Z Post job cleanup.\n";

    #[test]
    fn timeout_vs_cancelled_from_job_context() {
        assert_eq!(primary(CANCEL_LOG), IssueType::Cancelled);

        let timed_out = JobContext {
            conclusion: Some("timed_out".into()),
            ..JobContext::default()
        };
        let c = classify(&CAT, CANCEL_LOG, Some(&timed_out));
        assert_eq!(c.primary_type(), IssueType::Timeout);
        assert_eq!(c.primary().line, 2, "points at the cancellation line");
        assert_eq!(c.primary().pattern_id, JOB_CONCLUSION_ID);
        assert!(
            c.issues
                .iter()
                .all(|f| f.issue_type != IssueType::Cancelled)
        );

        let annotated = JobContext {
            conclusion: None,
            annotations: vec![
                "The job running on runner ip-10-0-0-1 has exceeded the maximum execution time of 240 minutes.".into(),
                "The operation was canceled.".into(),
            ],
            step_name: None,
        };
        let c = classify(&CAT, CANCEL_LOG, Some(&annotated));
        assert_eq!(c.primary_type(), IssueType::Timeout);
        assert_eq!(c.primary().line, 0);
        assert_eq!(c.primary().pattern_id, "job_max_execution_time");

        let cancelled = JobContext {
            conclusion: Some("cancelled".into()),
            ..JobContext::default()
        };
        let c = classify(&CAT, CANCEL_LOG, Some(&cancelled));
        assert_eq!(c.primary_type(), IssueType::Cancelled);
        // Even with a test failure earlier, a cancelled job is reported as cancelled...
        let log = format!("FAILED t.py::x - e\n{CANCEL_LOG}");
        assert_eq!(
            classify(&CAT, &log, Some(&cancelled)).primary_type(),
            IssueType::Cancelled
        );
        // ...unless the runner went away.
        let lost = "##[error]The runner has received a shutdown signal.\n##[error]The operation was canceled.\n";
        assert_eq!(
            classify(&CAT, lost, Some(&cancelled)).primary_type(),
            IssueType::RunnerLost
        );
        // A cancelled conclusion with an empty log still says cancelled.
        let c = classify(&CAT, "", Some(&cancelled));
        assert_eq!(c.primary_type(), IssueType::Cancelled);
        assert_eq!(c.issues.len(), 1);
        // Conclusion spelling is lenient; `failure` leaves the log to decide.
        let c = classify(
            &CAT,
            CANCEL_LOG,
            Some(&JobContext {
                conclusion: Some(" Timed_Out ".into()),
                ..JobContext::default()
            }),
        );
        assert_eq!(c.primary_type(), IssueType::Timeout);
        let failure = JobContext {
            conclusion: Some("failure".into()),
            ..JobContext::default()
        };
        assert_eq!(
            classify(&CAT, CANCEL_LOG, Some(&failure)).primary_type(),
            IssueType::Cancelled
        );
    }

    #[test]
    fn cancelled_loses_only_to_earlier_causes() {
        let before = "FAILED tests/x.py::t - assert 0\n##[error]The operation was canceled.\n";
        let c = classify(&CAT, before, None);
        assert_eq!(c.primary_type(), IssueType::TestFailure);
        assert_eq!(c.issues[1].issue_type, IssueType::Cancelled);
        let after = "##[error]The operation was canceled.\n##[error]No files were found with the provided path: dist. No artifacts will be uploaded.\n";
        let c = classify(&CAT, after, None);
        assert_eq!(c.primary_type(), IssueType::Cancelled);
        assert_eq!(c.issues[1].issue_type, IssueType::ArtifactMissing);
        // Runner lost first, then the task cancellation it causes.
        let lost =
            "##[error]The runner has received a shutdown signal.\n##[error]A task was canceled.\n";
        assert_eq!(primary(lost), IssueType::RunnerLost);
    }

    #[test]
    fn generic_script_error_loses_to_any_specific_cause() {
        let mut cat = Catalogue::builtin();
        cat.extend_from_toml(
            "[[pattern]]\nid = \"faint\"\nissue_type = \"lint_failure\"\nregex = 'faint hint'\nseverity = \"low\"\nauto_fixable = false\nfix_description = \"d\"\nweight = 0.01\n",
            "t.toml",
        )
        .unwrap();
        let mut log = String::from("faint hint\n");
        for _ in 0..1000 {
            log.push_str("ordinary output\n");
        }
        log.push_str("##[error]Process completed with exit code 1.\n");
        let c = classify(&cat, &log, None);
        assert_eq!(c.primary_type(), IssueType::LintFailure);
        assert_eq!(c.issues.last().unwrap().issue_type, IssueType::ScriptError);
        assert!(
            c.issues[1].score > c.issues[0].score,
            "lower score still wins"
        );
        // Alone, the exit line is a script_error.
        assert_eq!(
            primary("##[error]Process completed with exit code 2."),
            IssueType::ScriptError
        );
    }

    #[test]
    fn later_and_error_marked_lines_score_higher() {
        let log = "Could not resolve host: a\nfiller\nfiller\nCould not resolve host: b\n";
        let c = classify(&CAT, log, None);
        assert_eq!(c.primary().line, 4);
        assert_eq!(c.primary().count, 2);
        // Position ranges over 0.5..1.0; `##[error]` multiplies by 1.5, `##[warning]` by 0.5.
        let filler = "filler\n".repeat(60);
        let log = format!(
            "{filler}{filler}{filler}##[error]Could not resolve host: a\n{filler}Could not resolve host: b\n"
        );
        assert_eq!(classify(&CAT, &log, None).primary().line, 181);
        let log =
            format!("Could not resolve host: a\n{filler}##[warning]Could not resolve host: b\n");
        assert_eq!(classify(&CAT, &log, None).primary().line, 1);
    }

    #[test]
    fn one_finding_per_type_ranked() {
        let log = "FAILED a.py::x - e\nFAILED b.py::y - e\nCould not resolve host: h\n##[error]Process completed with exit code 1.\n";
        let c = classify(&CAT, log, None);
        let types: Vec<IssueType> = c.issues.iter().map(|f| f.issue_type).collect();
        let mut dedup = types.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), types.len(), "{types:?}");
        assert_eq!(*types.last().unwrap(), IssueType::ScriptError);
        assert_eq!(
            c.issues
                .iter()
                .find(|f| f.issue_type == IssueType::TestFailure)
                .unwrap()
                .count,
            2
        );
    }

    #[test]
    fn step_name_hint_boosts_its_class() {
        let log = "would reformat a.py\nFAILED t.py::x - e\n";
        let plain = classify(&CAT, log, None);
        let hinted = classify(
            &CAT,
            log,
            Some(&JobContext {
                step_name: Some("Lint with black".into()),
                ..JobContext::default()
            }),
        );
        let score =
            |c: &Classification, t| c.issues.iter().find(|f| f.issue_type == t).unwrap().score;
        let (a, b) = (
            score(&plain, IssueType::LintFailure),
            score(&hinted, IssueType::LintFailure),
        );
        assert!((b - a * STEP_HINT).abs() < 1e-9);
        assert_eq!(
            score(&plain, IssueType::TestFailure),
            score(&hinted, IssueType::TestFailure)
        );
    }

    #[test]
    fn unknown_inputs_never_panic() {
        for log in [
            "",
            "\n",
            "\n\n\r\n",
            "\x1b",
            "\x1b[",
            "\u{feff}",
            "plain words only",
        ] {
            let c = classify(&CAT, log, None);
            assert_eq!(c.issues.len(), 1, "{log:?}");
            let f = c.primary();
            assert_eq!(f.issue_type, IssueType::Unknown);
            assert_eq!(f.severity, Severity::Low);
            assert_eq!(f.line, 0);
        }
        // Binary garbage (deterministic pseudo-random bytes, lossily decoded).
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let bytes: Vec<u8> = (0..1 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let garbage = String::from_utf8_lossy(&bytes);
        assert!(!classify(&CAT, &garbage, None).issues.is_empty());
        // A 10 MB line, with and without a match at its end.
        let huge = "a".repeat(10 << 20);
        assert_eq!(primary(&huge), IssueType::Unknown);
        let huge_hit = format!("{huge} Could not resolve host: github.com");
        let c = classify(&CAT, &huge_hit, None);
        assert_eq!(c.primary_type(), IssueType::NetworkError);
        assert_eq!(c.primary().line, 1);
        assert!(c.primary().evidence.len() < 400);
        // No patterns at all.
        assert_eq!(
            classify(&Catalogue::empty(), "FAILED a.py::b", None).primary_type(),
            IssueType::Unknown
        );
    }

    #[test]
    fn user_patterns_change_the_verdict() {
        let mut cat = Catalogue::builtin();
        assert_eq!(
            classify(&cat, "ECS task stopped: host terminated", None).primary_type(),
            IssueType::Unknown
        );
        cat.extend_from_toml(
            "[[pattern]]\nid = \"ecs_task_stopped\"\nissue_type = \"runner_lost\"\nregex = 'ECS task stopped: (.+)'\nseverity = \"critical\"\nauto_fixable = true\nfix_description = \"rerun\"\nfix = { action = \"open_issue\", title = \"runner died: $1\" }\n",
            "team.toml",
        )
        .unwrap();
        let c = classify(&cat, "ECS task stopped: host terminated", None);
        assert_eq!(c.primary_type(), IssueType::RunnerLost);
        assert_eq!(c.primary().severity, Severity::Critical);
        assert_eq!(
            c.primary().fix.as_ref().unwrap().args["title"],
            "runner died: host terminated"
        );
        // Replacing a built-in pattern by id changes its class.
        cat.extend_from_toml(
            "[[pattern]]\nid = \"exit_code_generic\"\nissue_type = \"test_failure\"\nregex = 'Process completed with exit code ([1-9][0-9]*)'\nseverity = \"low\"\nauto_fixable = false\nfix_description = \"our CI only runs tests\"\n",
            "team.toml",
        )
        .unwrap();
        assert_eq!(
            classify(&cat, "##[error]Process completed with exit code 1.", None).primary_type(),
            IssueType::TestFailure
        );
    }

    #[test]
    fn render_json_shape() {
        let c = classify(
            &CAT,
            "2024-01-02T03:04:05Z ##[error]Process completed with exit code 3.",
            None,
        );
        let v = render_json("logs/job.txt", &c);
        assert_eq!(v["file"], "logs/job.txt");
        let issue = &v["issues"][0];
        assert_eq!(issue["issue_type"], "script_error");
        assert_eq!(issue["severity"], "medium");
        assert_eq!(issue["auto_fixable"], false);
        assert_eq!(issue["line"], 1);
        assert_eq!(
            issue["evidence"],
            "##[error]Process completed with exit code 3."
        );
        let keys: Vec<&String> = issue.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "auto_fixable",
                "evidence",
                "fix_description",
                "issue_type",
                "line",
                "severity"
            ]
        );
        let empty = render_json("e", &classify(&CAT, "", None));
        assert_eq!(empty["issues"][0]["issue_type"], "unknown");
        assert_eq!(empty["issues"].as_array().unwrap().len(), 1);
        // The full Finding serializes too.
        let full = serde_json::to_value(&c).unwrap();
        assert_eq!(full["issues"][0]["pattern_id"], "exit_code_generic");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn loggy() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                any::<String>(),
                Just("2024-01-02T03:04:05.1234567Z ".to_owned()),
                Just("\x1b[".to_owned()),
                Just("\x1b]".to_owned()),
                Just("\x1b".to_owned()),
                Just("31m".to_owned()),
                Just("##[error]".to_owned()),
                Just("\n".to_owned()),
                Just("\r".to_owned()),
                Just("\u{feff}".to_owned()),
                Just("FAILED a.py::b - x".to_owned()),
                Just("Got exit code 124".to_owned()),
                Just("The operation was canceled.".to_owned()),
                Just("Process completed with exit code 1.".to_owned()),
                Just("ModuleNotFoundError: No module named 'q'".to_owned()),
            ];
            prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
        }

        proptest! {
            #[test]
            fn classify_total(log in loggy()) {
                let c = classify(&CAT, &log, None);
                prop_assert!(!c.issues.is_empty());
                let lines = log.split('\n').count();
                for f in &c.issues {
                    prop_assert!(f.line <= lines);
                    prop_assert!(f.score.is_finite());
                }
            }

            #[test]
            fn classify_total_any_string(log in any::<String>()) {
                prop_assert!(!classify(&CAT, &log, None).issues.is_empty());
            }

            #[test]
            fn normalize_idempotent(line in loggy()) {
                let once = normalize_line(&line).into_owned();
                let twice = normalize_line(&once).into_owned();
                prop_assert_eq!(&once, &twice);
                prop_assert!(!once.contains('\x1b'));
            }
        }
    }
}
