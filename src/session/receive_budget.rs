//! A byte budget for received messages waiting in the transport's queue for `recv`.
//!
//! The queue is bounded in messages (`receive_queue_messages`), but messages go up to
//! `max_message_size` (64 MiB by default), so a count alone would let a peer park gigabytes
//! there. Readers [`reserve`](ReceiveBudget::reserve) a message's bytes before queueing it and
//! `recv` [`release`](ReceiveBudget::release)s them, so at most `receive_queue_bytes` wait —
//! except one message larger than the whole budget, which passes alone when the queue holds
//! nothing (otherwise it could never be delivered).

use event_listener::Event;
use std::sync::Mutex;

/// Bytes of received messages queued for the application, shared by every link's reader and
/// the [`crate::Transport`] handle.
pub(crate) struct ReceiveBudget {
    capacity: usize,
    used: Mutex<usize>,
    freed: Event,
}

impl ReceiveBudget {
    /// A budget of `capacity` bytes.
    pub(crate) fn new(capacity: usize) -> Self {
        ReceiveBudget {
            capacity,
            used: Mutex::new(0),
            freed: Event::new(),
        }
    }

    /// Takes `bytes` from the budget, waiting while the queued messages leave too little room.
    pub(crate) async fn reserve(&self, bytes: usize) {
        loop {
            if self.try_reserve(bytes) {
                return;
            }
            // Listen before re-checking, so a release between the two is not missed.
            let listener = self.freed.listen();
            if self.try_reserve(bytes) {
                return;
            }
            listener.await;
        }
    }

    fn try_reserve(&self, bytes: usize) -> bool {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let fits = *used == 0 || used.saturating_add(bytes) <= self.capacity;
        if fits {
            *used = used.saturating_add(bytes);
        }
        fits
    }

    /// Returns `bytes` taken by a message the application has now received.
    pub(crate) fn release(&self, bytes: usize) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        *used = used.saturating_sub(bytes);
        drop(used);
        self.freed.notify(usize::MAX);
    }

    /// Bytes reserved now.
    #[cfg(test)]
    fn used(&self) -> usize {
        *self.used.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::ReceiveBudget;
    use futures::executor::block_on;
    use futures::FutureExt;

    #[test]
    fn reserve_waits_for_room_and_release_wakes_it() {
        let budget = ReceiveBudget::new(100);
        block_on(budget.reserve(60));
        block_on(budget.reserve(40));
        let mut third = Box::pin(budget.reserve(1));
        assert!(third.as_mut().now_or_never().is_none(), "full: must wait");
        budget.release(60);
        assert!(third.now_or_never().is_some(), "released: proceeds");
        assert_eq!(budget.used(), 41);
    }

    #[test]
    fn a_message_larger_than_the_budget_passes_alone() {
        let budget = ReceiveBudget::new(10);
        block_on(budget.reserve(1000));
        let mut next = Box::pin(budget.reserve(1));
        assert!(next.as_mut().now_or_never().is_none());
        budget.release(1000);
        assert!(next.now_or_never().is_some());
    }
}
