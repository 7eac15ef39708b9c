#![cfg(not(target_arch = "wasm32"))]
//! Integration tests of the signaling bridge: real WebSocket clients (tokio-tungstenite), raw
//! TCP clients writing hand-made WebSocket frames, and raw HTTP requests against `serve()` on
//! 127.0.0.1 with a free port. Loopback only. Refused input must get its reply AND a log line:
//! the tests capture the bridge's log ([`Logs`]) and check both.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use miaou_transport::signaling::bridge::{serve, Bridge, BridgeConfig};
use miaou_transport::signaling::protocol::{
    ClientMessage, ErrorCode, PeerId, SdpType, ServerMessage, Signal, MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
};
use miaou_transport::signaling::rate_limit::RateLimit;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

/// Upper bound for anything the bridge should do promptly.
const PROMPT: Duration = Duration::from_secs(5);
/// How long "nothing arrives" is watched for.
const QUIET: Duration = Duration::from_millis(300);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The bridge's log lines (INFO and above, as `native-demo serve` shows them by default),
/// captured while the guard of [`Logs::capture`] lives. The capture is the thread's default
/// subscriber: a `#[tokio::test]` runtime runs the bridge's tasks on the test's own thread, so
/// each test sees the lines of its own bridge only.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

/// One write of the formatter into [`Logs`].
struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        LogWriter(Arc::clone(&self.0))
    }
}

impl Logs {
    fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(logs.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    /// The captured lines that contain every one of `parts`.
    fn lines_with(&self, parts: &[&str]) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        text.lines()
            .filter(|line| parts.iter().all(|part| line.contains(part)))
            .map(str::to_owned)
            .collect()
    }

    /// Asserts that exactly `count` captured lines contain every one of `parts`. The bridge
    /// logs before it queues the reply, so once the client saw the reply the line is there.
    fn expect(&self, count: usize, parts: &[&str]) {
        let found = self.lines_with(parts);
        assert_eq!(
            found.len(),
            count,
            "log lines with {parts:?}: {found:#?}\nwhole log:\n{}",
            String::from_utf8_lossy(&self.0.lock().unwrap())
        );
    }

    /// Asserts the log line of `n` refused client messages with error `code`.
    fn expect_rejected(&self, n: usize, code: ErrorCode) {
        let code = format!("code={}", code.as_str());
        self.expect(n, &["rejected client message", &code]);
    }
}

async fn start_with(
    max_peers_per_room: usize,
    www_dir: Option<PathBuf>,
    pkg_dir: Option<PathBuf>,
) -> Bridge {
    start_config(|c| {
        c.www_dir = www_dir;
        c.pkg_dir = pkg_dir;
        c.max_peers_per_room = max_peers_per_room;
    })
    .await
}

/// A bridge on 127.0.0.1:0 with the default configuration as changed by `edit`.
async fn start_config(edit: impl FnOnce(&mut BridgeConfig)) -> Bridge {
    let mut config = BridgeConfig {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..BridgeConfig::default()
    };
    edit(&mut config);
    serve(config).await.expect("bridge binds 127.0.0.1:0")
}

async fn start() -> Bridge {
    start_with(64, None, None).await
}

/// What a client observed next on its socket.
#[derive(Debug)]
enum Seen {
    Msg(ServerMessage),
    Closed(Option<CloseFrame>),
    /// The stream ended or failed without a close frame.
    Ended,
}

struct Client {
    ws: Ws,
}

impl Client {
    async fn connect(bridge: &Bridge) -> Client {
        let (ws, _) = tokio::time::timeout(PROMPT, connect_async(bridge.ws_url()))
            .await
            .expect("connect in time")
            .expect("WebSocket handshake");
        Client { ws }
    }

    /// Connects and joins `room`; returns the client, its id and the peers in its welcome.
    async fn join(bridge: &Bridge, room: &str) -> (Client, PeerId, Vec<PeerId>) {
        let mut c = Client::connect(bridge).await;
        c.send(&ClientMessage::Join {
            v: PROTOCOL_VERSION,
            room: room.into(),
        })
        .await;
        let (id, peers) = c.welcome(room).await;
        (c, id, peers)
    }

    async fn send(&mut self, m: &ClientMessage) {
        self.send_text(m.to_json()).await;
    }

    async fn send_text(&mut self, text: String) {
        self.ws.send(Message::text(text)).await.expect("send text");
    }

    async fn next(&mut self, within: Duration) -> Option<Seen> {
        loop {
            let frame = match tokio::time::timeout(within, self.ws.next()).await {
                Err(_) => return None,
                Ok(frame) => frame,
            };
            return Some(match frame {
                Some(Ok(Message::Text(t))) => Seen::Msg(
                    ServerMessage::parse(t.as_str())
                        .unwrap_or_else(|e| panic!("bridge sent invalid JSON {t}: {e}")),
                ),
                Some(Ok(Message::Close(frame))) => Seen::Closed(frame),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(other)) => panic!("bridge sent a non-text frame: {other:?}"),
                Some(Err(_)) | None => Seen::Ended,
            });
        }
    }

    async fn recv(&mut self) -> ServerMessage {
        match self.next(PROMPT).await {
            Some(Seen::Msg(m)) => m,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    async fn welcome(&mut self, room: &str) -> (PeerId, Vec<PeerId>) {
        match self.recv().await {
            ServerMessage::Welcome {
                v,
                peer_id,
                room: r,
                peers,
                ..
            } => {
                assert_eq!(v, PROTOCOL_VERSION);
                assert_eq!(r, room);
                assert!(!peer_id.as_str().is_empty());
                (peer_id, peers)
            }
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    async fn expect_error(&mut self, expected: ErrorCode) {
        match self.recv().await {
            ServerMessage::Error { code, message } => {
                assert_eq!(code, expected, "{message}");
                assert!(!message.is_empty());
            }
            other => panic!("expected error {expected:?}, got {other:?}"),
        }
    }

    async fn expect_quiet(&mut self) {
        if let Some(seen) = self.next(QUIET).await {
            panic!("expected nothing, got {seen:?}");
        }
    }
}

fn offer(sdp: &str) -> Signal {
    Signal::Description {
        sdp_type: SdpType::Offer,
        sdp: sdp.into(),
        arq: None,
    }
}

fn signal(to: &PeerId, signal: Signal) -> ClientMessage {
    ClientMessage::Signal {
        to: to.clone(),
        signal,
    }
}

#[tokio::test]
async fn join_is_welcomed_with_the_peers_already_there() {
    let bridge = start().await;
    let (_a, a, peers_a) = Client::join(&bridge, "lobby").await;
    assert!(peers_a.is_empty(), "{peers_a:?}");
    let (_b, b, peers_b) = Client::join(&bridge, "lobby").await;
    assert_eq!(peers_b, vec![a.clone()]);
    let (_c, c, peers_c) = Client::join(&bridge, "lobby").await;
    assert_eq!(peers_c, vec![a.clone(), b.clone()], "join order");
    assert!(a != b && b != c && a != c);
}

#[tokio::test]
async fn peers_hear_of_joins_and_of_closes() {
    let bridge = start().await;
    let (mut a, _, _) = Client::join(&bridge, "lobby").await;
    let (b, b_id, _) = Client::join(&bridge, "lobby").await;
    assert_eq!(
        a.recv().await,
        ServerMessage::PeerJoined {
            peer_id: b_id.clone()
        }
    );
    let (mut c, c_id, _) = Client::join(&bridge, "lobby").await;
    assert_eq!(
        a.recv().await,
        ServerMessage::PeerJoined {
            peer_id: c_id.clone()
        }
    );
    let mut b = b;
    assert_eq!(
        b.recv().await,
        ServerMessage::PeerJoined {
            peer_id: c_id.clone()
        }
    );

    // A clean WebSocket close.
    b.ws.close(None).await.expect("close");
    assert_eq!(
        a.recv().await,
        ServerMessage::PeerLeft {
            peer_id: b_id.clone()
        }
    );
    // The bridge completes the closing handshake.
    assert!(
        matches!(b.next(PROMPT).await, Some(Seen::Closed(_))),
        "no close reply"
    );
    assert_eq!(c.recv().await, ServerMessage::PeerLeft { peer_id: b_id });

    // A dropped TCP connection without a close frame.
    drop(c);
    assert_eq!(a.recv().await, ServerMessage::PeerLeft { peer_id: c_id });
    a.expect_quiet().await;
}

#[tokio::test]
async fn leave_tells_the_room_and_closes_the_connection() {
    let bridge = start().await;
    let (mut a, _, _) = Client::join(&bridge, "lobby").await;
    let (mut b, b_id, _) = Client::join(&bridge, "lobby").await;
    a.recv().await; // peer-joined
    b.send(&ClientMessage::Leave).await;
    assert_eq!(a.recv().await, ServerMessage::PeerLeft { peer_id: b_id });
    match b.next(PROMPT).await {
        Some(Seen::Closed(Some(frame))) => assert_eq!(u16::from(frame.code), 1000),
        other => panic!("expected a normal close, got {other:?}"),
    }
}

#[tokio::test]
async fn input_after_leave_has_no_effect_and_is_logged_and_the_close_is_the_answer() {
    let (logs, _capture) = Logs::capture();
    let bridge = start().await;
    let (mut a, a_id, _) = Client::join(&bridge, "lobby").await;
    let (mut b, b_id, _) = Client::join(&bridge, "lobby").await;
    a.recv().await; // peer-joined
                    // In one write: `leave`, then a signal, a join and a binary frame the bridge reads before
                    // the client could even see its close frame.
    for m in [
        ClientMessage::Leave,
        signal(&a_id, offer("after leave")),
        join_msg("lobby"),
    ] {
        b.ws.feed(Message::text(m.to_json())).await.expect("feed");
    }
    b.ws.feed(Message::binary(vec![1u8])).await.expect("feed");
    b.ws.flush().await.expect("flush");
    // Nothing can follow a close frame: b gets the close 1000 and no error, no welcome.
    b.expect_close(1000).await;
    // The room heard b leave once; the signal was not relayed, the join did not bring b back.
    assert_eq!(a.recv().await, ServerMessage::PeerLeft { peer_id: b_id });
    a.expect_quiet().await;
    let (_c, _, peers) = Client::join(&bridge, "lobby").await;
    assert_eq!(peers, vec![a_id]);
    logs.expect(
        2,
        &[
            "client message ignored: the connection is closing",
            "close_reason=left",
        ],
    );
    logs.expect(
        1,
        &[
            "client binary frame ignored: the connection is closing",
            "close_reason=left",
        ],
    );
}

#[tokio::test]
async fn offer_answer_and_candidates_are_relayed_with_from_set_by_the_bridge() {
    let bridge = start().await;
    let (mut a, a_id, _) = Client::join(&bridge, "lobby").await;
    let (mut b, b_id, peers) = Client::join(&bridge, "lobby").await;
    assert_eq!(peers, vec![a_id.clone()]);
    a.recv().await; // peer-joined

    // The newcomer offers; a forged `from` is ignored.
    let forged = format!(
        r#"{{"type":"signal","to":"{a_id}","from":"{a_id}","signal":{{"kind":"description","sdpType":"offer","sdp":"v=0 offer"}}}}"#
    );
    b.send_text(forged).await;
    assert_eq!(
        a.recv().await,
        ServerMessage::Signal {
            from: b_id.clone(),
            signal: offer("v=0 offer")
        }
    );

    let answer = Signal::Description {
        sdp_type: SdpType::Answer,
        sdp: "v=0 answer".into(),
        arq: None,
    };
    a.send(&signal(&b_id, answer.clone())).await;
    assert_eq!(
        b.recv().await,
        ServerMessage::Signal {
            from: a_id.clone(),
            signal: answer
        }
    );

    let candidate = |n: u16| Signal::Candidate {
        candidate: format!(
            "candidate:{n} 1 udp 2122260223 198.18.0.1 {} typ host",
            50000 + n
        ),
        sdp_mid: Some("0".into()),
        sdp_m_line_index: Some(0),
    };
    for n in 0..3 {
        b.send(&signal(&a_id, candidate(n))).await;
        a.send(&signal(&b_id, candidate(10 + n))).await;
    }
    for n in 0..3 {
        assert_eq!(
            a.recv().await,
            ServerMessage::Signal {
                from: b_id.clone(),
                signal: candidate(n)
            }
        );
        assert_eq!(
            b.recv().await,
            ServerMessage::Signal {
                from: a_id.clone(),
                signal: candidate(10 + n)
            }
        );
    }
    // End-of-candidates: empty candidate string, no mid/index.
    let end = Signal::Candidate {
        candidate: String::new(),
        sdp_mid: None,
        sdp_m_line_index: None,
    };
    b.send(&signal(&a_id, end.clone())).await;
    assert_eq!(
        a.recv().await,
        ServerMessage::Signal {
            from: b_id,
            signal: end
        }
    );
}

#[tokio::test]
async fn signal_to_an_unknown_peer_is_rejected() {
    let (logs, _capture) = Logs::capture();
    let bridge = start().await;
    let (mut a, _, _) = Client::join(&bridge, "lobby").await;
    a.send(&signal(&PeerId::from("nobody"), offer("x"))).await;
    a.expect_error(ErrorCode::UnknownPeer).await;
    logs.expect_rejected(1, ErrorCode::UnknownPeer);
    // The connection stays usable.
    let (_b, b_id, _) = Client::join(&bridge, "lobby").await;
    a.recv().await; // peer-joined
    a.send(&signal(&b_id, offer("x"))).await;
    a.expect_quiet().await;
}

#[tokio::test]
async fn signal_or_leave_before_join_is_not_joined() {
    let (logs, _capture) = Logs::capture();
    let bridge = start().await;
    let (_a, a_id, _) = Client::join(&bridge, "lobby").await;
    let mut c = Client::connect(&bridge).await;
    c.send(&signal(&a_id, offer("x"))).await;
    c.expect_error(ErrorCode::NotJoined).await;
    c.send(&ClientMessage::Leave).await;
    c.expect_error(ErrorCode::NotJoined).await;
    logs.expect_rejected(2, ErrorCode::NotJoined);
}

#[tokio::test]
async fn second_join_is_already_joined() {
    let (logs, _capture) = Logs::capture();
    let bridge = start().await;
    let (mut a, _, _) = Client::join(&bridge, "lobby").await;
    a.send(&ClientMessage::Join {
        v: PROTOCOL_VERSION,
        room: "other".into(),
    })
    .await;
    a.expect_error(ErrorCode::AlreadyJoined).await;
    logs.expect_rejected(1, ErrorCode::AlreadyJoined);
}

#[tokio::test]
async fn bad_json_is_answered_and_the_connection_survives() {
    let (logs, _capture) = Logs::capture();
    let bridge = start().await;
    let mut c = Client::connect(&bridge).await;
    for text in [
        "{",
        "not json",
        r#"{"type":"teleport"}"#,
        r#"{"type":"join","room":"x"}"#,
        "[]",
    ] {
        c.send_text(text.into()).await;
        c.expect_error(ErrorCode::BadJson).await;
    }
    logs.expect_rejected(5, ErrorCode::BadJson);
    c.send(&ClientMessage::Join {
        v: PROTOCOL_VERSION,
        room: "lobby".into(),
    })
    .await;
    c.welcome("lobby").await;
}

#[tokio::test]
async fn other_protocol_versions_are_rejected() {
    let (logs, _capture) = Logs::capture();
    let bridge = start().await;
    let mut c = Client::connect(&bridge).await;
    c.send(&ClientMessage::Join {
        v: PROTOCOL_VERSION + 1,
        room: "lobby".into(),
    })
    .await;
    c.expect_error(ErrorCode::BadVersion).await;
    logs.expect_rejected(1, ErrorCode::BadVersion);
    c.send(&ClientMessage::Join {
        v: PROTOCOL_VERSION,
        room: "lobby".into(),
    })
    .await;
    c.welcome("lobby").await;
}

#[tokio::test]
async fn invalid_room_names_are_rejected() {
    let (logs, _capture) = Logs::capture();
    let bridge = start().await;
    let mut c = Client::connect(&bridge).await;
    for room in [String::new(), "x".repeat(65), "a\u{7}b".into()] {
        c.send(&ClientMessage::Join {
            v: PROTOCOL_VERSION,
            room,
        })
        .await;
        c.expect_error(ErrorCode::BadRoom).await;
    }
    logs.expect_rejected(3, ErrorCode::BadRoom);
}

#[tokio::test]
async fn full_room_is_rejected() {
    let (logs, _capture) = Logs::capture();
    let bridge = start_with(2, None, None).await;
    let (_a, _, _) = Client::join(&bridge, "small").await;
    let (_b, _, _) = Client::join(&bridge, "small").await;
    let mut c = Client::connect(&bridge).await;
    c.send(&ClientMessage::Join {
        v: PROTOCOL_VERSION,
        room: "small".into(),
    })
    .await;
    c.expect_error(ErrorCode::RoomFull).await;
    logs.expect_rejected(1, ErrorCode::RoomFull);
}

#[tokio::test]
async fn slightly_oversized_message_gets_too_large_and_the_connection_survives() {
    let (logs, _capture) = Logs::capture();
    let bridge = start().await;
    let (mut a, a_id, _) = Client::join(&bridge, "lobby").await;
    let (mut b, _, _) = Client::join(&bridge, "lobby").await;
    a.recv().await; // peer-joined
    let big = signal(&a_id, offer(&"x".repeat(MAX_MESSAGE_BYTES + 1024))).to_json();
    assert!(big.len() > MAX_MESSAGE_BYTES);
    b.send_text(big).await;
    b.expect_error(ErrorCode::TooLarge).await;
    logs.expect_rejected(1, ErrorCode::TooLarge);
    a.expect_quiet().await;
    // Still served.
    b.send(&signal(&a_id, offer("small"))).await;
    assert!(matches!(a.recv().await, ServerMessage::Signal { .. }));
}

#[tokio::test]
async fn huge_message_is_refused_and_the_bridge_keeps_serving() {
    let (logs, _capture) = Logs::capture();
    let bridge = start().await;
    let (mut a, a_id, _) = Client::join(&bridge, "lobby").await;
    let (mut b, b_id, _) = Client::join(&bridge, "lobby").await;
    a.recv().await; // peer-joined
                    // 16 MiB: more than the loopback socket buffers hold, so the client is still writing when
                    // the bridge refuses the message and, after its close grace, drops the connection (the
                    // send then fails, which is expected). The refusal must reach the client all the same.
    let huge = signal(&a_id, offer(&"x".repeat(16 * 1024 * 1024))).to_json();
    let _ = b.ws.send(Message::text(huge)).await;
    b.expect_error(ErrorCode::TooLarge).await;
    b.expect_close(1009).await;
    logs.expect(
        1,
        &[
            "rejected client message",
            "code=too-large",
            "close_code=1009",
        ],
    );
    // The other peer hears that the sender is gone, received nothing else, and the bridge
    // still serves new clients in that room.
    assert_eq!(a.recv().await, ServerMessage::PeerLeft { peer_id: b_id });
    let (_c, _, peers) = Client::join(&bridge, "lobby").await;
    assert_eq!(peers, vec![a_id]);
    bridge.shutdown().await;
}

#[tokio::test]
async fn binary_frames_are_rejected() {
    let (logs, _capture) = Logs::capture();
    let bridge = start().await;
    let (mut a, _, _) = Client::join(&bridge, "lobby").await;
    a.ws.send(Message::binary(vec![1u8, 2, 3]))
        .await
        .expect("send binary");
    a.expect_error(ErrorCode::BinaryFrame).await;
    logs.expect_rejected(1, ErrorCode::BinaryFrame);
    // Still joined: a newcomer lists it.
    let (_b, _, peers) = Client::join(&bridge, "lobby").await;
    assert_eq!(peers.len(), 1);
}

#[tokio::test]
async fn rooms_are_isolated() {
    let bridge = start().await;
    let (mut a, _, _) = Client::join(&bridge, "one").await;
    let (mut c, c_id, peers_c) = Client::join(&bridge, "two").await;
    assert!(peers_c.is_empty(), "{peers_c:?}");
    a.expect_quiet().await; // no peer-joined across rooms
    let (_b, b_id, peers_b) = Client::join(&bridge, "one").await;
    assert_eq!(peers_b.len(), 1);
    assert_eq!(
        a.recv().await,
        ServerMessage::PeerJoined {
            peer_id: b_id.clone()
        }
    );
    c.expect_quiet().await;
    // Signals cannot cross rooms either.
    c.send(&signal(&b_id, offer("x"))).await;
    c.expect_error(ErrorCode::UnknownPeer).await;
    a.send(&signal(&c_id, offer("x"))).await;
    a.expect_error(ErrorCode::UnknownPeer).await;
}

#[tokio::test]
async fn concurrent_joins_see_each_other_exactly_once() {
    let bridge = start().await;
    for round in 0..10 {
        let room = format!("race-{round}");
        let mut x = Client::connect(&bridge).await;
        let mut y = Client::connect(&bridge).await;
        let join = ClientMessage::Join {
            v: PROTOCOL_VERSION,
            room: room.clone(),
        };
        tokio::join!(x.send(&join), y.send(&join));
        let ((x_id, x_peers), (y_id, y_peers)) = tokio::join!(x.welcome(&room), y.welcome(&room));
        let x_saw_y = x_peers == vec![y_id.clone()];
        let y_saw_x = y_peers == vec![x_id.clone()];
        assert!(
            x_saw_y != y_saw_x,
            "round {round}: exactly one welcome lists the other: {x_peers:?} {y_peers:?}"
        );
        // The one that came first hears of the other by peer-joined, and vice versa not.
        let (first, newcomer) = if x_saw_y {
            (&mut y, &x_id)
        } else {
            (&mut x, &y_id)
        };
        assert_eq!(
            first.recv().await,
            ServerMessage::PeerJoined {
                peer_id: newcomer.clone()
            }
        );
        let second = if x_saw_y { &mut x } else { &mut y };
        second.expect_quiet().await;
    }
}

#[tokio::test]
async fn a_client_that_does_not_read_is_disconnected_without_hurting_others() {
    let bridge = start().await;
    let (slow, slow_id, _) = Client::join(&bridge, "lobby").await;
    let (b, _, _) = Client::join(&bridge, "lobby").await;
    let (mut b_tx, mut b_rx) = b.ws.split();
    // `slow` never reads again. Flood it through the bridge until the bridge gives up on it;
    // bounded in count (~120 MB at most) and in time.
    let payload = "x".repeat(60 * 1024);
    let flood = async {
        for _ in 0..2000 {
            let m = signal(&slow_id, offer(&payload)).to_json();
            if b_tx.send(Message::text(m)).await.is_err() {
                break;
            }
        }
    };
    let watch = async {
        while let Some(Ok(frame)) = b_rx.next().await {
            if let Message::Text(t) = frame {
                if let Ok(ServerMessage::PeerLeft { peer_id }) = ServerMessage::parse(t.as_str()) {
                    return Some(peer_id);
                }
            }
        }
        None
    };
    // Well under the bridge's 10 s write timeout, so this is the full-queue rule at work and
    // not the stalled-write one.
    let left = tokio::time::timeout(Duration::from_secs(8), async {
        tokio::select! {
            left = watch => left,
            _ = flood => None,
        }
    })
    .await
    .expect("the slow client is dropped in time");
    assert_eq!(left, Some(slow_id.clone()));
    // Others are still served.
    let (_c, _, peers) = Client::join(&bridge, "lobby").await;
    assert_eq!(peers.len(), 1, "only b remains: {peers:?}");
    drop(slow);
    bridge.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_clients_and_stops_listening() {
    let bridge = start().await;
    let url = bridge.ws_url();
    let (mut a, _, _) = Client::join(&bridge, "lobby").await;
    tokio::time::timeout(PROMPT * 2, bridge.shutdown())
        .await
        .expect("shutdown in time");
    match a.next(PROMPT).await {
        Some(Seen::Closed(Some(frame))) => assert_eq!(u16::from(frame.code), 1001),
        other => panic!("expected close 1001, got {other:?}"),
    }
    assert!(
        connect_async(url).await.is_err(),
        "nothing listens after shutdown"
    );
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("miaou-bridge-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct HttpResponse {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// A minimal HTTP/1.1 GET (no client crate needed for a loopback test).
async fn http_get(addr: SocketAddr, path: &str) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut raw = Vec::new();
    tokio::time::timeout(PROMPT, stream.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8(raw[..split].to_vec()).expect("ASCII headers");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status");
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    assert!(
        !headers.contains_key("transfer-encoding"),
        "test client reads only plain bodies"
    );
    HttpResponse {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

#[tokio::test]
async fn serves_www_and_pkg_with_the_right_content_types() {
    let www = TempDir::new();
    let pkg = TempDir::new();
    std::fs::write(
        www.0.join("index.html"),
        "<!doctype html><title>miaou</title>",
    )
    .expect("write");
    std::fs::write(www.0.join("app.js"), "export const x = 1;").expect("write");
    let wasm = b"\0asm\x01\0\0\0".to_vec();
    std::fs::write(pkg.0.join("miaou_transport_bg.wasm"), &wasm).expect("write");
    std::fs::write(pkg.0.join("miaou_transport.js"), "export default 1;").expect("write");
    let bridge = start_with(64, Some(www.0.clone()), Some(pkg.0.clone())).await;
    let addr = bridge.local_addr();
    assert_eq!(bridge.http_url(), format!("http://{addr}/"));
    assert_eq!(bridge.ws_url(), format!("ws://{addr}/ws"));

    let index = http_get(addr, "/").await;
    assert_eq!(index.status, 200);
    assert!(
        index.headers["content-type"].starts_with("text/html"),
        "{:?}",
        index.headers
    );
    assert_eq!(index.body, b"<!doctype html><title>miaou</title>");

    let js = http_get(addr, "/app.js").await;
    assert_eq!(js.status, 200);
    assert!(
        js.headers["content-type"].contains("javascript"),
        "{:?}",
        js.headers
    );

    let module = http_get(addr, "/pkg/miaou_transport_bg.wasm").await;
    assert_eq!(module.status, 200);
    assert_eq!(module.headers["content-type"], "application/wasm");
    assert_eq!(module.body, wasm);

    let glue = http_get(addr, "/pkg/miaou_transport.js").await;
    assert_eq!(glue.status, 200);
    assert_eq!(glue.body, b"export default 1;");

    // pkg files are not in www, and www files are not in pkg.
    assert_eq!(http_get(addr, "/miaou_transport_bg.wasm").await.status, 404);
    assert_eq!(http_get(addr, "/pkg/index.html").await.status, 404);
    assert_eq!(http_get(addr, "/missing.html").await.status, 404);
    // No escape from the served directory.
    assert_ne!(http_get(addr, "/pkg/../index.html").await.status, 200);
    assert_ne!(
        http_get(addr, "/%2e%2e/%2e%2e/etc/passwd").await.status,
        200
    );
    // /ws is only for WebSocket upgrades.
    assert_ne!(http_get(addr, "/ws").await.status, 200);
    bridge.shutdown().await;
}

#[tokio::test]
async fn without_static_dirs_only_the_websocket_is_served() {
    let bridge = start().await;
    assert_eq!(http_get(bridge.local_addr(), "/").await.status, 404);
    assert_eq!(
        http_get(bridge.local_addr(), "/pkg/x.wasm").await.status,
        404
    );
}

// ---- Limits: rate limit, connection limit, join timeout, keepalive ----

fn candidate(n: usize) -> Signal {
    Signal::Candidate {
        candidate: format!(
            "candidate:{n} 1 udp 2122260223 198.18.0.1 {} typ host",
            50_000 + n
        ),
        sdp_mid: Some("0".into()),
        sdp_m_line_index: Some(0),
    }
}

fn end_of_candidates() -> Signal {
    Signal::Candidate {
        candidate: String::new(),
        sdp_mid: None,
        sdp_m_line_index: None,
    }
}

impl Client {
    /// Every message received until nothing arrives for [`QUIET`]; panics if the connection
    /// closes.
    async fn drain(&mut self) -> Vec<ServerMessage> {
        let mut got = Vec::new();
        while let Some(seen) = self.next(QUIET).await {
            match seen {
                Seen::Msg(m) => got.push(m),
                other => panic!("connection ended after {got:?}: {other:?}"),
            }
        }
        got
    }

    /// Expects a close frame with `code` next.
    async fn expect_close(&mut self, code: u16) {
        match self.next(PROMPT).await {
            Some(Seen::Closed(Some(frame))) => assert_eq!(u16::from(frame.code), code, "{frame:?}"),
            other => panic!("expected close {code}, got {other:?}"),
        }
    }
}

fn join_msg(room: &str) -> ClientMessage {
    ClientMessage::Join {
        v: PROTOCOL_VERSION,
        room: room.into(),
    }
}

fn is_error(m: &ServerMessage, expected: ErrorCode) -> bool {
    matches!(m, ServerMessage::Error { code, message } if *code == expected && !message.is_empty())
}

#[test]
fn default_limits_are_the_documented_ones() {
    let c = BridgeConfig::default();
    assert_eq!(c.max_peers_per_room, 64);
    assert_eq!(c.max_connections, 16_384);
    assert_eq!(
        c.rate_limit,
        RateLimit {
            burst: 2048,
            per_second: 100,
            max_dropped: 20_480
        }
    );
    assert_eq!(c.join_timeout, Duration::from_secs(10));
    assert_eq!(c.ping_interval, Duration::from_secs(20));
    assert_eq!(c.idle_timeout, Duration::from_secs(60));
}

#[tokio::test]
async fn messages_over_the_rate_limit_are_dropped_and_answered_rate_limited() {
    let (logs, _capture) = Logs::capture();
    let bridge = start_config(|c| {
        c.rate_limit = RateLimit {
            burst: 5,
            per_second: 0,
            max_dropped: 100,
        }
    })
    .await;
    let (mut a, a_id, _) = Client::join(&bridge, "lobby").await;
    let (mut b, b_id, _) = Client::join(&bridge, "lobby").await;
    assert_eq!(
        a.recv().await,
        ServerMessage::PeerJoined {
            peer_id: b_id.clone()
        }
    );
    // b spent one of its 5 messages on `join`: 4 of these 7 are relayed, 3 dropped.
    for i in 0..7 {
        b.send(&signal(&a_id, offer(&i.to_string()))).await;
    }
    let relayed: Vec<ServerMessage> = (0..4)
        .map(|i| ServerMessage::Signal {
            from: b_id.clone(),
            signal: offer(&i.to_string()),
        })
        .collect();
    assert_eq!(a.drain().await, relayed);
    let errors = b.drain().await;
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        errors.iter().all(|e| is_error(e, ErrorCode::RateLimited)),
        "{errors:?}"
    );
    // One line per episode, not per dropped message: a flood must not flood the log too.
    logs.expect(
        1,
        &["client over its message rate limit", "code=rate-limited"],
    );
    // A dropped message has no effect: a dropped `leave` leaves b in the room.
    b.send(&ClientMessage::Leave).await;
    b.expect_error(ErrorCode::RateLimited).await;
    a.expect_quiet().await;
    // The connection stays open and still receives: a newcomer is announced to b.
    let (_c, c_id, peers) = Client::join(&bridge, "lobby").await;
    assert_eq!(peers, vec![a_id, b_id]);
    assert_eq!(b.recv().await, ServerMessage::PeerJoined { peer_id: c_id });
}

#[tokio::test]
async fn the_rate_limit_refills_at_the_sustained_rate_up_to_the_burst() {
    let bridge = start_config(|c| {
        c.rate_limit = RateLimit {
            burst: 3,
            per_second: 10,
            max_dropped: 1000,
        }
    })
    .await;
    let (mut a, a_id, _) = Client::join(&bridge, "lobby").await;
    let (mut b, _, _) = Client::join(&bridge, "lobby").await;
    a.recv().await; // peer-joined
    let burst = |round: usize| {
        (0..10)
            .map(|i| signal(&a_id, offer(&format!("{round}-{i}"))))
            .collect::<Vec<_>>()
    };
    // Round 1: what is left of the burst after `join` (2), plus one per 100 ms elapsed.
    for m in burst(1) {
        b.send(&m).await;
    }
    let relayed = a.drain().await.len();
    let errors = b.drain().await;
    assert!((2..=4).contains(&relayed), "{relayed} relayed");
    assert_eq!(relayed + errors.len(), 10, "{errors:?}");
    // Round 2, after 0.5 s (and the 0.6 s of the drains): 10/s would give 11 messages, but
    // the bucket holds at most the burst of 3.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for m in burst(2) {
        b.send(&m).await;
    }
    let relayed = a.drain().await.len();
    let errors = b.drain().await;
    assert!((3..=5).contains(&relayed), "{relayed} relayed");
    assert_eq!(relayed + errors.len(), 10, "{errors:?}");
    assert!(errors.iter().all(|e| is_error(e, ErrorCode::RateLimited)));
}

#[tokio::test]
async fn a_client_far_over_the_rate_limit_is_disconnected() {
    let (logs, _capture) = Logs::capture();
    let bridge = start_config(|c| {
        c.rate_limit = RateLimit {
            burst: 5,
            per_second: 0,
            max_dropped: 10,
        }
    })
    .await;
    let (mut a, a_id, _) = Client::join(&bridge, "lobby").await;
    let (mut b, b_id, _) = Client::join(&bridge, "lobby").await;
    a.recv().await; // peer-joined
                    // The bridge may close before b finished writing; later sends may fail.
    for i in 0..30 {
        let m = signal(&a_id, offer(&i.to_string())).to_json();
        let _ = b.ws.send(Message::text(m)).await;
    }
    // join + 4 relayed use the burst; 10 are dropped; the 11th over-limit message closes.
    let mut errors = 0;
    let close = loop {
        match b.next(PROMPT).await {
            Some(Seen::Msg(m)) if is_error(&m, ErrorCode::RateLimited) => errors += 1,
            Some(Seen::Closed(frame)) => break frame,
            other => panic!("after {errors} errors: {other:?}"),
        }
    };
    assert_eq!(errors, 11);
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1008));
    logs.expect(
        1,
        &[
            "client far over its message rate limit; disconnecting",
            "code=rate-limited",
            "close_code=1008",
        ],
    );
    for i in 0..4 {
        assert_eq!(
            a.recv().await,
            ServerMessage::Signal {
                from: b_id.clone(),
                signal: offer(&i.to_string())
            }
        );
    }
    assert_eq!(a.recv().await, ServerMessage::PeerLeft { peer_id: b_id });
    a.expect_quiet().await;
    let (_c, _, peers) = Client::join(&bridge, "lobby").await;
    assert_eq!(peers, vec![a_id]);
}

/// 50 peers in one room, each sending an offer or answer, 20 trickled candidates and an
/// end-of-candidates marker to each of the 49 others as fast as it can (1 078 messages per
/// connection), with the default limits: nothing is refused and everything arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_of_50_joining_with_trickle_ice_never_trips_the_default_rate_limit() {
    const N: usize = 50;
    const PER_PEER: usize = 22;
    let bridge = start().await;
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..N {
        let (c, id, _) = Client::join(&bridge, "big").await;
        clients.push(c);
        ids.push(id);
    }
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let ids = ids.clone();
            tokio::spawn(async move {
                let (mut tx, mut rx) = c.ws.split();
                let send = async {
                    // Each client goes through its peers in a different order, as real ones
                    // gather candidates at different times.
                    for k in 1..N {
                        let to = &ids[(i + k) % N];
                        let mut batch = vec![signal(to, offer("v=0\r\n"))];
                        batch.extend((0..PER_PEER - 2).map(|n| signal(to, candidate(n))));
                        batch.push(signal(to, end_of_candidates()));
                        for m in batch {
                            tx.feed(Message::text(m.to_json())).await.expect("send");
                        }
                    }
                    tx.flush().await.expect("flush");
                };
                let receive = async {
                    // One deadline for the whole exchange (the bridge's pings would keep a
                    // per-frame timeout from ever expiring); the first surprise ends it.
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                    let mut signals = 0;
                    let mut unexpected = None;
                    while signals < (N - 1) * PER_PEER && unexpected.is_none() {
                        match tokio::time::timeout_at(deadline, rx.next()).await {
                            Ok(Some(Ok(Message::Text(t)))) => {
                                match ServerMessage::parse(t.as_str()) {
                                    Ok(ServerMessage::Signal { .. }) => signals += 1,
                                    Ok(ServerMessage::PeerJoined { .. }) => {}
                                    other => unexpected = Some(format!("{other:?}")),
                                }
                            }
                            Ok(Some(Ok(_))) => {}
                            other => unexpected = Some(format!("{other:?}")),
                        }
                    }
                    (signals, unexpected)
                };
                let ((), (signals, unexpected)) = tokio::join!(send, receive);
                (i, signals, unexpected)
            })
        })
        .collect();
    for task in futures::future::join_all(tasks).await {
        let (i, signals, unexpected) = task.expect("client task");
        assert_eq!(unexpected, None, "client {i} after {signals} signals");
        assert_eq!(signals, (N - 1) * PER_PEER, "client {i}");
    }
    bridge.shutdown().await;
}

#[tokio::test]
async fn connections_past_the_limit_get_server_full_and_a_close() {
    let (logs, _capture) = Logs::capture();
    let bridge = start_config(|c| c.max_connections = 2).await;
    // Not joined yet, but it holds a connection slot all the same.
    let mut idle = Client::connect(&bridge).await;
    let (_b, b_id, _) = Client::join(&bridge, "lobby").await;
    for _ in 0..2 {
        let mut refused = Client::connect(&bridge).await;
        refused.expect_error(ErrorCode::ServerFull).await;
        refused.expect_close(1013).await;
    }
    // Said once per episode of refusals (the second refusal only at debug level).
    logs.expect(
        1,
        &[
            "connection limit reached",
            "code=server-full",
            "close_code=1013",
        ],
    );
    // Once a connection ends, its slot serves the next client.
    idle.ws.close(None).await.expect("close");
    while let Some(Seen::Msg(_)) = idle.next(PROMPT).await {}
    let deadline = tokio::time::Instant::now() + PROMPT;
    loop {
        let mut d = Client::connect(&bridge).await;
        let _ = d.ws.send(Message::text(join_msg("lobby").to_json())).await;
        match d.recv().await {
            ServerMessage::Welcome { peers, .. } => {
                assert_eq!(peers, vec![b_id]);
                break;
            }
            m if is_error(&m, ErrorCode::ServerFull) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("expected a welcome once a slot was free, got {other:?}"),
        }
    }
    bridge.shutdown().await;
}

#[tokio::test]
async fn a_connection_that_does_not_join_in_time_is_closed() {
    let (logs, _capture) = Logs::capture();
    let timeout = Duration::from_millis(300);
    let bridge = start_config(|c| c.join_timeout = timeout).await;
    let opened = tokio::time::Instant::now();
    let mut silent = Client::connect(&bridge).await;
    let (mut joined, joined_id, _) = Client::join(&bridge, "lobby").await;
    silent.expect_error(ErrorCode::JoinTimeout).await;
    let elapsed = opened.elapsed();
    assert!(
        elapsed >= timeout - Duration::from_millis(50),
        "closed after {elapsed:?}"
    );
    silent.expect_close(1008).await;
    logs.expect(
        1,
        &[
            "no valid join within the join timeout",
            "code=join-timeout",
            "close_code=1008",
        ],
    );
    // A client that joined in time is not affected, long after the timeout.
    tokio::time::sleep(timeout * 2).await;
    joined.expect_quiet().await;
    let (_c, _, peers) = Client::join(&bridge, "lobby").await;
    assert_eq!(peers, vec![joined_id]);
}

#[tokio::test]
async fn refused_joins_neither_count_nor_postpone_the_join_timeout() {
    let bridge = start_config(|c| c.join_timeout = Duration::from_millis(300)).await;
    let mut c = Client::connect(&bridge).await;
    let mut bad_room = 0;
    let mut timed_out = false;
    let deadline = tokio::time::Instant::now() + PROMPT;
    let mut next_send = tokio::time::Instant::now();
    let close = loop {
        let now = tokio::time::Instant::now();
        assert!(now < deadline, "not closed in time");
        // Keep the connection busy with a join the bridge refuses every 50 ms.
        if now >= next_send {
            let _ = c.ws.send(Message::text(join_msg("").to_json())).await;
            next_send = now + Duration::from_millis(50);
        }
        match c.next(next_send.saturating_duration_since(now)).await {
            None => {}
            Some(Seen::Msg(m)) if is_error(&m, ErrorCode::BadRoom) && !timed_out => bad_room += 1,
            Some(Seen::Msg(m)) if is_error(&m, ErrorCode::JoinTimeout) && !timed_out => {
                timed_out = true
            }
            Some(Seen::Closed(frame)) => break frame,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(bad_room >= 2, "{bad_room} refused joins answered");
    assert!(timed_out, "no join-timeout error before the close");
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1008));
}

#[tokio::test]
async fn unresponsive_connections_are_dropped_and_their_room_told() {
    let idle_timeout = Duration::from_millis(400);
    let bridge = start_config(|c| {
        c.ping_interval = Duration::from_millis(100);
        c.idle_timeout = idle_timeout;
    })
    .await;
    let (mut a, _, _) = Client::join(&bridge, "lobby").await;
    // `dead` never reads nor writes again, so it never answers a ping: to the bridge it looks
    // like a half-open TCP connection.
    let (mut dead, dead_id, _) = Client::join(&bridge, "lobby").await;
    let joined = tokio::time::Instant::now();
    // `a` only reads (which answers pings) for three idle timeouts.
    let until = joined + idle_timeout * 3;
    let mut pings = 0;
    let mut events = Vec::new();
    while let Ok(frame) = tokio::time::timeout_at(until, a.ws.next()).await {
        match frame {
            Some(Ok(Message::Ping(_))) => pings += 1,
            Some(Ok(Message::Text(t))) => events.push((
                ServerMessage::parse(t.as_str()).expect("valid JSON"),
                joined.elapsed(),
            )),
            other => panic!("a lost its connection: {other:?}"),
        }
    }
    assert!(pings >= 5, "only {pings} pings in {:?}", idle_timeout * 3);
    let [(first, _), (second, left_after)] = events.as_slice() else {
        panic!("expected peer-joined then peer-left, got {events:?}");
    };
    assert_eq!(
        first,
        &ServerMessage::PeerJoined {
            peer_id: dead_id.clone()
        }
    );
    assert_eq!(second, &ServerMessage::PeerLeft { peer_id: dead_id });
    assert!(
        *left_after >= idle_timeout - Duration::from_millis(100),
        "dropped after only {left_after:?}"
    );
    // `a`, silent but answering pings, is still there.
    let (_c, _, peers) = Client::join(&bridge, "lobby").await;
    assert_eq!(peers.len(), 1, "{peers:?}");
    // The dead connection was dropped without a close frame (the pings it never read are
    // skipped by `next`).
    match dead.next(PROMPT).await {
        Some(Seen::Ended) => {}
        other => panic!("expected the socket to be dropped, got {other:?}"),
    }
}

// ---- WebSocket protocol violations, with hand-written frames ----

/// A WebSocket client on a raw TCP stream, writing frames byte by byte so it can break RFC 6455
/// on purpose (which tungstenite, as a client, refuses to do).
struct RawClient {
    tcp: TcpStream,
    /// Bytes read but not parsed yet.
    buf: Vec<u8>,
}

/// FIN bit of the first frame byte (RFC 6455 §5.2).
const FIN: u8 = 0x80;
const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;

impl RawClient {
    /// Opens `/ws` with a hand-written upgrade request.
    async fn connect(bridge: &Bridge) -> RawClient {
        let addr = bridge.local_addr();
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.expect("write");
        let mut client = RawClient {
            tcp,
            buf: Vec::new(),
        };
        let end = loop {
            if let Some(at) = client.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            assert!(
                client.fill().await,
                "connection closed during the handshake"
            );
        };
        let head = String::from_utf8_lossy(&client.buf[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        client.buf.drain(..end);
        client
    }

    /// Reads more bytes; `false` at end of stream or on an error (a reset).
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(PROMPT, self.tcp.read(&mut chunk)).await {
            Ok(Ok(n @ 1..)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Ok(_) => false,
            Err(_) => panic!("nothing from the bridge within {PROMPT:?}"),
        }
    }

    /// Writes one frame: `first` is the FIN/RSV/opcode byte; masked with a fixed key unless
    /// `masked` is false (client frames must be masked, §5.3). Payloads under 126 bytes.
    async fn frame(&mut self, first: u8, payload: &[u8], masked: bool) {
        assert!(payload.len() < 126);
        let mut bytes = vec![first];
        if masked {
            let key = [0x37, 0xfa, 0x21, 0x3d];
            bytes.push(0x80 | payload.len() as u8);
            bytes.extend_from_slice(&key);
            bytes.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        } else {
            bytes.push(payload.len() as u8);
            bytes.extend_from_slice(payload);
        }
        self.tcp.write_all(&bytes).await.expect("write frame");
    }

    /// The next frame from the bridge (unmasked, §5.1): opcode and payload; `None` if the
    /// connection ended first.
    async fn next_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 2 {
                let (len, header) = match self.buf[1] & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => {
                        let mut n = [0u8; 8];
                        n.copy_from_slice(&self.buf[2..10]);
                        (u64::from_be_bytes(n) as usize, 10)
                    }
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                if header > 0 && self.buf.len() >= header + len {
                    let opcode = self.buf[0] & 0x0f;
                    let payload = self.buf[header..header + len].to_vec();
                    self.buf.drain(..header + len);
                    return Some((opcode, payload));
                }
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Joins `room` and waits for the welcome.
    async fn join(&mut self, room: &str) {
        self.frame(FIN | OP_TEXT, join_msg(room).to_json().as_bytes(), true)
            .await;
        match self.next_frame().await {
            Some((OP_TEXT, text)) => assert!(
                matches!(
                    ServerMessage::parse(&String::from_utf8_lossy(&text)),
                    Ok(ServerMessage::Welcome { .. })
                ),
                "{}",
                String::from_utf8_lossy(&text)
            ),
            other => panic!("expected a welcome, got {other:?}"),
        }
    }

    /// The code of the close frame the bridge sends next, skipping pings; panics if anything
    /// else arrives or the connection ends without a close frame.
    async fn close_code(&mut self) -> u16 {
        loop {
            match self.next_frame().await {
                Some((OP_PING, _)) => continue,
                Some((OP_CLOSE, payload)) if payload.len() >= 2 => {
                    return u16::from_be_bytes([payload[0], payload[1]])
                }
                other => panic!("expected a close frame with a code, got {other:?}"),
            }
        }
    }
}

/// What is wrong, the frames (first byte, payload, masked) that do it, the close code due.
type ViolationCase = (&'static str, Vec<(u8, &'static [u8], bool)>, u16);

#[tokio::test]
async fn protocol_violations_fail_the_connection_with_a_close_code_and_a_log_line() {
    let (logs, _capture) = Logs::capture();
    let bridge = start().await;
    let (mut a, _, _) = Client::join(&bridge, "lobby").await;
    let text = FIN | OP_TEXT;
    let cases: Vec<ViolationCase> = vec![
        ("invalid UTF-8", vec![(text, b"ok \xff\xfe", true)], 1007),
        (
            "invalid UTF-8 across fragments",
            vec![
                (OP_TEXT, b"\xe2\x82", true),
                (FIN | OP_CONTINUATION, b"(", true),
            ],
            1007,
        ),
        (
            "reserved data opcode 0x3",
            vec![(FIN | 0x3, b"x", true)],
            1002,
        ),
        (
            "reserved control opcode 0xB",
            vec![(FIN | 0xB, b"", true)],
            1002,
        ),
        ("unmasked client frame", vec![(text, b"{}", false)], 1002),
        (
            "RSV1 without an extension",
            vec![(text | 0x40, b"{}", true)],
            1002,
        ),
        ("fragmented ping", vec![(OP_PING, b"", true)], 1002),
        (
            "continuation without a start",
            vec![(FIN | OP_CONTINUATION, b"x", true)],
            1002,
        ),
    ];
    for (what, frames, code) in &cases {
        let mut raw = RawClient::connect(&bridge).await;
        raw.join("lobby").await;
        let joined = match a.recv().await {
            ServerMessage::PeerJoined { peer_id } => peer_id,
            other => panic!("{what}: expected peer-joined, got {other:?}"),
        };
        for &(first, payload, masked) in frames {
            raw.frame(first, payload, masked).await;
        }
        assert_eq!(raw.close_code().await, *code, "{what}");
        // The room hears that the peer is gone.
        assert_eq!(
            a.recv().await,
            ServerMessage::PeerLeft { peer_id: joined },
            "{what}"
        );
    }
    logs.expect(
        2,
        &["WebSocket protocol violation; closing", "close_code=1007"],
    );
    logs.expect(
        cases.len() - 2,
        &["WebSocket protocol violation; closing", "close_code=1002"],
    );
    // Each line says what was wrong.
    for reason in [
        "invalid UTF-8 in a text message",
        "reserved opcode",
        "unmasked client frame",
        "reserved bits set",
        "invalid control frame",
        "invalid fragmentation",
    ] {
        assert!(
            !logs
                .lines_with(&["WebSocket protocol violation", reason])
                .is_empty(),
            "no log line says {reason:?}"
        );
    }
    a.expect_quiet().await;
    bridge.shutdown().await;
}
