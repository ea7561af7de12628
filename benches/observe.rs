//! What observe costs: bulk inserts in one transaction with 0, 1 and 10 subscribers, beside
//! the same inserts on a plain Diesel connection without any hook, and on one with only the
//! hooks the store's capture installs doing what SQLite makes them do (`capture_floor.rs`: the
//! floor of any capture through SQLite's interfaces); and the latency from a commit to its
//! delivery.
//!
//! `cargo bench -p datastore-benches --bench observe`; with `DATASTORE_BENCH_PAIRED=1` the
//! store's configurations and the plain connection are timed in turn instead, round by round
//! (as the workloads are: `workloads/paired.rs`), and printed as a table of ratios.

#[path = "capture_floor.rs"]
#[allow(dead_code)]
mod capture_floor;
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

/// A store on the database at `url` (a file in WAL mode, or an in-memory one).
fn open_store(url: &str) -> Store {
    Store::builder(url)
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

/// A plain Diesel connection to `url`, without hooks, set up as the store sets up its own.
fn plain_connection(url: &str) -> SqliteConnection {
    let mut plain = SqliteConnection::establish(url).unwrap();
    set_up_plain(&mut plain);
    plain
}

/// A plain connection's database as the store sets up its own: WAL (where it is a file),
/// `synchronous = NORMAL`, foreign keys on, the blog's tables.
fn set_up_plain(plain: &mut SqliteConnection) {
    plain
        .batch_execute(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON",
        )
        .unwrap();
    plain.run_pending_migrations(SQLITE_MIGRATIONS).unwrap();
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
    let mut plain = plain_connection(&Storage::WalFile.database(&dir, "plain.db"));
    group.bench_function("plain diesel, no hooks", |b| {
        b.iter_batched(
            rows,
            |rows| insert_all(&mut plain, rows),
            BatchSize::LargeInput,
        )
    });
    let mut floor = capture_floor::diesel_with_floor(
        &Storage::WalFile.database(&dir, "floor.db"),
        capture_floor::Floor::CopyStarts,
    );
    set_up_plain(&mut floor);
    group.bench_function("plain diesel, SQLite's capture floor", |b| {
        b.iter_batched(
            rows,
            |rows| insert_all(&mut floor, rows),
            BatchSize::LargeInput,
        )
    });

    {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&Storage::WalFile.database(&dir, "bench.db"));
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
        let store = open_store(&Storage::WalFile.database(&dir, "bench.db"));
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

/// Where the paired runs' databases are: each subject's its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Storage {
    /// A WAL file, as the store opens a file.
    WalFile,
    /// An in-memory database.
    Memory,
}

impl Storage {
    /// The group the table names.
    fn group(self) -> &'static str {
        match self {
            Storage::WalFile => "observe/bulk insert 10000 rows in one transaction",
            Storage::Memory => "observe/in memory: bulk insert 10000 rows in one transaction",
        }
    }

    /// A database of its own, named `name` in `dir` where it is a file; in memory, one of
    /// SQLite's `memdb` VFS, as the store makes of `:memory:` (its pool shares it).
    fn database(self, dir: &tempfile::TempDir, name: &str) -> String {
        match self {
            Storage::WalFile => dir.path().join(name).display().to_string(),
            Storage::Memory => format!("file:/observe-{}?vfs=memdb", Id::new()),
        }
    }
}

/// The bulk insert timed in turn on the plain connection and the store with 0, 1 and 10
/// subscribers (drained on their own threads) and with 1 read on the writer's thread: one
/// batch of each a round, the ratios taken within the round; then a plain connection again,
/// in turn with one that has SQLite's capture floor. On WAL files, then in memory.
fn bulk_insert_paired() {
    println!("| workload | rows | datastore | datastore / no subscriber | datastore / plain connection |");
    println!("| --- | --- | --- | --- | --- |");
    for storage in [Storage::WalFile, Storage::Memory] {
        bulk_insert_paired_on(storage);
    }
}

fn bulk_insert_paired_on(storage: Storage) {
    let dir = tempfile::tempdir().unwrap();
    let mut plain = plain_connection(&storage.database(&dir, "plain.db"));
    // Each store on a database of its own, kept open (with its subscribers) through the rounds.
    let stores: Vec<(tempfile::TempDir, Store)> = (0..4)
        .map(|_| {
            let dir = tempfile::tempdir().unwrap();
            let store = open_store(&storage.database(&dir, "bench.db"));
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
    let mut subjects: Vec<Subject<'_>> = vec![
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
    let rounds = timed_in_turn(&mut subjects);
    for (i, (name, ..)) in subjects.iter().enumerate() {
        print_row(storage, name, &rounds, i, Some(0), 1);
    }
    drop(subjects);
    // SQLite's part of any capture through its interfaces, timed in rounds of its own: a sixth
    // subject in the rounds above would change every subject's time (BENCHMARKS.md, "Where a
    // database's file lies").
    for floor_first in [false, true] {
        floor_paired_on(storage, &dir, floor_first);
    }
}

/// The plain connection timed in turn with one that has SQLite's capture floor
/// (`capture_floor.rs`: the hooks the store installs doing only what SQLite makes them do,
/// statements' starts only, as the store traces them), each on a new database; the floor's
/// transactions first if `floor_first` (the rounds begin with each subject's first transactions,
/// in the subjects' order). On a file, the connection that writes first can take up to a tenth
/// longer for no other reason (BENCHMARKS.md, "Where a database's file lies"): the floor is
/// timed in both orders, each reported.
fn floor_paired_on(storage: Storage, dir: &tempfile::TempDir, floor_first: bool) {
    // The floor's place among the subjects, and its row's name.
    let (floor, name) = if floor_first {
        (0, "plain diesel, SQLite's capture floor, writing first")
    } else {
        (1, "plain diesel, SQLite's capture floor, writing second")
    };
    let mut plain = plain_connection(&storage.database(dir, &format!("plain-{floor}.db")));
    let mut floor_conn = capture_floor::diesel_with_floor(
        &storage.database(dir, &format!("floor-{floor}.db")),
        capture_floor::Floor::CopyStarts,
    );
    set_up_plain(&mut floor_conn);
    let mut subjects: Vec<Subject<'_>> = vec![(
        "plain diesel, no hooks",
        Box::new(|rows| insert_all(&mut plain, rows)),
        None,
    )];
    subjects.insert(
        floor,
        (
            name,
            Box::new(|rows| insert_all(&mut floor_conn, rows)),
            None,
        ),
    );
    let rounds = timed_in_turn(&mut subjects);
    print_row(storage, name, &rounds, floor, None, 1 - floor);
}

/// A paired subject: its name, its transaction, and the subscribers it waits for after it.
type Subject<'a> = (&'static str, Insert<'a>, Option<&'a observing::Draining>);

/// Each subject's transaction timed in turn, round by round (one transaction a batch: each
/// takes tens of milliseconds), its subscribers waited for outside the timing.
fn timed_in_turn(subjects: &mut [Subject<'_>]) -> paired::Rounds {
    paired::Rounds::measure(subjects, Duration::ZERO, |(_, insert, drained_by), n| {
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
    })
}

/// Subject `i`'s row of the table: its time, and its ratios to the store without a subscriber
/// (subject `none`, where timed in the same rounds) and to the plain connection (`plain`).
fn print_row(
    storage: Storage,
    name: &str,
    rounds: &paired::Rounds,
    i: usize,
    none: Option<usize>,
    plain: usize,
) {
    println!(
        "| {} | {name} | {} | {} | {:.2}x |",
        storage.group(),
        paired::format_time(rounds.time(i)),
        none.map_or("–".to_owned(), |none| format!(
            "{:.2}x",
            rounds.ratio(i, none)
        )),
        rounds.ratio(i, plain),
    );
}

criterion_group!(benches, bulk_insert);

fn main() {
    if paired::enabled() {
        return bulk_insert_paired();
    }
    benches();
    let dir = tempfile::tempdir().unwrap();
    observing::latency(
        &open_store(&Storage::WalFile.database(&dir, "bench.db")),
        "observe",
    );
    Criterion::default().configure_from_args().final_summary();
}
