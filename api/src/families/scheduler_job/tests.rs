//! The timer's commands at apply: a (trigger, slot) commits once, missed slots are recorded
//! as skipped, a destroyed VM pauses its jobs, and an execution completes once.

use serde_json::json;

use super::model::ExecutionStatus;
use super::model::SchedulerJobHistory;
use super::model::SchedulerOp;
use super::model::SchedulerResult;
use super::model::SchedulerTrigger;
use crate::resource;
use crate::testing::matrix::base;
use crate::testing::matrix::Harness;
use crate::testing::matrix::Parties;
use crate::Caller;
use crate::IntoCommand;
use crate::Response;

const VM: &str = "00000000000000000000000000f00d61";
const JOB: &str = "5c0000000000000000000000000c0001";
const TRIGGER: &str = "5c0000000000000000000000000d0001";
const BASE: &str = "5c0000000000000000000000000e0001";

/// A world with a Running VM, a reboot job and a 3-slot trigger starting far in the future,
/// attached.
fn world() -> Harness {
    let (mut h, ids) = base();
    let admin = Parties::of(&ids).admin;
    h.ok(
        &admin,
        "ReconnectPrimaryStorage",
        json!({"uuid": ids.local}),
    );
    h.ok(
        &admin,
        "CreateVmInstance",
        json!({"name": "vm", "instanceOfferingUuid": ids.io, "imageUuid": ids.image,
               "l3NetworkUuids": [ids.l3], "resourceUuid": VM}),
    );
    h.ok(
        &admin,
        "CreateSchedulerJob",
        json!({"name": "j", "targetResourceUuid": VM, "type": "rebootVm", "resourceUuid": JOB}),
    );
    h.ok(
        &admin,
        "CreateSchedulerTrigger",
        json!({"name": "t", "schedulerType": "simple", "schedulerInterval": 2, "repeatCount": 3,
               "startTime": 4_000_000_000u64, "resourceUuid": TRIGGER}),
    );
    h.ok(
        &admin,
        "AddSchedulerJobToSchedulerTrigger",
        json!({"schedulerJobUuid": JOB, "schedulerTriggerUuid": TRIGGER}),
    );
    h
}

fn resolve(h: &mut Harness, slot: u64, fire: bool) -> Response {
    h.apply(
        SchedulerOp::Resolve {
            trigger_uuid: TRIGGER.into(),
            slot,
            fire,
            base_uuid: BASE.into(),
        }
        .command(Caller::admin()),
    )
}

fn history(h: &Harness) -> Vec<SchedulerJobHistory> {
    let mut all: Vec<SchedulerJobHistory> = resource::list::<SchedulerJobHistory>(&h.t)
        .unwrap()
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    all.sort_by_key(|r| r.slot);
    all
}

fn trigger(h: &Harness) -> SchedulerTrigger {
    resource::require::<SchedulerTrigger>(&h.t, TRIGGER)
        .unwrap()
        .1
}

#[test]
fn a_slot_commits_once_and_its_call_is_fixed_by_the_commit() {
    let mut h = world();
    let Response::SchedulerJob(SchedulerResult::Resolved(fired)) = resolve(&mut h, 0, true) else {
        panic!("slot 0 not resolved")
    };
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].status, ExecutionStatus::Submitted);
    assert_eq!(
        fired[0].request_dump.as_deref(),
        Some(format!("{{\"RebootVmInstance\":{{\"uuid\":\"{VM}\"}}}}").as_str())
    );
    let api_job = fired[0].api_job_uuid.clone().unwrap();
    assert_eq!(api_job.len(), 32);
    let before = h.t.tables.clone();
    // A second commit of the same (trigger, slot) — a new leader's, or a stale one's — is
    // refused and writes nothing.
    let Response::Refused(e) = resolve(&mut h, 0, true) else {
        panic!("slot 0 resolved twice")
    };
    assert!(e.to_string().contains("resolved already"), "{e}");
    assert_eq!(h.t.tables, before);
    assert_eq!(trigger(&h).next_slot, 1);
}

#[test]
fn missed_slots_are_recorded_skipped_and_the_trigger_completes() {
    let mut h = world();
    // Slots 0 and 1 missed, 2 (the last) fires.
    resolve(&mut h, 2, true);
    let all = history(&h);
    assert_eq!(all.len(), 2);
    assert_eq!(
        (all[0].status, all[0].slot, all[0].last_slot),
        (ExecutionStatus::Skipped, 0, 1)
    );
    assert_eq!(
        (all[1].status, all[1].slot, all[1].last_slot),
        (ExecutionStatus::Submitted, 2, 2)
    );
    assert!(trigger(&h).completed());
    let Response::Refused(e) = resolve(&mut h, 2, true) else {
        panic!("a completed trigger resolved again")
    };
    assert!(e.to_string().contains("completed"), "{e}");
}

#[test]
fn a_slot_missed_entirely_is_skipped_without_a_call() {
    let mut h = world();
    let Response::SchedulerJob(SchedulerResult::Resolved(fired)) = resolve(&mut h, 1, false) else {
        panic!("not resolved")
    };
    assert!(fired.is_empty());
    let all = history(&h);
    assert_eq!(
        (all[0].status, all[0].slot, all[0].last_slot),
        (ExecutionStatus::Skipped, 0, 1)
    );
    assert!(all[0].api_job_uuid.is_none());
}

#[test]
fn a_destroyed_vm_pauses_its_jobs_and_an_expunged_one_deletes_them() {
    let mut h = world();
    h.admin("DestroyVmInstance", json!({"uuid": VM}));
    assert_eq!(h.one("QuerySchedulerJob", "uuid", JOB)["state"], "Disabled");
    // A paused job does not fire.
    let Response::SchedulerJob(SchedulerResult::Resolved(fired)) = resolve(&mut h, 0, true) else {
        panic!("not resolved")
    };
    assert!(fired.is_empty());
    h.admin("ExpungeVmInstance", json!({"uuid": VM}));
    assert_eq!(h.count_eq("QuerySchedulerJob", "uuid", JOB), 0);
    assert_eq!(
        h.one("QuerySchedulerTrigger", "uuid", TRIGGER)["jobsUuid"],
        json!([])
    );
}

#[test]
fn an_execution_completes_once() {
    let mut h = world();
    let Response::SchedulerJob(SchedulerResult::Resolved(fired)) = resolve(&mut h, 0, true) else {
        panic!("not resolved")
    };
    let complete = |h: &mut Harness| {
        h.apply(
            SchedulerOp::Complete {
                uuid: fired[0].uuid.clone(),
                success: true,
                result: "{}".into(),
            }
            .command(Caller::admin()),
        )
    };
    assert!(matches!(
        complete(&mut h),
        Response::SchedulerJob(SchedulerResult::Completed(_))
    ));
    assert!(matches!(complete(&mut h), Response::Refused(_)));
    let r = h.one("QuerySchedulerJobHistory", "schedulerJobUuid", JOB);
    assert_eq!(
        (&r["status"], &r["success"]),
        (&json!("Succeeded"), &json!(true))
    );
}

#[test]
fn timer_commands_are_the_leaders_only() {
    let (mut h, ids) = base();
    let tenant = Caller {
        account_uuid: ids.tenant.clone(),
        user_uuid: ids.tenant.clone(),
        admin: false,
    };
    let r = h.apply(
        SchedulerOp::Resolve {
            trigger_uuid: TRIGGER.into(),
            slot: 0,
            fire: true,
            base_uuid: BASE.into(),
        }
        .command(tenant),
    );
    assert!(matches!(r, Response::Refused(_)));
}

#[test]
fn a_volume_snapshot_job_fires_a_create_volume_snapshot_that_takes_the_snapshot() {
    let mut h = world();
    let admin = crate::testing::matrix::Who::As(Caller::admin());
    let root = crate::params::derive_uuid(VM, 0);
    let snap_job = "5c0000000000000000000000000c0002";
    h.ok(
        &admin,
        "CreateSchedulerJob",
        json!({"name": "nightly", "targetResourceUuid": root, "type": "volumeSnapshot",
               "resourceUuid": snap_job}),
    );
    h.ok(
        &admin,
        "AddSchedulerJobToSchedulerTrigger",
        json!({"schedulerJobUuid": snap_job, "schedulerTriggerUuid": TRIGGER}),
    );
    let Response::SchedulerJob(SchedulerResult::Resolved(fired)) = resolve(&mut h, 0, true) else {
        panic!("slot 0 not resolved")
    };
    let firing = fired
        .iter()
        .find(|f| f.scheduler_job_uuid == snap_job)
        .expect("the snapshot job fired");
    assert_eq!(firing.status, ExecutionStatus::Submitted);
    // The call the timer submits, as it submits it (`interpret::run_on_behalf` of the dump).
    let dump: serde_json::Value =
        serde_json::from_str(firing.request_dump.as_deref().unwrap()).unwrap();
    let body = dump["CreateVolumeSnapshot"].clone();
    assert_eq!(body["volumeUuid"], json!(root));
    let r = h.ok(&admin, "CreateVolumeSnapshot", body);
    assert_eq!(r["inventory"]["name"], "nightly-0");
    assert_eq!(r["inventory"]["status"], "Ready");
    assert_eq!(h.count_eq("QueryVolumeSnapshot", "volumeUuid", &root), 1);
}
