//! A standalone Flotilla p2p node for interop smoke tests (`tests/interop/run.sh`).
//!
//! Usage: `cargo run --example p2p_node -- [LISTEN_MULTIADDR] [TOPIC]`
//! (defaults `/ip4/127.0.0.1/tcp/0`, `flotilla/interop`). mDNS is off, no PSK (so QUIC is
//! available too), a fresh identity every run, the default envelope validator.
//!
//! Prints one line per fact on stdout, first `LISTEN <multiaddr with /p2p/ id>`, then
//! `CONNECTED <peer> <addr>`, `DISCONNECTED <peer>`, `MESSAGE <from> <topic> <len>`,
//! `PENALISED <peer> <rejects> <score>`, `BANNED <peer> <reason>`,
//! `BOOTSTRAP_FAILED <addr> <error>`, `SUBSCRIBED <peer> <topic>`. Runs until Ctrl-C or SIGTERM.

use std::time::Duration;

use flotilla::p2p::{Node, NodeConfig, NodeEvent, parse_multiaddr};
use libp2p::identity::Keypair;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "/ip4/127.0.0.1/tcp/0".into());
    let topic = args.next().unwrap_or_else(|| "flotilla/interop".into());

    let mut cfg = NodeConfig::new(Keypair::generate_ed25519());
    cfg.listen = vec![parse_multiaddr(&listen)?];
    cfg.mdns = false;
    cfg.agent_suffix = Some("interop".into());
    cfg.ping_interval = Duration::from_secs(2);
    cfg.heartbeat = Duration::from_millis(500);
    let (node, _task) = Node::spawn(cfg).await?;
    let mut events = node.events();
    node.subscribe(&topic).await?;
    for a in node.listen_addrs().await? {
        println!("LISTEN {a}");
    }

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(NodeEvent::PeerConnected { peer_id, addr }) => println!("CONNECTED {peer_id} {addr}"),
                Ok(NodeEvent::PeerDisconnected { peer_id }) => println!("DISCONNECTED {peer_id}"),
                Ok(NodeEvent::Message { topic, from, bytes, .. }) => {
                    println!("MESSAGE {from} {topic} {}", bytes.len())
                }
                Ok(NodeEvent::PeerPenalised { peer_id, rejects, score }) => {
                    println!("PENALISED {peer_id} {rejects} {}", score.unwrap_or(0.0))
                }
                Ok(NodeEvent::PeerBanned { peer_id, reason }) => println!("BANNED {peer_id} {reason}"),
                Ok(NodeEvent::BootstrapFailed { addr, error, .. }) => {
                    println!("BOOTSTRAP_FAILED {addr} {error}")
                }
                Ok(NodeEvent::PeerSubscribed { peer_id, topic }) => println!("SUBSCRIBED {peer_id} {topic}"),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => println!("LAGGED {n}"),
                Err(_) => break,
            },
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    node.shutdown().await;
    Ok(())
}
