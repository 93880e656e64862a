//! The mesh scheduler's messages and rules (pure): what nodes gossip to share one queue, and
//! the decisions every node takes from what it has heard. The engine
//! (`crate::engine::meshsched`) sends and receives; nothing here does I/O or reads a clock.
//!
//! # Messages
//! Each is the `body` of a [`crate::p2p::protocol::Envelope`] on the gossipsub topic
//! [`TOPIC`], with the envelope `kind` naming it:
//!
//! | kind | body | sent when |
//! |---|---|---|
//! | [`KIND_HEARTBEAT`] | [`Heartbeat`] | every heartbeat interval: labels, load, clock |
//! | [`KIND_ANNOUNCE`] | [`Announce`] | a `p2p-eligible`/`p2p-only` workflow is submitted |
//! | [`KIND_CLAIM`] | [`ClaimBatch`] | tasks are assigned, taken over, stolen or handed off |
//! | [`KIND_START`] | [`Started`] | an owner starts a task |
//! | [`KIND_DONE`] | [`Done`] | a task finished |
//! | [`KIND_CANCEL`] | [`Cancel`] | a workflow is cancelled |
//!
//! [`KIND_SYNC`] is a request-response exchange ([`SyncRequest`] → [`SyncAnswer`]): the
//! whole recent state, for a node that restarted, rejoined after a partition, or whose clock
//! shows it missed messages.
//!
//! # Ownership
//! A task's owner is its lease ([`super::lease`]): the greatest `(epoch, rendezvous weight,
//! peer)` claim. The workflow's origin assigns epoch 1 (one assigner, so no contest in the
//! common case); later epochs come from takeovers of silent peers ([`takeovers`]), stealing
//! (the owner hands off what a thief asks for: [`steal_targets`], [`give_away`]) and hand-offs
//! by the current owner (rebalancing). [`check_claim`] says which
//! claims a sender may make.
//!
//! # Clock
//! Every event message carries its sender's [`MerkleClock`] after the sender ticked for it.
//! A receiver merges that clock only when the message is *causally ready* ([`ready`]: the
//! next event of its sender, depending on nothing the receiver lacks, as in causal broadcast,
//! Birman et al. 1991); otherwise it applies the (idempotent) event, keeps its clock, and
//! pulls a [`SyncAnswer`], whose clock it merges after applying the state. So equal clocks
//! mean the same events were seen; a heartbeat whose clock is not `<=` the receiver's is how
//! a node learns it missed something.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::lease::{Claim, LeaseBook};
use super::merkle_clock::{Causality, MerkleClock};
use super::workflow::{TaskSpec, TaskState, WorkflowTag};
use crate::clock::Millis;

/// Gossipsub topic of the mesh scheduler.
pub const TOPIC: &str = "flotilla/sched/1";
/// Envelope kind of a [`Heartbeat`].
pub const KIND_HEARTBEAT: &str = "sched.heartbeat";
/// Envelope kind of an [`Announce`].
pub const KIND_ANNOUNCE: &str = "sched.announce";
/// Envelope kind of a [`ClaimBatch`].
pub const KIND_CLAIM: &str = "sched.claim";
/// Envelope kind of a [`Started`].
pub const KIND_START: &str = "sched.start";
/// Envelope kind of a [`Done`].
pub const KIND_DONE: &str = "sched.done";
/// Envelope kind of a [`Cancel`].
pub const KIND_CANCEL: &str = "sched.cancel";
/// Request kind of a [`SyncRequest`] (request-response, not gossip).
pub const KIND_SYNC: &str = "sched.sync";
/// Request kind of a [`StealRequest`]: an idle peer asks a full one for queued work.
pub const KIND_STEAL: &str = "sched.steal";
/// Request kind of an [`OutputRequest`]: a task's output tail from the peer that ran it.
pub const KIND_OUTPUT: &str = "sched.output";

/// Most capability labels a heartbeat may carry.
pub const MAX_LABELS: usize = 64;
/// Most claims in one [`ClaimBatch`].
pub const MAX_CLAIMS: usize = 4096;
/// Most workflows in one [`SyncAnswer`].
pub const MAX_SYNC_WORKFLOWS: usize = 500;
/// Longest peer ID, node name, label or id accepted, bytes.
pub const MAX_ID: usize = 128;
/// Highest epoch a claim may jump to past the one a node knows (a larger jump is a lie or a
/// bug: penalised).
pub const MAX_EPOCH_JUMP: u64 = 64;

/// A node's periodic liveness and load report. Renews every lease the sender holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// Node name (display only).
    pub name: String,
    /// Capability labels (detected hardware plus `--capabilities`).
    pub capabilities: Vec<String>,
    /// Tasks running there.
    pub running: u32,
    /// Its `max_concurrent_tasks`.
    pub max: u32,
    /// Tasks it owns that wait for a slot.
    pub queued: u32,
    /// Its clock.
    pub clock: MerkleClock,
}

/// A workflow as it travels: header and tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowWire {
    /// Workflow id (`wf-<ulid>`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Tag (`p2p-eligible`, `p2p-only`, ...).
    pub tag: WorkflowTag,
    /// Priority 0..=1000 (lower first).
    pub priority: u16,
    /// Submission time at the origin, unix ms.
    pub created_at: Millis,
    /// Peer ID of the node it was submitted on.
    pub origin: String,
    /// Tasks (all, or a chunk of them in an [`Announce`]).
    pub tasks: Vec<TaskWire>,
}

/// A task as it travels: spec, and (in a [`SyncAnswer`]) what is known of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskWire {
    /// Task id (`<workflow id>.<index>`).
    pub id: String,
    /// Index in the workflow.
    pub idx: u32,
    /// What to run.
    pub spec: TaskSpec,
    /// Priority.
    pub priority: u16,
    /// State as the sender knows it (`queued` in announcements).
    #[serde(default = "queued")]
    pub state: TaskState,
    /// The winning claim, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Claim>,
    /// The recorded result, once finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<Done>,
}

fn queued() -> TaskState {
    TaskState::Queued
}

/// A workflow announcement with the origin's epoch-1 assignments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Announce {
    /// The workflow (a large one is announced in several chunks of tasks).
    pub workflow: WorkflowWire,
    /// Epoch-1 claims naming each placed task's peer.
    pub assign: Vec<Claim>,
    /// Sender's clock.
    pub clock: MerkleClock,
}

/// Claims: self-claims (takeover, steal) or hand-offs (assign, rebalance).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimBatch {
    /// The claims.
    pub claims: Vec<Claim>,
    /// Sender's clock.
    pub clock: MerkleClock,
}

/// An owner started a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Started {
    /// Task id.
    pub task: String,
    /// Epoch of the sender's lease.
    pub epoch: u64,
    /// Sender's clock.
    pub clock: MerkleClock,
}

/// A finished task: the sender's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Done {
    /// Task id.
    pub task: String,
    /// Peer that ran it.
    pub peer: String,
    /// Epoch it ran under.
    pub epoch: u64,
    /// Terminal state.
    pub state: TaskState,
    /// Exit status.
    pub exit_code: Option<i32>,
    /// Killing signal.
    pub signal: Option<i32>,
    /// Wall time, ms.
    pub duration_ms: i64,
    /// Why it failed.
    pub error: Option<String>,
    /// Sender's clock (absent inside a [`TaskWire`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<MerkleClock>,
}

/// A workflow cancelled: queued tasks are dropped, owners kill running ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cancel {
    /// Workflow id.
    pub workflow_id: String,
    /// Sender's clock.
    pub clock: MerkleClock,
}

/// Ask a peer for its recent state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    /// The asker's clock (lets the answerer see it is behind too).
    pub clock: MerkleClock,
}

/// A peer's recent state: its non-terminal workflows and the most recent finished ones (at
/// most [`MAX_SYNC_WORKFLOWS`] in all), with its clock when it answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncAnswer {
    /// Workflows with every task's state, lease and result.
    pub workflows: Vec<WorkflowWire>,
    /// The answerer's clock.
    pub clock: MerkleClock,
}

/// An idle peer asks a full one for up to `max` queued tasks it can run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StealRequest {
    /// Most tasks wanted.
    pub max: u32,
    /// The thief's labels (so the owner gives only tasks it can run).
    pub capabilities: Vec<String>,
}

/// The owner's answer: the hand-off claims it made (also gossiped), possibly none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StealAnswer {
    /// Claims naming the thief at `epoch + 1`.
    pub claims: Vec<Claim>,
}

/// Ask the peer that ran a task for its output tail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputRequest {
    /// Task id.
    pub task: String,
}

/// A task's output tail as the peer that ran it stored it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputAnswer {
    /// Task id.
    pub task: String,
    /// Tail of stdout and stderr (lossy UTF-8); empty if that peer has none.
    pub output: String,
    /// Earlier output was dropped.
    pub truncated: bool,
}

/// A decoded scheduler message.
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    /// See [`Heartbeat`].
    Heartbeat(Heartbeat),
    /// See [`Announce`].
    Announce(Announce),
    /// See [`ClaimBatch`].
    Claim(ClaimBatch),
    /// See [`Started`].
    Start(Started),
    /// See [`Done`].
    Done(Done),
    /// See [`Cancel`].
    Cancel(Cancel),
}

impl Msg {
    /// Decode and check a gossip envelope's body by its kind.
    ///
    /// # Errors
    /// A text naming the problem: unknown kind, a body of the wrong shape, ids or label lists
    /// out of bounds, an invalid clock.
    pub fn decode(kind: &str, body: &serde_json::Value) -> Result<Msg, String> {
        fn de<T: serde::de::DeserializeOwned>(
            kind: &str,
            b: &serde_json::Value,
        ) -> Result<T, String> {
            T::deserialize(b).map_err(|e| format!("{kind}: {e}"))
        }
        let m = match kind {
            KIND_HEARTBEAT => Msg::Heartbeat(de(kind, body)?),
            KIND_ANNOUNCE => Msg::Announce(de(kind, body)?),
            KIND_CLAIM => Msg::Claim(de(kind, body)?),
            KIND_START => Msg::Start(de(kind, body)?),
            KIND_DONE => Msg::Done(de(kind, body)?),
            KIND_CANCEL => Msg::Cancel(de(kind, body)?),
            other => return Err(format!("unknown scheduler message kind {other:?}")),
        };
        m.validate()?;
        Ok(m)
    }

    /// The sender's clock carried by the message.
    pub fn clock(&self) -> Option<&MerkleClock> {
        match self {
            Msg::Heartbeat(h) => Some(&h.clock),
            Msg::Announce(a) => Some(&a.clock),
            Msg::Claim(c) => Some(&c.clock),
            Msg::Start(s) => Some(&s.clock),
            Msg::Done(d) => d.clock.as_ref(),
            Msg::Cancel(c) => Some(&c.clock),
        }
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(c) = self.clock() {
            c.validate().map_err(|e| e.to_string())?;
        }
        match self {
            Msg::Heartbeat(h) => {
                id_ok("name", &h.name)?;
                if h.capabilities.len() > MAX_LABELS {
                    return Err(format!(
                        "heartbeat has {} labels; at most {MAX_LABELS}",
                        h.capabilities.len()
                    ));
                }
                for l in &h.capabilities {
                    id_ok("capability", l)?;
                }
                Ok(())
            }
            Msg::Announce(a) => {
                workflow_ok(&a.workflow)?;
                claims_ok(&a.assign)
            }
            Msg::Claim(c) => claims_ok(&c.claims),
            Msg::Start(s) => id_ok("task", &s.task),
            Msg::Done(d) => done_ok(d),
            Msg::Cancel(c) => id_ok("workflow_id", &c.workflow_id),
        }
    }
}

impl SyncAnswer {
    /// Check an answer from a peer (untrusted).
    ///
    /// # Errors
    /// What is out of bounds.
    pub fn validate(&self) -> Result<(), String> {
        self.clock.validate().map_err(|e| e.to_string())?;
        if self.workflows.len() > MAX_SYNC_WORKFLOWS {
            return Err(format!(
                "sync answer has {} workflows; at most {MAX_SYNC_WORKFLOWS}",
                self.workflows.len()
            ));
        }
        for w in &self.workflows {
            workflow_ok(w)?;
            for t in &w.tasks {
                if let Some(l) = &t.lease {
                    claims_ok(std::slice::from_ref(l))?;
                }
                if let Some(d) = &t.done {
                    done_ok(d)?;
                }
            }
        }
        Ok(())
    }
}

fn id_ok(what: &str, s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > MAX_ID || s.chars().any(char::is_control) {
        return Err(format!("{what} must be 1-{MAX_ID} printable bytes"));
    }
    Ok(())
}

fn claims_ok(cs: &[Claim]) -> Result<(), String> {
    if cs.len() > MAX_CLAIMS {
        return Err(format!("{} claims; at most {MAX_CLAIMS}", cs.len()));
    }
    for c in cs {
        id_ok("claim.task", &c.task)?;
        id_ok("claim.peer", &c.peer)?;
        if c.epoch == 0 {
            return Err(format!(
                "claim on {} has epoch 0; epochs start at 1",
                c.task
            ));
        }
    }
    Ok(())
}

fn done_ok(d: &Done) -> Result<(), String> {
    id_ok("done.task", &d.task)?;
    id_ok("done.peer", &d.peer)?;
    if !d.state.is_terminal() {
        return Err(format!(
            "done for {} has non-terminal state {}",
            d.task,
            d.state.as_str()
        ));
    }
    if d.error.as_ref().is_some_and(|e| e.len() > 4096) {
        return Err("done.error is over 4096 bytes".into());
    }
    Ok(())
}

fn workflow_ok(w: &WorkflowWire) -> Result<(), String> {
    id_ok("workflow.id", &w.id)?;
    id_ok("workflow.origin", &w.origin)?;
    if w.name.len() > 1024 {
        return Err("workflow.name is over 1024 bytes".into());
    }
    if w.priority > super::workflow::MAX_PRIORITY {
        return Err(format!("workflow priority {} is over 1000", w.priority));
    }
    if w.tasks.len() > super::workflow::MAX_TASKS {
        return Err(format!(
            "workflow has {} tasks; at most {}",
            w.tasks.len(),
            super::workflow::MAX_TASKS
        ));
    }
    for t in &w.tasks {
        id_ok("task.id", &t.id)?;
        // Task ids are `<workflow id>.<index>`: a peer cannot announce a task into another
        // workflow or overwrite one by id.
        if t.id != format!("{}.{}", w.id, t.idx) {
            return Err(format!("task id {} is not {}.{}", t.id, w.id, t.idx));
        }
        if t.spec.command.is_empty() {
            return Err(format!("task {} has an empty command", t.id));
        }
        if t.priority > super::workflow::MAX_PRIORITY {
            return Err(format!(
                "task {} priority {} is over 1000",
                t.id, t.priority
            ));
        }
    }
    Ok(())
}

/// Whether an event message's clock can be merged now: it is its sender's next event
/// (`msg[sender] == mine[sender] + 1`) and depends on nothing this node has not seen
/// (`msg[k] <= mine[k]` for every other `k`). Causal-broadcast delivery condition.
pub fn ready(mine: &MerkleClock, msg: &MerkleClock, sender: &str) -> bool {
    msg.get(sender) == mine.get(sender) + 1
        && msg
            .entries()
            .iter()
            .all(|(k, v)| k == sender || *v <= mine.get(k))
}

/// Whether `theirs` holds events `mine` lacks (so a sync from that peer is due).
pub fn behind(mine: &MerkleClock, theirs: &MerkleClock) -> bool {
    matches!(
        mine.compare(theirs),
        Causality::Before | Causality::Concurrent
    )
}

/// What to do with a claim received from `sender`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Apply it to the lease book.
    Apply,
    /// Drop it quietly (stale, or about a task this node does not know yet).
    Ignore,
    /// Drop it and penalise the sender: no honest node sends it.
    Penalise(String),
}

/// The rules for claims. `sender` is the gossip author (signed); `origin` the task's workflow
/// origin if the task is known; `book` this node's leases.
///
/// * A peer may claim for itself at any epoch up to [`MAX_EPOCH_JUMP`] past the current one
///   (takeovers and steals; concurrent ones are settled by rank).
/// * A peer may claim *for another* (assign, hand off) only at epoch 1 when it is the
///   workflow's origin or the task has no owner yet (an elected assigner after the origin
///   died), or at `current + 1` when it is the current owner (rebalance).
/// * Anything else naming another peer is a forgery attempt: penalised.
pub fn check_claim(sender: &str, c: &Claim, origin: Option<&str>, book: &LeaseBook) -> Verdict {
    let current = book.get(&c.task).map(|l| &l.owner);
    let epoch = current.map(|o| o.epoch).unwrap_or(0);
    if c.epoch > epoch + MAX_EPOCH_JUMP {
        return Verdict::Penalise(format!(
            "claim on {} jumps to epoch {} from {epoch}",
            c.task, c.epoch
        ));
    }
    if c.peer == sender {
        return Verdict::Apply;
    }
    if c.epoch == 1 && (origin == Some(sender) || current.is_none()) {
        return Verdict::Apply;
    }
    if let Some(o) = current
        && o.peer == sender
        && c.epoch == o.epoch + 1
    {
        return Verdict::Apply;
    }
    if origin.is_none() && current.is_none() {
        // A task this node has not heard of yet: cannot judge; a sync will bring it.
        return Verdict::Ignore;
    }
    if current.is_some_and(|o| c.epoch <= o.epoch) {
        // Possibly a hand-off this node saw superseded: stale, not a lie.
        return Verdict::Ignore;
    }
    Verdict::Penalise(format!(
        "{sender} claimed {} for {} at epoch {} without owning it",
        c.task, c.peer, c.epoch
    ))
}

/// A live peer as the takeover and stealing rules see it.
#[derive(Debug, Clone, PartialEq)]
pub struct LivePeer {
    /// Peer ID.
    pub peer: String,
    /// Capability labels.
    pub capabilities: Vec<String>,
    /// Running tasks.
    pub running: u32,
    /// Its max.
    pub max: u32,
    /// Its queued tasks.
    pub queued: u32,
}

/// A task this node knows, as the rules need it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskInfo {
    /// Labels it requires.
    pub requires: Vec<String>,
    /// Known state.
    pub state: TaskState,
    /// Priority (lower first).
    pub priority: u16,
}

/// Claims this node (`me`, one of `live`) makes for tasks whose owner has been silent for
/// longer than `timeout` ms: of the live peers able to run a task, the rendezvous winner
/// takes it at `epoch + 1`, so a dead peer's tasks spread over the survivors without a
/// contest. If views differ and nobody took it for another `timeout`, every able peer
/// claims it and the rank settles it. Tasks this node cannot run are left to others.
pub fn takeovers(
    book: &LeaseBook,
    me: &str,
    live: &[LivePeer],
    tasks: &BTreeMap<String, TaskInfo>,
    now: Millis,
    timeout: Millis,
) -> Vec<Claim> {
    book.expired(me, now, timeout)
        .into_iter()
        .filter(|c| {
            let Some(t) = tasks.get(&c.task) else {
                return false;
            };
            if t.state.is_terminal() {
                return false;
            }
            let able: Vec<&str> = live
                .iter()
                .filter(|p| super::peer_select::satisfies(&p.capabilities, &t.requires))
                .map(|p| p.peer.as_str())
                .collect();
            if !able.contains(&me) {
                return false;
            }
            let silent = book.get(&c.task).map(|l| now - l.last_heard).unwrap_or(0);
            super::lease::rendezvous(&c.task, able.iter().copied()) == Some(me)
                || silent > 2 * timeout
        })
        .collect()
}

/// Work stealing, thief side: with `free` slots and nothing of its own queued, `me` asks
/// live peers that are full (`running >= max`) and have a backlog for up to half of it
/// (rounded up), fullest first, at most `free` tasks in all. Returns `(victim, how many)`.
///
/// A steal is a *request* ([`KIND_STEAL`]): only the owner knows which of its tasks have not
/// started, so the owner chooses ([`give_away`]) and hands them off at `epoch + 1`. A thief
/// never claims a task for itself, so it never takes one its owner already runs.
pub fn steal_targets(me: &str, free: usize, live: &[LivePeer]) -> Vec<(String, usize)> {
    let mut victims: Vec<&LivePeer> = live
        .iter()
        .filter(|p| p.peer != me && p.queued > 0 && p.running >= p.max)
        .collect();
    victims.sort_by(|a, b| b.queued.cmp(&a.queued).then_with(|| a.peer.cmp(&b.peer)));
    let mut left = free;
    let mut out = vec![];
    for v in victims {
        if left == 0 {
            break;
        }
        let n = (v.queued as usize).div_ceil(2).min(left);
        left -= n;
        out.push((v.peer.clone(), n));
    }
    out
}

/// Work stealing, owner side: which of its queued, not started tasks (most urgent first, as
/// `(task, required labels)`) the owner hands to a thief with labels `caps` asking for `n`:
/// from the least urgent end, tasks the thief can run, at most `n` and at most half the
/// queue (rounded up). The owner keeps what it will start next.
pub fn give_away<'a>(queued: &[(&'a str, &[String])], caps: &[String], n: usize) -> Vec<&'a str> {
    let cap = n.min(queued.len().div_ceil(2));
    queued
        .iter()
        .rev()
        .filter(|(_, req)| super::peer_select::satisfies(caps, req))
        .take(cap)
        .map(|(t, _)| *t)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn claim(task: &str, peer: &str, epoch: u64) -> Claim {
        Claim {
            task: task.into(),
            peer: peer.into(),
            epoch,
        }
    }

    fn live(peer: &str, caps: &[&str], running: u32, max: u32, queued: u32) -> LivePeer {
        LivePeer {
            peer: peer.into(),
            capabilities: caps.iter().map(|s| s.to_string()).collect(),
            running,
            max,
            queued,
        }
    }

    fn info(req: &[&str], state: TaskState, priority: u16) -> TaskInfo {
        TaskInfo {
            requires: req.iter().map(|s| s.to_string()).collect(),
            state,
            priority,
        }
    }

    #[test]
    fn decode_checks_kind_shape_and_bounds() {
        let clock = MerkleClock::new("p1");
        let hb = Heartbeat {
            name: "n1".into(),
            capabilities: vec!["cuda".into()],
            running: 1,
            max: 4,
            queued: 0,
            clock: clock.clone(),
        };
        let v = serde_json::to_value(&hb).unwrap();
        assert_eq!(
            Msg::decode(KIND_HEARTBEAT, &v).unwrap(),
            Msg::Heartbeat(hb.clone())
        );
        assert!(
            Msg::decode("sched.nope", &v)
                .unwrap_err()
                .contains("unknown")
        );
        assert!(Msg::decode(KIND_CLAIM, &v).is_err());
        let mut big = hb.clone();
        big.capabilities = (0..100).map(|i| format!("l{i}")).collect();
        let e = Msg::decode(KIND_HEARTBEAT, &serde_json::to_value(&big).unwrap()).unwrap_err();
        assert!(e.contains("labels"), "{e}");
        let zero = ClaimBatch {
            claims: vec![claim("wf-a.0", "p1", 0)],
            clock: clock.clone(),
        };
        assert!(
            Msg::decode(KIND_CLAIM, &serde_json::to_value(&zero).unwrap())
                .unwrap_err()
                .contains("epoch 0")
        );
        // A task smuggled into another workflow's id space.
        let a = Announce {
            workflow: WorkflowWire {
                id: "wf-a".into(),
                name: "x".into(),
                tag: WorkflowTag::P2pEligible,
                priority: 5,
                created_at: 1,
                origin: "p1".into(),
                tasks: vec![TaskWire {
                    id: "wf-b.0".into(),
                    idx: 0,
                    spec: TaskSpec {
                        command: vec!["true".into()],
                        env: Default::default(),
                        timeout_s: None,
                        requires: vec![],
                    },
                    priority: 5,
                    state: TaskState::Queued,
                    lease: None,
                    done: None,
                }],
            },
            assign: vec![],
            clock,
        };
        let e = Msg::decode(KIND_ANNOUNCE, &serde_json::to_value(&a).unwrap()).unwrap_err();
        assert!(e.contains("wf-b.0"), "{e}");
    }

    #[test]
    fn causal_readiness() {
        let mut mine = MerkleClock::new("me");
        let mut a = MerkleClock::new("a");
        a.tick();
        assert!(ready(&mine, &a, "a"));
        mine.merge(&a);
        a.tick();
        a.tick();
        // a's third event while this node saw only the first: not ready (missed one).
        assert!(!ready(&mine, &a, "a"));
        let mut b = MerkleClock::new("b");
        b.merge(&a);
        b.tick();
        // b's first event depends on a's three: not ready either.
        assert!(!ready(&mine, &b, "b"));
        assert!(behind(&mine, &b));
        mine.merge(&b);
        assert!(!behind(&mine, &b));
    }

    #[test]
    fn claim_rules() {
        let mut book = LeaseBook::new();
        // Unknown task, someone assigning epoch 1: allowed (origin or elected assigner).
        assert_eq!(
            check_claim("o", &claim("t", "x", 1), Some("o"), &book),
            Verdict::Apply
        );
        book.claim(claim("t", "x", 1), 0);
        // Only the origin assigns epoch 1 once there is an owner.
        assert!(matches!(
            check_claim("z", &claim("t", "z2", 1), Some("o"), &book),
            Verdict::Ignore
        ));
        // Self-claims: fine (rank settles them).
        assert_eq!(
            check_claim("y", &claim("t", "y", 2), Some("o"), &book),
            Verdict::Apply
        );
        // The owner hands off at epoch + 1.
        assert_eq!(
            check_claim("x", &claim("t", "y", 2), Some("o"), &book),
            Verdict::Apply
        );
        // A third party handing someone else's task away: a lie.
        assert!(matches!(
            check_claim("z", &claim("t", "y", 2), Some("o"), &book),
            Verdict::Penalise(_)
        ));
        // Absurd epoch jump.
        assert!(matches!(
            check_claim("y", &claim("t", "y", 500), Some("o"), &book),
            Verdict::Penalise(_)
        ));
    }

    #[test]
    fn a_dead_peers_tasks_spread_over_able_survivors() {
        let mut book = LeaseBook::new();
        let mut tasks = BTreeMap::new();
        for i in 0..60 {
            let t = format!("t{i}");
            book.claim(claim(&t, "dead", 1), 0);
            let req: &[&str] = if i % 10 == 0 { &["cuda"] } else { &[] };
            tasks.insert(t, info(req, TaskState::Running, 5));
        }
        let peers = vec![
            live("a", &[], 0, 4, 0),
            live("b", &[], 0, 4, 0),
            live("g", &["cuda"], 0, 4, 0),
        ];
        // Not yet expired.
        assert!(takeovers(&book, "a", &peers, &tasks, 1000, 5000).is_empty());
        let mut owners: BTreeMap<String, String> = BTreeMap::new();
        for me in ["a", "b", "g"] {
            for c in takeovers(&book, me, &peers, &tasks, 6000, 5000) {
                assert_eq!(c.epoch, 2);
                assert!(
                    owners.insert(c.task.clone(), me.into()).is_none(),
                    "{} taken twice",
                    c.task
                );
            }
        }
        assert_eq!(owners.len(), 60, "every task taken exactly once");
        for (t, o) in &owners {
            if tasks[t].requires.contains(&"cuda".to_string()) {
                assert_eq!(o, "g");
            }
        }
        assert!(owners.values().filter(|o| *o == "a").count() > 5);
        // Much later, with no takeover heard, every able peer claims.
        let late = takeovers(&book, "a", &peers, &tasks, 20_000, 5000);
        assert_eq!(late.len(), 54);
    }

    #[test]
    fn thieves_ask_full_peers_for_half_their_backlog() {
        let peers = vec![
            live("busy", &["cuda"], 2, 2, 5),
            live("busier", &[], 4, 4, 8),
            live("calm", &[], 1, 4, 9),
            live("me", &[], 0, 4, 0),
        ];
        // Fullest first, half of each (rounded up), at most `free` in all.
        assert_eq!(
            steal_targets("me", 6, &peers),
            [("busier".to_string(), 4), ("busy".to_string(), 2)]
        );
        assert_eq!(steal_targets("me", 2, &peers), [("busier".to_string(), 2)]);
        assert!(steal_targets("me", 0, &peers).is_empty());
    }

    #[test]
    fn owners_give_away_the_least_urgent_runnable_tasks() {
        let none: Vec<String> = vec![];
        let cuda = vec!["cuda".to_string()];
        let q: Vec<(&str, &[String])> = vec![
            ("t0", none.as_slice()),
            ("t1", none.as_slice()),
            ("t2", cuda.as_slice()),
            ("t3", none.as_slice()),
            ("t4", none.as_slice()),
        ];
        assert_eq!(give_away(&q, &[], 2), ["t4", "t3"]);
        // At most half the queue (3 of 5), skipping what the thief cannot run.
        assert_eq!(give_away(&q, &[], 10), ["t4", "t3", "t1"]);
        assert_eq!(give_away(&q, &cuda, 10), ["t4", "t3", "t2"]);
        assert!(give_away(&q, &[], 0).is_empty());
    }

    proptest! {
        /// Whatever subset of survivors computes takeovers, no task goes to two of them in
        /// the first round, and no task goes to a peer lacking its labels.
        #[test]
        fn takeovers_are_disjoint_and_respect_labels(
            n in 1usize..40,
            caps in proptest::collection::vec(proptest::bool::ANY, 2..6),
        ) {
            let mut book = LeaseBook::new();
            let mut tasks = BTreeMap::new();
            for i in 0..n {
                let t = format!("t{i}");
                book.claim(claim(&t, "dead", 3), 0);
                let req: &[&str] = if i % 3 == 0 { &["x"] } else { &[] };
                tasks.insert(t, info(req, TaskState::Queued, 1));
            }
            let peers: Vec<LivePeer> = caps.iter().enumerate()
                .map(|(i, x)| live(&format!("p{i}"), if *x { &["x"] } else { &[] }, 0, 2, 0)).collect();
            let mut seen = std::collections::BTreeSet::new();
            for p in &peers {
                for c in takeovers(&book, &p.peer, &peers, &tasks, 10_000, 6_000) {
                    prop_assert!(seen.insert(c.task.clone()));
                    prop_assert!(super::super::peer_select::satisfies(&p.capabilities, &tasks[&c.task].requires));
                    prop_assert_eq!(c.epoch, 4);
                }
            }
        }
    }
}
