//! The autoscaler: ephemeral self-hosted runners for queued GitHub jobs.
//!
//! - [`policy`]: the pure decision function (demand, runners, limits, now → plan);
//! - [`provider`]: where runners run (a local process, a Fly Machine), behind one trait;
//! - [`store`]: runners, pending jobs and counters in SQLite;
//! - [`controller`]: the check loop that gathers the inputs through the GitHub layer, carries
//!   the plan out and reconciles both ways.

pub mod controller;
pub mod policy;
pub mod provider;
pub mod store;
