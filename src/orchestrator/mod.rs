//! Failure orchestrator: turns a failed CI job's log into a verdict.
//!
//! - [`patterns`] holds the catalogue of failure patterns (built in from
//!   `assets/patterns.toml`, extendable with users' own TOML files) and the vocabulary of
//!   failure classes ([`patterns::IssueType`]).
//! - [`classify`] is the pure classification core: log text (plus optional job API data) in,
//!   ranked findings out. It does no I/O and reads no clock.
//! - [`monitor`] watches repositories for failed runs, classifies their failed jobs' logs and
//!   records issues in [`store`]; [`fixes`] plans and applies fixes (re-run, GitHub issue,
//!   pull request with a patch); [`report`] writes the run reports.
//! - [`patch`] holds the pure parts of a patch (branch guard, `requirements.txt` edit, log
//!   paths made repository-relative); [`formatter`] runs a formatter on a file's content.

pub mod classify;
pub mod cmd;
pub mod fixes;
pub mod formatter;
pub mod monitor;
pub mod patch;
pub mod patterns;
pub mod report;
pub mod store;
