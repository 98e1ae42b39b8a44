//! The agent's credentials (issued by the cluster CA with `zsnode pki agent-cert`) and the
//! identity of a caller: only a management node of the same cluster gets past the handshake
//! and the header checks.

use std::path::Path;

use proto::agent::files;
use tonic::transport::Certificate;
use tonic::transport::Identity;
use tonic::transport::ServerTlsConfig;
use x509_parser::extensions::GeneralName;
use x509_parser::extensions::ParsedExtension;

/// A credentials problem, naming the file and the fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

/// The agent's TLS material.
#[derive(Debug, Clone)]
pub struct AgentCredentials {
    /// The cluster CA (PEM).
    pub ca_pem: String,
    /// The agent certificate (PEM).
    pub cert_pem: String,
    /// Its key (PEM).
    pub key_pem: String,
    /// The cluster named by the certificate.
    pub cluster_id: String,
    /// The host address named by the certificate.
    pub host: String,
}

fn uris_of(der: &[u8]) -> Result<Vec<String>, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("unreadable certificate: {e}"))?;
    let mut out = Vec::new();
    for ext in cert.extensions() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
            for n in &san.general_names {
                if let GeneralName::URI(u) = n {
                    out.push((*u).to_string());
                }
            }
        }
    }
    Ok(out)
}

fn first_der(pem: &str, what: &str) -> Result<Vec<u8>, TlsError> {
    let begin = "-----BEGIN CERTIFICATE-----";
    let end = "-----END CERTIFICATE-----";
    let body = pem
        .split_once(begin)
        .and_then(|(_, rest)| rest.split_once(end))
        .map(|(b, _)| b.split_whitespace().collect::<String>())
        .ok_or_else(|| TlsError(format!("{what}: no PEM certificate")))?;
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|e| TlsError(format!("{what}: bad PEM: {e}")))
}

impl AgentCredentials {
    /// Load `dir/{ca.crt,agent.crt,agent.key}`; the key must not be readable by others.
    pub fn load(dir: &Path) -> Result<Self, TlsError> {
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read_to_string(&p).map_err(|e| {
                TlsError(format!(
                    "{}: {e} (issue the agent's credentials with `zsnode pki agent-cert --host <ip> --out {}` on a management node)",
                    p.display(),
                    dir.display()
                ))
            })
        };
        let key_path = dir.join(files::KEY);
        use std::os::unix::fs::MetadataExt as _;
        if let Ok(m) = std::fs::metadata(&key_path) {
            if m.mode() & 0o077 != 0 {
                return Err(TlsError(format!(
                    "{} is readable by other users (mode {:o}): chmod 600 it",
                    key_path.display(),
                    m.mode() & 0o777
                )));
            }
        }
        let ca_pem = read(files::CA_CERT)?;
        let cert_pem = read(files::CERT)?;
        let key_pem = read(files::KEY)?;
        let der = first_der(&cert_pem, files::CERT)?;
        let uris = uris_of(&der).map_err(|e| TlsError(format!("{}: {e}", files::CERT)))?;
        let (cluster_id, host) = uris
            .iter()
            .find_map(|u| proto::agent::parse_agent_uri(u))
            .map(|(c, h)| (c.to_string(), h.to_string()))
            .ok_or_else(|| {
                TlsError(format!(
                    "{} is not an agent certificate (no urn:zstack:<cluster>:agent:<host> name)",
                    dir.join(files::CERT).display()
                ))
            })?;
        Ok(Self {
            ca_pem,
            cert_pem,
            key_pem,
            cluster_id,
            host,
        })
    }

    /// Server TLS: this certificate, and only clients with a certificate of the cluster CA.
    pub fn server_tls(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .client_ca_root(Certificate::from_pem(&self.ca_pem))
    }
}

/// The (cluster, node id) a caller's certificate names, from its `urn:zstack:<c>:node:<id>`.
pub fn node_of(der: &[u8]) -> Result<(String, u64), String> {
    for u in uris_of(der)? {
        if let Some((c, id)) = u
            .strip_prefix("urn:zstack:")
            .and_then(|r| r.rsplit_once(":node:"))
        {
            if let Ok(id) = id.parse() {
                return Ok((c.to_string(), id));
            }
        }
    }
    Err("the client certificate names no management node (urn:zstack:<cluster>:node:<id>)".into())
}
