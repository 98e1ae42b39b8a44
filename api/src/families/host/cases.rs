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
    m
}
