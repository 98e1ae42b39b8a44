//! A local etcd cluster (Debian's `etcd-server`) on 127.0.0.1, the benchmark's peer.

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::cluster::free_port;

/// One etcd member process.
pub struct EtcdMember {
    /// Member name (`e1`, `e2`, ...).
    pub name: String,
    /// Client URL.
    pub client_url: String,
    /// Peer URL.
    pub peer_url: String,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Log file.
    pub log: PathBuf,
    child: Option<Child>,
}

/// A running etcd cluster; dropping it kills the members.
pub struct EtcdCluster {
    /// Members in order.
    pub members: Vec<EtcdMember>,
    initial_cluster: String,
    bin: PathBuf,
    _dir: tempfile::TempDir,
}

/// The etcd server binary: `$ETCD_BIN` or `etcd` on PATH (`/usr/bin/etcd` on Debian).
pub fn etcd_bin() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("ETCD_BIN") {
        return Ok(PathBuf::from(p));
    }
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/bin", "/usr/local/bin"])
    {
        let p = PathBuf::from(dir).join("etcd");
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("etcd not found (install Debian's etcd-server: bash deploy/install-deps.sh, or set ETCD_BIN)")
}

impl EtcdCluster {
    /// Start `n` members with fresh data dirs (etcd's default: fsync on every commit).
    pub fn start(n: usize) -> Result<Self> {
        let bin = etcd_bin()?;
        let dir = tempfile::Builder::new().prefix("zs-etcd-").tempdir()?;
        let mut members = Vec::new();
        for i in 1..=n {
            members.push(EtcdMember {
                name: format!("e{i}"),
                client_url: format!("http://127.0.0.1:{}", free_port()?),
                peer_url: format!("http://127.0.0.1:{}", free_port()?),
                data_dir: dir.path().join(format!("e{i}")),
                log: dir.path().join(format!("e{i}.log")),
                child: None,
            });
        }
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = EtcdCluster {
            members,
            initial_cluster,
            bin,
            _dir: dir,
        };
        for i in 0..n {
            c.spawn(i)?;
        }
        Ok(c)
    }

    /// Start member `i` (0-based) with its data dir (a restart reuses it).
    pub fn spawn(&mut self, i: usize) -> Result<()> {
        let m = &mut self.members[i];
        let log = OpenOptions::new().create(true).append(true).open(&m.log)?;
        let child = Command::new(&self.bin)
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args([
                "--listen-client-urls",
                &m.client_url,
                "--advertise-client-urls",
                &m.client_url,
            ])
            .args([
                "--listen-peer-urls",
                &m.peer_url,
                "--initial-advertise-peer-urls",
                &m.peer_url,
            ])
            .args([
                "--initial-cluster",
                &self.initial_cluster,
                "--initial-cluster-state",
                "new",
            ])
            .args([
                "--initial-cluster-token",
                "zs-bench",
                "--logger",
                "zap",
                "--log-level",
                "warn",
            ])
            // Same budget as a default etcd install: no tuning in either direction.
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("spawn {}", self.bin.display()))?;
        m.child = Some(child);
        Ok(())
    }

    /// kill -9 member `i`.
    pub fn kill9(&mut self, i: usize) -> Result<()> {
        let Some(mut c) = self.members[i].child.take() else {
            bail!("etcd member {i} not running")
        };
        c.kill()?;
        c.wait()?;
        Ok(())
    }

    /// Client URLs of all members.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// Ask each member for its status; returns the index of the member that is leader.
    pub async fn leader(&self) -> Result<usize> {
        let mut last = anyhow!("no member answered");
        for (i, m) in self.members.iter().enumerate() {
            if m.child.is_none() {
                continue;
            }
            let opts = etcd_client::ConnectOptions::new()
                .with_connect_timeout(Duration::from_secs(1))
                .with_timeout(Duration::from_secs(2));
            let mut c =
                match etcd_client::Client::connect([m.client_url.as_str()], Some(opts)).await {
                    Ok(c) => c,
                    Err(e) => {
                        last = anyhow!("connect {}: {e}", m.client_url);
                        continue;
                    }
                };
            match c.status().await {
                Ok(s) => {
                    let me = s.header().map(|h| h.member_id()).unwrap_or(0);
                    if s.leader() != 0 && s.leader() == me {
                        return Ok(i);
                    }
                }
                Err(e) => last = anyhow!("status {}: {e}", m.client_url),
            }
        }
        Err(last)
    }

    /// Wait until a leader exists and a put through every running member succeeds.
    pub async fn wait_healthy(&self, timeout: Duration) -> Result<usize> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let attempt = async {
                let leader = self.leader().await?;
                for m in self.members.iter().filter(|m| m.child.is_some()) {
                    let mut c = etcd_client::Client::connect([m.client_url.as_str()], None).await?;
                    c.put("zs-bench-health", "ok", None).await?;
                }
                anyhow::Ok(leader)
            };
            match tokio::time::timeout(Duration::from_secs(5), attempt).await {
                Ok(Ok(l)) => return Ok(l),
                Ok(Err(e)) if tokio::time::Instant::now() >= deadline => {
                    return Err(e.context("etcd not healthy"))
                }
                Err(_) if tokio::time::Instant::now() >= deadline => {
                    bail!("etcd not healthy: timed out")
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Last lines of every member's log.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for m in &self.members {
            let t = std::fs::read_to_string(&m.log).unwrap_or_default();
            let all: Vec<&str> = t.lines().collect();
            out.push_str(&format!("===== etcd {} =====\n", m.name));
            for l in &all[all.len().saturating_sub(lines)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
