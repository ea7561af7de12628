//! What keeping 100 posts x 10 comments live costs per committed change: a live query
//! (`store.live::<Post>().load(Post::COMMENTS)`) beside re-running the whole query with its
//! loads after each change (the hand-written way), on a SQLite file (WAL) and on PostgreSQL
//! (when `DATASTORE_POSTGRES_URL` names a server); then the time from a commit to the new
//! snapshot, p50 and p99.
//!
//! Each iteration commits one change (a comment's text edited) and gets the result after it.
//!
//! `cargo bench -p datastore-benches --bench live`

#[path = "../examples/blog/models.rs"]
#[allow(dead_code)]
mod models;
// Schemas of their own on the server, as the tests make them.
#[path = "../tests/common/pg_schema.rs"]
#[allow(dead_code)]
mod pg_schema;

use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use datastore::observe::LiveSubscription;
use datastore::prelude::*;
use models::{Comment, Post};
use pg_schema::PgSchema;

const POSTS: usize = 100;
const COMMENTS: usize = 10;

fn migrations() -> datastore::migrate::BackendMigrations {
    datastore::embed_migrations!(
        sqlite = "../migrations/sqlite",
        postgres = "../migrations/postgres"
    )
}

/// A database to measure on, and what must outlive its store.
struct Db {
    name: &'static str,
    store: Store,
    _keep: Box<dyn std::any::Any>,
}

fn databases() -> Vec<Db> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.db").display().to_string();
    let sqlite = Store::builder(path)
        .migrations(migrations())
        .synchronous(datastore::Synchronous::Normal)
        .open()
        .unwrap();
    let mut dbs = vec![Db {
        name: "sqlite file",
        store: sqlite,
        _keep: Box::new(dir),
    }];
    if let Ok(url) = std::env::var("DATASTORE_POSTGRES_URL") {
        let schema = PgSchema::with_prefix(&url, pg_schema::BENCH_SCHEMA_PREFIX);
        let store = Store::open(schema.url(), migrations()).unwrap();
        dbs.push(Db {
            name: "postgres",
            store,
            _keep: Box::new(schema),
        });
    }
    dbs
}

/// 100 posts with 10 comments each; the comments.
fn seed(store: &Store) -> Vec<Comment> {
    let mut comments = Vec::new();
    for i in 0..POSTS {
        let post = store
            .save(Post {
                title: format!("post {i}"),
                rating: i as i32,
                ..Post::default()
            })
            .unwrap();
        let rows = (0..COMMENTS)
            .map(|j| {
                Comment {
                    content: Some(format!("comment {j}")),
                    ..Comment::default()
                }
                .with_post(&post)
            })
            .collect();
        comments.extend(store.insert_all(rows).unwrap());
    }
    comments
}

/// The query and its loads by hand: every post, each with its comments.
fn rerun(store: &Store) -> Vec<Post> {
    let mut conn = store.conn().unwrap();
    let mut rows: Vec<Post> = conn.all().unwrap();
    Post::load_comments(&mut *conn, &mut rows).unwrap();
    rows
}

fn live(store: &Store) -> LiveSubscription<Post> {
    store
        .live::<Post>()
        .load(Post::COMMENTS)
        .subscribe()
        .unwrap()
}

/// Commits the `n`th change: one comment's text.
fn change(store: &Store, comments: &[Comment], n: usize) {
    let mut comment = comments[n % comments.len()].clone();
    comment.content = Some(format!("edited {n}"));
    store.save(comment).unwrap();
}

fn per_change(c: &mut Criterion) {
    let mut group = c.benchmark_group("live/100 posts x 10 comments, per committed change");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    for db in databases() {
        let comments = seed(&db.store);
        let mut n = 0;
        group.bench_function(
            format!("{}: commit, then re-run the query with its loads", db.name),
            |b| {
                b.iter(|| {
                    n += 1;
                    change(&db.store, &comments, n);
                    rerun(&db.store)
                })
            },
        );
        let mut view = live(&db.store);
        view.recv().unwrap();
        group.bench_function(
            format!("{}: commit, then the next live snapshot", db.name),
            |b| {
                b.iter(|| {
                    n += 1;
                    change(&db.store, &comments, n);
                    view.recv().unwrap()
                })
            },
        );
        group.bench_function(format!("{}: commit alone", db.name), |b| {
            b.iter(|| {
                n += 1;
                change(&db.store, &comments, n);
            })
        });
        drop(view);
        latency(&db, &comments);
    }
    group.finish();
}

/// From a commit (the save returned) to the live query's new snapshot: p50 and p99 over 500
/// changes, the reader on the writer's thread.
fn latency(db: &Db, comments: &[Comment]) {
    let mut view = live(&db.store);
    view.recv().unwrap();
    let mut samples = Vec::with_capacity(500);
    for n in 0..500 {
        change(&db.store, comments, 1_000_000 + n);
        let start = Instant::now();
        view.recv().unwrap();
        samples.push(start.elapsed());
    }
    samples.sort();
    let at = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "live/{}: from commit to the new snapshot of 100 posts x 10 comments, 500 changes: p50 {:?}, p99 {:?} ({:?})",
        db.name,
        at(0.50),
        at(0.99),
        view.stats()
    );
}

criterion_group!(benches, per_change);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
