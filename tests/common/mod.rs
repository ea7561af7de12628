//! What the integration tests share: the blog's models and stores to run them on.

#![allow(dead_code)]

pub use datastore_blog_models as models;
mod pg_schema;
pub mod relay;
pub mod trace;

// Not every test uses each.
#[allow(unused_imports)]
pub use pg_schema::{create_claimed_schema, drop_abandoned_schemas, PgSchema, TEST_SCHEMA_PREFIX};

use datastore::diesel::connection::SimpleConnection;
use datastore::diesel::{Connection, PgConnection, RunQueryDsl};
use datastore::observe::ChangeFeed;
use datastore::Store;
use models::{Comment, Post, User};

/// The PostgreSQL server to test against, if one is configured (`.ci/run` always configures
/// one; `tests/postgres_notice.rs` says in the test output when none is).
pub fn postgres_url() -> Option<String> {
    std::env::var("DATASTORE_POSTGRES_URL").ok()
}

/// A store observing through the trigger feed (for the tests of what it installs), migrated
/// like the blog's.
pub fn trigger_feed_store(url: &str) -> Store {
    Store::builder(url)
        .migrations(datastore::embed_migrations!())
        .change_feed(ChangeFeed::Triggers)
        .open()
        .expect("open store")
}

/// Whether the configured PostgreSQL server can feed observe by logical decoding
/// (`wal_level = logical`). `.ci/run` configures it and sets `DATASTORE_EXPECT_LOGICAL=1`,
/// which makes a server without it fail the test instead of skipping that feed; without it,
/// the test output says the logical decoding cases were not run.
pub fn logical_decoding() -> bool {
    let Some(url) = postgres_url() else {
        return false;
    };
    #[derive(datastore::diesel::QueryableByName)]
    struct Level {
        #[diesel(sql_type = datastore::diesel::sql_types::Text)]
        wal_level: String,
    }
    let mut conn = PgConnection::establish(&url).expect("connect");
    let level: Vec<Level> = datastore::diesel::sql_query("SHOW wal_level")
        .load(&mut conn)
        .expect("SHOW wal_level");
    let logical = level.first().is_some_and(|l| l.wal_level == "logical");
    if !logical {
        assert!(
            std::env::var("DATASTORE_EXPECT_LOGICAL").as_deref() != Ok("1"),
            "DATASTORE_EXPECT_LOGICAL=1, but the server's wal_level is not logical"
        );
        println!("NOTE: the server's wal_level is not logical: the logical decoding feed's cases were NOT run");
    }
    logical
}

/// A store for one test: SQLite in memory, or a schema of its own on the PostgreSQL server,
/// dropped when the test ends (passing or not), so that tests run in parallel and twice in a
/// row.
pub struct TestDb {
    pub store: Store,
    /// Keep it until the store is dropped: the schema goes with it.
    pub schema: Option<PgSchema>,
}

impl TestDb {
    /// A fresh in-memory SQLite database, migrated like the blog's.
    pub fn sqlite() -> Self {
        Self {
            store: memory_store(),
            schema: None,
        }
    }

    /// A fresh schema on the configured PostgreSQL server, migrated like the blog's; `None`
    /// when no server is configured. A configured server that cannot be reached fails the
    /// test: it is not skipped.
    pub fn postgres() -> Option<Self> {
        Self::postgres_with(ChangeFeed::Auto)
    }

    /// [`postgres`](Self::postgres), observing through this change feed.
    pub fn postgres_with(feed: ChangeFeed) -> Option<Self> {
        Self::postgres_built(|builder| builder.change_feed(feed))
    }

    /// [`postgres`](Self::postgres), its store built further by `build` (a pool size..).
    pub fn postgres_built(
        build: impl FnOnce(datastore::StoreBuilder) -> datastore::StoreBuilder,
    ) -> Option<Self> {
        let schema = PgSchema::new(&postgres_url()?);
        let builder = Store::builder(schema.url()).migrations(datastore::embed_migrations!());
        let store = build(builder).open().expect("open store");
        Some(Self {
            store,
            schema: Some(schema),
        })
    }

    /// The URL of its PostgreSQL schema (for connections of the test's own).
    #[allow(dead_code)]
    pub fn url(&self) -> &str {
        self.schema.as_ref().expect("a PostgreSQL database").url()
    }
}

/// Inserts `row` through a connection of its own to `url` with `session_replication_role =
/// replica`, as logical replication's apply workers (and some restore tools) write.
pub fn insert_as_replica(url: &str, row: &Post) {
    let mut replica = PgConnection::establish(url).unwrap();
    replica
        .batch_execute("SET session_replication_role = replica")
        .unwrap();
    datastore::diesel::insert_into(models::posts::table)
        .values(row)
        .execute(&mut replica)
        .unwrap();
}

/// A fresh database for each change feed the server offers (logical decoding only where it
/// is available), in turn; none without a server.
pub fn each_feed() -> impl Iterator<Item = (ChangeFeed, TestDb)> {
    [ChangeFeed::LogicalDecoding, ChangeFeed::Triggers]
        .into_iter()
        .filter(|&feed| feed != ChangeFeed::LogicalDecoding || logical_decoding())
        .map_while(|feed| Some((feed, TestDb::postgres_with(feed)?)))
}

/// One test body, run on each backend: `per_backend!(fn name(store) { .. })` makes the tests
/// `name::sqlite` and `name::postgres`, each with its own fresh store.
#[macro_export]
macro_rules! per_backend {
    // A case that holds on SQLite only; the test says why.
    (sqlite_only fn $name:ident($store:ident) $body:block) => {
        $crate::per_backend!(@sqlite $name, $store, $body);
    };
    // An observe case: on PostgreSQL, once with each change feed (`postgres` with the
    // default, logical decoding where the server allows it; `postgres_triggers`).
    (each_feed fn $name:ident($store:ident) $body:block) => {
        $crate::per_backend!(@sqlite $name, $store, $body,
            $crate::per_backend!(@postgres postgres, Auto, $store, $body);,
            $crate::per_backend!(@postgres postgres_triggers, Triggers, $store, $body);
        );
    };
    (fn $name:ident($store:ident) $body:block) => {
        $crate::per_backend!(@sqlite $name, $store, $body,
            $crate::per_backend!(@postgres postgres, Auto, $store, $body);
        );
    };
    // A case's test on PostgreSQL, observing through the change feed `$feed`.
    (@postgres $test:ident, $feed:ident, $store:ident, $body:block) => {
        #[test]
        fn $test() {
            let Some(db) = $crate::common::TestDb::postgres_with(
                datastore::observe::ChangeFeed::$feed,
            ) else {
                return;
            };
            // Declared first, dropped last: the schema outlives the store.
            let _schema = db.schema;
            #[allow(unused_variables)]
            let $store = db.store;
            $body
        }
    };
    // The module of one case: its SQLite test, and any other backend's.
    (@sqlite $name:ident, $store:ident, $body:block $(, $other:item)*) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[test]
            fn sqlite() {
                let db = $crate::common::TestDb::sqlite();
                #[allow(unused_variables)]
                let $store = db.store;
                $body
            }

            $($other)*
        }
    };
}

/// A store on a fresh in-memory database, migrated like the blog's.
pub fn memory_store() -> Store {
    Store::open(":memory:", datastore::embed_migrations!()).expect("open store")
}

/// A store on a fresh database file (WAL), migrated like the blog's; the directory keeps it.
pub fn file_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("blog.db");
    let store = Store::open(path, datastore::embed_migrations!()).expect("open store");
    (dir, store)
}

/// A post to save.
pub fn post(title: &str, rating: i32) -> Post {
    Post {
        title: title.into(),
        rating,
        ..Post::default()
    }
}

/// A comment to save for a post.
pub fn comment(post: &Post, text: &str) -> Comment {
    Comment {
        content: Some(text.into()),
        ..Comment::default()
    }
    .with_post(post)
}

/// A user to save.
pub fn user(name: &str) -> User {
    User {
        username: name.into(),
        ..User::default()
    }
}
