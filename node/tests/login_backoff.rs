//! Failed-login back-off through a real `zsnode` (REST v1): after `identity/login.maxFailures`
//! wrong passwords an account (or user) is backed off whichever client asks, after
//! `identity/login.ip.maxFailures` from one client IP that client is backed off whatever name it
//! tries; while backed off even the right password is refused (`ID.1000`, "retry after N ms").
//! Every failure is audited with its client IP and without the password, and no password
//! reaches the node's log. Clients bind distinct loopback addresses (127.0.0.x).

mod common;

use std::net::IpAddr;
use std::time::Duration;
use std::time::Instant;

use common::login;
use common::spawn;
use common::Rest;
use serde_json::json;
use serde_json::Value;

const VICTIM_PW: &str = "VictimRightPassword-0001";
const OPS_PW: &str = "OpsRightPassword-0002";
const ADMIN_PW: &str = api::families::identity::DEFAULT_ADMIN_PASSWORD_SHA512;

/// A wrong password that must never be stored or logged.
fn wrong(i: usize) -> String {
    format!("WrongPasswordProbe-{i:04}")
}

/// A client whose connections come from `ip`.
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A login through REST: `Ok(session uuid)` or `Err((code, details))`.
async fn log_in(
    c: &reqwest::Client,
    base: &str,
    by_user: bool,
    body: Value,
) -> Result<String, (String, String)> {
    let (path, key) = if by_user {
        ("/accounts/users/login", "logInByUser")
    } else {
        ("/accounts/login", "logInByAccount")
    };
    let r = c
        .put(format!("{base}{path}"))
        .json(&json!({ key: body }))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    match v["inventory"]["uuid"].as_str() {
        Some(s) => Ok(s.to_string()),
        None => Err((
            v["error"]["code"].as_str().unwrap_or_default().to_string(),
            v["error"]["details"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )),
    }
}

fn account(name: &str, password: &str) -> Value {
    json!({"accountName": name, "password": password})
}

fn user(name: &str, password: &str) -> Value {
    json!({"accountName": "admin", "userName": name, "password": password})
}

/// The wait a back-off refusal names, after checking what it names.
fn backed_off(got: Result<String, (String, String)>, names: &str) -> u64 {
    let (code, details) = got.expect_err("a backed-off login must be refused");
    assert_eq!(code, "ID.1000", "{details}");
    assert!(details.contains(names), "{details}");
    let ms = details
        .split("retry after ")
        .nth(1)
        .and_then(|t| t.strip_suffix(" ms"))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no wait in {details:?}"));
    assert!(ms > 0 && ms <= 60_000, "{details}");
    ms
}

fn wrong_password(got: Result<String, (String, String)>) {
    let (code, details) = got.expect_err("a wrong password must be refused");
    assert_eq!(code, "ID.1000");
    assert!(details.starts_with("wrong account"), "{details}");
}

async fn set(rest: &Rest, name: &str, value: &str) {
    let (s, v) = rest
        .send(
            reqwest::Method::PUT,
            &format!("/global-configurations/identity/{name}/actions"),
            Some(json!({"updateGlobalConfig": {"value": value}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_logins_are_backed_off_and_audited_without_passwords() {
    let td = tempfile::tempdir().unwrap();
    let node = spawn(td.path(), 1, &["--init", "--request-timeout-ms", "15000"]);
    let base = format!("http://{}/zstack/v1", node.http);
    let c = client_from("127.0.0.1");
    let session = login(&c, &base).await;
    let rest = Rest {
        c: c.clone(),
        base: base.clone(),
        session,
    };
    let (s, v) = rest
        .send(
            reqwest::Method::POST,
            "/accounts",
            Some(json!({"params": {"name": "victim", "password": VICTIM_PW}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = rest
        .send(
            reqwest::Method::POST,
            "/accounts/users",
            Some(json!({"params": {"name": "ops", "password": OPS_PW}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    set(&rest, "login.maxFailures", "3").await;
    set(&rest, "login.backoff", "60000").await;

    // One account: three wrong passwords, then even the right one is refused, from any client.
    let c2 = client_from("127.0.0.2");
    for i in 0..3 {
        wrong_password(log_in(&c2, &base, false, account("victim", &wrong(i))).await);
    }
    backed_off(
        log_in(&c2, &base, false, account("victim", VICTIM_PW)).await,
        "account[victim]",
    );
    let c3 = client_from("127.0.0.3");
    backed_off(
        log_in(&c3, &base, false, account("victim", VICTIM_PW)).await,
        "account[victim]",
    );
    // The client itself is not backed off: another account logs in from it.
    log_in(&c2, &base, false, account("admin", ADMIN_PW))
        .await
        .expect("admin from 127.0.0.2");

    // One user: the same through LogInByUser.
    let c4 = client_from("127.0.0.4");
    for i in 10..13 {
        wrong_password(log_in(&c4, &base, true, user("ops", &wrong(i))).await);
    }
    backed_off(
        log_in(&c4, &base, true, user("ops", OPS_PW)).await,
        "user[ops]",
    );

    // One client IP: four wrong guesses at names that do not exist back the client off, for
    // every name and both login calls; other clients are unaffected.
    set(&rest, "login.ip.maxFailures", "4").await;
    let c5 = client_from("127.0.0.5");
    for i in 20..24 {
        wrong_password(log_in(&c5, &base, false, account(&format!("ghost-{i}"), &wrong(i))).await);
    }
    backed_off(
        log_in(&c5, &base, false, account("admin", ADMIN_PW)).await,
        "client[127.0.0.5]",
    );
    backed_off(
        log_in(&c5, &base, true, user("ops", &wrong(99))).await,
        "client[127.0.0.5]",
    );
    log_in(
        &client_from("127.0.0.6"),
        &base,
        false,
        account("admin", ADMIN_PW),
    )
    .await
    .expect("admin from another client");

    // The audit log has every failure, each with its client IP and without any password.
    let failures = |records: &[Value]| -> Vec<Value> {
        records
            .iter()
            .filter(|r| {
                // 127.0.0.1 only logged in as admin (perhaps failing before the bootstrap).
                r["apiName"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("LogIn"))
                    && r["success"] == false
                    && r["clientIp"] != "127.0.0.1"
            })
            .cloned()
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let records = loop {
        let (s, v) = rest
            .send(reqwest::Method::GET, "/zwatch/audits?limit=10000", None)
            .await;
        assert_eq!(s, 200, "{v}");
        let records = v["inventories"].as_array().cloned().unwrap_or_default();
        // 3 + 2 account, 3 + 1 user, 4 + 2 client failures.
        if failures(&records).len() >= 15 {
            break records;
        }
        assert!(
            Instant::now() < deadline,
            "failed logins missing: {records:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let failed = failures(&records);
    assert_eq!(failed.len(), 15, "{failed:#?}");
    assert!(
        failed.iter().all(|r| r["errorCode"] == "ID.1000"),
        "{failed:#?}"
    );
    let of = |operator: &str, ip: &str, backed: bool| {
        failed
            .iter()
            .filter(|r| {
                r["operator"] == operator
                    && r["clientIp"] == ip
                    && r["error"]
                        .as_str()
                        .is_some_and(|e| e.contains("retry after"))
                        == backed
            })
            .count()
    };
    assert_eq!(of("victim", "127.0.0.2", false), 3, "{failed:#?}");
    assert_eq!(of("victim", "127.0.0.2", true), 1, "{failed:#?}");
    assert_eq!(of("victim", "127.0.0.3", true), 1, "{failed:#?}");
    assert_eq!(of("ops", "127.0.0.4", false), 3, "{failed:#?}");
    assert_eq!(of("ops", "127.0.0.4", true), 1, "{failed:#?}");
    assert_eq!(of("admin", "127.0.0.5", true), 1, "{failed:#?}");
    for r in &failed {
        assert!(
            r["requestDump"]
                .as_str()
                .is_some_and(|d| d.contains(r#""password":"*****""#)),
            "{r}"
        );
    }
    let dump = serde_json::to_string(&records).unwrap();
    let log = std::fs::read_to_string(td.path().join("node1.log")).unwrap();
    let mut secrets: Vec<String> = (0..24).chain([99]).map(wrong).collect();
    secrets.extend([VICTIM_PW, OPS_PW, ADMIN_PW].map(String::from));
    for secret in &secrets {
        assert!(
            !dump.contains(secret.as_str()),
            "{secret} is in the audit log"
        );
        assert!(
            !log.contains(secret.as_str()),
            "{secret} is in the node log"
        );
    }
}
