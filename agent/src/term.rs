//! Term fencing: the highest leader term this agent has seen, kept on disk.
//!
//! Every request carries the caller's Raft term. A term is accepted only when it is at least
//! the highest seen; a higher one is written durably BEFORE the request is served, so after a
//! crash and restart the agent still refuses every leader older than one it has obeyed. A
//! deposed leader (a partitioned old leader that has not noticed yet) therefore cannot drive a
//! host once the new leader has talked to it.

use std::path::PathBuf;
use std::sync::Mutex;

use crate::durable;

/// Why a term was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum TermError {
    /// The caller's term is older than one already seen.
    #[error("stale leader term {got}: this agent has seen term {seen}")]
    Stale {
        /// The request's term.
        got: u64,
        /// The highest term seen.
        seen: u64,
    },
    /// The term file could not be read or written: nothing can be accepted safely.
    #[error("term file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The term file holds something that is not a term.
    #[error("term file {path} is corrupt: {content:?}")]
    Corrupt {
        /// The file.
        path: String,
        /// What it holds.
        content: String,
    },
}

/// The durable highest term.
#[derive(Debug)]
pub struct TermStore {
    path: PathBuf,
    // Held across the write: two requests racing with new terms must not persist out of order.
    seen: Mutex<u64>,
}

impl TermStore {
    /// Open (or start) the term kept in `path`.
    pub fn open(path: PathBuf) -> Result<Self, TermError> {
        let io = |source| TermError::Io {
            path: path.display().to_string(),
            source,
        };
        let seen = match durable::read(&path).map_err(io)? {
            None => 0,
            Some(s) => s.trim().parse().map_err(|_| TermError::Corrupt {
                path: path.display().to_string(),
                content: s.chars().take(40).collect(),
            })?,
        };
        Ok(Self {
            path,
            seen: Mutex::new(seen),
        })
    }

    /// The highest term seen.
    pub fn seen(&self) -> u64 {
        *self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Accept `term` if it is not older than the highest seen, persisting it first when it is
    /// newer. Returns the highest term seen afterwards.
    pub fn observe(&self, term: u64) -> Result<u64, TermError> {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if term < *seen {
            return Err(TermError::Stale {
                got: term,
                seen: *seen,
            });
        }
        if term > *seen {
            durable::write(&self.path, format!("{term}\n").as_bytes()).map_err(|source| {
                TermError::Io {
                    path: self.path.display().to_string(),
                    source,
                }
            })?;
            *seen = term;
        }
        Ok(*seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lower_term_is_refused_also_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("term");
        let t = TermStore::open(p.clone()).unwrap();
        assert_eq!(t.observe(3).unwrap(), 3);
        assert_eq!(t.observe(3).unwrap(), 3);
        assert!(matches!(
            t.observe(2),
            Err(TermError::Stale { got: 2, seen: 3 })
        ));
        drop(t);
        let t = TermStore::open(p.clone()).unwrap();
        assert_eq!(t.seen(), 3);
        let e = t.observe(1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "stale leader term 1: this agent has seen term 3"
        );
        assert_eq!(t.observe(7).unwrap(), 7);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "7\n");
    }

    #[test]
    fn a_corrupt_term_file_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("term");
        std::fs::write(&p, "seven").unwrap();
        assert!(matches!(TermStore::open(p), Err(TermError::Corrupt { .. })));
    }
}
