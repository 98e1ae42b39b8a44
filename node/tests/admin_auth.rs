//! Every administration endpoint (`/cluster/*` but the public CA and the token-authenticated
//! join, and the `/kv` routes) refuses a request without a credential (401), with a wrong
//! admin token (401) and with a normal account's session (403), and serves the cluster admin
//! token and an admin account's session.

mod common;

use std::time::Duration;

use common::login;
use common::spawn;
use common::Rest;
use common::ADMIN_TOKEN;
use reqwest::Method;
use serde_json::json;
use serde_json::Value;

/// (method, path, body) of every administration endpoint. A new one must be added here.
fn endpoints() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (Method::GET, "/cluster/status", None),
        (Method::GET, "/cluster/management-nodes", None),
        (Method::POST, "/cluster/init", None),
        // A body the handler refuses: authorised callers get 400, not a membership change.
        (Method::POST, "/cluster/members", Some(json!({"id": "x"}))),
        (Method::DELETE, "/cluster/members/not-a-number", None),
        (
            Method::POST,
            "/cluster/leader/transfer",
            Some(json!({"to": 99})),
        ),
        (Method::GET, "/cluster/snapshot", None),
        (Method::PUT, "/kv/admin-auth-probe", Some(json!("v"))),
        (Method::GET, "/kv/admin-auth-probe", None),
        (Method::DELETE, "/kv/admin-auth-probe", None),
        (
            Method::POST,
            "/cluster/flow-selftest",
            Some(json!({"key": "k"})),
        ),
        (Method::GET, "/cluster/flow-selftest/k", None),
        (
            Method::POST,
            "/cluster/join-tokens",
            Some(json!({"ttl_seconds": 60})),
        ),
    ]
}

async fn call(
    c: &reqwest::Client,
    base: &str,
    (m, path, body): &(Method, &'static str, Option<Value>),
    auth: Option<String>,
) -> (u16, Value) {
    let mut r = c.request(m.clone(), format!("{base}{path}"));
    if let Some(a) = auth {
        r = r.header("Authorization", a);
    }
    if let Some(b) = body {
        r = r.body(b.to_string());
    }
    let resp = r.send().await.expect("send");
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administration_needs_the_admin_token_or_an_admin_session() {
    let td = tempfile::tempdir().unwrap();
    let n = spawn(td.path(), 1, &["--init"]);
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let http = format!("http://{}", n.http);
    let rest_base = format!("{http}/zstack/v1");
    let admin_session = login(&c, &rest_base).await;
    let admin = Rest {
        c: c.clone(),
        base: rest_base.clone(),
        session: admin_session.clone(),
    };
    let (s, v) = admin
        .send(
            Method::POST,
            "/accounts",
            Some(json!({"params": {"name": "tenant", "password": "tenant-pw"}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let r: Value = c
        .put(format!("{rest_base}/accounts/login"))
        .json(&json!({"logInByAccount": {"accountName": "tenant", "password": "tenant-pw"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tenant_session = r["inventory"]["uuid"]
        .as_str()
        .expect("tenant login")
        .to_string();

    // Over the HTTPS listener too, trusting only the cluster CA.
    let ca = std::fs::read(td.path().join("n1/pki/ca.crt")).unwrap();
    let tls = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let https = format!("https://{}", n.https);

    for (client, base) in [(&c, &http), (&tls, &https)] {
        for ep in endpoints() {
            let what = format!("{} {}{}", ep.0, base, ep.1);
            let (s, v) = call(client, base, &ep, None).await;
            assert_eq!(s, 401, "{what} without a credential: {v}");
            assert_eq!(v["error"]["code"], "ID.1001", "{what}: {v}");
            assert!(
                v["error"]["details"].as_str().unwrap().contains("Bearer"),
                "{what}: the refusal must say what to send: {v}"
            );
            let (s, v) = call(
                client,
                base,
                &ep,
                Some("Bearer zsadm_not-this-cluster-token-000".into()),
            )
            .await;
            assert_eq!(s, 401, "{what} with a wrong token: {v}");
            let (s, v) = call(client, base, &ep, Some(format!("OAuth {tenant_session}"))).await;
            assert_eq!(s, 403, "{what} with a normal account's session: {v}");
            assert_eq!(v["error"]["code"], "ID.1002", "{what}: {v}");
            for auth in [
                format!("Bearer {ADMIN_TOKEN}"),
                format!("OAuth {admin_session}"),
            ] {
                let (s, v) = call(client, base, &ep, Some(auth.clone())).await;
                assert!(
                    s != 401 && s != 403 && s < 500,
                    "{what} with {}: {s} {v}",
                    auth.split(' ').next().unwrap()
                );
            }
        }
    }

    // The public routes stay public: health, metrics, the CA (what joining nodes pin).
    for path in ["/health/live", "/health/ready", "/metrics", "/cluster/ca"] {
        let r = c.get(format!("{http}{path}")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    // The authorised PUT and DELETE ran in order (and the refused PUTs wrote nothing).
    let (s, v) = call(
        &c,
        &http,
        &(Method::GET, "/kv/admin-auth-probe", None),
        Some(format!("Bearer {ADMIN_TOKEN}")),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["value"], Value::Null, "{v}");
}
