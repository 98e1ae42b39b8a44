//! The cluster's identity: a cluster CA, one certificate per management node, the cluster data
//! key and the admin token's hash, kept in `<data_dir>/pki/`.
//!
//! - A node's first start without `--join` creates a new CA (a new cluster); with `--join` and
//!   a join token it receives the CA, its certificate and the keys from a member over HTTPS
//!   (`join.rs`). Either way the directory is written whole (`pki.tmp/` renamed) so a crash
//!   never leaves a half-configured node.
//! - Every management node holds the CA key: any of them can admit a joining node or (next
//!   issue) sign an agent certificate, so losing the first node loses nothing.
//! - A node's certificate names it `urn:zstack:<cluster>:node:<id>` (URI SAN); peers check that
//!   name against the id a request claims (`grpc.rs`). Every peer verifies the TLS name
//!   [`PEER_NAME`], so proxies and NAT between nodes do not break verification.

pub mod agent;
pub mod cli;
pub mod join;
pub mod tls;
pub mod token;

use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::path::PathBuf;

use rcgen::BasicConstraints;
use rcgen::CertificateParams;
use rcgen::DnType;
use rcgen::ExtendedKeyUsagePurpose;
use rcgen::IsCa;
use rcgen::Issuer;
use rcgen::KeyPair;
use rcgen::KeyUsagePurpose;
use rcgen::SanType;
use sha2::Digest;
use sha2::Sha256;

/// The TLS server name every node certificate carries and every node-to-node client checks.
pub const PEER_NAME: &str = "zsnode";
/// Directory under the data dir.
pub const DIR: &str = "pki";
/// CA certificate (public; also served at `GET /cluster/ca`).
pub const CA_CERT: &str = "ca.crt";
/// CA private key (0600).
pub const CA_KEY: &str = "ca.key";
/// This node's certificate.
pub const NODE_CERT: &str = "node.crt";
/// This node's private key (0600).
pub const NODE_KEY: &str = "node.key";
/// The cluster data key sealing secrets in the replicated state (0600).
pub const DATA_KEY: &str = "data.key";
/// SHA-256 (hex) of the cluster admin token (0600).
pub const ADMIN_TOKEN_HASH: &str = "admin-token.sha256";
/// The admin token itself, written only on the node that created the cluster (0600), for the
/// operator to pick up (`zsctl --token-file`).
pub const ADMIN_TOKEN: &str = "admin.token";

/// Validity of a node certificate; `zsnode pki renew` re-issues it.
pub const NODE_CERT_DAYS: i64 = 365;
/// Validity of the CA.
pub const CA_DAYS: i64 = 3650;

/// Why the cluster credentials cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file is missing, unreadable or has the wrong permissions.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A certificate or key does not parse, does not chain, or names another node.
    #[error("{0}")]
    Invalid(String),
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Generate(String),
    /// A join attempt failed.
    #[error("join: {0}")]
    Join(String),
    /// A join token is malformed, foreign or expired.
    #[error("join token: {0}")]
    Token(String),
}

fn file_err(path: &Path, reason: impl Into<String>) -> PkiError {
    PkiError::File {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Everything a management node needs to talk to its peers and to admit new ones.
#[derive(Clone)]
pub struct Credentials {
    /// Cluster id the certificates are issued for.
    pub cluster_id: String,
    /// This node's id.
    pub node_id: u64,
    /// CA certificate, PEM.
    pub ca_pem: String,
    /// CA key, PEM (PKCS#8).
    pub ca_key_pem: String,
    /// This node's certificate, PEM.
    pub node_cert_pem: String,
    /// This node's key, PEM.
    pub node_key_pem: String,
    /// The data key file's bytes, opaque here (`api::secret` reads them).
    pub data_key: Vec<u8>,
    /// SHA-256 of the admin token.
    pub admin_token_sha256: [u8; 32],
    /// SHA-256 of the CA certificate's DER: the pin a join token carries.
    pub ca_pin: [u8; 32],
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("cluster_id", &self.cluster_id)
            .field("node_id", &self.node_id)
            .field("ca_pin", &hex::encode(self.ca_pin))
            .finish_non_exhaustive()
    }
}

/// The URI naming node `id` of `cluster` in its certificate.
pub fn node_uri(cluster: &str, id: u64) -> String {
    format!("urn:zstack:{cluster}:node:{id}")
}

/// SHA-256 of a PEM certificate's DER.
pub fn cert_pin(pem: &str) -> Result<[u8; 32], PkiError> {
    let der = first_cert_der(pem)?;
    Ok(Sha256::digest(&der).into())
}

fn first_cert_der(pem: &str) -> Result<Vec<u8>, PkiError> {
    let mut rd = pem.as_bytes();
    let first = rustls_pemfile::certs(&mut rd).next();
    match first {
        Some(Ok(c)) => Ok(c.to_vec()),
        Some(Err(e)) => Err(PkiError::Invalid(format!("certificate PEM: {e}"))),
        None => Err(PkiError::Invalid("no certificate in PEM".into())),
    }
}

/// The cluster and node id a node certificate names (its `urn:zstack:` URI SAN).
pub fn identity_of_der(der: &[u8]) -> Result<(String, u64), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("unparsable certificate: {e}"))?;
    let sans = cert
        .subject_alternative_name()
        .map_err(|e| format!("bad subjectAltName: {e}"))?
        .ok_or("certificate has no subjectAltName naming a node")?;
    for name in &sans.value.general_names {
        if let x509_parser::extensions::GeneralName::URI(uri) = name {
            if let Some(rest) = uri.strip_prefix("urn:zstack:") {
                if let Some((cluster, id)) = rest.rsplit_once(":node:") {
                    let id = id
                        .parse::<u64>()
                        .map_err(|_| format!("certificate names node {id:?}, not a number"))?;
                    return Ok((cluster.to_string(), id));
                }
            }
        }
    }
    Err("certificate names no management node (no urn:zstack:<cluster>:node:<id>)".into())
}

fn host_of(addr: &str) -> Option<String> {
    let host = match addr.rsplit_once(':') {
        Some((h, _)) => h,
        None => addr,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| host.to_string())
}

fn node_params(cluster: &str, id: u64, addrs: &[&str]) -> Result<CertificateParams, PkiError> {
    let gen = |e: rcgen::Error| PkiError::Generate(e.to_string());
    let mut hosts: Vec<String> = vec![PEER_NAME.into(), "localhost".into(), "127.0.0.1".into()];
    for a in addrs {
        if let Some(h) = host_of(a) {
            if !hosts.contains(&h) {
                hosts.push(h);
            }
        }
    }
    let mut p = CertificateParams::new(hosts).map_err(gen)?;
    p.subject_alt_names
        .push(SanType::URI(node_uri(cluster, id).try_into().map_err(gen)?));
    p.distinguished_name
        .push(DnType::CommonName, format!("zsnode {id} of {cluster}"));
    let now = time::OffsetDateTime::now_utc();
    // Five minutes of slack for peers whose clocks are a little behind.
    p.not_before = now - time::Duration::minutes(5);
    p.not_after = now + time::Duration::days(NODE_CERT_DAYS);
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

fn issuer(ca_pem: &str, ca_key_pem: &str) -> Result<Issuer<'static, KeyPair>, PkiError> {
    let key =
        KeyPair::from_pem(ca_key_pem).map_err(|e| PkiError::Invalid(format!("CA key: {e}")))?;
    Issuer::from_ca_cert_pem(ca_pem, key).map_err(|e| PkiError::Invalid(format!("CA cert: {e}")))
}

/// Sign a certificate for node `id` over `public_key` (from a CSR or a fresh key pair).
pub fn issue_node_cert(
    ca_pem: &str,
    ca_key_pem: &str,
    cluster: &str,
    id: u64,
    addrs: &[&str],
    public_key: &impl rcgen::PublicKeyData,
) -> Result<String, PkiError> {
    let params = node_params(cluster, id, addrs)?;
    let cert = params
        .signed_by(public_key, &issuer(ca_pem, ca_key_pem)?)
        .map_err(|e| PkiError::Generate(e.to_string()))?;
    Ok(cert.pem())
}

/// A fresh CA for `cluster`: (certificate PEM, key PEM).
pub fn new_ca(cluster: &str) -> Result<(String, String), PkiError> {
    let gen = |e: rcgen::Error| PkiError::Generate(e.to_string());
    let key = KeyPair::generate().map_err(gen)?;
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(DnType::CommonName, format!("ZStack cluster CA ({cluster})"));
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::minutes(5);
    p.not_after = now + time::Duration::days(CA_DAYS);
    let cert = p.self_signed(&key).map_err(gen)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A new admin token: 32 random bytes, URL-safe base64, with a recognisable prefix.
pub fn new_admin_token() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    format!(
        "zsadm_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// A new cluster data key file's content.
pub fn new_data_key() -> Vec<u8> {
    crate::secrets::new_key_file()
}

/// SHA-256 of a token.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.trim().as_bytes()).into()
}

/// The files of a credential set, as written to disk.
pub struct Bundle {
    /// CA certificate.
    pub ca_pem: String,
    /// CA key.
    pub ca_key_pem: String,
    /// Node certificate.
    pub node_cert_pem: String,
    /// Node key.
    pub node_key_pem: String,
    /// Data key file bytes.
    pub data_key: Vec<u8>,
    /// Admin token hash.
    pub admin_token_sha256: [u8; 32],
    /// The admin token, only when this node created the cluster.
    pub admin_token: Option<String>,
}

/// `<data_dir>/pki`.
pub fn dir_of(data_dir: &Path) -> PathBuf {
    data_dir.join(DIR)
}

/// Whether `data_dir` has credentials (complete or not).
pub fn exists(data_dir: &Path) -> bool {
    dir_of(data_dir).exists()
}

fn write_file(path: &Path, body: &[u8], mode: u32) -> Result<(), PkiError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| file_err(path, format!("create: {e}")))?;
    f.write_all(body)
        .and_then(|()| f.sync_all())
        .map_err(|e| file_err(path, format!("write: {e}")))
}

/// Write `bundle` as `<data_dir>/pki` whole: into `pki.tmp/`, then renamed.
pub fn write_bundle(data_dir: &Path, b: &Bundle) -> Result<(), PkiError> {
    let dir = dir_of(data_dir);
    if dir.exists() {
        return Err(file_err(
            &dir,
            "already exists; refusing to overwrite credentials",
        ));
    }
    std::fs::create_dir_all(data_dir).map_err(|e| file_err(data_dir, format!("create: {e}")))?;
    let tmp = data_dir.join(format!("{DIR}.tmp"));
    if tmp.exists() {
        // Left by a start that crashed before its rename: never used, safe to redo.
        std::fs::remove_dir_all(&tmp).map_err(|e| file_err(&tmp, format!("remove: {e}")))?;
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&tmp)
        .map_err(|e| file_err(&tmp, format!("create: {e}")))?;
    write_file(&tmp.join(CA_CERT), b.ca_pem.as_bytes(), 0o644)?;
    write_file(&tmp.join(CA_KEY), b.ca_key_pem.as_bytes(), 0o600)?;
    write_file(&tmp.join(NODE_CERT), b.node_cert_pem.as_bytes(), 0o644)?;
    write_file(&tmp.join(NODE_KEY), b.node_key_pem.as_bytes(), 0o600)?;
    write_file(&tmp.join(DATA_KEY), &b.data_key, 0o600)?;
    write_file(
        &tmp.join(ADMIN_TOKEN_HASH),
        format!("{}\n", hex::encode(b.admin_token_sha256)).as_bytes(),
        0o600,
    )?;
    if let Some(t) = &b.admin_token {
        write_file(&tmp.join(ADMIN_TOKEN), format!("{t}\n").as_bytes(), 0o600)?;
    }
    std::fs::File::open(&tmp)
        .and_then(|d| d.sync_all())
        .map_err(|e| file_err(&tmp, format!("sync: {e}")))?;
    std::fs::rename(&tmp, &dir).map_err(|e| file_err(&dir, format!("rename: {e}")))?;
    std::fs::File::open(data_dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| file_err(data_dir, format!("sync: {e}")))
}

/// Create a new cluster's credentials for its first node.
pub fn bootstrap(
    data_dir: &Path,
    cluster: &str,
    node_id: u64,
    addrs: &[&str],
    data_key: Vec<u8>,
    admin_token: Option<String>,
) -> Result<String, PkiError> {
    let (ca_pem, ca_key_pem) = new_ca(cluster)?;
    let key = KeyPair::generate().map_err(|e| PkiError::Generate(e.to_string()))?;
    let node_cert_pem = issue_node_cert(&ca_pem, &ca_key_pem, cluster, node_id, addrs, &key)?;
    let token = admin_token.unwrap_or_else(new_admin_token);
    write_bundle(
        data_dir,
        &Bundle {
            ca_pem,
            ca_key_pem,
            node_cert_pem,
            node_key_pem: key.serialize_pem(),
            data_key,
            admin_token_sha256: token_hash(&token),
            admin_token: Some(token.clone()),
        },
    )?;
    Ok(token)
}

/// Read a file that must not be readable by group or others.
fn read_private(path: &Path) -> Result<Vec<u8>, PkiError> {
    let meta = std::fs::metadata(path).map_err(|e| file_err(path, format!("cannot read: {e}")))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(file_err(
            path,
            format!("permissions {mode:04o} let others read a private key; chmod 600 it"),
        ));
    }
    std::fs::read(path).map_err(|e| file_err(path, format!("cannot read: {e}")))
}

fn read_text(path: &Path, private: bool) -> Result<String, PkiError> {
    let bytes = if private {
        read_private(path)?
    } else {
        std::fs::read(path).map_err(|e| file_err(path, format!("cannot read: {e}")))?
    };
    String::from_utf8(bytes).map_err(|_| file_err(path, "not UTF-8 PEM text"))
}

/// Load and check `<data_dir>/pki` for node `node_id` of `cluster`: files present with safe
/// permissions, the node certificate issued by the CA, valid now, naming this node and
/// cluster, and matching the node key.
pub fn load(data_dir: &Path, cluster: &str, node_id: u64) -> Result<Credentials, PkiError> {
    let dir = dir_of(data_dir);
    let dmeta = std::fs::metadata(&dir).map_err(|e| file_err(&dir, format!("cannot read: {e}")))?;
    if dmeta.permissions().mode() & 0o077 != 0 {
        return Err(file_err(
            &dir,
            format!(
                "permissions {:04o} let others into the key directory; chmod 700 it",
                dmeta.permissions().mode() & 0o777
            ),
        ));
    }
    let ca_pem = read_text(&dir.join(CA_CERT), false)?;
    let ca_key_pem = read_text(&dir.join(CA_KEY), true)?;
    let node_cert_pem = read_text(&dir.join(NODE_CERT), false)?;
    let node_key_pem = read_text(&dir.join(NODE_KEY), true)?;
    let data_key = read_private(&dir.join(DATA_KEY))?;
    let hash_path = dir.join(ADMIN_TOKEN_HASH);
    let hash_text = String::from_utf8(read_private(&hash_path)?)
        .map_err(|_| file_err(&hash_path, "not hex text"))?;
    let admin_token_sha256: [u8; 32] = hex::decode(hash_text.trim())
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| file_err(&hash_path, "must hold 64 hex digits (SHA-256)"))?;
    let creds = Credentials {
        cluster_id: cluster.to_string(),
        node_id,
        ca_pin: cert_pin(&ca_pem).map_err(|e| file_err(&dir.join(CA_CERT), e.to_string()))?,
        ca_pem,
        ca_key_pem,
        node_cert_pem,
        node_key_pem,
        data_key,
        admin_token_sha256,
    };
    check(&creds, &dir)?;
    Ok(creds)
}

fn check(c: &Credentials, dir: &Path) -> Result<(), PkiError> {
    let cert_path = dir.join(NODE_CERT);
    let der = first_cert_der(&c.node_cert_pem).map_err(|e| file_err(&cert_path, e.to_string()))?;
    tls::verify_chain(&c.ca_pem, &der).map_err(|e| {
        file_err(
            &cert_path,
            format!(
                "not a valid certificate of this cluster's CA ({}): {e}",
                CA_CERT
            ),
        )
    })?;
    let (cluster, id) = identity_of_der(&der).map_err(|e| file_err(&cert_path, e))?;
    if id != c.node_id || cluster != c.cluster_id {
        return Err(file_err(
            &cert_path,
            format!(
                "issued for node {id} of cluster {cluster:?}, but this is node {} of cluster {:?}",
                c.node_id, c.cluster_id
            ),
        ));
    }
    let key_path = dir.join(NODE_KEY);
    let key =
        KeyPair::from_pem(&c.node_key_pem).map_err(|e| file_err(&key_path, format!("{e}")))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| file_err(&cert_path, format!("unparsable: {e}")))?;
    if parsed.public_key().raw != rcgen::PublicKeyData::subject_public_key_info(&key).as_slice() {
        return Err(file_err(
            &key_path,
            format!("does not belong to {NODE_CERT} (another node's key?)"),
        ));
    }
    KeyPair::from_pem(&c.ca_key_pem).map_err(|e| file_err(&dir.join(CA_KEY), format!("{e}")))?;
    Ok(())
}

/// Re-issue this node's certificate (new key, same identity) with the local CA key; the old
/// files are kept as `node.crt.old`/`node.key.old`. The node must be restarted to use it.
pub fn renew(data_dir: &Path, cluster: &str, node_id: u64, addrs: &[&str]) -> Result<(), PkiError> {
    let c = load(data_dir, cluster, node_id)?;
    let dir = dir_of(data_dir);
    let key = KeyPair::generate().map_err(|e| PkiError::Generate(e.to_string()))?;
    let pem = issue_node_cert(&c.ca_pem, &c.ca_key_pem, cluster, node_id, addrs, &key)?;
    for f in [NODE_CERT, NODE_KEY] {
        let old = dir.join(format!("{f}.old"));
        let _ = std::fs::remove_file(&old);
        std::fs::rename(dir.join(f), &old).map_err(|e| file_err(&old, format!("rename: {e}")))?;
    }
    write_file(&dir.join(NODE_CERT), pem.as_bytes(), 0o644)?;
    write_file(&dir.join(NODE_KEY), key.serialize_pem().as_bytes(), 0o600)?;
    load(data_dir, cluster, node_id).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Vec<u8> {
        b"opaque data key".to_vec()
    }

    #[test]
    fn bootstrap_then_load_and_renew() {
        let td = tempfile::tempdir().unwrap();
        let token = bootstrap(td.path(), "c1", 1, &["10.0.0.5:7070"], key(), None).unwrap();
        assert!(token.starts_with("zsadm_"));
        let c = load(td.path(), "c1", 1).unwrap();
        assert_eq!(c.admin_token_sha256, token_hash(&token));
        assert_eq!(c.data_key, key());
        let der = first_cert_der(&c.node_cert_pem).unwrap();
        assert_eq!(identity_of_der(&der).unwrap(), ("c1".to_string(), 1));
        // The configured node id and cluster must be the certificate's.
        let e = load(td.path(), "c1", 2).unwrap_err().to_string();
        assert!(e.contains("issued for node 1"), "{e}");
        let e = load(td.path(), "other", 1).unwrap_err().to_string();
        assert!(e.contains("cluster \"c1\""), "{e}");
        renew(td.path(), "c1", 1, &[]).unwrap();
        let c2 = load(td.path(), "c1", 1).unwrap();
        assert_ne!(c2.node_cert_pem, c.node_cert_pem);
        // A second bootstrap over existing credentials is refused.
        assert!(bootstrap(td.path(), "c1", 1, &[], key(), None).is_err());
    }

    #[test]
    fn bad_files_are_named() {
        let td = tempfile::tempdir().unwrap();
        bootstrap(td.path(), "c", 1, &[], key(), None).unwrap();
        let dir = dir_of(td.path());
        let set_mode = |f: &str, m: u32| {
            std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(m)).unwrap()
        };
        set_mode(NODE_KEY, 0o644);
        let e = load(td.path(), "c", 1).unwrap_err().to_string();
        assert!(e.contains("node.key") && e.contains("chmod 600"), "{e}");
        set_mode(NODE_KEY, 0o600);
        // A certificate of another CA.
        let other = tempfile::tempdir().unwrap();
        bootstrap(other.path(), "c", 1, &[], key(), None).unwrap();
        let foreign = std::fs::read(dir_of(other.path()).join(NODE_CERT)).unwrap();
        std::fs::remove_file(dir.join(NODE_CERT)).unwrap();
        std::fs::write(dir.join(NODE_CERT), &foreign).unwrap();
        let e = load(td.path(), "c", 1).unwrap_err().to_string();
        assert!(
            e.contains("not a valid certificate of this cluster's CA"),
            "{e}"
        );
        // Garbage instead of a key.
        std::fs::write(dir.join(NODE_CERT), b"junk").unwrap();
        let e = load(td.path(), "c", 1).unwrap_err().to_string();
        assert!(e.contains("node.crt"), "{e}");
        std::fs::write(dir.join(ADMIN_TOKEN_HASH), b"xyz").unwrap();
        let e = load(td.path(), "c", 1).unwrap_err().to_string();
        assert!(e.contains("64 hex digits") || e.contains("node.crt"), "{e}");
    }
}
