//! Identity unit tests.

use super::model::apply;
use super::*;
use crate::testing::ctx;
use crate::testing::MemTxn;
use crate::ADMIN_ACCOUNT_UUID;

fn phc(secret: &str) -> String {
    hash_password(secret, b"0123456789abcdef").unwrap()
}

fn run(
    t: &mut MemTxn,
    at: u64,
    caller: &Caller,
    op: IdentityOp,
) -> Result<IdentityResult, ApiError> {
    apply(t, &ctx(at), caller, op)
}

fn boot() -> MemTxn {
    let mut t = MemTxn::default();
    run(
        &mut t,
        1,
        &Caller::admin(),
        IdentityOp::EnsureAdmin {
            password: phc(DEFAULT_ADMIN_PASSWORD_SHA512),
        },
    )
    .unwrap();
    t
}

fn normal(uuid: &str) -> Caller {
    Caller {
        account_uuid: uuid.into(),
        user_uuid: uuid.into(),
        admin: false,
    }
}

#[test]
fn admin_bootstrap_login_and_reset() {
    let mut t = boot();
    assert_eq!(
        authenticate_account(&t, "admin", DEFAULT_ADMIN_PASSWORD_SHA512).unwrap(),
        ADMIN_ACCOUNT_UUID
    );
    assert_eq!(
        authenticate_account(&t, "admin", "wrong")
            .unwrap_err()
            .code(),
        "ID.1000"
    );
    assert_eq!(
        authenticate_account(&t, "nobody", "x").unwrap_err().code(),
        "ID.1000"
    );
    // Bootstrapping again changes nothing.
    assert_eq!(
        run(
            &mut t,
            2,
            &Caller::admin(),
            IdentityOp::EnsureAdmin {
                password: phc("other")
            }
        )
        .unwrap(),
        IdentityResult::Done
    );
    assert!(authenticate_account(&t, "admin", DEFAULT_ADMIN_PASSWORD_SHA512).is_ok());
    run(
        &mut t,
        3,
        &Caller::admin(),
        IdentityOp::ResetAdminPassword {
            password: phc("new"),
        },
    )
    .unwrap();
    assert!(authenticate_account(&t, "admin", "new").is_ok());
    // The stored form is never the client's hash.
    let (_, a) = resource::require::<Account>(&t, ADMIN_ACCOUNT_UUID).unwrap();
    assert!(a.password.starts_with("$argon2id$") && !a.password.contains("new"));
    assert!(resource::inventory(&a).get("password").is_none());
}

#[test]
fn accounts_users_and_cascading_delete() {
    let mut t = boot();
    let acct = "a".repeat(32);
    let create = IdentityOp::CreateAccount {
        uuid: acct.clone(),
        name: "tenant".into(),
        password: phc("pw"),
        description: None,
    };
    run(&mut t, 2, &Caller::admin(), create.clone()).unwrap();
    assert_eq!(
        run(&mut t, 3, &Caller::admin(), create).unwrap_err().code(),
        "SYS.1007",
        "duplicate uuid"
    );
    let dup_name = IdentityOp::CreateAccount {
        uuid: "b".repeat(32),
        name: "tenant".into(),
        password: phc("pw"),
        description: None,
    };
    assert_eq!(
        run(&mut t, 3, &Caller::admin(), dup_name)
            .unwrap_err()
            .code(),
        "SYS.1007",
        "duplicate name"
    );
    let by_normal = IdentityOp::CreateAccount {
        uuid: "c".repeat(32),
        name: "x".into(),
        password: phc("pw"),
        description: None,
    };
    assert_eq!(
        run(&mut t, 3, &normal(&acct), by_normal)
            .unwrap_err()
            .code(),
        "ID.1002"
    );

    let user = "d".repeat(32);
    run(
        &mut t,
        4,
        &normal(&acct),
        IdentityOp::CreateUser {
            uuid: user.clone(),
            name: "bob".into(),
            password: phc("bobpw"),
            description: None,
        },
    )
    .unwrap();
    let again = IdentityOp::CreateUser {
        uuid: "e".repeat(32),
        name: "bob".into(),
        password: phc("x"),
        description: None,
    };
    assert_eq!(
        run(&mut t, 5, &normal(&acct), again).unwrap_err().code(),
        "SYS.1007"
    );
    assert_eq!(
        authenticate_user(&t, None, Some("tenant"), "bob", "bobpw").unwrap(),
        (acct.clone(), user.clone())
    );
    assert_eq!(
        authenticate_user(&t, Some(&acct), None, "bob", "nope")
            .unwrap_err()
            .code(),
        "ID.1000"
    );
    let other = normal(&"f".repeat(32));
    let steal = IdentityOp::UpdateUser {
        uuid: user.clone(),
        name: None,
        password: Some(phc("mine")),
        description: None,
    };
    assert_eq!(run(&mut t, 6, &other, steal).unwrap_err().code(), "ID.1002");

    let s = IdentityOp::CreateSession {
        uuid: "9".repeat(32),
        account_uuid: acct.clone(),
        user_uuid: user.clone(),
        user_type: "UserVO".into(),
    };
    run(&mut t, 7, &Caller::admin(), s).unwrap();
    assert_eq!(
        run(
            &mut t,
            8,
            &Caller::admin(),
            IdentityOp::DeleteAccount {
                uuid: ADMIN_ACCOUNT_UUID.into()
            }
        )
        .unwrap_err()
        .code(),
        "SYS.1006"
    );
    run(
        &mut t,
        8,
        &Caller::admin(),
        IdentityOp::DeleteAccount { uuid: acct.clone() },
    )
    .unwrap();
    assert!(resource::load::<Account>(&t, &acct).unwrap().is_none());
    assert!(resource::load::<User>(&t, &user).unwrap().is_none());
    assert!(resource::list::<Session>(&t).unwrap().is_empty());
    assert!(resource::owned_by(&t, &acct).unwrap().is_empty());
}

#[test]
fn sessions_expire_renew_and_are_capped() {
    let mut t = boot();
    crate::testing::set_global_config(&mut t, "identity", "session.maxConcurrent", "2");
    let open = |t: &mut MemTxn, at: u64, n: char| {
        run(
            t,
            at,
            &Caller::admin(),
            IdentityOp::CreateSession {
                uuid: n.to_string().repeat(32),
                account_uuid: ADMIN_ACCOUNT_UUID.into(),
                user_uuid: ADMIN_ACCOUNT_UUID.into(),
                user_type: "AccountVO".into(),
            },
        )
    };
    open(&mut t, 10, '1').unwrap();
    open(&mut t, 11, '2').unwrap();
    assert_eq!(open(&mut t, 12, '3').unwrap_err().code(), "ID.1006");
    let now = ctx(12).proposed_at_ms;
    let (caller, s) = session_caller(&t, "m", Some(&"1".repeat(32)), now).unwrap();
    assert!(caller.admin);
    assert_eq!(s.expired_date, ctx(10).proposed_at_ms + 7_200_000);
    // Sliding renewal is due once less than half the timeout remains.
    assert!(!needs_renewal(&t, &s, s.expired_date - 3_600_001).unwrap());
    assert!(needs_renewal(&t, &s, s.expired_date - 3_599_999).unwrap());
    assert_eq!(
        session_caller(&t, "m", None, now).unwrap_err().to_string(),
        "ID.1001: session of message[m] is null"
    );
    assert_eq!(
        session_caller(&t, "m", Some(&"1".repeat(32)), s.expired_date)
            .unwrap_err()
            .code(),
        "ID.1001"
    );
    assert_eq!(
        session_caller(&t, "m", Some("nope"), now)
            .unwrap_err()
            .code(),
        "ID.1001"
    );
    // Renewal moves the expiry; a bad duration is refused.
    let r = run(
        &mut t,
        13,
        &Caller::admin(),
        IdentityOp::RenewSession {
            uuid: "1".repeat(32),
            duration_s: Some(600),
        },
    )
    .unwrap();
    assert!(
        matches!(r, IdentityResult::Session(ref s) if s.expired_date == ctx(13).proposed_at_ms + 600_000)
    );
    assert_eq!(
        run(
            &mut t,
            13,
            &Caller::admin(),
            IdentityOp::RenewSession {
                uuid: "1".repeat(32),
                duration_s: Some(5)
            }
        )
        .unwrap_err()
        .code(),
        "SYS.1007"
    );
    // Logout frees a slot; expiry sweeps the rest.
    run(
        &mut t,
        14,
        &Caller::admin(),
        IdentityOp::DeleteSession {
            uuid: "2".repeat(32),
        },
    )
    .unwrap();
    open(&mut t, 15, '3').unwrap();
    let far = IdentityOp::ExpireSessions;
    let mut late = ctx(16);
    late.proposed_at_ms += 10_000_000;
    assert_eq!(
        apply(&mut t, &late, &Caller::admin(), far).unwrap(),
        IdentityResult::Expired(2)
    );
}

/// A read on a node that still holds a session another node has just ended: the barrier brings
/// the logout, and the read is refused (the session is checked again after the barrier).
#[test]
fn a_read_after_a_logout_elsewhere_is_refused() {
    use crate::testing::harness::send_as_behind;
    use crate::testing::harness::Who;
    use crate::IntoCommand;
    let mut t = boot();
    let login = crate::testing::harness::send(
        &mut t,
        2,
        &Who::As(Caller::admin()),
        "LogInByAccount",
        serde_json::json!({"accountName": "admin", "password": DEFAULT_ADMIN_PASSWORD_SHA512}),
    )
    .unwrap();
    let session = login["inventory"]["uuid"].as_str().unwrap().to_string();
    let who = Who::Session(session.clone());
    let query = serde_json::json!({"conditions": []});
    assert!(send_as_behind(&mut t, 3, &who, "QueryZone", query.clone(), None).is_ok());
    let logout = IdentityOp::DeleteSession { uuid: session }.command(Caller::admin());
    let r = send_as_behind(&mut t, 4, &who, "QueryZone", query, Some(logout));
    assert_eq!(
        r.unwrap_err().code,
        crate::wire::errors::Code::InvalidSession
    );
}
