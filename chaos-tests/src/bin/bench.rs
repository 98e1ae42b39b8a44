//! Write benchmark of a 3-node `zsnode` cluster against a 3-member etcd cluster started in the
//! same run on the same machine (256-byte values, fsync on for both), plus leader fail-over time.
//!
//! `cargo run --release -p chaos-tests --bin bench [-- --quick]`. Prints one machine-readable
//! line per case (`bench=write ...`, `bench=write_ratio ...`, `bench=failover ...`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use chaos_tests::cluster::{Cluster, ClusterOpts};
use chaos_tests::etcd::EtcdCluster;
use clap::Parser;
use tokio::runtime::Runtime;

/// Command line of the benchmark.
#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "zsnode vs etcd: writes/s, p50/p99 latency, leader fail-over time"
)]
struct Args {
    /// Short run (fewer writes, 3 fail-over rounds) for a smoke check.
    #[arg(long)]
    quick: bool,
    /// Client counts to run, comma separated.
    #[arg(long, default_value = "1,16,64", value_delimiter = ',')]
    clients: Vec<usize>,
    /// Writes per case (default: 2000/10000/20000 for 1/16/64 clients; a fifth of that with --quick).
    #[arg(long)]
    ops: Option<usize>,
    /// Fail-over rounds (default 10; 3 with --quick).
    #[arg(long)]
    failover_rounds: Option<usize>,
    /// Skip the etcd peer (zsnode figures only).
    #[arg(long)]
    skip_etcd: bool,
    /// Skip the write cases (fail-over only).
    #[arg(long)]
    skip_writes: bool,
}

/// Outcome of one write case.
struct CaseResult {
    ops: usize,
    errors: usize,
    elapsed: Duration,
    lat_us: Vec<u64>,
}

impl CaseResult {
    fn writes_per_s(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn pct_ms(&self, p: f64) -> f64 {
        if self.lat_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.lat_us.len() as f64 - 1.0) * p).round() as usize;
        self.lat_us[i.min(self.lat_us.len() - 1)] as f64 / 1000.0
    }

    fn line(&self, system: &str, target: &str, clients: usize) -> String {
        format!(
            "bench=write system={system} target={target} clients={clients} ops={} errors={} secs={:.2} writes_per_s={:.0} p50_ms={:.2} p99_ms={:.2}",
            self.ops,
            self.errors,
            self.elapsed.as_secs_f64(),
            self.writes_per_s(),
            self.pct_ms(0.50),
            self.pct_ms(0.99)
        )
    }
}

fn value() -> Vec<u8> {
    // 256 bytes, printable, a little varied so nothing compresses to nothing.
    (0..256u32).map(|i| b'a' + (i * 7 % 26) as u8).collect()
}

fn merge(parts: Vec<(usize, usize, Vec<u64>)>, elapsed: Duration) -> CaseResult {
    let mut lat = Vec::new();
    let (mut ops, mut errors) = (0, 0);
    for (o, e, l) in parts {
        ops += o;
        errors += e;
        lat.extend(l);
    }
    lat.sort_unstable();
    CaseResult {
        ops,
        errors,
        elapsed,
        lat_us: lat,
    }
}

/// `clients` tasks doing `total` PUT /kv between them over keep-alive HTTP; task `t`'s `j`-th
/// write goes to `urls[(t + j) % urls.len()]`.
async fn zsnode_writes(
    urls: Vec<String>,
    clients: usize,
    total: usize,
    tag: &str,
) -> Result<CaseResult> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(15))
        .no_proxy()
        .build()?;
    let urls = Arc::new(urls);
    let per = total.div_ceil(clients);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..clients {
        let (http, urls, tag) = (http.clone(), urls.clone(), tag.to_string());
        tasks.push(tokio::spawn(async move {
            let val = value();
            let (mut ok, mut err, mut lat) = (0usize, 0usize, Vec::with_capacity(per));
            for j in 0..per {
                let url = format!("{}/kv/b-{tag}-{t}-{j}", urls[(t + j) % urls.len()]);
                let t0 = Instant::now();
                let r = http
                    .put(&url)
                    .header("X-Request-Id", format!("{tag}-{t}-{j}"))
                    .body(val.clone())
                    .send()
                    .await;
                match r {
                    Ok(resp) if resp.status().is_success() => {
                        // Read the body so the connection goes back to the pool.
                        let _ = resp.bytes().await;
                        lat.push(t0.elapsed().as_micros() as u64);
                        ok += 1;
                    }
                    Ok(resp) => {
                        let _ = resp.bytes().await;
                        err += 1;
                    }
                    Err(_) => err += 1,
                }
            }
            (ok, err, lat)
        }));
    }
    let mut parts = Vec::new();
    for t in tasks {
        parts.push(t.await.map_err(|e| anyhow!("writer task: {e}"))?);
    }
    Ok(merge(parts, start.elapsed()))
}

/// The same workload through etcd-client `put` (one client shared by the tasks, as a service
/// would hold one connection pool).
async fn etcd_writes(
    endpoints: Vec<String>,
    clients: usize,
    total: usize,
    tag: &str,
) -> Result<CaseResult> {
    let opts = etcd_client::ConnectOptions::new().with_timeout(Duration::from_secs(15));
    let client = etcd_client::Client::connect(&endpoints, Some(opts))
        .await
        .context("connect etcd")?;
    let per = total.div_ceil(clients);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..clients {
        let (mut c, tag) = (client.clone(), tag.to_string());
        tasks.push(tokio::spawn(async move {
            let val = value();
            let (mut ok, mut err, mut lat) = (0usize, 0usize, Vec::with_capacity(per));
            for j in 0..per {
                let t0 = Instant::now();
                match c.put(format!("b-{tag}-{t}-{j}"), val.clone(), None).await {
                    Ok(_) => {
                        lat.push(t0.elapsed().as_micros() as u64);
                        ok += 1;
                    }
                    Err(_) => err += 1,
                }
            }
            (ok, err, lat)
        }));
    }
    let mut parts = Vec::new();
    for t in tasks {
        parts.push(t.await.map_err(|e| anyhow!("writer task: {e}"))?);
    }
    Ok(merge(parts, start.elapsed()))
}

/// Fire a write attempt through every target every 50 ms until one is acknowledged; returns
/// when (measured from `t0`) the first acknowledgement arrived.
async fn first_ack<F, Fut>(
    targets: usize,
    t0: Instant,
    deadline: Duration,
    attempt: F,
) -> Result<Duration>
where
    F: Fn(usize, u64) -> Fut,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Duration>();
    let mut handles = Vec::new();
    let mut n = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            Some(d) = rx.recv() => {
                for h in handles { tokio::task::JoinHandle::abort(&h); }
                return Ok(d);
            }
            _ = tick.tick() => {
                if t0.elapsed() > deadline {
                    for h in handles { tokio::task::JoinHandle::abort(&h); }
                    bail!("no write acknowledged within {deadline:?} of the kill");
                }
                for i in 0..targets {
                    n += 1;
                    let fut = attempt(i, n);
                    let tx = tx.clone();
                    handles.push(tokio::spawn(async move {
                        if fut.await {
                            let _ = tx.send(t0.elapsed());
                        }
                    }));
                }
            }
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        f64::NAN
    } else if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    }
}

fn summary(system: &str, ms: &mut [f64]) {
    let med = median(ms);
    println!(
        "bench=failover_summary system={system} rounds={} median_ms={med:.0} min_ms={:.0} max_ms={:.0}",
        ms.len(),
        ms.first().copied().unwrap_or(f64::NAN),
        ms.last().copied().unwrap_or(f64::NAN)
    );
}

fn zsnode_failover(rt: &Runtime, zs: &mut Cluster, rounds: usize) -> Result<Vec<f64>> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .connect_timeout(Duration::from_millis(500))
        .no_proxy()
        .build()?;
    let mut out = Vec::new();
    for round in 0..rounds {
        zs.wait_converged(Duration::from_secs(60))?;
        let leader = zs.wait_leader(Duration::from_secs(30))?;
        let urls: Vec<String> = zs
            .ids()
            .into_iter()
            .filter(|i| *i != leader)
            .map(|i| format!("http://{}", zs.node(i).http))
            .collect();
        let t0 = Instant::now();
        zs.kill9(leader)?;
        let http = http.clone();
        let d = rt.block_on(first_ack(
            urls.len(),
            t0,
            Duration::from_secs(30),
            |i, n| {
                let req = http
                    .put(format!("{}/kv/failover-{round}-{n}", urls[i]))
                    .body("x");
                async move { matches!(req.send().await, Ok(r) if r.status().is_success()) }
            },
        ))?;
        let ms = d.as_secs_f64() * 1000.0;
        println!("bench=failover system=zsnode round={round} killed={leader} ms={ms:.0}");
        out.push(ms);
        zs.restart(leader)?;
        zs.wait_ready(leader, Duration::from_secs(60))?;
    }
    Ok(out)
}

fn etcd_failover(rt: &Runtime, etcd: &mut EtcdCluster, rounds: usize) -> Result<Vec<f64>> {
    let mut out = Vec::new();
    for round in 0..rounds {
        let leader = rt.block_on(etcd.wait_healthy(Duration::from_secs(60)))?;
        let survivors: Vec<String> = etcd
            .endpoints()
            .into_iter()
            .enumerate()
            .filter(|(i, _)| *i != leader)
            .map(|(_, e)| e)
            .collect();
        // Connect before the kill so connection set-up is not counted.
        let clients = rt.block_on(async {
            let mut v = Vec::new();
            for e in &survivors {
                let o = etcd_client::ConnectOptions::new().with_timeout(Duration::from_secs(3));
                v.push(etcd_client::Client::connect([e.as_str()], Some(o)).await?);
            }
            anyhow::Ok(v)
        })?;
        let t0 = Instant::now();
        etcd.kill9(leader)?;
        let d = rt.block_on(first_ack(
            clients.len(),
            t0,
            Duration::from_secs(30),
            |i, n| {
                let mut c = clients[i].clone();
                async move {
                    c.put(format!("failover-{round}-{n}"), "x", None)
                        .await
                        .is_ok()
                }
            },
        ))?;
        let ms = d.as_secs_f64() * 1000.0;
        println!(
            "bench=failover system=etcd round={round} killed=e{} ms={ms:.0}",
            leader + 1
        );
        out.push(ms);
        etcd.spawn(leader)?;
    }
    rt.block_on(etcd.wait_healthy(Duration::from_secs(60)))?;
    Ok(out)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let default_ops = |c: usize| {
        let full = match c {
            1 => 2000,
            c if c <= 16 => 10_000,
            _ => 20_000,
        };
        if args.quick {
            full / 5
        } else {
            full
        }
    };
    let rounds = args
        .failover_rounds
        .unwrap_or(if args.quick { 3 } else { 10 });
    let started = Instant::now();

    let bin = chaos_tests::cluster::zsnode_bin()?;
    println!(
        "bench=env cores={} zsnode_bin={} value_bytes=256 quick={}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        bin.display(),
        args.quick
    );
    let mut zs = Cluster::start(ClusterOpts {
        proxies: false,
        rust_log: std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| "warn".into()),
        ..Default::default()
    })
    .context("start zsnode cluster")?;
    let mut etcd = if args.skip_etcd {
        None
    } else {
        let e = EtcdCluster::start(3).context("start etcd cluster")?;
        rt.block_on(e.wait_healthy(Duration::from_secs(60)))
            .with_context(|| e.log_tails(20))?;
        Some(e)
    };

    if !args.skip_writes {
        for &clients in &args.clients {
            let total = args.ops.unwrap_or_else(|| default_ops(clients));
            let leader = zs.wait_leader(Duration::from_secs(30))?;
            let leader_url = vec![format!("http://{}", zs.node(leader).http)];
            let all_urls: Vec<String> = zs
                .ids()
                .into_iter()
                .map(|i| format!("http://{}", zs.node(i).http))
                .collect();

            let z_lead = rt.block_on(zsnode_writes(
                leader_url,
                clients,
                total,
                &format!("zl{clients}"),
            ))?;
            println!("{}", z_lead.line("zsnode", "leader", clients));
            let e_lead = match &etcd {
                Some(e) => {
                    let l = rt.block_on(e.leader())?;
                    let r = rt.block_on(etcd_writes(
                        vec![e.endpoints()[l].clone()],
                        clients,
                        total,
                        &format!("el{clients}"),
                    ))?;
                    println!("{}", r.line("etcd", "leader", clients));
                    Some(r)
                }
                None => None,
            };
            let z_all = rt.block_on(zsnode_writes(
                all_urls,
                clients,
                total,
                &format!("za{clients}"),
            ))?;
            println!("{}", z_all.line("zsnode", "all", clients));
            let e_all = match &etcd {
                Some(e) => {
                    let r = rt.block_on(etcd_writes(
                        e.endpoints(),
                        clients,
                        total,
                        &format!("ea{clients}"),
                    ))?;
                    println!("{}", r.line("etcd", "all", clients));
                    Some(r)
                }
                None => None,
            };
            for (target, z, e) in [("leader", &z_lead, &e_lead), ("all", &z_all, &e_all)] {
                if let Some(e) = e {
                    println!(
                        "bench=write_ratio target={target} clients={clients} zsnode_over_etcd={:.2} p50_ratio={:.2} p99_ratio={:.2}",
                        z.writes_per_s() / e.writes_per_s(),
                        z.pct_ms(0.5) / e.pct_ms(0.5),
                        z.pct_ms(0.99) / e.pct_ms(0.99)
                    );
                }
            }
        }
    }

    let mut zms = zsnode_failover(&rt, &mut zs, rounds)?;
    summary("zsnode", &mut zms);
    if let Some(e) = etcd.as_mut() {
        let mut ems = etcd_failover(&rt, e, rounds)?;
        summary("etcd", &mut ems);
    }
    println!("bench=done secs={:.0}", started.elapsed().as_secs_f64());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_median() {
        let r = merge(
            vec![(3, 1, vec![3000, 1000]), (1, 0, vec![2000, 4000])],
            Duration::from_secs(2),
        );
        assert_eq!(r.ops, 4);
        assert_eq!(r.errors, 1);
        assert_eq!(r.lat_us, vec![1000, 2000, 3000, 4000]);
        assert!((r.writes_per_s() - 2.0).abs() < 1e-9);
        assert_eq!(r.pct_ms(0.99), 4.0);
        assert_eq!(median(&mut [5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(&mut [4.0, 1.0]), 2.5);
        assert_eq!(value().len(), 256);
    }
}
