//! Call-matrix cases of the global-config calls (run by `testing::matrix`).

use serde_json::json;

use crate::testing::matrix::first;
use crate::testing::matrix::ok;
use crate::testing::matrix::rows;
use crate::testing::matrix::Case;
use crate::testing::matrix::Ids;
use crate::testing::matrix::Parties;

/// The call-matrix cases of this family's calls.
pub(crate) fn cases(ids: &Ids) -> Vec<Case> {
    let Parties { admin, tenant, .. } = Parties::of(ids);
    let mut m = Vec::new();
    // ---- Global config.
    m.push(ok(
        "UpdateGlobalConfig",
        &admin,
        json!({"category": "identity", "name": "session.timeout", "value": "600"}),
        |h, r| {
            assert_eq!(r["inventory"]["value"], "600");
            let c = h.query(
                "QueryGlobalConfig",
                json!([{"name": "category", "op": "=", "value": "identity"},
                       {"name": "name", "op": "=", "value": "session.timeout"}]),
            );
            assert_eq!(c[0]["value"], "600");
        },
    ));
    m.extend(rows! {
        "UpdateGlobalConfig", admin, json!({"category": "identity", "name": "session.timeout", "value": "0"}) => InvalidArgument;
        "UpdateGlobalConfig", admin, json!({"category": "nope", "name": "x", "value": "1"}) => InvalidArgument;
        "UpdateGlobalConfig", tenant, json!({"category": "identity", "name": "session.timeout", "value": "600"}) => PermissionDenied;
    });
    m.push(ok("ResetGlobalConfig", &admin, json!({}), |h, _| {
        let c = h.query(
            "QueryGlobalConfig",
            json!([{"name": "category", "op": "=", "value": "vm"},
                   {"name": "name", "op": "=", "value": "expungePeriod"}]),
        );
        assert_eq!(c[0]["value"], c[0]["defaultValue"]);
    }));
    m.extend(rows! {
        "ResetGlobalConfig", tenant, json!({}) => PermissionDenied;
        "QueryGlobalConfig", tenant, json!({"conditions": [{"name": "name", "op": "=", "value": "expungePeriod"}]}) => ok(first("value", "3600"));
        "QueryGlobalConfig", admin, json!({"conditions": [], "limit": "many"}) => InvalidArgument;
    });
    m
}
