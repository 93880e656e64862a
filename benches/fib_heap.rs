//! Fibonacci heap vs `BinaryHeap` (lazy deletion) vs `priority-queue` v2.
//!
//! Scenarios (deterministic splitmix64 RNG, identical op streams for all heaps):
//! * `a_insert_then_extract`: 1e6 random inserts, then 1e6 extract-min.
//! * `b_dijkstra_mix`: 1e5 initial items, then 1e6 ops: 30% decrease-key on a
//!   random live item, 35% insert, 35% extract-min (size stays ~1e5). Keys are
//!   monotone as in Dijkstra: inserts and decreases never go below the last
//!   extracted key. Keys embed the item id in their low bits, so they are
//!   unique and every heap extracts the same items in the same order.
//!
//! Each measured iteration runs one whole workload, heap construction included.
//! Run: `cargo bench -j1 --bench fib_heap`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use flotilla::sched::fib_heap::{FibonacciHeap, Handle};
use priority_queue::PriorityQueue;

const SEED: u64 = 0x5EED_F1B0_7A11_A000;
const A_N: usize = 1_000_000;
const B_INITIAL: usize = 100_000;
const B_OPS: usize = 1_000_000;
/// Low key bits hold the item id (unique keys, identical order across heaps).
const ID_BITS: u32 = 20;
/// Random spread of inserted priorities above the current floor.
const SPREAD: u64 = 1 << 24;

/// splitmix64 (Steele, Lea, Flood 2014).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n` (multiply-shift).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// The operations the workloads need; ids are dense and assigned in order.
trait BenchHeap {
    fn with_capacity(n: usize) -> Self;
    fn insert(&mut self, id: u32, key: u64);
    /// `key` is <= the item's current key.
    fn decrease(&mut self, id: u32, key: u64);
    fn pop(&mut self) -> Option<(u32, u64)>;
}

struct Fib {
    heap: FibonacciHeap<u64, u32>,
    handles: Vec<Handle>,
}

impl BenchHeap for Fib {
    fn with_capacity(n: usize) -> Self {
        Fib {
            heap: FibonacciHeap::with_capacity(n),
            handles: Vec::with_capacity(n),
        }
    }
    fn insert(&mut self, id: u32, key: u64) {
        debug_assert_eq!(id as usize, self.handles.len());
        self.handles.push(self.heap.insert(key, id));
    }
    fn decrease(&mut self, id: u32, key: u64) {
        self.heap
            .decrease_key(self.handles[id as usize], key)
            .expect("live item, non-increasing key");
    }
    fn pop(&mut self) -> Option<(u32, u64)> {
        self.heap.extract_min().map(|(_, k, id)| (id, k))
    }
}

/// `BinaryHeap<Reverse<(key, id)>>` with lazy deletion: decrease-key pushes a
/// new entry; pop skips entries whose key is not the item's current key.
struct Lazy {
    heap: BinaryHeap<Reverse<(u64, u32)>>,
    current: Vec<u64>,
}

const GONE: u64 = u64::MAX;

impl BenchHeap for Lazy {
    fn with_capacity(n: usize) -> Self {
        Lazy {
            heap: BinaryHeap::with_capacity(n),
            current: Vec::with_capacity(n),
        }
    }
    fn insert(&mut self, id: u32, key: u64) {
        debug_assert_eq!(id as usize, self.current.len());
        self.current.push(key);
        self.heap.push(Reverse((key, id)));
    }
    fn decrease(&mut self, id: u32, key: u64) {
        self.current[id as usize] = key;
        self.heap.push(Reverse((key, id)));
    }
    fn pop(&mut self) -> Option<(u32, u64)> {
        while let Some(Reverse((k, id))) = self.heap.pop() {
            let cur = &mut self.current[id as usize];
            if *cur == k {
                *cur = GONE;
                return Some((id, k));
            }
        }
        None
    }
}

/// `priority_queue::PriorityQueue` (default hasher) with `Reverse` priorities.
struct Pq {
    pq: PriorityQueue<u32, Reverse<u64>>,
}

impl BenchHeap for Pq {
    fn with_capacity(n: usize) -> Self {
        Pq {
            pq: PriorityQueue::with_capacity(n),
        }
    }
    fn insert(&mut self, id: u32, key: u64) {
        self.pq.push(id, Reverse(key));
    }
    fn decrease(&mut self, id: u32, key: u64) {
        // A lower key is a higher `Reverse` priority.
        self.pq.push_increase(id, Reverse(key));
    }
    fn pop(&mut self) -> Option<(u32, u64)> {
        self.pq.pop().map(|(id, Reverse(k))| (id, k))
    }
}

fn mix(acc: u64, id: u32, key: u64) -> u64 {
    acc.rotate_left(5) ^ key ^ u64::from(id)
}

/// Scenario (a). Returns an order-sensitive checksum.
fn workload_a<H: BenchHeap>(n: usize) -> u64 {
    let mut rng = SplitMix64(SEED);
    let mut h = H::with_capacity(n);
    for id in 0..n as u32 {
        h.insert(id, rng.next_u64());
    }
    let mut acc = 0;
    let mut prev = 0;
    while let Some((id, k)) = h.pop() {
        debug_assert!(k >= prev);
        prev = k;
        acc = mix(acc, id, k);
    }
    acc
}

/// Live-item bookkeeping for scenario (b), shared by all heaps.
struct Items {
    live: Vec<u32>, // live ids
    pos: Vec<u32>,  // id -> index in `live`
    prio: Vec<u64>, // id -> current priority (key without the id bits)
}

fn key(p: u64, id: u32) -> u64 {
    (p << ID_BITS) | u64::from(id)
}

impl Items {
    fn add<H: BenchHeap>(&mut self, h: &mut H, rng: &mut SplitMix64, floor: u64) {
        let id = self.prio.len() as u32;
        assert!(id < 1 << ID_BITS, "too many ids for ID_BITS");
        let p = floor + rng.below(SPREAD);
        debug_assert!(p < 1 << (64 - ID_BITS));
        self.prio.push(p);
        self.pos.push(self.live.len() as u32);
        self.live.push(id);
        h.insert(id, key(p, id));
    }

    fn remove(&mut self, id: u32) {
        let i = self.pos[id as usize] as usize;
        self.live.swap_remove(i);
        if let Some(&moved) = self.live.get(i) {
            self.pos[moved as usize] = i as u32;
        }
    }
}

/// Scenario (b). Returns an order-sensitive checksum.
fn workload_b<H: BenchHeap>(initial: usize, ops: usize) -> u64 {
    let mut rng = SplitMix64(SEED ^ 0xB);
    let cap = initial + ops / 2;
    let mut h = H::with_capacity(cap);
    let mut items = Items {
        live: Vec::with_capacity(cap),
        pos: Vec::with_capacity(cap),
        prio: Vec::with_capacity(cap),
    };
    let mut floor = 0u64; // priority of the last extracted item
    let mut acc = 0u64;
    for _ in 0..initial {
        items.add(&mut h, &mut rng, floor);
    }
    for _ in 0..ops {
        let r = rng.below(100);
        if r < 30 && !items.live.is_empty() {
            let id = items.live[rng.below(items.live.len() as u64) as usize];
            let cur = items.prio[id as usize];
            let p = floor + rng.below(cur - floor + 1);
            items.prio[id as usize] = p;
            h.decrease(id, key(p, id));
        } else if r < 65 || items.live.is_empty() {
            items.add(&mut h, &mut rng, floor);
        } else {
            let (id, k) = h.pop().expect("non-empty");
            debug_assert!(k >> ID_BITS >= floor);
            floor = k >> ID_BITS;
            acc = mix(acc, id, k);
            items.remove(id);
        }
    }
    acc
}

fn configure<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    g
}

fn bench(c: &mut Criterion) {
    // Same op streams must give the same extraction order everywhere.
    let a = workload_a::<Fib>(A_N);
    assert_eq!(
        a,
        workload_a::<Lazy>(A_N),
        "scenario a: lazy binary heap disagrees"
    );
    assert_eq!(
        a,
        workload_a::<Pq>(A_N),
        "scenario a: priority-queue disagrees"
    );
    let b = workload_b::<Fib>(B_INITIAL, B_OPS);
    assert_eq!(
        b,
        workload_b::<Lazy>(B_INITIAL, B_OPS),
        "scenario b: lazy binary heap disagrees"
    );
    assert_eq!(
        b,
        workload_b::<Pq>(B_INITIAL, B_OPS),
        "scenario b: priority-queue disagrees"
    );

    let mut g = configure(c, "a_insert_1e6_then_extract_1e6");
    g.bench_function("fibonacci_heap", |bn| {
        bn.iter(|| workload_a::<Fib>(black_box(A_N)))
    });
    g.bench_function("binary_heap_lazy", |bn| {
        bn.iter(|| workload_a::<Lazy>(black_box(A_N)))
    });
    g.bench_function("priority_queue", |bn| {
        bn.iter(|| workload_a::<Pq>(black_box(A_N)))
    });
    g.finish();

    let mut g = configure(c, "b_dijkstra_mix_1e5_items_1e6_ops");
    g.bench_function("fibonacci_heap", |bn| {
        bn.iter(|| workload_b::<Fib>(black_box(B_INITIAL), B_OPS))
    });
    g.bench_function("binary_heap_lazy", |bn| {
        bn.iter(|| workload_b::<Lazy>(black_box(B_INITIAL), B_OPS))
    });
    g.bench_function("priority_queue", |bn| {
        bn.iter(|| workload_b::<Pq>(black_box(B_INITIAL), B_OPS))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
