//! Call-matrix cases of the primary-storage calls (run by `testing::matrix`).

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
    // ---- Primary storage.
    m.push(ok(
        "AddLocalPrimaryStorage",
        &admin,
        json!({"zoneUuid": i.zone, "name": "local2", "url": "/ps2"}),
        |h, r| {
            assert_eq!(r["inventory"]["type"], "LocalStorage");
            assert_eq!(h.count("QueryPrimaryStorage", eq("name", "local2")), 1);
        },
    ));
    m.extend(rows! {
        "AddLocalPrimaryStorage", admin, json!({"zoneUuid": missing(), "name": "local2", "url": "/ps2"}) => ResourceNotFound;
    });
    m.push(ok(
        "AddNfsPrimaryStorage",
        &admin,
        json!({"zoneUuid": i.zone, "name": "nfs2", "url": "10.0.0.8:/nfs2"}),
        |_, r| {
            assert_eq!(r["inventory"]["type"], "NFS");
            assert_eq!(r["inventory"]["url"], "10.0.0.8:/nfs2");
        },
    ));
    m.extend(rows! {
        "AddNfsPrimaryStorage", admin, json!({"zoneUuid": i.zone, "name": "nfs2"}) => InvalidArgument;
        "AddSharedMountPointPrimaryStorage", admin, json!({"zoneUuid": i.zone, "name": "smp2", "url": "/mnt/smp2"}) => ok(inv("type", "SharedMountPoint"));
        "AddSharedMountPointPrimaryStorage", tenant, json!({"zoneUuid": i.zone, "name": "smp2", "url": "/mnt/smp2"}) => PermissionDenied;
        "UpdatePrimaryStorage", admin, json!({"uuid": i.nfs, "description": "d"}) => ok(inv("description", "d"));
        "UpdatePrimaryStorage", admin, json!({"uuid": missing(), "description": "d"}) => ResourceNotFound;
        "ChangePrimaryStorageState", admin, json!({"uuid": i.nfs, "stateEvent": "disable"}) => ok(inv("state", "Disabled"));
        "ChangePrimaryStorageState", admin, json!({"uuid": i.nfs, "stateEvent": "explode"}) => InvalidArgument;
        "AttachPrimaryStorageToCluster", admin, json!({"primaryStorageUuid": i.nfs, "clusterUuid": i.cluster}) => ok(inv("attachedClusterUuids", json!([i.cluster])));
        "AttachPrimaryStorageToCluster", admin, json!({"primaryStorageUuid": i.nfs, "clusterUuid": missing()}) => ResourceNotFound;
        "DetachPrimaryStorageFromCluster", admin, json!({"primaryStorageUuid": i.local, "clusterUuid": i.cluster}) => ok(inv("attachedClusterUuids", json!([])));
        "DetachPrimaryStorageFromCluster", tenant, json!({"primaryStorageUuid": i.local, "clusterUuid": i.cluster}) => PermissionDenied;
        "DeletePrimaryStorage", admin, json!({"uuid": i.nfs}) => ok(gone("QueryPrimaryStorage", &i.nfs));
        "DeletePrimaryStorage", admin, json!({"uuid": i.local}) => OperationFailure;
    });
    {
        let local = i.local.clone();
        m.push(ok(
            "QueryPrimaryStorage",
            &admin,
            json!({"conditions": eq("attachedClusterUuids", &i.cluster)}),
            move |_, r| {
                assert_eq!(r["inventories"].as_array().unwrap().len(), 1);
                assert_eq!(r["inventories"][0]["uuid"], local.as_str());
            },
        ));
    }
    m.extend(rows! {
        "QueryPrimaryStorage", admin, json!({"conditions": eq("type", "SharedMountPoint")}) => ok(first("uuid", i.smp.as_str()));
        "QueryPrimaryStorage", admin, bad_query() => InvalidArgument;
    });
    // ---- Reconnect and capacity. The harness's hosts each measure 100 GiB, 60 GiB free;
    // `local` (LocalStorage) is attached to the cluster of host1 and host2 (in maintenance,
    // still Connected), so it adds up both.
    const GIB: u64 = 1 << 30;
    m.push(ok(
        "ReconnectPrimaryStorage",
        &admin,
        json!({"uuid": i.local}),
        |_, r| {
            let inv = &r["inventory"];
            assert_eq!(inv["status"], "Connected");
            assert_eq!(inv["totalPhysicalCapacity"], 200 * GIB);
            assert_eq!(inv["availablePhysicalCapacity"], 120 * GIB);
            assert_eq!(inv["totalCapacity"], 200 * GIB);
            assert_eq!(inv["systemUsedCapacity"], 80 * GIB);
        },
    ));
    m.extend(rows! {
        // Attached to no cluster: no host to ask, nothing changes.
        "ReconnectPrimaryStorage", admin, json!({"uuid": i.nfs}) => PrimaryStorageDisconnected;
        "ReconnectPrimaryStorage", admin, json!({"uuid": missing()}) => ResourceNotFound;
        "ReconnectPrimaryStorage", tenant, json!({"uuid": i.local}) => PermissionDenied;
    });
    let reconnected =
        |c: Case| c.given(&admin, "ReconnectPrimaryStorage", json!({"uuid": i.local}));
    let sums = |total: u64, available: u64| {
        move |_: &mut crate::testing::matrix::Harness,
              r: &serde_json::Map<String, serde_json::Value>| {
            assert_eq!(r["totalCapacity"], total, "{r:?}");
            assert_eq!(r["availableCapacity"], available, "{r:?}");
            assert_eq!(r["totalPhysicalCapacity"], total, "{r:?}");
            assert_eq!(r["availablePhysicalCapacity"], available, "{r:?}");
        }
    };
    for body in [
        json!({"primaryStorageUuids": [i.local, i.nfs, i.local]}),
        json!({"clusterUuids": [i.cluster]}),
        json!({"zoneUuids": [i.zone]}),
        json!({"all": true}),
        // The most specific list wins, as in ZStack.
        json!({"primaryStorageUuids": [i.local], "zoneUuids": [i.zone2]}),
    ] {
        m.push(reconnected(ok(
            "GetPrimaryStorageCapacity",
            &admin,
            body,
            sums(200 * GIB, 120 * GIB),
        )));
    }
    m.extend(rows! {
        "GetPrimaryStorageCapacity", admin, json!({"zoneUuids": [i.zone2]}) => ok(sums(0, 0));
        "GetPrimaryStorageCapacity", admin, json!({}) => InvalidArgument;
        "GetPrimaryStorageCapacity", admin, json!({"zoneUuids": [], "all": false}) => InvalidArgument;
        "GetPrimaryStorageCapacity", admin, json!({"primaryStorageUuids": [missing()]}) => ResourceNotFound;
        "GetPrimaryStorageCapacity", admin, json!({"clusterUuids": [missing()]}) => ResourceNotFound;
        "GetPrimaryStorageCapacity", tenant, json!({"all": true}) => PermissionDenied;
    });
    m
}
