//! Join tokens: `zsjoin1.<expires>.<node>.<nonce>.<mac>.<ca-pin>`, stateless and verifiable by
//! every management node (all hold the CA key the MAC key derives from), so no node has to be
//! up for a token it issued to be used. `<node>` 0 admits any unused node id; `<ca-pin>` lets
//! the joining node check it reached this cluster before it sends anything (kubeadm's
//! `--discovery-token-ca-cert-hash`, carried inside the token). Revocation is by expiry only,
//! hence the short lifetimes.

use hmac::Hmac;
use hmac::Mac;
use sha2::Digest;
use sha2::Sha256;

use super::Credentials;
use super::PkiError;

/// Default lifetime of a join token.
pub const DEFAULT_TTL_SECS: u64 = 3600;
/// Longest lifetime a join token may have.
pub const MAX_TTL_SECS: u64 = 24 * 3600;
const PREFIX: &str = "zsjoin1";

/// A parsed join token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Expiry, Unix seconds.
    pub expires: u64,
    /// The node id it admits (0: any).
    pub node_id: u64,
    nonce: [u8; 8],
    mac: [u8; 16],
    /// The CA pin.
    pub ca_pin: [u8; 32],
}

fn mac_key(c: &Credentials) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"zstack join-token key v1\0");
    h.update(c.ca_key_pem.as_bytes());
    h.finalize().into()
}

fn mac_of(c: &Credentials, expires: u64, node_id: u64, nonce: &[u8; 8]) -> Hmac<Sha256> {
    let mut m =
        <Hmac<Sha256> as Mac>::new_from_slice(&mac_key(c)).expect("HMAC takes any key length");
    m.update(
        format!(
            "{PREFIX}|{}|{expires}|{node_id}|{}",
            c.cluster_id,
            hex::encode(nonce)
        )
        .as_bytes(),
    );
    m
}

/// Now, Unix seconds.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Issue a token valid for `ttl_secs` (1..=[`MAX_TTL_SECS`]) admitting `node_id` (0: any).
pub fn issue(c: &Credentials, ttl_secs: u64, node_id: u64, now: u64) -> Result<String, PkiError> {
    if ttl_secs == 0 || ttl_secs > MAX_TTL_SECS {
        return Err(PkiError::Token(format!(
            "lifetime must be 1 to {MAX_TTL_SECS} seconds, not {ttl_secs}"
        )));
    }
    let expires = now + ttl_secs;
    let nonce: [u8; 8] = rand::random();
    let mac = mac_of(c, expires, node_id, &nonce).finalize().into_bytes();
    Ok(format!(
        "{PREFIX}.{expires}.{node_id}.{}.{}.{}",
        hex::encode(nonce),
        hex::encode(&mac[..16]),
        hex::encode(c.ca_pin)
    ))
}

fn hex_array<const N: usize>(s: &str, what: &str) -> Result<[u8; N], PkiError> {
    hex::decode(s)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| PkiError::Token(format!("{what} must be {} hex digits", 2 * N)))
}

/// Parse a token's shape (no MAC check: the joining node has no key).
pub fn parse(token: &str) -> Result<JoinToken, PkiError> {
    let parts: Vec<&str> = token.trim().split('.').collect();
    if parts.len() != 6 || parts[0] != PREFIX {
        return Err(PkiError::Token(format!(
            "not a join token (expected {PREFIX}.<expires>.<node>.<nonce>.<mac>.<ca-pin>; create one with `zsctl join-token create`)"
        )));
    }
    let num = |s: &str, what: &str| {
        s.parse::<u64>()
            .map_err(|_| PkiError::Token(format!("{what} {s:?} is not a number")))
    };
    Ok(JoinToken {
        expires: num(parts[1], "expiry")?,
        node_id: num(parts[2], "node id")?,
        nonce: hex_array(parts[3], "nonce")?,
        mac: hex_array(parts[4], "MAC")?,
        ca_pin: hex_array(parts[5], "CA pin")?,
    })
}

/// Check a token presented by a node that wants to join as `node_id`.
pub fn verify(c: &Credentials, token: &str, node_id: u64, now: u64) -> Result<JoinToken, PkiError> {
    let t = parse(token)?;
    if t.ca_pin != c.ca_pin {
        return Err(PkiError::Token(
            "issued by another cluster (its CA pin is not this cluster's)".into(),
        ));
    }
    mac_of(c, t.expires, t.node_id, &t.nonce)
        .verify_truncated_left(&t.mac)
        .map_err(|_| PkiError::Token("not issued by this cluster (bad MAC)".into()))?;
    if t.expires <= now {
        return Err(PkiError::Token(format!(
            "expired {} s ago; create a new one with `zsctl join-token create`",
            now - t.expires
        )));
    }
    if t.node_id != 0 && t.node_id != node_id {
        return Err(PkiError::Token(format!(
            "admits node {} only, not node {node_id}",
            t.node_id
        )));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(dir: &std::path::Path, cluster: &str) -> Credentials {
        super::super::bootstrap(dir, cluster, 1, &[], b"k".to_vec(), None).unwrap();
        super::super::load(dir, cluster, 1).unwrap()
    }

    #[test]
    fn issue_verify_and_refusals() {
        let td = tempfile::tempdir().unwrap();
        let c = creds(td.path(), "c");
        let t = issue(&c, 600, 0, 1000).unwrap();
        assert_eq!(verify(&c, &t, 7, 1500).unwrap().node_id, 0);
        let e = verify(&c, &t, 7, 1600).unwrap_err().to_string();
        assert!(e.contains("expired"), "{e}");
        let bound = issue(&c, 600, 3, 1000).unwrap();
        assert!(verify(&c, &bound, 3, 1001).is_ok());
        let e = verify(&c, &bound, 4, 1001).unwrap_err().to_string();
        assert!(e.contains("admits node 3 only"), "{e}");
        // Tampering with any field breaks the MAC.
        let forged = t.replacen(".0.", ".9.", 1);
        let e = verify(&c, &forged, 9, 1001).unwrap_err().to_string();
        assert!(e.contains("bad MAC"), "{e}");
        // Another cluster's token.
        let td2 = tempfile::tempdir().unwrap();
        let other = creds(td2.path(), "c");
        let e = verify(&c, &issue(&other, 60, 0, 1000).unwrap(), 2, 1001)
            .unwrap_err()
            .to_string();
        assert!(e.contains("another cluster"), "{e}");
        assert!(parse("zsjoin1.x").is_err());
        assert!(parse("").is_err());
        assert!(issue(&c, 0, 0, 0).is_err() && issue(&c, MAX_TTL_SECS + 1, 0, 0).is_err());
    }
}
