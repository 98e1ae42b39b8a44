//! Image unit tests.

use serde_json::json;

use super::model::apply;
use super::*;
use crate::resource;
use crate::resource::generic::EnableEvent;
use crate::resource::generic::EnableState;
use crate::resource::generic::Rename;
use crate::testing::ctx;
use crate::testing::make_bs;
use crate::testing::normal;
use crate::testing::u;
use crate::testing::MemTxn;
use crate::wire::date::java_date;
use crate::IntoCommand;

fn run(t: &mut MemTxn, op: ImageOp) -> Result<ImageResult, ApiError> {
    apply(t, &ctx(10), &Caller::admin(), op)
}

fn add_op(n: u32, url: &str, bss: &[String]) -> ImageOp {
    ImageOp::Add {
        uuid: u(n),
        name: format!("img-{n}"),
        description: None,
        url: url.into(),
        media_type: None,
        guest_os_type: None,
        format: None,
        platform: None,
        architecture: None,
        system: false,
        virtio: None,
        backup_storage_uuids: bss.to_vec(),
    }
}

fn ready(t: &mut MemTxn, img: &str, bs: &str) -> Result<ImageResult, ApiError> {
    run(
        t,
        ImageOp::MarkReady {
            uuid: img.into(),
            backup_storage_uuid: bs.into(),
            install_path: format!("/zstack_bs/{img}.qcow2"),
            size: 1 << 30,
            actual_size: 300 << 20,
            md5_sum: "d41d8cd98f00b204e9800998ecf8427e".into(),
        },
    )
}

fn set_policy(t: &mut MemTxn, p: &str) {
    crate::testing::set_global_config(t, "image", "deletionPolicy", p);
}

fn code(r: Result<ImageResult, ApiError>) -> &'static str {
    r.unwrap_err().code()
}

fn load(t: &MemTxn, n: u32) -> Option<Image> {
    resource::load::<Image>(t, &u(n)).unwrap().map(|(_, i)| i)
}

#[test]
fn add_download_update_state_and_shape() {
    let mut t = MemTxn::default();
    let bs = make_bs(&mut t, 30);
    let r = run(
        &mut t,
        add_op(50, "http://host/t.qcow2", std::slice::from_ref(&bs)),
    )
    .unwrap();
    assert_eq!(
        serde_json::to_string(&r.inventory().unwrap()).unwrap(),
        format!(
            r#"{{"uuid":"{img}","name":"img-50","state":"Enabled","status":"Downloading","size":0,"actualSize":0,"url":"http://host/t.qcow2","mediaType":"RootVolumeTemplate","type":"zstack","platform":"Linux","architecture":"x86_64","format":"qcow2","system":false,"virtio":true,"createDate":"{d}","lastOpDate":"{d}","backupStorageRefs":[{{"imageUuid":"{img}","backupStorageUuid":"{bs}","status":"Downloading","createDate":"{d}","lastOpDate":"{d}"}}]}}"#,
            img = u(50),
            d = java_date(10_000)
        )
    );
    let ImageResult::Inventory(img) = ready(&mut t, &u(50), &bs).unwrap() else {
        panic!()
    };
    assert_eq!((img.status, img.size), (ImageStatus::Ready, 1 << 30));
    let full = resource::full_inventory(&t, img.as_ref()).unwrap();
    assert_eq!(full["systemTags"], json!([]));
    assert_eq!(
        code(ready(&mut t, &u(50), &bs)),
        "SYS.1006",
        "not downloading"
    );
    let ImageResult::Inventory(img) = run(
        &mut t,
        ImageOp::Update {
            uuid: u(50),
            rename: Rename {
                name: Some("centos".into()),
                description: None,
            },
            guest_os_type: Some("CentOS 7".into()),
            media_type: None,
            format: None,
            system: None,
            platform: Some("Windows".into()),
            architecture: None,
            virtio: Some(false),
        },
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!((img.platform.as_str(), img.virtio), ("Windows", false));
    let ImageResult::Inventory(img) = run(
        &mut t,
        ImageOp::ChangeState {
            uuid: u(50),
            event: EnableEvent::Disable,
        },
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(img.state, EnableState::Disabled);
    // An ISO gets format iso by default.
    let mut iso = add_op(51, "file:///data/cd.iso", std::slice::from_ref(&bs));
    if let ImageOp::Add { media_type, .. } = &mut iso {
        *media_type = Some("ISO".into());
    }
    let ImageResult::Inventory(i) = run(&mut t, iso).unwrap() else {
        panic!()
    };
    assert_eq!(i.format, "iso");
    // A failed download of the only copy removes the image.
    run(
        &mut t,
        ImageOp::MarkFailed {
            uuid: u(51),
            backup_storage_uuid: bs,
        },
    )
    .unwrap();
    assert!(load(&t, 51).is_none());
}

#[test]
fn delete_policies_recover_expunge() {
    let mut t = MemTxn::default();
    let bs = make_bs(&mut t, 30);
    let bs2 = make_bs(&mut t, 31);
    let both = [bs.clone(), bs2.clone()];
    // Delay (the default): deleted, recoverable, expungeable.
    run(&mut t, add_op(50, "http://h/a.qcow2", &both)).unwrap();
    ready(&mut t, &u(50), &bs).unwrap();
    run(
        &mut t,
        ImageOp::Delete {
            uuid: u(50),
            backup_storage_uuids: vec![],
        },
    )
    .unwrap();
    let img = load(&t, 50).unwrap();
    assert_eq!(img.status, ImageStatus::Deleted);
    assert_eq!(img.deleted_at, Some(10_000));
    let ImageResult::Inventory(img) = run(
        &mut t,
        ImageOp::Recover {
            uuid: u(50),
            backup_storage_uuids: vec![],
        },
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(img.status, ImageStatus::Ready);
    assert_eq!(img.backup_storage_refs[0].status, ImageStatus::Ready);
    assert_eq!(img.backup_storage_refs[1].status, ImageStatus::Downloading);
    // Partial delete: only one copy.
    run(
        &mut t,
        ImageOp::Delete {
            uuid: u(50),
            backup_storage_uuids: vec![bs2.clone()],
        },
    )
    .unwrap();
    let img = load(&t, 50).unwrap();
    assert_eq!(img.status, ImageStatus::Ready);
    run(
        &mut t,
        ImageOp::Expunge {
            uuid: u(50),
            backup_storage_uuids: vec![bs2.clone()],
        },
    )
    .unwrap();
    assert_eq!(load(&t, 50).unwrap().backup_storage_refs.len(), 1);
    run(
        &mut t,
        ImageOp::Delete {
            uuid: u(50),
            backup_storage_uuids: vec![],
        },
    )
    .unwrap();
    run(
        &mut t,
        ImageOp::Expunge {
            uuid: u(50),
            backup_storage_uuids: vec![],
        },
    )
    .unwrap();
    assert!(load(&t, 50).is_none());
    // Direct: gone at once.
    set_policy(&mut t, "Direct");
    run(&mut t, add_op(52, "http://h/b.qcow2", &both)).unwrap();
    run(
        &mut t,
        ImageOp::Delete {
            uuid: u(52),
            backup_storage_uuids: vec![],
        },
    )
    .unwrap();
    assert!(load(&t, 52).is_none());
    // Deleting a BS drops the copies; an image left with none is removed.
    run(&mut t, add_op(53, "http://h/c.qcow2", &both)).unwrap();
    run(
        &mut t,
        add_op(54, "http://h/d.qcow2", std::slice::from_ref(&bs)),
    )
    .unwrap();
    crate::testing::delete_bs(&mut t, 11, &bs);
    assert!(load(&t, 54).is_none());
    assert_eq!(load(&t, 53).unwrap().backup_storage_refs.len(), 1);
}

#[test]
fn refusals_leave_state_unchanged() {
    let mut t = MemTxn::default();
    let bs = make_bs(&mut t, 30);
    let one = std::slice::from_ref(&bs);
    run(&mut t, add_op(50, "http://h/a.qcow2", one)).unwrap();
    let before = t.tables.clone();
    for url in ["ftp://h/a", "h/a.qcow2", "file://relative", "http://"] {
        assert_eq!(code(run(&mut t, add_op(55, url, one))), "SYS.1007", "{url}");
    }
    // `add_op(55, ..)` with one field changed.
    let with = |change: fn(&mut ImageOp)| {
        let mut op = add_op(55, "http://h/a", one);
        change(&mut op);
        op
    };
    for (op, want, why) in [
        (
            add_op(55, "http://h/a", &[]),
            "SYS.1007",
            "no backup storage",
        ),
        (
            add_op(55, "http://h/a", &[u(99)]),
            "SYS.1003",
            "no such backup storage",
        ),
        (add_op(50, "http://h/a", one), "SYS.1007", "dup"),
        (
            with(|op| {
                if let ImageOp::Add {
                    format, media_type, ..
                } = op
                {
                    *format = Some("iso".into());
                    *media_type = Some("RootVolumeTemplate".into());
                }
            }),
            "SYS.1007",
            "iso template",
        ),
        (
            with(|op| {
                if let ImageOp::Add { format, .. } = op {
                    *format = Some("vmdk".into());
                }
            }),
            "SYS.1007",
            "format",
        ),
        (
            with(|op| {
                if let ImageOp::Add { platform, .. } = op {
                    *platform = Some("BeOS".into());
                }
            }),
            "SYS.1007",
            "platform",
        ),
        (
            ImageOp::Expunge {
                uuid: u(50),
                backup_storage_uuids: vec![],
            },
            "SYS.1006",
            "expunge a live image",
        ),
        (
            ImageOp::Recover {
                uuid: u(50),
                backup_storage_uuids: vec![],
            },
            "SYS.1006",
            "recover a live image",
        ),
        (
            ImageOp::Delete {
                uuid: u(50),
                backup_storage_uuids: vec![u(99)],
            },
            "SYS.1007",
            "not on that backup storage",
        ),
        (
            ImageOp::ChangeState {
                uuid: u(99),
                event: EnableEvent::Enable,
            },
            "SYS.1003",
            "no image",
        ),
    ] {
        assert_eq!(code(run(&mut t, op)), want, "{why}");
    }
    let normal = normal();
    for op in [
        ImageOp::Delete {
            uuid: u(50),
            backup_storage_uuids: vec![],
        },
        ImageOp::ChangeState {
            uuid: u(50),
            event: EnableEvent::Disable,
        },
        ImageOp::Update {
            uuid: u(50),
            rename: Rename {
                name: Some("mine".into()),
                description: None,
            },
            guest_os_type: None,
            media_type: None,
            format: None,
            system: None,
            platform: None,
            architecture: None,
            virtio: None,
        },
        ImageOp::MarkFailed {
            uuid: u(50),
            backup_storage_uuid: bs.clone(),
        },
    ] {
        assert_eq!(code(apply(&mut t, &ctx(11), &normal, op)), "ID.1002");
    }
    // A disabled BS takes no new image.
    crate::testing::change_bs_state(&mut t, 11, &bs, EnableEvent::Disable);
    let before2 = t.tables.clone();
    assert_eq!(code(run(&mut t, add_op(56, "http://h/x", one))), "SYS.1006");
    assert_eq!(t.tables, before2);
    assert_ne!(t.tables, before);
    // A normal account may add its own image.
    crate::testing::change_bs_state(&mut t, 12, &bs, EnableEvent::Enable);
    apply(&mut t, &ctx(13), &normal, add_op(57, "http://h/y", one)).unwrap();
    assert_eq!(
        resource::load::<Image>(&t, &u(57)).unwrap().unwrap().0,
        normal.account_uuid
    );
}

fn export_op(img: &str, bs: &str, format: Option<&str>) -> ImageOp {
    ImageOp::Export {
        uuid: img.into(),
        backup_storage_uuid: bs.into(),
        format: format.map(str::to_string),
    }
}

fn mark_exported(
    t: &mut MemTxn,
    img: &str,
    bs: &str,
    url: Option<&str>,
) -> Result<ImageResult, ApiError> {
    run(
        t,
        ImageOp::MarkExported {
            uuid: img.into(),
            backup_storage_uuid: bs.into(),
            url: url.map(str::to_string),
            md5: url.map(|_| "d41d8cd98f00b204e9800998ecf8427e".to_string()),
        },
    )
}

#[test]
fn exports_need_a_ready_copy_on_that_store_and_write_nothing_until_recorded() {
    let mut t = MemTxn::default();
    let bs = make_bs(&mut t, 30);
    let other = make_bs(&mut t, 31);
    run(
        &mut t,
        add_op(50, "http://host/t.qcow2", std::slice::from_ref(&bs)),
    )
    .unwrap();
    let img = u(50);
    let before = t.tables.clone();
    // Still downloading.
    assert_eq!(code(run(&mut t, export_op(&img, &bs, None))), "SYS.1006");
    ready(&mut t, &img, &bs).unwrap();
    let before_checks = t.tables.clone();
    assert_ne!(before, before_checks);
    assert_eq!(code(run(&mut t, export_op(&img, &other, None))), "SYS.1007");
    assert_eq!(code(run(&mut t, export_op(&img, &u(99), None))), "SYS.1003");
    assert_eq!(code(run(&mut t, export_op(&u(98), &bs, None))), "SYS.1003");
    assert_eq!(
        code(run(&mut t, export_op(&img, &bs, Some("vmdk")))),
        "SYS.1007"
    );
    // Another account's image.
    assert_eq!(
        apply(&mut t, &ctx(11), &normal(), export_op(&img, &bs, None))
            .unwrap_err()
            .code(),
        "ID.1002"
    );
    // The check itself writes nothing.
    assert!(run(&mut t, export_op(&img, &bs, Some("raw"))).is_ok());
    assert_eq!(t.tables, before_checks);

    // The store's answer is recorded on the copy, then forgotten again.
    mark_exported(
        &mut t,
        &img,
        &bs,
        Some("http://10.0.0.30:7273/exports/x/t.qcow2"),
    )
    .unwrap();
    let r = &load(&t, 50).unwrap().backup_storage_refs[0];
    assert_eq!(
        r.export_url.as_deref(),
        Some("http://10.0.0.30:7273/exports/x/t.qcow2")
    );
    assert!(r.export_md5_sum.is_some());
    let inv = resource::inventory(&load(&t, 50).unwrap());
    let keys: Vec<&str> = crate::testing::keys(&inv["backupStorageRefs"][0]);
    assert_eq!(
        keys,
        [
            "imageUuid",
            "backupStorageUuid",
            "installPath",
            "status",
            "exportMd5Sum",
            "exportUrl",
            "createDate",
            "lastOpDate"
        ]
    );
    mark_exported(&mut t, &img, &bs, None).unwrap();
    assert_eq!(
        load(&t, 50).unwrap().backup_storage_refs[0].export_url,
        None
    );
    // Forgetting the export of an image that is gone is nothing to do; recording one is not.
    assert!(matches!(
        mark_exported(&mut t, &u(97), &bs, None),
        Ok(ImageResult::Deleted)
    ));
    assert_eq!(
        code(mark_exported(&mut t, &u(97), &bs, Some("http://x/y"))),
        "SYS.1003"
    );
    // Only the leader's flow records exports.
    assert_eq!(
        apply(
            &mut t,
            &ctx(12),
            &normal(),
            ImageOp::MarkExported {
                uuid: img.clone(),
                backup_storage_uuid: bs.clone(),
                url: Some("http://x/y".into()),
                md5: None,
            },
        )
        .unwrap_err()
        .code(),
        "ID.1002"
    );
}

#[test]
fn iso_images_are_exported_as_they_are() {
    let mut t = MemTxn::default();
    let bs = make_bs(&mut t, 30);
    let mut op = add_op(50, "http://host/t.iso", std::slice::from_ref(&bs));
    if let ImageOp::Add { media_type, .. } = &mut op {
        *media_type = Some("ISO".into());
    }
    run(&mut t, op).unwrap();
    ready(&mut t, &u(50), &bs).unwrap();
    assert!(run(&mut t, export_op(&u(50), &bs, None)).is_ok());
    assert_eq!(
        code(run(&mut t, export_op(&u(50), &bs, Some("raw")))),
        "SYS.1007"
    );
}

#[test]
fn deleting_an_exported_image_revokes_its_exports() {
    // Delay keeps the copy (recoverable) but no longer serves it; Direct removes the files.
    let mut w = crate::testing::matrix::Harness::new();
    let bs = w.image_store();
    let img = w.ttylinux(&bs);
    w.admin(
        "ExportImageFromBackupStorage",
        json!({"backupStorageUuid": bs, "imageUuid": img}),
    );
    let mut vars = crate::flow::command_vars(
        &ImageOp::Delete {
            uuid: img.clone(),
            backup_storage_uuids: Vec::new(),
        }
        .command(Caller::admin()),
    )
    .unwrap();
    let step = &flows::REMOVE_FLOW.steps[0];
    let crate::flow::Action::Commit(f) = step.action else {
        panic!("the first step commits")
    };
    f(&mut w.t, &ctx(40), &Caller::admin(), &mut vars).unwrap();
    let crate::flow::Action::Effect(e) = flows::REMOVE_FLOW.steps[1].action else {
        panic!("the second step is the stores'")
    };
    let req: serde_json::Value = serde_json::from_str(&e(&vars).unwrap().payload).unwrap();
    assert_eq!(req["stores"], json!([]), "Delay keeps the files");
    assert_eq!(req["unexport"], json!([{"backupStorageUuid": bs}]));
    let copy = &w.one("QueryImage", "uuid", &img)["backupStorageRefs"][0];
    assert!(copy.get("exportUrl").is_none(), "{copy}");
}
