//! Native backend: webrtc-rs (`webrtc` 0.17) on tokio, tokio-tungstenite for signaling.
//! Thin: it only adapts those crates to the functions and types the shared session expects.

#[cfg(feature = "discovery")]
pub mod discovery;
mod rtc;
mod signaling_socket;

pub(crate) use rtc::{RtcChannel, RtcPeer};
pub(crate) use signaling_socket::connect_signaling;

use std::future::Future;
use std::time::Duration;

/// Runs `future` in the background on the current tokio runtime.
pub(crate) fn spawn(future: impl Future<Output = ()> + Send + 'static) {
    tokio::spawn(future);
}

/// Waits `ms` milliseconds.
pub(crate) async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Milliseconds on a monotonic clock (since the first call in this process).
pub(crate) fn now_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}
