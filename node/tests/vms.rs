//! VMs end to end through REST v1 on three management nodes and two real `zsagent`s
//! (libvirt's test driver): hosts added, an image downloaded from an HTTP server this test
//! runs into an image store, a shared-mount-point primary storage, a flat network; then VMs
//! created through every node, and stopped, started, rebooted, paused, resumed, destroyed,
//! recovered and expunged. After every step the API's VM state is compared with the domain
//! list each agent reports and the root volume files on disk.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use common::add_member;
use common::admin_client;
use common::closed_loop;
use common::data_dir;
use common::login;
use common::ready;
use common::spawn;
use common::Proc;
use common::Rest;
use serde_json::json;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

const IPS: [&str; 2] = ["127.0.0.91", "127.0.0.92"];

/// Serves `/img.qcow2` at once.
async fn http_server(image: Vec<u8>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let image = std::sync::Arc::new(image);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let image = image.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    image.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&image).await;
            });
        }
    });
    port
}

/// A small qcow2 image (64 MiB virtual).
fn make_image(dir: &Path) -> Vec<u8> {
    let q = dir.join("src.qcow2");
    let st = Command::new("qemu-img")
        .args(["create", "-f", "qcow2"])
        .arg(&q)
        .arg("64M")
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::read(&q).unwrap()
}

impl Rest {
    async fn post(&self, path: &str, params: Value) -> Value {
        let (s, v) = self
            .send(
                reqwest::Method::POST,
                path,
                Some(json!({ "params": params })),
            )
            .await;
        assert_eq!(s, 200, "POST {path}: {v}");
        v
    }

    async fn action(&self, uuid: &str, action: &str, params: Value) -> (u16, Value) {
        self.send(
            reqwest::Method::PUT,
            &format!("/vm-instances/{uuid}/actions"),
            Some(json!({ action: params })),
        )
        .await
    }

    async fn get(&self, path: &str) -> Value {
        let (s, v) = self.send(reqwest::Method::GET, path, None).await;
        assert_eq!(s, 200, "GET {path}: {v}");
        v
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
}

/// Wait until `path`'s first inventory has `status` Connected.
async fn connected(r: &Rest, path: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let v = r.get(path).await;
        let inv = v["inventories"][0].clone();
        if inv["status"] == "Connected" {
            return inv;
        }
        assert!(Instant::now() < deadline, "{path} not Connected: {inv}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Each host's domains (name → (host, state)), as the leader's admin endpoint lists them from
/// the agents (`GET /cluster/hosts/{uuid}/domains`).
async fn domains(nodes: &[Proc], hosts: &[(String, String)]) -> BTreeMap<String, (String, String)> {
    let c = admin_client();
    let deadline = Instant::now() + Duration::from_secs(30);
    'again: loop {
        assert!(
            Instant::now() < deadline,
            "no leader answered the domain lists"
        );
        let mut out = BTreeMap::new();
        let status: Value = c
            .get(format!("http://{}/cluster/status", nodes[0].http))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let Some(leader) = status["leader_id"].as_u64() else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let p = &nodes[usize::try_from(leader).unwrap() - 1];
        for (host, _) in hosts {
            let r = c
                .get(format!("http://{}/cluster/hosts/{host}/domains", p.http))
                .send()
                .await
                .unwrap();
            if r.status().as_u16() == 409 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue 'again;
            }
            assert_eq!(r.status().as_u16(), 200);
            let v: Value = r.json().await.unwrap();
            for d in v["domains"].as_array().unwrap() {
                let name = d["name"].as_str().unwrap().to_string();
                let prev = out.insert(
                    name.clone(),
                    (host.clone(), d["state"].as_str().unwrap().to_string()),
                );
                assert!(prev.is_none(), "VM {name} has a domain on two hosts");
            }
        }
        return out;
    }
}

/// The API's VMs against the agents' domains and the files on disk: every Running VM has a
/// Running domain on its host, a Paused one a Paused domain, no other VM has a domain, and
/// every VM's root volume file exists.
async fn check(r: &Rest, nodes: &[Proc], hosts: &[(String, String)]) -> Vec<Value> {
    let vms = r.get("/vm-instances").await["inventories"]
        .as_array()
        .cloned()
        .unwrap();
    let mut doms = domains(nodes, hosts).await;
    for vm in &vms {
        let uuid = vm["uuid"].as_str().unwrap();
        let state = vm["state"].as_str().unwrap();
        let dom = doms.remove(uuid);
        match state {
            "Running" | "Paused" => {
                let (host, dstate) =
                    dom.unwrap_or_else(|| panic!("{state} VM {uuid} has no domain"));
                assert_eq!(vm["hostUuid"], json!(host), "VM {uuid} runs elsewhere");
                assert_eq!(dstate, state, "VM {uuid}");
            }
            _ => assert!(dom.is_none(), "{state} VM {uuid} has a domain: {dom:?}"),
        }
        let root = &vm["allVolumes"][0];
        let path = root["installPath"].as_str().unwrap();
        assert!(
            Path::new(path).exists(),
            "VM {uuid}'s root volume {path} is missing"
        );
    }
    assert!(doms.is_empty(), "domains without a VM: {doms:?}");
    vms
}

/// Every host's used CPU is exactly that of the VMs the API says it holds (1 vCPU each):
/// nothing leaked by a migration, nothing held twice.
async fn capacity_matches(r: &Rest, hosts: &[(String, String)]) {
    let vms = r.get("/vm-instances").await["inventories"]
        .as_array()
        .cloned()
        .unwrap();
    for (h, _) in hosts {
        let inv = r.get(&format!("/hosts/{h}")).await["inventories"][0].clone();
        let used = inv["totalCpuCapacity"].as_u64().unwrap()
            - inv["availableCpuCapacity"].as_u64().unwrap();
        let held = vms
            .iter()
            .filter(|v| {
                v["hostUuid"].as_str() == Some(h.as_str())
                    && matches!(v["state"].as_str(), Some("Running" | "Paused"))
            })
            .count() as u64;
        assert_eq!(
            used, held,
            "host {h} holds {used} vCPUs for {held} VMs: {inv}"
        );
    }
}

/// Every primary storage's virtual free space is its measured free space less exactly the
/// sizes of the volumes made on it (over-provisioning ratio 1), read from one inventory so a
/// re-measurement in between cannot skew it; returns the bytes held in all.
async fn storage_holds_the_volumes(r: &Rest) -> u64 {
    let vols = r.get("/volumes").await["inventories"]
        .as_array()
        .cloned()
        .unwrap();
    let mut all = 0;
    for ps in r.get("/primary-storage").await["inventories"]
        .as_array()
        .unwrap()
    {
        let n = |f: &str| ps[f].as_u64().unwrap();
        let held: u64 = vols
            .iter()
            .filter(|v| v["primaryStorageUuid"] == ps["uuid"] && v.get("installPath").is_some())
            .map(|v| v["size"].as_u64().unwrap())
            .sum();
        let free = n("availablePhysicalCapacity").min(n("totalCapacity"));
        assert_eq!(
            free - n("availableCapacity"),
            held,
            "storage {}: available {} of {free} free with {held} bytes of volumes: {vols:?}",
            ps["uuid"],
            n("availableCapacity")
        );
        all += held;
    }
    all
}

/// Three nodes, two test-driver agents on `ips` as hosts of one cluster, a shared-mount-point
/// primary storage, an image store holding a small image, a flat L3 with `range`, and an
/// instance offering of `cpu` vCPUs and `memory` bytes.
async fn setup(
    ips: [&'static str; 2],
    range: (&str, &str, &str),
    cpu: u64,
    memory: u64,
    ratio: &str,
) -> World {
    let td = tempfile::tempdir().unwrap();
    let args = ["--agent-libvirt-uri", "test:///default"];
    let mut nodes = vec![spawn(td.path(), 1, &[&["--init"][..], &args].concat())];
    nodes.push(spawn(td.path(), 2, &args));
    nodes.push(spawn(td.path(), 3, &args));
    let admin = admin_client();
    ready(&admin, &nodes[0]).await;
    add_member(&admin, &nodes[0], &nodes[1]).await;
    add_member(&admin, &nodes[0], &nodes[2]).await;
    let agents: Vec<_> = ips
        .iter()
        .enumerate()
        .map(|(k, ip)| {
            common::TestAgent::install(
                &data_dir(td.path(), 1),
                &td.path().join(format!("agent{k}")),
                ip,
            )
        })
        .collect();
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let session = login(&c, &format!("http://{}/zstack/v1", nodes[0].http)).await;
    let rests: Vec<Rest> = nodes
        .iter()
        .map(|p| Rest {
            c: c.clone(),
            base: format!("http://{}/zstack/v1", p.http),
            session: session.clone(),
        })
        .collect();
    let r = &rests[0];
    r.config("kvm", "allowTestDriver", "true").await;
    r.config("host", "cpu.overProvisioning.ratio", ratio).await;
    // The storage is a directory of the machine's shared disk, whose fill is not this test's:
    // only its own volumes' virtual capacity decides.
    r.config("mevoco", "threshold.primaryStorage.physicalCapacity", "1")
        .await;

    let zone = r.post("/zones", json!({"name": "z"})).await["inventory"]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let cluster = r
        .post(
            "/clusters",
            json!({"zoneUuid": zone, "name": "c", "hypervisorType": "KVM"}),
        )
        .await["inventory"]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let mut hosts = Vec::new();
    for (k, ip) in ips.iter().enumerate() {
        let v = r
            .post(
                "/hosts/kvm",
                json!({"clusterUuid": cluster, "name": format!("h{k}"), "managementIp": ip,
                       "username": "root", "password": "unused"}),
            )
            .await;
        hosts.push((
            v["inventory"]["uuid"].as_str().unwrap().to_string(),
            ip.to_string(),
        ));
    }
    let ps_dir = td.path().join("smp");
    let ps = r
        .post(
            "/primary-storage/smp",
            json!({"zoneUuid": zone, "name": "smp", "url": ps_dir.display().to_string()}),
        )
        .await["inventory"]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    r.post(
        &format!("/clusters/{cluster}/primary-storage/{ps}"),
        json!({}),
    )
    .await;
    connected(r, &format!("/primary-storage/{ps}")).await;

    let bs = r
        .post(
            "/backup-storage/image-store",
            json!({"name": "store", "url": td.path().join("bs").display().to_string(), "hostname": ips[0],
                   "username": "root", "password": "bs-secret"}),
        )
        .await["inventory"]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    r.post(&format!("/zones/{zone}/backup-storage/{bs}"), json!({}))
        .await;
    connected(r, &format!("/backup-storage/{bs}")).await;
    let port = http_server(make_image(td.path())).await;
    let image = r
        .post(
            "/images",
            json!({"name": "img", "url": format!("http://127.0.0.1:{port}/img.qcow2"), "format": "qcow2",
                   "mediaType": "RootVolumeTemplate", "backupStorageUuids": [bs]}),
        )
        .await["inventory"]["uuid"]
        .as_str()
        .unwrap()
        .to_string();

    let l2 = r
        .post(
            "/l2-networks/no-vlan",
            json!({"zoneUuid": zone, "name": "flat", "physicalInterface": "eth0"}),
        )
        .await["inventory"]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    r.post(&format!("/l2-networks/{l2}/clusters/{cluster}"), json!({}))
        .await;
    let l3 = r
        .post("/l3-networks", json!({"l2NetworkUuid": l2, "name": "l3"}))
        .await["inventory"]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    r.post(
        &format!("/l3-networks/{l3}/ip-ranges"),
        json!({"name": "r", "startIp": range.0, "endIp": range.1, "netmask": range.2, "gateway": "10.0.0.1"}),
    )
    .await;
    let io = r
        .post(
            "/instance-offerings",
            json!({"name": "small", "cpuNum": cpu, "memorySize": memory}),
        )
        .await["inventory"]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    World {
        td,
        nodes,
        agents,
        rests,
        hosts,
        image,
        l3,
        io,
    }
}

struct World {
    td: tempfile::TempDir,
    nodes: Vec<Proc>,
    agents: Vec<common::TestAgent>,
    rests: Vec<Rest>,
    hosts: Vec<(String, String)>,
    image: String,
    l3: String,
    io: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vms_on_three_nodes_match_the_agents_domains_after_every_step() {
    let World {
        td: _td,
        nodes,
        mut agents,
        rests,
        hosts,
        image,
        l3,
        io,
    } = setup(
        IPS,
        ("10.0.0.10", "10.0.0.200", "255.255.255.0"),
        1,
        268435456,
        "10",
    )
    .await;
    let r = &rests[0];

    // Six VMs, two through each node.
    let mut vms = Vec::new();
    for k in 0..6 {
        let v = rests[k % 3]
            .post(
                "/vm-instances",
                json!({"name": format!("vm-{k}"), "instanceOfferingUuid": io, "imageUuid": image,
                       "l3NetworkUuids": [l3]}),
            )
            .await;
        assert_eq!(v["inventory"]["state"], "Running", "{v}");
        vms.push(v["inventory"]["uuid"].as_str().unwrap().to_string());
    }
    let all = check(r, &nodes, &hosts).await;
    assert_eq!(all.len(), 6);
    let ips: std::collections::BTreeSet<_> = all
        .iter()
        .map(|v| v["vmNics"][0]["ip"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ips.len(), 6, "every VM has its own address: {ips:?}");
    let on: std::collections::BTreeSet<_> = all
        .iter()
        .map(|v| v["hostUuid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(on.len(), 2, "the VMs spread over both hosts");

    let step = |name: &'static str,
                uuid: String,
                action: &'static str,
                params: Value,
                want: &'static str| {
        let rests = &rests;
        async move {
            let (s, v) = rests[1].action(&uuid, action, params).await;
            assert_eq!(s, 200, "{name}: {v}");
            assert_eq!(v["inventory"]["state"], want, "{name}: {v}");
        }
    };
    step(
        "stop",
        vms[0].clone(),
        "stopVmInstance",
        json!({}),
        "Stopped",
    )
    .await;
    step(
        "cold stop",
        vms[1].clone(),
        "stopVmInstance",
        json!({"type": "cold"}),
        "Stopped",
    )
    .await;
    check(r, &nodes, &hosts).await;
    step(
        "start",
        vms[0].clone(),
        "startVmInstance",
        json!({}),
        "Running",
    )
    .await;
    step(
        "reboot",
        vms[2].clone(),
        "rebootVmInstance",
        json!({}),
        "Running",
    )
    .await;
    step(
        "pause",
        vms[3].clone(),
        "pauseVmInstance",
        json!({}),
        "Paused",
    )
    .await;
    check(r, &nodes, &hosts).await;
    step(
        "resume",
        vms[3].clone(),
        "resumeVmInstance",
        json!({}),
        "Running",
    )
    .await;
    // A stopped VM cannot be paused: ZStack's error, nothing changes.
    let (s, v) = rests[2].action(&vms[1], "pauseVmInstance", json!({})).await;
    assert_eq!(s, 503, "{v}");
    assert!(
        v["error"]["details"]
            .as_str()
            .unwrap_or_default()
            .contains("current vm instance state[Stopped]"),
        "{v}"
    );
    check(r, &nodes, &hosts).await;
    capacity_matches(r, &hosts).await;

    // Live migration: to the other host, chosen by the allocator, then back, named.
    let host_of = |vm: &str| {
        let vm = vm.to_string();
        async move {
            r.get(&format!("/vm-instances/{vm}")).await["inventories"][0]["hostUuid"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let other = |h: &str| {
        hosts
            .iter()
            .map(|(u, _)| u.clone())
            .find(|u| u != h)
            .unwrap()
    };
    let from = host_of(&vms[2]).await;
    let c = r
        .get(&format!("/vm-instances/{}/migration-target-hosts", vms[2]))
        .await;
    let candidates: Vec<&str> = c["inventories"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["uuid"].as_str())
        .collect();
    assert_eq!(candidates, [other(&from).as_str()], "{c}");
    let (s, v) = rests[1].action(&vms[2], "migrateVm", json!({})).await;
    assert_eq!(s, 200, "migrate: {v}");
    assert_eq!(v["inventory"]["state"], "Running", "{v}");
    assert_eq!(v["inventory"]["hostUuid"], json!(other(&from)), "{v}");
    check(r, &nodes, &hosts).await;
    capacity_matches(r, &hosts).await;
    let (s, v) = rests[2]
        .action(&vms[2], "migrateVm", json!({"hostUuid": from}))
        .await;
    assert_eq!(s, 200, "migrate back: {v}");
    assert_eq!(v["inventory"]["hostUuid"], json!(from), "{v}");
    check(r, &nodes, &hosts).await;
    capacity_matches(r, &hosts).await;
    // Its own host, and a stopped VM: ZStack's errors, nothing changes.
    let (s, v) = rests[0]
        .action(&vms[2], "migrateVm", json!({"hostUuid": from}))
        .await;
    assert_eq!(s, 503, "{v}");
    let (s, v) = rests[0].action(&vms[1], "migrateVm", json!({})).await;
    assert_eq!(s, 503, "{v}");
    assert!(
        v["error"]["details"]
            .as_str()
            .unwrap_or_default()
            .contains("current vm instance state[Stopped]"),
        "{v}"
    );
    check(r, &nodes, &hosts).await;
    capacity_matches(r, &hosts).await;

    // Host maintenance evacuates: every running VM of the host lands on the other one.
    let (maintained, _) = hosts[1].clone();
    let evacuees: Vec<String> = r.get("/vm-instances").await["inventories"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["state"] == "Running" && v["hostUuid"] == json!(maintained))
        .map(|v| v["uuid"].as_str().unwrap().to_string())
        .collect();
    assert!(!evacuees.is_empty(), "no running VM to evacuate");
    let (s, v) = r
        .send(
            reqwest::Method::PUT,
            &format!("/hosts/{maintained}/actions"),
            Some(json!({"changeHostState": {"stateEvent": "maintain"}})),
        )
        .await;
    assert_eq!(s, 200, "maintain: {v}");
    assert_eq!(v["inventory"]["state"], "Maintenance", "{v}");
    let after = check(r, &nodes, &hosts).await;
    assert!(
        after
            .iter()
            .all(|vm| vm["hostUuid"].as_str() != Some(maintained.as_str())),
        "a VM is left on the host in maintenance: {after:?}"
    );
    for vm in &evacuees {
        let v = after.iter().find(|v| v["uuid"] == json!(vm)).unwrap();
        assert_eq!(
            v["state"], "Running",
            "an evacuated VM (shared storage) migrates: {v}"
        );
    }
    capacity_matches(r, &hosts).await;
    let (s, v) = r
        .send(
            reqwest::Method::PUT,
            &format!("/hosts/{maintained}/actions"),
            Some(json!({"changeHostState": {"stateEvent": "enable"}})),
        )
        .await;
    assert_eq!(s, 200, "enable: {v}");
    assert_eq!(v["inventory"]["state"], "Enabled", "{v}");

    // Destroy (Delay policy): the domain goes, the root volume stays until expunged.
    let (s, v) = rests[0]
        .send(
            reqwest::Method::DELETE,
            &format!("/vm-instances/{}", vms[4]),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let destroyed = r.get(&format!("/vm-instances/{}", vms[4])).await;
    assert_eq!(destroyed["inventories"][0]["state"], "Destroyed");
    let root = destroyed["inventories"][0]["allVolumes"][0]["installPath"]
        .as_str()
        .unwrap()
        .to_string();
    check(r, &nodes, &hosts).await;
    step(
        "recover",
        vms[4].clone(),
        "recoverVmInstance",
        json!({}),
        "Stopped",
    )
    .await;
    step(
        "start recovered",
        vms[4].clone(),
        "startVmInstance",
        json!({}),
        "Running",
    )
    .await;
    let (s, v) = rests[0]
        .send(
            reqwest::Method::DELETE,
            &format!("/vm-instances/{}", vms[4]),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = rests[2]
        .action(&vms[4], "expungeVmInstance", json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(
        !Path::new(&root).exists(),
        "the expunged VM's volume {root} is still there"
    );
    let left = check(r, &nodes, &hosts).await;
    assert_eq!(left.len(), 5);
    let vols = r.get("/volumes").await["inventories"]
        .as_array()
        .cloned()
        .unwrap();
    assert_eq!(vols.len(), 5, "one root volume per VM: {vols:?}");

    // The expunge timer: a VM destroyed under Delay is expunged once vm.expungePeriod passes.
    r.config("vm", "expungePeriod", "1").await;
    r.config("vm", "expungeInterval", "1").await;
    let (s, v) = rests[1]
        .send(
            reqwest::Method::DELETE,
            &format!("/vm-instances/{}", vms[5]),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let root = left
        .iter()
        .find(|v| v["uuid"] == json!(vms[5]))
        .map(|v| {
            v["allVolumes"][0]["installPath"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = r.get(&format!("/vm-instances/{}", vms[5])).await;
        if v["inventories"].as_array().is_some_and(|a| a.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "never expunged: {v}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        !Path::new(&root).exists(),
        "the expunged VM's volume {root} is still there"
    );
    let left = check(r, &nodes, &hosts).await;
    assert_eq!(left.len(), 4);
    // The expunged VMs' root volumes gave their bytes back: the storage holds the four left.
    let roots: u64 = r.get("/volumes").await["inventories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["size"].as_u64().unwrap())
        .sum();
    assert_eq!(storage_holds_the_volumes(r).await, roots);
    assert_eq!(
        r.get("/volumes").await["inventories"]
            .as_array()
            .map(Vec::len),
        Some(4)
    );

    // Reconciliation: the first host's agent restarts and its test-driver domains are gone;
    // the leader finds its VMs without domains and marks them Stopped, capacity released.
    r.config("vm", "reconcileInterval", "1").await;
    let lost: Vec<String> = left
        .iter()
        .filter(|v| v["state"] == "Running" && v["hostUuid"] == json!(hosts[0].0))
        .map(|v| v["uuid"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !lost.is_empty(),
        "no running VM on the first host: {left:?}"
    );
    agents[0].kill();
    agents[0].start();
    let deadline = Instant::now() + Duration::from_secs(60);
    for uuid in &lost {
        loop {
            let v = r.get(&format!("/vm-instances/{uuid}")).await;
            if v["inventories"][0]["state"] == "Stopped" {
                break;
            }
            assert!(Instant::now() < deadline, "VM {uuid} never reconciled: {v}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let after = check(r, &nodes, &hosts).await;
    let host0 = r.get(&format!("/hosts/{}", hosts[0].0)).await["inventories"][0].clone();
    assert_eq!(
        host0["totalCpuCapacity"], host0["availableCpuCapacity"],
        "the lost VMs' capacity went back: {host0}"
    );
    assert!(after
        .iter()
        .filter(|v| v["hostUuid"] == json!(hosts[1].0))
        .all(|v| v["state"] == "Running"));
}

/// VMs created end to end per second (REST → any node → job → placement and IPs in the log →
/// image cache, root volume and domain on the test-driver agent → Running), `clients` creates
/// in flight, against the same cluster's plain writes (`CreateZone`) at the same concurrency.
/// `VM_BENCH=1` runs it (not in CI: it measures); `VM_BENCH_SECS` (default 10) and
/// `VM_BENCH_CLIENTS` (default 100) set the phases.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vm_bench_creates_per_second() {
    if std::env::var_os("VM_BENCH").is_none() {
        eprintln!("skipped: VM_BENCH=1 runs the VM create benchmark");
        return;
    }
    let num = |k: &str, d: f64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(d)
    };
    let secs = num("VM_BENCH_SECS", 10.0);
    let clients = num("VM_BENCH_CLIENTS", 100.0) as usize;
    // 16 MiB VMs on hosts of 8 GiB (memory ratio 1), vCPU ratio 999, a /16 of addresses.
    let w = setup(
        ["127.0.0.93", "127.0.0.94"],
        ("10.0.0.2", "10.0.255.250", "255.255.0.0"),
        1,
        16 << 20,
        "999",
    )
    .await;
    let rests: Vec<Arc<Rest>> = w
        .rests
        .iter()
        .map(|r| {
            Arc::new(Rest {
                c: reqwest::Client::builder()
                    .timeout(Duration::from_secs(120))
                    .pool_max_idle_per_host(256)
                    .build()
                    .unwrap(),
                base: r.base.clone(),
                session: r.session.clone(),
            })
        })
        .collect();
    let (io, image, l3) = (w.io.clone(), w.image.clone(), w.l3.clone());
    let (creates, ok_c) = closed_loop(&rests, clients, secs, move |r, k, n| {
        let body = json!({"params": {"name": format!("b-{k}-{n}"), "instanceOfferingUuid": io,
                          "imageUuid": image, "l3NetworkUuids": [l3]}});
        async move {
            let (s, v) = r
                .send(reqwest::Method::POST, "/vm-instances", Some(body))
                .await;
            s == 200 && v["inventory"]["state"] == "Running"
        }
    })
    .await;
    let (writes, ok_w) = closed_loop(&rests, clients, secs, |r, k, n| async move {
        let (s, _) = r
            .send(
                reqwest::Method::POST,
                "/zones",
                Some(json!({"params": {"name": format!("bench-{k}-{n}")}})),
            )
            .await;
        s == 200
    })
    .await;
    println!(
        "vm_bench clients={clients} secs={secs} hosts=2 creates_per_s={creates:.1} ok={ok_c} create_zone_per_s={writes:.1} ok={ok_w} ratio={:.3}",
        creates / writes
    );
    let _ = (&w.td, &w.nodes, &w.agents, &w.hosts);
}

/// The files of VM `vm`'s domain on `host`, as its agent lists them (empty without a domain).
async fn domain_disks(nodes: &[Proc], host: &str, vm: &str) -> Vec<String> {
    domain_list(nodes, host, vm, "diskFiles").await
}

/// A list field (`diskFiles`, `nicMacs`) of VM `vm`'s domain on `host`, as its agent lists
/// it (empty without a domain).
async fn domain_list(nodes: &[Proc], host: &str, vm: &str, field: &str) -> Vec<String> {
    let c = admin_client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline,
            "no leader answered the domain list"
        );
        let status: Value = c
            .get(format!("http://{}/cluster/status", nodes[0].http))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let Some(leader) = status["leader_id"].as_u64() else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let p = &nodes[usize::try_from(leader).unwrap() - 1];
        let r = c
            .get(format!("http://{}/cluster/hosts/{host}/domains", p.http))
            .send()
            .await
            .unwrap();
        if r.status().as_u16() != 200 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let v: Value = r.json().await.unwrap();
        return v["domains"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == json!(vm))
            .map(|d| {
                d[field]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f.as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default();
    }
}

/// `qemu-img info` of a file: (virtual size, backing file).
fn qemu_info(path: &str) -> (u64, Option<String>) {
    let out = Command::new("qemu-img")
        .args(["info", "-U", "--output=json", path])
        .output()
        .unwrap();
    assert!(out.status.success(), "qemu-img info {path}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["virtual-size"].as_u64().unwrap(),
        v["backing-filename"].as_str().map(str::to_string),
    )
}

/// The data volume as the API has it equals the file on the agent's storage (virtual size, a
/// blank volume backed by nothing) and the VM's domain (its file among the domain's disks
/// exactly when it is attached to a VM that runs).
async fn check_volume(r: &Rest, nodes: &[Proc], uuid: &str) -> Value {
    let v = r.get(&format!("/volumes/{uuid}")).await["inventories"][0].clone();
    if let Some(path) = v["installPath"].as_str() {
        let (size, backing) = qemu_info(path);
        assert_eq!(
            json!(size),
            v["size"],
            "volume {uuid}: the file's virtual size"
        );
        if v["type"] == "Data" {
            assert_eq!(backing, None, "a data volume is a blank qcow2");
        }
    }
    if let Some(vm) = v["vmInstanceUuid"].as_str() {
        let vm = r.get(&format!("/vm-instances/{vm}")).await["inventories"][0].clone();
        let uuids: Vec<&Value> = vm["allVolumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| &x["uuid"])
            .collect();
        assert!(
            uuids.contains(&&json!(uuid)),
            "the VM lists its volume: {vm}"
        );
        if let Some(host) = vm["hostUuid"].as_str() {
            let disks = domain_disks(nodes, host, vm["uuid"].as_str().unwrap()).await;
            let path = v["installPath"].as_str().unwrap();
            assert!(
                disks.iter().any(|d| d == path),
                "the domain has volume {uuid}'s disk {path}: {disks:?}"
            );
        }
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_volumes_match_the_agents_files_and_domains_after_every_step() {
    let World {
        td: _td,
        nodes,
        agents: _agents,
        rests,
        hosts: _hosts,
        image,
        l3,
        io,
    } = setup(
        ["127.0.0.95", "127.0.0.96"],
        ("10.0.0.10", "10.0.0.200", "255.255.255.0"),
        1,
        268435456,
        "10",
    )
    .await;
    let r = &rests[0];
    let vm = |name: &str, strategy: &str| {
        json!({"name": name, "instanceOfferingUuid": io, "imageUuid": image,
               "l3NetworkUuids": [l3], "strategy": strategy})
    };
    let running = r.post("/vm-instances", vm("vm-run", "InstantStart")).await["inventory"].clone();
    let stopped = r
        .post("/vm-instances", vm("vm-stop", "CreateStopped"))
        .await["inventory"]
        .clone();
    let (vm1, vm2) = (
        running["uuid"].as_str().unwrap().to_string(),
        stopped["uuid"].as_str().unwrap().to_string(),
    );
    let host1 = running["hostUuid"].as_str().unwrap().to_string();
    let mib = 1u64 << 20;
    // The two root volumes hold their size of the storage's virtual capacity.
    let roots = storage_holds_the_volumes(r).await;
    assert!(
        roots >= 2 * 64 * mib,
        "two root volumes of the 64 MiB image: {roots}"
    );

    // Created without storage: NotInstantiated, no file anywhere.
    let created = rests[1]
        .post(
            "/volumes/data",
            json!({"name": "data-1", "diskSize": 64 * mib}),
        )
        .await["inventory"]
        .clone();
    assert_eq!(created["status"], "NotInstantiated", "{created}");
    assert!(created.get("installPath").is_none());
    let vol = created["uuid"].as_str().unwrap().to_string();

    // Attached to the running VM: instantiated on its storage and plugged in live.
    let (s, v) = rests[2]
        .send(
            reqwest::Method::POST,
            &format!("/volumes/{vol}/vm-instances/{vm1}"),
            Some(json!({"params": {}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["inventory"]["status"], "Ready", "{v}");
    assert_eq!(v["inventory"]["deviceId"], 1, "{v}");
    let v = check_volume(r, &nodes, &vol).await;
    let path = v["installPath"].as_str().unwrap().to_string();
    assert_eq!(qemu_info(&path).0, 64 * mib);
    let disks = domain_disks(&nodes, &host1, &vm1).await;
    assert_eq!(disks.len(), 2, "root and data disk: {disks:?}");
    assert_eq!(storage_holds_the_volumes(r).await, roots + 64 * mib);

    // Attached again: ZStack's refusal, nothing changes.
    let (s, v) = r
        .send(
            reqwest::Method::POST,
            &format!("/volumes/{vol}/vm-instances/{vm2}"),
            Some(json!({"params": {}})),
        )
        .await;
    assert_eq!(s, 503, "{v}");
    assert!(
        v["error"]["details"]
            .as_str()
            .unwrap_or_default()
            .contains("can't attach again"),
        "{v}"
    );

    // Resized live (through the running domain), grow only.
    let (s, v) = rests[1]
        .send(
            reqwest::Method::PUT,
            &format!("/volumes/data/resize/{vol}/actions"),
            Some(json!({"resizeDataVolume": {"size": 128 * mib}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["inventory"]["size"], 128 * mib, "{v}");
    check_volume(r, &nodes, &vol).await;
    assert_eq!(qemu_info(&path).0, 128 * mib);
    let (s, v) = rests[1]
        .send(
            reqwest::Method::PUT,
            &format!("/volumes/data/resize/{vol}/actions"),
            Some(json!({"resizeDataVolume": {"size": 64 * mib}})),
        )
        .await;
    assert_eq!(s, 503, "a shrink is refused: {v}");
    assert_eq!(qemu_info(&path).0, 128 * mib);
    assert_eq!(storage_holds_the_volumes(r).await, roots + 128 * mib);

    // Detached live: out of the domain, the file stays.
    let (s, v) = rests[0]
        .send(
            reqwest::Method::DELETE,
            &format!("/volumes/{vol}/vm-instances"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let v = check_volume(r, &nodes, &vol).await;
    assert!(v.get("vmInstanceUuid").is_none(), "{v}");
    assert!(!domain_disks(&nodes, &host1, &vm1).await.contains(&path));
    assert!(Path::new(&path).exists());
    let (s, v) = rests[0]
        .send(
            reqwest::Method::DELETE,
            &format!("/volumes/{vol}/vm-instances"),
            None,
        )
        .await;
    assert_eq!(s, 503, "a detached volume is not detached again: {v}");

    // Attached to the stopped VM (no domain to plug into), resized offline, then the VM starts
    // with the disk.
    let (s, v) = rests[2]
        .send(
            reqwest::Method::POST,
            &format!("/volumes/{vol}/vm-instances/{vm2}"),
            Some(json!({"params": {}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = rests[2]
        .send(
            reqwest::Method::PUT,
            &format!("/volumes/data/resize/{vol}/actions"),
            Some(json!({"resizeDataVolume": {"size": 192 * mib}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    check_volume(r, &nodes, &vol).await;
    assert_eq!(qemu_info(&path).0, 192 * mib);
    assert_eq!(storage_holds_the_volumes(r).await, roots + 192 * mib);
    let (s, v) = r.action(&vm2, "startVmInstance", json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["inventory"]["state"], "Running", "{v}");
    let host2 = v["inventory"]["hostUuid"].as_str().unwrap().to_string();
    assert_eq!(
        v["inventory"]["allVolumes"].as_array().map(Vec::len),
        Some(2),
        "the VM's reply carries its volumes: {v}"
    );
    assert!(domain_disks(&nodes, &host2, &vm2).await.contains(&path));
    check_volume(r, &nodes, &vol).await;

    // The root volume grows too, through the running domain; it stays an overlay of its image.
    let root = running["rootVolumeUuid"].as_str().unwrap().to_string();
    let before = check_volume(r, &nodes, &root).await;
    let root_path = before["installPath"].as_str().unwrap().to_string();
    let bigger = before["size"].as_u64().unwrap() + 64 * mib;
    let (s, v) = rests[1]
        .send(
            reqwest::Method::PUT,
            &format!("/volumes/resize/{root}/actions"),
            Some(json!({"resizeRootVolume": {"size": bigger}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    check_volume(r, &nodes, &root).await;
    let (size, backing) = qemu_info(&root_path);
    assert_eq!(size, bigger);
    assert!(
        backing.is_some(),
        "the root volume keeps its image as backing file"
    );
    assert_eq!(storage_holds_the_volumes(r).await, roots + 256 * mib);

    // Deleted (Delay): detached live, kept with its file; recovered; deleted and expunged:
    // file and record gone.
    let (s, v) = rests[1]
        .send(reqwest::Method::DELETE, &format!("/volumes/{vol}"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    let v = check_volume(r, &nodes, &vol).await;
    assert_eq!(v["status"], "Deleted", "{v}");
    assert!(!domain_disks(&nodes, &host2, &vm2).await.contains(&path));
    assert!(Path::new(&path).exists());
    let (s, v) = rests[2]
        .send(
            reqwest::Method::PUT,
            &format!("/volumes/{vol}/actions"),
            Some(json!({"recoverDataVolume": {}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["inventory"]["status"], "Ready", "{v}");
    let (s, v) = rests[1]
        .send(reqwest::Method::DELETE, &format!("/volumes/{vol}"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = rests[0]
        .send(
            reqwest::Method::PUT,
            &format!("/volumes/{vol}/actions"),
            Some(json!({"expungeDataVolume": {}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(
        !Path::new(&path).exists(),
        "the expunged volume's file {path} is still there"
    );
    assert_eq!(
        r.get(&format!("/volumes/{vol}")).await["inventories"],
        json!([])
    );
    assert_eq!(
        storage_holds_the_volumes(r).await,
        roots + 64 * mib,
        "the expunged volume's bytes are back"
    );
    let vms = r.get("/vm-instances").await["inventories"].clone();
    for vm in vms.as_array().unwrap() {
        assert_eq!(vm["allVolumes"].as_array().unwrap().len(), 1, "{vm}");
    }

    // The expunge timer: a volume deleted under Delay goes, file and record, once
    // volume.expungePeriod passes.
    r.config("volume", "expungePeriod", "1").await;
    r.config("volume", "expungeInterval", "1").await;
    let vol = r
        .post(
            "/volumes/data",
            json!({"name": "data-2", "diskSize": 32 * mib}),
        )
        .await["inventory"]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, v) = r
        .send(
            reqwest::Method::POST,
            &format!("/volumes/{vol}/vm-instances/{vm1}"),
            Some(json!({"params": {}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let path = check_volume(r, &nodes, &vol).await["installPath"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, v) = r
        .send(reqwest::Method::DELETE, &format!("/volumes/{vol}"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(!domain_disks(&nodes, &host1, &vm1).await.contains(&path));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = r.get(&format!("/volumes/{vol}")).await;
        if v["inventories"].as_array().is_some_and(|a| a.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "never expunged: {v}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        !Path::new(&path).exists(),
        "the expunged volume's file {path} is still there"
    );

    assert_eq!(storage_holds_the_volumes(r).await, roots + 64 * mib);

    // Both VMs destroyed and expunged: the storage's virtual free space is its measured free
    // space again.
    for vm in [&vm1, &vm2] {
        let (s, v) = r
            .send(
                reqwest::Method::DELETE,
                &format!("/vm-instances/{vm}"),
                None,
            )
            .await;
        assert_eq!(s, 200, "{v}");
        let (s, v) = r.action(vm, "expungeVmInstance", json!({})).await;
        assert_eq!(s, 200, "{v}");
    }
    assert_eq!(storage_holds_the_volumes(r).await, 0);
}

/// The volume's backing chain as `qemu-img` reads it from the files, the volume's file first.
fn chain_of(path: &str) -> Vec<String> {
    let mut out = vec![path.to_string()];
    while let Some(b) = qemu_info(out.last().unwrap()).1 {
        out.push(b);
    }
    out
}

/// The volume's snapshots as the API has them equal the files on the agent's storage: the
/// volume's file backed by the `latest` snapshot's file (by no snapshot's when none is
/// latest), each snapshot's file there and backed by its parent's, and the domain of a
/// running VM using the volume's path. Returns the snapshots.
async fn check_snapshots(r: &Rest, nodes: &[Proc], volume: &str) -> Vec<Value> {
    let v = check_volume(r, nodes, volume).await;
    let path = v["installPath"].as_str().unwrap().to_string();
    let snaps = r
        .get(&format!(
            "/volume-snapshots?q=volumeUuid={volume}&limit=100"
        ))
        .await["inventories"]
        .as_array()
        .unwrap()
        .clone();
    let chain = chain_of(&path);
    let file = |uuid: &str| {
        snaps
            .iter()
            .find(|s| s["uuid"] == json!(uuid))
            .and_then(|s| s["primaryStorageInstallPath"].as_str())
            .unwrap_or_else(|| panic!("snapshot {uuid} has no file: {snaps:?}"))
            .to_string()
    };
    match snaps.iter().find(|s| s["latest"] == true) {
        Some(l) => assert_eq!(
            chain.get(1),
            Some(&file(l["uuid"].as_str().unwrap())),
            "volume {volume}'s file rests on its latest snapshot: {chain:?}"
        ),
        None => assert!(
            !chain.iter().skip(1).any(|f| f.contains(".snapshots/")),
            "volume {volume} has no latest snapshot but its chain has one: {chain:?}"
        ),
    }
    assert!(snaps.iter().filter(|s| s["latest"] == true).count() <= 1);
    for s in &snaps {
        assert_eq!(s["status"], "Ready", "{s}");
        let f = file(s["uuid"].as_str().unwrap());
        assert!(Path::new(&f).exists(), "snapshot file {f}");
        if let Some(p) = s["parentUuid"].as_str() {
            assert_eq!(
                qemu_info(&f).1,
                Some(file(p)),
                "{f} rests on its parent's file"
            );
        }
    }
    let trees = r
        .get(&format!("/volume-snapshots/trees?q=volumeUuid={volume}"))
        .await["inventories"]
        .as_array()
        .unwrap()
        .clone();
    let current: Vec<&Value> = trees.iter().filter(|t| t["current"] == true).collect();
    assert_eq!(
        current.len(),
        usize::from(snaps.iter().any(|s| s["latest"] == true)),
        "one current tree while a snapshot is latest: {trees:?}"
    );
    snaps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_snapshots_match_the_agents_files_and_domains_after_every_step() {
    let World {
        td: _td,
        nodes,
        agents: _agents,
        rests,
        hosts: _hosts,
        image,
        l3,
        io,
    } = setup(
        ["127.0.0.113", "127.0.0.114"],
        ("10.0.0.10", "10.0.0.200", "255.255.255.0"),
        1,
        268435456,
        "10",
    )
    .await;
    let r = &rests[0];
    // The machine's disk is shared with other builds: the test's volumes are tiny, so the
    // physical-usage threshold of the host's own disk is not what this test is about.
    r.config("mevoco", "threshold.primaryStorage.physicalCapacity", "1.0")
        .await;
    let vm = |name: &str, strategy: &str| {
        json!({"name": name, "instanceOfferingUuid": io, "imageUuid": image,
               "l3NetworkUuids": [l3], "strategy": strategy})
    };
    let running = r.post("/vm-instances", vm("vm-run", "InstantStart")).await["inventory"].clone();
    let stopped = r
        .post("/vm-instances", vm("vm-stop", "CreateStopped"))
        .await["inventory"]
        .clone();
    let vm1 = running["uuid"].as_str().unwrap().to_string();
    let vm2 = stopped["uuid"].as_str().unwrap().to_string();
    let root1 = running["rootVolumeUuid"].as_str().unwrap().to_string();
    let root2 = stopped["rootVolumeUuid"].as_str().unwrap().to_string();
    let snapshot = |volume: String, name: &'static str| {
        let rest = &rests[1];
        async move {
            let (s, v) = rest
                .send(
                    reqwest::Method::POST,
                    &format!("/volumes/{volume}/volume-snapshots"),
                    Some(json!({"params": {"name": name}})),
                )
                .await;
            assert_eq!(s, 200, "{v}");
            assert_eq!(v["inventory"]["status"], "Ready", "{v}");
            v["inventory"]["uuid"].as_str().unwrap().to_string()
        }
    };

    // Live, of the running VM's root volume: the domain keeps the volume's path, now an
    // overlay of the frozen file, itself still backed by the image.
    let s1 = snapshot(root1.clone(), "live").await;
    let snaps = check_snapshots(r, &nodes, &root1).await;
    assert_eq!(snaps.len(), 1);
    let root1_path = check_volume(r, &nodes, &root1).await["installPath"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(chain_of(&root1_path).len(), 3, "volume, snapshot, image");

    // A revert needs the VM stopped: refused with ZStack's words, files untouched.
    let before = chain_of(&root1_path);
    let (s, v) = rests[2]
        .send(
            reqwest::Method::PUT,
            &format!("/volume-snapshots/{s1}/actions"),
            Some(json!({"revertVolumeFromSnapshot": {}})),
        )
        .await;
    assert_eq!(s, 503, "{v}");
    assert!(
        v["error"]["details"]
            .as_str()
            .unwrap_or_default()
            .contains("current vm instance state[Running] doesn't allow to proceed"),
        "{v}"
    );
    assert_eq!(chain_of(&root1_path), before);

    // Offline, a chain of two on the stopped VM's root volume.
    let a = snapshot(root2.clone(), "a").await;
    let b = snapshot(root2.clone(), "b").await;
    let snaps = check_snapshots(r, &nodes, &root2).await;
    let b_inv = snaps.iter().find(|s| s["uuid"] == json!(b)).unwrap();
    assert_eq!(b_inv["parentUuid"], json!(a));
    let root2_path = check_volume(r, &nodes, &root2).await["installPath"]
        .as_str()
        .unwrap()
        .to_string();

    // Revert to a: the volume's file rests on a's, b stays (a branch of the tree).
    let (s, v) = rests[0]
        .send(
            reqwest::Method::PUT,
            &format!("/volume-snapshots/{a}/actions"),
            Some(json!({"revertVolumeFromSnapshot": {}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let snaps = check_snapshots(r, &nodes, &root2).await;
    assert_eq!(snaps.len(), 2);
    assert_eq!(
        snaps.iter().find(|s| s["latest"] == true).unwrap()["uuid"],
        json!(a)
    );
    // A new snapshot now branches from a.
    let c = snapshot(root2.clone(), "c").await;
    let snaps = check_snapshots(r, &nodes, &root2).await;
    assert_eq!(
        snaps.iter().find(|s| s["uuid"] == json!(c)).unwrap()["parentUuid"],
        json!(a)
    );
    let tree = r
        .get(&format!("/volume-snapshots/trees?q=volumeUuid={root2}"))
        .await["inventories"][0]["tree"]
        .clone();
    assert_eq!(tree["inventory"]["uuid"], json!(a), "{tree}");
    assert_eq!(tree["children"].as_array().map(Vec::len), Some(2), "{tree}");

    // Deleting a takes b and c with it: files gone, the volume rebased onto its image.
    let files: Vec<String> = snaps
        .iter()
        .map(|s| s["primaryStorageInstallPath"].as_str().unwrap().to_string())
        .collect();
    let (s, v) = rests[1]
        .send(
            reqwest::Method::DELETE,
            &format!("/volume-snapshots/{a}"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(check_snapshots(r, &nodes, &root2).await.is_empty());
    for f in &files {
        assert!(
            !Path::new(f).exists(),
            "deleted snapshot file {f} is still there"
        );
    }
    assert_eq!(chain_of(&root2_path).len(), 2, "volume and image");
    assert_eq!(
        r.get(&format!("/volume-snapshots/trees?q=volumeUuid={root2}"))
            .await["inventories"],
        json!([])
    );

    // The VM starts on the volume's path.
    let (s, v) = r.action(&vm2, "startVmInstance", json!({})).await;
    assert_eq!(s, 200, "{v}");
    let host2 = v["inventory"]["hostUuid"].as_str().unwrap().to_string();
    assert!(domain_disks(&nodes, &host2, &vm2)
        .await
        .contains(&root2_path));

    // Expunging the VM takes its root volume's snapshots, records and files.
    let s1_file = check_snapshots(r, &nodes, &root1).await[0]["primaryStorageInstallPath"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, v) = r
        .send(
            reqwest::Method::DELETE,
            &format!("/vm-instances/{vm1}"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = r.action(&vm1, "expungeVmInstance", json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert!(
        !Path::new(&s1_file).exists(),
        "{s1_file} outlived its volume"
    );
    assert!(!Path::new(&root1_path).exists());
    assert_eq!(
        r.get(&format!("/volume-snapshots/{s1}")).await["inventories"],
        json!([])
    );
}

/// Every VM's NICs as the API has them against its domain: a Running VM's domain has exactly
/// its NICs' MACs in device order; no address is held by two NICs of one L3; and IPAM agrees
/// (an address a NIC holds is never offered as free). Returns the VMs.
async fn check_nics(r: &Rest, nodes: &[Proc], l3s: &[&str]) -> Vec<Value> {
    let vms = r.get("/vm-instances").await["inventories"]
        .as_array()
        .cloned()
        .unwrap();
    let mut held = BTreeMap::new();
    for vm in &vms {
        let uuid = vm["uuid"].as_str().unwrap();
        let nics = vm["vmNics"].as_array().unwrap();
        for n in nics {
            let key = (
                n["l3NetworkUuid"].as_str().unwrap().to_string(),
                n["ip"].as_str().unwrap().to_string(),
            );
            let prev = held.insert(key.clone(), uuid.to_string());
            assert!(
                prev.is_none(),
                "address {key:?} held twice: {prev:?} and {uuid}"
            );
        }
        if vm["state"] == "Running" {
            let host = vm["hostUuid"].as_str().unwrap();
            let mut by_device: Vec<&Value> = nics.iter().collect();
            by_device.sort_by_key(|n| n["deviceId"].as_u64());
            let want: Vec<String> = by_device
                .iter()
                .map(|n| n["mac"].as_str().unwrap().to_string())
                .collect();
            let macs = domain_list(nodes, host, uuid, "nicMacs").await;
            assert_eq!(macs, want, "VM {uuid}'s domain interfaces");
        }
    }
    for l3 in l3s {
        let free = r
            .get(&format!(
                "/l3-networks/ip/free?l3NetworkUuid={l3}&limit=1000"
            ))
            .await;
        for f in free["inventories"].as_array().unwrap() {
            let ip = f["ip"].as_str().unwrap().to_string();
            assert!(
                !held.contains_key(&(l3.to_string(), ip.clone())),
                "IPAM offers {ip} of {l3}, which a NIC holds"
            );
        }
    }
    vms
}

/// `AttachL3NetworkToVm` through `rest`.
async fn attach_l3(rest: &Rest, vm: &str, l3: &str, params: Value) -> (u16, Value) {
    rest.send(
        reqwest::Method::POST,
        &format!("/vm-instances/{vm}/l3-networks/{l3}"),
        Some(json!({ "params": params })),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nics_match_the_agents_domain_interfaces_after_every_step() {
    let World {
        td: _td,
        nodes,
        agents: _agents,
        rests,
        hosts: _hosts,
        image,
        l3,
        io,
    } = setup(
        ["127.0.0.97", "127.0.0.98"],
        ("10.0.0.10", "10.0.0.200", "255.255.255.0"),
        1,
        268435456,
        "10",
    )
    .await;
    let r = &rests[0];
    // A second network on the same L2, two addresses only.
    let l2 = r.get(&format!("/l3-networks/{l3}")).await["inventories"][0]["l2NetworkUuid"]
        .as_str()
        .unwrap()
        .to_string();
    let l3b = r
        .post("/l3-networks", json!({"l2NetworkUuid": l2, "name": "l3b"}))
        .await["inventory"]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    r.post(
        &format!("/l3-networks/{l3b}/ip-ranges"),
        json!({"name": "rb", "startIp": "10.1.0.10", "endIp": "10.1.0.11", "netmask": "255.255.255.0", "gateway": "10.1.0.1"}),
    )
    .await;
    let l3s = [l3.as_str(), l3b.as_str()];
    let vm = |name: &str, strategy: &str| {
        json!({"name": name, "instanceOfferingUuid": io, "imageUuid": image,
               "l3NetworkUuids": [l3], "strategy": strategy})
    };
    let running = r.post("/vm-instances", vm("vm-run", "InstantStart")).await["inventory"].clone();
    let stopped = r
        .post("/vm-instances", vm("vm-stop", "CreateStopped"))
        .await["inventory"]
        .clone();
    let (vm1, vm2) = (
        running["uuid"].as_str().unwrap().to_string(),
        stopped["uuid"].as_str().unwrap().to_string(),
    );
    check_nics(r, &nodes, &l3s).await;
    // Hot-plugged into the running VM (through a follower): the domain has the new MAC.
    let (s, v) = attach_l3(&rests[1], &vm1, &l3b, json!({})).await;
    assert_eq!(s, 200, "{v}");
    let nics = v["inventory"]["vmNics"].as_array().unwrap().clone();
    assert_eq!(nics.len(), 2, "{v}");
    assert_eq!(nics[1]["ip"], "10.1.0.10", "{v}");
    assert_eq!(nics[1]["deviceId"], 1, "{v}");
    assert_eq!(v["inventory"]["defaultL3NetworkUuid"], json!(l3), "{v}");
    let hot_nic = nics[1]["uuid"].as_str().unwrap().to_string();
    check_nics(r, &nodes, &l3s).await;

    // Attached again: ZStack's refusal, nothing changes.
    let (s, v) = attach_l3(&rests[2], &vm1, &l3b, json!({})).await;
    assert_eq!(s, 503, "{v}");
    assert!(
        v["error"]["details"]
            .as_str()
            .unwrap_or_default()
            .contains("already attached"),
        "{v}"
    );
    // The stopped VM takes the last address as a static one; the record only, no domain.
    let (s, v) = attach_l3(r, &vm2, &l3b, json!({"staticIp": "10.1.0.10"})).await;
    assert_eq!(s, 503, "a taken static IP: {v}");
    let (s, v) = attach_l3(r, &vm2, &l3b, json!({"staticIp": "10.1.0.11"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["inventory"]["vmNics"][1]["ip"], "10.1.0.11", "{v}");
    check_nics(r, &nodes, &l3s).await;
    // A third VM finds l3b full: refused, its NICs and IPAM unchanged.
    let third = r.post("/vm-instances", vm("vm-3", "CreateStopped")).await["inventory"].clone();
    let vm3 = third["uuid"].as_str().unwrap().to_string();
    let (s, v) = attach_l3(r, &vm3, &l3b, json!({})).await;
    assert_eq!(s, 503, "{v}");
    let vm3_now = r.get(&format!("/vm-instances/{vm3}")).await["inventories"][0].clone();
    assert_eq!(vm3_now["vmNics"].as_array().unwrap().len(), 1, "{vm3_now}");
    check_nics(r, &nodes, &l3s).await;

    // Started, the stopped VM's domain is built with both NICs.
    let (s, v) = r.action(&vm2, "startVmInstance", json!({})).await;
    assert_eq!(s, 200, "{v}");
    check_nics(r, &nodes, &l3s).await;

    // Hot-unplugged from the running VM: its address goes back and the third VM gets it.
    let (s, v) = rests[1]
        .send(
            reqwest::Method::DELETE,
            &format!("/vm-instances/nics/{hot_nic}"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["inventory"]["vmNics"].as_array().unwrap().len(), 1, "{v}");
    check_nics(r, &nodes, &l3s).await;
    let (s, v) = attach_l3(r, &vm3, &l3b, json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["inventory"]["vmNics"][1]["ip"], "10.1.0.10", "{v}");
    check_nics(r, &nodes, &l3s).await;
    // An unknown NIC is not found.
    let (s, v) = r
        .send(
            reqwest::Method::DELETE,
            &format!("/vm-instances/nics/{hot_nic}"),
            None,
        )
        .await;
    assert_eq!(s, 503, "{v}");

    // The running second VM's default NIC unplugged: the other NIC's L3 becomes the default.
    let default_nic = api::params::derive_uuid(&vm2, 1);
    let (s, v) = r
        .send(
            reqwest::Method::DELETE,
            &format!("/vm-instances/nics/{default_nic}"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["inventory"]["defaultL3NetworkUuid"], json!(l3b), "{v}");
    let vms = check_nics(r, &nodes, &l3s).await;
    assert_eq!(vms.len(), 3);
    // Stopped and started again, the domain still has exactly the record's NICs.
    let (s, v) = r
        .action(&vm2, "stopVmInstance", json!({"type": "cold"}))
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = r.action(&vm2, "startVmInstance", json!({})).await;
    assert_eq!(s, 200, "{v}");
    check_nics(r, &nodes, &l3s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_of_a_stopped_vm_run_on_copies_of_its_root_volume() {
    let World {
        td: _td,
        nodes,
        agents: _agents,
        rests,
        hosts: _hosts,
        image,
        l3,
        io,
    } = setup(
        ["127.0.0.101", "127.0.0.102"],
        ("10.0.0.10", "10.0.0.200", "255.255.255.0"),
        1,
        268435456,
        "10",
    )
    .await;
    let r = &rests[0];
    let vm = |name: &str, strategy: &str| {
        json!({"name": name, "instanceOfferingUuid": io, "imageUuid": image,
               "l3NetworkUuids": [l3], "strategy": strategy})
    };
    let source = r.post("/vm-instances", vm("source", "InstantStart")).await["inventory"].clone();
    let src = source["uuid"].as_str().unwrap().to_string();
    // Running, its disk is written: refused with ZStack's state text.
    let (s, v) = r
        .action(&src, "cloneVmInstance", json!({"names": ["early"]}))
        .await;
    assert_eq!(s, 503, "{v}");
    assert!(
        v["error"]["details"]
            .as_str()
            .unwrap_or_default()
            .contains("current vm instance state[Running] doesn't allow to proceed"),
        "{v}"
    );
    let (s, v) = r
        .action(&src, "stopVmInstance", json!({"type": "cold"}))
        .await;
    assert_eq!(s, 200, "{v}");
    let src_root = check_volume(r, &nodes, &api::params::derive_uuid(&src, 0)).await;
    let src_path = src_root["installPath"].as_str().unwrap().to_string();
    let (src_size, _) = qemu_info(&src_path);

    // Cloned twice (through a follower): both Running on the agent, each on its own file.
    let (s, v) = rests[1]
        .action(
            &src,
            "cloneVmInstance",
            json!({"names": ["clone-a", "clone-b"]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["result"]["numberOfClonedVm"], 2, "{v}");
    let clones = v["result"]["inventories"].as_array().unwrap().clone();
    let mut ips = vec![source["vmNics"][0]["ip"].clone()];
    let mut macs = vec![source["vmNics"][0]["mac"].clone()];
    for c in &clones {
        let inv = &c["inventory"];
        assert!(c["error"].is_null(), "{c}");
        assert_eq!(inv["state"], "Running", "{c}");
        assert_eq!(inv["cpuNum"], source["cpuNum"], "{c}");
        assert_eq!(inv["memorySize"], source["memorySize"], "{c}");
        let uuid = inv["uuid"].as_str().unwrap();
        let root = check_volume(r, &nodes, &api::params::derive_uuid(uuid, 0)).await;
        let path = root["installPath"].as_str().unwrap();
        assert_ne!(path, src_path);
        let (size, backing) = qemu_info(path);
        assert_eq!(size, src_size, "the copy has the source's virtual size");
        assert_eq!(backing, None, "the copy is standalone");
        let host = inv["hostUuid"].as_str().unwrap();
        assert_eq!(
            domain_disks(&nodes, host, uuid).await,
            vec![path.to_string()]
        );
        ips.push(inv["vmNics"][0]["ip"].clone());
        macs.push(inv["vmNics"][0]["mac"].clone());
    }
    for list in [&ips, &macs] {
        let distinct: std::collections::BTreeSet<String> =
            list.iter().map(ToString::to_string).collect();
        assert_eq!(distinct.len(), 3, "{list:?}");
    }
    let vms = check_nics(r, &nodes, &[l3.as_str()]).await;
    assert_eq!(vms.len(), 3);
    // The source is untouched and still starts.
    let (s, v) = r.action(&src, "startVmInstance", json!({})).await;
    assert_eq!(s, 200, "{v}");
    check_nics(r, &nodes, &[l3.as_str()]).await;
}
