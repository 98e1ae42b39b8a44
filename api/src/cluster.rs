//! Clusters (spec 03 §3): a set of hosts of one hypervisor type inside a zone. Storage and L2
//! networks are attached to clusters; deleting a cluster detaches them and deletes its hosts.

use serde::Deserialize;
use serde::Serialize;
use serde_json::json;
use serde_json::Value;

use crate::catalogue::CallSpec;
use crate::params;
use crate::params::Body;
use crate::resource;
use crate::resource::Resource;
use crate::validate;
use crate::wire::date::java_date;
use crate::wire::errors::Refusal;
use crate::zone::Zone;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::Command;
use crate::StateTxn;

/// The cluster table.
pub const TABLE: &str = "cluster";
/// Hypervisor types this build manages.
pub const HYPERVISOR_TYPES: &[&str] = &["KVM"];
/// CPU architectures ZStack knows.
pub const ARCHITECTURES: &[&str] = &["x86_64", "aarch64", "mips64el", "loongarch64"];

/// `Enabled` or `Disabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterState {
    /// New VMs may be placed here.
    Enabled,
    /// No new VMs are placed here.
    Disabled,
}

/// A cluster record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    /// 32 hex chars.
    pub uuid: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Enabled or Disabled.
    pub state: ClusterState,
    /// `KVM`.
    pub hypervisor_type: String,
    /// The zone it belongs to.
    pub zone_uuid: String,
    /// CPU architecture of its hosts, when declared.
    pub architecture: Option<String>,
    /// Creation time, ms.
    pub create_date: u64,
    /// Last change, ms.
    pub last_op_date: u64,
}

impl Resource for Cluster {
    const KIND: &'static str = "Cluster";
    const TABLE: &'static str = TABLE;
    const FIELDS: &'static [&'static str] = &[
        "name",
        "uuid",
        "description",
        "state",
        "hypervisorType",
        "createDate",
        "lastOpDate",
        "zoneUuid",
        "type",
        "architecture",
    ];
    const INDEXED: &'static [&'static str] = &["name", "state", "zoneUuid", "hypervisorType"];

    fn uuid(&self) -> &str {
        &self.uuid
    }

    fn inventory(&self) -> Value {
        let mut m = resource::object(json!({"name": self.name, "uuid": self.uuid}));
        if let Some(d) = &self.description {
            m.insert("description".into(), json!(d));
        }
        m.insert("state".into(), json!(self.state));
        m.insert("hypervisorType".into(), json!(self.hypervisor_type));
        m.insert("createDate".into(), json!(java_date(self.create_date)));
        m.insert("lastOpDate".into(), json!(java_date(self.last_op_date)));
        m.insert("zoneUuid".into(), json!(self.zone_uuid));
        m.insert("type".into(), json!("zstack"));
        if let Some(a) = &self.architecture {
            m.insert("architecture".into(), json!(a));
        }
        Value::Object(m)
    }
}

/// State events of `ChangeClusterState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterStateEvent {
    /// → Enabled.
    Enable,
    /// → Disabled.
    Disable,
}

/// Cluster commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterOp {
    /// `CreateCluster`.
    Create {
        /// New cluster's uuid.
        uuid: String,
        /// Zone.
        zone_uuid: String,
        /// Name.
        name: String,
        /// Description.
        description: Option<String>,
        /// Must be `KVM`.
        hypervisor_type: String,
        /// `zstack` (the only type accepted).
        cluster_type: Option<String>,
        /// CPU architecture.
        architecture: Option<String>,
    },
    /// `UpdateCluster`.
    Update {
        /// Cluster.
        uuid: String,
        /// New name.
        name: Option<String>,
        /// New description.
        description: Option<String>,
    },
    /// `ChangeClusterState`.
    ChangeState {
        /// Cluster.
        uuid: String,
        /// enable or disable.
        event: ClusterStateEvent,
    },
    /// `DeleteCluster`: detaches storage and networks, deletes its hosts.
    Delete {
        /// Cluster.
        uuid: String,
    },
}

/// Answer of a cluster command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterResult {
    /// The cluster after the change.
    Inventory(Cluster),
    /// Deleted (or already absent).
    Deleted,
}

impl ClusterResult {
    /// The `inventory` of the reply, if any.
    pub fn inventory(&self) -> Option<Value> {
        match self {
            ClusterResult::Inventory(c) => Some(c.inventory()),
            ClusterResult::Deleted => None,
        }
    }
}

/// Delete a cluster and undo its attachments (storage, L2 networks, tags), inside the caller's
/// apply, and delete its hosts.
pub(crate) fn delete_cascade(
    txn: &mut impl StateTxn,
    ctx: &ApplyCtx,
    uuid: &str,
) -> Result<(), ApiError> {
    crate::host::forget_cluster(txn, uuid)?;
    crate::primary_storage::forget_cluster(txn, ctx, uuid)?;
    crate::l2::forget_cluster(txn, ctx, uuid)?;
    crate::tag::delete_for_resource(txn, uuid)?;
    resource::remove::<Cluster>(txn, uuid)?;
    Ok(())
}

/// Zone deletion: delete every cluster of the zone.
pub(crate) fn cascade_zone_delete(
    txn: &mut impl StateTxn,
    ctx: &ApplyCtx,
    zone_uuid: &str,
) -> Result<(), ApiError> {
    for u in resource::uuids_where::<Cluster>(txn, "zoneUuid", zone_uuid)? {
        delete_cascade(txn, ctx, &u)?;
    }
    Ok(())
}

/// Zone enable/disable propagates to its clusters (spec 03 §2.2, [U] `ClusterExtensionToZone`)
/// and from each cluster to its hosts.
pub(crate) fn cascade_zone_state(
    txn: &mut impl StateTxn,
    ctx: &ApplyCtx,
    zone_uuid: &str,
    state: ClusterState,
) -> Result<(), ApiError> {
    for (owner, mut c) in resource::find::<Cluster>(txn, "zoneUuid", zone_uuid)? {
        if c.state != state {
            c.state = state;
            c.last_op_date = ctx.proposed_at_ms;
            resource::save(txn, &owner, &c)?;
        }
        crate::host::cascade_cluster_state(txn, ctx, &c.uuid, state)?;
    }
    Ok(())
}

pub(crate) fn apply(
    txn: &mut impl StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    op: ClusterOp,
) -> Result<ClusterResult, ApiError> {
    caller.require_admin("cluster")?;
    match op {
        ClusterOp::Create {
            uuid,
            zone_uuid,
            name,
            description,
            hypervisor_type,
            cluster_type,
            architecture,
        } => {
            validate::uuid("resourceUuid", &uuid)?;
            validate::name("name", &name)?;
            validate::description(description.as_deref())?;
            if !HYPERVISOR_TYPES.contains(&hypervisor_type.as_str()) {
                return Err(validate::invalid_arg(format!(
                    "unsupported hypervisorType[{hypervisor_type}], supported types are {HYPERVISOR_TYPES:?}"
                )));
            }
            if let Some(t) = cluster_type.as_deref().filter(|t| *t != "zstack") {
                return Err(validate::invalid_arg(format!(
                    "unsupported cluster type[{t}], only 'zstack' is supported"
                )));
            }
            if let Some(a) = architecture
                .as_deref()
                .filter(|a| !ARCHITECTURES.contains(a))
            {
                return Err(validate::invalid_arg(format!(
                    "unsupported architecture[{a}], valid values are {ARCHITECTURES:?}"
                )));
            }
            // A disabled zone still accepts new clusters (spec 03 §2.2).
            resource::require::<Zone>(txn, &zone_uuid)?;
            if resource::load::<Cluster>(txn, &uuid)?.is_some() {
                return Err(validate::duplicate_uuid("Cluster", &uuid));
            }
            let c = Cluster {
                uuid,
                name,
                description,
                state: ClusterState::Enabled,
                hypervisor_type,
                zone_uuid,
                architecture,
                create_date: ctx.proposed_at_ms,
                last_op_date: ctx.proposed_at_ms,
            };
            resource::save(txn, &caller.account_uuid, &c)?;
            Ok(ClusterResult::Inventory(c))
        }
        ClusterOp::Update {
            uuid,
            name,
            description,
        } => {
            let (owner, mut c) = resource::require::<Cluster>(txn, &uuid)?;
            if let Some(n) = name {
                validate::name("name", &n)?;
                c.name = n;
            }
            if let Some(d) = description {
                validate::description(Some(&d))?;
                c.description = Some(d);
            }
            c.last_op_date = ctx.proposed_at_ms;
            resource::save(txn, &owner, &c)?;
            Ok(ClusterResult::Inventory(c))
        }
        ClusterOp::ChangeState { uuid, event } => {
            let (owner, mut c) = resource::require::<Cluster>(txn, &uuid)?;
            c.state = match event {
                ClusterStateEvent::Enable => ClusterState::Enabled,
                ClusterStateEvent::Disable => ClusterState::Disabled,
            };
            c.last_op_date = ctx.proposed_at_ms;
            resource::save(txn, &owner, &c)?;
            crate::host::cascade_cluster_state(txn, ctx, &uuid, c.state)?;
            Ok(ClusterResult::Inventory(c))
        }
        ClusterOp::Delete { uuid } => {
            delete_cascade(txn, ctx, &uuid)?;
            Ok(ClusterResult::Deleted)
        }
    }
}

/// Request → command for the cluster calls (`None`: not a cluster call).
pub fn plan(
    call: &CallSpec,
    b: &Body,
    caller: &Caller,
    new_uuid: &str,
) -> Option<Result<Command, Refusal>> {
    let cmd = |op| Command::Cluster {
        caller: caller.clone(),
        op: Box::new(op),
    };
    let r = || -> Result<Option<ClusterOp>, Refusal> {
        Ok(Some(match call.name.as_str() {
            "CreateCluster" => ClusterOp::Create {
                uuid: params::new_uuid(b, new_uuid),
                zone_uuid: params::required(b, "zoneUuid", call)?,
                name: params::required(b, "name", call)?,
                description: params::string(b, "description"),
                hypervisor_type: params::required(b, "hypervisorType", call)?,
                cluster_type: params::string(b, "type"),
                architecture: params::string(b, "architecture"),
            },
            "UpdateCluster" => ClusterOp::Update {
                uuid: params::required(b, "uuid", call)?,
                name: params::string(b, "name"),
                description: params::string(b, "description"),
            },
            "ChangeClusterState" => ClusterOp::ChangeState {
                uuid: params::required(b, "uuid", call)?,
                event: params::state_event(
                    b,
                    call,
                    &[
                        ("enable", ClusterStateEvent::Enable),
                        ("disable", ClusterStateEvent::Disable),
                    ],
                )?,
            },
            "DeleteCluster" => ClusterOp::Delete {
                uuid: params::required(b, "uuid", call)?,
            },
            _ => return Ok(None),
        }))
    };
    r().transpose().map(|r| r.map(cmd))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testing::ctx;
    use crate::testing::MemTxn;
    use crate::zone::ZoneOp;

    /// Uuid `n` as 32 hex chars.
    pub fn u(n: u32) -> String {
        format!("{n:032x}")
    }

    /// A normal (non-admin) caller.
    pub fn normal() -> Caller {
        Caller {
            account_uuid: "a".repeat(32),
            user_uuid: "a".repeat(32),
            admin: false,
        }
    }

    /// Create zone `u(n)`.
    pub fn make_zone(t: &mut MemTxn, n: u32) -> String {
        crate::zone::apply(
            t,
            &ctx(1),
            &Caller::admin(),
            ZoneOp::Create {
                uuid: u(n),
                name: format!("zone-{n}"),
                description: None,
                is_default: false,
            },
        )
        .unwrap();
        u(n)
    }

    fn create_op(n: u32, zone: &str) -> ClusterOp {
        ClusterOp::Create {
            uuid: u(n),
            zone_uuid: zone.into(),
            name: format!("cluster-{n}"),
            description: Some("d".into()),
            hypervisor_type: "KVM".into(),
            cluster_type: None,
            architecture: None,
        }
    }

    /// Create cluster `u(n)` in `zone`.
    pub fn make_cluster(t: &mut MemTxn, n: u32, zone: &str) -> String {
        apply(t, &ctx(2), &Caller::admin(), create_op(n, zone)).unwrap();
        u(n)
    }

    fn run(t: &mut MemTxn, op: ClusterOp) -> Result<ClusterResult, ApiError> {
        apply(t, &ctx(3), &Caller::admin(), op)
    }

    #[test]
    fn lifecycle_and_inventory_shape() {
        let mut t = MemTxn::default();
        let z = make_zone(&mut t, 1);
        let ClusterResult::Inventory(c) = run(&mut t, create_op(10, &z)).unwrap() else {
            panic!()
        };
        assert_eq!(
            serde_json::to_string(&c.inventory()).unwrap(),
            format!(
                r#"{{"name":"cluster-10","uuid":"{}","description":"d","state":"Enabled","hypervisorType":"KVM","createDate":"{d}","lastOpDate":"{d}","zoneUuid":"{z}","type":"zstack"}}"#,
                c.uuid,
                d = java_date(3000)
            )
        );
        let r = run(
            &mut t,
            ClusterOp::Update {
                uuid: c.uuid.clone(),
                name: Some("renamed".into()),
                description: None,
            },
        )
        .unwrap();
        assert!(
            matches!(r, ClusterResult::Inventory(Cluster { ref name, .. }) if name == "renamed")
        );
        let r = run(
            &mut t,
            ClusterOp::ChangeState {
                uuid: c.uuid.clone(),
                event: ClusterStateEvent::Disable,
            },
        )
        .unwrap();
        assert!(matches!(
            r,
            ClusterResult::Inventory(Cluster {
                state: ClusterState::Disabled,
                ..
            })
        ));
        assert_eq!(
            run(
                &mut t,
                ClusterOp::Delete {
                    uuid: c.uuid.clone()
                }
            )
            .unwrap(),
            ClusterResult::Deleted
        );
        assert!(resource::load::<Cluster>(&t, &c.uuid).unwrap().is_none());
        assert_eq!(
            run(&mut t, ClusterOp::Delete { uuid: c.uuid }).unwrap(),
            ClusterResult::Deleted
        );
    }

    #[test]
    fn zone_delete_and_disable_cascade() {
        let mut t = MemTxn::default();
        let z = make_zone(&mut t, 1);
        let z2 = make_zone(&mut t, 2);
        make_cluster(&mut t, 10, &z);
        make_cluster(&mut t, 11, &z);
        make_cluster(&mut t, 12, &z2);
        crate::zone::apply(
            &mut t,
            &ctx(4),
            &Caller::admin(),
            ZoneOp::ChangeState {
                uuid: z.clone(),
                event: crate::zone::ZoneStateEvent::Disable,
            },
        )
        .unwrap();
        assert_eq!(
            resource::find::<Cluster>(&t, "state", "Disabled")
                .unwrap()
                .len(),
            2
        );
        crate::zone::apply(
            &mut t,
            &ctx(5),
            &Caller::admin(),
            ZoneOp::Delete { uuid: z },
        )
        .unwrap();
        let left = resource::list::<Cluster>(&t).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].1.uuid, u(12));
    }

    #[test]
    fn refusals_leave_state_unchanged() {
        let mut t = MemTxn::default();
        let z = make_zone(&mut t, 1);
        make_cluster(&mut t, 10, &z);
        let before = t.tables.clone();
        let code = |r: Result<ClusterResult, ApiError>| r.unwrap_err().code();
        assert_eq!(code(run(&mut t, create_op(10, &z))), "SYS.1007", "dup uuid");
        assert_eq!(
            code(run(&mut t, create_op(11, &u(99)))),
            "SYS.1003",
            "no zone"
        );
        let mut bad = create_op(11, &z);
        if let ClusterOp::Create {
            hypervisor_type, ..
        } = &mut bad
        {
            *hypervisor_type = "Simulator".into();
        }
        assert_eq!(code(run(&mut t, bad)), "SYS.1007", "hypervisor");
        let mut bad = create_op(11, &z);
        if let ClusterOp::Create { name, .. } = &mut bad {
            *name = " ".into();
        }
        assert_eq!(code(run(&mut t, bad)), "SYS.1007", "name");
        let mut bad = create_op(11, &z);
        if let ClusterOp::Create { architecture, .. } = &mut bad {
            *architecture = Some("sparc".into());
        }
        assert_eq!(code(run(&mut t, bad)), "SYS.1007", "arch");
        assert_eq!(
            code(run(
                &mut t,
                ClusterOp::Update {
                    uuid: u(10),
                    name: Some(String::new()),
                    description: None
                }
            )),
            "SYS.1007"
        );
        assert_eq!(
            code(run(
                &mut t,
                ClusterOp::Update {
                    uuid: u(77),
                    name: None,
                    description: None
                }
            )),
            "SYS.1003"
        );
        assert_eq!(
            code(run(
                &mut t,
                ClusterOp::ChangeState {
                    uuid: u(77),
                    event: ClusterStateEvent::Enable
                }
            )),
            "SYS.1003"
        );
        for op in [
            create_op(12, &z),
            ClusterOp::Delete { uuid: u(10) },
            ClusterOp::ChangeState {
                uuid: u(10),
                event: ClusterStateEvent::Disable,
            },
            ClusterOp::Update {
                uuid: u(10),
                name: Some("x".into()),
                description: None,
            },
        ] {
            assert_eq!(code(apply(&mut t, &ctx(4), &normal(), op)), "ID.1002");
        }
        assert_eq!(t.tables, before);
    }
}
