//! Reading a request body within the size limit, and what becomes of the rest of a body that
//! is too large.
//!
//! Why the rest is read at all: a server that answers before the request has been sent whole
//! ends an HTTP/2 stream with RST_STREAM(NO_ERROR). RFC 9113 §8.1 tells clients to keep the
//! response, but curl reports the stream as failed (exit 92, no status shown), and on
//! HTTP/1.1 the connection is closed under a client still writing. So after a 413 dbbind reads
//! and drops what the client is still sending — a bounded amount, for a bounded time, never
//! buffered — and the client reads a clean 413.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The most a 413 waits for the client to finish sending.
pub const DISCARD_TIME: Duration = Duration::from_secs(2);

/// How much more than the limit a 413 reads and drops, as a multiple of the limit: past that,
/// the client is cut off instead.
pub const DISCARD_FACTOR: usize = 4;

#[derive(Debug)]
pub enum BodyError {
    /// Over the limit; the unread rest of the body.
    TooLarge(Body),
    Unreadable,
}

/// The bytes of request bodies held in memory at once, across all requests and connections.
/// A chunk is counted when it arrives and released when its request is answered, so a client
/// that opens streams and sends nothing holds nothing, and one that sends half a body holds
/// half a body until the body-read deadline. When it is spent, arriving chunks wait (within
/// their request's deadline): memory stays bounded whatever the number of streams.
#[derive(Clone, Debug)]
pub struct BodyBudget(Arc<Semaphore>);

impl BodyBudget {
    pub fn new(bytes: usize) -> BodyBudget {
        BodyBudget(Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))))
    }

    /// Bytes not held by any body now.
    pub fn available(&self) -> usize {
        self.0.available_permits()
    }
}

/// A body read whole, and its share of the budget, released when this is dropped.
#[derive(Debug)]
pub struct Buffered {
    pub bytes: Bytes,
    _held: Option<OwnedSemaphorePermit>,
}

/// The whole body, or [`BodyError::TooLarge`] as soon as it passes `max` bytes. Each chunk
/// takes its size from `budget` first.
pub async fn read(mut body: Body, max: usize, budget: &BodyBudget) -> Result<Buffered, BodyError> {
    let mut buffer = BytesMut::new();
    let mut held: Option<OwnedSemaphorePermit> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| BodyError::Unreadable)?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if buffer.len() + data.len() > max {
            return Err(BodyError::TooLarge(body));
        }
        let Ok(size) = u32::try_from(data.len()) else {
            return Err(BodyError::TooLarge(body));
        };
        let permit = Arc::clone(&budget.0)
            .acquire_many_owned(size)
            .await
            .map_err(|_| BodyError::Unreadable)?;
        match &mut held {
            Some(held) => held.merge(permit),
            None => held = Some(permit),
        }
        buffer.extend_from_slice(&data);
    }
    Ok(Buffered {
        bytes: buffer.freeze(),
        _held: held,
    })
}

/// Reads and drops the rest of a body, up to `max` bytes and [`DISCARD_TIME`]. Returns whether
/// the body ended within both.
pub async fn discard(mut body: Body, max: usize) -> bool {
    let drain = async {
        let mut read = 0usize;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return false;
            };
            if let Some(data) = frame.data_ref() {
                read = read.saturating_add(data.len());
                if read > max {
                    return false;
                }
            }
        }
        true
    };
    tokio::time::timeout(DISCARD_TIME, drain)
        .await
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_holds_its_size_of_the_budget_until_dropped() {
        let budget = BodyBudget::new(1000);
        let first = read(Body::from(vec![b'a'; 600]), 1000, &budget)
            .await
            .unwrap();
        assert_eq!(first.bytes.len(), 600);
        assert_eq!(budget.available(), 400);

        // A second body of 600 bytes waits for the first to be answered.
        let second = read(Body::from(vec![b'b'; 600]), 1000, &budget);
        tokio::pin!(second);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut second)
                .await
                .is_err()
        );
        drop(first);
        let second = second.await.unwrap();
        assert_eq!(second.bytes.len(), 600);
        drop(second);
        assert_eq!(budget.available(), 1000);
    }

    #[tokio::test]
    async fn a_body_over_the_limit_takes_nothing_for_its_rest() {
        let budget = BodyBudget::new(1000);
        let result = read(Body::from(vec![b'a'; 2000]), 1000, &budget).await;
        assert!(matches!(result, Err(BodyError::TooLarge(_))));
        assert_eq!(budget.available(), 1000);
    }
}
