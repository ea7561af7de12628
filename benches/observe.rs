//! What observe costs: bulk inserts in one transaction with 0, 1 and 10 subscribers, beside
//! the same inserts on a plain Diesel connection without any hook; and the latency from a
//! commit to its delivery.
//!
//! `cargo bench -p datastore-benches --bench observe`; with `DATASTORE_BENCH_PAIRED=1` the
//! store's configurations and the plain connection are timed in turn instead, round by round
//! (as the workloads are: `workloads/paired.rs`), and printed as a table of ratios.

#[path = "../examples/blog/models.rs"]
#[allow(dead_code)]
mod models;
mod observing;
#[path = "workloads/paired.rs"]
#[allow(dead_code)]
mod paired;

use std::time::{Duration, Instant};

use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use datastore::diesel::connection::SimpleConnection;
use datastore::diesel::{Connection, SqliteConnection};
use datastore::diesel_migrations::{self, MigrationHarness};
use datastore::prelude::*;
use models::{posts, Post};

/// Writes per transaction.
const ROWS: usize = 10_000;

fn rows() -> Vec<Post> {
    (0..ROWS)
        .map(|i| Post {
            title: format!("post {i}"),
            rating: i as i32,
            ..Post::default()
        })
        .collect()
}

fn open_store(dir: &tempfile::TempDir) -> Store {
    let path = dir.path().join("bench.db").display().to_string();
    Store::builder(path)
        .migrations(datastore::embed_migrations!(
            sqlite = "../migrations/sqlite",
            postgres = "../migrations/postgres"
        ))
        .synchronous(datastore::Synchronous::Normal)
        .observe_buffer(1 << 20)
        .open()
        .unwrap()
}

const SQLITE_MIGRATIONS: diesel_migrations::EmbeddedMigrations =
    diesel_migrations::embed_migrations!("../migrations/sqlite");

/// The SQLite connection inside a store's: hooks are what is measured here, not dispatch.
fn sqlite(conn: &mut datastore::AnyConnection) -> &mut SqliteConnection {
    match conn {
        datastore::AnyConnection::Sqlite(conn) => conn,
        _ => unreachable!("the benchmark store is SQLite"),
    }
}

/// A plain Diesel connection on a WAL file in `dir`, as the store opens its own, without hooks.
fn plain_connection(dir: &tempfile::TempDir) -> SqliteConnection {
    let mut plain =
        SqliteConnection::establish(&dir.path().join("plain.db").display().to_string()).unwrap();
    plain
        .batch_execute(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON",
        )
        .unwrap();
    plain.run_pending_migrations(SQLITE_MIGRATIONS).unwrap();
    plain
}

fn insert_all(conn: &mut SqliteConnection, rows: Vec<Post>) {
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

fn bulk_insert(c: &mut Criterion) {
    let mut group = c.benchmark_group("observe/bulk insert 10000 rows in one transaction");
    group
        .throughput(Throughput::Elements(ROWS as u64))
        .sample_size(20);

    let dir = tempfile::tempdir().unwrap();
    let mut plain = plain_connection(&dir);
    group.bench_function("plain diesel, no hooks", |b| {
        b.iter_batched(
            rows,
            |rows| insert_all(&mut plain, rows),
            BatchSize::LargeInput,
        )
    });

    {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir);
        let idle = store.observe::<Post>().unwrap();
        let mut conn = store.conn().unwrap();
        // The same, with the subscriber read on the writer's thread: capture and decoding alone,
        // without a second thread competing for the machine.
        group.bench_function("store, 1 subscriber read in turn", |b| {
            b.iter_batched(
                rows,
                |rows| {
                    insert_all(sqlite(&mut conn), rows);
                    while idle.try_recv().is_some() {}
                },
                BatchSize::LargeInput,
            )
        });
    }
    for subscribers in [0, 1, 10] {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir);
        let _draining = observing::Draining::start(&store, subscribers);
        let mut conn = store.conn().unwrap();
        let plural = if subscribers == 1 { "" } else { "s" };
        group.bench_function(format!("store, {subscribers} subscriber{plural}"), |b| {
            b.iter_batched(
                rows,
                |rows| insert_all(sqlite(&mut conn), rows),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

/// One way of inserting a transaction's rows, under the name it is reported by.
type Insert<'a> = Box<dyn FnMut(Vec<Post>) + 'a>;

/// The bulk insert timed in turn on the plain connection and the store with 0, 1 and 10
/// subscribers (drained on their own threads) and with 1 read on the writer's thread: one
/// batch of each a round, the ratios taken within the round.
fn bulk_insert_paired() {
    let dir = tempfile::tempdir().unwrap();
    let mut plain = plain_connection(&dir);
    // Each store on a file of its own, kept open (with its subscribers) through the rounds.
    let stores: Vec<(tempfile::TempDir, Store)> = (0..4)
        .map(|_| {
            let dir = tempfile::tempdir().unwrap();
            let store = open_store(&dir);
            (dir, store)
        })
        .collect();
    let draining: Vec<_> = [0, 1, 10]
        .iter()
        .zip(&stores)
        .map(|(&count, (_, store))| observing::Draining::start(store, count))
        .collect();
    let read_in_turn = stores[3].1.observe::<Post>().unwrap();
    let mut conns: Vec<_> = stores.iter().map(|(_, s)| s.conn().unwrap()).collect();
    let [none, one, ten, one_read] = &mut conns[..] else {
        unreachable!("four stores")
    };
    // Each with the subscribers it waits for after each transaction, outside the timing: left
    // running, their decoding would fall in the timing of whichever configuration comes next.
    let mut subjects: Vec<(&str, Insert<'_>, Option<&observing::Draining>)> = vec![
        (
            "store, 0 subscribers",
            Box::new(|rows| insert_all(sqlite(none), rows)),
            None,
        ),
        (
            "plain diesel, no hooks",
            Box::new(|rows| insert_all(&mut plain, rows)),
            None,
        ),
        (
            "store, 1 subscriber",
            Box::new(|rows| insert_all(sqlite(one), rows)),
            Some(&draining[1]),
        ),
        (
            "store, 10 subscribers",
            Box::new(|rows| insert_all(sqlite(ten), rows)),
            Some(&draining[2]),
        ),
        (
            "store, 1 subscriber read in turn",
            Box::new(|rows| {
                insert_all(sqlite(one_read), rows);
                while read_in_turn.try_recv().is_some() {}
            }),
            None,
        ),
    ];
    // A batch of one transaction: each takes tens of milliseconds.
    let rounds = paired::Rounds::measure(
        &mut subjects,
        Duration::ZERO,
        |(_, insert, drained_by), n| {
            let drained_by: Option<&observing::Draining> = *drained_by;
            let mut total = Duration::ZERO;
            for _ in 0..n {
                let rows = rows();
                let before = drained_by.map(|d| d.received());
                let start = Instant::now();
                insert(rows);
                total += start.elapsed();
                if let (Some(draining), Some(before)) = (drained_by, before) {
                    draining.wait_for(before, ROWS as u64);
                }
            }
            total
        },
    );
    println!("| workload | rows | datastore | datastore / no subscriber | datastore / plain connection |");
    println!("| --- | --- | --- | --- | --- |");
    for (i, (name, ..)) in subjects.iter().enumerate() {
        println!(
            "| observe/bulk insert {ROWS} rows in one transaction | {name} | {} | {:.2}x | {:.2}x |",
            paired::format_time(rounds.time(i)),
            rounds.ratio(i, 0),
            rounds.ratio(i, 1),
        );
    }
}

criterion_group!(benches, bulk_insert);

fn main() {
    if paired::enabled() {
        return bulk_insert_paired();
    }
    benches();
    let dir = tempfile::tempdir().unwrap();
    observing::latency(&open_store(&dir), "observe");
    Criterion::default().configure_from_args().final_summary();
}
