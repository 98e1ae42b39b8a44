//! Versioned binary encoding for everything `raft-store` writes to disk or sends in a snapshot.
//!
//! Log entries outlive the binary that wrote them (a rolling upgrade replays an old log with a
//! new binary), so every encoded value starts with one format-version byte. A reader refuses a
//! version it does not know instead of guessing at the layout.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The only encoding version this build writes: bincode 2 (standard config) of the serde model.
pub const ENCODING_V1: u8 = 1;

/// Why a stored value could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The value is empty: not even a version byte.
    #[error("empty value (no encoding version byte)")]
    Empty,
    /// Written by a newer (or corrupt) binary.
    #[error("unknown encoding version {found} (this build reads version {ENCODING_V1})")]
    UnknownVersion {
        /// The version byte found.
        found: u8,
    },
    /// The body does not decode as the expected type.
    #[error("malformed body: {0}")]
    Body(#[from] bincode::error::DecodeError),
    /// A length inside the value claims far more bytes than the value holds.
    #[error("a length prefix claims more data than the value holds")]
    Implausible,
    /// The body decoded but left bytes behind, a sign of a type mismatch or corruption.
    #[error("{0} trailing bytes after the value")]
    Trailing(usize),
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// One decode with bincode's allocation limit set to `LIMIT` bytes.
fn decode_limited<T: DeserializeOwned, const LIMIT: usize>(
    body: &[u8],
) -> Result<(T, usize), bincode::error::DecodeError> {
    bincode::serde::decode_from_slice(body, config().with_limit::<LIMIT>())
}

/// Decode `body` with an allocation bound proportional to its size.
///
/// bincode allocates a string's or byte buffer's length before reading it, so without a limit a
/// 10-byte value claiming a 2^40-byte string makes the process abort on the failed allocation,
/// and these bytes come from peers (gRPC payloads). bincode counts every decoded value at its
/// in-memory size (at most 16 bytes per primitive, each of which takes at least one encoded
/// byte; strings and bytes at their length), so a well-formed value never claims more than 16
/// times its encoding: a limit of 16 times the input (rounded up to a tier, since bincode's limit
/// is a constant) refuses only impossible lengths. Inputs above 64 MiB, larger than any gRPC
/// message a node accepts, come from local storage only and are decoded without a limit.
fn decode_bounded<T: DeserializeOwned>(
    body: &[u8],
) -> Result<(T, usize), bincode::error::DecodeError> {
    const KIB: usize = 1 << 10;
    const MIB: usize = 1 << 20;
    match body.len() {
        n if n <= 4 * KIB => decode_limited::<T, { 64 * KIB }>(body),
        n if n <= 64 * KIB => decode_limited::<T, { MIB }>(body),
        n if n <= MIB => decode_limited::<T, { 16 * MIB }>(body),
        n if n <= 16 * MIB => decode_limited::<T, { 256 * MIB }>(body),
        n if n <= 64 * MIB => decode_limited::<T, { 1024 * MIB }>(body),
        _ => bincode::serde::decode_from_slice(body, config()),
    }
}

/// Encode `value` with the current encoding version prefix.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = vec![ENCODING_V1];
    // Serialising our own plain data types into a Vec cannot fail: bincode only errors on
    // writer failures (impossible for Vec) or on types serde cannot express (none of ours).
    bincode::serde::encode_into_std_write(value, &mut out, config())
        .expect("bincode encoding into a Vec is infallible for raft-store types");
    out
}

/// Decode a value written by [`encode`], checking the version prefix and that nothing trails.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if version != ENCODING_V1 {
        return Err(DecodeError::UnknownVersion { found: version });
    }
    let (value, read) = decode_bounded(body).map_err(|e| match e {
        bincode::error::DecodeError::LimitExceeded => DecodeError::Implausible,
        e => DecodeError::Body(e),
    })?;
    if read != body.len() {
        return Err(DecodeError::Trailing(body.len() - read));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_version_checks() {
        let v = (7u64, "seven".to_string(), vec![1u8, 2, 3]);
        let bytes = encode(&v);
        assert_eq!(bytes[0], ENCODING_V1);
        assert_eq!(decode::<(u64, String, Vec<u8>)>(&bytes).unwrap(), v);

        let mut future = bytes.clone();
        future[0] = 9;
        assert!(matches!(
            decode::<(u64, String, Vec<u8>)>(&future),
            Err(DecodeError::UnknownVersion { found: 9 })
        ));
        assert!(matches!(decode::<u64>(&[]), Err(DecodeError::Empty)));

        let mut trailing = encode(&5u64);
        trailing.push(0);
        assert!(matches!(
            decode::<u64>(&trailing),
            Err(DecodeError::Trailing(1))
        ));

        let truncated = &bytes[..bytes.len() - 2];
        assert!(decode::<(u64, String, Vec<u8>)>(truncated).is_err());
    }

    /// A length prefix claiming more bytes than the input holds is refused before anything is
    /// allocated: a peer's 10-byte message must not make the node try to allocate 2^40 bytes
    /// (that aborts the process) or 2^64 (a capacity-overflow panic).
    #[test]
    fn huge_length_prefixes_are_refused_without_allocating() {
        for len in [1u64 << 40, u64::MAX, 1 << 33, (1 << 32) + 7, 70_000] {
            let mut bytes = vec![ENCODING_V1, 0xfd];
            bytes.extend_from_slice(&len.to_le_bytes());
            bytes.extend_from_slice(b"abc");
            assert!(decode::<String>(&bytes).is_err(), "string of {len}");
            assert!(decode::<Vec<u8>>(&bytes).is_err(), "bytes of {len}");
            assert!(decode::<(u64, Option<String>)>(
                &[&[ENCODING_V1, 5, 1][..], &bytes[1..]].concat()
            )
            .is_err());
        }
        // The densest well-formed values (16 bytes in memory per encoded byte) fit their tier.
        let dense = encode(&vec![0u128; 4093]);
        assert_eq!(
            dense.len(),
            1 + 4096,
            "version byte + the largest body of the first tier"
        );
        assert_eq!(decode::<Vec<u128>>(&dense).unwrap().len(), 4093);
        // Lengths up to what the input holds still decode.
        let ok = encode(&"x".repeat(100_000));
        assert_eq!(decode::<String>(&ok).unwrap().len(), 100_000);
    }
}
