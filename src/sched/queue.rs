//! The local task queue: a [`FibonacciHeap`] of waiting tasks keyed by effective priority,
//! with starvation boost through decrease-key. Pure: no I/O, `now` is passed in.
//!
//! A task's effective key is `base_priority × factor^boosts` (fixed point, micro-units),
//! where `boosts = ⌊waited / boost_interval⌋`. Because every waiting task is boosted by the
//! same factor per interval, boosting never reorders tasks that wait together; it lets a task
//! that has waited long overtake newer, nominally more urgent ones (priority aging). Ties
//! break by submission sequence (FIFO). The key is a pure function of
//! `(base, enqueued_at, seq, now)`, so after a restart the queue comes back in the same order.

use std::collections::HashMap;

use super::fib_heap::{FibonacciHeap, Handle};
use crate::clock::Millis;

/// Fixed-point scale of effective keys: priority 1 = 1_000_000.
pub const KEY_SCALE: f64 = 1_000_000.0;
/// Boosts stop counting after this many (the key is then effectively 0 for any factor < 1).
pub const MAX_BOOSTS: u32 = 10_000;

/// Heap key: effective priority (fixed point, lower first), then sequence (FIFO).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueKey {
    /// Effective priority × [`KEY_SCALE`].
    pub effective: u64,
    /// Submission sequence number; lower was submitted first.
    pub seq: u64,
}

impl QueueKey {
    /// The effective priority as a float for display, e.g. `81.0`.
    pub fn priority(&self) -> f64 {
        self.effective as f64 / KEY_SCALE
    }
}

/// A waiting task as the queue knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueEntry {
    /// Task id.
    pub task_id: String,
    /// Priority as submitted or last set (0..=1000).
    pub base_priority: u16,
    /// When it entered the queue (unix ms); boosts count from here.
    pub enqueued_at: Millis,
    /// Submission sequence (FIFO tie-break).
    pub seq: u64,
    /// Boosts applied so far.
    pub boosts: u32,
}

/// Errors of queue operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The task is not waiting in this queue (it runs, finished, or never existed).
    #[error("task {0} is not waiting in the queue")]
    NotQueued(String),
    /// The task is already queued.
    #[error("task {0} is already queued")]
    AlreadyQueued(String),
}

/// Effective key for `base` priority after `boosts` boosts by `factor` (pure).
pub fn effective_key(base: u16, boosts: u32, factor: f64) -> u64 {
    let b = boosts.min(MAX_BOOSTS) as i32;
    let v = base as f64 * KEY_SCALE * factor.powi(b);
    if v.is_finite() && v > 0.0 {
        v.round() as u64
    } else {
        0
    }
}

/// Boosts due after waiting from `enqueued_at` to `now` with `interval_ms` (pure).
pub fn due_boosts(enqueued_at: Millis, now: Millis, interval_ms: Millis) -> u32 {
    if interval_ms <= 0 || now <= enqueued_at {
        return 0;
    }
    (((now - enqueued_at) / interval_ms) as u64).min(MAX_BOOSTS as u64) as u32
}

/// The local task queue.
#[derive(Debug)]
pub struct TaskQueue {
    heap: FibonacciHeap<QueueKey, QueueEntry>,
    index: HashMap<String, Handle>,
    factor: f64,
    interval_ms: Millis,
}

impl TaskQueue {
    /// A queue boosting by `factor` (in (0, 1]; 1 disables boosting) every `interval_ms`.
    pub fn new(factor: f64, interval_ms: Millis) -> Self {
        Self {
            heap: FibonacciHeap::new(),
            index: HashMap::new(),
            factor,
            interval_ms: interval_ms.max(1),
        }
    }

    /// Number of waiting tasks.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no task waits.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Whether `task_id` waits here.
    pub fn contains(&self, task_id: &str) -> bool {
        self.index.contains_key(task_id)
    }

    /// Add a task. Its boosts are computed from `enqueued_at` and `now`, so re-queueing a
    /// restored task gives it the key it would have had. O(1) amortised.
    pub fn push(
        &mut self,
        task_id: &str,
        base_priority: u16,
        enqueued_at: Millis,
        seq: u64,
        now: Millis,
    ) -> Result<QueueKey, QueueError> {
        if self.index.contains_key(task_id) {
            return Err(QueueError::AlreadyQueued(task_id.into()));
        }
        let boosts = if self.factor < 1.0 {
            due_boosts(enqueued_at, now, self.interval_ms)
        } else {
            0
        };
        let key = QueueKey {
            effective: effective_key(base_priority, boosts, self.factor),
            seq,
        };
        let entry = QueueEntry {
            task_id: task_id.into(),
            base_priority,
            enqueued_at,
            seq,
            boosts,
        };
        let h = self.heap.insert(key, entry);
        self.index.insert(task_id.into(), h);
        Ok(key)
    }

    /// The most urgent waiting task and its key, without removing it.
    pub fn peek(&self) -> Option<(&QueueEntry, QueueKey)> {
        self.heap.peek_min().map(|(_, k, v)| (v, *k))
    }

    /// Remove and return the most urgent waiting task. O(log n) amortised.
    pub fn pop(&mut self) -> Option<(QueueEntry, QueueKey)> {
        let (_, k, v) = self.heap.extract_min()?;
        self.index.remove(&v.task_id);
        Some((v, k))
    }

    /// Remove a waiting task (cancel). O(log n) amortised.
    pub fn remove(&mut self, task_id: &str) -> Result<QueueEntry, QueueError> {
        let h = self
            .index
            .remove(task_id)
            .ok_or_else(|| QueueError::NotQueued(task_id.into()))?;
        self.heap
            .delete(h)
            .map(|(_, v)| v)
            .ok_or_else(|| QueueError::NotQueued(task_id.into()))
    }

    /// Change a waiting task's base priority. Raising urgency (a lower number) is a
    /// decrease-key, O(1) amortised; lowering it re-inserts the task. Its wait (and so its
    /// boosts) is kept.
    pub fn set_priority(
        &mut self,
        task_id: &str,
        base_priority: u16,
        now: Millis,
    ) -> Result<QueueKey, QueueError> {
        let h = *self
            .index
            .get(task_id)
            .ok_or_else(|| QueueError::NotQueued(task_id.into()))?;
        let (old_key, entry) = match self.heap.get(h) {
            Some((k, v)) => (*k, v.clone()),
            None => return Err(QueueError::NotQueued(task_id.into())),
        };
        let key = QueueKey {
            effective: effective_key(base_priority, entry.boosts, self.factor),
            seq: old_key.seq,
        };
        if key <= old_key {
            self.heap
                .decrease_key(h, key)
                .map_err(|_| QueueError::NotQueued(task_id.into()))?;
            if let Some(v) = self.heap.get_mut_value(h) {
                v.base_priority = base_priority;
            }
            Ok(key)
        } else {
            self.remove(task_id)?;
            let mut e = entry;
            e.base_priority = base_priority;
            let h = self.heap.insert(key, e);
            self.index.insert(task_id.into(), h);
            let _ = now;
            Ok(key)
        }
    }

    /// Apply every boost that is due at `now`, each through decrease-key. Returns how many
    /// tasks were boosted. O(n) per call, O(1) amortised per boosted task.
    pub fn boost(&mut self, now: Millis) -> usize {
        if self.factor >= 1.0 {
            return 0;
        }
        let mut due = Vec::new();
        for (h, k, v) in self.heap.iter() {
            let b = due_boosts(v.enqueued_at, now, self.interval_ms);
            if b > v.boosts {
                due.push((
                    h,
                    b,
                    QueueKey {
                        effective: effective_key(v.base_priority, b, self.factor),
                        seq: k.seq,
                    },
                ));
            }
        }
        let n = due.len();
        for (h, b, key) in due {
            if self.heap.decrease_key(h, key).is_ok()
                && let Some(v) = self.heap.get_mut_value(h)
            {
                v.boosts = b;
            }
        }
        n
    }

    /// Waiting tasks in heap order (most urgent first), with their keys. O(n log n).
    pub fn ordered(&self) -> Vec<(&QueueEntry, QueueKey)> {
        let mut v: Vec<_> = self.heap.iter().map(|(_, k, e)| (e, *k)).collect();
        v.sort_by_key(|(_, k)| *k);
        v
    }

    /// The key of a waiting task.
    pub fn key_of(&self, task_id: &str) -> Option<QueueKey> {
        let h = self.index.get(task_id)?;
        self.heap.get(*h).map(|(k, _)| *k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pops_in_priority_then_fifo_order() {
        let mut q = TaskQueue::new(0.9, 1000);
        q.push("c", 5, 0, 3, 0).unwrap();
        q.push("a", 1, 0, 1, 0).unwrap();
        q.push("b", 5, 0, 2, 0).unwrap();
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(e, _)| e.task_id)).collect();
        assert_eq!(order, ["a", "b", "c"]);
    }

    #[test]
    fn starvation_boost_lets_old_task_overtake() {
        let mut q = TaskQueue::new(0.9, 1000);
        q.push("old", 100, 0, 1, 0).unwrap();
        // 7 intervals later: 100 * 0.9^7 = 47.8 < 50
        assert_eq!(q.boost(7_000), 1);
        q.push("new", 50, 7_000, 2, 7_000).unwrap();
        assert_eq!(q.pop().unwrap().0.task_id, "old");
        assert!((q.pop().unwrap().1.priority() - 50.0).abs() < 1e-9);
    }

    #[test]
    fn restored_task_gets_boosts_it_earned() {
        let mut q = TaskQueue::new(0.9, 1000);
        let k = q.push("t", 100, 0, 1, 2_500).unwrap();
        assert_eq!(k.effective, effective_key(100, 2, 0.9));
    }

    #[test]
    fn set_priority_both_ways_and_remove() {
        let mut q = TaskQueue::new(1.0, 1000);
        q.push("a", 10, 0, 1, 0).unwrap();
        q.push("b", 20, 0, 2, 0).unwrap();
        q.set_priority("b", 5, 0).unwrap();
        assert_eq!(q.peek().unwrap().0.task_id, "b");
        q.set_priority("b", 30, 0).unwrap();
        assert_eq!(q.peek().unwrap().0.task_id, "a");
        assert_eq!(q.remove("a").unwrap().task_id, "a");
        assert_eq!(q.remove("a"), Err(QueueError::NotQueued("a".into())));
        assert!(q.push("b", 1, 0, 9, 0).is_err());
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn factor_one_never_boosts() {
        let mut q = TaskQueue::new(1.0, 10);
        q.push("a", 10, 0, 1, 0).unwrap();
        assert_eq!(q.boost(1_000_000), 0);
        assert_eq!(q.key_of("a").unwrap().effective, 10_000_000);
    }

    proptest! {
        /// The queue pops in the order of a sorted model of (effective key, seq) at `now`.
        #[test]
        fn matches_sorted_model(items in proptest::collection::vec((0u16..=1000, 0i64..100_000), 1..60),
                                now in 0i64..200_000) {
            let mut q = TaskQueue::new(0.9, 5_000);
            let mut model = Vec::new();
            for (i, (p, at)) in items.iter().enumerate() {
                let at = (*at).min(now);
                q.push(&format!("t{i}"), *p, at, i as u64, at).unwrap();
                let b = due_boosts(at, now, 5_000);
                model.push((effective_key(*p, b, 0.9), i as u64));
            }
            q.boost(now);
            model.sort();
            let got: Vec<_> = std::iter::from_fn(|| q.pop().map(|(_, k)| (k.effective, k.seq))).collect();
            prop_assert_eq!(got, model);
        }

        #[test]
        fn effective_key_monotone_in_boosts(p in 0u16..=1000, b in 0u32..500, f in 0.01f64..1.0) {
            prop_assert!(effective_key(p, b + 1, f) <= effective_key(p, b, f));
        }
    }
}
