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
mod workers;

use std::sync::{Arc, Mutex};

use diesel::SqliteConnection;
use diesel::r2d2::{Pool, PooledConnection};

pub use builder::StoreBuilder;
#[cfg(feature = "cli")]
pub(crate) use builder::{dialect_of, sqlite_file};
pub use connection::Synchronous;
pub(crate) use connection::establish_postgres;
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
/// # use datastore_doc_models::{Note, notes};
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
/// Dropping the last clone closes every connection of the store before the drop returns:
/// a SQLite file is then closed (its WAL folded back), ready to be copied, moved or removed.
/// A connection the pool is still opening is waited for, at most the
/// [connection timeout](StoreBuilder::connection_timeout). A connection taken with
/// [`conn`](Store::conn) and still held, and a live query or an `observe_query` subscription
/// (each holds a clone), keep the database open until they are dropped.
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
    /// The threads on which the pool opens connections. Last, so that the last handle's drop
    /// waits for them after dropping its hold on the pool: then every connection is closed.
    _workers: Arc<workers::Workers>,
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
    ///
    /// A transaction begun on it with SQL of the caller's own (`BEGIN`, which Diesel does not
    /// follow) and left open is rolled back as it goes back to the pool, never handed to the
    /// next user. On PostgreSQL, where Diesel does not expose what libpq knows of the
    /// session's transaction, the text of the first sixteen queries of the caller's run on it
    /// (Diesel's DSL, `sql_query`, batches; not Diesel's own `BEGIN`, nor the statements of
    /// `Repo`'s methods) is read for the words `BEGIN` and `START` (some 5 µs for a find by key
    /// through Diesel's DSL, Diesel building its text); where one was run, or a seventeenth
    /// query, the connection costs a round trip more as it goes back: `BEGIN; ROLLBACK`,
    /// which ends a transaction left open and, where none is, begins and ends one. The async
    /// store lends its connection to a closure given to `run` the same way.
    ///
    /// The settings the store gives its PostgreSQL sessions (a `lock_timeout` of the
    /// [busy timeout](crate::StoreBuilder::busy_timeout), English messages, and Diesel's UTC
    /// time zone and UTF-8 client encoding) are given again
    /// in the same round trip, which a query with the word `RESET` (`RESET ALL`) costs too;
    /// one of the sixteen read with the word `DISCARD` (`DISCARD ALL`, which also deallocates
    /// the statements Diesel prepared) has the connection replaced as it goes back. A setting
    /// the caller changes with `SET` stays with the connection; so does a `RESET ALL` run in a
    /// [`transaction`](Store::transaction)'s closure (whose SQL is not read) that commits, and
    /// the loss of Diesel's statements to a `DISCARD ALL` past the sixteenth query.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// let mut conn = store.conn()?;
    /// // Diesel's own DSL on the generated table, and `Repo`'s methods.
    /// let note = conn.save(Note { text: "hi".into(), ..Note::default() })?;
    /// let texts: Vec<String> = notes::table.select(notes::text).load(&mut conn)?;
    /// assert_eq!(texts, ["hi"]);
    /// assert_eq!(conn.find::<Note>(&note.id)?, Some(note));
    /// # Ok(())
    /// # }
    /// ```
    pub fn conn(&self) -> Result<PooledConn> {
        self.checked_out(true)
    }

    /// A connection from the pool, read-only inside a transaction of this store on this
    /// thread, for the store's own statements (see [`conn`](Self::conn)).
    pub(crate) fn pooled(&self) -> Result<PooledConn> {
        self.checked_out(false)
    }

    /// A connection from the pool, read-only inside a transaction of this store on this
    /// thread, where one lent `to_caller` marks the transaction (its refusals are then told
    /// apart as [`Error::WriteOutsideTransaction`]).
    fn checked_out(&self, to_caller: bool) -> Result<PooledConn> {
        let mut conn = self
            .pool
            .get()
            .map_err(|e| Error::connection(&self.url, crate::ConnectionFailure::Pool, e))?;
        // The server may have ended the connection while it waited in the pool.
        let lost = |e: diesel::result::Error| Error::from(e).or_connection_lost(&self.url);
        if transaction::is_open(self.id()) {
            if to_caller {
                transaction::note_lent(self.id());
            }
            transaction::lend_read_only(&mut conn).map_err(lost)?;
        } else {
            transaction::restore(&mut conn).map_err(lost)?;
        }
        if let (true, AnyConnection::Postgres(conn)) = (to_caller, &mut *conn) {
            // The caller may leave a transaction of their own open: its SQL is read for it.
            lost::FirstFailure::lend(conn);
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

    /// Runs `f` on a connection of the pool; a connection the server ended meanwhile is
    /// [`Error::Connection`] with [`ConnectionFailure::Lost`](crate::ConnectionFailure::Lost).
    pub(crate) fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut AnyConnection) -> Result<T>,
    ) -> Result<T> {
        f(&mut *self.pooled()?).map_err(|error| error.or_connection_lost(&self.url))
    }

    /// [`with_conn`](Self::with_conn) on a connection lent as [`conn`](Self::conn) lends one,
    /// for a caller's own code (the async store's `run`).
    #[cfg(feature = "async")]
    pub(crate) fn with_lent_conn<T>(
        &self,
        f: impl FnOnce(&mut AnyConnection) -> Result<T>,
    ) -> Result<T> {
        f(&mut *self.conn()?).map_err(|error| error.or_connection_lost(&self.url))
    }

    /// [`with_conn`](Self::with_conn) for a read: one refused because the connection's
    /// prepared statements outlived another session's change of the schema (PostgreSQL's
    /// "cached plan must not change result type") runs again on another connection. It
    /// changed nothing, and the pool drops the refusing connection, so that this ends within
    /// one try more than the pool has connections.
    pub(crate) fn read_with_conn<T>(
        &self,
        mut f: impl FnMut(&mut AnyConnection) -> Result<T>,
    ) -> Result<T> {
        let mut tries = self.pool.max_size();
        loop {
            let mut conn = self.pooled()?;
            match f(&mut conn) {
                Err(_) if tries > 0 && lost::plans_outdated(&mut conn) => tries -= 1,
                result => return result.map_err(|error| error.or_connection_lost(&self.url)),
            }
        }
    }

    /// The database this store was opened on, as it may be shown: with any password replaced
    /// by `***` (`postgres://app:***@db/blog`).
    ///
    /// ```
    /// use datastore::Store;
    ///
    /// # fn main() -> datastore::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = Store::builder(dir.path().join("app.db")).open()?;
    /// assert!(store.url().ends_with("app.db"));
    /// # Ok(())
    /// # }
    /// ```
    #[allow(clippy::misnamed_getters)] // the field `url` holds the password: never returned
    pub fn url(&self) -> &str {
        &self.shown_url
    }

    /// The SQL dialect of the store's database.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// assert_eq!(store.dialect(), Dialect::Sqlite);
    /// assert_eq!(store.dialect().dir_name(), "sqlite");
    /// # Ok(())
    /// # }
    /// ```
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// See [`Repo::save`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// let mut note = store.save(Note { text: "draft".into(), ..Note::default() })?; // inserted
    /// note.text = "final".into();
    /// let note = store.save(note)?; // the same key: updated
    /// assert_eq!(store.all::<Note>()?, vec![note]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn save<M: Persist<AnyConnection>>(&self, model: M) -> Result<M> {
        self.refuse_write_in_transaction()?;
        self.with_conn(|conn| conn.save(model))
    }

    /// See [`Repo::insert_all`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// let rows = (0..500).map(|i| Note { text: format!("note {i}"), ..Note::default() });
    /// let inserted = store.insert_all(rows.collect())?;
    /// assert_eq!(store.count::<Note>()?, 500);
    /// assert_eq!(store.get::<Note>(&inserted[42].id)?.text, "note 42");
    /// # Ok(())
    /// # }
    /// ```
    pub fn insert_all<M: Persist<AnyConnection>>(&self, rows: Vec<M>) -> Result<Vec<M>> {
        self.refuse_write_in_transaction()?;
        self.with_conn(|conn| conn.insert_all(rows))
    }

    /// See [`Repo::save_graph`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Post, posts, Comment, comments};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:")
    /// #     .schema(Schema::new().model::<Post>().model::<Comment>())
    /// #     .open()?;
    /// let post = Post {
    ///     comments: HasMany::loaded(vec![Comment::default(), Comment::default()]),
    ///     ..Post::default()
    /// };
    /// let post = store.save_graph(post)?; // the post, then its comments pointed at it
    /// assert_eq!(post.comments(&mut store.conn()?)?.len(), 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn save_graph<M: Persist<AnyConnection>>(&self, model: M) -> Result<M> {
        self.refuse_write_in_transaction()?;
        self.with_conn(|conn| conn.save_graph(model))
    }

    /// See [`Repo::find`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// let note = store.save(Note::default())?;
    /// assert_eq!(store.find::<Note>(&note.id)?, Some(note));
    /// assert_eq!(store.find::<Note>(&Id::new())?, None);
    /// # Ok(())
    /// # }
    /// ```
    pub fn find<M: Persist<AnyConnection>>(&self, key: &M::Key) -> Result<Option<M>> {
        self.read_with_conn(|conn| conn.find(key))
    }

    /// See [`Repo::get`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// let note = store.save(Note { text: "hi".into(), ..Note::default() })?;
    /// assert_eq!(store.get::<Note>(&note.id)?.text, "hi");
    /// let missing = store.get::<Note>(&Id::new());
    /// assert!(matches!(missing, Err(datastore::Error::NotFound { .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub fn get<M: Persist<AnyConnection>>(&self, key: &M::Key) -> Result<M> {
        self.read_with_conn(|conn| conn.get(key))
    }

    /// See [`Repo::all`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// let a = store.save(Note { text: "a".into(), ..Note::default() })?;
    /// let b = store.save(Note { text: "b".into(), ..Note::default() })?;
    /// let mut expected = vec![a, b];
    /// expected.sort_by_key(|n| n.id); // in primary-key order
    /// assert_eq!(store.all::<Note>()?, expected);
    /// # Ok(())
    /// # }
    /// ```
    pub fn all<M: Persist<AnyConnection>>(&self) -> Result<Vec<M>> {
        self.read_with_conn(|conn| conn.all())
    }

    /// See [`Repo::query`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// for text in ["cherry", "apple", "banana"] {
    ///     store.save(Note { text: text.into(), ..Note::default() })?;
    /// }
    /// let first_two = store.query::<Note>(|q| q.order(notes::text.asc()).limit(2))?;
    /// let texts: Vec<&str> = first_two.iter().map(|n| n.text.as_str()).collect();
    /// assert_eq!(texts, ["apple", "banana"]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn query<M: Persist<AnyConnection>>(
        &self,
        build: impl FnOnce(M::Query) -> M::Query,
    ) -> Result<Vec<M>> {
        self.with_conn(|conn| conn.query(build))
    }

    /// See [`Repo::count`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// assert_eq!(store.count::<Note>()?, 0);
    /// store.save(Note::default())?;
    /// assert_eq!(store.count::<Note>()?, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn count<M: Persist<AnyConnection>>(&self) -> Result<usize> {
        self.read_with_conn(|conn| conn.count::<M>())
    }

    /// See [`Repo::delete`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// let note = store.save(Note::default())?;
    /// store.delete(&note)?;
    /// assert_eq!(store.find::<Note>(&note.id)?, None);
    /// assert!(matches!(store.delete(&note), Err(datastore::Error::NotFound { .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub fn delete<M: Persist<AnyConnection>>(&self, model: &M) -> Result<()> {
        self.refuse_write_in_transaction()?;
        self.with_conn(|conn| conn.delete(model))
    }

    /// See [`Repo::delete_by_id`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// let note = store.save(Note::default())?;
    /// store.delete_by_id::<Note>(&note.id)?;
    /// assert_eq!(store.count::<Note>()?, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn delete_by_id<M: Persist<AnyConnection>>(&self, key: &M::Key) -> Result<()> {
        self.refuse_write_in_transaction()?;
        self.with_conn(|conn| conn.delete_by_id::<M>(key))
    }

    /// See [`Repo::preview_delete`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Course, courses, Student, students, Enrolment, enrolments};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:")
    /// #     .schema(Schema::new().model::<Course>().model::<Student>().model::<Enrolment>())
    /// #     .open()?;
    /// let course = store.save(Course::default())?;
    /// let student = store.save(Student::default())?;
    /// course.link_students(&mut store.conn()?, &student)?;
    /// let effects = store.preview_delete::<Course>(&course.id)?;
    /// assert!(effects.is_refused()); // a plain delete would fail: the enrolment refuses it
    /// assert_eq!(store.count::<Enrolment>()?, 1); // a preview changes nothing
    /// # Ok(())
    /// # }
    /// ```
    pub fn preview_delete<M: Persist<AnyConnection>>(&self, key: &M::Key) -> Result<DeleteEffects> {
        self.read_with_conn(|conn| conn.preview_delete::<M>(key))
    }

    /// See [`Repo::unlink_and_delete`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Course, courses, Student, students, Enrolment, enrolments};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:")
    /// #     .schema(Schema::new().model::<Course>().model::<Student>().model::<Enrolment>())
    /// #     .open()?;
    /// let course = store.save(Course::default())?;
    /// let student = store.save(Student::default())?;
    /// course.link_students(&mut store.conn()?, &student)?;
    /// let effects = store.unlink_and_delete::<Course>(&course.id)?;
    /// assert_eq!(effects.removed_from("courses"), 1);
    /// assert_eq!(store.count::<Enrolment>()?, 0); // unlinked
    /// assert_eq!(store.count::<Student>()?, 1); // the student stays
    /// # Ok(())
    /// # }
    /// ```
    pub fn unlink_and_delete<M: Persist<AnyConnection>>(
        &self,
        key: &M::Key,
    ) -> Result<DeleteEffects> {
        self.refuse_write_in_transaction()?;
        self.with_conn(|conn| conn.unlink_and_delete::<M>(key))
    }

    /// See [`Repo::delete_where`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// store.save(Note { text: "keep".into(), ..Note::default() })?;
    /// store.save(Note { text: "tmp 1".into(), ..Note::default() })?;
    /// store.save(Note { text: "tmp 2".into(), ..Note::default() })?;
    /// assert_eq!(store.delete_where::<Note, _>(notes::text.like("tmp%"))?, 2);
    /// assert_eq!(store.count::<Note>()?, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn delete_where<M: Persist<AnyConnection>, C>(
        &self,
        predicate: impl IntoPredicate<M::Table, AnyBackend, C>,
    ) -> Result<usize> {
        self.refuse_write_in_transaction()?;
        self.with_conn(|conn| conn.delete_where::<M, C>(predicate))
    }
}
