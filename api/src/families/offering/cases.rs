//! Call-matrix cases of the offering calls (run by `testing::matrix`).

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
    // ---- Offerings.
    m.push(ok(
        "CreateInstanceOffering",
        &admin,
        json!({"name": "big", "cpuNum": 4, "memorySize": 4294967296u64}),
        |h, r| {
            assert_eq!(r["inventory"]["cpuNum"], 4);
            assert_eq!(h.count("QueryInstanceOffering", eq("name", "big")), 1);
        },
    ));
    m.extend(rows! {
        "CreateInstanceOffering", admin, json!({"name": "x", "cpuNum": 0, "memorySize": 1}) => InvalidArgument;
        "UpdateInstanceOffering", admin, json!({"uuid": i.io, "description": "d"}) => ok(inv("description", "d"));
        "UpdateInstanceOffering", admin, json!({"uuid": missing(), "description": "d"}) => ResourceNotFound;
        "ChangeInstanceOfferingState", admin, json!({"uuid": i.io, "stateEvent": "disable"}) => ok(inv("state", "Disabled"));
        "ChangeInstanceOfferingState", tenant, json!({"uuid": i.io, "stateEvent": "disable"}) => PermissionDenied;
        "DeleteInstanceOffering", admin, json!({"uuid": i.io}) => ok(gone("QueryInstanceOffering", &i.io));
        "DeleteInstanceOffering", tenant, json!({"uuid": i.io}) => PermissionDenied;
        "QueryInstanceOffering", admin, json!({"conditions": eq("cpuNum", "1")}) => ok(first("name", "small"));
        "QueryInstanceOffering", admin, bad_query() => InvalidArgument;
        "CreateDiskOffering", admin, json!({"name": "big-disk", "diskSize": 10737418240u64}) => ok(inv("diskSize", 10737418240u64));
        "CreateDiskOffering", admin, json!({"name": "d", "diskSize": 0}) => InvalidArgument;
        "UpdateDiskOffering", admin, json!({"uuid": i.dof, "name": "disk1"}) => ok(inv("name", "disk1"));
        "UpdateDiskOffering", admin, json!({"uuid": missing(), "name": "disk1"}) => ResourceNotFound;
    });
    m.push(ok(
        "ChangeDiskOfferingState",
        &admin,
        json!({"uuid": i.dof, "stateEvent": "disable"}),
        |h, r| {
            assert_eq!(r["inventory"]["state"], "Disabled");
            assert_eq!(h.count("QueryDiskOffering", eq("state", "Disabled")), 1);
        },
    ));
    m.extend(rows! {
        "ChangeDiskOfferingState", admin, json!({"uuid": i.dof, "stateEvent": "off"}) => InvalidArgument;
        "DeleteDiskOffering", admin, json!({"uuid": i.dof}) => ok(gone("QueryDiskOffering", &i.dof));
        "DeleteDiskOffering", tenant, json!({"uuid": i.dof}) => PermissionDenied;
        "QueryDiskOffering", admin, json!({"conditions": eq("name", "disk")}) => ok(first("diskSize", 1073741824u64));
        "QueryDiskOffering", admin, bad_query() => InvalidArgument;
    });
    m
}
