//! Drawing: `render(&UiState, &Snapshot, now, &mut Frame)`, pure given its inputs (the Logs
//! pane reads tui-logger's buffer). Works down to 80x24.

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{
    Block, BorderType, Borders, Cell, Clear, Paragraph, Row, Table, TableState, Wrap,
};
use tui_logger::{TuiLoggerLevelOutput, TuiLoggerWidget};

use super::app::{
    COMMANDS, Level, Mode, STATUS_TTL_MS, UiState, issue_rows, looks_like_peer_id, peer_name,
    peer_rows, peer_state, queue_rows, runner_rows, short_peer, vm_rows,
};
use super::keymap::Pane;
use crate::clock::{Millis, compact_duration};
use crate::compute::costs::format_usd;
use crate::engine::Snapshot;
use crate::engine::mesh::PeerRow;
use crate::engine::snapshot::{IssueFeed, OffFeed, QueueRow, RunnerFeed, VmFeed};
use crate::sched::workflow::TaskState;

const ACCENT: Color = Color::Cyan;

/// Draw the whole screen.
pub fn render(ui: &mut UiState, snap: &Snapshot, now: Millis, f: &mut Frame) {
    let area = f.area();
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(area);
    render_header(snap, f, header);
    if ui.zoom {
        render_pane(ui, snap, now, ui.focus, f, body);
    } else {
        let h = body.height;
        let top_h = (h / 4).max(5);
        let logs_h = (h * 3 / 10).max(5);
        let [top, middle, bottom] = Layout::vertical([
            Constraint::Length(top_h),
            Constraint::Fill(1),
            Constraint::Length(logs_h),
        ])
        .areas(body);
        let [peers, runners, vms] = Layout::horizontal([
            Constraint::Percentage(40),
            Constraint::Percentage(30),
            Constraint::Percentage(30),
        ])
        .areas(top);
        let [queue, issues] =
            Layout::horizontal([Constraint::Percentage(65), Constraint::Percentage(35)])
                .areas(middle);
        render_pane(ui, snap, now, Pane::Peers, f, peers);
        render_pane(ui, snap, now, Pane::Runners, f, runners);
        render_pane(ui, snap, now, Pane::Vms, f, vms);
        render_pane(ui, snap, now, Pane::Queue, f, queue);
        render_pane(ui, snap, now, Pane::Issues, f, issues);
        render_pane(ui, snap, now, Pane::Logs, f, bottom);
    }
    render_footer(ui, now, f, footer);
    match &ui.mode {
        Mode::Help(scroll) => render_help(ui, *scroll, f, area),
        Mode::Confirm(c) => render_confirm(&c.title, &c.body, f, area),
        Mode::Output(v) => render_output(v, f, area),
        Mode::Cache => render_cache(snap, f, area),
        Mode::Provision(form) => render_provision(form, f, area),
        _ => {}
    }
}

fn render_header(snap: &Snapshot, f: &mut Frame, area: Rect) {
    let n = &snap.node;
    let waiting = snap
        .queue
        .iter()
        .filter(|r| r.state == TaskState::Queued)
        .count();
    let wf = |k: &str| snap.counts.workflows.get(k).copied().unwrap_or(0);
    let mut spans = vec![
        Span::styled(
            " flotilla ",
            Style::new().fg(Color::Black).bg(ACCENT).bold(),
        ),
        Span::raw(format!(" node {} ", n.name)),
        Span::styled("| ", Style::new().dark_gray()),
        Span::raw(format!(
            "peer {} ",
            n.peer_id
                .as_deref()
                .map(short_peer)
                .as_deref()
                .unwrap_or("-")
        )),
        Span::styled("| ", Style::new().dark_gray()),
        Span::raw(format!(
            "tasks {}/{} run, {waiting} wait ",
            n.running, n.max_tasks
        )),
        Span::styled("| ", Style::new().dark_gray()),
        Span::raw(format!(
            "wf {} ok {} failed ",
            wf("completed"),
            wf("failed")
        )),
    ];
    if let VmFeed::On {
        month_centicents, ..
    } = &snap.vms
    {
        spans.push(Span::styled("| ", Style::new().dark_gray()));
        spans.push(Span::raw(format!(
            "vms {} this month ",
            format_usd(*month_centicents)
        )));
    }
    if let Some(gh) = &snap.github {
        spans.push(Span::styled("| ", Style::new().dark_gray()));
        let rate = match &gh.rate {
            Some(r) => format!("{}/{} until {}", r.remaining, r.limit, &r.reset_at[11..16]),
            None => "-".into(),
        };
        spans.push(Span::raw(format!(
            "gh {rate} cache {:.0}% ",
            gh.cache.hit_rate * 100.0
        )));
    }
    if let Some(l) = n.load_avg {
        spans.push(Span::styled("| ", Style::new().dark_gray()));
        spans.push(Span::raw(format!("load {l:.2} ")));
    }
    if n.read_only {
        spans.push(Span::styled(
            " READ-ONLY ",
            Style::new().fg(Color::Black).bg(Color::Yellow).bold(),
        ));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn pane_block<'a>(ui: &UiState, pane: Pane, extra: String) -> Block<'a> {
    let focused = ui.focus == pane;
    let mut title = format!(" {} {} ", pane.index() + 1, pane.title());
    if !extra.is_empty() {
        title.push_str(&extra);
        title.push(' ');
    }
    if let Some(flt) = ui.filter(pane) {
        title.push_str(&format!("/{}/ ", flt.text));
    }
    let b = Block::default()
        .borders(Borders::ALL)
        .title(title)
        .border_type(if focused {
            BorderType::Thick
        } else {
            BorderType::Plain
        });
    if focused {
        b.border_style(Style::new().fg(ACCENT))
            .title_style(Style::new().fg(ACCENT).bold())
    } else {
        b.border_style(Style::new().dark_gray())
    }
}

fn render_pane(
    ui: &mut UiState,
    snap: &Snapshot,
    now: Millis,
    pane: Pane,
    f: &mut Frame,
    area: Rect,
) {
    if ui.focus == pane {
        ui.page = area.height.saturating_sub(3).max(1) as usize;
    }
    match pane {
        Pane::Peers => render_peers(ui, snap, now, f, area),
        Pane::Queue => render_queue(ui, snap, now, f, area),
        Pane::Runners => match &snap.runners {
            RunnerFeed::Off(off) => render_off(ui, pane, off, f, area),
            RunnerFeed::On { .. } => render_runners(ui, snap, now, f, area),
        },
        Pane::Vms => match &snap.vms {
            VmFeed::Off(off) => render_off(ui, pane, off, f, area),
            VmFeed::On { .. } => render_vms(ui, snap, now, f, area),
        },
        Pane::Issues => match &snap.issues {
            IssueFeed::Off(off) => render_off(ui, pane, off, f, area),
            IssueFeed::On(_) => render_issues(ui, snap, now, f, area),
        },
        Pane::Logs => render_logs(ui, f, area),
    }
}

fn render_off(ui: &UiState, pane: Pane, feed: &OffFeed, f: &mut Frame, area: Rect) {
    let text = Text::from(vec![
        Line::from(Span::styled("Nothing here yet.", Style::new().bold())),
        Line::from(format!("Fed by {}.", feed.feeds_from)),
        Line::from(Span::styled(
            format!("To turn on: {}.", feed.enable),
            Style::new().dark_gray(),
        )),
    ]);
    f.render_widget(
        Paragraph::new(text)
            .wrap(Wrap { trim: true })
            .block(pane_block(ui, pane, String::new())),
        area,
    );
}

/// One column of the Peers pane: header, cells (this node's row first), rank (lower ranks are
/// kept longer as the pane narrows) and, for a column that takes the room left over, the width
/// below which it is dropped rather than squeezed.
struct Col {
    header: &'static str,
    cells: Vec<String>,
    rank: u8,
    fill_min: Option<u16>,
}

impl Col {
    fn natural(&self) -> u16 {
        self.cells
            .iter()
            .map(|c| c.chars().count())
            .chain(std::iter::once(self.header.len()))
            .max()
            .unwrap_or(0)
            .min(u16::MAX as usize) as u16
    }
}

/// Which columns fit in `width` (one space between columns) and how wide each is, in display
/// order: columns are taken by rank while they fit, each fixed column at its widest cell and
/// each fill column at its minimum; the room left widens fill columns, by rank, up to their
/// widest cell.
fn fit_columns(cols: &[Col], width: u16) -> Vec<(usize, u16)> {
    let mut order: Vec<usize> = (0..cols.len()).collect();
    order.sort_by_key(|&i| cols[i].rank);
    let mut widths: Vec<Option<u16>> = vec![None; cols.len()];
    let mut used: u16 = 0;
    for &i in &order {
        let natural = cols[i].natural();
        let need = cols[i].fill_min.map_or(natural, |m| m.min(natural));
        let sep = u16::from(used > 0);
        if used + sep + need <= width {
            used += sep + need;
            widths[i] = Some(need);
        }
    }
    let mut left = width - used;
    for &i in &order {
        if let (Some(w), Some(_)) = (widths[i].as_mut(), cols[i].fill_min) {
            let grow = cols[i].natural().saturating_sub(*w).min(left);
            *w += grow;
            left -= grow;
        }
    }
    widths
        .into_iter()
        .enumerate()
        .filter_map(|(i, w)| w.map(|w| (i, w)))
        .collect()
}

fn render_peers(ui: &UiState, snap: &Snapshot, now: Millis, f: &mut Frame, area: Rect) {
    let n = &snap.node;
    let peers = peer_rows(ui, snap);
    let inner = area.width.saturating_sub(2);
    // Below 60 columns the states shrink to one word each so the RTT and heartbeat fit.
    let compact = inner < 60;
    let state_word = |p: &PeerRow| match (peer_state(p), compact) {
        ("connected", true) => "up",
        ("disconnected", true) => "down",
        (s, _) => s,
    };
    let me = n.peer_id.as_deref();
    let mine = |r: &&QueueRow| r.owner.is_some() && r.owner.as_deref() == me;
    let queued_here = snap
        .queue
        .iter()
        .filter(|r| {
            r.state == TaskState::Queued
                && r.owner
                    .as_deref()
                    .is_none_or(|o| Some(o) == me || o == n.name)
        })
        .count();
    let held_here = snap
        .queue
        .iter()
        .filter(|r| matches!(r.state, TaskState::Queued | TaskState::Running))
        .filter(mine)
        .count();
    let own_addrs = if n.addresses.is_empty() {
        snap.mesh.clone()
    } else {
        // The peer ID has its own column: drop the `/p2p/<peer id>` suffix.
        n.addresses
            .iter()
            .map(|a| a.split("/p2p/").next().unwrap_or(a))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let dash = || "-".to_string();
    let sched_or = |p: &PeerRow, g: &dyn Fn(&crate::engine::mesh::PeerSched) -> String| {
        p.sched.as_ref().map(g).unwrap_or_else(dash)
    };
    let col = |header, rank, fill_min, own: String, each: &dyn Fn(&PeerRow) -> String| Col {
        header,
        rank,
        fill_min,
        cells: std::iter::once(own)
            .chain(peers.iter().map(|p| each(p)))
            .collect(),
    };
    let cols = [
        col(
            "PEER",
            0,
            None,
            me.map(short_peer).unwrap_or_else(dash),
            &|p| short_peer(&p.peer_id),
        ),
        col("NAME", 5, Some(8), n.name.clone(), &peer_name),
        col(
            "STATE",
            1,
            None,
            if compact { "self" } else { "this node" }.into(),
            &|p| state_word(p).into(),
        ),
        col(
            "LOAD",
            2,
            None,
            format!("{}/{}", n.running, n.max_tasks),
            &|p| sched_or(p, &|s| format!("{}/{}", s.running, s.max)),
        ),
        col("WAIT", 6, None, queued_here.to_string(), &|p| {
            sched_or(p, &|s| s.queued.to_string())
        }),
        col("HELD", 7, None, held_here.to_string(), &|p| {
            sched_or(p, &|s| s.owned.to_string())
        }),
        col("RTT", 3, None, dash(), &|p| {
            p.rtt_ms.map(|r| format!("{r:.1}ms")).unwrap_or_else(dash)
        }),
        col("BEAT", 4, None, dash(), &|p| {
            sched_or(p, &|s| compact_duration(now - s.last_heartbeat_ms))
        }),
        col(
            "CAPABILITIES",
            8,
            Some(10),
            n.capabilities.join(","),
            &|p| sched_or(p, &|s| s.capabilities.join(",")),
        ),
        col("ADDRESSES", 9, Some(14), own_addrs, &|p| p.addrs.join(" ")),
    ];
    let fit = fit_columns(&cols, inner);
    let styles = std::iter::once(Style::new()).chain(peers.iter().map(|p| {
        if p.banned {
            Style::new().fg(Color::Red)
        } else if p.connected {
            Style::new()
        } else {
            Style::new().dark_gray()
        }
    }));
    let rows: Vec<Row> = styles
        .enumerate()
        .map(|(r, style)| {
            Row::new(
                fit.iter()
                    .map(|&(c, _)| Cell::from(cols[c].cells[r].clone())),
            )
            .style(style)
        })
        .collect();
    let header = Row::new(fit.iter().map(|&(c, _)| cols[c].header))
        .style(Style::new().dark_gray().add_modifier(Modifier::BOLD));
    let widths: Vec<Constraint> = fit.iter().map(|&(_, w)| Constraint::Length(w)).collect();
    // This node's row is not selectable: the cursor walks the peers below it.
    let selected = (!peers.is_empty()).then(|| ui.selected[Pane::Peers.index()] + 1);
    let mut state = TableState::default().with_selected(selected);
    let t = Table::new(rows, widths)
        .header(header)
        .row_highlight_style(highlight(ui.focus == Pane::Peers))
        .block(pane_block(
            ui,
            Pane::Peers,
            format!(
                "{} peer(s), mesh {}",
                snap.peers.iter().filter(|p| p.connected).count(),
                snap.mesh.split(':').next().unwrap_or("")
            ),
        ));
    f.render_stateful_widget(t, area, &mut state);
}

fn highlight(focused: bool) -> Style {
    if focused {
        Style::new()
            .bg(Color::DarkGray)
            .add_modifier(Modifier::BOLD)
    } else {
        Style::new()
    }
}

fn state_style(r: &QueueRow) -> Style {
    match r.state {
        TaskState::Running => Style::new().fg(Color::Green),
        TaskState::Queued if r.waiting_for.is_some() => Style::new().fg(Color::Yellow),
        TaskState::Queued => Style::new(),
        TaskState::Succeeded => Style::new().dark_gray(),
        TaskState::Failed | TaskState::TimedOut => Style::new().fg(Color::Red),
        TaskState::Cancelled => Style::new().fg(Color::Magenta),
    }
}

fn note(r: &QueueRow) -> String {
    if let Some(w) = &r.waiting_for {
        return format!("waits for {w}");
    }
    let retried = if r.retried > 0 {
        format!(" (retried {})", r.retried)
    } else {
        String::new()
    };
    match r.state {
        TaskState::Running | TaskState::Queued => format!("{}{retried}", r.command),
        _ => match r.exit_code {
            Some(c) => format!("exit {c}{retried}"),
            None => retried.trim().to_string(),
        },
    }
}

/// Who owns a task, for the Queue pane's OWNER column: this node's name for its own tasks
/// (whether the engine recorded its node name or its peer ID), a peer's short ID for a task
/// another peer holds, `-` before anyone took it.
fn owner_label(owner: Option<&str>, snap: &Snapshot) -> String {
    match owner {
        None => "-".into(),
        Some(o) if o == snap.node.name || snap.node.peer_id.as_deref() == Some(o) => {
            snap.node.name.clone()
        }
        Some(o) if looks_like_peer_id(o) || snap.peers.iter().any(|p| p.peer_id == o) => {
            short_peer(o)
        }
        Some(o) => o.to_string(),
    }
}

fn render_queue(ui: &UiState, snap: &Snapshot, now: Millis, f: &mut Frame, area: Rect) {
    let rows = queue_rows(ui, snap);
    let waiting = rows.iter().filter(|r| r.state == TaskState::Queued).count();
    let running = rows
        .iter()
        .filter(|r| r.state == TaskState::Running)
        .count();
    let extra = format!("{running} running, {waiting} waiting");
    let block = pane_block(ui, Pane::Queue, extra);
    if rows.is_empty() {
        let hint = match ui.keymap.key_for(Pane::Queue, "workflow.submit") {
            Some(k)
                if ui
                    .policy
                    .permits(crate::engine::CommandKind::SubmitWorkflow) =>
            {
                format!(
                    "Queue is empty. Press {k} or type :submit FILE to submit a workflow \
                 (TOML/JSON), or call submit_p2p_workflow over MCP."
                )
            }
            _ => "Queue is empty.".to_string(),
        };
        f.render_widget(
            Paragraph::new(hint).wrap(Wrap { trim: true }).block(block),
            area,
        );
        return;
    }
    let wide = area.width >= 70;
    // Below 100 columns the wide layout drops TAG to leave WORKFLOW and NOTE readable next to
    // OWNER; narrow panes show OWNER instead of WAITED (for a waiting task, the same as AGE).
    let show_tag = area.width >= 100;
    fn drop_tag<T>(mut v: Vec<T>, show_tag: bool) -> Vec<T> {
        if !show_tag {
            v.remove(4);
        }
        v
    }
    let header: Vec<&str> = if wide {
        drop_tag(
            vec![
                "EFF", "PRI", "WORKFLOW", "#", "TAG", "STATE", "AGE", "WAITED", "OWNER", "NOTE",
            ],
            show_tag,
        )
    } else {
        vec!["EFF", "WORKFLOW", "#", "STATE", "AGE", "OWNER"]
    };
    let owners: Vec<String> = rows
        .iter()
        .map(|r| owner_label(r.owner.as_deref(), snap))
        .collect();
    let owner_w = owners
        .iter()
        .map(|o| o.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(5, 12) as u16;
    let body: Vec<Row> = rows
        .iter()
        .zip(owners)
        .map(|(r, owner)| {
            let age = compact_duration(now - r.enqueued_at);
            let waited = match r.started_at {
                Some(s) if r.state != TaskState::Queued => compact_duration(s - r.enqueued_at),
                _ if r.state == TaskState::Queued => compact_duration(now - r.enqueued_at),
                _ => "-".into(),
            };
            let state = if r.waiting_for.is_some() {
                "parked".to_string()
            } else {
                r.state.as_str().to_string()
            };
            let eff = format!("{:.1}", r.effective_priority);
            let cells: Vec<Cell> = if wide {
                drop_tag(
                    vec![
                        Cell::from(eff),
                        Cell::from(r.priority.to_string()),
                        Cell::from(r.workflow_name.clone()),
                        Cell::from(r.index.to_string()),
                        Cell::from(r.tag.as_str()),
                        Cell::from(state),
                        Cell::from(age),
                        Cell::from(waited),
                        Cell::from(owner),
                        Cell::from(note(r)),
                    ],
                    show_tag,
                )
            } else {
                vec![
                    Cell::from(eff),
                    Cell::from(r.workflow_name.clone()),
                    Cell::from(r.index.to_string()),
                    Cell::from(state),
                    Cell::from(age),
                    Cell::from(owner),
                ]
            };
            Row::new(cells).style(state_style(r))
        })
        .collect();
    let widths: Vec<Constraint> = if wide {
        drop_tag(
            vec![
                Constraint::Length(6),
                Constraint::Length(4),
                Constraint::Fill(3),
                Constraint::Length(3),
                Constraint::Length(13),
                Constraint::Length(9),
                Constraint::Length(6),
                Constraint::Length(6),
                Constraint::Length(owner_w),
                Constraint::Fill(2),
            ],
            show_tag,
        )
    } else {
        vec![
            Constraint::Length(6),
            Constraint::Fill(1),
            Constraint::Length(3),
            Constraint::Length(9),
            Constraint::Length(6),
            Constraint::Length(owner_w),
        ]
    };
    let mut state = TableState::default().with_selected(Some(ui.selected[Pane::Queue.index()]));
    let t = Table::new(body, widths)
        .header(Row::new(header).style(Style::new().dark_gray().add_modifier(Modifier::BOLD)))
        .row_highlight_style(highlight(ui.focus == Pane::Queue))
        .block(block);
    f.render_stateful_widget(t, area, &mut state);
}

fn render_vms(ui: &UiState, snap: &Snapshot, now: Millis, f: &mut Frame, area: Rect) {
    let rows = vm_rows(ui, snap);
    let block = pane_block(ui, Pane::Vms, format!("{} live", rows.len()));
    if rows.is_empty() {
        let hint = match ui.keymap.key_for(Pane::Vms, "vm.provision") {
            Some(k) if ui.policy.permits(crate::engine::CommandKind::ProvisionVm) => {
                format!("No VMs. Press {k} or type :provision USER to create one.")
            }
            _ => "No VMs.".to_string(),
        };
        f.render_widget(
            Paragraph::new(hint).wrap(Wrap { trim: true }).block(block),
            area,
        );
        return;
    }
    let wide = area.width >= 70;
    let body: Vec<Row> = rows
        .iter()
        .map(|r| {
            let idle = match (r.status.as_str(), r.auto_shutdown_at) {
                ("running" | "stopped", Some(d)) => compact_duration(d - now),
                _ => "-".into(),
            };
            let style = match r.status.as_str() {
                "running" => Style::new().fg(Color::Green),
                "error" => Style::new().fg(Color::Red),
                "provisioning" => Style::new().fg(Color::Yellow),
                _ => Style::new(),
            };
            let size = format!("{}/{}M", r.cpu_type.replace("-cpu-", " "), r.memory_mb);
            let cells = if wide {
                vec![
                    r.name.clone(),
                    r.user.clone(),
                    r.region.clone(),
                    size,
                    r.status.clone(),
                    idle,
                    format_usd(r.cost_centicents),
                ]
            } else if area.width >= 40 {
                vec![
                    r.user.clone(),
                    r.status.clone(),
                    idle,
                    format_usd(r.cost_centicents),
                ]
            } else {
                vec![r.user.clone(), r.status.clone(), idle]
            };
            Row::new(cells).style(style)
        })
        .collect();
    let (header, widths): (Vec<&str>, Vec<Constraint>) = if wide {
        (
            vec![
                "NAME",
                "USER",
                "REGION",
                "SIZE",
                "STATE",
                "IDLE LEFT",
                "COST",
            ],
            vec![
                Constraint::Fill(2),
                Constraint::Fill(1),
                Constraint::Length(6),
                Constraint::Length(16),
                Constraint::Length(12),
                Constraint::Length(9),
                Constraint::Length(9),
            ],
        )
    } else if area.width >= 40 {
        (
            vec!["USER", "STATE", "IDLE", "COST"],
            vec![
                Constraint::Fill(1),
                Constraint::Length(8),
                Constraint::Length(6),
                Constraint::Length(8),
            ],
        )
    } else {
        (
            vec!["USER", "STATE", "IDLE"],
            vec![
                Constraint::Fill(1),
                Constraint::Length(8),
                Constraint::Length(6),
            ],
        )
    };
    let mut state = TableState::default().with_selected(Some(ui.selected[Pane::Vms.index()]));
    let t = Table::new(body, widths)
        .header(Row::new(header).style(Style::new().dark_gray().add_modifier(Modifier::BOLD)))
        .row_highlight_style(highlight(ui.focus == Pane::Vms))
        .block(block);
    f.render_stateful_widget(t, area, &mut state);
}

fn render_runners(ui: &UiState, snap: &Snapshot, now: Millis, f: &mut Frame, area: Rect) {
    let rows = runner_rows(ui, snap);
    let RunnerFeed::On {
        paused,
        pending_jobs,
        max_runners,
        queue_wait_p50_ms,
        orphans_removed,
        ..
    } = &snap.runners
    else {
        return;
    };
    let live = rows.iter().filter(|r| r.state != "gone").count();
    let mut title = format!("{live}/{max_runners} · {pending_jobs} queued");
    if let Some(w) = queue_wait_p50_ms {
        title.push_str(&format!(" · wait {}", compact_duration(*w)));
    }
    if *orphans_removed > 0 {
        title.push_str(&format!(" · {orphans_removed} orphans cleaned"));
    }
    if *paused {
        title.push_str(" · PAUSED");
    }
    let block = pane_block(ui, Pane::Runners, title);
    if rows.is_empty() {
        let hint = match ui.keymap.key_for(Pane::Runners, "runner.provision") {
            Some(k)
                if ui
                    .policy
                    .permits(crate::engine::CommandKind::ProvisionRunner) =>
            {
                format!("No runners. They start when jobs queue; press {k} to start some by hand.")
            }
            _ => "No runners. They start when jobs queue.".to_string(),
        };
        f.render_widget(
            Paragraph::new(hint).wrap(Wrap { trim: true }).block(block),
            area,
        );
        return;
    }
    let wide = area.width >= 100;
    let body: Vec<Row> = rows
        .iter()
        .map(|r| {
            let age =
                compact_duration(now - crate::clock::parse_rfc3339(&r.started_at).unwrap_or(now));
            let style = match r.state.as_str() {
                "busy" => Style::new().fg(Color::Green),
                "idle" => Style::new().fg(Color::Cyan),
                "failed" | "offline" => Style::new().fg(Color::Red),
                "requested" | "provisioning" | "removing" => Style::new().fg(Color::Yellow),
                "gone" => Style::new().dark_gray(),
                _ => Style::new(),
            };
            let state = if r.draining && r.state != "gone" {
                format!("{} (drain)", r.state)
            } else {
                r.state.clone()
            };
            let job = r.job.clone().unwrap_or_else(|| "-".into());
            // The name's unique tail is what tells runners apart.
            let short = r
                .name
                .rsplit('-')
                .next()
                .map(|t| {
                    t.chars()
                        .rev()
                        .take(8)
                        .collect::<String>()
                        .chars()
                        .rev()
                        .collect()
                })
                .unwrap_or_else(|| r.name.clone());
            let cells = if wide {
                vec![
                    short,
                    r.scope.clone(),
                    r.labels.join(","),
                    r.provider.clone(),
                    state,
                    job,
                    age,
                ]
            } else if area.width >= 60 {
                vec![short, r.provider.clone(), state, job, age]
            } else {
                vec![short, state, age]
            };
            Row::new(cells).style(style)
        })
        .collect();
    let (header, widths): (Vec<&str>, Vec<Constraint>) = if wide {
        (
            vec![
                "RUNNER", "SCOPE", "LABELS", "PROVIDER", "STATE", "JOB", "AGE",
            ],
            vec![
                Constraint::Length(8),
                Constraint::Fill(1),
                Constraint::Fill(2),
                Constraint::Fill(1),
                Constraint::Length(13),
                Constraint::Fill(2),
                Constraint::Length(6),
            ],
        )
    } else if area.width >= 60 {
        (
            vec!["RUNNER", "PROVIDER", "STATE", "JOB", "AGE"],
            vec![
                Constraint::Length(8),
                Constraint::Fill(1),
                Constraint::Length(13),
                Constraint::Fill(2),
                Constraint::Length(6),
            ],
        )
    } else {
        (
            vec!["RUNNER", "STATE", "AGE"],
            vec![
                Constraint::Length(8),
                Constraint::Fill(1),
                Constraint::Length(6),
            ],
        )
    };
    let mut state = TableState::default().with_selected(Some(ui.selected[Pane::Runners.index()]));
    let t = Table::new(body, widths)
        .header(Row::new(header).style(Style::new().dark_gray().add_modifier(Modifier::BOLD)))
        .row_highlight_style(highlight(ui.focus == Pane::Runners))
        .block(block);
    f.render_stateful_widget(t, area, &mut state);
}

fn render_issues(ui: &UiState, snap: &Snapshot, now: Millis, f: &mut Frame, area: Rect) {
    let rows = issue_rows(ui, snap);
    let open = rows.iter().filter(|r| r.status == "open").count();
    let block = pane_block(ui, Pane::Issues, format!("{open} open"));
    if rows.is_empty() {
        f.render_widget(
            Paragraph::new("No failed runs found yet. Checks run every orchestrator.interval.")
                .wrap(Wrap { trim: true })
                .block(block),
            area,
        );
        return;
    }
    let wide = area.width >= 70;
    let body: Vec<Row> = rows
        .iter()
        .map(|r| {
            let age = crate::clock::compact_duration(
                now - crate::clock::parse_rfc3339(&r.created_at).unwrap_or(now),
            );
            let style = match (r.status.as_str(), r.severity.as_str()) {
                ("ignored" | "fixed", _) => Style::new().dark_gray(),
                (_, "critical" | "high") => Style::new().fg(Color::Red),
                (_, "medium") => Style::new().fg(Color::Yellow),
                _ => Style::new(),
            };
            let cells = if wide {
                vec![
                    r.severity.clone(),
                    r.issue_type.clone(),
                    r.repo.clone(),
                    r.workflow.clone(),
                    r.run_id.to_string(),
                    r.status.clone(),
                    age,
                ]
            } else {
                vec![r.severity.clone(), r.issue_type.clone(), r.status.clone()]
            };
            Row::new(cells).style(style)
        })
        .collect();
    let (header, widths): (Vec<&str>, Vec<Constraint>) = if wide {
        (
            vec!["SEV", "TYPE", "REPO", "WORKFLOW", "RUN", "STATUS", "AGE"],
            vec![
                Constraint::Length(8),
                Constraint::Length(20),
                Constraint::Fill(2),
                Constraint::Fill(2),
                Constraint::Length(11),
                Constraint::Length(7),
                Constraint::Length(6),
            ],
        )
    } else {
        (
            vec!["SEV", "TYPE", "STATUS"],
            vec![
                Constraint::Length(8),
                Constraint::Fill(1),
                Constraint::Length(7),
            ],
        )
    };
    let mut state = TableState::default().with_selected(Some(ui.selected[Pane::Issues.index()]));
    let t = Table::new(body, widths)
        .header(Row::new(header).style(Style::new().dark_gray().add_modifier(Modifier::BOLD)))
        .row_highlight_style(highlight(ui.focus == Pane::Issues))
        .block(block);
    f.render_stateful_widget(t, area, &mut state);
}

fn render_logs(ui: &UiState, f: &mut Frame, area: Rect) {
    let extra = if ui.logs_following {
        "following".to_string()
    } else {
        "paused: f follows".to_string()
    };
    let w = TuiLoggerWidget::default()
        .block(pane_block(ui, Pane::Logs, extra))
        .output_separator(' ')
        .output_timestamp(Some("%H:%M:%S".into()))
        .output_level(Some(TuiLoggerLevelOutput::Abbreviated))
        .output_target(false)
        .output_file(false)
        .output_line(false)
        .style_error(Style::new().fg(Color::Red))
        .style_warn(Style::new().fg(Color::Yellow))
        .style_info(Style::new())
        .style_debug(Style::new().dark_gray())
        .state(&ui.logs);
    f.render_widget(w, area);
}

fn render_footer(ui: &UiState, now: Millis, f: &mut Frame, area: Rect) {
    let line = match &ui.mode {
        Mode::Command(s) => Line::from(vec![
            Span::styled(":", Style::new().fg(ACCENT).bold()),
            Span::raw(s.clone()),
            Span::styled("_", Style::new().add_modifier(Modifier::SLOW_BLINK)),
            Span::styled(format!("   {COMMANDS}"), Style::new().dark_gray()),
        ]),
        Mode::Filter(s) => Line::from(vec![
            Span::styled("/", Style::new().fg(ACCENT).bold()),
            Span::raw(s.clone()),
            Span::styled("_", Style::new().add_modifier(Modifier::SLOW_BLINK)),
            Span::styled(
                "   regex, ! inverts, Enter applies, Esc cancels",
                Style::new().dark_gray(),
            ),
        ]),
        _ => match &ui.status {
            Some((text, level, at)) if now - at < STATUS_TTL_MS => Line::from(Span::styled(
                text.clone(),
                match level {
                    Level::Info => Style::new().fg(Color::Green),
                    Level::Error => Style::new().fg(Color::Red).bold(),
                },
            )),
            _ => hints(ui),
        },
    };
    f.render_widget(Paragraph::new(line), area);
}

fn hints(ui: &UiState) -> Line<'static> {
    let mut spans = Vec::new();
    let mut seen = Vec::new();
    let pane_first = ui.keymap.visible(ui.focus, ui.policy);
    let order = [
        "app.help",
        "app.command",
        "app.filter",
        "pane.zoom",
        "app.quit",
    ];
    let mut items: Vec<_> = pane_first
        .iter()
        .filter(|(b, _)| {
            ui.keymap
                .section(ui.focus.name())
                .iter()
                .any(|p| p.key == b.key)
        })
        .collect();
    for name in order {
        if let Some(x) = pane_first.iter().find(|(_, d)| d.name == name) {
            items.push(x);
        }
    }
    for (b, d) in items {
        if seen.contains(&d.name) {
            continue;
        }
        seen.push(d.name);
        spans.push(Span::styled(
            format!(" {} ", b.on),
            Style::new().fg(Color::Black).bg(Color::Gray),
        ));
        spans.push(Span::raw(format!(" {} ", short_label(d.name))));
    }
    Line::from(spans)
}

/// A one-word label for the hints bar: the verb of the action name (`workflow.cancel` ->
/// `cancel`).
fn short_label(action: &str) -> String {
    match action {
        "app.command" => "cmd".into(),
        other => other.rsplit('.').next().unwrap_or(other).replace('_', " "),
    }
}

fn centered(area: Rect, w_pct: u16, h_pct: u16, min_w: u16, min_h: u16) -> Rect {
    let w = (area.width * w_pct / 100).max(min_w).min(area.width);
    let h = (area.height * h_pct / 100).max(min_h).min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn render_help(ui: &UiState, scroll: u16, f: &mut Frame, area: Rect) {
    let r = centered(area, 70, 80, 60, 16);
    let mut lines = Vec::new();
    let section = |title: String, lines: &mut Vec<Line>, name: &str| {
        lines.push(Line::from(Span::styled(
            title,
            Style::new().fg(ACCENT).bold(),
        )));
        for b in ui.keymap.section(name) {
            let Some(def) = super::keymap::action(b.run) else {
                continue;
            };
            let refused = def.command.is_some_and(|k| !ui.policy.permits(k));
            let mark = if refused {
                "  (refused: read-only)"
            } else if def.danger() == crate::engine::Danger::Destructive {
                "  (asks to confirm)"
            } else {
                ""
            };
            let style = if refused {
                Style::new().dark_gray()
            } else {
                Style::new()
            };
            lines.push(Line::from(vec![
                Span::styled(format!("  {:<12}", b.on), style.bold()),
                Span::styled(format!("{}{mark}", b.desc), style),
            ]));
        }
    };
    if !ui.keymap.section(ui.focus.name()).is_empty() {
        section(
            format!("{} pane", ui.focus.title()),
            &mut lines,
            ui.focus.name(),
        );
        lines.push(Line::raw(""));
    }
    section("Everywhere".into(), &mut lines, "global");
    lines.push(Line::raw(""));
    lines.push(Line::from(Span::styled(
        "Commands",
        Style::new().fg(ACCENT).bold(),
    )));
    lines.push(Line::raw(format!("  {COMMANDS}")));
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).scroll((scroll, 0)).block(
            Block::bordered()
                .border_type(BorderType::Double)
                .title(" Help: keys from the live keymap (Esc closes, j/k scroll) ")
                .border_style(Style::new().fg(ACCENT)),
        ),
        r,
    );
}

fn render_provision(form: &super::app::ProvisionForm, f: &mut Frame, area: Rect) {
    let r = centered(area, 50, 40, 52, 11);
    let mut lines = Vec::new();
    for (i, label) in super::app::ProvisionForm::LABELS.iter().enumerate() {
        let focused = form.focus == i;
        let value = if form.fields[i].is_empty() && i > 0 {
            Span::styled("(default)", Style::new().dark_gray())
        } else {
            Span::raw(form.fields[i].clone())
        };
        let mut spans = vec![
            Span::styled(
                format!("{} {:<10} ", if focused { ">" } else { " " }, label),
                if focused {
                    Style::new().fg(ACCENT).bold()
                } else {
                    Style::new()
                },
            ),
            value,
        ];
        if focused {
            spans.push(Span::styled(
                "_",
                Style::new().add_modifier(Modifier::SLOW_BLINK),
            ));
        }
        lines.push(Line::from(spans));
    }
    lines.push(Line::raw(""));
    if let Some(e) = &form.error {
        lines.push(Line::from(Span::styled(
            e.clone(),
            Style::new().fg(Color::Red),
        )));
    }
    lines.push(Line::from(Span::styled(
        "Tab/Up/Down move, Enter provisions, Esc cancels",
        Style::new().dark_gray(),
    )));
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).block(
            Block::bordered()
                .border_type(BorderType::Double)
                .title(" Provision a VM ")
                .border_style(Style::new().fg(ACCENT)),
        ),
        r,
    );
}

fn render_cache(snap: &Snapshot, f: &mut Frame, area: Rect) {
    let r = centered(area, 60, 60, 56, 17);
    let lines: Vec<Line> = match &snap.github {
        None => vec![
            Line::raw("The GitHub layer is off."),
            Line::raw(""),
            Line::raw("Set GH_TOKEN (or GITHUB_TOKEN), or run `gh auth login`."),
        ],
        Some(gh) => {
            let c = &gh.cache;
            let mut l = vec![
                Line::raw(format!("token from      {}", gh.source)),
                Line::raw(match &gh.rate {
                    Some(r) => format!(
                        "rate limit      {}/{} left, {} used, resets {}",
                        r.remaining, r.limit, r.used, r.reset_at
                    ),
                    None => "rate limit      no response yet".into(),
                }),
                Line::raw(""),
                Line::raw(format!("hit_rate        {:.1}%", c.hit_rate * 100.0)),
                Line::raw(format!("api_calls_saved {}", c.api_calls_saved)),
                Line::raw(format!("api calls       {}", c.api_calls)),
                Line::raw(format!("hits            {}", c.hits)),
                Line::raw(format!("304s            {}", c.not_modified)),
                Line::raw(format!("misses          {}", c.misses)),
                Line::raw(format!("peer_hits       {}", c.peer_hits)),
                Line::raw(format!("rejected        {}", c.rejected)),
                Line::raw(format!("evictions       {}", c.evictions)),
                Line::raw(format!(
                    "entries         {} ({} KiB)",
                    c.entries,
                    c.bytes / 1024
                )),
            ];
            l.push(Line::raw(format!(
                "p2p_enabled     {} ({} peers)",
                c.p2p_enabled, c.connected_peers
            )));
            l
        }
    };
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).block(
            Block::bordered()
                .border_type(BorderType::Double)
                .title(" GitHub API cache (Esc closes) ")
                .border_style(Style::new().fg(ACCENT)),
        ),
        r,
    );
}

fn render_confirm(title: &str, body: &str, f: &mut Frame, area: Rect) {
    let mut r = centered(area, 50, 30, 50, 8);
    // Grow to the wrapped body plus the blank and y/n lines, so the prompt is never cut off.
    let inner_w = usize::from(r.width.saturating_sub(2)).max(1);
    let needed = body
        .lines()
        .map(|l| l.chars().count().div_ceil(inner_w).max(1))
        .sum::<usize>()
        + 4;
    if needed > usize::from(r.height) {
        r.height = (needed.min(usize::from(area.height))) as u16;
        r.y = area.y + (area.height - r.height) / 2;
    }
    let mut lines: Vec<Line> = body.lines().map(|l| Line::raw(l.to_string())).collect();
    lines.push(Line::raw(""));
    lines.push(Line::from(vec![
        Span::styled(" y ", Style::new().fg(Color::Black).bg(Color::Red).bold()),
        Span::raw(" yes   "),
        Span::styled(" n ", Style::new().fg(Color::Black).bg(Color::Gray)),
        Span::raw(" / Esc no"),
    ]));
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .alignment(Alignment::Left)
            .block(
                Block::bordered()
                    .border_type(BorderType::Double)
                    .title(format!(" Confirm: {title} "))
                    .border_style(Style::new().fg(Color::Red)),
            ),
        r,
    );
}

fn render_output(v: &super::app::OutputView, f: &mut Frame, area: Rect) {
    let r = centered(area, 90, 85, 60, 12);
    let text = &v.output.output;
    let total = text.lines().count() as u16;
    let visible = r.height.saturating_sub(2);
    let max_scroll = total.saturating_sub(visible);
    let top = max_scroll.saturating_sub(v.scroll_back.min(max_scroll));
    let title = format!(
        " Output of {} ({}{}) Esc closes ",
        v.output.task_id,
        v.output.state.as_str(),
        if v.output.truncated {
            ", tail only"
        } else {
            ""
        }
    );
    let body = if text.is_empty() {
        "(no output)"
    } else {
        text.as_str()
    };
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(body.to_string()).scroll((top, 0)).block(
            Block::bordered()
                .border_type(BorderType::Double)
                .title(title)
                .border_style(Style::new().fg(ACCENT)),
        ),
        r,
    );
}
