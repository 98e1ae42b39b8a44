//! The host tracker under load: a 3-node cluster, `zsagent --simulate` processes serving N hosts
//! on consecutive loopback addresses (at most [`HOSTS_PER_SIMULATOR`] per process) (each with an SSH banner so AddKVMHost's probe passes), the
//! hosts added through the ZStack API, then the leader measured over a window: its CPU share
//! from `/proc/<pid>/stat`, and round time, missed deadlines and pings from its `/metrics`.
//! Used by `chaos-tests/tests/host_tracking.rs` (short, no timing assertions) and the
//! `host-bench` binary (the ramp recorded in docs/benchmarks.md).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use anyhow::anyhow;
use anyhow::bail;
use anyhow::Context;
use anyhow::Result;
use serde_json::json;
use serde_json::Value;

use crate::cluster::locate_binary;
use crate::cluster::Cluster;
use crate::cluster::ClusterOpts;
use crate::zstack_client::new_job_uuid;
use crate::zstack_client::ZsClient;

const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Hosts one simulator process serves. Each simulated host holds about three descriptors (its
/// gRPC and banner listeners and the leader's connection); the machines here cap a process at
/// 20 000 open files and refuse raising the hard limit, so 10 000 hosts need several processes.
pub const HOSTS_PER_SIMULATOR: u32 = 2500;

/// A running cluster with a simulator and the hosts added so far.
pub struct HostBench {
    /// The management nodes.
    pub cluster: Cluster,
    agents: Vec<Child>,
    pub(crate) api: ZsClient,
    pub(crate) session: String,
    pub(crate) zone_uuid: String,
    pub(crate) cluster_uuid: String,
    base_ip: Ipv4Addr,
    ssh_port: u16,
    capacity: u32,
    /// Hosts added (the first `added` simulated addresses).
    pub added: u32,
    /// AddKVMHost calls that did not succeed.
    pub add_errors: usize,
}

/// Leader figures over one measuring window.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Wall time of the window.
    pub secs: f64,
    /// Leader process CPU (user + system) over wall time, in percent of one core.
    pub leader_cpu_pct: f64,
    /// CPU of all simulator processes over wall time, in percent of one core.
    pub agent_cpu_pct: f64,
    /// Rounds completed in the window.
    pub rounds: u64,
    /// Round time quantiles (ms), interpolated in the histogram's buckets.
    pub round_p50_ms: f64,
    /// See `round_p50_ms`.
    pub round_p99_ms: f64,
    /// Longest round observed by sampling the last-round gauge each second (ms).
    pub round_max_ms: f64,
    /// Ping round-trip quantiles (ms).
    pub ping_p50_ms: f64,
    /// See `ping_p50_ms`.
    pub ping_p99_ms: f64,
    /// Rounds longer than the interval in the window.
    pub missed_deadlines: u64,
    /// Pings answered / missed in the window.
    pub pings_ok: u64,
    /// See `pings_ok`.
    pub pings_missed: u64,
    /// Hosts the last round covered.
    pub hosts: u64,
}

/// One scrape of the tracker's series on the leader.
#[derive(Debug, Clone, Default)]
struct Scrape {
    round: Vec<(f64, f64)>,
    ping: Vec<(f64, f64)>,
    missed_deadlines: f64,
    pings_ok: f64,
    pings_missed: f64,
    hosts: f64,
    last_round: f64,
}

fn le_of(line: &str) -> Option<f64> {
    let v = line.split("le=\"").nth(1)?.split('"').next()?;
    if v == "+Inf" {
        Some(f64::INFINITY)
    } else {
        v.parse().ok()
    }
}

fn parse(text: &str) -> Scrape {
    let mut s = Scrape::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.parse::<f64>() else {
            continue;
        };
        if key.starts_with("zstack_host_tracker_round_seconds_bucket") {
            s.round.extend(le_of(key).map(|le| (le, v)));
        } else if key.starts_with("zstack_host_tracker_ping_seconds_bucket") {
            s.ping.extend(le_of(key).map(|le| (le, v)));
        } else {
            match key {
                "zstack_host_tracker_missed_deadlines_total" => s.missed_deadlines = v,
                "zstack_host_tracker_pings_total{result=\"ok\"}" => s.pings_ok = v,
                "zstack_host_tracker_pings_total{result=\"missed\"}" => s.pings_missed = v,
                "zstack_host_tracker_hosts" => s.hosts = v,
                "zstack_host_tracker_last_round_seconds" => s.last_round = v,
                _ => {}
            }
        }
    }
    s
}

/// `histogram_quantile` over the difference of two cumulative bucket lists (same bounds), in
/// ms; NaN when nothing was observed; the largest finite bound when `q` falls in `+Inf`.
pub fn quantile_ms(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> f64 {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, c)| {
            let b = before
                .iter()
                .find(|(l, _)| l == le)
                .map(|(_, c)| *c)
                .unwrap_or(0.0);
            (*le, c - b)
        })
        .collect();
    let total = delta.last().map(|(_, c)| *c).unwrap_or(0.0);
    if total <= 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let (mut lo, mut below) = (0.0, 0.0);
    for (le, c) in &delta {
        if *c >= rank {
            if le.is_infinite() {
                return lo * 1000.0;
            }
            let within = if c - below > 0.0 {
                (rank - below) / (c - below)
            } else {
                0.0
            };
            return (lo + (le - lo) * within) * 1000.0;
        }
        lo = *le;
        below = *c;
    }
    lo * 1000.0
}

/// user + system CPU seconds of process `pid`.
pub fn cpu_secs(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("bad /proc/{pid}/stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ")": state is field 3 of stat(5), so utime (14) and stime (15) sit at 11 and 12.
    let utime: f64 = f.get(11).context("utime")?.parse()?;
    let stime: f64 = f.get(12).context("stime")?.parse()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((utime + stime) / hz)
}

fn nth(base: Ipv4Addr, i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(base) + i)
}

impl HostBench {
    /// Start the cluster and a simulator of `capacity` hosts from `base_ip`, with
    /// `host/ping.interval` = `interval_s`; no host added yet.
    pub fn start(capacity: u32, base_ip: Ipv4Addr, interval_s: u64) -> Result<Self> {
        let mut cluster = Cluster::start(ClusterOpts {
            // Raft direct: the proxies would add their own CPU to the figures.
            proxies: false,
            ..ClusterOpts::default()
        })?;
        let leader = cluster.wait_leader(Duration::from_secs(30))?;
        let node = cluster.node(leader).http.to_string();
        let api = ZsClient::new(CALL_TIMEOUT)?;
        let session = api.login(std::slice::from_ref(&node), Duration::from_secs(30))?;
        let mut b = Self {
            cluster,
            agents: Vec::new(),
            api,
            session,
            zone_uuid: String::new(),
            cluster_uuid: String::new(),
            base_ip,
            ssh_port: crate::cluster::free_port()?,
            capacity,
            added: 0,
            add_errors: 0,
        };
        let zone = b.call(
            "org.zstack.header.zone.APICreateZoneMsg",
            json!({"name": "bench-zone"}),
        )?;
        let zone = zone["inventory"]["uuid"]
            .as_str()
            .ok_or_else(|| anyhow!("zone: {zone}"))?
            .to_string();
        b.zone_uuid.clone_from(&zone);
        let cl = b.call(
            "org.zstack.header.cluster.APICreateClusterMsg",
            json!({"zoneUuid": zone, "name": "bench", "hypervisorType": "KVM"}),
        )?;
        b.cluster_uuid = cl["inventory"]["uuid"]
            .as_str()
            .ok_or_else(|| anyhow!("cluster: {cl}"))?
            .to_string();
        b.set_config("kvm", "allowTestDriver", "true")?;
        b.set_interval(interval_s)?;
        b.start_agent()?;
        Ok(b)
    }

    pub(crate) fn leader_addr(&mut self) -> Result<String> {
        let id = self.leader()?;
        Ok(self.cluster.node(id).http.to_string())
    }

    /// The leader, waiting out status calls that time out: at the largest host counts the
    /// two cores here are saturated and a node can miss the status client's bound for a while
    /// without anything being wrong with the cluster.
    pub(crate) fn leader(&mut self) -> Result<u64> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match self.cluster.wait_leader(Duration::from_secs(30)) {
                Ok(id) => return Ok(id),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_secs(1)),
            }
        }
    }

    pub(crate) fn call(&mut self, class: &str, fields: Value) -> Result<Value> {
        let node = self.leader_addr()?;
        let r = self
            .api
            .call(
                &node,
                &node,
                class,
                fields,
                &self.session,
                &new_job_uuid(),
                CALL_TIMEOUT,
            )?
            .ok_or_else(|| anyhow!("{class}: job not done in {CALL_TIMEOUT:?}"))?;
        if r.body["success"] != true {
            bail!("{class} failed: {}", r.body);
        }
        Ok(r.body)
    }

    /// Set a global configuration value.
    pub fn set_config(&mut self, category: &str, name: &str, value: &str) -> Result<()> {
        self.call(
            "org.zstack.core.config.APIUpdateGlobalConfigMsg",
            json!({"category": category, "name": name, "value": value}),
        )
        .map(|_| ())
    }

    /// Set `host/ping.interval`.
    pub fn set_interval(&mut self, secs: u64) -> Result<()> {
        self.set_config("host", "ping.interval", &secs.to_string())
    }

    fn start_agent(&mut self) -> Result<()> {
        let zsnode = crate::cluster::zsnode_bin()?;
        let bin = locate_binary("zsagent", "agent", "ZSAGENT_BIN")?;
        let root: PathBuf = self.cluster.dir().join("simulator");
        std::fs::create_dir_all(&root)?;
        let pki = root.join("pki");
        let node_dir = self.cluster.nodes[0].data_dir.clone();
        let out = Command::new(zsnode)
            .args(["pki", "agent-cert", "--host", "zsagent", "--out"])
            .arg(&pki)
            .arg("--data-dir")
            .arg(node_dir)
            .output()?;
        if !out.status.success() {
            bail!("agent-cert: {}", String::from_utf8_lossy(&out.stderr));
        }
        let mut first = 0;
        while first < self.capacity {
            let n = HOSTS_PER_SIMULATOR.min(self.capacity - first);
            let dir = root.join(format!("sim-{first}"));
            std::fs::create_dir_all(&dir)?;
            let log = std::fs::File::create(dir.join("agent.log"))?;
            let listen = format!(
                "{}:{}",
                nth(self.base_ip, first),
                proto::agent::DEFAULT_PORT
            );
            let child = Command::new(&bin)
                .args(["run", "--listen", &listen, "--data-dir"])
                .arg(&dir)
                // Every simulator presents the same agent certificate: the leader checks the
                // CA and the cluster, not one certificate per address.
                .arg("--pki-dir")
                .arg(&pki)
                .args(["--simulate", &n.to_string()])
                .args(["--ssh-banner-port", &self.ssh_port.to_string()])
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()?;
            self.agents.push(child);
            first += n;
        }
        // Banners are bound before the gRPC listeners, so the last gRPC address of each
        // simulator answering means everything is up.
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut first = 0;
        while first < self.capacity {
            let n = HOSTS_PER_SIMULATOR.min(self.capacity - first);
            let last = format!(
                "{}:{}",
                nth(self.base_ip, first + n - 1),
                proto::agent::DEFAULT_PORT
            );
            while std::net::TcpStream::connect(&last).is_err() {
                if Instant::now() > deadline {
                    bail!("simulator did not listen on {last}");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            first += n;
        }
        Ok(())
    }

    /// The simulators' pids.
    pub fn agent_pids(&self) -> Vec<u32> {
        self.agents.iter().map(Child::id).collect()
    }

    /// CPU seconds of every simulator process.
    fn agents_cpu_secs(&self) -> Result<f64> {
        self.agent_pids().into_iter().map(cpu_secs).sum()
    }

    /// Add simulated hosts up to `total` with `in_flight` concurrent AddKVMHost calls; answers
    /// the wall time it took.
    pub fn add_hosts(&mut self, total: u32, in_flight: usize) -> Result<Duration> {
        let total = total.min(self.capacity);
        let node = self.leader_addr()?;
        let started = Instant::now();
        let next = AtomicUsize::new(self.added as usize);
        let errors = AtomicUsize::new(0);
        let (base, port, cluster, session) = (
            self.base_ip,
            self.ssh_port,
            self.cluster_uuid.clone(),
            self.session.clone(),
        );
        std::thread::scope(|s| {
            for _ in 0..in_flight {
                s.spawn(|| {
                    let Ok(api) = ZsClient::new(CALL_TIMEOUT) else {
                        return;
                    };
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= total as usize {
                            return;
                        }
                        let ip = nth(base, i as u32).to_string();
                        let r = api.call(
                            &node,
                            &node,
                            "org.zstack.kvm.APIAddKVMHostMsg",
                            json!({"clusterUuid": cluster, "name": format!("sim-{ip}"),
                                   "managementIp": ip, "sshPort": port,
                                   "username": "root", "password": "bench-secret"}),
                            &session,
                            &new_job_uuid(),
                            CALL_TIMEOUT,
                        );
                        let ok = matches!(&r, Ok(Some(r)) if r.body["success"] == true);
                        if !ok && errors.fetch_add(1, Ordering::Relaxed) < 5 {
                            eprintln!("host-bench: add {ip}: {r:?}");
                        }
                    }
                });
            }
        });
        self.add_errors += errors.into_inner();
        self.added = total;
        Ok(started.elapsed())
    }

    /// Closed-loop `AllocateHostResource` (1 vCPU, 1 MiB, the allocator choosing in the
    /// cluster) for `window`, `clients` threads spread over the three nodes: committed
    /// placements per second, placements acknowledged, and failures.
    pub fn place(&mut self, window: Duration, clients: usize) -> Result<(f64, usize, usize)> {
        let nodes: Vec<String> = self
            .cluster
            .ids()
            .into_iter()
            .map(|id| self.cluster.node(id).http.to_string())
            .collect();
        let (cluster, session) = (self.cluster_uuid.clone(), self.session.clone());
        let ok = AtomicUsize::new(0);
        let failed = AtomicUsize::new(0);
        let started = Instant::now();
        let deadline = started + window;
        std::thread::scope(|s| {
            for k in 0..clients {
                let node = nodes[k % nodes.len().max(1)].clone();
                let (cluster, session, ok, failed) = (&cluster, &session, &ok, &failed);
                s.spawn(move || {
                    let Ok(api) = ZsClient::new(CALL_TIMEOUT) else {
                        return;
                    };
                    while Instant::now() < deadline {
                        let r = api.call(
                            &node,
                            &node,
                            "org.zstack.header.host.APIAllocateHostResourceMsg",
                            json!({"uuid": cluster, "strategy": "continuous", "scene": "normal",
                                   "vcpu": "1", "memSize": 1u64 << 20}),
                            session,
                            &new_job_uuid(),
                            CALL_TIMEOUT,
                        );
                        if matches!(&r, Ok(Some(r)) if r.body["success"] == true) {
                            ok.fetch_add(1, Ordering::Relaxed);
                        } else if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("host-bench: placement: {r:?}");
                        }
                    }
                });
            }
        });
        let (ok, failed) = (ok.into_inner(), failed.into_inner());
        Ok((ok as f64 / started.elapsed().as_secs_f64(), ok, failed))
    }

    /// Hosts by status, as the API lists them.
    pub fn statuses(&mut self) -> Result<std::collections::BTreeMap<String, usize>> {
        let node = self.leader_addr()?;
        let r = self.api.sync(
            &node,
            "org.zstack.header.host.APIQueryHostMsg",
            // Past the query's default limit of 1000 rows.
            json!({"conditions": [], "limit": 1_000_000}),
            Some(&self.session),
            CALL_TIMEOUT,
        )?;
        let mut m = std::collections::BTreeMap::new();
        for h in r.inventories() {
            *m.entry(h["status"].as_str().unwrap_or("?").to_string())
                .or_default() += 1;
        }
        Ok(m)
    }

    /// Wait until `want` hosts are Connected.
    pub fn await_connected(&mut self, want: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.statuses()?;
            if s.get("Connected").copied().unwrap_or(0) >= want {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("not {want} hosts Connected after {timeout:?}: {s:?}");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The `/metrics` page of `node`.
    pub(crate) fn metrics_text(&self, node: &str) -> Result<String> {
        Ok(self
            .api
            .http()
            .get(format!("http://{node}/metrics"))
            .send()?
            .text()?)
    }

    fn scrape(&self, node: &str) -> Result<Scrape> {
        Ok(parse(&self.metrics_text(node)?))
    }

    /// Measure the leader over `window`.
    pub fn measure(&mut self, window: Duration) -> Result<Sample> {
        let id = self.leader()?;
        let node = self.cluster.node(id).http.to_string();
        let pid = self
            .cluster
            .node(id)
            .pid()
            .ok_or_else(|| anyhow!("leader has no pid"))?;
        if self.agents.is_empty() {
            bail!("no simulator");
        }
        let before = self.scrape(&node)?;
        let (cpu0, acpu0, t0) = (cpu_secs(pid)?, self.agents_cpu_secs()?, Instant::now());
        let mut round_max: f64 = 0.0;
        while t0.elapsed() < window {
            std::thread::sleep(Duration::from_secs(1).min(window.saturating_sub(t0.elapsed())));
            round_max = round_max.max(self.scrape(&node)?.last_round);
        }
        let (cpu1, acpu1, secs) = (
            cpu_secs(pid)?,
            self.agents_cpu_secs()?,
            t0.elapsed().as_secs_f64(),
        );
        let after = self.scrape(&node)?;
        if self.leader()? != id {
            bail!("leadership moved during the window");
        }
        Ok(Sample {
            secs,
            leader_cpu_pct: (cpu1 - cpu0) / secs * 100.0,
            agent_cpu_pct: (acpu1 - acpu0) / secs * 100.0,
            rounds: (after.round.last().map(|x| x.1).unwrap_or(0.0)
                - before.round.last().map(|x| x.1).unwrap_or(0.0)) as u64,
            round_p50_ms: quantile_ms(&before.round, &after.round, 0.50),
            round_p99_ms: quantile_ms(&before.round, &after.round, 0.99),
            round_max_ms: round_max * 1000.0,
            ping_p50_ms: quantile_ms(&before.ping, &after.ping, 0.50),
            ping_p99_ms: quantile_ms(&before.ping, &after.ping, 0.99),
            missed_deadlines: (after.missed_deadlines - before.missed_deadlines) as u64,
            pings_ok: (after.pings_ok - before.pings_ok) as u64,
            pings_missed: (after.pings_missed - before.pings_missed) as u64,
            hosts: after.hosts as u64,
        })
    }
}

impl Drop for HostBench {
    fn drop(&mut self) {
        for mut c in self.agents.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Sample {
    /// The machine-readable line of docs/benchmarks.md.
    pub fn line(&self, hosts: u32, interval_s: u64) -> String {
        format!(
            "bench=host_tracking hosts={hosts} interval_s={interval_s} secs={:.1} rounds={} leader_cpu_pct={:.1} agent_cpu_pct={:.1} round_p50_ms={:.1} round_p99_ms={:.1} round_max_ms={:.1} ping_p50_ms={:.2} ping_p99_ms={:.2} missed_deadlines={} pings_ok={} pings_missed={} tracked={}",
            self.secs,
            self.rounds,
            self.leader_cpu_pct,
            self.agent_cpu_pct,
            self.round_p50_ms,
            self.round_p99_ms,
            self.round_max_ms,
            self.ping_p50_ms,
            self.ping_p99_ms,
            self.missed_deadlines,
            self.pings_ok,
            self.pings_missed,
            self.hosts
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_the_bucket_of_the_rank() {
        let before = vec![(0.1, 0.0), (1.0, 0.0), (f64::INFINITY, 0.0)];
        let after = vec![(0.1, 50.0), (1.0, 100.0), (f64::INFINITY, 100.0)];
        assert!((quantile_ms(&before, &after, 0.5) - 100.0).abs() < 1e-9);
        assert!((quantile_ms(&before, &after, 0.75) - 550.0).abs() < 1e-9);
        assert!(quantile_ms(&after, &after, 0.5).is_nan());
        let s = parse("zstack_host_tracker_round_seconds_bucket{le=\"0.5\"} 3\nzstack_host_tracker_pings_total{result=\"ok\"} 9\n");
        assert_eq!(s.round, vec![(0.5, 3.0)]);
        assert_eq!(s.pings_ok, 9.0);
    }
}
