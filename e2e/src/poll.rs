//! The one way a check waits for something: poll a condition until it holds or time runs out,
//! asynchronously, so a runtime thread is never put to sleep.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::anyhow;

use crate::Result;

/// How often a condition is polled.
const INTERVAL: Duration = Duration::from_millis(100);

/// Polls `condition` every 100 ms until it is true (returning how long that took), it fails,
/// or `timeout` passes (an error naming `what`).
pub async fn until<F, Fut>(what: &str, timeout: Duration, mut condition: F) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let started = Instant::now();
    loop {
        if condition().await? {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            return Err(anyhow!("{what}: not within {timeout:?}"));
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

/// [`until`] for a condition that does not await (a kubectl call, a replica's metrics).
pub async fn until_sync(
    what: &str,
    timeout: Duration,
    mut condition: impl FnMut() -> Result<bool>,
) -> Result<Duration> {
    until(what, timeout, || std::future::ready(condition())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_condition_that_never_holds_fails_naming_what_was_awaited() {
        let error = until_sync("the moon", Duration::from_millis(250), || Ok(false))
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "the moon: not within 250ms");
    }

    #[tokio::test]
    async fn a_condition_that_holds_ends_the_wait_and_its_error_is_passed_on() {
        let mut polls = 0;
        until_sync("the third poll", Duration::from_secs(5), || {
            polls += 1;
            Ok(polls == 3)
        })
        .await
        .unwrap();
        assert_eq!(polls, 3);
        let failed = until_sync("x", Duration::from_secs(5), || Err(anyhow!("boom"))).await;
        assert_eq!(failed.unwrap_err().to_string(), "boom");
    }
}
