//! Zones (spec 03 §zones): the top of the hardware hierarchy.

use serde::Deserialize;
use serde::Serialize;
use serde_json::json;
use serde_json::Value;

use crate::resource;
use crate::resource::Resource;
use crate::validate;
use crate::wire::date::java_date;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::StateTxn;

/// The zone table.
pub const TABLE: &str = "zone";

/// `Enabled` or `Disabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ZoneState {
    /// Resources in the zone may be used.
    Enabled,
    /// No new VMs are placed in the zone.
    Disabled,
}

/// A zone record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Zone {
    /// 32 hex chars.
    pub uuid: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Enabled or Disabled.
    pub state: ZoneState,
    /// Whether this is the default zone.
    pub is_default: bool,
    /// Creation time, ms since the epoch.
    pub create_date: u64,
    /// Last change, ms since the epoch.
    pub last_op_date: u64,
}

impl Resource for Zone {
    const KIND: &'static str = "Zone";
    const TABLE: &'static str = TABLE;
    const FIELDS: &'static [&'static str] = &[
        "uuid",
        "name",
        "description",
        "state",
        "type",
        "isDefault",
        "createDate",
        "lastOpDate",
    ];
    const INDEXED: &'static [&'static str] = &["name", "state", "isDefault"];

    fn uuid(&self) -> &str {
        &self.uuid
    }

    fn inventory(&self) -> Value {
        let mut v = json!({"uuid": self.uuid, "name": self.name});
        let m = v.as_object_mut().expect("json! object");
        if let Some(d) = &self.description {
            m.insert("description".into(), json!(d));
        }
        m.insert("state".into(), json!(self.state));
        m.insert("type".into(), json!("zstack"));
        m.insert("isDefault".into(), json!(self.is_default));
        m.insert("createDate".into(), json!(java_date(self.create_date)));
        m.insert("lastOpDate".into(), json!(java_date(self.last_op_date)));
        v
    }
}

/// Zone state events of `ChangeZoneState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ZoneStateEvent {
    /// → Enabled.
    Enable,
    /// → Disabled.
    Disable,
}

/// Zone commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ZoneOp {
    /// `CreateZone`.
    Create {
        /// Stamped by the proposer, or the client's `resourceUuid`.
        uuid: String,
        /// Name.
        name: String,
        /// Description.
        description: Option<String>,
        /// Make it the default zone.
        is_default: bool,
    },
    /// `UpdateZone`.
    Update {
        /// Zone.
        uuid: String,
        /// New name.
        name: Option<String>,
        /// New description.
        description: Option<String>,
        /// New default flag.
        is_default: Option<bool>,
    },
    /// `ChangeZoneState`.
    ChangeState {
        /// Zone.
        uuid: String,
        /// enable or disable.
        event: ZoneStateEvent,
    },
    /// `DeleteZone`: the zone and everything in it.
    Delete {
        /// Zone.
        uuid: String,
    },
}

/// Answer of a zone command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ZoneResult {
    /// The zone after the change.
    Inventory(Zone),
    /// Deleted (or already absent: ZStack answers success for a well-formed unknown uuid).
    Deleted,
}

fn set_only_default(txn: &mut impl StateTxn, keep: &str, ctx: &ApplyCtx) -> Result<(), ApiError> {
    for (owner, mut z) in resource::find::<Zone>(txn, "isDefault", "true")? {
        if z.uuid != keep {
            z.is_default = false;
            z.last_op_date = ctx.proposed_at_ms;
            resource::save(txn, &owner, &z)?;
        }
    }
    Ok(())
}

pub(crate) fn apply(
    txn: &mut impl StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    op: ZoneOp,
) -> Result<ZoneResult, ApiError> {
    // Zones are infrastructure: only the admin manages them (ZStack's RBAC for normal accounts).
    caller.require_admin("zone")?;
    match op {
        ZoneOp::Create {
            uuid,
            name,
            description,
            is_default,
        } => {
            validate::uuid("resourceUuid", &uuid)?;
            validate::name("name", &name)?;
            validate::description(description.as_deref())?;
            if resource::load::<Zone>(txn, &uuid)?.is_some() {
                return Err(validate::duplicate_uuid("Zone", &uuid));
            }
            let z = Zone {
                uuid,
                name,
                description,
                state: ZoneState::Enabled,
                is_default,
                create_date: ctx.proposed_at_ms,
                last_op_date: ctx.proposed_at_ms,
            };
            if is_default {
                set_only_default(txn, &z.uuid, ctx)?;
            }
            resource::save(txn, &caller.account_uuid, &z)?;
            Ok(ZoneResult::Inventory(z))
        }
        ZoneOp::Update {
            uuid,
            name,
            description,
            is_default,
        } => {
            let (owner, mut z) = resource::require::<Zone>(txn, &uuid)?;
            if let Some(n) = name {
                validate::name("name", &n)?;
                z.name = n;
            }
            if let Some(d) = description {
                validate::description(Some(&d))?;
                z.description = Some(d);
            }
            if let Some(d) = is_default {
                z.is_default = d;
                if d {
                    set_only_default(txn, &z.uuid, ctx)?;
                }
            }
            z.last_op_date = ctx.proposed_at_ms;
            resource::save(txn, &owner, &z)?;
            Ok(ZoneResult::Inventory(z))
        }
        ZoneOp::ChangeState { uuid, event } => {
            let (owner, mut z) = resource::require::<Zone>(txn, &uuid)?;
            z.state = match event {
                ZoneStateEvent::Enable => ZoneState::Enabled,
                ZoneStateEvent::Disable => ZoneState::Disabled,
            };
            z.last_op_date = ctx.proposed_at_ms;
            resource::save(txn, &owner, &z)?;
            // Enable/disable propagates to the zone's clusters (spec 03 §2.2).
            let cluster_state = match event {
                ZoneStateEvent::Enable => crate::cluster::ClusterState::Enabled,
                ZoneStateEvent::Disable => crate::cluster::ClusterState::Disabled,
            };
            crate::cluster::cascade_zone_state(txn, ctx, &uuid, cluster_state)?;
            Ok(ZoneResult::Inventory(z))
        }
        ZoneOp::Delete { uuid } => {
            // Everything in the zone goes with it, in this same apply (spec 03 §2.2): clusters
            // (detaching their storage and networks), primary storage, L2 networks (and their
            // L3s), the backup storage attached only here, and the zone's tags.
            if resource::load::<Zone>(txn, &uuid)?.is_some() {
                crate::cluster::cascade_zone_delete(txn, ctx, &uuid)?;
                crate::primary_storage::cascade_zone_delete(txn, &uuid)?;
                crate::l2::cascade_zone_delete(txn, ctx, &uuid)?;
                crate::backup_storage::cascade_zone_delete(txn, ctx, &uuid)?;
                crate::tag::delete_for_resource(txn, &uuid)?;
            }
            resource::remove::<Zone>(txn, &uuid)?;
            Ok(ZoneResult::Deleted)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ctx;
    use crate::testing::MemTxn;

    fn admin() -> Caller {
        Caller::admin()
    }

    fn create(t: &mut MemTxn, i: u32, default: bool) -> Result<ZoneResult, ApiError> {
        apply(
            t,
            &ctx(i as u64),
            &admin(),
            ZoneOp::Create {
                uuid: format!("{i:032x}"),
                name: format!("zone-{i}"),
                description: Some("Test".into()),
                is_default: default,
            },
        )
    }

    fn code(e: ApiError) -> String {
        e.code().to_string()
    }

    #[test]
    fn lifecycle_and_inventory_shape() {
        let mut t = MemTxn::default();
        let ZoneResult::Inventory(z) = create(&mut t, 1, false).unwrap() else {
            panic!()
        };
        assert_eq!(
            serde_json::to_string(&z.inventory()).unwrap(),
            format!(
                r#"{{"uuid":"{}","name":"zone-1","description":"Test","state":"Enabled","type":"zstack","isDefault":false,"createDate":"{d}","lastOpDate":"{d}"}}"#,
                z.uuid,
                d = java_date(ctx(1).proposed_at_ms)
            )
        );
        let r = apply(
            &mut t,
            &ctx(2),
            &admin(),
            ZoneOp::ChangeState {
                uuid: z.uuid.clone(),
                event: ZoneStateEvent::Disable,
            },
        )
        .unwrap();
        assert!(matches!(
            r,
            ZoneResult::Inventory(Zone {
                state: ZoneState::Disabled,
                ..
            })
        ));
        let r = apply(
            &mut t,
            &ctx(3),
            &admin(),
            ZoneOp::Update {
                uuid: z.uuid.clone(),
                name: Some("renamed".into()),
                description: None,
                is_default: None,
            },
        )
        .unwrap();
        assert!(matches!(r, ZoneResult::Inventory(Zone { ref name, .. }) if name == "renamed"));
        assert_eq!(
            apply(
                &mut t,
                &ctx(4),
                &admin(),
                ZoneOp::Delete {
                    uuid: z.uuid.clone()
                }
            )
            .unwrap(),
            ZoneResult::Deleted
        );
        assert!(resource::load::<Zone>(&t, &z.uuid).unwrap().is_none());
        // Deleting again is still a success, as in ZStack.
        assert_eq!(
            apply(&mut t, &ctx(5), &admin(), ZoneOp::Delete { uuid: z.uuid }).unwrap(),
            ZoneResult::Deleted
        );
    }

    #[test]
    fn only_one_default_zone() {
        let mut t = MemTxn::default();
        create(&mut t, 1, true).unwrap();
        create(&mut t, 2, true).unwrap();
        let defaults = resource::find::<Zone>(&t, "isDefault", "true").unwrap();
        assert_eq!(defaults.len(), 1);
        assert_eq!(defaults[0].1.uuid, format!("{:032x}", 2));
    }

    #[test]
    fn refusals() {
        let mut t = MemTxn::default();
        create(&mut t, 1, false).unwrap();
        assert_eq!(
            code(create(&mut t, 1, false).unwrap_err()),
            "SYS.1007",
            "duplicate uuid"
        );
        let bad_name = apply(
            &mut t,
            &ctx(2),
            &admin(),
            ZoneOp::Create {
                uuid: format!("{:032x}", 9),
                name: "".into(),
                description: None,
                is_default: false,
            },
        );
        assert_eq!(code(bad_name.unwrap_err()), "SYS.1007");
        let bad_uuid = apply(
            &mut t,
            &ctx(2),
            &admin(),
            ZoneOp::Create {
                uuid: "xyz".into(),
                name: "n".into(),
                description: None,
                is_default: false,
            },
        );
        assert_eq!(code(bad_uuid.unwrap_err()), "SYS.1007");
        let missing = apply(
            &mut t,
            &ctx(3),
            &admin(),
            ZoneOp::ChangeState {
                uuid: format!("{:032x}", 5),
                event: ZoneStateEvent::Enable,
            },
        );
        assert_eq!(code(missing.unwrap_err()), "SYS.1003");
        let normal = Caller {
            account_uuid: "a".repeat(32),
            user_uuid: "a".repeat(32),
            admin: false,
        };
        let denied = apply(
            &mut t,
            &ctx(4),
            &normal,
            ZoneOp::Delete {
                uuid: format!("{:032x}", 1),
            },
        );
        assert_eq!(code(denied.unwrap_err()), "ID.1002");
        assert!(resource::load::<Zone>(&t, &format!("{:032x}", 1))
            .unwrap()
            .is_some());
    }
}
