//! The store's own connection for observe, outside its pool.

use std::sync::{Mutex, MutexGuard};

use diesel::r2d2::R2D2Connection;

use super::connection::ConnectionSetup;
use super::manager::BackendManager;
use crate::{AnyConnection, Error, Result};

/// One connection that observe uses for itself: catalog reads, PostgreSQL's triggers and
/// subscription markers, and the results of live queries. It is opened on first use, outside
/// the pool, so that subscribing never waits for a pooled connection (which the caller's own
/// `store.transaction` may hold), and it never runs inside a caller's transaction, so that
/// what it reads is committed data.
pub(crate) struct ObserveConn {
    manager: BackendManager,
    setup: ConnectionSetup,
    /// The store's URL, for errors.
    url: String,
    conn: Mutex<Option<AnyConnection>>,
}

impl ObserveConn {
    pub fn new(manager: BackendManager, setup: ConnectionSetup, url: String) -> Self {
        Self {
            manager,
            setup,
            url,
            conn: Mutex::new(None),
        }
    }

    /// Runs `f` on the connection, opening it first if needed. A connection found broken
    /// afterwards is dropped, and the next call opens another.
    pub fn with<T>(&self, f: impl FnOnce(&mut AnyConnection) -> Result<T>) -> Result<T> {
        let mut slot = self.lock();
        if slot.is_none() {
            let mut conn = self
                .manager
                .establish()
                .map_err(|e| Error::connection(&self.url, crate::ConnectionFailure::Driver, e))?;
            self.setup.apply_any(&mut conn)?;
            *slot = Some(conn);
        }
        let Some(conn) = slot.as_mut() else {
            unreachable!("opened above")
        };
        let result = f(conn);
        // A failed call may mean a lost server connection, which Diesel's `is_broken` does
        // not tell: one round trip, on failures only.
        if result.is_err() && (conn.is_broken() || conn.ping().is_err()) {
            *slot = None;
        }
        result
    }

    fn lock(&self) -> MutexGuard<'_, Option<AnyConnection>> {
        self.conn.lock().unwrap_or_else(|poisoned| {
            // A call panicked holding it (a caller's closure, run in a read transaction):
            // Diesel rolls nothing back on a panic, so its connection may be left inside that
            // transaction, reading an old snapshot and holding its locks. Another is opened.
            let mut slot = poisoned.into_inner();
            *slot = None;
            self.conn.clear_poison();
            slot
        })
    }
}
