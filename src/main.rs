//! `flotilla`: parse the command line, pick a face, nothing else.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Parser;
use tracing_subscriber::prelude::*;

use flotilla::cli::{Cli, ConfigCmd, McpCmd, Sub};
use flotilla::clock::SystemClock;
use flotilla::config::Config;
use flotilla::engine::lock::{DataDirLock, LockState, try_lock};
use flotilla::engine::logbuf::LogBuffer;
use flotilla::engine::{Engine, EngineHandle, EngineOptions};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (cfg, origins) = match cli.load_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("flotilla: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Sub::Config {
        cmd: ConfigCmd::Show,
    }) = &cli.command
    {
        print!("{}", cfg.show(&origins));
        return ExitCode::SUCCESS;
    }
    if let Some(Sub::Classify {
        files,
        json,
        patterns,
    }) = &cli.command
    {
        return classify(files, *json, patterns);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("flotilla: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        if cli.mcp_stdio {
            return run_mcp_stdio(&cfg).await;
        }
        match &cli.command {
            Some(Sub::Mcp { cmd: McpCmd::Start }) => run_headless(&cfg).await,
            Some(Sub::Mcp {
                cmd: McpCmd::Status,
            }) => mcp_status(&cfg).await,
            _ => run_tui(&cfg).await,
        }
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flotilla: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn classify(files: &[std::path::PathBuf], json: bool, patterns: &[std::path::PathBuf]) -> ExitCode {
    use flotilla::orchestrator::cmd;
    let cat = match cmd::catalogue(patterns) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("flotilla: {e}");
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    match cmd::run(&cat, files, json, &mut out, &mut err) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flotilla classify: {e}");
            ExitCode::FAILURE
        }
    }
}

enum LogSink {
    Stderr,
    Tui,
}

fn init_logging(cfg: &Config, sink: LogSink) -> LogBuffer {
    let buf = LogBuffer::default();
    // The ring behind get_recent_logs/search_logs keeps info and above whatever the display
    // filter says; the display (stderr or the Logs pane) follows general.log_level.
    let display = || {
        tracing_subscriber::EnvFilter::try_new(&cfg.general.log_level)
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    let ring = buf
        .layer()
        .with_filter(tracing_subscriber::filter::LevelFilter::INFO);
    let registry = tracing_subscriber::registry().with(ring);
    match sink {
        LogSink::Stderr => {
            let _ = registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_writer(std::io::stderr)
                        .with_target(false)
                        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                        .compact()
                        .with_filter(display()),
                )
                .try_init();
        }
        LogSink::Tui => {
            // No init_logger: its mover thread wakes 100 times a second. The TUI moves
            // records into the widget's buffer itself when the log ring says one arrived.
            tui_logger::set_default_level(tui_logger::LevelFilter::Trace);
            let _ = registry
                .with(tui_logger::TuiTracingSubscriberLayer.with_filter(display()))
                .try_init();
        }
    }
    buf
}

fn acquire(cfg: &Config) -> Result<Option<DataDirLock>> {
    match try_lock(&cfg.general.data_dir)? {
        LockState::Acquired(l) => Ok(Some(l)),
        LockState::HeldBy(_) => Ok(None),
    }
}

fn held_by(cfg: &Config) -> String {
    std::fs::read_to_string(cfg.lock_path())
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .map(|p| format!("pid {p}"))
        .unwrap_or_else(|| "another process".into())
}

fn start_engine(
    cfg: &Config,
    logs: LogBuffer,
) -> Result<(EngineHandle, tokio::task::JoinHandle<()>)> {
    Engine::start(EngineOptions::from_config(cfg), Arc::new(SystemClock), logs).with_context(|| {
        format!(
            "cannot start the engine on {}",
            cfg.general.data_dir.display()
        )
    })
}

async fn run_mcp_stdio(cfg: &Config) -> Result<()> {
    let Some(_lock) = acquire(cfg)? else {
        // Another engine owns the data dir: relay to it so its TUI sees what we do.
        return flotilla::mcp::relay_stdio(&cfg.socket_path())
            .await
            .with_context(|| format!("cannot reach the engine ({}) on its socket", held_by(cfg)));
    };
    let logs = init_logging(cfg, LogSink::Stderr);
    let (engine, join) = start_engine(cfg, logs)?;
    let socket = cfg.socket_path();
    let sock_task = tokio::spawn({
        let engine = engine.clone();
        let socket = socket.clone();
        async move { flotilla::mcp::serve_socket(engine, &socket).await }
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let res = tokio::select! {
        r = flotilla::mcp::serve_stdio(engine.clone()) => r.map_err(anyhow::Error::from),
        _ = term.recv() => Ok(()),
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    sock_task.abort();
    let _ = std::fs::remove_file(&socket);
    engine.shutdown().await;
    let _ = join.await;
    res
}

async fn run_headless(cfg: &Config) -> Result<()> {
    let Some(_lock) = acquire(cfg)? else {
        bail!(
            "data dir {} is in use by flotilla ({}); stop it or use another --data-dir",
            cfg.general.data_dir.display(),
            held_by(cfg)
        );
    };
    let logs = init_logging(cfg, LogSink::Stderr);
    let (engine, join) = start_engine(cfg, logs)?;
    let socket = cfg.socket_path();
    tracing::info!(
        data_dir = %cfg.general.data_dir.display(),
        socket = %socket.display(),
        "engine running headless; connect MCP clients with `flotilla --mcp-stdio --data-dir {}`",
        cfg.general.data_dir.display()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let res = tokio::select! {
        r = flotilla::mcp::serve_socket(engine.clone(), &socket) => r.map_err(anyhow::Error::from),
        _ = term.recv() => Ok(()),
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    let _ = std::fs::remove_file(&socket);
    engine.shutdown().await;
    let _ = join.await;
    res
}

async fn mcp_status(cfg: &Config) -> Result<()> {
    use rmcp::ServiceExt;
    if acquire(cfg)?.is_some() {
        bail!(
            "no engine is running on {}; start one with `flotilla` or `flotilla mcp start`",
            cfg.general.data_dir.display()
        );
    }
    let stream = flotilla::mcp::connect(&cfg.socket_path()).await?;
    let client = ().serve(stream).await.context("MCP handshake with the engine failed")?;
    let res = client
        .call_tool(rmcp::model::CallToolRequestParams::new("get_system_status"))
        .await
        .context("get_system_status failed")?;
    let mut out = res
        .structured_content
        .clone()
        .unwrap_or(serde_json::Value::Null);
    // The seed's `mcp status` reports on the autoscaler too.
    if let Ok(a) = client
        .call_tool(rmcp::model::CallToolRequestParams::new(
            "get_autoscaler_status",
        ))
        .await
        && let (Some(st), Some(obj)) = (a.structured_content, out.as_object_mut())
    {
        obj.insert("autoscaler".into(), st);
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    let _ = client.cancel().await;
    Ok(())
}

async fn run_tui(cfg: &Config) -> Result<()> {
    let Some(_lock) = acquire(cfg)? else {
        bail!(
            "data dir {} is in use by flotilla ({}); stop it, or use another --data-dir \
             (MCP clients can still attach with `flotilla --mcp-stdio`)",
            cfg.general.data_dir.display(),
            held_by(cfg)
        );
    };
    let logs = init_logging(cfg, LogSink::Tui);
    let (keymap, warnings) = flotilla::tui::load_keymap(cfg.tui.keymap.as_deref());
    for w in warnings {
        tracing::warn!(target: "flotilla::tui", "{w}");
    }
    let (engine, join) = start_engine(cfg, logs)?;
    let socket = cfg.socket_path();
    let sock_task = tokio::spawn({
        let engine = engine.clone();
        let socket = socket.clone();
        async move { flotilla::mcp::serve_socket(engine, &socket).await }
    });
    let res = flotilla::tui::run(engine.clone(), keymap, &SystemClock).await;
    sock_task.abort();
    let _ = std::fs::remove_file(&socket);
    engine.shutdown().await;
    let _ = join.await;
    res.context("terminal error")
}
