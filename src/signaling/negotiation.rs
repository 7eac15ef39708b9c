//! Who sends the offer. Rule: **the newcomer offers**. A client offers to every peer listed in its
//! [`Welcome`](super::protocol::ServerMessage::Welcome) and waits for an offer from every peer
//! announced later by [`PeerJoined`](super::protocol::ServerMessage::PeerJoined).
//!
//! The bridge handles joins one at a time, so for any two peers exactly one of them saw the other
//! in its welcome list: exactly one side offers and glare (both offering at once) cannot happen,
//! even when both join in the same millisecond.

use super::protocol::{PeerId, SdpType};

/// How a peer learned about another peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Introduction {
    /// The other peer was listed in our `welcome`: it was there first.
    InWelcome,
    /// The other peer was announced by `peer-joined`: it came after us.
    Joined,
}

/// Our role towards one remote peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// We create the data channel and send the offer.
    Offerer,
    /// We wait for the offer and answer it.
    Answerer,
}

/// The role we take towards a peer introduced as `how` (newcomer offers).
pub fn role_for(how: Introduction) -> Role {
    match how {
        Introduction::InWelcome => Role::Offerer,
        Introduction::Joined => Role::Answerer,
    }
}

/// Why an incoming description is refused. A refused description is ignored: the connection
/// we have (or are negotiating) with that peer goes on as if it never came.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    /// The peer sent an offer although we are the offerer, or an answer although we are the
    /// answerer.
    #[error("unexpected SDP {got:?} from {peer} (our role: {role:?})")]
    UnexpectedDescription {
        /// The sender.
        peer: PeerId,
        /// What it sent.
        got: SdpType,
        /// Our role towards it.
        role: Role,
    },
    /// The peer sent an answer while no offer of ours is waiting for one (a duplicate or late
    /// answer; RFC 8829 §5.7: an answer applies to the pending offer only).
    #[error("answer from {peer} while no offer of ours awaits one")]
    UnsolicitedAnswer {
        /// The sender.
        peer: PeerId,
    },
}

/// Checks that a description from `peer` fits our `role` — answerers receive offers, offerers
/// receive answers — and, for an answer, that an offer of ours is `awaiting_answer`.
pub fn check_description(
    peer: &PeerId,
    role: Role,
    got: SdpType,
    awaiting_answer: bool,
) -> Result<(), NegotiationError> {
    match (role, got) {
        (Role::Answerer, SdpType::Offer) => Ok(()),
        (Role::Offerer, SdpType::Answer) if awaiting_answer => Ok(()),
        (Role::Offerer, SdpType::Answer) => {
            Err(NegotiationError::UnsolicitedAnswer { peer: peer.clone() })
        }
        _ => Err(NegotiationError::UnexpectedDescription {
            peer: peer.clone(),
            got,
            role,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_side_offers() {
        // A joined first; B's welcome lists A; A hears peer-joined(B).
        let b_towards_a = role_for(Introduction::InWelcome);
        let a_towards_b = role_for(Introduction::Joined);
        assert_eq!(b_towards_a, Role::Offerer);
        assert_eq!(a_towards_b, Role::Answerer);
    }

    #[test]
    fn wrong_direction_descriptions_are_rejected() {
        let p = PeerId::from("p");
        for awaiting in [false, true] {
            assert!(check_description(&p, Role::Answerer, SdpType::Offer, awaiting).is_ok());
            assert!(matches!(
                check_description(&p, Role::Offerer, SdpType::Offer, awaiting),
                Err(NegotiationError::UnexpectedDescription { .. })
            ));
            assert!(matches!(
                check_description(&p, Role::Answerer, SdpType::Answer, awaiting),
                Err(NegotiationError::UnexpectedDescription { .. })
            ));
        }
    }

    #[test]
    fn an_answer_needs_a_pending_offer() {
        let p = PeerId::from("p");
        assert!(check_description(&p, Role::Offerer, SdpType::Answer, true).is_ok());
        assert_eq!(
            check_description(&p, Role::Offerer, SdpType::Answer, false),
            Err(NegotiationError::UnsolicitedAnswer { peer: p })
        );
    }
}
