//! Field checks shared by every resource family; all refusals are ZStack's `SYS.1007`.

use crate::wire::errors::Code;
use crate::wire::errors::Refusal;
use crate::ApiError;

/// CPU architectures ZStack knows (clusters and images declare one of these).
pub const ARCHITECTURES: &[&str] = &["x86_64", "aarch64", "mips64el", "loongarch64"];

/// Longest name ZStack's `VARCHAR(255)` columns hold.
pub const MAX_NAME: usize = 255;
/// Longest description (`VARCHAR(2048)`).
pub const MAX_DESCRIPTION: usize = 2048;

/// A resource uuid: 32 lowercase hex characters (a UUID without dashes).
pub fn uuid(field: &str, v: &str) -> Result<(), ApiError> {
    if v.len() == 32
        && v.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(invalid_arg(format!(
            "field[{field}] value {v:?} is not a valid uuid (32 lowercase hex characters)"
        )))
    }
}

/// A display name: non-empty, at most 255 characters, no control characters.
pub fn name(field: &str, v: &str) -> Result<(), ApiError> {
    if v.trim().is_empty() {
        return Err(invalid_arg(format!("field[{field}] cannot be empty")));
    }
    if v.chars().count() > MAX_NAME {
        return Err(invalid_arg(format!(
            "field[{field}] exceeds {MAX_NAME} characters"
        )));
    }
    if v.chars().any(char::is_control) {
        return Err(invalid_arg(format!(
            "field[{field}] contains control characters"
        )));
    }
    Ok(())
}

/// An optional description of at most 2048 characters.
pub fn description(v: Option<&str>) -> Result<(), ApiError> {
    match v {
        Some(d) if d.chars().count() > MAX_DESCRIPTION => Err(invalid_arg(format!(
            "field[description] exceeds {MAX_DESCRIPTION} characters"
        ))),
        _ => Ok(()),
    }
}

/// A create whose uuid is taken.
pub fn duplicate_uuid(kind: &str, uuid: &str) -> ApiError {
    invalid_arg(format!(
        "resource[uuid:{uuid}, type:{kind}VO] already exists"
    ))
}

/// A refusal with any code (shorthand for the families).
pub fn refuse(code: Code, details: impl Into<String>) -> ApiError {
    ApiError::Refused(Refusal::new(code, details))
}

/// ZStack's `SYS.1007` with `details`.
pub fn invalid_arg(details: impl Into<String>) -> ApiError {
    refuse(Code::InvalidArgument, details)
}

/// ZStack's `SYS.1006` (operation failure / wrong state) with `details`.
pub fn op_failure(details: impl Into<String>) -> ApiError {
    refuse(Code::OperationFailure, details)
}

/// A string of at most `max` characters.
pub fn max_len(field: &str, v: &str, max: usize) -> Result<(), ApiError> {
    if v.chars().count() > max {
        Err(invalid_arg(format!(
            "field[{field}] exceeds {max} characters"
        )))
    } else {
        Ok(())
    }
}

/// Longest SSH user name or password (`@APIParam(maxLength = 255)`).
pub const MAX_CREDENTIAL: usize = 255;

/// An SSH port (hosts and image servers are reached over SSH).
pub fn ssh_port(v: i64) -> Result<u16, ApiError> {
    u16::try_from(v).ok().filter(|p| *p >= 1).ok_or_else(|| {
        invalid_arg(format!(
            "field[sshPort] must be in range of [1, 65535], got {v}"
        ))
    })
}

/// A secret field in clear (checked before it is sealed): non-empty, at most
/// [`MAX_CREDENTIAL`] characters. Errors never quote the value.
pub fn secret(field: &str, v: &str) -> Result<(), ApiError> {
    if v.is_empty() {
        return Err(invalid_arg(format!("field[{field}] cannot be empty")));
    }
    max_len(field, v, MAX_CREDENTIAL)
}

/// Directories a storage url must never be (ZStack refuses them: "may make the host abnormal").
pub const SYSTEM_DIRS: &[&str] = &[
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib64",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/usr/bin",
    "/usr/sbin",
    "/usr/lib",
    "/usr/lib64",
    "/var",
];

/// An absolute directory usable for storage: starts with `/`, no `..`, no control characters,
/// not a system directory nor inside `/dev`, `/proc` or `/sys`.
pub fn storage_path(field: &str, v: &str) -> Result<(), ApiError> {
    if !v.starts_with('/') || v.chars().any(char::is_control) {
        return Err(invalid_arg(format!(
            "field[{field}] value {v:?} must be an absolute path"
        )));
    }
    if v.split('/').any(|c| c == "..") {
        return Err(invalid_arg(format!(
            "field[{field}] value {v:?} must not contain '..'"
        )));
    }
    let trimmed = v.trim_end_matches('/');
    let norm = if trimmed.is_empty() { "/" } else { trimmed };
    let inside = ["/dev/", "/proc/", "/sys/"]
        .iter()
        .any(|p| norm.starts_with(p));
    if SYSTEM_DIRS.contains(&norm) || inside {
        return Err(invalid_arg(format!(
            "field[{field}] value {v:?} is a system directory, it may make the host abnormal"
        )));
    }
    Ok(())
}

/// A host name or IPv4 address (RFC 1123 labels).
pub fn hostname(field: &str, v: &str) -> Result<(), ApiError> {
    let ok = !v.is_empty()
        && v.len() <= 253
        && v.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(invalid_arg(format!(
            "field[{field}] value {v:?} is not a valid host name or IP address"
        )))
    }
}
