//! Issue 11's first "done when" on three management nodes (mutual TLS everywhere): two hosts
//! added through the SSH flow into network-namespace test hosts running Debian's sshd, one
//! attached as pre-installed; QueryHost shows what libvirt reported; the leader is killed and
//! the new leader's tracker carries on: an agent killed → Disconnected within the configured
//! bound, restarted → Connected again without an operator. Needs root; skipped otherwise.

mod common;
#[path = "common/ssh_host.rs"]
mod ssh_host;

use std::time::Duration;
use std::time::Instant;

use common::add_member;
use common::admin_client;
use common::data_dir;
use common::login;
use common::ready;
use common::spawn;
use common::Proc;
use common::Rest;
use serde_json::json;
use serde_json::Value;
use ssh_host::SshHost;

async fn leader_of(c: &reqwest::Client, p: &Proc) -> Option<u64> {
    let v: Value = c
        .get(format!("http://{}/cluster/status", p.http))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    v["leader_id"].as_u64()
}

impl Rest {
    async fn post(&self, path: &str, params: Value) -> (u16, Value) {
        self.send(
            reqwest::Method::POST,
            path,
            Some(json!({ "params": params })),
        )
        .await
    }

    async fn config(&self, category: &str, name: &str, value: &str) {
        let (s, v) = self
            .send(
                reqwest::Method::PUT,
                &format!("/global-configurations/{category}/{name}/actions"),
                Some(json!({"updateGlobalConfig": {"value": value}})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }

    async fn host_status(&self, uuid: &str) -> Option<String> {
        let (_, v) = self
            .send(reqwest::Method::GET, &format!("/hosts/{uuid}"), None)
            .await;
        v["inventories"][0]["status"].as_str().map(String::from)
    }

    async fn await_status(&self, uuid: &str, want: &str, within: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let s = self.host_status(uuid).await;
            if s.as_deref() == Some(want) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "host {uuid} not {want} after {within:?}: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_and_preinstalled_hosts_on_three_nodes_survive_a_leader_kill() {
    if !ssh_host::is_root() {
        eprintln!("skipped: hosts_cluster needs root (network namespaces, useradd, sshd)");
        return;
    }
    let _ = common::zsagent_bin();
    let h1 = SshHost::start().expect("test SSH host 1");
    let h2 = SshHost::start().expect("test SSH host 2");
    let td = tempfile::tempdir().unwrap();
    let agent_args = ["--agent-libvirt-uri", "test:///default"];
    let mut nodes = vec![spawn(
        td.path(),
        1,
        &[&["--init"][..], &agent_args].concat(),
    )];
    nodes.push(spawn(td.path(), 2, &agent_args));
    nodes.push(spawn(td.path(), 3, &agent_args));
    let admin = admin_client();
    ready(&admin, &nodes[0]).await;
    add_member(&admin, &nodes[0], &nodes[1]).await;
    add_member(&admin, &nodes[0], &nodes[2]).await;
    // The pre-installed host: an agent issued its certificate offline (`zsnode pki agent-cert`).
    let mut pre = common::TestAgent::install(
        &data_dir(td.path(), 1),
        &td.path().join("agent-pre"),
        "127.0.0.61",
    );

    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let rest_of = |p: &Proc, session: &str| Rest {
        c: c.clone(),
        base: format!("http://{}/zstack/v1", p.http),
        session: session.to_string(),
    };
    let session = login(&c, &format!("http://{}/zstack/v1", nodes[0].http)).await;
    let r = rest_of(&nodes[0], &session);
    r.config("kvm", "allowTestDriver", "true").await;
    r.config("host", "ping.interval", "1").await;
    r.config("host", "ping.maxFailure", "2").await;
    let (_, v) = r.post("/zones", json!({"name": "z"})).await;
    let zone = v["inventory"]["uuid"].as_str().unwrap().to_string();
    let (_, v) = r
        .post(
            "/clusters",
            json!({"zoneUuid": zone, "name": "c", "hypervisorType": "KVM"}),
        )
        .await;
    let cluster = v["inventory"]["uuid"].as_str().unwrap().to_string();

    let mut uuids = Vec::new();
    for (name, ip, port, user, pw) in [
        (
            "ssh-1",
            h1.ip.to_string(),
            h1.port,
            h1.user.clone(),
            h1.password.clone(),
        ),
        (
            "ssh-2",
            h2.ip.to_string(),
            h2.port,
            h2.user.clone(),
            h2.password.clone(),
        ),
        (
            "pre",
            "127.0.0.61".to_string(),
            22,
            "root".to_string(),
            "unused".to_string(),
        ),
    ] {
        let (s, v) = r
            .post(
                "/hosts/kvm",
                json!({"clusterUuid": cluster, "name": name, "managementIp": ip,
                       "sshPort": port, "username": user, "password": pw}),
            )
            .await;
        assert_eq!(s, 200, "{name}: {v}");
        let inv = &v["inventory"];
        assert_eq!(inv["status"], "Connected", "{inv}");
        assert!(inv["cpuNum"].as_u64().unwrap_or(0) > 0, "{inv}");
        assert!(
            inv["totalMemoryCapacity"].as_u64().unwrap_or(0) > 0,
            "{inv}"
        );
        uuids.push(inv["uuid"].as_str().unwrap().to_string());
    }
    // The pre-installed agent's test-driver host file says 2 × 4 × 2 threads and 8 GiB.
    let (_, v) = r
        .send(reqwest::Method::GET, &format!("/hosts/{}", uuids[2]), None)
        .await;
    let pre_inv = &v["inventories"][0];
    assert_eq!(
        (
            pre_inv["cpuNum"].as_u64(),
            pre_inv["totalMemoryCapacity"].as_u64()
        ),
        (Some(16), Some(8 << 30)),
        "{pre_inv}"
    );
    let (_, v) = r.send(reqwest::Method::GET, "/hosts", None).await;
    assert_eq!(v["inventories"].as_array().map(Vec::len), Some(3), "{v}");

    // Kill the leader; a survivor's REST API and the new leader's tracker carry on.
    let leader = leader_of(&admin, &nodes[1]).await.expect("a leader");
    let idx = nodes.iter().position(|p| p.id == leader).unwrap();
    let mut dead = nodes.remove(idx);
    let _ = dead.child.kill();
    let _ = dead.child.wait();
    let deadline = Instant::now() + Duration::from_secs(30);
    let new_leader = loop {
        if let Some(l) = leader_of(&admin, &nodes[0]).await.filter(|l| *l != leader) {
            break l;
        }
        assert!(Instant::now() < deadline, "no new leader");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("leader {leader} killed, node {new_leader} leads");
    let survivor = rest_of(&nodes[0], &session);
    pre.kill();
    let took = survivor
        .await_status(&uuids[2], "Disconnected", Duration::from_secs(30))
        .await;
    eprintln!(
        "pre-installed agent killed → Disconnected in {took:?} (interval 1 s × maxFailure 2)"
    );
    pre.start();
    let took = survivor
        .await_status(&uuids[2], "Connected", Duration::from_secs(30))
        .await;
    eprintln!("pre-installed agent back → Connected in {took:?}");
    for u in &uuids[..2] {
        assert_eq!(survivor.host_status(u).await.as_deref(), Some("Connected"));
    }
}
