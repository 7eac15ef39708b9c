//! The webrtc-rs 0.17.2 pair (the library's native backend version).
fn main() -> anyhow::Result<()> {
    webrtc_backends_bench::main::<webrtc_backends_bench::v017::Link017>("webrtc 0.17.2")
}
