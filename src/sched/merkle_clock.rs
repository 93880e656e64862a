//! The seed's Merkle clock: a vector clock with a Merkle root over its entries.
//!
//! # API (the seed's)
//! `tick` (a local event), `update` (merge another clock: element-wise max, then tick),
//! `compare` (happened-before: [`Causality::Before`], [`Causality::After`],
//! [`Causality::Concurrent`], or [`Causality::Equal`]) and `get_hash` (a Merkle root over the
//! sorted `(node, counter)` entries).
//!
//! # What it is, and what it is not
//! A vector clock (Fidge 1988; Mattern 1989) orders events exactly: `a → b` (happened-before)
//! iff `VC(a) < VC(b)` element-wise. The Merkle root adds a compact fingerprint: two peers
//! with equal roots hold equal clocks (up to SHA-256 collisions), so anti-entropy can compare
//! 32 bytes before exchanging entries.
//!
//! Merkle-CRDTs (Sanjuán, Pöyhtäri, Teixeira, Psaras, 2020, "Merkle-CRDTs: Merkle-DAGs meet
//! CRDTs") go further: every event is a node of a DAG linked to the current heads by hash, and
//! replicas converge by taking the union of DAGs. There the hash *is* the causal history:
//! a root tells you every event behind it, and a replica can fetch exactly the missing nodes.
//! This clock is the seed's lighter form: its hash summarises only the *counters*, not the
//! events; it can tell "same knowledge" from "different", and with the entries it tells
//! happened-before or concurrency, but it cannot name which events one side misses, nor
//! verify that a peer's counters correspond to real events (a lying peer can inflate them;
//! the mesh layer must bound what it accepts).
//!
//! The merge (element-wise max) is a join-semilattice: commutative, associative and
//! idempotent (property tests below), so clocks converge whatever order gossip arrives in.
//! Exclusive ownership of a task is *not* something a merge gives: two peers can claim
//! concurrently, and both claims survive a merge. [`tie_break`] is the deterministic order
//! every peer applies to concurrent claims: by causality first, then by the clock's sum, then
//! by peer ID, so all peers that see the same claims pick the same owner.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How two clocks relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Causality {
    /// Same entries.
    Equal,
    /// `self` happened before `other` (every entry ≤, one <).
    Before,
    /// `self` happened after `other`.
    After,
    /// Neither: concurrent.
    Concurrent,
}

impl Causality {
    /// The seed's integer form: -1 before, 0 concurrent (or equal), 1 after.
    pub fn as_seed_int(self) -> i8 {
        match self {
            Causality::Before => -1,
            Causality::After => 1,
            Causality::Concurrent | Causality::Equal => 0,
        }
    }
}

/// A vector clock owned by one node, with a Merkle root over its entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerkleClock {
    node: String,
    entries: BTreeMap<String, u64>,
}

/// Longest node id accepted from a peer, bytes.
pub const MAX_NODE_ID: usize = 128;
/// Most entries accepted in a peer's clock.
pub const MAX_ENTRIES: usize = 4096;

/// A clock from a peer that breaks the bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    /// Too many entries.
    #[error("clock has {0} entries; at most {MAX_ENTRIES} accepted")]
    TooManyEntries(usize),
    /// A node id is empty or too long.
    #[error("clock entry has an invalid node id of {0} bytes")]
    BadNodeId(usize),
}

impl MerkleClock {
    /// A zero clock owned by `node` (its peer ID).
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            entries: BTreeMap::new(),
        }
    }

    /// The owning node.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Counter of `node` (0 if unseen).
    pub fn get(&self, node: &str) -> u64 {
        self.entries.get(node).copied().unwrap_or(0)
    }

    /// Entries, sorted by node.
    pub fn entries(&self) -> &BTreeMap<String, u64> {
        &self.entries
    }

    /// Sum of all counters (a total-order hint for tie-breaks).
    pub fn sum(&self) -> u128 {
        self.entries.values().map(|v| *v as u128).sum()
    }

    /// A local event: increment this node's counter. Returns the new counter.
    pub fn tick(&mut self) -> u64 {
        let c = self.entries.entry(self.node.clone()).or_insert(0);
        *c = c.saturating_add(1);
        *c
    }

    /// Join without ticking: element-wise max (the semilattice join).
    pub fn merge(&mut self, other: &MerkleClock) {
        for (n, v) in &other.entries {
            let e = self.entries.entry(n.clone()).or_insert(0);
            if *v > *e {
                *e = *v;
            }
        }
    }

    /// The seed's `update`: merge a received clock, then tick (receiving is an event).
    pub fn update(&mut self, other: &MerkleClock) {
        self.merge(other);
        self.tick();
    }

    /// Happened-before comparison.
    pub fn compare(&self, other: &MerkleClock) -> Causality {
        let mut less = false;
        let mut greater = false;
        for n in self.entries.keys().chain(other.entries.keys()) {
            match self.get(n).cmp(&other.get(n)) {
                Ordering::Less => less = true,
                Ordering::Greater => greater = true,
                Ordering::Equal => {}
            }
            if less && greater {
                return Causality::Concurrent;
            }
        }
        match (less, greater) {
            (false, false) => Causality::Equal,
            (true, false) => Causality::Before,
            (false, true) => Causality::After,
            (true, true) => Causality::Concurrent,
        }
    }

    /// Merkle root over the sorted non-zero entries: leaves are
    /// `SHA-256(0x00 || node || 0x00 || counter_be)`, inner nodes
    /// `SHA-256(0x01 || left || right)`, an odd node is promoted; the empty clock hashes to
    /// `SHA-256("")`. Hex, 64 chars.
    pub fn get_hash(&self) -> String {
        let mut level: Vec<[u8; 32]> = self
            .entries
            .iter()
            .filter(|(_, v)| **v > 0)
            .map(|(n, v)| {
                let mut h = Sha256::new();
                h.update([0u8]);
                h.update(n.as_bytes());
                h.update([0u8]);
                h.update(v.to_be_bytes());
                h.finalize().into()
            })
            .collect();
        if level.is_empty() {
            return hex(&Sha256::digest([]).into());
        }
        while level.len() > 1 {
            level = level
                .chunks(2)
                .map(|c| match c {
                    [a, b] => {
                        let mut h = Sha256::new();
                        h.update([1u8]);
                        h.update(a);
                        h.update(b);
                        h.finalize().into()
                    }
                    [a] => *a,
                    _ => unreachable!("chunks(2) yields 1 or 2"),
                })
                .collect();
        }
        hex(&level[0])
    }

    /// Check a clock received from a peer against size bounds.
    pub fn validate(&self) -> Result<(), ClockError> {
        if self.entries.len() > MAX_ENTRIES {
            return Err(ClockError::TooManyEntries(self.entries.len()));
        }
        for n in self.entries.keys().chain(std::iter::once(&self.node)) {
            if n.is_empty() || n.len() > MAX_NODE_ID {
                return Err(ClockError::BadNodeId(n.len()));
            }
        }
        Ok(())
    }
}

fn hex(b: &[u8; 32]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Deterministic order of two claims `(clock, peer_id)`: `Less` means `a` wins. A claim that
/// happened before the other wins (it was made first, knowingly); concurrent claims are
/// ordered by clock sum, then by peer ID. Total and the same on every peer.
pub fn tie_break(a: (&MerkleClock, &str), b: (&MerkleClock, &str)) -> Ordering {
    match a.0.compare(b.0) {
        Causality::Before => Ordering::Less,
        Causality::After => Ordering::Greater,
        Causality::Equal | Causality::Concurrent => {
            a.0.sum().cmp(&b.0.sum()).then_with(|| a.1.cmp(b.1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn clock(node: &str, e: &[(&str, u64)]) -> MerkleClock {
        let mut c = MerkleClock::new(node);
        for (n, v) in e {
            c.entries.insert(n.to_string(), *v);
        }
        c
    }

    #[test]
    fn seed_example_flow() {
        let mut a = MerkleClock::new("node-123");
        a.tick();
        let b = MerkleClock::new("node-456");
        a.update(&b);
        assert_eq!(a.get("node-123"), 2);
        assert_eq!(a.compare(&b), Causality::After);
        assert_eq!(b.compare(&a).as_seed_int(), -1);
        assert_eq!(a.get_hash().len(), 64);
    }

    #[test]
    fn concurrent_and_equal() {
        let a = clock("a", &[("a", 1)]);
        let b = clock("b", &[("b", 1)]);
        assert_eq!(a.compare(&b), Causality::Concurrent);
        assert_eq!(a.compare(&a.clone()), Causality::Equal);
        assert_ne!(a.get_hash(), b.get_hash());
        // Zero entries do not change the hash (absent == 0).
        assert_eq!(clock("x", &[("a", 1), ("b", 0)]).get_hash(), a.get_hash());
    }

    #[test]
    fn tie_break_is_deterministic() {
        let a = clock("a", &[("a", 1)]);
        let b = clock("b", &[("b", 1)]);
        assert_eq!(tie_break((&a, "a"), (&b, "b")), Ordering::Less);
        assert_eq!(tie_break((&b, "b"), (&a, "a")), Ordering::Greater);
        let later = clock("a", &[("a", 1), ("b", 5)]);
        assert_eq!(tie_break((&a, "z"), (&later, "a")), Ordering::Less);
    }

    #[test]
    fn validate_bounds() {
        assert!(clock("a", &[("a", 1)]).validate().is_ok());
        assert!(clock("", &[]).validate().is_err());
        assert!(clock("a", &[(&"x".repeat(200), 1)]).validate().is_err());
    }

    fn arb_clock() -> impl Strategy<Value = MerkleClock> {
        proptest::collection::btree_map("[a-e]", 0u64..20, 0..5).prop_map(|m| MerkleClock {
            node: "p".into(),
            entries: m,
        })
    }

    proptest! {
        #[test]
        fn merge_is_commutative(a in arb_clock(), b in arb_clock()) {
            let mut x = a.clone(); x.merge(&b);
            let mut y = b.clone(); y.merge(&a);
            prop_assert_eq!(x.entries, y.entries);
        }

        #[test]
        fn merge_is_associative(a in arb_clock(), b in arb_clock(), c in arb_clock()) {
            let mut x = a.clone(); x.merge(&b); x.merge(&c);
            let mut bc = b.clone(); bc.merge(&c);
            let mut y = a.clone(); y.merge(&bc);
            prop_assert_eq!(x.entries, y.entries);
        }

        #[test]
        fn merge_is_idempotent(a in arb_clock(), b in arb_clock()) {
            let mut x = a.clone(); x.merge(&b);
            let once = x.clone();
            x.merge(&b);
            prop_assert_eq!(&x, &once);
            let mut s = a.clone(); s.merge(&a);
            prop_assert_eq!(s, a);
        }

        #[test]
        fn merge_is_an_upper_bound(a in arb_clock(), b in arb_clock()) {
            let mut x = a.clone(); x.merge(&b);
            prop_assert!(matches!(a.compare(&x), Causality::Before | Causality::Equal));
            prop_assert!(matches!(b.compare(&x), Causality::Before | Causality::Equal));
        }

        #[test]
        fn compare_is_antisymmetric(a in arb_clock(), b in arb_clock()) {
            let ab = a.compare(&b);
            let ba = b.compare(&a);
            let flipped = match ab {
                Causality::Before => Causality::After,
                Causality::After => Causality::Before,
                c => c,
            };
            prop_assert_eq!(ba, flipped);
        }

        #[test]
        fn equal_hash_iff_equal_entries(a in arb_clock(), b in arb_clock()) {
            let eq = a.compare(&b) == Causality::Equal;
            prop_assert_eq!(a.get_hash() == b.get_hash(), eq);
        }

        /// `compare` agrees with happened-before in a simulated message history: an event
        /// that was sent and then received is Before the receive event; events with no path
        /// between them are Concurrent.
        #[test]
        fn compare_agrees_with_happened_before(ops in proptest::collection::vec((0usize..3, 0usize..3), 1..30)) {
            let names = ["a", "b", "c"];
            let mut clocks: Vec<MerkleClock> = names.iter().map(|n| MerkleClock::new(*n)).collect();
            // History of (clock snapshot, set of predecessor event ids) to compute → exactly.
            let mut events: Vec<(MerkleClock, std::collections::BTreeSet<usize>)> = Vec::new();
            let mut last: Vec<Option<usize>> = vec![None; 3];
            for (from, to) in ops {
                // A send event at `from`.
                clocks[from].tick();
                let mut preds = last[from].map(|i| { let mut p = events[i].1.clone(); p.insert(i); p }).unwrap_or_default();
                let send_id = events.len();
                events.push((clocks[from].clone(), preds.clone()));
                last[from] = Some(send_id);
                if to != from {
                    // The receive event at `to`.
                    let msg = clocks[from].clone();
                    clocks[to].update(&msg);
                    preds.insert(send_id);
                    if let Some(i) = last[to] { preds.extend(events[i].1.iter().copied()); preds.insert(i); }
                    events.push((clocks[to].clone(), preds));
                    last[to] = Some(events.len() - 1);
                }
            }
            for (i, (ci, pi)) in events.iter().enumerate() {
                for (j, (cj, pj)) in events.iter().enumerate() {
                    if i == j { continue; }
                    let want = if pj.contains(&i) { Causality::Before }
                        else if pi.contains(&j) { Causality::After }
                        else { Causality::Concurrent };
                    prop_assert_eq!(ci.compare(cj), want, "events {} and {}", i, j);
                }
            }
        }

        #[test]
        fn tie_break_is_a_total_order(a in arb_clock(), b in arb_clock(), pa in "[a-c]", pb in "[a-c]") {
            let x = tie_break((&a, &pa), (&b, &pb));
            let y = tie_break((&b, &pb), (&a, &pa));
            prop_assert_eq!(x, y.reverse());
        }
    }
}
