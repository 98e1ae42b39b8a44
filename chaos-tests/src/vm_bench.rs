//! VM creates end to end on the host benchmark's cluster: after the simulated hosts are added,
//! a shared-mount-point primary storage, an image store (a real `zsagent` on the test driver at
//! its own loopback address, since simulated hosts keep no image stores), a qcow2 image served
//! over HTTP, a flat L3 with a /16 range and a small instance offering; then `CreateVmInstance`
//! through the ZStack API by concurrent clients spread over the three nodes, each polling its
//! job to the end. Every created VM is then looked up in its host's domain list as the leader
//! reads it from the simulator, so a create counts only when the domain exists.
//! Used by the `host-bench --vm-creates` mode and `chaos-tests/tests/vm_create_bench.rs`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use anyhow::anyhow;
use anyhow::bail;
use anyhow::Context;
use anyhow::Result;
use serde_json::json;
use serde_json::Value;

use crate::cluster::admin_authorization;
use crate::cluster::locate_binary;
use crate::host_bench::cpu_secs;
use crate::host_bench::HostBench;
use crate::zstack_client::new_job_uuid;
use crate::zstack_client::ZsClient;

/// A create that takes longer than this counts as an error.
const CREATE_TIMEOUT: Duration = Duration::from_secs(300);

/// Memory of a benchmark VM: small, so capacity never runs out before addresses do.
const VM_MEMORY: u64 = 16 << 20;

/// What the creates need, set up once per cluster.
pub struct VmSetup {
    /// The image's uuid.
    pub image: String,
    /// The L3 network's uuid.
    pub l3: String,
    /// The instance offering's uuid.
    pub offering: String,
    store: Option<Child>,
}

impl Drop for VmSetup {
    fn drop(&mut self) {
        if let Some(mut c) = self.store.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The figures of one batch of creates.
#[derive(Debug, Clone)]
pub struct CreateRun {
    /// Hosts in the cluster.
    pub hosts: u32,
    /// Concurrent clients.
    pub concurrency: usize,
    /// Creates attempted.
    pub attempted: usize,
    /// Creates answered with a Running VM.
    pub ok: usize,
    /// Creates that failed or timed out.
    pub errors: usize,
    /// Wall time of the batch.
    pub secs: f64,
    /// Per-create latency quantiles (submit to the job's reply), ms.
    pub p50_ms: f64,
    /// See `p50_ms`.
    pub p99_ms: f64,
    /// See `p50_ms`.
    pub max_ms: f64,
    /// Leader CPU over the batch, in percent of one core.
    pub leader_cpu_pct: f64,
    /// Raft entries the leader applied over the batch, per successful create.
    pub entries_per_create: f64,
    /// Mean time from proposal to applied answer on the leader, ms.
    pub proposal_mean_ms: f64,
    /// HTTP requests the three nodes served over the batch, per successful create.
    pub http_per_create: f64,
    /// Distinct hosts the created VMs landed on.
    pub hosts_used: usize,
    /// Leadership moved during the batch (the leader's figures are then NaN).
    pub leader_moved: bool,
    /// What each failed create answered.
    pub failures: Vec<String>,
    /// `(vm uuid, host uuid)` of every Running VM.
    pub placed: Vec<(String, String)>,
}

impl CreateRun {
    /// Successful creates per second of wall time.
    pub fn creates_per_s(&self) -> f64 {
        self.ok as f64 / self.secs.max(1e-9)
    }

    /// The machine-readable line of docs/benchmarks.md.
    pub fn line(&self) -> String {
        format!(
            "bench=vm_create hosts={} concurrency={} attempted={} ok={} errors={} secs={:.1} creates_per_s={:.1} p50_ms={:.0} p99_ms={:.0} max_ms={:.0} leader_cpu_pct={:.1} entries_per_create={:.1} proposal_mean_ms={:.1} http_per_create={:.1} hosts_used={} leader_moved={}",
            self.hosts,
            self.concurrency,
            self.attempted,
            self.ok,
            self.errors,
            self.secs,
            self.creates_per_s(),
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.leader_cpu_pct,
            self.entries_per_create,
            self.proposal_mean_ms,
            self.http_per_create,
            self.hosts_used,
            self.leader_moved
        )
    }
}

/// Serves `body` for any path, each connection in its own thread, for the life of the process
/// (the image is downloaded once by the image store).
fn serve_forever(body: Vec<u8>) -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = l.local_addr()?.port();
    let body = Arc::new(body);
    std::thread::spawn(move || {
        use std::io::Read;
        use std::io::Write;
        for mut s in l.incoming().flatten() {
            let body = body.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes());
                let _ = s.write_all(&body);
            });
        }
    });
    Ok(port)
}

fn uuid_of(v: &Value) -> Result<String> {
    v["inventory"]["uuid"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("no inventory uuid in {v}"))
}

/// The value of the exact series `key` in a `/metrics` page (0 when absent).
fn series(text: &str, key: &str) -> f64 {
    text.lines()
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0.0)
}

/// The sum of every series of family `name` (all label sets).
fn family_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn start_image_store(b: &HostBench, ip: Ipv4Addr) -> Result<Child> {
    let zsnode = crate::cluster::zsnode_bin()?;
    let bin = locate_binary("zsagent", "agent", "ZSAGENT_BIN")?;
    let dir = b.cluster.dir().join(format!("store-{ip}"));
    std::fs::create_dir_all(&dir)?;
    let out = Command::new(zsnode)
        .args(["pki", "agent-cert", "--host", &ip.to_string(), "--out"])
        .arg(dir.join("pki"))
        .arg("--data-dir")
        .arg(&b.cluster.nodes[0].data_dir)
        .output()?;
    if !out.status.success() {
        bail!("agent-cert: {}", String::from_utf8_lossy(&out.stderr));
    }
    let addr = format!("{ip}:{}", proto::agent::DEFAULT_PORT);
    let log = std::fs::File::create(dir.join("agent.log"))?;
    let child = Command::new(bin)
        .args(["run", "--listen", &addr, "--data-dir"])
        .arg(&dir)
        .args(["--libvirt-uri", "test:///default"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&addr).is_err() {
        if Instant::now() > deadline {
            bail!("image store agent did not listen on {addr}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(child)
}

fn wait_connected(b: &mut HostBench, class: &str, uuid: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let node = b.leader_addr()?;
        let r = b.api.sync(
            &node,
            class,
            json!({"conditions": [{"name": "uuid", "op": "=", "value": uuid}]}),
            Some(&b.session),
            Duration::from_secs(30),
        )?;
        if r.inventories().first().map(|x| &x["status"]) == Some(&json!("Connected")) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{class} {uuid} not Connected: {:?}", r.inventories());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn make_image(dir: &Path) -> Result<Vec<u8>> {
    let q = dir.join("bench-image.qcow2");
    let st = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&q)
        .arg("32M")
        .status()
        .context("qemu-img")?;
    if !st.success() {
        bail!("qemu-img create failed");
    }
    let bytes = std::fs::read(&q)?;
    std::fs::remove_file(&q)?;
    Ok(bytes)
}

impl HostBench {
    /// Storage, image, network and offering for VM creates in the bench cluster; the image
    /// store is a `zsagent` on `store_ip`.
    pub fn setup_vms(&mut self, store_ip: Ipv4Addr) -> Result<VmSetup> {
        let mut setup = VmSetup {
            image: String::new(),
            l3: String::new(),
            offering: String::new(),
            store: Some(start_image_store(self, store_ip)?),
        };
        let (zone, cluster) = (self.zone_uuid.clone(), self.cluster_uuid.clone());
        let dir = self.cluster.dir().to_path_buf();
        // Simulated hosts have 32 threads: the ratio keeps vCPUs from being the limit.
        self.set_config("host", "cpu.overProvisioning.ratio", "999")?;
        let ps = uuid_of(&self.call(
            "org.zstack.storage.primary.smp.APIAddSharedMountPointPrimaryStorageMsg",
            json!({"zoneUuid": zone, "name": "bench-smp",
                   "url": dir.join("smp").display().to_string()}),
        )?)?;
        self.call(
            "org.zstack.header.storage.primary.APIAttachPrimaryStorageToClusterMsg",
            json!({"primaryStorageUuid": ps, "clusterUuid": cluster}),
        )?;
        wait_connected(
            self,
            "org.zstack.header.storage.primary.APIQueryPrimaryStorageMsg",
            &ps,
        )?;
        let bs = uuid_of(&self.call(
            "org.zstack.storage.backup.imagestore.APIAddImageStoreBackupStorageMsg",
            json!({"name": "bench-store", "url": dir.join("bs").display().to_string(),
                   "hostname": store_ip.to_string(), "username": "root",
                   "password": "bench-secret"}),
        )?)?;
        self.call(
            "org.zstack.header.storage.backup.APIAttachBackupStorageToZoneMsg",
            json!({"backupStorageUuid": bs, "zoneUuid": zone}),
        )?;
        wait_connected(
            self,
            "org.zstack.header.storage.backup.APIQueryBackupStorageMsg",
            &bs,
        )?;
        let port = serve_forever(make_image(&dir)?)?;
        setup.image = uuid_of(&self.call(
            "org.zstack.header.image.APIAddImageMsg",
            json!({"name": "bench-image", "url": format!("http://127.0.0.1:{port}/img.qcow2"),
                   "format": "qcow2", "mediaType": "RootVolumeTemplate",
                   "backupStorageUuids": [bs]}),
        )?)?;
        let l2 = uuid_of(&self.call(
            "org.zstack.header.network.l2.APICreateL2NoVlanNetworkMsg",
            json!({"zoneUuid": zone, "name": "bench-flat", "physicalInterface": "eth0"}),
        )?)?;
        self.call(
            "org.zstack.header.network.l2.APIAttachL2NetworkToClusterMsg",
            json!({"l2NetworkUuid": l2, "clusterUuid": cluster}),
        )?;
        setup.l3 = uuid_of(&self.call(
            "org.zstack.header.network.l3.APICreateL3NetworkMsg",
            json!({"l2NetworkUuid": l2, "name": "bench-l3"}),
        )?)?;
        self.call(
            "org.zstack.header.network.l3.APIAddIpRangeMsg",
            json!({"l3NetworkUuid": setup.l3, "name": "bench-range", "startIp": "10.20.0.2",
                   "endIp": "10.20.255.250", "netmask": "255.255.0.0", "gateway": "10.20.0.1"}),
        )?;
        setup.offering = uuid_of(&self.call(
            "org.zstack.header.configuration.APICreateInstanceOfferingMsg",
            json!({"name": "bench-small", "cpuNum": 1, "memorySize": VM_MEMORY}),
        )?)?;
        Ok(setup)
    }

    /// `n` creates by `concurrency` clients (closed loop, client k on node k mod 3, each
    /// polling its job on the node it submitted to), named `{prefix}-{i}`.
    pub fn create_vms(
        &mut self,
        setup: &VmSetup,
        prefix: &str,
        n: usize,
        concurrency: usize,
    ) -> Result<CreateRun> {
        let nodes: Vec<String> = self
            .cluster
            .ids()
            .into_iter()
            .map(|id| self.cluster.node(id).http.to_string())
            .collect();
        let id = self.leader()?;
        let leader = self.cluster.node(id).http.to_string();
        let pid = self
            .cluster
            .node(id)
            .pid()
            .ok_or_else(|| anyhow!("leader has no pid"))?;
        let before = self.metrics_text(&leader)?;
        let http_before: f64 = nodes
            .iter()
            .map(|n| {
                self.metrics_text(n)
                    .map(|t| family_sum(&t, "zstack_http_requests_total"))
            })
            .sum::<Result<f64>>()?;
        let next = AtomicUsize::new(0);
        let latencies = Mutex::new(Vec::with_capacity(n));
        let placed = Mutex::new(Vec::with_capacity(n));
        let failures = Mutex::new(Vec::new());
        let errors = AtomicUsize::new(0);
        let session = self.session.clone();
        let cpu0 = cpu_secs(pid)?;
        let started = Instant::now();
        std::thread::scope(|s| {
            for k in 0..concurrency {
                let node = nodes[k % nodes.len().max(1)].clone();
                let (next, latencies, placed, errors, failures, session) =
                    (&next, &latencies, &placed, &errors, &failures, &session);
                s.spawn(move || {
                    let Ok(api) = ZsClient::new(CREATE_TIMEOUT) else {
                        errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    };
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return;
                        }
                        let t = Instant::now();
                        let r = api.call(
                            &node,
                            &node,
                            "org.zstack.header.vm.APICreateVmInstanceMsg",
                            json!({"name": format!("{prefix}-{i}"),
                                   "instanceOfferingUuid": setup.offering,
                                   "imageUuid": setup.image, "l3NetworkUuids": [setup.l3]}),
                            session,
                            &new_job_uuid(),
                            CREATE_TIMEOUT,
                        );
                        let took = t.elapsed().as_secs_f64() * 1000.0;
                        match &r {
                            Ok(Some(r))
                                if r.body["success"] == true
                                    && r.body["inventory"]["state"] == "Running" =>
                            {
                                let inv = &r.body["inventory"];
                                if let (Some(vm), Some(host)) =
                                    (inv["uuid"].as_str(), inv["hostUuid"].as_str())
                                {
                                    if let Ok(mut l) = latencies.lock() {
                                        l.push(took);
                                    }
                                    if let Ok(mut p) = placed.lock() {
                                        p.push((vm.to_string(), host.to_string()));
                                    }
                                    continue;
                                }
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => {
                                let why = match &r {
                                    Ok(Some(r)) => r.body["error"].to_string(),
                                    other => format!("{other:?}"),
                                };
                                if errors.fetch_add(1, Ordering::Relaxed) < 5 {
                                    eprintln!("vm-bench: create {prefix}-{i}: {why}");
                                }
                                if let Ok(mut f) = failures.lock() {
                                    f.push(why);
                                }
                            }
                        }
                    }
                });
            }
        });
        let secs = started.elapsed().as_secs_f64();
        let cpu1 = cpu_secs(pid)?;
        // A leader change under load is a figure of the run, not a reason to lose it; the
        // leader's counters then cover only part of the batch and are left out.
        let leader_moved = self.leader()? != id;
        let after = if leader_moved {
            before.clone()
        } else {
            self.metrics_text(&leader)?
        };
        let http_after: f64 = nodes
            .iter()
            .map(|n| {
                self.metrics_text(n)
                    .map(|t| family_sum(&t, "zstack_http_requests_total"))
            })
            .sum::<Result<f64>>()?;
        let mut lat = latencies
            .into_inner()
            .map_err(|_| anyhow!("a client panicked"))?;
        lat.sort_by(f64::total_cmp);
        let placed = placed
            .into_inner()
            .map_err(|_| anyhow!("a client panicked"))?;
        let ok = placed.len().max(1) as f64;
        let d = |k: &str| series(&after, k) - series(&before, k);
        let proposals = d("zstack_proposal_latency_seconds_count");
        let unless_moved = |x: f64| if leader_moved { f64::NAN } else { x };
        Ok(CreateRun {
            hosts: self.added,
            concurrency,
            attempted: n,
            ok: placed.len(),
            errors: errors.into_inner(),
            secs,
            p50_ms: quantile(&lat, 0.50),
            p99_ms: quantile(&lat, 0.99),
            max_ms: lat.last().copied().unwrap_or(f64::NAN),
            leader_cpu_pct: unless_moved((cpu1 - cpu0) / secs * 100.0),
            entries_per_create: unless_moved(d("zstack_raft_applied_index") / ok),
            proposal_mean_ms: if proposals > 0.0 && !leader_moved {
                d("zstack_proposal_latency_seconds_sum") / proposals * 1000.0
            } else {
                f64::NAN
            },
            http_per_create: (http_after - http_before) / ok,
            leader_moved,
            failures: failures
                .into_inner()
                .map_err(|_| anyhow!("a client panicked"))?,
            hosts_used: placed
                .iter()
                .map(|(_, h)| h)
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            placed,
        })
    }

    /// How many of `run`'s VMs their host's simulator lists as a running domain (the leader
    /// asks each host's agent once). Every VM missing is named on stderr.
    pub fn running_domains(&mut self, run: &CreateRun) -> Result<usize> {
        let mut by_host: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (vm, host) in &run.placed {
            by_host.entry(host).or_default().push(vm);
        }
        let mut found = 0;
        for (host, vms) in by_host {
            let node = self.leader_addr()?;
            let r = self
                .api
                .http()
                .get(format!("http://{node}/cluster/hosts/{host}/domains"))
                .header("Authorization", admin_authorization())
                .send()?;
            if r.status().as_u16() != 200 {
                bail!("domains of host {host}: HTTP {}", r.status());
            }
            let v: Value = r.json()?;
            let running: std::collections::BTreeSet<&str> = v["domains"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|d| d["state"] == "Running")
                .filter_map(|d| d["name"].as_str())
                .collect();
            for vm in vms {
                if running.contains(vm) {
                    found += 1;
                } else {
                    eprintln!("vm-bench: VM {vm} has no running domain on host {host}: {v}");
                }
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_and_families_read_the_metrics_text() {
        let t = "# HELP x\nzstack_raft_applied_index 42\nzstack_http_requests_total{route=\"a\"} 3\nzstack_http_requests_total{route=\"b\"} 4\nzstack_http_requests_totalx 9\n";
        assert_eq!(series(t, "zstack_raft_applied_index"), 42.0);
        assert_eq!(series(t, "missing"), 0.0);
        assert_eq!(family_sum(t, "zstack_http_requests_total"), 7.0);
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&v, 0.5), 3.0);
        assert_eq!(quantile(&v, 0.99), 5.0);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
