//! Call-matrix cases of this family's calls (run by `testing::matrix`).

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
    m.extend(rows! {
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
    m.extend(rows! {
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
    m.extend(rows! {
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
    m.extend(rows! {
        "CreateVniRange", admin, json!({"l2NetworkUuid": i.pool, "name": "r3", "startVni": 15, "endVni": 25}) => InvalidArgument;
        "DeleteVniRange", admin, json!({"uuid": i.spare_vni_range}) => ok(gone("QueryVniRange", &i.spare_vni_range));
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
    m.extend(rows! {
        "CreateL2VxlanNetwork", admin, json!({"poolUuid": i.pool, "name": "vx2", "vni": 15}) => InvalidArgument;
    });
    m.push(ok(
        "UpdateL2Network",
        &admin,
        json!({"uuid": i.vlan, "name": "v100"}),
        |h, _| assert_eq!(h.count("QueryL2Network", eq("name", "v100")), 1),
    ));
    m.extend(rows! {
        "UpdateL2Network", admin, json!({"uuid": missing(), "name": "x"}) => ResourceNotFound;
        "AttachL2NetworkToCluster", admin, json!({"l2NetworkUuid": i.vlan, "clusterUuid": i.cluster}) => ok(inv("attachedClusterUuids", json!([i.cluster])));
        "AttachL2NetworkToCluster", admin, json!({"l2NetworkUuid": i.vlan, "clusterUuid": missing()}) => ResourceNotFound;
        "DetachL2NetworkFromCluster", admin, json!({"l2NetworkUuid": i.l2, "clusterUuid": i.cluster}) => ok(inv("attachedClusterUuids", json!([])));
        "DetachL2NetworkFromCluster", tenant, json!({"l2NetworkUuid": i.l2, "clusterUuid": i.cluster}) => PermissionDenied;
    });
    m.push(ok("DeleteL2Network", &admin, json!({"uuid": i.l2}), {
        let (l2, l3) = (i.l2.clone(), i.l3.clone());
        move |h, _| {
            assert_eq!(h.count("QueryL2Network", eq("uuid", &l2)), 0);
            assert_eq!(h.count("QueryL3Network", eq("uuid", &l3)), 0);
        }
    }));
    m.extend(rows! {
        "DeleteL2Network", tenant, json!({"uuid": i.l2}) => PermissionDenied;
        "QueryL2Network", admin, json!({"conditions": eq("attachedClusterUuids", &i.cluster)}) => ok(first("uuid", i.l2.as_str()));
        "QueryL2Network", admin, bad_query() => InvalidArgument;
        "QueryL2VlanNetwork", admin, json!({"conditions": eq("vlan", "100")}) => ok(first("name", "vlan"));
        "QueryL2VlanNetwork", admin, bad_query() => InvalidArgument;
        "QueryL2VxlanNetwork", admin, json!({"conditions": eq("vni", "15")}) => ok(first("uuid", i.vxlan.as_str()));
        "QueryL2VxlanNetwork", admin, bad_query() => InvalidArgument;
        "QueryL2VxlanNetworkPool", admin, json!({"conditions": []}) => ok(first("uuid", i.pool.as_str()));
        "QueryL2VxlanNetworkPool", admin, bad_query() => InvalidArgument;
        "QueryVniRange", admin, json!({"conditions": eq("startVni", "10")}) => ok(first("uuid", i.vni_range.as_str()));
        "QueryVniRange", admin, bad_query() => InvalidArgument;
    });
    m
}
