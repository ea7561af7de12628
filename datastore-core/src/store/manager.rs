//! The pool's connection manager: opens the backend the store's URL names, and nothing else.

use diesel::SqliteConnection;
use diesel::connection::Connection;
use diesel::r2d2::{Error, R2D2Connection};

use super::lost::{FirstFailure, Leftover};
use crate::AnyConnection;
use crate::schema::ddl::Dialect;

/// The r2d2 connection manager of a [`Store`](crate::Store)'s pool: it opens connections to
/// one database, of the backend its URL names. Unlike `AnyConnection::establish`, which tries
/// each backend in turn, it never falls back to SQLite for a PostgreSQL URL (which would
/// create a file named after the URL).
///
/// ```
/// # use datastore::prelude::*;
/// # use datastore_doc_models::{Note, notes};
/// use datastore::diesel::r2d2::PooledConnection;
/// use datastore::BackendManager;
///
/// /// Takes a connection as the store's pool hands it out (`datastore::PooledConn`).
/// fn note_count(conn: &mut PooledConnection<BackendManager>) -> datastore::Result<usize> {
///     conn.count::<Note>()
/// }
///
/// # fn main() -> datastore::Result<()> {
/// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
/// let mut conn = store.conn()?;
/// assert_eq!(note_count(&mut conn)?, 0);
/// # Ok(())
/// # }
/// ```
pub struct BackendManager {
    pub(crate) url: String,
    pub(crate) dialect: Dialect,
}

impl std::fmt::Debug for BackendManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendManager")
            .field("url", &super::url::redact(&self.url))
            .field("dialect", &self.dialect)
            .finish()
    }
}

impl BackendManager {
    pub(crate) fn establish(&self) -> diesel::ConnectionResult<AnyConnection> {
        match self.dialect {
            Dialect::Sqlite => SqliteConnection::establish(&self.url).map(AnyConnection::Sqlite),
            Dialect::Postgres => super::establish_postgres(&self.url).map(AnyConnection::Postgres),
        }
    }
}

impl r2d2::ManageConnection for BackendManager {
    type Connection = AnyConnection;
    type Error = Error;

    fn connect(&self) -> Result<AnyConnection, Error> {
        self.establish().map_err(Error::ConnectionError)
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), Error> {
        conn.ping().map_err(Error::QueryError)
    }

    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        // A connection whose prepared statements outlived another session's schema change is
        // dropped too: Diesel would run them again, and PostgreSQL refuse them again.
        if std::thread::panicking() || conn.is_broken() || super::lost::plans_outdated(conn) {
            return true;
        }
        // A transaction Diesel does not know of may be open: on SQLite, one SQLite rolled back
        // by itself whose owner (Diesel, after a failed statement) forgot it without a
        // `ROLLBACK`, or one its user left open with SQL of their own (SQLite says so); on
        // PostgreSQL, one a statement failed in outside Diesel's transactions, now open or
        // aborted, or one the caller the connection was lent to began with SQL of their own and
        // left open (ended, unasked, in a round trip of its own, only on a connection lent by
        // `Store::conn` that ran SQL with the word `BEGIN` or `START`: see `settle`, which
        // also gives back the settings such a caller's `RESET` took; one whose caller ran
        // `DISCARD` is replaced). A `ROLLBACK` ends it rather than hand it to the next user;
        // where none is open it fails (SQLite) or warns (PostgreSQL, and Diesel keeps the
        // warning to itself), and does nothing.
        let stray = match conn {
            AnyConnection::Sqlite(conn) => {
                // One Diesel follows and does not count as broken (a test transaction): the
                // connection is dropped rather than rolled back behind Diesel's back.
                if crate::backend::in_transaction(conn) {
                    return true;
                }
                // Not told (an instrumentation of the user's own): a `ROLLBACK` costs at most
                // a statement that fails at once.
                super::lost::any_unended()
                    || crate::ffi::sqlite::in_transaction(conn).unwrap_or(true)
            }
            AnyConnection::Postgres(conn) => {
                // As on SQLite, one Diesel follows (a test transaction) is dropped.
                if crate::backend::in_transaction(conn) {
                    return true;
                }
                // Without the store's instrumentation (its caller replaced it) nothing tells
                // what the connection did, and the store's transactions lose what it keeps:
                // the connection goes, and the pool sets up another.
                let Some(leftover) = FirstFailure::take_leftover(conn) else {
                    return true;
                };
                // Both are taken (reset) whatever either says.
                let failed = FirstFailure::failed_outside_transaction(conn);
                match leftover {
                    Leftover::Clean => failed,
                    Leftover::Unsettled => return !settle(conn, failed),
                    // The pool sets up another.
                    Leftover::Discarded => return true,
                }
            }
        };
        if stray {
            let rolled_back =
                diesel::connection::SimpleConnection::batch_execute(conn, "ROLLBACK").is_ok();
            // A `ROLLBACK` that failed leaves the transaction open (SQLite), or the server
            // ended the session (PostgreSQL, where one outside a transaction only warns): the
            // connection goes.
            return match conn {
                AnyConnection::Sqlite(conn) => {
                    crate::ffi::sqlite::in_transaction(conn) == Some(true)
                }
                AnyConnection::Postgres(_) => !rolled_back,
            };
        }
        false
    }
}

/// Settles a PostgreSQL connection whose caller (it was lent to) may have left a transaction
/// of their own open or taken back the session's settings ([`Leftover::Unsettled`]), in one
/// round trip, unasked: Diesel does not expose what libpq knows of the transaction, and a
/// question would cost the same round trip. Outside a transaction `BEGIN; ROLLBACK` begins one
/// and ends it; inside one its `BEGIN` only warns (the server logs that warning: it says a
/// transaction was left open) and its `ROLLBACK` ends it; where a statement `failed` outside
/// Diesel's transactions (its transaction, if any, aborted, refuses a `BEGIN`) the `ROLLBACK`
/// alone. Then the session is given the store's settings again (`lock_timeout`, English
/// messages: see `ConnectionSetup::apply_postgres`). Whether it all ran: a connection it did
/// not settle goes.
fn settle(conn: &mut diesel::PgConnection, failed: bool) -> bool {
    let end = if failed {
        "ROLLBACK"
    } else {
        "BEGIN; ROLLBACK"
    };
    let sql = format!("{end}; {}", FirstFailure::settings(conn));
    let settled = diesel::connection::SimpleConnection::batch_execute(conn, &sql).is_ok();
    // A refusal counts as a failure outside Diesel's transactions: the connection goes anyway.
    let _ = FirstFailure::failed_outside_transaction(conn);
    settled
}
