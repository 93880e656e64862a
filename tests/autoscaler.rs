//! The autoscaler against a stateful fake GitHub (built from the recorded OpenAPI examples)
//! and the real `local` provider running a runner script of the test's own.
//!
//! The script plays the Actions runner: it records its start time and a SHA-256 of the JIT
//! config it got in `FLOTILLA_JITCONFIG`, then waits to be told its job is over. A driver task
//! plays GitHub's side: a runner that presents the JIT config issued for its name comes
//! online and takes the oldest queued job; the job ends after a short while and the ephemeral
//! runner unregisters.
//!
//! Figures (printed; run with `--nocapture`): time from a job appearing in the queue to its
//! runner's process starting, with a 1 s check interval; API calls per check for 10
//! repositories with the cache on.

#[path = "common/gh_fake.rs"]
mod gh_fake;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla::autoscaler::controller::{Controller, Settings};
use flotilla::autoscaler::policy::{Limits, RunnerState};
use flotilla::autoscaler::provider::{self, BuildContext, Provider, ProviderConfig};
use flotilla::autoscaler::store::AutoscalerStore;
use flotilla::clock::{SharedClock, SystemClock};
use flotilla::github::{ClientConfig, GithubCache, GithubClient, GithubToken};
use gh_fake::FakeGithub;
use rusqlite::Connection;
use sha2::{Digest, Sha256};

const TOKEN: &str = "fake-autoscaler-test-token-0123456789";
const LABELS: &[&str] = &["self-hosted", "linux"];

fn runner_script(dir: &Path, fail_first: u32) -> PathBuf {
    let p = dir.join("fake-runner.sh");
    let script = format!(
        r#"#!/bin/sh
# A stand-in for the Actions runner: proves it got its JIT config through the environment,
# then waits until the test says its job is over.
d="$FAKE_RUNNER_DIR"
n=$(cat "$d/launches" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$d/launches"
if [ "$n" -le {fail_first} ]; then echo "simulated runner failure $n" >&2; exit 3; fi
h=$(printf %s "$FLOTILLA_JITCONFIG" | sha256sum | cut -d' ' -f1)
r=$(printf %s "$FLOTILLA_RUNNER_TOKEN" | sha256sum | cut -d' ' -f1)
printf '%s %s %s %s %s\n' "$(date +%s%3N)" "$h" "$r" "${{FLOTILLA_RUNNER_URL:--}}" "${{FLOTILLA_RUNNER_LABELS:--}}" > "$d/$FLOTILLA_RUNNER_NAME.tmp"
mv "$d/$FLOTILLA_RUNNER_NAME.tmp" "$d/$FLOTILLA_RUNNER_NAME.started"
while [ ! -e "$d/$FLOTILLA_RUNNER_NAME.done" ]; do sleep 0.05; done
exit 0
"#
    );
    std::fs::write(&p, script).unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    p
}

fn provider_cfg(script: &Path, runner_dir: &Path) -> ProviderConfig {
    let toml = format!(
        r#"
name = "local-linux"
kind = "local"
labels = ["self-hosted", "linux", "x64"]
command = ["{}"]
stop_grace_secs = 1
[env]
FAKE_RUNNER_DIR = "{}"
"#,
        script.display(),
        runner_dir.display()
    );
    toml::from_str(&toml).unwrap()
}

struct World {
    gh: FakeGithub,
    _server: wiremock::MockServer,
    tmp: tempfile::TempDir,
    runner_dir: PathBuf,
    db: PathBuf,
    client: GithubClient,
    cfg: ProviderConfig,
    /// Startup figures, ms.
    startups: Arc<Mutex<Vec<i64>>>,
    /// Registration URLs runners were given (fallback mode).
    urls: Arc<Mutex<Vec<String>>>,
}

impl World {
    async fn new(repos: &[&str], fail_first: u32) -> World {
        Self::with_clock(repos, fail_first, Arc::new(SystemClock)).await
    }

    async fn with_clock(repos: &[&str], fail_first: u32, clock: SharedClock) -> World {
        let (gh, server) = FakeGithub::start("acme", repos).await;
        let tmp = tempfile::tempdir().unwrap();
        let runner_dir = tmp.path().join("runner-side");
        std::fs::create_dir_all(&runner_dir).unwrap();
        let script = runner_script(tmp.path(), fail_first);
        let db = tmp.path().join("data").join("flotilla.db");
        std::fs::create_dir_all(db.parent().unwrap()).unwrap();
        // The real store (migrations) so the tables are the engine's.
        drop(flotilla::store::Store::open(&db).unwrap());
        let cache_conn = Connection::open(&db).unwrap();
        let client = GithubClient::new(
            GithubToken::new(TOKEN),
            ClientConfig {
                base_url: gh.uri.clone(),
                ..ClientConfig::default()
            },
            GithubCache::new(cache_conn, 1 << 22).unwrap(),
            clock,
        )
        .unwrap();
        World {
            cfg: provider_cfg(&script, &runner_dir),
            gh,
            _server: server,
            tmp,
            runner_dir,
            db,
            client,
            startups: Arc::new(Mutex::new(Vec::new())),
            urls: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn provider(&self) -> Arc<dyn Provider> {
        provider::build(
            &self.cfg,
            &BuildContext {
                runners_dir: self.tmp.path().join("data").join("runners"),
                fly: None,
            },
        )
        .unwrap()
    }

    fn settings(&self, max: u32) -> Settings {
        Settings {
            owner: Some("acme".into()),
            repos: Vec::new(),
            since_days: 1,
            limits: Limits {
                max_runners: max,
                min_idle: 0,
                idle_grace_ms: 2_000,
                bootstrap_timeout_ms: 60_000,
            },
            failure_limit: 5,
            name_prefix: "flotilla".into(),
            node_tag: "n1".into(),
            backoff_ms: 100,
            runs_per_repo: 50,
        }
    }

    /// GitHub's side: runners that started present their JIT config and take a job; jobs end
    /// after `job_ms`.
    fn drive(&self, job_ms: u64) -> tokio::task::JoinHandle<()> {
        let gh = self.gh.clone();
        let dir = self.runner_dir.clone();
        let startups = self.startups.clone();
        let urls = self.urls.clone();
        tokio::spawn(async move {
            let mut seen: BTreeMap<String, ()> = BTreeMap::new();
            let mut ending: Vec<(tokio::time::Instant, String)> = Vec::new();
            loop {
                if let Ok(rd) = std::fs::read_dir(&dir) {
                    for e in rd.flatten() {
                        let f = e.file_name().to_string_lossy().to_string();
                        let Some(name) = f.strip_suffix(".started") else {
                            continue;
                        };
                        if seen.insert(name.to_string(), ()).is_some() {
                            continue;
                        }
                        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                        let mut it = text.split_whitespace();
                        let started: i64 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
                        let hash = it.next().unwrap_or("").to_string();
                        let reg_hash = it.next().unwrap_or("").to_string();
                        let url = it.next().unwrap_or("-").to_string();
                        let labels = it.next().unwrap_or("-").to_string();
                        let jit = gh.state.lock().unwrap().jit_issued.get(name).cloned();
                        let connected = match jit {
                            Some(jit) => {
                                let want = hex(&Sha256::digest(jit.as_bytes()));
                                assert_eq!(hash, want, "{name} did not get its own JIT config");
                                gh.runner_connects(name, &jit)
                            }
                            None => {
                                // The registration-token fallback.
                                let tokens = gh.state.lock().unwrap().reg_tokens.clone();
                                let token = tokens
                                    .iter()
                                    .find(|t| hex(&Sha256::digest(t.as_bytes())) == reg_hash)
                                    .unwrap_or_else(|| panic!("{name}: no credential it was given"))
                                    .clone();
                                urls.lock().unwrap().push(url.clone());
                                let l: Vec<String> = labels.split(',').map(String::from).collect();
                                gh.runner_registers(name, &token, &l)
                            }
                        };
                        match connected {
                            Ok(Some(job)) => {
                                let q = gh
                                    .state
                                    .lock()
                                    .unwrap()
                                    .jobs
                                    .iter()
                                    .find(|j| j.id == job)
                                    .map(|j| j.queued_ms)
                                    .unwrap();
                                startups.lock().unwrap().push(started - q);
                                ending.push((
                                    tokio::time::Instant::now() + Duration::from_millis(job_ms),
                                    name.to_string(),
                                ));
                            }
                            Ok(None) => {}
                            Err(e) => panic!("runner {name}: {e}"),
                        }
                    }
                }
                let now = tokio::time::Instant::now();
                ending.retain(|(at, name)| {
                    if *at <= now {
                        gh.job_done(name);
                        std::fs::write(dir.join(format!("{name}.done")), b"").unwrap();
                        false
                    } else {
                        true
                    }
                });
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    }

    fn secrets_absent_from_disk(&self) {
        let jits: Vec<String> = self
            .gh
            .state
            .lock()
            .unwrap()
            .jit_issued
            .values()
            .cloned()
            .collect();
        assert!(!jits.is_empty());
        for entry in walk(&self.tmp.path().join("data")) {
            let bytes = std::fs::read(&entry).unwrap_or_default();
            for j in jits.iter().map(String::as_str).chain([TOKEN]) {
                assert!(
                    memchr::memmem::find(&bytes, j.as_bytes()).is_none(),
                    "a secret is in {} in clear",
                    entry.display()
                );
            }
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn live(conn: &Connection) -> Vec<flotilla::autoscaler::store::RunnerRow> {
    AutoscalerStore::new(conn).runners(true).unwrap()
}

fn pct(v: &mut [i64], p: f64) -> i64 {
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "current_thread")]
async fn queued_jobs_get_runners_up_to_the_max_then_runners_go() {
    let w = World::new(&["acme/app", "acme/lib"], 0).await;
    let conn = Connection::open(&w.db).unwrap();
    let prov = w.provider();
    let clock: SharedClock = Arc::new(SystemClock);
    let mut ctl = Controller::new(
        &w.client,
        &conn,
        vec![prov.clone()],
        clock,
        w.settings(2),
        None,
    );
    let driver = w.drive(1_500);
    w.gh.queue_job("acme/app", 1, 11, LABELS);
    w.gh.queue_job("acme/app", 1, 12, LABELS);
    w.gh.queue_job("acme/lib", 2, 21, LABELS);
    // A GitHub-hosted job is not ours.
    w.gh.queue_job("acme/lib", 3, 31, &["ubuntu-latest"]);
    let mut max_live = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut first = None;
    loop {
        let r = ctl.check().await;
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        if first.is_none() {
            first = Some(r.clone());
        }
        let n = live(&conn).len();
        max_live = max_live.max(n);
        assert!(n <= 2, "over the max: {n} live runners");
        if w.gh.jobs_with("completed") == 3 && n == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "jobs not served: {r:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    driver.abort();
    let first = first.unwrap();
    assert_eq!(
        first.queued_jobs, 4,
        "counted per job, GitHub-hosted included in the count"
    );
    assert_eq!(first.provisioned.len(), 2, "two runners at once: the max");
    assert_eq!(first.deferred, 1, "the third job waits for capacity");
    assert_eq!(first.unmatched, 1, "ubuntu-latest is GitHub's");
    assert_eq!(max_live, 2);
    // Each job ran on its own runner; one JIT config per runner, none reused.
    {
        let st = w.gh.state.lock().unwrap();
        let runners: std::collections::BTreeSet<_> = st
            .jobs
            .iter()
            .filter(|j| j.status == "completed")
            .map(|j| j.runner_name.clone().unwrap())
            .collect();
        assert_eq!(runners.len(), 3);
        let jits: std::collections::BTreeSet<_> = st.jit_issued.values().collect();
        assert_eq!(jits.len(), st.jit_issued.len());
        assert_eq!(st.jit_issued.len(), 3, "no runner more than needed");
        assert!(
            st.runners.is_empty(),
            "ephemeral runners unregistered: {:?}",
            st.runners
        );
    }
    // No process left behind.
    assert!(prov.list().await.unwrap().is_empty());
    // The store says so too, and holds no secret.
    let all = AutoscalerStore::new(&conn).runners(false).unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|r| r.state == RunnerState::Gone), "{all:?}");
    let (wait, start) = AutoscalerStore::new(&conn).wait_figures(100).unwrap();
    assert!(wait.is_some() && start.is_some());
    w.secrets_absent_from_disk();
    let mut s = w.startups.lock().unwrap().clone();
    eprintln!(
        "FIGURE startup (job queued -> runner process started, 1 s interval, max 2 runners, \
         3 jobs): p50 {} ms, max {} ms; store medians: queue wait {:?} ms, launch {:?} ms",
        pct(&mut s, 0.5),
        pct(&mut s, 1.0),
        wait,
        start
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_failing_provider_is_retried_without_leaks() {
    // The first two launches die at once (exit 3).
    let w = World::new(&["acme/app"], 2).await;
    let conn = Connection::open(&w.db).unwrap();
    let prov = w.provider();
    let clock: SharedClock = Arc::new(SystemClock);
    let mut ctl = Controller::new(
        &w.client,
        &conn,
        vec![prov.clone()],
        clock,
        w.settings(2),
        None,
    );
    let driver = w.drive(300);
    w.gh.queue_job("acme/app", 1, 11, LABELS);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut errors = Vec::new();
    let mut max_streak = 0;
    loop {
        let r = ctl.check().await;
        errors.extend(r.errors.clone());
        max_streak = max_streak.max(
            AutoscalerStore::new(&conn)
                .counter("failures:local-linux")
                .unwrap(),
        );
        if w.gh.jobs_with("completed") == 1 && live(&conn).is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not recovered: {errors:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The failure streak was kept in the store (a restart keeps a stopped provider stopped)
    // and cleared by the first good launch.
    assert!(max_streak >= 1, "streak not stored");
    assert_eq!(
        AutoscalerStore::new(&conn)
            .counter("failures:local-linux")
            .unwrap(),
        0
    );
    driver.abort();
    let launches: u32 = std::fs::read_to_string(w.runner_dir.join("launches"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        launches >= 3,
        "retried after failures: {launches} launch(es)"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("simulated runner failure") || e.contains("exit")),
        "the failure is reported: {errors:?}"
    );
    {
        let st = w.gh.state.lock().unwrap();
        // Every registration made for a runner that died was removed: nothing lingers at GitHub.
        assert!(
            st.runners.is_empty(),
            "leaked registrations: {:?}",
            st.runners
        );
        assert_eq!(st.deleted_runners.len() as u32, launches - 1);
    }
    assert!(prov.list().await.unwrap().is_empty(), "leaked instances");
    let all = AutoscalerStore::new(&conn).runners(false).unwrap();
    assert!(all.iter().all(|r| r.state == RunnerState::Gone), "{all:?}");
    assert!(all.iter().any(|r| r.last_error.is_some()));
    w.secrets_absent_from_disk();
}

#[tokio::test(flavor = "current_thread")]
async fn a_restart_mid_scale_creates_no_duplicate() {
    let w = World::new(&["acme/app"], 0).await;
    let clock: SharedClock = Arc::new(SystemClock);
    w.gh.queue_job("acme/app", 1, 11, LABELS);
    w.gh.queue_job("acme/app", 1, 12, LABELS);
    {
        let conn = Connection::open(&w.db).unwrap();
        let mut ctl = Controller::new(
            &w.client,
            &conn,
            vec![w.provider()],
            clock.clone(),
            w.settings(4),
            None,
        );
        let r = ctl.check().await;
        assert_eq!(r.provisioned.len(), 2, "{r:?}");
        // A crash in the middle of the next launch: the row is written and GitHub registered
        // the runner, but nothing was started and the JIT config is gone with the process.
        let s = AutoscalerStore::new(&conn);
        let labels = vec!["self-hosted".to_string()];
        s.insert_runner(
            &flotilla::autoscaler::store::NewRunner {
                id: "run-halfdone",
                name: "flotilla-local-linux-halfdone",
                scope: "org:acme",
                provider: "local-linux",
                labels: &labels,
                job: None,
            },
            clock.now_ms(),
        )
        .unwrap();
        let mut st = w.gh.state.lock().unwrap();
        st.next_id += 1;
        let id = 1000 + st.next_id;
        st.runners.push(gh_fake::FakeRunner {
            id,
            name: "flotilla-local-linux-halfdone".into(),
            online: false,
            busy: false,
            labels: labels.clone(),
            jit: "lost".into(),
        });
        st.jit_issued
            .insert("flotilla-local-linux-halfdone".into(), "lost".into());
        drop(st);
        s.set_registered("run-halfdone", id).unwrap();
        // The engine dies here: the controller and provider go away, the processes stay.
    }
    let conn = Connection::open(&w.db).unwrap();
    let prov = w.provider();
    let mut ctl = Controller::new(
        &w.client,
        &conn,
        vec![prov.clone()],
        clock,
        w.settings(4),
        None,
    );
    assert_eq!(ctl.recover().await, 1, "the half-done launch is undone");
    assert!(!w.gh.runner_names().iter().any(|n| n.ends_with("halfdone")));
    // The two runners from before the restart still serve the two jobs: no new ones.
    let r = ctl.check().await;
    assert!(
        r.provisioned.is_empty(),
        "duplicate runners after restart: {r:?}"
    );
    assert_eq!(
        prov.list().await.unwrap().len(),
        2,
        "the new provider finds the old processes"
    );
    let driver = w.drive(300);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        ctl.check().await;
        if w.gh.jobs_with("completed") == 2 && live(&conn).is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not finished");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    driver.abort();
    assert_eq!(
        w.gh.state.lock().unwrap().jit_issued.len(),
        3,
        "2 runners + the half-done one, nothing more"
    );
    assert!(prov.list().await.unwrap().is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn api_calls_per_check_for_ten_repositories() {
    let repos: Vec<String> = (0..10).map(|i| format!("acme/repo{i}")).collect();
    let refs: Vec<&str> = repos.iter().map(String::as_str).collect();
    // The default interval (60 s) between checks, on a manual clock: every cached answer is
    // past its freshness window and revalidated.
    let manual = flotilla::clock::ManualClock::new(1_795_000_000_000);
    let clock: SharedClock = Arc::new(manual.clone());
    let w = World::with_clock(&refs, 0, clock.clone()).await;
    let conn = Connection::open(&w.db).unwrap();
    let mut ctl = Controller::new(
        &w.client,
        &conn,
        vec![w.provider()],
        clock,
        w.settings(4),
        None,
    );
    // One queued job somewhere, so a check reads jobs too.
    w.gh.queue_job("acme/repo3", 1, 11, &["self-hosted", "gpu"]);
    let mut figures = Vec::new();
    for _ in 0..3 {
        let (before, nm_before) = w.gh.request_counts();
        let r = ctl.check().await;
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        let (after, nm_after) = w.gh.request_counts();
        figures.push((after - before, nm_after - nm_before, r.api_calls));
        manual.advance(61_000);
    }
    eprintln!(
        "FIGURE API calls per check, 10 repos, cache on: {:?} (requests reaching the server, \
         of which 304 = no rate-limit cost, client-counted calls)",
        figures
    );
    let (first, _, _) = figures[0];
    // 1 account + 1 repo list + 20 run lists (queued, in_progress) + 1 jobs + 1 workflow
    // file + runner groups/runners: about 25 on a cold cache.
    assert!(first <= 30, "{first} requests on the first check");
    // Later checks cost no rate limit for what did not change: they are 304s (the repository
    // list, runner groups and workflow files are still fresh and not asked for at all).
    for (n, nm, _) in &figures[1..] {
        assert!(n - *nm as usize <= 1, "{n} requests, only {nm} were 304");
        assert!(*n < first, "{n} requests on a warm cache");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn without_jit_a_registration_token_is_used_once_per_runner() {
    let w = World::new(&["acme/app"], 0).await;
    w.gh.state.lock().unwrap().jit_status = Some(404);
    let conn = Connection::open(&w.db).unwrap();
    let prov = w.provider();
    let clock: SharedClock = Arc::new(SystemClock);
    let mut ctl = Controller::new(
        &w.client,
        &conn,
        vec![prov.clone()],
        clock,
        w.settings(2),
        None,
    );
    // Jobs long enough for a check to see the runners registered.
    let driver = w.drive(2_500);
    w.gh.queue_job("acme/app", 1, 11, LABELS);
    w.gh.queue_job("acme/app", 1, 12, LABELS);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = ctl.check().await;
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        if w.gh.jobs_with("completed") == 2 && live(&conn).is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not served");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    driver.abort();
    {
        let st = w.gh.state.lock().unwrap();
        assert_eq!(st.reg_tokens.len(), 2, "one registration token per runner");
        assert!(st.runners.is_empty());
    }
    let urls = w.urls.lock().unwrap().clone();
    assert_eq!(urls.len(), 2);
    assert!(urls.iter().all(|u| u.ends_with("/acme")), "{urls:?}");
    // Token-registered runners were found by name and their GitHub ids recorded.
    let all = AutoscalerStore::new(&conn).runners(false).unwrap();
    assert!(all.iter().all(|r| r.gh_runner_id.is_some()), "{all:?}");
    let tokens = w.gh.state.lock().unwrap().reg_tokens.clone();
    for entry in walk(&w.tmp.path().join("data")) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        for t in &tokens {
            assert!(memchr::memmem::find(&bytes, t.as_bytes()).is_none());
        }
    }
    assert!(prov.list().await.unwrap().is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn orphans_are_removed_on_both_sides() {
    let w = World::new(&["acme/app"], 0).await;
    let conn = Connection::open(&w.db).unwrap();
    let prov = w.provider();
    // A runner of ours that no row knows (a crash before the row was written, an old
    // install), a runner that is not ours, and a process of ours nothing refers to.
    {
        let mut st = w.gh.state.lock().unwrap();
        for (id, name) in [
            (501, "flotilla-n1-local-linux-stray"),
            (502, "build-box-7"),
            // Another node's runner (same owner, same prefix): not ours to remove.
            (503, "flotilla-n2-local-linux-01jdz"),
        ] {
            st.runners.push(gh_fake::FakeRunner {
                id,
                name: name.into(),
                online: false,
                busy: false,
                labels: vec!["self-hosted".into()],
                jit: String::new(),
            });
        }
    }
    let stray = prov
        .launch(&flotilla::autoscaler::provider::LaunchSpec {
            name: "flotilla-local-linux-strayproc".into(),
            labels: vec![],
            jit_config: flotilla::github::types::SecretValue::new("c3RyYXk="),
            registration: None,
        })
        .await
        .unwrap();
    assert_eq!(prov.list().await.unwrap().len(), 1);
    let clock: SharedClock = Arc::new(SystemClock);
    let mut ctl = Controller::new(
        &w.client,
        &conn,
        vec![prov.clone()],
        clock,
        w.settings(2),
        None,
    );
    let r = ctl.check().await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.orphans, 2, "{r:?}");
    assert_eq!(
        w.gh.runner_names(),
        vec![
            "build-box-7".to_string(),
            "flotilla-n2-local-linux-01jdz".to_string()
        ]
    );
    assert!(prov.list().await.unwrap().is_empty());
    assert!(matches!(
        prov.state(&stray).await.unwrap(),
        flotilla::autoscaler::provider::InstanceState::Gone
            | flotilla::autoscaler::provider::InstanceState::Exited { .. }
    ));
    assert_eq!(
        AutoscalerStore::new(&conn)
            .counter("orphans_removed")
            .unwrap(),
        2
    );
}
