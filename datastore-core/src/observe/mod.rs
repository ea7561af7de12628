//! Observe: every committed change to a model, as a typed stream.
//!
//! ```
//! use std::time::Duration;
//! use datastore::observe::{Observed, Op};
//! use datastore::prelude::*;
//!
//! #[derive(Model, Debug, Clone, PartialEq, Default)]
//! pub struct Note {
//!     #[primary_key]
//!     pub id: Id,
//!     pub text: String,
//! }
//!
//! # fn main() -> datastore::Result<()> {
//! let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
//! let notes = store.observe::<Note>()?;
//! let note = store.save(Note { text: "hello".into(), ..Note::default() })?;
//! match notes.recv_timeout(Duration::from_secs(5)) {
//!     Some(Observed::Change(change)) => {
//!         assert_eq!(change.op, Op::Insert);
//!         assert_eq!(change.element, note);
//!     }
//!     other => panic!("{other:?}"),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Only committed work is delivered: a rolled-back transaction, a rolled-back savepoint and
//! the undone rows of a failed statement deliver nothing. Every element is the whole row as
//! committed (the deleted row for a delete), and a cascade delivers one delete per removed
//! child, children before their parent. Changes through any connection of the store's pool
//! reach every subscriber, in commit order. A subscriber's buffer is bounded: a slow one
//! never blocks writers, and is told how many changes it missed.
//!
//! A subscription sees the transactions that commit after it was made; of one already in
//! progress when it was made, it sees only what was written after that moment (on SQLite, the
//! statements that started after it: nothing is captured while nobody observes, which keeps an
//! unobserved store as fast as plain Diesel), and on SQLite it is then told, after that
//! commit's changes, how many rows it missed ([`Observed::Missed`]), so that a live query reads
//! its result again.
//!
//! On SQLite, built on SQLite's pre-update hook, which needs SQLite compiled with
//! `SQLITE_ENABLE_PREUPDATE_HOOK` (see [`AVAILABLE`]). On PostgreSQL, on the server's logical
//! decoding of its write-ahead log, or on row triggers where that is not available (see
//! [`ChangeFeed`]).

pub(crate) mod hub;
pub mod live;
pub(crate) mod postgres;
mod query;
mod retry;
mod rows;
mod shared;
mod spare;
pub(crate) mod sqlite;

pub(crate) use retry::Retry;
pub(crate) use rows::{Mark, RowRef, Rows};

pub use live::{LiveQuery, LiveSubscription, Snapshot};
pub use query::QuerySubscription;

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::model::Model;

/// Whether observe works in this build: SQLite was compiled with the pre-update hook, because
/// the final build set `LIBSQLITE3_FLAGS=-DSQLITE_ENABLE_PREUPDATE_HOOK` (as this repository's
/// `.cargo/config.toml` does). Without it, [`Store::observe`](crate::Store::observe) returns
/// [`Error::Unsupported`](crate::Error::Unsupported) and everything else works as before.
///
/// ```
/// if !datastore::observe::AVAILABLE {
///     eprintln!("observe is off: build with LIBSQLITE3_FLAGS=-DSQLITE_ENABLE_PREUPDATE_HOOK");
/// }
/// ```
pub const AVAILABLE: bool = crate::ffi::sqlite::PREUPDATE_HOOK;

/// What happened to a row: the [`Change`]'s `op`.
///
/// ```
/// # use datastore::prelude::*;
/// # use datastore_doc_models::{Note, notes};
/// use datastore::observe::{Observed, Op};
///
/// # fn main() -> datastore::Result<()> {
/// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
/// let notes = store.observe::<Note>()?;
/// let note = store.save(Note { text: "hi".into(), ..Note::default() })?;
/// store.delete(&note)?;
/// let ops: Vec<Op> = std::iter::from_fn(|| match notes.recv() {
///     Some(Observed::Change(change)) => Some(change.op),
///     _ => None,
/// })
/// .take(2)
/// .collect();
/// assert_eq!(ops, [Op::Insert, Op::Delete]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// The row was inserted.
    Insert,
    /// The row was updated (and some value changed).
    Update,
    /// The row was deleted, by a statement or by a cascade.
    Delete,
}

/// A column's value as SQLite stores it: the values of a [`RowChange`].
///
/// ```
/// use datastore::observe::RawValue;
///
/// let values = [RawValue::Integer(1), RawValue::Text("hi".into()), RawValue::Null];
/// let kinds: Vec<&str> = values.iter().map(RawValue::kind).collect();
/// assert_eq!(kinds, ["integer", "text", "NULL"]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    /// `NULL`.
    Null,
    /// An integer (also booleans).
    Integer(i64),
    /// A float.
    Real(f64),
    /// Text (also ids, timestamps, JSON and enums).
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

impl RawValue {
    /// A short name of the value's storage class, for error messages.
    ///
    /// ```
    /// use datastore::observe::RawValue;
    ///
    /// assert_eq!(RawValue::Real(0.5).kind(), "real");
    /// assert_eq!(RawValue::Blob(vec![1, 2]).kind(), "blob");
    /// ```
    pub fn kind(&self) -> &'static str {
        RawValueRef::from(self).kind()
    }
}

/// A column's value as SQLite stores it, borrowed from the captured change: what
/// [`FieldType::from_raw`](crate::FieldType::from_raw) reads a field from.
///
/// ```
/// use datastore::observe::{RawValue, RawValueRef};
///
/// let value = RawValueRef::Text("hello".into());
/// assert_eq!(value.kind(), "text");
/// assert_eq!(RawValue::from(value), RawValue::Text("hello".to_owned()));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum RawValueRef<'a> {
    /// `NULL`.
    Null,
    /// An integer (also booleans).
    Integer(i64),
    /// A float.
    Real(f64),
    /// Text (also ids, timestamps, JSON and enums): borrowed, unless SQLite held bytes that are
    /// not UTF-8, which are then replaced (U+FFFD) in a copy.
    Text(Cow<'a, str>),
    /// Bytes.
    Blob(&'a [u8]),
}

impl RawValueRef<'_> {
    /// A short name of the value's storage class, for error messages.
    ///
    /// ```
    /// use datastore::observe::RawValueRef;
    ///
    /// assert_eq!(RawValueRef::Null.kind(), "NULL");
    /// assert_eq!(RawValueRef::Integer(1).kind(), "integer");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Null => "NULL",
            Self::Integer(_) => "integer",
            Self::Real(_) => "real",
            Self::Text(_) => "text",
            Self::Blob(_) => "blob",
        }
    }
}

impl<'a> From<&'a RawValue> for RawValueRef<'a> {
    fn from(value: &'a RawValue) -> Self {
        match value {
            RawValue::Null => Self::Null,
            RawValue::Integer(v) => Self::Integer(*v),
            RawValue::Real(v) => Self::Real(*v),
            RawValue::Text(text) => Self::Text(Cow::Borrowed(text)),
            RawValue::Blob(bytes) => Self::Blob(bytes),
        }
    }
}

impl From<RawValueRef<'_>> for RawValue {
    fn from(value: RawValueRef<'_>) -> Self {
        match value {
            RawValueRef::Null => Self::Null,
            RawValueRef::Integer(v) => Self::Integer(v),
            RawValueRef::Real(v) => Self::Real(v),
            RawValueRef::Text(text) => Self::Text(text.into_owned()),
            RawValueRef::Blob(bytes) => Self::Blob(bytes.to_vec()),
        }
    }
}

/// A change of a row, as captured: its rows are ranges of its [`Batch`]'s [`Rows`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawChange {
    pub table: Arc<str>,
    pub op: Op,
    pub old: Option<Range<usize>>,
    pub new: Option<Range<usize>>,
    /// 0 for the statement's own rows, 1 and more for rows changed by a cascade.
    pub depth: i32,
    /// Which of the table's columns the rows' values are.
    pub shape: Shape,
}

impl RawChange {
    /// A committed change whose rows cannot be read, and why: reported, never dropped.
    pub(crate) fn broken(table: Arc<str>, op: Op, depth: i32, reason: impl Into<Arc<str>>) -> Self {
        Self {
            table,
            op,
            old: None,
            new: None,
            depth,
            shape: Shape::Broken(reason.into()),
        }
    }
}

/// How a captured row's values line up with its table's columns, which another connection
/// may change while the store observes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Shape {
    /// SQLite: by position, in the table's columns as of the store's schema epoch when the
    /// row was captured.
    Epoch(u64),
    /// SQLite: by position, captured in a transaction that changes the schema itself, before
    /// it settled: in columns no one else can read.
    Unsettled,
    /// PostgreSQL: the table's columns when the trigger ran.
    Columns(Arc<Columns>),
    /// The change was committed but cannot be read, for this reason.
    Broken(Arc<str>),
}

/// A table's columns at one moment: their names, and (on PostgreSQL) their types' OIDs.
#[derive(Debug, PartialEq)]
pub(crate) struct Columns {
    pub names: Vec<Arc<str>>,
    pub types: Vec<u32>,
}

/// Where a store's observe learns of committed changes on PostgreSQL (SQLite has one feed:
/// its hooks). Chosen with [`StoreBuilder::change_feed`](crate::StoreBuilder::change_feed);
/// the guarantees are the same whichever it is.
///
/// ```no_run
/// use datastore::observe::ChangeFeed;
/// use datastore::Store;
///
/// # fn main() -> datastore::Result<()> {
/// let store = Store::builder("postgres://app@db.internal/app")
///     .change_feed(ChangeFeed::LogicalDecoding)
///     .open()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChangeFeed {
    /// Logical decoding where the server and role allow it, the triggers otherwise.
    #[default]
    Auto,
    /// The server streams each committed transaction from its write-ahead log to a temporary
    /// replication slot the store holds: writers pay nothing beyond the log they write, and
    /// many writers commit as fast as without observe. Needs `wal_level = logical` and a role
    /// with `REPLICATION` (or a superuser); observing a table sets its `REPLICA IDENTITY FULL`
    /// and adds it to the schema's publication. Subscribing fails with
    /// [`Error::Unsupported`](crate::Error::Unsupported) where it is not available.
    LogicalDecoding,
    /// Row triggers record each change in a table of their own and `NOTIFY` the store's
    /// listener: works on any server, but every write pays for the record, and the
    /// server serialises `NOTIFY`ing commits database-wide.
    Triggers,
}

/// One commit's changes and the rows they point into: handed to subscribers whole, so that a
/// commit costs one allocation for the hub however many rows it changed.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub rows: Rows,
    pub changes: Vec<RawChange>,
    /// Rows the transaction wrote that no subscriber was given, told to every subscriber as
    /// missed after the changes (SQLite: a transaction a subscription started during, whose
    /// rows written before it were not captured; PostgreSQL's trigger feed: changes removed
    /// before its listener read them, of this transaction or of one between it and the next,
    /// their tables unknown).
    pub gap: u64,
    /// Its rows as decoded by the subscriptions of a model, for the others of that model.
    pub shared: shared::Shared,
    /// Where its buffers go when the last subscriber lets go of it: the connection that
    /// captured them, for its next transaction (SQLite; see [`spare`]).
    pub spares: Option<spare::Spares>,
}

impl Drop for Batch {
    fn drop(&mut self) {
        if let Some(spares) = self.spares.take() {
            spares.give_back(
                std::mem::take(&mut self.rows),
                std::mem::take(&mut self.changes),
            );
        }
    }
}

impl Batch {
    /// Whether it has nothing to tell: no change, and none missed.
    pub(crate) fn holds_nothing(&self) -> bool {
        self.changes.is_empty() && self.gap == 0
    }

    /// The row of a change as it is after the change (before it, for a delete).
    fn row(&self, change: &RawChange) -> RowRef<'_> {
        let cells = change
            .new
            .clone()
            .or_else(|| change.old.clone())
            .unwrap_or_default();
        self.rows.row(cells)
    }

    fn old_row(&self, change: &RawChange) -> Option<RowRef<'_>> {
        change.old.clone().map(|cells| self.rows.row(cells))
    }

    /// A batch of only the changes at `indices` (in that order) and their rows: what a queue
    /// keeps of a commit when it holds few of its changes, so that it keeps no more rows than
    /// it holds (see `Queue::push`).
    pub(crate) fn pick(&self, indices: impl Iterator<Item = usize>) -> Batch {
        let mut rows = Rows::default();
        let changes = indices
            .map(|i| {
                let change = &self.changes[i];
                RawChange {
                    old: change
                        .old
                        .clone()
                        .map(|old| rows.copy_from(&self.rows, old)),
                    new: change
                        .new
                        .clone()
                        .map(|new| rows.copy_from(&self.rows, new)),
                    ..change.clone()
                }
            })
            .collect();
        Batch {
            rows,
            changes,
            gap: 0,
            shared: shared::Shared::default(),
            spares: None,
        }
    }
}

/// One committed change of a model's row: what a [`Subscription`] yields, inside
/// [`Observed::Change`].
///
/// ```
/// # use datastore::prelude::*;
/// # use datastore_doc_models::{Note, notes};
/// use datastore::observe::{Change, Observed, Op};
///
/// # fn main() -> datastore::Result<()> {
/// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
/// let notes = store.observe::<Note>()?;
/// let note = store.save(Note { text: "hi".into(), ..Note::default() })?;
/// let Some(Observed::Change(change)) = notes.recv() else { panic!("a change") };
/// assert_eq!(change, Change { model: "Note", op: Op::Insert, element: note });
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Change<M> {
    /// The model's name.
    pub model: &'static str,
    /// What happened.
    pub op: Op,
    /// The row as committed (the deleted row, for a delete).
    pub element: M,
}

/// What a subscription yields: a [`Change`] (or [`RowChange`] when observing every table).
///
/// A subscription ends (`None`) when its store is gone, after everything committed was
/// delivered; [`FeedLost`](Observed::FeedLost), its last item, tells an end where changes may
/// have been missed.
///
/// ```
/// use std::time::Duration;
/// use datastore::observe::Observed;
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
/// let notes = store.observe::<Note>()?;
/// store.save(Note { text: "hello".into(), ..Note::default() })?;
/// while let Some(observed) = notes.recv_timeout(Duration::from_millis(100)) {
///     match observed {
///         Observed::Change(change) => println!("{:?} {:?}", change.op, change.element),
///         Observed::Missed(n) => println!("{n} changes not given here: read again"),
///         Observed::Undecodable { table, reason } => println!("a row of {table}: {reason}"),
///         Observed::FeedLost { reason } => println!("read again and subscribe again: {reason}"),
///         _ => {}
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Observed<T> {
    /// A committed change.
    Change(T),
    /// This many changes, here in the stream, were not given to the subscriber: its buffer was
    /// full; or, on SQLite, the transaction that committed them wrote them before the
    /// subscription started or while it was starting (by a statement that began before it), or
    /// a failed statement's triggers wrote them and SQLite may have kept them. Whatever depends
    /// on them is to be read again.
    Missed(usize),
    /// A committed change whose row does not decode as the model (the table holds a value the
    /// model cannot represent, or its schema changed under the store): reported, never skipped.
    Undecodable {
        /// The table of the row: as the model names it, for a model's subscription; as the
        /// database's schema holds the name, for [`Store::observe_all`](crate::Store::observe_all)'s
        /// (see [`RowChange::table`]).
        table: String,
        /// Why it does not decode.
        reason: String,
    },
    /// The feed of changes was lost: on PostgreSQL, the store's listener lost its connection
    /// (a server restart, an administrator ending it). Changes committed since may never be
    /// delivered, so this is the last item: the subscription ends after it. Read the data
    /// again and subscribe again (a new subscription starts a new listener). A subscription
    /// whose store is gone ends without it, with nothing missed.
    FeedLost {
        /// What happened to the feed.
        reason: String,
    },
}

/// One committed change of any table's row, from [`Store::observe_all`](crate::Store::observe_all).
///
/// ```
/// # use datastore::prelude::*;
/// # use datastore_doc_models::{Note, notes};
/// use datastore::observe::{Observed, Op, RawValue};
///
/// # fn main() -> datastore::Result<()> {
/// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
/// let everything = store.observe_all()?;
/// store.save(Note { text: "hi".into(), ..Note::default() })?;
/// let Some(Observed::Change(row)) = everything.recv() else { panic!("a change") };
/// assert_eq!((row.table.as_str(), row.op), ("notes", Op::Insert));
/// assert_eq!(row.values[1], RawValue::Text("hi".into())); // columns `id`, `text`
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RowChange {
    /// The table, named as the database's schema holds the name, whoever else subscribes: on
    /// SQLite, which names tables without regard to ASCII case, a table created as `Memos`
    /// is `Memos` here, while a model of `memos` observes it as its own (its subscription
    /// receives the changes of any table whose name differs from its own at most in ASCII
    /// case); on PostgreSQL, where case tells tables apart, a model's subscription receives the
    /// changes of the table of exactly its name.
    pub table: String,
    /// What happened.
    pub op: Op,
    /// The row as committed (the deleted row, for a delete), in the table's column order.
    pub values: Vec<RawValue>,
}

/// A stream of every table's committed changes, as raw rows: what
/// [`Store::observe_all`](crate::Store::observe_all) returns. Poll it with
/// [`recv_timeout`](Self::recv_timeout) or iterate it (blocking); dropping it unsubscribes.
///
/// ```
/// # use std::time::Duration;
/// # use datastore::prelude::*;
/// # #[derive(Model, Debug, Clone, PartialEq, Default)]
/// # pub struct Note { #[primary_key] pub id: Id, pub text: String }
/// # #[derive(Model, Debug, Clone, PartialEq, Default)]
/// # pub struct Tag { #[primary_key] pub id: Id, pub name: String }
/// use datastore::observe::Observed;
///
/// # fn main() -> datastore::Result<()> {
/// # let store = Store::builder(":memory:")
/// #     .schema(Schema::new().model::<Note>().model::<Tag>())
/// #     .open()?;
/// let everything = store.observe_all()?;
/// store.save(Note::default())?;
/// store.save(Tag::default())?;
/// let mut tables = Vec::new();
/// while let Some(Observed::Change(row)) = everything.recv_timeout(Duration::from_millis(100)) {
///     tables.push(row.table);
/// }
/// assert_eq!(tables, ["notes", "tags"]);
/// # Ok(())
/// # }
/// ```
pub struct AllSubscription {
    reader: hub::Reader,
}

impl fmt::Debug for AllSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AllSubscription").finish_non_exhaustive()
    }
}

impl AllSubscription {
    pub(crate) fn new(queue: Arc<hub::Queue>) -> Self {
        Self {
            reader: hub::Reader::new(queue),
        }
    }

    /// The next change, waiting at most `timeout`; `None` if none came, or once the
    /// subscription has ended.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use std::time::Duration;
    ///
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// let everything = store.observe_all()?;
    /// assert!(everything.recv_timeout(Duration::from_millis(10)).is_none()); // nothing came
    /// store.save(Note::default())?;
    /// assert!(everything.recv_timeout(Duration::from_secs(5)).is_some());
    /// # Ok(())
    /// # }
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Observed<RowChange>> {
        self.reader
            .next(Some(timeout), |next| Some(Self::accept(next)))
    }

    /// The next change, waiting for it; `None` once the store and all its connections are
    /// gone, or after [`Observed::FeedLost`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use datastore::observe::Observed;
    ///
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// let everything = store.observe_all()?;
    /// let writer = store.clone();
    /// std::thread::spawn(move || writer.save(Note::default()));
    /// let Some(Observed::Change(row)) = everything.recv() else { panic!("a change") };
    /// assert_eq!(row.table, "notes");
    /// # Ok(())
    /// # }
    /// ```
    pub fn recv(&self) -> Option<Observed<RowChange>> {
        self.reader.next(None, |next| Some(Self::accept(next)))
    }

    fn accept(next: hub::Next<'_>) -> Observed<RowChange> {
        match next {
            hub::Next::Missed(count) => Observed::Missed(count),
            hub::Next::Lost(reason) => Observed::FeedLost {
                reason: reason.to_string(),
            },
            hub::Next::Change(batch, i) => {
                let change = &batch.changes[i];
                if let Shape::Broken(reason) = &change.shape {
                    return Observed::Undecodable {
                        table: change.table.to_string(),
                        reason: reason.to_string(),
                    };
                }
                Observed::Change(RowChange {
                    table: change.table.to_string(),
                    op: change.op,
                    values: batch.row(change).values(),
                })
            }
        }
    }
}

#[cfg(feature = "async")]
impl AllSubscription {
    /// The next change without waiting: `Pending` (the task woken when one comes), or
    /// `Ready(None)` once the subscription has ended.
    pub(crate) fn poll_recv(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Observed<RowChange>>> {
        self.reader.poll_next(cx, |next| Some(Self::accept(next)))
    }
}

impl Iterator for AllSubscription {
    type Item = Observed<RowChange>;

    /// Blocks until the next change; ends once the store is gone, or after
    /// [`Observed::FeedLost`].
    fn next(&mut self) -> Option<Observed<RowChange>> {
        self.recv()
    }
}

/// A subscriber's condition on the rows it receives.
pub(crate) type Filter<M> = Box<dyn Fn(&M) -> bool + Send + Sync>;

/// A stream of committed changes of a model's rows: what
/// [`Store::observe`](crate::Store::observe), `observe_where` and `observe_id` return.
/// Iterate it (blocking), or poll it with [`recv_timeout`](Self::recv_timeout) or
/// [`try_recv`](Self::try_recv); dropping it unsubscribes.
///
/// ```
/// # use std::time::Duration;
/// # use datastore::prelude::*;
/// # use datastore_doc_models::{Note, notes};
/// use datastore::observe::Observed;
///
/// # fn main() -> datastore::Result<()> {
/// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
/// let notes = store.observe::<Note>()?;
/// assert_eq!(store.subscriptions(), 1);
/// assert!(notes.try_recv().is_none()); // nothing committed yet
/// store.save(Note { text: "hi".into(), ..Note::default() })?;
/// let texts: Vec<String> = notes
///     .take(1)
///     .filter_map(|observed| match observed {
///         Observed::Change(change) => Some(change.element.text),
///         _ => None,
///     })
///     .collect();
/// assert_eq!(texts, ["hi"]);
/// assert_eq!(store.subscriptions(), 0); // dropped: unsubscribed
/// # Ok(())
/// # }
/// ```
pub struct Subscription<M> {
    reader: hub::Reader,
    decoder: Decoder,
    filter: Option<Filter<M>>,
    _model: PhantomData<fn() -> M>,
}

impl<M> fmt::Debug for Subscription<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("table", &self.decoder.table)
            .finish_non_exhaustive()
    }
}

/// How a database compares the names of its tables and columns: SQLite without regard to
/// ASCII case (a model's `memos` is the table created as `Memos`, its `text` the column
/// `Text`), PostgreSQL exactly (its `"Memos"` and `memos` are two tables).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum NameCase {
    #[default]
    Exact,
    IgnoreAscii,
}

impl NameCase {
    pub(crate) fn of(dialect: crate::schema::Dialect) -> Self {
        match dialect {
            crate::schema::Dialect::Sqlite => NameCase::IgnoreAscii,
            crate::schema::Dialect::Postgres => NameCase::Exact,
        }
    }

    /// Whether `a` and `b` name the same table or column.
    pub(crate) fn same(self, a: &str, b: &str) -> bool {
        a == b || (self == NameCase::IgnoreAscii && a.eq_ignore_ascii_case(b))
    }

    /// Which of `names` is `name`: the one of exactly its name first (a name can differ from
    /// the database's spelling of it, never from itself), else the one it compares equal to.
    pub(crate) fn find<S: AsRef<str>>(self, names: &[S], name: &str) -> Option<usize> {
        names
            .iter()
            .position(|n| n.as_ref() == name)
            .or_else(|| names.iter().position(|n| self.same(n.as_ref(), name)))
    }
}

/// Maps a table's columns to the model's, as they were when each row was captured.
#[derive(Debug)]
pub(crate) struct Decoder {
    table: String,
    model_columns: Vec<String>,
    /// How the database compares the columns' names.
    name_case: NameCase,
    /// SQLite: where to read the table's columns again when rows arrive from a schema epoch
    /// not read yet, and the placements read (the latest last).
    catalog: Option<sqlite::catalog::Catalog>,
    epochs: Mutex<Vec<EpochPlacement>>,
    /// PostgreSQL's rows name their columns: the placement in the last list seen.
    named: Mutex<Option<(Arc<Columns>, Placed)>>,
}

/// Where the model's columns are among a table's, and how many columns the table has.
#[derive(Debug)]
struct Placement {
    positions: Vec<usize>,
    columns: usize,
}

/// A placement, or why the model's columns cannot be placed.
type Placed = Result<Arc<Placement>, String>;

/// A column of the model the table lacks: its migrations did not run.
#[derive(Debug)]
pub(crate) struct MissingColumn {
    pub table: String,
    pub column: String,
}

impl fmt::Display for MissingColumn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "table {} has no column {}: run the migrations",
            self.table, self.column
        )
    }
}

#[derive(Debug)]
struct EpochPlacement {
    epoch: u64,
    cookie: i64,
    placed: Placed,
}

/// How many placements of earlier epochs a SQLite decoder keeps.
const EPOCHS_KEPT: usize = 8;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Decoder {
    /// SQLite: rows come by position; `layout` is the table's columns as of its epoch.
    pub(crate) fn for_sqlite(
        table: &str,
        model_columns: &[&str],
        catalog: sqlite::catalog::Catalog,
        layout: sqlite::catalog::Layout,
    ) -> Result<Self, MissingColumn> {
        let decoder = Self::new(table, model_columns, Some(catalog), NameCase::IgnoreAscii);
        let placed = Ok(Arc::new(decoder.place(&layout.columns)?));
        lock(&decoder.epochs).push(EpochPlacement {
            epoch: layout.epoch,
            cookie: layout.cookie,
            placed,
        });
        Ok(decoder)
    }

    /// PostgreSQL: rows name their columns; `table_columns` are the table's now, which must
    /// hold the model's.
    pub(crate) fn for_postgres(
        table: &str,
        model_columns: &[&str],
        table_columns: &[String],
    ) -> Result<Self, MissingColumn> {
        let decoder = Self::new(table, model_columns, None, NameCase::Exact);
        decoder.place(table_columns)?;
        Ok(decoder)
    }

    fn new(
        table: &str,
        model_columns: &[&str],
        catalog: Option<sqlite::catalog::Catalog>,
        name_case: NameCase,
    ) -> Self {
        Self {
            table: table.to_owned(),
            model_columns: model_columns.iter().map(|c| (*c).to_owned()).collect(),
            name_case,
            catalog,
            epochs: Mutex::default(),
            named: Mutex::default(),
        }
    }

    /// For each of the model's columns, its position among `columns`: the column of exactly
    /// its name, else, on SQLite, the one whose name differs at most in ASCII case (SQLite
    /// allows no two of those in a table). Runs once per schema change, not per row.
    fn place(&self, columns: &[impl AsRef<str>]) -> Result<Placement, MissingColumn> {
        let positions = self
            .model_columns
            .iter()
            .map(|name| {
                self.name_case
                    .find(columns, name)
                    .ok_or_else(|| MissingColumn {
                        table: self.table.clone(),
                        column: name.clone(),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Placement {
            positions,
            columns: columns.len(),
        })
    }

    /// Where the model's columns are among those a change's rows were captured in.
    fn placement(&self, shape: &Shape) -> Placed {
        match shape {
            Shape::Broken(reason) => Err(reason.to_string()),
            Shape::Unsettled => Err(format!(
                "captured in a transaction that changed the schema, whose columns of {} are \
                 not known: read the row again",
                self.table
            )),
            Shape::Epoch(epoch) => self.at_epoch(*epoch),
            Shape::Columns(columns) => {
                let mut named = lock(&self.named);
                match &*named {
                    Some((known, placed)) if Arc::ptr_eq(known, columns) => placed.clone(),
                    _ => {
                        let placed = self
                            .place(&columns.names)
                            .map(Arc::new)
                            .map_err(|missing| missing.to_string());
                        *named = Some((columns.clone(), placed.clone()));
                        placed
                    }
                }
            }
        }
    }

    /// The placement for rows of a schema epoch: known, or known for its schema cookie, or
    /// read now if no epoch began since it. Anything else is in doubt.
    fn at_epoch(&self, epoch: u64) -> Placed {
        let Some(catalog) = &self.catalog else {
            return Err("no catalog to read the columns from".into());
        };
        let mut known = lock(&self.epochs);
        if let Some(found) = known.iter().find(|k| k.epoch == epoch) {
            return found.placed.clone();
        }
        let cookie = catalog.cookie_of(epoch);
        if let Some(found) = cookie.and_then(|c| known.iter().find(|k| k.cookie == c)) {
            return found.placed.clone();
        }
        let layout = catalog
            .resolve(&self.table)
            .map_err(|e| format!("cannot read the columns of {}: {e}", self.table))?;
        let placed = self
            .place(&layout.columns)
            .map(Arc::new)
            .map_err(|missing| missing.to_string());
        let fits = layout.epoch == epoch || catalog.cookie_of(epoch) == Some(layout.cookie);
        if known.len() == EPOCHS_KEPT {
            known.remove(0);
        }
        known.push(EpochPlacement {
            epoch: layout.epoch,
            cookie: layout.cookie,
            placed: placed.clone(),
        });
        if fits {
            placed
        } else {
            Err(format!(
                "the columns of {} changed while this change was on its way: read the row again",
                self.table
            ))
        }
    }

    fn decode<M: Model>(&self, shape: &Shape, row: &RowRef<'_>) -> Result<M, String> {
        let placement = self.placement(shape)?;
        if row.len() != placement.columns {
            return Err(format!(
                "the row has {} values where {} had {} columns: its columns changed",
                row.len(),
                self.table,
                placement.columns
            ));
        }
        M::from_raw_row(placement.positions.iter().map(|&i| row.value(i)))
    }
}

impl<M: Model + Clone> Subscription<M> {
    pub(crate) fn new(queue: Arc<hub::Queue>, decoder: Decoder, filter: Option<Filter<M>>) -> Self {
        queue.decodes(std::any::TypeId::of::<M>());
        Self {
            reader: hub::Reader::new(queue),
            decoder,
            filter,
            _model: PhantomData,
        }
    }

    /// The next change, waiting for it; `None` once the store and all its connections are
    /// gone, or after [`Observed::FeedLost`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use datastore::observe::{Observed, Op};
    ///
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// let notes = store.observe::<Note>()?;
    /// let writer = store.clone();
    /// std::thread::spawn(move || writer.save(Note::default()));
    /// let Some(Observed::Change(change)) = notes.recv() else { panic!("a change") };
    /// assert_eq!(change.op, Op::Insert);
    /// # Ok(())
    /// # }
    /// ```
    pub fn recv(&self) -> Option<Observed<Change<M>>> {
        self.reader.next(None, |next| self.accept(next))
    }

    /// The next change, waiting at most `timeout`; `None` if none came, or once the
    /// subscription has ended.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// let notes = store.observe::<Note>()?;
    /// assert!(notes.recv_timeout(Duration::from_millis(10)).is_none()); // nothing came
    /// store.save(Note::default())?;
    /// assert!(notes.recv_timeout(Duration::from_secs(5)).is_some());
    /// # Ok(())
    /// # }
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Observed<Change<M>>> {
        self.reader.next(Some(timeout), |next| self.accept(next))
    }

    /// The next change if one is waiting now.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use datastore::observe::Observed;
    ///
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// let notes = store.observe::<Note>()?;
    /// assert!(notes.try_recv().is_none());
    /// store.save(Note::default())?; // on SQLite, handed over as it commits
    /// assert!(matches!(notes.try_recv(), Some(Observed::Change(_))));
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_recv(&self) -> Option<Observed<Change<M>>> {
        self.recv_timeout(Duration::ZERO)
    }

    /// Decodes a change and applies the filter (to the row before or after the change).
    fn accept(&self, next: hub::Next<'_>) -> Option<Observed<Change<M>>> {
        let (batch, i) = match next {
            hub::Next::Missed(count) => return Some(Observed::Missed(count)),
            hub::Next::Lost(reason) => {
                return Some(Observed::FeedLost {
                    reason: reason.to_string(),
                });
            }
            hub::Next::Change(batch, i) => (batch, i),
        };
        let change = &batch.changes[i];
        let element = batch.shared.decode(batch.changes.len(), i, || {
            self.decoder.decode::<M>(&change.shape, &batch.row(change))
        });
        let element = match element {
            Ok(element) => element,
            // Named as the model names its table, as the reason does (on SQLite the change
            // names it as the schema holds it, which may differ in ASCII case).
            Err(reason) => {
                return Some(Observed::Undecodable {
                    table: self.decoder.table.clone(),
                    reason,
                });
            }
        };
        if let Some(filter) = &self.filter {
            let before_matches = change.op == Op::Update
                && batch
                    .old_row(change)
                    .and_then(|old| self.decoder.decode::<M>(&change.shape, &old).ok())
                    .is_some_and(|old| filter(&old));
            if !filter(&element) && !before_matches {
                return None;
            }
        }
        Some(Observed::Change(Change {
            model: M::NAME,
            op: change.op,
            element,
        }))
    }
}

#[cfg(feature = "async")]
impl<M: Model + Clone> Subscription<M> {
    /// The next change without waiting: `Pending` (the task woken when one comes), or
    /// `Ready(None)` once the subscription has ended.
    pub(crate) fn poll_recv(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Observed<Change<M>>>> {
        self.reader.poll_next(cx, |next| self.accept(next))
    }
}

impl<M: Model + Clone> Iterator for Subscription<M> {
    type Item = Observed<Change<M>>;

    /// Blocks until the next change; ends once the store is gone, or after
    /// [`Observed::FeedLost`].
    fn next(&mut self) -> Option<Observed<Change<M>>> {
        self.recv()
    }
}
