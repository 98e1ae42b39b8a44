//! Call-matrix cases of the scheduler calls (run by `testing::matrix`). The base world holds
//! no VM, job or trigger: the cases that need them create them first (`given`).

use serde_json::json;
use serde_json::Value;

use crate::testing::matrix::bad_query;
use crate::testing::matrix::eq;
use crate::testing::matrix::missing;
use crate::testing::matrix::no;
use crate::testing::matrix::ok;
use crate::testing::matrix::Case;
use crate::testing::matrix::Ids;
use crate::testing::matrix::Parties;
use crate::testing::matrix::Who;
use crate::wire::errors::Code;

const VM: &str = "00000000000000000000000000f00d51";
const JOB: &str = "5c0000000000000000000000000a0001";
const TRIGGER: &str = "5c0000000000000000000000000b0001";
const TENANT_TRIGGER: &str = "5c0000000000000000000000000b0002";

/// The case run on a world holding the (Running) VM.
fn with_vm(c: Case, admin: &Who, i: &Ids) -> Case {
    c.given(admin, "ReconnectPrimaryStorage", json!({"uuid": i.local}))
        .given(
            admin,
            "CreateVmInstance",
            json!({"name": "vm", "instanceOfferingUuid": i.io, "imageUuid": i.image,
                   "l3NetworkUuids": [i.l3], "resourceUuid": VM}),
        )
}

fn job_body() -> Value {
    json!({"name": "nightly reboot", "targetResourceUuid": VM, "type": "rebootVm", "resourceUuid": JOB})
}

fn trigger_body(uuid: &str) -> Value {
    json!({"name": "every minute", "schedulerType": "simple", "schedulerInterval": 60,
           "repeatCount": 3, "startTime": 4_000_000_000u64, "resourceUuid": uuid})
}

/// With the VM and the admin's job.
fn with_job(c: Case, admin: &Who, i: &Ids) -> Case {
    with_vm(c, admin, i).given(admin, "CreateSchedulerJob", job_body())
}

/// With the VM, the job and the trigger, attached.
fn with_attached(c: Case, admin: &Who, i: &Ids) -> Case {
    with_job(c, admin, i)
        .given(admin, "CreateSchedulerTrigger", trigger_body(TRIGGER))
        .given(
            admin,
            "AddSchedulerJobToSchedulerTrigger",
            json!({"schedulerJobUuid": JOB, "schedulerTriggerUuid": TRIGGER}),
        )
}

/// The call-matrix cases of this family's calls.
pub(crate) fn cases(ids: &Ids) -> Vec<Case> {
    let Parties {
        admin,
        tenant,
        nobody,
        ..
    } = Parties::of(ids);
    let i = ids.clone();
    let mut m = Vec::new();
    // ---- CreateSchedulerJob.
    m.push(with_vm(
        ok("CreateSchedulerJob", &admin, job_body(), |h, r| {
            let inv = &r["inventory"];
            assert_eq!(inv["uuid"], JOB);
            assert_eq!(inv["targetResourceUuid"], VM);
            assert_eq!(inv["state"], "Enabled");
            assert_eq!(inv["jobType"], "rebootVm");
            assert_eq!(inv["triggersUuid"], json!([]));
            assert_eq!(
                h.count("QuerySchedulerJob", eq("targetResourceUuid", VM)),
                1
            );
        }),
        &admin,
        &i,
    ));
    m.push(with_vm(
        no(
            "CreateSchedulerJob",
            &admin,
            json!({"name": "j", "targetResourceUuid": missing(), "type": "startVm"}),
            Code::ResourceNotFound,
        ),
        &admin,
        &i,
    ));
    m.push(with_vm(
        no(
            "CreateSchedulerJob",
            &admin,
            json!({"name": "j", "targetResourceUuid": VM, "type": "databaseBackup"}),
            Code::NotSupported,
        ),
        &admin,
        &i,
    ));
    // A VM is not a volume: a snapshot job names the volume.
    m.push(with_vm(
        no(
            "CreateSchedulerJob",
            &admin,
            json!({"name": "j", "targetResourceUuid": VM, "type": "volumeSnapshot"}),
            Code::ResourceNotFound,
        ),
        &admin,
        &i,
    ));
    m.push(with_vm(
        no(
            "CreateSchedulerJob",
            &tenant,
            json!({"name": "j", "targetResourceUuid": VM, "type": "stopVm"}),
            Code::PermissionDenied,
        ),
        &admin,
        &i,
    ));
    m.push(no(
        "CreateSchedulerJob",
        &admin,
        json!({"name": "j", "type": "stopVm"}),
        Code::InvalidArgument,
    ));
    m.push(no(
        "CreateSchedulerJob",
        &nobody,
        job_body(),
        Code::InvalidSession,
    ));
    // ---- UpdateSchedulerJob.
    m.push(with_job(
        ok(
            "UpdateSchedulerJob",
            &admin,
            json!({"uuid": JOB, "name": "weekly", "parameters": {"snapshotName": "s"}}),
            |_, r| {
                assert_eq!(r["inventory"]["name"], "weekly");
                assert_eq!(r["inventory"]["jobData"], "{\"snapshotName\":\"s\"}");
            },
        ),
        &admin,
        &i,
    ));
    m.push(with_job(
        no(
            "UpdateSchedulerJob",
            &admin,
            json!({"uuid": JOB, "parameters": [1, 2]}),
            Code::InvalidArgument,
        ),
        &admin,
        &i,
    ));
    m.push(with_job(
        no(
            "UpdateSchedulerJob",
            &tenant,
            json!({"uuid": JOB, "name": "mine"}),
            Code::PermissionDenied,
        ),
        &admin,
        &i,
    ));
    // ---- ChangeSchedulerState.
    m.push(with_job(
        ok(
            "ChangeSchedulerState",
            &admin,
            json!({"uuid": JOB, "stateEvent": "disable"}),
            |h, r| {
                assert_eq!(r["inventory"]["state"], "Disabled");
                assert_eq!(h.count("QuerySchedulerJob", eq("state", "Disabled")), 1);
            },
        ),
        &admin,
        &i,
    ));
    m.push(no(
        "ChangeSchedulerState",
        &admin,
        json!({"uuid": missing(), "stateEvent": "enable"}),
        Code::ResourceNotFound,
    ));
    m.push(with_job(
        no(
            "ChangeSchedulerState",
            &admin,
            json!({"uuid": JOB, "stateEvent": "pause"}),
            Code::InvalidArgument,
        ),
        &admin,
        &i,
    ));
    // ---- DeleteSchedulerJob: its history goes with it.
    m.push(with_attached(
        ok(
            "DeleteSchedulerJob",
            &admin,
            json!({"uuid": JOB}),
            |h, _| {
                assert_eq!(h.count("QuerySchedulerJob", eq("uuid", JOB)), 0);
                let t = h.one("QuerySchedulerTrigger", "uuid", TRIGGER);
                assert_eq!(t["jobsUuid"], json!([]), "the trigger lists it no more");
            },
        ),
        &admin,
        &i,
    ));
    m.push(with_job(
        no(
            "DeleteSchedulerJob",
            &tenant,
            json!({"uuid": JOB}),
            Code::PermissionDenied,
        ),
        &admin,
        &i,
    ));
    m.push(no(
        "DeleteSchedulerJob",
        &admin,
        json!({}),
        Code::InvalidArgument,
    ));
    // ---- QuerySchedulerJob.
    m.push(with_attached(
        ok(
            "QuerySchedulerJob",
            &admin,
            json!({"conditions": eq("triggersUuid", TRIGGER)}),
            |_, r| assert_eq!(r["inventories"][0]["uuid"], JOB),
        ),
        &admin,
        &i,
    ));
    m.push(with_job(
        ok(
            "QuerySchedulerJob",
            &tenant,
            json!({"conditions": []}),
            |_, r| {
                assert_eq!(
                    r["inventories"],
                    json!([]),
                    "the admin's job is not the tenant's"
                )
            },
        ),
        &admin,
        &i,
    ));
    m.push(no(
        "QuerySchedulerJob",
        &admin,
        bad_query(),
        Code::InvalidArgument,
    ));
    // ---- GetNoTriggerSchedulerJobs.
    m.push(with_job(
        ok("GetNoTriggerSchedulerJobs", &admin, json!({}), |_, r| {
            assert_eq!(r["inventories"][0]["uuid"], JOB);
        }),
        &admin,
        &i,
    ));
    m.push(with_attached(
        ok("GetNoTriggerSchedulerJobs", &admin, json!({}), |_, r| {
            assert_eq!(r["inventories"], json!([]));
        }),
        &admin,
        &i,
    ));
    m.push(no(
        "GetNoTriggerSchedulerJobs",
        &nobody,
        json!({}),
        Code::InvalidSession,
    ));
    // ---- CreateSchedulerTrigger.
    m.push(ok(
        "CreateSchedulerTrigger",
        &admin,
        trigger_body(TRIGGER),
        |h, r| {
            let inv = &r["inventory"];
            assert_eq!(inv["schedulerType"], "simple");
            assert_eq!(inv["schedulerInterval"], 60);
            assert_eq!(inv["repeatCount"], 3);
            assert_eq!(inv["status"], "Scheduled");
            assert_eq!(inv["nextSlot"], 0);
            assert!(inv["stopTime"].is_string());
            assert_eq!(h.count("QuerySchedulerTrigger", eq("uuid", TRIGGER)), 1);
        },
    ));
    // A start in the past: the first slot is the next one to come, none is replayed.
    m.push(ok(
        "CreateSchedulerTrigger",
        &tenant,
        json!({"name": "t", "schedulerType": "simple", "schedulerInterval": "10", "startTime": 1}),
        |_, r| {
            assert!(r["inventory"]["nextSlot"].as_u64().unwrap() > 0);
            assert!(r["inventory"].get("repeatCount").is_none());
        },
    ));
    m.push(no(
        "CreateSchedulerTrigger",
        &admin,
        json!({"name": "t", "schedulerType": "simple"}),
        Code::InvalidArgument,
    ));
    m.push(no(
        "CreateSchedulerTrigger",
        &admin,
        json!({"name": "t", "schedulerType": "simple", "schedulerInterval": -5}),
        Code::InvalidArgument,
    ));
    m.push(no(
        "CreateSchedulerTrigger",
        &admin,
        json!({"name": "t", "schedulerType": "cron", "cron": "0 * * * * ?"}),
        Code::NotSupported,
    ));
    m.push(no(
        "CreateSchedulerTrigger",
        &admin,
        json!({"name": "t", "schedulerInterval": 5}),
        Code::InvalidArgument,
    ));
    // ---- UpdateSchedulerTrigger: a new schedule starts at its first slot to come.
    m.push(
        ok(
            "UpdateSchedulerTrigger",
            &admin,
            json!({"uuid": TRIGGER, "schedulerInterval": 30, "repeatCount": 0}),
            |_, r| {
                let inv = &r["inventory"];
                assert_eq!(inv["schedulerInterval"], 30);
                assert!(inv.get("repeatCount").is_none(), "0 repeats forever");
                assert!(inv.get("stopTime").is_none());
            },
        )
        .given(&admin, "CreateSchedulerTrigger", trigger_body(TRIGGER)),
    );
    m.push(
        no(
            "UpdateSchedulerTrigger",
            &admin,
            json!({"uuid": TRIGGER, "schedulerInterval": 0}),
            Code::InvalidArgument,
        )
        .given(&admin, "CreateSchedulerTrigger", trigger_body(TRIGGER)),
    );
    m.push(
        no(
            "UpdateSchedulerTrigger",
            &tenant,
            json!({"uuid": TRIGGER, "name": "mine"}),
            Code::PermissionDenied,
        )
        .given(&admin, "CreateSchedulerTrigger", trigger_body(TRIGGER)),
    );
    // ---- DeleteSchedulerTrigger: its jobs stay, detached.
    m.push(with_attached(
        ok(
            "DeleteSchedulerTrigger",
            &admin,
            json!({"uuid": TRIGGER}),
            |h, _| {
                assert_eq!(h.count("QuerySchedulerTrigger", eq("uuid", TRIGGER)), 0);
                let j = h.one("QuerySchedulerJob", "uuid", JOB);
                assert_eq!(j["triggersUuid"], json!([]));
            },
        ),
        &admin,
        &i,
    ));
    m.push(
        no(
            "DeleteSchedulerTrigger",
            &tenant,
            json!({"uuid": TRIGGER}),
            Code::PermissionDenied,
        )
        .given(&admin, "CreateSchedulerTrigger", trigger_body(TRIGGER)),
    );
    m.push(no(
        "DeleteSchedulerTrigger",
        &admin,
        json!({}),
        Code::InvalidArgument,
    ));
    // ---- QuerySchedulerTrigger.
    m.push(with_attached(
        ok(
            "QuerySchedulerTrigger",
            &admin,
            json!({"conditions": eq("name", "every minute")}),
            |_, r| assert_eq!(r["inventories"][0]["jobsUuid"], json!([JOB])),
        ),
        &admin,
        &i,
    ));
    m.push(no(
        "QuerySchedulerTrigger",
        &nobody,
        json!({"conditions": []}),
        Code::InvalidSession,
    ));
    // ---- AddSchedulerJobToSchedulerTrigger.
    m.push(with_job(
        ok(
            "AddSchedulerJobToSchedulerTrigger",
            &admin,
            json!({"schedulerJobUuid": JOB, "schedulerTriggerUuid": TRIGGER}),
            |_, r| assert_eq!(r["inventory"]["triggersUuid"], json!([TRIGGER])),
        )
        .given(&admin, "CreateSchedulerTrigger", trigger_body(TRIGGER)),
        &admin,
        &i,
    ));
    m.push(with_attached(
        no(
            "AddSchedulerJobToSchedulerTrigger",
            &admin,
            json!({"schedulerJobUuid": JOB, "schedulerTriggerUuid": TRIGGER}),
            Code::OperationFailure,
        ),
        &admin,
        &i,
    ));
    m.push(with_job(
        no(
            "AddSchedulerJobToSchedulerTrigger",
            &admin,
            json!({"schedulerJobUuid": JOB, "schedulerTriggerUuid": missing()}),
            Code::ResourceNotFound,
        ),
        &admin,
        &i,
    ));
    // A tenant's trigger cannot drive the admin's job.
    m.push(with_job(
        no(
            "AddSchedulerJobToSchedulerTrigger",
            &tenant,
            json!({"schedulerJobUuid": JOB, "schedulerTriggerUuid": TENANT_TRIGGER}),
            Code::PermissionDenied,
        )
        .given(
            &tenant,
            "CreateSchedulerTrigger",
            trigger_body(TENANT_TRIGGER),
        ),
        &admin,
        &i,
    ));
    // ---- RemoveSchedulerJobFromSchedulerTrigger.
    m.push(with_attached(
        ok(
            "RemoveSchedulerJobFromSchedulerTrigger",
            &admin,
            json!({"schedulerJobUuid": JOB, "schedulerTriggerUuid": TRIGGER}),
            |_, r| assert_eq!(r["inventory"]["triggersUuid"], json!([])),
        ),
        &admin,
        &i,
    ));
    m.push(with_job(
        no(
            "RemoveSchedulerJobFromSchedulerTrigger",
            &admin,
            json!({"schedulerJobUuid": JOB, "schedulerTriggerUuid": TRIGGER}),
            Code::OperationFailure,
        )
        .given(&admin, "CreateSchedulerTrigger", trigger_body(TRIGGER)),
        &admin,
        &i,
    ));
    // ---- QuerySchedulerJobHistory (written by the timer only; see tests).
    m.push(ok(
        "QuerySchedulerJobHistory",
        &admin,
        json!({"conditions": eq("schedulerJobUuid", JOB)}),
        |_, r| assert_eq!(r["inventories"], json!([])),
    ));
    m.push(no(
        "QuerySchedulerJobHistory",
        &admin,
        bad_query(),
        Code::InvalidArgument,
    ));
    m
}
