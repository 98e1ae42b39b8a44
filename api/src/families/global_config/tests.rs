//! Global-config unit tests.

use super::model::apply;
use super::*;
use crate::settings::int_value;
use crate::settings::value;
use crate::settings::TABLE;
use crate::testing::MemTxn;

fn update(t: &mut MemTxn, c: &str, n: &str, v: &str) -> Result<GlobalConfigResult, ApiError> {
    apply(
        t,
        &Caller::admin(),
        GlobalConfigOp::Update {
            category: c.into(),
            name: n.into(),
            value: v.into(),
        },
    )
}

#[test]
fn update_takes_effect_and_reset_restores() {
    let mut t = MemTxn::default();
    let r = update(&mut t, "identity", "session.timeout", "600").unwrap();
    let GlobalConfigResult::Inventory(inv) = r else {
        panic!()
    };
    assert_eq!(inv["value"], "600");
    assert_eq!(inv["defaultValue"], "7200");
    assert_eq!(int_value(&t, "identity", "session.timeout").unwrap(), 600);
    update(&mut t, "mevoco", "overProvisioning.memory", "2.55").unwrap();
    update(&mut t, "kvm", "reservedMemory", "512M").unwrap();
    apply(&mut t, &Caller::admin(), GlobalConfigOp::ResetAll).unwrap();
    assert_eq!(value(&t, "identity", "session.timeout").unwrap(), "7200");
    assert!(t.tables.get(TABLE).is_none_or(|m| m.is_empty()));
}

#[test]
fn refusals() {
    let mut t = MemTxn::default();
    let code = |r: Result<GlobalConfigResult, ApiError>| r.unwrap_err().code().to_string();
    let e = update(&mut t, "nope", "x", "1").unwrap_err();
    assert!(e
        .to_string()
        .contains("Unable to find GlobalConfig[category: nope, name: x]"));
    for (c, n, v) in [
        ("identity", "session.timeout", "0"),
        ("identity", "session.timeout", "31536000"),
        ("identity", "session.timeout", "abc"),
        ("ha", "enable", "yes"),
        ("mevoco", "overProvisioning.memory", "0.5"),
        ("mevoco", "overProvisioning.memory", "1.234"),
        ("mevoco", "threshold.primaryStorage.physicalCapacity", "0"),
        (
            "mevoco",
            "threshold.primaryStorage.physicalCapacity",
            "1.00001",
        ),
        ("kvm", "vm.cacheMode", "unsafe"),
        ("kvm", "reservedMemory", "lots"),
        ("virtualRouter", "vrouter.password", "#bad"),
        ("virtualRouter", "vrouter.password", "has space"),
    ] {
        assert_eq!(code(update(&mut t, c, n, v)), "SYS.1007", "{c}/{n}={v}");
    }
    let normal = Caller {
        account_uuid: "a".repeat(32),
        user_uuid: "a".repeat(32),
        admin: false,
    };
    let denied = apply(&mut t, &normal, GlobalConfigOp::ResetAll).unwrap_err();
    assert_eq!(denied.code(), "ID.1002");
    assert!(t.tables.get(TABLE).is_none_or(|m| m.is_empty()));
}
