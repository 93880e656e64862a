//! The TUI face: a ratatui console for operators over SSH.
//!
//! Elm architecture: [`app::UiState`], [`app::Action`], [`app::update`] (pure) and
//! [`view::render`] (pure); the loop below turns terminal events, engine snapshots and log
//! records into actions, runs the resulting [`app::Effect`]s against the engine, and redraws
//! only when something changed. The terminal is restored on quit, on panic (ratatui's hook)
//! and on SIGTERM/SIGHUP (an SSH drop).

pub mod app;
pub mod keymap;
pub mod view;

use std::io;
use std::path::Path;
use std::time::Duration;

use crossterm::event::{DisableBracketedPaste, EnableBracketedPaste, Event, EventStream};
use futures::StreamExt;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::clock::Clock;
use crate::engine::{Command, EngineHandle, Reply, Source};
use crate::sched::workflow::{TaskState, WorkflowSpec};
use app::{Action, Done, Effect, UiState, update};
pub use keymap::{Keymap, Pane};

/// Load the keymap: defaults, then the user file (explicit path, else the config dir's
/// `keymap.toml` if present). Returns warnings for the Logs pane.
pub fn load_keymap(explicit: Option<&Path>) -> (Keymap, Vec<String>) {
    let default_path = crate::config::xdg_dir("XDG_CONFIG_HOME", ".config")
        .join("flotilla")
        .join("keymap.toml");
    let (path, required) = match explicit {
        Some(p) => (p.to_path_buf(), true),
        None => (default_path, false),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => Keymap::load(Some((&text, &path.display().to_string()))),
        Err(e) => {
            let (km, mut w) = Keymap::load(None);
            if required || e.kind() != io::ErrorKind::NotFound {
                w.push(format!(
                    "keymap {}: {e}; using the built-in keymap",
                    path.display()
                ));
            }
            (km, w)
        }
    }
}

/// Run the TUI on `engine` until the operator quits or a signal arrives.
pub async fn run(engine: EngineHandle, keymap: Keymap, clock: &dyn Clock) -> io::Result<()> {
    let mut terminal = ratatui::init();
    let _ = crossterm::execute!(io::stdout(), EnableBracketedPaste);
    let result = event_loop(&mut terminal, engine, keymap, clock).await;
    let _ = crossterm::execute!(io::stdout(), DisableBracketedPaste);
    ratatui::restore();
    result
}

async fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    engine: EngineHandle,
    keymap: Keymap,
    clock: &dyn Clock,
) -> io::Result<()> {
    let mut ui = UiState::new(keymap, engine.policy());
    let mut events = EventStream::new();
    let mut snaps = engine.watch();
    let mut logs = engine.logs().subscribe();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tui_logger::move_events();
    let mut dirty = true;
    loop {
        let now = clock.now_ms();
        if dirty {
            let snap = snaps.borrow_and_update().clone();
            terminal.draw(|f| view::render(&mut ui, &snap, now, f))?;
            dirty = false;
        }
        let action = tokio::select! {
            ev = events.next() => match ev {
                Some(Ok(Event::Key(k))) => Some(Action::Key(k)),
                Some(Ok(Event::Paste(s))) => Some(Action::Paste(s)),
                Some(Ok(Event::Resize(..))) => { dirty = true; None }
                Some(Ok(_)) => None,
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            },
            r = snaps.changed() => {
                if r.is_err() { return Ok(()); }
                dirty = true;
                None
            }
            _ = logs.changed() => {
                // Move new records from tui-logger's hot buffer into the widget's buffer.
                tui_logger::move_events();
                if ui.logs_following && (!ui.zoom || ui.focus == Pane::Logs) {
                    dirty = true;
                }
                None
            }
            Some(done) = done_rx.recv() => Some(Action::Done(done)),
            _ = tick.tick() => {
                // Ages and status messages change with time; nothing else does.
                let snap = snaps.borrow().clone();
                let ages = snap.queue.iter().any(|r| matches!(r.state, TaskState::Queued | TaskState::Running))
                    || matches!(&snap.vms, crate::engine::snapshot::VmFeed::On { rows, .. } if !rows.is_empty())
                    || snap.peers.iter().any(|p| p.sched.is_some());
                let status = ui.status.as_ref().is_some_and(|(_, _, at)| now - at < app::STATUS_TTL_MS + 1000);
                if ages || status { dirty = true; }
                None
            }
            _ = sigterm.recv() => return Ok(()),
            _ = sighup.recv() => return Ok(()),
        };
        let Some(action) = action else { continue };
        let snap = snaps.borrow().clone();
        let effects = update(&mut ui, action, &snap, clock.now_ms());
        dirty = true;
        for eff in effects {
            if matches!(eff, Effect::Quit) {
                return Ok(());
            }
            run_effect(&engine, eff, done_tx.clone());
        }
    }
}

fn run_effect(engine: &EngineHandle, eff: Effect, done: mpsc::UnboundedSender<Done>) {
    let engine = engine.clone();
    tokio::spawn(async move {
        let msg = match eff {
            Effect::Quit => return,
            Effect::Execute {
                cmd,
                confirmed,
                what,
            } => Done::Executed {
                what,
                result: engine
                    .execute(cmd, confirmed, Source::Tui)
                    .await
                    .map(Box::new)
                    .map_err(|e| e.to_string()),
            },
            Effect::SubmitFile(path) => {
                let result = submit_file(&engine, &path).await;
                Done::Submitted { path, result }
            }
            Effect::CopySsh(vm_id) => Done::Copied(
                match engine
                    .execute(Command::GetVmSsh { vm_id }, false, Source::Tui)
                    .await
                {
                    Ok(Reply::Ssh(s)) => copy_osc52(&s.command).map(|_| s.command),
                    Ok(other) => Err(format!("unexpected reply {other:?}")),
                    Err(e) => Err(e.to_string()),
                },
            ),
            Effect::Copy(text) => Done::Copied(copy_osc52(&text).map(|_| text)),
            Effect::LoadEvidence(issue_id) => Done::Output(
                match engine
                    .execute(Command::GetIssueEvidence { issue_id }, false, Source::Tui)
                    .await
                {
                    Ok(Reply::Evidence(e)) => Ok(crate::engine::command::TaskOutput {
                        task_id: format!(
                            "{} ({} in {}, lines {:?})",
                            e.issue.issue_id, e.issue.issue_type, e.issue.workflow, e.lines
                        ),
                        state: TaskState::Failed,
                        output: format!("{}\n\n{}", e.context, e.issue.fix_description),
                        truncated: false,
                    }),
                    Ok(other) => Err(format!("unexpected reply {other:?}")),
                    Err(e) => Err(e.to_string()),
                },
            ),
            Effect::LoadOutput(task_id) => Done::Output(
                match engine
                    .execute(Command::GetTaskOutput { task_id }, false, Source::Tui)
                    .await
                {
                    Ok(Reply::Output(o)) => Ok(o),
                    Ok(other) => Err(format!("unexpected reply {other:?}")),
                    Err(e) => Err(e.to_string()),
                },
            ),
        };
        let _ = done.send(msg);
    });
}

/// Put `text` on the operator's clipboard with an OSC 52 escape sequence: it travels over
/// SSH to the local terminal (xterm, kitty, iTerm2, tmux with set-clipboard on).
fn copy_osc52(text: &str) -> Result<(), String> {
    use base64::Engine as _;
    use std::io::Write;
    let b64 = base64::engine::general_purpose::STANDARD.encode(text);
    let mut out = io::stdout();
    write!(out, "\x1b]52;c;{b64}\x07")
        .and_then(|_| out.flush())
        .map_err(|e| e.to_string())
}

/// Read a TOML or JSON workflow file and submit it.
pub async fn submit_file(
    engine: &EngineHandle,
    path: &Path,
) -> Result<crate::engine::command::Submitted, String> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| format!("cannot read: {e}"))?;
    let spec = WorkflowSpec::from_file_text(&path.to_string_lossy(), &text)
        .map_err(|e| format!("invalid workflow: {e}"))?;
    match engine
        .execute(Command::SubmitWorkflow(spec), false, Source::Tui)
        .await
        .map_err(|e| e.to_string())?
    {
        Reply::Submitted(s) => Ok(s),
        other => Err(format!("unexpected reply {other:?}")),
    }
}
