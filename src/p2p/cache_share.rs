//! Sharing GitHub cache entries across the mesh: the mesh side of
//! [`crate::github::share::PeerCache`].
//!
//! # Protocol
//! * **Announcements** (gossipsub topic [`TOPIC`], signed by their author, envelope kind
//!   [`ANNOUNCE_KIND`], body [`Announce`]): "I hold these keys, fresh until then". A key is
//!   never sent in clear: it travels as [`KeyHash`], a SHA-256 of the cache key text (which
//!   itself holds only a fingerprint of the token). A node announces after it fetched,
//!   revalidated or received an entry, and re-announces what it holds fresh when a peer
//!   subscribes to the topic (so runners that join later learn about it), at most one batch
//!   per [`ShareConfig::reannounce_every`].
//! * **Lookups** (request-response through the [`Router`], kind [`GET_KIND`], body
//!   [`GetRequest`]): the answer is [`ENTRY_KIND`] with the sealed entry ([`EntryAnswer`],
//!   AES-256-GCM under HKDF-SHA256(mesh secret, token), see [`crate::github::seal`]) or
//!   [`MISS_KIND`]. Only keys this node announced are served.
//!
//! The gossip validator ([`gossip_validator`]) rejects anything on [`TOPIC`] that is not a
//! well-formed announcement, which penalises the sender in gossipsub's scoring (see
//! [`super::node`]); an answer that is not an envelope, has the wrong kind or does not decode,
//! and an entry that does not open, is rejected by the GitHub client, counted in its
//! `rejected` statistic and reported here ([`PeerCache::reject`]), which penalises the peer
//! through [`NodeHandle::report`] and forgets its announcements.
//!
//! # Bounds
//! The index of announcements holds at most [`ShareConfig::max_keys`] keys and
//! [`ShareConfig::max_holders_per_key`] holders per key (oldest announcements go first); a
//! holder is dropped [`ShareConfig::retain_after_fresh`] after its window closed, or when the
//! peer disconnects. A window claimed further ahead than [`ShareConfig::max_fresh_ahead`] is
//! cut to it. Only connected peers are asked.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use base64::Engine as _;
use futures::FutureExt;
use futures::future::BoxFuture;
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, mpsc};
use zeroize::Zeroizing;

use super::node::{GossipMessage, NodeError, NodeEvent, NodeHandle, Validation, Validator};
use super::protocol::{Envelope, MAX_RESPONSE_BYTES};
use super::router::{ERROR_KIND, ErrorBody, Handler, Router, RouterError, read_answer};
use crate::clock::{Millis, SharedClock};
use crate::github::GithubClient;
use crate::github::cache::CacheKey;
use crate::github::share::{PeerCache, PeerFetchError, PeerRef, SealedExporter};

/// Gossipsub topic of announcements.
pub const TOPIC: &str = "flotilla/cache/1";
/// Envelope kind of an announcement.
pub const ANNOUNCE_KIND: &str = "cache.announce";
/// Envelope kind of a lookup request.
pub const GET_KIND: &str = "cache.get";
/// Envelope kind of an answer carrying a sealed entry.
pub const ENTRY_KIND: &str = "cache.entry";
/// Envelope kind of an answer "not held".
pub const MISS_KIND: &str = "cache.miss";
/// Most keys in one announcement.
pub const MAX_ANNOUNCED_KEYS: usize = 256;
/// Largest sealed entry sent (its base64 and the envelope fit in [`MAX_RESPONSE_BYTES`]).
pub const MAX_SEALED_BYTES: usize = (MAX_RESPONSE_BYTES - 1024) / 4 * 3;

const HASH_PREFIX: &[u8] = b"flotilla/cache-share/key/v1\0";

/// SHA-256 of a cache key's text under a fixed prefix: what announcements and lookups carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    /// The hash of `key`.
    pub fn of(key: &CacheKey) -> Self {
        let mut h = Sha256::new();
        h.update(HASH_PREFIX);
        h.update(key.as_str().as_bytes());
        KeyHash(h.finalize().into())
    }
    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
    /// Parse 64 hex digits (either case); `None` otherwise.
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(KeyHash(out))
    }
}

/// One announced key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnouncedKey {
    /// [`KeyHash`] in hex.
    pub key: String,
    /// End of the entry's freshness window, unix ms (author's clock).
    pub fresh_until_ms: Millis,
}

/// Body of an [`ANNOUNCE_KIND`] envelope: 1 to [`MAX_ANNOUNCED_KEYS`] keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Announce {
    /// The keys.
    pub entries: Vec<AnnouncedKey>,
}

impl Announce {
    /// The entries as hashes, if the announcement is well-formed.
    pub fn parse(&self) -> Option<Vec<(KeyHash, Millis)>> {
        if self.entries.is_empty() || self.entries.len() > MAX_ANNOUNCED_KEYS {
            return None;
        }
        self.entries
            .iter()
            .map(|e| KeyHash::from_hex(&e.key).map(|h| (h, e.fresh_until_ms)))
            .collect()
    }
}

/// Body of a [`GET_KIND`] request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetRequest {
    /// [`KeyHash`] in hex.
    pub key: String,
}

/// Body of an [`ENTRY_KIND`] answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryAnswer {
    /// The sealed entry, standard base64 (at most [`MAX_SEALED_BYTES`] decoded).
    pub sealed: String,
}

/// Settings of the sharing side.
#[derive(Debug, Clone)]
pub struct ShareConfig {
    /// Keys in the announcement index. Default 4096.
    pub max_keys: usize,
    /// Holders remembered per key. Default 8.
    pub max_holders_per_key: usize,
    /// How long a holder stays after its window closed (its entry still supplies an ETag).
    /// Default 10 min.
    pub retain_after_fresh: Duration,
    /// Longest freshness window believed. Default 1 h (GitHub data this cache keeps is
    /// never fresher for longer).
    pub max_fresh_ahead: Duration,
    /// Keys this node serves (those it announced). Default 8192.
    pub max_local_keys: usize,
    /// Shortest spacing of re-announcements to newly subscribed peers. Default 2 s.
    pub reannounce_every: Duration,
}

impl Default for ShareConfig {
    fn default() -> Self {
        Self {
            max_keys: 4096,
            max_holders_per_key: 8,
            retain_after_fresh: Duration::from_secs(600),
            max_fresh_ahead: Duration::from_secs(3600),
            max_local_keys: 8192,
            reannounce_every: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Holder {
    peer: PeerId,
    fresh_until: Millis,
    seq: u64,
}

/// Who announced which key (pure; time is passed in).
#[derive(Debug)]
pub struct AnnounceIndex {
    map: HashMap<KeyHash, Vec<Holder>>,
    seq: u64,
    max_keys: usize,
    max_holders: usize,
    retain_ms: Millis,
    ahead_ms: Millis,
}

impl AnnounceIndex {
    /// An empty index bounded by `cfg`.
    pub fn new(cfg: &ShareConfig) -> Self {
        Self {
            map: HashMap::new(),
            seq: 0,
            max_keys: cfg.max_keys.max(1),
            max_holders: cfg.max_holders_per_key.max(1),
            retain_ms: cfg.retain_after_fresh.as_millis() as Millis,
            ahead_ms: cfg.max_fresh_ahead.as_millis() as Millis,
        }
    }

    /// Record that `peer` holds `key` fresh until `fresh_until` (cut to `now` +
    /// `max_fresh_ahead`); an announcement already past its retention is ignored.
    pub fn insert(&mut self, key: KeyHash, peer: PeerId, fresh_until: Millis, now: Millis) {
        let fresh_until = fresh_until.min(now.saturating_add(self.ahead_ms));
        if fresh_until.saturating_add(self.retain_ms) < now {
            return;
        }
        self.seq += 1;
        let holders = self.map.entry(key).or_default();
        holders.retain(|h| h.peer != peer);
        holders.push(Holder {
            peer,
            fresh_until,
            seq: self.seq,
        });
        if holders.len() > self.max_holders {
            holders.sort_by_key(|h| std::cmp::Reverse(h.seq));
            holders.truncate(self.max_holders);
        }
        if self.map.len() > self.max_keys {
            self.evict_oldest_keys();
        }
    }

    /// Drop the eighth of keys announced least recently.
    fn evict_oldest_keys(&mut self) {
        let mut newest: Vec<(u64, KeyHash)> = self
            .map
            .iter()
            .map(|(k, hs)| (hs.iter().map(|h| h.seq).max().unwrap_or(0), *k))
            .collect();
        newest.sort_unstable_by_key(|(s, _)| *s);
        let n = (self.map.len() - self.max_keys)
            .max(self.max_keys / 8)
            .max(1);
        for (_, k) in newest.into_iter().take(n) {
            self.map.remove(&k);
        }
    }

    /// Holders of `key`, most recent announcement first, at most `limit`, among peers
    /// `usable` accepts. With `fresh_only`, only windows still open at `now`.
    pub fn candidates(
        &self,
        key: &KeyHash,
        now: Millis,
        fresh_only: bool,
        limit: usize,
        usable: impl Fn(&PeerId) -> bool,
    ) -> Vec<PeerId> {
        let Some(hs) = self.map.get(key) else {
            return Vec::new();
        };
        let mut hs: Vec<&Holder> = hs
            .iter()
            .filter(|h| !fresh_only || h.fresh_until > now)
            .filter(|h| h.fresh_until.saturating_add(self.retain_ms) >= now)
            .filter(|h| usable(&h.peer))
            .collect();
        hs.sort_by_key(|h| std::cmp::Reverse(h.seq));
        hs.into_iter().take(limit).map(|h| h.peer).collect()
    }

    /// Forget one holder of one key (it said it no longer holds it).
    pub fn remove(&mut self, key: &KeyHash, peer: &PeerId) {
        if let Some(hs) = self.map.get_mut(key) {
            hs.retain(|h| h.peer != *peer);
            if hs.is_empty() {
                self.map.remove(key);
            }
        }
    }

    /// Forget everything `peer` announced.
    pub fn remove_peer(&mut self, peer: &PeerId) {
        self.map.retain(|_, hs| {
            hs.retain(|h| h.peer != *peer);
            !hs.is_empty()
        });
    }

    /// Drop holders past their retention at `now`.
    pub fn expire(&mut self, now: Millis) {
        let retain = self.retain_ms;
        self.map.retain(|_, hs| {
            hs.retain(|h| h.fresh_until.saturating_add(retain) >= now);
            !hs.is_empty()
        });
    }

    /// Keys indexed.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// No keys indexed.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Keys this node announced and serves, bounded (least recently announced go first).
#[derive(Debug, Default)]
struct LocalKeys {
    map: HashMap<KeyHash, (CacheKey, Millis, u64)>,
    seq: u64,
}

impl LocalKeys {
    fn insert(&mut self, h: KeyHash, key: CacheKey, fresh_until: Millis, max: usize) {
        self.seq += 1;
        self.map.insert(h, (key, fresh_until, self.seq));
        if self.map.len() > max.max(1) {
            let mut by_age: Vec<(u64, KeyHash)> = self.map.iter().map(|(k, v)| (v.2, *k)).collect();
            by_age.sort_unstable_by_key(|(s, _)| *s);
            let n = (self.map.len() - max).max(max / 8).max(1);
            for (_, k) in by_age.into_iter().take(n) {
                self.map.remove(&k);
            }
        }
    }

    fn fresh(&self, now: Millis) -> Vec<AnnouncedKey> {
        let mut v: Vec<(u64, AnnouncedKey)> = self
            .map
            .iter()
            .filter(|(_, (_, until, _))| *until > now)
            .map(|(h, (_, until, seq))| {
                (
                    *seq,
                    AnnouncedKey {
                        key: h.to_hex(),
                        fresh_until_ms: *until,
                    },
                )
            })
            .collect();
        v.sort_unstable_by_key(|(s, _)| std::cmp::Reverse(*s));
        v.into_iter()
            .take(MAX_ANNOUNCED_KEYS)
            .map(|(_, a)| a)
            .collect()
    }
}

/// Counters of the sharing side.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ShareStats {
    /// Announcement messages published.
    pub announcements_sent: u64,
    /// Announcement messages received from peers.
    pub announcements_heard: u64,
    /// Lookups answered with an entry.
    pub served: u64,
    /// Lookups answered "not held".
    pub served_miss: u64,
    /// Lookups sent to peers.
    pub asked: u64,
    /// Peers reported for rejected answers.
    pub reported: u64,
    /// Keys in the announcement index.
    pub indexed_keys: usize,
}

/// Why sharing could not start.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    /// The node refused (e.g. it stopped).
    #[error("cache sharing: {0}")]
    Node(#[from] NodeError),
    /// The router already has a handler for [`GET_KIND`].
    #[error("cache sharing: {0}")]
    Router(#[from] RouterError),
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    heard: AtomicU64,
    served: AtomicU64,
    served_miss: AtomicU64,
    asked: AtomicU64,
    reported: AtomicU64,
}

struct Inner {
    node: NodeHandle,
    clock: SharedClock,
    cfg: ShareConfig,
    secret: Zeroizing<Vec<u8>>,
    index: Mutex<AnnounceIndex>,
    local: Mutex<LocalKeys>,
    connected: Mutex<HashSet<PeerId>>,
    exporter: RwLock<Option<SealedExporter>>,
    outbox: mpsc::Sender<Vec<AnnouncedKey>>,
    counters: Counters,
}

/// The sharing service of one node: implements [`PeerCache`] for its GitHub client and answers
/// its peers. Cheap to clone.
#[derive(Clone)]
pub struct CacheShare {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CacheShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheShare")
            .field("peer_id", &self.inner.node.peer_id())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A validator for [`NodeConfig::validator`](super::NodeConfig::validator): messages on
/// [`TOPIC`] must be signed [`ANNOUNCE_KIND`] envelopes with a well-formed [`Announce`] body
/// (else rejected); other topics go to `other`.
pub fn gossip_validator(other: Validator) -> Validator {
    Arc::new(move |m: &GossipMessage<'_>| {
        if m.topic != TOPIC {
            return other(m);
        }
        let ok = m.from.is_some()
            && Envelope::decode(m.data).ok().is_some_and(|e| {
                e.kind == ANNOUNCE_KIND
                    && e.body_as::<Announce>()
                        .ok()
                        .and_then(|a| a.parse())
                        .is_some()
            });
        if ok {
            Validation::Accept
        } else {
            tracing::debug!(via = %m.via, "rejecting a malformed cache announcement");
            Validation::Reject
        }
    })
}

impl CacheShare {
    /// Start sharing on `node`: subscribe to [`TOPIC`], serve [`GET_KIND`] through `router`,
    /// follow the node's events. `mesh_secret` (with the token, in [`CacheShare::attach`])
    /// keys the sealing; it is zeroized when the service drops. Nothing is served until a
    /// client is attached.
    ///
    /// # Errors
    /// [`ShareError::Node`] if the node stopped; [`ShareError::Router`] if [`GET_KIND`] is
    /// taken.
    pub async fn start(
        node: NodeHandle,
        router: &Router,
        mesh_secret: &[u8],
        clock: SharedClock,
        cfg: ShareConfig,
    ) -> Result<Self, ShareError> {
        let events = node.events();
        node.subscribe(TOPIC).await?;
        let connected: HashSet<PeerId> = node
            .peers()
            .await?
            .into_iter()
            .filter(|p| p.connected)
            .map(|p| p.peer_id)
            .collect();
        let (outbox, rx) = mpsc::channel(1024);
        let inner = Arc::new(Inner {
            index: Mutex::new(AnnounceIndex::new(&cfg)),
            local: Mutex::new(LocalKeys::default()),
            connected: Mutex::new(connected),
            exporter: RwLock::new(None),
            secret: Zeroizing::new(mesh_secret.to_vec()),
            node,
            clock,
            cfg,
            outbox,
            counters: Counters::default(),
        });
        let weak = Arc::downgrade(&inner);
        let handler: Handler = Arc::new(move |peer, env| {
            let weak = weak.clone();
            async move {
                match weak.upgrade() {
                    Some(inner) => CacheShare { inner }.answer(peer, env),
                    None => miss(0),
                }
            }
            .boxed()
        });
        router.register(GET_KIND, handler)?;
        tokio::spawn(run(Arc::downgrade(&inner), events, rx));
        Ok(CacheShare { inner })
    }

    /// Share `client`'s cache: it asks this mesh before GitHub and announces to it; peers'
    /// lookups are answered from its cache, sealed under its token and the mesh secret.
    pub fn attach(&self, client: &GithubClient) {
        let exporter = client.enable_sharing(Arc::new(self.clone()), &self.inner.secret);
        *self
            .inner
            .exporter
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(exporter);
        tracing::info!("GitHub cache sharing over the mesh is on");
    }

    /// Stop sharing `client`'s cache.
    pub fn detach(&self, client: &GithubClient) {
        client.disable_sharing();
        *self
            .inner
            .exporter
            .write()
            .unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Whether a client is attached.
    pub fn is_attached(&self) -> bool {
        self.inner
            .exporter
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Counters.
    pub fn stats(&self) -> ShareStats {
        let c = &self.inner.counters;
        ShareStats {
            announcements_sent: c.sent.load(Ordering::Relaxed),
            announcements_heard: c.heard.load(Ordering::Relaxed),
            served: c.served.load(Ordering::Relaxed),
            served_miss: c.served_miss.load(Ordering::Relaxed),
            asked: c.asked.load(Ordering::Relaxed),
            reported: c.reported.load(Ordering::Relaxed),
            indexed_keys: lock(&self.inner.index).len(),
        }
    }

    fn answer(&self, peer: PeerId, env: Envelope) -> Envelope {
        let now = self.inner.clock.now_ms();
        let Some(h) = env
            .body_as::<GetRequest>()
            .ok()
            .and_then(|r| KeyHash::from_hex(&r.key))
        else {
            let body = ErrorBody {
                code: "malformed".into(),
                message: "expected {\"key\": <64 hex digits>}".into(),
            };
            return Envelope::new(ERROR_KIND, now, &body).unwrap_or_else(|_| miss(now));
        };
        let key = lock(&self.inner.local).map.get(&h).map(|v| v.0.clone());
        let exporter = self
            .inner
            .exporter
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let sealed = match (key, exporter) {
            (Some(k), Some(x)) => x.export(&k, MAX_SEALED_BYTES),
            _ => None,
        };
        match sealed {
            Some(s) => {
                self.inner.counters.served.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, len = s.len(), "served a shared cache entry");
                let body = EntryAnswer {
                    sealed: base64::engine::general_purpose::STANDARD.encode(s),
                };
                Envelope::new(ENTRY_KIND, now, &body).unwrap_or_else(|_| miss(now))
            }
            None => {
                self.inner
                    .counters
                    .served_miss
                    .fetch_add(1, Ordering::Relaxed);
                miss(now)
            }
        }
    }

    async fn ask(&self, peer: &PeerRef, key: &CacheKey) -> Result<Option<Vec<u8>>, PeerFetchError> {
        let p: PeerId = peer
            .parse()
            .map_err(|_| PeerFetchError::Unreachable(format!("not a peer ID: {peer}")))?;
        let h = KeyHash::of(key);
        let req = Envelope::new(
            GET_KIND,
            self.inner.clock.now_ms(),
            &GetRequest { key: h.to_hex() },
        )
        .and_then(|e| e.encode())
        .map_err(|e| PeerFetchError::Unreachable(e.to_string()))?;
        self.inner.counters.asked.fetch_add(1, Ordering::Relaxed);
        let bytes = self
            .inner
            .node
            .request(p, req)
            .await
            .map_err(|e| PeerFetchError::Unreachable(e.to_string()))?;
        let env = match read_answer(&bytes, MAX_RESPONSE_BYTES) {
            Ok(env) => env,
            Err(Some(err)) => {
                return Err(PeerFetchError::Unreachable(format!(
                    "peer answered {}: {}",
                    err.code, err.message
                )));
            }
            Err(None) => {
                return Err(PeerFetchError::Invalid(format!(
                    "answer of {} bytes is not an envelope",
                    bytes.len()
                )));
            }
        };
        match env.kind.as_str() {
            MISS_KIND => {
                lock(&self.inner.index).remove(&h, &p);
                Ok(None)
            }
            ENTRY_KIND => {
                let body: EntryAnswer = env
                    .body_as()
                    .map_err(|e| PeerFetchError::Invalid(e.to_string()))?;
                if body.sealed.len() > MAX_SEALED_BYTES / 3 * 4 + 4 {
                    return Err(PeerFetchError::Invalid("sealed entry too large".into()));
                }
                let sealed = base64::engine::general_purpose::STANDARD
                    .decode(body.sealed.as_bytes())
                    .map_err(|e| PeerFetchError::Invalid(format!("sealed entry: {e}")))?;
                Ok(Some(sealed))
            }
            other => Err(PeerFetchError::Invalid(format!(
                "unexpected answer kind {:?}",
                other.chars().take(64).collect::<String>()
            ))),
        }
    }
}

fn miss(now: Millis) -> Envelope {
    Envelope {
        kind: MISS_KIND.into(),
        sent_ms: now,
        body: serde_json::json!({}),
    }
}

impl PeerCache for CacheShare {
    fn candidates(
        &self,
        key: &CacheKey,
        now: Millis,
        fresh_only: bool,
        limit: usize,
    ) -> Vec<PeerRef> {
        let h = KeyHash::of(key);
        let connected = lock(&self.inner.connected).clone();
        lock(&self.inner.index)
            .candidates(&h, now, fresh_only, limit, |p| connected.contains(p))
            .into_iter()
            .map(|p| p.to_string())
            .collect()
    }

    fn fetch<'a>(
        &'a self,
        peer: &'a PeerRef,
        key: &'a CacheKey,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, PeerFetchError>> {
        self.ask(peer, key).boxed()
    }

    fn announce(&self, key: &CacheKey, fresh_until_ms: Millis) {
        let h = KeyHash::of(key);
        lock(&self.inner.local).insert(
            h,
            key.clone(),
            fresh_until_ms,
            self.inner.cfg.max_local_keys,
        );
        let entry = AnnouncedKey {
            key: h.to_hex(),
            fresh_until_ms,
        };
        if self.inner.outbox.try_send(vec![entry]).is_err() {
            tracing::debug!("cache announcement queue full; announcement dropped");
        }
    }

    fn reject(&self, peer: &PeerRef, reason: &str) {
        let Ok(p) = peer.parse::<PeerId>() else {
            return;
        };
        lock(&self.inner.index).remove_peer(&p);
        self.inner.counters.reported.fetch_add(1, Ordering::Relaxed);
        let node = self.inner.node.clone();
        let reason = format!("cache sharing: {reason}");
        tokio::spawn(async move {
            let _ = node.report(p, &reason).await;
        });
    }

    fn connected_peers(&self) -> u32 {
        lock(&self.inner.connected).len() as u32
    }
}

/// The service's task: announcements out, node events in, expiry.
async fn run(
    weak: Weak<Inner>,
    mut events: broadcast::Receiver<NodeEvent>,
    mut outbox: mpsc::Receiver<Vec<AnnouncedKey>>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A re-announcement for peers that just subscribed (joined late, or subscribed after an
    // announcement found no one to go to).
    let mut reannounce_at: Option<tokio::time::Instant> = None;
    let mut last_reannounce: Option<tokio::time::Instant> = None;
    loop {
        let due = reannounce_at;
        let wait = async move {
            match due {
                Some(t) => tokio::time::sleep_until(t).await,
                None => futures::future::pending().await,
            }
        };
        tokio::select! {
            batch = outbox.recv() => {
                let Some(mut batch) = batch else { break };
                // Coalesce whatever else is queued into as few messages as allowed.
                while batch.len() < MAX_ANNOUNCED_KEYS {
                    match outbox.try_recv() {
                        Ok(more) => batch.extend(more),
                        Err(_) => break,
                    }
                }
                let Some(inner) = weak.upgrade() else { break };
                publish(&inner, batch).await;
            }
            ev = events.recv() => {
                let Some(inner) = weak.upgrade() else { break };
                match ev {
                    Ok(NodeEvent::Message { topic, from, bytes, .. }) if topic == TOPIC => {
                        on_announcement(&inner, from, &bytes);
                    }
                    Ok(NodeEvent::PeerConnected { peer_id, .. }) => {
                        lock(&inner.connected).insert(peer_id);
                    }
                    Ok(NodeEvent::PeerSubscribed { topic, .. }) if topic == TOPIC => {
                        let now = tokio::time::Instant::now();
                        let at = last_reannounce
                            .map(|t| t + inner.cfg.reannounce_every)
                            .unwrap_or(now)
                            .max(now);
                        reannounce_at = Some(reannounce_at.map_or(at, |t| t.min(at)));
                    }
                    Ok(NodeEvent::PeerDisconnected { peer_id })
                    | Ok(NodeEvent::PeerBanned { peer_id, .. }) => {
                        lock(&inner.connected).remove(&peer_id);
                        lock(&inner.index).remove_peer(&peer_id);
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!(missed = n, "cache sharing lagged behind node events");
                        // Connection events may have been lost: resynchronise.
                        if let Ok(peers) = inner.node.peers().await {
                            *lock(&inner.connected) = peers
                                .into_iter()
                                .filter(|p| p.connected && !p.banned)
                                .map(|p| p.peer_id)
                                .collect();
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
            _ = wait => {
                reannounce_at = None;
                last_reannounce = Some(tokio::time::Instant::now());
                let Some(inner) = weak.upgrade() else { break };
                let fresh = lock(&inner.local).fresh(inner.clock.now_ms());
                if !fresh.is_empty() {
                    publish(&inner, fresh).await;
                }
            }
            _ = tick.tick() => {
                let Some(inner) = weak.upgrade() else { break };
                let now = inner.clock.now_ms();
                lock(&inner.index).expire(now);
            }
        }
    }
    tracing::debug!("cache sharing task stopping");
}

async fn publish(inner: &Inner, batch: Vec<AnnouncedKey>) {
    for chunk in batch.chunks(MAX_ANNOUNCED_KEYS) {
        let body = Announce {
            entries: chunk.to_vec(),
        };
        let bytes = match Envelope::new(ANNOUNCE_KIND, inner.clock.now_ms(), &body)
            .and_then(|e| e.encode())
        {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("cannot encode a cache announcement: {e}");
                continue;
            }
        };
        match inner.node.publish(TOPIC, bytes).await {
            Ok(_) => {
                inner.counters.sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(NodeError::NoSubscribers { .. }) => {
                tracing::trace!("no peer subscribed to cache announcements yet");
            }
            Err(e) => tracing::debug!("cannot publish a cache announcement: {e}"),
        }
    }
}

fn on_announcement(inner: &Inner, from: PeerId, bytes: &[u8]) {
    // The validator already checked the shape; parse again rather than trust it.
    let Some(entries) = Envelope::decode(bytes)
        .ok()
        .filter(|e| e.kind == ANNOUNCE_KIND)
        .and_then(|e| e.body_as::<Announce>().ok())
        .and_then(|a| a.parse())
    else {
        return;
    };
    inner.counters.heard.fetch_add(1, Ordering::Relaxed);
    let now = inner.clock.now_ms();
    let mut idx = lock(&inner.index);
    for (h, until) in entries {
        idx.insert(h, from, until, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ShareConfig {
        ShareConfig {
            max_keys: 16,
            max_holders_per_key: 3,
            retain_after_fresh: Duration::from_secs(10),
            max_fresh_ahead: Duration::from_secs(100),
            ..ShareConfig::default()
        }
    }

    fn h(i: u8) -> KeyHash {
        KeyHash([i; 32])
    }

    #[test]
    fn key_hash_hex_round_trip_and_hides_the_key() {
        let k = CacheKey::new("fp", "GET", "/repos/secret-org/private-repo/actions/runs");
        let kh = KeyHash::of(&k);
        let hex = kh.to_hex();
        assert_eq!(hex.len(), 64);
        assert!(!hex.contains("secret"));
        assert_eq!(KeyHash::from_hex(&hex), Some(kh));
        assert_eq!(KeyHash::from_hex(&hex.to_uppercase()), Some(kh));
        assert_eq!(KeyHash::from_hex("zz"), None);
        assert_eq!(KeyHash::from_hex(&"g".repeat(64)), None);
        assert_eq!(KeyHash::from_hex(&"é".repeat(32)), None);
        assert_ne!(
            KeyHash::of(&CacheKey::new("fp2", "GET", "/x")),
            KeyHash::of(&CacheKey::new("fp", "GET", "/x"))
        );
    }

    #[test]
    fn candidates_newest_first_fresh_filter_and_bounds() {
        let mut ix = AnnounceIndex::new(&cfg());
        let (a, b, c, d) = (
            PeerId::random(),
            PeerId::random(),
            PeerId::random(),
            PeerId::random(),
        );
        ix.insert(h(1), a, 1_000, 0);
        ix.insert(h(1), b, 50, 0);
        ix.insert(h(1), c, 1_000, 0);
        let all = |_: &PeerId| true;
        assert_eq!(ix.candidates(&h(1), 100, false, 5, all), [c, b, a]);
        assert_eq!(ix.candidates(&h(1), 100, true, 5, all), [c, a]);
        assert_eq!(ix.candidates(&h(1), 100, true, 1, all), [c]);
        assert_eq!(ix.candidates(&h(1), 100, false, 5, |p| *p != c), [b, a]);
        // A re-announcement moves the peer to the front; a fourth holder drops the oldest.
        ix.insert(h(1), a, 2_000, 10);
        assert_eq!(ix.candidates(&h(1), 100, false, 5, all), [a, c, b]);
        ix.insert(h(1), d, 2_000, 10);
        assert_eq!(ix.candidates(&h(1), 100, false, 5, all), [d, a, c]);
        // Windows are cut to max_fresh_ahead; retention ends candidacy.
        ix.insert(h(2), a, i64::MAX, 0);
        assert_eq!(
            ix.candidates(&h(2), 100_001, true, 5, all),
            Vec::<PeerId>::new()
        );
        assert_eq!(ix.candidates(&h(2), 100_001, false, 5, all), [a]);
        assert_eq!(
            ix.candidates(&h(2), 110_001, false, 5, all),
            Vec::<PeerId>::new()
        );
        // Too old to matter: not stored.
        ix.insert(h(3), a, 0, 20_000);
        assert_eq!(ix.candidates(&h(3), 0, false, 5, all), Vec::<PeerId>::new());
        ix.remove(&h(1), &d);
        assert_eq!(ix.candidates(&h(1), 100, false, 5, all), [a, c]);
        ix.remove_peer(&a);
        assert_eq!(ix.candidates(&h(1), 100, false, 5, all), [c]);
        assert_eq!(
            ix.candidates(&h(2), 100, false, 5, all),
            Vec::<PeerId>::new()
        );
        ix.expire(1_000_000);
        assert!(ix.is_empty());
    }

    #[test]
    fn index_is_bounded_in_keys() {
        let mut ix = AnnounceIndex::new(&cfg());
        let p = PeerId::random();
        for i in 0..100u8 {
            ix.insert(h(i), p, 1_000, 0);
            assert!(ix.len() <= 16);
        }
        // The most recent keys survive.
        assert_eq!(ix.candidates(&h(99), 0, true, 1, |_| true), [p]);
        assert!(ix.candidates(&h(0), 0, true, 1, |_| true).is_empty());
    }

    #[test]
    fn local_keys_bounded_and_fresh_listing() {
        let mut l = LocalKeys::default();
        for i in 0..20u8 {
            l.insert(
                h(i),
                CacheKey::new("fp", "GET", &format!("/{i}")),
                i as i64 * 10,
                8,
            );
            assert!(l.map.len() <= 8);
        }
        let fresh = l.fresh(150);
        assert!(fresh.iter().all(|a| a.fresh_until_ms > 150));
        assert_eq!(fresh[0].key, h(19).to_hex());
    }

    #[test]
    fn announce_parse_and_validator() {
        let good = Announce {
            entries: vec![AnnouncedKey {
                key: h(1).to_hex(),
                fresh_until_ms: 5,
            }],
        };
        assert_eq!(good.parse().unwrap(), [(h(1), 5)]);
        assert!(Announce { entries: vec![] }.parse().is_none());
        let bad = Announce {
            entries: vec![AnnouncedKey {
                key: "xyz".into(),
                fresh_until_ms: 5,
            }],
        };
        assert!(bad.parse().is_none());
        let too_many = Announce {
            entries: vec![good.entries[0].clone(); MAX_ANNOUNCED_KEYS + 1],
        };
        assert!(too_many.parse().is_none());

        let v = gossip_validator(super::super::node::envelope_validator());
        let from = PeerId::random();
        let msg = |topic: &'static str, d: Vec<u8>, from: Option<PeerId>| {
            v(&GossipMessage {
                topic,
                from,
                via: from.unwrap_or_else(PeerId::random),
                data: &d,
            })
        };
        let enc =
            |kind: &str, body: &Announce| Envelope::new(kind, 0, body).unwrap().encode().unwrap();
        assert_eq!(
            msg(TOPIC, enc(ANNOUNCE_KIND, &good), Some(from)),
            Validation::Accept
        );
        assert_eq!(
            msg(TOPIC, enc(ANNOUNCE_KIND, &good), None),
            Validation::Reject
        );
        assert_eq!(
            msg(TOPIC, enc(ANNOUNCE_KIND, &bad), Some(from)),
            Validation::Reject
        );
        assert_eq!(
            msg(TOPIC, enc("heartbeat", &good), Some(from)),
            Validation::Reject
        );
        assert_eq!(msg(TOPIC, b"junk".to_vec(), Some(from)), Validation::Reject);
        // Other topics: the inner validator decides.
        assert_eq!(
            msg("other", enc("heartbeat", &good), Some(from)),
            Validation::Accept
        );
        assert_eq!(
            msg("other", b"junk".to_vec(), Some(from)),
            Validation::Reject
        );
    }
}
