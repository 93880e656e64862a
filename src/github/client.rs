//! [`GithubClient`]: typed GitHub REST operations with pacing, retries and the ETag cache.
//!
//! Built on octocrab 0.54's raw methods ([`octocrab::Octocrab::execute`]), which hand back the
//! whole `http::Response`: the client needs the status, `ETag`, `Link`, `Retry-After` and
//! `X-RateLimit-*` headers that octocrab's typed API hides, so no second HTTP stack (reqwest) is
//! needed. Octocrab's own retry layer is switched off ([`RetryConfig::None`]): retries follow
//! [`RetryPolicy`] here. Octocrab's stack adds the `Authorization` header only to requests for
//! the base URL's host, and follows redirects with tower-http's `FollowRedirect`, whose standard
//! policy drops `Authorization` on cross-origin hops; the job-log `302` to a signed blob URL is
//! therefore fetched without the token (see [`GithubClient::job_log`]).
//!
//! Every request goes through one path: freshness check (no request within an endpoint's
//! window, [`freshness`]), rate-limit wait ([`RateLimiter`]), conditional headers
//! (`If-None-Match`/`If-Modified-Since`), then the response: `304` → cached body; `2xx` → stored;
//! `403`/`429`/`5xx` → [`RetryPolicy::verdict`]; other `4xx` → [`GithubError::Api`].
//!
//! Requests follow <https://docs.github.com/en/rest/actions> (runs, jobs, logs, self-hosted
//! runners, runner groups), `/repos/{o}/{r}/contents` (read and write), branches, Git
//! references, pull requests, issues and check-run annotations, with
//! `Accept: application/vnd.github+json` and `X-GitHub-Api-Version: 2022-11-28`.

use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use octocrab::Octocrab;
use octocrab::service::middleware::retry::RetryConfig;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::cache::{
    CacheError, CacheKey, CacheStats, CachedEntry, Freshness, GithubCache, freshness,
    token_fingerprint,
};
use super::ratelimit::{
    RateLimitInfo, RateLimiter, RetryPolicy, RetryReason, RetrySignals, Verdict, header_str,
};
use super::seal::SealKey;
use super::share::{PeerCache, PeerFetchError, SealedExporter, Sharing};
use super::types::{
    Account, AccountKind, Annotation, Branch, BranchCreation, CommitComment, ContentEntry,
    FileCommit, FileUpdate, GitRef, Issue, IssueComment, JitConfig, JitConfigRequest, Job,
    JobsPage, NewIssue, NewPullRequest, PullRequest, Repository, Runner, RunnerGroup,
    RunnerGroupsPage, RunnerToken, RunnersPage, Workflow, WorkflowFile, WorkflowRun,
    WorkflowRunsPage, WorkflowsPage, parse_timestamp,
};
use super::{GithubError, GithubToken};
use crate::clock::{Millis, SharedClock};

/// Result alias.
pub type Result<T> = std::result::Result<T, GithubError>;

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// API root: `https://api.github.com` (default), `https://HOST/api/v3` for GitHub
    /// Enterprise Server, or a test server such as `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// Retry and pacing policy.
    pub policy: RetryPolicy,
    /// Connect timeout (default 10 s).
    pub connect_timeout: Duration,
    /// Read timeout per response (default 60 s; logs can be large).
    pub read_timeout: Duration,
    /// `per_page` for list endpoints (default 100, GitHub's maximum).
    pub per_page: u32,
    /// At most this many pages per listing (default 20).
    pub max_pages: usize,
    /// With mesh sharing on: longest time spent asking peers before a `GET` goes to GitHub
    /// (default 300 ms, all candidates together).
    pub peer_budget: Duration,
    /// With mesh sharing on: at most this many peers asked per lookup, most recent announcer
    /// first (default 3).
    pub peer_candidates: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            base_url: "https://api.github.com".into(),
            policy: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            per_page: 100,
            max_pages: 20,
            peer_budget: Duration::from_millis(300),
            peer_candidates: 3,
        }
    }
}

/// Where runners live: a repository or an organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunnerScope {
    /// `/repos/{owner}/{repo}/actions/runners...`
    Repo {
        /// Owner.
        owner: String,
        /// Repository.
        repo: String,
    },
    /// `/orgs/{org}/actions/runners...`
    Org {
        /// Organization.
        org: String,
    },
}

impl RunnerScope {
    /// A repository scope.
    pub fn repo(owner: impl Into<String>, repo: impl Into<String>) -> Self {
        RunnerScope::Repo {
            owner: owner.into(),
            repo: repo.into(),
        }
    }
    /// An organization scope.
    pub fn org(org: impl Into<String>) -> Self {
        RunnerScope::Org { org: org.into() }
    }
    fn prefix(&self) -> String {
        match self {
            RunnerScope::Repo { owner, repo } => format!("/repos/{}/{}", enc(owner), enc(repo)),
            RunnerScope::Org { org } => format!("/orgs/{}", enc(org)),
        }
    }
}

/// Filters of `GET /repos/{owner}/{repo}/actions/runs`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    /// `queued`, `in_progress`, `completed`, `failure`, ... (GitHub accepts statuses and
    /// conclusions here).
    pub status: Option<String>,
    /// Branch name.
    pub branch: Option<String>,
    /// Trigger event, e.g. `push`.
    pub event: Option<String>,
    /// Date range in GitHub's search syntax, e.g. `>=2024-05-01` or `2022-12-24`.
    pub created: Option<String>,
    /// Stop after this many runs (all pages up to `max_pages` if `None`).
    pub limit: Option<usize>,
}

/// A response as the request path hands it on.
#[derive(Debug, Clone)]
struct Fetched {
    body: Vec<u8>,
    link: Option<String>,
}

impl From<CachedEntry> for Fetched {
    fn from(e: CachedEntry) -> Self {
        Fetched {
            body: e.body,
            link: e.link,
        }
    }
}

/// What a raw exchange produced.
struct Raw {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// The GitHub client. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct GithubClient {
    octo: Octocrab,
    base: String,
    token: GithubToken,
    fingerprint: String,
    cache: Arc<Mutex<GithubCache>>,
    limiter: Mutex<RateLimiter>,
    policy: RetryPolicy,
    clock: SharedClock,
    per_page: u32,
    max_pages: usize,
    peer_budget: Duration,
    peer_candidates: usize,
    sharing: RwLock<Option<Arc<Sharing>>>,
}

impl std::fmt::Debug for GithubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubClient")
            .field("base", &self.base)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// Percent-encode one path segment or query value (RFC 3986 unreserved characters kept).
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `rel="next"` URL of a `Link` header, if any.
pub fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        let url = url.trim().strip_prefix('<')?.strip_suffix('>')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim();
            p.strip_prefix("rel=")
                .map(|v| v.trim_matches('"').split_whitespace().any(|r| r == "next"))
                .unwrap_or(false)
        });
        is_next.then(|| url.to_string())
    })
}

/// Describe a JSON decoding error the way operators read it: kind, position, message.
fn json_detail(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let msg = full.strip_suffix(&suffix).unwrap_or(&full);
    let kind = match e.classify() {
        serde_json::error::Category::Data => "unexpected JSON shape",
        _ => "malformed JSON",
    };
    format!("{kind} at line {} column {}: {msg}", e.line(), e.column())
}

fn endpoint(method: &Method, path_and_query: &str) -> String {
    let path = path_and_query.split('?').next().unwrap_or(path_and_query);
    format!("{method} {path}")
}

fn is_idempotent(m: &Method) -> bool {
    !matches!(*m, Method::POST | Method::PATCH)
}

fn reason_text(r: RetryReason) -> &'static str {
    match r {
        RetryReason::RetryAfter => "Retry-After",
        RetryReason::PrimaryExhausted => "primary limit exhausted until reset",
        RetryReason::SecondaryBackoff => "secondary limit, backing off",
        RetryReason::ServerError => "server error",
    }
}

/// What asking peers gave.
enum PeerOutcome {
    /// A fresh entry, stored and to be served.
    Hit(CachedEntry),
    /// A stale but valid entry newer than ours was stored.
    Stored,
    /// Nothing usable.
    Nothing,
}

/// Announce `key`, fetched or revalidated at `at`, to the mesh (entries that are always
/// revalidated are not worth announcing).
fn announce(sh: &Sharing, key: &CacheKey, at: Millis, ttl: Duration) {
    if !ttl.is_zero() {
        sh.peer
            .announce(key, at.saturating_add(ttl.as_millis() as Millis));
    }
}

#[derive(serde::Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    message: String,
    #[serde(default)]
    documentation_url: Option<String>,
}

impl GithubClient {
    /// Build a client for `token` with `config`, caching into `cache`, reading time from
    /// `clock`. Must be called inside a Tokio runtime (octocrab spawns its buffer worker).
    ///
    /// # Errors
    /// [`GithubError::Invalid`] if the base URL does not parse or the HTTP stack cannot be built.
    pub fn new(
        token: GithubToken,
        config: ClientConfig,
        cache: GithubCache,
        clock: SharedClock,
    ) -> Result<Self> {
        let base = config.base_url.trim_end_matches('/').to_string();
        let octo = Octocrab::builder()
            .base_uri(base.as_str())
            .map_err(|e| GithubError::Invalid(format!("base URL {base}: {e}")))?
            .personal_token(token.expose().to_string())
            .add_retry_config(RetryConfig::None)
            .set_connect_timeout(Some(config.connect_timeout))
            .set_read_timeout(Some(config.read_timeout))
            .build()
            .map_err(|e| GithubError::Invalid(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            octo,
            base,
            fingerprint: token_fingerprint(token.expose()),
            token,
            cache: Arc::new(Mutex::new(cache)),
            limiter: Mutex::new(RateLimiter::default()),
            policy: config.policy,
            clock,
            per_page: config.per_page.clamp(1, 100),
            max_pages: config.max_pages.max(1),
            peer_budget: config.peer_budget,
            peer_candidates: config.peer_candidates,
            sharing: RwLock::new(None),
        })
    }

    /// The API base URL, e.g. `https://api.github.com` or `https://ghe.example/api/v3`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Turn mesh sharing on: lookups ask `peer` before GitHub, new entries are announced to it.
    /// Entries are sealed under [`SealKey::derive`]`(mesh_secret, token)`, so only nodes that
    /// hold both read them. Returns the exporter the mesh answers peers' requests with.
    /// Calling it again replaces the mesh.
    pub fn enable_sharing(&self, peer: Arc<dyn PeerCache>, mesh_secret: &[u8]) -> SealedExporter {
        let seal = Arc::new(SealKey::derive(mesh_secret, self.token.expose()));
        *self.sharing.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(Sharing {
            peer,
            seal: seal.clone(),
        }));
        SealedExporter::new(self.cache.clone(), seal, self.clock.clone())
    }

    /// Turn mesh sharing off (the mesh stopped).
    pub fn disable_sharing(&self) {
        *self.sharing.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn sharing(&self) -> Option<Arc<Sharing>> {
        self.sharing
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The cache, for the mesh module (export/import sealed entries, peer-hit counting).
    pub fn cache(&self) -> Arc<Mutex<GithubCache>> {
        self.cache.clone()
    }

    /// This token's cache key for a `GET` of `path_and_query` (what the mesh shares under).
    pub fn cache_key(&self, path_and_query: &str) -> CacheKey {
        CacheKey::new(&self.fingerprint, "GET", path_and_query)
    }

    /// Cache and API-call statistics; with sharing on, `p2p_enabled` is true and
    /// `connected_peers` comes from the mesh.
    pub fn cache_stats(&self) -> CacheStats {
        let mut s = self.lock_cache().stats();
        if let Some(sh) = self.sharing() {
            s.p2p_enabled = true;
            s.connected_peers = sh.peer.connected_peers();
        }
        s
    }

    /// The latest rate-limit state GitHub reported for `resource` (`core`, `search`, ...).
    pub fn rate_limit(&self, resource: &str) -> Option<RateLimitInfo> {
        self.lock_limiter().get(resource).cloned()
    }

    fn lock_cache(&self) -> MutexGuard<'_, GithubCache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_limiter(&self) -> MutexGuard<'_, RateLimiter> {
        self.limiter.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> Millis {
        self.clock.now_ms()
    }

    /// Replace any occurrence of the token in text that came from outside.
    fn scrub(&self, s: &str) -> String {
        let t = self.token.expose();
        if t.is_empty() {
            s.to_string()
        } else {
            s.replace(t, "****")
        }
    }

    /// Turn a link or path into a path relative to the base URL.
    fn relative(&self, url: &str) -> Result<String> {
        if url.starts_with('/') {
            return Ok(url.to_string());
        }
        match url.strip_prefix(&self.base) {
            Some("") => Ok("/".into()),
            Some(rest) if rest.starts_with('/') || rest.starts_with('?') => Ok(rest.to_string()),
            _ => Err(GithubError::Invalid(format!(
                "refusing to follow a link outside {}: {}",
                self.base,
                url.split('?').next().unwrap_or(url)
            ))),
        }
    }

    /// Wait for pacing or a secondary-limit block; fail fast if the wait is too long.
    async fn wait_turn(&self, ep: &str) -> Result<()> {
        let now = self.now();
        let (delay, blocked) = {
            let l = self.lock_limiter();
            (
                l.delay_before(&self.policy, "core", now),
                l.blocked_until(now).is_some(),
            )
        };
        if delay.is_zero() {
            return Ok(());
        }
        if delay > self.policy.max_wait {
            return Err(GithubError::RateLimited {
                endpoint: ep.to_string(),
                retry_after: delay,
                reason: if blocked {
                    "blocked after an earlier rate-limit answer".into()
                } else {
                    "primary limit nearly exhausted; pacing until reset".into()
                },
                message: String::new(),
            });
        }
        tracing::debug!(
            endpoint = ep,
            delay_ms = delay.as_millis() as u64,
            "pacing GitHub request"
        );
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// One request/response with the retry policy applied. `extra` headers are added (the
    /// conditional ones).
    async fn exchange(
        &self,
        method: Method,
        pq: &str,
        body: Option<&serde_json::Value>,
        extra: &HeaderMap,
    ) -> Result<Raw> {
        let ep = endpoint(&method, pq);
        let idempotent = is_idempotent(&method);
        let mut attempt: u32 = 0;
        loop {
            self.wait_turn(&ep).await?;
            let mut builder = http::Request::builder()
                .method(method.clone())
                .uri(pq)
                .header(
                    http::header::ACCEPT,
                    HeaderValue::from_static("application/vnd.github+json"),
                );
            for (k, v) in extra {
                builder = builder.header(k, v);
            }
            let req = self.octo.build_request(builder, body).map_err(|e| {
                GithubError::Invalid(format!("{ep}: {}", self.scrub(&e.to_string())))
            })?;
            self.lock_cache().record_api_call();
            let sent = async {
                let res = self.octo.execute(req).await?;
                let (parts, b) = res.into_parts();
                let bytes = b.collect().await?.to_bytes();
                Ok::<_, octocrab::Error>((parts, bytes))
            }
            .await;
            let (parts, bytes) = match sent {
                Ok(x) => x,
                Err(e) => {
                    let detail = self.scrub(&e.to_string());
                    if idempotent && attempt < self.policy.server_error_retries {
                        let after = self.policy.server_error_base * (1u32 << attempt.min(16));
                        tracing::warn!(endpoint = %ep, attempt, "GitHub transport error, retrying in {after:?}: {detail}");
                        tokio::time::sleep(after).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(GithubError::Transport {
                        endpoint: ep,
                        detail,
                    });
                }
            };
            let status = parts.status.as_u16();
            let info = RateLimitInfo::from_headers(&parts.headers);
            self.lock_limiter()
                .observe(info, status != StatusCode::NOT_MODIFIED.as_u16());
            tracing::debug!(endpoint = %ep, status, "GitHub response");
            if status < 400 {
                return Ok(Raw {
                    status,
                    headers: parts.headers,
                    body: bytes.to_vec(),
                });
            }
            let err: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
            let message = self.scrub(&err.message);
            let signals = RetrySignals::from_lookup(|n| header_str(&parts.headers, n), &message);
            let now = self.now();
            match self.policy.verdict(
                status,
                &signals,
                attempt,
                idempotent,
                now,
                rand::random::<f64>(),
            ) {
                Verdict::Done => {
                    return Err(GithubError::Api {
                        endpoint: ep,
                        status,
                        message,
                        documentation_url: err.documentation_url,
                    });
                }
                Verdict::Retry { after, reason } => {
                    tracing::warn!(
                        endpoint = %ep,
                        status,
                        attempt,
                        "GitHub {}: waiting {:.1} s before retrying",
                        reason_text(reason),
                        after.as_secs_f64()
                    );
                    let until = now + after.as_millis() as Millis;
                    let rate = reason != RetryReason::ServerError;
                    if rate {
                        self.lock_limiter().block_until(until);
                    }
                    tokio::time::sleep(after).await;
                    if rate {
                        self.lock_limiter().release(until);
                    }
                    attempt += 1;
                }
                Verdict::GiveUp { after, reason } => {
                    self.lock_limiter()
                        .block_until(now + after.as_millis() as Millis);
                    tracing::warn!(
                        endpoint = %ep,
                        status,
                        "GitHub {}: giving up for now, retry in {} s",
                        reason_text(reason),
                        after.as_secs()
                    );
                    return Err(GithubError::RateLimited {
                        endpoint: ep,
                        retry_after: after,
                        reason: reason_text(reason).to_string(),
                        message,
                    });
                }
            }
        }
    }

    /// `GET` through the cache: a fresh local entry; else (sharing on) a fresh entry from a
    /// peer; else GitHub, conditional on our entry's validators (or a peer's stale one).
    async fn get_cached(&self, pq: &str) -> Result<Fetched> {
        self.get_cached_opts(pq, false).await
    }

    /// `GET` through the cache; `revalidate` skips the freshness window, and so the peers too
    /// (their fresh copy is no newer than ours would be): a conditional request is still sent,
    /// so an unchanged answer is a 304 that costs no rate limit.
    async fn get_cached_opts(&self, pq: &str, revalidate: bool) -> Result<Fetched> {
        let fresh = freshness("GET", pq);
        let key = CacheKey::new(&self.fingerprint, "GET", pq);
        let now = self.now();
        let mut cached = match fresh {
            Freshness::NoStore => None,
            Freshness::Ttl(ttl) => {
                let mut c = self.lock_cache();
                let e = c.get(&key, now)?;
                if let Some(e) = &e
                    && !revalidate
                    && !ttl.is_zero()
                    && e.is_fresh(ttl, now)
                {
                    c.record_hit();
                    tracing::debug!(endpoint = %endpoint(&Method::GET, pq), "GitHub cache hit (fresh)");
                    return Ok(e.clone().into());
                }
                e
            }
        };
        let sharing = self.sharing();
        if let (Freshness::Ttl(ttl), Some(sh), false) = (fresh, &sharing, revalidate) {
            match self.ask_peers(sh, &key, ttl, cached.is_some()).await? {
                PeerOutcome::Hit(e) => {
                    tracing::debug!(endpoint = %endpoint(&Method::GET, pq), "served from a peer's shared entry");
                    return Ok(e.into());
                }
                // A stale but valid entry newer than ours: its validators make the request
                // conditional.
                PeerOutcome::Stored => cached = self.lock_cache().get(&key, self.now())?,
                PeerOutcome::Nothing => {}
            }
        }
        let mut extra = HeaderMap::new();
        if let Some(e) = &cached {
            if let Some(v) = e
                .etag
                .as_deref()
                .and_then(|v| HeaderValue::from_str(v).ok())
            {
                extra.insert(http::header::IF_NONE_MATCH, v);
            }
            if let Some(v) = e
                .last_modified
                .as_deref()
                .and_then(|v| HeaderValue::from_str(v).ok())
            {
                extra.insert(http::header::IF_MODIFIED_SINCE, v);
            }
        }
        let raw = self.exchange(Method::GET, pq, None, &extra).await?;
        let now = self.now();
        if raw.status == 304 {
            let mut c = self.lock_cache();
            return match cached {
                Some(e) => {
                    c.record_not_modified();
                    c.refresh(&key, now)?;
                    drop(c);
                    tracing::debug!(endpoint = %endpoint(&Method::GET, pq), "GitHub 304, served from cache");
                    if let (Freshness::Ttl(ttl), Some(sh)) = (fresh, &sharing) {
                        announce(sh, &key, now, ttl);
                    }
                    Ok(e.into())
                }
                None => Err(GithubError::Api {
                    endpoint: endpoint(&Method::GET, pq),
                    status: 304,
                    message: "304 without a cached entry".into(),
                    documentation_url: None,
                }),
            };
        }
        let link = header_str(&raw.headers, "link");
        if let Freshness::Ttl(ttl) = fresh {
            let mut c = self.lock_cache();
            c.record_miss();
            let entry = CachedEntry {
                etag: header_str(&raw.headers, "etag"),
                last_modified: header_str(&raw.headers, "last-modified"),
                link: link.clone(),
                status: raw.status,
                body: raw.body.clone(),
                fetched_at: now,
            };
            // Only well-formed JSON is kept: a truncated body must not be served again.
            if (200..300).contains(&raw.status)
                && (entry.has_validator() || !ttl.is_zero())
                && serde_json::from_slice::<serde::de::IgnoredAny>(&raw.body).is_ok()
            {
                c.put(&key, &entry, now)?;
                drop(c);
                if let Some(sh) = &sharing {
                    announce(sh, &key, now, ttl);
                }
            }
        }
        Ok(Fetched {
            body: raw.body,
            link,
        })
    }

    /// Ask the peers that announced `key` (most recent first, at most `peer_candidates`, within
    /// `peer_budget` all told). With a local entry only peers whose window is still open are
    /// worth asking; without one, a stale entry still brings an `ETag`.
    async fn ask_peers(
        &self,
        sh: &Sharing,
        key: &CacheKey,
        ttl: Duration,
        have_local: bool,
    ) -> Result<PeerOutcome> {
        if ttl.is_zero() && have_local {
            return Ok(PeerOutcome::Nothing);
        }
        let candidates = sh
            .peer
            .candidates(key, self.now(), have_local, self.peer_candidates);
        if candidates.is_empty() {
            return Ok(PeerOutcome::Nothing);
        }
        let deadline = tokio::time::Instant::now() + self.peer_budget;
        let mut outcome = PeerOutcome::Nothing;
        for peer in candidates {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let sealed = match tokio::time::timeout(left, sh.peer.fetch(&peer, key)).await {
                Err(_) => {
                    tracing::info!(%peer, budget_ms = self.peer_budget.as_millis() as u64, "peers did not answer within the lookup budget; asking GitHub");
                    break;
                }
                Ok(Ok(Some(b))) => b,
                Ok(Ok(None)) => continue,
                Ok(Err(PeerFetchError::Unreachable(why))) => {
                    tracing::debug!(%peer, "peer cache lookup failed: {why}");
                    continue;
                }
                Ok(Err(e @ PeerFetchError::Invalid(_))) => {
                    self.lock_cache().record_rejected();
                    tracing::warn!(%peer, "rejected a peer's cache answer: {e}");
                    sh.peer.reject(&peer, &e.to_string());
                    continue;
                }
            };
            let now = self.now();
            let imported = self
                .lock_cache()
                .import_sealed_entry(key, &sealed, &sh.seal, now);
            match imported {
                Ok((e, _)) if !ttl.is_zero() && e.is_fresh(ttl, now) => {
                    self.lock_cache().record_peer_hit();
                    // Now this node holds it too: more holders spread the load.
                    announce(sh, key, e.fetched_at, ttl);
                    return Ok(PeerOutcome::Hit(e));
                }
                Ok((_, stored)) => {
                    if stored {
                        outcome = PeerOutcome::Stored;
                    }
                }
                Err(CacheError::Sqlite(e)) => return Err(CacheError::Sqlite(e).into()),
                Err(e) => {
                    tracing::warn!(%peer, "rejected a peer's shared cache entry: {e}");
                    sh.peer.reject(&peer, &e.to_string());
                }
            }
        }
        Ok(outcome)
    }

    fn decode<T: DeserializeOwned>(&self, ep: &str, body: &[u8]) -> Result<T> {
        serde_json::from_slice(body).map_err(|e| GithubError::Malformed {
            endpoint: ep.to_string(),
            detail: json_detail(&e),
        })
    }

    async fn get_json<T: DeserializeOwned>(&self, pq: &str) -> Result<T> {
        let f = self.get_cached(pq).await?;
        self.decode(&endpoint(&Method::GET, pq), &f.body)
    }

    /// A write (`POST`/`PUT`/`DELETE`) with an optional JSON body; returns the raw answer.
    async fn write<B: Serialize>(&self, method: Method, pq: &str, body: Option<&B>) -> Result<Raw> {
        let v = match body {
            Some(b) => Some(serde_json::to_value(b).map_err(|e| {
                GithubError::Invalid(format!(
                    "{}: cannot encode body: {e}",
                    endpoint(&method, pq)
                ))
            })?),
            None => None,
        };
        self.exchange(method, pq, v.as_ref(), &HeaderMap::new())
            .await
    }

    async fn write_json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        pq: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let ep = endpoint(&method, pq);
        let raw = self.write(method, pq, body).await?;
        self.decode(&ep, &raw.body)
    }

    fn invalidate(&self, path_prefix: &str) {
        let prefix = format!("{} GET {path_prefix}", self.fingerprint);
        if let Err(e) = self.lock_cache().remove_prefix(&prefix) {
            tracing::warn!("cannot invalidate GitHub cache entries: {e}");
        }
    }

    /// Follow `Link: rel="next"` from `first`, collecting items; `keep_going` sees each page's
    /// items and may stop the walk. At most `max_pages` pages.
    async fn paginate<P, I>(
        &self,
        first: String,
        items: impl Fn(P) -> Vec<I>,
        keep_going: impl FnMut(&[I]) -> bool,
    ) -> Result<Vec<I>>
    where
        P: DeserializeOwned,
    {
        self.paginate_opts(first, items, keep_going, false).await
    }

    /// [`Self::paginate`]; `revalidate` skips the freshness window of every page.
    async fn paginate_opts<P, I>(
        &self,
        first: String,
        items: impl Fn(P) -> Vec<I>,
        mut keep_going: impl FnMut(&[I]) -> bool,
        revalidate: bool,
    ) -> Result<Vec<I>>
    where
        P: DeserializeOwned,
    {
        let mut out = Vec::new();
        let mut pq = first;
        for _ in 0..self.max_pages {
            let f = self.get_cached_opts(&pq, revalidate).await?;
            let page: P = self.decode(&endpoint(&Method::GET, &pq), &f.body)?;
            let batch = items(page);
            let go = keep_going(&batch);
            out.extend(batch);
            if !go {
                break;
            }
            match f.link.as_deref().and_then(next_link) {
                Some(next) => pq = self.relative(&next)?,
                None => break,
            }
        }
        Ok(out)
    }

    // ---- accounts and repositories ----

    /// `GET /users/{owner}`: the account, with whether it is a user or an organization.
    ///
    /// # Errors
    /// [`GithubError`] (404 if it does not exist).
    pub async fn account(&self, owner: &str) -> Result<Account> {
        self.get_json(&format!("/users/{}", enc(owner))).await
    }

    /// `GET /user`: the token's own account.
    ///
    /// # Errors
    /// [`GithubError`].
    pub async fn authenticated_user(&self) -> Result<Account> {
        self.get_json("/user").await
    }

    /// Repositories of `owner` (user or organization, detected via `GET /users/{owner}`) pushed
    /// within `days` days of now, newest push first. Archived and disabled ones are skipped.
    ///
    /// Lists `GET /orgs/{owner}/repos`, `GET /user/repos?affiliation=owner` (when `owner` is the
    /// token's user, to include private repositories) or `GET /users/{owner}/repos`, sorted by
    /// `pushed` descending, and stops paging at the first repository pushed before the cutoff.
    ///
    /// # Errors
    /// [`GithubError`].
    pub async fn repos_pushed_within(&self, owner: &str, days: u32) -> Result<Vec<Repository>> {
        let cutoff = self.now() - i64::from(days) * 86_400_000;
        let acct = self.account(owner).await?;
        let pp = self.per_page;
        let first = match acct.kind {
            AccountKind::Organization => format!(
                "/orgs/{}/repos?type=all&sort=pushed&direction=desc&per_page={pp}",
                enc(owner)
            ),
            _ => {
                let me = self.authenticated_user().await.ok();
                if me.is_some_and(|m| m.login.eq_ignore_ascii_case(owner)) {
                    format!(
                        "/user/repos?affiliation=owner&sort=pushed&direction=desc&per_page={pp}"
                    )
                } else {
                    format!(
                        "/users/{}/repos?type=owner&sort=pushed&direction=desc&per_page={pp}",
                        enc(owner)
                    )
                }
            }
        };
        let pushed = |r: &Repository| r.pushed_at.as_deref().and_then(parse_timestamp);
        let all = self
            .paginate(
                first,
                |p: Vec<Repository>| p,
                |page| page.iter().all(|r| pushed(r).is_some_and(|t| t >= cutoff)),
            )
            .await?;
        Ok(all
            .into_iter()
            .filter(|r| pushed(r).is_some_and(|t| t >= cutoff) && !r.archived && !r.disabled)
            .collect())
    }

    // ---- runs, jobs, logs ----

    /// `GET /repos/{owner}/{repo}/actions/runs` with `filter`, all pages up to the limits.
    ///
    /// # Errors
    /// [`GithubError`].
    pub async fn workflow_runs(
        &self,
        owner: &str,
        repo: &str,
        filter: &RunFilter,
    ) -> Result<Vec<WorkflowRun>> {
        let mut q = Vec::new();
        for (k, v) in [
            ("status", &filter.status),
            ("branch", &filter.branch),
            ("event", &filter.event),
            ("created", &filter.created),
        ] {
            if let Some(v) = v {
                q.push(format!("{k}={}", enc(v)));
            }
        }
        let per_page = filter
            .limit
            .map_or(self.per_page, |l| (l as u32).clamp(1, self.per_page));
        q.push(format!("per_page={per_page}"));
        let first = format!(
            "/repos/{}/{}/actions/runs?{}",
            enc(owner),
            enc(repo),
            q.join("&")
        );
        let limit = filter.limit.unwrap_or(usize::MAX);
        let mut seen = 0usize;
        let mut runs = self
            .paginate(
                first,
                |p: WorkflowRunsPage| p.workflow_runs,
                |page| {
                    seen += page.len();
                    seen < limit
                },
            )
            .await?;
        runs.truncate(limit);
        Ok(runs)
    }

    /// `GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs?filter=latest`: the jobs of a run's
    /// latest attempt with labels, status, conclusion, runner and steps.
    ///
    /// # Errors
    /// [`GithubError`].
    pub async fn run_jobs(&self, owner: &str, repo: &str, run_id: u64) -> Result<Vec<Job>> {
        let first = format!(
            "/repos/{}/{}/actions/runs/{run_id}/jobs?filter=latest&per_page={}",
            enc(owner),
            enc(repo),
            self.per_page
        );
        self.paginate(first, |p: JobsPage| p.jobs, |_| true).await
    }

    /// `GET /repos/{owner}/{repo}/actions/jobs/{job_id}`.
    ///
    /// # Errors
    /// [`GithubError`].
    pub async fn job(&self, owner: &str, repo: &str, job_id: u64) -> Result<Job> {
        self.get_json(&format!(
            "/repos/{}/{}/actions/jobs/{job_id}",
            enc(owner),
            enc(repo)
        ))
        .await
    }

    /// [`GithubClient::job`] as GitHub has it now: skips the cache's freshness window (the
    /// autoscaler's re-check just before it launches a runner for the job). With a cached
    /// ETag the request is conditional; a `304` costs no rate limit.
    ///
    /// # Errors
    /// [`GithubError`].
    pub async fn job_now(&self, owner: &str, repo: &str, job_id: u64) -> Result<Job> {
        let pq = format!("/repos/{}/{}/actions/jobs/{job_id}", enc(owner), enc(repo));
        let f = self.get_cached_opts(&pq, true).await?;
        self.decode(&endpoint(&Method::GET, &pq), &f.body)
    }

    /// A job's plain-text log: `GET /repos/{owner}/{repo}/actions/jobs/{job_id}/logs` answers
    /// `302` to a short-lived signed URL on another host; the redirect is followed **without**
    /// the `Authorization` header (octocrab's `FollowRedirect` drops it on a cross-origin hop; the
    /// fallback below sends none to a foreign host either). Not cached. Invalid UTF-8 is
    /// replaced.
    ///
    /// # Errors
    /// [`GithubError`] (404 or 410 once logs have expired).
    pub async fn job_log(&self, owner: &str, repo: &str, job_id: u64) -> Result<String> {
        let pq = format!(
            "/repos/{}/{}/actions/jobs/{job_id}/logs",
            enc(owner),
            enc(repo)
        );
        let raw = self
            .exchange(Method::GET, &pq, None, &HeaderMap::new())
            .await?;
        if (300..400).contains(&raw.status) {
            // FollowRedirect did not follow (e.g. its hop limit): follow once by hand.
            let ep = format!("{} (redirect)", endpoint(&Method::GET, &pq));
            let loc = header_str(&raw.headers, "location").ok_or_else(|| GithubError::Api {
                endpoint: ep.clone(),
                status: raw.status,
                message: "redirect without Location".into(),
                documentation_url: None,
            })?;
            let res = self
                .octo
                ._get(loc.as_str())
                .await
                .map_err(|e| GithubError::Transport {
                    endpoint: ep.clone(),
                    detail: self.scrub(&e.to_string()),
                })?;
            let status = res.status().as_u16();
            let bytes = res
                .into_body()
                .collect()
                .await
                .map_err(|e| GithubError::Transport {
                    endpoint: ep.clone(),
                    detail: self.scrub(&e.to_string()),
                })?
                .to_bytes();
            if status >= 300 {
                return Err(GithubError::Api {
                    endpoint: ep,
                    status,
                    message: String::new(),
                    documentation_url: None,
                });
            }
            return Ok(String::from_utf8_lossy(&bytes).into_owned());
        }
        Ok(String::from_utf8_lossy(&raw.body).into_owned())
    }

    /// `POST /repos/{owner}/{repo}/actions/runs/{run_id}/rerun-failed-jobs`.
    ///
    /// # Errors
    /// [`GithubError`] (403 without write access).
    pub async fn rerun_failed_jobs(&self, owner: &str, repo: &str, run_id: u64) -> Result<()> {
        let base = format!("/repos/{}/{}/actions/runs", enc(owner), enc(repo));
        self.write::<()>(
            Method::POST,
            &format!("{base}/{run_id}/rerun-failed-jobs"),
            None,
        )
        .await?;
        self.invalidate(&base);
        Ok(())
    }

    /// `POST /repos/{owner}/{repo}/actions/runs/{run_id}/cancel` (answers `202`).
    ///
    /// # Errors
    /// [`GithubError`] (409 if already completed).
    pub async fn cancel_run(&self, owner: &str, repo: &str, run_id: u64) -> Result<()> {
        let base = format!("/repos/{}/{}/actions/runs", enc(owner), enc(repo));
        self.write::<()>(Method::POST, &format!("{base}/{run_id}/cancel"), None)
            .await?;
        self.invalidate(&base);
        Ok(())
    }

    /// `GET /repos/{owner}/{repo}/check-runs/{check_run_id}/annotations` (a job's id is its
    /// check-run id): where "exceeded the maximum execution time" is reported.
    ///
    /// # Errors
    /// [`GithubError`].
    pub async fn check_run_annotations(
        &self,
        owner: &str,
        repo: &str,
        check_run_id: u64,
    ) -> Result<Vec<Annotation>> {
        let first = format!(
            "/repos/{}/{}/check-runs/{check_run_id}/annotations?per_page={}",
            enc(owner),
            enc(repo),
            self.per_page
        );
        self.paginate(first, |p: Vec<Annotation>| p, |_| true).await
    }

    // ---- workflow files ----

    /// `GET /repos/{owner}/{repo}/actions/workflows`, all pages.
    ///
    /// # Errors
    /// [`GithubError`].
    pub async fn workflows(&self, owner: &str, repo: &str) -> Result<Vec<Workflow>> {
        let first = format!(
            "/repos/{}/{}/actions/workflows?per_page={}",
            enc(owner),
            enc(repo),
            self.per_page
        );
        self.paginate(first, |p: WorkflowsPage| p.workflows, |_| true)
            .await
    }

    /// `GET /repos/{owner}/{repo}/contents/{path}[?ref=]` for a file: its decoded bytes.
    ///
    /// # Errors
    /// [`GithubError::Malformed`] if it is a directory or the base64 does not decode.
    pub async fn file_content(
        &self,
        owner: &str,
        repo: &str,
        path: &str,
        git_ref: Option<&str>,
    ) -> Result<Vec<u8>> {
        let pq = contents_path(owner, repo, path, git_ref);
        let entry: ContentEntry = self.get_json(&pq).await?;
        entry.decode().map_err(|detail| GithubError::Malformed {
            endpoint: endpoint(&Method::GET, &pq),
            detail,
        })
    }

    /// The workflow files of a repository: lists `.github/workflows` through the contents API and
    /// reads each `.yml`/`.yaml` file. A repository without the directory has none.
    ///
    /// # Errors
    /// [`GithubError`].
    pub async fn workflow_files(
        &self,
        owner: &str,
        repo: &str,
        git_ref: Option<&str>,
    ) -> Result<Vec<WorkflowFile>> {
        let dir = contents_path(owner, repo, ".github/workflows", git_ref);
        let entries: Vec<ContentEntry> = match self.get_json(&dir).await {
            Ok(v) => v,
            Err(GithubError::Api { status: 404, .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for e in entries
            .into_iter()
            .filter(|e| e.kind == "file" && (e.name.ends_with(".yml") || e.name.ends_with(".yaml")))
        {
            let bytes = self.file_content(owner, repo, &e.path, git_ref).await?;
            out.push(WorkflowFile {
                path: e.path,
                sha: e.sha,
                text: String::from_utf8_lossy(&bytes).into_owned(),
            });
        }
        Ok(out)
    }

    // ---- branches, commits, pull requests (the orchestrator's patches) ----

    /// `GET /repos/{owner}/{repo}`: the repository, with its `default_branch`
    /// (<https://docs.github.com/en/rest/repos/repos#get-a-repository>).
    ///
    /// # Errors
    /// [`GithubError`] (404 if it does not exist or the token cannot see it).
    pub async fn repository(&self, owner: &str, repo: &str) -> Result<Repository> {
        self.get_json(&format!("/repos/{}/{}", enc(owner), enc(repo)))
            .await
    }

    /// `GET /repos/{owner}/{repo}/branches/{branch}`
    /// (<https://docs.github.com/en/rest/branches/branches#get-a-branch>).
    ///
    /// # Errors
    /// [`GithubError`] (404 if there is no such branch).
    pub async fn branch(&self, owner: &str, repo: &str, branch: &str) -> Result<Branch> {
        self.get_json(&format!(
            "/repos/{}/{}/branches/{}",
            enc(owner),
            enc(repo),
            enc(branch)
        ))
        .await
    }

    /// `POST /repos/{owner}/{repo}/git/refs` with `{"ref": "refs/heads/{branch}", "sha"}`:
    /// create `branch` at commit `sha`
    /// (<https://docs.github.com/en/rest/git/refs#create-a-reference>). GitHub's
    /// `422 Reference already exists` is [`BranchCreation::AlreadyExists`], not an error, so a
    /// second attempt reuses the branch. Not retried on `5xx`.
    ///
    /// # Errors
    /// [`GithubError`] (422 for an unknown commit, 403/404 without write access).
    pub async fn create_branch(
        &self,
        owner: &str,
        repo: &str,
        branch: &str,
        sha: &str,
    ) -> Result<BranchCreation> {
        #[derive(Serialize)]
        struct B<'a> {
            #[serde(rename = "ref")]
            name: &'a str,
            sha: &'a str,
        }
        let name = format!("refs/heads/{branch}");
        let pq = format!("/repos/{}/{}/git/refs", enc(owner), enc(repo));
        match self
            .write_json::<_, GitRef>(Method::POST, &pq, Some(&B { name: &name, sha }))
            .await
        {
            Ok(r) => {
                self.invalidate(&format!("/repos/{}/{}/branches", enc(owner), enc(repo)));
                Ok(BranchCreation::Created(r))
            }
            Err(GithubError::Api {
                status: 422,
                message,
                ..
            }) if message.to_ascii_lowercase().contains("already exists") => {
                Ok(BranchCreation::AlreadyExists)
            }
            Err(e) => Err(e),
        }
    }

    /// `GET /repos/{owner}/{repo}/contents/{path}?ref={git_ref}` for a file about to be
    /// written: the entry with its blob `sha` and base64 `content`
    /// ([`ContentEntry::decode`])
    /// (<https://docs.github.com/en/rest/repos/contents#get-repository-content>). A branch or
    /// tag is read fresh (a write needs the current blob SHA); a full commit SHA names content
    /// that never changes, so that answer may come from the cache.
    ///
    /// # Errors
    /// [`GithubError::Api`] with status 404 if there is no such file at `git_ref`;
    /// [`GithubError::Malformed`] if the path is a directory.
    pub async fn file_entry(
        &self,
        owner: &str,
        repo: &str,
        path: &str,
        git_ref: &str,
    ) -> Result<ContentEntry> {
        let pq = contents_path(owner, repo, path, Some(git_ref));
        let ep = endpoint(&Method::GET, &pq);
        let is_commit = git_ref.len() == 40 && git_ref.bytes().all(|b| b.is_ascii_hexdigit());
        let body = if is_commit {
            self.get_cached(&pq).await?.body
        } else {
            let raw = self
                .exchange(Method::GET, &pq, None, &HeaderMap::new())
                .await?;
            if raw.status != 200 {
                return Err(GithubError::Api {
                    endpoint: ep,
                    status: raw.status,
                    message: "expected 200 with the file".into(),
                    documentation_url: None,
                });
            }
            raw.body
        };
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(serde_json::Value::Array(_)) => Err(GithubError::Malformed {
                endpoint: ep,
                detail: format!("{path} is a directory, not a file"),
            }),
            _ => self.decode(&ep, &body),
        }
    }

    /// `PUT /repos/{owner}/{repo}/contents/{path}` with `{message, content, sha, branch}`:
    /// one commit on `update.branch` that sets the file
    /// (<https://docs.github.com/en/rest/repos/contents#create-or-update-file-contents>).
    /// Cached reads of the path are dropped.
    ///
    /// # Errors
    /// [`GithubError`] (409 if `sha` is not the branch's current blob, 422 on a bad body,
    /// 404/403 without write access).
    pub async fn put_file(
        &self,
        owner: &str,
        repo: &str,
        path: &str,
        update: &FileUpdate,
    ) -> Result<FileCommit> {
        let pq = contents_path(owner, repo, path, None);
        let out = self.write_json(Method::PUT, &pq, Some(update)).await?;
        self.invalidate(&pq);
        Ok(out)
    }

    /// `POST /repos/{owner}/{repo}/pulls` with `{title, head, base, body,
    /// maintainer_can_modify}` (<https://docs.github.com/en/rest/pulls/pulls#create-a-pull-request>).
    /// Not retried on `5xx`.
    ///
    /// # Errors
    /// [`GithubError`] (422 if a pull request for `head` is already open, if `head` has no
    /// commit that `base` lacks, or if a branch does not exist).
    pub async fn create_pull_request(
        &self,
        owner: &str,
        repo: &str,
        pr: &NewPullRequest,
    ) -> Result<PullRequest> {
        let pq = format!("/repos/{}/{}/pulls", enc(owner), enc(repo));
        let out = self.write_json(Method::POST, &pq, Some(pr)).await?;
        self.invalidate(&pq);
        Ok(out)
    }

    /// `GET /repos/{owner}/{repo}/pulls?head={head}&state={state}`, all pages: pull requests
    /// from `head` (`owner:branch`) (<https://docs.github.com/en/rest/pulls/pulls#list-pull-requests>).
    ///
    /// # Errors
    /// [`GithubError`].
    pub async fn pull_requests_from(
        &self,
        owner: &str,
        repo: &str,
        head: &str,
        state: &str,
    ) -> Result<Vec<PullRequest>> {
        let first = format!(
            "/repos/{}/{}/pulls?head={}&state={}&per_page={}",
            enc(owner),
            enc(repo),
            enc(head),
            enc(state),
            self.per_page
        );
        self.paginate(first, |p: Vec<PullRequest>| p, |_| true)
            .await
    }

    // ---- runners ----

    /// Self-hosted runners of a repository or organization, all pages.
    ///
    /// # Errors
    /// [`GithubError`] (403 without admin rights).
    pub async fn runners(&self, scope: &RunnerScope) -> Result<Vec<Runner>> {
        let first = format!(
            "{}/actions/runners?per_page={}",
            scope.prefix(),
            self.per_page
        );
        self.paginate(first, |p: RunnersPage| p.runners, |_| true)
            .await
    }

    /// [`GithubClient::runners`] as GitHub has them now (the autoscaler's reconciliation):
    /// every page is revalidated past the freshness window; unchanged pages are `304`s that
    /// cost no rate limit.
    ///
    /// # Errors
    /// [`GithubError`].
    pub async fn runners_now(&self, scope: &RunnerScope) -> Result<Vec<Runner>> {
        let first = format!(
            "{}/actions/runners?per_page={}",
            scope.prefix(),
            self.per_page
        );
        self.paginate_opts(first, |p: RunnersPage| p.runners, |_| true, true)
            .await
    }

    /// `POST {scope}/actions/runners/registration-token`: a one-hour token for `config.sh`.
    ///
    /// # Errors
    /// [`GithubError`].
    pub async fn registration_token(&self, scope: &RunnerScope) -> Result<RunnerToken> {
        self.write_json::<(), _>(
            Method::POST,
            &format!("{}/actions/runners/registration-token", scope.prefix()),
            None,
        )
        .await
    }

    /// `POST {scope}/actions/runners/remove-token`: a token for `config.sh remove`.
    ///
    /// # Errors
    /// [`GithubError`].
    pub async fn remove_token(&self, scope: &RunnerScope) -> Result<RunnerToken> {
        self.write_json::<(), _>(
            Method::POST,
            &format!("{}/actions/runners/remove-token", scope.prefix()),
            None,
        )
        .await
    }

    /// `POST {scope}/actions/runners/generate-jitconfig` with body
    /// `{name, runner_group_id, labels, work_folder}`: registers an ephemeral runner and returns
    /// its encoded JIT config. Not retried on `5xx` (it may have registered the runner).
    ///
    /// # Errors
    /// [`GithubError`] (409 if the name is taken, 422 on bad labels).
    pub async fn generate_jitconfig(
        &self,
        scope: &RunnerScope,
        req: &JitConfigRequest,
    ) -> Result<JitConfig> {
        let prefix = scope.prefix();
        let out = self
            .write_json(
                Method::POST,
                &format!("{prefix}/actions/runners/generate-jitconfig"),
                Some(req),
            )
            .await?;
        self.invalidate(&format!("{prefix}/actions/runners"));
        Ok(out)
    }

    /// `GET /orgs/{org}/actions/runner-groups`, all pages.
    ///
    /// # Errors
    /// [`GithubError`].
    pub async fn runner_groups(&self, org: &str) -> Result<Vec<RunnerGroup>> {
        let first = format!(
            "/orgs/{}/actions/runner-groups?per_page={}",
            enc(org),
            self.per_page
        );
        self.paginate(first, |p: RunnerGroupsPage| p.runner_groups, |_| true)
            .await
    }

    /// The runner group for new JIT runners: `1` for a repository; for an organization the group
    /// marked `default` (or `1` if none is marked).
    ///
    /// # Errors
    /// [`GithubError`].
    pub async fn default_runner_group_id(&self, scope: &RunnerScope) -> Result<u64> {
        match scope {
            RunnerScope::Repo { .. } => Ok(1),
            RunnerScope::Org { org } => Ok(self
                .runner_groups(org)
                .await?
                .iter()
                .find(|g| g.default)
                .map_or(1, |g| g.id)),
        }
    }

    /// `DELETE {scope}/actions/runners/{runner_id}` (answers `204`).
    ///
    /// # Errors
    /// [`GithubError`] (422 while the runner is running a job).
    pub async fn delete_runner(&self, scope: &RunnerScope, runner_id: u64) -> Result<()> {
        let prefix = scope.prefix();
        self.write::<()>(
            Method::DELETE,
            &format!("{prefix}/actions/runners/{runner_id}"),
            None,
        )
        .await?;
        self.invalidate(&format!("{prefix}/actions/runners"));
        Ok(())
    }

    // ---- issues ----

    /// `POST /repos/{owner}/{repo}/issues`.
    ///
    /// # Errors
    /// [`GithubError`] (410 if issues are disabled).
    pub async fn create_issue(&self, owner: &str, repo: &str, issue: &NewIssue) -> Result<Issue> {
        self.write_json(
            Method::POST,
            &format!("/repos/{}/{}/issues", enc(owner), enc(repo)),
            Some(issue),
        )
        .await
    }

    /// `POST /repos/{owner}/{repo}/issues/{number}/comments` with `{body}`.
    ///
    /// # Errors
    /// [`GithubError`].
    pub async fn comment_issue(
        &self,
        owner: &str,
        repo: &str,
        number: u64,
        body: &str,
    ) -> Result<IssueComment> {
        #[derive(Serialize)]
        struct B<'a> {
            body: &'a str,
        }
        self.write_json(
            Method::POST,
            &format!(
                "/repos/{}/{}/issues/{number}/comments",
                enc(owner),
                enc(repo)
            ),
            Some(&B { body }),
        )
        .await
    }

    /// `GET /repos/{owner}/{repo}/issues?state=...&labels=...`, all pages: issues only (pull
    /// requests, which this endpoint also lists, are dropped). `labels` are ANDed by GitHub.
    ///
    /// # Errors
    /// [`GithubError`].
    pub async fn list_issues(
        &self,
        owner: &str,
        repo: &str,
        state: &str,
        labels: &[&str],
    ) -> Result<Vec<Issue>> {
        #[derive(serde::Deserialize)]
        struct Item {
            #[serde(flatten)]
            issue: Issue,
            #[serde(default)]
            pull_request: Option<serde::de::IgnoredAny>,
        }
        let mut q = vec![format!("state={}", enc(state))];
        if !labels.is_empty() {
            q.push(format!("labels={}", enc(&labels.join(","))));
        }
        q.push(format!("per_page={}", self.per_page));
        let first = format!("/repos/{}/{}/issues?{}", enc(owner), enc(repo), q.join("&"));
        let items = self.paginate(first, |p: Vec<Item>| p, |_| true).await?;
        Ok(items
            .into_iter()
            .filter(|i| i.pull_request.is_none())
            .map(|i| i.issue)
            .collect())
    }

    /// `GET /repos/{owner}/{repo}/issues/{number}`.
    ///
    /// # Errors
    /// [`GithubError`] (404 if it does not exist, 410 if it was deleted).
    pub async fn issue(&self, owner: &str, repo: &str, number: u64) -> Result<Issue> {
        self.get_json(&format!(
            "/repos/{}/{}/issues/{number}",
            enc(owner),
            enc(repo)
        ))
        .await
    }

    /// `POST /repos/{owner}/{repo}/commits/{commit_sha}/comments` with `{body}`: a comment on a
    /// commit (shown on the commit page and, for a pull request's head, in its conversation).
    ///
    /// # Errors
    /// [`GithubError`] (403 without write access, 422 for an unknown commit).
    pub async fn comment_commit(
        &self,
        owner: &str,
        repo: &str,
        commit_sha: &str,
        body: &str,
    ) -> Result<CommitComment> {
        #[derive(Serialize)]
        struct B<'a> {
            body: &'a str,
        }
        self.write_json(
            Method::POST,
            &format!(
                "/repos/{}/{}/commits/{}/comments",
                enc(owner),
                enc(repo),
                enc(commit_sha)
            ),
            Some(&B { body }),
        )
        .await
    }
}

fn contents_path(owner: &str, repo: &str, path: &str, git_ref: Option<&str>) -> String {
    let p: Vec<String> = path.split('/').filter(|s| !s.is_empty()).map(enc).collect();
    let mut s = format!(
        "/repos/{}/{}/contents/{}",
        enc(owner),
        enc(repo),
        p.join("/")
    );
    if let Some(r) = git_ref {
        s.push_str(&format!("?ref={}", enc(r)));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_next() {
        let h = "<https://api.github.com/repositories/146139403/actions/runners?per_page=1&page=2>; rel=\"next\", <https://api.github.com/repositories/146139403/actions/runners?per_page=1&page=19>; rel=\"last\"";
        assert_eq!(
            next_link(h).unwrap(),
            "https://api.github.com/repositories/146139403/actions/runners?per_page=1&page=2"
        );
        assert_eq!(
            next_link("<https://x/?page=1>; rel=\"prev\", <https://x/?page=3>; rel=\"last\""),
            None
        );
        assert_eq!(next_link(""), None);
    }

    #[test]
    fn encoding() {
        assert_eq!(enc("a b/c"), "a%20b%2Fc");
        assert_eq!(enc(">=2024-01-01"), "%3E%3D2024-01-01");
        assert_eq!(enc("Phishing-Detection"), "Phishing-Detection");
        assert_eq!(
            contents_path("o", "r", ".github/workflows/ci.yml", Some("feat/x")),
            "/repos/o/r/contents/.github/workflows/ci.yml?ref=feat%2Fx"
        );
    }

    #[test]
    fn json_detail_names_position() {
        let e = serde_json::from_slice::<serde_json::Value>(
            b"{\"total_count\": 3, \"workflow_runs\": [",
        )
        .unwrap_err();
        let d = json_detail(&e);
        assert!(
            d.starts_with("malformed JSON at line 1 column 37: EOF while parsing"),
            "{d}"
        );
        let e = serde_json::from_str::<WorkflowRunsPage>(r#"{"workflow_runs": [{"name": "x"}]}"#)
            .unwrap_err();
        assert!(json_detail(&e).starts_with("unexpected JSON shape at line 1"));
    }

    #[test]
    fn endpoint_label_drops_query() {
        assert_eq!(
            endpoint(&Method::GET, "/repos/o/r/actions/runs?status=queued"),
            "GET /repos/o/r/actions/runs"
        );
    }
}
