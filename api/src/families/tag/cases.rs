//! Call-matrix cases of the tag calls (run by `testing::matrix`).

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
    m.extend(refusals! {
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
    m.extend(refusals! {
        "CreateUserTag", tenant, json!({"resourceType": "ZoneVO", "resourceUuid": i.zone, "tag": "gold"}) => PermissionDenied;
    });
    {
        let t = i.user_tag.clone();
        m.push(ok(
            "DeleteTag",
            &admin,
            json!({"uuid": i.user_tag}),
            move |h, _| assert_eq!(h.count("QueryUserTag", eq("uuid", &t)), 0),
        ));
    }
    m.extend(refusals! {
        "DeleteTag", stranger, json!({"uuid": i.user_tag}) => PermissionDenied;
    });
    {
        let t = i.sys_tag.clone();
        m.push(ok(
            "QuerySystemTag",
            &admin,
            json!({"conditions": eq("resourceUuid", &i.l3)}),
            move |_, r| assert_eq!(r["inventories"][0]["uuid"], t.as_str()),
        ));
    }
    m.extend(refusals! {
        "QuerySystemTag", admin, bad_query() => InvalidArgument;
    });
    {
        let c = i.cluster.clone();
        m.push(ok(
            "QueryUserTag",
            &admin,
            json!({"conditions": [{"name": "tag", "op": "like", "value": "rack%"}]}),
            move |_, r| assert_eq!(r["inventories"][0]["resourceUuid"], c.as_str()),
        ));
    }
    m.extend(refusals! {
        "QueryUserTag", admin, bad_query() => InvalidArgument;
    });
    m
}
