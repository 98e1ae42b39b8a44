//! VMs across a leader kill, on a real 3-node cluster with two pre-installed `zsagent`s
//! (libvirt's test driver, 127.0.0.41 and .42) and a shared-mount-point primary storage: a
//! batch of CreateVmInstance jobs is accepted, the leader is killed in the middle of it, and
//! every job must end Done or rolled back. Afterwards nothing leaked: every Running VM has
//! exactly one domain, on its host; no domain without a VM; one root volume file per VM; one
//! IP per NIC; the hosts' allocated CPU is the VMs' vCPUs. Both hosts' domains are polled
//! through the run: a VM never has domains on two hosts.

#[path = "common/agent.rs"]
mod agent;
#[path = "common/world.rs"]
mod world;

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use agent::Agent;
use chaos_tests::cluster::admin_authorization;
use chaos_tests::cluster::Cluster;
use chaos_tests::cluster::ClusterOpts;
use chaos_tests::zstack_client::Submitted;
use chaos_tests::zstack_client::ZsClient;
use serde_json::json;
use serde_json::Value;
use world::call;
use world::fake_ssh;
use world::http;
use world::query;
use world::wait_connected;

const TIMEOUT: Duration = Duration::from_secs(30);
const IPS: [&str; 2] = ["127.0.0.41", "127.0.0.42"];
const BATCH: u32 = 8;

fn job(n: u32) -> String {
    format!("{:032x}", 0x7e11_0000u128 + u128::from(n))
}

/// The hosts' domains through the leader's admin endpoint: VM uuid → hosts it has a domain
/// on. `None` while no leader answers.
fn domains(c: &Cluster, hosts: &[String]) -> Option<BTreeMap<String, Vec<String>>> {
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .ok()?;
    for id in c.ids() {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut ok = true;
        for h in hosts {
            let r = http
                .get(format!(
                    "http://{}/cluster/hosts/{h}/domains",
                    c.node(id).http
                ))
                .header("Authorization", admin_authorization())
                .send();
            match r {
                Ok(r) if r.status().as_u16() == 200 => {
                    let v: Value = r.json().ok()?;
                    for d in v["domains"].as_array().into_iter().flatten() {
                        out.entry(d["name"].as_str()?.to_string())
                            .or_default()
                            .push(h.clone());
                    }
                }
                _ => {
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            return Some(out);
        }
    }
    None
}

#[test]
fn a_create_batch_survives_a_leader_kill_without_leaks() {
    // A pause before every committed step, so the kill lands inside the creates' flows.
    let mut c = Cluster::start(ClusterOpts {
        env: vec![("ZSNODE_FLOW_STEP_PAUSE_MS".into(), "300".into())],
        ..ClusterOpts::default()
    })
    .expect("start cluster");
    let leader = c.wait_leader(Duration::from_secs(20)).unwrap();
    let addr = |c: &Cluster, id: u64| c.node(id).http.to_string();
    let api = ZsClient::new(TIMEOUT).unwrap();
    let n0 = addr(&c, leader);
    let s = api.login(std::slice::from_ref(&n0), TIMEOUT).unwrap();
    let mut n = 0;
    let mut next = || {
        n += 1;
        job(n)
    };
    for (cat, name, value) in [
        ("kvm", "allowTestDriver", "true"),
        ("host", "ping.interval", "1"),
    ] {
        call(
            &api,
            &n0,
            "org.zstack.core.config.APIUpdateGlobalConfigMsg",
            json!({"category": cat, "name": name, "value": value}),
            &s,
            &next(),
        );
    }
    let zone = call(
        &api,
        &n0,
        "org.zstack.header.zone.APICreateZoneMsg",
        json!({"name": "z"}),
        &s,
        &next(),
    )["inventory"]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let cluster = call(
        &api,
        &n0,
        "org.zstack.header.cluster.APICreateClusterMsg",
        json!({"zoneUuid": zone, "name": "c", "hypervisorType": "KVM"}),
        &s,
        &next(),
    )["inventory"]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let node_dir = c.node(leader).data_dir.clone();
    let _agents: Vec<Agent> = IPS
        .iter()
        .map(|ip| Agent::install(&node_dir, &c.dir().join(format!("agent-{ip}")), ip))
        .collect();
    let mut hosts = Vec::new();
    for ip in IPS {
        let p = fake_ssh(ip);
        let r = call(
            &api,
            &n0,
            "org.zstack.kvm.APIAddKVMHostMsg",
            json!({"clusterUuid": cluster, "name": format!("kvm-{ip}"), "managementIp": ip,
                   "sshPort": p, "username": "root", "password": "host-secret"}),
            &s,
            &next(),
        );
        hosts.push(r["inventory"]["uuid"].as_str().unwrap().to_string());
    }
    let smp = c.dir().join("smp");
    let ps = call(
        &api,
        &n0,
        "org.zstack.storage.primary.smp.APIAddSharedMountPointPrimaryStorageMsg",
        json!({"zoneUuid": zone, "name": "smp", "url": smp.to_str().unwrap()}),
        &s,
        &next(),
    )["inventory"]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    call(
        &api,
        &n0,
        "org.zstack.header.storage.primary.APIAttachPrimaryStorageToClusterMsg",
        json!({"primaryStorageUuid": ps, "clusterUuid": cluster}),
        &s,
        &next(),
    );
    wait_connected(
        &api,
        &n0,
        "org.zstack.header.storage.primary.APIQueryPrimaryStorageMsg",
        &s,
    );
    let bs = call(
        &api,
        &n0,
        "org.zstack.storage.backup.imagestore.APIAddImageStoreBackupStorageMsg",
        json!({"name": "store", "url": c.dir().join("bs").to_str().unwrap(), "hostname": IPS[0],
               "username": "root", "password": "bs-secret"}),
        &s,
        &next(),
    )["inventory"]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    call(
        &api,
        &n0,
        "org.zstack.header.storage.backup.APIAttachBackupStorageToZoneMsg",
        json!({"backupStorageUuid": bs, "zoneUuid": zone}),
        &s,
        &next(),
    );
    let q = c.dir().join("img.qcow2");
    assert!(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&q)
        .arg("32M")
        .status()
        .unwrap()
        .success());
    let port = http(std::fs::read(&q).unwrap());
    let image = call(
        &api,
        &n0,
        "org.zstack.header.image.APIAddImageMsg",
        json!({"name": "img", "url": format!("http://127.0.0.1:{port}/img.qcow2"), "format": "qcow2",
               "mediaType": "RootVolumeTemplate", "backupStorageUuids": [bs]}),
        &s,
        &next(),
    )["inventory"]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let l2 = call(
        &api,
        &n0,
        "org.zstack.header.network.l2.APICreateL2NoVlanNetworkMsg",
        json!({"zoneUuid": zone, "name": "flat", "physicalInterface": "eth0"}),
        &s,
        &next(),
    )["inventory"]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    call(
        &api,
        &n0,
        "org.zstack.header.network.l2.APIAttachL2NetworkToClusterMsg",
        json!({"l2NetworkUuid": l2, "clusterUuid": cluster}),
        &s,
        &next(),
    );
    let l3 = call(
        &api,
        &n0,
        "org.zstack.header.network.l3.APICreateL3NetworkMsg",
        json!({"l2NetworkUuid": l2, "name": "l3"}),
        &s,
        &next(),
    )["inventory"]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    call(
        &api,
        &n0,
        "org.zstack.header.network.l3.APIAddIpRangeMsg",
        json!({"l3NetworkUuid": l3, "name": "r", "startIp": "10.1.0.10", "endIp": "10.1.0.250",
               "netmask": "255.255.255.0", "gateway": "10.1.0.1"}),
        &s,
        &next(),
    );
    let io = call(
        &api,
        &n0,
        "org.zstack.header.configuration.APICreateInstanceOfferingMsg",
        json!({"name": "small", "cpuNum": 1, "memorySize": 134217728u64}),
        &s,
        &next(),
    )["inventory"]["uuid"]
        .as_str()
        .unwrap()
        .to_string();

    // The watcher: a VM with domains on two hosts at any poll is a failure.
    let stop = Arc::new(AtomicBool::new(false));
    let doubles = Arc::new(Mutex::new(Vec::<String>::new()));
    let c = Arc::new(Mutex::new(c));
    let watcher = {
        let (stop, doubles, c, hosts) = (stop.clone(), doubles.clone(), c.clone(), hosts.clone());
        std::thread::spawn(move || {
            let mut polls = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let seen = domains(&c.lock().unwrap(), &hosts);
                if let Some(d) = seen {
                    polls += 1;
                    for (vm, on) in d {
                        if on.len() > 1 {
                            doubles.lock().unwrap().push(format!("{vm} on {on:?}"));
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            polls
        })
    };

    // The batch: accepted by the leader, which dies after the first half is submitted.
    let create = |k: u32| {
        json!({"name": format!("vm-{k}"), "instanceOfferingUuid": io, "imageUuid": image,
               "l3NetworkUuids": [l3]})
    };
    let jobs: Vec<String> = (0..BATCH).map(|k| job(1000 + k)).collect();
    let mut unsent = Vec::new();
    for (k, j) in jobs.iter().enumerate() {
        if k == (BATCH / 2) as usize {
            // The first half is between its steps (300 ms each) when the leader dies.
            std::thread::sleep(Duration::from_millis(700));
            c.lock().unwrap().kill9(leader).unwrap();
        }
        let k = u32::try_from(k).unwrap();
        match api.submit(
            &n0,
            "org.zstack.header.vm.APICreateVmInstanceMsg",
            create(k),
            &s,
            j,
            Duration::from_secs(5),
        ) {
            Ok(Submitted::Done(_) | Submitted::Processing(_)) => {}
            Err(_) => unsent.push(k),
        }
    }
    let survivors: Vec<u64> = c
        .lock()
        .unwrap()
        .ids()
        .into_iter()
        .filter(|id| *id != leader)
        .collect();
    let new_leader = c
        .lock()
        .unwrap()
        .wait_leader_among(&survivors, Duration::from_secs(20))
        .unwrap();
    let n1 = addr(&c.lock().unwrap(), new_leader);
    // What the dead leader could not take is sent again, with the same job uuid, to a survivor.
    for k in &unsent {
        let j = &jobs[*k as usize];
        api.submit(
            &n1,
            "org.zstack.header.vm.APICreateVmInstanceMsg",
            create(*k),
            &s,
            j,
            TIMEOUT,
        )
        .unwrap();
    }
    let (mut done, mut rolled_back) = (0, 0);
    for j in &jobs {
        let r = api
            .wait_job(&n1, j, Instant::now() + Duration::from_secs(120))
            .unwrap()
            .unwrap_or_else(|| panic!("job {j} did not finish after the leader kill"))
            .body;
        if r["success"] == true {
            assert_eq!(r["inventory"]["state"], "Running", "{r}");
            done += 1;
        } else {
            eprintln!("rolled back: {r}");
            rolled_back += 1;
        }
    }
    eprintln!("create batch across the leader kill: {done} Done, {rolled_back} rolled back");
    stop.store(true, Ordering::Relaxed);
    let polls = watcher.join().unwrap();
    assert!(polls > 0, "the watcher never saw the domains");
    let doubles = doubles.lock().unwrap().clone();
    assert!(doubles.is_empty(), "VMs on two hosts: {doubles:?}");

    // Nothing leaked.
    let vms = query(&api, &n1, "org.zstack.header.vm.APIQueryVmInstanceMsg", &s);
    assert_eq!(vms.len(), done, "VM records: {vms:?}");
    let doms = domains(&c.lock().unwrap(), &hosts).expect("domains");
    let running: BTreeSet<String> = vms
        .iter()
        .map(|v| v["uuid"].as_str().unwrap().to_string())
        .collect();
    let with_domain: BTreeSet<String> = doms.keys().cloned().collect();
    assert_eq!(with_domain, running, "domains and VMs differ");
    for v in &vms {
        let on = &doms[v["uuid"].as_str().unwrap()];
        assert_eq!(
            on,
            &vec![v["hostUuid"].as_str().unwrap().to_string()],
            "{v}"
        );
    }
    let files: Vec<String> = std::fs::read_dir(smp.join("volumes"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".qcow2"))
        .collect();
    assert_eq!(files.len(), done, "root volume files: {files:?}");
    let free = api
        .sync(
            &n1,
            "org.zstack.header.network.l3.APIGetFreeIpMsg",
            json!({"l3NetworkUuid": l3, "limit": 1000}),
            Some(&s),
            TIMEOUT,
        )
        .unwrap()
        .inventories()
        .len();
    assert_eq!(241 - free, done, "used IPs");
    let hs = query(&api, &n1, "org.zstack.header.host.APIQueryHostMsg", &s);
    let allocated: u64 = hs
        .iter()
        .map(|h| {
            h["totalCpuCapacity"].as_u64().unwrap() - h["availableCpuCapacity"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(allocated, done as u64, "allocated vCPUs: {hs:?}");
    c.lock().unwrap().restart(leader).unwrap();
}
