//! IPv4 helpers shared by the network families (pure).

use std::net::Ipv4Addr;

use crate::validate;
use crate::ApiError;

/// Parse a dotted IPv4 address.
pub fn parse_ip(field: &str, s: &str) -> Result<u32, ApiError> {
    s.parse::<Ipv4Addr>().map(u32::from).map_err(|_| {
        validate::invalid_arg(format!(
            "field[{field}] value {s:?} is not a valid IPv4 address"
        ))
    })
}

/// Render an IPv4 address.
pub fn ip_str(ip: u32) -> String {
    Ipv4Addr::from(ip).to_string()
}

/// Prefix length of a dotted netmask (`SYS.1007` for a non-contiguous or zero mask).
pub fn mask_prefix(s: &str) -> Result<u32, ApiError> {
    let m = parse_ip("netmask", s)?;
    let p = m.leading_ones();
    if m == 0 || m.checked_shl(p).unwrap_or(0) != 0 {
        return Err(validate::invalid_arg(format!(
            "field[netmask] value {s:?} is not a valid netmask"
        )));
    }
    Ok(p)
}

/// The netmask of a prefix length.
pub fn mask_of(prefix: u32) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

/// Parse `a.b.c.d/n` (host bits allowed, normalised away): (network, prefix).
pub fn parse_cidr(s: &str) -> Result<(u32, u32), ApiError> {
    let bad = || validate::invalid_arg(format!("{s:?} is not a valid CIDR (a.b.c.d/n)"));
    let (ip, p) = s.split_once('/').ok_or_else(bad)?;
    let prefix: u32 = p.parse().map_err(|_| bad())?;
    if !(1..=32).contains(&prefix) {
        return Err(bad());
    }
    let ip: u32 = ip.parse::<Ipv4Addr>().map_err(|_| bad())?.into();
    Ok((ip & mask_of(prefix), prefix))
}
