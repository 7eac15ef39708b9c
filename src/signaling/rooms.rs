//! Rooms of the signaling bridge as a pure state machine: text in, messages out.
//!
//! No I/O, no async, no clock. The bridge (module `bridge`, feature `bridge`) owns the sockets
//! and feeds every event of every connection through one [`Rooms`] value, one event at a time;
//! [`Rooms`] answers with the [`Outgoing`] actions to perform, in order. Handling events one at a
//! time is what makes the negotiation rule ([`super::negotiation`], newcomer offers) glare-free:
//! of any two peers, exactly one sees the other in its `welcome`.
//!
//! Connections are named by [`ConnId`], a handle chosen by the I/O layer. Peer ids, which are
//! visible on the wire, come from a generator given at construction so tests are deterministic.

use std::collections::{HashMap, HashSet};
use std::fmt;

use super::protocol::{
    validate_room, ClientMessage, ErrorCode, PeerId, ServerMessage, Signal, MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
};

/// Default for the largest number of peers in one room.
pub const DEFAULT_MAX_PEERS_PER_ROOM: usize = 64;

/// Bridge-local handle of one client connection, chosen by the I/O layer. Never sent on the
/// wire; the I/O layer must not reuse a value while [`Rooms`] may still know it (that is, before
/// [`Rooms::disconnect`] was called for it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// One action for the I/O layer, produced by [`Rooms`]. Perform them in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// Send `message` to connection `to`.
    Send {
        /// Destination connection.
        to: ConnId,
        /// The message.
        message: ServerMessage,
    },
    /// Close connection `conn` once the messages queued for it before this action are sent
    /// (the answer to `leave`, repeated for any input after it: perform it once per
    /// connection). [`Rooms`] already forgot the connection's membership.
    Close {
        /// The connection to close.
        conn: ConnId,
    },
}

impl Outgoing {
    /// The connection this action concerns.
    pub fn conn(&self) -> ConnId {
        match self {
            Outgoing::Send { to, .. } => *to,
            Outgoing::Close { conn } => *conn,
        }
    }

    fn send(to: ConnId, message: ServerMessage) -> Self {
        Outgoing::Send { to, message }
    }

    fn error(to: ConnId, code: ErrorCode, message: impl Into<String>) -> Self {
        Outgoing::Send {
            to,
            message: ServerMessage::error(code, message),
        }
    }
}

/// A joined connection.
#[derive(Debug)]
struct Member {
    peer_id: PeerId,
    room: String,
}

/// Source of peer ids. Boxed so that [`Rooms`] is not generic over it.
type PeerIdGenerator = Box<dyn FnMut() -> PeerId + Send>;

/// All rooms of one bridge: who is in which room, under which peer id.
///
/// Every method takes one input event and returns the [`Outgoing`] actions it causes. Invalid
/// input never changes the state; it produces one [`ServerMessage::Error`] for the sender (or,
/// after `leave`, [`Outgoing::Close`] again).
pub struct Rooms {
    max_peers_per_room: usize,
    next_peer_id: PeerIdGenerator,
    /// Joined connections.
    members: HashMap<ConnId, Member>,
    /// Peer id → connection, for routing `signal`s.
    peers: HashMap<PeerId, ConnId>,
    /// Room name → its connections in join order. A room exists only while non-empty.
    rooms: HashMap<String, Vec<ConnId>>,
    /// Connections that sent `leave` and are being closed; their further input is answered by
    /// the close again, with no effect, so a late `join` cannot resurrect them.
    closing: HashSet<ConnId>,
    /// Suffix counter used only if the generator repeats a live peer id.
    collisions: u64,
}

impl fmt::Debug for Rooms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rooms")
            .field("max_peers_per_room", &self.max_peers_per_room)
            .field("members", &self.members)
            .field("rooms", &self.rooms)
            .field("closing", &self.closing)
            .finish_non_exhaustive()
    }
}

impl Default for Rooms {
    /// [`DEFAULT_MAX_PEERS_PER_ROOM`] and counter peer ids (see [`Rooms::new`]).
    fn default() -> Self {
        Rooms::new(DEFAULT_MAX_PEERS_PER_ROOM)
    }
}

impl Rooms {
    /// Rooms of at most `max_peers_per_room` peers (values below 1 count as 1), with peer ids
    /// `p1`, `p2`, … in join order.
    pub fn new(max_peers_per_room: usize) -> Self {
        let mut n: u64 = 0;
        Rooms::with_peer_ids(max_peers_per_room, move || {
            n += 1;
            PeerId(format!("p{n}"))
        })
    }

    /// Rooms of at most `max_peers_per_room` peers (values below 1 count as 1), with peer ids
    /// drawn from `next_peer_id` on each successful join. Should the generator return the id of
    /// a peer still present, a `#N` suffix makes it unique, so routing can never be ambiguous.
    pub fn with_peer_ids(
        max_peers_per_room: usize,
        next_peer_id: impl FnMut() -> PeerId + Send + 'static,
    ) -> Self {
        Rooms {
            max_peers_per_room: max_peers_per_room.max(1),
            next_peer_id: Box::new(next_peer_id),
            members: HashMap::new(),
            peers: HashMap::new(),
            rooms: HashMap::new(),
            closing: HashSet::new(),
            collisions: 0,
        }
    }

    /// The largest number of peers in one room.
    pub fn max_peers_per_room(&self) -> usize {
        self.max_peers_per_room
    }

    /// The peer id and room of `conn`, if it has joined.
    pub fn member(&self, conn: ConnId) -> Option<(&PeerId, &str)> {
        self.members
            .get(&conn)
            .map(|m| (&m.peer_id, m.room.as_str()))
    }

    /// The peers in `room`, in join order; empty if the room does not exist.
    pub fn peers_in(&self, room: &str) -> Vec<PeerId> {
        self.rooms
            .get(room)
            .map(|conns| self.peer_ids(conns))
            .unwrap_or_default()
    }

    /// Number of non-empty rooms.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Handles one text frame from `conn`: `join`, `signal` or `leave`.
    ///
    /// Replies with [`ServerMessage::Error`] to `conn` for: oversized text
    /// ([`ErrorCode::TooLarge`], also when the relayed form would exceed
    /// [`MAX_MESSAGE_BYTES`]), malformed JSON ([`ErrorCode::BadJson`]), a `join` with another
    /// version ([`ErrorCode::BadVersion`]) or an invalid room ([`ErrorCode::BadRoom`]), a second
    /// `join` ([`ErrorCode::AlreadyJoined`]), a full room ([`ErrorCode::RoomFull`]), `signal` or
    /// `leave` before `join` ([`ErrorCode::NotJoined`]), and a `signal` to a peer that is not
    /// another member of the sender's room ([`ErrorCode::UnknownPeer`]).
    ///
    /// Input from a connection that sent `leave`, whatever it is, has no effect and is answered
    /// by [`Outgoing::Close`] for it again: its close frame was queued by the `leave`, and a
    /// WebSocket endpoint sends nothing after a close frame (RFC 6455 §5.5.1), so an `error`
    /// reply could never be delivered. The I/O layer closes each connection once.
    pub fn handle(&mut self, conn: ConnId, text: &str) -> Vec<Outgoing> {
        if self.closing.contains(&conn) {
            return vec![Outgoing::Close { conn }];
        }
        let message = match ClientMessage::parse(text) {
            Ok(message) => message,
            Err(e) => return vec![Outgoing::error(conn, e.code(), e.to_string())],
        };
        match message {
            ClientMessage::Join { v, room } => {
                // A second join is reported as such whatever its version: that is the real bug.
                if self.members.contains_key(&conn) {
                    return self.join(conn, &room);
                }
                if v != PROTOCOL_VERSION {
                    let text = format!("protocol version {v} is not supported; this bridge speaks {PROTOCOL_VERSION}");
                    return vec![Outgoing::error(conn, ErrorCode::BadVersion, text)];
                }
                self.join(conn, &room)
            }
            ClientMessage::Signal { to, signal } => self.relay(conn, to, signal),
            ClientMessage::Leave => self.leave(conn),
        }
    }

    /// Handles one binary frame from `conn`: always an [`ErrorCode::BinaryFrame`] reply, since
    /// the protocol is JSON text only. Once `conn` sent `leave`, [`Outgoing::Close`] again, as
    /// for [`Rooms::handle`].
    pub fn handle_binary(&mut self, conn: ConnId) -> Vec<Outgoing> {
        if self.closing.contains(&conn) {
            return vec![Outgoing::Close { conn }];
        }
        vec![Outgoing::error(
            conn,
            ErrorCode::BinaryFrame,
            "binary frames are not part of the protocol; send JSON text",
        )]
    }

    /// Puts `conn` in `room` (the version was checked by the caller). On success returns one
    /// [`ServerMessage::PeerJoined`] to each peer already in the room, then the
    /// [`ServerMessage::Welcome`] for `conn` listing those peers in join order.
    ///
    /// Errors, as a single reply to `conn`: [`ErrorCode::AlreadyJoined`],
    /// [`ErrorCode::BadRoom`], [`ErrorCode::RoomFull`] (the room has the maximum number of peers,
    /// or the welcome listing them would exceed [`MAX_MESSAGE_BYTES`]). Once `conn` sent
    /// `leave`, [`Outgoing::Close`] again, as for [`Rooms::handle`].
    pub fn join(&mut self, conn: ConnId, room: &str) -> Vec<Outgoing> {
        if self.closing.contains(&conn) {
            return vec![Outgoing::Close { conn }];
        }
        if let Some(m) = self.members.get(&conn) {
            let text = format!("already joined room {:?} as {}", m.room, m.peer_id);
            return vec![Outgoing::error(conn, ErrorCode::AlreadyJoined, text)];
        }
        if let Err(reason) = validate_room(room) {
            return vec![Outgoing::error(conn, ErrorCode::BadRoom, reason)];
        }
        let present: Vec<ConnId> = self.rooms.get(room).cloned().unwrap_or_default();
        if present.len() >= self.max_peers_per_room {
            let text = format!("room {room:?} is full ({} peers)", self.max_peers_per_room);
            return vec![Outgoing::error(conn, ErrorCode::RoomFull, text)];
        }

        let peer_id = self.fresh_peer_id();
        let welcome = ServerMessage::Welcome {
            v: PROTOCOL_VERSION,
            peer_id: peer_id.clone(),
            room: room.to_owned(),
            peers: self.peer_ids(&present),
            // Filled in by the bridge, which holds the TURN secret and the clock.
            turn: None,
        };
        // A welcome the client would reject as too large is as good as a full room; this bounds
        // rooms whatever the configured limit and the length of the generated ids.
        let len = welcome.to_json().len();
        if len > MAX_MESSAGE_BYTES {
            let text = format!("room {room:?} is full: its peer list would take {len} bytes");
            return vec![Outgoing::error(conn, ErrorCode::RoomFull, text)];
        }
        let mut out: Vec<Outgoing> = present
            .iter()
            .map(|&other| {
                Outgoing::send(
                    other,
                    ServerMessage::PeerJoined {
                        peer_id: peer_id.clone(),
                    },
                )
            })
            .collect();
        out.push(Outgoing::send(conn, welcome));

        self.rooms.entry(room.to_owned()).or_default().push(conn);
        self.peers.insert(peer_id.clone(), conn);
        self.members.insert(
            conn,
            Member {
                peer_id,
                room: room.to_owned(),
            },
        );
        out
    }

    /// Forgets `conn` (its socket closed or failed): one [`ServerMessage::PeerLeft`] to each
    /// remaining peer of its room; the room is removed once empty. Nothing if `conn` had not
    /// joined; calling it twice is harmless. The I/O layer must call it for every connection
    /// that ends.
    pub fn disconnect(&mut self, conn: ConnId) -> Vec<Outgoing> {
        self.closing.remove(&conn);
        self.remove_member(conn)
    }

    /// `leave`: like [`Rooms::disconnect`], then [`Outgoing::Close`] for `conn`.
    fn leave(&mut self, conn: ConnId) -> Vec<Outgoing> {
        if !self.members.contains_key(&conn) {
            return vec![Outgoing::error(
                conn,
                ErrorCode::NotJoined,
                "leave before join",
            )];
        }
        let mut out = self.remove_member(conn);
        self.closing.insert(conn);
        out.push(Outgoing::Close { conn });
        out
    }

    fn relay(&mut self, conn: ConnId, to: PeerId, signal: Signal) -> Vec<Outgoing> {
        let Some(sender) = self.members.get(&conn) else {
            return vec![Outgoing::error(
                conn,
                ErrorCode::NotJoined,
                "signal before join",
            )];
        };
        let target = self
            .peers
            .get(&to)
            .copied()
            .filter(|&target| target != conn)
            .filter(|target| {
                self.members
                    .get(target)
                    .is_some_and(|m| m.room == sender.room)
            });
        let Some(target) = target else {
            let text = format!("no other peer {to} in room {:?}", sender.room);
            return vec![Outgoing::error(conn, ErrorCode::UnknownPeer, text)];
        };
        // `from` is always the bridge's record of the sender, whatever the client wrote.
        let message = ServerMessage::Signal {
            from: sender.peer_id.clone(),
            signal,
        };
        // The relayed form can be longer than what arrived (`from` vs `to`, escapes); the
        // receiver would reject it past the limit, so the sender hears about it instead.
        let len = message.to_json().len();
        if len > MAX_MESSAGE_BYTES {
            let text =
                format!("relayed signal would be {len} bytes; the limit is {MAX_MESSAGE_BYTES}");
            return vec![Outgoing::error(conn, ErrorCode::TooLarge, text)];
        }
        vec![Outgoing::send(target, message)]
    }

    fn remove_member(&mut self, conn: ConnId) -> Vec<Outgoing> {
        let Some(member) = self.members.remove(&conn) else {
            return Vec::new();
        };
        self.peers.remove(&member.peer_id);
        let mut out = Vec::new();
        if let Some(conns) = self.rooms.get_mut(&member.room) {
            conns.retain(|&c| c != conn);
            out.extend(conns.iter().map(|&other| {
                Outgoing::send(
                    other,
                    ServerMessage::PeerLeft {
                        peer_id: member.peer_id.clone(),
                    },
                )
            }));
            if conns.is_empty() {
                self.rooms.remove(&member.room);
            }
        }
        out
    }

    fn peer_ids(&self, conns: &[ConnId]) -> Vec<PeerId> {
        conns
            .iter()
            .filter_map(|c| self.members.get(c))
            .map(|m| m.peer_id.clone())
            .collect()
    }

    fn fresh_peer_id(&mut self) -> PeerId {
        let base = (self.next_peer_id)();
        let mut id = base.clone();
        // Terminates: each round tries a new suffix and only finitely many ids are live.
        while self.peers.contains_key(&id) {
            self.collisions += 1;
            id = PeerId(format!("{base}#{}", self.collisions));
        }
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signaling::protocol::SdpType;

    const A: ConnId = ConnId(1);
    const B: ConnId = ConnId(2);
    const C: ConnId = ConnId(3);
    const D: ConnId = ConnId(4);

    fn join_json(room: &str) -> String {
        ClientMessage::Join {
            v: PROTOCOL_VERSION,
            room: room.into(),
        }
        .to_json()
    }

    fn send(to: ConnId, message: ServerMessage) -> Outgoing {
        Outgoing::Send { to, message }
    }

    fn welcome(peer: &str, room: &str, peers: &[&str]) -> ServerMessage {
        ServerMessage::Welcome {
            v: PROTOCOL_VERSION,
            peer_id: peer.into(),
            room: room.into(),
            peers: peers.iter().map(|&p| PeerId::from(p)).collect(),
            turn: None,
        }
    }

    /// The single error code in `out`, which must be one error reply to `conn`.
    fn error_code(out: &[Outgoing], conn: ConnId) -> ErrorCode {
        match out {
            [Outgoing::Send {
                to,
                message: ServerMessage::Error { code, .. },
            }] if *to == conn => *code,
            other => panic!("expected one error to {conn}, got {other:?}"),
        }
    }

    fn offer() -> Signal {
        Signal::Description {
            sdp_type: SdpType::Offer,
            sdp: "v=0\r\n".into(),
            arq: None,
        }
    }

    fn signal_json(to: &str, signal: Signal) -> String {
        ClientMessage::Signal {
            to: to.into(),
            signal,
        }
        .to_json()
    }

    #[test]
    fn welcome_lists_existing_peers_in_join_order() {
        let mut r = Rooms::default();
        assert_eq!(
            r.handle(A, &join_json("lobby")),
            vec![send(A, welcome("p1", "lobby", &[]))]
        );
        r.handle(B, &join_json("lobby"));
        let out = r.handle(C, &join_json("lobby"));
        assert_eq!(
            out.last(),
            Some(&send(C, welcome("p3", "lobby", &["p1", "p2"])))
        );
        assert_eq!(
            r.peers_in("lobby"),
            vec![PeerId::from("p1"), "p2".into(), "p3".into()]
        );
        assert_eq!(r.member(C), Some((&PeerId::from("p3"), "lobby")));
    }

    #[test]
    fn peer_joined_goes_to_every_other_member_only() {
        let mut r = Rooms::default();
        r.handle(A, &join_json("lobby"));
        r.handle(B, &join_json("lobby"));
        r.handle(D, &join_json("elsewhere"));
        let out = r.handle(C, &join_json("lobby"));
        let joined = |to| {
            send(
                to,
                ServerMessage::PeerJoined {
                    peer_id: "p4".into(),
                },
            )
        };
        assert_eq!(
            out,
            vec![
                joined(A),
                joined(B),
                send(C, welcome("p4", "lobby", &["p1", "p2"]))
            ]
        );
    }

    #[test]
    fn signals_are_relayed_with_from_set_by_the_bridge() {
        let mut r = Rooms::default();
        r.handle(A, &join_json("lobby"));
        r.handle(B, &join_json("lobby"));
        // A client-provided `from` is ignored: the bridge's record of the sender wins.
        let forged = r#"{"type":"signal","to":"p1","from":"p1","signal":{"kind":"description","sdpType":"offer","sdp":"v=0\r\n"}}"#;
        assert_eq!(
            r.handle(B, forged),
            vec![send(
                A,
                ServerMessage::Signal {
                    from: "p2".into(),
                    signal: offer()
                }
            )]
        );

        let answer = Signal::Description {
            sdp_type: SdpType::Answer,
            sdp: "v=0\r\n".into(),
            arq: None,
        };
        let out = r.handle(A, &signal_json("p2", answer.clone()));
        assert_eq!(
            out,
            vec![send(
                B,
                ServerMessage::Signal {
                    from: "p1".into(),
                    signal: answer
                }
            )]
        );

        let candidate = Signal::Candidate {
            candidate: "candidate:1 1 udp 1 198.18.0.1 5000 typ host".into(),
            sdp_mid: Some("0".into()),
            sdp_m_line_index: Some(0),
        };
        let out = r.handle(B, &signal_json("p1", candidate.clone()));
        assert_eq!(
            out,
            vec![send(
                A,
                ServerMessage::Signal {
                    from: "p2".into(),
                    signal: candidate
                }
            )]
        );
    }

    #[test]
    fn bad_json_is_answered_and_changes_nothing() {
        let mut r = Rooms::default();
        for text in [
            "{",
            "",
            "null",
            r#"{"type":"nope"}"#,
            r#"{"type":"join","room":"x"}"#,
            "\u{0}",
        ] {
            assert_eq!(
                error_code(&r.handle(A, text), A),
                ErrorCode::BadJson,
                "{text:?}"
            );
        }
        assert_eq!(r.member(A), None);
        assert_eq!(
            r.handle(A, &join_json("lobby")),
            vec![send(A, welcome("p1", "lobby", &[]))]
        );
    }

    #[test]
    fn too_large_text_is_answered() {
        let mut r = Rooms::default();
        r.handle(A, &join_json("lobby"));
        let big = signal_json(
            "p1",
            Signal::Description {
                sdp_type: SdpType::Offer,
                sdp: "x".repeat(MAX_MESSAGE_BYTES),
                arq: None,
            },
        );
        assert_eq!(error_code(&r.handle(A, &big), A), ErrorCode::TooLarge);
        assert_eq!(
            error_code(&r.handle(B, &"x".repeat(MAX_MESSAGE_BYTES + 1)), B),
            ErrorCode::TooLarge
        );
    }

    #[test]
    fn relayed_form_past_the_limit_is_too_large_for_the_sender() {
        // Long peer ids make `from` longer than `to`: the input fits, the relayed form does not.
        let mut ids = vec!["a".to_owned(), "b".repeat(200)]
            .into_iter()
            .map(PeerId);
        let mut r = Rooms::with_peer_ids(8, move || ids.next().unwrap_or_else(|| "z".into()));
        r.handle(A, &join_json("lobby"));
        r.handle(B, &join_json("lobby"));
        let empty = signal_json(
            "a",
            Signal::Description {
                sdp_type: SdpType::Offer,
                sdp: String::new(),
                arq: None,
            },
        );
        let fill = MAX_MESSAGE_BYTES - empty.len();
        let text = signal_json(
            "a",
            Signal::Description {
                sdp_type: SdpType::Offer,
                sdp: "x".repeat(fill),
                arq: None,
            },
        );
        assert_eq!(text.len(), MAX_MESSAGE_BYTES);
        assert_eq!(error_code(&r.handle(B, &text), B), ErrorCode::TooLarge);
        // The same size from the short-named peer to the long-named one is relayed.
        let back = signal_json(
            &"b".repeat(200),
            Signal::Description {
                sdp_type: SdpType::Offer,
                sdp: "x".repeat(fill - 199),
                arq: None,
            },
        );
        assert!(matches!(
            r.handle(A, &back).as_slice(),
            [Outgoing::Send {
                to: B,
                message: ServerMessage::Signal { .. }
            }]
        ));
    }

    #[test]
    fn other_versions_are_rejected() {
        let mut r = Rooms::default();
        for v in [0, PROTOCOL_VERSION + 1, u32::MAX] {
            let text = ClientMessage::Join {
                v,
                room: "lobby".into(),
            }
            .to_json();
            assert_eq!(error_code(&r.handle(A, &text), A), ErrorCode::BadVersion);
        }
        assert_eq!(r.room_count(), 0);
    }

    #[test]
    fn invalid_rooms_are_rejected() {
        let mut r = Rooms::default();
        for room in ["", &"x".repeat(65), "a\nb", "tab\there", "\u{7f}"] {
            assert_eq!(
                error_code(&r.handle(A, &join_json(room)), A),
                ErrorCode::BadRoom,
                "{room:?}"
            );
        }
        assert_eq!(r.room_count(), 0);
        // The longest valid name, in multi-byte UTF-8, is accepted.
        let longest = "é".repeat(32);
        assert!(matches!(
            r.handle(A, &join_json(&longest)).as_slice(),
            [Outgoing::Send {
                message: ServerMessage::Welcome { .. },
                ..
            }]
        ));
    }

    #[test]
    fn signal_and_leave_before_join_are_not_joined() {
        let mut r = Rooms::default();
        r.handle(A, &join_json("lobby"));
        assert_eq!(
            error_code(&r.handle(B, &signal_json("p1", offer())), B),
            ErrorCode::NotJoined
        );
        assert_eq!(
            error_code(&r.handle(B, r#"{"type":"leave"}"#), B),
            ErrorCode::NotJoined
        );
        assert_eq!(r.peers_in("lobby"), vec![PeerId::from("p1")]);
    }

    #[test]
    fn second_join_is_already_joined_whatever_its_content() {
        let mut r = Rooms::default();
        r.handle(A, &join_json("lobby"));
        assert_eq!(
            error_code(&r.handle(A, &join_json("lobby")), A),
            ErrorCode::AlreadyJoined
        );
        assert_eq!(
            error_code(&r.handle(A, &join_json("other")), A),
            ErrorCode::AlreadyJoined
        );
        let v9 = ClientMessage::Join {
            v: 9,
            room: "other".into(),
        }
        .to_json();
        assert_eq!(error_code(&r.handle(A, &v9), A), ErrorCode::AlreadyJoined);
        assert_eq!(r.member(A), Some((&PeerId::from("p1"), "lobby")));
        assert_eq!(r.room_count(), 1);
    }

    #[test]
    fn signal_outside_the_room_is_unknown_peer() {
        let mut r = Rooms::default();
        r.handle(A, &join_json("one"));
        r.handle(B, &join_json("two"));
        // p2 exists, but in another room: rooms are isolated.
        assert_eq!(
            error_code(&r.handle(A, &signal_json("p2", offer())), A),
            ErrorCode::UnknownPeer
        );
        assert_eq!(
            error_code(&r.handle(A, &signal_json("p99", offer())), A),
            ErrorCode::UnknownPeer
        );
        // Signalling oneself is a client bug, not a relay.
        assert_eq!(
            error_code(&r.handle(A, &signal_json("p1", offer())), A),
            ErrorCode::UnknownPeer
        );
        // A peer that left is unknown too.
        r.handle(C, &join_json("one"));
        r.disconnect(C);
        assert_eq!(
            error_code(&r.handle(A, &signal_json("p3", offer())), A),
            ErrorCode::UnknownPeer
        );
    }

    #[test]
    fn binary_frames_are_rejected() {
        let mut r = Rooms::default();
        assert_eq!(error_code(&r.handle_binary(A), A), ErrorCode::BinaryFrame);
        r.handle(A, &join_json("lobby"));
        assert_eq!(error_code(&r.handle_binary(A), A), ErrorCode::BinaryFrame);
        assert_eq!(r.member(A), Some((&PeerId::from("p1"), "lobby")));
    }

    #[test]
    fn full_room_rejects_until_someone_leaves() {
        let mut r = Rooms::new(2);
        r.handle(A, &join_json("lobby"));
        r.handle(B, &join_json("lobby"));
        assert_eq!(
            error_code(&r.handle(C, &join_json("lobby")), C),
            ErrorCode::RoomFull
        );
        // Another room is unaffected by this one's limit.
        assert!(matches!(
            r.handle(D, &join_json("other")).as_slice(),
            [Outgoing::Send {
                to: D,
                message: ServerMessage::Welcome { .. }
            }]
        ));
        r.disconnect(A);
        let out = r.handle(C, &join_json("lobby"));
        assert_eq!(out.last(), Some(&send(C, welcome("p4", "lobby", &["p2"]))));
    }

    #[test]
    fn room_is_full_when_the_welcome_would_exceed_the_message_limit() {
        let mut n = 0;
        let mut r = Rooms::with_peer_ids(1000, move || {
            n += 1;
            PeerId(format!("{n}-{}", "x".repeat(10 * 1024)))
        });
        // Each welcome lists the peers present plus the newcomer: 6 ids of 10 KiB fit, 7 do not.
        for conn in 0..6 {
            assert!(matches!(
                r.join(ConnId(conn), "big").last(),
                Some(Outgoing::Send {
                    message: ServerMessage::Welcome { .. },
                    ..
                })
            ));
        }
        assert_eq!(
            error_code(&r.join(ConnId(99), "big"), ConnId(99)),
            ErrorCode::RoomFull
        );
        assert_eq!(r.peers_in("big").len(), 6);
    }

    #[test]
    fn zero_limit_counts_as_one() {
        let mut r = Rooms::new(0);
        assert_eq!(r.max_peers_per_room(), 1);
        r.handle(A, &join_json("solo"));
        assert_eq!(
            error_code(&r.handle(B, &join_json("solo")), B),
            ErrorCode::RoomFull
        );
    }

    #[test]
    fn disconnect_tells_the_rest_and_removes_empty_rooms() {
        let mut r = Rooms::default();
        r.handle(A, &join_json("lobby"));
        r.handle(B, &join_json("lobby"));
        r.handle(C, &join_json("lobby"));
        let left = |to| {
            send(
                to,
                ServerMessage::PeerLeft {
                    peer_id: "p2".into(),
                },
            )
        };
        assert_eq!(r.disconnect(B), vec![left(A), left(C)]);
        assert_eq!(r.disconnect(B), vec![], "second disconnect is a no-op");
        assert_eq!(r.disconnect(D), vec![], "never joined");
        r.disconnect(A);
        assert_eq!(r.room_count(), 1);
        assert_eq!(r.disconnect(C), vec![]);
        assert_eq!(r.room_count(), 0);
        assert_eq!(r.peers_in("lobby"), Vec::<PeerId>::new());
    }

    #[test]
    fn leave_tells_the_rest_then_closes_and_answers_later_input_with_the_close() {
        let mut r = Rooms::default();
        r.handle(A, &join_json("lobby"));
        r.handle(B, &join_json("lobby"));
        let out = r.handle(B, r#"{"type":"leave"}"#);
        assert_eq!(
            out,
            vec![
                send(
                    A,
                    ServerMessage::PeerLeft {
                        peer_id: "p2".into()
                    }
                ),
                Outgoing::Close { conn: B }
            ]
        );
        let close = vec![Outgoing::Close { conn: B }];
        assert_eq!(r.handle(B, &join_json("lobby")), close);
        assert_eq!(r.handle(B, &signal_json("p1", offer())), close);
        assert_eq!(r.handle(B, r#"{"type":"leave"}"#), close);
        assert_eq!(r.handle(B, "{"), close);
        assert_eq!(r.handle_binary(B), close);
        assert_eq!(r.join(B, "lobby"), close);
        assert_eq!(r.peers_in("lobby"), vec![PeerId::from("p1")]);
        // Once the I/O layer reports the close, the handle may be reused.
        assert_eq!(r.disconnect(B), vec![]);
        assert_eq!(r.handle(B, &join_json("lobby")).len(), 2);
    }

    #[test]
    fn repeated_generator_ids_are_made_unique() {
        let mut r = Rooms::with_peer_ids(8, || PeerId::from("same"));
        r.handle(A, &join_json("lobby"));
        r.handle(B, &join_json("lobby"));
        r.handle(C, &join_json("lobby"));
        let ids = r.peers_in("lobby");
        assert_eq!(
            ids,
            vec![PeerId::from("same"), "same#1".into(), "same#2".into()]
        );
        let out = r.handle(A, &signal_json("same#2", offer()));
        assert!(
            matches!(out.as_slice(), [Outgoing::Send { to: C, .. }]),
            "{out:?}"
        );
    }

    #[test]
    fn direct_join_validates_like_handle() {
        let mut r = Rooms::default();
        assert_eq!(error_code(&r.join(A, ""), A), ErrorCode::BadRoom);
        assert_eq!(
            r.join(A, "lobby"),
            vec![send(A, welcome("p1", "lobby", &[]))]
        );
        assert_eq!(error_code(&r.join(A, "lobby"), A), ErrorCode::AlreadyJoined);
    }
}
