//! Accounts, users and sessions (spec 05 §1, spec 06 §2, spec decision 2).
//!
//! Clients send passwords as the SHA-512 hex of the clear text; the proposing node hashes that
//! again with argon2 (a random salt it draws) and puts only the PHC string in the command, so
//! nothing in the log or the state can be replayed as a password. Login is verified on the node
//! that receives it (argon2 is pure computation), and a successful login proposes a session.

use argon2::password_hash::PasswordHash;
use argon2::password_hash::PasswordHasher;
use argon2::password_hash::PasswordVerifier;
use argon2::password_hash::SaltString;
use argon2::Algorithm;
use argon2::Argon2;
use argon2::Params;
use argon2::Version;
use serde::Deserialize;
use serde::Serialize;
use serde_json::json;
use serde_json::Value;

use crate::global_config;
use crate::resource;
use crate::resource::date;
use crate::resource::Field;
use crate::resource::Resource;
use crate::validate;
use crate::validate::refuse;
use crate::wire::date::java_date;
use crate::wire::errors::Code;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::StateTxn;
use crate::ADMIN_ACCOUNT_UUID;

/// Account table.
pub const ACCOUNT_TABLE: &str = "account";
/// User table.
pub const USER_TABLE: &str = "user";
/// Session table.
pub const SESSION_TABLE: &str = "session";
/// The admin's default password hash: SHA-512 of `password`, what clients send.
pub const DEFAULT_ADMIN_PASSWORD_SHA512: &str = "b109f3bbbc244eb82441917ed06d618b9008dd09b3befd1b5e07394c706a8bb980b1d7785e5976ec049b46df5f1326af5a2ea6d103fd07c95385ffab0cacbc86";

fn hasher() -> Argon2<'static> {
    // 8 MiB, 2 passes: the input is already a SHA-512 of the password, so the work factor only
    // has to make offline guessing of weak passwords slow, not stretch raw input.
    let params = Params::new(8 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hash what the client sent (its SHA-512 hex) with argon2id and `salt` (≥ 8 random bytes drawn
/// by the proposing node). Returns the PHC string to store.
pub fn hash_password(client_hash: &str, salt: &[u8]) -> Result<String, Refusal> {
    let salt = SaltString::encode_b64(salt)
        .map_err(|e| Refusal::new(Code::Internal, format!("bad salt: {e}")))?;
    hasher()
        .hash_password(client_hash.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Refusal::new(Code::Internal, format!("password hashing failed: {e}")))
}

/// Whether `client_hash` matches a stored PHC string.
pub fn verify_password(client_hash: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .is_ok_and(|h| hasher().verify_password(client_hash.as_bytes(), &h).is_ok())
}

/// `SystemAdmin` or `Normal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountType {
    /// The admin.
    SystemAdmin,
    /// Any other account.
    Normal,
}

/// An account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// 32 hex.
    pub uuid: String,
    /// Globally unique name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Kind.
    pub account_type: AccountType,
    /// argon2 PHC of the client's SHA-512; never shown.
    pub password: String,
    /// Created, ms.
    pub create_date: u64,
    /// Changed, ms.
    pub last_op_date: u64,
}

impl Resource for Account {
    const KIND: &'static str = "Account";
    const TABLE: &'static str = ACCOUNT_TABLE;
    const INVENTORY: &'static [Field<Self>] = &[
        Field::new("uuid", |r| json!(r.uuid)),
        Field::new("name", |r| json!(r.name)),
        Field::maybe("description", |r| r.description.as_ref().map(|x| json!(x))),
        Field::new("type", |r| json!(r.account_type)),
        Field::new("createDate", |r| date(r.create_date)),
        Field::new("lastOpDate", |r| date(r.last_op_date)),
    ];
    const INDEXED: &'static [&'static str] = &["name"];
    fn uuid(&self) -> &str {
        &self.uuid
    }
}

/// A user of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// 32 hex.
    pub uuid: String,
    /// Owning account.
    pub account_uuid: String,
    /// Unique within the account.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// argon2 PHC; never shown.
    pub password: String,
    /// Created, ms.
    pub create_date: u64,
    /// Changed, ms.
    pub last_op_date: u64,
}

impl Resource for User {
    const KIND: &'static str = "User";
    const TABLE: &'static str = USER_TABLE;
    const INVENTORY: &'static [Field<Self>] = &[
        Field::new("uuid", |r| json!(r.uuid)),
        Field::new("accountUuid", |r| json!(r.account_uuid)),
        Field::new("name", |r| json!(r.name)),
        Field::maybe("description", |r| r.description.as_ref().map(|x| json!(x))),
        Field::new("createDate", |r| date(r.create_date)),
        Field::new("lastOpDate", |r| date(r.last_op_date)),
    ];
    const INDEXED: &'static [&'static str] = &["accountUuid", "name"];
    fn uuid(&self) -> &str {
        &self.uuid
    }
}

/// A login session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// 32 hex; what clients send as `session.uuid`.
    pub uuid: String,
    /// The account.
    pub account_uuid: String,
    /// The user (the account itself for account logins).
    pub user_uuid: String,
    /// `AccountVO` or `UserVO`.
    pub user_type: String,
    /// Expiry, ms.
    pub expired_date: u64,
    /// Created, ms.
    pub create_date: u64,
}

impl Resource for Session {
    const KIND: &'static str = "Session";
    const TABLE: &'static str = SESSION_TABLE;
    const INVENTORY: &'static [Field<Self>] = &[
        Field::new("uuid", |r| json!(r.uuid)),
        Field::new("accountUuid", |r| json!(r.account_uuid)),
        Field::new("userUuid", |r| json!(r.user_uuid)),
        Field::new("userType", |r| json!(r.user_type)),
        Field::new("expiredDate", |r| json!(java_date(r.expired_date))),
        Field::new("createDate", |r| json!(java_date(r.create_date))),
    ];
    const INDEXED: &'static [&'static str] = &["userUuid"];
    fn uuid(&self) -> &str {
        &self.uuid
    }
}

/// Identity commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdentityOp {
    /// Create the built-in admin if it does not exist (cluster bootstrap; idempotent).
    EnsureAdmin {
        /// PHC of the default password.
        password: String,
    },
    /// Restore the admin's password (`zsctl reset-password`).
    ResetAdminPassword {
        /// PHC of the new password.
        password: String,
    },
    /// `CreateAccount`.
    CreateAccount {
        /// New uuid.
        uuid: String,
        /// Name.
        name: String,
        /// PHC.
        password: String,
        /// Description.
        description: Option<String>,
    },
    /// `UpdateAccount`.
    UpdateAccount {
        /// Account.
        uuid: String,
        /// New name.
        name: Option<String>,
        /// New PHC.
        password: Option<String>,
        /// New description.
        description: Option<String>,
    },
    /// `DeleteAccount`: the account and everything it owns.
    DeleteAccount {
        /// Account.
        uuid: String,
    },
    /// `CreateUser` in the caller's account.
    CreateUser {
        /// New uuid.
        uuid: String,
        /// Name.
        name: String,
        /// PHC.
        password: String,
        /// Description.
        description: Option<String>,
    },
    /// `UpdateUser`.
    UpdateUser {
        /// User.
        uuid: String,
        /// New name.
        name: Option<String>,
        /// New PHC.
        password: Option<String>,
        /// New description.
        description: Option<String>,
    },
    /// `DeleteUser` (its sessions go too).
    DeleteUser {
        /// User.
        uuid: String,
    },
    /// A verified login: open a session.
    CreateSession {
        /// New session uuid.
        uuid: String,
        /// Account.
        account_uuid: String,
        /// User (= account for account logins).
        user_uuid: String,
        /// `AccountVO` or `UserVO`.
        user_type: String,
    },
    /// Extend a session (`RenewSession`, or the sliding renewal of API calls).
    RenewSession {
        /// Session.
        uuid: String,
        /// New lifetime in seconds from now (default: `identity/session.timeout`).
        duration_s: Option<u64>,
    },
    /// `LogOut`.
    DeleteSession {
        /// Session.
        uuid: String,
    },
    /// The sweeper: delete sessions expired at the command's stamp.
    ExpireSessions,
}

/// Answer of an identity command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdentityResult {
    /// An account after the change.
    Account(Account),
    /// A user after the change.
    User(User),
    /// A session after the change.
    Session(Session),
    /// Nothing to show (deletes, logout, bootstrap that found the admin present).
    Done,
    /// Sessions removed by the sweeper.
    Expired(u64),
}

fn check_phc(phc: &str) -> Result<(), ApiError> {
    if PasswordHash::new(phc).is_ok() {
        Ok(())
    } else {
        Err(refuse(
            Code::InvalidArgument,
            "password was not hashed by the proposing node",
        ))
    }
}

fn account_name_taken(txn: &dyn StateTxn, name: &str, except: &str) -> Result<bool, ApiError> {
    Ok(resource::find::<Account>(txn, "name", name)?
        .iter()
        .any(|(_, a)| a.name == name && a.uuid != except))
}

fn user_name_taken(
    txn: &dyn StateTxn,
    account: &str,
    name: &str,
    except: &str,
) -> Result<bool, ApiError> {
    Ok(resource::find::<User>(txn, "name", name)?
        .iter()
        .any(|(_, u)| u.account_uuid == account && u.name == name && u.uuid != except))
}

fn delete_sessions_of(txn: &mut dyn StateTxn, user_uuid: &str) -> Result<(), ApiError> {
    for u in resource::uuids_where::<Session>(txn, "userUuid", user_uuid)? {
        resource::remove::<Session>(txn, &u)?;
    }
    Ok(())
}

pub(crate) fn apply(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    op: IdentityOp,
) -> Result<IdentityResult, ApiError> {
    let now = ctx.proposed_at_ms;
    match op {
        IdentityOp::EnsureAdmin { password } => {
            caller.require_admin("identity")?;
            check_phc(&password)?;
            if resource::load::<Account>(txn, ADMIN_ACCOUNT_UUID)?.is_some() {
                return Ok(IdentityResult::Done);
            }
            let admin = Account {
                uuid: ADMIN_ACCOUNT_UUID.into(),
                name: "admin".into(),
                description: None,
                account_type: AccountType::SystemAdmin,
                password,
                create_date: now,
                last_op_date: now,
            };
            resource::save(txn, ADMIN_ACCOUNT_UUID, &admin)?;
            Ok(IdentityResult::Account(admin))
        }
        IdentityOp::ResetAdminPassword { password } => {
            caller.require_admin("identity")?;
            check_phc(&password)?;
            let (owner, mut a) = resource::require::<Account>(txn, ADMIN_ACCOUNT_UUID)?;
            a.password = password;
            a.last_op_date = now;
            resource::save(txn, &owner, &a)?;
            Ok(IdentityResult::Account(a))
        }
        IdentityOp::CreateAccount {
            uuid,
            name,
            password,
            description,
        } => {
            caller.require_admin("account")?;
            validate::uuid("resourceUuid", &uuid)?;
            validate::name("name", &name)?;
            validate::description(description.as_deref())?;
            check_phc(&password)?;
            if resource::load::<Account>(txn, &uuid)?.is_some() {
                return Err(validate::duplicate_uuid("Account", &uuid));
            }
            if account_name_taken(txn, &name, &uuid)? {
                return Err(refuse(
                    Code::InvalidArgument,
                    format!("unable to create an account. An account already called {name}"),
                ));
            }
            let a = Account {
                uuid: uuid.clone(),
                name,
                description,
                account_type: AccountType::Normal,
                password,
                create_date: now,
                last_op_date: now,
            };
            // An account owns itself, so deleting it finds its own record with the rest.
            resource::save(txn, &uuid, &a)?;
            Ok(IdentityResult::Account(a))
        }
        IdentityOp::UpdateAccount {
            uuid,
            name,
            password,
            description,
        } => {
            if !caller.admin && caller.account_uuid != uuid {
                return Err(refuse(
                    Code::PermissionDenied,
                    "an account can only update itself",
                ));
            }
            let (owner, mut a) = resource::require::<Account>(txn, &uuid)?;
            if let Some(n) = name {
                validate::name("name", &n)?;
                if a.account_type == AccountType::SystemAdmin && n != a.name {
                    return Err(refuse(
                        Code::OperationFailure,
                        "the admin account cannot be renamed",
                    ));
                }
                if account_name_taken(txn, &n, &uuid)? {
                    return Err(refuse(
                        Code::InvalidArgument,
                        format!("an account already called {n}"),
                    ));
                }
                a.name = n;
            }
            if let Some(p) = password {
                check_phc(&p)?;
                a.password = p;
            }
            if let Some(d) = description {
                validate::description(Some(&d))?;
                a.description = Some(d);
            }
            a.last_op_date = now;
            resource::save(txn, &owner, &a)?;
            Ok(IdentityResult::Account(a))
        }
        IdentityOp::DeleteAccount { uuid } => {
            caller.require_admin("account")?;
            if uuid == ADMIN_ACCOUNT_UUID {
                return Err(refuse(
                    Code::OperationFailure,
                    "the admin account cannot be deleted",
                ));
            }
            if resource::load::<Account>(txn, &uuid)?.is_none() {
                return Ok(IdentityResult::Done);
            }
            // Users, sessions and every resource the account owns go with it.
            for (_, u) in resource::find::<User>(txn, "accountUuid", &uuid)? {
                delete_sessions_of(txn, &u.uuid)?;
            }
            delete_sessions_of(txn, &uuid)?;
            for (table, owned) in resource::owned_by(txn, &uuid)? {
                resource::remove_raw(txn, &table, &owned)?;
            }
            Ok(IdentityResult::Done)
        }
        IdentityOp::CreateUser {
            uuid,
            name,
            password,
            description,
        } => {
            validate::uuid("resourceUuid", &uuid)?;
            validate::name("name", &name)?;
            validate::description(description.as_deref())?;
            check_phc(&password)?;
            resource::require::<Account>(txn, &caller.account_uuid)?;
            if resource::load::<User>(txn, &uuid)?.is_some() {
                return Err(validate::duplicate_uuid("User", &uuid));
            }
            if user_name_taken(txn, &caller.account_uuid, &name, &uuid)? {
                return Err(refuse(
                    Code::InvalidArgument,
                    format!("a user called {name} already exists in this account"),
                ));
            }
            let u = User {
                uuid,
                account_uuid: caller.account_uuid.clone(),
                name,
                description,
                password,
                create_date: now,
                last_op_date: now,
            };
            resource::save(txn, &caller.account_uuid, &u)?;
            Ok(IdentityResult::User(u))
        }
        IdentityOp::UpdateUser {
            uuid,
            name,
            password,
            description,
        } => {
            let (owner, mut u) = resource::require::<User>(txn, &uuid)?;
            if !caller.admin && caller.account_uuid != u.account_uuid && caller.user_uuid != uuid {
                return Err(refuse(
                    Code::PermissionDenied,
                    "a user is managed by its own account",
                ));
            }
            if let Some(n) = name {
                validate::name("name", &n)?;
                if user_name_taken(txn, &u.account_uuid, &n, &uuid)? {
                    return Err(refuse(
                        Code::InvalidArgument,
                        format!("a user called {n} already exists in this account"),
                    ));
                }
                u.name = n;
            }
            if let Some(p) = password {
                check_phc(&p)?;
                u.password = p;
            }
            if let Some(d) = description {
                validate::description(Some(&d))?;
                u.description = Some(d);
            }
            u.last_op_date = now;
            resource::save(txn, &owner, &u)?;
            Ok(IdentityResult::User(u))
        }
        IdentityOp::DeleteUser { uuid } => {
            let Some((_, u)) = resource::load::<User>(txn, &uuid)? else {
                return Ok(IdentityResult::Done);
            };
            if !caller.admin && caller.account_uuid != u.account_uuid {
                return Err(refuse(
                    Code::PermissionDenied,
                    "a user is managed by its own account",
                ));
            }
            delete_sessions_of(txn, &uuid)?;
            resource::remove::<User>(txn, &uuid)?;
            Ok(IdentityResult::Done)
        }
        IdentityOp::CreateSession {
            uuid,
            account_uuid,
            user_uuid,
            user_type,
        } => {
            // Only the node that verified the password proposes this; it acts as the admin.
            caller.require_admin("session")?;
            validate::uuid("sessionUuid", &uuid)?;
            resource::require::<Account>(txn, &account_uuid)?;
            let timeout_ms =
                global_config::int_value(txn, "identity", "session.timeout")? as u64 * 1000;
            let max = global_config::int_value(txn, "identity", "session.maxConcurrent")? as usize;
            let unique = global_config::value(txn, "identity", "enable.unique.session")? == "true";
            let mut live = 0;
            for (_, s) in resource::find::<Session>(txn, "userUuid", &user_uuid)? {
                if s.expired_date <= now || unique {
                    resource::remove::<Session>(txn, &s.uuid)?;
                } else {
                    live += 1;
                }
            }
            if live >= max {
                return Err(refuse(
                    Code::MaxConcurrentSessionExceeded,
                    "Login sessions hit limit of max allowed concurrent login sessions",
                ));
            }
            let s = Session {
                uuid,
                account_uuid: account_uuid.clone(),
                user_uuid,
                user_type,
                expired_date: now + timeout_ms,
                create_date: now,
            };
            resource::save(txn, &account_uuid, &s)?;
            Ok(IdentityResult::Session(s))
        }
        IdentityOp::RenewSession { uuid, duration_s } => {
            let (owner, mut s) = resource::require::<Session>(txn, &uuid)?;
            if !caller.admin && caller.account_uuid != s.account_uuid {
                return Err(refuse(
                    Code::PermissionDenied,
                    "a session can be renewed by its own account",
                ));
            }
            if s.expired_date <= now {
                resource::remove::<Session>(txn, &uuid)?;
                return Err(refuse(Code::InvalidSession, "Session expired"));
            }
            let secs = match duration_s {
                Some(d) if (60..=31_536_000).contains(&d) => d,
                Some(d) => {
                    return Err(refuse(
                        Code::InvalidArgument,
                        format!("duration {d} must be in [60, 31536000] seconds"),
                    ))
                }
                None => global_config::int_value(txn, "identity", "session.timeout")? as u64,
            };
            s.expired_date = now + secs * 1000;
            resource::save(txn, &owner, &s)?;
            Ok(IdentityResult::Session(s))
        }
        IdentityOp::DeleteSession { uuid } => {
            if let Some((_, s)) = resource::load::<Session>(txn, &uuid)? {
                if !caller.admin && caller.account_uuid != s.account_uuid {
                    return Err(refuse(
                        Code::PermissionDenied,
                        "a session can be closed by its own account",
                    ));
                }
                resource::remove::<Session>(txn, &uuid)?;
            }
            Ok(IdentityResult::Done)
        }
        IdentityOp::ExpireSessions => {
            caller.require_admin("session")?;
            let mut n = 0;
            for (_, s) in resource::list::<Session>(txn)? {
                if s.expired_date <= now {
                    resource::remove::<Session>(txn, &s.uuid)?;
                    n += 1;
                }
            }
            Ok(IdentityResult::Expired(n))
        }
    }
}

/// ZStack renews a session on every authenticated call (a sliding window). Renewing is a
/// replicated write, so it is done only when less than half of `identity/session.timeout`
/// remains: an active session never expires, and a busy client costs one write per half
/// timeout instead of one per call.
pub fn needs_renewal(txn: &dyn StateTxn, session: &Session, now_ms: u64) -> Result<bool, ApiError> {
    let timeout_ms = global_config::int_value(txn, "identity", "session.timeout")? as u64 * 1000;
    Ok(session.expired_date.saturating_sub(now_ms) < timeout_ms / 2)
}

/// Check an account login; the account's uuid on success (`ID.1000` otherwise).
pub fn authenticate_account(
    txn: &dyn StateTxn,
    name: &str,
    client_hash: &str,
) -> Result<String, ApiError> {
    let found = resource::find::<Account>(txn, "name", name)?
        .into_iter()
        .find(|(_, a)| a.name == name);
    match found {
        Some((_, a)) if verify_password(client_hash, &a.password) => Ok(a.uuid),
        _ => Err(refuse(
            Code::AuthenticationError,
            "wrong account name or password",
        )),
    }
}

/// Check a user login by account name or uuid; `(account uuid, user uuid)` on success.
pub fn authenticate_user(
    txn: &dyn StateTxn,
    account_uuid: Option<&str>,
    account_name: Option<&str>,
    user_name: &str,
    client_hash: &str,
) -> Result<(String, String), ApiError> {
    let wrong = || {
        refuse(
            Code::AuthenticationError,
            "wrong account or username or password",
        )
    };
    let account = match (account_uuid, account_name) {
        (Some(u), _) => resource::load::<Account>(txn, u)?.map(|(_, a)| a),
        (None, Some(n)) => resource::find::<Account>(txn, "name", n)?
            .into_iter()
            .map(|(_, a)| a)
            .find(|a| a.name == n),
        (None, None) => {
            return Err(refuse(
                Code::InvalidArgument,
                "accountUuid or accountName is required",
            ))
        }
    }
    .ok_or_else(wrong)?;
    let user = resource::find::<User>(txn, "name", user_name)?
        .into_iter()
        .map(|(_, u)| u)
        .find(|u| u.account_uuid == account.uuid && u.name == user_name)
        .ok_or_else(wrong)?;
    if verify_password(client_hash, &user.password) {
        Ok((account.uuid, user.uuid))
    } else {
        Err(wrong())
    }
}

/// Resolve a session to its caller (`ID.1001` for a missing, unknown or expired session).
pub fn session_caller(
    txn: &dyn StateTxn,
    class: &str,
    session_uuid: Option<&str>,
    now_ms: u64,
) -> Result<(Caller, Session), ApiError> {
    let Some(uuid) = session_uuid else {
        return Err(refuse(
            Code::InvalidSession,
            format!("session of message[{class}] is null"),
        ));
    };
    let s = match resource::load::<Session>(txn, uuid)? {
        Some((_, s)) if s.expired_date > now_ms => s,
        _ => return Err(refuse(Code::InvalidSession, "Session expired")),
    };
    let caller = Caller {
        account_uuid: s.account_uuid.clone(),
        user_uuid: s.user_uuid.clone(),
        admin: s.account_uuid == ADMIN_ACCOUNT_UUID,
    };
    Ok((caller, s))
}

/// The session command for a verified login.
pub fn login_command(
    session_uuid: &str,
    account_uuid: &str,
    user_uuid: &str,
    by_user: bool,
) -> crate::Command {
    use crate::IntoCommand;
    IdentityOp::CreateSession {
        uuid: session_uuid.to_string(),
        account_uuid: account_uuid.to_string(),
        user_uuid: user_uuid.to_string(),
        user_type: if by_user { "UserVO" } else { "AccountVO" }.to_string(),
    }
    .command(Caller::admin())
}

mod plans {
    //! Identity calls on the wire: request → plan.

    use serde_json::Value;

    use super::IdentityOp;
    use crate::plan::LoginTarget;
    use crate::plan::Plan;
    use crate::plan::PlanInput;
    use crate::wire::errors::Code;
    use crate::wire::errors::Refusal;

    pub(super) fn log_in_by_account(p: &PlanInput) -> Result<Plan, Refusal> {
        Ok(Plan::LogIn {
            call: p.call,
            target: LoginTarget::Account {
                name: p.required("accountName")?,
            },
            password: p.required("password")?,
        })
    }

    pub(super) fn log_in_by_user(p: &PlanInput) -> Result<Plan, Refusal> {
        let (account_uuid, account_name) = (p.string("accountUuid"), p.string("accountName"));
        if account_uuid.is_none() && account_name.is_none() {
            return Err(Refusal::new(
                Code::InvalidArgument,
                format!(
                    "accountUuid or accountName of message[{}] is required",
                    p.call.class
                ),
            ));
        }
        Ok(Plan::LogIn {
            call: p.call,
            target: LoginTarget::User {
                account_uuid,
                account_name,
                user_name: p.required("userName")?,
            },
            password: p.required("password")?,
        })
    }

    pub(super) fn log_out(p: &PlanInput) -> Result<Plan, Refusal> {
        Ok(Plan::LogOut {
            call: p.call,
            session_uuid: p
                .string("sessionUuid")
                .or_else(|| p.session_uuid.map(str::to_string)),
        })
    }

    pub(super) fn validate_session(p: &PlanInput) -> Result<Plan, Refusal> {
        Ok(Plan::ValidateSession {
            call: p.call,
            session_uuid: p.required("sessionUuid")?,
        })
    }

    pub(super) fn renew_session(p: &PlanInput) -> Result<Plan, Refusal> {
        let duration_s = match p.body.get("duration") {
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
        };
        Ok(p.propose(IdentityOp::RenewSession {
            uuid: p.required("sessionUuid")?,
            duration_s,
        }))
    }

    fn hash(p: &PlanInput, f: &str) -> Result<String, Refusal> {
        super::hash_password(&p.required(f)?, &p.stamp.salt)
    }

    fn hash_opt(p: &PlanInput, f: &str) -> Result<Option<String>, Refusal> {
        p.string(f)
            .map(|pw| super::hash_password(&pw, &p.stamp.salt))
            .transpose()
    }

    pub(super) fn create_account(p: &PlanInput) -> Result<Plan, Refusal> {
        if p.string("type").as_deref() == Some("SystemAdmin") {
            return Err(Refusal::new(
                Code::InvalidArgument,
                "only one SystemAdmin account exists: the built-in admin",
            ));
        }
        Ok(p.propose(IdentityOp::CreateAccount {
            uuid: p.new_uuid(),
            name: p.required("name")?,
            password: hash(p, "password")?,
            description: p.string("description"),
        }))
    }

    pub(super) fn update_account(p: &PlanInput) -> Result<Plan, Refusal> {
        Ok(p.propose(IdentityOp::UpdateAccount {
            uuid: p.required("uuid")?,
            name: p.string("name"),
            password: hash_opt(p, "password")?,
            description: p.string("description"),
        }))
    }

    pub(super) fn create_user(p: &PlanInput) -> Result<Plan, Refusal> {
        Ok(p.propose(IdentityOp::CreateUser {
            uuid: p.new_uuid(),
            name: p.required("name")?,
            password: hash(p, "password")?,
            description: p.string("description"),
        }))
    }

    pub(super) fn update_user(p: &PlanInput) -> Result<Plan, Refusal> {
        Ok(p.propose(IdentityOp::UpdateUser {
            uuid: p.required("uuid")?,
            name: p.string("name"),
            password: hash_opt(p, "password")?,
            description: p.string("description"),
        }))
    }
}

/// The identity family: accounts, users, sessions.
pub struct Identities;

impl crate::family::Family for Identities {
    type Op = IdentityOp;
    type Out = IdentityResult;
    const DECL: crate::family::FamilyDecl = {
        use crate::family::route;
        use crate::family::CallDecl;
        use crate::family::KindDecl;
        use crate::family::RestRoute;
        use crate::resource::generic;
        use crate::rest::Body::Action as A;
        use crate::rest::Body::None as N;
        use crate::rest::Body::Params as P;
        use crate::rest::Method::Delete as D;
        use crate::rest::Method::Get as G;
        use crate::rest::Method::Post as Po;
        use crate::rest::Method::Put as Pu;
        crate::family::FamilyDecl {
            name: "identity",
            tables: &[ACCOUNT_TABLE, USER_TABLE, SESSION_TABLE],
            kinds: &[
                KindDecl::new("Account", ACCOUNT_TABLE, &["AccountVO"]),
                KindDecl::new("User", USER_TABLE, &["UserVO"]),
                KindDecl::new("Session", SESSION_TABLE, &[]),
            ],
            calls: &[
                CallDecl::new(
                    "LogInByAccount",
                    plans::log_in_by_account,
                    &[route(Pu, "/v1/accounts/login", A)],
                ),
                CallDecl::new(
                    "LogInByUser",
                    plans::log_in_by_user,
                    &[route(Pu, "/v1/accounts/users/login", A)],
                ),
                CallDecl::new(
                    "LogOut",
                    plans::log_out,
                    &[route(D, "/v1/accounts/sessions/{sessionUuid}", N)],
                ),
                CallDecl::new(
                    "ValidateSession",
                    plans::validate_session,
                    &[RestRoute {
                        rename: Some(("validSession", "valid")),
                        ..route(G, "/v1/accounts/sessions/{sessionUuid}/valid", N)
                    }],
                ),
                CallDecl::new(
                    "RenewSession",
                    plans::renew_session,
                    &[route(Pu, "/v1/accounts/sessions/{sessionUuid}/renew", A)],
                ),
                CallDecl::new(
                    "CreateAccount",
                    plans::create_account,
                    &[route(Po, "/v1/accounts", P)],
                ),
                CallDecl::new(
                    "UpdateAccount",
                    plans::update_account,
                    &[route(Pu, "/v1/accounts/{uuid}", A)],
                ),
                CallDecl::new(
                    "DeleteAccount",
                    |p| generic::plan_delete(p, |uuid| IdentityOp::DeleteAccount { uuid }),
                    &[route(D, "/v1/accounts/{uuid}", N)],
                ),
                CallDecl::new(
                    "QueryAccount",
                    generic::plan_query::<Account>,
                    &[
                        route(G, "/v1/accounts", N),
                        route(G, "/v1/accounts/{uuid}", N),
                    ],
                ),
                CallDecl::new(
                    "CreateUser",
                    plans::create_user,
                    &[route(Po, "/v1/accounts/users", P)],
                ),
                CallDecl::new(
                    "UpdateUser",
                    plans::update_user,
                    &[route(Pu, "/v1/accounts/users/{uuid}", A)],
                ),
                CallDecl::new(
                    "DeleteUser",
                    |p| generic::plan_delete(p, |uuid| IdentityOp::DeleteUser { uuid }),
                    &[route(D, "/v1/accounts/users/{uuid}", N)],
                ),
                CallDecl::new(
                    "QueryUser",
                    generic::plan_query::<User>,
                    &[
                        route(G, "/v1/accounts/users", N),
                        route(G, "/v1/accounts/users/{uuid}", N),
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
        op: IdentityOp,
    ) -> Result<IdentityResult, ApiError> {
        apply(txn, ctx, caller, op)
    }

    fn reply(out: &IdentityResult) -> Result<serde_json::Map<String, Value>, Refusal> {
        crate::family::inventory_reply(match out {
            IdentityResult::Account(a) => Some(resource::inventory(a)),
            IdentityResult::User(u) => Some(resource::inventory(u)),
            IdentityResult::Session(s) => Some(resource::inventory(s)),
            IdentityResult::Done | IdentityResult::Expired(_) => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ctx;
    use crate::testing::MemTxn;

    fn phc(secret: &str) -> String {
        hash_password(secret, b"0123456789abcdef").unwrap()
    }

    fn run(
        t: &mut MemTxn,
        at: u64,
        caller: &Caller,
        op: IdentityOp,
    ) -> Result<IdentityResult, ApiError> {
        apply(t, &ctx(at), caller, op)
    }

    fn boot() -> MemTxn {
        let mut t = MemTxn::default();
        run(
            &mut t,
            1,
            &Caller::admin(),
            IdentityOp::EnsureAdmin {
                password: phc(DEFAULT_ADMIN_PASSWORD_SHA512),
            },
        )
        .unwrap();
        t
    }

    fn normal(uuid: &str) -> Caller {
        Caller {
            account_uuid: uuid.into(),
            user_uuid: uuid.into(),
            admin: false,
        }
    }

    #[test]
    fn admin_bootstrap_login_and_reset() {
        let mut t = boot();
        assert_eq!(
            authenticate_account(&t, "admin", DEFAULT_ADMIN_PASSWORD_SHA512).unwrap(),
            ADMIN_ACCOUNT_UUID
        );
        assert_eq!(
            authenticate_account(&t, "admin", "wrong")
                .unwrap_err()
                .code(),
            "ID.1000"
        );
        assert_eq!(
            authenticate_account(&t, "nobody", "x").unwrap_err().code(),
            "ID.1000"
        );
        // Bootstrapping again changes nothing.
        assert_eq!(
            run(
                &mut t,
                2,
                &Caller::admin(),
                IdentityOp::EnsureAdmin {
                    password: phc("other")
                }
            )
            .unwrap(),
            IdentityResult::Done
        );
        assert!(authenticate_account(&t, "admin", DEFAULT_ADMIN_PASSWORD_SHA512).is_ok());
        run(
            &mut t,
            3,
            &Caller::admin(),
            IdentityOp::ResetAdminPassword {
                password: phc("new"),
            },
        )
        .unwrap();
        assert!(authenticate_account(&t, "admin", "new").is_ok());
        // The stored form is never the client's hash.
        let (_, a) = resource::require::<Account>(&t, ADMIN_ACCOUNT_UUID).unwrap();
        assert!(a.password.starts_with("$argon2id$") && !a.password.contains("new"));
        assert!(resource::inventory(&a).get("password").is_none());
    }

    #[test]
    fn accounts_users_and_cascading_delete() {
        let mut t = boot();
        let acct = "a".repeat(32);
        let create = IdentityOp::CreateAccount {
            uuid: acct.clone(),
            name: "tenant".into(),
            password: phc("pw"),
            description: None,
        };
        run(&mut t, 2, &Caller::admin(), create.clone()).unwrap();
        assert_eq!(
            run(&mut t, 3, &Caller::admin(), create).unwrap_err().code(),
            "SYS.1007",
            "duplicate uuid"
        );
        let dup_name = IdentityOp::CreateAccount {
            uuid: "b".repeat(32),
            name: "tenant".into(),
            password: phc("pw"),
            description: None,
        };
        assert_eq!(
            run(&mut t, 3, &Caller::admin(), dup_name)
                .unwrap_err()
                .code(),
            "SYS.1007",
            "duplicate name"
        );
        let by_normal = IdentityOp::CreateAccount {
            uuid: "c".repeat(32),
            name: "x".into(),
            password: phc("pw"),
            description: None,
        };
        assert_eq!(
            run(&mut t, 3, &normal(&acct), by_normal)
                .unwrap_err()
                .code(),
            "ID.1002"
        );

        let user = "d".repeat(32);
        run(
            &mut t,
            4,
            &normal(&acct),
            IdentityOp::CreateUser {
                uuid: user.clone(),
                name: "bob".into(),
                password: phc("bobpw"),
                description: None,
            },
        )
        .unwrap();
        let again = IdentityOp::CreateUser {
            uuid: "e".repeat(32),
            name: "bob".into(),
            password: phc("x"),
            description: None,
        };
        assert_eq!(
            run(&mut t, 5, &normal(&acct), again).unwrap_err().code(),
            "SYS.1007"
        );
        assert_eq!(
            authenticate_user(&t, None, Some("tenant"), "bob", "bobpw").unwrap(),
            (acct.clone(), user.clone())
        );
        assert_eq!(
            authenticate_user(&t, Some(&acct), None, "bob", "nope")
                .unwrap_err()
                .code(),
            "ID.1000"
        );
        let other = normal(&"f".repeat(32));
        let steal = IdentityOp::UpdateUser {
            uuid: user.clone(),
            name: None,
            password: Some(phc("mine")),
            description: None,
        };
        assert_eq!(run(&mut t, 6, &other, steal).unwrap_err().code(), "ID.1002");

        let s = IdentityOp::CreateSession {
            uuid: "9".repeat(32),
            account_uuid: acct.clone(),
            user_uuid: user.clone(),
            user_type: "UserVO".into(),
        };
        run(&mut t, 7, &Caller::admin(), s).unwrap();
        assert_eq!(
            run(
                &mut t,
                8,
                &Caller::admin(),
                IdentityOp::DeleteAccount {
                    uuid: ADMIN_ACCOUNT_UUID.into()
                }
            )
            .unwrap_err()
            .code(),
            "SYS.1006"
        );
        run(
            &mut t,
            8,
            &Caller::admin(),
            IdentityOp::DeleteAccount { uuid: acct.clone() },
        )
        .unwrap();
        assert!(resource::load::<Account>(&t, &acct).unwrap().is_none());
        assert!(resource::load::<User>(&t, &user).unwrap().is_none());
        assert!(resource::list::<Session>(&t).unwrap().is_empty());
        assert!(resource::owned_by(&t, &acct).unwrap().is_empty());
    }

    #[test]
    fn sessions_expire_renew_and_are_capped() {
        let mut t = boot();
        crate::global_config::apply(
            &mut t,
            &Caller::admin(),
            crate::global_config::GlobalConfigOp::Update {
                category: "identity".into(),
                name: "session.maxConcurrent".into(),
                value: "2".into(),
            },
        )
        .unwrap();
        let open = |t: &mut MemTxn, at: u64, n: char| {
            run(
                t,
                at,
                &Caller::admin(),
                IdentityOp::CreateSession {
                    uuid: n.to_string().repeat(32),
                    account_uuid: ADMIN_ACCOUNT_UUID.into(),
                    user_uuid: ADMIN_ACCOUNT_UUID.into(),
                    user_type: "AccountVO".into(),
                },
            )
        };
        open(&mut t, 10, '1').unwrap();
        open(&mut t, 11, '2').unwrap();
        assert_eq!(open(&mut t, 12, '3').unwrap_err().code(), "ID.1006");
        let now = ctx(12).proposed_at_ms;
        let (caller, s) = session_caller(&t, "m", Some(&"1".repeat(32)), now).unwrap();
        assert!(caller.admin);
        assert_eq!(s.expired_date, ctx(10).proposed_at_ms + 7_200_000);
        // Sliding renewal is due once less than half the timeout remains.
        assert!(!needs_renewal(&t, &s, s.expired_date - 3_600_001).unwrap());
        assert!(needs_renewal(&t, &s, s.expired_date - 3_599_999).unwrap());
        assert_eq!(
            session_caller(&t, "m", None, now).unwrap_err().to_string(),
            "ID.1001: session of message[m] is null"
        );
        assert_eq!(
            session_caller(&t, "m", Some(&"1".repeat(32)), s.expired_date)
                .unwrap_err()
                .code(),
            "ID.1001"
        );
        assert_eq!(
            session_caller(&t, "m", Some("nope"), now)
                .unwrap_err()
                .code(),
            "ID.1001"
        );
        // Renewal moves the expiry; a bad duration is refused.
        let r = run(
            &mut t,
            13,
            &Caller::admin(),
            IdentityOp::RenewSession {
                uuid: "1".repeat(32),
                duration_s: Some(600),
            },
        )
        .unwrap();
        assert!(
            matches!(r, IdentityResult::Session(ref s) if s.expired_date == ctx(13).proposed_at_ms + 600_000)
        );
        assert_eq!(
            run(
                &mut t,
                13,
                &Caller::admin(),
                IdentityOp::RenewSession {
                    uuid: "1".repeat(32),
                    duration_s: Some(5)
                }
            )
            .unwrap_err()
            .code(),
            "SYS.1007"
        );
        // Logout frees a slot; expiry sweeps the rest.
        run(
            &mut t,
            14,
            &Caller::admin(),
            IdentityOp::DeleteSession {
                uuid: "2".repeat(32),
            },
        )
        .unwrap();
        open(&mut t, 15, '3').unwrap();
        let far = IdentityOp::ExpireSessions;
        let mut late = ctx(16);
        late.proposed_at_ms += 10_000_000;
        assert_eq!(
            apply(&mut t, &late, &Caller::admin(), far).unwrap(),
            IdentityResult::Expired(2)
        );
    }
}

#[cfg(test)]
pub(crate) mod cases {
    //! Call-matrix cases of this family's calls (run by `testing::matrix`).

    use serde_json::json;

    use crate::identity;
    use crate::testing::matrix::bad_query;
    use crate::testing::matrix::eq;
    use crate::testing::matrix::missing;
    use crate::testing::matrix::no;
    use crate::testing::matrix::ok;
    use crate::testing::matrix::Case;
    use crate::testing::matrix::Ids;
    use crate::testing::matrix::Parties;
    use crate::testing::matrix::Who;
    use crate::testing::matrix::ALICE_PW;
    use crate::testing::matrix::TENANT_PW;
    use crate::wire::errors::Code;
    use crate::ADMIN_ACCOUNT_UUID;

    /// The call-matrix cases of this family's calls.
    pub(crate) fn cases(ids: &Ids) -> Vec<Case> {
        let Parties {
            admin,
            tenant,
            alice,
            stranger,
            nobody,
        } = Parties::of(ids);
        let i = ids.clone();
        let mut m = Vec::new();
        // ---- Sessions.
        {
            let tenant_uuid = i.tenant.clone();
            m.push(ok(
                "LogInByAccount",
                &nobody,
                json!({"accountName": "tenant", "password": TENANT_PW}),
                move |h, r| {
                    assert_eq!(r["inventory"]["accountUuid"], tenant_uuid.as_str());
                    assert_eq!(r["inventory"]["userType"], "AccountVO");
                    assert!(h.valid(r["inventory"]["uuid"].as_str().unwrap()));
                },
            ));
        }
        m.push(no(
            "LogInByAccount",
            &nobody,
            json!({"accountName": "tenant", "password": "wrong"}),
            Code::AuthenticationError,
        ));
        m.push(no(
            "LogInByAccount",
            &nobody,
            json!({"accountName": "tenant"}),
            Code::InvalidArgument,
        ));
        {
            let alice_uuid = i.alice.clone();
            m.push(ok(
                "LogInByUser",
                &nobody,
                json!({"accountName": "tenant", "userName": "alice", "password": ALICE_PW}),
                move |h, r| {
                    assert_eq!(r["inventory"]["userUuid"], alice_uuid.as_str());
                    assert_eq!(r["inventory"]["userType"], "UserVO");
                    assert!(h.valid(r["inventory"]["uuid"].as_str().unwrap()));
                },
            ));
        }
        m.push(no(
            "LogInByUser",
            &nobody,
            json!({"accountUuid": i.tenant, "userName": "alice", "password": TENANT_PW}),
            Code::AuthenticationError,
        ));
        m.push(no(
            "LogInByUser",
            &nobody,
            json!({"userName": "alice", "password": ALICE_PW}),
            Code::InvalidArgument,
        ));
        {
            let s = i.tenant_session.clone();
            m.push(ok(
                "LogOut",
                &nobody,
                json!({"sessionUuid": i.tenant_session}),
                move |h, _| assert!(!h.valid(&s)),
            ));
        }
        m.push(no(
            "LogOut",
            &nobody,
            json!({"sessionUuid": {"uuid": "x"}}),
            Code::InvalidArgument,
        ));
        m.push(ok(
            "ValidateSession",
            &nobody,
            json!({"sessionUuid": i.alice_session}),
            |_, r| assert_eq!(r["validSession"], true),
        ));
        m.push(ok(
            "ValidateSession",
            &nobody,
            json!({"sessionUuid": missing()}),
            |_, r| assert_eq!(r["validSession"], false),
        ));
        m.push(no(
            "ValidateSession",
            &nobody,
            json!({}),
            Code::InvalidArgument,
        ));
        {
            let s = i.tenant_session.clone();
            m.push(ok(
                "RenewSession",
                &tenant,
                json!({"sessionUuid": i.tenant_session, "duration": 600}),
                move |h, r| {
                    assert_eq!(r["inventory"]["uuid"], s.as_str());
                    let (_, sess) =
                        crate::resource::require::<identity::Session>(&h.t, &s).unwrap();
                    assert_eq!(sess.expired_date, 1_000 * u64::from(h.n) + 600_000);
                },
            ));
        }
        m.push(no(
            "RenewSession",
            &tenant,
            json!({"sessionUuid": i.admin_session}),
            Code::PermissionDenied,
        ));
        m.push(no(
            "RenewSession",
            &admin,
            json!({"sessionUuid": i.admin_session, "duration": 5}),
            Code::InvalidArgument,
        ));
        m.push(no(
            "RenewSession",
            &nobody,
            json!({"sessionUuid": "0".repeat(32)}),
            Code::InvalidSession,
        ));

        // ---- Accounts and users.
        m.push(ok(
            "CreateAccount",
            &admin,
            json!({"name": "acct2", "password": "pw2"}),
            |h, r| {
                assert_eq!(r["inventory"]["name"], "acct2");
                assert_eq!(r["inventory"]["type"], "Normal");
                h.ok(
                    &Who::Session("0".repeat(32)),
                    "LogInByAccount",
                    json!({"accountName": "acct2", "password": "pw2"}),
                );
            },
        ));
        m.push(no(
            "CreateAccount",
            &tenant,
            json!({"name": "acct2", "password": "pw2"}),
            Code::PermissionDenied,
        ));
        m.push(no(
            "CreateAccount",
            &admin,
            json!({"name": "tenant", "password": "pw2"}),
            Code::InvalidArgument,
        ));
        m.push(ok(
            "UpdateAccount",
            &tenant,
            json!({"uuid": i.tenant, "description": "mine", "password": "new-pw"}),
            |h, r| {
                assert_eq!(r["inventory"]["description"], "mine");
                h.ok(
                    &Who::Session("0".repeat(32)),
                    "LogInByAccount",
                    json!({"accountName": "tenant", "password": "new-pw"}),
                );
            },
        ));
        m.push(no(
            "UpdateAccount",
            &tenant,
            json!({"uuid": ADMIN_ACCOUNT_UUID, "description": "mine"}),
            Code::PermissionDenied,
        ));
        m.push(no(
            "UpdateAccount",
            &admin,
            json!({"uuid": missing(), "description": "x"}),
            Code::ResourceNotFound,
        ));
        {
            let (t, s) = (i.tenant.clone(), i.alice_session.clone());
            m.push(ok(
                "DeleteAccount",
                &admin,
                json!({"uuid": i.tenant}),
                move |h, _| {
                    assert_eq!(h.count("QueryAccount", eq("uuid", &t)), 0);
                    assert_eq!(h.count("QueryUser", eq("accountUuid", &t)), 0);
                    assert!(!h.valid(&s), "the account's sessions go with it");
                },
            ));
        }
        m.push(no(
            "DeleteAccount",
            &admin,
            json!({"uuid": ADMIN_ACCOUNT_UUID}),
            Code::OperationFailure,
        ));
        m.push(no(
            "DeleteAccount",
            &tenant,
            json!({"uuid": i.tenant}),
            Code::PermissionDenied,
        ));
        {
            let t = i.tenant.clone();
            m.push(ok(
                "QueryAccount",
                &tenant,
                json!({"conditions": []}),
                move |_, r| {
                    let inv = r["inventories"].as_array().unwrap();
                    assert_eq!(inv.len(), 1, "a normal account sees itself only");
                    assert_eq!(inv[0]["uuid"], t.as_str());
                },
            ));
        }
        m.push(no(
            "QueryAccount",
            &admin,
            bad_query(),
            Code::InvalidArgument,
        ));
        {
            let t = i.tenant.clone();
            m.push(ok(
                "CreateUser",
                &tenant,
                json!({"name": "bob", "password": "bob-pw"}),
                move |h, r| {
                    assert_eq!(r["inventory"]["accountUuid"], t.as_str());
                    h.ok(
                        &Who::Session("0".repeat(32)),
                        "LogInByUser",
                        json!({"accountUuid": t, "userName": "bob", "password": "bob-pw"}),
                    );
                },
            ));
        }
        m.push(no(
            "CreateUser",
            &tenant,
            json!({"name": "alice", "password": "again"}),
            Code::InvalidArgument,
        ));
        m.push(ok(
            "UpdateUser",
            &alice,
            json!({"uuid": i.alice, "description": "me"}),
            |_, r| assert_eq!(r["inventory"]["description"], "me"),
        ));
        m.push(no(
            "UpdateUser",
            &admin,
            json!({"uuid": missing(), "description": "x"}),
            Code::ResourceNotFound,
        ));
        m.push(no(
            "UpdateUser",
            &stranger,
            json!({"uuid": i.alice, "description": "x"}),
            Code::PermissionDenied,
        ));
        {
            let (u, s) = (i.alice.clone(), i.alice_session.clone());
            m.push(ok(
                "DeleteUser",
                &tenant,
                json!({"uuid": i.alice}),
                move |h, _| {
                    assert_eq!(h.count("QueryUser", eq("uuid", &u)), 0);
                    assert!(!h.valid(&s), "the user's sessions go with it");
                },
            ));
        }
        m.push(no(
            "DeleteUser",
            &stranger,
            json!({"uuid": i.alice}),
            Code::PermissionDenied,
        ));
        {
            let u = i.alice.clone();
            m.push(ok(
                "QueryUser",
                &tenant,
                json!({"conditions": eq("name", "alice")}),
                move |_, r| assert_eq!(r["inventories"][0]["uuid"], u.as_str()),
            ));
        }
        m.push(no("QueryUser", &admin, bad_query(), Code::InvalidArgument));
        m
    }
}
