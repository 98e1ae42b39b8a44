//! Issue 12's concurrency "done when" on three management nodes: 200 reservations
//! (`AllocateHostResource`) requested in parallel through all three nodes onto two hosts that
//! fit exactly 100 (50 each), with a leader transfer in the middle. Exactly 100 succeed, the
//! other 100 fail with the capacity error (`HOST_ALLOCATION.1000`), and every node's replica
//! shows each host within its capacity, its counters equal to what the successful replies say
//! landed there. A client retries a request that failed for any other reason (a leader change)
//! with the same `resourceUuid`, which the apply answers idempotently.
//!
//! The same scenario on `zsnode-seeded` with `ZSNODE_SEEDED_BUG=overbook` (the apply takes
//! reservations without re-checking) must be caught by the same checks.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use common::add_member;
use common::admin_client;
use common::closed_loop;
use common::data_dir;
use common::login;
use common::ready;
use common::Proc;
use common::Rest;
use serde_json::json;
use serde_json::Value;

/// Two hosts of 16 threads at 25 vCPUs per thread: 400 vCPUs each, so 50 reservations of 8.
const RATIO: &str = "25";
const VCPU: u64 = 8;
const PER_HOST: usize = 50;
const REQUESTS: usize = 200;
const MEM: u64 = 64 << 20;

async fn post(r: &Rest, path: &str, params: Value) -> (u16, Value) {
    r.send(
        reqwest::Method::POST,
        path,
        Some(json!({ "params": params })),
    )
    .await
}

async fn config(r: &Rest, category: &str, name: &str, value: &str) {
    let (s, v) = r
        .send(
            reqwest::Method::PUT,
            &format!("/global-configurations/{category}/{name}/actions"),
            Some(json!({"updateGlobalConfig": {"value": value}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
}

/// How the 200 requests ended.
#[derive(Debug, Default)]
struct Tally {
    /// Host uuid → successful reservations on it.
    placed: HashMap<String, usize>,
    capacity_errors: usize,
    /// Non-capacity failures that were retried (leader changes).
    retried: usize,
    other: Vec<String>,
}

/// One reservation, retried with the same `resourceUuid` while it fails for a reason other
/// than capacity (at most 10 times).
async fn reserve(r: &Rest, target: &str, uuid: &str) -> Result<String, (bool, usize, String)> {
    let mut retried = 0;
    loop {
        let (s, v) = post(
            r,
            &format!("/hosts/{target}/allocate-resource"),
            json!({"strategy": "continuous", "scene": "normal", "vcpu": VCPU.to_string(),
                   "memSize": MEM, "resourceUuid": uuid}),
        )
        .await;
        if s == 200 {
            return Ok(v["inventory"]["uuid"]
                .as_str()
                .unwrap_or_default()
                .to_string());
        }
        if v["error"]["code"] == "HOST_ALLOCATION.1000" {
            return Err((true, retried, v["error"]["details"].to_string()));
        }
        retried += 1;
        if retried >= 10 {
            return Err((false, retried, format!("{s} {v}")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Each host as one node's replica shows it: (uuid, totalCpu, availableCpu).
async fn hosts_on(r: &Rest) -> Vec<(String, u64, u64)> {
    let (s, v) = r.send(reqwest::Method::GET, "/hosts", None).await;
    assert_eq!(s, 200, "{v}");
    v["inventories"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|h| {
            (
                h["uuid"].as_str().unwrap_or_default().to_string(),
                h["totalCpuCapacity"].as_u64().unwrap_or(0),
                h["availableCpuCapacity"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// What the checks found wrong (empty: the run is correct).
fn violations(tally: &Tally, replicas: &[Vec<(String, u64, u64)>]) -> Vec<String> {
    let mut v = Vec::new();
    let ok: usize = tally.placed.values().sum();
    if ok != 2 * PER_HOST {
        v.push(format!(
            "{ok} reservations succeeded, want exactly {}",
            2 * PER_HOST
        ));
    }
    if tally.capacity_errors != REQUESTS - 2 * PER_HOST {
        v.push(format!(
            "{} capacity errors, want {}",
            tally.capacity_errors,
            REQUESTS - 2 * PER_HOST
        ));
    }
    for (h, n) in &tally.placed {
        if *n > PER_HOST {
            v.push(format!(
                "host {h}: {n} reservations acknowledged, it fits {PER_HOST}"
            ));
        }
    }
    for (node, hosts) in replicas.iter().enumerate() {
        for (uuid, total, available) in hosts {
            let want = tally.placed.get(uuid).copied().unwrap_or(0) as u64 * VCPU;
            // Overbooked counters saturate `available` at 0, so compare what is held.
            if total.saturating_sub(*available) != want.min(*total) || want > *total {
                v.push(format!(
                    "node {}: host {uuid}: total {total}, available {available}, acknowledged {want} vCPUs",
                    node + 1
                ));
            }
        }
    }
    v
}

/// Three nodes of `bin`, two test-driver hosts of 16 threads at `ips` in one cluster, the CPU
/// ratio at `ratio`.
struct World {
    _td: tempfile::TempDir,
    nodes: Vec<Proc>,
    _agents: Vec<common::TestAgent>,
    admin: reqwest::Client,
    rests: Vec<Arc<Rest>>,
    cluster: String,
    hosts: Vec<String>,
}

async fn setup(bin: &Path, envs: &[(&str, &str)], ips: [&str; 2], ratio: &str) -> World {
    let td = tempfile::tempdir().unwrap();
    let agent_args = ["--agent-libvirt-uri", "test:///default"];
    let spawn = |id: u64, extra: &[&str]| {
        common::spawn_bin(bin, td.path(), id, extra, "info,openraft=warn", envs)
    };
    let mut nodes = vec![spawn(1, &[&["--init"][..], &agent_args].concat())];
    nodes.push(spawn(2, &agent_args));
    nodes.push(spawn(3, &agent_args));
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
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let session = login(&c, &format!("http://{}/zstack/v1", nodes[0].http)).await;
    let rests: Vec<Arc<Rest>> = nodes
        .iter()
        .map(|p| {
            Arc::new(Rest {
                c: c.clone(),
                base: format!("http://{}/zstack/v1", p.http),
                session: session.clone(),
            })
        })
        .collect();
    let r = &rests[0];
    config(r, "kvm", "allowTestDriver", "true").await;
    config(r, "host", "cpu.overProvisioning.ratio", ratio).await;
    let (_, v) = post(r, "/zones", json!({"name": "z"})).await;
    let zone = v["inventory"]["uuid"].as_str().unwrap().to_string();
    let (_, v) = post(
        r,
        "/clusters",
        json!({"zoneUuid": zone, "name": "c", "hypervisorType": "KVM"}),
    )
    .await;
    let cluster = v["inventory"]["uuid"].as_str().unwrap().to_string();
    let mut hosts = Vec::new();
    for (k, ip) in ips.iter().enumerate() {
        let (s, v) = post(
            r,
            "/hosts/kvm",
            json!({"clusterUuid": cluster, "name": format!("h{k}"), "managementIp": ip,
                   "username": "root", "password": "unused"}),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(
            v["inventory"]["totalCpuCapacity"].as_u64(),
            ratio.parse::<u64>().ok().map(|r| 16 * r),
            "{v}"
        );
        hosts.push(v["inventory"]["uuid"].as_str().unwrap().to_string());
    }

    World {
        _td: td,
        nodes,
        _agents: agents,
        admin,
        rests,
        cluster,
        hosts,
    }
}

async fn run(
    bin: &Path,
    envs: &[(&str, &str)],
    transfer: bool,
    ips: [&str; 2],
) -> (Tally, Vec<Vec<(String, u64, u64)>>) {
    let World {
        nodes,
        admin,
        rests,
        cluster,
        hosts,
        ..
    } = &setup(bin, envs, ips, RATIO).await;
    // Half the requests let the allocator choose in the cluster, half designate a host; they
    // go round-robin to the three nodes, all at once.
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..REQUESTS {
        let rest = rests[k % 3].clone();
        let target = if k % 2 == 0 {
            cluster.clone()
        } else {
            hosts[(k / 2) % 2].clone()
        };
        let uuid = format!("{:08x}{:024x}", 0x5c4e_d000u32, k);
        tasks.spawn(async move { reserve(&rest, &target, &uuid).await });
    }
    if transfer {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = admin
            .post(format!("http://{}/cluster/leader/transfer", nodes[0].http))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        eprintln!("leader transfer during the run: {}", r.status());
    }
    let mut tally = Tally::default();
    while let Some(res) = tasks.join_next().await {
        match res.expect("task") {
            Ok(host) => *tally.placed.entry(host).or_default() += 1,
            Err((true, retried, _)) => {
                tally.capacity_errors += 1;
                tally.retried += retried;
            }
            Err((false, retried, e)) => {
                tally.retried += retried;
                tally.other.push(e);
            }
        }
    }
    eprintln!("{REQUESTS} requests in {:?}: {tally:?}", started.elapsed());
    let mut replicas = Vec::new();
    for rest in rests.iter() {
        replicas.push(hosts_on(rest).await);
    }
    (tally, replicas)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_reservations_through_three_nodes_onto_room_for_one_hundred() {
    let _ = common::zsagent_bin();
    let (tally, replicas) = run(
        Path::new(env!("CARGO_BIN_EXE_zsnode")),
        &[],
        true,
        ["127.0.0.81", "127.0.0.82"],
    )
    .await;
    assert!(
        tally.other.is_empty(),
        "failures other than capacity: {:?}",
        tally.other
    );
    let v = violations(&tally, &replicas);
    assert!(v.is_empty(), "{v:#?}\n{replicas:?}");
    eprintln!(
        "placement_cluster ok=100 capacity_errors=100 retried={}",
        tally.retried
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_checks_catch_an_apply_that_does_not_recheck_capacity() {
    let _ = common::zsagent_bin();
    let Some(bin) = common::seeded_zsnode_bin() else {
        panic!(
            "zsnode-seeded is missing: cargo build -p node --features seeded-bugs --bin zsnode-seeded (deploy/test.sh builds it)"
        );
    };
    let (tally, replicas) = run(
        &bin,
        &[("ZSNODE_SEEDED_BUG", "overbook")],
        false,
        ["127.0.0.83", "127.0.0.84"],
    )
    .await;
    let v = violations(&tally, &replicas);
    eprintln!("seeded=overbook violations={}: {v:#?}", v.len());
    assert!(
        !v.is_empty(),
        "the overbooking build passed the checks: {tally:?}"
    );
}

/// Committed placements per second end to end (REST → any node → placement on its replica →
/// Raft → apply re-check), against the same cluster's plain writes (`CreateZone`) under the
/// same closed-loop concurrency as the peer. `PLACEMENT_BENCH=1` runs it (not in CI: it
/// measures, it asserts nothing but that the calls succeed); `PLACEMENT_BENCH_SECS` sets each
/// phase's length (default 10), `PLACEMENT_BENCH_CLIENTS` the concurrency (default 32).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn placement_bench_committed_placements_per_second() {
    if std::env::var_os("PLACEMENT_BENCH").is_none() {
        eprintln!("skipped: PLACEMENT_BENCH=1 runs the end-to-end placement benchmark");
        return;
    }
    let env_num = |k: &str, d: f64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(d)
    };
    let secs = env_num("PLACEMENT_BENCH_SECS", 10.0);
    let clients = env_num("PLACEMENT_BENCH_CLIENTS", 32.0) as usize;
    let _ = common::zsagent_bin();
    // Ratio 999: 15 984 vCPUs per host, room for every 1-vCPU placement of the run.
    let w = setup(
        Path::new(env!("CARGO_BIN_EXE_zsnode")),
        &[],
        ["127.0.0.85", "127.0.0.86"],
        "999",
    )
    .await;
    let cluster = w.cluster.clone();
    let (placements, ok_p) = closed_loop(&w.rests, clients, secs, move |r, k, n| {
        let cluster = cluster.clone();
        async move {
            let (s, _) = post(
                &r,
                &format!("/hosts/{cluster}/allocate-resource"),
                json!({"strategy": "continuous", "scene": "normal", "vcpu": "1",
                       "memSize": 1 << 20, "resourceUuid": format!("{k:016x}{n:016x}")}),
            )
            .await;
            s == 200
        }
    })
    .await;
    let (writes, ok_w) = closed_loop(&w.rests, clients, secs, |r, k, n| async move {
        let (s, _) = post(&r, "/zones", json!({"name": format!("bench-{k}-{n}")})).await;
        s == 200
    })
    .await;
    println!(
        "placement_bench clients={clients} secs={secs} hosts=2 placements_per_s={placements:.1} ok={ok_p} create_zone_per_s={writes:.1} ok={ok_w} ratio={:.3}",
        placements / writes
    );
    let _ = (&w.nodes, &w.admin, &w.hosts);
}
