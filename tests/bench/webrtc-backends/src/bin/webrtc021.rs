//! The webrtc-rs 0.21.1 pair. `BACKPRESSURE=builtin` uses 0.21's awaitable send instead of the
//! `bufferedamountlow` loop shared with 0.17.
fn main() -> anyhow::Result<()> {
    let stack = match webrtc_backends_bench::v021::Backpressure::from_env()? {
        webrtc_backends_bench::v021::Backpressure::LowWater => "webrtc 0.21.1",
        webrtc_backends_bench::v021::Backpressure::Builtin => "webrtc 0.21.1 (built-in send limit)",
    };
    webrtc_backends_bench::main::<webrtc_backends_bench::v021::Link021>(stack)
}
