//! Call-matrix cases of the management-node calls (run by `testing::matrix`).

use serde_json::json;

use crate::testing::matrix::bad_query;
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
        nobody,
        ..
    } = Parties::of(ids);
    let i = ids.clone();
    let mut m = Vec::new();
    // ---- Management nodes.
    {
        let mn = i.mn.clone();
        m.push(ok(
            "QueryManagementNode",
            &tenant,
            json!({"conditions": []}),
            move |_, r| {
                assert_eq!(r["inventories"][0]["uuid"], mn.as_str());
                assert_eq!(r["inventories"][0]["hostName"], "10.0.0.1");
            },
        ));
    }
    m.extend(rows! {
        "QueryManagementNode", admin, bad_query() => InvalidArgument;
        "QueryManagementNode", nobody, json!({"conditions": []}) => InvalidSession;
    });
    m
}
