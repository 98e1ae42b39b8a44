//! Call-matrix cases of the VM calls (run by `testing::matrix`). The base world holds no VM:
//! each case that acts on one creates it first (`given`), named by `resourceUuid`.

use serde_json::json;
use serde_json::Value;

use crate::testing::matrix::bad_query;
use crate::testing::matrix::eq;
use crate::testing::matrix::found;
use crate::testing::matrix::gone;
use crate::testing::matrix::inv;
use crate::testing::matrix::missing;
use crate::testing::matrix::no;
use crate::testing::matrix::ok;
use crate::testing::matrix::Case;
use crate::testing::matrix::Ids;
use crate::testing::matrix::Parties;
use crate::testing::matrix::Who;
use crate::wire::errors::Code;

/// The uuid the cases' VM is created with.
const VM: &str = "00000000000000000000000000f00d01";

fn create_body(i: &Ids, strategy: &str) -> Value {
    json!({
        "name": "vm", "instanceOfferingUuid": i.io, "imageUuid": i.image,
        "l3NetworkUuids": [i.l3], "strategy": strategy, "resourceUuid": VM,
    })
}

/// A case run on a world whose local storage is measured and that holds the VM, Running
/// (`InstantStart`) or Stopped (`CreateStopped`).
fn with_vm(c: Case, admin: &Who, i: &Ids, strategy: &str) -> Case {
    c.given(admin, "ReconnectPrimaryStorage", json!({"uuid": i.local}))
        .given(admin, "CreateVmInstance", create_body(i, strategy))
}

/// The call-matrix cases of this family's calls.
pub(crate) fn cases(ids: &Ids) -> Vec<Case> {
    let Parties { admin, tenant, .. } = Parties::of(ids);
    let i = ids.clone();
    let run = "InstantStart";
    let stopped = "CreateStopped";
    let mut m = vec![
        ok("CreateVmInstance", &admin, create_body(&i, run), |h, r| {
            assert_eq!(r["inventory"]["state"], "Running");
            assert_eq!(r["inventory"]["vmNics"][0]["ip"], "192.168.1.10");
            assert_eq!(r["inventory"]["allVolumes"][0]["type"], "Root");
            assert_eq!(h.count("QueryVolume", eq("vmInstanceUuid", VM)), 1);
        })
        .given(&admin, "ReconnectPrimaryStorage", json!({"uuid": i.local})),
        // The local storage of the base world was never measured: nothing can hold the root
        // volume, and the refusal leaves nothing behind.
        no(
            "CreateVmInstance",
            &admin,
            create_body(&i, run),
            Code::NoAvailableHost,
        ),
        no(
            "CreateVmInstance",
            &admin,
            json!({"name": "vm", "instanceOfferingUuid": i.io, "imageUuid": i.image, "l3NetworkUuids": []}),
            Code::InvalidArgument,
        ),
        no(
            "CreateVmInstance",
            &tenant,
            create_body(&i, run),
            Code::PermissionDenied,
        ),
    ];
    m.push(with_vm(
        ok(
            "StartVmInstance",
            &admin,
            json!({"uuid": VM}),
            inv("state", "Running"),
        ),
        &admin,
        &i,
        stopped,
    ));
    m.push(with_vm(
        no(
            "StartVmInstance",
            &admin,
            json!({"uuid": VM}),
            Code::OperationFailure,
        ),
        &admin,
        &i,
        run,
    ));
    m.push(with_vm(
        ok(
            "StopVmInstance",
            &admin,
            json!({"uuid": VM, "type": "cold"}),
            inv("state", "Stopped"),
        ),
        &admin,
        &i,
        run,
    ));
    m.push(with_vm(
        no(
            "StopVmInstance",
            &admin,
            json!({"uuid": VM, "type": "softly"}),
            Code::InvalidArgument,
        ),
        &admin,
        &i,
        run,
    ));
    for (call, from, want) in [
        ("RebootVmInstance", run, "Running"),
        ("PauseVmInstance", run, "Paused"),
    ] {
        m.push(with_vm(
            ok(call, &admin, json!({"uuid": VM}), inv("state", want)),
            &admin,
            &i,
            from,
        ));
        m.push(with_vm(
            no(call, &admin, json!({"uuid": VM}), Code::OperationFailure),
            &admin,
            &i,
            stopped,
        ));
    }
    m.push(
        with_vm(
            ok(
                "ResumeVmInstance",
                &admin,
                json!({"uuid": VM}),
                inv("state", "Running"),
            ),
            &admin,
            &i,
            run,
        )
        .given(&admin, "PauseVmInstance", json!({"uuid": VM})),
    );
    m.push(with_vm(
        no(
            "ResumeVmInstance",
            &admin,
            json!({"uuid": VM}),
            Code::OperationFailure,
        ),
        &admin,
        &i,
        run,
    ));
    m.push(with_vm(
        ok(
            "DestroyVmInstance",
            &admin,
            json!({"uuid": VM}),
            found("QueryVmInstance", VM, "state", "Destroyed"),
        ),
        &admin,
        &i,
        run,
    ));
    m.push(with_vm(
        no(
            "DestroyVmInstance",
            &tenant,
            json!({"uuid": VM}),
            Code::PermissionDenied,
        ),
        &admin,
        &i,
        run,
    ));
    m.push(
        with_vm(
            ok(
                "ExpungeVmInstance",
                &admin,
                json!({"uuid": VM}),
                gone("QueryVmInstance", VM),
            ),
            &admin,
            &i,
            run,
        )
        .given(&admin, "DestroyVmInstance", json!({"uuid": VM})),
    );
    m.push(with_vm(
        no(
            "ExpungeVmInstance",
            &admin,
            json!({"uuid": VM}),
            Code::OperationFailure,
        ),
        &admin,
        &i,
        run,
    ));
    m.push(
        with_vm(
            ok(
                "RecoverVmInstance",
                &admin,
                json!({"uuid": VM}),
                inv("state", "Stopped"),
            ),
            &admin,
            &i,
            run,
        )
        .given(&admin, "DestroyVmInstance", json!({"uuid": VM})),
    );
    m.push(no(
        "RecoverVmInstance",
        &admin,
        json!({"uuid": missing()}),
        Code::ResourceNotFound,
    ));
    m.push(with_vm(
        ok(
            "UpdateVmInstance",
            &admin,
            json!({"uuid": VM, "name": "renamed"}),
            inv("name", "renamed"),
        ),
        &admin,
        &i,
        run,
    ));
    m.push(no(
        "UpdateVmInstance",
        &admin,
        json!({"uuid": missing(), "name": "x"}),
        Code::ResourceNotFound,
    ));
    m.push(with_vm(
        ok(
            "QueryVmInstance",
            &admin,
            json!({"conditions": [{"name": "vmNics.ip", "op": "=", "value": "192.168.1.10"}], "replyWithCount": true}),
            |_, r| {
                assert_eq!(r["total"], 1);
                assert_eq!(r["inventories"][0]["uuid"], VM);
                assert_eq!(r["inventories"][0]["allVolumes"][0]["type"], "Root");
            },
        ),
        &admin,
        &i,
        run,
    ));
    m.push(with_vm(
        ok(
            "QueryVmInstance",
            &tenant,
            json!({"conditions": []}),
            |_, r| assert_eq!(r["inventories"], json!([]), "a tenant sees no admin VM"),
        ),
        &admin,
        &i,
        run,
    ));
    m.push(no(
        "QueryVmInstance",
        &admin,
        bad_query(),
        Code::InvalidArgument,
    ));
    m.push(with_vm(
        ok(
            "QueryVolume",
            &admin,
            json!({"conditions": eq("vmInstanceUuid", VM)}),
            |_, r| {
                assert_eq!(r["inventories"][0]["type"], "Root");
                assert_eq!(r["inventories"][0]["status"], "Ready");
            },
        ),
        &admin,
        &i,
        run,
    ));
    m.push(no(
        "QueryVolume",
        &admin,
        bad_query(),
        Code::InvalidArgument,
    ));
    m.extend(migration_cases(&admin, &tenant, &i));
    m.extend(volume_cases(&admin, &tenant, &i));
    m.extend(nic_cases(&admin, &tenant, &i));
    m.extend(clone_cases(&admin, &tenant, &i));
    m.extend(snapshot_cases(&admin, &tenant, &i));
    m
}

/// A case on a world whose second host is Enabled again and whose VM runs on the cluster's
/// shared mount point storage (live-migratable), on the first host.
fn with_shared_vm(c: Case, admin: &Who, i: &Ids, strategy: &str) -> Case {
    let mut body = create_body(i, strategy);
    body["primaryStorageUuidForRootVolume"] = json!(i.smp);
    body["hostUuid"] = json!(i.host);
    c.given(
        admin,
        "AttachPrimaryStorageToCluster",
        json!({"primaryStorageUuid": i.smp, "clusterUuid": i.cluster}),
    )
    .given(admin, "ReconnectPrimaryStorage", json!({"uuid": i.smp}))
    .given(
        admin,
        "ChangeHostState",
        json!({"uuid": i.host_in_maintenance, "stateEvent": "enable"}),
    )
    .given(admin, "CreateVmInstance", body)
}

fn migration_cases(admin: &Who, tenant: &Who, i: &Ids) -> Vec<Case> {
    let (source, destination) = (i.host.clone(), i.host_in_maintenance.clone());
    let run = "InstantStart";
    let mut m = Vec::new();
    let (s, d) = (source.clone(), destination.clone());
    m.push(with_shared_vm(
        ok(
            "MigrateVm",
            admin,
            json!({"vmInstanceUuid": VM}),
            move |h, r| {
                assert_eq!(r["inventory"]["state"], "Running");
                assert_eq!(r["inventory"]["hostUuid"], d.as_str());
                assert_eq!(r["inventory"]["lastHostUuid"], d.as_str());
                let from = h.one("QueryHost", "uuid", &s);
                assert_eq!(
                    from["availableCpuCapacity"], from["totalCpuCapacity"],
                    "the source's capacity is back: {from}"
                );
                let to = h.one("QueryHost", "uuid", &d);
                assert_ne!(
                    to["availableCpuCapacity"], to["totalCpuCapacity"],
                    "the destination holds the VM: {to}"
                );
            },
        ),
        admin,
        i,
        run,
    ));
    m.push(with_shared_vm(
        ok(
            "MigrateVm",
            admin,
            json!({"vmInstanceUuid": VM, "hostUuid": destination}),
            inv("hostUuid", destination.as_str()),
        ),
        admin,
        i,
        run,
    ));
    // Its own host, a host that does not exist, a VM not running, a VM on local storage.
    for (body, code) in [
        (
            json!({"vmInstanceUuid": VM, "hostUuid": source}),
            Code::OperationFailure,
        ),
        (
            json!({"vmInstanceUuid": VM, "hostUuid": missing()}),
            Code::ResourceNotFound,
        ),
        (
            json!({"vmInstanceUuid": VM, "strategy": "auto-converge"}),
            Code::InvalidArgument,
        ),
    ] {
        m.push(with_shared_vm(
            no("MigrateVm", admin, body, code),
            admin,
            i,
            run,
        ));
    }
    m.push(with_shared_vm(
        no(
            "MigrateVm",
            admin,
            json!({"vmInstanceUuid": VM}),
            Code::OperationFailure,
        ),
        admin,
        i,
        "CreateStopped",
    ));
    m.push(with_vm(
        no(
            "MigrateVm",
            admin,
            json!({"vmInstanceUuid": VM}),
            Code::OperationFailure,
        ),
        admin,
        i,
        run,
    ));
    // The only other host is in Maintenance: nothing fits, the VM stays where it runs.
    let mut on_smp = create_body(i, run);
    on_smp["primaryStorageUuidForRootVolume"] = json!(i.smp);
    m.push(
        no(
            "MigrateVm",
            admin,
            json!({"vmInstanceUuid": VM, "hostUuid": destination}),
            Code::NoAvailableHost,
        )
        .given(
            admin,
            "AttachPrimaryStorageToCluster",
            json!({"primaryStorageUuid": i.smp, "clusterUuid": i.cluster}),
        )
        .given(admin, "ReconnectPrimaryStorage", json!({"uuid": i.smp}))
        .given(admin, "CreateVmInstance", on_smp),
    );
    m.push(no(
        "MigrateVm",
        admin,
        json!({"vmInstanceUuid": missing()}),
        Code::ResourceNotFound,
    ));
    m.push(with_shared_vm(
        no(
            "MigrateVm",
            tenant,
            json!({"vmInstanceUuid": VM}),
            Code::PermissionDenied,
        ),
        admin,
        i,
        run,
    ));
    // Host maintenance evacuates: the shared-storage VM migrates, the local one stops.
    let (s, d) = (source.clone(), destination.clone());
    m.push(with_shared_vm(
        ok(
            "ChangeHostState",
            admin,
            json!({"uuid": source, "stateEvent": "maintain"}),
            move |h, r| {
                assert_eq!(r["inventory"]["state"], "Maintenance");
                let vm = h.one("QueryVmInstance", "uuid", VM);
                assert_eq!(vm["state"], "Running");
                assert_eq!(vm["hostUuid"], d.as_str());
                let from = h.one("QueryHost", "uuid", &s);
                assert_eq!(from["availableCpuCapacity"], from["totalCpuCapacity"]);
            },
        ),
        admin,
        i,
        run,
    ));
    let s = source.clone();
    m.push(with_vm(
        ok(
            "ChangeHostState",
            admin,
            json!({"uuid": source, "stateEvent": "maintain"}),
            move |h, r| {
                assert_eq!(r["inventory"]["state"], "Maintenance");
                let vm = h.one("QueryVmInstance", "uuid", VM);
                assert_eq!(vm["state"], "Stopped", "a VM on local storage stops: {vm}");
                let from = h.one("QueryHost", "uuid", &s);
                assert_eq!(from["availableCpuCapacity"], from["totalCpuCapacity"]);
            },
        ),
        admin,
        i,
        run,
    ));
    let d = destination.clone();
    m.push(with_shared_vm(
        ok(
            "GetVmMigrationCandidateHosts",
            admin,
            json!({"vmInstanceUuid": VM}),
            move |_, r| {
                let hosts: Vec<&str> = r["inventories"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|h| h["uuid"].as_str())
                    .collect();
                assert_eq!(hosts, [d.as_str()], "its own host is never a candidate");
            },
        ),
        admin,
        i,
        run,
    ));
    m.push(with_shared_vm(
        no(
            "GetVmMigrationCandidateHosts",
            admin,
            json!({"vmInstanceUuid": VM}),
            Code::OperationFailure,
        ),
        admin,
        i,
        "CreateStopped",
    ));
    m.push(no(
        "GetVmMigrationCandidateHosts",
        admin,
        json!({"vmInstanceUuid": missing()}),
        Code::ResourceNotFound,
    ));
    m.push(with_shared_vm(
        no(
            "GetVmMigrationCandidateHosts",
            tenant,
            json!({"vmInstanceUuid": VM}),
            Code::PermissionDenied,
        ),
        admin,
        i,
        run,
    ));
    m
}

/// The uuid the cases' data volume is created with.
const DATA: &str = "00000000000000000000000000da7a01";

fn data_body(size: u64) -> Value {
    json!({"name": "data", "diskSize": size, "resourceUuid": DATA})
}

/// A data volume of `size` made at once on the local storage, on the world's host.
fn on_local(i: &Ids, size: u64) -> Value {
    json!({"name": "data", "diskSize": size, "primaryStorageUuid": i.local,
           "systemTags": [format!("localStorage::hostUuid::{}", i.host)], "resourceUuid": DATA})
}

/// A case on a world holding the VM (`strategy`) and a NotInstantiated 1 GiB data volume.
fn with_data(c: Case, admin: &Who, i: &Ids, strategy: &str) -> Case {
    with_vm(c, admin, i, strategy).given(admin, "CreateDataVolume", data_body(1 << 30))
}

/// ... and the volume attached to the VM.
fn with_attached(c: Case, admin: &Who, i: &Ids, strategy: &str) -> Case {
    with_data(c, admin, i, strategy).given(
        admin,
        "AttachDataVolumeToVm",
        json!({"volumeUuid": DATA, "vmInstanceUuid": VM}),
    )
}

#[allow(clippy::too_many_lines)]
fn volume_cases(admin: &Who, tenant: &Who, i: &Ids) -> Vec<Case> {
    let run = "InstantStart";
    let stopped = "CreateStopped";
    let attach = json!({"volumeUuid": DATA, "vmInstanceUuid": VM});
    let local = i.local.clone();
    let root = crate::params::derive_uuid(VM, 0);
    vec![
        ok("CreateDataVolume", admin, data_body(1 << 30), |h, r| {
            assert_eq!(r["inventory"]["status"], "NotInstantiated");
            assert_eq!(r["inventory"]["type"], "Data");
            assert_eq!(r["inventory"]["size"], 1u64 << 30);
            assert_eq!(h.count("QueryVolume", eq("uuid", DATA)), 1);
        }),
        ok(
            "CreateDataVolume",
            admin,
            json!({"name": "data", "diskOfferingUuid": i.dof}),
            inv("size", 1_073_741_824u64),
        ),
        // Made on the storage at once: a local storage needs its host.
        ok(
            "CreateDataVolume",
            admin,
            json!({"name": "data", "diskSize": 1u64 << 30, "primaryStorageUuid": i.local,
                   "systemTags": [format!("localStorage::hostUuid::{}", i.host)], "resourceUuid": DATA}),
            move |_, r| {
                assert_eq!(r["inventory"]["status"], "Ready");
                assert_eq!(r["inventory"]["primaryStorageUuid"], json!(local));
            },
        )
        .given(admin, "ReconnectPrimaryStorage", json!({"uuid": i.local})),
        no(
            "CreateDataVolume",
            admin,
            json!({"name": "data", "diskSize": 1u64 << 30, "primaryStorageUuid": i.local}),
            Code::InvalidArgument,
        ),
        // The measured local storage has 60 GiB free on each of its two hosts: a volume made on
        // one host takes its size from the host's share and the storage's
        // `availableCapacity`; one that does not fit the host is refused with nothing created.
        ok(
            "CreateDataVolume",
            admin,
            on_local(i, 10 << 30),
            found("QueryPrimaryStorage", &i.local, "availableCapacity", 110u64 << 30),
        )
        .given(admin, "ReconnectPrimaryStorage", json!({"uuid": i.local})),
        no(
            "CreateDataVolume",
            admin,
            on_local(i, 61 << 30),
            Code::OperationFailure,
        )
        .given(admin, "ReconnectPrimaryStorage", json!({"uuid": i.local})),
        // What the VM's root volume (1 GiB) would need on the one Enabled host is held by a
        // data volume.
        no(
            "CreateVmInstance",
            admin,
            create_body(i, run),
            Code::NoAvailableHost,
        )
        .given(admin, "ReconnectPrimaryStorage", json!({"uuid": i.local}))
        .given(admin, "CreateDataVolume", on_local(i, (59 << 30) + (512 << 20))),
        // A resize takes the difference: 1 GiB held by the root volume, 1 GiB by the data
        // volume, 58 GiB left.
        with_attached(
            no(
                "ResizeDataVolume",
                admin,
                json!({"uuid": DATA, "size": 60u64 << 30}),
                Code::OperationFailure,
            ),
            admin,
            i,
            run,
        ),
        // The same for a root volume named by its VM: refused after the call's first step, it
        // leaves the root volume as it was (not deleted as if the call had created it).
        with_vm(
            no(
                "ResizeRootVolume",
                admin,
                json!({"vmInstanceUuid": VM, "size": 61u64 << 30}),
                Code::OperationFailure,
            ),
            admin,
            i,
            stopped,
        ),
        no(
            "CreateDataVolume",
            admin,
            json!({"name": "data"}),
            Code::InvalidArgument,
        ),
        no(
            "CreateDataVolume",
            admin,
            json!({"name": "data", "diskOfferingUuid": missing()}),
            Code::ResourceNotFound,
        ),
        with_data(
            ok("AttachDataVolumeToVm", admin, attach.clone(), |h, r| {
                assert_eq!(r["inventory"]["vmInstanceUuid"], VM);
                assert_eq!(r["inventory"]["status"], "Ready");
                assert_eq!(r["inventory"]["deviceId"], 1);
                 let vm = h.ok(&Who::As(crate::Caller::admin()), "QueryVmInstance", json!({"conditions": eq("uuid", VM)}));
                assert_eq!(vm["inventories"][0]["allVolumes"].as_array().map(Vec::len), Some(2));
            }),
            admin,
            i,
            run,
        ),
        with_attached(
            no("AttachDataVolumeToVm", admin, attach.clone(), Code::OperationFailure),
            admin,
            i,
            run,
        ),
        with_data(
            no("AttachDataVolumeToVm", tenant, attach.clone(), Code::PermissionDenied),
            admin,
            i,
            run,
        ),
        with_data(
            no("AttachDataVolumeToVm", admin, attach.clone(), Code::OperationFailure),
            admin,
            i,
            run,
        )
        .given(admin, "ChangeVolumeState", json!({"uuid": DATA, "stateEvent": "disable"})),
        with_attached(
            ok(
                "DetachDataVolumeFromVm",
                admin,
                json!({"uuid": DATA}),
                |_, r| {
                    assert_eq!(r["inventory"].get("vmInstanceUuid"), None);
                    assert_eq!(r["inventory"]["status"], "Ready");
                },
            ),
            admin,
            i,
            stopped,
        ),
        with_data(
            no("DetachDataVolumeFromVm", admin, json!({"uuid": DATA}), Code::OperationFailure),
            admin,
            i,
            run,
        ),
        with_attached(
            ok(
                "DeleteDataVolume",
                admin,
                json!({"uuid": DATA}),
                found("QueryVolume", DATA, "status", "Deleted"),
            ),
            admin,
            i,
            run,
        ),
        with_vm(
            no("DeleteDataVolume", admin, json!({"uuid": root}), Code::OperationFailure),
            admin,
            i,
            run,
        ),
        with_data(
            ok("RecoverDataVolume", admin, json!({"uuid": DATA}), inv("status", "NotInstantiated")),
            admin,
            i,
            run,
        )
        .given(admin, "DeleteDataVolume", json!({"uuid": DATA})),
        with_data(
            no("RecoverDataVolume", admin, json!({"uuid": DATA}), Code::OperationFailure),
            admin,
            i,
            run,
        ),
        with_attached(
            ok("ExpungeDataVolume", admin, json!({"uuid": DATA}), gone("QueryVolume", DATA)),
            admin,
            i,
            run,
        )
        .given(admin, "DeleteDataVolume", json!({"uuid": DATA})),
        with_data(
            no("ExpungeDataVolume", admin, json!({"uuid": DATA}), Code::OperationFailure),
            admin,
            i,
            run,
        ),
        with_data(
            ok(
                "ChangeVolumeState",
                admin,
                json!({"uuid": DATA, "stateEvent": "disable"}),
                inv("state", "Disabled"),
            ),
            admin,
            i,
            run,
        ),
        with_data(
            no(
                "ChangeVolumeState",
                admin,
                json!({"uuid": DATA, "stateEvent": "off"}),
                Code::InvalidArgument,
            ),
            admin,
            i,
            run,
        ),
        with_attached(
            ok(
                "ResizeDataVolume",
                admin,
                json!({"uuid": DATA, "size": 2u64 << 30}),
                inv("size", 2u64 << 30),
            ),
            admin,
            i,
            run,
        ),
        // Grow only, by at least 4 MB.
        with_attached(
            no(
                "ResizeDataVolume",
                admin,
                json!({"uuid": DATA, "size": (1u64 << 30) + 1}),
                Code::OperationFailure,
            ),
            admin,
            i,
            run,
        ),
        // Nothing to resize before the file exists.
        with_data(
            no(
                "ResizeDataVolume",
                admin,
                json!({"uuid": DATA, "size": 2u64 << 30}),
                Code::OperationFailure,
            ),
            admin,
            i,
            run,
        ),
        with_vm(
            ok(
                "ResizeRootVolume",
                admin,
                json!({"vmInstanceUuid": VM, "size": 2u64 << 30}),
                |_, r| {
                    assert_eq!(r["inventory"]["type"], "Root");
                    assert_eq!(r["inventory"]["size"], 2u64 << 30);
                },
            ),
            admin,
            i,
            stopped,
        ),
        with_vm(
            no(
                "ResizeRootVolume",
                admin,
                json!({"vmInstanceUuid": VM, "size": 1u64 << 20}),
                Code::OperationFailure,
            ),
            admin,
            i,
            stopped,
        ),
        with_data(
            ok(
                "GetVmAttachableDataVolume",
                admin,
                json!({"vmInstanceUuid": VM}),
                |_, r| assert_eq!(r["inventories"][0]["uuid"], DATA),
            ),
            admin,
            i,
            run,
        ),
        with_attached(
            ok(
                "GetVmAttachableDataVolume",
                admin,
                json!({"vmInstanceUuid": VM}),
                |_, r| assert_eq!(r["inventories"], json!([]), "an attached volume is not a candidate"),
            ),
            admin,
            i,
            run,
        ),
        with_data(
            ok(
                "GetDataVolumeAttachableVm",
                admin,
                json!({"volumeUuid": DATA}),
                |_, r| assert_eq!(r["inventories"][0]["uuid"], VM),
            ),
            admin,
            i,
            run,
        ),
        // A data volume outlives its VM: detached, file and record kept.
        with_attached(
            ok("ExpungeVmInstance", admin, json!({"uuid": VM}), |h, _| {
                assert_eq!(h.count("QueryVolume", eq("uuid", DATA)), 1);
                assert_eq!(h.count("QueryVolume", eq("vmInstanceUuid", VM)), 0);
            }),
            admin,
            i,
            run,
        )
        .given(admin, "DestroyVmInstance", json!({"uuid": VM})),
        no(
            "GetVmAttachableDataVolume",
            admin,
            json!({"vmInstanceUuid": missing()}),
            Code::ResourceNotFound,
        ),
        no(
            "GetDataVolumeAttachableVm",
            admin,
            json!({"volumeUuid": missing()}),
            Code::ResourceNotFound,
        ),
    ]
}

/// The uuids the cases' snapshots are created with.
const SNAP: &str = "00000000000000000000000000005a01";
const SNAP2: &str = "00000000000000000000000000005a02";

fn snap_body(volume: &str, uuid: &str) -> Value {
    json!({"volumeUuid": volume, "name": "snap", "description": "before the upgrade", "resourceUuid": uuid})
}

/// A case on a world holding the VM (`strategy`) and a snapshot of its root volume.
fn with_snapshot(c: Case, admin: &Who, i: &Ids, strategy: &str) -> Case {
    let root = crate::params::derive_uuid(VM, 0);
    with_vm(c, admin, i, strategy).given(admin, "CreateVolumeSnapshot", snap_body(&root, SNAP))
}

/// ... and a second one on top of it.
fn with_two_snapshots(c: Case, admin: &Who, i: &Ids, strategy: &str) -> Case {
    let root = crate::params::derive_uuid(VM, 0);
    with_snapshot(c, admin, i, strategy).given(
        admin,
        "CreateVolumeSnapshot",
        snap_body(&root, SNAP2),
    )
}

#[allow(clippy::too_many_lines)]
fn snapshot_cases(admin: &Who, tenant: &Who, i: &Ids) -> Vec<Case> {
    let run = "InstantStart";
    let stopped = "CreateStopped";
    let root = crate::params::derive_uuid(VM, 0);
    let r2 = root.clone();
    vec![
        // Online: the root volume of a running VM.
        with_vm(
            ok(
                "CreateVolumeSnapshot",
                admin,
                snap_body(&root, SNAP),
                move |h, r| {
                    let s = &r["inventory"];
                    assert_eq!(s["uuid"], SNAP);
                    assert_eq!(s["volumeUuid"], json!(r2));
                    assert_eq!(s["volumeType"], "Root");
                    assert_eq!(s["status"], "Ready");
                    assert_eq!(s["latest"], true);
                    assert_eq!(s.get("parentUuid"), None);
                    assert!(s["primaryStorageInstallPath"]
                        .as_str()
                        .unwrap_or("")
                        .ends_with(&format!(".snapshots/{SNAP}.qcow2")));
                    let t = h.query("QueryVolumeSnapshotTree", eq("volumeUuid", &r2));
                    assert_eq!(t.len(), 1);
                    assert_eq!(t[0]["uuid"], s["treeUuid"]);
                    assert_eq!(t[0]["current"], true);
                    assert_eq!(t[0]["tree"]["inventory"]["uuid"], SNAP);
                },
            ),
            admin,
            i,
            run,
        ),
        // On top of the latest one: its child, the latest in its place.
        with_snapshot(
            ok(
                "CreateVolumeSnapshot",
                admin,
                snap_body(&root, SNAP2),
                |h, r| {
                    assert_eq!(r["inventory"]["parentUuid"], SNAP);
                    assert_eq!(r["inventory"]["distance"], 1);
                    assert_eq!(h.one("QueryVolumeSnapshot", "uuid", SNAP)["latest"], false);
                    let t = h.query(
                        "QueryVolumeSnapshotTree",
                        eq("volumeUuid", &crate::params::derive_uuid(VM, 0)),
                    );
                    assert_eq!(t.len(), 1);
                    assert_eq!(t[0]["tree"]["children"][0]["inventory"]["uuid"], SNAP2);
                },
            ),
            admin,
            i,
            stopped,
        ),
        // A data volume without a file has nothing to snapshot.
        with_data(
            no(
                "CreateVolumeSnapshot",
                admin,
                snap_body(DATA, SNAP),
                Code::OperationFailure,
            ),
            admin,
            i,
            run,
        ),
        with_attached(
            ok(
                "CreateVolumeSnapshot",
                admin,
                snap_body(DATA, SNAP),
                |_, r| {
                    assert_eq!(r["inventory"]["volumeType"], "Data");
                },
            ),
            admin,
            i,
            run,
        ),
        // A deleted volume (in the recycle bin) is refused, nothing recorded.
        with_attached(
            no(
                "CreateVolumeSnapshot",
                admin,
                snap_body(DATA, SNAP),
                Code::OperationFailure,
            ),
            admin,
            i,
            run,
        )
        .given(admin, "DeleteDataVolume", json!({"uuid": DATA})),
        no(
            "CreateVolumeSnapshot",
            admin,
            snap_body(&missing(), SNAP),
            Code::ResourceNotFound,
        ),
        with_vm(
            no(
                "CreateVolumeSnapshot",
                admin,
                json!({"volumeUuid": root}),
                Code::InvalidArgument,
            ),
            admin,
            i,
            run,
        ),
        with_vm(
            no(
                "CreateVolumeSnapshot",
                tenant,
                snap_body(&root, SNAP),
                Code::PermissionDenied,
            ),
            admin,
            i,
            run,
        ),
        // Revert: the VM must be stopped; latest moves.
        with_two_snapshots(
            ok(
                "RevertVolumeFromSnapshot",
                admin,
                json!({"uuid": SNAP}),
                |h, r| {
                    assert_eq!(r["inventory"]["latest"], true);
                    assert_eq!(h.one("QueryVolumeSnapshot", "uuid", SNAP2)["latest"], false);
                },
            ),
            admin,
            i,
            stopped,
        ),
        with_snapshot(
            no(
                "RevertVolumeFromSnapshot",
                admin,
                json!({"uuid": SNAP}),
                Code::OperationFailure,
            ),
            admin,
            i,
            run,
        ),
        no(
            "RevertVolumeFromSnapshot",
            admin,
            json!({"uuid": missing()}),
            Code::ResourceNotFound,
        ),
        with_snapshot(
            no(
                "RevertVolumeFromSnapshot",
                tenant,
                json!({"uuid": SNAP}),
                Code::PermissionDenied,
            ),
            admin,
            i,
            stopped,
        ),
        // Delete takes the descendants too; the volume has no latest snapshot left.
        with_two_snapshots(
            ok(
                "DeleteVolumeSnapshot",
                admin,
                json!({"uuid": SNAP}),
                |h, _| {
                    assert_eq!(h.count("QueryVolumeSnapshot", eq("uuid", SNAP)), 0);
                    assert_eq!(h.count("QueryVolumeSnapshot", eq("uuid", SNAP2)), 0);
                    assert_eq!(
                        h.count(
                            "QueryVolumeSnapshotTree",
                            eq("volumeUuid", &crate::params::derive_uuid(VM, 0))
                        ),
                        0
                    );
                },
            ),
            admin,
            i,
            run,
        ),
        // A leaf: its parent becomes the latest again.
        with_two_snapshots(
            ok(
                "DeleteVolumeSnapshot",
                admin,
                json!({"uuid": SNAP2}),
                |h, _| {
                    assert_eq!(h.count("QueryVolumeSnapshot", eq("uuid", SNAP2)), 0);
                    assert_eq!(h.one("QueryVolumeSnapshot", "uuid", SNAP)["latest"], true);
                },
            ),
            admin,
            i,
            stopped,
        ),
        no(
            "DeleteVolumeSnapshot",
            admin,
            json!({"uuid": missing()}),
            Code::ResourceNotFound,
        ),
        with_snapshot(
            no(
                "DeleteVolumeSnapshot",
                tenant,
                json!({"uuid": SNAP}),
                Code::PermissionDenied,
            ),
            admin,
            i,
            run,
        ),
        with_snapshot(
            ok(
                "UpdateVolumeSnapshot",
                admin,
                json!({"uuid": SNAP, "name": "renamed", "description": "kept"}),
                |h, r| {
                    assert_eq!(r["inventory"]["name"], "renamed");
                    let t = h.query(
                        "QueryVolumeSnapshotTree",
                        eq("volumeUuid", &crate::params::derive_uuid(VM, 0)),
                    );
                    assert_eq!(t[0]["tree"]["inventory"]["name"], "renamed");
                },
            ),
            admin,
            i,
            run,
        ),
        no(
            "UpdateVolumeSnapshot",
            admin,
            json!({"uuid": missing(), "name": "x"}),
            Code::ResourceNotFound,
        ),
        with_snapshot(
            ok(
                "QueryVolumeSnapshot",
                admin,
                json!({"conditions": eq("volumeUuid", &crate::params::derive_uuid(VM, 0))}),
                |_, r| assert_eq!(r["inventories"][0]["uuid"], SNAP),
            ),
            admin,
            i,
            run,
        ),
        no(
            "QueryVolumeSnapshot",
            admin,
            bad_query(),
            Code::InvalidArgument,
        ),
        with_snapshot(
            ok(
                "QueryVolumeSnapshotTree",
                admin,
                json!({"conditions": []}),
                |_, r| assert_eq!(r["inventories"][0]["tree"]["inventory"]["uuid"], SNAP),
            ),
            admin,
            i,
            run,
        ),
        no(
            "QueryVolumeSnapshotTree",
            admin,
            bad_query(),
            Code::InvalidArgument,
        ),
        with_snapshot(
            ok(
                "GetVolumeSnapshotSize",
                admin,
                json!({"uuid": SNAP}),
                |_, r| {
                    assert_eq!(r["size"], 1u64 << 20);
                },
            ),
            admin,
            i,
            run,
        ),
        no(
            "GetVolumeSnapshotSize",
            admin,
            json!({"uuid": missing()}),
            Code::ResourceNotFound,
        ),
        // Expunging the VM takes its root volume's snapshots and trees.
        with_snapshot(
            ok("ExpungeVmInstance", admin, json!({"uuid": VM}), |h, _| {
                assert_eq!(h.count("QueryVolumeSnapshot", eq("uuid", SNAP)), 0);
                assert_eq!(h.count("QueryVolumeSnapshotTree", json!([])), 0);
            }),
            admin,
            i,
            run,
        )
        .given(admin, "DestroyVmInstance", json!({"uuid": VM})),
    ]
}

/// A second L3 on the cluster's flat L2, and the NIC the cases attach to the VM on it.
const L3B: &str = "00000000000000000000000000001b01";
const NIC2: &str = "00000000000000000000000000a1c002";
/// A second VM (on [`L3B`]) that holds an address the cases want.
const VM2: &str = "00000000000000000000000000f00d02";

/// ... and [`L3B`] with the range 10.0.0.10-`end`, or no range when `end` is `None`.
fn with_l3b(c: Case, admin: &Who, i: &Ids, strategy: &str, end: Option<&str>) -> Case {
    let c = with_vm(c, admin, i, strategy).given(
        admin,
        "CreateL3Network",
        json!({"l2NetworkUuid": i.l2, "name": "second", "category": "Private", "resourceUuid": L3B}),
    );
    match end {
        None => c,
        Some(end) => c.given(
            admin,
            "AddIpRange",
            json!({"l3NetworkUuid": L3B, "name": "r2", "startIp": "10.0.0.10", "endIp": end,
                   "netmask": "255.255.255.0", "gateway": "10.0.0.1"}),
        ),
    }
}

fn attach_nic(extra: Value) -> Value {
    let mut b = json!({"vmInstanceUuid": VM, "l3NetworkUuid": L3B, "resourceUuid": NIC2});
    if let (Some(m), Value::Object(e)) = (b.as_object_mut(), extra) {
        m.extend(e);
    }
    b
}

/// The first free address of [`L3B`].
fn first_free(h: &mut crate::testing::matrix::Harness) -> Value {
    h.admin("GetFreeIp", json!({"l3NetworkUuid": L3B, "limit": 1}))["inventories"][0]["ip"].clone()
}

#[allow(clippy::too_many_lines)]
fn nic_cases(admin: &Who, tenant: &Who, i: &Ids) -> Vec<Case> {
    let run = "InstantStart";
    let stopped = "CreateStopped";
    let l3 = i.l3.clone();
    let l3_default = i.l3.clone();
    let vm_nic = crate::params::derive_uuid(VM, 1);
    vec![
        with_l3b(
            ok(
                "AttachL3NetworkToVm",
                admin,
                attach_nic(json!({})),
                move |h, r| {
                    let nics = &r["inventory"]["vmNics"];
                    assert_eq!(nics.as_array().map(Vec::len), Some(2));
                    assert_eq!(nics[1]["uuid"], NIC2);
                    assert_eq!(nics[1]["l3NetworkUuid"], L3B);
                    assert_eq!(nics[1]["ip"], "10.0.0.10");
                    assert_eq!(nics[1]["deviceId"], 1);
                    assert!(nics[1]["mac"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("fa:")));
                    assert_ne!(nics[1]["mac"], nics[0]["mac"]);
                    assert_eq!(r["inventory"]["defaultL3NetworkUuid"], json!(l3));
                    assert_eq!(r["inventory"]["state"], "Running");
                    assert_eq!(first_free(h), "10.0.0.11");
                },
            ),
            admin,
            i,
            run,
            Some("10.0.0.20"),
        ),
        with_l3b(
            ok(
                "AttachL3NetworkToVm",
                admin,
                attach_nic(json!({"staticIp": "10.0.0.15"})),
                |_, r| {
                    assert_eq!(r["inventory"]["vmNics"][1]["ip"], "10.0.0.15");
                    assert_eq!(r["inventory"]["state"], "Stopped");
                },
            ),
            admin,
            i,
            stopped,
            Some("10.0.0.20"),
        ),
        // Paused: ZStack attaches to Running or Stopped VMs only.
        with_l3b(
            no(
                "AttachL3NetworkToVm",
                admin,
                attach_nic(json!({})),
                Code::OperationFailure,
            ),
            admin,
            i,
            run,
            Some("10.0.0.20"),
        )
        .given(admin, "PauseVmInstance", json!({"uuid": VM})),
        // The VLAN L2 of `l3v` is not attached to the VM's cluster.
        with_vm(
            no(
                "AttachL3NetworkToVm",
                admin,
                json!({"vmInstanceUuid": VM, "l3NetworkUuid": i.l3v}),
                Code::OperationFailure,
            ),
            admin,
            i,
            run,
        ),
        with_vm(
            no(
                "AttachL3NetworkToVm",
                admin,
                json!({"vmInstanceUuid": VM, "l3NetworkUuid": i.l3}),
                Code::OperationFailure,
            ),
            admin,
            i,
            run,
        ),
        // No IP range, so no free address; a static one outside the range; one taken.
        with_l3b(
            no(
                "AttachL3NetworkToVm",
                admin,
                attach_nic(json!({})),
                Code::IpAllocation,
            ),
            admin,
            i,
            run,
            None,
        ),
        with_l3b(
            no(
                "AttachL3NetworkToVm",
                admin,
                attach_nic(json!({"staticIp": "10.0.0.99"})),
                Code::IpAllocation,
            ),
            admin,
            i,
            run,
            Some("10.0.0.20"),
        ),
        with_l3b(
            no(
                "AttachL3NetworkToVm",
                admin,
                attach_nic(json!({"staticIp": "10.0.0.10"})),
                Code::IpAllocation,
            ),
            admin,
            i,
            run,
            Some("10.0.0.20"),
        )
        .given(
            admin,
            "CreateVmInstance",
            json!({"name": "vm2", "instanceOfferingUuid": i.io, "imageUuid": i.image,
                   "l3NetworkUuids": [L3B], "strategy": stopped, "resourceUuid": VM2}),
        ),
        with_l3b(
            no(
                "AttachL3NetworkToVm",
                admin,
                attach_nic(json!({"customMac": "fa:00:00:00:00:09"})),
                Code::InvalidArgument,
            ),
            admin,
            i,
            run,
            Some("10.0.0.20"),
        ),
        with_l3b(
            no(
                "AttachL3NetworkToVm",
                tenant,
                attach_nic(json!({})),
                Code::PermissionDenied,
            ),
            admin,
            i,
            run,
            Some("10.0.0.20"),
        ),
        no(
            "AttachL3NetworkToVm",
            admin,
            json!({"vmInstanceUuid": missing(), "l3NetworkUuid": i.l3}),
            Code::ResourceNotFound,
        ),
        // Detached from a running VM: the address is free again, the default L3 stays.
        with_l3b(
            ok(
                "DetachL3NetworkFromVm",
                admin,
                json!({"vmNicUuid": NIC2}),
                move |h, r| {
                    let nics = &r["inventory"]["vmNics"];
                    assert_eq!(nics.as_array().map(Vec::len), Some(1));
                    assert_eq!(r["inventory"]["defaultL3NetworkUuid"], json!(l3_default));
                    assert_eq!(first_free(h), "10.0.0.10");
                },
            ),
            admin,
            i,
            run,
            Some("10.0.0.20"),
        )
        .given(admin, "AttachL3NetworkToVm", attach_nic(json!({}))),
        // The default NIC detached: the remaining NIC's L3 becomes the default.
        with_l3b(
            ok(
                "DetachL3NetworkFromVm",
                admin,
                json!({"vmNicUuid": vm_nic}),
                |_, r| {
                    assert_eq!(r["inventory"]["vmNics"][0]["uuid"], NIC2);
                    assert_eq!(r["inventory"]["defaultL3NetworkUuid"], L3B);
                },
            ),
            admin,
            i,
            stopped,
            Some("10.0.0.20"),
        )
        .given(admin, "AttachL3NetworkToVm", attach_nic(json!({}))),
        with_vm(
            no(
                "DetachL3NetworkFromVm",
                admin,
                json!({"vmNicUuid": missing()}),
                Code::ResourceNotFound,
            ),
            admin,
            i,
            run,
        ),
        with_vm(
            no(
                "DetachL3NetworkFromVm",
                tenant,
                json!({"vmNicUuid": crate::params::derive_uuid(VM, 1)}),
                Code::PermissionDenied,
            ),
            admin,
            i,
            run,
        ),
        with_vm(
            no(
                "DetachL3NetworkFromVm",
                admin,
                json!({"vmNicUuid": crate::params::derive_uuid(VM, 1)}),
                Code::OperationFailure,
            ),
            admin,
            i,
            run,
        )
        .given(admin, "PauseVmInstance", json!({"uuid": VM})),
    ]
}

fn clone_body(names: &[&str], strategy: &str) -> Value {
    json!({"vmInstanceUuid": VM, "names": names, "strategy": strategy})
}

/// The clones a `CloneVmInstance` reply lists, as (inventory, error).
fn clones_of(r: &serde_json::Map<String, Value>) -> Vec<(Value, Value)> {
    r["result"]["inventories"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| (c["inventory"].clone(), c["error"].clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn clone_cases(admin: &Who, tenant: &Who, i: &Ids) -> Vec<Case> {
    let run = "InstantStart";
    let stopped = "CreateStopped";
    let l3 = i.l3.clone();
    let l3_free = i.l3.clone();
    vec![
        // Two clones of a stopped VM: Running, the source's figures and L3, new NICs and
        // addresses, each with its own Ready root volume of the source's size.
        with_vm(
            ok(
                "CloneVmInstance",
                admin,
                clone_body(&["c1", "c2"], run),
                move |h, r| {
                    assert_eq!(r["result"]["numberOfClonedVm"], 2);
                    let clones = clones_of(r);
                    assert_eq!(clones.len(), 2);
                    let mut macs = vec![];
                    for (n, (vm, err)) in clones.iter().enumerate() {
                        assert!(err.is_null(), "{err}");
                        assert_eq!(vm["state"], "Running");
                        assert_eq!(vm["name"], ["c1", "c2"][n]);
                        assert_eq!(vm["vmNics"][0]["l3NetworkUuid"], json!(l3));
                        assert_eq!(vm["vmNics"][0]["ip"], ["192.168.1.11", "192.168.1.12"][n]);
                        assert_eq!(vm["allVolumes"][0]["status"], "Ready");
                        assert_eq!(vm["allVolumes"][0]["size"], 1u64 << 30);
                        assert_ne!(vm["uuid"], VM);
                        macs.push(vm["vmNics"][0]["mac"].clone());
                    }
                    assert_ne!(macs[0], macs[1]);
                    assert_eq!(h.count("QueryVmInstance", json!([])), 3);
                    assert_eq!(h.count("QueryVolume", eq("type", "Root")), 3);
                    assert_eq!(h.one("QueryVmInstance", "uuid", VM)["state"], "Stopped");
                },
            ),
            admin,
            i,
            stopped,
        ),
        with_vm(
            ok(
                "CloneVmInstance",
                admin,
                clone_body(&["c1"], "JustCreate"),
                |h, r| {
                    let clones = clones_of(r);
                    assert_eq!(clones[0].0["state"], "Stopped");
                    assert!(clones[0].0["hostUuid"].is_null());
                    assert_eq!(h.count("QueryVmInstance", json!([])), 2);
                },
            ),
            admin,
            i,
            stopped,
        ),
        // The host cannot copy `broken`: that clone alone is rolled back (records gone, its
        // address free again), the other is made.
        with_vm(
            ok(
                "CloneVmInstance",
                admin,
                clone_body(&["c1", "broken"], run),
                move |h, r| {
                    assert_eq!(r["result"]["numberOfClonedVm"], 1);
                    let clones = clones_of(r);
                    assert_eq!(clones[0].0["state"], "Running");
                    assert!(clones[1].0.is_null());
                    assert!(clones[1].1["details"]
                        .as_str()
                        .is_some_and(|d| d.contains("no space left")));
                    assert_eq!(h.count("QueryVmInstance", json!([])), 2);
                    assert_eq!(h.count("QueryVolume", eq("type", "Root")), 2);
                    let free = h.admin("GetFreeIp", json!({"l3NetworkUuid": l3_free, "limit": 1}));
                    assert_eq!(free["inventories"][0]["ip"], "192.168.1.12");
                },
            ),
            admin,
            i,
            stopped,
        ),
        // A running VM's disk is not quiescent.
        with_vm(
            no(
                "CloneVmInstance",
                admin,
                clone_body(&["c1"], run),
                Code::OperationFailure,
            ),
            admin,
            i,
            run,
        ),
        with_vm(
            no(
                "CloneVmInstance",
                admin,
                clone_body(&[], run),
                Code::InvalidArgument,
            ),
            admin,
            i,
            stopped,
        ),
        with_vm(
            no(
                "CloneVmInstance",
                admin,
                json!({"vmInstanceUuid": VM, "names": ["c1"], "full": true}),
                Code::InvalidArgument,
            ),
            admin,
            i,
            stopped,
        ),
        no(
            "CloneVmInstance",
            admin,
            json!({"vmInstanceUuid": missing(), "names": ["c1"]}),
            Code::ResourceNotFound,
        ),
        with_vm(
            no(
                "CloneVmInstance",
                tenant,
                clone_body(&["c1"], run),
                Code::PermissionDenied,
            ),
            admin,
            i,
            stopped,
        ),
    ]
}
