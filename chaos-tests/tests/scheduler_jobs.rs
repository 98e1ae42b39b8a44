//! Scheduled jobs across two leader kills, on a real 3-node cluster with a pre-installed
//! `zsagent` (libvirt's test driver, 127.0.0.46): a trigger every 2 s for 20 slots drives a
//! `rebootVm` job on a Running VM while the leader is killed (and restarted) twice. Afterwards
//! the committed execution history covers every slot of the trigger exactly once — fired, or
//! skipped by the documented rule (missed its window while no leader ran it) — never twice;
//! every fired slot's API job exists once (its uuid was fixed by the slot's commit) and
//! succeeded; the trigger is Completed.

#[path = "common/agent.rs"]
mod agent;
#[path = "common/world.rs"]
mod world;

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;
use std::time::Instant;

use agent::Agent;
use chaos_tests::cluster::Cluster;
use chaos_tests::cluster::ClusterOpts;
use chaos_tests::zstack_client::ZsClient;
use serde_json::json;
use world::call;
use world::fake_ssh;
use world::http;
use world::wait_connected;

const TIMEOUT: Duration = Duration::from_secs(30);
const IPS: [&str; 1] = ["127.0.0.46"];
const SLOTS: u64 = 20;
const INTERVAL_S: u64 = 2;

fn job(n: u32) -> String {
    format!("{:032x}", 0x5c4e_0000u128 + u128::from(n))
}
/// on. `None` while no leader answers.

#[test]
fn every_slot_fires_once_or_is_skipped_across_two_leader_kills() {
    let mut c = Cluster::start(ClusterOpts::default()).expect("start cluster");
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

    let vm = call(
        &api,
        &n0,
        "org.zstack.header.vm.APICreateVmInstanceMsg",
        json!({"name": "vm", "instanceOfferingUuid": io, "imageUuid": image, "l3NetworkUuids": [l3]}),
        &s,
        &next(),
    )["inventory"]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let sched = call(
        &api,
        &n0,
        "org.zstack.scheduler.APICreateSchedulerJobMsg",
        json!({"name": "reboot", "targetResourceUuid": vm, "type": "rebootVm"}),
        &s,
        &next(),
    )["inventory"]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    // Slot 0 two seconds from now (the cluster's clock is this machine's).
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let trigger = call(
        &api,
        &n0,
        "org.zstack.scheduler.APICreateSchedulerTriggerMsg",
        json!({"name": "every 2 s", "schedulerType": "simple", "schedulerInterval": INTERVAL_S,
               "repeatCount": SLOTS, "startTime": now_s + 2}),
        &s,
        &next(),
    )["inventory"]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    call(
        &api,
        &n0,
        "org.zstack.scheduler.APIAddSchedulerJobToSchedulerTriggerMsg",
        json!({"schedulerJobUuid": sched, "schedulerTriggerUuid": trigger}),
        &s,
        &next(),
    );
    let started = Instant::now();
    let end = Duration::from_secs(2 + SLOTS * INTERVAL_S);

    // Two leader kills inside the trigger's 40 s, each node restarted before the next kill so
    // the cluster keeps its quorum.
    let mut alive = n0.clone();
    for at in [Duration::from_secs(10), Duration::from_secs(24)] {
        std::thread::sleep(at.saturating_sub(started.elapsed()));
        let leader = c.wait_leader(Duration::from_secs(20)).unwrap();
        c.kill9(leader).unwrap();
        eprintln!("killed leader {leader} at {:?}", started.elapsed());
        let survivors: Vec<u64> = c.ids().into_iter().filter(|id| *id != leader).collect();
        let new_leader = c
            .wait_leader_among(&survivors, Duration::from_secs(20))
            .unwrap();
        eprintln!("new leader {new_leader} at {:?}", started.elapsed());
        alive = addr(&c, new_leader);
        c.restart(leader).unwrap();
    }
    std::thread::sleep(end.saturating_sub(started.elapsed()));

    // Settled: the trigger completed and no execution still Submitted.
    let deadline = Instant::now() + Duration::from_secs(30);
    let history = loop {
        let t = api
            .sync(
                &alive,
                "org.zstack.scheduler.APIQuerySchedulerTriggerMsg",
                json!({"conditions": [{"name": "uuid", "op": "=", "value": trigger}]}),
                Some(&s),
                TIMEOUT,
            )
            .map(|r| r.inventories().to_vec())
            .unwrap_or_default();
        let h = api
            .sync(
                &alive,
                "org.zstack.scheduler.APIQuerySchedulerJobHistoryMsg",
                json!({"conditions": [{"name": "schedulerJobUuid", "op": "=", "value": sched}]}),
                Some(&s),
                TIMEOUT,
            )
            .map(|r| r.inventories().to_vec())
            .unwrap_or_default();
        let completed = t.first().is_some_and(|t| t["status"] == "Completed");
        if completed && !h.is_empty() && h.iter().all(|x| x["status"] != "Submitted") {
            break h;
        }
        assert!(
            Instant::now() < deadline,
            "not settled: trigger {t:?} history {h:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };

    // Every slot exactly once, fired or skipped, never twice.
    let mut covered: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut fired = Vec::new();
    for h in &history {
        let (first, last) = (h["slot"].as_u64().unwrap(), h["lastSlot"].as_u64().unwrap());
        for k in first..=last {
            covered
                .entry(k)
                .or_default()
                .push(h["status"].as_str().unwrap().to_string());
        }
        if h["status"] != "Skipped" {
            fired.push(h.clone());
        }
    }
    let twice: Vec<_> = covered.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(twice.is_empty(), "slots resolved twice: {twice:?}");
    let slots: BTreeSet<u64> = covered.keys().copied().collect();
    assert_eq!(slots, (0..SLOTS).collect(), "slots resolved: {covered:?}");
    // The skip rule: a slot is skipped only when missed; at most the slots of the two outages
    // (election + the new leader's barrier), never most of them.
    let skipped = history.iter().filter(|h| h["status"] == "Skipped").count();
    assert!(
        fired.len() as u64 >= SLOTS / 2,
        "only {} of {SLOTS} slots fired: {history:?}",
        fired.len()
    );
    // Each fired slot's API job: one job, once, and it rebooted the VM.
    let mut api_jobs = BTreeSet::new();
    for h in &fired {
        assert_eq!(h["status"], "Succeeded", "{h}");
        let j = h["apiJobUuid"].as_str().unwrap().to_string();
        assert!(api_jobs.insert(j.clone()), "API job {j} named by two slots");
        let r = api
            .wait_job(&alive, &j, Instant::now() + TIMEOUT)
            .unwrap()
            .unwrap_or_else(|| panic!("API job {j} of {h} unknown"))
            .body;
        assert_eq!(r["success"], true, "{r}");
        assert_eq!(r["inventory"]["state"], "Running", "{r}");
    }
    let reboots = api
        .sync(
            &alive,
            "org.zstack.header.vm.APIQueryVmInstanceMsg",
            json!({"conditions": [{"name": "uuid", "op": "=", "value": vm}]}),
            Some(&s),
            TIMEOUT,
        )
        .unwrap()
        .inventories()
        .to_vec();
    assert_eq!(reboots[0]["state"], "Running");
    eprintln!(
        "scheduler across two leader kills: {} slots fired, {} skipped records, {:?} elapsed",
        fired.len(),
        skipped,
        started.elapsed()
    );
}
