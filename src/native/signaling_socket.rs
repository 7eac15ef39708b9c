//! The signaling WebSocket on native: tokio-tungstenite, split into two bounded channels of
//! JSON text so the shared driver never sees the socket type.

use crate::error::{Error, Result};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Messages buffered each way between the socket and the driver.
const QUEUE: usize = 256;

/// Opens `url` and returns (outgoing, incoming) text channels. Dropping every outgoing sender
/// closes the socket; the incoming receiver ends when the socket closes.
/// Errors: [`Error::Signaling`] when the WebSocket handshake fails.
pub(crate) async fn connect_signaling(
    url: &str,
) -> Result<(
    async_channel::Sender<String>,
    async_channel::Receiver<String>,
)> {
    // Nagle off (the last argument): signaling messages are small and latency-bound; with it,
    // an offer's tail waited ~40 ms for the bridge's delayed ACK.
    let (socket, _response) = tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .map_err(|e| Error::Signaling {
            url: url.to_owned(),
            reason: explain(e),
        })?;
    let (mut sink, mut stream) = socket.split();
    let (out_tx, out_rx) = async_channel::bounded::<String>(QUEUE);
    let (in_tx, in_rx) = async_channel::bounded::<String>(QUEUE);
    tokio::spawn(async move {
        while let Ok(text) = out_rx.recv().await {
            if sink.send(WsMessage::text(text)).await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    tokio::spawn(async move {
        while let Some(frame) = stream.next().await {
            match frame {
                Ok(WsMessage::Text(text)) => {
                    if in_tx.send(text.as_str().to_owned()).await.is_err() {
                        return;
                    }
                }
                Ok(WsMessage::Close(_)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    Ok((out_tx, in_rx))
}

/// The handshake error in words a user can act on.
fn explain(error: tokio_tungstenite::tungstenite::Error) -> String {
    use tokio_tungstenite::tungstenite::error::{Error as WsError, UrlError};
    match error {
        WsError::Http(response) => format!(
            "the server answered HTTP {} instead of a WebSocket upgrade; is this the signaling \
             endpoint (e.g. ws://HOST:PORT/ws)?",
            response.status()
        ),
        WsError::Url(UrlError::TlsFeatureNotEnabled) => {
            "wss:// (TLS) is not supported by the native client yet; use ws://".into()
        }
        WsError::Protocol(e) => format!("not a WebSocket server ({e})"),
        other => other.to_string(),
    }
}
