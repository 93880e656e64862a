//! Peer selection by Hamming distance between capability and requirement vectors (the
//! seed's algorithm), with hard requirements first and load as the tie-breaker. Pure.
//!
//! The seed compared two label *lists* position by position, which makes the distance depend
//! on list order. Here both sides are bit vectors over the union of labels (a label is a
//! dimension, present = 1), so the Hamming distance is the size of the symmetric difference:
//! labels the task requires that the peer lacks, plus labels the peer has that the task does
//! not need. The second term keeps special hardware free: a task with no GPU requirement
//! prefers a plain peer over a GPU peer.
//!
//! Order of choice:
//! 1. hard requirements: a peer lacking any required label is never chosen (a task that
//!    requires `cuda` never goes to a peer without it);
//! 2. Hamming distance, smaller first;
//! 3. a peer with a free slot before a full one;
//! 4. load (running / max), lower first;
//! 5. peer ID, so every node that runs the selection picks the same peer.

use std::collections::BTreeSet;

/// A candidate peer as the scheduler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Peer ID.
    pub peer_id: String,
    /// Capability labels.
    pub capabilities: Vec<String>,
    /// Tasks running there.
    pub running: usize,
    /// Its `max_concurrent_tasks`.
    pub max: usize,
}

/// Why no peer was chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoPeer {
    /// There are no peers at all.
    #[error("no peers")]
    Empty,
    /// No peer has every required label; names the labels nobody has.
    #[error("no peer has {}", .missing.join(", "))]
    Unmet {
        /// Required labels no peer offers (or, if each is offered somewhere, all required).
        missing: Vec<String>,
    },
}

/// Hamming distance between a capability set and a requirement set: the size of their
/// symmetric difference.
pub fn hamming(caps: &BTreeSet<&str>, reqs: &BTreeSet<&str>) -> usize {
    caps.symmetric_difference(reqs).count()
}

/// Whether `caps` covers every label in `requires`.
pub fn satisfies(caps: &[String], requires: &[String]) -> bool {
    requires.iter().all(|r| caps.iter().any(|c| c == r))
}

/// Rank key of an eligible candidate (smaller is better).
fn key<'a>(c: &'a Candidate, reqs: &BTreeSet<&str>) -> (usize, bool, u64, &'a str) {
    let caps: BTreeSet<&str> = c.capabilities.iter().map(String::as_str).collect();
    let full = c.running >= c.max;
    // load in parts per million, integer for a total order
    let load = if c.max == 0 {
        u64::MAX
    } else {
        (c.running as u64 * 1_000_000) / c.max as u64
    };
    (hamming(&caps, reqs), full, load, c.peer_id.as_str())
}

/// Choose the best peer for a task requiring `requires`. See the module doc for the order.
pub fn select<'a>(peers: &'a [Candidate], requires: &[String]) -> Result<&'a Candidate, NoPeer> {
    if peers.is_empty() {
        return Err(NoPeer::Empty);
    }
    let reqs: BTreeSet<&str> = requires.iter().map(String::as_str).collect();
    peers
        .iter()
        .filter(|p| satisfies(&p.capabilities, requires))
        .min_by(|a, b| key(a, &reqs).cmp(&key(b, &reqs)))
        .ok_or_else(|| {
            let mut missing: Vec<String> = requires
                .iter()
                .filter(|r| !peers.iter().any(|p| p.capabilities.contains(r)))
                .cloned()
                .collect();
            if missing.is_empty() {
                missing = requires.to_vec();
            }
            missing.sort();
            missing.dedup();
            NoPeer::Unmet { missing }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(id: &str, caps: &[&str], running: usize, max: usize) -> Candidate {
        Candidate {
            peer_id: id.into(),
            capabilities: caps.iter().map(|s| s.to_string()).collect(),
            running,
            max,
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn seed_example_distance() {
        let peer: BTreeSet<&str> = ["cuda", "fp16", "large-memory", "fast-network"].into();
        let task: BTreeSet<&str> = ["cuda", "fp16", "large-memory", "slow-network"].into();
        // Order-free: fast-network and slow-network are two differing dimensions.
        assert_eq!(hamming(&peer, &task), 2);
    }

    #[test]
    fn hard_requirement_first_then_distance_then_load() {
        let peers = vec![
            c("gpu", &["linux", "cuda", "gpu"], 0, 4),
            c("cpu-busy", &["linux"], 3, 4),
            c("cpu-idle", &["linux"], 0, 4),
        ];
        assert_eq!(select(&peers, &s(&["cuda"])).unwrap().peer_id, "gpu");
        // No GPU needed: a plain peer, the idle one.
        assert_eq!(select(&peers, &s(&["linux"])).unwrap().peer_id, "cpu-idle");
        assert_eq!(
            select(&peers, &s(&["rocm"])),
            Err(NoPeer::Unmet {
                missing: s(&["rocm"])
            })
        );
        assert_eq!(select(&[], &[]), Err(NoPeer::Empty));
    }

    #[test]
    fn free_slot_beats_full_at_equal_distance() {
        let peers = vec![c("b", &["linux"], 2, 2), c("a", &["linux"], 5, 8)];
        assert_eq!(select(&peers, &s(&["linux"])).unwrap().peer_id, "a");
    }

    proptest! {
        #[test]
        fn never_picks_a_peer_lacking_a_requirement(
            peers in proptest::collection::vec(
                (proptest::collection::btree_set("[a-d]", 0..4), 0usize..5, 1usize..5), 1..6),
            reqs in proptest::collection::btree_set("[a-d]", 0..3),
        ) {
            let cands: Vec<Candidate> = peers.iter().enumerate().map(|(i, (caps, r, m))| Candidate {
                peer_id: format!("p{i}"),
                capabilities: caps.iter().cloned().collect(),
                running: *r,
                max: *m,
            }).collect();
            let reqs: Vec<String> = reqs.into_iter().collect();
            match select(&cands, &reqs) {
                Ok(p) => {
                    prop_assert!(satisfies(&p.capabilities, &reqs));
                    let rs: BTreeSet<&str> = reqs.iter().map(String::as_str).collect();
                    let d = |c: &Candidate| hamming(&c.capabilities.iter().map(String::as_str).collect(), &rs);
                    for o in cands.iter().filter(|o| satisfies(&o.capabilities, &reqs)) {
                        prop_assert!(d(p) <= d(o));
                    }
                }
                Err(_) => prop_assert!(cands.iter().all(|o| !satisfies(&o.capabilities, &reqs))),
            }
            // Deterministic whatever the input order.
            let mut rev = cands.clone();
            rev.reverse();
            prop_assert_eq!(select(&cands, &reqs).map(|p| p.peer_id.clone()), select(&rev, &reqs).map(|p| p.peer_id.clone()));
        }
    }
}
