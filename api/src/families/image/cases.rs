//! Call-matrix cases of the image calls (run by `testing::matrix`).

use serde_json::json;

use crate::testing::matrix::bad_query;
use crate::testing::matrix::eq;
use crate::testing::matrix::first;
use crate::testing::matrix::found;
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
    // ---- Images.
    m.push(ok(
        "AddImage",
        &admin,
        json!({"name": "img2", "url": "http://h/img2.qcow2", "format": "qcow2", "backupStorageUuids": [i.bs]}),
        |h, r| {
            assert_eq!(r["inventory"]["name"], "img2");
            assert_eq!(h.count("QueryImage", eq("name", "img2")), 1);
        },
    ));
    m.extend(rows! {
        "AddImage", admin, json!({"name": "x", "url": "ftp://h/x", "backupStorageUuids": [i.bs]}) => InvalidArgument;
        "AddImage", admin, json!({"name": "x", "url": "http://h/x.qcow2", "backupStorageUuids": [missing()]}) => ResourceNotFound;
        "UpdateImage", admin, json!({"uuid": i.image, "platform": "Linux"}) => ok(inv("platform", "Linux"));
        "UpdateImage", admin, json!({"uuid": missing(), "platform": "Linux"}) => ResourceNotFound;
        "ChangeImageState", admin, json!({"uuid": i.image, "stateEvent": "disable"}) => ok(inv("state", "Disabled"));
        "ChangeImageState", admin, json!({"uuid": i.image, "stateEvent": "destroy"}) => InvalidArgument;
        "DeleteImage", admin, json!({"uuid": i.image}) => ok(found("QueryImage", &i.image, "status", "Deleted"));
        "DeleteImage", tenant, json!({"uuid": i.image}) => PermissionDenied;
        "ExpungeImage", admin, json!({"imageUuid": i.deleted_image}) => ok(gone("QueryImage", &i.deleted_image));
        "ExpungeImage", admin, json!({"imageUuid": i.image}) => OperationFailure;
    });
    {
        let img = i.deleted_image.clone();
        m.push(ok(
            "RecoverImage",
            &admin,
            json!({"imageUuid": i.deleted_image}),
            move |h, _| assert_ne!(h.one("QueryImage", "uuid", &img)["status"], "Deleted"),
        ));
    }
    m.extend(rows! {
        "RecoverImage", admin, json!({"imageUuid": missing()}) => ResourceNotFound;
        "QueryImage", admin, json!({"conditions": eq("status", "Deleted")}) => ok(first("name", "gone"));
        "QueryImage", admin, bad_query() => InvalidArgument;
    });
    m
}
