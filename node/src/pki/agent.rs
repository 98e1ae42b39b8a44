//! Credentials for host agents (`zsagent`): the cluster CA signs each agent a server
//! certificate, so the leader (a client presenting its node certificate) and the agent (a
//! server accepting only node certificates of the same CA) authenticate each other.
//!
//! An agent certificate names the fixed TLS name [`proto::agent::TLS_NAME`], the host's
//! management address and the URI `urn:zstack:<cluster>:agent:<host>`, and it is good for
//! server authentication only: presented as a client certificate (to a management node or to
//! another agent) it is refused, so a compromised host cannot speak as a management node.

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use proto::agent::files;
use rcgen::CertificateParams;
use rcgen::DnType;
use rcgen::ExtendedKeyUsagePurpose;
use rcgen::KeyPair;
use rcgen::KeyUsagePurpose;
use rcgen::SanType;

use super::file_err;
use super::Credentials;
use super::PkiError;

/// Validity of an agent certificate (as a node's: re-issue with `zsnode pki agent-cert`).
pub const AGENT_CERT_DAYS: i64 = super::NODE_CERT_DAYS;

/// What an agent needs: the CA to check its callers, its certificate and key (PEM).
pub struct AgentBundle {
    /// The cluster CA certificate.
    pub ca_pem: String,
    /// The agent's certificate.
    pub cert_pem: String,
    /// The agent's private key.
    pub key_pem: String,
}

impl std::fmt::Debug for AgentBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentBundle").finish_non_exhaustive()
    }
}

fn agent_params(cluster: &str, host: &str) -> Result<CertificateParams, PkiError> {
    let gen = |e: rcgen::Error| PkiError::Generate(e.to_string());
    if host.is_empty() || host.len() > 253 || host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(PkiError::Invalid(format!(
            "agent host {host:?} is not an address or host name"
        )));
    }
    let mut names = vec![proto::agent::TLS_NAME.to_string()];
    if host != proto::agent::TLS_NAME {
        names.push(host.to_string());
    }
    let mut p = CertificateParams::new(names).map_err(gen)?;
    p.subject_alt_names.push(SanType::URI(
        proto::agent::agent_uri(cluster, host)
            .try_into()
            .map_err(gen)?,
    ));
    p.distinguished_name
        .push(DnType::CommonName, format!("zsagent {host} of {cluster}"));
    let now = time::OffsetDateTime::now_utc();
    // As for node certificates: a little slack for hosts whose clock is behind.
    p.not_before = now - time::Duration::minutes(5);
    p.not_after = now + time::Duration::days(AGENT_CERT_DAYS);
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    // Server only: an agent never calls anyone, and must not pass as a client.
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

/// A fresh key and certificate for the agent of `host` (its management address), signed with
/// the cluster CA held in `c`.
pub fn issue(c: &Credentials, host: &str) -> Result<AgentBundle, PkiError> {
    let key = KeyPair::generate().map_err(|e| PkiError::Generate(e.to_string()))?;
    let cert = agent_params(&c.cluster_id, host)?
        .signed_by(&key, &super::issuer(&c.ca_pem, &c.ca_key_pem)?)
        .map_err(|e| PkiError::Generate(e.to_string()))?;
    Ok(AgentBundle {
        ca_pem: c.ca_pem.clone(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Write `b` into `dir` (the agent's `pki/` directory, created 0700): the CA and certificate
/// 0644, the key 0600, each file fsynced. Existing files are replaced whole (written beside,
/// then renamed), so re-issuing for a running agent never leaves it a half-written key.
pub fn write(dir: &Path, b: &AgentBundle) -> Result<(), PkiError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| file_err(dir, format!("create: {e}")))?;
    for (name, body, mode) in [
        (files::CA_CERT, &b.ca_pem, 0o644),
        (files::CERT, &b.cert_pem, 0o644),
        (files::KEY, &b.key_pem, 0o600),
    ] {
        let tmp = dir.join(format!("{name}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        super::write_file(&tmp, body.as_bytes(), mode)?;
        let path = dir.join(name);
        std::fs::rename(&tmp, &path).map_err(|e| file_err(&path, format!("rename: {e}")))?;
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| file_err(dir, format!("sync: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        let dir = tempfile::tempdir().unwrap();
        super::super::bootstrap(
            dir.path(),
            "zstack",
            1,
            &["127.0.0.1:7070"],
            b"k".to_vec(),
            None,
        )
        .unwrap();
        super::super::load(dir.path(), "zstack", 1).unwrap()
    }

    #[test]
    fn agent_certificates_chain_to_the_ca_name_the_host_and_are_not_client_certificates() {
        let c = creds();
        let b = issue(&c, "127.0.0.2").unwrap();
        let der = super::super::first_cert_der(&b.cert_pem).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let sans = cert.subject_alternative_name().unwrap().unwrap();
        let text = format!("{:?}", sans.value.general_names);
        assert!(text.contains("zsagent") && text.contains("urn:zstack:zstack:agent:127.0.0.2"));
        // Not a node: the node-identity parser finds no node in it.
        assert!(super::super::identity_of_der(&der).is_err());
        // A client verifier of the cluster CA refuses it (server-auth only).
        let e = super::super::tls::verify_chain(&c.ca_pem, &der).unwrap_err();
        assert!(
            e.to_lowercase().contains("usage") || e.contains("Purpose"),
            "{e}"
        );
        assert!(issue(&c, "").is_err() && issue(&c, "a b").is_err());
    }

    #[test]
    fn written_files_have_private_key_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let c = creds();
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");
        write(&pki, &issue(&c, "127.0.0.2").unwrap()).unwrap();
        // Written again (re-issue) without complaint.
        write(&pki, &issue(&c, "127.0.0.2").unwrap()).unwrap();
        let mode = |n: &str| std::fs::metadata(pki.join(n)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(files::KEY), 0o600);
        assert_eq!(mode(files::CERT), 0o644);
        assert_eq!(
            std::fs::metadata(&pki).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
}
