//! The one error type of the crate.
//!
//! Every fallible operation returns [`Result<T>`](Result). The variants separate what a caller
//! can act on: a missing row, a violated constraint, a busy database, a failed migration, a
//! connection that could not be made, and a delete that links still block.

use std::fmt;

use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::types::selected_column;

/// The result type of every fallible operation in this crate.
///
/// ```
/// # use datastore::prelude::*;
/// # use datastore_doc_models::{Note, notes};
/// fn rename(store: &Store, id: &Id, text: &str) -> datastore::Result<Note> {
///     let mut note = store.get::<Note>(id)?;
///     note.text = text.into();
///     store.save(note)
/// }
/// # let _ = rename;
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when talking to the store.
///
/// ```
/// use datastore::{ConstraintKind, Error};
///
/// fn describe(err: &Error) -> &'static str {
///     match err {
///         Error::NotFound { .. } => "no such row",
///         Error::Constraint(c) if c.kind == ConstraintKind::Unique => "duplicate",
///         Error::Busy { .. } => "try again later",
///         _ => "something else",
///     }
/// }
/// # let _ = describe;
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A row that was required does not exist.
    #[error("{table} '{key}' not found")]
    NotFound {
        /// The table that was searched.
        table: String,
        /// The primary key that was looked up.
        key: String,
    },

    /// A write violated a constraint of the schema; nothing of it was written.
    #[error(transparent)]
    Constraint(#[from] ConstraintViolation),

    /// A delete was refused because rows of a many-to-many join table still link to the row,
    /// or to rows its delete would cascade to. Nothing was deleted.
    ///
    /// Join rows are never deleted implicitly: unlink them first.
    #[error(
        "cannot delete {table} '{key}': {count} row{plural} in {join_table} still link{verb} to {what}; \
         unlink {them} first",
        plural = if *count == 1 { "" } else { "s" },
        verb = if *count == 1 { "s" } else { "" },
        them = if *count == 1 { "it" } else { "them" },
        what = match via {
            None => "it".to_owned(),
            Some(via) => format!("the {via} its delete would remove"),
        }
    )]
    DeleteRestricted {
        /// The table of the row that was to be deleted.
        table: String,
        /// The primary key of that row (for a delete of several rows, the first refused one in
        /// key order).
        key: String,
        /// The table whose rows refuse the delete: a join table (or any table whose foreign key
        /// restricts deletes).
        join_table: String,
        /// The table the refusing rows reference, when the delete would have reached it through
        /// `ON DELETE CASCADE` (a project's tasks, whose tags refuse); `None` when they
        /// reference the row itself.
        via: Option<String>,
        /// How many rows of `join_table` refuse.
        count: usize,
    },

    /// A delete was refused because its cascade goes deeper than the database follows: SQLite
    /// runs each level of `ON DELETE CASCADE` as a nested trigger, at most
    /// [`SQLITE_CASCADE_LIMIT`](crate::Error::SQLITE_CASCADE_LIMIT) deep. Nothing was deleted:
    /// delete the rows from the bottom up, a level at a time.
    #[error(
        "the delete cascades deeper than the {limit} levels the database follows; nothing was \
         deleted: delete the deepest rows first ({message})"
    )]
    CascadeTooDeep {
        /// How many levels the database follows.
        limit: u32,
        /// The database's own message.
        message: String,
    },

    /// The database stayed locked by another connection for longer than the busy timeout.
    #[error(
        "database is busy: {message}; another connection held the lock past the busy timeout, retry later"
    )]
    Busy {
        /// The database's own message (SQLite's `database is locked`, PostgreSQL's
        /// `canceling statement due to lock timeout`).
        message: String,
    },

    /// The transaction lost a conflict with a concurrent one: PostgreSQL's serialization
    /// failure (SQLSTATE 40001) or deadlock (40P01). Nothing it wrote will remain:
    /// `Store::transaction` has rolled it back (in a transaction of your own, roll back); running
    /// the whole transaction again is safe and usually succeeds.
    #[error("transaction conflict: {message}; roll back and run the transaction again")]
    Conflict {
        /// The server's message.
        message: String,
    },

    /// A write through the store inside a `store.transaction` closure on the same thread: it
    /// would run on another connection, outside the transaction (and on SQLite wait for the
    /// transaction's own write lock). Nothing was written; write through the closure's
    /// connection instead.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// store.transaction(|tx| {
    ///     let outside = store.save(Note::default()); // through the store: refused
    ///     assert!(matches!(outside, Err(datastore::Error::WriteOutsideTransaction)));
    ///     tx.save(Note::default()) // through the transaction's connection
    /// })?;
    /// assert_eq!(store.count::<Note>()?, 1);
    /// # Ok(())
    /// # }
    /// ```
    #[error(
        "a write through the store inside its transaction would run on another connection, \
         outside the transaction; nothing was written: write through the closure's connection"
    )]
    WriteOutsideTransaction,

    /// The database is full: SQLite's file reached its size limit (`PRAGMA max_page_count`) or
    /// its disk is full, or PostgreSQL's disk is (SQLSTATE 53100). The statement wrote nothing.
    /// Inside a transaction, SQLite may have rolled the whole transaction back: then every later
    /// statement in it fails with [`Error::TransactionAborted`], and `Store::transaction`
    /// returns this error.
    #[error(
        "the database or its disk is full ({message}); nothing was written: free space or raise \
         the size limit, then run the write again"
    )]
    StorageFull {
        /// The database's message.
        message: String,
    },

    /// The transaction is over: the database rolled it back because a statement in it failed,
    /// and nothing it wrote remains. SQLite does so by itself on some errors (a full database
    /// or disk, an I/O error, out of memory), PostgreSQL after any failed statement (SQLSTATE
    /// 25P02). Every later statement in the transaction fails with this error until it is
    /// rolled back; `Store::transaction` does that and returns the cause, even when the
    /// closure went on after the error and returned `Ok`.
    #[error(
        "the transaction was rolled back by the database, so nothing it wrote remains and this \
         statement was refused: end the transaction and run it again{}",
        cause.as_ref().map(|c| format!(" (it was rolled back after: {c})")).unwrap_or_default()
    )]
    TransactionAborted {
        /// The error of the statement that made the database roll the transaction back, when
        /// it is known (on SQLite, once that error was converted to this type; on PostgreSQL,
        /// not).
        #[source]
        cause: Option<Box<Error>>,
    },

    /// Migrations could not bring the database to the models: running or generating them
    /// failed (the failing migration left nothing behind), the models make no schema
    /// ([`Schema::validate`](crate::Schema::validate)), or a table lacks a model's column
    /// (found as observe starts: its migrations did not run). What failed is the data of
    /// `failure`.
    ///
    /// ```
    /// use datastore::migrate::MigrationFailure;
    /// use datastore::Error;
    ///
    /// fn explain(err: &Error) -> String {
    ///     match err {
    ///         Error::Migration { failure: MigrationFailure::Drift(drift), .. } => {
    ///             format!("generate the missing migration:\n{drift}")
    ///         }
    ///         Error::Migration { migration: Some(name), failure } => format!("{name}: {failure}"),
    ///         other => other.to_string(),
    ///     }
    /// }
    /// # let _ = explain;
    /// ```
    #[error(
        "migration{} failed: {failure}",
        migration.as_ref().map(|m| format!(" {m}")).unwrap_or_default()
    )]
    Migration {
        /// The migration concerned (`2026-01-01-000000_init`), when one is.
        migration: Option<String>,
        /// What failed.
        failure: crate::migrate::MigrationFailure,
    },

    /// Generating a migration stopped: it may lose data, each change listed (see
    /// [`SchemaChange::losses`](crate::migrate::SchemaChange::losses)), and losing it was not allowed
    /// ([`Migrations::allow_lossy`](crate::migrate::Migrations::allow_lossy), or the command
    /// line's `--allow-lossy`). Nothing was written.
    #[error(
        "the migration may lose data, so it was not written:\n  - {}\nwrite it anyway with \
         Migrations::allow_lossy(true) (`migrate generate --allow-lossy`), or declare renames \
         with #[model(renamed_from = \"..\")] / #[column(renamed_from = \"..\")]",
        listed(changes.iter().flat_map(crate::migrate::SchemaChange::losses))
    )]
    LossyMigration {
        /// The changes that may lose data, in the order the migration would make them; each
        /// says what it may lose ([`SchemaChange::losses`](crate::migrate::SchemaChange::losses)).
        changes: Vec<crate::migrate::SchemaChange>,
    },

    /// Generating a migration stopped: it adds a `NOT NULL` column, or makes one `NOT NULL`,
    /// in a table that may hold rows, and the model declares no value for them. Nothing was
    /// written; the store never invents values.
    #[error(
        "the migration would invent values, so it was not written:\n  - {}\ndeclare what the \
         rows take with #[column(default = ..)], or make the field an Option",
        listed(columns)
    )]
    MissingDefault {
        /// Each column without a default.
        columns: Vec<crate::migrate::UnfilledColumn>,
    },

    /// A migration that makes columns unique (a join table's pair of foreign keys, a field
    /// declared `#[unique]`, a unique column it adds with a default, which every row takes)
    /// met rows that share values in them. It stopped and changed
    /// nothing; the store removes no rows by itself. Decide which rows go, delete them, and
    /// open the store again.
    #[error(
        "migration {migration} cannot make ({columns}) of {table} unique, rows share values \
         there: {listing}; nothing was changed: delete the rows that should go, then open the \
         store again",
        columns = columns.join(", "),
        listing = Duplicate::listing(duplicates, *total),
    )]
    Duplicates {
        /// The migration that stopped.
        migration: String,
        /// The table holding the duplicates.
        table: String,
        /// The columns the migration makes unique together.
        columns: Vec<String>,
        /// The sets of rows sharing values, the most numerous first, at most
        /// [`Duplicate::LISTED`] of them.
        duplicates: Vec<Duplicate>,
        /// How many sets of rows share values, listed or not.
        total: usize,
    },

    /// A connection could not be opened or taken from the pool.
    ///
    /// Neither field shows a password: the URL's is replaced by `***`, and so is any copy of
    /// it in the driver's message.
    ///
    /// ```
    /// use datastore::{ConnectionFailure, Error, Store};
    ///
    /// let err = Store::builder("postgres://app:secret@127.0.0.1:1/blog").open().unwrap_err();
    /// let Error::Connection { url, source } = &err else { panic!("{err}") };
    /// assert_eq!(url, "postgres://app:***@127.0.0.1:1/blog");
    /// assert!(matches!(source, ConnectionFailure::Driver(_)));
    /// assert!(std::error::Error::source(&err).is_some());
    /// ```
    #[error("cannot connect to {url}: {source}")]
    Connection {
        /// The database the store was opened on, with any password replaced by `***`.
        url: String,
        /// What went wrong.
        #[source]
        source: ConnectionFailure,
    },

    /// A live query's feed of changes was lost: on PostgreSQL, the store's listener lost its
    /// connection (a server restart, an administrator ending it). Changes committed since may
    /// have been missed, and the subscription delivers nothing more: read the data again and
    /// subscribe again (a new subscription starts a new listener).
    #[error(
        "the change feed was lost ({reason}); changes committed since may have been missed: \
         read the data again and subscribe again"
    )]
    FeedLost {
        /// What happened to the feed.
        reason: String,
    },

    /// On PostgreSQL, a table was observed for the first time inside a `store.transaction`
    /// (on the same thread) that had already written it: observing installs the table's
    /// triggers, which waits for every transaction that wrote the table, the caller's own
    /// included, so it could only fail after the lock timeout. With the logical decoding
    /// feed, setting a table up (`REPLICA IDENTITY FULL`) waits for every transaction that
    /// so much as read it. Nothing was installed; the transaction goes on. Observe the table
    /// before the transaction writes it, or reads it with the logical decoding feed (or
    /// outside the transaction).
    #[error(
        "cannot start observing {table} inside a transaction that has already used it: \
         setting it up for observe would wait for that very transaction; observe the table \
         before the transaction writes it (with the logical decoding feed, before it reads it), \
         or outside the transaction"
    )]
    ObserveAfterWrite {
        /// The table the transaction wrote.
        table: String,
    },

    /// On PostgreSQL, observe's change table or a trigger function belongs to a role that
    /// neither is the store's nor owns the observed tables (a role with `CREATE` on the schema
    /// can make them first), or they do not all belong to one role. Such a role could read
    /// every recorded change, so observe refuses to use them; nothing was installed. Drop the
    /// object; a store of a role that owns the observed tables then creates it again.
    #[error(
        "observe refuses {object}: it belongs to role {owner}, which is not the store's role and \
         does not own the observed tables (or not all of observe's objects are that role's), so \
         it could read every recorded change; drop it and subscribe again"
    )]
    ChangeFeedOwner {
        /// What was refused (`table schema.datastore_change_payloads`, ..).
        object: String,
        /// The role that owns it.
        owner: String,
    },

    /// A value could not be converted to or from its column: a stored value its field's type
    /// cannot read (a key that is not a UUID, text in an integer column), written behind the
    /// store's back. Nothing was written.
    #[error("cannot convert {}: {message}", column.as_deref().map_or_else(|| "a value".to_owned(), |c| format!("column {c}")))]
    Conversion {
        /// The column, where the value was read from one.
        column: Option<String>,
        /// What was wrong with the value.
        message: String,
    },

    /// A NaN ("not a number") in an `f32` or `f64` field, which SQLite cannot store: it would
    /// keep `NULL` instead (and refuse it in a non-null column). Nothing was written.
    /// PostgreSQL stores NaN as given.
    #[error(
        "SQLite cannot store NaN in a floating-point column (it would store NULL); nothing was \
         written: store a number, or None in an Option field"
    )]
    NanUnsupported,

    /// A [`Timestamp`](crate::Timestamp) outside the years 0 to 9999, bound on SQLite, or
    /// before PostgreSQL's earliest instant (4714-11-24 BC), bound on PostgreSQL. SQLite
    /// stores a timestamp as RFC 3339 text, which compares and sorts in time order only with
    /// four-digit years: such a value would be stored, compared and ordered wrongly.
    /// PostgreSQL holds the years past 9999 and before 0 as given, down to its earliest. Nothing
    /// was run.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// #[derive(Model, Debug, Clone, PartialEq, Default)]
    /// pub struct Event {
    ///     #[primary_key]
    ///     pub id: Id,
    ///     pub at: Timestamp,
    /// }
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Event>()).open()?;
    /// let year_10000 = chrono::NaiveDate::from_ymd_opt(10_000, 1, 1).unwrap();
    /// let far = Timestamp::from(year_10000.and_hms_opt(0, 0, 0).unwrap().and_utc());
    /// let err = store.save(Event { at: far, ..Event::default() }).unwrap_err();
    /// assert!(matches!(err, datastore::Error::TimestampOutOfRange { value } if value == far));
    /// assert_eq!(store.count::<Event>()?, 0);
    /// # Ok(())
    /// # }
    /// ```
    #[error(
        "the timestamp {value} is outside what the database stores; nothing was run: SQLite \
         keeps the years 0000 to 9999 (as text, which sorts in time order only with four-digit \
         years), PostgreSQL instants from 4714-11-24 BC (-4713-11-24T00:00:00Z) on"
    )]
    TimestampOutOfRange {
        /// The timestamp refused.
        value: crate::Timestamp,
    },

    /// A JSON value (a `serde_json::Value` or `Json<T>` field) nests arrays and objects more
    /// than [`MAX_JSON_DEPTH`](crate::MAX_JSON_DEPTH) levels deep, deeper than every backend
    /// reads back. Nothing was written.
    #[error(
        "a JSON value is nested more than {limit} levels of arrays and objects deep \
         (MAX_JSON_DEPTH); nothing was written: store it less deeply nested"
    )]
    JsonTooDeep {
        /// [`MAX_JSON_DEPTH`](crate::MAX_JSON_DEPTH).
        limit: usize,
    },

    /// A `Json<T>` field holds a NaN or an infinite number, which JSON cannot represent
    /// (serde_json would write `null`, which then reads back as something else or not at all).
    /// Nothing was written. (A `serde_json::Value` cannot hold one.)
    #[error(
        "a JSON value holds a NaN or an infinite number, which JSON cannot represent (it would \
         be written as null); nothing was written: store a finite number, or None"
    )]
    JsonNonFinite,

    /// A stored value does not fit the field it is read into: an integer wider than an `i16`
    /// or `i32` field, a double beyond `f32`'s range, or text in a number column, written by
    /// another program or an older schema. It is refused rather than truncated; nothing is
    /// read.
    #[error(
        "the stored value {value}{} does not fit a field of type {field_type}; nothing was read: \
         widen the field or correct the row",
        column.as_ref().map(|c| format!(" of column {c}")).unwrap_or_default()
    )]
    OutOfRange {
        /// The stored value, as text.
        value: String,
        /// The Rust type of the field.
        field_type: &'static str,
        /// The column, when Diesel names it (it does for queries built with `query`).
        column: Option<String>,
    },

    /// An [`AsyncTransaction`](crate::async_store::AsyncTransaction) handle was used after its
    /// transaction ended (committed, rolled back, or its future dropped): nothing was run.
    /// Use the handle only inside the transaction's body.
    #[error(
        "the async transaction has already ended (committed, rolled back or dropped); \
         run statements through its handle only inside its body"
    )]
    TransactionEnded,

    /// A statement was sent through an
    /// [`AsyncTransaction`](crate::async_store::AsyncTransaction) handle while a savepoint
    /// opened inside that handle's level was still open (the outer handle used inside a
    /// savepoint's body, or by a task running beside it): it would have run inside the savepoint
    /// and been undone with it. Nothing was run. Inside a savepoint's body use the handle it
    /// is given; elsewhere, await the savepoint first.
    #[error(
        "a savepoint inside this async transaction is open: use the savepoint's own handle in \
         its body, or await the savepoint before using the outer one"
    )]
    SavepointOpen,

    /// The tokio runtime shut down before an async store call could run on its blocking
    /// pool: nothing was run.
    #[error("the tokio runtime is shutting down: the store call was not run")]
    RuntimeShutdown,

    /// On PostgreSQL with the logical decoding feed, the store's first subscription was made
    /// inside a `store.transaction` (on the same thread) that had already written: starting
    /// the feed waits for every transaction writing at that moment, the caller's own included,
    /// so it could only fail after the lock timeout. Nothing was started; the transaction goes
    /// on. Subscribe before the transaction's first write, or outside it.
    #[error(
        "the first subscription of a store on PostgreSQL starts its change feed, which waits for \
         every transaction that has written to end, this one included: subscribe before the \
         transaction's first write, or outside it"
    )]
    FeedStartAfterWrite,

    /// A query the store runs on its own behalf (reading the catalog) was answered with no row
    /// where the database always returns one, or with a value of a form it never returns: a
    /// server that does not behave as PostgreSQL or SQLite does. Nothing was changed.
    #[error(
        "the database answered {query} with no row or a malformed value, unlike PostgreSQL and SQLite"
    )]
    UnexpectedAnswer {
        /// The query (`current_schema()`, `pg_current_snapshot()`..).
        query: &'static str,
    },

    /// The store could not start a thread it needs (observe's PostgreSQL listener): the
    /// system refused one. Nothing was started.
    #[error("cannot start the {name} thread: {source}")]
    Thread {
        /// The thread's purpose.
        name: &'static str,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },

    /// The build, or the server, lacks a capability the call needs, and the message says how
    /// to turn it on (SQLite's pre-update hook, PostgreSQL's `wal_level = logical`); or observe
    /// cannot follow a table the subscription would observe (a partitioned PostgreSQL table, or
    /// a partition).
    #[error("unsupported: {0}")]
    Unsupported(String),

    /// Reading or writing files (migrations) failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Any other error reported by the database or by Diesel.
    #[error(transparent)]
    Database(DieselError),
}

/// Why a connection could not be made or taken: the cause of [`Error::Connection`]. Its
/// messages never show a password: each is the driver's or the pool's message with the URL's
/// password taken out, kept as text rather than as the driver's error, whose own message and
/// sources may show it.
///
/// ```
/// use datastore::{ConnectionFailure, Error, Store};
///
/// // A PostgreSQL schema means nothing to SQLite: refused before anything is opened.
/// let err = Store::builder(":memory:").postgres_schema("tenant").open().unwrap_err();
/// assert!(matches!(
///     err,
///     Error::Connection { source: ConnectionFailure::Location(_), .. }
/// ));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionFailure {
    /// The driver could not open the connection: the server refused it or cannot be reached,
    /// the file cannot be opened, the URL is malformed. The driver's message.
    #[error("{0}")]
    Driver(String),
    /// No connection of the pool came free within its connection timeout
    /// ([`StoreBuilder::connection_timeout`](crate::StoreBuilder::connection_timeout)), and
    /// none could be opened. The pool's message.
    #[error("{0}")]
    Pool(String),
    /// What the store was asked to open cannot be opened as given: a path that is not UTF-8,
    /// a PostgreSQL schema for a SQLite database.
    #[error("{0}")]
    Location(String),
    /// The connection opened, but the store could not set it up as it sets up every
    /// connection (foreign keys on, the busy timeout, WAL for a file, the PostgreSQL session's
    /// settings): for example a file opened read-only (`mode=ro`, or a read-only medium) that
    /// is not in WAL mode yet, which switching needs a write for; a PostgreSQL role whose
    /// messages are in another language than English and that may not set `lc_messages`
    /// (the store tells some errors by their English text). The database's message, or the
    /// store's.
    #[error("{0}")]
    Setup(String),
    /// The server ended a connection in use: in a call on the [`Store`](crate::Store) (in a
    /// [`Store::transaction`], which then wrote nothing, the server rolling it back, unless
    /// the connection was lost during its `COMMIT`, whose outcome the server did not get to
    /// report: read before writing again), or observe's feed before the subscription could
    /// start.
    /// The server restarted, an administrator ended the session, the network failed. The pool
    /// replaces the connection: the next call, or subscribing again, opens a new one. (A
    /// statement run on a connection taken with [`Store::conn`] reports the driver's error,
    /// [`Error::Database`], as it does every other.)
    ///
    /// [`Store::transaction`]: crate::Store::transaction
    /// [`Store::conn`]: crate::Store::conn
    #[error("{0}")]
    Lost(String),
}

/// Rows sharing values in columns a migration makes unique: see [`Error::Duplicates`].
///
/// ```
/// use datastore::{Duplicate, Error};
///
/// fn report(err: &Error) {
///     if let Error::Duplicates { table, columns, duplicates, .. } = err {
///         for Duplicate { values, rows, .. } in duplicates {
///             eprintln!("{rows} rows of {table} hold ({}) = ({})", columns.join(", "), values.join(", "));
///         }
///     }
/// }
/// # let _ = report;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Duplicate {
    /// The values the rows share, one per column, as the database renders them in JSON
    /// (text unquoted).
    pub values: Vec<String>,
    /// How many rows share them.
    pub rows: usize,
}

impl Duplicate {
    /// How many sets of duplicates [`Error::Duplicates`] lists at most.
    ///
    /// ```
    /// use datastore::{Duplicate, Error};
    ///
    /// /// Whether the error lists every set of duplicates, or only the first ones.
    /// fn lists_all(err: &Error) -> bool {
    ///     match err {
    ///         Error::Duplicates { duplicates, .. } => duplicates.len() < Duplicate::LISTED,
    ///         _ => true,
    ///     }
    /// }
    /// assert_eq!(Duplicate::LISTED, 100);
    /// # let _ = lists_all;
    /// ```
    pub const LISTED: usize = 100;

    fn listing(duplicates: &[Duplicate], total: usize) -> String {
        let mut listing = duplicates
            .iter()
            .take(10)
            .map(|d| format!("({}) in {} rows", d.values.join(", "), d.rows))
            .collect::<Vec<_>>()
            .join("; ");
        if total > 10 {
            listing.push_str(&format!("; and {} more sets of rows", total - 10));
        }
        listing
    }
}

/// Which kind of constraint a write violated: see [`ConstraintViolation`].
///
/// ```
/// use datastore::ConstraintKind;
///
/// assert_eq!(ConstraintKind::ForeignKey.to_string(), "foreign key");
/// assert_ne!(ConstraintKind::Unique, ConstraintKind::NotNull);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConstraintKind {
    /// A `UNIQUE` constraint or primary key.
    Unique,
    /// A `FOREIGN KEY`: the referenced row does not exist, or a row still references this one.
    ForeignKey,
    /// A `CHECK` constraint, such as the set of values an enum column allows.
    Check,
    /// A `NOT NULL` constraint.
    NotNull,
}

impl fmt::Display for ConstraintKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unique => "unique",
            Self::ForeignKey => "foreign key",
            Self::Check => "check",
            Self::NotNull => "not null",
        })
    }
}

/// A write that the database refused because it broke a constraint.
///
/// `table` and `column` are filled alike on both backends wherever the database names them or
/// the store knows them: both for unique and not-null violations; both for a `belongs_to`
/// whose parent does not exist, written by `save`, `insert` or `insert_all` (the store looks
/// the parents up, and the message names the missing one); for a column's `CHECK` (an
/// enum's) the column, and on PostgreSQL the table too (SQLite's message names no table).
///
/// ```
/// use datastore::prelude::*;
/// use datastore::ConstraintKind;
///
/// #[derive(Model, Debug, Clone, PartialEq, Default)]
/// pub struct Account {
///     #[primary_key]
///     pub id: Id,
///     #[unique]
///     pub email: String,
/// }
///
/// # fn main() -> datastore::Result<()> {
/// let store = Store::builder(":memory:").schema(Schema::new().model::<Account>()).open()?;
/// store.save(Account { email: "a@example.com".into(), ..Account::default() })?;
/// let err = store.save(Account { email: "a@example.com".into(), ..Account::default() }).unwrap_err();
/// let violation = err.constraint().unwrap();
/// assert_eq!(violation.kind, ConstraintKind::Unique);
/// assert_eq!(violation.column.as_deref(), Some("email"));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} constraint violated{}: {message}", self.location())]
pub struct ConstraintViolation {
    /// The kind of constraint.
    pub kind: ConstraintKind,
    /// The table the constraint belongs to, when known.
    pub table: Option<String>,
    /// The column the constraint is on, when known.
    pub column: Option<String>,
    /// The database's own message.
    pub message: String,
}

impl ConstraintViolation {
    fn location(&self) -> String {
        match (&self.table, &self.column) {
            (Some(t), Some(c)) => format!(" on {t}.{c}"),
            (Some(t), None) => format!(" on {t}"),
            _ => String::new(),
        }
    }

    /// Builds a violation from SQLite's message, which reads
    /// `UNIQUE constraint failed: posts.title`, or `CHECK constraint failed: status` for a
    /// column's own `CHECK` (every `CHECK` the store declares is one: SQLite names the column,
    /// not the table), or the name or expression of another `CHECK`.
    fn from_message(kind: ConstraintKind, message: &str) -> Self {
        let (table, column) = match message.split_once("constraint failed: ") {
            Some((_, name)) if kind == ConstraintKind::Check => {
                let identifier = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || !b.is_ascii());
                (None, identifier.then(|| name.to_owned()))
            }
            Some((_, names))
                if matches!(kind, ConstraintKind::Unique | ConstraintKind::NotNull) =>
            {
                // Several columns are listed comma-separated; keep the first table and all columns.
                let mut table = None;
                let mut columns = Vec::new();
                for name in names.split(", ") {
                    if let Some((t, c)) = name.split_once('.') {
                        table.get_or_insert_with(|| t.to_owned());
                        columns.push(c.to_owned());
                    }
                }
                (table, (!columns.is_empty()).then(|| columns.join(", ")))
            }
            _ => (None, None),
        };
        Self {
            kind,
            table,
            column,
            message: message.to_owned(),
        }
    }
}

impl Error {
    /// [`Error::FeedLost`] for the feed's reason (a live result's, once its feed is lost).
    pub(crate) fn feed_lost(reason: &str) -> Self {
        Error::FeedLost {
            reason: reason.to_owned(),
        }
    }

    /// How many levels of `ON DELETE CASCADE` SQLite follows (its trigger depth limit,
    /// `SQLITE_MAX_TRIGGER_DEPTH`): see [`Error::CascadeTooDeep`].
    ///
    /// ```
    /// use datastore::Error;
    ///
    /// /// Whether a chain of replies this long can still be deleted with its root on SQLite.
    /// fn deletable_on_sqlite(depth: u32) -> bool {
    ///     depth <= Error::SQLITE_CASCADE_LIMIT
    /// }
    /// assert!(deletable_on_sqlite(10));
    /// assert!(!deletable_on_sqlite(5000));
    /// ```
    pub const SQLITE_CASCADE_LIMIT: u32 = 1000;

    /// Whether this is a write the connection refused as read-only: SQLite's `query_only` (a
    /// connection lent inside a store transaction) or a read-only database, PostgreSQL's
    /// read-only transaction.
    pub(crate) fn is_read_only_refusal(&self) -> bool {
        match self {
            Error::WriteOutsideTransaction => true,
            Error::Database(DieselError::DatabaseError(kind, info)) => {
                is_read_only_refusal(*kind, info.message())
            }
            _ => false,
        }
    }

    /// The constraint violation behind this error, if it is one.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # #[derive(Model, Debug, Clone, PartialEq, Default)]
    /// # pub struct User { #[primary_key] pub id: Id, #[unique] pub name: String }
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<User>()).open()?;
    /// use datastore::ConstraintKind;
    ///
    /// store.save(User { name: "ada".into(), ..User::default() })?;
    /// let err = store.save(User { name: "ada".into(), ..User::default() }).unwrap_err();
    /// let violation = err.constraint().expect("a constraint violation");
    /// assert_eq!(violation.kind, ConstraintKind::Unique);
    /// assert_eq!(violation.column.as_deref(), Some("name"));
    /// assert!(datastore::Error::WriteOutsideTransaction.constraint().is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub fn constraint(&self) -> Option<&ConstraintViolation> {
        match self {
            Self::Constraint(c) => Some(c),
            _ => None,
        }
    }

    /// Whether this error reports a busy or locked database (worth retrying later).
    ///
    /// ```
    /// use datastore::Error;
    ///
    /// let locked = Error::Busy { message: "database is locked".into() };
    /// assert!(locked.is_busy());
    /// assert!(!Error::WriteOutsideTransaction.is_busy());
    /// ```
    pub fn is_busy(&self) -> bool {
        matches!(self, Self::Busy { .. })
    }

    /// Whether running the same work again may succeed: [`Error::Busy`] and
    /// [`Error::Conflict`], after which nothing of the failed attempt remains.
    ///
    /// ```
    /// use datastore::Error;
    ///
    /// /// Runs `work`, again while it fails with an error worth retrying (at most 3 times).
    /// fn with_retries<T>(mut work: impl FnMut() -> datastore::Result<T>) -> datastore::Result<T> {
    ///     let mut attempts = 0;
    ///     loop {
    ///         match work() {
    ///             Err(e) if e.is_retryable() && attempts < 2 => attempts += 1,
    ///             result => return result,
    ///         }
    ///     }
    /// }
    ///
    /// let mut calls = 0;
    /// let result = with_retries(|| {
    ///     calls += 1;
    ///     if calls == 1 { Err(Error::Busy { message: "database is locked".into() }) } else { Ok(calls) }
    /// });
    /// assert_eq!(result.unwrap(), 2);
    /// ```
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Busy { .. } | Self::Conflict { .. })
    }

    /// [`Error::Connection`] for the database at `url`, showing neither its password nor a
    /// message that repeats it: `failure` is the kind of failure (`ConnectionFailure::Driver`..),
    /// given the message.
    pub(crate) fn connection(
        url: &str,
        failure: fn(String) -> ConnectionFailure,
        message: impl fmt::Display,
    ) -> Self {
        Self::Connection {
            url: crate::store::url::redact(url),
            source: failure(crate::store::url::redact_message(url, &message.to_string())),
        }
    }

    /// This error, or [`Error::Connection`] naming `url` where it says the server ended the
    /// connection.
    pub(crate) fn or_connection_lost(self, url: &str) -> Self {
        match self {
            Self::Database(DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                info,
            )) => Self::connection(url, ConnectionFailure::Lost, info.message().trim_end()),
            other => other,
        }
    }

    /// [`Error::LossyMigration`] for a migration of `changes`: those of them that may lose data.
    pub(crate) fn lossy_migration(changes: &[crate::migrate::SchemaChange]) -> Self {
        Self::LossyMigration {
            changes: changes
                .iter()
                .filter(|change| !change.losses().is_empty())
                .cloned()
                .collect(),
        }
    }

    /// [`Error::Migration`] of `migration` (if one is concerned) for `failure`.
    pub(crate) fn migration(
        migration: Option<&dyn fmt::Display>,
        failure: crate::migrate::MigrationFailure,
    ) -> Self {
        Self::Migration {
            migration: migration.map(ToString::to_string),
            failure,
        }
    }

    /// Why a transaction was lost, from the message of the error that lost it: the typed
    /// error of that message ([`Error::StorageFull`] for a full database), or
    /// [`Error::TransactionAborted`] when it is not known.
    pub(crate) fn transaction_lost(cause: Option<crate::store::lost::Cause>) -> Self {
        match cause {
            Some(cause) => database_error(cause.kind, Box::new(cause)),
            None => Self::TransactionAborted { cause: None },
        }
    }

    /// The row of a query the database always answers with one (a `SELECT` of expressions,
    /// without `FROM`): a server that answers with none gets [`Error::UnexpectedAnswer`],
    /// not a panic.
    pub(crate) fn one_row<T>(rows: Vec<T>, query: &'static str) -> Result<T> {
        rows.into_iter()
            .next()
            .ok_or(Error::UnexpectedAnswer { query })
    }

    pub(crate) fn not_found(table: &str, key: impl fmt::Display) -> Self {
        Self::NotFound {
            table: table.to_owned(),
            key: key.to_string(),
        }
    }
}

impl From<DieselError> for Error {
    fn from(err: DieselError) -> Self {
        match err {
            DieselError::DatabaseError(kind, info) => {
                if let Some(lost) = crate::store::lost::refused_or_cause(kind, info.as_ref()) {
                    // A statement after SQLite rolled its transaction back by itself.
                    return Self::TransactionAborted {
                        cause: lost
                            .cause()
                            .map(|cause| Box::new(Self::transaction_lost(Some(cause)))),
                    };
                }
                database_error(kind, info)
            }
            DieselError::DeserializationError(e) | DieselError::SerializationError(e) => {
                refused_value(&*e).unwrap_or_else(|| conversion(&*e))
            }
            DieselError::NotInTransaction => match crate::store::lost::unended_here() {
                // Diesel forgot a transaction SQLite had rolled back by itself.
                Some(lost) => Self::TransactionAborted {
                    cause: lost
                        .cause()
                        .map(|cause| Box::new(Self::transaction_lost(Some(cause)))),
                },
                None => Self::Database(DieselError::NotInTransaction),
            },
            other => Self::Database(other),
        }
    }
}

/// `items`, one a line (after the first's `  - `).
fn listed(items: impl IntoIterator<Item = impl fmt::Display>) -> String {
    items
        .into_iter()
        .map(|item| item.to_string())
        .collect::<Vec<_>>()
        .join("\n  - ")
}

/// The typed error of an error the database reported.
fn database_error(
    kind: DatabaseErrorKind,
    info: Box<dyn diesel::result::DatabaseErrorInformation + Send + Sync>,
) -> Error {
    let message = info.message().to_owned();
    let constraint = match kind {
        DatabaseErrorKind::UniqueViolation => Some(ConstraintKind::Unique),
        DatabaseErrorKind::ForeignKeyViolation => Some(ConstraintKind::ForeignKey),
        DatabaseErrorKind::CheckViolation => Some(ConstraintKind::Check),
        DatabaseErrorKind::NotNullViolation => Some(ConstraintKind::NotNull),
        // SQLite reports an `ON DELETE RESTRICT` violation with a generic code.
        _ if message.starts_with("FOREIGN KEY constraint failed") => {
            Some(ConstraintKind::ForeignKey)
        }
        _ => None,
    };
    if let Some(kind) = constraint {
        let mut violation = ConstraintViolation::from_message(kind, &message);
        // Servers that report the names structurally (PostgreSQL) fill them here.
        if violation.table.is_none() {
            violation.table = info.table_name().map(str::to_owned);
        }
        if violation.column.is_none() {
            violation.column = info
                .column_name()
                .or_else(|| info.details().and_then(key_columns))
                .or_else(|| checked_column(violation.table.as_deref()?, info.constraint_name()?))
                .map(str::to_owned);
        }
        return Error::Constraint(violation);
    }
    if is_busy_message(&message) {
        return Error::Busy { message };
    }
    if message.starts_with("too many levels of trigger recursion") {
        return Error::CascadeTooDeep {
            limit: Error::SQLITE_CASCADE_LIMIT,
            message,
        };
    }
    if is_read_only_refusal(kind, &message) && crate::store::transaction::refused_as_lent() {
        // A connection the store lent inside its transaction.
        return Error::WriteOutsideTransaction;
    }
    if matches!(kind, DatabaseErrorKind::SerializationFailure) || is_conflict_message(&message) {
        return Error::Conflict { message };
    }
    if is_full_message(&message) {
        return Error::StorageFull { message };
    }
    if message.starts_with("current transaction is aborted") {
        // PostgreSQL's 25P02: a statement failed earlier in the transaction.
        return Error::TransactionAborted { cause: None };
    }
    Error::Database(DieselError::DatabaseError(kind, info))
}

/// The columns of a unique or foreign key, which PostgreSQL names only in its detail
/// (`Key (email)=(a@example.com) already exists.`, `Key (post_id)=(..) is not present in table
/// "posts".`): `email`, or `a, b` for several, as SQLite's messages give them.
/// The column of a `CHECK` PostgreSQL named by default: `<table>_<column>_check`, with a
/// number after it where the name was taken (every `CHECK` the store declares is a column's).
fn checked_column<'a>(table: &str, constraint: &'a str) -> Option<&'a str> {
    let rest = constraint.strip_prefix(table)?.strip_prefix('_')?;
    let column = rest.trim_end_matches(|c: char| c.is_ascii_digit());
    let column = column.strip_suffix("_check")?;
    (!column.is_empty()).then_some(column)
}

fn key_columns(details: &str) -> Option<&str> {
    let rest = details.strip_prefix("Key (")?;
    Some(&rest[..rest.find(")=(")?])
}

/// SQLite's `SQLITE_FULL` (the file reached `max_page_count`, or the disk is full), and
/// PostgreSQL's disk full (53100), whose message ends with the system's.
fn is_full_message(message: &str) -> bool {
    message.starts_with("database or disk is full") || message.contains("No space left on device")
}

/// A value refused by a field type's `ToSql` or `FromSql`, carried through Diesel's error to
/// become its typed [`Error`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum ValueError {
    #[error("NaN cannot be stored on SQLite")]
    NanUnsupported,
    #[error("{0} is outside the instants the database stores")]
    TimestampOutOfRange(crate::Timestamp),
    #[error("a JSON value is nested too deeply")]
    JsonTooDeep,
    #[error("a JSON value holds a non-finite number")]
    JsonNonFinite,
    #[error("{value} does not fit {field_type}")]
    OutOfRange {
        value: String,
        field_type: &'static str,
    },
}

/// The typed error of a value a field type refused, found in Diesel's error (which wraps it
/// with the column's name when it knows it).
/// [`Error::Conversion`] for a value Diesel could not convert: the column Diesel names, and the
/// innermost cause, which says what was wrong (Diesel's own message names only the field).
fn conversion(error: &(dyn std::error::Error + 'static)) -> Error {
    let mut column = None;
    let mut innermost = error;
    loop {
        if let Some(field) = innermost.downcast_ref::<diesel::result::DeserializeFieldError>() {
            column = field
                .field_name
                .as_deref()
                .map(selected_column)
                .map(str::to_owned);
        }
        match innermost.source() {
            Some(source) => innermost = source,
            None => break,
        }
    }
    Error::Conversion {
        column,
        message: innermost.to_string(),
    }
}

fn refused_value(error: &(dyn std::error::Error + 'static)) -> Option<Error> {
    let mut column = None;
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(field) = error.downcast_ref::<diesel::result::DeserializeFieldError>() {
            column = field
                .field_name
                .as_deref()
                .map(selected_column)
                .map(str::to_owned);
        }
        match error.downcast_ref::<ValueError>() {
            Some(ValueError::NanUnsupported) => return Some(Error::NanUnsupported),
            Some(&ValueError::TimestampOutOfRange(value)) => {
                return Some(Error::TimestampOutOfRange { value });
            }
            Some(ValueError::JsonNonFinite) => return Some(Error::JsonNonFinite),
            Some(ValueError::JsonTooDeep) => {
                return Some(Error::JsonTooDeep {
                    limit: crate::MAX_JSON_DEPTH,
                });
            }
            Some(ValueError::OutOfRange { value, field_type }) => {
                return Some(Error::OutOfRange {
                    value: value.clone(),
                    field_type,
                    column,
                });
            }
            None => current = error.source(),
        }
    }
    None
}

/// SQLite reports `SQLITE_BUSY` and `SQLITE_LOCKED` only through their messages in Diesel 2.3,
/// and PostgreSQL's `lock_not_available` (55P03, from `lock_timeout`) has no kind of its own.
fn is_busy_message(message: &str) -> bool {
    message.starts_with("database is locked")
        || message.starts_with("database table is locked")
        || message.starts_with("database schema is locked")
        || message.starts_with("database is busy")
        || message.starts_with("canceling statement due to lock timeout")
}

/// A write refused by a read-only connection: SQLite's `query_only`, PostgreSQL's read-only
/// transaction (25006).
fn is_read_only_refusal(kind: DatabaseErrorKind, message: &str) -> bool {
    matches!(kind, DatabaseErrorKind::ReadOnlyTransaction)
        || message.starts_with("attempt to write a readonly database")
}

/// PostgreSQL's deadlock (40P01) has no kind of its own in Diesel 2.3 either.
fn is_conflict_message(message: &str) -> bool {
    message.starts_with("deadlock detected")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_that_answers_no_row_is_an_unexpected_answer() {
        use diesel::{Connection, QueryableByName, RunQueryDsl, SqliteConnection};

        #[derive(QueryableByName, Debug)]
        struct One {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            one: i32,
        }
        let mut conn = SqliteConnection::establish(":memory:").unwrap();
        let mut answer = |sql: &str| diesel::sql_query(sql).load::<One>(&mut conn).unwrap();

        let one = Error::one_row(answer("SELECT 1 AS one"), "one").unwrap();
        assert_eq!(one.one, 1);
        let none = Error::one_row(answer("SELECT 1 AS one WHERE 0"), "one()");
        assert!(
            matches!(none, Err(Error::UnexpectedAnswer { query: "one()" })),
            "{none:?}"
        );
        assert_eq!(
            none.unwrap_err().to_string(),
            "the database answered one() with no row or a malformed value, unlike PostgreSQL \
             and SQLite"
        );
    }

    #[test]
    fn postgres_names_a_keys_columns_in_its_detail() {
        assert_eq!(
            key_columns("Key (username)=(nadia) already exists."),
            Some("username")
        );
        assert_eq!(
            key_columns("Key (post_id, user_id)=(1, 2) already exists."),
            Some("post_id, user_id")
        );
        assert_eq!(key_columns("Failing row contains (x)."), None);
    }

    #[test]
    fn unique_message_names_table_and_column() {
        let v = ConstraintViolation::from_message(
            ConstraintKind::Unique,
            "UNIQUE constraint failed: users.username",
        );
        assert_eq!(v.table.as_deref(), Some("users"));
        assert_eq!(v.column.as_deref(), Some("username"));
        assert_eq!(
            v.to_string(),
            "unique constraint violated on users.username: UNIQUE constraint failed: users.username"
        );
    }

    /// SQLite's full database is provoked for real in `tests/transactions.rs`; PostgreSQL's
    /// full disk (53100) cannot be in a test, so its message, as the server words it, is
    /// checked here.
    #[test]
    fn a_full_database_or_disk_is_storage_full_on_both_backends() {
        for message in [
            "database or disk is full",
            "could not extend file \"base/16384/16385\": No space left on device",
            "could not write to file \"pg_wal/xlogtemp.123\": No space left on device",
        ] {
            let err = Error::from(DieselError::DatabaseError(
                DatabaseErrorKind::Unknown,
                Box::new(message.to_owned()),
            ));
            assert!(
                matches!(err, Error::StorageFull { .. }),
                "{message}: {err:?}"
            );
        }
    }

    #[test]
    fn delete_restricted_message_says_what_to_do() {
        let err = Error::DeleteRestricted {
            table: "posts".into(),
            key: "abc".into(),
            join_table: "post_editors".into(),
            via: None,
            count: 2,
        };
        assert_eq!(
            err.to_string(),
            "cannot delete posts 'abc': 2 rows in post_editors still link to it; unlink them first"
        );
        let err = Error::DeleteRestricted {
            table: "projects".into(),
            key: "p".into(),
            join_table: "task_tags".into(),
            via: Some("tasks".into()),
            count: 1,
        };
        assert_eq!(
            err.to_string(),
            "cannot delete projects 'p': 1 row in task_tags still links to the tasks its delete \
             would remove; unlink it first"
        );
    }
}
