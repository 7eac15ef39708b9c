//! `native-demo bench`: measures one pair of native endpoints in this process and prints a
//! markdown table, plus JSON lines with `--json`. The whole suite (all pairs, including
//! node-datachannel and Chromium) is run by `npm run bench`, which starts one process per pair
//! so peak RSS and CPU time belong to that pair alone.

pub mod bridge_scale;
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
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
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
