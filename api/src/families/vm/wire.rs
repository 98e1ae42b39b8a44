//! VMs and volumes on the wire: inventories (ZStack's `VmInstanceInventory`,
//! `VmNicInventory`, `VolumeInventory` field order) and request → op.

use serde_json::json;
use serde_json::Value;

use super::model::CreateStrategy;
use super::model::NicRequest;
use super::model::StopType;
use super::model::VmInstance;
use super::model::VmNic;
use super::model::VmOp;
use super::model::Volume;
use crate::params;
use crate::plan::Plan;
use crate::plan::PlanInput;
use crate::resource::date;
use crate::resource::Field;
use crate::resource::Resource;
use crate::wire::errors::Code;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::StateTxn;

fn opt(v: &Option<String>) -> Option<Value> {
    v.as_ref().map(|x| json!(x))
}

/// A NIC as `VmNicInventory`.
pub fn nic_inventory(n: &VmNic) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("uuid".into(), json!(n.uuid));
    m.insert("vmInstanceUuid".into(), json!(n.vm_instance_uuid));
    m.insert("l3NetworkUuid".into(), json!(n.l3_network_uuid));
    for (k, v) in [
        ("ip", &n.ip),
        ("netmask", &n.netmask),
        ("gateway", &n.gateway),
        ("usedIpUuid", &n.used_ip_uuid),
    ] {
        if let Some(v) = v {
            m.insert(k.into(), json!(v));
        }
    }
    m.insert("mac".into(), json!(n.mac));
    m.insert("hypervisorType".into(), json!("KVM"));
    m.insert("deviceId".into(), json!(n.device_id));
    m.insert("type".into(), json!("VNIC"));
    m.insert("createDate".into(), date(n.create_date));
    m.insert("lastOpDate".into(), date(n.last_op_date));
    Value::Object(m)
}

fn all_volumes(txn: &dyn StateTxn, vm: &VmInstance) -> Result<Value, ApiError> {
    Ok(Value::Array(
        super::model::volumes_of(txn, &vm.uuid)?
            .iter()
            .map(crate::resource::inventory)
            .collect(),
    ))
}

impl Resource for VmInstance {
    const KIND: &'static str = super::model::KIND;
    const TABLE: &'static str = super::model::TABLE;
    const INVENTORY: &'static [Field<Self>] = &[
        Field::new("uuid", |v| json!(v.uuid)),
        Field::new("name", |v| json!(v.name)),
        Field::maybe("description", |v| opt(&v.description)),
        Field::maybe("zoneUuid", |v| opt(&v.zone_uuid)),
        Field::maybe("clusterUuid", |v| opt(&v.cluster_uuid)),
        Field::maybe("imageUuid", |v| opt(&v.image_uuid)),
        Field::maybe("hostUuid", |v| opt(&v.host_uuid)),
        Field::maybe("lastHostUuid", |v| opt(&v.last_host_uuid)),
        Field::maybe("instanceOfferingUuid", |v| opt(&v.instance_offering_uuid)),
        Field::new("rootVolumeUuid", |v| json!(v.root_volume_uuid)),
        Field::new("platform", |v| json!(v.platform)),
        Field::maybe("defaultL3NetworkUuid", |v| opt(&v.default_l3_network_uuid)),
        Field::new("type", |_| json!("UserVm")),
        Field::new("hypervisorType", |_| json!("KVM")),
        Field::new("memorySize", |v| json!(v.memory_size)),
        Field::new("cpuNum", |v| json!(v.cpu_num)),
        Field::new("cpuSpeed", |_| json!(0)),
        Field::maybe("allocatorStrategy", |v| opt(&v.allocator_strategy)),
        Field::new("createDate", |v| date(v.create_date)),
        Field::new("lastOpDate", |v| date(v.last_op_date)),
        Field::new("state", |v| json!(v.state.name())),
        Field::new("vmNics", |v| {
            Value::Array(v.vm_nics.iter().map(nic_inventory).collect())
        }),
        Field::joined("allVolumes", all_volumes),
    ];
    const INDEXED: &'static [&'static str] = &[
        "name",
        "state",
        "zoneUuid",
        "clusterUuid",
        "hostUuid",
        "lastHostUuid",
        "imageUuid",
        "instanceOfferingUuid",
        "vmNics.ip",
        "vmNics.l3NetworkUuid",
        "vmNics.uuid",
    ];

    fn uuid(&self) -> &str {
        &self.uuid
    }
}

impl Resource for Volume {
    const KIND: &'static str = super::model::VOLUME_KIND;
    const TABLE: &'static str = super::model::VOLUME_TABLE;
    const INVENTORY: &'static [Field<Self>] = &[
        Field::new("uuid", |v| json!(v.uuid)),
        Field::new("name", |v| json!(v.name)),
        Field::maybe("description", |v| opt(&v.description)),
        Field::maybe("primaryStorageUuid", |v| opt(&v.primary_storage_uuid)),
        Field::maybe("vmInstanceUuid", |v| opt(&v.vm_instance_uuid)),
        Field::maybe("rootImageUuid", |v| opt(&v.root_image_uuid)),
        Field::maybe("installPath", |v| opt(&v.install_path)),
        Field::new("type", |v| json!(v.volume_type)),
        Field::new("format", |v| json!(v.format)),
        Field::new("size", |v| json!(v.size)),
        Field::new("actualSize", |v| json!(v.actual_size)),
        Field::maybe("deviceId", |v| v.device_id.map(|d| json!(d))),
        Field::new("state", |v| json!(v.state)),
        Field::new("status", |v| json!(v.status)),
        Field::new("createDate", |v| date(v.create_date)),
        Field::new("lastOpDate", |v| date(v.last_op_date)),
        Field::new("isShareable", |_| json!(false)),
    ];
    const INDEXED: &'static [&'static str] = &[
        "name",
        "status",
        "type",
        "vmInstanceUuid",
        "primaryStorageUuid",
    ];

    fn uuid(&self) -> &str {
        &self.uuid
    }
}

fn invalid(details: String) -> Refusal {
    Refusal::new(Code::InvalidArgument, details)
}

/// A locally administered unicast MAC from a NIC's uuid (ZStack's `fa:` prefix), the same on
/// every replica and for a retried request.
pub(super) fn mac_of(nic_uuid: &str) -> String {
    let hex = nic_uuid.as_bytes();
    let mut parts = vec!["fa".to_string()];
    for i in 0..5 {
        let pair = hex
            .get(2 * i..2 * i + 2)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("00");
        parts.push(pair.to_ascii_lowercase());
    }
    parts.join(":")
}

/// Static addresses asked for through system tags `staticIp::<l3Uuid>::<ip>`.
fn static_ips(p: &PlanInput) -> Result<Vec<(String, String)>, Refusal> {
    let tags = params::strings(p.body, "systemTags", p.call)?.unwrap_or_default();
    Ok(tags
        .iter()
        .filter_map(|t| t.strip_prefix("staticIp::"))
        .filter_map(|rest| rest.split_once("::"))
        .map(|(l3, ip)| (l3.to_ascii_lowercase(), ip.to_string()))
        .collect())
}

pub(super) fn create(p: &PlanInput) -> Result<Plan, Refusal> {
    let uuid = p.new_uuid();
    let mut l3s = params::strings(p.body, "l3NetworkUuids", p.call)?.unwrap_or_default();
    if l3s.is_empty() {
        return Err(invalid(
            "l3NetworkUuids must name at least one L3 network".into(),
        ));
    }
    for l3 in &mut l3s {
        *l3 = l3.to_ascii_lowercase();
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(dup) = l3s.iter().find(|l| !seen.insert(l.as_str())) {
        return Err(invalid(format!(
            "L3 network[uuid:{dup}] is named twice in l3NetworkUuids"
        )));
    }
    // The default L3's NIC is the first (device 0), as ZStack orders them.
    if let Some(d) = p.string("defaultL3NetworkUuid") {
        let d = d.to_ascii_lowercase();
        let i = l3s.iter().position(|l| *l == d).ok_or_else(|| {
            invalid(format!(
                "defaultL3NetworkUuid[{d}] is not in l3NetworkUuids"
            ))
        })?;
        let first = l3s.remove(i);
        l3s.insert(0, first);
    }
    let strategy = match p.string("strategy").as_deref() {
        None | Some("InstantStart") => CreateStrategy::InstantStart,
        Some("CreateStopped") => CreateStrategy::CreateStopped,
        Some(other) => {
            return Err(invalid(format!(
                "strategy[{other}] is not one of InstantStart, CreateStopped"
            )))
        }
    };
    let statics = static_ips(p)?;
    let nics = l3s
        .iter()
        .enumerate()
        .map(|(i, l3)| {
            let nic_uuid = params::derive_uuid(&uuid, 1 + u32::try_from(i).unwrap_or(0));
            NicRequest {
                mac: mac_of(&nic_uuid),
                uuid: nic_uuid,
                l3_network_uuid: l3.clone(),
                static_ip: statics
                    .iter()
                    .find(|(l, _)| l == l3)
                    .map(|(_, ip)| ip.clone()),
            }
        })
        .collect();
    let lower = |f: &str| p.string(f).map(|s| s.to_ascii_lowercase());
    Ok(p.propose(VmOp::Create {
        root_volume_uuid: params::derive_uuid(&uuid, 0),
        uuid,
        name: p.required("name")?,
        description: p.string("description"),
        instance_offering_uuid: p.required("instanceOfferingUuid")?.to_ascii_lowercase(),
        image_uuid: p.required("imageUuid")?.to_ascii_lowercase(),
        nics,
        zone_uuid: lower("zoneUuid"),
        cluster_uuid: lower("clusterUuid"),
        host_uuid: lower("hostUuid"),
        primary_storage_uuid: lower("primaryStorageUuidForRootVolume"),
        strategy,
    }))
}

fn uuid_of(p: &PlanInput) -> Result<String, Refusal> {
    Ok(p.required("uuid")?.to_ascii_lowercase())
}

pub(super) fn start(p: &PlanInput) -> Result<Plan, Refusal> {
    Ok(p.propose(VmOp::Start {
        uuid: uuid_of(p)?,
        host_uuid: p.string("hostUuid").map(|s| s.to_ascii_lowercase()),
    }))
}

pub(super) fn stop(p: &PlanInput) -> Result<Plan, Refusal> {
    let stop_type = match p.string("type").as_deref() {
        None | Some("grace") => StopType::Grace,
        Some("cold") => StopType::Cold,
        Some(other) => return Err(invalid(format!("type[{other}] is not one of grace, cold"))),
    };
    Ok(p.propose(VmOp::Stop {
        uuid: uuid_of(p)?,
        stop_type,
    }))
}

pub(super) fn migrate(p: &PlanInput) -> Result<Plan, Refusal> {
    for f in [
        "strategy",
        "downTime",
        "migrateFromDestination",
        "allowUnknown",
    ] {
        if p.string(f).is_some() {
            return Err(invalid(format!(
                "field[{f}] of MigrateVm is not supported: libvirt's defaults (auto-converge) apply"
            )));
        }
    }
    Ok(p.propose(VmOp::Migrate {
        uuid: p.required("vmInstanceUuid")?.to_ascii_lowercase(),
        host_uuid: p.string("hostUuid").map(|s| s.to_ascii_lowercase()),
    }))
}

/// `GetVmMigrationCandidateHosts`: the hosts the allocator accepts for the running VM,
/// its current host excluded, best first; nothing is reserved.
pub(super) fn migration_candidates(p: &PlanInput) -> Result<Plan, Refusal> {
    let uuid = p.required("vmInstanceUuid")?.to_ascii_lowercase();
    Ok(Plan::Read {
        call: p.call,
        read: Box::new(move |txn, caller| {
            caller.require_admin("host")?;
            let (_, vm) = crate::resource::require_visible::<VmInstance>(txn, caller, &uuid)?;
            super::model::migration_refusal(txn, &vm, "APIGetVmMigrationCandidateHostsMsg", None)?;
            let input = super::flows::migration_placement(txn, &vm, None)?;
            let out = crate::registry::serve_read(txn, caller, "host.candidates", &input)?;
            let hosts = out["hosts"].clone();
            Ok(crate::resource::object(json!({ "inventories": hosts })))
        }),
    })
}

/// A call whose op names only the VM.
pub(super) fn simple(p: &PlanInput, op: fn(String) -> VmOp) -> Result<Plan, Refusal> {
    Ok(p.propose(op(uuid_of(p)?)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn macs_are_locally_administered_and_stable() {
        let m = super::mac_of("0123456789abcdef0123456789abcdef");
        assert_eq!(m, "fa:01:23:45:67:89");
        assert_eq!(m, super::mac_of("0123456789abcdef0123456789abcdef"));
    }
}
