//! The databases the workloads run on, created and seeded through datastore: the blog's
//! schema (its migrations), diesel_bench's forum (users, posts, comments) or the blog's posts
//! and comments keyed by integers, on an in-memory SQLite database, a WAL file, or a schema of
//! its own on the PostgreSQL server.

use datastore::diesel::connection::SimpleConnection;
use datastore::prelude::*;

use crate::models::{Comment, Post, PostEditor, User};
use crate::pg_schema::{PgSchema, BENCH_SCHEMA_PREFIX};
use crate::{forum, int_keyed};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Which tables a database holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tables {
    Blog,
    Forum,
    IntKeyed,
}

pub struct Db {
    pub backend: Backend,
    /// What every peer connects to. On SQLite, a URI that all of them can open; on PostgreSQL,
    /// the server's URL with the database's own schema as the search path.
    pub url: String,
    pub store: Store,
    /// The WAL file's directory, removed on drop.
    _dir: Option<tempfile::TempDir>,
    /// On PostgreSQL, the database's schema, dropped after the store.
    _schema: Option<PgSchema>,
}

pub fn postgres_url() -> Option<String> {
    std::env::var("DATASTORE_POSTGRES_URL").ok()
}

impl Db {
    /// An in-memory database, shared by every connection of this process that names it
    /// (SQLite's `memdb` VFS).
    pub fn memory() -> Self {
        Self::sqlite(Tables::Blog, None)
    }

    /// A file in WAL mode, `synchronous = NORMAL` for every peer.
    pub fn wal_file() -> Self {
        Self::sqlite(Tables::Blog, Some(tempfile::tempdir().unwrap()))
    }

    pub fn forum_memory() -> Self {
        Self::sqlite(Tables::Forum, None)
    }

    pub fn forum_wal_file() -> Self {
        Self::sqlite(Tables::Forum, Some(tempfile::tempdir().unwrap()))
    }

    pub fn int_keyed_memory() -> Self {
        Self::sqlite(Tables::IntKeyed, None)
    }

    pub fn int_keyed_wal_file() -> Self {
        Self::sqlite(Tables::IntKeyed, Some(tempfile::tempdir().unwrap()))
    }

    /// The blog's tables in a new schema on the server at `url`.
    pub fn postgres(url: &str) -> Self {
        Self::server(url, Tables::Blog)
    }

    pub fn postgres_forum(url: &str) -> Self {
        Self::server(url, Tables::Forum)
    }

    pub fn postgres_int_keyed(url: &str) -> Self {
        Self::server(url, Tables::IntKeyed)
    }

    fn sqlite(tables: Tables, dir: Option<tempfile::TempDir>) -> Self {
        let url = match &dir {
            Some(dir) => dir.path().join("bench.db").display().to_string(),
            None => format!("file:/bench-{}?vfs=memdb", Id::new()),
        };
        let store = open(&url, tables);
        Self {
            backend: Backend::Sqlite,
            url,
            store,
            _dir: dir,
            _schema: None,
        }
    }

    fn server(server: &str, tables: Tables) -> Self {
        let schema = PgSchema::with_prefix(server, BENCH_SCHEMA_PREFIX);
        let url = schema.url().to_owned();
        let store = open(&url, tables);
        Self {
            backend: Backend::Postgres,
            url,
            store,
            _dir: None,
            _schema: Some(schema),
        }
    }

    /// Whether this is the PostgreSQL server.
    pub fn is_postgres(&self) -> bool {
        self.backend == Backend::Postgres
    }

    /// Lets the database settle after seeding, before anything is timed: on PostgreSQL,
    /// `VACUUM ANALYZE`, so that no autovacuum runs during a measurement and the planner
    /// knows the tables' sizes.
    pub fn settle(&self) {
        if self.backend == Backend::Postgres {
            self.store
                .conn()
                .unwrap()
                .batch_execute("VACUUM ANALYZE")
                .unwrap();
        }
    }

    /// `n` new posts, each with `m` comments.
    pub fn seed(&self, n: usize, m: usize) -> Vec<Post> {
        self.store
            .transaction(|tx| {
                let mut posts = Vec::with_capacity(n);
                for i in 0..n {
                    let post = tx.save(post(i))?;
                    for j in 0..m {
                        let comment = Comment {
                            content: Some(format!("comment {j}")),
                            ..Comment::default()
                        };
                        tx.save(comment.with_post(&post))?;
                    }
                    posts.push(post);
                }
                Ok(posts)
            })
            .unwrap()
    }

    /// `n` new integer-keyed posts, each with `m` comments; returned with their keys.
    pub fn seed_int_keyed(&self, n: usize, m: usize) -> Vec<int_keyed::Post> {
        self.store
            .transaction(|tx| {
                let mut posts = Vec::with_capacity(n);
                for i in 0..n {
                    let post = tx.save(int_keyed::post(i))?;
                    for j in 0..m {
                        tx.save(int_keyed::Comment {
                            content: Some(format!("comment {j}")),
                            post_id: post.id,
                            ..int_keyed::Comment::default()
                        })?;
                    }
                    posts.push(post);
                }
                Ok(posts)
            })
            .unwrap()
    }

    /// `posts` new posts and `users` new users, each post edited by `per_post` of them.
    pub fn seed_editors(&self, posts: usize, users: usize, per_post: usize) {
        let posts = self.seed(posts, 0);
        self.store
            .transaction(|tx| {
                let users = (0..users)
                    .map(|i| {
                        tx.save(User {
                            username: format!("user {i}"),
                            ..User::default()
                        })
                    })
                    .collect::<datastore::Result<Vec<_>>>()?;
                for (i, post) in posts.iter().enumerate() {
                    for j in 0..per_post {
                        tx.save(PostEditor {
                            post_id: post.id,
                            editor_id: users[(i + j * 7) % users.len()].id,
                            ..PostEditor::default()
                        })?;
                    }
                }
                Ok(())
            })
            .unwrap()
    }

    /// diesel_bench's association data: `users` users, each with `posts` posts, each with
    /// `comments` comments.
    pub fn seed_forum(&self, users: usize, posts: usize, comments: usize) {
        self.store
            .transaction(|tx| {
                for u in 0..users {
                    let user = tx.save(forum::User {
                        name: format!("User {u}"),
                        hair_color: (u % 2 == 0).then(|| "black".to_owned()),
                        ..forum::User::default()
                    })?;
                    for p in 0..posts {
                        let post = tx.save(forum::Post {
                            user_id: user.id,
                            title: format!("Post {p} by user {u}"),
                            ..forum::Post::default()
                        })?;
                        for c in 0..comments {
                            tx.save(forum::Comment {
                                post_id: post.id,
                                text: format!("Comment {c} on post {p}"),
                                ..forum::Comment::default()
                            })?;
                        }
                    }
                }
                Ok(())
            })
            .unwrap()
    }

    /// Deletes every post (and so every comment), so that repeated inserts find the same
    /// table each time and never fill an in-memory database. The blog's and the integer-keyed
    /// posts alike (both tables are `posts`).
    pub fn clear_posts(&self) {
        self.store
            .conn()
            .unwrap()
            .batch_execute("DELETE FROM posts")
            .unwrap();
    }

    pub fn count_posts(&self) -> usize {
        self.store.count::<Post>().unwrap()
    }
}

fn open(url: &str, tables: Tables) -> Store {
    let builder = Store::builder(url).synchronous(datastore::Synchronous::Normal);
    let builder = match tables {
        Tables::Blog => builder.migrations(datastore::embed_migrations!(
            sqlite = "../migrations/sqlite",
            postgres = "../migrations/postgres"
        )),
        Tables::Forum => builder.schema(forum::schema()),
        Tables::IntKeyed => builder.schema(int_keyed::schema()),
    };
    builder.open().unwrap()
}

/// The `i`th post of a seed or an insert.
pub fn post(i: usize) -> Post {
    Post {
        title: format!("post {i}"),
        rating: (i % 10) as i32,
        body: Some("body".into()),
        ..Post::default()
    }
}
