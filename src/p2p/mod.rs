//! The libp2p mesh: identity, private-network key, wire envelope and the node itself.
//!
//! * [`identity`]: the node's Ed25519 keypair, kept as `p2p_identity.key` in the data dir;
//! * [`psk`]: the private-network (pnet) key derived from the fleet's shared secret;
//! * [`protocol`]: Flotilla's message envelope (version byte + JSON, bounded size);
//! * [`node`]: the swarm (TCP/QUIC, Noise, Yamux, identify, ping, gossipsub, Kademlia,
//!   request-response, mDNS) on its own tokio task, reached through a
//!   [`node::NodeHandle`];
//! * [`router`]: inbound requests to handlers by envelope kind;
//! * [`cache_share`]: GitHub cache entries shared across the mesh (announcements over
//!   gossipsub, sealed entries over request-response).

pub mod cache_share;
pub mod identity;
pub mod node;
pub mod protocol;
pub mod psk;
pub mod router;

pub use node::{
    GossipMessage, InboundRequest, Node, NodeConfig, NodeError, NodeEvent, NodeHandle, PeerInfo,
    Validation, Validator, envelope_validator, parse_multiaddr,
};

/// A peer ID shortened for display: `…` and its last 6 characters (`12D3KooW…` IDs share
/// their start). IDs of 12 characters or fewer are returned whole.
pub fn short_peer(p: &str) -> String {
    let n = p.chars().count();
    if n <= 12 {
        return p.to_string();
    }
    let tail: String = p.chars().skip(n - 6).collect();
    format!("…{tail}")
}
