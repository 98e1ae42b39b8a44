//! Account, user and session records, the identity commands and their apply.

use argon2::password_hash::PasswordHash;
use serde::Deserialize;
use serde::Serialize;

use crate::resource;
use crate::settings;
use crate::validate;
use crate::validate::refuse;
use crate::wire::errors::Code;
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

pub(super) fn apply(
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
            let timeout_ms = settings::int_value(txn, "identity", "session.timeout")? as u64 * 1000;
            let max = settings::int_value(txn, "identity", "session.maxConcurrent")? as usize;
            let unique = settings::value(txn, "identity", "enable.unique.session")? == "true";
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
                None => settings::int_value(txn, "identity", "session.timeout")? as u64,
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
