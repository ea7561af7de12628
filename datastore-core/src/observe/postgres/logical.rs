//! Observe on PostgreSQL through logical decoding: the server decodes its write-ahead log and
//! streams each committed transaction, whole and in commit order, to a temporary replication
//! slot the listener holds. Writers pay nothing beyond the log they write anyway (no trigger,
//! no change table, no `NOTIFY` and its database-wide commit lock), so observing does not cap
//! how fast many writers commit.
//!
//! What it needs: `wal_level = logical` and a role allowed to replicate (`REPLICATION` or
//! superuser), as change-data-capture systems do. The slot is temporary: the server drops it
//! when the listener's connection ends, however the store ends, so a dead store never leaves
//! a slot holding back the server's log. Where either is missing, the store uses the trigger
//! feed (`ChangeFeed::Auto`).
//!
//! What it installs, once per observed table: `REPLICA IDENTITY FULL` (so that updates and
//! deletes carry the whole old row, as the trigger feed records it), membership in the
//! schema's publication `datastore_<md5 of the schema>` (which limits what the server decodes
//! for this feed to the observed tables: those of every store observing the schema, whatever
//! its role, and any table moved out of the schema since, so the listener delivers only its
//! schema's tables that its role may read), and a `BEFORE DELETE` trigger that fires only for
//! a cascade's rows (`WHEN (pg_trigger_depth() > 0)`): it writes the cascade's depth into the
//! log (`pg_logical_emit_message`) just before the row's delete, so that a cascade's rows are
//! delivered before their parent, as on SQLite.
//!
//! A subscription starts at a marker: a message with a fresh random nonce, in a transaction of
//! its own, which the server streams at its commit, after every transaction committed before
//! it and before every one committed after. Anyone may write such messages; only nonces this
//! store is waiting for do anything, and no message can add, change or remove a row's change:
//! those come from the log itself. The listener hands a transaction out only once new
//! snapshots see it ended (the log streams a commit a moment before they do), so a subscriber
//! that reads the database when told of a change reads the state after it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::sql_types::{Bool, Oid, Text};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};

use super::super::{Batch, Columns, Op, RawChange, Shape};
use super::pgoutput::{self, Frame, Message, Tuple, Value};
use super::triggers::dollar_quoted;
use super::{Outlet, decode, outlet};
use crate::ffi::libpq::{ReplicationConn, Timed};
use crate::schema::ddl::{Dialect, quote_ident, quote_literal, quote_standard_literal};
use crate::{Error, Result};

/// The prefix of the messages this feed writes into the log.
const PREFIX: &str = "datastore";

/// Why an update or delete whose row before it the log did not carry is reported broken.
const IDENTITY_NOT_FULL: &str = "the table's REPLICA IDENTITY is no longer FULL, so its updates \
     and deletes do not carry the row before them; observe it again to restore it";

/// How long the listener waits for data before it checks whether the store is still there.
const WAKE: Duration = Duration::from_millis(100);

/// How long the listener waits for more data while it holds transactions not yet visible.
const VISIBLE_POLL: Duration = Duration::from_micros(200);

/// How often, at most, it checks what became visible while data keeps arriving.
const RELEASE_EVERY: Duration = Duration::from_millis(1);

/// How often the listener tells the server how far it has read, at least (the server ends a
/// replication connection silent for `wal_sender_timeout`, 60 s by default).
const STATUS_EVERY: Duration = Duration::from_secs(10);

/// The answer to a question a query asks (`AS yes`).
#[derive(QueryableByName)]
struct Yes {
    #[diesel(sql_type = Bool)]
    yes: bool,
}

/// Whether this server and role can feed observe by logical decoding.
pub(super) fn available(conn: &mut PgConnection) -> Result<bool> {
    let rows: Vec<Yes> = diesel::sql_query(
        "SELECT current_setting('wal_level') = 'logical' AND coalesce(( \
             SELECT rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user \
         ), false) AS yes",
    )
    .load(conn)?;
    Ok(rows.first().is_some_and(|r| r.yes))
}

/// Why logical decoding is not available here, for [`ChangeFeed::LogicalDecoding`] asked
/// explicitly.
///
/// [`ChangeFeed::LogicalDecoding`]: crate::observe::ChangeFeed::LogicalDecoding
pub(super) fn unavailable() -> Error {
    Error::Unsupported(
        "observe by logical decoding needs the server's wal_level = logical (ALTER SYSTEM SET \
         wal_level = logical, then a restart) and a role with REPLICATION; or choose \
         ChangeFeed::Triggers"
            .into(),
    )
}

/// The schema's publication: `datastore_` and the md5 of its name (the `channel`'s hash).
pub(super) fn publication(channel: &str) -> String {
    format!(
        "datastore_{}",
        channel.trim_start_matches(super::CHANNEL_PREFIX)
    )
}

/// Which of `tables` are already set up for the feed: in the publication, with a full replica
/// identity and the cascade trigger, enabled; never a partitioned table or a partition (see
/// `triggers::triggered_tables`).
pub(super) fn published_tables(
    conn: &mut PgConnection,
    schema: &str,
    publication: &str,
    tables: &[String],
) -> Result<Vec<String>> {
    let rows: Vec<super::Name> = diesel::sql_query(
        "SELECT c.relname::text AS name FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = ANY($3) AND c.relreplident = 'f' \
         AND c.relkind <> 'p' AND NOT c.relispartition \
         AND EXISTS (SELECT 1 FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid \
                     WHERE p.pubname = $2 AND r.prrelid = c.oid) \
         AND EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid \
                     AND t.tgname = 'zz_datastore_observe_cascade' AND t.tgenabled IN ('O', 'A'))",
    )
    .bind::<Text, _>(schema)
    .bind::<Text, _>(publication)
    .bind::<diesel::sql_types::Array<Text>, _>(tables)
    .load(conn)?;
    Ok(rows.into_iter().map(|r| r.name).collect())
}

/// Sets `tables` up for the feed (see the module's documentation), in one transaction, one
/// set-up of the schema at a time across processes.
pub(super) fn publish_tables(
    conn: &mut PgConnection,
    schema: &str,
    publication: &str,
    tables: &[&String],
) -> Result<()> {
    let s = quote_ident(schema);
    let publication = quote_ident(publication);
    let function = format!("{s}.datastore_mark_cascade()");
    let mut sql = format!(
        "CREATE OR REPLACE FUNCTION {function} RETURNS trigger LANGUAGE plpgsql \
         SET search_path = pg_catalog, pg_temp AS $body$ BEGIN \
         PERFORM pg_logical_emit_message(true, {prefix}, 'd:' || (pg_trigger_depth() - 1)); \
         RETURN OLD; END $body$;\n\
         DO {setup};\n",
        prefix = quote_literal(PREFIX, Dialect::Postgres),
        setup = dollar_quoted(&format!(
            "BEGIN IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = {}) THEN \
             CREATE PUBLICATION {publication}; END IF; END",
            quote_literal(publication.trim_matches('"'), Dialect::Postgres),
        )),
    );
    for table in tables {
        let qualified = format!("{s}.{}", quote_ident(table));
        // The block holds the table's name: quoted with a tag the name does not hold.
        let add = dollar_quoted(&format!(
            "BEGIN IF NOT EXISTS (SELECT 1 FROM pg_publication_rel r JOIN pg_publication p \
                 ON p.oid = r.prpubid WHERE p.pubname = {publication_literal} \
                 AND r.prrelid = {table_literal}::regclass) THEN \
             ALTER PUBLICATION {publication} ADD TABLE {qualified}; END IF; END",
            publication_literal = quote_literal(publication.trim_matches('"'), Dialect::Postgres),
            table_literal = quote_literal(&qualified, Dialect::Postgres),
        ));
        sql.push_str(&format!(
            "ALTER TABLE {qualified} REPLICA IDENTITY FULL;\n\
             DO {add};\n\
             CREATE OR REPLACE TRIGGER zz_datastore_observe_cascade BEFORE DELETE ON {qualified} \
             FOR EACH ROW WHEN (pg_trigger_depth() > 0) EXECUTE FUNCTION {function};\n",
        ));
    }
    conn.transaction::<_, Error, _>(|conn| {
        super::take_setup_lock(conn, schema)?;
        Ok(conn.batch_execute(&sql)?)
    })
}

/// Refuses to start a feed from inside a transaction that has written: creating the slot
/// waits for every transaction writing at that moment to end, the caller's own included.
pub(super) fn refuse_open_write(conn: &mut PgConnection, writer: i32) -> Result<()> {
    let rows: Vec<Yes> = diesel::sql_query(
        "SELECT backend_xid IS NOT NULL AS yes FROM pg_stat_activity WHERE pid = $1",
    )
    .bind::<diesel::sql_types::Integer, _>(writer)
    .load(conn)?;
    if rows.first().is_some_and(|r| r.yes) {
        return Err(Error::FeedStartAfterWrite);
    }
    Ok(())
}

/// Sends a marker: the listener meets it after every transaction committed before.
///
/// It is a transactional message, in a transaction of its own that commits at once and
/// waits for its log to be flushed: the server streams only flushed log, and PostgreSQL 15
/// writes a non-transactional message without flushing it (it would wait for the WAL
/// writer, up to `wal_writer_delay`). Flushed here only (`synchronous_commit = local`): the
/// stream needs no standby to have it, and `on` would wait for a synchronous standby too,
/// without end while it is down, holding the subscribing call before its wait for the
/// marker (which has a time limit) begins, or the listener sending its last marker.
pub(super) fn send_marker(conn: &mut PgConnection, nonce: &str) -> Result<()> {
    debug_assert!(
        nonce.bytes().all(|b| b.is_ascii_hexdigit()),
        "a nonce is hex"
    );
    conn.batch_execute(&format!(
        "BEGIN; SET LOCAL synchronous_commit = local; \
         SELECT pg_logical_emit_message(true, {}, {}); COMMIT",
        quote_literal(PREFIX, Dialect::Postgres),
        quote_literal(&format!("m:{nonce}"), Dialect::Postgres),
    ))?;
    Ok(())
}

/// The listener: a replication connection streaming the slot, and a connection of its own
/// to send its last marker on when the store is gone.
pub(super) struct LogicalListener {
    stream: ReplicationConn,
    control: PgConnection,
    outlet: Outlet,
    /// The schema of the store's tables: the only one whose changes it delivers.
    schema: String,
    /// The tables the stream described, by their relation id.
    relations: HashMap<u32, Relation>,
    /// The tables of the schema its role was last known to read: those it may read as it
    /// started, and each the stream described since as one it may read. One that it may no
    /// longer read ends every subscription that wanted it, `observe_all`'s too.
    readable: HashSet<Arc<str>>,
    /// The transaction being received, and its last statement's changes (see `take`).
    batch: Batch,
    segment: Vec<RawChange>,
    /// The depth the last cascade message gave the next delete.
    cascade_depth: Option<i32>,
    /// How far the stream was read, and when the server was last told.
    received: u64,
    last_status: Instant,
    /// The nonce of the last marker, sent once the store was gone.
    last_marker: Option<String>,
    /// The transaction being received (its id, as the stream gives it: 32 bits), and the
    /// markers in it.
    xid: u32,
    markers: Vec<String>,
    /// What was received and waits to be released, in log order (see `release`).
    held: VecDeque<Held>,
    /// When `release` last ran.
    last_release: Instant,
    /// When it last checked that the watched tables still report their changes.
    tables_checked: Instant,
    /// Why the feed ends, once a table stopped reporting, and the nonce of the marker sent
    /// then: the feed ends when it is released, everything committed before delivered.
    ending: Option<(String, String)>,
}

/// What a table the stream described is to the store (see [`LogicalListener::describe`]).
enum Relation {
    /// A table of the store's schema that its role may read: its changes are delivered, by
    /// its name and columns.
    Delivered(Arc<str>, Arc<Columns>),
    /// A table whose changes are not the store's to deliver: another schema's (a table moved
    /// out of the store's schema by `ALTER TABLE .. SET SCHEMA` stays in its publication, and
    /// anyone's table can be added to it by hand), or one the store's role may not read (the
    /// publication is the schema's, shared by every role that observes it).
    Skipped,
}

/// A committed transaction or a marker, held until every transaction before it is visible.
enum Held {
    Commit(u32, Batch),
    Marker(String),
    /// A table of the store's schema that its role may not read (any longer): the
    /// subscriptions that name it end here, rather than hear nothing more of it, and those of
    /// every table too where the role could read it before (they received its changes).
    Unreadable {
        table: Arc<str>,
        read_before: bool,
    },
}

/// The client encoding the stream asks for (see [`replication_conninfo`]) in the database
/// `conn` is connected to: UTF-8, as Diesel asks on the store's own connections, but in a
/// `SQL_ASCII` database, which holds any bytes and whose text the server would check on its
/// way out to a UTF-8 client, ending the stream at the first value that is not UTF-8: there
/// the stream takes the bytes as stored, and such a value makes its own change one that
/// cannot be read (`push_tuple`).
fn stream_encoding(conn: &mut PgConnection) -> Result<&'static str> {
    let rows: Vec<Yes> =
        diesel::sql_query("SELECT current_setting('server_encoding') = 'SQL_ASCII' AS yes")
            .load(conn)?;
    Ok(if rows.first().is_some_and(|r| r.yes) {
        "SQL_ASCII"
    } else {
        "UTF8"
    })
}

/// The store's URL (or connection string), asking for a logical replication connection
/// named `name`, whose text comes in `encoding` (see [`stream_encoding`]).
///
/// The server sends the stream's text (values, table and column names) in the connection's
/// client encoding, the database's unless asked: a database in LATIN1, say, would send text
/// the stream cannot read, ending the feed. This asks for it after the URL's own parameters
/// (the last one given wins, also over a `client_encoding` the URL's `options` set).
fn replication_conninfo(url: &str, name: &str, encoding: &str) -> String {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let name: String = name
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        crate::store::url::with_parameters(
            url,
            &[
                "replication=database".to_owned(),
                format!("application_name={name}"),
                format!("client_encoding={encoding}"),
            ],
        )
    } else {
        format!(
            "{url} replication=database application_name='{}' client_encoding={encoding}",
            name.replace('\\', "\\\\").replace('\'', "\\'")
        )
    }
}

impl LogicalListener {
    /// Connects, creates the temporary slot and starts streaming it, then runs on a thread
    /// of its own until the store is gone or the connection breaks.
    /// Creating the replication slot waits for every transaction running on the server (in
    /// any database) to end: one left open would hold it, and every subscription of the
    /// store, without end. It waits `slot_wait` at most, then fails with `Error::Busy`.
    pub fn start(
        url: &str,
        schema: &str,
        channel: &str,
        outlet: Outlet,
        slot_wait: Duration,
    ) -> Result<()> {
        let mut control = crate::store::establish_postgres(url)
            .map_err(|e| Error::connection(url, crate::ConnectionFailure::Driver, e))?;
        let encoding = stream_encoding(&mut control)?;
        let readable = super::catalog::observable_tables(&mut control, schema)?
            .into_iter()
            .map(Arc::from)
            .collect();
        let hash = channel.trim_start_matches(super::CHANNEL_PREFIX);
        // Named as the trigger feed's listener, so that it can be told apart in
        // `pg_stat_activity` (and ended) the same way.
        let name = format!("datastore listener {hash}");
        let failed = |e: String| Error::connection(url, crate::ConnectionFailure::Driver, e);
        // With the TCP settings of the store's other connections (see `establish_postgres`).
        let live = crate::store::url::with_liveness(url);
        let mut stream = ReplicationConn::connect(&replication_conninfo(&live, &name, encoding))
            .map_err(failed)?;
        // Values are rendered in the walsender with these settings, as the trigger feed
        // renders them.
        stream
            .execute(
                "SET \"DateStyle\" = 'ISO, YMD'; SET \"TimeZone\" = 'UTC'; \
                 SET bytea_output = 'hex'; SET extra_float_digits = 1",
            )
            .map_err(failed)?;
        let slot = format!("datastore_{}", uuid::Uuid::new_v4().simple());
        stream
            .query_within(
                &format!(
                    "CREATE_REPLICATION_SLOT {slot} TEMPORARY LOGICAL pgoutput NOEXPORT_SNAPSHOT"
                ),
                slot_wait,
            )
            .map_err(|e| match e {
                Timed::Late => Error::Busy {
                    message: format!(
                        "the logical decoding slot waited {slot_wait:?} for transactions running \
                         on the server to end (one left open, or a prepared transaction, holds \
                         it); end them, or observe with ChangeFeed::Triggers"
                    ),
                },
                Timed::Failed(e) => failed(e),
            })?;
        // A replication command's grammar reads no escape strings (nor escapes): the
        // publication's name, hex digits, needs none.
        stream
            .start_replication(&format!(
                "START_REPLICATION SLOT {slot} LOGICAL 0/0 (proto_version '1', \
                 publication_names {}, messages 'true')",
                quote_standard_literal(&quote_ident(&publication(channel)))
            ))
            .map_err(failed)?;
        let mut listener = LogicalListener {
            stream,
            control,
            outlet,
            schema: schema.to_owned(),
            relations: HashMap::new(),
            readable,
            batch: Batch::default(),
            segment: Vec::new(),
            cascade_depth: None,
            received: 0,
            last_status: Instant::now(),
            last_marker: None,
            xid: 0,
            markers: Vec::new(),
            held: VecDeque::new(),
            last_release: Instant::now(),
            tables_checked: Instant::now(),
            ending: None,
        };
        outlet::start("datastore-pg-logical", move || listener.run())
    }

    fn run(&mut self) {
        if let Err(reason) = self.listen() {
            self.outlet.lost = Some(reason);
        }
    }

    /// Until the store is gone (and everything committed before is delivered: its last
    /// marker came back) or the connection breaks.
    fn listen(&mut self) -> std::result::Result<(), String> {
        loop {
            if self.last_marker.is_none() && self.outlet.store_is_gone() {
                let nonce = uuid::Uuid::new_v4().simple().to_string();
                send_marker(&mut self.control, &nonce).map_err(super::connection_failed)?;
                self.last_marker = Some(nonce);
            }
            let wait = if self.held.is_empty() {
                WAKE
            } else {
                VISIBLE_POLL
            };
            let received = self.stream.receive(wait)?;
            if let Some(data) = &received {
                self.handle(data)?;
            }
            // Once nothing more is waiting to be read (or every millisecond under a steady
            // stream), what became visible is released.
            if !self.held.is_empty()
                && (received.is_none() || self.last_release.elapsed() >= RELEASE_EVERY)
                && self.release()?
            {
                return Ok(());
            }
            if self.ending.is_none()
                && let Some(reason) = self
                    .outlet
                    .unreported(&mut self.control, &mut self.tables_checked)?
            {
                // Ends where the stream reaches this marker: after every earlier commit.
                let nonce = uuid::Uuid::new_v4().simple().to_string();
                send_marker(&mut self.control, &nonce).map_err(super::connection_failed)?;
                self.ending = Some((nonce, reason));
            }
            self.report_status(false)?;
        }
    }

    /// Releases, in log order, the held transactions that new snapshots see (publishes
    /// them) and the markers after them (opens their subscriptions). Whether the listener's
    /// last marker was reached.
    ///
    /// A transaction's commit is in the log, and streamed, a moment before other sessions
    /// see it: a subscriber told of it at once, reading the database, could read the state
    /// before it (a live query would keep that state as the one after it). So each is held
    /// until a snapshot taken now has it ended, as the trigger feed's notifications are.
    fn release(&mut self) -> std::result::Result<bool, String> {
        self.last_release = Instant::now();
        let snapshot: Vec<super::SnapshotText> =
            diesel::sql_query("SELECT pg_current_snapshot()::text AS snapshot")
                .load(&mut self.control)
                .map_err(super::connection_failed)?;
        let Some(snapshot) = snapshot
            .first()
            .and_then(|s| decode::Snapshot::parse(&s.snapshot))
        else {
            return Err("pg_current_snapshot() returned no snapshot".into());
        };
        while let Some(front) = self.held.front() {
            match front {
                Held::Commit(xid, _) if !snapshot.ended(full_xid(*xid, snapshot.xmax)) => break,
                _ => {}
            }
            match self.held.pop_front() {
                Some(Held::Commit(_, batch)) => self.outlet.publish(batch),
                Some(Held::Unreadable { table, read_before }) => {
                    let reason = format!(
                        "the store's role may no longer read `{table}` (SELECT): its changes \
                         are not delivered; subscribe again once it may"
                    );
                    let tables = [table.to_string()];
                    if read_before {
                        self.outlet.hub.lose_wanting(&tables, &reason);
                    } else {
                        self.outlet.hub.lose_naming(&tables, &reason);
                    }
                }
                Some(Held::Marker(nonce)) => {
                    if self.last_marker.as_deref() == Some(nonce.as_str()) {
                        return Ok(true);
                    }
                    if let Some((ending, reason)) = &self.ending
                        && *ending == nonce
                    {
                        return Err(reason.clone());
                    }
                    self.outlet.open(&nonce);
                }
                None => {}
            }
        }
        Ok(false)
    }

    /// Tells the server how far the stream was read.
    fn report_status(&mut self, force: bool) -> std::result::Result<(), String> {
        if !force && self.last_status.elapsed() < STATUS_EVERY {
            return Ok(());
        }
        // Microseconds since 2000-01-01, PostgreSQL's epoch.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64 - 946_684_800_000_000);
        self.stream
            .send(&pgoutput::status_update(self.received, now))?;
        self.last_status = Instant::now();
        Ok(())
    }

    /// One frame from the server.
    fn handle(&mut self, data: &[u8]) -> std::result::Result<(), String> {
        match Frame::parse(data)? {
            Frame::Keepalive { wal_end, reply } => {
                if self.batch.changes.is_empty() && self.segment.is_empty() {
                    self.received = self.received.max(wal_end);
                }
                if reply {
                    self.report_status(true)?;
                }
                Ok(())
            }
            Frame::Data { wal_end, message } => {
                self.take(Message::parse(message)?)?;
                self.received = self.received.max(wal_end);
                Ok(())
            }
        }
    }

    /// A decoded message: a transaction's changes join its batch, held from its commit on
    /// (see `release`), as markers are.
    fn take(&mut self, message: Message<'_>) -> std::result::Result<(), String> {
        match message {
            Message::Begin { xid } => self.xid = xid,
            Message::Other => {}
            Message::Commit => self.commit(),
            Message::Relation {
                id,
                schema,
                table,
                columns,
            } => {
                // A table described again (altered, renamed, moved, its grants changed) is
                // what the latest description says.
                let relation = self.describe(id, schema, table, &columns)?;
                self.relations.insert(id, relation);
            }
            Message::Truncate { relations } => {
                for relation in relations {
                    self.broken(relation, Op::Delete, super::TRUNCATED);
                }
            }
            Message::Insert { relation, new } => {
                self.change(relation, Op::Insert, None, Some(&new));
            }
            Message::Update {
                relation,
                old: None,
                ..
            } => {
                // Without the row before it (a filter could not tell a row leaving it), and
                // with its large unchanged values left out: reported, never a half row.
                self.broken(relation, Op::Update, IDENTITY_NOT_FULL);
            }
            Message::Update { relation, old, new } => {
                // An update that changes nothing is reported as nothing, as on SQLite.
                let same = old.as_ref().is_some_and(|old| {
                    old.len() == new.len()
                        && old
                            .iter()
                            .zip(&new)
                            .all(|(o, n)| *n == Value::Unchanged || o == n)
                });
                if !same {
                    self.change(relation, Op::Update, old.as_ref(), Some(&new));
                }
            }
            Message::Delete {
                relation,
                old,
                key_only: false,
            } => self.change(relation, Op::Delete, Some(&old), None),
            Message::Delete { relation, .. } => {
                // Reported, never a row made up of its key and NULLs.
                self.broken(relation, Op::Delete, IDENTITY_NOT_FULL);
            }
            Message::Logical {
                transactional,
                prefix,
                content,
            } if prefix == PREFIX.as_bytes() => {
                let content = std::str::from_utf8(content).unwrap_or_default();
                if let Some(nonce) = content.strip_prefix("m:") {
                    // In its own transaction: met at its commit, after every commit before.
                    self.markers.push(nonce.to_owned());
                    if !transactional {
                        self.commit();
                    }
                } else if transactional {
                    self.cascade_depth = content
                        .strip_prefix("d:")
                        .and_then(|d| d.parse().ok())
                        .filter(|d| *d > 0);
                }
            }
            Message::Logical { .. } => {}
        }
        Ok(())
    }

    /// What the table `id` the stream describes is to the store: delivered if it is in the
    /// store's schema and the store's role may read it (`SELECT`), else skipped (see
    /// [`Relation`]). The role's right is asked each time the stream describes the table,
    /// which the server does again before its next change once its grants changed: the
    /// subscriptions that name a table it may not read end, after the commits before (a
    /// subscription to such a table is refused: `catalog::readable_columns`). A table
    /// dropped since its change (the stream follows the log, a moment behind) leaves nothing
    /// to ask: its changes are delivered, as committed while it was there. A name that is not
    /// UTF-8 (a `SQL_ASCII` database holds any bytes) is read with U+FFFD in place of what is
    /// not: no model names such a table or column, so `observe_all` alone receives it.
    fn describe(
        &mut self,
        id: u32,
        schema: &[u8],
        table: &[u8],
        columns: &[(&[u8], u32)],
    ) -> std::result::Result<Relation, String> {
        if schema != self.schema.as_bytes() {
            return Ok(Relation::Skipped);
        }
        // NULL for a table dropped since.
        let may_read: Vec<Yes> =
            diesel::sql_query("SELECT coalesce(has_table_privilege($1, 'SELECT'), true) AS yes")
                .bind::<Oid, _>(id)
                .load(&mut self.control)
                .map_err(super::connection_failed)?;
        let name = |bytes: &[u8]| Arc::from(String::from_utf8_lossy(bytes).as_ref());
        let table = name(table);
        if may_read.first().is_some_and(|r| !r.yes) {
            let read_before = self.readable.remove(&table);
            self.held.push_back(Held::Unreadable { table, read_before });
            return Ok(Relation::Skipped);
        }
        self.readable.insert(table.clone());
        let columns = Columns {
            names: columns.iter().map(|(column, _)| name(column)).collect(),
            types: columns.iter().map(|(_, ty)| *ty).collect(),
        };
        Ok(Relation::Delivered(table, Arc::new(columns)))
    }

    /// A row change: its values into the batch's rows, the change into the statement
    /// being received; nothing, for a table whose changes are not the store's.
    ///
    /// A cascade's rows follow the statement rows that caused them in the log; they are
    /// delivered before them, deepest first, as on SQLite. The log does not mark where a
    /// statement starts, so the rows they move ahead of are the deletes just before them
    /// (a delete statement's own rows, and any deletes right before it in the transaction):
    /// an insert or an update is never passed.
    fn change(&mut self, relation: u32, op: Op, old: Option<&Tuple<'_>>, new: Option<&Tuple<'_>>) {
        let (table, columns) = match self.relations.get(&relation) {
            Some(Relation::Delivered(table, columns)) => (table.clone(), columns.clone()),
            Some(Relation::Skipped) => return,
            None => {
                return self.broken(
                    relation,
                    op,
                    "the stream sent a change of a table it did not describe",
                );
            }
        };
        let rows = &mut self.batch.rows;
        let start = rows.mark();
        let pushed = push_tuple(rows, &columns, old, None)
            .and_then(|old_cells| Ok((old_cells, push_tuple(rows, &columns, new, old)?)));
        match pushed {
            Ok((old, new)) => self.push(RawChange {
                table,
                op,
                old,
                new,
                depth: 0,
                shape: Shape::Columns(columns),
            }),
            Err(reason) => {
                self.batch.rows.truncate(start);
                self.push(RawChange::broken(table, op, 0, reason));
            }
        }
    }

    /// A committed change that cannot be read: reported, never dropped (unless its table's
    /// changes are not the store's).
    fn broken(&mut self, relation: u32, op: Op, reason: &str) {
        let table = match self.relations.get(&relation) {
            Some(Relation::Delivered(table, _)) => table.clone(),
            Some(Relation::Skipped) => return,
            None => Arc::from("?"),
        };
        self.push(RawChange::broken(table, op, 0, reason));
    }

    /// A change into the statement being received, with the depth the log gave it.
    fn push(&mut self, mut change: RawChange) {
        change.depth = match change.op {
            Op::Delete => self.cascade_depth.take().unwrap_or(0),
            _ => {
                self.cascade_depth = None;
                0
            }
        };
        // A cascade's delete passes only the deletes right before it; anything else starts
        // a statement of its own.
        let starts_statement = self.segment.last().is_some_and(|last| {
            last.op != Op::Delete
                || (change.depth == 0 && (last.depth > 0 || change.op != Op::Delete))
        });
        if starts_statement {
            self.end_segment();
        }
        self.segment.push(change);
    }

    fn end_segment(&mut self) {
        let segment = std::mem::take(&mut self.segment);
        self.batch
            .changes
            .extend(super::super::sqlite::in_delivery_order(segment));
    }

    /// The transaction received is committed: held until it is visible.
    fn commit(&mut self) {
        self.end_segment();
        self.cascade_depth = None;
        let batch = std::mem::take(&mut self.batch);
        if !batch.changes.is_empty() {
            self.held.push_back(Held::Commit(self.xid, batch));
        }
        self.held.extend(self.markers.drain(..).map(Held::Marker));
    }
}

/// A 32-bit transaction id as the 64-bit one of its epoch, given a snapshot's `xmax`: the one
/// nearest `xmax` (within 2^31 either way, as every transaction the server has not frozen
/// is). Not below `xmax` only: `xmax` is one past the highest transaction *completed*, and a
/// transaction whose commit the log already streamed can be above it while one before it
/// still runs (its end not yet seen by new snapshots), which a snapshot must not take for a
/// transaction of the previous epoch, long ended.
fn full_xid(xid: u32, xmax: i64) -> i64 {
    // The step from `xmax`'s low 32 bits to `xid`, signed: back or forward, across a wrap.
    let step = xid.wrapping_sub(xmax as u32) as i32;
    xmax + i64::from(step)
}

/// Pushes a row's values (`None`: no row); a value the update left unchanged is taken from
/// `old`. The range of the row's cells.
fn push_tuple(
    rows: &mut super::super::Rows,
    columns: &Columns,
    tuple: Option<&Tuple<'_>>,
    old: Option<&Tuple<'_>>,
) -> std::result::Result<Option<std::ops::Range<usize>>, String> {
    let Some(tuple) = tuple else {
        return Ok(None);
    };
    if tuple.len() != columns.types.len() {
        return Err(format!(
            "the stream sent a row of {} values for a table of {} columns",
            tuple.len(),
            columns.types.len()
        ));
    }
    let mark = rows.mark();
    for (i, (value, &ty)) in tuple.iter().zip(&columns.types).enumerate() {
        let value = match value {
            Value::Unchanged => old.and_then(|old| old.get(i)).copied().ok_or_else(|| {
                "the stream left a large value out of an update whose old row it did not send \
                 (is the table's REPLICA IDENTITY still FULL?)"
                    .to_owned()
            })?,
            other => *other,
        };
        match value {
            Value::Text(text) => {
                // One value a `SQL_ASCII` database holds as bytes that are not UTF-8 makes
                // its change one that cannot be read, not the stream.
                let text = std::str::from_utf8(text).map_err(|_| {
                    format!(
                        "the value of column `{}` is not UTF-8 text (a SQL_ASCII database \
                         keeps any bytes)",
                        columns.names[i]
                    )
                })?;
                decode::push_value(rows, ty, Some(text));
            }
            Value::Null => decode::push_value(rows, ty, None),
            Value::Unchanged => {
                return Err("the stream left a large value out of both rows of an update".into());
            }
        }
    }
    Ok(Some(rows.since(mark)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_ids_gain_their_epoch() {
        assert_eq!(full_xid(5, 10), 5);
        assert_eq!(full_xid(5, (3 << 32) + 10), (3 << 32) + 5);
        // Just before the wrap: the previous epoch.
        assert_eq!(
            full_xid(u32::MAX, (3 << 32) + 10),
            (2 << 32) + i64::from(u32::MAX)
        );
        // At or above `xmax`: a commit the log streamed that snapshots do not see ended yet
        // (`xmax` is one past the highest transaction *completed*), in the same epoch.
        assert_eq!(full_xid(10, 10), 10);
        assert_eq!(full_xid(101, 100), 101);
        assert_eq!(full_xid(101, (3 << 32) + 100), (3 << 32) + 101);
        // `xmax` at the end of an epoch, the transaction past the wrap: the next epoch.
        let end = (4 << 32) - 2;
        assert_eq!(full_xid(5, end), (4 << 32) + 5);
        // `xmax` past the wrap, the transaction just before it: the previous epoch.
        assert_eq!(full_xid(u32::MAX - 1, (4 << 32) + 3), (4 << 32) - 2);
    }

    /// A commit the stream delivered whose transaction other sessions' snapshots do not see
    /// ended yet (an earlier one still running keeps `xmax` below it) is held, never taken for
    /// one of a past epoch, long ended; it is released once a snapshot has it ended.
    #[test]
    fn a_commit_above_the_snapshots_xmax_is_not_ended() {
        let ended = |xid: u32, snapshot: &str| {
            let snapshot = decode::Snapshot::parse(snapshot).unwrap();
            snapshot.ended(full_xid(xid, snapshot.xmax))
        };
        // 100 still running, 101 committed in the log but not yet visible.
        assert!(!ended(101, "100:100:"));
        assert!(!ended(100, "100:100:"));
        let epoch = 3_i64 << 32;
        assert!(!ended(101, &format!("{}:{}:", epoch + 100, epoch + 100)));
        // Across the wrap: `xmax` just before it, the transaction just after.
        let end = (4_i64 << 32) - 2;
        assert!(!ended(5, &format!("{end}:{end}:")));
        // Seen ended: released.
        assert!(ended(101, "100:102:100"));
        assert!(ended(u32::MAX - 1, &format!("{0}:{0}:", (4_i64 << 32) + 3)));
        assert!(!ended(100, "100:102:100"), "still running");
    }

    #[test]
    fn replication_conninfo_keeps_the_urls_options() {
        assert_eq!(
            replication_conninfo("postgres://u@h/db?options=-csearch_path%3Dx", "a b", "UTF8"),
            "postgres://u@h/db?options=-csearch_path%3Dx&replication=database\
             &application_name=a%20b&client_encoding=UTF8"
        );
        assert_eq!(
            replication_conninfo("postgresql://h/db", "n", "UTF8"),
            "postgresql://h/db?replication=database&application_name=n&client_encoding=UTF8"
        );
        // A URL ending in `?` or `&`: libpq refuses an empty parameter before another.
        assert_eq!(
            replication_conninfo("postgres://h/db?sslmode=disable&", "n", "UTF8"),
            "postgres://h/db?sslmode=disable&replication=database&application_name=n\
             &client_encoding=UTF8"
        );
        // UTF-8 last, over the URL's own: libpq keeps the last one given.
        assert_eq!(
            replication_conninfo("postgres://h/db?client_encoding=LATIN1", "n", "UTF8"),
            "postgres://h/db?client_encoding=LATIN1&replication=database&application_name=n\
             &client_encoding=UTF8"
        );
        assert_eq!(
            replication_conninfo("host=h dbname=db", "it's", "SQL_ASCII"),
            "host=h dbname=db replication=database application_name='it\\'s' \
             client_encoding=SQL_ASCII"
        );
    }
}
