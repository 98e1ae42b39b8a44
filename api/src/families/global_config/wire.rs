//! Global config on the wire: request → op.

use serde_json::Value;

use super::model::GlobalConfigOp;
use crate::plan::Plan;
use crate::plan::PlanInput;
use crate::wire::errors::Refusal;

pub(super) fn update(p: &PlanInput) -> Result<Plan, Refusal> {
    Ok(p.propose(GlobalConfigOp::Update {
        category: p.required("category")?,
        name: p.required("name")?,
        // ZStack accepts a missing value as the empty string, which then fails checks.
        value: match p.body.get("value") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(v) => v.to_string(),
        },
    }))
}
