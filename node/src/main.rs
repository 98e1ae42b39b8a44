//! `zsnode` entry point: parse configuration, start the node, stop cleanly on SIGTERM/SIGINT.

use clap::Parser;
use node::config::Cli;
use node::config::NodeConfig;

// glibc's allocator took about a quarter of the leader's CPU tracking 10 000 hosts (every ping
// allocates and frees HTTP/2 and TLS buffers from many threads); mimalloc's thread-local heaps
// cost a fraction of that (docs/benchmarks.md, issue 11 done-when 5).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
pub async fn main() -> std::process::ExitCode {
    if std::env::args().nth(1).as_deref() == Some("pki") {
        let cli = <node::pki::cli::PkiCli as Parser>::parse_from(std::env::args().skip(1));
        return match node::pki::cli::run(cli) {
            Ok(out) => {
                print!("{out}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("zsnode pki: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .init();
    let config = match NodeConfig::resolve(Cli::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("zsnode: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let running = match node::start(config).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "zsnode failed to start");
            return std::process::ExitCode::FAILURE;
        }
    };
    tokio::select! {
        _ = wait_for_signal() => {}
        fatal = running.raft_fatal() => {
            tracing::error!(error = %fatal, "raft stopped on a fatal error; exiting so that a supervisor restarts this node from its data dir");
            running.shutdown().await;
            // EX_IOERR: the usual cause is the data dir's storage.
            return std::process::ExitCode::from(74);
        }
    }
    tracing::info!("shutting down");
    running.shutdown().await;
    std::process::ExitCode::SUCCESS
}

async fn wait_for_signal() {
    use tokio::signal::unix::signal;
    use tokio::signal::unix::SignalKind;
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            // Without signal handlers, Ctrl-C via tokio's portable API is the fallback.
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::error!(error = %e, "cannot wait for signals; exiting");
            }
        }
    }
}
