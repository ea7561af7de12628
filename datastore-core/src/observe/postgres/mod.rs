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
//! is ignored, except that one naming a change the table no longer holds, below the newest it
//! holds past the retention, cannot be told from a change the cleanup removed before the
//! listener read it: it is told as missed (`Missed`, a read again), never as a change. The
//! listener's own fences and the subscriptions' markers carry fresh random nonces, and a fence
//! counts only from the listener's own backend.
//!
//! A change's row is stored flat: its values as PostgreSQL's composite-value text (SQL NULL
//! and JSON's `null` stay apart, and a JSON value adds no nesting to the envelope), with the
//! table's column names and types as they were when the trigger ran, so a change of the
//! table's columns never shifts a row. Every listener removes recorded changes older than ten
//! minutes (`RETENTION`) whose transactions had ended ten minutes ago, when it starts and every
//! half minute: every listener has read them by then, unless it was held up for five minutes
//! (`STALL_LIMIT`), and then it ends its feed, or is busy but further behind (a bulk update of
//! millions of rows), and then finds them gone and tells its subscribers it missed them. The
//! cleanup keeps the newest change it would remove until a newer one goes, which is how a
//! listener tells a removed change from one never recorded.
//!
//! The trigger functions, the change table and the triggers live in the schema of the
//! observed tables; they are created when a table is first observed (they are
//! infrastructure, not part of the models, so migrations do not carry them).

mod catalog;
mod decode;
mod listener;
mod logical;
mod outlet;
mod pgoutput;
mod triggers;

pub(crate) use catalog::{current_schema, observable_tables, readable_columns};

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, TryLockError, mpsc};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use diesel::connection::SimpleConnection;
use diesel::sql_types::{Array, BigInt, Double, Integer, Text};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};

use self::catalog::{CHANNEL_PREFIX, Name, channel};
use self::decode::{Note, Payload, Snapshot};
use self::listener::Listener;
use self::logical::LogicalListener;
use self::outlet::{Outlet, SnapshotText, connection_failed};
use self::triggers::changes_table;
use super::hub::{Hub, Queue};
use super::{Batch, ChangeFeed, Columns, Op, RawChange, Shape};
use crate::schema::ddl::{Dialect, quote_ident, quote_literal};
use crate::{Error, Result};

/// Why a `TRUNCATE` is reported, as a change that cannot be read, for each table it emptied
/// (on either feed).
const TRUNCATED: &str =
    "the table was emptied (TRUNCATE): its rows' deletes are not reported one by one";

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

/// How often a listener checks that the tables its store set up still report their changes
/// (see [`PgObserve::unreported_tables`]).
const TABLES_CHECK_EVERY: Duration = Duration::from_secs(1);

/// The advisory lock key of observe's set-up: earlier versions took it whole for every
/// set-up, whatever the schema; this one takes it shared (see [`take_setup_lock`]).
const SETUP_LOCK: i64 = i64::from_be_bytes(*b"dsobserv");

/// Makes a set-up of `schema`'s observe machinery (its functions, its tables' triggers or
/// publication) wait for any other set-up of the same schema, in any process, until the end
/// of the transaction `conn` is in: concurrent `CREATE OR REPLACE FUNCTION`s of one function
/// fail. Set-ups of other schemas go on meanwhile (a set-up may wait for a table's lock up to
/// the lock timeout, which would hold up every schema's). Earlier versions took
/// [`SETUP_LOCK`] whole: taken shared here, it still keeps theirs and this version's apart
/// (while one of theirs waits for it, PostgreSQL queues every later set-up behind it, as
/// before).
fn take_setup_lock(conn: &mut PgConnection, schema: &str) -> diesel::QueryResult<()> {
    diesel::sql_query(
        "SELECT pg_advisory_xact_lock_shared($1), pg_advisory_xact_lock(hashtextextended($2, $1))",
    )
    .bind::<BigInt, _>(SETUP_LOCK)
    .bind::<Text, _>(schema)
    .execute(conn)
    .map(drop)
}

/// How long a new subscription waits for the listener to reach its start.
pub(crate) const MARKER_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the listener looks for notifications while none arrive.
const POLL: Duration = Duration::from_millis(2);

/// How often it looks while its own fence is on its way: the changes received before the
/// fence are published when it comes back, a round trip to the server later.
const FENCE_POLL: Duration = Duration::from_micros(100);

/// The most notifications the listener takes in one round, and the most changes it reads in
/// one query.
const ROUND: usize = 1000;

/// A store's observe machinery on PostgreSQL: which feed it uses, which tables are set up for
/// it, and the listener thread.
#[derive(Debug, Default)]
pub(crate) struct PgObserve {
    /// The feed the store was opened with.
    feed: ChangeFeed,
    /// How long starting the logical feed may wait for other transactions (the store's busy
    /// timeout).
    slot_wait: Duration,
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

impl State {
    /// The running listener's liveness, if one runs. What the store found set up (`triggered`,
    /// `published`, `function_current`) is known only for the listener that runs: without
    /// one it is forgotten, and the next listener's first subscription checks the catalog
    /// again (an earlier version of the store, or a hand, may have changed it meanwhile).
    ///
    /// Asked once a subscription, and the answer kept: a listener that ends after it (its
    /// feed lost, its connection broken) is still the one the subscription waits for, which
    /// then fails as lost and is made again, with a new listener. Asking again later could
    /// start a new listener on what the ended one knew: a table whose triggers were disabled,
    /// which ended that listener's feed, taken as set up, and its next subscription lost.
    fn running_listener(&mut self) -> Option<Arc<AtomicBool>> {
        let running = (self.listening.clone()).filter(|alive| alive.load(Ordering::SeqCst));
        if running.is_none() {
            self.function_current = false;
            self.triggered.clear();
            self.published.clear();
        }
        running
    }
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
    pub fn new(feed: ChangeFeed, slot_wait: Duration) -> Self {
        Self {
            feed,
            slot_wait,
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
        let running = state.running_listener();
        let mut missing: Vec<&String> = tables
            .iter()
            .filter(|t| !state.triggered.contains(*t))
            .collect();
        if !missing.is_empty() || !state.function_current {
            state.function_current = triggers::functions_are_current(conn, &schema)?;
            let found = triggers::triggered_tables(conn, &schema)?;
            // Tables whose triggers fire only where changes originate (see
            // `triggered_tables`) report every change but a replica session's: enabled always
            // after the set-up, as far as they can be in 100 ms a table.
            let origin_only: Vec<&String> = missing
                .iter()
                .copied()
                .filter(|t| found.get(*t) == Some(&false))
                .collect();
            missing.retain(|t| !found.contains_key(*t));
            // A table whose triggers fire on origin only stays out until they fire always, for
            // the next subscription that wants it to try again.
            state.triggered.extend(
                found
                    .iter()
                    .filter(|&(_, &set_up)| set_up)
                    .map(|(table, _)| table.clone()),
            );
            if !missing.is_empty() {
                catalog::refuse_partitioned(conn, &schema, &missing)?;
            }
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
                // One set-up of the schema at a time, across processes. What is refused
                // afterwards is rolled back.
                conn.transaction::<_, Error, _>(|conn| {
                    take_setup_lock(conn, &schema)?;
                    conn.batch_execute(&sql)?;
                    triggers::check_owners(conn, &schema, tables)
                })?;
                state.function_current = true;
                lose_unreported(hub, &missing);
                state.triggered.extend(missing.into_iter().cloned());
            } else {
                triggers::check_owners(conn, &schema, tables)?;
            }
            let upgraded = enable_always(conn, &schema, &origin_only, writer);
            state.triggered.extend(upgraded);
        }
        let alive = match running {
            Some(alive) => alive,
            None => {
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
        let running = state.running_listener();
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
            catalog::refuse_partitioned(conn, &schema, &missing)?;
            // Setting a table up locks it against every other use: refused at once if the
            // caller's own transaction used it, rather than after the lock timeout.
            if let Some(writer) = writer {
                let relations: Vec<String> = missing.iter().map(|t| (*t).clone()).collect();
                triggers::refuse_own_locks(conn, writer, &schema, &relations, true)?;
            }
            logical::publish_tables(conn, &schema, &publication, &missing)?;
            lose_unreported(hub, &missing);
            state.published.extend(missing.into_iter().cloned());
        }
        let alive = match running {
            Some(alive) => alive,
            None => {
                if let Some(writer) = writer {
                    logical::refuse_open_write(conn, writer)?;
                }
                let (outlet, alive) = self.outlet(hub);
                LogicalListener::start(url, &schema, &channel, outlet, self.slot_wait)?;
                state.listening = Some(alive.clone());
                alive
            }
        };
        Ok(alive)
    }

    /// The tables of the schema that a live subscription `wants` (its model's, or every one
    /// for an `observe_all`) but that do not report their changes: dropped and created again
    /// (without the triggers, or outside the publication), their triggers or publication
    /// membership removed, made partitioned or a partition (never counted as reporting: see
    /// `catalog::refuse_partitioned`), or created after an `observe_all` began. What they
    /// commit is unknown. (A table dropped, and not there, has nothing to report.) None while a
    /// subscription is setting tables up: the listener asks again next time, rather than wait
    /// behind it.
    fn unreported_tables(
        &self,
        conn: &mut PgConnection,
        wants: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>> {
        let state = match self.state.try_lock() {
            Ok(state) => state,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return Ok(Vec::new()),
        };
        let (Some((schema, channel)), Some(logical)) = (state.schema.clone(), state.logical) else {
            return Ok(Vec::new());
        };
        drop(state);
        // Both reads in one snapshot: a table dropped between them would be taken as one that
        // a subscription wants (read first) and that no longer reports (read after, its
        // triggers or publication membership gone with it), ending the feed for nothing.
        conn.build_transaction()
            .repeatable_read()
            .read_only()
            .run(|conn| {
                let watched: Vec<String> = observable_tables(conn, &schema)?
                    .into_iter()
                    .filter(|table| wants(table))
                    .collect();
                if watched.is_empty() {
                    return Ok(Vec::new());
                }
                let reporting: HashSet<String> = if logical {
                    let publication = logical::publication(&channel);
                    logical::published_tables(conn, &schema, &publication, &watched)?
                        .into_iter()
                        .collect()
                } else {
                    triggers::triggered_tables(conn, &schema)?
                        .into_keys()
                        .collect()
                };
                let mut unreported: Vec<String> = watched
                    .into_iter()
                    .filter(|table| !reporting.contains(table))
                    .collect();
                unreported.sort();
                Ok(unreported)
            })
    }
}

/// Enables the triggers of `tables`, which report every change but those of a session with
/// `session_replication_role = replica` (an earlier version set them up, or a role that does
/// not own the table) and which the store's role owns, to fire always (see
/// `triggers::trigger_sql`): best effort, table by table, each in a transaction of its own that
/// gives up after 100 ms waiting for another set-up of the schema or for a writer holding the
/// table (the writers that come meanwhile queue behind it), and not tried on a table the
/// caller's own transaction (`writer`) holds. The tables whose transaction went through; the
/// others go on reporting as before, and the next subscription that wants them tries again.
fn enable_always(
    conn: &mut PgConnection,
    schema: &str,
    tables: &[&String],
    writer: Option<i32>,
) -> Vec<String> {
    let mut upgraded = Vec::new();
    for &table in tables {
        let relation = [table.clone()];
        if let Some(writer) = writer
            && triggers::refuse_own_locks(conn, writer, schema, &relation, false).is_err()
        {
            continue;
        }
        let done = conn.transaction::<_, Error, _>(|conn| {
            conn.batch_execute("SET LOCAL lock_timeout = '100ms'")?;
            take_setup_lock(conn, schema)?;
            Ok(conn.batch_execute(&triggers::always_sql(schema, table))?)
        });
        if done.is_ok() {
            upgraded.extend(relation);
        }
    }
    upgraded
}

/// Ends the subscriptions that wanted some of `set_up`, tables just set up for the feed: their
/// changes until now were not reported to them (tables created after an `observe_all` began,
/// or created again after a drop, that this subscription set up before the listener's check
/// found them).
fn lose_unreported(hub: &Hub, set_up: &[&String]) {
    let unreported: Vec<String> = set_up
        .iter()
        .filter(|table| hub.wants(table))
        .map(|table| (*table).clone())
        .collect();
    if !unreported.is_empty() {
        hub.lose_wanting(
            &unreported,
            &format!(
                "observed tables did not report their changes until now (created after an \
                 observe_all began, or created again after a drop): {}; subscribe again to \
                 observe them as they are now",
                unreported.join(", ")
            ),
        );
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
    /// The queue, once the listener reached the marker; `None` if it did not within
    /// `timeout`; an error if the listener ended (its connection lost).
    pub fn wait(self, url: &str, timeout: Duration) -> Result<Option<Arc<Queue>>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.answer.recv_timeout(left.min(POLL * 50)) {
                Ok(queue) => return Ok(Some(queue)),
                Err(mpsc::RecvTimeoutError::Timeout) if self.alive.load(Ordering::SeqCst) => {
                    if left.is_zero() {
                        return Ok(None);
                    }
                }
                Err(_) => {
                    return Err(Error::connection(
                        url,
                        crate::ConnectionFailure::Lost,
                        "the observe listener's connection was lost; subscribe again to start \
                         a new one",
                    ));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What a store found set up is kept while its listener runs, and forgotten once it does
    /// not. (That a subscription keeps the answer it was given, also if the listener ends
    /// right after, is `ensure`'s; tests/observe.rs covers it only by timing.)
    #[test]
    fn what_was_found_set_up_is_forgotten_only_without_a_running_listener() {
        let alive = Arc::new(AtomicBool::new(true));
        let mut state = State {
            function_current: true,
            triggered: HashSet::from(["posts".to_owned()]),
            published: HashSet::from(["posts".to_owned()]),
            listening: Some(alive.clone()),
            ..State::default()
        };
        assert!(state.running_listener().is_some(), "the listener runs");
        assert!(state.function_current && state.triggered.contains("posts"));
        assert!(state.published.contains("posts"));

        alive.store(false, Ordering::SeqCst);
        assert!(state.running_listener().is_none());
        assert!(!state.function_current);
        assert!(state.triggered.is_empty() && state.published.is_empty());
    }
}
