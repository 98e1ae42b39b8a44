//! Call-matrix cases of the key-pair calls (run by `testing::matrix`). The base world holds no
//! key pair: the cases that act on one create it first (`Case::given`).

use serde_json::json;
use serde_json::Value;

use super::samples;
use super::samples::ED25519;
use super::samples::RSA;
use crate::testing::matrix::bad_query;
use crate::testing::matrix::eq;
use crate::testing::matrix::missing;
use crate::testing::matrix::no;
use crate::testing::matrix::ok;
use crate::testing::matrix::Case;
use crate::testing::matrix::Ids;
use crate::testing::matrix::Parties;
use crate::wire::errors::Code;

/// The admin's key pair of the cases that need one.
const ADMIN_KEY: &str = "5510000000000000000000000000a001";
/// The tenant's.
const TENANT_KEY: &str = "5510000000000000000000000000b001";

fn create(uuid: &str, name: &str, public_key: &str) -> Value {
    json!({"resourceUuid": uuid, "name": name, "publicKey": public_key})
}

/// A create with this `publicKey` that must be refused as a malformed key.
fn bad_key(public_key: impl Into<Value>) -> Value {
    json!({"name": "k", "publicKey": public_key.into()})
}

/// The call-matrix cases of this family's calls.
pub(crate) fn cases(ids: &Ids) -> Vec<Case> {
    let Parties {
        admin,
        tenant,
        alice,
        stranger,
        nobody,
    } = Parties::of(ids);
    let mut m = Vec::new();
    // ---- CreateSshKeyPair.
    m.push(ok(
        "CreateSshKeyPair",
        &admin,
        json!({"name": "ops", "description": "d", "publicKey": ED25519}),
        |h, r| {
            let inv = &r["inventory"];
            assert_eq!(inv["name"], "ops");
            assert_eq!(inv["description"], "d");
            assert_eq!(inv["publicKey"], ED25519);
            assert!(inv["createDate"].is_string() && inv["lastOpDate"].is_string());
            let fields = crate::testing::keys(inv);
            assert_eq!(
                fields,
                [
                    "uuid",
                    "name",
                    "description",
                    "publicKey",
                    "createDate",
                    "lastOpDate"
                ]
            );
            assert_eq!(h.count("QuerySshKeyPair", eq("name", "ops")), 1);
        },
    ));
    // Every accepted key type.
    for (key_type, public_key) in samples::ALL {
        m.push(ok(
            "CreateSshKeyPair",
            &admin,
            json!({"name": key_type, "publicKey": public_key}),
            move |h, r| {
                assert_eq!(r["inventory"]["publicKey"], *public_key);
                let q =
                    json!([{"name": "publicKey", "op": "like", "value": format!("{key_type} %")}]);
                assert_eq!(h.count("QuerySshKeyPair", q), 1);
            },
        ));
    }
    // A tenant's own key, at the uuid it chose, visible to the admin and to the tenant only.
    m.push(ok(
        "CreateSshKeyPair",
        &tenant,
        create(TENANT_KEY, "mine", RSA),
        |h, r| {
            assert_eq!(r["inventory"]["uuid"], TENANT_KEY);
            assert_eq!(h.count("QuerySshKeyPair", eq("uuid", TENANT_KEY)), 1);
        },
    ));
    {
        let tenant = tenant.clone();
        m.push(ok(
            "CreateSshKeyPair",
            &alice,
            create(TENANT_KEY, "alice's", ED25519),
            move |h, _| {
                // A user's key belongs to its account.
                let r = h
                    .send(&tenant, "QuerySshKeyPair", json!({"conditions": []}))
                    .unwrap();
                assert_eq!(r["inventories"][0]["uuid"], TENANT_KEY);
            },
        ));
    }
    // The newline ending a `.pub` file is not part of the key.
    m.push(ok(
        "CreateSshKeyPair",
        &admin,
        json!({"name": "pasted", "publicKey": format!("  {ED25519}\r\n")}),
        |_, r| assert_eq!(r["inventory"]["publicKey"], ED25519),
    ));
    // Tags of the create land on the key pair, in the same apply.
    m.push(ok(
        "CreateSshKeyPair",
        &admin,
        json!({"resourceUuid": ADMIN_KEY, "name": "tagged", "publicKey": ED25519,
               "systemTags": ["k::v"], "userTags": ["laptop"]}),
        |h, _| {
            assert_eq!(h.count("QueryUserTag", eq("resourceUuid", ADMIN_KEY)), 1);
            assert_eq!(
                h.one("QuerySystemTag", "resourceUuid", ADMIN_KEY)["resourceType"],
                "SshKeyPairVO"
            );
            let q = json!([{"name": "__userTag__", "op": "=", "value": "laptop"}]);
            assert_eq!(h.count("QuerySshKeyPair", q), 1);
        },
    ));
    // Refusals: fields.
    m.push(no(
        "CreateSshKeyPair",
        &admin,
        json!({"name": "k"}),
        Code::InvalidArgument,
    ));
    m.push(no(
        "CreateSshKeyPair",
        &admin,
        json!({"publicKey": ED25519}),
        Code::InvalidArgument,
    ));
    m.push(no(
        "CreateSshKeyPair",
        &admin,
        json!({"name": " ", "publicKey": ED25519}),
        Code::InvalidArgument,
    ));
    m.push(no(
        "CreateSshKeyPair",
        &admin,
        json!({"name": "n".repeat(256), "publicKey": ED25519}),
        Code::InvalidArgument,
    ));
    m.push(no(
        "CreateSshKeyPair",
        &admin,
        json!({"name": "k", "description": "d".repeat(2049), "publicKey": ED25519}),
        Code::InvalidArgument,
    ));
    m.push(no(
        "CreateSshKeyPair",
        &admin,
        create("xyz", "k", ED25519),
        Code::InvalidArgument,
    ));
    m.push(
        no(
            "CreateSshKeyPair",
            &admin,
            create(ADMIN_KEY, "again", RSA),
            Code::InvalidArgument,
        )
        .given(&admin, "CreateSshKeyPair", create(ADMIN_KEY, "k", ED25519)),
    );
    // Refusals: the key itself.
    let (ed_type, ed_data) = ED25519.split_once(' ').unwrap();
    let ed_data = ed_data.split(' ').next().unwrap();
    let rsa_data = RSA.split(' ').nth(1).unwrap();
    for public_key in [
        json!(""),
        json!(" \n "),
        json!(format!("{ED25519}\n{RSA}")),
        json!("hello world"),
        json!(format!("ssh-foo {ed_data}")),
        json!(format!("command=\"ls\" {ED25519}")),
        json!(ed_type),
        json!(format!("{ed_type} !!!not-base64!!!")),
        json!(format!("{ed_type} {}", &ed_data[..ed_data.len() - 1])),
        // Declared ed25519, holding an RSA key.
        json!(format!("{ed_type} {rsa_data}")),
        // Truncated: the key data of a shorter ed25519 point.
        json!(format!("{ed_type} AAAAC3NzaC1lZDI1NTE5AAAAIJYXE4Bs")),
        json!(format!("{ED25519} with\u{7}bell")),
        json!(format!("{ED25519} {}", "x".repeat(16 * 1024))),
        json!(42),
    ] {
        m.push(no(
            "CreateSshKeyPair",
            &admin,
            bad_key(public_key),
            Code::InvalidArgument,
        ));
    }
    m.push(no(
        "CreateSshKeyPair",
        &nobody,
        bad_key(ED25519),
        Code::InvalidSession,
    ));
    // ---- UpdateSshKeyPair.
    m.push(
        ok(
            "UpdateSshKeyPair",
            &admin,
            json!({"uuid": ADMIN_KEY, "name": "renamed", "description": "new"}),
            |h, r| {
                let inv = &r["inventory"];
                assert_eq!(
                    (&inv["name"], &inv["description"]),
                    (&json!("renamed"), &json!("new"))
                );
                assert_eq!(inv["publicKey"], ED25519, "the key never changes");
                assert_ne!(inv["lastOpDate"], inv["createDate"]);
                assert_eq!(h.count("QuerySshKeyPair", eq("name", "renamed")), 1);
            },
        )
        .given(&admin, "CreateSshKeyPair", create(ADMIN_KEY, "k", ED25519)),
    );
    m.push(
        ok(
            "UpdateSshKeyPair",
            &tenant,
            json!({"uuid": TENANT_KEY, "description": "laptop"}),
            |_, r| {
                assert_eq!(r["inventory"]["name"], "mine");
                assert_eq!(r["inventory"]["description"], "laptop");
            },
        )
        .given(&tenant, "CreateSshKeyPair", create(TENANT_KEY, "mine", RSA)),
    );
    m.push(no(
        "UpdateSshKeyPair",
        &admin,
        json!({"uuid": missing(), "name": "x"}),
        Code::ResourceNotFound,
    ));
    m.push(no(
        "UpdateSshKeyPair",
        &admin,
        json!({"name": "x"}),
        Code::InvalidArgument,
    ));
    m.push(
        no(
            "UpdateSshKeyPair",
            &admin,
            json!({"uuid": ADMIN_KEY, "name": ""}),
            Code::InvalidArgument,
        )
        .given(&admin, "CreateSshKeyPair", create(ADMIN_KEY, "k", ED25519)),
    );
    m.push(
        no(
            "UpdateSshKeyPair",
            &tenant,
            json!({"uuid": ADMIN_KEY, "name": "mine now"}),
            Code::PermissionDenied,
        )
        .given(&admin, "CreateSshKeyPair", create(ADMIN_KEY, "k", ED25519)),
    );
    // ---- DeleteSshKeyPair.
    m.push(
        ok(
            "DeleteSshKeyPair",
            &admin,
            json!({"uuid": ADMIN_KEY}),
            |h, r| {
                assert!(r.get("inventory").is_none());
                assert_eq!(h.count("QuerySshKeyPair", eq("uuid", ADMIN_KEY)), 0);
                assert_eq!(h.count("QueryUserTag", eq("resourceUuid", ADMIN_KEY)), 0);
            },
        )
        .given(
            &admin,
            "CreateSshKeyPair",
            json!({"resourceUuid": ADMIN_KEY, "name": "k", "publicKey": ED25519, "userTags": ["laptop"]}),
        ),
    );
    m.push(
        ok(
            "DeleteSshKeyPair",
            &alice,
            json!({"uuid": TENANT_KEY}),
            |h, _| assert_eq!(h.count("QuerySshKeyPair", eq("uuid", TENANT_KEY)), 0),
        )
        .given(&tenant, "CreateSshKeyPair", create(TENANT_KEY, "mine", RSA)),
    );
    // ZStack answers success for a well-formed uuid nothing has.
    m.push(ok(
        "DeleteSshKeyPair",
        &tenant,
        json!({"uuid": missing()}),
        |_, r| assert!(r.get("inventory").is_none()),
    ));
    m.push(
        no(
            "DeleteSshKeyPair",
            &stranger,
            json!({"uuid": TENANT_KEY}),
            Code::PermissionDenied,
        )
        .given(&tenant, "CreateSshKeyPair", create(TENANT_KEY, "mine", RSA)),
    );
    m.push(no(
        "DeleteSshKeyPair",
        &admin,
        json!({}),
        Code::InvalidArgument,
    ));
    // ---- QuerySshKeyPair.
    m.push(
        ok(
            "QuerySshKeyPair",
            &admin,
            json!({"conditions": eq("name", "k"), "replyWithCount": true}),
            |_, r| {
                assert_eq!(r["total"], 1);
                assert_eq!(r["inventories"][0]["uuid"], ADMIN_KEY);
            },
        )
        .given(&admin, "CreateSshKeyPair", create(ADMIN_KEY, "k", ED25519)),
    );
    m.push(
        ok(
            "QuerySshKeyPair",
            &tenant,
            json!({"conditions": []}),
            |h, r| {
                let uuids: Vec<&Value> = r["inventories"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| &i["uuid"])
                    .collect();
                assert_eq!(uuids, [TENANT_KEY], "the tenant sees its own key only");
                assert_eq!(
                    h.count("QuerySshKeyPair", json!([])),
                    2,
                    "the admin sees both"
                );
            },
        )
        .given(&admin, "CreateSshKeyPair", create(ADMIN_KEY, "k", ED25519))
        .given(&tenant, "CreateSshKeyPair", create(TENANT_KEY, "mine", RSA)),
    );
    m.push(no(
        "QuerySshKeyPair",
        &admin,
        bad_query(),
        Code::InvalidArgument,
    ));
    m.push(no(
        "QuerySshKeyPair",
        &nobody,
        json!({"conditions": []}),
        Code::InvalidSession,
    ));
    m
}
