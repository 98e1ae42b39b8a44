//! Secrets the API accepts for managed resources (host and backup-storage SSH passwords) are
//! kept only sealed: the node that receives the call seals them with the cluster's data key
//! while planning, before anything is proposed, so the Raft log, the state tables, the dedup
//! answers and snapshots carry ciphertext alone. The key lives in a file outside the
//! replicated state (`<data_dir>/pki/data.key`, mode 0600); whoever needs the plaintext (the
//! host agent) opens the sealed value with the same key.
//!
//! Sealed text: `zsenc:v1:<key id>:<base64(nonce ‖ ciphertext ‖ tag)>`, XChaCha20-Poly1305
//! with a random 24-byte nonce (random nonces are safe at that size) and the header
//! `zsenc:v1:<key id>` as associated data, so neither the version nor the key id can be
//! swapped without failing authentication. The key id (first 8 hex digits of SHA-256 of the
//! key) lets a node holding another key say so instead of reporting tampering.
//!
//! This is the one module of `api` that reads files and the OS random source: sealing runs at
//! plan time on the serving node, never inside the deterministic apply, which only checks that
//! what it stores is well-formed sealed text.

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chacha20poly1305::aead::Aead;
use chacha20poly1305::aead::AeadCore;
use chacha20poly1305::aead::KeyInit;
use chacha20poly1305::aead::OsRng;
use chacha20poly1305::aead::Payload;
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::XNonce;
use serde::Deserialize;
use serde::Serialize;
use sha2::Digest;
use zeroize::Zeroizing;

use crate::validate;
use crate::ApiError;

/// Prefix of every sealed value.
pub const PREFIX: &str = "zsenc:v1:";
/// Key length (XChaCha20-Poly1305).
pub const KEY_LEN: usize = 32;
/// First line of a key file, before the base64 key.
pub const KEY_FILE_HEADER: &str = "zstack-data-key:v1:";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const KEY_ID_LEN: usize = 8;

/// Why a key could not be loaded or written, or a sealed value not opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The key file could not be read or written.
    #[error("data key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The key file can be read by other users.
    #[error(
        "data key file {path} has mode {mode:04o}: it must be readable by its owner only (chmod 600 {path})"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file is not a data key.
    #[error("data key file {path} is not a data key: {reason}")]
    BadKeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `write_new` found a key file in place (a key is never replaced: what it sealed would be lost).
    #[error("data key file {path} already exists; refusing to overwrite it")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The value is not sealed text (`zsenc:v1:<key id>:<base64>`).
    #[error("not a sealed secret: {0}")]
    Malformed(&'static str),
    /// The value was sealed with another key.
    #[error("secret was sealed with data key {sealed_with}, this node holds data key {held}")]
    WrongKey {
        /// Key id in the sealed value.
        sealed_with: String,
        /// Key id of the key at hand.
        held: String,
    },
    /// Authentication failed: the sealed value was altered.
    #[error("sealed secret (data key {key_id}) failed authentication: it was altered or damaged")]
    Tampered {
        /// Key id in the sealed value.
        key_id: String,
    },
}

/// The cluster's data key. Never serialised, never printed (its `Debug` shows the key id).
pub struct DataKey {
    cipher: XChaCha20Poly1305,
    bytes: Zeroizing<[u8; KEY_LEN]>,
    id: String,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DataKey(id {}, <redacted>)", self.id)
    }
}

impl DataKey {
    /// A key from its bytes (a key the join flow received, tests).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> DataKey {
        let bytes = Zeroizing::new(bytes);
        let digest = sha2::Sha256::digest(bytes.as_slice());
        let id = digest[..KEY_ID_LEN / 2]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        DataKey {
            cipher: XChaCha20Poly1305::new(bytes.as_slice().into()),
            bytes,
            id,
        }
    }

    /// A fresh random key from the OS.
    pub fn generate() -> DataKey {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        let mut bytes = [0u8; KEY_LEN];
        bytes.copy_from_slice(&key);
        DataKey::from_bytes(bytes)
    }

    /// Its id: first 8 hex digits of SHA-256 of the key (names the key, reveals nothing usable).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The raw key, for handing it to a joining node over the authenticated join.
    pub fn expose_bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    /// Read a key file; refuses a file other users can read, and anything that is not exactly
    /// one key in the file format.
    pub fn load(path: &Path) -> Result<DataKey, SecretError> {
        let io = |source| SecretError::Io {
            path: path.to_path_buf(),
            source,
        };
        let bad = |reason: String| SecretError::BadKeyFile {
            path: path.to_path_buf(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if !meta.is_file() {
            return Err(bad("not a regular file".into()));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(SecretError::Permissions {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
        // A key file is one short line; a large one is not ours (and is not read whole).
        if meta.len() > 256 {
            return Err(bad(format!("{} bytes, a key file is one line", meta.len())));
        }
        let text = Zeroizing::new(std::fs::read(path).map_err(io)?);
        let text = std::str::from_utf8(&text).map_err(|_| bad("not UTF-8 text".into()))?;
        let line = text.strip_suffix('\n').unwrap_or(text);
        let b64 = line
            .strip_prefix(KEY_FILE_HEADER)
            .ok_or_else(|| bad(format!("it does not start with {KEY_FILE_HEADER:?}")))?;
        let raw = Zeroizing::new(
            B64.decode(b64)
                .map_err(|e| bad(format!("the key is not base64: {e}")))?,
        );
        let bytes: [u8; KEY_LEN] = raw.as_slice().try_into().map_err(|_| {
            bad(format!(
                "the key is {} bytes, expected {KEY_LEN}",
                raw.len()
            ))
        })?;
        Ok(DataKey::from_bytes(bytes))
    }

    /// Write this key to `path` (mode 0600, its directory created 0700 if missing). The file
    /// appears whole or not at all, and an existing one is never replaced.
    pub fn write_new(&self, path: &Path) -> Result<(), SecretError> {
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| SecretError::Io { path: p, source }
        };
        if path.exists() {
            return Err(SecretError::Exists {
                path: path.to_path_buf(),
            });
        }
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(dir).map_err(io(dir))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "data.key".into());
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let line = self.file_line();
        let written = opts.open(&tmp).and_then(|mut f| {
            f.write_all(line.as_bytes())?;
            f.sync_all()
        });
        // A hard link is an atomic create-if-absent: a concurrent writer cannot be overwritten.
        let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(SecretError::Exists {
                    path: path.to_path_buf(),
                })
            }
            Err(e) => return Err(io(path)(e)),
        }
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))
    }

    /// The key file's content (one line); what a member hands a joining node.
    pub fn file_line(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{KEY_FILE_HEADER}{}\n",
            B64.encode(self.bytes.as_slice())
        ))
    }

    /// Load the key at `path`, or create one there if there is none.
    pub fn load_or_create(path: &Path) -> Result<DataKey, SecretError> {
        if path.exists() {
            return DataKey::load(path);
        }
        let key = DataKey::generate();
        match key.write_new(path) {
            Ok(()) => Ok(key),
            // Another process created it meanwhile: use that one.
            Err(SecretError::Exists { .. }) => DataKey::load(path),
            Err(e) => Err(e),
        }
    }

    fn header(key_id: &str) -> String {
        format!("{PREFIX}{key_id}")
    }

    /// Seal `plaintext` with a fresh random nonce.
    pub fn seal(&self, plaintext: &str) -> Sealed {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        self.seal_with_nonce(plaintext, &nonce)
    }

    fn seal_with_nonce(&self, plaintext: &str, nonce: &XNonce) -> Sealed {
        let header = Self::header(&self.id);
        let ct = self
            .cipher
            .encrypt(
                nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: header.as_bytes(),
                },
            )
            // XChaCha20-Poly1305 fails only for messages over 256 GiB (callers cap passwords
            // at 255 characters); were it to fail, the empty ciphertext makes the value
            // malformed, so `check` refuses to store it rather than storing anything readable.
            .unwrap_or_default();
        let mut blob = Vec::with_capacity(NONCE_LEN + ct.len());
        blob.extend_from_slice(nonce);
        blob.extend_from_slice(&ct);
        Sealed(format!("{header}:{}", B64.encode(blob)))
    }

    /// Open a sealed value sealed with this key.
    pub fn open(&self, sealed: &Sealed) -> Result<Secret, SecretError> {
        let (key_id, blob) = sealed.parts()?;
        if key_id != self.id {
            return Err(SecretError::WrongKey {
                sealed_with: key_id.to_string(),
                held: self.id.clone(),
            });
        }
        let (nonce, ct) = blob.split_at(NONCE_LEN);
        let header = Self::header(key_id);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: header.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Tampered {
                key_id: key_id.to_string(),
            })?;
        let plain = Zeroizing::new(plain);
        let text = std::str::from_utf8(&plain).map_err(|_| SecretError::Tampered {
            key_id: key_id.to_string(),
        })?;
        Ok(Secret(Zeroizing::new(text.to_string())))
    }
}

/// A secret as the replicated state holds it: sealed text. Serialised as that string; its
/// `Debug` names only the key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sealed(String);

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.parts() {
            Ok((id, _)) => write!(f, "Sealed(key {id}, <redacted>)"),
            Err(_) => f.write_str("Sealed(<malformed>, <redacted>)"),
        }
    }
}

impl Sealed {
    /// Sealed text as stored (e.g. read back from a record). Not checked here: see
    /// [`Sealed::check`].
    pub fn from_stored(text: String) -> Sealed {
        Sealed(text)
    }

    /// The stored text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Key id and `nonce ‖ ciphertext ‖ tag`, or why this is not sealed text.
    fn parts(&self) -> Result<(&str, Vec<u8>), SecretError> {
        let rest = self
            .0
            .strip_prefix(PREFIX)
            .ok_or(SecretError::Malformed("it does not start with zsenc:v1:"))?;
        let (key_id, b64) = rest
            .split_once(':')
            .ok_or(SecretError::Malformed("no key id"))?;
        if key_id.len() != KEY_ID_LEN || !key_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SecretError::Malformed("the key id is not 8 hex digits"));
        }
        let blob = B64
            .decode(b64)
            .map_err(|_| SecretError::Malformed("the ciphertext is not base64"))?;
        if blob.len() < NONCE_LEN + TAG_LEN {
            return Err(SecretError::Malformed("the ciphertext is too short"));
        }
        Ok((key_id, blob))
    }

    /// The id of the key that sealed it, if well-formed.
    pub fn key_id(&self) -> Option<&str> {
        self.parts().ok().map(|(id, _)| id)
    }

    /// Refuse (as an invalid argument naming `field`) anything that is not well-formed sealed
    /// text, so plaintext can never be stored even if a command carrying it were proposed.
    pub fn check(&self, field: &str) -> Result<(), ApiError> {
        self.parts()
            .map(|_| ())
            .map_err(|e| validate::invalid_arg(format!("field[{field}] must be sealed: {e}")))
    }
}

/// A plaintext secret, opened where it is used. Zeroed on drop; never serialised; its `Debug`
/// and `Display` print `<redacted>`.
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// The plaintext, for the one place that hands it to the host.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Whether a JSON field name holds a secret: passwords (`password`, `oldPassword`,
/// `sshPassword`, ...), other secrets, and session uuids, which are bearer credentials. The
/// audit dump and the catalogue's type errors never print such a field's value.
pub fn is_secret_field(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("password") || n.contains("secret") || n == "session" || n.contains("sessionuuid")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> DataKey {
        DataKey::from_bytes([b; KEY_LEN])
    }

    #[cfg(unix)]
    fn chmod(p: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn seal_then_open_round_trips_and_hides_the_plaintext() {
        let k = key(1);
        let s = k.seal("hunter2-Ünïcode");
        assert!(s.as_str().starts_with(&format!("zsenc:v1:{}:", k.id())));
        assert!(!s.as_str().contains("hunter2"));
        assert_eq!(k.open(&s).unwrap().expose(), "hunter2-Ünïcode");
        // A fresh nonce each time: equal passwords do not give equal ciphertexts.
        assert_ne!(k.seal("hunter2-Ünïcode"), s);
        s.check("password").unwrap();
        assert_eq!(s.key_id(), Some(k.id()));
    }

    #[test]
    fn nothing_prints_the_secret_or_the_key() {
        let k = key(2);
        let s = k.seal("hunter2");
        let opened = k.open(&s).unwrap();
        for text in [
            format!("{k:?}"),
            format!("{s:?}"),
            format!("{opened:?}"),
            format!("{opened}"),
        ] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(!text.contains(&B64.encode([2u8; KEY_LEN])), "{text}");
            assert!(text.contains("redacted"), "{text}");
        }
    }

    #[test]
    fn a_wrong_key_is_named() {
        let s = key(3).seal("pw");
        let e = key(4).open(&s).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, SecretError::WrongKey { .. }), "{msg}");
        assert!(
            msg.contains(key(3).id()) && msg.contains(key(4).id()),
            "{msg}"
        );
    }

    #[test]
    fn tampering_is_detected() {
        let k = key(5);
        let s = k.seal("pw-to-protect");
        let (head, b64) = s.as_str().rsplit_once(':').unwrap();
        let mut blob = B64.decode(b64).unwrap();
        // A flipped bit anywhere: nonce, ciphertext, tag.
        for i in [0, NONCE_LEN, blob.len() - 1] {
            blob[i] ^= 1;
            let bad = Sealed(format!("{head}:{}", B64.encode(&blob)));
            assert!(
                matches!(k.open(&bad), Err(SecretError::Tampered { .. })),
                "byte {i}"
            );
            blob[i] ^= 1;
        }
        // The header is authenticated: a value moved under another key id does not open
        // under a key that has that id.
        let other = key(6);
        let moved = Sealed(s.as_str().replacen(k.id(), other.id(), 1));
        assert!(matches!(
            other.open(&moved),
            Err(SecretError::Tampered { .. })
        ));
    }

    #[test]
    fn malformed_values_are_refused_by_check() {
        let k = key(7);
        for bad in [
            "plaintext-password",
            "zsenc:v1:",
            "zsenc:v1:abc:AAAA",
            "zsenc:v1:zzzzzzzz:AAAA",
            "zsenc:v1:0123abcd:not base64!",
            "zsenc:v1:0123abcd:AAAA",
            "zsenc:v2:0123abcd:AAAA",
        ] {
            let s = Sealed::from_stored(bad.into());
            assert!(s.check("password").is_err(), "{bad}");
            assert!(
                matches!(k.open(&s), Err(SecretError::Malformed(_))),
                "{bad}"
            );
            assert!(!format!("{s:?}").contains(bad), "{bad}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn key_files_write_once_and_load_back() {
        use std::os::unix::fs::PermissionsExt;
        let td = tempfile::tempdir().unwrap();
        let path = td.path().join("pki/data.key");
        let k = DataKey::generate();
        k.write_new(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let dir = std::fs::metadata(path.parent().unwrap()).unwrap();
        assert_eq!(dir.permissions().mode() & 0o777, 0o700);
        let back = DataKey::load(&path).unwrap();
        assert_eq!(back.id(), k.id());
        assert_eq!(back.open(&k.seal("x")).unwrap().expose(), "x");
        // Never replaced, not even by the same key.
        let e = DataKey::generate().write_new(&path).unwrap_err();
        assert!(matches!(e, SecretError::Exists { .. }), "{e}");
        assert_eq!(DataKey::load(&path).unwrap().id(), k.id());
        assert_eq!(DataKey::load_or_create(&path).unwrap().id(), k.id());
        // No temp file left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("data.key")]);
    }

    #[cfg(unix)]
    #[test]
    fn bad_key_files_are_refused_naming_the_cause_and_path() {
        let td = tempfile::tempdir().unwrap();
        let path = td.path().join("data.key");
        DataKey::generate().write_new(&path).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660] {
            chmod(&path, mode);
            let e = DataKey::load(&path).unwrap_err().to_string();
            assert!(
                e.contains(&path.display().to_string()) && e.contains("chmod 600"),
                "{e}"
            );
        }
        chmod(&path, 0o600);
        DataKey::load(&path).unwrap();

        let write = |content: &[u8]| {
            std::fs::write(&path, content).unwrap();
            chmod(&path, 0o600);
            DataKey::load(&path).unwrap_err().to_string()
        };
        let short = format!("{KEY_FILE_HEADER}{}\n", B64.encode([1u8; 16]));
        let cases: [(&[u8], &str); 5] = [
            (b"", "does not start with"),
            (b"0123456789abcdef0123456789abcdef", "does not start with"),
            (short.as_bytes(), "16 bytes, expected 32"),
            (b"zstack-data-key:v1:%%%%\n", "not base64"),
            (&[0xff, 0xfe, 0x00], "not UTF-8"),
        ];
        for (content, cause) in cases {
            let e = write(content);
            assert!(
                e.contains(cause) && e.contains(&path.display().to_string()),
                "{cause}: {e}"
            );
        }
        let e = write(&[b'a'; 4096]);
        assert!(e.contains("4096 bytes"), "{e}");
        let missing = td.path().join("absent.key");
        let e = DataKey::load(&missing).unwrap_err().to_string();
        assert!(e.contains("absent.key"), "{e}");
        let e = DataKey::load(td.path()).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }

    #[test]
    fn secret_field_names() {
        for n in [
            "password",
            "sshPassword",
            "oldPassword",
            "clientSecret",
            "session",
        ] {
            assert!(is_secret_field(n), "{n}");
        }
        for n in ["username", "name", "hostname", "sshPort"] {
            assert!(!is_secret_field(n), "{n}");
        }
    }
}
