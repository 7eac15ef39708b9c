//! `native-demo`: the command-line face of miaou-transport. Logs go to stderr; stdout carries
//! only the data a command promises (received chat lines), so scripts and tests can read it.

mod join;
mod serve;

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
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,webrtc=warn,webrtc_ice=warn,webrtc_sctp=warn,webrtc_dtls=warn,webrtc_mdns=warn")))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Join(args) => join::run(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
