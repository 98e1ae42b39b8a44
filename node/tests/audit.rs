//! The API audit log through real `zsnode` processes: calls served by node 1 (a success, an
//! unknown-session refusal, a validation refusal, an unknown call, async jobs, one carrying a
//! password) are found through `QueryAudit` on node 2, with their results and no secret.

mod common;

use std::time::Duration;
use std::time::Instant;

use common::login;
use common::spawn;
use common::Rest;
use serde_json::json;
use serde_json::Value;

/// Every audit record node 2 shows the admin.
async fn audits(rest: &Rest) -> Vec<Value> {
    let (s, v) = rest
        .send(reqwest::Method::GET, "/zwatch/audits?limit=10000", None)
        .await;
    assert_eq!(s, 200, "{v}");
    v["inventories"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_on_one_node_are_audited_and_queryable_on_another() {
    let td = tempfile::tempdir().unwrap();
    let n1 = spawn(td.path(), 1, &["--init", "--request-timeout-ms", "15000"]);
    let n2 = spawn(td.path(), 2, &["--request-timeout-ms", "15000"]);
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let base1 = format!("http://{}/zstack/v1", n1.http);
    let base2 = format!("http://{}/zstack/v1", n2.http);
    let session = login(&c, &base1).await;
    let r = common::admin_client()
        .post(format!("http://{}/cluster/members", n1.http))
        .json(&json!({"id": n2.id, "raft_addr": n2.raft, "api_addr": n2.http}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
    let on1 = Rest {
        c: c.clone(),
        base: base1.clone(),
        session: session.clone(),
    };

    // A sync success, an unknown session (ID.1001), a validation refusal (SYS.1007).
    let (s, v) = on1.send(reqwest::Method::GET, "/zones", None).await;
    assert_eq!(s, 200, "{v}");
    let bogus = Rest {
        c: c.clone(),
        base: base1.clone(),
        session: "0".repeat(32),
    };
    let (s, v) = bogus.send(reqwest::Method::GET, "/zones", None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (503, Some("ID.1001")),
        "{v}"
    );
    let (s, v) = on1
        .send(
            reqwest::Method::POST,
            "/zones",
            Some(json!({"params": {"description": "no name"}})),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (503, Some("SYS.1007")),
        "{v}"
    );
    // An unknown call through the RPC endpoint (SYS.1008).
    let r = c
        .post(format!("http://{}/zstack/api", n1.http))
        .body(format!(
            r#"{{"org.zstack.header.NoSuchMsg":{{"session":{{"uuid":"{session}"}}}}}}"#
        ))
        .send()
        .await
        .unwrap();
    assert!(r.text().await.unwrap().contains("SYS.1008"));
    // Async jobs: a zone, and an account whose password must never be stored.
    let (s, zone) = on1
        .send(
            reqwest::Method::POST,
            "/zones",
            Some(json!({"params": {"name": "audited-zone"}})),
        )
        .await;
    assert_eq!(s, 200, "{zone}");
    let zone_uuid = zone["inventory"]["uuid"].as_str().unwrap().to_string();
    let secret = "PlainTextSecret-4711";
    let (s, acct) = on1
        .send(
            reqwest::Method::POST,
            "/accounts",
            Some(json!({"params": {"name": "audited", "password": secret}})),
        )
        .await;
    assert_eq!(s, 200, "{acct}");

    // Node 2 sees all of them (batches are flushed within ~50 ms, then replicated).
    let on2 = Rest {
        c: c.clone(),
        base: base2,
        session: session.clone(),
    };
    let find = |records: &[Value], api: &str, ok: bool| {
        records
            .iter()
            .find(|r| r["apiName"] == api && r["success"] == ok && r["state"] == "Done")
            .cloned()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let records = loop {
        let records = audits(&on2).await;
        // A job's outcome may land before the serving node's batch: wait for both halves.
        let merged =
            |api: &str| find(&records, api, true).is_some_and(|r| r["requestDump"].is_string());
        let complete = merged("CreateZone")
            && merged("CreateAccount")
            && find(&records, "NoSuch", false).is_some()
            && find(&records, "CreateZone", false).is_some()
            && records
                .iter()
                .filter(|r| r["apiName"] == "QueryZone")
                .count()
                >= 2
            && find(&records, "LogInByAccount", true).is_some();
        if complete {
            break records;
        }
        assert!(Instant::now() < deadline, "audit incomplete: {records:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let dump = serde_json::to_string(&records).unwrap();
    assert!(!dump.contains(secret), "a password was stored: {dump}");
    assert!(!dump.contains(&session), "a session uuid was stored");
    assert!(!dump.contains(api::families::identity::DEFAULT_ADMIN_PASSWORD_SHA512));

    let ok = find(&records, "QueryZone", true).expect("query success");
    assert_eq!(ok["accountUuid"], api::ADMIN_ACCOUNT_UUID);
    assert_eq!(ok["operator"], "admin");
    assert_eq!(ok["clientIp"], "127.0.0.1");
    assert_eq!(ok["nodeId"], 1);
    let no_session = find(&records, "QueryZone", false).expect("ID.1001 refusal");
    assert_eq!(no_session["errorCode"], "ID.1001");
    assert_eq!(no_session["accountUuid"], Value::Null);
    let invalid = find(&records, "CreateZone", false).expect("SYS.1007 refusal");
    assert_eq!(invalid["errorCode"], "SYS.1007");
    assert_eq!(invalid["jobUuid"], Value::Null);
    assert_eq!(
        find(&records, "NoSuch", false).unwrap()["errorCode"],
        "SYS.1008"
    );

    let created = find(&records, "CreateZone", true).expect("async success");
    assert_eq!(created["resourceUuid"], zone_uuid.as_str());
    assert_eq!(created["jobUuid"], created["uuid"]);
    assert_eq!(created["operator"], "admin");
    assert_eq!(created["nodeId"], 1);
    assert!(created["finishDate"].is_string() && created["duration"].is_number());
    let account = find(&records, "CreateAccount", true).unwrap();
    assert!(
        account["requestDump"]
            .as_str()
            .unwrap()
            .contains(r#""password":"*****""#),
        "{account}"
    );
    let login = find(&records, "LogInByAccount", true).unwrap();
    assert_eq!(login["accountUuid"], api::ADMIN_ACCOUNT_UUID);
    assert_eq!(login["resourceUuid"], Value::Null);

    // Indexed lookups and the REST shorthand through node 2.
    let (s, v) = on2
        .send(
            reqwest::Method::GET,
            &format!("/zwatch/audits?q=resourceUuid={zone_uuid}"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["inventories"][0]["apiName"], "CreateZone", "{v}");
    let (s, v) = on2
        .send(
            reqwest::Method::GET,
            &format!("/zwatch/audits/{}", created["uuid"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(
        (s, v["inventories"].as_array().map(Vec::len)),
        (200, Some(1))
    );

    // The metrics count what node 1 committed.
    let text = common::metrics(&c, &n1).await;
    let committed = text
        .lines()
        .find_map(|l| l.strip_prefix("zstack_audit_records_total "))
        .and_then(|v| v.parse::<u64>().ok())
        .expect("zstack_audit_records_total");
    assert!(committed >= 7, "{committed}");
    assert!(text.contains("zstack_audit_dropped_total 0"));
}
