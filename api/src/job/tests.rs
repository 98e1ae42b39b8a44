//! Job and flow-engine unit tests: submit/step/poll idempotency, the step/rollback/resume
//! logic on the three-step self-test flow, failures at every step leaving no trace, panics,
//! stale step ops, the start order and per-chain serialisation, old record encodings.

use std::collections::BTreeSet;

use super::*;
use crate::families::zone::ZoneOp;
use crate::flow::schedule;
use crate::flow::selftest;
use crate::testing::ctx;
use crate::testing::MemTxn;
use crate::IntoCommand;

const JOB: &str = "0123456789abcdef0123456789abcdef";

fn create_zone(uuid: &str, name: &str) -> Command {
    ZoneOp::Create {
        uuid: uuid.into(),
        name: name.into(),
        description: None,
        is_default: false,
    }
    .command(Caller::admin())
}

fn job_of(r: JobResult) -> ApiJob {
    match r {
        JobResult::Job(j) => *j,
        other => panic!("{other:?}"),
    }
}

fn submit(t: &mut MemTxn, at: u64, job: &str, cmd: Command) -> ApiJob {
    let op = JobOp::Submit(Submission::command(
        job,
        "CreateZone",
        "org.zstack.header.zone.APICreateZoneEvent",
        "",
        cmd,
    ));
    job_of(apply(t, &ctx(at), &Caller::admin(), op).unwrap())
}

fn run(t: &mut MemTxn, at: u64, job: &str) -> ApiJob {
    let op = JobOp::Step {
        uuid: job.into(),
        step: 0,
        undo: false,
    };
    job_of(apply(t, &ctx(at), &Caller::admin(), op).unwrap())
}

#[test]
fn submit_run_poll_and_idempotent_retries() {
    let mut t = MemTxn::default();
    let zone = "a".repeat(32);
    let j = submit(&mut t, 1, JOB, create_zone(&zone, "z1"));
    assert_eq!(j.state, JobState::Processing);
    assert_eq!(pending(&t, 10).unwrap(), vec![JOB.to_string()]);
    let body = j.response().to_body();
    assert!(
        body.starts_with(&format!(r#"{{"uuid":"{JOB}","state":"Processing""#)),
        "{body}"
    );
    // A retry with the same job uuid returns the same job and queues nothing new.
    let again = submit(&mut t, 2, JOB, create_zone(&"b".repeat(32), "other"));
    assert_eq!(again, j);
    let done = run(&mut t, 3, JOB);
    assert_eq!((done.state, done.success), (JobState::Done, Some(true)));
    let result = done.result.clone().unwrap();
    assert!(
        result
            .starts_with(r#"{"org.zstack.header.zone.APICreateZoneEvent":{"inventory":{"uuid":""#),
        "{result}"
    );
    assert!(result.ends_with(r#""success":true}}"#));
    assert!(pending(&t, 10).unwrap().is_empty());
    // Running it again (a new leader re-running an already finished job) changes nothing.
    assert_eq!(run(&mut t, 4, JOB), done);
    assert_eq!(
        crate::resource::list::<crate::families::zone::Zone>(&t)
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn refused_call_keeps_only_the_job_record() {
    let mut t = MemTxn::default();
    submit(&mut t, 1, JOB, create_zone("not-a-uuid", "z"));
    let done = run(&mut t, 2, JOB);
    assert_eq!(done.success, Some(false));
    let r = done.result.unwrap();
    assert!(
        r.contains(r#""success":false,"error":{"code":"SYS.1007""#),
        "{r}"
    );
    assert!(crate::resource::list::<crate::families::zone::Zone>(&t)
        .unwrap()
        .is_empty());
}

#[test]
fn refusals_and_expiry() {
    let mut t = MemTxn::default();
    let bad = JobOp::Submit(Submission::command(
        "x",
        "A",
        "c",
        "",
        create_zone(&"a".repeat(32), "z"),
    ));
    assert_eq!(
        apply(&mut t, &ctx(1), &Caller::admin(), bad)
            .unwrap_err()
            .code(),
        "SYS.1007"
    );
    let nested = JobOp::Submit(Submission::command(
        JOB,
        "A",
        "c",
        "",
        JobOp::Expire.command(Caller::admin()),
    ));
    assert_eq!(
        apply(&mut t, &ctx(1), &Caller::admin(), nested)
            .unwrap_err()
            .code(),
        "SYS.1007"
    );
    let unknown = JobOp::Step {
        uuid: JOB.into(),
        step: 0,
        undo: false,
    };
    assert_eq!(
        apply(&mut t, &ctx(1), &Caller::admin(), unknown)
            .unwrap_err()
            .code(),
        "SYS.1003"
    );
    submit(&mut t, 1, JOB, create_zone(&"a".repeat(32), "z"));
    run(&mut t, 2, JOB);
    let mut later = ctx(3);
    assert_eq!(
        apply(&mut t, &later, &Caller::admin(), JobOp::Expire).unwrap(),
        JobResult::Expired(0)
    );
    later.proposed_at_ms += 864_000 * 1000;
    assert_eq!(
        apply(&mut t, &later, &Caller::admin(), JobOp::Expire).unwrap(),
        JobResult::Expired(1)
    );
    assert!(get(&t, JOB).unwrap().is_none());
}

// ---- The flow engine on the three-step self-test flow.

fn selftest_job(t: &mut MemTxn, at: u64, job: &str, key: &str, fail_at: Option<&str>) -> ApiJob {
    let mut vars = Vars::new();
    vars.insert("key".into(), key.into());
    if let Some(f) = fail_at {
        vars.insert("fail_at".into(), f.into());
    }
    let op = JobOp::Submit(Submission {
        uuid: job.into(),
        api_name: "FlowSelfTest".into(),
        reply_class: "org.zstack.header.message.APIEvent".into(),
        chain: key.into(),
        flow: FlowSpec::Named {
            flow: selftest::FLOW.into(),
            vars,
        },
    });
    job_of(apply(t, &ctx(at), &Caller::admin(), op).unwrap())
}

/// A receiver that answers like the chaos test's: it applies `apply` once per key, refuses
/// when told to fail, and undoes on `revert`.
#[derive(Default)]
struct Receiver {
    applied: BTreeSet<String>,
    calls: Vec<String>,
}

impl Receiver {
    fn perform(&mut self, key: &str, req: &EffectRequest) -> Result<Vars, Refusal> {
        assert_eq!(req.receiver, selftest::RECEIVER);
        self.calls.push(key.to_string());
        let p: Value = serde_json::from_str(&req.payload).unwrap();
        let k = p["key"].as_str().unwrap().to_string();
        match req.action.as_str() {
            "apply" if p["fail"] == true => {
                Err(Refusal::new(Code::OperationFailure, "receiver refused"))
            }
            "apply" => {
                self.applied.insert(k.clone());
                Ok(Vars::from([("token".to_string(), format!("t-{k}"))]))
            }
            "revert" => {
                self.applied.remove(&k);
                Ok(Vars::new())
            }
            other => panic!("unknown action {other}"),
        }
    }
}

/// Drive a job to its end the way the leader's executor does; returns the ops proposed.
fn drive(t: &mut MemTxn, at: &mut u64, job: &str, rx: &mut Receiver) -> Vec<JobOp> {
    let mut ops = Vec::new();
    for _ in 0..20 {
        let j = get(t, job).unwrap().unwrap();
        let op = match next_action(&j) {
            NextAction::Finished => return ops,
            NextAction::Commit(op) => op,
            NextAction::Effect {
                key,
                request,
                step,
                undo,
            } => JobOp::Effect {
                uuid: job.into(),
                step,
                undo,
                outcome: rx.perform(&key, &request),
            },
        };
        *at += 1;
        apply(t, &ctx(*at), &Caller::admin(), op.clone()).unwrap();
        ops.push(op);
    }
    panic!("job {job} did not finish in 20 steps")
}

#[test]
fn three_step_flow_commits_each_step_once_and_finishes() {
    let mut t = MemTxn::default();
    let mut at = 10;
    selftest_job(&mut t, at, JOB, "k1", None);
    let mut rx = Receiver::default();
    let ops = drive(&mut t, &mut at, JOB, &mut rx);
    assert_eq!(ops.len(), 3, "{ops:?}");
    let j = get(&t, JOB).unwrap().unwrap();
    assert_eq!(
        (j.state, j.success),
        (JobState::Done, Some(true)),
        "{:?}",
        j.result
    );
    assert_eq!(rx.calls, vec![format!("{JOB}/1/do")]);
    let m = selftest::markers(&t, "k1").unwrap();
    assert_eq!(
        m.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["begin", "end"]
    );
    assert!(
        m[1].1.ends_with(":t-k1"),
        "the receiver's answer reached step 3: {m:?}"
    );
    assert_eq!(
        j.history
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>(),
        ["mark-begin", "call-receiver", "mark-end"]
    );
    assert!(pending(&t, 10).unwrap().is_empty());
}

#[test]
fn a_failure_at_step_k_leaves_no_trace_of_the_steps_before_it() {
    for (fail_at, proposals) in [("1", 1), ("2", 3), ("3", 5)] {
        let mut t = MemTxn::default();
        let mut at = 10;
        selftest_job(&mut t, at, JOB, "k2", Some(fail_at));
        let mut rx = Receiver::default();
        let ops = drive(&mut t, &mut at, JOB, &mut rx);
        let j = get(&t, JOB).unwrap().unwrap();
        assert_eq!(
            (j.state, j.success),
            (JobState::Done, Some(false)),
            "fail at {fail_at}"
        );
        let result = j.result.unwrap();
        assert!(result.contains(r#""success":false"#), "{result}");
        assert_eq!(ops.len(), proposals, "fail at {fail_at}: {ops:?}");
        assert!(
            selftest::markers(&t, "k2").unwrap().is_empty(),
            "fail at {fail_at}"
        );
        assert!(
            rx.applied.is_empty(),
            "fail at {fail_at}: side effect left applied"
        );
        assert!(pending(&t, 10).unwrap().is_empty());
    }
}

#[test]
fn a_new_leader_resumes_from_the_last_committed_step() {
    // Stop after every prefix of the run, "lose the leader", and carry on from the state: the
    // remaining actions are exactly the ones the uninterrupted run had, and the side effect is
    // re-issued with the same key.
    let mut full = MemTxn::default();
    let mut at = 10;
    selftest_job(&mut full, at, JOB, "k3", None);
    let mut rx = Receiver::default();
    let all = drive(&mut full, &mut at, JOB, &mut rx);
    for cut in 0..all.len() {
        let mut t = MemTxn::default();
        let mut at = 10;
        selftest_job(&mut t, at, JOB, "k3", None);
        let mut rx1 = Receiver::default();
        for op in &all[..cut] {
            at += 1;
            apply(&mut t, &ctx(at), &Caller::admin(), op.clone()).unwrap();
        }
        if cut >= 2 {
            rx1.applied.insert("k3".into());
        }
        let rest = drive(&mut t, &mut at, JOB, &mut rx1);
        assert_eq!(&rest[..], &all[cut..], "cut after {cut}");
        // A stale op (re-proposed by a deposed leader) changes nothing.
        if let Some(op) = all.get(cut.saturating_sub(1)) {
            let before = t.tables.clone();
            at += 1;
            apply(&mut t, &ctx(at), &Caller::admin(), op.clone()).unwrap();
            let job_table = |m: &std::collections::BTreeMap<
                String,
                std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
            >| m.get(TABLE).cloned();
            assert_eq!(
                job_table(&t.tables),
                job_table(&before),
                "stale op after {cut}"
            );
        }
    }
}

#[test]
fn a_step_that_panics_fails_its_job_with_a_clear_error() {
    let mut t = MemTxn::default();
    let mut vars = Vars::new();
    let r = run_commit(
        &mut t,
        &ctx(1),
        &Caller::admin(),
        &mut vars,
        "boom",
        |txn, _, _, v| {
            txn.put("x", b"k", b"v".to_vec())?;
            v.insert("leaked".into(), "yes".into());
            panic!("index out of range")
        },
    )
    .unwrap();
    let e = r.unwrap_err();
    assert_eq!(e.code, Code::Internal);
    assert!(
        e.details.contains("step[boom]") && e.details.contains("index out of range"),
        "{e:?}"
    );
    assert!(
        !t.tables.contains_key("x"),
        "a panicking step's writes are dropped"
    );
    assert!(vars.is_empty(), "a panicking step's vars are dropped");
}

#[test]
fn garbage_effect_outcomes_and_unknown_flows_fail_cleanly() {
    let mut t = MemTxn::default();
    let j = selftest_job(&mut t, 1, JOB, "bad key!", None);
    // The request cannot even be built from the vars: step 1 (commit) already refuses them.
    let NextAction::Commit(op) = next_action(&j) else {
        panic!()
    };
    apply(&mut t, &ctx(2), &Caller::admin(), op).unwrap();
    let j = get(&t, JOB).unwrap().unwrap();
    assert_eq!(j.success, Some(false));
    assert!(j.result.unwrap().contains("letters, digits"));

    let mut t = MemTxn::default();
    let op = JobOp::Submit(Submission {
        uuid: JOB.into(),
        api_name: "X".into(),
        reply_class: "org.zstack.header.message.APIEvent".into(),
        chain: String::new(),
        flow: FlowSpec::Named {
            flow: "no.such.flow".into(),
            vars: Vars::new(),
        },
    });
    let j = job_of(apply(&mut t, &ctx(1), &Caller::admin(), op).unwrap());
    let NextAction::Commit(op) = next_action(&j) else {
        panic!()
    };
    let j = job_of(apply(&mut t, &ctx(2), &Caller::admin(), op).unwrap());
    assert_eq!(j.state, JobState::Done);
    assert!(j
        .result
        .unwrap()
        .contains("flow[no.such.flow] is not known"));
}

#[test]
fn jobs_start_in_submit_order_one_per_chain() {
    let mut t = MemTxn::default();
    let u = |n: u32| format!("{n:032x}");
    // a and b on chain x, c on y, d on z, e on y.
    for (i, chain) in [(1, "x"), (2, "x"), (3, "y"), (4, "z"), (5, "y")] {
        let op = JobOp::Submit(Submission::command(
            u(i),
            "CreateZone",
            "c",
            chain,
            create_zone(&u(100 + i), "z"),
        ));
        apply(&mut t, &ctx(u64::from(i)), &Caller::admin(), op).unwrap();
    }
    let none = BTreeSet::new();
    assert_eq!(schedule::runnable(&t, &none, 2).unwrap(), vec![u(1), u(3)]);
    assert_eq!(
        schedule::runnable(&t, &none, 10).unwrap(),
        vec![u(1), u(3), u(4)],
        "b waits behind a, e behind c"
    );
    let running = BTreeSet::from([u(1)]);
    assert_eq!(
        schedule::runnable(&t, &running, 3).unwrap(),
        vec![u(3), u(4)]
    );
    run(&mut t, 10, &u(1));
    assert_eq!(
        schedule::runnable(&t, &none, 10).unwrap(),
        vec![u(2), u(3), u(4)],
        "a done: b is next on x"
    );
    assert!(chain_busy(&t, "x").unwrap() && !chain_busy(&t, "w").unwrap());
}

#[test]
fn a_job_record_of_another_encoding_is_refused_not_misread() {
    let mut t = MemTxn::default();
    let old = serde_json::json!({"uuid": JOB, "api_name": "CreateZone", "state": "Processing", "command": null});
    t.put(TABLE, &record_key(JOB), old.to_string().into_bytes())
        .unwrap();
    let e = get(&t, JOB).unwrap_err();
    assert!(
        e.to_string().contains("encoding version None") && e.to_string().contains("version 2"),
        "{e}"
    );
}

#[test]
fn task_progress_shows_steps_and_percent() {
    let mut t = MemTxn::default();
    selftest_job(&mut t, 1, JOB, "k4", None);
    let j = get(&t, JOB).unwrap().unwrap();
    let NextAction::Commit(op) = next_action(&j) else {
        panic!()
    };
    apply(&mut t, &ctx(2), &Caller::admin(), op).unwrap();
    let op = JobOp::Progress {
        uuid: JOB.into(),
        step: 1,
        percent: 50,
    };
    apply(&mut t, &ctx(3), &Caller::admin(), op).unwrap();
    let j = get(&t, JOB).unwrap().unwrap();
    let all = progress_inventories(&j, true);
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0]["taskName"], "mark-begin");
    assert_eq!(all[0]["type"], "Task");
    assert_eq!(all[1]["type"], "Progress");
    assert_eq!(all[1]["content"], "50", "1.5 of 3 steps");
    assert_eq!(progress_inventories(&j, false), vec![all[1].clone()]);
}
