//! An in-memory ring of recent log records, fed by a `tracing` layer; it answers
//! `get_recent_logs` and `search_logs` and wakes the TUI when a record arrives.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

use crate::clock::{Clock, Millis, SystemClock};

/// Records kept by default.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// One log record.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    /// Time, unix ms.
    pub at: Millis,
    /// Level.
    pub level: Level,
    /// Service derived from the target (`engine`, `scheduler`, `mcp`, ...).
    pub service: String,
    /// Message followed by its fields as `key=value`.
    pub message: String,
}

/// The ring buffer; cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct LogBuffer {
    inner: Arc<Mutex<VecDeque<LogRecord>>>,
    capacity: usize,
    tick: Arc<watch::Sender<u64>>,
}

impl Default for LogBuffer {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

/// Map a `tracing` target to a service name: `flotilla::engine::runner` -> `engine`,
/// `flotilla::sched` -> `scheduler`; other crates keep their crate name.
pub fn service_of(target: &str) -> String {
    let mut parts = target.split("::");
    let first = parts.next().unwrap_or("");
    if first != "flotilla" {
        return first.to_string();
    }
    match parts.next() {
        Some("sched") => "scheduler".into(),
        Some(s) => s.into(),
        None => "flotilla".into(),
    }
}

/// A level name as MCP tools use it: `debug`, `info`, `warning`, `error` (`trace` -> `debug`).
pub fn level_name(l: Level) -> &'static str {
    match l {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        _ => "debug",
    }
}

/// Parse a level name (`debug`, `info`, `warn`/`warning`, `error`).
pub fn parse_level(s: &str) -> Option<Level> {
    match s.to_ascii_lowercase().as_str() {
        "trace" => Some(Level::TRACE),
        "debug" => Some(Level::DEBUG),
        "info" => Some(Level::INFO),
        "warn" | "warning" => Some(Level::WARN),
        "error" => Some(Level::ERROR),
        _ => None,
    }
}

impl LogBuffer {
    /// A buffer keeping the last `capacity` records.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(VecDeque::with_capacity(capacity.min(1024)))),
            capacity: capacity.max(1),
            tick: Arc::new(watch::channel(0).0),
        }
    }

    /// Append a record.
    pub fn push(&self, rec: LogRecord) {
        if let Ok(mut q) = self.inner.lock() {
            if q.len() == self.capacity {
                q.pop_front();
            }
            q.push_back(rec);
        }
        self.tick.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that changes whenever a record arrives (for redraws).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tick.subscribe()
    }

    /// Records matching `pred`, oldest first, at most the last `limit`; plus how many matched.
    pub fn select(
        &self,
        limit: usize,
        pred: impl Fn(&LogRecord) -> bool,
    ) -> (Vec<LogRecord>, usize) {
        let Ok(q) = self.inner.lock() else {
            return (Vec::new(), 0);
        };
        let matched: Vec<&LogRecord> = q.iter().filter(|r| pred(r)).collect();
        let n = matched.len();
        let out = matched[n.saturating_sub(limit)..]
            .iter()
            .map(|r| (*r).clone())
            .collect();
        (out, n)
    }

    /// Number of records held.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|q| q.len()).unwrap_or(0)
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A `tracing` layer that feeds this buffer.
    pub fn layer(&self) -> LogLayer {
        LogLayer {
            buf: self.clone(),
            clock: Arc::new(SystemClock),
        }
    }
}

/// `tracing` layer writing into a [`LogBuffer`].
#[derive(Debug)]
pub struct LogLayer {
    buf: LogBuffer,
    clock: Arc<dyn Clock>,
}

struct MsgVisitor(String, String);

impl Visit for MsgVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.1, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.1, " {}={value}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for LogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut v = MsgVisitor(String::new(), String::new());
        event.record(&mut v);
        let meta = event.metadata();
        self.buf.push(LogRecord {
            at: self.clock.now_ms(),
            level: *meta.level(),
            service: service_of(meta.target()),
            message: v.0 + &v.1,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::prelude::*;

    #[test]
    fn layer_captures_and_ring_bounds() {
        let buf = LogBuffer::new(3);
        let sub = tracing_subscriber::registry().with(buf.layer());
        tracing::subscriber::with_default(sub, || {
            for i in 0..5 {
                tracing::info!(target: "flotilla::sched::queue", n = i, "hello");
            }
            tracing::warn!(target: "flotilla::mcp", "careful");
        });
        assert_eq!(buf.len(), 3);
        let (recs, n) = buf.select(10, |r| r.level <= Level::WARN);
        assert_eq!(n, 1);
        assert_eq!(recs[0].service, "mcp");
        let (recs, _) = buf.select(1, |_| true);
        assert_eq!(recs[0].message, "careful");
        let (recs, n) = buf.select(10, |r| r.service == "scheduler");
        assert_eq!(n, 2);
        assert_eq!(recs[1].message, "hello n=4");
    }

    #[test]
    fn names() {
        assert_eq!(service_of("flotilla::engine::runner"), "engine");
        assert_eq!(service_of("rmcp::service"), "rmcp");
        assert_eq!(parse_level("WARNING"), Some(Level::WARN));
        assert_eq!(level_name(Level::TRACE), "debug");
    }
}
