//! Call-matrix cases of the zone calls (run by `testing::matrix`).

use serde_json::json;

use crate::testing::matrix::bad_query;
use crate::testing::matrix::eq;
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
    // ---- Zone.
    m.push(ok(
        "CreateZone",
        &admin,
        json!({"name": "z3", "description": "d"}),
        |h, r| {
            assert_eq!(r["inventory"]["name"], "z3");
            assert_eq!(r["inventory"]["state"], "Enabled");
            assert_eq!(h.count("QueryZone", eq("name", "z3")), 1);
        },
    ));
    m.extend(rows! {
        "CreateZone", tenant, json!({"name": "z3"}) => PermissionDenied;
        "CreateZone", admin, json!({}) => InvalidArgument;
        "UpdateZone", admin, json!({"uuid": i.zone, "name": "renamed"}) => ok(inv("name", "renamed"));
        "UpdateZone", admin, json!({"uuid": missing(), "name": "x"}) => ResourceNotFound;
    });
    {
        let cluster = i.cluster.clone();
        m.push(ok(
            "ChangeZoneState",
            &admin,
            json!({"uuid": i.zone, "stateEvent": "disable"}),
            move |h, r| {
                assert_eq!(r["inventory"]["state"], "Disabled");
                assert_eq!(h.one("QueryCluster", "uuid", &cluster)["state"], "Disabled");
            },
        ));
    }
    m.extend(rows! {
        "ChangeZoneState", admin, json!({"uuid": i.zone, "stateEvent": "boom"}) => InvalidArgument;
    });
    {
        let zone = i.zone.clone();
        m.push(ok(
            "DeleteZone",
            &admin,
            json!({"uuid": i.zone}),
            move |h, _| {
                assert_eq!(h.count("QueryZone", eq("uuid", &zone)), 0);
                assert_eq!(h.count("QueryCluster", json!([])), 0);
                assert_eq!(h.count("QueryL3Network", json!([])), 0);
            },
        ));
    }
    m.extend(rows! {
        "DeleteZone", tenant, json!({"uuid": i.zone}) => PermissionDenied;
    });
    {
        let zone = i.zone.clone();
        m.push(ok(
            "QueryZone",
            &admin,
            json!({"conditions": eq("uuid", &zone), "replyWithCount": true}),
            |_, r| {
                assert_eq!(r["total"], 1);
                assert_eq!(r["inventories"][0]["name"], "zone");
            },
        ));
    }
    m.push(ok(
        "QueryZone",
        &tenant,
        json!({"conditions": []}),
        |_, r| assert_eq!(r["inventories"], json!([]), "a tenant sees no admin zone"),
    ));
    m.extend(rows! {
        "QueryZone", admin, bad_query() => InvalidArgument;
    });
    m
}
