//! Call-matrix cases of the host calls (run by `testing::matrix`).

use serde_json::json;

use crate::testing::matrix::bad_query;
use crate::testing::matrix::eq;
use crate::testing::matrix::first;
use crate::testing::matrix::gone;
use crate::testing::matrix::inv;
use crate::testing::matrix::missing;
use crate::testing::matrix::ok;
use crate::testing::matrix::rows;
use crate::testing::matrix::Case;
use crate::testing::matrix::Ids;
use crate::testing::matrix::Parties;

/// The call-matrix cases of this family's calls.
pub(crate) fn cases(ids: &Ids) -> Vec<Case> {
    let Parties { admin, tenant, .. } = Parties::of(ids);
    let i = ids.clone();
    let mut m = Vec::new();
    // ---- Hosts (the node probes the host before proposing; here the probe succeeds).
    {
        let c = i.cluster.clone();
        m.push(ok(
            "AddKVMHost",
            &admin,
            json!({"clusterUuid": i.cluster, "name": "host3", "managementIp": "10.0.1.3", "username": "root", "password": "p", "sshPort": 2222}),
            move |h, r| {
                assert_eq!(r["inventory"]["managementIp"], "10.0.1.3");
                assert_eq!(r["inventory"]["status"], "Connected");
                assert!(r["inventory"].get("password").is_none());
                assert_eq!(h.count("QueryHost", eq("clusterUuid", &c)), 3);
            },
        ));
    }
    m.extend(rows! {
        "AddKVMHost", admin, json!({"clusterUuid": missing(), "name": "host3", "managementIp": "10.0.1.3", "username": "root", "password": "p"}) => ResourceNotFound;
        "AddKVMHost", admin, json!({"clusterUuid": i.cluster, "name": "dup", "managementIp": "10.0.1.1", "username": "root", "password": "p"}) => InvalidArgument;
        "AddKVMHost", tenant, json!({"clusterUuid": i.cluster, "name": "host3", "managementIp": "10.0.1.3", "username": "root", "password": "p"}) => PermissionDenied;
    });
    m.push(ok(
        "UpdateKVMHost",
        &admin,
        json!({"uuid": i.host, "name": "host1b", "sshPort": 2200}),
        |_, r| {
            assert_eq!(r["inventory"]["name"], "host1b");
            assert_eq!(r["inventory"]["sshPort"], 2200);
        },
    ));
    m.extend(rows! {
        "UpdateKVMHost", admin, json!({"uuid": missing(), "name": "x"}) => ResourceNotFound;
        "ChangeHostState", admin, json!({"uuid": i.host, "stateEvent": "disable"}) => ok(inv("state", "Disabled"));
        "ChangeHostState", admin, json!({"uuid": i.host_in_maintenance, "stateEvent": "maintain"}) => OperationFailure;
        "ChangeHostState", admin, json!({"uuid": i.host, "stateEvent": "reboot"}) => InvalidArgument;
        "DeleteHost", admin, json!({"uuid": i.host_in_maintenance}) => ok(gone("QueryHost", &i.host_in_maintenance));
        "DeleteHost", admin, json!({"uuid": i.host}) => OperationFailure;
        "ReconnectHost", admin, json!({"uuid": i.host}) => ok(inv("status", "Connected"));
        "ReconnectHost", admin, json!({"uuid": i.host_in_maintenance}) => OperationFailure;
        "QueryHost", admin, json!({"conditions": eq("managementIp", "10.0.1.1")}) => ok(first("uuid", i.host.as_str()));
    });
    m.push(ok(
        "QueryHost",
        &tenant,
        json!({"conditions": []}),
        |_, r| assert_eq!(r["inventories"], json!([]), "hosts are the admin's"),
    ));
    m.extend(rows! {
        "QueryHost", admin, bad_query() => InvalidArgument;
    });
    // ---- Placement and capacity (the base hosts report 8 threads, 16 GiB; ratio 10).
    {
        let host = i.host.clone();
        m.push(ok(
            "AllocateHostResource",
            &admin,
            json!({"uuid": i.host, "strategy": "continuous", "scene": "normal", "vcpu": "2", "memSize": 4u64 << 30}),
            move |h, r| {
                assert_eq!(r["inventory"]["uuid"], host.as_str());
                assert_eq!(r["inventory"]["availableCpuCapacity"], 78);
                assert_eq!(r["inventory"]["availableMemoryCapacity"], 12u64 << 30);
                let cap = h.admin("GetCpuMemoryCapacity", json!({"hostUuids": [host]}));
                assert_eq!(cap["availableMemory"], 11u64 << 30, "minus the 1G kvm.reservedMemory");
            },
        ));
    }
    {
        let host = i.host.clone();
        m.push(ok(
            "AllocateHostResource",
            &admin,
            json!({"uuid": i.cluster, "strategy": "continuous", "scene": "normal", "vcpu": "1", "memSize": 1u64 << 30}),
            move |_, r| assert_eq!(r["inventory"]["uuid"], host.as_str(), "the only Enabled, Connected host"),
        ));
    }
    m.extend(rows! {
        "AllocateHostResource", admin, json!({"uuid": i.host, "strategy": "continuous", "scene": "normal", "vcpu": "2", "memSize": 16u64 << 30}) => NoAvailableHost;
        "AllocateHostResource", admin, json!({"uuid": i.host_in_maintenance, "strategy": "continuous", "scene": "normal", "vcpu": "1", "memSize": 1024}) => NoAvailableHost;
        "AllocateHostResource", admin, json!({"uuid": i.host, "strategy": "continuous", "scene": "normal", "vcpu": "0", "memSize": 1024}) => InvalidArgument;
        "AllocateHostResource", admin, json!({"uuid": i.host, "strategy": "continuous", "scene": "normal", "vcpu": "two", "memSize": 1024}) => InvalidArgument;
        "AllocateHostResource", admin, json!({"uuid": i.host, "strategy": "continuous", "scene": "normal", "vcpu": "1"}) => InvalidArgument;
        "AllocateHostResource", admin, json!({"uuid": missing(), "strategy": "continuous", "scene": "normal", "vcpu": "1", "memSize": 1024}) => ResourceNotFound;
        "AllocateHostResource", tenant, json!({"uuid": i.host, "strategy": "continuous", "scene": "normal", "vcpu": "1", "memSize": 1024}) => PermissionDenied;
        "GetCpuMemoryCapacity", admin, json!({"all": "true"}) => ok(|_, r| {
            assert_eq!(r["totalCpu"], 80, "8 threads × 10; the host in maintenance is not counted");
            assert_eq!(r["totalMemory"], 16u64 << 30);
            assert_eq!(r["managedCpuNum"], 8);
        });
        "GetCpuMemoryCapacity", admin, json!({"zoneUuids": [missing()]}) => ResourceNotFound;
        "GetCpuMemoryCapacity", admin, json!({}) => InvalidArgument;
        "GetCpuMemoryCapacity", tenant, json!({"all": "true"}) => PermissionDenied;
        "GetHostAllocatorStrategies", admin, json!({}) => ok(|_, r| {
            let names = r["hostAllocatorStrategies"].as_array().cloned().unwrap_or_default();
            assert!(names.contains(&json!("LeastVmPreferredHostAllocatorStrategy")), "{names:?}");
            assert_eq!(names.len(), 6);
        });
        "GetHostAllocatorStrategies", tenant, json!({}) => PermissionDenied;
    });
    // ---- Creation dry runs (the local storage measured first, so its host share is known).
    {
        let (host, cluster, local) = (i.host.clone(), i.cluster.clone(), i.local.clone());
        m.push(
            ok(
                "GetCandidateZonesClustersHostsForCreatingVm",
                &admin,
                json!({"instanceOfferingUuid": i.io, "imageUuid": i.image, "l3NetworkUuids": [i.l3]}),
                move |_, r| {
                    assert_eq!(r["hosts"].as_array().map(Vec::len), Some(1), "{r:?}");
                    assert_eq!(r["hosts"][0]["uuid"], host.as_str());
                    assert_eq!(r["clusters"][0]["uuid"], cluster.as_str());
                    assert_eq!(r["zones"].as_array().map(Vec::len), Some(1));
                    assert_eq!(r["clusterPsMap"][cluster.as_str()], json!([local]));
                },
            )
            .given(&admin, "ReconnectPrimaryStorage", json!({"uuid": i.local})),
        );
    }
    {
        let local = i.local.clone();
        m.push(
            ok(
                "GetCandidatePrimaryStoragesForCreatingVm",
                &admin,
                json!({"imageUuid": i.image, "l3NetworkUuids": [i.l3], "instanceOfferingUuid": i.io, "dataDiskOfferingUuids": [i.dof]}),
                move |_, r| {
                    assert_eq!(r["rootVolumePrimaryStorages"][0]["uuid"], local.as_str(), "{r:?}");
                    assert!(r["dataVolumePrimaryStorages"].as_object().is_some_and(|m| m.len() == 1), "{r:?}");
                },
            )
            .given(&admin, "ReconnectPrimaryStorage", json!({"uuid": i.local})),
        );
    }
    m.extend(rows! {
        "GetCandidateZonesClustersHostsForCreatingVm", admin, json!({"instanceOfferingUuid": i.io, "imageUuid": missing(), "l3NetworkUuids": [i.l3]}) => ResourceNotFound;
        "GetCandidateZonesClustersHostsForCreatingVm", admin, json!({"instanceOfferingUuid": i.io, "imageUuid": i.image, "l3NetworkUuids": []}) => InvalidArgument;
        "GetCandidateZonesClustersHostsForCreatingVm", admin, json!({"imageUuid": i.image, "l3NetworkUuids": [i.l3]}) => InvalidArgument;
        "GetCandidateZonesClustersHostsForCreatingVm", admin, json!({"cpuNum": "4096", "memorySize": 1024, "imageUuid": i.image, "l3NetworkUuids": [i.l3]}) => NoAvailableHost;
        "GetCandidateZonesClustersHostsForCreatingVm", tenant, json!({"instanceOfferingUuid": i.io, "imageUuid": i.image, "l3NetworkUuids": [i.l3]}) => PermissionDenied;
        "GetCandidatePrimaryStoragesForCreatingVm", admin, json!({"instanceOfferingUuid": i.io, "imageUuid": i.image, "l3NetworkUuids": [missing()]}) => ResourceNotFound;
        "GetCandidatePrimaryStoragesForCreatingVm", tenant, json!({"instanceOfferingUuid": i.io, "imageUuid": i.image, "l3NetworkUuids": [i.l3]}) => PermissionDenied;
    });
    m
}
