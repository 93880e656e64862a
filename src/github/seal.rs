//! Sealing of cache entries shared across the mesh (pure; no I/O).
//!
//! A [`SealKey`] is derived with HKDF-SHA256 (RFC 5869) from the mesh secret and the GitHub token,
//! with the fixed info string [`HKDF_INFO`], so only peers holding both can read an entry, and
//! entries fetched with one token are useless to a peer holding another. Entries are sealed with
//! AES-256-GCM under a fresh random 96-bit nonce; the cache key is bound as associated data, so
//! an entry cannot be replayed under another key.
//!
//! Wire format: `version (1 byte = 1) || nonce (12 bytes) || ciphertext || tag (16 bytes)`.
//! The version byte is authenticated too (it is part of the associated data).

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// HKDF `info` string; changing it changes every key.
pub const HKDF_INFO: &[u8] = b"flotilla/github-cache-seal/v1";
/// Format version written as the first byte.
pub const VERSION: u8 = 1;
/// Nonce length (AES-GCM's standard 96 bits).
pub const NONCE_LEN: usize = 12;
/// Authentication tag length.
pub const TAG_LEN: usize = 16;
/// Smallest well-formed sealed value (an empty plaintext).
pub const MIN_SEALED_LEN: usize = 1 + NONCE_LEN + TAG_LEN;

/// Why a sealed value was rejected. Deliberately vague: it never says which byte was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Shorter than [`MIN_SEALED_LEN`].
    #[error("sealed cache entry is truncated")]
    Truncated,
    /// Unknown format version.
    #[error("sealed cache entry has unknown version {0}")]
    Version(u8),
    /// Authentication failed: tampered, forged, sealed under another key or another cache key.
    #[error("sealed cache entry failed authentication")]
    Auth,
}

/// A 256-bit sealing key; zeroized on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SealKey([u8; 32]);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(****)")
    }
}

impl SealKey {
    /// Derive the key from the mesh secret and the GitHub token.
    ///
    /// Input keying material is `len(mesh_secret) as u64 BE || mesh_secret || token` (the length
    /// prefix keeps `("ab","c")` and `("a","bc")` apart); no salt; info [`HKDF_INFO`].
    pub fn derive(mesh_secret: &[u8], github_token: &str) -> Self {
        let mut ikm = Vec::with_capacity(8 + mesh_secret.len() + github_token.len());
        ikm.extend_from_slice(&(mesh_secret.len() as u64).to_be_bytes());
        ikm.extend_from_slice(mesh_secret);
        ikm.extend_from_slice(github_token.as_bytes());
        let hk = Hkdf::<Sha256>::new(None, &ikm);
        let mut okm = [0u8; 32];
        hk.expand(HKDF_INFO, &mut okm)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        ikm.zeroize();
        let key = SealKey(okm);
        okm.zeroize();
        key
    }

    /// Wrap raw key bytes (for tests and key rotation tooling).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SealKey(bytes)
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.0))
    }
}

fn aad(cache_key: &str) -> Vec<u8> {
    let mut a = Vec::with_capacity(1 + cache_key.len());
    a.push(VERSION);
    a.extend_from_slice(cache_key.as_bytes());
    a
}

/// Seal `plaintext` for `cache_key`. Output layout in the module docs.
pub fn seal(key: &SealKey, cache_key: &str, plaintext: &[u8]) -> Vec<u8> {
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let ct = key
        .cipher()
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad: &aad(cache_key),
            },
        )
        .expect("AES-GCM encryption of an in-memory buffer cannot fail");
    let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
    out.push(VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

/// Open a value made by [`seal`] with the same key and cache key.
///
/// # Errors
/// [`SealError::Truncated`], [`SealError::Version`], or [`SealError::Auth`] for any tampering,
/// wrong key or wrong cache key.
pub fn open(key: &SealKey, cache_key: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    if sealed.len() < MIN_SEALED_LEN {
        return Err(SealError::Truncated);
    }
    if sealed[0] != VERSION {
        return Err(SealError::Version(sealed[0]));
    }
    let nonce = Nonce::from_slice(&sealed[1..1 + NONCE_LEN]);
    key.cipher()
        .decrypt(
            nonce,
            Payload {
                msg: &sealed[1 + NONCE_LEN..],
                aad: &aad(cache_key),
            },
        )
        .map_err(|_| SealError::Auth)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> SealKey {
        SealKey::derive(b"mesh secret", "ghp_token")
    }

    #[test]
    fn round_trip() {
        let k = key();
        let s = seal(&k, "GET /repos/o/r/actions/runs", b"{\"a\":1}");
        assert_eq!(s.len(), MIN_SEALED_LEN + 7);
        assert_eq!(
            open(&k, "GET /repos/o/r/actions/runs", &s).unwrap(),
            b"{\"a\":1}"
        );
        let e = seal(&k, "k", b"");
        assert_eq!(open(&k, "k", &e).unwrap(), b"");
    }

    #[test]
    fn nonces_differ() {
        let k = key();
        assert_ne!(seal(&k, "k", b"same"), seal(&k, "k", b"same"));
    }

    #[test]
    fn derivation_depends_on_both_inputs_and_is_deterministic() {
        let s = seal(&key(), "k", b"x");
        assert!(open(&SealKey::derive(b"mesh secret", "ghp_token"), "k", &s).is_ok());
        assert_eq!(
            open(&SealKey::derive(b"other secret", "ghp_token"), "k", &s),
            Err(SealError::Auth)
        );
        assert_eq!(
            open(&SealKey::derive(b"mesh secret", "ghp_other"), "k", &s),
            Err(SealError::Auth)
        );
        // Length prefix: moving bytes between secret and token gives another key.
        assert_eq!(
            open(&SealKey::derive(b"mesh secretg", "hp_token"), "k", &s),
            Err(SealError::Auth)
        );
    }

    #[test]
    fn wrong_cache_key_is_rejected() {
        let k = key();
        let s = seal(&k, "GET /a", b"body");
        assert_eq!(open(&k, "GET /b", &s), Err(SealError::Auth));
    }

    #[test]
    fn truncated_forged_and_versioned_inputs_are_rejected() {
        let k = key();
        let s = seal(&k, "k", b"body");
        for n in 0..s.len() {
            assert!(open(&k, "k", &s[..n]).is_err(), "prefix of {n} bytes");
        }
        assert_eq!(open(&k, "k", &[]), Err(SealError::Truncated));
        assert_eq!(open(&k, "k", &[1u8; 28]), Err(SealError::Truncated));
        assert_eq!(open(&k, "k", &[1u8; 64]), Err(SealError::Auth));
        let mut v = s.clone();
        v[0] = 2;
        assert_eq!(open(&k, "k", &v), Err(SealError::Version(2)));
        let mut extended = s.clone();
        extended.push(0);
        assert_eq!(open(&k, "k", &extended), Err(SealError::Auth));
    }

    #[test]
    fn debug_hides_key() {
        assert_eq!(format!("{:?}", key()), "SealKey(****)");
    }

    proptest! {
        #[test]
        fn any_bit_flip_is_rejected(
            plain in proptest::collection::vec(any::<u8>(), 0..256),
            bit in any::<usize>(),
        ) {
            let k = key();
            let s = seal(&k, "GET /x", &plain);
            prop_assert_eq!(open(&k, "GET /x", &s).unwrap(), plain);
            let mut t = s.clone();
            let b = bit % (t.len() * 8);
            t[b / 8] ^= 1 << (b % 8);
            prop_assert!(open(&k, "GET /x", &t).is_err());
        }

        #[test]
        fn cache_key_binding(a in "[ -~]{0,40}", b in "[ -~]{0,40}") {
            prop_assume!(a != b);
            let k = key();
            let s = seal(&k, &a, b"payload");
            prop_assert_eq!(open(&k, &b, &s), Err(SealError::Auth));
        }
    }
}
