//! Runner providers: where the autoscaler starts ephemeral self-hosted runners.
//!
//! A provider starts one runner per [`LaunchSpec`] from GitHub's JIT config (the
//! `encoded_jit_config` of `POST /repos/{owner}/{repo}/actions/runners/generate-jitconfig`, see
//! GitHub's docs "Using just-in-time runners": the runner is started with
//! `./run.sh --jitconfig <encoded_jit_config>`, registers itself, runs one job and
//! unregisters). It hands back an [`InstanceRef`] the controller stores, and later answers
//! [`Provider::state`], [`Provider::stop`] and [`Provider::list`] from that handle alone, also in
//! a new engine process after a crash.
//!
//! Two kinds, configured as `[[autoscaler.providers]]` tables ([`ProviderConfig`]):
//!
//! - **`local`** ([`LocalProvider`]): runs the configured argv (no shell is built by us) with
//!   the JIT config in the environment variable [`ENV_JITCONFIG`], never in the arguments.
//!   The process gets its own process group; its combined stdout/stderr is kept as a bounded
//!   tail with every occurrence of the JIT config replaced by `[redacted]`; stop is SIGTERM to
//!   the group, then SIGKILL after a grace. Each instance is recorded in
//!   `<runners_dir>/<provider>/<runner>.json` (mode 0600, the [`InstanceRef`] only), and the
//!   instance id (`pid:<pid>:start:<ticks>[:boot:<boot id>]`) carries the process start time
//!   (`/proc/<pid>/stat` field 22) so that a reused pid is never taken for our runner.
//! - **`fly`** ([`FlyProvider`]): creates a Fly Machine from a runner image through the
//!   Machines API (`FLY_API_TOKEN`, `FLY_APP_NAME`; source: fly.io/docs/machines/api), with the
//!   JIT config in the machine's env, metadata `flotilla_role=runner`,
//!   `flotilla_runner=<runner>`, `flotilla_provider=<provider>`, `auto_destroy: true` and
//!   restart policy `no`.
//!
//! Secrets: the JIT config is a [`SecretValue`] (`Debug` prints `****`); it is handed to the
//! runner process (environment) or the machine (create request) and nowhere else: never
//! logged, never written to disk, never in an error message. A launch that fails after its
//! instance was created removes the instance before returning the error.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::fmt;
use std::fs;
use std::future::Future;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;
use zeroize::{Zeroize, Zeroizing};

use crate::compute::fly::{
    self, CreateMachineRequest, Env, FlyApi, FlyClient, FlyConfig, FlyError, Guest, MAX_WAIT,
    Machine, MachineConfig, MachineState, Restart, WaitState,
};
use crate::engine::runner::SECRET_ENV;
use crate::github::types::SecretValue;

/// Environment variable carrying GitHub's `encoded_jit_config` to the runner (local process or
/// Fly Machine). A runner command uses it as `run.sh --jitconfig "$FLOTILLA_JITCONFIG"`.
pub const ENV_JITCONFIG: &str = "FLOTILLA_JITCONFIG";

/// Where JIT configs are not allowed (older GitHub Enterprise Server, a policy), the runner
/// registers itself with `config.sh --url "$FLOTILLA_RUNNER_URL" --token
/// "$FLOTILLA_RUNNER_TOKEN" --name "$FLOTILLA_RUNNER_NAME" --labels "$FLOTILLA_RUNNER_LABELS"
/// --ephemeral`: the repository or organization URL.
pub const ENV_REG_URL: &str = "FLOTILLA_RUNNER_URL";
/// The registration token (secret) in that case.
pub const ENV_REG_TOKEN: &str = "FLOTILLA_RUNNER_TOKEN";
/// The runner's labels, comma-separated, in that case.
pub const ENV_REG_LABELS: &str = "FLOTILLA_RUNNER_LABELS";

/// A registration token and the URL it registers at: the fallback when GitHub refuses
/// `generate-jitconfig` (source: GitHub docs, "Adding self-hosted runners").
#[derive(Debug, Clone)]
pub struct Registration {
    /// `https://github.com/acme` or `https://github.com/acme/app` (or the GHES host).
    pub url: String,
    /// `POST .../actions/runners/registration-token` (secret; one per runner, never reused).
    pub token: SecretValue,
}
/// Environment variable carrying the runner's name.
pub const ENV_RUNNER_NAME: &str = "FLOTILLA_RUNNER_NAME";
/// Fly Machine metadata key marking what a machine is for; runner machines have
/// [`ROLE_RUNNER`] (the compute VMs have none).
pub const META_ROLE: &str = "flotilla_role";
/// Value of [`META_ROLE`] on runner machines.
pub const ROLE_RUNNER: &str = "runner";
/// Fly Machine metadata key holding the runner's name.
pub const META_RUNNER: &str = "flotilla_runner";
/// Fly Machine metadata key holding the provider's name (two providers may share an app).
pub const META_PROVIDER: &str = "flotilla_provider";

/// Bytes of a local runner's output kept in memory (the tail): 64 KiB.
pub const DEFAULT_OUTPUT_LIMIT: usize = 64 * 1024;
/// Default SIGTERM-to-SIGKILL grace of a local stop.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);
/// How long a local launch watches the new process: exiting with an error within this window
/// fails the launch (e.g. `sh: 1: exec: /opt/actions-runner/run.sh: not found`).
pub const DEFAULT_STARTUP_WINDOW: Duration = Duration::from_millis(500);
/// How long a Fly launch waits for the machine to reach `started` (the Machines API `wait`
/// call is repeated while it answers 408, up to this total).
pub const DEFAULT_FLY_LAUNCH_TIMEOUT: Duration = Duration::from_secs(180);
/// Fly guest used when the config leaves it out: `shared` CPU kind.
pub const DEFAULT_FLY_CPU_KIND: &str = "shared";
/// Fly guest used when the config leaves it out: 2 vCPUs.
pub const DEFAULT_FLY_CPUS: u32 = 2;
/// Fly guest used when the config leaves it out: 4096 MB (the Actions runner and a typical
/// build do not fit Fly's 256 MB default).
pub const DEFAULT_FLY_MEMORY_MB: u32 = 4096;

/// How long a stop waits for a process group to vanish after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// Poll period while waiting for a process group to vanish.
const POLL: Duration = Duration::from_millis(25);
/// Finished local instances whose output is kept for [`Provider::output_tail`].
const MAX_TRACKED: usize = 256;
/// Characters of output tail put in an early-exit error.
const ERROR_TAIL_CHARS: usize = 2000;
/// Replacement of a secret in captured output.
const REDACTED: &[u8] = b"[redacted]";

// ---------------------------------------------------------------------------------------------
// The interface
// ---------------------------------------------------------------------------------------------

/// Everything a provider needs to start one ephemeral runner. `Debug` shows the JIT config as
/// `SecretValue(****)`.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// Runner name, unique, e.g. `flotilla-local-linux-01JD...`: also the GitHub runner name,
    /// the Fly Machine name and the local record's file name, so limited to ASCII letters,
    /// digits, `-`, `_` and `.` (not first), at most 128 characters.
    pub name: String,
    /// The runner's labels (GitHub `runs-on` labels; informational here: the JIT config
    /// already carries them).
    pub labels: Vec<String>,
    /// GitHub's `encoded_jit_config` (secret; source: GitHub docs "Using just-in-time runners").
    /// Empty when [`LaunchSpec::registration`] is set.
    pub jit_config: SecretValue,
    /// The registration-token fallback, when JIT configs are not allowed.
    pub registration: Option<Registration>,
}

impl LaunchSpec {
    /// The environment that carries the runner's credential: [`ENV_JITCONFIG`], or for the
    /// fallback [`ENV_REG_URL`], [`ENV_REG_TOKEN`] and [`ENV_REG_LABELS`].
    pub fn credential_env(&self) -> Vec<(&'static str, String)> {
        match &self.registration {
            None => vec![(ENV_JITCONFIG, self.jit_config.expose().to_string())],
            Some(r) => vec![
                (ENV_REG_URL, r.url.clone()),
                (ENV_REG_TOKEN, r.token.expose().to_string()),
                (ENV_REG_LABELS, self.labels.join(",")),
            ],
        }
    }

    /// The secret to keep out of output, errors and logs.
    pub fn secret(&self) -> &str {
        match &self.registration {
            None => self.jit_config.expose(),
            Some(r) => r.token.expose(),
        }
    }
}

/// A provider's handle on one runner instance. Durable: the controller stores it (SQLite), and
/// it stays valid across engine restarts. It holds no secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InstanceRef {
    /// Name of the provider that made it ([`ProviderConfig::name`]).
    pub provider: String,
    /// Provider-specific id: a [`LocalInstanceId`] (`pid:1234:start:5678[:boot:<uuid>]`) or a
    /// Fly Machine id (`1857156b526dd8`).
    pub id: String,
}

impl fmt::Display for InstanceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.provider, self.id)
    }
}

/// What a provider knows about an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum InstanceState {
    /// Created, not yet running (Fly `created`/`starting`/`replacing`).
    Starting,
    /// Running (a live local process; Fly `started`).
    Running,
    /// Ended. `code` is the exit status when known (a local process this engine started);
    /// `None` for a signal, a Fly machine, or a process seen only after a restart. A local
    /// instance also reports `Exited` while stragglers of its process group are still alive.
    Exited {
        /// Exit status, if known.
        code: Option<i32>,
    },
    /// No trace left: the process (group) is gone or its pid now belongs to another process;
    /// the machine is destroyed or unknown to Fly.
    Gone,
}

/// Provider errors. None of them contains a JIT config or a token. [`is_retryable`] tells a
/// transient failure (try again later) from a permanent one (fix the configuration).
///
/// [`is_retryable`]: ProviderError::is_retryable
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// A bad `[[autoscaler.providers]]` entry.
    #[error("autoscaler provider {provider:?}: {reason}")]
    Config {
        /// Provider name as given (may be empty).
        provider: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A bad launch request (runner name, empty JIT config).
    #[error("provider {provider}: cannot launch runner {runner:?}: {reason}")]
    BadSpec {
        /// Provider name.
        provider: String,
        /// Runner name as given.
        runner: String,
        /// What is wrong.
        reason: String,
    },
    /// An [`InstanceRef`] that this provider did not make (other provider, malformed id, or a
    /// Fly machine without our runner metadata).
    #[error("provider {provider}: instance {instance} is not one of ours: {reason}")]
    Foreign {
        /// Provider name.
        provider: String,
        /// The instance as given.
        instance: InstanceRef,
        /// Why.
        reason: String,
    },
    /// The local command could not be started (e.g. `No such file or directory`).
    #[error(
        "local provider {provider}: cannot start {program:?} for runner {runner}: {source}; check `command` of this provider"
    )]
    Spawn {
        /// Provider name.
        provider: String,
        /// Runner name.
        runner: String,
        /// `command[0]`.
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The local runner process ended with an error right after it started (within the
    /// startup window, [`DEFAULT_STARTUP_WINDOW`]). `output` is the end of its output, JIT
    /// config redacted.
    #[error(
        "local provider {provider}: runner {runner} {status} right after start; output: {}",
        if output.is_empty() { "(none)" } else { output.as_str() }
    )]
    EarlyExit {
        /// Provider name.
        provider: String,
        /// Runner name.
        runner: String,
        /// `exited with status 127` or `was killed by signal 9`.
        status: String,
        /// Exit status, if it exited.
        code: Option<i32>,
        /// Signal, if it was killed.
        signal: Option<i32>,
        /// End of its output (at most 2000 characters), JIT config redacted.
        output: String,
    },
    /// Reading or writing the local instance records (`<runners_dir>/<provider>/`), or reading
    /// `/proc`.
    #[error("provider {provider}: {doing} {path}: {source}", path = path.display())]
    Io {
        /// Provider name.
        provider: String,
        /// What was attempted, e.g. `cannot write the instance record`.
        doing: String,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A local process group survived SIGKILL (e.g. a process in uninterruptible sleep).
    #[error(
        "local provider {provider}: process group {pgid} of {instance} is still alive {waited:?} after SIGKILL; stop again later"
    )]
    StopTimeout {
        /// Provider name.
        provider: String,
        /// The instance.
        instance: InstanceRef,
        /// Its process group id.
        pgid: u32,
        /// How long we waited after SIGKILL.
        waited: Duration,
    },
    /// A Machines API call failed. `cleanup` says what became of a machine created by a
    /// failed launch.
    #[error(
        "fly provider {provider}: {doing}: {source}{}",
        cleanup.as_deref().map(|c| format!("; {c}")).unwrap_or_default()
    )]
    Fly {
        /// Provider name.
        provider: String,
        /// What was attempted, e.g. `waiting for machine 148e... of runner r1 to start`.
        doing: String,
        /// The client error (no token, env values scrubbed); boxed, it is large.
        #[source]
        source: Box<FlyError>,
        /// Outcome of the clean-up after a failed launch.
        cleanup: Option<String>,
    },
}

impl ProviderError {
    /// Whether trying again later may succeed: Fly 408/429/5xx and transport failures, a
    /// process group that survived SIGKILL, a spawn that failed for lack of resources.
    /// Configuration errors, foreign instances, early exits and other 4xx are permanent.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProviderError::Config { .. }
            | ProviderError::BadSpec { .. }
            | ProviderError::Foreign { .. }
            | ProviderError::EarlyExit { .. }
            | ProviderError::Io { .. } => false,
            ProviderError::Spawn { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::OutOfMemory
            ),
            ProviderError::StopTimeout { .. } => true,
            ProviderError::Fly { source, .. } => match source.as_ref() {
                FlyError::Exhausted { .. } | FlyError::Transport { .. } => true,
                FlyError::Api { status, .. } => matches!(status, 408 | 429) || *status >= 500,
                FlyError::Decode { .. } | FlyError::Config(_) => false,
            },
        }
    }
}

/// A boxed `Send` future, so that [`Provider`] can be used as `Arc<dyn Provider>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A place where runners run. Object safe: the controller holds `Arc<dyn Provider>`.
pub trait Provider: Send + Sync {
    /// The configured name ([`ProviderConfig::name`]).
    fn name(&self) -> &str;
    /// `"local"` or `"fly"` ([`ProviderKind::as_str`]).
    fn kind(&self) -> &'static str;
    /// Labels its runners carry (non-empty).
    fn labels(&self) -> &[String];
    /// Most runners at once, if limited.
    fn max_runners(&self) -> Option<u32>;
    /// Start one runner. On error no instance is left behind (a created instance is removed
    /// before the error is returned; if even that fails, the error says so and [`list`]
    /// still shows the instance).
    ///
    /// [`list`]: Provider::list
    fn launch<'a>(
        &'a self,
        spec: &'a LaunchSpec,
    ) -> BoxFuture<'a, Result<InstanceRef, ProviderError>>;
    /// The instance's state now.
    fn state<'a>(
        &'a self,
        inst: &'a InstanceRef,
    ) -> BoxFuture<'a, Result<InstanceState, ProviderError>>;
    /// Stop and remove the instance. Idempotent: stopping a gone instance is `Ok`.
    fn stop<'a>(&'a self, inst: &'a InstanceRef) -> BoxFuture<'a, Result<(), ProviderError>>;
    /// The instances this provider owns that still exist (for orphan reconciliation after a
    /// restart): local processes whose group is alive, Fly runner machines not destroyed.
    fn list(&self) -> BoxFuture<'_, Result<Vec<InstanceRef>, ProviderError>>;
    /// The end of the instance's output (UTF-8, lossy), JIT config redacted, if this provider
    /// captures it and still holds it (local instances started by this engine process).
    fn output_tail(&self, inst: &InstanceRef) -> Option<String> {
        let _ = inst;
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// Provider kind (`kind = "local" | "fly"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// A process on this host ([`LocalProvider`]).
    Local,
    /// A Fly Machine ([`FlyProvider`]).
    Fly,
}

impl ProviderKind {
    /// `"local"` or `"fly"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Local => "local",
            ProviderKind::Fly => "fly",
        }
    }
}

/// One `[[autoscaler.providers]]` table. Example:
///
/// ```toml
/// [[autoscaler.providers]]
/// name = "local-linux"
/// kind = "local"
/// labels = ["self-hosted", "linux", "x64"]
/// command = ["/bin/sh", "-c", "exec /opt/actions-runner/run.sh --jitconfig \"$FLOTILLA_JITCONFIG\""]
/// max_runners = 2
///
/// [[autoscaler.providers]]
/// name = "fly-linux"
/// kind = "fly"
/// labels = ["self-hosted", "linux", "fly"]
/// image = "registry.fly.io/my-runner:latest"
/// region = "iad"
/// cpus = 4
/// memory_mb = 8192
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Unique name: ASCII letters, digits, `-`, `_`; at most 64 characters. Used in runner
    /// names, the local record directory and Fly metadata.
    pub name: String,
    /// `local` or `fly`.
    pub kind: ProviderKind,
    /// Labels of the runners it starts (non-empty; each non-blank, no commas).
    pub labels: Vec<String>,
    /// `local` only, required: the argv to run, run without a shell. It gets the JIT config
    /// in [`ENV_JITCONFIG`] and the runner name in [`ENV_RUNNER_NAME`].
    #[serde(default)]
    pub command: Vec<String>,
    /// Most runners at once (`None`: no limit of its own).
    #[serde(default)]
    pub max_runners: Option<u32>,
    /// `fly` only, required: the runner image (it must start the Actions runner with
    /// `--jitconfig "$FLOTILLA_JITCONFIG"`).
    #[serde(default)]
    pub image: Option<String>,
    /// `fly` only: region code, e.g. `iad` (default: Fly picks one).
    #[serde(default)]
    pub region: Option<String>,
    /// `fly` only: `shared` or `performance` (default [`DEFAULT_FLY_CPU_KIND`]).
    #[serde(default)]
    pub cpu_kind: Option<String>,
    /// `fly` only: vCPUs (default [`DEFAULT_FLY_CPUS`]).
    #[serde(default)]
    pub cpus: Option<u32>,
    /// `fly` only: memory in MB (default [`DEFAULT_FLY_MEMORY_MB`]).
    #[serde(default)]
    pub memory_mb: Option<u32>,
    /// `fly` only: the Fly app of the runner machines (default `FLY_APP_NAME`).
    #[serde(default)]
    pub app: Option<String>,
    /// `local` only: seconds between SIGTERM and SIGKILL on stop (default 10).
    #[serde(default)]
    pub stop_grace_secs: Option<u64>,
    /// Extra environment of the runner, non-secret (it is stored in config files and, for
    /// fly, in the machine config). Flotilla's own secret names and the two `FLOTILLA_*`
    /// names above are refused.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl ProviderConfig {
    fn err(&self, reason: impl Into<String>) -> ProviderError {
        ProviderError::Config {
            provider: self.name.clone(),
            reason: reason.into(),
        }
    }

    /// Check one entry: a valid name, labels, `command` for local, `image` for fly, no option
    /// of the other kind, valid env names. Errors say which field and what to do.
    pub fn validate(&self) -> Result<(), ProviderError> {
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(self.err(
                "`name` must be 1-64 ASCII letters, digits, '-' or '_' (it names files and Fly metadata)",
            ));
        }
        if self.labels.is_empty() {
            return Err(self.err(
                "`labels` is empty; give the runs-on labels its runners serve, e.g. [\"self-hosted\", \"linux\"]",
            ));
        }
        if let Some(l) = self
            .labels
            .iter()
            .find(|l| l.trim().is_empty() || l.contains(','))
        {
            return Err(self.err(format!(
                "bad label {l:?}: labels are non-blank, without commas"
            )));
        }
        for k in self.env.keys() {
            let valid = k
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                return Err(self.err(format!("bad env name {k:?}")));
            }
            if [
                ENV_JITCONFIG,
                ENV_RUNNER_NAME,
                ENV_REG_URL,
                ENV_REG_TOKEN,
                ENV_REG_LABELS,
            ]
            .contains(&k.as_str())
            {
                return Err(self.err(format!("env {k} is set by Flotilla; remove it")));
            }
            if SECRET_ENV.contains(&k.as_str()) {
                return Err(self.err(format!(
                    "env {k} is one of Flotilla's secrets and is never passed to runners; remove it"
                )));
            }
        }
        let fly_only = [
            ("image", self.image.is_some()),
            ("region", self.region.is_some()),
            ("cpu_kind", self.cpu_kind.is_some()),
            ("cpus", self.cpus.is_some()),
            ("memory_mb", self.memory_mb.is_some()),
            ("app", self.app.is_some()),
        ];
        match self.kind {
            ProviderKind::Local => {
                if self.command.first().is_none_or(|c| c.trim().is_empty()) {
                    return Err(self.err(
                        "`command` is empty; a local provider needs the argv of its runner, e.g. [\"/bin/sh\", \"-c\", \"exec /opt/actions-runner/run.sh --jitconfig \\\"$FLOTILLA_JITCONFIG\\\"\"]",
                    ));
                }
                if let Some((f, _)) = fly_only.iter().find(|(_, set)| *set) {
                    return Err(self.err(format!(
                        "`{f}` applies to fly providers only; remove it or set kind = \"fly\""
                    )));
                }
            }
            ProviderKind::Fly => {
                if self.image.as_deref().is_none_or(|i| i.trim().is_empty()) {
                    return Err(self
                        .err("`image` is missing; a fly provider needs the runner image to boot"));
                }
                if !self.command.is_empty() {
                    return Err(self.err(
                        "`command` applies to local providers only; a fly runner runs its image's entrypoint",
                    ));
                }
                if self.stop_grace_secs.is_some() {
                    return Err(self.err(
                        "`stop_grace_secs` applies to local providers only (fly stops force-delete)",
                    ));
                }
                if self.cpus == Some(0) || self.memory_mb == Some(0) {
                    return Err(self.err("`cpus` and `memory_mb` must be at least 1"));
                }
            }
        }
        Ok(())
    }
}

/// Check every entry ([`ProviderConfig::validate`]) and that names are unique.
pub fn validate_all(cfgs: &[ProviderConfig]) -> Result<(), ProviderError> {
    let mut seen = BTreeSet::new();
    for c in cfgs {
        c.validate()?;
        if !seen.insert(c.name.as_str()) {
            return Err(
                c.err("two [[autoscaler.providers]] entries have this name; names must be unique")
            );
        }
    }
    Ok(())
}

/// What building a provider needs besides its config.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// Directory of the local instance records, normally `<data_dir>/runners`; each local
    /// provider uses `<runners_dir>/<name>/` (mode 0700).
    pub runners_dir: PathBuf,
    /// Machines API client settings (`FlyConfig::from_env`: `FLY_API_TOKEN`, `FLY_APP_NAME`);
    /// `None` makes a fly provider a configuration error.
    pub fly: Option<FlyConfig>,
}

/// Build one provider from its validated config. Errors: an invalid entry, a record directory
/// that cannot be created, a fly provider without Fly settings.
pub fn build(cfg: &ProviderConfig, ctx: &BuildContext) -> Result<Arc<dyn Provider>, ProviderError> {
    cfg.validate()?;
    match cfg.kind {
        ProviderKind::Local => {
            let mut opts = LocalOptions::default();
            if let Some(s) = cfg.stop_grace_secs {
                opts.stop_grace = Duration::from_secs(s);
            }
            Ok(Arc::new(LocalProvider::new(cfg, &ctx.runners_dir, opts)?))
        }
        ProviderKind::Fly => {
            let mut fly = ctx.fly.clone().ok_or_else(|| {
                cfg.err("fly providers need FLY_API_TOKEN and FLY_APP_NAME (or `app`) to be set")
            })?;
            if let Some(app) = &cfg.app {
                fly.app_name = app.clone();
            }
            let client = FlyClient::new(fly).map_err(|e| cfg.err(e.to_string()))?;
            Ok(Arc::new(FlyProvider::new(
                cfg,
                Arc::new(client),
                FlyOptions::default(),
            )?))
        }
    }
}

/// Build every provider, after [`validate_all`].
pub fn build_all(
    cfgs: &[ProviderConfig],
    ctx: &BuildContext,
) -> Result<Vec<Arc<dyn Provider>>, ProviderError> {
    validate_all(cfgs)?;
    cfgs.iter().map(|c| build(c, ctx)).collect()
}

fn check_runner_name(provider: &str, spec: &LaunchSpec) -> Result<(), ProviderError> {
    let n = &spec.name;
    let ok = !n.is_empty()
        && n.len() <= 128
        && !n.starts_with('.')
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    let bad = |reason: &str| ProviderError::BadSpec {
        provider: provider.to_string(),
        runner: n.clone(),
        reason: reason.to_string(),
    };
    if !ok {
        return Err(bad(
            "a runner name is 1-128 ASCII letters, digits, '-', '_' or '.' (not first)",
        ));
    }
    if spec.secret().trim().is_empty() {
        return Err(bad("the JIT config (or registration token) is empty"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Local: /proc, process groups, output
// ---------------------------------------------------------------------------------------------

/// The id of a local instance: `pid:<pid>:start:<ticks>[:boot:<boot id>]`. `pid` is also the
/// process group id (the runner is started as a group leader); `start_ticks` is the process
/// start time in clock ticks after boot (`/proc/<pid>/stat` field 22), so a pid reused by
/// another process does not match; `boot_id` (`/proc/sys/kernel/random/boot_id`) rules out a
/// match across reboots.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LocalInstanceId {
    /// Process id = process group id.
    pub pid: u32,
    /// Start time, clock ticks after boot.
    pub start_ticks: u64,
    /// Kernel boot id, if it could be read.
    pub boot_id: Option<String>,
}

impl LocalInstanceId {
    /// Parse the `Display` form; `None` if malformed.
    pub fn parse(s: &str) -> Option<Self> {
        let parts: Vec<&str> = s.split(':').collect();
        let (pid, start, boot) = match parts.as_slice() {
            ["pid", p, "start", t] => (p, t, None),
            ["pid", p, "start", t, "boot", b] if !b.is_empty() => (p, t, Some(b.to_string())),
            _ => return None,
        };
        let pid: u32 = pid.parse().ok().filter(|p| *p > 1)?;
        Some(LocalInstanceId {
            pid,
            start_ticks: start.parse().ok()?,
            boot_id: boot,
        })
    }
}

impl fmt::Display for LocalInstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid:{}:start:{}", self.pid, self.start_ticks)?;
        if let Some(b) = &self.boot_id {
            write!(f, ":boot:{b}")?;
        }
        Ok(())
    }
}

/// The fields of `/proc/<pid>/stat` we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcStat {
    /// Field 3: `R`, `S`, `D`, `Z`, `T`, ...
    state: char,
    /// Field 5: process group id.
    pgrp: u32,
    /// Field 22: start time, clock ticks after boot.
    start: u64,
}

/// Parse a `/proc/<pid>/stat` line. The command (field 2) is in parentheses and may contain
/// spaces and parentheses, so fields are counted from the last `)`.
fn parse_stat(s: &str) -> Option<ProcStat> {
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcStat {
        state: f.first()?.chars().next()?,
        pgrp: f.get(2)?.parse().ok()?,
        start: f.get(19)?.parse().ok()?,
    })
}

fn proc_stat(pid: u32) -> Option<ProcStat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn is_dead(state: char) -> bool {
    matches!(state, 'Z' | 'X' | 'x')
}

/// Process groups with at least one process that is not a zombie.
fn live_groups() -> HashSet<u32> {
    let mut out = HashSet::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if let Some(st) = proc_stat(pid)
            && !is_dead(st.state)
        {
            out.insert(st.pgrp);
        }
    }
    out
}

fn boot_id() -> Option<String> {
    static BOOT: OnceLock<Option<String>> = OnceLock::new();
    BOOT.get_or_init(|| {
        fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && !s.contains(':'))
    })
    .clone()
}

/// Liveness of a local instance from `/proc` alone (what a new engine process can know).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Liveness {
    /// The leader is our process and alive.
    Running,
    /// The leader is gone (or a zombie) but other processes of its group live on.
    LeaderExited,
    /// Nothing left of it.
    Gone,
}

/// Decide liveness. A pid whose start time differs has been reused, and then our group is
/// gone as well: Linux does not hand out a pid while it is still some process group's id.
fn probe(id: &LocalInstanceId) -> Liveness {
    if let (Some(then), Some(now)) = (&id.boot_id, boot_id())
        && *then != now
    {
        return Liveness::Gone;
    }
    let group_alive = || live_groups().contains(&id.pid);
    match proc_stat(id.pid) {
        Some(st) if st.start != id.start_ticks => Liveness::Gone,
        Some(st) if !is_dead(st.state) => Liveness::Running,
        _ if group_alive() => Liveness::LeaderExited,
        _ => Liveness::Gone,
    }
}

/// Send `sig` to process group `pgid` (ESRCH ignored).
fn kill_group(pgid: u32, sig: i32) {
    if pgid > 1 {
        // SAFETY: killpg has no memory-safety preconditions; a stale pgid yields ESRCH.
        unsafe {
            libc::killpg(pgid as libc::pid_t, sig);
        }
    }
}

/// Replaces every occurrence of a secret in a byte stream fed in arbitrary chunks: bytes that
/// could be the start of a split occurrence are held back until the next chunk.
struct Redactor {
    secret: SecretString,
    pending: Zeroizing<Vec<u8>>,
}

impl Redactor {
    fn new(secret: SecretString) -> Self {
        Redactor {
            secret,
            pending: Zeroizing::new(Vec::new()),
        }
    }

    /// Feed a chunk; returns the bytes that are safe to keep.
    fn feed(&mut self, data: &[u8]) -> Vec<u8> {
        let s = self.secret.expose_secret().as_bytes();
        if s.is_empty() {
            return data.to_vec();
        }
        self.pending.extend_from_slice(data);
        let mut out = Vec::with_capacity(self.pending.len());
        let mut start = 0;
        while let Some(i) = memchr::memmem::find(&self.pending[start..], s) {
            out.extend_from_slice(&self.pending[start..start + i]);
            out.extend_from_slice(REDACTED);
            start += i + s.len();
        }
        let rest = &self.pending[start..];
        let max = rest.len().min(s.len() - 1);
        let keep = (1..=max)
            .rev()
            .find(|&k| rest[rest.len() - k..] == s[..k])
            .unwrap_or(0);
        out.extend_from_slice(&rest[..rest.len() - keep]);
        let cut = self.pending.len() - keep;
        self.pending.drain(..cut);
        out
    }

    /// End of stream: what is still held back. A held-back start of the secret of 8 bytes or
    /// more is redacted too.
    fn finish(&mut self) -> Vec<u8> {
        let out = if self.pending.len() >= 8 {
            REDACTED.to_vec()
        } else {
            self.pending.to_vec()
        };
        self.pending.zeroize();
        out
    }
}

/// The last `limit` bytes of a process's output.
#[derive(Debug)]
struct OutputTail {
    buf: VecDeque<u8>,
    limit: usize,
}

impl OutputTail {
    fn new(limit: usize) -> Self {
        OutputTail {
            buf: VecDeque::new(),
            limit,
        }
    }
    fn push(&mut self, data: &[u8]) {
        let data = &data[data.len().saturating_sub(self.limit)..];
        let over = (self.buf.len() + data.len()).saturating_sub(self.limit);
        self.buf.drain(..over);
        self.buf.extend(data);
    }
    fn text(&self) -> String {
        let (a, b) = self.buf.as_slices();
        let mut v = Vec::with_capacity(a.len() + b.len());
        v.extend_from_slice(a);
        v.extend_from_slice(b);
        String::from_utf8_lossy(&v).into_owned()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ExitInfo {
    code: Option<i32>,
    signal: Option<i32>,
}

impl ExitInfo {
    fn success(&self) -> bool {
        self.code == Some(0)
    }
    fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("exited with status {c}"),
            (None, Some(s)) => format!("was killed by signal {s}"),
            _ => "ended".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct ChildStatus {
    exit: Option<ExitInfo>,
    /// Both output pipes reached end of file.
    drained: bool,
}

#[derive(Debug)]
struct Tracked {
    seq: u64,
    tail: Arc<Mutex<OutputTail>>,
    status: watch::Receiver<ChildStatus>,
}

async fn pump(mut r: impl AsyncRead + Unpin, tail: Arc<Mutex<OutputTail>>, mut red: Redactor) {
    let mut buf = Zeroizing::new(vec![0u8; 8192]);
    let push = |bytes: &[u8]| {
        if let Ok(mut t) = tail.lock() {
            t.push(bytes);
        }
    };
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => push(&red.feed(&buf[..n])),
        }
    }
    push(&red.finish());
}

async fn supervise(
    mut child: tokio::process::Child,
    tail: Arc<Mutex<OutputTail>>,
    secret: SecretString,
    tx: watch::Sender<ChildStatus>,
) {
    let mut pumps = Vec::new();
    if let Some(o) = child.stdout.take() {
        pumps.push(tokio::spawn(pump(
            o,
            tail.clone(),
            Redactor::new(secret.clone()),
        )));
    }
    if let Some(e) = child.stderr.take() {
        pumps.push(tokio::spawn(pump(e, tail, Redactor::new(secret.clone()))));
    }
    drop(secret);
    let exit = match child.wait().await {
        Ok(st) => ExitInfo {
            code: st.code(),
            signal: st.signal(),
        },
        Err(_) => ExitInfo {
            code: None,
            signal: None,
        },
    };
    tx.send_modify(|s| s.exit = Some(exit));
    for p in pumps {
        let _ = p.await;
    }
    tx.send_modify(|s| s.drained = true);
}

// ---------------------------------------------------------------------------------------------
// Local provider
// ---------------------------------------------------------------------------------------------

/// Tunables of a [`LocalProvider`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalOptions {
    /// Bytes of output tail kept per instance ([`DEFAULT_OUTPUT_LIMIT`]).
    pub output_limit: usize,
    /// SIGTERM-to-SIGKILL grace of a stop ([`DEFAULT_STOP_GRACE`]).
    pub stop_grace: Duration,
    /// Exiting with an error within this time after spawn fails the launch
    /// ([`DEFAULT_STARTUP_WINDOW`]); a launch takes at least this long.
    pub startup_window: Duration,
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions {
            output_limit: DEFAULT_OUTPUT_LIMIT,
            stop_grace: DEFAULT_STOP_GRACE,
            startup_window: DEFAULT_STARTUP_WINDOW,
        }
    }
}

/// Runs each runner as a local process: the configured argv, no shell, its own process group,
/// stdin `/dev/null`, stdout and stderr captured. Environment: the engine's, minus Flotilla's
/// secrets ([`SECRET_ENV`]), plus the config's `env`, [`ENV_RUNNER_NAME`] and
/// [`ENV_JITCONFIG`]. (`/proc/<pid>/environ` is readable only by the same user and root.)
///
/// Each instance is recorded in `<runners_dir>/<provider>/<runner>.json` (mode 0600, the
/// [`InstanceRef`] JSON only) from launch until stop, so [`Provider::list`] finds it after a
/// restart. Known limit: after a restart nobody reads the runner's output pipes any more, so
/// its output is lost and a write to stdout may fail (EPIPE) in the runner.
pub struct LocalProvider {
    name: String,
    labels: Vec<String>,
    command: Vec<String>,
    env: BTreeMap<String, String>,
    max_runners: Option<u32>,
    dir: PathBuf,
    opts: LocalOptions,
    tracked: Mutex<(u64, BTreeMap<String, Tracked>)>,
}

impl fmt::Debug for LocalProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalProvider")
            .field("name", &self.name)
            .field("labels", &self.labels)
            .field("command", &self.command)
            .field("dir", &self.dir)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl LocalProvider {
    /// A local provider for a `kind = "local"` entry; creates `<runners_dir>/<name>/` (mode
    /// 0700). Errors: invalid config, directory not creatable.
    pub fn new(
        cfg: &ProviderConfig,
        runners_dir: &Path,
        opts: LocalOptions,
    ) -> Result<Self, ProviderError> {
        cfg.validate()?;
        if cfg.kind != ProviderKind::Local {
            return Err(cfg.err("not a local provider"));
        }
        let dir = runners_dir.join(&cfg.name);
        let io = |doing: &str, source| ProviderError::Io {
            provider: cfg.name.clone(),
            doing: doing.into(),
            path: dir.clone(),
            source,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| io("cannot create the instance record directory", e))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| io("cannot restrict the instance record directory", e))?;
        Ok(LocalProvider {
            name: cfg.name.clone(),
            labels: cfg.labels.clone(),
            command: cfg.command.clone(),
            env: cfg.env.clone(),
            max_runners: cfg.max_runners,
            dir,
            opts,
            tracked: Mutex::new((0, BTreeMap::new())),
        })
    }

    /// The directory of this provider's instance records.
    pub fn record_dir(&self) -> &Path {
        &self.dir
    }

    /// The end of a local instance's output (JIT config redacted), if this engine process
    /// started it and still holds it (the last 256 finished instances are kept).
    pub fn output(&self, inst: &InstanceRef) -> Option<String> {
        let t = self.lock();
        let tr = t.1.get(&inst.id)?;
        let tail = tr.tail.lock().ok()?;
        Some(tail.text())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, BTreeMap<String, Tracked>)> {
        self.tracked.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn track(
        &self,
        id: String,
        tail: Arc<Mutex<OutputTail>>,
        status: watch::Receiver<ChildStatus>,
    ) {
        let mut t = self.lock();
        t.0 += 1;
        let seq = t.0;
        t.1.insert(id, Tracked { seq, tail, status });
        if t.1.len() > MAX_TRACKED {
            let mut done: Vec<(u64, String)> =
                t.1.iter()
                    .filter(|(_, v)| v.status.borrow().exit.is_some())
                    .map(|(k, v)| (v.seq, k.clone()))
                    .collect();
            done.sort();
            let excess = t.1.len() - MAX_TRACKED;
            for (_, k) in done.into_iter().take(excess) {
                t.1.remove(&k);
            }
        }
    }

    fn tracked_exit(&self, id: &str) -> Option<Option<ExitInfo>> {
        self.lock().1.get(id).map(|t| t.status.borrow().exit)
    }

    fn io_err(&self, doing: &str, path: &Path, source: std::io::Error) -> ProviderError {
        ProviderError::Io {
            provider: self.name.clone(),
            doing: doing.into(),
            path: path.to_path_buf(),
            source,
        }
    }

    fn own_id(&self, inst: &InstanceRef) -> Result<LocalInstanceId, ProviderError> {
        let foreign = |reason: &str| ProviderError::Foreign {
            provider: self.name.clone(),
            instance: inst.clone(),
            reason: reason.into(),
        };
        if inst.provider != self.name {
            return Err(foreign("it belongs to another provider"));
        }
        LocalInstanceId::parse(&inst.id)
            .ok_or_else(|| foreign("not a local instance id (pid:<pid>:start:<ticks>)"))
    }

    /// Write the record atomically (temp file 0600, fsync, rename, fsync the directory).
    fn write_record(&self, runner: &str, inst: &InstanceRef) -> Result<(), ProviderError> {
        let path = self.dir.join(format!("{runner}.json"));
        let tmp = self.dir.join(format!(".{runner}.json.tmp"));
        let json = serde_json::to_vec(inst).map_err(std::io::Error::other);
        let res = json.and_then(|json| {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            fs::File::open(&self.dir)?.sync_all()
        });
        res.map_err(|e| {
            let _ = fs::remove_file(&tmp);
            self.io_err("cannot write the instance record", &path, e)
        })
    }

    /// This provider's records: `(file, instance)`. Unreadable files are skipped with a
    /// warning.
    fn records(&self) -> Result<Vec<(PathBuf, InstanceRef)>, ProviderError> {
        let dir = fs::read_dir(&self.dir)
            .map_err(|e| self.io_err("cannot read the instance records", &self.dir, e))?;
        let mut out = Vec::new();
        for e in dir.flatten() {
            let path = e.path();
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            match fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<InstanceRef>(&b).map_err(|e| e.to_string()))
            {
                Ok(r) if r.provider == self.name => out.push((path, r)),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(provider = %self.name, path = %path.display(), "skipping an unreadable runner record: {e}")
                }
            }
        }
        Ok(out)
    }

    fn remove_record(&self, inst: &InstanceRef) -> Result<(), ProviderError> {
        for (path, r) in self.records()? {
            if r.id == inst.id {
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(self.io_err("cannot remove the instance record", &path, e));
                    }
                }
            }
        }
        Ok(())
    }

    async fn launch_local(&self, spec: &LaunchSpec) -> Result<InstanceRef, ProviderError> {
        check_runner_name(&self.name, spec)?;
        let program = self.command[0].clone();
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(&self.command[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        for k in SECRET_ENV {
            cmd.env_remove(k);
        }
        cmd.envs(&self.env)
            .env(ENV_RUNNER_NAME, &spec.name)
            .envs(spec.credential_env());
        let spawned = cmd.spawn();
        drop(cmd);
        let mut child = spawned.map_err(|source| ProviderError::Spawn {
            provider: self.name.clone(),
            runner: spec.name.clone(),
            program: program.clone(),
            source,
        })?;
        // Until it is reaped (below, by `supervise`) the child stays in /proc even if it has
        // already exited, so its start time can always be read here.
        let pid = child.id().unwrap_or(0);
        let Some(stat) = proc_stat(pid) else {
            kill_group(pid, libc::SIGKILL);
            let _ = child.wait().await;
            return Err(self.io_err(
                "cannot read the start time of the new runner process",
                Path::new(&format!("/proc/{pid}/stat")),
                std::io::Error::other("unreadable"),
            ));
        };
        let id = LocalInstanceId {
            pid,
            start_ticks: stat.start,
            boot_id: boot_id(),
        };
        let inst = InstanceRef {
            provider: self.name.clone(),
            id: id.to_string(),
        };
        if let Err(e) = self.write_record(&spec.name, &inst) {
            kill_group(pid, libc::SIGKILL);
            let _ = child.wait().await;
            return Err(e);
        }
        let tail = Arc::new(Mutex::new(OutputTail::new(self.opts.output_limit)));
        let (tx, mut rx) = watch::channel(ChildStatus::default());
        let secret = SecretString::from(spec.secret().to_string());
        tokio::spawn(supervise(child, tail.clone(), secret, tx));
        self.track(inst.id.clone(), tail.clone(), rx.clone());
        tracing::info!(provider = %self.name, runner = %spec.name, pid, "local runner started");

        let early =
            tokio::time::timeout(self.opts.startup_window, rx.wait_for(|s| s.exit.is_some()))
                .await
                .ok()
                .and_then(|r| r.ok().and_then(|s| s.exit));
        let Some(exit) = early.filter(|e| !e.success()) else {
            return Ok(inst);
        };
        // Failed at once: kill what is left of the group (its id stays reserved while any
        // member lives, so this cannot hit another group), collect the output, forget it.
        if live_groups().contains(&pid) {
            kill_group(pid, libc::SIGKILL);
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), rx.wait_for(|s| s.drained)).await;
        let text = tail.lock().map(|t| t.text()).unwrap_or_default();
        let skip = text.chars().count().saturating_sub(ERROR_TAIL_CHARS);
        let output: String = text
            .chars()
            .skip(skip)
            .collect::<String>()
            .trim()
            .to_string();
        self.remove_record(&inst)?;
        tracing::warn!(provider = %self.name, runner = %spec.name, pid, "local runner {} right after start", exit.describe());
        Err(ProviderError::EarlyExit {
            provider: self.name.clone(),
            runner: spec.name.clone(),
            status: exit.describe(),
            code: exit.code,
            signal: exit.signal,
            output,
        })
    }

    async fn state_local(&self, inst: &InstanceRef) -> Result<InstanceState, ProviderError> {
        let id = self.own_id(inst)?;
        if let Some(exit) = self.tracked_exit(&inst.id) {
            return Ok(match exit {
                Some(e) => InstanceState::Exited { code: e.code },
                None => InstanceState::Running,
            });
        }
        Ok(match probe(&id) {
            Liveness::Running => InstanceState::Running,
            Liveness::LeaderExited => InstanceState::Exited { code: None },
            Liveness::Gone => InstanceState::Gone,
        })
    }

    async fn wait_gone(id: &LocalInstanceId, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if probe(id) == Liveness::Gone {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn stop_local(&self, inst: &InstanceRef) -> Result<(), ProviderError> {
        let id = self.own_id(inst)?;
        // Probe before each signal: once the group is gone its id may be reused.
        if probe(&id) != Liveness::Gone {
            kill_group(id.pid, libc::SIGTERM);
            kill_group(id.pid, libc::SIGCONT);
            if !Self::wait_gone(&id, self.opts.stop_grace).await && probe(&id) != Liveness::Gone {
                tracing::info!(provider = %self.name, instance = %inst, "runner ignored SIGTERM, sending SIGKILL");
                kill_group(id.pid, libc::SIGKILL);
                if !Self::wait_gone(&id, KILL_WAIT).await {
                    return Err(ProviderError::StopTimeout {
                        provider: self.name.clone(),
                        instance: inst.clone(),
                        pgid: id.pid,
                        waited: KILL_WAIT,
                    });
                }
            }
            tracing::info!(provider = %self.name, instance = %inst, "local runner stopped");
        }
        // Our own child: let its supervisor reap it and record the exit, so that `state`
        // answers `Exited` (not `Running`) once `stop` has returned.
        let status = self.lock().1.get(&inst.id).map(|t| t.status.clone());
        if let Some(mut rx) = status {
            let _ = tokio::time::timeout(KILL_WAIT, rx.wait_for(|s| s.exit.is_some())).await;
        }
        self.remove_record(inst)
    }

    async fn list_local(&self) -> Result<Vec<InstanceRef>, ProviderError> {
        let mut out = Vec::new();
        for (path, r) in self.records()? {
            let Some(id) = LocalInstanceId::parse(&r.id) else {
                tracing::warn!(provider = %self.name, path = %path.display(), "skipping a runner record with a malformed id");
                continue;
            };
            if probe(&id) == Liveness::Gone {
                let _ = fs::remove_file(&path);
            } else {
                out.push(r);
            }
        }
        out.sort();
        Ok(out)
    }
}

impl Provider for LocalProvider {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        ProviderKind::Local.as_str()
    }
    fn labels(&self) -> &[String] {
        &self.labels
    }
    fn max_runners(&self) -> Option<u32> {
        self.max_runners
    }
    fn launch<'a>(
        &'a self,
        spec: &'a LaunchSpec,
    ) -> BoxFuture<'a, Result<InstanceRef, ProviderError>> {
        Box::pin(self.launch_local(spec))
    }
    fn state<'a>(
        &'a self,
        inst: &'a InstanceRef,
    ) -> BoxFuture<'a, Result<InstanceState, ProviderError>> {
        Box::pin(self.state_local(inst))
    }
    fn stop<'a>(&'a self, inst: &'a InstanceRef) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(self.stop_local(inst))
    }
    fn list(&self) -> BoxFuture<'_, Result<Vec<InstanceRef>, ProviderError>> {
        Box::pin(self.list_local())
    }
    fn output_tail(&self, inst: &InstanceRef) -> Option<String> {
        self.output(inst)
    }
}

// ---------------------------------------------------------------------------------------------
// Fly provider
// ---------------------------------------------------------------------------------------------

/// Tunables of a [`FlyProvider`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlyOptions {
    /// Longest wait for a new machine to reach `started` ([`DEFAULT_FLY_LAUNCH_TIMEOUT`]).
    pub launch_timeout: Duration,
}

impl Default for FlyOptions {
    fn default() -> Self {
        FlyOptions {
            launch_timeout: DEFAULT_FLY_LAUNCH_TIMEOUT,
        }
    }
}

/// Runs each runner as a Fly Machine (Machines API `POST /v1/apps/{app}/machines`): the
/// configured image and guest, env [`ENV_JITCONFIG`] and [`ENV_RUNNER_NAME`] plus the config's
/// `env`, metadata [`META_ROLE`]`=runner`, [`META_RUNNER`] and [`META_PROVIDER`],
/// `auto_destroy: true` and restart policy `no` (one job, then the machine is destroyed).
/// The JIT config is in the create request only: the copies we held, and those Fly echoes
/// back in machine configs, are zeroed and dropped at once; the client scrubs env values from
/// its error messages.
pub struct FlyProvider<A: FlyApi> {
    name: String,
    labels: Vec<String>,
    max_runners: Option<u32>,
    image: String,
    region: Option<String>,
    guest: Guest,
    env: BTreeMap<String, String>,
    api: Arc<A>,
    opts: FlyOptions,
}

impl<A: FlyApi> fmt::Debug for FlyProvider<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlyProvider")
            .field("name", &self.name)
            .field("app", &self.api.app_name())
            .field("image", &self.image)
            .field("region", &self.region)
            .field("guest", &self.guest)
            .finish_non_exhaustive()
    }
}

/// Zero the env values of a machine's config (Fly returns the config it was created with).
fn scrub(m: &mut Machine) {
    if let Some(c) = m.config.as_mut() {
        for v in c.env.0.values_mut() {
            v.zeroize();
        }
    }
}

/// Remove every occurrence of `secret` from the text a Fly error carries.
fn redact_fly(e: FlyError, secret: &str) -> FlyError {
    let r = |t: String| fly::redact(&t, &[secret]);
    match e {
        FlyError::Api {
            target,
            status,
            reason,
            message,
        } => FlyError::Api {
            target,
            status,
            reason,
            message: r(message),
        },
        FlyError::Exhausted {
            target,
            attempts,
            last_status,
            last,
        } => FlyError::Exhausted {
            target,
            attempts,
            last_status,
            last: r(last),
        },
        FlyError::Decode { target, message } => FlyError::Decode {
            target,
            message: r(message),
        },
        FlyError::Config(m) => FlyError::Config(r(m)),
        other @ FlyError::Transport { .. } => other,
    }
}

impl<A: FlyApi + 'static> FlyProvider<A> {
    /// A Fly provider for a `kind = "fly"` entry over a Machines API client.
    pub fn new(cfg: &ProviderConfig, api: Arc<A>, opts: FlyOptions) -> Result<Self, ProviderError> {
        cfg.validate()?;
        if cfg.kind != ProviderKind::Fly {
            return Err(cfg.err("not a fly provider"));
        }
        Ok(FlyProvider {
            name: cfg.name.clone(),
            labels: cfg.labels.clone(),
            max_runners: cfg.max_runners,
            image: cfg.image.clone().unwrap_or_default(),
            region: cfg.region.clone(),
            guest: Guest {
                cpu_kind: cfg
                    .cpu_kind
                    .clone()
                    .unwrap_or_else(|| DEFAULT_FLY_CPU_KIND.into()),
                cpus: cfg.cpus.unwrap_or(DEFAULT_FLY_CPUS),
                memory_mb: cfg.memory_mb.unwrap_or(DEFAULT_FLY_MEMORY_MB),
            },
            env: cfg.env.clone(),
            api,
            opts,
        })
    }

    /// The Machines API client.
    pub fn api(&self) -> &A {
        &self.api
    }

    fn fly_err(&self, doing: String, source: FlyError, cleanup: Option<String>) -> ProviderError {
        ProviderError::Fly {
            provider: self.name.clone(),
            doing,
            source: Box::new(source),
            cleanup,
        }
    }

    fn is_ours(&self, m: &Machine) -> bool {
        m.metadata(META_ROLE) == Some(ROLE_RUNNER)
            && m.metadata(META_PROVIDER) == Some(self.name.as_str())
            && m.metadata(META_RUNNER).is_some()
    }

    /// After a failed create: a machine may exist anyway (the response was lost or unreadable,
    /// or a retried create hit the first one's name). Delete whatever carries this runner's
    /// name. Returns a note for the error.
    async fn cleanup_runner(&self, runner: &str) -> String {
        let machines = match self.api.list_machines().await {
            Ok(ms) => ms,
            Err(e) => {
                return format!(
                    "could not check for a machine left by the failed create ({e}); list() will show it"
                );
            }
        };
        let ids: Vec<String> = machines
            .into_iter()
            .map(|mut m| {
                scrub(&mut m);
                m
            })
            .filter(|m| self.is_ours(m) && m.metadata(META_RUNNER) == Some(runner))
            .map(|m| m.id)
            .collect();
        if ids.is_empty() {
            return "no machine was left behind".into();
        }
        let mut notes = Vec::new();
        for id in ids {
            match self.api.delete_machine(&id, true).await {
                Ok(()) => notes.push(format!("deleted machine {id} left by the failed create")),
                Err(e) if e.is_not_found() => {}
                Err(e) => notes.push(format!(
                    "machine {id} left by the failed create could not be deleted ({e}); list() will show it"
                )),
            }
        }
        notes.join("; ")
    }

    async fn wait_started(&self, id: &str, instance_id: Option<&str>) -> Result<(), FlyError> {
        let deadline = tokio::time::Instant::now() + self.opts.launch_timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self
                .api
                .wait_for_state(id, instance_id, WaitState::Started, left.min(MAX_WAIT))
                .await
            {
                Ok(()) => return Ok(()),
                // 408: Fly's wait timed out; wait again while our own deadline allows.
                Err(e) if e.status() == Some(408) && tokio::time::Instant::now() < deadline => {}
                Err(e) => return Err(e),
            }
        }
    }

    async fn launch_fly(&self, spec: &LaunchSpec) -> Result<InstanceRef, ProviderError> {
        check_runner_name(&self.name, spec)?;
        let mut env = Env(self.env.clone());
        env.0.insert(ENV_RUNNER_NAME.into(), spec.name.clone());
        for (k, v) in spec.credential_env() {
            env.0.insert(k.into(), v);
        }
        let mut req = CreateMachineRequest {
            name: Some(spec.name.clone()),
            region: self.region.clone(),
            config: MachineConfig {
                image: self.image.clone(),
                guest: Some(self.guest.clone()),
                env,
                metadata: BTreeMap::from([
                    (META_ROLE.to_string(), ROLE_RUNNER.to_string()),
                    (META_RUNNER.to_string(), spec.name.clone()),
                    (META_PROVIDER.to_string(), self.name.clone()),
                ]),
                auto_destroy: Some(true),
                restart: Some(Restart {
                    policy: "no".into(),
                }),
                extra: Default::default(),
            },
            skip_launch: None,
        };
        let created = self.api.create_machine(&req).await;
        for v in req.config.env.0.values_mut() {
            v.zeroize();
        }
        drop(req);
        let mut machine = match created {
            Ok(m) => m,
            Err(e) => {
                // Fly echoes the config (env included) in some answers; keep it out of errors.
                let e = redact_fly(e, spec.secret());
                let cleanup = match e {
                    FlyError::Config(_) => None,
                    _ => Some(self.cleanup_runner(&spec.name).await),
                };
                tracing::warn!(provider = %self.name, runner = %spec.name, "creating a runner machine failed: {e}");
                return Err(self.fly_err(
                    format!("creating the machine of runner {}", spec.name),
                    e,
                    cleanup,
                ));
            }
        };
        scrub(&mut machine);
        let (id, instance_id) = (machine.id.clone(), machine.instance_id.clone());
        drop(machine);
        tracing::info!(provider = %self.name, runner = %spec.name, machine = %id, "runner machine created");
        if let Err(e) = self.wait_started(&id, instance_id.as_deref()).await {
            let cleanup = match self.api.delete_machine(&id, true).await {
                Ok(()) => "the machine was deleted".to_string(),
                Err(d) if d.is_not_found() => "the machine is already gone".to_string(),
                Err(d) => format!(
                    "deleting the machine failed too ({d}); list() will show it for reconciliation"
                ),
            };
            tracing::warn!(provider = %self.name, runner = %spec.name, machine = %id, "runner machine did not start: {e}; {cleanup}");
            return Err(self.fly_err(
                format!("waiting for machine {id} of runner {} to start", spec.name),
                e,
                Some(cleanup),
            ));
        }
        Ok(InstanceRef {
            provider: self.name.clone(),
            id,
        })
    }

    /// Get the machine if it exists and is ours; `None` when Fly does not know it.
    async fn own_machine(&self, inst: &InstanceRef) -> Result<Option<Machine>, ProviderError> {
        let foreign = |reason: &str| ProviderError::Foreign {
            provider: self.name.clone(),
            instance: inst.clone(),
            reason: reason.into(),
        };
        if inst.provider != self.name {
            return Err(foreign("it belongs to another provider"));
        }
        match self.api.get_machine(&inst.id).await {
            Ok(mut m) => {
                scrub(&mut m);
                if self.is_ours(&m) {
                    Ok(Some(m))
                } else {
                    Err(foreign(&format!(
                        "the machine lacks metadata {META_ROLE}={ROLE_RUNNER} and {META_PROVIDER}={}",
                        self.name
                    )))
                }
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(self.fly_err(format!("reading machine {}", inst.id), e, None)),
        }
    }

    async fn state_fly(&self, inst: &InstanceRef) -> Result<InstanceState, ProviderError> {
        Ok(match self.own_machine(inst).await? {
            None => InstanceState::Gone,
            Some(m) => machine_state(&m.state),
        })
    }

    async fn stop_fly(&self, inst: &InstanceRef) -> Result<(), ProviderError> {
        let Some(m) = self.own_machine(inst).await? else {
            return Ok(());
        };
        if m.state == MachineState::Destroyed {
            return Ok(());
        }
        match self.api.delete_machine(&inst.id, true).await {
            Ok(()) => {
                tracing::info!(provider = %self.name, machine = %inst.id, "runner machine deleted");
                Ok(())
            }
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(self.fly_err(format!("deleting machine {}", inst.id), e, None)),
        }
    }

    async fn list_fly(&self) -> Result<Vec<InstanceRef>, ProviderError> {
        let machines = self
            .api
            .list_machines()
            .await
            .map_err(|e| self.fly_err("listing machines".into(), e, None))?;
        let mut out: Vec<InstanceRef> = machines
            .into_iter()
            .map(|mut m| {
                scrub(&mut m);
                m
            })
            .filter(|m| self.is_ours(m) && !m.state.is_gone())
            .map(|m| InstanceRef {
                provider: self.name.clone(),
                id: m.id,
            })
            .collect();
        out.sort();
        Ok(out)
    }
}

/// Map a Fly machine state: created/starting/replacing (and unknown states) → `Starting`,
/// started → `Running`, stopping/stopped/suspending/suspended/failed → `Exited`,
/// destroying/destroyed → `Gone`.
pub fn machine_state(s: &MachineState) -> InstanceState {
    match s {
        MachineState::Started => InstanceState::Running,
        MachineState::Stopping
        | MachineState::Stopped
        | MachineState::Suspending
        | MachineState::Suspended
        | MachineState::Failed => InstanceState::Exited { code: None },
        MachineState::Destroying | MachineState::Destroyed => InstanceState::Gone,
        MachineState::Created
        | MachineState::Starting
        | MachineState::Replacing
        | MachineState::Unknown
        | MachineState::Other(_) => InstanceState::Starting,
    }
}

impl<A: FlyApi + 'static> Provider for FlyProvider<A> {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        ProviderKind::Fly.as_str()
    }
    fn labels(&self) -> &[String] {
        &self.labels
    }
    fn max_runners(&self) -> Option<u32> {
        self.max_runners
    }
    fn launch<'a>(
        &'a self,
        spec: &'a LaunchSpec,
    ) -> BoxFuture<'a, Result<InstanceRef, ProviderError>> {
        Box::pin(self.launch_fly(spec))
    }
    fn state<'a>(
        &'a self,
        inst: &'a InstanceRef,
    ) -> BoxFuture<'a, Result<InstanceState, ProviderError>> {
        Box::pin(self.state_fly(inst))
    }
    fn stop<'a>(&'a self, inst: &'a InstanceRef) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(self.stop_fly(inst))
    }
    fn list(&self) -> BoxFuture<'_, Result<Vec<InstanceRef>, ProviderError>> {
        Box::pin(self.list_fly())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn local_cfg() -> ProviderConfig {
        toml::from_str(
            r#"
            name = "local-linux"
            kind = "local"
            labels = ["self-hosted", "linux"]
            command = ["/bin/sh", "-c", "exec /opt/actions-runner/run.sh --jitconfig \"$FLOTILLA_JITCONFIG\""]
            max_runners = 2
            "#,
        )
        .unwrap()
    }

    fn fly_cfg() -> ProviderConfig {
        toml::from_str(
            r#"
            name = "fly-linux"
            kind = "fly"
            labels = ["self-hosted", "fly"]
            image = "registry.fly.io/runner:1"
            region = "iad"
            env = { RUNNER_ALLOW_RUNASROOT = "1" }
            "#,
        )
        .unwrap()
    }

    #[test]
    fn config_parses_and_validates() {
        let l = local_cfg();
        assert_eq!(l.kind, ProviderKind::Local);
        assert_eq!(l.max_runners, Some(2));
        l.validate().unwrap();
        let f = fly_cfg();
        f.validate().unwrap();
        validate_all(&[l.clone(), f.clone()]).unwrap();

        let unknown = toml::from_str::<ProviderConfig>(
            "name = \"x\"\nkind = \"local\"\nlabels = [\"a\"]\ncommand = [\"a\"]\nshell = \"bash\"",
        )
        .unwrap_err();
        assert!(unknown.to_string().contains("shell"), "{unknown}");

        let cases: Vec<(ProviderConfig, &str)> = vec![
            (
                ProviderConfig {
                    command: vec![],
                    ..l.clone()
                },
                "`command` is empty",
            ),
            (
                ProviderConfig {
                    command: vec![" ".into()],
                    ..l.clone()
                },
                "`command` is empty",
            ),
            (
                ProviderConfig {
                    image: None,
                    ..f.clone()
                },
                "`image` is missing",
            ),
            (
                ProviderConfig {
                    labels: vec![],
                    ..l.clone()
                },
                "`labels` is empty",
            ),
            (
                ProviderConfig {
                    labels: vec!["a,b".into()],
                    ..f.clone()
                },
                "bad label",
            ),
            (
                ProviderConfig {
                    name: "has space".into(),
                    ..l.clone()
                },
                "`name`",
            ),
            (
                ProviderConfig {
                    image: Some("x".into()),
                    ..l.clone()
                },
                "`image` applies to fly",
            ),
            (
                ProviderConfig {
                    command: vec!["x".into()],
                    ..f.clone()
                },
                "`command` applies to local",
            ),
            (
                ProviderConfig {
                    env: BTreeMap::from([("GH_TOKEN".into(), "x".into())]),
                    ..l.clone()
                },
                "GH_TOKEN is one of Flotilla's secrets",
            ),
            (
                ProviderConfig {
                    env: BTreeMap::from([(ENV_JITCONFIG.into(), "x".into())]),
                    ..f.clone()
                },
                "set by Flotilla",
            ),
        ];
        for (c, want) in cases {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(want), "{e:?} should contain {want:?}");
        }
        let dup = validate_all(&[
            l.clone(),
            ProviderConfig {
                kind: ProviderKind::Local,
                ..l
            },
        ])
        .unwrap_err();
        assert!(dup.to_string().contains("unique"), "{dup}");
    }

    #[test]
    fn build_without_fly_settings_is_a_config_error() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = BuildContext {
            runners_dir: dir.path().join("runners"),
            fly: None,
        };
        let e = build(&fly_cfg(), &ctx).err().unwrap();
        assert!(e.to_string().contains("FLY_API_TOKEN"), "{e}");
        let p = build(&local_cfg(), &ctx).unwrap();
        assert_eq!((p.name(), p.kind()), ("local-linux", "local"));
        let mode = fs::metadata(dir.path().join("runners/local-linux"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        let mut fly = FlyConfig::new(SecretString::from("fo1_tok"), "apps");
        fly.base_url = "http://127.0.0.1:9".into();
        let ctx = BuildContext {
            fly: Some(fly),
            ..ctx
        };
        let all = build_all(&[local_cfg(), fly_cfg()], &ctx).unwrap();
        assert_eq!(all[1].kind(), "fly");
        assert_eq!(all[1].labels(), ["self-hosted", "fly"]);
    }

    #[test]
    fn stat_parsing_counts_from_the_last_paren() {
        let line = "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(ProcStat {
                state: 'S',
                pgrp: 1234,
                start: 987654
            })
        );
        assert_eq!(parse_stat("garbage"), None);
        let me = proc_stat(std::process::id()).unwrap();
        assert!(!is_dead(me.state));
    }

    #[test]
    fn local_ids_round_trip() {
        for s in ["pid:1234:start:5678", "pid:99:start:1:boot:0f1e-22"] {
            assert_eq!(LocalInstanceId::parse(s).unwrap().to_string(), s);
        }
        for bad in [
            "pid:1:start:5",
            "pid:x:start:5",
            "1234",
            "pid:12:start:5:boot:",
            "machine",
        ] {
            assert_eq!(LocalInstanceId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn launch_spec_debug_redacts() {
        let s = LaunchSpec {
            name: "r".into(),
            labels: vec!["x".into()],
            jit_config: SecretValue::new("eyJzZWNyZXQiOiJqaXQifQ=="),
            registration: None,
        };
        let d = format!("{s:?}");
        assert!(!d.contains("eyJ") && d.contains("****"), "{d}");
    }

    #[test]
    fn retryable_classification() {
        let api = |status| ProviderError::Fly {
            provider: "p".into(),
            doing: "x".into(),
            source: Box::new(FlyError::Api {
                target: crate::compute::fly::Target {
                    action: crate::compute::fly::Action::Create,
                    machine: None,
                    app: "a".into(),
                },
                status,
                reason: String::new(),
                message: String::new(),
            }),
            cleanup: Some("no machine was left behind".into()),
        };
        assert!(api(429).is_retryable() && api(408).is_retryable() && api(503).is_retryable());
        assert!(!api(422).is_retryable() && !api(404).is_retryable());
        assert!(
            api(422)
                .to_string()
                .ends_with("; no machine was left behind")
        );
        let spawn = |kind| ProviderError::Spawn {
            provider: "p".into(),
            runner: "r".into(),
            program: "x".into(),
            source: std::io::Error::from(kind),
        };
        assert!(!spawn(std::io::ErrorKind::NotFound).is_retryable());
        assert!(spawn(std::io::ErrorKind::WouldBlock).is_retryable());
        assert!(!local_cfg().err("x").is_retryable());
    }

    #[test]
    fn fly_errors_lose_the_jit_config() {
        let jit = "eyJzZWNyZXQiOiJqaXQifQ==";
        let e = redact_fly(
            FlyError::Decode {
                target: crate::compute::fly::Target {
                    action: crate::compute::fly::Action::Create,
                    machine: None,
                    app: "a".into(),
                },
                message: format!("invalid type: string \"{jit}\", expected u32"),
            },
            jit,
        );
        assert!(!e.to_string().contains(jit) && e.to_string().contains("[redacted]"));
    }

    #[test]
    fn machine_states_map() {
        use InstanceState::*;
        for (s, want) in [
            (MachineState::Created, Starting),
            (MachineState::Starting, Starting),
            (MachineState::Started, Running),
            (MachineState::Stopped, Exited { code: None }),
            (MachineState::Failed, Exited { code: None }),
            (MachineState::Destroyed, Gone),
            (MachineState::Destroying, Gone),
        ] {
            assert_eq!(machine_state(&s), want, "{s}");
        }
    }

    fn redact_chunks(secret: &str, data: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut r = Redactor::new(SecretString::from(secret.to_string()));
        let mut out = Vec::new();
        let mut at = 0;
        for &c in cuts {
            let c = c.min(data.len()).max(at);
            out.extend(r.feed(&data[at..c]));
            at = c;
        }
        out.extend(r.feed(&data[at..]));
        out.extend(r.finish());
        out
    }

    #[test]
    fn redactor_examples() {
        let s = "SECRETJIT";
        assert_eq!(redact_chunks(s, b"a SECRETJIT b", &[4]), b"a [redacted] b");
        assert_eq!(
            redact_chunks(s, b"SECRETJITSECRETJIT", &[1, 10, 11]),
            b"[redacted][redacted]"
        );
        // A start of the secret that is not followed by the rest is kept.
        assert_eq!(redact_chunks(s, b"SECRET done", &[6]), b"SECRET done");
        assert_eq!(redact_chunks(s, b"x SEC", &[3]), b"x SEC");
        // ... unless the stream ends in 8+ bytes of it.
        assert_eq!(redact_chunks(s, b"x SECRETJI", &[]), b"x [redacted]");
    }

    proptest! {
        /// Wherever the stream is cut, the secret never survives, and text without it is
        /// unchanged.
        #[test]
        fn redactor_never_lets_the_secret_through(
            parts in proptest::collection::vec(prop_oneof![
                Just("k3y".to_string()), "[a-z3 ]{0,6}"
            ], 0..12),
            cuts in proptest::collection::vec(0usize..60, 0..6),
        ) {
            let secret = "zk3yk3yq";
            let mut data = String::new();
            for (i, p) in parts.iter().enumerate() {
                data.push_str(p);
                if i % 3 == 1 { data.push_str(secret); }
            }
            let mut cuts = cuts;
            cuts.sort();
            let out = redact_chunks(secret, data.as_bytes(), &cuts);
            let out = String::from_utf8(out).unwrap();
            prop_assert!(!out.contains(secret), "{out}");
            prop_assert_eq!(out, data.replace(secret, "[redacted]"));
        }
    }

    #[test]
    fn tail_is_bounded() {
        let mut t = OutputTail::new(8);
        t.push(b"0123");
        t.push(b"456789");
        assert_eq!(t.text(), "23456789");
        t.push(b"abcdefghijkl");
        assert_eq!(t.text(), "efghijkl");
    }
}
