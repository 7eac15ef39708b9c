//! What asks a command to stop: Ctrl-C (SIGINT) or, on Unix, SIGTERM — what `kill`, `timeout`,
//! systemd and `docker stop` send. Every long-running command treats the two alike: it stops
//! politely (peers are told, the mDNS advertisement is withdrawn, temporaries are deleted).

use std::fmt;

/// The signal that asked us to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
}

impl StopSignal {
    /// The exit status a shell reports for death by this signal: 128 + its number (POSIX
    /// shells' convention), so `$?` reads the same as if we had not caught it.
    pub fn exit_code(self) -> i32 {
        match self {
            StopSignal::Interrupt => 130,
            StopSignal::Terminate => 143,
        }
    }
}

impl fmt::Display for StopSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StopSignal::Interrupt => "interrupted",
            StopSignal::Terminate => "terminated (SIGTERM)",
        })
    }
}

/// Resolves at the first SIGINT or SIGTERM after the call. Create it once per command and
/// poll it by reference (`tokio::pin!`): a signal arriving while no such future exists is
/// caught (the handler stays installed) but seen by nobody. A signal that cannot be listened
/// for is logged, and only the other one stops the command.
pub async fn requested() -> StopSignal {
    let interrupt = async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => StopSignal::Interrupt,
            Err(e) => {
                tracing::warn!("cannot listen for Ctrl-C ({e}); only SIGTERM stops this command");
                std::future::pending().await
            }
        }
    };
    tokio::select! {
        signal = interrupt => signal,
        signal = terminate() => signal,
    }
}

#[cfg(unix)]
async fn terminate() -> StopSignal {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            term.recv().await;
            StopSignal::Terminate
        }
        Err(e) => {
            tracing::warn!("cannot listen for SIGTERM ({e}); only Ctrl-C stops this command");
            std::future::pending().await
        }
    }
}

#[cfg(not(unix))]
async fn terminate() -> StopSignal {
    std::future::pending().await
}
