//! The ARQ pipe: one task per link that drives an [`ArqConnection`] — datagrams between it and
//! the ARQ data channel, its timers, and the frames it reassembles out to the link's reader.
//! The writer puts frames in through [`ArqPipe::send`]; memory stays bounded because the
//! writer waits on [`ArqPipe::buffered_amount`] like on `bufferedAmount`, and the receive
//! window bounds what the peer may send us.
//!
//! The link's v1 data channel stays open beside it as a lifeline: when it closes (the peer
//! closed, or the connection failed) the pipe hands over every frame it holds and ends, so the
//! reader sees the end of the stream in order, exactly as on a v1 link.

use crate::arq::{ArqConfig, ArqConnection, ArqError};
use crate::backend::{self, RtcChannel};
use crate::session::ArqChannel;
use crate::signaling::protocol::PeerId;
use bytes::Bytes;
use futures::FutureExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Most datagrams sent per turn of the pipe loop before it looks at its input again, so ACKs
/// from the peer are not left waiting behind a long burst.
const MAX_BURST: usize = 64;

/// Above this many bytes queued in the ARQ data channel (`bufferedAmount`) the pipe stops
/// handing it datagrams: SCTP's own congestion window is then the narrower one, and queueing
/// more would only add delay the ARQ layer reads as a longer RTT.
const CHANNEL_BUFFER_CAP: usize = 256 * 1024;

/// How often the pipe looks again while something it cannot be woken for holds it: the
/// reader's queue full, or the data channel's buffer above [`CHANNEL_BUFFER_CAP`], µs.
const RECHECK_US: u64 = 1_000;

/// After `close`, how long the pipe keeps retransmitting what the peer has not acknowledged
/// yet before it closes the channels anyway, ms. The close handshake already waited for the
/// peer's FIN_ACK, so only the last acknowledgements are normally outstanding.
const LINGER_MS: u64 = 2_000;

/// State shared by the pipe task and every handle.
struct Shared {
    peer: PeerId,
    connection: Mutex<ArqConnection>,
    /// Wakes the task: a frame was written, or `close` was called.
    wake: event_listener::Event,
    /// Wakes writers waiting for room: acknowledgements shrank the buffer, or the pipe ended.
    drained: event_listener::Event,
    /// Wakes `close` callers once the task has finished.
    finished_event: event_listener::Event,
    closing: AtomicBool,
    ended: AtomicBool,
    finished: AtomicBool,
    /// The channels the pipe closes when it ends (ARQ channel, then the v1 lifeline).
    channels: [RtcChannel; 2],
}

impl Shared {
    fn connection(&self) -> MutexGuard<'_, ArqConnection> {
        self.connection.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Handle on a link's ARQ pipe (cheap to clone).
#[derive(Clone)]
pub(crate) struct ArqPipe {
    shared: Arc<Shared>,
}

impl ArqPipe {
    /// Starts the pipe task over `arq` beside the v1 channel `lifeline` (whose received
    /// frames are `lifeline_frames`). Returns the handle and the queue of reassembled frames,
    /// `frame_queue` deep, for the link's reader.
    pub(crate) fn start(
        peer: PeerId,
        arq: ArqChannel,
        lifeline: RtcChannel,
        lifeline_frames: async_channel::Receiver<Bytes>,
        config: ArqConfig,
        frame_queue: usize,
    ) -> (ArqPipe, async_channel::Receiver<Bytes>) {
        let (frames_tx, frames_rx) = async_channel::bounded(frame_queue.max(1));
        let shared = Arc::new(Shared {
            peer,
            connection: Mutex::new(ArqConnection::new(config, backend::now_us())),
            wake: event_listener::Event::new(),
            drained: event_listener::Event::new(),
            finished_event: event_listener::Event::new(),
            closing: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            channels: [arq.channel.clone(), lifeline],
        });
        let task = Task {
            shared: Arc::clone(&shared),
            channel: arq.channel,
            datagrams: arq.datagrams,
            lifeline: lifeline_frames,
            frames: frames_tx,
            received: Vec::new(),
            input_ended: false,
        };
        backend::spawn(task.run());
        (ArqPipe { shared }, frames_rx)
    }

    /// Appends a frame to the stream. Never waits: callers bound memory with
    /// [`buffered_amount`](Self::buffered_amount). Errors: the pipe ended, or the frame is over
    /// the layer's frame limit.
    pub(crate) fn send(&self, frame: Bytes) -> Result<(), String> {
        if self.shared.ended.load(Ordering::Acquire) {
            return Err("the ARQ layer's data channel closed".into());
        }
        self.shared
            .connection()
            .write_frame(&frame)
            .map_err(|e| e.to_string())?;
        self.shared.wake.notify(1);
        Ok(())
    }

    /// Bytes written and not yet acknowledged by the peer (queued plus in flight).
    pub(crate) fn buffered_amount(&self) -> usize {
        usize::try_from(self.shared.connection().buffered_bytes()).unwrap_or(usize::MAX)
    }

    /// Waits until at most `bytes` are unacknowledged, or the pipe ended.
    pub(crate) async fn wait_buffered_amount_low(&self, bytes: usize) {
        loop {
            let listener = self.shared.drained.listen();
            if self.shared.ended.load(Ordering::Acquire) || self.buffered_amount() <= bytes {
                return;
            }
            // The event is the fast path; the timer only guards against a missed one.
            futures::future::select(listener, Box::pin(backend::sleep_ms(50))).await;
        }
    }

    /// Stops the pipe once the peer acknowledged everything (at most [`LINGER_MS`]), then
    /// closes the ARQ channel and the lifeline. Returns once both are closed.
    pub(crate) async fn close(&self) {
        self.shared.closing.store(true, Ordering::Release);
        self.shared.wake.notify(1);
        loop {
            let listener = self.shared.finished_event.listen();
            if self.shared.finished.load(Ordering::Acquire) {
                break;
            }
            futures::future::select(listener, Box::pin(backend::sleep_ms(50))).await;
        }
        for channel in &self.shared.channels {
            channel.close().await;
        }
    }
}

/// The pipe task's own state.
struct Task {
    shared: Arc<Shared>,
    channel: RtcChannel,
    datagrams: async_channel::Receiver<Bytes>,
    lifeline: async_channel::Receiver<Bytes>,
    frames: async_channel::Sender<Bytes>,
    /// Datagrams taken from the queue, not yet handed to the connection.
    received: Vec<Bytes>,
    /// The ARQ channel or the lifeline closed.
    input_ended: bool,
}

/// What one turn of the loop left to wait for.
struct Turn {
    /// The connection's next timer, µs.
    timeout_us: Option<u64>,
    /// Something only a re-check can clear holds the pipe (see [`RECHECK_US`]).
    recheck: bool,
    /// More datagrams are ready to send right away.
    more_to_send: bool,
}

impl Task {
    async fn run(mut self) {
        let mut linger_until_ms = None;
        let outcome = loop {
            let wake = self.shared.wake.listen();
            self.take_input();
            let turn = match self.step().await {
                Ok(turn) => turn,
                Err(e) => break Err(e),
            };
            if self.input_ended {
                break Ok(());
            }
            if self.shared.closing.load(Ordering::Acquire) {
                let now = backend::now_ms();
                let until = *linger_until_ms.get_or_insert(now.saturating_add(LINGER_MS));
                if self.shared.connection().is_idle() || now >= until {
                    break Ok(());
                }
            }
            if turn.more_to_send {
                continue;
            }
            self.wait(wake, &turn).await;
        };
        self.finish(outcome).await;
    }

    /// Moves every datagram already queued into `received`; notes the end of either channel.
    fn take_input(&mut self) {
        loop {
            match self.datagrams.try_recv() {
                Ok(datagram) => self.received.push(datagram),
                Err(async_channel::TryRecvError::Empty) => break,
                Err(async_channel::TryRecvError::Closed) => {
                    self.input_ended = true;
                    break;
                }
            }
        }
        loop {
            match self.lifeline.try_recv() {
                // A peer that agreed on the layer sends nothing on the v1 channel.
                Ok(_) => {
                    tracing::warn!(peer = %self.shared.peer, "frame on the v1 channel of an ARQ link ignored")
                }
                Err(async_channel::TryRecvError::Empty) => break,
                Err(async_channel::TryRecvError::Closed) => {
                    self.input_ended = true;
                    break;
                }
            }
        }
    }

    /// Feeds input and timers to the connection, sends what it has, hands frames to the
    /// reader. A fatal protocol error ends the pipe.
    async fn step(&mut self) -> Result<Turn, ArqError> {
        let channel_full = self.channel.buffered_amount().await > CHANNEL_BUFFER_CAP;
        let now = backend::now_us();
        let mut outgoing = Vec::new();
        let (turn, drained) = {
            let mut connection = self.shared.connection();
            let buffered_before = connection.buffered_bytes();
            for datagram in self.received.drain(..) {
                match connection.handle_datagram(now, &datagram) {
                    Ok(()) => {}
                    Err(ArqError::Malformed(why)) => {
                        tracing::debug!(peer = %self.shared.peer, "ARQ datagram dropped: {why}");
                    }
                    Err(fatal) => return Err(fatal),
                }
            }
            if connection.poll_timeout().is_some_and(|at| at <= now) {
                connection.handle_timeout(now);
            }
            let mut more_to_send = false;
            if !channel_full {
                while let Some(datagram) = connection.poll_transmit(now) {
                    outgoing.push(datagram);
                    if outgoing.len() >= MAX_BURST {
                        more_to_send = true;
                        break;
                    }
                }
            }
            let mut reader_full = false;
            loop {
                if self.frames.is_full() {
                    reader_full = true;
                    break;
                }
                match connection.poll_frame() {
                    Some(Ok(frame)) => {
                        // Never full (checked above) and this task is the only sender.
                        let _ = self.frames.try_send(frame);
                    }
                    Some(Err(fatal)) => return Err(fatal),
                    None => break,
                }
            }
            let turn = Turn {
                timeout_us: connection.poll_timeout(),
                recheck: channel_full || reader_full,
                more_to_send,
            };
            (turn, connection.buffered_bytes() < buffered_before)
        };
        if drained {
            self.shared.drained.notify(usize::MAX);
        }
        for datagram in outgoing {
            // A datagram the channel refuses (not open yet, or closing) is a lost packet:
            // the ARQ layer sends its data again.
            if let Err(e) = self.channel.send(datagram).await {
                tracing::trace!(peer = %self.shared.peer, "ARQ datagram not sent: {e}");
            }
        }
        Ok(turn)
    }

    /// Sleeps until input, a write, the connection's timer or a re-check, whichever is first.
    async fn wait(&mut self, wake: event_listener::EventListener, turn: &Turn) {
        let now = backend::now_us();
        let mut sleep_us = turn.timeout_us.map(|at| at.saturating_sub(now));
        if turn.recheck {
            sleep_us = Some(sleep_us.map_or(RECHECK_US, |us| us.min(RECHECK_US)));
        }
        let timer = async {
            match sleep_us {
                Some(us) => backend::sleep_us(us).await,
                None => futures::future::pending::<()>().await,
            }
        };
        enum Woke {
            Datagram(Option<Bytes>),
            LifelineEnded(bool),
            Other,
        }
        let woke = futures::select! {
            datagram = self.datagrams.recv().fuse() => Woke::Datagram(datagram.ok()),
            frame = self.lifeline.recv().fuse() => Woke::LifelineEnded(frame.is_err()),
            () = wake.fuse() => Woke::Other,
            () = Box::pin(timer).fuse() => Woke::Other,
        };
        match woke {
            Woke::Datagram(Some(datagram)) => self.received.push(datagram),
            Woke::Datagram(None) | Woke::LifelineEnded(true) => self.input_ended = true,
            Woke::LifelineEnded(false) | Woke::Other => {}
        }
    }

    /// Hands the reader every frame already reassembled, then ends the stream and the pipe.
    async fn finish(self, outcome: Result<(), ArqError>) {
        if let Err(e) = &outcome {
            tracing::warn!(peer = %self.shared.peer, "ARQ layer failed: {e}");
        } else {
            loop {
                let next = self.shared.connection().poll_frame();
                match next {
                    Some(Ok(frame)) => {
                        if self.frames.send(frame).await.is_err() {
                            break;
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(peer = %self.shared.peer, "ARQ layer failed: {e}");
                        break;
                    }
                    None => break,
                }
            }
        }
        self.frames.close();
        self.shared.ended.store(true, Ordering::Release);
        self.shared.drained.notify(usize::MAX);
        // A failed layer cannot carry the link on: closing the lifeline ends the link on both
        // sides, like a failed v1 channel.
        if outcome.is_err() {
            for channel in &self.shared.channels {
                channel.close().await;
            }
        }
        self.shared.finished.store(true, Ordering::Release);
        self.shared.finished_event.notify(usize::MAX);
    }
}
