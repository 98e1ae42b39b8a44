//! `zsagent` command line: `run` serves the leader; `facts` prints what libvirt reports;
//! `test-host-xml` writes a libvirt test-driver host description.

use std::collections::HashMap;
use std::net::IpAddr;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use agent::backend::HostBackend;
use agent::libvirt::LibvirtBackend;
use agent::service::AgentService;
use agent::service::HostSlot;
use agent::service::Hosts;
use agent::simulated::SimulatedBackend;
use agent::storage::SystemMounter;
use agent::term::TermStore;
use agent::tls::AgentCredentials;
use clap::Parser;
use clap::Subcommand;
use proto::agent::v1::agent_server::AgentServer;

#[derive(Parser)]
#[command(
    name = "zsagent",
    version,
    about = "Host agent of the ZStack-style cloud"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the management cluster's leader.
    Run {
        /// Address to listen on (the host's management IP).
        #[arg(long, default_value = "0.0.0.0:7272")]
        listen: SocketAddr,
        /// The agent's state: term, host binding, prepared storages.
        #[arg(long, default_value = "/var/lib/zstack/agent")]
        data_dir: PathBuf,
        /// The agent's credentials (ca.crt, agent.crt, agent.key); default DATA_DIR/pki.
        #[arg(long)]
        pki_dir: Option<PathBuf>,
        /// libvirt URI: qemu:///system on a KVM host; test:///default or test:///<host.xml>
        /// in tests and the demo.
        #[arg(long, default_value = "qemu:///system")]
        libvirt_uri: String,
        /// Serve N simulated hosts instead of this machine, on N consecutive addresses starting
        /// at --listen (scale tests only).
        #[arg(long)]
        simulate: Option<u32>,
        /// With --simulate: each simulated address also answers this TCP port with an SSH
        /// identification line and closes, standing in for the sshd that AddKVMHost probes.
        #[arg(long, requires = "simulate")]
        ssh_banner_port: Option<u16>,
        /// Port of the plain-HTTP server for exported images, on the --listen address
        /// (0: serve no exports). Not with --simulate.
        #[arg(long, default_value_t = agent::export_http::DEFAULT_EXPORT_PORT)]
        export_port: u16,
    },
    /// Print the host facts libvirt reports, as JSON.
    Facts {
        /// libvirt URI.
        #[arg(long, default_value = "qemu:///system")]
        libvirt_uri: String,
    },
    /// Print a libvirt test-driver host description (use as test:///<file>).
    TestHostXml {
        /// CPU sockets.
        #[arg(long, default_value_t = 1)]
        sockets: u32,
        /// Cores per socket.
        #[arg(long, default_value_t = 4)]
        cores: u32,
        /// Threads per core.
        #[arg(long, default_value_t = 2)]
        threads: u32,
        /// Memory in MiB.
        #[arg(long, default_value_t = 16384)]
        memory_mib: u64,
    },
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("zsagent: {msg}");
    ExitCode::FAILURE
}

fn nth_ip(base: IpAddr, n: u32) -> Option<IpAddr> {
    match base {
        IpAddr::V4(v4) => u32::from(v4).checked_add(n).map(|x| IpAddr::V4(x.into())),
        IpAddr::V6(v6) => u128::from(v6)
            .checked_add(u128::from(n))
            .map(|x| IpAddr::V6(x.into())),
    }
}

/// What a simulated host's "sshd" says before closing: enough for a banner probe.
const SSH_BANNER: &[u8] = b"SSH-2.0-zsagent-simulator\r\n";

/// Raise the open-file limit to its hard limit: thousands of simulated hosts need two
/// listeners each plus a connection per leader, far past the usual soft limit of 1024.
fn raise_nofile_limit() -> Result<libc::rlim_t, String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(format!("getrlimit: {}", std::io::Error::last_os_error()));
        }
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            return Err(format!("setrlimit: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(lim.rlim_cur)
}

/// Answer every connection to `addrs` with [`SSH_BANNER`] and close it.
async fn serve_ssh_banners(addrs: Vec<SocketAddr>) -> Result<(), String> {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    let mut listeners = Vec::with_capacity(addrs.len());
    for a in &addrs {
        let l = tokio::net::TcpListener::bind(a)
            .await
            .map_err(|e| format!("cannot listen on {a}: {e}"))?;
        listeners.push(tokio_stream::wrappers::TcpListenerStream::new(l));
    }
    let mut incoming = futures::stream::select_all(listeners);
    tokio::spawn(async move {
        while let Some(conn) = incoming.next().await {
            let Ok(mut s) = conn else { continue };
            tokio::spawn(async move {
                let _ = s.write_all(SSH_BANNER).await;
                let _ = s.shutdown().await;
            });
        }
    });
    Ok(())
}

async fn run(
    listen: SocketAddr,
    data_dir: PathBuf,
    pki_dir: Option<PathBuf>,
    libvirt_uri: String,
    simulate: Option<u32>,
    ssh_banner_port: Option<u16>,
    export_port: u16,
) -> Result<(), String> {
    if simulate.is_some() {
        let n = raise_nofile_limit()?;
        tracing::info!(nofile = n, "open-file limit raised for simulated hosts");
    }
    std::fs::create_dir_all(&data_dir)
        .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    let pki_dir = pki_dir.unwrap_or_else(|| data_dir.join("pki"));
    let creds = AgentCredentials::load(&pki_dir).map_err(|e| e.to_string())?;
    let term = TermStore::open(data_dir.join("term")).map_err(|e| e.to_string())?;
    let mut addrs = vec![listen];
    let hosts = match simulate {
        None => {
            let backend: Arc<dyn HostBackend> = Arc::new(
                LibvirtBackend::open(&libvirt_uri, Box::new(SystemMounter))
                    .map_err(|e| e.to_string())?,
            );
            let slot = HostSlot::new(backend, Some(data_dir.clone()))
                .map_err(|e| format!("agent state in {}: {e}", data_dir.display()))?;
            Hosts::Single(Arc::new(slot))
        }
        Some(n) => {
            addrs.clear();
            let mut m = HashMap::new();
            for i in 0..n {
                let ip = nth_ip(listen.ip(), i)
                    .ok_or_else(|| format!("{n} addresses from {} overflow", listen.ip()))?;
                let backend: Arc<dyn HostBackend> =
                    Arc::new(SimulatedBackend::new(&ip.to_string()));
                let slot = HostSlot::new(backend, None).map_err(|e| e.to_string())?;
                m.insert(ip, Arc::new(slot));
                addrs.push(SocketAddr::new(ip, listen.port()));
            }
            Hosts::ByAddress(m)
        }
    };
    if let Some(port) = ssh_banner_port {
        serve_ssh_banners(
            addrs
                .iter()
                .map(|a| SocketAddr::new(a.ip(), port))
                .collect(),
        )
        .await?;
    }
    let mut svc = AgentService::new(&creds.cluster_id, term, hosts);
    if simulate.is_none() {
        svc = svc
            .with_image_stores(&data_dir)
            .map_err(|e| format!("image stores in {}: {e}", data_dir.display()))?;
        if export_port != 0 {
            let addr = SocketAddr::new(listen.ip(), export_port);
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr} for exports: {e}"))?;
            svc = svc
                .with_export_port(export_port)
                .map_err(|e| e.to_string())?;
            let stores = svc.image_stores();
            tokio::spawn(async move {
                let stop = async {
                    let _ = tokio::signal::ctrl_c().await;
                };
                if let Err(e) = agent::export_http::serve(l, stores, stop).await {
                    tracing::error!(error = %e, "export HTTP server failed");
                }
            });
            tracing::info!(%addr, "serving exported images over HTTP");
        }
    }
    let mut listeners = Vec::new();
    for a in &addrs {
        let l = tokio::net::TcpListener::bind(a)
            .await
            .map_err(|e| format!("cannot listen on {a}: {e}"))?;
        listeners.push(tokio_stream::wrappers::TcpListenerStream::new(l));
    }
    let incoming = futures::stream::select_all(listeners);
    tracing::info!(
        cluster = %creds.cluster_id,
        host = %creds.host,
        listen = %listen,
        hosts = addrs.len(),
        boot_id = svc.boot_id(),
        "zsagent serving"
    );
    println!(
        "zsagent listening on {listen} ({} host{}), cluster {}",
        addrs.len(),
        if addrs.len() == 1 { "" } else { "s" },
        creds.cluster_id
    );
    tonic::transport::Server::builder()
        .tls_config(creds.server_tls())
        .map_err(|e| format!("TLS: {e}"))?
        .add_service(AgentServer::new(svc))
        .serve_with_incoming_shutdown(incoming, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| format!("serving: {e}"))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // libvirt prints every error to stderr on its own; ours carry them with context.
    virt::error::clear_error_callback();
    match Cli::parse().cmd {
        Cmd::Run {
            listen,
            data_dir,
            pki_dir,
            libvirt_uri,
            simulate,
            ssh_banner_port,
            export_port,
        } => {
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => return fail(format!("tokio runtime: {e}")),
            };
            match rt.block_on(run(
                listen,
                data_dir,
                pki_dir,
                libvirt_uri,
                simulate,
                ssh_banner_port,
                export_port,
            )) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
        Cmd::Facts { libvirt_uri } => {
            let facts =
                LibvirtBackend::open(&libvirt_uri, Box::new(SystemMounter)).and_then(|b| b.facts());
            match facts {
                Ok(f) => {
                    println!(
                        "{}",
                        serde_json::json!({
                            "hostname": f.hostname, "architecture": f.architecture,
                            "cpuModel": f.cpu_model, "cpuThreads": f.cpu_threads,
                            "cpuSockets": f.cpu_sockets, "coresPerSocket": f.cpu_cores_per_socket,
                            "threadsPerCore": f.cpu_threads_per_core, "cpuMhz": f.cpu_mhz,
                            "memoryBytes": f.memory_bytes, "hypervisor": f.hypervisor_type,
                            "hypervisorVersion": f.hypervisor_version,
                            "libvirtVersion": f.libvirt_version,
                            "virtualization": f.virtualization, "os": f.os_distribution,
                            "osRelease": f.os_release, "osVersion": f.os_version,
                        })
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Cmd::TestHostXml {
            sockets,
            cores,
            threads,
            memory_mib,
        } => {
            print!(
                "{}",
                agent::libvirt::test_host_xml(sockets, cores, threads, memory_mib)
            );
            ExitCode::SUCCESS
        }
    }
}
