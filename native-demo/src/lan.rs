//! Where `join`, `send`, `receive` and `echo` signal, and their mDNS presence on the LAN
//! (docs/discovery.md):
//!
//! - `--signal URL`: that bridge;
//! - neither `--signal` nor `--discover`: the oldest bridge advertised on the LAN by mDNS,
//!   looked up for at most `--mdns-timeout` seconds (a clear error if there is none);
//! - `--discover`: no bridge at all. The node starts a small signaling endpoint of its own
//!   (the bridge, on an ephemeral port of every IPv4 address, no static files), advertises it,
//!   browses for `--discover-window-ms`, then joins the endpoint of the room's oldest node
//!   (itself when it is the oldest), trying the next ones if that one does not answer.
//!
//! Unless `--no-mdns`, the node advertises itself (kind `node`, its room, its endpoint) until
//! it exits, when it says goodbye.

use anyhow::{bail, Context};
use clap::Args;
use miaou_transport::discovery::{
    bridge_candidates, room_candidates, Advertisement, BrowseEvent, Browser, DiscoveredNode,
    Discovery, NodeInfo, NodeKind,
};
use miaou_transport::signaling::bridge::{self, Bridge, BridgeConfig};
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// After the first bridge is found, how long to keep listening for others so that every node
/// picks the same (oldest) one.
const BRIDGE_SETTLE: Duration = Duration::from_millis(300);

/// How long to wait for the welcome of an endpoint found by mDNS before trying the next.
pub const DISCOVERED_CONNECT_TIMEOUT_MS: u64 = 3_000;

#[derive(Args, Clone, Debug)]
pub struct SignalArgs {
    /// Signaling server WebSocket URL, e.g. ws://127.0.0.1:8080/ws. Without it (and without
    /// --discover), the oldest bridge advertised on the LAN by mDNS is used.
    #[arg(long)]
    pub signal: Option<String>,
    /// No bridge: find the room's nodes on the LAN by mDNS; every node embeds a small
    /// signaling endpoint and all use the one of the room's oldest node.
    #[arg(long, conflicts_with = "signal")]
    pub discover: bool,
    /// Seconds to look for a bridge by mDNS when --signal is not given.
    #[arg(long, default_value = "5", value_parser = parse_seconds)]
    pub mdns_timeout: Duration,
    /// With --discover: milliseconds to browse before electing the endpoint to join. Must
    /// cover a second announcement (RFC 6762 §8.3: one second after the first) or a
    /// throttled answer (§6: a record is multicast at most once a second), hence 2 s.
    #[arg(long, default_value_t = 2_000)]
    pub discover_window_ms: u64,
    /// Do not advertise this node by mDNS (ignored with --discover, which needs it).
    #[arg(long)]
    pub no_mdns: bool,
}

/// Where to signal, and what must live as long as the node: the mDNS daemon, our
/// advertisement, our embedded endpoint.
pub struct Signaling {
    room: String,
    no_mdns: bool,
    /// Candidate endpoints, in the order to try them.
    candidates: Vec<Candidate>,
    discovery: Option<Discovery>,
    browser: Option<Browser>,
    advertisement: Option<Advertisement>,
    endpoint: Option<Bridge>,
}

struct Candidate {
    url: String,
    /// The advertisement it came from (for mDNS verification when it does not answer).
    node: Option<DiscoveredNode>,
}

impl SignalArgs {
    /// Finds where to signal for `room` (by mDNS unless --signal), starting the embedded
    /// endpoint with --discover.
    pub async fn resolve(&self, room: &str) -> anyhow::Result<Signaling> {
        let mut signaling = Signaling {
            room: room.to_owned(),
            no_mdns: self.no_mdns,
            candidates: Vec::new(),
            discovery: None,
            browser: None,
            advertisement: None,
            endpoint: None,
        };
        if let Some(url) = &self.signal {
            signaling.candidates.push(Candidate {
                url: url.clone(),
                node: None,
            });
            return Ok(signaling);
        }
        let discovery = Discovery::new().context("starting mDNS")?;
        let mut browser = discovery.browse().context("browsing mDNS")?;
        if self.discover {
            let window = Duration::from_millis(self.discover_window_ms);
            let (endpoint, advertisement, me) = start_endpoint(&discovery, room).await?;
            browser.run_for(window).await;
            let mut seen: Vec<DiscoveredNode> = browser
                .nodes()
                .into_iter()
                .filter(|n| n.info.node_id != me.info.node_id)
                .collect();
            seen.push(me.clone());
            let candidates = room_candidates(&seen, room);
            let leader = &candidates[0];
            tracing::info!(
                room,
                nodes = candidates.len(),
                leader = %leader.info.node_id,
                me = %me.info.node_id,
                "elected the room's oldest node's endpoint"
            );
            signaling.candidates = candidates.into_iter().flat_map(urls_of).collect();
            signaling.endpoint = Some(endpoint);
            signaling.advertisement = Some(advertisement);
        } else {
            let timeout = self.mdns_timeout;
            let bridges = find_bridges(&mut browser, timeout).await;
            if bridges.is_empty() {
                bail!(
                    "no signaling bridge found on the LAN by mDNS within {} s; pass \
                     --signal ws://HOST:PORT/ws, start one with `native-demo serve --addr \
                     0.0.0.0:8080`, or use --discover to connect to the room's nodes without one",
                    self.mdns_timeout.as_secs_f64()
                );
            }
            tracing::info!(
                bridges = bridges.len(),
                chosen = %bridges[0].info.node_id,
                "found a signaling bridge by mDNS"
            );
            signaling.candidates = bridges.into_iter().flat_map(urls_of).collect();
        }
        signaling.discovery = Some(discovery);
        signaling.browser = Some(browser);
        Ok(signaling)
    }
}

/// A duration in seconds for a CLI flag: a finite, non-negative number up to one day, so
/// `inf`, `nan` or `1e300` are refused with a clear message instead of overflowing.
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    const MAX_SECONDS: f64 = 86_400.0;
    let seconds: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !seconds.is_finite() || !(0.0..=MAX_SECONDS).contains(&seconds) {
        return Err(format!(
            "seconds must be between 0 and {MAX_SECONDS}, got `{text}`"
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn urls_of(node: DiscoveredNode) -> Vec<Candidate> {
    node.signaling_urls
        .iter()
        .map(|url| Candidate {
            url: url.clone(),
            node: Some(node.clone()),
        })
        .collect()
}

/// Starts our signaling endpoint on every IPv4 address and advertises it; returns it with the
/// advertisement and ourselves as a candidate reached over loopback.
async fn start_endpoint(
    discovery: &Discovery,
    room: &str,
) -> anyhow::Result<(Bridge, Advertisement, DiscoveredNode)> {
    let config = BridgeConfig {
        addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        ..BridgeConfig::default()
    };
    let endpoint = bridge::serve(config)
        .await
        .context("starting the embedded signaling endpoint")?;
    let port = endpoint.local_addr().port();
    let info = NodeInfo::node(room, port);
    let advertisement = discovery
        .advertise(&info, &[])
        .context("advertising by mDNS")?;
    tracing::info!(node_id = %info.node_id, port, started_at_ms = info.started_at_ms, "embedded signaling endpoint advertised");
    let me = DiscoveredNode::new(
        advertisement.instance().to_owned(),
        info,
        vec![Ipv4Addr::LOCALHOST.into()],
    );
    Ok((endpoint, advertisement, me))
}

/// Browses until a bridge shows up (then [`BRIDGE_SETTLE`] more) or `timeout` passes.
async fn find_bridges(browser: &mut Browser, timeout: Duration) -> Vec<DiscoveredNode> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, browser.next_event()).await {
            Ok(Some(BrowseEvent::Found(node))) if node.info.kind == NodeKind::Bridge => {
                let settle = (tokio::time::Instant::now() + BRIDGE_SETTLE).min(deadline);
                browser
                    .run_for(settle.saturating_duration_since(tokio::time::Instant::now()))
                    .await;
                break;
            }
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => break,
        }
    }
    bridge_candidates(&browser.nodes())
}

impl Signaling {
    /// How long to wait for a welcome: short for endpoints found by mDNS, which may be stale
    /// and have others to try after them.
    pub fn connect_timeout_ms(&self) -> u64 {
        if self.discovery.is_some() {
            DISCOVERED_CONNECT_TIMEOUT_MS
        } else {
            miaou_transport::DEFAULT_CONNECT_TIMEOUT_MS
        }
    }

    /// Connects with `connect(url)` to each candidate in turn and returns the first success;
    /// then advertises this node (unless --no-mdns). A discovered endpoint that fails is
    /// handed to mDNS verification, so that a stale advertisement is flushed.
    pub async fn connect<T, F, Fut>(&mut self, mut connect: F) -> anyhow::Result<T>
    where
        F: FnMut(String) -> Fut,
        Fut: Future<Output = anyhow::Result<T>>,
    {
        let mut last_error = None;
        for candidate in &self.candidates {
            match connect(candidate.url.clone()).await {
                Ok(value) => {
                    tracing::info!(url = %candidate.url, "signaling through");
                    let url = candidate.url.clone();
                    // Nothing reads the browser any more: stop browsing (and querying).
                    self.browser = None;
                    self.advertise_joined(&url);
                    return Ok(value);
                }
                Err(e) => {
                    if let (Some(node), Some(browser)) = (&candidate.node, &self.browser) {
                        tracing::warn!(url = %candidate.url, "endpoint found by mDNS did not answer: {e:#}");
                        browser.verify(node);
                    }
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no signaling endpoint to try")))
    }

    /// Advertises a node that joined `url` (nodes with their own endpoint already are).
    fn advertise_joined(&mut self, url: &str) {
        if self.no_mdns || self.advertisement.is_some() {
            return;
        }
        if self.discovery.is_none() {
            match Discovery::new() {
                Ok(d) => self.discovery = Some(d),
                Err(e) => {
                    tracing::warn!("not advertising by mDNS: {e}");
                    return;
                }
            }
        }
        let discovery = self.discovery.as_ref().expect("set above");
        let info = NodeInfo::joined_node(&self.room, url);
        match discovery.advertise(&info, &[]) {
            Ok(ad) => self.advertisement = Some(ad),
            Err(e) => tracing::warn!("not advertising by mDNS: {e}"),
        }
    }

    /// Says goodbye on mDNS and stops the embedded endpoint (after the transport closed).
    pub async fn close(mut self) {
        self.browser = None;
        if let Some(ad) = self.advertisement.take() {
            ad.close().await;
        }
        if let Some(endpoint) = self.endpoint.take() {
            endpoint.shutdown().await;
        }
        if let Some(discovery) = self.discovery.take() {
            discovery.shutdown().await;
        }
    }
}

#[cfg(test)]
mod seconds_tests {
    use super::parse_seconds;
    use std::time::Duration;

    #[test]
    fn seconds_flags_refuse_what_would_overflow_a_duration() {
        assert_eq!(parse_seconds("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_seconds("0"), Ok(Duration::ZERO));
        for bad in ["inf", "nan", "1e300", "-1", "18446744073709551615", "soon"] {
            assert!(parse_seconds(bad).is_err(), "{bad} accepted");
        }
    }
}
