//! The store: a pool of configured connections, migrations run on open, and the typed model
//! methods on top.

mod connection;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::connection::Connection;
use diesel::migration::MigrationSource;
use diesel::r2d2::{ConnectionManager, Pool, PooledConnection};
use diesel::sqlite::Sqlite;
use diesel::SqliteConnection;
use diesel_migrations::MigrationHarness;

use connection::ConnectionSetup;
pub use connection::Synchronous;

use crate::model::{IntoPredicate, Model, Persist};
use crate::observe::hub::Hub;
use crate::observe::{self, Decoder, Subscription};
use crate::repo::Repo;
use crate::{Error, Id, Result};

/// A connection taken from the store's pool; it derefs to a Diesel [`SqliteConnection`].
pub type PooledConn = PooledConnection<ConnectionManager<SqliteConnection>>;

/// A data store over one database (cheap to clone: clones share the pool): a pool of connections, each set up with foreign keys on,
/// a busy timeout and (for files) WAL, with the application's migrations run when it opens.
///
/// ```
/// use datastore::prelude::*;
///
/// #[derive(Model, Debug, Clone, PartialEq, Default)]
/// pub struct Note {
///     #[primary_key]
///     pub id: Id,
///     pub text: String,
/// }
///
/// # fn main() -> datastore::Result<()> {
/// let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
/// let note = store.save(Note { text: "hi".into(), ..Note::default() })?;
/// assert_eq!(store.get::<Note>(&note.id)?.text, "hi");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Store {
    pool: Pool<ConnectionManager<SqliteConnection>>,
    url: String,
    hub: Arc<Hub>,
    observe_buffer: usize,
    /// An in-memory database lives as long as one connection to it: this one.
    _keepalive: Option<Arc<Mutex<SqliteConnection>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("url", &self.url)
            .field("pool", &self.pool.state())
            .finish()
    }
}

/// Options for opening a [`Store`]; from [`Store::builder`].
///
/// ```
/// use std::time::Duration;
/// use datastore::{Store, Synchronous};
///
/// # fn main() -> datastore::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::builder(dir.path().join("app.db").display().to_string())
///     .pool_size(4)
///     .busy_timeout(Duration::from_secs(2))
///     .synchronous(Synchronous::Normal)
///     .open()?;
/// assert!(store.url().ends_with("app.db"));
/// # Ok(())
/// # }
/// ```
#[must_use = "a builder does nothing until `open` is called"]
pub struct StoreBuilder {
    url: String,
    migrations: Option<Box<dyn MigrationSource<Sqlite> + Send>>,
    schema: Option<crate::Schema>,
    pool_size: u32,
    setup: ConnectionSetup,
    connection_timeout: Duration,
    observe_buffer: usize,
}

impl Store {
    /// Opens (creating if needed) the database at `url` and runs the pending migrations.
    ///
    /// `url` is a file path, `sqlite:` followed by a path, a SQLite `file:` URI, or
    /// `":memory:"` for a private in-memory database shared by the store's connections.
    /// `migrations` is usually `datastore::embed_migrations!()`.
    pub fn open(
        url: impl Into<String>,
        migrations: impl MigrationSource<Sqlite> + Send + 'static,
    ) -> Result<Self> {
        Self::builder(url).migrations(migrations).open()
    }

    /// A builder to set the pool size, the busy timeout and how the schema is set up.
    pub fn builder(url: impl Into<String>) -> StoreBuilder {
        StoreBuilder {
            url: url.into(),
            migrations: None,
            schema: None,
            pool_size: 8,
            setup: ConnectionSetup {
                busy_timeout: Duration::from_secs(5),
                wal: true,
                synchronous: Synchronous::Full,
                hub: Arc::default(),
            },
            connection_timeout: Duration::from_secs(30),
            observe_buffer: 4096,
        }
    }

    /// A connection from the pool, for Diesel's own DSL and for [`Repo`]'s methods.
    pub fn conn(&self) -> Result<PooledConn> {
        self.pool.get().map_err(|e| Error::Connection {
            url: self.url.clone(),
            message: e.to_string(),
        })
    }

    /// The database this store was opened on.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs `f` in one transaction (`BEGIN IMMEDIATE`, so it never fails half-way for want of
    /// the write lock): it commits when `f` returns `Ok`, and when `f` fails nothing it wrote
    /// remains. Inside, `tx.transaction(..)` nests as a savepoint.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # #[derive(Model, Debug, Clone, PartialEq, Default)]
    /// # pub struct Note { #[primary_key] pub id: Id, pub text: String }
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// let failed: datastore::Result<()> = store.transaction(|tx| {
    ///     tx.save(Note { text: "kept?".into(), ..Note::default() })?;
    ///     tx.get::<Note>(&Id::new())?; // fails: no such note
    ///     Ok(())
    /// });
    /// assert!(failed.is_err());
    /// assert_eq!(store.count::<Note>()?, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn transaction<T>(&self, f: impl FnOnce(&mut SqliteConnection) -> Result<T>) -> Result<T> {
        let mut conn = self.conn()?;
        conn.immediate_transaction(f)
    }

    /// See [`Repo::save`].
    pub fn save<M: Persist<SqliteConnection>>(&self, model: M) -> Result<M> {
        (*self.conn()?).save(model)
    }

    /// See [`Repo::save_graph`].
    pub fn save_graph<M: Persist<SqliteConnection>>(&self, model: M) -> Result<M> {
        (*self.conn()?).save_graph(model)
    }

    /// See [`Repo::find`].
    pub fn find<M: Persist<SqliteConnection>>(&self, id: &Id) -> Result<Option<M>> {
        (*self.conn()?).find(id)
    }

    /// See [`Repo::get`].
    pub fn get<M: Persist<SqliteConnection>>(&self, id: &Id) -> Result<M> {
        (*self.conn()?).get(id)
    }

    /// See [`Repo::all`].
    pub fn all<M: Persist<SqliteConnection>>(&self) -> Result<Vec<M>> {
        (*self.conn()?).all()
    }

    /// See [`Repo::query`].
    pub fn query<M: Persist<SqliteConnection>>(
        &self,
        build: impl FnOnce(M::Query) -> M::Query,
    ) -> Result<Vec<M>> {
        (*self.conn()?).query(build)
    }

    /// See [`Repo::count`].
    pub fn count<M: Persist<SqliteConnection>>(&self) -> Result<i64> {
        (*self.conn()?).count::<M>()
    }

    /// See [`Repo::delete`].
    pub fn delete<M: Persist<SqliteConnection>>(&self, model: &M) -> Result<()> {
        (*self.conn()?).delete(model)
    }

    /// See [`Repo::delete_by_id`].
    pub fn delete_by_id<M: Persist<SqliteConnection>>(&self, id: &Id) -> Result<()> {
        (*self.conn()?).delete_by_id::<M>(id)
    }

    /// See [`Repo::delete_where`].
    pub fn delete_where<M: Persist<SqliteConnection>, C>(
        &self,
        predicate: impl IntoPredicate<M::Table, Sqlite, C>,
    ) -> Result<usize> {
        (*self.conn()?).delete_where::<M, C>(predicate)
    }
}

/// Observe: committed changes as typed streams (see [`observe`](crate::observe)).
impl Store {
    /// Every committed change of `M`'s rows.
    pub fn observe<M: Model>(&self) -> Result<Subscription<M>> {
        self.subscribe(None)
    }

    /// The committed changes of `M`'s rows that match `filter` (before or after the change),
    /// as in `store.observe_where(move |c: &Comment| c.post_id == post_id)`.
    pub fn observe_where<M: Model>(
        &self,
        filter: impl Fn(&M) -> bool + Send + Sync + 'static,
    ) -> Result<Subscription<M>> {
        self.subscribe(Some(Box::new(filter)))
    }

    /// A query's result now, then again after every committed change that alters it:
    /// `store.observe_query::<Post>(|q| q.filter(posts::rating.gt(4)))`.
    pub fn observe_query<M>(
        &self,
        build: impl Fn(M::Query) -> M::Query + Send + Sync + 'static,
    ) -> Result<observe::QuerySubscription<M>>
    where
        M: Persist<SqliteConnection> + PartialEq + Clone,
    {
        unsupported_without_preupdate()?;
        let queue = self.hub.subscribe(Some(M::TABLE_NAME), self.observe_buffer);
        Ok(observe::QuerySubscription::new(
            self.clone(),
            queue,
            Box::new(build),
        ))
    }

    /// Every committed change of every table, as raw rows.
    pub fn observe_all(&self) -> Result<observe::AllSubscription> {
        unsupported_without_preupdate()?;
        Ok(observe::AllSubscription::new(
            self.hub.subscribe(None, self.observe_buffer),
        ))
    }

    /// How many subscriptions are live (each dropped one unsubscribes).
    pub fn subscriptions(&self) -> usize {
        self.hub.subscriptions()
    }

    /// The committed changes of one row.
    pub fn observe_id<M: Model>(&self, id: &Id) -> Result<Subscription<M>> {
        let id = *id;
        self.observe_where(move |row: &M| *row.id() == id)
    }

    fn subscribe<M: Model>(&self, filter: Option<observe::Filter<M>>) -> Result<Subscription<M>> {
        unsupported_without_preupdate()?;
        let table = M::TABLE_NAME;
        let table_columns = self.table_columns(table)?;
        let model_table = M::TABLE;
        let model_columns: Vec<&str> = model_table
            .columns
            .iter()
            .map(|c| c.name.as_ref())
            .collect();
        let decoder =
            Decoder::new(table, &model_columns, &table_columns).map_err(Error::Migration)?;
        let queue = self.hub.subscribe(Some(table), self.observe_buffer);
        Ok(Subscription::new(queue, decoder, filter))
    }

    /// The table's columns, in the order SQLite reports a row's values.
    fn table_columns(&self, table: &str) -> Result<Vec<String>> {
        use diesel::RunQueryDsl;

        #[derive(diesel::QueryableByName)]
        struct ColumnName {
            #[diesel(sql_type = diesel::sql_types::Text)]
            name: String,
        }
        let rows: Vec<ColumnName> =
            diesel::sql_query("SELECT name FROM pragma_table_info(?) ORDER BY cid")
                .bind::<diesel::sql_types::Text, _>(table)
                .load(&mut *self.conn()?)?;
        Ok(rows.into_iter().map(|r| r.name).collect())
    }
}

fn unsupported_without_preupdate() -> Result<()> {
    if observe::AVAILABLE {
        return Ok(());
    }
    Err(Error::Unsupported(
        "observe needs SQLite's pre-update hook: build with the environment variable \
         LIBSQLITE3_FLAGS=-DSQLITE_ENABLE_PREUPDATE_HOOK (for example in .cargo/config.toml [env])"
            .into(),
    ))
}

impl StoreBuilder {
    /// The migrations to run when the store opens (usually `datastore::embed_migrations!()`).
    pub fn migrations(mut self, migrations: impl MigrationSource<Sqlite> + Send + 'static) -> Self {
        self.migrations = Some(Box::new(migrations));
        self
    }

    /// Creates the tables of this schema directly, without migrations, if they do not exist.
    /// Meant for tests and prototypes; applications ship migrations.
    pub fn schema(mut self, schema: crate::Schema) -> Self {
        self.schema = Some(schema);
        self
    }

    /// The most connections the pool holds (default 8).
    pub fn pool_size(mut self, size: u32) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// How long a statement waits for a lock held by another connection before failing with
    /// [`Error::Busy`] (default 5 s).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.setup.busy_timeout = timeout;
        self
    }

    /// How long taking a connection from the pool may wait (default 30 s).
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// How many changes a subscriber's buffer holds before it misses some (default 4096).
    pub fn observe_buffer(mut self, changes: usize) -> Self {
        self.observe_buffer = changes.max(1);
        self
    }

    /// The durability of commits in WAL mode (default [`Synchronous::Full`]).
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.setup.synchronous = synchronous;
        self
    }

    /// Opens the store: sets up the pool and runs the migrations.
    pub fn open(mut self) -> Result<Store> {
        let (database, in_memory) = database_url(&self.url);
        self.setup.wal = !in_memory;
        let connect_error = |message: String| Error::Connection {
            url: self.url.clone(),
            message,
        };

        // Before any connection opens, so that observe sees every connection's handle.
        observe::ffi::register();
        // The first connection sets the database up (and, for memory, keeps it alive).
        let mut first =
            SqliteConnection::establish(&database).map_err(|e| connect_error(e.to_string()))?;
        self.setup.apply(&mut first)?;
        if let Some(migrations) = self.migrations.take() {
            first
                .run_pending_migrations(Boxed(migrations))
                .map_err(|e| Error::Migration(e.to_string()))?;
        }
        if let Some(schema) = &self.schema {
            schema.create_all(&mut first)?;
        }

        let pool = Pool::builder()
            .max_size(self.pool_size)
            .min_idle(Some(0))
            // A SQLite connection is a handle on a file: it does not go stale the way a socket
            // does, so no `SELECT 1` is run each time one is taken from the pool.
            .test_on_check_out(false)
            .connection_timeout(self.connection_timeout)
            .connection_customizer(Box::new(self.setup.clone()))
            .build_unchecked(ConnectionManager::new(database));
        Ok(Store {
            pool,
            url: self.url,
            hub: self.setup.hub,
            observe_buffer: self.observe_buffer,
            _keepalive: in_memory.then(|| Arc::new(Mutex::new(first))),
        })
    }
}

/// The URL Diesel opens, and whether it is a memory database. `:memory:` becomes a named
/// in-memory database (SQLite's `memdb` VFS) so that every pooled connection sees the same
/// data, with real locking between them.
fn database_url(url: &str) -> (String, bool) {
    let url = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    if url == ":memory:" {
        (
            format!(
                "file:/datastore-{}?vfs=memdb",
                uuid::Uuid::new_v4().simple()
            ),
            true,
        )
    } else {
        (
            url.to_owned(),
            url.contains("vfs=memdb") || url.contains("mode=memory"),
        )
    }
}

/// A boxed migration source, so that the builder need not be generic.
struct Boxed(Box<dyn MigrationSource<Sqlite> + Send>);

impl MigrationSource<Sqlite> for Boxed {
    fn migrations(
        &self,
    ) -> diesel::migration::Result<Vec<Box<dyn diesel::migration::Migration<Sqlite>>>> {
        self.0.migrations()
    }
}
