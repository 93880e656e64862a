//! Workflows and tasks as the seed documents define them, and their validation.
//!
//! A workflow is `{id, name, tag, priority, tasks[]}`; priority is 0..=1000, lower is more
//! urgent. A task is, for now, a process:
//! `{"command": [argv...], "env": {...}, "timeout_s": N, "requires": [...]}`, run without a
//! shell. Any other task shape is rejected with an error naming the offending field, e.g.
//! `tasks[0]: unknown field "model"`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Lowest (least urgent) priority value.
pub const MAX_PRIORITY: u16 = 1000;
/// Priority used when a submission gives none.
pub const DEFAULT_PRIORITY: u16 = 500;
/// Most tasks one workflow may hold.
pub const MAX_TASKS: usize = 10_000;
/// Longest task timeout accepted, in seconds (7 days).
pub const MAX_TIMEOUT_S: u64 = 7 * 24 * 3600;

/// Workflow tags (execution modes and kinds), as in the seed's `WorkflowTag`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum WorkflowTag {
    /// Standard GitHub API workflows; stay on the submitting node.
    GithubApi,
    /// May execute on any peer of the mesh.
    P2pEligible,
    /// Must execute through the mesh (bypasses GitHub).
    P2pOnly,
    /// Unit-test workloads.
    UnitTest,
    /// Code-generation tasks.
    CodeGeneration,
    /// Web-scraping tasks.
    WebScraping,
    /// Data-processing tasks.
    DataProcessing,
}

impl WorkflowTag {
    /// Every tag, in declaration order.
    pub const ALL: [WorkflowTag; 7] = [
        WorkflowTag::GithubApi,
        WorkflowTag::P2pEligible,
        WorkflowTag::P2pOnly,
        WorkflowTag::UnitTest,
        WorkflowTag::CodeGeneration,
        WorkflowTag::WebScraping,
        WorkflowTag::DataProcessing,
    ];

    /// The tag's wire name, e.g. `p2p-eligible`.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowTag::GithubApi => "github-api",
            WorkflowTag::P2pEligible => "p2p-eligible",
            WorkflowTag::P2pOnly => "p2p-only",
            WorkflowTag::UnitTest => "unit-test",
            WorkflowTag::CodeGeneration => "code-generation",
            WorkflowTag::WebScraping => "web-scraping",
            WorkflowTag::DataProcessing => "data-processing",
        }
    }
}

impl fmt::Display for WorkflowTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WorkflowTag {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        WorkflowTag::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                SpecError::new(
                    "tag",
                    format!("unknown tag {s:?}; expected one of {}", tag_list()),
                )
            })
    }
}

fn tag_list() -> String {
    WorkflowTag::ALL.map(|t| t.as_str()).join(", ")
}

/// A validation error that names the offending field, e.g. `tasks[2].timeout_s`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SpecError {
    /// Path of the field, e.g. `tasks[0].command`.
    pub field: String,
    /// What is wrong and what is expected.
    pub reason: String,
}

impl SpecError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// A task: one process, run without a shell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// argv: the program and its arguments (no shell).
    pub command: Vec<String>,
    /// Extra environment variables for the process.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Seconds before the task is killed (default: `scheduler.default_task_timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u64>,
    /// Capability labels a node must have to run it, e.g. `["cuda"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
}

/// A workflow as submitted (before it has an id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WorkflowSpec {
    /// Display name.
    pub name: String,
    /// Execution mode tag.
    pub tag: WorkflowTag,
    /// 0..=1000, lower is more urgent.
    pub priority: u16,
    /// The tasks, run independently.
    pub tasks: Vec<TaskSpec>,
}

const TASK_SHAPE: &str =
    "a task is {\"command\": [argv...], \"env\": {...}, \"timeout_s\": N, \"requires\": [...]}";

impl WorkflowSpec {
    /// Build and validate a workflow from loose JSON parts, as the MCP tool and workflow
    /// files give them. `tag` and `priority` may be absent (defaults: `p2p-eligible`, 500).
    ///
    /// Errors name the field: `name`, `tag`, `priority`, `tasks`, `tasks[i]`, `tasks[i].command`...
    pub fn from_parts(
        name: &str,
        tasks: &Value,
        priority: Option<i64>,
        tag: Option<&str>,
    ) -> Result<Self, SpecError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(SpecError::new("name", "must not be empty"));
        }
        if name.chars().count() > 200 || name.chars().any(|c| c.is_control()) {
            return Err(SpecError::new(
                "name",
                "must be at most 200 printable characters",
            ));
        }
        let tag = match tag {
            Some(t) => t.parse()?,
            None => WorkflowTag::P2pEligible,
        };
        let priority = match priority {
            None => DEFAULT_PRIORITY,
            Some(p) if (0..=MAX_PRIORITY as i64).contains(&p) => p as u16,
            Some(p) => {
                return Err(SpecError::new(
                    "priority",
                    format!("{p} is out of range 0..=1000 (lower is more urgent)"),
                ));
            }
        };
        let arr = tasks
            .as_array()
            .ok_or_else(|| SpecError::new("tasks", "must be an array of tasks"))?;
        if arr.is_empty() {
            return Err(SpecError::new("tasks", "must hold at least one task"));
        }
        if arr.len() > MAX_TASKS {
            return Err(SpecError::new(
                "tasks",
                format!("{} tasks; at most {MAX_TASKS} per workflow", arr.len()),
            ));
        }
        let mut out = Vec::with_capacity(arr.len());
        for (i, t) in arr.iter().enumerate() {
            out.push(parse_task(i, t)?);
        }
        Ok(Self {
            name: name.to_string(),
            tag,
            priority,
            tasks: out,
        })
    }

    /// Parse a workflow file: TOML when `path` ends in `.toml`, JSON otherwise, in the same
    /// shape as the MCP tool's arguments (`name`, `tag`, `priority`, `tasks`).
    pub fn from_file_text(path: &str, text: &str) -> Result<Self, SpecError> {
        let value: Value = if path.ends_with(".toml") {
            let t: toml::Table = text
                .parse()
                .map_err(|e: toml::de::Error| SpecError::new("file", one_line(&e.to_string())))?;
            serde_json::to_value(t).map_err(|e| SpecError::new("file", e.to_string()))?
        } else {
            serde_json::from_str(text)
                .map_err(|e| SpecError::new("file", format!("invalid JSON: {e}")))?
        };
        let obj = value
            .as_object()
            .ok_or_else(|| SpecError::new("file", "must hold one workflow object"))?;
        for k in obj.keys() {
            if !["name", "tag", "priority", "tasks"].contains(&k.as_str()) {
                return Err(SpecError::new(
                    k.clone(),
                    "unknown field; a workflow is {name, tag, priority, tasks}",
                ));
            }
        }
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| SpecError::new("name", "missing or not a string"))?;
        let priority = match obj.get("priority") {
            None => None,
            Some(v) => Some(
                v.as_i64()
                    .ok_or_else(|| SpecError::new("priority", "must be an integer 0..=1000"))?,
            ),
        };
        let tag = match obj.get("tag") {
            None => None,
            Some(v) => Some(
                v.as_str()
                    .ok_or_else(|| SpecError::new("tag", "must be a string"))?,
            ),
        };
        let tasks = obj
            .get("tasks")
            .ok_or_else(|| SpecError::new("tasks", "missing"))?;
        Self::from_parts(name, tasks, priority, tag)
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn parse_task(i: usize, v: &Value) -> Result<TaskSpec, SpecError> {
    let field = |f: &str| format!("tasks[{i}].{f}");
    let obj = v.as_object().ok_or_else(|| {
        SpecError::new(
            format!("tasks[{i}]"),
            format!("not an object; {TASK_SHAPE}"),
        )
    })?;
    for k in obj.keys() {
        if !["command", "env", "timeout_s", "requires"].contains(&k.as_str()) {
            return Err(SpecError::new(
                format!("tasks[{i}]"),
                format!("unknown field {k:?}; {TASK_SHAPE}"),
            ));
        }
    }
    let command = match obj.get("command") {
        None => {
            return Err(SpecError::new(
                field("command"),
                format!("missing; {TASK_SHAPE}"),
            ));
        }
        Some(Value::Array(a)) => {
            let mut argv = Vec::with_capacity(a.len());
            for (j, x) in a.iter().enumerate() {
                let s = x.as_str().ok_or_else(|| {
                    SpecError::new(format!("tasks[{i}].command[{j}]"), "must be a string")
                })?;
                if s.contains('\0') {
                    return Err(SpecError::new(
                        format!("tasks[{i}].command[{j}]"),
                        "must not contain NUL",
                    ));
                }
                argv.push(s.to_string());
            }
            if argv.is_empty() || argv[0].is_empty() {
                return Err(SpecError::new(
                    field("command"),
                    "must name a program: [\"prog\", \"arg\", ...]",
                ));
            }
            argv
        }
        Some(_) => {
            return Err(SpecError::new(
                field("command"),
                "must be an array of strings (argv; no shell is used)",
            ));
        }
    };
    let mut env = BTreeMap::new();
    match obj.get("env") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, x) in m {
                let val = x.as_str().ok_or_else(|| {
                    SpecError::new(format!("tasks[{i}].env.{k}"), "must be a string")
                })?;
                if k.is_empty() || k.contains('=') || k.contains('\0') || val.contains('\0') {
                    return Err(SpecError::new(
                        format!("tasks[{i}].env.{k}"),
                        "names must be non-empty without '=' or NUL; values without NUL",
                    ));
                }
                env.insert(k.clone(), val.to_string());
            }
        }
        Some(_) => return Err(SpecError::new(field("env"), "must be an object of strings")),
    }
    let timeout_s = match obj.get("timeout_s") {
        None | Some(Value::Null) => None,
        Some(x) => match x.as_u64() {
            Some(n) if (1..=MAX_TIMEOUT_S).contains(&n) => Some(n),
            _ => {
                return Err(SpecError::new(
                    field("timeout_s"),
                    format!("must be an integer number of seconds in 1..={MAX_TIMEOUT_S}"),
                ));
            }
        },
    };
    let mut requires = Vec::new();
    match obj.get("requires") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) => {
            for (j, x) in a.iter().enumerate() {
                let s = x.as_str().filter(|s| valid_label(s)).ok_or_else(|| {
                    SpecError::new(
                        format!("tasks[{i}].requires[{j}]"),
                        "must be a capability label of [a-z0-9._:-], 1..=64 chars",
                    )
                })?;
                requires.push(s.to_string());
            }
        }
        Some(_) => {
            return Err(SpecError::new(
                field("requires"),
                "must be an array of labels",
            ));
        }
    }
    Ok(TaskSpec {
        command,
        env,
        timeout_s,
        requires,
    })
}

/// Whether `s` is a valid capability label: `[a-z0-9._:-]{1,64}`.
pub fn valid_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._:-".contains(&b))
}

/// A task's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting in the queue.
    Queued,
    /// Its process is running.
    Running,
    /// Exited with status 0.
    Succeeded,
    /// Exited non-zero, was killed by a signal, or could not start.
    Failed,
    /// Cancelled by an operator or agent.
    Cancelled,
    /// Killed after its timeout.
    TimedOut,
}

impl TaskState {
    /// Name as stored and shown: `queued`, `running`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
            TaskState::TimedOut => "timed_out",
        }
    }
    /// Whether the task will not change state again.
    pub fn is_terminal(self) -> bool {
        !matches!(self, TaskState::Queued | TaskState::Running)
    }
}

impl FromStr for TaskState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "queued" => TaskState::Queued,
            "running" => TaskState::Running,
            "succeeded" => TaskState::Succeeded,
            "failed" => TaskState::Failed,
            "cancelled" => TaskState::Cancelled,
            "timed_out" => TaskState::TimedOut,
            _ => return Err(format!("unknown task state {s:?}")),
        })
    }
}

/// A workflow's status, derived from its tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowStatus {
    /// No task has started.
    Queued,
    /// Some task is running or started, not all are done.
    Running,
    /// Every task succeeded.
    Completed,
    /// All tasks are done and at least one failed or timed out.
    Failed,
    /// Cancelled before all tasks finished.
    Cancelled,
}

impl WorkflowStatus {
    /// Name as shown: `queued`, `running`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowStatus::Queued => "queued",
            WorkflowStatus::Running => "running",
            WorkflowStatus::Completed => "completed",
            WorkflowStatus::Failed => "failed",
            WorkflowStatus::Cancelled => "cancelled",
        }
    }
    /// Whether the workflow is finished.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            WorkflowStatus::Completed | WorkflowStatus::Failed | WorkflowStatus::Cancelled
        )
    }
}

impl FromStr for WorkflowStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "queued" => WorkflowStatus::Queued,
            "running" => WorkflowStatus::Running,
            "completed" => WorkflowStatus::Completed,
            "failed" => WorkflowStatus::Failed,
            "cancelled" => WorkflowStatus::Cancelled,
            _ => {
                return Err(format!(
                    "unknown status {s:?}; expected queued, running, completed, failed or cancelled"
                ));
            }
        })
    }
}

/// Derive a workflow's status from its tasks' states (pure).
///
/// Cancelled wins once no task runs; then running while any task is queued or running and
/// at least one has started; failed if any task failed or timed out; else completed.
pub fn workflow_status(states: impl IntoIterator<Item = TaskState>) -> WorkflowStatus {
    let (mut queued, mut running, mut done, mut failed, mut cancelled) = (0, 0, 0, 0, 0);
    for s in states {
        match s {
            TaskState::Queued => queued += 1,
            TaskState::Running => running += 1,
            TaskState::Succeeded => done += 1,
            TaskState::Failed | TaskState::TimedOut => failed += 1,
            TaskState::Cancelled => cancelled += 1,
        }
    }
    if cancelled > 0 && running == 0 && queued == 0 {
        WorkflowStatus::Cancelled
    } else if queued + running > 0 {
        if running + done + failed + cancelled == 0 {
            WorkflowStatus::Queued
        } else {
            WorkflowStatus::Running
        }
    } else if failed > 0 {
        WorkflowStatus::Failed
    } else {
        WorkflowStatus::Completed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn valid_workflow() {
        let w = WorkflowSpec::from_parts(
            "build",
            &json!([{"command": ["echo", "hi"], "env": {"A": "1"}, "timeout_s": 5, "requires": ["linux"]}]),
            Some(10),
            Some("p2p-only"),
        )
        .unwrap();
        assert_eq!(w.tag, WorkflowTag::P2pOnly);
        assert_eq!(w.priority, 10);
        assert_eq!(w.tasks[0].command, vec!["echo", "hi"]);
    }

    #[test]
    fn seed_task_shape_is_rejected_naming_field() {
        let e = WorkflowSpec::from_parts(
            "x",
            &json!([{"command": ["true"]}, {"model": "bert-base", "input": "text1"}]),
            None,
            None,
        )
        .unwrap_err();
        assert_eq!(e.field, "tasks[1]");
        assert!(
            e.reason.contains("input") || e.reason.contains("model"),
            "{e}"
        );
    }

    #[test]
    fn field_errors() {
        let cases = [
            (json!([{"command": "echo hi"}]), "tasks[0].command"),
            (json!([{"command": []}]), "tasks[0].command"),
            (json!([{"command": ["a", 1]}]), "tasks[0].command[1]"),
            (
                json!([{"command": ["a"], "timeout_s": 0}]),
                "tasks[0].timeout_s",
            ),
            (
                json!([{"command": ["a"], "timeout_s": "5"}]),
                "tasks[0].timeout_s",
            ),
            (
                json!([{"command": ["a"], "env": {"A": 1}}]),
                "tasks[0].env.A",
            ),
            (
                json!([{"command": ["a"], "requires": ["CUDA!"]}]),
                "tasks[0].requires[0]",
            ),
            (json!([]), "tasks"),
            (json!({"command": ["a"]}), "tasks"),
            (json!([5]), "tasks[0]"),
        ];
        for (tasks, field) in cases {
            let e = WorkflowSpec::from_parts("x", &tasks, None, None).unwrap_err();
            assert_eq!(e.field, field, "{tasks} -> {e}");
        }
        assert_eq!(
            WorkflowSpec::from_parts("x", &json!([{"command":["a"]}]), Some(1001), None)
                .unwrap_err()
                .field,
            "priority"
        );
        assert_eq!(
            WorkflowSpec::from_parts("x", &json!([{"command":["a"]}]), None, Some("gpu"))
                .unwrap_err()
                .field,
            "tag"
        );
        assert_eq!(
            WorkflowSpec::from_parts(" ", &json!([{"command":["a"]}]), None, None)
                .unwrap_err()
                .field,
            "name"
        );
    }

    #[test]
    fn toml_and_json_files() {
        let t =
            "name = \"t\"\npriority = 3\ntag = \"unit-test\"\n[[tasks]]\ncommand = [\"true\"]\n";
        let w = WorkflowSpec::from_file_text("w.toml", t).unwrap();
        assert_eq!(w.priority, 3);
        let j = r#"{"name":"j","tasks":[{"command":["true"]}]}"#;
        let w = WorkflowSpec::from_file_text("w.json", j).unwrap();
        assert_eq!(w.tag, WorkflowTag::P2pEligible);
        let e =
            WorkflowSpec::from_file_text("w.json", r#"{"name":"j","tasks":[],"x":1}"#).unwrap_err();
        assert_eq!(e.field, "x");
        assert_eq!(
            WorkflowSpec::from_file_text("w.json", "{oops")
                .unwrap_err()
                .field,
            "file"
        );
    }

    #[test]
    fn status_derivation() {
        use TaskState::*;
        assert_eq!(workflow_status([Queued, Queued]), WorkflowStatus::Queued);
        assert_eq!(
            workflow_status([Succeeded, Queued]),
            WorkflowStatus::Running
        );
        assert_eq!(workflow_status([Running]), WorkflowStatus::Running);
        assert_eq!(
            workflow_status([Succeeded, Succeeded]),
            WorkflowStatus::Completed
        );
        assert_eq!(
            workflow_status([Succeeded, TimedOut]),
            WorkflowStatus::Failed
        );
        assert_eq!(
            workflow_status([Succeeded, Cancelled]),
            WorkflowStatus::Cancelled
        );
        assert_eq!(
            workflow_status([Running, Cancelled]),
            WorkflowStatus::Running
        );
    }

    #[test]
    fn tags_round_trip() {
        for t in WorkflowTag::ALL {
            assert_eq!(t.as_str().parse::<WorkflowTag>().unwrap(), t);
            assert_eq!(serde_json::to_value(t).unwrap(), json!(t.as_str()));
        }
    }
}
