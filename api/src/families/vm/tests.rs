//! VM family tests: each call through the wire and its flow (side effects answered by the
//! harness's scripted agent), and what it holds afterwards — state, host capacity, IPs,
//! volume records — including after refusals and rollbacks.

use serde_json::json;
use serde_json::Value;

use crate::testing::matrix::base;
use crate::testing::matrix::eq;
use crate::testing::matrix::Harness;
use crate::testing::matrix::Ids;
use crate::wire::errors::Code;

/// The base world with its local primary storage measured (Connected, 60 GiB free).
fn world() -> (Harness, Ids) {
    let (mut h, i) = base();
    h.admin("ReconnectPrimaryStorage", json!({"uuid": i.local}));
    (h, i)
}

fn create(h: &mut Harness, i: &Ids, name: &str) -> Value {
    let r = h.admin(
        "CreateVmInstance",
        json!({"name": name, "instanceOfferingUuid": i.io, "imageUuid": i.image, "l3NetworkUuids": [i.l3]}),
    );
    r["inventory"].clone()
}

fn vm(h: &mut Harness, uuid: &str) -> Value {
    h.one("QueryVmInstance", "uuid", uuid)
}

fn host_free(h: &mut Harness, i: &Ids) -> (u64, u64) {
    let host = h.one("QueryHost", "uuid", &i.host);
    (
        host["availableCpuCapacity"].as_u64().unwrap(),
        host["availableMemoryCapacity"].as_u64().unwrap(),
    )
}

fn used_ips(h: &mut Harness, i: &Ids) -> u64 {
    // The base range holds 11 addresses (192.168.1.10–20).
    let r = h.admin("GetFreeIp", json!({"l3NetworkUuid": i.l3, "limit": 100}));
    11 - r["inventories"].as_array().unwrap().len() as u64
}

#[test]
fn create_places_allocates_and_runs() {
    let (mut h, i) = world();
    let free = host_free(&mut h, &i);
    let inv = create(&mut h, &i, "vm1");
    assert_eq!(inv["state"], "Running", "{inv}");
    assert_eq!(inv["hostUuid"], json!(i.host));
    assert_eq!(inv["lastHostUuid"], json!(i.host));
    assert_eq!(inv["clusterUuid"], json!(i.cluster));
    assert_eq!(inv["zoneUuid"], json!(i.zone));
    assert_eq!(inv["cpuNum"], 1);
    assert_eq!(inv["memorySize"], 1u64 << 30);
    let nic = &inv["vmNics"][0];
    assert_eq!(nic["ip"], "192.168.1.10");
    assert_eq!(nic["netmask"], "255.255.255.0");
    assert_eq!(nic["gateway"], "192.168.1.1");
    assert_eq!(nic["deviceId"], 0);
    assert!(nic["mac"].as_str().unwrap().starts_with("fa:"), "{nic}");
    let uuid = inv["uuid"].as_str().unwrap().to_string();
    let q = vm(&mut h, &uuid);
    let vols = q["allVolumes"].as_array().unwrap();
    assert_eq!(vols.len(), 1, "{q}");
    assert_eq!(vols[0]["type"], "Root");
    assert_eq!(vols[0]["status"], "Ready");
    assert_eq!(vols[0]["primaryStorageUuid"], json!(i.local));
    assert_eq!(vols[0]["uuid"], q["rootVolumeUuid"]);
    assert!(vols[0]["installPath"].as_str().unwrap().ends_with(".qcow2"));
    assert_eq!(h.count("QueryVolume", eq("vmInstanceUuid", &uuid)), 1);
    let now = host_free(&mut h, &i);
    assert_eq!(now.0, free.0 - 1, "one vCPU taken");
    assert!(now.1 < free.1, "memory taken: {free:?} → {now:?}");
    assert_eq!(used_ips(&mut h, &i), 1);
    // A second VM gets the next address.
    let inv2 = create(&mut h, &i, "vm2");
    assert_eq!(inv2["vmNics"][0]["ip"], "192.168.1.11");
}

#[test]
fn stop_start_reboot_pause_resume_follow_the_state_machine() {
    let (mut h, i) = world();
    let free = host_free(&mut h, &i);
    let uuid = create(&mut h, &i, "vm")
        .get("uuid")
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    let r = h.admin("StopVmInstance", json!({"uuid": uuid}));
    assert_eq!(r["inventory"]["state"], "Stopped");
    assert!(r["inventory"].get("hostUuid").is_none(), "{r:?}");
    assert_eq!(r["inventory"]["lastHostUuid"], json!(i.host));
    assert_eq!(
        host_free(&mut h, &i),
        free,
        "a stopped VM holds no capacity"
    );
    assert_eq!(used_ips(&mut h, &i), 1, "a stopped VM keeps its address");
    // Wrong state: ZStack's error, nothing changes.
    let e = h.refused(
        &crate::testing::matrix::Who::As(crate::Caller::admin()),
        "StopVmInstance",
        json!({"uuid": uuid}),
    );
    assert_eq!(e.code, Code::OperationFailure);
    assert!(
        e.details
            .contains("current vm instance state[Stopped] doesn't allow to proceed message[org.zstack.header.vm.APIStopVmInstanceMsg]"),
        "{}",
        e.details
    );
    assert_eq!(
        h.admin_refused("PauseVmInstance", json!({"uuid": uuid})),
        Code::OperationFailure
    );
    let r = h.admin("StartVmInstance", json!({"uuid": uuid}));
    assert_eq!(r["inventory"]["state"], "Running");
    assert_eq!(r["inventory"]["hostUuid"], json!(i.host));
    assert_eq!(r["inventory"]["vmNics"][0]["ip"], "192.168.1.10");
    let r = h.admin("RebootVmInstance", json!({"uuid": uuid}));
    assert_eq!(r["inventory"]["state"], "Running");
    let r = h.admin("PauseVmInstance", json!({"uuid": uuid}));
    assert_eq!(r["inventory"]["state"], "Paused");
    assert_eq!(
        h.admin_refused("RebootVmInstance", json!({"uuid": uuid})),
        Code::OperationFailure
    );
    let r = h.admin("ResumeVmInstance", json!({"uuid": uuid}));
    assert_eq!(r["inventory"]["state"], "Running");
    let r = h.admin("StopVmInstance", json!({"uuid": uuid, "type": "cold"}));
    assert_eq!(r["inventory"]["state"], "Stopped");
}

#[test]
fn destroy_recover_expunge_under_the_delay_policy() {
    let (mut h, i) = world();
    let free = host_free(&mut h, &i);
    let uuid = create(&mut h, &i, "vm")
        .get("uuid")
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    h.admin("DestroyVmInstance", json!({"uuid": uuid}));
    let q = vm(&mut h, &uuid);
    assert_eq!(q["state"], "Destroyed");
    assert_eq!(host_free(&mut h, &i), free);
    assert_eq!(
        used_ips(&mut h, &i),
        0,
        "a destroyed VM's address goes back"
    );
    assert_eq!(
        h.count("QueryVolume", eq("vmInstanceUuid", &uuid)),
        1,
        "kept until expunged"
    );
    let r = h.admin("RecoverVmInstance", json!({"uuid": uuid}));
    assert_eq!(r["inventory"]["state"], "Stopped");
    assert_eq!(
        used_ips(&mut h, &i),
        1,
        "recover allocates an address again"
    );
    h.admin("DestroyVmInstance", json!({"uuid": uuid}));
    h.admin("ExpungeVmInstance", json!({"uuid": uuid}));
    assert_eq!(h.count("QueryVmInstance", eq("uuid", &uuid)), 0);
    assert_eq!(h.count("QueryVolume", eq("vmInstanceUuid", &uuid)), 0);
    assert_eq!(used_ips(&mut h, &i), 0);
}

#[test]
fn direct_deletion_removes_everything_at_once() {
    let (mut h, i) = world();
    h.admin(
        "UpdateGlobalConfig",
        json!({"category": "vm", "name": "deletionPolicy", "value": "Direct"}),
    );
    let free = host_free(&mut h, &i);
    let uuid = create(&mut h, &i, "vm")
        .get("uuid")
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    h.admin("DestroyVmInstance", json!({"uuid": uuid}));
    assert_eq!(h.count("QueryVmInstance", eq("uuid", &uuid)), 0);
    assert_eq!(h.count("QueryVolume", eq("vmInstanceUuid", &uuid)), 0);
    assert_eq!(host_free(&mut h, &i), free);
    assert_eq!(used_ips(&mut h, &i), 0);
}

#[test]
fn a_create_that_cannot_be_placed_leaves_nothing() {
    let (mut h, i) = world();
    let big = h.created(
        "CreateInstanceOffering",
        json!({"name": "huge", "cpuNum": 64, "memorySize": 1u64 << 40}),
    );
    let free = host_free(&mut h, &i);
    let vms = h.count("QueryVmInstance", json!([]));
    let vols = h.count("QueryVolume", json!([]));
    let code = h.admin_refused(
        "CreateVmInstance",
        json!({"name": "big", "instanceOfferingUuid": big, "imageUuid": i.image, "l3NetworkUuids": [i.l3]}),
    );
    assert_eq!(code, Code::NoAvailableHost);
    assert_eq!(h.count("QueryVmInstance", json!([])), vms);
    assert_eq!(h.count("QueryVolume", json!([])), vols);
    assert_eq!(host_free(&mut h, &i), free);
    assert_eq!(used_ips(&mut h, &i), 0);
}

#[test]
fn an_exhausted_ip_range_rolls_the_placement_back() {
    let (mut h, i) = world();
    let free = host_free(&mut h, &i);
    // Every address of the range (192.168.1.10–20) but none for the VM.
    for n in 10..=20 {
        h.admin(
            "CreateVmInstance",
            json!({"name": format!("v{n}"), "instanceOfferingUuid": i.io, "imageUuid": i.image, "l3NetworkUuids": [i.l3]}),
        );
    }
    let taken = host_free(&mut h, &i);
    assert!(taken.0 < free.0);
    let code = h.admin_refused(
        "CreateVmInstance",
        json!({"name": "late", "instanceOfferingUuid": i.io, "imageUuid": i.image, "l3NetworkUuids": [i.l3]}),
    );
    assert_eq!(code, Code::IpAllocation);
    assert_eq!(
        host_free(&mut h, &i),
        taken,
        "the failed create's reservation went back"
    );
}

#[test]
fn bad_input_is_refused_before_anything_is_written() {
    let (mut h, i) = world();
    for (body, code) in [
        (
            json!({"name": "x", "instanceOfferingUuid": i.io, "imageUuid": i.image, "l3NetworkUuids": []}),
            Code::InvalidArgument,
        ),
        (
            json!({"name": "x", "instanceOfferingUuid": i.io, "imageUuid": i.image, "l3NetworkUuids": [i.l3, i.l3]}),
            Code::InvalidArgument,
        ),
        (
            json!({"name": "x", "instanceOfferingUuid": i.io, "imageUuid": i.image, "l3NetworkUuids": [i.l3], "strategy": "Sometime"}),
            Code::InvalidArgument,
        ),
        (
            json!({"name": "x", "instanceOfferingUuid": i.io, "imageUuid": i.deleted_image, "l3NetworkUuids": [i.l3]}),
            Code::OperationFailure,
        ),
        (
            json!({"name": "x", "instanceOfferingUuid": crate::testing::matrix::missing(), "imageUuid": i.image, "l3NetworkUuids": [i.l3]}),
            Code::ResourceNotFound,
        ),
        (
            json!({"name": "x", "instanceOfferingUuid": i.io, "imageUuid": i.image, "l3NetworkUuids": [i.l3], "defaultL3NetworkUuid": i.l3v}),
            Code::InvalidArgument,
        ),
    ] {
        assert_eq!(
            h.admin_refused("CreateVmInstance", body.clone()),
            code,
            "{body}"
        );
    }
}

#[test]
fn create_stopped_holds_no_capacity() {
    let (mut h, i) = world();
    let free = host_free(&mut h, &i);
    let r = h.admin(
        "CreateVmInstance",
        json!({"name": "cold", "instanceOfferingUuid": i.io, "imageUuid": i.image, "l3NetworkUuids": [i.l3], "strategy": "CreateStopped"}),
    );
    assert_eq!(r["inventory"]["state"], "Stopped");
    assert_eq!(r["inventory"]["lastHostUuid"], json!(i.host));
    assert_eq!(host_free(&mut h, &i), free);
    let uuid = r["inventory"]["uuid"].as_str().unwrap().to_string();
    let q = vm(&mut h, &uuid);
    assert_eq!(q["allVolumes"][0]["status"], "Ready");
    let r = h.admin("StartVmInstance", json!({"uuid": uuid}));
    assert_eq!(r["inventory"]["state"], "Running");
}

#[test]
fn a_host_with_vms_cannot_be_deleted() {
    let (mut h, i) = world();
    create(&mut h, &i, "vm");
    assert_eq!(
        h.admin_refused("DeleteHost", json!({"uuid": i.host})),
        Code::OperationFailure
    );
}

#[test]
fn destroyed_vms_are_due_for_expunge_after_the_period_once_per_destroy() {
    let (mut h, i) = world();
    let uuid = create(&mut h, &i, "vm")
        .get("uuid")
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    h.admin("DestroyVmInstance", json!({"uuid": uuid}));
    let at = h.n;
    // The base world sets vm.expungePeriod to 3600 s; steps are 1 s apart.
    let due =
        |h: &Harness, secs: u64| super::expunge_jobs(&h.t, 1000 * (u64::from(at) + secs)).unwrap();
    assert!(due(&h, 3599).is_empty(), "not before the period");
    let jobs = due(&h, 3600);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].chain, uuid);
    assert_eq!(jobs[0].api_name, "ExpungeVmInstance");
    assert_eq!(
        due(&h, 7200)[0].uuid,
        jobs[0].uuid,
        "the same job on every sweep"
    );
    // Recovered and destroyed again: a new deadline and a new job.
    h.admin("RecoverVmInstance", json!({"uuid": uuid}));
    assert!(due(&h, 3600).is_empty(), "a recovered VM is not due");
    h.admin("DestroyVmInstance", json!({"uuid": uuid}));
    let again = super::expunge_jobs(&h.t, 1000 * (u64::from(h.n) + 3600)).unwrap();
    assert_eq!(again.len(), 1);
    assert_ne!(again[0].uuid, jobs[0].uuid);
    // Never: kept until expunged by hand.
    h.admin(
        "UpdateGlobalConfig",
        json!({"category": "vm", "name": "deletionPolicy", "value": "Never"}),
    );
    assert!(super::expunge_jobs(&h.t, u64::MAX).unwrap().is_empty());
}

/// Run one submitted job's named flow directly on the harness's state (no job record),
/// effects answered by the harness's scripted agent.
fn run_flow(h: &mut Harness, job: &crate::job::Submission) {
    let crate::job::FlowSpec::Named { flow, vars } = &job.flow else {
        panic!("not a named flow")
    };
    let def = crate::registry::flow(flow).unwrap();
    let mut vars = vars.clone();
    h.n += 1;
    let c = crate::testing::ctx(u64::from(h.n));
    for s in def.steps {
        match &s.action {
            crate::flow::Action::Commit(f) => {
                f(&mut h.t, &c, &crate::Caller::admin(), &mut vars).unwrap();
            }
            crate::flow::Action::Effect(f) => {
                let req = f(&vars).unwrap();
                vars.extend(crate::testing::harness::scripted_effect(&req).unwrap());
            }
        }
    }
}

#[test]
fn reconciliation_stops_a_vm_its_host_lost_unless_it_moved_meanwhile() {
    use super::flows::Target;
    use super::reconcile::jobs_for_host;
    let (mut h, i) = world();
    let free = host_free(&mut h, &i);
    let uuid = create(&mut h, &i, "vm")
        .get("uuid")
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    let target = Target {
        host_uuid: i.host.clone(),
        management_ip: "10.0.1.1".into(),
    };
    // The host lists no domain: one job, which (the scripted agent listing none either)
    // marks the VM Stopped and gives its capacity back.
    let jobs = jobs_for_host(&h.t, &target, &[], 1).unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].chain, uuid);
    run_flow(&mut h, &jobs[0]);
    assert_eq!(vm(&mut h, &uuid)["state"], "Stopped");
    assert_eq!(host_free(&mut h, &i), free);
    // In agreement: nothing to do.
    h.admin("StartVmInstance", json!({"uuid": uuid}));
    let dom = super::reconcile::Domain {
        name: uuid.clone(),
        state: "Running".into(),
    };
    assert!(jobs_for_host(&h.t, &target, std::slice::from_ref(&dom), 2)
        .unwrap()
        .is_empty());
    // Planned while the VM ran here, run after the VM was stopped by its own operation: the
    // job sees Stopped@- where it planned Running@<host> and does nothing. (Had the VM come
    // back Running on this host, the job's fresh look at the host's domains decides.)
    let jobs = jobs_for_host(&h.t, &target, &[], 3).unwrap();
    assert_eq!(jobs.len(), 1);
    h.admin("StopVmInstance", json!({"uuid": uuid}));
    let before = vm(&mut h, &uuid);
    run_flow(&mut h, &jobs[0]);
    assert_eq!(
        vm(&mut h, &uuid),
        before,
        "the job changed a VM that moved on"
    );
}

/// Maintenance's VM side when a VM neither migrates nor stops: the plan claims it (Migrating,
/// its destination reserved), the finish puts it back Running on its host with the
/// destination's capacity returned and names it as a failure; an abort after that changes
/// nothing more.
#[test]
fn an_evacuation_that_fails_gives_everything_back() {
    use super::evacuate;
    use crate::registry::serve;
    let (mut h, i) = world();
    h.admin(
        "AttachPrimaryStorageToCluster",
        json!({"primaryStorageUuid": i.smp, "clusterUuid": i.cluster}),
    );
    h.admin("ReconnectPrimaryStorage", json!({"uuid": i.smp}));
    h.admin(
        "ChangeHostState",
        json!({"uuid": i.host_in_maintenance, "stateEvent": "enable"}),
    );
    let inv = h.admin(
        "CreateVmInstance",
        json!({"name": "vm", "instanceOfferingUuid": i.io, "imageUuid": i.image,
               "l3NetworkUuids": [i.l3], "primaryStorageUuidForRootVolume": i.smp,
               "hostUuid": i.host}),
    )["inventory"]
        .clone();
    let uuid = inv["uuid"].as_str().unwrap().to_string();
    let other_free = |h: &mut Harness| {
        h.one("QueryHost", "uuid", &i.host_in_maintenance)["availableCpuCapacity"].clone()
    };
    let free_before = other_free(&mut h);
    let ctx = crate::ApplyCtx {
        index: 1,
        term: 1,
        proposed_at_ms: 5_000_000,
    };
    let admin = crate::Caller::admin();
    let planned = serve(
        &mut h.t,
        &ctx,
        &admin,
        evacuate::PLAN,
        &json!({"hostUuid": i.host, "evacuate": true}),
    )
    .unwrap();
    assert_eq!(planned["action"], super::flows::actions::EVACUATE);
    assert_eq!(vm(&mut h, &uuid)["state"], "Migrating");
    assert_ne!(
        other_free(&mut h),
        free_before,
        "the destination is reserved"
    );
    let plan = planned["payload"].as_str().unwrap().to_string();
    let results = json!({ uuid.clone(): {"failed": {"reason": "libvirt said no"}} }).to_string();
    let out = serve(
        &mut h.t,
        &ctx,
        &admin,
        evacuate::FINISH,
        &json!({"plan": plan, "results": results}),
    )
    .unwrap();
    assert_eq!(out["failures"].as_array().unwrap().len(), 1, "{out}");
    let v = vm(&mut h, &uuid);
    assert_eq!(
        (v["state"].clone(), v["hostUuid"].clone()),
        (json!("Running"), json!(i.host))
    );
    assert_eq!(
        other_free(&mut h),
        free_before,
        "the destination's capacity is back"
    );
    serve(
        &mut h.t,
        &ctx,
        &admin,
        evacuate::ABORT,
        &json!({"plan": plan}),
    )
    .unwrap();
    assert_eq!(vm(&mut h, &uuid)["state"], "Running");
    assert_eq!(other_free(&mut h), free_before);
}
