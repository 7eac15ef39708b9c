#![cfg(not(target_arch = "wasm32"))]
//! Deterministic simulation of two `ArqConnection`s over a fake link with a manual clock
//! (µs): one-way delay, a bandwidth-limited drop-tail queue, random loss, reordering and
//! duplication, all from a seeded xorshift PRNG. Checks that every frame arrives exactly once,
//! in order and intact, that the receive buffer stays within the window, that the transfer
//! makes progress (completion time and the longest pause between deliveries, in simulated
//! time), and that NewReno reacts to a bottleneck. Figures are printed (`--nocapture`).

use miaou_transport::arq::{ArqConfig, ArqConnection};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// xorshift64* — tiny, seeded, good enough for link decisions.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// True with probability `per_million` / 10^6.
    fn chance(&mut self, per_million: u64) -> bool {
        self.below(1_000_000) < per_million
    }
}

#[derive(Clone, Copy, Debug)]
struct LinkCfg {
    delay_us: u64,
    bytes_per_s: u64,
    queue_bytes: u64,
    loss_ppm: u64,
    reorder_ppm: u64,
    reorder_extra_us: u64,
    dup_ppm: u64,
}

impl LinkCfg {
    /// 20 ms RTT, 10 MB/s each way, a 256 KB queue, 1 % reordered by up to 300 µs (≤ 2
    /// datagram times: below the packet threshold), 0.5 % duplicated.
    fn lan(loss_ppm: u64) -> Self {
        Self::with_rtt(loss_ppm, 20_000)
    }

    /// Like [`lan`](Self::lan) with another round-trip time, µs.
    fn with_rtt(loss_ppm: u64, rtt_us: u64) -> Self {
        LinkCfg {
            delay_us: rtt_us / 2,
            bytes_per_s: 10_000_000,
            queue_bytes: 256_000,
            loss_ppm,
            reorder_ppm: 10_000,
            reorder_extra_us: 300,
            dup_ppm: 5_000,
        }
    }
}

/// One direction of the link.
struct Link {
    cfg: LinkCfg,
    busy_until: u64,
    in_flight: BinaryHeap<Reverse<(u64, u64, Vec<u8>)>>,
    seq: u64,
    queue_drops: u64,
    /// When each queue drop happened, µs.
    drop_times: Vec<u64>,
    max_backlog: u64,
}

impl Link {
    fn new(cfg: LinkCfg) -> Self {
        Link {
            cfg,
            busy_until: 0,
            in_flight: BinaryHeap::new(),
            seq: 0,
            queue_drops: 0,
            drop_times: Vec::new(),
            max_backlog: 0,
        }
    }

    fn send(&mut self, now: u64, d: &[u8], rng: &mut Rng) {
        let bw = self.cfg.bytes_per_s;
        let backlog = self.busy_until.saturating_sub(now) * bw / 1_000_000;
        if backlog + d.len() as u64 > self.cfg.queue_bytes {
            self.queue_drops += 1;
            self.drop_times.push(now);
            return;
        }
        self.busy_until = self.busy_until.max(now) + (d.len() as u64 * 1_000_000).div_ceil(bw);
        self.max_backlog = self.max_backlog.max(backlog + d.len() as u64);
        if rng.chance(self.cfg.loss_ppm) {
            return; // lost on the wire, after using the bottleneck
        }
        let mut at = self.busy_until + self.cfg.delay_us;
        if rng.chance(self.cfg.reorder_ppm) {
            at += 1 + rng.below(self.cfg.reorder_extra_us);
        }
        self.seq += 1;
        self.in_flight.push(Reverse((at, self.seq, d.to_vec())));
        if rng.chance(self.cfg.dup_ppm) {
            self.seq += 1;
            let later = at + rng.below(2_000);
            self.in_flight.push(Reverse((later, self.seq, d.to_vec())));
        }
    }

    fn next_time(&self) -> Option<u64> {
        self.in_flight.peek().map(|Reverse((t, _, _))| *t)
    }

    fn pop_due(&mut self, now: u64) -> Option<Vec<u8>> {
        if self.next_time()? <= now {
            self.in_flight.pop().map(|Reverse((_, _, d))| d)
        } else {
            None
        }
    }
}

/// Frame `i` of direction `dir`: varied sizes (1 B .. 16 KiB), content derived from both.
fn frame(dir: u64, i: u64) -> Vec<u8> {
    let mut r = Rng::new(dir << 32 | i);
    let len = match r.below(8) {
        0..=2 => 1 + r.below(64),
        3..=5 => 64 + r.below(1_500),
        6 => 1_500 + r.below(4_000),
        _ => 4_000 + r.below(12_385),
    } as usize;
    let mut f: Vec<u8> = (0..len)
        .map(|j| (r.0 as usize).wrapping_add(j * 31) as u8)
        .collect();
    for (b, v) in f.iter_mut().zip(i.to_le_bytes()) {
        *b = v;
    }
    f
}

/// One side: its connection, what it sends, what it has received.
struct Peer {
    conn: ArqConnection,
    dir: u64,
    frames_total: u64,
    written: u64,
    received: u64,
    received_bytes: u64,
    last_delivery: u64,
    max_gap: u64,
    max_recv_buffered: u64,
    /// The application reads only every `read_every_us` (0 = always).
    read_every_us: u64,
    next_read: u64,
}

struct Outcome {
    done_us: u64,
    max_gap_us: u64,
    bytes: u64,
    lost: u64,
    ptos: u64,
    max_cwnd: u64,
    reductions: Vec<(u64, u64, u64)>,
    queue_drops: u64,
    drop_times: Vec<u64>,
    max_backlog: u64,
    datagrams: u64,
}

struct Scenario {
    link: LinkCfg,
    config: ArqConfig,
    bytes_each_way: u64,
    both_ways: bool,
    read_every_us: u64,
    seed: u64,
    limit_us: u64,
}

fn frames_for(dir: u64, bytes: u64) -> u64 {
    let (mut n, mut sum) = (0u64, 0u64);
    while sum < bytes {
        sum += frame(dir, n).len() as u64;
        n += 1;
    }
    n
}

fn run(s: &Scenario) -> Outcome {
    let mut rng = Rng::new(s.seed);
    let mut links = [Link::new(s.link), Link::new(s.link)];
    let mk = |dir: u64, total: u64| Peer {
        conn: ArqConnection::new(s.config, 0),
        dir,
        frames_total: total,
        written: 0,
        received: 0,
        received_bytes: 0,
        last_delivery: 0,
        max_gap: 0,
        max_recv_buffered: 0,
        read_every_us: s.read_every_us,
        next_read: 0,
    };
    let n0 = frames_for(0, s.bytes_each_way);
    let n1 = if s.both_ways {
        frames_for(1, s.bytes_each_way)
    } else {
        0
    };
    let mut peers = [mk(0, n0), mk(1, n1)];
    let (mut reductions, mut max_cwnd, mut last_cwnd) = (Vec::new(), 0u64, 0u64);
    let mut now = 0u64;
    let mut stuck = 0u32;
    loop {
        // Deliveries: link k carries peer k's datagrams to peer 1 - k.
        for k in 0..2 {
            while let Some(d) = links[k].pop_due(now) {
                let p = &mut peers[1 - k];
                p.conn.handle_datagram(now, &d).expect("honest peer");
                let buffered = p.conn.receive_buffered_bytes();
                assert!(
                    buffered <= p.conn.receive_window(),
                    "{buffered} over the window"
                );
                p.max_recv_buffered = p.max_recv_buffered.max(buffered);
            }
        }
        for (k, p) in peers.iter_mut().enumerate() {
            if p.conn.poll_timeout().is_some_and(|t| t <= now) {
                p.conn.handle_timeout(now);
            }
            // The application reads (the expected frames are the peer's direction).
            if now >= p.next_read {
                p.next_read = now + p.read_every_us;
                while let Some(f) = p.conn.poll_frame() {
                    let f = f.expect("frame");
                    let want = frame(1 - p.dir, p.received);
                    assert!(
                        f[..] == want[..],
                        "dir {} frame {} differs",
                        1 - p.dir,
                        p.received
                    );
                    p.received += 1;
                    p.received_bytes += f.len() as u64;
                    p.max_gap = p.max_gap.max(now - p.last_delivery);
                    p.last_delivery = now;
                }
            }
            while p.written < p.frames_total && p.conn.buffered_bytes() < 1 << 20 {
                p.conn.write_frame(&frame(p.dir, p.written)).expect("write");
                p.written += 1;
            }
            while let Some(d) = p.conn.poll_transmit(now) {
                assert!(d.len() <= s.config.max_datagram);
                links[k].send(now, &d, &mut rng);
            }
        }
        let cwnd = peers[0].conn.stats().cwnd;
        if cwnd < last_cwnd {
            reductions.push((now, last_cwnd, cwnd));
        }
        last_cwnd = cwnd;
        max_cwnd = max_cwnd.max(cwnd);
        let done = peers[1].received == n0
            && peers[0].received == n1
            && peers
                .iter()
                .all(|p| p.conn.is_idle() && p.written == p.frames_total);
        if done {
            break;
        }
        assert!(
            now <= s.limit_us,
            "seed {}: no completion by {} µs",
            s.seed,
            s.limit_us
        );
        let next = [links[0].next_time(), links[1].next_time()]
            .into_iter()
            .chain(peers.iter().map(|p| p.conn.poll_timeout()))
            .chain(
                peers
                    .iter()
                    .filter(|p| p.read_every_us > 0)
                    .map(|p| Some(p.next_read)),
            )
            .flatten()
            .min()
            .expect("something pending while not done");
        if next <= now {
            stuck += 1;
            assert!(stuck < 10_000, "seed {}: livelock at {now} µs", s.seed);
        } else {
            stuck = 0;
            now = next;
        }
    }
    for p in &peers {
        assert!(p.max_recv_buffered <= p.conn.receive_window());
    }
    let a = peers[0].conn.stats();
    Outcome {
        done_us: now,
        max_gap_us: peers[1]
            .max_gap
            .max(if s.both_ways { peers[0].max_gap } else { 0 }),
        bytes: peers[1].received_bytes,
        lost: a.packets_lost,
        ptos: a.ptos,
        max_cwnd,
        reductions,
        queue_drops: links[0].queue_drops,
        drop_times: links[0].drop_times.clone(),
        max_backlog: links[0].max_backlog,
        datagrams: a.datagrams_sent,
    }
}

fn config() -> ArqConfig {
    ArqConfig {
        max_frame: 64 * 1024,
        receive_window: 4 * 1024 * 1024,
        ..ArqConfig::default()
    }
}

/// Runs `seeds` seeds at `loss_ppm`, asserting completion within `limit_s` and the longest
/// delivery gap below `max_gap_ms` (when given); prints figures.
fn sweep(loss_ppm: u64, bytes: u64, seeds: u64, limit_s: f64, max_gap_ms: Option<u64>) {
    sweep_rtt(20_000, loss_ppm, bytes, seeds, limit_s, max_gap_ms)
}

fn sweep_rtt(
    rtt_us: u64,
    loss_ppm: u64,
    bytes: u64,
    seeds: u64,
    limit_s: f64,
    max_gap_ms: Option<u64>,
) {
    let mut worst_done = 0u64;
    let mut worst_gap = 0u64;
    let mut sum_rate = 0.0;
    for seed in 1..=seeds {
        let o = run(&Scenario {
            link: LinkCfg::with_rtt(loss_ppm, rtt_us),
            config: config(),
            bytes_each_way: bytes,
            both_ways: true,
            read_every_us: 0,
            seed,
            limit_us: (limit_s * 1e6) as u64,
        });
        assert!(o.bytes >= bytes);
        if let Some(g) = max_gap_ms {
            assert!(
                o.max_gap_us < g * 1_000,
                "loss {loss_ppm} ppm seed {seed}: {} ms without a delivery",
                o.max_gap_us / 1_000
            );
        }
        worst_done = worst_done.max(o.done_us);
        worst_gap = worst_gap.max(o.max_gap_us);
        sum_rate += o.bytes as f64 / (o.done_us as f64 / 1e6) / 1e6;
        if seed == 1 {
            println!(
                "RTT {} ms, loss {:.1} %: seed 1: {} B each way in {:.3} s sim ({:.2} MB/s each way), \
                 longest gap {:.1} ms, A lost {} packets, {} PTOs",
                rtt_us / 1_000,
                loss_ppm as f64 / 1e4,
                o.bytes,
                o.done_us as f64 / 1e6,
                o.bytes as f64 / (o.done_us as f64 / 1e6) / 1e6,
                o.max_gap_us as f64 / 1e3,
                o.lost,
                o.ptos
            );
        }
    }
    println!(
        "RTT {} ms, loss {:.1} %, {} seeds × {} B both ways: mean {:.2} MB/s each way, slowest {:.3} s \
         sim, longest gap {:.1} ms",
        rtt_us / 1_000,
        loss_ppm as f64 / 1e4,
        seeds,
        bytes,
        sum_rate / seeds as f64,
        worst_done as f64 / 1e6,
        worst_gap as f64 / 1e3
    );
}

const MIB: u64 = 1024 * 1024;

// NewReno's throughput under random loss p is bounded by about
// max_datagram / RTT × 1.22 / sqrt(p) (Mathis et al. 1997): at 20 ms RTT, 1 % loss ≈ 0.7 MB/s
// and 5 % ≈ 0.3 MB/s, whatever the link's bandwidth. The bounds below follow from it; the
// "no stall" property is the longest pause between deliveries.

#[test]
fn no_loss_4mib_both_ways() {
    sweep(0, 4 * MIB, 1, 3.0, Some(300));
}

/// LAN-like 2 ms RTT: at 1 % loss 4 MiB each way completes in well under 3 s.
#[test]
fn one_percent_loss_4mib_both_ways_lan() {
    sweep_rtt(2_000, 10_000, 4 * MIB, 2, 3.0, Some(300));
}

#[test]
fn one_percent_loss_4mib_both_ways_20ms() {
    sweep(10_000, 4 * MIB, 1, 15.0, Some(300));
}

#[test]
fn five_percent_loss_4mib_both_ways_lan() {
    sweep_rtt(2_000, 50_000, 4 * MIB, 1, 10.0, Some(300));
}

#[test]
fn five_percent_loss_1mib_both_ways_20ms() {
    sweep(50_000, MIB, 1, 15.0, Some(1_000));
}

#[test]
fn twenty_percent_loss_completes() {
    sweep(200_000, 256 * 1024, 5, 60.0, None);
}

/// 50 seeds per loss rate, 64 KiB each way (mostly slow start: the seeds vary where losses
/// fall, including the first flight and tail packets).
#[test]
fn many_seeds_no_loss() {
    sweep(0, 64 * 1024, 50, 30.0, Some(300));
}

#[test]
fn many_seeds_one_percent() {
    sweep(10_000, 64 * 1024, 50, 30.0, Some(300));
}

#[test]
fn many_seeds_five_percent() {
    sweep(50_000, 64 * 1024, 50, 30.0, Some(1_000));
}

#[test]
fn many_seeds_twenty_percent() {
    sweep(200_000, 32 * 1024, 50, 60.0, None);
}

/// A reader that reads only every 50 ms with a small window: the sender must stop at the
/// window (never exceed it) and resume on window updates, also when they are lost.
#[test]
fn slow_reader_small_window() {
    for (loss, seeds) in [(0, 1), (50_000, 5)] {
        for seed in 1..=seeds {
            let o = run(&Scenario {
                link: LinkCfg::lan(loss),
                config: ArqConfig {
                    max_frame: 16 * 1024,
                    receive_window: 64 * 1024,
                    ..ArqConfig::default()
                },
                bytes_each_way: MIB,
                both_ways: true,
                read_every_us: 50_000,
                seed,
                limit_us: 60_000_000,
            });
            assert!(o.bytes >= MIB);
            if seed == 1 {
                println!(
                    "slow reader (every 50 ms), 64 KiB window, {} % loss: 1 MiB each way in \
                     {:.3} s sim, {} PTOs",
                    loss / 10_000,
                    o.done_us as f64 / 1e6,
                    o.ptos
                );
            }
        }
    }
}

/// Heavy reordering (10 % of datagrams delayed by up to 15 ms, far past the packet threshold)
/// and 5 % duplication: spurious losses cost throughput, never correctness.
#[test]
fn heavy_reordering_and_duplication() {
    for seed in 1..=5 {
        let link = LinkCfg {
            reorder_ppm: 100_000,
            reorder_extra_us: 15_000,
            dup_ppm: 50_000,
            ..LinkCfg::lan(10_000)
        };
        let o = run(&Scenario {
            link,
            config: config(),
            bytes_each_way: 256 * 1024,
            both_ways: true,
            read_every_us: 0,
            seed,
            limit_us: 30_000_000,
        });
        assert!(o.bytes >= 256 * 1024);
        if seed == 1 {
            println!(
                "10 % reordered by ≤ 15 ms, 5 % duplicated, 1 % lost: 256 KiB each way in \
                 {:.3} s sim, {} packets declared lost",
                o.done_us as f64 / 1e6,
                o.lost
            );
        }
    }
}

/// A 10 MB/s bottleneck with a one-BDP drop-tail queue and no random loss: the queue's drops
/// must halve cwnd (once per round trip at most), the link must stay ≥ 80 % busy, and the
/// drops and the window must stay bounded.
#[test]
fn newreno_on_a_bottleneck() {
    let link = LinkCfg {
        delay_us: 10_000,
        bytes_per_s: 10_000_000,
        queue_bytes: 200_000,
        loss_ppm: 0,
        reorder_ppm: 0,
        reorder_extra_us: 0,
        dup_ppm: 0,
    };
    let bytes = 8 * MIB;
    let o = run(&Scenario {
        link,
        config: config(),
        bytes_each_way: bytes,
        both_ways: false,
        read_every_us: 0,
        seed: 7,
        limit_us: 30_000_000,
    });
    let rate = o.bytes as f64 / (o.done_us as f64 / 1e6);
    println!(
        "bottleneck 10 MB/s, 20 ms RTT, 200 KB queue: {:.2} MB/s ({:.0} %), {} cwnd reductions, \
         max cwnd {} B, {} queue drops of {} datagrams, max backlog {} B",
        rate / 1e6,
        rate / 1e5,
        o.reductions.len(),
        o.max_cwnd,
        o.queue_drops,
        o.datagrams,
        o.max_backlog
    );
    assert!(
        o.queue_drops > 0,
        "the queue never overflowed: test is not testing"
    );
    assert!(!o.reductions.is_empty() && o.lost > 0);
    let md = config().max_datagram as u64;
    for w in o.reductions.windows(2) {
        assert!(
            w[1].0 - w[0].0 >= 20_000,
            "two reductions within one RTT: {w:?}"
        );
    }
    for &(t, old, new) in &o.reductions {
        let half = (old / 2).max(2 * md);
        assert!(
            new + md >= half && new <= half + old / 16 + 2 * md,
            "at {t} µs cwnd {old} → {new}: not a halving"
        );
    }
    assert!(
        rate >= 0.8 * 10_000_000.0,
        "throughput {rate:.0} B/s < 80 % of the bottleneck"
    );
    assert!(o.max_backlog <= link.queue_bytes);
    // Slow start overshoots once (up to twice the path's capacity, by design); after the
    // first reduction has taken effect (one RTT plus the queue, < 100 ms), drops must be rare.
    let settled = o.reductions[0].0 + 100_000;
    let late_drops = o.drop_times.iter().filter(|&&t| t > settled).count() as u64;
    println!("queue drops after slow start: {late_drops}");
    assert!(
        late_drops * 100 <= o.datagrams,
        "{late_drops} drops after slow start of {} datagrams: cwnd does not back off",
        o.datagrams
    );
    assert!(o.queue_drops * 100 <= o.datagrams * 10);
    assert!(
        o.max_cwnd <= 4 * (200_000 + 200_000),
        "cwnd grew to {}",
        o.max_cwnd
    );
}
