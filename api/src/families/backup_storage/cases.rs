//! Call-matrix cases of the backup-storage calls (run by `testing::matrix`).

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
    // ---- Backup storage (the add's agent step answers a 100 GiB store, 60 GiB free).
    m.push(ok(
        "AddImageStoreBackupStorage",
        &admin,
        json!({"name": "bs2", "url": "/bs2", "hostname": "10.0.0.10", "username": "root", "password": "p"}),
        |h, r| {
            assert_eq!(r["inventory"]["name"], "bs2");
            assert_eq!(r["inventory"]["status"], "Connected");
            assert_eq!(r["inventory"]["totalCapacity"], 100u64 << 30);
            assert_eq!(r["inventory"]["availableCapacity"], 60u64 << 30);
            assert!(r["inventory"].get("password").is_none());
            assert!(r["inventory"].get("agentInstalled").is_none());
            assert_eq!(
                h.count("QueryImageStoreBackupStorage", eq("hostname", "10.0.0.10")),
                1
            );
        },
    ));
    m.extend(rows! {
        "AddImageStoreBackupStorage", admin, json!({"name": "bs2", "url": "/bs2", "hostname": "10.0.0.10", "username": "root"}) => InvalidArgument;
        "AddImageStoreBackupStorage", admin, json!({"name": "dup", "url": "/zstack_bs", "hostname": "10.0.0.9", "username": "root", "password": "p"}) => InvalidArgument;
        "AddImageStoreBackupStorage", tenant, json!({"name": "bs2", "url": "/bs2", "hostname": "10.0.0.10", "username": "root", "password": "p"}) => PermissionDenied;
        "UpdateBackupStorage", admin, json!({"uuid": i.bs, "name": "bs-renamed"}) => ok(inv("name", "bs-renamed"));
        "UpdateBackupStorage", admin, json!({"uuid": missing(), "name": "x"}) => ResourceNotFound;
        "ChangeBackupStorageState", admin, json!({"uuid": i.bs, "stateEvent": "disable"}) => ok(inv("state", "Disabled"));
        "ChangeBackupStorageState", tenant, json!({"uuid": i.bs, "stateEvent": "disable"}) => PermissionDenied;
    });
    {
        let zone2 = i.zone2.clone();
        m.push(ok(
            "AttachBackupStorageToZone",
            &admin,
            json!({"backupStorageUuid": i.bs, "zoneUuid": i.zone2}),
            move |_, r| {
                let zones = r["inventory"]["attachedZoneUuids"].as_array().unwrap();
                assert!(zones.contains(&json!(zone2)), "{zones:?}");
            },
        ));
    }
    m.extend(rows! {
        "AttachBackupStorageToZone", admin, json!({"backupStorageUuid": i.bs, "zoneUuid": missing()}) => ResourceNotFound;
        "DetachBackupStorageFromZone", admin, json!({"backupStorageUuid": i.bs, "zoneUuid": i.zone}) => ok(inv("attachedZoneUuids", json!([])));
        "DetachBackupStorageFromZone", tenant, json!({"backupStorageUuid": i.bs, "zoneUuid": i.zone}) => PermissionDenied;
        "DeleteBackupStorage", admin, json!({"uuid": i.bs}) => ok(gone("QueryBackupStorage", &i.bs));
        "DeleteBackupStorage", admin, json!({"uuid": missing()}) => ok(gone("QueryBackupStorage", &missing()));
        "DeleteBackupStorage", tenant, json!({"uuid": i.bs}) => PermissionDenied;
    });
    {
        let bs = i.bs.clone();
        m.push(ok(
            "QueryBackupStorage",
            &tenant,
            json!({"conditions": eq("attachedZoneUuids", &i.zone)}),
            move |_, r| {
                assert_eq!(
                    r["inventories"][0]["uuid"],
                    bs.as_str(),
                    "every session lists BS"
                );
                assert!(r["inventories"][0].get("hostname").is_none());
            },
        ));
    }
    m.extend(rows! {
        "QueryBackupStorage", admin, bad_query() => InvalidArgument;
        "QueryImageStoreBackupStorage", admin, json!({"conditions": eq("hostname", "10.0.0.9")}) => ok(first("sshPort", 22));
        "QueryImageStoreBackupStorage", admin, bad_query() => InvalidArgument;
    });
    // ---- Reconnect and capacity: the harness's image store measures 500 GiB, 200 GiB free.
    const GIB: u64 = 1 << 30;
    m.push(ok(
        "ReconnectBackupStorage",
        &admin,
        json!({"uuid": i.bs}),
        |h, r| {
            assert_eq!(r["inventory"]["status"], "Connected");
            assert_eq!(r["inventory"]["totalCapacity"], 500 * GIB);
            assert_eq!(r["inventory"]["availableCapacity"], 200 * GIB);
            assert_eq!(
                r["inventory"]["hostname"], "10.0.0.9",
                "the ImageStore inventory"
            );
            assert_eq!(h.count("QueryBackupStorage", eq("status", "Connected")), 1);
        },
    ));
    m.extend(rows! {
        "ReconnectBackupStorage", admin, json!({"uuid": missing()}) => ResourceNotFound;
        "ReconnectBackupStorage", tenant, json!({"uuid": i.bs}) => PermissionDenied;
    });
    let sums = |total: u64, available: u64| {
        move |_: &mut crate::testing::matrix::Harness,
              r: &serde_json::Map<String, serde_json::Value>| {
            assert_eq!(r["totalCapacity"], total, "{r:?}");
            assert_eq!(r["availableCapacity"], available, "{r:?}");
        }
    };
    for body in [
        json!({"backupStorageUuids": [i.bs, i.bs]}),
        json!({"zoneUuids": [i.zone, i.zone2]}),
        json!({"all": true}),
    ] {
        m.push(
            ok(
                "GetBackupStorageCapacity",
                &admin,
                body,
                sums(500 * GIB, 200 * GIB),
            )
            .given(&admin, "ReconnectBackupStorage", json!({"uuid": i.bs})),
        );
    }
    m.extend(rows! {
        // As its add measured it (the harness's agent answers 100 GiB, 60 GiB free).
        "GetBackupStorageCapacity", admin, json!({"all": true}) => ok(sums(100 * GIB, 60 * GIB));
        "GetBackupStorageCapacity", admin, json!({"zoneUuids": [i.zone2]}) => ok(sums(0, 0));
        "GetBackupStorageCapacity", admin, json!({}) => InvalidArgument;
        "GetBackupStorageCapacity", admin, json!({"backupStorageUuids": [missing()]}) => ResourceNotFound;
        "GetBackupStorageCapacity", admin, json!({"zoneUuids": [missing()]}) => ResourceNotFound;
        "GetBackupStorageCapacity", tenant, json!({"all": true}) => PermissionDenied;
    });
    m
}
