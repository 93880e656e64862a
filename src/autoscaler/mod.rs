//! Autoscaler: ephemeral self-hosted runners started on demand for queued GitHub jobs.

pub mod provider;
