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

/// One `zsnode` child process, killed when dropped.
pub struct Proc {
    pub id: u64,
    pub raft: String,
    pub http: String,
    pub child: Child,
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

/// Place the cluster's data key in node `id`'s data dir before its first start, as the join
/// flow does: every member of one cluster holds the same key.
pub fn place_data_key(dir: &Path, id: u64, key: &api::secret::DataKey) {
    key.write_new(&node::secrets::key_path(&data_dir(dir, id)))
        .expect("write the data key");
}

/// [`spawn`] with another `RUST_LOG` filter.
pub fn spawn_env(dir: &Path, id: u64, extra: &[&str], rust_log: &str) -> Proc {
    let log_path = dir.join(format!("node{id}.log"));
    for _attempt in 0..5 {
        let raft = format!("127.0.0.1:{}", free_port());
        let http = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_zsnode"))
            .args(["--id", &id.to_string()])
            .arg("--data-dir")
            .arg(data_dir(dir, id))
            .args(["--raft-addr", &raft, "--http-addr", &http])
            .args(extra)
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut p = Proc {
            id,
            raft,
            http,
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
