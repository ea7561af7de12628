//! What a SQLite migration that rebuilds tables must leave working around them. SQLite drops a
//! table's triggers and indexes with the table, so a rebuild (create the new table, copy, drop
//! the old, rename) loses them: it keeps the definitions of its triggers, and of the indexes no
//! model declares, for the store to create them again. And a
//! trigger or view that names a column the rebuilt table no longer has is not refused then
//! (the rename runs with `legacy_alter_table` on), only each time it is used: what worked
//! before the migration must work after it. The same holds of a migration that runs in a
//! transaction: an in-place `ALTER TABLE .. DROP COLUMN` does not check the triggers of other
//! tables.

use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::{QueryResult, QueryableByName, RunQueryDsl, SqliteConnection};

use crate::migrate::{MigrationFailure, SchemaObject};
use crate::schema::ddl::{DROPPED_INDEXES, DROPPED_TRIGGERS, quote_ident};

/// A trigger or index a rebuild dropped with its table, as the drop found it.
#[derive(QueryableByName)]
struct Dropped {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    tbl_name: String,
    #[diesel(sql_type = Text)]
    sql: String,
}

#[derive(QueryableByName)]
struct Named {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// A use of the schema that compiles triggers or views, which SQLite refuses if one names what
/// is not there.
#[derive(Clone, Copy, PartialEq)]
enum Use {
    /// Renaming a table: SQLite checks every trigger's expressions and every view.
    Rename,
    /// Inserting no row into the table or view: compiles its insert triggers.
    Insert,
    /// Updating every column of no row: compiles its update triggers.
    Update,
    /// Deleting no row: compiles its delete triggers.
    Delete,
}

/// The uses of the schema that worked before a migration; [`restore`](Self::restore) makes
/// them work after it.
pub(super) struct Dependents {
    worked: Vec<(Use, Option<String>)>,
}

impl Dependents {
    /// Reads them, inside the migration's transaction, before it runs: SQLite's check of every
    /// trigger and view, and a statement of each kind on each table or view with triggers.
    pub(super) fn read(conn: &mut SqliteConnection) -> QueryResult<Self> {
        let with_triggers: Vec<Named> = diesel::sql_query(
            "SELECT DISTINCT tbl_name AS name FROM sqlite_master WHERE type = 'trigger'",
        )
        .load(conn)?;
        let mut worked = Vec::new();
        if try_use(conn, Use::Rename, None)?.is_ok() {
            worked.push((Use::Rename, None));
        }
        for object in with_triggers {
            for kind in [Use::Insert, Use::Update, Use::Delete] {
                if try_use(conn, kind, Some(&object.name))?.is_ok() {
                    worked.push((kind, Some(object.name.clone())));
                }
            }
        }
        Ok(Self { worked })
    }

    /// After the migration ran: creates again each trigger a rebuild dropped with its table
    /// (kept in [`DROPPED_TRIGGERS`] as the drop found it) that the migration did not create
    /// again itself, then checks that each use of the schema that worked before still does.
    pub(super) fn restore(self, conn: &mut SqliteConnection) -> Result<(), Restore> {
        create_again(conn, DROPPED_INDEXES, SchemaObject::Index)?;
        create_again(conn, DROPPED_TRIGGERS, SchemaObject::Trigger)?;
        for (kind, object) in &self.worked {
            let object = object.as_deref();
            if let Some(object) = object {
                if !exists(conn, "table", object)? && !exists(conn, "view", object)? {
                    continue; // dropped by the migration
                }
            }
            if let Err(e) = try_use(conn, *kind, object)? {
                match broken(conn, *kind, object, e)? {
                    Some(broken) => return Err(Restore::Breaks(broken)),
                    None => continue,
                }
            }
        }
        Ok(())
    }
}

/// Creates again each `kind` of object a rebuild dropped with its table (kept in the temporary
/// table `kept` as the drop found it) that the migration did not create again itself; one that
/// SQLite refuses now (it names a column the table no longer has) fails the migration.
fn create_again(
    conn: &mut SqliteConnection,
    kept: &str,
    kind: SchemaObject,
) -> Result<(), Restore> {
    let found: Count = diesel::sql_query(format!(
        "SELECT count(*) AS n FROM temp.sqlite_master WHERE name = '{kept}'"
    ))
    .get_result(conn)?;
    if found.n == 0 {
        return Ok(());
    }
    let dropped: Vec<Dropped> = diesel::sql_query(format!(
        "SELECT name, tbl_name, sql FROM temp.{kept} ORDER BY rowid"
    ))
    .load(conn)?;
    conn.batch_execute(&format!("DROP TABLE temp.{kept}"))?;
    for object in dropped {
        if exists(conn, &kind.to_string(), &object.name)?
            || !exists(conn, "table", &object.tbl_name)?
        {
            continue; // created again by the migration, or its table is gone
        }
        conn.batch_execute(&object.sql).map_err(|e| {
            Restore::Breaks(MigrationFailure::Breaks {
                kind,
                name: object.name.clone(),
                message: e.to_string(),
            })
        })?;
    }
    Ok(())
}

/// Why [`Dependents::restore`] failed.
pub(super) enum Restore {
    /// Reading the schema failed.
    Query(diesel::result::Error),
    /// The migration breaks a trigger or view.
    Breaks(MigrationFailure),
}

impl From<diesel::result::Error> for Restore {
    fn from(e: diesel::result::Error) -> Self {
        Self::Query(e)
    }
}

fn exists(conn: &mut SqliteConnection, kind: &str, name: &str) -> QueryResult<bool> {
    diesel::sql_query(
        "SELECT count(*) AS n FROM sqlite_schema WHERE type = ? AND name = ? COLLATE NOCASE",
    )
    .bind::<Text, _>(kind)
    .bind::<Text, _>(name)
    .get_result::<Count>(conn)
    .map(|found| found.n > 0)
}

/// Makes a use of the schema inside a savepoint that leaves nothing of it: `Ok(Err(e))` if
/// SQLite refused it.
fn try_use(
    conn: &mut SqliteConnection,
    kind: Use,
    object: Option<&str>,
) -> QueryResult<Result<(), diesel::result::Error>> {
    let sql = match (kind, object) {
        (Use::Rename, _) | (_, None) => {
            "PRAGMA legacy_alter_table = OFF; CREATE TABLE __datastore_probe (x); \
             ALTER TABLE __datastore_probe RENAME TO __datastore_probed;"
                .to_owned()
        }
        (kind, Some(object)) => {
            // The columns a statement may name (not generated ones).
            let columns: Vec<Named> = diesel::sql_query(
                "SELECT name FROM pragma_table_xinfo(?) WHERE hidden = 0 ORDER BY cid",
            )
            .bind::<Text, _>(object)
            .load(conn)?;
            let columns: Vec<String> = columns.iter().map(|c| quote_ident(&c.name)).collect();
            let object = quote_ident(object);
            match kind {
                Use::Insert => format!(
                    "INSERT INTO {object} ({0}) SELECT {0} FROM {object} WHERE 0;",
                    columns.join(", ")
                ),
                Use::Update => format!(
                    "UPDATE {object} SET {} WHERE 0;",
                    columns
                        .iter()
                        .map(|c| format!("{c} = {c}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                _ => format!("DELETE FROM {object} WHERE 0;"),
            }
        }
    };
    conn.batch_execute("SAVEPOINT datastore_probe;")?;
    let result = conn.batch_execute(&sql);
    conn.batch_execute("ROLLBACK TO datastore_probe; RELEASE datastore_probe;")?;
    Ok(result)
}

/// The trigger, view or index an in-place `DROP COLUMN` would leave naming the column, which
/// SQLite names as it refuses the drop (`error in view v after drop column: no such column:
/// note`): [`MigrationFailure::Breaks`], with the rest of SQLite's message.
pub(super) fn broken_by_drop(message: &str) -> Option<MigrationFailure> {
    let (_, named) = message.split_once("error in ")?;
    let (kind, named) = named.split_once(' ')?;
    let kind = match kind {
        "trigger" => SchemaObject::Trigger,
        "view" => SchemaObject::View,
        "index" => SchemaObject::Index,
        _ => return None,
    };
    let (name, message) = named.split_once(" after drop column: ")?;
    Some(MigrationFailure::Breaks {
        kind,
        name: name.to_owned(),
        message: message.to_owned(),
    })
}

/// What a use of the schema that failed breaks: SQLite names the trigger or view a rename
/// finds unsound; for a statement on `object`, the trigger on it without which the statement
/// works (or its first, if none alone).
fn broken(
    conn: &mut SqliteConnection,
    kind: Use,
    object: Option<&str>,
    e: diesel::result::Error,
) -> Result<Option<MigrationFailure>, Restore> {
    let message = e.to_string();
    if message.contains("because it is a view") {
        return Ok(None); // the migration dropped the view's trigger for this statement
    }
    let named = [
        ("error in trigger ", SchemaObject::Trigger),
        ("error in view ", SchemaObject::View),
    ]
    .into_iter()
    .find_map(|(prefix, kind)| {
        let (name, message) = message.strip_prefix(prefix)?.split_once(": ")?;
        Some((kind, name.to_owned(), message.to_owned()))
    });
    if let Some((kind, name, message)) = named {
        return Ok(Some(MigrationFailure::Breaks {
            kind,
            name,
            message,
        }));
    }
    let Some(object) = object.filter(|_| kind != Use::Rename) else {
        return Err(Restore::Query(e));
    };
    let triggers: Vec<Named> = diesel::sql_query(
        "SELECT name FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = ? COLLATE NOCASE",
    )
    .bind::<Text, _>(object)
    .load(conn)?;
    let mut culprit = None;
    for trigger in &triggers {
        conn.batch_execute(&format!(
            "SAVEPOINT datastore_culprit; DROP TRIGGER {};",
            quote_ident(&trigger.name)
        ))?;
        let without = try_use(conn, kind, Some(object))?;
        conn.batch_execute("ROLLBACK TO datastore_culprit; RELEASE datastore_culprit;")?;
        if without.is_ok() {
            culprit = Some(trigger.name.clone());
            break;
        }
    }
    let Some(name) = culprit.or_else(|| triggers.first().map(|t| t.name.clone())) else {
        return Err(Restore::Query(e));
    };
    Ok(Some(MigrationFailure::Breaks {
        kind: SchemaObject::Trigger,
        name,
        message,
    }))
}
