//! Identity on the wire: the inventories of accounts, users and sessions, and request → plan.

use serde_json::json;
use serde_json::Value;

use super::auth::hash_password;
use super::model::Account;
use super::model::IdentityOp;
use super::model::Session;
use super::model::User;
use super::model::ACCOUNT_TABLE;
use super::model::SESSION_TABLE;
use super::model::USER_TABLE;
use crate::plan::LoginTarget;
use crate::plan::Plan;
use crate::plan::PlanInput;
use crate::resource::date;
use crate::resource::Field;
use crate::resource::Resource;
use crate::wire::date::java_date;
use crate::wire::errors::Code;
use crate::wire::errors::Refusal;

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
    hash_password(&p.required(f)?, &p.stamp.salt)
}

fn hash_opt(p: &PlanInput, f: &str) -> Result<Option<String>, Refusal> {
    p.string(f)
        .map(|pw| hash_password(&pw, &p.stamp.salt))
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
