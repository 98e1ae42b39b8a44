//! `deploy/local-cluster.sh` end to end: start 3 nodes, `zsctl status` shows one leader, two
//! followers and equal applied indexes; a second start is a no-op; stop is clean; a restart
//! from the data dirs converges again. With its demo hosts, the commands the script prints for
//! a first VM, run literally, create a VM that runs on a demo agent.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chaos_tests::cluster::{free_port, locate_binary, workspace_root, zsnode_bin};

/// A base port with `n` consecutive free ports on 127.0.0.1.
fn free_range(n: u16) -> u16 {
    for _ in 0..200 {
        let base = free_port().expect("port");
        if base > u16::MAX - n {
            continue;
        }
        if (0..n).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no range of {n} free ports");
}

struct Script {
    dir: PathBuf,
    bin_dir: PathBuf,
    http: u16,
    https: u16,
    raft: u16,
    /// Demo hosts' addresses (none: `ZS_AGENTS=0`) and the image server's port.
    agents: Option<(String, u16)>,
}

impl Script {
    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("bash");
        cmd.arg(workspace_root().join("deploy/local-cluster.sh"))
            .args(args)
            .arg("--dir")
            .arg(&self.dir)
            .env("ZS_NO_BUILD", "1");
        match &self.agents {
            Some((ips, image_port)) => {
                cmd.env("ZS_AGENTS", "1")
                    .env("ZS_AGENT_IPS", ips)
                    .env("ZS_IMAGE_PORT", image_port.to_string());
            }
            // The cluster mechanics only: demo hosts keep the trackers committing, so applied
            // indexes would not settle for the equality check below.
            None => {
                cmd.env("ZS_AGENTS", "0");
            }
        }
        let out = cmd
            .env("ZS_BIN_DIR", &self.bin_dir)
            .env("ZS_HTTP_BASE", self.http.to_string())
            .env("ZS_HTTPS_BASE", self.https.to_string())
            .env("ZS_RAFT_BASE", self.raft.to_string())
            .env("ZS_START_TIMEOUT", "60")
            .output()
            .expect("run local-cluster.sh");
        eprintln!(
            "$ local-cluster.sh {args:?} -> {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn zsctl_status(&self) -> serde_json::Value {
        let nodes = (0..3)
            .map(|i| format!("http://127.0.0.1:{}", self.http + i))
            .collect::<Vec<_>>()
            .join(",");
        let out = Command::new(self.bin_dir.join("zsctl"))
            .args(["--node", &nodes, "--json", "status"])
            .env("ZSCTL_TOKEN_FILE", self.dir.join("admin.token"))
            .output()
            .expect("run zsctl");
        assert!(
            out.status.success(),
            "zsctl status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("zsctl --json status is JSON")
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        // Never leave nodes running, even when an assertion failed.
        let _ = self.run(&["stop"]);
        if std::thread::panicking() {
            let agent_logs = std::fs::read_dir(&self.dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path().join("zsagent.log"))
                .filter(|p| p.is_file());
            let node_logs = (1..=3).map(|i| self.dir.join(format!("node{i}/zsnode.log")));
            for log in node_logs.chain(agent_logs) {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                eprintln!(
                    "===== {} =====\n{}",
                    log.display(),
                    lines[lines.len().saturating_sub(40)..].join("\n")
                );
            }
        }
    }
}

fn assert_one_leader_converged(v: &serde_json::Value) -> u64 {
    let nodes = v["nodes"].as_array().expect("nodes array");
    assert_eq!(nodes.len(), 3, "{v:#}");
    let roles: Vec<&str> = nodes
        .iter()
        .map(|n| n["role"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        roles.iter().filter(|r| **r == "Leader").count(),
        1,
        "roles {roles:?}"
    );
    assert_eq!(
        roles.iter().filter(|r| **r == "Follower").count(),
        2,
        "roles {roles:?}"
    );
    let applied: Vec<u64> = nodes
        .iter()
        .map(|n| n["applied_index"].as_u64().expect("applied"))
        .collect();
    assert!(
        applied.windows(2).all(|w| w[0] == w[1]),
        "applied indexes differ: {applied:?}"
    );
    assert!(
        nodes
            .iter()
            .all(|n| n["ready"] == serde_json::Value::Bool(true)),
        "{v:#}"
    );
    applied[0]
}

fn pids(dir: &Path) -> Vec<u32> {
    (1..=3)
        .filter_map(|i| std::fs::read_to_string(dir.join(format!("node{i}/zsnode.pid"))).ok())
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

#[test]
fn local_cluster_script_starts_reports_stops_and_restarts() {
    let zsnode = zsnode_bin().expect("zsnode binary");
    let bin_dir = zsnode.parent().expect("bin dir").to_path_buf();
    if !bin_dir.join("zsctl").is_file() {
        locate_binary("zsctl", "ops", "ZSCTL_BIN").expect("zsctl binary");
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = Script {
        dir: tmp.path().join("local"),
        bin_dir,
        http: free_range(3),
        https: free_range(3),
        raft: free_range(3),
        agents: None,
    };

    let out = s.run(&["start", "--nodes", "3"]);
    assert!(out.status.success(), "start failed");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ZSCTL_NODE="),
        "start does not say how to reach the cluster:\n{text}"
    );
    let first = assert_one_leader_converged(&s.zsctl_status());
    // Every node joined with its own certificate of the one cluster CA; the HTTPS API answers
    // with it (zsctl trusting only that CA).
    let ca = s.dir.join("node1/data/pki/ca.crt");
    for i in 0..3u16 {
        let out = Command::new(s.bin_dir.join("zsctl"))
            .args([
                "--node",
                &format!("https://127.0.0.1:{}", s.https + i),
                "--json",
                "member",
                "list",
            ])
            .arg("--cacert")
            .arg(&ca)
            .env("ZSCTL_TOKEN_FILE", s.dir.join("admin.token"))
            .output()
            .expect("zsctl over https");
        assert!(
            out.status.success(),
            "zsctl over HTTPS to node {}: {}",
            i + 1,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(s
            .dir
            .join(format!("node{}/data/pki/node.crt", i + 1))
            .is_file());
    }
    let running = pids(&s.dir);
    assert_eq!(running.len(), 3);

    let again = s.run(&["start"]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("already running"));
    assert_eq!(
        pids(&s.dir),
        running,
        "a second start must not start new processes"
    );

    let status = s.run(&["status"]);
    assert!(status.status.success());

    let stop = s.run(&["stop"]);
    assert!(stop.status.success());
    assert!(
        !String::from_utf8_lossy(&stop.stderr).contains("SIGKILL"),
        "nodes needed SIGKILL to stop"
    );
    for pid in &running {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} still alive after stop"
        );
    }
    assert!(
        !s.run(&["status"]).status.success(),
        "status of a stopped cluster must fail"
    );

    // Restart from the data dirs: same members, nothing re-joined, state kept.
    let out = s.run(&["start"]);
    assert!(out.status.success(), "restart failed");
    let second = assert_one_leader_converged(&s.zsctl_status());
    assert!(
        second >= first,
        "applied index went back from {first} to {second}"
    );
}

/// The indented lines after the "First VM" heading of the start output, as one script.
fn first_vm_commands(out: &str) -> String {
    let script: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("First VM on the demo hosts"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| &l[2..])
        .collect();
    assert!(
        script.len() >= 5,
        "start printed no first-VM commands:\n{out}"
    );
    script.join("\n")
}

#[test]
fn the_demo_prints_first_vm_commands_that_run_a_vm_on_a_demo_agent() {
    let zsnode = zsnode_bin().expect("zsnode binary");
    let bin_dir = zsnode.parent().expect("bin dir").to_path_buf();
    for (bin, package, var) in [
        ("zsctl", "ops", "ZSCTL_BIN"),
        ("zsagent", "agent", "ZSAGENT_BIN"),
    ] {
        if !bin_dir.join(bin).is_file() {
            locate_binary(bin, package, var).expect("binary");
        }
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    // Away from the default demo's 127.0.0.2-3 and the other tests' addresses.
    let ips = ["127.0.5.2", "127.0.5.3"];
    let s = Script {
        dir: tmp.path().join("demo"),
        bin_dir,
        http: free_range(3),
        https: free_range(3),
        raft: free_range(3),
        agents: Some((ips.join(" "), free_range(1))),
    };
    let out = s.run(&["start", "--nodes", "3"]);
    assert!(out.status.success(), "start failed");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let script = first_vm_commands(&text);
    let run = Command::new("bash")
        .args(["-c", &format!("set -euo pipefail\n{script}")])
        .output()
        .expect("run the printed commands");
    let stdout = String::from_utf8_lossy(&run.stdout).to_string();
    eprintln!(
        "$ first-VM commands -> {}\n{stdout}{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "the printed commands failed");
    let replies: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let vm = replies
        .iter()
        .find_map(|v| v["inventories"].as_array().and_then(|a| a.first()))
        .unwrap_or_else(|| panic!("QueryVmInstance printed no VM:\n{stdout}"));
    assert_eq!(vm["name"], "first-vm", "{vm}");
    assert_eq!(vm["state"], "Running", "{vm}");
    let host = vm["hostUuid"].as_str().expect("the VM has a host");
    // The host is one of the demo agents: the one bound to that host uuid.
    let bound: Vec<String> = ips
        .iter()
        .filter_map(|ip| std::fs::read_to_string(s.dir.join(format!("agent-{ip}/host-uuid"))).ok())
        .map(|u| u.trim().to_string())
        .collect();
    assert!(
        bound.iter().any(|u| u == host),
        "host {host} is no demo agent's (bound: {bound:?})"
    );
    let domains = replies
        .iter()
        .find(|v| v["hostUuid"] == host && v["domains"].is_array())
        .unwrap_or_else(|| panic!("no domain list of host {host}:\n{stdout}"));
    assert!(
        domains["domains"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d["name"] == vm["uuid"] && d["state"] == "Running"),
        "the agent has no running domain of {}: {domains}",
        vm["uuid"]
    );
}
