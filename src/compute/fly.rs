//! Typed async client for the Fly.io Machines API v1.
//!
//! Source of the shapes: the Machines API reference (fly.io/docs/machines/api, examples in
//! superfly/docs `reference/machines`) and its Swagger 2.0 document (`api.machines.dev`,
//! basePath `/v1`). Endpoints used, all under `{base}/v1/apps/{app}/machines`:
//!
//! | action | request |
//! |---|---|
//! | create | `POST /machines` with [`CreateMachineRequest`] → [`Machine`] |
//! | list | `GET /machines` → `[Machine]` |
//! | get | `GET /machines/{id}` → [`Machine`] |
//! | start | `POST /machines/{id}/start` → `{"previous_state": ...}` |
//! | stop | `POST /machines/{id}/stop` → `{"ok": true}` |
//! | suspend | `POST /machines/{id}/suspend` |
//! | delete | `DELETE /machines/{id}[?force=true]` → `{"ok": true}` |
//! | wait | `GET /machines/{id}/wait?state=...&timeout=<s>[&instance_id=...]` (blocks ≤ 60 s) |
//! | lease acquire | `POST /machines/{id}/lease` `{"ttl": s, "description": ...}` → [`Lease`] |
//! | lease release | `DELETE /machines/{id}/lease` with header `fly-machine-lease-nonce` |
//! | metadata get | `GET /machines/{id}/metadata` → `{key: value}` |
//! | metadata set | `POST /machines/{id}/metadata/{key}` `{"value": ...}` → 204 |
//!
//! Behaviour:
//! - **Auth**: `Authorization: Bearer <token>`; the token is a [`SecretString`], marked
//!   sensitive on the header, and never appears in `Debug`, logs or errors.
//! - **Rate limit**: Fly allows about 1 request per second per action per machine. The client
//!   paces itself with a [`TokenBucket`] per `(machine, action)`: a request that would exceed
//!   the limit is *delayed*, never failed. App-scoped calls (create, list) are not paced.
//! - **Retries**: 429 and 5xx responses and connection/timeouts are retried with exponential
//!   backoff and jitter, up to [`RetryPolicy::max_attempts`]; a `Retry-After: <seconds>` header
//!   is honoured (capped at [`RetryPolicy::max_retry_after`]). Each retry is paced too.
//!   Create is retried as well: machine names are unique per app, so a retried create whose
//!   first attempt did land fails with a conflict rather than making a twin, and the VM
//!   manager's reconcile adopts or destroys whatever exists.
//! - **Errors**: other 4xx are a [`FlyError::Api`] naming the action and the machine, e.g.
//!   `fly stop of machine 148e...: 404 Not Found: machine not found`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

/// Default Machines API endpoint (public). Inside a Fly private network the API is also at
/// `http://_api.internal:4280`.
pub const DEFAULT_BASE_URL: &str = "https://api.machines.dev";

/// Longest wait Fly accepts for the `wait` endpoint.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// The operation a request performs; one rate-limit bucket per `(machine, action)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Create a machine.
    Create,
    /// List the app's machines.
    List,
    /// Get one machine.
    Get,
    /// Start a stopped machine.
    Start,
    /// Stop a started machine.
    Stop,
    /// Suspend a started machine.
    Suspend,
    /// Destroy a machine.
    Delete,
    /// Wait for a state.
    Wait,
    /// Acquire a lease.
    LeaseAcquire,
    /// Release a lease.
    LeaseRelease,
    /// Read metadata.
    MetadataGet,
    /// Write one metadata key.
    MetadataSet,
}

impl Action {
    /// Human name used in errors: `stop`, `lease acquire`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::List => "list",
            Action::Get => "get",
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Suspend => "suspend",
            Action::Delete => "delete",
            Action::Wait => "wait",
            Action::LeaseAcquire => "lease acquire",
            Action::LeaseRelease => "lease release",
            Action::MetadataGet => "metadata get",
            Action::MetadataSet => "metadata set",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a failed call was doing: `fly stop of machine <id>` or `fly create in app <app>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The action.
    pub action: Action,
    /// The machine, for machine-scoped actions.
    pub machine: Option<String>,
    /// The app.
    pub app: String,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.machine {
            Some(m) => write!(f, "fly {} of machine {m}", self.action),
            None => write!(f, "fly {} in app {}", self.action, self.app),
        }
    }
}

/// Machines API client errors. None of them contains the API token.
#[derive(Debug, thiserror::Error)]
pub enum FlyError {
    /// A non-retryable HTTP error (4xx other than 429), e.g.
    /// `fly stop of machine 148e...: 404 Not Found: machine not found`.
    #[error("{target}: {status} {reason}: {message}")]
    Api {
        /// What was attempted.
        target: Target,
        /// HTTP status.
        status: u16,
        /// Canonical reason phrase, e.g. `Not Found`.
        reason: String,
        /// Fly's `error` (or `message`) field, or the start of the body.
        message: String,
    },
    /// 429/5xx/transport failures persisted through every attempt.
    #[error("{target}: gave up after {attempts} attempts; last: {last}")]
    Exhausted {
        /// What was attempted.
        target: Target,
        /// Attempts made.
        attempts: u32,
        /// Last HTTP status, if the last failure was an HTTP response.
        last_status: Option<u16>,
        /// The last failure, e.g. `503 Service Unavailable: ...`.
        last: String,
    },
    /// A transport error that is not worth retrying (e.g. a malformed request).
    #[error("{target}: {source}")]
    Transport {
        /// What was attempted.
        target: Target,
        /// The HTTP client's error (its URL holds no credentials).
        #[source]
        source: reqwest::Error,
    },
    /// A 2xx response whose body is not the documented shape.
    #[error("{target}: cannot read the response: {message}")]
    Decode {
        /// What was attempted.
        target: Target,
        /// Parse error.
        message: String,
    },
    /// Bad client configuration or argument (base URL, empty token, bad machine id).
    #[error("fly client: {0}")]
    Config(String),
}

impl FlyError {
    /// The HTTP status of the (last) failed response, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            FlyError::Api { status, .. } => Some(*status),
            FlyError::Exhausted { last_status, .. } => *last_status,
            _ => None,
        }
    }
    /// Whether Fly said the machine (or app) does not exist.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, FlyError>;

/// Replace every occurrence of each secret (8+ characters) in `text` with `[redacted]`.
pub(crate) fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if s.len() >= 8 {
            out = out.replace(s, "[redacted]");
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Rate limiting (pure)
// ---------------------------------------------------------------------------------------------

/// A token bucket of capacity `burst` refilled with one token every `interval`, implemented as
/// the equivalent GCRA (one "theoretical arrival time" instead of a token count). Pure: the
/// caller passes the time (`now`, a [`Duration`] since any fixed origin).
///
/// [`TokenBucket::reserve`] takes a token *now or in the future* and returns how long the
/// caller must wait before sending; requests are spaced, never refused. Guarantee: among the
/// send times it hands out, any window `[t, t + interval)` holds at most `burst` of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBucket {
    interval: Duration,
    burst: u32,
    /// Theoretical arrival time of the next request, if any was made.
    tat: Option<Duration>,
}

impl TokenBucket {
    /// A full bucket. `burst` is clamped to at least 1.
    pub fn new(interval: Duration, burst: u32) -> Self {
        TokenBucket {
            interval,
            burst: burst.max(1),
            tat: None,
        }
    }

    /// Reserve the next slot at time `now`; returns the delay before the request may be sent
    /// (zero if a token is available).
    pub fn reserve(&mut self, now: Duration) -> Duration {
        let tau = self.interval * (self.burst - 1);
        let tat = self.tat.unwrap_or(now).max(now);
        let allowed_at = tat.saturating_sub(tau);
        self.tat = Some(tat + self.interval);
        allowed_at.saturating_sub(now)
    }

    /// Whether the bucket is full again at `now` (its state is then equal to a new bucket's).
    pub fn is_idle(&self, now: Duration) -> bool {
        self.tat.is_none_or(|t| t <= now)
    }
}

/// Per-`(machine, action)` buckets.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: HashMap<(String, Action), TokenBucket>,
}

impl RateLimiter {
    /// An empty limiter.
    pub fn new(limit: RateLimit) -> Self {
        RateLimiter {
            limit,
            buckets: HashMap::new(),
        }
    }
    /// Reserve a slot for `action` on `machine` at `now`; returns the delay to wait.
    pub fn reserve(&mut self, machine: &str, action: Action, now: Duration) -> Duration {
        if self.buckets.len() > 1024 {
            self.buckets.retain(|_, b| !b.is_idle(now));
        }
        let interval = self.limit.interval + self.limit.margin;
        self.buckets
            .entry((machine.to_string(), action))
            .or_insert_with(|| TokenBucket::new(interval, self.limit.burst))
            .reserve(now)
    }
}

/// Client-side pacing of machine-scoped calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// One request per this interval per `(machine, action)`. Fly: 1 s.
    pub interval: Duration,
    /// Requests allowed back to back before pacing starts.
    pub burst: u32,
    /// Added to `interval` so that network jitter cannot make two requests that left 1 s apart
    /// arrive less than 1 s apart.
    pub margin: Duration,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            interval: Duration::from_secs(1),
            burst: 1,
            margin: Duration::from_millis(25),
        }
    }
}

/// Retry policy for 429, 5xx and transport errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts including the first (at least 1).
    pub max_attempts: u32,
    /// Backoff before the first retry; doubles each retry.
    pub base_delay: Duration,
    /// Cap of the exponential backoff.
    pub max_delay: Duration,
    /// Cap applied to a server's `Retry-After`.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Delay before retry number `retry` (1 = first retry). With `Retry-After`, that (capped);
    /// otherwise "equal jitter": with `d = min(base * 2^(retry-1), max_delay)`, a delay in
    /// `[d/2, d]` chosen by `jitter` (any random `u64`).
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>, jitter: u64) -> Duration {
        if let Some(ra) = retry_after {
            return ra.min(self.max_retry_after);
        }
        let shift = retry.saturating_sub(1).min(31);
        let d = self
            .base_delay
            .saturating_mul(1u32 << shift)
            .min(self.max_delay);
        let half = d / 2;
        let span = (d - half).as_nanos() as u64;
        half + Duration::from_nanos(if span == 0 { 0 } else { jitter % (span + 1) })
    }
}

/// Parse `Retry-After` as delta-seconds. (The HTTP-date form is not parsed; the backoff applies.)
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

// ---------------------------------------------------------------------------------------------
// Types (serde, tolerant of unknown and null fields)
// ---------------------------------------------------------------------------------------------

fn null_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(
    d: D,
) -> std::result::Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A machine state (Machines API "Machine states" table). Unknown states are kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum MachineState {
    /// Created, not started.
    Created,
    /// Starting.
    Starting,
    /// Running.
    Started,
    /// Stopping.
    Stopping,
    /// Stopped (not billed for CPU/RAM).
    Stopped,
    /// Suspending.
    Suspending,
    /// Suspended.
    Suspended,
    /// Being replaced by an update.
    Replacing,
    /// Being destroyed.
    Destroying,
    /// Destroyed.
    Destroyed,
    /// Failed.
    Failed,
    /// Anything else Fly reports.
    #[default]
    Unknown,
    /// A state this client does not know.
    Other(String),
}

impl From<String> for MachineState {
    fn from(s: String) -> Self {
        match s.as_str() {
            "created" => Self::Created,
            "starting" => Self::Starting,
            "started" => Self::Started,
            "stopping" => Self::Stopping,
            "stopped" => Self::Stopped,
            "suspending" => Self::Suspending,
            "suspended" => Self::Suspended,
            "replacing" => Self::Replacing,
            "destroying" => Self::Destroying,
            "destroyed" => Self::Destroyed,
            "failed" => Self::Failed,
            "" => Self::Unknown,
            _ => Self::Other(s),
        }
    }
}

impl From<MachineState> for String {
    fn from(s: MachineState) -> String {
        s.as_str().to_string()
    }
}

impl MachineState {
    /// The API spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Created => "created",
            Self::Starting => "starting",
            Self::Started => "started",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Suspending => "suspending",
            Self::Suspended => "suspended",
            Self::Replacing => "replacing",
            Self::Destroying => "destroying",
            Self::Destroyed => "destroyed",
            Self::Failed => "failed",
            Self::Unknown => "",
            Self::Other(s) => s,
        }
    }
    /// Destroyed or on its way: the machine is gone for our purposes.
    pub fn is_gone(&self) -> bool {
        matches!(self, Self::Destroying | Self::Destroyed)
    }
    /// Running or about to (created/starting/started/replacing): billable.
    pub fn is_running_like(&self) -> bool {
        matches!(
            self,
            Self::Created | Self::Starting | Self::Started | Self::Replacing
        )
    }
    /// Stopped, suspended or on the way there.
    pub fn is_stopped_like(&self) -> bool {
        matches!(
            self,
            Self::Stopping | Self::Stopped | Self::Suspending | Self::Suspended
        )
    }
}

impl fmt::Display for MachineState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// States accepted by the `wait` endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitState {
    /// `started` (Fly's default).
    Started,
    /// `stopped`.
    Stopped,
    /// `destroyed`.
    Destroyed,
}

impl WaitState {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            WaitState::Started => "started",
            WaitState::Stopped => "stopped",
            WaitState::Destroyed => "destroyed",
        }
    }
}

/// Machine environment variables. `Debug` shows the names only: values may hold secrets
/// (e.g. the Tailscale auth key) and must never reach a log.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Env(pub BTreeMap<String, String>);

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "[redacted]")))
            .finish()
    }
}

impl Env {
    /// No variables.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `guest`: the machine's size.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guest {
    /// `shared` or `performance` (may be empty in responses).
    #[serde(default, deserialize_with = "null_default")]
    pub cpu_kind: String,
    /// vCPUs.
    #[serde(default, deserialize_with = "null_default")]
    pub cpus: u32,
    /// Memory, MB.
    #[serde(default, deserialize_with = "null_default")]
    pub memory_mb: u32,
}

/// `restart` policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restart {
    /// `no`, `always` or `on-failure`.
    #[serde(default, deserialize_with = "null_default")]
    pub policy: String,
}

/// Machine configuration (`fly.MachineConfig`). Fields this crate does not model (services,
/// checks, init, dns, mounts, ...) are kept in `extra` and sent back unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineConfig {
    /// Docker image reference.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub image: String,
    /// Size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest: Option<Guest>,
    /// Environment variables (values redacted in `Debug`).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Env::is_empty"
    )]
    pub env: Env,
    /// String metadata; Flotilla tags its machines with `flotilla_vm_id`.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub metadata: BTreeMap<String, String>,
    /// Destroy the machine when it exits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_destroy: Option<bool>,
    /// Restart policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<Restart>,
    /// Everything else, verbatim.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// One entry of a machine's `events`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineEvent {
    /// Event type: `launch`, `start`, `exit`, ...
    #[serde(rename = "type", default, deserialize_with = "null_default")]
    pub kind: String,
    /// Resulting status.
    #[serde(default, deserialize_with = "null_default")]
    pub status: String,
    /// `user` or `flyd`.
    #[serde(default, deserialize_with = "null_default")]
    pub source: String,
    /// Unix ms.
    #[serde(default)]
    pub timestamp: Option<i64>,
}

/// The resolved image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    /// Registry host.
    #[serde(default, deserialize_with = "null_default")]
    pub registry: String,
    /// Repository.
    #[serde(default, deserialize_with = "null_default")]
    pub repository: String,
    /// Tag.
    #[serde(default, deserialize_with = "null_default")]
    pub tag: String,
    /// Digest.
    #[serde(default, deserialize_with = "null_default")]
    pub digest: String,
}

/// A machine as returned by create/get/list (`Machine` in the Swagger document).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Machine id (hex), e.g. `1857156b526dd8`.
    pub id: String,
    /// Unique name within the app.
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// Current state.
    #[serde(default, deserialize_with = "null_default")]
    pub state: MachineState,
    /// Region code, e.g. `ord`.
    #[serde(default, deserialize_with = "null_default")]
    pub region: String,
    /// Changes with every version of the machine (update), not with start/stop.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// Private 6PN IPv6 address.
    #[serde(default)]
    pub private_ip: Option<String>,
    /// Configuration.
    #[serde(default)]
    pub config: Option<MachineConfig>,
    /// Resolved image.
    #[serde(default)]
    pub image_ref: Option<ImageRef>,
    /// RFC 3339.
    #[serde(default)]
    pub created_at: Option<String>,
    /// RFC 3339.
    #[serde(default)]
    pub updated_at: Option<String>,
    /// Recent events, newest first.
    #[serde(default, deserialize_with = "null_default")]
    pub events: Vec<MachineEvent>,
}

impl Machine {
    /// A metadata value from the config.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.config
            .as_ref()
            .and_then(|c| c.metadata.get(key))
            .map(String::as_str)
    }
}

/// `POST /machines` body (`CreateMachineRequest`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CreateMachineRequest {
    /// Unique name; generated by Fly if omitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Region; Fly picks one near the caller if omitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Configuration.
    pub config: MachineConfig,
    /// Create without starting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_launch: Option<bool>,
}

/// Response of `start`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct StartResponse {
    /// State before the start.
    #[serde(default, deserialize_with = "null_default")]
    pub previous_state: String,
}

/// A machine lease (exclusive lock on modifying a machine).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Nonce to present in `fly-machine-lease-nonce` (also needed to release).
    #[serde(default, deserialize_with = "null_default")]
    pub nonce: String,
    /// Expiry, unix seconds.
    #[serde(default)]
    pub expires_at: i64,
    /// Who holds it.
    #[serde(default, deserialize_with = "null_default")]
    pub owner: String,
    /// Description.
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    /// Machine version.
    #[serde(default, deserialize_with = "null_default")]
    pub version: String,
}

// ---------------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------------

/// Client configuration. `Debug` redacts the token.
#[derive(Clone)]
pub struct FlyConfig {
    /// API base, default [`DEFAULT_BASE_URL`].
    pub base_url: String,
    /// API token (`FLY_API_TOKEN`).
    pub token: SecretString,
    /// App holding the machines (`FLY_APP_NAME`).
    pub app_name: String,
    /// Organisation slug (`FLY_ORG_SLUG`), informational (apps are already org-scoped).
    pub org_slug: Option<String>,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Pacing.
    pub rate_limit: RateLimit,
    /// Per-request timeout (the wait call gets its wait timeout plus this).
    pub request_timeout: Duration,
}

impl fmt::Debug for FlyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlyConfig")
            .field("base_url", &self.base_url)
            .field("token", &"[redacted]")
            .field("app_name", &self.app_name)
            .field("org_slug", &self.org_slug)
            .field("retry", &self.retry)
            .field("rate_limit", &self.rate_limit)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl FlyConfig {
    /// A config with defaults for everything but the token and the app.
    pub fn new(token: SecretString, app_name: impl Into<String>) -> Self {
        FlyConfig {
            base_url: DEFAULT_BASE_URL.to_string(),
            token,
            app_name: app_name.into(),
            org_slug: None,
            retry: RetryPolicy::default(),
            rate_limit: RateLimit::default(),
            request_timeout: Duration::from_secs(30),
        }
    }

    /// From the seed's variables: `FLY_API_TOKEN` and `FLY_APP_NAME` (required),
    /// `FLY_ORG_SLUG` (optional), `FLY_API_HOSTNAME` (optional base URL, as in Fly's docs).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let nonempty = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let token = nonempty("FLY_API_TOKEN")
            .ok_or_else(|| FlyError::Config("FLY_API_TOKEN is not set".into()))?;
        let app = nonempty("FLY_APP_NAME")
            .ok_or_else(|| FlyError::Config("FLY_APP_NAME is not set".into()))?;
        let mut c = FlyConfig::new(SecretString::from(token), app);
        c.org_slug = nonempty("FLY_ORG_SLUG");
        if let Some(base) = nonempty("FLY_API_HOSTNAME") {
            c.base_url = base;
        }
        Ok(c)
    }
}

// ---------------------------------------------------------------------------------------------
// The API trait
// ---------------------------------------------------------------------------------------------

/// The Machines API operations the VM manager needs; implemented by [`FlyClient`].
pub trait FlyApi: Send + Sync {
    /// The app the machines live in.
    fn app_name(&self) -> &str;
    /// `POST /machines`.
    fn create_machine(
        &self,
        req: &CreateMachineRequest,
    ) -> impl Future<Output = Result<Machine>> + Send;
    /// `GET /machines/{id}`.
    fn get_machine(&self, id: &str) -> impl Future<Output = Result<Machine>> + Send;
    /// `GET /machines` (destroyed machines excluded).
    fn list_machines(&self) -> impl Future<Output = Result<Vec<Machine>>> + Send;
    /// `POST /machines/{id}/start`.
    fn start_machine(&self, id: &str) -> impl Future<Output = Result<StartResponse>> + Send;
    /// `POST /machines/{id}/stop`.
    fn stop_machine(&self, id: &str) -> impl Future<Output = Result<()>> + Send;
    /// `POST /machines/{id}/suspend`.
    fn suspend_machine(&self, id: &str) -> impl Future<Output = Result<()>> + Send;
    /// `DELETE /machines/{id}`, with `force=true` to kill a running machine.
    fn delete_machine(&self, id: &str, force: bool) -> impl Future<Output = Result<()>> + Send;
    /// `GET /machines/{id}/wait?state=..&timeout=..`; `timeout` is capped at [`MAX_WAIT`].
    fn wait_for_state(
        &self,
        id: &str,
        instance_id: Option<&str>,
        state: WaitState,
        timeout: Duration,
    ) -> impl Future<Output = Result<()>> + Send;
    /// `POST /machines/{id}/lease`; `ttl` in seconds.
    fn acquire_lease(
        &self,
        id: &str,
        ttl_secs: u64,
        description: &str,
    ) -> impl Future<Output = Result<Lease>> + Send;
    /// `DELETE /machines/{id}/lease` with the lease nonce.
    fn release_lease(&self, id: &str, nonce: &str) -> impl Future<Output = Result<()>> + Send;
    /// `GET /machines/{id}/metadata`.
    fn get_metadata(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<BTreeMap<String, String>>> + Send;
    /// `POST /machines/{id}/metadata/{key}` with `{"value": ...}`.
    fn set_metadata(
        &self,
        id: &str,
        key: &str,
        value: &str,
    ) -> impl Future<Output = Result<()>> + Send;
}

// ---------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------

/// The Machines API client. Cheap to share behind an `Arc`; `Debug` redacts the token.
pub struct FlyClient {
    http: reqwest::Client,
    base: Url,
    auth: HeaderValue,
    cfg: FlyConfig,
    limiter: Mutex<RateLimiter>,
    origin: tokio::time::Instant,
}

impl fmt::Debug for FlyClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlyClient")
            .field("config", &self.cfg)
            .finish_non_exhaustive()
    }
}

struct Call<'a> {
    action: Action,
    machine: Option<&'a str>,
    method: Method,
    url: Url,
    body: Option<Vec<u8>>,
    nonce: Option<&'a str>,
    timeout: Duration,
    /// Values to scrub from error messages (e.g. env values sent in a create).
    secrets: Vec<&'a str>,
}

fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        for key in ["error", "message"] {
            if let Some(s) = v.get(key).and_then(|x| x.as_str()) {
                return s.to_string();
            }
        }
    }
    let text = String::from_utf8_lossy(body);
    let t = text.trim();
    if t.is_empty() {
        "(no body)".into()
    } else {
        t.chars().take(300).collect()
    }
}

fn jitter() -> u64 {
    ulid::Ulid::new().random() as u64
}

impl FlyClient {
    /// Build a client. Fails on a bad base URL, an empty token or app name, or an app name that
    /// is not a URL-safe slug.
    pub fn new(cfg: FlyConfig) -> Result<Self> {
        let base = Url::parse(&cfg.base_url)
            .map_err(|e| FlyError::Config(format!("bad base URL {:?}: {e}", cfg.base_url)))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(FlyError::Config(format!(
                "bad base URL {:?}: must be http(s)",
                cfg.base_url
            )));
        }
        if cfg.token.expose_secret().trim().is_empty() {
            return Err(FlyError::Config("the API token is empty".into()));
        }
        if !valid_segment(&cfg.app_name) {
            return Err(FlyError::Config(format!(
                "bad app name {:?}: letters, digits, '-' and '_' only",
                cfg.app_name
            )));
        }
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", cfg.token.expose_secret().trim()))
                .map_err(|_| {
                    FlyError::Config("the API token is not a valid header value".into())
                })?;
        auth.set_sensitive(true);
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("flotilla/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FlyError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(FlyClient {
            http,
            base,
            auth,
            limiter: Mutex::new(RateLimiter::new(cfg.rate_limit)),
            cfg,
            origin: tokio::time::Instant::now(),
        })
    }

    /// The configuration (token redacted in `Debug`).
    pub fn config(&self) -> &FlyConfig {
        &self.cfg
    }

    fn target(&self, action: Action, machine: Option<&str>) -> Target {
        Target {
            action,
            machine: machine.map(str::to_string),
            app: self.cfg.app_name.clone(),
        }
    }

    /// `{base}/v1/apps/{app}/machines[/{id}[/tail...]]`.
    fn url(&self, machine: Option<&str>, tail: &[&str]) -> Result<Url> {
        let mut u = self.base.clone();
        {
            let mut seg = u
                .path_segments_mut()
                .map_err(|_| FlyError::Config("base URL cannot take a path".into()))?;
            seg.pop_if_empty()
                .extend(["v1", "apps", &self.cfg.app_name, "machines"]);
            if let Some(m) = machine {
                seg.push(m);
            }
            seg.extend(tail);
        }
        Ok(u)
    }

    fn check_id(&self, action: Action, id: &str) -> Result<()> {
        if valid_segment(id) {
            Ok(())
        } else {
            Err(FlyError::Config(format!(
                "fly {action}: bad machine id {id:?}"
            )))
        }
    }

    async fn pace(&self, machine: &str, action: Action) {
        let delay = {
            let now = tokio::time::Instant::now().saturating_duration_since(self.origin);
            match self.limiter.lock() {
                Ok(mut l) => l.reserve(machine, action, now),
                Err(p) => p.into_inner().reserve(machine, action, now),
            }
        };
        if !delay.is_zero() {
            tracing::debug!(machine, action = %action, ?delay, "pacing fly request");
            tokio::time::sleep(delay).await;
        }
    }

    fn call<'a>(
        &self,
        action: Action,
        machine: Option<&'a str>,
        method: Method,
        url: Url,
    ) -> Call<'a> {
        Call {
            action,
            machine,
            method,
            url,
            body: None,
            nonce: None,
            timeout: self.cfg.request_timeout,
            secrets: Vec::new(),
        }
    }

    /// Send with pacing and retries; returns the 2xx body.
    async fn send(&self, c: Call<'_>) -> Result<Vec<u8>> {
        let target = || self.target(c.action, c.machine);
        let attempts = self.cfg.retry.max_attempts.max(1);
        let mut last = String::new();
        let mut last_status = None;
        for attempt in 1..=attempts {
            if let Some(m) = c.machine {
                self.pace(m, c.action).await;
            }
            let mut rb = self
                .http
                .request(c.method.clone(), c.url.clone())
                .header(AUTHORIZATION, self.auth.clone())
                .timeout(c.timeout);
            if let Some(n) = c.nonce {
                let mut v = HeaderValue::from_str(n)
                    .map_err(|_| FlyError::Config("bad lease nonce".into()))?;
                v.set_sensitive(true);
                rb = rb.header("fly-machine-lease-nonce", v);
            }
            if let Some(b) = &c.body {
                rb = rb.header(CONTENT_TYPE, "application/json").body(b.clone());
            }
            let mut retry_after = None;
            match rb.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    retry_after = resp
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after);
                    let body = match resp.bytes().await {
                        Ok(b) => b.to_vec(),
                        Err(e) if status.is_success() => {
                            last = redact(&e.to_string(), &c.secrets);
                            last_status = None;
                            tracing::warn!(target_ = %target(), attempt, "fly response body lost: {last}");
                            self.backoff(attempt, attempts, None).await;
                            continue;
                        }
                        Err(_) => Vec::new(),
                    };
                    if status.is_success() {
                        return Ok(body);
                    }
                    let message = redact(&error_message(&body), &c.secrets);
                    let reason = status.canonical_reason().unwrap_or("").to_string();
                    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                        last = format!("{} {reason}: {message}", status.as_u16());
                        last_status = Some(status.as_u16());
                        tracing::warn!(target_ = %target(), attempt, status = status.as_u16(), "fly request failed, will retry");
                    } else {
                        return Err(FlyError::Api {
                            target: target(),
                            status: status.as_u16(),
                            reason,
                            message,
                        });
                    }
                }
                Err(e) if e.is_connect() || e.is_timeout() => {
                    last = redact(&e.to_string(), &c.secrets);
                    last_status = None;
                    tracing::warn!(target_ = %target(), attempt, "fly transport error, will retry: {last}");
                }
                Err(e) => {
                    return Err(FlyError::Transport {
                        target: target(),
                        source: e,
                    });
                }
            }
            self.backoff(attempt, attempts, retry_after).await;
        }
        Err(FlyError::Exhausted {
            target: target(),
            attempts,
            last_status,
            last,
        })
    }

    async fn backoff(&self, attempt: u32, attempts: u32, retry_after: Option<Duration>) {
        if attempt < attempts {
            tokio::time::sleep(self.cfg.retry.delay(attempt, retry_after, jitter())).await;
        }
    }

    fn decode<T: DeserializeOwned>(&self, c: (Action, Option<&str>), body: &[u8]) -> Result<T> {
        serde_json::from_slice(body).map_err(|e| FlyError::Decode {
            target: self.target(c.0, c.1),
            message: e.to_string(),
        })
    }

    async fn simple_post(&self, action: Action, id: &str, verb: &str) -> Result<Vec<u8>> {
        self.check_id(action, id)?;
        let url = self.url(Some(id), &[verb])?;
        self.send(self.call(action, Some(id), Method::POST, url))
            .await
    }
}

impl FlyApi for FlyClient {
    fn app_name(&self) -> &str {
        &self.cfg.app_name
    }

    async fn create_machine(&self, req: &CreateMachineRequest) -> Result<Machine> {
        let url = self.url(None, &[])?;
        let body = serde_json::to_vec(req).map_err(|e| FlyError::Config(e.to_string()))?;
        let mut c = self.call(Action::Create, None, Method::POST, url);
        c.body = Some(body);
        c.secrets = req.config.env.0.values().map(String::as_str).collect();
        let b = self.send(c).await?;
        self.decode((Action::Create, None), &b)
    }

    async fn get_machine(&self, id: &str) -> Result<Machine> {
        self.check_id(Action::Get, id)?;
        let url = self.url(Some(id), &[])?;
        let b = self
            .send(self.call(Action::Get, Some(id), Method::GET, url))
            .await?;
        self.decode((Action::Get, Some(id)), &b)
    }

    async fn list_machines(&self) -> Result<Vec<Machine>> {
        let url = self.url(None, &[])?;
        let b = self
            .send(self.call(Action::List, None, Method::GET, url))
            .await?;
        self.decode((Action::List, None), &b)
    }

    async fn start_machine(&self, id: &str) -> Result<StartResponse> {
        let b = self.simple_post(Action::Start, id, "start").await?;
        if b.iter().all(u8::is_ascii_whitespace) {
            return Ok(StartResponse::default());
        }
        self.decode((Action::Start, Some(id)), &b)
    }

    async fn stop_machine(&self, id: &str) -> Result<()> {
        self.simple_post(Action::Stop, id, "stop").await.map(drop)
    }

    async fn suspend_machine(&self, id: &str) -> Result<()> {
        self.simple_post(Action::Suspend, id, "suspend")
            .await
            .map(drop)
    }

    async fn delete_machine(&self, id: &str, force: bool) -> Result<()> {
        self.check_id(Action::Delete, id)?;
        let mut url = self.url(Some(id), &[])?;
        if force {
            url.query_pairs_mut().append_pair("force", "true");
        }
        self.send(self.call(Action::Delete, Some(id), Method::DELETE, url))
            .await
            .map(drop)
    }

    async fn wait_for_state(
        &self,
        id: &str,
        instance_id: Option<&str>,
        state: WaitState,
        timeout: Duration,
    ) -> Result<()> {
        self.check_id(Action::Wait, id)?;
        let secs = timeout.min(MAX_WAIT).as_secs().max(1);
        let mut url = self.url(Some(id), &["wait"])?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("state", state.as_str());
            q.append_pair("timeout", &secs.to_string());
            if let Some(i) = instance_id {
                q.append_pair("instance_id", i);
            }
        }
        let mut c = self.call(Action::Wait, Some(id), Method::GET, url);
        c.timeout = Duration::from_secs(secs) + self.cfg.request_timeout;
        self.send(c).await.map(drop)
    }

    async fn acquire_lease(&self, id: &str, ttl_secs: u64, description: &str) -> Result<Lease> {
        self.check_id(Action::LeaseAcquire, id)?;
        let url = self.url(Some(id), &["lease"])?;
        let mut c = self.call(Action::LeaseAcquire, Some(id), Method::POST, url);
        c.body = Some(
            serde_json::to_vec(&serde_json::json!({"ttl": ttl_secs, "description": description}))
                .map_err(|e| FlyError::Config(e.to_string()))?,
        );
        let b = self.send(c).await?;
        // The docs show `{"status": "success", "data": {lease}}`; the Swagger document a bare
        // lease. Accept both.
        let v: serde_json::Value = self.decode((Action::LeaseAcquire, Some(id)), &b)?;
        let inner = v.get("data").cloned().unwrap_or(v);
        serde_json::from_value(inner).map_err(|e| FlyError::Decode {
            target: self.target(Action::LeaseAcquire, Some(id)),
            message: e.to_string(),
        })
    }

    async fn release_lease(&self, id: &str, nonce: &str) -> Result<()> {
        self.check_id(Action::LeaseRelease, id)?;
        let url = self.url(Some(id), &["lease"])?;
        let mut c = self.call(Action::LeaseRelease, Some(id), Method::DELETE, url);
        c.nonce = Some(nonce);
        self.send(c).await.map(drop)
    }

    async fn get_metadata(&self, id: &str) -> Result<BTreeMap<String, String>> {
        self.check_id(Action::MetadataGet, id)?;
        let url = self.url(Some(id), &["metadata"])?;
        let b = self
            .send(self.call(Action::MetadataGet, Some(id), Method::GET, url))
            .await?;
        self.decode((Action::MetadataGet, Some(id)), &b)
    }

    async fn set_metadata(&self, id: &str, key: &str, value: &str) -> Result<()> {
        self.check_id(Action::MetadataSet, id)?;
        if !valid_segment(key) {
            return Err(FlyError::Config(format!("bad metadata key {key:?}")));
        }
        let url = self.url(Some(id), &["metadata", key])?;
        let mut c = self.call(Action::MetadataSet, Some(id), Method::POST, url);
        c.body = Some(
            serde_json::to_vec(&serde_json::json!({ "value": value }))
                .map_err(|e| FlyError::Config(e.to_string()))?,
        );
        self.send(c).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn bucket_spaces_requests_one_interval_apart() {
        let mut b = TokenBucket::new(S, 1);
        assert_eq!(b.reserve(Duration::ZERO), Duration::ZERO);
        // A second request 100 ms later waits until t = 1 s.
        assert_eq!(
            b.reserve(Duration::from_millis(100)),
            Duration::from_millis(900)
        );
        // A third at 200 ms waits until t = 2 s (delayed, never refused).
        assert_eq!(
            b.reserve(Duration::from_millis(200)),
            Duration::from_millis(1800)
        );
        // After a long idle period the bucket is full again, but holds no more than `burst`.
        assert!(b.is_idle(Duration::from_secs(10)));
        assert_eq!(b.reserve(Duration::from_secs(10)), Duration::ZERO);
        assert_eq!(b.reserve(Duration::from_secs(10)), S);
    }

    #[test]
    fn bucket_allows_a_burst_then_paces() {
        let mut b = TokenBucket::new(S, 3);
        let t = Duration::from_secs(5);
        assert_eq!(b.reserve(t), Duration::ZERO);
        assert_eq!(b.reserve(t), Duration::ZERO);
        assert_eq!(b.reserve(t), Duration::ZERO);
        assert_eq!(b.reserve(t), S);
    }

    #[test]
    fn limiter_keys_by_machine_and_action() {
        let mut l = RateLimiter::new(RateLimit {
            interval: S,
            burst: 1,
            margin: Duration::ZERO,
        });
        let t = Duration::from_secs(1);
        assert_eq!(l.reserve("m1", Action::Stop, t), Duration::ZERO);
        assert_eq!(l.reserve("m2", Action::Stop, t), Duration::ZERO);
        assert_eq!(l.reserve("m1", Action::Start, t), Duration::ZERO);
        assert_eq!(l.reserve("m1", Action::Stop, t), S);
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(30),
        };
        for (retry, full) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (40, 1000),
        ] {
            let full = Duration::from_millis(full);
            for j in [0, 1, 12345, u64::MAX] {
                let d = p.delay(retry, None, j);
                assert!(d >= full / 2 && d <= full, "retry {retry}: {d:?}");
            }
        }
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3)), 7),
            Duration::from_secs(3)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(300)), 7),
            Duration::from_secs(30)
        );
        assert_eq!(parse_retry_after(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn errors_name_the_action_and_machine() {
        let e = FlyError::Api {
            target: Target {
                action: Action::Stop,
                machine: Some("148e".into()),
                app: "a".into(),
            },
            status: 404,
            reason: "Not Found".into(),
            message: "machine not found".into(),
        };
        assert_eq!(
            e.to_string(),
            "fly stop of machine 148e: 404 Not Found: machine not found"
        );
        assert!(e.is_not_found());
        let t = Target {
            action: Action::Create,
            machine: None,
            app: "my-app".into(),
        };
        assert_eq!(t.to_string(), "fly create in app my-app");
        assert_eq!(error_message(br#"{"error":"boom"}"#), "boom");
        assert_eq!(
            error_message(br#"{"status":"error","message":"held"}"#),
            "held"
        );
        assert_eq!(error_message(b""), "(no body)");
    }

    #[test]
    fn token_never_in_debug() {
        let cfg = FlyConfig::new(SecretString::from("fo1_supersecret_token"), "app");
        let c = FlyClient::new(cfg.clone()).unwrap();
        assert!(!format!("{cfg:?}").contains("supersecret"));
        assert!(!format!("{c:?}").contains("supersecret"));
        let bad = FlyClient::new(FlyConfig {
            base_url: "ftp://x".into(),
            ..cfg.clone()
        })
        .unwrap_err();
        assert!(!bad.to_string().contains("supersecret"));
        assert!(FlyClient::new(FlyConfig::new(SecretString::from(" "), "app")).is_err());
        assert!(FlyClient::new(FlyConfig::new(SecretString::from("t"), "a/b")).is_err());
    }

    #[test]
    fn env_debug_hides_values() {
        let mut env = Env::default();
        env.0
            .insert("TAILSCALE_AUTH_KEY".into(), "tskey-abcdef123".into());
        let s = format!("{env:?}");
        assert!(s.contains("TAILSCALE_AUTH_KEY") && !s.contains("tskey"));
    }

    #[test]
    fn from_env_requires_token_and_app() {
        let vars = |k: &str| match k {
            "FLY_API_TOKEN" => Some("t0k".to_string()),
            "FLY_APP_NAME" => Some("vms".to_string()),
            "FLY_API_HOSTNAME" => Some("http://_api.internal:4280".to_string()),
            _ => None,
        };
        let c = FlyConfig::from_env(vars).unwrap();
        assert_eq!(c.base_url, "http://_api.internal:4280");
        assert_eq!(c.app_name, "vms");
        let e = FlyConfig::from_env(|_| None).unwrap_err();
        assert!(e.to_string().contains("FLY_API_TOKEN"));
    }

    #[test]
    fn urls_are_built_from_segments() {
        let mut cfg = FlyConfig::new(SecretString::from("t"), "my-app");
        cfg.base_url = "http://127.0.0.1:9/".into();
        let c = FlyClient::new(cfg).unwrap();
        assert_eq!(
            c.url(Some("abc"), &["wait"]).unwrap().as_str(),
            "http://127.0.0.1:9/v1/apps/my-app/machines/abc/wait"
        );
        assert_eq!(
            c.url(None, &[]).unwrap().as_str(),
            "http://127.0.0.1:9/v1/apps/my-app/machines"
        );
        assert!(c.check_id(Action::Get, "../x").is_err());
    }

    #[test]
    fn machine_tolerates_nulls_and_unknown_fields() {
        let j = r#"{"id":"m1","state":"weird","config":{"env":null,"metadata":null,
            "image":"x","guest":{"cpu_kind":"","cpus":2,"memory_mb":512},"services":[1]},
            "unknown_top":{"a":1},"events":null}"#;
        let m: Machine = serde_json::from_str(j).unwrap();
        assert_eq!(m.state, MachineState::Other("weird".into()));
        let cfg = m.config.unwrap();
        assert!(cfg.env.is_empty() && cfg.metadata.is_empty());
        assert_eq!(cfg.extra["services"], serde_json::json!([1]));
        assert!(m.events.is_empty());
    }

    proptest! {
        /// Whatever the arrival pattern: a request is never sent before it arrives, and any
        /// window of one interval holds at most `burst` sends.
        #[test]
        fn bucket_never_exceeds_the_rate(
            burst in 1u32..4,
            gaps in proptest::collection::vec(0u64..2_500, 1..40),
        ) {
            let interval = Duration::from_millis(1000);
            let mut b = TokenBucket::new(interval, burst);
            let mut t = Duration::ZERO;
            let mut sends = Vec::new();
            for g in gaps {
                t += Duration::from_millis(g);
                let d = b.reserve(t);
                sends.push(t + d);
            }
            for w in sends.windows(2) {
                prop_assert!(w[1] >= w[0]);
            }
            for (i, &s) in sends.iter().enumerate() {
                let n = sends[i..].iter().take_while(|&&x| x < s + interval).count();
                prop_assert!(n as u32 <= burst, "{} sends within an interval of {:?}", n, s);
            }
        }

        /// With burst 1 the delay is minimal: each send is at max(arrival, previous + interval).
        #[test]
        fn bucket_delay_is_minimal(gaps in proptest::collection::vec(0u64..3_000, 1..30)) {
            let interval = Duration::from_millis(1000);
            let mut b = TokenBucket::new(interval, 1);
            let mut t = Duration::ZERO;
            let mut prev: Option<Duration> = None;
            for g in gaps {
                t += Duration::from_millis(g);
                let s = t + b.reserve(t);
                let want = prev.map_or(t, |p| t.max(p + interval));
                prop_assert_eq!(s, want);
                prev = Some(s);
            }
        }
    }
}
