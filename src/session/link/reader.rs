//! The receiving half of a link: frames in, messages and control commands out.

use super::{Sinks, WriteCmd};
use crate::codec::{CodecError, Control, Delivery, FrameDecoder, Payload};
use crate::error::Error;
use crate::event::{Event, Message};
use crate::signaling::protocol::PeerId;
use bytes::Bytes;

pub(super) struct Reader {
    peer: PeerId,
    decoder: FrameDecoder,
    writer: async_channel::Sender<WriteCmd>,
    sinks: Sinks,
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
        }
    }

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
                    self.report(error);
                    for Payload { data, text } in messages {
                        if !self.deliver(data, text).await {
                            return;
                        }
                    }
                }
                Ok(Some(Delivery::Control(control))) => self.on_control(control).await,
                Err(e) => self.report(e),
            }
        }
    }

    /// Tells the application about a frame (or BATCH entries) we could not accept.
    fn report(&self, error: CodecError) {
        tracing::warn!(peer = %self.peer, "bad frame: {error}");
        let _ = self
            .sinks
            .events
            .force_send(Event::Error(Error::Codec(error)));
    }

    /// Hands one message to the application; false once the transport is gone.
    async fn deliver(&self, data: Bytes, text: bool) -> bool {
        let message = Message {
            from: self.peer.clone(),
            data,
            text,
        };
        // Awaiting here is the receive-side backpressure: the backend stops reading from the
        // data channel while the application is behind.
        self.sinks.messages.send(message).await.is_ok()
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
