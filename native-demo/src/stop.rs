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

/// Resolves at the first SIGINT or SIGTERM after the call. The handlers are installed by the
/// call itself, not when the future is first polled, so a command that calls this before it
/// announces itself (prints its URL, joins a room) never dies of an early signal's default
/// action. Create it once per command and poll it by reference (`tokio::pin!`). A signal that
/// cannot be listened for is logged, and only the other one stops the command.
#[cfg(unix)]
pub fn requested() -> impl std::future::Future<Output = StopSignal> {
    use tokio::signal::unix::{signal, SignalKind};
    let listen = |kind: SignalKind, name: &'static str, stop: StopSignal| {
        let registered = signal(kind);
        async move {
            match registered {
                Ok(mut stream) => {
                    stream.recv().await;
                    stop
                }
                Err(e) => {
                    tracing::warn!(
                        "cannot listen for {name} ({e}); only the other signal stops this command"
                    );
                    std::future::pending().await
                }
            }
        }
    };
    let interrupt = listen(SignalKind::interrupt(), "SIGINT", StopSignal::Interrupt);
    let terminate = listen(SignalKind::terminate(), "SIGTERM", StopSignal::Terminate);
    async move {
        tokio::select! {
            signal = interrupt => signal,
            signal = terminate => signal,
        }
    }
}

/// Resolves at the first Ctrl-C after the first poll.
#[cfg(not(unix))]
pub fn requested() -> impl std::future::Future<Output = StopSignal> {
    async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => StopSignal::Interrupt,
            Err(e) => {
                tracing::warn!("cannot listen for Ctrl-C ({e})");
                std::future::pending().await
            }
        }
    }
}
