//! Backup storage (spec 03 §10): ImageStore image servers (decision 7), attached to zones
//! (many-to-many). Deleting a BS removes records only (spec 03 gaps #2): the BS and the images
//! that live nowhere else; the bits on disk stay.

use serde::Deserialize;
use serde::Serialize;
use serde_json::json;
use serde_json::Value;

use crate::catalogue::CallSpec;
use crate::params;
use crate::params::Body;
use crate::resource;
use crate::resource::date;
use crate::resource::Field;
use crate::resource::Resource;
use crate::validate;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::Command;
use crate::IntoCommand;
use crate::StateTxn;

/// The backup-storage table.
pub const TABLE: &str = "backup_storage";
/// The ImageStore type name.
pub const IMAGE_STORE: &str = "ImageStoreBackupStorage";
/// Longest url (`VARCHAR(2048)`).
pub const MAX_URL: usize = 2048;

/// `Enabled` or `Disabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BsState {
    /// In use.
    Enabled,
    /// Not used for new downloads or uploads.
    Disabled,
}

/// Connection status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BsStatus {
    /// Not yet confirmed.
    Connecting,
    /// Reachable.
    Connected,
    /// Not reachable.
    Disconnected,
}

/// A backup-storage record (ImageStore).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupStorage {
    /// 32 hex chars.
    pub uuid: String,
    /// Display name.
    pub name: String,
    /// Image directory on the server, e.g. `/zstack_bs`.
    pub url: String,
    /// Free text.
    pub description: Option<String>,
    /// Bytes.
    pub total_capacity: u64,
    /// Bytes.
    pub available_capacity: u64,
    /// Enabled or Disabled.
    pub state: BsState,
    /// Connection status.
    pub status: BsStatus,
    /// Creation time, ms.
    pub create_date: u64,
    /// Last change, ms.
    pub last_op_date: u64,
    /// Zones it is attached to, in attach order.
    pub attached_zone_uuids: Vec<String>,
    /// Server address.
    pub hostname: String,
    /// SSH user.
    pub username: String,
    /// SSH password (never shown: `@APINoSee`).
    pub password: String,
    /// SSH port.
    pub ssh_port: u16,
}

impl Resource for BackupStorage {
    const KIND: &'static str = "BackupStorage";
    const TABLE: &'static str = TABLE;
    /// The base `BackupStorageInventory` (what `QueryBackupStorage` shows).
    const INVENTORY: &'static [Field<Self>] = &[
        Field::new("uuid", |r| json!(r.uuid)),
        Field::new("name", |r| json!(r.name)),
        Field::new("url", |r| json!(r.url)),
        Field::maybe("description", |r| r.description.as_ref().map(|x| json!(x))),
        Field::new("totalCapacity", |r| json!(r.total_capacity)),
        Field::new("availableCapacity", |r| json!(r.available_capacity)),
        Field::new("type", |_| json!(IMAGE_STORE)),
        Field::new("state", |r| json!(r.state)),
        Field::new("status", |r| json!(r.status)),
        Field::new("createDate", |r| date(r.create_date)),
        Field::new("lastOpDate", |r| date(r.last_op_date)),
        Field::new("attachedZoneUuids", |r| json!(r.attached_zone_uuids)),
    ];
    const INDEXED: &'static [&'static str] = &["name", "state", "attachedZoneUuids"];

    fn uuid(&self) -> &str {
        &self.uuid
    }
}

/// The ImageStore view of the same table, for `QueryImageStoreBackupStorage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ImageStoreView(pub BackupStorage);

impl Resource for ImageStoreView {
    const KIND: &'static str = "ImageStoreBackupStorage";
    const TABLE: &'static str = TABLE;
    /// `ImageStoreBackupStorageInventory`: subclass fields first, then the base (spec 06 §6).
    const INVENTORY: &'static [Field<Self>] = &[
        Field::new("hostname", |r| json!(r.0.hostname)),
        Field::new("username", |r| json!(r.0.username)),
        Field::new("sshPort", |r| json!(r.0.ssh_port)),
        Field::splice(
            |r| resource::inventory(&r.0),
            resource::fields::<BackupStorage>,
        ),
    ];
    const INDEXED: &'static [&'static str] = BackupStorage::INDEXED;

    fn uuid(&self) -> &str {
        &self.0.uuid
    }
}

/// State events of `ChangeBackupStorageState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BsStateEvent {
    /// → Enabled.
    Enable,
    /// → Disabled.
    Disable,
}

/// Backup-storage commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackupStorageOp {
    /// `AddImageStoreBackupStorage`.
    AddImageStore {
        /// New uuid.
        uuid: String,
        /// Name.
        name: String,
        /// Description.
        description: Option<String>,
        /// Image directory.
        url: String,
        /// Server address.
        hostname: String,
        /// SSH user.
        username: String,
        /// SSH password.
        password: String,
        /// SSH port (default 22).
        ssh_port: i64,
    },
    /// `UpdateBackupStorage`.
    Update {
        /// BS.
        uuid: String,
        /// New name.
        name: Option<String>,
        /// New description.
        description: Option<String>,
    },
    /// `ChangeBackupStorageState`.
    ChangeState {
        /// BS.
        uuid: String,
        /// Event.
        event: BsStateEvent,
    },
    /// `AttachBackupStorageToZone`.
    AttachToZone {
        /// BS.
        uuid: String,
        /// Zone.
        zone_uuid: String,
    },
    /// `DetachBackupStorageFromZone`.
    DetachFromZone {
        /// BS.
        uuid: String,
        /// Zone.
        zone_uuid: String,
    },
    /// `DeleteBackupStorage` (records only).
    Delete {
        /// BS.
        uuid: String,
    },
    /// Internal (connection duty): capacity and status as the server reports them.
    Report {
        /// BS.
        uuid: String,
        /// Bytes.
        total: u64,
        /// Bytes.
        available: u64,
        /// Status.
        status: BsStatus,
    },
}

/// Answer of a backup-storage command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackupStorageResult {
    /// The BS after the change.
    Inventory(Box<BackupStorage>),
    /// Deleted (or already absent).
    Deleted,
}

impl BackupStorageResult {
    /// The `inventory` of the reply, if any (the runtime class, ImageStore, is what Gson writes).
    pub fn inventory(&self) -> Option<Value> {
        match self {
            BackupStorageResult::Inventory(b) => {
                Some(resource::inventory(&ImageStoreView((**b).clone())))
            }
            BackupStorageResult::Deleted => None,
        }
    }
}

/// Zone deletion (spec 03 §1: "deleting a zone also deletes the BSs attached to it"): a BS
/// attached only to this zone is deleted (the relation's walk does it); one shared with other
/// zones is only detached.
fn forget_zone(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    uuid: &str,
    zone_uuid: &str,
) -> Result<bool, ApiError> {
    let Some((owner, mut b)) = resource::load::<BackupStorage>(txn, uuid)? else {
        return Ok(false);
    };
    b.attached_zone_uuids.retain(|z| z != zone_uuid);
    if b.attached_zone_uuids.is_empty() {
        return Ok(true);
    }
    b.last_op_date = ctx.proposed_at_ms;
    resource::save(txn, &owner, &b)?;
    Ok(false)
}

pub(crate) fn apply(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    op: BackupStorageOp,
) -> Result<BackupStorageResult, ApiError> {
    caller.require_admin("backup storage")?;
    let now = ctx.proposed_at_ms;
    match op {
        BackupStorageOp::AddImageStore {
            uuid,
            name,
            description,
            url,
            hostname,
            username,
            password,
            ssh_port,
        } => {
            validate::uuid("resourceUuid", &uuid)?;
            validate::name("name", &name)?;
            validate::description(description.as_deref())?;
            validate::max_len("url", &url, MAX_URL)?;
            validate::storage_path("url", &url)?;
            validate::hostname("hostname", &hostname)?;
            validate::name("username", &username)?;
            if password.is_empty() {
                return Err(validate::invalid_arg("field[password] cannot be empty"));
            }
            validate::max_len("password", &password, 255)?;
            let ssh_port = u16::try_from(ssh_port)
                .ok()
                .filter(|p| *p >= 1)
                .ok_or_else(|| {
                    validate::invalid_arg(format!(
                        "field[sshPort] must be in range of [1, 65535], got {ssh_port}"
                    ))
                })?;
            if resource::load::<BackupStorage>(txn, &uuid)?.is_some() {
                return Err(validate::duplicate_uuid("BackupStorage", &uuid));
            }
            for (_, other) in resource::list::<BackupStorage>(txn)? {
                if other.hostname == hostname && other.url == url {
                    return Err(validate::invalid_arg(format!(
                        "duplicate backup storage: backup storage[uuid:{}] already uses hostname[{hostname}] and url[{url}]",
                        other.uuid
                    )));
                }
            }
            let b = BackupStorage {
                uuid,
                name,
                url,
                description,
                total_capacity: 0,
                available_capacity: 0,
                state: BsState::Enabled,
                status: BsStatus::Connecting,
                create_date: now,
                last_op_date: now,
                attached_zone_uuids: Vec::new(),
                hostname,
                username,
                password,
                ssh_port,
            };
            resource::save(txn, &caller.account_uuid, &b)?;
            Ok(BackupStorageResult::Inventory(Box::new(b)))
        }
        BackupStorageOp::Update {
            uuid,
            name,
            description,
        } => {
            let (owner, mut b) = resource::require::<BackupStorage>(txn, &uuid)?;
            if let Some(n) = name {
                validate::name("name", &n)?;
                b.name = n;
            }
            if let Some(d) = description {
                validate::description(Some(&d))?;
                b.description = Some(d);
            }
            b.last_op_date = now;
            resource::save(txn, &owner, &b)?;
            Ok(BackupStorageResult::Inventory(Box::new(b)))
        }
        BackupStorageOp::ChangeState { uuid, event } => {
            let (owner, mut b) = resource::require::<BackupStorage>(txn, &uuid)?;
            b.state = match event {
                BsStateEvent::Enable => BsState::Enabled,
                BsStateEvent::Disable => BsState::Disabled,
            };
            b.last_op_date = now;
            resource::save(txn, &owner, &b)?;
            Ok(BackupStorageResult::Inventory(Box::new(b)))
        }
        BackupStorageOp::AttachToZone { uuid, zone_uuid } => {
            let (owner, mut b) = resource::require::<BackupStorage>(txn, &uuid)?;
            resource::require_ref(txn, "Zone", &zone_uuid)?;
            if b.attached_zone_uuids.contains(&zone_uuid) {
                return Err(validate::op_failure(format!(
                    "backup storage[uuid:{uuid}] has been attached to zone[uuid:{zone_uuid}]"
                )));
            }
            b.attached_zone_uuids.push(zone_uuid);
            b.last_op_date = now;
            resource::save(txn, &owner, &b)?;
            Ok(BackupStorageResult::Inventory(Box::new(b)))
        }
        BackupStorageOp::DetachFromZone { uuid, zone_uuid } => {
            let (owner, mut b) = resource::require::<BackupStorage>(txn, &uuid)?;
            resource::require_ref(txn, "Zone", &zone_uuid)?;
            if !b.attached_zone_uuids.contains(&zone_uuid) {
                return Err(validate::op_failure(format!(
                    "backup storage[uuid:{uuid}] is not attached to zone[uuid:{zone_uuid}]"
                )));
            }
            b.attached_zone_uuids.retain(|z| *z != zone_uuid);
            b.last_op_date = now;
            resource::save(txn, &owner, &b)?;
            Ok(BackupStorageResult::Inventory(Box::new(b)))
        }
        BackupStorageOp::Delete { uuid } => {
            // Images keep only their copies on other backup storage (their relation says so).
            crate::resource::relations::delete(txn, ctx, "BackupStorage", &uuid)?;
            Ok(BackupStorageResult::Deleted)
        }
        BackupStorageOp::Report {
            uuid,
            total,
            available,
            status,
        } => {
            let (owner, mut b) = resource::require::<BackupStorage>(txn, &uuid)?;
            if available > total {
                return Err(validate::invalid_arg(format!(
                    "capacity report for backup storage[uuid:{uuid}] has available > total"
                )));
            }
            b.total_capacity = total;
            b.available_capacity = available;
            b.status = status;
            b.last_op_date = now;
            resource::save(txn, &owner, &b)?;
            Ok(BackupStorageResult::Inventory(Box::new(b)))
        }
    }
}

/// Request → command for the backup-storage calls (`None`: not one of them).
pub fn plan(
    call: &CallSpec,
    b: &Body,
    caller: &Caller,
    new_uuid: &str,
) -> Option<Result<Command, Refusal>> {
    let zone_pair = || -> Result<(String, String), Refusal> {
        Ok((
            params::required(b, "backupStorageUuid", call)?,
            params::required(b, "zoneUuid", call)?,
        ))
    };
    let op =
        match call.name.as_str() {
            "AddImageStoreBackupStorage" => (|| {
                Ok(BackupStorageOp::AddImageStore {
                    uuid: params::new_uuid(b, new_uuid),
                    name: params::required(b, "name", call)?,
                    description: params::string(b, "description"),
                    url: params::required(b, "url", call)?,
                    hostname: params::required(b, "hostname", call)?,
                    username: params::required(b, "username", call)?,
                    password: params::required(b, "password", call)?,
                    ssh_port: params::int(b, "sshPort", call)?.unwrap_or(22),
                })
            })(),
            "UpdateBackupStorage" => {
                params::required(b, "uuid", call).map(|uuid| BackupStorageOp::Update {
                    uuid,
                    name: params::string(b, "name"),
                    description: params::string(b, "description"),
                })
            }
            "ChangeBackupStorageState" => params::required(b, "uuid", call).and_then(|uuid| {
                Ok(BackupStorageOp::ChangeState {
                    uuid,
                    event: params::state_event(
                        b,
                        call,
                        &[
                            ("enable", BsStateEvent::Enable),
                            ("disable", BsStateEvent::Disable),
                        ],
                    )?,
                })
            }),
            "AttachBackupStorageToZone" => zone_pair()
                .map(|(uuid, zone_uuid)| BackupStorageOp::AttachToZone { uuid, zone_uuid }),
            "DetachBackupStorageFromZone" => zone_pair()
                .map(|(uuid, zone_uuid)| BackupStorageOp::DetachFromZone { uuid, zone_uuid }),
            "DeleteBackupStorage" => {
                params::required(b, "uuid", call).map(|uuid| BackupStorageOp::Delete { uuid })
            }
            _ => return None,
        };
    Some(op.map(|op| op.command(caller.clone())))
}

// Every session may list backup storage (`account.api.control` default, spec 05).
fn query_base(
    txn: &dyn StateTxn,
    q: &crate::query::Query,
    _caller: &Caller,
) -> Result<crate::query::QueryOutput, ApiError> {
    resource::query::<BackupStorage>(txn, q, |_| true)
}

/// The backup-storage family.
pub struct BackupStorages;

impl crate::family::Family for BackupStorages {
    type Op = BackupStorageOp;
    type Out = BackupStorageResult;
    const DECL: crate::family::FamilyDecl = {
        use crate::family::op_plan;
        use crate::family::route;
        use crate::family::CallDecl;
        use crate::family::KindDecl;
        use crate::resource::generic;
        use crate::resource::relations::OnDelete;
        use crate::resource::relations::Relation;
        use crate::rest::Body::Action as A;
        use crate::rest::Body::None as N;
        use crate::rest::Body::Params as P;
        use crate::rest::Method::Delete as D;
        use crate::rest::Method::Get as G;
        use crate::rest::Method::Post as Po;
        use crate::rest::Method::Put as Pu;
        crate::family::FamilyDecl {
            name: "backup_storage",
            tables: &[TABLE],
            kinds: &[KindDecl {
                relations: &[Relation {
                    field: "attachedZoneUuids",
                    parent: "Zone",
                    on_delete: OnDelete::DetachOrDelete(forget_zone),
                    on_parent_state: None,
                }],
                ..KindDecl::new(
                    "BackupStorage",
                    TABLE,
                    &["BackupStorageVO", "ImageStoreBackupStorageVO"],
                )
            }],
            calls: &[
                CallDecl::new(
                    "AddImageStoreBackupStorage",
                    |p| op_plan(plan, p),
                    &[route(Po, "/v1/backup-storage/image-store", P)],
                )
                .creating("ImageStoreBackupStorageVO"),
                CallDecl::new(
                    "UpdateBackupStorage",
                    |p| op_plan(plan, p),
                    &[route(Pu, "/v1/backup-storage/{uuid}/actions", A)],
                ),
                CallDecl::new(
                    "ChangeBackupStorageState",
                    |p| op_plan(plan, p),
                    &[route(Pu, "/v1/backup-storage/{uuid}/actions", A)],
                ),
                CallDecl::new(
                    "AttachBackupStorageToZone",
                    |p| op_plan(plan, p),
                    &[route(
                        Po,
                        "/v1/zones/{zoneUuid}/backup-storage/{backupStorageUuid}",
                        P,
                    )],
                ),
                CallDecl::new(
                    "DetachBackupStorageFromZone",
                    |p| op_plan(plan, p),
                    &[route(
                        D,
                        "/v1/zones/{zoneUuid}/backup-storage/{backupStorageUuid}",
                        N,
                    )],
                ),
                CallDecl::new(
                    "DeleteBackupStorage",
                    |p| op_plan(plan, p),
                    &[route(D, "/v1/backup-storage/{uuid}", N)],
                ),
                CallDecl::new(
                    "QueryBackupStorage",
                    |p| p.query(query_base),
                    &[
                        route(G, "/v1/backup-storage", N),
                        route(G, "/v1/backup-storage/{uuid}", N),
                    ],
                ),
                CallDecl::new(
                    "QueryImageStoreBackupStorage",
                    generic::plan_query::<ImageStoreView>,
                    &[
                        route(G, "/v1/backup-storage/image-store", N),
                        route(G, "/v1/backup-storage/image-store/{uuid}", N),
                    ],
                ),
            ],
            flows: &[],
            #[cfg(test)]
            cases: cases::cases,
        }
    };

    fn apply(
        txn: &mut dyn StateTxn,
        ctx: &ApplyCtx,
        caller: &Caller,
        op: BackupStorageOp,
    ) -> Result<BackupStorageResult, ApiError> {
        apply(txn, ctx, caller, op)
    }

    fn reply(out: &BackupStorageResult) -> Result<serde_json::Map<String, Value>, Refusal> {
        crate::family::inventory_reply(out.inventory())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testing::ctx;
    use crate::testing::make_zone;
    use crate::testing::normal;
    use crate::testing::u;
    use crate::testing::MemTxn;
    use crate::wire::date::java_date;

    fn run(t: &mut MemTxn, op: BackupStorageOp) -> Result<BackupStorageResult, ApiError> {
        apply(t, &ctx(6), &Caller::admin(), op)
    }

    fn add_op(n: u32, host: &str) -> BackupStorageOp {
        BackupStorageOp::AddImageStore {
            uuid: u(n),
            name: format!("bs-{n}"),
            description: None,
            url: "/zstack_bs".into(),
            hostname: host.into(),
            username: "root".into(),
            password: "secret".into(),
            ssh_port: 22,
        }
    }

    /// Add ImageStore BS `u(n)`.
    pub fn make_bs(t: &mut MemTxn, n: u32) -> String {
        run(t, add_op(n, &format!("10.0.0.{n}"))).unwrap();
        u(n)
    }

    fn code(r: Result<BackupStorageResult, ApiError>) -> &'static str {
        r.unwrap_err().code()
    }

    #[test]
    fn lifecycle_inventory_and_zone_cascade() {
        let mut t = MemTxn::default();
        let z = make_zone(&mut t, 1);
        let z2 = make_zone(&mut t, 2);
        let r = run(&mut t, add_op(30, "172.20.0.5")).unwrap();
        let inv = r.inventory().unwrap();
        assert_eq!(
            serde_json::to_string(&inv).unwrap(),
            format!(
                r#"{{"hostname":"172.20.0.5","username":"root","sshPort":22,"uuid":"{}","name":"bs-30","url":"/zstack_bs","totalCapacity":0,"availableCapacity":0,"type":"ImageStoreBackupStorage","state":"Enabled","status":"Connecting","createDate":"{d}","lastOpDate":"{d}","attachedZoneUuids":[]}}"#,
                u(30),
                d = java_date(6000)
            )
        );
        assert!(!serde_json::to_string(&inv).unwrap().contains("secret"));
        let bs = u(30);
        let shared = make_bs(&mut t, 31);
        for (b, zz) in [(&bs, &z), (&shared, &z), (&shared, &z2)] {
            run(
                &mut t,
                BackupStorageOp::AttachToZone {
                    uuid: b.clone(),
                    zone_uuid: zz.clone(),
                },
            )
            .unwrap();
        }
        run(
            &mut t,
            BackupStorageOp::Update {
                uuid: bs.clone(),
                name: Some("n".into()),
                description: Some("d".into()),
            },
        )
        .unwrap();
        let BackupStorageResult::Inventory(b) = run(
            &mut t,
            BackupStorageOp::ChangeState {
                uuid: bs.clone(),
                event: BsStateEvent::Disable,
            },
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!((b.state, b.name.as_str()), (BsState::Disabled, "n"));
        run(
            &mut t,
            BackupStorageOp::Report {
                uuid: bs.clone(),
                total: 10,
                available: 5,
                status: BsStatus::Connected,
            },
        )
        .unwrap();
        run(
            &mut t,
            BackupStorageOp::DetachFromZone {
                uuid: shared.clone(),
                zone_uuid: z2.clone(),
            },
        )
        .unwrap();
        run(
            &mut t,
            BackupStorageOp::AttachToZone {
                uuid: shared.clone(),
                zone_uuid: z2.clone(),
            },
        )
        .unwrap();
        crate::testing::delete_zone(&mut t, 7, &z);
        let left = resource::list::<BackupStorage>(&t).unwrap();
        assert_eq!(left.len(), 1, "only the shared BS survives");
        assert_eq!(left[0].1.attached_zone_uuids, vec![z2]);
        assert_eq!(
            run(&mut t, BackupStorageOp::Delete { uuid: shared }).unwrap(),
            BackupStorageResult::Deleted
        );
        assert!(resource::list::<BackupStorage>(&t).unwrap().is_empty());
    }

    #[test]
    fn refusals_leave_state_unchanged() {
        let mut t = MemTxn::default();
        let z = make_zone(&mut t, 1);
        let bs = make_bs(&mut t, 30);
        run(
            &mut t,
            BackupStorageOp::AttachToZone {
                uuid: bs.clone(),
                zone_uuid: z.clone(),
            },
        )
        .unwrap();
        let before = t.tables.clone();
        let mut bad_port = add_op(31, "h");
        if let BackupStorageOp::AddImageStore { ssh_port, .. } = &mut bad_port {
            *ssh_port = 70000;
        }
        assert_eq!(code(run(&mut t, bad_port)), "SYS.1007");
        let mut bad_url = add_op(31, "h");
        if let BackupStorageOp::AddImageStore { url, .. } = &mut bad_url {
            *url = "/".into();
        }
        assert_eq!(code(run(&mut t, bad_url)), "SYS.1007");
        assert_eq!(code(run(&mut t, add_op(31, "bad host"))), "SYS.1007");
        assert_eq!(
            code(run(&mut t, add_op(31, "10.0.0.30"))),
            "SYS.1007",
            "duplicate"
        );
        assert_eq!(
            code(run(
                &mut t,
                BackupStorageOp::AttachToZone {
                    uuid: bs.clone(),
                    zone_uuid: z.clone()
                }
            )),
            "SYS.1006"
        );
        assert_eq!(
            code(run(
                &mut t,
                BackupStorageOp::AttachToZone {
                    uuid: bs.clone(),
                    zone_uuid: u(99)
                }
            )),
            "SYS.1003"
        );
        let z2 = u(2);
        assert_eq!(
            code(run(
                &mut t,
                BackupStorageOp::DetachFromZone {
                    uuid: bs.clone(),
                    zone_uuid: z2
                }
            )),
            "SYS.1003"
        );
        assert_eq!(
            code(run(
                &mut t,
                BackupStorageOp::ChangeState {
                    uuid: u(99),
                    event: BsStateEvent::Enable
                }
            )),
            "SYS.1003"
        );
        assert_eq!(
            code(run(
                &mut t,
                BackupStorageOp::Update {
                    uuid: bs.clone(),
                    name: Some(String::new()),
                    description: None
                }
            )),
            "SYS.1007"
        );
        assert_eq!(
            code(apply(
                &mut t,
                &ctx(6),
                &normal(),
                BackupStorageOp::Delete { uuid: bs }
            )),
            "ID.1002"
        );
        assert_eq!(t.tables, before);
        let z_other = make_zone(&mut t, 3);
        let before = t.tables.clone();
        assert_eq!(
            code(run(
                &mut t,
                BackupStorageOp::DetachFromZone {
                    uuid: u(30),
                    zone_uuid: z_other
                }
            )),
            "SYS.1006"
        );
        assert_eq!(t.tables, before);
    }
}

#[cfg(test)]
pub(crate) mod cases {
    //! Call-matrix cases of this family's calls (run by `testing::matrix`).

    use serde_json::json;

    use crate::testing::matrix::bad_query;
    use crate::testing::matrix::eq;
    use crate::testing::matrix::missing;
    use crate::testing::matrix::no;
    use crate::testing::matrix::ok;
    use crate::testing::matrix::Case;
    use crate::testing::matrix::Ids;
    use crate::testing::matrix::Parties;
    use crate::wire::errors::Code;

    /// The call-matrix cases of this family's calls.
    pub(crate) fn cases(ids: &Ids) -> Vec<Case> {
        let Parties { admin, tenant, .. } = Parties::of(ids);
        let i = ids.clone();
        let mut m = Vec::new();
        // ---- Backup storage.
        m.push(ok(
            "AddImageStoreBackupStorage",
            &admin,
            json!({"name": "bs2", "url": "/bs2", "hostname": "10.0.0.10", "username": "root", "password": "p"}),
            |h, r| {
                assert_eq!(r["inventory"]["name"], "bs2");
                assert!(r["inventory"].get("password").is_none());
                assert_eq!(
                    h.count("QueryImageStoreBackupStorage", eq("hostname", "10.0.0.10")),
                    1
                );
            },
        ));
        m.push(no(
            "AddImageStoreBackupStorage",
            &admin,
            json!({"name": "bs2", "url": "/bs2", "hostname": "10.0.0.10", "username": "root"}),
            Code::InvalidArgument,
        ));
        m.push(ok(
            "UpdateBackupStorage",
            &admin,
            json!({"uuid": i.bs, "name": "bs-renamed"}),
            |_, r| assert_eq!(r["inventory"]["name"], "bs-renamed"),
        ));
        m.push(no(
            "UpdateBackupStorage",
            &admin,
            json!({"uuid": missing(), "name": "x"}),
            Code::ResourceNotFound,
        ));
        m.push(ok(
            "ChangeBackupStorageState",
            &admin,
            json!({"uuid": i.bs, "stateEvent": "disable"}),
            |_, r| assert_eq!(r["inventory"]["state"], "Disabled"),
        ));
        m.push(no(
            "ChangeBackupStorageState",
            &tenant,
            json!({"uuid": i.bs, "stateEvent": "disable"}),
            Code::PermissionDenied,
        ));
        {
            let zone2 = i.zone2.clone();
            m.push(ok(
                "AttachBackupStorageToZone",
                &admin,
                json!({"backupStorageUuid": i.bs, "zoneUuid": i.zone2}),
                move |_, r| {
                    let zones = r["inventory"]["attachedZoneUuids"].as_array().unwrap();
                    assert!(zones.contains(&json!(zone2)), "{zones:?}");
                },
            ));
        }
        m.push(no(
            "AttachBackupStorageToZone",
            &admin,
            json!({"backupStorageUuid": i.bs, "zoneUuid": missing()}),
            Code::ResourceNotFound,
        ));
        m.push(ok(
            "DetachBackupStorageFromZone",
            &admin,
            json!({"backupStorageUuid": i.bs, "zoneUuid": i.zone}),
            |_, r| assert_eq!(r["inventory"]["attachedZoneUuids"], json!([])),
        ));
        m.push(no(
            "DetachBackupStorageFromZone",
            &tenant,
            json!({"backupStorageUuid": i.bs, "zoneUuid": i.zone}),
            Code::PermissionDenied,
        ));
        {
            let bs = i.bs.clone();
            m.push(ok(
                "DeleteBackupStorage",
                &admin,
                json!({"uuid": i.bs}),
                move |h, _| assert_eq!(h.count("QueryBackupStorage", eq("uuid", &bs)), 0),
            ));
        }
        m.push(no(
            "DeleteBackupStorage",
            &tenant,
            json!({"uuid": i.bs}),
            Code::PermissionDenied,
        ));
        {
            let bs = i.bs.clone();
            m.push(ok(
                "QueryBackupStorage",
                &tenant,
                json!({"conditions": eq("attachedZoneUuids", &i.zone)}),
                move |_, r| {
                    assert_eq!(
                        r["inventories"][0]["uuid"],
                        bs.as_str(),
                        "every session lists BS"
                    );
                    assert!(r["inventories"][0].get("hostname").is_none());
                },
            ));
        }
        m.push(no(
            "QueryBackupStorage",
            &admin,
            bad_query(),
            Code::InvalidArgument,
        ));
        m.push(ok(
            "QueryImageStoreBackupStorage",
            &admin,
            json!({"conditions": eq("hostname", "10.0.0.9")}),
            |_, r| assert_eq!(r["inventories"][0]["sshPort"], 22),
        ));
        m.push(no(
            "QueryImageStoreBackupStorage",
            &admin,
            bad_query(),
            Code::InvalidArgument,
        ));
        m
    }
}
