//! Reading a request body within the size limit, and what becomes of the rest of a body that
//! is too large.
//!
//! Why the rest is read at all: a server that answers before the request has been sent whole
//! ends an HTTP/2 stream with RST_STREAM(NO_ERROR). RFC 9113 §8.1 tells clients to keep the
//! response, but curl reports the stream as failed (exit 92, no status shown), and on
//! HTTP/1.1 the connection is closed under a client still writing. So after a 413 dbbind reads
//! and drops what the client is still sending — a bounded amount, for a bounded time, never
//! buffered — and the client reads a clean 413.

use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

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

/// The whole body, or [`BodyError::TooLarge`] as soon as it passes `max` bytes.
pub async fn read(mut body: Body, max: usize) -> Result<Bytes, BodyError> {
    let mut buffer = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| BodyError::Unreadable)?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if buffer.len() + data.len() > max {
            return Err(BodyError::TooLarge(body));
        }
        buffer.extend_from_slice(&data);
    }
    Ok(buffer.freeze())
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
