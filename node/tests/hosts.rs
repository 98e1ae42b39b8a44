//! KVM hosts through a real `zsnode` (REST v1) and real `zsagent`s on libvirt's test driver:
//! AddKVMHost probes the SSH port, then its flow attaches the host's agent (issued a certificate
//! by the cluster CA with `zsnode pki agent-cert`) and records the facts libvirt reported; the
//! leader's ping tracker moves a host to Disconnected when its agent dies and back when it
//! returns. Fake SSH servers are tiny TCP listeners; each test host has its own 127.0.0.x.

mod common;

use std::time::Duration;
use std::time::Instant;

use common::data_dir;
use common::free_port;
use common::login;
use common::spawn;
use common::Rest;
use common::TestAgent as Agent;
use serde_json::json;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// A fake SSH server on `ip`: every connection gets `greeting`, then is closed.
async fn fake_host(ip: &str, greeting: &'static [u8]) -> (u16, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind(format!("{ip}:0")).await.unwrap();
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

    async fn set_config(&self, category: &str, name: &str, value: &str) {
        let (s, v) = self
            .action(
                &format!("/global-configurations/{category}/{name}/actions"),
                "updateGlobalConfig",
                json!({ "value": value }),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }

    /// Wait until the host's status is `want`; how long it took.
    async fn await_status(&self, uuid: &str, want: &str, within: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let h = self.hosts().await;
            let s = h
                .iter()
                .find(|h| h["uuid"] == uuid)
                .map(|h| h["status"].clone());
            if s.as_ref().and_then(Value::as_str) == Some(want) {
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

fn add_params(cluster: &str, ip: &str, port: u16) -> Value {
    json!({"clusterUuid": cluster, "name": format!("kvm-{ip}"), "managementIp": ip,
           "sshPort": port, "username": "root", "password": "host-secret"})
}

/// The refusal's code, after checking that `details` names `needle`.
fn refusal(status: u16, v: &Value, needle: &str) -> String {
    assert_eq!(status, 503, "{v}");
    let details = v["error"]["details"].as_str().unwrap_or_default();
    assert!(details.contains(needle), "{needle:?} not in {details}");
    v["error"]["code"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_are_connected_through_their_agents_and_tracked() {
    let td = tempfile::tempdir().unwrap();
    let node = spawn(td.path(), 1, &["--init"]);
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(40))
        .build()
        .unwrap();
    let base = format!("http://{}/zstack/v1", node.http);
    let session = login(&c, &base).await;
    let rest = Rest { c, base, session };
    let ip = "127.0.0.21";

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

    // Refusals before anything is written: the SSH port does not answer, or is not SSH.
    let closed = free_port();
    let (s, v) = rest
        .create("/hosts/kvm", add_params(&cluster, ip, closed))
        .await;
    assert_eq!(refusal(s, &v, &format!("{ip}:{closed}")), "HOST.1000");
    let (http, _http_task) = fake_host(ip, b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
    let (s, v) = rest
        .create("/hosts/kvm", add_params(&cluster, ip, http))
        .await;
    assert_eq!(refusal(s, &v, "not an SSH server"), "HOST.1000");
    let (s, v) = rest
        .create("/hosts/kvm", add_params(&"9".repeat(32), ip, closed))
        .await;
    assert_eq!((s, v["error"]["code"].as_str()), (503, Some("SYS.1003")));

    // SSH answers but no agent runs there and none can be installed: the flow rolls back.
    let (ssh, _ssh_task) = fake_host(ip, b"SSH-2.0-OpenSSH_9.2\r\n").await;
    let (s, v) = rest
        .create("/hosts/kvm", add_params(&cluster, ip, ssh))
        .await;
    // The installer tries the fake server and fails in ssh's handshake.
    assert_eq!(refusal(s, &v, "cannot install the agent on"), "HOST.1000");
    assert!(
        rest.hosts().await.is_empty(),
        "a failed add left a host: {:?}",
        rest.hosts().await
    );

    // A pre-installed agent on libvirt's test driver: refused without the operator's consent
    // (no hardware virtualisation), and the refused add leaves the agent unbound.
    let mut agent = Agent::install(&data_dir(td.path(), 1), &td.path().join("agent1"), ip);
    let (s, v) = rest
        .create("/hosts/kvm", add_params(&cluster, ip, ssh))
        .await;
    assert_eq!(refusal(s, &v, "virtualization=test"), "HOST.1000");
    assert!(rest.hosts().await.is_empty());
    assert!(
        !agent.dir.join("host-uuid").exists(),
        "the rolled-back attach was not undone"
    );

    rest.set_config("kvm", "allowTestDriver", "true").await;
    let (s, v) = rest
        .create("/hosts/kvm", add_params(&cluster, ip, ssh))
        .await;
    assert_eq!(s, 200, "{v}");
    let inv = &v["inventory"];
    let host = inv["uuid"].as_str().unwrap().to_string();
    assert_eq!(inv["status"], "Connected", "{inv}");
    // What libvirt reported for the test host: 16 threads on 2 sockets, 8 GiB; CPU capacity is
    // threads × the over-provisioning ratio (10).
    assert_eq!(inv["cpuNum"], 16, "{inv}");
    assert_eq!(inv["cpuSockets"], 2, "{inv}");
    assert_eq!(inv["totalCpuCapacity"], 160, "{inv}");
    assert_eq!(inv["totalMemoryCapacity"], 8u64 << 30, "{inv}");
    assert!(
        inv["architecture"].as_str().is_some_and(|a| !a.is_empty()),
        "{inv}"
    );
    assert!(!v.to_string().contains("host-secret"), "{v}");
    assert_eq!(
        std::fs::read_to_string(agent.dir.join("host-uuid"))
            .unwrap()
            .trim(),
        host
    );
    // The same machine twice: refused by IP.
    let (s, v) = rest
        .create("/hosts/kvm", add_params(&cluster, ip, ssh))
        .await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(rest.hosts().await.len(), 1);

    // The tracker: a dead agent → Disconnected within interval × maxFailure (+ a round);
    // back → Connected without the operator.
    rest.set_config("host", "ping.interval", "1").await;
    rest.set_config("host", "ping.maxFailure", "2").await;
    agent.kill();
    let took = rest
        .await_status(&host, "Disconnected", Duration::from_secs(30))
        .await;
    println!("agent killed → Disconnected in {took:?}");
    agent.start();
    let took = rest
        .await_status(&host, "Connected", Duration::from_secs(30))
        .await;
    println!("agent restarted → Connected in {took:?}");

    // Primary storage on the host: directories its agent creates, capacity from statvfs.
    let local_dir = td.path().join("ps-local");
    let smp_dir = td.path().join("ps-smp");
    let (s, v) = rest
        .create(
            "/primary-storage/local-storage",
            json!({"zoneUuid": zone, "name": "local", "url": local_dir.to_str().unwrap()}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let local = v["inventory"]["uuid"].as_str().unwrap().to_string();
    let (s, v) = rest
        .create(
            "/primary-storage/smp",
            json!({"zoneUuid": zone, "name": "smp", "url": smp_dir.to_str().unwrap()}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let smp = v["inventory"]["uuid"].as_str().unwrap().to_string();
    assert_eq!(v["inventory"]["status"], "Connecting", "{v}");
    for ps in [&local, &smp] {
        let (s, v) = rest
            .create(
                &format!("/clusters/{cluster}/primary-storage/{ps}"),
                json!({}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
    // The file system both directories are on, as statvfs reports it (f_blocks × f_frsize).
    let out = std::process::Command::new("stat")
        .args(["-f", "-c", "%b %S"])
        .arg(td.path())
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut it = text.split_whitespace().map(|x| x.parse::<u64>().unwrap());
    let fs_total = it.next().unwrap() * it.next().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let pss = loop {
        let (s, v) = rest
            .send(reqwest::Method::GET, "/primary-storage", None)
            .await;
        assert_eq!(s, 200, "{v}");
        let pss = v["inventories"].as_array().unwrap().clone();
        if pss.iter().all(|p| p["status"] == "Connected") {
            break pss;
        }
        assert!(
            Instant::now() < deadline,
            "primary storage not Connected: {pss:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for p in &pss {
        assert_eq!(p["totalPhysicalCapacity"], fs_total, "{p}");
        assert_eq!(p["totalCapacity"], fs_total, "{p}");
        let avail = p["availablePhysicalCapacity"].as_u64().unwrap();
        assert!(avail > 0 && avail <= fs_total, "{p}");
    }
    assert!(
        local_dir.is_dir() && smp_dir.is_dir(),
        "the agent did not create the directories"
    );
    // The directory disappears (a failed disk): the storage is Disconnected.
    std::fs::remove_dir_all(&smp_dir).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = rest
            .send(
                reqwest::Method::GET,
                &format!("/primary-storage/{smp}"),
                None,
            )
            .await;
        let st = v["inventories"][0]["status"].clone();
        if st == "Disconnected" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SMP still {st} without its directory"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Reconnect runs the flow again.
    let actions = format!("/hosts/{host}/actions");
    let (s, v) = rest.action(&actions, "reconnectHost", json!({})).await;
    assert_eq!(
        (s, v["inventory"]["status"].as_str()),
        (200, Some("Connected")),
        "{v}"
    );

    // Maintenance, then delete: the agent forgets the host, so the machine can be re-added.
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
    assert!(
        !agent.dir.join("host-uuid").exists(),
        "delete did not detach the agent"
    );
    let (s, v) = rest
        .create("/hosts/kvm", add_params(&cluster, ip, ssh))
        .await;
    assert_eq!(
        (s, v["inventory"]["status"].as_str()),
        (200, Some("Connected")),
        "{v}"
    );
}
