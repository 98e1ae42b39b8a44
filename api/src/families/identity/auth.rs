//! Passwords and sessions as the serving node checks them, before anything is proposed.
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

use super::model::Account;
use super::model::IdentityOp;
use super::model::Session;
use super::model::User;
use crate::resource;
use crate::settings;
use crate::validate::refuse;
use crate::wire::errors::Code;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::Caller;
use crate::StateTxn;
use crate::ADMIN_ACCOUNT_UUID;

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

/// ZStack renews a session on every authenticated call (a sliding window). Renewing is a
/// replicated write, so it is done only when less than half of `identity/session.timeout`
/// remains: an active session never expires, and a busy client costs one write per half
/// timeout instead of one per call.
pub fn needs_renewal(txn: &dyn StateTxn, session: &Session, now_ms: u64) -> Result<bool, ApiError> {
    let timeout_ms = settings::int_value(txn, "identity", "session.timeout")? as u64 * 1000;
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
