//! `native-demo peers`: lists the nodes and bridges advertised on the LAN by mDNS
//! (docs/discovery.md). Without `--watch`, browses `--timeout` seconds and prints one line per
//! advertiser still present: `KIND ID ROOM ADDRESS AGE`. With `--watch`, prints each change as
//! it happens, `+` found, `~` updated, `-` removed, with the age in milliseconds.

use anyhow::Context;
use clap::Args;
use miaou_transport::discovery::{BrowseEvent, DiscoveredNode, Discovery, SERVICE_TYPE};
use std::io::Write;
use std::time::Duration;

#[derive(Args)]
pub struct PeersArgs {
    /// Seconds to browse; with --watch, 0 browses until Ctrl-C.
    #[arg(long, default_value = "3", value_parser = crate::lan::parse_seconds)]
    timeout: Duration,
    /// Print each change as it happens instead of a list at the end.
    #[arg(long)]
    watch: bool,
    /// Only this room's nodes (bridges, which serve every room, are always listed).
    #[arg(long)]
    room: Option<String>,
}

/// `kind id room address`: the room quoted (it may contain spaces), `-` for a bridge.
fn describe(node: &DiscoveredNode) -> String {
    let room = match &node.info.room {
        Some(room) => format!("{room:?}"),
        None => "-".to_owned(),
    };
    format!(
        "{:<6} {} {room} {}",
        node.info.kind,
        node.info.node_id,
        node.signaling_url().unwrap_or("-")
    )
}

pub async fn run(args: PeersArgs) -> anyhow::Result<()> {
    let wanted = |node: &DiscoveredNode| match (&args.room, &node.info.room) {
        (Some(room), Some(its)) => room == its,
        _ => true,
    };
    let discovery = Discovery::new().context("starting mDNS")?;
    let mut browser = discovery.browse().context("browsing mDNS")?;
    let timeout = args.timeout;
    let stdout = std::io::stdout();
    if args.watch {
        writeln!(stdout.lock(), "# browsing {SERVICE_TYPE}")?;
        let deadline = (!timeout.is_zero()).then(|| tokio::time::Instant::now() + timeout);
        let stop = crate::stop::requested();
        tokio::pin!(stop);
        loop {
            let next = async {
                match deadline {
                    Some(at) => tokio::time::timeout_at(at, browser.next_event())
                        .await
                        .ok()
                        .flatten(),
                    None => browser.next_event().await,
                }
            };
            let event = tokio::select! {
                event = next => event,
                _ = &mut stop => None,
            };
            let Some(event) = event else { break };
            let (sign, node) = match &event {
                BrowseEvent::Found(node) => ('+', node),
                BrowseEvent::Updated(node) => ('~', node),
                BrowseEvent::Removed(node) => ('-', node),
            };
            if wanted(node) {
                let mut out = stdout.lock();
                writeln!(
                    out,
                    "{sign} {} {}ms",
                    describe(node),
                    node.age().as_millis()
                )?;
                out.flush()?;
            }
        }
    } else {
        browser.run_for(timeout).await;
        let nodes: Vec<DiscoveredNode> = browser.nodes().into_iter().filter(wanted).collect();
        let mut out = stdout.lock();
        for node in &nodes {
            writeln!(out, "{} {:.1}s", describe(node), node.age().as_secs_f64())?;
        }
        tracing::info!(
            found = nodes.len(),
            "browsed {:.1} s",
            timeout.as_secs_f64()
        );
    }
    drop(browser);
    discovery.shutdown().await;
    Ok(())
}
