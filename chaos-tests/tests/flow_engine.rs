//! The flow engine on a real 3-node cluster, its leader killed at every point of a three-step
//! flow whose middle step is a side effect (the self-test flow, `api::flow::selftest`): before
//! step 1, between steps 1 and 2 (the side effect received, not yet performed), during the side
//! effect (performed, not yet answered), between steps 2 and 3, and, with a failure injected,
//! during the rollback. The receiver is an HTTP server this test runs; it records every request
//! by its idempotency key.
//!
//! Each run must end Done exactly once (every forward step committed once), the side effect
//! must be applied once by key at the receiver (re-issued requests are answered from its
//! record), and a failure injected at step k must leave no trace of steps < k (markers gone,
//! side effect reverted).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::io::BufReader;
use std::io::Read;
use std::io::Write;
use std::net::TcpListener;
use std::net::TcpStream;
use std::sync::mpsc;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use chaos_tests::cluster::Cluster;
use chaos_tests::cluster::ClusterOpts;
use chaos_tests::zstack_client::new_job_uuid;
use chaos_tests::zstack_client::ZsClient;
use serde_json::json;
use serde_json::Value;

/// Where a run's leader is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KillAt {
    /// Right after the submit: step 1 is not committed yet (the executor pauses before it).
    BeforeStep1,
    /// When the receiver gets the side effect: step 1 committed, the effect not performed.
    EffectReceived,
    /// After the receiver performed the effect, before it answers.
    EffectPerformed,
    /// Once step 2's outcome is committed, before step 3.
    BetweenSteps2And3,
    /// Nowhere.
    Never,
}

/// What the receiver has seen.
#[derive(Default)]
struct Seen {
    /// Applies per flow key.
    applied: BTreeMap<String, u32>,
    /// Reverts per flow key.
    reverted: BTreeMap<String, u32>,
    /// The answer given per idempotency key.
    answers: BTreeMap<String, Value>,
    /// Requests answered from `answers` (re-issued after a leader change).
    repeats: u32,
    /// The highest leadership term a request came with.
    max_term: u64,
    /// Requests refused for a term below `max_term` (a deposed leader's).
    stale: u32,
}

/// A hook: stop on this (flow key, before/after performing) and let the test act first; then
/// either drop the request (its sender was killed) or serve it (`resume`).
#[derive(Clone, PartialEq, Eq)]
struct Hook {
    key: String,
    after: bool,
    resume: bool,
}

struct Receiver {
    url: String,
    seen: Arc<Mutex<Seen>>,
    hook: Arc<Mutex<Option<Hook>>>,
    events: mpsc::Receiver<mpsc::Sender<()>>,
}

fn read_request(stream: &mut TcpStream) -> Option<Value> {
    let mut r = BufReader::new(stream.try_clone().ok()?);
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

fn answer(stream: &mut TcpStream, v: &Value) {
    answer_status(stream, 200, v)
}

fn answer_status(stream: &mut TcpStream, status: u16, v: &Value) {
    let body = v.to_string();
    // The leader may be dead by now: a failed write is what a dead client looks like.
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let url = format!("http://{}/selftest", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Seen::default()));
        let hook: Arc<Mutex<Option<Hook>>> = Arc::new(Mutex::new(None));
        let (tx, events) = mpsc::channel::<mpsc::Sender<()>>();
        let (s, h) = (seen.clone(), hook.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (s, h, tx) = (s.clone(), h.clone(), tx.clone());
                std::thread::spawn(move || serve(stream, &s, &h, &tx));
            }
        });
        Receiver {
            url,
            seen,
            hook,
            events,
        }
    }

    fn arm(&self, key: &str, after_perform: bool) {
        *self.hook.lock().unwrap() = Some(Hook {
            key: key.to_string(),
            after: after_perform,
            resume: false,
        });
    }

    /// Hold the next request for `key` until released, then serve it.
    fn arm_hold(&self, key: &str) {
        *self.hook.lock().unwrap() = Some(Hook {
            key: key.to_string(),
            after: false,
            resume: true,
        });
    }

    /// Wait for the armed hook to fire; returns the sender that releases the receiver.
    fn wait_hook(&self, timeout: Duration) -> mpsc::Sender<()> {
        self.events
            .recv_timeout(timeout)
            .expect("the receiver's hook did not fire")
    }
}

fn serve(
    mut stream: TcpStream,
    seen: &Mutex<Seen>,
    hook: &Mutex<Option<Hook>>,
    events: &mpsc::Sender<mpsc::Sender<()>>,
) {
    let Some(req) = read_request(&mut stream) else {
        return;
    };
    let idem = req["key"].as_str().unwrap_or_default().to_string();
    let action = req["action"].as_str().unwrap_or_default().to_string();
    let flow_key = req["payload"]["key"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let term = req["term"].as_u64().unwrap_or(0);
    {
        let mut s = seen.lock().unwrap();
        s.max_term = s.max_term.max(term);
    }
    // Fires the armed hook: Some(resume) when it matched.
    let fire = |after: bool| {
        let mut h = hook.lock().unwrap();
        let matched = h
            .as_ref()
            .is_some_and(|h| h.key == flow_key && h.after == after && action == "apply");
        if !matched {
            return None;
        }
        let resume = h.take().is_some_and(|h| h.resume);
        drop(h);
        let (release, wait) = mpsc::channel();
        let _ = events.send(release);
        let _ = wait.recv_timeout(Duration::from_secs(60));
        Some(resume)
    };
    let earlier = {
        let mut s = seen.lock().unwrap();
        let a = s.answers.get(&idem).cloned();
        if a.is_some() {
            s.repeats += 1;
        }
        a
    };
    if let Some(a) = earlier {
        answer(&mut stream, &a);
        return;
    }
    if fire(false) == Some(false) {
        // Killed before performing: nothing done, nothing recorded; the next leader asks again.
        return;
    }
    // The fencing token: a leader of a term below one already seen was deposed.
    {
        let mut s = seen.lock().unwrap();
        if term < s.max_term {
            s.stale += 1;
            let max = s.max_term;
            drop(s);
            let body = json!({"ok": false, "error": format!("stale leader: term {term} < {max}")});
            answer_status(&mut stream, 409, &body);
            return;
        }
    }
    let a = {
        let mut s = seen.lock().unwrap();
        let a = match action.as_str() {
            "apply" if req["payload"]["fail"] == true => {
                json!({"ok": false, "error": "the receiver was told to fail"})
            }
            "apply" => {
                *s.applied.entry(flow_key.clone()).or_default() += 1;
                json!({"ok": true, "vars": {"token": format!("tok-{flow_key}")}})
            }
            "revert" => {
                *s.reverted.entry(flow_key.clone()).or_default() += 1;
                json!({"ok": true, "vars": {}})
            }
            other => json!({"ok": false, "error": format!("unknown action {other}")}),
        };
        s.answers.insert(idem, a.clone());
        a
    };
    let _ = fire(true);
    answer(&mut stream, &a);
}

/// The job's forward steps committed so far and whether it is done, through GetTaskProgress.
fn progress(zs: &ZsClient, node: &str, session: &str, job: &str) -> Option<(Vec<String>, bool)> {
    let r = zs
        .sync(
            node,
            "org.zstack.header.core.progress.APIGetTaskProgressMsg",
            json!({"apiId": job, "all": "true"}),
            Some(session),
            Duration::from_secs(5),
        )
        .ok()?;
    let inv = r.inventories();
    let steps = inv
        .iter()
        .filter(|i| {
            let content = i["content"].as_str().unwrap_or("");
            i["type"] == "Task" && !content.contains("rollback") && !content.contains("failed")
        })
        .map(|i| i["taskName"].as_str().unwrap_or("").to_string())
        .collect();
    let done = inv
        .iter()
        .any(|i| i["type"] == "Progress" && i["content"] == "100");
    Some((steps, done))
}

fn http_base(c: &Cluster, id: u64) -> String {
    format!("http://{}", c.node(id).http)
}

/// The tests of this file one at a time: three clusters at once on two cores starve each
/// other's elections, and their port picks race with each other's outbound connections.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A receiver, a 3-node cluster sending it the self-test flow's effects (with `bug` seeded in
/// `bin`, if given; the executor pausing `pause_ms` before each committed step) and an admin
/// session.
fn start(
    bin: Option<std::path::PathBuf>,
    bug: Option<&str>,
    pause_ms: u64,
) -> (Receiver, Cluster, ZsClient, String) {
    let rx = Receiver::start();
    let c = Cluster::start(ClusterOpts {
        bin,
        env: bug
            .map(|b| vec![("ZSNODE_SEEDED_BUG".to_string(), b.to_string())])
            .unwrap_or_default(),
        extra_args: vec![
            "--flow-selftest-receiver".into(),
            rx.url.clone(),
            "--flow-step-pause-ms".into(),
            pause_ms.to_string(),
        ],
        ..ClusterOpts::default()
    })
    .expect("start cluster");
    let zs = ZsClient::new(Duration::from_secs(10)).unwrap();
    let nodes: Vec<String> = c.ids().iter().map(|id| http_base(&c, *id)).collect();
    let session = zs.login(&nodes, Duration::from_secs(60)).expect("login");
    (rx, c, zs, session)
}

#[test]
fn every_flow_ends_once_with_its_side_effect_applied_once_by_key() {
    let _serial = serial();
    let (rx, mut c, zs, session) = start(None, None, 700);
    let http = admin_http();

    let scenarios: &[(&str, Option<u8>, KillAt)] = &[
        ("ok-before-step-1", None, KillAt::BeforeStep1),
        ("ok-effect-received", None, KillAt::EffectReceived),
        ("ok-effect-performed", None, KillAt::EffectPerformed),
        ("ok-between-2-and-3", None, KillAt::BetweenSteps2And3),
        ("fail3-between-2-and-3", Some(3), KillAt::BetweenSteps2And3),
        ("fail2-effect-performed", Some(2), KillAt::EffectPerformed),
        ("fail1", Some(1), KillAt::Never),
        ("ok-undisturbed", None, KillAt::Never),
    ];
    // FLOW_SCENARIOS=a,b runs only those (for debugging one kill point).
    let only: Option<Vec<String>> = std::env::var("FLOW_SCENARIOS")
        .ok()
        .map(|s| s.split(',').map(str::to_string).collect());
    for (key, fail_at, kill) in scenarios.iter().copied() {
        if only.as_ref().is_some_and(|o| !o.iter().any(|k| k == key)) {
            continue;
        }
        let leader = c.wait_leader(Duration::from_secs(30)).expect("leader");
        let via = c.ids().into_iter().find(|id| *id != leader).unwrap();
        let job = new_job_uuid();
        match kill {
            KillAt::EffectReceived => rx.arm(key, false),
            KillAt::EffectPerformed => rx.arm(key, true),
            _ => {}
        }
        let started = Instant::now();
        let r = http
            .post(format!("{}/cluster/flow-selftest", http_base(&c, via)))
            .json(&json!({"key": key, "fail_at": fail_at, "job_uuid": job}))
            .send()
            .expect("submit self-test");
        assert!(
            r.status().is_success(),
            "{key}: {}",
            r.text().unwrap_or_default()
        );
        let mut killed = None;
        match kill {
            KillAt::BeforeStep1 => {
                let (steps, _) = progress(&zs, &http_base(&c, via), &session, &job).unwrap();
                assert!(
                    steps.is_empty(),
                    "{key}: step 1 already committed: {steps:?}"
                );
                c.kill9(leader).expect("kill leader");
                killed = Some(leader);
            }
            KillAt::EffectReceived | KillAt::EffectPerformed => {
                let release = rx.wait_hook(Duration::from_secs(60));
                c.kill9(leader).expect("kill leader");
                killed = Some(leader);
                let _ = release.send(());
            }
            KillAt::BetweenSteps2And3 => {
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    assert!(Instant::now() < deadline, "{key}: step 2 never committed");
                    if let Some((steps, done)) = progress(&zs, &http_base(&c, via), &session, &job)
                    {
                        assert!(!done, "{key}: done before the kill: {steps:?}");
                        if steps.len() == 2 {
                            break;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                c.kill9(leader).expect("kill leader");
                killed = Some(leader);
            }
            KillAt::Never => {}
        }
        if let Some(dead) = killed {
            let survivors: Vec<u64> = c.ids().into_iter().filter(|id| *id != dead).collect();
            c.wait_leader_among(&survivors, Duration::from_secs(30))
                .expect("new leader");
        }
        let reply = zs
            .wait_job(
                &http_base(&c, via),
                &job,
                Instant::now() + Duration::from_secs(120),
            )
            .expect("poll")
            .unwrap_or_else(|| panic!("{key}: job not done in 120 s"));
        eprintln!(
            "flow {key}: done in {:?}, success={}, killed={killed:?}",
            started.elapsed(),
            reply.success()
        );
        assert_eq!(reply.success(), fail_at.is_none(), "{key}: {}", reply.body);
        if let Some(k) = fail_at {
            let details = reply.body["error"]["details"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let expected = if k == 2 {
                "told to fail".to_string()
            } else {
                format!("injected failure at step {k}")
            };
            assert!(details.contains(&expected), "{key}: {details}");
        }
        // Every forward step committed exactly once.
        let (steps, done) = progress(&zs, &http_base(&c, via), &session, &job).unwrap();
        assert!(done, "{key}: not done");
        let mut counts: BTreeMap<String, u32> = BTreeMap::new();
        for s in &steps {
            *counts.entry(s.clone()).or_default() += 1;
        }
        assert!(
            counts.values().all(|n| *n == 1),
            "{key}: a step committed twice: {steps:?}"
        );
        let expected_steps: &[&str] = match fail_at {
            None => &["mark-begin", "call-receiver", "mark-end"],
            Some(1) => &[],
            Some(2) => &["mark-begin"],
            _ => &["mark-begin", "call-receiver"],
        };
        assert_eq!(steps, expected_steps, "{key}");
        // Markers: all of a success, nothing of a failure.
        let markers: Value = http
            .get(format!(
                "{}/cluster/flow-selftest/{key}",
                http_base(&c, via)
            ))
            .send()
            .expect("markers")
            .json()
            .expect("markers json");
        let m = markers["markers"].as_object().cloned().unwrap_or_default();
        if fail_at.is_none() {
            assert!(
                m.contains_key("begin") && m.contains_key("end"),
                "{key}: {markers}"
            );
            assert!(
                m["end"]
                    .as_str()
                    .unwrap_or("")
                    .ends_with(&format!("tok-{key}")),
                "{key}: {markers}"
            );
        } else {
            assert!(m.is_empty(), "{key}: a failed flow left a trace: {markers}");
        }
        // The side effect: once by key, reverted when a later step failed.
        {
            let s = rx.seen.lock().unwrap();
            let applied = s.applied.get(key).copied().unwrap_or(0);
            let reverted = s.reverted.get(key).copied().unwrap_or(0);
            match fail_at {
                None => assert_eq!((applied, reverted), (1, 0), "{key}"),
                Some(3) => assert_eq!((applied, reverted), (1, 1), "{key}"),
                Some(_) => assert_eq!((applied, reverted), (0, 0), "{key}"),
            }
        }
        if let Some(dead) = killed {
            c.restart(dead).expect("restart");
            c.wait_ready(dead, Duration::from_secs(60)).expect("ready");
        }
    }
    let repeats = rx.seen.lock().unwrap().repeats;
    eprintln!("flow engine: side effects re-issued after a leader change and answered from the receiver's record: {repeats}");
    assert!(
        only.is_some() || repeats >= 1,
        "no side effect was ever re-issued: the kills missed the effect"
    );
}

/// What became of the partitioned-leader scenario.
struct Partitioned {
    /// The job's reply succeeded.
    success: bool,
    /// Forward steps committed (through GetTaskProgress).
    steps: Vec<String>,
    /// Requests the receiver refused as a deposed leader's.
    stale: u32,
    /// Whether the old leader logged that its executor's proposal of step 2's outcome, made
    /// while partitioned, did not commit.
    old_leader_refused: bool,
    /// The reply's body, for messages.
    body: String,
}

/// The old leader L is cut off while its executor is inside the side effect of step 2: the
/// receiver holds L's request. A new leader N takes over and re-issues the effect (held too).
/// L's request is then released; the receiver refuses it (a term below N's) and L's duty
/// proposes that failure on its side of the partition, where it cannot commit. The network
/// heals, then N's request is served. A clean node ends the flow with success and every step
/// once; a node whose duties are not fenced commits L's failure through N and the flow rolls
/// back.
fn partitioned_leader(
    key: &str,
    bin: Option<std::path::PathBuf>,
    bug: Option<&str>,
) -> Partitioned {
    let (rx, mut c, zs, session) = start(bin, bug, 300);
    let http = admin_http();
    let old = c.wait_leader(Duration::from_secs(30)).expect("leader");
    let others: Vec<u64> = c.ids().into_iter().filter(|id| *id != old).collect();
    let via = http_base(&c, others[0]);
    let job = new_job_uuid();
    rx.arm_hold(key);
    let r = http
        .post(format!("{via}/cluster/flow-selftest"))
        .json(&json!({"key": key, "job_uuid": job}))
        .send()
        .expect("submit self-test");
    assert!(
        r.status().is_success(),
        "{key}: {}",
        r.text().unwrap_or_default()
    );
    let release_old = rx.wait_hook(Duration::from_secs(60));
    // L is inside step 2; cut it off and let the others elect N.
    rx.arm_hold(key);
    c.isolate(old);
    let new = c
        .wait_leader_among(&others, Duration::from_secs(30))
        .expect("new leader");
    let release_new = rx.wait_hook(Duration::from_secs(60));
    let (old_term, new_term) = {
        let st = c.statuses();
        let term_of = |id: u64| {
            st.iter()
                .find(|(i, _)| *i == id)
                .and_then(|(_, s)| s.as_ref().ok())
                .map(|s| s.term)
                .unwrap_or(0)
        };
        (term_of(old), term_of(new))
    };
    eprintln!("{key}: old leader {old} (term {old_term}), new leader {new} (term {new_term})");
    // L's effect is refused; L's duty proposes the failure where no quorum is.
    let _ = release_old.send(());
    let deadline = Instant::now() + Duration::from_secs(30);
    while rx.seen.lock().unwrap().stale == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // The old leader's proposal of that outcome (its executor's request id names job, step
    // and term) cannot commit on its side; wait, still partitioned, until it has given up.
    let rid = format!("step/{job}/1/false/t{old_term}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut old_leader_refused = false;
    while bug.is_none() && Instant::now() < deadline {
        if c.log_contains(old, &rid) {
            old_leader_refused = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if bug.is_some() {
        std::thread::sleep(Duration::from_secs(2));
    }
    c.heal();
    // Time for whatever L had pending to reach N, fenced or not.
    std::thread::sleep(Duration::from_secs(4));
    let _ = release_new.send(());
    let reply = zs
        .wait_job(&via, &job, Instant::now() + Duration::from_secs(120))
        .expect("poll")
        .unwrap_or_else(|| panic!("{key}: job not done in 120 s"));
    let (steps, _) = progress(&zs, &via, &session, &job).unwrap_or_default();
    c.wait_converged(Duration::from_secs(60)).expect("converge");
    let stale = rx.seen.lock().unwrap().stale;
    Partitioned {
        success: reply.success(),
        steps,
        stale,
        old_leader_refused,
        body: reply.body.to_string(),
    }
}

#[test]
fn a_partitioned_old_leaders_duty_commits_nothing() {
    let _serial = serial();
    let p = partitioned_leader("partitioned-leader", None, None);
    eprintln!(
        "partitioned leader: success={} steps={:?} stale={} old_leader_refused={}",
        p.success, p.steps, p.stale, p.old_leader_refused
    );
    assert!(
        p.stale >= 1,
        "the old leader never drove the receiver after the new one: {}",
        p.body
    );
    assert!(
        p.old_leader_refused,
        "the old leader's duty never proposed: the scenario missed"
    );
    assert!(
        p.success,
        "the deposed leader's outcome was committed: {}",
        p.body
    );
    assert_eq!(p.steps, ["mark-begin", "call-receiver", "mark-end"]);
}

/// The same scenario against `zsnode-seeded` with `unfenced-duty`: the checks above must
/// catch it (the deposed leader's refused effect commits and the flow rolls back).
#[test]
fn an_unfenced_duty_is_caught() {
    let _serial = serial();
    let bin = chaos_tests::cluster::seeded_zsnode_bin().expect("zsnode-seeded");
    let p = partitioned_leader("unfenced-duty", Some(bin), Some("unfenced-duty"));
    eprintln!(
        "seeded=unfenced-duty success={} steps={:?} stale={}",
        p.success, p.steps, p.stale
    );
    assert!(
        p.stale >= 1,
        "the scenario did not reach the stale effect: {}",
        p.body
    );
    assert!(
        !p.success,
        "the checker missed a deposed leader's duty committing: {}",
        p.body
    );
}

/// A client sending the test cluster's admin token (the self-test routes are administration).
fn admin_http() -> reqwest::blocking::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(
        reqwest::header::AUTHORIZATION,
        chaos_tests::cluster::admin_authorization().parse().unwrap(),
    );
    reqwest::blocking::Client::builder()
        .default_headers(h)
        .build()
        .unwrap()
}
