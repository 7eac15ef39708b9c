//! The sending half of a link: interleaves queued messages frame by frame (so a small message
//! is never stuck behind a large one for more than one frame), pauses while the channel's
//! `bufferedAmount` is above the high-water mark, and runs the close handshake.

use super::outlet::Outlet;
use super::{LinkSettings, LinkShared, WriteCmd};
use crate::backend;
use crate::codec::{Control, FrameEncoder, OutboundQueue};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::signaling::protocol::PeerId;
use futures::channel::oneshot;
use futures::future::Either;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Answers a `close` once the handshake completed or failed, or a multi-frame `send` once its
/// last frame is handed to the channel.
type Done = oneshot::Sender<Result<()>>;

/// The tag of a queued message in the [`OutboundQueue`].
struct Queued {
    /// Payload bytes.
    len: usize,
    /// The waiting `send` of a multi-frame message; `None` for a single-frame one, whose
    /// `send` already returned.
    done: Option<Done>,
}

/// How often a closing writer checks whether the channel is still open, ms.
const CLOSE_POLL_MS: u64 = 50;

/// Progress of the close handshake. Either side may start it; the peer that receives a FIN
/// answers FIN_ACK at once and sends its own FIN after what it had queued (like a WebSocket
/// close). Complete when both FINs are sent and acknowledged: every byte each side sent was
/// read by the other.
#[derive(Default)]
struct Closing {
    /// Our application asked to close (or the peer did): FIN goes out once the queue is empty.
    requested: bool,
    fin_sent: bool,
    fin_acked: bool,
    remote_fin: bool,
    /// (deadline on `backend::now_ms`, the timeout it came from), both ms.
    deadline: Option<(u64, u64)>,
    waiters: Vec<Done>,
}

impl Closing {
    fn complete(&self) -> bool {
        self.fin_sent && self.fin_acked && self.remote_fin
    }
}

pub(super) struct Writer {
    peer: PeerId,
    channel: Outlet,
    encoder: FrameEncoder,
    queue: OutboundQueue<Queued>,
    settings: LinkSettings,
    events: async_channel::Sender<Event>,
    closing: Closing,
    /// The reader saw the channel close (after handing over every frame before it).
    channel_closed: bool,
    /// Send budget and final outcome, shared with the link's handles.
    shared: Arc<LinkShared>,
}

enum Wake {
    Command(Option<WriteCmd>),
    Poll,
}

impl Writer {
    pub(super) fn new(
        peer: PeerId,
        channel: Outlet,
        encoder: FrameEncoder,
        settings: LinkSettings,
        events: async_channel::Sender<Event>,
        shared: Arc<LinkShared>,
    ) -> Self {
        Writer {
            peer,
            channel,
            encoder,
            queue: OutboundQueue::new(),
            settings,
            events,
            closing: Closing::default(),
            channel_closed: false,
            shared,
        }
    }

    /// Serves commands and sends frames until the close handshake completes, the channel
    /// closes, or the close deadline passes; then answers every `close` waiter.
    pub(super) async fn run(mut self, commands: async_channel::Receiver<WriteCmd>) {
        loop {
            if self.queue.is_empty() {
                // Nothing to send: sleep until a command (or, while closing, a poll tick).
                match self.wait(&commands).await {
                    Wake::Command(Some(cmd)) => self.handle(cmd).await,
                    Wake::Command(None) => return self.finish(Ok(()), &commands).await,
                    Wake::Poll => {
                        if let Some(outcome) = self.check_deadline() {
                            return self.finish(outcome, &commands).await;
                        }
                    }
                }
            }
            // Take what is ready without waiting, up to the queue bound, so new messages join
            // the rotation between two frames of a large one.
            while self.queue.len() < self.settings.send_queue_messages && !self.channel_closed {
                let Ok(cmd) = commands.try_recv() else { break };
                self.handle(cmd).await;
            }
            if self.channel_closed {
                let outcome = self.outcome_after_channel_closed();
                return self.finish(outcome, &commands).await;
            }
            if let Err(e) = self.send_next_frame().await {
                return self.finish(Err(e), &commands).await;
            }
            if self.closing.requested && self.queue.is_empty() && !self.closing.fin_sent {
                self.closing.fin_sent = true;
                self.send_control(Control::Fin).await;
            }
            if self.closing.complete() {
                return self.finish(Ok(()), &commands).await;
            }
        }
    }

    async fn wait(&self, commands: &async_channel::Receiver<WriteCmd>) -> Wake {
        if !self.closing.fin_sent {
            return Wake::Command(commands.recv().await.ok());
        }
        let poll = Box::pin(backend::sleep_ms(CLOSE_POLL_MS));
        match futures::future::select(Box::pin(commands.recv()), poll).await {
            Either::Left((cmd, _)) => Wake::Command(cmd.ok()),
            Either::Right(_) => Wake::Poll,
        }
    }

    /// While closing: a timeout error once the close deadline has passed.
    fn check_deadline(&self) -> Option<Result<()>> {
        let (deadline, ms) = self.closing.deadline?;
        (backend::now_ms() >= deadline).then(|| {
            let what = format!("close handshake (FIN_ACK) with {}", self.peer);
            Err(Error::Timeout { what, ms })
        })
    }

    /// How the link ended when its channel closed. The reader reports the close only after
    /// every frame received before it, so FIN / FIN_ACK that arrived are already counted here.
    /// A peer closes its channel only once it holds our FIN (or gives up), so after our FIN
    /// was sent, its FIN_ACK or its own FIN means our data was read; anything else means the
    /// link broke, and what is still queued is reported by `finish`.
    fn outcome_after_channel_closed(&self) -> Result<()> {
        let closing = &self.closing;
        if closing.fin_sent && (closing.fin_acked || closing.remote_fin) {
            Ok(())
        } else {
            Err(Error::PeerNotConnected(self.peer.clone()))
        }
    }

    async fn handle(&mut self, cmd: WriteCmd) {
        match cmd {
            WriteCmd::Data { data, done, .. } if self.closing.requested => {
                // Raced with the start of closing (new sends are refused from then on).
                let queued = Queued {
                    len: data.len(),
                    done,
                };
                self.fail(queued, Error::PeerNotConnected(self.peer.clone()));
            }
            WriteCmd::Data { data, text, done } => {
                let len = data.len();
                let pushed = self.queue.push_tagged(
                    &mut self.encoder,
                    data,
                    text,
                    self.settings.max_frame_size,
                    Queued { len, done },
                );
                if let Err((error, queued)) = pushed {
                    self.fail(queued, Error::Codec(error));
                }
            }
            WriteCmd::Control(control) => self.send_control(control).await,
            WriteCmd::Close { done, timeout_ms } => {
                self.closing.waiters.push(done);
                self.start_closing();
                self.closing
                    .deadline
                    .get_or_insert((backend::now_ms().saturating_add(timeout_ms), timeout_ms));
            }
            WriteCmd::RemoteFin => {
                // FIN_ACK now: the reader has passed on everything the peer sent before FIN.
                self.closing.remote_fin = true;
                self.start_closing();
                self.send_control(Control::FinAck).await;
            }
            WriteCmd::FinAck => self.closing.fin_acked = true,
            WriteCmd::ChannelClosed => self.channel_closed = true,
            WriteCmd::RemoteReset(msg_id) => {
                let error = Error::MessageRefused {
                    peer: self.peer.clone(),
                };
                match self.queue.abort(msg_id).and_then(|q| q.done) {
                    Some(done) => {
                        let _ = done.send(Err(error));
                    }
                    // Its `send` already returned: tell the application through an event.
                    None => {
                        let _ = self.events.force_send(Event::Error(error));
                    }
                }
            }
        }
    }

    /// Reports a message that will not be sent: to its waiting `send`, or else as an event.
    fn fail(&self, queued: Queued, error: Error) {
        match queued.done {
            Some(done) => {
                let _ = done.send(Err(error));
            }
            None if matches!(error, Error::PeerNotConnected(_)) => {
                self.report_undelivered(1, queued.len)
            }
            None => {
                let _ = self.events.force_send(Event::Error(error));
            }
        }
    }

    /// From now on `send` is refused; what is queued still goes out before our FIN.
    fn start_closing(&mut self) {
        self.closing.requested = true;
        self.shared.accepting.store(false, Ordering::Release);
    }

    /// Tells the application that accepted messages will not reach the peer.
    fn report_undelivered(&self, messages: usize, bytes: usize) {
        let error = Error::Undelivered {
            peer: self.peer.clone(),
            messages,
            bytes,
        };
        tracing::warn!(peer = %self.peer, "{error}");
        let _ = self.events.force_send(Event::Error(error));
    }

    /// Sends the next interleaved data frame, if any, after waiting for buffer room.
    async fn send_next_frame(&mut self) -> Result<()> {
        let Some(popped) = self.queue.pop(&mut self.encoder) else {
            return Ok(());
        };
        self.wait_for_buffer_room().await;
        let sent = self
            .channel
            .send(popped.frame)
            .await
            .map_err(|reason| Error::Rtc {
                peer: self.peer.clone(),
                reason,
            });
        for done in popped.finished.into_iter().filter_map(|q| q.done) {
            let _ = done.send(sent.clone());
        }
        sent
    }

    /// Waits while the channel's `bufferedAmount` is above the high-water mark, until it is
    /// down to the low-water mark (`bufferedamountlow`) or the channel closed.
    async fn wait_for_buffer_room(&self) {
        if self.channel.buffered_amount().await > self.settings.high_water_bytes {
            self.channel
                .wait_buffered_amount_low(self.settings.low_water_bytes)
                .await;
        }
    }

    /// Sends a control frame. It waits for buffer room like data: a peer that floods PINGs
    /// (or bad fragments, each answered by RESET) while not reading what we send would
    /// otherwise grow our send buffer without bound; this way it only stalls its own link.
    async fn send_control(&mut self, control: Control) {
        self.wait_for_buffer_room().await;
        let frame = self.encoder.encode_control(control);
        if let Err(e) = self.channel.send(frame).await {
            tracing::debug!(peer = %self.peer, "control frame not sent: {e}");
        }
    }

    async fn finish(mut self, outcome: Result<()>, commands: &async_channel::Receiver<WriteCmd>) {
        // Recorded first: a `close` racing with the end must find it once the queue is gone.
        *self
            .shared
            .outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(outcome.clone());
        self.shared.accepting.store(false, Ordering::Release);
        commands.close();
        self.channel.close().await;
        let pending = std::iter::from_fn(|| commands.try_recv().ok()).filter_map(|cmd| match cmd {
            WriteCmd::Data { data, done, .. } => Some(Queued {
                len: data.len(),
                done,
            }),
            _ => None,
        });
        let stranded: Vec<Queued> = self.queue.drain().chain(pending).collect();
        let (mut messages, mut bytes) = (0, 0);
        for queued in stranded {
            match queued.done {
                // A waiting `send` hears it directly.
                Some(done) => {
                    let _ = done.send(Err(Error::PeerNotConnected(self.peer.clone())));
                }
                None => {
                    messages += 1;
                    bytes += queued.len;
                }
            }
        }
        if messages > 0 {
            self.report_undelivered(messages, bytes);
        }
        for waiter in self.closing.waiters.drain(..) {
            let _ = waiter.send(outcome.clone());
        }
    }
}
