//! `native-demo serve`: the signaling bridge plus the demo page and the built wasm package.

use anyhow::{bail, Context};
use clap::Args;
use miaou_transport::discovery::{Advertisement, Discovery, NodeInfo};
use miaou_transport::signaling::bridge::{self, BridgeConfig};
use miaou_transport::signaling::turn::{TurnConfig, DEFAULT_TURN_TTL};
use miaou_transport::{IceServer, TransportConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    /// Secret shared with the TURN server (coturn `static-auth-secret`): each welcome then
    /// carries short-lived TURN credentials for --turn-url (docs/turn.md).
    #[arg(long, value_name = "SECRET", conflicts_with = "turn_secret_file")]
    turn_secret: Option<String>,
    /// Like --turn-secret, read from the first line of a file (keeps it out of `ps`).
    #[arg(long, value_name = "PATH")]
    turn_secret_file: Option<PathBuf>,
    /// TURN server URL handed out with the credentials, repeatable, e.g. turn:HOST:3478.
    #[arg(long = "turn-url", value_name = "URL")]
    turn_urls: Vec<String>,
    /// Lifetime of the handed-out TURN credentials, seconds.
    #[arg(long, value_name = "S", default_value_t = DEFAULT_TURN_TTL.as_secs())]
    turn_ttl: u64,
    /// Do not advertise the bridge on the LAN by mDNS (docs/discovery.md).
    #[arg(long)]
    no_mdns: bool,
}

/// The TURN part of the bridge's configuration, from --turn-secret[-file], --turn-url and
/// --turn-ttl; `None` without a secret.
fn turn_config(args: &ServeArgs) -> anyhow::Result<Option<TurnConfig>> {
    let secret = match (&args.turn_secret, &args.turn_secret_file) {
        (Some(secret), _) => secret.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the TURN secret from {}", path.display()))?
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
        (None, None) => {
            if !args.turn_urls.is_empty() {
                bail!("--turn-url needs --turn-secret or --turn-secret-file");
            }
            return Ok(None);
        }
    };
    if secret.is_empty() {
        bail!("the TURN secret is empty");
    }
    if args.turn_urls.is_empty() {
        bail!("--turn-secret needs at least one --turn-url turn:HOST:PORT");
    }
    // The URLs go to every client: check them as a client would, here, once.
    let mut check = TransportConfig::builder("ws://check/ws", "check");
    for url in &args.turn_urls {
        if !(url.starts_with("turn:") || url.starts_with("turns:")) {
            bail!("--turn-url {url:?} must start with turn: or turns:");
        }
        check = check.ice_server(IceServer::turn(url, "user", "credential"));
    }
    check.build().context("--turn-url")?;
    if args.turn_ttl == 0 {
        bail!("--turn-ttl must be at least 1 second");
    }
    Ok(Some(TurnConfig {
        urls: args.turn_urls.clone(),
        secret,
        ttl: Duration::from_secs(args.turn_ttl),
    }))
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
    // Before anything is announced: a SIGINT/SIGTERM from then on is a polite shutdown.
    let stop = crate::stop::requested();
    let turn = turn_config(&args)?;
    let www = args.www.unwrap_or_else(|| default_dir("www"));
    let pkg = args.pkg.unwrap_or_else(|| default_dir("pkg"));
    if !www.join("index.html").is_file() {
        tracing::warn!(
            "{} has no index.html: the bridge serves no demo page there",
            www.display()
        );
    }
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
        turn: turn.clone(),
        ..BridgeConfig::default()
    };
    let bridge = bridge::serve(config)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    println!("demo page: {}?room=lobby", bridge.http_url());
    println!("signaling: {}", bridge.ws_url());
    if let Some(turn) = turn {
        tracing::info!(urls = ?turn.urls, ttl_s = turn.ttl.as_secs(), "handing out TURN credentials in welcomes");
    }
    let mdns = if args.no_mdns {
        None
    } else {
        advertise(&bridge)
    };
    let signal = stop.await;
    tracing::info!("{signal}: shutting down");
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
