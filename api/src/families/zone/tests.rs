//! Zone unit tests.

use super::model::apply;
use super::*;
use crate::resource;
use crate::resource::generic::EnableEvent;
use crate::resource::generic::EnableState;
use crate::resource::generic::Rename;
use crate::testing::ctx;
use crate::testing::MemTxn;
use crate::wire::date::java_date;
use crate::ApiError;
use crate::Caller;

fn admin() -> Caller {
    Caller::admin()
}

fn create(t: &mut MemTxn, i: u32, default: bool) -> Result<ZoneResult, ApiError> {
    apply(
        t,
        &ctx(i as u64),
        &admin(),
        ZoneOp::Create {
            uuid: format!("{i:032x}"),
            name: format!("zone-{i}"),
            description: Some("Test".into()),
            is_default: default,
        },
    )
}

fn code(e: ApiError) -> String {
    e.code().to_string()
}

#[test]
fn lifecycle_and_inventory_shape() {
    let mut t = MemTxn::default();
    let ZoneResult::Inventory(z) = create(&mut t, 1, false).unwrap() else {
        panic!()
    };
    assert_eq!(
        serde_json::to_string(&resource::inventory(&z)).unwrap(),
        format!(
            r#"{{"uuid":"{}","name":"zone-1","description":"Test","state":"Enabled","type":"zstack","isDefault":false,"createDate":"{d}","lastOpDate":"{d}"}}"#,
            z.uuid,
            d = java_date(ctx(1).proposed_at_ms)
        )
    );
    let r = apply(
        &mut t,
        &ctx(2),
        &admin(),
        ZoneOp::ChangeState {
            uuid: z.uuid.clone(),
            event: EnableEvent::Disable,
        },
    )
    .unwrap();
    assert!(matches!(
        r,
        ZoneResult::Inventory(Zone {
            state: EnableState::Disabled,
            ..
        })
    ));
    let r = apply(
        &mut t,
        &ctx(3),
        &admin(),
        ZoneOp::Update {
            uuid: z.uuid.clone(),
            rename: Rename {
                name: Some("renamed".into()),
                description: None,
            },
            is_default: None,
        },
    )
    .unwrap();
    assert!(matches!(r, ZoneResult::Inventory(Zone { ref name, .. }) if name == "renamed"));
    assert_eq!(
        apply(
            &mut t,
            &ctx(4),
            &admin(),
            ZoneOp::Delete {
                uuid: z.uuid.clone()
            }
        )
        .unwrap(),
        ZoneResult::Deleted
    );
    assert!(resource::load::<Zone>(&t, &z.uuid).unwrap().is_none());
    // Deleting again is still a success, as in ZStack.
    assert_eq!(
        apply(&mut t, &ctx(5), &admin(), ZoneOp::Delete { uuid: z.uuid }).unwrap(),
        ZoneResult::Deleted
    );
}

#[test]
fn only_one_default_zone() {
    let mut t = MemTxn::default();
    create(&mut t, 1, true).unwrap();
    create(&mut t, 2, true).unwrap();
    let defaults = resource::find::<Zone>(&t, "isDefault", "true").unwrap();
    assert_eq!(defaults.len(), 1);
    assert_eq!(defaults[0].1.uuid, format!("{:032x}", 2));
}

#[test]
fn refusals() {
    let mut t = MemTxn::default();
    create(&mut t, 1, false).unwrap();
    assert_eq!(
        code(create(&mut t, 1, false).unwrap_err()),
        "SYS.1007",
        "duplicate uuid"
    );
    let bad_name = apply(
        &mut t,
        &ctx(2),
        &admin(),
        ZoneOp::Create {
            uuid: format!("{:032x}", 9),
            name: "".into(),
            description: None,
            is_default: false,
        },
    );
    assert_eq!(code(bad_name.unwrap_err()), "SYS.1007");
    let bad_uuid = apply(
        &mut t,
        &ctx(2),
        &admin(),
        ZoneOp::Create {
            uuid: "xyz".into(),
            name: "n".into(),
            description: None,
            is_default: false,
        },
    );
    assert_eq!(code(bad_uuid.unwrap_err()), "SYS.1007");
    let missing = apply(
        &mut t,
        &ctx(3),
        &admin(),
        ZoneOp::ChangeState {
            uuid: format!("{:032x}", 5),
            event: EnableEvent::Enable,
        },
    );
    assert_eq!(code(missing.unwrap_err()), "SYS.1003");
    let normal = Caller {
        account_uuid: "a".repeat(32),
        user_uuid: "a".repeat(32),
        admin: false,
    };
    let denied = apply(
        &mut t,
        &ctx(4),
        &normal,
        ZoneOp::Delete {
            uuid: format!("{:032x}", 1),
        },
    );
    assert_eq!(code(denied.unwrap_err()), "ID.1002");
    assert!(resource::load::<Zone>(&t, &format!("{:032x}", 1))
        .unwrap()
        .is_some());
}
