//! The seam between the GitHub client and a mesh that shares cache entries
//! ([`crate::p2p::cache_share`] implements it; the GitHub layer knows nothing of libp2p).
//!
//! Before a `GET` goes to GitHub, [`super::GithubClient`] asks its [`PeerCache`] (if sharing is
//! on) which peers announced the key, most recent first, and fetches their sealed entry within
//! a short budget ([`super::ClientConfig::peer_budget`], 300 ms by default). An entry that opens
//! under the [`SealKey`] (HKDF-SHA256 of mesh secret and token, RFC 5869; AES-256-GCM, NIST
//! SP 800-38D) and is fresh is stored and served: no request, a peer hit. A stale but valid one
//! is stored so its `ETag` makes the request conditional (a `304` costs no primary rate limit).
//! Anything else is rejected, counted in [`super::CacheStats::rejected`] and reported to the
//! mesh ([`PeerCache::reject`]). After a `200` or `304` (and after a peer hit) the client
//! announces the key with the end of its freshness window ([`PeerCache::announce`]).
//!
//! The mesh side answers peers' requests with [`SealedExporter::export`].

use std::fmt;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use super::cache::{CacheKey, GithubCache};
use super::seal::SealKey;
use crate::clock::{Millis, SharedClock};

/// A peer that may hold an entry, opaque to the GitHub layer (the mesh uses the libp2p peer ID
/// in its text form).
pub type PeerRef = String;

/// Why fetching from a peer gave nothing usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerFetchError {
    /// The peer could not be asked or did not answer (not its fault, necessarily): the next
    /// candidate is tried.
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    /// The peer answered with something that is not a valid answer (bad framing, wrong kind,
    /// undecodable body): counted as rejected and reported like a forged entry.
    #[error("invalid answer from peer: {0}")]
    Invalid(String),
}

/// A cache-sharing mesh as the GitHub client sees it. Methods other than
/// [`PeerCache::fetch`] are called on the request path and must not block.
pub trait PeerCache: Send + Sync + fmt::Debug {
    /// Peers that announced `key`, most recent announcement first, at most `limit`. With
    /// `fresh_only`, only those whose announced window (`fresh_until_ms`) is still open at
    /// `now` (unix ms); without, also those whose window closed recently (their entry can
    /// still supply an `ETag`).
    fn candidates(
        &self,
        key: &CacheKey,
        now: Millis,
        fresh_only: bool,
        limit: usize,
    ) -> Vec<PeerRef>;

    /// Ask `peer` for its sealed entry of `key` (the format of [`super::seal`]). `Ok(None)`:
    /// the peer does not hold it (any more). The client bounds the call with its own timeout.
    fn fetch<'a>(
        &'a self,
        peer: &'a PeerRef,
        key: &'a CacheKey,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, PeerFetchError>>;

    /// Tell peers this node holds `key`, fresh until `fresh_until_ms` (unix ms).
    fn announce(&self, key: &CacheKey, fresh_until_ms: Millis);

    /// `peer` sent an entry or answer that was rejected (`reason` says why; it never holds
    /// secrets): feed it to the mesh's peer scoring.
    fn reject(&self, peer: &PeerRef, reason: &str);

    /// Mesh peers connected now (shown as `connected_peers`).
    fn connected_peers(&self) -> u32;
}

/// Seals this node's cache entries for peers that ask (the mesh side's half of sharing).
/// Cloning shares the cache; the key is zeroized when the last clone drops.
#[derive(Clone)]
pub struct SealedExporter {
    cache: Arc<Mutex<GithubCache>>,
    seal: Arc<SealKey>,
    clock: SharedClock,
}

impl fmt::Debug for SealedExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedExporter").finish_non_exhaustive()
    }
}

impl SealedExporter {
    pub(crate) fn new(
        cache: Arc<Mutex<GithubCache>>,
        seal: Arc<SealKey>,
        clock: SharedClock,
    ) -> Self {
        Self { cache, seal, clock }
    }

    /// The entry stored under `key`, sealed (fresh nonce each call), if there is one and its
    /// sealed form is at most `max_len` bytes. Cache errors are logged and give `None`.
    pub fn export(&self, key: &CacheKey, max_len: usize) -> Option<Vec<u8>> {
        let now = self.clock.now_ms();
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        match c.export_sealed(key, &self.seal, now) {
            Ok(Some(s)) if s.len() <= max_len => Some(s),
            Ok(Some(s)) => {
                tracing::debug!(
                    len = s.len(),
                    max_len,
                    "shared cache entry too large to send"
                );
                None
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!("cannot export a cache entry for a peer: {e}");
                None
            }
        }
    }
}

/// Sharing as the client holds it.
#[derive(Debug)]
pub(crate) struct Sharing {
    pub(crate) peer: Arc<dyn PeerCache>,
    pub(crate) seal: Arc<SealKey>,
}
