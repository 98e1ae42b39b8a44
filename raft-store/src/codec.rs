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
    /// The body decoded but left bytes behind, a sign of a type mismatch or corruption.
    #[error("{0} trailing bytes after the value")]
    Trailing(usize),
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
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
    let (value, read) = bincode::serde::decode_from_slice(body, config())?;
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
}
