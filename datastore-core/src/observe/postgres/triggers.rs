//! What observe installs in a PostgreSQL schema, and the checks around it: the change table,
//! the trigger functions and each observed table's triggers; whether what is there is this
//! version's and trustworthy; whether installing would wait for the caller's own transaction;
//! and removing recorded changes once every listener has read them.
//!
//! Each observed table has four triggers. A statement trigger runs once per statement, before
//! its rows: it reads the table's columns (a catalog query, too costly per row), a horizon
//! (every transaction below it had ended), and numbers the transaction's top-level
//! statements, into transaction-local settings. The row triggers (`AFTER INSERT OR UPDATE`,
//! and `BEFORE DELETE`, where `pg_trigger_depth()` tells a cascade's rows from the
//! statement's) record each change in the change table with those, and `NOTIFY` its id and a
//! random token. A `TRUNCATE` fires no row trigger: the row function, run as a `BEFORE
//! TRUNCATE` statement trigger, records it (without rows), for the listener to report. Where
//! no statement trigger ran before a row (logical replication's apply worker fires row
//! triggers only; the triggers fire always where the store's role owns the table), the row
//! reads the columns and the horizon itself.
//!
//! The names (table, functions, triggers, channel) are those of the earlier versions, and
//! the records and notifications have their format, so that stores of the previous version
//! keep reading them during a rolling upgrade. What is current is decided by the functions'
//! bodies, not by a name or a comment an earlier version may leave in place.

use std::collections::HashMap;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::sql_types::{Array, BigInt, Bool, Integer, Text};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};

use super::Name;
use crate::schema::ddl::{Dialect, quote_ident, quote_literal};
use crate::{Error, Result};

/// How long a recorded change is kept after its transaction ended, for every listener to read
/// (a listener held up for longer than half of it ends its feed; one busy and further behind
/// is told it missed the changes removed before it read them: [`removed_changes`]).
pub(super) const RETENTION: Duration = Duration::from_secs(600);

/// The change table's name.
pub(super) const CHANGE_TABLE: &str = "datastore_change_payloads";

/// The comment the previous version checks its function by: kept, so that its stores leave
/// this body in place (it writes what they read).
fn legacy_comment(schema: &str) -> String {
    format!("datastore observe 2 in {schema}")
}

/// The change table, qualified.
pub(super) fn changes_table(schema: &str) -> String {
    format!("{}.{}", quote_ident(schema), CHANGE_TABLE)
}

/// The body of the row trigger function. It names its schema (a planned statement, where
/// looking the table up by `TG_TABLE_SCHEMA` would cost a dynamic one per row).
///
/// A trigger created with an argument (this version's) takes the columns and the statement's
/// number from its statement trigger, or reads the columns itself where that did not run (a
/// logical replication apply worker fires row triggers only), and records the statement
/// trigger's horizon capped by its own snapshot's (the setting is the writer's session's to
/// change); one created without (by an earlier version, which knows no statement trigger)
/// reads the columns itself and records no horizon.
fn notify_body(schema: &str) -> String {
    let table = changes_table(schema);
    format!(
        r#"
DECLARE
    token UUID;
    stored BIGINT;
    columns TEXT;
    horizon BIGINT;
BEGIN
    -- An update that changes nothing is no change.
    IF TG_OP = 'UPDATE' AND OLD::text = NEW::text THEN
        RETURN NULL;
    END IF;
    IF TG_NARGS > 0 THEN
        columns := current_setting('datastore.columns_' || TG_RELID, true);
        horizon := nullif(current_setting('datastore.horizon', true), '')::bigint;
    END IF;
    IF columns IS NULL OR columns = '' THEN
        columns := (SELECT array_agg(a.attname::text || ' ' || a.atttypid::text ORDER BY a.attnum)
                    FROM pg_attribute a
                    WHERE a.attrelid = TG_RELID AND a.attnum > 0 AND NOT a.attisdropped)::text;
        -- Logical replication's apply worker fires no statement trigger: its rows read the
        -- columns once a transaction (no schema change comes within an applied one; elsewhere
        -- one may, and a child table's rows come without its own statement trigger).
        IF TG_NARGS > 0 AND current_setting('session_replication_role') = 'replica' THEN
            PERFORM set_config('datastore.columns_' || TG_RELID, columns, true);
        END IF;
    END IF;
    -- The horizon, capped by the row's own snapshot: a writer's session can set the setting
    -- itself, also in the middle of a statement, and one too new would have the cleanup
    -- remove rows a listener has yet to read. Where no statement trigger ran, this is the
    -- row's own (without one, the cleanup could never tell its transaction had ended).
    IF TG_NARGS > 0 THEN
        horizon := least(horizon, pg_snapshot_xmin(pg_current_snapshot())::text::bigint);
    END IF;
    token := gen_random_uuid();
    INSERT INTO {table} (payload, token, xid, table_name, horizon)
    VALUES (
        json_build_object(
            'op', TG_OP,
            'depth', pg_trigger_depth() - 1,
            -- Tells top-level statements apart: the same for a statement's rows and for the
            -- rows its foreign keys and triggers change.
            'statement', statement_timestamp()::text || ' '
                || coalesce(current_setting('datastore.statement', true), ''),
            'columns', columns,
            'old', CASE WHEN TG_OP <> 'INSERT' THEN OLD::text END,
            'new', CASE WHEN TG_OP <> 'DELETE' THEN NEW::text END
        )::text,
        token, pg_current_xact_id()::text::bigint, TG_TABLE_NAME, horizon
    )
    RETURNING id INTO stored;
    -- The key of the change and its token: nothing of the row. Unique, so that PostgreSQL
    -- never folds two into one.
    PERFORM pg_notify('datastore:' || md5(TG_TABLE_SCHEMA), stored || ':' || token);
    IF TG_OP = 'DELETE' THEN
        RETURN OLD; -- a BEFORE trigger: let the delete happen
    END IF;
    RETURN NULL;
END
"#
    )
}

/// The body of the statement trigger function.
const STATEMENT_BODY: &str = r#"
DECLARE
    statement TEXT;
BEGIN
    PERFORM set_config('datastore.columns_' || TG_RELID,
        (SELECT array_agg(a.attname::text || ' ' || a.atttypid::text ORDER BY a.attnum)
         FROM pg_attribute a
         WHERE a.attrelid = TG_RELID AND a.attnum > 0 AND NOT a.attisdropped)::text,
        true);
    -- Every transaction below this one had ended before the statement's rows were recorded.
    PERFORM set_config('datastore.horizon',
        pg_snapshot_xmin(pg_current_snapshot())::text, true);
    -- A top-level statement (not a foreign key's cascade, nor another trigger's) is a new one.
    IF pg_trigger_depth() = 1 THEN
        statement := current_setting('datastore.statement', true);
        PERFORM set_config('datastore.statement',
            (CASE WHEN statement ~ '^[0-9]{1,18}$' THEN statement::bigint ELSE 0 END + 1)::text,
            true);
    END IF;
    RETURN NULL;
END
"#;

/// `body` between dollar quotes that it does not contain.
pub(super) fn dollar_quoted(body: &str) -> String {
    let mut tag = String::from("datastore");
    while body.contains(&format!("${tag}$")) {
        tag.push('_');
    }
    format!("${tag}${body}${tag}$")
}

/// Creates or brings up to date the change table and the trigger functions of `schema`, all
/// their owner's alone.
///
/// The change table is unlogged: listeners read what it holds within seconds (a crash, which
/// empties it, ends them anyway), and a logical replication publication `FOR ALL TABLES`
/// leaves it out. Published, a subscriber would apply its rows into its own change table (or
/// fail to subscribe, lacking one), where its own triggers' rows would collide with them. One
/// an earlier version made is made unlogged apart ([`unlog_changes`]).
///
/// The row function runs as its owner (`SECURITY DEFINER`, with a fixed search path), so that
/// roles writing observed tables need no rights on the change table; it renders rows with
/// fixed output settings, so that their text reads back the same whatever the writer's
/// session set. What exists is altered only where it lacks something, so that a transaction
/// writing the change table (through an observed table) does not hold this up.
pub(super) fn setup_sql(schema: &str) -> String {
    let table = changes_table(schema);
    let schema_ident = quote_ident(schema);
    let sequence = format!("{schema_ident}.datastore_change_payloads_id_seq");
    let index = format!("{schema_ident}.datastore_change_payloads_created_at");
    let notify = format!("{schema_ident}.datastore_notify()");
    let statement = format!("{schema_ident}.datastore_notify_statement()");
    format!(
        r#"
CREATE UNLOGGED TABLE IF NOT EXISTS {table} (
    id BIGSERIAL PRIMARY KEY,
    payload TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
DO $setup$ BEGIN
    -- A table made by an earlier version gains what this one stores, and its index.
    IF (SELECT count(*) FROM pg_attribute WHERE attrelid = {table_literal}::regclass
        AND attname IN ('token', 'xid', 'table_name', 'horizon') AND NOT attisdropped) < 4 THEN
        ALTER TABLE {table}
            ADD COLUMN IF NOT EXISTS token UUID,
            ADD COLUMN IF NOT EXISTS xid BIGINT,
            ADD COLUMN IF NOT EXISTS table_name TEXT,
            ADD COLUMN IF NOT EXISTS horizon BIGINT;
    END IF;
    IF to_regclass({index_literal}) IS NULL THEN
        CREATE INDEX datastore_change_payloads_created_at ON {table} (created_at);
    END IF;
END $setup$;
REVOKE ALL ON TABLE {table} FROM PUBLIC;
REVOKE ALL ON SEQUENCE {sequence} FROM PUBLIC;
CREATE OR REPLACE FUNCTION {statement} RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS {statement_body};
REVOKE ALL ON FUNCTION {statement} FROM PUBLIC;
CREATE OR REPLACE FUNCTION {notify} RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET "DateStyle" = 'ISO, YMD' SET "TimeZone" = 'UTC' SET bytea_output = 'hex'
SET extra_float_digits = 1
AS {notify_body};
REVOKE ALL ON FUNCTION {notify} FROM PUBLIC;
COMMENT ON FUNCTION {notify} IS {comment};
-- What an earlier version numbered its notifications with.
DROP SEQUENCE IF EXISTS {schema_ident}.datastore_change_seq;
"#,
        table_literal = quote_literal(&table, Dialect::Postgres),
        index_literal = quote_literal(&index, Dialect::Postgres),
        statement_body = dollar_quoted(STATEMENT_BODY),
        notify_body = dollar_quoted(&notify_body(schema)),
        comment = quote_literal(&legacy_comment(schema), Dialect::Postgres),
    )
}

/// The largest logged change table (an earlier version's) [`unlog_changes`] makes unlogged,
/// in bytes, indexes and TOAST included: the change rewrites it, and every writer of an
/// observed table waits meanwhile.
const MOST_REWRITTEN: i64 = 4 << 20;

/// Makes `schema`'s change table unlogged (see [`setup_sql`]) if an earlier version made it
/// logged, it is no larger than [`MOST_REWRITTEN`], the store's role owns it, and no
/// publication names it (PostgreSQL then refuses); a writer holding it for more than 100 ms
/// leaves it as it is. In a transaction of its own: the change holds the table, and with it
/// every writer of an observed table, until its transaction ends. Each listener tries as it
/// starts: one left logged is tried again by the next.
pub(super) fn unlog_changes(conn: &mut PgConnection, schema: &str) -> diesel::QueryResult<()> {
    let table = changes_table(schema);
    let body = format!(
        "BEGIN \
             IF (SELECT c.relpersistence = 'p' AND pg_total_relation_size(c.oid) <= {MOST_REWRITTEN} \
                     AND pg_has_role(c.relowner, 'USAGE') \
                     AND NOT EXISTS (SELECT FROM pg_publication_rel r WHERE r.prrelid = c.oid) \
                 FROM pg_class c WHERE c.oid = to_regclass({table_literal})) THEN \
                 ALTER TABLE {table} SET UNLOGGED; \
             END IF; \
         EXCEPTION WHEN lock_not_available OR object_not_in_prerequisite_state THEN \
             NULL; \
         END",
        table_literal = quote_literal(&table, Dialect::Postgres),
    );
    let sql = format!(
        "SET LOCAL lock_timeout = '100ms'; DO {};",
        dollar_quoted(&body)
    );
    conn.transaction(|conn| conn.batch_execute(&sql))
}

/// The triggers that report `table`'s changes.
///
/// Deletes are reported by a `BEFORE` trigger, where `pg_trigger_depth()` tells a cascade's
/// rows (deleted from inside the foreign key's own trigger) from the statement's; in `AFTER`
/// triggers both report depth 1. Its name sorts after the usual ones, because `BEFORE`
/// triggers run in name order and one that cancels a delete stops those after it. The row
/// triggers' argument says that the statement trigger is there.
///
/// Where the store's role owns the table, all four then fire always, not only where changes
/// originate: also in a session with `session_replication_role = replica`, as logical
/// replication's apply workers and some restore tools write. Enabling them so takes the
/// table's owner (creating them, only the `TRIGGER` privilege): a role that does not own the
/// table leaves them as `CREATE TRIGGER` makes them (see [`triggered_tables`]).
pub(super) fn trigger_sql(schema: &str, table: &str) -> String {
    let always = always_sql(schema, table);
    let (schema, table) = (quote_ident(schema), quote_ident(table));
    format!(
        "CREATE OR REPLACE TRIGGER datastore_observe_statement \
         BEFORE INSERT OR UPDATE OR DELETE ON {schema}.{table} \
         FOR EACH STATEMENT EXECUTE FUNCTION {schema}.datastore_notify_statement();\n\
         CREATE OR REPLACE TRIGGER datastore_observe AFTER INSERT OR UPDATE ON {schema}.{table} \
         FOR EACH ROW EXECUTE FUNCTION {schema}.datastore_notify('statement');\n\
         CREATE OR REPLACE TRIGGER zz_datastore_observe_delete BEFORE DELETE ON {schema}.{table} \
         FOR EACH ROW EXECUTE FUNCTION {schema}.datastore_notify('statement');\n\
         CREATE OR REPLACE TRIGGER datastore_observe_truncate BEFORE TRUNCATE ON {schema}.{table} \
         FOR EACH STATEMENT EXECUTE FUNCTION {schema}.datastore_notify('statement');\n\
         {always}"
    )
}

/// Enables the four triggers of `schema`'s `table` to fire always, where the store's role owns
/// it (see [`trigger_sql`]).
pub(super) fn always_sql(schema: &str, table: &str) -> String {
    let (schema, table) = (quote_ident(schema), quote_ident(table));
    let relation = quote_literal(&format!("{schema}.{table}"), Dialect::Postgres);
    let body = format!(
        "BEGIN \
             IF (SELECT pg_has_role(relowner, 'USAGE') FROM pg_class \
                 WHERE oid = {relation}::regclass) THEN \
                 ALTER TABLE {schema}.{table} \
                     ENABLE ALWAYS TRIGGER datastore_observe_statement, \
                     ENABLE ALWAYS TRIGGER datastore_observe, \
                     ENABLE ALWAYS TRIGGER zz_datastore_observe_delete, \
                     ENABLE ALWAYS TRIGGER datastore_observe_truncate; \
             END IF; \
         END"
    );
    format!("DO {};\n", dollar_quoted(&body))
}

/// Whether `schema`'s trigger functions are this version's: their bodies, whatever their
/// comment says (an earlier version may have replaced a body and left the comment).
pub(super) fn functions_are_current(conn: &mut PgConnection, schema: &str) -> Result<bool> {
    #[derive(QueryableByName)]
    struct Current {
        #[diesel(sql_type = Integer)]
        n: i32,
    }
    let rows: Vec<Current> = diesel::sql_query(
        "SELECT count(*)::int AS n FROM pg_proc p JOIN pg_namespace s ON s.oid = p.pronamespace \
         WHERE s.nspname = $1 AND p.pronargs = 0 AND ( \
             (p.proname = 'datastore_notify' AND p.prosrc = $2) \
             OR (p.proname = 'datastore_notify_statement' AND p.prosrc = $3))",
    )
    .bind::<Text, _>(schema)
    .bind::<Text, _>(notify_body(schema))
    .bind::<Text, _>(STATEMENT_BODY)
    .load(conn)?;
    Ok(rows.first().is_some_and(|r| r.n == 2))
}

/// The tables of `schema` that have this version's four triggers, enabled (a disabled one is
/// set up again: `CREATE OR REPLACE` enables it), each with whether it is set up as this
/// version sets tables up: its triggers fire always, or the store's role could not make them
/// (it does not own the table). One whose triggers fire only where changes originate (an
/// earlier version's set-up, or `ENABLE TRIGGER` after a `DISABLE`) reports every change but
/// those of a session with `session_replication_role = replica`: the first subscription that
/// wants it enables them always, if it can within 100 ms (`enable_always`). A partitioned
/// table or a partition is never among them, whatever triggers it has (an earlier version set
/// such tables up): refused (`catalog::refuse_partitioned`) rather than taken as reporting.
pub(super) fn triggered_tables(
    conn: &mut PgConnection,
    schema: &str,
) -> Result<HashMap<String, bool>> {
    #[derive(QueryableByName)]
    struct Triggered {
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = Bool)]
        set_up: bool,
    }
    let rows: Vec<Triggered> = diesel::sql_query(
        "SELECT c.relname::text AS name, \
             bool_and(t.tgenabled = 'A') OR NOT pg_has_role(c.relowner, 'USAGE') AS set_up \
         FROM pg_trigger t \
         JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relkind <> 'p' AND NOT c.relispartition \
         AND t.tgenabled IN ('O', 'A') AND ( \
             (t.tgname IN ('datastore_observe', 'zz_datastore_observe_delete', \
                           'datastore_observe_truncate') AND t.tgnargs = 1) \
             OR t.tgname = 'datastore_observe_statement') \
         GROUP BY c.relname, c.relowner HAVING count(*) = 4",
    )
    .bind::<Text, _>(schema)
    .load(conn)?;
    Ok(rows.into_iter().map(|r| (r.name, r.set_up)).collect())
}

/// Refuses the change table and the trigger functions unless one role owns them all, and that
/// role is this connection's or owns the observed `tables`: a role that owned the change table
/// (one with `CREATE` on the schema could have made it first) could read every recorded
/// change, and one that owned a function the triggers run could do anything as its writers.
pub(super) fn check_owners(conn: &mut PgConnection, schema: &str, tables: &[String]) -> Result<()> {
    #[derive(QueryableByName)]
    struct Owner {
        #[diesel(sql_type = Text)]
        kind: String,
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = Text)]
        owner: String,
        #[diesel(sql_type = Bool)]
        trusted: bool,
    }
    let owners: Vec<Owner> = diesel::sql_query(
        "WITH s AS (SELECT oid FROM pg_namespace WHERE nspname = $1), \
         infra(kind, name, owner) AS ( \
             SELECT 'table', c.relname::text, c.relowner FROM pg_class c, s \
             WHERE c.relnamespace = s.oid AND c.relname = 'datastore_change_payloads' \
             UNION ALL \
             SELECT 'function', p.proname || '()', p.proowner FROM pg_proc p, s \
             WHERE p.pronamespace = s.oid AND p.pronargs = 0 \
             AND p.proname IN ('datastore_notify', 'datastore_notify_statement')) \
         SELECT kind, name, pg_get_userbyid(owner)::text AS owner, \
             (owner = (SELECT oid FROM pg_roles WHERE rolname = current_user) \
              OR (EXISTS (SELECT FROM pg_class c, s \
                          WHERE c.relnamespace = s.oid AND c.relname = ANY($2)) \
                  AND owner = ALL (SELECT c.relowner FROM pg_class c, s \
                                   WHERE c.relnamespace = s.oid AND c.relname = ANY($2)))) \
             AS trusted \
         FROM infra ORDER BY kind DESC, name",
    )
    .bind::<Text, _>(schema)
    .bind::<Array<Text>, _>(tables)
    .load(conn)?;
    // The row function's owner is the role its writes run as: everything must be its.
    let expected = owners
        .iter()
        .find(|o| o.name == "datastore_notify()")
        .map(|o| o.owner.clone());
    match owners
        .into_iter()
        .find(|o| !o.trusted || Some(&o.owner) != expected.as_ref())
    {
        Some(foreign) => Err(Error::ChangeFeedOwner {
            object: format!("{} {}.{}", foreign.kind, schema, foreign.name),
            owner: foreign.owner,
        }),
        None => Ok(()),
    }
}

/// Fails with [`Error::ObserveAfterWrite`] when the transaction of the backend `writer` (the
/// caller's, on this thread) holds a lock on one of `relations` that installing the triggers
/// would wait for: it would wait for the caller itself, until the lock timeout.
pub(super) fn refuse_own_locks(
    conn: &mut PgConnection,
    writer: i32,
    schema: &str,
    relations: &[String],
    any_lock: bool,
) -> Result<()> {
    if relations.is_empty() {
        return Ok(());
    }
    let held: Vec<Name> = diesel::sql_query(
        "SELECT c.relname::text AS name FROM pg_locks l \
         JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE l.pid = $1 AND l.granted \
         AND ($4 OR l.mode NOT IN ('AccessShareLock', 'RowShareLock')) \
         AND n.nspname = $2 AND c.relname = ANY($3) ORDER BY c.relname",
    )
    .bind::<Integer, _>(writer)
    .bind::<Text, _>(schema)
    .bind::<Array<Text>, _>(relations)
    .bind::<Bool, _>(any_lock)
    .load(conn)?;
    match held.into_iter().next() {
        Some(table) => Err(Error::ObserveAfterWrite { table: table.name }),
        None => Ok(()),
    }
}

/// How many of the horizons recorded [`RETENTION`] ago [`remove_changes`] reads.
const HORIZONS_READ: u32 = 100;

/// The SQL condition that `created_at` (a change's column of that name, qualified as the
/// query needs) is more than [`RETENTION`] ago.
fn past_retention(created_at: &str) -> String {
    format!(
        "{created_at} < now() - interval '{} seconds'",
        RETENTION.as_secs()
    )
}

/// Removes from the change table `changes` at most `limit` changes older than [`RETENTION`]
/// whose transactions had ended `RETENTION` ago: by then every listener has read them, has
/// ended its feed for being held up, or is told it missed them ([`removed_changes`]). That
/// they had ended is known from the horizons changes recorded that long ago carry (capped by
/// the transactions running now): the newest of the last [`HORIZONS_READ`] recorded then,
/// each true as its row's snapshot bounds it (a writer can record one too old, which alone
/// would hold the removal back, but none too new). Rows an earlier version stored without a
/// transaction go by age alone.
///
/// Of the changes it picks (at most `limit + 1`), it keeps the newest (the largest id), for a
/// later batch that picks a newer one to remove: so every change it removed has a smaller id
/// than one the table still holds past the retention, which is how a listener tells a change
/// removed before it read it from one never recorded. How many were removed.
pub(super) fn remove_changes(
    conn: &mut PgConnection,
    changes: &str,
    limit: i64,
) -> diesel::QueryResult<usize> {
    // Materialized: the removal and the one kept read the same pick.
    diesel::sql_query(format!(
        "WITH picked AS MATERIALIZED ( \
             SELECT c.id FROM {changes} c \
             WHERE {old} \
             AND (c.xid IS NULL OR c.xid < ( \
                 SELECT least(max(h.horizon), \
                              pg_snapshot_xmin(pg_current_snapshot())::text::bigint) \
                 FROM (SELECT h.horizon FROM {changes} h \
                       WHERE h.horizon IS NOT NULL AND {horizon_old} \
                       ORDER BY h.created_at DESC LIMIT {HORIZONS_READ}) h)) \
             LIMIT $1 + 1) \
         DELETE FROM {changes} \
         WHERE id IN (SELECT id FROM picked) AND id < (SELECT max(id) FROM picked)",
        old = past_retention("c.created_at"),
        horizon_old = past_retention("h.created_at"),
    ))
    .bind::<BigInt, _>(limit)
    .execute(conn)
}

/// Which of `ids`, changes a listener was told of but did not find, [`remove_changes`] removed
/// before it could read them: those the change table does not hold, below the newest change
/// it holds past the retention (in one snapshot). Every change it removed is below that one,
/// so an id not below it that the table does not hold is no committed change's: made up
/// (anyone may notify on the channel). A made-up id below it cannot be told from a removed
/// one (the token went with the row), and passes as removed.
pub(super) fn removed_changes(
    conn: &mut PgConnection,
    changes: &str,
    ids: &[i64],
) -> diesel::QueryResult<Vec<i64>> {
    #[derive(QueryableByName)]
    struct Removed {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    // The changes past the retention found through the index on their time: a `max(id)` of
    // the table filtered by it would be looked for from the newest id down, through every
    // recent change.
    let removed: Vec<Removed> = diesel::sql_query(format!(
        "WITH past AS MATERIALIZED (SELECT c.id FROM {changes} c WHERE {old}) \
         SELECT m.id FROM unnest($1::bigint[]) AS m(id) \
         WHERE m.id < (SELECT max(id) FROM past) \
         AND NOT EXISTS (SELECT FROM {changes} c WHERE c.id = m.id)",
        old = past_retention("c.created_at"),
    ))
    .bind::<Array<BigInt>, _>(ids)
    .load(conn)?;
    Ok(removed.into_iter().map(|r| r.id).collect())
}

#[cfg(test)]
mod tests {
    use super::dollar_quoted;

    use diesel::connection::SimpleConnection;
    use diesel::{Connection, PgConnection, RunQueryDsl};

    use super::super::catalog::Name;
    use super::{changes_table, remove_changes, removed_changes, setup_sql, trigger_sql};

    #[test]
    fn a_body_is_quoted_with_a_tag_it_does_not_hold() {
        assert_eq!(dollar_quoted("x"), "$datastore$x$datastore$");
        assert_eq!(
            dollar_quoted("a $datastore$ b"),
            "$datastore_$a $datastore$ b$datastore_$"
        );
    }

    /// The column `name` of the one row `sql` reads.
    fn text(conn: &mut PgConnection, sql: &str) -> String {
        diesel::sql_query(sql)
            .load::<Name>(conn)
            .unwrap()
            .remove(0)
            .name
    }

    /// Runs `test` on a connection to the server `DATASTORE_POSTGRES_URL` names, if any, with a
    /// schema of the test's own set up (its name and change table given), dropped however the
    /// test ends.
    fn in_a_schema_of_its_own(test: impl FnOnce(&mut PgConnection, &str, &str)) {
        let Ok(url) = std::env::var("DATASTORE_POSTGRES_URL") else {
            return;
        };
        let mut conn = PgConnection::establish(&url).unwrap();
        let schema = format!("datastore_triggers_{}", uuid::Uuid::new_v4().simple());
        conn.batch_execute(&format!("CREATE SCHEMA {schema}; {}", setup_sql(&schema)))
            .unwrap();
        let changes = changes_table(&schema);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            test(&mut conn, &schema, &changes)
        }));
        conn.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .unwrap();
        result.unwrap();
    }

    #[test]
    fn cleanup_removes_old_changes_of_transactions_that_had_ended_only() {
        in_a_schema_of_its_own(|conn, _, changes| {
            conn.batch_execute(&format!(
                "INSERT INTO {changes} (payload, token, xid, table_name, horizon, created_at) VALUES \
                 ('a', gen_random_uuid(), 5, 't', NULL, now() - interval '1 hour'), \
                 ('b', gen_random_uuid(), 12, 't', NULL, now() - interval '1 hour'), \
                 ('c', gen_random_uuid(), 3, 't', NULL, now()), \
                 ('h', gen_random_uuid(), 11, 't', 10, now() - interval '20 minutes'), \
                 ('z', gen_random_uuid(), 14, 't', 0, now() - interval '15 minutes'), \
                 ('n', gen_random_uuid(), 13, 't', 12, now()); \
                 INSERT INTO {changes} (payload, created_at) VALUES \
                 ('old', now() - interval '1 hour'), ('recent', now())"
            ))
            .unwrap();
            // By the horizon recorded 20 minutes ago (not the one recorded now, nor the older
            // one a writer recorded later), 5 had ended, 12, 11 and 14 had not; c is too
            // recent; a row without a transaction goes by age. Of those two, the newest stays
            // until a newer one goes (see the next test).
            assert_eq!(remove_changes(conn, changes, 1).unwrap(), 1, "a batch");
            assert_eq!(remove_changes(conn, changes, 100).unwrap(), 0);
            assert_eq!(payloads(conn, changes), "b,c,h,n,old,recent,z");
        });
    }

    /// The payloads of the changes `changes` holds, sorted.
    fn payloads(conn: &mut PgConnection, changes: &str) -> String {
        text(
            conn,
            &format!("SELECT string_agg(payload, ',' ORDER BY payload) AS name FROM {changes}"),
        )
    }

    /// The cleanup keeps the newest change it would remove until a newer one goes, so that a
    /// listener told of a change the table does not hold knows whether it was removed (below
    /// the newest change past the retention) or never recorded (above it: made up). A made-up
    /// id that low passes as removed.
    #[test]
    fn a_removed_change_is_told_from_one_never_recorded() {
        in_a_schema_of_its_own(|conn, _, changes| {
            // Ids 1 to 3 of transactions long ended, an hour ago; 4 recent.
            conn.batch_execute(&format!(
                "INSERT INTO {changes} (payload, token, xid, table_name, horizon, created_at) VALUES \
                 ('a', gen_random_uuid(), 1, 't', 1, now() - interval '1 hour'), \
                 ('b', gen_random_uuid(), 2, 't', 2, now() - interval '1 hour'), \
                 ('c', gen_random_uuid(), 3, 't', 10, now() - interval '1 hour'), \
                 ('d', gen_random_uuid(), 11, 't', 11, now())"
            ))
            .unwrap();
            assert_eq!(remove_changes(conn, changes, 100).unwrap(), 2);
            assert_eq!(payloads(conn, changes), "c,d");
            let mut removed = removed_changes(conn, changes, &[1, 2, 3, 4, 5, 0]).unwrap();
            removed.sort_unstable();
            assert_eq!(
                removed,
                [0, 1, 2],
                "5 was never recorded, 0 passes as removed"
            );

            // A newer change past the retention (5) lets 3 go.
            conn.batch_execute(&format!(
                "INSERT INTO {changes} (payload, token, xid, table_name, horizon, created_at) \
                 VALUES ('e', gen_random_uuid(), 4, 't', 10, now() - interval '30 minutes')"
            ))
            .unwrap();
            assert_eq!(remove_changes(conn, changes, 100).unwrap(), 1);
            assert_eq!(payloads(conn, changes), "d,e");
            assert_eq!(removed_changes(conn, changes, &[3, 5, 6]).unwrap(), [3]);
        });
    }

    /// A row written where its statement trigger did not run (a logical replication apply
    /// worker fires row triggers only; here the statement trigger is disabled) still records
    /// a horizon: without one, the cleanup could never tell its transaction had ended. None
    /// is newer than its transaction, whatever its session set (before a `TRUNCATE`, or
    /// in the middle of a statement): one too new would have the cleanup remove rows unread.
    #[test]
    fn a_row_written_without_its_statement_trigger_records_a_horizon() {
        in_a_schema_of_its_own(|conn, schema, changes| {
            conn.batch_execute(&format!(
                "CREATE TABLE {schema}.t (x INT); {}",
                trigger_sql(schema, "t")
            ))
            .unwrap();
            // Each in a transaction of its own (the statement trigger's settings last as long).
            for sql in [
                format!("INSERT INTO {schema}.t VALUES (1)"),
                format!("ALTER TABLE {schema}.t DISABLE TRIGGER datastore_observe_statement"),
                format!("INSERT INTO {schema}.t VALUES (2)"),
                "SET datastore.horizon = '9000000000000000000'".to_owned(),
                format!("TRUNCATE {schema}.t"),
                format!("INSERT INTO {schema}.t VALUES (3)"),
                format!("ALTER TABLE {schema}.t ENABLE TRIGGER datastore_observe_statement"),
                // Set after the statement trigger, before the row's.
                format!(
                    "UPDATE {schema}.t SET x = x + 1 + 0 * \
                     length(set_config('datastore.horizon', '9000000000000000000', true))"
                ),
            ] {
                conn.batch_execute(&sql).unwrap();
            }
            let recorded = text(
                conn,
                &format!(
                    "SELECT string_agg((horizon IS NOT NULL AND horizon <= xid)::text, ',' \
                 ORDER BY id) AS name FROM {changes}"
                ),
            );
            assert_eq!(recorded, "true,true,true,true,true");
        });
    }

    /// A child table's rows, changed through its parent, come without the child's own
    /// statement trigger: each reads the child's columns as they are then, also after they
    /// changed within the transaction.
    #[test]
    fn a_child_tables_rows_record_its_columns_as_they_are() {
        in_a_schema_of_its_own(|conn, schema, changes| {
            conn.batch_execute(&format!(
                "CREATE TABLE {schema}.parent (x INT); \
                 CREATE TABLE {schema}.child (y INT) INHERITS ({schema}.parent); {} \
                 INSERT INTO {schema}.child VALUES (1, 2);",
                trigger_sql(schema, "child")
            ))
            .unwrap();
            conn.batch_execute(&format!(
                "BEGIN; \
                 UPDATE {schema}.parent SET x = x + 1; \
                 ALTER TABLE {schema}.child ADD COLUMN z INT; \
                 UPDATE {schema}.parent SET x = x + 1; \
                 COMMIT;"
            ))
            .unwrap();
            let columns = text(
                conn,
                &format!(
                    "SELECT string_agg(payload::json->>'columns', ' | ' ORDER BY id) AS name \
                 FROM {changes} WHERE table_name = 'child'"
                ),
            );
            assert!(
                columns.ends_with(r#""z 23"}"#),
                "the second update's row has z: {}",
                columns
            );
        });
    }
}
