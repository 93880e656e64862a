//! The engine's P2P node: identity from the data dir, the private-network key from the mesh
//! secret, the libp2p node ([`crate::p2p`]) on its own task, and a watcher that turns node
//! events into the peer list the Peers pane and `get_p2p_network_status` show.
//!
//! The node starts off the engine's start path (binding and identity take time); until it is
//! up the mesh reports `starting`. A node that cannot start (port in use, unreadable identity)
//! leaves the mesh off with the reason, and everything else runs.
//!
//! Inbound requests go through one [`Router`] (kinds registered by the services that answer
//! peers). With a mesh secret, GitHub cache sharing ([`CacheShare`]) starts with the node and
//! is attached to the GitHub client once that is up (the engine does it, whichever comes
//! first); without a secret the mesh is open and nothing is shared.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;

use zeroize::Zeroizing;

use crate::clock::{Millis, SharedClock};
use crate::config::P2pConfig;
use crate::p2p::cache_share::{self, CacheShare, ShareConfig};
use crate::p2p::router::{Router, RouterConfig};
use crate::p2p::{
    Node, NodeConfig, NodeEvent, NodeHandle, envelope_validator, identity, parse_multiaddr, psk,
};

/// A peer as faces show it.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PeerRow {
    /// Peer ID.
    pub peer_id: String,
    /// Known addresses (multiaddrs).
    pub addrs: Vec<String>,
    /// Identify agent, e.g. `flotilla/0.1.0 (build-01)`.
    pub agent: Option<String>,
    /// Last ping round trip, ms.
    pub rtt_ms: Option<f64>,
    /// Connected now.
    pub connected: bool,
    /// Last seen, unix ms.
    pub last_seen_ms: Millis,
    /// Gossipsub score.
    pub score: Option<f64>,
    /// Banned by this node.
    pub banned: bool,
    /// What its scheduler heartbeats say (absent until the first one arrives).
    pub sched: Option<PeerSched>,
}

/// A peer's scheduler state, from its heartbeats.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PeerSched {
    /// Node name.
    pub name: String,
    /// Capability labels.
    pub capabilities: Vec<String>,
    /// Tasks running there.
    pub running: u32,
    /// Its `max_concurrent_tasks`.
    pub max: u32,
    /// Tasks queued there.
    pub queued: u32,
    /// Last heartbeat, unix ms (this node's clock).
    pub last_heartbeat_ms: Millis,
    /// Mesh tasks it holds (leases), as this node knows them.
    pub owned: usize,
}

/// What the node looks like now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeshView {
    /// This node's peer ID.
    pub peer_id: String,
    /// Full listen multiaddrs, ending in `/p2p/<peer id>`.
    pub listen_addrs: Vec<String>,
    /// Peers seen.
    pub peers: Vec<PeerRow>,
    /// Private network (pnet) on.
    pub private: bool,
}

/// The running node.
#[derive(Debug, Clone)]
pub struct MeshService {
    /// Handle to the node task.
    pub handle: NodeHandle,
    /// Private network on.
    pub private: bool,
    /// Routes inbound requests by kind.
    pub router: Router,
    /// GitHub cache sharing (with a mesh secret only).
    pub cache_share: Option<CacheShare>,
}

/// Read the mesh secret: `p2p.secret`, else the file `p2p.secret_file` (trimmed).
fn secret(cfg: &P2pConfig) -> Result<Option<Zeroizing<Vec<u8>>>, String> {
    if let Some(s) = &cfg.secret {
        return Ok(Some(Zeroizing::new(s.expose().as_bytes().to_vec())));
    }
    match &cfg.secret_file {
        None => Ok(None),
        Some(p) => {
            let t = std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read the mesh secret file {}: {e}", p.display()))?;
            let t = Zeroizing::new(t);
            Ok(Some(Zeroizing::new(t.trim().as_bytes().to_vec())))
        }
    }
}

/// Start the node. `Err` carries why the mesh is off.
pub async fn start(
    cfg: &P2pConfig,
    data_dir: &Path,
    node_name: &str,
    clock: SharedClock,
) -> Result<MeshService, String> {
    if !cfg.enabled {
        return Err("off (--no-p2p or p2p.enabled = false)".into());
    }
    let keypair = identity::load_or_create(data_dir).map_err(|e| e.to_string())?;
    let secret = secret(cfg)?;
    let psk = match &secret {
        Some(s) => Some(psk::derive_psk(s).map_err(|e| e.to_string())?),
        None => None,
    };
    let mut nc = NodeConfig::new(keypair);
    nc.listen = vec![parse_multiaddr(&cfg.listen).map_err(|e| e.to_string())?];
    nc.bootstrap = cfg
        .bootstrap
        .iter()
        .map(|b| parse_multiaddr(b).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    nc.psk = psk;
    nc.mdns = cfg.mdns;
    nc.discovery_interval = cfg.peer_discovery_interval;
    nc.agent_suffix = Some(node_name.to_string());
    nc.clock = clock.clone();
    nc.validator =
        super::meshsched::gossip_validator(cache_share::gossip_validator(envelope_validator()));
    let (router, inbound) = Router::start(RouterConfig::default(), clock.clone());
    nc.inbound_requests = Some(inbound);
    match &psk {
        Some(k) => tracing::info!(psk = %psk::fingerprint(k), "P2P mesh is private (pnet)"),
        None => tracing::warn!(
            "P2P mesh is OPEN: any peer that reaches {} can join. Set FLOTILLA_P2P_SECRET \
             (or --p2p-secret-file) on every node for a private mesh",
            cfg.listen
        ),
    }
    let (handle, _join) = Node::spawn(nc).await.map_err(|e| e.to_string())?;
    tracing::info!(peer_id = %handle.peer_id(), "P2P node listening");
    let cache_share = match &secret {
        Some(s) => {
            match CacheShare::start(handle.clone(), &router, s, clock, ShareConfig::default()).await
            {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!("GitHub cache sharing not started: {e}");
                    None
                }
            }
        }
        None => {
            tracing::info!(
                "GitHub cache sharing is off: it needs a mesh secret (FLOTILLA_P2P_SECRET)"
            );
            None
        }
    };
    Ok(MeshService {
        handle,
        private: psk.is_some(),
        router,
        cache_share,
    })
}

impl MeshService {
    /// The current view (peers, addresses).
    pub async fn view(&self) -> Option<MeshView> {
        let me = self.handle.peer_id().to_string();
        let listen = self.handle.listen_addrs().await.ok()?;
        let peers = self.handle.peers().await.ok()?;
        Some(MeshView {
            listen_addrs: listen
                .iter()
                .map(|a| {
                    let s = a.to_string();
                    if s.contains("/p2p/") {
                        s
                    } else {
                        format!("{s}/p2p/{me}")
                    }
                })
                .collect(),
            peer_id: me,
            peers: peers
                .into_iter()
                .map(|p| PeerRow {
                    peer_id: p.peer_id.to_string(),
                    addrs: p.addrs.iter().map(|a| a.to_string()).collect(),
                    agent: p.agent,
                    rtt_ms: p.rtt_ms,
                    connected: p.connected,
                    last_seen_ms: p.last_seen_ms,
                    score: p.score,
                    banned: p.banned,
                    sched: None,
                })
                .collect(),
            private: self.private,
        })
    }

    /// Watch node events: log them, and send a fresh view on each change and every 5 s
    /// (ping RTTs move).
    pub async fn watch(self, out: mpsc::Sender<MeshView>) {
        let mut events = self.handle.events();
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        let mut last: Option<MeshView> = None;
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Ok(NodeEvent::PeerConnected { peer_id, addr }) => {
                        tracing::info!(peer = %peer_id, %addr, "peer connected");
                    }
                    Ok(NodeEvent::PeerDisconnected { peer_id }) => {
                        tracing::info!(peer = %peer_id, "peer disconnected");
                    }
                    Ok(NodeEvent::BootstrapFailed { addr, error, retry_in }) => {
                        tracing::warn!(%addr, "bootstrap peer unreachable ({error}); retrying in {retry_in:?}");
                    }
                    Ok(NodeEvent::PeerPenalised { peer_id, rejects, score }) => {
                        tracing::warn!(peer = %peer_id, rejects, ?score, "peer sent a rejected message");
                    }
                    Ok(NodeEvent::PeerBanned { peer_id, reason }) => {
                        tracing::warn!(peer = %peer_id, "peer banned: {reason}");
                    }
                    Ok(NodeEvent::Message { .. } | NodeEvent::PeerSubscribed { .. }) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => break,
                },
                _ = tick.tick() => {}
            }
            match self.view().await {
                Some(v) if last.as_ref() == Some(&v) => {}
                Some(v) => {
                    last = Some(v.clone());
                    if out.send(v).await.is_err() {
                        break;
                    }
                }
                None => break,
            }
        }
    }
}
