//! Typed accessors for the fields of a decoded API message body, used by the resource families'
//! `plan` functions (request → command). The catalogue has already checked declared types and
//! allowed values; these turn the JSON into Rust values and report what is still wrong as
//! ZStack's `SYS.1007`.

use serde_json::Map;
use serde_json::Value;

use crate::catalogue::CallSpec;
use crate::wire::errors::Code;
use crate::wire::errors::Refusal;

/// A message body.
pub type Body = Map<String, Value>;

fn invalid(details: String) -> Refusal {
    Refusal::new(Code::InvalidArgument, details)
}

/// An optional string field (non-strings count as absent; the catalogue checked types).
pub fn string(body: &Body, f: &str) -> Option<String> {
    body.get(f).and_then(Value::as_str).map(str::to_string)
}

/// A mandatory string field.
pub fn required(body: &Body, f: &str, spec: &CallSpec) -> Result<String, Refusal> {
    string(body, f).ok_or_else(|| {
        invalid(format!(
            "field[{f}] of message[{}] is mandatory, can not be null",
            spec.class
        ))
    })
}

/// An optional boolean (a JSON boolean or `"true"`/`"false"`).
pub fn boolean(body: &Body, f: &str) -> Option<bool> {
    match body.get(f) {
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
}

/// An optional integer: a JSON number or a numeric string, as Gson accepts.
pub fn int(body: &Body, f: &str, spec: &CallSpec) -> Result<Option<i64>, Refusal> {
    match body.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| {
            invalid(format!(
                "field[{f}] of message[{}] must be an integer, got {n}",
                spec.class
            ))
        }),
        Some(Value::String(s)) => s.trim().parse::<i64>().map(Some).map_err(|_| {
            invalid(format!(
                "field[{f}] of message[{}] must be an integer, got {s:?}",
                spec.class
            ))
        }),
        Some(v) => Err(invalid(format!(
            "field[{f}] of message[{}] must be an integer, got {v}",
            spec.class
        ))),
    }
}

/// A mandatory integer.
pub fn required_int(body: &Body, f: &str, spec: &CallSpec) -> Result<i64, Refusal> {
    int(body, f, spec)?.ok_or_else(|| {
        invalid(format!(
            "field[{f}] of message[{}] is mandatory, can not be null",
            spec.class
        ))
    })
}

/// An optional list of strings.
pub fn strings(body: &Body, f: &str, spec: &CallSpec) -> Result<Option<Vec<String>>, Refusal> {
    match body.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .map(Some)
            .ok_or_else(|| {
                invalid(format!(
                    "field[{f}] of message[{}] must be a list of strings",
                    spec.class
                ))
            }),
        Some(v) => Err(invalid(format!(
            "field[{f}] of message[{}] must be a list, got {v}",
            spec.class
        ))),
    }
}

/// The uuid a create call uses: the client's `resourceUuid`, else the one the node stamped.
pub fn new_uuid(body: &Body, stamped: &str) -> String {
    string(body, "resourceUuid").unwrap_or_else(|| stamped.to_string())
}

/// A `stateEvent` field, mapped through `events` (the catalogue already restricted it).
pub fn state_event<E: Copy>(
    body: &Body,
    spec: &CallSpec,
    events: &[(&str, E)],
) -> Result<E, Refusal> {
    let s = required(body, "stateEvent", spec)?;
    events
        .iter()
        .find(|(n, _)| *n == s)
        .map(|(_, e)| *e)
        .ok_or_else(|| {
            invalid(format!(
                "valid value for field[stateEvent] of message[{}] are {:?}, but {s} found",
                spec.class,
                events.iter().map(|(n, _)| *n).collect::<Vec<_>>()
            ))
        })
}

/// Whether `deleteMode` asks for `Enforcing` (the default is `Permissive`).
pub fn enforcing(body: &Body) -> bool {
    string(body, "deleteMode").is_some_and(|m| m.eq_ignore_ascii_case("Enforcing"))
}

/// Derive a further uuid from a stamped one, for a command that creates several records:
/// FNV-1a (64 bit) over `base` and `index`, twice with different seeds, as 32 lowercase hex.
/// Deterministic on every replica; unique enough for a handful of records per command.
pub fn derive_uuid(base: &str, index: u32) -> String {
    fn fnv(seed: u64, bytes: &[u8]) -> u64 {
        let mut h = seed;
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    }
    let mut input = base.as_bytes().to_vec();
    input.extend_from_slice(&index.to_be_bytes());
    let a = fnv(0xcbf2_9ce4_8422_2325, &input);
    let b = fnv(0x8422_2325_cbf2_9ce4, &input);
    format!("{a:016x}{b:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_uuids_are_stable_and_distinct() {
        let a = derive_uuid("f52fe55b64094ceb99b3893a238c4931", 1);
        assert_eq!(a, derive_uuid("f52fe55b64094ceb99b3893a238c4931", 1));
        assert_ne!(a, derive_uuid("f52fe55b64094ceb99b3893a238c4931", 2));
        assert_eq!(a.len(), 32);
        assert!(crate::validate::uuid("x", &a).is_ok());
    }
}
