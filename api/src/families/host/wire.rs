//! Hosts on the wire: the `KVMHostInventory` and request → op.

use serde_json::json;

use super::model::Host;
use super::model::HostOp;
use super::model::HostStateEvent;
use super::model::DEFAULT_SSH_PORT;
use super::model::KIND;
use super::model::KVM;
use super::model::TABLE;
use super::probe::probed;
use crate::params;
use crate::plan::Plan;
use crate::plan::PlanInput;
use crate::resource::date;
use crate::resource::generic;
use crate::resource::Field;
use crate::resource::Resource;
use crate::wire::errors::Refusal;

impl Resource for Host {
    const KIND: &'static str = KIND;
    const TABLE: &'static str = TABLE;
    // `KVMHostInventory`: subclass fields first, then `HostInventory` (spec 06 §1.3, §6). The
    // os* and architecture fields arrive with the agent's facts; absent until then.
    const INVENTORY: &'static [Field<Self>] = &[
        Field::new("username", |r| json!(r.username)),
        Field::new("sshPort", |r| json!(r.ssh_port)),
        Field::maybe("osDistribution", |r| {
            r.os_distribution.as_ref().map(|x| json!(x))
        }),
        Field::maybe("osRelease", |r| r.os_release.as_ref().map(|x| json!(x))),
        Field::maybe("osVersion", |r| r.os_version.as_ref().map(|x| json!(x))),
        Field::new("zoneUuid", |r| json!(r.zone_uuid)),
        Field::new("name", |r| json!(r.name)),
        Field::new("uuid", |r| json!(r.uuid)),
        Field::new("clusterUuid", |r| json!(r.cluster_uuid)),
        Field::maybe("description", |r| r.description.as_ref().map(|x| json!(x))),
        Field::new("managementIp", |r| json!(r.management_ip)),
        Field::new("hypervisorType", |_| json!(KVM)),
        Field::new("state", |r| json!(r.state)),
        Field::new("status", |r| json!(r.status)),
        Field::new("totalCpuCapacity", |r| json!(r.total_cpu_capacity)),
        Field::new("availableCpuCapacity", |r| json!(r.available_cpu_capacity)),
        Field::new("cpuSockets", |r| json!(r.cpu_sockets)),
        Field::new("totalMemoryCapacity", |r| json!(r.total_memory_capacity)),
        Field::new("availableMemoryCapacity", |r| {
            json!(r.available_memory_capacity)
        }),
        Field::new("cpuNum", |r| json!(r.cpu_num)),
        Field::maybe("architecture", |r| {
            r.architecture.as_ref().map(|x| json!(x))
        }),
        Field::new("createDate", |r| date(r.create_date)),
        Field::new("lastOpDate", |r| date(r.last_op_date)),
    ];
    const INDEXED: &'static [&'static str] =
        &["name", "state", "zoneUuid", "clusterUuid", "managementIp"];

    fn uuid(&self) -> &str {
        &self.uuid
    }
}

pub(super) fn add_kvm(p: &PlanInput) -> Result<Plan, Refusal> {
    Ok(probed(
        p,
        HostOp::AddKvm {
            uuid: p.new_uuid(),
            cluster_uuid: p.required("clusterUuid")?,
            name: p.required("name")?,
            description: p.string("description"),
            management_ip: p.required("managementIp")?,
            username: p.required("username")?,
            password: p.sealed("password")?,
            ssh_port: params::int(p.body, "sshPort", p.call)?.unwrap_or(DEFAULT_SSH_PORT),
        },
    ))
}

pub(super) fn update_kvm(p: &PlanInput) -> Result<Plan, Refusal> {
    Ok(probed(
        p,
        HostOp::UpdateKvm {
            uuid: generic::target_uuid(p)?,
            name: p.string("name"),
            description: p.string("description"),
            management_ip: p.string("managementIp"),
            username: p.string("username"),
            password: p.sealed_opt("password")?,
            ssh_port: params::int(p.body, "sshPort", p.call)?,
        },
    ))
}

pub(super) fn change_state(p: &PlanInput) -> Result<Plan, Refusal> {
    let uuid = generic::target_uuid(p)?;
    let event = params::state_event(
        p.body,
        p.call,
        &[
            ("enable", HostStateEvent::Enable),
            ("disable", HostStateEvent::Disable),
            ("maintain", HostStateEvent::Maintain),
        ],
    )?;
    Ok(p.propose(HostOp::ChangeState { uuid, event }))
}

pub(super) fn reconnect(p: &PlanInput) -> Result<Plan, Refusal> {
    Ok(probed(
        p,
        HostOp::Reconnect {
            uuid: generic::target_uuid(p)?,
        },
    ))
}
