//! Signaling: the JSON protocol shared by every side, the rule that decides who offers, and
//! (native, feature `bridge`) the WebSocket bridge.

pub mod negotiation;
pub mod protocol;
pub mod rate_limit;
pub mod rooms;

#[cfg(all(feature = "bridge", not(target_arch = "wasm32")))]
pub mod bridge;

#[cfg(all(feature = "bridge", not(target_arch = "wasm32")))]
pub mod turn;
