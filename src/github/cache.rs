//! ETag cache of GitHub GET responses in SQLite, bounded in bytes with LRU eviction.
//!
//! Per GitHub's "Best practices for using the REST API" (conditional requests): the cache keeps
//! each response's `ETag`/`Last-Modified` with its body; the next request for the same key sends
//! `If-None-Match`/`If-Modified-Since`, and a `304 Not Modified` answer (which does not count
//! against the primary rate limit) is served from the stored body. Within an endpoint's freshness
//! window ([`freshness`]) no request is made at all.
//!
//! Keys are `"<token fingerprint> <METHOD> <path?query>"` ([`CacheKey`]): two tokens never share
//! an entry (one token may see private data the other must not). The fingerprint is a truncated
//! SHA-256 of the token under a fixed prefix, never the token.
//!
//! Schema: [`MIGRATION_SQL`] (one STRICT table), to be appended as a migration to the main store;
//! [`GithubCache::in_memory`] applies it itself. Timestamps are unix milliseconds.

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::seal::{self, SealError, SealKey};
use crate::clock::Millis;

/// Schema of the cache, to be appended to the store's migrations.
pub const MIGRATION_SQL: &str = r#"
CREATE TABLE github_cache (
    key           TEXT PRIMARY KEY,
    etag          TEXT,
    last_modified TEXT,
    link          TEXT,
    status        INTEGER NOT NULL,
    body          BLOB NOT NULL,
    size          INTEGER NOT NULL,
    fetched_at    INTEGER NOT NULL,
    last_used     INTEGER NOT NULL
) STRICT;
CREATE INDEX github_cache_lru ON github_cache(last_used);
"#;

/// Default bound of the cache: 32 MiB of keys, validators and bodies.
pub const DEFAULT_MAX_BYTES: u64 = 32 * 1024 * 1024;

/// Errors of the cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// SQLite failed (or the table is missing: apply [`MIGRATION_SQL`]).
    #[error("github cache: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A sealed entry from a peer could not be opened.
    #[error("github cache: {0}")]
    Seal(#[from] SealError),
    /// A sealed entry opened but did not parse.
    #[error("github cache: malformed shared entry: {0}")]
    Malformed(String),
}

/// Truncated (128-bit, hex) SHA-256 of the token under a fixed prefix: separates cache entries
/// per token without storing it.
pub fn token_fingerprint(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"flotilla/github-cache-key/v1\0");
    h.update(token.as_bytes());
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A cache key: token fingerprint, method and path with query.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey(String);

impl CacheKey {
    /// Build from a [`token_fingerprint`], a method (`GET`) and a path with its query
    /// (`/repos/o/r/actions/runs?status=queued`).
    pub fn new(fingerprint: &str, method: &str, path_and_query: &str) -> Self {
        CacheKey(format!(
            "{fingerprint} {} {path_and_query}",
            method.to_ascii_uppercase()
        ))
    }
    /// The key text (also the associated data when sealing).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A stored response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedEntry {
    /// `ETag` as sent (quotes and `W/` kept).
    pub etag: Option<String>,
    /// `Last-Modified` as sent.
    pub last_modified: Option<String>,
    /// `Link` header (pagination must go on from a cached page).
    pub link: Option<String>,
    /// Status of the stored response (2xx).
    pub status: u16,
    /// Body bytes.
    #[serde(with = "b64")]
    pub body: Vec<u8>,
    /// When it was fetched or last revalidated (unix ms).
    pub fetched_at: Millis,
}

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

impl CachedEntry {
    /// Bytes this entry counts against the bound, with its key.
    pub fn size(&self, key: &CacheKey) -> u64 {
        (key.as_str().len()
            + self.body.len()
            + self.etag.as_deref().map_or(0, str::len)
            + self.last_modified.as_deref().map_or(0, str::len)
            + self.link.as_deref().map_or(0, str::len)) as u64
    }

    /// Whether a conditional request can be made for it.
    pub fn has_validator(&self) -> bool {
        self.etag.is_some() || self.last_modified.is_some()
    }

    /// Fresh at `now` under `ttl`.
    pub fn is_fresh(&self, ttl: Duration, now: Millis) -> bool {
        now.saturating_sub(self.fetched_at) < ttl.as_millis() as Millis
    }
}

/// How long a response stays fresh, by endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Not cached at all (writes, logs behind redirects, `/rate_limit`).
    NoStore,
    /// Stored; served without a request for this long, then revalidated with its ETag. Zero
    /// means "always revalidate".
    Ttl(Duration),
}

/// The freshness window of a request, a pure function of method and path (+query):
///
/// | endpoint | window |
/// |---|---|
/// | non-`GET`, `/rate_limit`, `…/actions/jobs/{id}/logs`, `…/actions/runs/{id}/logs` | not stored |
/// | `…/actions/runs?status=queued\|in_progress\|waiting\|pending\|requested` | 10 s |
/// | `…/actions/runs/{id}`, `…/actions/runs/{id}/jobs`, `…/actions/jobs/{id}` | 10 s |
/// | other `…/actions/runs` lists | 30 s |
/// | `…/actions/runners` (list or one) | 30 s |
/// | `…/check-runs/{id}/annotations`, `/orgs/{org}/actions/runner-groups` | 10 min |
/// | repository lists: `/orgs/{o}/repos`, `/users/{u}/repos`, `/user/repos` | 10 min |
/// | `/users/{u}`, `/user` | 1 h |
/// | workflow files: `…/contents/…`, `…/actions/workflows…` | 1 h |
/// | any other `GET` | 0 (stored, always revalidated) |
pub fn freshness(method: &str, path_and_query: &str) -> Freshness {
    if !method.eq_ignore_ascii_case("GET") {
        return Freshness::NoStore;
    }
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let s = Duration::from_secs;
    let has = |name: &str| segs.contains(&name);
    let after = |name: &str| -> Vec<&str> {
        segs.iter()
            .position(|x| *x == name)
            .map(|i| segs[i + 1..].to_vec())
            .unwrap_or_default()
    };
    if segs == ["rate_limit"] || segs.last() == Some(&"logs") {
        return Freshness::NoStore;
    }
    if has("actions") {
        let rest = after("actions");
        match rest.as_slice() {
            ["runs"] | ["workflows", _, "runs"] => {
                let active = query.split('&').any(|kv| {
                    matches!(
                        kv,
                        "status=queued"
                            | "status=in_progress"
                            | "status=waiting"
                            | "status=pending"
                            | "status=requested"
                    )
                });
                return Freshness::Ttl(if active { s(10) } else { s(30) });
            }
            ["runs", ..] | ["jobs", ..] => return Freshness::Ttl(s(10)),
            ["runners", ..] => return Freshness::Ttl(s(30)),
            ["runner-groups", ..] => return Freshness::Ttl(s(600)),
            ["workflows", ..] => return Freshness::Ttl(s(3600)),
            _ => return Freshness::Ttl(Duration::ZERO),
        }
    }
    if has("check-runs") && segs.last() == Some(&"annotations") {
        return Freshness::Ttl(s(600));
    }
    if segs.first() == Some(&"repos") && has("contents") {
        return Freshness::Ttl(s(3600));
    }
    match segs.as_slice() {
        ["orgs", _, "repos"] | ["users", _, "repos"] | ["user", "repos"] => Freshness::Ttl(s(600)),
        ["users", _] | ["user"] => Freshness::Ttl(s(3600)),
        _ => Freshness::Ttl(Duration::ZERO),
    }
}

/// Cache and API-call statistics, serialized with the names the dashboard and MCP use
/// (`hit_rate`, `api_calls_saved`, `peer_hits`, `connected_peers`, `p2p_enabled`, ...).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CacheStats {
    /// Served from a fresh entry, no request made.
    pub hits: u64,
    /// Needed a full response (no entry, or the entry changed).
    pub misses: u64,
    /// Revalidated with a `304 Not Modified` (free against the primary limit).
    pub not_modified: u64,
    /// Entries evicted to stay under the byte bound.
    pub evictions: u64,
    /// HTTP requests sent to GitHub (including `304`s and retries).
    pub api_calls: u64,
    /// Requests that did not cost primary rate limit: `hits + not_modified + peer_hits`.
    pub api_calls_saved: u64,
    /// Served from an entry a mesh peer shared (bumped by the mesh module).
    pub peer_hits: u64,
    /// Sealed entries from peers that were rejected: forged, tampered, sealed under another
    /// key, or well-sealed but malformed (not a 2xx JSON response).
    pub rejected: u64,
    /// `(hits + not_modified + peer_hits) / (that + misses)`, 0.0 before any lookup.
    pub hit_rate: f64,
    /// Mesh peers connected (set by the mesh module).
    pub connected_peers: u32,
    /// Whether mesh sharing is on (set by the mesh module).
    pub p2p_enabled: bool,
    /// Entries stored.
    pub entries: u64,
    /// Bytes stored (as counted against the bound).
    pub bytes: u64,
}

#[derive(Debug, Default, Clone)]
struct Counters {
    hits: u64,
    misses: u64,
    not_modified: u64,
    evictions: u64,
    api_calls: u64,
    peer_hits: u64,
    rejected: u64,
    connected_peers: u32,
    p2p_enabled: bool,
}

/// The cache over one SQLite connection (its own, or one opened on the store's file; WAL lets
/// both coexist). Not `Sync`: share it behind a mutex, never held across an `.await`.
#[derive(Debug)]
pub struct GithubCache {
    conn: Connection,
    max_bytes: u64,
    counters: Counters,
}

impl GithubCache {
    /// Wrap a connection whose schema already has [`MIGRATION_SQL`] applied.
    ///
    /// # Errors
    /// [`CacheError::Sqlite`] if the table is missing.
    pub fn new(conn: Connection, max_bytes: u64) -> Result<Self, CacheError> {
        conn.prepare("SELECT key, etag, last_modified, link, status, body, size, fetched_at, last_used FROM github_cache LIMIT 0")?;
        Ok(Self {
            conn,
            max_bytes,
            counters: Counters::default(),
        })
    }

    /// A private in-memory cache (schema applied).
    ///
    /// # Errors
    /// [`CacheError::Sqlite`] if SQLite cannot open memory.
    pub fn in_memory(max_bytes: u64) -> Result<Self, CacheError> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(MIGRATION_SQL)?;
        Self::new(conn, max_bytes)
    }

    /// The byte bound.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Look `key` up and mark it used at `now`. Does not touch the hit/miss counters.
    ///
    /// # Errors
    /// [`CacheError::Sqlite`].
    pub fn get(&mut self, key: &CacheKey, now: Millis) -> Result<Option<CachedEntry>, CacheError> {
        let row = self
            .conn
            .query_row(
                "SELECT etag, last_modified, link, status, body, fetched_at FROM github_cache WHERE key = ?1",
                params![key.as_str()],
                |r| {
                    Ok(CachedEntry {
                        etag: r.get(0)?,
                        last_modified: r.get(1)?,
                        link: r.get(2)?,
                        status: r.get::<_, i64>(3)? as u16,
                        body: r.get(4)?,
                        fetched_at: r.get(5)?,
                    })
                },
            )
            .optional()?;
        if row.is_some() {
            self.conn.execute(
                "UPDATE github_cache SET last_used = ?2 WHERE key = ?1",
                params![key.as_str(), now],
            )?;
        }
        Ok(row)
    }

    /// Store (or replace) `key`, then evict least-recently-used entries until under the bound.
    /// An entry larger than the whole bound is not stored (and any old one is dropped).
    ///
    /// # Errors
    /// [`CacheError::Sqlite`].
    pub fn put(&mut self, key: &CacheKey, e: &CachedEntry, now: Millis) -> Result<(), CacheError> {
        let size = e.size(key);
        if size > self.max_bytes {
            self.remove(key)?;
            return Ok(());
        }
        self.conn.execute(
            "INSERT INTO github_cache (key, etag, last_modified, link, status, body, size, fetched_at, last_used)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT(key) DO UPDATE SET etag = excluded.etag, last_modified = excluded.last_modified,
               link = excluded.link, status = excluded.status, body = excluded.body, size = excluded.size,
               fetched_at = excluded.fetched_at, last_used = excluded.last_used",
            params![
                key.as_str(),
                e.etag,
                e.last_modified,
                e.link,
                e.status as i64,
                e.body,
                size as i64,
                e.fetched_at,
                now
            ],
        )?;
        self.evict_to_bound(Some(key))
    }

    /// Mark `key` revalidated at `now` (after a `304`): its freshness window restarts.
    ///
    /// # Errors
    /// [`CacheError::Sqlite`].
    pub fn refresh(&mut self, key: &CacheKey, now: Millis) -> Result<(), CacheError> {
        self.conn.execute(
            "UPDATE github_cache SET fetched_at = ?2, last_used = ?2 WHERE key = ?1",
            params![key.as_str(), now],
        )?;
        Ok(())
    }

    /// Drop one entry.
    ///
    /// # Errors
    /// [`CacheError::Sqlite`].
    pub fn remove(&mut self, key: &CacheKey) -> Result<(), CacheError> {
        self.conn.execute(
            "DELETE FROM github_cache WHERE key = ?1",
            params![key.as_str()],
        )?;
        Ok(())
    }

    /// Drop every entry whose key starts with `prefix` (e.g. a token's `GET /repos/o/r/actions/runs`
    /// after a cancel). Returns how many.
    ///
    /// # Errors
    /// [`CacheError::Sqlite`].
    pub fn remove_prefix(&mut self, prefix: &str) -> Result<usize, CacheError> {
        let like = format!(
            "{}%",
            prefix
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        Ok(self.conn.execute(
            "DELETE FROM github_cache WHERE key LIKE ?1 ESCAPE '\\'",
            params![like],
        )?)
    }

    fn evict_to_bound(&mut self, keep: Option<&CacheKey>) -> Result<(), CacheError> {
        let mut total = self.total_bytes()?;
        if total <= self.max_bytes {
            return Ok(());
        }
        let victims: Vec<(String, i64)> = {
            let mut st = self
                .conn
                .prepare("SELECT key, size FROM github_cache ORDER BY last_used ASC, rowid ASC")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        for (k, size) in victims {
            if total <= self.max_bytes {
                break;
            }
            if keep.is_some_and(|kk| kk.as_str() == k) {
                continue;
            }
            self.conn
                .execute("DELETE FROM github_cache WHERE key = ?1", params![k])?;
            total = total.saturating_sub(size as u64);
            self.counters.evictions += 1;
        }
        Ok(())
    }

    /// Bytes stored.
    ///
    /// # Errors
    /// [`CacheError::Sqlite`].
    pub fn total_bytes(&self) -> Result<u64, CacheError> {
        let n: i64 =
            self.conn
                .query_row("SELECT COALESCE(SUM(size), 0) FROM github_cache", [], |r| {
                    r.get(0)
                })?;
        Ok(n as u64)
    }

    /// Entries stored.
    ///
    /// # Errors
    /// [`CacheError::Sqlite`].
    pub fn len(&self) -> Result<u64, CacheError> {
        let n: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM github_cache", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// No entries stored.
    ///
    /// # Errors
    /// [`CacheError::Sqlite`].
    pub fn is_empty(&self) -> Result<bool, CacheError> {
        Ok(self.len()? == 0)
    }

    /// Count a fresh hit (no request made).
    pub fn record_hit(&mut self) {
        self.counters.hits += 1;
    }
    /// Count a full fetch.
    pub fn record_miss(&mut self) {
        self.counters.misses += 1;
    }
    /// Count a `304 Not Modified`.
    pub fn record_not_modified(&mut self) {
        self.counters.not_modified += 1;
    }
    /// Count one HTTP request sent.
    pub fn record_api_call(&mut self) {
        self.counters.api_calls += 1;
    }
    /// Count an answer served from a peer's shared entry (called by the mesh module).
    pub fn record_peer_hit(&mut self) {
        self.counters.peer_hits += 1;
    }
    /// Count a rejected sealed entry from a peer ([`GithubCache::import_sealed_entry`] counts
    /// its own rejections; this is for entries refused before they reach it).
    pub fn record_rejected(&mut self) {
        self.counters.rejected += 1;
    }
    /// Set the mesh figures shown with the stats (called by the mesh module).
    pub fn set_mesh(&mut self, connected_peers: u32, p2p_enabled: bool) {
        self.counters.connected_peers = connected_peers;
        self.counters.p2p_enabled = p2p_enabled;
    }

    /// A snapshot of the statistics.
    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        let saved = c.hits + c.not_modified + c.peer_hits;
        let lookups = saved + c.misses;
        CacheStats {
            hits: c.hits,
            misses: c.misses,
            not_modified: c.not_modified,
            evictions: c.evictions,
            api_calls: c.api_calls,
            api_calls_saved: saved,
            peer_hits: c.peer_hits,
            rejected: c.rejected,
            hit_rate: if lookups == 0 {
                0.0
            } else {
                saved as f64 / lookups as f64
            },
            connected_peers: c.connected_peers,
            p2p_enabled: c.p2p_enabled,
            entries: self.len().unwrap_or(0),
            bytes: self.total_bytes().unwrap_or(0),
        }
    }

    /// The entry under `key`, sealed for the mesh with `seal_key` (see [`super::seal`]).
    ///
    /// # Errors
    /// [`CacheError::Sqlite`].
    pub fn export_sealed(
        &mut self,
        key: &CacheKey,
        seal_key: &SealKey,
        now: Millis,
    ) -> Result<Option<Vec<u8>>, CacheError> {
        let Some(e) = self.get(key, now)? else {
            return Ok(None);
        };
        let plain = serde_json::to_vec(&e).map_err(|e| CacheError::Malformed(e.to_string()))?;
        Ok(Some(seal::seal(seal_key, key.as_str(), &plain)))
    }

    /// Store a peer's sealed entry for `key` unless ours is at least as recent. Returns whether it
    /// was stored. Peer hits are counted by the caller when it serves from it.
    ///
    /// # Errors
    /// As [`GithubCache::import_sealed_entry`].
    pub fn import_sealed(
        &mut self,
        key: &CacheKey,
        sealed: &[u8],
        seal_key: &SealKey,
        now: Millis,
    ) -> Result<bool, CacheError> {
        Ok(self.import_sealed_entry(key, sealed, seal_key, now)?.1)
    }

    /// Open, validate and store a peer's sealed entry for `key`; returns the entry and whether it
    /// was stored (it is not when ours was fetched at least as recently).
    ///
    /// Validation: the value must open under `seal_key` with `key` as associated data
    /// (AES-256-GCM, NIST SP 800-38D: any change to nonce, ciphertext, tag or key fails), parse
    /// as a [`CachedEntry`], carry a `2xx` status and a well-formed JSON body (what this client
    /// itself stores). A `fetched_at` in the future (a peer's clock running ahead) is clamped
    /// to `now`, so it cannot stretch the freshness window. Every rejection is counted in
    /// [`CacheStats::rejected`].
    ///
    /// # Errors
    /// [`CacheError::Seal`] if it does not open under `seal_key` for `key` (forged, tampered,
    /// other key); [`CacheError::Malformed`] if it opens but is not a valid entry;
    /// [`CacheError::Sqlite`].
    pub fn import_sealed_entry(
        &mut self,
        key: &CacheKey,
        sealed: &[u8],
        seal_key: &SealKey,
        now: Millis,
    ) -> Result<(CachedEntry, bool), CacheError> {
        let e = match open_entry(key, sealed, seal_key, now) {
            Ok(e) => e,
            Err(err) => {
                self.counters.rejected += 1;
                return Err(err);
            }
        };
        if let Some(ours) = self.get(key, now)?
            && ours.fetched_at >= e.fetched_at
        {
            return Ok((e, false));
        }
        self.put(key, &e, now)?;
        Ok((e, true))
    }
}

fn open_entry(
    key: &CacheKey,
    sealed: &[u8],
    seal_key: &SealKey,
    now: Millis,
) -> Result<CachedEntry, CacheError> {
    let plain = seal::open(seal_key, key.as_str(), sealed)?;
    let mut e: CachedEntry =
        serde_json::from_slice(&plain).map_err(|e| CacheError::Malformed(e.to_string()))?;
    if !(200..300).contains(&e.status) {
        return Err(CacheError::Malformed(format!(
            "status {} is not a 2xx response",
            e.status
        )));
    }
    if let Err(err) = serde_json::from_slice::<serde::de::IgnoredAny>(&e.body) {
        return Err(CacheError::Malformed(format!("body is not JSON: {err}")));
    }
    e.fetched_at = e.fetched_at.min(now);
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(body: &str, at: Millis) -> CachedEntry {
        CachedEntry {
            etag: Some("\"abc\"".into()),
            last_modified: None,
            link: None,
            status: 200,
            body: body.as_bytes().to_vec(),
            fetched_at: at,
        }
    }

    #[test]
    fn migration_is_strict_and_applies() {
        assert!(MIGRATION_SQL.contains(") STRICT;"));
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(MIGRATION_SQL).unwrap();
        assert!(GithubCache::new(c, 100).is_ok());
        assert!(GithubCache::new(Connection::open_in_memory().unwrap(), 100).is_err());
    }

    #[test]
    fn keys_separate_tokens_and_hide_them() {
        let a = token_fingerprint("ghp_a");
        let b = token_fingerprint("ghp_b");
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(!a.contains("ghp_a"));
        assert_ne!(
            CacheKey::new(&a, "GET", "/x"),
            CacheKey::new(&b, "GET", "/x")
        );
        assert_eq!(
            CacheKey::new(&a, "get", "/x").as_str(),
            format!("{a} GET /x")
        );
    }

    #[test]
    fn put_get_refresh() {
        let mut c = GithubCache::in_memory(10_000).unwrap();
        let k = CacheKey::new("fp", "GET", "/a");
        assert!(c.get(&k, 0).unwrap().is_none());
        c.put(&k, &entry("{}", 5), 5).unwrap();
        assert_eq!(c.get(&k, 6).unwrap().unwrap(), entry("{}", 5));
        c.refresh(&k, 50).unwrap();
        assert_eq!(c.get(&k, 51).unwrap().unwrap().fetched_at, 50);
        assert!(
            c.get(&k, 51)
                .unwrap()
                .unwrap()
                .is_fresh(Duration::from_millis(10), 59)
        );
        assert!(
            !c.get(&k, 51)
                .unwrap()
                .unwrap()
                .is_fresh(Duration::from_millis(10), 60)
        );
    }

    #[test]
    fn lru_eviction_keeps_under_bound() {
        let k = |i: u32| CacheKey::new("fp", "GET", &format!("/k{i}"));
        let one = entry(&"x".repeat(90), 0).size(&k(0));
        let mut c = GithubCache::in_memory(one * 3).unwrap();
        for i in 0..3 {
            c.put(&k(i), &entry(&"x".repeat(90), 0), i as i64).unwrap();
        }
        assert_eq!(c.len().unwrap(), 3);
        // Use k0 so k1 is the least recently used.
        c.get(&k(0), 10).unwrap();
        c.put(&k(3), &entry(&"x".repeat(90), 0), 11).unwrap();
        assert_eq!(c.len().unwrap(), 3);
        assert!(c.get(&k(1), 12).unwrap().is_none());
        assert!(c.get(&k(0), 12).unwrap().is_some());
        assert!(c.total_bytes().unwrap() <= c.max_bytes());
        assert_eq!(c.stats().evictions, 1);
        // Too big for the bound: not stored.
        c.put(&k(9), &entry(&"y".repeat(10_000), 0), 13).unwrap();
        assert!(c.get(&k(9), 14).unwrap().is_none());
    }

    #[test]
    fn remove_prefix_escapes_wildcards() {
        let mut c = GithubCache::in_memory(10_000).unwrap();
        c.put(
            &CacheKey::new("fp", "GET", "/repos/o/r_1/x"),
            &entry("1", 0),
            0,
        )
        .unwrap();
        c.put(
            &CacheKey::new("fp", "GET", "/repos/o/rX1/x"),
            &entry("1", 0),
            0,
        )
        .unwrap();
        assert_eq!(c.remove_prefix("fp GET /repos/o/r_1").unwrap(), 1);
        assert_eq!(c.len().unwrap(), 1);
    }

    #[test]
    fn stats_names_and_rates() {
        let mut c = GithubCache::in_memory(10_000).unwrap();
        let s = c.stats();
        assert_eq!(s.hit_rate, 0.0);
        c.record_miss();
        c.record_hit();
        c.record_not_modified();
        c.record_peer_hit();
        c.record_api_call();
        c.record_api_call();
        c.set_mesh(2, true);
        let s = c.stats();
        assert_eq!(s.api_calls_saved, 3);
        assert_eq!(s.hit_rate, 0.75);
        let v = serde_json::to_value(&s).unwrap();
        for name in [
            "hit_rate",
            "api_calls_saved",
            "peer_hits",
            "connected_peers",
            "p2p_enabled",
            "hits",
            "misses",
            "not_modified",
            "evictions",
            "api_calls",
            "rejected",
        ] {
            assert!(v.get(name).is_some(), "{name}");
        }
        assert_eq!(v["connected_peers"], 2);
        assert_eq!(v["p2p_enabled"], true);
    }

    #[test]
    fn freshness_table() {
        use Freshness::*;
        let s = Duration::from_secs;
        assert_eq!(
            freshness("GET", "/repos/o/r/actions/runs?status=queued&per_page=100"),
            Ttl(s(10))
        );
        assert_eq!(freshness("GET", "/repos/o/r/actions/runs"), Ttl(s(30)));
        assert_eq!(
            freshness("GET", "/repos/o/r/actions/runs/1/jobs?per_page=100"),
            Ttl(s(10))
        );
        assert_eq!(freshness("GET", "/repos/o/r/actions/jobs/5"), Ttl(s(10)));
        assert_eq!(freshness("GET", "/repos/o/r/actions/jobs/5/logs"), NoStore);
        assert_eq!(freshness("GET", "/orgs/o/actions/runners"), Ttl(s(30)));
        assert_eq!(
            freshness("GET", "/repos/o/r/actions/runners?per_page=1"),
            Ttl(s(30))
        );
        assert_eq!(
            freshness("GET", "/orgs/o/actions/runner-groups"),
            Ttl(s(600))
        );
        assert_eq!(freshness("GET", "/orgs/o/repos?sort=pushed"), Ttl(s(600)));
        assert_eq!(freshness("GET", "/user/repos"), Ttl(s(600)));
        assert_eq!(freshness("GET", "/users/u"), Ttl(s(3600)));
        assert_eq!(
            freshness("GET", "/repos/o/r/contents/.github/workflows/ci.yml"),
            Ttl(s(3600))
        );
        assert_eq!(
            freshness("GET", "/repos/o/r/actions/workflows"),
            Ttl(s(3600))
        );
        assert_eq!(
            freshness("GET", "/repos/o/r/check-runs/9/annotations"),
            Ttl(s(600))
        );
        assert_eq!(freshness("GET", "/rate_limit"), NoStore);
        assert_eq!(freshness("POST", "/repos/o/r/issues"), NoStore);
        assert_eq!(freshness("GET", "/repos/o/r"), Ttl(Duration::ZERO));
    }

    #[test]
    fn sealed_export_import() {
        let key = SealKey::derive(b"mesh", "tok");
        let k = CacheKey::new("fp", "GET", "/a");
        let mut a = GithubCache::in_memory(10_000).unwrap();
        a.put(&k, &entry("{\"x\":1}", 7), 7).unwrap();
        let sealed = a.export_sealed(&k, &key, 8).unwrap().unwrap();
        let mut b = GithubCache::in_memory(10_000).unwrap();
        // Wrong key or wrong cache key: rejected.
        assert!(matches!(
            b.import_sealed(&k, &sealed, &SealKey::derive(b"mesh", "other"), 9),
            Err(CacheError::Seal(_))
        ));
        assert!(
            b.import_sealed(&CacheKey::new("fp", "GET", "/b"), &sealed, &key, 9)
                .is_err()
        );
        assert!(b.import_sealed(&k, &sealed, &key, 9).unwrap());
        assert_eq!(b.get(&k, 10).unwrap().unwrap(), entry("{\"x\":1}", 7));
        // Not newer than ours: ignored.
        assert!(!b.import_sealed(&k, &sealed, &key, 11).unwrap());
        assert_eq!(b.stats().rejected, 2);
    }

    #[test]
    fn import_rejects_tampered_and_malformed_entries_and_counts_them() {
        let key = SealKey::derive(b"mesh", "tok");
        let k = CacheKey::new("fp", "GET", "/a");
        let mut b = GithubCache::in_memory(10_000).unwrap();
        let mut a = GithubCache::in_memory(10_000).unwrap();
        a.put(&k, &entry("[1,2]", 7), 7).unwrap();
        let mut sealed = a.export_sealed(&k, &key, 8).unwrap().unwrap();
        let last = sealed.len() - 1;
        sealed[last] ^= 0x01;
        assert!(matches!(
            b.import_sealed_entry(&k, &sealed, &key, 9),
            Err(CacheError::Seal(SealError::Auth))
        ));
        assert!(matches!(
            b.import_sealed_entry(&k, b"garbage", &key, 9),
            Err(CacheError::Seal(SealError::Truncated))
        ));
        // Well sealed but not an entry, not 2xx, or not JSON: malformed.
        let not_entry = seal::seal(&key, k.as_str(), b"{\"x\":1}");
        let mut e500 = entry("{}", 7);
        e500.status = 500;
        let s500 = seal::seal(&key, k.as_str(), &serde_json::to_vec(&e500).unwrap());
        let not_json = seal::seal(
            &key,
            k.as_str(),
            &serde_json::to_vec(&entry("<html>", 7)).unwrap(),
        );
        for s in [not_entry, s500, not_json] {
            assert!(matches!(
                b.import_sealed_entry(&k, &s, &key, 9),
                Err(CacheError::Malformed(_))
            ));
        }
        assert_eq!(b.stats().rejected, 5);
        assert!(b.is_empty().unwrap());
        // A fetch time in the future is clamped to now.
        let future = seal::seal(
            &key,
            k.as_str(),
            &serde_json::to_vec(&entry("{}", 1_000)).unwrap(),
        );
        let (e, stored) = b.import_sealed_entry(&k, &future, &key, 9).unwrap();
        assert!(stored);
        assert_eq!(e.fetched_at, 9);
        assert_eq!(b.get(&k, 10).unwrap().unwrap().fetched_at, 9);
    }
}
