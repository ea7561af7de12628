//! The async store beside the blocking store and SeaORM (async), on a WAL file and on the
//! PostgreSQL server named by `DATASTORE_POSTGRES_URL` (when set): find by id among 10,000
//! posts, and eager loading of 100 posts with 10 comments each.
//!
//! First one task at a time (criterion; each call as a handler makes it: the blocking store
//! takes a pooled connection per call, the async store and SeaORM are awaited through
//! `block_on` on a current-thread runtime). Then 64 concurrent tasks on a pool of 8
//! connections for two seconds each: tasks on a two-thread tokio runtime for the async store
//! and SeaORM, 64 threads for the blocking store; throughput and latency percentiles, printed
//! and written to `target/criterion/async-concurrency.md`. Beside them, what the async store's
//! hop costs alone, and what lending a connection costs a find (`Store::conn`, which on
//! PostgreSQL ends a transaction its caller left open as it goes back, against `Store::find`).
//!
//! `cargo bench -p datastore-benches --bench async`; a quick run:
//! `cargo bench -p datastore-benches --bench async -- --warm-up-time 1 --measurement-time 2`.

// Schemas of their own on the server, as the tests make them.
#[path = "workloads/db.rs"]
#[allow(dead_code)]
mod db;
#[path = "workloads/forum.rs"]
#[allow(dead_code)]
mod forum;
#[path = "workloads/int_keyed.rs"]
#[allow(dead_code)]
mod int_keyed;
#[path = "../tests/common/pg_schema.rs"]
#[allow(dead_code)]
mod pg_schema;
#[path = "workloads/seaorm_blog.rs"]
#[macro_use]
mod seaorm_blog;
#[path = "../examples/blog/models.rs"]
#[allow(dead_code)]
mod models;

use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use datastore::prelude::*;
use sea_orm::{ConnectOptions, Database, DatabaseConnection};

use db::{Backend, Db};
use models::Post;

/// Posts among which one is found.
const FIND_AMONG: usize = 10_000;
/// Eager loading: posts, and comments per post.
const EAGER: (usize, usize) = (100, 10);
/// Concurrent tasks, and the pool they share.
const TASKS: usize = 64;
const POOL: u32 = 8;
/// How long each concurrent row runs.
const CONCURRENT_FOR: Duration = Duration::from_secs(2);

/// SeaORM's peer per backend: the blog's entities (`workloads/seaorm_blog.rs`) and the two
/// operations measured here.
macro_rules! entities {
    ($backend:ident, key: $key:ty, time: $time:ty) => {
        pub mod $backend {
            seaorm_blog_entities!(key: $key, time: $time);

            use sea_orm::{DatabaseConnection, EntityTrait, LoaderTrait, QueryOrder};

            pub async fn find(db: &DatabaseConnection, key: $key) -> usize {
                post::Entity::find_by_id(key)
                    .one(db)
                    .await
                    .unwrap()
                    .into_iter()
                    .count()
            }

            pub async fn eager(db: &DatabaseConnection) -> usize {
                let posts = post::Entity::find()
                    .order_by_asc(post::Column::Id)
                    .all(db)
                    .await
                    .unwrap();
                let comments = posts
                    .load_many(
                        comment::Entity::find().order_by_asc(comment::Column::Id),
                        db,
                    )
                    .await
                    .unwrap();
                comments.iter().map(Vec::len).sum()
            }
        }
    };
}

entities!(sqlite, key: String, time: String);
entities!(postgres, key: sea_orm::prelude::Uuid, time: sea_orm::prelude::DateTimeUtc);

/// The three peers on one database.
struct Peers {
    backend: Backend,
    blocking: Store,
    store: AsyncStore,
    seaorm: DatabaseConnection,
}

impl Peers {
    fn open(db: &Db, runtime: &tokio::runtime::Runtime) -> Self {
        db.settle();
        let blocking = db.store.clone();
        let url = match db.backend {
            Backend::Sqlite => format!("sqlite:{}", db.url.trim_start_matches("file:")),
            Backend::Postgres => db.url.clone(),
        };
        let mut options = ConnectOptions::new(url);
        options
            .max_connections(POOL)
            .min_connections(POOL)
            .sqlx_logging(false)
            .test_before_acquire(false)
            .map_sqlx_sqlite_opts(|o| {
                o.synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
            });
        let seaorm = runtime.block_on(Database::connect(options)).unwrap();
        Self {
            backend: db.backend,
            store: AsyncStore::from(blocking.clone()),
            blocking,
            seaorm,
        }
    }
}

/// One workload, three ways; each returns how many rows it read, which must agree.
#[derive(Clone)]
enum Work {
    Find(Id),
    Eager,
}

impl Work {
    fn blocking(&self, store: &Store) -> usize {
        match self {
            Work::Find(id) => store.find::<Post>(id).unwrap().into_iter().count(),
            Work::Eager => {
                let mut conn = store.conn().unwrap();
                let mut posts: Vec<Post> = conn.all().unwrap();
                Post::load_comments(&mut *conn, &mut posts).unwrap();
                comments(&posts)
            }
        }
    }

    async fn on_async(&self, store: &AsyncStore) -> usize {
        match self {
            Work::Find(id) => store.find::<Post>(id).await.unwrap().into_iter().count(),
            Work::Eager => {
                // One blocking hop for both statements, as an application would write it.
                let posts = store
                    .run(|conn| {
                        let mut posts: Vec<Post> = conn.all()?;
                        Post::load_comments(conn, &mut posts)?;
                        Ok(posts)
                    })
                    .await
                    .unwrap();
                comments(&posts)
            }
        }
    }

    async fn seaorm(&self, db: &DatabaseConnection, backend: Backend) -> usize {
        match (self, backend) {
            (Work::Find(id), Backend::Sqlite) => sqlite::find(db, id.to_string()).await,
            (Work::Find(id), Backend::Postgres) => postgres::find(db, (*id).into()).await,
            (Work::Eager, Backend::Sqlite) => sqlite::eager(db).await,
            (Work::Eager, Backend::Postgres) => postgres::eager(db).await,
        }
    }
}

fn comments(posts: &[Post]) -> usize {
    posts
        .iter()
        .map(|p| p.comments.get().map_or(0, <[_]>::len))
        .sum()
}

/// A database to run on: the prefix of its rows' names, and how to make it.
type Storage = (&'static str, fn() -> Db);

/// The databases: a WAL file, and PostgreSQL when configured.
fn databases() -> Vec<Storage> {
    let mut dbs: Vec<Storage> = vec![("WAL file: ", Db::wal_file)];
    if db::postgres_url().is_some() {
        dbs.push(("PostgreSQL: ", || {
            Db::postgres(&db::postgres_url().unwrap())
        }));
    }
    dbs
}

fn seeded(db: &Db, eager: bool) -> Work {
    if eager {
        db.seed(EAGER.0, EAGER.1);
        Work::Eager
    } else {
        let posts = db.seed(FIND_AMONG, 0);
        Work::Find(posts[FIND_AMONG / 2].id)
    }
}

fn name(eager: bool) -> String {
    if eager {
        format!("async: eager loading {}x{}", EAGER.0, EAGER.1)
    } else {
        format!("async: find by id among {FIND_AMONG} rows")
    }
}

/// One task at a time.
fn one_task(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (prefix, open) in databases() {
        for eager in [false, true] {
            let db = open();
            let work = seeded(&db, eager);
            let peers = Peers::open(&db, &runtime);
            let expected = work.blocking(&peers.blocking);
            assert_eq!(runtime.block_on(work.on_async(&peers.store)), expected);
            assert_eq!(
                runtime.block_on(work.seaorm(&peers.seaorm, peers.backend)),
                expected
            );
            let mut group = c.benchmark_group(format!("{prefix}{}", name(eager)));
            group.bench_function(BenchmarkId::new("datastore", "one task"), |b| {
                b.iter(|| black_box(work.blocking(&peers.blocking)))
            });
            group.bench_function(BenchmarkId::new("datastore-async", "one task"), |b| {
                b.iter(|| black_box(runtime.block_on(work.on_async(&peers.store))))
            });
            group.bench_function(BenchmarkId::new("seaorm", "one task"), |b| {
                b.iter(|| black_box(runtime.block_on(work.seaorm(&peers.seaorm, peers.backend))))
            });
            group.finish();
        }
    }
}

/// What the async store adds to a call, alone: the hop to a blocking thread and back
/// (`spawn_blocking` of nothing, awaited through `block_on`), and `run` with no statement
/// (the hop, the permit and a pooled connection taken and given back).
fn hop(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = Db::wal_file();
    let store = AsyncStore::from(db.store.clone());
    let mut group = c.benchmark_group("async: the hop alone");
    group.bench_function(BenchmarkId::new("spawn_blocking", "nothing"), |b| {
        b.iter(|| {
            runtime
                .block_on(async { tokio::task::spawn_blocking(|| black_box(1)).await })
                .unwrap()
        })
    });
    group.bench_function(
        BenchmarkId::new("datastore-async", "run, no statement"),
        |b| {
            b.iter(|| {
                runtime
                    .block_on(store.run(|_conn| Ok(black_box(1))))
                    .unwrap()
            })
        },
    );
    group.bench_function(BenchmarkId::new("datastore", "conn, no statement"), |b| {
        b.iter(|| black_box(db.store.conn().unwrap()))
    });
    group.finish();
}

/// What lending a connection costs a call: a find by id through the store's own connection
/// (`Store::find`) and through one lent by `Store::conn`, which, on PostgreSQL, ends any
/// transaction its caller left open as it goes back (a round trip: `BEGIN; ROLLBACK`), on each
/// database.
fn lending(c: &mut Criterion) {
    for (storage, open) in databases() {
        let db = open();
        let Work::Find(id) = seeded(&db, false) else {
            unreachable!("a find")
        };
        let mut group = c.benchmark_group(format!("{storage}a find by id, lent or not"));
        group.bench_function(BenchmarkId::new("datastore", "Store::find"), |b| {
            b.iter(|| black_box(db.store.find::<Post>(&id).unwrap()))
        });
        group.bench_function(
            BenchmarkId::new("datastore", "Store::conn, then find"),
            |b| b.iter(|| black_box(db.store.conn().unwrap().find::<Post>(&id).unwrap())),
        );
        group.finish();
    }
}

/// What a concurrent row measured.
struct Measured {
    calls: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Measured {
    fn from(mut latencies: Vec<Duration>, elapsed: Duration) -> Self {
        latencies.sort();
        Self {
            calls: latencies.len(),
            elapsed,
            latencies,
        }
    }

    fn percentile(&self, p: f64) -> Duration {
        let i = ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[i - 1]
    }

    fn row(&self, workload: &str, peer: &str) -> String {
        format!(
            "| {workload} | {peer} | {:.0} | {:.3} | {:.3} |",
            self.calls as f64 / self.elapsed.as_secs_f64(),
            self.percentile(0.5).as_secs_f64() * 1e3,
            self.percentile(0.99).as_secs_f64() * 1e3,
        )
    }
}

/// 64 tasks (threads, for the blocking store), each calling until the time is up.
fn concurrent(_: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut table = String::from(
        "| workload | peer | calls/s | p50 ms | p99 ms |\n| --- | --- | ---: | ---: | ---: |\n",
    );
    for (prefix, open) in databases() {
        for eager in [false, true] {
            let db = open();
            let work = seeded(&db, eager);
            let peers = Arc::new(Peers::open(&db, &runtime));
            let workload = format!("{prefix}{}", name(eager));

            // The blocking store: 64 threads on the pool of 8.
            let start = Instant::now();
            let threads: Vec<_> = (0..TASKS)
                .map(|_| {
                    let (peers, work) = (peers.clone(), work.clone());
                    std::thread::spawn(move || {
                        let mut latencies = Vec::new();
                        while start.elapsed() < CONCURRENT_FOR {
                            let call = Instant::now();
                            black_box(work.blocking(&peers.blocking));
                            latencies.push(call.elapsed());
                        }
                        latencies
                    })
                })
                .collect();
            let latencies = threads
                .into_iter()
                .flat_map(|t| t.join().unwrap())
                .collect();
            let measured = Measured::from(latencies, start.elapsed());
            writeln!(
                table,
                "{}",
                measured.row(&workload, "datastore (blocking, 64 threads)")
            )
            .unwrap();

            for peer in ["datastore-async", "seaorm"] {
                let measured = runtime.block_on(async {
                    let start = Instant::now();
                    let tasks: Vec<_> = (0..TASKS)
                        .map(|_| {
                            let (peers, work) = (peers.clone(), work.clone());
                            tokio::spawn(async move {
                                let mut latencies = Vec::new();
                                while start.elapsed() < CONCURRENT_FOR {
                                    let call = Instant::now();
                                    black_box(match peer {
                                        "seaorm" => work.seaorm(&peers.seaorm, peers.backend).await,
                                        _ => work.on_async(&peers.store).await,
                                    });
                                    latencies.push(call.elapsed());
                                }
                                latencies
                            })
                        })
                        .collect();
                    let mut latencies = Vec::new();
                    for task in tasks {
                        latencies.extend(task.await.unwrap());
                    }
                    Measured::from(latencies, start.elapsed())
                });
                writeln!(table, "{}", measured.row(&workload, peer)).unwrap();
            }
        }
    }
    println!("\n64 concurrent tasks on a pool of 8, {CONCURRENT_FOR:?} each:\n\n{table}");
    let target = std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target").to_owned());
    let dir = std::path::Path::new(&target).join("criterion");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("async-concurrency.md"), table).unwrap();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = hop, lending, one_task, concurrent
}
criterion_main!(benches);
