//! A peer that lies to the mesh scheduler: a bare libp2p gossipsub swarm (no Flotilla code on
//! its side) joins an engine's open mesh and publishes, on the scheduler topic, a claim that
//! hands the engine's task to a third peer, a completion in another peer's name, and garbage.
//! The engine rejects each, penalises the sender (its gossipsub score falls, then it is
//! banned), keeps ownership, and finishes the task itself.

use std::sync::Arc;
use std::time::Duration;

use flotilla::clock::SystemClock;
use flotilla::config::Config;
use flotilla::engine::logbuf::LogBuffer;
use flotilla::engine::{Command as Cmd, Engine, EngineHandle, EngineOptions, Reply, Source};
use flotilla::p2p::protocol::Envelope;
use flotilla::sched::lease::Claim;
use flotilla::sched::merkle_clock::MerkleClock;
use flotilla::sched::mesh::{ClaimBatch, Done, KIND_CLAIM, KIND_DONE, TOPIC};
use flotilla::sched::workflow::{TaskState, WorkflowSpec};
use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{PeerId, gossipsub, noise, tcp, yamux};
use serde_json::json;

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

async fn wait<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn envelope(kind: &str, body: &impl serde::Serialize) -> Vec<u8> {
    Envelope::new(kind, 1, body).unwrap().encode().unwrap()
}

async fn task_state(e: &EngineHandle, wf: &str) -> (TaskState, Option<String>) {
    match e
        .execute(
            Cmd::GetWorkflowStatus {
                workflow_id: wf.into(),
            },
            false,
            Source::Cli,
        )
        .await
        .unwrap()
    {
        Reply::WorkflowStatus(s) => (s.tasks[0].state, s.tasks[0].owner.clone()),
        r => panic!("{r:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_claims_and_completions_are_penalised_and_change_nothing() {
    let d = tempfile::tempdir().unwrap();
    let mut c = Config::default();
    c.general.data_dir = d.path().to_path_buf();
    c.p2p.listen = "/ip4/127.0.0.1/tcp/0".into();
    c.p2p.mdns = false;
    c.p2p.heartbeat_timeout = Duration::from_secs(2);
    let (e, _j) = Engine::start(
        EngineOptions::from_config(&c),
        Arc::new(SystemClock),
        LogBuffer::default(),
    )
    .unwrap();
    let (me, addr) = wait(20, "the node", || {
        let s = e.snapshot();
        Some((s.node.peer_id.clone()?, s.node.addresses.first()?.clone()))
    })
    .await;

    // A task that runs long enough to be lied about.
    let spec = WorkflowSpec::from_parts(
        "target",
        &json!([{ "command": ["sleep", "3"] }]),
        None,
        Some("p2p-eligible"),
    )
    .unwrap();
    let wf = match e
        .execute(Cmd::SubmitWorkflow(spec), false, Source::Cli)
        .await
        .unwrap()
    {
        Reply::Submitted(s) => s.workflow_id,
        r => panic!("{r:?}"),
    };
    let task = format!("{wf}.0");

    let mut raw = raw_swarm();
    let raw_id = *raw.local_peer_id();
    let topic = gossipsub::IdentTopic::new(TOPIC);
    raw.behaviour_mut().subscribe(&topic).unwrap();
    raw.dial(addr.parse::<libp2p::Multiaddr>().unwrap())
        .unwrap();
    let node: PeerId = me.parse().unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let SwarmEvent::Behaviour(gossipsub::Event::Subscribed { peer_id, topic: t }) =
                raw.select_next_some().await
                && peer_id == node
                && t == topic.hash()
            {
                break;
            }
        }
    })
    .await
    .expect("the engine's scheduler subscription seen");

    // 1. Hand the engine's task to a third peer, with a clock that shows the liar had seen
    //    everything (its first event): a lie, not missing news.
    let mut clock = MerkleClock::new(raw_id.to_string());
    clock.tick();
    let forged = ClaimBatch {
        claims: vec![Claim {
            task: task.clone(),
            peer: PeerId::random().to_string(),
            epoch: 2,
        }],
        clock: clock.clone(),
    };
    raw.behaviour_mut()
        .publish(topic.clone(), envelope(KIND_CLAIM, &forged))
        .unwrap();
    // 2. Report a completion in another peer's name (rejected by the validator: the clock is
    //    not the signer's).
    let mut other = MerkleClock::new(PeerId::random().to_string());
    other.tick();
    let done = Done {
        task: task.clone(),
        peer: PeerId::random().to_string(),
        epoch: 1,
        state: TaskState::Failed,
        exit_code: Some(1),
        signal: None,
        duration_ms: 1,
        error: Some("lie".into()),
        clock: Some(other),
    };
    raw.behaviour_mut()
        .publish(topic.clone(), envelope(KIND_DONE, &done))
        .unwrap();
    // 3. Garbage.
    raw.behaviour_mut()
        .publish(topic.clone(), vec![0x01, b'{', b'x'])
        .unwrap();
    // Drive the raw swarm until the engine's node drops it.
    let dropped = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if let SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } = raw.select_next_some().await
                && peer_id == node
            {
                return true;
            }
        }
    })
    .await;
    assert!(dropped.is_ok(), "the liar was never disconnected");
    let row = wait(10, "the liar banned", || {
        e.snapshot()
            .peers
            .iter()
            .find(|p| p.peer_id == raw_id.to_string() && p.banned)
            .cloned()
    })
    .await;
    assert!(row.score.is_some_and(|s| s < 0.0), "{row:?}");

    // Nothing changed hands: the engine still owns its task and finishes it.
    let (state, owner) = task_state(&e, &wf).await;
    assert_eq!(owner.as_deref(), Some(me.as_str()), "{state:?}");
    let end = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (state, owner) = task_state(&e, &wf).await;
        if state == TaskState::Succeeded {
            assert_eq!(owner.as_deref(), Some(me.as_str()));
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "task never finished: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    e.shutdown().await;
}
