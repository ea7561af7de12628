//! Observe on PostgreSQL: row triggers record each change in an owner-only table and
//! `NOTIFY` only its key and a random token (delivered by the server only when the
//! transaction commits, in commit order); one listener connection per store reads the changes
//! those notifications name and turns them into the same committed batches the SQLite hooks
//! produce. What is installed, and the checks around it, are in `triggers.rs`.
//!
//! The channel is not private: any role that can connect may `LISTEN` and `NOTIFY` on it. So
//! a notification carries no value or key of a row (`<id>:<token>`), and the listener accepts
//! one only if the change table holds a row with that id and token (a role without rights on
//! the table can neither read nor guess one), whose transaction it has not seen end yet, and
//! which it has not taken already: a copy of a notification, a guessed id or a made-up change
//! is ignored. The listener's own fences and the subscriptions' markers carry fresh random
//! nonces, and a fence counts only from the listener's own backend.
//!
//! A change's row is stored flat: its values as PostgreSQL's composite-value text (SQL NULL
//! and JSON's `null` stay apart, and a JSON value adds no nesting to the envelope), with the
//! table's column names and types as they were when the trigger ran, so a change of the
//! table's columns never shifts a row. Every listener removes recorded changes older than ten
//! minutes (`RETENTION`) whose transactions had ended ten minutes ago, when it starts and every
//! half minute: every listener has read them by then, unless it was held up for five minutes
//! (`STALL_LIMIT`), and then it ends its feed.
//!
//! The trigger functions, the change table and the triggers live in the schema of the
//! observed tables; they are created when a table is first observed (they are
//! infrastructure, not part of the models, so migrations do not carry them).

mod decode;
mod libpq;
mod logical;
mod pgoutput;
mod triggers;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use diesel::connection::SimpleConnection;
use diesel::sql_types::{Array, BigInt, Double, Integer, Text};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};

use self::decode::{Note, Payload, Snapshot};
use self::logical::LogicalListener;
use self::triggers::changes_table;
use super::hub::{Hub, Queue};
use super::{Batch, ChangeFeed, Columns, Op, RawChange, Shape};
use crate::schema::ddl::{quote_ident, quote_literal};
use crate::{Error, Result};

/// A listener held up this long may have missed changes whose rows were removed meanwhile:
/// it ends, and its subscriptions are told the feed was lost. (Half of `RETENTION`: the other
/// half is the margin.)
const STALL_LIMIT: Duration = Duration::from_secs(300);

/// How often a listener asks the server's time, to tell whether it was held up (by the
/// server's clock, which the retention of recorded changes goes by); sooner when this
/// machine's clock says so much time went by.
const HEARTBEAT: Duration = Duration::from_secs(30);

/// How often a listener removes recorded changes old enough (in batches of `CLEANUP_BATCH`,
/// one per round, until none is left), starting when it starts.
const CLEANUP_EVERY: Duration = Duration::from_secs(30);
const CLEANUP_BATCH: i64 = 5000;

/// How often, at most, a listener checks the trigger function's body when notifications of an
/// earlier version's format arrive (anyone can send such text, so it is only a hint).
const BODY_CHECK_EVERY: Duration = Duration::from_secs(1);

/// How long a new subscription waits for the listener to reach its start.
const MARKER_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the listener looks for notifications while none arrive.
const POLL: Duration = Duration::from_millis(2);

/// How often it looks while its own fence is on its way: the changes received before the
/// fence are published when it comes back, a round trip to the server later.
const FENCE_POLL: Duration = Duration::from_micros(100);

/// The most notifications the listener takes in one round, and the most changes it reads in
/// one query.
const ROUND: usize = 1000;

/// What a channel's name starts with.
const CHANNEL_PREFIX: &str = "datastore:";

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

/// A store's observe machinery on PostgreSQL: which feed it uses, which tables are set up for
/// it, and the listener thread.
#[derive(Debug, Default)]
pub(crate) struct PgObserve {
    /// The feed the store was opened with.
    feed: ChangeFeed,
    state: Mutex<State>,
    /// Subscriptions waiting for the listener to reach their start.
    waiting: Arc<Mutex<Vec<Waiting>>>,
}

#[derive(Debug, Default)]
struct State {
    /// The schema of the observed tables and its channel, once known.
    schema: Option<(String, String)>,
    /// Whether the feed is logical decoding, once decided (at the first subscription).
    logical: Option<bool>,
    /// Tables set up for logical decoding by this store or found so.
    published: HashSet<String>,
    /// Whether the schema's trigger function is this version's.
    function_current: bool,
    /// Tables whose triggers this store created or found.
    triggered: HashSet<String>,
    /// Whether the listener runs: it clears this when it ends, and the next subscription
    /// starts a new one.
    listening: Option<Arc<AtomicBool>>,
}

/// A subscription to open when the listener reaches its marker.
#[derive(Debug)]
struct Waiting {
    /// The marker's nonce: fresh and random, so that no one can send it before this store.
    marker: String,
    /// The tables the queue receives (every table's for `None`).
    tables: Option<Vec<String>>,
    capacity: usize,
    reply: mpsc::SyncSender<Arc<Queue>>,
}

impl PgObserve {
    pub fn new(feed: ChangeFeed) -> Self {
        Self {
            feed,
            ..Self::default()
        }
    }

    /// A subscriber's queue for the tables `queued` (every table for `None`), starting exactly after the
    /// commits that preceded this call: the changes of `tables` are reported from now on, and
    /// the queue is opened by the listener when it reaches a marker this call sends, so that
    /// it receives every later commit and no earlier one. Wait for it with
    /// [`Pending::wait`], without holding `conn`.
    #[allow(clippy::too_many_arguments)]
    pub fn subscribe(
        self: &Arc<Self>,
        conn: &mut PgConnection,
        url: &str,
        hub: &Arc<Hub>,
        tables: &[String],
        queued: Option<&[String]>,
        capacity: usize,
        writer: Option<i32>,
    ) -> Result<Pending> {
        let (channel, alive, logical) = self.ensure(conn, url, hub, tables, writer)?;
        let marker = uuid::Uuid::new_v4().simple().to_string();
        let (reply, answer) = mpsc::sync_channel(1);
        lock(&self.waiting).push(Waiting {
            marker: marker.clone(),
            tables: queued.map(<[String]>::to_vec),
            capacity,
            reply,
        });
        let pending = Pending {
            waiting: self.waiting.clone(),
            marker,
            answer,
            alive,
        };
        if logical {
            logical::send_marker(conn, &pending.marker)?;
        } else {
            diesel::sql_query("SELECT pg_notify($1, $2)")
                .bind::<Text, _>(&channel)
                .bind::<Text, _>(format!("m:{}", pending.marker))
                .execute(conn)?;
        }
        Ok(pending)
    }

    /// Makes sure `tables` report their changes and that the listener runs; the channel, and
    /// the listener's liveness. What exists already and is this version's is left alone:
    /// creating a trigger waits for the transactions that wrote the table, which may be the
    /// caller's own (`writer`, the backend of the caller's `store.transaction` on this thread):
    /// then it fails at once instead.
    ///
    /// A new listener checks everything again: an earlier version of the store, running
    /// meanwhile, may have replaced a function or a trigger.
    fn ensure(
        self: &Arc<Self>,
        conn: &mut PgConnection,
        url: &str,
        hub: &Arc<Hub>,
        tables: &[String],
        writer: Option<i32>,
    ) -> Result<(String, Arc<AtomicBool>, bool)> {
        let mut state = lock(&self.state);
        let (schema, channel) = match &state.schema {
            Some(known) => known.clone(),
            None => {
                let schema = current_schema(conn)?;
                let channel = channel(conn, &schema)?;
                (schema, channel)
            }
        };
        let logical = match state.logical {
            Some(known) => known,
            None => match self.feed {
                ChangeFeed::Triggers => false,
                ChangeFeed::Auto => logical::available(conn)?,
                ChangeFeed::LogicalDecoding if logical::available(conn)? => true,
                ChangeFeed::LogicalDecoding => return Err(logical::unavailable()),
            },
        };
        state.logical = Some(logical);
        state.schema = Some((schema.clone(), channel.clone()));
        if logical {
            let alive = self.ensure_logical(&mut state, conn, url, hub, tables, writer)?;
            return Ok((channel, alive, true));
        }
        let listening = state
            .listening
            .as_ref()
            .is_some_and(|alive| alive.load(Ordering::SeqCst));
        if !listening {
            state.function_current = false;
            state.triggered.clear();
        }
        let mut missing: Vec<&String> = tables
            .iter()
            .filter(|t| !state.triggered.contains(*t))
            .collect();
        if !missing.is_empty() || !state.function_current {
            state.function_current = triggers::functions_are_current(conn, &schema)?;
            let found = triggers::triggered_tables(conn, &schema)?;
            missing.retain(|t| !found.contains(*t));
            state.triggered.extend(found);
            if !missing.is_empty() || !state.function_current {
                if let Some(writer) = writer {
                    let mut relations: Vec<String> = missing.iter().map(|t| (*t).clone()).collect();
                    if !state.function_current {
                        relations.push(triggers::CHANGE_TABLE.to_owned());
                    }
                    triggers::refuse_own_locks(conn, writer, &schema, &relations, false)?;
                }
                let mut sql = String::new();
                if !state.function_current {
                    sql.push_str(&triggers::setup_sql(&schema));
                }
                for table in &missing {
                    sql.push_str(&triggers::trigger_sql(&schema, table));
                }
                // One at a time across processes: concurrent CREATE OR REPLACE FUNCTION fails.
                // What is refused afterwards is rolled back.
                conn.transaction::<_, Error, _>(|conn| {
                    conn.batch_execute(&format!(
                        "SELECT pg_advisory_xact_lock({});\n{sql}",
                        i64::from_be_bytes(*b"dsobserv"),
                    ))?;
                    triggers::check_owners(conn, &schema, tables)
                })?;
                state.function_current = true;
                state.triggered.extend(missing.into_iter().cloned());
            } else {
                triggers::check_owners(conn, &schema, tables)?;
            }
        }
        let alive = match &state.listening {
            Some(alive) if alive.load(Ordering::SeqCst) => alive.clone(),
            _ => {
                let (outlet, alive) = self.outlet(hub);
                Listener::start(url, &schema, &channel, outlet)?;
                state.listening = Some(alive.clone());
                alive
            }
        };
        Ok((channel, alive, false))
    }

    /// Where a new listener delivers, and its liveness (cleared when it ends).
    fn outlet(self: &Arc<Self>, hub: &Arc<Hub>) -> (Outlet, Arc<AtomicBool>) {
        let alive = Arc::new(AtomicBool::new(true));
        let outlet = Outlet {
            hub: hub.clone(),
            store: Arc::downgrade(self),
            waiting: self.waiting.clone(),
            alive: alive.clone(),
            lost: None,
        };
        (outlet, alive)
    }

    /// [`ensure`](Self::ensure) for the logical decoding feed: `tables` set up for it, and
    /// its listener running.
    fn ensure_logical(
        self: &Arc<Self>,
        state: &mut State,
        conn: &mut PgConnection,
        url: &str,
        hub: &Arc<Hub>,
        tables: &[String],
        writer: Option<i32>,
    ) -> Result<Arc<AtomicBool>> {
        let Some((schema, channel)) = state.schema.clone() else {
            unreachable!("the schema is known before the feed is set up")
        };
        let listening = state
            .listening
            .as_ref()
            .is_some_and(|alive| alive.load(Ordering::SeqCst));
        if !listening {
            state.published.clear();
        }
        let publication = logical::publication(&channel);
        let mut missing: Vec<&String> = tables
            .iter()
            .filter(|t| !state.published.contains(*t))
            .collect();
        if !missing.is_empty() {
            let found = logical::published_tables(conn, &schema, &publication, tables)?;
            missing.retain(|t| !found.contains(*t));
            state.published.extend(found);
        }
        if !missing.is_empty() {
            // Setting a table up locks it against every other use: refused at once if the
            // caller's own transaction used it, rather than after the lock timeout.
            if let Some(writer) = writer {
                let relations: Vec<String> = missing.iter().map(|t| (*t).clone()).collect();
                triggers::refuse_own_locks(conn, writer, &schema, &relations, true)?;
            }
            logical::publish_tables(conn, &schema, &publication, &missing)?;
            state.published.extend(missing.into_iter().cloned());
        }
        match &state.listening {
            Some(alive) if alive.load(Ordering::SeqCst) => Ok(alive.clone()),
            _ => {
                if let Some(writer) = writer {
                    logical::refuse_open_write(conn, writer)?;
                }
                let (outlet, alive) = self.outlet(hub);
                LogicalListener::start(url, &channel, outlet)?;
                state.listening = Some(alive.clone());
                Ok(alive)
            }
        }
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
                    return Err(Error::connection(
                        url,
                        "the observe listener's connection was lost; subscribe again to start \
                         a new one",
                    ))
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

/// A change as the change table holds it.
#[derive(QueryableByName)]
struct Stored {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    token: String,
    #[diesel(sql_type = BigInt)]
    xid: i64,
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    payload: String,
}

#[derive(QueryableByName)]
struct SnapshotText {
    #[diesel(sql_type = Text)]
    snapshot: String,
}

#[derive(QueryableByName)]
struct Start {
    #[diesel(sql_type = Integer)]
    pid: i32,
    #[diesel(sql_type = Text)]
    snapshot: String,
    #[diesel(sql_type = Double)]
    now: f64,
}

#[derive(QueryableByName)]
struct ServerTime {
    #[diesel(sql_type = Double)]
    now: f64,
}

/// The listener: one connection that LISTENs on the schema's channel, and a thread that
/// publishes what arrives until the store is gone.
struct Listener {
    conn: PgConnection,
    /// The change table, qualified.
    changes: String,
    channel: String,
    /// This listener's backend: its fences come from it.
    pid: i32,
    outlet: Outlet,
    /// The transaction being received: its changes, and its id.
    batch: Batch,
    xid: Option<i64>,
    /// The statement being received (its start time), and its changes, put in delivery order
    /// once it is over.
    statement: Option<String>,
    statement_changes: Vec<RawChange>,
    /// The rows the statement's inserts and updates left (by a hash of their table and
    /// text): a cascade's delete of one of them belongs to a later statement.
    statement_rows: HashSet<u64>,
    /// The fence this listener sent itself and has not received yet: its nonce, and which
    /// transactions had ended when it was sent. How many fences it sent.
    fence: Option<(String, Snapshot)>,
    fences: u64,
    /// Transactions whose every notification this listener has received: a notification of
    /// one of them now is a copy.
    ended: Snapshot,
    /// Changes taken whose transaction `ended` does not cover yet, with their transaction:
    /// a second notification of one of them is a copy.
    taken: HashMap<i64, i64>,
    /// Column lists seen, by their text, so that the rows of one table share one.
    columns: HashMap<String, Arc<Columns>>,
    /// The schema: its trigger function's body is checked when notifications of an earlier
    /// version's format arrive, at most every `BODY_CHECK_EVERY` (when it was last).
    schema: String,
    body_checked: Option<Instant>,
    /// When recorded changes were last removed (`None`: due now), and whether a full batch
    /// left more to remove.
    last_cleanup: Option<Instant>,
    more_to_remove: bool,
    /// When the listener last asked the server's time, by this machine's two clocks, and the
    /// server's time then (seconds since the epoch).
    heartbeat: (Instant, SystemTime, f64),
}

/// Where a listener delivers, whichever feed it reads: the hub, the subscriptions waiting for
/// their marker, and what ends with it.
struct Outlet {
    /// Held until the listener ends, so that subscriptions end after the last change.
    hub: Arc<Hub>,
    /// Gone when the store is.
    store: Weak<PgObserve>,
    waiting: Arc<Mutex<Vec<Waiting>>>,
    /// Cleared when the listener ends, however it ends.
    alive: Arc<AtomicBool>,
    /// Why the listener ended, when it ended on an error.
    lost: Option<String>,
}

impl Outlet {
    fn store_is_gone(&self) -> bool {
        self.store.strong_count() == 0
    }

    /// Publishes a committed transaction's changes (nothing, for none).
    fn publish(&self, batch: Batch) {
        if batch.changes.is_empty() {
            return;
        }
        let seq = self.hub.next_seq();
        self.hub.publish(seq, batch);
    }

    /// Opens the subscription waiting for the marker `nonce`, if it is this store's: it
    /// receives what commits from now on. Whether there was one.
    fn open(&self, nonce: &str) -> bool {
        let waiting = {
            let mut waiting = lock(&self.waiting);
            let Some(i) = waiting.iter().position(|w| w.marker == nonce) else {
                return false;
            };
            waiting.swap_remove(i)
        };
        let queue = self
            .hub
            .subscribe(waiting.tables.as_deref(), waiting.capacity);
        let _ = waiting.reply.send(queue);
        true
    }

    /// Whether a marker `nonce` is awaited.
    fn awaits(&self, nonce: &str) -> bool {
        lock(&self.waiting).iter().any(|w| w.marker == nonce)
    }
}

impl Drop for Outlet {
    fn drop(&mut self) {
        if !self.store_is_gone() {
            // The connection was lost while the store lives: what was committed meanwhile
            // will never be known, so the subscriptions end, saying so, rather than skip it.
            // Before `alive` is cleared: a new listener, started once it is, opens
            // subscriptions this must not end.
            let reason = self
                .lost
                .take()
                .unwrap_or_else(|| "the observe listener stopped".into());
            self.hub.lose_all(&reason);
        }
        self.alive.store(false, Ordering::SeqCst);
    }
}

/// A row as a change recorded it (its table and its text), for telling whether two changes
/// are of one row as it stood.
fn row_identity(table: &str, text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (table, text).hash(&mut hasher);
    hasher.finish()
}

/// Why the listener cannot go on.
fn connection_failed(e: impl std::fmt::Display) -> String {
    format!("the observe listener's connection failed: {e}")
}

impl Listener {
    fn start(url: &str, schema: &str, channel: &str, outlet: Outlet) -> Result<()> {
        let mut conn = PgConnection::establish(url).map_err(|e| Error::connection(url, e))?;
        // Named after its channel, so that it can be told apart in `pg_stat_activity`.
        let name = format!(
            "datastore listener {}",
            channel.trim_start_matches("datastore:")
        );
        let changes = changes_table(schema);
        // It reads and removes stored changes: refused rights fail the subscription now, not
        // the feed later.
        conn.batch_execute(&format!(
            "SET application_name = {}; LISTEN {}; \
             SELECT 1 FROM {changes} LIMIT 0; DELETE FROM {changes} WHERE false",
            quote_literal(&name),
            quote_ident(channel)
        ))?;
        // The transactions that had ended once it listened: a notification of theirs reaching
        // it precedes every subscription it serves.
        let start: Vec<Start> = diesel::sql_query(
            "SELECT pg_backend_pid() AS pid, pg_current_snapshot()::text AS snapshot, \
             extract(epoch FROM clock_timestamp())::float8 AS now",
        )
        .load(&mut conn)?;
        let start = start.into_iter().next();
        let (Some(pid), Some(server_now), Some(ended)) = (
            start.as_ref().map(|s| s.pid),
            start.as_ref().map(|s| s.now),
            start.and_then(|s| Snapshot::parse(&s.snapshot)),
        ) else {
            return Err(Error::Unsupported(
                "pg_current_snapshot() returned no snapshot".into(),
            ));
        };
        let mut listener = Listener {
            conn,
            changes,
            channel: channel.to_owned(),
            pid,
            outlet,
            batch: Batch::default(),
            xid: None,
            statement: None,
            statement_changes: Vec::new(),
            statement_rows: HashSet::new(),
            fence: None,
            fences: 0,
            ended,
            taken: HashMap::new(),
            columns: HashMap::new(),
            schema: schema.to_owned(),
            body_checked: None,
            last_cleanup: None,
            more_to_remove: false,
            heartbeat: (Instant::now(), SystemTime::now(), server_now),
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
    /// but may arrive over several reads; so after changes arrive, the listener sends itself
    /// a fence (a `NOTIFY` of its own), and publishes what preceded it when it comes back:
    /// everything committed before the fence was, by then, received whole.
    fn run(&mut self) {
        if let Err(reason) = self.listen() {
            self.outlet.lost = Some(reason);
        }
    }

    fn listen(&mut self) -> std::result::Result<(), String> {
        // The fence sent once the store was gone.
        let mut last_fence = None;
        loop {
            self.check_held_up()?;
            let stopping = self.outlet.store_is_gone();
            let received = self.receive()?;
            // Held up while it received (before it read the changes named)?
            self.check_held_up()?;
            if let Some(last) = last_fence {
                if self.fences == last && self.fence.is_none() {
                    return Ok(()); // it came back: everything committed before the end is out
                }
            } else if stopping {
                self.send_fence().map_err(connection_failed)?;
                last_fence = Some(self.fences);
            }
            if received && self.fence.is_none() {
                self.send_fence().map_err(connection_failed)?;
            }
            if !received {
                thread::sleep(if self.fence.is_some() {
                    FENCE_POLL
                } else {
                    POLL
                });
            }
            if self.more_to_remove
                || self
                    .last_cleanup
                    .is_none_or(|last| last.elapsed() > CLEANUP_EVERY)
            {
                self.cleanup().map_err(connection_failed)?;
            }
        }
    }

    /// Fails when the listener was held up for longer than `STALL_LIMIT` (the process was
    /// suspended, say): changes it had not read may have been removed meanwhile, and it cannot
    /// know which. Judged by the server's clock, which the removal goes by, asked every
    /// `HEARTBEAT` (or sooner, when either of this machine's clocks says that much went by:
    /// the monotonic one stops while the machine sleeps, the wall clock may be set).
    fn check_held_up(&mut self) -> std::result::Result<(), String> {
        let (instant, system, server_then) = self.heartbeat;
        let elapsed = instant.elapsed().max(system.elapsed().unwrap_or_default());
        if elapsed < HEARTBEAT {
            return Ok(());
        }
        let now: Vec<ServerTime> =
            diesel::sql_query("SELECT extract(epoch FROM clock_timestamp())::float8 AS now")
                .load(&mut self.conn)
                .map_err(connection_failed)?;
        let server_now = now.first().map_or(server_then, |t| t.now);
        let held_up = server_now - server_then;
        if held_up > STALL_LIMIT.as_secs_f64() {
            return Err(format!(
                "the observe listener was held up for {held_up:.0} s, and may have missed changes"
            ));
        }
        self.heartbeat = (Instant::now(), SystemTime::now(), server_now);
        Ok(())
    }

    /// Sends a fence: a fresh nonce, with a snapshot taken before the fence is queued, so
    /// that every transaction the snapshot saw ended has its notifications ahead of it.
    fn send_fence(&mut self) -> diesel::QueryResult<()> {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let sent: Vec<SnapshotText> = diesel::sql_query(
            "SELECT pg_current_snapshot()::text AS snapshot FROM (SELECT pg_notify($1, $2)) AS sent",
        )
        .bind::<Text, _>(&self.channel)
        .bind::<Text, _>(format!("f:{nonce}"))
        .load(&mut self.conn)?;
        let snapshot = sent
            .into_iter()
            .next()
            .and_then(|s| Snapshot::parse(&s.snapshot))
            .ok_or_else(|| {
                diesel::result::Error::DeserializationError("no snapshot with the fence".into())
            })?;
        self.fences += 1;
        self.fence = Some((nonce, snapshot));
        Ok(())
    }

    /// Takes in the notifications that arrived: changes join the transaction being received
    /// (the previous one is published when another begins), markers open their subscription,
    /// this listener's fence publishes what preceded it. Anything else is ignored. Whether a
    /// change or a marker came.
    fn receive(&mut self) -> std::result::Result<bool, String> {
        let mut notes = Vec::new();
        let mut earlier_format = false;
        while notes.len() < ROUND {
            match self.conn.notifications_iter().next() {
                None => break,
                Some(Err(e)) => return Err(connection_failed(e)),
                Some(Ok(n)) => match Note::parse(&n.payload) {
                    Some(note) => notes.push((note, n.process_id)),
                    None => earlier_format |= n.payload.starts_with('{'),
                },
            }
        }
        if earlier_format {
            self.check_body()?;
        }
        if notes.is_empty() {
            return Ok(false);
        }
        let ids: Vec<i64> = notes
            .iter()
            .filter_map(|(note, _)| match note {
                Note::Change { id, .. } if !self.taken.contains_key(id) => Some(*id),
                _ => None,
            })
            .collect();
        let mut stored = self.read(&ids).map_err(connection_failed)?;
        let mut any = false;
        for (note, pid) in notes {
            match note {
                // Anyone can send a marker or a fence: only the ones this store is waiting
                // for do anything.
                Note::Marker(nonce) => {
                    if self.outlet.awaits(&nonce) {
                        self.publish();
                        self.outlet.open(&nonce);
                        any = true;
                    }
                }
                Note::Fence(nonce) => {
                    let ours = pid == self.pid
                        && self.fence.as_ref().is_some_and(|(sent, _)| *sent == nonce);
                    if let Some((_, snapshot)) = self.fence.take_if(|_| ours) {
                        self.publish();
                        self.advance(snapshot);
                    }
                }
                Note::Change { id, token } => {
                    // Stored, with this token, of a transaction not seen ending, not taken:
                    // anything else is a copy or made up.
                    let genuine = stored.get(&id).is_some_and(|row| {
                        row.token == token
                            && !self.ended.ended(row.xid)
                            && !self.taken.contains_key(&id)
                    });
                    // Only a genuine note takes its row: a forgery naming the same id ahead of
                    // it in the same round must leave the row for it.
                    if let Some(row) = genuine.then(|| stored.remove(&id)).flatten() {
                        self.taken.insert(id, row.xid);
                        self.take(row);
                        any = true;
                    }
                }
            }
        }
        Ok(any)
    }

    /// The stored changes of these ids, in chunks.
    fn read(&mut self, ids: &[i64]) -> diesel::QueryResult<HashMap<i64, Stored>> {
        let mut stored = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(ROUND) {
            let rows: Vec<Stored> = diesel::sql_query(format!(
                "SELECT id, token::text AS token, xid, table_name, payload FROM {} \
                 WHERE id = ANY($1) AND token IS NOT NULL AND xid IS NOT NULL \
                 AND table_name IS NOT NULL",
                self.changes
            ))
            .bind::<Array<BigInt>, _>(chunk)
            .load(&mut self.conn)?;
            stored.extend(rows.into_iter().map(|row| (row.id, row)));
        }
        Ok(stored)
    }

    /// Every transaction `snapshot` saw ended is received whole: copies of its changes are
    /// known as such by their transaction from now on.
    fn advance(&mut self, snapshot: Snapshot) {
        self.taken.retain(|_, xid| !snapshot.ended(*xid));
        self.ended = snapshot;
    }

    /// Removes a batch of recorded changes old enough (see `triggers::remove_changes`).
    fn cleanup(&mut self) -> diesel::QueryResult<()> {
        self.last_cleanup = Some(Instant::now());
        let removed = triggers::remove_changes(&mut self.conn, &self.changes, CLEANUP_BATCH)?;
        self.more_to_remove = removed as i64 == CLEANUP_BATCH;
        Ok(())
    }

    /// A notification of an earlier version's format (a JSON object: the whole row) came:
    /// if the trigger function is no longer this version's (an earlier version's store
    /// replaced it), changes are being recorded in a form this listener cannot read, and
    /// may be missed: the feed is lost, and the next subscription puts the function back.
    /// Anyone may send such text, so it is only a hint, checked at most every
    /// `BODY_CHECK_EVERY`.
    fn check_body(&mut self) -> std::result::Result<(), String> {
        if self
            .body_checked
            .is_some_and(|checked| checked.elapsed() < BODY_CHECK_EVERY)
        {
            return Ok(());
        }
        self.body_checked = Some(Instant::now());
        match triggers::functions_are_current(&mut self.conn, &self.schema) {
            Ok(true) => Ok(()),
            Ok(false) => Err(
                "the trigger function was replaced by an earlier version of datastore, whose \
                 changes this version cannot read, so changes may have been missed; stop the \
                 earlier version's processes and subscribe again (which restores the function)"
                    .into(),
            ),
            Err(e) => Err(connection_failed(e)),
        }
    }

    /// A change taken: it joins its transaction, and its statement.
    fn take(&mut self, row: Stored) {
        if self.xid != Some(row.xid) {
            self.publish();
            self.xid = Some(row.xid);
        }
        let table: Arc<str> = row.table_name.into();
        let change = match serde_json::from_str::<Payload>(&row.payload) {
            Ok(payload) => {
                if self.statement.as_ref() != Some(&payload.statement) {
                    self.end_statement();
                    self.statement = Some(payload.statement.clone());
                } else if payload.op() == Some(Op::Delete)
                    && payload.depth > 0
                    && payload
                        .old
                        .as_ref()
                        .is_some_and(|old| self.statement_rows.contains(&row_identity(&table, old)))
                {
                    // A cascade deleting a row that this statement (as far as the stamps can
                    // tell) inserted or updated: it is a later statement's, whose own rows
                    // were not recorded (a table no one observes). It must not move before
                    // that change of its row.
                    self.end_statement();
                }
                if payload.op() != Some(Op::Delete) {
                    if let Some(new) = &payload.new {
                        self.statement_rows.insert(row_identity(&table, new));
                    }
                }
                self.capture(table, &payload)
            }
            // Committed, but unreadable: reported, never dropped.
            Err(e) => RawChange::broken(
                table,
                Op::Update,
                0,
                format!("its stored change does not parse: {e}"),
            ),
        };
        self.statement_changes.push(change);
    }

    /// A change's rows, into the batch's.
    fn capture(&mut self, table: Arc<str>, payload: &Payload) -> RawChange {
        let broken = |reason: String| {
            RawChange::broken(
                table.clone(),
                payload.op().unwrap_or(Op::Update),
                payload.depth,
                reason,
            )
        };
        let Some(op) = payload.op() else {
            return broken(format!(
                "its stored change has no operation {:?}",
                payload.op
            ));
        };
        let columns = match self.columns.get(&payload.columns) {
            Some(columns) => columns.clone(),
            None => match decode::parse_columns(&payload.columns) {
                Some(columns) => {
                    // Bounded: column lists change only with the tables.
                    if self.columns.len() > 1000 {
                        self.columns.clear();
                    }
                    let columns = Arc::new(columns);
                    self.columns
                        .insert(payload.columns.clone(), columns.clone());
                    columns
                }
                None => return broken("its stored change lists no columns".into()),
            },
        };
        let rows = &mut self.batch.rows;
        let start = rows.mark();
        let mut row = |text: &Option<String>| -> std::result::Result<_, String> {
            let Some(text) = text else {
                return Ok(None);
            };
            let mark = rows.mark();
            decode::push_row(rows, &columns, text)?;
            Ok(Some(rows.since(mark)))
        };
        match (row(&payload.old), row(&payload.new)) {
            (Ok(old), Ok(new)) => RawChange {
                table,
                op,
                old,
                new,
                depth: payload.depth,
                shape: Shape::Columns(columns),
            },
            (Err(reason), _) | (_, Err(reason)) => {
                self.batch.rows.truncate(start);
                broken(reason)
            }
        }
    }

    /// The statement is over: its changes join the transaction's, in delivery order (a
    /// cascade's rows before the rows whose delete caused it, as on SQLite).
    fn end_statement(&mut self) {
        self.statement_rows.clear();
        let changes = std::mem::take(&mut self.statement_changes);
        self.batch
            .changes
            .extend(super::connection::in_delivery_order(changes));
    }

    /// Publishes the transaction received so far.
    fn publish(&mut self) {
        self.end_statement();
        self.statement = None;
        self.outlet.publish(std::mem::take(&mut self.batch));
    }
}

#[cfg(test)]
mod tests {
    use super::triggers::{changes_table, remove_changes, setup_sql};
    use super::*;

    /// On the server `DATASTORE_POSTGRES_URL` names, if any, in a schema of the test's own.
    #[test]
    fn cleanup_removes_old_changes_of_transactions_that_had_ended_only() {
        let Ok(url) = std::env::var("DATASTORE_POSTGRES_URL") else {
            return;
        };
        let mut conn = PgConnection::establish(&url).unwrap();
        let schema = format!("datastore_cleanup_{}", uuid::Uuid::new_v4().simple());
        conn.batch_execute(&format!("CREATE SCHEMA {schema}; {}", setup_sql(&schema)))
            .unwrap();
        let changes = changes_table(&schema);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            conn.batch_execute(&format!(
                "INSERT INTO {changes} (payload, token, xid, table_name, horizon, created_at) VALUES \
                 ('a', gen_random_uuid(), 5, 't', NULL, now() - interval '1 hour'), \
                 ('b', gen_random_uuid(), 12, 't', NULL, now() - interval '1 hour'), \
                 ('c', gen_random_uuid(), 3, 't', NULL, now()), \
                 ('h', gen_random_uuid(), 11, 't', 10, now() - interval '20 minutes'), \
                 ('n', gen_random_uuid(), 13, 't', 12, now()); \
                 INSERT INTO {changes} (payload, created_at) VALUES \
                 ('old', now() - interval '1 hour'), ('recent', now())"
            ))
            .unwrap();
            // By the horizon recorded 20 minutes ago (not the one recorded now), 5 had ended,
            // 12 and 11 had not; c is too recent; a row without a transaction goes by age.
            assert_eq!(
                remove_changes(&mut conn, &changes, 1).unwrap(),
                1,
                "a batch"
            );
            assert_eq!(remove_changes(&mut conn, &changes, 100).unwrap(), 1);
            let left: Vec<Name> = diesel::sql_query(format!(
                "SELECT string_agg(payload, ',' ORDER BY payload) AS name FROM {changes}"
            ))
            .load(&mut conn)
            .unwrap();
            assert_eq!(left[0].name, "b,c,h,n,recent");
        }));
        conn.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .unwrap();
        result.unwrap();
    }
}
