//! Backup-storage records, commands and their apply.

use serde::Deserialize;
use serde::Serialize;

use crate::resource;
use crate::resource::generic;
use crate::resource::generic::Attachment;
use crate::resource::generic::EnableEvent;
use crate::resource::generic::EnableState;
use crate::resource::generic::Rename;
use crate::resource::relations;
use crate::secret::Sealed;
use crate::validate;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::StateTxn;

/// The backup-storage table.
pub const TABLE: &str = "backup_storage";
/// The kind name other families use (images name the backup storage holding their copies).
pub const KIND: &str = "BackupStorage";
/// The ImageStore type name.
pub const IMAGE_STORE: &str = "ImageStoreBackupStorage";
/// Longest url (`VARCHAR(2048)`).
pub const MAX_URL: usize = 2048;

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
    /// A disabled BS takes no new downloads or uploads.
    pub state: EnableState,
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
    /// SSH password, sealed (never shown: `@APINoSee`).
    pub password: Sealed,
    /// SSH port.
    pub ssh_port: u16,
    /// Its add installed the agent over SSH (none answered at `hostname`): deleting the
    /// store removes that agent again unless it serves something else by then.
    #[serde(default)]
    pub agent_installed: bool,
}

crate::described_record!(BackupStorage);

/// A BS is attached to zones (many-to-many).
pub(super) const ZONES: Attachment<BackupStorage> = Attachment {
    what: "backup storage",
    parent: "zone",
    list: |b| &mut b.attached_zone_uuids,
};

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
        /// SSH password, sealed by the receiving node.
        password: Sealed,
        /// SSH port (default 22).
        ssh_port: i64,
    },
    /// `UpdateBackupStorage`.
    Update {
        /// BS.
        uuid: String,
        /// New name and description.
        rename: Rename,
    },
    /// `ChangeBackupStorageState`.
    ChangeState {
        /// BS.
        uuid: String,
        /// enable or disable.
        event: EnableEvent,
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
    /// `DeleteBackupStorage`: the records (the image files stay); its flow then has the
    /// agent forget the store, and removes an agent the store's add installed.
    Delete {
        /// BS.
        uuid: String,
    },
    /// Internal (connection duty): capacity and status as the server reports them; refused
    /// while the store is `Connecting` (its job's).
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
    /// `ReconnectBackupStorage`: the first step of its flow (`Connecting` until the image
    /// store answered).
    Reconnect {
        /// BS.
        uuid: String,
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

/// Whether a measurement is news: a status change, a new total, or free space moved by more
/// than 0.1 % of the disk (a live file system moves all the time; every byte is not worth a
/// commit). The image store tracker commits only news.
pub fn is_news(b: &BackupStorage, status: BsStatus, total: u64, available: u64) -> bool {
    let slack = (total / 1000).max(1 << 20);
    b.status != status
        || b.total_capacity != total
        || b.available_capacity.abs_diff(available) > slack
}

/// Zone deletion (spec 03 §1: "deleting a zone also deletes the BSs attached to it"): a BS
/// attached only to this zone is deleted (the relation's walk does it); one shared with other
/// zones is only detached.
pub(super) fn forget_zone(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    uuid: &str,
    zone_uuid: &str,
) -> Result<bool, ApiError> {
    ZONES.forget(txn, ctx, uuid, zone_uuid)
}

pub(super) fn apply(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    op: BackupStorageOp,
) -> Result<BackupStorageResult, ApiError> {
    caller.require_admin("backup storage")?;
    let now = ctx.proposed_at_ms;
    let b = match op {
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
            generic::check_fields(&uuid, &name, description.as_deref())?;
            validate::max_len("url", &url, MAX_URL)?;
            validate::storage_path("url", &url)?;
            validate::hostname("hostname", &hostname)?;
            validate::name("username", &username)?;
            password.check("password")?;
            let ssh_port = validate::ssh_port(ssh_port)?;
            resource::refuse_duplicate::<BackupStorage>(txn, &uuid)?;
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
                state: EnableState::Enabled,
                status: BsStatus::Connecting,
                create_date: now,
                last_op_date: now,
                attached_zone_uuids: Vec::new(),
                hostname,
                username,
                password,
                ssh_port,
                agent_installed: false,
            };
            resource::save(txn, &caller.account_uuid, &b)?;
            b
        }
        BackupStorageOp::Update { uuid, rename } => generic::rename(txn, ctx, &uuid, rename)?,
        BackupStorageOp::ChangeState { uuid, event } => {
            generic::modify(txn, ctx, &uuid, |_, b: &mut BackupStorage| {
                b.state = event.target();
                Ok(())
            })?
        }
        BackupStorageOp::AttachToZone { uuid, zone_uuid } => {
            generic::modify(txn, ctx, &uuid, |txn, b: &mut BackupStorage| {
                resource::require_ref(txn, "Zone", &zone_uuid)?;
                ZONES.attach(b, &zone_uuid)
            })?
        }
        BackupStorageOp::DetachFromZone { uuid, zone_uuid } => {
            generic::modify(txn, ctx, &uuid, |txn, b: &mut BackupStorage| {
                resource::require_ref(txn, "Zone", &zone_uuid)?;
                ZONES.detach(b, &zone_uuid)
            })?
        }
        BackupStorageOp::Delete { uuid } => {
            // Images keep only their copies on other backup storage (their relation says so).
            relations::delete(txn, ctx, KIND, &uuid)?;
            return Ok(BackupStorageResult::Deleted);
        }
        BackupStorageOp::Report {
            uuid,
            total,
            available,
            status,
        } => generic::modify(txn, ctx, &uuid, |_, b: &mut BackupStorage| {
            // A store being connected is its job's (AddImageStoreBackupStorage): a tracker
            // round that measured it before the job's outcome must not overwrite that.
            if b.status == BsStatus::Connecting {
                return Err(validate::op_failure(format!(
                    "backup storage[uuid:{uuid}] is being connected by its job"
                )));
            }
            if available > total {
                return Err(validate::invalid_arg(format!(
                    "capacity report for backup storage[uuid:{uuid}] has available > total"
                )));
            }
            b.total_capacity = total;
            b.available_capacity = available;
            b.status = status;
            Ok(())
        })?,
        BackupStorageOp::Reconnect { uuid } => {
            generic::modify(txn, ctx, &uuid, |_, b: &mut BackupStorage| {
                // Two jobs connecting one store would race on its outcome.
                if b.status == BsStatus::Connecting {
                    return Err(validate::op_failure(format!(
                        "backup storage[uuid:{uuid}] is being connected by another job; retry when it is Connected or Disconnected"
                    )));
                }
                b.status = BsStatus::Connecting;
                Ok(())
            })?
        }
    };
    Ok(BackupStorageResult::Inventory(Box::new(b)))
}
