//! What observe costs: bulk inserts in one transaction with 0, 1 and 10 subscribers, beside
//! the same inserts on a plain Diesel connection without any hook; and the latency from a
//! commit to its delivery.
//!
//! `cargo bench -p datastore-benches --bench observe`

#[path = "../examples/blog/models.rs"]
#[allow(dead_code)]
mod models;
mod observing;

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
    let mut plain =
        SqliteConnection::establish(&dir.path().join("plain.db").display().to_string()).unwrap();
    plain
        .batch_execute(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON",
        )
        .unwrap();
    plain.run_pending_migrations(SQLITE_MIGRATIONS).unwrap();
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

criterion_group!(benches, bulk_insert);

fn main() {
    benches();
    let dir = tempfile::tempdir().unwrap();
    observing::latency(&open_store(&dir), "observe");
    Criterion::default().configure_from_args().final_summary();
}
