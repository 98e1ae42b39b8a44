//! Joining a cluster: the new node fetches the CA from a member, checks it against the pin in
//! its join token, then over HTTPS (trusting only that CA) sends the token and a CSR; the
//! member checks the token, signs the certificate and hands over the CA key, the data key and
//! the admin token's hash. Only then does the new node write its `pki/` (whole) and start.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use rcgen::CertificateParams;
use rcgen::CertificateSigningRequestParams;
use rcgen::KeyPair;
use serde::Deserialize;
use serde::Serialize;

use super::token;
use super::Bundle;
use super::Credentials;
use super::PkiError;

/// Body of `POST /cluster/join`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// The join token.
    pub token: String,
    /// Cluster the node is configured for.
    pub cluster_id: String,
    /// The node's id.
    pub node_id: u64,
    /// Its advertised Raft address (goes into the certificate).
    pub raft_addr: String,
    /// Its advertised HTTP address (goes into the certificate).
    pub api_addr: String,
    /// PEM certificate signing request over the node's own key.
    pub csr_pem: String,
}

/// Answer to a successful join.
#[derive(Serialize, Deserialize)]
pub struct JoinReply {
    /// Cluster id.
    pub cluster_id: String,
    /// CA certificate.
    pub ca_pem: String,
    /// CA key.
    pub ca_key_pem: String,
    /// The node's new certificate.
    pub node_cert_pem: String,
    /// Data key file bytes, base64.
    pub data_key_b64: String,
    /// Admin token hash, hex.
    pub admin_token_sha256: String,
}

/// The member's side: check a join request and issue the node's credentials. `members` are
/// the node ids already in the membership (never reissued: node ids are never reused).
pub fn admit(
    c: &Credentials,
    req: &JoinRequest,
    members: &[u64],
    now: u64,
) -> Result<JoinReply, PkiError> {
    if req.cluster_id != c.cluster_id {
        return Err(PkiError::Join(format!(
            "this is cluster {:?}, the joining node is configured for {:?}",
            c.cluster_id, req.cluster_id
        )));
    }
    if req.node_id == 0 {
        return Err(PkiError::Join("node id 0 is reserved".into()));
    }
    token::verify(c, &req.token, req.node_id, now)?;
    if members.contains(&req.node_id) {
        return Err(PkiError::Join(format!(
            "node id {} is already a member; node ids are never reused (pick a new id, or remove the old member first)",
            req.node_id
        )));
    }
    for a in [&req.raft_addr, &req.api_addr] {
        crate::config::validate_host_port(a).map_err(PkiError::Join)?;
    }
    if req.csr_pem.len() > 16 * 1024 {
        return Err(PkiError::Join(
            "certificate request larger than 16 KiB".into(),
        ));
    }
    let csr = CertificateSigningRequestParams::from_pem(&req.csr_pem)
        .map_err(|e| PkiError::Join(format!("certificate request: {e}")))?;
    let cert = super::issue_node_cert(
        &c.ca_pem,
        &c.ca_key_pem,
        &c.cluster_id,
        req.node_id,
        &[&req.raft_addr, &req.api_addr],
        &csr.public_key,
    )?;
    Ok(JoinReply {
        cluster_id: c.cluster_id.clone(),
        ca_pem: c.ca_pem.clone(),
        ca_key_pem: c.ca_key_pem.clone(),
        node_cert_pem: cert,
        data_key_b64: base64::engine::general_purpose::STANDARD.encode(&c.data_key),
        admin_token_sha256: hex::encode(c.admin_token_sha256),
    })
}

/// Where and as whom to join.
#[derive(Debug, Clone)]
pub struct JoinTarget<'a> {
    /// `https://host:port` of any member's HTTPS API.
    pub url: &'a str,
    /// The join token.
    pub token: &'a str,
    /// This node's cluster id.
    pub cluster_id: &'a str,
    /// This node's id.
    pub node_id: u64,
    /// Advertised Raft address.
    pub raft_addr: &'a str,
    /// Advertised HTTP address.
    pub api_addr: &'a str,
}

fn refused(what: &str, status: reqwest::StatusCode, body: &str) -> PkiError {
    let detail = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["details"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.chars().take(300).collect());
    PkiError::Join(format!("{what} refused ({status}): {detail}"))
}

/// The joining node's side: obtain credentials from a member and write `<data_dir>/pki`.
pub async fn join(data_dir: &Path, t: &JoinTarget<'_>) -> Result<(), PkiError> {
    let url = t.url.trim_end_matches('/');
    if !url.starts_with("https://") {
        return Err(PkiError::Join(format!(
            "join URL {url:?} must be https:// (the member's HTTPS API): the reply carries keys"
        )));
    }
    let parsed = token::parse(t.token)?;
    if parsed.expires <= token::now_unix() {
        return Err(PkiError::Token(
            "expired; create a new one with `zsctl join-token create`".into(),
        ));
    }
    let net = |what: &str, e: reqwest::Error| PkiError::Join(format!("{what} at {url}: {e}"));
    // The CA certificate is public; what makes it trustworthy is the pin in the token.
    let discover = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| net("TLS client", e))?;
    let resp = discover
        .get(format!("{url}/cluster/ca"))
        .send()
        .await
        .map_err(|e| net("fetch the cluster CA", e))?;
    let status = resp.status();
    let ca_pem = resp
        .text()
        .await
        .map_err(|e| net("read the cluster CA", e))?;
    if !status.is_success() {
        return Err(refused("fetching the cluster CA", status, &ca_pem));
    }
    let pin = super::cert_pin(&ca_pem)?;
    if pin != parsed.ca_pin {
        return Err(PkiError::Join(format!(
            "the CA served by {url} (sha256 {}) is not the one the join token names ({}): another cluster, or someone in between",
            hex::encode(pin),
            hex::encode(parsed.ca_pin)
        )));
    }
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).map_err(|e| net("cluster CA", e))?;
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| net("TLS client", e))?;
    let key = KeyPair::generate().map_err(|e| PkiError::Generate(e.to_string()))?;
    let csr = CertificateParams::default()
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .map_err(|e| PkiError::Generate(e.to_string()))?;
    let req = JoinRequest {
        token: t.token.trim().to_string(),
        cluster_id: t.cluster_id.to_string(),
        node_id: t.node_id,
        raft_addr: t.raft_addr.to_string(),
        api_addr: t.api_addr.to_string(),
        csr_pem: csr,
    };
    let resp = client
        .post(format!("{url}/cluster/join"))
        .json(&req)
        .send()
        .await
        .map_err(|e| {
            net(
                "join (is the URL's host named in the member's certificate?)",
                e,
            )
        })?;
    let status = resp.status();
    let body = resp
        .text()
        .await
        .map_err(|e| net("read the join reply", e))?;
    if !status.is_success() {
        return Err(refused("join", status, &body));
    }
    let reply: JoinReply = serde_json::from_str(&body)
        .map_err(|e| PkiError::Join(format!("unreadable join reply from {url}: {e}")))?;
    if super::cert_pin(&reply.ca_pem)? != parsed.ca_pin {
        return Err(PkiError::Join("the join reply carries another CA".into()));
    }
    // Check the certificate before anything is written: a bad reply leaves no pki/ behind.
    let der = super::first_cert_der(&reply.node_cert_pem)?;
    super::tls::verify_chain(&reply.ca_pem, &der)
        .map_err(|e| PkiError::Join(format!("the issued certificate does not verify: {e}")))?;
    let named = super::identity_of_der(&der).map_err(PkiError::Join)?;
    if named != (t.cluster_id.to_string(), t.node_id) {
        return Err(PkiError::Join(format!(
            "the issued certificate names node {} of {:?}, not node {} of {:?}",
            named.1, named.0, t.node_id, t.cluster_id
        )));
    }
    let data_key = base64::engine::general_purpose::STANDARD
        .decode(&reply.data_key_b64)
        .map_err(|e| PkiError::Join(format!("join reply data key: {e}")))?;
    let admin_token_sha256: [u8; 32] = hex::decode(&reply.admin_token_sha256)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| PkiError::Join("join reply admin token hash is not SHA-256 hex".into()))?;
    super::write_bundle(
        data_dir,
        &Bundle {
            ca_pem: reply.ca_pem,
            ca_key_pem: reply.ca_key_pem,
            node_cert_pem: reply.node_cert_pem,
            node_key_pem: key.serialize_pem(),
            data_key,
            admin_token_sha256,
            admin_token: None,
        },
    )?;
    // Check what was written as every later start will.
    super::load(data_dir, t.cluster_id, t.node_id).map(|_| ())
}
