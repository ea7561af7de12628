//! Running the pending migrations when a store opens, one process at a time: any number of
//! processes may open the same new or outdated database at once, and each migration runs
//! exactly once.
//!
//! On PostgreSQL they run under an advisory lock. On SQLite the lock is the database's write
//! lock: when migrations are pending, they are read again and run inside one `BEGIN IMMEDIATE`
//! transaction, so another process waits, then finds them applied. With nothing pending no lock
//! is taken, so a long writer in another process never holds up an open.

mod dependents;

use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::migration::Migration;
use diesel::query_builder::SqlQuery;
use diesel::query_dsl::LoadQuery;
use diesel::result::{DatabaseErrorInformation, DatabaseErrorKind};
use diesel::sql_types::{BigInt, Text};
use diesel::sqlite::Sqlite;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl, SqliteConnection};
use diesel_migrations::MigrationHarness;

use super::lost::FirstFailure;
use crate::ffi::sqlite::{Handle, SkipTransactionControl};
use crate::migrate::{BackendMigrations, MigrationFailure, SchemaObject};
use crate::schema::ddl::{REBUILT, UNCONVERTIBLE, quote_ident};
use crate::{AnyConnection, Duplicate, Error, Result};
use dependents::{Dependents, Restore};

/// The longest busy timeout SQLite takes (about 24 days): waiting for another process's
/// migrations is not a busy database, so the wait lasts as long as they do.
const WAIT_FOR_MIGRATIONS: &str = "PRAGMA busy_timeout = 2147483647";

/// Runs the pending migrations of the connection's backend. `handle` is the SQLite connection's
/// (see [`ffi::peek_opened`](crate::ffi::sqlite::peek_opened)).
pub(super) fn run(
    conn: &mut AnyConnection,
    handle: Option<Handle>,
    migrations: &BackendMigrations,
    busy_timeout: Duration,
) -> Result<()> {
    let missing = |backend| Error::migration(None, MigrationFailure::NoneForBackend { backend });
    match conn {
        AnyConnection::Sqlite(conn) => {
            if !migrations.has_sqlite() {
                return Err(missing("SQLite"));
            }
            // Nothing pending (the usual open): no lock taken, no one waited for. Otherwise (or
            // if reading failed, another process creating Diesel's table at the same moment)
            // they are read again under the lock.
            if pending(conn, migrations).is_ok_and(|pending| pending.is_empty()) {
                return Ok(());
            }
            waiting_for_others(conn, busy_timeout, |conn| {
                run_sqlite(conn, handle.as_ref(), migrations)
            })
        }
        AnyConnection::Postgres(conn) => {
            let source = migrations
                .for_postgres()
                .ok_or_else(|| missing("PostgreSQL"))?;
            with_migration_lock(conn, busy_timeout, |conn| {
                let pending = conn
                    .pending_migrations(source)
                    .map_err(|e| migration_error(None, e))?;
                for migration in pending {
                    if let Err(e) = conn.run_migration(&*migration) {
                        return Err(failure(conn, &migration.name(), e));
                    }
                }
                Ok(())
            })?
        }
    }
}

/// Reverts the last applied of the connection's backend's migrations, as [`run`] runs them:
/// one process at a time, and a migration written to run outside a transaction (a table
/// rebuild) with foreign keys off in the store's transaction, the table's triggers kept. Its
/// version, or `None` when none is applied.
#[cfg(feature = "cli")]
pub(super) fn revert_last(
    conn: &mut AnyConnection,
    handle: Option<Handle>,
    migrations: &BackendMigrations,
    busy_timeout: Duration,
) -> Result<Option<String>> {
    let missing = |backend| Error::migration(None, MigrationFailure::NoneForBackend { backend });
    match conn {
        AnyConnection::Sqlite(conn) => {
            let source = migrations.for_sqlite().ok_or_else(|| missing("SQLite"))?;
            waiting_for_others(conn, busy_timeout, |conn| {
                revert_sqlite(conn, handle.as_ref(), &source)
            })
        }
        AnyConnection::Postgres(conn) => {
            let source = migrations
                .for_postgres()
                .ok_or_else(|| missing("PostgreSQL"))?;
            with_migration_lock(conn, busy_timeout, |conn| {
                if conn
                    .applied_migrations()
                    .map_err(|e| migration_error(None, e))?
                    .is_empty()
                {
                    return Ok(None);
                }
                match conn.revert_last_migration(source) {
                    Ok(version) => Ok(Some(version.to_string())),
                    Err(e) => Err(migration_error(None, e)),
                }
            })?
        }
    }
}

/// The last applied of `source`'s migrations, if any.
#[cfg(feature = "cli")]
fn last_applied(
    conn: &mut SqliteConnection,
    source: &dyn diesel::migration::MigrationSource<Sqlite>,
) -> Result<Option<Box<dyn Migration<Sqlite>>>> {
    let Some(last) = conn
        .applied_migrations()
        .map_err(|e| migration_error(None, e))?
        .into_iter()
        .max()
    else {
        return Ok(None);
    };
    let migration = source
        .migrations()
        .map_err(|e| migration_error(None, e))?
        .into_iter()
        .find(|m| m.name().version() == last)
        .ok_or_else(|| {
            migration_error(
                None,
                format!("applied migration {last} is not in the folder").into(),
            )
        })?;
    Ok(Some(migration))
}

/// Reverts the last applied SQLite migration holding the write lock: in a transaction, or,
/// for one written to run outside one, with foreign keys off in the store's.
#[cfg(feature = "cli")]
fn revert_sqlite(
    conn: &mut SqliteConnection,
    handle: Option<&Handle>,
    source: &dyn diesel::migration::MigrationSource<Sqlite>,
) -> Result<Option<String>> {
    let outside = locked(conn, |conn| {
        let last = match last_applied(conn, source) {
            Ok(Some(last)) => last,
            Ok(None) => return (false, Ok(None)),
            Err(e) => return (false, Err(e)),
        };
        let version = last.name().version().to_string();
        if !last.metadata().run_in_transaction() {
            return (false, Ok(Some((version, true))));
        }
        match in_transaction(conn, &*last, Direction::Down) {
            Ok(()) => (true, Ok(Some((version, false)))),
            Err(e) => (false, Err(e)),
        }
    })?;
    let Some((version, true)) = outside else {
        return Ok(outside.map(|(version, _)| version));
    };
    conn.batch_execute("PRAGMA foreign_keys = OFF")?;
    let result = locked(conn, |conn| match last_applied(conn, source) {
        Ok(Some(last)) if last.name().version().to_string() == version => {
            let result = with_foreign_keys_off(conn, handle, &*last, Direction::Down);
            (result.is_ok(), result.map(|()| Some(version.clone())))
        }
        // Reverted by another process meanwhile.
        Ok(_) => (false, Ok(None)),
        Err(e) => (false, Err(e)),
    });
    conn.batch_execute("PRAGMA foreign_keys = ON")?;
    result
}

/// Runs `f` waiting as long as it takes for the write lock another process's migrations hold
/// (see [`WAIT_FOR_MIGRATIONS`]), then sets the connection's busy timeout back.
fn waiting_for_others<T>(
    conn: &mut SqliteConnection,
    busy_timeout: Duration,
    f: impl FnOnce(&mut SqliteConnection) -> Result<T>,
) -> Result<T> {
    conn.batch_execute(WAIT_FOR_MIGRATIONS)?;
    let result = f(conn);
    conn.batch_execute(&format!(
        "PRAGMA busy_timeout = {}",
        busy_timeout.as_millis()
    ))?;
    result
}

/// [`Error::Migration`] for Diesel's error running migrations (of `migration`, if known).
fn migration_error(
    migration: Option<&dyn std::fmt::Display>,
    e: Box<dyn std::error::Error + Send + Sync>,
) -> Error {
    Error::migration(migration, MigrationFailure::Run(e))
}

/// The error of a migration that failed, once it was rolled back: [`Error::Duplicates`] listing
/// the rows that share values in columns it makes unique, or that would share the default of
/// a unique column it adds, when that is why it failed;
/// [`MigrationFailure::Unconvertible`] naming the column whose values its new type cannot
/// hold; [`MigrationFailure::Breaks`] naming the trigger, view or index that uses a column it
/// drops in place (the database refuses the drop); [`Error::Migration`] with its message
/// otherwise.
fn failure<C>(
    conn: &mut C,
    migration: &dyn std::fmt::Display,
    e: Box<dyn std::error::Error + Send + Sync>,
) -> Error
where
    C: Explain,
    for<'a> SqlQuery: LoadQuery<'a, C, DuplicateRow> + LoadQuery<'a, C, Count>,
{
    if let Some((table, column)) = unconvertible(&e.to_string()) {
        return Error::migration(
            Some(migration),
            MigrationFailure::Unconvertible { table, column },
        );
    }
    let (table, columns, added) = match conn.why(&*e) {
        Some(Why::Breaks(breaks)) => return Error::migration(Some(migration), breaks),
        Some(Why::Unique {
            table,
            columns,
            added,
        }) => (table, columns, added),
        None => return migration_error(Some(migration), e),
    };
    // The table as it was: the columns it lacks are the migration's, added unique (SQLite
    // would read a missing column's quoted name in the lookup of duplicates as text).
    let found = match conn.columns_of(&table) {
        Ok(has) if columns.iter().all(|c| has.contains(c)) => duplicates(conn, &table, &columns),
        // Added, every row taking their default: all the rows share it.
        Ok(has) if columns.iter().all(|c| !has.contains(c)) && added.is_some() => {
            rows_of(conn, &table).map(|rows| {
                let set = Duplicate {
                    values: added.unwrap_or_default(),
                    rows,
                };
                if rows > 1 {
                    (vec![set], 1)
                } else {
                    (Vec::new(), 0)
                }
            })
        }
        // Added beside columns the table has (an index written by hand): the database's error.
        Ok(_) => Ok((Vec::new(), 0)),
        Err(e) => Err(e),
    };
    match found {
        Ok((duplicates, total)) if total > 0 => Error::Duplicates {
            migration: migration.to_string(),
            table,
            columns,
            duplicates,
            total,
        },
        _ => migration_error(Some(migration), e),
    }
}

/// The table and column of a migration that failed because a column's new type cannot hold
/// its values: its own check refused them ([`UNCONVERTIBLE`]: a SQLite rebuild's, or the one
/// before a PostgreSQL cast that would change them), or a SQLite rebuild's `STRICT` table did
/// (`cannot store TEXT value in INTEGER column t.c`).
fn unconvertible(message: &str) -> Option<(String, String)> {
    if let Some((_, named)) = message.split_once(UNCONVERTIBLE) {
        let mut values = serde_json::Deserializer::from_str(named).into_iter::<(String, String)>();
        return values.next()?.ok();
    }
    // Only a rebuild's copy: another statement storing a value of the wrong type is no type
    // change. A column's name, a field's, has no dot.
    let (_, stored) = message.split_once("cannot store ")?;
    let (_, qualified) = stored.split_once(&format!(" column {REBUILT}"))?;
    let (table, column) = qualified.trim_end().rsplit_once('.')?;
    Some((table.to_owned(), column.to_owned()))
}

/// One set of rows sharing values, as [`duplicates`] reads it.
#[derive(QueryableByName)]
struct DuplicateRow {
    /// The shared values, a JSON array.
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Named {
    #[diesel(sql_type = Text)]
    name: String,
}

/// Why a migration failed, as the database's error tells.
enum Why {
    /// A unique index could not be built on these columns of the table; `added` is the values
    /// the rows took, one per column, when the migration adds the columns (a column added
    /// unique with a default), as the database tells them.
    Unique {
        table: String,
        columns: Vec<String>,
        added: Option<Vec<String>>,
    },
    /// It drops a column that a trigger, view or index uses.
    Breaks(MigrationFailure),
}

/// A backend's ways to explain a migration that failed.
trait Explain {
    /// The SQL function building a JSON array.
    const JSON_ARRAY: &'static str;

    /// Why the migration failed with `e`, when the database's error tells one of the reasons
    /// [`Why`] lists.
    fn why(&mut self, e: &(dyn std::error::Error + 'static)) -> Option<Why>;

    /// The columns `table` has (once the migration was rolled back, or while its failed
    /// statement left the table as it was).
    fn columns_of(&mut self, table: &str) -> diesel::QueryResult<Vec<String>>;
}

impl Explain for SqliteConnection {
    const JSON_ARRAY: &'static str = "json_array";

    /// Diesel's migration errors keep the database's message. SQLite names the trigger, view
    /// or index an in-place drop would break (see [`dependents::broken_by_drop`]), and the
    /// table and columns a unique index could not be built on, `UNIQUE constraint failed:
    /// t.a, t.b`. A table being rebuilt (a column made unique) is named by its temporary name:
    /// the rows are the table's own.
    fn why(&mut self, e: &(dyn std::error::Error + 'static)) -> Option<Why> {
        let message = e.to_string();
        if let Some(breaks) = dependents::broken_by_drop(&message) {
            return Some(Why::Breaks(breaks));
        }
        let (_, list) = message.split_once("UNIQUE constraint failed: ")?;
        let mut table = None;
        let mut columns = Vec::new();
        for qualified in list.trim_end().split(", ") {
            let (t, column) = qualified.split_once('.')?;
            if *table.get_or_insert(t) != t {
                return None;
            }
            columns.push(column.to_owned());
        }
        let table = table?;
        // The rebuilt copy (still there: its copy failed) declares the new columns' defaults,
        // which every row took.
        let added = table
            .starts_with(REBUILT)
            .then(|| rebuilt_defaults(self, table, &columns).ok().flatten())
            .flatten();
        let table = table.strip_prefix(REBUILT).unwrap_or(table);
        Some(Why::Unique {
            table: table.to_owned(),
            columns,
            added,
        })
    }

    fn columns_of(&mut self, table: &str) -> diesel::QueryResult<Vec<String>> {
        let columns: Vec<Named> =
            diesel::sql_query("SELECT name FROM pragma_table_xinfo(?) ORDER BY cid")
                .bind::<Text, _>(table)
                .load(self)?;
        Ok(columns.into_iter().map(|c| c.name).collect())
    }
}

/// The defaults the rebuilt copy `rebuilt` declares for `columns`, as JSON renders them (see
/// [`values_of`]); `None` if one has none.
fn rebuilt_defaults(
    conn: &mut SqliteConnection,
    rebuilt: &str,
    columns: &[String],
) -> diesel::QueryResult<Option<Vec<String>>> {
    #[derive(QueryableByName)]
    struct Default {
        #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
        dflt_value: Option<String>,
    }
    let mut defaults = Vec::new();
    for column in columns {
        let found: Vec<Default> =
            diesel::sql_query("SELECT dflt_value FROM pragma_table_info(?) WHERE name = ?")
                .bind::<Text, _>(rebuilt)
                .bind::<Text, _>(column)
                .load(conn)?;
        match found.into_iter().next().and_then(|d| d.dflt_value) {
            Some(default) => defaults.push(default),
            None => return Ok(None),
        }
    }
    // The defaults are SQL literals SQLite read from the table's own definition.
    let row: DuplicateRow = diesel::sql_query(format!(
        "SELECT CAST(json_array({}) AS TEXT) AS key, 0 AS n",
        defaults.join(", ")
    ))
    .get_result(conn)?;
    Ok(Some(values_of(&row.key)))
}

impl Explain for PgConnection {
    const JSON_ARRAY: &'static str = "json_build_array";

    /// The connection's instrumentation kept the error that aborted the migration's
    /// transaction. For a unique index PostgreSQL names the table, and details `Key (a, b)=(..)
    /// is duplicated.`; for a column or table dropped that other objects depend on ("cannot
    /// drop column note of table items because other objects depend on it"), it details each,
    /// one a line (`view v depends on column note of table items`).
    fn why(&mut self, _: &(dyn std::error::Error + 'static)) -> Option<Why> {
        let cause = FirstFailure::take(self)?;
        if cause
            .message()
            .ends_with("because other objects depend on it")
        {
            return broken_on_postgres(cause.details()?).map(Why::Breaks);
        }
        if cause.kind != DatabaseErrorKind::UniqueViolation {
            return None;
        }
        let table = cause.table_name()?.to_owned();
        let (list, values) = cause.details()?.strip_prefix("Key (")?.split_once(")=(")?;
        let columns: Vec<String> = list
            .split(", ")
            .map(|c| c.trim_matches('"').replace("\"\"", "\""))
            .collect();
        // The values as PostgreSQL writes them, `(a, b)`: told apart only when there are as
        // many pieces as columns.
        let values: Vec<String> = values
            .strip_suffix(") is duplicated.")
            .unwrap_or(values)
            .split(", ")
            .map(str::to_owned)
            .collect();
        let added = (values.len() == columns.len()).then_some(values);
        Some(Why::Unique {
            table,
            columns,
            added,
        })
    }

    fn columns_of(&mut self, table: &str) -> diesel::QueryResult<Vec<String>> {
        let columns: Vec<Named> = diesel::sql_query(
            "SELECT column_name AS name FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1",
        )
        .bind::<Text, _>(table)
        .load(self)?;
        Ok(columns.into_iter().map(|c| c.name).collect())
    }
}

/// What PostgreSQL's refusal to drop what other objects depend on breaks: the first view,
/// trigger or index its DETAIL lists (`view v depends on column note of table items`; a view's
/// rule, `rule _RETURN on view v`, is the view), [`MigrationFailure::Breaks`] with the whole
/// DETAIL, which names every one of them. `None` if none is one of these (a function, a
/// policy).
fn broken_on_postgres(details: &str) -> Option<MigrationFailure> {
    let named = |text: &str| {
        let name = text.split(" on ").next().unwrap_or(text);
        match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
            Some(quoted) => quoted.replace("\"\"", "\""),
            None => name.to_owned(),
        }
    };
    let (kind, name) = details.lines().find_map(|line| {
        let (object, _) = line.split_once(" depends on ")?;
        if let Some((_, view)) = object
            .strip_prefix("rule ")
            .and_then(|rule| rule.split_once(" on view "))
        {
            return Some((SchemaObject::View, named(view)));
        }
        [
            ("materialized view ", SchemaObject::View),
            ("view ", SchemaObject::View),
            ("trigger ", SchemaObject::Trigger),
            ("index ", SchemaObject::Index),
        ]
        .into_iter()
        .find_map(|(prefix, kind)| Some((kind, named(object.strip_prefix(prefix)?))))
    })?;
    Some(MigrationFailure::Breaks {
        kind,
        name,
        message: details.lines().collect::<Vec<_>>().join("; "),
    })
}

/// The sets of rows of `table` sharing values in `columns` (rows with a NULL among them are
/// distinct), the most numerous first, at most [`Duplicate::LISTED`]; and how many there are.
fn duplicates<C>(
    conn: &mut C,
    table: &str,
    columns: &[String],
) -> diesel::QueryResult<(Vec<Duplicate>, usize)>
where
    C: Explain,
    for<'a> SqlQuery: LoadQuery<'a, C, DuplicateRow> + LoadQuery<'a, C, Count>,
{
    let quoted = columns.iter().map(|c| quote_ident(c)).collect::<Vec<_>>();
    let list = quoted.join(", ");
    let not_null = quoted
        .iter()
        .map(|c| format!("{c} IS NOT NULL"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let groups = format!(
        "FROM {} WHERE {not_null} GROUP BY {list} HAVING COUNT(*) > 1",
        quote_ident(table)
    );
    let total = diesel::sql_query(format!(
        "SELECT COUNT(*) AS n FROM (SELECT 1 AS one {groups}) AS d"
    ))
    .get_result::<Count>(conn)?
    .n;
    let rows: Vec<DuplicateRow> = diesel::sql_query(format!(
        "SELECT CAST({}({list}) AS TEXT) AS key, COUNT(*) AS n {groups} \
         ORDER BY COUNT(*) DESC, 1 LIMIT {}",
        C::JSON_ARRAY,
        Duplicate::LISTED
    ))
    .load(conn)?;
    let duplicates = rows
        .into_iter()
        .map(|row| Duplicate {
            values: values_of(&row.key),
            rows: usize::try_from(row.n).unwrap_or_default(),
        })
        .collect();
    Ok((duplicates, usize::try_from(total).unwrap_or_default()))
}

/// The values of a JSON array the database built, text unquoted.
fn values_of(key: &str) -> Vec<String> {
    match serde_json::from_str::<Vec<serde_json::Value>>(key) {
        Ok(values) => values
            .into_iter()
            .map(|value| match value {
                serde_json::Value::String(text) => text,
                other => other.to_string(),
            })
            .collect(),
        Err(_) => vec![key.to_owned()],
    }
}

/// How many rows `table` holds.
fn rows_of<C>(conn: &mut C, table: &str) -> diesel::QueryResult<usize>
where
    for<'a> SqlQuery: LoadQuery<'a, C, Count>,
{
    let rows = diesel::sql_query(format!("SELECT COUNT(*) AS n FROM {}", quote_ident(table)))
        .get_result::<Count>(conn)?
        .n;
    Ok(usize::try_from(rows).unwrap_or_default())
}

/// The pending SQLite migrations (Diesel creates its table of applied migrations if needed).
fn pending(
    conn: &mut SqliteConnection,
    migrations: &BackendMigrations,
) -> Result<Vec<Box<dyn Migration<Sqlite>>>> {
    let source = migrations.for_sqlite().expect("checked by `run`");
    conn.pending_migrations(source)
        .map_err(|e| migration_error(None, e))
}

/// Runs `f` in a `BEGIN IMMEDIATE` transaction: committed when `f` asks for it (which keeps the
/// migrations that ran before a failing one, as separate transactions would), rolled back
/// otherwise.
fn locked<T>(
    conn: &mut SqliteConnection,
    f: impl FnOnce(&mut SqliteConnection) -> (bool, Result<T>),
) -> Result<T> {
    AnsiTransactionManager::begin_transaction_sql(conn, "BEGIN IMMEDIATE")?;
    let (commit, result) = f(conn);
    if commit {
        AnsiTransactionManager::commit_transaction(conn)?;
    } else {
        AnsiTransactionManager::rollback_transaction(conn)?;
    }
    result
}

/// Runs the pending SQLite migrations in order, each stretch of them holding the write lock.
///
/// A stretch of migrations that run in a transaction runs in one, each in a savepoint. A
/// migration marked `run_in_transaction = false` (a generated table rebuild, which needs
/// foreign keys off, which SQLite allows only outside a transaction) runs in a transaction of
/// its own with foreign keys off, begun by the store; its own `BEGIN`, `COMMIT` and
/// `PRAGMA foreign_keys` are skipped, and the foreign keys are checked before it commits (see
/// [`PointingNowhere`]). The
/// pending migrations are read again each time the lock is taken: another process may have run
/// some meanwhile.
fn run_sqlite(
    conn: &mut SqliteConnection,
    handle: Option<&Handle>,
    migrations: &BackendMigrations,
) -> Result<()> {
    loop {
        let next_outside = locked(conn, |conn| {
            let pending = match pending(conn, migrations) {
                Ok(pending) => pending,
                Err(e) => return (false, Err(e)),
            };
            for migration in &pending {
                if !migration.metadata().run_in_transaction() {
                    return (true, Ok(true));
                }
                if let Err(e) = in_transaction(conn, &**migration, Direction::Up) {
                    return (true, Err(e));
                }
            }
            (true, Ok(false))
        })?;
        if !next_outside {
            return Ok(());
        }
        conn.batch_execute("PRAGMA foreign_keys = OFF")?;
        let result = locked(conn, |conn| {
            let pending = match pending(conn, migrations) {
                Ok(pending) => pending,
                Err(e) => return (false, Err(e)),
            };
            match pending.first() {
                Some(migration) if !migration.metadata().run_in_transaction() => {
                    let result = with_foreign_keys_off(conn, handle, &**migration, Direction::Up);
                    (result.is_ok(), result)
                }
                // Run by another process meanwhile.
                _ => (true, Ok(())),
            }
        });
        conn.batch_execute("PRAGMA foreign_keys = ON")?;
        result?;
    }
}

/// Runs a SQLite migration written to run in a transaction (either way) in a savepoint of the
/// store's transaction, and keeps it only if what worked before it still works after it (see
/// [`Dependents`]): SQLite's in-place `ALTER TABLE .. DROP COLUMN` checks the triggers on the
/// table, the views and the indexes, not a trigger on another table that writes or reads the
/// column, which would fail on its next use.
fn in_transaction(
    conn: &mut SqliteConnection,
    migration: &dyn Migration<Sqlite>,
    direction: Direction,
) -> Result<()> {
    /// Why the savepoint was rolled back.
    enum Stop {
        Failed(Box<dyn std::error::Error + Send + Sync>),
        Breaks(MigrationFailure),
        Query(diesel::result::Error),
    }
    impl From<diesel::result::Error> for Stop {
        fn from(e: diesel::result::Error) -> Self {
            Self::Query(e)
        }
    }
    let dependents = Dependents::read(conn)?;
    let ran = conn.transaction(|conn| {
        match direction {
            Direction::Up => conn.run_migration(migration).map(drop),
            Direction::Down => conn.revert_migration(migration).map(drop),
        }
        .map_err(Stop::Failed)?;
        match dependents.restore(conn) {
            Ok(()) => Ok(()),
            Err(Restore::Query(e)) => Err(Stop::Query(e)),
            Err(Restore::Breaks(failure)) => Err(Stop::Breaks(failure)),
        }
    });
    match ran {
        Ok(()) => Ok(()),
        // Explained once rolled back, as Diesel's own savepoint leaves it.
        Err(Stop::Failed(e)) => Err(failure(conn, &migration.name(), e)),
        Err(Stop::Breaks(breaks)) => Err(Error::migration(Some(&migration.name()), breaks)),
        Err(Stop::Query(e)) => Err(e.into()),
    }
}

/// Which way a migration runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Up,
    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    Down,
}

/// Runs a migration written to run outside a transaction (either way) inside the one the
/// store holds, keeps the triggers of the tables it rebuilt, then checks the foreign keys it
/// may have broken.
fn with_foreign_keys_off(
    conn: &mut SqliteConnection,
    handle: Option<&Handle>,
    migration: &dyn Migration<Sqlite>,
    direction: Direction,
) -> Result<()> {
    let handle = handle.ok_or_else(|| {
        Error::migration(
            Some(&migration.name()),
            MigrationFailure::Run(
                "a migration that runs outside a transaction needs the connection's handle".into(),
            ),
        )
    })?;
    let dependents = Dependents::read(conn)?;
    let pointing_nowhere = PointingNowhere::read(conn)?;
    let ran = {
        let mut conn = SkipTransactionControl::new(handle, conn);
        match direction {
            Direction::Up => conn.run_migration(migration),
            Direction::Down => conn.revert_migration(migration),
        }
    };
    // Left on if the migration failed between a rebuild's two pragmas.
    conn.batch_execute("PRAGMA legacy_alter_table = OFF")?;
    let failed = |failure| Error::migration(Some(&migration.name()), failure);
    let broken = |rows| failed(MigrationFailure::BrokenForeignKeys { rows });
    if let Err(e) = ran {
        // A generated rebuild checks the foreign keys itself before it commits (for a run
        // outside the store), and fails there: the same broken keys as the store's check.
        let checked_keys = e.to_string().contains("foreign_key_violations");
        let added = PointingNowhere::read(conn).map(|now| now.beyond(&pointing_nowhere));
        return Err(match added {
            Ok(rows) if checked_keys && rows > 0 => broken(rows),
            _ => failure(conn, &migration.name(), e),
        });
    }
    match dependents.restore(conn) {
        Ok(()) => {}
        Err(Restore::Query(e)) => return Err(e.into()),
        Err(Restore::Breaks(failure)) => return Err(failed(failure)),
    }
    match PointingNowhere::read(conn)?.beyond(&pointing_nowhere) {
        0 => Ok(()),
        rows => Err(broken(rows)),
    }
}

/// How many rows of each table reference a row that is not there, in the open transaction. A
/// migration is answerable for those it adds, not for those another tool left (with foreign
/// keys off, or before they were declared).
struct PointingNowhere(Vec<TableCount>);

#[derive(QueryableByName)]
struct TableCount {
    #[diesel(sql_type = Text)]
    t: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

impl PointingNowhere {
    fn read(conn: &mut SqliteConnection) -> diesel::QueryResult<Self> {
        diesel::sql_query(
            "SELECT \"table\" AS t, count(*) AS n FROM pragma_foreign_key_check GROUP BY 1",
        )
        .load(conn)
        .map(Self)
    }

    /// How many more rows point nowhere now than `before`, table by table.
    fn beyond(&self, before: &Self) -> usize {
        self.0
            .iter()
            .map(|now| {
                let was = before.0.iter().find(|b| b.t == now.t).map_or(0, |b| b.n);
                usize::try_from(now.n - was).unwrap_or_default()
            })
            .sum()
    }
}

/// Runs `f` holding a session-level advisory lock, so that several processes opening the same
/// PostgreSQL database at once run its migrations one after the other (each waits, then finds
/// them applied).
fn with_migration_lock<T>(
    conn: &mut PgConnection,
    busy_timeout: Duration,
    f: impl FnOnce(&mut PgConnection) -> T,
) -> Result<T> {
    // A key of this crate's own: the bytes of "datastor" read as a big-endian integer.
    const KEY: i64 = i64::from_be_bytes(*b"datastor");
    // Waiting for another process's migrations is not a busy database: no lock timeout while
    // waiting for the lock, the usual one while migrating.
    conn.batch_execute(&format!(
        "SET lock_timeout = 0; SELECT pg_advisory_lock({KEY}); SET lock_timeout = {}",
        busy_timeout.as_millis()
    ))?;
    let result = f(conn);
    conn.batch_execute(&format!("SELECT pg_advisory_unlock({KEY})"))?;
    Ok(result)
}
