//! The receiving half of a link: frames in, messages and control commands out.

use super::{Sinks, WriteCmd};
use crate::codec::{Control, Delivery, FrameDecoder, Payload};
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
            match self.decoder.decode_bytes(&frame) {
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
                Ok(Some(Delivery::Control(control))) => self.on_control(control).await,
                Err(e) => {
                    tracing::warn!(peer = %self.peer, "bad frame: {e}");
                    let _ = self.sinks.events.force_send(Event::Error(Error::Codec(e)));
                    // Tell the sender which message we dropped so its `send` fails too.
                    if let Some(msg_id) = self.decoder.take_dropped() {
                        let _ = self
                            .writer
                            .send(WriteCmd::Control(Control::Reset(msg_id)))
                            .await;
                    }
                }
            }
        }
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
            Control::Pong(_) => return,
        };
        let _ = self.writer.send(command).await;
    }
}
