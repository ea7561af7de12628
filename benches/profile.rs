//! One operation repeated, for `valgrind --tool=callgrind`, whose instruction counts do not
//! depend on the machine's noise the way times do. BENCHMARKS.md's instruction counts come
//! from it:
//!
//! ```text
//! cargo build --profile bench -p datastore-benches --example profile
//! valgrind --tool=callgrind target/release/examples/profile store 20000
//! valgrind --tool=callgrind target/release/examples/profile plain 20000
//! ```
//!
//! Modes, each on an in-memory database holding one post:
//! - `store N`: `all::<Post>()` N times on a connection from the store (its hooks installed);
//! - `plain N`: the same typed rows N times on a plain `SqliteConnection` (through
//!   `Post::query()`, the statement `all` runs); `plain-all N`: `store`'s own statement there,
//!   without the hooks;
//! - `insert N`: `insert_all` of 10,000 posts N times, in the caller's transaction and then
//!   in its own, printing the mean time of each (the posts are deleted after each run);
//! - `find N`: `find::<Post>` of the stored post by its key, N times;
//! - `insert1 N`: `insert_all` of one new post in a transaction, N times (the insert workload
//!   at one row);
//! - `save N`: `save` of one new post, N times;
//! - `insert100 N`: `insert_all` of 100 new posts in a transaction, N times;
//! - `rusqlite-find N`, `diesel-find N`, `rusqlite-insert100 N`: the peers' forms of `find`
//!   and `insert100` on the same database, as `benches/workloads` writes them (rusqlite's
//!   cached statements reading and binding text; Diesel's `find(..).get_result` and a
//!   multi-row `insert_into`), so that instruction counts compare side by side;
//! - `observe0 N`, `observe1 N`, `observe1-read N`, `observe10-read N`, `plain-insert N`: N
//!   transactions of 1,000 single-row Diesel inserts (the observe benchmark's writes) on a
//!   connection of the store with no subscriber, with one that is not read, with one and with
//!   ten read in turn on the writer's thread after each commit; and on a plain connection
//!   without hooks;
//! - `rusqlite-insert1000 N`, `floor-read N`, `floor-copy N`, `floor-copy-starts N`: the same
//!   writes through rusqlite, with no hook, and with the hooks the store's capture installs,
//!   doing only what SQLite makes them do (reading each new value; and copying its bytes; with
//!   only the statements' starts traced): what SQLite's interfaces cost `observe1` per row
//!   before the store's own work (see `capture_floor.rs`);
//! - `eager N`, `diesel-eager N`: 100 posts with 10 comments each loaded N times, with
//!   `all` and `load_comments`, and as hand-written Diesel loads them (text columns,
//!   `belonging_to` and `grouped_by`) on a plain `SqliteConnection`; `diesel-all N`: the
//!   one-row trivial query as hand-written Diesel runs it (compare with `store`);
//!   `diesel-typed-all N`: the same with datastore's key and time types (`Id`, `Timestamp`),
//!   which read the text they are stored as into typed values, as `store` does;
//! - `medium N`, `diesel-medium N`: the medium query at 10 rows (posts with a comment
//!   matching a `LIKE` pattern, among 20) N times, with `datastore::query!` and as
//!   hand-written Diesel writes it;
//! - `delete N [K]`, `diesel-delete N [K]`, `delete-setup N [K]`: N posts with K comments each
//!   (none without K) inserted, then deleted one by one
//!   with `delete_by_id` and as hand-written Diesel deletes them (by text key, on a plain
//!   connection with foreign keys on); `delete-setup` only inserts, to subtract;
//! - `all1000 N`, `query1000 N`, `plain1000 N`: the 1,000 posts of the table read N times with
//!   `all`, with `query` (the caller's query, on the store's `AnyConnection`) and on a plain
//!   `SqliteConnection`;
//! - `delete-in-transaction N`: on PostgreSQL (`DATASTORE_POSTGRES_URL`, in a schema of its own),
//!   inside one transaction, N posts deleted with `delete_by_id` (in a savepoint, so that a
//!   refusal leaves the transaction usable) and N with a plain Diesel `DELETE`, printing the
//!   mean time of each.
//!
//! - `pg-insert10 N`, `pg-insert10-diesel N`: on PostgreSQL, 10 posts inserted N times, each
//!   time in a transaction, as `benches/workloads` inserts them: with `insert_all`, and with
//!   Diesel's multi-row insert, on the store's connection (the client's instructions; the
//!   server's are not counted).
//! - `pg-insert10-alternate N`: the same inserts timed in N alternating rounds, the store's and
//!   Diesel's on one backend and Diesel's on another, to tell the code from the connection.
//! - `pg-find N`, `pg-find-diesel N`: on PostgreSQL, one post found by its key N times, with
//!   `find` on a connection from the store, and as `benches/workloads` writes it in Diesel
//!   (`find(..).first()`) on the same server connection.
//! - `pg-medium N`, `pg-medium-diesel N`: on PostgreSQL, the medium query at 100 rows N times,
//!   with `datastore::query!` and as `benches/workloads` writes it in Diesel, on the same
//!   server connection.
//!
//! Subtract a run with N = 0 to leave out the set-up.

#[path = "../examples/blog/models.rs"]
#[allow(dead_code)]
mod models;
// Schemas of their own on the server, as the tests make them.
#[path = "../tests/common/pg_schema.rs"]
#[allow(dead_code)]
mod pg_schema;

use std::hint::black_box;
use std::time::{Duration, Instant};

use datastore::diesel::connection::SimpleConnection;
use datastore::diesel::{Connection, SqliteConnection};
use datastore::prelude::*;
use models::{Comment, Post};

#[macro_use]
#[path = "workloads/queries.rs"]
mod queries;

#[path = "capture_floor.rs"]
#[allow(dead_code)] // its Diesel connection is timed by `observe.rs`
mod capture_floor;

/// Hand-written Diesel as `benches/workloads/hand_diesel.rs` writes it on SQLite: keys and
/// instants read as the text they are stored as, relations loaded with Diesel's associations.
mod hand_written {
    use datastore::diesel::prelude::*;
    use datastore::diesel::SqliteConnection;

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
            parent_id -> Nullable<Text>,
            author_id -> Nullable<Text>,
        }
    }

    diesel::allow_tables_to_appear_in_same_query!(posts, comments);

    #[derive(Queryable, Selectable, Identifiable, Debug)]
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

    #[derive(Queryable, Selectable, Identifiable, Associations, Debug)]
    #[diesel(table_name = comments, belongs_to(Post))]
    pub struct Comment {
        pub id: String,
        pub content: Option<String>,
        pub post_id: String,
        pub created_at: String,
        pub parent_id: Option<String>,
        pub author_id: Option<String>,
    }

    all_posts!(SqliteConnection);

    /// With datastore's key and time types, as `benches/workloads` writes it on PostgreSQL
    /// (and as a Diesel user who wants those types on SQLite does).
    pub mod typed {
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

        /// A post as hand-written Diesel reads and inserts it, with datastore's key and time
        /// types.
        #[derive(Queryable, Selectable, Insertable)]
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

        diesel::table! {
            use datastore::diesel::sql_types::*;
            use datastore::sql_types::Uuid;

            comments (id) {
                id -> Uuid,
                content -> Nullable<Text>,
                post_id -> Uuid,
            }
        }

        diesel::allow_tables_to_appear_in_same_query!(posts, comments);

        posts_commented!(PgConnection);
        all_posts!(diesel::SqliteConnection);

        impl From<&crate::Post> for Post {
            fn from(post: &crate::Post) -> Self {
                Self {
                    id: post.id,
                    title: post.title.clone(),
                    rating: post.rating,
                    status: "Active".into(),
                    body: post.body.clone(),
                    created_at: post.created_at,
                    updated_at: post.updated_at,
                }
            }
        }
    }

    posts_commented!(SqliteConnection);

    /// Deletes a post by its key.
    pub fn delete_post(conn: &mut SqliteConnection, key: &str) -> usize {
        diesel::delete(posts::table.find(key))
            .execute(conn)
            .unwrap()
    }

    /// Every post with its comments, in key order.
    pub fn posts_with_comments(conn: &mut SqliteConnection) -> Vec<(Post, Vec<Comment>)> {
        let posts = all_posts(conn);
        let comments = Comment::belonging_to(&posts)
            .order(comments::id)
            .load::<Comment>(conn)
            .unwrap()
            .grouped_by(&posts);
        posts.into_iter().zip(comments).collect()
    }
}

/// Posts beside `stored` up to `posts` in all, and `comments` comments on each of them, the
/// comment `c` of post `p` saying `content(p, c)`.
fn seed(
    conn: &mut datastore::PooledConn,
    stored: &Post,
    posts: usize,
    comments: usize,
    content: impl Fn(usize, usize) -> String,
) {
    let content = &content;
    conn.transaction(|tx| {
        let posts = tx.insert_all((1..posts).map(|_| Post::default()).collect())?;
        let comments = posts
            .iter()
            .chain([stored])
            .enumerate()
            .flat_map(|(p, post)| {
                (0..comments).map(move |c| Comment {
                    post_id: post.id,
                    content: Some(content(p, c)),
                    ..Comment::default()
                })
            })
            .collect();
        tx.insert_all(comments)
    })
    .unwrap();
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(mode), Some(n)) = (args.next(), args.next().and_then(|n| n.parse().ok())) else {
        eprintln!("usage: profile MODE N (the modes: this file's documentation)");
        std::process::exit(2);
    };
    if mode == "delete-in-transaction" {
        return delete_in_transaction(n);
    }
    if mode == "pg-insert10-alternate" {
        return postgres_insert10_alternate(n);
    }
    // On PostgreSQL: the store's form, or hand-written Diesel's with `-diesel`.
    let on_postgres: [(&str, PostgresMode); 3] = [
        ("pg-insert10", postgres_insert10),
        ("pg-find", postgres_find),
        ("pg-medium", postgres_medium),
    ];
    for (prefix, run) in on_postgres {
        match mode.strip_prefix(prefix) {
            Some("") => return run(false, n),
            Some("-diesel") => return run(true, n),
            _ => {}
        }
    }
    let url = format!("file:/profile-{}?vfs=memdb", Id::new());
    let store = Store::builder(&url)
        .migrations(datastore::embed_migrations!(
            sqlite = "../migrations/sqlite",
            postgres = "../migrations/postgres"
        ))
        .observe_buffer(1 << 22)
        .open()
        .unwrap();
    let mut conn = store.conn().unwrap();
    let stored = conn.save(Post::default()).unwrap();
    match mode.as_str() {
        "find" => {
            for _ in 0..n {
                black_box(conn.find::<Post>(&stored.id).unwrap());
            }
        }
        "insert1" => {
            for _ in 0..n {
                let rows = vec![Post::default()];
                black_box(conn.transaction(|tx| tx.insert_all(rows)).unwrap());
            }
        }
        "save" => {
            for _ in 0..n {
                black_box(conn.save(Post::default()).unwrap());
            }
        }
        "insert100" => {
            for _ in 0..n {
                let rows: Vec<Post> = (0..100).map(|_| Post::default()).collect();
                black_box(conn.transaction(|tx| tx.insert_all(rows)).unwrap());
            }
        }
        "rusqlite-find" => {
            let peer = rusqlite::Connection::open_with_flags(
                &url,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_URI,
            )
            .unwrap();
            let key = stored.id.to_string();
            for _ in 0..n {
                let mut stmt = peer
                    .prepare_cached(
                        "SELECT id, title, rating, status, body, created_at, updated_at \
                         FROM posts WHERE id = ?1",
                    )
                    .unwrap();
                black_box(
                    stmt.query_row([&key], |row| {
                        Ok((
                            row.get::<_, String>(0)?,
                            row.get::<_, String>(1)?,
                            row.get::<_, i32>(2)?,
                            row.get::<_, String>(3)?,
                            row.get::<_, Option<String>>(4)?,
                            row.get::<_, String>(5)?,
                            row.get::<_, String>(6)?,
                        ))
                    })
                    .unwrap(),
                );
            }
        }
        "diesel-find" => {
            use models::posts;
            let mut plain = SqliteConnection::establish(&url).unwrap();
            for _ in 0..n {
                black_box(
                    posts::table
                        .find(stored.id)
                        .get_result::<Post>(&mut plain)
                        .unwrap(),
                );
            }
        }
        "rusqlite-insert100" => {
            let peer = rusqlite::Connection::open_with_flags(
                &url,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_URI,
            )
            .unwrap();
            for _ in 0..n {
                capture_floor::insert_posts(&peer, 100);
            }
        }
        "rusqlite-insert1000" => capture_floor::run(&url, capture_floor::Floor::NoHooks, n),
        "floor-read" => capture_floor::run(&url, capture_floor::Floor::Read, n),
        "floor-copy" => capture_floor::run(&url, capture_floor::Floor::Copy, n),
        "floor-copy-starts" => capture_floor::run(&url, capture_floor::Floor::CopyStarts, n),
        "observe0" | "observe1" | "observe1-read" | "observe10-read" | "plain-insert" => {
            let subscribers = match mode.as_str() {
                "observe1" | "observe1-read" => 1,
                "observe10-read" => 10,
                _ => 0,
            };
            let subscriptions: Vec<_> = (0..subscribers)
                .map(|_| store.observe::<Post>().unwrap())
                .collect();
            let read = mode.ends_with("-read");
            let mut plain = (mode == "plain-insert").then(|| {
                let mut plain = SqliteConnection::establish(&url).unwrap();
                plain.batch_execute("PRAGMA foreign_keys = ON").unwrap();
                plain
            });
            let sqlite = match &mut *conn {
                datastore::AnyConnection::Sqlite(conn) => conn,
                _ => unreachable!("the profile's store is SQLite"),
            };
            let target = plain.as_mut().unwrap_or(sqlite);
            for _ in 0..n {
                let rows: Vec<Post> = (0..1_000).map(|_| Post::default()).collect();
                target
                    .transaction(|conn| {
                        for row in &rows {
                            datastore::diesel::insert_into(models::posts::table)
                                .values(row)
                                .execute(conn)?;
                        }
                        datastore::diesel::QueryResult::Ok(())
                    })
                    .unwrap();
                if read {
                    for subscription in &subscriptions {
                        while let Some(change) = subscription.try_recv() {
                            black_box(change);
                        }
                    }
                }
            }
        }
        "all1000" | "query1000" | "plain1000" => {
            conn.insert_all((0..999).map(|_| Post::default()).collect())
                .unwrap();
            let mut plain = SqliteConnection::establish(&url).unwrap();
            for _ in 0..n {
                let rows = match mode.as_str() {
                    "all1000" => conn.all::<Post>().unwrap(),
                    "query1000" => conn.query::<Post>(|q| q).unwrap(),
                    _ => Post::query().load::<Post>(&mut plain).unwrap(),
                };
                assert_eq!(black_box(rows).len(), 1000);
            }
        }
        "eager" | "diesel-eager" => {
            // 100 posts with 10 comments each: the eager-loading workload at 100x10.
            seed(&mut conn, &stored, 100, 10, |_, c| format!("comment {c}"));
            if mode == "eager" {
                for _ in 0..n {
                    let mut posts: Vec<Post> = conn.all().unwrap();
                    Post::load_comments(&mut conn, &mut posts).unwrap();
                    assert_eq!(black_box(posts).len(), 100);
                }
            } else {
                let mut plain = SqliteConnection::establish(&url).unwrap();
                for _ in 0..n {
                    let loaded = hand_written::posts_with_comments(&mut plain);
                    assert_eq!(black_box(loaded).len(), 100);
                }
            }
        }
        "medium" | "diesel-medium" => {
            // 10 posts with a comment each that the pattern matches, 10 with one it does
            // not: the medium query at 10 rows.
            seed(&mut conn, &stored, 20, 1, |p, _| {
                format!("comment {}", p % 2)
            });
            if mode == "medium" {
                use models::comments::content;
                for _ in 0..n {
                    let posts = datastore::query!(conn, Post, |q| q
                        .filter(Post::having_comments(content.like("%1%"))))
                    .unwrap();
                    assert_eq!(black_box(posts).len(), 10);
                }
            } else {
                let mut plain = SqliteConnection::establish(&url).unwrap();
                for _ in 0..n {
                    let posts = hand_written::posts_commented(&mut plain, "%1%");
                    assert_eq!(black_box(posts).len(), 10);
                }
            }
        }
        "delete" | "diesel-delete" | "delete-setup" => {
            // N posts with K comments each (K from the third argument, 0 without), then
            // deleted one by one (the cascade workload); `delete-setup` only inserts them, to
            // subtract.
            let k: usize = args.next().and_then(|k| k.parse().ok()).unwrap_or(0);
            let posts = conn
                .transaction(|tx| {
                    let posts = tx.insert_all((0..n).map(|_| Post::default()).collect())?;
                    let comments = posts
                        .iter()
                        .flat_map(|post| {
                            (0..k).map(|_| Comment {
                                post_id: post.id,
                                ..Comment::default()
                            })
                        })
                        .collect();
                    tx.insert_all::<Comment>(comments)?;
                    Ok::<_, datastore::Error>(posts)
                })
                .unwrap();
            let mut plain = SqliteConnection::establish(&url).unwrap();
            plain.batch_execute("PRAGMA foreign_keys = ON").unwrap();
            for post in &posts {
                match mode.as_str() {
                    "delete" => conn.delete_by_id::<Post>(&post.id).unwrap(),
                    "diesel-delete" => assert_eq!(
                        hand_written::delete_post(&mut plain, &post.id.to_string()),
                        1
                    ),
                    _ => {}
                }
            }
        }
        "plain-all" => {
            // `store`'s statement on a connection without the store's hooks: what the hooks
            // cost a one-row query.
            let mut plain = SqliteConnection::establish(&url).unwrap();
            for _ in 0..n {
                black_box(Post::all(&mut plain).unwrap());
            }
        }
        "diesel-all" => {
            let mut plain = SqliteConnection::establish(&url).unwrap();
            for _ in 0..n {
                black_box(hand_written::all_posts(&mut plain));
            }
        }
        "diesel-typed-all" => {
            let mut plain = SqliteConnection::establish(&url).unwrap();
            for _ in 0..n {
                black_box(hand_written::typed::all_posts(&mut plain));
            }
        }
        "store" => {
            for _ in 0..n {
                black_box(conn.all::<Post>().unwrap());
            }
        }
        "plain" => {
            let mut plain = SqliteConnection::establish(&url).unwrap();
            for _ in 0..n {
                black_box(Post::query().load::<Post>(&mut plain).unwrap());
            }
        }
        "insert" => {
            for in_transaction in [true, false] {
                let mut total = Duration::ZERO;
                for _ in 0..n {
                    let rows: Vec<Post> = (0..10_000).map(|_| Post::default()).collect();
                    let start = Instant::now();
                    if in_transaction {
                        conn.transaction(|tx| tx.insert_all(rows)).unwrap();
                    } else {
                        conn.insert_all(rows).unwrap();
                    }
                    total += start.elapsed();
                    conn.batch_execute("DELETE FROM posts").unwrap();
                }
                let within = if in_transaction {
                    "in the caller's transaction"
                } else {
                    "alone"
                };
                println!(
                    "insert_all of 10,000 posts, {within}: {:?}",
                    total / n.max(1)
                );
            }
        }
        _ => {
            eprintln!(
                "unknown mode {mode}: store, plain, plain-all, insert, find, insert1, insert100, save, \
                 rusqlite-find, diesel-find, rusqlite-insert100, observe0, observe1, \
                 observe1-read, observe10-read, plain-insert, rusqlite-insert1000, floor-read, \
                 floor-copy, floor-copy-starts, eager, diesel-eager, diesel-all, \
                 diesel-typed-all, delete, diesel-delete, delete-setup, \
                 all1000, query1000 or plain1000"
            );
            std::process::exit(2);
        }
    }
}

/// A schema of its own on the PostgreSQL server named by `DATASTORE_POSTGRES_URL`, with the
/// blog's tables: its store, and the schema, to drop after the store
/// ([`drop_postgres_store`]).
fn postgres_store() -> (Store, pg_schema::PgSchema) {
    let url = std::env::var("DATASTORE_POSTGRES_URL").expect("DATASTORE_POSTGRES_URL");
    let schema = pg_schema::PgSchema::with_prefix(&url, pg_schema::BENCH_SCHEMA_PREFIX);
    let store = Store::builder(schema.url())
        .migrations(datastore::embed_migrations!(
            sqlite = "../migrations/sqlite",
            postgres = "../migrations/postgres"
        ))
        .open()
        .unwrap();
    (store, schema)
}

/// Closes the store, then drops its schema.
fn drop_postgres_store(store: Store, schema: pg_schema::PgSchema) {
    drop(store);
    drop(schema);
}

/// `pg-insert10 N` (`insert_all`) and `pg-insert10-diesel N` (Diesel's multi-row insert), each
/// in a transaction as `benches/workloads` writes them: 10 new posts with a body inserted N
/// times on PostgreSQL, for the client's instructions side by side (the server's are not
/// counted).
fn postgres_insert10(diesel: bool, n: u32) {
    let (store, schema) = postgres_store();
    {
        let mut conn = store.conn().unwrap();
        for _ in 0..n {
            let rows: Vec<Post> = (0..10)
                .map(|_| Post {
                    body: Some("body".into()),
                    ..Post::default()
                })
                .collect();
            if diesel {
                let rows: Vec<_> = rows.iter().map(hand_written::typed::Post::from).collect();
                let inserted = postgres(&mut conn)
                    .transaction(|tx| {
                        diesel::insert_into(hand_written::typed::posts::table)
                            .values(&rows)
                            .execute(tx)
                    })
                    .unwrap();
                assert_eq!(inserted, 10);
            } else {
                let inserted = conn.transaction(|tx| tx.insert_all(rows)).unwrap();
                assert_eq!(inserted.len(), 10);
            }
        }
    }
    drop_postgres_store(store, schema);
}

/// A mode run on PostgreSQL: hand-written Diesel's form (`true`) or the store's, N times.
type PostgresMode = fn(bool, u32);

/// The PostgreSQL connection inside a connection of a PostgreSQL store.
fn postgres(conn: &mut datastore::AnyConnection) -> &mut datastore::diesel::PgConnection {
    match conn {
        datastore::AnyConnection::Postgres(conn) => conn,
        _ => unreachable!("a PostgreSQL store"),
    }
}

/// `pg-find N` and `pg-find-diesel N`: a post found by its key N times on PostgreSQL,
/// through the store's connection (its dispatch on `AnyConnection` included) or with Diesel's
/// `find(..).first()` on the PostgreSQL connection inside it, for the client's instructions: a
/// round trip's wall-clock time follows its connection's latency on this machine, not the code
/// (`BENCHMARKS.md`).
fn postgres_find(diesel: bool, n: u32) {
    let (store, schema) = postgres_store();
    {
        let mut conn = store.conn().unwrap();
        let stored = conn.save(Post::default()).unwrap();
        for _ in 0..n {
            let found = if diesel {
                hand_written::typed::posts::table
                    .find(stored.id)
                    .first::<hand_written::typed::Post>(postgres(&mut conn))
                    .optional()
                    .unwrap()
                    .is_some()
            } else {
                conn.find::<Post>(&stored.id).unwrap().is_some()
            };
            assert!(black_box(found));
        }
    }
    drop_postgres_store(store, schema);
}

/// The medium query at 100 rows (posts with a comment matching a pattern, among 200) on
/// PostgreSQL, with `datastore::query!` on a connection from the store, and as
/// `benches/workloads` writes it in Diesel on the same server connection.
fn postgres_medium(diesel: bool, n: u32) {
    let (store, schema) = postgres_store();
    {
        let mut conn = store.conn().unwrap();
        let stored = conn.save(Post::default()).unwrap();
        seed(&mut conn, &stored, 200, 1, |p, _| {
            format!("comment {}", p % 2)
        });
        for _ in 0..n {
            let found = if diesel {
                hand_written::typed::posts_commented(postgres(&mut conn), "%1%").len()
            } else {
                use models::comments::content;
                datastore::query!(conn, Post, |q| q
                    .filter(Post::having_comments(content.like("%1%"))))
                .unwrap()
                .len()
            };
            assert_eq!(black_box(found), 100);
        }
    }
    drop_postgres_store(store, schema);
}

/// `delete_by_id` inside a PostgreSQL transaction, beside a plain Diesel `DELETE`.
fn delete_in_transaction(n: u32) {
    use models::posts;

    let (store, schema) = postgres_store();
    let (store_delete, plain_delete) = store
        .transaction(|tx| {
            let posts: Vec<Post> = (0..2 * n).map(|_| Post::default()).collect();
            let posts = tx.insert_all(posts)?;
            let (by_store, plain) = posts.split_at(n as usize);
            let start = Instant::now();
            for post in by_store {
                tx.delete_by_id::<Post>(&post.id)?;
            }
            let store_delete = start.elapsed();
            let start = Instant::now();
            for post in plain {
                diesel::delete(posts::table.find(post.id)).execute(tx)?;
            }
            Ok((store_delete, start.elapsed()))
        })
        .unwrap();
    drop_postgres_store(store, schema);
    let per = |d: Duration| d / n.max(1);
    println!(
        "delete inside a PostgreSQL transaction: delete_by_id {:?}, plain Diesel DELETE {:?}",
        per(store_delete),
        per(plain_delete)
    );
}

/// `pg-insert10-alternate N`: whether the 10-row insert's time on PostgreSQL follows the code
/// or the server's backend. N rounds; in each, 100 inserts of 10 rows by each of: the store's
/// `insert_all` in a transaction on a connection from the store, Diesel's multi-row insert on
/// that connection's `PgConnection` (the same backend), and Diesel's on a plain `PgConnection`
/// of its own (another backend), the order rotating; the table emptied on another of the
/// store's connections before each insert, as `benches/workloads` does, and only the insert
/// timed. Prints each's median time and the medians of the rounds' ratios.
fn postgres_insert10_alternate(n: u32) {
    let (store, schema) = postgres_store();
    {
        let url = std::env::var("DATASTORE_POSTGRES_URL").unwrap();
        let mut plain = datastore::diesel::PgConnection::establish(&url).unwrap();
        plain
            .batch_execute(&format!("SET search_path TO {}", schema.name()))
            .unwrap();
        let mut conn = store.conn().unwrap();
        let mut times: [Vec<f64>; 3] = Default::default();
        let staged: Vec<Post> = (0..10)
            .map(|i| Post {
                title: format!("post {i}"),
                body: Some("body".into()),
                ..Post::default()
            })
            .collect();
        let typed: Vec<_> = staged.iter().map(hand_written::typed::Post::from).collect();
        for round in 0..n {
            for k in 0..3 {
                let which = (k + round as usize) % 3;
                let mut total = Duration::ZERO;
                for _ in 0..100 {
                    store
                        .conn()
                        .unwrap()
                        .batch_execute("DELETE FROM posts")
                        .unwrap();
                    let rows = staged.clone();
                    let start = Instant::now();
                    match which {
                        0 => {
                            conn.transaction(|tx| tx.insert_all(rows)).unwrap();
                        }
                        _ => {
                            let pg = if which == 1 {
                                postgres(&mut conn)
                            } else {
                                &mut plain
                            };
                            pg.transaction(|tx| {
                                diesel::insert_into(hand_written::typed::posts::table)
                                    .values(&typed)
                                    .execute(tx)
                            })
                            .unwrap();
                        }
                    }
                    total += start.elapsed();
                }
                times[which].push(total.as_secs_f64() / 100.0 * 1e6);
            }
        }
        let median = |mut t: Vec<f64>| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        };
        const NAMES: [&str; 3] = [
            "the store",
            "Diesel on the store's backend",
            "Diesel on a backend of its own",
        ];
        for (name, t) in NAMES.iter().zip(&times) {
            println!("{name}: median {:.1} us", median(t.clone()));
        }
        for (i, j) in [(0, 1), (0, 2), (1, 2)] {
            let ratios = times[i].iter().zip(&times[j]).map(|(a, b)| a / b);
            let ratio = median(ratios.collect());
            println!("{} / {}: {ratio:.3}", NAMES[i], NAMES[j]);
        }
    }
    drop_postgres_store(store, schema);
}
