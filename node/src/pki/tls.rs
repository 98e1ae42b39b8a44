//! TLS configurations built from the cluster credentials: mutual TLS for node-to-node gRPC,
//! server TLS for the HTTPS API, and the chain check used when loading credentials.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::UnixTime;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use tonic::transport::Certificate;
use tonic::transport::ClientTlsConfig;
use tonic::transport::Identity;
use tonic::transport::ServerTlsConfig;

use super::Credentials;
use super::PkiError;
use super::PEER_NAME;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca_pem: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let mut rd = ca_pem.as_bytes();
    for c in rustls_pemfile::certs(&mut rd) {
        let c = c.map_err(|e| format!("CA PEM: {e}"))?;
        roots.add(c).map_err(|e| format!("CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("no CA certificate in PEM".into());
    }
    Ok(roots)
}

/// Check that `der` was issued by the CA in `ca_pem` and is valid now.
pub fn verify_chain(ca_pem: &str, der: &[u8]) -> Result<(), String> {
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca_pem)?), provider())
            .build()
            .map_err(|e| e.to_string())?;
    verifier
        .verify_client_cert(&CertificateDer::from(der.to_vec()), &[], UnixTime::now())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The gRPC server side: this node's certificate, and only clients with a certificate of the
/// cluster CA get past the handshake.
pub fn grpc_server(c: &Credentials) -> ServerTlsConfig {
    ServerTlsConfig::new()
        .identity(Identity::from_pem(&c.node_cert_pem, &c.node_key_pem))
        .client_ca_root(Certificate::from_pem(&c.ca_pem))
}

/// The gRPC client side: present this node's certificate, trust only the cluster CA and
/// check the name every node certificate carries.
pub fn grpc_client(c: &Credentials) -> ClientTlsConfig {
    ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&c.ca_pem))
        .identity(Identity::from_pem(&c.node_cert_pem, &c.node_key_pem))
        .domain_name(PEER_NAME)
}

/// The client side towards host agents: present this node's certificate (the agent checks it
/// names a node of the cluster), trust only the cluster CA and require the agents' TLS name.
pub fn agent_client(c: &Credentials) -> ClientTlsConfig {
    ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&c.ca_pem))
        .identity(Identity::from_pem(&c.node_cert_pem, &c.node_key_pem))
        .domain_name(proto::agent::TLS_NAME)
}

/// A server TLS acceptor for the HTTPS API from a PEM certificate chain and key.
pub fn https_acceptor(
    cert_pem: &str,
    key_pem: &str,
) -> Result<tokio_rustls::TlsAcceptor, PkiError> {
    let mut rd = cert_pem.as_bytes();
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut rd)
        .collect::<Result<_, _>>()
        .map_err(|e| PkiError::Invalid(format!("HTTPS certificate PEM: {e}")))?;
    if chain.is_empty() {
        return Err(PkiError::Invalid(
            "HTTPS certificate file holds no certificate".into(),
        ));
    }
    let mut rd = key_pem.as_bytes();
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut rd)
        .map_err(|e| PkiError::Invalid(format!("HTTPS key PEM: {e}")))?
        .ok_or_else(|| PkiError::Invalid("HTTPS key file holds no private key".into()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| PkiError::Invalid(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| PkiError::Invalid(format!("HTTPS certificate and key: {e}")))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}
