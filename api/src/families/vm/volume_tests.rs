//! Data-volume flows through the wire (side effects answered by the harness's scripted agent):
//! what the records hold after each call, after refusals, and after a rolled-back flow.

use serde_json::json;
use serde_json::Value;

use crate::testing::matrix::base;
use crate::testing::matrix::Harness;
use crate::testing::matrix::Ids;
use crate::testing::matrix::Who;
use crate::wire::errors::Code;
use crate::Caller;

fn world() -> (Harness, Ids) {
    let (mut h, i) = base();
    h.admin("ReconnectPrimaryStorage", json!({"uuid": i.local}));
    (h, i)
}

fn vm(h: &mut Harness, i: &Ids, strategy: &str) -> String {
    h.admin(
        "CreateVmInstance",
        json!({"name": "vm", "instanceOfferingUuid": i.io, "imageUuid": i.image,
               "l3NetworkUuids": [i.l3], "strategy": strategy}),
    )["inventory"]["uuid"]
        .as_str()
        .unwrap()
        .to_string()
}

fn volume(h: &mut Harness, body: Value) -> Value {
    h.admin("CreateDataVolume", body)["inventory"].clone()
}

fn data_volumes(h: &mut Harness) -> usize {
    h.count_eq("QueryVolume", "type", "Data")
}

#[test]
fn a_create_on_local_storage_without_its_host_leaves_no_record() {
    let (mut h, i) = world();
    let e = h.refused(
        &Who::As(Caller::admin()),
        "CreateDataVolume",
        json!({"name": "d", "diskSize": 1u64 << 30, "primaryStorageUuid": i.local}),
    );
    assert_eq!(e.code, Code::InvalidArgument);
    assert_eq!(
        data_volumes(&mut h),
        0,
        "the rolled-back create left its record"
    );
}

#[test]
fn attach_instantiates_on_the_vms_storage_and_takes_the_next_device() {
    let (mut h, i) = world();
    let vm = vm(&mut h, &i, "InstantStart");
    let mut ids = Vec::new();
    for k in 0..2 {
        let v = volume(
            &mut h,
            json!({"name": format!("d{k}"), "diskSize": 1u64 << 30}),
        );
        assert_eq!(v["status"], "NotInstantiated");
        let id = v["uuid"].as_str().unwrap().to_string();
        let a = h.admin(
            "AttachDataVolumeToVm",
            json!({"volumeUuid": id, "vmInstanceUuid": vm}),
        );
        assert_eq!(a["inventory"]["deviceId"], k + 1);
        assert_eq!(a["inventory"]["primaryStorageUuid"], json!(i.local));
        assert!(a["inventory"]["installPath"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/volumes/{id}.qcow2")));
        ids.push(id);
    }
    // The first slot freed is the next one taken.
    h.admin("DetachDataVolumeFromVm", json!({"uuid": ids[0]}));
    let v = volume(&mut h, json!({"name": "d2", "diskSize": 1u64 << 30}));
    let a = h.admin(
        "AttachDataVolumeToVm",
        json!({"volumeUuid": v["uuid"], "vmInstanceUuid": vm}),
    );
    assert_eq!(a["inventory"]["deviceId"], 1);
}

#[test]
fn a_destroyed_vm_takes_no_volume_and_the_refusal_changes_nothing() {
    let (mut h, i) = world();
    let vm = vm(&mut h, &i, "InstantStart");
    h.admin("DestroyVmInstance", json!({"uuid": vm}));
    let v = volume(&mut h, json!({"name": "d", "diskSize": 1u64 << 30}));
    let e = h.refused(
        &Who::As(Caller::admin()),
        "AttachDataVolumeToVm",
        json!({"volumeUuid": v["uuid"], "vmInstanceUuid": vm}),
    );
    assert_eq!(e.code, Code::OperationFailure);
    assert!(
        e.details.contains("current vm instance state[Destroyed] doesn't allow to proceed message[org.zstack.header.volume.APIAttachDataVolumeToVmMsg]"),
        "{}",
        e.details
    );
    let after = h.one("QueryVolume", "uuid", v["uuid"].as_str().unwrap());
    assert_eq!(after["status"], "NotInstantiated");
    assert_eq!(after.get("vmInstanceUuid"), None);
}

#[test]
fn direct_deletion_removes_the_record_and_delay_keeps_it_recoverable() {
    let (mut h, i) = world();
    let vm = vm(&mut h, &i, "CreateStopped");
    let v = volume(&mut h, json!({"name": "d", "diskSize": 1u64 << 30}));
    let id = v["uuid"].as_str().unwrap().to_string();
    h.admin(
        "AttachDataVolumeToVm",
        json!({"volumeUuid": id, "vmInstanceUuid": vm}),
    );
    h.admin("DeleteDataVolume", json!({"uuid": id}));
    let d = h.one("QueryVolume", "uuid", &id);
    assert_eq!(d["status"], "Deleted");
    assert_eq!(
        d.get("vmInstanceUuid"),
        None,
        "a deleted volume is detached"
    );
    let r = h.admin("RecoverDataVolume", json!({"uuid": id}));
    assert_eq!(r["inventory"]["status"], "Ready");
    h.admin(
        "UpdateGlobalConfig",
        json!({"category": "volume", "name": "deletionPolicy", "value": "Direct"}),
    );
    h.admin("DeleteDataVolume", json!({"uuid": id}));
    assert_eq!(data_volumes(&mut h), 0);
}

#[test]
fn a_resize_grows_by_at_least_four_megabytes() {
    let (mut h, i) = world();
    let vm = vm(&mut h, &i, "InstantStart");
    let v = volume(&mut h, json!({"name": "d", "diskSize": 1u64 << 30}));
    let id = v["uuid"].as_str().unwrap().to_string();
    h.admin(
        "AttachDataVolumeToVm",
        json!({"volumeUuid": id, "vmInstanceUuid": vm}),
    );
    let e = h.refused(
        &Who::As(Caller::admin()),
        "ResizeDataVolume",
        json!({"uuid": id, "size": (1u64 << 30) + (1 << 20)}),
    );
    assert_eq!(e.code, Code::OperationFailure);
    assert_eq!(h.one("QueryVolume", "uuid", &id)["size"], 1u64 << 30);
    let r = h.admin(
        "ResizeDataVolume",
        json!({"uuid": id, "size": (1u64 << 30) + (4 << 20)}),
    );
    assert_eq!(r["inventory"]["size"], (1u64 << 30) + (4 << 20));
    // A root volume is not resized as a data volume.
    let root = crate::params::derive_uuid(&vm, 0);
    let e = h.refused(
        &Who::As(Caller::admin()),
        "ResizeDataVolume",
        json!({"uuid": root, "size": 4u64 << 30}),
    );
    assert_eq!(e.code, Code::OperationFailure);
}

#[test]
fn deleted_volumes_are_due_for_expunge_after_the_period_once_per_deletion() {
    let (mut h, _) = world();
    let v = volume(&mut h, json!({"name": "d", "diskSize": 1u64 << 30}));
    let id = v["uuid"].as_str().unwrap().to_string();
    h.admin("DeleteDataVolume", json!({"uuid": id}));
    let at = crate::resource::load::<super::Volume>(&h.t, &id)
        .unwrap()
        .unwrap()
        .1
        .last_op_date;
    // volume.expungePeriod is 86400 s by default.
    let due = |h: &Harness, ms: u64| super::volume_expunge_jobs(&h.t, ms).unwrap();
    assert!(due(&h, at + 86_399_999).is_empty(), "not before the period");
    let jobs = due(&h, at + 86_400_000);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].chain, id);
    assert_eq!(jobs[0].api_name, "ExpungeDataVolume");
    assert_eq!(
        due(&h, u64::MAX)[0].uuid,
        jobs[0].uuid,
        "the same job every sweep"
    );
    // Recovered: not due; deleted again: a new job.
    h.admin("RecoverDataVolume", json!({"uuid": id}));
    assert!(due(&h, u64::MAX).is_empty());
    h.admin("DeleteDataVolume", json!({"uuid": id}));
    let again = due(&h, u64::MAX);
    assert_eq!(again.len(), 1);
    assert_ne!(again[0].uuid, jobs[0].uuid);
    h.admin(
        "UpdateGlobalConfig",
        json!({"category": "volume", "name": "deletionPolicy", "value": "Never"}),
    );
    assert!(
        due(&h, u64::MAX).is_empty(),
        "Never: kept until expunged by hand"
    );
}
