//! The `publicKey` of a key pair: one OpenSSH public key line, `<type> <base64 key data>
//! [comment]` (the `authorized_keys` format without options, as `ssh-keygen` writes `*.pub`).
//!
//! The key data is the SSH wire encoding of the key (RFC 4253 §6.6, RFC 5656 §3.1, RFC 8709
//! §4): length-prefixed strings and mpints, the first of which repeats the key type. The check
//! decodes it and walks its fields, so a key cut short, padded with junk or pasted under the
//! wrong type is refused here rather than by the guest's sshd later. Pure: no IO.

use crate::validate;
use crate::ApiError;

/// Longest `publicKey` accepted, in bytes (an RSA-16384 key line is under 3 KiB).
pub const MAX_PUBLIC_KEY: usize = 16 * 1024;

/// The key types accepted, as the first word of the line and inside the key data.
pub const KEY_TYPES: &[&str] = &[
    "ssh-rsa",
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-dss",
];

/// A well-formed public key line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey<'a> {
    /// The line without surrounding whitespace (what is stored).
    pub line: &'a str,
    /// The key type, one of [`KEY_TYPES`].
    pub key_type: &'a str,
    /// The comment after the key data, if any.
    pub comment: Option<&'a str>,
}

fn refuse(details: impl std::fmt::Display) -> ApiError {
    validate::invalid_arg(format!("field[publicKey] {details}"))
}

/// Check `text` is one OpenSSH public key line (`SYS.1007` naming what is wrong otherwise).
/// Whitespace around the line (the newline ending a `.pub` file) is not part of the key.
pub fn parse(text: &str) -> Result<PublicKey<'_>, ApiError> {
    if text.len() > MAX_PUBLIC_KEY {
        return Err(refuse(format_args!(
            "is {} bytes long, longer than the {MAX_PUBLIC_KEY} bytes a public key may be",
            text.len()
        )));
    }
    let line = text.trim();
    if line.is_empty() {
        return Err(refuse("cannot be empty"));
    }
    if line.contains(['\n', '\r']) {
        return Err(refuse(format_args!(
            "must be a single OpenSSH public key line, found {} lines",
            line.split(['\n', '\r'])
                .filter(|l| !l.trim().is_empty())
                .count()
        )));
    }
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err(refuse("contains control characters"));
    }
    // `<type> <data>[ <comment>]`, words apart by runs of spaces or tabs.
    let blank: &[char] = &[' ', '\t'];
    let (key_type, rest) = line.split_once(blank).unwrap_or((line, ""));
    let (data, comment) = match rest.trim_start_matches(blank).split_once(blank) {
        Some((data, comment)) => (data, Some(comment.trim_start_matches(blank))),
        None => (rest.trim_start_matches(blank), None),
    };
    if !KEY_TYPES.contains(&key_type) {
        return Err(refuse(format_args!(
            "is not an OpenSSH public key: unsupported key type[{}], supported types are {KEY_TYPES:?}",
            shorten(key_type)
        )));
    }
    if data.is_empty() {
        return Err(refuse(format_args!(
            "has no key data after the key type[{key_type}]"
        )));
    }
    let blob = base64(data).ok_or_else(|| {
        refuse(format_args!(
            "key data of the {key_type} key is not valid base64"
        ))
    })?;
    check_blob(key_type, &blob)?;
    Ok(PublicKey {
        line,
        key_type,
        comment: comment.filter(|c| !c.is_empty()),
    })
}

/// At most 64 characters of a refused value, for the error text.
fn shorten(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s.to_string(),
    }
}

/// The SSH wire encoding of a key of the declared type, every field present, nothing after.
fn check_blob(key_type: &str, blob: &[u8]) -> Result<(), ApiError> {
    let mut r = Reader(blob);
    let malformed = || {
        refuse(format_args!(
            "key data of the {key_type} key is truncated or malformed"
        ))
    };
    let embedded = r.string().ok_or_else(malformed)?;
    if embedded != key_type.as_bytes() {
        return Err(refuse(format_args!(
            "key data holds a key of type[{}], not the declared type[{key_type}]",
            shorten(&String::from_utf8_lossy(embedded))
        )));
    }
    let ok = match key_type {
        // e, n.
        "ssh-rsa" => r.mpints(2),
        // p, q, g, y.
        "ssh-dss" => r.mpints(4),
        // The 32-byte point.
        "ssh-ed25519" => r.string().is_some_and(|k| k.len() == 32),
        // The curve (again) and the point, uncompressed (04) or compressed (02/03).
        ecdsa => {
            let curve = ecdsa.trim_start_matches("ecdsa-sha2-").as_bytes();
            r.string() == Some(curve)
                && r.string()
                    .is_some_and(|q| matches!(q.first(), Some(2..=4)) && q.len() > 1)
        }
    };
    if ok && r.0.is_empty() {
        Ok(())
    } else {
        Err(malformed())
    }
}

/// Reads SSH wire fields off the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// A `string`: a big-endian u32 length and that many bytes.
    fn string(&mut self) -> Option<&'a [u8]> {
        let (len, rest) = self.0.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
        if len > rest.len() {
            return None;
        }
        let (s, rest) = rest.split_at(len);
        self.0 = rest;
        Some(s)
    }

    /// `n` non-empty `mpint`s (a key's numbers are never zero).
    fn mpints(&mut self, n: usize) -> bool {
        (0..n).all(|_| self.string().is_some_and(|m| !m.is_empty()))
    }
}

/// Strict standard base64 (RFC 4648 §4, padded, as OpenSSH writes it); `None` when `s` is not.
pub(super) fn base64(s: &str) -> Option<Vec<u8>> {
    fn value(b: u8) -> Option<u32> {
        Some(u32::from(match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }
    let bytes = s.as_bytes();
    if bytes.is_empty() || !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let last = bytes.len() / 4 - 1;
    for (i, quad) in bytes.chunks_exact(4).enumerate() {
        let pad = quad.iter().rev().take_while(|b| **b == b'=').count();
        // Padding only ends the last quad, and at most two of its characters.
        if pad > 2 || (pad > 0 && i != last) {
            return None;
        }
        let mut n = 0u32;
        for b in &quad[..4 - pad] {
            n = (n << 6) | value(*b)?;
        }
        n <<= 6 * pad as u32;
        let chunk = n.to_be_bytes();
        out.extend_from_slice(&chunk[1..4 - pad]);
    }
    Some(out)
}
