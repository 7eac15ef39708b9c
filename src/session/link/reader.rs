//! The receiving half of a link: frames in, messages and control commands out.

use super::{Sinks, WriteCmd};
use crate::backend;
use crate::codec::{CodecError, Control, Delivery, FrameDecoder, Payload};
use crate::error::Error;
use crate::event::{Event, Message};
use crate::signaling::protocol::PeerId;
use bytes::Bytes;

/// At most one `Event::Error` per this many ms for a peer's bad frames: a peer sending
/// garbage must not flood the event queue and push out events that matter (the queue drops
/// its oldest entries when full). The others are counted in the log.
const BAD_FRAME_REPORT_INTERVAL_MS: u64 = 1_000;

pub(super) struct Reader {
    peer: PeerId,
    decoder: FrameDecoder,
    writer: async_channel::Sender<WriteCmd>,
    sinks: Sinks,
    /// When the last bad frame was reported (`backend::now_ms`), and how many since were not.
    last_report_ms: Option<u64>,
    unreported: u64,
}

impl Reader {
    pub(super) fn new(
        peer: PeerId,
        decoder: FrameDecoder,
        writer: async_channel::Sender<WriteCmd>,
        sinks: Sinks,
    ) -> Self {
        Reader {
            peer,
            decoder,
            writer,
            sinks,
            last_report_ms: None,
            unreported: 0,
        }
    }

    /// Decodes every frame until the channel closes, then tells the writer, in order after
    /// the last frame's commands.
    pub(super) async fn run(mut self, frames: async_channel::Receiver<Bytes>) {
        while let Ok(frame) = frames.recv().await {
            let decoded = self.decoder.decode_bytes(&frame);
            // Tell the sender what we dropped (RESET per fragmented message, REFUSED for whole
            // ones), so its `send` fails or its application gets MessageRefused.
            for reply in self.decoder.take_replies() {
                let _ = self.writer.send(WriteCmd::Control(reply)).await;
            }
            match decoded {
                Ok(None) => {}
                Ok(Some(Delivery::Message { data, text })) => {
                    if !self.deliver(data, text).await {
                        return;
                    }
                }
                Ok(Some(Delivery::Batch(messages))) => {
                    for Payload { data, text } in messages {
                        if !self.deliver(data, text).await {
                            return;
                        }
                    }
                }
                Ok(Some(Delivery::MixedBatch {
                    messages, error, ..
                })) => {
                    self.report_bad_frame(error);
                    for Payload { data, text } in messages {
                        if !self.deliver(data, text).await {
                            return;
                        }
                    }
                }
                Ok(Some(Delivery::Control(control))) => self.on_control(control).await,
                Err(e) => self.report_bad_frame(e),
            }
        }
        let _ = self.writer.send(WriteCmd::ChannelClosed).await;
    }

    /// Logs a frame (or BATCH entries) we could not accept and reports it as `Event::Error`,
    /// at most once per [`BAD_FRAME_REPORT_INTERVAL_MS`].
    fn report_bad_frame(&mut self, error: CodecError) {
        let now = backend::now_ms();
        let due = self
            .last_report_ms
            .is_none_or(|last| now.saturating_sub(last) >= BAD_FRAME_REPORT_INTERVAL_MS);
        if !due {
            self.unreported += 1;
            return;
        }
        let unreported = std::mem::take(&mut self.unreported);
        tracing::warn!(peer = %self.peer, unreported, "bad frame: {error}");
        self.last_report_ms = Some(now);
        let _ = self
            .sinks
            .events
            .force_send(Event::Error(Error::Codec(error)));
    }

    /// Hands one message to the application; false once the transport is gone.
    async fn deliver(&self, data: Bytes, text: bool) -> bool {
        // Waiting here (for queue room, then for byte budget) is the receive-side
        // backpressure: the backend stops reading from the data channel while the
        // application is behind.
        let len = data.len();
        self.sinks.budget.reserve(len).await;
        let message = Message {
            from: self.peer.clone(),
            data,
            text,
        };
        let queued = self.sinks.messages.send(message).await.is_ok();
        if !queued {
            self.sinks.budget.release(len);
        }
        queued
    }

    async fn on_control(&mut self, control: Control) {
        let command = match control {
            Control::Fin => WriteCmd::RemoteFin,
            Control::FinAck => WriteCmd::FinAck,
            Control::Ping(nonce) => WriteCmd::Control(Control::Pong(nonce)),
            Control::Reset(msg_id) => WriteCmd::RemoteReset(msg_id),
            Control::Refused(0) => return, // means nothing (docs/frame.md)
            Control::Refused(messages) => {
                // Whole messages whose `send` already returned: only an event can say so.
                tracing::warn!(peer = %self.peer, messages, "peer refused messages we sent");
                let error = Error::MessageRefused {
                    peer: self.peer.clone(),
                };
                let _ = self.sinks.events.force_send(Event::Error(error));
                return;
            }
            Control::Pong(_) => return,
        };
        let _ = self.writer.send(command).await;
    }
}
