//! The libp2p node: one swarm running in its own tokio task (an actor), driven through a
//! cloneable [`NodeHandle`].
//!
//! # Stack
//! * Transports: TCP (with DNS resolution of `/dns*` addresses when the system resolver
//!   config is readable) upgraded with Noise (XX, Ed25519 identities) and Yamux; QUIC v1
//!   (`/udp/<port>/quic-v1`) as well **only when no pre-shared key is set**: the private
//!   network layer ([pnet PSK v1]) wraps the raw TCP stream before Noise and has no QUIC
//!   equivalent, so with a PSK a QUIC listen or bootstrap address is a configuration error
//!   ([`NodeError::QuicWithPsk`]).
//! * Behaviours, in the order they see connections:
//!   * a block list (`ban`): blocked peers' connections are denied and closed;
//!   * [identify] (`/ipfs/id/1.0.0`), protocol version `/flotilla/1.0.0`, agent
//!     `flotilla/<crate version>` plus an optional suffix;
//!   * [ping] (`/ipfs/ping/1.0.0`); the last round-trip time shows in [`PeerInfo::rtt_ms`];
//!   * [gossipsub v1.1] (`/meshsub/1.1.0`, `/meshsub/1.0.0`): signed messages
//!     (`StrictSign` + `ValidationMode::Strict`), max transmit size
//!     [`NodeConfig::max_message_bytes`], application validation (every message waits for the
//!     [`NodeConfig::validator`] verdict before it is delivered or forwarded) and peer
//!     scoring (see below);
//!   * [Kademlia] (`/flotilla/kad/1.0.0`, in-memory record store, server mode) for peer
//!     discovery, refreshed every [`NodeConfig::discovery_interval`];
//!   * request-response (`/flotilla/req/1.0.0`, CBOR codec carrying one byte string each
//!     way, size limits [`NodeConfig::max_request_bytes`] / [`NodeConfig::max_response_bytes`]);
//!   * mDNS (LAN discovery, on by default, [`NodeConfig::mdns`]).
//!
//! # Validation, scoring and bans
//! Inbound gossip is handed to [`NodeConfig::validator`] (synchronously, on the node task;
//! keep it cheap). The verdict is reported to gossipsub:
//! * [`Validation::Accept`]: the message is forwarded to the mesh and delivered to the app
//!   as [`NodeEvent::Message`];
//! * [`Validation::Ignore`]: dropped, no penalty;
//! * [`Validation::Reject`]: dropped, and the peer that sent it to us is penalised twice:
//!   gossipsub's P₄ "invalid message deliveries" counter for the topic (weight -10, squared)
//!   and an application-specific score of -10 per reject (P₅, weight 1). With the
//!   thresholds used (gossip -10, publish -50, graylist -80) one reject already stops us
//!   gossiping to the peer, two stop us publishing to it, three graylist it. After
//!   [`NodeConfig::max_rejects`] rejects (default 3) the node also disconnects the peer and
//!   blocks it ([`NodeEvent::PeerBanned`]); so it does, within a second, for a peer with at
//!   least one reject whose score has fallen below the graylist threshold (other penalties,
//!   e.g. GRAFT during backoff, can get it there first, and gossipsub then ignores its
//!   messages, so it would never reach `max_rejects`). [`NodeHandle::unban`] lifts a ban.
//!
//! Mesh-delivery penalties (P₃, P₃b) are disabled: a CI fleet's topics are quiet, and those
//! penalties would graylist honest but idle peers.
//!
//! # Bootstrap
//! Bootstrap addresses are dialed at start. A failed dial is never fatal: it emits
//! [`NodeEvent::BootstrapFailed`] and the address is re-dialed after an exponential backoff
//! ([`NodeConfig::bootstrap_backoff_initial`], doubling, capped at
//! [`NodeConfig::bootstrap_backoff_max`]). A bootstrap peer whose last connection closes is
//! re-dialed too (after the initial backoff), unless it was banned.
//!
//! [pnet PSK v1]: https://github.com/libp2p/specs/blob/master/pnet/Private-Networks-PSK-V1.md
//! [identify]: https://github.com/libp2p/specs/blob/master/identify/README.md
//! [ping]: https://github.com/libp2p/specs/blob/master/ping/ping.md
//! [gossipsub v1.1]: https://github.com/libp2p/specs/blob/master/pubsub/gossipsub/gossipsub-v1.1.md
//! [Kademlia]: https://github.com/libp2p/specs/blob/master/kad-dht/README.md

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{Boxed, ListenerId};
use libp2p::core::{Transport, upgrade};
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, PublishError, TopicHash};
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::pnet::{PnetConfig, PreSharedKey};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError, NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder, allow_block_list, identify, kad, mdns,
    noise, ping, quic, tcp, yamux,
};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::protocol::{Envelope, Frame, MAX_ENVELOPE_BYTES, MAX_RESPONSE_BYTES};
use crate::clock::{Millis, SharedClock, SystemClock};

/// Identify protocol version string.
pub const PROTOCOL_VERSION: &str = "/flotilla/1.0.0";
/// Kademlia protocol name.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/flotilla/kad/1.0.0");
/// Request-response protocol name.
pub const REQ_PROTOCOL: StreamProtocol = StreamProtocol::new("/flotilla/req/1.0.0");
/// Bytes of CBOR framing allowed on top of a request/response payload (byte-string header).
const FRAME_OVERHEAD: usize = 16;
/// Application-specific score added per rejected message (times `app_specific_weight` 1).
const APP_PENALTY_PER_REJECT: f64 = -10.0;
/// Gossipsub graylist threshold: below it a peer's RPCs are ignored.
const GRAYLIST_THRESHOLD: f64 = -80.0;

/// Errors of the p2p node. Messages name the offending value.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A multiaddr string did not parse.
    #[error("invalid multiaddr {text:?}: {reason}")]
    BadMultiaddr {
        /// The text as given.
        text: String,
        /// What the parser said.
        reason: String,
    },
    /// A listen address could not be used (unsupported, in use, permission denied).
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The listen address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// A QUIC address was given together with a pre-shared key.
    #[error(
        "{addr} is a QUIC address, but a private network key is set and pnet runs over TCP only; use a /tcp/ address"
    )]
    QuicWithPsk {
        /// The QUIC address.
        addr: Multiaddr,
    },
    /// Building the transport or a behaviour failed.
    #[error("p2p setup failed: {0}")]
    Setup(String),
    /// A topic name is empty.
    #[error("invalid topic {0:?}: must be non-empty")]
    BadTopic(String),
    /// No connected peer has subscribed to the topic yet, so a publish would reach nobody.
    /// `publish` does not queue: retry once a peer has subscribed.
    #[error("no peer has subscribed to topic {topic:?} yet; retry once a peer subscribes")]
    NoSubscribers {
        /// The topic.
        topic: String,
    },
    /// A message, request or response is above its size limit.
    #[error("{what} of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// `message`, `request` or `response`.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// Gossipsub refused the publish for another reason.
    #[error("publish to {topic:?} failed: {reason}")]
    Publish {
        /// The topic.
        topic: String,
        /// Gossipsub's error.
        reason: String,
    },
    /// Subscribing failed.
    #[error("subscribe to {topic:?} failed: {reason}")]
    Subscribe {
        /// The topic.
        topic: String,
        /// Gossipsub's error.
        reason: String,
    },
    /// A request failed: dial failure, connection closed, protocol not supported, the remote
    /// refused it (e.g. above its size limit, no handler) or timed out inside libp2p.
    #[error("request to {peer} failed: {reason}")]
    Request {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// No response within the request timeout.
    #[error("request to {peer} timed out after {:.1}s", .after.as_secs_f64())]
    Timeout {
        /// The peer.
        peer: PeerId,
        /// The timeout.
        after: Duration,
    },
    /// Dialing an address failed immediately.
    #[error("cannot dial {addr}: {reason}")]
    Dial {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// The node task has stopped (shut down, or its listeners failed).
    #[error("the p2p node has stopped")]
    Stopped,
}

/// Parse a multiaddr, e.g. `/ip4/10.0.0.5/tcp/9100/p2p/12D3KooW...`.
///
/// # Errors
/// [`NodeError::BadMultiaddr`] naming the text and the parser's reason.
pub fn parse_multiaddr(s: &str) -> Result<Multiaddr, NodeError> {
    let text = s.trim();
    if text.is_empty() {
        return Err(NodeError::BadMultiaddr {
            text: s.to_string(),
            reason: "empty".into(),
        });
    }
    text.parse::<Multiaddr>()
        .map_err(|e| NodeError::BadMultiaddr {
            text: s.to_string(),
            reason: e.to_string(),
        })
}

/// A validator's verdict on an inbound gossip message (gossipsub v1.1 extended validation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    /// Valid: deliver to the app and forward to the mesh.
    Accept,
    /// Invalid: drop and penalise the peer that sent it.
    Reject,
    /// Not interesting (e.g. stale): drop without penalty.
    Ignore,
}

impl From<Validation> for MessageAcceptance {
    fn from(v: Validation) -> Self {
        match v {
            Validation::Accept => MessageAcceptance::Accept,
            Validation::Reject => MessageAcceptance::Reject,
            Validation::Ignore => MessageAcceptance::Ignore,
        }
    }
}

/// An inbound gossip message as the validator sees it.
#[derive(Debug, Clone, Copy)]
pub struct GossipMessage<'a> {
    /// Topic name.
    pub topic: &'a str,
    /// Author (signed; always present under strict validation).
    pub from: Option<PeerId>,
    /// The peer that sent it to us (the one penalised on reject).
    pub via: PeerId,
    /// Payload.
    pub data: &'a [u8],
}

/// The gossip validation callback. Runs on the node task: it must be quick and must not
/// block (a panic counts as [`Validation::Ignore`] and is logged).
pub type Validator = Arc<dyn Fn(&GossipMessage<'_>) -> Validation + Send + Sync>;

/// The default validator: accept what decodes as a [`Envelope`], reject everything else.
pub fn envelope_validator() -> Validator {
    Arc::new(|m: &GossipMessage<'_>| match Envelope::decode(m.data) {
        Ok(_) => Validation::Accept,
        Err(e) => {
            debug!(topic = m.topic, via = %m.via, error = %e, "rejecting gossip message");
            Validation::Reject
        }
    })
}

/// An inbound request for the app to answer.
#[derive(Debug)]
pub struct InboundRequest {
    /// The requesting peer.
    pub peer: PeerId,
    /// Request payload.
    pub bytes: Vec<u8>,
    /// Send the response payload here (at most [`NodeConfig::max_response_bytes`]). Dropping
    /// it without sending makes the request fail at the remote.
    pub respond: oneshot::Sender<Vec<u8>>,
}

/// Node configuration. Build with [`NodeConfig::new`] and adjust the public fields.
#[derive(Clone)]
pub struct NodeConfig {
    /// The node's identity (see [`super::identity::load_or_create`]).
    pub identity: Keypair,
    /// Listen addresses, e.g. `/ip4/0.0.0.0/tcp/9100` (`tcp/0`: the OS picks a port; read it
    /// back with [`NodeHandle::listen_addrs`]). Default: `/ip4/0.0.0.0/tcp/9100`.
    pub listen: Vec<Multiaddr>,
    /// Bootstrap peers, dialed at start and re-dialed with backoff. `/p2p/<id>` optional.
    pub bootstrap: Vec<Multiaddr>,
    /// Private network key ([`super::psk::derive_psk`]); `None`: public network, QUIC on.
    pub psk: Option<[u8; 32]>,
    /// LAN discovery with mDNS. Default `true`.
    pub mdns: bool,
    /// Appended to the identify agent: `flotilla/<version> (<suffix>)`, e.g. the node name.
    pub agent_suffix: Option<String>,
    /// Gossipsub heartbeat interval. Default 1 s.
    pub heartbeat: Duration,
    /// Ping interval. Default 15 s.
    pub ping_interval: Duration,
    /// Kademlia refresh (random walk) interval. Default 30 s.
    pub discovery_interval: Duration,
    /// Request-response timeout. Default 10 s.
    pub request_timeout: Duration,
    /// Largest gossip payload, bytes. Default 256 KiB.
    pub max_message_bytes: usize,
    /// Largest request payload, bytes (inbound and outbound). Default 1 MiB.
    pub max_request_bytes: usize,
    /// Largest response payload, bytes (inbound and outbound). Default 4 MiB.
    pub max_response_bytes: usize,
    /// Rejected messages after which a peer is disconnected and blocked. Default 3.
    pub max_rejects: u32,
    /// First bootstrap retry delay. Default 1 s.
    pub bootstrap_backoff_initial: Duration,
    /// Longest bootstrap retry delay. Default 60 s.
    pub bootstrap_backoff_max: Duration,
    /// Close connections no protocol uses for this long. Default 120 s.
    pub idle_timeout: Duration,
    /// Capacity of the event broadcast channel (slow subscribers lose the oldest events).
    pub event_capacity: usize,
    /// Gossip validation callback. Default [`envelope_validator`].
    pub validator: Validator,
    /// Where inbound requests go; `None`: inbound requests are refused.
    pub inbound_requests: Option<mpsc::Sender<InboundRequest>>,
    /// Clock for `last_seen_ms`.
    pub clock: SharedClock,
}

impl std::fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeConfig")
            .field("peer_id", &self.identity.public().to_peer_id())
            .field("listen", &self.listen)
            .field("bootstrap", &self.bootstrap)
            .field(
                "psk_fingerprint",
                &self.psk.as_ref().map(super::psk::fingerprint),
            )
            .field("mdns", &self.mdns)
            .field("agent_suffix", &self.agent_suffix)
            .field("heartbeat", &self.heartbeat)
            .field("max_rejects", &self.max_rejects)
            .finish_non_exhaustive()
    }
}

impl NodeConfig {
    /// Defaults (see each field) around an identity.
    pub fn new(identity: Keypair) -> Self {
        Self {
            identity,
            listen: vec!["/ip4/0.0.0.0/tcp/9100".parse().expect("valid multiaddr")],
            bootstrap: Vec::new(),
            psk: None,
            mdns: true,
            agent_suffix: None,
            heartbeat: Duration::from_secs(1),
            ping_interval: Duration::from_secs(15),
            discovery_interval: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            max_message_bytes: MAX_ENVELOPE_BYTES,
            max_request_bytes: 1024 * 1024,
            max_response_bytes: MAX_RESPONSE_BYTES,
            max_rejects: 3,
            bootstrap_backoff_initial: Duration::from_secs(1),
            bootstrap_backoff_max: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(120),
            event_capacity: 1024,
            validator: envelope_validator(),
            inbound_requests: None,
            clock: Arc::new(SystemClock),
        }
    }

    /// The identify agent string.
    pub fn agent_version(&self) -> String {
        let base = format!("flotilla/{}", env!("CARGO_PKG_VERSION"));
        match self.agent_suffix.as_deref().map(str::trim) {
            Some(s) if !s.is_empty() => format!("{base} ({s})"),
            _ => base,
        }
    }
}

/// What the node knows about a peer.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerInfo {
    /// Peer ID.
    pub peer_id: PeerId,
    /// Addresses: the connection's remote address, then the listen addresses it announced
    /// via identify (at most 8).
    pub addrs: Vec<Multiaddr>,
    /// Identify agent version, e.g. `flotilla/0.1.0 (node-a)`.
    pub agent: Option<String>,
    /// Identify protocol version, e.g. `/flotilla/1.0.0`.
    pub protocol_version: Option<String>,
    /// Protocols it supports (identify), e.g. `/meshsub/1.1.0`.
    pub protocols: Vec<String>,
    /// Last ping round-trip time, milliseconds.
    pub rtt_ms: Option<f64>,
    /// At least one connection is open.
    pub connected: bool,
    /// Last connection, ping, identify or accepted message, unix milliseconds.
    pub last_seen_ms: Millis,
    /// Gossipsub score (negative: penalised).
    pub score: Option<f64>,
    /// Messages from it we rejected.
    pub rejects: u32,
    /// Blocked by [`NodeHandle::ban`] or too many rejects.
    pub banned: bool,
}

/// Things that happen on the node, broadcast to [`NodeHandle::events`] subscribers.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeEvent {
    /// First connection to a peer opened.
    PeerConnected {
        /// Peer.
        peer_id: PeerId,
        /// Remote address of that connection.
        addr: Multiaddr,
    },
    /// Last connection to a peer closed.
    PeerDisconnected {
        /// Peer.
        peer_id: PeerId,
    },
    /// An accepted gossip message on a subscribed topic.
    Message {
        /// Topic.
        topic: String,
        /// Author (signed).
        from: PeerId,
        /// Payload.
        bytes: Vec<u8>,
        /// Gossipsub message ID.
        id: String,
    },
    /// Dialing a bootstrap address failed; it is retried after `retry_in`.
    BootstrapFailed {
        /// The bootstrap address.
        addr: Multiaddr,
        /// Why.
        error: String,
        /// Delay before the next attempt (doubles each failure, capped).
        retry_in: Duration,
    },
    /// A peer sent a message the validator rejected.
    PeerPenalised {
        /// The peer that sent it to us.
        peer_id: PeerId,
        /// Rejects so far.
        rejects: u32,
        /// Its gossipsub score after the penalty.
        score: Option<f64>,
    },
    /// A connected peer subscribed to a topic (its gossipsub subscription arrived); from now on
    /// [`NodeHandle::publish`] on that topic reaches it.
    PeerSubscribed {
        /// Peer.
        peer_id: PeerId,
        /// Topic.
        topic: String,
    },
    /// A peer was disconnected and blocked.
    PeerBanned {
        /// Peer.
        peer_id: PeerId,
        /// Why, e.g. `3 rejected messages` or `banned by the operator`.
        reason: String,
    },
}

/// Commands from handles to the node task.
enum Command {
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    Subscribe(String, oneshot::Sender<Result<bool, NodeError>>),
    Unsubscribe(String, oneshot::Sender<bool>),
    Publish(String, Vec<u8>, oneshot::Sender<Result<String, NodeError>>),
    Request(PeerId, Vec<u8>, oneshot::Sender<Result<Vec<u8>, NodeError>>),
    Dial(Multiaddr, oneshot::Sender<Result<(), NodeError>>),
    Disconnect(PeerId, oneshot::Sender<bool>),
    Ban(PeerId, oneshot::Sender<()>),
    Unban(PeerId, oneshot::Sender<()>),
    Report(PeerId, String, oneshot::Sender<()>),
    Subscribers(String, oneshot::Sender<Vec<PeerId>>),
    Shutdown,
}

/// A cloneable handle on a running node. Every async method fails with
/// [`NodeError::Stopped`] once the node task has ended.
#[derive(Clone)]
pub struct NodeHandle {
    peer_id: PeerId,
    tx: mpsc::Sender<Command>,
    events: broadcast::Sender<NodeEvent>,
    request_timeout: Duration,
}

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHandle")
            .field("peer_id", &self.peer_id)
            .finish()
    }
}

impl NodeHandle {
    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    /// This node's peer ID (fixed, so not async).
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Full listen multiaddrs ending in `/p2p/<peer id>`; with `tcp/0` the port the OS chose,
    /// with `0.0.0.0` one address per interface.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NodeError> {
        self.call(Command::ListenAddrs).await
    }

    /// Known peers (connected or seen before), sorted by peer ID.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, NodeError> {
        self.call(Command::Peers).await
    }

    /// Subscribe to a topic (gossipsub `IdentTopic`: the hash is the name). `Ok(false)` if
    /// already subscribed.
    pub async fn subscribe(&self, topic: &str) -> Result<bool, NodeError> {
        let t = topic.to_string();
        self.call(|tx| Command::Subscribe(t, tx)).await?
    }

    /// Unsubscribe; `Ok(false)` if not subscribed.
    pub async fn unsubscribe(&self, topic: &str) -> Result<bool, NodeError> {
        let t = topic.to_string();
        self.call(|tx| Command::Unsubscribe(t, tx)).await
    }

    /// Publish `bytes` on `topic`; returns the gossipsub message ID.
    ///
    /// Does not queue: if no connected peer has subscribed to the topic yet (or all that
    /// have are below the publish score threshold) this returns
    /// [`NodeError::NoSubscribers`] at once; retry after a [`NodeEvent::PeerConnected`].
    /// The local node does not receive its own message.
    ///
    /// # Errors
    /// [`NodeError::NoSubscribers`], [`NodeError::TooLarge`] (above
    /// [`NodeConfig::max_message_bytes`]), [`NodeError::Publish`], [`NodeError::Stopped`].
    pub async fn publish(&self, topic: &str, bytes: Vec<u8>) -> Result<String, NodeError> {
        let t = topic.to_string();
        self.call(|tx| Command::Publish(t, bytes, tx)).await?
    }

    /// Send a request and wait for the response (at most [`NodeConfig::request_timeout`]).
    ///
    /// # Errors
    /// [`NodeError::TooLarge`] (above [`NodeConfig::max_request_bytes`]), [`NodeError::Request`],
    /// [`NodeError::Timeout`], [`NodeError::Stopped`].
    pub async fn request(&self, peer: PeerId, bytes: Vec<u8>) -> Result<Vec<u8>, NodeError> {
        let fut = self.call(|tx| Command::Request(peer, bytes, tx));
        // libp2p enforces the timeout too; this outer one also covers a stuck node task.
        let limit = self.request_timeout + Duration::from_secs(1);
        match tokio::time::timeout(limit, fut).await {
            Ok(r) => r?,
            Err(_) => Err(NodeError::Timeout {
                peer,
                after: self.request_timeout,
            }),
        }
    }

    /// Dial an address (e.g. a peer found out of band).
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NodeError> {
        self.call(|tx| Command::Dial(addr, tx)).await?
    }

    /// Close all connections to a peer; `Ok(false)` if not connected. Bootstrap peers are
    /// re-dialed after the initial backoff (ban them to keep them away).
    pub async fn disconnect(&self, peer: PeerId) -> Result<bool, NodeError> {
        self.call(|tx| Command::Disconnect(peer, tx)).await
    }

    /// Block a peer: close its connections, deny new ones, ignore its gossip.
    pub async fn ban(&self, peer: PeerId) -> Result<(), NodeError> {
        self.call(|tx| Command::Ban(peer, tx)).await
    }

    /// Lift a ban and forget the peer's reject count.
    pub async fn unban(&self, peer: PeerId) -> Result<(), NodeError> {
        self.call(|tx| Command::Unban(peer, tx)).await
    }

    /// Report a peer for an invalid answer outside gossip (e.g. a forged entry in a
    /// request-response exchange): it is penalised exactly like a rejected gossip message
    /// (application score -10 per report, [`NodeEvent::PeerPenalised`], banned after
    /// [`NodeConfig::max_rejects`]). `reason` is logged; it must not hold secrets.
    pub async fn report(&self, peer: PeerId, reason: &str) -> Result<(), NodeError> {
        let r = reason.chars().take(200).collect::<String>();
        self.call(|tx| Command::Report(peer, r, tx)).await
    }

    /// Connected peers subscribed to `topic` (as their gossipsub subscriptions say), sorted.
    pub async fn subscribers(&self, topic: &str) -> Result<Vec<PeerId>, NodeError> {
        let t = topic.to_string();
        self.call(|tx| Command::Subscribers(t, tx)).await
    }

    /// Subscribe to node events. Only events after this call are received (use
    /// [`NodeHandle::peers`] for the current state); a subscriber more than
    /// [`NodeConfig::event_capacity`] events behind loses the oldest (`RecvError::Lagged`).
    pub fn events(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    /// Stop the node: close connections and end the task.
    pub async fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown).await;
    }
}

/// The composed behaviour.
#[derive(NetworkBehaviour)]
struct Behaviour {
    blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    gossipsub: gossipsub::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    rr: request_response::cbor::Behaviour<Frame, Frame>,
    mdns: Toggle<mdns::tokio::Behaviour>,
}

/// The node (constructor only; the running node is reached through [`NodeHandle`]).
pub struct Node;

impl Node {
    /// Build the swarm, start listening, and run it on a new tokio task. Returns once every
    /// listen address is bound (so [`NodeHandle::listen_addrs`] already has the ports).
    ///
    /// The task ends on [`NodeHandle::shutdown`] or when every handle is dropped; the
    /// `JoinHandle` completes then.
    ///
    /// # Errors
    /// [`NodeError::QuicWithPsk`], [`NodeError::Listen`] (naming the address),
    /// [`NodeError::Setup`].
    pub async fn spawn(cfg: NodeConfig) -> Result<(NodeHandle, JoinHandle<()>), NodeError> {
        if cfg.psk.is_some() {
            for addr in cfg.listen.iter().chain(&cfg.bootstrap) {
                if is_quic(addr) {
                    return Err(NodeError::QuicWithPsk { addr: addr.clone() });
                }
            }
        }
        let mut swarm = build_swarm(&cfg)?;
        let peer_id = *swarm.local_peer_id();
        if let Some(psk) = &cfg.psk {
            info!(
                fingerprint = %super::psk::fingerprint(psk),
                "p2p private network enabled (pnet over TCP; QUIC disabled)"
            );
        }
        let mut pending_listeners = HashMap::new();
        for addr in &cfg.listen {
            ensure_tcp_port_free(addr)?;
            let id = swarm
                .listen_on(addr.clone())
                .map_err(|e| NodeError::Listen {
                    addr: addr.clone(),
                    reason: e.to_string(),
                })?;
            pending_listeners.insert(id, addr.clone());
        }
        let (tx, rx) = mpsc::channel(256);
        let (events, _) = broadcast::channel(cfg.event_capacity.max(16));
        let (ready_tx, ready_rx) = oneshot::channel();
        let now = Instant::now();
        let bootstrap = cfg
            .bootstrap
            .iter()
            .map(|addr| Bootstrap {
                addr: addr.clone(),
                peer: peer_of(addr),
                backoff: cfg.bootstrap_backoff_initial,
                next_dial: Some(now),
                dialing: None,
                connected: false,
            })
            .collect();
        let actor = Actor {
            swarm,
            cmds: rx,
            events: events.clone(),
            validator: cfg.validator.clone(),
            inbound: cfg.inbound_requests.clone(),
            clock: cfg.clock.clone(),
            max_rejects: cfg.max_rejects.max(1),
            max_message: cfg.max_message_bytes,
            max_request: cfg.max_request_bytes,
            max_response: cfg.max_response_bytes,
            backoff_initial: cfg.bootstrap_backoff_initial,
            backoff_max: cfg.bootstrap_backoff_max.max(cfg.bootstrap_backoff_initial),
            discovery_interval: cfg.discovery_interval,
            peers: HashMap::new(),
            rejects: HashMap::new(),
            banned: HashSet::new(),
            bootstrap,
            pending_out: HashMap::new(),
            pending_in: FuturesUnordered::new(),
            pending_listeners,
            ready: Some(ready_tx),
            stop: false,
        };
        let join = tokio::spawn(actor.run());
        match tokio::time::timeout(Duration::from_secs(10), ready_rx).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                let _ = join.await;
                return Err(e);
            }
            Ok(Err(_)) => return Err(NodeError::Stopped),
            Err(_) => {
                join.abort();
                return Err(NodeError::Setup(
                    "listeners did not report an address within 10s".into(),
                ));
            }
        }
        info!(%peer_id, agent = %cfg.agent_version(), "p2p node started");
        Ok((
            NodeHandle {
                peer_id,
                tx,
                events,
                request_timeout: cfg.request_timeout,
            },
            join,
        ))
    }
}

/// libp2p-tcp sets `SO_REUSEPORT` on listening sockets, so a second process could bind the
/// same TCP port and the kernel would split inbound connections between the two. Probe the
/// port with a plain socket first so an address in use is an error, as operators expect.
fn ensure_tcp_port_free(addr: &Multiaddr) -> Result<(), NodeError> {
    let mut ip = None;
    let mut port = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(a) => ip = Some(IpAddr::V4(a)),
            Protocol::Ip6(a) => ip = Some(IpAddr::V6(a)),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    match (ip, port) {
        (Some(ip), Some(port)) if port != 0 => std::net::TcpListener::bind((ip, port))
            .map(drop)
            .map_err(|e| NodeError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            }),
        _ => Ok(()),
    }
}

fn is_quic(addr: &Multiaddr) -> bool {
    addr.iter()
        .any(|p| matches!(p, Protocol::Quic | Protocol::QuicV1 | Protocol::Udp(_)))
}

fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

fn setup_err(e: impl std::fmt::Display) -> NodeError {
    NodeError::Setup(e.to_string())
}

/// TCP [+ pnet] + Noise + Yamux, or QUIC (without a PSK), all behind DNS resolution.
fn build_transport(
    key: &Keypair,
    psk: Option<[u8; 32]>,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, NodeError> {
    let raw = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
    let noise = noise::Config::new(key).map_err(setup_err)?;
    let timeout = Duration::from_secs(10);
    let tcp = match psk {
        Some(k) => raw
            .and_then(move |socket, _| PnetConfig::new(PreSharedKey::new(k)).handshake(socket))
            .upgrade(upgrade::Version::V1Lazy)
            .authenticate(noise)
            .multiplex(yamux::Config::default())
            .timeout(timeout)
            .boxed(),
        None => raw
            .upgrade(upgrade::Version::V1Lazy)
            .authenticate(noise)
            .multiplex(yamux::Config::default())
            .timeout(timeout)
            .boxed(),
    };
    let base = if psk.is_some() {
        tcp
    } else {
        let quic = quic::tokio::Transport::new(quic::Config::new(key))
            .map(|(peer, conn), _| (peer, StreamMuxerBox::new(conn)));
        tcp.or_transport(quic)
            .map(|either, _| either.into_inner())
            .boxed()
    };
    // DNS must wrap the whole stack: it turns "not my address" into an error of its own, so
    // wrapping only TCP would stop QUIC addresses from reaching the QUIC transport.
    // `system(())` probes the resolver configuration without consuming the transport.
    match libp2p::dns::tokio::Transport::system(()) {
        Ok(_) => Ok(libp2p::dns::tokio::Transport::system(base)
            .map_err(setup_err)?
            .boxed()),
        Err(e) => {
            warn!(error = %e, "cannot read the system DNS configuration; /dns addresses will not resolve");
            Ok(base)
        }
    }
}

fn topic_score_params() -> gossipsub::TopicScoreParams {
    gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        // P1: up to +1 for staying in the mesh (0.01 per second, cap 100 s).
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 100.0,
        // P2: up to +5 for first deliveries.
        first_message_deliveries_weight: 0.5,
        first_message_deliveries_decay: 0.9,
        first_message_deliveries_cap: 10.0,
        // P3/P3b off: quiet topics must not penalise honest peers.
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        // P4: -10 × (invalid deliveries)², decaying ~1 %/s.
        invalid_message_deliveries_weight: -10.0,
        invalid_message_deliveries_decay: 0.99,
        ..Default::default()
    }
}

fn peer_score_params() -> (gossipsub::PeerScoreParams, gossipsub::PeerScoreThresholds) {
    let params = gossipsub::PeerScoreParams {
        topic_score_cap: 10.0,
        app_specific_weight: 1.0,
        ip_colocation_factor_whitelist: [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ]
        .into_iter()
        .collect(),
        ..Default::default()
    };
    let thresholds = gossipsub::PeerScoreThresholds {
        gossip_threshold: -10.0,
        publish_threshold: -50.0,
        graylist_threshold: GRAYLIST_THRESHOLD,
        accept_px_threshold: 10.0,
        opportunistic_graft_threshold: 5.0,
    };
    (params, thresholds)
}

fn build_swarm(cfg: &NodeConfig) -> Result<Swarm<Behaviour>, NodeError> {
    let transport = build_transport(&cfg.identity, cfg.psk)?;
    let gossip_cfg = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .max_transmit_size(cfg.max_message_bytes + 4 * 1024)
        .heartbeat_interval(cfg.heartbeat)
        .build()
        .map_err(setup_err)?;
    let key = cfg.identity.clone();
    let peer_id = key.public().to_peer_id();
    let mdns = if cfg.mdns {
        match mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id) {
            Ok(m) => Some(m),
            Err(e) => {
                warn!(error = %e, "mDNS unavailable; continuing without LAN discovery");
                None
            }
        }
    } else {
        None
    };
    let mut gossipsub = gossipsub::Behaviour::new(
        gossipsub::MessageAuthenticity::Signed(key.clone()),
        gossip_cfg,
    )
    .map_err(setup_err)?;
    let (params, thresholds) = peer_score_params();
    gossipsub
        .with_peer_score(params, thresholds)
        .map_err(setup_err)?;
    let mut kad = kad::Behaviour::with_config(
        peer_id,
        kad::store::MemoryStore::new(peer_id),
        kad::Config::new(KAD_PROTOCOL),
    );
    kad.set_mode(Some(kad::Mode::Server));
    let codec = request_response::cbor::codec::Codec::<Frame, Frame>::default()
        .set_request_size_maximum((cfg.max_request_bytes + FRAME_OVERHEAD) as u64)
        .set_response_size_maximum((cfg.max_response_bytes + FRAME_OVERHEAD) as u64);
    let rr = request_response::Behaviour::with_codec(
        codec,
        [(REQ_PROTOCOL, ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(cfg.request_timeout),
    );
    let behaviour = Behaviour {
        blocked: Default::default(),
        identify: identify::Behaviour::new(
            identify::Config::new(PROTOCOL_VERSION.into(), key.public())
                .with_agent_version(cfg.agent_version()),
        ),
        ping: ping::Behaviour::new(ping::Config::new().with_interval(cfg.ping_interval)),
        gossipsub,
        kad,
        rr,
        mdns: Toggle::from(mdns),
    };
    let idle = cfg.idle_timeout;
    let swarm = SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_other_transport(|_| transport)
        .map_err(setup_err)?
        .with_behaviour(|_| behaviour)
        .map_err(setup_err)?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build();
    Ok(swarm)
}

#[derive(Debug, Default)]
struct PeerState {
    addrs: Vec<Multiaddr>,
    agent: Option<String>,
    protocol_version: Option<String>,
    protocols: Vec<String>,
    rtt_ms: Option<f64>,
    connected: bool,
    last_seen_ms: Millis,
}

impl PeerState {
    fn add_addr(&mut self, a: Multiaddr) {
        if !self.addrs.contains(&a) && self.addrs.len() < 8 {
            self.addrs.push(a);
        }
    }
}

struct Bootstrap {
    addr: Multiaddr,
    peer: Option<PeerId>,
    backoff: Duration,
    next_dial: Option<Instant>,
    dialing: Option<ConnectionId>,
    connected: bool,
}

type PendingRequest = (PeerId, oneshot::Sender<Result<Vec<u8>, NodeError>>);
type PendingResponse = BoxFuture<'static, (ResponseChannel<Frame>, PeerId, Option<Vec<u8>>)>;

struct Actor {
    swarm: Swarm<Behaviour>,
    cmds: mpsc::Receiver<Command>,
    events: broadcast::Sender<NodeEvent>,
    validator: Validator,
    inbound: Option<mpsc::Sender<InboundRequest>>,
    clock: SharedClock,
    max_rejects: u32,
    max_message: usize,
    max_request: usize,
    max_response: usize,
    backoff_initial: Duration,
    backoff_max: Duration,
    discovery_interval: Duration,
    peers: HashMap<PeerId, PeerState>,
    rejects: HashMap<PeerId, u32>,
    banned: HashSet<PeerId>,
    bootstrap: Vec<Bootstrap>,
    pending_out: HashMap<OutboundRequestId, PendingRequest>,
    pending_in: FuturesUnordered<PendingResponse>,
    pending_listeners: HashMap<ListenerId, Multiaddr>,
    ready: Option<oneshot::Sender<Result<(), NodeError>>>,
    stop: bool,
}

impl Actor {
    async fn run(mut self) {
        if self.pending_listeners.is_empty()
            && let Some(r) = self.ready.take()
        {
            let _ = r.send(Ok(()));
        }
        let mut discovery =
            tokio::time::interval(self.discovery_interval.max(Duration::from_secs(1)));
        discovery.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !self.stop {
            let due = self.bootstrap.iter().filter_map(|b| b.next_dial).min();
            let sleep = async move {
                match due {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => futures::future::pending().await,
                }
            };
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm_event(ev),
                cmd = self.cmds.recv() => match cmd {
                    Some(Command::Shutdown) | None => break,
                    Some(c) => self.on_command(c),
                },
                Some((channel, peer, resp)) = self.pending_in.next(), if !self.pending_in.is_empty() => {
                    self.on_response_ready(channel, peer, resp);
                }
                _ = sleep => self.dial_due_bootstraps(),
                _ = housekeeping.tick() => self.ban_graylisted_offenders(),
                _ = discovery.tick() => {
                    if self.swarm.connected_peers().next().is_some() {
                        let _ = self.swarm.behaviour_mut().kad.bootstrap();
                    }
                }
            }
        }
        debug!("p2p node task stopping");
    }

    fn now_ms(&self) -> Millis {
        self.clock.now_ms()
    }

    fn emit(&self, ev: NodeEvent) {
        let _ = self.events.send(ev);
    }

    fn touch(&mut self, peer: PeerId) -> &mut PeerState {
        let now = self.now_ms();
        let st = self.peers.entry(peer).or_default();
        st.last_seen_ms = now;
        st
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::ListenAddrs(tx) => {
                let me = *self.swarm.local_peer_id();
                let addrs = self
                    .swarm
                    .listeners()
                    .map(|a| a.clone().with(Protocol::P2p(me)))
                    .collect();
                let _ = tx.send(addrs);
            }
            Command::Peers(tx) => {
                let gs = &self.swarm.behaviour().gossipsub;
                let mut out: Vec<PeerInfo> = self
                    .peers
                    .iter()
                    .map(|(id, st)| PeerInfo {
                        peer_id: *id,
                        addrs: st.addrs.clone(),
                        agent: st.agent.clone(),
                        protocol_version: st.protocol_version.clone(),
                        protocols: st.protocols.clone(),
                        rtt_ms: st.rtt_ms,
                        connected: st.connected,
                        last_seen_ms: st.last_seen_ms,
                        score: gs.peer_score(id),
                        rejects: self.rejects.get(id).copied().unwrap_or(0),
                        banned: self.banned.contains(id),
                    })
                    .collect();
                out.sort_by_key(|p| p.peer_id.to_bytes());
                let _ = tx.send(out);
            }
            Command::Subscribe(topic, tx) => {
                let _ = tx.send(self.subscribe(&topic));
            }
            Command::Unsubscribe(topic, tx) => {
                let t = IdentTopic::new(topic);
                let _ = tx.send(self.swarm.behaviour_mut().gossipsub.unsubscribe(&t));
            }
            Command::Publish(topic, data, tx) => {
                let _ = tx.send(self.publish(topic, data));
            }
            Command::Request(peer, data, tx) => {
                if data.len() > self.max_request {
                    let _ = tx.send(Err(NodeError::TooLarge {
                        what: "request",
                        len: data.len(),
                        max: self.max_request,
                    }));
                    return;
                }
                let id = self
                    .swarm
                    .behaviour_mut()
                    .rr
                    .send_request(&peer, Frame(data));
                self.pending_out.insert(id, (peer, tx));
            }
            Command::Dial(addr, tx) => {
                let r = self.swarm.dial(addr.clone()).map_err(|e| NodeError::Dial {
                    addr,
                    reason: dial_error_text(&e),
                });
                let _ = tx.send(r);
            }
            Command::Disconnect(peer, tx) => {
                let _ = tx.send(self.swarm.disconnect_peer_id(peer).is_ok());
            }
            Command::Ban(peer, tx) => {
                self.ban(peer, "banned by the operator".into());
                let _ = tx.send(());
            }
            Command::Unban(peer, tx) => {
                let b = self.swarm.behaviour_mut();
                b.blocked.unblock_peer(peer);
                b.gossipsub.remove_blacklisted_peer(&peer);
                b.gossipsub.set_application_score(&peer, 0.0);
                self.rejects.remove(&peer);
                self.banned.remove(&peer);
                let now = Instant::now();
                for bs in self.bootstrap.iter_mut().filter(|b| b.peer == Some(peer)) {
                    bs.backoff = self.backoff_initial;
                    bs.next_dial = Some(now);
                }
                let _ = tx.send(());
            }
            Command::Report(peer, reason, tx) => {
                if !self.banned.contains(&peer) {
                    warn!(%peer, %reason, "peer reported for an invalid answer");
                    self.penalise(peer);
                }
                let _ = tx.send(());
            }
            Command::Subscribers(topic, tx) => {
                let hash = TopicHash::from_raw(topic);
                let gs = &self.swarm.behaviour().gossipsub;
                let mut out: Vec<PeerId> = gs
                    .all_peers()
                    .filter(|(_, topics)| topics.contains(&&hash))
                    .map(|(p, _)| *p)
                    .collect();
                out.sort_by_key(|p| p.to_bytes());
                let _ = tx.send(out);
            }
            Command::Shutdown => self.stop = true,
        }
    }

    fn subscribe(&mut self, topic: &str) -> Result<bool, NodeError> {
        if topic.trim().is_empty() {
            return Err(NodeError::BadTopic(topic.into()));
        }
        let t = IdentTopic::new(topic);
        let gs = &mut self.swarm.behaviour_mut().gossipsub;
        gs.set_topic_params(t.clone(), topic_score_params())
            .map_err(|e| NodeError::Subscribe {
                topic: topic.into(),
                reason: e.to_string(),
            })?;
        gs.subscribe(&t).map_err(|e| NodeError::Subscribe {
            topic: topic.into(),
            reason: e.to_string(),
        })
    }

    fn publish(&mut self, topic: String, data: Vec<u8>) -> Result<String, NodeError> {
        if topic.trim().is_empty() {
            return Err(NodeError::BadTopic(topic));
        }
        if data.len() > self.max_message {
            return Err(NodeError::TooLarge {
                what: "message",
                len: data.len(),
                max: self.max_message,
            });
        }
        let len = data.len();
        let hash = TopicHash::from_raw(topic.clone());
        let gs = &mut self.swarm.behaviour_mut().gossipsub;
        if !gs.all_peers().any(|(_, topics)| topics.contains(&&hash)) {
            return Err(NodeError::NoSubscribers { topic });
        }
        match gs.publish(hash, data) {
            Ok(id) => Ok(id.to_string()),
            Err(PublishError::NoPeersSubscribedToTopic) => Err(NodeError::NoSubscribers { topic }),
            Err(PublishError::MessageTooLarge) => Err(NodeError::TooLarge {
                what: "message",
                len,
                max: self.max_message,
            }),
            Err(e) => Err(NodeError::Publish {
                topic,
                reason: e.to_string(),
            }),
        }
    }

    fn ban(&mut self, peer: PeerId, reason: String) {
        if !self.banned.insert(peer) {
            return;
        }
        warn!(%peer, %reason, "banning p2p peer");
        let b = self.swarm.behaviour_mut();
        b.blocked.block_peer(peer);
        b.gossipsub.blacklist_peer(&peer);
        b.kad.remove_peer(&peer);
        for bs in self.bootstrap.iter_mut().filter(|b| b.peer == Some(peer)) {
            bs.next_dial = None;
        }
        self.emit(NodeEvent::PeerBanned {
            peer_id: peer,
            reason,
        });
    }

    /// A peer we rejected messages from whose score has fallen below the graylist threshold
    /// (e.g. rejects plus GRAFT-during-backoff penalties) is ignored by gossipsub, so it may
    /// never reach `max_rejects`: ban it now.
    fn ban_graylisted_offenders(&mut self) {
        let gs = &self.swarm.behaviour().gossipsub;
        let offenders: Vec<(PeerId, u32, f64)> = self
            .rejects
            .iter()
            .filter(|(p, _)| !self.banned.contains(p))
            .filter_map(|(p, n)| {
                gs.peer_score(p)
                    .filter(|s| *s < GRAYLIST_THRESHOLD)
                    .map(|s| (*p, *n, s))
            })
            .collect();
        for (peer, n, score) in offenders {
            self.ban(
                peer,
                format!("{n} rejected messages and score {score:.0} below the graylist threshold"),
            );
        }
    }

    fn penalise(&mut self, peer: PeerId) {
        let n = {
            let n = self.rejects.entry(peer).or_default();
            *n += 1;
            *n
        };
        let gs = &mut self.swarm.behaviour_mut().gossipsub;
        gs.set_application_score(&peer, APP_PENALTY_PER_REJECT * f64::from(n));
        let score = gs.peer_score(&peer);
        info!(%peer, rejects = n, ?score, "penalised p2p peer for an invalid message");
        self.emit(NodeEvent::PeerPenalised {
            peer_id: peer,
            rejects: n,
            score,
        });
        if n >= self.max_rejects {
            self.ban(peer, format!("{n} rejected messages"));
        }
    }

    fn on_response_ready(
        &mut self,
        channel: ResponseChannel<Frame>,
        peer: PeerId,
        resp: Option<Vec<u8>>,
    ) {
        match resp {
            Some(bytes) if bytes.len() > self.max_response => {
                warn!(%peer, len = bytes.len(), max = self.max_response, "response too large; dropped");
            }
            Some(bytes) => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .rr
                    .send_response(channel, Frame(bytes));
            }
            None => debug!(%peer, "inbound request dropped by the app"),
        }
    }

    fn dial_due_bootstraps(&mut self) {
        let now = Instant::now();
        for i in 0..self.bootstrap.len() {
            let b = &mut self.bootstrap[i];
            if b.next_dial.is_none_or(|t| t > now) {
                continue;
            }
            b.next_dial = None;
            if b.connected || b.dialing.is_some() {
                continue;
            }
            if let Some(p) = b.peer
                && self.swarm.is_connected(&p)
            {
                b.connected = true;
                continue;
            }
            let opts = match b.peer {
                Some(p) => DialOpts::peer_id(p)
                    .addresses(vec![b.addr.clone()])
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build(),
                None => DialOpts::unknown_peer_id().address(b.addr.clone()).build(),
            };
            let cid = opts.connection_id();
            match self.swarm.dial(opts) {
                Ok(()) => self.bootstrap[i].dialing = Some(cid),
                Err(DialError::DialPeerConditionFalse(_)) => {
                    // Already connected or dialing: check again later.
                    self.bootstrap[i].next_dial = Some(now + self.backoff_initial);
                }
                Err(e) => self.bootstrap_failed(i, dial_error_text(&e)),
            }
        }
    }

    fn bootstrap_failed(&mut self, i: usize, error: String) {
        let b = &mut self.bootstrap[i];
        b.dialing = None;
        let retry_in = b.backoff;
        b.backoff = (b.backoff * 2).min(self.backoff_max);
        let banned = b.peer.is_some_and(|p| self.banned.contains(&p));
        b.next_dial = (!banned).then(|| Instant::now() + retry_in);
        let addr = b.addr.clone();
        debug!(%addr, %error, ?retry_in, "bootstrap dial failed");
        self.emit(NodeEvent::BootstrapFailed {
            addr,
            error,
            retry_in,
        });
    }

    fn on_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                info!(%address, "p2p listening");
                if self.pending_listeners.remove(&listener_id).is_some()
                    && self.pending_listeners.is_empty()
                    && let Some(r) = self.ready.take()
                {
                    let _ = r.send(Ok(()));
                }
            }
            SwarmEvent::ListenerError { listener_id, error } => {
                self.listener_failed(listener_id, error.to_string());
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                let why = match reason {
                    Ok(()) => "closed".to_string(),
                    Err(e) => e.to_string(),
                };
                self.listener_failed(listener_id, why);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                let addr = endpoint.get_remote_address().clone();
                let st = self.touch(peer_id);
                st.connected = true;
                st.add_addr(addr.clone());
                let mut is_bootstrap = false;
                for b in self.bootstrap.iter_mut() {
                    if b.dialing == Some(connection_id) || b.peer == Some(peer_id) {
                        if b.dialing == Some(connection_id) {
                            b.backoff = self.backoff_initial;
                            b.dialing = None;
                        }
                        b.peer = Some(peer_id);
                        b.connected = true;
                        b.next_dial = None;
                        is_bootstrap = true;
                    }
                }
                if endpoint.is_dialer() {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer_id, addr.clone());
                }
                if is_bootstrap {
                    let _ = self.swarm.behaviour_mut().kad.bootstrap();
                }
                if num_established.get() == 1 {
                    debug!(%peer_id, %addr, "p2p peer connected");
                    self.emit(NodeEvent::PeerConnected { peer_id, addr });
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                cause,
                ..
            } => {
                self.touch(peer_id).connected = false;
                let now = Instant::now();
                let banned = self.banned.contains(&peer_id);
                for b in self
                    .bootstrap
                    .iter_mut()
                    .filter(|b| b.peer == Some(peer_id))
                {
                    b.connected = false;
                    if !banned && b.dialing.is_none() {
                        b.next_dial = Some(now + b.backoff);
                    }
                }
                debug!(%peer_id, ?cause, "p2p peer disconnected");
                self.emit(NodeEvent::PeerDisconnected { peer_id });
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                if let Some(i) = self
                    .bootstrap
                    .iter()
                    .position(|b| b.dialing == Some(connection_id))
                {
                    self.bootstrap_failed(i, dial_error_text(&error));
                } else {
                    debug!(?peer_id, error = %dial_error_text(&error), "p2p dial failed");
                }
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                debug!(%send_back_addr, %error, "p2p inbound connection failed");
            }
            SwarmEvent::Behaviour(ev) => self.on_behaviour_event(ev),
            _ => {}
        }
    }

    fn listener_failed(&mut self, listener_id: ListenerId, why: String) {
        if let Some(addr) = self.pending_listeners.remove(&listener_id) {
            if let Some(r) = self.ready.take() {
                let _ = r.send(Err(NodeError::Listen { addr, reason: why }));
                self.stop = true;
            }
        } else {
            warn!(reason = %why, "p2p listener closed");
        }
    }

    fn on_behaviour_event(&mut self, ev: BehaviourEvent) {
        match ev {
            BehaviourEvent::Gossipsub(ev) => self.on_gossip(ev),
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                let kad_ok = info.protocols.contains(&KAD_PROTOCOL);
                let st = self.touch(peer_id);
                st.agent = Some(info.agent_version);
                st.protocol_version = Some(info.protocol_version);
                st.protocols = info.protocols.iter().map(|p| p.to_string()).collect();
                for a in &info.listen_addrs {
                    st.add_addr(a.clone());
                }
                if kad_ok {
                    for a in info.listen_addrs {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, a);
                    }
                }
            }
            BehaviourEvent::Identify(_) => {}
            BehaviourEvent::Ping(ping::Event { peer, result, .. }) => match result {
                Ok(rtt) => {
                    self.touch(peer).rtt_ms = Some(rtt.as_secs_f64() * 1000.0);
                }
                Err(e) => debug!(%peer, error = %e, "ping failed"),
            },
            BehaviourEvent::Kad(ev) => {
                if let kad::Event::RoutingUpdated { peer, .. } = ev {
                    debug!(%peer, "kademlia routing table updated");
                }
            }
            BehaviourEvent::Rr(ev) => self.on_rr(ev),
            BehaviourEvent::Mdns(mdns::Event::Discovered(list)) => {
                for (peer, addr) in list {
                    if self.banned.contains(&peer) || self.swarm.is_connected(&peer) {
                        continue;
                    }
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer, addr.clone());
                    let opts = DialOpts::peer_id(peer)
                        .addresses(vec![addr])
                        .condition(PeerCondition::DisconnectedAndNotDialing)
                        .build();
                    let _ = self.swarm.dial(opts);
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Expired(_)) => {}
            BehaviourEvent::Blocked(never) => match never {},
        }
    }

    fn on_gossip(&mut self, ev: gossipsub::Event) {
        match ev {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                let topic = message.topic.as_str().to_string();
                let gm = GossipMessage {
                    topic: &topic,
                    from: message.source,
                    via: propagation_source,
                    data: &message.data,
                };
                let verdict = std::panic::catch_unwind(AssertUnwindSafe(|| (self.validator)(&gm)))
                    .unwrap_or_else(|_| {
                        warn!(%topic, "gossip validator panicked; ignoring the message");
                        Validation::Ignore
                    });
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(
                        &message_id,
                        &propagation_source,
                        verdict.into(),
                    );
                match verdict {
                    Validation::Accept => {
                        self.touch(propagation_source);
                        self.emit(NodeEvent::Message {
                            topic,
                            from: message.source.unwrap_or(propagation_source),
                            bytes: message.data,
                            id: message_id.to_string(),
                        });
                    }
                    Validation::Reject => self.penalise(propagation_source),
                    Validation::Ignore => {}
                }
            }
            gossipsub::Event::Subscribed { peer_id, topic, .. } => {
                debug!(%peer_id, %topic, "peer subscribed");
                self.emit(NodeEvent::PeerSubscribed {
                    peer_id,
                    topic: topic.into_string(),
                });
            }
            gossipsub::Event::GossipsubNotSupported { peer_id } => {
                debug!(%peer_id, "peer does not speak gossipsub");
            }
            _ => {}
        }
    }

    fn on_rr(&mut self, ev: request_response::Event<Frame, Frame>) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let Some(inbound) = &self.inbound else {
                        debug!(%peer, "no inbound request handler; refusing");
                        return;
                    };
                    if request.0.len() > self.max_request {
                        return;
                    }
                    let (tx, rx) = oneshot::channel();
                    let req = InboundRequest {
                        peer,
                        bytes: request.0,
                        respond: tx,
                    };
                    if inbound.try_send(req).is_err() {
                        warn!(%peer, "inbound request queue full or closed; refusing");
                        return;
                    }
                    self.pending_in
                        .push(async move { (channel, peer, rx.await.ok()) }.boxed());
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some((_, tx)) = self.pending_out.remove(&request_id) {
                        let _ = tx.send(Ok(response.0));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some((_, tx)) = self.pending_out.remove(&request_id) {
                    let _ = tx.send(Err(NodeError::Request {
                        peer,
                        reason: error.to_string(),
                    }));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "inbound request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}

/// A dial error as one line, including the transport errors behind it.
fn dial_error_text(e: &DialError) -> String {
    match e {
        DialError::Transport(errs) => errs
            .iter()
            .map(|(addr, err)| {
                let mut parts: Vec<String> = Vec::new();
                let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
                while let Some(e) = cur {
                    let t = e
                        .to_string()
                        .replace("Multiple dial errors occurred:", "")
                        .replace("\n - ", " ")
                        .replace('\n', " ");
                    let t = t.trim_matches(|c: char| c == ':' || c.is_whitespace());
                    if !t.is_empty() && !parts.iter().any(|p| p.contains(t)) {
                        parts.push(t.to_string());
                    }
                    cur = e.source();
                }
                format!("{addr}: {}", parts.join(": "))
            })
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}
