//! [`Store::transaction`]: how it begins and commits, how a transaction the database ended is
//! reported, and which stores have one open on this thread. A write through the store (rather
//! than through the closure's connection) would run on another connection, outside the
//! transaction, and on SQLite wait for the transaction's own write lock until the busy timeout.
//! It fails at once instead, with [`Error::WriteOutsideTransaction`].
//!
//! The store's own writes check before they take a connection. A connection `store.conn()` hands
//! out inside the transaction is made read-only (reads keep working), and made writable again the
//! next time the store hands it out outside one.

use std::cell::RefCell;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};

use super::{PooledConn, Store, lost};
use crate::{AnyConnection, Error, Result};

/// A transaction of a store open on this thread.
struct Opened {
    /// The store, by [`Store::id`](super::Store).
    store: usize,
    /// The PostgreSQL backend process of the transaction's connection.
    backend: Option<i32>,
    /// The store lent its caller a connection (read-only) while it was open: see
    /// [`refused_as_lent`].
    lent: bool,
}

thread_local! {
    /// The transactions of stores open on this thread, innermost last.
    static OPEN: RefCell<Vec<Opened>> = const { RefCell::new(Vec::new()) };
}

/// A transaction of a store open on this thread, until dropped (also when its closure panics).
pub(crate) struct Open(usize);

impl Open {
    /// `backend` is the PostgreSQL backend process of the transaction's connection.
    pub fn new(store: usize, backend: Option<i32>) -> Self {
        OPEN.with(|open| {
            open.borrow_mut().push(Opened {
                store,
                backend,
                lent: false,
            })
        });
        Self(store)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        OPEN.with(|open| {
            let mut open = open.borrow_mut();
            if let Some(i) = open.iter().rposition(|opened| opened.store == self.0) {
                open.remove(i);
            }
        });
    }
}

/// Whether this thread is inside a transaction of `store`.
pub(crate) fn is_open(store: usize) -> bool {
    OPEN.with(|open| open.borrow().iter().any(|opened| opened.store == store))
}

/// The PostgreSQL backend process of the innermost transaction of `store` open on this
/// thread, if any.
pub(crate) fn open_backend(store: usize) -> Option<i32> {
    OPEN.with(|open| {
        open.borrow()
            .iter()
            .rev()
            .find(|opened| opened.store == store)
            .and_then(|opened| opened.backend)
    })
}

/// Whether this thread is inside a transaction of `store`, as a hook may ask: never panics
/// (`false` while the thread ends).
pub(crate) fn is_open_in_hook(store: usize) -> bool {
    OPEN.try_with(|open| {
        open.try_borrow()
            .is_ok_and(|open| open.iter().any(|opened| opened.store == store))
    })
    .unwrap_or(false)
}

/// Whether a database's refusal to write, reported on this thread, is a connection the store
/// lent read-only inside its transaction refusing a write that would not have been part of it
/// ([`Error::WriteOutsideTransaction`]): a transaction of a store open on this thread has
/// lent one. Otherwise the refusal is the database's own (a file opened read-only, a
/// PostgreSQL standby or read-only transaction) and is reported as such. (Both at once, a
/// transaction that lent a connection writing to a database that refuses it, reads as the
/// first.)
pub(crate) fn refused_as_lent() -> bool {
    OPEN.with(|open| open.borrow().iter().any(|opened| opened.lent))
}

/// Records that the innermost transaction of `store` on this thread lent a connection to its
/// caller (`store.conn()`, not the store's own reads).
pub(crate) fn note_lent(store: usize) {
    OPEN.with(|open| {
        if let Some(opened) = open
            .borrow_mut()
            .iter_mut()
            .rev()
            .find(|opened| opened.store == store)
        {
            opened.lent = true;
        }
    });
}

/// Marks a connection the store lent read-only inside a transaction.
struct ReadOnly;

/// Makes a connection handed out inside a transaction of its store refuse writes.
pub(crate) fn lend_read_only(conn: &mut PooledConn) -> diesel::QueryResult<()> {
    if PooledConn::extensions(conn).get::<ReadOnly>().is_some() {
        return Ok(());
    }
    match &mut **conn {
        AnyConnection::Sqlite(c) => c.batch_execute("PRAGMA query_only = ON")?,
        AnyConnection::Postgres(c) => c.batch_execute("SET default_transaction_read_only = on")?,
    }
    PooledConn::extensions_mut(conn).insert(ReadOnly);
    Ok(())
}

/// Makes a connection lent read-only writable again (nothing to do for any other).
pub(crate) fn restore(conn: &mut PooledConn) -> diesel::QueryResult<()> {
    if PooledConn::extensions(conn).get::<ReadOnly>().is_none() {
        return Ok(());
    }
    match &mut **conn {
        AnyConnection::Sqlite(c) => c.batch_execute("PRAGMA query_only = OFF")?,
        AnyConnection::Postgres(c) => c.batch_execute("RESET default_transaction_read_only")?,
    }
    PooledConn::extensions_mut(conn).remove::<ReadOnly>();
    Ok(())
}

impl Store {
    /// Runs `f` in one transaction: it commits when `f` returns `Ok`, and when `f` fails
    /// nothing it wrote remains. Inside, `tx.transaction(..)` nests as a savepoint.
    ///
    /// On SQLite it begins with `BEGIN IMMEDIATE`, so it never fails half-way for want of the
    /// write lock. On PostgreSQL it runs at the server's default isolation level (`f` may
    /// begin with `SET TRANSACTION ISOLATION LEVEL ..`); a deadlock or a serialization failure
    /// fails it whole with [`Error::Conflict`], and it may then be run again. A statement that
    /// failed inside `f` aborts a PostgreSQL transaction: if `f` still returns `Ok`, the
    /// transaction is rolled back and this returns the server's error, never `Ok`. If the
    /// server ends the connection meanwhile, this is [`Error::Connection`] with
    /// [`ConnectionFailure::Lost`](crate::ConnectionFailure::Lost): nothing was committed,
    /// unless the connection was lost during the `COMMIT` itself, whose outcome the server did
    /// not get to report (read before running it again).
    ///
    /// Inside `f`, write through its connection: a write through the store (`store.save(..)`,
    /// `store.transaction(..)`, or a connection from `store.conn()`) would run on another
    /// connection, outside the transaction, and fails at once with
    /// [`Error::WriteOutsideTransaction`]. Reads through the store keep working; they see what
    /// other transactions committed, not what `f` wrote.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
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
        self.transaction_on_a_connection(f)
            .map_err(|error| error.or_connection_lost(&self.url))
    }

    fn transaction_on_a_connection<T>(
        &self,
        f: impl FnOnce(&mut AnyConnection) -> Result<T>,
    ) -> Result<T> {
        self.refuse_write_in_transaction()?;
        let mut pooled = self.pooled()?;
        let backend = match &mut *pooled {
            AnyConnection::Postgres(c) => lost::FirstFailure::backend_pid(c),
            AnyConnection::Sqlite(_) => None,
        };
        let conn: &mut AnyConnection = &mut pooled;
        match conn {
            AnyConnection::Sqlite(c) => {
                AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?
            }
            AnyConnection::Postgres(c) => AnsiTransactionManager::begin_transaction(c)?,
        }
        // Open once begun: a `BEGIN` that failed opened nothing.
        let _open = Open::new(self.id(), backend);
        let losses = lost::generation();
        lost::forget_pending();
        let result = f(conn);
        let lost = lost::lost_since(losses, self.id());
        lost::forget_pending();
        if let Some(lost) = lost {
            return Err(end_lost_transaction(conn, &lost));
        }
        // Savepoints `f` left open (a nested transaction whose closure panicked, the panic
        // caught in `f`) are undone whichever way it ends: released with the transaction, they
        // would commit work their closure never finished (and a `COMMIT` at their depth would
        // only release the innermost).
        let result = match (result, crate::backend::unwind_to(conn, 1)) {
            (Ok(value), Ok(())) => Ok(value),
            (Ok(_), Err(unwinding)) => Err(unwinding.into()),
            (Err(error), _) => Err(error),
        };
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
            // Diesel's transaction manager reads the transaction's end from libpq; the
            // instrumentation, which no event tells, is told here.
            Ok(()) => {
                lost::FirstFailure::transaction_ended(pg);
                Ok(())
            }
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
