//! `zsnode pki ...`: offline operations on a management node's own credentials, for an
//! operator with access to its data dir (no admin token needed: the files are the authority).

use std::path::PathBuf;

use clap::Parser;
use clap::Subcommand;

use super::PkiError;

/// `zsnode pki`.
#[derive(Debug, Parser)]
#[command(
    name = "zsnode pki",
    about = "Cluster credentials of a management node"
)]
pub struct PkiCli {
    /// The node's data directory.
    #[arg(long, env = "ZSNODE_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: PkiCmd,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum PkiCmd {
    /// Cluster, node, CA pin and certificate validity.
    Show,
    /// Issue a join token with this node's CA key (same as `zsctl join-token create`).
    JoinToken {
        /// Lifetime in seconds (default 3600, at most 86400).
        #[arg(long, default_value_t = super::token::DEFAULT_TTL_SECS)]
        ttl: u64,
        /// Admit only this node id (default: any unused id).
        #[arg(long, default_value_t = 0)]
        node_id: u64,
    },
    /// Issue a host agent's certificate and key with the cluster CA, for an agent installed by
    /// hand or by a package (`zsagent run --pki-dir OUT`); AddKVMHost's deployment issues its own.
    AgentCert {
        /// The host's management address (IP or name), as AddKVMHost will name it.
        #[arg(long)]
        host: String,
        /// Directory to write `ca.crt`, `agent.crt` and `agent.key` into (created 0700).
        #[arg(long)]
        out: PathBuf,
    },
    /// Re-issue this node's certificate and key (restart the node afterwards).
    Renew {
        /// Addresses (host:port) the certificate must name besides localhost.
        #[arg(long = "address")]
        addresses: Vec<String>,
    },
}

fn identity(dir: &std::path::Path) -> Result<(String, u64), PkiError> {
    let path = dir.join("node-identity.json");
    let text = std::fs::read_to_string(&path).map_err(|e| super::file_err(&path, e.to_string()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| super::file_err(&path, e.to_string()))?;
    match (v["cluster_id"].as_str(), v["node_id"].as_u64()) {
        (Some(c), Some(n)) => Ok((c.to_string(), n)),
        _ => Err(super::file_err(&path, "no cluster_id/node_id")),
    }
}

/// Run `zsnode pki ...`; returns what to print.
pub fn run(cli: PkiCli) -> Result<String, PkiError> {
    let dir = cli
        .data_dir
        .ok_or_else(|| PkiError::Invalid("--data-dir is required".into()))?;
    let (cluster, id) = identity(&dir)?;
    match cli.command {
        PkiCmd::Show => {
            let c = super::load(&dir, &cluster, id)?;
            let der = super::first_cert_der(&c.node_cert_pem)?;
            let (_, cert) = x509_parser::parse_x509_certificate(&der)
                .map_err(|e| PkiError::Invalid(e.to_string()))?;
            Ok(format!(
                "cluster: {cluster}\nnode: {id}\nca_pin: sha256:{}\nnode_cert_not_after: {}\n",
                hex::encode(c.ca_pin),
                cert.validity().not_after
            ))
        }
        PkiCmd::JoinToken { ttl, node_id } => {
            let c = super::load(&dir, &cluster, id)?;
            Ok(format!(
                "{}\n",
                super::token::issue(&c, ttl, node_id, super::token::now_unix())?
            ))
        }
        PkiCmd::AgentCert { host, out } => {
            let c = super::load(&dir, &cluster, id)?;
            super::agent::write(&out, &super::agent::issue(&c, &host)?)?;
            Ok(format!(
                "wrote {}/{{{},{},{}}} for the agent of {host} in cluster {cluster}\n",
                out.display(),
                proto::agent::files::CA_CERT,
                proto::agent::files::CERT,
                proto::agent::files::KEY
            ))
        }
        PkiCmd::Renew { addresses } => {
            let addrs: Vec<&str> = addresses.iter().map(String::as_str).collect();
            super::renew(&dir, &cluster, id, &addrs)?;
            Ok(format!(
                "re-issued {}/{}; restart the node to use it\n",
                super::DIR,
                super::NODE_CERT
            ))
        }
    }
}
