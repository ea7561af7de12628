//! The threads on which the pool opens connections, and the wait for them that lets a store's
//! last handle close every connection before its drop returns.
//!
//! r2d2 opens connections on a thread pool of its own. A thread that has just opened one holds
//! the pool until its job returns, a moment after it has handed the connection over; if the
//! store's last handle is dropped in that moment, the pool, and each connection in it, is
//! dropped later, on that thread. A SQLite file then stays open (its WAL not yet folded back)
//! after the drop returned, and a client that opens it at once may find it locked. So the store
//! gives r2d2 threads it owns, and its last handle waits until each has finished the job it was
//! running.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use scheduled_thread_pool::ScheduledThreadPool;

/// As many threads as r2d2 starts for a pool of its own: connections opened side by side
/// when many are asked for at once.
const THREADS: usize = 3;

/// The pool's threads. Dropped after the pool (the store's last field), it waits for them.
pub(crate) struct Workers {
    threads: Arc<ScheduledThreadPool>,
    /// How long the drop waits at most: a thread may be opening a connection to a server that
    /// does not answer, which the store's connection timeout already bounds for its callers.
    wait: Duration,
}

impl Workers {
    /// Threads for one store's pool, its drop waiting at most `wait` for them.
    pub(crate) fn new(wait: Duration) -> Self {
        let threads = ScheduledThreadPool::builder()
            .num_threads(THREADS)
            .thread_name_pattern("datastore-pool-{}")
            .build();
        Self {
            threads: Arc::new(threads),
            wait,
        }
    }

    /// The threads, for r2d2's builder.
    pub(crate) fn threads(&self) -> Arc<ScheduledThreadPool> {
        Arc::clone(&self.threads)
    }
}

impl Drop for Workers {
    /// Holds every thread of the pool at once: each job that was running (and with it the last
    /// hold on the pool and its connections) has then returned. Jobs due later (r2d2's reaper,
    /// a retry) find the pool gone and do nothing.
    fn drop(&mut self) {
        let fence = Arc::new(Fence::default());
        for _ in 0..THREADS {
            let fence = Arc::clone(&fence);
            self.threads.execute(move || fence.arrive_and_hold());
        }
        fence.wait_for_all(THREADS, self.wait);
    }
}

/// A meeting point of the pool's threads and the dropping one.
#[derive(Default)]
struct Fence {
    /// How many threads have arrived, and whether they may go.
    state: Mutex<(usize, bool)>,
    changed: Condvar,
}

impl Fence {
    /// A thread's job: counts itself in and holds its thread until released.
    fn arrive_and_hold(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.0 += 1;
        self.changed.notify_all();
        while !state.1 {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Waits (at most `wait`) until `threads` have arrived, then releases them.
    fn wait_for_all(&self, threads: usize, wait: Duration) {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut state, _) = self
            .changed
            .wait_timeout_while(state, wait, |(arrived, _)| *arrived < threads)
            .unwrap_or_else(PoisonError::into_inner);
        state.1 = true;
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    use super::*;

    #[test]
    fn the_drop_returns_after_each_running_job_has() {
        let workers = Workers::new(Duration::from_secs(60));
        let done = Arc::new(AtomicBool::new(false));
        let started = Arc::new((Mutex::new(false), Condvar::new()));
        workers.threads().execute({
            let (done, started) = (Arc::clone(&done), Arc::clone(&started));
            move || {
                *started.0.lock().unwrap() = true;
                started.1.notify_all();
                std::thread::sleep(Duration::from_millis(200));
                done.store(true, Ordering::SeqCst);
            }
        });
        let guard = started.0.lock().unwrap();
        drop(started.1.wait_while(guard, |s| !*s).unwrap());
        drop(workers);
        assert!(
            done.load(Ordering::SeqCst),
            "the drop returned before the job"
        );
    }

    #[test]
    fn the_drop_waits_no_longer_than_asked() {
        let workers = Workers::new(Duration::from_millis(100));
        workers
            .threads()
            .execute(|| std::thread::sleep(Duration::from_secs(5)));
        std::thread::sleep(Duration::from_millis(20));
        let start = Instant::now();
        drop(workers);
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(100) && waited < Duration::from_secs(4),
            "waited {waited:?}"
        );
    }
}
