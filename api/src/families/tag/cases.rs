//! Call-matrix cases of the tag calls (run by `testing::matrix`).

use serde_json::json;

use crate::testing::matrix::bad_query;
use crate::testing::matrix::eq;
use crate::testing::matrix::first;
use crate::testing::matrix::gone;
use crate::testing::matrix::missing;
use crate::testing::matrix::ok;
use crate::testing::matrix::rows;
use crate::testing::matrix::Case;
use crate::testing::matrix::Ids;
use crate::testing::matrix::Parties;

/// The call-matrix cases of this family's calls.
pub(crate) fn cases(ids: &Ids) -> Vec<Case> {
    let Parties {
        admin,
        tenant,
        stranger,
        ..
    } = Parties::of(ids);
    let i = ids.clone();
    let mut m = Vec::new();
    // ---- Tags.
    {
        let l3v = i.l3v.clone();
        m.push(ok(
            "CreateSystemTag",
            &admin,
            json!({"resourceType": "L3NetworkVO", "resourceUuid": i.l3v, "tag": "networkServices::Flat"}),
            move |h, r| {
                assert_eq!(r["inventory"]["resourceUuid"], l3v.as_str());
                assert_eq!(
                    h.count(
                        "QueryL3Network",
                        json!([{"name": "__systemTag__", "op": "=", "value": "networkServices::Flat"}])
                    ),
                    2
                );
            },
        ));
    }
    m.extend(rows! {
        "CreateSystemTag", admin, json!({"resourceType": "L3NetworkVO", "resourceUuid": missing(), "tag": "networkServices::Flat"}) => ResourceNotFound;
    });
    {
        let zone = i.zone.clone();
        m.push(ok(
            "CreateUserTag",
            &admin,
            json!({"resourceType": "ZoneVO", "resourceUuid": i.zone, "tag": "gold"}),
            move |h, _| {
                let z = h.query(
                    "QueryZone",
                    json!([{"name": "__userTag__", "op": "=", "value": "gold"}]),
                );
                assert_eq!(z[0]["uuid"], zone.as_str());
            },
        ));
    }
    m.extend(rows! {
        "CreateUserTag", tenant, json!({"resourceType": "ZoneVO", "resourceUuid": i.zone, "tag": "gold"}) => PermissionDenied;
        "DeleteTag", admin, json!({"uuid": i.user_tag}) => ok(gone("QueryUserTag", &i.user_tag));
        "DeleteTag", stranger, json!({"uuid": i.user_tag}) => PermissionDenied;
        "QuerySystemTag", admin, json!({"conditions": eq("resourceUuid", &i.l3)}) => ok(first("uuid", i.sys_tag.as_str()));
        "QuerySystemTag", admin, bad_query() => InvalidArgument;
        "QueryUserTag", admin, json!({"conditions": [{"name": "tag", "op": "like", "value": "rack%"}]}) => ok(first("resourceUuid", i.cluster.as_str()));
        "QueryUserTag", admin, bad_query() => InvalidArgument;
    });
    m
}
