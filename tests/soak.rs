//! A soak run: mixed writes, deletes and subscribers for minutes, on each backend, reporting
//! memory (RSS) over time and the changes delivered against those committed. The data stays
//! bounded (at most `LIVE_POSTS` posts), so memory should too. Not part of the usual run:
//!
//! ```sh
//! DATASTORE_SOAK_SECS=300 DATASTORE_POSTGRES_URL=postgres://root@127.0.0.1:5432/test \
//!     cargo test -p datastore --test soak -- --ignored --nocapture --test-threads 1
//! ```

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::models::{posts, Comment, Post};
use common::{comment, post};
use datastore::observe::Observed;
use datastore::prelude::*;
use datastore::Error;

const WRITERS: usize = 4;

/// How long the run lasts: `DATASTORE_SOAK_SECS`, 60 s by default.
fn duration() -> Duration {
    let secs = std::env::var("DATASTORE_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(secs)
}

/// This process's resident memory and its peak, in KiB.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// What the writers committed, by table and operation.
#[derive(Default)]
struct Committed {
    transactions: AtomicU64,
    rolled_back: AtomicU64,
    post_changes: AtomicU64,
    comment_changes: AtomicU64,
}

/// What a subscriber received.
#[derive(Default)]
struct Received {
    changes: AtomicU64,
    missed: AtomicU64,
    undecodable: AtomicU64,
    lost: AtomicU64,
}

impl Received {
    fn count<T>(&self, observed: Observed<T>) {
        let counter = match observed {
            Observed::Change(_) => &self.changes,
            Observed::Missed(n) => {
                self.missed.fetch_add(n as u64, Ordering::Relaxed);
                return;
            }
            Observed::Undecodable { .. } => &self.undecodable,
            Observed::FeedLost { .. } => &self.lost,
            _ => &self.undecodable,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn summary(&self) -> String {
        format!(
            "{} changes, {} missed, {} undecodable, {} lost",
            self.changes.load(Ordering::Relaxed),
            self.missed.load(Ordering::Relaxed),
            self.undecodable.load(Ordering::Relaxed),
            self.lost.load(Ordering::Relaxed)
        )
    }
}

/// How many posts the run keeps at most: beyond, every transaction deletes one, so that
/// neither the database nor the run's own bookkeeping grows without bound.
const LIVE_POSTS: usize = 1000;

/// One writer's transactions until `until`: a post saved, updated and given two comments;
/// every third transaction (every one, past `LIVE_POSTS`) also deletes an earlier post, its
/// comments by cascade; every fifth is rolled back.
fn write(store: &Store, until: Instant, done: &Mutex<Vec<Id>>, committed: &Committed) {
    let mut i = 0u64;
    while Instant::now() < until {
        i += 1;
        let victim = {
            let mut done = done.lock().unwrap();
            if i.is_multiple_of(3) || done.len() > LIVE_POSTS {
                // The oldest, so that the posts deleted are spread over the run.
                (!done.is_empty()).then(|| done.swap_remove(0))
            } else {
                None
            }
        };
        let result = store.transaction(|tx| {
            let saved = tx.save(post(&format!("soak {i}"), 1))?;
            let saved = tx.save(Post {
                rating: (i % 10) as i32 + 2,
                ..saved
            })?;
            tx.save(comment(&saved, "one"))?;
            tx.save(comment(&saved, "two"))?;
            if let Some(victim) = victim {
                tx.delete_by_id::<Post>(&victim)?;
            }
            if i.is_multiple_of(5) {
                return Err(Error::NotFound {
                    table: "rolled back".into(),
                    key: i.to_string(),
                });
            }
            Ok(saved.id)
        });
        match result {
            Ok(id) => {
                let deleted = u64::from(victim.is_some());
                committed.transactions.fetch_add(1, Ordering::Relaxed);
                committed
                    .post_changes
                    .fetch_add(2 + deleted, Ordering::Relaxed);
                committed
                    .comment_changes
                    .fetch_add(2 + 2 * deleted, Ordering::Relaxed);
                done.lock().unwrap().push(id);
            }
            Err(Error::NotFound { .. }) => {
                committed.rolled_back.fetch_add(1, Ordering::Relaxed);
                if let Some(victim) = victim {
                    done.lock().unwrap().push(victim);
                }
            }
            Err(e) if e.is_retryable() => {
                if let Some(victim) = victim {
                    done.lock().unwrap().push(victim);
                }
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// Reads `next` until `stop` and then until nothing came for a while.
fn drain<T>(stop: &AtomicBool, received: &Received, next: impl Fn() -> Option<Observed<T>>) {
    let mut quiet_since = None;
    loop {
        match next() {
            Some(observed) => {
                received.count(observed);
                quiet_since = None;
            }
            None if stop.load(Ordering::Relaxed) => {
                let since = *quiet_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(3) {
                    return;
                }
            }
            None => {}
        }
    }
}

fn soak(name: &str, store: Store) {
    let run = duration();
    let store = Arc::new(store);
    let committed = Arc::new(Committed::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (posts_seen, comments_seen, all_seen) = (
        Arc::new(Received::default()),
        Arc::new(Received::default()),
        Arc::new(Received::default()),
    );
    let results = Arc::new(AtomicU64::new(0));
    let churned = Arc::new(AtomicU64::new(0));
    let wait = Duration::from_millis(200);

    let mut threads = Vec::new();
    {
        let (sub, seen, stop) = (
            store.observe::<Post>().unwrap(),
            posts_seen.clone(),
            stop.clone(),
        );
        threads.push(thread::spawn(move || {
            drain(&stop, &seen, || sub.recv_timeout(wait))
        }));
    }
    {
        let sub = store.observe::<Comment>().unwrap();
        let (seen, stop) = (comments_seen.clone(), stop.clone());
        threads.push(thread::spawn(move || {
            drain(&stop, &seen, || sub.recv_timeout(wait))
        }));
    }
    {
        let sub = store.observe_all().unwrap();
        let (seen, stop) = (all_seen.clone(), stop.clone());
        threads.push(thread::spawn(move || {
            drain(&stop, &seen, || sub.recv_timeout(wait))
        }));
    }
    {
        // A live query, read as fast as it changes.
        let mut top = store
            .observe_query::<Post>(|q| {
                q.filter(posts::rating.gt(8))
                    .order(posts::id.desc())
                    .limit(20)
            })
            .unwrap();
        let (results, stop) = (results.clone(), stop.clone());
        threads.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match top.recv_timeout(wait) {
                    Some(Ok(_)) => {
                        results.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Err(e)) => panic!("live query: {e}"),
                    None => {}
                }
            }
        }));
    }
    {
        // Subscriptions made and dropped all along: nothing of them may stay behind.
        let (store, churned, stop) = (store.clone(), churned.clone(), stop.clone());
        threads.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let sub = store
                    .observe_where(|c: &Comment| c.content.is_some())
                    .unwrap();
                let _ = sub.recv_timeout(Duration::from_millis(50));
                drop(sub);
                churned.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    let started = Instant::now();
    let until = started + run;
    let done = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (store, done, committed) = (store.clone(), done.clone(), committed.clone());
            thread::spawn(move || write(&store, until, &done, &committed))
        })
        .collect();

    let mut samples = Vec::new();
    let mut recorded = Vec::new();
    let every = (run / 10).max(Duration::from_secs(1));
    while Instant::now() < until {
        thread::sleep(every.min(until.saturating_duration_since(Instant::now())));
        let (now, _) = rss();
        samples.push((started.elapsed().as_secs(), now / 1024));
        if let Some(table) = change_table(&store) {
            recorded.push((started.elapsed().as_secs(), table));
        }
    }
    for writer in writers {
        writer.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let (end, peak) = rss();

    let post_changes = committed.post_changes.load(Ordering::Relaxed);
    let comment_changes = committed.comment_changes.load(Ordering::Relaxed);
    println!("soak {name}: {} s, {WRITERS} writers", run.as_secs());
    println!(
        "  committed: {} transactions ({} rolled back), {post_changes} post changes, \
         {comment_changes} comment changes",
        committed.transactions.load(Ordering::Relaxed),
        committed.rolled_back.load(Ordering::Relaxed),
    );
    println!("  observe::<Post>:    {}", posts_seen.summary());
    println!("  observe::<Comment>: {}", comments_seen.summary());
    println!("  observe_all:        {}", all_seen.summary());
    println!(
        "  observe_query: {} results; {} subscriptions made and dropped",
        results.load(Ordering::Relaxed),
        churned.load(Ordering::Relaxed)
    );
    println!(
        "  RSS MiB by second: {}; at the end {} MiB, peak {} MiB",
        samples
            .iter()
            .map(|(s, mib)| format!("{s}:{mib}"))
            .collect::<Vec<_>>()
            .join(" "),
        end / 1024,
        peak / 1024
    );

    if !recorded.is_empty() {
        println!(
            "  PostgreSQL's change table (rows, kB) by second: {}",
            recorded
                .iter()
                .map(|(s, (rows, kb))| format!("{s}:({rows}, {kb})"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        // Changes are kept ten minutes after their transaction ended: past that, the table
        // stops growing (it holds about the last ten minutes' changes).
        if run > Duration::from_secs(15 * 60) {
            let rows_at = |secs: u64| {
                recorded
                    .iter()
                    .find(|(s, _)| *s >= secs)
                    .map_or(0, |(_, (rows, _))| *rows)
            };
            let (at_12_min, last) = (rows_at(12 * 60), recorded.last().unwrap().1 .0);
            assert!(
                last < at_12_min + at_12_min / 4,
                "the change table kept growing: {at_12_min} rows at 12 min, {last} at the end"
            );
        }
    }

    let counts: HashMap<&str, (u64, &Received)> = HashMap::from([
        ("posts", (post_changes, &*posts_seen)),
        ("comments", (comment_changes, &*comments_seen)),
        ("all", (post_changes + comment_changes, &*all_seen)),
    ]);
    for (what, (want, seen)) in counts {
        assert_eq!(
            seen.changes.load(Ordering::Relaxed),
            want,
            "{what}: every committed change, once"
        );
        assert_eq!(seen.missed.load(Ordering::Relaxed), 0, "{what}");
        assert_eq!(seen.undecodable.load(Ordering::Relaxed), 0, "{what}");
        assert_eq!(seen.lost.load(Ordering::Relaxed), 0, "{what}");
    }
    assert_eq!(store.subscriptions(), 0, "every subscription was dropped");
}

/// On PostgreSQL, how many rows the change table holds, and its size in kB (its indexes
/// included).
fn change_table(store: &Store) -> Option<(i64, i64)> {
    use datastore::diesel::sql_types::BigInt;
    #[derive(datastore::diesel::QueryableByName)]
    struct Size {
        #[diesel(sql_type = BigInt)]
        rows: i64,
        #[diesel(sql_type = BigInt)]
        kb: i64,
    }
    if store.dialect() != Dialect::Postgres {
        return None;
    }
    let size: Vec<Size> = datastore::diesel::RunQueryDsl::load(
        datastore::diesel::sql_query(
            "SELECT count(*) AS rows, \
             pg_total_relation_size('datastore_change_payloads') / 1024 AS kb \
             FROM datastore_change_payloads",
        ),
        &mut *store.conn().unwrap(),
    )
    .unwrap();
    size.first().map(|s| (s.rows, s.kb))
}

fn builder(url: &str) -> datastore::StoreBuilder {
    Store::builder(url)
        .migrations(datastore::embed_migrations!())
        .pool_size(WRITERS as u32 + 2)
        .observe_buffer(1 << 20)
}

#[test]
#[ignore = "minutes long: run with --ignored (see the module's documentation)"]
fn soak_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = builder(&dir.path().join("soak.db").display().to_string())
        .open()
        .unwrap();
    soak("SQLite (WAL file)", store);
}

#[test]
#[ignore = "minutes long: run with --ignored (see the module's documentation)"]
fn soak_postgres() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    let schema = common::PgSchema::new(&url);
    let store = builder(schema.url()).open().unwrap();
    soak("PostgreSQL", store);
}
