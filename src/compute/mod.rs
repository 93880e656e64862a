//! Compute: user VMs on Fly.io Machines (the seed's compute service).
//!
//! - [`fly`]: typed async client for the Machines API v1 (pacing per machine and action,
//!   retries with backoff, clear errors, secret token).
//! - [`costs`]: pure money arithmetic in integer centicents and the pricing table
//!   (`assets/pricing.toml`).
//! - [`store`]: SQLite tables `user_vms` and `compute_usage` ([`store::MIGRATION_SQL`]).
//! - [`vm`]: [`VmManager`]: provisioning with write-ahead rows, limits, idle shutdown, costs,
//!   SSH details and reconciliation after crashes; the scheduler pass.
//!
//! Configuration comes from the seed's environment variables: `FLY_API_TOKEN`,
//! `FLY_APP_NAME`, `FLY_ORG_SLUG`, `FLY_API_HOSTNAME` ([`fly::FlyConfig::from_env`]) and
//! `VM_MAX_PER_USER`, `VM_IDLE_TIMEOUT_MINUTES`, `VM_DEFAULT_REGION`, `VM_DEFAULT_CPU_TYPE`,
//! `VM_DEFAULT_MEMORY_MB`, `VM_IMAGE`, `TAILSCALE_AUTH_KEY` ([`ComputeSettings::from_env`]).

pub mod costs;
pub mod fly;
pub mod store;
pub mod vm;

pub use costs::{Centicents, CpuType, Pricing};
pub use fly::{FlyApi, FlyClient, FlyConfig, FlyError};
pub use store::{ComputeStore, ComputeUsage, MIGRATION_SQL, UserVm, VmStatus};
pub use vm::{ComputeSettings, VmError, VmManager};
