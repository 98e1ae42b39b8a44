//! Call-matrix cases of the offering calls (run by `testing::matrix`).

use serde_json::json;

use crate::testing::matrix::bad_query;
use crate::testing::matrix::eq;
use crate::testing::matrix::missing;
use crate::testing::matrix::ok;
use crate::testing::matrix::refusals;
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
    m.extend(refusals! {
        "CreateInstanceOffering", admin, json!({"name": "x", "cpuNum": 0, "memorySize": 1}) => InvalidArgument;
    });
    m.push(ok(
        "UpdateInstanceOffering",
        &admin,
        json!({"uuid": i.io, "description": "d"}),
        |_, r| assert_eq!(r["inventory"]["description"], "d"),
    ));
    m.extend(refusals! {
        "UpdateInstanceOffering", admin, json!({"uuid": missing(), "description": "d"}) => ResourceNotFound;
    });
    m.push(ok(
        "ChangeInstanceOfferingState",
        &admin,
        json!({"uuid": i.io, "stateEvent": "disable"}),
        |_, r| assert_eq!(r["inventory"]["state"], "Disabled"),
    ));
    m.extend(refusals! {
        "ChangeInstanceOfferingState", tenant, json!({"uuid": i.io, "stateEvent": "disable"}) => PermissionDenied;
    });
    {
        let io = i.io.clone();
        m.push(ok(
            "DeleteInstanceOffering",
            &admin,
            json!({"uuid": i.io}),
            move |h, _| assert_eq!(h.count("QueryInstanceOffering", eq("uuid", &io)), 0),
        ));
    }
    m.extend(refusals! {
        "DeleteInstanceOffering", tenant, json!({"uuid": i.io}) => PermissionDenied;
    });
    m.push(ok(
        "QueryInstanceOffering",
        &admin,
        json!({"conditions": eq("cpuNum", "1")}),
        |_, r| assert_eq!(r["inventories"][0]["name"], "small"),
    ));
    m.extend(refusals! {
        "QueryInstanceOffering", admin, bad_query() => InvalidArgument;
    });
    m.push(ok(
        "CreateDiskOffering",
        &admin,
        json!({"name": "big-disk", "diskSize": 10737418240u64}),
        |_, r| assert_eq!(r["inventory"]["diskSize"], 10737418240u64),
    ));
    m.extend(refusals! {
        "CreateDiskOffering", admin, json!({"name": "d", "diskSize": 0}) => InvalidArgument;
    });
    m.push(ok(
        "UpdateDiskOffering",
        &admin,
        json!({"uuid": i.dof, "name": "disk1"}),
        |_, r| assert_eq!(r["inventory"]["name"], "disk1"),
    ));
    m.extend(refusals! {
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
    m.extend(refusals! {
        "ChangeDiskOfferingState", admin, json!({"uuid": i.dof, "stateEvent": "off"}) => InvalidArgument;
    });
    {
        let d = i.dof.clone();
        m.push(ok(
            "DeleteDiskOffering",
            &admin,
            json!({"uuid": i.dof}),
            move |h, _| assert_eq!(h.count("QueryDiskOffering", eq("uuid", &d)), 0),
        ));
    }
    m.extend(refusals! {
        "DeleteDiskOffering", tenant, json!({"uuid": i.dof}) => PermissionDenied;
    });
    m.push(ok(
        "QueryDiskOffering",
        &admin,
        json!({"conditions": eq("name", "disk")}),
        |_, r| assert_eq!(r["inventories"][0]["diskSize"], 1073741824u64),
    ));
    m.extend(refusals! {
        "QueryDiskOffering", admin, bad_query() => InvalidArgument;
    });
    m
}
