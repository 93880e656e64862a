//! Private-network key: derives the 32-byte pnet pre-shared key from the fleet's shared
//! secret.
//!
//! libp2p private networks follow the [pnet PSK v1 spec]: right after the TCP connection is
//! opened, each side sends a random 24-byte nonce and from then on XORs its stream with
//! XSalsa20 keyed by the 32-byte pre-shared key. Peers with a different key read garbage, so
//! the Noise handshake that follows fails and no connection is established. pnet runs over
//! TCP only (QUIC has its own TLS handshake and no pnet layer), which is why
//! [`super::node`] disables QUIC when a key is set.
//!
//! The operator does not write the 32 raw bytes: they give a secret of any length
//! (`FLOTILLA_P2P_SECRET`, or a secret file) and every node derives the same key with
//! HKDF-SHA256 (RFC 5869):
//!
//! ```text
//! PRK = HMAC-SHA256(salt = "flotilla/pnet/salt/v1", IKM = secret bytes)
//! PSK = HKDF-Expand(PRK, info = "flotilla/pnet/v1", L = 32)
//! ```
//!
//! The salt and info strings are fixed: changing either splits the fleet. The key itself is
//! never logged; [`fingerprint`] (go-libp2p's fingerprint, 16 bytes hex) is safe to log and
//! compare across nodes.
//!
//! [pnet PSK v1 spec]: https://github.com/libp2p/specs/blob/master/pnet/Private-Networks-PSK-V1.md

use hkdf::Hkdf;
use libp2p::pnet::PreSharedKey;
use sha2::Sha256;

/// Environment variable that holds the shared secret (read by the caller, not here).
pub const SECRET_ENV: &str = "FLOTILLA_P2P_SECRET";

/// HKDF salt (fixed; part of the wire contract).
pub const PSK_SALT: &[u8] = b"flotilla/pnet/salt/v1";

/// HKDF info string (fixed; part of the wire contract; bump the version to rotate).
pub const PSK_INFO: &[u8] = b"flotilla/pnet/v1";

/// Errors deriving the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PskError {
    /// The secret is empty (after trimming surrounding whitespace).
    #[error(
        "the p2p secret is empty; set {SECRET_ENV} or a non-empty secret file, or run without a private network"
    )]
    Empty,
}

/// Derive the 32-byte pnet pre-shared key from the shared secret with HKDF-SHA256
/// ([`PSK_SALT`], [`PSK_INFO`]).
///
/// Leading and trailing ASCII whitespace is trimmed first, so a secret file ending in a
/// newline and the same secret in `FLOTILLA_P2P_SECRET` give the same key.
///
/// # Errors
/// [`PskError::Empty`] if nothing is left after trimming.
pub fn derive_psk(secret: &[u8]) -> Result<[u8; 32], PskError> {
    let secret = secret.trim_ascii();
    if secret.is_empty() {
        return Err(PskError::Empty);
    }
    let hk = Hkdf::<Sha256>::new(Some(PSK_SALT), secret);
    let mut okm = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's 255 * 32 byte limit, so this cannot fail.
    hk.expand(PSK_INFO, &mut okm)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    Ok(okm)
}

/// The key's fingerprint as 32 lowercase hex characters (go-libp2p compatible); safe to log.
pub fn fingerprint(psk: &[u8; 32]) -> String {
    PreSharedKey::new(*psk).fingerprint().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn known_answer() {
        // Computed independently with Python's hmac/hashlib (RFC 5869 HKDF).
        let k = derive_psk(b"correct horse battery staple").unwrap();
        assert_eq!(
            hex(&k),
            "81d55225b622678be2af680f1356d8ad16cf5b1b5e188cdda42609f029d344fc"
        );
    }

    #[test]
    fn deterministic_and_distinct() {
        let a = derive_psk(b"fleet-secret").unwrap();
        assert_eq!(a, derive_psk(b"fleet-secret").unwrap());
        assert_ne!(a, derive_psk(b"fleet-secret2").unwrap());
        assert_eq!(a, derive_psk(b"  fleet-secret\n").unwrap());
    }

    #[test]
    fn empty_is_an_error() {
        assert_eq!(derive_psk(b""), Err(PskError::Empty));
        assert_eq!(derive_psk(b" \n\t"), Err(PskError::Empty));
        assert!(PskError::Empty.to_string().contains(SECRET_ENV));
    }

    #[test]
    fn fingerprint_does_not_reveal_key() {
        let k = derive_psk(b"fleet-secret").unwrap();
        let fp = fingerprint(&k);
        assert_eq!(fp.len(), 32);
        assert!(!fp.contains(&hex(&k)[..16]));
        assert_ne!(fp, fingerprint(&derive_psk(b"other").unwrap()));
    }
}
