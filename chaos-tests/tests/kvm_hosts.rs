//! KVM hosts on a real 3-node cluster (mutual TLS between nodes and to agents), through the
//! ZStack wire protocol: two pre-installed `zsagent`s on libvirt's test driver (127.0.0.31 and
//! .32) are added; the leader is killed in the middle of the second AddKVMHost, whose job must
//! end Done or rolled back with no orphan record or binding; the new leader's tracker then marks
//! a host whose agent died Disconnected and reconnects it when the agent returns.

#[path = "common/agent.rs"]
mod agent;

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use std::time::Instant;

use agent::Agent;
use chaos_tests::cluster::Cluster;
use chaos_tests::cluster::ClusterOpts;
use chaos_tests::zstack_client::Submitted;
use chaos_tests::zstack_client::ZsClient;
use serde_json::json;
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(30);

/// A fake SSH server on `ip` (AddKVMHost probes the SSH port before its flow runs).
fn fake_ssh(ip: &str) -> u16 {
    let l = std::net::TcpListener::bind(format!("{ip}:0")).unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::Write;
        for mut s in l.incoming().flatten() {
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n");
        }
    });
    port
}

fn job(n: u32) -> String {
    format!("{:032x}", 0x4057_0000u128 + u128::from(n))
}

fn call(api: &ZsClient, node: &str, class: &str, fields: Value, s: &str, j: &str) -> Value {
    api.call(node, node, class, fields, s, j, TIMEOUT)
        .unwrap()
        .unwrap_or_else(|| panic!("{class} job {j} not done"))
        .body
}

fn hosts(api: &ZsClient, node: &str, session: &str) -> Vec<Value> {
    let r = api
        .sync(
            node,
            "org.zstack.header.host.APIQueryHostMsg",
            json!({"conditions": []}),
            Some(session),
            TIMEOUT,
        )
        .unwrap();
    r.inventories().to_vec()
}

fn status_of(api: &ZsClient, node: &str, session: &str, uuid: &str) -> Option<String> {
    hosts(api, node, session)
        .iter()
        .find(|h| h["uuid"] == uuid)
        .and_then(|h| h["status"].as_str().map(String::from))
}

fn await_status(api: &ZsClient, node: &str, s: &str, uuid: &str, want: &str) -> Duration {
    let start = Instant::now();
    loop {
        let now = status_of(api, node, s, uuid);
        if now.as_deref() == Some(want) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "host {uuid} not {want} after {TIMEOUT:?}: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn hosts_survive_a_leader_kill_during_add_and_stay_tracked() {
    let mut c = Cluster::start(ClusterOpts::default()).expect("start cluster");
    let leader = c.wait_leader(Duration::from_secs(20)).unwrap();
    let addr = |c: &Cluster, id: u64| c.node(id).http.to_string();
    let api = ZsClient::new(TIMEOUT).unwrap();
    let n0 = addr(&c, leader);
    let s = api.login(std::slice::from_ref(&n0), TIMEOUT).unwrap();

    let zone = call(
        &api,
        &n0,
        "org.zstack.header.zone.APICreateZoneMsg",
        json!({"name": "z"}),
        &s,
        &job(1),
    );
    let zone = zone["inventory"]["uuid"].as_str().unwrap().to_string();
    let cl = call(
        &api,
        &n0,
        "org.zstack.header.cluster.APICreateClusterMsg",
        json!({"zoneUuid": zone, "name": "c", "hypervisorType": "KVM"}),
        &s,
        &job(2),
    );
    let cluster = cl["inventory"]["uuid"].as_str().unwrap().to_string();
    for (i, (cat, name, value)) in [
        ("kvm", "allowTestDriver", "true"),
        ("host", "ping.interval", "1"),
        ("host", "ping.maxFailure", "2"),
        ("host", "ping.timeout", "2"),
    ]
    .into_iter()
    .enumerate()
    {
        let r = call(
            &api,
            &n0,
            "org.zstack.core.config.APIUpdateGlobalConfigMsg",
            json!({"category": cat, "name": name, "value": value}),
            &s,
            &job(10 + i as u32),
        );
        assert_eq!(r["success"], true, "{r}");
    }

    let node_dir = c.node(leader).data_dir.clone();
    let mut a1 = Agent::install(&node_dir, &c.dir().join("agent-31"), "127.0.0.31");
    let a2 = Agent::install(&node_dir, &c.dir().join("agent-32"), "127.0.0.32");
    let add = |ip: &str, port: u16| {
        json!({"clusterUuid": cluster, "name": format!("kvm-{ip}"), "managementIp": ip,
               "sshPort": port, "username": "root", "password": "host-secret"})
    };
    let p1 = fake_ssh("127.0.0.31");
    let p2 = fake_ssh("127.0.0.32");
    let r = call(
        &api,
        &n0,
        "org.zstack.kvm.APIAddKVMHostMsg",
        add("127.0.0.31", p1),
        &s,
        &job(20),
    );
    assert_eq!(r["success"], true, "{r}");
    let h1 = r["inventory"]["uuid"].as_str().unwrap().to_string();
    assert_eq!(r["inventory"]["status"], "Connected", "{r}");
    assert_eq!(r["inventory"]["cpuNum"], 8, "{r}");
    assert_eq!(r["inventory"]["totalMemoryCapacity"], 4u64 << 30, "{r}");
    assert_eq!(a1.bound_to().as_deref(), Some(h1.as_str()));

    // The leader dies right after accepting the second add; a survivor finishes the job.
    let j = job(21);
    let submitted = api
        .submit(
            &n0,
            "org.zstack.kvm.APIAddKVMHostMsg",
            add("127.0.0.32", p2),
            &s,
            &j,
            TIMEOUT,
        )
        .unwrap();
    c.kill9(leader).unwrap();
    let survivors: Vec<u64> = c.ids().into_iter().filter(|id| *id != leader).collect();
    let new_leader = c
        .wait_leader_among(&survivors, Duration::from_secs(20))
        .unwrap();
    let n1 = addr(&c, new_leader);
    let reply = match submitted {
        Submitted::Done(r) => r.body,
        Submitted::Processing(_) => {
            api.wait_job(&n1, &j, Instant::now() + Duration::from_secs(60))
                .unwrap()
                .unwrap_or_else(|| panic!("the add's job did not finish after the leader kill"))
                .body
        }
    };
    let listed = hosts(&api, &n1, &s);
    if reply["success"] == true {
        let h2 = reply["inventory"]["uuid"].as_str().unwrap();
        eprintln!("add across the leader kill: Done, host {h2}");
        assert_eq!(status_of(&api, &n1, &s, h2).as_deref(), Some("Connected"));
        assert_eq!(a2.bound_to().as_deref(), Some(h2));
        assert_eq!(listed.len(), 2, "{listed:?}");
    } else {
        eprintln!("add across the leader kill: rolled back: {reply}");
        assert_eq!(
            listed.len(),
            1,
            "a rolled-back add left a record: {listed:?}"
        );
        assert_eq!(
            a2.bound_to(),
            None,
            "a rolled-back add left the agent bound"
        );
    }
    assert!(
        listed.iter().all(|h| h["status"] != "Connecting"),
        "a host stuck Connecting: {listed:?}"
    );

    // The new leader's tracker carries on.
    a1.kill();
    let took = await_status(&api, &n1, &s, &h1, "Disconnected");
    eprintln!("agent killed → Disconnected in {took:?} (interval 1 s × maxFailure 2)");
    a1.start();
    let took = await_status(&api, &n1, &s, &h1, "Connected");
    eprintln!("agent back → Connected in {took:?}");
    c.restart(leader).unwrap();
}

/// An HTTP server on 127.0.0.1 sending `body` at about 512 KiB/s (the leader is killed
/// mid-download).
fn slow_http(body: Vec<u8>) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let body = std::sync::Arc::new(body);
    std::thread::spawn(move || {
        use std::io::Read;
        use std::io::Write;
        for s in l.incoming().flatten() {
            let body = body.clone();
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                if s.write_all(head.as_bytes()).is_err() {
                    return;
                }
                for chunk in body.chunks(128 << 10) {
                    if s.write_all(chunk).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
            });
        }
    });
    port
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

#[test]
fn an_image_add_survives_a_leader_kill_mid_download() {
    let mut c = Cluster::start(ClusterOpts::default()).expect("start cluster");
    let leader = c.wait_leader(Duration::from_secs(20)).unwrap();
    let addr = |c: &Cluster, id: u64| c.node(id).http.to_string();
    let api = ZsClient::new(TIMEOUT).unwrap();
    let n0 = addr(&c, leader);
    let s = api.login(std::slice::from_ref(&n0), TIMEOUT).unwrap();
    let zone = call(
        &api,
        &n0,
        "org.zstack.header.zone.APICreateZoneMsg",
        json!({"name": "z"}),
        &s,
        &job(101),
    );
    let zone = zone["inventory"]["uuid"].as_str().unwrap().to_string();
    let _agent = Agent::install(
        &c.node(leader).data_dir.clone(),
        &c.dir().join("agent-33"),
        "127.0.0.33",
    );
    let bs_dir = c.dir().join("bs");
    let r = call(
        &api,
        &n0,
        "org.zstack.storage.backup.imagestore.APIAddImageStoreBackupStorageMsg",
        json!({"name": "store", "url": bs_dir.to_str().unwrap(), "hostname": "127.0.0.33",
               "username": "root", "password": "bs-secret"}),
        &s,
        &job(102),
    );
    assert_eq!(r["success"], true, "{r}");
    let bs = r["inventory"]["uuid"].as_str().unwrap().to_string();
    let r = call(
        &api,
        &n0,
        "org.zstack.header.storage.backup.APIAttachBackupStorageToZoneMsg",
        json!({"backupStorageUuid": bs, "zoneUuid": zone}),
        &s,
        &job(103),
    );
    assert_eq!(r["success"], true, "{r}");

    // A qcow2 with 4 MiB of data: about 8 s to download.
    let raw = c.dir().join("src.raw");
    let data: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&raw, data).unwrap();
    let q = c.dir().join("src.qcow2");
    assert!(Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(&raw)
        .arg(&q)
        .status()
        .unwrap()
        .success());
    let image = std::fs::read(&q).unwrap();
    let port = slow_http(image.clone());
    let j = job(104);
    let submitted = api
        .submit(
            &n0,
            "org.zstack.header.image.APIAddImageMsg",
            json!({"name": "img", "url": format!("http://127.0.0.1:{port}/img.qcow2"),
                   "format": "qcow2", "mediaType": "RootVolumeTemplate",
                   "backupStorageUuids": [bs]}),
            &s,
            &j,
            TIMEOUT,
        )
        .unwrap();
    assert!(
        matches!(submitted, Submitted::Processing(_)),
        "the download cannot be done yet"
    );
    std::thread::sleep(Duration::from_secs(3));
    c.kill9(leader).unwrap();
    let survivors: Vec<u64> = c.ids().into_iter().filter(|id| *id != leader).collect();
    let new_leader = c
        .wait_leader_among(&survivors, Duration::from_secs(20))
        .unwrap();
    let n1 = addr(&c, new_leader);
    let reply = api
        .wait_job(&n1, &j, Instant::now() + Duration::from_secs(120))
        .unwrap()
        .unwrap_or_else(|| panic!("AddImage did not finish after the leader kill"))
        .body;
    let images = api
        .sync(
            &n1,
            "org.zstack.header.image.APIQueryImageMsg",
            json!({"conditions": []}),
            Some(&s),
            TIMEOUT,
        )
        .unwrap();
    let stored = files_in(&bs_dir.join("images"));
    let partial = files_in(&bs_dir.join(".partial"));
    assert!(
        partial.is_empty(),
        "a partial download was left: {partial:?}"
    );
    if reply["success"] == true {
        let inv = &reply["inventory"];
        eprintln!("AddImage across the leader kill: Done");
        assert_eq!(inv["status"], "Ready", "{inv}");
        assert_eq!(inv["actualSize"], image.len() as u64, "{inv}");
        let uuid = inv["uuid"].as_str().unwrap();
        assert_eq!(
            stored,
            vec![format!("{uuid}.json"), format!("{uuid}.qcow2")],
            "exactly the one image's files"
        );
        let path = inv["backupStorageRefs"][0]["installPath"].as_str().unwrap();
        assert_eq!(std::fs::read(path).unwrap(), image);
        assert_eq!(images.inventories().len(), 1);
    } else {
        eprintln!("AddImage across the leader kill: rolled back: {reply}");
        assert!(
            stored.is_empty(),
            "a rolled-back add left files: {stored:?}"
        );
        assert!(
            images.inventories().is_empty(),
            "a rolled-back add left a record"
        );
    }
    c.restart(leader).unwrap();
}
