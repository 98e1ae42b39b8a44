//! Call-matrix cases of the cluster calls (run by `testing::matrix`).

use serde_json::json;

use crate::testing::matrix::bad_query;
use crate::testing::matrix::eq;
use crate::testing::matrix::first;
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
    // ---- Clusters.
    {
        let zone = i.zone.clone();
        m.push(ok(
            "CreateCluster",
            &admin,
            json!({"zoneUuid": i.zone, "name": "c2", "hypervisorType": "KVM"}),
            move |h, r| {
                assert_eq!(r["inventory"]["zoneUuid"], zone.as_str());
                assert_eq!(h.count("QueryCluster", eq("zoneUuid", &zone)), 2);
            },
        ));
    }
    m.extend(rows! {
        "CreateCluster", admin, json!({"zoneUuid": missing(), "name": "c2", "hypervisorType": "KVM"}) => ResourceNotFound;
        "CreateCluster", admin, json!({"zoneUuid": i.zone, "name": "c2", "hypervisorType": "Xen"}) => InvalidArgument;
        "CreateCluster", tenant, json!({"zoneUuid": i.zone, "name": "c2", "hypervisorType": "KVM"}) => PermissionDenied;
        "UpdateCluster", admin, json!({"uuid": i.cluster, "name": "c1", "description": "d"}) => ok(inv("name", "c1"));
        "UpdateCluster", admin, json!({"uuid": missing(), "name": "c1"}) => ResourceNotFound;
        "ChangeClusterState", admin, json!({"uuid": i.cluster, "stateEvent": "disable"}) => ok(inv("state", "Disabled"));
        "ChangeClusterState", admin, json!({"uuid": i.cluster, "stateEvent": "maintain"}) => InvalidArgument;
    });
    {
        let (c, local) = (i.cluster.clone(), i.local.clone());
        m.push(ok(
            "DeleteCluster",
            &admin,
            json!({"uuid": i.cluster}),
            move |h, _| {
                assert_eq!(h.count("QueryCluster", eq("uuid", &c)), 0);
                let ps = h.one("QueryPrimaryStorage", "uuid", &local);
                assert_eq!(ps["attachedClusterUuids"], json!([]));
            },
        ));
    }
    m.extend(rows! {
        "DeleteCluster", tenant, json!({"uuid": i.cluster}) => PermissionDenied;
        "QueryCluster", admin, json!({"conditions": [{"name": "__userTag__", "op": "=", "value": "rack-1"}]}) => ok(first("uuid", i.cluster.as_str()));
        "QueryCluster", admin, bad_query() => InvalidArgument;
    });
    m
}
