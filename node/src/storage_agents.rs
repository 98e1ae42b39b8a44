//! The leader's side of primary storage on hosts: `PreparePrimaryStorage` on each host's agent
//! over the leader's mutual-TLS agent client. One edge serves both askers: the storage
//! tracker (`ha::duties::storage_tracker`, every round) and the `primarystorage` receiver of
//! the `ReconnectPrimaryStorage` flow (`api::families::primary_storage::flows`), so a storage
//! is measured the same way whoever asks.

use std::sync::Arc;
use std::time::Duration;

use api::families::primary_storage::flows;
use api::families::primary_storage::flows::HostAnswer;
use api::flow::Vars;
use api::wire::errors::Code;
use api::wire::errors::Refusal;
use futures::future::BoxFuture;
use futures::StreamExt;
use ha::duties::storage_tracker::Measured;
use ha::duties::storage_tracker::StorageAgents;
use ha::duties::storage_tracker::StorageOnHost;
use ha::EffectError;
use ha::ProgressFn;
use proto::agent::v1 as pb;
use serde::Deserialize;

use crate::agent_client::AgentCallError;
use crate::agent_client::AgentTarget;
use crate::agent_client::SharedAgents;

/// Bound on one host's answer during a reconnect (an NFS mount may take a while).
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Hosts asked at once during a reconnect.
const PARALLEL: usize = 16;

/// Why a host gave no measurement.
enum Failure {
    /// The agent could not be asked (or refused): the call's error.
    Call(AgentCallError),
    /// The agent answered that it cannot reach the storage.
    Unhealthy(String),
}

/// One host's measurement.
type Answer = (StorageOnHost, Result<(u64, u64), Failure>);

impl Failure {
    fn text(self) -> String {
        match self {
            Failure::Call(e) => e.to_string(),
            Failure::Unhealthy(e) => e,
        }
    }
}

/// Agents on `port` of each host's management address.
pub struct HostStorages {
    clients: SharedAgents,
    port: u16,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    targets: Vec<StorageOnHost>,
}

impl HostStorages {
    /// The edge over `clients`.
    pub fn new(clients: SharedAgents, port: u16) -> Self {
        Self { clients, port }
    }

    async fn measure(
        &self,
        s: &StorageOnHost,
        term: u64,
        timeout: Duration,
    ) -> Result<(u64, u64), Failure> {
        let ip = &s.management_ip;
        let addr = if ip.contains(':') {
            format!("[{ip}]:{}", self.port)
        } else {
            format!("{ip}:{}", self.port)
        };
        let target = AgentTarget {
            addr,
            host_uuid: s.host_uuid.clone(),
        };
        let req = pb::PreparePrimaryStorageRequest {
            header: None,
            primary_storage_uuid: s.ps_uuid.clone(),
            r#type: s.ps_type.clone(),
            url: s.url.clone(),
            mount_point: s.mount_point.clone(),
        };
        let c = self
            .clients
            .prepare_primary_storage(&target, term, req, timeout)
            .await
            .map_err(Failure::Call)?;
        if c.healthy {
            Ok((c.total_bytes, c.available_bytes))
        } else {
            Err(Failure::Unhealthy(c.error))
        }
    }

    /// Perform the reconnect flow's `measure`: every host named, at once (up to
    /// [`PARALLEL`]); each answer, healthy or not, goes to the flow, which decides.
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
            let failed = |d: String| EffectError::Failed(Refusal::new(Code::OperationFailure, d));
            if action != flows::MEASURE {
                return Err(failed(format!(
                    "the primary storage receiver has no action {action:?}"
                )));
            }
            let p: Payload = serde_json::from_str(&payload)
                .map_err(|e| failed(format!("bad primary storage step payload: {e}")))?;
            progress(10);
            let answers: Vec<Answer> = futures::stream::iter(p.targets.into_iter().map(|t| {
                let this = this.clone();
                async move {
                    let m = this.measure(&t, term, RECONNECT_TIMEOUT).await;
                    (t, m)
                }
            }))
            .buffered(PARALLEL)
            .collect()
            .await;
            let mut out = Vec::with_capacity(answers.len());
            for (t, m) in answers {
                let m = match m {
                    // This leader is deposed: the step is the next leader's to run.
                    Err(Failure::Call(AgentCallError::StaleTerm { message, .. })) => {
                        return Err(EffectError::Indeterminate(message))
                    }
                    Err(f) => Err(format!("the agent at {}: {}", t.management_ip, f.text())),
                    Ok(v) => Ok(v),
                };
                out.push(HostAnswer::of(&t, m));
            }
            progress(100);
            let text = serde_json::to_string(&out)
                .map_err(|e| failed(format!("encoding the hosts' answers: {e}")))?;
            Ok(Vars::from([(flows::vars::ANSWERS.to_string(), text)]))
        })
    }
}

/// The storage tracker's edge.
pub struct TrackerStorage(pub Arc<HostStorages>);

impl StorageAgents for TrackerStorage {
    fn prepare(
        &self,
        s: &StorageOnHost,
        term: u64,
        timeout: Duration,
    ) -> ha::BoxFuture<'static, Measured> {
        let edge = self.0.clone();
        let s = s.clone();
        Box::pin(async move { edge.measure(&s, term, timeout).await.map_err(Failure::text) })
    }
}
