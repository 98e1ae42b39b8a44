//! Call-matrix cases of the identity calls (run by `testing::matrix`).

use serde_json::json;

use super::Session;
use crate::testing::matrix::bad_query;
use crate::testing::matrix::eq;
use crate::testing::matrix::first;
use crate::testing::matrix::inv;
use crate::testing::matrix::missing;
use crate::testing::matrix::ok;
use crate::testing::matrix::rows;
use crate::testing::matrix::Case;
use crate::testing::matrix::Ids;
use crate::testing::matrix::Parties;
use crate::testing::matrix::Who;
use crate::testing::matrix::ALICE_PW;
use crate::testing::matrix::TENANT_PW;
use crate::ADMIN_ACCOUNT_UUID;

/// The call-matrix cases of this family's calls.
pub(crate) fn cases(ids: &Ids) -> Vec<Case> {
    let Parties {
        admin,
        tenant,
        alice,
        stranger,
        nobody,
    } = Parties::of(ids);
    let i = ids.clone();
    let mut m = Vec::new();
    // ---- Sessions.
    {
        let tenant_uuid = i.tenant.clone();
        m.push(ok(
            "LogInByAccount",
            &nobody,
            json!({"accountName": "tenant", "password": TENANT_PW}),
            move |h, r| {
                assert_eq!(r["inventory"]["accountUuid"], tenant_uuid.as_str());
                assert_eq!(r["inventory"]["userType"], "AccountVO");
                assert!(h.valid(r["inventory"]["uuid"].as_str().unwrap()));
            },
        ));
    }
    m.extend(rows! {
        "LogInByAccount", nobody, json!({"accountName": "tenant", "password": "wrong"}) => AuthenticationError;
        "LogInByAccount", nobody, json!({"accountName": "tenant"}) => InvalidArgument;
    });
    {
        let alice_uuid = i.alice.clone();
        m.push(ok(
            "LogInByUser",
            &nobody,
            json!({"accountName": "tenant", "userName": "alice", "password": ALICE_PW}),
            move |h, r| {
                assert_eq!(r["inventory"]["userUuid"], alice_uuid.as_str());
                assert_eq!(r["inventory"]["userType"], "UserVO");
                assert!(h.valid(r["inventory"]["uuid"].as_str().unwrap()));
            },
        ));
    }
    m.extend(rows! {
        "LogInByUser", nobody, json!({"accountUuid": i.tenant, "userName": "alice", "password": TENANT_PW}) => AuthenticationError;
        "LogInByUser", nobody, json!({"userName": "alice", "password": ALICE_PW}) => InvalidArgument;
    });
    {
        let s = i.tenant_session.clone();
        m.push(ok(
            "LogOut",
            &nobody,
            json!({"sessionUuid": i.tenant_session}),
            move |h, _| assert!(!h.valid(&s)),
        ));
    }
    m.extend(rows! {
        "LogOut", nobody, json!({"sessionUuid": {"uuid": "x"}}) => InvalidArgument;
    });
    m.push(ok(
        "ValidateSession",
        &nobody,
        json!({"sessionUuid": i.alice_session}),
        |_, r| assert_eq!(r["validSession"], true),
    ));
    m.push(ok(
        "ValidateSession",
        &nobody,
        json!({"sessionUuid": missing()}),
        |_, r| assert_eq!(r["validSession"], false),
    ));
    m.extend(rows! {
        "ValidateSession", nobody, json!({}) => InvalidArgument;
    });
    {
        let s = i.tenant_session.clone();
        m.push(ok(
            "RenewSession",
            &tenant,
            json!({"sessionUuid": i.tenant_session, "duration": 600}),
            move |h, r| {
                assert_eq!(r["inventory"]["uuid"], s.as_str());
                let (_, sess) = crate::resource::require::<Session>(&h.t, &s).unwrap();
                assert_eq!(sess.expired_date, 1_000 * u64::from(h.n) + 600_000);
            },
        ));
    }
    m.extend(rows! {
        "RenewSession", tenant, json!({"sessionUuid": i.admin_session}) => PermissionDenied;
        "RenewSession", admin, json!({"sessionUuid": i.admin_session, "duration": 5}) => InvalidArgument;
        "RenewSession", nobody, json!({"sessionUuid": "0".repeat(32)}) => InvalidSession;
    });

    // ---- Accounts and users.
    m.push(ok(
        "CreateAccount",
        &admin,
        json!({"name": "acct2", "password": "pw2"}),
        |h, r| {
            assert_eq!(r["inventory"]["name"], "acct2");
            assert_eq!(r["inventory"]["type"], "Normal");
            h.ok(
                &Who::Session("0".repeat(32)),
                "LogInByAccount",
                json!({"accountName": "acct2", "password": "pw2"}),
            );
        },
    ));
    m.extend(rows! {
        "CreateAccount", tenant, json!({"name": "acct2", "password": "pw2"}) => PermissionDenied;
        "CreateAccount", admin, json!({"name": "tenant", "password": "pw2"}) => InvalidArgument;
    });
    m.push(ok(
        "UpdateAccount",
        &tenant,
        json!({"uuid": i.tenant, "description": "mine", "password": "new-pw"}),
        |h, r| {
            assert_eq!(r["inventory"]["description"], "mine");
            h.ok(
                &Who::Session("0".repeat(32)),
                "LogInByAccount",
                json!({"accountName": "tenant", "password": "new-pw"}),
            );
        },
    ));
    m.extend(rows! {
        "UpdateAccount", tenant, json!({"uuid": ADMIN_ACCOUNT_UUID, "description": "mine"}) => PermissionDenied;
        "UpdateAccount", admin, json!({"uuid": missing(), "description": "x"}) => ResourceNotFound;
    });
    {
        let (t, s) = (i.tenant.clone(), i.alice_session.clone());
        m.push(ok(
            "DeleteAccount",
            &admin,
            json!({"uuid": i.tenant}),
            move |h, _| {
                assert_eq!(h.count("QueryAccount", eq("uuid", &t)), 0);
                assert_eq!(h.count("QueryUser", eq("accountUuid", &t)), 0);
                assert!(!h.valid(&s), "the account's sessions go with it");
            },
        ));
    }
    m.extend(rows! {
        "DeleteAccount", admin, json!({"uuid": ADMIN_ACCOUNT_UUID}) => OperationFailure;
        "DeleteAccount", tenant, json!({"uuid": i.tenant}) => PermissionDenied;
    });
    {
        let t = i.tenant.clone();
        m.push(ok(
            "QueryAccount",
            &tenant,
            json!({"conditions": []}),
            move |_, r| {
                let inv = r["inventories"].as_array().unwrap();
                assert_eq!(inv.len(), 1, "a normal account sees itself only");
                assert_eq!(inv[0]["uuid"], t.as_str());
            },
        ));
    }
    m.extend(rows! {
        "QueryAccount", admin, bad_query() => InvalidArgument;
    });
    {
        let t = i.tenant.clone();
        m.push(ok(
            "CreateUser",
            &tenant,
            json!({"name": "bob", "password": "bob-pw"}),
            move |h, r| {
                assert_eq!(r["inventory"]["accountUuid"], t.as_str());
                h.ok(
                    &Who::Session("0".repeat(32)),
                    "LogInByUser",
                    json!({"accountUuid": t, "userName": "bob", "password": "bob-pw"}),
                );
            },
        ));
    }
    m.extend(rows! {
        "CreateUser", tenant, json!({"name": "alice", "password": "again"}) => InvalidArgument;
        "UpdateUser", alice, json!({"uuid": i.alice, "description": "me"}) => ok(inv("description", "me"));
        "UpdateUser", admin, json!({"uuid": missing(), "description": "x"}) => ResourceNotFound;
        "UpdateUser", stranger, json!({"uuid": i.alice, "description": "x"}) => PermissionDenied;
    });
    {
        let (u, s) = (i.alice.clone(), i.alice_session.clone());
        m.push(ok(
            "DeleteUser",
            &tenant,
            json!({"uuid": i.alice}),
            move |h, _| {
                assert_eq!(h.count("QueryUser", eq("uuid", &u)), 0);
                assert!(!h.valid(&s), "the user's sessions go with it");
            },
        ));
    }
    m.extend(rows! {
        "DeleteUser", stranger, json!({"uuid": i.alice}) => PermissionDenied;
        "QueryUser", tenant, json!({"conditions": eq("name", "alice")}) => ok(first("uuid", i.alice.as_str()));
        "QueryUser", admin, bad_query() => InvalidArgument;
    });
    m
}
