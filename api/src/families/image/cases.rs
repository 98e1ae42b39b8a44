//! Call-matrix cases of the image calls (run by `testing::matrix`).

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
    m.extend(refusals! {
        "AddImage", admin, json!({"name": "x", "url": "ftp://h/x", "backupStorageUuids": [i.bs]}) => InvalidArgument;
        "AddImage", admin, json!({"name": "x", "url": "http://h/x.qcow2", "backupStorageUuids": [missing()]}) => ResourceNotFound;
    });
    m.push(ok(
        "UpdateImage",
        &admin,
        json!({"uuid": i.image, "platform": "Linux"}),
        |_, r| assert_eq!(r["inventory"]["platform"], "Linux"),
    ));
    m.extend(refusals! {
        "UpdateImage", admin, json!({"uuid": missing(), "platform": "Linux"}) => ResourceNotFound;
    });
    m.push(ok(
        "ChangeImageState",
        &admin,
        json!({"uuid": i.image, "stateEvent": "disable"}),
        |_, r| assert_eq!(r["inventory"]["state"], "Disabled"),
    ));
    m.extend(refusals! {
        "ChangeImageState", admin, json!({"uuid": i.image, "stateEvent": "destroy"}) => InvalidArgument;
    });
    {
        let img = i.image.clone();
        m.push(ok(
            "DeleteImage",
            &admin,
            json!({"uuid": i.image}),
            move |h, _| assert_eq!(h.one("QueryImage", "uuid", &img)["status"], "Deleted"),
        ));
    }
    m.extend(refusals! {
        "DeleteImage", tenant, json!({"uuid": i.image}) => PermissionDenied;
    });
    {
        let img = i.deleted_image.clone();
        m.push(ok(
            "ExpungeImage",
            &admin,
            json!({"imageUuid": i.deleted_image}),
            move |h, _| assert_eq!(h.count("QueryImage", eq("uuid", &img)), 0),
        ));
    }
    m.extend(refusals! {
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
    m.extend(refusals! {
        "RecoverImage", admin, json!({"imageUuid": missing()}) => ResourceNotFound;
    });
    m.push(ok(
        "QueryImage",
        &admin,
        json!({"conditions": eq("status", "Deleted")}),
        |_, r| assert_eq!(r["inventories"][0]["name"], "gone"),
    ));
    m.extend(refusals! {
        "QueryImage", admin, bad_query() => InvalidArgument;
    });
    m
}
