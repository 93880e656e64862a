//! A guard in front of rmcp's newline-delimited JSON-RPC transport.
//!
//! rmcp drops lines it cannot parse without a word. JSON-RPC 2.0 (§5.1) says a server answers
//! malformed JSON with error `-32700` (parse error) and a structurally invalid request with
//! `-32600` (invalid request), `id: null` when the id cannot be read. This guard reads the raw
//! byte stream line by line, answers those cases itself, and forwards only well-formed
//! messages to rmcp. Lines are bounded ([`MAX_LINE`]); a longer one is answered with `-32700`
//! and skipped, and the stream goes on.

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};

/// Longest accepted message line, bytes (16 MiB).
pub const MAX_LINE: usize = 16 << 20;

/// Verdict on one incoming line.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Forward to rmcp.
    Forward,
    /// Blank line: ignore.
    Skip,
    /// Answer with this error frame instead.
    Reject(Value),
}

fn error_frame(id: Value, code: i64, message: String) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// Check one line (pure). See the module doc.
pub fn check_line(line: &str) -> Verdict {
    let t = line.trim();
    if t.is_empty() {
        return Verdict::Skip;
    }
    let v: Value = match serde_json::from_str(t) {
        Ok(v) => v,
        Err(e) => {
            return Verdict::Reject(error_frame(
                Value::Null,
                -32700,
                format!("Parse error: {e}"),
            ));
        }
    };
    let Value::Object(obj) = &v else {
        let why = if v.is_array() {
            "batch requests are not supported by MCP; send one message per line"
        } else {
            "a JSON-RPC message must be an object"
        };
        return Verdict::Reject(error_frame(
            Value::Null,
            -32600,
            format!("Invalid Request: {why}"),
        ));
    };
    let id = match obj.get("id") {
        Some(id @ (Value::String(_) | Value::Number(_) | Value::Null)) => Some(id.clone()),
        Some(_) => {
            return Verdict::Reject(error_frame(
                Value::Null,
                -32600,
                "Invalid Request: id must be a string, a number or null".into(),
            ));
        }
        None => None,
    };
    let reply_id = id.clone().unwrap_or(Value::Null);
    if obj.get("jsonrpc") != Some(&Value::String("2.0".into())) {
        return Verdict::Reject(error_frame(
            reply_id,
            -32600,
            "Invalid Request: \"jsonrpc\" must be \"2.0\"".into(),
        ));
    }
    match obj.get("method") {
        Some(Value::String(_)) => Verdict::Forward,
        Some(_) => Verdict::Reject(error_frame(
            reply_id,
            -32600,
            "Invalid Request: \"method\" must be a string".into(),
        )),
        None if id.is_some() && (obj.contains_key("result") || obj.contains_key("error")) => {
            Verdict::Forward
        }
        None => Verdict::Reject(error_frame(
            reply_id,
            -32600,
            "Invalid Request: no \"method\" (and not a response)".into(),
        )),
    }
}

/// Put the guard between `input`/`output` (a client's byte streams) and rmcp. Returns the
/// stream rmcp should serve on, and the writer task: it ends once `input` has ended and rmcp
/// has dropped its side, after the last frame is flushed; await it before exiting so no reply
/// is lost.
pub fn guard<R, W>(input: R, output: W) -> (DuplexStream, tokio::task::JoinHandle<()>)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (server_side, our_side) = tokio::io::duplex(1 << 20);
    let (our_r, mut our_w) = tokio::io::split(our_side);
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();

    // Writer: the only task that writes to the client, so frames never interleave.
    let writer = tokio::spawn(async move {
        let mut output = output;
        while let Some(mut frame) = out_rx.recv().await {
            frame.push('\n');
            if output.write_all(frame.as_bytes()).await.is_err() {
                break;
            }
            // Drain what is already queued before one flush.
            while let Ok(mut more) = out_rx.try_recv() {
                more.push('\n');
                if output.write_all(more.as_bytes()).await.is_err() {
                    return;
                }
            }
            if output.flush().await.is_err() {
                break;
            }
        }
        let _ = output.shutdown().await;
    });

    // rmcp -> client.
    let tx = out_tx.clone();
    tokio::spawn(async move {
        let mut lines = FramedRead::new(our_r, LinesCodec::new_with_max_length(MAX_LINE));
        while let Some(item) = lines.next().await {
            match item {
                Ok(l) => {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
                Err(LinesCodecError::MaxLineLengthExceeded) => continue,
                Err(LinesCodecError::Io(_)) => break,
            }
        }
    });

    // client -> rmcp, through the check.
    tokio::spawn(async move {
        let mut lines = FramedRead::new(input, LinesCodec::new_with_max_length(MAX_LINE));
        while let Some(item) = lines.next().await {
            let line = match item {
                Ok(l) => l,
                Err(LinesCodecError::MaxLineLengthExceeded) => {
                    tracing::warn!(max = MAX_LINE, "MCP message line too long; answered -32700");
                    let _ = out_tx.send(
                        error_frame(
                            Value::Null,
                            -32700,
                            format!("Parse error: message longer than {MAX_LINE} bytes"),
                        )
                        .to_string(),
                    );
                    continue;
                }
                Err(LinesCodecError::Io(e)) => {
                    tracing::debug!("MCP input closed: {e}");
                    break;
                }
            };
            match check_line(&line) {
                Verdict::Skip => {}
                Verdict::Forward => {
                    let mut l = line;
                    l.push('\n');
                    if our_w.write_all(l.as_bytes()).await.is_err() {
                        break;
                    }
                }
                Verdict::Reject(frame) => {
                    tracing::warn!("malformed JSON-RPC from MCP client answered with an error");
                    let _ = out_tx.send(frame.to_string());
                }
            }
        }
        let _ = our_w.shutdown().await;
    });
    (server_side, writer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(v: &Verdict) -> Option<i64> {
        match v {
            Verdict::Reject(f) => f["error"]["code"].as_i64(),
            _ => None,
        }
    }

    #[test]
    fn verdicts() {
        assert_eq!(check_line("   "), Verdict::Skip);
        assert_eq!(code(&check_line("{not json")), Some(-32700));
        assert_eq!(code(&check_line("[1,2]")), Some(-32600));
        assert_eq!(code(&check_line("42")), Some(-32600));
        assert_eq!(code(&check_line(r#"{"id":1,"method":"x"}"#)), Some(-32600));
        assert_eq!(
            code(&check_line(
                r#"{"jsonrpc":"2.0","id":{"a":1},"method":"x"}"#
            )),
            Some(-32600)
        );
        assert_eq!(
            code(&check_line(r#"{"jsonrpc":"2.0","id":7,"method":5}"#)),
            Some(-32600)
        );
        let Verdict::Reject(f) = check_line(r#"{"jsonrpc":"2.0","id":"a"}"#) else {
            panic!()
        };
        assert_eq!(f["id"], "a");
        assert_eq!(
            check_line(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
            Verdict::Forward
        );
        assert_eq!(
            check_line(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Verdict::Forward
        );
        assert_eq!(
            check_line(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#),
            Verdict::Forward
        );
    }

    #[tokio::test]
    async fn guard_answers_garbage_and_forwards_the_rest() {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
        let (client_in, guard_in) = tokio::io::duplex(4096);
        let (guard_out, client_out) = tokio::io::duplex(4096);
        let (server, _writer) = guard(guard_in, guard_out);
        let (mut sr, mut sw) = tokio::io::split(server);
        let (_, mut cw) = tokio::io::split(client_in);
        cw.write_all(b"garbage\n{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 256];
        let n = sr.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("\"ping\""));
        sw.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n")
            .await
            .unwrap();
        let mut lines = BufReader::new(client_out).lines();
        let first = lines.next_line().await.unwrap().unwrap();
        assert!(first.contains("-32700"), "{first}");
        let second = lines.next_line().await.unwrap().unwrap();
        assert!(second.contains("\"result\""), "{second}");
    }
}
