//! The leader's client of host agents (`zsagent`, `proto::agent`): mutual TLS with this node's
//! certificate, one lazily connected channel per agent address, and every request stamped with
//! the caller's Raft term and node id. Only leader duties and flow receivers call it, always
//! with their own term, so an agent that has seen a newer leader refuses a deposed one.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use proto::agent::v1 as pb;
use proto::agent::v1::agent_client::AgentClient;
use tonic::transport::Channel;
use tonic::transport::ClientTlsConfig;
use tonic::transport::Endpoint;
use tonic::Code;

use crate::pki::Credentials;

/// Bound on connecting to an agent (a dead host must not hold a ping round).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why an agent call has no answer to use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentCallError {
    /// The agent answered with a refusal: it will not do it (stale term, another cluster or
    /// host, bad request). Definite: asking again with the same term gets the same answer.
    #[error("agent {addr} refused: {message}")]
    Refused {
        /// `ip:port` of the agent.
        addr: String,
        /// Its message.
        message: String,
    },
    /// The agent refused because it has seen a newer leader: this node must stop driving it.
    #[error("agent {addr} has seen a newer leader: {message}")]
    StaleTerm {
        /// `ip:port`.
        addr: String,
        /// Its message (names both terms).
        message: String,
    },
    /// No definite answer: unreachable, handshake failed, timed out, or the agent failed
    /// internally. It may or may not have happened.
    #[error("agent {addr} unreachable: {message}")]
    Unreachable {
        /// `ip:port`.
        addr: String,
        /// What went wrong.
        message: String,
    },
}

impl AgentCallError {
    /// Whether the call may have happened and is worth asking again (with the same key).
    pub fn is_indeterminate(&self) -> bool {
        matches!(self, AgentCallError::Unreachable { .. })
    }
}

/// `ip:port` of an agent (an IPv6 literal needs brackets in an authority).
pub fn agent_addr(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// Where an agent is and which host it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentTarget {
    /// `host:port` of the agent's gRPC port.
    pub addr: String,
    /// The host's uuid in the cluster ("" only before the first attach of a pre-installed
    /// agent).
    pub host_uuid: String,
}

/// The agents this node talks to.
pub struct AgentClients {
    cluster_id: String,
    node_id: u64,
    tls: ClientTlsConfig,
    channels: Mutex<HashMap<String, Channel>>,
}

impl std::fmt::Debug for AgentClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClients")
            .field("cluster_id", &self.cluster_id)
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// The status's message followed by its causes (a transport failure keeps the TLS error,
/// which names the certificate problem, in its sources only).
fn with_causes(s: &tonic::Status) -> String {
    let mut m = s.message().to_string();
    let mut cause = std::error::Error::source(s);
    while let Some(e) = cause {
        let text = e.to_string();
        if !m.contains(&text) {
            m.push_str(": ");
            m.push_str(&text);
        }
        cause = e.source();
    }
    m
}

/// An agent's refusal or failure, classified.
pub fn status_error(addr: &str, s: tonic::Status) -> AgentCallError {
    let addr = addr.to_string();
    let message = s.message().to_string();
    if s.code() == Code::Unavailable {
        // A TLS handshake that fails on a certificate will fail the same way every time:
        // whatever answers there holds no certificate of this cluster's CA (an agent of
        // another cluster), or refused ours. Definite, so no one installs over it.
        let full = with_causes(&s);
        if full.contains("certificate") || full.contains("UnknownIssuer") {
            return AgentCallError::Refused {
                message: format!(
                    "mutual TLS refused ({full}): what answers at {addr} is not an agent of this \
                     cluster (its certificate is not from this cluster's CA: an agent of \
                     another cluster?), or it refused this node's certificate"
                ),
                addr,
            };
        }
    }
    match s.code() {
        // The agent's term refusal (see agent.proto): FAILED_PRECONDITION naming the terms.
        Code::FailedPrecondition if message.starts_with("stale leader term") => {
            AgentCallError::StaleTerm { addr, message }
        }
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::NotFound
        | Code::AlreadyExists
        | Code::OutOfRange
        | Code::Unimplemented => AgentCallError::Refused { addr, message },
        _ => AgentCallError::Unreachable {
            addr,
            message: format!("{:?}: {message}", s.code()),
        },
    }
}

impl AgentClients {
    /// Clients speaking for node `c.node_id` of `c.cluster_id`.
    pub fn new(c: &Credentials) -> Self {
        Self {
            cluster_id: c.cluster_id.clone(),
            node_id: c.node_id,
            tls: crate::pki::tls::agent_client(c),
            channels: Mutex::new(HashMap::new()),
        }
    }

    fn channel(&self, addr: &str) -> Result<Channel, AgentCallError> {
        let mut map = self
            .channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = map.get(addr) {
            return Ok(c.clone());
        }
        let bad = |message: String| AgentCallError::Refused {
            addr: addr.to_string(),
            message,
        };
        let ep = Endpoint::from_shared(format!("https://{addr}"))
            .map_err(|e| bad(format!("bad agent address: {e}")))?
            .tls_config(self.tls.clone())
            .map_err(|e| bad(format!("TLS configuration: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true);
        let ch = ep.connect_lazy();
        map.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }

    /// The header of a request for `host_uuid` under `term`.
    pub fn header(&self, term: u64, host_uuid: &str) -> pb::Header {
        pb::Header {
            cluster_id: self.cluster_id.clone(),
            protocol_version: proto::agent::PROTOCOL_VERSION,
            term,
            leader_id: self.node_id,
            host_uuid: host_uuid.to_string(),
        }
    }

    /// The raw client of the agent at `addr` (calls not wrapped here: the image store's).
    pub fn grpc(&self, addr: &str) -> Result<AgentClient<Channel>, AgentCallError> {
        Ok(AgentClient::new(self.channel(addr)?))
    }

    fn client(&self, t: &AgentTarget) -> Result<AgentClient<Channel>, AgentCallError> {
        Ok(AgentClient::new(self.channel(&t.addr)?))
    }

    /// Bind the agent to `host_uuid` and read its facts.
    pub async fn attach(
        &self,
        t: &AgentTarget,
        term: u64,
        timeout: Duration,
    ) -> Result<pb::AttachReply, AgentCallError> {
        let mut req = tonic::Request::new(pb::AttachRequest {
            // A pre-installed agent is not bound yet: the header names no host until it is.
            header: Some(self.header(term, "")),
            host_uuid: t.host_uuid.clone(),
        });
        req.set_timeout(timeout);
        let r = self
            .client(t)?
            .attach(req)
            .await
            .map_err(|s| status_error(&t.addr, s))?
            .into_inner();
        Ok(r)
    }

    /// Undo an attach (rollback of an add, or a deleted host); idempotent.
    pub async fn detach(
        &self,
        t: &AgentTarget,
        term: u64,
        timeout: Duration,
    ) -> Result<bool, AgentCallError> {
        let mut req = tonic::Request::new(pb::DetachRequest {
            header: Some(self.header(term, "")),
            host_uuid: t.host_uuid.clone(),
        });
        req.set_timeout(timeout);
        Ok(self
            .client(t)?
            .detach(req)
            .await
            .map_err(|s| status_error(&t.addr, s))?
            .into_inner()
            .was_attached)
    }

    /// One ping: liveness, the domain list if it changed since `known_domains_version`, and
    /// the capacity of the host's primary storages.
    pub async fn ping(
        &self,
        t: &AgentTarget,
        term: u64,
        known_domains_version: u64,
        timeout: Duration,
    ) -> Result<pb::PingReply, AgentCallError> {
        let mut req = tonic::Request::new(pb::PingRequest {
            header: Some(self.header(term, &t.host_uuid)),
            known_domains_version,
        });
        req.set_timeout(timeout);
        let r = self
            .client(t)?
            .ping(req)
            .await
            .map_err(|s| status_error(&t.addr, s))?
            .into_inner();
        if r.host_uuid != t.host_uuid {
            return Err(AgentCallError::Refused {
                addr: t.addr.clone(),
                message: format!(
                    "answered for host {:?}, not {:?}: another host's agent is at this address",
                    r.host_uuid, t.host_uuid
                ),
            });
        }
        Ok(r)
    }

    /// Make a primary storage usable on the host and measure it.
    pub async fn prepare_primary_storage(
        &self,
        t: &AgentTarget,
        term: u64,
        request: pb::PreparePrimaryStorageRequest,
        timeout: Duration,
    ) -> Result<pb::StorageCapacity, AgentCallError> {
        let mut request = request;
        request.header = Some(self.header(term, &t.host_uuid));
        let mut req = tonic::Request::new(request);
        req.set_timeout(timeout);
        self.client(t)?
            .prepare_primary_storage(req)
            .await
            .map_err(|s| status_error(&t.addr, s))?
            .into_inner()
            .capacity
            .ok_or_else(|| AgentCallError::Refused {
                addr: t.addr.clone(),
                message: "answered without a capacity".into(),
            })
    }

    /// The host's domains as its agent lists them now.
    pub async fn list_domains(
        &self,
        t: &AgentTarget,
        term: u64,
        timeout: Duration,
    ) -> Result<pb::ListDomainsReply, AgentCallError> {
        let mut req = tonic::Request::new(pb::ListDomainsRequest {
            header: Some(self.header(term, &t.host_uuid)),
        });
        req.set_timeout(timeout);
        Ok(self
            .client(t)?
            .list_domains(req)
            .await
            .map_err(|s| status_error(&t.addr, s))?
            .into_inner())
    }
}

impl AgentClients {
    /// A reply message the agent must fill, or a refusal naming what it left out.
    fn required<T>(addr: &str, what: &str, v: Option<T>) -> Result<T, AgentCallError> {
        v.ok_or_else(|| AgentCallError::Refused {
            addr: addr.to_string(),
            message: format!("answered without {what}"),
        })
    }

    /// Create a volume's file on a primary storage of the host (a root volume backed by an
    /// image in its cache, or a blank data volume); idempotent.
    pub async fn create_volume(
        &self,
        t: &AgentTarget,
        term: u64,
        request: pb::CreateVolumeRequest,
        timeout: Duration,
    ) -> Result<pb::VolumeFile, AgentCallError> {
        let mut request = request;
        request.header = Some(self.header(term, &t.host_uuid));
        let mut req = tonic::Request::new(request);
        req.set_timeout(timeout);
        let r = self
            .client(t)?
            .create_volume(req)
            .await
            .map_err(|s| status_error(&t.addr, s))?
            .into_inner();
        Self::required(&t.addr, "a volume file", r.file)
    }

    /// Remove a volume's file; whether there was one. Refused while a domain uses it.
    pub async fn delete_volume(
        &self,
        t: &AgentTarget,
        term: u64,
        request: pb::DeleteVolumeRequest,
        timeout: Duration,
    ) -> Result<bool, AgentCallError> {
        let mut request = request;
        request.header = Some(self.header(term, &t.host_uuid));
        let mut req = tonic::Request::new(request);
        req.set_timeout(timeout);
        Ok(self
            .client(t)?
            .delete_volume(req)
            .await
            .map_err(|s| status_error(&t.addr, s))?
            .into_inner()
            .deleted)
    }

    /// Define and start the VM from `vm`; a VM already running there is answered as it is.
    pub async fn start_vm(
        &self,
        t: &AgentTarget,
        term: u64,
        vm: pb::VmSpec,
        timeout: Duration,
    ) -> Result<pb::Domain, AgentCallError> {
        let mut req = tonic::Request::new(pb::StartVmRequest {
            header: Some(self.header(term, &t.host_uuid)),
            vm: Some(vm),
        });
        req.set_timeout(timeout);
        let r = self
            .client(t)?
            .start_vm(req)
            .await
            .map_err(|s| status_error(&t.addr, s))?
            .into_inner();
        Self::required(&t.addr, "the started domain", r.domain)
    }

    /// Stop the VM (`stop_type` "grace" or "cold"; a grace stop destroys it after
    /// `timeout_seconds`) and undefine it. `timeout` bounds the call and must leave room for
    /// the grace period. The domain after it: `None`, the host no longer has it.
    pub async fn stop_vm(
        &self,
        t: &AgentTarget,
        term: u64,
        vm_uuid: &str,
        stop_type: &str,
        timeout_seconds: u32,
        timeout: Duration,
    ) -> Result<Option<pb::Domain>, AgentCallError> {
        let mut req = tonic::Request::new(pb::StopVmRequest {
            header: Some(self.header(term, &t.host_uuid)),
            vm_uuid: vm_uuid.to_string(),
            r#type: stop_type.to_string(),
            timeout_seconds,
        });
        req.set_timeout(timeout);
        Ok(self
            .client(t)?
            .stop_vm(req)
            .await
            .map_err(|s| status_error(&t.addr, s))?
            .into_inner()
            .domain)
    }

    fn vm_request(
        &self,
        t: &AgentTarget,
        term: u64,
        vm_uuid: &str,
        timeout: Duration,
    ) -> tonic::Request<pb::VmRequest> {
        let mut req = tonic::Request::new(pb::VmRequest {
            header: Some(self.header(term, &t.host_uuid)),
            vm_uuid: vm_uuid.to_string(),
        });
        req.set_timeout(timeout);
        req
    }

    /// Reboot a running VM; the domain after it.
    pub async fn reboot_vm(
        &self,
        t: &AgentTarget,
        term: u64,
        vm_uuid: &str,
        timeout: Duration,
    ) -> Result<Option<pb::Domain>, AgentCallError> {
        Ok(self
            .client(t)?
            .reboot_vm(self.vm_request(t, term, vm_uuid, timeout))
            .await
            .map_err(|s| status_error(&t.addr, s))?
            .into_inner()
            .domain)
    }

    /// Pause a running VM (a paused one answers as it is); the domain after it.
    pub async fn pause_vm(
        &self,
        t: &AgentTarget,
        term: u64,
        vm_uuid: &str,
        timeout: Duration,
    ) -> Result<Option<pb::Domain>, AgentCallError> {
        Ok(self
            .client(t)?
            .pause_vm(self.vm_request(t, term, vm_uuid, timeout))
            .await
            .map_err(|s| status_error(&t.addr, s))?
            .into_inner()
            .domain)
    }

    /// Resume a paused VM (a running one answers as it is); the domain after it.
    pub async fn resume_vm(
        &self,
        t: &AgentTarget,
        term: u64,
        vm_uuid: &str,
        timeout: Duration,
    ) -> Result<Option<pb::Domain>, AgentCallError> {
        Ok(self
            .client(t)?
            .resume_vm(self.vm_request(t, term, vm_uuid, timeout))
            .await
            .map_err(|s| status_error(&t.addr, s))?
            .into_inner()
            .domain)
    }

    /// Destroy (power off at once) and undefine the VM; `None` afterwards, also when the host
    /// never had it.
    pub async fn destroy_vm(
        &self,
        t: &AgentTarget,
        term: u64,
        vm_uuid: &str,
        timeout: Duration,
    ) -> Result<Option<pb::Domain>, AgentCallError> {
        Ok(self
            .client(t)?
            .destroy_vm(self.vm_request(t, term, vm_uuid, timeout))
            .await
            .map_err(|s| status_error(&t.addr, s))?
            .into_inner()
            .domain)
    }
}

/// The agents as a shared handle.
pub type SharedAgents = Arc<AgentClients>;

/// The facts of an attach reply in the model's terms.
pub fn facts_of(r: &pb::AttachReply) -> api::families::host::HostFacts {
    let f = r.facts.clone().unwrap_or_default();
    api::families::host::HostFacts {
        cpu_threads: u64::from(f.cpu_threads),
        cpu_sockets: u64::from(f.cpu_sockets),
        memory_bytes: f.memory_bytes,
        architecture: f.architecture,
        os_distribution: f.os_distribution,
        os_release: f.os_release,
        os_version: f.os_version,
    }
}

/// The host tracker's edge: agents at `<managementIp>:<port>` over [`AgentClients`].
pub struct TrackerAgents {
    clients: SharedAgents,
    port: u16,
}

impl TrackerAgents {
    /// Agents listening on `port` of each host's management address.
    pub fn new(clients: SharedAgents, port: u16) -> Self {
        Self { clients, port }
    }

    fn target(&self, h: &ha::duties::host_tracker::TrackedHost) -> AgentTarget {
        AgentTarget {
            addr: agent_addr(&h.management_ip, self.port),
            host_uuid: h.uuid.clone(),
        }
    }
}

fn tracker_failure(e: AgentCallError) -> ha::duties::host_tracker::AgentFailure {
    use ha::duties::host_tracker::AgentFailure;
    match e {
        AgentCallError::StaleTerm { .. } => AgentFailure::StaleTerm(e.to_string()),
        _ => AgentFailure::Missed(e.to_string()),
    }
}

impl ha::duties::host_tracker::HostAgents for TrackerAgents {
    fn attach(
        &self,
        host: &ha::duties::host_tracker::TrackedHost,
        term: u64,
        timeout: Duration,
    ) -> ha::BoxFuture<
        'static,
        Result<ha::duties::host_tracker::Attached, ha::duties::host_tracker::AgentFailure>,
    > {
        let clients = self.clients.clone();
        let target = self.target(host);
        Box::pin(async move {
            let r = clients
                .attach(&target, term, timeout)
                .await
                .map_err(tracker_failure)?;
            Ok(ha::duties::host_tracker::Attached {
                facts: facts_of(&r),
                boot_id: r.boot_id,
            })
        })
    }

    fn ping(
        &self,
        host: &ha::duties::host_tracker::TrackedHost,
        term: u64,
        known_domains_version: u64,
        timeout: Duration,
    ) -> ha::BoxFuture<
        'static,
        Result<ha::duties::host_tracker::Pinged, ha::duties::host_tracker::AgentFailure>,
    > {
        let clients = self.clients.clone();
        let target = self.target(host);
        Box::pin(async move {
            clients
                .ping(&target, term, known_domains_version, timeout)
                .await
                .map(|r| ha::duties::host_tracker::Pinged {
                    boot_id: r.boot_id,
                    domains_version: r.domains_version,
                })
                .map_err(tracker_failure)
        })
    }
}

impl ha::duties::vm_reconciler::DomainLister for TrackerAgents {
    fn domains(
        &self,
        host: &api::families::vm::flows::Target,
        term: u64,
        timeout: Duration,
    ) -> ha::BoxFuture<'static, Result<Vec<api::families::vm::reconcile::Domain>, String>> {
        let clients = self.clients.clone();
        let target = AgentTarget {
            addr: agent_addr(&host.management_ip, self.port),
            host_uuid: host.host_uuid.clone(),
        };
        Box::pin(async move {
            let r = clients
                .list_domains(&target, term, timeout)
                .await
                .map_err(|e| e.to_string())?;
            Ok(r.domains
                .into_iter()
                .map(|d| api::families::vm::reconcile::Domain {
                    name: d.name,
                    state: d.state,
                })
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_definite_and_transport_failures_are_not() {
        let stale = status_error(
            "a:1",
            tonic::Status::failed_precondition("stale leader term 3: this agent has seen term 5"),
        );
        assert!(matches!(stale, AgentCallError::StaleTerm { .. }));
        assert!(!stale.is_indeterminate());
        let other = status_error("a:1", tonic::Status::failed_precondition("bound to host x"));
        assert!(matches!(other, AgentCallError::Refused { .. }));
        assert!(
            status_error("a:1", tonic::Status::unavailable("connection refused"))
                .is_indeterminate()
        );
        assert!(status_error("a:1", tonic::Status::deadline_exceeded("t")).is_indeterminate());
        let tls = status_error(
            "a:1",
            tonic::Status::unavailable("transport error: invalid peer certificate: UnknownIssuer"),
        );
        assert!(
            matches!(&tls, AgentCallError::Refused { message, .. } if message.contains("another cluster")),
            "{tls:?}"
        );
    }
}
