//! In-process mesh tests for `flotilla::p2p`: every node listens on `/ip4/127.0.0.1/tcp/0`
//! with mDNS off; the misbehaving peer is a bare libp2p gossipsub swarm.

use std::future::Future;
use std::time::{Duration, Instant};

use flotilla::p2p::identity;
use flotilla::p2p::node::{InboundRequest, Node, NodeConfig, NodeError, NodeEvent, NodeHandle};
use flotilla::p2p::protocol::Envelope;
use flotilla::p2p::psk::derive_psk;
use flotilla::p2p::{PeerInfo, parse_multiaddr};
use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, gossipsub, noise, tcp, yamux};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

const TOPIC: &str = "flotilla/test";

fn config() -> NodeConfig {
    let mut c = NodeConfig::new(Keypair::generate_ed25519());
    c.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    c.mdns = false;
    c.heartbeat = Duration::from_millis(200);
    c.ping_interval = Duration::from_secs(1);
    c.request_timeout = Duration::from_secs(5);
    c.bootstrap_backoff_initial = Duration::from_millis(100);
    c.bootstrap_backoff_max = Duration::from_secs(2);
    c
}

async fn spawn(c: NodeConfig) -> (NodeHandle, JoinHandle<()>) {
    Node::spawn(c).await.expect("node starts")
}

async fn addr(h: &NodeHandle) -> Multiaddr {
    let a = h.listen_addrs().await.unwrap();
    assert_eq!(a.len(), 1, "{a:?}");
    a[0].clone()
}

/// Poll `f` every 50 ms until it returns `Some`, or panic after `secs` naming `what`.
async fn wait_for<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Next event matching `pred` within `secs`.
async fn next_event<T>(
    rx: &mut broadcast::Receiver<NodeEvent>,
    secs: u64,
    what: &str,
    mut pred: impl FnMut(&NodeEvent) -> Option<T>,
) -> T {
    let fut = async {
        loop {
            match rx.recv().await {
                Ok(ev) => {
                    if let Some(v) = pred(&ev) {
                        return v;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("event channel: {e}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

async fn peer(h: &NodeHandle, p: PeerId) -> Option<PeerInfo> {
    h.peers()
        .await
        .unwrap()
        .into_iter()
        .find(|i| i.peer_id == p)
}

async fn connected(h: &NodeHandle, p: PeerId) -> bool {
    peer(h, p).await.is_some_and(|i| i.connected)
}

fn envelope(kind: &str, n: u64) -> Vec<u8> {
    Envelope::new(kind, 1_763_900_000_000, &serde_json::json!({ "n": n }))
        .unwrap()
        .encode()
        .unwrap()
}

/// Publish until gossipsub has a subscriber (retrying `NoSubscribers`).
async fn publish_when_ready(h: &NodeHandle, bytes: Vec<u8>) -> String {
    wait_for(10, "a subscriber to publish to", || {
        let b = bytes.clone();
        async move {
            match h.publish(TOPIC, b).await {
                Ok(id) => Some(id),
                Err(NodeError::NoSubscribers { .. }) => None,
                Err(e) => panic!("publish: {e}"),
            }
        }
    })
    .await
}

#[tokio::test]
async fn two_nodes_connect_via_bootstrap_and_ping() {
    let (a, _ja) = spawn(config()).await;
    let a_addr = addr(&a).await;
    assert!(a_addr.to_string().starts_with("/ip4/127.0.0.1/tcp/"));
    assert!(!a_addr.to_string().contains("/tcp/0/"), "{a_addr}");
    assert!(
        a_addr
            .to_string()
            .ends_with(&format!("/p2p/{}", a.peer_id()))
    );

    let mut cb = config();
    cb.bootstrap = vec![a_addr];
    cb.agent_suffix = Some("node-b".into());
    let (b, _jb) = spawn(cb).await;

    let info = wait_for(10, "rtt and identify info for A on B", || async {
        peer(&b, a.peer_id())
            .await
            .filter(|i| i.connected && i.rtt_ms.is_some() && i.agent.is_some())
    })
    .await;
    assert!(info.rtt_ms.unwrap() >= 0.0);
    assert!(info.agent.as_deref().unwrap().starts_with("flotilla/"));
    assert_eq!(info.protocol_version.as_deref(), Some("/flotilla/1.0.0"));
    for p in [
        "/flotilla/req/1.0.0",
        "/flotilla/kad/1.0.0",
        "/ipfs/ping/1.0.0",
        "/meshsub/1.1.0",
    ] {
        assert!(
            info.protocols.iter().any(|x| x == p),
            "{p} in {:?}",
            info.protocols
        );
    }
    assert!(info.last_seen_ms > 0);

    let back = wait_for(10, "identify info for B on A", || async {
        peer(&a, b.peer_id())
            .await
            .filter(|i| i.connected && i.agent.is_some())
    })
    .await;
    assert!(
        back.agent.as_deref().unwrap().ends_with("(node-b)"),
        "{:?}",
        back.agent
    );

    // disconnect works and is reported.
    let mut ev = a.events();
    assert!(a.disconnect(b.peer_id()).await.unwrap());
    let bp = b.peer_id();
    next_event(&mut ev, 5, "PeerDisconnected", |e| {
        matches!(e, NodeEvent::PeerDisconnected { peer_id } if *peer_id == bp).then_some(())
    })
    .await;
    // B re-dials its bootstrap peer.
    wait_for(10, "B to reconnect to its bootstrap peer", || async {
        connected(&b, a.peer_id()).await.then_some(())
    })
    .await;
}

#[tokio::test]
async fn gossip_between_three_nodes() {
    let (a, _ja) = spawn(config()).await;
    let a_addr = addr(&a).await;
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let mut c = config();
        c.bootstrap = vec![a_addr.clone()];
        nodes.push(spawn(c).await);
    }
    let (b, c) = (&nodes[0].0, &nodes[1].0);
    for n in [&a, b, c] {
        assert!(n.subscribe(TOPIC).await.unwrap());
    }
    assert!(
        !a.subscribe(TOPIC).await.unwrap(),
        "second subscribe is a no-op"
    );
    let mut ev_a = a.events();
    let mut ev_c = c.events();

    // B's message reaches A directly and C through A (A validates, then forwards).
    let payload = envelope("heartbeat", 1);
    let bp = b.peer_id();
    let c_got = async {
        // Republish until C has it: the A–C mesh forms on A's heartbeat.
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut n = 0;
        loop {
            n += 1;
            publish_when_ready(b, envelope("heartbeat", n)).await;
            let r = tokio::time::timeout(Duration::from_millis(500), async {
                loop {
                    if let Ok(NodeEvent::Message {
                        from, topic, bytes, ..
                    }) = ev_c.recv().await
                    {
                        return (from, topic, bytes);
                    }
                }
            })
            .await;
            if let Ok(v) = r {
                return v;
            }
            assert!(Instant::now() < deadline, "C never received B's message");
        }
    }
    .await;
    assert_eq!(c_got.0, bp);
    assert_eq!(c_got.1, TOPIC);
    Envelope::decode(&c_got.2).unwrap();

    let (from, bytes) = next_event(&mut ev_a, 5, "message on A", |e| match e {
        NodeEvent::Message {
            from, bytes, id, ..
        } => {
            assert!(!id.is_empty());
            Some((*from, bytes.clone()))
        }
        _ => None,
    })
    .await;
    assert_eq!(from, bp);
    assert_eq!(Envelope::decode(&bytes).unwrap().kind, "heartbeat");

    // And the other way: C publishes, B receives.
    let mut ev_b = b.events();
    let cp = c.peer_id();
    publish_when_ready(c, payload).await;
    let from = next_event(&mut ev_b, 10, "C's message on B", |e| match e {
        NodeEvent::Message { from, .. } => Some(*from),
        _ => None,
    })
    .await;
    assert_eq!(from, cp);
}

/// A bare gossipsub swarm: no identify, no scoring, no validation; publishes whatever.
fn raw_swarm() -> libp2p::Swarm<gossipsub::Behaviour> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|key| {
            gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gossipsub::Config::default(),
            )
            .unwrap()
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
        .build()
}

#[tokio::test]
async fn garbage_is_rejected_and_the_sender_penalised_then_banned() {
    let (a, _ja) = spawn(config()).await;
    let a_addr = addr(&a).await;
    a.subscribe(TOPIC).await.unwrap();
    let mut cb = config();
    cb.bootstrap = vec![a_addr.clone()];
    let (b, _jb) = spawn(cb).await;
    b.subscribe(TOPIC).await.unwrap();
    let mut ev = a.events();

    let mut raw = raw_swarm();
    let raw_id = *raw.local_peer_id();
    let topic = gossipsub::IdentTopic::new(TOPIC);
    raw.behaviour_mut().subscribe(&topic).unwrap();
    raw.dial(a_addr.clone()).unwrap();
    let ap = a.peer_id();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let SwarmEvent::Behaviour(gossipsub::Event::Subscribed { peer_id, .. }) =
                raw.select_next_some().await
                && peer_id == ap
            {
                break;
            }
        }
    })
    .await
    .expect("A's subscription seen by the raw peer");

    for i in 0..3u8 {
        raw.behaviour_mut()
            .publish(topic.clone(), vec![0xff, 0x00, i, b'g', b'a', b'r', b'b'])
            .expect("raw publish");
    }
    // Drive the raw swarm until A closes the connection.
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } = raw.select_next_some().await
                && peer_id == ap
            {
                break;
            }
        }
    })
    .await
    .expect("A disconnects the misbehaving peer");

    let mut scores = Vec::new();
    let mut banned = false;
    while !banned {
        next_event(&mut ev, 5, "penalty events", |e| match e {
            NodeEvent::PeerPenalised {
                peer_id,
                rejects,
                score,
            } if *peer_id == raw_id => {
                scores.push((*rejects, score.expect("scoring is on")));
                Some(())
            }
            NodeEvent::PeerBanned { peer_id, reason } if *peer_id == raw_id => {
                assert!(reason.contains("rejected messages"), "{reason}");
                banned = true;
                Some(())
            }
            NodeEvent::Message { from, .. } if *from == raw_id => panic!("garbage delivered"),
            _ => None,
        })
        .await;
    }
    // Normally all three garbage messages are rejected ([1, 2, 3]); a peer graylisted
    // earlier (score below -80) is banned by the housekeeping check instead.
    let counts: Vec<u32> = scores.iter().map(|s| s.0).collect();
    assert!(
        counts.len() >= 2 && counts.iter().zip(1..).all(|(c, i)| *c == i),
        "{scores:?}"
    );
    assert!(scores[0].1 < 0.0, "{scores:?}");
    assert!(
        scores.windows(2).all(|w| w[1].1 < w[0].1),
        "score falls with each reject: {scores:?}"
    );

    let info = peer(&a, raw_id).await.unwrap();
    assert!(
        info.banned && info.rejects >= 2 && !info.connected,
        "{info:?}"
    );

    // Re-dialing is refused (the connection is denied right after the handshake).
    raw.dial(a_addr).unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match raw.select_next_some().await {
                SwarmEvent::OutgoingConnectionError { .. } => return true,
                SwarmEvent::ConnectionClosed {
                    num_established: 0, ..
                } => return true,
                SwarmEvent::Behaviour(gossipsub::Event::Subscribed { .. }) => return false,
                _ => {}
            }
        }
    })
    .await
    .expect("redial resolves");
    assert!(refused, "banned peer got a working connection");
    assert!(!connected(&a, raw_id).await);

    // A keeps working: an honest message from B still arrives.
    let bp = b.peer_id();
    publish_when_ready(&b, envelope("claim", 7)).await;
    let from = next_event(&mut ev, 10, "B's message on A", |e| match e {
        NodeEvent::Message { from, .. } => Some(*from),
        _ => None,
    })
    .await;
    assert_eq!(from, bp);
}

#[tokio::test]
async fn private_network_needs_the_same_secret() {
    let k1 = derive_psk(b"fleet secret one").unwrap();
    let k2 = derive_psk(b"fleet secret two").unwrap();
    let mut ca = config();
    ca.psk = Some(k1);
    let (a, _ja) = spawn(ca).await;
    let a_addr = addr(&a).await;

    // Different secret: no connection.
    let mut cx = config();
    cx.psk = Some(k2);
    cx.bootstrap = vec![a_addr.clone()];
    let (x, _jx) = spawn(cx).await;
    // Same secret: connects.
    let mut cy = config();
    cy.psk = Some(k1);
    cy.bootstrap = vec![a_addr.clone()];
    let (y, _jy) = spawn(cy).await;
    wait_for(10, "same-secret peer to connect", || async {
        connected(&y, a.peer_id()).await.then_some(())
    })
    .await;
    // Public node (no PSK) cannot connect either.
    let mut cz = config();
    cz.bootstrap = vec![a_addr.clone()];
    let (z, _jz) = spawn(cz).await;

    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!connected(&x, a.peer_id()).await);
    assert!(!connected(&z, a.peer_id()).await);
    assert!(!connected(&a, x.peer_id()).await);
    assert!(!connected(&a, z.peer_id()).await);
    assert!(connected(&a, y.peer_id()).await);

    // QUIC and pnet do not mix: a clear configuration error.
    let mut cq = config();
    cq.psk = Some(k1);
    cq.listen = vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()];
    let err = Node::spawn(cq).await.unwrap_err();
    assert!(matches!(err, NodeError::QuicWithPsk { .. }), "{err}");
    assert!(err.to_string().contains("/udp/0/quic-v1"), "{err}");
}

#[tokio::test]
async fn request_response_round_trip_and_size_limits() {
    let (tx, mut rx) = mpsc::channel::<InboundRequest>(8);
    let mut ca = config();
    ca.inbound_requests = Some(tx);
    ca.max_request_bytes = 1024;
    let (a, _ja) = spawn(ca).await;
    tokio::spawn(async move {
        while let Some(req) = rx.recv().await {
            let mut out = b"echo:".to_vec();
            out.extend(req.bytes.iter().rev());
            let _ = req.respond.send(out);
        }
    });
    let mut cb = config();
    cb.bootstrap = vec![addr(&a).await];
    cb.max_request_bytes = 64 * 1024;
    let (b, _jb) = spawn(cb).await;
    wait_for(10, "B connected to A", || async {
        connected(&b, a.peer_id()).await.then_some(())
    })
    .await;

    let resp = b.request(a.peer_id(), b"abc".to_vec()).await.unwrap();
    assert_eq!(resp, b"echo:cba");
    // A 1000-byte request fits A's 1 KiB limit.
    let resp = b.request(a.peer_id(), vec![7; 1000]).await.unwrap();
    assert_eq!(resp.len(), 1005);

    // Above B's own limit: refused locally.
    let err = b
        .request(a.peer_id(), vec![0; 64 * 1024 + 1])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            NodeError::TooLarge {
                what: "request",
                ..
            }
        ),
        "{err}"
    );
    // Within B's limit but above A's: A refuses it, B gets an error (not a hang).
    let t = Instant::now();
    let err = b.request(a.peer_id(), vec![0; 8 * 1024]).await.unwrap_err();
    assert!(matches!(err, NodeError::Request { .. }), "{err}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    // A node without a request handler refuses; the requester gets an error.
    let err = a.request(b.peer_id(), b"hi".to_vec()).await.unwrap_err();
    assert!(matches!(err, NodeError::Request { .. }), "{err}");

    // The connection survived all of that.
    assert_eq!(
        b.request(a.peer_id(), b"x".to_vec()).await.unwrap(),
        b"echo:x"
    );
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "flotilla-p2p-mesh-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test]
async fn identity_persists_across_restarts() {
    let dir = temp_dir("identity");
    let mut c = config();
    c.identity = identity::load_or_create(&dir).unwrap();
    let (n, j) = spawn(c).await;
    let first = n.peer_id();
    n.shutdown().await;
    j.await.unwrap();
    assert!(matches!(n.peers().await, Err(NodeError::Stopped)));

    let mut c = config();
    c.identity = identity::load_or_create(&dir).unwrap();
    let (n, _j) = spawn(c).await;
    assert_eq!(n.peer_id(), first);
    assert!(addr(&n).await.to_string().ends_with(&first.to_string()));

    // A corrupt key file is an error naming it, and is left in place.
    let bad = temp_dir("corrupt");
    let path = identity::identity_path(&bad);
    std::fs::write(&path, [1, 2, 3]).unwrap();
    let err = identity::load_or_create(&bad).unwrap_err();
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), [1, 2, 3]);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&bad);
}

#[tokio::test]
async fn unreachable_bootstrap_is_retried_with_growing_delays() {
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dead: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
    let mut c = config();
    c.bootstrap = vec![dead.clone()];
    c.bootstrap_backoff_initial = Duration::from_millis(100);
    c.bootstrap_backoff_max = Duration::from_millis(800);
    // Subscribe before the first attempt can fail: spawn returns after binding, and the
    // first dial of a refused port fails within milliseconds, so collect from the start.
    let (n, _j) = spawn(c).await;
    let mut ev = n.events();
    let mut delays = Vec::new();
    while delays.len() < 4 {
        let (a, e, d) = next_event(&mut ev, 10, "BootstrapFailed", |e| match e {
            NodeEvent::BootstrapFailed {
                addr,
                error,
                retry_in,
            } => Some((addr.clone(), error.clone(), *retry_in)),
            _ => None,
        })
        .await;
        assert_eq!(a, dead);
        assert!(e.contains(&dead.to_string()), "{e}");
        delays.push(d);
    }
    // The first failure may have happened before we subscribed: delays are consecutive
    // doublings from some point, capped at the max.
    for w in delays.windows(2) {
        assert!(
            w[1] == (w[0] * 2).min(Duration::from_millis(800)),
            "{delays:?}"
        );
    }
    assert!(delays.windows(2).any(|w| w[1] > w[0]), "{delays:?}");
    // The node is alive and serving.
    assert_eq!(n.listen_addrs().await.unwrap().len(), 1);
    assert!(n.peers().await.unwrap().iter().all(|p| !p.connected));
}

#[tokio::test]
async fn bad_multiaddr_error_names_it() {
    for text in [
        "/ip4/300.1.2.3/tcp/1",
        "not-a-multiaddr",
        "/ip4/1.2.3.4/tcp/x",
    ] {
        let err = parse_multiaddr(text).unwrap_err();
        assert!(
            matches!(err, NodeError::BadMultiaddr { .. }),
            "{text}: {err:?}"
        );
        assert!(err.to_string().contains(text), "{err}");
    }
    assert!(parse_multiaddr("").is_err());
    let ok = parse_multiaddr(" /ip4/10.0.0.5/tcp/9100 ").unwrap();
    assert_eq!(ok.to_string(), "/ip4/10.0.0.5/tcp/9100");
}

#[tokio::test]
async fn publish_without_subscribers_and_oversize() {
    let (n, _j) = spawn(config()).await;
    n.subscribe(TOPIC).await.unwrap();
    let err = n.publish(TOPIC, envelope("x", 1)).await.unwrap_err();
    assert!(
        matches!(&err, NodeError::NoSubscribers { topic } if topic == TOPIC),
        "{err}"
    );
    let err = n.publish(TOPIC, vec![0; 300 * 1024]).await.unwrap_err();
    assert!(matches!(err, NodeError::TooLarge { .. }), "{err}");
    assert!(matches!(n.subscribe("").await, Err(NodeError::BadTopic(_))));
    // Listening on an address in use names it.
    let taken = addr(&n).await;
    let mut c = config();
    let text = taken.to_string();
    let tcp_only: Multiaddr = text[..text.find("/p2p/").unwrap()].parse().unwrap();
    c.listen = vec![tcp_only.clone()];
    let err = Node::spawn(c).await.unwrap_err();
    assert!(matches!(err, NodeError::Listen { .. }), "{err}");
    assert!(err.to_string().contains(&tcp_only.to_string()), "{err}");
}

#[tokio::test]
async fn quic_is_available_without_a_psk() {
    let mut ca = config();
    ca.listen = vec![
        "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
        "/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap(),
    ];
    let (a, _ja) = spawn(ca).await;
    let addrs = a.listen_addrs().await.unwrap();
    let quic = addrs
        .iter()
        .find(|a| a.to_string().contains("/quic-v1/"))
        .unwrap_or_else(|| panic!("no QUIC listen address in {addrs:?}"))
        .clone();
    let mut cb = config();
    cb.bootstrap = vec![quic];
    let (b, _jb) = spawn(cb).await;
    let ap = a.peer_id();
    let info = wait_for(10, "QUIC connection", || async {
        peer(&b, ap).await.filter(|i| i.connected)
    })
    .await;
    assert!(
        info.addrs[0].to_string().contains("/quic-v1"),
        "{:?}",
        info.addrs
    );
}

#[tokio::test]
async fn subscriptions_are_visible_and_reports_penalise_then_ban() {
    let (a, _ja) = spawn(config()).await;
    let mut ev = a.events();
    let mut cb = config();
    cb.bootstrap = vec![addr(&a).await];
    let (b, _jb) = spawn(cb).await;
    let bp = b.peer_id();
    b.subscribe(TOPIC).await.unwrap();
    next_event(&mut ev, 10, "PeerSubscribed", |e| match e {
        NodeEvent::PeerSubscribed { peer_id, topic } if *peer_id == bp => Some(topic.clone()),
        _ => None,
    })
    .await;
    assert_eq!(a.subscribers(TOPIC).await.unwrap(), [bp]);
    assert!(a.subscribers("other").await.unwrap().is_empty());

    // A bad answer outside gossip counts like a rejected message: banned at max_rejects (3).
    for n in 1..=3u32 {
        a.report(bp, "forged cache entry").await.unwrap();
        let rejects = next_event(&mut ev, 5, "PeerPenalised", |e| match e {
            NodeEvent::PeerPenalised {
                peer_id, rejects, ..
            } if *peer_id == bp => Some(*rejects),
            _ => None,
        })
        .await;
        assert_eq!(rejects, n);
    }
    next_event(&mut ev, 5, "PeerBanned", |e| {
        matches!(e, NodeEvent::PeerBanned { peer_id, .. } if *peer_id == bp).then_some(())
    })
    .await;
    let info = peer(&a, bp).await.unwrap();
    assert!(info.banned);
    assert_eq!(info.rejects, 3);
    // Reports about a banned peer change nothing.
    a.report(bp, "again").await.unwrap();
    assert_eq!(peer(&a, bp).await.unwrap().rejects, 3);
}
