//! The same work done three ways, on the same SQLite database, in one run: through datastore,
//! by hand with Diesel (datastore's overhead), and with rusqlite's cached prepared statements
//! (the floor). Workloads mirror Diesel's own benchmark suite (diesel_bench) where they exist.
//!
//! `cargo bench --bench workloads`; `python3 benches/report.py` turns criterion's output into
//! BENCHMARKS.md's table and chart.

#[path = "../examples/blog/models.rs"]
#[allow(dead_code)]
mod models;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use datastore::diesel::{self, Connection, SqliteConnection};
use datastore::prelude::*;
use models::{Comment, Post, PostEditor, User};

/// The same tables, as a Diesel user writes them by hand.
mod hand {
    use datastore::diesel::prelude::*;

    diesel::table! {
        posts (id) {
            id -> Text,
            title -> Text,
            rating -> Integer,
            status -> Text,
            body -> Nullable<Text>,
            created_at -> Text,
            updated_at -> Text,
        }
    }

    diesel::table! {
        comments (id) {
            id -> Text,
            content -> Nullable<Text>,
            post_id -> Text,
            created_at -> Text,
        }
    }

    diesel::joinable!(comments -> posts (post_id));
    diesel::allow_tables_to_appear_in_same_query!(posts, comments);

    #[derive(Queryable, Selectable, Insertable, Debug, Clone)]
    #[diesel(table_name = posts)]
    pub struct Post {
        pub id: String,
        pub title: String,
        pub rating: i32,
        pub status: String,
        pub body: Option<String>,
        pub created_at: String,
        pub updated_at: String,
    }

    #[derive(Queryable, Selectable, Insertable, Debug, Clone)]
    #[diesel(table_name = comments)]
    pub struct Comment {
        pub id: String,
        pub content: Option<String>,
        pub post_id: String,
        pub created_at: String,
    }
}

/// One in-memory database, opened three ways.
struct Bench {
    store: Store,
    ours: datastore::PooledConn,
    seeder: datastore::PooledConn,
    diesel: SqliteConnection,
    rusqlite: rusqlite::Connection,
}

impl Bench {
    fn new() -> Self {
        Self::at(format!("file:/bench-{}?vfs=memdb", Id::new()))
    }

    /// The same, on a WAL file (synchronous = NORMAL for all three), kept in `dir`.
    fn file(dir: &tempfile::TempDir) -> Self {
        Self::at(dir.path().join("bench.db").display().to_string())
    }

    fn at(url: String) -> Self {
        let store = Store::builder(&url)
            .migrations(datastore::embed_migrations!())
            .synchronous(datastore::Synchronous::Normal)
            .open()
            .unwrap();
        let ours = store.conn().unwrap();
        let seeder = store.conn().unwrap();
        let flags =
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_URI;
        let rusqlite = rusqlite::Connection::open_with_flags(&url, flags).unwrap();
        rusqlite
            .execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL")
            .unwrap();
        let mut diesel = SqliteConnection::establish(&url).unwrap();
        diesel::connection::SimpleConnection::batch_execute(
            &mut diesel,
            "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL",
        )
        .unwrap();
        Self {
            store,
            ours,
            seeder,
            diesel,
            rusqlite,
        }
    }

    /// `n` posts, each with `m` comments.
    fn seed(&mut self, n: usize, m: usize) -> Vec<Post> {
        seed(&mut self.seeder, n, m)
    }
}

/// `n` posts, each with `m` comments.
fn seed(conn: &mut datastore::AnyConnection, n: usize, m: usize) -> Vec<Post> {
    {
        conn.transaction(|conn| {
            let mut posts = Vec::with_capacity(n);
            for i in 0..n {
                let post = conn.save(post(i))?;
                for j in 0..m {
                    conn.save(
                        Comment {
                            content: Some(format!("comment {j}")),
                            ..Comment::default()
                        }
                        .with_post(&post),
                    )?;
                }
                posts.push(post);
            }
            Ok::<_, datastore::Error>(posts)
        })
        .unwrap()
    }
}

fn post(i: usize) -> Post {
    Post {
        title: format!("post {i}"),
        rating: (i % 10) as i32,
        body: Some("body".into()),
        ..Post::default()
    }
}

fn rusqlite_post(row: &rusqlite::Row<'_>) -> rusqlite::Result<hand::Post> {
    Ok(hand::Post {
        id: row.get(0)?,
        title: row.get(1)?,
        rating: row.get(2)?,
        status: row.get(3)?,
        body: row.get(4)?,
        created_at: row.get(5)?,
        updated_at: row.get(6)?,
    })
}

const SELECT_POSTS: &str =
    "SELECT id, title, rating, status, body, created_at, updated_at FROM posts";

fn trivial_query(c: &mut Criterion) {
    let mut group = c.benchmark_group("trivial query");
    for n in [1, 10, 100, 1_000, 10_000] {
        let mut b = Bench::new();
        b.seed(n, 0);
        group.bench_with_input(BenchmarkId::new("datastore", n), &n, |bench, _| {
            bench.iter(|| b.ours.all::<Post>().unwrap())
        });
        // Diesel's DSL on the store's connection, which dispatches each value at run time
        // between SQLite and PostgreSQL (Diesel's `MultiConnection`).
        group.bench_with_input(
            BenchmarkId::new("datastore, Diesel DSL on AnyConnection", n),
            &n,
            |bench, _| bench.iter(|| Post::query().load::<Post>(&mut *b.ours).unwrap()),
        );
        group.bench_with_input(BenchmarkId::new("diesel", n), &n, |bench, _| {
            bench.iter(|| {
                hand::posts::table
                    .load::<hand::Post>(&mut b.diesel)
                    .unwrap()
            })
        });
        // datastore's typed rows on a connection without the store's hooks: separates the
        // cost of decoding typed values from the cost of the hooks.
        group.bench_with_input(
            BenchmarkId::new("datastore rows, no hooks", n),
            &n,
            |bench, _| bench.iter(|| Post::query().load::<Post>(&mut b.diesel).unwrap()),
        );
        group.bench_with_input(BenchmarkId::new("rusqlite", n), &n, |bench, _| {
            bench.iter(|| {
                let mut stmt = b.rusqlite.prepare_cached(SELECT_POSTS).unwrap();
                stmt.query_map([], rusqlite_post)
                    .unwrap()
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .unwrap()
            })
        });
    }
}

fn medium_complex_query(c: &mut Criterion) {
    let mut group =
        c.benchmark_group("medium complex query (posts with a comment mentioning a word)");
    for n in [10, 100, 1_000] {
        let mut b = Bench::new();
        b.seed(n, 2);
        group.bench_with_input(BenchmarkId::new("datastore", n), &n, |bench, _| {
            bench.iter(|| {
                b.ours
                    .query::<Post>(|q| {
                        q.filter(Post::having_comments(models::comments::content.like("%1%")))
                    })
                    .unwrap()
            })
        });
        group.bench_with_input(BenchmarkId::new("diesel", n), &n, |bench, _| {
            bench.iter(|| {
                use hand::{comments, posts};
                posts::table
                    .filter(
                        posts::id.eq_any(
                            comments::table
                                .select(comments::post_id)
                                .filter(comments::content.like("%1%")),
                        ),
                    )
                    .order(posts::id)
                    .load::<hand::Post>(&mut b.diesel)
                    .unwrap()
            })
        });
        group.bench_with_input(BenchmarkId::new("rusqlite", n), &n, |bench, _| {
            bench.iter(|| {
                let sql = format!(
                    "{SELECT_POSTS} WHERE id IN (SELECT post_id FROM comments WHERE content LIKE ?1) ORDER BY id"
                );
                let mut stmt = b.rusqlite.prepare_cached(&sql).unwrap();
                stmt.query_map(["%1%"], rusqlite_post).unwrap().collect::<rusqlite::Result<Vec<_>>>().unwrap()
            })
        });
    }
}

fn insert(c: &mut Criterion) {
    let mut group = c.benchmark_group("insert rows");
    for n in [1, 10, 25, 50, 100] {
        insert_rows(&mut group, n, &mut Bench::new(), BatchSize::SmallInput);
    }
}

/// `n` rows inserted in one transaction, three ways.
fn insert_rows(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    n: usize,
    b: &mut Bench,
    size: BatchSize,
) {
    group.bench_with_input(BenchmarkId::new("datastore", n), &n, |bench, &n| {
        bench.iter_batched(
            || (0..n).map(post).collect(),
            |rows| save_all(&mut b.ours, rows),
            size,
        )
    });
    group.bench_with_input(BenchmarkId::new("diesel", n), &n, |bench, &n| {
        bench.iter_batched(
            || (0..n).map(|i| hand_post(&post(i))).collect::<Vec<_>>(),
            |rows| {
                b.diesel
                    .transaction(|tx| {
                        diesel::insert_into(hand::posts::table)
                            .values(&rows)
                            .execute(tx)
                    })
                    .unwrap()
            },
            size,
        )
    });
    group.bench_with_input(BenchmarkId::new("rusqlite", n), &n, |bench, &n| {
        bench.iter_batched(
            || (0..n).map(|i| hand_post(&post(i))).collect::<Vec<_>>(),
            |rows| rusqlite_insert_all(&b.rusqlite, &rows),
            size,
        )
    });
}

fn hand_post(p: &Post) -> hand::Post {
    let now = Timestamp::now().to_string();
    hand::Post {
        id: Id::new().to_string(),
        title: p.title.clone(),
        rating: p.rating,
        status: "Active".into(),
        body: p.body.clone(),
        created_at: now.clone(),
        updated_at: now,
    }
}

fn find_by_id(c: &mut Criterion) {
    find_by_id_in(c, "find by id among 10000 rows", Bench::new());
}

fn find_by_id_in(c: &mut Criterion, name: &str, mut b: Bench) {
    let mut group = c.benchmark_group(name);
    let posts = b.seed(10_000, 0);
    let id = posts[5_000].id;
    let key = id.to_string();
    group.bench_function("datastore", |bench| {
        bench.iter(|| b.ours.find::<Post>(&id).unwrap())
    });
    // The same through the store, which takes a connection from its pool for each call.
    group.bench_function("datastore, through the Store", |bench| {
        bench.iter(|| b.store.find::<Post>(&id).unwrap())
    });
    group.bench_function("diesel", |bench| {
        bench.iter(|| {
            hand::posts::table
                .find(&key)
                .first::<hand::Post>(&mut b.diesel)
                .optional()
                .unwrap()
        })
    });
    group.bench_function("rusqlite", |bench| {
        bench.iter(|| {
            let mut stmt = b
                .rusqlite
                .prepare_cached(&format!("{SELECT_POSTS} WHERE id = ?1"))
                .unwrap();
            stmt.query_row([&key], rusqlite_post).unwrap()
        })
    });
}

/// Saves the rows in one transaction, as an application would.
fn save_all(conn: &mut datastore::AnyConnection, rows: Vec<Post>) {
    conn.transaction(|tx| {
        for row in rows {
            tx.save(row)?;
        }
        Ok::<_, datastore::Error>(())
    })
    .unwrap()
}

/// Inserts the rows in one transaction with a cached prepared statement.
fn rusqlite_insert_all(conn: &rusqlite::Connection, rows: &[hand::Post]) {
    let tx = conn.unchecked_transaction().unwrap();
    {
        let mut stmt = tx
            .prepare_cached(
                "INSERT INTO posts (id, title, rating, status, body, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .unwrap();
        for p in rows {
            stmt.execute(rusqlite::params![
                p.id,
                p.title,
                p.rating,
                p.status,
                p.body,
                p.created_at,
                p.updated_at
            ])
            .unwrap();
        }
    }
    tx.commit().unwrap();
}

fn eager_loading(c: &mut Criterion) {
    let mut group = c.benchmark_group("eager loading posts with comments");
    for (n, m) in [(10, 1), (10, 10), (100, 10), (1_000, 1), (1_000, 10)] {
        let mut b = Bench::new();
        b.seed(n, m);
        let label = format!("{n}x{m}");
        group.bench_with_input(BenchmarkId::new("datastore", &label), &n, |bench, _| {
            bench.iter(|| {
                let mut posts: Vec<Post> = b.ours.all().unwrap();
                Post::load_comments(&mut b.ours, &mut posts).unwrap();
                posts
            })
        });
        group.bench_with_input(BenchmarkId::new("diesel", &label), &n, |bench, _| {
            bench.iter(|| {
                use hand::{comments, posts};
                let posts = posts::table
                    .order(posts::id)
                    .load::<hand::Post>(&mut b.diesel)
                    .unwrap();
                let ids: Vec<&str> = posts.iter().map(|p| p.id.as_str()).collect();
                let children = comments::table
                    .filter(comments::post_id.eq_any(ids))
                    .order(comments::id)
                    .load::<hand::Comment>(&mut b.diesel)
                    .unwrap();
                with_children(posts, children, |p| p.id.clone(), |c| c.post_id.clone())
            })
        });
    }
}

/// What a hand-written eager load does after its two queries: each parent with its children.
fn with_children<P, C, K: std::hash::Hash + Eq>(
    parents: Vec<P>,
    children: Vec<C>,
    parent_key: impl Fn(&P) -> K,
    child_key: impl Fn(&C) -> K,
) -> Vec<(P, Vec<C>)> {
    let mut grouped: std::collections::HashMap<K, Vec<C>> = Default::default();
    for child in children {
        grouped.entry(child_key(&child)).or_default().push(child);
    }
    parents
        .into_iter()
        .map(|p| {
            let c = grouped.remove(&parent_key(&p)).unwrap_or_default();
            (p, c)
        })
        .collect()
}

fn many_to_many(c: &mut Criterion) {
    let mut group = c.benchmark_group("many-to-many load (100 posts x 10 of 50 users)");
    let mut b = Bench::new();
    let posts = b.seed(100, 0);
    let users: Vec<User> = (0..50)
        .map(|i| {
            b.ours
                .save(User {
                    username: format!("u{i}"),
                    ..User::default()
                })
                .unwrap()
        })
        .collect();
    b.ours
        .transaction(|tx| {
            for (i, post) in posts.iter().enumerate() {
                for j in 0..10 {
                    tx.save(PostEditor {
                        post_id: post.id,
                        editor_id: users[(i + j * 7) % 50].id,
                        ..PostEditor::default()
                    })?;
                }
            }
            Ok::<_, datastore::Error>(())
        })
        .unwrap();
    group.bench_function("datastore", |bench| {
        bench.iter(|| {
            let mut posts: Vec<Post> = b.ours.all().unwrap();
            Post::load_editors(&mut b.ours, &mut posts).unwrap();
            posts
        })
    });
}

fn cascade_delete(c: &mut Criterion) {
    let mut group = c.benchmark_group("cascade delete of a post with K comments");
    for k in [0, 10, 100, 1_000] {
        let mut b = Bench::new();
        group.bench_with_input(BenchmarkId::new("datastore", k), &k, |bench, &k| {
            let (seeder, ours) = (&mut b.seeder, &mut b.ours);
            bench.iter_batched(
                || seed(seeder, 1, k).remove(0),
                |post| ours.delete(&post).unwrap(),
                BatchSize::PerIteration,
            )
        });
        group.bench_with_input(BenchmarkId::new("diesel", k), &k, |bench, &k| {
            let (seeder, diesel) = (&mut b.seeder, &mut b.diesel);
            bench.iter_batched(
                || seed(seeder, 1, k).remove(0).id.to_string(),
                |id| {
                    diesel::delete(hand::posts::table.find(id))
                        .execute(diesel)
                        .unwrap()
                },
                BatchSize::PerIteration,
            )
        });
    }
}

/// The storage variants of the workloads that touch the disk: a WAL file.
fn wal_file(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    find_by_id_in(
        c,
        "WAL file: find by id among 10000 rows",
        Bench::file(&dir),
    );

    let mut group = c.benchmark_group("WAL file: insert rows in one transaction");
    group.sample_size(10);
    let dir = tempfile::tempdir().unwrap();
    insert_rows(
        &mut group,
        10_000,
        &mut Bench::file(&dir),
        BatchSize::LargeInput,
    );
    group.finish();
}

/// The same tables on PostgreSQL, as a Diesel user writes them by hand (with datastore's key
/// and timestamp types, which map to `uuid` and `timestamptz`).
mod hand_pg {
    use datastore::diesel::prelude::*;
    use datastore::{Id, Timestamp};

    diesel::table! {
        use datastore::diesel::sql_types::*;
        use datastore::sql_types::{TimestampUtc, Uuid};

        posts (id) {
            id -> Uuid,
            title -> Text,
            rating -> Integer,
            status -> Text,
            body -> Nullable<Text>,
            created_at -> TimestampUtc,
            updated_at -> TimestampUtc,
        }
    }

    diesel::table! {
        use datastore::diesel::sql_types::*;
        use datastore::sql_types::{TimestampUtc, Uuid};

        comments (id) {
            id -> Uuid,
            content -> Nullable<Text>,
            post_id -> Uuid,
            created_at -> TimestampUtc,
        }
    }

    #[derive(Queryable, Selectable, Insertable, Debug, Clone)]
    #[diesel(table_name = posts)]
    pub struct Post {
        pub id: Id,
        pub title: String,
        pub rating: i32,
        pub status: String,
        pub body: Option<String>,
        pub created_at: Timestamp,
        pub updated_at: Timestamp,
    }

    #[derive(Queryable, Selectable, Debug, Clone)]
    #[diesel(table_name = comments)]
    #[allow(dead_code)] // loaded whole, as an application would; the benchmark reads only the key
    pub struct Comment {
        pub id: Id,
        pub content: Option<String>,
        pub post_id: Id,
        pub created_at: Timestamp,
    }
}

/// The relation workloads on the PostgreSQL server named by `DATASTORE_POSTGRES_URL` (skipped
/// without it), in a schema of their own, dropped afterwards: datastore through its store, and
/// hand-written Diesel on a `PgConnection`.
fn postgres(c: &mut Criterion) {
    use datastore::diesel::connection::SimpleConnection;
    use datastore::diesel::PgConnection;

    let Ok(url) = std::env::var("DATASTORE_POSTGRES_URL") else {
        eprintln!("PostgreSQL workloads not run: DATASTORE_POSTGRES_URL is not set");
        return;
    };
    let schema = format!("datastore_bench_{}", Id::new().to_string().replace('-', ""));
    let mut admin = PgConnection::establish(&url).unwrap();
    admin
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .unwrap();
    let separator = if url.contains('?') { '&' } else { '?' };
    let schema_url = format!("{url}{separator}options=-csearch_path%3D{schema}");
    let store = Store::open(&schema_url, datastore::embed_migrations!()).unwrap();
    let mut ours = store.conn().unwrap();
    let mut seeder = store.conn().unwrap();
    let mut diesel = PgConnection::establish(&schema_url).unwrap();

    let posts = seed(&mut seeder, 10_000, 0);
    let id = posts[5_000].id;
    let mut group = c.benchmark_group("PostgreSQL: find by id among 10000 rows");
    group.bench_function("datastore", |bench| {
        bench.iter(|| ours.find::<Post>(&id).unwrap())
    });
    group.bench_function("diesel", |bench| {
        bench.iter(|| {
            hand_pg::posts::table
                .find(id)
                .first::<hand_pg::Post>(&mut diesel)
                .optional()
                .unwrap()
        })
    });
    group.finish();
    ours.batch_execute("DELETE FROM posts").unwrap();

    let mut group = c.benchmark_group("PostgreSQL: eager loading posts with comments");
    seed(&mut seeder, 100, 10);
    group.bench_function(BenchmarkId::new("datastore", "100x10"), |bench| {
        bench.iter(|| {
            let mut posts: Vec<Post> = ours.all().unwrap();
            Post::load_comments(&mut ours, &mut posts).unwrap();
            posts
        })
    });
    group.bench_function(BenchmarkId::new("diesel", "100x10"), |bench| {
        bench.iter(|| {
            use hand_pg::{comments, posts};
            let posts = posts::table
                .order(posts::id)
                .load::<hand_pg::Post>(&mut diesel)
                .unwrap();
            let ids: Vec<Id> = posts.iter().map(|p| p.id).collect();
            let children = comments::table
                .filter(comments::post_id.eq_any(ids))
                .order(comments::id)
                .load::<hand_pg::Comment>(&mut diesel)
                .unwrap();
            with_children(posts, children, |p| p.id, |c| c.post_id)
        })
    });
    group.finish();

    let mut group = c.benchmark_group("PostgreSQL: cascade delete of a post with K comments");
    group.bench_function(BenchmarkId::new("datastore", 100), |bench| {
        bench.iter_batched(
            || seed(&mut seeder, 1, 100).remove(0),
            |post| ours.delete(&post).unwrap(),
            BatchSize::PerIteration,
        )
    });
    group.bench_function(BenchmarkId::new("diesel", 100), |bench| {
        bench.iter_batched(
            || seed(&mut seeder, 1, 100).remove(0).id,
            |id| {
                diesel::delete(hand_pg::posts::table.find(id))
                    .execute(&mut diesel)
                    .unwrap()
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();

    let mut group = c.benchmark_group("PostgreSQL: insert rows");
    group.bench_function(BenchmarkId::new("datastore", 10), |bench| {
        bench.iter_batched(
            || (0..10).map(post).collect::<Vec<_>>(),
            |rows| save_all(&mut ours, rows),
            BatchSize::SmallInput,
        )
    });
    group.bench_function(BenchmarkId::new("diesel", 10), |bench| {
        bench.iter_batched(
            || {
                (0..10)
                    .map(|i| {
                        let now = Timestamp::now();
                        hand_pg::Post {
                            id: Id::new(),
                            title: format!("post {i}"),
                            rating: i % 10,
                            status: "Active".into(),
                            body: Some("body".into()),
                            created_at: now,
                            updated_at: now,
                        }
                    })
                    .collect::<Vec<_>>()
            },
            |rows| {
                diesel
                    .transaction(|conn| {
                        for row in &rows {
                            diesel::insert_into(hand_pg::posts::table)
                                .values(row)
                                .execute(conn)?;
                        }
                        diesel::QueryResult::Ok(())
                    })
                    .unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();

    drop((ours, seeder, store));
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .unwrap();
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
    targets = trivial_query, medium_complex_query, insert, find_by_id, eager_loading, many_to_many, cascade_delete, wal_file, postgres
}
criterion_main!(benches);
