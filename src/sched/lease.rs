//! Task ownership across peers: leases whose competing claims every peer resolves the same
//! way, whatever order the gossip arrives in. Pure: no clock reads, no I/O.
//!
//! # Why not the seed's rule
//! The seed's Python scheduler let each peer pick an owner from its *own* clock hash, so two
//! peers with different views could both run a task, or neither. A CRDT merge does not give
//! exclusive ownership either: two concurrent claims both survive a union. What converges is a
//! *deterministic choice* among the claims seen: here, the maximum under one total order.
//!
//! # The order
//! A claim is `(task, peer, epoch)`. The winner of a task is the claim with the greatest
//! `(epoch, weight(task, peer), peer)`, where `weight` is the highest-random-weight
//! (rendezvous) hash of Thaler & Ravishankar (1998, "Using name-based mappings to increase hit
//! rates"): SHA-256 of `task ‖ 0x00 ‖ peer`, first 8 bytes. Taking a maximum is commutative,
//! associative and idempotent, so every peer that has seen the same claims agrees on the owner
//! (property-tested below), and a peer's own ranking needs no agreed membership list.
//!
//! - **epoch** counts ownership changes. The first claims are epoch 1; a peer that takes a
//!   task over after its lease expired claims `epoch + 1`, which beats every claim of the old
//!   epoch, including the silent holder's when it comes back.
//! - Within an epoch, concurrent claims are settled by the rendezvous weight: the same peer
//!   wins on every node, without a round of messages.
//!
//! # Leases
//! The owner renews with heartbeats; a [`Renewal`] counts only from the current winner at the
//! current epoch. Expiry is decided on each node against its *own* clock (`last_heard`, when
//! the node last heard from the owner about the task), so clock skew between peers does not
//! matter; two nodes that decide expiry at slightly different times and both claim `epoch+1`
//! are settled by the weight like any concurrent claims. Execution is therefore
//! at-least-once (an owner that was only slow may finish after a takeover).
//!
//! # Completion, exactly once
//! [`Completion`]s merge by the same kind of rule: the one with the least `(epoch, peer)` is
//! recorded, all others are duplicates, counted and dropped. Every node ends with the same
//! record.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::Millis;

/// Rendezvous (highest-random-weight) weight of `peer` for `task`: SHA-256 of
/// `task ‖ 0x00 ‖ peer`, the first 8 bytes big-endian.
pub fn weight(task: &str, peer: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(task.as_bytes());
    h.update([0u8]);
    h.update(peer.as_bytes());
    let d = h.finalize();
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// The rendezvous choice for `task` among `peers`: the one with the greatest weight (ties by
/// peer ID). `None` for an empty list. Removing a peer moves only the tasks it won.
pub fn rendezvous<'a>(task: &str, peers: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    peers
        .into_iter()
        .max_by(|a, b| weight(task, a).cmp(&weight(task, b)).then_with(|| a.cmp(b)))
}

/// A peer's claim on a task.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Claim {
    /// Task id.
    pub task: String,
    /// Claiming peer (peer ID).
    pub peer: String,
    /// Ownership generation, from 1.
    pub epoch: u64,
}

impl Claim {
    /// The claim's rank: greater wins.
    pub fn rank(&self) -> (u64, u64, &str) {
        (
            self.epoch,
            weight(&self.task, &self.peer),
            self.peer.as_str(),
        )
    }
}

/// An owner's heartbeat for a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Renewal {
    /// Task id.
    pub task: String,
    /// The owner.
    pub peer: String,
    /// Its epoch.
    pub epoch: u64,
}

/// A finished task, as reported by the peer that ran it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    /// Task id.
    pub task: String,
    /// Peer that ran it.
    pub peer: String,
    /// The epoch it ran under.
    pub epoch: u64,
    /// Exit status, if it exited.
    pub exit_code: Option<i32>,
}

/// What a node knows of one task's ownership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskLease {
    /// The winning claim.
    pub owner: Claim,
    /// When this node last heard the owner (its claim or a renewal), by this node's clock.
    pub last_heard: Millis,
    /// The recorded completion, once there is one.
    pub done: Option<Completion>,
    /// Completions dropped because another was recorded first.
    pub duplicates: u32,
}

/// What applying a message changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The message made a new owner (or the first one).
    NewOwner,
    /// It renewed the current owner's lease.
    Renewed,
    /// It recorded the task's completion.
    Completed,
    /// Nothing: stale, lost to a better claim, or a duplicate.
    Ignored,
}

/// Every task's lease as this node sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseBook {
    tasks: BTreeMap<String, TaskLease>,
}

impl LeaseBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// One task's lease.
    pub fn get(&self, task: &str) -> Option<&TaskLease> {
        self.tasks.get(task)
    }

    /// The current owner of `task`.
    pub fn owner(&self, task: &str) -> Option<&str> {
        self.tasks.get(task).map(|t| t.owner.peer.as_str())
    }

    /// All tasks, by id.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &TaskLease)> {
        self.tasks.iter()
    }

    /// Apply a claim heard at `now` (this node's clock). The greatest claim wins.
    pub fn claim(&mut self, c: Claim, now: Millis) -> Applied {
        if c.epoch == 0 {
            return Applied::Ignored;
        }
        match self.tasks.get_mut(&c.task) {
            None => {
                self.tasks.insert(
                    c.task.clone(),
                    TaskLease {
                        owner: c,
                        last_heard: now,
                        done: None,
                        duplicates: 0,
                    },
                );
                Applied::NewOwner
            }
            Some(t) => match c.rank().cmp(&t.owner.rank()) {
                std::cmp::Ordering::Greater => {
                    t.owner = c;
                    t.last_heard = now;
                    Applied::NewOwner
                }
                std::cmp::Ordering::Equal => {
                    t.last_heard = t.last_heard.max(now);
                    Applied::Renewed
                }
                std::cmp::Ordering::Less => Applied::Ignored,
            },
        }
    }

    /// Apply a heartbeat: only the current owner at its epoch renews.
    pub fn renew(&mut self, r: &Renewal, now: Millis) -> Applied {
        match self.tasks.get_mut(&r.task) {
            Some(t) if t.owner.peer == r.peer && t.owner.epoch == r.epoch => {
                t.last_heard = t.last_heard.max(now);
                Applied::Renewed
            }
            _ => Applied::Ignored,
        }
    }

    /// A heartbeat from `peer`: renew every lease it holds (liveness is per peer; a peer
    /// silent for the heartbeat timeout loses all its tasks). Returns how many.
    pub fn renew_peer(&mut self, peer: &str, now: Millis) -> usize {
        let mut n = 0;
        for t in self.tasks.values_mut() {
            if t.done.is_none() && t.owner.peer == peer {
                t.last_heard = t.last_heard.max(now);
                n += 1;
            }
        }
        n
    }

    /// Restore a lease read back from the store (after a restart), as heard at `now`.
    pub fn restore(
        &mut self,
        owner: Claim,
        done: Option<Completion>,
        duplicates: u32,
        now: Millis,
    ) {
        let task = owner.task.clone();
        self.claim(owner, now);
        if let Some(d) = done {
            self.complete(d, now);
        }
        if let Some(t) = self.tasks.get_mut(&task) {
            t.duplicates = t.duplicates.max(duplicates);
        }
    }

    /// Apply a completion: the least `(epoch, peer)` is recorded; others are counted. A
    /// completion also counts as its runner's claim for that epoch (it held the lease), so a
    /// node that hears the completion before the claim ends in the same state.
    pub fn complete(&mut self, c: Completion, now: Millis) -> Applied {
        self.claim(
            Claim {
                task: c.task.clone(),
                peer: c.peer.clone(),
                epoch: c.epoch.max(1),
            },
            now,
        );
        let Some(t) = self.tasks.get_mut(&c.task) else {
            return Applied::Ignored;
        };
        match &t.done {
            None => {
                t.done = Some(c);
                Applied::Completed
            }
            Some(d) if (c.epoch, c.peer.as_str()) < (d.epoch, d.peer.as_str()) => {
                t.done = Some(c);
                t.duplicates += 1;
                Applied::Completed
            }
            Some(d) if *d == c => Applied::Ignored,
            Some(_) => {
                t.duplicates += 1;
                Applied::Ignored
            }
        }
    }

    /// Tasks not done whose owner has not been heard for longer than `timeout` (ms): each with
    /// the claim that would take it over (`epoch + 1`) for `me`.
    pub fn expired(&self, me: &str, now: Millis, timeout: Millis) -> Vec<Claim> {
        self.tasks
            .values()
            .filter(|t| t.done.is_none() && now - t.last_heard > timeout && t.owner.peer != me)
            .map(|t| Claim {
                task: t.owner.task.clone(),
                peer: me.to_string(),
                epoch: t.owner.epoch + 1,
            })
            .collect()
    }

    /// Tasks `peer` owns and has not finished (to renew, or to give back when it leaves).
    pub fn owned_by<'a>(&'a self, peer: &'a str) -> impl Iterator<Item = &'a TaskLease> + 'a {
        self.tasks
            .values()
            .filter(move |t| t.done.is_none() && t.owner.peer == peer)
    }

    /// Merge another node's book (anti-entropy after a partition): the result is what
    /// applying all of both nodes' messages would give. `last_heard` keeps the later time.
    pub fn merge(&mut self, other: &LeaseBook) {
        for (task, o) in &other.tasks {
            self.claim(o.owner.clone(), o.last_heard);
            if let Some(d) = &o.done {
                self.complete(d.clone(), o.last_heard);
            }
            if let Some(t) = self.tasks.get_mut(task) {
                t.duplicates = t.duplicates.max(o.duplicates);
                if t.owner == o.owner {
                    t.last_heard = t.last_heard.max(o.last_heard);
                }
            }
        }
    }
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

    #[test]
    fn rendezvous_is_stable_and_moves_only_the_lost_peers_tasks() {
        let peers = ["p1", "p2", "p3", "p4", "p5"];
        let tasks: Vec<String> = (0..200).map(|i| format!("task-{i}")).collect();
        let before: Vec<&str> = tasks
            .iter()
            .map(|t| rendezvous(t, peers.iter().copied()).unwrap())
            .collect();
        // Every peer gets some work.
        for p in peers {
            assert!(before.iter().filter(|x| **x == p).count() > 10, "{p}");
        }
        let after: Vec<&str> = tasks
            .iter()
            .map(|t| rendezvous(t, peers.iter().copied().filter(|p| *p != "p3")).unwrap())
            .collect();
        for (b, a) in before.iter().zip(&after) {
            if *b != "p3" {
                assert_eq!(b, a, "only p3's tasks move");
            }
        }
        assert_eq!(rendezvous("t", std::iter::empty()), None);
    }

    #[test]
    fn concurrent_claims_agree_and_a_takeover_beats_the_old_epoch() {
        let mut a = LeaseBook::new();
        let mut b = LeaseBook::new();
        let c1 = claim("t", "peer-a", 1);
        let c2 = claim("t", "peer-b", 1);
        a.claim(c1.clone(), 0);
        a.claim(c2.clone(), 0);
        b.claim(c2, 0);
        b.claim(c1, 0);
        assert_eq!(a.owner("t"), b.owner("t"));
        let owner = a.owner("t").unwrap().to_string();
        // The owner goes silent; after the timeout another peer takes over at epoch 2.
        let other = if owner == "peer-a" {
            "peer-b"
        } else {
            "peer-a"
        };
        assert!(a.expired(other, 1_000, 5_000).is_empty());
        let take = a.expired(other, 10_000, 5_000);
        assert_eq!(take, vec![claim("t", other, 2)]);
        assert_eq!(a.claim(take[0].clone(), 10_000), Applied::NewOwner);
        // The old owner's late heartbeat and re-claim at epoch 1 lose.
        assert_eq!(
            a.renew(
                &Renewal {
                    task: "t".into(),
                    peer: owner.clone(),
                    epoch: 1
                },
                11_000
            ),
            Applied::Ignored
        );
        assert_eq!(a.claim(claim("t", &owner, 1), 11_000), Applied::Ignored);
        assert_eq!(a.owner("t"), Some(other));
    }

    #[test]
    fn completion_is_recorded_once() {
        let mut b = LeaseBook::new();
        b.claim(claim("t", "a", 1), 0);
        let done = |peer: &str, epoch| Completion {
            task: "t".into(),
            peer: peer.into(),
            epoch,
            exit_code: Some(0),
        };
        assert_eq!(b.complete(done("b", 2), 5), Applied::Completed);
        // The slow first owner finishes too: its epoch-1 run is the first one and is kept.
        assert_eq!(b.complete(done("a", 1), 6), Applied::Completed);
        assert_eq!(b.complete(done("b", 2), 7), Applied::Ignored);
        let t = b.get("t").unwrap();
        assert_eq!(t.done.as_ref().unwrap().peer, "a");
        assert_eq!(t.duplicates, 2);
        assert!(
            b.expired("c", 1_000_000, 1).is_empty(),
            "done tasks never expire"
        );
    }

    #[derive(Debug, Clone)]
    enum Msg {
        Claim(Claim),
        Renew(Renewal),
        Done(Completion),
    }

    fn arb_msgs() -> impl Strategy<Value = Vec<Msg>> {
        let peer = prop::sample::select(vec!["a", "b", "c", "d"]);
        let task = prop::sample::select(vec!["t1", "t2", "t3"]);
        let msg = (0u8..3, task, peer, 1u64..4).prop_map(|(k, t, p, e)| match k {
            0 => Msg::Claim(claim(t, p, e)),
            1 => Msg::Renew(Renewal {
                task: t.into(),
                peer: p.into(),
                epoch: e,
            }),
            _ => Msg::Done(Completion {
                task: t.into(),
                peer: p.into(),
                epoch: e,
                exit_code: Some(0),
            }),
        });
        prop::collection::vec(msg, 0..40)
    }

    fn apply(msgs: &[Msg]) -> LeaseBook {
        let mut b = LeaseBook::new();
        for m in msgs {
            match m {
                Msg::Claim(c) => {
                    b.claim(c.clone(), 0);
                }
                Msg::Renew(r) => {
                    b.renew(r, 0);
                }
                Msg::Done(c) => {
                    b.complete(c.clone(), 0);
                }
            }
        }
        b
    }

    fn outcome(b: &LeaseBook) -> Vec<(String, Option<(u64, String)>)> {
        // Owners of tasks that were claimed, and the recorded completion.
        b.iter()
            .map(|(t, l)| {
                (
                    t.clone(),
                    l.done.as_ref().map(|d| (d.epoch, d.peer.clone())),
                )
            })
            .collect()
    }

    proptest! {
        /// Any two nodes that saw the same messages, in any order, agree on every task's
        /// owner (when it was claimed) and on its recorded completion.
        #[test]
        fn every_order_converges(msgs in arb_msgs(), seed in any::<u64>()) {
            let mut shuffled = msgs.clone();
            // A deterministic shuffle from the seed.
            let mut s = seed | 1;
            for i in (1..shuffled.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                shuffled.swap(i, (s % (i as u64 + 1)) as usize);
            }
            let a = apply(&msgs);
            let b = apply(&shuffled);
            prop_assert_eq!(outcome(&a), outcome(&b));
            // Completions count as their runner's claim.
            let claims: Vec<Claim> = msgs.iter().filter_map(|m| match m {
                Msg::Claim(c) => Some(c.clone()),
                Msg::Done(d) => Some(claim(&d.task, &d.peer, d.epoch)),
                _ => None,
            }).collect();
            for (task, _) in a.iter() {
                let best = claims.iter().filter(|c| &c.task == task).max_by(|x, y| x.rank().cmp(&y.rank()));
                if let Some(best) = best {
                    prop_assert_eq!(a.owner(task), Some(best.peer.as_str()));
                    prop_assert_eq!(b.owner(task), Some(best.peer.as_str()));
                }
            }
        }

        /// Merging books is the same as hearing both nodes' messages: commutative and
        /// idempotent.
        #[test]
        fn merge_commutes(x in arb_msgs(), y in arb_msgs()) {
            let (a, b) = (apply(&x), apply(&y));
            let mut ab = a.clone();
            ab.merge(&b);
            let mut ba = b.clone();
            ba.merge(&a);
            let owners = |l: &LeaseBook| l.iter().map(|(t, v)| (t.clone(), v.owner.clone())).collect::<Vec<_>>();
            prop_assert_eq!(owners(&ab), owners(&ba));
            prop_assert_eq!(outcome(&ab), outcome(&ba));
            let mut again = ab.clone();
            again.merge(&b);
            prop_assert_eq!(owners(&again), owners(&ab));
        }
    }
}
