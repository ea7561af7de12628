//! What every connection the store opens is set up with.

use std::sync::Arc;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::CustomizeConnection;
use diesel::{PgConnection, SqliteConnection};

use crate::observe::connection::ConnObserver;
use crate::observe::ffi;
use crate::observe::hub::Hub;
use crate::AnyConnection;

/// How SQLite syncs writes to disk in WAL mode.
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
}

impl std::fmt::Debug for ConnectionSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionSetup")
            .field("busy_timeout", &self.busy_timeout)
            .field("wal", &self.wal)
            .field("synchronous", &self.synchronous)
            .finish_non_exhaustive()
    }
}

impl ConnectionSetup {
    /// Foreign keys are off in SQLite unless every connection turns them on; without them no
    /// `ON DELETE CASCADE` happens at all.
    pub fn apply(&self, conn: &mut SqliteConnection) -> diesel::QueryResult<()> {
        // Right after the connection opened on this thread: its handle is the one just seen.
        if let Some(handle) = ffi::take_opened() {
            ffi::install(handle, ConnObserver::new(self.hub.clone()));
        }
        let mut sql = format!(
            "PRAGMA busy_timeout = {};\nPRAGMA foreign_keys = ON;\n",
            self.busy_timeout.as_millis()
        );
        if self.wal {
            sql.push_str("PRAGMA journal_mode = WAL;\n");
            sql.push_str(match self.synchronous {
                Synchronous::Full => "PRAGMA synchronous = FULL;\n",
                Synchronous::Normal => "PRAGMA synchronous = NORMAL;\n",
            });
        }
        conn.batch_execute(&sql)?;
        // Observe stamps the rows a connection captures with the schema it reads them in.
        match crate::observe::catalog::schema_cookie(conn) {
            Ok(cookie) => self.hub.schema_loaded(cookie),
            Err(_) => self.hub.schema_changed(),
        }
        Ok(())
    }
}

impl ConnectionSetup {
    /// PostgreSQL: waiting for a row lock is bounded like SQLite's busy wait, and a statement
    /// still waiting past it fails with [`Error::Busy`](crate::Error::Busy).
    pub fn apply_postgres(&self, conn: &mut PgConnection) -> diesel::QueryResult<()> {
        conn.batch_execute(&format!(
            "SET lock_timeout = {}",
            self.busy_timeout.as_millis()
        ))
    }

    /// The setup of a connection of either backend.
    pub fn apply_any(&self, conn: &mut AnyConnection) -> diesel::QueryResult<()> {
        match conn {
            AnyConnection::Sqlite(conn) => self.apply(conn),
            AnyConnection::Postgres(conn) => self.apply_postgres(conn),
        }
    }
}

impl CustomizeConnection<AnyConnection, diesel::r2d2::Error> for ConnectionSetup {
    fn on_acquire(&self, conn: &mut AnyConnection) -> Result<(), diesel::r2d2::Error> {
        self.apply_any(conn)
            .map_err(diesel::r2d2::Error::QueryError)
    }
}
