//! Whole-screen snapshots of every pane through ratatui's `TestBackend`, at 120x40 and
//! 80x24, with a fixed clock and a fixed engine snapshot.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use flotilla::engine::Policy;
use flotilla::engine::command::TaskOutput;
use flotilla::engine::mesh::PeerSched;
use flotilla::engine::snapshot::{NodeView, QueueRow, Snapshot, VmFeed, VmRow};
use flotilla::sched::workflow::{TaskState, WorkflowTag};
use flotilla::tui::app::{Action, Done, UiState, update};
use flotilla::tui::view::render;
use flotilla::tui::{Keymap, Pane};

const NOW: i64 = 1_795_000_000_000;

fn row(
    wf: &str,
    name: &str,
    i: u32,
    state: TaskState,
    prio: u16,
    eff: f64,
    age_s: i64,
) -> QueueRow {
    QueueRow {
        task_id: format!("{wf}.{i}"),
        workflow_id: wf.into(),
        workflow_name: name.into(),
        tag: WorkflowTag::P2pEligible,
        index: i,
        state,
        priority: prio,
        effective_priority: eff,
        enqueued_at: NOW - age_s * 1000,
        started_at: matches!(
            state,
            TaskState::Running | TaskState::Succeeded | TaskState::Failed
        )
        .then_some(NOW - age_s * 1000 + 4000),
        finished_at: None,
        owner: (state == TaskState::Running).then(|| "build-01".to_string()),
        waiting_for: None,
        exit_code: match state {
            TaskState::Succeeded => Some(0),
            TaskState::Failed => Some(2),
            _ => None,
        },
        retried: 0,
        command: "cargo test --workspace".into(),
    }
}

fn snapshot(read_only: bool) -> Snapshot {
    let mut parked = row(
        "wf-01jd8c",
        "train-model",
        0,
        TaskState::Queued,
        50,
        50.0,
        30,
    );
    parked.waiting_for = Some("a node with \"cuda\"".into());
    let mut s = Snapshot {
        version: 7,
        taken_at: NOW,
        node: NodeView {
            name: "build-01".into(),
            peer_id: None,
            addresses: vec![],
            capabilities: vec!["linux".into(), "x64".into(), "cpu".into(), "avx2".into()],
            running: 2,
            max_tasks: 2,
            load_avg: Some(0.52),
            read_only,
            started_at: NOW - 3_600_000,
            pid: 4242,
            data_dir: "/home/ops/.local/share/flotilla".into(),
        },
        queue: vec![
            row(
                "wf-01jd8a",
                "nightly-build",
                0,
                TaskState::Running,
                100,
                100.0,
                95,
            ),
            row(
                "wf-01jd8a",
                "nightly-build",
                1,
                TaskState::Running,
                100,
                100.0,
                95,
            ),
            row(
                "wf-01jd8a",
                "nightly-build",
                2,
                TaskState::Queued,
                100,
                72.9,
                95,
            ),
            row("wf-01jd8b", "lint", 0, TaskState::Queued, 300, 300.0, 12),
            parked,
            row(
                "wf-01jd89",
                "docs",
                0,
                TaskState::Succeeded,
                500,
                500.0,
                400,
            ),
            row(
                "wf-01jd88",
                "flaky-e2e",
                0,
                TaskState::Failed,
                500,
                500.0,
                900,
            ),
        ],
        ..Snapshot::default()
    };
    s.mesh = "open".into();
    s.node.peer_id = Some("12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo".into());
    s.node.addresses = vec![
        "/ip4/10.0.0.5/tcp/9100/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo".into(),
    ];
    s.peers = vec![
        flotilla::engine::mesh::PeerRow {
            peer_id: "12D3KooWRBhwfeP2Y4TCx1SM6s9rUoHhR5STiGwxBhgFRcw3UERE".into(),
            addrs: vec!["/ip4/10.0.0.7/tcp/9100".into()],
            agent: Some("flotilla/0.1.0 (gpu-02)".into()),
            rtt_ms: Some(0.8),
            connected: true,
            last_seen_ms: NOW - 2_000,
            score: Some(0.0),
            banned: false,
            sched: Some(PeerSched {
                name: "gpu-02".into(),
                capabilities: vec!["linux".into(), "x64".into(), "cuda".into()],
                running: 1,
                max: 4,
                queued: 3,
                last_heartbeat_ms: NOW - 3_000,
                owned: 2,
            }),
        },
        flotilla::engine::mesh::PeerRow {
            peer_id: "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq".into(),
            addrs: vec!["/ip4/10.0.0.9/tcp/9100".into()],
            agent: Some("flotilla/0.1.0 (build-03)".into()),
            rtt_ms: None,
            connected: false,
            last_seen_ms: NOW - 600_000,
            score: None,
            banned: false,
            sched: None,
        },
        flotilla::engine::mesh::PeerRow {
            peer_id: "12D3KooWGzh4Sx3hK9PaBLx1Hq5TnCZs8mG1xqVZP7sQeR4vAbCd".into(),
            addrs: vec!["/ip4/203.0.113.4/udp/9100/quic-v1".into()],
            agent: Some("rust-libp2p/0.54.1".into()),
            rtt_ms: None,
            connected: false,
            last_seen_ms: NOW - 90_000,
            score: Some(-30.0),
            banned: true,
            sched: None,
        },
    ];
    s.counts.workflows.insert("completed".into(), 12);
    s.counts.workflows.insert("failed".into(), 1);
    s
}

fn draw(ui: &mut UiState, snap: &Snapshot, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| render(ui, snap, NOW, f)).unwrap();
    t.backend().to_string()
}

fn ui(read_only: bool) -> UiState {
    let (km, warnings) = Keymap::load(None);
    assert!(warnings.is_empty());
    UiState::new(km, Policy { read_only })
}

fn press(ui: &mut UiState, snap: &Snapshot, code: KeyCode, m: KeyModifiers) {
    update(ui, Action::Key(KeyEvent::new(code, m)), snap, NOW);
}

#[test]
fn every_pane_at_both_sizes() {
    let snap = snapshot(false);
    for (w, h) in [(120u16, 40u16), (80, 24)] {
        let mut u = ui(false);
        insta::assert_snapshot!(format!("overview_{w}x{h}"), draw(&mut u, &snap, w, h));
        for p in Pane::ALL {
            let mut u = ui(false);
            u.focus = p;
            u.zoom = true;
            insta::assert_snapshot!(format!("{}_{w}x{h}", p.name()), draw(&mut u, &snap, w, h));
        }
    }
}

#[test]
fn overlays_and_modes() {
    let snap = snapshot(false);
    for (w, h) in [(120u16, 40u16), (80, 24)] {
        let mut u = ui(false);
        press(&mut u, &snap, KeyCode::Char('?'), KeyModifiers::SHIFT);
        insta::assert_snapshot!(format!("help_queue_{w}x{h}"), draw(&mut u, &snap, w, h));

        let mut u = ui(false);
        press(&mut u, &snap, KeyCode::Char('d'), KeyModifiers::CONTROL);
        insta::assert_snapshot!(format!("confirm_cancel_{w}x{h}"), draw(&mut u, &snap, w, h));

        let mut u = ui(false);
        press(&mut u, &snap, KeyCode::Char(':'), KeyModifiers::NONE);
        for c in "submit wf.toml".chars() {
            press(&mut u, &snap, KeyCode::Char(c), KeyModifiers::NONE);
        }
        insta::assert_snapshot!(format!("command_line_{w}x{h}"), draw(&mut u, &snap, w, h));

        let mut u = ui(false);
        update(
            &mut u,
            Action::Done(Done::Output(Ok(TaskOutput {
                task_id: "wf-01jd88.0".into(),
                state: TaskState::Failed,
                output: "running 3 tests\ntest a ... ok\ntest b ... FAILED\nerror: 1 test failed\n"
                    .into(),
                truncated: true,
            }))),
            &snap,
            NOW,
        );
        insta::assert_snapshot!(format!("task_output_{w}x{h}"), draw(&mut u, &snap, w, h));
    }
}

#[test]
fn read_only_and_empty_states() {
    let snap = snapshot(true);
    let mut u = ui(true);
    insta::assert_snapshot!("read_only_overview_120x40", draw(&mut u, &snap, 120, 40));
    let empty = Snapshot {
        node: snapshot(false).node,
        taken_at: NOW,
        ..Snapshot::default()
    };
    let mut u = ui(false);
    insta::assert_snapshot!("empty_overview_80x24", draw(&mut u, &empty, 80, 24));
}

fn vm(id: &str, user: &str, status: &str, left_min: i64, cost: i64) -> VmRow {
    VmRow {
        vm_id: id.into(),
        name: format!("flotilla-{user}-{id}"),
        user: user.into(),
        region: "iad".into(),
        cpu_type: "shared-cpu-1x".into(),
        memory_mb: 1024,
        status: status.into(),
        auto_shutdown_at: Some(NOW + left_min * 60_000),
        cost_centicents: cost,
    }
}

#[test]
fn vms_pane_with_machines() {
    let mut snap = snapshot(false);
    snap.vms = VmFeed::On {
        rows: vec![
            vm("vm-01a", "alice", "running", 27, 1_316),
            vm("vm-01b", "bob", "provisioning", 30, 0),
            vm("vm-01c", "alice", "stopped", 3, 79),
        ],
        month_centicents: 42_795,
    };
    for (w, h) in [(120u16, 40u16), (80, 24)] {
        let mut u = ui(false);
        u.focus = Pane::Vms;
        u.zoom = true;
        insta::assert_snapshot!(format!("vms_live_{w}x{h}"), draw(&mut u, &snap, w, h));
        let mut u = ui(false);
        u.focus = Pane::Vms;
        press(&mut u, &snap, KeyCode::Char('d'), KeyModifiers::CONTROL);
        insta::assert_snapshot!(
            format!("vms_confirm_terminate_{w}x{h}"),
            draw(&mut u, &snap, w, h)
        );
    }
    for (w, h) in [(120u16, 40u16), (80, 24)] {
        let mut u = ui(false);
        u.focus = Pane::Vms;
        press(&mut u, &snap, KeyCode::Char('n'), KeyModifiers::NONE);
        for c in "alice".chars() {
            press(&mut u, &snap, KeyCode::Char(c), KeyModifiers::NONE);
        }
        press(&mut u, &snap, KeyCode::Tab, KeyModifiers::NONE);
        insta::assert_snapshot!(
            format!("vms_provision_form_{w}x{h}"),
            draw(&mut u, &snap, w, h)
        );
    }
    let mut empty = snapshot(false);
    empty.vms = VmFeed::On {
        rows: vec![],
        month_centicents: 0,
    };
    let mut u = ui(false);
    insta::assert_snapshot!("vms_empty_on_80x24", draw(&mut u, &empty, 80, 24));
}

#[test]
fn issues_pane_with_findings() {
    use flotilla::engine::command::IssueView;
    use flotilla::engine::snapshot::IssueFeed;
    let mut snap = snapshot(false);
    let issue = |id: &str, sev: &str, ty: &str, status: &str, age_min: i64| IssueView {
        issue_id: id.into(),
        severity: sev.into(),
        issue_type: ty.into(),
        repo: "acme/api".into(),
        workflow: "CI".into(),
        run_id: 9_812_345_678,
        run_url: Some("https://github.com/acme/api/actions/runs/9812345678".into()),
        job: Some("test (ubuntu-latest)".into()),
        status: status.into(),
        status_reason: String::new(),
        primary: true,
        fix_description: "Re-run the failed jobs".into(),
        created_at: flotilla::clock::rfc3339(NOW - age_min * 60_000),
        github_issue: None,
        reruns: 0,
    };
    snap.issues = IssueFeed::On(vec![
        issue("iss-01", "high", "test_failure", "open", 12),
        issue("iss-02", "medium", "network_error", "fixing", 30),
        issue("iss-03", "low", "lint_failure", "ignored", 300),
    ]);
    for (w, h) in [(120u16, 40u16), (80, 24)] {
        let mut u = ui(false);
        u.focus = Pane::Issues;
        u.zoom = true;
        insta::assert_snapshot!(format!("issues_live_{w}x{h}"), draw(&mut u, &snap, w, h));
        let mut u = ui(false);
        u.focus = Pane::Issues;
        press(&mut u, &snap, KeyCode::Char('f'), KeyModifiers::NONE);
        insta::assert_snapshot!(
            format!("issues_confirm_fix_{w}x{h}"),
            draw(&mut u, &snap, w, h)
        );
    }
}

#[test]
fn runners_pane_with_runners() {
    use flotilla::engine::command::RunnerView;
    use flotilla::engine::snapshot::RunnerFeed;
    let runner = |tail: &str, state: &str, job: Option<&str>, age_min: i64| RunnerView {
        id: format!("run-{tail}"),
        name: format!("flotilla-local-linux-01jdz{tail}"),
        scope: "org:acme".into(),
        labels: vec!["self-hosted".into(), "linux".into(), "x64".into()],
        provider: "local-linux".into(),
        state: state.into(),
        job: job.map(String::from),
        for_job: Some("acme/api#4242".into()),
        started_at: flotilla::clock::rfc3339(NOW - age_min * 60_000),
        state_since: flotilla::clock::rfc3339(NOW - 60_000),
        github_id: Some(77),
        draining: false,
        last_error: None,
    };
    let mut snap = snapshot(false);
    snap.runners = RunnerFeed::On {
        rows: vec![
            runner("k3m9", "busy", Some("test (ubuntu-22.04)"), 12),
            runner("p0q1", "idle", None, 3),
            runner("x7y8", "provisioning", None, 0),
            runner("a1b2", "gone", None, 95),
        ],
        paused: false,
        pending_jobs: 2,
        checks: 17,
        max_runners: 4,
        queue_wait_p50_ms: Some(41_000),
        orphans_removed: 1,
    };
    for (w, h) in [(120u16, 40u16), (80, 24)] {
        let mut u = ui(false);
        u.focus = Pane::Runners;
        u.zoom = true;
        insta::assert_snapshot!(format!("runners_live_{w}x{h}"), draw(&mut u, &snap, w, h));
    }
    let mut u = ui(false);
    u.focus = Pane::Runners;
    press(&mut u, &snap, KeyCode::Down, KeyModifiers::NONE);
    press(&mut u, &snap, KeyCode::Char('d'), KeyModifiers::CONTROL);
    insta::assert_snapshot!(
        "runners_confirm_remove_120x40",
        draw(&mut u, &snap, 120, 40)
    );
}

/// The mesh at work: tasks this node holds by its peer ID, a task another peer holds, one
/// queued on another peer; the Peers pane focused with its cursor on a peer.
#[test]
fn mesh_peers_and_queue_owners() {
    let mut snap = snapshot(false);
    let me = snap.node.peer_id.clone().unwrap();
    let gpu = snap.peers[0].peer_id.clone();
    // The two running tasks: one local (node name), one a mesh task (this node's peer ID).
    snap.queue[1].owner = Some(me);
    let mut remote = row("wf-01jd8d", "render", 0, TaskState::Running, 100, 100.0, 40);
    remote.owner = Some(gpu.clone());
    let mut elsewhere = row("wf-01jd8d", "render", 1, TaskState::Queued, 100, 100.0, 40);
    elsewhere.owner = Some(gpu);
    elsewhere.waiting_for = Some("a slot on peer …w3UERE".into());
    snap.queue.insert(2, remote);
    snap.queue.insert(3, elsewhere);
    for (w, h) in [(120u16, 40u16), (80, 24)] {
        let mut u = ui(false);
        insta::assert_snapshot!(format!("mesh_overview_{w}x{h}"), draw(&mut u, &snap, w, h));
        let mut u = ui(false);
        u.focus = Pane::Queue;
        u.zoom = true;
        insta::assert_snapshot!(format!("mesh_queue_{w}x{h}"), draw(&mut u, &snap, w, h));
        let mut u = ui(false);
        u.focus = Pane::Peers;
        u.zoom = true;
        press(&mut u, &snap, KeyCode::Down, KeyModifiers::NONE);
        insta::assert_snapshot!(format!("mesh_peers_{w}x{h}"), draw(&mut u, &snap, w, h));
        let mut u = ui(false);
        press(&mut u, &snap, KeyCode::Char('1'), KeyModifiers::NONE);
        press(&mut u, &snap, KeyCode::Char('b'), KeyModifiers::NONE);
        insta::assert_snapshot!(
            format!("peers_confirm_ban_{w}x{h}"),
            draw(&mut u, &snap, w, h)
        );
    }
    // Help on the Peers pane lists its actions, the destructive ones marked.
    let mut u = ui(false);
    u.focus = Pane::Peers;
    press(&mut u, &snap, KeyCode::Char('?'), KeyModifiers::SHIFT);
    insta::assert_snapshot!("help_peers_120x40", draw(&mut u, &snap, 120, 40));
    // A peers pane zoomed on a terminal narrower than 60 columns: compact states, and the
    // least important columns dropped.
    let mut u = ui(false);
    u.focus = Pane::Peers;
    u.zoom = true;
    insta::assert_snapshot!("mesh_peers_50x12", draw(&mut u, &snap, 50, 12));
}
