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

/// How [`place`] ranks the eligible peers of a task (the `strategy` of
/// `rebalance_p2p_tasks`). Every strategy first drops peers lacking a required label, and
/// every key ends with "this node first" (a tie keeps a task where it is) and the rendezvous
/// weight ([`super::lease::weight`]), so the choice is total and the same on every node.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum PlaceBy {
    /// Projected load ((running + queued) / max) first, then Hamming distance.
    Load,
    /// Ping round-trip time first (this node counts as 0 ms), then load.
    Latency,
    /// Hamming distance first, then load: the seed's selection, used to place new tasks.
    Proximity,
}

impl std::str::FromStr for PlaceBy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "load" => Ok(Self::Load),
            "latency" => Ok(Self::Latency),
            "proximity" => Ok(Self::Proximity),
            o => Err(format!(
                "unknown strategy {o:?}; expected load, latency or proximity"
            )),
        }
    }
}

/// A peer as [`place`] sees it: its labels, its load and how far it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    /// Peer ID.
    pub peer_id: String,
    /// Capability labels.
    pub capabilities: Vec<String>,
    /// Tasks running there.
    pub running: usize,
    /// Tasks waiting there (grows as [`place`] assigns).
    pub queued: usize,
    /// Its `max_concurrent_tasks` (0: takes nothing).
    pub max: usize,
    /// Ping round trip, ms (`None`: unknown, ranks last under [`PlaceBy::Latency`]).
    pub rtt_ms: Option<f64>,
    /// This node (wins ties, so equal options leave a task where it is).
    pub local: bool,
}

/// Place tasks `(task id, required labels)` on `slots`, in the order given (most urgent
/// first). A peer lacking a required label is never chosen; among the rest the
/// [`PlaceBy`] decides, and each assignment counts as queued load on its peer, so a batch
/// spreads instead of piling on the peer that looked idlest. `None`: no peer has every
/// required label (or none takes tasks).
pub fn place<'a, I>(
    tasks: I,
    slots: &mut [Slot],
    strategy: PlaceBy,
) -> Vec<(String, Option<String>)>
where
    I: IntoIterator<Item = (&'a str, &'a [String])>,
{
    let caps: Vec<BTreeSet<String>> = slots
        .iter()
        .map(|s| s.capabilities.iter().cloned().collect())
        .collect();
    tasks
        .into_iter()
        .map(|(task, requires)| {
            let reqs: BTreeSet<String> = requires.iter().cloned().collect();
            let best = (0..slots.len())
                .filter(|&i| slots[i].max > 0 && reqs.is_subset(&caps[i]))
                .min_by_key(|&i| {
                    let s = &slots[i];
                    let dist = caps[i].symmetric_difference(&reqs).count();
                    let load = ((s.running + s.queued) as u64 * 1_000_000) / s.max as u64;
                    let rtt = if s.local {
                        0
                    } else {
                        s.rtt_ms.map(|r| (r * 1000.0) as u64).unwrap_or(u64::MAX)
                    };
                    let (a, b, c) = match strategy {
                        PlaceBy::Load => (load, dist as u64, 0),
                        PlaceBy::Latency => (rtt, load, 0),
                        PlaceBy::Proximity => (dist as u64, load, 0),
                    };
                    (
                        a,
                        b,
                        c,
                        !s.local,
                        std::cmp::Reverse(super::lease::weight(task, &s.peer_id)),
                        s.peer_id.clone(),
                    )
                });
            match best {
                Some(i) => {
                    slots[i].queued += 1;
                    (task.to_string(), Some(slots[i].peer_id.clone()))
                }
                None => (task.to_string(), None),
            }
        })
        .collect()
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

    fn slot(id: &str, caps: &[&str], running: usize, max: usize) -> Slot {
        Slot {
            peer_id: id.into(),
            capabilities: caps.iter().map(|s| s.to_string()).collect(),
            running,
            queued: 0,
            max,
            rtt_ms: Some(1.0),
            local: false,
        }
    }

    #[test]
    fn place_spreads_a_batch_and_keeps_cuda_for_cuda() {
        let mut slots = vec![
            slot("a", &["linux"], 0, 2),
            slot("b", &["linux"], 0, 2),
            slot("g", &["linux", "cuda"], 0, 2),
        ];
        let none: Vec<String> = vec![];
        let cuda = s(&["cuda"]);
        let mut tasks: Vec<(String, Vec<String>)> =
            (0..6).map(|i| (format!("t{i}"), none.clone())).collect();
        tasks.push(("gpu".into(), cuda.clone()));
        let placed = place(
            tasks.iter().map(|(t, r)| (t.as_str(), r.as_slice())),
            &mut slots,
            PlaceBy::Proximity,
        );
        let on = |p: &str| {
            placed
                .iter()
                .filter(|(_, o)| o.as_deref() == Some(p))
                .count()
        };
        assert_eq!((on("a"), on("b"), on("g")), (3, 3, 1), "{placed:?}");
        assert_eq!(placed.last().unwrap().1.as_deref(), Some("g"));
        let rocm = s(&["rocm"]);
        let p = place([("x", rocm.as_slice())], &mut slots, PlaceBy::Load);
        assert_eq!(p[0].1, None);
    }

    #[test]
    fn latency_prefers_the_near_peer_and_ties_stay_local() {
        let mut slots = vec![slot("far", &[], 0, 4), slot("near", &[], 0, 4)];
        slots[0].rtt_ms = Some(80.0);
        slots[1].rtt_ms = Some(2.0);
        let none: Vec<String> = vec![];
        let p = place([("t", none.as_slice())], &mut slots, PlaceBy::Latency);
        assert_eq!(p[0].1.as_deref(), Some("near"));
        let mut slots = vec![slot("me", &[], 1, 4), slot("other", &[], 1, 4)];
        slots[0].local = true;
        let p = place([("t", none.as_slice())], &mut slots, PlaceBy::Load);
        assert_eq!(p[0].1.as_deref(), Some("me"));
        assert_eq!("load".parse::<PlaceBy>(), Ok(PlaceBy::Load));
        assert!(
            "fastest"
                .parse::<PlaceBy>()
                .unwrap_err()
                .contains("fastest")
        );
    }

    proptest! {
        #[test]
        fn place_never_breaks_a_requirement_and_balances_equal_peers(
            peers in proptest::collection::vec(proptest::collection::btree_set("[a-c]", 0..3), 1..5),
            tasks in proptest::collection::vec(proptest::collection::btree_set("[a-c]", 0..2), 0..40),
            strategy in prop_oneof![Just(PlaceBy::Load), Just(PlaceBy::Latency), Just(PlaceBy::Proximity)],
        ) {
            let mut slots: Vec<Slot> = peers.iter().enumerate().map(|(i, caps)| Slot {
                peer_id: format!("p{i}"),
                capabilities: caps.iter().cloned().collect(),
                running: 0, queued: 0, max: 2, rtt_ms: Some(1.0), local: i == 0,
            }).collect();
            let specs: Vec<(String, Vec<String>)> = tasks.iter().enumerate()
                .map(|(i, r)| (format!("t{i}"), r.iter().cloned().collect())).collect();
            let placed = place(specs.iter().map(|(t, r)| (t.as_str(), r.as_slice())), &mut slots, strategy);
            prop_assert_eq!(placed.len(), specs.len());
            for ((_, req), (_, on)) in specs.iter().zip(&placed) {
                let able: Vec<&Slot> = slots.iter().filter(|s| satisfies(&s.capabilities, req)).collect();
                match on {
                    Some(p) => {
                        let s = slots.iter().find(|s| &s.peer_id == p).unwrap();
                        prop_assert!(satisfies(&s.capabilities, req));
                    }
                    None => prop_assert!(able.is_empty()),
                }
            }
            // Identical peers and no requirements: loads differ by at most one.
            let mut same: Vec<Slot> = (0..peers.len()).map(|i| Slot {
                peer_id: format!("p{i}"), capabilities: vec![], running: 0, queued: 0, max: 3,
                rtt_ms: Some(1.0), local: false,
            }).collect();
            let none: Vec<String> = vec![];
            let n = tasks.len();
            let ids: Vec<String> = (0..n).map(|i| format!("u{i}")).collect();
            place(ids.iter().map(|t| (t.as_str(), none.as_slice())), &mut same, PlaceBy::Proximity);
            let hi = same.iter().map(|s| s.queued).max().unwrap();
            let lo = same.iter().map(|s| s.queued).min().unwrap();
            prop_assert!(hi - lo <= 1, "{:?}", same.iter().map(|s| s.queued).collect::<Vec<_>>());
        }
    }
}
