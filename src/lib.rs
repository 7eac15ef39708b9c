//! # miaou-transport
//!
//! WebRTC data channels with one API for native programs (webrtc-rs on tokio) and browser tabs
//! (the browser's `RTCPeerConnection` through wasm-bindgen), one frame codec shared by both, and
//! a small WebSocket signaling bridge with rooms.
//!
//! ```no_run
//! # async fn demo() -> Result<(), miaou_transport::Error> {
//! use miaou_transport::{Transport, TransportConfig};
//! let transport = Transport::connect(TransportConfig::builder("ws://127.0.0.1:8080/ws", "lobby").build()?).await?;
//! transport.broadcast_text("hello, room").await?;
//! # Ok(()) }
//! ```
//!
//! Layout: [`codec`] (frames, fragmentation; pure), [`signaling`] (JSON protocol, negotiation
//! rule, bridge), [`Transport`] over a private backend chosen here and nowhere else; on native
//! with feature `discovery`, `discovery` (mDNS / DNS-SD on the LAN, docs/discovery.md).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod arq;
mod channel_info;
pub mod codec;
mod config;
mod error;
mod event;
mod ice;
pub mod sdp;
mod session;
pub mod signaling;
mod transport;

pub use bytes::Bytes;
pub use channel_info::ChannelInfo;
pub use config::{
    ChannelKind, IceServer, IceTransportPolicy, TransportConfig, TransportConfigBuilder,
    DEFAULT_CLOSE_TIMEOUT_MS, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_ICE_DISCONNECTED_TIMEOUT_MS,
    DEFAULT_ICE_FAILED_TIMEOUT_MS, DEFAULT_MAX_FRAME_SIZE, DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_OPEN_TIMEOUT_MS, DEFAULT_RECEIVE_QUEUE_BYTES, DEFAULT_RECEIVE_QUEUE_FRAMES,
    DEFAULT_RECEIVE_QUEUE_MESSAGES, DEFAULT_RECONNECT_ATTEMPTS, DEFAULT_RECONNECT_BACKOFF_MS,
    DEFAULT_SEND_HIGH_WATER_BYTES, DEFAULT_SEND_LOW_WATER_BYTES, DEFAULT_SEND_QUEUE_MESSAGES,
    OPEN_TIMEOUT_CAP_MS,
};
pub use error::{Error, Result};
pub use event::{Event, Message};
pub use ice::{CandidateInfo, CandidatePair, CandidateType};
pub use signaling::protocol::PeerId;
pub use transport::Transport;

/// README.md's Rust examples, compiled by `cargo test --doc` so they stay true; only built for
/// doctests, so it is not part of the public API or docs.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

// The one seam: each backend module offers the same functions, types and rules
// (`spawn`, `sleep_ms`, `sleep_us`, `now_ms`, `now_us`, `connect_signaling`, `RtcPeer`, `RtcChannel`, `ARQ_BY_DEFAULT`,
// `ICE_URL_SUPPORT`).
cfg_if::cfg_if! {
    if #[cfg(target_arch = "wasm32")] {
        mod wasm;
        use wasm as backend;
    } else {
        mod native;
        use native as backend;
        #[cfg(feature = "discovery")]
        pub use native::discovery;
    }
}
