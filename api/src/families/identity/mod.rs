//! Accounts, users and sessions (spec 05 §1, spec 06 §2, spec decision 2). Passwords are
//! hashed and logins verified on the serving node (`auth.rs`); only PHC strings and verified
//! sessions enter the log. Deleting an account deletes everything it owns.

mod auth;
pub mod backoff;
#[cfg(test)]
mod cases;
mod model;
#[cfg(test)]
mod tests;
mod wire;

pub use auth::authenticate_account;
pub use auth::authenticate_user;
pub use auth::hash_password;
pub use auth::login_command;
pub use auth::needs_renewal;
pub use auth::session_caller;
pub use auth::verify_password;
pub use auth::DEFAULT_ADMIN_PASSWORD_SHA512;
pub use backoff::LoginBackoff;
pub use model::Account;
pub use model::AccountType;
pub use model::IdentityOp;
pub use model::IdentityResult;
pub use model::Session;
pub use model::User;
pub use model::ACCOUNT_TABLE;
pub use model::SESSION_TABLE;
pub use model::USER_TABLE;

use crate::family::prelude::*;

/// ZStack's classes of sessions, accounts and users.
const SESSION: JavaClass = JavaClass::leaf("org.zstack.header.identity.SessionInventory");
const ACCOUNT: JavaClass = JavaClass::leaf("org.zstack.header.identity.AccountInventory");
const USER: JavaClass = JavaClass::leaf("org.zstack.header.identity.UserInventory");

/// The identity family: accounts, users, sessions.
pub struct Identities;

impl Family for Identities {
    type Op = IdentityOp;
    type Out = IdentityResult;
    const DECL: FamilyDecl = FamilyDecl {
        services: &[],
        replies: &[],
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
                wire::log_in_by_account,
                &[route(Pu, "/v1/accounts/login", A)],
            )
            .replying(inventories!(Schema::Class(&SESSION))),
            CallDecl::new(
                "LogInByUser",
                wire::log_in_by_user,
                &[route(Pu, "/v1/accounts/users/login", A)],
            )
            .replying(inventories!(Schema::Class(&SESSION))),
            CallDecl::new(
                "LogOut",
                wire::log_out,
                &[route(D, "/v1/accounts/sessions/{sessionUuid}", N)],
            ),
            CallDecl::new(
                "ValidateSession",
                wire::validate_session,
                &[RestRoute {
                    rename: Some(("validSession", "valid")),
                    ..route(G, "/v1/accounts/sessions/{sessionUuid}/valid", N)
                }],
            ),
            CallDecl::new(
                "RenewSession",
                wire::renew_session,
                &[route(Pu, "/v1/accounts/sessions/{sessionUuid}/renew", A)],
            )
            .replying(inventories!(Schema::Class(&SESSION))),
            CallDecl::new(
                "CreateAccount",
                wire::create_account,
                &[route(Po, "/v1/accounts", P)],
            )
            .replying(inventories!(Schema::Class(&ACCOUNT))),
            CallDecl::new(
                "UpdateAccount",
                wire::update_account,
                &[route(Pu, "/v1/accounts/{uuid}", A)],
            )
            .replying(inventories!(Schema::Class(&ACCOUNT))),
            delete_call!("DeleteAccount", "/v1/accounts", IdentityOp::DeleteAccount),
            query_call!("QueryAccount", "/v1/accounts", Account)
                .replying(inventories!(Schema::Class(&ACCOUNT))),
            CallDecl::new(
                "CreateUser",
                wire::create_user,
                &[route(Po, "/v1/accounts/users", P)],
            )
            .replying(inventories!(Schema::Class(&USER))),
            CallDecl::new(
                "UpdateUser",
                wire::update_user,
                &[route(Pu, "/v1/accounts/users/{uuid}", A)],
            )
            .replying(inventories!(Schema::Class(&USER))),
            delete_call!("DeleteUser", "/v1/accounts/users", IdentityOp::DeleteUser),
            query_call!("QueryUser", "/v1/accounts/users", User)
                .replying(inventories!(Schema::Class(&USER))),
        ],
        flows: &[],
        #[cfg(test)]
        cases: cases::cases,
    };
    const APPLY: ApplyFn<Self> = model::apply;
}

impl Reply for IdentityResult {
    fn inventory(&self) -> Option<Value> {
        match self {
            IdentityResult::Account(a) => Some(resource::inventory(a)),
            IdentityResult::User(u) => Some(resource::inventory(u)),
            IdentityResult::Session(s) => Some(resource::inventory(s)),
            IdentityResult::Done | IdentityResult::Expired(_) => None,
        }
    }
}
