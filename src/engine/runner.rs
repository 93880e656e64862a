//! Task processes: run one task's argv without a shell in its own process group, capture
//! combined stdout/stderr (bounded: only the tail is kept), enforce its timeout, and cancel by
//! signalling the whole group (SIGTERM, then SIGKILL after a grace period).
//!
//! Secrets Flotilla itself holds (`GH_TOKEN`, `GITHUB_TOKEN`, `FLY_API_TOKEN`,
//! `FLOTILLA_P2P_SECRET`, `TAILSCALE_AUTH_KEY`) are removed from the inherited environment;
//! a task gets only what its `env` names on top of the rest.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, oneshot};

use crate::sched::workflow::{TaskSpec, TaskState};
use crate::store::TaskOutcome;

/// Environment variables never passed to tasks.
pub const SECRET_ENV: &[&str] = &[
    "GH_TOKEN",
    "GITHUB_TOKEN",
    "FLY_API_TOKEN",
    "FLOTILLA_P2P_SECRET",
    "TAILSCALE_AUTH_KEY",
];

/// What to run.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// Task id (reported back with the outcome).
    pub task_id: String,
    /// argv, env, timeout.
    pub spec: TaskSpec,
    /// Effective timeout.
    pub timeout: Duration,
    /// Bytes of output tail kept.
    pub output_limit: usize,
    /// SIGTERM-to-SIGKILL grace.
    pub kill_grace: Duration,
}

/// A finished attempt.
#[derive(Debug)]
pub struct RunDone {
    /// Task id.
    pub task_id: String,
    /// What happened.
    pub outcome: TaskOutcome,
}

/// Handle to a running task: cancel it, read its pid.
#[derive(Debug)]
pub struct RunHandle {
    cancel: Option<oneshot::Sender<()>>,
    /// Process id (= process group id) once spawned.
    pub pid: Option<u32>,
}

impl RunHandle {
    /// Ask the task to stop: SIGTERM to its group, SIGKILL after the grace period. Its
    /// outcome arrives as [`TaskState::Cancelled`].
    pub fn cancel(&mut self) {
        if let Some(tx) = self.cancel.take() {
            let _ = tx.send(());
        }
    }
}

/// A byte buffer that keeps only the last `limit` bytes.
#[derive(Debug)]
pub struct Tail {
    buf: VecDeque<u8>,
    limit: usize,
    dropped: u64,
}

impl Tail {
    /// A tail of at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            buf: VecDeque::with_capacity(limit.min(8192)),
            limit,
            dropped: 0,
        }
    }
    /// Append bytes, dropping the oldest beyond the limit.
    pub fn push(&mut self, data: &[u8]) {
        let data = if data.len() > self.limit {
            self.dropped += (data.len() - self.limit) as u64;
            &data[data.len() - self.limit..]
        } else {
            data
        };
        let over = (self.buf.len() + data.len()).saturating_sub(self.limit);
        if over > 0 {
            self.buf.drain(..over);
            self.dropped += over as u64;
        }
        self.buf.extend(data);
    }
    /// The kept bytes as lossy UTF-8, and whether anything was dropped.
    pub fn take(&mut self) -> (String, bool) {
        let v: Vec<u8> = self.buf.drain(..).collect();
        (String::from_utf8_lossy(&v).into_owned(), self.dropped > 0)
    }
}

/// Send `sig` to process group `pgid`. Errors (group already gone) are ignored.
pub fn kill_group(pgid: u32, sig: i32) {
    if pgid > 1 {
        // SAFETY: killpg has no memory-safety preconditions; a stale pgid yields ESRCH.
        unsafe {
            libc::killpg(pgid as libc::pid_t, sig);
        }
    }
}

/// Start a task; its outcome is sent on `done` when it ends (always exactly once).
pub fn spawn_task(req: RunRequest, done: mpsc::UnboundedSender<RunDone>) -> RunHandle {
    let (cancel_tx, cancel_rx) = oneshot::channel();
    let mut cmd = tokio::process::Command::new(&req.spec.command[0]);
    cmd.args(&req.spec.command[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    for k in SECRET_ENV {
        cmd.env_remove(k);
    }
    cmd.envs(&req.spec.env);
    // The task knows its id (for logs, and to tell attempts apart).
    cmd.env("FLOTILLA_TASK_ID", &req.task_id);
    let started = Instant::now();
    match cmd.spawn() {
        Err(e) => {
            let outcome = TaskOutcome {
                state: TaskState::Failed,
                exit_code: None,
                signal: None,
                duration_ms: 0,
                output: String::new(),
                output_truncated: false,
                error: Some(format!("cannot start {:?}: {e}", req.spec.command[0])),
            };
            let _ = done.send(RunDone {
                task_id: req.task_id,
                outcome,
            });
            RunHandle {
                cancel: None,
                pid: None,
            }
        }
        Ok(child) => {
            let pid = child.id();
            tokio::spawn(supervise(req, child, cancel_rx, started, done));
            RunHandle {
                cancel: Some(cancel_tx),
                pid,
            }
        }
    }
}

async fn pump(mut r: impl AsyncRead + Unpin, tail: Arc<Mutex<Tail>>) {
    let mut buf = vec![0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Ok(mut t) = tail.lock() {
                    t.push(&buf[..n]);
                }
            }
        }
    }
}

enum Stop {
    Exited(std::io::Result<std::process::ExitStatus>),
    Timeout,
    Cancel,
}

async fn supervise(
    req: RunRequest,
    mut child: tokio::process::Child,
    mut cancel_rx: oneshot::Receiver<()>,
    started: Instant,
    done: mpsc::UnboundedSender<RunDone>,
) {
    let pgid = child.id().unwrap_or(0);
    let tail = Arc::new(Mutex::new(Tail::new(req.output_limit)));
    let mut pumps = Vec::new();
    if let Some(o) = child.stdout.take() {
        pumps.push(tokio::spawn(pump(o, tail.clone())));
    }
    if let Some(e) = child.stderr.take() {
        pumps.push(tokio::spawn(pump(e, tail.clone())));
    }
    let stop = tokio::select! {
        st = child.wait() => Stop::Exited(st),
        _ = tokio::time::sleep(req.timeout) => Stop::Timeout,
        r = &mut cancel_rx => if r.is_ok() { Stop::Cancel } else { Stop::Exited(child.wait().await) },
    };
    let (status, forced) = match stop {
        Stop::Exited(st) => (st, None),
        other => {
            kill_group(pgid, libc::SIGTERM);
            let st = match tokio::time::timeout(req.kill_grace, child.wait()).await {
                Ok(st) => st,
                Err(_) => {
                    kill_group(pgid, libc::SIGKILL);
                    child.wait().await
                }
            };
            (
                st,
                Some(match other {
                    Stop::Timeout => TaskState::TimedOut,
                    _ => TaskState::Cancelled,
                }),
            )
        }
    };
    // Stragglers of the group (a daemonised grandchild holding the pipes) must not keep the
    // task open: the group is killed once its leader is gone.
    kill_group(pgid, libc::SIGKILL);
    for p in pumps {
        let _ = tokio::time::timeout(Duration::from_secs(2), p).await;
    }
    let duration_ms = started.elapsed().as_millis() as i64;
    let (output, output_truncated) = tail.lock().map(|mut t| t.take()).unwrap_or_default();
    use std::os::unix::process::ExitStatusExt;
    let outcome = match (status, forced) {
        (Err(e), _) => TaskOutcome {
            state: TaskState::Failed,
            exit_code: None,
            signal: None,
            duration_ms,
            output,
            output_truncated,
            error: Some(format!("waiting for the process failed: {e}")),
        },
        (Ok(st), Some(state)) => TaskOutcome {
            state,
            exit_code: st.code(),
            signal: st.signal(),
            duration_ms,
            output,
            output_truncated,
            error: Some(match state {
                TaskState::TimedOut => format!("timed out after {}s", req.timeout.as_secs()),
                _ => "cancelled while running".into(),
            }),
        },
        (Ok(st), None) => TaskOutcome {
            state: if st.success() {
                TaskState::Succeeded
            } else {
                TaskState::Failed
            },
            exit_code: st.code(),
            signal: st.signal(),
            duration_ms,
            output,
            output_truncated,
            error: match (st.code(), st.signal()) {
                (Some(0), _) => None,
                (Some(c), _) => Some(format!("exited with status {c}")),
                (None, Some(s)) => Some(format!("killed by signal {s}")),
                _ => None,
            },
        },
    };
    let _ = done.send(RunDone {
        task_id: req.task_id,
        outcome,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(cmd: &[&str], timeout_ms: u64) -> RunRequest {
        RunRequest {
            task_id: "t".into(),
            spec: TaskSpec {
                command: cmd.iter().map(|s| s.to_string()).collect(),
                env: [("FLOTILLA_TEST_VAR".to_string(), "v1".to_string())].into(),
                timeout_s: None,
                requires: vec![],
            },
            timeout: Duration::from_millis(timeout_ms),
            output_limit: 64,
            kill_grace: Duration::from_millis(500),
        }
    }

    async fn run(r: RunRequest) -> TaskOutcome {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _h = spawn_task(r, tx);
        rx.recv().await.unwrap().outcome
    }

    #[test]
    fn tail_keeps_last_bytes() {
        let mut t = Tail::new(4);
        t.push(b"ab");
        t.push(b"cdef");
        assert_eq!(t.take(), ("cdef".into(), true));
        let mut t = Tail::new(4);
        t.push(b"abcdefgh");
        assert_eq!(t.take(), ("efgh".into(), true));
        let mut t = Tail::new(4);
        t.push(b"ab");
        assert_eq!(t.take(), ("ab".into(), false));
    }

    #[tokio::test]
    async fn success_output_and_env_without_shell() {
        let o = run(req(
            &["sh", "-c", "echo $FLOTILLA_TEST_VAR; echo err >&2"],
            5000,
        ))
        .await;
        assert_eq!(o.state, TaskState::Succeeded);
        assert_eq!(o.exit_code, Some(0));
        assert!(
            o.output.contains("v1") && o.output.contains("err"),
            "{}",
            o.output
        );
        // argv is not interpreted by a shell:
        let o = run(req(&["echo", "$HOME;", "|", "x"], 5000)).await;
        assert_eq!(o.output.trim(), "$HOME; | x");
    }

    #[tokio::test]
    async fn failure_and_bounded_output() {
        let o = run(req(&["sh", "-c", "seq 1 10000; exit 3"], 5000)).await;
        assert_eq!(o.state, TaskState::Failed);
        assert_eq!(o.exit_code, Some(3));
        assert!(o.output_truncated);
        assert!(o.output.len() <= 64);
        assert!(o.output.ends_with("10000\n"));
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("child-survived");
        let script = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let o = run(req(&["sh", "-c", &script], 200)).await;
        assert_eq!(o.state, TaskState::TimedOut);
        assert!(o.duration_ms < 5000);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!marker.exists(), "a grandchild outlived the timeout");
    }

    #[tokio::test]
    async fn cancel_stops_task() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut h = spawn_task(req(&["sleep", "30"], 60_000), tx);
        assert!(h.pid.is_some());
        tokio::time::sleep(Duration::from_millis(100)).await;
        h.cancel();
        let o = rx.recv().await.unwrap().outcome;
        assert_eq!(o.state, TaskState::Cancelled);
        assert_eq!(o.signal, Some(libc::SIGTERM));
    }

    #[tokio::test]
    async fn missing_program_is_a_clear_failure() {
        let o = run(req(&["/nonexistent/prog"], 1000)).await;
        assert_eq!(o.state, TaskState::Failed);
        assert!(o.error.unwrap().contains("cannot start"));
    }
}
