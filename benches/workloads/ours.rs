//! datastore: the generated repository methods on a connection held from the store's pool, as
//! an application that holds one for a unit of work runs them.

use datastore::prelude::*;
use datastore::PooledConn;

use crate::db::Db;
use crate::models::Post;
use crate::{forum, int_keyed, IntKeyedPeer, Key, Peer};

pub struct Datastore {
    conn: PooledConn,
    staged: Vec<Post>,
    /// The integer-keyed rows to insert, then as inserted (with their keys).
    int_keyed: Vec<int_keyed::Post>,
}

impl Datastore {
    pub fn open(db: &Db) -> Self {
        Self {
            conn: db.store.conn().unwrap(),
            staged: Vec::new(),
            int_keyed: Vec::new(),
        }
    }
}

/// How many children the loaded `has_many` lists hold.
fn loaded<'a, T: 'a>(lists: impl Iterator<Item = &'a HasMany<T>>) -> usize {
    lists.map(|list| list.get().map_or(0, <[T]>::len)).sum()
}

impl Peer for Datastore {
    fn posts(&mut self) -> usize {
        self.conn.all::<Post>().unwrap().len()
    }

    fn posts_commented(&mut self, pattern: &str) -> usize {
        use crate::models::comments::content;
        datastore::query!(self.conn, Post, |q| q
            .filter(Post::having_comments(content.like(pattern.to_owned()))))
        .unwrap()
        .len()
    }

    fn find_post(&mut self, key: &Key) -> usize {
        self.conn.find::<Post>(&key.id).unwrap().into_iter().count()
    }

    fn stage_posts(&mut self, posts: &[Post]) {
        // New rows, each with a key of its own, as the other peers stage theirs: the keys of
        // the rows the last insert wrote (and the set-up deleted) would make PostgreSQL's
        // unique index visit their dead versions, about 10 us more on each insert of 10 rows.
        self.staged = posts
            .iter()
            .map(|post| Post {
                id: Id::new(),
                ..post.clone()
            })
            .collect();
    }

    fn insert_staged(&mut self) -> usize {
        let rows = std::mem::take(&mut self.staged);
        self.conn
            .transaction(|tx| tx.insert_all(rows))
            .unwrap()
            .len()
    }

    fn posts_with_comments(&mut self) -> usize {
        let mut posts: Vec<Post> = self.conn.all().unwrap();
        Post::load_comments(&mut self.conn, &mut posts).unwrap();
        loaded(posts.iter().map(|p| &p.comments))
    }

    fn posts_with_editors(&mut self) -> usize {
        let mut posts: Vec<Post> = self.conn.all().unwrap();
        Post::load_editors(&mut self.conn, &mut posts).unwrap();
        posts
            .iter()
            .map(|p| p.editors.get().map_or(0, <[_]>::len))
            .sum()
    }

    fn users_posts_comments(&mut self) -> usize {
        let mut users: Vec<forum::User> = self.conn.all().unwrap();
        forum::User::load_posts(&mut self.conn, &mut users).unwrap();
        let posts = users
            .iter_mut()
            .flat_map(|u| u.posts.get_mut().into_iter().flatten());
        forum::Post::load_comments(&mut self.conn, posts).unwrap();
        users
            .iter()
            .flat_map(|u| u.posts.get().unwrap_or_default())
            .map(|p| p.comments.get().map_or(0, <[_]>::len))
            .sum()
    }

    fn delete_post(&mut self, key: &Key) {
        self.conn.delete_by_id::<Post>(&key.id).unwrap();
    }
}

impl IntKeyedPeer for Datastore {
    fn find_post(&mut self, id: i64) -> usize {
        self.conn
            .find::<int_keyed::Post>(&id)
            .unwrap()
            .into_iter()
            .count()
    }

    fn stage_posts(&mut self, posts: &[int_keyed::Post]) {
        self.int_keyed = posts.to_vec();
    }

    fn insert_staged(&mut self) -> usize {
        let rows = std::mem::take(&mut self.int_keyed);
        self.int_keyed = self.conn.transaction(|tx| tx.insert_all(rows)).unwrap();
        self.int_keyed.len()
    }

    fn inserted_keys(&self) -> Vec<i64> {
        self.int_keyed.iter().map(|p| p.id).collect()
    }

    fn posts_with_comments(&mut self) -> usize {
        let mut posts: Vec<int_keyed::Post> = self.conn.all().unwrap();
        int_keyed::Post::load_comments(&mut self.conn, &mut posts).unwrap();
        loaded(posts.iter().map(|p| &p.comments))
    }
}

/// Variants that tell where datastore's time goes; not peers, so not in the ratios.
pub mod diagnostics {
    use criterion::measurement::WallTime;
    use criterion::{BenchmarkGroup, BenchmarkId};
    use datastore::diesel::{Connection, SqliteConnection};
    use datastore::prelude::*;

    use crate::db::Db;
    use crate::models::Post;
    use crate::Key;

    pub fn trivial_query(group: &mut BenchmarkGroup<'_, WallTime>, db: &Db, parameter: &str) {
        let mut conn = db.store.conn().unwrap();
        // Diesel's DSL on the store's connection, which dispatches each value at run time
        // between SQLite and PostgreSQL (Diesel's `MultiConnection`).
        group.bench_function(
            BenchmarkId::new("datastore, Diesel DSL on AnyConnection", parameter),
            |b| b.iter(|| Post::query().load::<Post>(&mut *conn).unwrap()),
        );
        // datastore's typed rows on a connection without the store's hooks: separates the
        // cost of decoding typed values from the cost of the hooks.
        let mut plain = SqliteConnection::establish(&db.url).unwrap();
        group.bench_function(
            BenchmarkId::new("datastore rows, no hooks", parameter),
            |b| b.iter(|| Post::query().load::<Post>(&mut plain).unwrap()),
        );
    }

    /// The caller's query through `Repo::query` on the store's connection, which runs it on
    /// `AnyConnection` (Diesel's `MultiConnection`), where the workload uses `query!`.
    pub fn medium_query_on_any_connection(
        group: &mut BenchmarkGroup<'_, WallTime>,
        db: &Db,
        n: usize,
    ) {
        use crate::models::comments::content;
        let mut conn = db.store.conn().unwrap();
        group.bench_function(
            BenchmarkId::new("datastore, conn.query on AnyConnection", n),
            |b| {
                b.iter(|| {
                    conn.query::<Post>(|q| q.filter(Post::having_comments(content.like("%1%"))))
                        .unwrap()
                })
            },
        );
    }

    /// The rows saved one by one (`save`, an upsert that returns each row as stored), in one
    /// transaction, where the workload uses the bulk `insert_all`.
    pub fn insert_saving_each(group: &mut BenchmarkGroup<'_, WallTime>, db: &Db, n: usize) {
        let mut conn = db.store.conn().unwrap();
        let rows: Vec<Post> = (0..n).map(crate::db::post).collect();
        group.bench_function(BenchmarkId::new("datastore, save per row", n), |b| {
            b.iter_custom(|iterations| {
                let mut total = std::time::Duration::ZERO;
                for _ in 0..iterations {
                    db.clear_posts();
                    let rows = rows.clone();
                    let start = std::time::Instant::now();
                    conn.transaction(|tx| {
                        rows.into_iter()
                            .map(|row| tx.save(row))
                            .collect::<datastore::Result<Vec<_>>>()
                    })
                    .unwrap();
                    total += start.elapsed();
                }
                total
            })
        });
    }

    /// A find through the store, which takes a connection from its pool for each call.
    pub fn find_through_store(group: &mut BenchmarkGroup<'_, WallTime>, db: &Db) {
        let key = Key::from(db.store.all::<Post>().unwrap()[5_000].id);
        group.bench_function("datastore, through the Store", |b| {
            b.iter(|| db.store.find::<Post>(&key.id).unwrap())
        });
    }
}
