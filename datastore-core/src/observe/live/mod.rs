//! Live queries over relations: the rows of a model matching a query, each with the
//! relations asked for, kept true as transactions commit.
//!
//! ```
//! use std::time::Duration;
//! use datastore::prelude::*;
//!
//! #[derive(Model, Debug, Clone, PartialEq, Default)]
//! pub struct Post {
//!     #[primary_key]
//!     pub id: Id,
//!     pub rating: i32,
//!     #[has_many(Comment)]
//!     pub comments: HasMany<Comment>,
//! }
//!
//! #[derive(Model, Debug, Clone, PartialEq, Default)]
//! pub struct Comment {
//!     #[primary_key]
//!     pub id: Id,
//!     #[belongs_to(Post)]
//!     pub post_id: Id,
//!     pub text: String,
//! }
//!
//! # fn main() -> datastore::Result<()> {
//! let schema = Schema::new().model::<Post>().model::<Comment>();
//! let store = Store::builder(":memory:").schema(schema).open()?;
//! let post = store.save(Post { rating: 5, ..Post::default() })?;
//! let mut top = store
//!     .live::<Post>()
//!     .query(|q| q.filter(posts::rating.gt(4)).order(posts::rating.desc()).limit(10))
//!     .load(Post::COMMENTS)
//!     .subscribe()?;
//! assert_eq!(top.recv()?[0].comments.get(), Some(&[][..])); // the first snapshot
//! store.save(Comment { post_id: post.id, text: "hi".into(), ..Comment::default() })?;
//! let posts = top.recv_timeout(Duration::from_secs(5)).expect("a new snapshot")?;
//! assert_eq!(posts[0].comments.get().unwrap()[0].text, "hi");
//! # Ok(())
//! # }
//! ```
//!
//! # How it stays true, doing the least work
//!
//! The subscription watches the tables of the model and of every relation it loads (and the
//! tables named with [`LiveQuery::watch`], which its query's filter reads), through one queue
//! of the store's change feed, which delivers each committed transaction's changes whole, in
//! commit order. It keeps an index of which root rows (rows of the query's model) reach which
//! loaded row, join row and parent, and for a `belongs_to`, which key each row pointed at and
//! which roots reach each parent. For the changes committed since its last snapshot it
//! finds the roots they touch (a comment edited, moved or deleted touches the roots that
//! loaded it; a comment inserted or moved touches the roots that loaded its new parent; a
//! link, the roots of its parent; a `belongs_to` parent edited or deleted, the roots whose
//! rows point at it; a row pointed at another parent, its roots), and reads again only those
//! roots' relations, one statement per relation level (two for a many-to-many) however many
//! rows the result holds; the query itself (its window: filter, order, limit) is read again,
//! one statement, only when the model's table or a watched table changed. A change that touches no loaded row
//! and no watched table costs no statement and yields no snapshot. A subscriber whose queue
//! overflowed ([`Missed`](crate::observe::Observed::Missed)), or a change that cannot be
//! decoded, gets a full refresh.
//!
//! # Why every snapshot is a committed state
//!
//! Each refresh reads in one read transaction (a snapshot: `REPEATABLE READ` on PostgreSQL,
//! `SERIALIZABLE` where that is the connection's default; a deferred transaction in WAL mode
//! on SQLite), so what it reads is the database as of
//! some commit `c`, at or after every commit it was told of. The parts of the result it does
//! not read again were read earlier, and are still true at `c` unless a commit up to `c`
//! touched them. After the read it waits for a fence (on SQLite, the commits numbered before
//! the read ended, since SQLite numbers a commit in its commit hook, before any reader can
//! see it; on PostgreSQL, a marker sent after the read, which the listener meets only after
//! every notification committed before it), so that every commit up to `c` is in its queue.
//! If one of those touches a root it did not read again, or would move the window it did not
//! read again, the snapshot is not used: a full refresh, in one read transaction, replaces
//! it. Otherwise it is the result at `c`. Reads happen one after another, each seeing at
//! least what the previous one saw, so snapshots never go back; the commits that arrived
//! after a refresh's fence are handled by the next refresh, so once writes stop, the last
//! snapshot is the result of a fresh query.

mod path;
mod snapshot;

pub use path::{BelongsToRel, HasManyRel, HasOneRel, LoadPath, ManyToManyRel, ParentOf, Then};

use path::Step;
pub use snapshot::Snapshot;

use snapshot::Parents;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::hub::{self, Item};
use super::{Batch, Decoder, NameCase, RawChange, Shape};
use crate::model::Model;
use crate::persist::Persist;
use crate::schema::Dialect;
use crate::{AnyBackend, AnyConnection, Error, Result, Store};

type Build<M> = Box<
    dyn Fn(<M as Persist<AnyConnection>>::Query) -> <M as Persist<AnyConnection>>::Query
        + Send
        + Sync,
>;

/// How long a refresh waits for the feed to catch up with what it read before it gives up
/// on reading only part of the result (and reads the whole result instead).
const FENCE_TIMEOUT: Duration = Duration::from_secs(5);

/// A live query being built: [`Store::live`], then [`query`](Self::query),
/// [`load`](Self::load) and [`watch`](Self::watch), then [`subscribe`](Self::subscribe).
///
/// ```
/// use datastore::prelude::*;
///
/// #[derive(Model, Debug, Clone, PartialEq, Default)]
/// pub struct Task {
///     #[primary_key]
///     pub id: Id,
///     pub done: bool,
/// }
///
/// # fn main() -> datastore::Result<()> {
/// let store = Store::builder(":memory:").schema(Schema::new().model::<Task>()).open()?;
/// store.save(Task::default())?;
/// let mut open = store.live::<Task>().query(|q| q.filter(tasks::done.eq(false))).subscribe()?;
/// assert_eq!(open.recv()?.len(), 1);
/// # Ok(())
/// # }
/// ```
#[must_use = "a live query does nothing until `subscribe` is called"]
pub struct LiveQuery<M: Persist<AnyConnection>> {
    store: Store,
    /// The query; every row in key order without one.
    build: Option<Build<M>>,
    steps: Vec<Box<dyn Step<M, M>>>,
    watched: Vec<&'static crate::schema::Table>,
}

impl<M: Persist<AnyConnection>> fmt::Debug for LiveQuery<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveQuery")
            .field("model", &M::NAME)
            .field(
                "loads",
                &self.steps.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl<M: Persist<AnyConnection> + Clone + PartialEq> LiveQuery<M> {
    pub(crate) fn new(store: Store) -> Self {
        Self {
            store,
            build: None,
            steps: Vec::new(),
            watched: Vec::new(),
        }
    }

    /// The query: a filter, an order and a limit on the model's boxed query, as in
    /// [`Repo::query`](crate::Repo::query). Without it, every row in key order.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Task, tasks};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Task>()).open()?;
    /// store.save(Task { title: "b".into(), ..Task::default() })?;
    /// store.save(Task { title: "a".into(), ..Task::default() })?;
    /// store.save(Task { title: "c".into(), done: true, ..Task::default() })?;
    /// let mut open = store
    ///     .live::<Task>()
    ///     .query(|q| q.filter(tasks::done.eq(false)).order(tasks::title.asc()))
    ///     .subscribe()?;
    /// let titles: Vec<String> = open.recv()?.iter().map(|t| t.title.clone()).collect();
    /// assert_eq!(titles, ["a", "b"]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn query(mut self, build: impl Fn(M::Query) -> M::Query + Send + Sync + 'static) -> Self {
        self.build = Some(Box::new(build));
        self
    }

    /// Loads a relation path with every row: `Post::COMMENTS`, or
    /// `Post::COMMENTS.then(Comment::REPLIES)` for each comment's replies too. Paths that
    /// share a start are loaded once. A `belongs_to` (`Comment::POST`, at the start or after
    /// `then`) loads each row's parent into the [`Snapshot`], which holds it once
    /// ([`Snapshot::parent`]); a relation loaded on two paths is held once, with what the
    /// first path loads below it.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Post, posts, Comment, comments};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:")
    /// #     .schema(Schema::new().model::<Post>().model::<Comment>())
    /// #     .open()?;
    /// let post = store.save(Post::default())?;
    /// store.save(Comment { post_id: post.id, ..Comment::default() })?;
    /// let mut posts = store.live::<Post>().load(Post::COMMENTS).subscribe()?;
    /// assert_eq!(posts.recv()?[0].comments.get().map(<[_]>::len), Some(1));
    /// # Ok(())
    /// # }
    /// ```
    pub fn load<R: LoadPath<M>>(mut self, path: R) -> Self {
        let step = path.into_step::<M>(Vec::new());
        let mut step = Some(step);
        for existing in &mut self.steps {
            step = existing.absorb(step.take().expect("kept until absorbed"));
            if step.is_none() {
                break;
            }
        }
        if let Some(step) = step {
            self.steps.push(step);
        }
        self
    }

    /// Watches the table of `T`: a committed change to it reads the query's rows again. The
    /// tables the generated filters on related rows read (`Post::having_comments(..)`,
    /// `Comment::where_post(..)`, `Post::having_editors(..)`) are watched without it, wherever
    /// they were built (the query is walked once when subscribing, and they tell their tables
    /// then); this is for a filter written by hand that reads another table (a raw SQL
    /// subquery).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use datastore::prelude::*;
    /// # #[derive(Model, Debug, Clone, PartialEq, Default)]
    /// # pub struct Post { #[primary_key] pub id: Id, pub title: String }
    /// # #[derive(Model, Debug, Clone, PartialEq, Default)]
    /// # pub struct Ban { #[primary_key] pub id: Id, pub word: String }
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:")
    /// #     .schema(Schema::new().model::<Post>().model::<Ban>())
    /// #     .open()?;
    /// use datastore::diesel::dsl::sql;
    /// use datastore::diesel::sql_types::Bool;
    ///
    /// store.save(Post { title: "spam".into(), ..Post::default() })?;
    /// let not_banned = "NOT EXISTS (SELECT 1 FROM bans WHERE bans.word = posts.title)";
    /// let mut allowed = store
    ///     .live::<Post>()
    ///     .query(move |q| q.filter(sql::<Bool>(not_banned)))
    ///     .watch::<Ban>() // the filter reads `bans`
    ///     .subscribe()?;
    /// assert_eq!(allowed.recv()?.len(), 1);
    /// store.save(Ban { word: "spam".into(), ..Ban::default() })?;
    /// let after = allowed.recv_timeout(Duration::from_secs(5)).expect("a new result")?;
    /// assert!(after.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn watch<T: Model>(mut self) -> Self {
        self.watched.push(T::table());
        self
    }

    /// Subscribes: the first [`recv`](LiveSubscription::recv) returns the result now, each
    /// later one the result after the commits that changed it.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Task, tasks};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Task>()).open()?;
    /// let mut tasks = store.live::<Task>().subscribe()?;
    /// assert!(tasks.recv()?.is_empty()); // the result now
    /// let task = store.save(Task::default())?;
    /// assert_eq!(tasks.recv()?.into_vec(), [task]); // the result after the commit
    /// # Ok(())
    /// # }
    /// ```
    pub fn subscribe(mut self) -> Result<LiveSubscription<M>> {
        if let Some(build) = &self.build {
            // The query built and walked once, to learn which tables its filters on related
            // rows read.
            let read = tables_read_by_query::<M>(build, self.store.dialect())?;
            for table in read {
                if !self.watched.iter().any(|t| t.name == table.name) {
                    self.watched.push(table);
                }
            }
        }
        let mut tables: Vec<&'static crate::schema::Table> = vec![M::table()];
        self.steps.iter().for_each(|s| s.tables(&mut tables));
        let window: HashSet<String> = std::iter::once(M::table())
            .chain(self.watched.iter().copied())
            .map(|t| t.name.to_string())
            .collect();
        tables.extend(self.watched.iter().copied());
        let mut names: Vec<String> = Vec::new();
        for table in &tables {
            if !names.iter().any(|name| name == table.name.as_ref()) {
                names.push(table.name.to_string());
            }
        }
        let (queue, decoders) = self.store.decoded_queue(&tables)?;
        Ok(LiveSubscription {
            store: self.store,
            queue,
            build: self.build,
            steps: self.steps,
            decoders,
            tables: names,
            window,
            rows: None,
            parents: Parents::default(),
            held: Vec::new(),
            retry: crate::observe::Retry::default(),
            lost: None,
            ended: false,
            stats: Stats::default(),
        })
    }
}

#[cfg(feature = "async")]
impl<M: Persist<AnyConnection> + Clone + PartialEq> LiveQuery<M> {
    /// Subscribes, for an async task: the results as a stream (see
    /// [`LiveStream`](crate::async_store::LiveStream)). Subscribing (on PostgreSQL, the
    /// listener reaching its start) and every read run on tokio's blocking pool.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Task, tasks};
    /// use futures_util::StreamExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> datastore::Result<()> {
    /// let store = AsyncStore::from(
    ///     Store::builder(":memory:").schema(Schema::new().model::<Task>()).open()?,
    /// );
    /// let mut open_tasks = store
    ///     .live::<Task>()
    ///     .query(|q| q.filter(tasks::done.eq(false)))
    ///     .subscribe_async()
    ///     .await?;
    /// assert!(open_tasks.next().await.unwrap()?.is_empty());
    /// let task = store.save(Task::default()).await?;
    /// assert_eq!(open_tasks.next().await.unwrap()?, vec![task]);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn subscribe_async(self) -> Result<crate::async_store::LiveStream<M>>
    where
        M: Send + 'static,
    {
        crate::async_store::unblock(move || self.subscribe())
            .await
            .map(crate::async_store::LiveStream::new)
    }
}

/// What a live subscription did so far: how its snapshots were made; from
/// [`LiveSubscription::stats`].
///
/// ```
/// # use std::time::Duration;
/// # use datastore::prelude::*;
/// # use datastore_doc_models::{Post, posts, Comment, comments};
/// # fn main() -> datastore::Result<()> {
/// # let store = Store::builder(":memory:")
/// #     .schema(Schema::new().model::<Post>().model::<Comment>())
/// #     .open()?;
/// let post = store.save(Post::default())?;
/// let mut posts = store.live::<Post>().load(Post::COMMENTS).subscribe()?;
/// posts.recv()?; // the first result: read whole
/// store.save(Comment { post_id: post.id, ..Comment::default() })?;
/// posts.recv_timeout(Duration::from_secs(5)).expect("a new result")?;
/// let stats = posts.stats();
/// assert_eq!(stats.full, 1);
/// assert_eq!(stats.full + stats.partial, 2); // the comment's post alone, read again
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Refreshes that read the whole result.
    pub full: usize,
    /// Refreshes that read only the touched roots' relations (and the window, if needed).
    pub partial: usize,
    /// Partial refreshes given up for a full one, because a commit they could not see
    /// touched a part they did not read.
    pub given_up: usize,
    /// Batches of commits that touched nothing loaded (no statement run).
    pub untouched: usize,
    /// Roots whose relations partial refreshes read again (each relation path counted
    /// once per root).
    pub roots_read: usize,
}

/// The live result of a query with its relations: the first [`recv`](Self::recv) gives the
/// rows now, each later one the rows after the committed transactions that changed them
/// (nothing for a transaction that did not). A slow reader gets the latest result, never a
/// queue of old ones. See the [module](self) for what it reads and why each result is a
/// committed state.
///
/// If its feed of changes is lost (on PostgreSQL, the store's listener lost its connection),
/// every call returns [`Error::FeedLost`] from then on and the iterator yields it once and
/// ends.
///
/// ```
/// # use std::time::Duration;
/// # use datastore::prelude::*;
/// # use datastore_doc_models::{Task, tasks};
/// # fn main() -> datastore::Result<()> {
/// # let store = Store::builder(":memory:").schema(Schema::new().model::<Task>()).open()?;
/// let mut open = store.live::<Task>().query(|q| q.filter(tasks::done.eq(false))).subscribe()?;
/// assert!(open.recv()?.is_empty());
/// let mut task = store.save(Task::default())?;
/// assert_eq!(open.recv()?.len(), 1);
/// task.done = true;
/// store.save(task)?;
/// assert!(open.recv()?.is_empty());
/// // No commit since: nothing new comes.
/// assert!(open.recv_timeout(Duration::from_millis(10)).is_none());
/// # Ok(())
/// # }
/// ```
pub struct LiveSubscription<M: Persist<AnyConnection>> {
    store: Store,
    queue: Arc<hub::Queue>,
    build: Option<Build<M>>,
    steps: Vec<Box<dyn Step<M, M>>>,
    decoders: HashMap<String, Decoder>,
    tables: Vec<String>,
    /// Tables whose changes may move rows in or out of the query's result.
    window: HashSet<String>,
    /// The last result, once read.
    rows: Option<Vec<M>>,
    /// The `belongs_to` parents of the last result handed out (the steps hold those of the
    /// last read).
    parents: Parents,
    /// Items taken from the queue and not handled yet.
    held: Vec<Item>,
    /// When the last read failed: the next waits a little.
    retry: crate::observe::Retry,
    lost: Option<Arc<str>>,
    ended: bool,
    stats: Stats,
}

impl<M: Persist<AnyConnection>> fmt::Debug for LiveSubscription<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveSubscription")
            .field("model", &M::NAME)
            .field("tables", &self.tables)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// What a step reads of a committed change. Public (the steps' trait takes it) but in a
/// private module, so that nothing outside the crate can name it.
mod change {
    use super::{Batch, Decoder, Model, RawChange};

    /// A committed change as a step reads it: its table, and its rows decoded as a model.
    pub struct ChangeRef<'a> {
        pub(super) batch: &'a Batch,
        pub(super) change: &'a RawChange,
        /// Its table, named as the live query's models name it.
        pub(super) table: &'a str,
        pub(super) decoder: Option<&'a Decoder>,
    }

    impl ChangeRef<'_> {
        /// The changed row's table, named as the live query's models name it.
        pub(crate) fn table(&self) -> &str {
            self.table
        }

        /// The row after the change (before it, for a delete), and before it for an update
        /// whose old row the feed carries.
        pub(crate) fn versions<T: Model>(&self) -> std::result::Result<Vec<T>, String> {
            let decoder = self
                .decoder
                .ok_or_else(|| format!("no decoder for {}", self.change.table))?;
            let mut rows =
                vec![decoder.decode::<T>(&self.change.shape, &self.batch.row(self.change))?];
            if let Some(old) = self.batch.old_row(self.change) {
                if self.change.new.is_some() {
                    rows.push(decoder.decode::<T>(&self.change.shape, &old)?);
                }
            }
            Ok(rows)
        }
    }
}

pub(crate) use change::ChangeRef;

/// What a batch of commits asks of a refresh.
struct Work<K> {
    /// For each loaded relation path, the roots whose rows of it must be read again.
    touched: Vec<HashSet<K>>,
    /// The window (the query's rows) must be read again.
    window: bool,
    /// Only a full refresh will do (missed or undecodable changes).
    full: bool,
}

impl<M: Persist<AnyConnection> + Clone + PartialEq> LiveSubscription<M> {
    /// How its snapshots were made so far (see [`Stats`]).
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Task, tasks};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Task>()).open()?;
    /// let mut tasks = store.live::<Task>().subscribe()?;
    /// tasks.recv()?;
    /// assert_eq!(tasks.stats().full, 1); // the first result is read whole
    /// # Ok(())
    /// # }
    /// ```
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The first result at once; then the next different result (its rows, or the parents it
    /// holds), waiting at most `timeout` (`None` if none came in that time). After a failed
    /// read, the next call reads the whole result again, once a tenth of a second has passed
    /// since the failure (waiting for it within `timeout`). [`Error::FeedLost`] at once, and
    /// on every later call, once the feed of changes is lost.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Task, tasks};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Task>()).open()?;
    /// let mut tasks = store.live::<Task>().subscribe()?;
    /// let first = tasks.recv_timeout(Duration::ZERO).expect("the first result at once")?;
    /// assert!(first.is_empty());
    /// assert!(tasks.recv_timeout(Duration::from_millis(10)).is_none()); // nothing changed
    /// store.save(Task::default())?;
    /// let next = tasks.recv_timeout(Duration::from_secs(5)).expect("a new result")?;
    /// assert_eq!(next.len(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn recv_timeout(&mut self, timeout: Duration) -> Option<Result<Snapshot<M>>> {
        if let Some(reason) = &self.lost {
            return Some(Err(Error::feed_lost(reason)));
        }
        if self.rows.is_none() {
            if !self.retry.wait(timeout) {
                return None;
            }
            return Some(self.full_refresh().map(|()| {
                self.parents = self.collect_parents();
                self.snapshot()
            }));
        }
        let deadline = Instant::now() + timeout;
        loop {
            if self.held.is_empty() {
                let left = deadline.saturating_duration_since(Instant::now());
                self.held.push(self.queue.next(Some(left))?);
            }
            self.drain();
            let items = std::mem::take(&mut self.held);
            if let Some(reason) = items.iter().find_map(|i| match i {
                Item::Lost(reason) => Some(reason.clone()),
                _ => None,
            }) {
                let error = Error::feed_lost(&reason);
                self.lost = Some(reason);
                return Some(Err(error));
            }
            let work = self.work(&items);
            if !work.full && work.touched.iter().all(HashSet::is_empty) && !work.window {
                self.stats.untouched += 1;
                continue;
            }
            let before = self.rows.clone();
            let refreshed = if work.full {
                self.full_refresh()
            } else {
                self.partial_refresh(work)
            };
            if let Err(e) = refreshed {
                return Some(Err(e));
            }
            // The parents of the result read, against those of the last one handed out.
            let parents = self.collect_parents();
            if self.rows != before || parents != self.parents {
                self.parents = parents;
                return Some(Ok(self.snapshot()));
            }
        }
    }

    /// The last result, with its parents.
    fn snapshot(&self) -> Snapshot<M> {
        Snapshot::new(self.rows.clone().unwrap_or_default(), self.parents.clone())
    }

    /// The `belongs_to` parents the steps hold now.
    fn collect_parents(&self) -> Parents {
        let mut parents = Parents::default();
        self.steps.iter().for_each(|s| s.parents(&mut parents));
        parents
    }

    /// The first result at once; then the next different result, waiting for it.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Task, tasks};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Task>()).open()?;
    /// let mut tasks = store.live::<Task>().subscribe()?;
    /// assert!(tasks.recv()?.is_empty());
    /// let writer = store.clone();
    /// std::thread::spawn(move || writer.save(Task { title: "later".into(), ..Task::default() }));
    /// assert_eq!(tasks.recv()?[0].title, "later"); // waits for the commit
    /// # Ok(())
    /// # }
    /// ```
    pub fn recv(&mut self) -> Result<Snapshot<M>> {
        loop {
            if let Some(result) = self.recv_timeout(Duration::from_secs(3600)) {
                return result;
            }
        }
    }

    /// The queue of its changes (an async reader waits on it before it reads).
    #[cfg(feature = "async")]
    pub(crate) fn queue(&self) -> &Arc<hub::Queue> {
        &self.queue
    }

    /// Hands it an item an async reader took from its queue, to handle at the next read.
    #[cfg(feature = "async")]
    pub(crate) fn hold(&mut self, item: Item) {
        self.held.push(item);
    }

    /// Whether [`recv_timeout`](Self::recv_timeout) has work before it would wait on the
    /// queue: the first result, or the whole result again after a failed read (no rows); the
    /// commits a refresh took from the queue after the state it read (held); a loss to
    /// report. An async reader reads then (after a failure, once [`Self::retry_left`] has
    /// passed), rather than wait for a commit that may
    /// never come.
    #[cfg(feature = "async")]
    pub(crate) fn has_work(&self) -> bool {
        self.rows.is_none() || !self.held.is_empty() || self.lost.is_some()
    }

    /// How long, after a failed read, until the next may run: what an async reader waits
    /// (on the blocking pool) before it reads again.
    #[cfg(feature = "async")]
    pub(crate) fn retry_left(&self) -> Duration {
        self.retry.left()
    }

    /// Takes everything queued now.
    fn drain(&mut self) {
        while let Some(item) = self.queue.next(Some(Duration::ZERO)) {
            self.held.push(item);
        }
    }

    /// The name the query's models give the table a change names as the database's schema
    /// holds it: on SQLite, which names tables without regard to ASCII case, a model's
    /// `memos` for the `Memos` its schema holds (the queue received the change by that match).
    fn known_table<'a>(&'a self, table: &'a str) -> &'a str {
        NameCase::of(self.store.dialect())
            .find(&self.tables, table)
            .map_or(table, |i| self.tables[i].as_str())
    }

    /// The roots the items touch, and whether they move the window.
    fn work(&self, items: &[Item]) -> Work<M::Key> {
        let mut work = Work {
            touched: vec![HashSet::new(); self.steps.len()],
            window: false,
            full: false,
        };
        // A gap (or a loss): what changed is not known.
        work.full = items.iter().any(|i| !matches!(i, Item::Changes(..)));
        let changes = items
            .iter()
            .filter_map(|item| match item {
                Item::Changes(run) => Some(run),
                Item::Missed(_) | Item::Lost(_) => None,
            })
            .flat_map(|run| run.indices().map(move |i| (&run.batch, i)));
        for (batch, i) in changes {
            let change = &batch.changes[i];
            if matches!(change.shape, Shape::Broken(_)) {
                work.full = true;
                continue;
            }
            let table = self.known_table(&change.table);
            if self.window.contains(table) {
                work.window = true;
            }
            let change = ChangeRef {
                batch,
                change,
                table,
                decoder: self.decoders.get(table),
            };
            for (step, touched) in self.steps.iter().zip(&mut work.touched) {
                if step.touched(&change, touched).is_err() {
                    work.full = true;
                }
            }
        }
        work
    }

    /// Reads the whole result again, in one read transaction.
    fn full_refresh(&mut self) -> Result<()> {
        self.stats.full += 1;
        let build = &self.build;
        let steps = &mut self.steps;
        steps.iter_mut().for_each(|s| s.clear());
        let rows = read(&self.store, |conn| {
            let mut rows = window(conn, build)?;
            load_all(steps, conn, rows.iter_mut().collect())?;
            Ok(rows)
        });
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                // What the steps knew is gone: the next call starts over.
                self.rows = None;
                self.retry.failed();
                return Err(e);
            }
        };
        self.rows = Some(rows);
        self.retry.succeeded();
        Ok(())
    }

    /// Reads again the window (if `work.window`) and the touched roots' relations, then checks
    /// that no commit up to the state read touched anything else; a full refresh otherwise.
    fn partial_refresh(&mut self, work: Work<M::Key>) -> Result<()> {
        let Some(old) = self.rows.take() else {
            return self.full_refresh();
        };
        let build = &self.build;
        let steps = &mut self.steps;
        let store = self.store.clone();
        let this_read = |conn: &mut AnyConnection| -> Result<(Vec<M>, usize, Vec<M::Key>)> {
            let known: HashSet<M::Key> = old.iter().map(Model::key).collect();
            let mut fresh: Vec<M> = if work.window {
                let mut fresh: Vec<M> = window(conn, build)?;
                // Rows kept keep their relations, moved over from the last result.
                let mut by_key: HashMap<M::Key, M> =
                    old.into_iter().map(|r| (r.key(), r)).collect();
                for row in &mut fresh {
                    if let Some(mut kept) = by_key.remove(&row.key()) {
                        steps.iter().for_each(|s| s.transfer(&mut kept, row));
                    }
                }
                let gone: Vec<M::Key> = by_key.into_keys().collect();
                steps.iter_mut().for_each(|s| s.forget(&gone));
                fresh
            } else {
                old
            };
            // Each path's touched rows read again, and every path of the rows new here.
            let mut roots_read = 0;
            for (step, touched) in steps.iter_mut().zip(&work.touched) {
                let again: Vec<M::Key> = touched
                    .iter()
                    .filter(|k| known.contains(*k))
                    .cloned()
                    .collect();
                step.forget(&again);
                let rows: Vec<(&mut M, M::Key)> = fresh
                    .iter_mut()
                    .filter_map(|row| {
                        let key = row.key();
                        (touched.contains(&key) || !known.contains(&key)).then_some((row, key))
                    })
                    .collect();
                roots_read += rows.len();
                step.load(conn, rows)?;
            }
            let new: Vec<M::Key> = fresh
                .iter()
                .map(Model::key)
                .filter(|k| !known.contains(k))
                .collect();
            Ok((fresh, roots_read, new))
        };
        let (fresh, roots_read, new) = match read(&store, this_read) {
            Ok(done) => done,
            Err(e) => {
                self.rows = None;
                self.retry.failed();
                return Err(e);
            }
        };
        self.stats.partial += 1;
        self.stats.roots_read += roots_read;
        // Every commit the read may have seen is now in the queue (unless the fence timed
        // out): none may touch what was not read again.
        let caught_up = match self.store.fence(&self.tables, FENCE_TIMEOUT) {
            Ok(caught_up) => caught_up,
            Err(e) => {
                // Not known to be a committed state, and not handed out: the next call starts
                // over (a full refresh), as after a failed read, rather than compare the
                // next result with this one.
                self.rows = None;
                self.retry.failed();
                return Err(e);
            }
        };
        self.rows = Some(fresh);
        self.drain();
        let later = self.work(&self.held);
        let consistent = caught_up
            && !later.full
            && (work.window || !later.window)
            && later
                .touched
                .iter()
                .zip(&work.touched)
                .all(|(later, read)| later.iter().all(|k| read.contains(k) || new.contains(k)));
        if !consistent {
            self.stats.given_up += 1;
            self.full_refresh()?;
        }
        Ok(())
    }
}

/// Reads in one read transaction on a pooled connection; inside a `store.transaction` of the
/// same store on this thread, on observe's own connection (committed data, never waiting for
/// the pool, which the transaction may hold).
fn read<T>(store: &Store, f: impl FnOnce(&mut AnyConnection) -> Result<T>) -> Result<T> {
    if store.in_transaction_here() {
        return store.with_observe_conn(|conn| conn.read_transaction(f));
    }
    let mut conn = store.pooled()?;
    (*conn).read_transaction(f)
}

thread_local! {
    /// The tables the filters on related rows read, told as a query is walked on this thread
    /// while a live query learns the tables of its own ([`tables_read_by`]); `None` otherwise.
    static FILTER_READS: std::cell::RefCell<Option<Vec<&'static crate::schema::Table>>> =
        const { std::cell::RefCell::new(None) };
}

/// Called by the filters on related rows as a query is walked: they read the table `table`
/// returns (called only while a live query learns its tables).
pub(crate) fn filter_reads(table: fn() -> &'static crate::schema::Table) {
    FILTER_READS.with(|reads| {
        if let Some(reads) = reads.borrow_mut().as_mut() {
            let table = table();
            if !reads.iter().any(|read| read.name == table.name) {
                reads.push(table);
            }
        }
    });
}

/// Runs `f`, and the tables the filters on related rows in the queries it walked read.
fn tables_read_by<T>(f: impl FnOnce() -> T) -> (T, Vec<&'static crate::schema::Table>) {
    /// Puts back what was recorded before, however `f` ends (a panic included).
    struct Restore(Option<Vec<&'static crate::schema::Table>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let outer = self.0.take();
            FILTER_READS.with(|reads| *reads.borrow_mut() = outer);
        }
    }
    let restore = Restore(FILTER_READS.with(|reads| reads.borrow_mut().replace(Vec::new())));
    let value = f();
    let read = FILTER_READS.with(|reads| reads.borrow_mut().take());
    drop(restore);
    (value, read.unwrap_or_default())
}

/// The tables the filters on related rows (`having_*`, `where_*`, ...) in the query `build`
/// makes of `M`'s read, wherever they were built (inside `build` or before it): the query is
/// built once and walked as building its SQL for `dialect` does, and each filter tells its
/// table as it is walked (a filter nested in another's subquery too).
fn tables_read_by_query<M: Persist<AnyConnection>>(
    build: impl FnOnce(M::Query) -> M::Query,
    dialect: Dialect,
) -> Result<Vec<&'static crate::schema::Table>> {
    let backend = match dialect {
        Dialect::Sqlite => AnyBackend::Sqlite(diesel::sqlite::Sqlite),
        Dialect::Postgres => AnyBackend::Postgres(diesel::pg::Pg),
    };
    let query = build(M::query());
    let (walked, read) = tables_read_by(|| M::walk_query(&query, &backend));
    walked?;
    Ok(read)
}

/// The tables whose changes can change the result of the query `build` makes of `M`'s: `M`'s
/// own, and those its filters on related rows read (see [`tables_read_by_query`]).
pub(crate) fn tables_of_query<M: Persist<AnyConnection>>(
    build: impl FnOnce(M::Query) -> M::Query,
    dialect: Dialect,
) -> Result<Vec<String>> {
    let read = tables_read_by_query::<M>(build, dialect)?;
    let mut names = vec![M::TABLE_NAME.to_owned()];
    for table in read {
        if !names.iter().any(|name| name == table.name.as_ref()) {
            names.push(table.name.to_string());
        }
    }
    Ok(names)
}

/// The query's rows (every row in key order without a query).
fn window<M: Persist<AnyConnection>>(
    conn: &mut AnyConnection,
    build: &Option<Build<M>>,
) -> Result<Vec<M>> {
    match build {
        Some(build) => M::load(conn, build(M::query())),
        None => M::all(conn),
    }
}

/// Loads every step over `rows` (each its own root).
fn load_all<M: Model>(
    steps: &mut [Box<dyn Step<M, M>>],
    conn: &mut AnyConnection,
    mut rows: Vec<&mut M>,
) -> Result<()> {
    for step in steps.iter_mut() {
        let lent: Vec<(&mut M, M::Key)> = rows
            .iter_mut()
            .map(|r| {
                let key = r.key();
                (&mut **r, key)
            })
            .collect();
        step.load(conn, lent)?;
    }
    Ok(())
}

impl<M: Persist<AnyConnection> + Clone + PartialEq> Iterator for LiveSubscription<M> {
    type Item = Result<Snapshot<M>>;

    /// Blocks until the next different result; yields [`Error::FeedLost`] once if the feed of
    /// changes is lost, and ends after it.
    fn next(&mut self) -> Option<Result<Snapshot<M>>> {
        if self.ended {
            return None;
        }
        let result = self.recv();
        self.ended = matches!(result, Err(Error::FeedLost { .. }));
        Some(result)
    }
}
