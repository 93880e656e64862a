//! Integration tests of the autoscaler's runner providers.
//!
//! - `local`: real processes (a shell script written by each test into a tempdir), real
//!   process groups and signals, `/proc` read for argv and liveness.
//! - `fly`: the Machines API faked by wiremock on 127.0.0.1 (`common/fly_fake.rs`, answering
//!   with the real examples of the Machines API docs), the real `FlyClient` in front.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use flotilla::autoscaler::provider::{
    self, BuildContext, ENV_JITCONFIG, ENV_RUNNER_NAME, FlyOptions, FlyProvider, InstanceRef,
    InstanceState, LaunchSpec, LocalInstanceId, LocalOptions, LocalProvider, Provider,
    ProviderConfig, ProviderError, ProviderKind,
};
use flotilla::compute::fly::{
    CreateMachineRequest, FlyApi, FlyClient, FlyConfig, MachineConfig, RetryPolicy,
};
use flotilla::github::types::SecretValue;
use secrecy::SecretString;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

#[path = "common/fly_fake.rs"]
mod fly_fake;
use fly_fake::{Fake, Kind};

/// A JIT config shaped like GitHub's (base64 of a JSON document); long enough to be unique.
const JIT: &str = "eyJydW5uZXIiOiJmbG90aWxsYS10ZXN0IiwiY3JlZGVudGlhbHMiOiJzM2NyM3RKSVQifQ==";
const GH: &str = "fake-gh-token-must-not-reach-runners";

/// Flotilla's own secrets are in the engine's environment, as in production.
fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| unsafe {
        std::env::set_var("GH_TOKEN", GH);
        std::env::set_var("FLY_API_TOKEN", "fo1_engine_token");
    });
}

fn spec(name: &str) -> LaunchSpec {
    LaunchSpec {
        name: name.into(),
        labels: vec!["self-hosted".into(), "linux".into()],
        jit_config: SecretValue::new(JIT),
        registration: None,
    }
}

// ---------------------------------------------------------------------------------------------
// local
// ---------------------------------------------------------------------------------------------

/// The test runner: records how it was called, prints its config (to test redaction), starts
/// a `sleep` child in its process group and waits.
const SCRIPT: &str = r#"#!/bin/sh
printf '%s' "$FLOTILLA_JITCONFIG" | wc -c | tr -d ' ' > "$OUT/len"
printf '%s' "$FLOTILLA_JITCONFIG" | sha256sum | cut -d' ' -f1 > "$OUT/hash"
for a in "$0" "$@"; do printf '%s\n' "$a"; done > "$OUT/argv"
printf '%s' "${GH_TOKEN:-unset}/${FLY_API_TOKEN:-unset}/$FLOTILLA_RUNNER_NAME/$EXTRA" > "$OUT/env"
echo "runner $FLOTILLA_RUNNER_NAME: config $FLOTILLA_JITCONFIG"
echo "on stderr: $FLOTILLA_JITCONFIG" >&2
[ -n "$IGNORE_TERM" ] && trap '' TERM
sleep 300 &
echo $! > "$OUT/sleep.pid"
touch "$OUT/ready"
wait
"#;

struct Local {
    _tmp: tempfile::TempDir,
    out: PathBuf,
    runners: PathBuf,
    cfg: ProviderConfig,
}

fn local_setup(extra_env: &[(&str, &str)]) -> Local {
    init();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let script = tmp.path().join("runner.sh");
    std::fs::write(&script, SCRIPT).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut env = BTreeMap::from([
        ("OUT".to_string(), out.display().to_string()),
        ("EXTRA".to_string(), "extra-value".to_string()),
    ]);
    for (k, v) in extra_env {
        env.insert(k.to_string(), v.to_string());
    }
    let cfg = ProviderConfig {
        name: "local-test".into(),
        kind: ProviderKind::Local,
        labels: vec!["self-hosted".into(), "linux".into()],
        command: vec![
            script.display().to_string(),
            "--once".into(),
            "arg with space".into(),
        ],
        max_runners: Some(3),
        image: None,
        region: None,
        cpu_kind: None,
        cpus: None,
        memory_mb: None,
        app: None,
        stop_grace_secs: None,
        env,
    };
    Local {
        runners: tmp.path().join("runners"),
        out,
        _tmp: tmp,
        cfg,
    }
}

fn opts(grace_ms: u64) -> LocalOptions {
    LocalOptions {
        stop_grace: Duration::from_millis(grace_ms),
        startup_window: Duration::from_millis(200),
        ..LocalOptions::default()
    }
}

async fn wait_file(p: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match std::fs::read_to_string(p) {
            Ok(s) if !s.is_empty() || p.ends_with("ready") => return s,
            _ => {}
        }
        assert!(Instant::now() < deadline, "{} never appeared", p.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pid_of(inst: &InstanceRef) -> u32 {
    LocalInstanceId::parse(&inst.id).expect("local id").pid
}

/// Alive and not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        let st = s[s.rfind(')').unwrap() + 1..].trim_start().chars().next();
        !matches!(st, Some('Z' | 'X'))
    })
}

/// Every file under `dir`, recursively, with its contents.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn local_config_arrives_by_env_only_and_stop_kills_the_group() {
    let l = local_setup(&[]);
    let p: Arc<dyn Provider> =
        Arc::new(LocalProvider::new(&l.cfg, &l.runners, opts(2000)).unwrap());
    assert_eq!((p.kind(), p.max_runners()), ("local", Some(3)));
    let inst = p.launch(&spec("flotilla-local-test-01")).await.unwrap();
    assert_eq!(inst.provider, "local-test");
    assert!(inst.id.starts_with("pid:"), "{}", inst.id);
    wait_file(&l.out.join("ready")).await;
    let pid = pid_of(&inst);

    // The config arrived whole, through the environment.
    assert_eq!(
        wait_file(&l.out.join("len")).await.trim(),
        JIT.len().to_string()
    );
    let want = format!("{:x}", Sha256::digest(JIT.as_bytes()));
    assert_eq!(wait_file(&l.out.join("hash")).await.trim(), want);
    // ... not through argv: the script saw exactly the configured arguments.
    let argv = wait_file(&l.out.join("argv")).await;
    assert_eq!(
        argv.lines().skip(1).collect::<Vec<_>>(),
        ["--once", "arg with space"]
    );
    assert!(!argv.contains(JIT));
    for member in [
        pid,
        wait_file(&l.out.join("sleep.pid"))
            .await
            .trim()
            .parse()
            .unwrap(),
    ] {
        let cmdline = std::fs::read(format!("/proc/{member}/cmdline")).unwrap();
        assert!(!contains(&cmdline, JIT), "config in the argv of {member}");
    }
    // Flotilla's secrets were removed; the runner name and the config's env were set.
    assert_eq!(
        wait_file(&l.out.join("env")).await,
        "unset/unset/flotilla-local-test-01/extra-value"
    );
    assert_eq!(
        (ENV_JITCONFIG, ENV_RUNNER_NAME),
        ("FLOTILLA_JITCONFIG", "FLOTILLA_RUNNER_NAME")
    );

    assert_eq!(p.state(&inst).await.unwrap(), InstanceState::Running);
    assert_eq!(p.list().await.unwrap(), vec![inst.clone()]);

    // Output captured (stdout and stderr), config redacted.
    let deadline = Instant::now() + Duration::from_secs(5);
    let out = loop {
        let o = p.output_tail(&inst).unwrap();
        if o.contains("on stderr") && o.contains("config ") || Instant::now() > deadline {
            break o;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        out.contains("runner flotilla-local-test-01: config [redacted]"),
        "{out}"
    );
    assert!(out.contains("on stderr: [redacted]"), "{out}");
    assert!(!out.contains(JIT) && !out.contains(&JIT[..20]), "{out}");

    // The record: the InstanceRef only, mode 0600, no config.
    let files = files_under(&l.runners);
    assert_eq!(files.len(), 1, "{files:?}");
    let (path, body) = &files[0];
    assert_eq!(path.file_name().unwrap(), "flotilla-local-test-01.json");
    assert_eq!(serde_json::from_slice::<InstanceRef>(body).unwrap(), inst);
    assert!(!contains(body, JIT) && !contains(body, &JIT[..16]));
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // Stop: the whole group dies, the record goes.
    let sleep_pid: u32 = wait_file(&l.out.join("sleep.pid"))
        .await
        .trim()
        .parse()
        .unwrap();
    assert!(alive(sleep_pid));
    let t = Instant::now();
    p.stop(&inst).await.unwrap();
    println!("stop (SIGTERM honoured) took {:?}", t.elapsed());
    assert!(!alive(pid) && !alive(sleep_pid), "group survived the stop");
    let st = p.state(&inst).await.unwrap();
    assert!(
        matches!(st, InstanceState::Exited { .. } | InstanceState::Gone),
        "{st:?}"
    );
    assert!(files_under(&l.runners).is_empty());
    assert!(p.list().await.unwrap().is_empty());
    // Idempotent.
    p.stop(&inst).await.unwrap();
}

#[tokio::test]
async fn local_stop_escalates_to_sigkill_after_the_grace() {
    let l = local_setup(&[("IGNORE_TERM", "1")]);
    let p = LocalProvider::new(&l.cfg, &l.runners, opts(300)).unwrap();
    let inst = p.launch(&spec("stubborn")).await.unwrap();
    wait_file(&l.out.join("ready")).await;
    let sleep_pid: u32 = wait_file(&l.out.join("sleep.pid"))
        .await
        .trim()
        .parse()
        .unwrap();
    let t = Instant::now();
    p.stop(&inst).await.unwrap();
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(!alive(pid_of(&inst)) && !alive(sleep_pid));
    // Killed by a signal: exited without a code.
    assert_eq!(
        p.state(&inst).await.unwrap(),
        InstanceState::Exited { code: None }
    );
    println!("SIGTERM ignored -> SIGKILL; stop took {took:?}");
}

#[tokio::test]
async fn local_instances_survive_an_engine_restart() {
    let l = local_setup(&[]);
    let ctx = BuildContext {
        runners_dir: l.runners.clone(),
        fly: None,
    };
    let first = provider::build(&l.cfg, &ctx).unwrap();
    let inst = first.launch(&spec("survivor")).await.unwrap();
    wait_file(&l.out.join("ready")).await;
    let sleep_pid: u32 = wait_file(&l.out.join("sleep.pid"))
        .await
        .trim()
        .parse()
        .unwrap();
    // The old engine goes away without stopping anything; the new one has only the state dir
    // and the InstanceRef as the controller stored it (JSON).
    let stored = serde_json::to_string(&inst).unwrap();
    drop(first);
    let second = provider::build(&l.cfg, &ctx).unwrap();
    let found = second.list().await.unwrap();
    assert_eq!(found, vec![inst.clone()]);
    let inst2: InstanceRef = serde_json::from_str(&stored).unwrap();
    assert_eq!(second.state(&inst2).await.unwrap(), InstanceState::Running);
    assert_eq!(
        second.output_tail(&inst2),
        None,
        "output is not kept across restarts"
    );
    second.stop(&inst2).await.unwrap();
    assert!(!alive(pid_of(&inst2)) && !alive(sleep_pid));
    assert!(second.list().await.unwrap().is_empty());
    assert_eq!(second.state(&inst2).await.unwrap(), InstanceState::Gone);
    assert!(files_under(&l.runners).is_empty());
}

#[tokio::test]
async fn local_pid_reuse_is_not_taken_for_our_runner() {
    let l = local_setup(&[]);
    let p = LocalProvider::new(&l.cfg, &l.runners, opts(200)).unwrap();
    // A process that is not ours, group leader of its own group, as a reused pid would be.
    let mut other = std::process::Command::new("sleep")
        .arg("60")
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = other.id();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let start: u64 = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .nth(19)
        .unwrap()
        .parse()
        .unwrap();
    let forged = InstanceRef {
        provider: "local-test".into(),
        id: format!("pid:{pid}:start:{}", start + 1),
    };
    assert_eq!(p.state(&forged).await.unwrap(), InstanceState::Gone);
    // A stale record of that instance (as left by a crash) is dropped by list.
    let rec = p.record_dir().join("stale.json");
    std::fs::write(&rec, serde_json::to_vec(&forged).unwrap()).unwrap();
    assert!(p.list().await.unwrap().is_empty());
    assert!(!rec.exists());
    // Stopping it is a no-op: the other process lives on.
    p.stop(&forged).await.unwrap();
    assert!(alive(pid), "stop signalled a process that is not ours");
    // With the right start time it would be taken for ours (the guard is the start time).
    let same = InstanceRef {
        provider: "local-test".into(),
        id: format!("pid:{pid}:start:{start}"),
    };
    assert_eq!(p.state(&same).await.unwrap(), InstanceState::Running);
    // Ids of other providers or of another shape are refused.
    let e = p
        .state(&InstanceRef {
            provider: "other".into(),
            id: same.id.clone(),
        })
        .await
        .unwrap_err();
    assert!(matches!(e, ProviderError::Foreign { .. }), "{e}");
    let e = p
        .stop(&InstanceRef {
            provider: "local-test".into(),
            id: "1857156b526dd8".into(),
        })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not one of ours"), "{e}");
    other.kill().unwrap();
    other.wait().unwrap();
}

#[tokio::test]
async fn local_launch_failures_are_clear_and_leave_nothing() {
    let l = local_setup(&[]);
    let missing = ProviderConfig {
        command: vec!["/nonexistent/actions-runner/run.sh".into()],
        ..l.cfg.clone()
    };
    let p = LocalProvider::new(&missing, &l.runners, opts(200)).unwrap();
    let e = p.launch(&spec("r-missing")).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ProviderError::Spawn { .. }), "{msg}");
    assert!(
        msg.contains("/nonexistent/actions-runner/run.sh") && msg.contains("command"),
        "{msg}"
    );
    assert!(!e.is_retryable());
    println!("{msg}");

    // Through a shell the operator chose: the shell starts, the runner does not.
    let via_sh = ProviderConfig {
        command: vec![
            "/bin/sh".into(),
            "-c".into(),
            "echo \"bad config $FLOTILLA_JITCONFIG\" >&2; exec /nonexistent/run.sh --jitconfig \"$FLOTILLA_JITCONFIG\"".into(),
        ],
        ..l.cfg.clone()
    };
    let p = LocalProvider::new(&via_sh, &l.runners, opts(200)).unwrap();
    let e = p.launch(&spec("r-sh")).await.unwrap_err();
    let msg = e.to_string();
    println!("{msg}");
    match &e {
        ProviderError::EarlyExit { code, output, .. } => {
            assert_eq!(*code, Some(127));
            assert!(output.contains("bad config [redacted]"), "{output}");
        }
        other => panic!("expected EarlyExit, got {other}"),
    }
    assert!(!msg.contains(JIT) && !msg.contains(&JIT[..16]), "{msg}");
    assert!(!e.is_retryable());
    assert!(p.list().await.unwrap().is_empty());
    assert!(files_under(&l.runners).is_empty());

    // A bad runner name never reaches the file system.
    let e = p.launch(&spec("../escape")).await.unwrap_err();
    assert!(matches!(e, ProviderError::BadSpec { .. }), "{e}");
}

#[tokio::test]
async fn local_output_tail_is_bounded_and_redacted() {
    init();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = ProviderConfig {
        name: "chatty".into(),
        kind: ProviderKind::Local,
        labels: vec!["x".into()],
        command: vec![
            "/bin/sh".into(),
            "-c".into(),
            // 100 KB of noise, then the config split over two writes.
            "head -c 100000 /dev/zero | tr '\\0' a; printf '%s' \"$FLOTILLA_JITCONFIG\" | head -c 20; printf '%s\\n' \"$FLOTILLA_JITCONFIG\" | tail -c +21; echo end".into(),
        ],
        max_runners: None,
        image: None,
        region: None,
        cpu_kind: None,
        cpus: None,
        memory_mb: None,
        app: None,
        stop_grace_secs: None,
        env: BTreeMap::new(),
    };
    let p = LocalProvider::new(
        &cfg,
        tmp.path(),
        LocalOptions {
            output_limit: 1024,
            ..opts(200)
        },
    )
    .unwrap();
    let inst = p.launch(&spec("chatty-1")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.output(&inst).unwrap().contains("end") {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        p.state(&inst).await.unwrap(),
        InstanceState::Exited { code: Some(0) }
    );
    let out = p.output(&inst).unwrap();
    assert!(out.len() <= 1024, "{}", out.len());
    assert!(
        out.ends_with("a[redacted]\nend\n"),
        "{:?}",
        &out[out.len() - 40..]
    );
    assert!(!out.contains(&JIT[..20]));
    // Exited and its group gone: not listed, record dropped; stop is still fine.
    assert!(p.list().await.unwrap().is_empty());
    p.stop(&inst).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// fly
// ---------------------------------------------------------------------------------------------

const APP: &str = "flotilla-runners";
const TOKEN: &str = "fo1_test_token_do_not_leak";

fn client_for(server: &MockServer) -> FlyClient {
    let mut cfg = FlyConfig::new(SecretString::from(TOKEN), APP);
    cfg.base_url = server.uri();
    cfg.retry = RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(1),
    };
    FlyClient::new(cfg).unwrap()
}

fn fly_cfg(name: &str) -> ProviderConfig {
    toml::from_str(&format!(
        r#"
        name = "{name}"
        kind = "fly"
        labels = ["self-hosted", "linux", "fly"]
        image = "registry.fly.io/flotilla-runner:2.321.0"
        region = "ord"
        cpus = 4
        memory_mb = 8192
        max_runners = 5
        env = {{ RUNNER_ALLOW_RUNASROOT = "1" }}
        "#
    ))
    .unwrap()
}

struct FlyWorld {
    server: MockServer,
    fake: Fake,
    api: Arc<FlyClient>,
    p: FlyProvider<FlyClient>,
}

async fn fly_world(launch_timeout: Duration) -> FlyWorld {
    let server = MockServer::start().await;
    let fake = Fake::new();
    fake.mount(&server).await;
    let api = Arc::new(client_for(&server));
    let p = FlyProvider::new(
        &fly_cfg("fly-test"),
        api.clone(),
        FlyOptions { launch_timeout },
    )
    .unwrap();
    FlyWorld {
        server,
        fake,
        api,
        p,
    }
}

impl FlyWorld {
    async fn requests(&self) -> Vec<Request> {
        self.server.received_requests().await.unwrap_or_default()
    }
    async fn lines(&self) -> Vec<String> {
        self.requests()
            .await
            .iter()
            .map(|r| {
                let q = r.url.query().map(|q| format!("?{q}")).unwrap_or_default();
                format!("{} {}{q}", r.method, r.url.path())
            })
            .collect()
    }
}

#[tokio::test]
async fn fly_launch_creates_an_ephemeral_runner_machine() {
    let w = fly_world(Duration::from_secs(30)).await;
    let p: &dyn Provider = &w.p;
    assert_eq!((p.kind(), p.max_runners()), ("fly", Some(5)));
    let inst = p.launch(&spec("flotilla-fly-test-01")).await.unwrap();
    assert_eq!(inst.provider, "fly-test");
    assert_eq!(w.fake.ids(), vec![inst.id.clone()]);

    let reqs = w.requests().await;
    let create: Value = serde_json::from_slice(&reqs[0].body).unwrap();
    assert_eq!(create["name"], "flotilla-fly-test-01");
    assert_eq!(create["region"], "ord");
    let c = &create["config"];
    assert_eq!(c["image"], "registry.fly.io/flotilla-runner:2.321.0");
    assert_eq!(
        c["env"],
        json!({
            "FLOTILLA_JITCONFIG": JIT,
            "FLOTILLA_RUNNER_NAME": "flotilla-fly-test-01",
            "RUNNER_ALLOW_RUNASROOT": "1",
        })
    );
    assert_eq!(
        c["metadata"],
        json!({
            "flotilla_role": "runner",
            "flotilla_runner": "flotilla-fly-test-01",
            "flotilla_provider": "fly-test",
        })
    );
    assert_eq!(c["auto_destroy"], true);
    assert_eq!(c["restart"], json!({"policy": "no"}));
    assert_eq!(
        c["guest"],
        json!({"cpu_kind": "shared", "cpus": 4, "memory_mb": 8192})
    );
    let lines = w.lines().await;
    assert_eq!(lines[0], format!("POST /v1/apps/{APP}/machines"));
    assert!(
        lines[1].starts_with(&format!(
            "GET /v1/apps/{APP}/machines/{}/wait?state=started",
            inst.id
        )),
        "{lines:?}"
    );
    assert_eq!(p.state(&inst).await.unwrap(), InstanceState::Running);
}

#[tokio::test]
async fn fly_list_finds_only_this_providers_runner_machines() {
    let w = fly_world(Duration::from_secs(30)).await;
    let other =
        FlyProvider::new(&fly_cfg("fly-other"), w.api.clone(), FlyOptions::default()).unwrap();
    let ours = w.p.launch(&spec("ours-1")).await.unwrap();
    let theirs = other.launch(&spec("theirs-1")).await.unwrap();
    // A compute VM in the same app (metadata of the VM manager, no runner role).
    let vm = w
        .api
        .create_machine(&CreateMachineRequest {
            name: Some("vm-alice-1".into()),
            config: MachineConfig {
                image: "ubuntu:24.04".into(),
                metadata: BTreeMap::from([("flotilla_vm_id".into(), "vm-1".into())]),
                ..Default::default()
            },
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(w.p.list().await.unwrap(), vec![ours.clone()]);
    assert_eq!(other.list().await.unwrap(), vec![theirs.clone()]);

    // The VM is not ours: state and stop refuse it, and it survives.
    let vm_ref = InstanceRef {
        provider: "fly-test".into(),
        id: vm.id.clone(),
    };
    let e = w.p.stop(&vm_ref).await.unwrap_err();
    assert!(matches!(e, ProviderError::Foreign { .. }), "{e}");
    let e = w.p.state(&vm_ref).await.unwrap_err();
    assert!(e.to_string().contains("flotilla_role=runner"), "{e}");
    // Another provider's runner is not ours either.
    let e =
        w.p.stop(&InstanceRef {
            provider: "fly-test".into(),
            id: theirs.id.clone(),
        })
        .await
        .unwrap_err();
    assert!(matches!(e, ProviderError::Foreign { .. }), "{e}");
    let mut left = w.fake.ids();
    left.sort();
    let mut want = vec![ours.id, theirs.id, vm.id];
    want.sort();
    assert_eq!(left, want);
}

#[tokio::test]
async fn fly_stop_force_deletes_and_is_idempotent() {
    let w = fly_world(Duration::from_secs(30)).await;
    let inst = w.p.launch(&spec("to-stop")).await.unwrap();
    w.p.stop(&inst).await.unwrap();
    assert!(w.fake.ids().is_empty());
    let lines = w.lines().await;
    assert!(
        lines.contains(&format!(
            "DELETE /v1/apps/{APP}/machines/{}?force=true",
            inst.id
        )),
        "{lines:?}"
    );
    assert_eq!(w.p.state(&inst).await.unwrap(), InstanceState::Gone);
    // Gone: stop again is Ok (the GET says 404, nothing is deleted).
    w.p.stop(&inst).await.unwrap();
    assert!(w.p.list().await.unwrap().is_empty());

    // Gone between our GET and our DELETE: a 404 on the DELETE is Ok too.
    let inst = w.p.launch(&spec("racing")).await.unwrap();
    Mock::given(method("DELETE"))
        .and(path_regex(r"/machines/[^/]+$"))
        .respond_with(
            ResponseTemplate::new(404).set_body_json(json!({"error": "machine not found"})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&w.server)
        .await;
    w.p.stop(&inst).await.unwrap();
}

#[tokio::test]
async fn fly_failed_wait_deletes_the_machine() {
    let w = fly_world(Duration::from_secs(1)).await;
    // Fly's wait answers 408 when the machine does not reach the state in time.
    Mock::given(method("GET"))
        .and(path_regex(r"/machines/[^/]+/wait$"))
        .respond_with(
            ResponseTemplate::new(408).set_body_json(
                json!({"error": "deadline_exceeded: machine did not reach started"}),
            ),
        )
        .with_priority(1)
        .mount(&w.server)
        .await;
    let t = Instant::now();
    let e = w.p.launch(&spec("never-starts")).await.unwrap_err();
    let msg = e.to_string();
    println!("{msg} (after {:?})", t.elapsed());
    assert!(
        msg.contains("waiting for machine") && msg.contains("the machine was deleted"),
        "{msg}"
    );
    assert!(e.is_retryable());
    assert!(!msg.contains(JIT) && !msg.contains(TOKEN));
    assert!(w.fake.ids().is_empty(), "machine leaked");
    let lines = w.lines().await;
    assert!(
        lines.iter().filter(|l| l.contains("/wait?")).count() >= 2,
        "{lines:?}"
    );
    assert!(
        lines.last().unwrap().starts_with("DELETE")
            && lines.last().unwrap().ends_with("?force=true")
    );
}

#[tokio::test]
async fn fly_create_that_landed_but_failed_is_cleaned_up() {
    let w = fly_world(Duration::from_secs(30)).await;
    // The machine is made, but the answer is unreadable (as a cut connection would leave it).
    let fake = w.fake.clone();
    Mock::given(method("POST"))
        .and(path_regex(r"/machines$"))
        .respond_with(move |req: &Request| {
            let _ = fake.handle(Kind::Create, req);
            ResponseTemplate::new(200).set_body_raw(b"{\"id\": ".to_vec(), "application/json")
        })
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&w.server)
        .await;
    let e = w.p.launch(&spec("half-made")).await.unwrap_err();
    let msg = e.to_string();
    println!("{msg}");
    assert!(msg.contains("deleted machine"), "{msg}");
    assert!(w.fake.ids().is_empty(), "machine leaked");

    // A refused create (Fly echoing the request back): nothing to clean, no secret shown.
    Mock::given(method("POST"))
        .and(path_regex(r"/machines$"))
        .respond_with(|req: &Request| {
            ResponseTemplate::new(422)
                .set_body_json(json!({"error": String::from_utf8_lossy(&req.body)}))
        })
        .with_priority(1)
        .mount(&w.server)
        .await;
    let e = w.p.launch(&spec("refused")).await.unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("no machine was left behind"), "{msg}");
    assert!(
        !msg.contains(JIT) && !msg.contains(&JIT[..16]) && !msg.contains(TOKEN),
        "{msg}"
    );
    assert!(!e.is_retryable());
    assert!(!format!("{e:?}").contains(JIT));
    assert!(w.fake.ids().is_empty());
}
