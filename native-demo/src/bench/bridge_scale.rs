//! `native-demo bench-bridge`: the signaling bridge at scale. Starts `native-demo serve` as a
//! separate process (so its memory and CPU are the bridge's alone), opens `--clients`
//! WebSockets to it from this process (async tasks on one tokio runtime, no thread per client)
//! and measures:
//!
//! 1. **joins**: each client connects, sends `join` and waits for its `welcome`; join latency is
//!    `join` sent → `welcome` received (p50, p99), plus the time until all clients are in;
//!    at most `--concurrency` clients are connecting or joining at once;
//! 2. **relay**: for `--relay-secs` every client sends `signal` messages (a small ICE candidate,
//!    the protocol's real shape) round-robin to the peers of its room at up to `--rate`
//!    messages/s, below the bridge's default per-connection limit (100 messages/s sustained,
//!    burst 2 048), while at most [`IN_FLIGHT_MAX`] messages are in flight in all (so the
//!    clients offer what the bridge can relay, not a backlog for the kernel to hold); the
//!    figure is the number of relayed `signal`s the clients received during that window, per
//!    second. The bridge runs with its default limits (`serve` has no flag for them): they
//!    cap the aggregate at 100/s per client, 1 000 000/s for 10 000 clients, far above what
//!    one bridge relays, so the figure is the bridge's, not the limit's;
//! 3. **memory**: the bridge's VmRSS before any client and with every client joined, hence
//!    RSS per client, and its peak (VmHWM).
//!
//! Rooms: sizes cycle 2, 3, …, 50, 2, 3, … until every client has a room (the last room takes
//! whatever is left; a lone leftover client joins the room before it, making it at most 51,
//! under the default limit of 64). With 10 000 clients: 7 full cycles (343 rooms, 8 918
//! clients), then rooms of 2..=46 and a last one of 2: 389 rooms, 25.7 clients per room on
//! average.
//!
//! The clients share the machine with the bridge: `clients' CPU` says how much they took, and
//! `bridge CPU per relayed message` is the figure that least depends on what else runs.
//!
//! Everything is bounded in time: the run stops by itself, closes every client, stops the
//! bridge with SIGINT (its normal Ctrl-C shutdown), and exits 0 — or non-zero with the reason
//! if anything went wrong (a client refused or dropped, a message lost or rate-limited).

use super::stats::{self, median_p99, Figure};
use anyhow::{bail, Context};
use clap::Args;
use futures::{SinkExt, StreamExt};
use miaou_transport::signaling::protocol::{
    ClientMessage, PeerId, ServerMessage, Signal, PROTOCOL_VERSION,
};
use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const PAIR: &str = "bridge (signaling)";

/// Rate-limit figures of the bridge's default `BridgeConfig` (`RateLimit::default()`), printed
/// with the results; `serve` has no flag to change them, so they are the ones in force.
const BRIDGE_RATE_PER_SECOND: u32 = miaou_transport::signaling::rate_limit::DEFAULT_PER_SECOND;
const BRIDGE_RATE_BURST: u32 = miaou_transport::signaling::rate_limit::DEFAULT_BURST;

/// Ticks per second of each client's sender: messages go out in small batches rather than one
/// timer per message, which would cost more CPU in this process than the bridge spends.
const TICKS_PER_SECOND: u32 = 10;

/// Most relayed messages in flight (sent by a client, not yet received by its peer) across all
/// clients; a client whose batch is due while the window is full skips it. Without it the
/// clients would offer far more than the bridge relays (10 000 × 90/s), the backlog would pile
/// up in kernel socket buffers until the kernel's TCP memory limit (`net.ipv4.tcp_mem`) makes
/// it drop segments, and the figure would measure retransmission timeouts, not the bridge.
const IN_FLIGHT_MAX: u64 = 50_000;

/// Longest wait for one client's connect + join + welcome, and for its room roster.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest wait, after the relay window, for the messages still in flight to arrive.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Longest wait for the closing handshake of each client and for the bridge to exit.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Args)]
pub struct BridgeBenchArgs {
    /// WebSocket clients to open.
    #[arg(long, default_value_t = 10_000)]
    clients: usize,
    /// Clients connecting or waiting for their welcome at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Length of the relay phase, seconds.
    #[arg(long, default_value_t = 10)]
    relay_secs: u64,
    /// `signal` messages each client sends per second during the relay phase; keep it under
    /// the bridge's limit (100/s sustained) or messages are refused as `rate-limited`.
    #[arg(long, default_value_t = 90)]
    rate: u32,
    /// Also append one JSON object per figure to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Where the run is; clients watch it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    Joining,
    /// Send from `start` until `until`.
    Relay {
        start: Instant,
        until: Instant,
    },
    /// Stop reading, close.
    Stop,
}

/// Counters shared by every client task.
#[derive(Default)]
struct Shared {
    sent: AtomicU64,
    received: AtomicU64,
    /// Clients whose sender finished.
    senders_done: AtomicU64,
    /// Anything unexpected: an error from the bridge, a peer leaving, a dropped connection.
    anomalies: AtomicU64,
    /// The first few anomalies, for the report.
    first_anomalies: Mutex<Vec<String>>,
}

impl Shared {
    fn anomaly(&self, what: String) {
        self.anomalies.fetch_add(1, Ordering::Relaxed);
        let mut first = self
            .first_anomalies
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if first.len() < 10 {
            first.push(what);
        }
    }
}

/// What a client reports once it is in its room and knows every peer of it.
struct Joined {
    latency: Duration,
    welcomed_at: Instant,
}

pub async fn run(args: BridgeBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.clients >= 2, "--clients must be at least 2");
    anyhow::ensure!(args.concurrency >= 1, "--concurrency must be at least 1");
    anyhow::ensure!(args.relay_secs >= 1, "--relay-secs must be at least 1");
    if args.rate > BRIDGE_RATE_PER_SECOND {
        tracing::warn!(
            rate = args.rate,
            limit = BRIDGE_RATE_PER_SECOND,
            "--rate is above the bridge's sustained limit: expect rate-limited errors"
        );
    }
    // Each client is one socket here and one in the bridge, which inherits this limit.
    let fds = raise_fd_limit(args.clients as u64 + 256)?;
    let sizes = room_sizes(args.clients);
    eprintln!(
        "bench-bridge: {} clients in {} rooms of 2..={} (sizes cycling from 2), fd limit {fds}",
        args.clients,
        sizes.len(),
        sizes.iter().max().copied().unwrap_or(0)
    );

    let mut bridge = BridgeProcess::start().await?;
    let url = bridge.ws_url.clone();
    // Let the bridge settle (allocator, runtime threads) before the baseline.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = bridge.memory().context("reading the bridge's memory")?;

    // Phase 1: joins.
    let shared = Arc::new(Shared::default());
    let (phase_tx, phase_rx) = watch::channel(Phase::Joining);
    let (joined_tx, mut joined_rx) = mpsc::unbounded_channel::<anyhow::Result<Joined>>();
    let permits = Arc::new(Semaphore::new(args.concurrency));
    let client_config = WebSocketConfig::default()
        // Small buffers: 10 000 clients in this process need not hold 128 KiB each.
        .read_buffer_size(8 * 1024)
        .write_buffer_size(8 * 1024);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.clients);
    let mut index = 0;
    for (room, &size) in sizes.iter().enumerate() {
        for _ in 0..size {
            let client = Client {
                index,
                url: url.clone(),
                config: client_config,
                room: format!("bench-{room}"),
                room_size: size,
                rate: args.rate,
                shared: Arc::clone(&shared),
                phase: phase_rx.clone(),
            };
            let permits = Arc::clone(&permits);
            let joined_tx = joined_tx.clone();
            tasks.push(tokio::spawn(client.run(permits, joined_tx)));
            index += 1;
        }
    }
    drop(joined_tx);
    let mut latencies = Vec::with_capacity(args.clients);
    let mut last_welcome = started;
    while latencies.len() < args.clients {
        let joined = match joined_rx.recv().await {
            Some(Ok(joined)) => joined,
            Some(Err(e)) => {
                return Err(e.context(format!(
                    "a client failed to join after {} had joined",
                    latencies.len()
                )))
            }
            None => bail!("client tasks ended before all joined"),
        };
        latencies.push(joined.latency);
        last_welcome = last_welcome.max(joined.welcomed_at);
        if latencies.len() % 1000 == 0 {
            eprintln!("bench-bridge: {} joined", latencies.len());
        }
    }
    let join_all = last_welcome - started;
    let at_full = bridge.memory().context("reading the bridge's memory")?;
    eprintln!(
        "bench-bridge: all {} joined in {:.2} s; bridge RSS {:.1} MiB (baseline {:.1} MiB)",
        args.clients,
        join_all.as_secs_f64(),
        at_full.rss_kib as f64 / 1024.0,
        baseline.rss_kib as f64 / 1024.0
    );

    // Phase 2: relay. Clients start their batches spread over the first tick.
    let window = Duration::from_secs(args.relay_secs);
    let start = Instant::now() + Duration::from_millis(200);
    let until = start + window;
    phase_tx.send_replace(Phase::Relay { start, until });
    tokio::time::sleep_until(start.into()).await;
    let cpu_before = bridge.cpu_time();
    let own_cpu_before = stats::cpu_time();
    let received_before = shared.received.load(Ordering::Relaxed);
    tokio::time::sleep_until(until.into()).await;
    let received_in_window = shared.received.load(Ordering::Relaxed) - received_before;
    let sent_in_window = shared.sent.load(Ordering::Relaxed);
    let cpu_after = bridge.cpu_time();
    let own_cpu_after = stats::cpu_time();
    // Let what is still queued arrive, so that a lost message shows as one.
    let drain_deadline = Instant::now() + DRAIN_TIMEOUT;
    loop {
        let done = shared.senders_done.load(Ordering::Relaxed) == args.clients as u64;
        let sent = shared.sent.load(Ordering::Relaxed);
        if done && shared.received.load(Ordering::Relaxed) >= sent {
            break;
        }
        if Instant::now() >= drain_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drained_after = until.elapsed();
    let after_relay = bridge.memory().context("reading the bridge's memory")?;

    // Phase 3: close every client, then stop the bridge.
    phase_tx.send_replace(Phase::Stop);
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => shared.anomaly(format!("{e:#}")),
            Err(e) => shared.anomaly(format!("client task failed: {e}")),
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_close = bridge.memory().context("reading the bridge's memory")?;
    let exit = bridge.stop().await?;

    let sent = shared.sent.load(Ordering::Relaxed);
    let received = shared.received.load(Ordering::Relaxed);
    let n = args.clients as f64;
    let (p50, p99) = median_p99(&mut latencies).context("no join latency")?;
    let mut figures = vec![
        Figure::new(PAIR, "join latency, p50", ms(p50), "ms"),
        Figure::new(PAIR, "join latency, p99", ms(p99), "ms"),
        Figure::new(
            PAIR,
            &format!("time to join {} clients", args.clients),
            join_all.as_secs_f64(),
            "s",
        ),
        Figure::new(
            PAIR,
            &format!(
                "relayed signaling messages/s (default limits, ≤ {}/s per client)",
                args.rate
            ),
            received_in_window as f64 / window.as_secs_f64(),
            "msg/s",
        ),
        Figure::new(
            PAIR,
            "signaling messages sent/s by clients",
            sent_in_window as f64 / window.as_secs_f64(),
            "msg/s",
        ),
    ];
    if let (Some(a), Some(b)) = (cpu_before, cpu_after) {
        figures.push(Figure::new(
            PAIR,
            "bridge CPU during relay (100 % = one core)",
            (b - a).as_secs_f64() / window.as_secs_f64() * 100.0,
            "%",
        ));
        figures.push(Figure::new(
            PAIR,
            "bridge CPU per relayed message",
            (b - a).as_secs_f64() * 1e6 / received_in_window.max(1) as f64,
            "µs",
        ));
    }
    // The clients share the machine with the bridge: if they use most of it, the relay
    // figure is a floor for the bridge, not its ceiling.
    if let (Some(a), Some(b)) = (own_cpu_before, own_cpu_after) {
        figures.push(Figure::new(
            PAIR,
            "clients' CPU during relay (this process, 100 % = one core)",
            (b - a).as_secs_f64() / window.as_secs_f64() * 100.0,
            "%",
        ));
    }
    figures.extend([
        Figure::new(PAIR, "bridge RSS, no client", mib(baseline.rss_kib), "MiB"),
        Figure::new(
            PAIR,
            &format!("bridge RSS, {} clients joined", args.clients),
            mib(at_full.rss_kib),
            "MiB",
        ),
        Figure::new(
            PAIR,
            "bridge RSS per client",
            at_full.rss_kib.saturating_sub(baseline.rss_kib) as f64 / n,
            "KiB",
        ),
        Figure::new(
            PAIR,
            "bridge RSS after relay",
            mib(after_relay.rss_kib),
            "MiB",
        ),
        Figure::new(
            PAIR,
            "bridge RSS after all clients left",
            mib(after_close.rss_kib),
            "MiB",
        ),
        Figure::new(PAIR, "bridge peak RSS", mib(after_close.hwm_kib), "MiB"),
    ]);
    println!("{}", stats::markdown(&figures));
    println!(
        "rooms: {} of sizes cycling 2..=50; relay window {} s, {} messages/s per client offered; \
         bridge limit per client: {BRIDGE_RATE_PER_SECOND}/s sustained, burst {BRIDGE_RATE_BURST} \
         (defaults, aggregate ceiling {} msg/s); sent {sent}, received {received}, all in {:.1} s",
        sizes.len(),
        args.relay_secs,
        args.rate,
        u64::from(BRIDGE_RATE_PER_SECOND) * args.clients as u64,
        drained_after.as_secs_f64() + window.as_secs_f64(),
    );
    if let Some(path) = &args.json {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        for figure in &figures {
            writeln!(file, "{}", serde_json::to_string(figure)?)?;
        }
    }

    let anomalies = shared.anomalies.load(Ordering::Relaxed);
    let first = shared
        .first_anomalies
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .join("\n  ");
    if anomalies > 0 {
        bail!("{anomalies} anomalies during the run; first ones:\n  {first}");
    }
    if received != sent {
        bail!(
            "{} of {sent} signal messages were not delivered within {} s",
            sent.saturating_sub(received),
            DRAIN_TIMEOUT.as_secs()
        );
    }
    if !exit.success() {
        bail!("the bridge exited with {exit} on SIGINT");
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Room sizes cycling 2, 3, …, 50 until `clients` are placed; a lone leftover client joins the
/// previous room (a room of one could not relay anything).
fn room_sizes(clients: usize) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut left = clients;
    for size in (2..=50).cycle() {
        if left == 0 {
            break;
        }
        if left == 1 {
            match sizes.last_mut() {
                Some(last) => *last += 1,
                None => sizes.push(1),
            }
            break;
        }
        let size = size.min(left);
        sizes.push(size);
        left -= size;
    }
    sizes
}

/// Raises this process's soft limit on open files to its hard limit (children inherit it);
/// fails if even the hard limit is below `need`.
fn raise_fd_limit(need: u64) -> anyhow::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error()).context("getrlimit(RLIMIT_NOFILE)");
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            ..limit
        };
        // SAFETY: setrlimit only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    let soft = limit.rlim_cur;
    if soft < need {
        bail!(
            "the open-file limit is {soft} (hard limit {}); {need} are needed (one socket per \
             client in this process and in the bridge, plus a margin): raise it (`ulimit -n`, as \
             root `ulimit -Hn`) or lower --clients",
            limit.rlim_max
        );
    }
    Ok(soft)
}

/// Resident memory of a process, from /proc/PID/status.
#[derive(Clone, Copy)]
struct Memory {
    rss_kib: u64,
    hwm_kib: u64,
}

/// `native-demo serve` on a free loopback port, as a child process.
struct BridgeProcess {
    child: tokio::process::Child,
    pid: u32,
    ws_url: String,
    /// Kept open so a late line from the bridge never meets a closed pipe.
    _stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl BridgeProcess {
    async fn start() -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("locating native-demo")?;
        let mut child = tokio::process::Command::new(exe)
            // No mDNS advertisement: the bridge alone is measured.
            .args(["serve", "--addr", "127.0.0.1:0", "--no-mdns"])
            // Warnings only: an info line per join would cost the bridge more than the joins.
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting `native-demo serve`")?;
        let pid = child.id().context("bridge process has no pid")?;
        let stdout = child.stdout.take().context("bridge stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        // `serve` prints `signaling: ws://ADDR/ws` once it is listening.
        let ws_url = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix("signaling: ") {
                    return Ok(url.trim().to_owned());
                }
            }
            bail!("the bridge exited before printing its address")
        })
        .await
        .context("the bridge did not print its address within 10 s")??;
        eprintln!("bench-bridge: bridge pid {pid} at {ws_url}");
        Ok(BridgeProcess {
            child,
            pid,
            ws_url,
            _stdout: lines,
        })
    }

    fn memory(&self) -> anyhow::Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .with_context(|| format!("no {name} in /proc/{}/status", self.pid))?;
            Ok(line
                .split_whitespace()
                .nth(1)
                .context("malformed status line")?
                .parse()?)
        };
        Ok(Memory {
            rss_kib: field("VmRSS:")?,
            hwm_kib: field("VmHWM:")?,
        })
    }

    /// User + system CPU time of the bridge so far (clock ticks of 1/100 s).
    fn cpu_time(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some(Duration::from_millis((utime + stime) * 10))
    }

    /// SIGINT (the bridge's Ctrl-C shutdown), then SIGKILL if it has not exited in time.
    async fn stop(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let pid = libc::pid_t::try_from(self.pid)?;
        // SAFETY: kill(2) with our own child's pid; no memory is involved.
        unsafe { libc::kill(pid, libc::SIGINT) };
        match tokio::time::timeout(CLOSE_TIMEOUT, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => {
                self.child.kill().await?;
                bail!(
                    "the bridge did not exit within {} s of SIGINT; killed",
                    CLOSE_TIMEOUT.as_secs()
                )
            }
        }
    }
}

/// The next protocol message from the bridge, skipping pings; an `error` is an error.
async fn next_message(ws: &mut Ws) -> anyhow::Result<ServerMessage> {
    loop {
        let message = tokio::time::timeout(JOIN_TIMEOUT, ws.next())
            .await
            .with_context(|| format!("no message within {} s", JOIN_TIMEOUT.as_secs()))?;
        match message {
            Some(Ok(Message::Text(text))) => {
                return match ServerMessage::parse(text.as_str())? {
                    ServerMessage::Error { code, message } => {
                        bail!("bridge error {code:?}: {message}")
                    }
                    other => Ok(other),
                }
            }
            // tungstenite answers pings by itself.
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(other)) => bail!("unexpected frame {other:?}"),
            Some(Err(e)) => return Err(e).context("WebSocket read"),
            None => bail!("the bridge closed the connection"),
        }
    }
}

/// One WebSocket client of the benchmark.
struct Client {
    index: usize,
    url: String,
    config: WebSocketConfig,
    room: String,
    room_size: usize,
    rate: u32,
    shared: Arc<Shared>,
    phase: watch::Receiver<Phase>,
}

impl Client {
    /// Joins (reporting on `joined`), relays when told, closes when told.
    async fn run(
        mut self,
        permits: Arc<Semaphore>,
        joined: mpsc::UnboundedSender<anyhow::Result<Joined>>,
    ) -> anyhow::Result<()> {
        let (ws, peers) = match self.join(&permits, &joined).await {
            Ok(ok) => ok,
            Err(e) => {
                let e = e.context(format!("client {} (room {})", self.index, self.room));
                let _ = joined.send(Err(e));
                return Ok(());
            }
        };
        drop(joined);
        let mut ws = ws;
        // Keep reading while waiting (tungstenite answers the bridge's pings as it reads).
        let (start, until) = loop {
            tokio::select! {
                changed = self.phase.changed() => {
                    if changed.is_err() { return Ok(()); }
                    match *self.phase.borrow() {
                        Phase::Joining => continue,
                        Phase::Relay { start, until } => break (start, until),
                        Phase::Stop => return Ok(()),
                    }
                }
                message = ws.next() => self.on_frame(message)?,
            }
        };
        let (sink, stream) = ws.split();
        let (sink, stream) = tokio::join!(
            self.send_signals(sink, &peers, start, until),
            self.count_signals(stream)
        );
        let mut ws = sink?
            .reunite(stream?)
            .context("reuniting the WebSocket halves")?;
        // Closing handshake: send our close, read until the bridge's reply ends the stream.
        let close = async {
            ws.close(None).await?;
            while let Some(message) = ws.next().await {
                message?;
            }
            anyhow::Ok(())
        };
        tokio::time::timeout(CLOSE_TIMEOUT, close)
            .await
            .context("closing handshake timed out")?
            .context("closing")
    }

    /// Connects, joins, waits for the welcome (reporting the latency) and for every peer of
    /// the room to be known (`welcome` lists those before us, `peer-joined` those after).
    async fn join(
        &mut self,
        permits: &Semaphore,
        joined: &mpsc::UnboundedSender<anyhow::Result<Joined>>,
    ) -> anyhow::Result<(Ws, Vec<PeerId>)> {
        let permit = permits.acquire().await?;
        let (mut ws, _) = tokio::time::timeout(
            JOIN_TIMEOUT,
            tokio_tungstenite::connect_async_with_config(&self.url, Some(self.config), true),
        )
        .await
        .context("connect timed out")?
        .context("connect")?;
        let join = ClientMessage::Join {
            v: PROTOCOL_VERSION,
            room: self.room.clone(),
        }
        .to_json();
        let sent_at = Instant::now();
        ws.send(Message::Text(join.into()))
            .await
            .context("sending join")?;
        let mut peers = loop {
            if let ServerMessage::Welcome { peers, .. } = next_message(&mut ws).await? {
                break peers;
            }
        };
        let welcomed_at = Instant::now();
        drop(permit);
        while peers.len() + 1 < self.room_size {
            match next_message(&mut ws)
                .await
                .context("waiting for the room to fill")?
            {
                ServerMessage::PeerJoined { peer_id } => peers.push(peer_id),
                other => bail!("unexpected message while the room fills: {other:?}"),
            }
        }
        let _ = joined.send(Ok(Joined {
            latency: welcomed_at - sent_at,
            welcomed_at,
        }));
        Ok((ws, peers))
    }

    /// A frame after joining: counts relayed signals (a peer may start a moment before this
    /// client sees the relay phase begin); pings are fine, anything else is a problem.
    fn on_frame(
        &self,
        message: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> anyhow::Result<()> {
        match message {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(()),
            // The bridge writes the tag first: no need to parse the whole message.
            Some(Ok(Message::Text(text))) if text.as_str().starts_with(r#"{"type":"signal""#) => {
                self.shared.received.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Some(Ok(Message::Text(text))) => {
                self.shared
                    .anomaly(format!("client {}: unexpected {text}", self.index));
                Ok(())
            }
            Some(Ok(other)) => bail!("client {}: unexpected frame {other:?}", self.index),
            Some(Err(e)) => Err(e).context(format!("client {}: WebSocket read", self.index)),
            None => bail!("client {}: the bridge closed the connection", self.index),
        }
    }

    /// Sends `rate` candidate signals per second, round-robin over `peers`, in batches of
    /// `rate / TICKS_PER_SECOND`, from `start` (plus a per-client offset that spreads the
    /// batches over one tick) until `until`. A batch due while [`IN_FLIGHT_MAX`] messages are
    /// in flight is skipped, not postponed. A batch that finds the socket blocked goes out late
    /// and the next ones catch up, but the cumulative count never exceeds the schedule, so the
    /// bridge's per-connection token bucket (burst 2 048, then 100/s) is never exceeded.
    async fn send_signals(
        &self,
        mut sink: futures::stream::SplitSink<Ws, Message>,
        peers: &[PeerId],
        start: Instant,
        until: Instant,
    ) -> anyhow::Result<futures::stream::SplitSink<Ws, Message>> {
        // Serialized once per peer: this process should spend its CPU on sockets, not JSON.
        let texts: Vec<Utf8Bytes> = peers
            .iter()
            .map(|to| {
                ClientMessage::Signal {
                    to: to.clone(),
                    signal: Signal::Candidate {
                        candidate: "candidate:1 1 udp 2122260223 198.18.0.1 50000 typ host".into(),
                        sdp_mid: Some("0".into()),
                        sdp_m_line_index: Some(0),
                    },
                }
                .to_json()
                .into()
            })
            .collect();
        let tick = Duration::from_secs(1) / TICKS_PER_SECOND;
        let offset = tick * (self.index % 100) as u32 / 100;
        let mut ticks = tokio::time::interval_at((start + offset).into(), tick);
        let mut next = 0usize;
        let mut k: u64 = 0;
        let result = async {
            loop {
                if ticks.tick().await.into_std() >= until {
                    break;
                }
                // Messages due by the end of tick k, minus those sent: handles rates that are
                // not a multiple of TICKS_PER_SECOND.
                let due = (k + 1) * u64::from(self.rate) / u64::from(TICKS_PER_SECOND)
                    - k * u64::from(self.rate) / u64::from(TICKS_PER_SECOND);
                k += 1;
                // `sent` is counted after the flush, so `received` may be ahead of it.
                let in_flight = self
                    .shared
                    .sent
                    .load(Ordering::Relaxed)
                    .saturating_sub(self.shared.received.load(Ordering::Relaxed));
                if in_flight >= IN_FLIGHT_MAX {
                    continue;
                }
                for _ in 0..due {
                    sink.feed(Message::Text(texts[next % texts.len()].clone()))
                        .await?;
                    next += 1;
                }
                sink.flush().await?;
                self.shared.sent.fetch_add(due, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }
        .await;
        self.shared.senders_done.fetch_add(1, Ordering::Relaxed);
        result.with_context(|| format!("client {}: sending", self.index))?;
        Ok(sink)
    }

    /// Counts relayed signals until the phase is `Stop`.
    async fn count_signals(
        &self,
        mut stream: futures::stream::SplitStream<Ws>,
    ) -> anyhow::Result<futures::stream::SplitStream<Ws>> {
        let mut phase = self.phase.clone();
        loop {
            tokio::select! {
                changed = phase.changed() => {
                    if changed.is_err() || *phase.borrow() == Phase::Stop {
                        return Ok(stream);
                    }
                }
                message = stream.next() => {
                    // Clients that saw `Stop` first are already closing: their peers hear
                    // `peer-left`, which is expected by then.
                    if *phase.borrow() == Phase::Stop {
                        return Ok(stream);
                    }
                    self.on_frame(message)?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::room_sizes;

    #[test]
    fn rooms_cycle_from_2_to_50_and_hold_every_client() {
        let sizes = room_sizes(10_000);
        assert_eq!(sizes.iter().sum::<usize>(), 10_000);
        assert_eq!(&sizes[..3], &[2, 3, 4]);
        assert_eq!(sizes[48], 50);
        assert_eq!(sizes[49], 2);
        assert_eq!(sizes.len(), 389, "the count quoted in the module doc");
        assert!(sizes.iter().all(|&s| (2..=51).contains(&s)));
        assert_eq!(
            room_sizes(3),
            vec![3],
            "a lone leftover joins the room before"
        );
        assert_eq!(room_sizes(6), vec![2, 4]);
    }
}
