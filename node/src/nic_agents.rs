//! The leader's side of a VM's NICs: the NIC actions of the `vm` receiver
//! (`api::families::vm::nics`). Each is one call to the VM's host agent, idempotent there by
//! the NIC's MAC (a repeated plug answers the domain that has the interface, a repeated
//! unplug the domain without it), so an indeterminate answer is asked again and a new leader
//! re-running the step does no harm. The answer is checked against the domain's interfaces:
//! a step succeeds only when the host shows what the record will say.

use api::families::vm::flows::Nic;
use api::families::vm::flows::Target;
use api::families::vm::nics;
use api::flow::Vars;
use ha::EffectError;
use proto::agent::v1 as pb;
use serde::Deserialize;

use crate::agent_client::status_error;
use crate::vm_agents::call_failure;
use crate::vm_agents::failed;
use crate::vm_agents::VmAgents;
use crate::vm_agents::VM_CALL_TIMEOUT;

/// The step's payload (`nics::request`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    vm_uuid: String,
    target: Target,
    nic: Nic,
}

fn has_mac(domain: &pb::Domain, mac: &str) -> bool {
    domain.nic_macs.iter().any(|m| m.eq_ignore_ascii_case(mac))
}

impl VmAgents {
    /// Perform `action` when it is a NIC action (`None` otherwise).
    pub(crate) async fn nic_action(
        &self,
        action: &str,
        payload: &str,
        term: u64,
    ) -> Option<Result<Vars, EffectError>> {
        use nics::actions as a;
        if ![a::ATTACH_NIC, a::DETACH_NIC].contains(&action) {
            return None;
        }
        let p: Payload = match serde_json::from_str(payload) {
            Ok(p) => p,
            Err(e) => return Some(Err(failed(format!("bad NIC step payload: {e}")))),
        };
        Some(if action == a::ATTACH_NIC {
            self.attach_nic(&p, term).await
        } else {
            self.detach_nic(&p, term).await
        })
    }

    async fn attach_nic(&self, p: &Payload, term: u64) -> Result<Vars, EffectError> {
        let t = &p.target;
        let what = format!(
            "attaching NIC[mac:{}] of L3 network[uuid:{}] to VM[uuid:{}] on host[uuid:{}]",
            p.nic.mac, p.nic.l3_network_uuid, p.vm_uuid, t.host_uuid
        );
        let (mut c, addr) = self.client(t, &what)?;
        let domain = c
            .attach_nic(self.request(
                pb::AttachNicRequest {
                    header: self.header(term, t),
                    vm_uuid: p.vm_uuid.clone(),
                    nic: Some(pb::NicSpec {
                        mac: p.nic.mac.clone(),
                        ip: p.nic.ip.clone(),
                        l3_network_uuid: p.nic.l3_network_uuid.clone(),
                        bridge: p.nic.bridge.clone(),
                        device_id: p.nic.device_id,
                    }),
                },
                VM_CALL_TIMEOUT,
            ))
            .await
            .map_err(|st| call_failure(status_error(&addr, st), &what))?
            .into_inner()
            .domain;
        match domain {
            Some(d) if has_mac(&d, &p.nic.mac) => Ok(Vars::new()),
            Some(_) => Err(failed(format!(
                "{what}: the domain does not show the interface"
            ))),
            None => Err(failed(format!("{what}: the host has no such domain"))),
        }
    }

    async fn detach_nic(&self, p: &Payload, term: u64) -> Result<Vars, EffectError> {
        let t = &p.target;
        let what = format!(
            "detaching NIC[mac:{}] from VM[uuid:{}] on host[uuid:{}]",
            p.nic.mac, p.vm_uuid, t.host_uuid
        );
        let (mut c, addr) = self.client(t, &what)?;
        let domain = c
            .detach_nic(self.request(
                pb::DetachNicRequest {
                    header: self.header(term, t),
                    vm_uuid: p.vm_uuid.clone(),
                    mac: p.nic.mac.clone(),
                },
                VM_CALL_TIMEOUT,
            ))
            .await
            .map_err(|st| call_failure(status_error(&addr, st), &what))?
            .into_inner()
            .domain;
        // No domain (the VM stopped meanwhile) holds no interface either.
        match domain {
            Some(d) if has_mac(&d, &p.nic.mac) => Err(failed(format!(
                "{what}: the domain still shows the interface"
            ))),
            _ => Ok(Vars::new()),
        }
    }
}
