//! Like-for-like measurement of raw webrtc-rs 0.17.2 and 0.21.x data channels: one pair of peer
//! connections in one process, loopback only, the same workloads and settings on both (see
//! README.md here and docs/native-backend.md).

pub mod arq_link;
pub mod stats;
pub mod v017;
pub mod v021;
pub mod workloads;

use std::io::Write;
use std::path::PathBuf;
use workloads::{Link, Plan};

/// Parses the arguments (see `USAGE`), runs the workloads on `L` in a multi-thread tokio
/// runtime (tokio's default: one worker per core, as native-demo), prints JSON lines on stdout
/// and appends them to `--json FILE` if given.
pub fn main<L: Link>(stack: &str) -> anyhow::Result<()> {
    const USAGE: &str = "[--opens N] [--mib N] [--json FILE] [--sizes B,B,..] [--no-small] \
        [--cap SECONDS] [--tag TEXT]";
    let mut opens = 10usize;
    let mut mib = 64usize;
    let mut json: Option<PathBuf> = None;
    let mut sizes = vec![16 * 1024, 64_000];
    let mut small = true;
    let mut cap = None;
    let mut tag: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{arg} needs a value"))
        };
        match arg.as_str() {
            "--opens" => opens = value()?.parse()?,
            "--mib" => mib = value()?.parse()?,
            "--json" => json = Some(value()?.into()),
            // Message sizes of the throughput runs, comma-separated; "none" for no throughput.
            "--sizes" => {
                let v = value()?;
                sizes = if v == "none" {
                    Vec::new()
                } else {
                    v.split(',').map(str::parse).collect::<Result<_, _>>()?
                };
            }
            // Skip the 64-byte message rate and the RTT.
            "--no-small" => small = false,
            // Longest a cell may take, seconds; over it the cell is DNF and the run ends.
            "--cap" => cap = Some(std::time::Duration::from_secs_f64(value()?.parse()?)),
            // Free text carried in every figure (the loss rate of the run, for the summary).
            "--tag" => tag = Some(value()?),
            _ => anyhow::bail!("unknown argument {arg}; usage: {USAGE}"),
        }
    }
    anyhow::ensure!(mib > 0, "--mib must be positive");
    anyhow::ensure!(sizes.iter().all(|&s| s > 0), "--sizes must be positive");
    let plan = Plan {
        opens,
        total: mib * 1024 * 1024,
        sizes,
        rate_messages: 50_000,
        rtt_rounds: 1000,
        rtt_warmup: 100,
        small,
        cap,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut figures = runtime.block_on(workloads::run::<L>(stack, plan))?;
    for figure in &mut figures {
        figure.tag.clone_from(&tag);
    }
    let mut lines = String::new();
    for figure in &figures {
        lines.push_str(&serde_json::to_string(figure)?);
        lines.push('\n');
    }
    print!("{lines}");
    if let Some(path) = json {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?
            .write_all(lines.as_bytes())?;
    }
    // Drop the runtime without waiting for the stacks' background tasks to notice the close.
    runtime.shutdown_background();
    Ok(())
}
