//! What a SQLite migration that rebuilds tables must leave working around them: SQLite drops a
//! table's triggers with the table, so a rebuild (create the new table, copy, drop the old,
//! rename) loses them; and a view, or a trigger, that names a column the rebuilt table no
//! longer has is not refused when the table changes, only each time it is used.

use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::{QueryResult, QueryableByName, RunQueryDsl, SqliteConnection};

use crate::migrate::{MigrationFailure, SchemaObject};
use crate::schema::ddl::quote_ident;

/// A trigger on a table, as the schema held it before the migration.
#[derive(QueryableByName)]
struct Trigger {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    sql: String,
    /// Where its table's rows were stored: a rebuilt table has another.
    #[diesel(sql_type = BigInt)]
    rootpage: i64,
}

/// A table or trigger of the schema after the migration.
#[derive(QueryableByName)]
struct Object {
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = BigInt)]
    rootpage: i64,
}

#[derive(QueryableByName)]
struct Named {
    #[diesel(sql_type = Text)]
    name: String,
}

/// The triggers on the tables of the main database, and the views that work, before a
/// migration; [`restore`](Self::restore) makes them so after it.
pub(super) struct Dependents {
    triggers: Vec<Trigger>,
    views: Vec<String>,
}

impl Dependents {
    /// Reads them, inside the migration's transaction, before it runs.
    pub(super) fn read(conn: &mut SqliteConnection) -> QueryResult<Self> {
        let triggers = diesel::sql_query(
            "SELECT t.name, t.tbl_name AS table_name, t.sql, m.rootpage \
             FROM sqlite_schema t JOIN sqlite_schema m ON m.type = 'table' AND m.name = t.tbl_name \
             WHERE t.type = 'trigger' AND t.sql IS NOT NULL",
        )
        .load(conn)?;
        let mut views = Vec::new();
        for view in views_of(conn)? {
            if works(conn, &view).is_ok() {
                views.push(view);
            }
        }
        Ok(Self { triggers, views })
    }

    /// After the migration ran: creates again each trigger that a rebuild of its table
    /// dropped (the table is there, stored anew, and the trigger is not), and checks that each
    /// trigger so created, and each view that worked before, still works.
    pub(super) fn restore(self, conn: &mut SqliteConnection) -> Result<(), Restore> {
        let now: Vec<Object> = diesel::sql_query(
            "SELECT type AS kind, name, coalesce(rootpage, 0) AS rootpage FROM sqlite_schema \
             WHERE type IN ('table', 'trigger')",
        )
        .load(conn)?;
        let find = |kind: &str, name: &str| now.iter().find(|o| o.kind == kind && o.name == name);
        for trigger in &self.triggers {
            let rebuilt = find("table", &trigger.table_name)
                .is_some_and(|table| table.rootpage != trigger.rootpage);
            if !rebuilt || find("trigger", &trigger.name).is_some() {
                continue;
            }
            let broken = |e: diesel::result::Error| {
                Restore::Breaks(MigrationFailure::Breaks {
                    kind: SchemaObject::Trigger,
                    name: trigger.name.clone(),
                    message: e.to_string(),
                })
            };
            conn.batch_execute(&trigger.sql).map_err(broken)?;
            fire_nothing(conn, &trigger.table_name).map_err(broken)?;
        }
        let views = views_of(conn)?;
        for view in self.views.into_iter().filter(|v| views.contains(v)) {
            works(conn, &view).map_err(|e| {
                Restore::Breaks(MigrationFailure::Breaks {
                    kind: SchemaObject::View,
                    name: view.clone(),
                    message: e.to_string(),
                })
            })?;
        }
        Ok(())
    }
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

fn views_of(conn: &mut SqliteConnection) -> QueryResult<Vec<String>> {
    let views: Vec<Named> =
        diesel::sql_query("SELECT name FROM sqlite_schema WHERE type = 'view'").load(conn)?;
    Ok(views.into_iter().map(|v| v.name).collect())
}

/// Whether selecting from `view` works (SQLite reads a view's definition only then).
fn works(conn: &mut SqliteConnection, view: &str) -> QueryResult<()> {
    conn.batch_execute(&format!("SELECT * FROM {} WHERE 0", quote_ident(view)))
}

/// Inserts, updates every column of, and deletes no row of `table`: SQLite compiles the
/// table's triggers when it prepares each statement, and fails on one that names what is not
/// there.
fn fire_nothing(conn: &mut SqliteConnection, table: &str) -> QueryResult<()> {
    let columns: Vec<Named> = diesel::sql_query("SELECT name FROM pragma_table_info(?)")
        .bind::<Text, _>(table)
        .load(conn)?;
    let table = quote_ident(table);
    let set = columns
        .iter()
        .map(|c| format!("{0} = {0}", quote_ident(&c.name)))
        .collect::<Vec<_>>()
        .join(", ");
    conn.batch_execute(&format!(
        "INSERT INTO {table} SELECT * FROM {table} WHERE 0; \
         UPDATE {table} SET {set} WHERE 0; \
         DELETE FROM {table} WHERE 0;"
    ))
}
