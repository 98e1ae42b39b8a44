//! Call-matrix cases of this family's calls (run by `testing::matrix`).

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
    // ---- L2 networks.
    m.push(ok(
        "CreateL2NoVlanNetwork",
        &admin,
        json!({"zoneUuid": i.zone, "name": "flat2", "physicalInterface": "eth1"}),
        |_, r| {
            assert_eq!(r["inventory"]["type"], "L2NoVlanNetwork");
            assert_eq!(r["inventory"]["physicalInterface"], "eth1");
        },
    ));
    m.extend(refusals! {
        "CreateL2NoVlanNetwork", admin, json!({"zoneUuid": missing(), "name": "flat2", "physicalInterface": "eth1"}) => ResourceNotFound;
    });
    m.push(ok(
        "CreateL2VlanNetwork",
        &admin,
        json!({"zoneUuid": i.zone, "name": "v200", "physicalInterface": "eth0", "vlan": 200}),
        |h, r| {
            assert_eq!(r["inventory"]["vlan"], 200);
            assert_eq!(h.count("QueryL2VlanNetwork", json!([])), 2);
        },
    ));
    m.extend(refusals! {
        "CreateL2VlanNetwork", admin, json!({"zoneUuid": i.zone, "name": "v", "physicalInterface": "eth0", "vlan": 4095}) => InvalidArgument;
    });
    m.push(ok(
        "CreateL2VxlanNetworkPool",
        &admin,
        json!({"zoneUuid": i.zone, "name": "pool2"}),
        |h, r| {
            assert_eq!(r["inventory"]["name"], "pool2");
            assert_eq!(h.count("QueryL2VxlanNetworkPool", json!([])), 2);
        },
    ));
    m.extend(refusals! {
        "CreateL2VxlanNetworkPool", tenant, json!({"zoneUuid": i.zone, "name": "pool2"}) => PermissionDenied;
    });
    m.push(ok(
        "CreateVniRange",
        &admin,
        json!({"l2NetworkUuid": i.pool, "name": "r3", "startVni": 100, "endVni": 200}),
        |h, r| {
            assert_eq!(r["inventory"]["startVni"], 100);
            assert_eq!(h.count("QueryVniRange", json!([])), 3);
        },
    ));
    m.extend(refusals! {
        "CreateVniRange", admin, json!({"l2NetworkUuid": i.pool, "name": "r3", "startVni": 15, "endVni": 25}) => InvalidArgument;
    });
    m.push(ok(
        "DeleteVniRange",
        &admin,
        json!({"uuid": i.spare_vni_range}),
        {
            let r = i.spare_vni_range.clone();
            move |h, _| assert_eq!(h.count("QueryVniRange", eq("uuid", &r)), 0)
        },
    ));
    m.extend(refusals! {
        "DeleteVniRange", tenant, json!({"uuid": i.spare_vni_range}) => PermissionDenied;
    });
    m.push(ok(
        "CreateL2VxlanNetwork",
        &admin,
        json!({"poolUuid": i.pool, "name": "vx2", "vni": 16}),
        {
            let pool = i.pool.clone();
            move |_, r| {
                assert_eq!(r["inventory"]["vni"], 16);
                assert_eq!(r["inventory"]["poolUuid"], pool.as_str());
            }
        },
    ));
    m.extend(refusals! {
        "CreateL2VxlanNetwork", admin, json!({"poolUuid": i.pool, "name": "vx2", "vni": 15}) => InvalidArgument;
    });
    m.push(ok(
        "UpdateL2Network",
        &admin,
        json!({"uuid": i.vlan, "name": "v100"}),
        |h, _| assert_eq!(h.count("QueryL2Network", eq("name", "v100")), 1),
    ));
    m.extend(refusals! {
        "UpdateL2Network", admin, json!({"uuid": missing(), "name": "x"}) => ResourceNotFound;
    });
    m.push(ok(
        "AttachL2NetworkToCluster",
        &admin,
        json!({"l2NetworkUuid": i.vlan, "clusterUuid": i.cluster}),
        {
            let c = i.cluster.clone();
            move |_, r| assert_eq!(r["inventory"]["attachedClusterUuids"], json!([c]))
        },
    ));
    m.extend(refusals! {
        "AttachL2NetworkToCluster", admin, json!({"l2NetworkUuid": i.vlan, "clusterUuid": missing()}) => ResourceNotFound;
    });
    m.push(ok(
        "DetachL2NetworkFromCluster",
        &admin,
        json!({"l2NetworkUuid": i.l2, "clusterUuid": i.cluster}),
        |_, r| assert_eq!(r["inventory"]["attachedClusterUuids"], json!([])),
    ));
    m.extend(refusals! {
        "DetachL2NetworkFromCluster", tenant, json!({"l2NetworkUuid": i.l2, "clusterUuid": i.cluster}) => PermissionDenied;
    });
    m.push(ok("DeleteL2Network", &admin, json!({"uuid": i.l2}), {
        let (l2, l3) = (i.l2.clone(), i.l3.clone());
        move |h, _| {
            assert_eq!(h.count("QueryL2Network", eq("uuid", &l2)), 0);
            assert_eq!(h.count("QueryL3Network", eq("uuid", &l3)), 0);
        }
    }));
    m.extend(refusals! {
        "DeleteL2Network", tenant, json!({"uuid": i.l2}) => PermissionDenied;
    });
    m.push(ok(
        "QueryL2Network",
        &admin,
        json!({"conditions": eq("attachedClusterUuids", &i.cluster)}),
        {
            let l2 = i.l2.clone();
            move |_, r| assert_eq!(r["inventories"][0]["uuid"], l2.as_str())
        },
    ));
    m.extend(refusals! {
        "QueryL2Network", admin, bad_query() => InvalidArgument;
    });
    m.push(ok(
        "QueryL2VlanNetwork",
        &admin,
        json!({"conditions": eq("vlan", "100")}),
        |_, r| assert_eq!(r["inventories"][0]["name"], "vlan"),
    ));
    m.extend(refusals! {
        "QueryL2VlanNetwork", admin, bad_query() => InvalidArgument;
    });
    m.push(ok(
        "QueryL2VxlanNetwork",
        &admin,
        json!({"conditions": eq("vni", "15")}),
        {
            let vx = i.vxlan.clone();
            move |_, r| assert_eq!(r["inventories"][0]["uuid"], vx.as_str())
        },
    ));
    m.extend(refusals! {
        "QueryL2VxlanNetwork", admin, bad_query() => InvalidArgument;
    });
    m.push(ok(
        "QueryL2VxlanNetworkPool",
        &admin,
        json!({"conditions": []}),
        {
            let pool = i.pool.clone();
            move |_, r| assert_eq!(r["inventories"][0]["uuid"], pool.as_str())
        },
    ));
    m.extend(refusals! {
        "QueryL2VxlanNetworkPool", admin, bad_query() => InvalidArgument;
    });
    m.push(ok(
        "QueryVniRange",
        &admin,
        json!({"conditions": eq("startVni", "10")}),
        {
            let r = i.vni_range.clone();
            move |_, q| assert_eq!(q["inventories"][0]["uuid"], r.as_str())
        },
    ));
    m.extend(refusals! {
        "QueryVniRange", admin, bad_query() => InvalidArgument;
    });
    m
}
