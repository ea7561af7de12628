//! Which stores have a `store.transaction` open on this thread, and what that forbids: a write
//! through the store (rather than through the closure's connection) would run on another
//! connection, outside the transaction, and on SQLite wait for the transaction's own write lock
//! until the busy timeout. It fails at once instead, with
//! [`Error::WriteOutsideTransaction`](crate::Error::WriteOutsideTransaction).
//!
//! The store's own writes check before they take a connection. A connection `store.conn()` hands
//! out inside the transaction is made read-only (reads keep working), and made writable again the
//! next time the store hands it out outside one.

use std::cell::RefCell;

use diesel::connection::SimpleConnection;

use super::PooledConn;
use crate::AnyConnection;

thread_local! {
    /// The stores (by [`Store::id`](super::Store)) with a transaction open on this thread,
    /// innermost last, with the PostgreSQL backend process of the transaction's connection.
    static OPEN: RefCell<Vec<(usize, Option<i32>)>> = const { RefCell::new(Vec::new()) };
}

/// A transaction of a store open on this thread, until dropped (also when its closure panics).
pub(crate) struct Open(usize);

impl Open {
    /// `backend` is the PostgreSQL backend process of the transaction's connection.
    pub fn new(store: usize, backend: Option<i32>) -> Self {
        OPEN.with(|open| open.borrow_mut().push((store, backend)));
        Self(store)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        OPEN.with(|open| {
            let mut open = open.borrow_mut();
            if let Some(i) = open.iter().rposition(|(store, _)| *store == self.0) {
                open.remove(i);
            }
        });
    }
}

/// Whether this thread is inside a transaction of `store`.
pub(crate) fn is_open(store: usize) -> bool {
    OPEN.with(|open| open.borrow().iter().any(|(open, _)| *open == store))
}

/// The PostgreSQL backend process of the innermost transaction of `store` open on this
/// thread, if any.
pub(crate) fn open_backend(store: usize) -> Option<i32> {
    OPEN.with(|open| {
        open.borrow()
            .iter()
            .rev()
            .find(|(open, _)| *open == store)
            .and_then(|(_, backend)| *backend)
    })
}

/// Whether this thread is inside a transaction of `store`, as a hook may ask: never panics
/// (`false` while the thread ends).
pub(crate) fn is_open_in_hook(store: usize) -> bool {
    OPEN.try_with(|open| {
        open.try_borrow()
            .is_ok_and(|open| open.iter().any(|(open, _)| *open == store))
    })
    .unwrap_or(false)
}

/// Whether this thread is inside a transaction of any store.
pub(crate) fn any_open() -> bool {
    OPEN.with(|open| !open.borrow().is_empty())
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
