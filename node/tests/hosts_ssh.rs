//! AddKVMHost end to end with nothing pre-installed: a real `zsnode` logs in to real sshd
//! hosts (each in a network namespace, tests/common/ssh_host.rs) with the operator's password,
//! installs this build's `zsagent` there with the certificate the cluster CA issued for the
//! host, and connects it (libvirt's test driver). Also: a wrong password, a flow rolled back
//! after the install (the agent is removed again), an agent killed on its host (its supervisor
//! restarts it and the tracker reconnects), and delete. Needs root; skipped with a note
//! otherwise.

mod common;
#[path = "common/ssh_host.rs"]
mod ssh_host;

use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;
use std::time::Instant;

use common::login;
use common::spawn;
use common::Rest;
use serde_json::json;
use serde_json::Value;
use ssh_host::SshHost;

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

    async fn status(&self, uuid: &str) -> Option<String> {
        self.hosts()
            .await
            .iter()
            .find(|h| h["uuid"] == uuid)
            .and_then(|h| h["status"].as_str().map(str::to_string))
    }
}

fn add_params(cluster: &str, name: &str, h: &SshHost, password: &str) -> Value {
    json!({"clusterUuid": cluster, "name": name, "managementIp": h.ip.to_string(),
           "sshPort": h.port, "username": h.user, "password": password})
}

/// Where the installer puts the agent of a non-root login.
fn install_dir(h: &SshHost) -> PathBuf {
    h.home.join(".zstack-agent")
}

/// `zsagent run` processes in the host's namespace (not the supervisor loop, whose argv
/// carries the agent's after its script).
fn agents(h: &SshHost) -> Vec<u32> {
    let exe = format!("{}/bin/zsagent run ", install_dir(h).display());
    h.ns_pids()
        .into_iter()
        .filter(|&p| ssh_host::cmdline(p).starts_with(&exe))
        .collect()
}

/// Poll `f` until it holds, for at most `within`.
async fn eventually(within: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "{what} not within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    start.elapsed()
}

fn agent_log(h: &SshHost) -> String {
    std::fs::read_to_string(install_dir(h).join("agent.log")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_kvm_host_installs_the_agent_over_ssh() {
    if !ssh_host::is_root() {
        eprintln!("skipped: hosts_ssh needs root (network namespaces, useradd, sshd)");
        return;
    }
    let t0 = Instant::now();
    // The installer's default binary is the zsagent next to zsnode: it must be there.
    let _ = common::zsagent_bin();
    let h1 = SshHost::start().expect("test SSH host 1");
    let h2 = SshHost::start().expect("test SSH host 2");
    let td = tempfile::tempdir().unwrap();
    let node = spawn(
        td.path(),
        1,
        &["--init", "--agent-libvirt-uri", "test:///default"],
    );
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let base = format!("http://{}/zstack/v1", node.http);
    let session = login(&c, &base).await;
    let rest = Rest { c, base, session };
    rest.set_config("host", "ping.interval", "1").await;

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

    // Wrong password: refused at the login, naming user@ip; nothing written, nothing installed.
    let (s, v) = rest
        .create(
            "/hosts/kvm",
            add_params(&cluster, "bad-pw", &h2, "not-the-password"),
        )
        .await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["error"]["code"], "HOST.1000", "{v}");
    let details = v["error"]["details"].as_str().unwrap_or_default();
    let who = format!("wrong username or password for {}@{}", h2.user, h2.ip);
    assert!(details.contains(&who), "{who:?} not in {details}");
    assert!(!details.contains(&h2.password) && !v.to_string().contains("not-the-password"));
    assert!(rest.hosts().await.is_empty());
    assert!(!install_dir(&h2).exists() && agents(&h2).is_empty());
    eprintln!("wrong password refused at {:?}", t0.elapsed());

    // The flow fails after the install (test driver not allowed yet): its rollback removes
    // the agent it installed, process and directory.
    let (s, v) = rest
        .create("/hosts/kvm", add_params(&cluster, "h1", &h1, &h1.password))
        .await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["error"]["code"], "HOST.1000", "{v}");
    let details = v["error"]["details"].as_str().unwrap_or_default();
    assert!(details.contains("virtualization=test"), "{details}");
    assert!(rest.hosts().await.is_empty());
    eventually(Duration::from_secs(10), "rolled-back agent removed", || {
        agents(&h1).is_empty() && !install_dir(&h1).exists()
    })
    .await;
    eprintln!("rolled-back install removed at {:?}", t0.elapsed());

    // Both hosts for real.
    rest.set_config("kvm", "allowTestDriver", "true").await;
    let mut uuids = Vec::new();
    for (name, h) in [("h1", &h1), ("h2", &h2)] {
        let start = Instant::now();
        let (s, v) = rest
            .create("/hosts/kvm", add_params(&cluster, name, h, &h.password))
            .await;
        assert_eq!(s, 200, "{v}\nagent log:\n{}", agent_log(h));
        let inv = &v["inventory"];
        assert_eq!(inv["status"], "Connected", "{inv}");
        assert!(inv["cpuNum"].as_u64().unwrap_or(0) > 0, "{inv}");
        assert!(
            inv["totalMemoryCapacity"].as_u64().unwrap_or(0) > 0,
            "{inv}"
        );
        assert!(!v.to_string().contains(&h.password), "{v}");
        let uuid = inv["uuid"].as_str().unwrap().to_string();
        // The agent runs on the host (in its namespace), as the login user, bound to the host.
        let pids = agents(h);
        assert_eq!(pids.len(), 1, "agents in {}: {pids:?}", h.ns);
        assert!(ssh_host::pids_of_uid(h.uid).contains(&pids[0]));
        let cmd = ssh_host::cmdline(pids[0]);
        assert!(cmd.contains(&format!("--listen {}:7272", h.ip)), "{cmd}");
        let dir = install_dir(h);
        assert_eq!(
            std::fs::read_to_string(dir.join("data/host-uuid"))
                .unwrap()
                .trim(),
            uuid
        );
        let key = std::fs::metadata(dir.join("pki/agent.key")).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777,
            0o600
        );
        eprintln!("{name} added (install + connect) in {:?}", start.elapsed());
        uuids.push(uuid);
    }
    let kh = common::data_dir(td.path(), 1).join("ssh/known_hosts");
    let known = std::fs::read_to_string(&kh).unwrap();
    assert!(known.contains(&h1.ip.to_string()) && known.contains(&h2.ip.to_string()));
    let ssh_dir = std::fs::metadata(kh.parent().unwrap()).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&ssh_dir.permissions()) & 0o777,
        0o700
    );

    // Kill host 1's agent on the host: its supervisor starts a new one, which the tracker
    // attaches again (the new agent logs the attach) and the host stays or comes back Connected.
    let old = agents(&h1)[0];
    let log_before = agent_log(&h1).len();
    // SAFETY: a single positive pid of the test host's agent (never 0 or -1).
    unsafe {
        libc::kill(old as libc::pid_t, libc::SIGKILL);
    }
    let restarted = eventually(Duration::from_secs(10), "agent restarted", || {
        agents(&h1).iter().any(|&p| p != old)
    })
    .await;
    let reattached = eventually(Duration::from_secs(20), "restarted agent attached", || {
        agent_log(&h1)
            .get(log_before..)
            .is_some_and(|l| l.contains("restarting") && l.contains("attached"))
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while rest.status(&uuids[0]).await.as_deref() != Some("Connected") {
        assert!(Instant::now() < deadline, "host 1 not Connected again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "agent restarted after {restarted:?}, re-attached {reattached:?} later; Connected at {:?}",
        t0.elapsed()
    );
    assert_eq!(
        rest.status(&uuids[1]).await.as_deref(),
        Some("Connected"),
        "host 2 was disturbed"
    );

    // Maintenance, then delete: the record goes; the agent stays installed (delete detaches it,
    // uninstalling is not part of DeleteHost), unbound so the machine can be added again.
    let actions = format!("/hosts/{}/actions", uuids[0]);
    let (s, v) = rest
        .action(
            &actions,
            "changeHostState",
            json!({"stateEvent": "maintain"}),
        )
        .await;
    assert_eq!(
        (s, v["inventory"]["state"].as_str()),
        (200, Some("Maintenance")),
        "{v}"
    );
    let (s, v) = rest
        .send(
            reqwest::Method::DELETE,
            &format!("/hosts/{}", uuids[0]),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let left: Vec<Value> = rest.hosts().await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["uuid"], uuids[1]);
    assert!(!Path::new(&install_dir(&h1).join("data/host-uuid")).exists());
    assert_eq!(
        agents(&h1).len(),
        1,
        "the deleted host's agent is left running"
    );
    eprintln!("done in {:?}", t0.elapsed());
}
