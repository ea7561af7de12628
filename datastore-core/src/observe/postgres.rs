//! Observe on PostgreSQL: row triggers send each change with `NOTIFY` (delivered by the server
//! only when the transaction commits, in commit order), and one listener connection per store
//! turns them into the same committed batches the SQLite hooks produce.
//!
//! A change whose notification would exceed PostgreSQL's payload limit (8000 bytes) is stored
//! in `datastore_change_payloads` by the trigger, in the same transaction, and the notification
//! carries its key; the listener reads it from there. Stored payloads are removed after
//! [`PAYLOAD_RETENTION`], so that every store listening on the database has read them.
//!
//! The trigger function, the payload table and the triggers live in the schema of the observed
//! tables; they are created when a table is first observed (they are infrastructure, not part
//! of the models, so migrations do not carry them).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use serde_json::Value;

use super::hub::Hub;
use super::{Batch, Op, RawChange};
use crate::schema::ddl::{quote_ident, quote_literal};
use crate::{Error, Result};

/// How long the payload of a large change is kept for listeners to read.
pub const PAYLOAD_RETENTION: Duration = Duration::from_secs(600);

/// How often the listener looks for notifications while none arrive.
const POLL: Duration = Duration::from_millis(2);

/// The most bytes a notification carries inline (PostgreSQL refuses payloads of 8000 bytes
/// and more).
const INLINE_LIMIT: usize = 7999;

/// The objects observe needs in `schema`: the payload table and the trigger function.
fn setup_sql(schema: &str) -> String {
    let schema_ident = quote_ident(schema);
    let channel = quote_literal(&channel(schema));
    let sequence = quote_literal(&format!("{schema_ident}.datastore_change_seq"));
    format!(
        r#"
CREATE TABLE IF NOT EXISTS {schema_ident}.datastore_change_payloads (
    id BIGSERIAL PRIMARY KEY,
    payload TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE SEQUENCE IF NOT EXISTS {schema_ident}.datastore_change_seq;
CREATE OR REPLACE FUNCTION {schema_ident}.datastore_notify() RETURNS trigger
LANGUAGE plpgsql AS $datastore$
DECLARE
    payload TEXT;
    stored BIGINT;
BEGIN
    -- Each change carries a number of its own: PostgreSQL drops a notification identical to
    -- one already sent in the same transaction.
    payload := json_build_object(
        'seq', nextval({sequence}),
        'xid', txid_current(),
        'table', TG_TABLE_NAME,
        'op', TG_OP,
        'depth', pg_trigger_depth() - 1,
        'old', CASE WHEN TG_OP <> 'INSERT' THEN
            (SELECT json_agg(c.value) FROM json_each(row_to_json(OLD)) c) END,
        'new', CASE WHEN TG_OP <> 'DELETE' THEN
            (SELECT json_agg(c.value) FROM json_each(row_to_json(NEW)) c) END
    )::text;
    IF octet_length(payload) > {INLINE_LIMIT} THEN
        INSERT INTO {schema_ident}.datastore_change_payloads (payload) VALUES (payload)
            RETURNING id INTO stored;
        payload := json_build_object('stored', stored)::text;
    END IF;
    PERFORM pg_notify({channel}, payload);
    RETURN NULL;
END
$datastore$;
"#,
    )
}

/// The trigger that reports `table`'s changes.
fn trigger_sql(schema: &str, table: &str) -> String {
    format!(
        "CREATE OR REPLACE TRIGGER datastore_observe AFTER INSERT OR UPDATE OR DELETE ON {}.{} \
         FOR EACH ROW EXECUTE FUNCTION {}.datastore_notify();",
        quote_ident(schema),
        quote_ident(table),
        quote_ident(schema),
    )
}

/// The notification channel of a schema's changes (at most 63 bytes, PostgreSQL's limit).
fn channel(schema: &str) -> String {
    let mut channel = format!("datastore:{schema}");
    while channel.len() > 63 {
        channel.pop();
    }
    channel
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct ColumnInfo {
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    data_type: String,
}

#[derive(QueryableByName)]
struct StoredPayload {
    #[diesel(sql_type = Text)]
    payload: String,
}

/// The schema new tables go to on this connection (the first of its search path).
pub(crate) fn current_schema(conn: &mut PgConnection) -> Result<String> {
    let rows: Vec<Name> = diesel::sql_query("SELECT current_schema()::text AS name").load(conn)?;
    rows.into_iter()
        .next()
        .map(|r| r.name)
        .ok_or_else(|| Error::Unsupported("the connection has no current schema".into()))
}

/// A table's columns, in order, with their types.
pub(crate) fn table_columns(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
) -> Result<Vec<(String, String)>> {
    let rows: Vec<ColumnInfo> = diesel::sql_query(
        "SELECT column_name::text AS column_name, data_type::text AS data_type \
         FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 \
         ORDER BY ordinal_position",
    )
    .bind::<Text, _>(schema)
    .bind::<Text, _>(table)
    .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|c| (c.column_name, c.data_type))
        .collect())
}

/// The tables of a schema that observe reports on (all but its own and Diesel's).
pub(crate) fn observable_tables(conn: &mut PgConnection, schema: &str) -> Result<Vec<String>> {
    let rows: Vec<Name> = diesel::sql_query(
        "SELECT table_name::text AS name FROM information_schema.tables \
         WHERE table_schema = $1 AND table_type = 'BASE TABLE' \
         AND table_name NOT LIKE '\\_\\_diesel%' AND table_name <> 'datastore_change_payloads' \
         ORDER BY table_name",
    )
    .bind::<Text, _>(schema)
    .load(conn)?;
    Ok(rows.into_iter().map(|r| r.name).collect())
}

/// A store's observe machinery on PostgreSQL: which tables have their trigger, and the
/// listener thread.
#[derive(Debug, Default)]
pub(crate) struct PgObserve {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The schema of the observed tables, once known.
    schema: Option<String>,
    /// Tables whose trigger this store created or found.
    triggered: HashSet<String>,
    listening: bool,
}

impl PgObserve {
    /// Makes sure `tables` report their changes and that the listener runs. `conn` is a
    /// connection of the store; `url` is what the listener connects to.
    pub fn ensure(
        &self,
        conn: &mut PgConnection,
        url: &str,
        hub: &Arc<Hub>,
        tables: &[String],
    ) -> Result<String> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let schema = match &state.schema {
            Some(schema) => schema.clone(),
            None => current_schema(conn)?,
        };
        let missing: Vec<&String> = tables
            .iter()
            .filter(|t| !state.triggered.contains(*t))
            .collect();
        if !missing.is_empty() {
            let mut sql = String::new();
            for table in &missing {
                sql.push_str(&trigger_sql(&schema, table));
                sql.push('\n');
            }
            // One at a time across processes: concurrent CREATE OR REPLACE FUNCTION fails.
            conn.transaction(|conn| {
                conn.batch_execute(&format!(
                    "SELECT pg_advisory_xact_lock({});\n{}\n{sql}",
                    i64::from_be_bytes(*b"dsobserv"),
                    setup_sql(&schema)
                ))
            })?;
            state.triggered.extend(missing.into_iter().cloned());
        }
        if !state.listening {
            Listener::start(url, &schema, Arc::downgrade(hub))?;
            state.listening = true;
        }
        state.schema = Some(schema.clone());
        Ok(schema)
    }
}

/// The listener: one connection that LISTENs on the schema's channel, and a thread that
/// publishes what arrives until the store is gone.
struct Listener {
    conn: PgConnection,
    schema: String,
    hub: Weak<Hub>,
    /// Column types per table, for turning JSON values back into stored values.
    columns: HashMap<String, Vec<String>>,
    last_cleanup: Instant,
}

impl Listener {
    fn start(url: &str, schema: &str, hub: Weak<Hub>) -> Result<()> {
        let mut conn = PgConnection::establish(url).map_err(|e| Error::Connection {
            url: url.to_owned(),
            message: e.to_string(),
        })?;
        conn.batch_execute(&format!("LISTEN {}", quote_ident(&channel(schema))))?;
        let mut listener = Listener {
            conn,
            schema: schema.to_owned(),
            hub,
            columns: HashMap::new(),
            last_cleanup: Instant::now(),
        };
        thread::Builder::new()
            .name("datastore-pg-listener".into())
            .spawn(move || listener.run())
            .map_err(|e| Error::Unsupported(format!("cannot start the listener thread: {e}")))?;
        Ok(())
    }

    fn run(&mut self) {
        let mut pending: Vec<Value> = Vec::new();
        loop {
            let Some(hub) = self.hub.upgrade() else {
                return; // the store is gone
            };
            let mut received = false;
            loop {
                let next = self.conn.notifications_iter().next();
                match next {
                    Some(Ok(notification)) => {
                        received = true;
                        match serde_json::from_str::<Value>(&notification.payload) {
                            Ok(change) => pending.push(change),
                            Err(_) => continue, // not ours
                        }
                    }
                    Some(Err(_)) => {
                        // The connection broke: nothing more will arrive. Subscribers learn
                        // of it as their stream ending when the store drops.
                        return;
                    }
                    None => break,
                }
            }
            if !pending.is_empty() {
                self.publish(&hub, std::mem::take(&mut pending));
            }
            drop(hub);
            if self.last_cleanup.elapsed() > PAYLOAD_RETENTION / 4 {
                self.cleanup();
            }
            if !received {
                thread::sleep(POLL);
            }
        }
    }

    /// Publishes the changes received, one batch per transaction, in the order they came.
    fn publish(&mut self, hub: &Hub, changes: Vec<Value>) {
        let mut batch = Batch::default();
        let mut xid: Option<i64> = None;
        for change in changes {
            let change = match change.get("stored").and_then(Value::as_i64) {
                Some(key) => match self.stored(key) {
                    Some(change) => change,
                    None => continue,
                },
                None => change,
            };
            let this_xid = change.get("xid").and_then(Value::as_i64);
            if xid.is_some() && this_xid != xid && !batch.changes.is_empty() {
                self.send(hub, std::mem::take(&mut batch));
            }
            xid = this_xid;
            self.capture(&mut batch, &change);
        }
        if !batch.changes.is_empty() {
            self.send(hub, batch);
        }
    }

    fn send(&self, hub: &Hub, mut batch: Batch) {
        batch.changes = super::connection::in_delivery_order(std::mem::take(&mut batch.changes));
        let seq = hub.next_seq();
        hub.publish(seq, batch);
    }

    /// A change too large for a notification, from the payload table.
    fn stored(&mut self, key: i64) -> Option<Value> {
        let rows: Vec<StoredPayload> = diesel::sql_query(format!(
            "SELECT payload FROM {}.datastore_change_payloads WHERE id = $1",
            quote_ident(&self.schema)
        ))
        .bind::<BigInt, _>(key)
        .load(&mut self.conn)
        .ok()?;
        serde_json::from_str(&rows.into_iter().next()?.payload).ok()
    }

    fn cleanup(&mut self) {
        self.last_cleanup = Instant::now();
        let _ = self.conn.batch_execute(&format!(
            "DELETE FROM {}.datastore_change_payloads WHERE created_at < now() - interval '{} seconds'",
            quote_ident(&self.schema),
            PAYLOAD_RETENTION.as_secs()
        ));
    }

    fn capture(&mut self, batch: &mut Batch, change: &Value) {
        let (Some(table), Some(op)) = (
            change.get("table").and_then(Value::as_str),
            change.get("op").and_then(Value::as_str),
        ) else {
            return;
        };
        let op = match op {
            "INSERT" => Op::Insert,
            "UPDATE" => Op::Update,
            "DELETE" => Op::Delete,
            _ => return,
        };
        if !self.columns.contains_key(table) {
            let types = table_columns(&mut self.conn, &self.schema, table)
                .map(|columns| columns.into_iter().map(|(_, ty)| ty).collect())
                .unwrap_or_default();
            self.columns.insert(table.to_owned(), types);
        }
        let types = &self.columns[table];
        let mut row = |side: &str| -> Option<std::ops::Range<usize>> {
            let values = change.get(side)?.as_array()?;
            let mark = batch.rows.mark();
            for (i, value) in values.iter().enumerate() {
                push_value(&mut batch.rows, types.get(i).map(String::as_str), value);
            }
            Some(batch.rows.since(mark))
        };
        let old = row("old");
        let new = row("new");
        batch.changes.push(RawChange {
            table: table.into(),
            op,
            old,
            new,
            depth: change.get("depth").and_then(Value::as_i64).unwrap_or(0) as i32,
        });
    }
}

/// One column's value from its JSON form (`row_to_json`), as SQLite would have stored it:
/// what `FieldType::from_raw` reads.
fn push_value(rows: &mut super::Rows, ty: Option<&str>, value: &Value) {
    match (ty, value) {
        (_, Value::Null) => rows.push_null(),
        (Some("json" | "jsonb"), value) => rows.push_text(value.to_string().as_bytes()),
        (Some("bytea"), Value::String(hex)) => match decode_hex(hex) {
            Some(bytes) => rows.push_blob(&bytes),
            None => rows.push_text(hex.as_bytes()),
        },
        (_, Value::Bool(b)) => rows.push_integer(i64::from(*b)),
        (_, Value::Number(n)) => match n.as_i64() {
            Some(i) => rows.push_integer(i),
            None => rows.push_real(n.as_f64().unwrap_or(f64::NAN)),
        },
        // `NaN` and the infinities are strings in JSON.
        (Some("double precision" | "real"), Value::String(s)) => match s.parse::<f64>() {
            Ok(f) => rows.push_real(f),
            Err(_) => rows.push_text(s.as_bytes()),
        },
        (_, Value::String(s)) => rows.push_text(s.as_bytes()),
        (_, other) => rows.push_text(other.to_string().as_bytes()),
    }
}

/// `bytea`'s hex form, `\x0aff..`.
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let digits = text.strip_prefix("\\x")?;
    if digits.len() % 2 != 0 {
        return None;
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytea_hex_decodes() {
        assert_eq!(decode_hex("\\x00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(decode_hex("\\x0"), None);
        assert_eq!(decode_hex("00"), None);
    }
}
