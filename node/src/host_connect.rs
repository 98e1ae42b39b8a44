//! The leader's side of connecting a host (the `agent` receiver of the host flows,
//! `api::families::host::flows`): attach the host's agent, installing it over SSH first when
//! none answers and an installer is configured, and answer the host's facts; undo detaches the
//! agent and removes what was installed. The reach-or-install step ([`HostConnector::reach`])
//! is shared with the image store flows (`crate::store_connect`): one agent per machine.
//!
//! Every call carries the leader's term (the flow step's), so an agent that has seen a newer
//! leader refuses this one; that refusal is indeterminate for the step (the new leader runs it).

use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use api::families::host::flows;
use api::flow::Vars;
use api::secret::DataKey;
use api::secret::Sealed;
use api::wire::errors::Code;
use api::wire::errors::Refusal;
use futures::future::BoxFuture;
use ha::EffectError;
use ha::ProgressFn;
use serde::Deserialize;

use crate::agent_client::facts_of;
use crate::agent_client::AgentCallError;
use crate::agent_client::AgentTarget;
use crate::agent_client::SharedAgents;
use crate::pki::Credentials;

/// Bound on one attach.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a freshly installed agent may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a host is and how to log in, as the flow carries it (password sealed).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// Management address.
    pub management_ip: String,
    /// SSH port.
    pub ssh_port: u16,
    /// SSH user.
    pub username: String,
    /// Sealed SSH password.
    pub password: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    call: String,
    host_uuid: String,
    // Absent only for a deleted host that was gone already: nothing to detach.
    endpoint: Option<Endpoint>,
    #[serde(default)]
    deployed: bool,
}

/// Installs (and removes) the agent on a host over SSH. The node's implementation copies this
/// build's `zsagent` with system `ssh`/`scp`; tests may substitute one at this edge.
pub trait AgentInstaller: Send + Sync {
    /// Install and start the agent on `ep` (credentials in clear only here), with the
    /// certificate bundle issued for it. Idempotent.
    fn install(
        &self,
        ep: &Endpoint,
        password: String,
        bundle: crate::pki::agent::AgentBundle,
    ) -> BoxFuture<'static, Result<(), String>>;
    /// Stop and remove what `install` put there. Idempotent.
    fn remove(&self, ep: &Endpoint, password: String) -> BoxFuture<'static, Result<(), String>>;
}

/// The `agent` receiver.
pub struct HostConnector {
    clients: SharedAgents,
    credentials: Arc<Credentials>,
    key: Arc<DataKey>,
    port: u16,
    installer: Option<Arc<dyn AgentInstaller>>,
}

fn failed(code: Code, details: String) -> EffectError {
    EffectError::Failed(Refusal::new(code, details))
}

fn code_of(call: &str) -> Code {
    if call == "AddKVMHost" {
        Code::HostAdd
    } else {
        Code::HostReconnect
    }
}

impl HostConnector {
    /// A receiver reaching agents on `port` of each host.
    pub fn new(
        clients: SharedAgents,
        credentials: Arc<Credentials>,
        key: Arc<DataKey>,
        port: u16,
        installer: Option<Arc<dyn AgentInstaller>>,
    ) -> Self {
        Self {
            clients,
            credentials,
            key,
            port,
            installer,
        }
    }

    fn target(&self, ep: &Endpoint, host_uuid: &str) -> AgentTarget {
        let ip = &ep.management_ip;
        let addr = if ip.contains(':') {
            format!("[{ip}]:{}", self.port)
        } else {
            format!("{ip}:{}", self.port)
        };
        AgentTarget {
            addr,
            host_uuid: host_uuid.to_string(),
        }
    }

    pub(crate) fn password(&self, ep: &Endpoint, code: Code) -> Result<String, EffectError> {
        self.key
            .open(&Sealed::from_stored(ep.password.clone()))
            .map(|s| s.expose().to_string())
            .map_err(|e| failed(code, format!("the SSH password cannot be opened: {e}")))
    }

    /// Perform `connect-host` or `disconnect-host`.
    pub fn perform(
        self: &Arc<Self>,
        action: &str,
        payload: &str,
        term: u64,
        progress: ProgressFn,
    ) -> BoxFuture<'static, Result<Vars, EffectError>> {
        let this = self.clone();
        let action = action.to_string();
        let payload = payload.to_string();
        Box::pin(async move {
            let p: Payload = serde_json::from_str(&payload).map_err(|e| {
                failed(Code::InvalidArgument, format!("bad host step payload: {e}"))
            })?;
            match action.as_str() {
                flows::CONNECT => this.connect(p, term, progress).await,
                flows::DISCONNECT => this.disconnect(p, term).await,
                other => Err(failed(
                    Code::NotSupported,
                    format!("the agent receiver has no action {other:?}"),
                )),
            }
        })
    }

    /// Reach the agent at `ep` with `call` (an attach, a store connect), installing the
    /// agent over SSH first when nothing answers there and an installer is configured. Answers
    /// `call`'s reply and whether this installed the agent. An agent installed here that then
    /// refuses `call` is removed again before the failure is returned: a failed step leaves
    /// nothing of its own behind. Shared by the host flows and the image store flows (one
    /// agent per machine, whichever role installed it).
    pub(crate) async fn reach<T, F, Fut>(
        &self,
        ep: &Endpoint,
        what: &str,
        code: Code,
        progress: &ProgressFn,
        call: F,
    ) -> Result<(T, bool), EffectError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, AgentCallError>>,
    {
        let message = match call().await {
            Ok(r) => return Ok((r, false)),
            Err(AgentCallError::Unreachable { message, .. }) => message,
            Err(e) => return Err(self.attach_error(e, what, code)),
        };
        let Some(installer) = self.installer.clone() else {
            return Err(failed(
                code,
                format!("no agent answers at {what} ({message}), and this management node has no agent installer configured"),
            ));
        };
        let password = self.password(ep, code)?;
        let bundle = crate::pki::agent::issue(&self.credentials, &ep.management_ip)
            .map_err(|e| failed(code, format!("cannot issue the agent's certificate: {e}")))?;
        progress(30);
        installer
            .install(ep, password.clone(), bundle)
            .await
            .map_err(|e| failed(code, format!("cannot install the agent on {what}: {e}")))?;
        progress(70);
        match self.call_started(&call, what, code).await {
            Ok(r) => Ok((r, true)),
            // Deposed meanwhile: the next leader runs the step again and finds this agent.
            Err(e @ EffectError::Indeterminate(_)) => Err(e),
            Err(e) => {
                if let Err(re) = installer.remove(ep, password).await {
                    tracing::warn!(%what, error = %re, "the agent installed for a failed step was not removed");
                }
                Err(e)
            }
        }
    }

    async fn connect(
        &self,
        p: Payload,
        term: u64,
        progress: ProgressFn,
    ) -> Result<Vars, EffectError> {
        let code = code_of(&p.call);
        let ep = p.endpoint.clone().ok_or_else(|| {
            failed(
                Code::InvalidArgument,
                "connect-host without an endpoint".into(),
            )
        })?;
        let target = self.target(&ep, &p.host_uuid);
        let what = format!("host[{}] at {}", ep.management_ip, target.addr);
        progress(10);
        let (reply, deployed) = self
            .reach(&ep, &what, code, &progress, || {
                self.clients.attach(&target, term, ATTACH_TIMEOUT)
            })
            .await?;
        progress(100);
        let facts = facts_of(&reply);
        let virtualization = reply
            .facts
            .as_ref()
            .map(|f| f.virtualization.clone())
            .unwrap_or_default();
        let facts = serde_json::to_string(&facts)
            .map_err(|e| failed(code, format!("cannot encode the host's facts: {e}")))?;
        Ok(Vars::from([
            (flows::vars::FACTS.to_string(), facts),
            (flows::vars::VIRTUALIZATION.to_string(), virtualization),
            (flows::vars::DEPLOYED.to_string(), deployed.to_string()),
        ]))
    }

    /// Call a just-started agent, giving it time to come up.
    async fn call_started<T, F, Fut>(
        &self,
        call: &F,
        what: &str,
        code: Code,
    ) -> Result<T, EffectError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, AgentCallError>>,
    {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match call().await {
                Ok(r) => return Ok(r),
                Err(AgentCallError::Unreachable { message, .. }) if Instant::now() < deadline => {
                    tracing::debug!(%what, %message, "installed agent not answering yet");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(e) => return Err(self.attach_error(e, what, code)),
            }
        }
    }

    /// Remove the agent an earlier step installed at `ep` (no installer: nothing was).
    pub(crate) async fn uninstall(&self, ep: &Endpoint, code: Code) -> Result<(), EffectError> {
        let Some(installer) = self.installer.clone() else {
            return Ok(());
        };
        let password = self.password(ep, code)?;
        installer
            .remove(ep, password)
            .await
            .map_err(|e| EffectError::Indeterminate(format!("removing the agent: {e}")))
    }

    pub(crate) fn attach_error(&self, e: AgentCallError, what: &str, code: Code) -> EffectError {
        match e {
            // This leader is deposed: the step is the next leader's to run.
            AgentCallError::StaleTerm { message, .. } => EffectError::Indeterminate(message),
            AgentCallError::Refused { message, .. } => {
                failed(code, format!("the agent of {what} refused: {message}"))
            }
            AgentCallError::Unreachable { message, .. } => failed(
                code,
                format!("the agent of {what} does not answer: {message}"),
            ),
        }
    }

    async fn disconnect(&self, p: Payload, term: u64) -> Result<Vars, EffectError> {
        let code = code_of(&p.call);
        let Some(ep) = p.endpoint.clone().filter(|_| !p.host_uuid.is_empty()) else {
            return Ok(Vars::new());
        };
        let target = self.target(&ep, &p.host_uuid);
        match self.clients.detach(&target, term, ATTACH_TIMEOUT).await {
            Ok(_) => {}
            Err(AgentCallError::StaleTerm { message, .. }) => {
                return Err(EffectError::Indeterminate(message))
            }
            // An agent that is gone has nothing to forget; one the step installed is removed
            // below either way.
            Err(e) => tracing::info!(host = %p.host_uuid, error = %e, "detach during rollback"),
        }
        if p.deployed {
            self.uninstall(&ep, code).await?;
        }
        Ok(Vars::new())
    }
}
