//! `native-demo serve`: the signaling bridge plus the demo page and the built wasm package.

use anyhow::Context;
use clap::Args;
use miaou_transport::signaling::bridge::{self, BridgeConfig};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (HTTP and WebSocket).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Directory with the demo page [default: ./www, else the repository's www/].
    #[arg(long)]
    www: Option<PathBuf>,
    /// Directory with the built npm package, served at /pkg/ [default: ./pkg, else the repository's pkg/].
    #[arg(long)]
    pkg: Option<PathBuf>,
}

/// `name` under the current directory if it exists there, else beside this crate's workspace.
fn default_dir(name: &str) -> PathBuf {
    let here = PathBuf::from(name);
    if here.is_dir() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(name)
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let www = args.www.unwrap_or_else(|| default_dir("www"));
    let pkg = args.pkg.unwrap_or_else(|| default_dir("pkg"));
    if !pkg.join("miaou_transport.js").is_file() {
        tracing::warn!(
            "{} has no built package; run `npm run build` for the demo page to work",
            pkg.display()
        );
    }
    let config = BridgeConfig {
        addr: args.addr,
        www_dir: Some(www),
        pkg_dir: Some(pkg),
        ..BridgeConfig::default()
    };
    let bridge = bridge::serve(config)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    println!("demo page: {}?room=lobby", bridge.http_url());
    println!("signaling: {}", bridge.ws_url());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    bridge.shutdown().await;
    Ok(())
}
