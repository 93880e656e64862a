//! Runs a code formatter locally on one file's content: the content goes to the formatter's
//! stdin, the formatted file comes back on its stdout. The program is started directly (no
//! shell), in the system's temporary directory (no project configuration is picked up from
//! the host), with a cleared environment that keeps only what toolchains need to start
//! ([`PASSED_ENV`]; no token reaches it), and killed when the timeout passes.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

/// Environment variables handed to the formatter; everything else (tokens included) is
/// cleared.
pub const PASSED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USERPROFILE",
    "SYSTEMROOT",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "TEMP",
    "TMP",
    "RUSTUP_HOME",
    "RUSTUP_TOOLCHAIN",
    "CARGO_HOME",
    "NODE_PATH",
    "VIRTUAL_ENV",
];

/// Most bytes of the formatter's stderr kept in an error.
const STDERR_KEEP: usize = 600;

/// Why a formatter gave no output to commit.
#[derive(Debug, thiserror::Error)]
pub enum FormatterError {
    /// The command is empty (a bad `orchestrator.formatters` entry).
    #[error("the formatter command for {tool} is empty: set orchestrator.formatters")]
    Empty {
        /// The pattern's tool.
        tool: String,
    },
    /// The program is not installed (not found on `PATH`).
    #[error(
        "formatter `{program}` for {tool} is not installed on this host (not found on PATH): \
         install it or point orchestrator.formatters.\"{tool}\" at it"
    )]
    NotFound {
        /// The pattern's tool.
        tool: String,
        /// The program (first argument of the command).
        program: String,
    },
    /// The program could not be started or talked to.
    #[error("formatter `{program}` for {tool} could not run: {detail}")]
    Io {
        /// The pattern's tool.
        tool: String,
        /// The program.
        program: String,
        /// What failed.
        detail: String,
    },
    /// It ran past the timeout and was killed.
    #[error("formatter `{program}` for {tool} did not finish within {}s and was killed", after.as_secs_f64())]
    Timeout {
        /// The pattern's tool.
        tool: String,
        /// The program.
        program: String,
        /// The timeout.
        after: Duration,
    },
    /// It exited with an error (e.g. the file does not parse).
    #[error("formatter `{program}` for {tool} failed ({status}){}{stderr}", if stderr.is_empty() { "" } else { ": " })]
    Failed {
        /// The pattern's tool.
        tool: String,
        /// The program.
        program: String,
        /// Exit status as text.
        status: String,
        /// The start of its stderr, on one line.
        stderr: String,
    },
}

fn one_line(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.len() > STDERR_KEEP {
        let mut end = STDERR_KEEP;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s
    }
}

/// Run `argv` (program and arguments, `{path}` already replaced) on `input` and return its
/// stdout: the formatted file. `tool` names the formatter in errors.
///
/// # Errors
/// [`FormatterError`]: not installed, could not start, timed out (the process is killed),
/// or exited non-zero (with the start of its stderr).
pub async fn run_formatter(
    tool: &str,
    argv: &[String],
    input: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, FormatterError> {
    let Some((program, args)) = argv.split_first().filter(|(p, _)| !p.is_empty()) else {
        return Err(FormatterError::Empty { tool: tool.into() });
    };
    let io = |detail: String| FormatterError::Io {
        tool: tool.into(),
        program: program.clone(),
        detail,
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for k in PASSED_ENV {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(FormatterError::NotFound {
                tool: tool.into(),
                program: PathBuf::from(program).display().to_string(),
            });
        }
        Err(e) => return Err(io(e.to_string())),
    };
    let mut stdin = child.stdin.take().ok_or_else(|| io("no stdin".into()))?;
    let input = input.to_vec();
    let feed = async move {
        // A formatter that exits early closes its stdin: its exit status tells why.
        let _ = stdin.write_all(&input).await;
        drop(stdin);
    };
    let run = async {
        let (_, out) = tokio::join!(feed, child.wait_with_output());
        out
    };
    let out = match tokio::time::timeout(timeout, run).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return Err(io(e.to_string())),
        Err(_) => {
            return Err(FormatterError::Timeout {
                tool: tool.into(),
                program: program.clone(),
                after: timeout,
            });
        }
    };
    if !out.status.success() {
        return Err(FormatterError::Failed {
            tool: tool.into(),
            program: program.clone(),
            status: out.status.to_string(),
            stderr: one_line(&out.stderr),
        });
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn stdin_to_stdout_without_shell() {
        let out = run_formatter(
            "cat",
            &argv(&["cat"]),
            b"a $HOME `x`\n",
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(out, b"a $HOME `x`\n");
        // Large input does not deadlock on full pipes.
        let big = vec![b'x'; 1 << 20];
        let out = run_formatter("cat", &argv(&["cat"]), &big, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(out.len(), big.len());
    }

    #[tokio::test]
    async fn missing_failing_slow_and_empty() {
        let e = run_formatter(
            "black",
            &argv(&["flotilla-no-such-formatter", "-q", "-"]),
            b"x",
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, FormatterError::NotFound { .. }), "{e}");
        assert!(e.to_string().contains("not installed"), "{e}");
        assert!(e.to_string().contains("orchestrator.formatters"), "{e}");

        let e = run_formatter(
            "sh",
            &argv(&["sh", "-c", "echo bad input >&2; exit 3"]),
            b"x",
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("bad input"), "{e}");

        let t0 = std::time::Instant::now();
        let e = run_formatter(
            "sleep",
            &argv(&["sleep", "5"]),
            b"",
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, FormatterError::Timeout { .. }), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(3));

        let e = run_formatter("x", &[], b"", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(e, FormatterError::Empty { .. }));
    }

    #[tokio::test]
    async fn environment_is_cleared() {
        // SAFETY: a variable only this test reads.
        unsafe { std::env::set_var("FLOTILLA_TEST_SECRET_FMT", "s3cret") };
        let out = run_formatter("env", &argv(&["env"]), b"", Duration::from_secs(5))
            .await
            .unwrap();
        let env = String::from_utf8_lossy(&out);
        assert!(!env.contains("s3cret"), "{env}");
        assert!(env.contains("PATH="), "{env}");
    }
}
