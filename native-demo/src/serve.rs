//! `native-demo serve`: the signaling bridge plus the demo page and the built wasm package.

use anyhow::Context;
use clap::Args;
use miaou_transport::discovery::{Advertisement, Discovery, NodeInfo};
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
    /// Do not advertise the bridge on the LAN by mDNS (docs/discovery.md).
    #[arg(long)]
    no_mdns: bool,
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
    let mdns = if args.no_mdns {
        None
    } else {
        advertise(&bridge)
    };
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    if let Some((discovery, advertisement)) = mdns {
        advertisement.close().await;
        discovery.shutdown().await;
    }
    bridge.shutdown().await;
    Ok(())
}

/// Advertises the bridge (kind `bridge`) with the address it listens on (every IPv4 address
/// of the host when it listens on 0.0.0.0). A failure only costs discovery: logged, not fatal.
fn advertise(bridge: &bridge::Bridge) -> Option<(Discovery, Advertisement)> {
    let addr = bridge.local_addr();
    if addr.ip().is_loopback() {
        tracing::info!(
            "advertising {addr} by mDNS on this host only (loopback); listen on a LAN address, \
             e.g. --addr 0.0.0.0:8080, for other hosts to find the bridge"
        );
    }
    let started = Discovery::new().and_then(|discovery| {
        let advertisement = discovery.advertise(&NodeInfo::bridge(addr.port()), &[addr.ip()])?;
        Ok((discovery, advertisement))
    });
    match started {
        Ok(mdns) => {
            println!("mdns: {}", mdns.1.instance());
            Some(mdns)
        }
        Err(e) => {
            tracing::warn!("not advertising by mDNS: {e}");
            None
        }
    }
}
