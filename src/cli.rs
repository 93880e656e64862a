//! Command-line flags (clap) and how they become a [`Config`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigBuilder, ConfigError, Origin, default_config_path};

/// `flotilla`: control center for self-hosted CI fleets. With no subcommand, opens the TUI.
#[derive(Debug, Parser)]
#[command(name = "flotilla", version, about, long_about = None)]
pub struct Cli {
    /// Data dir: SQLite store, lock file, MCP socket [default: $XDG_DATA_HOME/flotilla].
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Config file [default: $XDG_CONFIG_HOME/flotilla/config.toml].
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Set any config key, e.g. --set p2p.heartbeat_timeout=5s (repeatable; wins over all).
    #[arg(long = "set", global = true, value_name = "SECTION.KEY=VALUE")]
    pub set: Vec<String>,
    /// Refuse every state-changing command, from the TUI and from MCP.
    #[arg(long, global = true)]
    pub read_only: bool,
    /// Serve the Model Context Protocol on stdin/stdout (relays to a running engine on the
    /// same data dir, else runs one).
    #[arg(long)]
    pub mcp_stdio: bool,
    /// Keymap file overriding the built-in bindings entry by entry.
    #[arg(long, global = true, value_name = "FILE")]
    pub keymap: Option<PathBuf>,
    /// Tasks run at once on this node [default: number of cores].
    #[arg(long, global = true, value_name = "N")]
    pub max_concurrent_tasks: Option<usize>,
    /// Extra capability labels for this node, comma-separated (e.g. cuda,fast-network).
    #[arg(long, global = true, value_name = "LABEL,...")]
    pub capabilities: Option<String>,
    /// P2P listen multiaddr [default: /ip4/0.0.0.0/tcp/9100; tcp/0 lets the OS pick].
    #[arg(long, global = true, value_name = "MULTIADDR")]
    pub p2p_listen: Option<String>,
    /// Bootstrap peer multiaddr (repeatable; also MCP_P2P_BOOTSTRAP_PEERS, comma-separated).
    #[arg(long = "bootstrap", global = true, value_name = "MULTIADDR")]
    pub bootstrap: Vec<String>,
    /// Run no P2P node.
    #[arg(long, global = true)]
    pub no_p2p: bool,
    /// No mDNS LAN discovery.
    #[arg(long, global = true)]
    pub no_mdns: bool,
    /// File holding the mesh secret (private network); FLOTILLA_P2P_SECRET also works.
    #[arg(long, global = true, value_name = "FILE")]
    pub p2p_secret_file: Option<PathBuf>,
    /// Repository the orchestrator watches, owner/name (repeatable).
    #[arg(long = "orchestrator-repo", global = true, value_name = "OWNER/NAME")]
    pub orchestrator_repo: Vec<String>,
    /// Re-runs of a run's failed jobs for flaky failures [default: 3].
    #[arg(long, global = true, value_name = "N")]
    pub retries: Option<u32>,
    /// Let the orchestrator propose code changes (a missing pip dependency, a formatter's
    /// output) as pull requests from new `flotilla/…` branches; never pushes to a default
    /// branch.
    #[arg(long, global = true)]
    pub allow_push: bool,
    /// GitHub REST API base URL (GitHub Enterprise: https://HOST/api/v3).
    #[arg(long, global = true, value_name = "URL")]
    pub github_api_url: Option<String>,
    /// Fly Machines API base URL (FLY_API_URL).
    #[arg(long, global = true, value_name = "URL")]
    pub fly_api_url: Option<String>,
    /// Log filter, e.g. info or flotilla=debug.
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Do not start the runner autoscaler.
    #[arg(long, global = true)]
    pub disable_autoscaler: bool,
    /// GitHub owner (user or organization) whose queues the autoscaler watches.
    #[arg(long, global = true, value_name = "OWNER")]
    pub autoscaler_owner: Option<String>,
    /// Autoscaler poll interval (seconds, or e.g. `2m`; default 60).
    #[arg(long, global = true, value_name = "SECONDS")]
    pub autoscaler_interval: Option<String>,
    /// Watch repositories pushed within this many days (default 1).
    #[arg(long, global = true, value_name = "DAYS")]
    pub autoscaler_since_days: Option<u32>,
    /// Most runners at once (default: cores).
    #[arg(long, global = true, value_name = "N")]
    pub autoscaler_max_runners: Option<u32>,
    /// Subcommand.
    #[command(subcommand)]
    pub command: Option<Sub>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Sub {
    /// Inspect configuration.
    Config {
        /// What to do.
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Classify failed CI job logs: one verdict per file (stdin for `-` or no file).
    Classify {
        /// Log files as GitHub serves them (timestamps, ##[group], ANSI codes are fine).
        files: Vec<PathBuf>,
        /// One JSON object per file per line: {file, issues: [...]}, primary verdict first.
        #[arg(long)]
        json: bool,
        /// Extra pattern catalogue (same schema as assets/patterns.toml; same id replaces).
        #[arg(long = "patterns", value_name = "FILE")]
        patterns: Vec<PathBuf>,
    },
    /// Run or query the headless engine (the seed's `mcp start` / `mcp status`).
    Mcp {
        /// What to do.
        #[command(subcommand)]
        cmd: McpCmd,
    },
}

/// `flotilla config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Print the effective configuration (secrets masked), with where each value came from.
    Show,
}

/// `flotilla mcp ...`
#[derive(Debug, Subcommand)]
pub enum McpCmd {
    /// Run the engine headless; MCP clients connect with `flotilla --mcp-stdio`.
    Start,
    /// Report on the engine running on this data dir.
    Status,
}

impl Cli {
    /// Build the effective config: flags > environment > config file > defaults.
    pub fn load_config(&self) -> Result<(Config, BTreeMap<String, Origin>), ConfigError> {
        let mut b = ConfigBuilder::new();
        b = match &self.config {
            Some(p) => b.file(p, true)?,
            None => b.file(&default_config_path(), false)?,
        };
        b = b.env(|k| std::env::var(k).ok())?;
        if let Some(d) = &self.data_dir {
            b = b.flag("general.data_dir", &d.to_string_lossy(), "--data-dir")?;
        }
        if self.read_only {
            b = b.flag_value(
                "general.read_only",
                toml::Value::Boolean(true),
                "--read-only",
            )?;
        }
        if let Some(n) = self.max_concurrent_tasks {
            b = b.flag_value(
                "scheduler.max_concurrent_tasks",
                toml::Value::Integer(n as i64),
                "--max-concurrent-tasks",
            )?;
        }
        if let Some(l) = &self.p2p_listen {
            b = b.flag("p2p.listen", l, "--p2p-listen")?;
        }
        if !self.bootstrap.is_empty() {
            let v = self
                .bootstrap
                .iter()
                .map(|s| toml::Value::String(s.clone()))
                .collect();
            b = b.flag_value("p2p.bootstrap", toml::Value::Array(v), "--bootstrap")?;
        }
        if self.no_p2p {
            b = b.flag_value("p2p.enabled", toml::Value::Boolean(false), "--no-p2p")?;
        }
        if self.no_mdns {
            b = b.flag_value("p2p.mdns", toml::Value::Boolean(false), "--no-mdns")?;
        }
        if let Some(f) = &self.p2p_secret_file {
            b = b.flag("p2p.secret_file", &f.to_string_lossy(), "--p2p-secret-file")?;
        }
        if !self.orchestrator_repo.is_empty() {
            let v = self
                .orchestrator_repo
                .iter()
                .map(|s| toml::Value::String(s.clone()))
                .collect();
            b = b.flag_value(
                "orchestrator.repos",
                toml::Value::Array(v),
                "--orchestrator-repo",
            )?;
        }
        if let Some(n) = self.retries {
            b = b.flag_value(
                "orchestrator.retries",
                toml::Value::Integer(n as i64),
                "--retries",
            )?;
        }
        if self.allow_push {
            b = b.flag_value(
                "orchestrator.allow_push",
                toml::Value::Boolean(true),
                "--allow-push",
            )?;
        }
        if let Some(u) = &self.github_api_url {
            b = b.flag("github.api_url", u, "--github-api-url")?;
        }
        if let Some(u) = &self.fly_api_url {
            b = b.flag("compute.fly_api_url", u, "--fly-api-url")?;
        }
        if let Some(l) = &self.log_level {
            b = b.flag("general.log_level", l, "--log-level")?;
        }
        if self.disable_autoscaler {
            b = b.flag_value(
                "autoscaler.enabled",
                toml::Value::Boolean(false),
                "--disable-autoscaler",
            )?;
        }
        if let Some(o) = &self.autoscaler_owner {
            b = b.flag("autoscaler.owner", o, "--autoscaler-owner")?;
            // The seed's owner also names the repositories the orchestrator watches.
            b = b.flag("orchestrator.owner", o, "--autoscaler-owner")?;
        }
        if let Some(i) = &self.autoscaler_interval {
            b = b.flag("autoscaler.interval", i, "--autoscaler-interval")?;
        }
        if let Some(d) = self.autoscaler_since_days {
            b = b.flag_value(
                "autoscaler.since_days",
                toml::Value::Integer(i64::from(d)),
                "--autoscaler-since-days",
            )?;
        }
        if let Some(n) = self.autoscaler_max_runners {
            b = b.flag_value(
                "autoscaler.max_runners",
                toml::Value::Integer(i64::from(n)),
                "--autoscaler-max-runners",
            )?;
        }
        if let Some(k) = &self.keymap {
            b = b.flag("tui.keymap", &k.to_string_lossy(), "--keymap")?;
        }
        if let Some(c) = &self.capabilities {
            let labels = c
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.into()))
                .collect();
            b = b.flag_value(
                "p2p.capabilities",
                toml::Value::Array(labels),
                "--capabilities",
            )?;
        }
        for s in &self.set {
            b = b.set(s)?;
        }
        let (cfg, origins) = b.build()?;
        for label in &cfg.p2p.capabilities {
            if !crate::sched::workflow::valid_label(label) {
                return Err(ConfigError::Invalid {
                    key: "p2p.capabilities".into(),
                    value: format!("{label:?}"),
                    origin: origins
                        .get("p2p.capabilities")
                        .cloned()
                        .unwrap_or(Origin::Default),
                    reason: "labels are [a-z0-9._:-], 1..=64 chars".into(),
                });
            }
        }
        Ok((cfg, origins))
    }
}
