//! Where a link's frames go: straight onto the data channel (v1, SCTP's own reliability), or
//! through the ARQ pipe onto the ARQ channel (docs/frame.md, "ARQ layer"). The writer sees the
//! same four operations either way.

use super::arq_pipe::ArqPipe;
use crate::backend::RtcChannel;
use bytes::Bytes;

/// The sending side of a link.
#[derive(Clone)]
pub(crate) enum Outlet {
    /// v1: every frame is one message on the (reliable) data channel.
    Direct(RtcChannel),
    /// Frames go into the ARQ layer's stream; the data channel stays open as the link's
    /// lifeline (its close ends the link) but carries nothing.
    Arq(ArqPipe),
}

impl Outlet {
    /// Hands one frame on. Errors carry the stack's message (v1) or say the pipe ended.
    pub(crate) async fn send(&self, frame: Bytes) -> Result<(), String> {
        match self {
            Outlet::Direct(channel) => channel.send(frame).await,
            Outlet::Arq(pipe) => pipe.send(frame),
        }
    }

    /// Bytes accepted and not yet sent (v1: `bufferedAmount`), or not yet acknowledged by the
    /// peer (ARQ: queued plus in flight).
    pub(crate) async fn buffered_amount(&self) -> usize {
        match self {
            Outlet::Direct(channel) => channel.buffered_amount().await,
            Outlet::Arq(pipe) => pipe.buffered_amount(),
        }
    }

    /// Waits until [`buffered_amount`](Self::buffered_amount) is at most `bytes`, or the
    /// outlet can no longer send.
    pub(crate) async fn wait_buffered_amount_low(&self, bytes: usize) {
        match self {
            Outlet::Direct(channel) => channel.wait_buffered_amount_low(bytes).await,
            Outlet::Arq(pipe) => pipe.wait_buffered_amount_low(bytes).await,
        }
    }

    /// Closes the data channel (ARQ: after the pipe delivered what is unacknowledged, within
    /// its linger time).
    pub(crate) async fn close(&self) {
        match self {
            Outlet::Direct(channel) => channel.close().await,
            Outlet::Arq(pipe) => pipe.close().await,
        }
    }

    /// True when frames travel over the ARQ layer.
    pub(crate) fn is_arq(&self) -> bool {
        matches!(self, Outlet::Arq(_))
    }
}
