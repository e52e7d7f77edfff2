//! The admission listener's open connections: what each is doing, which one makes room when a
//! connection arrives at the cap, and closing them all on shutdown.
//!
//! Why make room rather than refuse: the API server dials one endpoint of the Service per
//! connection and does not try another when that one is refused, so with `failurePolicy: Fail`
//! a table full of connections that do nothing (a scanner, a flood of TCP connections that
//! never start TLS, clients that finish TLS and never ask) would fail pod creates until they
//! time out. So a new connection is always served, by closing the one that has shown least
//! sign of being a client, oldest first within each kind:
//!
//! 1. a TLS handshake of which not a byte has arrived for [`SILENT_GRACE`] (a port scan, a TCP
//!    flood);
//! 2. a connection that finished its handshake and has sent no request (a TLS flood);
//! 3. a handshake under way (its ClientHello arrived, or it is younger than the grace: likely
//!    a real client, even the API server's new connection, waiting for a busy server to read
//!    it);
//! 4. a connection waiting since its last response (the API server's kept-alive connections).
//!
//! A connection with a request in flight is never closed; only when every connection has one
//! is the new connection refused. A connection closed to make room is closed gracefully
//! (HTTP/2 GOAWAY, HTTP/1.1 after the current exchange), so a client that was about to send
//! learns it before it does, and retries on a new connection.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use tokio::sync::Notify;
use tokio::time::Instant;

/// How long a handshake may go without a byte before it counts as silent. A connection's first
/// bytes are seen only when its task first reads, which on a busy server can come after newer
/// connections' reads; a younger silent handshake ranks with the ones under way.
pub const SILENT_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// What a connection is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// TCP accepted, TLS not finished; `heard`: some of its ClientHello has arrived.
    Handshaking { since: Instant, heard: bool },
    /// Nothing in flight since this instant (the handshake, or the last response); `served`:
    /// it has sent a request before.
    Waiting { since: Instant, served: bool },
    /// Requests in flight: never closed to make room.
    Busy { requests: u32 },
}

/// The ranks of [`Phase::room_rank`], as the log says them.
const RANKS: [&str; 4] = [
    "a silent handshake",
    "a connection that never sent a request",
    "a handshake under way",
    "a connection waiting since its last response",
];

impl Phase {
    /// Where the connection stands at `now` in the order connections make room (lowest
    /// first), or `None` when it must not be closed for that.
    fn room_rank(&self, now: Instant) -> Option<(u8, Instant)> {
        match *self {
            Phase::Handshaking {
                since,
                heard: false,
            } if now.duration_since(since) >= SILENT_GRACE => Some((0, since)),
            Phase::Handshaking {
                since,
                heard: false,
            } => Some((2, since)),
            Phase::Waiting {
                since,
                served: false,
            } => Some((1, since)),
            Phase::Handshaking { since, heard: true } => Some((2, since)),
            Phase::Waiting {
                since,
                served: true,
            } => Some((3, since)),
            Phase::Busy { .. } => None,
        }
    }
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
    /// What the connection closed to make room was doing (for the log).
    pub closed: Option<&'static str>,
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
        let mut closed = None;
        if table.open.len() >= self.max {
            let now = Instant::now();
            let ((rank, _), victim) = table
                .open
                .iter()
                .filter_map(|(id, entry)| Some((entry.phase.room_rank(now)?, *id)))
                .min()
                .ok_or(Refused::AllBusy)?;
            if let Some(entry) = table.open.remove(&victim) {
                entry.close.notify_one();
                closed = Some(RANKS[usize::from(rank)]);
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
                    heard: false,
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
            made_room: closed.is_some(),
            closed,
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
    /// The first bytes of the handshake arrived: the client is talking.
    pub fn heard(&self) {
        self.connections.update(self.id, |phase| {
            if let Phase::Handshaking { heard, .. } = phase {
                *heard = true;
            }
        });
    }

    /// TLS is done: from now the connection is waiting for its first request.
    pub fn handshake_done(&self) {
        self.connections.update(self.id, |phase| {
            *phase = Phase::Waiting {
                since: Instant::now(),
                served: false,
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
                        served: true,
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

/// A stream that tells its slot when the first bytes arrive (during the TLS handshake).
pub struct Heard<S> {
    inner: S,
    slot: Option<Arc<Slot>>,
}

impl<S> Heard<S> {
    pub fn new(inner: S, slot: Arc<Slot>) -> Heard<S> {
        Heard {
            inner,
            slot: Some(slot),
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Heard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before
            && let Some(slot) = self.slot.take()
        {
            slot.heard();
        }
        polled
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Heard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
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
    async fn a_silent_handshake_makes_room_before_a_served_connection() {
        let connections = Connections::new(2);
        let served = Arc::new(admit(&connections).slot);
        served.handshake_done();
        drop(served.request());
        tokio::time::advance(std::time::Duration::from_secs(60)).await;
        let silent = admit(&connections).slot;
        tokio::time::advance(SILENT_GRACE).await;
        let new = admit(&connections);
        assert!(new.made_room);
        // The handshake, although younger, is closed; the served connection is not.
        tokio::time::timeout(std::time::Duration::from_millis(1), silent.closing())
            .await
            .expect("the silent handshake is asked to close");
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(1), served.closing())
                .await
                .is_err()
        );
    }

    /// A handshake not read from yet, younger than the grace, may be a client whose task has
    /// not run: a connection that finished its handshake and never asked goes before it.
    #[tokio::test(start_paused = true)]
    async fn a_young_handshake_outlasts_one_that_never_asked() {
        let connections = Connections::new(2);
        let never_asked = Arc::new(admit(&connections).slot);
        never_asked.handshake_done();
        tokio::time::advance(std::time::Duration::from_millis(10)).await;
        let young = admit(&connections).slot;
        let _new = admit(&connections);
        tokio::time::timeout(std::time::Duration::from_millis(1), never_asked.closing())
            .await
            .expect("the connection that never asked is asked to close");
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(1), young.closing())
                .await
                .is_err()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_served_connection_waiting_longest_makes_room_and_a_busy_one_never() {
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
        drop(slots[2].request());
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
        assert!(
            closed(&slots[2]).await,
            "waiting longest since its last request"
        );
    }

    /// The order of the module's doc: a silent handshake, a finished handshake that never
    /// asked, a handshake under way, a connection that has been served; oldest first within.
    #[tokio::test(start_paused = true)]
    async fn connections_that_showed_least_make_room_first() {
        let connections = Connections::new(5);
        let step = std::time::Duration::from_secs(1);
        // Oldest to youngest: served, talking, never asked, silent.
        let served = Arc::new(admit(&connections).slot);
        served.handshake_done();
        drop(served.request());
        tokio::time::advance(step).await;
        let talking = Arc::new(admit(&connections).slot);
        talking.heard();
        tokio::time::advance(step).await;
        let never_asked = Arc::new(admit(&connections).slot);
        never_asked.handshake_done();
        tokio::time::advance(step).await;
        let silent = Arc::new(admit(&connections).slot);
        tokio::time::advance(step).await;
        let fifth = Arc::new(admit(&connections).slot);
        let _fifth_busy = fifth.request();
        let closed = |slot: &Arc<Slot>| {
            let slot = Arc::clone(slot);
            async move {
                tokio::time::timeout(std::time::Duration::from_millis(1), slot.closing())
                    .await
                    .is_ok()
            }
        };
        let mut order = Vec::new();
        // Each newcomer makes room, then stays busy, so the next one closes another.
        let mut busy = Vec::new();
        for _ in 0..4 {
            let newcomer = Arc::new(admit(&connections).slot);
            busy.push(newcomer.request());
            for (name, slot) in [
                ("silent", &silent),
                ("never asked", &never_asked),
                ("talking", &talking),
                ("served", &served),
            ] {
                if !order.contains(&name) && closed(slot).await {
                    order.push(name);
                }
            }
        }
        assert_eq!(order, ["silent", "never asked", "talking", "served"]);
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
