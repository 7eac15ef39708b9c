//! LAN discovery with multicast DNS (RFC 6762) and DNS-based service discovery (RFC 6763),
//! through the [`mdns-sd`](https://docs.rs/mdns-sd) responder/querier. Native only, feature
//! `discovery`; the rules (service type, TXT keys, TTLs, election) are in `docs/discovery.md`.
//!
//! Every native node and every bridge can publish one DNS-SD service instance of type
//! [`SERVICE_TYPE`] (`_miaou._tcp.local.`): the SRV record carries the TCP port of the
//! signaling WebSocket it serves, the A records its IPv4 addresses, and the TXT record
//! ([`NodeInfo::to_txt`]) its kind, node id, room, start time and signaling path or URL.
//!
//! - [`Discovery`] owns one mDNS daemon (a thread with UDP sockets on port 5353, shared with
//!   webrtc-rs's own `.local` resolver through `SO_REUSEADDR`/`SO_REUSEPORT`);
//! - [`Discovery::advertise`] publishes a [`NodeInfo`]; the returned [`Advertisement`] sends
//!   the goodbye (records with TTL 0, RFC 6762 §10.1) when closed or dropped;
//! - [`Discovery::browse`] returns a [`Browser`] that resolves instances into
//!   [`DiscoveredNode`]s, drops them on a goodbye or when their records expire (TTL), and
//!   ignores, with a log line, any instance whose TXT record is not ours or is malformed;
//! - [`election_order`] sorts candidates the way every node does, so that nodes agree on
//!   which endpoint to use without talking to each other.
//!
//! ```no_run
//! # async fn demo() -> Result<(), miaou_transport::discovery::DiscoveryError> {
//! use miaou_transport::discovery::{Discovery, NodeInfo};
//! use std::time::Duration;
//! let mdns = Discovery::new()?;
//! let ad = mdns.advertise(&NodeInfo::node("lobby", 8765), &[])?;
//! for node in mdns.discover(Duration::from_secs(2)).await? {
//!     println!("{} {:?} {:?} {:?}", node.info.node_id, node.info.room, node.signaling_urls, node.age());
//! }
//! ad.close().await;
//! # Ok(()) }
//! ```

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mdns_sd::{
    IfKind, ResolvedService, ServiceDaemon, ServiceEvent, ServiceInfo, UnregisterStatus,
};

use crate::signaling::protocol::validate_room;

/// The DNS-SD service type of every advertisement (RFC 6763 §7): `_tcp` because the
/// advertised port is the TCP port of a signaling WebSocket.
pub const SERVICE_TYPE: &str = "_miaou._tcp.local.";

/// Value of the `txtvers` TXT key this version writes and reads (RFC 6763 §6.7). Instances
/// with another value are ignored.
pub const TXT_VERSION: &str = "1";

/// Path of the signaling WebSocket on a bridge (`native-demo serve` and the endpoint every
/// `--discover` node embeds).
pub const DEFAULT_SIGNALING_PATH: &str = "/ws";

/// Longest node id accepted, bytes. Ids we generate are 16 lowercase hex digits.
pub const MAX_NODE_ID_BYTES: usize = 64;

/// Longest `ws` TXT value accepted (a path or a `ws://`/`wss://` URL), bytes.
pub const MAX_WS_VALUE_BYTES: usize = 160;

/// How long [`Advertisement::close`] (and its `Drop`) waits for the daemon to confirm that the
/// goodbye went out.
pub const GOODBYE_WAIT: Duration = Duration::from_millis(500);

/// How long [`Discovery::shutdown`] waits for the daemon thread to stop.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(1);

/// Time the daemon gets, in [`Browser::verify`], to hear from an instance before flushing it
/// (RFC 6762 §10.4 suggests about 10 s; the same as `mdns_sd::VERIFY_TIMEOUT_DEFAULT`).
pub const VERIFY_TIMEOUT: Duration = mdns_sd::VERIFY_TIMEOUT_DEFAULT;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The mDNS daemon failed or has stopped (its message).
    #[error("mDNS daemon: {0}")]
    Daemon(String),
    /// A [`NodeInfo`] we were asked to publish is invalid (which field, why).
    #[error("invalid advertisement: {0}")]
    Invalid(String),
}

impl From<mdns_sd::Error> for DiscoveryError {
    fn from(e: mdns_sd::Error) -> Self {
        DiscoveryError::Daemon(e.to_string())
    }
}

/// Why a received TXT record is not a valid advertisement of ours. The [`Browser`] logs it
/// and ignores the instance; it is never fatal.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxtError {
    /// A required key is absent.
    #[error("missing TXT key {0:?}")]
    Missing(&'static str),
    /// `txtvers` is not [`TXT_VERSION`].
    #[error("unsupported txtvers {0:?}")]
    UnsupportedVersion(String),
    /// A value is malformed (key, why).
    #[error("bad TXT value for {key:?}: {reason}")]
    BadValue {
        /// The key.
        key: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
}

/// What advertises itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeKind {
    /// A native node (`join`, `send`, `receive`): TXT `kind=node`, always with a room.
    Node,
    /// A signaling bridge (`native-demo serve`), usable for any room: TXT `kind=bridge`.
    Bridge,
}

impl NodeKind {
    /// The TXT value: `node` or `bridge`.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Node => "node",
            NodeKind::Bridge => "bridge",
        }
    }
}

impl std::fmt::Display for NodeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the advertiser's signaling WebSocket is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// The advertiser serves it: `ws://<one of its addresses>:<port><path>`. SRV port =
    /// `port`, TXT `ws=<path>`.
    Served {
        /// TCP port (the SRV port).
        port: u16,
        /// Path, starting with `/` (usually [`DEFAULT_SIGNALING_PATH`]).
        path: String,
    },
    /// The advertiser is a node that joined a bridge elsewhere: TXT `ws=<url>`, SRV port 0.
    Joined {
        /// The bridge's `ws://` or `wss://` URL.
        url: String,
    },
}

/// The content of one advertisement (TXT record and SRV port).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// Node or bridge.
    pub kind: NodeKind,
    /// Random id of the advertising process (16 hex digits when generated here); also the
    /// DNS-SD instance name `<kind>-<id>`. Not the peer id a bridge assigns in a room.
    pub node_id: String,
    /// The room a node is in (required for [`NodeKind::Node`], absent for bridges).
    pub room: Option<String>,
    /// When the advertiser started, ms since the Unix epoch, by its own clock. Election key.
    pub started_at_ms: u64,
    /// Its signaling endpoint.
    pub endpoint: Endpoint,
}

/// A new random node id: 16 lowercase hex digits (64 bits).
pub fn new_node_id() -> String {
    format!("{:016x}", fastrand::u64(..))
}

/// Milliseconds since the Unix epoch now (0 if the clock is before 1970).
pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl NodeInfo {
    /// A node in `room` serving its own signaling endpoint on TCP `port` at
    /// [`DEFAULT_SIGNALING_PATH`]; fresh id, started now.
    pub fn node(room: &str, port: u16) -> Self {
        NodeInfo {
            kind: NodeKind::Node,
            node_id: new_node_id(),
            room: Some(room.to_owned()),
            started_at_ms: unix_ms_now(),
            endpoint: Endpoint::Served {
                port,
                path: DEFAULT_SIGNALING_PATH.to_owned(),
            },
        }
    }

    /// A node in `room` that joined the bridge at `url`; fresh id, started now.
    pub fn joined_node(room: &str, url: &str) -> Self {
        NodeInfo {
            endpoint: Endpoint::Joined {
                url: url.to_owned(),
            },
            ..NodeInfo::node(room, 0)
        }
    }

    /// A bridge serving [`DEFAULT_SIGNALING_PATH`] on TCP `port`; fresh id, started now.
    pub fn bridge(port: u16) -> Self {
        NodeInfo {
            kind: NodeKind::Bridge,
            room: None,
            ..NodeInfo::node("", port)
        }
    }

    /// The DNS-SD instance name: `<kind>-<node id>`.
    pub fn instance_name(&self) -> String {
        format!("{}-{}", self.kind, self.node_id)
    }

    /// The SRV port: the served endpoint's port, 0 for [`Endpoint::Joined`].
    pub fn port(&self) -> u16 {
        match &self.endpoint {
            Endpoint::Served { port, .. } => *port,
            Endpoint::Joined { .. } => 0,
        }
    }

    /// The TXT record as key/value pairs, `txtvers` first (RFC 6763 §6.7): `txtvers`, `kind`,
    /// `id`, `room` (nodes only), `t` (start, Unix ms), `ws` (path or URL). At most about
    /// 300 bytes in all with a 64-byte room, well under the 1 300 bytes RFC 6763 §6.2 allows.
    pub fn to_txt(&self) -> Vec<(&'static str, String)> {
        let mut txt = vec![
            ("txtvers", TXT_VERSION.to_owned()),
            ("kind", self.kind.as_str().to_owned()),
            ("id", self.node_id.clone()),
        ];
        if let Some(room) = &self.room {
            txt.push(("room", room.clone()));
        }
        txt.push(("t", self.started_at_ms.to_string()));
        let ws = match &self.endpoint {
            Endpoint::Served { path, .. } => path.clone(),
            Endpoint::Joined { url } => url.clone(),
        };
        txt.push(("ws", ws));
        txt
    }

    /// Checks what we are about to publish with the same rules as a receiver applies.
    pub fn validate(&self) -> Result<(), DiscoveryError> {
        let pairs = self.to_txt();
        let parsed = NodeInfo::from_txt(
            pairs.iter().map(|(k, v)| (*k, Some(v.as_bytes()))),
            self.port(),
        )
        .map_err(|e| DiscoveryError::Invalid(e.to_string()))?;
        if let Endpoint::Served { port: 0, .. } = parsed.endpoint {
            return Err(DiscoveryError::Invalid(
                "a served endpoint needs a port".into(),
            ));
        }
        Ok(())
    }

    /// Parses a received TXT record (`pairs` of key and optional value, in record order) with
    /// the SRV `port`. Keys are case-insensitive and only the first occurrence of a key counts
    /// (RFC 6763 §6.4); unknown keys are ignored. Never panics, whatever the bytes.
    pub fn from_txt<'a>(
        pairs: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
        port: u16,
    ) -> Result<NodeInfo, TxtError> {
        let mut map: HashMap<String, Option<&[u8]>> = HashMap::new();
        for (key, value) in pairs {
            map.entry(key.to_ascii_lowercase()).or_insert(value);
        }
        let text = |key: &'static str| -> Result<Option<&str>, TxtError> {
            match map.get(key) {
                None => Ok(None),
                Some(None) => Err(TxtError::BadValue {
                    key,
                    reason: "no value".into(),
                }),
                Some(Some(bytes)) => {
                    std::str::from_utf8(bytes)
                        .map(Some)
                        .map_err(|_| TxtError::BadValue {
                            key,
                            reason: "not UTF-8".into(),
                        })
                }
            }
        };
        let required = |key: &'static str| text(key)?.ok_or(TxtError::Missing(key));
        let bad = |key: &'static str, reason: &str| TxtError::BadValue {
            key,
            reason: reason.to_owned(),
        };

        let version = required("txtvers")?;
        if version != TXT_VERSION {
            return Err(TxtError::UnsupportedVersion(
                version.chars().take(16).collect(),
            ));
        }
        let kind = match required("kind")? {
            "node" => NodeKind::Node,
            "bridge" => NodeKind::Bridge,
            _ => return Err(bad("kind", "neither node nor bridge")),
        };
        let node_id = required("id")?;
        if node_id.is_empty()
            || node_id.len() > MAX_NODE_ID_BYTES
            || !node_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(bad(
                "id",
                "must be 1 to 64 ASCII letters, digits, '-' or '_'",
            ));
        }
        let room = match kind {
            NodeKind::Node => {
                let room = required("room")?;
                validate_room(room).map_err(|e| bad("room", &e))?;
                Some(room.to_owned())
            }
            NodeKind::Bridge => None,
        };
        let started_at_ms = required("t")?
            .parse::<u64>()
            .map_err(|_| bad("t", "not a decimal number of milliseconds"))?;
        let ws = required("ws")?;
        if ws.len() > MAX_WS_VALUE_BYTES || !ws.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad("ws", "must be at most 160 printable ASCII bytes"));
        }
        let endpoint = if ws.starts_with('/') {
            if port == 0 {
                return Err(bad("ws", "a path needs a non-zero SRV port"));
            }
            Endpoint::Served {
                port,
                path: ws.to_owned(),
            }
        } else if ws.starts_with("ws://") || ws.starts_with("wss://") {
            Endpoint::Joined { url: ws.to_owned() }
        } else {
            return Err(bad("ws", "neither a path nor a ws:// or wss:// URL"));
        };
        Ok(NodeInfo {
            kind,
            node_id: node_id.to_owned(),
            room,
            started_at_ms,
            endpoint,
        })
    }
}

/// An advertiser found on the LAN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoveredNode {
    /// Its DNS-SD instance full name, e.g. `node-3f9a0c1d2b4e5f60._miaou._tcp.local.`.
    pub instance: String,
    /// What its TXT record says.
    pub info: NodeInfo,
    /// Its addresses from A/AAAA records, preferred first (see [`DiscoveredNode::signaling_urls`]).
    pub addresses: Vec<IpAddr>,
    /// Signaling URLs to try, in order: for a served endpoint one per usable address
    /// (IPv4 LAN addresses, then loopback — only seen for advertisers on this host —, then
    /// IPv4 link-local, then global IPv6); for a joined node its bridge's URL.
    pub signaling_urls: Vec<String>,
    /// When this browser first resolved it (monotonic clock).
    pub first_seen: Instant,
}

impl DiscoveredNode {
    /// Builds a node from an advertiser's [`NodeInfo`] and addresses, as if just resolved.
    pub fn new(instance: String, info: NodeInfo, addresses: Vec<IpAddr>) -> Self {
        let mut addresses = addresses;
        addresses.sort_by_key(|a| (address_rank(a), *a));
        addresses.dedup();
        let signaling_urls = match &info.endpoint {
            Endpoint::Joined { url } => vec![url.clone()],
            Endpoint::Served { port, path } => addresses
                .iter()
                .filter(|a| address_rank(a) < UNUSABLE)
                .map(|a| match a {
                    IpAddr::V4(v4) => format!("ws://{v4}:{port}{path}"),
                    IpAddr::V6(v6) => format!("ws://[{v6}]:{port}{path}"),
                })
                .collect(),
        };
        DiscoveredNode {
            instance,
            info,
            addresses,
            signaling_urls,
            first_seen: Instant::now(),
        }
    }

    /// Time since the advertiser started, by its clock and ours (0 if its clock is ahead).
    pub fn age(&self) -> Duration {
        Duration::from_millis(unix_ms_now().saturating_sub(self.info.started_at_ms))
    }

    /// The preferred signaling URL, if any address is usable.
    pub fn signaling_url(&self) -> Option<&str> {
        self.signaling_urls.first().map(String::as_str)
    }
}

const UNUSABLE: u8 = 9;

/// Preference of an address for reaching a signaling endpoint (lower is better).
fn address_rank(address: &IpAddr) -> u8 {
    match address {
        IpAddr::V4(v4) if v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast() => UNUSABLE,
        IpAddr::V4(v4) if v4.is_loopback() => 1,
        IpAddr::V4(v4) if v4.is_link_local() => 2,
        IpAddr::V4(_) => 0,
        // Link-local IPv6 needs a zone index, which a ws:// URL cannot carry portably.
        IpAddr::V6(v6) if v6.is_unspecified() || v6.is_multicast() => UNUSABLE,
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => UNUSABLE,
        IpAddr::V6(v6) if v6.is_loopback() => 4,
        IpAddr::V6(_) => 3,
    }
}

/// Sorts `nodes` into election order: oldest advertisement first (`started_at_ms`), ties
/// broken by `node_id` (byte order). Every node applies the same order to the same
/// advertisements, so all pick the same first candidate without exchanging a message.
pub fn election_order(nodes: &mut [DiscoveredNode]) {
    nodes.sort_by(|a, b| {
        (a.info.started_at_ms, &a.info.node_id).cmp(&(b.info.started_at_ms, &b.info.node_id))
    });
}

/// The nodes of `room` among `nodes`, in [`election_order`].
pub fn room_candidates(nodes: &[DiscoveredNode], room: &str) -> Vec<DiscoveredNode> {
    let mut found: Vec<DiscoveredNode> = nodes
        .iter()
        .filter(|n| n.info.kind == NodeKind::Node && n.info.room.as_deref() == Some(room))
        .cloned()
        .collect();
    election_order(&mut found);
    found
}

/// The bridges among `nodes`, in [`election_order`].
pub fn bridge_candidates(nodes: &[DiscoveredNode]) -> Vec<DiscoveredNode> {
    let mut found: Vec<DiscoveredNode> = nodes
        .iter()
        .filter(|n| n.info.kind == NodeKind::Bridge)
        .cloned()
        .collect();
    election_order(&mut found);
    found
}

/// One mDNS daemon (responder and querier) for this process. Cheap to clone; every clone
/// drives the same daemon thread.
#[derive(Clone)]
pub struct Discovery {
    daemon: ServiceDaemon,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery").finish_non_exhaustive()
    }
}

impl Discovery {
    /// Starts the daemon on the mDNS port (5353), on every IPv4 interface that is up
    /// (loopback included, so advertisers on this host are found too).
    ///
    /// Errors: [`DiscoveryError::Daemon`] if the daemon thread cannot start. Socket errors
    /// (no multicast route, say) surface later as an empty discovery, with mdns-sd's log.
    pub fn new() -> Result<Self, DiscoveryError> {
        let daemon = ServiceDaemon::new()?;
        // Only IPv4: signaling URLs need an address without a zone index.
        daemon.disable_interface(IfKind::IPv6)?;
        Ok(Discovery { daemon })
    }

    /// Publishes `info` with `addresses` (empty: every IPv4 address of this host, kept up to
    /// date as interfaces change; mdns-sd only answers, on each interface, with the addresses
    /// of that interface's subnet). No name probing (RFC 6762 §8.1): instance and host names
    /// carry a random 64-bit id, so the first announcement goes out at once.
    ///
    /// Errors: [`DiscoveryError::Invalid`] if `info` breaks the TXT rules,
    /// [`DiscoveryError::Daemon`] if the daemon refused it.
    pub fn advertise(
        &self,
        info: &NodeInfo,
        addresses: &[IpAddr],
    ) -> Result<Advertisement, DiscoveryError> {
        info.validate()?;
        let host = format!("miaou-{}.local.", info.node_id);
        let txt: Vec<(String, String)> = info
            .to_txt()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let explicit: Vec<IpAddr> = addresses
            .iter()
            .copied()
            .filter(|a| !a.is_unspecified())
            .collect();
        let mut service = ServiceInfo::new(
            SERVICE_TYPE,
            &info.instance_name(),
            &host,
            explicit.as_slice(),
            info.port(),
            txt.as_slice(),
        )
        .map_err(|e| DiscoveryError::Invalid(e.to_string()))?;
        if explicit.is_empty() {
            service = service.enable_addr_auto();
            service.set_interfaces(vec![IfKind::IPv4]);
        }
        service.set_requires_probe(false);
        let fullname = service.get_fullname().to_owned();
        self.daemon.register(service)?;
        tracing::info!(instance = %fullname, kind = %info.kind, room = ?info.room, port = info.port(), "mDNS: advertising");
        Ok(Advertisement {
            daemon: self.daemon.clone(),
            fullname,
            info: info.clone(),
            closed: false,
        })
    }

    /// Starts browsing for [`SERVICE_TYPE`].
    ///
    /// Errors: [`DiscoveryError::Daemon`] if the daemon has stopped.
    pub fn browse(&self) -> Result<Browser, DiscoveryError> {
        let events = self.daemon.browse(SERVICE_TYPE)?;
        Ok(Browser {
            daemon: self.daemon.clone(),
            events,
            nodes: HashMap::new(),
            warned: HashSet::new(),
        })
    }

    /// Browses for `timeout` and returns what is on the LAN at the end, in
    /// [`election_order`].
    pub async fn discover(&self, timeout: Duration) -> Result<Vec<DiscoveredNode>, DiscoveryError> {
        let mut browser = self.browse()?;
        browser.run_for(timeout).await;
        Ok(browser.nodes())
    }

    /// Stops the daemon thread (waiting at most a second). Advertisements still open are
    /// withdrawn by their own `close`/`Drop`; close them first for a clean goodbye.
    pub async fn shutdown(self) {
        if let Ok(status) = self.daemon.shutdown() {
            let _ = tokio::time::timeout(SHUTDOWN_WAIT, status.recv_async()).await;
        }
    }
}

/// A published [`NodeInfo`]. [`Advertisement::close`], or dropping it, withdraws it: the
/// daemon multicasts the records again with TTL 0 (a goodbye, RFC 6762 §10.1), twice 120 ms
/// apart, so browsers drop it within about a second instead of waiting for the TTL.
pub struct Advertisement {
    daemon: ServiceDaemon,
    fullname: String,
    info: NodeInfo,
    closed: bool,
}

impl std::fmt::Debug for Advertisement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Advertisement")
            .field("instance", &self.fullname)
            .field("info", &self.info)
            .finish()
    }
}

impl Advertisement {
    /// What is published.
    pub fn info(&self) -> &NodeInfo {
        &self.info
    }

    /// The DNS-SD instance full name.
    pub fn instance(&self) -> &str {
        &self.fullname
    }

    /// Withdraws the advertisement and waits (at most [`GOODBYE_WAIT`]) until the goodbye
    /// is sent.
    pub async fn close(mut self) {
        self.closed = true;
        if let Ok(status) = self.daemon.unregister(&self.fullname) {
            let _ = tokio::time::timeout(GOODBYE_WAIT, status.recv_async()).await;
        }
        tracing::info!(instance = %self.fullname, "mDNS: goodbye sent");
    }
}

impl Drop for Advertisement {
    /// Withdraws the advertisement; blocks at most [`GOODBYE_WAIT`] so that a process that
    /// exits right after still sends its goodbye.
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        if let Ok(status) = self.daemon.unregister(&self.fullname) {
            if let Ok(UnregisterStatus::OK) = status.recv_timeout(GOODBYE_WAIT) {
                tracing::info!(instance = %self.fullname, "mDNS: goodbye sent");
            }
        }
    }
}

/// A change seen by a [`Browser`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrowseEvent {
    /// A new advertiser was resolved.
    Found(DiscoveredNode),
    /// A known advertiser's records changed (addresses, TXT).
    Updated(DiscoveredNode),
    /// An advertiser said goodbye, or its records expired (TTL), or it did not answer a
    /// [`Browser::verify`].
    Removed(DiscoveredNode),
}

/// Resolved advertisements of [`SERVICE_TYPE`], kept up to date by [`Browser::next_event`]
/// (or [`Browser::run_for`]). Dropping it stops the browse.
pub struct Browser {
    daemon: ServiceDaemon,
    events: mdns_sd::Receiver<ServiceEvent>,
    nodes: HashMap<String, DiscoveredNode>,
    /// Instances already logged as malformed (logged once each).
    warned: HashSet<String>,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("nodes", &self.nodes.len())
            .finish_non_exhaustive()
    }
}

impl Browser {
    /// Waits for the next change; `None` once the daemon stopped.
    pub async fn next_event(&mut self) -> Option<BrowseEvent> {
        loop {
            let event = self.events.recv_async().await.ok()?;
            if let Some(change) = self.apply(event) {
                return Some(change);
            }
        }
    }

    /// Applies every event arriving within `duration`.
    pub async fn run_for(&mut self, duration: Duration) {
        let deadline = tokio::time::Instant::now() + duration;
        while let Ok(Some(_)) = tokio::time::timeout_at(deadline, self.next_event()).await {}
    }

    /// Everything currently known, in [`election_order`].
    pub fn nodes(&self) -> Vec<DiscoveredNode> {
        let mut nodes: Vec<DiscoveredNode> = self.nodes.values().cloned().collect();
        election_order(&mut nodes);
        nodes
    }

    /// Asks the LAN whether `node` is still there (RFC 6762 §10.4): if nothing answers
    /// within [`VERIFY_TIMEOUT`], its records are flushed and [`BrowseEvent::Removed`]
    /// follows. Use it when its endpoint refused a connection.
    pub fn verify(&self, node: &DiscoveredNode) {
        if let Err(e) = self.daemon.verify(node.instance.clone(), VERIFY_TIMEOUT) {
            tracing::debug!(instance = %node.instance, "mDNS verify not sent: {e}");
        }
    }

    fn apply(&mut self, event: ServiceEvent) -> Option<BrowseEvent> {
        match event {
            ServiceEvent::ServiceResolved(resolved) => self.on_resolved(&resolved),
            ServiceEvent::ServiceRemoved(_, fullname) => {
                self.warned.remove(&fullname);
                let node = self.nodes.remove(&fullname)?;
                tracing::debug!(instance = %fullname, "mDNS: removed");
                Some(BrowseEvent::Removed(node))
            }
            other => {
                tracing::trace!("mDNS: {other:?}");
                None
            }
        }
    }

    fn on_resolved(&mut self, resolved: &ResolvedService) -> Option<BrowseEvent> {
        let fullname = resolved.get_fullname().to_owned();
        let pairs = resolved.get_properties().iter().map(|p| (p.key(), p.val()));
        let info = match NodeInfo::from_txt(pairs, resolved.get_port()) {
            Ok(info) => info,
            Err(e) => {
                if self.warned.insert(fullname.clone()) {
                    tracing::warn!(instance = %fullname, "mDNS: ignoring advertisement: {e}");
                }
                // A previously valid instance that turned invalid is gone for us.
                return self.nodes.remove(&fullname).map(BrowseEvent::Removed);
            }
        };
        let addresses: Vec<IpAddr> = resolved
            .get_addresses()
            .iter()
            .map(|a| a.to_ip_addr())
            .collect();
        let mut node = DiscoveredNode::new(fullname.clone(), info, addresses);
        match self.nodes.get(&fullname) {
            Some(known) => {
                node.first_seen = known.first_seen;
                if *known == node {
                    return None;
                }
                self.nodes.insert(fullname, node.clone());
                Some(BrowseEvent::Updated(node))
            }
            None => {
                tracing::debug!(instance = %fullname, "mDNS: found");
                self.nodes.insert(fullname, node.clone());
                Some(BrowseEvent::Found(node))
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.daemon.stop_browse(SERVICE_TYPE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)], port: u16) -> Result<NodeInfo, TxtError> {
        NodeInfo::from_txt(pairs.iter().map(|(k, v)| (*k, Some(v.as_bytes()))), port)
    }

    #[test]
    fn txt_round_trips_for_every_kind() {
        for info in [
            NodeInfo::node("lobby", 8765),
            NodeInfo::joined_node("lobby ✓", "ws://198.18.0.1:8080/ws"),
            NodeInfo::bridge(8080),
        ] {
            info.validate().unwrap();
            let txt = info.to_txt();
            assert_eq!(txt[0].0, "txtvers");
            let total: usize = txt.iter().map(|(k, v)| 1 + k.len() + 1 + v.len()).sum();
            assert!(total < 400, "TXT record is {total} bytes");
            let back = NodeInfo::from_txt(
                txt.iter().map(|(k, v)| (*k, Some(v.as_bytes()))),
                info.port(),
            )
            .unwrap();
            assert_eq!(back, info);
        }
    }

    #[test]
    fn bad_txt_is_a_typed_error_never_a_panic() {
        let good = [
            ("txtvers", "1"),
            ("kind", "node"),
            ("id", "abc"),
            ("room", "r"),
            ("t", "5"),
            ("ws", "/ws"),
        ];
        assert!(parse(&good, 1).is_ok());
        let with = |key: &str, value: &str| {
            let pairs: Vec<(&str, &str)> = good
                .iter()
                .map(|&(k, v)| if k == key { (k, value) } else { (k, v) })
                .collect();
            parse(&pairs, 1)
        };
        assert_eq!(
            with("txtvers", "2"),
            Err(TxtError::UnsupportedVersion("2".into()))
        );
        assert!(matches!(
            with("kind", "toaster"),
            Err(TxtError::BadValue { key: "kind", .. })
        ));
        assert!(matches!(
            with("id", ""),
            Err(TxtError::BadValue { key: "id", .. })
        ));
        assert!(matches!(
            with("id", "a b"),
            Err(TxtError::BadValue { key: "id", .. })
        ));
        assert!(matches!(
            with("room", ""),
            Err(TxtError::BadValue { key: "room", .. })
        ));
        assert!(matches!(
            with("t", "-1"),
            Err(TxtError::BadValue { key: "t", .. })
        ));
        assert!(matches!(
            with("ws", "http://x"),
            Err(TxtError::BadValue { key: "ws", .. })
        ));
        assert!(matches!(
            with("ws", "/a b"),
            Err(TxtError::BadValue { key: "ws", .. })
        ));
        assert!(matches!(
            parse(&good, 0),
            Err(TxtError::BadValue { key: "ws", .. })
        ));
        assert_eq!(parse(&good[1..], 1), Err(TxtError::Missing("txtvers")));
        // Not UTF-8, a key without a value: errors, no panic.
        let raw = [(&b"\xff\xfe"[..]), b"1"];
        let pairs = vec![("txtvers", Some(raw[1])), ("kind", Some(raw[0]))];
        assert!(matches!(
            NodeInfo::from_txt(pairs, 1),
            Err(TxtError::BadValue { key: "kind", .. })
        ));
        let pairs = vec![("txtvers", None)];
        assert!(matches!(
            NodeInfo::from_txt(pairs, 1),
            Err(TxtError::BadValue { .. })
        ));
        // First occurrence wins; keys are case-insensitive; unknown keys are ignored.
        let mut dup: Vec<(&str, &str)> = vec![("KIND", "bridge"), ("extra", "x")];
        dup.extend(good);
        assert_eq!(parse(&dup, 1).unwrap().kind, NodeKind::Bridge);
    }

    #[test]
    fn urls_prefer_lan_then_loopback_and_skip_unusable_addresses() {
        let info = NodeInfo::node("r", 4000);
        let node = DiscoveredNode::new(
            "x".into(),
            info,
            vec![
                "127.0.0.1".parse().unwrap(),
                "fe80::1".parse().unwrap(),
                "198.18.0.2".parse().unwrap(),
                "169.254.1.1".parse().unwrap(),
                "2001:db8::1".parse().unwrap(),
            ],
        );
        assert_eq!(
            node.signaling_urls,
            [
                "ws://198.18.0.2:4000/ws",
                "ws://127.0.0.1:4000/ws",
                "ws://169.254.1.1:4000/ws",
                "ws://[2001:db8::1]:4000/ws"
            ]
        );
        let joined = DiscoveredNode::new(
            "y".into(),
            NodeInfo::joined_node("r", "ws://10.9.9.9:1/ws"),
            vec!["198.18.0.2".parse().unwrap()],
        );
        assert_eq!(joined.signaling_urls, ["ws://10.9.9.9:1/ws"]);
    }

    #[test]
    fn election_is_oldest_first_then_by_id() {
        let node = |id: &str, t: u64, room: &str| {
            let info = NodeInfo {
                node_id: id.into(),
                started_at_ms: t,
                ..NodeInfo::node(room, 1)
            };
            DiscoveredNode::new(id.into(), info, vec!["198.18.0.1".parse().unwrap()])
        };
        let all = vec![
            node("c", 20, "r"),
            node("b", 10, "r"),
            node("a", 10, "r"),
            node("z", 1, "other"),
        ];
        let ids: Vec<String> = room_candidates(&all, "r")
            .into_iter()
            .map(|n| n.info.node_id)
            .collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert!(bridge_candidates(&all).is_empty());
    }
}
