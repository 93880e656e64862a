//! Flotilla's wire formats on top of libp2p: the gossip/request [`Envelope`] and the
//! request-response frame ([`Frame`]).
//!
//! # Envelope
//! One version byte followed by a JSON object:
//!
//! ```text
//! +------+--------------------------------------------------------------+
//! | 0x01 | {"kind":"heartbeat","sent_ms":1763900000000,"body":{...}}    |
//! +------+--------------------------------------------------------------+
//! ```
//!
//! * `kind`: 1 to [`MAX_KIND_LEN`] characters of `[a-z0-9_.-]`, e.g. `heartbeat`, `claim`;
//! * `sent_ms`: the sender's wall clock, unix milliseconds (UTC);
//! * `body`: any JSON value, interpreted according to `kind`.
//!
//! The whole encoding is at most [`MAX_ENVELOPE_BYTES`] (256 KiB), the same bound as the
//! gossipsub max transmit size. Unknown fields are rejected, so a peer cannot smuggle data
//! the validator did not look at. Decoding never panics: every failure is a
//! [`ProtocolError`] value, and the node's default gossip validator rejects (and so
//! penalises, see [`super::node`]) any message that does not decode.
//!
//! A new, incompatible format gets a new version byte; decoders reject versions they do not
//! know with [`ProtocolError::UnsupportedVersion`].

use serde::de::{self, DeserializeOwned, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::clock::Millis;

/// The current envelope version (first byte on the wire).
pub const WIRE_VERSION: u8 = 1;

/// Largest encoded envelope, in bytes (version byte included): 256 KiB.
pub const MAX_ENVELOPE_BYTES: usize = 256 * 1024;

/// Largest encoded request-response answer, in bytes: 4 MiB, the node's default
/// `max_response_bytes` (a sealed GitHub response can be far larger than a gossip message).
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Longest `kind`, in bytes.
pub const MAX_KIND_LEN: usize = 64;

/// Why bytes are not a valid envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Zero bytes.
    #[error("empty message")]
    Empty,
    /// The first byte is not a version this build reads.
    #[error("unsupported envelope version {0} (this build reads version {WIRE_VERSION})")]
    UnsupportedVersion(u8),
    /// Larger than [`MAX_ENVELOPE_BYTES`].
    #[error("envelope of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not the expected JSON shape.
    #[error("malformed envelope: {0}")]
    Malformed(String),
    /// `kind` is empty, too long or has characters outside `[a-z0-9_.-]`.
    #[error("invalid envelope kind {0:?}: expected 1-64 characters of [a-z0-9_.-]")]
    BadKind(String),
}

/// A Flotilla message: what the scheduler gossips (heartbeats, claims, Merkle clocks) and
/// sends in requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Message kind, e.g. `heartbeat`.
    pub kind: String,
    /// Sender's wall clock when the message was built, unix milliseconds (UTC).
    pub sent_ms: Millis,
    /// Kind-specific content.
    pub body: serde_json::Value,
}

impl Envelope {
    /// An envelope of `kind` with a serialisable body.
    ///
    /// # Errors
    /// [`ProtocolError::Malformed`] if `body` does not serialise to JSON.
    pub fn new(
        kind: impl Into<String>,
        sent_ms: Millis,
        body: &impl Serialize,
    ) -> Result<Self, ProtocolError> {
        Ok(Self {
            kind: kind.into(),
            sent_ms,
            body: serde_json::to_value(body)
                .map_err(|e| ProtocolError::Malformed(e.to_string()))?,
        })
    }

    /// Encode: version byte, then JSON, at most [`MAX_ENVELOPE_BYTES`].
    ///
    /// # Errors
    /// [`ProtocolError::BadKind`] or [`ProtocolError::TooLarge`]; encoding itself cannot fail.
    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        self.encode_max(MAX_ENVELOPE_BYTES)
    }

    /// [`Envelope::encode`] with another size bound: request-response answers may be larger
    /// than gossip ([`MAX_RESPONSE_BYTES`]).
    ///
    /// # Errors
    /// [`ProtocolError::BadKind`] or [`ProtocolError::TooLarge`].
    pub fn encode_max(&self, max: usize) -> Result<Vec<u8>, ProtocolError> {
        check_kind(&self.kind)?;
        let mut out = Vec::with_capacity(128);
        out.push(WIRE_VERSION);
        serde_json::to_writer(&mut out, self)
            .map_err(|e| ProtocolError::Malformed(e.to_string()))?;
        if out.len() > max {
            return Err(ProtocolError::TooLarge {
                len: out.len(),
                max,
            });
        }
        Ok(out)
    }

    /// Decode bytes produced by [`Envelope::encode`] (by any peer: untrusted input).
    ///
    /// # Errors
    /// Every way the bytes can be wrong is a [`ProtocolError`]; this never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        Self::decode_max(bytes, MAX_ENVELOPE_BYTES)
    }

    /// [`Envelope::decode`] with another size bound (see [`Envelope::encode_max`]).
    ///
    /// # Errors
    /// As [`Envelope::decode`].
    pub fn decode_max(bytes: &[u8], max: usize) -> Result<Self, ProtocolError> {
        let (&version, rest) = bytes.split_first().ok_or(ProtocolError::Empty)?;
        if bytes.len() > max {
            return Err(ProtocolError::TooLarge {
                len: bytes.len(),
                max,
            });
        }
        if version != WIRE_VERSION {
            return Err(ProtocolError::UnsupportedVersion(version));
        }
        let env: Envelope =
            serde_json::from_slice(rest).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
        check_kind(&env.kind)?;
        Ok(env)
    }

    /// The body as a typed value.
    ///
    /// # Errors
    /// [`ProtocolError::Malformed`] if the body does not have `T`'s shape.
    pub fn body_as<T: DeserializeOwned>(&self) -> Result<T, ProtocolError> {
        T::deserialize(&self.body).map_err(|e| ProtocolError::Malformed(e.to_string()))
    }
}

fn check_kind(kind: &str) -> Result<(), ProtocolError> {
    let ok = !kind.is_empty()
        && kind.len() <= MAX_KIND_LEN
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ProtocolError::BadKind(kind.chars().take(80).collect()))
    }
}

/// Opaque bytes carried by the request-response protocol (`/flotilla/req/1.0.0`), encoded as
/// one CBOR byte string (major type 2) rather than an array of integers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame(pub Vec<u8>);

impl Serialize for Frame {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Frame {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Frame;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Frame, E> {
                Ok(Frame(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Frame, E> {
                Ok(Frame(v))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Frame, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(Frame(out))
            }
        }
        d.deserialize_bytes(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let e = Envelope::new(
            "heartbeat",
            1_763_900_000_000,
            &serde_json::json!({"load": 3}),
        )
        .unwrap();
        let bytes = e.encode().unwrap();
        assert_eq!(bytes[0], WIRE_VERSION);
        let d = Envelope::decode(&bytes).unwrap();
        assert_eq!(d, e);
        #[derive(Deserialize)]
        struct Hb {
            load: u32,
        }
        assert_eq!(d.body_as::<Hb>().unwrap().load, 3);
    }

    #[test]
    fn garbage_is_an_error_value() {
        assert_eq!(Envelope::decode(&[]), Err(ProtocolError::Empty));
        assert_eq!(
            Envelope::decode(&[7, b'{', b'}']),
            Err(ProtocolError::UnsupportedVersion(7))
        );
        assert!(matches!(
            Envelope::decode(b"\x01not json"),
            Err(ProtocolError::Malformed(_))
        ));
        assert!(matches!(
            Envelope::decode(b"\x01{\"kind\":\"a\",\"sent_ms\":1,\"body\":null,\"x\":1}"),
            Err(ProtocolError::Malformed(_))
        ));
        assert!(matches!(
            Envelope::decode(b"\x01{\"kind\":\"A B\",\"sent_ms\":1,\"body\":null}"),
            Err(ProtocolError::BadKind(_))
        ));
        // Deep nesting hits serde_json's recursion limit: an error, not a stack overflow.
        let mut deep = b"\x01{\"kind\":\"a\",\"sent_ms\":1,\"body\":".to_vec();
        deep.extend(std::iter::repeat_n(b'[', 10_000));
        assert!(Envelope::decode(&deep).is_err());
        // Arbitrary bytes never panic.
        let mut x: u32 = 0x1234_5678;
        for len in 0..200 {
            let v: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    (x & 0xff) as u8
                })
                .collect();
            let _ = Envelope::decode(&v);
        }
    }

    #[test]
    fn size_is_bounded() {
        let big = "x".repeat(MAX_ENVELOPE_BYTES);
        let e = Envelope::new("blob", 0, &big).unwrap();
        assert!(matches!(e.encode(), Err(ProtocolError::TooLarge { .. })));
        let mut raw = vec![WIRE_VERSION];
        raw.resize(MAX_ENVELOPE_BYTES + 1, b' ');
        assert!(matches!(
            Envelope::decode(&raw),
            Err(ProtocolError::TooLarge { .. })
        ));
        // Answers may be larger, up to their own bound.
        let bytes = e.encode_max(MAX_RESPONSE_BYTES).unwrap();
        assert_eq!(Envelope::decode_max(&bytes, MAX_RESPONSE_BYTES).unwrap(), e);
        assert!(matches!(
            Envelope::decode_max(&bytes, 1024),
            Err(ProtocolError::TooLarge { .. })
        ));
    }

    #[test]
    fn frame_is_a_json_compatible_serde_value() {
        // serde_json has no byte strings: bytes serialise as an array and still round-trip.
        let f = Frame(vec![1, 2, 255]);
        let s = serde_json::to_string(&f).unwrap();
        assert_eq!(s, "[1,2,255]");
        assert_eq!(serde_json::from_str::<Frame>(&s).unwrap(), f);
    }
}
