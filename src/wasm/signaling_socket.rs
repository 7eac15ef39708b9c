//! The signaling WebSocket in the browser, split into two bounded channels of JSON text.

use super::js_text;
use crate::error::{Error, Result};
use futures::channel::oneshot;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{CloseEvent, Event, MessageEvent, WebSocket};

/// Messages buffered each way between the socket and the driver. The browser cannot be asked
/// to pause a WebSocket, so an incoming overflow closes the socket with an error instead of
/// dropping a message silently.
const QUEUE: usize = 1024;

/// Opens `url` and returns (outgoing, incoming) text channels; see the native twin.
/// Errors: [`Error::Signaling`] when the socket cannot be opened.
pub(crate) async fn connect_signaling(
    url: &str,
) -> Result<(
    async_channel::Sender<String>,
    async_channel::Receiver<String>,
)> {
    let signaling_error = |reason: String| Error::Signaling {
        url: url.to_owned(),
        reason,
    };
    let ws = WebSocket::new(url).map_err(|e| signaling_error(js_text(&e)))?;
    let (in_tx, in_rx) = async_channel::bounded::<String>(QUEUE);

    let (opened_tx, opened) = oneshot::channel::<std::result::Result<(), String>>();
    let opened_tx = std::cell::RefCell::new(Some(opened_tx));
    let settle = move |outcome| {
        if let Some(tx) = opened_tx.borrow_mut().take() {
            let _ = tx.send(outcome);
        }
    };
    let settle = std::rc::Rc::new(settle);
    let settle_open = std::rc::Rc::clone(&settle);
    let on_open = Closure::<dyn FnMut(Event)>::new(move |_: Event| settle_open(Ok(())));
    let settle_error = std::rc::Rc::clone(&settle);
    let on_error = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
        settle_error(Err("WebSocket error".into()))
    });

    let message_tx = in_tx.clone();
    let message_ws = ws.clone();
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        if let Some(text) = event.data().as_string() {
            if message_tx.try_send(text).is_err() {
                let _ = message_ws.close_with_code_and_reason(1008, "signaling queue overflow");
                message_tx.close();
            }
        }
    });
    let settle_close = std::rc::Rc::clone(&settle);
    let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
        settle_close(Err(format!("closed with code {}", event.code())));
        in_tx.close();
    });
    ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    ws.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    // Declared after the closures, so dropped before them: if this future is dropped while
    // waiting (connect timeout), the socket is detached and closed before the closures go,
    // and no late event can call a dropped closure.
    let mut pending = Detach {
        ws: ws.clone(),
        armed: true,
    };

    let outcome = opened
        .await
        .unwrap_or_else(|_| Err("WebSocket dropped".into()));
    if let Err(reason) = outcome {
        return Err(signaling_error(reason));
    }
    pending.armed = false;

    let (out_tx, out_rx) = async_channel::bounded::<String>(QUEUE);
    wasm_bindgen_futures::spawn_local(async move {
        while let Ok(text) = out_rx.recv().await {
            if ws.send_with_str(&text).is_err() {
                break;
            }
        }
        detach(&ws);
        drop((on_open, on_error, on_message, on_close));
    });
    Ok((out_tx, in_rx))
}

/// Removes every handler from `ws` and closes it, so late events find nothing to call.
fn detach(ws: &WebSocket) {
    ws.set_onopen(None);
    ws.set_onerror(None);
    ws.set_onmessage(None);
    ws.set_onclose(None);
    let _ = ws.close();
}

/// Detaches and closes the socket on drop unless disarmed.
struct Detach {
    ws: WebSocket,
    armed: bool,
}

impl Drop for Detach {
    fn drop(&mut self) {
        if self.armed {
            detach(&self.ws);
        }
    }
}
