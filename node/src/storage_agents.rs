//! The primary storage tracker's edge (`ha::duties::storage_tracker`): `PreparePrimaryStorage`
//! on each host's agent over the leader's mutual-TLS agent client.

use std::time::Duration;

use ha::duties::storage_tracker::Measured;
use ha::duties::storage_tracker::StorageAgents;
use ha::duties::storage_tracker::StorageOnHost;
use proto::agent::v1 as pb;

use crate::agent_client::AgentTarget;
use crate::agent_client::SharedAgents;

/// Agents on `port` of each host's management address.
pub struct TrackerStorage {
    clients: SharedAgents,
    port: u16,
}

impl TrackerStorage {
    /// The edge over `clients`.
    pub fn new(clients: SharedAgents, port: u16) -> Self {
        Self { clients, port }
    }
}

impl StorageAgents for TrackerStorage {
    fn prepare(
        &self,
        s: &StorageOnHost,
        term: u64,
        timeout: Duration,
    ) -> ha::BoxFuture<'static, Measured> {
        let clients = self.clients.clone();
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
        Box::pin(async move {
            let c = clients
                .prepare_primary_storage(&target, term, req, timeout)
                .await
                .map_err(|e| e.to_string())?;
            if c.healthy {
                Ok((c.total_bytes, c.available_bytes))
            } else {
                Err(c.error)
            }
        })
    }
}
