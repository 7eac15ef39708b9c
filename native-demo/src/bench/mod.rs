//! `native-demo bench`: measures one pair of native endpoints in this process and prints a
//! markdown table, plus JSON lines with `--json`. The whole suite (all pairs, including
//! node-datachannel and Chromium) is run by `npm run bench`, which starts one process per pair
//! so peak RSS and CPU time belong to that pair alone.

pub mod bridge_scale;
mod loss;
mod miaou;
pub mod peer;
mod raw;
pub mod stats;
mod workloads;

use clap::{Args, ValueEnum};
use stats::{median_p99, peak_rss_mib, Figure};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Copy, ValueEnum)]
pub enum Pair {
    /// miaou native <-> miaou native through an in-process bridge.
    Miaou,
    /// raw webrtc-rs <-> raw webrtc-rs, no codec, same crate version and ICE settings.
    Raw,
}

#[derive(Args)]
pub struct BenchArgs {
    /// Which pair to measure.
    #[arg(long, value_enum, default_value = "miaou")]
    pair: Pair,
    /// Bytes moved per throughput run, MiB (at least 1).
    #[arg(long, default_value_t = 64, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    mib: usize,
    /// Connections opened to measure time-to-open (median reported).
    #[arg(long, default_value_t = 20)]
    opens: usize,
    /// Largest frame miaou puts on the data channel, bytes (the remote's limit still applies).
    #[arg(long, default_value_t = miaou_transport::DEFAULT_MAX_FRAME_SIZE)]
    max_frame_size: usize,
    /// Also append one JSON object per figure to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Run the loss matrix instead of the workloads: UDP drop levels, per mille, comma-separated
    /// (e.g. 0,10,20,50). Needs a private network namespace (tests/scripts/in-netns.sh).
    #[arg(long, value_delimiter = ',')]
    loss: Vec<u32>,
    /// Loss matrix: MiB per transfer below 5 % loss (half from 5 % up).
    #[arg(long, default_value_t = 16, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    loss_mib: usize,
    /// Loss matrix: a transfer not finished after this many seconds is reported as DNF.
    #[arg(long, default_value_t = 60)]
    loss_cap_s: u64,
    /// Loss matrix: the loss harness script.
    #[arg(long, default_value = "tests/scripts/netem.sh")]
    netem: PathBuf,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if !args.loss.is_empty() {
        return loss_matrix(args).await;
    }
    let total = args.mib * 1024 * 1024;
    let figures = match args.pair {
        Pair::Miaou => {
            let bridge = miaou::start_bridge().await?;
            let mut opens = Vec::new();
            for i in 0..args.opens {
                let (link, took) =
                    miaou::MiaouLink::connect(&bridge, &format!("open-{i}"), args.max_frame_size)
                        .await?;
                opens.push(took);
                link.close().await;
            }
            let (link, _) =
                miaou::MiaouLink::connect(&bridge, "bench", args.max_frame_size).await?;
            let mut figures =
                workloads::run_all("miaou native ↔ miaou native", &link, total).await?;
            link.close().await;
            finish("miaou native ↔ miaou native", &mut figures, &mut opens);
            figures
        }
        Pair::Raw => {
            let mut opens = Vec::new();
            for _ in 0..args.opens {
                let (link, took) = raw::RawLink::connect().await?;
                opens.push(took);
                link.close().await;
            }
            let (link, _) = raw::RawLink::connect().await?;
            let mut figures =
                workloads::run_all("raw webrtc-rs ↔ raw webrtc-rs", &link, total).await?;
            link.close().await;
            finish("raw webrtc-rs ↔ raw webrtc-rs", &mut figures, &mut opens);
            figures
        }
    };
    println!("{}", stats::markdown(&figures));
    if let Some(path) = args.json {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        for figure in &figures {
            writeln!(file, "{}", serde_json::to_string(figure)?)?;
        }
    }
    Ok(())
}

async fn loss_matrix(args: BenchArgs) -> anyhow::Result<()> {
    let cap = Duration::from_secs(args.loss_cap_s);
    let (levels, netem, mib) = (&args.loss, &args.netem, args.loss_mib);
    let cells = match args.pair {
        Pair::Miaou => {
            let bridge = miaou::start_bridge().await?;
            let connect = async |permille: u32| {
                let room = format!("loss-{permille}");
                anyhow::Ok(
                    miaou::MiaouLink::connect(&bridge, &room, args.max_frame_size)
                        .await?
                        .0,
                )
            };
            let pair = "miaou native ↔ miaou native";
            loss::matrix(
                pair,
                levels,
                netem,
                mib,
                cap,
                connect,
                miaou::MiaouLink::close,
            )
            .await?
        }
        Pair::Raw => {
            let connect = async |_: u32| anyhow::Ok(raw::RawLink::connect().await?.0);
            let pair = "raw webrtc-rs ↔ raw webrtc-rs";
            loss::matrix(pair, levels, netem, mib, cap, connect, raw::RawLink::close).await?
        }
    };
    if let Some(path) = &args.json {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        for cell in &cells {
            writeln!(file, "{}", serde_json::to_string(cell)?)?;
        }
    }
    Ok(())
}

fn finish(pair: &str, figures: &mut Vec<Figure>, opens: &mut [Duration]) {
    if let Some((median, _)) = median_p99(opens) {
        figures.push(Figure::new(
            pair,
            "time to open channel, median",
            median.as_secs_f64() * 1e3,
            "ms",
        ));
    }
    if let Some(rss) = peak_rss_mib() {
        figures.push(Figure::new(
            pair,
            "peak RSS (both ends, one process)",
            rss,
            "MiB",
        ));
    }
}
