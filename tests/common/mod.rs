//! What the integration tests share: the blog's models and stores to run them on.

#![allow(dead_code)]

pub use datastore_blog_models as models;
pub mod trace;

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

/// What every test schema's name starts with (then a UUID).
pub const TEST_SCHEMA_PREFIX: &str = "datastore_test_";

/// The session advisory lock that claims the test schema `name` while its test runs: a key of
/// 64 bits from the name's MD5, as SQL over the text `name` is.
fn schema_claim(name: &str) -> String {
    format!("('x' || substr(md5({name}), 1, 16))::bit(64)::bigint")
}

/// Creates the schema `name` through `admin`, first claimed by `admin`'s session (released
/// when it closes, also when the process is killed), so that [`drop_abandoned_schemas`] never
/// takes it for a leftover.
pub fn create_claimed_schema(admin: &mut PgConnection, name: &str) {
    admin
        .batch_execute(&format!(
            "SELECT pg_advisory_lock({}); CREATE SCHEMA {name}",
            schema_claim(&format!("'{name}'"))
        ))
        .expect("create the test's schema");
}

/// Drops the test schemas of this database that no session claims: those of a test run
/// killed before it dropped them (a schema's claim ends with its session). Each is claimed
/// while it is dropped, so that two tests starting together do not both drop it; with it the
/// logical feed's publication for it, which is the database's.
pub fn drop_abandoned_schemas(admin: &mut PgConnection) {
    #[derive(datastore::diesel::QueryableByName)]
    struct Abandoned {
        /// The name, quoted as an identifier.
        #[diesel(sql_type = datastore::diesel::sql_types::Text)]
        ident: String,
        /// The name, quoted as a string.
        #[diesel(sql_type = datastore::diesel::sql_types::Text)]
        literal: String,
    }
    let abandoned = datastore::diesel::sql_query(format!(
        "SELECT quote_ident(nspname) AS ident, quote_literal(nspname) AS literal \
         FROM pg_namespace \
         WHERE CASE WHEN starts_with(nspname, '{TEST_SCHEMA_PREFIX}') \
             THEN pg_try_advisory_lock({}) END",
        schema_claim("nspname::text")
    ))
    .load::<Abandoned>(admin)
    .expect("list the test schemas nobody claims");
    for Abandoned { ident, literal } in abandoned {
        // Each on its own, so that one failing leaves none of the others undone.
        let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {ident} CASCADE"));
        let _ = admin.batch_execute(&drop_publication_sql(&literal));
        let _ = admin.batch_execute(&format!(
            "SELECT pg_advisory_unlock({})",
            schema_claim(&literal)
        ));
    }
}

/// The SQL that drops the logical feed's publication for the schema named by `literal` (a
/// quoted string): the database's, not the schema's, so that dropping the schema leaves it
/// behind.
fn drop_publication_sql(literal: &str) -> String {
    format!(
        "DO $$ BEGIN EXECUTE format('DROP PUBLICATION IF EXISTS %I', \
             'datastore_' || md5({literal})); END $$"
    )
}

/// A schema of a test's own on the PostgreSQL server, dropped with it.
pub struct PgSchema {
    admin: PgConnection,
    url: String,
    name: String,
}

impl PgSchema {
    pub fn new(url: &str) -> Self {
        let mut admin = PgConnection::establish(url).unwrap_or_else(|e| {
            panic!("DATASTORE_POSTGRES_URL is set, but {url} is unreachable: {e}")
        });
        drop_abandoned_schemas(&mut admin);
        let name = format!("{TEST_SCHEMA_PREFIX}{}", uuid::Uuid::new_v4().simple());
        create_claimed_schema(&mut admin, &name);
        let separator = if url.contains('?') { '&' } else { '?' };
        Self {
            admin,
            url: format!("{url}{separator}options=-csearch_path%3D{name}"),
            name,
        }
    }

    /// The server's URL, with the schema as the connections' search path.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let _ = self
            .admin
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name));
        // The logical feed's publication is the database's, not the schema's: dropped too
        // (whether the schema's drop went through or not), or every test run would leave its
        // own behind on the server.
        let _ = self
            .admin
            .batch_execute(&drop_publication_sql(&format!("'{}'", self.name)));
    }
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
