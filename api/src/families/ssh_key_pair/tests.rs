//! Key-pair unit tests: the public-key check, the apply, the inventory.

use super::key::parse;
use super::model::apply;
use super::samples;
use super::samples::ED25519;
use super::samples::RSA;
use super::*;
use crate::resource;
use crate::testing::ctx;
use crate::testing::normal;
use crate::testing::rename;
use crate::testing::u;
use crate::testing::MemTxn;
use crate::wire::date::java_date;
use crate::ApiError;
use crate::Caller;

fn create_as(
    t: &mut MemTxn,
    caller: &Caller,
    n: u32,
    public_key: &str,
) -> Result<SshKeyPairResult, ApiError> {
    apply(
        t,
        &ctx(u64::from(n)),
        caller,
        SshKeyPairOp::Create {
            uuid: u(n),
            name: format!("key-{n}"),
            description: Some("Test".into()),
            public_key: public_key.into(),
        },
    )
}

fn create(t: &mut MemTxn, n: u32) -> Result<SshKeyPairResult, ApiError> {
    create_as(t, &Caller::admin(), n, ED25519)
}

fn code(e: ApiError) -> String {
    e.code().to_string()
}

/// The refusal text of a key, which must be refused with `SYS.1007`.
fn refused(public_key: &str) -> String {
    let e = parse(public_key).unwrap_err();
    assert_eq!(e.code(), "SYS.1007", "{public_key:?}: {e}");
    e.to_string()
}

/// SSH wire encoding of these fields, each as a `string`.
fn wire(fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields {
        out.extend_from_slice(&u32::try_from(f.len()).unwrap().to_be_bytes());
        out.extend_from_slice(f);
    }
    out
}

/// Padded standard base64.
fn encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let mut n = 0u32;
        for (i, b) in chunk.iter().enumerate() {
            n |= u32::from(*b) << (16 - 8 * i);
        }
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn data(line: &str) -> &str {
    line.split(' ').nth(1).unwrap()
}

#[test]
fn every_supported_key_type_parses() {
    assert_eq!(samples::ALL.len(), KEY_TYPES.len());
    for (key_type, line) in samples::ALL {
        let k = parse(line).unwrap_or_else(|e| panic!("{key_type}: {e}"));
        // The tests' encoder agrees with the sample (so hand-built keys below are real ones).
        let blob = super::key::base64(data(line)).unwrap();
        assert_eq!(encode(&blob), data(line));
        assert_eq!(k.key_type, *key_type);
        assert_eq!(k.line, *line);
        assert_eq!(k.comment, Some("alice@example"));
        // Without the comment, and with tabs and runs of spaces between the words.
        let bare = format!("{key_type} {}", data(line));
        assert_eq!(parse(&bare).unwrap().comment, None);
        let spaced = format!("{key_type}\t  {}  two words", data(line));
        assert_eq!(parse(&spaced).unwrap().comment, Some("two words"));
    }
    // Surrounding whitespace (a `.pub` file's newline) is not part of the line.
    assert_eq!(parse(&format!("\n {ED25519}\r\n")).unwrap().line, ED25519);
}

#[test]
fn malformed_keys_are_refused_with_the_reason() {
    let ed = data(ED25519);
    assert!(refused("").contains("cannot be empty"));
    assert!(refused(" \t\r\n").contains("cannot be empty"));
    assert!(refused(&format!("{ED25519}\n{RSA}"))
        .contains("single OpenSSH public key line, found 2 lines"));
    assert!(refused(&format!("{ED25519}\r{RSA}")).contains("found 2 lines"));
    assert!(refused("hello").contains("unsupported key type[hello]"));
    assert!(refused(&format!("ssh-ed448 {ed}")).contains("unsupported key type[ssh-ed448]"));
    assert!(refused(&format!("SSH-ED25519 {ed}")).contains("unsupported key type"));
    // authorized_keys options are not part of a key pair.
    assert!(refused(&format!("no-pty {ED25519}")).contains("unsupported key type[no-pty]"));
    assert!(refused("ssh-ed25519").contains("no key data after the key type[ssh-ed25519]"));
    assert!(refused("ssh-ed25519   ").contains("no key data"));
    for bad in [
        &ed[..ed.len() - 1],          // length not a multiple of 4
        "AAAA=AAA",                   // padding inside
        "AA=A",                       // padding not at the end of the quad
        "A===",                       // three padding characters
        "AAAAC3NzaC1lZDI1NTE5AAAA_-", // URL-safe alphabet
    ] {
        let line = format!("ssh-ed25519 {bad}");
        let e = parse(&line).unwrap_err().to_string();
        assert!(e.contains("not valid base64"), "{bad}: {e}");
    }
    // The declared type must be the one inside the key data.
    let e = refused(&format!("ssh-ed25519 {}", data(RSA)));
    assert!(
        e.contains("holds a key of type[ssh-rsa], not the declared type[ssh-ed25519]"),
        "{e}"
    );
    let e = refused(&format!("ecdsa-sha2-nistp384 {}", data(samples::P256)));
    assert!(e.contains("type[ecdsa-sha2-nistp256]"), "{e}");
    // Cut short, or with bytes after the key.
    let e = refused("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJYXE4Bs");
    assert!(e.contains("truncated or malformed"), "{e}");
    let e = refused("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5");
    assert!(e.contains("truncated or malformed"), "{e}");
    // (An ed25519 key's data is 51 bytes: 68 base64 characters, no padding.)
    assert_eq!(ed.len(), 68);
    let long = format!("{ed}AAAA");
    assert!(refused(&format!("ssh-ed25519 {long}")).contains("truncated or malformed"));
    // An RSA blob whose modulus is missing.
    let e = refused("ssh-rsa AAAAB3NzaC1yc2EAAAADAQAB");
    assert!(e.contains("truncated or malformed"), "{e}");
    // A length prefix pointing far past the end.
    let e = refused("ssh-ed25519 /////w==");
    assert!(e.contains("truncated or malformed"), "{e}");
    // Hand-built key data: every field of each type is checked.
    let ed_point = [7u8; 32];
    let p256_point = [[4u8].as_slice(), &[9; 64]].concat();
    for (key_type, fields, good) in [
        (
            "ssh-ed25519",
            vec![b"ssh-ed25519".as_slice(), &ed_point],
            true,
        ),
        (
            "ssh-ed25519",
            vec![b"ssh-ed25519".as_slice(), &ed_point[..31]],
            false,
        ),
        (
            "ssh-ed25519",
            vec![b"ssh-ed25519".as_slice(), &ed_point, b""],
            false,
        ),
        (
            "ecdsa-sha2-nistp256",
            vec![b"ecdsa-sha2-nistp256".as_slice(), b"nistp256", &p256_point],
            true,
        ),
        (
            "ecdsa-sha2-nistp256",
            vec![b"ecdsa-sha2-nistp256".as_slice(), b"nistp384", &p256_point],
            false,
        ),
        (
            "ecdsa-sha2-nistp256",
            vec![b"ecdsa-sha2-nistp256".as_slice(), b"nistp256", &[5, 1, 2]],
            false,
        ),
        (
            "ecdsa-sha2-nistp256",
            vec![b"ecdsa-sha2-nistp256".as_slice(), b"nistp256"],
            false,
        ),
        (
            "ssh-rsa",
            vec![b"ssh-rsa".as_slice(), &[1, 0, 1], &[0x55; 64]],
            true,
        ),
        (
            "ssh-rsa",
            vec![b"ssh-rsa".as_slice(), &[1, 0, 1], b""],
            false,
        ),
        (
            "ssh-dss",
            vec![b"ssh-dss".as_slice(), &[1], &[2], &[3], &[4]],
            true,
        ),
        (
            "ssh-dss",
            vec![b"ssh-dss".as_slice(), &[1], &[2], &[3]],
            false,
        ),
    ] {
        let line = format!("{key_type} {}", encode(&wire(&fields)));
        match parse(&line) {
            Ok(_) => assert!(good, "{fields:?} accepted"),
            Err(e) => {
                assert!(!good, "{fields:?}: {e}");
                assert!(e.to_string().contains("truncated or malformed"), "{e}");
            }
        }
    }
    // Control characters in the comment.
    assert!(refused(&format!("{ED25519} a\u{0}b")).contains("control characters"));
    assert!(refused(&format!("{ED25519} a\u{1b}[31m")).contains("control characters"));
}

#[test]
fn oversized_keys_are_refused_before_anything_else() {
    let max = format!(
        "{ED25519} {}",
        "x".repeat(MAX_PUBLIC_KEY - ED25519.len() - 1)
    );
    assert_eq!(max.len(), MAX_PUBLIC_KEY);
    assert!(parse(&max).is_ok(), "exactly 16 KiB is accepted");
    let over = format!("{max}x");
    assert!(refused(&over).contains("16384 bytes"));
    // Even when it is otherwise garbage over many lines.
    let e = refused(&"garbage\n".repeat(4096));
    assert!(e.contains("longer than the 16384 bytes"), "{e}");
    // A long refused type is cut in the message.
    let e = refused(&"t".repeat(1000));
    assert!(e.len() < 300, "{e}");
}

#[test]
fn lifecycle_and_inventory_shape() {
    let mut t = MemTxn::default();
    let SshKeyPairResult::Inventory(k) =
        create_as(&mut t, &Caller::admin(), 1, &format!("{ED25519}\n")).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        serde_json::to_string(&resource::inventory(&k)).unwrap(),
        format!(
            r#"{{"uuid":"{}","name":"key-1","description":"Test","publicKey":"{ED25519}","createDate":"{d}","lastOpDate":"{d}"}}"#,
            k.uuid,
            d = java_date(ctx(1).proposed_at_ms)
        )
    );
    let r = apply(
        &mut t,
        &ctx(2),
        &Caller::admin(),
        SshKeyPairOp::Update {
            uuid: k.uuid.clone(),
            rename: rename(Some("renamed"), None),
        },
    )
    .unwrap();
    let SshKeyPairResult::Inventory(after) = r else {
        panic!()
    };
    assert_eq!(after.name, "renamed");
    assert_eq!(after.description.as_deref(), Some("Test"));
    assert_eq!(after.public_key, ED25519);
    assert_eq!(
        (after.create_date, after.last_op_date),
        (ctx(1).proposed_at_ms, ctx(2).proposed_at_ms)
    );
    let del = SshKeyPairOp::Delete {
        uuid: k.uuid.clone(),
    };
    assert_eq!(
        apply(&mut t, &ctx(3), &Caller::admin(), del.clone()).unwrap(),
        SshKeyPairResult::Deleted
    );
    assert!(resource::load::<SshKeyPair>(&t, &k.uuid).unwrap().is_none());
    // Deleting again is still a success, as in ZStack.
    assert_eq!(
        apply(&mut t, &ctx(4), &Caller::admin(), del).unwrap(),
        SshKeyPairResult::Deleted
    );
}

#[test]
fn create_refusals_write_nothing() {
    let mut t = MemTxn::default();
    create(&mut t, 1).unwrap();
    let before = t.tables.clone();
    assert_eq!(
        code(create(&mut t, 1).unwrap_err()),
        "SYS.1007",
        "duplicate uuid"
    );
    let with =
        |uuid: &str, name: &str, description: Option<String>, key: &str| SshKeyPairOp::Create {
            uuid: uuid.into(),
            name: name.into(),
            description,
            public_key: key.into(),
        };
    for op in [
        with(&u(2), "", None, ED25519),
        with(&u(2), &"n".repeat(256), None, ED25519),
        with(&u(2), "tab\tname", None, ED25519),
        with(&u(2), "n", Some("d".repeat(2049)), ED25519),
        with("xyz", "n", None, ED25519),
        with(&"A".repeat(32), "n", None, ED25519),
        with(&u(2), "n", None, "ssh-rsa AAAA"),
        with(&u(2), "n", None, ""),
    ] {
        let e = apply(&mut t, &ctx(2), &Caller::admin(), op.clone()).unwrap_err();
        assert_eq!(code(e), "SYS.1007", "{op:?}");
    }
    // A malformed key is refused before the duplicate uuid is looked at.
    let e = apply(
        &mut t,
        &ctx(2),
        &Caller::admin(),
        with(&u(1), "n", None, "x"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("unsupported key type"), "{e}");
    assert!(t.tables == before, "a refused create wrote");
}

#[test]
fn accounts_see_and_change_their_own_keys_only() {
    let mut t = MemTxn::default();
    let tenant = normal();
    let other = Caller {
        account_uuid: "b".repeat(32),
        user_uuid: "b".repeat(32),
        admin: false,
    };
    create_as(&mut t, &tenant, 1, RSA).unwrap();
    let (owner, _) = resource::load::<SshKeyPair>(&t, &u(1)).unwrap().unwrap();
    assert_eq!(owner, tenant.account_uuid);
    let update = SshKeyPairOp::Update {
        uuid: u(1),
        rename: rename(Some("x"), None),
    };
    let delete = SshKeyPairOp::Delete { uuid: u(1) };
    for op in [update.clone(), delete.clone()] {
        assert_eq!(
            code(apply(&mut t, &ctx(2), &other, op).unwrap_err()),
            "ID.1002"
        );
    }
    assert!(resource::load::<SshKeyPair>(&t, &u(1)).unwrap().is_some());
    apply(&mut t, &ctx(3), &tenant, update).unwrap();
    // The admin acts on every account's keys.
    apply(&mut t, &ctx(4), &Caller::admin(), delete).unwrap();
    assert!(resource::load::<SshKeyPair>(&t, &u(1)).unwrap().is_none());
    assert_eq!(
        code(
            apply(
                &mut t,
                &ctx(5),
                &tenant,
                SshKeyPairOp::Update {
                    uuid: u(1),
                    rename: rename(Some("x"), None),
                }
            )
            .unwrap_err()
        ),
        "SYS.1003"
    );
}

#[test]
fn the_family_declares_a_taggable_kind_and_its_routes() {
    let decl = &SshKeyPairs::DECL;
    assert_eq!(decl.kinds[0].vo_types, [VO]);
    assert_eq!(crate::registry::kind_of_vo(VO).map(|k| k.kind), Some(KIND));
    let names: Vec<&str> = decl.calls.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "CreateSshKeyPair",
            "UpdateSshKeyPair",
            "DeleteSshKeyPair",
            "QuerySshKeyPair"
        ]
    );
    assert_eq!(decl.calls[0].creates, Some(VO));
}

mod fuzz {
    use proptest::prelude::*;

    use super::encode;
    use super::parse;
    use super::KEY_TYPES;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Arbitrary text never panics the check, and what it accepts is a known type.
        #[test]
        fn any_text(s in ".{0,200}") {
            if let Ok(k) = parse(&s) {
                prop_assert!(KEY_TYPES.contains(&k.key_type));
            }
        }

        /// Arbitrary key data under each type never panics; an accepted line re-parses the
        /// same (storing the trimmed line loses nothing).
        #[test]
        fn any_key_data(t in 0..KEY_TYPES.len(), blob in proptest::collection::vec(any::<u8>(), 0..160),
                        comment in "[ a-z@.]{0,12}") {
            let line = format!("{} {}{comment}", KEY_TYPES[t], encode(&blob));
            if let Ok(k) = parse(&line) {
                prop_assert_eq!(parse(k.line).unwrap(), k.clone());
            }
        }
    }
}
