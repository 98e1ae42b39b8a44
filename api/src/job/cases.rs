//! Call-matrix cases of `GetTaskProgress` (run by `testing::matrix`).

use serde_json::json;

use crate::testing::matrix::no;
use crate::testing::matrix::ok;
use crate::testing::matrix::Case;
use crate::testing::matrix::Ids;
use crate::testing::matrix::Parties;
use crate::wire::errors::Code;

/// The call-matrix cases of this family's calls.
pub(crate) fn cases(ids: &Ids) -> Vec<Case> {
    let Parties { admin, tenant, .. } = Parties::of(ids);
    let job = ids.zone2_job.clone();
    vec![
        ok(
            "GetTaskProgress",
            &admin,
            json!({"apiId": job, "all": "true"}),
            |_, r| {
                let inv = r["inventories"].as_array().unwrap();
                assert_eq!(inv.last().unwrap()["content"], "100", "{inv:?}");
                assert_eq!(inv[0]["taskName"], "CreateZone");
            },
        ),
        ok(
            "GetTaskProgress",
            &tenant,
            json!({"apiId": ids.zone2_job}),
            |_, r| assert_eq!(r["inventories"], json!([]), "another account's job"),
        ),
        no(
            "GetTaskProgress",
            &admin,
            json!({"apiId": "nope"}),
            Code::InvalidArgument,
        ),
    ]
}
