//! One open data channel to one peer: a writer task that encodes messages into frames with
//! backpressure, and a reader task that decodes frames into messages. `close` sends FIN after
//! everything queued and waits for FIN_ACK, so nothing accepted by `send` is lost.

use crate::backend::{self, RtcChannel};
use crate::codec::{CodecLimits, Control, Delivery, FrameDecoder, FrameEncoder};
use crate::error::{Error, Result};
use crate::event::{Event, Message};
use crate::signaling::protocol::PeerId;
use bytes::Bytes;
use futures::channel::oneshot;
use futures::future::Either;

/// `send` waits while more than this many bytes sit in the channel's send buffer
/// (`bufferedAmount`), bytes.
pub(crate) const HIGH_WATER_BYTES: usize = 1024 * 1024;
/// Sending resumes when `bufferedAmount` falls to this, bytes (`bufferedamountlow` threshold).
pub(crate) const LOW_WATER_BYTES: usize = 256 * 1024;
/// Messages waiting for the writer task per peer; `send` waits when full.
const WRITE_QUEUE_MESSAGES: usize = 64;

/// A request to a peer's writer task. The reader task also speaks through this queue, so the
/// writer sees the peer's FIN and FIN_ACK in the order they arrived.
pub(crate) enum WriteCmd {
    /// An application message.
    Data { data: Bytes, text: bool, done: oneshot::Sender<Result<()>> },
    /// A control frame to send (PONG).
    Control(Control),
    /// Our application closes: FIN after everything queued, then wait (see [`Writer::run`]).
    Close { done: oneshot::Sender<Result<()>>, timeout_ms: u64 },
    /// The reader saw the peer's FIN: the peer sends nothing more and has our data up to it.
    RemoteFin,
    /// The reader saw the peer's FIN_ACK: the peer has read everything up to our FIN.
    FinAck,
}

/// Handle on a running link, kept in the transport's peer table.
#[derive(Clone)]
pub(crate) struct LinkHandle {
    writer: async_channel::Sender<WriteCmd>,
}

impl LinkHandle {
    /// Queues `data` and waits until all its frames are handed to the data channel.
    pub(crate) async fn send(&self, peer: &PeerId, data: Bytes, text: bool) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.writer
            .send(WriteCmd::Data { data, text, done })
            .await
            .map_err(|_| Error::PeerNotConnected(peer.clone()))?;
        wait.await.map_err(|_| Error::PeerNotConnected(peer.clone()))?
    }

    /// Delivers everything queued, exchanges FIN / FIN_ACK both ways, then closes the channel.
    pub(crate) async fn close(&self, peer: &PeerId, timeout_ms: u64) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.writer
            .send(WriteCmd::Close { done, timeout_ms })
            .await
            .map_err(|_| Error::PeerNotConnected(peer.clone()))?;
        wait.await.map_err(|_| Error::PeerNotConnected(peer.clone()))?
    }
}

/// Where a link delivers what it receives.
#[derive(Clone)]
pub(crate) struct Sinks {
    pub(crate) messages: async_channel::Sender<Message>,
    pub(crate) events: async_channel::Sender<Event>,
}

/// Starts the writer and reader tasks for an open channel and returns the handle.
/// `max_frame_size` is already the smaller of ours and the remote's `a=max-message-size`.
pub(crate) fn start(
    peer: PeerId,
    channel: RtcChannel,
    frames: async_channel::Receiver<Bytes>,
    limits: CodecLimits,
    max_frame_size: usize,
    sinks: Sinks,
) -> LinkHandle {
    let (writer_tx, writer_rx) = async_channel::bounded(WRITE_QUEUE_MESSAGES);
    let writer = Writer {
        peer: peer.clone(),
        channel,
        encoder: FrameEncoder::new(limits.clone()),
        max_frame_size,
        closing: Closing::default(),
    };
    backend::spawn(writer.run(writer_rx));
    let reader = Reader { peer, decoder: FrameDecoder::new(limits), writer: writer_tx.clone(), sinks };
    backend::spawn(reader.run(frames));
    LinkHandle { writer: writer_tx }
}

/// Progress of the close handshake. Either side may start it; the peer that receives a FIN
/// answers FIN_ACK and sends its own FIN after what it had queued (like a WebSocket close).
#[derive(Default)]
struct Closing {
    fin_sent: bool,
    fin_acked: bool,
    remote_fin: bool,
    /// (deadline from `backend::now_ms`, the timeout it came from), both ms.
    deadline: Option<(u64, u64)>,
    waiters: Vec<oneshot::Sender<Result<()>>>,
}

impl Closing {
    /// Both FINs sent and acknowledged: every byte each side sent was read by the other.
    fn complete(&self) -> bool {
        self.fin_sent && self.fin_acked && self.remote_fin
    }
}

/// How often a closing writer checks whether the channel is still open, ms.
const CLOSE_POLL_MS: u64 = 50;

struct Writer {
    peer: PeerId,
    channel: RtcChannel,
    encoder: FrameEncoder,
    max_frame_size: usize,
    closing: Closing,
}

enum Wake {
    Command(Option<WriteCmd>),
    Poll,
}

impl Writer {
    /// Serves commands until the close handshake completes, the channel closes, or the close
    /// deadline passes; then answers every `close` waiter.
    async fn run(mut self, commands: async_channel::Receiver<WriteCmd>) {
        loop {
            let wake = if self.closing.fin_sent {
                let poll = Box::pin(backend::sleep_ms(CLOSE_POLL_MS));
                match futures::future::select(Box::pin(commands.recv()), poll).await {
                    Either::Left((cmd, _)) => Wake::Command(cmd.ok()),
                    Either::Right(_) => Wake::Poll,
                }
            } else {
                Wake::Command(commands.recv().await.ok())
            };
            match wake {
                Wake::Command(Some(cmd)) => self.handle(cmd).await,
                Wake::Command(None) => return self.finish(Ok(())).await,
                Wake::Poll if !self.channel.is_open() => {
                    // The peer closes only once it has our FIN, so after its FIN a closed
                    // channel means our data was read; before it, the link broke.
                    let outcome = match self.closing.remote_fin {
                        true => Ok(()),
                        false => Err(Error::PeerNotConnected(self.peer.clone())),
                    };
                    return self.finish(outcome).await;
                }
                Wake::Poll => {
                    if let Some((deadline, ms)) = self.closing.deadline {
                        if backend::now_ms() >= deadline {
                            let what = format!("close handshake (FIN_ACK) with {}", self.peer);
                            return self.finish(Err(Error::Timeout { what, ms })).await;
                        }
                    }
                }
            }
            if self.closing.complete() {
                return self.finish(Ok(())).await;
            }
        }
    }

    async fn handle(&mut self, cmd: WriteCmd) {
        match cmd {
            WriteCmd::Data { done, .. } if self.closing.fin_sent => {
                let _ = done.send(Err(Error::PeerNotConnected(self.peer.clone())));
            }
            WriteCmd::Data { data, text, done } => {
                let _ = done.send(self.send_message(data, text).await);
            }
            WriteCmd::Control(control) => self.send_control(control).await,
            WriteCmd::Close { done, timeout_ms } => {
                self.closing.waiters.push(done);
                self.closing.deadline.get_or_insert((backend::now_ms().saturating_add(timeout_ms), timeout_ms));
                self.send_fin().await;
            }
            WriteCmd::RemoteFin => {
                self.closing.remote_fin = true;
                self.send_control(Control::FinAck).await;
                // The peer is leaving: answer with our own FIN after what is already queued.
                self.send_fin().await;
            }
            WriteCmd::FinAck => self.closing.fin_acked = true,
        }
    }

    async fn send_fin(&mut self) {
        if !self.closing.fin_sent {
            self.closing.fin_sent = true;
            self.send_control(Control::Fin).await;
        }
    }

    async fn send_control(&mut self, control: Control) {
        let frame = self.encoder.encode_control(control);
        if let Err(e) = self.channel.send(frame).await {
            tracing::debug!(peer = %self.peer, "control frame not sent: {e}");
        }
    }

    async fn send_message(&mut self, data: Bytes, text: bool) -> Result<()> {
        let frames = self.encoder.encode_message(data, text, self.max_frame_size)?;
        for frame in frames {
            if self.channel.buffered_amount().await > HIGH_WATER_BYTES {
                self.channel.wait_buffered_amount_low(LOW_WATER_BYTES).await;
            }
            self.channel.send(frame).await.map_err(|reason| Error::Rtc { peer: self.peer.clone(), reason })?;
        }
        Ok(())
    }

    async fn finish(mut self, outcome: Result<()>) {
        self.channel.close().await;
        for waiter in self.closing.waiters.drain(..) {
            let _ = waiter.send(outcome.clone());
        }
    }
}

struct Reader {
    peer: PeerId,
    decoder: FrameDecoder,
    writer: async_channel::Sender<WriteCmd>,
    sinks: Sinks,
}

impl Reader {
    async fn run(mut self, frames: async_channel::Receiver<Bytes>) {
        while let Ok(frame) = frames.recv().await {
            match self.decoder.decode(&frame) {
                Ok(None) => {}
                Ok(Some(Delivery::Message { data, text })) => {
                    let message = Message { from: self.peer.clone(), data, text };
                    // Awaiting here is the receive-side backpressure: the backend stops reading
                    // from the data channel while the application is behind.
                    if self.sinks.messages.send(message).await.is_err() {
                        return;
                    }
                }
                Ok(Some(Delivery::Control(control))) => self.on_control(control).await,
                Err(e) => {
                    tracing::warn!(peer = %self.peer, "bad frame: {e}");
                    let _ = self.sinks.events.force_send(Event::Error(Error::Codec(e)));
                }
            }
        }
    }

    async fn on_control(&mut self, control: Control) {
        match control {
            Control::Fin => {
                let _ = self.writer.send(WriteCmd::RemoteFin).await;
            }
            Control::FinAck => {
                let _ = self.writer.send(WriteCmd::FinAck).await;
            }
            Control::Ping(token) => {
                let _ = self.writer.send(WriteCmd::Control(Control::Pong(token))).await;
            }
            Control::Pong(_) | Control::Reset => {}
        }
    }
}
