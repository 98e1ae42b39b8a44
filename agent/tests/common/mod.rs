//! What the agent's integration tests share: a CA and certificates made on the spot, the
//! agent's gRPC service served in process over mutual TLS as `zsagent run` serves it, and a
//! client speaking for a management node.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use agent::backend::HostBackend;
use agent::libvirt::LibvirtBackend;
use agent::service::AgentService;
use agent::service::HostSlot;
use agent::service::Hosts;
use agent::storage::SystemMounter;
use agent::term::TermStore;
use agent::tls::AgentCredentials;
use proto::agent::v1 as pb;
use proto::agent::v1::agent_client::AgentClient;
use proto::agent::v1::agent_server::AgentServer;
use rcgen::BasicConstraints;
use rcgen::CertificateParams;
use rcgen::ExtendedKeyUsagePurpose;
use rcgen::IsCa;
use rcgen::Issuer;
use rcgen::KeyPair;
use rcgen::SanType;
use tonic::transport::Certificate;
use tonic::transport::Channel;
use tonic::transport::ClientTlsConfig;
use tonic::transport::Identity;

pub const CLUSTER: &str = "c1";
pub const HOST: &str = "h1";
pub const TERM: u64 = 4;

pub struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

pub fn ca() -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::default();
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let cert = p.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(p, key),
    }
}

pub fn leaf(ca: &Ca, dns: &[&str], uri: &str, client: bool) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.subject_alt_names
        .push(SanType::URI(uri.to_string().try_into().unwrap()));
    p.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let cert = p.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

pub fn write_pki(dir: &Path, ca: &Ca) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let (c, k) = leaf(
        ca,
        &["zsagent"],
        &proto::agent::agent_uri(CLUSTER, "127.0.0.1"),
        false,
    );
    std::fs::write(dir.join("ca.crt"), &ca.pem).unwrap();
    std::fs::write(dir.join("agent.crt"), c).unwrap();
    std::fs::write(dir.join("agent.key"), k).unwrap();
    std::fs::set_permissions(
        dir.join("agent.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
}

/// The agent's service on a free port of 127.0.0.1, as `zsagent run` serves it.
pub async fn serve(dir: &Path, libvirt_uri: &str) -> (SocketAddr, Ca) {
    let pki = dir.join("pki");
    let ca = ca();
    write_pki(&pki, &ca);
    let creds = AgentCredentials::load(&pki).unwrap();
    let term = TermStore::open(dir.join("term")).unwrap();
    let backend: Arc<dyn HostBackend> =
        Arc::new(LibvirtBackend::open(libvirt_uri, Box::new(SystemMounter)).unwrap());
    let slot = HostSlot::new(backend, Some(dir.to_path_buf())).unwrap();
    let svc = AgentService::new(&creds.cluster_id, term, Hosts::Single(Arc::new(slot)));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let server = tonic::transport::Server::builder()
        .tls_config(creds.server_tls())
        .unwrap()
        .add_service(AgentServer::new(svc))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l));
    tokio::spawn(server);
    (addr, ca)
}

/// A client speaking for management node `node` of the cluster.
pub fn client(addr: SocketAddr, ca: &Ca, node: u64) -> AgentClient<Channel> {
    let (cert, key) = leaf(
        ca,
        &["zsnode"],
        &format!("urn:zstack:{CLUSTER}:node:{node}"),
        true,
    );
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca.pem))
        .identity(Identity::from_pem(cert, key))
        .domain_name("zsagent");
    let ch = Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_lazy();
    AgentClient::new(ch)
}

pub fn header(term: u64) -> Option<pb::Header> {
    Some(pb::Header {
        cluster_id: CLUSTER.into(),
        protocol_version: proto::agent::PROTOCOL_VERSION,
        term,
        leader_id: 1,
        host_uuid: HOST.into(),
    })
}
