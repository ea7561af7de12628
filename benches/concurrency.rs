//! Eight threads sharing one store, beside eight threads each holding its own Diesel
//! connection: the throughput of a mix of finds by id and saves, and the p99 of one operation.
//!
//! Each thread runs `OPS` operations: a find of a random post among the `SEEDED`, and every
//! tenth a save of a new post. Through the store the threads share its pool, of 4 and of 8
//! connections; with Diesel each thread holds a connection of its own (WAL mode and a busy
//! timeout on SQLite, as the store sets). The configurations alternate, run after run, on a
//! SQLite file in WAL mode and, when `DATASTORE_POSTGRES_URL` is set, on PostgreSQL.
//!
//! ```sh
//! DATASTORE_POSTGRES_URL=postgres://root@127.0.0.1:5432/test \
//!     cargo bench -p datastore-benches --bench concurrency
//! ```

#[path = "../examples/blog/models.rs"]
#[allow(dead_code)]
mod models;
// Schemas of their own on the server, as the tests make them.
#[path = "../tests/common/pg_schema.rs"]
#[allow(dead_code)]
mod pg_schema;

use std::sync::Arc;
use std::time::{Duration, Instant};

use datastore::diesel::connection::SimpleConnection;
use datastore::diesel::{Connection, PgConnection, SqliteConnection};
use datastore::prelude::*;
use models::{posts, Post};

const THREADS: usize = 8;
const OPS: usize = 2_000;
const SEEDED: usize = 1_000;
const RUNS: usize = 3;

/// Where a configuration runs.
#[derive(Clone)]
enum Database {
    Sqlite(String),
    Postgres(String),
}

impl Database {
    fn store(&self, pool: u32) -> Store {
        let url = match self {
            Database::Sqlite(url) | Database::Postgres(url) => url.clone(),
        };
        Store::builder(url)
            .migrations(datastore::embed_migrations!(
                sqlite = "../migrations/sqlite",
                postgres = "../migrations/postgres"
            ))
            .synchronous(datastore::Synchronous::Normal)
            .pool_size(pool)
            .open()
            .unwrap()
    }
}

/// One thread's operations; `find(i)` reads the `i`th seeded post, `save(post)` inserts one.
trait Worker: Send {
    fn find(&mut self, key: Id) -> Post;
    fn save(&mut self, post: Post);
}

struct StoreWorker(Store);

impl Worker for StoreWorker {
    fn find(&mut self, key: Id) -> Post {
        self.0.find::<Post>(&key).unwrap().unwrap()
    }
    fn save(&mut self, post: Post) {
        self.0.save(post).unwrap();
    }
}

enum DieselWorker {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

impl DieselWorker {
    fn open(database: &Database) -> Self {
        match database {
            Database::Sqlite(path) => {
                let mut conn = SqliteConnection::establish(path).unwrap();
                conn.batch_execute(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                     PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON",
                )
                .unwrap();
                DieselWorker::Sqlite(conn)
            }
            Database::Postgres(url) => {
                DieselWorker::Postgres(PgConnection::establish(url).unwrap())
            }
        }
    }
}

impl Worker for DieselWorker {
    fn find(&mut self, key: Id) -> Post {
        match self {
            DieselWorker::Sqlite(conn) => posts::table.find(key).get_result(conn).unwrap(),
            DieselWorker::Postgres(conn) => posts::table.find(key).get_result(conn).unwrap(),
        }
    }
    fn save(&mut self, post: Post) {
        match self {
            DieselWorker::Sqlite(conn) => {
                diesel::insert_into(posts::table)
                    .values(&post)
                    .execute(conn)
                    .unwrap();
            }
            DieselWorker::Postgres(conn) => {
                diesel::insert_into(posts::table)
                    .values(&post)
                    .execute(conn)
                    .unwrap();
            }
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// A small deterministic generator (xorshift), one per thread.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// One run: every thread's operations. Returns operations per second and each one's time.
fn run(workers: Vec<Box<dyn Worker>>, keys: &Arc<Vec<Id>>) -> (f64, Vec<Duration>) {
    let start = Instant::now();
    let threads: Vec<_> = workers
        .into_iter()
        .enumerate()
        .map(|(t, mut worker)| {
            let keys = keys.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1));
                let mut took = Vec::with_capacity(OPS);
                for i in 0..OPS {
                    let started = Instant::now();
                    if i % 10 == 9 {
                        worker.save(Post {
                            title: format!("thread {t} post {i}"),
                            ..Post::default()
                        });
                    } else {
                        std::hint::black_box(worker.find(keys[rng.below(keys.len())]));
                    }
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
    (took.len() as f64 / start.elapsed().as_secs_f64(), took)
}

fn measure(label: &str, database: &Database) {
    let stores = [database.store(4), database.store(8)];
    let keys: Arc<Vec<Id>> = Arc::new(
        stores[0]
            .insert_all(
                (0..SEEDED)
                    .map(|i| Post {
                        title: format!("seeded {i}"),
                        ..Post::default()
                    })
                    .collect(),
            )
            .unwrap()
            .into_iter()
            .map(|post| post.id)
            .collect(),
    );
    let configurations = [
        "store, pool of 4",
        "store, pool of 8",
        "Diesel, a connection per thread",
    ];
    let workers = |c: usize| -> Vec<Box<dyn Worker>> {
        (0..THREADS)
            .map(|_| match c {
                0 | 1 => Box::new(StoreWorker(stores[c].clone())) as Box<dyn Worker>,
                _ => Box::new(DieselWorker::open(database)),
            })
            .collect()
    };
    let mut results: Vec<(Vec<f64>, Vec<Duration>)> = vec![Default::default(); 3];
    for c in 0..3 {
        run(workers(c), &keys); // warm-up
    }
    for _ in 0..RUNS {
        for (c, result) in results.iter_mut().enumerate() {
            let (rate, took) = run(workers(c), &keys);
            result.0.push(rate);
            result.1.extend(took);
        }
    }
    let mut medians = Vec::new();
    for (c, (rates, took)) in results.iter_mut().enumerate() {
        rates.sort_by(f64::total_cmp);
        took.sort();
        medians.push(rates[RUNS / 2]);
        println!(
            "concurrency/{label}/{THREADS} threads, finds and 1 save in 10, {}: {:.0} ops/s \
             (runs: {}), p50 {:?}, p99 {:?}",
            configurations[c],
            rates[RUNS / 2],
            rates
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(", "),
            percentile(took, 0.50),
            percentile(took, 0.99)
        );
    }
    for c in 0..2 {
        println!(
            "concurrency/{label}/{}: {:.2}x the time of Diesel, a connection per thread",
            configurations[c],
            medians[2] / medians[c]
        );
    }
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("concurrency.db").display().to_string();
    measure("WAL file", &Database::Sqlite(path));
    match std::env::var("DATASTORE_POSTGRES_URL") {
        Ok(server) => {
            let schema = pg_schema::PgSchema::with_prefix(&server, pg_schema::BENCH_SCHEMA_PREFIX);
            measure("PostgreSQL", &Database::Postgres(schema.url().to_owned()));
        }
        Err(_) => println!(
            "concurrency/PostgreSQL not run: DATASTORE_POSTGRES_URL is not set \
             (e.g. postgres://root@127.0.0.1:5432/test)"
        ),
    }
}
