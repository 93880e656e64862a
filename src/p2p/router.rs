//! Routes the node's inbound requests to handlers by [`Envelope`] kind.
//!
//! The node delivers every inbound request-response request on one channel
//! ([`super::NodeConfig::inbound_requests`]); services that answer peers (cache sharing now, the
//! distributed scheduler later) each register the kinds they serve. A request is one encoded
//! [`Envelope`] (at most the node's request bound); the answer is one encoded [`Envelope`] of at
//! most [`MAX_RESPONSE_BYTES`]. Anything the router cannot hand on gets an [`ERROR_KIND`]
//! answer with an [`ErrorBody`]:
//!
//! | `code` | when |
//! |---|---|
//! | `malformed` | the request is not an envelope |
//! | `unknown_kind` | no handler for its kind |
//! | `busy` | [`RouterConfig::max_in_flight`] requests are being handled already |
//! | `timeout` | the handler took longer than [`RouterConfig::handler_timeout`] |
//! | `internal` | the handler's answer could not be encoded (e.g. too large) |
//!
//! Request-response semantics follow libp2p's `request-response` behaviour: one answer per
//! request; a request the app drops fails at the remote end.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use super::node::InboundRequest;
use super::protocol::{Envelope, MAX_RESPONSE_BYTES};
use crate::clock::SharedClock;

/// Kind of an error answer.
pub const ERROR_KIND: &str = "error";

/// Body of an [`ERROR_KIND`] answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// `malformed`, `unknown_kind`, `busy`, `timeout` or `internal`.
    pub code: String,
    /// What went wrong, for logs (never secrets).
    pub message: String,
}

/// A request handler: gets the requesting peer and the decoded request, returns the answer.
/// Runs on its own task; bounded by [`RouterConfig::handler_timeout`].
pub type Handler = Arc<dyn Fn(PeerId, Envelope) -> BoxFuture<'static, Envelope> + Send + Sync>;

/// Why a kind could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouterError {
    /// Another handler serves it already.
    #[error("request kind {0:?} already has a handler")]
    Duplicate(String),
    /// Not a valid envelope kind (1-64 of `[a-z0-9_.-]`), or the reserved [`ERROR_KIND`].
    #[error("invalid request kind {0:?}: expected 1-64 characters of [a-z0-9_.-], not \"error\"")]
    BadKind(String),
}

/// Router settings.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Requests handled at once; more get `busy`. Default 64.
    pub max_in_flight: usize,
    /// Longest a handler may take. Default 5 s.
    pub handler_timeout: Duration,
    /// Largest answer, bytes. Default [`MAX_RESPONSE_BYTES`] (keep it at most the node's
    /// `max_response_bytes`).
    pub max_response_bytes: usize,
    /// Capacity of the inbound channel handed to the node (a full channel refuses requests).
    /// Default 256.
    pub queue: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 64,
            handler_timeout: Duration::from_secs(5),
            max_response_bytes: MAX_RESPONSE_BYTES,
            queue: 256,
        }
    }
}

/// The router. Cloning shares the handler table; kinds can be registered at any time.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

struct Inner {
    handlers: RwLock<HashMap<String, Handler>>,
    cfg: RouterConfig,
    clock: SharedClock,
    slots: Arc<Semaphore>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("kinds", &self.kinds())
            .finish_non_exhaustive()
    }
}

impl Router {
    /// A router with no handlers.
    pub fn new(cfg: RouterConfig, clock: SharedClock) -> Self {
        Self {
            inner: Arc::new(Inner {
                handlers: RwLock::default(),
                slots: Arc::new(Semaphore::new(cfg.max_in_flight.max(1))),
                cfg,
                clock,
            }),
        }
    }

    /// A router and the sender to put in [`super::NodeConfig::inbound_requests`]; the router's
    /// task runs until every sender is dropped (the node stops).
    pub fn start(cfg: RouterConfig, clock: SharedClock) -> (Self, mpsc::Sender<InboundRequest>) {
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let r = Self::new(cfg, clock);
        r.clone().spawn(rx);
        (r, tx)
    }

    /// Serve requests from `rx` (each on its own task) until it closes.
    pub fn spawn(self, mut rx: mpsc::Receiver<InboundRequest>) -> JoinHandle<()> {
        tokio::spawn(async move {
            while let Some(req) = rx.recv().await {
                let r = self.clone();
                tokio::spawn(async move {
                    let answer = r.dispatch(req.peer, &req.bytes).await;
                    let _ = req.respond.send(answer);
                });
            }
        })
    }

    /// Register `handler` for requests of `kind`.
    ///
    /// # Errors
    /// [`RouterError::Duplicate`], [`RouterError::BadKind`].
    pub fn register(&self, kind: &str, handler: Handler) -> Result<(), RouterError> {
        let probe = Envelope {
            kind: kind.to_string(),
            sent_ms: 0,
            body: serde_json::Value::Null,
        };
        if kind == ERROR_KIND || probe.encode().is_err() {
            return Err(RouterError::BadKind(kind.chars().take(80).collect()));
        }
        let mut h = self
            .inner
            .handlers
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if h.contains_key(kind) {
            return Err(RouterError::Duplicate(kind.to_string()));
        }
        h.insert(kind.to_string(), handler);
        Ok(())
    }

    /// Kinds with a handler, sorted.
    pub fn kinds(&self) -> Vec<String> {
        let mut k: Vec<String> = self
            .inner
            .handlers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        k.sort();
        k
    }

    /// An [`ERROR_KIND`] envelope, encoded.
    pub fn error_answer(&self, code: &str, message: &str) -> Vec<u8> {
        let body = ErrorBody {
            code: code.into(),
            message: message.chars().take(200).collect(),
        };
        Envelope::new(ERROR_KIND, self.inner.clock.now_ms(), &body)
            .and_then(|e| e.encode())
            .unwrap_or_default()
    }

    /// Answer one request from `peer` (what the router's task does for each).
    pub async fn dispatch(&self, peer: PeerId, bytes: &[u8]) -> Vec<u8> {
        let env = match Envelope::decode(bytes) {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "malformed request");
                return self.error_answer("malformed", &e.to_string());
            }
        };
        let handler = self
            .inner
            .handlers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&env.kind)
            .cloned();
        let Some(handler) = handler else {
            tracing::debug!(%peer, kind = %env.kind, "request of unknown kind");
            return self.error_answer(
                "unknown_kind",
                &format!("no handler for request kind {:?}", env.kind),
            );
        };
        let Ok(_slot) = self.inner.slots.clone().try_acquire_owned() else {
            return self.error_answer("busy", "too many requests in flight; retry later");
        };
        let kind = env.kind.clone();
        match tokio::time::timeout(self.inner.cfg.handler_timeout, handler(peer, env)).await {
            Ok(answer) => match answer.encode_max(self.inner.cfg.max_response_bytes) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(%peer, %kind, error = %e, "cannot encode an answer");
                    self.error_answer("internal", &e.to_string())
                }
            },
            Err(_) => {
                tracing::warn!(%peer, %kind, "request handler timed out");
                self.error_answer("timeout", "the handler took too long")
            }
        }
    }
}

/// Read an answer: `Ok(envelope)` for anything but an error answer, `Err(body)` for one.
///
/// # Errors
/// `Err(None)` if the bytes are not an envelope (of at most `max` bytes) or an error answer's
/// body is malformed; `Err(Some(body))` for a well-formed error answer.
pub fn read_answer(bytes: &[u8], max: usize) -> Result<Envelope, Option<ErrorBody>> {
    let env = Envelope::decode_max(bytes, max).map_err(|_| None)?;
    if env.kind == ERROR_KIND {
        return Err(env.body_as::<ErrorBody>().ok());
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use futures::FutureExt;

    fn router() -> Router {
        Router::new(RouterConfig::default(), Arc::new(ManualClock::new(5)))
    }

    fn echo() -> Handler {
        Arc::new(|_peer, env: Envelope| {
            async move { Envelope::new("echo.ok", 1, &env.body).unwrap() }.boxed()
        })
    }

    fn req(kind: &str) -> Vec<u8> {
        Envelope::new(kind, 1, &serde_json::json!({"n": 1}))
            .unwrap()
            .encode()
            .unwrap()
    }

    #[tokio::test]
    async fn routes_by_kind_and_answers_errors() {
        let r = router();
        r.register("echo", echo()).unwrap();
        assert_eq!(
            r.register("echo", echo()),
            Err(RouterError::Duplicate("echo".into()))
        );
        assert!(matches!(
            r.register("error", echo()),
            Err(RouterError::BadKind(_))
        ));
        assert!(matches!(
            r.register("Bad Kind", echo()),
            Err(RouterError::BadKind(_))
        ));
        let p = PeerId::random();
        let ok = read_answer(&r.dispatch(p, &req("echo")).await, MAX_RESPONSE_BYTES).unwrap();
        assert_eq!(ok.kind, "echo.ok");
        assert_eq!(ok.body["n"], 1);
        let code = |b: Vec<u8>| {
            read_answer(&b, MAX_RESPONSE_BYTES)
                .unwrap_err()
                .unwrap()
                .code
        };
        assert_eq!(code(r.dispatch(p, &req("nope")).await), "unknown_kind");
        assert_eq!(code(r.dispatch(p, b"\x01{not json").await), "malformed");
        assert_eq!(code(r.dispatch(p, b"").await), "malformed");
        assert_eq!(r.kinds(), ["echo"]);
        assert_eq!(read_answer(b"junk", 100), Err(None));
    }

    #[tokio::test]
    async fn slow_handlers_time_out_and_excess_requests_are_busy() {
        let r = Router::new(
            RouterConfig {
                max_in_flight: 1,
                handler_timeout: Duration::from_millis(100),
                ..RouterConfig::default()
            },
            Arc::new(ManualClock::new(5)),
        );
        r.register(
            "slow",
            Arc::new(|_, _| {
                async {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    Envelope::new("never", 0, &()).unwrap()
                }
                .boxed()
            }),
        )
        .unwrap();
        let p = PeerId::random();
        let r2 = r.clone();
        let first = tokio::spawn(async move { r2.dispatch(p, &req("slow")).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let code = |b: Vec<u8>| {
            read_answer(&b, MAX_RESPONSE_BYTES)
                .unwrap_err()
                .unwrap()
                .code
        };
        assert_eq!(code(r.dispatch(p, &req("slow")).await), "busy");
        assert_eq!(code(first.await.unwrap()), "timeout");
    }

    #[tokio::test]
    async fn oversized_answers_become_internal_errors() {
        let r = Router::new(
            RouterConfig {
                max_response_bytes: 64,
                ..RouterConfig::default()
            },
            Arc::new(ManualClock::new(5)),
        );
        r.register(
            "big",
            Arc::new(|_, _| {
                async { Envelope::new("big.ok", 0, &"x".repeat(100)).unwrap() }.boxed()
            }),
        )
        .unwrap();
        let b = r.dispatch(PeerId::random(), &req("big")).await;
        assert_eq!(
            read_answer(&b, MAX_RESPONSE_BYTES)
                .unwrap_err()
                .unwrap()
                .code,
            "internal"
        );
    }
}
