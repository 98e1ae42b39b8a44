//! Test support: an in-memory [`crate::StateTxn`], and fixtures that build worlds through the
//! families' own commands (so a family's tests need not name another family's module).

pub(crate) mod harness;
pub(crate) mod matrix;

use crate::ApplyCtx;

pub use crate::mem::MemTxn;

/// A context for entry `index`.
pub fn ctx(index: u64) -> ApplyCtx {
    ApplyCtx {
        index,
        term: 1,
        proposed_at_ms: 1_000 * index,
    }
}

use crate::Caller;
use crate::IntoCommand;

/// The data key the api tests seal with (fixed bytes; nonces stay random).
pub fn key() -> std::sync::Arc<crate::secret::DataKey> {
    static KEY: std::sync::OnceLock<std::sync::Arc<crate::secret::DataKey>> =
        std::sync::OnceLock::new();
    KEY.get_or_init(|| std::sync::Arc::new(crate::secret::DataKey::from_bytes([0x5a; 32])))
        .clone()
}

/// `plain` sealed with [`key`].
pub fn sealed(plain: &str) -> crate::secret::Sealed {
    key().seal(plain)
}

/// `sealed` opened with [`key`].
pub fn opened(sealed: &crate::secret::Sealed) -> String {
    key()
        .open(sealed)
        .expect("sealed with the test key")
        .expose()
        .to_string()
}

/// Uuid `n` as 32 hex chars.
pub fn u(n: u32) -> String {
    format!("{n:032x}")
}

/// The field names of a JSON object, in order.
pub fn keys(v: &serde_json::Value) -> Vec<&str> {
    v.as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect()
}

/// A normal (non-admin) caller.
pub fn normal() -> Caller {
    Caller {
        account_uuid: "a".repeat(32),
        user_uuid: "a".repeat(32),
        admin: false,
    }
}

/// Apply `op` as the admin at entry `index`; panics if refused.
pub fn admin_apply(t: &mut MemTxn, index: u64, op: impl IntoCommand) -> crate::Response {
    let r = crate::apply(t, &ctx(index), op.command(Caller::admin())).expect("storage");
    if let crate::Response::Refused(e) = &r {
        panic!("fixture refused: {e}");
    }
    r
}

/// Set a global setting (as the admin's `UpdateGlobalConfig` would); panics if refused.
pub fn set_global_config(t: &mut MemTxn, category: &str, name: &str, value: &str) {
    admin_apply(
        t,
        1,
        crate::families::global_config::GlobalConfigOp::Update {
            category: category.into(),
            name: name.into(),
            value: value.into(),
        },
    );
}

/// The `Rename` of an `UpdateX` sending these.
pub fn rename(name: Option<&str>, description: Option<&str>) -> crate::resource::generic::Rename {
    crate::resource::generic::Rename {
        name: name.map(str::to_string),
        description: description.map(str::to_string),
    }
}

/// Create zone `u(n)`.
pub fn make_zone(t: &mut MemTxn, n: u32) -> String {
    admin_apply(
        t,
        1,
        crate::families::zone::ZoneOp::Create {
            uuid: u(n),
            name: format!("zone-{n}"),
            description: None,
            is_default: false,
        },
    );
    u(n)
}

/// Delete zone `z` (and everything in it).
pub fn delete_zone(t: &mut MemTxn, index: u64, z: &str) {
    admin_apply(
        t,
        index,
        crate::families::zone::ZoneOp::Delete { uuid: z.into() },
    );
}

/// Disable zone `z`.
pub fn disable_zone(t: &mut MemTxn, index: u64, z: &str) {
    admin_apply(
        t,
        index,
        crate::families::zone::ZoneOp::ChangeState {
            uuid: z.into(),
            event: crate::resource::generic::EnableEvent::Disable,
        },
    );
}

/// Create cluster `u(n)` in `zone`.
pub fn make_cluster(t: &mut MemTxn, n: u32, zone: &str) -> String {
    admin_apply(t, 2, cluster_create(n, zone));
    u(n)
}

/// The op creating cluster `u(n)` in `zone`.
pub fn cluster_create(n: u32, zone: &str) -> crate::families::cluster::ClusterOp {
    crate::families::cluster::ClusterOp::Create {
        uuid: u(n),
        zone_uuid: zone.into(),
        name: format!("cluster-{n}"),
        description: Some("d".into()),
        hypervisor_type: "KVM".into(),
        cluster_type: None,
        architecture: None,
    }
}

/// A copy of cluster `c` as `uuid` of another hypervisor type (`CreateCluster` makes KVM
/// clusters only); returns `uuid`.
pub fn copy_cluster(t: &mut MemTxn, c: &str, uuid: &str, hypervisor: &str) -> String {
    use crate::families::cluster::Cluster;
    let (owner, mut other) = crate::resource::require::<Cluster>(t, c).expect("cluster");
    other.uuid = uuid.into();
    other.hypervisor_type = hypervisor.into();
    crate::resource::save(t, &owner, &other).expect("save");
    uuid.into()
}

/// Every user tag.
pub fn user_tags(t: &MemTxn) -> Vec<crate::families::tag::UserTag> {
    crate::resource::list::<crate::families::tag::UserTag>(t)
        .expect("user tags")
        .into_iter()
        .map(|(_, tag)| tag)
        .collect()
}

/// Whether `c` is a create carrying its `systemTags`/`userTags`.
pub fn is_tagged_create(c: &crate::Command) -> bool {
    matches!(c, crate::Command::Tag(t) if matches!(*t.op, crate::families::tag::TagOp::Tagged { .. }))
}

/// Delete cluster `c`.
pub fn delete_cluster(t: &mut MemTxn, index: u64, c: &str) {
    admin_apply(
        t,
        index,
        crate::families::cluster::ClusterOp::Delete { uuid: c.into() },
    );
}

/// Add ImageStore backup storage `u(n)` (host `10.0.0.<n>`).
pub fn make_bs(t: &mut MemTxn, n: u32) -> String {
    admin_apply(
        t,
        6,
        crate::families::backup_storage::BackupStorageOp::AddImageStore {
            uuid: u(n),
            name: format!("bs-{n}"),
            description: None,
            url: "/zstack_bs".into(),
            hostname: format!("10.0.0.{n}"),
            username: "root".into(),
            password: sealed("secret"),
            ssh_port: 22,
        },
    );
    u(n)
}

/// Enable or disable backup storage `bs`.
pub fn change_bs_state(
    t: &mut MemTxn,
    index: u64,
    bs: &str,
    event: crate::resource::generic::EnableEvent,
) {
    admin_apply(
        t,
        index,
        crate::families::backup_storage::BackupStorageOp::ChangeState {
            uuid: bs.into(),
            event,
        },
    );
}

/// Delete backup storage `bs` (and the images kept nowhere else).
pub fn delete_bs(t: &mut MemTxn, index: u64, bs: &str) {
    admin_apply(
        t,
        index,
        crate::families::backup_storage::BackupStorageOp::Delete { uuid: bs.into() },
    );
}

/// The common fields of L2 `u(n)` (named `l2-<n>`) on `nic` in `zone`.
pub fn l2_common(n: u32, zone: &str, nic: &str) -> crate::families::l2::L2Common {
    crate::families::l2::L2Common {
        uuid: u(n),
        name: format!("l2-{n}"),
        description: None,
        zone_uuid: Some(zone.into()),
        physical_interface: Some(nic.into()),
        v_switch_type: None,
    }
}

/// Create NoVlan L2 `u(n)` on `nic` in `zone`.
pub fn make_novlan(t: &mut MemTxn, n: u32, zone: &str, nic: &str) -> String {
    admin_apply(
        t,
        20,
        crate::families::l2::L2Op::CreateNoVlan(l2_common(n, zone, nic)),
    );
    u(n)
}

/// Delete L2 `l2` (and what sits on it).
pub fn delete_l2(t: &mut MemTxn, index: u64, l2: &str) {
    admin_apply(
        t,
        index,
        crate::families::l2::L2Op::Delete { uuid: l2.into() },
    );
}

/// What the host tracker commits when host `uuid` answers (`true`: Connected) or stops
/// answering (`false`: Disconnected); panics if refused.
pub fn track_host(t: &mut MemTxn, uuid: &str, connected: bool) {
    use crate::families::host::HostStatus;
    admin_apply(
        t,
        90,
        crate::families::host::HostOp::Track {
            uuid: uuid.into(),
            status: if connected {
                HostStatus::Connected
            } else {
                HostStatus::Disconnected
            },
            facts: None,
        },
    );
}
