//! Tag unit tests (on zones, created and queried through the zone calls).

use serde_json::json;
use serde_json::Value;

use super::model::apply;
use super::*;
use crate::resource::tags;
use crate::testing::ctx;
use crate::testing::harness::send;
use crate::testing::harness::Who;
use crate::testing::MemTxn;
use crate::wire::date::java_date;

fn zone(t: &mut MemTxn) -> String {
    crate::testing::make_zone(t, 1)
}

/// Inventories of the zones `QueryZone` answers the admin for these conditions.
fn zones(t: &mut MemTxn, conds: Value) -> Vec<Value> {
    let mut r = send(
        t,
        9,
        &Who::As(Caller::admin()),
        "QueryZone",
        json!({ "conditions": conds }),
    )
    .unwrap_or_else(|e| panic!("QueryZone: {e}"));
    match r.remove("inventories") {
        Some(Value::Array(v)) => v,
        other => panic!("no inventories in {other:?}"),
    }
}

fn create(
    t: &mut MemTxn,
    i: u32,
    system: bool,
    rt: &str,
    ru: &str,
    tag: &str,
) -> Result<TagResult, ApiError> {
    apply(
        t,
        &ctx(2),
        &Caller::admin(),
        TagOp::Create {
            uuid: format!("{:032x}", 100 + i),
            system,
            resource_type: rt.into(),
            resource_uuid: ru.into(),
            tag: tag.into(),
        },
    )
}

#[test]
fn create_query_delete_and_tag_conditions() {
    let mut t = MemTxn::default();
    let z = zone(&mut t);
    let TagResult::System(s) = create(&mut t, 1, true, "ZoneVO", &z, "ha::NeverStop").unwrap()
    else {
        panic!()
    };
    assert_eq!(
        serde_json::to_string(&resource::inventory(&s)).unwrap(),
        format!(
            r#"{{"inherent":false,"uuid":"{}","resourceUuid":"{z}","resourceType":"ZoneVO","tag":"ha::NeverStop","type":"System","createDate":"{d}","lastOpDate":"{d}"}}"#,
            s.0.uuid,
            d = java_date(2000)
        )
    );
    let TagResult::User(u) = create(&mut t, 2, false, "ZoneVO", &z, "web").unwrap() else {
        panic!()
    };
    assert_eq!(resource::inventory(&u)["type"], "User");
    let count = |t: &mut MemTxn, c: Value| zones(t, c).len();
    // What `resource::tags` reads for other kinds (query conditions, joined inventories).
    assert_eq!(tags::texts(&t, &z, true).unwrap(), vec!["ha::NeverStop"]);
    assert_eq!(tags::texts(&t, &z, false).unwrap(), vec!["web"]);
    assert_eq!(
        tags::inventories(&t, &z, true).unwrap(),
        vec![resource::inventory(&s)]
    );
    assert_eq!(
        tags::inventories(&t, &z, false).unwrap(),
        vec![resource::inventory(&u)]
    );
    assert!(tags::inventories(&t, &"e".repeat(32), true)
        .unwrap()
        .is_empty());
    // The tag pseudo-fields in conditions, each with the zones it finds.
    for (conds, want) in [
        (
            json!([{"name":"__systemTag__","op":"=","value":"ha::NeverStop"}]),
            1,
        ),
        (
            json!([{"name":"__systemTag__","op":"like","value":"ha::%"}]),
            1,
        ),
        (
            json!([{"name":"__systemTag__","op":"!=","value":"ha::NeverStop"}]),
            0,
        ),
        (json!([{"name":"__userTag__","op":"=","value":"web"}]), 1),
        (json!([{"name":"__userTag__","op":"is null"}]), 0),
        (
            json!([{"name":"__userTag__","op":"not in","value":"db,x"}]),
            1,
        ),
    ] {
        assert_eq!(count(&mut t, conds.clone()), want, "{conds}");
    }
    // Hidden tag keys never reach the inventories.
    let out = zones(&mut t, json!([{"name":"__systemTag__","op":"is not null"}]));
    assert!(out[0].get("__systemTag__").is_none());
    assert_eq!(
        apply(
            &mut t,
            &ctx(3),
            &Caller::admin(),
            TagOp::Delete {
                uuid: s.0.uuid.clone()
            }
        )
        .unwrap(),
        TagResult::Deleted
    );
    assert_eq!(
        count(
            &mut t,
            json!([{"name":"__systemTag__","op":"=","value":"ha::NeverStop"}])
        ),
        0
    );
    // Deleting the resource deletes its tags.
    crate::testing::delete_zone(&mut t, 4, &z);
    assert!(resource::list::<UserTag>(&t).unwrap().is_empty());
}

#[test]
fn refusals_leave_state_unchanged() {
    let mut t = MemTxn::default();
    let z = zone(&mut t);
    create(&mut t, 1, true, "ZoneVO", &z, "a").unwrap();
    let before = t.tables.clone();
    let code = |r: Result<TagResult, ApiError>| r.unwrap_err().code();
    assert_eq!(code(create(&mut t, 2, true, "NopeVO", &z, "a")), "SYS.1007");
    assert_eq!(
        code(create(&mut t, 2, true, "ZoneVO", &"e".repeat(32), "a")),
        "SYS.1003"
    );
    assert_eq!(code(create(&mut t, 2, true, "ZoneVO", &z, "")), "SYS.1007");
    assert_eq!(
        code(create(&mut t, 2, true, "ZoneVO", &z, "a")),
        "SYS.1007",
        "duplicate"
    );
    assert_eq!(
        code(create(&mut t, 1, false, "ZoneVO", &z, "b")),
        "SYS.1007",
        "dup uuid"
    );
    let normal = Caller {
        account_uuid: "a".repeat(32),
        user_uuid: "a".repeat(32),
        admin: false,
    };
    let r = apply(
        &mut t,
        &ctx(3),
        &normal,
        TagOp::Create {
            uuid: "c".repeat(32),
            system: false,
            resource_type: "ZoneVO".into(),
            resource_uuid: z.clone(),
            tag: "mine".into(),
        },
    );
    assert_eq!(code(r), "ID.1002");
    let r = apply(
        &mut t,
        &ctx(3),
        &normal,
        TagOp::Delete {
            uuid: format!("{:032x}", 101),
        },
    );
    assert_eq!(code(r), "ID.1002");
    assert_eq!(t.tables, before);
}
