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
}

/// A hook: stop on this (flow key, before/after performing) and let the test act first.
type Hook = (String, bool);

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
    let body = v.to_string();
    // The leader may be dead by now: a failed write is what a dead client looks like.
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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
        *self.hook.lock().unwrap() = Some((key.to_string(), after_perform));
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
    let fire = |after: bool| {
        let mut h = hook.lock().unwrap();
        if h.as_ref() == Some(&(flow_key.clone(), after)) && action == "apply" {
            *h = None;
            drop(h);
            let (release, wait) = mpsc::channel();
            let _ = events.send(release);
            let _ = wait.recv_timeout(Duration::from_secs(60));
            true
        } else {
            false
        }
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
    if fire(false) {
        // Killed before performing: nothing done, nothing recorded; the next leader asks again.
        return;
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
    fire(true);
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

#[test]
fn every_flow_ends_once_with_its_side_effect_applied_once_by_key() {
    let rx = Receiver::start();
    let mut c = Cluster::start(ClusterOpts {
        extra_args: vec![
            "--flow-selftest-receiver".into(),
            rx.url.clone(),
            "--flow-step-pause-ms".into(),
            "700".into(),
        ],
        ..ClusterOpts::default()
    })
    .expect("start cluster");
    let zs = ZsClient::new(Duration::from_secs(10)).unwrap();
    let nodes: Vec<String> = c.ids().iter().map(|id| http_base(&c, *id)).collect();
    let session = zs.login(&nodes, Duration::from_secs(60)).expect("login");
    let http = reqwest::blocking::Client::new();

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
