//! webrtc-rs 0.17.2 carrying the bench over an unordered, `maxRetransmits: 0`, negotiated
//! channel with miaou's ARQ layer on top (src/arq_link.rs).
fn main() -> anyhow::Result<()> {
    use webrtc_backends_bench::{arq_link::ArqLink, v017::Datagrams017};
    webrtc_backends_bench::main::<ArqLink<Datagrams017>>("webrtc 0.17.2 + ARQ")
}
