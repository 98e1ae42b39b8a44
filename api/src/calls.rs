//! From a decoded `/zstack/api` request to what the node must do, and from the outcome back to
//! the reply or event ZStack would send. The node stays a thin shell: it resolves the session,
//! stamps time and a fresh uuid, proposes commands or runs queries, and renders what this
//! module returns.

use serde_json::json;
use serde_json::Map;
use serde_json::Value;

use crate::catalogue;
use crate::catalogue::CallKind;
use crate::catalogue::CallSpec;
use crate::management_node;
use crate::query;
use crate::query::Query;
use crate::resource;
use crate::resource::Resource;
use crate::wire::envelope::ApiRequest;
use crate::wire::errors::Code;
use crate::wire::errors::Refusal;
use crate::zone;
use crate::zone::Zone;
use crate::ApiError;
use crate::Caller;
use crate::Command;
use crate::Response;
use crate::StateTxn;

/// Values the proposing node stamps into a command.
#[derive(Debug, Clone)]
pub struct Stamp {
    /// Now, ms since the epoch.
    pub now_ms: u64,
    /// A fresh uuid (32 lowercase hex) for whatever the call creates.
    pub new_uuid: String,
    /// Random salt for hashing a password the call carries.
    pub salt: [u8; 16],
}

/// Resource families a query can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryTarget {
    /// `QueryZone`.
    Zone,
    /// `QueryManagementNode`.
    ManagementNode,
    /// `QueryGlobalConfig`.
    GlobalConfig,
    /// `QueryAccount`.
    Account,
    /// `QueryUser`.
    User,
    /// `QueryCluster`.
    Cluster,
    /// `QueryHost`.
    Host,
    /// `QueryPrimaryStorage`.
    PrimaryStorage,
    /// `QueryBackupStorage` (base inventories).
    BackupStorage,
    /// `QueryImageStoreBackupStorage`.
    ImageStoreBackupStorage,
    /// `QueryInstanceOffering`.
    InstanceOffering,
    /// `QueryDiskOffering`.
    DiskOffering,
    /// `QueryImage`.
    Image,
    /// `QueryL2Network`, `QueryL2VlanNetwork`, `QueryL2VxlanNetwork`,
    /// `QueryL2VxlanNetworkPool`, `QueryVniRange`.
    L2(crate::l2::L2Query),
    /// `QueryL3Network`, `QueryIpRange`.
    L3(crate::l3::L3Query),
    /// `QuerySystemTag`.
    SystemTag,
    /// `QueryUserTag`.
    UserTag,
    /// `QueryAudit`.
    Audit,
}

/// Sync reads that are not queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadCall {
    /// `GetFreeIp`, `CheckIpAvailability`.
    L3(crate::l3::L3Read),
}

/// Answer a [`Plan::Read`]: the reply's fields.
pub fn run_read(
    txn: &impl StateTxn,
    read: &ReadCall,
    caller: &Caller,
) -> Result<Map<String, Value>, ApiError> {
    match read {
        ReadCall::L3(r) => crate::l3::run_read(txn, r, caller),
    }
}

/// Who a login names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginTarget {
    /// `LogInByAccount`.
    Account {
        /// Account name.
        name: String,
    },
    /// `LogInByUser`.
    User {
        /// Account uuid, if sent.
        account_uuid: Option<String>,
        /// Account name, if sent.
        account_name: Option<String>,
        /// User name.
        user_name: String,
    },
}

/// What the node must do for a request.
#[derive(Debug, Clone)]
pub enum Plan {
    /// Run a query on (linearizably read) local state.
    Query {
        /// The call.
        call: &'static CallSpec,
        /// What to read.
        target: QueryTarget,
        /// The parsed query.
        query: Query,
    },
    /// Propose a command; for async calls the node answers with a job.
    Propose {
        /// The call.
        call: &'static CallSpec,
        /// The command.
        command: Box<Command>,
    },
    /// Verify credentials on this node ([`crate::identity::authenticate_account`] /
    /// [`crate::identity::authenticate_user`]), then propose the session command built by
    /// [`login_command`].
    LogIn {
        /// The call.
        call: &'static CallSpec,
        /// Who.
        target: LoginTarget,
        /// The client's password hash.
        password: String,
    },
    /// Close the named session (absent: nothing to do, still a success).
    LogOut {
        /// The call.
        call: &'static CallSpec,
        /// The session.
        session_uuid: Option<String>,
    },
    /// A sync call that reads state without being a query (`GetFreeIp`, ...).
    Read {
        /// The call.
        call: &'static CallSpec,
        /// What to read.
        read: ReadCall,
    },
    /// Like `Propose`, but the receiving node first reaches the host the command names
    /// ([`crate::host::probe_target`]); if it cannot, the call is refused and nothing is written.
    ProbeHostThenPropose {
        /// The call.
        call: &'static CallSpec,
        /// The command.
        command: Box<Command>,
    },
    /// Answer `validSession` from state; never fails.
    ValidateSession {
        /// The call.
        call: &'static CallSpec,
        /// The session.
        session_uuid: String,
    },
}

/// Calls this build implements, by short name.
pub const IMPLEMENTED: &[&str] = &[
    "CreateZone",
    "UpdateZone",
    "ChangeZoneState",
    "DeleteZone",
    "QueryZone",
    "QueryManagementNode",
    "UpdateGlobalConfig",
    "ResetGlobalConfig",
    "QueryGlobalConfig",
    "LogInByAccount",
    "LogInByUser",
    "LogOut",
    "ValidateSession",
    "RenewSession",
    "CreateAccount",
    "UpdateAccount",
    "DeleteAccount",
    "QueryAccount",
    "CreateUser",
    "UpdateUser",
    "DeleteUser",
    "QueryUser",
    // Infrastructure families.
    "CreateCluster",
    "UpdateCluster",
    "ChangeClusterState",
    "DeleteCluster",
    "QueryCluster",
    "AddKVMHost",
    "UpdateKVMHost",
    "ChangeHostState",
    "DeleteHost",
    "ReconnectHost",
    "QueryHost",
    "AddLocalPrimaryStorage",
    "AddNfsPrimaryStorage",
    "AddSharedMountPointPrimaryStorage",
    "UpdatePrimaryStorage",
    "ChangePrimaryStorageState",
    "AttachPrimaryStorageToCluster",
    "DetachPrimaryStorageFromCluster",
    "DeletePrimaryStorage",
    "QueryPrimaryStorage",
    "AddImageStoreBackupStorage",
    "UpdateBackupStorage",
    "ChangeBackupStorageState",
    "AttachBackupStorageToZone",
    "DetachBackupStorageFromZone",
    "DeleteBackupStorage",
    "QueryBackupStorage",
    "QueryImageStoreBackupStorage",
    "CreateInstanceOffering",
    "UpdateInstanceOffering",
    "ChangeInstanceOfferingState",
    "DeleteInstanceOffering",
    "QueryInstanceOffering",
    "CreateDiskOffering",
    "UpdateDiskOffering",
    "ChangeDiskOfferingState",
    "DeleteDiskOffering",
    "QueryDiskOffering",
    "AddImage",
    "UpdateImage",
    "ChangeImageState",
    "DeleteImage",
    "ExpungeImage",
    "RecoverImage",
    "QueryImage",
    "CreateL2NoVlanNetwork",
    "CreateL2VlanNetwork",
    "CreateL2VxlanNetworkPool",
    "CreateVniRange",
    "DeleteVniRange",
    "CreateL2VxlanNetwork",
    "UpdateL2Network",
    "AttachL2NetworkToCluster",
    "DetachL2NetworkFromCluster",
    "DeleteL2Network",
    "QueryL2Network",
    "QueryL2VlanNetwork",
    "QueryL2VxlanNetwork",
    "QueryL2VxlanNetworkPool",
    "QueryVniRange",
    "CreateL3Network",
    "UpdateL3Network",
    "ChangeL3NetworkState",
    "DeleteL3Network",
    "AddIpRange",
    "AddIpRangeByNetworkCidr",
    "UpdateIpRange",
    "DeleteIpRange",
    "AddDnsToL3Network",
    "RemoveDnsFromL3Network",
    "QueryL3Network",
    "QueryIpRange",
    "GetFreeIp",
    "CheckIpAvailability",
    "CreateSystemTag",
    "CreateUserTag",
    "DeleteTag",
    "QuerySystemTag",
    "QueryUserTag",
    "QueryAudit",
];

/// Whether a call needs a valid session (everything but login, logout and validation).
pub fn needs_session(call: &CallSpec) -> bool {
    !matches!(
        call.name.as_str(),
        "LogInByAccount" | "LogInByUser" | "LogOut" | "ValidateSession"
    )
}

/// The session command for a verified login.
pub fn login_command(
    session_uuid: &str,
    account_uuid: &str,
    user_uuid: &str,
    by_user: bool,
) -> Command {
    Command::Identity {
        caller: Caller::admin(),
        op: crate::identity::IdentityOp::CreateSession {
            uuid: session_uuid.to_string(),
            account_uuid: account_uuid.to_string(),
            user_uuid: user_uuid.to_string(),
            user_type: if by_user { "UserVO" } else { "AccountVO" }.to_string(),
        },
    }
}

fn string(body: &Map<String, Value>, f: &str) -> Option<String> {
    body.get(f).and_then(Value::as_str).map(str::to_string)
}

fn boolean(body: &Map<String, Value>, f: &str) -> Option<bool> {
    match body.get(f) {
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
}

fn required(body: &Map<String, Value>, f: &str, spec: &CallSpec) -> Result<String, Refusal> {
    string(body, f).ok_or_else(|| {
        Refusal::new(
            Code::InvalidArgument,
            format!(
                "field[{f}] of message[{}] is mandatory, can not be null",
                spec.class
            ),
        )
    })
}

/// Resolve the call of a request (`SYS.1008` for an unknown class, `SYS.1014` for a catalogued
/// call this build does not implement).
pub fn call_of(req: &ApiRequest) -> Result<&'static CallSpec, Refusal> {
    let spec = catalogue::catalogue().by_class(&req.class).ok_or_else(|| {
        Refusal::new(
            Code::UnknownMessage,
            format!("no service can deal with message[{}]", req.class),
        )
    })?;
    if !IMPLEMENTED.contains(&spec.name.as_str()) {
        return Err(Refusal::new(
            Code::NotSupported,
            format!(
                "API {} is not implemented by this management node",
                spec.name
            ),
        ));
    }
    Ok(spec)
}

/// Turn a request into a plan. Everything that can be checked without state is checked here,
/// so bad input never reaches the log.
pub fn plan(req: &ApiRequest, caller: &Caller, stamp: &Stamp) -> Result<Plan, Refusal> {
    let call = call_of(req)?;
    catalogue::validate_params(call, &req.body)?;
    let b = &req.body;
    match call.name.as_str() {
        "LogInByAccount" => {
            return Ok(Plan::LogIn {
                call,
                target: LoginTarget::Account {
                    name: required(b, "accountName", call)?,
                },
                password: required(b, "password", call)?,
            })
        }
        "LogInByUser" => {
            let (account_uuid, account_name) = (string(b, "accountUuid"), string(b, "accountName"));
            if account_uuid.is_none() && account_name.is_none() {
                return Err(Refusal::new(
                    Code::InvalidArgument,
                    format!(
                        "accountUuid or accountName of message[{}] is required",
                        call.class
                    ),
                ));
            }
            return Ok(Plan::LogIn {
                call,
                target: LoginTarget::User {
                    account_uuid,
                    account_name,
                    user_name: required(b, "userName", call)?,
                },
                password: required(b, "password", call)?,
            });
        }
        "LogOut" => {
            return Ok(Plan::LogOut {
                call,
                session_uuid: string(b, "sessionUuid").or_else(|| req.session_uuid.clone()),
            })
        }
        "ValidateSession" => {
            return Ok(Plan::ValidateSession {
                call,
                session_uuid: required(b, "sessionUuid", call)?,
            })
        }
        _ => {}
    }
    if let Some(read) = crate::l3::read_plan(call, b) {
        return Ok(Plan::Read {
            call,
            read: ReadCall::L3(read?),
        });
    }
    if call.is_query() {
        let target = match call.name.as_str() {
            "QueryZone" => QueryTarget::Zone,
            "QueryManagementNode" => QueryTarget::ManagementNode,
            "QueryGlobalConfig" => QueryTarget::GlobalConfig,
            "QueryAccount" => QueryTarget::Account,
            "QueryUser" => QueryTarget::User,
            "QueryCluster" => QueryTarget::Cluster,
            "QueryHost" => QueryTarget::Host,
            "QueryPrimaryStorage" => QueryTarget::PrimaryStorage,
            "QueryBackupStorage" => QueryTarget::BackupStorage,
            "QueryImageStoreBackupStorage" => QueryTarget::ImageStoreBackupStorage,
            "QueryInstanceOffering" => QueryTarget::InstanceOffering,
            "QueryDiskOffering" => QueryTarget::DiskOffering,
            "QueryImage" => QueryTarget::Image,
            "QueryL2Network" => QueryTarget::L2(crate::l2::L2Query::All),
            "QueryL2VlanNetwork" => QueryTarget::L2(crate::l2::L2Query::Vlan),
            "QueryL2VxlanNetwork" => QueryTarget::L2(crate::l2::L2Query::Vxlan),
            "QueryL2VxlanNetworkPool" => QueryTarget::L2(crate::l2::L2Query::Pool),
            "QueryVniRange" => QueryTarget::L2(crate::l2::L2Query::VniRange),
            "QueryL3Network" => QueryTarget::L3(crate::l3::L3Query::L3),
            "QueryIpRange" => QueryTarget::L3(crate::l3::L3Query::IpRange),
            "QuerySystemTag" => QueryTarget::SystemTag,
            "QueryUserTag" => QueryTarget::UserTag,
            "QueryAudit" => QueryTarget::Audit,
            other => {
                return Err(Refusal::new(
                    Code::NotSupported,
                    format!("API {other} is not implemented"),
                ))
            }
        };
        return Ok(Plan::Query {
            call,
            target,
            query: query::parse_query(&call.class, b)?,
        });
    }
    if let Some(command) = crate::host::plan(call, b, caller, &stamp.new_uuid) {
        let command = Box::new(crate::tag::with_create_tags(call, b, caller, command?)?);
        return Ok(if crate::host::PROBED_CALLS.contains(&call.name.as_str()) {
            Plan::ProbeHostThenPropose { call, command }
        } else {
            Plan::Propose { call, command }
        });
    }
    if let Some(command) = infra_plan(call, b, caller, &stamp.new_uuid) {
        return Ok(Plan::Propose {
            call,
            command: Box::new(command?),
        });
    }
    let zone = |op| Command::Zone {
        caller: caller.clone(),
        op,
    };
    let identity = |op| Command::Identity {
        caller: caller.clone(),
        op,
    };
    let hash = |f: &str| -> Result<String, Refusal> {
        crate::identity::hash_password(&required(b, f, call)?, &stamp.salt)
    };
    let hash_opt = |f: &str| -> Result<Option<String>, Refusal> {
        string(b, f)
            .map(|p| crate::identity::hash_password(&p, &stamp.salt))
            .transpose()
    };
    use crate::identity::IdentityOp;
    let command = match call.name.as_str() {
        "CreateZone" => zone(zone::ZoneOp::Create {
            uuid: string(b, "resourceUuid").unwrap_or_else(|| stamp.new_uuid.clone()),
            name: required(b, "name", call)?,
            description: string(b, "description"),
            is_default: boolean(b, "isDefault").unwrap_or(false),
        }),
        "UpdateZone" => zone(zone::ZoneOp::Update {
            uuid: required(b, "uuid", call)?,
            name: string(b, "name"),
            description: string(b, "description"),
            is_default: boolean(b, "isDefault"),
        }),
        "ChangeZoneState" => zone(zone::ZoneOp::ChangeState {
            uuid: required(b, "uuid", call)?,
            event: match required(b, "stateEvent", call)?.as_str() {
                "enable" => zone::ZoneStateEvent::Enable,
                _ => zone::ZoneStateEvent::Disable,
            },
        }),
        "DeleteZone" => zone(zone::ZoneOp::Delete {
            uuid: required(b, "uuid", call)?,
        }),
        "UpdateGlobalConfig" => Command::GlobalConfig {
            caller: caller.clone(),
            op: crate::global_config::GlobalConfigOp::Update {
                category: required(b, "category", call)?,
                name: required(b, "name", call)?,
                // ZStack accepts a missing value as the empty string, which then fails checks.
                value: match b.get("value") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(v) => v.to_string(),
                },
            },
        },
        "ResetGlobalConfig" => Command::GlobalConfig {
            caller: caller.clone(),
            op: crate::global_config::GlobalConfigOp::ResetAll,
        },
        "RenewSession" => identity(IdentityOp::RenewSession {
            uuid: required(b, "sessionUuid", call)?,
            duration_s: match b.get("duration") {
                None | Some(Value::Null) => None,
                Some(v) => Some(
                    v.as_u64()
                        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                        .ok_or_else(|| {
                            Refusal::new(
                                Code::InvalidArgument,
                                format!("duration {v} is not a number of seconds"),
                            )
                        })?,
                ),
            },
        }),
        "CreateAccount" => {
            if string(b, "type").as_deref() == Some("SystemAdmin") {
                return Err(Refusal::new(
                    Code::InvalidArgument,
                    "only one SystemAdmin account exists: the built-in admin",
                ));
            }
            identity(IdentityOp::CreateAccount {
                uuid: string(b, "resourceUuid").unwrap_or_else(|| stamp.new_uuid.clone()),
                name: required(b, "name", call)?,
                password: hash("password")?,
                description: string(b, "description"),
            })
        }
        "UpdateAccount" => identity(IdentityOp::UpdateAccount {
            uuid: required(b, "uuid", call)?,
            name: string(b, "name"),
            password: hash_opt("password")?,
            description: string(b, "description"),
        }),
        "DeleteAccount" => identity(IdentityOp::DeleteAccount {
            uuid: required(b, "uuid", call)?,
        }),
        "CreateUser" => identity(IdentityOp::CreateUser {
            uuid: string(b, "resourceUuid").unwrap_or_else(|| stamp.new_uuid.clone()),
            name: required(b, "name", call)?,
            password: hash("password")?,
            description: string(b, "description"),
        }),
        "UpdateUser" => identity(IdentityOp::UpdateUser {
            uuid: required(b, "uuid", call)?,
            name: string(b, "name"),
            password: hash_opt("password")?,
            description: string(b, "description"),
        }),
        "DeleteUser" => identity(IdentityOp::DeleteUser {
            uuid: required(b, "uuid", call)?,
        }),
        other => {
            return Err(Refusal::new(
                Code::NotSupported,
                format!("API {other} is not implemented"),
            ))
        }
    };
    Ok(Plan::Propose {
        call,
        command: Box::new(command),
    })
}

/// The infrastructure families' request → command mappings, tried in turn.
fn infra_plan(
    call: &CallSpec,
    b: &Map<String, Value>,
    caller: &Caller,
    new_uuid: &str,
) -> Option<Result<Command, Refusal>> {
    crate::cluster::plan(call, b, caller, new_uuid)
        .or_else(|| crate::primary_storage::plan(call, b, caller, new_uuid))
        .or_else(|| crate::backup_storage::plan(call, b, caller, new_uuid))
        .or_else(|| crate::offering::plan(call, b, caller, new_uuid))
        .or_else(|| crate::image::plan(call, b, caller, new_uuid))
        .or_else(|| crate::l2::plan(call, b, caller, new_uuid))
        .or_else(|| crate::l3::plan(call, b, caller, new_uuid))
        .or_else(|| crate::tag::plan(call, b, caller, new_uuid))
        .map(|r| r.and_then(|c| crate::tag::with_create_tags(call, b, caller, c)))
}

/// Run a planned query and build the reply fields (`inventories`, `total`).
pub fn run_query(
    txn: &impl StateTxn,
    target: QueryTarget,
    q: &Query,
    caller: &Caller,
) -> Result<Map<String, Value>, ApiError> {
    let out = match target {
        QueryTarget::Zone => resource::query::<Zone>(txn, q, |owner| caller.can_see(owner))?,
        QueryTarget::ManagementNode => {
            // Management nodes are infrastructure every session may list (zstack-ctl does).
            let rows = management_node::list(txn)?
                .into_iter()
                .map(|mn| mn.inventory());
            query::run(q, management_node::FIELDS, rows)?
        }
        QueryTarget::GlobalConfig => query::run(
            q,
            crate::global_config::FIELDS,
            crate::global_config::inventories(txn)?,
        )?,
        // A normal account sees itself; the admin sees all.
        QueryTarget::Account => {
            resource::query::<crate::identity::Account>(txn, q, |owner| caller.can_see(owner))?
        }
        QueryTarget::User => {
            resource::query::<crate::identity::User>(txn, q, |owner| caller.can_see(owner))?
        }
        QueryTarget::Cluster => {
            resource::query::<crate::cluster::Cluster>(txn, q, |o| caller.can_see(o))?
        }
        // Hosts are admin resources: a normal account sees none (as with clusters).
        QueryTarget::Host => resource::query::<crate::host::Host>(txn, q, |o| caller.can_see(o))?,
        QueryTarget::PrimaryStorage => {
            resource::query::<crate::primary_storage::PrimaryStorage>(txn, q, |o| {
                caller.can_see(o)
            })?
        }
        // Every session may list backup storage (`account.api.control` default, spec 05).
        QueryTarget::BackupStorage => {
            resource::query::<crate::backup_storage::BackupStorage>(txn, q, |_| true)?
        }
        QueryTarget::ImageStoreBackupStorage => {
            resource::query::<crate::backup_storage::ImageStoreView>(txn, q, |o| caller.can_see(o))?
        }
        QueryTarget::InstanceOffering => {
            resource::query::<crate::offering::InstanceOffering>(txn, q, |o| caller.can_see(o))?
        }
        QueryTarget::DiskOffering => {
            resource::query::<crate::offering::DiskOffering>(txn, q, |o| caller.can_see(o))?
        }
        QueryTarget::Image => resource::query_filtered::<crate::image::Image>(
            txn,
            q,
            |o, _| caller.can_see(o),
            |img, inv| {
                *inv = crate::image::full_inventory(txn, img)?;
                Ok(())
            },
        )?,
        QueryTarget::L2(which) => crate::l2::query(txn, which, q, caller)?,
        QueryTarget::L3(which) => crate::l3::query(txn, which, q, caller)?,
        QueryTarget::SystemTag => {
            resource::query::<crate::tag::SystemTag>(txn, q, |o| caller.can_see(o))?
        }
        QueryTarget::UserTag => {
            resource::query::<crate::tag::UserTag>(txn, q, |o| caller.can_see(o))?
        }
        QueryTarget::Audit => crate::audit::query(txn, q, caller)?,
    };
    let mut m = Map::new();
    if let Some(inv) = out.inventories {
        m.insert("inventories".into(), Value::Array(inv));
    }
    if let Some(t) = out.total {
        m.insert("total".into(), json!(t));
    }
    Ok(m)
}

/// The reply/event fields for a command's response (before `success` is appended).
pub fn reply_fields(resp: &Response) -> Result<Map<String, Value>, Refusal> {
    let mut m = Map::new();
    match resp {
        Response::Zone(zone::ZoneResult::Inventory(z)) => {
            m.insert("inventory".into(), z.inventory());
        }
        Response::Zone(zone::ZoneResult::Deleted) => {}
        Response::GlobalConfig(crate::global_config::GlobalConfigResult::Inventory(inv)) => {
            m.insert("inventory".into(), inv.clone());
        }
        Response::Identity(crate::identity::IdentityResult::Account(a)) => {
            m.insert("inventory".into(), a.inventory());
        }
        Response::Identity(crate::identity::IdentityResult::User(u)) => {
            m.insert("inventory".into(), u.inventory());
        }
        Response::Identity(crate::identity::IdentityResult::Session(s)) => {
            m.insert("inventory".into(), s.inventory());
        }
        Response::GlobalConfig(crate::global_config::GlobalConfigResult::Reset)
        | Response::Identity(
            crate::identity::IdentityResult::Done | crate::identity::IdentityResult::Expired(_),
        )
        | Response::Job(_)
        | Response::Audit(_) => {}
        Response::Refused(e) => return Err(refusal_of(e)),
        Response::Kv(_) | Response::ManagementNode(_) => {}
        Response::Cluster(r) => insert_inventory(&mut m, r.inventory()),
        Response::Host(r) => insert_inventory(&mut m, r.inventory()),
        Response::PrimaryStorage(r) => insert_inventory(&mut m, r.inventory()),
        Response::BackupStorage(r) => insert_inventory(&mut m, r.inventory()),
        Response::Offering(r) => insert_inventory(&mut m, r.inventory()),
        Response::Image(r) => insert_inventory(&mut m, r.inventory()),
        Response::L2(r) => insert_inventory(&mut m, r.inventory()),
        Response::L3(r) => insert_inventory(&mut m, r.inventory()),
        Response::Tag(r) => insert_inventory(&mut m, r.inventory()),
    }
    Ok(m)
}

fn insert_inventory(m: &mut Map<String, Value>, inv: Option<Value>) {
    if let Some(inv) = inv {
        m.insert("inventory".into(), inv);
    }
}

/// The wire refusal for a domain error.
pub fn refusal_of(e: &ApiError) -> Refusal {
    match e {
        ApiError::Refused(r) => r.clone(),
        ApiError::InvalidArgument(d) => Refusal::new(Code::InvalidArgument, d.clone()),
        ApiError::NotFound { kind, id } => Refusal::new(
            Code::ResourceNotFound,
            format!("resource[uuid:{id}, type:{kind}VO] not found"),
        ),
        ApiError::Corrupt { .. } | ApiError::State(_) => {
            Refusal::new(Code::Internal, e.to_string())
        }
    }
}

/// Class of the envelope a refusal is sent in: the call's own reply class once the call is
/// known and its handler ran, else ZStack's generic `APIReply`/`APIEvent`.
pub fn generic_class(kind: CallKind) -> &'static str {
    match kind {
        CallKind::Sync => crate::wire::envelope::GENERIC_REPLY,
        CallKind::Async => crate::wire::envelope::GENERIC_EVENT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ctx;
    use crate::testing::MemTxn;
    use crate::wire::envelope::decode_request;

    fn stamp() -> Stamp {
        Stamp {
            now_ms: 1_795_593_714_000,
            new_uuid: "f52fe55b64094ceb99b3893a238c4931".into(),
            salt: *b"0123456789abcdef",
        }
    }

    fn req(s: &str) -> ApiRequest {
        decode_request(s.as_bytes()).unwrap()
    }

    #[test]
    fn create_then_query_through_the_wire_shapes() {
        let mut t = MemTxn::default();
        let r = req(
            r#"{"org.zstack.header.zone.APICreateZoneMsg":{"name":"Zone1","description":"Test","session":{"uuid":"s"}}}"#,
        );
        let Plan::Propose { call, command } = plan(&r, &Caller::admin(), &stamp()).unwrap() else {
            panic!()
        };
        assert_eq!(call.kind, CallKind::Async);
        let resp = crate::apply(&mut t, &ctx(1), *command).unwrap();
        let fields = reply_fields(&resp).unwrap();
        assert_eq!(
            fields["inventory"]["uuid"],
            "f52fe55b64094ceb99b3893a238c4931"
        );
        assert_eq!(fields["inventory"]["type"], "zstack");

        let q = req(
            r#"{"org.zstack.header.zone.APIQueryZoneMsg":{"conditions":[{"name":"name","op":"=","value":"zone1"}],"replyWithCount":true}}"#,
        );
        let Plan::Query { target, query, .. } = plan(&q, &Caller::admin(), &stamp()).unwrap()
        else {
            panic!()
        };
        let m = run_query(&t, target, &query, &Caller::admin()).unwrap();
        assert_eq!(m["total"], 1);
        assert_eq!(m["inventories"][0]["name"], "Zone1");
        // A normal account sees none of the admin's zones.
        let other = Caller {
            account_uuid: "b".repeat(32),
            user_uuid: "b".repeat(32),
            admin: false,
        };
        let m = run_query(&t, target, &query, &other).unwrap();
        assert_eq!(m["total"], 0);
    }

    #[test]
    fn refusals_before_anything_is_proposed() {
        let admin = Caller::admin();
        let e = plan(&req(r#"{"org.zstack.Foo":{}}"#), &admin, &stamp()).unwrap_err();
        assert_eq!(e.code, Code::UnknownMessage);
        let e = plan(
            &req(r#"{"org.zstack.header.vm.APIStartVmInstanceMsg":{"uuid":"x"}}"#),
            &admin,
            &stamp(),
        )
        .unwrap_err();
        assert_eq!(e.code, Code::NotSupported);
        let e = plan(
            &req(r#"{"org.zstack.header.zone.APICreateZoneMsg":{}}"#),
            &admin,
            &stamp(),
        )
        .unwrap_err();
        assert_eq!(
            (e.code, e.details.contains("field[name]")),
            (Code::InvalidArgument, true)
        );
        let e = plan(&req(r#"{"org.zstack.header.zone.APIChangeZoneStateMsg":{"uuid":"u","stateEvent":"boom"}}"#), &admin, &stamp()).unwrap_err();
        assert_eq!(e.code, Code::InvalidArgument);
        let e = plan(&req(r#"{"org.zstack.header.zone.APIQueryZoneMsg":{"conditions":[{"name":"name","op":"~=","value":"x"}]}}"#), &admin, &stamp()).unwrap_err();
        assert_eq!(e.details, "unknown QueryOp type[~=]");
    }

    #[test]
    fn implemented_calls_exist_in_the_catalogue() {
        for name in IMPLEMENTED {
            assert!(catalogue::catalogue().by_name(name).is_some(), "{name}");
        }
    }
}
