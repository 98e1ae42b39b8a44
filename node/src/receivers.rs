//! The side-effect receivers of flow steps on this node (the leader performs them): the
//! `selftest` receiver of the flow engine's self-test flow — an HTTP endpoint the operator or
//! a chaos test runs, configured with `flow_selftest_receiver` — and the agents: hosts
//! (`agent`), the hosts' agents measuring primary storage (`primarystorage`), image store
//! agents (`imagestore-agent`) and their images (`imagestore`). A receiver is handed the
//! step's idempotency key with every request; a receiver that already performed that key
//! answers its earlier outcome again.

use std::sync::Arc;
use std::time::Duration;

use api::flow::selftest;
use api::flow::EffectRequest;
use api::flow::Vars;
use api::wire::errors::Code;
use api::wire::errors::Refusal;
use ha::EffectCall;
use ha::EffectError;
use ha::EffectFuture;
use ha::EffectRunner;
use ha::ProgressFn;
use serde_json::json;
use serde_json::Value;

/// Bound on one call to the self-test receiver (its steps may pause on purpose).
const SELFTEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The receivers configured on this node.
pub struct Receivers {
    selftest: Option<(String, reqwest::Client)>,
    hosts: Option<Arc<crate::host_connect::HostConnector>>,
    images: Option<Arc<crate::image_agents::ImageStores>>,
    storage: Option<Arc<crate::storage_agents::HostStorages>>,
    stores: Option<Arc<crate::store_connect::StoreConnector>>,
    agents: Option<crate::agent_client::SharedAgents>,
    vms: Option<Arc<crate::vm_agents::VmAgents>>,
}

impl Receivers {
    /// Receivers for this node's configuration.
    pub fn new(selftest_url: Option<String>) -> Self {
        let selftest = selftest_url.map(|url| {
            let http = reqwest::Client::builder()
                .timeout(SELFTEST_TIMEOUT)
                // Occasional calls: no pooled connection a receiver may have closed meanwhile.
                .pool_max_idle_per_host(0)
                .no_proxy()
                .build()
                .unwrap_or_else(|_| reqwest::Client::new());
            (url, http)
        });
        Self {
            selftest,
            hosts: None,
            images: None,
            storage: None,
            stores: None,
            agents: None,
            vms: None,
        }
    }

    /// With the agent clients the receivers drive agents through (the duties share them).
    pub fn with_agents(mut self, agents: crate::agent_client::SharedAgents) -> Self {
        self.agents = Some(agents);
        self
    }

    /// The agent clients, if configured: one channel per agent for every receiver and duty
    /// (a second client set doubled the leader's connections, 20 000 at 10 000 hosts, this
    /// machine's open-file limit).
    pub fn agents(&self) -> Option<&crate::agent_client::SharedAgents> {
        self.agents.as_ref()
    }

    /// With the image stores' receiver.
    pub fn with_images(mut self, images: Arc<crate::image_agents::ImageStores>) -> Self {
        self.images = Some(images);
        self
    }

    /// The image stores' receiver, if configured (the backup storage tracker shares it).
    pub fn images(&self) -> Option<&Arc<crate::image_agents::ImageStores>> {
        self.images.as_ref()
    }

    /// With the primary storages' receiver (hosts' agents measuring a storage).
    pub fn with_storage(mut self, storage: Arc<crate::storage_agents::HostStorages>) -> Self {
        self.storage = Some(storage);
        self
    }

    /// The primary storages' receiver, if configured (the storage tracker shares it).
    pub fn storage(&self) -> Option<&Arc<crate::storage_agents::HostStorages>> {
        self.storage.as_ref()
    }

    /// With the host agents' receiver.
    pub fn with_hosts(mut self, hosts: Arc<crate::host_connect::HostConnector>) -> Self {
        self.hosts = Some(hosts);
        self
    }

    /// With the image store agents' receiver (adding and deleting backup storage).
    pub fn with_stores(mut self, stores: crate::store_connect::StoreConnector) -> Self {
        self.stores = Some(Arc::new(stores));
        self
    }

    /// With the VMs' receiver (hosts' agents driving domains and volumes).
    pub fn with_vms(mut self, vms: Arc<crate::vm_agents::VmAgents>) -> Self {
        self.vms = Some(vms);
        self
    }

    /// Whether the self-test receiver is configured.
    pub fn has_selftest(&self) -> bool {
        self.selftest.is_some()
    }
}

fn failed(code: Code, details: impl Into<String>) -> EffectError {
    EffectError::Failed(Refusal::new(code, details))
}

/// Call the self-test receiver: `POST {url}` with `{key, term, action, payload}`; it answers
/// `{"ok": true, "vars": {...}}` or `{"ok": false, "error": "..."}`. No answer, or a 5xx, is
/// indeterminate (asked again with the same key); a 4xx, a refusal or garbage fails the step.
async fn call_selftest(
    url: String,
    http: reqwest::Client,
    key: String,
    term: u64,
    request: EffectRequest,
) -> Result<Vars, EffectError> {
    let payload: Value = serde_json::from_str(&request.payload)
        .map_err(|e| failed(Code::InvalidArgument, format!("bad self-test payload: {e}")))?;
    let body = json!({"key": key, "term": term, "action": request.action, "payload": payload});
    let resp = http.post(&url).json(&body).send().await.map_err(|e| {
        EffectError::Indeterminate(format!("self-test receiver {url} unreachable: {e}"))
    })?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| {
        EffectError::Indeterminate(format!("self-test receiver's answer lost: {e}"))
    })?;
    if status.is_server_error() {
        return Err(EffectError::Indeterminate(format!(
            "self-test receiver answered HTTP {status}: {text:.200}"
        )));
    }
    if !status.is_success() {
        return Err(failed(
            Code::OperationFailure,
            format!("self-test receiver answered HTTP {status}: {text:.200}"),
        ));
    }
    let v: Value = serde_json::from_str(&text).map_err(|e| {
        failed(
            Code::OperationFailure,
            format!("self-test receiver answered garbage ({e}): {text:.200}"),
        )
    })?;
    if v["ok"] != true {
        return Err(failed(
            Code::OperationFailure,
            v["error"]
                .as_str()
                .unwrap_or("self-test receiver refused")
                .to_string(),
        ));
    }
    let vars = v["vars"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default();
    Ok(vars)
}

impl EffectRunner for Receivers {
    fn perform(&self, call: EffectCall, progress: ProgressFn) -> EffectFuture {
        let EffectCall { key, term, request } = call;
        let selftest = self.selftest.clone();
        if request.receiver == api::families::host::flows::RECEIVER {
            if let Some(h) = &self.hosts {
                return h.perform(&request.action, &request.payload, term, progress);
            }
        }
        if request.receiver == api::families::vm::flows::RECEIVER {
            if let Some(v) = &self.vms {
                return v.perform(&request.action, &request.payload, term, progress);
            }
        }
        if request.receiver == api::families::primary_storage::flows::RECEIVER {
            if let Some(s) = &self.storage {
                return s.perform(&request.action, &request.payload, term, progress);
            }
        }
        if request.receiver == api::families::backup_storage::flows::RECEIVER {
            if let Some(s) = &self.stores {
                return s.perform(&request.action, &request.payload, term, progress);
            }
        }
        // The image flows and ReconnectBackupStorage share the image stores' receiver.
        if request.receiver == api::families::image::flows::RECEIVER
            || request.receiver == api::families::backup_storage::reconnect::RECEIVER
        {
            if let Some(i) = &self.images {
                return i.perform(&request.action, &request.payload, term, progress);
            }
        }
        Box::pin(async move {
            match (request.receiver.as_str(), selftest) {
                (selftest::RECEIVER, Some((url, http))) => {
                    progress(10);
                    let r = call_selftest(url, http, key, term, request).await;
                    progress(100);
                    r
                }
                (receiver, _) => Err(failed(
                    Code::NotSupported,
                    format!("no receiver '{receiver}' is configured on this management node"),
                )),
            }
        })
    }
}

/// The receivers as the leader context's seam.
pub fn runner(r: Arc<Receivers>) -> Arc<dyn EffectRunner> {
    r
}
