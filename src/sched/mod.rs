//! Scheduler cores (pure): the Fibonacci heap, the local task queue with starvation boost,
//! and workflow/task types. No I/O here; the engine wraps them.

pub mod fib_heap;
pub mod lease;
pub mod merkle_clock;
pub mod mesh;
pub mod peer_select;
pub mod queue;
pub mod workflow;
