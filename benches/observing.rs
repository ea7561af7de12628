//! What the observe benchmarks share: subscribers that drain their streams, and the
//! commit-to-delivery latency of single-row saves.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datastore::observe::Observed;
use datastore::prelude::*;

use crate::models::Post;

/// Subscribers that drain their streams on their own threads until dropped.
pub struct Draining {
    stop: Arc<AtomicBool>,
    /// What the subscribers received between them (changes, and changes reported missed).
    received: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Draining {
    pub fn start(store: &Store, count: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let threads = (0..count)
            .map(|_| {
                let subscription = store.observe::<Post>().unwrap();
                let (stop, received) = (stop.clone(), received.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let got = match subscription.recv_timeout(Duration::from_millis(5)) {
                            Some(Observed::Change(_)) => 1,
                            Some(Observed::Missed(n)) => n as u64,
                            _ => 0,
                        };
                        received.fetch_add(got, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Self {
            stop,
            received,
            threads,
        }
    }

    /// Waits until the subscribers have received `changes` more changes each than `before`
    /// (a value of [`Draining::received`]), so that their work is not left running into
    /// whatever is timed next.
    pub fn wait_for(&self, before: u64, changes: u64) {
        let target = before + changes * self.threads.len() as u64;
        while self.received() < target {
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// What the subscribers received so far, between them.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

impl Drop for Draining {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            thread.join().unwrap();
        }
    }
}

/// The `p` quantile of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// Commit-to-delivery latency of 2,000 single-row saves, one subscriber: prints p50 and p99
/// under `label`.
pub fn latency(store: &Store, label: &str) {
    let subscription = store.observe::<Post>().unwrap();
    let mut samples = Vec::with_capacity(2_000);
    for i in 0..2_000 {
        let start = Instant::now();
        store
            .save(Post {
                title: format!("latency {i}"),
                ..Post::default()
            })
            .unwrap();
        match subscription.recv_timeout(Duration::from_secs(5)) {
            Some(Observed::Change(_)) => samples.push(start.elapsed()),
            other => panic!("no delivery: {other:?}"),
        }
    }
    samples.sort();
    println!(
        "{label}/latency from save (commit) to delivery, 2000 single-row commits: p50 {:?}, p99 {:?}",
        percentile(&samples, 0.50),
        percentile(&samples, 0.99)
    );
}
