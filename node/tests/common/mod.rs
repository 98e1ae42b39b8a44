//! Shared by the process-level node tests: start real `zsnode` children on free loopback ports,
//! and a REST v1 client that logs in as admin and follows async jobs to their result.
#![allow(dead_code)] // Each test binary uses a different part.

use std::net::TcpListener;
use std::path::Path;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use serde_json::json;
use serde_json::Value;

/// The admin token of every test cluster (given to its founding node with
/// `--admin-token-file`).
pub const ADMIN_TOKEN: &str = "zsadm_node-tests-admin-token-0123456789";

/// One `zsnode` child process, killed when dropped.
pub struct Proc {
    pub id: u64,
    pub raft: String,
    pub http: String,
    pub https: String,
    pub child: Child,
}

/// Default headers carrying the test clusters' admin token.
pub fn admin_headers() -> reqwest::header::HeaderMap {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {ADMIN_TOKEN}").parse().unwrap(),
    );
    h
}

/// An HTTP client sending the admin token.
pub fn admin_client() -> reqwest::Client {
    reqwest::Client::builder()
        .default_headers(admin_headers())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// How a spawned node obtains its credentials.
fn credential_args(dir: &Path, id: u64, extra: &[&str], https: &str) -> Vec<String> {
    let token_file = dir.join("admin.token");
    if !token_file.exists() {
        std::fs::write(&token_file, ADMIN_TOKEN).unwrap();
    }
    let mut args = vec![
        "--admin-token-file".to_string(),
        token_file.display().to_string(),
    ];
    let founder = dir.join("founder");
    let own_data = dir.join(format!("n{id}"));
    // A node of another cluster id founds its own cluster (tests of foreign peers).
    if extra.contains(&"--cluster-id") || extra.contains(&"--join") {
        return args;
    }
    match std::fs::read_to_string(&founder) {
        Err(_) => std::fs::write(&founder, format!("{id} {https}")).unwrap(),
        Ok(text) => {
            let (fid, url) = text.split_once(' ').unwrap();
            if fid != id.to_string() && !own_data.join("pki").exists() {
                let out = Command::new(env!("CARGO_BIN_EXE_zsnode"))
                    .args(["pki", "join-token", "--data-dir"])
                    .arg(dir.join(format!("n{fid}")))
                    .output()
                    .unwrap();
                assert!(out.status.success(), "zsnode pki join-token: {out:?}");
                let tf = dir.join(format!("join-{id}.token"));
                std::fs::write(&tf, &out.stdout).unwrap();
                args.extend([
                    "--join".to_string(),
                    format!("https://{url}"),
                    "--join-token-file".to_string(),
                    tf.display().to_string(),
                ]);
            }
        }
    }
    args
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start node `id` and wait until it reports it started; retried on fresh ports when the
/// process exits first (another process may grab a port between probing and binding).
pub fn spawn(dir: &Path, id: u64, extra: &[&str]) -> Proc {
    spawn_env(dir, id, extra, "info,openraft=warn")
}

/// The data directory of node `id` under `dir`.
pub fn data_dir(dir: &Path, id: u64) -> std::path::PathBuf {
    dir.join(format!("n{id}"))
}

/// [`spawn`] with another `RUST_LOG` filter.
pub fn spawn_env(dir: &Path, id: u64, extra: &[&str], rust_log: &str) -> Proc {
    spawn_bin(
        Path::new(env!("CARGO_BIN_EXE_zsnode")),
        dir,
        id,
        extra,
        rust_log,
        &[],
    )
}

/// `target/debug/zsnode-seeded` (the deliberately broken node of the checkers' self-tests),
/// built by `deploy/test.sh` with `cargo build -p node --features seeded-bugs --bin
/// zsnode-seeded`; `None` when it was not built.
pub fn seeded_zsnode_bin() -> Option<std::path::PathBuf> {
    let p = Path::new(env!("CARGO_BIN_EXE_zsnode")).with_file_name("zsnode-seeded");
    p.is_file().then_some(p)
}

/// [`spawn_env`] of another binary (`zsnode-seeded`) with extra environment variables.
pub fn spawn_bin(
    bin: &Path,
    dir: &Path,
    id: u64,
    extra: &[&str],
    rust_log: &str,
    envs: &[(&str, &str)],
) -> Proc {
    let log_path = dir.join(format!("node{id}.log"));
    for _attempt in 0..5 {
        let raft = format!("127.0.0.1:{}", free_port());
        let http = format!("127.0.0.1:{}", free_port());
        let https = format!("127.0.0.1:{}", free_port());
        let creds = credential_args(dir, id, extra, &https);
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(bin)
            .args(["--id", &id.to_string()])
            .arg("--data-dir")
            .arg(data_dir(dir, id))
            .args([
                "--raft-addr",
                &raft,
                "--http-addr",
                &http,
                "--https-addr",
                &https,
            ])
            .args(&creds)
            .args(extra)
            .env("RUST_LOG", rust_log)
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut p = Proc {
            id,
            raft,
            http,
            https,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if text.contains("zsnode started") {
                return p;
            }
            if let Ok(Some(status)) = p.child.try_wait() {
                eprintln!("node {id} exited ({status}) during start-up, retrying:\n{text}");
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    panic!("node {id} did not start:\n{text}");
}

/// A REST v1 client of one node with a session.
pub struct Rest {
    pub c: reqwest::Client,
    pub base: String,
    pub session: String,
}

impl Rest {
    /// Send a call; an accepted async call (202) is polled at its `location` until it finishes.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .c
            .request(method, format!("{}{path}", self.base))
            .header("Authorization", format!("OAuth {}", self.session));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let v = r.json().await.unwrap_or(Value::Null);
        if status != 202 {
            return (status, v);
        }
        let location = v["location"].as_str().unwrap().to_string();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let r = self.c.get(&location).send().await.unwrap();
            let status = r.status().as_u16();
            if status != 202 {
                return (status, r.json().await.unwrap_or(Value::Null));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("job {location} did not finish");
    }
}

/// Log in as admin through REST v1 at `base` (`http://host:port/zstack/v1`); the admin account
/// is created by a leader duty shortly after the cluster forms, so this retries for 30 s.
pub async fn login(c: &reqwest::Client, base: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let body = json!({"logInByAccount": {
            "accountName": "admin",
            "password": api::families::identity::DEFAULT_ADMIN_PASSWORD_SHA512,
        }});
        if let Ok(r) = c
            .put(format!("{base}/accounts/login"))
            .json(&body)
            .send()
            .await
        {
            let v: Value = r.json().await.unwrap_or(Value::Null);
            if let Some(s) = v["inventory"]["uuid"].as_str() {
                return s.to_string();
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("admin login never succeeded");
}

/// The Prometheus text a node serves at `/metrics`.
pub async fn metrics(c: &reqwest::Client, p: &Proc) -> String {
    c.get(format!("http://{}/metrics", p.http))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("/metrics body")
}

/// `target/debug/zsagent`, next to the `zsnode` under test (`cargo build --workspace --bins`).
pub fn zsagent_bin() -> std::path::PathBuf {
    let p = std::path::Path::new(env!("CARGO_BIN_EXE_zsnode")).with_file_name("zsagent");
    assert!(
        p.exists(),
        "{} is missing: cargo build --workspace --bins",
        p.display()
    );
    p
}

/// A `zsagent` serving a test-driver host with 2 sockets × 4 cores × 2 threads and 8 GiB.
pub struct TestAgent {
    child: Option<std::process::Child>,
    ip: String,
    /// Its data directory (term, host binding, pki).
    pub dir: std::path::PathBuf,
}

impl TestAgent {
    pub fn install(node_dir: &std::path::Path, dir: &std::path::Path, ip: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_zsnode"))
            .args(["pki", "agent-cert", "--host", ip, "--out"])
            .arg(dir.join("pki"))
            .arg("--data-dir")
            .arg(node_dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let xml = std::process::Command::new(zsagent_bin())
            .args([
                "test-host-xml",
                "--sockets",
                "2",
                "--cores",
                "4",
                "--threads",
                "2",
            ])
            .args(["--memory-mib", "8192"])
            .output()
            .unwrap();
        std::fs::write(dir.join("host.xml"), xml.stdout).unwrap();
        let mut a = Self {
            child: None,
            ip: ip.to_string(),
            dir: dir.to_path_buf(),
        };
        a.start();
        a
    }

    pub fn start(&mut self) {
        let addr = format!("{}:{}", self.ip, proto::agent::DEFAULT_PORT);
        let log = std::fs::File::create(self.dir.join("agent.log")).unwrap();
        let child = std::process::Command::new(zsagent_bin())
            .args(["run", "--listen", &addr, "--data-dir"])
            .arg(&self.dir)
            .arg("--libvirt-uri")
            .arg(format!("test://{}", self.dir.join("host.xml").display()))
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "zsagent did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Wait until node `p` reports ready (30 s).
pub async fn ready(c: &reqwest::Client, p: &Proc) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = c
            .get(format!("http://{}/health/ready", p.http))
            .send()
            .await
        {
            if r.status().as_u16() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("node {} not ready", p.id);
}

/// Add `p` to the cluster through `via` (must answer 200).
pub async fn add_member(c: &reqwest::Client, via: &Proc, p: &Proc) {
    let r = c
        .post(format!("http://{}/cluster/members", via.http))
        .json(&json!({"id": p.id, "raft_addr": p.raft, "api_addr": p.http}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        200,
        "{}",
        r.text().await.unwrap_or_default()
    );
}

/// Closed-loop load for `secs`: `clients` tasks spread over the nodes, each sending `one(k, i)`
/// back to back; answers the completed calls per second and how many of them succeeded.
pub async fn closed_loop<F, Fut>(
    rests: &[std::sync::Arc<Rest>],
    clients: usize,
    secs: f64,
    one: F,
) -> (f64, usize)
where
    F: Fn(std::sync::Arc<Rest>, usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..clients {
        let rest = rests[k % rests.len()].clone();
        let one = one.clone();
        tasks.spawn(async move {
            let (mut n, mut ok) = (0usize, 0usize);
            while Instant::now() < deadline {
                if one(rest.clone(), k, n).await {
                    ok += 1;
                }
                n += 1;
            }
            (n, ok)
        });
    }
    let (mut n, mut ok) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        let (a, b) = r.expect("task");
        n += a;
        ok += b;
    }
    (n as f64 / started.elapsed().as_secs_f64(), ok)
}
