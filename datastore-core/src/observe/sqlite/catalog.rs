//! Where a SQLite subscriber reads a table's columns from: at subscription, and again when
//! rows arrive from a schema epoch it has not read them for.
//!
//! A read is valid for an epoch only if no epoch began while it ran: then every row captured
//! in that epoch is in the columns it read (a connection that reads the columns otherwise
//! opens a new epoch before it captures a row). The read runs on observe's own connection,
//! which the hooks watch like any other: if it finds the schema changed, so does the epoch.

use std::sync::{Arc, Weak};

use diesel::sql_types::{BigInt, Text};
use diesel::{QueryableByName, RunQueryDsl, SqliteConnection};

use crate::observe::hub::Hub;
use crate::store::ObserveConn;
use crate::{AnyConnection, Error, Result};

/// A table's columns as of a schema epoch.
#[derive(Debug)]
pub(crate) struct Layout {
    pub epoch: u64,
    /// The schema cookie they were read with.
    pub cookie: i64,
    pub columns: Vec<String>,
}

/// A store's catalog, as its subscriptions reach it: weakly, so that a subscription keeps
/// neither the store's connections nor its hub alive.
#[derive(Debug, Clone)]
pub(crate) struct Catalog {
    hub: Weak<Hub>,
    conn: Weak<ObserveConn>,
}

impl Catalog {
    pub fn new(hub: &Arc<Hub>, conn: &Arc<ObserveConn>) -> Self {
        Self {
            hub: Arc::downgrade(hub),
            conn: Arc::downgrade(conn),
        }
    }

    /// The schema cookie of `epoch`, if known.
    pub fn cookie_of(&self, epoch: u64) -> Option<i64> {
        self.hub.upgrade()?.cookie_of(epoch)
    }

    /// `table`'s columns, read while no epoch began.
    pub fn resolve(&self, table: &str) -> Result<Layout> {
        let gone = || Error::feed_lost("the store is gone");
        let hub = self.hub.upgrade().ok_or_else(gone)?;
        let conn = self.conn.upgrade().ok_or_else(gone)?;
        // Each retry follows a schema change: a few suffice unless the schema keeps changing.
        for _ in 0..5 {
            let epoch = hub.schema_epoch();
            let (cookie, columns) = conn.with(|conn| match conn {
                AnyConnection::Sqlite(conn) => Ok(table_columns(conn, table)?),
                AnyConnection::Postgres(_) => {
                    unreachable!("schema epochs are SQLite's; PostgreSQL's rows name their columns")
                }
            })?;
            if hub.schema_epoch() == epoch {
                hub.learn_cookie(epoch, cookie);
                return Ok(Layout {
                    epoch,
                    cookie,
                    columns,
                });
            }
        }
        Err(Error::Busy {
            message: format!("the schema of {table} kept changing while its columns were read"),
        })
    }
}

#[derive(QueryableByName)]
struct Read {
    #[diesel(sql_type = BigInt)]
    cookie: i64,
    #[diesel(sql_type = Text)]
    names: String,
}

/// The schema cookie and `table`'s columns in order, in one statement (one snapshot): all of
/// them, generated ones included (`pragma_table_xinfo`), as the pre-update hook counts them.
fn table_columns(conn: &mut SqliteConnection, table: &str) -> Result<(i64, Vec<String>)> {
    let read: Vec<Read> = diesel::sql_query(
        "SELECT (SELECT schema_version FROM pragma_schema_version) AS cookie, \
         (SELECT json_group_array(name ORDER BY cid) FROM pragma_table_xinfo(?)) AS names",
    )
    .bind::<Text, _>(table)
    .load(conn)?;
    let read = Error::one_row(read, "pragma_schema_version")?;
    let names = serde_json::from_str(&read.names).map_err(|e| Error::Conversion {
        column: None,
        message: format!("the columns of {table}: {e}"),
    })?;
    Ok((read.cookie, names))
}

/// The schema cookie, read with the schema loaded in the same snapshot (the statement
/// names `sqlite_schema`): what a new connection reads the tables' columns as.
pub(crate) fn schema_cookie(conn: &mut SqliteConnection) -> diesel::QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Cookie {
        #[diesel(sql_type = BigInt)]
        cookie: i64,
    }
    let read: Vec<Cookie> = diesel::sql_query(
        "SELECT schema_version AS cookie FROM pragma_schema_version \
         WHERE (SELECT count(*) FROM sqlite_schema) >= 0",
    )
    .load(conn)?;
    read.into_iter()
        .next()
        .map(|c| c.cookie)
        .ok_or(diesel::result::Error::NotFound)
}
