//! Native backend: webrtc-rs (`webrtc` 0.17) on tokio, tokio-tungstenite for signaling.
//! Thin: it only adapts those crates to the functions and types the shared session expects.

#[cfg(feature = "discovery")]
pub mod discovery;
mod rtc;
mod signaling_socket;

pub(crate) use rtc::{RtcChannel, RtcPeer};
pub(crate) use signaling_socket::connect_signaling;

use std::future::Future;

/// ICE server URLs this backend can use: webrtc-rs 0.17 gathers relay candidates only from
/// `turn:` over UDP (`webrtc-ice` `gather_candidates_relay` skips TCP and TLS, with a log line)
/// and sends STUN as plain UDP even to a `stuns:` server, so the others are refused when the
/// configuration is built instead of failing silently at connection time.
/// Whether a transport announces the ARQ layer unless told otherwise (`TransportConfig::arq`).
pub(crate) const ARQ_BY_DEFAULT: bool = true;

pub(crate) const ICE_URL_SUPPORT: crate::config::IceUrlSupport =
    crate::config::IceUrlSupport::UdpOnly {
        why: "the native backend (webrtc-rs 0.17) reaches STUN and TURN servers over plain UDP \
              only",
    };
use std::time::Duration;

/// Runs `future` in the background on the current tokio runtime.
pub(crate) fn spawn(future: impl Future<Output = ()> + Send + 'static) {
    tokio::spawn(future);
}

/// Waits `ms` milliseconds.
pub(crate) async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// The process's monotonic clock origin (the first call to a clock function).
fn clock_start() -> std::time::Instant {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *START.get_or_init(std::time::Instant::now)
}

/// Milliseconds on a monotonic clock (since the first call in this process).
pub(crate) fn now_ms() -> u64 {
    clock_start().elapsed().as_millis() as u64
}

/// Microseconds on the same monotonic clock as [`now_ms`] (the ARQ layer's RTT and pacing).
pub(crate) fn now_us() -> u64 {
    clock_start().elapsed().as_micros() as u64
}

/// Waits `us` microseconds (tokio's timer rounds up to whole milliseconds).
pub(crate) async fn sleep_us(us: u64) {
    tokio::time::sleep(Duration::from_micros(us)).await;
}

#[cfg(test)]
mod tests {
    use crate::{Error, IceServer, TransportConfig};

    #[test]
    fn native_configurations_refuse_tls_and_tcp_ice_urls() {
        let build = |url: &str| {
            TransportConfig::builder("ws://h/ws", "r")
                .ice_server(IceServer::turn(url, "u", "c"))
                .build()
        };
        for url in [
            "turns:198.18.0.1:5349",
            "turn:198.18.0.1:3478?transport=tcp",
            "stuns:198.18.0.1:5349",
        ] {
            match build(url) {
                Err(Error::Config(text)) => {
                    assert!(text.contains(url), "{text}");
                    assert!(text.contains("webrtc-rs 0.17"), "{text}");
                }
                other => panic!("{url}: {other:?}"),
            }
        }
        assert!(build("turn:198.18.0.1:3478?transport=udp").is_ok());
        assert!(build("stun:198.18.0.1:3478").is_ok());
    }
}
