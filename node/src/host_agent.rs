//! The reachability check the node receiving `AddKVMHost` makes before it proposes anything:
//! [`HostAgent`] is the seam, [`SshPortProbe`] the production check (the host's SSH server, or an
//! agent already listening on 7272, answered). Deploying and driving the agent is the flow's
//! (`host_connect.rs`, `agent_installer.rs`, `agent_client.rs`).

use std::time::Duration;

use futures::future::BoxFuture;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

pub use api::plan::HostEndpoint;
use api::secret::Secret;

/// Why a host could not be reached. Messages name the address and the cause: they end up in
/// the `details` of the refusal the API client sees.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The management IP did not resolve to any address.
    #[error("cannot resolve {addr}: {reason}")]
    Resolve {
        /// `ip:port` as given.
        addr: String,
        /// Resolver message.
        reason: String,
    },
    /// The TCP connection failed (refused, unreachable, ...).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// `ip:port`.
        addr: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// Connecting and reading the identification took longer than allowed.
    #[error("no SSH identification from {addr} within {timeout:?}")]
    Timeout {
        /// `ip:port`.
        addr: String,
        /// The bound.
        timeout: Duration,
    },
    /// Reading from the connection failed.
    #[error("reading from {addr} failed: {source}")]
    Read {
        /// `ip:port`.
        addr: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The peer answered but is not an SSH server.
    #[error(
        "{addr} is not an SSH server: it sent {got:?} instead of an \"SSH-\" identification line"
    )]
    NotSsh {
        /// `ip:port`.
        addr: String,
        /// The first line it sent (cut to 80 characters).
        got: String,
    },
    /// The peer closed the connection without sending anything.
    #[error("{addr} closed the connection without identifying itself")]
    Closed {
        /// `ip:port`.
        addr: String,
    },
}

/// The management node's side of a KVM host: object-safe, so the node holds an
/// `Arc<dyn HostAgent>` and tests or the agent issue substitute their own at start-up.
pub trait HostAgent: Send + Sync {
    /// Check that the host at `endpoint` can be reached; `password` is its SSH password,
    /// opened for this call (the agent logs in with it; it is never logged or kept).
    fn probe<'a>(
        &'a self,
        endpoint: &'a HostEndpoint,
        password: &'a Secret,
    ) -> BoxFuture<'a, Result<(), AgentError>>;
}

/// Production [`HostAgent`] until the agent exists: a TCP connection to
/// `managementIp:sshPort` whose server must identify itself as SSH (RFC 4253 §4.2).
#[derive(Debug, Clone)]
pub struct SshPortProbe {
    /// Bound on resolving, connecting and reading the identification together.
    pub timeout: Duration,
}

/// Default bound of [`SshPortProbe`]: the node's default request timeout, so a blackholed
/// address fails a call in about the time a stuck proposal would.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// RFC 4253 §4.2: the identification line is at most 255 bytes; lines before it are allowed,
/// so read at most this much looking for it.
const MAX_PREAMBLE: usize = 8 * 1024;

impl Default for SshPortProbe {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_PROBE_TIMEOUT,
        }
    }
}

impl HostAgent for SshPortProbe {
    fn probe<'a>(
        &'a self,
        endpoint: &'a HostEndpoint,
        // The identification line comes before authentication: nothing to log in with yet.
        _password: &'a Secret,
    ) -> BoxFuture<'a, Result<(), AgentError>> {
        Box::pin(async move {
            let addr = format!("{}:{}", endpoint.management_ip, endpoint.ssh_port);
            let ssh = match tokio::time::timeout(self.timeout, identify(endpoint, &addr)).await {
                Ok(r) => r,
                Err(_) => Err(AgentError::Timeout {
                    addr,
                    timeout: self.timeout,
                }),
            };
            // A host whose agent is installed already (a package, or the local demo) is
            // reachable without SSH: the add's flow attaches that agent (and proves it is one
            // of this cluster's over mutual TLS).
            if ssh.is_err() && agent_port_answers(endpoint, self.timeout).await {
                return Ok(());
            }
            ssh
        })
    }
}

/// Whether the host's agent port accepts a connection.
async fn agent_port_answers(endpoint: &HostEndpoint, timeout: Duration) -> bool {
    let connect = TcpStream::connect((endpoint.management_ip.as_str(), proto::agent::DEFAULT_PORT));
    matches!(tokio::time::timeout(timeout, connect).await, Ok(Ok(_)))
}

/// Connect and read lines until one starts with `SSH-`. RFC 4253 §4.2 lets a server send other
/// lines first; a peer that sends only other lines, or closes, is not an SSH server.
async fn identify(endpoint: &HostEndpoint, addr: &str) -> Result<(), AgentError> {
    let targets: Vec<_> =
        tokio::net::lookup_host((endpoint.management_ip.as_str(), endpoint.ssh_port))
            .await
            .map_err(|e| AgentError::Resolve {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?
            .collect();
    let mut last_err = None;
    let mut stream = None;
    for t in targets {
        match TcpStream::connect(t).await {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_err = Some(e),
        }
    }
    let mut stream = match (stream, last_err) {
        (Some(s), _) => s,
        (None, Some(source)) => {
            return Err(AgentError::Connect {
                addr: addr.to_string(),
                source,
            })
        }
        (None, None) => {
            return Err(AgentError::Resolve {
                addr: addr.to_string(),
                reason: "no address".into(),
            })
        }
    };
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        // Judge every complete line received so far.
        for line in buf.split(|b| *b == b'\n') {
            if line.starts_with(b"SSH-") {
                return Ok(());
            }
        }
        if buf.len() >= MAX_PREAMBLE {
            return Err(not_ssh(addr, &buf));
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|source| AgentError::Read {
                addr: addr.to_string(),
                source,
            })?;
        if n == 0 {
            return Err(if buf.is_empty() {
                AgentError::Closed {
                    addr: addr.to_string(),
                }
            } else {
                not_ssh(addr, &buf)
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn not_ssh(addr: &str, buf: &[u8]) -> AgentError {
    let first = buf.split(|b| *b == b'\n').next().unwrap_or_default();
    let got: String = String::from_utf8_lossy(first)
        .trim_end()
        .chars()
        .take(80)
        .collect();
    AgentError::NotSsh {
        addr: addr.to_string(),
        got,
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::*;

    /// A listener on 127.0.0.1 that writes `greeting` to every connection, then closes it.
    async fn server(greeting: &'static [u8]) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let _ = s.write_all(greeting).await;
            }
        });
        port
    }

    fn key() -> api::secret::DataKey {
        api::secret::DataKey::from_bytes([9; 32])
    }

    fn ep(port: u16) -> HostEndpoint {
        HostEndpoint {
            management_ip: "127.0.0.1".into(),
            ssh_port: port,
            username: "root".into(),
            password: key().seal("pw"),
        }
    }

    async fn probe(p: &SshPortProbe, ep: &HostEndpoint) -> Result<(), AgentError> {
        let pw = key().open(&ep.password).unwrap();
        p.probe(ep, &pw).await
    }

    #[tokio::test]
    async fn accepts_ssh_and_refuses_everything_else() {
        let p = SshPortProbe::default();
        let ssh = server(b"SSH-2.0-OpenSSH_9.2\r\n").await;
        probe(&p, &ep(ssh)).await.unwrap();
        // RFC 4253 §4.2: other lines may come first.
        let banner = server(b"welcome\r\nSSH-2.0-x\r\n").await;
        probe(&p, &ep(banner)).await.unwrap();
        let http = server(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        let e = probe(&p, &ep(http)).await.unwrap_err();
        assert!(
            matches!(e, AgentError::NotSsh { ref got, .. } if got == "HTTP/1.1 400 Bad Request"),
            "{e}"
        );
        let mute = server(b"").await;
        assert!(matches!(
            probe(&p, &ep(mute)).await.unwrap_err(),
            AgentError::Closed { .. }
        ));
        // A closed port: bind, learn the port, release it.
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().port()
        };
        let e = probe(&p, &ep(closed)).await.unwrap_err();
        assert!(matches!(e, AgentError::Connect { .. }), "{e}");
        assert!(e.to_string().contains(&format!("127.0.0.1:{closed}")));
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        // Accept and hold the connection without writing.
        let hold = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(s);
        });
        let p = SshPortProbe {
            timeout: Duration::from_millis(200),
        };
        let e = probe(&p, &ep(port)).await.unwrap_err();
        assert!(matches!(e, AgentError::Timeout { .. }), "{e}");
        hold.abort();
    }
}
