//! Node configuration: a TOML file, overridden by `ZSNODE_*` environment variables, overridden
//! by command-line flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

use crate::error::StartError;

/// Default Raft / node-to-node gRPC listen address.
pub const DEFAULT_RAFT_ADDR: &str = "127.0.0.1:7070";
/// Default HTTP listen address.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";
/// Default HTTPS listen address.
pub const DEFAULT_HTTPS_ADDR: &str = "127.0.0.1:8443";
/// Default cluster id.
pub const DEFAULT_CLUSTER_ID: &str = "zstack";
/// Default libvirt URI of installed agents.
pub const DEFAULT_AGENT_LIBVIRT_URI: &str = "qemu:///system";

/// Command line of `zsnode`. Every flag also reads a `ZSNODE_*` environment variable.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "zsnode",
    version,
    about = "ZStack management node (openraft cluster member)"
)]
pub struct Cli {
    /// TOML configuration file; flags and environment override its values.
    #[arg(long, env = "ZSNODE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Raft node id (positive, never reused).
    #[arg(long = "id", env = "ZSNODE_NODE_ID")]
    pub node_id: Option<u64>,
    /// Data directory (Raft log, state, snapshots, identity file).
    #[arg(long, env = "ZSNODE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Listen address of the Raft / node-to-node gRPC endpoint.
    #[arg(long, env = "ZSNODE_RAFT_ADDR")]
    pub raft_addr: Option<SocketAddr>,
    /// Listen address of the HTTP endpoint.
    #[arg(long, env = "ZSNODE_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Raft address other nodes use to reach this one (default: --raft-addr).
    #[arg(long, env = "ZSNODE_ADVERTISE_RAFT_ADDR")]
    pub advertise_raft_addr: Option<String>,
    /// HTTP address other nodes and clients use (default: --http-addr).
    #[arg(long, env = "ZSNODE_ADVERTISE_HTTP_ADDR")]
    pub advertise_http_addr: Option<String>,
    /// Cluster identity; nodes of different clusters refuse to talk to each other.
    #[arg(long, env = "ZSNODE_CLUSTER_ID")]
    pub cluster_id: Option<String>,
    /// Initialise a single-voter cluster with this node at start-up (no-op if initialised).
    #[arg(long, env = "ZSNODE_INIT")]
    pub init: bool,
    /// Upper bound on any client request, in milliseconds (default 5000).
    #[arg(long, env = "ZSNODE_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    /// Build a snapshot (and purge the log behind it) every this many applied entries
    /// (default 5000).
    #[arg(long, env = "ZSNODE_SNAPSHOT_LOGS")]
    pub snapshot_logs: Option<u64>,
    /// URL of the flow engine's self-test receiver (`POST` per side effect); enables
    /// `/cluster/flow-selftest`. Unset: the self-test flow's side effect has no receiver.
    #[arg(long, env = "ZSNODE_FLOW_SELFTEST_RECEIVER")]
    pub flow_selftest_receiver: Option<String>,
    /// Pause before every committed step of a flow, in milliseconds: widens the windows
    /// between steps for fault-injection tests (default 0; never needed in production).
    #[arg(long, env = "ZSNODE_FLOW_STEP_PAUSE_MS")]
    pub flow_step_pause_ms: Option<u64>,
    /// Listen address of the HTTPS API (default 127.0.0.1:8443).
    #[arg(long, env = "ZSNODE_HTTPS_ADDR")]
    pub https_addr: Option<SocketAddr>,
    /// PEM certificate chain of the HTTPS API (default: the node's cluster certificate).
    #[arg(long, env = "ZSNODE_HTTPS_CERT", requires = "https_key")]
    pub https_cert: Option<PathBuf>,
    /// PEM private key of `--https-cert`.
    #[arg(long, env = "ZSNODE_HTTPS_KEY", requires = "https_cert")]
    pub https_key: Option<PathBuf>,
    /// Serve the API over HTTPS only (no plain-HTTP listener).
    #[arg(long, env = "ZSNODE_DISABLE_HTTP")]
    pub disable_http: bool,
    /// On first start, join the cluster of this member (`https://host:port`, its HTTPS API)
    /// instead of creating a new cluster; ignored once the node has credentials.
    #[arg(long, env = "ZSNODE_JOIN", requires = "join_token_source")]
    pub join: Option<String>,
    /// The join token (`zsctl join-token create`); prefer `--join-token-file` (argv is public).
    #[arg(long, env = "ZSNODE_JOIN_TOKEN", group = "join_token_source")]
    pub join_token: Option<String>,
    /// File holding the join token.
    #[arg(long, env = "ZSNODE_JOIN_TOKEN_FILE", group = "join_token_source")]
    pub join_token_file: Option<PathBuf>,
    /// When this node creates a new cluster: use the admin token in this file instead of a
    /// random one (its SHA-256 is kept; the file is not copied).
    #[arg(long, env = "ZSNODE_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// The `zsagent` binary AddKVMHost installs on hosts without a running agent (default: the
    /// `zsagent` next to this `zsnode` executable).
    #[arg(long, env = "ZSNODE_AGENT_BINARY")]
    pub agent_binary: Option<PathBuf>,
    /// libvirt URI the installed agents use (default `qemu:///system`; `test:///default` for
    /// libvirt's test driver in tests and the demo).
    #[arg(long, env = "ZSNODE_AGENT_LIBVIRT_URI")]
    pub agent_libvirt_uri: Option<String>,
}

/// The TOML file's shape; every key is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// See [`Cli::node_id`].
    pub node_id: Option<u64>,
    /// See [`Cli::data_dir`].
    pub data_dir: Option<PathBuf>,
    /// See [`Cli::raft_addr`].
    pub raft_addr: Option<SocketAddr>,
    /// See [`Cli::http_addr`].
    pub http_addr: Option<SocketAddr>,
    /// See [`Cli::advertise_raft_addr`].
    pub advertise_raft_addr: Option<String>,
    /// See [`Cli::advertise_http_addr`].
    pub advertise_http_addr: Option<String>,
    /// See [`Cli::cluster_id`].
    pub cluster_id: Option<String>,
    /// See [`Cli::init`].
    pub init: Option<bool>,
    /// See [`Cli::request_timeout_ms`].
    pub request_timeout_ms: Option<u64>,
    /// See [`Cli::snapshot_logs`].
    pub snapshot_logs: Option<u64>,
    /// See [`Cli::flow_selftest_receiver`].
    pub flow_selftest_receiver: Option<String>,
    /// See [`Cli::flow_step_pause_ms`].
    pub flow_step_pause_ms: Option<u64>,
    /// See [`Cli::https_addr`].
    pub https_addr: Option<SocketAddr>,
    /// See [`Cli::https_cert`].
    pub https_cert: Option<PathBuf>,
    /// See [`Cli::https_key`].
    pub https_key: Option<PathBuf>,
    /// See [`Cli::disable_http`].
    pub disable_http: Option<bool>,
    /// See [`Cli::join`].
    pub join: Option<String>,
    /// See [`Cli::join_token_file`].
    pub join_token_file: Option<PathBuf>,
    /// See [`Cli::admin_token_file`].
    pub admin_token_file: Option<PathBuf>,
    /// See [`Cli::agent_binary`].
    pub agent_binary: Option<PathBuf>,
    /// See [`Cli::agent_libvirt_uri`].
    pub agent_libvirt_uri: Option<String>,
}

/// How a node without credentials obtains them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinConfig {
    /// A member's HTTPS URL.
    pub url: String,
    /// The token (read from its file at resolve time).
    pub token: SecretString,
}

/// The resolved configuration the node runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// Raft node id.
    pub node_id: u64,
    /// Data directory.
    pub data_dir: PathBuf,
    /// gRPC listen address.
    pub raft_addr: SocketAddr,
    /// HTTP listen address.
    pub http_addr: SocketAddr,
    /// Advertised gRPC address.
    pub advertise_raft_addr: String,
    /// Advertised HTTP address.
    pub advertise_http_addr: String,
    /// Cluster id.
    pub cluster_id: String,
    /// Initialise a cluster at start-up.
    pub init: bool,
    /// Bound on client requests.
    pub request_timeout: Duration,
    /// Entries between snapshots.
    pub snapshot_logs: u64,
    /// The flow self-test receiver, if any.
    pub flow_selftest_receiver: Option<String>,
    /// Pause before every committed flow step (fault-injection tests).
    pub flow_step_pause: Duration,
    /// HTTPS listen address.
    pub https_addr: SocketAddr,
    /// Operator-supplied HTTPS certificate and key files.
    pub https_cert: Option<(PathBuf, PathBuf)>,
    /// Whether the plain-HTTP listener runs.
    pub http_enabled: bool,
    /// Join an existing cluster on first start.
    pub join: Option<JoinConfig>,
    /// Admin token of a cluster this node creates.
    pub admin_token: Option<SecretString>,
    /// The `zsagent` binary installed on hosts.
    pub agent_binary: PathBuf,
    /// libvirt URI of installed agents.
    pub agent_libvirt_uri: String,
}

/// A token read from a file or the environment: never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(pub String);

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl NodeConfig {
    /// Resolve the configuration from parsed flags (which already include the environment) and
    /// the TOML file they name.
    pub fn resolve(cli: Cli) -> Result<Self, StartError> {
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| StartError::Config(format!("read {}: {e}", path.display())))?;
                toml::from_str::<FileConfig>(&text)
                    .map_err(|e| StartError::Config(format!("parse {}: {e}", path.display())))?
            }
            None => FileConfig::default(),
        };
        Self::merge(cli, file)
    }

    /// Flags win over the file; defaults fill the rest.
    pub fn merge(cli: Cli, file: FileConfig) -> Result<Self, StartError> {
        let node_id = cli
            .node_id
            .or(file.node_id)
            .ok_or_else(|| StartError::Config("node id is required (--id or node_id)".into()))?;
        if node_id == 0 {
            return Err(StartError::Config(
                "node id 0 is reserved; use 1 or more".into(),
            ));
        }
        let data_dir = cli.data_dir.or(file.data_dir).ok_or_else(|| {
            StartError::Config("data dir is required (--data-dir or data_dir)".into())
        })?;
        let parse = |s: &str| -> Result<SocketAddr, StartError> {
            s.parse()
                .map_err(|e| StartError::Config(format!("address {s:?}: {e}")))
        };
        let raft_addr = match cli.raft_addr.or(file.raft_addr) {
            Some(a) => a,
            None => parse(DEFAULT_RAFT_ADDR)?,
        };
        let http_addr = match cli.http_addr.or(file.http_addr) {
            Some(a) => a,
            None => parse(DEFAULT_HTTP_ADDR)?,
        };
        let advertise = |explicit: Option<String>, listen: SocketAddr, what: &str| {
            match explicit {
                Some(a) => {
                    validate_host_port(&a)
                        .map_err(|e| StartError::Config(format!("{what}: {e}")))?;
                    Ok(a)
                }
                // A wildcard listen address cannot be dialled by peers.
                None if listen.ip().is_unspecified() => Err(StartError::Config(format!(
                    "{what} is required when listening on the wildcard address {listen}"
                ))),
                None => Ok(listen.to_string()),
            }
        };
        let advertise_raft_addr = advertise(
            cli.advertise_raft_addr.or(file.advertise_raft_addr),
            raft_addr,
            "advertise_raft_addr",
        )?;
        let advertise_http_addr = advertise(
            cli.advertise_http_addr.or(file.advertise_http_addr),
            http_addr,
            "advertise_http_addr",
        )?;
        let cluster_id = cli
            .cluster_id
            .or(file.cluster_id)
            .unwrap_or_else(|| DEFAULT_CLUSTER_ID.to_string());
        validate_cluster_id(&cluster_id).map_err(StartError::Config)?;
        let request_timeout_ms = cli
            .request_timeout_ms
            .or(file.request_timeout_ms)
            .unwrap_or(5_000);
        if request_timeout_ms == 0 {
            return Err(StartError::Config(
                "request_timeout_ms must be positive".into(),
            ));
        }
        let snapshot_logs = cli.snapshot_logs.or(file.snapshot_logs).unwrap_or(5_000);
        if snapshot_logs == 0 {
            return Err(StartError::Config("snapshot_logs must be positive".into()));
        }
        let flow_selftest_receiver = cli.flow_selftest_receiver.or(file.flow_selftest_receiver);
        if let Some(url) = &flow_selftest_receiver {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(StartError::Config(format!(
                    "flow_selftest_receiver {url:?} must be an http(s) URL"
                )));
            }
        }
        let flow_step_pause = Duration::from_millis(
            cli.flow_step_pause_ms
                .or(file.flow_step_pause_ms)
                .unwrap_or(0)
                .min(60_000),
        );
        let https_addr = match cli.https_addr.or(file.https_addr) {
            Some(a) => a,
            None => parse(DEFAULT_HTTPS_ADDR)?,
        };
        let https_cert = match (
            cli.https_cert.or(file.https_cert),
            cli.https_key.or(file.https_key),
        ) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                return Err(StartError::Config(
                    "https_cert and https_key go together".into(),
                ))
            }
        };
        let read_secret = |path: &PathBuf, what: &str| -> Result<String, StartError> {
            let t = std::fs::read_to_string(path)
                .map_err(|e| StartError::Config(format!("{what} {}: {e}", path.display())))?;
            let t = t.trim().to_string();
            if t.is_empty() {
                return Err(StartError::Config(format!(
                    "{what} {} is empty",
                    path.display()
                )));
            }
            Ok(t)
        };
        let join = match cli.join.or(file.join) {
            None => None,
            Some(url) => {
                let token = match (cli.join_token, cli.join_token_file.or(file.join_token_file)) {
                    (Some(t), _) => t,
                    (None, Some(p)) => read_secret(&p, "join token file")?,
                    (None, None) => {
                        return Err(StartError::Config(
                            "--join needs --join-token or --join-token-file".into(),
                        ))
                    }
                };
                if !url.starts_with("https://") {
                    return Err(StartError::Config(format!(
                        "join URL {url:?} must be https://host:port (a member's HTTPS API)"
                    )));
                }
                Some(JoinConfig {
                    url,
                    token: SecretString(token),
                })
            }
        };
        let admin_token = match cli.admin_token_file.or(file.admin_token_file) {
            Some(p) => {
                let t = read_secret(&p, "admin token file")?;
                if t.len() < 16 {
                    return Err(StartError::Config(format!(
                        "admin token in {} is shorter than 16 characters",
                        p.display()
                    )));
                }
                Some(SecretString(t))
            }
            None => None,
        };
        let agent_binary = cli
            .agent_binary
            .or(file.agent_binary)
            .unwrap_or_else(crate::agent_installer::default_agent_binary);
        let agent_libvirt_uri = cli
            .agent_libvirt_uri
            .or(file.agent_libvirt_uri)
            .unwrap_or_else(|| DEFAULT_AGENT_LIBVIRT_URI.to_string());
        // A URI with whitespace would reach the agent's command line split or mangled.
        if agent_libvirt_uri.is_empty()
            || !agent_libvirt_uri.contains(":/")
            || agent_libvirt_uri.chars().any(char::is_whitespace)
        {
            return Err(StartError::Config(format!(
                "agent_libvirt_uri {agent_libvirt_uri:?} is not a libvirt URI (qemu:///system)"
            )));
        }
        Ok(Self {
            agent_binary,
            agent_libvirt_uri,
            https_addr,
            https_cert,
            http_enabled: !(cli.disable_http || file.disable_http.unwrap_or(false)),
            join,
            admin_token,
            flow_selftest_receiver,
            flow_step_pause,
            snapshot_logs,
            node_id,
            data_dir,
            raft_addr,
            http_addr,
            advertise_raft_addr,
            advertise_http_addr,
            cluster_id,
            init: cli.init || file.init.unwrap_or(false),
            request_timeout: Duration::from_millis(request_timeout_ms),
        })
    }
}

/// Check a cluster id: 1..=64 characters of `[A-Za-z0-9._-]`.
pub fn validate_cluster_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 64 {
        return Err(format!("cluster id {id:?} must be 1 to 64 characters"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(format!(
            "cluster id {id:?} may only contain letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Check a `host:port` string (host may be a name).
pub fn validate_host_port(s: &str) -> Result<(), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} is not host:port"))?;
    if host.is_empty() {
        return Err(format!("{s:?} has an empty host"));
    }
    port.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{s:?} has an invalid port"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_and_defaults_apply() {
        let file: FileConfig = toml::from_str(
            "node_id = 3\ndata_dir = \"/tmp/x\"\ncluster_id = \"prod\"\nhttp_addr = \"127.0.0.1:9000\"\n",
        )
        .unwrap();
        let cli = Cli {
            node_id: Some(4),
            ..Default::default()
        };
        let c = NodeConfig::merge(cli, file).unwrap();
        assert_eq!(c.node_id, 4);
        assert_eq!(c.cluster_id, "prod");
        assert_eq!(c.http_addr.to_string(), "127.0.0.1:9000");
        assert_eq!(c.raft_addr.to_string(), DEFAULT_RAFT_ADDR);
        assert_eq!(c.advertise_raft_addr, DEFAULT_RAFT_ADDR);
        assert_eq!(c.request_timeout, Duration::from_secs(5));
        assert_eq!(c.agent_libvirt_uri, DEFAULT_AGENT_LIBVIRT_URI);
        assert!(c.agent_binary.ends_with("zsagent"));
    }

    #[test]
    fn bad_configs_are_refused() {
        let base = || Cli {
            node_id: Some(1),
            data_dir: Some("/tmp/x".into()),
            ..Default::default()
        };
        assert!(NodeConfig::merge(
            Cli {
                node_id: Some(0),
                ..base()
            },
            FileConfig::default()
        )
        .is_err());
        assert!(NodeConfig::merge(
            Cli {
                cluster_id: Some("a b".into()),
                ..base()
            },
            FileConfig::default()
        )
        .is_err());
        assert!(NodeConfig::merge(
            Cli {
                raft_addr: Some("0.0.0.0:7070".parse().unwrap()),
                ..base()
            },
            FileConfig::default()
        )
        .is_err());
        assert!(toml::from_str::<FileConfig>("nodeid = 1").is_err());
        assert!(validate_host_port("h:0").is_err() && validate_host_port("h:80").is_ok());
    }
}
