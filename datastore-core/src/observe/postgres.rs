//! Observe on PostgreSQL: row triggers send each change with `NOTIFY` (delivered by the server
//! only when the transaction commits, in commit order), and one listener connection per store
//! turns them into the same committed batches the SQLite hooks produce.
//!
//! A change whose notification would exceed PostgreSQL's payload limit (8000 bytes) is stored
//! in `datastore_change_payloads` by the trigger, in the same transaction, and the notification
//! carries its key; the listener reads it from there. Stored payloads are removed after
//! ten minutes (`PAYLOAD_RETENTION`), so that every store listening on the database has read them.
//!
//! The trigger function, the payload table and the triggers live in the schema of the observed
//! tables; they are created when a table is first observed (they are infrastructure, not part
//! of the models, so migrations do not carry them).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use serde_json::Value;

use super::hub::{Hub, Queue};
use super::{Batch, Op, RawChange};
use crate::schema::ddl::quote_ident;
use crate::{Error, Result};

/// How long the payload of a large change is kept for listeners to read.
const PAYLOAD_RETENTION: Duration = Duration::from_secs(600);

/// How long a new subscription waits for the listener to reach its start.
const MARKER_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the listener looks for notifications while none arrive.
const POLL: Duration = Duration::from_millis(2);

/// The most bytes a notification carries inline (PostgreSQL refuses payloads of 8000 bytes
/// and more).
const INLINE_LIMIT: usize = 7999;

/// The objects observe needs in `schema`: the payload table, the numbering sequence and the
/// trigger function.
///
/// The function's body names no schema: it finds its objects through `TG_TABLE_SCHEMA`, quoted
/// by `format('%I')`. It runs as its owner (`SECURITY DEFINER`, with a fixed search path), so
/// that roles writing observed tables need no rights on the sequence or the payload table.
fn setup_sql(schema: &str) -> String {
    let schema = quote_ident(schema);
    format!(
        r#"
CREATE TABLE IF NOT EXISTS {schema}.datastore_change_payloads (
    id BIGSERIAL PRIMARY KEY,
    payload TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE SEQUENCE IF NOT EXISTS {schema}.datastore_change_seq;
CREATE OR REPLACE FUNCTION {schema}.datastore_notify() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $datastore$
DECLARE
    payload TEXT;
    stored BIGINT;
BEGIN
    -- An update that changes nothing is no change.
    IF TG_OP = 'UPDATE' AND to_jsonb(OLD) = to_jsonb(NEW) THEN
        RETURN NULL;
    END IF;
    -- Each change carries a number of its own: PostgreSQL drops a notification identical to
    -- one already sent in the same transaction.
    payload := json_build_object(
        'seq', nextval(format('%I.datastore_change_seq', TG_TABLE_SCHEMA)),
        'xid', txid_current(),
        'schema', TG_TABLE_SCHEMA,
        'table', TG_TABLE_NAME,
        'op', TG_OP,
        'depth', pg_trigger_depth() - 1,
        -- Tells statements apart: the same for a statement's rows and for the rows its
        -- foreign keys and triggers change.
        'statement', statement_timestamp(),
        'old', CASE WHEN TG_OP <> 'INSERT' THEN
            (SELECT json_agg(c.value ORDER BY c.n)
             FROM json_each(row_to_json(OLD)) WITH ORDINALITY AS c(key, value, n)) END,
        'new', CASE WHEN TG_OP <> 'DELETE' THEN
            (SELECT json_agg(c.value ORDER BY c.n)
             FROM json_each(row_to_json(NEW)) WITH ORDINALITY AS c(key, value, n)) END
    )::text;
    IF octet_length(payload) > {INLINE_LIMIT} THEN
        EXECUTE format(
            'INSERT INTO %I.datastore_change_payloads (payload) VALUES ($1) RETURNING id',
            TG_TABLE_SCHEMA
        ) INTO stored USING payload;
        payload := json_build_object('stored', stored)::text;
    END IF;
    PERFORM pg_notify('datastore:' || md5(TG_TABLE_SCHEMA), payload);
    IF TG_OP = 'DELETE' THEN
        RETURN OLD; -- a BEFORE trigger: let the delete happen
    END IF;
    RETURN NULL;
END
$datastore$;
"#,
    )
}

/// The triggers that report `table`'s changes.
///
/// Deletes are reported by a `BEFORE` trigger, where `pg_trigger_depth()` tells a cascade's
/// rows (deleted from inside the foreign key's own trigger) from the statement's; in `AFTER`
/// triggers both report depth 1. Its name sorts after the usual ones, because `BEFORE`
/// triggers run in name order and one that cancels a delete stops those after it.
fn trigger_sql(schema: &str, table: &str) -> String {
    let (schema, table) = (quote_ident(schema), quote_ident(table));
    format!(
        "CREATE OR REPLACE TRIGGER datastore_observe AFTER INSERT OR UPDATE ON {schema}.{table} \
         FOR EACH ROW EXECUTE FUNCTION {schema}.datastore_notify();\n\
         CREATE OR REPLACE TRIGGER zz_datastore_observe_delete BEFORE DELETE ON {schema}.{table} \
         FOR EACH ROW EXECUTE FUNCTION {schema}.datastore_notify();"
    )
}

/// The notification channel of a schema's changes: `datastore:` and the md5 of its name (the
/// trigger computes the same), short enough for PostgreSQL's 63-byte limit whatever the name.
fn channel(conn: &mut PgConnection, schema: &str) -> Result<String> {
    let rows: Vec<Name> = diesel::sql_query("SELECT 'datastore:' || md5($1) AS name")
        .bind::<Text, _>(schema)
        .load(conn)?;
    rows.into_iter()
        .next()
        .map(|r| r.name)
        .ok_or_else(|| Error::Unsupported("md5() returned nothing".into()))
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

/// A store's observe machinery on PostgreSQL: which tables have their triggers, and the
/// listener thread.
#[derive(Debug)]
pub(crate) struct PgObserve {
    state: Mutex<State>,
    /// Subscriptions waiting for the listener to reach their start.
    waiting: Arc<Mutex<Vec<Waiting>>>,
    /// Tells this store's start markers from other stores' on the same channel.
    token: String,
    markers: AtomicU64,
}

impl Default for PgObserve {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            waiting: Arc::default(),
            token: uuid::Uuid::new_v4().simple().to_string(),
            markers: AtomicU64::new(0),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// The schema of the observed tables and its channel, once known.
    schema: Option<(String, String)>,
    /// Tables whose triggers this store created or found.
    triggered: HashSet<String>,
    /// Whether the listener runs: it clears this when it ends, and the next subscription
    /// starts a new one.
    listening: Option<Arc<AtomicBool>>,
}

/// A subscription to open when the listener reaches its marker.
#[derive(Debug)]
struct Waiting {
    marker: String,
    table: Option<String>,
    capacity: usize,
    reply: mpsc::SyncSender<Arc<Queue>>,
}

impl PgObserve {
    /// A subscriber's queue for `table` (every table for `None`), starting exactly after the
    /// commits that preceded this call: the changes of `tables` are reported from now on, and
    /// the queue is opened by the listener when it reaches a marker this call sends, so that
    /// it receives every later commit and no earlier one. Wait for it with
    /// [`Pending::wait`], without holding `conn`.
    pub fn subscribe(
        self: &Arc<Self>,
        conn: &mut PgConnection,
        url: &str,
        hub: &Arc<Hub>,
        tables: &[String],
        table: Option<&str>,
        capacity: usize,
    ) -> Result<Pending> {
        let (channel, alive) = self.ensure(conn, url, hub, tables)?;
        let marker = format!(
            "{}-{}",
            self.token,
            self.markers.fetch_add(1, Ordering::Relaxed)
        );
        let (reply, answer) = mpsc::sync_channel(1);
        lock(&self.waiting).push(Waiting {
            marker: marker.clone(),
            table: table.map(str::to_owned),
            capacity,
            reply,
        });
        let pending = Pending {
            waiting: self.waiting.clone(),
            marker,
            answer,
            alive,
        };
        diesel::sql_query("SELECT pg_notify($1, $2)")
            .bind::<Text, _>(&channel)
            .bind::<Text, _>(serde_json::json!({ "marker": pending.marker }).to_string())
            .execute(conn)?;
        Ok(pending)
    }

    /// Makes sure `tables` report their changes and that the listener runs; the channel, and
    /// the listener's liveness.
    fn ensure(
        self: &Arc<Self>,
        conn: &mut PgConnection,
        url: &str,
        hub: &Arc<Hub>,
        tables: &[String],
    ) -> Result<(String, Arc<AtomicBool>)> {
        let mut state = lock(&self.state);
        let (schema, channel) = match &state.schema {
            Some(known) => known.clone(),
            None => {
                let schema = current_schema(conn)?;
                let channel = channel(conn, &schema)?;
                (schema, channel)
            }
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
        let alive = match &state.listening {
            Some(alive) if alive.load(Ordering::SeqCst) => alive.clone(),
            _ => {
                let alive = Arc::new(AtomicBool::new(true));
                Listener::start(
                    url,
                    &schema,
                    &channel,
                    hub.clone(),
                    Arc::downgrade(self),
                    self.waiting.clone(),
                    alive.clone(),
                )?;
                state.listening = Some(alive.clone());
                alive
            }
        };
        state.schema = Some((schema, channel.clone()));
        Ok((channel, alive))
    }
}

/// A subscription whose marker was sent: the listener opens its queue when it reaches it.
/// Dropped unanswered, it is forgotten.
pub(crate) struct Pending {
    waiting: Arc<Mutex<Vec<Waiting>>>,
    marker: String,
    answer: mpsc::Receiver<Arc<Queue>>,
    alive: Arc<AtomicBool>,
}

impl Pending {
    /// The queue, once the listener reached the marker; an error if the listener ends (its
    /// connection lost) or does not reach it in time.
    pub fn wait(self, url: &str) -> Result<Arc<Queue>> {
        let deadline = Instant::now() + MARKER_TIMEOUT;
        loop {
            match self.answer.recv_timeout(POLL * 50) {
                Ok(queue) => return Ok(queue),
                Err(mpsc::RecvTimeoutError::Timeout)
                    if self.alive.load(Ordering::SeqCst) && Instant::now() < deadline => {}
                Err(_) => {
                    return Err(Error::Connection {
                        url: url.to_owned(),
                        message: "the observe listener's connection was lost; subscribe again \
                                  to start a new one"
                            .into(),
                    })
                }
            }
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        lock(&self.waiting).retain(|w| w.marker != self.marker);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The listener: one connection that LISTENs on the schema's channel, and a thread that
/// publishes what arrives until the store is gone.
struct Listener {
    conn: PgConnection,
    schema: String,
    channel: String,
    /// Held until the listener ends, so that subscriptions end after the last change.
    hub: Arc<Hub>,
    /// Gone when the store is.
    store: Weak<PgObserve>,
    waiting: Arc<Mutex<Vec<Waiting>>>,
    /// Cleared when the listener ends, however it ends.
    alive: Arc<AtomicBool>,
    /// The transaction being received: its changes, and its id.
    batch: Batch,
    xid: Option<i64>,
    /// The statement being received (its start time), and its changes, put in delivery order
    /// once it is over.
    statement: Option<String>,
    statement_changes: Vec<RawChange>,
    /// A fence this listener sent itself and has not received yet; how many it sent; what
    /// tells its fences from other listeners' on the same channel.
    fence_pending: bool,
    fences: u64,
    token: u64,
    /// Column types per table, for turning JSON values back into stored values.
    columns: HashMap<String, Vec<String>>,
    last_cleanup: Instant,
    /// Why the listener ended, when it ended on an error.
    lost: Option<String>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::SeqCst);
        if self.store.strong_count() > 0 {
            // The connection was lost while the store lives: what was committed meanwhile
            // will never be known, so the subscriptions end, saying so, rather than skip it.
            let reason = self
                .lost
                .take()
                .unwrap_or_else(|| "the observe listener stopped".into());
            self.hub.lose_all(&reason);
        }
    }
}

impl Listener {
    fn start(
        url: &str,
        schema: &str,
        channel: &str,
        hub: Arc<Hub>,
        store: Weak<PgObserve>,
        waiting: Arc<Mutex<Vec<Waiting>>>,
        alive: Arc<AtomicBool>,
    ) -> Result<()> {
        let mut conn = PgConnection::establish(url).map_err(|e| Error::Connection {
            url: url.to_owned(),
            message: e.to_string(),
        })?;
        // Named after its channel, so that it can be told apart in `pg_stat_activity`.
        let name = format!(
            "datastore listener {}",
            channel.trim_start_matches("datastore:")
        );
        conn.batch_execute(&format!(
            "SET application_name = {}; LISTEN {}",
            crate::schema::ddl::quote_literal(&name),
            quote_ident(channel)
        ))?;
        let mut listener = Listener {
            conn,
            schema: schema.to_owned(),
            channel: channel.to_owned(),
            hub,
            store,
            waiting,
            alive,
            batch: Batch::default(),
            xid: None,
            statement: None,
            statement_changes: Vec::new(),
            fence_pending: false,
            fences: 0,
            token: uuid::Uuid::new_v4().as_u64_pair().0,
            columns: HashMap::new(),
            last_cleanup: Instant::now(),
            lost: None,
        };
        thread::Builder::new()
            .name("datastore-pg-listener".into())
            .spawn(move || listener.run())
            .map_err(|e| Error::Unsupported(format!("cannot start the listener thread: {e}")))?;
        Ok(())
    }

    /// Until the store is gone or the connection breaks. When the store is gone, what was
    /// committed before is still delivered; then the hub drops, ending every subscription.
    ///
    /// A transaction is published once it is known whole. Its notifications are contiguous,
    /// but may arrive over several reads; so after notifications arrive, the listener sends
    /// itself a fence (a `NOTIFY` of its own), and publishes what preceded it when it comes
    /// back: everything committed before the fence was, by then, received whole.
    fn run(&mut self) {
        if let Err(e) = self.listen() {
            self.lost = Some(format!("the observe listener's connection failed: {e}"));
        }
    }

    fn listen(&mut self) -> diesel::QueryResult<()> {
        // The fence sent once the store was gone.
        let mut last_fence = None;
        loop {
            let stopping = self.store.strong_count() == 0;
            let received = self.receive()?;
            if let Some(last) = last_fence {
                if self.fences == last && !self.fence_pending {
                    return Ok(()); // it came back: everything committed before the end is out
                }
            } else if stopping {
                self.fence()?;
                last_fence = Some(self.fences);
            }
            if received && !self.fence_pending {
                self.fence()?;
            }
            if !received {
                thread::sleep(POLL);
            }
            if self.last_cleanup.elapsed() > PAYLOAD_RETENTION / 4 {
                self.cleanup();
            }
        }
    }

    fn fence(&mut self) -> diesel::QueryResult<()> {
        self.fences += 1;
        self.fence_pending = true;
        let fence = serde_json::json!({ "fence": self.fences, "listener": self.token });
        diesel::sql_query("SELECT pg_notify($1, $2)")
            .bind::<Text, _>(&self.channel)
            .bind::<Text, _>(fence.to_string())
            .execute(&mut self.conn)
            .map(drop)
    }

    /// Takes in the notifications that arrived: changes join the transaction being received
    /// (the previous one is published when another begins), markers open their subscription,
    /// this listener's fence publishes what preceded it. Whether anything but fences came.
    fn receive(&mut self) -> diesel::QueryResult<bool> {
        let mut any = false;
        loop {
            let Some(notification) = self.conn.notifications_iter().next() else {
                break;
            };
            let Ok(notification) = serde_json::from_str::<Value>(&notification?.payload) else {
                continue;
            };
            // Fences do not count: one coming back must not call for another.
            any |= notification.get("fence").is_none();
            if let Some(marker) = notification.get("marker").and_then(Value::as_str) {
                self.publish();
                self.open(marker);
                continue;
            }
            if notification.get("fence").is_some() {
                let ours = notification.get("listener").and_then(Value::as_u64) == Some(self.token)
                    && notification.get("fence").and_then(Value::as_u64) == Some(self.fences);
                if ours {
                    self.publish();
                    self.fence_pending = false;
                }
                continue;
            }
            let change = match notification.get("stored").and_then(Value::as_i64) {
                Some(key) => match self.stored(key) {
                    Some(change) => change,
                    None => continue,
                },
                None => notification,
            };
            let xid = change.get("xid").and_then(Value::as_i64);
            if xid != self.xid {
                self.publish();
                self.xid = xid;
            }
            let statement = change
                .get("statement")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if statement != self.statement {
                self.end_statement();
                self.statement = statement;
            }
            let mut batch = std::mem::take(&mut self.batch);
            if let Some(captured) = self.capture(&mut batch, &change) {
                self.statement_changes.push(captured);
            }
            self.batch = batch;
        }
        Ok(any)
    }

    /// The statement is over: its changes join the transaction's, in delivery order (a
    /// cascade's rows before the rows whose delete caused it, as on SQLite).
    fn end_statement(&mut self) {
        let changes = std::mem::take(&mut self.statement_changes);
        self.batch
            .changes
            .extend(super::connection::in_delivery_order(changes));
    }

    /// Publishes the transaction received so far.
    fn publish(&mut self) {
        self.end_statement();
        self.statement = None;
        let batch = std::mem::take(&mut self.batch);
        self.send(batch);
    }

    fn send(&self, batch: Batch) {
        if batch.changes.is_empty() {
            return;
        }
        let seq = self.hub.next_seq();
        self.hub.publish(seq, batch);
    }

    /// Opens the subscription waiting for `marker`, if it is this store's.
    fn open(&self, marker: &str) {
        let mut waiting = lock(&self.waiting);
        if let Some(i) = waiting.iter().position(|w| w.marker == marker) {
            let w = waiting.swap_remove(i);
            let queue = self.hub.subscribe(w.table.as_deref(), w.capacity);
            let _ = w.reply.send(queue);
        }
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

    /// A change's rows, into the batch's; the change, for its statement's list.
    fn capture(&mut self, batch: &mut Batch, change: &Value) -> Option<RawChange> {
        let (Some(table), Some(op)) = (
            change.get("table").and_then(Value::as_str),
            change.get("op").and_then(Value::as_str),
        ) else {
            return None;
        };
        let op = match op {
            "INSERT" => Op::Insert,
            "UPDATE" => Op::Update,
            "DELETE" => Op::Delete,
            _ => return None,
        };
        if !self.columns.contains_key(table) {
            // Not cached when the lookup fails: the next change tries again.
            if let Ok(columns) = table_columns(&mut self.conn, &self.schema, table) {
                let types = columns.into_iter().map(|(_, ty)| ty).collect();
                self.columns.insert(table.to_owned(), types);
            }
        }
        let no_types = Vec::new();
        let types = self.columns.get(table).unwrap_or(&no_types);
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
        Some(RawChange {
            table: table.into(),
            op,
            old,
            new,
            depth: change.get("depth").and_then(Value::as_i64).unwrap_or(0) as i32,
        })
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

/// `bytea`'s hex form, `\x0aff..`; `None` for anything else.
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let digits = text.strip_prefix("\\x")?.as_bytes();
    if digits.len() % 2 != 0 {
        return None;
    }
    let nibble = |d: u8| (d as char).to_digit(16).map(|n| n as u8);
    digits
        .chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
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
        assert_eq!(decode_hex("\\xaé"), None, "not hex, and no panic");
    }
}
