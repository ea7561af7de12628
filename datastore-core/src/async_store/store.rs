//! [`AsyncStore`]: the blocking [`Store`] behind `async fn`s.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::stream::{AllChangeStream, ChangeStream, QueryStream};
use super::transaction::{self, AsyncTransaction};
use super::{AsyncRepo, unblock};
use crate::migrate::BackendMigrations;
use crate::model::Model;
use crate::persist::Persist;
use crate::schema::ddl::Dialect;
use crate::store::StoreBuilder;
use crate::{AnyConnection, Result, Store};

/// A data store for async applications (feature `async`, on tokio): the same store as
/// [`Store`] (opened the same way, the same pool, migrations, SQL, errors and change feed),
/// whose calls never block the task's thread. `Clone + Send + Sync + 'static` and cheap to
/// clone (clones share the pool), so it fits an axum `State` as it is.
///
/// The typed methods are [`AsyncRepo`]'s (in the prelude): `save`, `insert_all`,
/// `save_graph`, `find`, `get`, `all`, `query`, `count`, `delete`, `delete_by_id`,
/// `delete_where`, `preview_delete`, `unlink_and_delete`, and `run` for anything else on a
/// connection. Each runs on tokio's blocking pool; dropping its future does not stop it, so a
/// write is committed whole or not at all, and observed if committed.
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
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> datastore::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let url = dir.path().join("notes.db").display().to_string();
/// let store = AsyncStore::builder(url)
///     .schema(Schema::new().model::<Note>())
///     .pool_size(4)
///     .open_async()
///     .await?;
/// let note = store.save(Note { text: "hi".into(), ..Note::default() }).await?;
/// assert_eq!(store.find::<Note>(&note.id).await?, Some(note));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct AsyncStore {
    store: Arc<Store>,
    /// As many permits as the pool has connections: calls beyond them wait here, as tasks,
    /// rather than as blocking threads queued on the pool (64 tasks on a pool of 8 would
    /// otherwise take 64 threads, 56 of them waiting). A call's blocking work holds its permit
    /// to its end, also once the call's future is dropped. Transactions take none of these: each
    /// holds a connection, and a body may call the store while holding it (see
    /// `transactions`).
    calls: Arc<Semaphore>,
    /// As many permits as the pool has connections, for transactions waiting for one: each
    /// holds its permit only until its connection is had, so that a burst of transactions
    /// beyond the pool waits here, as tasks, rather than as blocking threads queued on the
    /// pool, which would hold up every other call's blocking work behind them.
    transactions: Arc<Semaphore>,
}

impl From<Store> for AsyncStore {
    /// The async face of a store already open: both share the pool and the change feed.
    fn from(store: Store) -> Self {
        Self {
            calls: Arc::new(Semaphore::new(store.pool_size() as usize)),
            transactions: Arc::new(Semaphore::new(store.pool_size() as usize)),
            store: Arc::new(store),
        }
    }
}

impl StoreBuilder {
    /// Opens the store, as [`open`](StoreBuilder::open) does, on tokio's blocking pool, and
    /// returns it as an [`AsyncStore`] (feature `async`).
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> datastore::Result<()> {
    /// let store: AsyncStore = Store::builder(":memory:")
    ///     .schema(Schema::new().model::<Note>())
    ///     .open_async()
    ///     .await?;
    /// assert_eq!(store.count::<Note>().await?, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn open_async(self) -> Result<AsyncStore> {
        unblock(move || self.open()).await.map(AsyncStore::from)
    }
}

impl AsyncStore {
    /// Opens the database at `url` and runs the pending migrations of its backend, as
    /// [`Store::open`] does, without blocking the task's thread.
    ///
    /// ```no_run
    /// # #[tokio::main]
    /// # async fn main() -> datastore::Result<()> {
    /// let migrations = datastore::migrate::BackendMigrations::new(); // datastore::embed_migrations!()
    /// let store = datastore::AsyncStore::open("blog.db", migrations).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn open(
        location: impl AsRef<std::ffi::OsStr>,
        migrations: BackendMigrations,
    ) -> Result<Self> {
        Store::builder(location)
            .migrations(migrations)
            .open_async()
            .await
    }

    /// A builder, as [`Store::builder`]; open it with
    /// [`open_async`](StoreBuilder::open_async).
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> datastore::Result<()> {
    /// let store = AsyncStore::builder(":memory:")
    ///     .schema(Schema::new().model::<Note>())
    ///     .pool_size(2)
    ///     .open_async()
    ///     .await?;
    /// assert_eq!(store.url(), ":memory:");
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder(location: impl AsRef<std::ffi::OsStr>) -> StoreBuilder {
        Store::builder(location)
    }

    /// The blocking store beneath, sharing the pool: for code that runs on a thread of its own
    /// (never call it from a task: it blocks).
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> datastore::Result<()> {
    /// # let store = AsyncStore::builder(":memory:").schema(Schema::new().model::<Note>()).open_async().await?;
    /// let store2 = store.clone();
    /// let saved = tokio::task::spawn_blocking(move || {
    ///     store2.blocking().save(Note { text: "from a thread".into(), ..Note::default() })
    /// })
    /// .await
    /// .unwrap()?;
    /// assert_eq!(store.get::<Note>(&saved.id).await?.text, "from a thread");
    /// # Ok(())
    /// # }
    /// ```
    pub fn blocking(&self) -> &Store {
        &self.store
    }

    /// The database's URL, with any password replaced by `***`.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> datastore::Result<()> {
    /// # let store = AsyncStore::builder(":memory:").schema(Schema::new().model::<Note>()).open_async().await?;
    /// assert_eq!(store.url(), ":memory:");
    /// # Ok(())
    /// # }
    /// ```
    pub fn url(&self) -> &str {
        self.store.url()
    }

    /// The SQL dialect of the store's database.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> datastore::Result<()> {
    /// # let store = AsyncStore::builder(":memory:").schema(Schema::new().model::<Note>()).open_async().await?;
    /// assert_eq!(store.dialect(), Dialect::Sqlite);
    /// # Ok(())
    /// # }
    /// ```
    pub fn dialect(&self) -> Dialect {
        self.store.dialect()
    }

    /// Runs `body` in one transaction, which commits when `body` returns `Ok`; when `body`
    /// returns an error or panics, or when this future is dropped before `body` returned (a
    /// timeout, a `select!`, a client gone), nothing it wrote remains. Once `body` returned
    /// `Ok` the `COMMIT` is sent, and it goes ahead even if this future is dropped while
    /// awaiting its outcome (a rollback cannot be promised past that point: the database may
    /// have committed already). Inside, write through the handle
    /// `body` is given (it has [`AsyncRepo`]'s methods); `tx.transaction(..)` nests as a
    /// savepoint. `body` may `.await` anything between statements: the transaction's
    /// connection is held by a blocking thread of its own meanwhile. A statement whose future
    /// `body` dropped (a timeout around `tx.run(..)`) and that then panicked or failed rolls the
    /// transaction back too, `body` having gone on without hearing it: the panic resumes from
    /// this future, the error is its result.
    ///
    /// As [`Store::transaction`]: `BEGIN IMMEDIATE` on SQLite, the server's default isolation
    /// level on PostgreSQL, and a transaction the database ended by itself is reported, never
    /// committed. A write through the store (not the handle) inside `body` runs on another
    /// connection, outside the transaction (on SQLite it waits for the transaction's lock).
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> datastore::Result<()> {
    /// # let store = AsyncStore::builder(":memory:").schema(Schema::new().model::<Note>()).open_async().await?;
    /// let (sender, mut receiver) = tokio::sync::oneshot::channel();
    /// sender.send("from elsewhere").unwrap();
    /// let note = store
    ///     .transaction(|tx| async move {
    ///         let text = receiver.await.unwrap(); // awaits while the transaction is open
    ///         tx.save(Note { text: text.into(), ..Note::default() }).await
    ///     })
    ///     .await?;
    /// assert_eq!(store.get::<Note>(&note.id).await?.text, "from elsewhere");
    ///
    /// let failed: datastore::Result<()> = store
    ///     .transaction(|tx| async move {
    ///         tx.save(Note::default()).await?;
    ///         tx.get::<Note>(&Id::new()).await?; // not found: all of it is rolled back
    ///         Ok(())
    ///     })
    ///     .await;
    /// assert!(failed.is_err());
    /// assert_eq!(store.count::<Note>().await?, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn transaction<T, F, Fut>(&self, body: F) -> Result<T>
    where
        F: FnOnce(AsyncTransaction) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let waiting = self
            .transactions
            .clone()
            .acquire_owned()
            .await
            .expect("the store never closes its semaphores");
        transaction::run(self.store.clone(), waiting, body).await
    }

    /// Every committed change of `M`'s rows, as a stream; see [`Store::observe`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use datastore::observe::Observed;
    /// use futures_util::StreamExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> datastore::Result<()> {
    /// # let store = AsyncStore::builder(":memory:").schema(Schema::new().model::<Note>()).open_async().await?;
    /// let mut notes = store.observe::<Note>().await?;
    /// store.save(Note { text: "hi".into(), ..Note::default() }).await?;
    /// match notes.next().await {
    ///     Some(Observed::Change(change)) => assert_eq!(change.element.text, "hi"),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn observe<M: Model + Clone>(&self) -> Result<ChangeStream<M>> {
        let store = self.store.clone();
        unblock(move || store.observe::<M>())
            .await
            .map(ChangeStream::new)
    }

    /// The committed changes of `M`'s rows that match `filter` (before or after the change),
    /// as a stream; see [`Store::observe_where`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use datastore::observe::Observed;
    /// use futures_util::StreamExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> datastore::Result<()> {
    /// # let store = AsyncStore::builder(":memory:").schema(Schema::new().model::<Note>()).open_async().await?;
    /// let his = store.observe_where::<Note>(|note| note.text == "hi").await?;
    /// store.save(Note { text: "not this one".into(), ..Note::default() }).await?;
    /// let kept = store.save(Note { text: "hi".into(), ..Note::default() }).await?;
    /// let Some(Observed::Change(change)) = his.take(1).next().await else { panic!("a change") };
    /// assert_eq!(change.element, kept);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn observe_where<M: Model + Clone>(
        &self,
        filter: impl Fn(&M) -> bool + Send + Sync + 'static,
    ) -> Result<ChangeStream<M>> {
        let store = self.store.clone();
        unblock(move || store.observe_where::<M>(filter))
            .await
            .map(ChangeStream::new)
    }

    /// The committed changes of one row, as a stream; see [`Store::observe_id`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use datastore::observe::{Observed, Op};
    /// use futures_util::StreamExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> datastore::Result<()> {
    /// # let store = AsyncStore::builder(":memory:").schema(Schema::new().model::<Note>()).open_async().await?;
    /// let mut note = store.save(Note { text: "draft".into(), ..Note::default() }).await?;
    /// let mut this_one = store.observe_id::<Note>(&note.id).await?;
    /// store.save(Note { text: "another".into(), ..Note::default() }).await?;
    /// note.text = "final".into();
    /// store.save(note).await?;
    /// let Some(Observed::Change(change)) = this_one.next().await else { panic!("a change") };
    /// assert_eq!((change.op, change.element.text.as_str()), (Op::Update, "final"));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn observe_id<M: Model + Clone>(&self, key: &M::Key) -> Result<ChangeStream<M>> {
        let key = key.clone();
        let store = self.store.clone();
        unblock(move || store.observe_id::<M>(&key))
            .await
            .map(ChangeStream::new)
    }

    /// Every committed change of every table, as raw rows, as a stream; see
    /// [`Store::observe_all`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use datastore::observe::Observed;
    /// use futures_util::StreamExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> datastore::Result<()> {
    /// # let store = AsyncStore::builder(":memory:").schema(Schema::new().model::<Note>()).open_async().await?;
    /// let mut everything = store.observe_all().await?;
    /// store.save(Note::default()).await?;
    /// let Some(Observed::Change(row)) = everything.next().await else { panic!("a change") };
    /// assert_eq!(row.table, "notes");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn observe_all(&self) -> Result<AllChangeStream> {
        let store = self.store.clone();
        unblock(move || store.observe_all())
            .await
            .map(AllChangeStream::new)
    }

    /// A query's result now, then again after every committed change that alters it, as a
    /// stream of snapshots; see [`Store::observe_query`]. Each result is read on the blocking
    /// pool; the stream yields [`Error::FeedLost`](crate::Error::FeedLost) once if the feed is
    /// lost, and ends after it.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use futures_util::StreamExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> datastore::Result<()> {
    /// # let store = AsyncStore::builder(":memory:").schema(Schema::new().model::<Note>()).open_async().await?;
    /// let mut his = store.observe_query::<Note>(|q| q.filter(notes::text.eq("hi"))).await?;
    /// assert_eq!(his.next().await.unwrap()?, vec![]); // the result now
    /// let note = store.save(Note { text: "hi".into(), ..Note::default() }).await?;
    /// assert_eq!(his.next().await.unwrap()?, vec![note]); // the result after the change
    /// # Ok(())
    /// # }
    /// ```
    pub async fn observe_query<M>(
        &self,
        build: impl Fn(M::Query) -> M::Query + Send + Sync + 'static,
    ) -> Result<QueryStream<M>>
    where
        M: Persist<AnyConnection> + PartialEq + Clone,
    {
        let store = self.store.clone();
        let tables = crate::observe::live::tables_of_query::<M>(&build, self.dialect())?;
        let queue = unblock(move || store.queue_of(Some(&tables))).await?;
        Ok(QueryStream::new(self.store.clone(), queue, Arc::new(build)))
    }

    /// A live query over relations, to subscribe to with
    /// [`subscribe_async`](crate::observe::LiveQuery::subscribe_async); see [`Store::live`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Post, posts, Comment, comments};
    /// use futures_util::StreamExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> datastore::Result<()> {
    /// # let store = AsyncStore::builder(":memory:")
    /// #     .schema(Schema::new().model::<Post>().model::<Comment>())
    /// #     .open_async()
    /// #     .await?;
    /// let mut posts = store.live::<Post>().load(Post::COMMENTS).subscribe_async().await?;
    /// assert!(posts.next().await.unwrap()?.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn live<M>(&self) -> crate::observe::LiveQuery<M>
    where
        M: Persist<AnyConnection> + PartialEq + Clone,
    {
        self.store.live::<M>()
    }

    /// How many subscriptions are live (each dropped stream unsubscribes).
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> datastore::Result<()> {
    /// # let store = AsyncStore::builder(":memory:").schema(Schema::new().model::<Note>()).open_async().await?;
    /// let notes = store.observe::<Note>().await?;
    /// assert_eq!(store.subscriptions(), 1);
    /// drop(notes);
    /// assert_eq!(store.subscriptions(), 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn subscriptions(&self) -> usize {
        self.store.subscriptions()
    }
}

impl AsyncStore {
    /// Runs `work` with the blocking store on tokio's blocking pool, under a call permit: the
    /// shared path of `run`, `run_own` and `run_read`. As the blocking store's calls, a
    /// connection the server ended is `Lost`.
    async fn call<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Store) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        // Held by the blocking work, not this future: a call dropped while its
        // work waits for a connection still holds a thread, and the next call waits here.
        let permit = self
            .calls
            .clone()
            .acquire_owned()
            .await
            .expect("the store never closes its semaphores");
        let store = self.store.clone();
        unblock(move || {
            let _permit = permit;
            work(&store)
        })
        .await
    }
}

impl AsyncRepo for AsyncStore {
    type Conn = AnyConnection;

    /// Runs `f` on a connection of the pool, on tokio's blocking pool: lent as
    /// [`Store::conn`] lends one (a transaction `f` leaves open is ended as it goes back).
    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T> + Send + 'static,
    {
        self.call(move |store| store.with_lent_conn(f)).await
    }

    /// As `run`, for the store's own statements, on a connection it does not lend.
    async fn run_own<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T> + Send + 'static,
    {
        self.call(move |store| store.with_conn(f)).await
    }

    /// As [`Store`]'s own reads: run again on another connection after PostgreSQL refused a
    /// prepared statement another session's schema change outdated.
    async fn run_read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&mut AnyConnection) -> Result<T> + Send + 'static,
    {
        self.call(move |store| store.read_with_conn(f)).await
    }
}
