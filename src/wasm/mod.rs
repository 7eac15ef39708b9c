//! Browser backend: the browser's own `RTCPeerConnection` and `WebSocket` through web-sys, and
//! the JavaScript API ([`js_api`]). Thin: it only adapts browser objects to the functions and
//! types the shared session expects.

pub mod js_api;
mod rtc;
mod signaling_socket;

pub(crate) use rtc::{RtcChannel, RtcPeer};
pub(crate) use signaling_socket::connect_signaling;

use std::future::Future;

/// Whether a transport announces the ARQ layer unless told otherwise (`TransportConfig::arq`,
/// JS option `arq`): not in browsers yet. A native peer's webrtc-sctp 0.17.2 receiving a
/// Chromium tab's unordered, `maxRetransmits: 0` traffic can let its cumulative TSN fall
/// 65 535 TSNs behind and then overflows a u16 in `get_gap_ack_blocks` (a panic in debug
/// builds, garbage SACKs in release), which stalls the association
/// (docs/upstream/webrtc-sctp-loss.md). Pages can opt in with `arq: true`.
pub(crate) const ARQ_BY_DEFAULT: bool = false;

/// ICE server URLs this backend can use: all of them, the browser handles TLS and TCP.
pub(crate) const ICE_URL_SUPPORT: crate::config::IceUrlSupport = crate::config::IceUrlSupport::All;

/// Runs `future` on the page's event loop.
pub(crate) fn spawn(future: impl Future<Output = ()> + 'static) {
    wasm_bindgen_futures::spawn_local(future);
}

/// Longest delay, in ms, that one `setTimeout` honours: 2^31 − 1 (≈ 24.8 days). Browsers hold
/// the delay as a signed 32-bit integer and run the callback at once for anything larger (HTML
/// timer initialisation steps), so a longer `u32` delay would be a zero delay.
const MAX_TIMEOUT_MS: u64 = i32::MAX as u64;

/// Waits `ms` milliseconds (setTimeout). Delays above [`MAX_TIMEOUT_MS`] are waited in several
/// timeouts, so e.g. a 30-day `connectTimeoutMs` never fires early.
pub(crate) async fn sleep_ms(ms: u64) {
    let mut left = ms;
    loop {
        let step = left.min(MAX_TIMEOUT_MS);
        // `step` ≤ 2^31 − 1, so it fits a u32.
        gloo_timers::future::TimeoutFuture::new(step as u32).await;
        left -= step;
        if left == 0 {
            break;
        }
    }
}

/// Milliseconds on the page's clock (`Date.now()`; only differences are used).
pub(crate) fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// Microseconds on the page's monotonic clock (`performance.now()`, which also exists in
/// workers; `Date.now()` where it does not), for the ARQ layer's RTT and pacing.
pub(crate) fn now_us() -> u64 {
    use wasm_bindgen::JsCast;
    let performance = js_sys::Reflect::get(&js_sys::global(), &"performance".into()).ok();
    let now = performance.and_then(|p| {
        let now = js_sys::Reflect::get(&p, &"now".into()).ok()?;
        now.dyn_ref::<js_sys::Function>()?.call0(&p).ok()?.as_f64()
    });
    (now.unwrap_or_else(js_sys::Date::now) * 1000.0) as u64
}

/// Waits `us` microseconds (setTimeout: rounded up to whole milliseconds).
pub(crate) async fn sleep_us(us: u64) {
    sleep_ms(us.div_ceil(1000)).await;
}

/// Text of a thrown JavaScript value, for error messages.
pub(crate) fn js_text(value: &wasm_bindgen::JsValue) -> String {
    use wasm_bindgen::JsCast;
    if let Some(error) = value.dyn_ref::<js_sys::Error>() {
        return String::from(error.message());
    }
    value.as_string().unwrap_or_else(|| format!("{value:?}"))
}
