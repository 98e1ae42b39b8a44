//! The leader's side of adding and deleting ImageStore backup storage (the `imagestore-agent`
//! receiver of `api::families::backup_storage::flows`): reach the store's agent at its
//! `hostname` with `ConnectImageStore` — installing it over SSH exactly as a KVM host's is
//! installed ([`HostConnector::reach`], the same [`crate::agent_installer::SshInstaller`])
//! when none answers — and answer the directory's capacity; undo, and delete, have the agent
//! forget the store and remove an agent the store's add installed once it serves nothing else.
//!
//! One agent per machine serves both roles: the node reaches every agent at
//! `<address>:7272`, so a second agent on the same address could not listen, and the roles do
//! not share state inside it (the host binding vs. `imagestores.json`). An image store added on
//! a KVM host (or a host added on an image store's server) attaches the agent already there.

use std::sync::Arc;
use std::time::Duration;

use api::families::backup_storage::flows;
use api::flow::Vars;
use api::wire::errors::Code;
use api::wire::errors::Refusal;
use futures::future::BoxFuture;
use ha::EffectError;
use ha::ProgressFn;
use serde::Deserialize;

use crate::agent_client::AgentCallError;
use crate::host_connect::Endpoint;
use crate::host_connect::HostConnector;
use crate::image_agents::ImageStores;

/// Bound on one agent call of these steps.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// ZStack answers a failed AddImageStoreBackupStorage with an operation failure.
const CODE: Code = Code::OperationFailure;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    call: String,
    backup_storage_uuid: String,
    url: String,
    // Absent only for a deleted store that was gone already: nothing to detach.
    endpoint: Option<Endpoint>,
    #[serde(default)]
    deployed: bool,
}

fn failed(details: String) -> EffectError {
    EffectError::Failed(Refusal::new(CODE, details))
}

/// The `imagestore-agent` receiver.
pub struct StoreConnector {
    agents: Arc<HostConnector>,
    stores: Arc<ImageStores>,
    port: u16,
}

impl StoreConnector {
    /// Stores reached through `stores` on `port`, agents installed through `agents`.
    pub fn new(agents: Arc<HostConnector>, stores: Arc<ImageStores>, port: u16) -> Self {
        Self {
            agents,
            stores,
            port,
        }
    }

    fn what(&self, ep: &Endpoint, url: &str) -> String {
        let ip = &ep.management_ip;
        let addr = if ip.contains(':') {
            format!("[{ip}]:{}", self.port)
        } else {
            format!("{ip}:{}", self.port)
        };
        format!("image store {ip}:{url} (agent at {addr})")
    }

    /// Perform `connect-image-store` or `disconnect-image-store`.
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
            let p: Payload = serde_json::from_str(&payload)
                .map_err(|e| failed(format!("bad backup storage step payload: {e}")))?;
            match action.as_str() {
                flows::CONNECT => this.connect(p, term, progress).await,
                flows::DISCONNECT => this.disconnect(p, term).await,
                other => Err(EffectError::Failed(Refusal::new(
                    Code::NotSupported,
                    format!("the image store agent receiver has no action {other:?}"),
                ))),
            }
        })
    }

    async fn connect(
        &self,
        p: Payload,
        term: u64,
        progress: ProgressFn,
    ) -> Result<Vars, EffectError> {
        let ep = p
            .endpoint
            .clone()
            .ok_or_else(|| failed("connect-image-store without an endpoint".into()))?;
        let what = self.what(&ep, &p.url);
        progress(10);
        let ((total, available), deployed) = self
            .agents
            .reach(&ep, &what, CODE, &progress, || {
                self.stores.connect(
                    &p.backup_storage_uuid,
                    &ep.management_ip,
                    &p.url,
                    term,
                    CALL_TIMEOUT,
                )
            })
            .await
            .map_err(|e| match e {
                EffectError::Failed(r) => failed(format!(
                    "unable to add backup storage[{}]: {}",
                    p.backup_storage_uuid, r.details
                )),
                e => e,
            })?;
        progress(100);
        tracing::info!(bs = %p.backup_storage_uuid, %what, total, available, deployed, "image store connected");
        Ok(Vars::from([
            (flows::vars::TOTAL.to_string(), total.to_string()),
            (flows::vars::AVAILABLE.to_string(), available.to_string()),
            (flows::vars::DEPLOYED.to_string(), deployed.to_string()),
        ]))
    }

    async fn disconnect(&self, p: Payload, term: u64) -> Result<Vars, EffectError> {
        let Some(ep) = p
            .endpoint
            .clone()
            .filter(|_| !p.backup_storage_uuid.is_empty())
        else {
            return Ok(Vars::new());
        };
        // The rollback of a failed add must leave no agent it installed; a delete only
        // tidies up after records that are gone already, so it never fails on the agent.
        let rollback = p.call == "AddImageStoreBackupStorage";
        let what = self.what(&ep, &p.url);
        let remove = match self
            .stores
            .disconnect(
                &p.backup_storage_uuid,
                &ep.management_ip,
                term,
                CALL_TIMEOUT,
            )
            .await
        {
            Ok(r) => {
                let used = !r.host_uuid.is_empty() || r.image_stores > 0;
                if p.deployed && used {
                    tracing::info!(bs = %p.backup_storage_uuid, %what, host = %r.host_uuid,
                        image_stores = r.image_stores, "the store's agent serves more: kept");
                }
                p.deployed && !used
            }
            Err(AgentCallError::StaleTerm { message, .. }) => {
                return Err(EffectError::Indeterminate(message))
            }
            // An agent this step installed moments ago is removed even when it does not answer
            // (nothing else can be using it yet); an older one may serve a host by now.
            Err(e) => {
                tracing::warn!(bs = %p.backup_storage_uuid, %what, error = %e,
                    "the image store's agent did not answer the disconnect");
                p.deployed && rollback
            }
        };
        if remove {
            match self.agents.uninstall(&ep, CODE).await {
                Ok(()) => {
                    tracing::info!(bs = %p.backup_storage_uuid, %what, "the store's agent removed")
                }
                Err(e) if rollback => return Err(e),
                Err(e) => tracing::warn!(bs = %p.backup_storage_uuid, %what, error = ?e,
                    "the deleted store's agent could not be removed; remove it by hand"),
            }
        }
        Ok(Vars::new())
    }
}
