//! The trigger feed's listener: one connection per store that `LISTEN`s on the schema's
//! channel, reads the changes notifications name (accepting only those whose id and token the
//! change table holds), and publishes them as committed batches, in commit order; with the
//! fences that tell a subscription where it starts.

use super::*;

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
pub(super) struct Listener {
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
    /// When it last checked that the watched tables still report their changes.
    tables_checked: Instant,
    /// How many of its fences came back (each the last one sent then).
    fences_back: u64,
    /// Why the feed ends, once a table stopped reporting, and the first fence sent after
    /// that was found: its return says that everything committed before is delivered.
    ending: Option<(String, u64)>,
}

/// A row as a change recorded it (its table and its text), for telling whether two changes
/// are of one row as it stood.
fn row_identity(table: &str, text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (table, text).hash(&mut hasher);
    hasher.finish()
}

impl Listener {
    pub(super) fn start(url: &str, schema: &str, channel: &str, outlet: Outlet) -> Result<()> {
        let mut conn = crate::store::establish_postgres(url)
            .map_err(|e| Error::connection(url, crate::ConnectionFailure::Driver, e))?;
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
            quote_literal(&name, Dialect::Postgres),
            quote_ident(channel)
        ))?;
        // The transactions that had ended once it listened: a notification of theirs reaching
        // it precedes every subscription it serves.
        let start: Vec<Start> = diesel::sql_query(
            "SELECT pg_backend_pid() AS pid, pg_current_snapshot()::text AS snapshot, \
             extract(epoch FROM clock_timestamp())::float8 AS now",
        )
        .load(&mut conn)?;
        let Start {
            pid,
            snapshot,
            now: server_now,
        } = Error::one_row(start, "pg_current_snapshot()")?;
        let ended = Snapshot::parse(&snapshot).ok_or(Error::UnexpectedAnswer {
            query: "pg_current_snapshot()",
        })?;
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
            tables_checked: Instant::now(),
            fences_back: 0,
            ending: None,
        };
        outlet::start("datastore-pg-listener", move || listener.run())
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
            self.check_tables()?;
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

    /// Fails once a table a subscription wants stopped reporting its changes (see
    /// [`Outlet::unreported`]) and a fence sent after that was found came back: everything
    /// committed before is delivered by then.
    fn check_tables(&mut self) -> std::result::Result<(), String> {
        if self.ending.is_none()
            && let Some(reason) = self
                .outlet
                .unreported(&mut self.conn, &mut self.tables_checked)?
        {
            // The next fence is sent after the finding (one already on its way was not),
            // by whichever step sends it: under steady writes, the one that follows changes.
            self.ending = Some((reason, self.fences + 1));
        }
        let Some((reason, fence)) = &self.ending else {
            return Ok(());
        };
        if self.fences_back >= *fence {
            return Err(reason.clone());
        }
        if self.fence.is_none() {
            self.send_fence().map_err(connection_failed)?;
        }
        Ok(())
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
    /// (the previous one is published when another begins), as a missed one where the cleanup
    /// removed it first, markers open their subscription, this listener's fence publishes what
    /// preceded it. Anything else is ignored. Whether a change, a missed one or a marker came.
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
        let mut removed = self.removed(&ids, &stored).map_err(connection_failed)?;
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
                        self.fences_back = self.fences;
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
                    } else if removed.remove(&id) {
                        // Removed before this listener read it (it fell more than the
                        // retention behind), or made up that low: told missed, once, where
                        // it would have come (see `removed`).
                        self.batch.gap += 1;
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

    /// Which of `ids` the read did not find (`stored`) because the cleanup removed them first
    /// (see `triggers::removed_changes`): asked only when the read missed some.
    ///
    /// A listener behind by more than the retention (a bulk update of millions of rows,
    /// writers faster than it) finds changes gone that it was told of: its subscribers are
    /// told each as missed, where it came, since which table it was of is gone with it. The
    /// token went with it too, so a note made up by anyone (naming an id the table never held,
    /// or a copy of an old one) that low cannot be told from it: it costs the subscribers a
    /// spurious `Missed` (a read again), never a change. Telling them apart would take the
    /// cleanup keeping removed tokens, a write the listener's role may not be allowed (it
    /// needs `SELECT` and `DELETE` only); ending the feed instead would let anyone end it.
    fn removed(
        &mut self,
        ids: &[i64],
        stored: &HashMap<i64, Stored>,
    ) -> diesel::QueryResult<HashSet<i64>> {
        let missing: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| !stored.contains_key(id))
            .collect();
        if missing.is_empty() {
            return Ok(HashSet::new());
        }
        let removed = triggers::removed_changes(&mut self.conn, &self.changes, &missing)?;
        Ok(removed.into_iter().collect())
    }

    /// Every transaction `snapshot` saw ended is received whole: copies of its changes are
    /// known as such by their transaction from now on.
    fn advance(&mut self, snapshot: Snapshot) {
        self.taken.retain(|_, xid| !snapshot.ended(*xid));
        self.ended = snapshot;
    }

    /// Removes a batch of recorded changes old enough (see `triggers::remove_changes`).
    fn cleanup(&mut self) -> diesel::QueryResult<()> {
        if self.last_cleanup.is_none() {
            // Best effort: a table left logged is tried again by the next listener, and a
            // connection that broke meanwhile fails the next read.
            let _ = triggers::unlog_changes(&mut self.conn, &self.schema);
        }
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
        if payload.op == "TRUNCATE" {
            return broken(super::TRUNCATED.to_owned());
        }
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
            .extend(super::super::sqlite::in_delivery_order(changes));
    }

    /// Publishes the transaction received so far.
    fn publish(&mut self) {
        self.end_statement();
        self.statement = None;
        self.outlet.publish(std::mem::take(&mut self.batch));
    }
}
