//! `zsctl` command line: argument definitions and the command runner.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use crate::client::{parse_node_list, Auth, Consistency, Nodes, OpsError, Timeouts};
use crate::report::{gather, pick_transfer_target, render_members};

/// Operator CLI of the ZStack management cluster.
#[derive(Debug, Parser)]
#[command(
    name = "zsctl",
    version,
    about = "Operate a ZStack management-node cluster"
)]
pub struct Cli {
    /// Node(s) to talk to, comma separated; the first that answers is used.
    #[arg(
        long,
        global = true,
        env = "ZSCTL_NODE",
        default_value = "http://127.0.0.1:8080"
    )]
    pub node: String,
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Per-request timeout in seconds.
    #[arg(long, global = true, default_value_t = 15)]
    pub timeout: u64,
    /// Cluster admin token, or `OAuth <session uuid>` of an admin account (prefer
    /// --token-file: the command line is visible to other users).
    #[arg(long, global = true, env = "ZSCTL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the admin token (`pki/admin.token` on the node that created the cluster).
    #[arg(long, global = true, env = "ZSCTL_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// CA certificate to trust for https:// nodes (the cluster's `pki/ca.crt`).
    #[arg(long, global = true, env = "ZSCTL_CACERT")]
    pub cacert: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Table of every management node: role, term, commit/applied index, lag, health.
    Status {
        /// Poll until one leader, every node ready and equal applied indexes (exit 3 on timeout).
        #[arg(long, value_name = "SECS")]
        wait: Option<u64>,
    },
    /// Cluster bootstrap.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Membership changes.
    #[command(subcommand)]
    Member(MemberCmd),
    /// Leadership.
    #[command(subcommand)]
    Leader(LeaderCmd),
    /// Backups of the whole state.
    #[command(subcommand)]
    Snapshot(SnapshotCmd),
    /// The generic key-value commands (smoke tests and demos).
    #[command(subcommand)]
    Kv(KvCmd),
    /// Tokens that let a new node join (`zsnode --join <url> --join-token-file <file>`).
    #[command(subcommand)]
    JoinToken(JoinTokenCmd),
}

/// `zsctl join-token ...`
#[derive(Debug, Subcommand)]
pub enum JoinTokenCmd {
    /// Issue a join token.
    Create {
        /// Lifetime in seconds (default 3600, at most 86400).
        #[arg(long)]
        ttl: Option<u64>,
        /// Admit only this node id (default: any unused id).
        #[arg(long)]
        node_id: Option<u64>,
    },
}

/// `zsctl cluster ...`
#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Initialise a single-voter cluster on the node (fails if already initialised).
    Init,
}

/// `zsctl member ...`
#[derive(Debug, Subcommand)]
pub enum MemberCmd {
    /// Add a node: learner, catch up, then voter.
    Add {
        /// New node's id (never reused).
        #[arg(long)]
        id: u64,
        /// New node's advertised Raft address (host:port).
        #[arg(long)]
        raft_addr: String,
        /// New node's advertised HTTP address (host:port).
        #[arg(long)]
        api_addr: String,
    },
    /// Remove a node from the cluster.
    Remove {
        /// Node id.
        id: u64,
    },
    /// List members as the cluster records them.
    List,
}

/// `zsctl leader ...`
#[derive(Debug, Subcommand)]
pub enum LeaderCmd {
    /// Hand leadership to another voter (default: the most caught-up follower).
    Transfer {
        /// Target node id.
        #[arg(long)]
        to: Option<u64>,
    },
}

/// `zsctl snapshot ...`
#[derive(Debug, Subcommand)]
pub enum SnapshotCmd {
    /// Download a snapshot of the whole state to FILE (atomically).
    Save {
        /// Destination file.
        file: PathBuf,
    },
}

/// `zsctl kv ...`
#[derive(Debug, Subcommand)]
pub enum KvCmd {
    /// Write a value.
    Put {
        /// Key.
        key: String,
        /// Value (UTF-8).
        value: String,
    },
    /// Read a value (linearizable unless --stale).
    Get {
        /// Key.
        key: String,
        /// Read the answering node's local state without a read index.
        #[arg(long)]
        stale: bool,
    },
}

/// What a command produced: text for the terminal and the exit code.
#[derive(Debug)]
pub struct Outcome {
    /// Printed to stdout.
    pub stdout: String,
    /// Process exit code (0 = success).
    pub code: i32,
}

impl Outcome {
    fn ok(stdout: String) -> Self {
        Outcome { stdout, code: 0 }
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    // Serialising our own plain structs cannot fail; fall back to a JSON error just in case.
    serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")) + "\n"
}

/// The credential and trust the flags and environment name.
fn auth(cli: &Cli) -> Result<Auth, OpsError> {
    let token = match (&cli.token, &cli.token_file) {
        (Some(t), _) => Some(t.trim().to_string()),
        (None, Some(p)) => {
            let t = std::fs::read_to_string(p).map_err(|source| OpsError::Io {
                what: "read token file",
                path: p.clone(),
                source,
            })?;
            Some(t.trim().to_string())
        }
        (None, None) => None,
    };
    let ca_pem = match &cli.cacert {
        Some(p) => Some(std::fs::read(p).map_err(|source| OpsError::Io {
            what: "read CA certificate",
            path: p.clone(),
            source,
        })?),
        None => None,
    };
    Ok(Auth { token, ca_pem })
}

/// Run a parsed command line.
pub fn run(cli: &Cli) -> Result<Outcome, OpsError> {
    let t = Timeouts {
        connect: Duration::from_secs(2),
        request: Duration::from_secs(cli.timeout.max(1)),
    };
    let nodes = Nodes::with_auth(&parse_node_list(&cli.node), t, auth(cli)?)?;
    match &cli.command {
        Command::Status { wait } => {
            let deadline = wait.map(|s| Instant::now() + Duration::from_secs(s));
            loop {
                let report = match gather(&nodes) {
                    Ok(r) => r,
                    // While waiting, a node that is still starting is not fatal.
                    Err(e) if deadline.is_some_and(|d| Instant::now() < d) => {
                        let _ = e;
                        std::thread::sleep(Duration::from_millis(300));
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let done = report.healthy_and_converged();
                if deadline.is_none() || done || deadline.is_some_and(|d| Instant::now() >= d) {
                    let text = if cli.json {
                        to_json(&report)
                    } else {
                        report.render()
                    };
                    let code = if deadline.is_some() && !done { 3 } else { 0 };
                    return Ok(Outcome { stdout: text, code });
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        Command::Cluster(ClusterCmd::Init) => {
            let (v, c) = nodes.first(|c| c.init())?;
            Ok(Outcome::ok(if cli.json {
                to_json(&v)
            } else {
                format!("initialised a single-voter cluster on {}\n", c.base())
            }))
        }
        Command::Member(MemberCmd::Add {
            id,
            raft_addr,
            api_addr,
        }) => {
            let (v, _) = nodes.first(|c| c.add_member(*id, raft_addr, api_addr))?;
            Ok(Outcome::ok(if cli.json {
                to_json(&v)
            } else {
                format!("node {id} added as voter (raft {raft_addr}, api {api_addr})\n")
            }))
        }
        Command::Member(MemberCmd::Remove { id }) => {
            let (v, _) = nodes.first(|c| c.remove_member(*id))?;
            Ok(Outcome::ok(if cli.json {
                to_json(&v)
            } else {
                format!("node {id} removed\n")
            }))
        }
        Command::Member(MemberCmd::List) => {
            let (st, _) = nodes.first(|c| c.status())?;
            Ok(Outcome::ok(if cli.json {
                to_json(&st.members)
            } else {
                render_members(&st)
            }))
        }
        Command::Leader(LeaderCmd::Transfer { to }) => {
            let (st, _) = nodes.first(|c| c.status())?;
            let target = match to {
                Some(t) => *t,
                None => pick_transfer_target(&st).ok_or_else(|| {
                    OpsError::Usage("no other voter to transfer leadership to".into())
                })?,
            };
            if st.leader_id == Some(target) {
                return Ok(Outcome::ok(if cli.json {
                    to_json(&serde_json::json!({ "leader_id": target, "changed": false }))
                } else {
                    format!("node {target} is already the leader\n")
                }));
            }
            let (v, _) = nodes.first(|c| c.transfer_leader(target))?;
            Ok(Outcome::ok(if cli.json {
                to_json(&v)
            } else {
                format!(
                    "leadership transfer to node {target} requested (was {:?})\n",
                    st.leader_id
                )
            }))
        }
        Command::Snapshot(SnapshotCmd::Save { file }) => {
            let (bytes, c) = nodes.first(|c| c.save_snapshot(file))?;
            Ok(Outcome::ok(if cli.json {
                to_json(&serde_json::json!({ "file": file, "bytes": bytes, "from": c.base() }))
            } else {
                format!(
                    "saved {bytes} bytes from {} to {}\n",
                    c.base(),
                    file.display()
                )
            }))
        }
        Command::Kv(KvCmd::Put { key, value }) => {
            let (r, _) = nodes.first(|c| c.put(key, value.as_bytes(), None))?;
            Ok(Outcome::ok(if cli.json {
                to_json(&r)
            } else {
                format!("ok index={} served_by={}\n", r.index, r.served_by)
            }))
        }
        Command::Kv(KvCmd::Get { key, stale }) => {
            let cons = if *stale {
                Consistency::Stale
            } else {
                Consistency::Linearizable
            };
            let (r, _) = nodes.first(|c| c.get(key, cons))?;
            Ok(Outcome::ok(if cli.json {
                to_json(&r)
            } else {
                match r.value_bytes() {
                    Some(v) => format!("{}\n", String::from_utf8_lossy(&v)),
                    None => "(absent)\n".to_string(),
                }
            }))
        }
        Command::JoinToken(JoinTokenCmd::Create { ttl, node_id }) => {
            let (v, _) = nodes.first(|c| c.create_join_token(*ttl, *node_id))?;
            Ok(Outcome::ok(if cli.json {
                to_json(&v)
            } else {
                format!("{}\n", v["token"].as_str().unwrap_or_default())
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("zsctl").chain(args.iter().copied()))
    }

    #[test]
    fn parses_every_command() {
        let c = parse(&["--node", "127.0.0.1:9,127.0.0.1:10", "--json", "status"]).unwrap();
        assert!(c.json);
        assert_eq!(parse_node_list(&c.node).len(), 2);
        assert!(matches!(c.command, Command::Status { wait: None }));
        let c = parse(&[
            "member",
            "add",
            "--id",
            "4",
            "--raft-addr",
            "h:1",
            "--api-addr",
            "h:2",
            "--json",
        ])
        .unwrap();
        assert!(c.json, "--json is global and may follow the subcommand");
        assert!(matches!(
            c.command,
            Command::Member(MemberCmd::Add { id: 4, .. })
        ));
        assert!(matches!(
            parse(&["member", "remove", "3"]).unwrap().command,
            Command::Member(MemberCmd::Remove { id: 3 })
        ));
        assert!(matches!(
            parse(&["member", "list"]).unwrap().command,
            Command::Member(MemberCmd::List)
        ));
        assert!(matches!(
            parse(&["leader", "transfer"]).unwrap().command,
            Command::Leader(LeaderCmd::Transfer { to: None })
        ));
        assert!(matches!(
            parse(&["leader", "transfer", "--to", "2"]).unwrap().command,
            Command::Leader(LeaderCmd::Transfer { to: Some(2) })
        ));
        assert!(matches!(
            parse(&["cluster", "init"]).unwrap().command,
            Command::Cluster(ClusterCmd::Init)
        ));
        match parse(&["snapshot", "save", "/tmp/x.snap"]).unwrap().command {
            Command::Snapshot(SnapshotCmd::Save { file }) => {
                assert_eq!(file, PathBuf::from("/tmp/x.snap"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["status", "--wait", "30"]).unwrap().command,
            Command::Status { wait: Some(30) }
        ));
    }

    #[test]
    fn rejects_bad_arguments() {
        assert!(parse(&[]).is_err());
        assert!(parse(&[
            "member",
            "add",
            "--id",
            "x",
            "--raft-addr",
            "a",
            "--api-addr",
            "b"
        ])
        .is_err());
        assert!(
            parse(&["member", "add", "--id", "4"]).is_err(),
            "addresses are required"
        );
        assert!(parse(&["member", "remove"]).is_err());
        assert!(parse(&["snapshot", "save"]).is_err());
        assert!(parse(&["frobnicate"]).is_err());
    }

    #[test]
    fn unreachable_cluster_is_an_error_not_a_panic() {
        let c = parse(&["--node", "127.0.0.1:1", "--timeout", "1", "status"]).unwrap();
        let err = run(&c).unwrap_err();
        assert!(err.is_unreachable(), "{err}");
    }
}
