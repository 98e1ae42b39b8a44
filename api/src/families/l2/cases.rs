//! Call-matrix cases of this family's calls (run by `testing::matrix`).

use serde_json::json;

use crate::testing::matrix::bad_query;
use crate::testing::matrix::eq;
use crate::testing::matrix::missing;
use crate::testing::matrix::no;
use crate::testing::matrix::ok;
use crate::testing::matrix::Case;
use crate::testing::matrix::Ids;
use crate::testing::matrix::Parties;
use crate::wire::errors::Code;

/// The call-matrix cases of this family's calls.
pub(crate) fn cases(ids: &Ids) -> Vec<Case> {
    let Parties { admin, tenant, .. } = Parties::of(ids);
    let i = ids.clone();
    vec![
        // ---- L2 networks.
        ok(
            "CreateL2NoVlanNetwork",
            &admin,
            json!({"zoneUuid": i.zone, "name": "flat2", "physicalInterface": "eth1"}),
            |_, r| {
                assert_eq!(r["inventory"]["type"], "L2NoVlanNetwork");
                assert_eq!(r["inventory"]["physicalInterface"], "eth1");
            },
        ),
        no(
            "CreateL2NoVlanNetwork",
            &admin,
            json!({"zoneUuid": missing(), "name": "flat2", "physicalInterface": "eth1"}),
            Code::ResourceNotFound,
        ),
        ok(
            "CreateL2VlanNetwork",
            &admin,
            json!({"zoneUuid": i.zone, "name": "v200", "physicalInterface": "eth0", "vlan": 200}),
            |h, r| {
                assert_eq!(r["inventory"]["vlan"], 200);
                assert_eq!(h.count("QueryL2VlanNetwork", json!([])), 2);
            },
        ),
        no(
            "CreateL2VlanNetwork",
            &admin,
            json!({"zoneUuid": i.zone, "name": "v", "physicalInterface": "eth0", "vlan": 4095}),
            Code::InvalidArgument,
        ),
        ok(
            "CreateL2VxlanNetworkPool",
            &admin,
            json!({"zoneUuid": i.zone, "name": "pool2"}),
            |h, r| {
                assert_eq!(r["inventory"]["name"], "pool2");
                assert_eq!(h.count("QueryL2VxlanNetworkPool", json!([])), 2);
            },
        ),
        no(
            "CreateL2VxlanNetworkPool",
            &tenant,
            json!({"zoneUuid": i.zone, "name": "pool2"}),
            Code::PermissionDenied,
        ),
        ok(
            "CreateVniRange",
            &admin,
            json!({"l2NetworkUuid": i.pool, "name": "r3", "startVni": 100, "endVni": 200}),
            |h, r| {
                assert_eq!(r["inventory"]["startVni"], 100);
                assert_eq!(h.count("QueryVniRange", json!([])), 3);
            },
        ),
        no(
            "CreateVniRange",
            &admin,
            json!({"l2NetworkUuid": i.pool, "name": "r3", "startVni": 15, "endVni": 25}),
            Code::InvalidArgument,
        ),
        ok(
            "DeleteVniRange",
            &admin,
            json!({"uuid": i.spare_vni_range}),
            {
                let r = i.spare_vni_range.clone();
                move |h, _| assert_eq!(h.count("QueryVniRange", eq("uuid", &r)), 0)
            },
        ),
        no(
            "DeleteVniRange",
            &tenant,
            json!({"uuid": i.spare_vni_range}),
            Code::PermissionDenied,
        ),
        ok(
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
        ),
        no(
            "CreateL2VxlanNetwork",
            &admin,
            json!({"poolUuid": i.pool, "name": "vx2", "vni": 15}),
            Code::InvalidArgument,
        ),
        ok(
            "UpdateL2Network",
            &admin,
            json!({"uuid": i.vlan, "name": "v100"}),
            |h, _| assert_eq!(h.count("QueryL2Network", eq("name", "v100")), 1),
        ),
        no(
            "UpdateL2Network",
            &admin,
            json!({"uuid": missing(), "name": "x"}),
            Code::ResourceNotFound,
        ),
        ok(
            "AttachL2NetworkToCluster",
            &admin,
            json!({"l2NetworkUuid": i.vlan, "clusterUuid": i.cluster}),
            {
                let c = i.cluster.clone();
                move |_, r| assert_eq!(r["inventory"]["attachedClusterUuids"], json!([c]))
            },
        ),
        no(
            "AttachL2NetworkToCluster",
            &admin,
            json!({"l2NetworkUuid": i.vlan, "clusterUuid": missing()}),
            Code::ResourceNotFound,
        ),
        ok(
            "DetachL2NetworkFromCluster",
            &admin,
            json!({"l2NetworkUuid": i.l2, "clusterUuid": i.cluster}),
            |_, r| assert_eq!(r["inventory"]["attachedClusterUuids"], json!([])),
        ),
        no(
            "DetachL2NetworkFromCluster",
            &tenant,
            json!({"l2NetworkUuid": i.l2, "clusterUuid": i.cluster}),
            Code::PermissionDenied,
        ),
        ok("DeleteL2Network", &admin, json!({"uuid": i.l2}), {
            let (l2, l3) = (i.l2.clone(), i.l3.clone());
            move |h, _| {
                assert_eq!(h.count("QueryL2Network", eq("uuid", &l2)), 0);
                assert_eq!(h.count("QueryL3Network", eq("uuid", &l3)), 0);
            }
        }),
        no(
            "DeleteL2Network",
            &tenant,
            json!({"uuid": i.l2}),
            Code::PermissionDenied,
        ),
        ok(
            "QueryL2Network",
            &admin,
            json!({"conditions": eq("attachedClusterUuids", &i.cluster)}),
            {
                let l2 = i.l2.clone();
                move |_, r| assert_eq!(r["inventories"][0]["uuid"], l2.as_str())
            },
        ),
        no("QueryL2Network", &admin, bad_query(), Code::InvalidArgument),
        ok(
            "QueryL2VlanNetwork",
            &admin,
            json!({"conditions": eq("vlan", "100")}),
            |_, r| assert_eq!(r["inventories"][0]["name"], "vlan"),
        ),
        no(
            "QueryL2VlanNetwork",
            &admin,
            bad_query(),
            Code::InvalidArgument,
        ),
        ok(
            "QueryL2VxlanNetwork",
            &admin,
            json!({"conditions": eq("vni", "15")}),
            {
                let vx = i.vxlan.clone();
                move |_, r| assert_eq!(r["inventories"][0]["uuid"], vx.as_str())
            },
        ),
        no(
            "QueryL2VxlanNetwork",
            &admin,
            bad_query(),
            Code::InvalidArgument,
        ),
        ok(
            "QueryL2VxlanNetworkPool",
            &admin,
            json!({"conditions": []}),
            {
                let pool = i.pool.clone();
                move |_, r| assert_eq!(r["inventories"][0]["uuid"], pool.as_str())
            },
        ),
        no(
            "QueryL2VxlanNetworkPool",
            &admin,
            bad_query(),
            Code::InvalidArgument,
        ),
        ok(
            "QueryVniRange",
            &admin,
            json!({"conditions": eq("startVni", "10")}),
            {
                let r = i.vni_range.clone();
                move |_, q| assert_eq!(q["inventories"][0]["uuid"], r.as_str())
            },
        ),
        no("QueryVniRange", &admin, bad_query(), Code::InvalidArgument),
    ]
}
