//! The admission listener's open connections: what each is doing, which one makes room when a
//! connection arrives at the cap, and closing them all on shutdown.
//!
//! Why make room rather than refuse: the API server dials one endpoint of the Service per
//! connection and does not try another when that one is refused, so with `failurePolicy: Fail`
//! a table full of connections that do nothing (a scanner, a flood of TCP connections that
//! never start TLS, HTTP/2 clients that answer pings and never ask) would fail pod creates
//! until they time out. So a new connection is always served: a connection with a request in
//! flight is never closed; of the others, an unfinished TLS handshake goes first, then the one
//! that has waited longest since its handshake or last request. Only when every connection has
//! a request in flight is the new one refused.
//!
//! A connection made to make room is closed gracefully (HTTP/2 GOAWAY, HTTP/1.1 after the
//! current exchange), so a client that was about to send learns it before it does, and retries
//! on a new connection.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use tokio::sync::Notify;
use tokio::time::Instant;

/// What a connection is doing, in the order connections make room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// TCP accepted, TLS not finished: it has not shown it will ever send a request.
    Handshaking { since: Instant },
    /// Nothing in flight since this instant (the handshake, or the last response).
    Waiting { since: Instant },
    /// Requests in flight: never closed to make room.
    Busy { requests: u32 },
}

struct Entry {
    phase: Phase,
    /// Wakes the connection's task to close it (a permit is kept if it is not waiting yet).
    close: Arc<Notify>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    open: HashMap<u64, Entry>,
    closing_all: bool,
}

/// Every open admission connection, bounded by `max`.
pub struct Connections {
    max: usize,
    table: Mutex<Table>,
    /// Notified when the last connection goes.
    emptied: Notify,
}

/// Why a new connection was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Every open connection has a request in flight.
    AllBusy,
    /// The listener is shutting down.
    ShuttingDown,
}

/// The outcome of [`Connections::admit`].
pub struct Admitted {
    pub slot: Slot,
    /// Whether another connection was closed to make room.
    pub made_room: bool,
}

impl Connections {
    pub fn new(max: usize) -> Arc<Connections> {
        Arc::new(Connections {
            max: max.max(1),
            table: Mutex::new(Table::default()),
            emptied: Notify::new(),
        })
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock leaves the table consistent (every change is one
        // insert or remove), so a poisoned lock is still usable.
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes a place for a connection just accepted, closing another one at the cap.
    pub fn admit(self: &Arc<Self>) -> Result<Admitted, Refused> {
        let mut table = self.table();
        if table.closing_all {
            return Err(Refused::ShuttingDown);
        }
        let mut made_room = false;
        if table.open.len() >= self.max {
            let victim = table
                .open
                .iter()
                .filter(|(_, entry)| !matches!(entry.phase, Phase::Busy { .. }))
                .min_by_key(|(_, entry)| entry.phase)
                .map(|(id, _)| *id)
                .ok_or(Refused::AllBusy)?;
            if let Some(entry) = table.open.remove(&victim) {
                entry.close.notify_one();
                made_room = true;
            }
        }
        let id = table.next_id;
        table.next_id += 1;
        let close = Arc::new(Notify::new());
        table.open.insert(
            id,
            Entry {
                phase: Phase::Handshaking {
                    since: Instant::now(),
                },
                close: Arc::clone(&close),
            },
        );
        Ok(Admitted {
            slot: Slot {
                connections: Arc::clone(self),
                id,
                close,
            },
            made_room,
        })
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.table().open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Asks every open connection to close gracefully, and refuses new ones.
    pub fn close_all(&self) {
        let mut table = self.table();
        table.closing_all = true;
        for entry in table.open.values() {
            entry.close.notify_one();
        }
    }

    /// Resolves once no connection is open.
    pub async fn closed(&self) {
        loop {
            let emptied = self.emptied.notified();
            if self.is_empty() {
                return;
            }
            emptied.await;
        }
    }

    fn update(&self, id: u64, change: impl FnOnce(&mut Phase)) {
        if let Some(entry) = self.table().open.get_mut(&id) {
            change(&mut entry.phase);
        }
    }
}

/// A connection's place in [`Connections`], given up when dropped.
pub struct Slot {
    connections: Arc<Connections>,
    id: u64,
    close: Arc<Notify>,
}

impl Slot {
    /// TLS is done: from now the connection is waiting for its first request.
    pub fn handshake_done(&self) {
        self.connections.update(self.id, |phase| {
            *phase = Phase::Waiting {
                since: Instant::now(),
            }
        });
    }

    /// A request arrived; the connection is busy until the returned guard is dropped.
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.connections.update(self.id, |phase| {
            *phase = match *phase {
                Phase::Busy { requests } => Phase::Busy {
                    requests: requests + 1,
                },
                _ => Phase::Busy { requests: 1 },
            }
        });
        InFlight {
            slot: Arc::clone(self),
        }
    }

    /// Resolves when the connection is asked to close: to make room, or on shutdown.
    pub async fn closing(&self) {
        self.close.notified().await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut table = self.connections.table();
        // Already gone when it was closed to make room.
        table.open.remove(&self.id);
        if table.open.is_empty() {
            drop(table);
            self.connections.emptied.notify_waiters();
        }
    }
}

/// A request in flight on a connection.
pub struct InFlight {
    slot: Arc<Slot>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.slot.connections.update(self.slot.id, |phase| {
            if let Phase::Busy { requests } = *phase {
                *phase = if requests > 1 {
                    Phase::Busy {
                        requests: requests - 1,
                    }
                } else {
                    Phase::Waiting {
                        since: Instant::now(),
                    }
                };
            }
        });
    }
}

/// A hyper service that marks its connection busy while each request is answered.
#[derive(Clone)]
pub struct Tracked<S> {
    inner: S,
    slot: Arc<Slot>,
}

impl<S> Tracked<S> {
    pub fn new(inner: S, slot: Arc<Slot>) -> Tracked<S> {
        Tracked { inner, slot }
    }
}

impl<S, R> hyper::service::Service<R> for Tracked<S>
where
    S: hyper::service::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn call(&self, request: R) -> Self::Future {
        let in_flight = self.slot.request();
        TrackedFuture {
            inner: Box::pin(self.inner.call(request)),
            _in_flight: in_flight,
        }
    }
}

/// The response future, holding the connection busy until it completes or is dropped.
pub struct TrackedFuture<F> {
    inner: Pin<Box<F>>,
    _in_flight: InFlight,
}

impl<F: Future> Future for TrackedFuture<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.inner.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admit(connections: &Arc<Connections>) -> Admitted {
        connections
            .admit()
            .unwrap_or_else(|refused| panic!("{refused:?}"))
    }

    #[tokio::test(start_paused = true)]
    async fn below_the_cap_nothing_is_closed() {
        let connections = Connections::new(2);
        let first = admit(&connections);
        let second = admit(&connections);
        assert!(!first.made_room && !second.made_room);
        assert_eq!(connections.len(), 2);
        drop(first);
        assert_eq!(connections.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unfinished_handshake_makes_room_before_a_waiting_connection() {
        let connections = Connections::new(2);
        let waiting = Arc::new(admit(&connections).slot);
        waiting.handshake_done();
        tokio::time::advance(std::time::Duration::from_secs(60)).await;
        let handshaking = admit(&connections).slot;
        let new = admit(&connections);
        assert!(new.made_room);
        // The handshake, although younger, is closed; the waiting connection is not.
        tokio::time::timeout(std::time::Duration::from_millis(1), handshaking.closing())
            .await
            .expect("the handshaking connection is asked to close");
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(1), waiting.closing())
                .await
                .is_err()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_connection_waiting_longest_makes_room_and_a_busy_one_never() {
        let connections = Connections::new(3);
        let slots: Vec<Arc<Slot>> = (0..3)
            .map(|_| {
                let slot = Arc::new(admit(&connections).slot);
                slot.handshake_done();
                slot
            })
            .collect();
        // slots[0] is busy; slots[1] was served after slots[2].
        let _in_flight = slots[0].request();
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        drop(slots[1].request());
        let new = admit(&connections);
        assert!(new.made_room);
        let closed = |slot: &Arc<Slot>| {
            let slot = Arc::clone(slot);
            async move {
                tokio::time::timeout(std::time::Duration::from_millis(1), slot.closing())
                    .await
                    .is_ok()
            }
        };
        assert!(!closed(&slots[0]).await, "busy");
        assert!(!closed(&slots[1]).await, "served a moment ago");
        assert!(closed(&slots[2]).await, "waiting since its handshake");
    }

    #[tokio::test(start_paused = true)]
    async fn when_every_connection_is_busy_a_new_one_is_refused() {
        let connections = Connections::new(1);
        let slot = Arc::new(admit(&connections).slot);
        let in_flight = slot.request();
        assert_eq!(connections.admit().err(), Some(Refused::AllBusy));
        drop(in_flight);
        assert!(admit(&connections).made_room);
    }

    #[tokio::test(start_paused = true)]
    async fn close_all_asks_every_connection_and_closed_waits_for_them() {
        let connections = Connections::new(4);
        let first = admit(&connections).slot;
        let second = admit(&connections).slot;
        connections.close_all();
        assert_eq!(connections.admit().err(), Some(Refused::ShuttingDown));
        first.closing().await;
        second.closing().await;
        let waiting = tokio::spawn({
            let connections = Arc::clone(&connections);
            async move { connections.closed().await }
        });
        drop(first);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(second);
        waiting.await.unwrap();
    }
}
