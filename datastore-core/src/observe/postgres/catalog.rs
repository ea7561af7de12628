//! What observe reads of PostgreSQL's catalog: the schema new tables go to, the columns of
//! the tables a subscription decodes, the tables it reports on and those it refuses, and the
//! notification channel of a schema.

use std::collections::HashMap;

use diesel::connection::SimpleConnection;
use diesel::sql_types::{Array, Bool, Nullable, Text};
use diesel::{PgConnection, QueryableByName, RunQueryDsl};

use crate::schema::ddl::quote_ident;
use crate::{Error, Result};

/// What a channel's name starts with.
pub(super) const CHANNEL_PREFIX: &str = "datastore:";

/// The notification channel of a schema's changes: `datastore:` and the md5 of its name (the
/// trigger computes the same), short enough for PostgreSQL's 63-byte limit whatever the name.
pub(super) fn channel(conn: &mut PgConnection, schema: &str) -> Result<String> {
    let rows: Vec<Name> = diesel::sql_query("SELECT 'datastore:' || md5($1) AS name")
        .bind::<Text, _>(schema)
        .load(conn)?;
    Error::one_row(rows, "md5()").map(|r| r.name)
}

#[derive(QueryableByName)]
pub(super) struct Name {
    #[diesel(sql_type = Text)]
    pub(super) name: String,
}

/// The schema new tables go to on this connection (the first of its search path).
pub(crate) fn current_schema(conn: &mut PgConnection) -> Result<String> {
    let rows: Vec<Name> = diesel::sql_query("SELECT current_schema()::text AS name").load(conn)?;
    Error::one_row(rows, "current_schema()").map(|r| r.name)
}

/// The tables of a schema that observe reports on (all but its own and Diesel's) to a store
/// whose role may read them (`SELECT`): what an `observe_all` sets up and watches. Read when
/// it subscribes and whenever the listener checks the tables it watches.
pub(crate) fn observable_tables(conn: &mut PgConnection, schema: &str) -> Result<Vec<String>> {
    let rows: Vec<Name> = diesel::sql_query(
        // The privilege asked by the table's oid: asked by its name, a table dropped as the
        // query runs would fail it ("does not exist") rather than leave it out.
        "SELECT c.relname::text AS name FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') \
         AND NOT starts_with(c.relname::text, '__diesel') \
         AND c.relname <> 'datastore_change_payloads' \
         AND has_table_privilege(c.oid, 'SELECT') IS TRUE \
         ORDER BY c.relname",
    )
    .bind::<Text, _>(schema)
    .load(conn)?;
    Ok(rows.into_iter().map(|r| r.name).collect())
}

/// The columns, in order, of those of `tables` that are in the schema new tables go to (the
/// first of the search path), by table; a table not there is left out. The server's own
/// error (permission denied) if the store's role may not read one of them (`SELECT`), as
/// reading it would fail: its rows are not the store's to hand out, and the logical feed skips
/// its changes (see `logical::Relation`). One round trip, and a second to be refused. Asked by
/// every subscription to named tables before anything is set up for them: those that decode
/// rows use the columns, a query subscription (`observe_query`) only the refusal.
pub(crate) fn readable_columns(
    conn: &mut PgConnection,
    tables: &[String],
) -> Result<HashMap<String, Vec<String>>> {
    #[derive(QueryableByName)]
    struct Column {
        #[diesel(sql_type = Text)]
        schema_name: String,
        #[diesel(sql_type = Text)]
        table_name: String,
        #[diesel(sql_type = Bool)]
        readable: bool,
        /// None for a table without columns.
        #[diesel(sql_type = Nullable<Text>)]
        column_name: Option<String>,
    }
    let rows: Vec<Column> = diesel::sql_query(
        // The privilege asked by the table's oid, as `observable_tables` asks it.
        "SELECT n.nspname::text AS schema_name, c.relname::text AS table_name, \
             has_table_privilege(c.oid, 'SELECT') AS readable, a.attname::text AS column_name \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
         WHERE n.nspname = current_schema() AND c.relname = ANY($1) \
         ORDER BY c.relname, a.attnum",
    )
    .bind::<Array<Text>, _>(tables)
    .load(conn)?;
    let mut columns: HashMap<String, Vec<String>> = HashMap::new();
    let mut unreadable: Vec<(String, String)> = Vec::new();
    for row in rows {
        if !row.readable && !unreadable.iter().any(|(_, t)| *t == row.table_name) {
            unreadable.push((row.schema_name, row.table_name.clone()));
        }
        columns
            .entry(row.table_name)
            .or_default()
            .extend(row.column_name);
    }
    for (schema, table) in unreadable {
        // Fails as reading it would, unless it was granted meanwhile.
        conn.batch_execute(&format!(
            "SELECT FROM {}.{} WHERE false",
            quote_ident(&schema),
            quote_ident(&table)
        ))?;
    }
    Ok(columns)
}

/// Refuses, before anything is set up, to observe a partitioned table or a partition of one:
/// a partitioned table holds no row itself, its partitions do, and both feeds would report
/// their changes under the partition's name (a subscriber of the partitioned table would hear
/// nothing), while a partition's own triggers are its table's clones, which cannot be set up
/// apart. Such a table never counts as set up (`triggers::triggered_tables`,
/// `logical::published_tables`), so it reaches this check whatever set it up before.
/// `Error::Unsupported` names one of them (the first by name).
pub(super) fn refuse_partitioned(
    conn: &mut PgConnection,
    schema: &str,
    tables: &[&String],
) -> Result<()> {
    #[derive(QueryableByName)]
    struct Partitioned {
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
        parent: Option<String>,
    }
    let rows: Vec<Partitioned> = diesel::sql_query(
        "SELECT c.relname::text AS name, \
             (SELECT i.inhparent::regclass::text FROM pg_inherits i \
              WHERE c.relispartition AND i.inhrelid = c.oid) AS parent \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = ANY($2) AND (c.relkind = 'p' OR c.relispartition) \
         ORDER BY c.relname LIMIT 1",
    )
    .bind::<Text, _>(schema)
    .bind::<diesel::sql_types::Array<Text>, _>(tables)
    .load(conn)?;
    match rows.into_iter().next() {
        None => Ok(()),
        Some(Partitioned { name, parent: None }) => Err(Error::Unsupported(format!(
            "observe does not follow partitioned tables: `{name}` is one (its rows live in its \
             partitions, whose changes would be reported under their own names); the schema's \
             other tables can be observed by model"
        ))),
        Some(Partitioned {
            name,
            parent: Some(parent),
        }) => Err(Error::Unsupported(format!(
            "observe does not follow partitioned tables or their partitions: `{name}` is a \
             partition of `{parent}`; the schema's other tables can be observed by model"
        ))),
    }
}
