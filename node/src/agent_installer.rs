//! The node's [`AgentInstaller`]: puts this build's `zsagent` on a KVM host or an image
//! store's server over SSH ([`crate::host_deploy`]) with the certificate bundle the leader
//! issued for it, and starts it supervised, listening on the machine's address. One install
//! per machine serves both roles.
//!
//! Layout on the host (the install dir is the agent's alone; removing the host's agent removes
//! it whole):
//!
//! ```text
//! <install_dir>/bin/zsagent
//! <install_dir>/pki/{ca.crt, agent.crt, agent.key (0600)}
//! <install_dir>/data/          agent state (term, host binding)
//! <install_dir>/agent.log      supervisor and agent output
//! ```
//!
//! `<install_dir>` is [`ROOT_INSTALL_DIR`] for a root login; any other user cannot write there,
//! so theirs is `$HOME/.zstack-agent`.

use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
use proto::agent::files;

use crate::host_connect::AgentInstaller;
use crate::host_connect::Endpoint;
use crate::host_deploy;
use crate::host_deploy::AgentInstall;
use crate::host_deploy::DeployError;
use crate::host_deploy::FileSource;
use crate::host_deploy::InstallFile;
use crate::host_deploy::SshTarget;
use crate::pki::agent::AgentBundle;

/// Install dir of a root login.
pub const ROOT_INSTALL_DIR: &str = "/var/lib/zstack/zsagent";
/// Install dir of any other login, relative to its `$HOME`.
pub const USER_INSTALL_DIR: &str = ".zstack-agent";
/// Bound on the SSH connect (TCP and banner); sessions get [`host_deploy`]'s slack on top.
const SSH_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `zsagent` next to the running `zsnode` (how packages and `cargo build` lay them out).
pub fn default_agent_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("zsagent")))
        .unwrap_or_else(|| PathBuf::from("zsagent"))
}

/// Installs agents over SSH with the system `ssh`.
#[derive(Debug, Clone)]
pub struct SshInstaller {
    agent_binary: PathBuf,
    libvirt_uri: String,
    known_hosts: PathBuf,
    agent_port: u16,
}

impl SshInstaller {
    /// Install `agent_binary`, run with `--libvirt-uri libvirt_uri`, listening on `agent_port`;
    /// host keys are recorded in `<data_dir>/ssh/known_hosts`.
    pub fn new(
        agent_binary: PathBuf,
        libvirt_uri: String,
        data_dir: &Path,
        agent_port: u16,
    ) -> Self {
        Self {
            agent_binary,
            libvirt_uri,
            known_hosts: data_dir.join("ssh").join("known_hosts"),
            agent_port,
        }
    }

    fn target(&self, ep: &Endpoint, password: String) -> SshTarget {
        SshTarget {
            ip: ep.management_ip.clone(),
            port: ep.ssh_port,
            username: ep.username.clone(),
            password,
            known_hosts: self.known_hosts.clone(),
            timeout: SSH_CONNECT_TIMEOUT,
        }
    }

    fn listen_addr(&self, ip: &str) -> String {
        if ip.contains(':') {
            format!("[{ip}]:{}", self.agent_port)
        } else {
            format!("{ip}:{}", self.agent_port)
        }
    }

    /// Where the agent of this login lives, from what [`host_deploy::probe`] saw.
    fn install_dir(t: &SshTarget, facts: &host_deploy::RemoteFacts) -> Result<String, String> {
        if facts.root {
            return Ok(ROOT_INSTALL_DIR.to_string());
        }
        let home = facts.home.trim_end_matches('/');
        // `undeploy` removes the dir with rm -rf: a home that is `/` or relative would put
        // the install somewhere nobody owns it.
        if !home.starts_with('/') {
            return Err(format!(
                "{}@{} has no usable home directory ($HOME={:?}) to install the agent into; \
                 give the user a home or log in as root",
                t.username, t.ip, facts.home
            ));
        }
        Ok(format!("{home}/{USER_INSTALL_DIR}"))
    }

    fn plan(&self, ep: &Endpoint, dir: &str, bundle: AgentBundle) -> AgentInstall {
        let pem = |s: String| FileSource::Bytes(s.into_bytes());
        AgentInstall {
            install_dir: dir.to_string(),
            files: vec![
                InstallFile {
                    rel_path: "bin/zsagent".into(),
                    source: FileSource::Path(self.agent_binary.clone()),
                    mode: 0o755,
                },
                InstallFile {
                    rel_path: format!("pki/{}", files::CA_CERT),
                    source: pem(bundle.ca_pem),
                    mode: 0o644,
                },
                InstallFile {
                    rel_path: format!("pki/{}", files::CERT),
                    source: pem(bundle.cert_pem),
                    mode: 0o644,
                },
                InstallFile {
                    rel_path: format!("pki/{}", files::KEY),
                    source: pem(bundle.key_pem),
                    mode: 0o600,
                },
            ],
            command: vec![
                "bin/zsagent".into(),
                "run".into(),
                "--listen".into(),
                self.listen_addr(&ep.management_ip),
                "--data-dir".into(),
                format!("{dir}/data"),
                "--pki-dir".into(),
                format!("{dir}/pki"),
                "--libvirt-uri".into(),
                self.libvirt_uri.clone(),
            ],
        }
    }

    async fn do_install(
        &self,
        ep: Endpoint,
        password: String,
        bundle: AgentBundle,
    ) -> Result<(), String> {
        // Checked before logging in: a node without its agent binary fails every add the
        // same way, and the operator must learn which file (and which option) is meant.
        if !self.agent_binary.is_file() {
            return Err(format!(
                "this management node has no agent binary at {} (set --agent-binary or \
                 agent_binary)",
                self.agent_binary.display()
            ));
        }
        let t = self.target(&ep, password);
        let facts = host_deploy::probe(&t).await.map_err(describe)?;
        // The binary is this build's: on another architecture it would only fail to exec,
        // with a far less telling log line.
        if facts.arch != std::env::consts::ARCH {
            return Err(format!(
                "{}@{} is {} but this management node's zsagent is built for {}",
                t.username,
                t.ip,
                facts.arch,
                std::env::consts::ARCH
            ));
        }
        let dir = Self::install_dir(&t, &facts)?;
        let plan = self.plan(&ep, &dir, bundle);
        let d = match host_deploy::deploy(&t, &plan).await {
            Ok(d) => d,
            Err(e) => {
                // Logged in, so something may be there now (files, a supervisor restarting an
                // agent that cannot start): a failed install leaves nothing running.
                if let Err(u) = host_deploy::undeploy(&t, &dir).await {
                    tracing::warn!(host = %ep.management_ip, install_dir = %dir, error = %u,
                        "the failed install was not cleaned up");
                }
                return Err(describe(e));
            }
        };
        tracing::info!(host = %ep.management_ip, install_dir = %dir, agent_pid = d.agent_pid,
            supervision = ?d.supervision, "agent installed");
        Ok(())
    }

    async fn do_remove(&self, ep: Endpoint, password: String) -> Result<(), String> {
        let t = self.target(&ep, password);
        let facts = host_deploy::probe(&t).await.map_err(describe)?;
        let dir = Self::install_dir(&t, &facts)?;
        host_deploy::undeploy(&t, &dir).await.map_err(describe)?;
        tracing::info!(host = %ep.management_ip, install_dir = %dir, "agent removed");
        Ok(())
    }
}

/// An operator's message for a failed deployment step (it becomes the `HOST.1000`/`HOST.1002`
/// details the API client sees).
pub fn describe(e: DeployError) -> String {
    match e {
        // Already phrased for the operator, naming user@ip or ip:port.
        DeployError::AuthFailed { .. }
        | DeployError::HostKeyChanged { .. }
        | DeployError::Unreachable { .. }
        | DeployError::NotSsh { .. } => e.to_string(),
        DeployError::RemoteCommand { ref stderr, .. } if stderr.contains("Permission denied") => {
            format!("{e} (the SSH user cannot write the agent's install directory)")
        }
        DeployError::AgentDidNotStart { .. } => {
            format!("{e} (check --agent-libvirt-uri and that libvirtd runs on the host)")
        }
        e => e.to_string(),
    }
}

impl AgentInstaller for SshInstaller {
    fn install(
        &self,
        ep: &Endpoint,
        password: String,
        bundle: AgentBundle,
    ) -> BoxFuture<'static, Result<(), String>> {
        let this = self.clone();
        let ep = ep.clone();
        Box::pin(async move { this.do_install(ep, password, bundle).await })
    }

    fn remove(&self, ep: &Endpoint, password: String) -> BoxFuture<'static, Result<(), String>> {
        let this = self.clone();
        let ep = ep.clone();
        Box::pin(async move { this.do_remove(ep, password).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(root: bool, home: &str) -> host_deploy::RemoteFacts {
        host_deploy::RemoteFacts {
            arch: std::env::consts::ARCH.into(),
            systemd: false,
            kvm: false,
            root,
            home: home.into(),
        }
    }

    fn target() -> SshTarget {
        SshTarget {
            ip: "10.0.0.5".into(),
            port: 22,
            username: "ops".into(),
            password: "pw".into(),
            known_hosts: PathBuf::from("/tmp/kh"),
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn install_dir_follows_the_login() {
        let t = target();
        let d = |root, home| SshInstaller::install_dir(&t, &facts(root, home));
        assert_eq!(d(true, "/root").unwrap(), ROOT_INSTALL_DIR);
        assert_eq!(d(false, "/home/ops/").unwrap(), "/home/ops/.zstack-agent");
        for bad in ["", "/", "relative"] {
            let e = d(false, bad).unwrap_err();
            assert!(e.contains("ops@10.0.0.5"), "{e}");
        }
    }

    #[test]
    fn the_agent_listens_on_the_management_address_with_its_own_dirs() {
        let i = SshInstaller::new(
            "/x/zsagent".into(),
            "test:///default".into(),
            Path::new("/d"),
            7272,
        );
        assert_eq!(i.known_hosts, Path::new("/d/ssh/known_hosts"));
        let ep = Endpoint {
            management_ip: "fd00::5".into(),
            ssh_port: 22,
            username: "root".into(),
            password: String::new(),
        };
        let b = AgentBundle {
            ca_pem: "ca".into(),
            cert_pem: "cert".into(),
            key_pem: "key".into(),
        };
        let p = i.plan(&ep, ROOT_INSTALL_DIR, b);
        assert_eq!(
            p.command[1..],
            [
                "run",
                "--listen",
                "[fd00::5]:7272",
                "--data-dir",
                "/var/lib/zstack/zsagent/data",
                "--pki-dir",
                "/var/lib/zstack/zsagent/pki",
                "--libvirt-uri",
                "test:///default"
            ]
        );
        let key = p
            .files
            .iter()
            .find(|f| f.rel_path == "pki/agent.key")
            .unwrap();
        assert_eq!(key.mode, 0o600);
    }

    #[test]
    fn wrong_password_reads_for_the_operator() {
        let e = describe(DeployError::AuthFailed {
            user: "ops".into(),
            ip: "10.0.0.5".into(),
        });
        assert_eq!(e, "wrong username or password for ops@10.0.0.5");
    }
}
