//! What every connection the store opens is set up with.

use std::sync::Arc;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::CustomizeConnection;
use diesel::{Connection, ConnectionResult, PgConnection, SqliteConnection};

use crate::AnyConnection;
use crate::ffi::sqlite as ffi;
use crate::observe::hub::Hub;
use crate::observe::sqlite::ConnObserver;

use super::url;

/// How SQLite syncs writes to disk in WAL mode: [`StoreBuilder::synchronous`](crate::StoreBuilder::synchronous).
///
/// ```
/// use datastore::{Store, Synchronous};
///
/// # fn main() -> datastore::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::builder(dir.path().join("fast.db"))
///     .synchronous(Synchronous::Normal) // survives a crash of the process, not of the power
///     .open()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Every commit is durable, even across power loss (SQLite's default).
    #[default]
    Full,
    /// Commits survive a crash of the process; the last ones may be lost on power loss.
    /// Faster; never corrupts the database.
    Normal,
}

/// The per-connection settings: applied to every connection the store opens, pooled or not.
#[derive(Clone)]
pub(crate) struct ConnectionSetup {
    pub busy_timeout: Duration,
    pub wal: bool,
    pub synchronous: Synchronous,
    /// Where the connection's committed changes go (observe).
    pub hub: Arc<Hub>,
    /// Statements running longer are reported (`datastore::slow`).
    pub slow_statements: Option<Duration>,
}

impl std::fmt::Debug for ConnectionSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionSetup")
            .field("busy_timeout", &self.busy_timeout)
            .field("wal", &self.wal)
            .field("synchronous", &self.synchronous)
            .field("slow_statements", &self.slow_statements)
            .finish_non_exhaustive()
    }
}

impl ConnectionSetup {
    /// Foreign keys are off in SQLite unless every connection turns them on; without them no
    /// `ON DELETE CASCADE` happens at all.
    pub fn apply(&self, conn: &mut SqliteConnection) -> diesel::QueryResult<()> {
        // Right after the connection opened on this thread: its handle is the one just seen.
        ffi::set_up(
            conn,
            || ConnObserver::new(self.hub.clone()),
            self.slow_statements,
        );
        conn.batch_execute(&format!(
            "PRAGMA busy_timeout = {};\nPRAGMA foreign_keys = ON;",
            self.busy_timeout.as_millis()
        ))?;
        if self.wal {
            self.enter_wal(conn)?;
            conn.batch_execute(match self.synchronous {
                Synchronous::Full => "PRAGMA synchronous = FULL",
                Synchronous::Normal => "PRAGMA synchronous = NORMAL",
            })?;
        }
        // Observe stamps the rows a connection captures with the schema it reads them in.
        match crate::observe::sqlite::catalog::schema_cookie(conn) {
            Ok(cookie) => self.hub.schema_loaded(cookie),
            Err(_) => self.hub.schema_changed(),
        }
        Ok(())
    }

    /// Switches the database to WAL. On a new file opened by several processes at once, all
    /// but one find it locked while another switches it, at once and not through the busy
    /// timeout (SQLite does not wait where waiting could deadlock); they try again, within the
    /// busy timeout, and find it in WAL already.
    fn enter_wal(&self, conn: &mut SqliteConnection) -> diesel::QueryResult<()> {
        let deadline = std::time::Instant::now() + self.busy_timeout;
        loop {
            match conn.batch_execute("PRAGMA journal_mode = WAL") {
                Err(diesel::result::Error::DatabaseError(_, info))
                    if info.message().starts_with("database is locked")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(2));
                }
                result => return result,
            }
        }
    }
}

impl ConnectionSetup {
    /// PostgreSQL: waiting for a row lock is bounded like SQLite's busy wait, and a statement
    /// still waiting past it fails with [`Error::Busy`](crate::Error::Busy).
    ///
    /// Its instrumentation keeps the error that aborts a transaction, which `Store::transaction`
    /// reports, the connection's backend process and whether its transactions are serializable
    /// by default (read in the same round trip), and reports its statements (see `trace.rs`).
    ///
    /// The server's messages are made English ([`english_messages`]).
    ///
    /// A caller the connection is lent to may take these settings back (`RESET ALL`, `DISCARD
    /// ALL`): the statements that give them again are kept with the connection, for it to be
    /// settled as it goes back to the pool (`BackendManager::has_broken`).
    pub fn apply_postgres(&self, conn: &mut PgConnection) -> diesel::QueryResult<()> {
        #[derive(diesel::QueryableByName)]
        struct Backend {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            pid: i32,
            #[diesel(sql_type = diesel::sql_types::Bool)]
            serializable: bool,
            #[diesel(sql_type = diesel::sql_types::Text)]
            messages: String,
        }
        diesel::Connection::set_instrumentation(
            conn,
            super::lost::FirstFailure::new(self.slow_statements),
        );
        let lock_timeout = format!(
            "SELECT set_config('lock_timeout', '{}', false)",
            self.busy_timeout.as_millis()
        );
        let backend: Vec<Backend> = diesel::RunQueryDsl::load(
            diesel::sql_query(format!(
                "SELECT pg_backend_pid() AS pid, \
                 current_setting('default_transaction_isolation') = 'serializable' AS serializable, \
                 current_setting('lc_messages') AS messages \
                 FROM ({lock_timeout}) AS setup"
            )),
            conn,
        )?;
        if let Some(backend) = backend.first() {
            super::lost::FirstFailure::set_server_facts(conn, backend.pid, backend.serializable);
            // Diesel's own settings too, which it gives a connection as it opens it: a `RESET
            // ALL` takes them back to the server's, the role's or the URL's (UTF-8 text is
            // what Diesel reads; UTC is how the store's timestamps convert to a column without
            // a time zone).
            let settings = format!("{DIESELS}; {lock_timeout}");
            let settings = match english_messages(conn, &backend.messages)? {
                true => format!("{settings}; {ENGLISH}"),
                false => settings,
            };
            super::lost::FirstFailure::set_settings(conn, settings);
        }
        Ok(())
    }

    /// The setup of a connection of either backend.
    pub fn apply_any(&self, conn: &mut AnyConnection) -> diesel::QueryResult<()> {
        match conn {
            AnyConnection::Sqlite(conn) => self.apply(conn),
            AnyConnection::Postgres(conn) => self.apply_postgres(conn),
        }
    }
}

/// The statement that makes a session's messages English (PostgreSQL's own text).
const ENGLISH: &str = "SET lc_messages TO 'C'";

/// The settings Diesel gives each PostgreSQL connection as it opens it
/// (`PgConnection::establish`), given again where a caller took them back.
const DIESELS: &str = "SET TIME ZONE 'UTC'; SET CLIENT_ENCODING TO 'UTF8'";

/// Makes the session's messages PostgreSQL's own (English) text, where the server, the
/// database or the role set `lc_messages` (`messages` as the connection found it) to another
/// language.
///
/// The store tells some of PostgreSQL's errors apart by their text, because Diesel 2.3 reports
/// no SQLSTATE beyond its own few kinds: a deadlock (retried by
/// [`Store::transaction`](crate::Store::transaction)), a lock timeout
/// ([`Error::Busy`](crate::Error::Busy)), a transaction already aborted, a full disk, a pooled
/// statement whose plan a schema change broke (the connection is then replaced). In another
/// language none of them would be recognized. `lc_messages` may be set by a superuser, or by a
/// role granted it (`GRANT SET ON PARAMETER lc_messages`, PostgreSQL 15): a connection of any
/// other role whose messages are in another language is refused, naming the setting to
/// change, rather than let those errors pass as unknown ones. Where no `lc_messages` is set,
/// the server's environment decides, taken as English (a server set up in another language
/// sets it).
///
/// Whether it set them: where it did, a session that takes its settings back needs them set
/// again.
fn english_messages(conn: &mut PgConnection, messages: &str) -> diesel::QueryResult<bool> {
    if messages.is_empty() || is_english(messages) {
        return Ok(false);
    }
    let set = conn.batch_execute(ENGLISH);
    // A refusal outside a transaction leaves nothing to settle as the connection returns.
    let _ = super::lost::FirstFailure::failed_outside_transaction(conn);
    set.map(|()| true).map_err(|_| {
        diesel::result::Error::QueryBuilderError(
            format!(
                "the server's messages are in {messages:?} (lc_messages), which this role may \
                 not set to English: the store tells a deadlock, a lock timeout and other \
                 errors by PostgreSQL's English text (Diesel reports no SQLSTATE). As a \
                 superuser: ALTER ROLE <role> SET lc_messages = 'C' (or ALTER DATABASE .. SET, \
                 or GRANT SET ON PARAMETER lc_messages TO <role>)"
            )
            .into(),
        )
    })
}

/// Whether the `lc_messages` value `locale` gives PostgreSQL's messages untranslated: the C
/// and POSIX locales, or an English one (`en_US.UTF-8`, `en`, Windows' `English_United
/// States.1252`, in any case).
fn is_english(locale: &str) -> bool {
    let language = locale
        .split(['_', '.', '-', '@'])
        .next()
        .unwrap_or_default();
    ["C", "POSIX", "en", "English"]
        .iter()
        .any(|english| language.eq_ignore_ascii_case(english))
}

impl CustomizeConnection<AnyConnection, diesel::r2d2::Error> for ConnectionSetup {
    fn on_acquire(&self, conn: &mut AnyConnection) -> Result<(), diesel::r2d2::Error> {
        self.apply_any(conn)
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Connects to the PostgreSQL server at `url` as every connection of a store does: with the
/// TCP settings that find a silent server gone within about a minute, where `url` does not set
/// its own ([`url::with_liveness`]). The pool's connections, the change feeds' listeners and
/// their control connections; the URL shown in errors stays the one given.
pub(crate) fn establish_postgres(url: &str) -> ConnectionResult<PgConnection> {
    PgConnection::establish(&url::with_liveness(url))
}

#[cfg(test)]
mod tests {
    #[test]
    fn english_locales_are_told_by_their_language() {
        for english in [
            "C",
            "C.UTF-8",
            "POSIX",
            "en_US.UTF-8",
            "en",
            "English_United States.1252",
        ] {
            assert!(super::is_english(english), "{english}");
        }
        for other in ["", "de_DE.UTF-8", "fr_FR", "Cs_CZ", "es", "Englisch"] {
            assert!(!super::is_english(other), "{other}");
        }
    }
}
