//! webrtc-rs 0.17.2 carrying the bench over an unordered, `maxRetransmits: 0` channel with
//! miaou's ARQ layer on top (src/arq_link.rs): negotiated (id 0) by default, announced in-band
//! with `ARQ_CHANNEL=inband` (on 0.17.2 only the in-band one really is unreliable, see
//! `v017::inband`).
fn main() -> anyhow::Result<()> {
    use webrtc_backends_bench::{arq_link::ArqLink, v017};
    let stack = if v017::inband() {
        "webrtc 0.17.2 + ARQ (in-band channel)"
    } else {
        "webrtc 0.17.2 + ARQ"
    };
    webrtc_backends_bench::main::<ArqLink<v017::Datagrams017>>(stack)
}
