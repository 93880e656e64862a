//! The mesh scheduler's I/O shell: the engine's side of [`crate::sched::mesh`]. It gossips
//! heartbeats, announcements, claims, starts and completions on [`TOPIC`], applies what
//! peers send (validated, then the pure rules), answers and sends [`KIND_SYNC`] requests,
//! and keeps leases and the Merkle clock in the store.
//!
//! Everything here runs on the engine's loop (one thread of control, no locks): network
//! input arrives as engine messages from two small tasks (gossip in, sync answers), and
//! output leaves through one outbound queue, published in order by one task.
//!
//! Timing: a 100 ms tick settles self-claims ([`SETTLE`]) and, every heartbeat interval
//! (`clamp(heartbeat_timeout / 4, 250 ms, 5 s)`), sends a heartbeat and runs takeovers,
//! stealing and placement of tasks no peer could take yet.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use libp2p::PeerId;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::{ActiveWorkflow, Engine, Msg};
use crate::clock::Millis;
use crate::p2p::NodeHandle;
use crate::p2p::protocol::Envelope;
use crate::sched::lease::{Applied, Claim, Completion, LeaseBook};
use crate::sched::merkle_clock::MerkleClock;
use crate::sched::mesh::{
    self, Announce, Cancel, ClaimBatch, Done, Heartbeat, KIND_ANNOUNCE, KIND_CANCEL, KIND_CLAIM,
    KIND_DONE, KIND_HEARTBEAT, KIND_START, KIND_SYNC, LivePeer, Started, SyncAnswer, SyncRequest,
    TOPIC, TaskInfo, TaskWire, Verdict, WorkflowWire,
};
use crate::sched::peer_select::{self, PlaceBy, Slot};
use crate::sched::workflow::{TaskState, WorkflowStatus, WorkflowTag, workflow_status};
use crate::store::TaskRow;

/// How long a self-claim (takeover, steal) waits for a better competing claim before the
/// task starts.
pub const SETTLE: Millis = 300;
/// Largest announcement chunk, bytes of JSON task specs (the envelope limit is 256 KiB).
const CHUNK_BYTES: usize = 160 * 1024;
/// Sync answers kept, and how long a node waits for its first sync before it starts mesh
/// tasks it owned before a restart.
const CATCH_UP: Millis = 3_000;

/// How many more of this node's own events a peer's clock may count (see
/// `mesh_clock_honest`).
const MAX_OWN_LAG: u64 = 10_000;

/// A peer as its heartbeats describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerLoad {
    /// Node name.
    pub name: String,
    /// Capability labels.
    pub capabilities: Vec<String>,
    /// Running tasks.
    pub running: u32,
    /// Its max.
    pub max: u32,
    /// Its queued tasks.
    pub queued: u32,
    /// When its last heartbeat arrived, by this node's clock (unix ms).
    pub last_heard: Millis,
}

/// Inputs from the network tasks to the engine loop.
#[derive(Debug)]
pub enum SchedIn {
    /// A validated gossip message.
    Gossip(PeerId, mesh::Msg),
    /// A peer's answer to our sync request.
    Synced(PeerId, Box<SyncAnswer>),
    /// A sync request failed.
    SyncFailed(PeerId, String),
    /// A peer asks for our state.
    Serve(oneshot::Sender<SyncAnswer>),
    /// A peer asks for a task's output.
    ServeOutput(String, oneshot::Sender<mesh::OutputAnswer>),
    /// A peer asks for queued work.
    ServeSteal(
        PeerId,
        mesh::StealRequest,
        oneshot::Sender<mesh::StealAnswer>,
    ),
    /// The answer to our steal request.
    Stolen(PeerId, Result<mesh::StealAnswer, String>),
    /// A peer connected (catch up with it).
    PeerUp(PeerId),
    /// A peer sent something invalid on the scheduler topic (already penalised).
    Invalid(PeerId, String),
}

/// The mesh scheduler's state (part of the engine).
#[derive(Debug)]
pub struct MeshSched {
    /// This node's peer ID, once the node is up.
    pub me: Option<String>,
    node: Option<NodeHandle>,
    out: Option<mpsc::UnboundedSender<(String, Vec<u8>)>>,
    /// Leases of every mesh task this node knows.
    pub book: LeaseBook,
    /// This node's clock.
    pub clock: MerkleClock,
    clock_dirty: bool,
    /// Peers by peer ID, from their heartbeats.
    pub peers: BTreeMap<String, PeerLoad>,
    /// Origin of each active mesh workflow.
    origins: HashMap<String, String>,
    pending: Vec<(Claim, Millis)>,
    lost: HashSet<String>,
    syncing: HashSet<String>,
    last_sync: HashMap<String, Millis>,
    next_beat: Millis,
    /// Heartbeat interval.
    pub beat: Duration,
    /// A peer silent this long loses its tasks, ms.
    pub timeout: Millis,
    stealing: bool,
    merkle_sync: Millis,
    last_full_sync: Millis,
    catch_up_until: Millis,
    /// Completions dropped as duplicates (first one wins).
    pub duplicates: u64,
    /// Peers with a steal request of ours in flight.
    stealing_from: HashSet<String>,
    /// Peers already reported silent (logged once until heard again).
    dead: HashSet<String>,
}

impl MeshSched {
    /// An idle scheduler (no node yet) with the `[p2p]` timings.
    pub fn new(cfg: &crate::config::P2pConfig) -> Self {
        let timeout = cfg.heartbeat_timeout.as_millis() as Millis;
        let beat =
            (cfg.heartbeat_timeout / 4).clamp(Duration::from_millis(250), Duration::from_secs(5));
        Self {
            me: None,
            node: None,
            out: None,
            book: LeaseBook::new(),
            clock: MerkleClock::new("-"),
            clock_dirty: false,
            peers: BTreeMap::new(),
            origins: HashMap::new(),
            pending: vec![],
            lost: HashSet::new(),
            syncing: HashSet::new(),
            last_sync: HashMap::new(),
            next_beat: 0,
            beat,
            timeout,
            stealing: cfg.enable_task_stealing,
            merkle_sync: cfg.merkle_sync_interval.as_millis() as Millis,
            last_full_sync: 0,
            catch_up_until: 0,
            duplicates: 0,
            stealing_from: HashSet::new(),
            dead: HashSet::new(),
        }
    }

    /// Whether the scheduler is running (the node is up).
    pub fn active(&self) -> bool {
        self.me.is_some()
    }

    /// Whether a workflow is a mesh workflow this node tracks.
    pub fn is_mesh(&self, workflow_id: &str) -> bool {
        self.origins.contains_key(workflow_id)
    }

    /// Whether this node holds `task`'s lease.
    pub fn owns(&self, task: &str) -> bool {
        self.me
            .as_deref()
            .is_some_and(|me| self.book.owner(task) == Some(me))
    }

    /// Peers heard within the heartbeat timeout.
    fn live(&self, now: Millis) -> impl Iterator<Item = (&String, &PeerLoad)> {
        self.peers
            .iter()
            .filter(move |(_, p)| now - p.last_heard <= self.timeout)
    }

    /// Peers heard within three heartbeat intervals (fresh enough to place work on).
    fn fresh(&self, now: Millis) -> impl Iterator<Item = (&String, &PeerLoad)> {
        let window = 3 * self.beat.as_millis() as Millis + 500;
        self.peers
            .iter()
            .filter(move |(_, p)| now - p.last_heard <= window)
    }

    fn send(&mut self, kind: &str, body: &impl serde::Serialize, now: Millis) {
        let Some(out) = &self.out else { return };
        match Envelope::new(kind, now, body).and_then(|e| e.encode()) {
            Ok(bytes) => {
                let _ = out.send((kind.to_string(), bytes));
            }
            Err(e) => warn!(kind, "scheduler message not sent: {e}"),
        }
    }

    /// A local event: tick the clock and return a copy to send with it.
    fn tick(&mut self) -> MerkleClock {
        self.clock.tick();
        self.clock_dirty = true;
        self.clock.clone()
    }
}

/// Start the network side: subscribe, forward gossip and connections to the engine, serve
/// sync requests, and publish the outbound queue in order.
pub(super) fn attach(
    svc: &super::mesh::MeshService,
    engine: mpsc::Sender<Msg>,
) -> mpsc::UnboundedSender<(String, Vec<u8>)> {
    let node = svc.handle.clone();
    // Outbound: one task, in order.
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<(String, Vec<u8>)>();
    {
        let node = node.clone();
        tokio::spawn(async move {
            while let Some((kind, bytes)) = out_rx.recv().await {
                if let Err(e) = node.publish(TOPIC, bytes).await {
                    debug!(kind, "scheduler gossip not published: {e}");
                }
            }
        });
    }
    // Inbound gossip and peer connections.
    {
        let node = node.clone();
        let engine = engine.clone();
        let mut events = node.events();
        tokio::spawn(async move {
            if let Err(e) = node.subscribe(TOPIC).await {
                warn!("cannot subscribe to the scheduler topic: {e}");
                return;
            }
            loop {
                let ev = match events.recv().await {
                    Ok(ev) => ev,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        warn!(
                            missed = n,
                            "scheduler fell behind the node's events; a sync will catch up"
                        );
                        continue;
                    }
                    Err(_) => break,
                };
                let input = match ev {
                    crate::p2p::NodeEvent::Message {
                        topic, from, bytes, ..
                    } if topic == TOPIC => {
                        match Envelope::decode(&bytes)
                            .map_err(|e| e.to_string())
                            .and_then(|e| mesh::Msg::decode(&e.kind, &e.body))
                        {
                            Ok(m) => SchedIn::Gossip(from, m),
                            Err(why) => {
                                let _ = node.report(from, &why).await;
                                SchedIn::Invalid(from, why)
                            }
                        }
                    }
                    crate::p2p::NodeEvent::PeerSubscribed { peer_id, topic } if topic == TOPIC => {
                        SchedIn::PeerUp(peer_id)
                    }
                    _ => continue,
                };
                if engine.send(Msg::Sched(input)).await.is_err() {
                    break;
                }
            }
        });
    }
    // Sync requests from peers: the engine builds the answer.
    {
        let engine = engine.clone();
        let handler: crate::p2p::router::Handler = std::sync::Arc::new(
            move |_peer, req: Envelope| {
                let engine = engine.clone();
                Box::pin(async move {
                    let now = req.sent_ms;
                    if let Err(e) = req.body_as::<SyncRequest>() {
                        return Envelope {
                            kind: crate::p2p::router::ERROR_KIND.into(),
                            sent_ms: now,
                            body: serde_json::json!({"code": "malformed", "message": e.to_string()}),
                        };
                    }
                    let (tx, rx) = oneshot::channel();
                    let _ = engine.send(Msg::Sched(SchedIn::Serve(tx))).await;
                    match rx.await {
                        Ok(a) => Envelope::new(KIND_SYNC, now, &a).unwrap_or_else(|e| Envelope {
                            kind: crate::p2p::router::ERROR_KIND.into(),
                            sent_ms: now,
                            body: serde_json::json!({"code": "internal", "message": e.to_string()}),
                        }),
                        Err(_) => Envelope {
                            kind: crate::p2p::router::ERROR_KIND.into(),
                            sent_ms: now,
                            body: serde_json::json!({"code": "internal", "message": "engine stopped"}),
                        },
                    }
                })
            },
        );
        if let Err(e) = svc.router.register(KIND_SYNC, handler) {
            warn!("scheduler sync not served: {e}");
        }
    }
    // Steal requests: the engine's owner side decides.
    {
        let engine = engine.clone();
        let handler: crate::p2p::router::Handler =
            std::sync::Arc::new(move |peer, req: Envelope| {
                let engine = engine.clone();
                Box::pin(async move {
                    let now = req.sent_ms;
                    let err = |code: &str, message: String| Envelope {
                        kind: crate::p2p::router::ERROR_KIND.into(),
                        sent_ms: now,
                        body: serde_json::json!({"code": code, "message": message}),
                    };
                    let r = match req.body_as::<mesh::StealRequest>() {
                        Ok(r) if r.capabilities.len() <= mesh::MAX_LABELS => r,
                        Ok(_) => return err("malformed", "too many labels".into()),
                        Err(e) => return err("malformed", e.to_string()),
                    };
                    let (tx, rx) = oneshot::channel();
                    let _ = engine
                        .send(Msg::Sched(SchedIn::ServeSteal(peer, r, tx)))
                        .await;
                    match rx.await {
                        Ok(a) => Envelope::new(mesh::KIND_STEAL, now, &a)
                            .unwrap_or_else(|e| err("internal", e.to_string())),
                        Err(_) => err("internal", "engine stopped".into()),
                    }
                })
            });
        if let Err(e) = svc.router.register(mesh::KIND_STEAL, handler) {
            warn!("steal requests not served: {e}");
        }
    }
    // Output requests: the engine reads the store.
    {
        let handler: crate::p2p::router::Handler =
            std::sync::Arc::new(move |_peer, req: Envelope| {
                let engine = engine.clone();
                Box::pin(async move {
                    let now = req.sent_ms;
                    let err = |code: &str, message: String| Envelope {
                        kind: crate::p2p::router::ERROR_KIND.into(),
                        sent_ms: now,
                        body: serde_json::json!({"code": code, "message": message}),
                    };
                    let task = match req.body_as::<mesh::OutputRequest>() {
                        Ok(r) if !r.task.is_empty() && r.task.len() <= mesh::MAX_ID => r.task,
                        Ok(_) => return err("malformed", "task id must be 1-128 bytes".into()),
                        Err(e) => return err("malformed", e.to_string()),
                    };
                    let (tx, rx) = oneshot::channel();
                    let _ = engine
                        .send(Msg::Sched(SchedIn::ServeOutput(task, tx)))
                        .await;
                    match rx.await {
                        Ok(a) => Envelope::new(mesh::KIND_OUTPUT, now, &a)
                            .unwrap_or_else(|e| err("internal", e.to_string())),
                        Err(_) => err("internal", "engine stopped".into()),
                    }
                })
            });
        if let Err(e) = svc.router.register(mesh::KIND_OUTPUT, handler) {
            warn!("task output not served to peers: {e}");
        }
    }
    out_tx
}

/// The gossip validator for [`TOPIC`]: a message must decode as an envelope whose body is a
/// valid scheduler message ([`mesh::Msg::decode`]) signed by the clock's owner; anything else
/// is rejected before it is forwarded, which penalises the peer that sent it. Other topics go
/// to `other`.
pub fn gossip_validator(other: crate::p2p::Validator) -> crate::p2p::Validator {
    std::sync::Arc::new(move |m: &crate::p2p::GossipMessage<'_>| {
        if m.topic != TOPIC {
            return other(m);
        }
        let verdict = Envelope::decode(m.data)
            .map_err(|e| e.to_string())
            .and_then(|e| mesh::Msg::decode(&e.kind, &e.body))
            .and_then(|msg| match (msg.clock(), m.from) {
                (Some(c), Some(from)) if c.node() != from.to_string() => Err(format!(
                    "clock of {} in a message signed by {from}",
                    c.node()
                )),
                (_, None) => Err("unsigned message".into()),
                _ => Ok(()),
            });
        match verdict {
            Ok(()) => crate::p2p::Validation::Accept,
            Err(why) => {
                debug!(via = %m.via, "rejecting a scheduler message: {why}");
                crate::p2p::Validation::Reject
            }
        }
    })
}

fn info_of(t: &TaskRow) -> TaskInfo {
    TaskInfo {
        requires: t.spec.requires.clone(),
        state: t.state,
        priority: t.priority,
    }
}

impl Engine {
    /// The node is up: start the scheduler on it.
    pub(super) fn mesh_sched_start(&mut self, svc: &super::mesh::MeshService) {
        let me = svc.handle.peer_id().to_string();
        let now = self.clock.now_ms();
        let out = attach(svc, self.self_tx.clone());
        let s = &mut self.sched;
        s.node = Some(svc.handle.clone());
        s.out = Some(out);
        s.clock = match self.store.mesh_meta("clock") {
            Ok(Some(j)) => match serde_json::from_str::<MerkleClock>(&j) {
                Ok(c) if c.node() == me => c,
                _ => MerkleClock::new(me.clone()),
            },
            _ => MerkleClock::new(me.clone()),
        };
        s.me = Some(me.clone());
        s.next_beat = now;
        match self.store.mesh_leases(now - 3_600_000) {
            Ok(ls) => {
                for (owner, done, dup) in ls {
                    s.book.restore(owner, done, dup, now);
                }
            }
            Err(e) => warn!("mesh leases not restored: {e}"),
        }
        // Mesh workflows restored from the store: their origins, and the tasks this node owns.
        let ids: Vec<String> = self.workflows.keys().cloned().collect();
        let mut restored = 0;
        for wf in ids {
            if let Ok(Some(o)) = self.store.mesh_origin(&wf) {
                self.sched.origins.insert(wf, o);
                restored += 1;
            }
        }
        if restored > 0 {
            // Wait for a peer's view before running tasks held before the restart: they may
            // have been taken over meanwhile.
            self.sched.catch_up_until = now + CATCH_UP;
        }
        self.mesh_requeue_interrupted(&me);
        self.mesh_requeue_mine();
        info!(peer_id = %me, heartbeat = ?self.sched.beat, "mesh scheduler on");
    }

    /// Mesh tasks this node was running when it stopped (`running` in the store, owned by
    /// `me`, not running now) go back to the queue, marked retried.
    fn mesh_requeue_interrupted(&mut self, me: &str) {
        let ids: Vec<String> = self
            .tasks
            .values()
            .filter(|t| {
                t.state == TaskState::Running
                    && !self.running.contains_key(&t.id)
                    && (t.owner.as_deref() == Some(me) || self.sched.book.owner(&t.id) == Some(me))
            })
            .map(|t| t.id.clone())
            .collect();
        for id in &ids {
            if let Err(e) = self.store.mark_requeued(id) {
                warn!(task = %id, "interrupted mesh task not re-queued in the store: {e}");
            }
            if let Some(t) = self.tasks.get_mut(id) {
                t.state = TaskState::Queued;
                t.started_at = None;
                t.retried += 1;
            }
        }
        if !ids.is_empty() {
            warn!(
                tasks = ids.len(),
                "mesh tasks this node ran when it stopped are queued again (marked retried)"
            );
        }
    }

    /// The mesh did not start: mesh workflows read back from the store run here, as local
    /// ones (nobody else can take them).
    pub(super) fn mesh_fallback_local(&mut self) {
        let now = self.clock.now_ms();
        let interrupted: Vec<String> = self
            .tasks
            .values()
            .filter(|t| t.state == TaskState::Running && !self.running.contains_key(&t.id))
            .map(|t| t.id.clone())
            .collect();
        for id in interrupted {
            let _ = self.store.mark_requeued(&id);
            if let Some(t) = self.tasks.get_mut(&id) {
                t.state = TaskState::Queued;
                t.started_at = None;
                t.retried += 1;
            }
        }
        let mut n = 0;
        for t in self.tasks.values() {
            if t.state == TaskState::Queued
                && !self.queue.contains(&t.id)
                && !self.parked.contains_key(&t.id)
            {
                let _ = self
                    .queue
                    .push(&t.id, t.priority, t.enqueued_at, t.seq, now);
                n += 1;
            }
        }
        if n > 0 {
            info!(
                tasks = n,
                "the mesh is off: mesh tasks read back from the store run on this node"
            );
        }
        self.sched.origins.clear();
        self.dispatch();
        self.dirty = true;
    }

    /// Queue every queued mesh task this node owns that is not queued yet; drop the ones it
    /// no longer owns from the local queue.
    fn mesh_requeue_mine(&mut self) {
        let Some(me) = self.sched.me.clone() else {
            return;
        };
        let now = self.clock.now_ms();
        let ids: Vec<String> = self
            .tasks
            .values()
            .filter(|t| {
                t.state == TaskState::Queued && self.sched.origins.contains_key(&t.workflow_id)
            })
            .map(|t| t.id.clone())
            .collect();
        for id in ids {
            let mine = self.sched.book.owner(&id) == Some(me.as_str())
                && !self.sched.pending.iter().any(|(c, _)| c.task == id);
            let queued = self.queue.contains(&id);
            if mine && !queued {
                if let Some(t) = self.tasks.get(&id) {
                    let _ = self
                        .queue
                        .push(&t.id, t.priority, t.enqueued_at, t.seq, now);
                }
                self.parked.remove(&id);
            } else if !mine && queued {
                let _ = self.queue.remove(&id);
            }
        }
        self.dirty = true;
    }

    /// Whether dispatch may start this task here (local tasks always; mesh tasks when this
    /// node holds the lease and has caught up).
    pub(super) fn mesh_may_start(&self, t: &TaskRow) -> bool {
        if !self.sched.is_mesh(&t.workflow_id) {
            return true;
        }
        let now = self.clock.now_ms();
        match &self.sched.me {
            Some(me) => {
                self.sched.book.owner(&t.id) == Some(me.as_str())
                    && now >= self.sched.catch_up_until
            }
            None => false,
        }
    }

    /// A mesh task started here: tell the mesh.
    pub(super) fn mesh_started(&mut self, task_id: &str) {
        let now = self.clock.now_ms();
        let Some(epoch) = self.sched.book.get(task_id).map(|l| l.owner.epoch) else {
            return;
        };
        let clock = self.sched.tick();
        self.sched.send(
            KIND_START,
            &Started {
                task: task_id.into(),
                epoch,
                clock,
            },
            now,
        );
    }

    /// A mesh task ended here. Returns whether its result is to be recorded (it won the
    /// completion), and tells the mesh. A run whose lease moved away is dropped.
    pub(super) fn mesh_finished(&mut self, task_id: &str, o: &crate::store::TaskOutcome) -> bool {
        if self.sched.lost.remove(task_id) {
            debug!(task = %task_id, "result of a run whose lease moved away dropped");
            return false;
        }
        let Some(me) = self.sched.me.clone() else {
            return true;
        };
        let now = self.clock.now_ms();
        let epoch = self
            .sched
            .book
            .get(task_id)
            .map(|l| l.owner.epoch)
            .unwrap_or(1);
        let c = Completion {
            task: task_id.into(),
            peer: me.clone(),
            epoch,
            exit_code: o.exit_code,
        };
        let applied = self.sched.book.complete(c, now);
        if let Some(l) = self.sched.book.get(task_id)
            && let Err(e) = self.store.save_lease(l)
        {
            warn!(task = %task_id, "lease not stored: {e}");
        }
        if applied != Applied::Completed {
            self.sched.duplicates += 1;
            info!(task = %task_id, "duplicate completion dropped (another peer's was recorded first)");
            return false;
        }
        let clock = self.sched.tick();
        self.sched.send(
            KIND_DONE,
            &Done {
                task: task_id.into(),
                peer: me,
                epoch,
                state: o.state,
                exit_code: o.exit_code,
                signal: o.signal,
                duration_ms: o.duration_ms,
                error: o.error.clone(),
                clock: Some(clock),
            },
            now,
        );
        true
    }

    /// The wire form of a workflow submitted here (this node is its origin).
    pub(super) fn mesh_wire(
        &self,
        id: &str,
        spec: &crate::sched::workflow::WorkflowSpec,
        now: Millis,
    ) -> WorkflowWire {
        WorkflowWire {
            id: id.into(),
            name: spec.name.clone(),
            tag: spec.tag,
            priority: spec.priority,
            created_at: now,
            origin: self.sched.me.clone().unwrap_or_default(),
            tasks: spec
                .tasks
                .iter()
                .enumerate()
                .map(|(i, t)| TaskWire {
                    id: format!("{id}.{i}"),
                    idx: i as u32,
                    spec: t.clone(),
                    priority: spec.priority,
                    state: TaskState::Queued,
                    lease: None,
                    done: None,
                })
                .collect(),
        }
    }

    /// A workflow submitted here is stored and tracked: place its tasks on the best peers
    /// and announce it, in chunks that fit the envelope.
    pub(super) fn mesh_announce(&mut self, w: WorkflowWire, rows: &[TaskRow], now: Millis) {
        self.sched.origins.insert(w.id.clone(), w.origin.clone());
        let assign = self.mesh_place(rows, now);
        let clock = self.sched.tick();
        let mut chunks: Vec<Vec<TaskWire>> = vec![vec![]];
        let mut size = 0;
        for t in w.tasks {
            let n = serde_json::to_vec(&t).map(|v| v.len()).unwrap_or(0) + 64;
            if size + n > CHUNK_BYTES && chunks.last().is_some_and(|c| !c.is_empty()) {
                chunks.push(vec![]);
                size = 0;
            }
            size += n;
            if let Some(c) = chunks.last_mut() {
                c.push(t);
            }
        }
        for tasks in chunks {
            let ids: HashSet<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
            let assign = assign
                .iter()
                .filter(|c| ids.contains(c.task.as_str()))
                .cloned()
                .collect();
            let a = Announce {
                workflow: WorkflowWire {
                    id: w.id.clone(),
                    name: w.name.clone(),
                    tag: w.tag,
                    priority: w.priority,
                    created_at: w.created_at,
                    origin: w.origin.clone(),
                    tasks,
                },
                assign,
                clock: clock.clone(),
            };
            self.sched.send(KIND_ANNOUNCE, &a, now);
        }
    }

    /// Place tasks without a lease on the best fresh peers (this node included), record the
    /// epoch-1 claims, queue this node's share, park what no peer can take. Returns the claims.
    fn mesh_place(&mut self, rows: &[TaskRow], now: Millis) -> Vec<Claim> {
        let Some(me) = self.sched.me.clone() else {
            return vec![];
        };
        self.store.begin_batch();
        let claims = self.mesh_place_in(rows, &me, now);
        if let Err(e) = self.store.end_batch() {
            warn!("leases not stored: {e}");
        }
        claims
    }

    fn mesh_place_in(&mut self, rows: &[TaskRow], me: &str, now: Millis) -> Vec<Claim> {
        let me = me.to_string();
        let mut slots = self.mesh_slots(now);
        let placed = peer_select::place(
            rows.iter()
                .map(|t| (t.id.as_str(), t.spec.requires.as_slice())),
            &mut slots,
            PlaceBy::Proximity,
        );
        let mut claims = vec![];
        for ((task, on), row) in placed.into_iter().zip(rows) {
            match on {
                Some(peer) => {
                    let c = Claim {
                        task: task.clone(),
                        peer: peer.clone(),
                        epoch: 1,
                    };
                    self.sched.book.claim(c.clone(), now);
                    if let Some(l) = self.sched.book.get(&task) {
                        let _ = self.store.save_lease(l);
                    }
                    if let Some(t) = self.tasks.get_mut(&task) {
                        t.owner = Some(peer.clone());
                    }
                    self.parked.remove(&task);
                    if peer == me {
                        let _ =
                            self.queue
                                .push(&row.id, row.priority, row.enqueued_at, row.seq, now);
                    }
                    claims.push(c);
                }
                None => {
                    let why = format!("a peer with {}", row.spec.requires.join(", "));
                    self.parked.insert(task, why);
                }
            }
        }
        self.dirty = true;
        claims
    }

    /// This node and the fresh peers as placement slots.
    fn mesh_slots(&self, now: Millis) -> Vec<Slot> {
        let me = self.sched.me.clone().unwrap_or_default();
        let rtts: HashMap<&str, f64> = match &self.mesh {
            super::MeshState::On(_, Some(v)) => v
                .peers
                .iter()
                .filter_map(|p| p.rtt_ms.map(|r| (p.peer_id.as_str(), r)))
                .collect(),
            _ => HashMap::new(),
        };
        let mut slots = vec![Slot {
            peer_id: me,
            capabilities: self.hardware.capabilities.clone(),
            running: self.running.len(),
            queued: self.queue.len(),
            // This node always queues what it can run, even while paused (max 0).
            max: self.opts.max_concurrent_tasks.max(1),
            rtt_ms: Some(0.0),
            local: true,
        }];
        for (id, p) in self.sched.fresh(now) {
            slots.push(Slot {
                peer_id: id.clone(),
                capabilities: p.capabilities.clone(),
                running: p.running as usize,
                queued: p.queued as usize,
                max: p.max as usize,
                rtt_ms: rtts.get(id.as_str()).copied(),
                local: false,
            });
        }
        slots
    }

    /// Cancel a mesh workflow everywhere (after the local cancel).
    pub(super) fn mesh_cancelled(&mut self, workflow_id: &str) {
        if !self.sched.is_mesh(workflow_id) {
            return;
        }
        let now = self.clock.now_ms();
        let clock = self.sched.tick();
        self.sched.send(
            KIND_CANCEL,
            &Cancel {
                workflow_id: workflow_id.into(),
                clock,
            },
            now,
        );
    }

    /// Handle an input from the network side.
    pub(super) fn mesh_input(&mut self, input: SchedIn) {
        if !self.sched.active() {
            return;
        }
        let now = self.clock.now_ms();
        match input {
            SchedIn::Gossip(from, msg) => {
                // One commit for everything a message changes (an announcement of 200 tasks
                // is 200 leases).
                self.store.begin_batch();
                self.mesh_gossip(from, msg, now);
                if let Err(e) = self.store.end_batch() {
                    warn!("scheduler state not stored: {e}");
                    self.store_error = Some(e.to_string());
                }
            }
            SchedIn::Synced(from, answer) => {
                self.sched.syncing.remove(&from.to_string());
                if let Err(why) = answer
                    .validate()
                    .and_then(|_| self.mesh_clock_honest(&answer.clock))
                {
                    warn!(peer = %from, "invalid sync answer: {why}");
                    self.mesh_report(from, why);
                    return;
                }
                self.mesh_apply_sync(&answer, now);
                self.sched.clock.merge(&answer.clock);
                self.sched.clock_dirty = true;
                self.sched.catch_up_until = 0;
                debug!(peer = %from, workflows = answer.workflows.len(), "synced with peer");
            }
            SchedIn::SyncFailed(from, why) => {
                self.sched.syncing.remove(&from.to_string());
                debug!(peer = %from, "sync failed: {why}");
            }
            SchedIn::Serve(reply) => {
                // Unfinished workflows first, then the newest finished; halve until the
                // answer fits a response (4 MiB).
                let mut limit = mesh::MAX_SYNC_WORKFLOWS;
                let workflows = loop {
                    let w = self.store.mesh_export(limit).unwrap_or_else(|e| {
                        warn!("cannot export mesh state: {e}");
                        vec![]
                    });
                    let size = serde_json::to_vec(&w)
                        .map(|v| v.len())
                        .unwrap_or(usize::MAX);
                    if size < crate::p2p::protocol::MAX_RESPONSE_BYTES - 64 * 1024 || limit <= 1 {
                        break w;
                    }
                    limit /= 2;
                };
                let _ = reply.send(SyncAnswer {
                    workflows,
                    clock: self.sched.clock.clone(),
                });
            }
            SchedIn::ServeOutput(task, reply) => {
                let (output, truncated) = self
                    .store
                    .task_output(&task)
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                let _ = reply.send(mesh::OutputAnswer {
                    task,
                    output,
                    truncated,
                });
                return;
            }
            SchedIn::ServeSteal(thief, req, reply) => {
                let a = self.mesh_serve_steal(thief, req);
                let _ = reply.send(a);
            }
            SchedIn::Stolen(victim, got) => {
                self.sched.stealing_from.remove(&victim.to_string());
                match got {
                    Ok(a) => {
                        let sender = victim.to_string();
                        if a.claims.len() > mesh::MAX_CLAIMS {
                            self.mesh_report(victim, "steal answer over the claim limit".into());
                        } else {
                            if !a.claims.is_empty() {
                                info!(peer = %sender, tasks = a.claims.len(), "took queued tasks from a busy peer");
                            }
                            for c in a.claims {
                                self.mesh_on_claim(victim, &sender, c, now, false);
                            }
                        }
                    }
                    Err(e) => debug!(peer = %victim, "steal request failed: {e}"),
                }
            }
            SchedIn::PeerUp(peer) => self.mesh_sync_with(peer, now, true),
            SchedIn::Invalid(from, why) => {
                warn!(peer = %from, "invalid scheduler message (peer penalised): {why}");
            }
        }
        self.dispatch();
        self.dirty = true;
    }

    /// The peer to ask for a task's output: the mesh task ran (or runs) on another peer.
    pub(super) fn mesh_output_peer(&self, task_id: &str) -> Option<(PeerId, NodeHandle)> {
        let me = self.sched.me.as_deref()?;
        let node = self.sched.node.clone()?;
        let t = self.store.task(task_id).ok()??;
        if !self.sched.is_mesh(&t.workflow_id)
            && self.store.mesh_origin(&t.workflow_id).ok()?.is_none()
        {
            return None;
        }
        let owner = t.owner?;
        if owner == me || t.state == TaskState::Queued {
            return None;
        }
        Some((owner.parse().ok()?, node))
    }

    /// A peer may count a few more of this node's events than this node (events sent just
    /// before a crash, whose clock write was lost: the merge heals it), but not many more: a
    /// clock inflated past [`MAX_OWN_LAG`] would push this node's counter toward overflow.
    fn mesh_clock_honest(&self, c: &MerkleClock) -> Result<(), String> {
        let me = self.sched.clock.node();
        let (theirs, mine) = (c.get(me), self.sched.clock.get(me));
        if theirs > mine.saturating_add(MAX_OWN_LAG) {
            return Err(format!(
                "clock of {} counts {theirs} events of this node, which has made {mine}",
                c.node()
            ));
        }
        Ok(())
    }

    fn mesh_report(&self, peer: PeerId, why: String) {
        if let Some(node) = self.sched.node.clone() {
            tokio::spawn(async move {
                let _ = node.report(peer, &why).await;
            });
        }
    }

    /// Ask `peer` for its state (at most one request in flight per peer, and not more than
    /// once a second unless `force`).
    fn mesh_sync_with(&mut self, peer: PeerId, now: Millis, force: bool) {
        let key = peer.to_string();
        if self.sched.syncing.contains(&key) {
            return;
        }
        if !force
            && self
                .sched
                .last_sync
                .get(&key)
                .is_some_and(|t| now - t < 1_000)
        {
            return;
        }
        let Some(node) = self.sched.node.clone() else {
            return;
        };
        self.sched.syncing.insert(key.clone());
        self.sched.last_sync.insert(key, now);
        let req = Envelope::new(
            KIND_SYNC,
            now,
            &SyncRequest {
                clock: self.sched.clock.clone(),
            },
        )
        .and_then(|e| e.encode());
        let tx = self.self_tx.clone();
        tokio::spawn(async move {
            let input = match req {
                Err(e) => SchedIn::SyncFailed(peer, e.to_string()),
                Ok(bytes) => match node.request(peer, bytes).await {
                    Err(e) => SchedIn::SyncFailed(peer, e.to_string()),
                    Ok(answer) => match crate::p2p::router::read_answer(
                        &answer,
                        crate::p2p::protocol::MAX_RESPONSE_BYTES,
                    ) {
                        Ok(env) if env.kind == KIND_SYNC => match env.body_as::<SyncAnswer>() {
                            Ok(a) => SchedIn::Synced(peer, Box::new(a)),
                            Err(e) => SchedIn::SyncFailed(peer, e.to_string()),
                        },
                        Ok(env) => {
                            SchedIn::SyncFailed(peer, format!("answer of kind {}", env.kind))
                        }
                        Err(e) => SchedIn::SyncFailed(
                            peer,
                            e.map(|b| b.message)
                                .unwrap_or_else(|| "malformed answer".into()),
                        ),
                    },
                },
            };
            let _ = tx.send(Msg::Sched(input)).await;
        });
    }

    fn mesh_gossip(&mut self, from: PeerId, msg: mesh::Msg, now: Millis) {
        let sender = from.to_string();
        if Some(&sender) == self.sched.me.as_ref() {
            return;
        }
        // Merge the clock only for causally ready events; otherwise pull a sync.
        let mut needs_sync = false;
        // A claim can be judged a lie only if this node had seen everything its sender had.
        let mut judged = true;
        if let Some(c) = msg.clock() {
            if c.node() != sender {
                self.mesh_report(
                    from,
                    format!("clock owned by {} in a message from {sender}", c.node()),
                );
                return;
            }
            match &msg {
                mesh::Msg::Heartbeat(_) => {
                    if let Err(why) = self.mesh_clock_honest(c) {
                        self.mesh_report(from, why);
                        return;
                    }
                    needs_sync = mesh::behind(&self.sched.clock, c);
                }
                _ => {
                    if mesh::ready(&self.sched.clock, c, &sender) {
                        self.sched.clock.merge(c);
                        self.sched.clock_dirty = true;
                    } else if mesh::behind(&self.sched.clock, c) {
                        needs_sync = true;
                        judged = false;
                    }
                }
            }
        }
        match msg {
            mesh::Msg::Heartbeat(h) => {
                let known = self.sched.peers.contains_key(&sender);
                self.sched.peers.insert(
                    sender.clone(),
                    PeerLoad {
                        name: h.name,
                        capabilities: h.capabilities,
                        running: h.running,
                        max: h.max,
                        queued: h.queued,
                        last_heard: now,
                    },
                );
                self.sched.book.renew_peer(&sender, now);
                if self.sched.dead.remove(&sender) {
                    info!(peer = %sender, "peer heard again after the heartbeat timeout");
                }
                if !known {
                    info!(peer = %sender, "mesh peer heard (first heartbeat)");
                    // A new peer may have the labels a parked task waits for.
                    self.sched.next_beat = now;
                }
            }
            mesh::Msg::Announce(a) => self.mesh_on_announce(&sender, a, now),
            mesh::Msg::Claim(b) => {
                for c in b.claims {
                    self.mesh_on_claim(from, &sender, c, now, judged);
                }
            }
            mesh::Msg::Start(s) => {
                let ok = self.sched.book.get(&s.task).is_some_and(|l| {
                    l.owner.peer == sender && l.owner.epoch == s.epoch && l.done.is_none()
                });
                if ok {
                    self.sched.book.renew_peer(&sender, now);
                    if let Err(e) = self.store.mark_remote_started(&s.task, &sender, now) {
                        warn!(task = %s.task, "remote start not stored: {e}");
                    }
                    if let Some(t) = self.tasks.get_mut(&s.task)
                        && t.state == TaskState::Queued
                    {
                        t.state = TaskState::Running;
                        t.started_at = Some(now);
                        t.attempts += 1;
                        t.owner = Some(sender.clone());
                        let wf = t.workflow_id.clone();
                        let _ = self.refresh_workflow(&wf, now);
                    }
                } else {
                    needs_sync = true;
                }
            }
            mesh::Msg::Done(d) => {
                if d.peer != sender {
                    self.mesh_report(from, format!("{sender} reported {}'s completion", d.peer));
                    return;
                }
                self.mesh_on_done(&d, now);
            }
            mesh::Msg::Cancel(c) => {
                if self.sched.is_mesh(&c.workflow_id) {
                    info!(workflow = %c.workflow_id, peer = %sender, "workflow cancelled by a peer");
                    if let Err(e) = self.cancel(&c.workflow_id, now) {
                        warn!(workflow = %c.workflow_id, "peer's cancel not applied: {e}");
                    }
                }
            }
        }
        if needs_sync {
            self.mesh_sync_with(from, now, false);
        }
    }

    fn mesh_on_announce(&mut self, sender: &str, a: Announce, now: Millis) {
        if a.workflow.origin != sender {
            if let Ok(p) = sender.parse() {
                self.mesh_report(
                    p,
                    format!("announced a workflow of origin {}", a.workflow.origin),
                );
            }
            return;
        }
        if !matches!(
            a.workflow.tag,
            WorkflowTag::P2pEligible | WorkflowTag::P2pOnly
        ) {
            debug!(workflow = %a.workflow.id, "announcement of a non-mesh tag ignored");
            return;
        }
        self.mesh_store_workflow(&a.workflow, now);
        for c in a.assign {
            if let Ok(p) = sender.parse() {
                self.mesh_on_claim(p, sender, c, now, false);
            }
        }
        self.mesh_touch(&a.workflow.id, now);
    }

    /// Store a workflow heard from a peer and track it in memory if it is not finished.
    fn mesh_store_workflow(&mut self, w: &WorkflowWire, now: Millis) {
        match self.store.insert_mesh_workflow(w, "mesh", now) {
            Ok(rows) => {
                if !rows.is_empty() {
                    info!(workflow = %w.id, origin = %w.origin, tasks = rows.len(), "mesh workflow heard");
                }
                self.sched.origins.insert(w.id.clone(), w.origin.clone());
                if let Some(wf) = self.workflows.get_mut(&w.id) {
                    for r in rows {
                        wf.tasks.push(r.id.clone());
                        self.tasks.insert(r.id.clone(), r);
                    }
                } else if !rows.is_empty() {
                    match self.store.workflow(&w.id) {
                        Ok(Some(row)) => {
                            let ids = rows.iter().map(|r| r.id.clone()).collect();
                            for r in rows {
                                self.tasks.insert(r.id.clone(), r);
                            }
                            self.workflows
                                .insert(w.id.clone(), ActiveWorkflow { row, tasks: ids });
                            let _ = self.events.send(super::Event::WorkflowSubmitted {
                                workflow_id: w.id.clone(),
                                name: w.name.clone(),
                                source: "mesh",
                            });
                        }
                        Ok(None) => {}
                        Err(e) => warn!(workflow = %w.id, "mesh workflow not read back: {e}"),
                    }
                }
            }
            Err(e) => warn!(workflow = %w.id, "mesh workflow not stored: {e}"),
        }
    }

    /// Apply a claim from `sender`. `judged`: this node had seen every event the sender had
    /// when it sent the claim, so a claim the rules forbid is a lie (penalised); otherwise it
    /// may only look wrong for lack of news, and is dropped until a sync brings them.
    fn mesh_on_claim(&mut self, from: PeerId, sender: &str, c: Claim, now: Millis, judged: bool) {
        let Some(me) = self.sched.me.clone() else {
            return;
        };
        let origin = self
            .sched
            .origins
            .get(c.task.rsplit_once('.').map(|x| x.0).unwrap_or(""))
            .cloned();
        match mesh::check_claim(sender, &c, origin.as_deref(), &self.sched.book) {
            Verdict::Apply => {}
            Verdict::Ignore => return,
            Verdict::Penalise(why) if !judged => {
                debug!(peer = %sender, "claim dropped until a sync: {why}");
                return;
            }
            Verdict::Penalise(why) => {
                warn!(peer = %sender, "invalid claim (peer penalised): {why}");
                self.mesh_report(from, why);
                return;
            }
        }
        let before = self.sched.book.owner(&c.task).map(str::to_string);
        let task = c.task.clone();
        let applied = self.sched.book.claim(c, now);
        if applied != Applied::NewOwner {
            return;
        }
        self.mesh_owner_changed(&task, before.as_deref(), &me, now);
    }

    /// Bookkeeping after `task` got a new owner.
    fn mesh_owner_changed(&mut self, task: &str, before: Option<&str>, me: &str, now: Millis) {
        let Some(l) = self.sched.book.get(task).cloned() else {
            return;
        };
        if let Err(e) = self.store.save_lease(&l) {
            warn!(task = %task, "lease not stored: {e}");
        }
        let new = l.owner.peer.as_str();
        if before == Some(me) && new != me {
            // Lost it: drop it from the queue, or stop the run.
            let _ = self.queue.remove(task);
            self.sched.pending.retain(|(c, _)| c.task != task);
            if let Some(h) = self.running.get_mut(task) {
                info!(task = %task, new_owner = %new, "lease moved to another peer: stopping the local run");
                h.cancel();
                self.sched.lost.insert(task.to_string());
            }
        }
        if let Some(t) = self.tasks.get_mut(task)
            && !t.state.is_terminal()
        {
            t.owner = Some(new.to_string());
            if t.state == TaskState::Running
                && before != Some(new)
                && !self.running.contains_key(task)
            {
                // The old owner's run no longer counts: back to the queue until the new owner
                // starts it.
                t.state = TaskState::Queued;
                t.started_at = None;
                let _ = self.store.mark_requeued(task);
            }
            if new == me && t.state == TaskState::Queued && !self.queue.contains(task) {
                let _ = self
                    .queue
                    .push(&t.id, t.priority, t.enqueued_at, t.seq, now);
                self.parked.remove(task);
            }
        }
        self.dirty = true;
    }

    fn mesh_on_done(&mut self, d: &Done, now: Millis) {
        let c = Completion {
            task: d.task.clone(),
            peer: d.peer.clone(),
            epoch: d.epoch,
            exit_code: d.exit_code,
        };
        let applied = self.sched.book.complete(c, now);
        if let Some(l) = self.sched.book.get(&d.task).cloned() {
            let _ = self.store.save_lease(&l);
        }
        if applied != Applied::Completed {
            if self.sched.book.get(&d.task).is_some_and(|l| {
                l.done.as_ref()
                    != Some(&Completion {
                        task: d.task.clone(),
                        peer: d.peer.clone(),
                        epoch: d.epoch,
                        exit_code: d.exit_code,
                    })
            }) {
                self.sched.duplicates += 1;
                info!(task = %d.task, peer = %d.peer, "duplicate completion dropped");
            }
            return;
        }
        if let Err(e) = self.store.mark_remote_done(d, now) {
            warn!(task = %d.task, "peer's result not stored: {e}");
        }
        let _ = self.queue.remove(&d.task);
        self.parked.remove(&d.task);
        if let Some(h) = self.running.get_mut(&d.task) {
            info!(task = %d.task, peer = %d.peer, "another peer completed this task first: stopping the local run");
            h.cancel();
            self.sched.lost.insert(d.task.clone());
        }
        if let Some(t) = self.tasks.get_mut(&d.task) {
            t.state = d.state;
            t.exit_code = d.exit_code;
            t.signal = d.signal;
            t.duration_ms = Some(d.duration_ms);
            t.finished_at = Some(now);
            t.error = d.error.clone();
            t.owner = Some(d.peer.clone());
            let wf = t.workflow_id.clone();
            let _ = self.events.send(super::Event::TaskFinished {
                task_id: d.task.clone(),
                state: d.state,
            });
            if let Err(e) = self.refresh_workflow(&wf, now) {
                warn!(workflow = %wf, "workflow status not updated: {e}");
            }
        }
        self.dirty = true;
    }

    /// Apply a peer's state: new workflows, leases, results, cancellations.
    fn mesh_apply_sync(&mut self, a: &SyncAnswer, now: Millis) {
        let me = self.sched.me.clone().unwrap_or_default();
        for w in &a.workflows {
            if !matches!(w.tag, WorkflowTag::P2pEligible | WorkflowTag::P2pOnly) {
                continue;
            }
            self.mesh_store_workflow(w, now);
            for t in &w.tasks {
                if let Some(c) = &t.lease {
                    let before = self.sched.book.owner(&t.id).map(str::to_string);
                    if self.sched.book.claim(c.clone(), now) == Applied::NewOwner {
                        self.mesh_owner_changed(&t.id, before.as_deref(), &me, now);
                    }
                }
                if let Some(d) = &t.done {
                    self.mesh_on_done(d, now);
                } else if t.state == TaskState::Cancelled {
                    let local = self.tasks.get(&t.id).map(|r| r.state);
                    if local == Some(TaskState::Queued) {
                        let _ = self.cancel(&w.id, now);
                    }
                } else if t.state == TaskState::Running
                    && let Some(c) = &t.lease
                    && c.peer != me
                    && self
                        .tasks
                        .get(&t.id)
                        .is_some_and(|r| r.state == TaskState::Queued)
                    && self.sched.book.owner(&t.id) == Some(c.peer.as_str())
                {
                    let _ = self.store.mark_remote_started(&t.id, &c.peer, now);
                    if let Some(r) = self.tasks.get_mut(&t.id) {
                        r.state = TaskState::Running;
                        r.started_at = Some(now);
                        r.owner = Some(c.peer.clone());
                    }
                }
            }
            self.mesh_touch(&w.id, now);
        }
        self.mesh_requeue_mine();
    }

    /// Refresh a mesh workflow's status; finish it in the store if it is done.
    fn mesh_touch(&mut self, wf: &str, now: Millis) {
        if self.workflows.contains_key(wf) {
            if let Err(e) = self.refresh_workflow(wf, now) {
                warn!(workflow = %wf, "workflow status not updated: {e}");
            }
            return;
        }
        // Finished before this node heard of it: set its stored status from its tasks.
        if let Ok(tasks) = self.store.tasks_of(wf) {
            let status = workflow_status(tasks.iter().map(|t| t.state));
            if let Ok(Some(row)) = self.store.workflow(wf)
                && row.status != status
            {
                let _ = self.store.set_workflow_status(wf, status, now);
            }
            if !status.is_terminal() && status != WorkflowStatus::Completed {
                // Known but not tracked (e.g. read back after a restart): track it.
                if let Ok(Some(row)) = self.store.workflow(wf) {
                    let ids = tasks.iter().map(|t| t.id.clone()).collect();
                    for t in tasks {
                        self.tasks.insert(t.id.clone(), t);
                    }
                    self.workflows
                        .insert(wf.to_string(), ActiveWorkflow { row, tasks: ids });
                }
            }
        }
    }

    /// The 100 ms tick: settle self-claims; each heartbeat interval, heartbeat, take over,
    /// steal, place parked tasks, persist the clock, sync periodically.
    pub(super) fn mesh_tick(&mut self) {
        let Some(me) = self.sched.me.clone() else {
            return;
        };
        let now = self.clock.now_ms();
        // Settled self-claims: still the owner after SETTLE ms? Then queue.
        let (ready, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.sched.pending)
            .into_iter()
            .partition(|(_, at)| now - *at >= SETTLE);
        self.sched.pending = wait;
        let mut changed = false;
        for (c, _) in ready {
            if self.sched.book.owner(&c.task) == Some(me.as_str())
                && let Some(t) = self.tasks.get(&c.task)
                && t.state == TaskState::Queued
                && !self.queue.contains(&c.task)
            {
                let _ = self
                    .queue
                    .push(&t.id, t.priority, t.enqueued_at, t.seq, now);
                changed = true;
            }
        }
        if now >= self.sched.next_beat {
            self.sched.next_beat = now + self.sched.beat.as_millis() as Millis;
            self.mesh_beat(&me, now);
            changed = true;
        }
        if changed {
            self.dispatch();
            self.dirty = true;
        }
    }

    fn mesh_beat(&mut self, me: &str, now: Millis) {
        let hb = Heartbeat {
            name: self.opts.node_name.clone(),
            capabilities: self.hardware.capabilities.clone(),
            running: self.running.len() as u32,
            max: self.opts.max_concurrent_tasks as u32,
            queued: self.queue.len() as u32,
            clock: self.sched.clock.clone(),
        };
        self.sched.send(KIND_HEARTBEAT, &hb, now);
        // Peers silent past the timeout.
        let dead: Vec<String> = self
            .sched
            .peers
            .iter()
            .filter(|(_, p)| now - p.last_heard > self.sched.timeout)
            .map(|(k, _)| k.clone())
            .collect();
        for d in &dead {
            if self.sched.dead.insert(d.clone()) {
                let held = self.sched.book.owned_by(d).count();
                warn!(peer = %d, timeout_ms = self.sched.timeout, held, "peer silent past the heartbeat timeout: its tasks go to live peers");
            }
        }
        // Takeovers and steals.
        let mut live: Vec<LivePeer> = self
            .sched
            .live(now)
            .map(|(id, p)| LivePeer {
                peer: id.clone(),
                capabilities: p.capabilities.clone(),
                running: p.running,
                max: p.max,
                queued: p.queued,
            })
            .collect();
        live.push(LivePeer {
            peer: me.to_string(),
            capabilities: self.hardware.capabilities.clone(),
            running: self.running.len() as u32,
            max: self.opts.max_concurrent_tasks as u32,
            queued: self.queue.len() as u32,
        });
        let infos: BTreeMap<String, TaskInfo> = self
            .tasks
            .values()
            .filter(|t| self.sched.is_mesh(&t.workflow_id))
            .map(|t| (t.id.clone(), info_of(t)))
            .collect();
        let claims = mesh::takeovers(&self.sched.book, me, &live, &infos, now, self.sched.timeout);
        if self.sched.stealing
            && self.queue.is_empty()
            && self.sched.pending.is_empty()
            && self.sched.stealing_from.is_empty()
        {
            let free = self
                .opts
                .max_concurrent_tasks
                .saturating_sub(self.running.len());
            for (victim, n) in mesh::steal_targets(me, free, &live) {
                self.mesh_steal_from(&victim, n, now);
            }
        }
        if !claims.is_empty() {
            for c in &claims {
                let before = self.sched.book.owner(&c.task).map(str::to_string);
                info!(task = %c.task, from = ?before, epoch = c.epoch, "taking over a silent peer's task");
                if self.sched.book.claim(c.clone(), now) == Applied::NewOwner {
                    self.mesh_owner_changed(&c.task, before.as_deref(), me, now);
                    // Not queued until it settles.
                    let _ = self.queue.remove(&c.task);
                    self.sched.pending.push((c.clone(), now));
                }
            }
            let clock = self.sched.tick();
            self.sched
                .send(KIND_CLAIM, &ClaimBatch { claims, clock }, now);
        }
        // Tasks no peer could take yet, of workflows this node assigns for.
        let live_ids: Vec<&str> = live.iter().map(|p| p.peer.as_str()).collect();
        let unplaced: Vec<TaskRow> = self
            .tasks
            .values()
            .filter(|t| t.state == TaskState::Queued && self.sched.book.get(&t.id).is_none())
            .filter(|t| match self.sched.origins.get(&t.workflow_id) {
                Some(o) if o == me => true,
                Some(o) if !live_ids.contains(&o.as_str()) => {
                    crate::sched::lease::rendezvous(&t.workflow_id, live_ids.iter().copied())
                        == Some(me)
                }
                _ => false,
            })
            .cloned()
            .collect();
        if !unplaced.is_empty() {
            let mut rows = unplaced;
            rows.sort_by_key(|t| (t.priority, t.seq));
            let assign = self.mesh_place(&rows, now);
            if !assign.is_empty() {
                let clock = self.sched.tick();
                self.sched.send(
                    KIND_CLAIM,
                    &ClaimBatch {
                        claims: assign,
                        clock,
                    },
                    now,
                );
            }
        }
        // Anti-entropy with one peer every merkle_sync_interval.
        if now - self.sched.last_full_sync >= self.sched.merkle_sync {
            self.sched.last_full_sync = now;
            let pick = self
                .sched
                .live(now)
                .map(|(k, _)| k.clone())
                .min_by_key(|k| crate::sched::lease::weight(&now.to_string(), k));
            if let Some(p) = pick.and_then(|p| p.parse().ok()) {
                self.mesh_sync_with(p, now, false);
            }
        }
    }

    /// Store the clock if it moved (called after every engine step, so a restart resumes
    /// from the last counter it sent).
    pub(super) fn mesh_flush_clock(&mut self) {
        if !self.sched.clock_dirty {
            return;
        }
        match serde_json::to_string(&self.sched.clock) {
            Ok(j) => match self.store.set_mesh_meta("clock", &j) {
                Ok(()) => self.sched.clock_dirty = false,
                Err(e) => warn!("clock not stored: {e}"),
            },
            Err(e) => warn!("clock not encoded: {e}"),
        }
    }

    /// Ask `victim` for up to `n` of its queued tasks (a steal request; the owner hands off).
    fn mesh_steal_from(&mut self, victim: &str, n: usize, now: Millis) {
        let (Some(node), Ok(peer)) = (self.sched.node.clone(), victim.parse::<PeerId>()) else {
            return;
        };
        self.sched.stealing_from.insert(victim.to_string());
        let req = Envelope::new(
            mesh::KIND_STEAL,
            now,
            &mesh::StealRequest {
                max: n as u32,
                capabilities: self.hardware.capabilities.clone(),
            },
        )
        .and_then(|e| e.encode());
        let tx = self.self_tx.clone();
        tokio::spawn(async move {
            let got = match req {
                Err(e) => Err(e.to_string()),
                Ok(bytes) => match node.request(peer, bytes).await {
                    Err(e) => Err(e.to_string()),
                    Ok(a) => match crate::p2p::router::read_answer(
                        &a,
                        crate::p2p::protocol::MAX_RESPONSE_BYTES,
                    ) {
                        Ok(env) => env
                            .body_as::<mesh::StealAnswer>()
                            .map_err(|e| e.to_string()),
                        Err(e) => Err(e
                            .map(|b| b.message)
                            .unwrap_or_else(|| "malformed answer".into())),
                    },
                },
            };
            let _ = tx.send(Msg::Sched(SchedIn::Stolen(peer, got))).await;
        });
    }

    /// A thief asks this node for queued work: hand off the least urgent queued mesh tasks
    /// it can run, at `epoch + 1`, and tell the mesh.
    fn mesh_serve_steal(&mut self, thief: PeerId, req: mesh::StealRequest) -> mesh::StealAnswer {
        let Some(me) = self.sched.me.clone() else {
            return mesh::StealAnswer { claims: vec![] };
        };
        let now = self.clock.now_ms();
        let thief_id = thief.to_string();
        let caps: Vec<String> = req
            .capabilities
            .into_iter()
            .take(mesh::MAX_LABELS)
            .collect();
        let queued: Vec<(String, Vec<String>)> = self
            .queue
            .ordered()
            .into_iter()
            .filter_map(|(e, _)| self.tasks.get(&e.task_id))
            .filter(|t| self.sched.is_mesh(&t.workflow_id) && self.sched.owns(&t.id))
            .map(|t| (t.id.clone(), t.spec.requires.clone()))
            .collect();
        let view: Vec<(&str, &[String])> = queued
            .iter()
            .map(|(t, r)| (t.as_str(), r.as_slice()))
            .collect();
        let give: Vec<String> = mesh::give_away(&view, &caps, req.max as usize)
            .into_iter()
            .map(str::to_string)
            .collect();
        let mut claims = vec![];
        for task in give {
            let Some(epoch) = self.sched.book.get(&task).map(|l| l.owner.epoch) else {
                continue;
            };
            let c = Claim {
                task: task.clone(),
                peer: thief_id.clone(),
                epoch: epoch + 1,
            };
            if self.sched.book.claim(c.clone(), now) == Applied::NewOwner {
                self.mesh_owner_changed(&task, Some(&me), &me, now);
                claims.push(c);
            }
        }
        if !claims.is_empty() {
            info!(thief = %thief_id, tasks = claims.len(), "queued tasks handed to an idle peer");
            let clock = self.sched.tick();
            self.sched.send(
                KIND_CLAIM,
                &ClaimBatch {
                    claims: claims.clone(),
                    clock,
                },
                now,
            );
        }
        mesh::StealAnswer { claims }
    }

    /// Hand this node's queued mesh tasks to better peers by `strategy`. Returns the moves
    /// `(task, from, to)`.
    pub(super) fn mesh_rebalance(&mut self, by: PlaceBy) -> Vec<(String, String, String)> {
        let Some(me) = self.sched.me.clone() else {
            return vec![];
        };
        let now = self.clock.now_ms();
        let mine: Vec<TaskRow> = self
            .queue
            .ordered()
            .into_iter()
            .filter_map(|(e, _)| self.tasks.get(&e.task_id))
            .filter(|t| self.sched.is_mesh(&t.workflow_id))
            .cloned()
            .collect();
        if mine.is_empty() {
            return vec![];
        }
        let mut slots = self.mesh_slots(now);
        slots[0].queued = slots[0].queued.saturating_sub(mine.len());
        let placed = peer_select::place(
            mine.iter()
                .map(|t| (t.id.as_str(), t.spec.requires.as_slice())),
            &mut slots,
            by,
        );
        let mut moves = vec![];
        let mut claims = vec![];
        for (task, to) in placed {
            let Some(to) = to else { continue };
            if to == me {
                continue;
            }
            let Some(epoch) = self.sched.book.get(&task).map(|l| l.owner.epoch) else {
                continue;
            };
            let c = Claim {
                task: task.clone(),
                peer: to.clone(),
                epoch: epoch + 1,
            };
            if self.sched.book.claim(c.clone(), now) == Applied::NewOwner {
                self.mesh_owner_changed(&task, Some(&me), &me, now);
                claims.push(c);
                moves.push((task, me.clone(), to));
            }
        }
        if !claims.is_empty() {
            info!(moved = claims.len(), strategy = ?by, "rebalanced queued mesh tasks");
            let clock = self.sched.tick();
            self.sched
                .send(KIND_CLAIM, &ClaimBatch { claims, clock }, now);
        }
        moves
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p2p::{GossipMessage, Validation};

    fn verdict(data: &[u8], from: PeerId) -> Validation {
        let v = gossip_validator(crate::p2p::envelope_validator());
        v(&GossipMessage {
            topic: TOPIC,
            from: Some(from),
            via: from,
            data,
        })
    }

    #[test]
    fn validator_rejects_garbage_forged_clocks_and_accepts_heartbeats() {
        let me = PeerId::random();
        let hb = |owner: String| {
            Envelope::new(
                KIND_HEARTBEAT,
                1,
                &Heartbeat {
                    name: "n".into(),
                    capabilities: vec![],
                    running: 0,
                    max: 2,
                    queued: 0,
                    clock: MerkleClock::new(owner),
                },
            )
            .unwrap()
            .encode()
            .unwrap()
        };
        assert_eq!(verdict(&hb(me.to_string()), me), Validation::Accept);
        // Someone else's clock: a forgery.
        assert_eq!(
            verdict(&hb(PeerId::random().to_string()), me),
            Validation::Reject
        );
        assert_eq!(verdict(b"\x01{not json", me), Validation::Reject);
        // A valid envelope whose body is not a scheduler message.
        let e = Envelope::new(KIND_CLAIM, 1, &serde_json::json!({"claims": "all of them"}))
            .unwrap()
            .encode()
            .unwrap();
        assert_eq!(verdict(&e, me), Validation::Reject);
    }

    #[test]
    fn heartbeat_interval_follows_the_timeout() {
        let mut c = crate::config::P2pConfig {
            heartbeat_timeout: Duration::from_secs(120),
            ..Default::default()
        };
        assert_eq!(MeshSched::new(&c).beat, Duration::from_secs(5));
        c.heartbeat_timeout = Duration::from_secs(4);
        assert_eq!(MeshSched::new(&c).beat, Duration::from_secs(1));
        c.heartbeat_timeout = Duration::from_millis(400);
        assert_eq!(MeshSched::new(&c).beat, Duration::from_millis(250));
    }
}
