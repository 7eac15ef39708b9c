//! The signaling bridge: an axum server that relays signaling messages between the WebSocket
//! clients of each room and serves the demo page (`www/`) and the built wasm package (`pkg/`),
//! so one process is the whole demo.
//!
//! Native only, feature `bridge`. All room logic lives in the pure [`Rooms`] state machine; this
//! module only moves frames between sockets and that state machine:
//!
//! - one task per WebSocket connection reads frames and feeds them to the shared [`Rooms`]
//!   (one `std::sync::Mutex`, held only for the synchronous state update);
//! - each connection has a bounded outbound queue of [`OUTBOUND_QUEUE_LEN`] messages, filled
//!   without waiting while the lock is held, so a slow client never blocks the others; a client
//!   whose queue is full is disconnected (and its peers told `peer-left`), so memory stays
//!   bounded;
//! - queueing everything under the lock keeps the order of events the same for every client:
//!   a peer always has `peer-joined` queued before the newcomer can even read its `welcome`.
//!
//! Peer ids are random UUIDs (v4), so an id never reappears even after a bridge restart and a
//! reconnecting client cannot be mistaken for a stale peer.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

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
use super::rooms::{ConnId, Outgoing, Rooms, DEFAULT_MAX_PEERS_PER_ROOM};

/// Largest WebSocket message (and frame) the bridge reads, bytes: [`MAX_MESSAGE_BYTES`] plus
/// 16 KiB. Text between the two limits is answered with a `too-large` error and the connection
/// stays open; anything larger is answered with a `too-large` error and a close (code 1009)
/// without being buffered.
pub const WS_MAX_MESSAGE_BYTES: usize = MAX_MESSAGE_BYTES + 16 * 1024;

/// Capacity of each connection's outbound queue, in messages. A client that lets this many
/// messages pile up is disconnected. Worst case memory per connection is this many
/// [`MAX_MESSAGE_BYTES`] messages.
pub const OUTBOUND_QUEUE_LEN: usize = 128;

/// Longest a single WebSocket write may take before the client is considered dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the bridge waits for the client's close reply after sending a close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// How long [`Bridge::shutdown`] waits for the server and the connections to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// WebSocket close codes (RFC 6455 §7.4.1).
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_TOO_BIG: u16 = 1009;

/// Where and what the bridge serves.
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
    /// below 1 count as 1.
    pub max_peers_per_room: usize,
}

impl Default for BridgeConfig {
    /// `127.0.0.1:8080`, no static files, [`DEFAULT_MAX_PEERS_PER_ROOM`] peers per room.
    fn default() -> Self {
        BridgeConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            www_dir: None,
            pkg_dir: None,
            max_peers_per_room: DEFAULT_MAX_PEERS_PER_ROOM,
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
    let hub = Arc::new(Hub::new(config.max_peers_per_room));
    let router = router(&config, Arc::clone(&hub));
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                // Also resolves when the sender is dropped, i.e. when the Bridge is.
                let _ = stopped.await;
            })
            .await
    });
    tracing::info!(addr = %local_addr, "signaling bridge listening");
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
    ws.max_message_size(WS_MAX_MESSAGE_BYTES)
        .max_frame_size(WS_MAX_MESSAGE_BYTES)
        .on_failed_upgrade(|e| tracing::debug!(error = %e, "WebSocket upgrade failed"))
        .on_upgrade(move |socket| run_connection(hub, socket))
}

/// What a connection's writer sends.
#[derive(Debug)]
enum Outbound {
    Text(String),
    Close { code: u16, reason: &'static str },
}

/// The hub's side of one connection. Dropping it fires `_kill`, which ends the connection task
/// at once (used for clients too slow to drain their queue).
#[derive(Debug)]
struct ConnHandle {
    queue: mpsc::Sender<Outbound>,
    _kill: oneshot::Sender<()>,
}

#[derive(Debug)]
struct HubState {
    rooms: Rooms,
    conns: HashMap<ConnId, ConnHandle>,
    shutting_down: bool,
}

/// State shared by all connection tasks.
#[derive(Debug)]
struct Hub {
    state: Mutex<HubState>,
    next_conn: AtomicU64,
    /// Number of running connection tasks, for [`Bridge::shutdown`].
    live: watch::Sender<usize>,
}

impl Hub {
    fn new(max_peers_per_room: usize) -> Self {
        let rooms = Rooms::with_peer_ids(max_peers_per_room, || {
            PeerId(uuid::Uuid::new_v4().to_string())
        });
        Hub {
            state: Mutex::new(HubState {
                rooms,
                conns: HashMap::new(),
                shutting_down: false,
            }),
            next_conn: AtomicU64::new(1),
            live: watch::Sender::new(0),
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

    fn on_text(&self, conn: ConnId, text: &str) {
        let mut st = self.lock();
        if !st.conns.contains_key(&conn) {
            // Disconnected as too slow; its task is ending. Acting on its input would put a
            // peer nobody can reach back into a room.
            return;
        }
        let before = member_of(&st.rooms, conn);
        let actions = st.rooms.handle(conn, text);
        if let Some((peer, room)) = before {
            if st.rooms.member(conn).is_none() {
                tracing::info!(%conn, %peer, room, reason = "leave", "peer left");
            }
        }
        st.dispatch(actions);
    }

    fn on_binary(&self, conn: ConnId) {
        let mut st = self.lock();
        if !st.conns.contains_key(&conn) {
            return;
        }
        let actions = st.rooms.handle_binary(conn);
        st.dispatch(actions);
    }

    /// Answers a message too large to even read with `too-large`, tells the room the peer
    /// left and closes with 1009.
    fn on_oversized(&self, conn: ConnId) {
        let mut st = self.lock();
        let text =
            format!("message exceeds the {WS_MAX_MESSAGE_BYTES}-byte WebSocket limit; closing");
        tracing::info!(%conn, code = ?ErrorCode::TooLarge, message = %text, "rejected client message");
        let error = ServerMessage::error(ErrorCode::TooLarge, text).to_json();
        st.push(conn, Outbound::Text(error));
        st.push(
            conn,
            Outbound::Close {
                code: CLOSE_TOO_BIG,
                reason: "message too big",
            },
        );
        st.forget(conn, "message too big");
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
                    self.push(to, Outbound::Text(message.to_json()));
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

    /// Queues one item for `conn`. A full queue disconnects `conn`; that disconnect's
    /// `peer-left` messages may in turn overflow other queues, hence the work list.
    fn push(&mut self, conn: ConnId, item: Outbound) {
        let mut work = VecDeque::from([(conn, item)]);
        while let Some((conn, item)) = work.pop_front() {
            let Some(handle) = self.conns.get(&conn) else {
                // Already gone; its own disconnect has told or will tell its room.
                continue;
            };
            match handle.queue.try_send(item) {
                Ok(()) => {}
                // Its task is ending and will call `on_closed`.
                Err(TrySendError::Closed(_)) => {}
                Err(TrySendError::Full(_)) => {
                    tracing::warn!(%conn, queued = OUTBOUND_QUEUE_LEN, "client too slow to read its messages; disconnecting");
                    // Dropping the handle kills the connection task.
                    self.conns.remove(&conn);
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
            tracing::info!(conn = %to, ?code, message, "rejected client message");
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

async fn run_connection(hub: Arc<Hub>, socket: WebSocket) {
    let _live = LiveGuard::new(&hub);
    let conn = ConnId(hub.next_conn.fetch_add(1, Ordering::Relaxed));
    let (queue, outbound) = mpsc::channel(OUTBOUND_QUEUE_LEN);
    let (kill, killed) = oneshot::channel();
    if !hub.register(conn, ConnHandle { queue, _kill: kill }) {
        return;
    }
    tracing::debug!(%conn, "WebSocket connection opened");
    let (sink, stream) = socket.split();
    let reason = tokio::select! {
        reason = read_frames(&hub, conn, stream) => reason,
        reason = write_frames(sink, outbound) => reason,
        _ = killed => "too slow",
    };
    hub.on_closed(conn, reason);
}

/// Feeds the client's frames to the hub until the client closes; returns why it stopped.
async fn read_frames(hub: &Hub, conn: ConnId, mut stream: SplitStream<WebSocket>) -> &'static str {
    let mut end = "connection dropped";
    while let Some(frame) = stream.next().await {
        match frame {
            Ok(Message::Text(text)) => hub.on_text(conn, text.as_str()),
            Ok(Message::Binary(_)) => hub.on_binary(conn),
            // Pongs to pings are sent by the WebSocket layer itself.
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            // Keep polling: the WebSocket layer sends the close reply on the next read and then
            // ends the stream, so the client sees a clean close (not 1006).
            Ok(Message::Close(_)) => end = "closed by client",
            Err(e) if is_capacity_error(&e) => {
                hub.on_oversized(conn);
                // The rest of the frame is unread garbage: stop reading and let the writer
                // deliver the error and the close frame.
                std::future::pending::<()>().await;
            }
            Err(e) => {
                tracing::debug!(%conn, error = %e, "WebSocket read failed");
                return "read error";
            }
        }
    }
    end
}

fn is_capacity_error(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(ws) = err.downcast_ref::<tokio_tungstenite::tungstenite::Error>() {
            return matches!(ws, tokio_tungstenite::tungstenite::Error::Capacity(_));
        }
        source = err.source();
    }
    false
}

/// Sends the queued messages until a close frame was sent, the queue is dropped or the client
/// stops reading; returns why it stopped.
async fn write_frames(
    mut sink: SplitSink<WebSocket, Message>,
    mut outbound: mpsc::Receiver<Outbound>,
) -> &'static str {
    while let Some(item) = outbound.recv().await {
        let (message, closing) = match item {
            Outbound::Text(text) => (Message::Text(Utf8Bytes::from(text)), false),
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
