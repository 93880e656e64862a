//! GitHub cache sharing across a 5-node mesh: how many requests reach GitHub.
//!
//! ```text
//! cargo bench -j1 --bench cache_mesh
//! ```
//!
//! Setup, all in this process on 127.0.0.1:
//! - a local HTTP server (wiremock) playing GitHub: five recorded GET responses from
//!   `shared/fixtures/github/pygithub_extracted` (bodies and ETags as recorded), answering
//!   `304 Not Modified` to a matching `If-None-Match`, with `X-RateLimit-*` headers whose
//!   `Remaining` drops by one per `200` only (GitHub does not charge a `304` to the primary
//!   limit). It counts requests, and of them the ones that cost rate limit;
//! - `CACHE_BENCH_NODES` nodes (default 5), each its own [`GithubClient`] with its own
//!   in-memory cache, libp2p node (`/ip4/127.0.0.1/tcp/0`, full mesh, no mDNS), request router
//!   and [`CacheShare`], all with the same token and mesh secret.
//!
//! Workload: every node makes the same `CACHE_BENCH_POLLS` (default 20) polls of the same five
//! endpoints, 100 lookups per node, the way a fleet monitor polls: the workflow run list
//! (fresh 30 s), one job (10 s), the repository's runners (30 s), its workflows (1 h) and the
//! owner account (1 h). Polls are `CACHE_BENCH_INTERVAL_S` (default 2) seconds apart on a
//! simulated clock shared by the GitHub layers (so 20 polls span 40 s of freshness windows
//! and the short ones expire and are revalidated during the run; the network and HTTP are
//! real). Within a poll the nodes start `CACHE_BENCH_STAGGER_MS` (default 50) real
//! milliseconds apart, like runners that do not tick in lockstep.
//!
//! The same workload then runs again with sharing off, for comparison. Goal (issue #4): at
//! most 10 requests reach the server, at most 5 of them cost rate limit; the process exits
//! with status 1 if the shared run misses it. Nodes in exact lockstep
//! (`CACHE_BENCH_STAGGER_MS=0`) all miss at the same instant and all go to GitHub: lookups in
//! flight on other nodes are not coalesced.
//!
//! Run it optimized (`cargo bench`): in a debug build sealing and encoding a 50 KB run list
//! alone take ~60 ms, and peer lookups overrun the 300 ms budget.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flotilla::clock::{ManualClock, SharedClock};
use flotilla::github::cache::GithubCache;
use flotilla::github::{ClientConfig, GithubClient, GithubToken, RunFilter, RunnerScope};
use flotilla::p2p::cache_share::{self, CacheShare, ShareConfig, TOPIC};
use flotilla::p2p::envelope_validator;
use flotilla::p2p::node::{Node, NodeConfig, NodeHandle};
use flotilla::p2p::router::{Router, RouterConfig};
use libp2p::Multiaddr;
use libp2p::identity::Keypair;
use serde_json::Value;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const TOKEN: &str = "ghp_benchToken0123456789";
const SECRET: &[u8] = b"bench mesh secret";

fn env_u64(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn fixtures() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/github/pygithub_extracted"
    ))
}

/// One recorded response: body and ETag.
struct Recorded {
    etag: String,
    body: Vec<u8>,
}

fn load(name: &str) -> (String, Recorded) {
    let p = fixtures().join(format!("{name}.json"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    let path = v["path"]
        .as_str()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string();
    let etag = v["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0].as_str().unwrap().eq_ignore_ascii_case("etag"))
        .map(|h| h[1].as_str().unwrap().to_string())
        .expect("recorded ETag");
    (
        path,
        Recorded {
            etag,
            body: serde_json::to_vec(&v["body"]).unwrap(),
        },
    )
}

/// The fake GitHub: recorded answers by path, conditional requests, rate-limit accounting.
struct FakeGithub {
    by_path: HashMap<String, Recorded>,
    requests: Arc<AtomicU64>,
    charged: Arc<AtomicU64>,
    reset_epoch_s: i64,
}

impl Respond for FakeGithub {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let Some(r) = self.by_path.get(req.url.path()) else {
            return ResponseTemplate::new(404).set_body_string("{\"message\":\"Not Found\"}");
        };
        let not_modified = req
            .headers
            .get("if-none-match")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == r.etag);
        let used = if not_modified {
            self.charged.load(Ordering::SeqCst)
        } else {
            self.charged.fetch_add(1, Ordering::SeqCst) + 1
        };
        let t = if not_modified {
            ResponseTemplate::new(304)
        } else {
            ResponseTemplate::new(200)
                .insert_header("content-type", "application/json; charset=utf-8")
                .set_body_bytes(r.body.clone())
        };
        t.insert_header("etag", r.etag.as_str())
            .insert_header("x-ratelimit-limit", "5000")
            .insert_header("x-ratelimit-remaining", (5000 - used).to_string())
            .insert_header("x-ratelimit-used", used.to_string())
            .insert_header("x-ratelimit-reset", self.reset_epoch_s.to_string())
            .insert_header("x-ratelimit-resource", "core")
    }
}

struct Server {
    mock: MockServer,
    requests: Arc<AtomicU64>,
    charged: Arc<AtomicU64>,
}

async fn server(now_ms: i64) -> Server {
    let by_path: HashMap<String, Recorded> = [
        "Repository.testGetWorkflowRuns.02",
        "Repository.testGetWorkflowJob.02",
        "PullRequest1684.testGetRunners.01",
        "Repository.testGetWorkflows.02",
        "SelfHostedActionsRunner.setUp.01",
    ]
    .into_iter()
    .map(load)
    .collect();
    let requests = Arc::new(AtomicU64::new(0));
    let charged = Arc::new(AtomicU64::new(0));
    let mock = MockServer::start().await;
    Mock::given(wiremock::matchers::method("GET"))
        .respond_with(FakeGithub {
            by_path,
            requests: requests.clone(),
            charged: charged.clone(),
            reset_epoch_s: now_ms / 1000 + 3600,
        })
        .mount(&mock)
        .await;
    Server {
        mock,
        requests,
        charged,
    }
}

/// One runner's view: client (and, with sharing, its mesh pieces).
struct BenchNode {
    client: GithubClient,
    share: Option<CacheShare>,
    node: Option<NodeHandle>,
}

/// How each lookup was answered, with its latency.
#[derive(Default)]
struct Latencies {
    local: Vec<Duration>,
    peer: Vec<Duration>,
    github: Vec<Duration>,
}

/// The five lookups of one poll; each timed and classified by the counter it moved.
async fn poll(c: &GithubClient, lat: &mut Latencies) {
    for i in 0..5 {
        let before = c.cache_stats();
        let t = Instant::now();
        match i {
            0 => drop(
                c.workflow_runs("PyGithub", "PyGithub", &RunFilter::default())
                    .await
                    .expect("runs"),
            ),
            1 => drop(
                c.job("PyGithub", "PyGithub", 54251022208)
                    .await
                    .expect("job"),
            ),
            2 => drop(
                c.runners(&RunnerScope::repo("ReDASers", "Phishing-Detection"))
                    .await
                    .expect("runners"),
            ),
            3 => drop(
                c.workflows("PyGithub", "PyGithub")
                    .await
                    .expect("workflows"),
            ),
            _ => drop(c.account("ReDASers").await.expect("account")),
        }
        let took = t.elapsed();
        let after = c.cache_stats();
        if after.api_calls > before.api_calls {
            lat.github.push(took);
        } else if after.peer_hits > before.peer_hits {
            lat.peer.push(took);
        } else {
            lat.local.push(took);
        }
    }
}

fn summary(v: &mut [Duration]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "n={} p50={:.2} ms p95={:.2} ms max={:.2} ms",
        v.len(),
        ms(v[v.len() / 2]),
        ms(v[(v.len() * 95 / 100).min(v.len() - 1)]),
        ms(v[v.len() - 1])
    )
}

fn client(api: &str, clock: &SharedClock) -> GithubClient {
    GithubClient::new(
        GithubToken::new(TOKEN),
        ClientConfig {
            base_url: api.to_string(),
            ..ClientConfig::default()
        },
        GithubCache::in_memory(8 << 20).unwrap(),
        clock.clone(),
    )
    .unwrap()
}

async fn mesh_nodes(n: usize, api: &str, clock: &SharedClock) -> Vec<BenchNode> {
    let mut out: Vec<BenchNode> = Vec::new();
    let mut addrs: Vec<Multiaddr> = Vec::new();
    for i in 0..n {
        let (router, inbound) = Router::start(RouterConfig::default(), clock.clone());
        let mut nc = NodeConfig::new(Keypair::generate_ed25519());
        nc.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
        nc.bootstrap = addrs.clone();
        nc.mdns = false;
        nc.heartbeat = Duration::from_millis(200);
        nc.agent_suffix = Some(format!("bench-{i}"));
        nc.validator = cache_share::gossip_validator(envelope_validator());
        nc.inbound_requests = Some(inbound);
        nc.clock = clock.clone();
        let (node, _) = Node::spawn(nc).await.expect("node starts");
        addrs.push(node.listen_addrs().await.unwrap()[0].clone());
        let share = CacheShare::start(
            node.clone(),
            &router,
            SECRET,
            clock.clone(),
            ShareConfig::default(),
        )
        .await
        .expect("sharing starts");
        let c = client(api, clock);
        share.attach(&c);
        out.push(BenchNode {
            client: c,
            share: Some(share),
            node: Some(node),
        });
    }
    // Full mesh: every node sees every other subscribed to the cache topic.
    let deadline = Instant::now() + Duration::from_secs(30);
    for b in &out {
        let node = b.node.as_ref().unwrap();
        while node.subscribers(TOPIC).await.unwrap().len() < n - 1 {
            assert!(Instant::now() < deadline, "mesh did not form");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    out
}

struct Figures {
    requests: u64,
    charged: u64,
    wall: Duration,
}

async fn run(
    label: &str,
    sharing: bool,
    nodes: usize,
    polls: u64,
    interval_s: i64,
    stagger: Duration,
) -> Figures {
    let start_ms = flotilla::clock::Clock::now_ms(&flotilla::clock::SystemClock);
    let manual = ManualClock::new(start_ms);
    let clock: SharedClock = Arc::new(manual.clone());
    let srv = server(start_ms).await;
    let api = srv.mock.uri();
    let bench_nodes: Vec<Arc<BenchNode>> = if sharing {
        mesh_nodes(nodes, &api, &clock).await
    } else {
        (0..nodes)
            .map(|_| BenchNode {
                client: client(&api, &clock),
                share: None,
                node: None,
            })
            .collect()
    }
    .into_iter()
    .map(Arc::new)
    .collect();

    let t0 = Instant::now();
    let mut lat = Latencies::default();
    for p in 0..polls {
        manual.set(start_ms + p as i64 * interval_s * 1000);
        let mut tasks = Vec::new();
        for (i, n) in bench_nodes.iter().enumerate() {
            let n = n.clone();
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(stagger * i as u32).await;
                let mut l = Latencies::default();
                poll(&n.client, &mut l).await;
                l
            }));
        }
        for t in tasks {
            let l = t.await.unwrap();
            lat.local.extend(l.local);
            lat.peer.extend(l.peer);
            lat.github.extend(l.github);
        }
    }
    let wall = t0.elapsed();
    let requests = srv.requests.load(Ordering::SeqCst);
    let charged = srv.charged.load(Ordering::SeqCst);

    println!("\n== {label} ==");
    println!(
        "{nodes} nodes x {polls} polls x 5 endpoints = {} lookups ({} per node), polls {interval_s} s apart (simulated), nodes {} ms apart",
        nodes as u64 * polls * 5,
        polls * 5,
        stagger.as_millis()
    );
    println!(
        "{:<6} {:>5} {:>9} {:>5} {:>7} {:>9} {:>8} {:>6} {:>7}",
        "node", "hits", "peer_hits", "304s", "misses", "api_calls", "rejected", "served", "peers"
    );
    let mut peer_hits = 0;
    for (i, n) in bench_nodes.iter().enumerate() {
        let s = n.client.cache_stats();
        peer_hits += s.peer_hits;
        let served = n.share.as_ref().map_or(0, |x| x.stats().served);
        println!(
            "{:<6} {:>5} {:>9} {:>5} {:>7} {:>9} {:>8} {:>6} {:>7}",
            i,
            s.hits,
            s.peer_hits,
            s.not_modified,
            s.misses,
            s.api_calls,
            s.rejected,
            served,
            s.connected_peers
        );
    }
    println!(
        "requests reaching the server: {requests}, of which cost rate limit (200): {charged}, free (304): {}",
        requests - charged
    );
    println!("peer hits: {peer_hits}");
    println!("latency, local hit:  {}", summary(&mut lat.local));
    println!("latency, peer hit:   {}", summary(&mut lat.peer));
    println!("latency, via GitHub: {}", summary(&mut lat.github));
    println!(
        "wall time: {:.2} s (mostly the stagger between nodes)",
        wall.as_secs_f64()
    );
    for n in &bench_nodes {
        if let Some(node) = &n.node {
            node.shutdown().await;
        }
    }
    Figures {
        requests,
        charged,
        wall,
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let nodes = env_u64("CACHE_BENCH_NODES", 5).max(1) as usize;
    let polls = env_u64("CACHE_BENCH_POLLS", 20).max(1);
    let interval = env_u64("CACHE_BENCH_INTERVAL_S", 2) as i64;
    let stagger = Duration::from_millis(env_u64("CACHE_BENCH_STAGGER_MS", 50));

    let shared = run("mesh sharing on", true, nodes, polls, interval, stagger).await;
    let alone = run(
        "sharing off (each node's own ETag cache only)",
        false,
        nodes,
        polls,
        interval,
        stagger,
    )
    .await;
    let goal = shared.requests <= 10 && shared.charged <= 5;
    println!(
        "\nsummary: with sharing {} requests ({} costing) in {:.2} s; without {} requests ({} costing) in {:.2} s; goal <= 10 requests, <= 5 costing: {}",
        shared.requests,
        shared.charged,
        shared.wall.as_secs_f64(),
        alone.requests,
        alone.charged,
        alone.wall.as_secs_f64(),
        if goal { "met" } else { "MISSED" }
    );
    if !goal {
        std::process::exit(1);
    }
}
