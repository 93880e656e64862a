//! GitHub cache sharing across the mesh: in-process nodes on 127.0.0.1 (each a libp2p node, a
//! request router, a cache-sharing service and a GitHub client), one fake GitHub (wiremock
//! replaying a recorded response from `shared/fixtures/github`); and two `flotilla` processes
//! sharing through the engine.

mod common;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use flotilla::clock::Clock as _;
use flotilla::clock::SystemClock;
use flotilla::github::cache::GithubCache;
use flotilla::github::seal::{self, SealKey};
use flotilla::github::{ClientConfig, GithubClient, GithubToken, RunFilter};
use flotilla::p2p::cache_share::{
    self, ANNOUNCE_KIND, Announce, AnnouncedKey, CacheShare, ENTRY_KIND, EntryAnswer, KeyHash,
    ShareConfig, TOPIC,
};
use flotilla::p2p::envelope_validator;
use flotilla::p2p::node::{InboundRequest, Node, NodeConfig, NodeEvent, NodeHandle};
use flotilla::p2p::protocol::Envelope;
use flotilla::p2p::router::{Router, RouterConfig};
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "fake-mesh-test-token-0123456789";
const SECRET: &[u8] = b"mesh-secret-0123456789-SECRET";
const RUNS_PATH: &str = "/repos/PyGithub/PyGithub/actions/runs";
const RUNS_KEY: &str = "/repos/PyGithub/PyGithub/actions/runs?per_page=100";

fn recorded(name: &str) -> Value {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/github/pygithub_extracted"
    );
    serde_json::from_str(&std::fs::read_to_string(format!("{p}/{name}.json")).unwrap()).unwrap()
}

/// The recorded run list with its headers (ETag, X-RateLimit-*), minus those that no longer
/// hold for a re-serialized body.
fn runs_response() -> ResponseTemplate {
    let r = recorded("Repository.testGetWorkflowRuns.02");
    let mut t = ResponseTemplate::new(200).set_body_json(&r["body"]);
    for h in r["headers"].as_array().unwrap() {
        let (k, v) = (h[0].as_str().unwrap(), h[1].as_str().unwrap());
        let lk = k.to_ascii_lowercase();
        if [
            "content-encoding",
            "content-length",
            "transfer-encoding",
            "status",
            "connection",
            "link",
        ]
        .contains(&lk.as_str())
        {
            continue;
        }
        t = t.insert_header(k, v);
    }
    t
}

async fn github(expect: u64) -> MockServer {
    let gh = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(RUNS_PATH))
        .respond_with(runs_response())
        .expect(expect)
        .mount(&gh)
        .await;
    gh
}

fn node_config(bootstrap: &[Multiaddr]) -> NodeConfig {
    let mut c = NodeConfig::new(Keypair::generate_ed25519());
    c.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    c.bootstrap = bootstrap.to_vec();
    c.mdns = false;
    c.heartbeat = Duration::from_millis(200);
    c.request_timeout = Duration::from_secs(5);
    c.bootstrap_backoff_initial = Duration::from_millis(100);
    c.validator = cache_share::gossip_validator(envelope_validator());
    c
}

/// One in-process node: libp2p node, router, sharing service, GitHub client.
struct Peer {
    node: NodeHandle,
    share: CacheShare,
    client: GithubClient,
}

impl Peer {
    async fn start(api: &str, token: &str, secret: &[u8], bootstrap: &[Multiaddr]) -> Peer {
        let cfg = ClientConfig {
            base_url: api.to_string(),
            // Generous: a loaded test machine must not turn a peer hit into a GitHub request.
            peer_budget: Duration::from_secs(5),
            ..ClientConfig::default()
        };
        Self::start_with(cfg, token, secret, bootstrap).await
    }

    async fn start_with(
        cfg: ClientConfig,
        token: &str,
        secret: &[u8],
        bootstrap: &[Multiaddr],
    ) -> Peer {
        let clock = Arc::new(SystemClock);
        let (router, inbound) = Router::start(RouterConfig::default(), clock.clone());
        let mut nc = node_config(bootstrap);
        nc.inbound_requests = Some(inbound);
        let (node, _) = Node::spawn(nc).await.unwrap();
        // Re-announcements to new subscribers go out at once, not up to 2 s later: the tests
        // order announcements.
        let share_cfg = ShareConfig {
            reannounce_every: Duration::from_millis(20),
            ..ShareConfig::default()
        };
        let share = CacheShare::start(node.clone(), &router, secret, clock.clone(), share_cfg)
            .await
            .unwrap();
        let client = GithubClient::new(
            GithubToken::new(token),
            cfg,
            GithubCache::in_memory(1 << 22).unwrap(),
            clock,
        )
        .unwrap();
        share.attach(&client);
        Peer {
            node,
            share,
            client,
        }
    }

    async fn addr(&self) -> Multiaddr {
        self.node.listen_addrs().await.unwrap()[0].clone()
    }

    async fn runs(&self) -> Vec<u64> {
        self.client
            .workflow_runs("PyGithub", "PyGithub", &RunFilter::default())
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect()
    }
}

/// Poll `f` every 25 ms until it returns `Some`, or panic after `secs` naming `what`.
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
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Until `a` sees `b` subscribed to the cache topic.
async fn wait_subscribed(a: &NodeHandle, b: PeerId) {
    wait_for(10, "a subscription to the cache topic", || async {
        a.subscribers(TOPIC)
            .await
            .unwrap()
            .contains(&b)
            .then_some(())
    })
    .await;
}

async fn wait_heard(p: &Peer, n: u64) {
    wait_for(10, "cache announcements", || async {
        (p.share.stats().announcements_heard >= n).then_some(())
    })
    .await;
}

async fn received(s: &MockServer) -> usize {
    s.received_requests().await.unwrap().len()
}

#[tokio::test]
async fn a_fetches_b_and_a_late_joiner_get_it_from_the_mesh_without_github() {
    let gh = github(1).await;
    let a = Peer::start(&gh.uri(), TOKEN, SECRET, &[]).await;
    let b = Peer::start(&gh.uri(), TOKEN, SECRET, &[a.addr().await]).await;
    wait_subscribed(&a.node, b.node.peer_id()).await;

    let first = a.runs().await;
    assert_eq!(received(&gh).await, 1);
    wait_heard(&b, 1).await;
    assert_eq!(b.runs().await, first);
    assert_eq!(received(&gh).await, 1, "B sent no request to GitHub");
    let s = b.client.cache_stats();
    assert_eq!((s.peer_hits, s.api_calls, s.rejected), (1, 0, 0), "{s:?}");
    assert!(s.p2p_enabled);
    assert_eq!(s.connected_peers, 1);
    assert_eq!(a.share.stats().served, 1);

    // A runner that joins later learns who holds what when it subscribes.
    let c = Peer::start(&gh.uri(), TOKEN, SECRET, &[a.addr().await]).await;
    wait_heard(&c, 1).await;
    assert_eq!(c.runs().await, first);
    assert_eq!(received(&gh).await, 1, "C sent no request to GitHub");
    assert_eq!(c.client.cache_stats().peer_hits, 1);
    // Secrets are nowhere in what the services report.
    let shown = format!(
        "{:?} {:?} {:?} {}",
        c.share,
        c.client,
        c.share.stats(),
        serde_json::to_string(&c.client.cache_stats()).unwrap()
    );
    assert!(!shown.contains("SECRET"), "{shown}");
}

#[tokio::test]
async fn other_mesh_secret_cannot_open_and_other_token_never_matches() {
    let gh = github(3).await;
    let a = Peer::start(&gh.uri(), TOKEN, SECRET, &[]).await;
    // Same token, other mesh secret (these test nodes run without pnet, so they connect).
    let b = Peer::start(&gh.uri(), TOKEN, b"another-mesh-secret", &[a.addr().await]).await;
    // Same mesh secret, other token.
    let c = Peer::start(&gh.uri(), "fake-other-token", SECRET, &[a.addr().await]).await;
    wait_subscribed(&a.node, b.node.peer_id()).await;
    wait_subscribed(&a.node, c.node.peer_id()).await;
    let mut b_events = b.node.events();

    let first = a.runs().await;
    wait_heard(&b, 1).await;
    wait_heard(&c, 1).await;
    assert_eq!(b.runs().await, first);
    let s = b.client.cache_stats();
    assert_eq!((s.rejected, s.peer_hits, s.misses), (1, 0, 1), "{s:?}");
    assert_eq!(b.share.stats().reported, 1);
    // B penalised A for an entry it could not open.
    let a_id = a.node.peer_id();
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(NodeEvent::PeerPenalised { peer_id, .. }) = b_events.recv().await
                && peer_id == a_id
            {
                break;
            }
        }
    })
    .await
    .expect("B reports A");

    assert_eq!(c.runs().await, first);
    let s = c.client.cache_stats();
    assert_eq!((s.rejected, s.peer_hits, s.misses), (0, 0, 1), "{s:?}");
    assert_eq!(
        c.share.stats().asked,
        0,
        "another token's key never matches"
    );
    assert_eq!(received(&gh).await, 3);
}

/// A bare node (no sharing service) that answers every request with `answer(request)`.
async fn rogue(
    bootstrap: Multiaddr,
    answer: impl Fn(&[u8]) -> Vec<u8> + Send + 'static,
) -> NodeHandle {
    let (tx, mut rx) = mpsc::channel::<InboundRequest>(16);
    let mut nc = node_config(&[bootstrap]);
    nc.inbound_requests = Some(tx);
    let (node, _) = Node::spawn(nc).await.unwrap();
    node.subscribe(TOPIC).await.unwrap();
    tokio::spawn(async move {
        while let Some(r) = rx.recv().await {
            let _ = r.respond.send(answer(&r.bytes));
        }
    });
    node
}

/// Publish a well-formed announcement of `key` from `node`.
async fn announce_from(node: &NodeHandle, key: KeyHash) {
    let body = Announce {
        entries: vec![AnnouncedKey {
            key: key.to_hex(),
            fresh_until_ms: SystemClock.now_ms() + 30_000,
        }],
    };
    let bytes = Envelope::new(ANNOUNCE_KIND, 0, &body)
        .unwrap()
        .encode()
        .unwrap();
    node.publish(TOPIC, bytes).await.unwrap();
}

fn entry_answer(sealed: &[u8]) -> Vec<u8> {
    Envelope::new(
        ENTRY_KIND,
        0,
        &EntryAnswer {
            sealed: base64::engine::general_purpose::STANDARD.encode(sealed),
        },
    )
    .unwrap()
    .encode()
    .unwrap()
}

#[tokio::test]
async fn tampered_forged_and_garbage_answers_are_rejected_counted_and_penalised() {
    let gh = github(1).await;
    let a = Peer::start(&gh.uri(), TOKEN, SECRET, &[]).await;
    let b_cfg = ClientConfig {
        base_url: gh.uri(),
        peer_candidates: 4,
        peer_budget: Duration::from_secs(8),
        ..ClientConfig::default()
    };
    let b = Peer::start_with(b_cfg, TOKEN, SECRET, &[a.addr().await]).await;
    let key = a.client.cache_key(RUNS_KEY);
    let kh = KeyHash::of(&key);
    // Answers filled in once A holds the entry: a real one with a bit flipped (tampered), random
    // bytes (forged), and bytes that are not an envelope at all.
    let tampered = Arc::new(std::sync::Mutex::new(Vec::new()));
    let t = tampered.clone();
    let evil = rogue(a.addr().await, move |_| entry_answer(&t.lock().unwrap())).await;
    let forger = rogue(a.addr().await, |_| entry_answer(&[7u8; 300])).await;
    let junk = rogue(a.addr().await, |_| b"\x00garbage".to_vec()).await;
    let rogues = [evil.clone(), forger.clone(), junk.clone()];
    // B talks to everyone directly; everyone hears everyone's announcements.
    for r in &rogues {
        for addr in r.listen_addrs().await.unwrap() {
            b.node.dial(addr).await.unwrap();
        }
        wait_subscribed(r, b.node.peer_id()).await;
        wait_subscribed(&b.node, r.peer_id()).await;
        wait_subscribed(&a.node, r.peer_id()).await;
    }
    wait_subscribed(&a.node, b.node.peer_id()).await;
    // A's re-announcements to the new subscribers (of nothing yet) are over.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let first = a.runs().await;
    wait_heard(&b, 1).await;
    let stored = a
        .client
        .cache()
        .lock()
        .unwrap()
        .get(&key, SystemClock.now_ms())
        .unwrap()
        .expect("A stored the run list");
    let mut sealed = seal::seal(
        &SealKey::derive(SECRET, TOKEN),
        key.as_str(),
        &serde_json::to_vec(&stored).unwrap(),
    );
    sealed[20] ^= 0x01;
    *tampered.lock().unwrap() = sealed;
    // The rogues announce after A: B asks the most recent first (junk, forger, evil), then A.
    for (i, r) in rogues.iter().enumerate() {
        announce_from(r, kh).await;
        wait_heard(&b, 2 + i as u64).await;
    }
    let mut b_events = b.node.events();
    assert_eq!(b.runs().await, first);
    assert_eq!(received(&gh).await, 1, "no request from B reached GitHub");
    let s = b.client.cache_stats();
    assert_eq!((s.rejected, s.peer_hits, s.api_calls), (3, 1, 0), "{s:?}");
    assert_eq!(b.share.stats().reported, 3);
    assert_eq!(b.share.stats().asked, 4);
    // Each rogue was reported to B's peer scoring.
    let mut penalised = std::collections::HashSet::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        while penalised.len() < 3 {
            if let Ok(NodeEvent::PeerPenalised { peer_id, .. }) = b_events.recv().await {
                penalised.insert(peer_id);
            }
        }
    })
    .await
    .expect("every rogue is penalised");
    let want: std::collections::HashSet<PeerId> = rogues.iter().map(|r| r.peer_id()).collect();
    assert_eq!(penalised, want);
    // Their announcements are forgotten: the next stale lookup would not ask them again.
    assert_eq!(b.share.stats().indexed_keys, 1);
}

// ---- two engines --------------------------------------------------------------------------

use common::*;

/// Until the mesh is up and the GitHub layer shares through it; returns the P2P status.
async fn wait_ready(c: &Client) -> Value {
    for _ in 0..400 {
        let s = ok(c, "get_p2p_network_status", json!({})).await;
        if s["health"] != "starting" && !s["listen_addrs"].as_array().unwrap().is_empty() {
            let r = call(c, "gh_cache_stats", json!({})).await;
            if r.is_error != Some(true)
                && r.structured_content.as_ref().unwrap()["p2p_enabled"] == true
            {
                return s;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("mesh or GitHub layer never started");
}

#[tokio::test]
async fn two_engines_share_a_github_response() {
    let gh = github(1).await;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("mesh.secret");
    std::fs::write(&secret_file, SECRET).unwrap();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let sf = secret_file.to_str().unwrap().to_string();
    let api = gh.uri();
    let base = [
        "--set",
        "p2p.enabled=true",
        "--p2p-listen",
        "/ip4/127.0.0.1/tcp/0",
        "--no-mdns",
        "--p2p-secret-file",
        sf.as_str(),
        "--github-api-url",
        api.as_str(),
        "--set",
        "github.peer_lookup_budget=5s",
    ];
    let env = [("GH_TOKEN", TOKEN)];
    let a = mcp_client_env(da.path(), &base, &env).await;
    let sa = wait_ready(&a).await;
    let addr = sa["listen_addrs"][0].as_str().unwrap().to_string();
    let mut args = base.to_vec();
    args.extend(["--bootstrap", addr.as_str()]);
    let b = mcp_client_env(db.path(), &args, &env).await;
    wait_ready(&b).await;
    for _ in 0..200 {
        if ok(&b, "gh_cache_stats", json!({})).await["connected_peers"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let runs_a = ok(&a, "gh_workflow_runs", json!({"repo": "PyGithub/PyGithub"})).await;
    // A announces at once (or again when B's subscription reaches it); gossip on 127.0.0.1
    // takes milliseconds. B asks once: a second try would already have gone to GitHub.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let runs_b = ok(&b, "gh_workflow_runs", json!({"repo": "PyGithub/PyGithub"})).await;
    let stats_b = ok(&b, "gh_cache_stats", json!({})).await;
    assert_eq!(runs_a["runs"], runs_b["runs"]);
    assert_eq!(stats_b["peer_hits"], 1, "{stats_b}");
    assert_eq!(stats_b["api_calls"], 0, "{stats_b}");
    assert_eq!(stats_b["rejected"], 0, "{stats_b}");
    assert_eq!(stats_b["p2p_enabled"], true);
    assert_eq!(stats_b["connected_peers"], 1);
    assert_eq!(received(&gh).await, 1, "B's lookup did not reach GitHub");
    let logs_b = ok(
        &b,
        "get_recent_logs",
        json!({"lines": 1000, "level": "debug"}),
    )
    .await;
    for out in [
        runs_a.to_string(),
        runs_b.to_string(),
        stats_b.to_string(),
        logs_b.to_string(),
    ] {
        assert!(!out.contains(TOKEN), "token in MCP output");
        assert!(!out.contains("SECRET"), "secret in MCP output: {out}");
    }
    a.cancel().await.unwrap();
    b.cancel().await.unwrap();
    for d in [&da, &db] {
        let db = std::fs::read(d.path().join("flotilla.db")).unwrap();
        let wal = std::fs::read(d.path().join("flotilla.db-wal")).unwrap_or_default();
        for bytes in [db, wal] {
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains(TOKEN) && !text.contains("mesh-secret-0123456789"));
        }
    }
}
