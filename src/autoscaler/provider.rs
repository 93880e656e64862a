//! TEMPORARY interface stub (replaced by the providers branch).
use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::github::types::SecretValue;

/// Boxed future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Launch spec.
#[derive(Debug)]
pub struct LaunchSpec {
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: Vec<String>,
    /// JIT config.
    pub jit_config: SecretValue,
}

/// Instance ref.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRef {
    /// Provider.
    pub provider: String,
    /// Id.
    pub id: String,
}

/// Instance state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceState {
    /// Starting.
    Starting,
    /// Running.
    Running,
    /// Exited.
    Exited {
        /// Code.
        code: Option<i32>,
    },
    /// Gone.
    Gone,
}

/// Error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProviderError(pub String);

impl ProviderError {
    /// Retryable.
    pub fn is_retryable(&self) -> bool {
        true
    }
}

/// Provider.
pub trait Provider: Send + Sync {
    /// Name.
    fn name(&self) -> &str;
    /// Kind.
    fn kind(&self) -> &'static str;
    /// Labels.
    fn labels(&self) -> &[String];
    /// Max.
    fn max_runners(&self) -> Option<u32>;
    /// Launch.
    fn launch<'a>(
        &'a self,
        spec: &'a LaunchSpec,
    ) -> BoxFuture<'a, Result<InstanceRef, ProviderError>>;
    /// State.
    fn state<'a>(
        &'a self,
        inst: &'a InstanceRef,
    ) -> BoxFuture<'a, Result<InstanceState, ProviderError>>;
    /// Stop.
    fn stop<'a>(&'a self, inst: &'a InstanceRef) -> BoxFuture<'a, Result<(), ProviderError>>;
    /// List.
    fn list(&self) -> BoxFuture<'_, Result<Vec<InstanceRef>, ProviderError>>;
}

/// Provider kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Local.
    Local,
    /// Fly.
    Fly,
}

/// Provider config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: ProviderKind,
    /// Labels.
    pub labels: Vec<String>,
    /// Command.
    #[serde(default)]
    pub command: Vec<String>,
    /// Max.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_runners: Option<u32>,
}

/// Validate.
pub fn validate_all(list: &[ProviderConfig]) -> Result<(), ProviderError> {
    let _ = list;
    Ok(())
}

/// Build context.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// State dir.
    pub runners_dir: std::path::PathBuf,
    /// Fly.
    pub fly: Option<crate::compute::FlyConfig>,
}

/// Build.
pub fn build(
    cfg: &ProviderConfig,
    ctx: &BuildContext,
) -> Result<std::sync::Arc<dyn Provider>, ProviderError> {
    let _ = (cfg, ctx);
    Err(ProviderError(
        "providers land with the providers branch".into(),
    ))
}
