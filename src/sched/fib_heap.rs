//! An addressable min-priority queue: a Fibonacci heap after Fredman & Tarjan.
//!
//! # Why a Fibonacci heap
//!
//! The scheduler keeps waiting tasks in a min-heap keyed by `(priority, seq)`
//! and periodically *boosts* tasks that have waited too long (starvation
//! avoidance) by lowering their key. A binary heap needs O(log n) per boost
//! (or lazy deletion, which lets stale entries pile up); a Fibonacci heap does
//! `decrease_key` in O(1) amortised time while keeping `extract_min` at
//! O(log n) amortised, which is exactly the shape of that workload.
//!
//! Source: M. L. Fredman and R. E. Tarjan, "Fibonacci heaps and their uses in
//! improved network optimization algorithms", JACM 34(3), 1987, pp. 596–615.
//! Second reference: Cormen, Leiserson, Rivest, Stein, *Introduction to
//! Algorithms*, 3rd ed., ch. 19 ("Fibonacci Heaps"); the helper names here
//! (`consolidate`, `link`, `cut`, `cascading_cut`) follow CLRS.
//!
//! | operation                 | time                                   |
//! |---------------------------|----------------------------------------|
//! | `insert`                  | O(1) amortised (arena may reallocate)  |
//! | `peek_min`, `len`, `get`  | O(1)                                   |
//! | `extract_min`, `delete`   | O(log n) amortised                     |
//! | `decrease_key`            | O(1) amortised                         |
//! | `meld`                    | O(m) for an `other` arena of m slots (O(1) if `self` never held an entry) |
//! | `iter`, `clear`           | O(arena slots)                         |
//!
//! # Example
//!
//! ```
//! use flotilla::sched::fib_heap::{FibonacciHeap, HeapError};
//!
//! // (priority, seq) keys: lower runs first, FIFO among equal priorities.
//! let mut q = FibonacciHeap::new();
//! let build = q.insert((5, 0), "build");
//! let lint = q.insert((3, 1), "lint");
//! q.decrease_key(build, (1, 0))?; // starvation boost
//! assert_eq!(q.extract_min().map(|(_, _, v)| v), Some("build"));
//! assert_eq!(q.decrease_key(build, (0, 0)), Err(HeapError::StaleHandle));
//! assert_eq!(q.delete(lint), Some(((3, 1), "lint")));
//! assert!(q.is_empty());
//! # Ok::<(), HeapError>(())
//! ```
//!
//! # Design: arena + handles with generations
//!
//! Nodes live in one `Vec` (the arena); the tree and list links (`parent`,
//! `child`, `left`, `right`) are `u32` indices into it, so the structure is
//! entirely safe Rust with no `unsafe`, no `Rc`/`RefCell`, and good locality.
//! A removed node's slot goes on a free list and is reused by later inserts.
//!
//! A [`Handle`] is `(index, generation)`. Every time a slot's entry is removed
//! (by `extract_min`, `delete` or `clear`) the slot's generation is bumped, so
//! an old handle no longer matches and is reported as stale
//! ([`HeapError::StaleHandle`] / `None`) instead of silently addressing
//! whatever entry reuses the slot. A slot whose generation reaches
//! `u32::MAX` is retired (never reused), so handles never alias even after
//! 2³² reuses of one slot. Handles are only meaningful for the heap that
//! issued them (or, after [`FibonacciHeap::meld`], translated through the
//! returned [`MeldMap`]); a clone of a heap accepts the same handles as the
//! original.
//!
//! # Ties
//!
//! Entries with equal keys come out in an unspecified order. Callers that
//! need FIFO among equal priorities use a tuple key such as `(priority, seq)`.
//!
//! # Limits
//!
//! The arena holds at most `u32::MAX - 1` slots; exceeding that panics.

use std::fmt;

/// Link value meaning "no node".
const NIL: u32 = u32::MAX;

/// A stable reference to one entry of a [`FibonacciHeap`].
///
/// Returned by [`FibonacciHeap::insert`]; stays valid until that entry is
/// removed (extracted, deleted, cleared). After removal the handle is *stale*:
/// every method taking it reports that (`None` / `false` /
/// [`HeapError::StaleHandle`]) and it never refers to a later entry, because
/// it carries the slot's generation. Cheap to copy (8 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle {
    index: u32,
    generation: u32,
}

/// Errors of [`FibonacciHeap::decrease_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeapError {
    /// The handle's entry was already removed (extracted, deleted, cleared),
    /// or the handle was never issued by this heap.
    #[error(
        "stale heap handle: its entry was already removed (extracted, deleted or cleared) or it does not belong to this heap"
    )]
    StaleHandle,
    /// `decrease_key` was given a key greater than the entry's current key;
    /// the entry is left unchanged.
    #[error(
        "decrease_key refused: the new key is greater than the entry's current key (keys may only decrease)"
    )]
    KeyIncreased,
}

/// Translates handles of a heap consumed by [`FibonacciHeap::meld`] into
/// handles of the heap it was melded into.
///
/// A handle that was live in the consumed heap maps to the handle of the same
/// entry; a handle that was already stale there maps to a handle that is
/// stale in the merged heap too. Mapping a handle that never came from the
/// consumed heap gives an unspecified (possibly valid) handle.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct MeldMap {
    offset: u32,
}

impl MeldMap {
    /// The handle, in the merged heap, of the entry that `old` referred to in
    /// the consumed heap. O(1).
    #[must_use]
    pub fn map(&self, old: Handle) -> Handle {
        Handle {
            // Saturating: an out-of-range result (u32::MAX) is never a valid index.
            index: old.index.saturating_add(self.offset),
            generation: old.generation,
        }
    }
}

/// One arena slot. `entry` is `None` while the slot is vacant (then it is on
/// the free list, unless retired). Links are arena indices or [`NIL`].
#[derive(Clone)]
struct Node<K, V> {
    entry: Option<(K, V)>,
    parent: u32,
    child: u32,
    left: u32,
    right: u32,
    degree: u32,
    generation: u32,
    /// Fredman–Tarjan mark: this non-root node lost a child since it last
    /// became a child of another node.
    mark: bool,
}

/// A min-ordered Fibonacci heap of `(key, value)` entries with stable handles.
///
/// Shape: a collection of heap-ordered trees (every parent's key `<=` its
/// children's keys) whose roots form a circular doubly-linked *root list*,
/// with a pointer to a root of minimum key; children of a node form a
/// circular doubly-linked list too. Trees are only merged ("consolidated") by
/// [`extract_min`](Self::extract_min), which keeps the maximum degree below
/// `log_φ n ≈ 1.44 log₂ n` (Fredman & Tarjan 1987, Lemma 1; CLRS §19.4).
///
/// See the [module docs](self) for the paper, complexities and the handle
/// design.
#[derive(Clone)]
pub struct FibonacciHeap<K, V> {
    nodes: Vec<Node<K, V>>,
    /// Vacant, non-retired slots, reused LIFO.
    free: Vec<u32>,
    /// A root with minimum key, or `NIL` when empty.
    min: u32,
    len: usize,
    /// Scratch degree table for `consolidate`; all `NIL` between calls.
    degree_table: Vec<u32>,
}

impl<K, V> Default for FibonacciHeap<K, V> {
    /// Same as [`FibonacciHeap::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for FibonacciHeap<K, V> {
    /// Prints the live entries in arena order (not key order).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.nodes.iter().filter_map(|n| n.entry.as_ref()))
            .finish()
    }
}

impl<K, V> FibonacciHeap<K, V> {
    /// An empty heap; allocates nothing. O(1).
    #[must_use]
    pub fn new() -> Self {
        FibonacciHeap {
            nodes: Vec::new(),
            free: Vec::new(),
            min: NIL,
            len: 0,
            degree_table: Vec::new(),
        }
    }

    /// An empty heap whose arena has room for `n` entries before
    /// reallocating. O(1) plus the allocation.
    #[must_use]
    pub fn with_capacity(n: usize) -> Self {
        FibonacciHeap {
            nodes: Vec::with_capacity(n),
            ..Self::new()
        }
    }

    /// Number of live entries. O(1).
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// `true` when the heap holds no entry. O(1).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of entries the arena can hold without reallocating (live and
    /// vacant slots included). O(1).
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.nodes.capacity()
    }

    /// `true` when `h` refers to a live entry of this heap. O(1).
    #[must_use]
    pub fn contains(&self, h: Handle) -> bool {
        self.live_index(h).is_some()
    }

    /// The key and value of the entry `h` refers to, or `None` if `h` is
    /// stale. O(1).
    #[must_use]
    pub fn get(&self, h: Handle) -> Option<(&K, &V)> {
        let i = self.live_index(h)?;
        self.nodes[i].entry.as_ref().map(|(k, v)| (k, v))
    }

    /// Mutable access to the value (not the key: use
    /// [`decrease_key`](Self::decrease_key) for that) of the entry `h` refers
    /// to, or `None` if `h` is stale. O(1).
    #[must_use]
    pub fn get_mut_value(&mut self, h: Handle) -> Option<&mut V> {
        let i = self.live_index(h)?;
        self.nodes[i].entry.as_mut().map(|(_, v)| v)
    }

    /// All live entries with their handles, in **arena order** (roughly
    /// insertion order with reused slots interleaved), *not* key order.
    /// O(arena slots) for the whole iteration.
    pub fn iter(&self) -> impl Iterator<Item = (Handle, &K, &V)> {
        self.nodes.iter().enumerate().filter_map(|(i, n)| {
            n.entry.as_ref().map(|(k, v)| {
                (
                    Handle {
                        index: i as u32,
                        generation: n.generation,
                    },
                    k,
                    v,
                )
            })
        })
    }

    /// Removes every entry, making all outstanding handles stale; keeps the
    /// arena's allocation for reuse. O(arena slots).
    pub fn clear(&mut self) {
        self.free.clear();
        for (i, n) in self.nodes.iter_mut().enumerate() {
            if n.entry.take().is_some() {
                n.generation += 1;
            }
            if n.generation != u32::MAX {
                self.free.push(i as u32);
            }
        }
        self.min = NIL;
        self.len = 0;
    }

    // ----- internals -------------------------------------------------------

    #[inline]
    fn node(&self, i: u32) -> &Node<K, V> {
        &self.nodes[i as usize]
    }

    #[inline]
    fn node_mut(&mut self, i: u32) -> &mut Node<K, V> {
        &mut self.nodes[i as usize]
    }

    #[inline]
    fn key(&self, i: u32) -> &K {
        match &self.node(i).entry {
            Some((k, _)) => k,
            None => unreachable!("FibonacciHeap: link to a vacant slot {i}"),
        }
    }

    /// Arena index of `h` if it refers to a live entry.
    #[inline]
    fn live_index(&self, h: Handle) -> Option<usize> {
        let n = self.nodes.get(h.index as usize)?;
        (n.generation == h.generation && n.entry.is_some()).then_some(h.index as usize)
    }

    /// Takes a slot (reused or new) and fills it as a singleton, unmarked,
    /// parentless node. Does not link it anywhere.
    fn alloc(&mut self, key: K, value: V) -> u32 {
        if let Some(i) = self.free.pop() {
            let n = self.node_mut(i);
            debug_assert!(n.entry.is_none());
            n.entry = Some((key, value));
            n.parent = NIL;
            n.child = NIL;
            n.left = i;
            n.right = i;
            n.degree = 0;
            n.mark = false;
            i
        } else {
            let i = self.nodes.len();
            assert!(
                i < NIL as usize,
                "FibonacciHeap: arena full (at most u32::MAX - 1 slots)"
            );
            let i = i as u32;
            self.nodes.push(Node {
                entry: Some((key, value)),
                parent: NIL,
                child: NIL,
                left: i,
                right: i,
                degree: 0,
                generation: 0,
                mark: false,
            });
            i
        }
    }

    /// Vacates slot `i` (already unlinked), bumping its generation and
    /// recycling it unless the generation is exhausted.
    fn release(&mut self, i: u32) -> (K, V) {
        let n = self.node_mut(i);
        let entry = n
            .entry
            .take()
            .expect("FibonacciHeap: release of a vacant slot");
        n.generation += 1;
        if n.generation != u32::MAX {
            self.free.push(i);
        }
        entry
    }

    /// Concatenates the circular list containing `b` into the circular list
    /// containing `a`, right after `a`. O(1).
    #[inline]
    fn splice(&mut self, a: u32, b: u32) {
        let a_right = self.node(a).right;
        let b_left = self.node(b).left;
        self.node_mut(a).right = b;
        self.node_mut(b).left = a;
        self.node_mut(b_left).right = a_right;
        self.node_mut(a_right).left = b_left;
    }

    /// Unlinks `x` from its sibling list, leaving it a singleton.
    #[inline]
    fn unlink(&mut self, x: u32) {
        let (l, r) = (self.node(x).left, self.node(x).right);
        self.node_mut(l).right = r;
        self.node_mut(r).left = l;
        let n = self.node_mut(x);
        n.left = x;
        n.right = x;
    }
}

impl<K: Ord, V> FibonacciHeap<K, V> {
    /// Adds an entry and returns its handle. O(1) amortised (O(1) worst case
    /// except when the arena grows).
    ///
    /// The new node becomes a singleton tree in the root list (Fredman &
    /// Tarjan §2 "insert"; CLRS `FIB-HEAP-INSERT`).
    ///
    /// # Panics
    /// If the arena would exceed `u32::MAX - 1` slots.
    pub fn insert(&mut self, key: K, value: V) -> Handle {
        let i = self.alloc(key, value);
        self.add_root(i);
        self.len += 1;
        Handle {
            index: i,
            generation: self.node(i).generation,
        }
    }

    /// The entry with the minimum key (any of them on ties), without removing
    /// it. O(1).
    #[must_use]
    pub fn peek_min(&self) -> Option<(Handle, &K, &V)> {
        if self.min == NIL {
            return None;
        }
        let n = self.node(self.min);
        let (k, v) = n.entry.as_ref()?;
        Some((
            Handle {
                index: self.min,
                generation: n.generation,
            },
            k,
            v,
        ))
    }

    /// Removes and returns the entry with the minimum key (any of them on
    /// ties), with its now-stale handle. O(log n) amortised.
    ///
    /// The minimum's children join the root list, then roots of equal degree
    /// are linked pairwise using a degree table until all root degrees differ
    /// (CLRS `FIB-HEAP-EXTRACT-MIN` / `CONSOLIDATE`).
    pub fn extract_min(&mut self) -> Option<(Handle, K, V)> {
        let z = self.min;
        if z == NIL {
            return None;
        }
        let generation = self.node(z).generation;
        // Children become roots (unmarked, parentless), spliced in O(1).
        let c = self.node(z).child;
        if c != NIL {
            let mut w = c;
            loop {
                let n = self.node_mut(w);
                n.parent = NIL;
                n.mark = false;
                w = n.right;
                if w == c {
                    break;
                }
            }
            self.splice(z, c);
            let zn = self.node_mut(z);
            zn.child = NIL;
            zn.degree = 0;
        }
        let r = self.node(z).right;
        if r == z {
            self.min = NIL;
        } else {
            self.unlink(z);
            self.consolidate(r);
        }
        self.len -= 1;
        let (k, v) = self.release(z);
        Some((
            Handle {
                index: z,
                generation,
            },
            k,
            v,
        ))
    }

    /// Lowers the key of the entry `h` refers to. O(1) amortised.
    ///
    /// If the new key breaks heap order with the parent, the node is cut to
    /// the root list, and so is every *marked* ancestor in turn (cascading
    /// cut); the first unmarked non-root ancestor gets marked (Fredman &
    /// Tarjan §2; CLRS `FIB-HEAP-DECREASE-KEY`). An equal key is accepted and
    /// replaces the stored key without moving anything.
    ///
    /// # Errors
    /// * [`HeapError::StaleHandle`] if `h` does not refer to a live entry.
    /// * [`HeapError::KeyIncreased`] if `new_key` is greater than the current
    ///   key; the entry is left unchanged.
    pub fn decrease_key(&mut self, h: Handle, new_key: K) -> Result<(), HeapError> {
        let x = self.live_index(h).ok_or(HeapError::StaleHandle)? as u32;
        {
            let (k, _) = self
                .node_mut(x)
                .entry
                .as_mut()
                .ok_or(HeapError::StaleHandle)?;
            if new_key > *k {
                return Err(HeapError::KeyIncreased);
            }
            *k = new_key;
        }
        let p = self.node(x).parent;
        if p != NIL && self.key(x) < self.key(p) {
            self.cut(x, p);
            self.cascading_cut(p);
        }
        if self.key(x) < self.key(self.min) {
            self.min = x;
        }
        Ok(())
    }

    /// Removes the entry `h` refers to and returns it, or `None` if `h` is
    /// stale. O(log n) amortised.
    ///
    /// Needs no "minus infinity" key: the node is cut to the root list (with
    /// cascading cuts, exactly as a decrease-key to −∞ would do), then made
    /// the heap's minimum pointer and removed by the `extract_min` procedure,
    /// whose consolidation finds the true minimum again (CLRS
    /// `FIB-HEAP-DELETE`, §19.3).
    pub fn delete(&mut self, h: Handle) -> Option<(K, V)> {
        let x = self.live_index(h)? as u32;
        let p = self.node(x).parent;
        if p != NIL {
            self.cut(x, p);
            self.cascading_cut(p);
        }
        self.min = x;
        self.extract_min().map(|(_, k, v)| (k, v))
    }

    /// Moves every entry of `other` into `self` and returns the map that
    /// translates `other`'s handles into handles of `self`. Handles of `self`
    /// stay valid.
    ///
    /// Cost: the root lists are spliced in O(1) as in the paper, but the
    /// arena-based design must also move `other`'s arena to the end of
    /// `self`'s, which is O(m) for `other`'s m arena slots (live and vacant)
    /// plus a possible reallocation. If `self` never held an entry (its arena
    /// is empty), `other`'s arena is taken over in O(1) instead.
    ///
    /// # Panics
    /// If the combined arena would exceed `u32::MAX - 1` slots.
    pub fn meld(&mut self, other: FibonacciHeap<K, V>) -> MeldMap {
        if self.nodes.is_empty() {
            // No handle of `self` exists yet: adopt `other` wholesale.
            *self = other;
            return MeldMap { offset: 0 };
        }
        let base = self.nodes.len();
        assert!(
            base + other.nodes.len() < NIL as usize,
            "FibonacciHeap: arena full (at most u32::MAX - 1 slots)"
        );
        let offset = base as u32;
        let shift = |i: u32| if i == NIL { NIL } else { i + offset };
        self.nodes.reserve(other.nodes.len());
        self.nodes.extend(other.nodes.into_iter().map(|mut n| {
            n.parent = shift(n.parent);
            n.child = shift(n.child);
            n.left = shift(n.left);
            n.right = shift(n.right);
            n
        }));
        self.free.extend(other.free.into_iter().map(|i| i + offset));
        if other.min != NIL {
            let om = other.min + offset;
            if self.min == NIL {
                self.min = om;
            } else {
                self.splice(self.min, om);
                if self.key(om) < self.key(self.min) {
                    self.min = om;
                }
            }
        }
        self.len += other.len;
        MeldMap { offset }
    }

    // ----- internals -------------------------------------------------------

    /// Puts singleton, parentless node `i` into the root list and updates the
    /// minimum pointer.
    #[inline]
    fn add_root(&mut self, i: u32) {
        if self.min == NIL {
            self.min = i;
        } else {
            self.splice(self.min, i);
            if self.key(i) < self.key(self.min) {
                self.min = i;
            }
        }
    }

    /// Makes root `y` a child of root `x` (CLRS `FIB-HEAP-LINK`). `y` must be
    /// already detached from any list the caller still walks by its links.
    #[inline]
    fn link(&mut self, y: u32, x: u32) {
        let c = self.node(x).child;
        {
            let yn = self.node_mut(y);
            yn.parent = x;
            yn.mark = false;
            yn.left = y;
            yn.right = y;
        }
        if c == NIL {
            self.node_mut(x).child = y;
        } else {
            self.splice(c, y);
        }
        self.node_mut(x).degree += 1;
    }

    /// Links roots of equal degree until all root degrees are distinct, then
    /// rebuilds the root list from the degree table and recomputes `min`.
    ///
    /// `start` is any node of the (circular) root list. The walk reads each
    /// unvisited node's `right` before touching it; linking only modifies
    /// already-visited nodes, so the original order is followed to the end.
    fn consolidate(&mut self, start: u32) {
        let mut table = std::mem::take(&mut self.degree_table);
        let mut w = start;
        loop {
            let next = self.node(w).right;
            let mut x = w;
            let mut d = self.node(x).degree as usize;
            loop {
                if d >= table.len() {
                    table.resize(d + 1, NIL);
                }
                let y = table[d];
                if y == NIL {
                    break;
                }
                table[d] = NIL;
                // The smaller key stays a root; ties keep the earlier tree.
                let (parent, child) = if self.key(y) < self.key(x) {
                    (y, x)
                } else {
                    (x, y)
                };
                self.link(child, parent);
                x = parent;
                d += 1;
            }
            table[d] = x;
            if next == start {
                break;
            }
            w = next;
        }
        // Rebuild the root list from the table (which is left all-NIL).
        self.min = NIL;
        let mut first = NIL;
        let mut last = NIL;
        for slot in &mut table {
            let t = std::mem::replace(slot, NIL);
            if t == NIL {
                continue;
            }
            if first == NIL {
                first = t;
                self.min = t;
            } else {
                self.node_mut(last).right = t;
                self.node_mut(t).left = last;
                if self.key(t) < self.key(self.min) {
                    self.min = t;
                }
            }
            last = t;
        }
        if first != NIL {
            self.node_mut(last).right = first;
            self.node_mut(first).left = last;
        }
        self.degree_table = table;
    }

    /// Cuts `x` from its parent `p` and makes it an unmarked root (CLRS
    /// `CUT`).
    fn cut(&mut self, x: u32, p: u32) {
        let r = self.node(x).right;
        if r == x {
            self.node_mut(p).child = NIL;
        } else {
            if self.node(p).child == x {
                self.node_mut(p).child = r;
            }
            self.unlink(x);
        }
        self.node_mut(p).degree -= 1;
        let xn = self.node_mut(x);
        xn.parent = NIL;
        xn.mark = false;
        self.add_root(x);
    }

    /// Walks up from `y`: marks the first unmarked non-root ancestor, cutting
    /// marked ones on the way (CLRS `CASCADING-CUT`, iterative).
    fn cascading_cut(&mut self, mut y: u32) {
        loop {
            let z = self.node(y).parent;
            if z == NIL {
                return;
            }
            if !self.node(y).mark {
                self.node_mut(y).mark = true;
                return;
            }
            self.cut(y, z);
            y = z;
        }
    }
}

/// Test-only structural check; panics on the first violation.
///
/// Checks: heap order along parent links, `degree` == number of children,
/// sibling lists are consistent circular doubly-linked lists, no node is
/// reachable twice (no cycles/sharing), reachable count == `len` == occupied
/// slots, `min` is a root of minimum key, roots are unmarked, the free list
/// holds exactly the vacant non-retired slots, and the degree bound
/// `max degree <= 1.4405 * log2(n) + 2`.
#[cfg(test)]
fn check_invariants<K: Ord + fmt::Debug, V>(h: &FibonacciHeap<K, V>) {
    let slots = h.nodes.len();
    let occupied = h.nodes.iter().filter(|n| n.entry.is_some()).count();
    assert_eq!(occupied, h.len, "len != occupied slots");

    let mut on_free = vec![false; slots];
    for &f in &h.free {
        let n = &h.nodes[f as usize];
        assert!(n.entry.is_none(), "free slot {f} is occupied");
        assert!(!on_free[f as usize], "slot {f} twice on free list");
        assert_ne!(n.generation, u32::MAX, "retired slot {f} on free list");
        on_free[f as usize] = true;
    }
    for (i, n) in h.nodes.iter().enumerate() {
        if n.entry.is_none() && n.generation != u32::MAX {
            assert!(on_free[i], "vacant slot {i} not on free list");
        }
    }

    if h.len == 0 {
        assert_eq!(h.min, NIL, "empty heap with a min pointer");
        return;
    }
    assert_ne!(h.min, NIL, "non-empty heap without min");
    assert_eq!(h.node(h.min).parent, NIL, "min is not a root");

    let mut visited = vec![false; slots];
    let mut count = 0usize;
    let mut max_degree = 0u32;
    let mut work = vec![(h.min, NIL)];
    while let Some((head, parent)) = work.pop() {
        let mut x = head;
        loop {
            let xi = x as usize;
            assert!(xi < slots, "link out of range: {x}");
            assert!(!visited[xi], "node {x} reachable twice (cycle)");
            visited[xi] = true;
            count += 1;
            let n = &h.nodes[xi];
            assert!(n.entry.is_some(), "vacant node {x} linked in");
            assert_eq!(n.parent, parent, "node {x} has the wrong parent");
            if parent == NIL {
                assert!(!n.mark, "root {x} is marked");
                assert!(h.key(h.min) <= h.key(x), "min pointer is not minimal");
            } else {
                assert!(h.key(parent) <= h.key(x), "heap order broken at {x}");
            }
            assert_eq!(h.node(n.right).left, x, "sibling links not mutual");
            // Count children (bounded walk; revisits are caught above later).
            let mut deg = 0u32;
            if n.child != NIL {
                let mut c = n.child;
                loop {
                    deg += 1;
                    assert!((deg as usize) <= slots, "child list of {x} never closes");
                    c = h.node(c).right;
                    if c == n.child {
                        break;
                    }
                }
                work.push((n.child, x));
            }
            assert_eq!(deg, n.degree, "degree of {x} != child count");
            max_degree = max_degree.max(deg);
            x = n.right;
            if x == head {
                break;
            }
        }
    }
    assert_eq!(count, h.len, "reachable nodes != len");
    let bound = 1.4405 * (h.len as f64).log2() + 2.0;
    assert!(
        f64::from(max_degree) <= bound,
        "max degree {max_degree} exceeds bound {bound} for n = {}",
        h.len
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;
    use std::rc::Rc;

    fn roots<K, V>(h: &FibonacciHeap<K, V>) -> Vec<u32> {
        let mut out = Vec::new();
        if h.min == NIL {
            return out;
        }
        let mut x = h.min;
        loop {
            out.push(x);
            x = h.node(x).right;
            if x == h.min {
                break;
            }
        }
        out
    }

    fn children<K, V>(h: &FibonacciHeap<K, V>, p: u32) -> Vec<u32> {
        let mut out = Vec::new();
        let c = h.node(p).child;
        if c == NIL {
            return out;
        }
        let mut x = c;
        loop {
            out.push(x);
            x = h.node(x).right;
            if x == c {
                break;
            }
        }
        out
    }

    fn handle_of<K, V>(h: &FibonacciHeap<K, V>, i: u32) -> Handle {
        Handle {
            index: i,
            generation: h.node(i).generation,
        }
    }

    #[test]
    fn new_default_with_capacity_are_empty() {
        let a: FibonacciHeap<i32, ()> = FibonacciHeap::new();
        let b: FibonacciHeap<i32, ()> = FibonacciHeap::default();
        let c: FibonacciHeap<i32, ()> = FibonacciHeap::with_capacity(100);
        for h in [&a, &b, &c] {
            assert!(h.is_empty());
            assert_eq!(h.len(), 0);
            assert!(h.peek_min().is_none());
            assert_eq!(h.iter().count(), 0);
            check_invariants(h);
        }
        assert!(c.capacity() >= 100);
    }

    #[test]
    fn insert_and_peek_min() {
        let mut h = FibonacciHeap::new();
        let a = h.insert(5, "a");
        assert_eq!(h.peek_min(), Some((a, &5, &"a")));
        let b = h.insert(3, "b");
        assert_eq!(h.peek_min(), Some((b, &3, &"b")));
        h.insert(7, "c");
        assert_eq!(h.peek_min(), Some((b, &3, &"b")));
        assert_eq!(h.len(), 3);
        assert_ne!(a, b);
        check_invariants(&h);
    }

    #[test]
    fn extract_min_yields_sorted_order() {
        let mut h = FibonacciHeap::new();
        let mut x: u64 = 12345;
        let mut keys = Vec::new();
        for i in 0..2000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = (x % 500) as i64;
            keys.push(k);
            h.insert(k, i);
        }
        keys.sort();
        let mut out = Vec::new();
        while let Some((hd, k, _)) = h.extract_min() {
            assert!(!h.contains(hd));
            out.push(k);
            if out.len() % 97 == 0 {
                check_invariants(&h);
            }
        }
        assert_eq!(out, keys);
        assert!(h.is_empty());
        assert!(h.extract_min().is_none());
        check_invariants(&h);
    }

    #[test]
    fn extract_min_returns_value_and_stale_handle() {
        let mut h = FibonacciHeap::new();
        let a = h.insert(2, 'a');
        let b = h.insert(1, 'b');
        assert_eq!(h.extract_min(), Some((b, 1, 'b')));
        assert_eq!(h.get(b), None);
        assert_eq!(h.get(a), Some((&2, &'a')));
    }

    #[test]
    fn consolidation_builds_binomial_tree() {
        let mut h = FibonacciHeap::new();
        for k in 0..=8 {
            h.insert(k, ());
        }
        assert_eq!(roots(&h).len(), 9);
        assert_eq!(h.extract_min().map(|e| e.1), Some(0));
        // 8 = 2^3 nodes consolidate into a single tree of degree 3.
        let r = roots(&h);
        assert_eq!(r.len(), 1);
        assert_eq!(h.node(r[0]).degree, 3);
        assert_eq!(h.key(r[0]), &1);
        check_invariants(&h);
    }

    #[test]
    fn decrease_key_moves_to_min() {
        let mut h = FibonacciHeap::new();
        let hs: Vec<_> = (0..10).map(|k| h.insert(k, k)).collect();
        h.extract_min();
        h.decrease_key(hs[9], -1).unwrap();
        assert_eq!(h.peek_min(), Some((hs[9], &-1, &9)));
        check_invariants(&h);
        // Decrease that keeps heap order relative to parent: no structural move.
        h.decrease_key(hs[5], 4).unwrap();
        assert_eq!(h.get(hs[5]), Some((&4, &5)));
        check_invariants(&h);
    }

    #[test]
    fn decrease_key_cascading_cut() {
        let mut h = FibonacciHeap::new();
        for k in 0..=8 {
            h.insert(k, ());
        }
        h.extract_min();
        let root = roots(&h)[0];
        // A non-root child with >= 2 children.
        let c = children(&h, root)
            .into_iter()
            .find(|&c| h.node(c).degree >= 2)
            .expect("binomial B3 has a child of degree 2");
        let gc = children(&h, c);
        let (a, b) = (handle_of(&h, gc[0]), handle_of(&h, gc[1]));
        let c_deg = h.node(c).degree;

        h.decrease_key(a, -10).unwrap();
        assert!(h.node(c).mark, "losing a first child marks the parent");
        assert_eq!(h.node(c).degree, c_deg - 1);
        assert_eq!(roots(&h).len(), 2);
        assert_eq!(h.peek_min().unwrap().0, a);
        check_invariants(&h);

        h.decrease_key(b, -20).unwrap();
        // c lost a second child: cut too; the cascade stops at the root.
        assert_eq!(h.node(c).parent, NIL);
        assert!(!h.node(c).mark);
        assert_eq!(roots(&h).len(), 4);
        assert_eq!(h.peek_min().unwrap().0, b);
        check_invariants(&h);
        let order: Vec<i32> = std::iter::from_fn(|| h.extract_min().map(|e| e.1)).collect();
        assert_eq!(order.len(), 8);
        assert_eq!(&order[..2], &[-20, -10]);
        assert!(order.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn decrease_key_errors() {
        let mut h = FibonacciHeap::new();
        let a = h.insert(5, ());
        let b = h.insert(6, ());
        assert_eq!(h.decrease_key(a, 6), Err(HeapError::KeyIncreased));
        assert_eq!(
            h.get(a),
            Some((&5, &())),
            "refused increase leaves entry unchanged"
        );
        assert_eq!(h.decrease_key(a, 5), Ok(()), "equal key is allowed");
        h.extract_min();
        assert_eq!(h.decrease_key(a, 0), Err(HeapError::StaleHandle));
        h.delete(b);
        assert_eq!(h.decrease_key(b, 0), Err(HeapError::StaleHandle));
        let foreign = Handle {
            index: 1000,
            generation: 0,
        };
        assert_eq!(h.decrease_key(foreign, 0), Err(HeapError::StaleHandle));
    }

    #[test]
    fn error_messages_say_what_failed() {
        assert!(
            HeapError::StaleHandle
                .to_string()
                .contains("stale heap handle")
        );
        assert!(HeapError::KeyIncreased.to_string().contains("decrease_key"));
        assert!(HeapError::KeyIncreased.to_string().contains("greater"));
    }

    #[test]
    fn delete_root_nonroot_min_and_last() {
        let mut h = FibonacciHeap::new();
        let hs: Vec<_> = (0..20).map(|k| h.insert(k, k * 10)).collect();
        h.extract_min(); // consolidate so there are non-root nodes
        let nonroot = hs
            .iter()
            .copied()
            .find(|&x| h.contains(x) && h.node(x.index).parent != NIL)
            .unwrap();
        let (k, v) = h.delete(nonroot).unwrap();
        assert_eq!(v, k * 10);
        assert!(!h.contains(nonroot));
        check_invariants(&h);
        // Delete the minimum.
        let (mh, mk, _) = h.peek_min().map(|(a, b, c)| (a, *b, *c)).unwrap();
        assert_eq!(h.delete(mh), Some((mk, mk * 10)));
        assert!(h.peek_min().unwrap().1 > &mk);
        check_invariants(&h);
        // Delete a root that is not the minimum.
        let r = roots(&h)
            .into_iter()
            .find(|&r| r != h.min)
            .map(|r| handle_of(&h, r));
        if let Some(r) = r {
            assert!(h.delete(r).is_some());
            check_invariants(&h);
        }
        assert_eq!(h.delete(nonroot), None, "stale handle");
        // Delete everything.
        for x in hs {
            h.delete(x);
            check_invariants(&h);
        }
        assert!(h.is_empty());
        let only = h.insert(1, 1);
        assert_eq!(h.delete(only), Some((1, 1)));
        assert!(h.is_empty());
        check_invariants(&h);
    }

    #[test]
    fn get_get_mut_contains() {
        let mut h = FibonacciHeap::new();
        let a = h.insert(1, String::from("x"));
        assert!(h.contains(a));
        h.get_mut_value(a).unwrap().push('y');
        assert_eq!(h.get(a), Some((&1, &String::from("xy"))));
        h.extract_min();
        assert!(!h.contains(a));
        assert!(h.get(a).is_none());
        assert!(h.get_mut_value(a).is_none());
    }

    #[test]
    fn slot_reuse_does_not_alias() {
        let mut h = FibonacciHeap::new();
        let a = h.insert(1, 'a');
        h.extract_min();
        let b = h.insert(2, 'b');
        assert_eq!(a.index, b.index, "slot is reused");
        assert_ne!(a, b);
        assert!(!h.contains(a));
        assert_eq!(h.get(b), Some((&2, &'b')));
        assert_eq!(h.delete(a), None);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn exhausted_generation_retires_slot() {
        let mut h = FibonacciHeap::new();
        h.insert(1, ());
        h.nodes[0].generation = u32::MAX - 1;
        let old = handle_of(&h, 0);
        h.extract_min();
        assert!(
            h.free.is_empty(),
            "slot with exhausted generation is retired"
        );
        let b = h.insert(2, ());
        assert_eq!(b.index, 1);
        assert!(!h.contains(old));
        check_invariants(&h);
        h.clear();
        assert!(!h.free.contains(&0));
        check_invariants(&h);
    }

    #[test]
    fn iter_yields_all_live_entries() {
        let mut h = FibonacciHeap::new();
        let hs: Vec<_> = (0..10).map(|k| h.insert(k, k + 100)).collect();
        h.delete(hs[3]);
        h.extract_min();
        let mut seen: Vec<_> = h.iter().map(|(hd, k, v)| (hd, *k, *v)).collect();
        seen.sort();
        let expect: Vec<_> = (1..10)
            .filter(|&k| k != 3)
            .map(|k| (hs[k as usize], k, k + 100))
            .collect();
        assert_eq!(seen, expect);
    }

    #[test]
    fn meld_translates_handles() {
        let mut a = FibonacciHeap::new();
        let a1 = a.insert(10, "a1");
        let a2 = a.insert(3, "a2");
        let mut b = FibonacciHeap::new();
        let b1 = b.insert(1, "b1");
        let b2 = b.insert(20, "b2");
        let b3 = b.insert(5, "b3");
        b.delete(b3);
        let map = a.meld(b);
        assert_eq!(a.len(), 4);
        assert_eq!(a.get(a1), Some((&10, &"a1")));
        assert_eq!(a.get(a2), Some((&3, &"a2")));
        assert_eq!(a.get(map.map(b1)), Some((&1, &"b1")));
        assert_eq!(a.get(map.map(b2)), Some((&20, &"b2")));
        assert!(!a.contains(map.map(b3)), "stale stays stale");
        assert_eq!(a.peek_min().unwrap().0, map.map(b1));
        check_invariants(&a);
        a.decrease_key(map.map(b2), 0).unwrap();
        let order: Vec<_> = std::iter::from_fn(|| a.extract_min().map(|e| e.2)).collect();
        assert_eq!(order, vec!["b2", "b1", "a2", "a1"]);
        // The vacant slot from `b` is reusable and does not alias b3.
        let n = a.insert(7, "n");
        assert!(a.contains(n));
        assert!(!a.contains(map.map(b3)));
    }

    #[test]
    fn meld_into_fresh_and_with_empty() {
        let mut fresh: FibonacciHeap<i32, i32> = FibonacciHeap::new();
        let mut b = FibonacciHeap::new();
        let b1 = b.insert(1, 1);
        let b2 = b.insert(2, 2);
        b.extract_min();
        let map = fresh.meld(b);
        assert_eq!(map.map(b2), b2);
        assert!(!fresh.contains(map.map(b1)));
        assert_eq!(fresh.get(map.map(b2)), Some((&2, &2)));
        check_invariants(&fresh);

        let empty = FibonacciHeap::new();
        let before = fresh.len();
        fresh.meld(empty);
        assert_eq!(fresh.len(), before);
        check_invariants(&fresh);

        let mut cleared = FibonacciHeap::new();
        let c = cleared.insert(9, 9);
        cleared.clear();
        let mut other = FibonacciHeap::new();
        let o = other.insert(4, 4);
        let map = cleared.meld(other);
        assert!(!cleared.contains(c));
        assert_eq!(cleared.get(map.map(o)), Some((&4, &4)));
        assert_ne!(map.map(o), c);
        check_invariants(&cleared);
    }

    #[test]
    fn clear_invalidates_and_drops() {
        let rc = Rc::new(());
        let mut h = FibonacciHeap::new();
        let hs: Vec<_> = (0..5).map(|k| h.insert(k, Rc::clone(&rc))).collect();
        h.extract_min();
        assert_eq!(Rc::strong_count(&rc), 5);
        h.clear();
        assert_eq!(Rc::strong_count(&rc), 1);
        assert!(h.is_empty());
        assert!(h.peek_min().is_none());
        for x in &hs {
            assert!(!h.contains(*x));
        }
        check_invariants(&h);
        let n = h.insert(1, Rc::clone(&rc));
        assert!(!hs.contains(&n));
        drop(h);
        assert_eq!(Rc::strong_count(&rc), 1);
    }

    #[test]
    fn large_mixed_workload_keeps_invariants() {
        let mut h = FibonacciHeap::new();
        let mut live: Vec<(Handle, i64)> = Vec::new();
        let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut rnd = move |n: u64| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s % n
        };
        for step in 0..30_000 {
            match rnd(10) {
                0..=3 => {
                    let k = rnd(1_000_000) as i64;
                    live.push((h.insert(k, ()), k));
                }
                4..=6 if !live.is_empty() => {
                    let i = rnd(live.len() as u64) as usize;
                    let nk = live[i].1 - rnd(1000) as i64;
                    h.decrease_key(live[i].0, nk).unwrap();
                    live[i].1 = nk;
                }
                7 if !live.is_empty() => {
                    let i = rnd(live.len() as u64) as usize;
                    let (hd, k) = live.swap_remove(i);
                    assert_eq!(h.delete(hd), Some((k, ())));
                }
                _ => {
                    if let Some((hd, k, ())) = h.extract_min() {
                        let i = live.iter().position(|e| e.0 == hd).unwrap();
                        assert_eq!(live[i].1, k);
                        assert!(live.iter().all(|e| e.1 >= k));
                        live.swap_remove(i);
                    }
                }
            }
            if step % 1000 == 0 {
                check_invariants(&h);
            }
        }
        assert_eq!(h.len(), live.len());
        check_invariants(&h);
    }

    // ----- property test against a model ----------------------------------

    #[derive(Debug, Clone)]
    enum Op {
        Insert(i32),
        ExtractMin,
        Peek,
        Decrease {
            sel: usize,
            delta: i32,
        },
        Increase {
            sel: usize,
            delta: i32,
        },
        Delete {
            sel: usize,
        },
        Stale {
            sel: usize,
        },
        SetValue {
            sel: usize,
        },
        Meld {
            keys: Vec<i32>,
            deletes: Vec<usize>,
            extracts: usize,
        },
        Clear,
    }

    fn op_strategy() -> impl Strategy<Value = Op> {
        prop_oneof![
            30 => (-50i32..50).prop_map(Op::Insert),
            12 => Just(Op::ExtractMin),
            3 => Just(Op::Peek),
            20 => (any::<usize>(), 0i32..30).prop_map(|(sel, delta)| Op::Decrease { sel, delta }),
            3 => (any::<usize>(), 1i32..10).prop_map(|(sel, delta)| Op::Increase { sel, delta }),
            8 => any::<usize>().prop_map(|sel| Op::Delete { sel }),
            4 => any::<usize>().prop_map(|sel| Op::Stale { sel }),
            3 => any::<usize>().prop_map(|sel| Op::SetValue { sel }),
            3 => (vec(-50i32..50, 0..20), vec(any::<usize>(), 0..5), 0usize..3)
                .prop_map(|(keys, deletes, extracts)| Op::Meld { keys, deletes, extracts }),
            1 => Just(Op::Clear),
        ]
    }

    /// Live entries `(handle, key, value)` and handles known to be stale.
    #[derive(Default)]
    struct Model {
        live: Vec<(Handle, i32, u64)>,
        dead: Vec<Handle>,
        next_value: u64,
    }

    impl Model {
        fn min_key(&self) -> Option<i32> {
            self.live.iter().map(|e| e.1).min()
        }
        fn take(&mut self, h: Handle) -> (Handle, i32, u64) {
            let i = self
                .live
                .iter()
                .position(|e| e.0 == h)
                .expect("heap returned a handle the model does not know");
            let e = self.live.swap_remove(i);
            self.dead.push(h);
            e
        }
    }

    fn assert_stale(h: &mut FibonacciHeap<i32, u64>, d: Handle) {
        assert!(!h.contains(d));
        assert!(h.get(d).is_none());
        assert!(h.get_mut_value(d).is_none());
        assert_eq!(h.decrease_key(d, i32::MIN), Err(HeapError::StaleHandle));
        assert_eq!(h.delete(d), None);
    }

    fn check_model(h: &mut FibonacciHeap<i32, u64>, m: &Model) {
        check_invariants(h);
        assert_eq!(h.len(), m.live.len());
        assert_eq!(h.is_empty(), m.live.is_empty());
        match h.peek_min() {
            None => assert!(m.live.is_empty()),
            Some((hd, k, v)) => {
                assert_eq!(Some(*k), m.min_key());
                assert!(m.live.contains(&(hd, *k, *v)));
            }
        }
        for &(hd, k, v) in &m.live {
            assert_eq!(h.get(hd), Some((&k, &v)));
        }
        let mut it: Vec<_> = h.iter().map(|(hd, k, v)| (hd, *k, *v)).collect();
        let mut ml = m.live.clone();
        it.sort();
        ml.sort();
        assert_eq!(it, ml);
        for &d in m.dead.iter().rev().take(8) {
            assert_stale(h, d);
        }
    }

    fn run_ops(ops: Vec<Op>) {
        let mut h: FibonacciHeap<i32, u64> = FibonacciHeap::new();
        let mut m = Model::default();
        for op in ops {
            match op {
                Op::Insert(k) => {
                    let v = m.next_value;
                    m.next_value += 1;
                    let hd = h.insert(k, v);
                    assert!(!m.dead.contains(&hd), "new handle aliases a stale one");
                    m.live.push((hd, k, v));
                }
                Op::ExtractMin => {
                    let expect = m.min_key();
                    match h.extract_min() {
                        None => assert!(expect.is_none()),
                        Some((hd, k, v)) => {
                            assert_eq!(Some(k), expect);
                            assert_eq!(m.take(hd), (hd, k, v));
                        }
                    }
                }
                Op::Peek => {
                    assert_eq!(h.peek_min().map(|e| *e.1), m.min_key());
                }
                Op::Decrease { sel, delta } => {
                    if !m.live.is_empty() {
                        let i = sel % m.live.len();
                        let nk = m.live[i].1 - delta;
                        assert_eq!(h.decrease_key(m.live[i].0, nk), Ok(()));
                        m.live[i].1 = nk;
                    }
                }
                Op::Increase { sel, delta } => {
                    if !m.live.is_empty() {
                        let i = sel % m.live.len();
                        let nk = m.live[i].1 + delta;
                        assert_eq!(
                            h.decrease_key(m.live[i].0, nk),
                            Err(HeapError::KeyIncreased)
                        );
                    }
                }
                Op::Delete { sel } => {
                    if !m.live.is_empty() {
                        let i = sel % m.live.len();
                        let hd = m.live[i].0;
                        let (_, k, v) = m.take(hd);
                        assert_eq!(h.delete(hd), Some((k, v)));
                    }
                }
                Op::Stale { sel } => {
                    if !m.dead.is_empty() {
                        let d = m.dead[sel % m.dead.len()];
                        assert_stale(&mut h, d);
                    }
                }
                Op::SetValue { sel } => {
                    if !m.live.is_empty() {
                        let i = sel % m.live.len();
                        let v = m.next_value;
                        m.next_value += 1;
                        *h.get_mut_value(m.live[i].0).unwrap() = v;
                        m.live[i].2 = v;
                    }
                }
                Op::Meld {
                    keys,
                    deletes,
                    extracts,
                } => {
                    let mut other = FibonacciHeap::new();
                    let mut o_live: Vec<(Handle, i32, u64)> = Vec::new();
                    let mut o_dead = Vec::new();
                    for k in keys {
                        let v = m.next_value;
                        m.next_value += 1;
                        o_live.push((other.insert(k, v), k, v));
                    }
                    for _ in 0..extracts {
                        if let Some((hd, _, _)) = other.extract_min() {
                            let i = o_live.iter().position(|e| e.0 == hd).unwrap();
                            o_live.swap_remove(i);
                            o_dead.push(hd);
                        }
                    }
                    for sel in deletes {
                        if !o_live.is_empty() {
                            let (hd, k, v) = o_live.swap_remove(sel % o_live.len());
                            assert_eq!(other.delete(hd), Some((k, v)));
                            o_dead.push(hd);
                        }
                    }
                    check_invariants(&other);
                    let map = h.meld(other);
                    for (hd, k, v) in o_live {
                        m.live.push((map.map(hd), k, v));
                    }
                    for d in o_dead {
                        let d = map.map(d);
                        assert_stale(&mut h, d);
                        m.dead.push(d);
                    }
                }
                Op::Clear => {
                    h.clear();
                    for (hd, _, _) in m.live.drain(..) {
                        m.dead.push(hd);
                    }
                }
            }
            check_model(&mut h, &m);
        }
    }

    proptest! {
        #[test]
        fn matches_model(ops in vec(op_strategy(), 1..200)) {
            run_ops(ops);
        }
    }
}
