//! Snapshot files: a complete, checksummed image of the replicated state at one log index.
//!
//! Layout (all integers big-endian):
//! ```text
//! "ZSSNAP\0\x01"                              8-byte magic + format version
//! u32 len, codec(SnapshotHeader)             meta (last log id, membership) and table names
//! repeated: u8 1, u16 table, u32 klen, key, u32 vlen, value
//! u8 0, u64 record count, u32 crc32 of every byte before the crc
//! ```
//! A file is only ever published complete (written as `*.tmp`, fsynced, renamed), and a received
//! one is verified end to end before anything is replaced, so a torn or tampered stream can
//! never be installed.

use std::fs::File;
use std::io::BufReader;
use std::io::BufWriter;
use std::io::Read;
use std::io::Write;
use std::path::Path;
use std::path::PathBuf;

use serde::Deserialize;
use serde::Serialize;

use crate::codec;
use crate::error::StoreError;
use crate::types::SnapshotMeta;

const MAGIC: &[u8; 8] = b"ZSSNAP\0\x01";
const TAG_RECORD: u8 = 1;
const TAG_END: u8 = 0;
/// Upper bound on one key or value in a snapshot; larger means corruption.
const MAX_FIELD: u32 = 256 << 20;

/// What precedes the records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SnapshotHeader {
    pub(crate) meta: SnapshotMeta,
    pub(crate) tables: Vec<String>,
}

/// A complete snapshot file on local disk; what openraft hands between build, transfer and
/// install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    path: PathBuf,
}

impl SnapshotFile {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size in bytes.
    pub fn len(&self) -> Result<u64, StoreError> {
        Ok(std::fs::metadata(&self.path)
            .map_err(StoreError::io("stat snapshot", &self.path))?
            .len())
    }

    /// True when the file is empty (never the case for a valid snapshot).
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }

    /// Open the file for streaming to a peer. Hold the handle for the whole transfer: a newer
    /// snapshot may replace (unlink) this path meanwhile, and an open handle keeps reading.
    pub fn open(&self) -> Result<File, StoreError> {
        File::open(&self.path).map_err(StoreError::io("open snapshot", &self.path))
    }
}

/// Streams records into a new snapshot file.
pub(crate) struct SnapshotWriter {
    out: BufWriter<File>,
    hasher: crc32fast::Hasher,
    records: u64,
    path: PathBuf,
}

impl SnapshotWriter {
    pub(crate) fn create(path: &Path, header: &SnapshotHeader) -> Result<Self, StoreError> {
        let f = File::create(path).map_err(StoreError::io("create snapshot", path))?;
        let mut w = Self {
            out: BufWriter::with_capacity(1 << 20, f),
            hasher: crc32fast::Hasher::new(),
            records: 0,
            path: path.to_path_buf(),
        };
        let h = codec::encode(header);
        w.write(MAGIC)?;
        w.write(&(h.len() as u32).to_be_bytes())?;
        w.write(&h)?;
        Ok(w)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.hasher.update(bytes);
        self.out
            .write_all(bytes)
            .map_err(StoreError::io("write snapshot", &self.path))
    }

    pub(crate) fn record(
        &mut self,
        table: u16,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), StoreError> {
        self.write(&[TAG_RECORD])?;
        self.write(&table.to_be_bytes())?;
        self.write(&(key.len() as u32).to_be_bytes())?;
        self.write(key)?;
        self.write(&(value.len() as u32).to_be_bytes())?;
        self.write(value)?;
        self.records += 1;
        Ok(())
    }

    /// Write the trailer and fsync. The caller renames the file into place.
    pub(crate) fn finish(mut self) -> Result<(), StoreError> {
        self.write(&[TAG_END])?;
        let records = self.records;
        self.write(&records.to_be_bytes())?;
        let crc = self.hasher.clone().finalize();
        self.out
            .write_all(&crc.to_be_bytes())
            .map_err(StoreError::io("write snapshot", &self.path))?;
        let f = self.out.into_inner().map_err(|e| StoreError::Io {
            op: "flush snapshot",
            path: self.path.clone(),
            source: e.into_error(),
        })?;
        f.sync_all()
            .map_err(StoreError::io("fsync snapshot", &self.path))
    }
}

/// Reads and verifies a snapshot file.
pub(crate) struct SnapshotReader {
    input: BufReader<File>,
    hasher: crc32fast::Hasher,
    path: PathBuf,
    pub(crate) header: SnapshotHeader,
}

/// One record of a snapshot.
pub(crate) struct Record {
    pub(crate) table: u16,
    pub(crate) key: Vec<u8>,
    pub(crate) value: Vec<u8>,
}

impl SnapshotReader {
    pub(crate) fn open(path: &Path) -> Result<Self, StoreError> {
        let f = File::open(path).map_err(StoreError::io("open snapshot", path))?;
        let mut r = Self {
            input: BufReader::with_capacity(1 << 20, f),
            hasher: crc32fast::Hasher::new(),
            path: path.to_path_buf(),
            header: SnapshotHeader {
                meta: Default::default(),
                tables: vec![],
            },
        };
        let mut magic = [0u8; 8];
        r.read(&mut magic)?;
        if &magic != MAGIC {
            return Err(r.corrupt("header", format!("bad magic {magic:?}")));
        }
        let len = r.read_u32()?;
        if len > MAX_FIELD {
            return Err(r.corrupt("header", format!("header length {len} is implausible")));
        }
        let mut h = vec![0u8; len as usize];
        r.read(&mut h)?;
        r.header = codec::decode(&h).map_err(|e| r.corrupt("header", e.to_string()))?;
        Ok(r)
    }

    fn corrupt(&self, what: &str, detail: String) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            what: format!("snapshot {what}"),
            detail,
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<(), StoreError> {
        self.input.read_exact(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                self.corrupt("body", "file ends early (truncated)".into())
            } else {
                StoreError::Io {
                    op: "read snapshot",
                    path: self.path.clone(),
                    source: e,
                }
            }
        })?;
        self.hasher.update(buf);
        Ok(())
    }

    fn read_u32(&mut self) -> Result<u32, StoreError> {
        let mut b = [0u8; 4];
        self.read(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }

    fn read_field(&mut self) -> Result<Vec<u8>, StoreError> {
        let len = self.read_u32()?;
        if len > MAX_FIELD {
            return Err(self.corrupt("record", format!("field length {len} is implausible")));
        }
        let mut v = vec![0u8; len as usize];
        self.read(&mut v)?;
        Ok(v)
    }

    /// The next record, or `None` after a verified trailer.
    pub(crate) fn next_record(&mut self) -> Result<Option<Record>, StoreError> {
        let mut tag = [0u8; 1];
        self.read(&mut tag)?;
        match tag[0] {
            TAG_RECORD => {
                let mut t = [0u8; 2];
                self.read(&mut t)?;
                let table = u16::from_be_bytes(t);
                if table as usize >= self.header.tables.len() {
                    return Err(self.corrupt("record", format!("table index {table} out of range")));
                }
                let key = self.read_field()?;
                let value = self.read_field()?;
                Ok(Some(Record { table, key, value }))
            }
            TAG_END => {
                let mut n = [0u8; 8];
                self.read(&mut n)?;
                let expected = self.hasher.clone().finalize();
                let mut crc = [0u8; 4];
                self.input
                    .read_exact(&mut crc)
                    .map_err(|_| self.corrupt("trailer", "missing checksum (truncated)".into()))?;
                if u32::from_be_bytes(crc) != expected {
                    return Err(self.corrupt("trailer", "checksum mismatch".into()));
                }
                let mut rest = [0u8; 1];
                if self
                    .input
                    .read(&mut rest)
                    .map_err(StoreError::io("read snapshot", &self.path))?
                    != 0
                {
                    return Err(self.corrupt("trailer", "bytes after the checksum".into()));
                }
                Ok(None)
            }
            other => Err(self.corrupt("record", format!("unknown record tag {other}"))),
        }
    }

    /// Read the whole file, checking structure and checksum; returns the record count.
    pub(crate) fn verify(mut self) -> Result<(SnapshotHeader, u64), StoreError> {
        let mut n = 0;
        while self.next_record()?.is_some() {
            n += 1;
        }
        Ok((self.header, n))
    }
}

/// Receives a snapshot streamed in chunks from a peer into a temporary file. The file is removed
/// when the sink is dropped before [`SnapshotSink::finish`] verified it: a refused or torn stream
/// leaves nothing behind (otherwise every refused stream would cost disk until the next start).
pub struct SnapshotSink {
    /// `None` once `finish` took it.
    file: Option<BufWriter<File>>,
    path: PathBuf,
    written: u64,
    /// Set when `finish` handed the verified file on.
    kept: bool,
}

impl Drop for SnapshotSink {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        drop(self.file.take());
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot remove a refused incoming snapshot");
            }
        }
    }
}

impl SnapshotSink {
    pub(crate) fn create(path: PathBuf) -> Result<Self, StoreError> {
        let f = File::create(&path).map_err(StoreError::io("create incoming snapshot", &path))?;
        Ok(Self {
            file: Some(BufWriter::new(f)),
            path,
            written: 0,
            kept: false,
        })
    }

    /// Bytes received so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Append the chunk that starts at `offset`; chunks must arrive in order.
    pub fn write_chunk(&mut self, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        if offset != self.written {
            return Err(StoreError::Corrupt {
                path: self.path.clone(),
                what: "incoming snapshot chunk".into(),
                detail: format!("chunk at offset {offset}, expected {}", self.written),
            });
        }
        let Some(file) = self.file.as_mut() else {
            return Err(StoreError::Corrupt {
                path: self.path.clone(),
                what: "incoming snapshot chunk".into(),
                detail: "the sink is already finished".into(),
            });
        };
        file.write_all(data)
            .map_err(StoreError::io("write incoming snapshot", &self.path))?;
        self.written += data.len() as u64;
        Ok(())
    }

    /// Flush, fsync and verify the whole file; only a verified file is handed back.
    pub fn finish(mut self) -> Result<(SnapshotFile, SnapshotMeta), StoreError> {
        let file = self.file.take().ok_or_else(|| StoreError::Corrupt {
            path: self.path.clone(),
            what: "incoming snapshot".into(),
            detail: "the sink is already finished".into(),
        })?;
        let f = file.into_inner().map_err(|e| StoreError::Io {
            op: "flush incoming snapshot",
            path: self.path.clone(),
            source: e.into_error(),
        })?;
        f.sync_all()
            .map_err(StoreError::io("fsync incoming snapshot", &self.path))?;
        drop(f);
        let (header, _) = SnapshotReader::open(&self.path)?.verify()?;
        self.kept = true;
        Ok((SnapshotFile::new(self.path.clone()), header.meta))
    }
}
