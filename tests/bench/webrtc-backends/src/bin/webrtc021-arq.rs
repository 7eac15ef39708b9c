//! webrtc-rs 0.21.1 carrying the bench over an unordered, `maxRetransmits: 0` channel with
//! miaou's ARQ layer on top (src/arq_link.rs): negotiated (id 0) by default, announced in-band
//! with `ARQ_CHANNEL=inband`. `ICE_CHECK_MS=N` shortens the ICE check interval (default 200 ms).
fn main() -> anyhow::Result<()> {
    use webrtc_backends_bench::{arq_link::ArqLink, v021};
    let stack = if v021::inband() {
        "webrtc 0.21.1 + ARQ (in-band channel)"
    } else {
        "webrtc 0.21.1 + ARQ"
    };
    webrtc_backends_bench::main::<ArqLink<v021::Datagrams021>>(stack)
}
