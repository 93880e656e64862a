//! The MCP face: rmcp over stdio, and over a Unix socket in the data dir so that several
//! clients (and `flotilla --mcp-stdio` relays) share one engine with the operator's TUI.
//!
//! stdout carries only JSON-RPC frames; logs go to stderr or the TUI.

pub mod server;
pub mod transport;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rmcp::ServiceExt;
use tokio::net::{UnixListener, UnixStream};

use crate::engine::EngineHandle;
pub use server::FlotillaMcp;

/// MCP face errors.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// Socket set-up failed.
    #[error("MCP socket {path}: {source}")]
    Socket {
        /// Socket path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The session could not start or ended with an error.
    #[error("MCP session: {0}")]
    Session(String),
}

/// Serve one MCP session on a byte stream pair, through the JSON-RPC guard, until the
/// client's input ends.
pub async fn serve_stream<R, W>(engine: EngineHandle, input: R, output: W) -> Result<(), McpError>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (io, writer) = transport::guard(input, output);
    let running = FlotillaMcp::new(engine)
        .serve(io)
        .await
        .map_err(|e| McpError::Session(e.to_string()))?;
    let res = running
        .waiting()
        .await
        .map(|_| ())
        .map_err(|e| McpError::Session(e.to_string()));
    // rmcp has dropped its side: let the writer flush the last replies before we return.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), writer).await;
    res
}

/// Serve MCP on this process's stdin/stdout.
pub async fn serve_stdio(engine: EngineHandle) -> Result<(), McpError> {
    serve_stream(engine, tokio::io::stdin(), tokio::io::stdout()).await
}

/// Listen on the Unix socket at `path` (mode 0600, a stale file is replaced) and serve every
/// connection as its own MCP session on `engine`. Runs until the task is dropped.
pub async fn serve_socket(engine: EngineHandle, path: &Path) -> Result<(), McpError> {
    let listener = bind_socket(path)?;
    tracing::info!(socket = %path.display(), "MCP socket listening");
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let engine = engine.clone();
                tokio::spawn(async move {
                    let (r, w) = stream.into_split();
                    if let Err(e) = serve_stream(engine, r, w).await {
                        tracing::debug!("MCP socket session ended: {e}");
                    }
                });
            }
            Err(e) => {
                tracing::warn!("MCP socket accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Bind the socket, replacing a stale file (the caller holds the data dir lock, so no live
/// engine owns it), and restrict it to the owner (0600).
pub fn bind_socket(path: &Path) -> Result<UnixListener, McpError> {
    let err = |source| McpError::Socket {
        path: path.into(),
        source,
    };
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(listener)
}

/// Relay this process's stdin/stdout to the engine socket at `path`, byte for byte, until
/// stdin ends and the engine has answered. Used by `flotilla --mcp-stdio` when another
/// process owns the data dir.
pub async fn relay_stdio(path: &Path) -> Result<(), McpError> {
    let stream = connect(path).await?;
    let (mut sr, mut sw) = stream.into_split();
    let up = async {
        let mut stdin = tokio::io::stdin();
        let r = tokio::io::copy(&mut stdin, &mut sw).await;
        use tokio::io::AsyncWriteExt;
        let _ = sw.shutdown().await;
        r
    };
    let down = async {
        let mut stdout = tokio::io::stdout();
        let r = tokio::io::copy(&mut sr, &mut stdout).await;
        use tokio::io::AsyncWriteExt;
        let _ = stdout.flush().await;
        r
    };
    let (u, d) = tokio::join!(up, down);
    u.and(d).map(|_| ()).map_err(|source| McpError::Socket {
        path: path.into(),
        source,
    })
}

/// Connect to an engine socket, retrying briefly while the owner starts up.
pub async fn connect(path: &Path) -> Result<UnixStream, McpError> {
    let mut last = None;
    for _ in 0..50 {
        match UnixStream::connect(path).await {
            Ok(s) => return Ok(s),
            Err(e) => {
                last = Some(e);
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
    Err(McpError::Socket {
        path: path.into(),
        source: last.unwrap_or_else(|| std::io::Error::other("no attempt made")),
    })
}
