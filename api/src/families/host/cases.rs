//! Call-matrix cases of the host calls (run by `testing::matrix`).

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
    m.extend(refusals! {
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
    m.extend(refusals! {
        "UpdateKVMHost", admin, json!({"uuid": missing(), "name": "x"}) => ResourceNotFound;
    });
    m.push(ok(
        "ChangeHostState",
        &admin,
        json!({"uuid": i.host, "stateEvent": "disable"}),
        |_, r| assert_eq!(r["inventory"]["state"], "Disabled"),
    ));
    m.extend(refusals! {
        "ChangeHostState", admin, json!({"uuid": i.host_in_maintenance, "stateEvent": "maintain"}) => OperationFailure;
        "ChangeHostState", admin, json!({"uuid": i.host, "stateEvent": "reboot"}) => InvalidArgument;
    });
    {
        let host = i.host_in_maintenance.clone();
        m.push(ok(
            "DeleteHost",
            &admin,
            json!({"uuid": i.host_in_maintenance}),
            move |h, _| assert_eq!(h.count("QueryHost", eq("uuid", &host)), 0),
        ));
    }
    m.extend(refusals! {
        "DeleteHost", admin, json!({"uuid": i.host}) => OperationFailure;
    });
    m.push(ok(
        "ReconnectHost",
        &admin,
        json!({"uuid": i.host}),
        |_, r| assert_eq!(r["inventory"]["status"], "Connected"),
    ));
    m.extend(refusals! {
        "ReconnectHost", admin, json!({"uuid": i.host_in_maintenance}) => OperationFailure;
    });
    {
        let host = i.host.clone();
        m.push(ok(
            "QueryHost",
            &admin,
            json!({"conditions": eq("managementIp", "10.0.1.1")}),
            move |_, r| assert_eq!(r["inventories"][0]["uuid"], host.as_str()),
        ));
    }
    m.push(ok(
        "QueryHost",
        &tenant,
        json!({"conditions": []}),
        |_, r| assert_eq!(r["inventories"], json!([]), "hosts are the admin's"),
    ));
    m.extend(refusals! {
        "QueryHost", admin, bad_query() => InvalidArgument;
    });
    m
}
