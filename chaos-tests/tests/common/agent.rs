//! A `zsagent` on a loopback address for the process-level tests: libvirt's test driver
//! (1 socket × 4 cores × 2 threads, 4 GiB), credentials issued by a node's CA, killed on drop.
#![allow(dead_code)] // Each test uses a different part.

use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use chaos_tests::cluster::locate_binary;

pub struct Agent {
    child: Option<Child>,
    ip: String,
    dir: PathBuf,
    bin: PathBuf,
}

impl Agent {
    pub fn install(node_dir: &Path, dir: &Path, ip: &str) -> Self {
        let zsnode = chaos_tests::cluster::zsnode_bin().unwrap();
        let bin = locate_binary("zsagent", "agent", "ZSAGENT_BIN").unwrap();
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new(zsnode)
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
        let xml = Command::new(&bin)
            .args(["test-host-xml", "--sockets", "1", "--cores", "4"])
            .args(["--threads", "2", "--memory-mib", "4096"])
            .output()
            .unwrap();
        std::fs::write(dir.join("host.xml"), xml.stdout).unwrap();
        let mut a = Self {
            child: None,
            ip: ip.into(),
            dir: dir.into(),
            bin,
        };
        a.start();
        a
    }

    pub fn start(&mut self) {
        let addr = format!("{}:{}", self.ip, proto::agent::DEFAULT_PORT);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("agent.log"))
            .unwrap();
        self.child = Some(
            Command::new(&self.bin)
                .args(["run", "--listen", &addr, "--data-dir"])
                .arg(&self.dir)
                .arg("--libvirt-uri")
                .arg(format!("test://{}", self.dir.join("host.xml").display()))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
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

    pub fn bound_to(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("host-uuid"))
            .ok()
            .map(|s| s.trim().to_string())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}
