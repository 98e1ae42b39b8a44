//! Write benchmark of a 3-node `zsnode` cluster against a 3-member etcd cluster started in the
//! same run on the same machine (256-byte values, fsync on for both), plus leader fail-over time,
//! and (`--api` / `--api-only`) ZStack API calls through `/zstack/api` against the KV write of
//! the same run.
//!
//! `cargo run --release -p chaos-tests --bin bench [-- --quick] [-- --api | --api-only]`. Prints
//! one machine-readable line per case (`bench=write ...`, `bench=write_ratio ...`,
//! `bench=failover ...`, `bench=api ...`, `bench=api_ratio ...`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use chaos_tests::cluster::{Cluster, ClusterOpts};
use chaos_tests::etcd::EtcdCluster;
use chaos_tests::zstack_client::{new_job_uuid, Reply, ZsClient, ADMIN_PASSWORD, LOGIN_BY_ACCOUNT};
use clap::Parser;
use serde_json::{json, Value};
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
    /// Skip the write cases (fail-over only; with --api the KV peer of the API cases still runs).
    #[arg(long)]
    skip_writes: bool,
    /// Also run the ZStack API cases (sync write, async update and create, query), each beside
    /// the KV write (`target=all`) of the same run.
    #[arg(long)]
    api: bool,
    /// Only the API cases and their KV peer: no etcd, no leader-target writes, no fail-over.
    #[arg(long)]
    api_only: bool,
    /// Calls per API case (default: the KV write count for the sync write and the query;
    /// 500/2000/4000 for 1/16/64 clients for the async calls; a fifth of that with --quick).
    #[arg(long)]
    api_ops: Option<usize>,
    /// Interval between polls of an async call's result, in ms.
    #[arg(long, default_value_t = 10)]
    poll_ms: u64,
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
        .default_headers(admin_headers())
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
        .default_headers(admin_headers())
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

// ---- ZStack API cases ----

const LOG_OUT: &str = "org.zstack.header.identity.APILogOutMsg";
const CREATE_ZONE: &str = "org.zstack.header.zone.APICreateZoneMsg";
const UPDATE_ZONE: &str = "org.zstack.header.zone.APIUpdateZoneMsg";
const QUERY_ZONE: &str = "org.zstack.header.zone.APIQueryZoneMsg";
/// How long one async call may take from submit to `Done` before it counts as an error.
const ASYNC_DEADLINE: Duration = Duration::from_secs(60);

/// One API case: which call, measured how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ApiCase {
    /// `LogOut` of a session uuid nobody holds: the only sync calls of this build that write are
    /// the logins and `LogOut` (every other mutation is async, spec decision 1), and a login
    /// spends most of its time in argon2id; the node proposes `DeleteSession` for it all the same.
    SyncWrite,
    /// `UpdateZone` (async): submit, then poll the result until `Done`.
    AsyncUpdate,
    /// `CreateZone` (async): submit, then poll the result until `Done`.
    AsyncCreate,
    /// `QueryZone` with `uuid = <zone>` (sync, linearizable read).
    Query,
}

impl ApiCase {
    const ALL: [ApiCase; 4] = [
        ApiCase::SyncWrite,
        ApiCase::Query,
        ApiCase::AsyncUpdate,
        ApiCase::AsyncCreate,
    ];

    fn name(self) -> &'static str {
        match self {
            ApiCase::SyncWrite => "sync_write",
            ApiCase::AsyncUpdate => "async_update",
            ApiCase::AsyncCreate => "async_create",
            ApiCase::Query => "query",
        }
    }

    fn call(self) -> &'static str {
        match self {
            ApiCase::SyncWrite => "LogOut",
            ApiCase::AsyncUpdate => "UpdateZone",
            ApiCase::AsyncCreate => "CreateZone",
            ApiCase::Query => "QueryZone",
        }
    }

    fn is_async(self) -> bool {
        matches!(self, ApiCase::AsyncUpdate | ApiCase::AsyncCreate)
    }
}

/// What every API client task shares.
#[derive(Clone)]
struct ApiCtx {
    http: reqwest::Client,
    urls: Arc<Vec<String>>,
    session: Arc<str>,
    /// Zones made before the cases, one per client (client `t` updates and queries zone `t`).
    zones: Arc<Vec<String>>,
    poll: Duration,
}

/// A call's failure, as counted (with its text, so the first one can be shown).
type CallResult<T> = std::result::Result<T, String>;

fn api_http(clients: usize) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(clients.max(4))
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(15))
        .no_proxy()
        .build()?)
}

fn short(s: &str) -> String {
    s.chars().take(300).collect()
}

/// POST `{class: fields(+session)}` to `base/zstack/api`; the outer envelope.
async fn api_post(
    http: &reqwest::Client,
    base: &str,
    class: &str,
    mut fields: Value,
    session: Option<&str>,
    job: Option<&str>,
) -> CallResult<Value> {
    if let Some(s) = session {
        fields["session"] = json!({ "uuid": s });
    }
    let mut r = http
        .post(format!("{base}/zstack/api"))
        .json(&json!({ class: fields }));
    if let Some(j) = job {
        r = r.header("X-Job-UUID", j);
    }
    let resp = r.send().await.map_err(|e| format!("{base}: {e}"))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| format!("{base}: {e}"))?;
    if status != 200 {
        return Err(format!("{base}: HTTP {status}: {}", short(&text)));
    }
    serde_json::from_str(&text).map_err(|_| format!("{base}: not JSON: {}", short(&text)))
}

/// The reply inside a `Done` envelope; a reply with `success: false` is an error.
fn done_reply(base: &str, outer: &Value) -> CallResult<Reply> {
    let r = ZsClient::inner(base, outer).map_err(|e| e.to_string())?;
    if r.success() {
        Ok(r)
    } else {
        Err(format!(
            "{base}: {} failed: {}",
            r.class,
            short(&r.body.to_string())
        ))
    }
}

/// A sync call: its successful reply.
async fn api_sync(
    http: &reqwest::Client,
    base: &str,
    class: &str,
    fields: Value,
    session: Option<&str>,
) -> CallResult<Reply> {
    let outer = api_post(http, base, class, fields, session, None).await?;
    if outer["state"] != "Done" {
        return Err(format!(
            "{base}: sync call not Done: {}",
            short(&outer.to_string())
        ));
    }
    done_reply(base, &outer)
}

/// An async call submitted to `base` (fresh `X-Job-UUID`) and its result polled there every
/// `poll` until `Done`: the successful reply and the number of polls.
async fn api_async(
    http: &reqwest::Client,
    base: &str,
    class: &str,
    fields: Value,
    session: &str,
    poll: Duration,
) -> CallResult<(Reply, u64)> {
    let t0 = Instant::now();
    let job = new_job_uuid();
    let outer = api_post(http, base, class, fields, Some(session), Some(&job)).await?;
    let uuid = match outer["state"].as_str() {
        Some("Done") => return done_reply(base, &outer).map(|r| (r, 0)),
        Some("Processing") => outer["uuid"].as_str().unwrap_or(&job).to_string(),
        _ => {
            return Err(format!(
                "{base}: bad submit answer: {}",
                short(&outer.to_string())
            ))
        }
    };
    let mut polls = 0u64;
    loop {
        if t0.elapsed() > ASYNC_DEADLINE {
            return Err(format!(
                "{base}: job {uuid} not Done within {ASYNC_DEADLINE:?}"
            ));
        }
        tokio::time::sleep(poll).await;
        polls += 1;
        let resp = http
            .get(format!("{base}/zstack/api/result/{uuid}"))
            .send()
            .await
            .map_err(|e| format!("{base}: poll: {e}"))?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| format!("{base}: poll: {e}"))?;
        match status {
            // Not visible yet (the node found it neither locally nor after a barrier): go on.
            404 => continue,
            200 => {}
            _ => return Err(format!("{base}: poll: HTTP {status}: {}", short(&text))),
        }
        let v: Value =
            serde_json::from_str(&text).map_err(|_| format!("{base}: poll: {}", short(&text)))?;
        if v["state"] == "Done" {
            return done_reply(base, &v).map(|r| (r, polls));
        }
    }
}

/// Log in as admin through any node (the first leader's bootstrap duty creates the admin, so
/// retry for a while): the session uuid.
async fn api_login(http: &reqwest::Client, urls: &[String]) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    for i in 0.. {
        let base = &urls[i % urls.len()];
        let fields = json!({"accountName": "admin", "password": ADMIN_PASSWORD});
        match api_sync(http, base, LOGIN_BY_ACCOUNT, fields, None).await {
            Ok(r) => match r.inventory()["uuid"].as_str() {
                Some(s) => return Ok(s.to_string()),
                None => last = format!("login reply without a session: {}", r.body),
            },
            Err(e) => last = e,
        }
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("admin login failed: {last}")
}

/// Create `n` zones (8 at a time) for the update and query cases: their uuids.
async fn make_zones(
    http: &reqwest::Client,
    urls: &[String],
    session: &str,
    n: usize,
    poll: Duration,
) -> Result<Vec<String>> {
    let mut out = vec![String::new(); n];
    for chunk in (0..n).collect::<Vec<_>>().chunks(8) {
        let mut tasks = Vec::new();
        for &i in chunk {
            let (http, base, session) = (
                http.clone(),
                urls[i % urls.len()].clone(),
                session.to_string(),
            );
            tasks.push(tokio::spawn(async move {
                let fields = json!({"name": format!("bench-zone-{i}"), "description": "bench"});
                api_async(&http, &base, CREATE_ZONE, fields, &session, poll).await
            }));
        }
        for (&i, t) in chunk.iter().zip(tasks) {
            let (r, _) = t
                .await
                .map_err(|e| anyhow!("zone task: {e}"))?
                .map_err(|e| anyhow!("create zone {i}: {e}"))?;
            out[i] = r.inventory()["uuid"]
                .as_str()
                .ok_or_else(|| anyhow!("CreateZone reply without a uuid: {}", r.body))?
                .to_string();
        }
    }
    Ok(out)
}

/// One call of `case` by client `t` (its `j`-th) through `base`: the polls it took.
async fn api_op(
    ctx: &ApiCtx,
    case: ApiCase,
    tag: &str,
    t: usize,
    j: usize,
    base: &str,
) -> CallResult<u64> {
    let zone = &ctx.zones[t % ctx.zones.len()];
    match case {
        ApiCase::SyncWrite => {
            // A fresh 32-hex uuid no session has: LogOut proposes its DeleteSession anyway.
            let fields = json!({ "sessionUuid": new_job_uuid() });
            api_sync(&ctx.http, base, LOG_OUT, fields, None)
                .await
                .map(|_| 0)
        }
        ApiCase::Query => {
            let fields = json!({"conditions": [{"name": "uuid", "op": "=", "value": zone}]});
            let r = api_sync(&ctx.http, base, QUERY_ZONE, fields, Some(&ctx.session)).await?;
            match r.inventories() {
                [one] if one["uuid"] == zone.as_str() => Ok(0),
                other => Err(format!(
                    "{base}: QueryZone {zone}: {} inventories",
                    other.len()
                )),
            }
        }
        ApiCase::AsyncUpdate => {
            let fields = json!({"uuid": zone, "description": format!("{tag}-{t}-{j}")});
            api_async(&ctx.http, base, UPDATE_ZONE, fields, &ctx.session, ctx.poll)
                .await
                .map(|(_, p)| p)
        }
        ApiCase::AsyncCreate => {
            let fields = json!({"name": format!("{tag}-{t}-{j}")});
            api_async(&ctx.http, base, CREATE_ZONE, fields, &ctx.session, ctx.poll)
                .await
                .map(|(_, p)| p)
        }
    }
}

/// Outcome of one API case.
struct ApiResult {
    case: CaseResult,
    polls: u64,
    first_error: Option<String>,
}

impl ApiResult {
    fn line(&self, case: ApiCase, clients: usize) -> String {
        let c = &self.case;
        let mut l = format!(
            "bench=api case={} call={} clients={clients} ops={} errors={} secs={:.2} calls_per_s={:.0} p50_ms={:.2} p99_ms={:.2}",
            case.name(),
            case.call(),
            c.ops,
            c.errors,
            c.elapsed.as_secs_f64(),
            c.writes_per_s(),
            c.pct_ms(0.50),
            c.pct_ms(0.99)
        );
        if case.is_async() {
            l.push_str(&format!(
                " polls_per_call={:.1}",
                self.polls as f64 / (c.ops + c.errors).max(1) as f64
            ));
        }
        l
    }
}

/// `clients` tasks making `total` calls of `case` between them; task `t`'s `j`-th call (with
/// its polls) goes to `urls[(t + j) % urls.len()]`. Latency per successful call, submit to
/// `Done` for async calls.
async fn api_calls(
    ctx: ApiCtx,
    case: ApiCase,
    clients: usize,
    total: usize,
    tag: &str,
) -> Result<ApiResult> {
    let per = total.div_ceil(clients);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..clients {
        let (ctx, tag) = (ctx.clone(), tag.to_string());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut err, mut polls) = (0usize, 0usize, 0u64);
            let mut lat = Vec::with_capacity(per);
            let mut first_error = None;
            for j in 0..per {
                let base = &ctx.urls[(t + j) % ctx.urls.len()];
                let t0 = Instant::now();
                match api_op(&ctx, case, &tag, t, j, base).await {
                    Ok(p) => {
                        lat.push(t0.elapsed().as_micros() as u64);
                        polls += p;
                        ok += 1;
                    }
                    Err(e) => {
                        err += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            (ok, err, lat, polls, first_error)
        }));
    }
    let (mut parts, mut polls, mut first_error) = (Vec::new(), 0, None);
    for t in tasks {
        let (ok, err, lat, p, e) = t.await.map_err(|e| anyhow!("api task: {e}"))?;
        parts.push((ok, err, lat));
        polls += p;
        if first_error.is_none() {
            first_error = e;
        }
    }
    Ok(ApiResult {
        case: merge(parts, start.elapsed()),
        polls,
        first_error,
    })
}

/// Every API case at `clients` clients, each followed by its ratio line against `kv`.
fn run_api_cases(
    rt: &Runtime,
    ctx: &ApiCtx,
    clients: usize,
    ops: impl Fn(ApiCase) -> usize,
    kv: &CaseResult,
) -> Result<()> {
    let mut results = Vec::new();
    for case in ApiCase::ALL {
        let tag = format!("{}{clients}", case.name());
        let r = rt.block_on(api_calls(ctx.clone(), case, clients, ops(case), &tag))?;
        println!("{}", r.line(case, clients));
        if let Some(e) = &r.first_error {
            println!(
                "bench=api_error case={} clients={clients} errors={} first={e:?}",
                case.name(),
                r.case.errors
            );
        }
        results.push((case, r));
    }
    for (case, r) in &results {
        println!(
            "bench=api_ratio case={} clients={clients} api_per_s_over_kv={:.2} p50_over_kv={:.2} p99_over_kv={:.2}",
            case.name(),
            r.case.writes_per_s() / kv.writes_per_s(),
            r.case.pct_ms(0.5) / kv.pct_ms(0.5),
            r.case.pct_ms(0.99) / kv.pct_ms(0.99)
        );
    }
    Ok(())
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
    let api = args.api || args.api_only;
    let default_api_ops = |case: ApiCase, c: usize| {
        if !case.is_async() {
            return default_ops(c);
        }
        let full = match c {
            1 => 500,
            c if c <= 16 => 2000,
            _ => 4000,
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
        "bench=env cores={} zsnode_bin={} value_bytes=256 quick={} api={} api_only={} poll_ms={}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        bin.display(),
        args.quick,
        api,
        args.api_only,
        args.poll_ms
    );
    let mut zs = Cluster::start(ClusterOpts {
        proxies: false,
        rust_log: std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| "warn".into()),
        ..Default::default()
    })
    .context("start zsnode cluster")?;
    let mut etcd = if args.skip_etcd || args.api_only {
        None
    } else {
        let e = EtcdCluster::start(3).context("start etcd cluster")?;
        rt.block_on(e.wait_healthy(Duration::from_secs(60)))
            .with_context(|| e.log_tails(20))?;
        Some(e)
    };
    let all_urls: Vec<String> = zs
        .ids()
        .into_iter()
        .map(|i| format!("http://{}", zs.node(i).http))
        .collect();

    // The API cases' session and zones, made once before any case runs.
    let api_ctx = if api {
        let max_clients = args.clients.iter().copied().max().unwrap_or(1);
        let http = api_http(max_clients)?;
        let poll = Duration::from_millis(args.poll_ms);
        let t0 = Instant::now();
        let session = rt.block_on(api_login(&http, &all_urls))?;
        // A few more logins, timed, for the doc's account of where a login's time goes.
        let mut login_ms = Vec::new();
        for i in 0..5 {
            let t = Instant::now();
            rt.block_on(api_login(&http, &all_urls[i % all_urls.len()..]))?;
            login_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let zones = rt.block_on(make_zones(&http, &all_urls, &session, max_clients, poll))?;
        println!(
            "bench=api_setup zones={} secs={:.2} login_median_ms={:.2}",
            zones.len(),
            t0.elapsed().as_secs_f64(),
            median(&mut login_ms)
        );
        Some(ApiCtx {
            http,
            urls: Arc::new(all_urls.clone()),
            session: session.into(),
            zones: Arc::new(zones),
            poll,
        })
    } else {
        None
    };

    for &clients in &args.clients {
        let total = args.ops.unwrap_or_else(|| default_ops(clients));
        let mut kv_peer = None;
        if !args.skip_writes && !args.api_only {
            let leader = zs.wait_leader(Duration::from_secs(30))?;
            let leader_url = vec![format!("http://{}", zs.node(leader).http)];

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
                all_urls.clone(),
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
            kv_peer = Some(z_all);
        }
        if let Some(ctx) = &api_ctx {
            // The peer: the KV write spread over all nodes, as the API calls are.
            let kv = match kv_peer {
                Some(k) => k,
                None => {
                    let k = rt.block_on(zsnode_writes(
                        all_urls.clone(),
                        clients,
                        total,
                        &format!("zk{clients}"),
                    ))?;
                    println!("{}", k.line("zsnode", "all", clients));
                    k
                }
            };
            let ops = |case| {
                args.api_ops
                    .unwrap_or_else(|| default_api_ops(case, clients))
            };
            run_api_cases(&rt, ctx, clients, ops, &kv)?;
        }
    }

    if !args.api_only {
        let mut zms = zsnode_failover(&rt, &mut zs, rounds)?;
        summary("zsnode", &mut zms);
        if let Some(e) = etcd.as_mut() {
            let mut ems = etcd_failover(&rt, e, rounds)?;
            summary("etcd", &mut ems);
        }
    }
    println!("bench=done secs={:.0}", started.elapsed().as_secs_f64());
    Ok(())
}

/// The test clusters' admin token: the `/kv` routes are administration endpoints.
fn admin_headers() -> reqwest::header::HeaderMap {
    let mut h = reqwest::header::HeaderMap::new();
    if let Ok(v) = chaos_tests::cluster::admin_authorization().parse() {
        h.insert(reqwest::header::AUTHORIZATION, v);
    }
    h
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

    #[test]
    fn api_lines() {
        let r = ApiResult {
            case: merge(vec![(2, 1, vec![1000, 3000])], Duration::from_secs(1)),
            polls: 6,
            first_error: None,
        };
        assert_eq!(
            r.line(ApiCase::AsyncUpdate, 4),
            "bench=api case=async_update call=UpdateZone clients=4 ops=2 errors=1 secs=1.00 calls_per_s=2 p50_ms=3.00 p99_ms=3.00 polls_per_call=2.0"
        );
        assert!(!r.line(ApiCase::SyncWrite, 4).contains("polls"));
        assert!(ApiCase::ALL.iter().filter(|c| c.is_async()).count() == 2);
    }
}
