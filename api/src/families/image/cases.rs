//! Call-matrix cases of the image calls (run by `testing::matrix`).

use serde_json::json;

use crate::wire::errors::Code;

use crate::testing::matrix::bad_query;
use crate::testing::matrix::eq;
use crate::testing::matrix::first;
use crate::testing::matrix::found;
use crate::testing::matrix::gone;
use crate::testing::matrix::inv;
use crate::testing::matrix::missing;
use crate::testing::matrix::no;
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
    // ---- Exports (the harness's store answers a URL under its export port).
    {
        let img = i.image.clone();
        m.push(ok(
            "ExportImageFromBackupStorage",
            &admin,
            json!({"backupStorageUuid": i.bs, "imageUuid": i.image}),
            move |h, r| {
                let url = r["imageUrl"].as_str().expect("imageUrl");
                assert!(url.ends_with("/ttylinux.qcow2"), "{url}");
                assert_eq!(r["exportMd5Sum"], "0123456789abcdef0123456789abcdef");
                let copy = &h.one("QueryImage", "uuid", &img)["backupStorageRefs"][0];
                assert_eq!(copy["exportUrl"], url, "{copy}");
                assert_eq!(copy["exportMd5Sum"], "0123456789abcdef0123456789abcdef");
            },
        ));
    }
    let other_bs = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";
    m.push(ok(
        "ExportImageFromBackupStorage",
        &admin,
        json!({"backupStorageUuid": i.bs, "imageUuid": i.image, "exportFormat": "raw"}),
        |_, r| {
            assert!(
                r["imageUrl"].as_str().unwrap().ends_with("/ttylinux.raw"),
                "{r:?}"
            )
        },
    ));
    m.extend(rows! {
        "ExportImageFromBackupStorage", admin, json!({"backupStorageUuid": i.bs, "imageUuid": missing()}) => ResourceNotFound;
        "ExportImageFromBackupStorage", admin, json!({"backupStorageUuid": missing(), "imageUuid": i.image}) => ResourceNotFound;
        // Deleted (recycle bin): not Ready.
        "ExportImageFromBackupStorage", admin, json!({"backupStorageUuid": i.bs, "imageUuid": i.deleted_image}) => OperationFailure;
        "ExportImageFromBackupStorage", admin, json!({"backupStorageUuid": i.bs, "imageUuid": i.image, "exportFormat": "vmdk"}) => InvalidArgument;
        "ExportImageFromBackupStorage", tenant, json!({"backupStorageUuid": i.bs, "imageUuid": i.image}) => PermissionDenied;
    });
    m.push(
        no(
            "ExportImageFromBackupStorage",
            &admin,
            json!({"backupStorageUuid": other_bs, "imageUuid": i.image}),
            Code::InvalidArgument,
        )
        .given(
            &admin,
            "AddImageStoreBackupStorage",
            json!({"resourceUuid": other_bs, "name": "bs2", "url": "/bs2", "hostname": "10.0.0.10",
                   "username": "root", "password": "p"}),
        ),
    );
    {
        let img = i.image.clone();
        m.push(
            ok(
                "DeleteExportedImageFromBackupStorage",
                &admin,
                json!({"backupStorageUuid": i.bs, "imageUuid": i.image}),
                move |h, r| {
                    assert!(r.get("inventory").is_none(), "{r:?}");
                    let copy = &h.one("QueryImage", "uuid", &img)["backupStorageRefs"][0];
                    assert!(copy.get("exportUrl").is_none(), "{copy}");
                    assert!(copy.get("exportMd5Sum").is_none(), "{copy}");
                },
            )
            .given(
                &admin,
                "ExportImageFromBackupStorage",
                json!({"backupStorageUuid": i.bs, "imageUuid": i.image}),
            ),
        );
    }
    {
        // Deleting an exported image (Delay) revokes the export with it.
        let img = i.image.clone();
        m.push(
            ok(
                "DeleteImage",
                &admin,
                json!({"uuid": i.image}),
                move |h, _| {
                    let copy = &h.one("QueryImage", "uuid", &img)["backupStorageRefs"][0];
                    assert_eq!(copy["status"], "Deleted");
                    assert!(copy.get("exportUrl").is_none(), "{copy}");
                },
            )
            .given(
                &admin,
                "ExportImageFromBackupStorage",
                json!({"backupStorageUuid": i.bs, "imageUuid": i.image}),
            ),
        );
    }
    m.extend(rows! {
        // Nothing exported: deleting it is a success, as ZStack answers it.
        "DeleteExportedImageFromBackupStorage", admin, json!({"backupStorageUuid": i.bs, "imageUuid": i.image}) => ok(|_, _| {});
        "DeleteExportedImageFromBackupStorage", admin, json!({"backupStorageUuid": i.bs, "imageUuid": missing()}) => ResourceNotFound;
        "DeleteExportedImageFromBackupStorage", admin, json!({"backupStorageUuid": missing(), "imageUuid": i.image}) => ResourceNotFound;
        "DeleteExportedImageFromBackupStorage", tenant, json!({"backupStorageUuid": i.bs, "imageUuid": i.image}) => PermissionDenied;
    });
    m
}
