//! What observe costs on PostgreSQL, on each of its change feeds: row triggers recording each
//! change and a `NOTIFY` per transaction, and logical decoding of the server's WAL streamed
//! to a temporary slot (which needs `wal_level = logical`: `.ci/run` sets it):
//!
//! - **per written row**: 1,000 single-row inserts in one transaction into a table nobody
//!   observes and into one observed by each feed, with a draining subscriber;
//! - **per statement**: one set-based `INSERT .. SELECT`, `UPDATE` and `DELETE` of 10,000
//!   rows each, on a table nobody observes and on one observed by each feed;
//! - **commit to delivery**: single-row saves, each timed until its change arrives (p50, p99);
//! - **8 concurrent writers**: eight threads saving single rows in their own transactions,
//!   through one store with a pool of 8, unobserved and with a subscriber on each feed: the
//!   throughput of each and the p99 of a save. PostgreSQL queues notifications under one
//!   server-wide lock held until after the commit, so this is where the trigger feed caps
//!   the write throughput of a server, and the logical decoding feed must not.
//!
//! Each configuration has a schema of its own on the server, so that the unobserved tables
//! never had a trigger. The throughput runs alternate between the configurations.
//!
//! ```sh
//! DATASTORE_POSTGRES_URL=postgres://root@127.0.0.1:5432/test \
//!     cargo bench -p datastore-benches --bench observe_postgres
//! ```
//!
//! Without `DATASTORE_POSTGRES_URL` it says so and measures nothing.

#[path = "../examples/blog/models.rs"]
#[allow(dead_code)]
mod models;
// Schemas of their own on the server, as the tests make them.
#[path = "../tests/common/pg_schema.rs"]
#[allow(dead_code)]
mod pg_schema;
// Waiting for the subscribers (`Draining::wait_for`) is the observe bench's, not this one's.
#[allow(dead_code)]
mod observing;

use std::time::{Duration, Instant};

use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use datastore::diesel::connection::SimpleConnection;
use datastore::diesel::Connection;
use datastore::observe::ChangeFeed;
use datastore::prelude::*;
use models::{posts, Post};
use observing::Draining;
use pg_schema::PgSchema;

/// Rows per transaction in the per-row workload.
const ROWS: usize = 1_000;
/// Writer threads, and the pool they share.
const WRITERS: usize = 8;
/// Saves each writer makes in one throughput run.
const SAVES_PER_WRITER: usize = 250;
/// Throughput runs per configuration (interleaved).
const RUNS: usize = 3;

/// A store on a schema of its own, dropped afterwards.
struct Schema {
    store: Store,
    /// Dropped after the store.
    _schema: PgSchema,
}

impl Schema {
    fn new(server: &str, feed: ChangeFeed) -> Self {
        let schema = PgSchema::with_prefix(server, pg_schema::BENCH_SCHEMA_PREFIX);
        let store = Store::builder(schema.url())
            .migrations(datastore::embed_migrations!(
                sqlite = "../migrations/sqlite",
                postgres = "../migrations/postgres"
            ))
            .pool_size(WRITERS as u32)
            .observe_buffer(1 << 20)
            .change_feed(feed)
            .open()
            .unwrap();
        Self {
            store,
            _schema: schema,
        }
    }

    fn clear(&self) {
        let mut conn = self.store.conn().unwrap();
        conn.batch_execute("DELETE FROM posts").unwrap();
        conn.batch_execute("VACUUM ANALYZE posts").unwrap();
    }
}

fn rows(n: usize) -> Vec<Post> {
    (0..n)
        .map(|i| Post {
            title: format!("post {i}"),
            rating: i as i32,
            ..Post::default()
        })
        .collect()
}

/// The single-row inserts of one transaction, on the store's PostgreSQL connection.
fn insert_all(store: &Store, rows: Vec<Post>) {
    let mut conn = store.conn().unwrap();
    let datastore::AnyConnection::Postgres(conn) = &mut *conn else {
        unreachable!("the benchmark store is PostgreSQL")
    };
    conn.transaction(|conn| {
        for row in &rows {
            diesel::insert_into(posts::table)
                .values(row)
                .execute(conn)?;
        }
        diesel::QueryResult::Ok(())
    })
    .unwrap();
}

/// The configurations compared: no observe, and each feed with one subscriber.
const LABELS: [&str; 3] = [
    "no observe",
    "trigger feed, 1 subscriber",
    "logical decoding feed, 1 subscriber",
];

fn per_row(c: &mut Criterion, schemas: &[Schema; 3]) {
    let mut group = c.benchmark_group("PostgreSQL observe/1000 inserts in one transaction");
    group
        .throughput(Throughput::Elements(ROWS as u64))
        .sample_size(20);
    for (schema, label) in schemas.iter().zip(LABELS) {
        let _draining = (label != LABELS[0]).then(|| Draining::start(&schema.store, 1));
        group.bench_function(label, |b| {
            b.iter_batched(
                || rows(ROWS),
                |rows| insert_all(&schema.store, rows),
                BatchSize::LargeInput,
            )
        });
        schema.clear();
    }
    group.finish();
}

/// The statements of 10,000 rows each that [`per_statement`] times.
const STATEMENT_ROWS: usize = 10_000;

/// What each configuration costs a set-based statement changing [`STATEMENT_ROWS`] rows:
/// the trigger feed's row triggers render, record and announce every row; logical decoding
/// adds nothing to the statement (the WAL is read after the commit).
fn per_statement(c: &mut Criterion, schemas: &[Schema; 3]) {
    let insert = format!(
        "INSERT INTO posts (id, title, rating, status, body, created_at, updated_at) \
         SELECT gen_random_uuid(), 'post ' || i, i, 'Active', repeat('b', 100), now(), now() \
         FROM generate_series(1, {STATEMENT_ROWS}) AS i"
    );
    let statements = [
        ("INSERT .. SELECT", insert.as_str()),
        ("UPDATE", "UPDATE posts SET rating = rating + 1"),
        ("DELETE", "DELETE FROM posts"),
    ];
    for (name, sql) in statements {
        let mut group = c.benchmark_group(format!(
            "PostgreSQL observe/one {name} statement of {STATEMENT_ROWS} rows"
        ));
        group
            .throughput(Throughput::Elements(STATEMENT_ROWS as u64))
            .sample_size(10);
        for (schema, label) in schemas.iter().zip(LABELS) {
            let _draining = (label != LABELS[0]).then(|| Draining::start(&schema.store, 1));
            let mut conn = schema.store.conn().unwrap();
            group.bench_function(label, |b| {
                b.iter_custom(|iterations| {
                    let mut took = Duration::ZERO;
                    for _ in 0..iterations {
                        // Each statement on the table as it finds it in an application: the
                        // insert on an empty one, the others on the rows it inserted.
                        conn.batch_execute("DELETE FROM posts").unwrap();
                        if name != "INSERT .. SELECT" {
                            conn.batch_execute(&insert).unwrap();
                        }
                        let started = Instant::now();
                        conn.batch_execute(sql).unwrap();
                        took += started.elapsed();
                    }
                    took
                })
            });
            drop(conn);
            schema.clear();
        }
        group.finish();
    }
}

/// One throughput run: `WRITERS` threads each saving `SAVES_PER_WRITER` rows, one transaction
/// each. Returns saves per second and every save's duration.
fn writers(store: &Store) -> (f64, Vec<Duration>) {
    let start = Instant::now();
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut took = Vec::with_capacity(SAVES_PER_WRITER);
                for i in 0..SAVES_PER_WRITER {
                    let post = Post {
                        title: format!("writer {w} post {i}"),
                        ..Post::default()
                    };
                    let started = Instant::now();
                    store.save(post).unwrap();
                    took.push(started.elapsed());
                }
                took
            })
        })
        .collect();
    let took: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let elapsed = start.elapsed();
    (took.len() as f64 / elapsed.as_secs_f64(), took)
}

fn concurrent_writers(schemas: &[Schema; 3]) {
    let _draining: Vec<Draining> = schemas[1..]
        .iter()
        .map(|schema| Draining::start(&schema.store, 1))
        .collect();
    let mut results: [(Vec<f64>, Vec<Duration>); 3] = Default::default();
    // One warm-up run each, then interleaved runs.
    for schema in schemas {
        writers(&schema.store);
        schema.clear();
    }
    for _ in 0..RUNS {
        for (i, schema) in schemas.iter().enumerate() {
            let (rate, took) = writers(&schema.store);
            results[i].0.push(rate);
            results[i].1.extend(took);
            schema.clear();
        }
    }
    let mut medians = [0.0; 3];
    for (i, label) in LABELS.into_iter().enumerate() {
        let (rates, took) = &mut results[i];
        rates.sort_by(f64::total_cmp);
        took.sort();
        medians[i] = rates[rates.len() / 2];
        println!(
            "PostgreSQL observe/{WRITERS} concurrent writers, single-row saves, {label}: \
             {:.0} saves/s (median of {RUNS} runs: {}), p50 {:?}, p99 {:?}",
            medians[i],
            rates
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(", "),
            observing::percentile(took, 0.50),
            observing::percentile(took, 0.99)
        );
    }
    for i in 1..3 {
        println!(
            "PostgreSQL observe/{WRITERS} concurrent writers, {}: throughput {:.2}x slower than \
             no observe",
            LABELS[i],
            medians[0] / medians[i]
        );
    }
}

fn benches(c: &mut Criterion) {
    let Ok(server) = std::env::var("DATASTORE_POSTGRES_URL") else {
        println!(
            "PostgreSQL observe benchmarks not run: DATASTORE_POSTGRES_URL is not set \
             (e.g. postgres://root@127.0.0.1:5432/test)"
        );
        return;
    };
    let schemas = [
        Schema::new(&server, ChangeFeed::Triggers),
        Schema::new(&server, ChangeFeed::Triggers),
        Schema::new(&server, ChangeFeed::LogicalDecoding),
    ];
    per_row(c, &schemas);
    per_statement(c, &schemas);
    for (schema, label) in schemas[1..].iter().zip(&LABELS[1..]) {
        observing::latency(&schema.store, &format!("PostgreSQL observe, {label}"));
        schema.clear();
    }
    concurrent_writers(&schemas);
}

criterion_group!(group, benches);

fn main() {
    group();
    Criterion::default().configure_from_args().final_summary();
}
