//! UI state and the pure `update` step (Elm architecture): `update(&mut UiState, Action,
//! &Snapshot, now) -> Vec<Effect>`. Effects (engine calls, file reads) run in the main loop
//! and come back as [`Action::Done`].

use std::path::PathBuf;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use regex::{Regex, RegexBuilder};
use tui_logger::{TuiWidgetEvent, TuiWidgetState};

use super::keymap::{Keymap, Pane, action, key_of};
use crate::clock::Millis;
use crate::engine::command::IssueView;
use crate::engine::command::RunnerView;
use crate::engine::command::{Submitted, TaskOutput};
use crate::engine::mesh::PeerRow;
use crate::engine::snapshot::{IssueFeed, QueueRow, RunnerFeed, VmFeed, VmRow};
use crate::engine::{Command, CommandKind, Danger, Policy, Reply, Snapshot};
use crate::sched::peer_select::PlaceBy;
use crate::sched::workflow::{MAX_PRIORITY, TaskState};

/// How long a status message stays in the footer, ms.
pub const STATUS_TTL_MS: Millis = 6_000;
/// Priority step of raise/lower.
pub const PRIORITY_STEP: u16 = 10;

/// A row filter: a case-insensitive regex, inverted with a leading `!`.
#[derive(Debug, Clone)]
pub struct RowFilter {
    /// As typed, e.g. `!build`.
    pub text: String,
    regex: Regex,
    invert: bool,
}

impl RowFilter {
    /// Parse `text`; an empty text means no filter.
    pub fn parse(text: &str) -> Result<Option<RowFilter>, String> {
        let (invert, pat) = match text.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, text),
        };
        if pat.is_empty() {
            return Ok(None);
        }
        let regex = RegexBuilder::new(pat)
            .case_insensitive(true)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| {
                format!(
                    "bad filter regex: {}",
                    e.to_string().lines().last().unwrap_or("")
                )
            })?;
        Ok(Some(RowFilter {
            text: text.to_string(),
            regex,
            invert,
        }))
    }
    /// Whether a row with this text is kept.
    pub fn keeps(&self, hay: &str) -> bool {
        self.regex.is_match(hay) != self.invert
    }
}

/// Severity of a footer message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Information.
    Info,
    /// Something was refused or failed.
    Error,
}

/// A confirm dialog and what happens on yes.
#[derive(Debug, Clone)]
pub struct Confirm {
    /// Title.
    pub title: String,
    /// What will happen.
    pub body: String,
    /// Effect to run on yes.
    pub on_yes: Effect,
}

/// An opened task output.
#[derive(Debug, Clone)]
pub struct OutputView {
    /// The output.
    pub output: TaskOutput,
    /// Lines scrolled up from the bottom.
    pub scroll_back: u16,
}

/// Input mode.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Keys run bindings.
    Normal,
    /// `:` command line being typed.
    Command(String),
    /// `/` filter being typed.
    Filter(String),
    /// `?` help overlay, with scroll.
    Help(u16),
    /// Confirm dialog.
    Confirm(Confirm),
    /// Task output overlay.
    Output(OutputView),
    /// `:cache` overlay: GitHub rate limit and API cache figures.
    Cache,
    /// The VM provisioning form.
    Provision(ProvisionForm),
}

/// The small form behind "provision a VM": user, CPU type, memory, region; empty fields take
/// the engine's defaults (`VM_DEFAULT_*`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProvisionForm {
    /// Field values: user, CPU type, memory MB, region.
    pub fields: [String; 4],
    /// Focused field.
    pub focus: usize,
    /// Why the last submit was refused.
    pub error: Option<String>,
}

impl ProvisionForm {
    /// Field labels.
    pub const LABELS: [&'static str; 4] = ["User", "CPU type", "Memory MB", "Region"];

    /// The command this form asks for, or why it cannot.
    pub fn command(&self) -> Result<Command, String> {
        let [user, cpu, mem, region] = &self.fields;
        let user = user.trim();
        if user.is_empty() {
            return Err("user is required".into());
        }
        let opt = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
        let memory_mb = match opt(mem) {
            None => None,
            Some(m) => Some(
                m.parse::<u32>()
                    .map_err(|_| format!("memory {m:?} is not a number of MB"))?,
            ),
        };
        Ok(Command::ProvisionVm {
            user: user.to_string(),
            session: None,
            cpu_type: opt(cpu),
            memory_mb,
            region: opt(region),
        })
    }
}

/// Inputs to [`update`].
#[derive(Debug)]
pub enum Action {
    /// A key press.
    Key(KeyEvent),
    /// Pasted text (bracketed paste).
    Paste(String),
    /// An effect finished.
    Done(Done),
}

/// Results of effects.
#[derive(Debug)]
pub enum Done {
    /// An engine command returned.
    Executed {
        /// What was done, for the message.
        what: String,
        /// The reply (boxed: replies are large and `Action` carries this by value) or the
        /// error text.
        result: Result<Box<Reply>, String>,
    },
    /// A workflow file was submitted.
    Submitted {
        /// File path.
        path: PathBuf,
        /// Reply or error text.
        result: Result<Submitted, String>,
    },
    /// A task's output arrived.
    Output(Result<TaskOutput, String>),
    /// Text was copied to the clipboard (OSC 52).
    Copied(Result<String, String>),
}

/// Work for the main loop.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Run an engine command.
    Execute {
        /// The command.
        cmd: Command,
        /// Explicit confirmation given.
        confirmed: bool,
        /// Description for the result message.
        what: String,
    },
    /// Read, parse and submit a workflow file (TOML or JSON).
    SubmitFile(PathBuf),
    /// Fetch a task's output.
    LoadOutput(String),
    /// Fetch a VM's SSH command and copy it to the terminal's clipboard (OSC 52).
    CopySsh(String),
    /// Copy text to the terminal's clipboard (OSC 52).
    Copy(String),
    /// Fetch an issue's evidence and show it.
    LoadEvidence(String),
    /// Leave the TUI.
    Quit,
}

/// Everything the UI remembers between frames.
pub struct UiState {
    /// Focused pane.
    pub focus: Pane,
    /// Focused pane fills the screen.
    pub zoom: bool,
    /// Input mode.
    pub mode: Mode,
    /// Selected row per pane.
    pub selected: [usize; 6],
    /// Row filter per pane.
    pub filters: [Option<RowFilter>; 6],
    /// Footer message and when it was set.
    pub status: Option<(String, Level, Millis)>,
    /// Live keymap.
    pub keymap: Keymap,
    /// Policy in force (hides refused actions).
    pub policy: Policy,
    /// tui-logger widget state (scroll, follow).
    pub logs: TuiWidgetState,
    /// Whether the Logs pane follows new lines.
    pub logs_following: bool,
    /// Rows that fit in the focused pane (set by the view; for paging).
    pub page: usize,
}

impl std::fmt::Debug for UiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UiState")
            .field("focus", &self.focus)
            .field("zoom", &self.zoom)
            .field("mode", &self.mode)
            .field("selected", &self.selected)
            .finish_non_exhaustive()
    }
}

impl UiState {
    /// A fresh UI on the Queue pane.
    pub fn new(keymap: Keymap, policy: Policy) -> Self {
        Self {
            focus: Pane::Queue,
            zoom: false,
            mode: Mode::Normal,
            selected: [0; 6],
            filters: Default::default(),
            status: None,
            keymap,
            policy,
            logs: TuiWidgetState::new(),
            logs_following: true,
            page: 10,
        }
    }

    fn say(&mut self, text: impl Into<String>, level: Level, now: Millis) {
        self.status = Some((text.into(), level, now));
    }

    /// The filter of a pane.
    pub fn filter(&self, pane: Pane) -> Option<&RowFilter> {
        self.filters[pane.index()].as_ref()
    }
}

pub use crate::p2p::short_peer;

/// Whether `w` has the shape of a libp2p peer ID in base58 (`12D3KooW…` for Ed25519 keys,
/// `Qm…` for hashed ones).
pub fn looks_like_peer_id(w: &str) -> bool {
    w.len() >= 46
        && (w.starts_with("12D3KooW") || w.starts_with("Qm"))
        && w.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Replace the peer IDs in an engine message by their short form, so that a message about a
/// peer fits the footer (`disconnected 12D3KooW…(52)` becomes `disconnected …w3UERE`).
pub fn shorten_peer_ids(text: &str) -> String {
    text.split(' ')
        .map(|w| {
            let core = w.trim_end_matches([':', ',', '.', ';']);
            if looks_like_peer_id(core) {
                format!("{}{}", short_peer(core), &w[core.len()..])
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Connection state of a peer as the Peers pane words it: `banned`, `connected` or
/// `disconnected`.
pub fn peer_state(p: &PeerRow) -> &'static str {
    if p.banned {
        "banned"
    } else if p.connected {
        "connected"
    } else {
        "disconnected"
    }
}

/// A peer's node name: from its heartbeats, else from its agent string
/// (`flotilla/0.1.0 (gpu-02)` gives `gpu-02`), else the agent itself.
pub fn peer_name(p: &PeerRow) -> String {
    if let Some(s) = &p.sched {
        return s.name.clone();
    }
    match p.agent.as_deref() {
        Some(a) => match a.strip_suffix(')').and_then(|a| a.rsplit_once(" (")) {
            Some((_, name)) if !name.is_empty() => name.to_string(),
            _ => a.to_string(),
        },
        None => "-".into(),
    }
}

/// Text a peer row is filtered on.
pub fn peer_row_text(p: &PeerRow) -> String {
    let (name, caps) = match &p.sched {
        Some(s) => (s.name.as_str(), s.capabilities.join(",")),
        None => ("", String::new()),
    };
    format!(
        "{} {} {} {} {} {}",
        p.peer_id,
        name,
        p.agent.as_deref().unwrap_or(""),
        peer_state(p),
        caps,
        p.addrs.join(" ")
    )
}

/// The Peers rows after the pane's filter (this node's own row is drawn above them and is
/// not selectable: every Peers action targets another peer).
pub fn peer_rows<'a>(ui: &UiState, snap: &'a Snapshot) -> Vec<&'a PeerRow> {
    let f = ui.filter(Pane::Peers);
    snap.peers
        .iter()
        .filter(|p| f.is_none_or(|f| f.keeps(&peer_row_text(p))))
        .collect()
}

fn selected_peer<'a>(ui: &UiState, snap: &'a Snapshot) -> Option<&'a PeerRow> {
    peer_rows(ui, snap)
        .get(ui.selected[Pane::Peers.index()])
        .copied()
}

/// Text a Queue row is filtered on.
pub fn queue_row_text(r: &QueueRow) -> String {
    format!(
        "{} {} {} {} {} {}",
        r.workflow_name,
        r.task_id,
        r.tag,
        r.state.as_str(),
        r.command,
        r.owner.as_deref().unwrap_or("")
    )
}

/// The Queue rows after the pane's filter.
pub fn queue_rows<'a>(ui: &UiState, snap: &'a Snapshot) -> Vec<&'a QueueRow> {
    let f = ui.filter(Pane::Queue);
    snap.queue
        .iter()
        .filter(|r| f.is_none_or(|f| f.keeps(&queue_row_text(r))))
        .collect()
}

/// Text a VM row is filtered on.
pub fn vm_row_text(r: &VmRow) -> String {
    format!(
        "{} {} {} {} {} {}",
        r.name, r.vm_id, r.user, r.region, r.cpu_type, r.status
    )
}

/// The VMs rows after the pane's filter.
pub fn vm_rows<'a>(ui: &UiState, snap: &'a Snapshot) -> Vec<&'a VmRow> {
    let f = ui.filter(Pane::Vms);
    match &snap.vms {
        VmFeed::On { rows, .. } => rows
            .iter()
            .filter(|r| f.is_none_or(|f| f.keeps(&vm_row_text(r))))
            .collect(),
        VmFeed::Off(_) => Vec::new(),
    }
}

/// Text an issue row is filtered on.
pub fn issue_row_text(r: &IssueView) -> String {
    format!(
        "{} {} {} {} {} {}",
        r.severity, r.issue_type, r.repo, r.workflow, r.status, r.issue_id
    )
}

/// The Issues rows after the pane's filter.
pub fn issue_rows<'a>(ui: &UiState, snap: &'a Snapshot) -> Vec<&'a IssueView> {
    let f = ui.filter(Pane::Issues);
    match &snap.issues {
        IssueFeed::On(rows) => rows
            .iter()
            .filter(|r| f.is_none_or(|f| f.keeps(&issue_row_text(r))))
            .collect(),
        IssueFeed::Off(_) => Vec::new(),
    }
}

fn selected_issue<'a>(ui: &UiState, snap: &'a Snapshot) -> Option<&'a IssueView> {
    issue_rows(ui, snap)
        .get(ui.selected[Pane::Issues.index()])
        .copied()
}

/// Text a runner row is filtered on.
pub fn runner_row_text(r: &RunnerView) -> String {
    format!(
        "{} {} {} {} {} {} {}",
        r.name,
        r.id,
        r.scope,
        r.provider,
        r.state,
        r.labels.join(","),
        r.job.as_deref().unwrap_or("")
    )
}

/// The Runners rows after the pane's filter.
pub fn runner_rows<'a>(ui: &UiState, snap: &'a Snapshot) -> Vec<&'a RunnerView> {
    let f = ui.filter(Pane::Runners);
    match &snap.runners {
        RunnerFeed::On { rows, .. } => rows
            .iter()
            .filter(|r| f.is_none_or(|f| f.keeps(&runner_row_text(r))))
            .collect(),
        RunnerFeed::Off(_) => Vec::new(),
    }
}

fn selected_runner<'a>(ui: &UiState, snap: &'a Snapshot) -> Option<&'a RunnerView> {
    runner_rows(ui, snap)
        .get(ui.selected[Pane::Runners.index()])
        .copied()
}

fn selected_vm<'a>(ui: &UiState, snap: &'a Snapshot) -> Option<&'a VmRow> {
    vm_rows(ui, snap)
        .get(ui.selected[Pane::Vms.index()])
        .copied()
}

/// Rows the cursor moves over in `pane`.
pub fn row_count(ui: &UiState, snap: &Snapshot, pane: Pane) -> usize {
    match pane {
        Pane::Queue => queue_rows(ui, snap).len(),
        Pane::Vms => vm_rows(ui, snap).len(),
        Pane::Runners => runner_rows(ui, snap).len(),
        Pane::Issues => issue_rows(ui, snap).len(),
        Pane::Peers => peer_rows(ui, snap).len(),
        _ => 0,
    }
}

fn selected_queue_row<'a>(ui: &UiState, snap: &'a Snapshot) -> Option<&'a QueueRow> {
    queue_rows(ui, snap)
        .get(ui.selected[Pane::Queue.index()])
        .copied()
}

/// The update step. Pure apart from the tui-logger widget state it drives.
pub fn update(ui: &mut UiState, action: Action, snap: &Snapshot, now: Millis) -> Vec<Effect> {
    let effects = match action {
        Action::Key(k) if k.kind == KeyEventKind::Release => Vec::new(),
        Action::Key(k) => on_key(ui, k, snap, now),
        Action::Paste(text) => {
            match &mut ui.mode {
                Mode::Command(s) | Mode::Filter(s) => s.push_str(&text.replace(['\n', '\r'], " ")),
                _ => {}
            }
            Vec::new()
        }
        Action::Done(d) => {
            on_done(ui, d, now);
            Vec::new()
        }
    };
    clamp_selection(ui, snap);
    effects
}

fn clamp_selection(ui: &mut UiState, snap: &Snapshot) {
    for p in Pane::ALL {
        let n = row_count(ui, snap, p);
        let s = &mut ui.selected[p.index()];
        if n == 0 {
            *s = 0;
        } else if *s >= n {
            *s = n - 1;
        }
    }
}

fn on_done(ui: &mut UiState, d: Done, now: Millis) {
    match d {
        Done::Executed { what, result } => match result.map(|r| *r) {
            Ok(Reply::Cancelled(c)) => ui.say(
                format!(
                    "{what}: {} queued dropped, {} running killed",
                    c.cancelled_queued, c.killed_running
                ),
                Level::Info,
                now,
            ),
            Ok(Reply::Vm(v)) => ui.say(
                format!("{what}: {} is {} in {}", v.vm_id, v.status, v.region),
                Level::Info,
                now,
            ),
            Ok(Reply::Terminated(t)) => ui.say(format!("{what}: {}", t.action), Level::Info, now),
            Ok(Reply::Fix(f)) => ui.say(
                format!("{what}: {} ({})", f.result, f.status),
                if f.applied { Level::Info } else { Level::Error },
                now,
            ),
            Ok(Reply::Issue(i)) => ui.say(format!("{what}: {}", i.status), Level::Info, now),
            Ok(Reply::Priority(p)) => ui.say(
                format!(
                    "{what}: priority {} (effective {:.1})",
                    p.priority, p.effective_priority
                ),
                Level::Info,
                now,
            ),
            Ok(Reply::Done(d)) => ui.say(
                format!("{what}: {}", shorten_peer_ids(&d.message)),
                Level::Info,
                now,
            ),
            Ok(Reply::Rebalanced(r)) => ui.say(rebalanced_message(&what, &r), Level::Info, now),
            Ok(_) => ui.say(format!("{what}: done"), Level::Info, now),
            Err(e) => ui.say(format!("{what}: {e}"), Level::Error, now),
        },
        Done::Submitted { path, result } => match result {
            Ok(s) => ui.say(
                format!(
                    "submitted {} as {} ({} task(s))",
                    path.display(),
                    s.workflow_id,
                    s.tasks
                ),
                Level::Info,
                now,
            ),
            Err(e) => ui.say(
                format!("cannot submit {}: {e}", path.display()),
                Level::Error,
                now,
            ),
        },
        Done::Output(Ok(o)) => {
            ui.mode = Mode::Output(OutputView {
                output: o,
                scroll_back: 0,
            });
        }
        Done::Output(Err(e)) => ui.say(format!("cannot show output: {e}"), Level::Error, now),
        Done::Copied(Ok(text)) => ui.say(format!("copied: {text}"), Level::Info, now),
        Done::Copied(Err(e)) => ui.say(format!("cannot copy: {e}"), Level::Error, now),
    }
}

/// The footer line for a rebalance: how many tasks moved and where (`t1 → …w3UERE`).
fn rebalanced_message(what: &str, r: &crate::engine::command::Rebalanced) -> String {
    if r.moved.is_empty() {
        return format!("{what}: already balanced, no task moved");
    }
    let moves: Vec<String> = r
        .moved
        .iter()
        .map(|m| format!("{} → {}", m.task_id, short_peer(&m.to)))
        .collect();
    format!(
        "{what}: moved {} task(s): {}",
        r.moved.len(),
        moves.join(", ")
    )
}

fn on_key(ui: &mut UiState, k: KeyEvent, snap: &Snapshot, now: Millis) -> Vec<Effect> {
    match std::mem::replace(&mut ui.mode, Mode::Normal) {
        Mode::Normal => on_normal_key(ui, k, snap, now),
        Mode::Command(mut s) => match edit_line(&mut s, &k) {
            LineEdit::Editing => {
                ui.mode = Mode::Command(s);
                Vec::new()
            }
            LineEdit::Cancel => Vec::new(),
            LineEdit::Submit => run_command_line(ui, s.trim(), snap, now),
        },
        Mode::Filter(mut s) => match edit_line(&mut s, &k) {
            LineEdit::Editing => {
                ui.mode = Mode::Filter(s);
                Vec::new()
            }
            LineEdit::Cancel => Vec::new(),
            LineEdit::Submit => {
                match RowFilter::parse(s.trim()) {
                    Ok(f) => {
                        ui.filters[ui.focus.index()] = f;
                        ui.selected[ui.focus.index()] = 0;
                    }
                    Err(e) => {
                        ui.say(e, Level::Error, now);
                        ui.mode = Mode::Filter(s);
                    }
                }
                Vec::new()
            }
        },
        Mode::Provision(mut form) => {
            match k.code {
                KeyCode::Esc => {
                    ui.say("provision cancelled", Level::Info, now);
                    return Vec::new();
                }
                KeyCode::Enter => match form.command() {
                    Ok(cmd) => {
                        let user = form.fields[0].trim().to_string();
                        return gated(
                            ui,
                            CommandKind::ProvisionVm,
                            cmd,
                            format!("provision for {user}"),
                            String::new(),
                            now,
                        );
                    }
                    Err(e) => form.error = Some(e),
                },
                KeyCode::Tab | KeyCode::Down => form.focus = (form.focus + 1) % 4,
                KeyCode::BackTab | KeyCode::Up => form.focus = (form.focus + 3) % 4,
                KeyCode::Backspace => {
                    form.fields[form.focus].pop();
                }
                KeyCode::Char(c) if !k.modifiers.contains(KeyModifiers::CONTROL) => {
                    form.fields[form.focus].push(c);
                    form.error = None;
                }
                _ => {}
            }
            ui.mode = Mode::Provision(form);
            Vec::new()
        }
        Mode::Cache => {
            if !matches!(k.code, KeyCode::Esc | KeyCode::Char('q') | KeyCode::Enter) {
                ui.mode = Mode::Cache;
            }
            Vec::new()
        }
        Mode::Help(scroll) => {
            ui.mode = match k.code {
                KeyCode::Esc | KeyCode::Char('q') | KeyCode::Char('?') => Mode::Normal,
                KeyCode::Down | KeyCode::Char('j') => Mode::Help(scroll.saturating_add(1)),
                KeyCode::Up | KeyCode::Char('k') => Mode::Help(scroll.saturating_sub(1)),
                _ => Mode::Help(scroll),
            };
            Vec::new()
        }
        Mode::Confirm(c) => match k.code {
            KeyCode::Char('y') | KeyCode::Char('Y') => vec![c.on_yes],
            KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc | KeyCode::Char('q') => {
                ui.say("cancelled: nothing was changed", Level::Info, now);
                Vec::new()
            }
            _ => {
                ui.mode = Mode::Confirm(c);
                Vec::new()
            }
        },
        Mode::Output(mut v) => {
            let page = ui.page.max(1) as u16;
            match k.code {
                KeyCode::Esc | KeyCode::Char('q') | KeyCode::Enter => return Vec::new(),
                KeyCode::Up | KeyCode::Char('k') => v.scroll_back = v.scroll_back.saturating_add(1),
                KeyCode::Down | KeyCode::Char('j') => {
                    v.scroll_back = v.scroll_back.saturating_sub(1)
                }
                KeyCode::PageUp => v.scroll_back = v.scroll_back.saturating_add(page),
                KeyCode::PageDown => v.scroll_back = v.scroll_back.saturating_sub(page),
                KeyCode::Char('G') | KeyCode::End => v.scroll_back = 0,
                KeyCode::Char('g') | KeyCode::Home => v.scroll_back = u16::MAX,
                _ => {}
            }
            ui.mode = Mode::Output(v);
            Vec::new()
        }
    }
}

enum LineEdit {
    Editing,
    Cancel,
    Submit,
}

fn edit_line(s: &mut String, k: &KeyEvent) -> LineEdit {
    match k.code {
        KeyCode::Esc => LineEdit::Cancel,
        KeyCode::Enter => LineEdit::Submit,
        KeyCode::Backspace => {
            s.pop();
            LineEdit::Editing
        }
        KeyCode::Char('u') if k.modifiers.contains(KeyModifiers::CONTROL) => {
            s.clear();
            LineEdit::Editing
        }
        KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => LineEdit::Cancel,
        KeyCode::Char(c) if !k.modifiers.contains(KeyModifiers::CONTROL) => {
            s.push(c);
            LineEdit::Editing
        }
        _ => LineEdit::Editing,
    }
}

fn focus(ui: &mut UiState, p: Pane) {
    ui.focus = p;
}

/// Gate an engine-bound action on the policy: refused in read-only mode (with a message),
/// wrapped in a confirm dialog when destructive.
fn gated(
    ui: &mut UiState,
    kind: CommandKind,
    cmd: Command,
    what: String,
    body: String,
    now: Millis,
) -> Vec<Effect> {
    if !ui.policy.permits(kind) {
        ui.say(
            format!("{what}: refused, flotilla runs read-only"),
            Level::Error,
            now,
        );
        return Vec::new();
    }
    let eff = Effect::Execute {
        cmd,
        confirmed: kind.danger() == Danger::Destructive,
        what: what.clone(),
    };
    if kind.danger() == Danger::Destructive {
        ui.mode = Mode::Confirm(Confirm {
            title: what,
            body,
            on_yes: eff,
        });
        Vec::new()
    } else {
        vec![eff]
    }
}

fn rebalance(ui: &mut UiState, strategy: PlaceBy, now: Millis) -> Vec<Effect> {
    let name = match strategy {
        PlaceBy::Load => "load",
        PlaceBy::Latency => "latency",
        PlaceBy::Proximity => "proximity",
    };
    gated(
        ui,
        CommandKind::RebalanceP2p,
        Command::RebalanceP2p { strategy },
        format!("rebalance by {name}"),
        String::new(),
        now,
    )
}

/// Disconnect, ban or unban the selected peer, after checking it makes sense for its state.
fn peer_action(ui: &mut UiState, snap: &Snapshot, run: &str, now: Millis) -> Vec<Effect> {
    let Some(p) = selected_peer(ui, snap) else {
        ui.say(
            "no peer selected: this node knows no other peer yet",
            Level::Error,
            now,
        );
        return Vec::new();
    };
    let id = p.peer_id.clone();
    let short = short_peer(&id);
    let name = match peer_name(p) {
        n if n == "-" => short.clone(),
        n => format!("{n} ({short})"),
    };
    let held = match &p.sched {
        Some(s) if s.owned > 0 => format!("\nIt holds {} mesh task(s).", s.owned),
        _ => String::new(),
    };
    let (kind, cmd, what, body) = match run {
        "peer.disconnect" if !p.connected => {
            ui.say(
                format!("{name} is {}: nothing to disconnect", peer_state(p)),
                Level::Error,
                now,
            );
            return Vec::new();
        }
        "peer.disconnect" => (
            CommandKind::DisconnectPeer,
            Command::DisconnectPeer {
                peer_id: id.clone(),
            },
            format!("disconnect {short}"),
            format!(
                "Disconnect peer {name}?\nIts connections are closed; it may dial \
                 back.{held}"
            ),
        ),
        "peer.ban" if p.banned => {
            ui.say(format!("{name} is already banned"), Level::Error, now);
            return Vec::new();
        }
        "peer.ban" => {
            let unban = ui
                .keymap
                .key_for(Pane::Peers, "peer.unban")
                .map(|k| format!(" (press {k})"))
                .unwrap_or_default();
            (
                CommandKind::BanPeer,
                Command::BanPeer {
                    peer_id: id.clone(),
                },
                format!("ban {short}"),
                format!(
                    "Ban peer {name}?\nIt is disconnected and refused until \
                     unbanned{unban}.{held}"
                ),
            )
        }
        _ if !p.banned => {
            ui.say(format!("{name} is not banned"), Level::Error, now);
            return Vec::new();
        }
        _ => (
            CommandKind::UnbanPeer,
            Command::UnbanPeer {
                peer_id: id.clone(),
            },
            format!("unban {short}"),
            String::new(),
        ),
    };
    gated(ui, kind, cmd, what, body, now)
}

fn cancel_workflow(ui: &mut UiState, snap: &Snapshot, wf: &str, now: Millis) -> Vec<Effect> {
    let rows: Vec<&QueueRow> = snap.queue.iter().filter(|r| r.workflow_id == wf).collect();
    let running = rows
        .iter()
        .filter(|r| r.state == TaskState::Running)
        .count();
    let queued = rows.iter().filter(|r| r.state == TaskState::Queued).count();
    let name = rows
        .first()
        .map(|r| r.workflow_name.clone())
        .unwrap_or_default();
    gated(
        ui,
        CommandKind::CancelWorkflow,
        Command::CancelWorkflow {
            workflow_id: wf.to_string(),
        },
        format!("cancel {wf}"),
        format!(
            "Cancel workflow {name} ({wf})?\n{queued} queued task(s) will be dropped and \
             {running} running task(s) killed."
        ),
        now,
    )
}

fn on_normal_key(ui: &mut UiState, k: KeyEvent, snap: &Snapshot, now: Millis) -> Vec<Effect> {
    let key = key_of(&k);
    let Some(run) = ui.keymap.resolve(ui.focus, &key) else {
        return Vec::new();
    };
    let n = row_count(ui, snap, ui.focus);
    let sel = &mut ui.selected[ui.focus.index()];
    let page = ui.page.max(1);
    match run {
        "app.quit" => return vec![Effect::Quit],
        "app.help" => ui.mode = Mode::Help(0),
        "app.command" => ui.mode = Mode::Command(String::new()),
        "app.filter" => {
            ui.mode = Mode::Filter(
                ui.filter(ui.focus)
                    .map(|f| f.text.clone())
                    .unwrap_or_default(),
            )
        }
        "filter.clear" => ui.filters[ui.focus.index()] = None,
        "focus.next" => focus(ui, Pane::ALL[(ui.focus.index() + 1) % 6]),
        "focus.prev" => focus(ui, Pane::ALL[(ui.focus.index() + 5) % 6]),
        "focus.peers" => focus(ui, Pane::Peers),
        "focus.queue" => focus(ui, Pane::Queue),
        "focus.runners" => focus(ui, Pane::Runners),
        "focus.vms" => focus(ui, Pane::Vms),
        "focus.issues" => focus(ui, Pane::Issues),
        "focus.logs" => focus(ui, Pane::Logs),
        "pane.zoom" => ui.zoom = !ui.zoom,
        "cursor.down" if ui.focus == Pane::Logs => ui.logs.transition(TuiWidgetEvent::NextPageKey),
        "cursor.up" if ui.focus == Pane::Logs => {
            ui.logs_following = false;
            ui.logs.transition(TuiWidgetEvent::PrevPageKey)
        }
        "cursor.down" => *sel = (*sel + 1).min(n.saturating_sub(1)),
        "cursor.up" => *sel = sel.saturating_sub(1),
        "cursor.top" => *sel = 0,
        "cursor.bottom" => *sel = n.saturating_sub(1),
        "cursor.pagedown" => *sel = (*sel + page).min(n.saturating_sub(1)),
        "cursor.pageup" => *sel = sel.saturating_sub(page),
        "logs.page_up" => {
            ui.logs_following = false;
            ui.logs.transition(TuiWidgetEvent::PrevPageKey)
        }
        "logs.page_down" => ui.logs.transition(TuiWidgetEvent::NextPageKey),
        "logs.follow" => {
            ui.logs_following = true;
            ui.logs.transition(TuiWidgetEvent::EscapeKey)
        }
        "workflow.submit" => {
            if ui.policy.permits(CommandKind::SubmitWorkflow) {
                ui.mode = Mode::Command("submit ".into());
            } else {
                ui.say(
                    "submit: refused, flotilla runs read-only",
                    Level::Error,
                    now,
                );
            }
        }
        "workflow.cancel" => match selected_queue_row(ui, snap) {
            Some(r) => {
                let wf = r.workflow_id.clone();
                return cancel_workflow(ui, snap, &wf, now);
            }
            None => ui.say("no task selected", Level::Error, now),
        },
        "task.raise" | "task.lower" => match selected_queue_row(ui, snap) {
            Some(r) if r.state == TaskState::Queued && r.waiting_for.is_none() => {
                let p = if run == "task.raise" {
                    r.priority.saturating_sub(PRIORITY_STEP)
                } else {
                    (r.priority + PRIORITY_STEP).min(MAX_PRIORITY)
                };
                let tid = r.task_id.clone();
                return gated(
                    ui,
                    CommandKind::SetTaskPriority,
                    Command::SetTaskPriority {
                        task_id: tid.clone(),
                        priority: p,
                    },
                    format!("priority of {tid}"),
                    String::new(),
                    now,
                );
            }
            Some(r) => ui.say(
                format!(
                    "{} is {}: only waiting tasks can be reprioritised",
                    r.task_id,
                    r.state.as_str()
                ),
                Level::Error,
                now,
            ),
            None => ui.say("no task selected", Level::Error, now),
        },
        "peer.disconnect" | "peer.ban" | "peer.unban" => {
            return peer_action(ui, snap, run, now);
        }
        "mesh.rebalance" => return rebalance(ui, PlaceBy::Load, now),
        "task.output" => match selected_queue_row(ui, snap) {
            Some(r) => return vec![Effect::LoadOutput(r.task_id.clone())],
            None => ui.say("no task selected", Level::Error, now),
        },
        "vm.provision" => {
            if ui.policy.permits(CommandKind::ProvisionVm) {
                ui.mode = Mode::Provision(ProvisionForm::default());
            } else {
                ui.say(
                    "provision: refused, flotilla runs read-only",
                    Level::Error,
                    now,
                );
            }
        }
        "vm.terminate" => match selected_vm(ui, snap) {
            Some(v) => {
                let (id, body) = (
                    v.vm_id.clone(),
                    format!(
                        "Terminate VM {} ({}) of {}?\nIts machine is stopped and destroyed, and \
                         its billing ends.",
                        v.name, v.vm_id, v.user
                    ),
                );
                return gated(
                    ui,
                    CommandKind::TerminateVm,
                    Command::TerminateVm {
                        vm_id: id.clone(),
                        force: false,
                        dry_run: false,
                    },
                    format!("terminate {id}"),
                    body,
                    now,
                );
            }
            None => ui.say("no VM selected", Level::Error, now),
        },
        "vm.extend" => match selected_vm(ui, snap) {
            Some(v) => {
                let id = v.vm_id.clone();
                return gated(
                    ui,
                    CommandKind::ExtendVmActivity,
                    Command::ExtendVmActivity { vm_id: id.clone() },
                    format!("extend {id}"),
                    String::new(),
                    now,
                );
            }
            None => ui.say("no VM selected", Level::Error, now),
        },
        "runner.provision" => {
            if ui.policy.permits(CommandKind::ProvisionRunner) {
                // The repository and count are typed on the command line.
                ui.mode = Mode::Command("runners-provision ".into());
            } else {
                ui.say(
                    "provision runners: refused, flotilla runs read-only",
                    Level::Error,
                    now,
                );
            }
        }
        "runner.remove" => match selected_runner(ui, snap) {
            Some(r) => {
                let (id, body) = (
                    r.id.clone(),
                    format!(
                        "Remove runner {} ({}, {})?\nIts instance on {} is stopped and it is \
                         unregistered at GitHub. A busy runner is refused: drain it instead.",
                        r.name, r.state, r.scope, r.provider
                    ),
                );
                return gated(
                    ui,
                    CommandKind::RemoveRunner,
                    Command::RemoveRunner {
                        runner_id: id.clone(),
                        dry_run: false,
                    },
                    format!("remove {id}"),
                    body,
                    now,
                );
            }
            None => ui.say("no runner selected", Level::Error, now),
        },
        "runner.drain" => match selected_runner(ui, snap) {
            Some(r) => {
                let id = r.id.clone();
                return gated(
                    ui,
                    CommandKind::DrainRunner,
                    Command::DrainRunner {
                        runner_id: id.clone(),
                    },
                    format!("drain {id}"),
                    String::new(),
                    now,
                );
            }
            None => ui.say("no runner selected", Level::Error, now),
        },
        "autoscaler.pause" => {
            let paused = matches!(&snap.runners, RunnerFeed::On { paused: true, .. });
            return gated(
                ui,
                CommandKind::PauseAutoscaler,
                Command::PauseAutoscaler { paused: !paused },
                if paused {
                    "resume the autoscaler".into()
                } else {
                    "pause the autoscaler".into()
                },
                String::new(),
                now,
            );
        }
        "autoscaler.check" => {
            return gated(
                ui,
                CommandKind::CheckAutoscaler,
                Command::CheckAutoscaler,
                "autoscaler check".into(),
                String::new(),
                now,
            );
        }
        "vm.ssh" => match selected_vm(ui, snap) {
            Some(v) => return vec![Effect::CopySsh(v.vm_id.clone())],
            None => ui.say("no VM selected", Level::Error, now),
        },
        "issue.evidence" => match selected_issue(ui, snap) {
            Some(i) => return vec![Effect::LoadEvidence(i.issue_id.clone())],
            None => ui.say("no issue selected", Level::Error, now),
        },
        "issue.fix" => match selected_issue(ui, snap) {
            Some(i) => {
                let (id, body) = (
                    i.issue_id.clone(),
                    format!(
                        "Apply the fix for {} in {} ({}, run {})?\n{}",
                        i.issue_type, i.repo, i.workflow, i.run_id, i.fix_description
                    ),
                );
                return gated(
                    ui,
                    CommandKind::ApplyFix,
                    Command::ApplyFix {
                        issue_id: id.clone(),
                        dry_run: false,
                    },
                    format!("fix {id}"),
                    body,
                    now,
                );
            }
            None => ui.say("no issue selected", Level::Error, now),
        },
        "issue.ignore" => match selected_issue(ui, snap) {
            Some(i) => {
                let id = i.issue_id.clone();
                return gated(
                    ui,
                    CommandKind::IgnoreIssue,
                    Command::IgnoreIssue {
                        issue_id: id.clone(),
                    },
                    format!("ignore {id}"),
                    String::new(),
                    now,
                );
            }
            None => ui.say("no issue selected", Level::Error, now),
        },
        "issue.copy_url" => match selected_issue(ui, snap).and_then(|i| i.run_url.clone()) {
            Some(url) => return vec![Effect::Copy(url)],
            None => ui.say("no run URL for this issue", Level::Error, now),
        },
        "noop" => {}
        other => {
            let known = action(other).is_some();
            ui.say(
                format!(
                    "{other}: {}",
                    if known {
                        "not available in this pane"
                    } else {
                        "unknown action"
                    }
                ),
                Level::Error,
                now,
            );
        }
    }
    Vec::new()
}

/// `:` commands.
pub const COMMANDS: &str = ":queue :peers :runners :vms :issues :logs :submit FILE :cancel WF_ID \
     :runners-provision OWNER/REPO [N] [LABEL,..] :rebalance [load|latency|proximity] :zoom :help :q";

fn run_command_line(ui: &mut UiState, line: &str, snap: &Snapshot, now: Millis) -> Vec<Effect> {
    let (cmd, arg) = match line.split_once(char::is_whitespace) {
        Some((c, a)) => (c, a.trim()),
        None => (line, ""),
    };
    if let Some(p) = Pane::from_name(cmd) {
        focus(ui, p);
        return Vec::new();
    }
    match cmd {
        "" => Vec::new(),
        "q" | "quit" => vec![Effect::Quit],
        "help" => {
            ui.mode = Mode::Help(0);
            Vec::new()
        }
        "zoom" => {
            ui.zoom = !ui.zoom;
            Vec::new()
        }
        "cache" => {
            ui.mode = Mode::Cache;
            Vec::new()
        }
        "submit" if arg.is_empty() => {
            ui.say(
                "usage: :submit FILE (TOML or JSON workflow)",
                Level::Error,
                now,
            );
            Vec::new()
        }
        "submit" => {
            if !ui.policy.permits(CommandKind::SubmitWorkflow) {
                ui.say(
                    "submit: refused, flotilla runs read-only",
                    Level::Error,
                    now,
                );
                return Vec::new();
            }
            vec![Effect::SubmitFile(PathBuf::from(expand_home(arg)))]
        }
        "cancel" if arg.is_empty() => {
            ui.say("usage: :cancel WORKFLOW_ID", Level::Error, now);
            Vec::new()
        }
        "cancel" => cancel_workflow(ui, snap, arg, now),
        "rebalance" => match (if arg.is_empty() { "load" } else { arg }).parse::<PlaceBy>() {
            Ok(strategy) => {
                focus(ui, Pane::Peers);
                rebalance(ui, strategy, now)
            }
            Err(e) => {
                ui.say(
                    format!("usage: :rebalance [load|latency|proximity]: {e}"),
                    Level::Error,
                    now,
                );
                Vec::new()
            }
        },
        "runners-provision" => {
            let words: Vec<&str> = arg.split_whitespace().collect();
            let Some(repo) = words.first().filter(|r| r.contains('/')) else {
                ui.say(
                    "usage: :runners-provision OWNER/REPO [N] [LABEL,...]",
                    Level::Error,
                    now,
                );
                return Vec::new();
            };
            let count = match words.get(1).map(|n| n.parse::<u32>()) {
                None => 1,
                Some(Ok(n)) if (1..=100).contains(&n) => n,
                _ => {
                    ui.say("N must be a number 1..=100", Level::Error, now);
                    return Vec::new();
                }
            };
            let labels = words
                .get(2)
                .map(|l| {
                    l.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            focus(ui, Pane::Runners);
            gated(
                ui,
                CommandKind::ProvisionRunner,
                Command::ProvisionRunner {
                    repo: repo.to_string(),
                    labels,
                    count,
                },
                format!("provision {count} runner(s) for {repo}"),
                String::new(),
                now,
            )
        }
        "provision" => {
            let words: Vec<&str> = arg.split_whitespace().collect();
            let Some(user) = words.first() else {
                ui.say(
                    "usage: :provision USER [CPU_TYPE] [MEMORY_MB] [REGION]",
                    Level::Error,
                    now,
                );
                return Vec::new();
            };
            let memory_mb = match words.get(2).map(|m| m.parse::<u32>()) {
                None => None,
                Some(Ok(m)) => Some(m),
                Some(Err(_)) => {
                    ui.say(
                        format!("memory {:?} is not a number of MB", words[2]),
                        Level::Error,
                        now,
                    );
                    return Vec::new();
                }
            };
            focus(ui, Pane::Vms);
            gated(
                ui,
                CommandKind::ProvisionVm,
                Command::ProvisionVm {
                    user: user.to_string(),
                    session: None,
                    cpu_type: words.get(1).map(|s| s.to_string()),
                    memory_mb,
                    region: words.get(3).map(|s| s.to_string()),
                },
                format!("provision for {user}"),
                String::new(),
                now,
            )
        }
        _ => {
            ui.say(
                format!("unknown command :{cmd}; try {COMMANDS}"),
                Level::Error,
                now,
            );
            Vec::new()
        }
    }
}

fn expand_home(p: &str) -> String {
    match (p.strip_prefix("~/"), std::env::var("HOME")) {
        (Some(rest), Ok(home)) => format!("{home}/{rest}"),
        _ => p.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::snapshot::QueueRow;
    use crate::sched::workflow::WorkflowTag;

    fn key(s: &str) -> Action {
        let k = match s {
            "<Enter>" => KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE),
            "<Esc>" => KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE),
            "<Tab>" => KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE),
            "<C-d>" => KeyEvent::new(KeyCode::Char('d'), KeyModifiers::CONTROL),
            c => {
                let ch = c.chars().next().unwrap();
                let m = if ch.is_ascii_uppercase() {
                    KeyModifiers::SHIFT
                } else {
                    KeyModifiers::NONE
                };
                KeyEvent::new(KeyCode::Char(ch), m)
            }
        };
        Action::Key(k)
    }

    fn typed(ui: &mut UiState, snap: &Snapshot, s: &str) -> Vec<Effect> {
        let mut out = Vec::new();
        for c in s.chars() {
            out.extend(update(ui, key(&c.to_string()), snap, 0));
        }
        out
    }

    fn row(wf: &str, i: u32, state: TaskState) -> QueueRow {
        QueueRow {
            task_id: format!("{wf}.{i}"),
            workflow_id: wf.into(),
            workflow_name: format!("name-{wf}"),
            tag: WorkflowTag::UnitTest,
            index: i,
            state,
            priority: 100,
            effective_priority: 100.0,
            enqueued_at: 0,
            started_at: None,
            finished_at: None,
            owner: None,
            waiting_for: None,
            exit_code: None,
            retried: 0,
            command: "echo hi".into(),
        }
    }

    fn setup(read_only: bool) -> (UiState, Snapshot) {
        let (km, _) = Keymap::load(None);
        let ui = UiState::new(km, Policy { read_only });
        let snap = Snapshot {
            queue: vec![
                row("wf-a", 0, TaskState::Running),
                row("wf-a", 1, TaskState::Queued),
                row("wf-b", 0, TaskState::Queued),
            ],
            ..Snapshot::default()
        };
        (ui, snap)
    }

    #[test]
    fn focus_moves_with_tab_and_numbers() {
        let (mut ui, snap) = setup(false);
        update(&mut ui, key("<Tab>"), &snap, 0);
        assert_eq!(ui.focus, Pane::Runners);
        update(&mut ui, key("6"), &snap, 0);
        assert_eq!(ui.focus, Pane::Logs);
        update(&mut ui, key("z"), &snap, 0);
        assert!(ui.zoom);
    }

    #[test]
    fn cancel_needs_confirmation_then_executes_confirmed() {
        let (mut ui, snap) = setup(false);
        assert!(update(&mut ui, key("<C-d>"), &snap, 0).is_empty());
        let Mode::Confirm(c) = &ui.mode else {
            panic!("no dialog")
        };
        assert!(c.body.contains("1 running task(s) killed"), "{}", c.body);
        let eff = update(&mut ui, key("y"), &snap, 0);
        assert!(matches!(
            &eff[..],
            [Effect::Execute { cmd: Command::CancelWorkflow { workflow_id }, confirmed: true, .. }]
                if workflow_id == "wf-a"
        ));
        // 'n' declines and nothing runs.
        update(&mut ui, key("<C-d>"), &snap, 0);
        assert!(update(&mut ui, key("n"), &snap, 0).is_empty());
        assert!(matches!(ui.mode, Mode::Normal));
    }

    #[test]
    fn read_only_refuses_without_dialog() {
        let (mut ui, snap) = setup(true);
        assert!(update(&mut ui, key("<C-d>"), &snap, 0).is_empty());
        assert!(matches!(ui.mode, Mode::Normal));
        assert!(ui.status.as_ref().unwrap().0.contains("read-only"));
        ui.selected[1] = 1;
        assert!(update(&mut ui, key("+"), &snap, 0).is_empty());
    }

    #[test]
    fn raise_only_for_queued_rows() {
        let (mut ui, snap) = setup(false);
        assert!(update(&mut ui, key("+"), &snap, 0).is_empty());
        assert!(ui.status.as_ref().unwrap().0.contains("only waiting"));
        update(&mut ui, key("j"), &snap, 0);
        let eff = update(&mut ui, key("+"), &snap, 0);
        assert!(matches!(
            &eff[..],
            [Effect::Execute {
                cmd: Command::SetTaskPriority { priority: 90, .. },
                confirmed: false,
                ..
            }]
        ));
    }

    #[test]
    fn command_mode_submit_and_unknown() {
        let (mut ui, snap) = setup(false);
        update(&mut ui, key(":"), &snap, 0);
        let eff = typed(&mut ui, &snap, "submit /tmp/w.toml");
        assert!(eff.is_empty());
        let eff = update(&mut ui, key("<Enter>"), &snap, 0);
        assert!(matches!(&eff[..], [Effect::SubmitFile(p)] if p == &PathBuf::from("/tmp/w.toml")));
        update(&mut ui, key(":"), &snap, 0);
        typed(&mut ui, &snap, "bogus");
        update(&mut ui, key("<Enter>"), &snap, 0);
        assert!(
            ui.status
                .as_ref()
                .unwrap()
                .0
                .contains("unknown command :bogus")
        );
        update(&mut ui, key(":"), &snap, 0);
        typed(&mut ui, &snap, "vms");
        update(&mut ui, key("<Enter>"), &snap, 0);
        assert_eq!(ui.focus, Pane::Vms);
    }

    #[test]
    fn filter_regex_and_inversion() {
        let (mut ui, snap) = setup(false);
        update(&mut ui, key("/"), &snap, 0);
        typed(&mut ui, &snap, "wf-b");
        update(&mut ui, key("<Enter>"), &snap, 0);
        assert_eq!(queue_rows(&ui, &snap).len(), 1);
        update(&mut ui, key("/"), &snap, 0);
        let Mode::Filter(s) = &ui.mode else { panic!() };
        assert_eq!(s, "wf-b");
        update(&mut ui, Action::Paste("".into()), &snap, 0);
        // Replace with an inverted filter.
        for _ in 0..4 {
            update(
                &mut ui,
                Action::Key(KeyEvent::new(KeyCode::Backspace, KeyModifiers::NONE)),
                &snap,
                0,
            );
        }
        typed(&mut ui, &snap, "!wf-b");
        update(&mut ui, key("<Enter>"), &snap, 0);
        assert_eq!(queue_rows(&ui, &snap).len(), 2);
        // A bad regex keeps the editor open with an error.
        update(&mut ui, key("/"), &snap, 0);
        typed(&mut ui, &snap, "(");
        update(&mut ui, key("<Enter>"), &snap, 0);
        assert!(matches!(ui.mode, Mode::Filter(_)));
        update(&mut ui, key("<Esc>"), &snap, 0);
        update(&mut ui, key("<Esc>"), &snap, 0);
        assert_eq!(queue_rows(&ui, &snap).len(), 3);
    }

    #[test]
    fn help_opens_and_closes_and_quit_quits() {
        let (mut ui, snap) = setup(false);
        update(&mut ui, key("?"), &snap, 0);
        assert!(matches!(ui.mode, Mode::Help(0)));
        update(&mut ui, key("<Esc>"), &snap, 0);
        assert!(matches!(ui.mode, Mode::Normal));
        assert!(matches!(
            &update(&mut ui, key("q"), &snap, 0)[..],
            [Effect::Quit]
        ));
    }

    #[test]
    fn selection_clamps_when_rows_vanish() {
        let (mut ui, mut snap) = setup(false);
        update(&mut ui, key("G"), &snap, 0);
        assert_eq!(ui.selected[1], 2);
        snap.queue.truncate(1);
        update(&mut ui, Action::Paste(String::new()), &snap, 0);
        assert_eq!(ui.selected[1], 0);
    }

    #[test]
    fn provision_form_fills_and_submits() {
        let (mut ui, snap) = setup(false);
        update(&mut ui, key("4"), &snap, 0);
        update(&mut ui, key("n"), &snap, 0);
        assert!(matches!(ui.mode, Mode::Provision(_)));
        // Enter with no user is refused inside the form.
        assert!(update(&mut ui, key("<Enter>"), &snap, 0).is_empty());
        let Mode::Provision(f) = &ui.mode else {
            panic!()
        };
        assert_eq!(f.error.as_deref(), Some("user is required"));
        typed(&mut ui, &snap, "alice");
        update(&mut ui, key("<Tab>"), &snap, 0);
        update(&mut ui, key("<Tab>"), &snap, 0);
        typed(&mut ui, &snap, "2048");
        update(&mut ui, key("<Tab>"), &snap, 0);
        typed(&mut ui, &snap, "ord");
        let eff = update(&mut ui, key("<Enter>"), &snap, 0);
        assert!(
            matches!(
                &eff[..],
                [Effect::Execute { cmd: Command::ProvisionVm { user, cpu_type: None, memory_mb: Some(2048), region: Some(r), .. }, confirmed: false, .. }]
                    if user == "alice" && r == "ord"
            ),
            "{eff:?}"
        );
        // Read-only: the form never opens.
        let (mut ro, snap) = setup(true);
        update(&mut ro, key("4"), &snap, 0);
        update(&mut ro, key("n"), &snap, 0);
        assert!(matches!(ro.mode, Mode::Normal));
    }

    const GPU: &str = "12D3KooWRBhwfeP2Y4TCx1SM6s9rUoHhR5STiGwxBhgFRcw3UERE";
    const OLD: &str = "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq";

    fn peer(id: &str, connected: bool, banned: bool) -> PeerRow {
        PeerRow {
            peer_id: id.into(),
            addrs: vec!["/ip4/10.0.0.7/tcp/9100".into()],
            agent: Some("flotilla/0.1.0 (gpu-02)".into()),
            rtt_ms: connected.then_some(0.8),
            connected,
            last_seen_ms: 0,
            score: None,
            banned,
            sched: None,
        }
    }

    fn on_peers(read_only: bool) -> (UiState, Snapshot) {
        let (mut ui, mut snap) = setup(read_only);
        snap.peers = vec![peer(GPU, true, false), peer(OLD, false, true)];
        update(&mut ui, key("1"), &snap, 0);
        assert_eq!(ui.focus, Pane::Peers);
        (ui, snap)
    }

    #[test]
    fn peer_disconnect_and_ban_confirm_then_execute() {
        let (mut ui, snap) = on_peers(false);
        for (k, what) in [("d", "disconnect …w3UERE"), ("b", "ban …w3UERE")] {
            assert!(update(&mut ui, key(k), &snap, 0).is_empty(), "{k}");
            let Mode::Confirm(c) = &ui.mode else {
                panic!("{k}: no dialog")
            };
            assert_eq!(c.title, what);
            assert!(c.body.contains("gpu-02 (…w3UERE)"), "{}", c.body);
            let eff = update(&mut ui, key("y"), &snap, 0);
            let [
                Effect::Execute {
                    cmd,
                    confirmed: true,
                    what: w,
                },
            ] = &eff[..]
            else {
                panic!("{k}: {eff:?}")
            };
            assert_eq!(w, what);
            match (k, cmd) {
                ("d", Command::DisconnectPeer { peer_id })
                | ("b", Command::BanPeer { peer_id }) => {
                    assert_eq!(peer_id, GPU)
                }
                _ => panic!("{k}: {cmd:?}"),
            }
        }
        // 'n' declines and nothing runs.
        update(&mut ui, key("b"), &snap, 0);
        assert!(update(&mut ui, key("n"), &snap, 0).is_empty());
        assert!(matches!(ui.mode, Mode::Normal));
    }

    #[test]
    fn peer_actions_follow_the_peer_state() {
        let (mut ui, snap) = on_peers(false);
        // A connected, unbanned peer cannot be unbanned.
        assert!(update(&mut ui, key("u"), &snap, 0).is_empty());
        assert!(ui.status.as_ref().unwrap().0.contains("not banned"));
        // The banned one: unban runs at once (not destructive), ban and disconnect refuse.
        update(&mut ui, key("j"), &snap, 0);
        let eff = update(&mut ui, key("u"), &snap, 0);
        assert!(
            matches!(
                &eff[..],
                [Effect::Execute { cmd: Command::UnbanPeer { peer_id }, confirmed: false, .. }]
                    if peer_id == OLD
            ),
            "{eff:?}"
        );
        assert!(update(&mut ui, key("b"), &snap, 0).is_empty());
        assert!(ui.status.as_ref().unwrap().0.contains("already banned"));
        assert!(update(&mut ui, key("d"), &snap, 0).is_empty());
        assert!(
            ui.status
                .as_ref()
                .unwrap()
                .0
                .contains("nothing to disconnect")
        );
        assert!(matches!(ui.mode, Mode::Normal));
        // No peers at all.
        let (mut ui, mut snap) = on_peers(false);
        snap.peers.clear();
        assert!(update(&mut ui, key("d"), &snap, 0).is_empty());
        assert!(ui.status.as_ref().unwrap().0.contains("no peer selected"));
    }

    #[test]
    fn rebalance_by_key_and_command_line() {
        let (mut ui, snap) = on_peers(false);
        let eff = update(&mut ui, key("r"), &snap, 0);
        assert!(
            matches!(
                &eff[..],
                [Effect::Execute {
                    cmd: Command::RebalanceP2p {
                        strategy: PlaceBy::Load
                    },
                    confirmed: false,
                    ..
                }]
            ),
            "{eff:?}"
        );
        for (line, want) in [
            ("rebalance", PlaceBy::Load),
            ("rebalance latency", PlaceBy::Latency),
            ("rebalance proximity", PlaceBy::Proximity),
        ] {
            update(&mut ui, key("2"), &snap, 0);
            update(&mut ui, key(":"), &snap, 0);
            typed(&mut ui, &snap, line);
            let eff = update(&mut ui, key("<Enter>"), &snap, 0);
            assert!(
                matches!(&eff[..], [Effect::Execute { cmd: Command::RebalanceP2p { strategy }, .. }] if *strategy == want),
                "{line}: {eff:?}"
            );
            assert_eq!(ui.focus, Pane::Peers);
        }
        update(&mut ui, key(":"), &snap, 0);
        typed(&mut ui, &snap, "rebalance fastest");
        assert!(update(&mut ui, key("<Enter>"), &snap, 0).is_empty());
        assert!(ui.status.as_ref().unwrap().0.contains("usage: :rebalance"));
    }

    #[test]
    fn read_only_refuses_peer_actions() {
        let (mut ui, snap) = on_peers(true);
        for k in ["d", "b", "r"] {
            assert!(update(&mut ui, key(k), &snap, 0).is_empty(), "{k}");
            assert!(matches!(ui.mode, Mode::Normal), "{k}");
            assert!(ui.status.as_ref().unwrap().0.contains("read-only"), "{k}");
        }
        update(&mut ui, key("j"), &snap, 0);
        assert!(update(&mut ui, key("u"), &snap, 0).is_empty());
        assert!(ui.status.as_ref().unwrap().0.contains("read-only"));
        update(&mut ui, key(":"), &snap, 0);
        typed(&mut ui, &snap, "rebalance");
        assert!(update(&mut ui, key("<Enter>"), &snap, 0).is_empty());
        assert!(ui.status.as_ref().unwrap().0.contains("read-only"));
    }

    #[test]
    fn peer_and_rebalance_replies_in_the_footer() {
        use crate::engine::command::{Done as Did, Rebalanced, TaskMove};
        let (mut ui, snap) = on_peers(false);
        let done = |what: &str, reply: Reply| {
            Action::Done(Done::Executed {
                what: what.into(),
                result: Ok(Box::new(reply)),
            })
        };
        update(
            &mut ui,
            done(
                "disconnect …w3UERE",
                Reply::Done(Did {
                    message: format!("disconnected {GPU} (it may reconnect)"),
                }),
            ),
            &snap,
            0,
        );
        assert_eq!(
            ui.status.as_ref().unwrap().0,
            "disconnect …w3UERE: disconnected …w3UERE (it may reconnect)"
        );
        update(
            &mut ui,
            done(
                "rebalance by load",
                Reply::Rebalanced(Rebalanced {
                    strategy: PlaceBy::Load,
                    moved: vec![TaskMove {
                        task_id: "wf-a.1".into(),
                        from: OLD.into(),
                        to: GPU.into(),
                    }],
                }),
            ),
            &snap,
            0,
        );
        assert_eq!(
            ui.status.as_ref().unwrap().0,
            "rebalance by load: moved 1 task(s): wf-a.1 → …w3UERE"
        );
        update(
            &mut ui,
            done(
                "rebalance by load",
                Reply::Rebalanced(Rebalanced {
                    strategy: PlaceBy::Load,
                    moved: vec![],
                }),
            ),
            &snap,
            0,
        );
        assert!(ui.status.as_ref().unwrap().0.contains("already balanced"));
    }

    #[test]
    fn peers_filter_and_cursor() {
        let (mut ui, snap) = on_peers(false);
        assert_eq!(row_count(&ui, &snap, Pane::Peers), 2);
        update(&mut ui, key("G"), &snap, 0);
        assert_eq!(ui.selected[Pane::Peers.index()], 1);
        update(&mut ui, key("/"), &snap, 0);
        typed(&mut ui, &snap, "banned");
        update(&mut ui, key("<Enter>"), &snap, 0);
        let rows = peer_rows(&ui, &snap);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].peer_id, OLD);
        assert_eq!(ui.selected[Pane::Peers.index()], 0);
    }

    #[test]
    fn peer_ids_shorten_like_the_engine() {
        assert_eq!(short_peer(GPU), "…w3UERE");
        assert_eq!(short_peer("build-01"), "build-01");
        assert_eq!(
            shorten_peer_ids(&format!("{OLD} was not connected; {GPU}: ok")),
            "…2NASuq was not connected; …w3UERE: ok"
        );
        assert!(!looks_like_peer_id("build-01"));
    }

    #[test]
    fn output_effect_and_view() {
        let (mut ui, snap) = setup(false);
        let eff = update(&mut ui, key("o"), &snap, 0);
        assert!(matches!(&eff[..], [Effect::LoadOutput(t)] if t == "wf-a.0"));
        update(
            &mut ui,
            Action::Done(Done::Output(Ok(TaskOutput {
                task_id: "wf-a.0".into(),
                state: TaskState::Running,
                output: "hello".into(),
                truncated: false,
            }))),
            &snap,
            0,
        );
        assert!(matches!(ui.mode, Mode::Output(_)));
        update(&mut ui, key("q"), &snap, 0);
        assert!(matches!(ui.mode, Mode::Normal));
    }
}
