//! GitHub layer: a REST client for the Actions endpoints the autoscaler and the failure
//! orchestrator use, with rate-limit pacing, an ETag cache in SQLite, and sealing of cache
//! entries shared across the mesh.
//!
//! * [`client`]: [`GithubClient`], typed operations over octocrab's raw HTTP methods.
//! * [`types`]: response and request shapes (serde, tolerant of unknown fields).
//! * [`ratelimit`]: pure rate-limit bookkeeping and retry policy.
//! * [`cache`]: conditional-request cache with per-endpoint freshness, LRU-bounded.
//! * [`seal`]: AES-256-GCM sealing of cache entries for the mesh.
//! * [`share`]: the [`share::PeerCache`] seam a mesh plugs into to share entries.
//!
//! Token discovery ([`discover_token`]) looks at `GH_TOKEN`, then `GITHUB_TOKEN`, then
//! `gh auth token`; with none, the layer reports [`GithubStatus::Disabled`] with
//! [`DISABLED_WARNING`] and the autoscaler stays off. The token is a [`GithubToken`]: it never
//! appears in `Debug` output, logs or error messages.

pub mod cache;
pub mod client;
pub mod ratelimit;
pub mod seal;
pub mod share;
pub mod types;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

pub use cache::{CacheStats, GithubCache};
pub use client::{ClientConfig, GithubClient, RunFilter, RunnerScope};
pub use share::{PeerCache, PeerFetchError, PeerRef, SealedExporter};

/// The warning shown when no token is found (the autoscaler is then disabled).
pub const DISABLED_WARNING: &str =
    "GitHub CLI not authenticated - autoscaler disabled\n  To enable: gh auth login";

/// A GitHub token. `Debug` prints `GithubToken(****)`; there is no `Display` and no `Serialize`.
#[derive(Clone)]
pub struct GithubToken(SecretString);

impl GithubToken {
    /// Wrap a token.
    pub fn new(s: impl Into<String>) -> Self {
        GithubToken(SecretString::from(s.into()))
    }
    /// The token; call only where it is handed to the HTTP client or a key derivation.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for GithubToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GithubToken(****)")
    }
}

/// Where the token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    /// `GH_TOKEN`.
    GhTokenEnv,
    /// `GITHUB_TOKEN`.
    GithubTokenEnv,
    /// `gh auth token`.
    GhCli,
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenSource::GhTokenEnv => "environment variable GH_TOKEN",
            TokenSource::GithubTokenEnv => "environment variable GITHUB_TOKEN",
            TokenSource::GhCli => "gh auth token",
        })
    }
}

/// Whether the GitHub layer is usable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum GithubStatus {
    /// A token was found.
    Enabled {
        /// Where it came from.
        source: TokenSource,
    },
    /// No token: GitHub features (the autoscaler) are off.
    Disabled {
        /// Why, for the operator: [`DISABLED_WARNING`].
        reason: String,
    },
}

/// How to ask the `gh` CLI for a token.
#[derive(Debug, Clone)]
pub struct GhCli {
    /// Program name or path (`gh`); a bare name is looked up in `PATH`.
    pub program: PathBuf,
    /// `--hostname` for GitHub Enterprise; `None` for github.com.
    pub hostname: Option<String>,
    /// Longest wait for `gh auth token` (default 5 s); past it, no token.
    pub timeout: Duration,
}

impl Default for GhCli {
    fn default() -> Self {
        Self {
            program: PathBuf::from("gh"),
            hostname: None,
            timeout: Duration::from_secs(5),
        }
    }
}

fn find_program(program: &Path, path_var: Option<&str>) -> Option<PathBuf> {
    if program.components().count() > 1 || program.is_absolute() {
        return program.is_file().then(|| program.to_path_buf());
    }
    std::env::split_paths(path_var?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Run `gh auth token` (with `--hostname` if set). Any failure (no binary, non-zero exit,
/// timeout, empty output) is "no token", not an error.
pub async fn gh_auth_token(gh: &GhCli, path_var: Option<&str>) -> Option<GithubToken> {
    let program = find_program(&gh.program, path_var)?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(["auth", "token"]);
    if let Some(h) = &gh.hostname {
        cmd.args(["--hostname", h]);
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = match tokio::time::timeout(gh.timeout, cmd.output()).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => {
            tracing::debug!("gh auth token could not run: {e}");
            return None;
        }
        Err(_) => {
            tracing::debug!("gh auth token timed out after {:?}", gh.timeout);
            return None;
        }
    };
    if !out.status.success() {
        tracing::debug!("gh auth token exited with {}", out.status);
        return None;
    }
    let t = String::from_utf8(out.stdout).ok()?;
    let t = t.trim();
    (!t.is_empty()).then(|| GithubToken::new(t))
}

/// Find a token: `GH_TOKEN`, then `GITHUB_TOKEN` (read through `env`, empty values ignored),
/// then `gh auth token`. Returns the token with its source, or the [`GithubStatus::Disabled`]
/// status (and logs [`DISABLED_WARNING`] at `warn`).
pub async fn discover_token(
    env: impl Fn(&str) -> Option<String>,
    gh: &GhCli,
) -> (GithubStatus, Option<GithubToken>) {
    for (var, source) in [
        ("GH_TOKEN", TokenSource::GhTokenEnv),
        ("GITHUB_TOKEN", TokenSource::GithubTokenEnv),
    ] {
        if let Some(v) = env(var)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
        {
            return (GithubStatus::Enabled { source }, Some(GithubToken::new(v)));
        }
    }
    if let Some(t) = gh_auth_token(gh, env("PATH").as_deref()).await {
        return (
            GithubStatus::Enabled {
                source: TokenSource::GhCli,
            },
            Some(t),
        );
    }
    tracing::warn!("{DISABLED_WARNING}");
    (
        GithubStatus::Disabled {
            reason: DISABLED_WARNING.to_string(),
        },
        None,
    )
}

/// Errors of the GitHub layer. Messages name the endpoint (`GET /repos/o/r/actions/runs`) and
/// never contain the token.
#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    /// No token: GitHub features are off.
    #[error("{reason}")]
    Disabled {
        /// [`DISABLED_WARNING`].
        reason: String,
    },
    /// GitHub answered with an error status that is not retried (or retries ran out).
    #[error("{endpoint}: {status} {}{}{}", reason_phrase(*status), if message.is_empty() { "" } else { ": " }, message)]
    Api {
        /// `METHOD /path`.
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// GitHub's `message`, if any.
        message: String,
        /// GitHub's `documentation_url`, if any.
        documentation_url: Option<String>,
    },
    /// Rate limited and the wait is longer than the policy allows, or retries ran out: try again
    /// after `retry_after`.
    #[error("{endpoint}: GitHub rate limit ({reason}); retry in {} s{}{}", retry_after.as_secs().max(1), if message.is_empty() { "" } else { ": " }, message)]
    RateLimited {
        /// `METHOD /path`.
        endpoint: String,
        /// How long until a request may succeed.
        retry_after: Duration,
        /// Which limit: `Retry-After`, primary exhausted, secondary backoff, pacing.
        reason: String,
        /// GitHub's `message`, if any.
        message: String,
    },
    /// The body did not parse as the expected JSON.
    #[error("{endpoint}: {detail}")]
    Malformed {
        /// `METHOD /path`.
        endpoint: String,
        /// e.g. `malformed JSON at line 1 column 37: EOF while parsing a string`.
        detail: String,
    },
    /// The connection failed (after retries for idempotent requests).
    #[error("{endpoint}: transport error: {detail}")]
    Transport {
        /// `METHOD /path`.
        endpoint: String,
        /// What failed.
        detail: String,
    },
    /// A request could not be built (bad base URL, link to a foreign host, ...).
    #[error("invalid GitHub request: {0}")]
    Invalid(String),
    /// The cache failed.
    #[error(transparent)]
    Cache(#[from] cache::CacheError),
}

impl GithubError {
    /// The HTTP status, for API errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            GithubError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

fn reason_phrase(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| m.get(k).cloned()
    }

    fn no_gh() -> GhCli {
        GhCli {
            program: PathBuf::from("/nonexistent/gh"),
            ..GhCli::default()
        }
    }

    #[tokio::test]
    async fn env_order() {
        let (s, t) =
            discover_token(env(&[("GH_TOKEN", "a"), ("GITHUB_TOKEN", "b")]), &no_gh()).await;
        assert_eq!(
            s,
            GithubStatus::Enabled {
                source: TokenSource::GhTokenEnv
            }
        );
        assert_eq!(t.unwrap().expose(), "a");
        let (s, t) =
            discover_token(env(&[("GH_TOKEN", " "), ("GITHUB_TOKEN", "b")]), &no_gh()).await;
        assert_eq!(
            s,
            GithubStatus::Enabled {
                source: TokenSource::GithubTokenEnv
            }
        );
        assert_eq!(t.unwrap().expose(), "b");
    }

    #[tokio::test]
    async fn none_is_disabled_with_seed_warning() {
        let (s, t) = discover_token(env(&[("PATH", "/nonexistent")]), &GhCli::default()).await;
        assert!(t.is_none());
        let GithubStatus::Disabled { reason } = &s else {
            panic!("{s:?}")
        };
        assert!(reason.contains("GitHub CLI not authenticated - autoscaler disabled"));
        assert!(reason.contains("To enable: gh auth login"));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["state"], "disabled");
    }

    #[cfg(unix)]
    fn script(dir: &Path, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join("gh");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn gh_cli_token_failure_and_timeout() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().to_str().unwrap().to_string();
        script(
            d.path(),
            "[ \"$1 $2\" = \"auth token\" ] && echo gho_fromcli",
        );
        let (s, t) = discover_token(env(&[("PATH", &path)]), &GhCli::default()).await;
        assert_eq!(
            s,
            GithubStatus::Enabled {
                source: TokenSource::GhCli
            }
        );
        assert_eq!(t.unwrap().expose(), "gho_fromcli");

        script(d.path(), "echo 'not logged in' >&2; exit 1");
        let (s, _) = discover_token(env(&[("PATH", &path)]), &GhCli::default()).await;
        assert!(matches!(s, GithubStatus::Disabled { .. }));

        script(d.path(), "sleep 5; echo late");
        let gh = GhCli {
            timeout: Duration::from_millis(200),
            ..GhCli::default()
        };
        let t0 = std::time::Instant::now();
        let (s, _) = discover_token(env(&[("PATH", &path)]), &gh).await;
        assert!(matches!(s, GithubStatus::Disabled { .. }));
        assert!(t0.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn token_debug_is_redacted() {
        let t = GithubToken::new("ghp_secret123");
        assert_eq!(format!("{t:?}"), "GithubToken(****)");
    }

    #[test]
    fn error_messages() {
        let e = GithubError::Api {
            endpoint: "POST /repos/o/r/actions/runs/1/cancel".into(),
            status: 403,
            message: "Must have admin rights to Repository.".into(),
            documentation_url: None,
        };
        assert_eq!(
            e.to_string(),
            "POST /repos/o/r/actions/runs/1/cancel: 403 Forbidden: Must have admin rights to Repository."
        );
        let e = GithubError::RateLimited {
            endpoint: "GET /x".into(),
            retry_after: Duration::from_secs(60),
            reason: "Retry-After".into(),
            message: String::new(),
        };
        assert_eq!(
            e.to_string(),
            "GET /x: GitHub rate limit (Retry-After); retry in 60 s"
        );
    }
}
