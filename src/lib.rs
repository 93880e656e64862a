//! Flotilla: a control center for self-hosted CI fleets.
//!
//! One engine ([`engine`]) holds the scheduler, store and services; two faces drive it: a
//! ratatui console ([`tui`]) and a Model Context Protocol server over stdio ([`mcp`]).
//! See `docs/architecture.md`.

pub mod autoscaler;
pub mod cli;
pub mod clock;
pub mod compute;
pub mod config;
pub mod engine;
pub mod github;
pub mod mcp;
pub mod orchestrator;
pub mod p2p;
pub mod sched;
pub mod store;
pub mod tui;
