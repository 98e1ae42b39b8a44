//! Live migrations across a leader kill, on a real 3-node cluster with two pre-installed
//! `zsagent`s (libvirt's test driver, 127.0.0.43 and .44) and a shared-mount-point primary
//! storage: VMs are created, a MigrateVm of each is accepted, the leader is killed in the middle
//! of them (a pause before every committed step), and every job must end Done (the VM Running
//! on the other host) or rolled back (Running where it was). Both hosts' domains are polled
//! through the run: a VM never runs on two hosts. Afterwards every VM has exactly one domain,
//! running on its host, no domain is without a VM, and each host's allocated CPU is the
//! vCPUs of the VMs on it (nothing leaked on either host). Then a host maintenance across a
//! second leader kill: Done (the host in Maintenance, its VMs migrated) or rolled back (the
//! host Enabled), with the same checks.

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
const IPS: [&str; 2] = ["127.0.0.43", "127.0.0.44"];
const BATCH: u32 = 4;

fn job(n: u32) -> String {
    format!("{:032x}", 0x7e12_0000u128 + u128::from(n))
}

/// The hosts' domains through the leader's admin endpoint: VM uuid → (host, state) of each
/// domain it has. `None` while no leader answers.
fn domains(c: &Cluster, hosts: &[String]) -> Option<BTreeMap<String, Vec<(String, String)>>> {
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .ok()?;
    for id in c.ids() {
        let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
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
                            .push((h.clone(), d["state"].as_str()?.to_string()));
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
fn migrations_survive_a_leader_kill_and_never_run_a_vm_twice() {
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

    // The VMs, before anything is killed.
    let mut vms: Vec<(String, String)> = Vec::new();
    for k in 0..BATCH {
        let v = call(
            &api,
            &n0,
            "org.zstack.header.vm.APICreateVmInstanceMsg",
            json!({"name": format!("vm-{k}"), "instanceOfferingUuid": io, "imageUuid": image,
                   "l3NetworkUuids": [l3]}),
            &s,
            &next(),
        );
        vms.push((
            v["inventory"]["uuid"].as_str().unwrap().to_string(),
            v["inventory"]["hostUuid"].as_str().unwrap().to_string(),
        ));
    }

    let c = Arc::new(Mutex::new(c));
    let watcher = Watcher::start(c.clone(), hosts.clone());

    // The migrations: accepted by the leader, which dies while they are between steps.
    let migrate = |vm: &str| json!({"vmInstanceUuid": vm});
    let jobs: Vec<String> = (0..BATCH).map(|k| job(1000 + k)).collect();
    let mut unsent = Vec::new();
    for (k, (vm, _)) in vms.iter().enumerate() {
        match api.submit(
            &n0,
            "org.zstack.header.vm.APIMigrateVmMsg",
            migrate(vm),
            &s,
            &jobs[k],
            Duration::from_secs(5),
        ) {
            Ok(Submitted::Done(_) | Submitted::Processing(_)) => {}
            Err(_) => unsent.push(k),
        }
    }
    std::thread::sleep(Duration::from_millis(700));
    c.lock().unwrap().kill9(leader).unwrap();
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
    for k in &unsent {
        api.submit(
            &n1,
            "org.zstack.header.vm.APIMigrateVmMsg",
            migrate(&vms[*k].0),
            &s,
            &jobs[*k],
            TIMEOUT,
        )
        .unwrap();
    }
    let (mut done, mut rolled_back) = (0, 0);
    for (k, j) in jobs.iter().enumerate() {
        let r = api
            .wait_job(&n1, j, Instant::now() + Duration::from_secs(120))
            .unwrap()
            .unwrap_or_else(|| panic!("job {j} did not finish after the leader kill"))
            .body;
        let (vm, from) = &vms[k];
        if r["success"] == true {
            assert_eq!(r["inventory"]["state"], "Running", "{r}");
            assert_ne!(r["inventory"]["hostUuid"], json!(from), "{r}");
            done += 1;
        } else {
            eprintln!("rolled back: {r}");
            let now = query(&api, &n1, "org.zstack.header.vm.APIQueryVmInstanceMsg", &s);
            let v = now.iter().find(|v| v["uuid"] == json!(vm)).unwrap();
            assert_eq!(v["state"], "Running", "a rolled-back migration: {v}");
            assert_eq!(v["hostUuid"], json!(from), "a rolled-back migration: {v}");
            rolled_back += 1;
        }
    }
    eprintln!("migrations across the leader kill: {done} Done, {rolled_back} rolled back");
    watcher.finish();
    nothing_leaked(&api, &n1, &s, &c, &hosts);

    // Host maintenance across a second leader kill: the first node back, then the leader
    // dies while the maintenance's evacuation is in flight.
    c.lock().unwrap().restart(leader).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let vms = query(&api, &n1, "org.zstack.header.vm.APIQueryVmInstanceMsg", &s);
    let maintained = vms[0]["hostUuid"].as_str().unwrap().to_string();
    let evacuees = vms
        .iter()
        .filter(|v| v["hostUuid"] == json!(maintained))
        .count();
    let watcher = Watcher::start(c.clone(), hosts.clone());
    let j = job(2000);
    let maintain = json!({"uuid": maintained, "stateEvent": "maintain"});
    let sent = api
        .submit(
            &n1,
            "org.zstack.header.host.APIChangeHostStateMsg",
            maintain.clone(),
            &s,
            &j,
            Duration::from_secs(5),
        )
        .is_ok();
    std::thread::sleep(Duration::from_millis(700));
    c.lock().unwrap().kill9(new_leader).unwrap();
    let survivors: Vec<u64> = c
        .lock()
        .unwrap()
        .ids()
        .into_iter()
        .filter(|id| *id != new_leader)
        .collect();
    let third = c
        .lock()
        .unwrap()
        .wait_leader_among(&survivors, Duration::from_secs(20))
        .unwrap();
    let n2 = addr(&c.lock().unwrap(), third);
    if !sent {
        api.submit(
            &n2,
            "org.zstack.header.host.APIChangeHostStateMsg",
            maintain,
            &s,
            &j,
            TIMEOUT,
        )
        .unwrap();
    }
    let r = api
        .wait_job(&n2, &j, Instant::now() + Duration::from_secs(120))
        .unwrap()
        .unwrap_or_else(|| panic!("maintenance job {j} did not finish after the leader kill"))
        .body;
    let hs = query(&api, &n2, "org.zstack.header.host.APIQueryHostMsg", &s);
    let h = hs.iter().find(|h| h["uuid"] == json!(maintained)).unwrap();
    let vms = query(&api, &n2, "org.zstack.header.vm.APIQueryVmInstanceMsg", &s);
    if r["success"] == true {
        assert_eq!(h["state"], "Maintenance", "{h}");
        assert!(
            vms.iter().all(|v| v["hostUuid"] != json!(maintained)),
            "a VM is left on the host in maintenance: {vms:?}"
        );
    } else {
        eprintln!("maintenance rolled back: {r}");
        assert_eq!(h["state"], "Enabled", "a rolled-back maintenance: {h}");
    }
    eprintln!(
        "maintenance across the leader kill: {} ({evacuees} VMs on the host)",
        if r["success"] == true {
            "Done"
        } else {
            "rolled back"
        }
    );
    watcher.finish();
    nothing_leaked(&api, &n2, &s, &c, &hosts);
    c.lock().unwrap().restart(new_leader).unwrap();
}

/// Polls both hosts' domains until finished: a VM running (or paused) on two hosts at any
/// poll is a failure. The hosts are read one after the other, so a migration finishing
/// between two reads looks like a double; they are read again in the reverse order, and a VM
/// live on both hosts in both passes (A, B, then B, A) ran on two hosts at once, whichever way
/// it was moving.
struct Watcher {
    stop: Arc<AtomicBool>,
    doubles: Arc<Mutex<Vec<String>>>,
    thread: std::thread::JoinHandle<u32>,
}

impl Watcher {
    fn start(c: Arc<Mutex<Cluster>>, hosts: Vec<String>) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let doubles = Arc::new(Mutex::new(Vec::<String>::new()));
        let (stop2, doubles2) = (stop.clone(), doubles.clone());
        let reversed: Vec<String> = hosts.iter().rev().cloned().collect();
        let live_twice = |d: &BTreeMap<String, Vec<(String, String)>>| -> BTreeSet<String> {
            d.iter()
                .filter(|(_, on)| {
                    on.iter()
                        .filter(|(_, st)| st == "Running" || st == "Paused")
                        .count()
                        > 1
                })
                .map(|(vm, _)| vm.clone())
                .collect()
        };
        let thread = std::thread::spawn(move || {
            let mut polls = 0u32;
            while !stop2.load(Ordering::Relaxed) {
                let first = domains(&c.lock().unwrap(), &hosts);
                let second = domains(&c.lock().unwrap(), &reversed);
                if let (Some(a), Some(b)) = (first, second) {
                    polls += 1;
                    for vm in live_twice(&a).intersection(&live_twice(&b)) {
                        doubles2
                            .lock()
                            .unwrap()
                            .push(format!("{vm} on {:?} then {:?}", a[vm], b[vm]));
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            polls
        });
        Watcher {
            stop,
            doubles,
            thread,
        }
    }

    fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let polls = self.thread.join().unwrap();
        assert!(polls > 0, "the watcher never saw the domains");
        let doubles = self.doubles.lock().unwrap().clone();
        assert!(doubles.is_empty(), "VMs running on two hosts: {doubles:?}");
    }
}

/// One running domain per VM, on its host, no domain without a VM; each host's used CPU is
/// that of the VMs on it.
fn nothing_leaked(api: &ZsClient, node: &str, s: &str, c: &Mutex<Cluster>, hosts: &[String]) {
    let vms = query(api, node, "org.zstack.header.vm.APIQueryVmInstanceMsg", s);
    assert_eq!(vms.len(), BATCH as usize, "VM records: {vms:?}");
    let doms = domains(&c.lock().unwrap(), hosts).expect("domains");
    let recorded: BTreeSet<String> = vms
        .iter()
        .map(|v| v["uuid"].as_str().unwrap().to_string())
        .collect();
    let with_domain: BTreeSet<String> = doms.keys().cloned().collect();
    assert_eq!(with_domain, recorded, "domains and VMs differ");
    for v in &vms {
        assert_eq!(v["state"], "Running", "{v}");
        let on = &doms[v["uuid"].as_str().unwrap()];
        assert_eq!(
            on,
            &vec![(
                v["hostUuid"].as_str().unwrap().to_string(),
                "Running".to_string()
            )],
            "{v}"
        );
    }
    let hs = query(api, node, "org.zstack.header.host.APIQueryHostMsg", s);
    for h in &hs {
        let used =
            h["totalCpuCapacity"].as_u64().unwrap() - h["availableCpuCapacity"].as_u64().unwrap();
        let held = vms.iter().filter(|v| v["hostUuid"] == h["uuid"]).count() as u64;
        assert_eq!(
            used, held,
            "host {} holds {used} vCPUs for {held} VMs",
            h["uuid"]
        );
    }
}
