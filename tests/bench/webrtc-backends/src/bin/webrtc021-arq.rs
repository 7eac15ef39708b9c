//! webrtc-rs 0.21.1 carrying the bench over an unordered, `maxRetransmits: 0`, negotiated
//! channel with miaou's ARQ layer on top (src/arq_link.rs). `ICE_CHECK_MS=N` shortens the ICE
//! check interval (default 200 ms).
fn main() -> anyhow::Result<()> {
    use webrtc_backends_bench::{arq_link::ArqLink, v021::Datagrams021};
    webrtc_backends_bench::main::<ArqLink<Datagrams021>>("webrtc 0.21.1 + ARQ")
}
