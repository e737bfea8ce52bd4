//! Poll-with-deadline: tests wait for an observable condition, never for a fixed time.

use std::future::Future;
use std::time::Duration;

/// Calls `check` every 100 ms until it returns `Some`, or panics after `timeout` with
/// `what` and the last value `describe` saw, so a failure says what never happened.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(value) => return value,
            Err(last) => last,
        };
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
