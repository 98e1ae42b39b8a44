//! `zsnode`: one management node. Wires the Raft store, the tonic transport, the HTTP API and
//! the leader-duty supervisor together; [`start`] runs a node inside the current tokio runtime.

#![deny(missing_docs)]

pub mod admin_auth;
pub mod agent_client;
pub mod agent_installer;
pub mod applier;
pub mod audit;
pub mod clone_agents;
pub mod config;
pub mod duties;
pub mod error;
pub mod grpc;
pub mod host_agent;
pub mod host_connect;
pub mod host_deploy;
pub mod http;
pub mod identity;
pub mod image_agents;
pub mod metrics;
pub mod network;
pub mod nic_agents;
pub mod node;
pub mod pki;
pub mod receivers;
pub mod rest_answers;
pub mod secrets;
#[cfg(feature = "seeded-bugs")]
pub mod seeded;
pub mod state_view;
pub mod storage_agents;
pub mod store_connect;
pub mod timing;
pub mod vm_agents;
pub mod volume_agents;
pub mod zstack_api;

#[cfg(all(feature = "seeded-bugs", not(debug_assertions)))]
compile_error!(
    "the `seeded-bugs` feature (deliberately broken node) is for debug test builds only"
);

use std::sync::Arc;
use std::time::Duration;

use proto::cluster::v1::cluster_server::ClusterServer;
use raft_store::openraft;
use raft_store::MemberNode;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::applier::ModelApplier;
use crate::config::NodeConfig;
use crate::error::NodeError;
use crate::error::StartError;
use crate::network::NetworkFactory;
use crate::network::Peers;
use crate::network::MAX_MESSAGE;
use crate::node::Node;

/// A started node and its background tasks.
pub struct RunningNode {
    /// The node.
    pub node: Arc<Node>,
    /// Where its HTTPS API listens (the configured address, resolved when port 0).
    pub https_addr: std::net::SocketAddr,
    shutdown: CancellationToken,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

/// Start a node: open its data directory, start Raft, the gRPC and HTTP servers and the
/// leader-duty supervisor; with `config.init`, initialise a cluster if none exists yet.
pub async fn start(config: NodeConfig) -> Result<RunningNode, StartError> {
    start_with_host_agent(config, Arc::new(host_agent::SshPortProbe::default())).await
}

/// [`start`] with another way of reaching KVM hosts (the agent issue's implementation, or a
/// test's): the only place the node's [`host_agent::HostAgent`] is chosen.
pub async fn start_with_host_agent(
    config: NodeConfig,
    host_agent: Arc<dyn host_agent::HostAgent>,
) -> Result<RunningNode, StartError> {
    #[cfg(feature = "seeded-bugs")]
    seeded::install();
    let identity = identity::load_or_create(&config.data_dir, config.node_id, &config.cluster_id)?;
    let credentials = Arc::new(credentials(&config).await?);
    let data_key = Arc::new(secrets::load(&config.data_dir)?);
    let timing = timing::measure(&config.data_dir).map_err(|e| StartError::DataDir {
        path: config.data_dir.clone(),
        reason: format!("fsync probe failed: {e}"),
    })?;
    tracing::info!(
        fsync_median_us = timing.fsync_median.as_micros() as u64,
        fsync_max_us = timing.fsync_max.as_micros() as u64,
        heartbeat_ms = timing.heartbeat.as_millis() as u64,
        election_timeout_min_ms = timing.election_min.as_millis() as u64,
        election_timeout_max_ms = (timing.election_min * 2).as_millis() as u64,
        "raft timing chosen from measured fsync latency"
    );
    let (log, sm) = raft_store::open(&config.data_dir.join("raft"), ModelApplier::default())?;

    let raft_config = openraft::Config {
        cluster_name: config.cluster_id.clone(),
        heartbeat_interval: timing.heartbeat.as_millis() as u64,
        election_timeout_min: timing.election_min.as_millis() as u64,
        election_timeout_max: (timing.election_min * 2).as_millis() as u64,
        install_snapshot_timeout: 60_000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_logs),
        max_in_snapshot_log_to_keep: (config.snapshot_logs / 2).min(1000),
        enable_pre_vote: Some(true),
        ..Default::default()
    }
    .validate()
    .map_err(|e| StartError::Config(format!("raft timing: {e}")))?;

    // Bind before starting Raft so a port clash fails the start instead of a half-up node.
    let grpc_listener = tokio::net::TcpListener::bind(config.raft_addr)
        .await
        .map_err(|source| StartError::Bind {
            what: "raft gRPC",
            addr: config.raft_addr,
            source,
        })?;
    let http_listener = if config.http_enabled {
        Some(
            tokio::net::TcpListener::bind(config.http_addr)
                .await
                .map_err(|source| StartError::Bind {
                    what: "HTTP",
                    addr: config.http_addr,
                    source,
                })?,
        )
    } else {
        None
    };
    let https_acceptor = https_acceptor(&config, &credentials)?;
    let https_listener = tokio::net::TcpListener::bind(config.https_addr)
        .await
        .map_err(|source| StartError::Bind {
            what: "HTTPS",
            addr: config.https_addr,
            source,
        })?;
    let https_addr = https_listener.local_addr().unwrap_or(config.https_addr);

    let peers = Arc::new(Peers::new(
        config.node_id,
        config.cluster_id.clone(),
        pki::tls::grpc_client(&credentials),
    ));
    let raft = raft_store::Raft::new(
        config.node_id,
        Arc::new(raft_config),
        NetworkFactory::new(peers.clone(), timing.election_min / 2),
        log.clone(),
        sm.clone(),
    )
    .await
    .map_err(|e| StartError::Raft(e.to_string()))?;
    let advertise = MemberNode {
        raft_addr: config.advertise_raft_addr.clone(),
        api_addr: config.advertise_http_addr.clone(),
    };
    // One client set (one channel per agent) for every receiver and duty that drives agents.
    let agents = Arc::new(agent_client::AgentClients::new(&credentials));
    let images = Arc::new(image_agents::ImageStores::new(
        agents.clone(),
        sm.clone(),
        proto::agent::DEFAULT_PORT,
    ));
    let vms = Arc::new(vm_agents::VmAgents::new(
        agents.clone(),
        images.clone(),
        proto::agent::DEFAULT_PORT,
    ));
    let storage = Arc::new(storage_agents::HostStorages::new(
        agents.clone(),
        proto::agent::DEFAULT_PORT,
    ));
    // One receiver reaches (and installs) agents for hosts and image stores alike.
    let hosts = Arc::new(host_connect::HostConnector::new(
        agents.clone(),
        credentials.clone(),
        data_key.clone(),
        proto::agent::DEFAULT_PORT,
        Some(Arc::new(agent_installer::SshInstaller::new(
            config.agent_binary.clone(),
            config.agent_libvirt_uri.clone(),
            &config.data_dir,
            proto::agent::DEFAULT_PORT,
        ))),
    ));
    let stores = store_connect::StoreConnector::new(
        hosts.clone(),
        images.clone(),
        proto::agent::DEFAULT_PORT,
    );
    let node = Arc::new(
        Node::new(
            identity,
            advertise,
            raft,
            sm,
            log,
            peers,
            config.request_timeout,
            timing,
            credentials.clone(),
            data_key.clone(),
        )
        .with_host_agent(host_agent)
        .with_receivers(
            receivers::Receivers::new(config.flow_selftest_receiver.clone())
                .with_agents(agents)
                .with_hosts(hosts)
                .with_stores(stores)
                .with_images(images)
                .with_vms(vms)
                .with_storage(storage),
        ),
    );
    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();

    let svc = ClusterServer::new(grpc::ClusterService::new(node.clone()))
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let grpc_tls = pki::tls::grpc_server(&credentials);
    let stop = shutdown.clone();
    // TCP_NODELAY on accepted sockets: Raft messages are small and latency-bound, and Nagle plus
    // delayed ACKs would add tens of milliseconds to every round trip.
    let incoming =
        tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
    tasks.push((
        "grpc",
        tokio::spawn(async move {
            let server = match tonic::transport::Server::builder().tls_config(grpc_tls) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "gRPC TLS configuration refused");
                    return;
                }
            };
            let r = server
                .tcp_nodelay(true)
                .add_service(svc)
                .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
                .await;
            if let Err(e) = r {
                tracing::error!(error = %e, "gRPC server failed");
            }
        }),
    ));

    let app = http::router(node.clone());
    tasks.push((
        "https",
        tokio::spawn(http::serve_tls(
            https_listener,
            https_acceptor,
            app.clone(),
            shutdown.clone(),
        )),
    ));
    let stop = shutdown.clone();
    if let Some(http_listener) = http_listener {
        tasks.push((
            "http",
            tokio::spawn(async move {
                use axum::serve::ListenerExt;
                let listener = http_listener.tap_io(|tcp| {
                    if let Err(e) = tcp.set_nodelay(true) {
                        tracing::debug!(error = %e, "cannot set TCP_NODELAY on an HTTP connection");
                    }
                });
                // Connect info gives the audit log each call's client address.
                let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
                let r = axum::serve(listener, app)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await;
                if let Err(e) = r {
                    tracing::error!(error = %e, "HTTP server failed");
                }
            }),
        ));
    }

    tasks.push((
        "audit-flusher",
        tokio::spawn(audit::run_flusher(node.clone(), shutdown.clone())),
    ));

    let mut supervisor = ha::Supervisor::new();
    for duty in duties::all(&node, config.flow_step_pause) {
        supervisor.register(duty);
    }
    node.set_duties(supervisor.state());
    let leadership = duties::leadership_watch(&node, shutdown.clone());
    let barrier = Arc::new(duties::RaftBarrier(node.clone()));
    let leader = Arc::new(duties::NodeLeader(node.clone()));
    tasks.push((
        "supervisor",
        tokio::spawn(supervisor.run(leadership, barrier, leader, shutdown.clone())),
    ));

    tracing::info!(
        node_id = node.id,
        cluster_id = %node.cluster_id,
        raft_addr = %config.raft_addr,
        http_addr = %config.http_addr,
        http_enabled = config.http_enabled,
        https_addr = %config.https_addr,
        uuid = %node.identity().uuid,
        data_key_id = %node.data_key().id(),
        "zsnode started"
    );

    let running = RunningNode {
        https_addr,
        node,
        shutdown,
        tasks,
    };
    if config.init {
        match running.node.init_cluster().await {
            Ok(()) => tracing::info!("initialised a single-voter cluster"),
            Err(NodeError::Conflict(reason)) => {
                tracing::info!(%reason, "--init: already initialised")
            }
            Err(e) => {
                running.shutdown().await;
                return Err(StartError::Init(e));
            }
        }
    }
    Ok(running)
}

/// The node's credentials: loaded from `pki/`, obtained by joining (`--join`), or created
/// for a new cluster on a fresh data dir.
async fn credentials(config: &NodeConfig) -> Result<pki::Credentials, StartError> {
    let dir = &config.data_dir;
    if pki::exists(dir) {
        if config.join.is_some() {
            tracing::info!("node already has cluster credentials; --join ignored");
        }
        return Ok(pki::load(dir, &config.cluster_id, config.node_id)?);
    }
    // Raft data without credentials: a data dir from before TLS, or one whose pki/ was
    // removed. Adopting it with a new CA would split it from its cluster.
    if dir.join("raft").exists() {
        return Err(StartError::DataDir {
            path: dir.clone(),
            reason: format!(
                "has Raft data but no {}/ (cluster credentials); restore them, or start from a fresh data dir and join",
                pki::DIR
            ),
        });
    }
    match &config.join {
        Some(j) => {
            tracing::info!(url = %j.url, "joining: requesting credentials from a member");
            pki::join::join(
                dir,
                &pki::join::JoinTarget {
                    url: &j.url,
                    token: &j.token.0,
                    cluster_id: &config.cluster_id,
                    node_id: config.node_id,
                    raft_addr: &config.advertise_raft_addr,
                    api_addr: &config.advertise_http_addr,
                },
            )
            .await?;
            tracing::info!("joined: credentials written to {}/", pki::DIR);
        }
        None => {
            pki::bootstrap(
                dir,
                &config.cluster_id,
                config.node_id,
                &[&config.advertise_raft_addr, &config.advertise_http_addr],
                pki::new_data_key(),
                config.admin_token.as_ref().map(|t| t.0.clone()),
            )?;
            tracing::info!(
                admin_token_file = %pki::dir_of(dir).join(pki::ADMIN_TOKEN).display(),
                "created a new cluster CA, this node's certificate, the data key and an admin token"
            );
        }
    }
    Ok(pki::load(dir, &config.cluster_id, config.node_id)?)
}

fn https_acceptor(
    config: &NodeConfig,
    c: &pki::Credentials,
) -> Result<tokio_rustls::TlsAcceptor, StartError> {
    match &config.https_cert {
        None => Ok(pki::tls::https_acceptor(&c.node_cert_pem, &c.node_key_pem)?),
        Some((cert, key)) => {
            let read = |p: &std::path::Path| {
                std::fs::read_to_string(p)
                    .map_err(|e| StartError::Config(format!("HTTPS file {}: {e}", p.display())))
            };
            Ok(pki::tls::https_acceptor(&read(cert)?, &read(key)?)?)
        }
    }
}

impl RunningNode {
    /// Resolves once Raft has stopped on a fatal error (e.g. its storage failed), with the
    /// error's text. A node whose Raft is dead must not keep serving: it could neither write nor
    /// read linearizably, and a process supervisor restarts a node that exits.
    pub async fn raft_fatal(&self) -> String {
        use raft_store::openraft::async_runtime::WatchReceiver;
        let mut rx = self.node.raft.metrics();
        loop {
            if let Err(e) = &rx.borrow_watched().running_state {
                return e.to_string();
            }
            if rx.changed().await.is_err() {
                return "the Raft core stopped".to_string();
            }
        }
    }

    /// Stop duties and servers, then Raft; bounded so a stuck peer cannot hold shutdown.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        for (name, task) in self.tasks {
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                tracing::warn!(task = name, "did not stop within 5 s");
            }
        }
        match tokio::time::timeout(Duration::from_secs(5), self.node.raft.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "raft shutdown error"),
            Err(_) => tracing::warn!("raft did not shut down within 5 s"),
        }
        tracing::info!(node_id = self.node.id, "zsnode stopped");
    }
}
