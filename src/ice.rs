//! What ICE chose for a peer ([`CandidatePair`], from [`crate::Transport::selected_candidate_pair`])
//! and the shared rule that turns a TURN server that gave us nothing into a clear error.

use crate::config::{IceTransportPolicy, TransportConfig};
use crate::error::Error;
use crate::signaling::protocol::PeerId;

/// Type of an ICE candidate (RFC 8445 §5.1.1; W3C `RTCIceCandidateType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CandidateType {
    /// An address of a local interface.
    Host,
    /// Server-reflexive: our address as a STUN server saw it (outside a NAT).
    Srflx,
    /// Peer-reflexive: an address learned from a connectivity check of the peer, before (or
    /// instead of) its trickled candidate; e.g. a browser's host address hidden behind a
    /// `.local` name, or the peer's relay address seen before its candidate arrived.
    Prflx,
    /// Relayed: an address allocated on a TURN server (RFC 8656); traffic goes through it.
    Relay,
}

impl CandidateType {
    /// The W3C / SDP name: `host`, `srflx`, `prflx` or `relay`.
    pub fn as_str(self) -> &'static str {
        match self {
            CandidateType::Host => "host",
            CandidateType::Srflx => "srflx",
            CandidateType::Prflx => "prflx",
            CandidateType::Relay => "relay",
        }
    }

    /// Parses the W3C / SDP name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "host" => Some(CandidateType::Host),
            "srflx" => Some(CandidateType::Srflx),
            "prflx" => Some(CandidateType::Prflx),
            "relay" => Some(CandidateType::Relay),
            _ => None,
        }
    }
}

impl std::fmt::Display for CandidateType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One side of a selected candidate pair (W3C webrtc-stats `RTCIceCandidateStats`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CandidateInfo {
    /// Host, server-reflexive, peer-reflexive or relay.
    pub candidate_type: CandidateType,
    /// IP address or name (a browser may report a `<uuid>.local` name, or nothing, for a
    /// hidden host address: then this is empty).
    pub address: String,
    /// UDP or TCP port.
    pub port: u16,
    /// Transport protocol between the peers' candidates: `"udp"` or `"tcp"`.
    pub protocol: String,
}

impl std::fmt::Display for CandidateInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}:{}/{}",
            self.candidate_type, self.address, self.port, self.protocol
        )
    }
}

/// The candidate pair ICE selected for a peer: where our packets leave and where they go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CandidatePair {
    /// Our candidate.
    pub local: CandidateInfo,
    /// The peer's candidate, as we see it.
    pub remote: CandidateInfo,
}

impl CandidatePair {
    /// Whether our side sends through a TURN server (our candidate is a relay candidate).
    /// The remote side of a relayed pair may show as `prflx` when the peer's relay address
    /// was first seen in a check rather than in its trickled candidate.
    pub fn is_relayed(&self) -> bool {
        self.local.candidate_type == CandidateType::Relay
    }
}

impl std::fmt::Display for CandidatePair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "local {} <-> remote {}", self.local, self.remote)
    }
}

/// What a backend saw once ICE gathering for one connection completed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Gathered {
    /// Relay candidates gathered (allocations that succeeded).
    pub(crate) relay_candidates: usize,
    /// The browser's `icecandidateerror`s for TURN URLs, as `"<url>: <code> <text>"`
    /// (webrtc-rs reports none: it only logs a failed allocation).
    pub(crate) turn_errors: Vec<String>,
}

/// The error for a completed gathering that yielded no relay candidate although TURN servers
/// are configured; `None` when there was a relay candidate or no TURN server to ask. With
/// [`IceTransportPolicy::Relay`] such a connection can never work, so the caller fails it; with
/// `All` it may still connect directly and the caller only reports the error.
pub(crate) fn turn_failure(
    config: &TransportConfig,
    peer: &PeerId,
    gathered: &Gathered,
) -> Option<Error> {
    let servers: Vec<String> = config
        .ice_servers
        .iter()
        .flat_map(|s| s.turn_urls())
        .map(str::to_owned)
        .collect();
    if gathered.relay_candidates > 0 || servers.is_empty() {
        return None;
    }
    Some(Error::Turn {
        peer: peer.clone(),
        servers,
        details: gathered.turn_errors.clone(),
        fatal: config.ice_transport_policy == IceTransportPolicy::Relay,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IceServer;

    fn config(policy: IceTransportPolicy, servers: Vec<IceServer>) -> TransportConfig {
        let mut builder = TransportConfig::builder("ws://h/ws", "r").ice_transport_policy(policy);
        for s in servers {
            builder = builder.ice_server(s);
        }
        builder.build().unwrap()
    }

    #[test]
    fn no_relay_candidate_from_a_configured_turn_server_is_an_error_naming_it() {
        let turn = IceServer::turn("turn:198.18.0.1:3478", "u", "wrong");
        let peer = PeerId::from("p");
        let gathered = Gathered {
            relay_candidates: 0,
            turn_errors: vec!["turn:198.18.0.1:3478?transport=udp: 401 Unauthorized".into()],
        };
        let error = turn_failure(
            &config(IceTransportPolicy::Relay, vec![turn.clone()]),
            &peer,
            &gathered,
        )
        .expect("an error");
        let text = error.to_string();
        assert!(text.contains("turn:198.18.0.1:3478"), "{text}");
        assert!(
            text.contains("allocation failed (check username/credential"),
            "{text}"
        );
        assert!(text.contains("401 Unauthorized"), "{text}");
        assert!(matches!(error, Error::Turn { fatal: true, .. }));
        let lenient = turn_failure(
            &config(IceTransportPolicy::All, vec![turn]),
            &peer,
            &gathered,
        );
        assert!(matches!(lenient, Some(Error::Turn { fatal: false, .. })));
    }

    #[test]
    fn a_relay_candidate_or_no_turn_server_is_no_error() {
        let peer = PeerId::from("p");
        let turn = IceServer::turn("turn:198.18.0.1:3478", "u", "c");
        let one = Gathered {
            relay_candidates: 1,
            ..Gathered::default()
        };
        let relay = config(IceTransportPolicy::Relay, vec![turn]);
        assert_eq!(turn_failure(&relay, &peer, &one), None);
        let stun_only = config(
            IceTransportPolicy::All,
            vec![IceServer::new("stun:198.18.0.1:3478")],
        );
        assert_eq!(turn_failure(&stun_only, &peer, &Gathered::default()), None);
    }

    #[test]
    fn candidate_type_names_round_trip() {
        use CandidateType::*;
        for t in [Host, Srflx, Prflx, Relay] {
            assert_eq!(CandidateType::from_name(t.as_str()), Some(t));
        }
        assert_eq!(CandidateType::from_name("relayed"), None);
    }
}
