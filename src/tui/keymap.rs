//! Key bindings: `keymap.toml` (yazi's schema), the action registry they point at, and
//! key parsing (via `crokey`).
//!
//! One registry ([`ACTIONS`]) feeds the keymap's validation, the hints bar, the `?` help and
//! the policy gate (each action names the engine [`CommandKind`] it issues, whose danger
//! decides confirmation and read-only hiding), as k9s does with its per-view action lists.

use std::collections::BTreeMap;

use crokey::KeyCombination;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde::Deserialize;

use crate::engine::{CommandKind, Danger, Policy};

/// The six panes, in focus order (keys 1..6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pane {
    /// P2P peers: this node, then the peers it knows.
    Peers,
    /// Task heap queue.
    Queue,
    /// Self-hosted runners.
    Runners,
    /// Cloud VMs.
    Vms,
    /// Orchestrator issues.
    Issues,
    /// Logs.
    Logs,
}

impl Pane {
    /// All panes in focus order.
    pub const ALL: [Pane; 6] = [
        Pane::Peers,
        Pane::Queue,
        Pane::Runners,
        Pane::Vms,
        Pane::Issues,
        Pane::Logs,
    ];
    /// Keymap section and `:` command name.
    pub fn name(self) -> &'static str {
        match self {
            Pane::Peers => "peers",
            Pane::Queue => "queue",
            Pane::Runners => "runners",
            Pane::Vms => "vms",
            Pane::Issues => "issues",
            Pane::Logs => "logs",
        }
    }
    /// Title shown on the pane's border.
    pub fn title(self) -> &'static str {
        match self {
            Pane::Peers => "Peers",
            Pane::Queue => "Queue",
            Pane::Runners => "Runners",
            Pane::Vms => "VMs",
            Pane::Issues => "Issues",
            Pane::Logs => "Logs",
        }
    }
    /// 0-based position.
    pub fn index(self) -> usize {
        Pane::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }
    /// Pane by `:` name.
    pub fn from_name(s: &str) -> Option<Pane> {
        Pane::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// Where an action applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Any pane.
    Global,
    /// Only this pane.
    Pane(Pane),
}

/// One entry of the action registry.
#[derive(Debug, Clone, Copy)]
pub struct ActionDef {
    /// Name used in `run = "..."`.
    pub name: &'static str,
    /// Default description.
    pub desc: &'static str,
    /// Where it applies.
    pub scope: Scope,
    /// Engine command it issues, if any (its danger comes from the policy table).
    pub command: Option<CommandKind>,
}

impl ActionDef {
    /// Danger of the engine command this action issues (`Read` for pure UI actions).
    pub fn danger(&self) -> Danger {
        self.command.map(|k| k.danger()).unwrap_or(Danger::Read)
    }
}

const fn ui(name: &'static str, desc: &'static str) -> ActionDef {
    ActionDef {
        name,
        desc,
        scope: Scope::Global,
        command: None,
    }
}

/// Every action a key can run.
pub const ACTIONS: &[ActionDef] = &[
    ui("app.quit", "Quit"),
    ui("app.help", "Help"),
    ui("app.command", "Command mode"),
    ui("app.filter", "Filter rows"),
    ui("focus.next", "Next pane"),
    ui("focus.prev", "Previous pane"),
    ui("focus.peers", "Peers pane"),
    ui("focus.queue", "Queue pane"),
    ui("focus.runners", "Runners pane"),
    ui("focus.vms", "VMs pane"),
    ui("focus.issues", "Issues pane"),
    ui("focus.logs", "Logs pane"),
    ui("pane.zoom", "Zoom pane"),
    ui("cursor.down", "Down"),
    ui("cursor.up", "Up"),
    ui("cursor.top", "First row"),
    ui("cursor.bottom", "Last row"),
    ui("cursor.pagedown", "Page down"),
    ui("cursor.pageup", "Page up"),
    ui("filter.clear", "Clear filter"),
    ui("noop", "Unbind"),
    ActionDef {
        name: "peer.disconnect",
        desc: "Disconnect the peer",
        scope: Scope::Pane(Pane::Peers),
        command: Some(CommandKind::DisconnectPeer),
    },
    ActionDef {
        name: "peer.ban",
        desc: "Ban the peer",
        scope: Scope::Pane(Pane::Peers),
        command: Some(CommandKind::BanPeer),
    },
    ActionDef {
        name: "peer.unban",
        desc: "Unban the peer",
        scope: Scope::Pane(Pane::Peers),
        command: Some(CommandKind::UnbanPeer),
    },
    ActionDef {
        name: "mesh.rebalance",
        desc: "Rebalance queued mesh tasks",
        scope: Scope::Pane(Pane::Peers),
        command: Some(CommandKind::RebalanceP2p),
    },
    ActionDef {
        name: "workflow.submit",
        desc: "Submit a workflow file",
        scope: Scope::Pane(Pane::Queue),
        command: Some(CommandKind::SubmitWorkflow),
    },
    ActionDef {
        name: "workflow.cancel",
        desc: "Cancel the workflow",
        scope: Scope::Pane(Pane::Queue),
        command: Some(CommandKind::CancelWorkflow),
    },
    ActionDef {
        name: "task.raise",
        desc: "Raise priority",
        scope: Scope::Pane(Pane::Queue),
        command: Some(CommandKind::SetTaskPriority),
    },
    ActionDef {
        name: "task.lower",
        desc: "Lower priority",
        scope: Scope::Pane(Pane::Queue),
        command: Some(CommandKind::SetTaskPriority),
    },
    ActionDef {
        name: "task.output",
        desc: "Show task output",
        scope: Scope::Pane(Pane::Queue),
        command: Some(CommandKind::GetTaskOutput),
    },
    ActionDef {
        name: "runner.provision",
        desc: "Provision runners",
        scope: Scope::Pane(Pane::Runners),
        command: Some(CommandKind::ProvisionRunner),
    },
    ActionDef {
        name: "runner.drain",
        desc: "Drain the runner",
        scope: Scope::Pane(Pane::Runners),
        command: Some(CommandKind::DrainRunner),
    },
    ActionDef {
        name: "runner.remove",
        desc: "Remove the runner",
        scope: Scope::Pane(Pane::Runners),
        command: Some(CommandKind::RemoveRunner),
    },
    ActionDef {
        name: "autoscaler.pause",
        desc: "Pause/resume the autoscaler",
        scope: Scope::Pane(Pane::Runners),
        command: Some(CommandKind::PauseAutoscaler),
    },
    ActionDef {
        name: "autoscaler.check",
        desc: "Check queues now",
        scope: Scope::Pane(Pane::Runners),
        command: Some(CommandKind::CheckAutoscaler),
    },
    ActionDef {
        name: "vm.provision",
        desc: "Provision a VM",
        scope: Scope::Pane(Pane::Vms),
        command: Some(CommandKind::ProvisionVm),
    },
    ActionDef {
        name: "vm.terminate",
        desc: "Terminate the VM",
        scope: Scope::Pane(Pane::Vms),
        command: Some(CommandKind::TerminateVm),
    },
    ActionDef {
        name: "vm.extend",
        desc: "Extend activity",
        scope: Scope::Pane(Pane::Vms),
        command: Some(CommandKind::ExtendVmActivity),
    },
    ActionDef {
        name: "vm.ssh",
        desc: "Copy the SSH command",
        scope: Scope::Pane(Pane::Vms),
        command: Some(CommandKind::GetVmSsh),
    },
    ActionDef {
        name: "issue.evidence",
        desc: "Show the evidence",
        scope: Scope::Pane(Pane::Issues),
        command: Some(CommandKind::GetIssueEvidence),
    },
    ActionDef {
        name: "issue.fix",
        desc: "Apply the fix",
        scope: Scope::Pane(Pane::Issues),
        command: Some(CommandKind::ApplyFix),
    },
    ActionDef {
        name: "issue.ignore",
        desc: "Ignore the issue",
        scope: Scope::Pane(Pane::Issues),
        command: Some(CommandKind::IgnoreIssue),
    },
    ActionDef {
        name: "issue.copy_url",
        desc: "Copy the run URL",
        scope: Scope::Pane(Pane::Issues),
        command: None,
    },
    ActionDef {
        name: "logs.page_up",
        desc: "Scroll back",
        scope: Scope::Pane(Pane::Logs),
        command: None,
    },
    ActionDef {
        name: "logs.page_down",
        desc: "Scroll forward",
        scope: Scope::Pane(Pane::Logs),
        command: None,
    },
    ActionDef {
        name: "logs.follow",
        desc: "Follow new lines",
        scope: Scope::Pane(Pane::Logs),
        command: None,
    },
];

/// Look an action up by name.
pub fn action(name: &str) -> Option<&'static ActionDef> {
    ACTIONS.iter().find(|a| a.name == name)
}

/// Errors parsing a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad key {0:?}: use a character or <C-x>, <A-x>, <S-Tab>, <Enter>, <Esc>, <F5>, ...")]
pub struct KeyError(pub String);

/// Normalise a key combination so that what a terminal sends and what the keymap says
/// compare equal: SHIFT is dropped for non-letter characters (`?` arrives as Shift+`?`).
pub fn normalize(k: KeyCombination) -> KeyCombination {
    let mut k = k.normalized();
    if let crokey::OneToThree::One(KeyCode::Char(c)) = k.codes
        && !c.is_alphabetic()
    {
        k.modifiers.remove(KeyModifiers::SHIFT);
    }
    k
}

/// The combination a terminal key event stands for.
pub fn key_of(ev: &KeyEvent) -> KeyCombination {
    normalize(KeyCombination::from(*ev))
}

/// Parse yazi/vim notation: `q`, `G`, `?`, `<C-d>`, `<A-Enter>`, `<S-Tab>`, `<F5>`.
pub fn parse_key(s: &str) -> Result<KeyCombination, KeyError> {
    let bad = || KeyError(s.to_string());
    let mut chars = s.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        let k = if c.is_ascii_uppercase() {
            KeyCombination::new(KeyCode::Char(c), KeyModifiers::SHIFT)
        } else if c == ' ' {
            KeyCombination::new(KeyCode::Char(' '), KeyModifiers::NONE)
        } else {
            KeyCombination::new(KeyCode::Char(c), KeyModifiers::NONE)
        };
        return Ok(normalize(k));
    }
    let inner = s
        .strip_prefix('<')
        .and_then(|r| r.strip_suffix('>'))
        .filter(|r| !r.is_empty())
        .ok_or_else(bad)?;
    let mut mods = Vec::new();
    let mut rest = inner;
    while rest.len() > 2 && rest.as_bytes()[1] == b'-' {
        match rest.as_bytes()[0] {
            b'C' | b'c' => mods.push("ctrl-"),
            b'A' | b'a' | b'M' | b'm' => mods.push("alt-"),
            b'S' | b's' => mods.push("shift-"),
            _ => return Err(bad()),
        }
        rest = &rest[2..];
    }
    let base = match rest.to_ascii_lowercase().as_str() {
        "cr" | "return" | "enter" => "enter".to_string(),
        "esc" | "escape" => "esc".to_string(),
        "bs" | "backspace" => "backspace".to_string(),
        "del" | "delete" => "delete".to_string(),
        "pageup" | "pgup" => "pageup".to_string(),
        "pagedown" | "pgdn" => "pagedown".to_string(),
        "space" => "space".to_string(),
        "tab" if mods.contains(&"shift-") => {
            mods.retain(|m| *m != "shift-");
            "backtab".to_string()
        }
        "lt" => "<".to_string(),
        "gt" => ">".to_string(),
        other => other.to_string(),
    };
    let shift_letter = rest.len() == 1
        && rest.chars().all(|c| c.is_ascii_uppercase())
        && !mods.contains(&"shift-");
    let text = format!(
        "{}{}{}",
        mods.concat(),
        if shift_letter { "shift-" } else { "" },
        base
    );
    crokey::parse(&text).map(normalize).map_err(|_| bad())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    on: String,
    run: String,
    #[serde(default)]
    desc: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSection {
    #[serde(default)]
    keymap: Vec<FileEntry>,
}

/// One resolved binding.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    /// The key as written (`<C-d>`), for display.
    pub on: String,
    /// Parsed key.
    pub key: KeyCombination,
    /// Action name.
    pub run: &'static str,
    /// Description.
    pub desc: String,
}

/// The live keymap: bindings per section (`global` and each pane).
#[derive(Debug, Clone, Default)]
pub struct Keymap {
    sections: BTreeMap<String, Vec<Binding>>,
}

/// The embedded default keymap.
pub const DEFAULT_KEYMAP: &str = include_str!("../../keymap.toml");

fn section_names() -> Vec<&'static str> {
    std::iter::once("global")
        .chain(Pane::ALL.iter().map(|p| p.name()))
        .collect()
}

impl Keymap {
    /// The defaults merged with an optional user file. Problems are returned as warnings
    /// (for the Logs pane); bad entries are skipped, never fatal.
    pub fn load(user: Option<(&str, &str)>) -> (Keymap, Vec<String>) {
        let mut km = Keymap::default();
        let mut warnings = Vec::new();
        km.merge(DEFAULT_KEYMAP, "built-in keymap", &mut warnings);
        if let Some((text, origin)) = user {
            km.merge(text, origin, &mut warnings);
        }
        km.check_shadowing(&mut warnings);
        (km, warnings)
    }

    fn merge(&mut self, text: &str, origin: &str, warnings: &mut Vec<String>) {
        let parsed: BTreeMap<String, FileSection> = match toml::from_str(text) {
            Ok(p) => p,
            Err(e) => {
                warnings.push(format!(
                    "{origin}: not a keymap ({}); ignored",
                    e.to_string()
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                ));
                return;
            }
        };
        let known = section_names();
        for (section, body) in parsed {
            if !known.contains(&section.as_str()) {
                warnings.push(format!(
                    "{origin}: unknown section [{section}]; sections are {}",
                    known.join(", ")
                ));
                continue;
            }
            let mut seen: BTreeMap<String, String> = BTreeMap::new();
            for e in body.keymap {
                let key = match parse_key(&e.on) {
                    Ok(k) => k,
                    Err(err) => {
                        warnings.push(format!("{origin}: [{section}] {err}"));
                        continue;
                    }
                };
                let Some(def) = action(&e.run) else {
                    warnings.push(format!(
                        "{origin}: [{section}] {} runs unknown action {:?}; ignored",
                        e.on, e.run
                    ));
                    continue;
                };
                if let Scope::Pane(p) = def.scope
                    && section != p.name()
                {
                    warnings.push(format!(
                        "{origin}: [{section}] {} runs {:?}, which only works in [{}]; ignored",
                        e.on,
                        e.run,
                        p.name()
                    ));
                    continue;
                }
                let ks = key.to_string();
                if let Some(prev) = seen.insert(ks.clone(), e.run.clone())
                    && prev != e.run
                {
                    warnings.push(format!(
                        "{origin}: [{section}] {} is bound twice ({prev} and {}); the later wins",
                        e.on, e.run
                    ));
                }
                let list = self.sections.entry(section.clone()).or_default();
                list.retain(|b| b.key != key);
                if def.name != "noop" {
                    list.push(Binding {
                        on: e.on.clone(),
                        key,
                        run: def.name,
                        desc: e.desc.unwrap_or_else(|| def.desc.to_string()),
                    });
                }
            }
        }
    }

    fn check_shadowing(&self, warnings: &mut Vec<String>) {
        let global = self.section("global");
        for p in Pane::ALL {
            for b in self.section(p.name()) {
                if let Some(g) = global.iter().find(|g| g.key == b.key)
                    && g.run == "app.quit"
                {
                    warnings.push(format!(
                        "keymap: [{}] {} shadows the global {} ({})",
                        p.name(),
                        b.on,
                        g.on,
                        g.run
                    ));
                }
            }
        }
    }

    /// Bindings of one section.
    pub fn section(&self, name: &str) -> &[Binding] {
        self.sections.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The action a key runs in `pane`: the pane's binding first, then the global one.
    pub fn resolve(&self, pane: Pane, key: &KeyCombination) -> Option<&'static str> {
        self.section(pane.name())
            .iter()
            .chain(self.section("global"))
            .find(|b| &b.key == key)
            .map(|b| b.run)
    }

    /// Bindings to show for `pane` (pane first, then global), hiding actions the policy
    /// refuses and keys shadowed by the pane.
    pub fn visible(&self, pane: Pane, policy: Policy) -> Vec<(&Binding, &'static ActionDef)> {
        let mut out: Vec<(&Binding, &'static ActionDef)> = Vec::new();
        for b in self
            .section(pane.name())
            .iter()
            .chain(self.section("global"))
        {
            if out.iter().any(|(o, _)| o.key == b.key) {
                continue;
            }
            if let Some(def) = action(b.run)
                && def.command.is_none_or(|k| policy.permits(k))
            {
                out.push((b, def));
            }
        }
        out
    }

    /// The first key bound to `run` for `pane`, for hints like "press <C-d>".
    pub fn key_for(&self, pane: Pane, run: &str) -> Option<&str> {
        self.section(pane.name())
            .iter()
            .chain(self.section("global"))
            .find(|b| b.run == run)
            .map(|b| b.on.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossterm::event::KeyEventKind;

    fn ev(code: KeyCode, m: KeyModifiers) -> KeyEvent {
        let mut e = KeyEvent::new(code, m);
        e.kind = KeyEventKind::Press;
        e
    }

    #[test]
    fn parses_notation_and_matches_terminal_events() {
        let cases = [
            ("q", ev(KeyCode::Char('q'), KeyModifiers::NONE)),
            ("G", ev(KeyCode::Char('G'), KeyModifiers::SHIFT)),
            ("?", ev(KeyCode::Char('?'), KeyModifiers::SHIFT)),
            ("?", ev(KeyCode::Char('?'), KeyModifiers::NONE)),
            ("+", ev(KeyCode::Char('+'), KeyModifiers::SHIFT)),
            ("<C-d>", ev(KeyCode::Char('d'), KeyModifiers::CONTROL)),
            ("<S-Tab>", ev(KeyCode::BackTab, KeyModifiers::SHIFT)),
            ("<Tab>", ev(KeyCode::Tab, KeyModifiers::NONE)),
            ("<Enter>", ev(KeyCode::Enter, KeyModifiers::NONE)),
            ("<Esc>", ev(KeyCode::Esc, KeyModifiers::NONE)),
            ("<PageDown>", ev(KeyCode::PageDown, KeyModifiers::NONE)),
            ("<F5>", ev(KeyCode::F(5), KeyModifiers::NONE)),
            ("<A-x>", ev(KeyCode::Char('x'), KeyModifiers::ALT)),
        ];
        for (s, e) in cases {
            assert_eq!(parse_key(s).unwrap(), key_of(&e), "{s}");
        }
        assert_ne!(parse_key("g").unwrap(), parse_key("G").unwrap());
        for bad in ["", "<>", "<X-d>", "<C-nope>", "ab"] {
            assert!(parse_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_load_clean_and_resolve() {
        let (km, warnings) = Keymap::load(None);
        assert!(warnings.is_empty(), "{warnings:?}");
        let cd = parse_key("<C-d>").unwrap();
        assert_eq!(km.resolve(Pane::Queue, &cd), Some("workflow.cancel"));
        assert_eq!(km.resolve(Pane::Peers, &cd), None);
        let q = parse_key("q").unwrap();
        assert_eq!(km.resolve(Pane::Logs, &q), Some("app.quit"));
        let pd = parse_key("<PageDown>").unwrap();
        assert_eq!(km.resolve(Pane::Logs, &pd), Some("logs.page_down"));
        assert_eq!(km.resolve(Pane::Queue, &pd), Some("cursor.pagedown"));
    }

    #[test]
    fn user_file_overrides_entry_by_entry_with_warnings() {
        let user = r#"
            [queue]
            keymap = [
              { on = "<C-d>", run = "noop" },
              { on = "x", run = "workflow.cancel", desc = "Kill it" },
              { on = "y", run = "workflow.explode" },
              { on = "w", run = "logs.follow" },
              { on = "<Q-w>", run = "app.quit" },
            ]
            [bogus]
            keymap = []
        "#;
        let (km, w) = Keymap::load(Some((user, "user.toml")));
        assert_eq!(km.resolve(Pane::Queue, &parse_key("<C-d>").unwrap()), None);
        assert_eq!(
            km.resolve(Pane::Queue, &parse_key("x").unwrap()),
            Some("workflow.cancel")
        );
        assert_eq!(
            km.resolve(Pane::Queue, &parse_key("s").unwrap()),
            Some("workflow.submit")
        );
        let all = w.join("\n");
        assert!(all.contains("unknown action \"workflow.explode\""), "{all}");
        assert!(all.contains("only works in [logs]"), "{all}");
        assert!(all.contains("bad key \"<Q-w>\""), "{all}");
        assert!(all.contains("unknown section [bogus]"), "{all}");
        let (_, w) = Keymap::load(Some(("not toml [", "broken.toml")));
        assert!(w[0].contains("broken.toml"), "{w:?}");
    }

    #[test]
    fn read_only_hides_mutating_actions() {
        let (km, _) = Keymap::load(None);
        let ro = Policy { read_only: true };
        let names: Vec<_> = km
            .visible(Pane::Queue, ro)
            .iter()
            .map(|(_, d)| d.name)
            .collect();
        assert!(!names.contains(&"workflow.cancel"));
        assert!(!names.contains(&"task.raise"));
        assert!(names.contains(&"task.output"));
        let names: Vec<_> = km
            .visible(Pane::Queue, Policy::default())
            .iter()
            .map(|(_, d)| d.name)
            .collect();
        assert!(names.contains(&"workflow.cancel"));
    }

    #[test]
    fn peers_defaults_bind_peer_actions() {
        let (km, _) = Keymap::load(None);
        for (k, run) in [
            ("d", "peer.disconnect"),
            ("b", "peer.ban"),
            ("u", "peer.unban"),
            ("r", "mesh.rebalance"),
        ] {
            assert_eq!(
                km.resolve(Pane::Peers, &parse_key(k).unwrap()),
                Some(run),
                "{k}"
            );
            let def = action(run).unwrap();
            assert_eq!(def.scope, Scope::Pane(Pane::Peers));
        }
        // Disconnect and ban ask to confirm; unban and rebalance do not.
        assert_eq!(
            action("peer.disconnect").unwrap().danger(),
            Danger::Destructive
        );
        assert_eq!(action("peer.ban").unwrap().danger(), Danger::Destructive);
        assert_eq!(action("peer.unban").unwrap().danger(), Danger::Write);
        assert_eq!(action("mesh.rebalance").unwrap().danger(), Danger::Write);
        // Read-only hides all four.
        let names = |policy| -> Vec<&str> {
            km.visible(Pane::Peers, policy)
                .iter()
                .map(|(_, d)| d.name)
                .collect()
        };
        let rw = names(Policy::default());
        let ro = names(Policy { read_only: true });
        for run in [
            "peer.disconnect",
            "peer.ban",
            "peer.unban",
            "mesh.rebalance",
        ] {
            assert!(rw.contains(&run), "{run}");
            assert!(!ro.contains(&run), "{run}");
        }
    }

    #[test]
    fn every_default_action_exists() {
        for a in ACTIONS {
            assert!(action(a.name).is_some());
        }
    }
}
