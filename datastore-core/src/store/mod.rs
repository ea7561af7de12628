//! The store: a pool of configured connections, migrations run on open, and the typed model
//! methods on top.

mod connection;
pub(crate) mod lost;
mod manager;
mod migrations;
mod observe_conn;
pub(crate) mod transaction;
pub(crate) mod url;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::r2d2::{Pool, PooledConnection};
use diesel::SqliteConnection;

use connection::ConnectionSetup;
pub use connection::Synchronous;
pub use manager::BackendManager;
pub(crate) use observe_conn::ObserveConn;

use crate::migrate::BackendMigrations;
use crate::model::{IntoPredicate, Model};
use crate::observe::hub::Hub;
use crate::observe::postgres::{self as pg_observe, PgObserve};
use crate::observe::{self, Decoder, Subscription};
use crate::persist::Persist;
use crate::relations::DeleteEffects;
use crate::repo::Repo;
use crate::schema::ddl::Dialect;
use crate::{AnyBackend, AnyConnection, Error, Result};

/// A connection taken from the store's pool; it derefs to an [`AnyConnection`].
pub type PooledConn = PooledConnection<BackendManager>;

/// A data store over one database, SQLite or PostgreSQL, chosen by its URL: a pool of
/// connections, with the application's migrations run when it opens. Cheap to clone: clones
/// share the pool.
///
/// SQLite connections are set up with foreign keys on, a busy timeout and (for files) WAL;
/// PostgreSQL connections with a lock timeout of the same length.
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
    pool: Pool<BackendManager>,
    /// The URL as given, password included: never shown (see `shown_url`).
    url: String,
    /// The URL as shown, without its password.
    shown_url: String,
    dialect: Dialect,
    hub: Arc<Hub>,
    observe_buffer: usize,
    /// PostgreSQL: the triggers installed and the listener.
    pg_observe: Arc<PgObserve>,
    /// Observe's own connection, outside the pool.
    observe_conn: Arc<ObserveConn>,
    /// An in-memory database lives as long as one connection to it: this one.
    _keepalive: Option<Arc<Mutex<SqliteConnection>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("url", &self.url())
            .field("dialect", &self.dialect)
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
    migrations: Option<BackendMigrations>,
    schema: Option<crate::Schema>,
    pool_size: u32,
    setup: ConnectionSetup,
    connection_timeout: Duration,
    observe_buffer: usize,
    change_feed: crate::observe::ChangeFeed,
}

impl Store {
    /// Opens the database at `url` and runs the pending migrations of its backend.
    ///
    /// `url` is a `postgres://` (or `postgresql://`) URL for PostgreSQL. Anything else is
    /// SQLite: a file path (created if needed), `sqlite:` followed by a path, a SQLite `file:`
    /// URI, or `":memory:"` for a private in-memory database shared by the store's connections.
    /// `migrations` is usually `datastore::embed_migrations!()`.
    pub fn open(url: impl Into<String>, migrations: BackendMigrations) -> Result<Self> {
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
            change_feed: crate::observe::ChangeFeed::default(),
        }
    }

    /// A connection from the pool, for Diesel's own DSL and for [`Repo`]'s methods.
    /// A connection taken from the pool is not tested first: one found broken when used is
    /// dropped from the pool.
    ///
    /// Inside a [`transaction`](Store::transaction) of this store on the same thread, the
    /// connection is read-only: a write through it would not be part of the transaction, and
    /// fails at once with [`Error::WriteOutsideTransaction`].
    pub fn conn(&self) -> Result<PooledConn> {
        let mut conn = self
            .pool
            .get()
            .map_err(|e| Error::connection(&self.url, e))?;
        if transaction::is_open(self.id()) {
            transaction::lend_read_only(&mut conn)?;
        } else {
            transaction::restore(&mut conn)?;
        }
        Ok(conn)
    }

    /// The most connections the pool holds.
    #[cfg(feature = "async")]
    pub(crate) fn pool_size(&self) -> u32 {
        self.pool.max_size()
    }

    /// Whether this thread is inside a [`transaction`](Store::transaction) of this store.
    pub(crate) fn in_transaction_here(&self) -> bool {
        transaction::is_open(self.id())
    }

    /// The identity of the store, shared by its clones.
    fn id(&self) -> usize {
        Arc::as_ptr(&self.hub) as usize
    }

    /// Fails when this thread is inside a transaction of this store: a write through the store
    /// would not be part of it.
    fn refuse_write_in_transaction(&self) -> Result<()> {
        if transaction::is_open(self.id()) {
            return Err(Error::WriteOutsideTransaction);
        }
        Ok(())
    }

    /// The database this store was opened on, as it may be shown: with any password replaced
    /// by `***` (`postgres://app:***@db/blog`).
    #[allow(clippy::misnamed_getters)] // the field `url` holds the password: never returned
    pub fn url(&self) -> &str {
        &self.shown_url
    }

    /// The SQL dialect of the store's database.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Runs `f` in one transaction: it commits when `f` returns `Ok`, and when `f` fails
    /// nothing it wrote remains. Inside, `tx.transaction(..)` nests as a savepoint.
    ///
    /// On SQLite it begins with `BEGIN IMMEDIATE`, so it never fails half-way for want of the
    /// write lock. On PostgreSQL it runs at the server's default isolation level (`f` may
    /// begin with `SET TRANSACTION ISOLATION LEVEL ..`); a deadlock or a serialization failure
    /// fails it whole with [`Error::Conflict`], and it may then be run again. A statement that
    /// failed inside `f` aborts a PostgreSQL transaction: if `f` still returns `Ok`, the
    /// transaction is rolled back and this returns the server's error, never `Ok`.
    ///
    /// Inside `f`, write through its connection: a write through the store (`store.save(..)`,
    /// `store.transaction(..)`, or a connection from `store.conn()`) would run on another
    /// connection, outside the transaction, and fails at once with
    /// [`Error::WriteOutsideTransaction`]. Reads through the store keep working; they see what
    /// other transactions committed, not what `f` wrote.
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
    pub fn transaction<T>(&self, f: impl FnOnce(&mut AnyConnection) -> Result<T>) -> Result<T> {
        self.refuse_write_in_transaction()?;
        let mut pooled = self.conn()?;
        let backend = match &mut *pooled {
            AnyConnection::Postgres(c) => lost::FirstFailure::backend_pid(c),
            AnyConnection::Sqlite(_) => None,
        };
        let _open = transaction::Open::new(self.id(), backend);
        let conn: &mut AnyConnection = &mut pooled;
        match conn {
            AnyConnection::Sqlite(c) => {
                AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?
            }
            AnyConnection::Postgres(c) => AnsiTransactionManager::begin_transaction(c)?,
        }
        let losses = lost::generation();
        lost::forget_pending();
        let result = f(conn);
        let lost = lost::lost_since(losses, self.id());
        lost::forget_pending();
        if let Some(lost) = lost {
            return Err(end_lost_transaction(conn, &lost));
        }
        // As Diesel's own `Connection::transaction`, from here on.
        match result {
            Ok(value) => match commit(conn) {
                Ok(()) => Ok(value),
                Err(error) => Err(aborted_by(conn, error)),
            },
            Err(error) => match AnyConnection::rollback_transaction(conn) {
                Ok(()) | Err(diesel::result::Error::BrokenTransactionManager) => {
                    Err(aborted_by(conn, error))
                }
                Err(rollback) => Err(rollback.into()),
            },
        }
    }

    /// See [`Repo::save`].
    pub fn save<M: Persist<AnyConnection>>(&self, model: M) -> Result<M> {
        self.refuse_write_in_transaction()?;
        (*self.conn()?).save(model)
    }

    /// See [`Repo::insert_all`].
    pub fn insert_all<M: Persist<AnyConnection>>(&self, rows: Vec<M>) -> Result<Vec<M>> {
        self.refuse_write_in_transaction()?;
        (*self.conn()?).insert_all(rows)
    }

    /// See [`Repo::save_graph`].
    pub fn save_graph<M: Persist<AnyConnection>>(&self, model: M) -> Result<M> {
        self.refuse_write_in_transaction()?;
        (*self.conn()?).save_graph(model)
    }

    /// See [`Repo::find`].
    pub fn find<M: Persist<AnyConnection>>(&self, key: &M::Key) -> Result<Option<M>> {
        (*self.conn()?).find(key)
    }

    /// See [`Repo::get`].
    pub fn get<M: Persist<AnyConnection>>(&self, key: &M::Key) -> Result<M> {
        (*self.conn()?).get(key)
    }

    /// See [`Repo::all`].
    pub fn all<M: Persist<AnyConnection>>(&self) -> Result<Vec<M>> {
        (*self.conn()?).all()
    }

    /// See [`Repo::query`].
    pub fn query<M: Persist<AnyConnection>>(
        &self,
        build: impl FnOnce(M::Query) -> M::Query,
    ) -> Result<Vec<M>> {
        (*self.conn()?).query(build)
    }

    /// See [`Repo::count`].
    pub fn count<M: Persist<AnyConnection>>(&self) -> Result<i64> {
        (*self.conn()?).count::<M>()
    }

    /// See [`Repo::delete`].
    pub fn delete<M: Persist<AnyConnection>>(&self, model: &M) -> Result<()> {
        self.refuse_write_in_transaction()?;
        (*self.conn()?).delete(model)
    }

    /// See [`Repo::delete_by_id`].
    pub fn delete_by_id<M: Persist<AnyConnection>>(&self, key: &M::Key) -> Result<()> {
        self.refuse_write_in_transaction()?;
        (*self.conn()?).delete_by_id::<M>(key)
    }

    /// See [`Repo::preview_delete`].
    pub fn preview_delete<M: Persist<AnyConnection>>(&self, key: &M::Key) -> Result<DeleteEffects> {
        (*self.conn()?).preview_delete::<M>(key)
    }

    /// See [`Repo::unlink_and_delete`].
    pub fn unlink_and_delete<M: Persist<AnyConnection>>(
        &self,
        key: &M::Key,
    ) -> Result<DeleteEffects> {
        self.refuse_write_in_transaction()?;
        (*self.conn()?).unlink_and_delete::<M>(key)
    }

    /// See [`Repo::delete_where`].
    pub fn delete_where<M: Persist<AnyConnection>, C>(
        &self,
        predicate: impl IntoPredicate<M::Table, AnyBackend, C>,
    ) -> Result<usize> {
        self.refuse_write_in_transaction()?;
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
    /// `store.observe_query::<Post>(|q| q.filter(posts::rating.gt(4)))`. The results are read
    /// on a pooled connection; inside a [`transaction`](Store::transaction) of this store on
    /// the same thread, on observe's own connection, outside the pool: they are committed data
    /// either way, and reading them there never waits for a pooled connection.
    pub fn observe_query<M>(
        &self,
        build: impl Fn(M::Query) -> M::Query + Send + Sync + 'static,
    ) -> Result<observe::QuerySubscription<M>>
    where
        M: Persist<AnyConnection> + PartialEq + Clone,
    {
        let queue = self.queue(Some(M::TABLE_NAME))?;
        Ok(observe::QuerySubscription::new(
            self.clone(),
            queue,
            Box::new(build),
        ))
    }

    /// A live query over relations: the rows of `M` a query selects, each with the relations
    /// asked for, now and again after every committed transaction that changes them. See
    /// [`observe::live`].
    ///
    /// ```
    /// use datastore::prelude::*;
    ///
    /// #[derive(Model, Debug, Clone, PartialEq, Default)]
    /// pub struct Post {
    ///     #[primary_key]
    ///     pub id: Id,
    ///     #[has_many(Comment)]
    ///     pub comments: HasMany<Comment>,
    /// }
    ///
    /// #[derive(Model, Debug, Clone, PartialEq, Default)]
    /// pub struct Comment {
    ///     #[primary_key]
    ///     pub id: Id,
    ///     #[belongs_to(Post)]
    ///     pub post_id: Id,
    /// }
    ///
    /// # fn main() -> datastore::Result<()> {
    /// let store = Store::builder(":memory:")
    ///     .schema(Schema::new().model::<Post>().model::<Comment>())
    ///     .open()?;
    /// let mut posts = store.live::<Post>().load(Post::COMMENTS).subscribe()?;
    /// assert!(posts.recv()?.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn live<M>(&self) -> observe::LiveQuery<M>
    where
        M: Persist<AnyConnection> + PartialEq + Clone,
    {
        observe::LiveQuery::new(self.clone())
    }

    /// Every committed change of every table, as raw rows.
    pub fn observe_all(&self) -> Result<observe::AllSubscription> {
        Ok(observe::AllSubscription::new(self.queue(None)?))
    }

    /// How many subscriptions are live (each dropped one unsubscribes).
    pub fn subscriptions(&self) -> usize {
        self.hub.subscriptions()
    }

    /// The committed changes of one row.
    pub fn observe_id<M: Model>(&self, key: &M::Key) -> Result<Subscription<M>> {
        let key = key.clone();
        self.observe_where(move |row: &M| row.key() == key)
    }

    /// A subscriber's queue for `table` (every table for `None`), receiving every change
    /// committed from now on. On SQLite the build must have the pre-update hook; on
    /// PostgreSQL the tables get their triggers and the store its listener.
    pub(crate) fn queue(&self, table: Option<&str>) -> Result<Arc<observe::hub::Queue>> {
        match table {
            Some(table) => self.queue_of(Some(&[table.to_owned()])),
            None => self.queue_of(None),
        }
    }

    /// A subscriber's queue for the changes of `tables` (every table for `None`), committed
    /// from now on: [`queue`](Self::queue) for several tables at once, in one commit order.
    pub(crate) fn queue_of(&self, tables: Option<&[String]>) -> Result<Arc<observe::hub::Queue>> {
        if self.dialect == Dialect::Sqlite {
            // No connection taken: subscribing inside a transaction must not wait for one.
            unsupported_without_preupdate()?;
            return Ok(self.hub.subscribe(tables, self.observe_buffer));
        }
        // Observe's own connection: the caller's transaction may hold the pool's.
        let pending = self.observe_conn.with(|conn| match conn {
            AnyConnection::Sqlite(_) => unreachable!("the store's dialect is PostgreSQL"),
            AnyConnection::Postgres(conn) => {
                let triggered = match tables {
                    Some(tables) => tables.to_vec(),
                    None => {
                        let schema = pg_observe::current_schema(conn)?;
                        pg_observe::observable_tables(conn, &schema)?
                    }
                };
                self.pg_observe.subscribe(
                    conn,
                    &self.url,
                    &self.hub,
                    &triggered,
                    tables,
                    self.observe_buffer,
                    transaction::open_backend(self.id()),
                )
            }
        })?;
        // Not holding the connection while the listener reaches the marker.
        pending.wait(&self.url)
    }

    /// Waits until every commit visible to a read that began before this call was handed
    /// to the store's subscribers' queues (false if it took longer than `timeout`). On
    /// SQLite by the commits' sequence numbers; on PostgreSQL by a marker sent now, which the
    /// listener reaches once it has read every notification committed before it.
    pub(crate) fn fence(&self, tables: &[String], timeout: Duration) -> Result<bool> {
        if self.dialect == Dialect::Sqlite {
            return Ok(self.hub.wait_delivered(self.hub.fence(), timeout));
        }
        // A queue opens when the listener reaches its marker, after every earlier commit.
        drop(self.queue_of(Some(tables))?);
        Ok(true)
    }

    /// The queues' decoder of a model's rows, as [`observe`](Self::observe) makes it.
    pub(crate) fn decoder_of(
        &self,
        table: &str,
        model_table: &crate::schema::Table,
    ) -> Result<Decoder> {
        let model_columns: Vec<&str> = model_table
            .columns
            .iter()
            .map(|c| c.name.as_ref())
            .collect();
        match self.dialect {
            Dialect::Sqlite => {
                unsupported_without_preupdate()?;
                let catalog = observe::catalog::Catalog::new(&self.hub, &self.observe_conn);
                let layout = catalog.resolve(table)?;
                Decoder::for_sqlite(table, &model_columns, catalog, layout)
            }
            Dialect::Postgres => {
                let table_columns = self.observe_conn.with(|conn| table_columns(conn, table))?;
                Decoder::for_postgres(table, &model_columns, &table_columns)
            }
        }
        .map_err(Error::Migration)
    }

    /// Runs `f` on observe's own connection (outside the pool, never in a caller's
    /// transaction).
    pub(crate) fn with_observe_conn<T>(
        &self,
        f: impl FnOnce(&mut AnyConnection) -> Result<T>,
    ) -> Result<T> {
        self.observe_conn.with(f)
    }

    fn subscribe<M: Model>(&self, filter: Option<observe::Filter<M>>) -> Result<Subscription<M>> {
        let decoder = self.decoder_of(M::TABLE_NAME, M::table())?;
        let queue = self.queue(Some(M::TABLE_NAME))?;
        Ok(Subscription::new(queue, decoder, filter))
    }
}

/// PostgreSQL: a table's columns, in order.
fn table_columns(conn: &mut AnyConnection, table: &str) -> Result<Vec<String>> {
    match conn {
        AnyConnection::Sqlite(_) => Err(Error::Unsupported(
            "SQLite's columns are read by observe's catalog".into(),
        )),
        AnyConnection::Postgres(conn) => {
            let schema = pg_observe::current_schema(conn)?;
            let columns = pg_observe::table_columns(conn, &schema, table)?;
            Ok(columns.into_iter().map(|(name, _)| name).collect())
        }
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

impl std::fmt::Debug for StoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreBuilder")
            .field("url", &url::redact(&self.url))
            .field("migrations", &self.migrations)
            .field("pool_size", &self.pool_size)
            .field("setup", &self.setup)
            .field("connection_timeout", &self.connection_timeout)
            .field("observe_buffer", &self.observe_buffer)
            .field("change_feed", &self.change_feed)
            .finish_non_exhaustive()
    }
}

impl StoreBuilder {
    /// The migrations to run when the store opens (usually `datastore::embed_migrations!()`).
    pub fn migrations(mut self, migrations: BackendMigrations) -> Self {
        self.migrations = Some(migrations);
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

    /// Where observe learns of committed changes on PostgreSQL (default
    /// [`ChangeFeed::Auto`](crate::observe::ChangeFeed::Auto): logical decoding where the server
    /// allows it, the trigger feed otherwise). Ignored on SQLite.
    pub fn change_feed(mut self, feed: crate::observe::ChangeFeed) -> Self {
        self.change_feed = feed;
        self
    }

    /// The durability of commits in WAL mode (default [`Synchronous::Full`]).
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.setup.synchronous = synchronous;
        self
    }

    /// Opens the store: runs the migrations and sets up the pool.
    pub fn open(mut self) -> Result<Store> {
        let (dialect, database, in_memory) = database_url(&self.url);
        self.setup.wal = !in_memory;
        let manager = BackendManager {
            url: database.clone(),
            dialect,
        };
        let observe_conn = ObserveConn::new(
            BackendManager {
                url: database,
                dialect,
            },
            self.setup.clone(),
            self.url.clone(),
        );
        let connect_error = |e: diesel::ConnectionError| Error::connection(&self.url, e);

        // Before any connection opens, so that observe sees every SQLite connection's handle.
        observe::ffi::register();
        // The first connection sets the database up (and, for memory, keeps it alive).
        let mut first = manager.establish().map_err(connect_error)?;
        let handle = observe::ffi::peek_opened();
        self.setup.apply_any(&mut first)?;
        if let Some(migrations) = &self.migrations {
            migrations::run(&mut first, handle, migrations, self.setup.busy_timeout)?;
        }
        if let Some(schema) = &self.schema {
            schema.create_all(&mut first)?;
        }
        let keepalive = match first {
            AnyConnection::Sqlite(first) if in_memory => Some(Arc::new(Mutex::new(first))),
            _ => None,
        };

        let pool = Pool::builder()
            .max_size(self.pool_size)
            .min_idle(Some(0))
            // No `SELECT 1` each time a connection is taken: a SQLite connection is a handle
            // on a file, and a PostgreSQL connection found broken in use is dropped
            // (`has_broken`) instead of being handed out again.
            .test_on_check_out(false)
            .connection_timeout(self.connection_timeout)
            .connection_customizer(Box::new(self.setup.clone()))
            .build_unchecked(manager);
        Ok(Store {
            pool,
            shown_url: url::redact(&self.url),
            url: self.url,
            dialect,
            hub: self.setup.hub,
            observe_buffer: self.observe_buffer,
            pg_observe: Arc::new(PgObserve::new(self.change_feed)),
            observe_conn: Arc::new(observe_conn),
            _keepalive: keepalive,
        })
    }
}

/// Ends a transaction SQLite rolled back by itself, and returns why it did. `ROLLBACK` lets the
/// connection run statements again (it fails, SQLite being back in autocommit already), and
/// Diesel's record of the transaction is reset to match, so that the connection goes back to
/// the pool as good as new.
fn end_lost_transaction(conn: &mut AnyConnection, lost: &lost::Lost) -> Error {
    if let AnyConnection::Sqlite(c) = conn {
        let _ = c.batch_execute("ROLLBACK");
    }
    *AnyConnection::transaction_manager_status_mut(conn) =
        diesel::connection::TransactionManagerStatus::default();
    Error::transaction_lost(lost.cause())
}

/// The error to report for a transaction that ended with `error`: on PostgreSQL, when `error` is
/// the server refusing statements in an aborted transaction, the error of the statement that
/// aborted it.
fn aborted_by(conn: &mut AnyConnection, error: Error) -> Error {
    match (conn, &error) {
        (AnyConnection::Postgres(conn), Error::TransactionAborted { cause: None }) => {
            match lost::FirstFailure::take(conn) {
                Some(cause) => Error::transaction_lost(Some(cause)),
                None => error,
            }
        }
        _ => error,
    }
}

/// Commits the transaction `Store::transaction` began.
///
/// On PostgreSQL a statement that failed aborts the whole transaction, and `COMMIT` then ends it
/// with a rollback, reported as success. If `f` went on after such a failure and returned
/// `Ok`, that would be a lost write reported as committed. So the commit is sent as
/// `SELECT 1; COMMIT`, in one round trip: in an aborted transaction the `SELECT` fails and the
/// server skips the `COMMIT`; the transaction, still open, is then rolled back here and
/// reported as failed.
fn commit(conn: &mut AnyConnection) -> Result<()> {
    match conn {
        AnyConnection::Sqlite(_) => Ok(AnyConnection::commit_transaction(conn)?),
        AnyConnection::Postgres(pg) => match pg.batch_execute("SELECT 1; COMMIT") {
            // Diesel's transaction manager reads the transaction's end from libpq.
            Ok(()) => Ok(()),
            Err(error) => {
                if AnyConnection::transaction_manager_status_mut(conn)
                    .transaction_depth()
                    .is_ok_and(|depth| depth.is_some())
                {
                    AnyConnection::rollback_transaction(conn)?;
                }
                Err(error.into())
            }
        },
    }
}

/// The backend a URL names.
#[cfg(feature = "cli")]
pub(crate) fn dialect_of(url: &str) -> Dialect {
    database_url(url).0
}

/// The backend a URL names, the URL its driver opens, and whether it is a memory database.
/// `:memory:` becomes a named in-memory database (SQLite's `memdb` VFS) so that every pooled
/// connection sees the same data, with real locking between them.
fn database_url(url: &str) -> (Dialect, String, bool) {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return (Dialect::Postgres, url.to_owned(), false);
    }
    let url = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    if url == ":memory:" {
        (
            Dialect::Sqlite,
            format!(
                "file:/datastore-{}?vfs=memdb",
                uuid::Uuid::new_v4().simple()
            ),
            true,
        )
    } else {
        (
            Dialect::Sqlite,
            url.to_owned(),
            url.contains("vfs=memdb") || url.contains("mode=memory"),
        )
    }
}
