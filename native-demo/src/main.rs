//! `native-demo`: the command-line face of miaou-transport. Logs go to stderr; stdout carries
//! only the data a command promises (received chat lines, received files' SHA-256), so scripts
//! and tests can read it.

mod bench;
mod echo;
mod file_protocol;
mod join;
mod lan;
mod peers;
mod receive;
mod room;
mod send;
mod serve;
mod stop;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(version, about = "miaou-transport demo: bridge, chat, file transfer")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the signaling bridge and serve the demo page.
    Serve(serve::ServeArgs),
    /// Join a room and chat: stdin lines go to every peer, received text goes to stdout.
    Join(join::JoinArgs),
    /// Send files to every peer in a room (docs/file-transfer.md).
    Send(send::SendArgs),
    /// Receive files into a directory; prints `<sha256>  <name>` per verified file.
    Receive(receive::ReceiveArgs),
    /// Send every message back to its sender (interop tests, round-trip measurements).
    Echo(echo::EchoArgs),
    /// Measure one native pair (throughput, message rate, RTT, open time, RSS, CPU).
    Bench(bench::BenchArgs),
    /// The native end of the browser benchmark: obeys sink/stream/echo commands from a tab.
    BenchPeer(bench::peer::BenchPeerArgs),
    /// Load the signaling bridge (a `serve` child process) with thousands of WebSocket clients.
    BenchBridge(bench::bridge_scale::BridgeBenchArgs),
    /// List the nodes and bridges advertised on the LAN by mDNS (docs/discovery.md).
    Peers(peers::PeersArgs),
}

/// Tokio's default multi-thread runtime, or with `MIAOU_RUNTIME=current` a single-thread one
/// (for measurements: no cross-thread wake-ups, but one core).
fn main() -> std::process::ExitCode {
    let runtime = match std::env::var("MIAOU_RUNTIME").as_deref() {
        Ok("current") => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        _ => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    };
    match runtime {
        Ok(runtime) => runtime.block_on(async_main()),
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn async_main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,webrtc=error,webrtc_ice=error,webrtc_sctp=error,webrtc_dtls=error,dtls=error,webrtc_mdns=error,webrtc_srtp=error")))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args).await,
        // Stopped by a signal, the command's future is dropped, which withdraws its mDNS
        // advertisement (goodbye) and stops its embedded endpoint.
        Command::Join(args) => until_stopped(join::run(args)).await,
        Command::Send(args) => with_peak_rss(until_stopped(send::run(args)).await),
        Command::Receive(args) => with_peak_rss(receive::run(args).await),
        Command::Echo(args) => echo::run(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::BenchPeer(args) => bench::peer::run(args).await,
        Command::BenchBridge(args) => bench::bridge_scale::run(args).await,
        Command::Peers(args) => peers::run(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs `command` until it ends or a stop signal (Ctrl-C, SIGTERM: [`stop`]). Stopped, the
/// command's future is dropped (which withdraws its mDNS advertisement and stops its endpoint)
/// and the process exits 130 or 143 at once: the runtime's shutdown would otherwise wait for
/// the blocking read of stdin.
async fn until_stopped(
    command: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    tokio::select! {
        result = command => result,
        signal = stop::requested() => {
            eprintln!("error: {signal}");
            std::process::exit(signal.exit_code());
        }
    }
}

/// Logs this process's peak resident memory (`VmHWM`) on the way out, success or not.
fn with_peak_rss<T>(result: T) -> T {
    if let Some(kib) = file_protocol::peak_rss_kib() {
        tracing::info!("peak RSS {kib} KiB");
    }
    result
}
