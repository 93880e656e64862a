//! Effective configuration: one place where flags, environment, `config.toml` and defaults
//! meet, are validated and become a typed [`Config`].
//!
//! Precedence, highest first: command-line flags (including `--set section.key=value`) >
//! environment variables > the config file (`--config`, else
//! `$XDG_CONFIG_HOME/flotilla/config.toml`) > built-in defaults. Every leaf key remembers
//! where its value came from ([`Origin`]), so a bad value is reported in one line that names
//! the key, the value and its origin.
//!
//! Durations accept humantime strings (`5s`, `2m`, `1h30m`) or a bare integer meaning
//! seconds (the seed documents' form: `heartbeat_timeout = 120`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use toml::{Table, Value};

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Built-in default.
    Default,
    /// The config file at this path.
    File(PathBuf),
    /// This environment variable.
    Env(String),
    /// This command-line flag, e.g. `--data-dir` or `--set p2p.listen=...`.
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => write!(f, "default"),
            Origin::File(p) => write!(f, "config file {}", p.display()),
            Origin::Env(v) => write!(f, "environment variable {v}"),
            Origin::Flag(s) => write!(f, "flag {s}"),
        }
    }
}

/// Configuration errors. Each message is one line naming the key, the value and the origin.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key's value does not have the expected type or range.
    #[error("invalid value for {key} = {value} (from {origin}): {reason}")]
    Invalid {
        key: String,
        value: String,
        origin: Origin,
        reason: String,
    },
    /// A key that no section defines.
    #[error("unknown key {key} (from {origin}); `flotilla config show` lists every key")]
    UnknownKey { key: String, origin: Origin },
    /// `--set` without `=`, or an empty key.
    #[error(
        "bad --set argument {arg:?}: expected section.key=value, e.g. --set p2p.heartbeat_timeout=5s"
    )]
    BadSet { arg: String },
    /// The config file could not be read or parsed.
    #[error("cannot load config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
}

/// A secret value (token, key). `Debug` and `Serialize` print `****`, never the value.
#[derive(Clone)]
pub struct Secret(pub SecretString);

impl Secret {
    /// Wrap a string as a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(SecretString::from(s.into()))
    }
    /// The secret's value; call only where it is sent to its one consumer.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("****")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Secret::new(s))
    }
}

/// Serde helpers for [`Duration`] fields: humantime strings or integer seconds.
pub mod duration {
    use super::*;

    /// Parse `5s`, `2m`, `1h30m`, `250ms`, or a bare integer (seconds).
    pub fn parse(s: &str) -> Result<Duration, String> {
        let t = s.trim();
        if let Ok(n) = t.parse::<u64>() {
            return Ok(Duration::from_secs(n));
        }
        humantime::parse_duration(t)
            .map_err(|e| format!("not a duration ({e}); expected e.g. 5s, 2m, 1h30m or seconds"))
    }

    /// Format as a humantime string, e.g. `2m`.
    pub fn format(d: Duration) -> String {
        humantime::format_duration(d).to_string()
    }

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a duration such as 5s, 2m or integer seconds")
        })? {
            Raw::Int(n) => Ok(Duration::from_secs(n)),
            Raw::Str(s) => parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

fn default_cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The whole effective configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Data dir, read-only mode, logging.
    pub general: GeneralConfig,
    /// Local task queue.
    pub scheduler: SchedulerConfig,
    /// P2P mesh settings (the seed documents' keys).
    pub p2p: P2pConfig,
    /// GitHub API access.
    pub github: GithubConfig,
    /// Terminal UI.
    pub tui: TuiConfig,
    /// Cloud VMs on Fly Machines (the seed's variable names, lower-cased).
    pub compute: ComputeConfig,
    /// Failed-run monitor and fixes.
    pub orchestrator: OrchestratorConfig,
    /// Ephemeral self-hosted runners for queued jobs.
    pub autoscaler: AutoscalerConfig,
}

/// `[autoscaler]`: the seed's `mcp start --autoscaler-*` settings and the runner providers.
///
/// ```toml
/// [autoscaler]
/// owner = "acme"            # like --autoscaler-owner
/// interval = "60s"
/// since_days = 1
/// max_runners = 4
/// min_idle = 0
/// idle_grace = "5m"
/// bootstrap_timeout = "20m"
///
/// [[autoscaler.providers]]
/// name = "local-linux"
/// kind = "local"            # or "fly"
/// labels = ["self-hosted", "linux", "x64"]
/// command = ["/bin/sh", "-c", "exec /opt/actions-runner/run.sh --jitconfig \"$FLOTILLA_JITCONFIG\""]
/// max_runners = 2
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoscalerConfig {
    /// Start with the engine when the GitHub layer is on (`--disable-autoscaler` turns it off).
    pub enabled: bool,
    /// Owner (user or organization) whose repositories are watched (`--autoscaler-owner`,
    /// `GITHUB_AUTOSCALER_OWNER`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Explicit `owner/name` repositories, instead of the owner's recent ones.
    pub repos: Vec<String>,
    /// Poll interval (`--autoscaler-interval`, `GITHUB_AUTOSCALER_INTERVAL`; seconds or `60s`).
    #[serde(with = "duration")]
    pub interval: Duration,
    /// Repositories pushed within this many days (`--autoscaler-since-days`).
    pub since_days: u32,
    /// Most runners at once, P2P slots included (`--autoscaler-max-runners`; default: cores).
    pub max_runners: u32,
    /// Idle organization runners to keep warm.
    pub min_idle: u32,
    /// Idle time before an unneeded runner is retired.
    #[serde(with = "duration")]
    pub idle_grace: Duration,
    /// Time a runner may take to come online before it is torn down.
    #[serde(with = "duration")]
    pub bootstrap_timeout: Duration,
    /// Launch failures in a row after which a provider is stopped (0 = never).
    pub failure_limit: u32,
    /// Runner name prefix; GitHub runners with it are ours (orphans are removed).
    pub name_prefix: String,
    /// Command (argv, no shell) run as a P2P task for each `p2p-only`/`p2p-eligible` run;
    /// empty: such runs are counted, not handed over.
    pub p2p_command: Vec<String>,
    /// Where runners run, chosen per job by labels (first match in this order).
    pub providers: Vec<crate::autoscaler::provider::ProviderConfig>,
}

impl Default for AutoscalerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            owner: None,
            repos: Vec::new(),
            interval: Duration::from_secs(60),
            since_days: 1,
            max_runners: default_cores() as u32,
            min_idle: 0,
            idle_grace: Duration::from_secs(300),
            bootstrap_timeout: Duration::from_secs(1200),
            failure_limit: 5,
            name_prefix: "flotilla".into(),
            p2p_command: Vec::new(),
            providers: Vec::new(),
        }
    }
}

/// `[orchestrator]`: which repositories to watch and what to fix.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrchestratorConfig {
    /// Run the monitor when the GitHub layer is on.
    pub enabled: bool,
    /// Repositories to watch, `owner/name` (`--orchestrator-repo`, repeatable).
    pub repos: Vec<String>,
    /// Else: this owner's repositories pushed within `since_days` (`GITHUB_AUTOSCALER_OWNER`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Look at repositories pushed within this many days.
    pub since_days: u32,
    /// How often to check (the seed: every 2 minutes).
    #[serde(with = "duration")]
    pub interval: Duration,
    /// Re-runs of one run's failed jobs for flaky classes (`--retries`).
    pub retries: u32,
    /// Apply fixes after each check (never in read-only mode).
    pub auto_fix: bool,
    /// Let code-change fixes be proposed as a pull request (`--allow-push`).
    pub allow_push: bool,
    /// Where the seed's reports go (default: the data dir).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reports_dir: Option<PathBuf>,
    /// Extra pattern catalogues (same schema as assets/patterns.toml; a same id replaces a
    /// built-in pattern), used by the monitor and `classify_log`.
    pub patterns: Vec<PathBuf>,
    /// Formatter command per pattern tool, for `run_formatter` patches: `tool = [program,
    /// args...]`, reading the file on stdin and writing it formatted to stdout, `{path}`
    /// replaced by its repository-relative path. An entry adds a tool or replaces a built-in
    /// one (`black`, `cargo fmt`, `prettier`); the others stay.
    pub formatters: BTreeMap<String, Vec<String>>,
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            repos: Vec::new(),
            owner: None,
            since_days: 1,
            interval: Duration::from_secs(120),
            retries: 3,
            auto_fix: true,
            allow_push: false,
            reports_dir: None,
            patterns: Vec::new(),
            formatters: crate::orchestrator::patch::default_formatters(),
        }
    }
}

/// `[compute]`: Fly Machines access and VM limits. Keys are the seed's environment variable
/// names in lower case, and those variables set them (`FLY_API_TOKEN` -> `fly_api_token`,
/// `VM_MAX_PER_USER` -> `vm_max_per_user`, ...). Compute is on when `fly_api_token` and
/// `fly_app_name` are set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComputeConfig {
    /// Machines API base URL (`FLY_API_URL`, `--fly-api-url`).
    pub fly_api_url: String,
    /// `FLY_API_TOKEN`. Never printed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fly_api_token: Option<Secret>,
    /// `FLY_APP_NAME`: the app that holds the VMs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fly_app_name: Option<String>,
    /// `FLY_ORG_SLUG`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fly_org_slug: Option<String>,
    /// `VM_MAX_PER_USER`: live VMs per user.
    pub vm_max_per_user: u32,
    /// `VM_IDLE_TIMEOUT_MINUTES`: minutes without activity before a VM is terminated.
    pub vm_idle_timeout_minutes: u32,
    /// `VM_DEFAULT_REGION`.
    pub vm_default_region: String,
    /// `VM_DEFAULT_CPU_TYPE`, e.g. `shared-cpu-1x`.
    pub vm_default_cpu_type: String,
    /// `VM_DEFAULT_MEMORY_MB`.
    pub vm_default_memory_mb: u32,
    /// `VM_IMAGE`: image the VMs boot.
    pub vm_image: String,
    /// `TAILSCALE_AUTH_KEY`: given to each machine at create time. Never printed or stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tailscale_auth_key: Option<Secret>,
    /// How often idle VMs are checked and the store is reconciled with Fly (the seed: 60 s).
    #[serde(with = "duration")]
    pub scheduler_interval: Duration,
}

impl Default for ComputeConfig {
    fn default() -> Self {
        Self {
            fly_api_url: "https://api.machines.dev".into(),
            fly_api_token: None,
            fly_app_name: None,
            fly_org_slug: None,
            vm_max_per_user: 3,
            vm_idle_timeout_minutes: 30,
            vm_default_region: "iad".into(),
            vm_default_cpu_type: "shared-cpu-1x".into(),
            vm_default_memory_mb: 1024,
            vm_image: "ubuntu:24.04".into(),
            tailscale_auth_key: None,
            scheduler_interval: Duration::from_secs(60),
        }
    }
}

impl ComputeConfig {
    /// The value of a seed variable as this config holds it (for the compute module's
    /// `from_env` constructors), e.g. `VM_MAX_PER_USER` -> `"3"`.
    pub fn var(&self, name: &str) -> Option<String> {
        match name {
            "FLY_API_HOSTNAME" | "FLY_API_URL" => Some(self.fly_api_url.clone()),
            "FLY_API_TOKEN" => self.fly_api_token.as_ref().map(|s| s.expose().to_string()),
            "FLY_APP_NAME" => self.fly_app_name.clone(),
            "FLY_ORG_SLUG" => self.fly_org_slug.clone(),
            "VM_MAX_PER_USER" => Some(self.vm_max_per_user.to_string()),
            "VM_IDLE_TIMEOUT_MINUTES" => Some(self.vm_idle_timeout_minutes.to_string()),
            "VM_DEFAULT_REGION" => Some(self.vm_default_region.clone()),
            "VM_DEFAULT_CPU_TYPE" => Some(self.vm_default_cpu_type.clone()),
            "VM_DEFAULT_MEMORY_MB" => Some(self.vm_default_memory_mb.to_string()),
            "VM_IMAGE" => Some(self.vm_image.clone()),
            "TAILSCALE_AUTH_KEY" => self
                .tailscale_auth_key
                .as_ref()
                .map(|s| s.expose().to_string()),
            _ => None,
        }
    }

    /// Whether Fly access is configured.
    pub fn enabled(&self) -> bool {
        self.fly_api_token.is_some() && self.fly_app_name.is_some()
    }
}

/// `[general]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeneralConfig {
    /// Where the SQLite store, lock file and MCP socket live. Default
    /// `$XDG_DATA_HOME/flotilla` (`~/.local/share/flotilla`).
    pub data_dir: PathBuf,
    /// Refuse every state-changing command from both faces.
    pub read_only: bool,
    /// `tracing` filter, e.g. `info` or `flotilla=debug`.
    pub log_level: String,
    /// This node's display name (default: the host name).
    pub node_name: String,
    /// Cap on the SQLite file size in bytes (0 = no cap). Writes past it fail cleanly, like a
    /// full disk: the command is refused and nothing is half-written.
    pub max_store_bytes: u64,
}

/// `[scheduler]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// Tasks run at once on this node (default: number of cores).
    pub max_concurrent_tasks: usize,
    /// Each boost interval a waiting task's effective key is multiplied by this, in (0, 1].
    pub priority_boost_factor: f64,
    /// How often waiting tasks are boosted.
    #[serde(with = "duration")]
    pub boost_interval: Duration,
    /// Timeout for tasks that give no `timeout_s`.
    #[serde(with = "duration")]
    pub default_task_timeout: Duration,
    /// Bytes of combined stdout/stderr kept per task (the tail).
    pub output_limit_bytes: usize,
    /// Time between SIGTERM and SIGKILL when a task is cancelled or times out.
    #[serde(with = "duration")]
    pub kill_grace: Duration,
}

/// `[p2p]` — keys as the seed documents name them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct P2pConfig {
    /// Run a P2P node.
    pub enabled: bool,
    /// Listen multiaddr.
    pub listen: String,
    /// Bootstrap multiaddrs.
    pub bootstrap: Vec<String>,
    /// Extra capability labels for this node (added to detected hardware).
    pub capabilities: Vec<String>,
    /// A peer silent this long loses its tasks.
    #[serde(with = "duration")]
    pub heartbeat_timeout: Duration,
    /// How often to look for peers.
    #[serde(with = "duration")]
    pub peer_discovery_interval: Duration,
    /// How often to exchange Merkle clocks.
    #[serde(with = "duration")]
    pub merkle_sync_interval: Duration,
    /// Let idle peers take queued tasks from busy ones.
    pub enable_task_stealing: bool,
    /// LAN discovery with mDNS.
    pub mdns: bool,
    /// Shared mesh secret (`FLOTILLA_P2P_SECRET`): the node joins a private network (pnet)
    /// whose key is derived from it; without it the mesh is open. Never printed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// File holding the mesh secret (`--p2p-secret-file`), used when `secret` is unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
}

/// `[github]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GithubConfig {
    /// REST API base URL (GitHub Enterprise Server: `https://HOST/api/v3`).
    pub api_url: String,
    /// Token (`GH_TOKEN`, then `GITHUB_TOKEN`, else `gh auth token`). Never printed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// Bound on the ETag cache in the store, bytes (least recently used entries go first).
    pub cache_max_bytes: u64,
    /// With cache sharing on (a mesh secret set): longest time a lookup spends asking peers
    /// before it goes to GitHub. Raise it for meshes with long round trips.
    #[serde(with = "duration")]
    pub peer_lookup_budget: Duration,
}

/// `[tui]`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TuiConfig {
    /// User keymap file (default `$XDG_CONFIG_HOME/flotilla/keymap.toml` if present).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keymap: Option<PathBuf>,
}

impl Default for GeneralConfig {
    fn default() -> Self {
        Self {
            data_dir: xdg_dir("XDG_DATA_HOME", ".local/share").join("flotilla"),
            read_only: false,
            log_level: "info,rmcp=warn".into(),
            node_name: hostname(),
            max_store_bytes: 0,
        }
    }
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            max_concurrent_tasks: default_cores(),
            priority_boost_factor: 0.9,
            boost_interval: Duration::from_secs(30),
            default_task_timeout: Duration::from_secs(3600),
            output_limit_bytes: 64 * 1024,
            kill_grace: Duration::from_secs(5),
        }
    }
}

impl Default for P2pConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "/ip4/0.0.0.0/tcp/9100".into(),
            bootstrap: Vec::new(),
            capabilities: Vec::new(),
            heartbeat_timeout: Duration::from_secs(120),
            peer_discovery_interval: Duration::from_secs(30),
            merkle_sync_interval: Duration::from_secs(60),
            enable_task_stealing: true,
            mdns: true,
            secret: None,
            secret_file: None,
        }
    }
}

impl Default for GithubConfig {
    fn default() -> Self {
        Self {
            api_url: "https://api.github.com".into(),
            token: None,
            cache_max_bytes: 64 << 20,
            peer_lookup_budget: Duration::from_millis(300),
        }
    }
}

/// `$VAR` if set and non-empty, else `$HOME/fallback`.
pub fn xdg_dir(var: &str, fallback: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| ".".into())).join(fallback),
    }
}

/// The host name (`/proc/sys/kernel/hostname`, `$HOSTNAME`, else `localhost`).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Default config file path: `$XDG_CONFIG_HOME/flotilla/config.toml`.
pub fn default_config_path() -> PathBuf {
    xdg_dir("XDG_CONFIG_HOME", ".config")
        .join("flotilla")
        .join("config.toml")
}

/// Environment variables that map to keys, in increasing precedence (a later entry for the
/// same key wins). The seed documents' names are kept.
pub const ENV_KEYS: &[(&str, &str)] = &[
    ("GITHUB_TOKEN", "github.token"),
    ("GH_TOKEN", "github.token"),
    ("GITHUB_API_URL", "github.api_url"),
    ("MCP_P2P_BOOTSTRAP_PEERS", "p2p.bootstrap"),
    ("FLOTILLA_P2P_SECRET", "p2p.secret"),
    ("GITHUB_AUTOSCALER_OWNER", "orchestrator.owner"),
    ("GITHUB_AUTOSCALER_OWNER", "autoscaler.owner"),
    ("GITHUB_AUTOSCALER_INTERVAL", "autoscaler.interval"),
    ("FLOTILLA_P2P_ENABLED", "p2p.enabled"),
    ("FLOTILLA_MDNS", "p2p.mdns"),
    ("FLOTILLA_DATA_DIR", "general.data_dir"),
    ("FLOTILLA_READ_ONLY", "general.read_only"),
    ("FLOTILLA_LOG", "general.log_level"),
    (
        "FLOTILLA_MAX_CONCURRENT_TASKS",
        "scheduler.max_concurrent_tasks",
    ),
    ("FLY_API_URL", "compute.fly_api_url"),
    ("FLY_API_TOKEN", "compute.fly_api_token"),
    ("FLY_APP_NAME", "compute.fly_app_name"),
    ("FLY_ORG_SLUG", "compute.fly_org_slug"),
    ("VM_MAX_PER_USER", "compute.vm_max_per_user"),
    ("VM_IDLE_TIMEOUT_MINUTES", "compute.vm_idle_timeout_minutes"),
    ("VM_DEFAULT_REGION", "compute.vm_default_region"),
    ("VM_DEFAULT_CPU_TYPE", "compute.vm_default_cpu_type"),
    ("VM_DEFAULT_MEMORY_MB", "compute.vm_default_memory_mb"),
    ("VM_IMAGE", "compute.vm_image"),
    ("TAILSCALE_AUTH_KEY", "compute.tailscale_auth_key"),
];

/// Keys whose value is a table of named entries (`[orchestrator.formatters]`): a layer's table
/// merges entry by entry over the lower layers instead of replacing them, and one entry can be
/// set with `--set orchestrator.formatters.black=[...]`.
pub const MAP_KEYS: &[&str] = &["orchestrator.formatters"];

/// Keys whose values are secrets: masked in `config show` and errors.
pub const SECRET_KEYS: &[&str] = &[
    "github.token",
    "p2p.secret",
    "compute.fly_api_token",
    "compute.tailscale_auth_key",
];

/// Builds a [`Config`] from layers, tracking each key's [`Origin`].
#[derive(Debug)]
pub struct ConfigBuilder {
    root: Table,
    origins: BTreeMap<String, Origin>,
}

impl Default for ConfigBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ConfigBuilder {
    /// Start from the built-in defaults.
    pub fn new() -> Self {
        let root = match Value::try_from(Config::default()) {
            Ok(Value::Table(t)) => t,
            _ => Table::new(),
        };
        Self {
            root,
            origins: BTreeMap::new(),
        }
    }

    /// Merge a config file. A missing file at the default path is not an error; pass
    /// `required = true` for a path the user named.
    pub fn file(mut self, path: &Path, required: bool) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => return Ok(self),
            Err(e) => {
                return Err(ConfigError::File {
                    path: path.into(),
                    reason: e.to_string(),
                });
            }
        };
        let table: Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::File {
                path: path.into(),
                reason: e.to_string().replace('\n', " "),
            })?;
        let origin = Origin::File(path.into());
        for (section, v) in table {
            match v {
                Value::Table(t) => {
                    for (k, v) in t {
                        self.put(&format!("{section}.{k}"), v, origin.clone())?;
                    }
                }
                other => self.put(&section, other, origin.clone())?,
            }
        }
        Ok(self)
    }

    /// Merge environment variables from [`ENV_KEYS`], read through `get`.
    pub fn env(mut self, get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        for (var, key) in ENV_KEYS {
            if let Some(raw) = get(var).filter(|v| !v.trim().is_empty()) {
                let v = if *key == "p2p.bootstrap" {
                    Value::Array(
                        raw.split(',')
                            .map(|s| s.trim())
                            .filter(|s| !s.is_empty())
                            .map(|s| Value::String(s.into()))
                            .collect(),
                    )
                } else {
                    self.coerce(key, &raw)
                };
                self.put(key, v, Origin::Env((*var).into()))?;
            }
        }
        Ok(self)
    }

    /// Set one key from a flag. `raw` is coerced to the key's default type.
    pub fn flag(mut self, key: &str, raw: &str, flag: &str) -> Result<Self, ConfigError> {
        let v = self.coerce(key, raw);
        self.put(key, v, Origin::Flag(flag.into()))?;
        Ok(self)
    }

    /// Set one key from a typed value (flags that are lists or booleans).
    pub fn flag_value(mut self, key: &str, v: Value, flag: &str) -> Result<Self, ConfigError> {
        self.put(key, v, Origin::Flag(flag.into()))?;
        Ok(self)
    }

    /// Apply one `--set section.key=value` argument.
    pub fn set(self, arg: &str) -> Result<Self, ConfigError> {
        let (key, raw) = arg
            .split_once('=')
            .ok_or_else(|| ConfigError::BadSet { arg: arg.into() })?;
        let key = key.trim();
        if key.is_empty() || !key.contains('.') {
            return Err(ConfigError::BadSet { arg: arg.into() });
        }
        let flag = format!("--set {arg}");
        let flag = if SECRET_KEYS.contains(&key) {
            format!("--set {key}=****")
        } else {
            flag
        };
        self.flag(key, raw, &flag)
    }

    /// Turn a raw string into a TOML value shaped like the key's default: numbers, booleans
    /// and arrays are parsed as TOML; anything else stays a string.
    fn coerce(&self, key: &str, raw: &str) -> Value {
        let default = self.lookup(key);
        let is_string = matches!(default, Some(Value::String(_)) | None);
        if is_string && !raw.trim_start().starts_with('[') {
            return Value::String(raw.to_string());
        }
        let wrapped = format!("v = {raw}");
        match wrapped.parse::<Table>() {
            Ok(mut t) => t.remove("v").unwrap_or(Value::String(raw.into())),
            Err(_) => Value::String(raw.to_string()),
        }
    }

    fn lookup(&self, key: &str) -> Option<&Value> {
        let (section, leaf) = key.split_once('.')?;
        let t = self.root.get(section)?.as_table()?;
        match leaf.split_once('.') {
            Some((map, entry)) if !t.contains_key(leaf) => t.get(map)?.as_table()?.get(entry),
            _ => t.get(leaf),
        }
    }

    fn put(&mut self, key: &str, v: Value, origin: Origin) -> Result<(), ConfigError> {
        let Some((section, leaf)) = key.split_once('.') else {
            return Err(ConfigError::UnknownKey {
                key: key.into(),
                origin,
            });
        };
        let known_sections = [
            "general",
            "scheduler",
            "p2p",
            "github",
            "tui",
            "compute",
            "orchestrator",
            "autoscaler",
        ];
        let (leaf, entry) = match leaf.split_once('.') {
            Some((map, entry)) if MAP_KEYS.contains(&format!("{section}.{map}").as_str()) => {
                (map, Some(entry))
            }
            _ => (leaf, None),
        };
        if !known_sections.contains(&section) || leaf.contains('.') {
            return Err(ConfigError::UnknownKey {
                key: key.into(),
                origin,
            });
        }
        let map_key = MAP_KEYS.contains(&key);
        let sect = self
            .root
            .entry(section.to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        let Value::Table(t) = sect else {
            return Ok(());
        };
        match (entry, v) {
            // `--set section.map.entry=value`: one entry of a map key.
            (Some(entry), v) => {
                let map = t
                    .entry(leaf.to_string())
                    .or_insert_with(|| Value::Table(Table::new()));
                if !map.is_table() {
                    *map = Value::Table(Table::new());
                }
                if let Value::Table(m) = map {
                    m.insert(entry.to_string(), v);
                }
            }
            // A table for a map key merges entry by entry over the lower layers.
            (None, Value::Table(new)) if map_key && t.get(leaf).is_some_and(Value::is_table) => {
                if let Some(Value::Table(m)) = t.get_mut(leaf) {
                    for (k, v) in new {
                        self.origins.insert(format!("{key}.{k}"), origin.clone());
                        m.insert(k, v);
                    }
                }
            }
            (None, v) => {
                t.insert(leaf.to_string(), v);
            }
        }
        self.origins.insert(key.to_string(), origin);
        Ok(())
    }

    /// Validate and produce the typed [`Config`] plus the origin of every key that was set.
    pub fn build(self) -> Result<(Config, BTreeMap<String, Origin>), ConfigError> {
        let value = Value::Table(self.root.clone());
        let cfg: Config = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            self.describe_error(&path, &inner)
        })?;
        self.validate(&cfg)?;
        Ok((cfg, self.origins))
    }

    fn describe_error(&self, path: &str, msg: &str) -> ConfigError {
        if let Some(field) = msg
            .strip_prefix("unknown field `")
            .and_then(|r| r.split('`').next())
        {
            let key = if path == "." || path.is_empty() {
                field.to_string()
            } else {
                format!("{path}.{field}")
            };
            let origin = self.origins.get(&key).cloned().unwrap_or(Origin::Default);
            return ConfigError::UnknownKey { key, origin };
        }
        self.invalid(path, msg.split('\n').next().unwrap_or(msg))
    }

    fn invalid(&self, key: &str, reason: &str) -> ConfigError {
        let value = if SECRET_KEYS.contains(&key) {
            "****".to_string()
        } else {
            self.lookup(key)
                .map(|v| v.to_string())
                .unwrap_or_else(|| "?".into())
        };
        ConfigError::Invalid {
            key: key.into(),
            value,
            origin: self.origins.get(key).cloned().unwrap_or(Origin::Default),
            reason: reason.into(),
        }
    }

    fn validate(&self, c: &Config) -> Result<(), ConfigError> {
        let f = c.scheduler.priority_boost_factor;
        if !(f > 0.0 && f <= 1.0) {
            return Err(self.invalid(
                "scheduler.priority_boost_factor",
                "must be in (0, 1]; 1 turns starvation boost off",
            ));
        }
        if c.scheduler.boost_interval < Duration::from_millis(10) {
            return Err(self.invalid("scheduler.boost_interval", "must be at least 10ms"));
        }
        if c.p2p.heartbeat_timeout < Duration::from_millis(500) {
            return Err(self.invalid(
                "p2p.heartbeat_timeout",
                "must be at least 500ms (heartbeats go out every timeout/4, at least every 250ms)",
            ));
        }
        if c.p2p.merkle_sync_interval < Duration::from_secs(1) {
            return Err(self.invalid("p2p.merkle_sync_interval", "must be at least 1s"));
        }
        if c.p2p.peer_discovery_interval < Duration::from_secs(1) {
            return Err(self.invalid("p2p.peer_discovery_interval", "must be at least 1s"));
        }
        if c.scheduler.max_concurrent_tasks > 4096 {
            return Err(self.invalid("scheduler.max_concurrent_tasks", "must be at most 4096"));
        }
        if c.scheduler.output_limit_bytes < 256 || c.scheduler.output_limit_bytes > 64 << 20 {
            return Err(self.invalid(
                "scheduler.output_limit_bytes",
                "must be between 256 and 67108864",
            ));
        }
        if c.general.data_dir.as_os_str().is_empty() {
            return Err(self.invalid("general.data_dir", "must not be empty"));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&c.general.log_level) {
            return Err(self.invalid("general.log_level", &e.to_string()));
        }
        if let Err(e) = crate::p2p::parse_multiaddr(&c.p2p.listen) {
            return Err(self.invalid("p2p.listen", &e.to_string()));
        }
        for b in &c.p2p.bootstrap {
            if let Err(e) = crate::p2p::parse_multiaddr(b) {
                return Err(self.invalid("p2p.bootstrap", &e.to_string()));
            }
        }
        // Building the catalogue compiles every pattern: only when there are user files.
        if !c.orchestrator.patterns.is_empty()
            && let Err(e) = crate::orchestrator::cmd::catalogue(&c.orchestrator.patterns)
        {
            return Err(self.invalid("orchestrator.patterns", &e.to_string()));
        }
        for (tool, argv) in &c.orchestrator.formatters {
            if argv.first().is_none_or(|p| p.trim().is_empty()) {
                let key = format!("orchestrator.formatters.{tool}");
                return Err(self.invalid(
                    &key,
                    "must be a command: [program, args...] (the file on stdin, the formatted \
                     file on stdout, {path} replaced by its path)",
                ));
            }
        }
        if c.compute.enabled() {
            let get = |k: &str| c.compute.var(k);
            if let Err(e) = crate::compute::ComputeSettings::from_env(get) {
                let key = format!("compute.{}", e.var.to_ascii_lowercase());
                return Err(self.invalid(&key, &e.reason));
            }
        }
        if !c.compute.fly_api_url.starts_with("http://")
            && !c.compute.fly_api_url.starts_with("https://")
        {
            return Err(self.invalid("compute.fly_api_url", "must be an http:// or https:// URL"));
        }
        if c.autoscaler.interval < Duration::from_secs(1) {
            return Err(self.invalid("autoscaler.interval", "must be at least 1s"));
        }
        if c.autoscaler.name_prefix.is_empty()
            || !c
                .autoscaler
                .name_prefix
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
        {
            return Err(self.invalid(
                "autoscaler.name_prefix",
                "must be non-empty letters, digits, - or _",
            ));
        }
        if let Err(e) = crate::autoscaler::provider::validate_all(&c.autoscaler.providers) {
            return Err(self.invalid("autoscaler.providers", &e.to_string()));
        }
        if !c.github.api_url.starts_with("http://") && !c.github.api_url.starts_with("https://") {
            return Err(self.invalid("github.api_url", "must be an http:// or https:// URL"));
        }
        Ok(())
    }
}

impl Config {
    /// The effective configuration as TOML, secrets masked, each key annotated with its
    /// origin when it is not the default.
    pub fn show(&self, origins: &BTreeMap<String, Origin>) -> String {
        let value = Value::try_from(self).unwrap_or(Value::Table(Table::new()));
        let mut out = String::new();
        if let Value::Table(root) = value {
            for (section, v) in root {
                out.push_str(&format!("[{section}]\n"));
                if let Value::Table(t) = v {
                    for (k, v) in t {
                        let key = format!("{section}.{k}");
                        let shown = if SECRET_KEYS.contains(&key.as_str()) {
                            "\"****\"".to_string()
                        } else {
                            v.to_string()
                        };
                        match origins.get(&key) {
                            Some(o) => out.push_str(&format!("{k} = {shown}  # from {o}\n")),
                            None => out.push_str(&format!("{k} = {shown}\n")),
                        }
                    }
                }
                out.push('\n');
            }
        }
        out
    }

    /// Path of the SQLite database in the data dir.
    pub fn db_path(&self) -> PathBuf {
        self.general.data_dir.join("flotilla.db")
    }
    /// Path of the lock file in the data dir.
    pub fn lock_path(&self) -> PathBuf {
        self.general.data_dir.join("flotilla.lock")
    }
    /// Path of the engine's MCP Unix socket in the data dir.
    pub fn socket_path(&self) -> PathBuf {
        self.general.data_dir.join("engine.sock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn defaults_build() {
        let (c, o) = ConfigBuilder::new().env(no_env).unwrap().build().unwrap();
        assert_eq!(c.scheduler.priority_boost_factor, 0.9);
        assert_eq!(c.p2p.heartbeat_timeout, Duration::from_secs(120));
        assert_eq!(c.p2p.listen, "/ip4/0.0.0.0/tcp/9100");
        assert!(o.is_empty());
    }

    #[test]
    fn set_duration_and_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("config.toml");
        std::fs::write(
            &f,
            "[p2p]\nheartbeat_timeout = 30\n[scheduler]\nmax_concurrent_tasks = 3\n",
        )
        .unwrap();
        let env = |k: &str| (k == "FLOTILLA_MAX_CONCURRENT_TASKS").then(|| "5".to_string());
        let (c, o) = ConfigBuilder::new()
            .file(&f, true)
            .unwrap()
            .env(env)
            .unwrap()
            .set("p2p.heartbeat_timeout=5s")
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(c.p2p.heartbeat_timeout, Duration::from_secs(5));
        assert_eq!(c.scheduler.max_concurrent_tasks, 5);
        assert_eq!(
            o["scheduler.max_concurrent_tasks"],
            Origin::Env("FLOTILLA_MAX_CONCURRENT_TASKS".into())
        );
        assert!(matches!(o["p2p.heartbeat_timeout"], Origin::Flag(_)));
    }

    #[test]
    fn mesh_timings_too_short_are_refused_naming_the_key() {
        let err = ConfigBuilder::new()
            .set("p2p.heartbeat_timeout=100ms")
            .unwrap()
            .build()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("p2p.heartbeat_timeout") && err.contains("500ms"),
            "{err}"
        );
        let err = ConfigBuilder::new()
            .set("p2p.merkle_sync_interval=0s")
            .unwrap()
            .build()
            .unwrap_err()
            .to_string();
        assert!(err.contains("p2p.merkle_sync_interval"), "{err}");
    }

    #[test]
    fn bad_duration_names_key_value_origin() {
        let err = ConfigBuilder::new()
            .set("p2p.heartbeat_timeout=5x")
            .unwrap()
            .build()
            .unwrap_err()
            .to_string();
        assert!(err.contains("p2p.heartbeat_timeout"), "{err}");
        assert!(err.contains("\"5x\""), "{err}");
        assert!(err.contains("--set p2p.heartbeat_timeout=5x"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn bad_type_from_file_names_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[scheduler]\nmax_concurrent_tasks = \"many\"\n").unwrap();
        let err = ConfigBuilder::new()
            .file(&f, true)
            .unwrap()
            .build()
            .unwrap_err()
            .to_string();
        assert!(err.contains("scheduler.max_concurrent_tasks"), "{err}");
        assert!(err.contains("many"), "{err}");
        assert!(err.contains("c.toml"), "{err}");
    }

    #[test]
    fn unknown_key_is_an_error() {
        let err = ConfigBuilder::new()
            .set("p2p.heartbeat=5s")
            .unwrap()
            .build()
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown key p2p.heartbeat"), "{err}");
        let err = ConfigBuilder::new()
            .set("nope.x=1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope.x"), "{err}");
        assert!(ConfigBuilder::new().set("novalue").is_err());
    }

    #[test]
    fn boost_factor_range_checked() {
        let err = ConfigBuilder::new()
            .set("scheduler.priority_boost_factor=1.5")
            .unwrap()
            .build()
            .unwrap_err()
            .to_string();
        assert!(err.contains("priority_boost_factor = 1.5"), "{err}");
    }

    #[test]
    fn secrets_masked_everywhere() {
        let env = |k: &str| (k == "GH_TOKEN").then(|| "tok-very-secret-123".to_string());
        let (c, o) = ConfigBuilder::new().env(env).unwrap().build().unwrap();
        assert_eq!(
            c.github.token.as_ref().unwrap().expose(),
            "tok-very-secret-123"
        );
        let shown = c.show(&o);
        assert!(!shown.contains("tok-very-secret"), "{shown}");
        assert!(shown.contains("token = \"****\""), "{shown}");
        assert!(!format!("{c:?}").contains("tok-very-secret"));
    }

    #[test]
    fn bootstrap_env_is_comma_separated() {
        let env = |k: &str| {
            (k == "MCP_P2P_BOOTSTRAP_PEERS").then(|| "/ip4/1.2.3.4/tcp/9100, /dns4/x/tcp/1".into())
        };
        let (c, _) = ConfigBuilder::new().env(env).unwrap().build().unwrap();
        assert_eq!(c.p2p.bootstrap.len(), 2);
    }

    #[test]
    fn formatters_merge_per_tool_and_name_bad_entries() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "[orchestrator.formatters]\nblack = [\"/opt/black\", \"-q\", \"-\"]\ngofmt = [\"gofmt\"]\n",
        )
        .unwrap();
        let (c, o) = ConfigBuilder::new()
            .file(&f, true)
            .unwrap()
            .set("orchestrator.formatters.prettier=[\"npx\", \"prettier\", \"--stdin-filepath\", \"{path}\"]")
            .unwrap()
            .build()
            .unwrap();
        let fm = &c.orchestrator.formatters;
        assert_eq!(fm["black"], ["/opt/black", "-q", "-"]);
        assert_eq!(fm["gofmt"], ["gofmt"]);
        assert_eq!(fm["prettier"][0], "npx");
        assert_eq!(fm["cargo fmt"][0], "rustfmt", "built-in entries stay");
        assert_eq!(o["orchestrator.formatters.black"], Origin::File(f.clone()));

        std::fs::write(&f, "[orchestrator.formatters]\nblack = []\n").unwrap();
        let err = ConfigBuilder::new()
            .file(&f, true)
            .unwrap()
            .build()
            .unwrap_err()
            .to_string();
        assert!(err.contains("orchestrator.formatters.black"), "{err}");
        assert!(err.contains("[]"), "{err}");
        assert!(err.contains("c.toml"), "{err}");
        assert!(err.contains("[program, args...]"), "{err}");
        let err = ConfigBuilder::new()
            .set("orchestrator.formatters=3")
            .unwrap()
            .build()
            .unwrap_err()
            .to_string();
        assert!(err.contains("orchestrator.formatters"), "{err}");
    }

    #[test]
    fn duration_parse_forms() {
        assert_eq!(duration::parse("120").unwrap(), Duration::from_secs(120));
        assert_eq!(duration::parse("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(
            duration::parse("250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert!(duration::parse("soon").is_err());
    }
}
