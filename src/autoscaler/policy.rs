//! The autoscaler's policy: one pure function, [`plan`], from (demand, runners, providers,
//! limits, now) to provision and retire decisions. No I/O, no clock reads; the controller
//! gathers the inputs and carries the plan out.
//!
//! # Demand is counted in jobs, not runs
//! GitHub hands a queued job to any online, idle runner whose labels are a superset of the
//! job's `runs-on` labels ("Choosing the runner for a job", GitHub Docs). An ephemeral (JIT)
//! runner takes exactly one job and unregisters. So supply and demand are matched per label
//! set: each queued job claims one not-yet-busy runner of a provider whose labels cover the
//! job's (oldest job first); every job left without one asks for a new runner on the first
//! provider, in config order, that covers it and has room.
//!
//! # Rules
//! - Never over the max: every runner that still holds resources (requested, provisioning,
//!   idle, busy, offline, removing, failed) counts against `max_runners` and its provider's
//!   `max_runners` until it is gone. Capacity freed by a retirement is used on the next check.
//! - GitHub and P2P demand share `max_runners`: [`split_capacity`] divides it in proportion to
//!   what each side wants when both want more than there is, and never leaves a slot unused
//!   that one side could use.
//! - Never retire a busy runner. Idle runners are retired after `idle_grace` unless a queued
//!   job or `min_idle` still needs them; a runner still requested or provisioning after
//!   `bootstrap_timeout` is torn down; offline and failed runners are removed; a draining
//!   runner is retired as soon as it is idle.
//! - Demand over the max is kept, not dropped: such jobs come back as [`Plan::deferred`] and
//!   are served on a later check, oldest first. Jobs no provider can serve (their labels are
//!   not covered by any provider) come back as [`Plan::unmatched`]: GitHub-hosted labels such
//!   as `ubuntu-latest` land there unless an operator gives a provider that label.
//! - A provider stopped by its failure limit, or the whole autoscaler when paused, gets no
//!   new runners; removals of dead runners still happen.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::clock::Millis;

/// Lower-cased label set. GitHub compares runner labels case-insensitively.
pub type Labels = BTreeSet<String>;

/// Normalise labels: trimmed, lower case, empty ones dropped.
pub fn labels<I, S>(it: I) -> Labels
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    it.into_iter()
        .map(|s| s.as_ref().trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Whether a runner with `provider` labels can take a job that asks for `job` labels: every
/// job label is offered. A job with no labels matches nothing (`runs-on` is required).
pub fn covers(provider: &Labels, job: &Labels) -> bool {
    !job.is_empty() && job.is_subset(provider)
}

/// A job waiting for a runner: `(repository, job id)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JobKey {
    /// `owner/name`.
    pub repo: String,
    /// GitHub job id.
    pub job_id: u64,
}

impl std::fmt::Display for JobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", self.repo, self.job_id)
    }
}

/// A queued GitHub job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    /// Which job.
    pub key: JobKey,
    /// Its `runs-on` labels, normalised.
    pub labels: Labels,
    /// When it was queued (ms since the epoch); older jobs are served first.
    pub queued_at: Millis,
}

/// A runner's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunnerState {
    /// Decided; JIT config not yet fetched or instance not yet launched.
    Requested,
    /// Instance launched; not yet seen online at GitHub.
    Provisioning,
    /// Online at GitHub, no job.
    Idle,
    /// Running a job.
    Busy,
    /// Registered but GitHub reports it offline.
    Offline,
    /// Being torn down (instance stop and/or GitHub removal under way).
    Removing,
    /// Gone: no instance, not registered. Terminal.
    Gone,
    /// Launch or registration failed; to be cleaned up.
    Failed,
}

impl RunnerState {
    /// All states, in lifecycle order.
    pub const ALL: [RunnerState; 8] = [
        RunnerState::Requested,
        RunnerState::Provisioning,
        RunnerState::Idle,
        RunnerState::Busy,
        RunnerState::Offline,
        RunnerState::Removing,
        RunnerState::Gone,
        RunnerState::Failed,
    ];

    /// Snake-case name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            RunnerState::Requested => "requested",
            RunnerState::Provisioning => "provisioning",
            RunnerState::Idle => "idle",
            RunnerState::Busy => "busy",
            RunnerState::Offline => "offline",
            RunnerState::Removing => "removing",
            RunnerState::Gone => "gone",
            RunnerState::Failed => "failed",
        }
    }

    /// Parse [`RunnerState::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Still holds resources (counts against the max).
    pub fn holds_capacity(self) -> bool {
        self != RunnerState::Gone
    }

    /// Can still take a job (not busy, not on its way out).
    pub fn is_supply(self) -> bool {
        matches!(
            self,
            RunnerState::Requested | RunnerState::Provisioning | RunnerState::Idle
        )
    }
}

impl std::fmt::Display for RunnerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the policy needs to know of one runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerFacts {
    /// Our id for it.
    pub id: String,
    /// Provider name.
    pub provider: String,
    /// Current state.
    pub state: RunnerState,
    /// When it entered that state (ms).
    pub since: Millis,
    /// When it was requested (ms).
    pub created: Millis,
    /// An operator asked to drain it: retire once idle, give it no new work.
    pub draining: bool,
    /// Repository (`owner/name`) it is registered to; `None` for an organization runner,
    /// which can take a job of any of the organization's repositories.
    pub scope: Option<String>,
}

impl RunnerFacts {
    /// Whether GitHub may give this runner a job of `repo`.
    pub fn serves(&self, repo: &str) -> bool {
        self.scope
            .as_deref()
            .is_none_or(|s| s.eq_ignore_ascii_case(repo))
    }
}

/// A provider as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderFacts {
    /// Name (unique).
    pub name: String,
    /// Labels its runners register with, normalised.
    pub labels: Labels,
    /// Its own cap, if any.
    pub max_runners: Option<u32>,
    /// Stopped by the failure limit: no new runners.
    pub stopped: bool,
}

/// Limits from `[autoscaler]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most runners at once, P2P slots included (`--autoscaler-max-runners`).
    pub max_runners: u32,
    /// Idle runners to keep warm on the first provider.
    pub min_idle: u32,
    /// Idle time before an unneeded runner is retired (ms).
    pub idle_grace_ms: Millis,
    /// Time a runner may take to come online before it is torn down (ms).
    pub bootstrap_timeout_ms: Millis,
}

/// The demand on the mesh side: P2P workflows that need a slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct P2pDemand {
    /// Waiting for a slot.
    pub pending: u32,
    /// Running (holding a slot).
    pub assigned: u32,
}

/// Everything [`plan`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// Queued GitHub jobs (any order).
    pub jobs: &'a [QueuedJob],
    /// P2P workflows.
    pub p2p: P2pDemand,
    /// Our runners (gone ones may be included; they are ignored).
    pub runners: &'a [RunnerFacts],
    /// Providers in config order.
    pub providers: &'a [ProviderFacts],
    /// Limits.
    pub limits: Limits,
    /// The autoscaler is paused by an operator.
    pub paused: bool,
    /// Now (ms).
    pub now: Millis,
}

/// A runner to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provision {
    /// On this provider.
    pub provider: String,
    /// For this job (its wait is measured from there); `None` for a `min_idle` runner.
    pub job: Option<JobKey>,
}

/// Why a runner is retired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetireReason {
    /// Idle beyond the grace period with nothing to do.
    IdleGrace,
    /// Not online within the bootstrap timeout.
    BootstrapTimeout,
    /// GitHub reports it offline.
    Offline,
    /// Launch or registration failed.
    Failed,
    /// An operator drained it and it is idle.
    Drained,
}

impl RetireReason {
    /// Short text for logs and the UI.
    pub fn as_str(self) -> &'static str {
        match self {
            RetireReason::IdleGrace => "idle beyond the grace period",
            RetireReason::BootstrapTimeout => "not online within the bootstrap timeout",
            RetireReason::Offline => "offline at GitHub",
            RetireReason::Failed => "failed",
            RetireReason::Drained => "drained",
        }
    }
}

/// A runner to retire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retire {
    /// Its id.
    pub runner: String,
    /// Why.
    pub reason: RetireReason,
}

/// The decisions of one check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Runners to start, oldest job first.
    pub provision: Vec<Provision>,
    /// Runners to retire.
    pub retire: Vec<Retire>,
    /// Jobs a provider covers but that wait for capacity (kept, served later).
    pub deferred: Vec<JobKey>,
    /// Jobs no provider covers.
    pub unmatched: Vec<JobKey>,
    /// Jobs an existing runner will take.
    pub covered: Vec<JobKey>,
    /// Slots given to P2P workflows.
    pub p2p_slots: u32,
    /// Slots for GitHub runners (existing + new).
    pub github_slots: u32,
}

/// Divide `max` slots between P2P and GitHub demand: `(p2p, github)`.
///
/// When both fit, each gets what it wants. Otherwise the slots are shared in proportion to
/// demand (largest remainder to the side that wants more), each side with any demand getting
/// at least one slot when `max >= 2`. Always `p2p <= p2p_want`, `github <= gh_want` and
/// `p2p + github == min(max, p2p_want + gh_want)`.
pub fn split_capacity(max: u32, p2p_want: u32, gh_want: u32) -> (u32, u32) {
    let total = u64::from(p2p_want) + u64::from(gh_want);
    if total <= u64::from(max) {
        return (p2p_want, gh_want);
    }
    // Proportional share, rounded to nearest.
    let mut p = ((u64::from(max) * u64::from(p2p_want) + total / 2) / total) as u32;
    if max >= 2 {
        if p2p_want > 0 && p == 0 {
            p = 1;
        }
        if gh_want > 0 && p == max {
            p = max - 1;
        }
    }
    p = p.min(p2p_want);
    let g = (max - p).min(gh_want);
    // Work-conserving: slots GitHub cannot use go back to P2P.
    let p = (max - g).min(p2p_want);
    (p, g)
}

/// Decide one check. Pure: the same inputs give the same plan.
pub fn plan(inp: &Inputs<'_>) -> Plan {
    let mut out = Plan::default();
    let l = inp.limits;
    let live: Vec<&RunnerFacts> = inp
        .runners
        .iter()
        .filter(|r| r.state.holds_capacity())
        .collect();

    // 1. Removals that do not depend on demand.
    let mut retiring: BTreeSet<&str> = BTreeSet::new();
    for r in &live {
        let reason = match r.state {
            RunnerState::Failed => Some(RetireReason::Failed),
            RunnerState::Offline => Some(RetireReason::Offline),
            RunnerState::Requested | RunnerState::Provisioning
                if inp.now - r.created > l.bootstrap_timeout_ms =>
            {
                Some(RetireReason::BootstrapTimeout)
            }
            RunnerState::Idle if r.draining => Some(RetireReason::Drained),
            _ => None,
        };
        if let Some(reason) = reason {
            retiring.insert(&r.id);
            out.retire.push(Retire {
                runner: r.id.clone(),
                reason,
            });
        }
    }

    // 2. Supply: runners that can still take a job, per provider.
    let mut supply: BTreeMap<&str, Vec<&RunnerFacts>> = BTreeMap::new();
    for r in &live {
        if r.state.is_supply() && !r.draining && !retiring.contains(r.id.as_str()) {
            supply.entry(r.provider.as_str()).or_default().push(r);
        }
    }
    // Claim idle runners last so provisioning ones are counted first... all supply is
    // equivalent for a job; claim in a stable order (oldest runner first).
    for v in supply.values_mut() {
        v.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
    }
    let mut claimed: BTreeSet<&str> = BTreeSet::new();

    // 3. Match jobs, oldest first.
    let mut jobs: Vec<&QueuedJob> = inp.jobs.iter().collect();
    jobs.sort_by(|a, b| (a.queued_at, &a.key).cmp(&(b.queued_at, &b.key)));
    let mut wants: Vec<(&QueuedJob, Vec<&ProviderFacts>)> = Vec::new();
    for j in jobs {
        let fits: Vec<&ProviderFacts> = inp
            .providers
            .iter()
            .filter(|p| covers(&p.labels, &j.labels))
            .collect();
        if fits.is_empty() {
            out.unmatched.push(j.key.clone());
            continue;
        }
        let existing = fits.iter().find_map(|p| {
            supply.get(p.name.as_str()).and_then(|v| {
                v.iter()
                    .find(|r| !claimed.contains(r.id.as_str()) && r.serves(&j.key.repo))
            })
        });
        match existing {
            Some(r) => {
                claimed.insert(&r.id);
                out.covered.push(j.key.clone());
            }
            None => wants.push((j, fits)),
        }
    }

    // 4. Capacity. Every live runner holds a slot until it is gone.
    let held = live.len() as u32;
    let gh_want = held + wants.len() as u32 + l.min_idle;
    let p2p_want = inp.p2p.pending + inp.p2p.assigned;
    let (p2p_slots, gh_slots) = split_capacity(l.max_runners, p2p_want, gh_want);
    out.p2p_slots = p2p_slots;
    let mut free = gh_slots.saturating_sub(held);
    let mut per_provider: BTreeMap<&str, u32> = BTreeMap::new();
    for r in &live {
        *per_provider.entry(r.provider.as_str()).or_default() += 1;
    }
    let room = |p: &ProviderFacts, per: &BTreeMap<&str, u32>| {
        !p.stopped
            && p.max_runners
                .is_none_or(|m| per.get(p.name.as_str()).copied().unwrap_or(0) < m)
    };
    for (j, fits) in wants {
        let target = if inp.paused || free == 0 {
            None
        } else {
            fits.iter().find(|p| room(p, &per_provider)).copied()
        };
        match target {
            Some(p) => {
                free -= 1;
                *per_provider.entry(p.name.as_str()).or_default() += 1;
                out.provision.push(Provision {
                    provider: p.name.clone(),
                    job: Some(j.key.clone()),
                });
            }
            None => out.deferred.push(j.key.clone()),
        }
    }

    // 5. Warm pool on the first provider, and idle retirement beyond what is needed.
    let first = inp.providers.first();
    // The warm pool is made of organization-wide runners (a repository runner would only
    // serve one repository).
    let spare_on = |name: &str| {
        supply.get(name).map_or(0, |v| {
            v.iter()
                .filter(|r| !claimed.contains(r.id.as_str()) && r.scope.is_none())
                .count()
        }) as u32
    };
    if let Some(p) = first {
        let have = spare_on(&p.name)
            + out
                .provision
                .iter()
                .filter(|x| x.provider == p.name && x.job.is_none())
                .count() as u32;
        let mut need = l.min_idle.saturating_sub(have);
        while need > 0 && !inp.paused && free > 0 && room(p, &per_provider) {
            need -= 1;
            free -= 1;
            *per_provider.entry(p.name.as_str()).or_default() += 1;
            out.provision.push(Provision {
                provider: p.name.clone(),
                job: None,
            });
        }
    }
    let mut keep_warm = l.min_idle;
    for (prov, v) in &supply {
        let is_first = first.is_some_and(|p| p.name == *prov);
        // Unclaimed idle runners, longest idle first, are retired past the grace period.
        let mut idle: Vec<&&RunnerFacts> = v
            .iter()
            .filter(|r| r.state == RunnerState::Idle && !claimed.contains(r.id.as_str()))
            .collect();
        idle.sort_by(|a, b| (a.since, &a.id).cmp(&(b.since, &b.id)));
        // Keep the most recently idle ones for min_idle.
        let mut keep = if is_first {
            keep_warm.min(idle.len() as u32)
        } else {
            0
        };
        if is_first {
            keep_warm -= keep;
        }
        while keep > 0 {
            idle.pop();
            keep -= 1;
        }
        for r in idle {
            if inp.now - r.since > l.idle_grace_ms {
                out.retire.push(Retire {
                    runner: r.id.clone(),
                    reason: RetireReason::IdleGrace,
                });
            }
        }
    }
    out.github_slots = gh_slots.min(held + out.provision.len() as u32);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIN: Millis = 60_000;

    fn limits(max: u32) -> Limits {
        Limits {
            max_runners: max,
            min_idle: 0,
            idle_grace_ms: 5 * MIN,
            bootstrap_timeout_ms: 20 * MIN,
        }
    }

    fn prov(name: &str, l: &[&str], max: Option<u32>) -> ProviderFacts {
        ProviderFacts {
            name: name.into(),
            labels: labels(l),
            max_runners: max,
            stopped: false,
        }
    }

    fn job(id: u64, l: &[&str], at: Millis) -> QueuedJob {
        QueuedJob {
            key: JobKey {
                repo: "acme/app".into(),
                job_id: id,
            },
            labels: labels(l),
            queued_at: at,
        }
    }

    fn runner(id: &str, p: &str, state: RunnerState, since: Millis) -> RunnerFacts {
        RunnerFacts {
            id: id.into(),
            provider: p.into(),
            state,
            since,
            created: since,
            draining: false,
            scope: None,
        }
    }

    fn run(
        jobs: &[QueuedJob],
        runners: &[RunnerFacts],
        providers: &[ProviderFacts],
        l: Limits,
        now: Millis,
    ) -> Plan {
        plan(&Inputs {
            jobs,
            p2p: P2pDemand::default(),
            runners,
            providers,
            limits: l,
            paused: false,
            now,
        })
    }

    const LINUX: &[&str] = &["self-hosted", "linux", "x64"];

    #[test]
    fn labels_are_case_insensitive_subsets() {
        let p = labels(["Self-Hosted", "Linux", "X64", "gpu"]);
        assert!(covers(&p, &labels(["self-hosted", "linux"])));
        assert!(covers(&p, &labels(["SELF-HOSTED"])));
        assert!(!covers(&p, &labels(["self-hosted", "windows"])));
        assert!(!covers(&p, &labels::<[&str; 0], &str>([])));
        assert!(!covers(&labels(LINUX), &labels(["ubuntu-latest"])));
    }

    #[test]
    fn n_jobs_give_n_runners_up_to_the_max_and_the_rest_wait() {
        let p = [prov("local", LINUX, None)];
        let jobs: Vec<_> = (0..5).map(|i| job(i, LINUX, i as Millis)).collect();
        let out = run(&jobs, &[], &p, limits(3), 100);
        assert_eq!(out.provision.len(), 3);
        // Oldest first.
        let served: Vec<u64> = out
            .provision
            .iter()
            .map(|x| x.job.as_ref().unwrap().job_id)
            .collect();
        assert_eq!(served, vec![0, 1, 2]);
        assert_eq!(
            out.deferred.iter().map(|k| k.job_id).collect::<Vec<_>>(),
            vec![3, 4]
        );
        assert!(out.retire.is_empty());
    }

    #[test]
    fn existing_supply_covers_jobs_before_new_runners() {
        let p = [prov("local", LINUX, None)];
        let jobs = [job(1, LINUX, 0), job(2, LINUX, 1)];
        let rs = [runner("r1", "local", RunnerState::Provisioning, 0)];
        let out = run(&jobs, &rs, &p, limits(10), 10);
        assert_eq!(out.covered.len(), 1);
        assert_eq!(out.provision.len(), 1);
        assert_eq!(out.provision[0].job.as_ref().unwrap().job_id, 2);
    }

    #[test]
    fn a_repository_runner_serves_only_its_repository() {
        let p = [prov("local", LINUX, None)];
        let mut r = runner("r1", "local", RunnerState::Idle, 0);
        r.scope = Some("acme/other".into());
        let out = run(&[job(1, LINUX, 0)], &[r.clone()], &p, limits(10), 1);
        assert_eq!(
            out.provision.len(),
            1,
            "acme/other's runner cannot take acme/app's job"
        );
        r.scope = Some("ACME/app".into());
        let out = run(&[job(1, LINUX, 0)], &[r], &p, limits(10), 1);
        assert!(out.provision.is_empty());
        assert_eq!(out.covered.len(), 1);
    }

    #[test]
    fn jobs_go_to_the_first_provider_that_covers_them() {
        let p = [
            prov("cpu", LINUX, None),
            prov("gpu", &["self-hosted", "linux", "x64", "cuda"], Some(1)),
        ];
        let jobs = [
            job(1, &["self-hosted", "cuda"], 0),
            job(2, &["self-hosted", "cuda"], 1),
            job(3, &["self-hosted", "linux"], 2),
            job(4, &["ubuntu-latest"], 3),
        ];
        let out = run(&jobs, &[], &p, limits(10), 5);
        let got: Vec<(u64, &str)> = out
            .provision
            .iter()
            .map(|x| (x.job.as_ref().unwrap().job_id, x.provider.as_str()))
            .collect();
        assert_eq!(got, vec![(1, "gpu"), (3, "cpu")]);
        // The GPU provider is full: job 2 waits; job 4 is GitHub-hosted.
        assert_eq!(
            out.deferred.iter().map(|k| k.job_id).collect::<Vec<_>>(),
            [2]
        );
        assert_eq!(
            out.unmatched.iter().map(|k| k.job_id).collect::<Vec<_>>(),
            [4]
        );
    }

    #[test]
    fn busy_runners_are_never_retired_and_count_against_the_max() {
        let p = [prov("local", LINUX, None)];
        let rs = [
            runner("b1", "local", RunnerState::Busy, 0),
            runner("b2", "local", RunnerState::Busy, 0),
        ];
        let jobs = [job(1, LINUX, 0)];
        let out = run(&jobs, &rs, &p, limits(2), 100 * MIN);
        assert!(out.retire.is_empty());
        assert!(out.provision.is_empty());
        assert_eq!(out.deferred.len(), 1);
    }

    #[test]
    fn idle_runners_retire_after_grace_unless_needed() {
        let p = [prov("local", LINUX, None)];
        let rs = [
            runner("old", "local", RunnerState::Idle, 0),
            runner("new", "local", RunnerState::Idle, 4 * MIN),
        ];
        let out = run(&[], &rs, &p, limits(4), 6 * MIN);
        assert_eq!(
            out.retire,
            vec![Retire {
                runner: "old".into(),
                reason: RetireReason::IdleGrace
            }]
        );
        // A queued job keeps an idle runner past grace.
        let out = run(&[job(1, LINUX, 0)], &rs, &p, limits(4), 6 * MIN);
        assert!(out.retire.is_empty(), "{out:?}");
        assert_eq!(out.covered.len(), 1);
    }

    #[test]
    fn min_idle_keeps_and_makes_warm_runners() {
        let p = [prov("local", LINUX, None)];
        let mut l = limits(4);
        l.min_idle = 2;
        let out = run(&[], &[], &p, l, 0);
        assert_eq!(out.provision.len(), 2);
        assert!(out.provision.iter().all(|x| x.job.is_none()));
        let rs = [
            runner("a", "local", RunnerState::Idle, 0),
            runner("b", "local", RunnerState::Idle, 0),
            runner("c", "local", RunnerState::Idle, 0),
        ];
        let out = run(&[], &rs, &p, l, 60 * MIN);
        assert_eq!(out.provision.len(), 0);
        assert_eq!(out.retire.len(), 1, "{out:?}");
    }

    #[test]
    fn dead_and_stuck_runners_are_removed() {
        let p = [prov("local", LINUX, None)];
        let mut drained = runner("d", "local", RunnerState::Idle, 0);
        drained.draining = true;
        let rs = [
            runner("f", "local", RunnerState::Failed, 0),
            runner("o", "local", RunnerState::Offline, 0),
            runner("s", "local", RunnerState::Provisioning, 0),
            runner("ok", "local", RunnerState::Provisioning, 10 * MIN),
            runner("g", "local", RunnerState::Gone, 0),
            drained,
        ];
        let out = run(&[], &rs, &p, limits(10), 21 * MIN);
        let mut got: Vec<(&str, RetireReason)> = out
            .retire
            .iter()
            .map(|r| (r.runner.as_str(), r.reason))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("d", RetireReason::Drained),
                ("f", RetireReason::Failed),
                ("o", RetireReason::Offline),
                ("s", RetireReason::BootstrapTimeout),
            ]
        );
    }

    #[test]
    fn paused_or_stopped_providers_get_no_new_runners() {
        let mut p = [prov("local", LINUX, None)];
        let jobs = [job(1, LINUX, 0)];
        let rs = [runner("f", "local", RunnerState::Failed, 0)];
        let out = plan(&Inputs {
            jobs: &jobs,
            p2p: P2pDemand::default(),
            runners: &rs,
            providers: &p,
            limits: limits(5),
            paused: true,
            now: 0,
        });
        assert!(out.provision.is_empty());
        assert_eq!(out.deferred.len(), 1);
        assert_eq!(out.retire.len(), 1, "clean-up goes on while paused");
        p[0].stopped = true;
        let out = run(&jobs, &[], &p, limits(5), 0);
        assert!(out.provision.is_empty());
        assert_eq!(out.deferred.len(), 1);
    }

    #[test]
    fn p2p_and_github_share_the_max() {
        let p = [prov("local", LINUX, None)];
        let jobs: Vec<_> = (0..6).map(|i| job(i, LINUX, 0)).collect();
        let out = plan(&Inputs {
            jobs: &jobs,
            p2p: P2pDemand {
                pending: 4,
                assigned: 2,
            },
            runners: &[],
            providers: &p,
            limits: limits(8),
            paused: false,
            now: 0,
        });
        assert_eq!(out.p2p_slots + out.github_slots, 8);
        assert_eq!(out.p2p_slots, 4);
        assert_eq!(out.provision.len(), 4);
        assert_eq!(out.deferred.len(), 2);
    }

    #[test]
    fn split_capacity_examples() {
        assert_eq!(split_capacity(8, 3, 5), (3, 5));
        assert_eq!(split_capacity(4, 10, 10), (2, 2));
        assert_eq!(split_capacity(4, 100, 1), (3, 1));
        assert_eq!(split_capacity(4, 1, 100), (1, 3));
        // One slot, a tie: rounding gives it to P2P.
        assert_eq!(split_capacity(1, 5, 5), (1, 0));
        assert_eq!(split_capacity(0, 5, 5), (0, 0));
        assert_eq!(split_capacity(10, 0, 20), (0, 10));
    }

    fn arb_state() -> impl Strategy<Value = RunnerState> {
        prop::sample::select(RunnerState::ALL.to_vec())
    }

    proptest! {
        #[test]
        fn split_is_bounded_and_work_conserving(max in 0u32..64, p in 0u32..100, g in 0u32..100) {
            let (a, b) = split_capacity(max, p, g);
            prop_assert!(a <= p && b <= g);
            prop_assert_eq!(a + b, max.min(p + g));
            if max >= 2 && p > 0 && g > 0 {
                prop_assert!(a >= 1 && b >= 1);
            }
        }

        #[test]
        fn plans_respect_the_limits(
            njobs in 0usize..30,
            job_labels in prop::collection::vec(0usize..3, 30),
            runners in prop::collection::vec((0usize..2, arb_state(), 0i64..40, any::<bool>()), 0..15),
            max in 0u32..12,
            pmax in prop::option::of(0u32..6),
            min_idle in 0u32..3,
            p2p_pending in 0u32..5,
            paused in any::<bool>(),
            now in 0i64..60,
        ) {
            let providers = [
                prov("a", LINUX, None),
                prov("b", &["self-hosted", "linux", "x64", "cuda"], pmax),
            ];
            let label_sets: [&[&str]; 3] = [LINUX, &["self-hosted", "cuda"], &["ubuntu-latest"]];
            let jobs: Vec<_> = (0..njobs)
                .map(|i| job(i as u64, label_sets[job_labels[i]], i as Millis))
                .collect();
            let rs: Vec<_> = runners
                .iter()
                .enumerate()
                .map(|(i, (p, s, t, d))| {
                    let mut r = runner(&format!("r{i}"), providers[*p].name.as_str(), *s, *t * MIN);
                    r.draining = *d;
                    r
                })
                .collect();
            let mut l = limits(max);
            l.min_idle = min_idle;
            let out = plan(&Inputs {
                jobs: &jobs,
                p2p: P2pDemand { pending: p2p_pending, assigned: 0 },
                runners: &rs,
                providers: &providers,
                limits: l,
                paused,
                now: now * MIN,
            });
            let live = rs.iter().filter(|r| r.state.holds_capacity()).count() as u32;
            // Never over the max (held runners count until gone; P2P slots included).
            prop_assert!(out.provision.is_empty() || live + out.provision.len() as u32 + out.p2p_slots <= max);
            if paused { prop_assert!(out.provision.is_empty()); }
            // The provider cap holds.
            if let Some(m) = pmax {
                let on_b = rs.iter().filter(|r| r.provider == "b" && r.state.holds_capacity()).count() as u32;
                let new_b = out.provision.iter().filter(|x| x.provider == "b").count() as u32;
                prop_assert!(new_b == 0 || on_b + new_b <= m);
            }
            // Never retire a busy runner; never retire one twice.
            let mut seen = BTreeSet::new();
            for r in &out.retire {
                let f = rs.iter().find(|x| x.id == r.runner).unwrap();
                prop_assert!(f.state != RunnerState::Busy && f.state != RunnerState::Gone);
                prop_assert!(seen.insert(r.runner.clone()));
            }
            // Every job is accounted for exactly once.
            let mut all: Vec<u64> = out.provision.iter().filter_map(|x| x.job.as_ref()).map(|k| k.job_id)
                .chain(out.deferred.iter().map(|k| k.job_id))
                .chain(out.unmatched.iter().map(|k| k.job_id))
                .chain(out.covered.iter().map(|k| k.job_id))
                .collect();
            all.sort();
            prop_assert_eq!(all, (0..njobs as u64).collect::<Vec<_>>());
            // A job is provisioned only on a provider that covers it.
            for x in &out.provision {
                if let Some(k) = &x.job {
                    let j = &jobs[k.job_id as usize];
                    let p = providers.iter().find(|p| p.name == x.provider).unwrap();
                    prop_assert!(covers(&p.labels, &j.labels));
                }
            }
            // Deterministic.
            let again = plan(&Inputs {
                jobs: &jobs,
                p2p: P2pDemand { pending: p2p_pending, assigned: 0 },
                runners: &rs,
                providers: &providers,
                limits: l,
                paused,
                now: now * MIN,
            });
            prop_assert_eq!(out, again);
        }
    }
}
