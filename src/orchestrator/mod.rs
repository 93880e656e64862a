//! Failure orchestrator: turns a failed CI job's log into a verdict.
//!
//! - [`patterns`] holds the catalogue of failure patterns (built in from
//!   `assets/patterns.toml`, extendable with users' own TOML files) and the vocabulary of
//!   failure classes ([`patterns::IssueType`]).
//! - [`classify`] is the pure classification core: log text (plus optional job API data) in,
//!   ranked findings out. It does no I/O and reads no clock.

pub mod classify;
pub mod cmd;
pub mod patterns;
