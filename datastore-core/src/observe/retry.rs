//! How soon a subscription reads again after a read that failed.

use std::time::{Duration, Instant};

/// The least time between a failed read of a subscription and the next: a subscriber that
/// keeps asking after an error that stays (a row its field cannot hold, a server that is
/// down) reads ten times a second, not in a loop.
const RETRY_AFTER_FAILURE: Duration = Duration::from_millis(100);

/// When a subscription's last read failed, if it did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Retry {
    failed_at: Option<Instant>,
}

impl Retry {
    /// The read failed now.
    pub fn failed(&mut self) {
        self.failed_at = Some(Instant::now());
    }

    /// The read succeeded.
    pub fn succeeded(&mut self) {
        self.failed_at = None;
    }

    /// How long until the next read may run.
    pub fn left(&self) -> Duration {
        self.failed_at.map_or(Duration::ZERO, |at| {
            RETRY_AFTER_FAILURE.saturating_sub(at.elapsed())
        })
    }

    /// Waits, at most `timeout`, until the next read may run: whether it may.
    pub fn wait(&self, timeout: Duration) -> bool {
        let left = self.left();
        std::thread::sleep(left.min(timeout));
        left <= timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_waits_only_after_a_failure() {
        let mut retry = Retry::default();
        assert_eq!(retry.left(), Duration::ZERO);
        assert!(retry.wait(Duration::ZERO));
        retry.failed();
        assert!(retry.left() > Duration::ZERO);
        assert!(!retry.wait(Duration::ZERO), "not at once after a failure");
        assert!(retry.wait(RETRY_AFTER_FAILURE));
        assert_eq!(retry.left(), Duration::ZERO);
        retry.failed();
        retry.succeeded();
        assert_eq!(retry.left(), Duration::ZERO);
    }
}
