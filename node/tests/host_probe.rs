//! KVM hosts through a real `zsnode` (REST v1): AddKVMHost, ReconnectHost and UpdateKVMHost are
//! proposed only after the node's `SshPortProbe` read an SSH identification from
//! managementIp:sshPort. Fake hosts are tiny TCP listeners on 127.0.0.1.

mod common;

use std::time::Duration;

use common::free_port;
use common::login;
use common::spawn;
use common::Rest;
use serde_json::json;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// A fake host: every connection gets `greeting`, then is closed.
async fn fake_host(greeting: &'static [u8]) -> (u16, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(greeting).await;
        }
    });
    (port, task)
}

impl Rest {
    async fn create(&self, path: &str, params: Value) -> (u16, Value) {
        self.send(
            reqwest::Method::POST,
            path,
            Some(json!({ "params": params })),
        )
        .await
    }

    async fn action(&self, path: &str, action: &str, fields: Value) -> (u16, Value) {
        self.send(reqwest::Method::PUT, path, Some(json!({ action: fields })))
            .await
    }

    async fn hosts(&self) -> Vec<Value> {
        let (status, v) = self.send(reqwest::Method::GET, "/hosts", None).await;
        assert_eq!(status, 200, "{v}");
        v["inventories"].as_array().unwrap().clone()
    }
}

fn add_params(cluster: &str, port: u16) -> Value {
    json!({"clusterUuid": cluster, "name": "kvm-1", "managementIp": "127.0.0.1",
           "sshPort": port, "username": "root", "password": "host-secret"})
}

/// The refusal's code, after checking that `details` names the endpoint.
fn refusal(status: u16, v: &Value, endpoint: &str) -> String {
    assert_eq!(status, 503, "{v}");
    let details = v["error"]["details"].as_str().unwrap_or_default();
    assert!(details.contains(endpoint), "{details}");
    v["error"]["code"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_are_added_only_when_their_ssh_port_answers() {
    let td = tempfile::tempdir().unwrap();
    let node = spawn(td.path(), 1, &["--init"]);
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let base = format!("http://{}/zstack/v1", node.http);
    let session = login(&c, &base).await;
    let rest = Rest { c, base, session };

    let (s, zone) = rest.create("/zones", json!({"name": "z"})).await;
    assert_eq!(s, 200, "{zone}");
    let zone = zone["inventory"]["uuid"].as_str().unwrap().to_string();
    let (s, cluster) = rest
        .create(
            "/clusters",
            json!({"zoneUuid": zone, "name": "c", "hypervisorType": "KVM"}),
        )
        .await;
    assert_eq!(s, 200, "{cluster}");
    let cluster = cluster["inventory"]["uuid"].as_str().unwrap().to_string();

    // Refusals: nothing is written.
    let closed = free_port();
    let (s, v) = rest
        .create("/hosts/kvm", add_params(&cluster, closed))
        .await;
    assert_eq!(
        refusal(s, &v, &format!("127.0.0.1:{closed}")),
        "HOST.1000",
        "closed port"
    );
    let (http, http_task) = fake_host(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
    let (s, v) = rest.create("/hosts/kvm", add_params(&cluster, http)).await;
    assert_eq!(
        refusal(s, &v, &format!("127.0.0.1:{http}")),
        "HOST.1000",
        "not SSH"
    );
    assert!(
        v["error"]["details"]
            .as_str()
            .unwrap()
            .contains("not an SSH server"),
        "{v}"
    );
    assert!(rest.hosts().await.is_empty(), "a refused add left a host");
    // A call the state refuses answers with its own error before any probe.
    let (s, v) = rest
        .create("/hosts/kvm", add_params(&"9".repeat(32), closed))
        .await;
    assert_eq!((s, v["error"]["code"].as_str()), (503, Some("SYS.1003")));

    // Success against a listener that identifies as SSH.
    let (ssh, ssh_task) = fake_host(b"SSH-2.0-OpenSSH_9.2\r\n").await;
    let (s, v) = rest.create("/hosts/kvm", add_params(&cluster, ssh)).await;
    assert_eq!(s, 200, "{v}");
    let inv = &v["inventory"];
    assert_eq!(
        (
            inv["status"].as_str(),
            inv["state"].as_str(),
            inv["sshPort"].as_u64()
        ),
        (Some("Connected"), Some("Enabled"), Some(u64::from(ssh)))
    );
    assert!(!v.to_string().contains("host-secret"), "{v}");
    let host = inv["uuid"].as_str().unwrap().to_string();
    let listed = rest.hosts().await;
    assert_eq!(listed.len(), 1);
    assert!(!Value::Array(listed).to_string().contains("host-secret"));

    // Reconnect probes the stored endpoint.
    let actions = format!("/hosts/{host}/actions");
    let (s, v) = rest.action(&actions, "reconnectHost", json!({})).await;
    assert_eq!(s, 200, "{v}");
    // Moving the host to a port that does not answer is refused; the record keeps its port.
    let (s, v) = rest
        .action(
            &format!("/hosts/kvm/{host}/actions"),
            "updateKVMHost",
            json!({"sshPort": http}),
        )
        .await;
    assert_eq!(refusal(s, &v, &format!("127.0.0.1:{http}")), "HOST.1002");
    assert_eq!(
        rest.hosts().await[0]["sshPort"].as_u64(),
        Some(u64::from(ssh))
    );
    // A rename keeps the endpoint: no probe needed.
    let (s, v) = rest
        .action(
            &format!("/hosts/kvm/{host}/actions"),
            "updateKVMHost",
            json!({"name": "kvm-renamed"}),
        )
        .await;
    assert_eq!(
        (s, v["inventory"]["name"].as_str()),
        (200, Some("kvm-renamed"))
    );
    // The host's SSH server goes away: reconnect is refused, nothing changes.
    ssh_task.abort();
    let _ = ssh_task.await;
    let (s, v) = rest.action(&actions, "reconnectHost", json!({})).await;
    assert_eq!(refusal(s, &v, &format!("127.0.0.1:{ssh}")), "HOST.1002");
    // Maintenance, then delete (spec 03 §4.3).
    let (s, v) = rest
        .action(
            &actions,
            "changeHostState",
            json!({"stateEvent": "maintain"}),
        )
        .await;
    assert_eq!(
        (s, v["inventory"]["state"].as_str()),
        (200, Some("Maintenance"))
    );
    let (s, v) = rest
        .send(reqwest::Method::DELETE, &format!("/hosts/{host}"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(rest.hosts().await.is_empty());
    http_task.abort();
}
