//! The engine's GitHub service: the [`GithubClient`] (ETag cache on its own connection to the
//! store's WAL database, rate-limit pacing) and the engine commands that read through it.
//!
//! The token comes from `[github] token` (set by `GH_TOKEN`, then `GITHUB_TOKEN`), else from
//! `gh auth token`. Discovery runs off the engine's start path (the `gh` call may take seconds);
//! until it ends the service reports `starting`, and without a token it is off with the seed's
//! warning.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;
use serde::Serialize;

use super::command::{GhCacheStats, GhRateLimit, GhRepo, GhRepoList, GhRun, GhRunList};
use super::{Command, EngineError, Reply};
use crate::clock::{SharedClock, rfc3339};
use crate::config::GithubConfig;
use crate::github::{
    ClientConfig, GhCli, GithubCache, GithubClient, GithubStatus, GithubToken, RunFilter,
    TokenSource, discover_token,
};

/// The running GitHub service.
#[derive(Debug, Clone)]
pub struct GithubService {
    client: Arc<GithubClient>,
    /// Where the token came from.
    pub source: TokenSource,
}

/// Find a token and build the client. `Err` carries the reason GitHub is off.
pub async fn start(
    cfg: &GithubConfig,
    db_path: &Path,
    clock: SharedClock,
) -> Result<GithubService, String> {
    let configured = cfg.token.as_ref().map(|t| t.expose().to_string());
    let env = move |k: &str| match k {
        // The config already merged GH_TOKEN over GITHUB_TOKEN (and file/flags).
        "GH_TOKEN" => configured.clone(),
        "PATH" => std::env::var("PATH").ok(),
        _ => None,
    };
    let (status, token) = discover_token(env, &GhCli::default()).await;
    let (token, source): (GithubToken, TokenSource) = match (status, token) {
        (GithubStatus::Enabled { source }, Some(t)) => (t, source),
        (GithubStatus::Disabled { reason }, _) => return Err(reason),
        (GithubStatus::Enabled { .. }, None) => return Err("no GitHub token".into()),
    };
    // A token from the config counts as GH_TOKEN above; say where it really came from.
    let source = if cfg.token.is_some() {
        TokenSource::GhTokenEnv
    } else {
        source
    };
    let conn = Connection::open(db_path).map_err(|e| format!("GitHub cache: {e}"))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| format!("GitHub cache: {e}"))?;
    let cache =
        GithubCache::new(conn, cfg.cache_max_bytes).map_err(|e| format!("GitHub cache: {e}"))?;
    let config = ClientConfig {
        base_url: cfg.api_url.clone(),
        peer_budget: cfg.peer_lookup_budget,
        ..ClientConfig::default()
    };
    let client = GithubClient::new(token, config, cache, clock).map_err(|e| e.to_string())?;
    Ok(GithubService {
        client: Arc::new(client),
        source,
    })
}

/// What the header and `:cache` view show.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GithubView {
    /// Where the token came from.
    pub source: String,
    /// Latest core rate limit, if any response carried one.
    pub rate: Option<GhRateLimit>,
    /// Cache statistics.
    pub cache: GhCacheStats,
}

impl GithubService {
    /// The client (for the autoscaler and orchestrator).
    pub fn client(&self) -> &Arc<GithubClient> {
        &self.client
    }

    /// Rate limit and cache figures.
    pub fn view(&self) -> GithubView {
        GithubView {
            source: self.source.to_string(),
            rate: self.rate(),
            cache: self.stats(),
        }
    }

    /// The core rate limit as last reported.
    pub fn rate(&self) -> Option<GhRateLimit> {
        self.client.rate_limit("core").map(|r| GhRateLimit {
            limit: r.limit,
            remaining: r.remaining,
            used: r.used,
            reset_at: rfc3339(r.reset_epoch_s * 1000),
        })
    }

    fn stats(&self) -> GhCacheStats {
        let s = self.client.cache_stats();
        GhCacheStats {
            hit_rate: s.hit_rate,
            api_calls_saved: s.api_calls_saved,
            peer_hits: s.peer_hits,
            rejected: s.rejected,
            connected_peers: s.connected_peers,
            p2p_enabled: s.p2p_enabled,
            hits: s.hits,
            misses: s.misses,
            not_modified: s.not_modified,
            evictions: s.evictions,
            api_calls: s.api_calls,
            entries: s.entries,
            bytes: s.bytes,
        }
    }

    /// Run one GitHub command.
    pub async fn execute(&self, cmd: Command) -> Result<Reply, EngineError> {
        let gh = |e: crate::github::GithubError| EngineError::Invalid(e.to_string());
        match cmd {
            Command::GhListRepos { owner, kind, limit } => {
                let repos = self
                    .client
                    .repos_pushed_within(&owner, 36_500)
                    .await
                    .map_err(gh)?;
                let want_private = match kind.as_str() {
                    "all" => None,
                    "public" => Some(false),
                    "private" => Some(true),
                    other => {
                        return Err(EngineError::Invalid(format!(
                            "type {other:?}: expected all, public or private"
                        )));
                    }
                };
                let repos = repos
                    .into_iter()
                    .filter(|r| want_private.is_none_or(|p| r.private == p))
                    .take(limit.clamp(1, 1000))
                    .map(|r| GhRepo {
                        full_name: r.full_name,
                        private: r.private,
                        archived: r.archived,
                        pushed_at: r.pushed_at,
                        default_branch: r.default_branch,
                        html_url: r.html_url,
                    })
                    .collect();
                Ok(Reply::GhRepos(GhRepoList {
                    repos,
                    rate_limit: self.rate(),
                }))
            }
            Command::GhWorkflowRuns {
                repo,
                workflow,
                status,
                limit,
            } => {
                let (owner, name) = repo.split_once('/').ok_or_else(|| {
                    EngineError::Invalid(format!("repo {repo:?}: expected owner/name"))
                })?;
                let filter = RunFilter {
                    status,
                    limit: Some(limit.clamp(1, 1000)),
                    ..RunFilter::default()
                };
                let runs = self
                    .client
                    .workflow_runs(owner, name, &filter)
                    .await
                    .map_err(gh)?;
                let runs = runs
                    .into_iter()
                    .filter(|r| {
                        workflow.as_deref().is_none_or(|w| {
                            r.name.as_deref() == Some(w)
                                || r.path
                                    .as_deref()
                                    .is_some_and(|p| p == w || p.rsplit('/').next() == Some(w))
                        })
                    })
                    .map(|r| GhRun {
                        id: r.id,
                        name: r.name,
                        path: r.path,
                        head_branch: r.head_branch,
                        event: r.event,
                        status: r.status,
                        conclusion: r.conclusion,
                        created_at: r.created_at,
                        html_url: r.html_url,
                    })
                    .collect();
                Ok(Reply::GhRuns(GhRunList {
                    runs,
                    rate_limit: self.rate(),
                }))
            }
            Command::GhCacheStats => Ok(Reply::GhCache(self.stats())),
            other => Err(EngineError::Invalid(format!(
                "{} is not a GitHub command",
                other.kind().name()
            ))),
        }
    }
}
