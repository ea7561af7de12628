//! The store: a pool of configured connections, migrations run on open, and the typed model
//! methods on top.

mod builder;
mod connection;
pub(crate) mod lost;
mod manager;
mod migrations;
mod observe_conn;
mod subscriptions;
pub(crate) mod transaction;
pub(crate) mod url;

use std::sync::{Arc, Mutex};

use diesel::r2d2::{Pool, PooledConnection};
use diesel::SqliteConnection;

#[cfg(feature = "cli")]
pub(crate) use builder::dialect_of;
pub use builder::StoreBuilder;
pub use connection::Synchronous;
pub use manager::BackendManager;
pub(crate) use observe_conn::ObserveConn;

use crate::model::IntoPredicate;
use crate::observe::hub::Hub;
use crate::observe::postgres::PgObserve;
use crate::persist::Persist;
use crate::relations::DeleteEffects;
use crate::repo::Repo;
use crate::schema::ddl::Dialect;
use crate::{AnyBackend, AnyConnection, Error, Result};

/// A connection taken from the store's pool; it derefs to an [`AnyConnection`], on which
/// Diesel's DSL and [`Repo`]'s methods run. It goes back to the pool when dropped.
///
/// ```
/// # use datastore::prelude::*;
/// # #[derive(Model, Debug, Clone, PartialEq, Default)]
/// # pub struct Note { #[primary_key] pub id: Id, pub text: String }
/// # fn main() -> datastore::Result<()> {
/// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
/// let mut conn: datastore::PooledConn = store.conn()?;
/// conn.save(Note { text: "through the connection".into(), ..Note::default() })?;
/// assert_eq!(conn.count::<Note>()?, 1);
/// # Ok(())
/// # }
/// ```
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

impl Store {
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
            .map_err(|e| Error::connection(&self.url, crate::ConnectionFailure::Pool, e))?;
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
    pub fn count<M: Persist<AnyConnection>>(&self) -> Result<usize> {
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
