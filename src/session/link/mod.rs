//! One open data channel to one peer: a [`writer`] task that interleaves messages' frames (and
//! coalesces small ones into BATCH frames) with backpressure and runs the close handshake, and a
//! [`reader`] task that decodes frames into messages.
//!
//! `send` of a single-frame message returns once it is queued (like `RTCDataChannel.send`), so
//! a sender's small messages pile up and are coalesced into BATCH frames; `send` of a larger
//! message returns once its last frame is handed to the channel. So a sequential sender's
//! messages arrive in send order, while a message sent concurrently (another task) overtakes a
//! large transfer after at most one frame. Nothing accepted is lost silently: `close` sends FIN
//! after everything queued and completes once both sides' FINs are acknowledged, and queued
//! single-frame messages stranded by a broken channel are counted in an `Error::Undelivered`
//! event.

mod arq_pipe;
mod outlet;
mod reader;
mod writer;

use super::receive_budget::ReceiveBudget;
use crate::backend::{self, RtcChannel};
use crate::channel_info::ChannelInfo;
use crate::codec::{fits_one_frame, CodecError, CodecLimits, Control, FrameDecoder, FrameEncoder};
use crate::config::ChannelKind;
use crate::error::{Error, Result};
use crate::event::{Event, Message};
use crate::session::ArqChannel;
use crate::signaling::protocol::PeerId;
use arq_pipe::ArqPipe;
use bytes::Bytes;
use futures::channel::oneshot;
use outlet::Outlet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A request to a peer's writer task. The reader task also speaks through this queue, so the
/// writer sees the peer's control frames in the order they arrived.
pub(crate) enum WriteCmd {
    /// An application message; `done` (multi-frame messages) answers once its last frame is
    /// handed to the channel.
    Data {
        data: Bytes,
        text: bool,
        done: Option<oneshot::Sender<Result<()>>>,
    },
    /// A control frame to send now (PONG, RESET), between data frames.
    Control(Control),
    /// Our application closes: FIN once everything queued is sent, then the handshake.
    Close {
        done: oneshot::Sender<Result<()>>,
        timeout_ms: u64,
    },
    /// The reader saw the peer's FIN: the peer sends nothing more and has our data up to it.
    RemoteFin,
    /// The reader saw the peer's FIN_ACK: the peer has read everything up to our FIN.
    FinAck,
    /// The reader saw the peer's RESET: it dropped our fragmented message `msg_id`.
    RemoteReset(u64),
    /// The data channel closed and the reader has handled every frame received before that
    /// (so a FIN or FIN_ACK that arrived is already known to the writer).
    ChannelClosed,
}

/// Sizes that shape one link, from [`crate::TransportConfig`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct LinkSettings {
    pub(crate) limits: CodecLimits,
    /// Smaller of our `max_frame_size` and the remote's `a=max-message-size`, bytes.
    pub(crate) max_frame_size: usize,
    /// Sending pauses above this `bufferedAmount`, bytes.
    pub(crate) high_water_bytes: usize,
    /// Sending resumes at or below this `bufferedAmount`, bytes.
    pub(crate) low_water_bytes: usize,
    /// Messages queued per peer (waiting or being interleaved); `send` waits past it.
    pub(crate) send_queue_messages: usize,
    /// The channel's kind (the offerer's choice).
    pub(crate) kind: ChannelKind,
    /// The remote's `a=max-message-size`, bytes.
    pub(crate) remote_max_message_size: usize,
    /// The ARQ layer's receive window, bytes.
    pub(crate) arq_receive_window: u64,
}

/// State the writer task shares with every handle on its link.
pub(crate) struct LinkShared {
    /// Cleared once the link stops accepting messages (closing, or ended).
    accepting: AtomicBool,
    /// How the writer task ended: `None` while it runs.
    outcome: Mutex<Option<Result<()>>>,
}

/// Handle on a running link, kept in the transport's peer table.
#[derive(Clone)]
pub(crate) struct LinkHandle {
    writer: async_channel::Sender<WriteCmd>,
    shared: Arc<LinkShared>,
    limits: CodecLimits,
    max_frame_size: usize,
    info: Arc<ChannelInfo>,
    /// For reading `bufferedAmount`; the writer task owns sending.
    outlet: Outlet,
}

impl LinkHandle {
    /// Queues `data` for the peer, waiting while `send_queue_messages` are queued; a message
    /// larger than one frame is then awaited until its last frame is handed to the channel.
    /// Errors: `PeerNotConnected` (the link is closing or gone), `Codec(MessageTooLarge)`,
    /// `Codec(InvalidUtf8)` (`text` with non-UTF-8 bytes), `MessageRefused` / `Rtc` (multi-frame
    /// messages only: the peer sent RESET, or the channel failed).
    pub(crate) async fn send(&self, peer: &PeerId, data: Bytes, text: bool) -> Result<()> {
        let max = self.limits.max_message_size;
        if data.len() > max {
            let len = data.len() as u64;
            return Err(Error::Codec(CodecError::MessageTooLarge { len, max }));
        }
        if text && std::str::from_utf8(&data).is_err() {
            return Err(Error::Codec(CodecError::InvalidUtf8));
        }
        let not_connected = || Error::PeerNotConnected(peer.clone());
        if !self.shared.accepting.load(Ordering::Acquire) {
            return Err(not_connected());
        }
        if fits_one_frame(data.len(), self.max_frame_size) {
            let cmd = WriteCmd::Data {
                data,
                text,
                done: None,
            };
            return self.writer.send(cmd).await.map_err(|_| not_connected());
        }
        let (done, wait) = oneshot::channel();
        let cmd = WriteCmd::Data {
            data,
            text,
            done: Some(done),
        };
        self.writer.send(cmd).await.map_err(|_| not_connected())?;
        wait.await.map_err(|_| not_connected())?
    }

    /// Bytes queued in the data channel and not yet sent (`bufferedAmount`).
    pub(crate) async fn buffered_amount(&self) -> usize {
        self.outlet.buffered_amount().await
    }

    /// The channel's negotiated parameters.
    pub(crate) fn info(&self) -> ChannelInfo {
        ChannelInfo::clone(&self.info)
    }

    /// Delivers everything queued, exchanges FIN / FIN_ACK both ways, then closes the channel.
    ///
    /// If the link already ended (the peer closed first), answers how it ended: `Ok` after a
    /// completed FIN exchange, since then everything we sent was read.
    pub(crate) async fn close(&self, peer: &PeerId, timeout_ms: u64) -> Result<()> {
        let (done, wait) = oneshot::channel();
        if self
            .writer
            .send(WriteCmd::Close { done, timeout_ms })
            .await
            .is_err()
        {
            return self.ended(peer);
        }
        match wait.await {
            Ok(outcome) => outcome,
            Err(_) => self.ended(peer),
        }
    }

    /// The recorded outcome of a writer that is gone.
    fn ended(&self, peer: &PeerId) -> Result<()> {
        let recorded = self
            .shared
            .outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        recorded.unwrap_or_else(|| Err(Error::PeerNotConnected(peer.clone())))
    }
}

/// Where a link delivers what it receives.
#[derive(Clone)]
pub(crate) struct Sinks {
    pub(crate) messages: async_channel::Sender<Message>,
    pub(crate) events: async_channel::Sender<Event>,
    /// Bytes of queued messages (`receive_queue_bytes`); `Transport::recv` releases them.
    pub(crate) budget: Arc<ReceiveBudget>,
}

/// Starts the writer and reader tasks for an open channel and returns the handle. With `arq`
/// (both peers announced the ARQ layer), frames travel through an [`ArqPipe`] on that channel
/// and `channel` only serves as the lifeline whose close ends the link.
pub(crate) fn start(
    peer: PeerId,
    channel: RtcChannel,
    frames: async_channel::Receiver<Bytes>,
    arq: Option<ArqChannel>,
    settings: LinkSettings,
    sinks: Sinks,
) -> LinkHandle {
    let (writer_tx, writer_rx) = async_channel::bounded(settings.send_queue_messages.max(1));
    let parameters = channel.parameters();
    let (outlet, frames) = match arq {
        Some(arq) => {
            let config = crate::arq::ArqConfig {
                // A frame plus its length prefix always fits; bigger ones are a peer's error.
                max_frame: settings.max_frame_size.saturating_add(16),
                receive_window: settings.arq_receive_window,
                ..crate::arq::ArqConfig::default()
            };
            let frame_queue = frames.capacity().unwrap_or(1024);
            let (pipe, frames) =
                ArqPipe::start(peer.clone(), arq, channel, frames, config, frame_queue);
            (Outlet::Arq(pipe), frames)
        }
        None => (Outlet::Direct(channel), frames),
    };
    let info = Arc::new(ChannelInfo {
        label: parameters.label,
        kind: settings.kind,
        ordered: parameters.ordered,
        max_retransmits: parameters.max_retransmits,
        max_packet_life_time_ms: parameters.max_packet_life_time_ms,
        max_frame_size: settings.max_frame_size,
        remote_max_message_size: settings.remote_max_message_size,
        arq: outlet.is_arq(),
    });
    let encoder = FrameEncoder::new(settings.limits);
    let shared = Arc::new(LinkShared {
        accepting: AtomicBool::new(true),
        outcome: Mutex::new(None),
    });
    let writer = writer::Writer::new(
        peer.clone(),
        outlet.clone(),
        encoder,
        settings,
        sinks.events.clone(),
        shared.clone(),
    );
    backend::spawn(writer.run(writer_rx));
    let reader = reader::Reader::new(
        peer,
        FrameDecoder::new(settings.limits),
        writer_tx.clone(),
        sinks,
    );
    backend::spawn(reader.run(frames));
    LinkHandle {
        writer: writer_tx,
        shared,
        limits: settings.limits,
        max_frame_size: settings.max_frame_size,
        info,
        outlet,
    }
}
