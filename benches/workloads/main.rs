//! The same work done four ways, on the same database, in one run: through datastore, by hand
//! with Diesel (datastore's overhead), with rusqlite's cached prepared statements (the floor),
//! and with SeaORM (the ORM users would pick instead). Workloads mirror Diesel's own benchmark
//! suite (diesel_bench) where they exist.
//!
//! Every workload runs on an in-memory SQLite database and on a WAL file, and the relation
//! workloads also on the PostgreSQL server named by `DATASTORE_POSTGRES_URL`, when it is set.
//!
//! Most run on the blog, whose rows are keyed by UUIDs (`Id`); find by id, insert and eager
//! loading also run on the same posts and comments keyed by integers the database assigns
//! (`int_keyed`), without SeaORM.
//!
//! `cargo bench -p datastore-benches --bench workloads`; `python3 benches/report.py` turns
//! criterion's output into BENCHMARKS.md's table and chart. With `DATASTORE_BENCH_PAIRED` set,
//! the peers are timed in turn instead, round by round ([`paired`]), and a table of ratios is
//! printed.

#[path = "../../examples/blog/models.rs"]
#[allow(dead_code)]
mod models;

mod db;
mod forum;
#[macro_use]
mod queries;
mod hand_diesel;
mod hand_rusqlite;
mod int_keyed;
mod one_core;
mod ours;
mod paired;
// Schemas of their own on the server, as the tests make them.
#[path = "../../tests/common/pg_schema.rs"]
#[allow(dead_code)]
mod pg_schema;
#[macro_use]
mod seaorm_blog;
mod seaorm;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, BenchmarkFilter, BenchmarkGroup, BenchmarkId, Criterion};
use datastore::prelude::*;

use db::{Backend, Db};
use models::Post;

/// A row's key, in the forms the peers bind it: datastore's `Id`, and its text as stored in
/// SQLite.
pub struct Key {
    pub id: Id,
    pub text: String,
}

impl From<Id> for Key {
    fn from(id: Id) -> Self {
        Self {
            id,
            text: id.to_string(),
        }
    }
}

/// One implementation of every workload, connected to one database. Each query returns how
/// many rows it loaded, so that the harness can check, before timing, that every peer does the
/// same work; inserts are checked to insert every row, and deletes to leave no post behind.
pub trait Peer {
    /// All posts, in key order.
    fn posts(&mut self) -> usize;
    /// The posts with a comment whose content matches the `LIKE` pattern (diesel_bench's
    /// medium-complex query: a join, here through a subquery).
    fn posts_commented(&mut self, pattern: &str) -> usize;
    /// One post by its key.
    fn find_post(&mut self, key: &Key) -> usize;
    /// Turns the posts into the rows this peer inserts, as its users would hold them (outside
    /// the timing).
    fn stage_posts(&mut self, posts: &[Post]);
    /// Inserts the staged rows in one transaction.
    fn insert_staged(&mut self) -> usize;
    /// Every post with its comments; returns the comments.
    fn posts_with_comments(&mut self) -> usize;
    /// Every post with its editors (many-to-many, through `post_editors`); returns the links.
    fn posts_with_editors(&mut self) -> usize;
    /// diesel_bench's association load: every user with their posts, each with its comments
    /// (the forum database); returns the comments.
    fn users_posts_comments(&mut self) -> usize;
    /// Deletes one post; the database deletes its comments (`ON DELETE CASCADE`).
    fn delete_post(&mut self, key: &Key);
}

/// The workloads on the posts and comments keyed by integers the database assigns
/// (`int_keyed`), in a database of their own: the same work as [`Peer`]'s of the same names.
pub trait IntKeyedPeer {
    /// One post by its key.
    fn find_post(&mut self, id: i64) -> usize;
    /// Turns the posts, which have no keys yet, into the rows this peer inserts, as its users
    /// would hold them (outside the timing).
    fn stage_posts(&mut self, posts: &[int_keyed::Post]);
    /// Inserts the staged rows in one transaction, reading back the keys the database assigned
    /// them into the rows, which the peer then holds.
    fn insert_staged(&mut self) -> usize;
    /// The keys of the rows the last insert holds, in the order they were staged.
    fn inserted_keys(&self) -> Vec<i64>;
    /// Every post with its comments; returns the comments.
    fn posts_with_comments(&mut self) -> usize;
}

/// Peers of one kind, each with its name in the report.
type Peers<P> = Vec<(&'static str, Box<P>)>;

/// Parents, each with its children: what a relation load builds.
pub type Loaded<P, C> = Vec<(P, Vec<C>)>;

/// How many children a loaded list holds: what the relation loads return.
pub fn children<P, C>(loaded: &[(P, Vec<C>)]) -> usize {
    loaded.iter().map(|(_, children)| children.len()).sum()
}

/// How many grandchildren a loaded `(parent, [(child, grandchildren)])` list holds.
pub fn grandchildren<P, C, G>(loaded: &[(P, Loaded<C, G>)]) -> usize {
    loaded
        .iter()
        .map(|(_, children)| self::children(children))
        .sum()
}

/// The peers on one database, once it is seeded; datastore first: its results are what the
/// others must match.
fn peers(db: &Db) -> Peers<dyn Peer> {
    db.settle();
    let mut peers: Peers<dyn Peer> = vec![
        ("datastore", Box::new(ours::Datastore::open(db))),
        ("diesel", hand_diesel::open(db)),
    ];
    if db.backend == Backend::Sqlite {
        peers.push(("rusqlite", Box::new(hand_rusqlite::Rusqlite::open(db))));
    }
    peers.push(("seaorm", seaorm::open(db)));
    peers
}

/// The peers on an integer-keyed database, once it is seeded; datastore first.
fn int_keyed_peers(db: &Db) -> Peers<dyn IntKeyedPeer> {
    db.settle();
    let mut peers: Peers<dyn IntKeyedPeer> = vec![
        ("datastore", Box::new(ours::Datastore::open(db))),
        ("diesel", hand_diesel::open_int_keyed(db)),
    ];
    if db.backend == Backend::Sqlite {
        peers.push(("rusqlite", Box::new(hand_rusqlite::Rusqlite::open(db))));
    }
    peers
}

/// Times `work` on every peer, after checking that each returns what datastore returns.
fn each_peer<P: ?Sized>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    parameter: &str,
    peers: &mut [(&'static str, Box<P>)],
    mut work: impl FnMut(&mut P) -> usize,
) {
    let expected = work(&mut *peers[0].1);
    for (name, peer) in peers.iter_mut() {
        assert_eq!(work(&mut **peer), expected, "{name} did different work");
    }
    if paired::enabled() {
        return paired::measure(
            parameter,
            peers,
            |_| (),
            |peer, ()| {
                black_box(work(peer));
            },
        );
    }
    for (name, peer) in peers.iter_mut() {
        group.bench_function(BenchmarkId::new(*name, parameter), |b| {
            b.iter(|| black_box(work(&mut **peer)))
        });
    }
}

/// Times `work` on every peer, each iteration on what an untimed `setup` prepared.
fn each_peer_with_setup<P: ?Sized, T>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    parameter: &str,
    peers: &mut [(&'static str, Box<P>)],
    mut setup: impl FnMut(&mut P) -> T,
    mut work: impl FnMut(&mut P, T),
) {
    if paired::enabled() {
        return paired::measure(parameter, peers, setup, work);
    }
    for (name, peer) in peers.iter_mut() {
        group.bench_function(BenchmarkId::new(*name, parameter), |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let input = setup(&mut **peer);
                    let start = Instant::now();
                    work(&mut **peer, input);
                    total += start.elapsed();
                }
                total
            })
        });
    }
}

/// A kind of SQLite storage that every SQLite workload runs on.
struct Storage {
    /// What the workload's name starts with in the report.
    prefix: &'static str,
    blog: fn() -> Db,
    forum: fn() -> Db,
    int_keyed: fn() -> Db,
}

const STORAGES: [Storage; 2] = [
    Storage {
        prefix: "",
        blog: Db::memory,
        forum: Db::forum_memory,
        int_keyed: Db::int_keyed_memory,
    },
    Storage {
        prefix: "WAL file: ",
        blog: Db::wal_file,
        forum: Db::forum_wal_file,
        int_keyed: Db::int_keyed_wal_file,
    },
];

// The workloads' names in the report; a storage's prefix comes first.
const TRIVIAL: &str = "trivial query";
const MEDIUM: &str = "medium complex query (posts with a comment mentioning a word)";
const FIND: &str = "find by id among 10000 rows";
const INSERT: &str = "insert rows";
const INSERT_MANY: &str = "insert rows in one transaction";
const EAGER: &str = "eager loading posts with comments";
const MANY_TO_MANY: &str = "many-to-many load (100 posts x 10 of 50 users)";
const ASSOCIATIONS: &str = "loading associations (users -> posts -> comments)";
const CASCADE: &str = "cascade delete of a post with K comments";
// The same workloads on integer keys the database assigns.
const FIND_INT: &str = "find by id among 10000 rows, integer keys";
const INSERT_INT: &str = "insert rows, integer keys read back";
const INSERT_MANY_INT: &str = "insert rows in one transaction, integer keys read back";
const EAGER_INT: &str = "eager loading posts with comments, integer keys";

fn group<'c>(c: &'c mut Criterion, prefix: &str, name: &str) -> BenchmarkGroup<'c, WallTime> {
    let name = format!("{prefix}{name}");
    paired::set_group(&name);
    c.benchmark_group(name)
}

fn trivial_query(c: &mut Criterion) {
    for Storage { prefix, blog, .. } in STORAGES {
        let mut group = group(c, prefix, TRIVIAL);
        for n in [1, 10, 100, 1_000, 10_000] {
            let db = blog();
            trivial_query_on(&mut group, &db, n);
            ours::diagnostics::trivial_query(&mut group, &db, &n.to_string());
        }
    }
}

fn trivial_query_on(group: &mut BenchmarkGroup<'_, WallTime>, db: &Db, n: usize) {
    db.seed(n, 0);
    each_peer(group, &n.to_string(), &mut peers(db), |p| p.posts());
}

fn medium_complex_query(c: &mut Criterion) {
    for Storage { prefix, blog, .. } in STORAGES {
        let mut group = group(c, prefix, MEDIUM);
        for n in [10, 100, 1_000] {
            medium_complex_query_on(&mut group, &blog(), n);
        }
    }
}

fn medium_complex_query_on(group: &mut BenchmarkGroup<'_, WallTime>, db: &Db, n: usize) {
    db.seed(n, 2);
    each_peer(group, &n.to_string(), &mut peers(db), |p| {
        p.posts_commented("%1%")
    });
    ours::diagnostics::medium_query_on_any_connection(group, db, n);
}

fn find_by_id(c: &mut Criterion) {
    for Storage { prefix, blog, .. } in STORAGES {
        let db = blog();
        let mut group = group(c, prefix, FIND);
        find_by_id_on(&mut group, &db);
        ours::diagnostics::find_through_store(&mut group, &db);
    }
}

fn find_by_id_on(group: &mut BenchmarkGroup<'_, WallTime>, db: &Db) {
    let posts = db.seed(10_000, 0);
    let key = Key::from(posts[5_000].id);
    each_peer(group, "", &mut peers(db), |p| p.find_post(&key));
}

fn insert(c: &mut Criterion) {
    for Storage { prefix, blog, .. } in STORAGES {
        let db = blog();
        let mut group = group(c, prefix, INSERT);
        for n in [1, 10, 25, 50, 100] {
            insert_on(&mut group, &db, n);
        }
        group.finish();
        let mut group = self::group(c, prefix, INSERT_MANY);
        group.sample_size(10);
        insert_on(&mut group, &db, 10_000);
    }
}

/// `n` rows inserted in one transaction, into an empty table each time.
fn insert_on(group: &mut BenchmarkGroup<'_, WallTime>, db: &Db, n: usize) {
    let rows: Vec<Post> = (0..n).map(db::post).collect();
    each_peer_with_setup(
        group,
        &n.to_string(),
        &mut peers(db),
        |p| {
            db.clear_posts();
            p.stage_posts(&rows)
        },
        |p, ()| assert_eq!(p.insert_staged(), n),
    );
    ours::diagnostics::insert_saving_each(group, db, n);
}

fn eager_loading(c: &mut Criterion) {
    for Storage { prefix, blog, .. } in STORAGES {
        let mut group = group(c, prefix, EAGER);
        for n in [10, 100, 1_000] {
            if n == 1_000 {
                group.sample_size(10);
            }
            for m in [1, 10, 100] {
                eager_loading_on(&mut group, &blog(), n, m);
            }
        }
    }
}

fn eager_loading_on(group: &mut BenchmarkGroup<'_, WallTime>, db: &Db, n: usize, m: usize) {
    db.seed(n, m);
    each_peer(group, &format!("{n}x{m}"), &mut peers(db), |p| {
        p.posts_with_comments()
    });
}

fn many_to_many(c: &mut Criterion) {
    for Storage { prefix, blog, .. } in STORAGES {
        many_to_many_on(&mut group(c, prefix, MANY_TO_MANY), &blog());
    }
}

fn many_to_many_on(group: &mut BenchmarkGroup<'_, WallTime>, db: &Db) {
    db.seed_editors(100, 50, 10);
    each_peer(group, "", &mut peers(db), |p| p.posts_with_editors());
}

fn associations(c: &mut Criterion) {
    for Storage { prefix, forum, .. } in STORAGES {
        associations_on(&mut group(c, prefix, ASSOCIATIONS), &forum());
    }
}

/// diesel_bench's `loading_associations_sequential`, at the size it runs on SQLite.
fn associations_on(group: &mut BenchmarkGroup<'_, WallTime>, db: &Db) {
    db.seed_forum(9, 10, 10);
    each_peer(group, "9/90/900", &mut peers(db), |p| {
        p.users_posts_comments()
    });
}

fn find_by_int_key(c: &mut Criterion) {
    for Storage {
        prefix, int_keyed, ..
    } in STORAGES
    {
        find_by_int_key_on(&mut group(c, prefix, FIND_INT), &int_keyed());
    }
}

fn find_by_int_key_on(group: &mut BenchmarkGroup<'_, WallTime>, db: &Db) {
    let id = db.seed_int_keyed(10_000, 0)[5_000].id;
    each_peer(group, "", &mut int_keyed_peers(db), |p| p.find_post(id));
}

fn insert_int_keyed(c: &mut Criterion) {
    for Storage {
        prefix, int_keyed, ..
    } in STORAGES
    {
        let db = int_keyed();
        let mut group = group(c, prefix, INSERT_INT);
        for n in [1, 10, 100] {
            insert_int_keyed_on(&mut group, &db, n);
        }
        group.finish();
        let mut group = self::group(c, prefix, INSERT_MANY_INT);
        group.sample_size(10);
        insert_int_keyed_on(&mut group, &db, 10_000);
    }
}

/// `n` rows inserted in one transaction, into an empty table each time, each peer reading back
/// the keys the database assigned. Before the timing, each peer is checked to hold every row
/// with the key it has in the database.
fn insert_int_keyed_on(group: &mut BenchmarkGroup<'_, WallTime>, db: &Db, n: usize) {
    let rows: Vec<int_keyed::Post> = (0..n).map(int_keyed::post).collect();
    let mut peers = int_keyed_peers(db);
    for (name, peer) in peers.iter_mut() {
        db.clear_posts();
        peer.stage_posts(&rows);
        assert_eq!(peer.insert_staged(), n, "{name} inserted every row");
        let stored: Vec<int_keyed::Post> = db.store.all().unwrap();
        let titles = |posts: &[int_keyed::Post]| -> Vec<String> {
            posts.iter().map(|p| p.title.clone()).collect()
        };
        assert_eq!(titles(&stored), titles(&rows), "{name} inserted in order");
        let keys: Vec<i64> = stored.iter().map(|p| p.id).collect();
        assert_eq!(peer.inserted_keys(), keys, "{name} holds the keys assigned");
    }
    each_peer_with_setup(
        group,
        &n.to_string(),
        &mut peers,
        |p| {
            db.clear_posts();
            p.stage_posts(&rows)
        },
        |p, ()| assert_eq!(p.insert_staged(), n),
    );
}

fn eager_loading_int_keyed(c: &mut Criterion) {
    for Storage {
        prefix, int_keyed, ..
    } in STORAGES
    {
        let mut group = group(c, prefix, EAGER_INT);
        for n in [10, 100, 1_000] {
            if n == 1_000 {
                group.sample_size(10);
            }
            eager_loading_int_keyed_on(&mut group, &int_keyed(), n, 10);
        }
    }
}

fn eager_loading_int_keyed_on(
    group: &mut BenchmarkGroup<'_, WallTime>,
    db: &Db,
    n: usize,
    m: usize,
) {
    db.seed_int_keyed(n, m);
    each_peer(group, &format!("{n}x{m}"), &mut int_keyed_peers(db), |p| {
        p.posts_with_comments()
    });
}

fn cascade_delete(c: &mut Criterion) {
    for Storage { prefix, blog, .. } in STORAGES {
        let mut group = group(c, prefix, CASCADE);
        let db = blog();
        for k in [0, 10, 100, 1_000] {
            cascade_delete_on(&mut group, &db, k);
        }
    }
}

fn cascade_delete_on(group: &mut BenchmarkGroup<'_, WallTime>, db: &Db, k: usize) {
    // PostgreSQL plans a foreign key's cascade once per connection, at its first use, and
    // keeps the plan: made on a table of a few rows, it scans the table, and stays a scan as
    // the measurement fills it. Rows that stay, and statistics, before any peer deletes,
    // so that every peer's plan is made on a table of a realistic size.
    let background = db.is_postgres().then(|| {
        let rows = db.seed(100, k);
        db.settle();
        rows
    });
    each_peer_with_setup(
        group,
        &k.to_string(),
        &mut peers(db),
        |_| Key::from(db.seed(1, k)[0].id),
        |p, key| p.delete_post(&key),
    );
    let left = background.map_or(0, |rows| rows.len());
    assert_eq!(db.count_posts(), left, "every post seeded was deleted");
}

/// The workloads at one size each on the PostgreSQL server named by `DATASTORE_POSTGRES_URL`
/// (skipped without it), each in a schema of its own that is dropped afterwards.
fn postgres(c: &mut Criterion) {
    let Some(url) = db::postgres_url() else {
        eprintln!("PostgreSQL workloads not run: DATASTORE_POSTGRES_URL is not set");
        return;
    };
    // Each peer's round trips as fast as the others' (see `one_core.rs`).
    let _one_core = one_core::OneCore::pin(&url)
        .inspect_err(|why| {
            eprintln!("PostgreSQL workloads not run on one core ({why}): a peer whose backend runs on the other core takes about 50 µs more a round trip")
        })
        .ok();
    let prefix = "PostgreSQL: ";
    let blog = || Db::postgres(&url);
    let int_keyed = || Db::postgres_int_keyed(&url);
    find_by_id_on(&mut group(c, prefix, FIND), &blog());
    find_by_int_key_on(&mut group(c, prefix, FIND_INT), &int_keyed());
    eager_loading_on(&mut group(c, prefix, EAGER), &blog(), 100, 10);
    eager_loading_int_keyed_on(&mut group(c, prefix, EAGER_INT), &int_keyed(), 100, 10);
    cascade_delete_on(&mut group(c, prefix, CASCADE), &blog(), 100);
    insert_on(&mut group(c, prefix, INSERT), &blog(), 10);
    insert_int_keyed_on(&mut group(c, prefix, INSERT_INT), &int_keyed(), 10);
    trivial_query_on(&mut group(c, prefix, TRIVIAL), &blog(), 100);
    medium_complex_query_on(&mut group(c, prefix, MEDIUM), &blog(), 100);
    many_to_many_on(&mut group(c, prefix, MANY_TO_MANY), &blog());
    associations_on(
        &mut group(c, prefix, ASSOCIATIONS),
        &Db::postgres_forum(&url),
    );
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
    targets = trivial_query, medium_complex_query, insert, find_by_id, eager_loading,
        many_to_many, associations, cascade_delete, find_by_int_key, insert_int_keyed,
        eager_loading_int_keyed
}

// Round trips to a server on the same two cores vary more than work in process: sampled
// longer.
criterion_group! {
    name = server;
    config = config().measurement_time(Duration::from_secs(3)).sample_size(30);
    targets = postgres
}
fn main() {
    if !paired::enabled() {
        benches();
        server();
        return Criterion::default().configure_from_args().final_summary();
    }
    // Criterion still makes the groups (and the diagnostic rows' benchmarks, which it skips).
    let mut c = config().with_benchmark_filter(BenchmarkFilter::RejectAll);
    paired::header();
    for workloads in [
        trivial_query,
        medium_complex_query,
        insert,
        find_by_id,
        eager_loading,
        many_to_many,
        associations,
        cascade_delete,
        find_by_int_key,
        insert_int_keyed,
        eager_loading_int_keyed,
        postgres,
    ] {
        workloads(&mut c);
    }
}
