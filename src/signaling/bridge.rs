//! The signaling bridge: an axum server that relays signaling messages between the WebSocket
//! clients of each room and serves the demo page (`www/`) and the built wasm package (`pkg/`),
//! so one process is the whole demo.
//!
//! Native only, feature `bridge`. All room logic lives in the pure [`Rooms`] state machine; this
//! module only moves frames between sockets and that state machine:
//!
//! - one task per WebSocket connection reads frames and feeds them to the shared [`Rooms`]
//!   (one `std::sync::Mutex`, held only for the synchronous state update);
//! - each connection has an outbound queue bounded to [`OUTBOUND_QUEUE_LEN`] messages and
//!   [`OUTBOUND_QUEUE_BYTES`] bytes, filled without waiting while the lock is held, so a slow
//!   client never blocks the others; a client whose queue is full is disconnected (and its
//!   peers told `peer-left`), so memory stays bounded;
//! - queueing everything under the lock keeps the order of events the same for every client:
//!   a peer always has `peer-joined` queued before the newcomer can even read its `welcome`.
//!
//! Peer ids are random UUIDs (v4), so an id never reappears even after a bridge restart and a
//! reconnecting client cannot be mistaken for a stale peer.
//!
//! Limits against misbehaving or dead clients, all in [`BridgeConfig`] (see
//! `docs/signaling.md`, "Limits"):
//!
//! - at most [`BridgeConfig::max_connections`] WebSockets at once; past it a new one gets a
//!   `server-full` error and a close (1013, try again later);
//! - a per-connection token bucket ([`BridgeConfig::rate_limit`], module
//!   [`super::rate_limit`]), checked before a message is parsed or the shared lock taken: a
//!   message over the limit is dropped and answered `rate-limited`; a client far over it is
//!   closed (1008);
//! - a connection not welcomed into a room within [`BridgeConfig::join_timeout`] gets a
//!   `join-timeout` error and a close (1008);
//! - the bridge pings every [`BridgeConfig::ping_interval`] and drops a connection from which no
//!   frame at all (pong or other) arrived for [`BridgeConfig::idle_timeout`], so a half-open TCP
//!   connection does not hold its room slot; the room hears `peer-left`.
//!
//! A client that breaks the WebSocket protocol itself (RFC 6455: invalid UTF-8 in a text
//! message, a reserved opcode, an unmasked frame, reserved bits, a bad control frame or
//! fragmentation) is failed as §7.1.7 asks: a close frame, 1007 for invalid UTF-8 (§8.1) and
//! 1002 for the rest, and a log line; its room hears `peer-left`.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tower_http::services::ServeDir;

use super::protocol::{ErrorCode, PeerId, ServerMessage, MAX_MESSAGE_BYTES};
use super::rate_limit::{RateLimit, RateLimiter, Verdict};
use super::rooms::{ConnId, Outgoing, Rooms, DEFAULT_MAX_PEERS_PER_ROOM};
use super::turn::TurnConfig;
use axum::serve::ListenerExt;

/// Largest WebSocket message (and frame) the bridge reads, bytes: [`MAX_MESSAGE_BYTES`] plus
/// 16 KiB. Text between the two limits is answered with a `too-large` error and the connection
/// stays open; anything larger is answered with a `too-large` error and a close (code 1009)
/// without being buffered.
pub const WS_MAX_MESSAGE_BYTES: usize = MAX_MESSAGE_BYTES + 16 * 1024;

/// Read buffer of each WebSocket, bytes. tungstenite's default is 128 KiB, allocated per
/// connection and zero-filled up to that size before every read: with 10 000 clients that was
/// 135 KiB of RSS per connection (1.3 GB) and about a quarter of the bridge's CPU in `memset`
/// (`native-demo bench-bridge`). Signaling messages are a few hundred bytes to a few KiB; a
/// larger message still arrives whole (the buffer grows to the frame, up to
/// [`WS_MAX_MESSAGE_BYTES`]), over a few more reads.
const WS_READ_BUFFER_BYTES: usize = 4 * 1024;

/// Capacity of each connection's outbound queue, in messages. A client that lets this many
/// messages, or [`OUTBOUND_QUEUE_BYTES`] of them, pile up is disconnected. Large enough for the
/// burst a client receives when a full room joins at once (an offer or answer, about 20
/// candidates and an end-of-candidates marker from each of up to 63 peers: 1 386 messages).
pub const OUTBOUND_QUEUE_LEN: usize = 4096;

/// Capacity of each connection's outbound queue, in bytes of JSON text (1 MiB, at least 16
/// messages of [`MAX_MESSAGE_BYTES`]). A client that lets more pile up is disconnected; this
/// bounds the memory one connection can hold.
pub const OUTBOUND_QUEUE_BYTES: usize = 1024 * 1024;

/// Default [`BridgeConfig::max_connections`]: 16 384 WebSockets (the benchmark runs 10 000
/// clients on one bridge).
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;

/// Default [`BridgeConfig::join_timeout`]: 10 s.
pub const DEFAULT_JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Default [`BridgeConfig::ping_interval`]: 20 s.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(20);

/// Default [`BridgeConfig::idle_timeout`]: 60 s, three ping intervals.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest a single WebSocket write may take before the client is considered dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the bridge waits for the client's close reply after sending a close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// How long [`Bridge::shutdown`] waits for the server and the connections to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// WebSocket close codes (RFC 6455 §7.4.1).
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_PROTOCOL_ERROR: u16 = 1002;
const CLOSE_INVALID_DATA: u16 = 1007;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TOO_BIG: u16 = 1009;
const CLOSE_TRY_AGAIN_LATER: u16 = 1013;

/// Where and what the bridge serves, and its limits. Build it with struct update syntax,
/// `BridgeConfig { addr, ..BridgeConfig::default() }`, so new limits keep their defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeConfig {
    /// Address to listen on; port 0 picks a free port (see [`Bridge::local_addr`]).
    pub addr: SocketAddr,
    /// Directory served for every path other than `/ws` and `/pkg/…` (`index.html` at `/`);
    /// `None` answers those paths with 404.
    pub www_dir: Option<PathBuf>,
    /// Directory served under `/pkg/` (the built wasm package); `None` leaves `/pkg/…` to
    /// `www_dir`.
    pub pkg_dir: Option<PathBuf>,
    /// Largest number of peers in one room; further joins get a `room-full` error. Values
    /// below 1 count as 1. Default [`DEFAULT_MAX_PEERS_PER_ROOM`] (64).
    pub max_peers_per_room: usize,
    /// Largest number of WebSocket connections open at once on the whole bridge, joined or
    /// not (a connection counts until its socket is closed). A WebSocket opened past it
    /// receives one `error` with code `server-full` and is closed with code 1013 (try again
    /// later). Values below 1 count as 1. Default [`DEFAULT_MAX_CONNECTIONS`] (16 384). Each
    /// connection is one file descriptor: the process's limit (`ulimit -n`) must be higher.
    pub max_connections: usize,
    /// Per-connection limit on the frames a client sends (text, binary and ping frames count;
    /// pongs and close frames do not), checked before the frame is parsed. A frame over the
    /// limit is dropped and answered with an `error` with code `rate-limited`; a client far
    /// over it (more than [`RateLimit::max_dropped`] dropped frames, forgiven at
    /// [`RateLimit::per_second`]) gets one last `rate-limited` error and is closed with code
    /// 1008. Default [`RateLimit::default`]: a burst of 2 048 messages, 100 messages/s
    /// sustained, disconnect after 20 480 dropped.
    pub rate_limit: RateLimit,
    /// How long after the WebSocket opened a client has to be welcomed into a room (a valid
    /// `join`); past it, it gets an `error` with code `join-timeout` and is closed with code
    /// 1008. `Duration::ZERO` disables the timeout. Default [`DEFAULT_JOIN_TIMEOUT`] (10 s).
    pub join_timeout: Duration,
    /// Interval between the WebSocket pings the bridge sends on every connection (clients
    /// answer them with pongs automatically). `Duration::ZERO` disables pings. Default
    /// [`DEFAULT_PING_INTERVAL`] (20 s).
    pub ping_interval: Duration,
    /// Longest time without any frame from a client (pong, ping, text, binary, close) after
    /// which the bridge drops its connection without a close frame, as it is presumed dead
    /// (half-open TCP); its room hears `peer-left`. Keep it a few times `ping_interval`.
    /// `Duration::ZERO` disables the check. Default [`DEFAULT_IDLE_TIMEOUT`] (60 s).
    pub idle_timeout: Duration,
    /// A TURN server sharing a secret with the bridge: each `welcome` then carries
    /// short-lived credentials for it (`turn`, see [`super::turn`] and `docs/turn.md`).
    /// Default `None`: welcomes carry no TURN credentials.
    pub turn: Option<TurnConfig>,
}

impl Default for BridgeConfig {
    /// `127.0.0.1:8080`, no static files, and every limit at its default:
    /// [`DEFAULT_MAX_PEERS_PER_ROOM`] peers per room, [`DEFAULT_MAX_CONNECTIONS`] connections,
    /// [`RateLimit::default`], [`DEFAULT_JOIN_TIMEOUT`], [`DEFAULT_PING_INTERVAL`] and
    /// [`DEFAULT_IDLE_TIMEOUT`].
    fn default() -> Self {
        BridgeConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            www_dir: None,
            pkg_dir: None,
            max_peers_per_room: DEFAULT_MAX_PEERS_PER_ROOM,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            rate_limit: RateLimit::default(),
            join_timeout: DEFAULT_JOIN_TIMEOUT,
            ping_interval: DEFAULT_PING_INTERVAL,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            turn: None,
        }
    }
}

/// A running bridge. Dropping it stops accepting connections and closes the open ones without
/// waiting; [`Bridge::shutdown`] does the same and waits.
#[derive(Debug)]
pub struct Bridge {
    local_addr: SocketAddr,
    hub: Arc<Hub>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<io::Result<()>>>,
}

/// Binds `config.addr` and starts serving on the current tokio runtime.
///
/// Errors: the I/O error of binding the listener (address in use, permission denied, …).
/// Missing static directories are not an error; their paths answer 404.
pub async fn serve(config: BridgeConfig) -> io::Result<Bridge> {
    let listener = TcpListener::bind(config.addr).await?;
    let local_addr = listener.local_addr()?;
    let hub = Arc::new(Hub::new(&config));
    let router = router(&config, Arc::clone(&hub));
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        // TCP_NODELAY: a relayed offer is a few-KiB WebSocket frame; with Nagle's algorithm its
        // tail waited for the peer's delayed ACK, adding ~40 ms to every connection set-up.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY not set");
            }
        });
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                // Also resolves when the sender is dropped, i.e. when the Bridge is.
                let _ = stopped.await;
            })
            .await
    });
    let limits = hub.limits;
    tracing::info!(
        addr = %local_addr,
        max_connections = limits.max_connections,
        rate_burst = limits.rate_limit.burst,
        rate_per_second = limits.rate_limit.per_second,
        rate_max_dropped = limits.rate_limit.max_dropped,
        join_timeout_ms = millis(limits.join_timeout),
        ping_interval_ms = millis(limits.ping_interval),
        idle_timeout_ms = millis(limits.idle_timeout),
        "signaling bridge listening"
    );
    Ok(Bridge {
        local_addr,
        hub,
        stop: Some(stop),
        server: Some(server),
    })
}

impl Bridge {
    /// The address actually bound (with the real port when the configured one was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Base URL of the static files, `http://ADDR/`.
    pub fn http_url(&self) -> String {
        format!("http://{}/", self.local_addr)
    }

    /// URL of the signaling WebSocket, `ws://ADDR/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.local_addr)
    }

    /// Stops accepting connections, closes every WebSocket (close code 1001, going away) and
    /// waits up to a few seconds for the server and the connection tasks to finish.
    pub async fn shutdown(mut self) {
        self.begin_stop();
        let server = self.server.take();
        let mut live = self.hub.live.subscribe();
        let finished = tokio::time::timeout(SHUTDOWN_GRACE, async move {
            if let Some(server) = server {
                match server.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "signaling bridge server failed"),
                    Err(e) => tracing::warn!(error = %e, "signaling bridge server task failed"),
                }
            }
            let _ = live.wait_for(|&n| n == 0).await;
        })
        .await;
        if finished.is_err() {
            tracing::warn!("signaling bridge shutdown timed out; abandoning remaining connections");
        }
        tracing::info!(addr = %self.local_addr, "signaling bridge stopped");
    }

    fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
            self.hub.close_all();
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.begin_stop();
    }
}

fn router(config: &BridgeConfig, hub: Arc<Hub>) -> Router {
    let mut router = Router::new().route("/ws", get(upgrade));
    if let Some(pkg) = &config.pkg_dir {
        router = router.nest_service("/pkg", ServeDir::new(pkg));
    }
    if let Some(www) = &config.www_dir {
        // ServeDir maps `/` to index.html, refuses `..` escapes and sets the MIME type from
        // the extension (`.wasm` → application/wasm, which WebAssembly.instantiateStreaming
        // requires).
        router = router.fallback_service(ServeDir::new(www));
    }
    router.with_state(hub)
}

async fn upgrade(State(hub): State<Arc<Hub>>, ws: WebSocketUpgrade) -> Response {
    let ws = ws
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        .max_message_size(WS_MAX_MESSAGE_BYTES)
        .max_frame_size(WS_MAX_MESSAGE_BYTES)
        .on_failed_upgrade(|e| tracing::debug!(error = %e, "WebSocket upgrade failed"));
    // The slot is taken before upgrading; if the upgrade fails the callback, and the slot with
    // it, is dropped.
    match Hub::try_reserve(&hub) {
        Some(slot) => ws.on_upgrade(move |socket| run_connection(hub, slot, socket)),
        None => ws.on_upgrade(move |socket| refuse_full(hub, socket)),
    }
}

/// One of the [`BridgeConfig::max_connections`] connection slots; given back on drop.
struct Slot(Arc<Hub>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A WebSocket opened past [`BridgeConfig::max_connections`]: one `server-full` error, a close
/// (1013), and a short wait for the client's close reply so the kernel does not reset the
/// connection before the client read them. Bounded by [`CLOSE_GRACE`] in all.
async fn refuse_full(hub: Arc<Hub>, mut socket: WebSocket) {
    let _live = LiveGuard::new(&hub);
    let max = hub.limits.max_connections;
    let text = format!("the bridge has its maximum of {max} connections; try again later");
    let error = ServerMessage::error(ErrorCode::ServerFull, text).to_json();
    let refuse = async {
        socket.send(Message::Text(Utf8Bytes::from(error))).await?;
        socket
            .send(Message::Close(Some(CloseFrame {
                code: CLOSE_TRY_AGAIN_LATER,
                reason: Utf8Bytes::from_static("server full"),
            })))
            .await?;
        while let Some(Ok(_)) = socket.next().await {}
        Ok::<(), axum::Error>(())
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, refuse).await;
}

/// What a connection's writer sends.
#[derive(Debug)]
enum Outbound {
    Text(String),
    Ping,
    Close { code: u16, reason: &'static str },
}

/// Sending side of one connection's outbound queue, bounded both in messages
/// ([`OUTBOUND_QUEUE_LEN`]) and in bytes of queued text ([`OUTBOUND_QUEUE_BYTES`]).
#[derive(Clone, Debug)]
struct OutQueue {
    tx: mpsc::Sender<Outbound>,
    /// Bytes of text queued and not yet taken by the writer.
    bytes: Arc<AtomicUsize>,
}

/// Receiving side of an [`OutQueue`], owned by the connection's writer.
#[derive(Debug)]
struct OutReceiver {
    rx: mpsc::Receiver<Outbound>,
    bytes: Arc<AtomicUsize>,
}

/// Why an item could not be queued.
enum PushError {
    /// Over [`OUTBOUND_QUEUE_LEN`] or [`OUTBOUND_QUEUE_BYTES`]: the client is too slow.
    Full,
    /// The writer is gone: the connection is ending.
    Closed,
}

impl Outbound {
    /// Bytes this item counts against [`OUTBOUND_QUEUE_BYTES`].
    fn queued_bytes(&self) -> usize {
        match self {
            Outbound::Text(text) => text.len(),
            Outbound::Ping | Outbound::Close { .. } => 0,
        }
    }
}

fn out_queue() -> (OutQueue, OutReceiver) {
    let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE_LEN);
    let bytes = Arc::new(AtomicUsize::new(0));
    (
        OutQueue {
            tx,
            bytes: Arc::clone(&bytes),
        },
        OutReceiver { rx, bytes },
    )
}

impl OutQueue {
    /// Queues `item` without waiting.
    fn try_push(&self, item: Outbound) -> Result<(), PushError> {
        let len = item.queued_bytes();
        let reserved = self
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                queued
                    .checked_add(len)
                    .filter(|&total| total <= OUTBOUND_QUEUE_BYTES)
            });
        if reserved.is_err() {
            return Err(PushError::Full);
        }
        self.tx.try_send(item).map_err(|e| {
            self.bytes.fetch_sub(len, Ordering::AcqRel);
            match e {
                TrySendError::Full(_) => PushError::Full,
                TrySendError::Closed(_) => PushError::Closed,
            }
        })
    }
}

impl OutReceiver {
    async fn recv(&mut self) -> Option<Outbound> {
        let item = self.rx.recv().await?;
        self.bytes.fetch_sub(item.queued_bytes(), Ordering::AcqRel);
        Some(item)
    }
}

/// The hub's side of one connection. Dropping it fires `_kill`, which ends the connection task
/// at once (used for clients too slow to drain their queue).
#[derive(Debug)]
struct ConnHandle {
    queue: OutQueue,
    /// The reason of the close frame queued for this connection, once one is: nothing may
    /// follow a close frame (RFC 6455 §5.5.1), so later items are not queued and later input
    /// is not acted on.
    closing: Option<&'static str>,
    _kill: oneshot::Sender<()>,
}

#[derive(Debug)]
struct HubState {
    rooms: Rooms,
    conns: HashMap<ConnId, ConnHandle>,
    shutting_down: bool,
    turn: Option<TurnConfig>,
}

/// The limits of [`BridgeConfig`] as the connection tasks use them: minimums applied, and
/// `None` for a disabled (zero) duration.
#[derive(Clone, Copy, Debug)]
struct Limits {
    max_connections: usize,
    rate_limit: RateLimit,
    join_timeout: Option<Duration>,
    ping_interval: Option<Duration>,
    idle_timeout: Option<Duration>,
}

impl Limits {
    fn new(config: &BridgeConfig) -> Self {
        let enabled = |d: Duration| (!d.is_zero()).then_some(d);
        Limits {
            max_connections: config.max_connections.max(1),
            rate_limit: RateLimit {
                burst: config.rate_limit.burst.max(1),
                ..config.rate_limit
            },
            join_timeout: enabled(config.join_timeout),
            ping_interval: enabled(config.ping_interval),
            idle_timeout: enabled(config.idle_timeout),
        }
    }
}

/// State shared by all connection tasks.
#[derive(Debug)]
struct Hub {
    state: Mutex<HubState>,
    next_conn: AtomicU64,
    /// Number of running connection tasks, for [`Bridge::shutdown`].
    live: watch::Sender<usize>,
    limits: Limits,
    /// Connection slots taken (see [`Slot`]).
    open: AtomicUsize,
    /// Whether connections are being refused as `server-full`, so that the log says so once
    /// per episode rather than once per refused connection.
    full: AtomicBool,
}

impl Hub {
    fn new(config: &BridgeConfig) -> Self {
        let rooms = Rooms::with_peer_ids(config.max_peers_per_room, || {
            PeerId(uuid::Uuid::new_v4().to_string())
        });
        Hub {
            state: Mutex::new(HubState {
                rooms,
                conns: HashMap::new(),
                shutting_down: false,
                turn: config.turn.clone(),
            }),
            next_conn: AtomicU64::new(1),
            live: watch::Sender::new(0),
            limits: Limits::new(config),
            open: AtomicUsize::new(0),
            full: AtomicBool::new(false),
        }
    }

    /// Takes a connection slot, or logs the refusal and returns `None` when all
    /// [`BridgeConfig::max_connections`] are taken.
    fn try_reserve(hub: &Arc<Hub>) -> Option<Slot> {
        let max = hub.limits.max_connections;
        let taken = hub
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            });
        match taken {
            Ok(_) => {
                if hub.full.swap(false, Ordering::Relaxed) {
                    tracing::info!(
                        max_connections = max,
                        "connection slots free again; accepting connections"
                    );
                }
                Some(Slot(Arc::clone(hub)))
            }
            Err(_) => {
                if !hub.full.swap(true, Ordering::Relaxed) {
                    tracing::warn!(max_connections = max, code = %ErrorCode::ServerFull.as_str(), close_code = CLOSE_TRY_AGAIN_LATER, "connection limit reached; refusing new WebSocket connections");
                } else {
                    tracing::debug!(max_connections = max, code = %ErrorCode::ServerFull.as_str(), "connection refused: server full");
                }
                None
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // The state stays consistent between calls, so a panic elsewhere must not take every
        // later connection down with it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a new connection; `false` once shutdown began.
    fn register(&self, conn: ConnId, handle: ConnHandle) -> bool {
        let mut st = self.lock();
        if st.shutting_down {
            return false;
        }
        st.conns.insert(conn, handle);
        true
    }

    /// Handles one text frame; returns whether `conn` is now in a room.
    fn on_text(&self, conn: ConnId, text: &str) -> bool {
        let mut st = self.lock();
        let Some(handle) = st.conns.get(&conn) else {
            // Disconnected as too slow; its task is ending. Acting on its input would put a
            // peer nobody can reach back into a room.
            return false;
        };
        if let Some(close_reason) = handle.closing {
            // After `leave` (or once shutdown began) the close frame is already queued and no
            // reply can follow it: the close is the answer, the input has no effect.
            tracing::info!(%conn, close_reason = %close_reason, bytes = text.len(), "client message ignored: the connection is closing");
            return false;
        }
        let before = member_of(&st.rooms, conn);
        let actions = st.rooms.handle(conn, text);
        if let Some((peer, room)) = before {
            if st.rooms.member(conn).is_none() {
                tracing::info!(%conn, %peer, room, reason = "leave", "peer left");
            }
        }
        st.dispatch(actions);
        st.rooms.member(conn).is_some()
    }

    fn on_binary(&self, conn: ConnId) {
        let mut st = self.lock();
        let Some(handle) = st.conns.get(&conn) else {
            return;
        };
        if let Some(close_reason) = handle.closing {
            tracing::info!(%conn, close_reason = %close_reason, "client binary frame ignored: the connection is closing");
            return;
        }
        let actions = st.rooms.handle_binary(conn);
        st.dispatch(actions);
    }

    /// Answers a message too large to even read with `too-large`, tells the room the peer
    /// left and closes with 1009.
    fn on_oversized(&self, conn: ConnId) {
        let text =
            format!("message exceeds the {WS_MAX_MESSAGE_BYTES}-byte WebSocket limit; closing");
        tracing::info!(%conn, code = %ErrorCode::TooLarge.as_str(), message = %text, close_code = CLOSE_TOO_BIG, "rejected client message");
        self.close_with_error(
            conn,
            Some(ServerMessage::error(ErrorCode::TooLarge, text)),
            (CLOSE_TOO_BIG, "message too big"),
            "message too big",
        );
    }

    /// Queues `error` (if any) and a close frame `(code, reason)` for `conn`, and removes it
    /// from its room at once, telling the others (`reason` is for the log). The connection's
    /// reader must not hand the hub any more input.
    fn close_with_error(
        &self,
        conn: ConnId,
        error: Option<ServerMessage>,
        (code, close_reason): (u16, &'static str),
        reason: &'static str,
    ) {
        let mut st = self.lock();
        if let Some(error) = error {
            st.push(conn, Outbound::Text(error.to_json()));
        }
        st.push(
            conn,
            Outbound::Close {
                code,
                reason: close_reason,
            },
        );
        st.forget(conn, reason);
    }

    /// `conn`'s queue was found full outside the lock: disconnect it as too slow.
    fn on_queue_full(&self, conn: ConnId) {
        let mut st = self.lock();
        let mut work = VecDeque::new();
        st.drop_slow(conn, &mut work);
        st.push_all(work);
    }

    /// The connection task ended: forget it and tell its room.
    fn on_closed(&self, conn: ConnId, reason: &'static str) {
        let mut st = self.lock();
        st.conns.remove(&conn);
        st.forget(conn, reason);
    }

    /// Closes every connection with 1001 and refuses new ones.
    fn close_all(&self) {
        let mut st = self.lock();
        st.shutting_down = true;
        let conns: Vec<ConnId> = st.conns.keys().copied().collect();
        for conn in conns {
            st.push(
                conn,
                Outbound::Close {
                    code: CLOSE_GOING_AWAY,
                    reason: "bridge shutting down",
                },
            );
        }
    }
}

impl HubState {
    /// Queues the actions [`Rooms`] produced, without waiting.
    fn dispatch(&mut self, actions: Vec<Outgoing>) {
        for action in actions {
            match action {
                Outgoing::Send { to, message } => {
                    log_message(to, &message);
                    let text = self.with_turn(message).to_json();
                    self.push(to, Outbound::Text(text));
                }
                Outgoing::Close { conn } => self.push(
                    conn,
                    Outbound::Close {
                        code: CLOSE_NORMAL,
                        reason: "left",
                    },
                ),
            }
        }
    }

    /// Adds TURN credentials for the welcomed peer to a `welcome`, when configured. Done here
    /// rather than in [`Rooms`], which stays free of secrets and clocks.
    fn with_turn(&self, message: ServerMessage) -> ServerMessage {
        let (
            Some(config),
            ServerMessage::Welcome {
                v,
                peer_id,
                room,
                peers,
                turn: None,
            },
        ) = (&self.turn, &message)
        else {
            return message;
        };
        let welcome = ServerMessage::Welcome {
            v: *v,
            turn: Some(config.credentials_for(peer_id)),
            peer_id: peer_id.clone(),
            room: room.clone(),
            peers: peers.clone(),
        };
        // Rooms bounded the welcome without credentials; never send what a client refuses.
        if welcome.to_json().len() > MAX_MESSAGE_BYTES {
            tracing::warn!(peer = %peer_id, "welcome too large with TURN credentials; sent without");
            return message;
        }
        welcome
    }

    /// Queues one item for `conn`. A full queue disconnects `conn`; that disconnect's
    /// `peer-left` messages may in turn overflow other queues, hence the work list.
    fn push(&mut self, conn: ConnId, item: Outbound) {
        self.push_all(VecDeque::from([(conn, item)]));
    }

    fn push_all(&mut self, mut work: VecDeque<(ConnId, Outbound)>) {
        while let Some((conn, item)) = work.pop_front() {
            let Some(handle) = self.conns.get_mut(&conn) else {
                // Already gone; its own disconnect has told or will tell its room.
                continue;
            };
            if handle.closing.is_some() {
                // Its close frame is queued; the writer sends nothing after it.
                continue;
            }
            let close_reason = match &item {
                Outbound::Close { reason, .. } => Some(*reason),
                _ => None,
            };
            match handle.queue.try_push(item) {
                Ok(()) => handle.closing = close_reason,
                // Its task is ending and will call `on_closed`.
                Err(PushError::Closed) => {}
                Err(PushError::Full) => self.drop_slow(conn, &mut work),
            }
        }
    }

    /// Disconnects `conn`, whose queue is full, and adds its room's `peer-left` messages to
    /// `work`. Nothing if it is already gone.
    fn drop_slow(&mut self, conn: ConnId, work: &mut VecDeque<(ConnId, Outbound)>) {
        // Dropping the handle kills the connection task.
        if self.conns.remove(&conn).is_none() {
            return;
        }
        tracing::warn!(%conn, max_messages = OUTBOUND_QUEUE_LEN, max_bytes = OUTBOUND_QUEUE_BYTES, "client too slow to read its messages; disconnecting");
        let (peer, room) = member_of(&self.rooms, conn).unzip();
        let actions = self.rooms.disconnect(conn);
        if let (Some(peer), Some(room)) = (peer, room) {
            tracing::info!(%conn, %peer, room, reason = "too slow", "peer left");
        }
        for action in actions {
            if let Outgoing::Send { to, message } = action {
                log_message(to, &message);
                work.push_back((to, Outbound::Text(message.to_json())));
            }
        }
    }

    /// Removes `conn` from its room, telling the others.
    fn forget(&mut self, conn: ConnId, reason: &'static str) {
        let before = member_of(&self.rooms, conn);
        let actions = self.rooms.disconnect(conn);
        match before {
            Some((peer, room)) => tracing::info!(%conn, %peer, room, reason, "peer left"),
            None => tracing::debug!(%conn, reason, "connection closed"),
        }
        self.dispatch(actions);
    }
}

fn member_of(rooms: &Rooms, conn: ConnId) -> Option<(PeerId, String)> {
    rooms
        .member(conn)
        .map(|(peer, room)| (peer.clone(), room.to_owned()))
}

/// The log line for joins and rejected messages (leaves are logged where they happen).
fn log_message(to: ConnId, message: &ServerMessage) {
    match message {
        ServerMessage::Welcome {
            peer_id,
            room,
            peers,
            ..
        } => {
            tracing::info!(conn = %to, peer = %peer_id, room, present = peers.len(), "peer joined");
        }
        ServerMessage::Error { code, message } => {
            tracing::info!(conn = %to, code = %code.as_str(), message, "rejected client message");
        }
        _ => {}
    }
}

/// Counts a running connection task in [`Hub::live`] for as long as it exists.
struct LiveGuard<'a>(&'a Hub);

impl<'a> LiveGuard<'a> {
    fn new(hub: &'a Hub) -> Self {
        hub.live.send_modify(|n| *n += 1);
        LiveGuard(hub)
    }
}

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        self.0.live.send_modify(|n| *n = n.saturating_sub(1));
    }
}

async fn run_connection(hub: Arc<Hub>, slot: Slot, socket: WebSocket) {
    // Declared first so it is given back last, once the connection is fully forgotten.
    let _slot = slot;
    let _live = LiveGuard::new(&hub);
    let conn = ConnId(hub.next_conn.fetch_add(1, Ordering::Relaxed));
    let (queue, outbound) = out_queue();
    let (kill, killed) = oneshot::channel();
    let handle = ConnHandle {
        queue: queue.clone(),
        closing: None,
        _kill: kill,
    };
    if !hub.register(conn, handle) {
        return;
    }
    tracing::debug!(%conn, "WebSocket connection opened");
    let (sink, stream) = socket.split();
    let reason = tokio::select! {
        reason = read_frames(&hub, conn, stream, &queue) => reason,
        reason = write_frames(sink, outbound) => reason,
        reason = send_pings(&hub, conn, &queue) => reason,
        _ = killed => "too slow",
    };
    hub.on_closed(conn, reason);
}

/// Queues `item` for the connection's own writer without taking the hub's lock (rate-limit
/// replies, pings); a full queue disconnects the client like any other.
fn send_direct(hub: &Hub, conn: ConnId, queue: &OutQueue, item: Outbound) {
    if let Err(PushError::Full) = queue.try_push(item) {
        hub.on_queue_full(conn);
    }
}

/// Queues a WebSocket ping every [`BridgeConfig::ping_interval`]; never returns.
async fn send_pings(hub: &Hub, conn: ConnId, queue: &OutQueue) -> &'static str {
    let Some(every) = hub.limits.ping_interval else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(every).await;
        send_direct(hub, conn, queue, Outbound::Ping);
    }
}

/// Which limit bounds the wait for the client's next frame.
#[derive(Clone, Copy)]
enum Deadline {
    /// [`BridgeConfig::join_timeout`], until the client is welcomed.
    Join,
    /// [`BridgeConfig::idle_timeout`].
    Idle,
}

/// Feeds the client's frames to the hub until the client closes; returns why it stopped.
///
/// Every text, binary and ping frame first passes the connection's [`RateLimiter`]. The wait
/// for a frame is bounded by the idle timeout and, until the client is in a room, by what is
/// left of the join timeout.
async fn read_frames(
    hub: &Hub,
    conn: ConnId,
    mut stream: SplitStream<WebSocket>,
    queue: &OutQueue,
) -> &'static str {
    let limits = hub.limits;
    let opened = Instant::now();
    let mut limiter = RateLimiter::new(limits.rate_limit, Duration::ZERO);
    let mut joined = false;
    let mut over_limit = false;
    let mut end = "connection dropped";
    loop {
        let join_left = match limits.join_timeout {
            Some(timeout) if !joined => Some(timeout.saturating_sub(opened.elapsed())),
            _ => None,
        };
        let wait = match (join_left, limits.idle_timeout) {
            // Checked before reading, so a client that keeps sending other frames cannot
            // postpone its deadline.
            (Some(left), _) if left.is_zero() => return join_timed_out(hub, conn, stream).await,
            (Some(left), Some(idle)) if left < idle => Some((left, Deadline::Join)),
            (_, Some(idle)) => Some((idle, Deadline::Idle)),
            (Some(left), None) => Some((left, Deadline::Join)),
            (None, None) => None,
        };
        let next = match wait {
            None => stream.next().await,
            Some((wait, deadline)) => match tokio::time::timeout(wait, stream.next()).await {
                Ok(next) => next,
                Err(_) => match deadline {
                    Deadline::Join => return join_timed_out(hub, conn, stream).await,
                    Deadline::Idle => {
                        tracing::info!(%conn, idle_ms = millis(Some(wait)), "no frame from the client within the idle timeout (no pong); dropping the connection");
                        return "keepalive timeout";
                    }
                },
            },
        };
        let Some(frame) = next else {
            return end;
        };
        if matches!(
            frame,
            Ok(Message::Text(_) | Message::Binary(_) | Message::Ping(_))
        ) {
            let limit = limiter.limit();
            match limiter.check(opened.elapsed()) {
                Verdict::Allow => over_limit = false,
                Verdict::Drop => {
                    if !over_limit {
                        over_limit = true;
                        tracing::info!(%conn, code = %ErrorCode::RateLimited.as_str(), burst = limit.burst, per_second = limit.per_second, dropped = limiter.dropped(), "client over its message rate limit; dropping its messages");
                    }
                    let text = format!(
                        "over the limit of {} messages/s (burst {}); message dropped",
                        limit.per_second, limit.burst
                    );
                    let error = ServerMessage::error(ErrorCode::RateLimited, text).to_json();
                    send_direct(hub, conn, queue, Outbound::Text(error));
                    continue;
                }
                Verdict::Disconnect => {
                    tracing::warn!(%conn, code = %ErrorCode::RateLimited.as_str(), close_code = CLOSE_POLICY, burst = limit.burst, per_second = limit.per_second, dropped = limiter.dropped(), "client far over its message rate limit; disconnecting");
                    let text = format!(
                        "over the limit of {} messages/s (burst {}) for too long; closing",
                        limit.per_second, limit.burst
                    );
                    hub.close_with_error(
                        conn,
                        Some(ServerMessage::error(ErrorCode::RateLimited, text)),
                        (CLOSE_POLICY, "rate limit exceeded"),
                        "rate limited",
                    );
                    return discard_until_closed(stream).await;
                }
            }
        }
        match frame {
            Ok(Message::Text(text)) => joined |= hub.on_text(conn, text.as_str()),
            Ok(Message::Binary(_)) => hub.on_binary(conn),
            // Pongs to pings are sent by the WebSocket layer itself; receiving anything,
            // including the pongs to our pings, is what keeps the connection alive.
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            // Keep polling: the WebSocket layer sends the close reply on the next read and then
            // ends the stream, so the client sees a clean close (not 1006).
            Ok(Message::Close(_)) => end = "closed by client",
            Err(e) => match read_failure(&e) {
                ReadFailure::TooLarge => {
                    hub.on_oversized(conn);
                    // The rest of the frame is unread garbage: stop reading and let the writer
                    // deliver the error and the close frame.
                    std::future::pending::<()>().await;
                }
                ReadFailure::Violation(code, close_reason) => {
                    // RFC 6455 §7.1.7: _Fail the WebSocket Connection_ with a close frame.
                    // The WebSocket layer ended its stream at the error, so there is nothing
                    // more to read: let the writer deliver the close frame.
                    tracing::info!(%conn, close_code = code, close_reason = %close_reason, error = %e, "WebSocket protocol violation; closing");
                    hub.close_with_error(conn, None, (code, close_reason), "protocol violation");
                    std::future::pending::<()>().await;
                }
                ReadFailure::Dropped => {
                    tracing::debug!(%conn, error = %e, "WebSocket read failed");
                    return "read error";
                }
            },
        }
    }
}

/// The client was not welcomed into a room within the join timeout: `join-timeout`, close 1008.
async fn join_timed_out(hub: &Hub, conn: ConnId, stream: SplitStream<WebSocket>) -> &'static str {
    let timeout_ms = millis(hub.limits.join_timeout);
    tracing::info!(%conn, code = %ErrorCode::JoinTimeout.as_str(), close_code = CLOSE_POLICY, timeout_ms, "no valid join within the join timeout; closing");
    let text = format!("no valid join within {timeout_ms} ms; closing");
    hub.close_with_error(
        conn,
        Some(ServerMessage::error(ErrorCode::JoinTimeout, text)),
        (CLOSE_POLICY, "join timeout"),
        "join timeout",
    );
    discard_until_closed(stream).await
}

/// After the bridge queued a close frame: reads and ignores the client's frames until it
/// answers the close or the connection fails (the writer ends the connection after
/// [`CLOSE_GRACE`] anyway). Nothing read here reaches the hub.
async fn discard_until_closed(mut stream: SplitStream<WebSocket>) -> &'static str {
    while let Some(Ok(_)) = stream.next().await {}
    "closed by bridge"
}

/// `d` in whole milliseconds for the logs; 0 for a disabled limit.
fn millis(d: Option<Duration>) -> u64 {
    d.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What a failed WebSocket read means for the connection.
#[derive(Debug, PartialEq, Eq)]
enum ReadFailure {
    /// A message or frame over [`WS_MAX_MESSAGE_BYTES`]: `too-large`, close 1009.
    TooLarge,
    /// The client broke RFC 6455: close with this code (1007 invalid UTF-8 in a text message,
    /// §8.1; 1002 any other protocol error, §7.4.1) and reason.
    Violation(u16, &'static str),
    /// The connection itself failed (I/O error, reset, data after the closing handshake):
    /// no close frame can or need be sent.
    Dropped,
}

fn read_failure(e: &axum::Error) -> ReadFailure {
    use tokio_tungstenite::tungstenite::error::ProtocolError as P;
    use tokio_tungstenite::tungstenite::Error as E;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(ws) = err.downcast_ref::<E>() {
            return match ws {
                E::Capacity(_) => ReadFailure::TooLarge,
                E::Utf8(_) => {
                    ReadFailure::Violation(CLOSE_INVALID_DATA, "invalid UTF-8 in a text message")
                }
                // The peer is gone or already closed: nothing to answer.
                E::Protocol(P::ResetWithoutClosingHandshake | P::ReceivedAfterClosing) => {
                    ReadFailure::Dropped
                }
                E::Protocol(p) => ReadFailure::Violation(
                    CLOSE_PROTOCOL_ERROR,
                    match p {
                        P::UnknownDataFrameType(_)
                        | P::UnknownControlFrameType(_)
                        | P::InvalidOpcode(_) => "reserved opcode",
                        P::UnmaskedFrameFromClient => "unmasked client frame",
                        P::NonZeroReservedBits => "reserved bits set",
                        P::FragmentedControlFrame | P::ControlFrameTooBig => {
                            "invalid control frame"
                        }
                        P::UnexpectedContinueFrame | P::ExpectedFragment(_) => {
                            "invalid fragmentation"
                        }
                        _ => "protocol error",
                    },
                ),
                _ => ReadFailure::Dropped,
            };
        }
        source = err.source();
    }
    ReadFailure::Dropped
}

/// Sends the queued messages until a close frame was sent, the queue is dropped or the client
/// stops reading; returns why it stopped.
async fn write_frames(
    mut sink: SplitSink<WebSocket, Message>,
    mut outbound: OutReceiver,
) -> &'static str {
    while let Some(item) = outbound.recv().await {
        let (message, closing) = match item {
            Outbound::Text(text) => (Message::Text(Utf8Bytes::from(text)), false),
            Outbound::Ping => (Message::Ping(Bytes::new()), false),
            Outbound::Close { code, reason } => (
                Message::Close(Some(CloseFrame {
                    code,
                    reason: Utf8Bytes::from_static(reason),
                })),
                true,
            ),
        };
        match tokio::time::timeout(WRITE_TIMEOUT, sink.send(message)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return "write error",
            Err(_) => return "write timed out",
        }
        if closing {
            // Give the client a moment to answer the close; the reader ends the connection
            // as soon as it does.
            tokio::time::sleep(CLOSE_GRACE).await;
            return "closed by bridge";
        }
    }
    "queue dropped"
}
