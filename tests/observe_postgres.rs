//! Observe on PostgreSQL, where its machinery lives in the database: what it installs is this
//! version's and its owner's, installing it never waits for the caller's own transaction,
//! recorded changes do not pile up, an earlier version of the store running beside this one
//! never makes it drop changes without a word, and the order of a transaction's statements
//! holds.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::models::{Comment, Post};
use datastore::diesel::connection::SimpleConnection;
use datastore::diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use datastore::migrate::MigrationFailure;
use datastore::observe::{ChangeFeed, Observed, Op, RawValue, Subscription};
use datastore::prelude::*;
use datastore::Error;

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(300);

fn post(title: &str) -> Post {
    common::post(title, 1)
}

fn next<M: Model + Clone + std::fmt::Debug>(sub: &Subscription<M>) -> (Op, M) {
    match sub.recv_timeout(WAIT) {
        Some(Observed::Change(c)) => (c.op, c.element),
        other => panic!("expected a change, got {other:?}"),
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = datastore::diesel::sql_types::BigInt)]
    n: i64,
}

fn count(conn: &mut PgConnection, sql: &str) -> i64 {
    datastore::diesel::sql_query(sql)
        .load::<Count>(conn)
        .unwrap()
        .remove(0)
        .n
}

/// The column `text` of every row `sql` reads.
fn texts(conn: &mut PgConnection, sql: &str) -> Vec<String> {
    #[derive(QueryableByName)]
    struct Text {
        #[diesel(sql_type = datastore::diesel::sql_types::Text)]
        text: String,
    }
    datastore::diesel::sql_query(sql)
        .load::<Text>(conn)
        .unwrap()
        .into_iter()
        .map(|row| row.text)
        .collect()
}

/// The column `text` of the one row `sql` reads.
fn text(conn: &mut PgConnection, sql: &str) -> String {
    texts(conn, sql).remove(0)
}

/// What an earlier version of the store installed as `datastore_notify()`: a body that sends
/// each change whole, as a JSON notification. Replacing the function keeps its comment.
const EARLIER_BODY: &str = "CREATE OR REPLACE FUNCTION datastore_notify() RETURNS trigger
     LANGUAGE plpgsql AS $$ BEGIN
         PERFORM pg_notify('datastore:' || md5(TG_TABLE_SCHEMA),
             json_build_object('table', TG_TABLE_NAME, 'op', TG_OP, 'new', row_to_json(NEW))::text);
         RETURN NULL;
     END $$";

/// Recorded changes older than the retention (ten minutes) are removed when a listener
/// starts, however briefly earlier listeners ran: once every listener has read them, they are
/// only weight on every later write.
#[test]
fn on_postgres_old_recorded_changes_are_removed_when_a_listener_starts() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    let schema = common::PgSchema::new(&url);
    let mut admin = PgConnection::establish(schema.url()).unwrap();
    {
        // A short-lived process: it observes, writes and goes.
        let store = common::trigger_feed_store(schema.url());
        let posts = store.observe::<Post>().unwrap();
        for i in 0..20 {
            store.save(post(&format!("post {i}"))).unwrap();
        }
        recorded_transactions_ended(&mut admin);
        store.save(post("post 20")).unwrap();
        for _ in 0..21 {
            next(&posts);
        }
    }
    assert_eq!(count(&mut admin, RECORDED), 21);
    // An hour later, as far as the recorded changes can tell; and a row an earlier version
    // stored then, without a transaction.
    admin
        .batch_execute(
            "UPDATE datastore_change_payloads SET created_at = created_at - interval '1 hour';
             INSERT INTO datastore_change_payloads (payload, created_at)
             VALUES ('earlier', now() - interval '1 hour')",
        )
        .unwrap();
    let store = common::trigger_feed_store(schema.url());
    let _posts = store.observe::<Post>().unwrap();
    // All but the last transaction's change (no change recorded after it ended says when it
    // did; the next one will) and the newest of those removed, which stays until a newer one
    // goes (for listeners to tell a change removed before they read it from a made-up one).
    cleaned_up_to(&mut admin, 2);
    // Recent ones stay, for every listener to read.
    store.save(post("recent")).unwrap();
    std::thread::sleep(QUIET);
    assert_eq!(count(&mut admin, RECORDED), 3);
}

/// How many changes the change table holds, as `count` reads it.
const RECORDED: &str = "SELECT count(*) AS n FROM datastore_change_payloads";

/// Waits until no transaction older than the recorded changes is running (other tests' may
/// be): the next change then records a horizon that says they all ended, which their removal
/// needs.
fn recorded_transactions_ended(admin: &mut PgConnection) {
    while count(
        admin,
        "SELECT (pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
         - (SELECT max(xid) FROM datastore_change_payloads)) AS n",
    ) <= 0
    {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (`WAIT` at most) until a listener's cleanup leaves at most `left` recorded changes.
fn cleaned_up_to(admin: &mut PgConnection, left: i64) {
    let deadline = Instant::now() + WAIT;
    while count(admin, RECORDED) > left {
        assert!(
            Instant::now() < deadline,
            "{} recorded changes left",
            count(admin, RECORDED)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A listener further behind than the retention (here its connection held, as a listener
/// busy with a bulk update of millions of rows is) finds the changes it was told of removed
/// by another store's cleanup meanwhile: its subscriber is told it missed them, where they
/// came, before the changes that are still there. They were dropped without a word.
#[test]
fn on_postgres_changes_removed_before_a_listener_behind_read_them_are_told_missed() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    let schema = common::PgSchema::new(&url);
    let mut admin = PgConnection::establish(schema.url()).unwrap();
    let relay = common::relay::Relay::new(schema.url());
    let behind = common::trigger_feed_store(relay.url());
    let posts = behind.observe::<Post>().unwrap();

    relay.hold();
    let writer = common::trigger_feed_store(schema.url());
    let mut saved: Vec<Post> = (0..3)
        .map(|i| writer.save(post(&format!("post {i}"))).unwrap())
        .collect();
    recorded_transactions_ended(&mut admin);
    saved.push(writer.save(post("post 3")).unwrap());
    // An hour later, as far as the recorded changes can tell: a listener that starts removes
    // the first three but the newest of them.
    admin
        .batch_execute(
            "UPDATE datastore_change_payloads SET created_at = created_at - interval '1 hour'",
        )
        .unwrap();
    let _cleaning = writer.observe::<Post>().unwrap();
    cleaned_up_to(&mut admin, 2);

    relay.release();
    match posts.recv_timeout(WAIT) {
        Some(Observed::Missed(2)) => {}
        other => panic!("expected the two removed changes told missed, got {other:?}"),
    }
    for kept in &saved[2..] {
        assert_eq!(next(&posts), (Op::Insert, kept.clone()));
    }
    if let Some(extra) = posts.recv_timeout(QUIET) {
        panic!("expected nothing more, got {extra:?}");
    }
}

/// A schema whose `posts` a store of this version set up for the trigger feed (and is gone),
/// then changed by `sql`, as an earlier version's store did; none without a server.
fn set_up_then_changed_by_an_earlier_version(sql: &str) -> Option<common::PgSchema> {
    let schema = common::PgSchema::new(&common::postgres_url()?);
    drop(
        common::trigger_feed_store(schema.url())
            .observe::<Post>()
            .unwrap(),
    );
    let mut earlier = PgConnection::establish(schema.url()).unwrap();
    earlier.batch_execute(sql).unwrap();
    Some(schema)
}

/// An earlier version of the store replaced the trigger function (as it did on its first
/// subscription), leaving this version's comment on it: a store of this version finds the body
/// is not its own, puts it back, and receives every change.
#[test]
fn on_postgres_an_earlier_versions_function_body_is_replaced_by_the_next_store() {
    let Some(schema) = set_up_then_changed_by_an_earlier_version(EARLIER_BODY) else {
        return;
    };
    let store = common::trigger_feed_store(schema.url());
    let posts = store.observe::<Post>().unwrap();
    let saved = store.save(post("after the earlier version")).unwrap();
    assert_eq!(next(&posts), (Op::Insert, saved));
}

/// An earlier version's triggers fired only where changes originate (as `ENABLE TRIGGER`
/// makes them), on two tables: the next store's subscription to each makes them fire always
/// (the second too, though the first subscription found it), so the writes of a session with
/// `session_replication_role = replica` are reported.
#[test]
fn on_postgres_triggers_an_earlier_version_enabled_on_origin_only_are_set_up_again() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    let schema = common::PgSchema::new(&url);
    let earlier = common::trigger_feed_store(schema.url());
    drop((
        earlier.observe::<Post>().unwrap(),
        earlier.observe::<Comment>().unwrap(),
    ));
    drop(earlier);
    let mut admin = PgConnection::establish(schema.url()).unwrap();
    admin
        .batch_execute(
            "ALTER TABLE posts ENABLE TRIGGER USER; ALTER TABLE comments ENABLE TRIGGER USER",
        )
        .unwrap();
    let store = common::trigger_feed_store(schema.url());
    let posts = store.observe::<Post>().unwrap();
    assert_eq!(triggers_enabled(&mut admin, "comments"), "OOOO");
    let written = post("applied by a replica");
    common::insert_as_replica(schema.url(), &written);
    assert_eq!(next(&posts), (Op::Insert, written));
    drop(store.observe::<Comment>().unwrap());
    assert_eq!(triggers_enabled(&mut admin, "comments"), "AAAA");
}

/// A schema whose `posts` an earlier version set up with triggers that fire where changes
/// originate only (as `ENABLE TRIGGER` makes them), and an admin connection to it; none
/// without a server.
fn posts_enabled_on_origin_only() -> Option<(common::PgSchema, PgConnection)> {
    let schema =
        set_up_then_changed_by_an_earlier_version("ALTER TABLE posts ENABLE TRIGGER USER")?;
    let mut admin = PgConnection::establish(schema.url()).unwrap();
    assert_eq!(triggers_enabled(&mut admin, "posts"), "OOOO");
    Some((schema, admin))
}

/// How `table`'s four observe triggers are enabled: `O` where changes originate, `A` always.
fn triggers_enabled(conn: &mut PgConnection, table: &str) -> String {
    text(
        conn,
        &format!(
            "SELECT string_agg(tgenabled::text, '' ORDER BY tgname) AS text FROM pg_trigger \
             WHERE tgrelid = '{table}'::regclass AND tgname LIKE '%datastore_observe%'"
        ),
    )
}

/// A role that does not own the observed table, granted what observing it takes (`TRIGGER` on
/// it, `EXECUTE` on the trigger functions, `SELECT` and `DELETE` on the change table), sets its
/// triggers up and receives its changes: they fire where changes originate, as making them fire
/// always takes the table's owner. The owner's next store sets them up to fire always (the
/// writes of a replica session then arrive), and the other role's subscription goes on.
#[test]
fn on_postgres_a_role_that_does_not_own_a_table_sets_its_triggers_up() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    let schema = common::PgSchema::new(&url);
    let mut admin = PgConnection::establish(schema.url()).unwrap();
    // The owner migrates, and installs the change table and the functions for another table.
    drop(
        common::trigger_feed_store(schema.url())
            .observe::<Comment>()
            .unwrap(),
    );
    let role = Squatter::new(&url, schema.name());
    let name = &role.name;
    admin
        .batch_execute(&format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE, TRIGGER ON posts TO {name}; \
             GRANT EXECUTE ON FUNCTION datastore_notify(), datastore_notify_statement() TO {name}; \
             GRANT SELECT, DELETE ON datastore_change_payloads TO {name};"
        ))
        .unwrap();
    let store = Store::builder(format!(
        "{}?options=-csearch_path%3D{}",
        role.url,
        schema.name()
    ))
    .change_feed(ChangeFeed::Triggers)
    .open()
    .unwrap();
    let posts = store.observe::<Post>().unwrap();
    assert_eq!(triggers_enabled(&mut admin, "posts"), "OOOO");
    let saved = store
        .save(post("by a role that does not own posts"))
        .unwrap();
    assert_eq!(next(&posts), (Op::Insert, saved));

    let owner = common::trigger_feed_store(schema.url());
    let owners = owner.observe::<Post>().unwrap();
    assert_eq!(triggers_enabled(&mut admin, "posts"), "AAAA");
    let written = post("applied by a replica");
    common::insert_as_replica(schema.url(), &written);
    assert_eq!(next(&owners), (Op::Insert, written.clone()));
    assert_eq!(next(&posts), (Op::Insert, written));
    drop((posts, store));
    drop(role);
}

/// A logical replication subscription applying the test's schema's `posts`, from the
/// configured database, to the same schema in another database of the server (one it has
/// already: making one would hold a transaction open while it copies, which other tests'
/// replication slots would wait for); everything it made is dropped with it, however the test
/// ends, and what a killed run left is dropped by the next.
struct Replica {
    publisher: PgConnection,
    subscriber: PgConnection,
    schema: String,
    publication: String,
    slot: String,
    subscription: String,
    /// The subscriber's URL, with the schema as the connections' search path.
    url: String,
}

/// What names a replica's objects, with the time they were made (seconds since the epoch).
const REPLICA_PREFIX: &str = "datastore_replica_";

impl Replica {
    fn new(url: &str, publisher: &common::PgSchema) -> Self {
        let mut publishing = PgConnection::establish(publisher.url()).unwrap();
        let other = texts(
            &mut publishing,
            "SELECT datname::text AS text FROM pg_database \
             WHERE datallowconn AND NOT datistemplate AND datname <> current_database() \
             ORDER BY datname <> 'postgres', datname LIMIT 1",
        )
        .pop()
        .expect("the server has another database to subscribe from (`postgres`, say)");
        let (address, query) = url.split_once('?').unwrap_or((url, ""));
        let server = address.rsplit_once('/').unwrap().0;
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("{query}&")
        };
        let mut subscriber = PgConnection::establish(&format!("{server}/{other}?{query}")).unwrap();
        Self::drop_leftovers(&mut publishing, &mut subscriber);
        let made = Self::now();
        let id = format!(
            "{REPLICA_PREFIX}{made}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let schema = publisher.name().to_owned();
        let mut replica = Self {
            url: format!("{server}/{other}?{query}options=-csearch_path%3D{schema}"),
            publisher: publishing,
            subscriber,
            schema,
            publication: format!("{id}_pub"),
            slot: format!("{id}_slot"),
            subscription: format!("{id}_sub"),
        };
        common::create_claimed_schema(&mut replica.subscriber, &replica.schema);
        // The subscriber's tables, migrated as the publisher's.
        drop(common::trigger_feed_store(&replica.url));
        // On one server the slot is made apart from the subscription, which would otherwise
        // wait for its own transaction to end; each in a transaction of its own.
        for sql in [
            format!("CREATE PUBLICATION {} FOR TABLE posts", replica.publication),
            format!(
                "SELECT pg_create_logical_replication_slot('{}', 'pgoutput')",
                replica.slot
            ),
        ] {
            replica.publisher.batch_execute(&sql).unwrap();
        }
        let sql = format!(
            "CREATE SUBSCRIPTION {} CONNECTION '{}' PUBLICATION {} \
             WITH (create_slot = false, slot_name = '{}', copy_data = false)",
            replica.subscription,
            url.replace('\'', "''"),
            replica.publication,
            replica.slot
        );
        replica.subscriber.batch_execute(&sql).unwrap();
        replica
    }

    /// Seconds since the epoch, as a replica's objects are named with.
    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    /// Drops what a run killed before its replicas were dropped left: the subscriber's test
    /// schemas nobody claims, and what was made more than ten minutes ago (no test runs that
    /// long), by name.
    fn drop_leftovers(publishing: &mut PgConnection, subscriber: &mut PgConnection) {
        common::drop_abandoned_schemas(subscriber, common::TEST_SCHEMA_PREFIX);
        let old = |name: &str| {
            name.strip_prefix(REPLICA_PREFIX)
                .and_then(|rest| rest.split('_').next()?.parse::<u64>().ok())
                .is_some_and(|made| Self::now().saturating_sub(made) > 600)
        };
        let names = |conn: &mut PgConnection, sql: &str| -> Vec<String> {
            texts(conn, sql)
                .into_iter()
                .filter(|name| old(name))
                .collect()
        };
        for subscription in names(
            subscriber,
            "SELECT subname::text AS text FROM pg_subscription",
        ) {
            let _ = subscriber.batch_execute(&format!("DROP SUBSCRIPTION {subscription}"));
        }
        for slot in names(
            publishing,
            "SELECT slot_name::text AS text FROM pg_replication_slots WHERE NOT active",
        ) {
            let _ = publishing.batch_execute(&format!("SELECT pg_drop_replication_slot('{slot}')"));
        }
        for conn in [publishing, subscriber] {
            for publication in names(conn, "SELECT pubname::text AS text FROM pg_publication") {
                let _ = conn.batch_execute(&format!("DROP PUBLICATION {publication}"));
            }
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        // Dropping the subscription drops its slot; one the test made but no subscription
        // took is dropped by name.
        let _ = self.subscriber.batch_execute(&format!(
            "DROP SUBSCRIPTION IF EXISTS {}",
            self.subscription
        ));
        let _ = self.subscriber.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {} CASCADE; DROP PUBLICATION IF EXISTS {}_all",
            self.schema, self.publication
        ));
        let _ = self.publisher.batch_execute(&format!(
            "DROP PUBLICATION IF EXISTS {}; \
             SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
             WHERE slot_name = '{}' AND NOT active;",
            self.publication, self.slot
        ));
    }
}

/// What logical replication's apply worker writes into an observed table (as
/// `session_replication_role = replica`, firing row triggers only) is reported on the
/// subscriber's trigger feed, recorded with a horizon, so that the cleanup can remove it; a
/// publication `FOR ALL TABLES` of the subscriber's database leaves its change table out
/// (unlogged), so that a subscriber of its own would not receive it.
#[test]
fn on_postgres_the_rows_a_logical_replication_subscriber_applies_are_reported_there() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    if !common::logical_decoding() {
        return;
    }
    let publisher = common::PgSchema::new(&url);
    let origin = common::trigger_feed_store(publisher.url());
    let replica = Replica::new(&url, &publisher);
    let store = common::trigger_feed_store(&replica.url);
    let posts = store.observe::<Post>().unwrap();
    let saved = origin.save(post("applied by the subscription")).unwrap();
    // The apply worker starts within a few seconds of the subscription.
    match posts.recv_timeout(Duration::from_secs(30)) {
        Some(Observed::Change(change)) => {
            assert_eq!((change.op, change.element), (Op::Insert, saved))
        }
        other => panic!("expected the applied insert, got {other:?}"),
    }
    let mut subscriber = PgConnection::establish(&replica.url).unwrap();
    assert_eq!(
        count(
            &mut subscriber,
            "SELECT count(*) AS n FROM datastore_change_payloads \
             WHERE table_name = 'posts' AND horizon IS NOT NULL"
        ),
        1
    );
    // The tests write the subscriber's database only here (and only tables with a primary
    // key, which a publication of all its tables lets update and delete).
    let all = format!("{}_all", replica.publication);
    subscriber
        .batch_execute(&format!("CREATE PUBLICATION {all} FOR ALL TABLES"))
        .unwrap();
    let published = |conn: &mut PgConnection, table: &str| {
        count(
            conn,
            &format!(
                "SELECT count(*) AS n FROM pg_publication_tables WHERE pubname = '{all}' \
                 AND schemaname = current_schema() AND tablename = '{table}'"
            ),
        )
    };
    let both = (
        published(&mut subscriber, "posts"),
        published(&mut subscriber, "datastore_change_payloads"),
    );
    subscriber
        .batch_execute(&format!("DROP PUBLICATION {all}"))
        .unwrap();
    assert_eq!(both, (1, 0), "posts published, the change table not");
    drop((posts, store, subscriber));
    drop(replica);
}

/// Triggers an earlier version enabled on origin only, on a table another session's open
/// transaction holds: the subscription gives up making them fire always after 100 ms (and
/// works, reporting as before), and the store's next subscription to the table, once the
/// holder is gone, makes them fire always.
#[test]
fn on_postgres_making_triggers_fire_always_gives_way_to_another_holder_and_is_tried_again() {
    let Some((schema, mut admin)) = posts_enabled_on_origin_only() else {
        return;
    };
    let mut holder = PgConnection::establish(schema.url()).unwrap();
    holder
        .batch_execute("BEGIN; LOCK TABLE posts IN ROW EXCLUSIVE MODE")
        .unwrap();
    let store = common::trigger_feed_store(schema.url());
    let started = Instant::now();
    let posts = store.observe::<Post>().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(triggers_enabled(&mut admin, "posts"), "OOOO");
    holder.batch_execute("COMMIT").unwrap();
    let saved = store.save(post("reported as before")).unwrap();
    assert_eq!(next(&posts), (Op::Insert, saved));
    drop(store.observe::<Post>().unwrap());
    assert_eq!(triggers_enabled(&mut admin, "posts"), "AAAA");
}

/// How `datastore_change_payloads` is kept: `p` logged, `u` unlogged.
fn change_table_persistence(conn: &mut PgConnection) -> String {
    text(
        conn,
        "SELECT relpersistence::text AS text FROM pg_class \
         WHERE oid = 'datastore_change_payloads'::regclass",
    )
}

/// An earlier version made the change table logged (and so published by a publication `FOR ALL
/// TABLES`): the next store's listener makes it unlogged as it starts; where a publication
/// names it (PostgreSQL then refuses to), it is left as it is, and observing works as before.
#[test]
fn on_postgres_an_earlier_versions_logged_change_table_is_made_unlogged_where_it_can_be() {
    let Some(schema) = set_up_then_changed_by_an_earlier_version(&format!(
        "ALTER TABLE datastore_change_payloads SET LOGGED; {EARLIER_BODY}"
    )) else {
        return;
    };
    let mut admin = PgConnection::establish(schema.url()).unwrap();
    assert_eq!(change_table_persistence(&mut admin), "p");
    let store = common::trigger_feed_store(schema.url());
    let posts = store.observe::<Post>().unwrap();
    // By the listener, as it starts.
    let started = Instant::now();
    while change_table_persistence(&mut admin) != "u" {
        assert!(started.elapsed() < WAIT, "made unlogged");
        std::thread::sleep(Duration::from_millis(10));
    }
    let saved = store.save(post("recorded unlogged")).unwrap();
    assert_eq!(next(&posts), (Op::Insert, saved));
    drop((posts, store));

    let publication = format!("datastore_test_{}", uuid::Uuid::new_v4().simple());
    admin
        .batch_execute(&format!(
            "ALTER TABLE datastore_change_payloads SET LOGGED; \
             CREATE PUBLICATION {publication} FOR TABLE datastore_change_payloads; {EARLIER_BODY}"
        ))
        .unwrap();
    // The publication is the database's: dropped however the rest ends.
    let rest = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let store = common::trigger_feed_store(schema.url());
        let posts = store.observe::<Post>().unwrap();
        let saved = store.save(post("still recorded")).unwrap();
        assert_eq!(next(&posts), (Op::Insert, saved));
        assert_eq!(change_table_persistence(&mut admin), "p", "left as it is");
    }));
    let _ = PgConnection::establish(schema.url())
        .unwrap()
        .batch_execute(&format!("DROP PUBLICATION {publication}"));
    if let Err(panic) = rest {
        std::panic::resume_unwind(panic);
    }
}

/// Triggers an earlier version enabled where changes originate only, on a table the caller's
/// transaction wrote: a subscription made inside it does not wait for that transaction (the
/// triggers stay as they are, reporting what they did), and the next store's makes them fire
/// always.
#[test]
fn on_postgres_triggers_are_made_to_fire_always_without_waiting_for_the_callers_transaction() {
    let Some((schema, mut admin)) = posts_enabled_on_origin_only() else {
        return;
    };
    let store = common::trigger_feed_store(schema.url());
    let (posts, written) = store
        .transaction(|tx| {
            let written = tx.save(post("written first"))?;
            Ok((store.observe::<Post>()?, written))
        })
        .unwrap();
    assert_eq!(triggers_enabled(&mut admin, "posts"), "OOOO");
    // The transaction committed after the subscription began.
    assert_eq!(next(&posts), (Op::Insert, written));
    let saved = store.save(post("written after")).unwrap();
    assert_eq!(next(&posts), (Op::Insert, saved));

    let next_store = common::trigger_feed_store(schema.url());
    drop(next_store.observe::<Post>().unwrap());
    assert_eq!(triggers_enabled(&mut admin, "posts"), "AAAA");
}

/// An earlier version replaces the function while a store of this version observes: the
/// changes recorded meanwhile cannot be read, so the subscription ends with `FeedLost`
/// instead of missing them without a word; the next subscription puts the function back.
#[test]
fn on_postgres_an_earlier_versions_function_put_back_while_observing_ends_the_feed() {
    let Some(db) = common::TestDb::postgres_with(ChangeFeed::Triggers) else {
        return;
    };
    let _schema = db.schema;
    let store = db.store;
    let posts = store.observe::<Post>().unwrap();
    store.conn().unwrap().batch_execute(EARLIER_BODY).unwrap();
    store.save(post("recorded by the earlier version")).unwrap();
    match posts.recv_timeout(WAIT) {
        Some(Observed::FeedLost { reason }) => {
            assert!(reason.contains("earlier version"), "{reason}")
        }
        other => panic!("expected FeedLost, got {other:?}"),
    }
    let deadline = Instant::now() + WAIT;
    let again = loop {
        match store.observe::<Post>() {
            Ok(sub) => break sub,
            // The lost listener is still winding down.
            Err(Error::Connection { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("{e}"),
        }
    };
    let saved = store.save(post("after")).unwrap();
    assert_eq!(next(&again), (Op::Insert, saved));
}

/// Observing a table for the first time installs its triggers, which waits for every
/// transaction that wrote it: inside a transaction that wrote it, that is the caller's own,
/// and it fails at once, typed, rather than after the lock timeout as a busy database.
#[test]
fn on_postgres_observing_a_table_the_transaction_wrote_fails_at_once() {
    for (feed, db) in common::each_feed() {
        let _schema = db.schema;
        let store = db.store;
        store
            .transaction(|tx| {
                tx.save(post("written first"))?;
                let started = Instant::now();
                let err = store.observe::<Post>().unwrap_err();
                assert!(
                    matches!(&err, Error::ObserveAfterWrite { table } if table == "posts"),
                    "{feed:?}: {err:?}"
                );
                assert!(
                    err.to_string().contains("before the transaction writes it"),
                    "{err}"
                );
                assert!(
                    started.elapsed() < Duration::from_secs(2),
                    "{feed:?}: at once, not after the lock timeout: {:?}",
                    started.elapsed()
                );
                tx.count::<Comment>()?;
                let comments = store.observe::<Comment>();
                if feed == ChangeFeed::Triggers {
                    // A table the transaction only read can be observed; it goes on.
                    comments?;
                } else {
                    // Setting a table up for logical decoding locks it against reads too.
                    assert!(
                        matches!(&comments, Err(Error::ObserveAfterWrite { table }) if table == "comments"),
                        "{comments:?}"
                    );
                }
                tx.save(post("written after"))?;
                Ok(())
            })
            .unwrap();
        assert_eq!(store.count::<Post>().unwrap(), 2);
        // Outside the transaction, observing the table works.
        let posts = store.observe::<Post>().unwrap();
        let saved = store.save(post("observed")).unwrap();
        assert_eq!(next(&posts), (Op::Insert, saved), "{feed:?}");
    }
}

/// The store's first subscription starts the logical decoding feed, which waits for every
/// transaction writing at that moment: inside one that has written, it fails at once, typed,
/// and the transaction goes on.
#[test]
fn on_postgres_starting_the_feed_inside_a_transaction_that_wrote_fails_at_once() {
    if !common::logical_decoding() {
        return;
    }
    let Some(db) = common::TestDb::postgres_with(ChangeFeed::LogicalDecoding) else {
        return;
    };
    let _schema = db.schema;
    let store = db.store;
    store
        .transaction(|tx| {
            tx.save(post("written first"))?;
            // Comments: a table the transaction has not used, so only the feed's start waits.
            let started = Instant::now();
            let err = store.observe::<Comment>().unwrap_err();
            assert!(matches!(err, Error::FeedStartAfterWrite), "{err:?}");
            assert!(started.elapsed() < Duration::from_secs(2), "at once");
            tx.save(post("written after"))?;
            Ok(())
        })
        .unwrap();
    assert_eq!(store.count::<Post>().unwrap(), 2);
    let comments = store.observe::<Comment>().unwrap();
    drop(comments);
}

/// A schema's first subscription sets observe up in that schema (functions, triggers), one
/// set-up of the schema at a time across processes. One held up (here waiting for a table
/// another transaction writes, up to its lock timeout) holds up no other schema's: another
/// store's first subscription, in another schema, is made meanwhile.
#[test]
fn on_postgres_a_set_up_held_up_in_one_schema_does_not_hold_up_another_schemas() {
    let Some(held) = common::TestDb::postgres_built(|builder| {
        builder
            .change_feed(ChangeFeed::Triggers)
            .busy_timeout(Duration::from_secs(30))
    }) else {
        return;
    };
    let other = common::TestDb::postgres_with(ChangeFeed::Triggers).unwrap();
    // Writing `posts` (its lock taken, as a write takes it) until the other schema's
    // subscription is made: a trigger on it waits for that.
    let mut writer = PgConnection::establish(held.url()).unwrap();
    writer
        .batch_execute("BEGIN; LOCK TABLE posts IN ROW EXCLUSIVE MODE")
        .unwrap();
    let set_up_ended = Arc::new(AtomicBool::new(false));
    let subscribing = std::thread::spawn({
        let (store, ended) = (held.store.clone(), set_up_ended.clone());
        move || {
            let posts = store.observe::<Post>();
            ended.store(true, Ordering::SeqCst);
            posts.map(drop)
        }
    });
    let mut admin = PgConnection::establish(held.url()).unwrap();
    let started = Instant::now();
    while count(
        &mut admin,
        "SELECT count(*) AS n FROM pg_locks WHERE relation = 'posts'::regclass AND NOT granted",
    ) == 0
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the set-up never waited"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let posts = other.store.observe::<Post>().unwrap();
    assert!(
        !set_up_ended.load(Ordering::SeqCst),
        "the other schema's subscription was made while the first one's set-up waited"
    );
    writer.batch_execute("COMMIT").unwrap();
    subscribing.join().unwrap().unwrap();
    let saved = other.store.save(post("observed")).unwrap();
    assert_eq!(next(&posts), (Op::Insert, saved));
}

/// The logical feed needs each observed table's row before an update or delete, which
/// `REPLICA IDENTITY FULL` makes the log carry. Set back by someone else while observed, the
/// updates and deletes that follow are reported (`Undecodable`), never delivered as half rows
/// or, for an update, without the row before it (which a filter needs to see a row leave it).
#[test]
fn on_postgres_updates_and_deletes_without_the_row_before_them_are_reported() {
    if !common::logical_decoding() {
        return;
    }
    let Some(db) = common::TestDb::postgres_with(ChangeFeed::LogicalDecoding) else {
        return;
    };
    let _schema = db.schema;
    let store = db.store;
    let posts = store.observe::<Post>().unwrap();
    let mut saved = store.save(post("full")).unwrap();
    assert_eq!(next(&posts).0, Op::Insert);
    // With the writes after it, in one transaction: the listener's check of the tables (once a
    // second) takes a table without its full replica identity as one that stopped reporting,
    // and ends the feed; committed alone first, that could end it before these writes.
    store
        .transaction(|tx| {
            tx.batch_execute("ALTER TABLE posts REPLICA IDENTITY DEFAULT")?;
            saved.title = "default".into();
            let saved = tx.save(saved)?;
            tx.delete(&saved)
        })
        .unwrap();
    for op in ["update", "delete"] {
        match posts.recv_timeout(WAIT) {
            Some(Observed::Undecodable { table, reason, .. }) => {
                assert_eq!(table, "posts");
                assert!(reason.contains("REPLICA IDENTITY"), "{op}: {reason}");
            }
            other => panic!("{op}: expected Undecodable, got {other:?}"),
        }
    }
}

/// A `TRUNCATE` fires no row trigger and logs no row: it is reported, for each table it
/// emptied (those its `CASCADE` reached too), as a change that cannot be read, and a query
/// subscription reads its result again.
#[test]
fn on_postgres_a_truncate_is_reported_for_every_table_it_emptied() {
    for (feed, db) in common::each_feed() {
        let _schema = db.schema;
        let store = db.store;
        let posts = store.observe::<Post>().unwrap();
        let comments = store.observe::<Comment>().unwrap();
        let mut all = store.observe_query::<Post>(|q| q).unwrap();
        assert!(all.recv_timeout(WAIT).unwrap().unwrap().is_empty());
        let parent = store.save(post("emptied")).unwrap();
        store.save(common::comment(&parent, "with it")).unwrap();
        next(&posts);
        next(&comments);
        assert_eq!(all.recv_timeout(WAIT).unwrap().unwrap(), [parent]);
        store
            .conn()
            .unwrap()
            .batch_execute("TRUNCATE posts CASCADE")
            .unwrap();
        fn truncated<T: std::fmt::Debug>(item: Option<Observed<T>>, table: &str, feed: ChangeFeed) {
            match item {
                Some(Observed::Undecodable {
                    table: reported,
                    reason,
                }) => {
                    assert_eq!(reported, table, "{feed:?}");
                    assert!(reason.contains("TRUNCATE"), "{feed:?}: {reason}");
                }
                other => panic!("{feed:?}: expected {table} reported, got {other:?}"),
            }
        }
        truncated(posts.recv_timeout(WAIT), "posts", feed);
        truncated(comments.recv_timeout(WAIT), "comments", feed);
        assert!(
            all.recv_timeout(WAIT).unwrap().unwrap().is_empty(),
            "{feed:?}: read again"
        );
    }
}

/// Starting the logical feed waits for every transaction running on the server to end: one
/// left open elsewhere makes the first subscription fail with `Error::Busy` after the store's
/// busy timeout, where it waited without end; once it ends, subscribing works.
#[test]
fn on_postgres_a_transaction_left_open_elsewhere_makes_the_logical_feed_busy_not_stuck() {
    if !common::logical_decoding() {
        return;
    }
    let Some(url) = common::postgres_url() else {
        return;
    };
    let schema = common::PgSchema::new(&url);
    let store = Store::builder(schema.url())
        .migrations(datastore::embed_migrations!())
        .change_feed(ChangeFeed::LogicalDecoding)
        .busy_timeout(Duration::from_secs(2))
        .open()
        .unwrap();
    let mut idle = PgConnection::establish(&url).unwrap();
    idle.batch_execute("BEGIN; SELECT pg_current_xact_id();")
        .unwrap();
    let started = Instant::now();
    match store.observe::<Post>() {
        Err(Error::Busy { message }) => assert!(message.contains("slot"), "{message}"),
        other => panic!("expected Error::Busy, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(20), "bounded");
    idle.batch_execute("COMMIT").unwrap();
    let posts = store.observe::<Post>().unwrap();
    store.save(post("after")).unwrap();
    assert_eq!(next(&posts).0, Op::Insert);
}

/// The schema `conn` creates tables in.
fn current_schema(conn: &mut PgConnection) -> String {
    text(conn, "SELECT current_schema()::text AS text")
}

/// A role with `CREATE` on the schema (and nothing on the observed tables), dropped when the
/// test ends.
struct Squatter {
    admin: PgConnection,
    name: String,
    url: String,
}

impl Squatter {
    fn new(admin_url: &str, schema: &str) -> Self {
        let mut admin = PgConnection::establish(admin_url).unwrap();
        let name = format!("datastore_squatter_{}", uuid::Uuid::new_v4().simple());
        let password = uuid::Uuid::new_v4().simple().to_string();
        admin
            .batch_execute(&format!("CREATE ROLE {name} LOGIN PASSWORD '{password}'"))
            .unwrap();
        // Grants on the database race with other tests' ("tuple concurrently updated").
        let grant = format!(
            "DO $$ BEGIN EXECUTE format('GRANT CONNECT ON DATABASE %I TO {name}', current_database()); END $$;
             GRANT USAGE, CREATE ON SCHEMA {schema} TO {name};"
        );
        let mut tries = 0;
        while let Err(e) = admin.batch_execute(&grant) {
            tries += 1;
            assert!(tries < 20, "{e}");
            std::thread::sleep(Duration::from_millis(50));
        }
        let (scheme, rest) = admin_url.split_once("://").unwrap();
        let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        let host = host.split_once('?').map_or(host, |(host, _)| host);
        let url = format!("{scheme}://{name}:{password}@{host}");
        Self { admin, name, url }
    }
}

impl Drop for Squatter {
    fn drop(&mut self) {
        let name = &self.name;
        let _ = self.admin.batch_execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{name}';
             DROP OWNED BY {name}; DROP ROLE {name};"
        ));
    }
}

/// A role that may create tables in the schema makes the change table before the store ever
/// observed: observe refuses it (its owner could read every recorded change) and installs
/// nothing.
#[test]
fn on_postgres_a_change_table_another_role_made_is_refused() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    let schema = common::PgSchema::new(&url);
    let mut admin = PgConnection::establish(schema.url()).unwrap();
    let schema_name = current_schema(&mut admin);
    let squatter = Squatter::new(&url, &schema_name);
    PgConnection::establish(&squatter.url)
        .unwrap()
        .batch_execute(&format!(
            "CREATE TABLE {schema_name}.datastore_change_payloads (
                 id BIGSERIAL PRIMARY KEY, payload TEXT NOT NULL,
                 created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())"
        ))
        .unwrap();
    let store = common::trigger_feed_store(schema.url());
    let err = store.observe::<Post>().unwrap_err();
    match &err {
        Error::ChangeFeedOwner { object, owner } => {
            assert!(object.contains("datastore_change_payloads"), "{err}");
            assert_eq!(owner, &squatter.name);
        }
        other => panic!("expected ChangeFeedOwner, got {other:?}"),
    }
    assert_eq!(
        count(
            &mut admin,
            "SELECT count(*) AS n FROM pg_trigger \
             WHERE tgrelid = 'posts'::regclass AND NOT tgisinternal"
        ),
        0,
        "nothing installed"
    );
    assert!(store.save(post("still writable")).is_ok());
    drop(store);
    drop(squatter);
}

/// Copies of every notification, forged fences and made-up changes, sent while transactions
/// commit (so that they arrive between a transaction's changes and the listener's fence), and
/// made-up changes naming the very ids a transaction's rows get, arriving just ahead of them,
/// change nothing: every committed change arrives once, in order, and nothing else.
#[test]
fn on_postgres_forgeries_interleaved_with_a_transactions_changes_are_ignored() {
    let Some(db) = common::TestDb::postgres_with(ChangeFeed::Triggers) else {
        return;
    };
    let _schema = db.schema;
    let store = db.store;
    let posts = store.observe::<Post>().unwrap();
    #[derive(QueryableByName)]
    struct Name {
        #[diesel(sql_type = datastore::diesel::sql_types::Text)]
        name: String,
    }
    let mut forger_conn = PgConnection::establish(&common::postgres_url().unwrap()).unwrap();
    let channel = datastore::diesel::sql_query("SELECT 'datastore:' || md5($1) AS name")
        .bind::<datastore::diesel::sql_types::Text, _>(
            datastore::diesel::sql_query("SELECT current_schema()::text AS name")
                .load::<Name>(&mut *store.conn().unwrap())
                .unwrap()
                .remove(0)
                .name,
        )
        .load::<Name>(&mut forger_conn)
        .unwrap()
        .remove(0)
        .name;
    forger_conn
        .batch_execute(&format!("LISTEN \"{channel}\""))
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let forger = {
        let stop = stop.clone();
        let channel = channel.clone();
        std::thread::spawn(move || {
            let mut sent = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let heard: Vec<String> = forger_conn
                    .notifications_iter()
                    .map(|n| n.unwrap().payload)
                    .collect();
                for payload in heard {
                    let id: i64 = payload
                        .split_once(':')
                        .and_then(|(id, _)| id.parse().ok())
                        .unwrap_or(1);
                    let random = uuid::Uuid::new_v4().simple();
                    for forged in [
                        payload.clone(),
                        format!("f:{random}"),
                        format!("m:{random}"),
                        format!("{}:{random}", id + 1),
                        format!("{id}:{random}"),
                    ] {
                        datastore::diesel::sql_query("SELECT pg_notify($1, $2)")
                            .bind::<datastore::diesel::sql_types::Text, _>(&channel)
                            .bind::<datastore::diesel::sql_types::Text, _>(forged)
                            .execute(&mut forger_conn)
                            .unwrap();
                        sent += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            sent
        })
    };
    let mut committed = Vec::new();
    for i in 0..30 {
        let saved = store
            .transaction(|tx| {
                if i % 2 == 1 {
                    // Made-up changes naming the ids this transaction's rows are about to get,
                    // delivered just ahead of them (a transaction's notifications arrive
                    // together, in order).
                    let next = datastore::diesel::sql_query(
                        "SELECT last_value + CASE WHEN is_called THEN 1 ELSE 0 END AS n \
                         FROM datastore_change_payloads_id_seq",
                    )
                    .load::<Count>(tx)?
                    .remove(0)
                    .n;
                    for id in next..next + 3 {
                        datastore::diesel::sql_query("SELECT pg_notify($1, $2)")
                            .bind::<datastore::diesel::sql_types::Text, _>(&channel)
                            .bind::<datastore::diesel::sql_types::Text, _>(format!(
                                "{id}:{}",
                                uuid::Uuid::new_v4().simple()
                            ))
                            .execute(tx)?;
                    }
                }
                (0..3)
                    .map(|j| tx.save(post(&format!("{i}.{j}"))))
                    .collect::<datastore::Result<Vec<_>>>()
            })
            .unwrap();
        committed.extend(saved);
        std::thread::sleep(Duration::from_millis(3));
    }
    for saved in &committed {
        assert_eq!(next(&posts), (Op::Insert, saved.clone()));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let sent = forger.join().unwrap();
    assert!(
        sent >= 90 * 5,
        "the forger heard and answered every change ({sent})"
    );
    if let Some(extra) = posts.recv_timeout(QUIET) {
        panic!("expected nothing more, got {extra:?}");
    }
}

/// Several statements sent as one string run with one statement timestamp: a comment
/// inserted by the first and deleted by the second's cascade still arrive in that order (the
/// cascade's delete is moved before its own statement's rows only).
#[test]
fn on_postgres_statements_sent_together_keep_their_order() {
    for (feed, db) in common::each_feed() {
        let _schema = db.schema;
        let store = db.store;
        let comments = store.observe::<Comment>().unwrap();
        let parent = store.save(post("parent")).unwrap();
        let id = Id::new();
        store
            .conn()
            .unwrap()
            .batch_execute(&format!(
                "INSERT INTO comments (id, content, post_id, created_at) \
                 VALUES ('{id}', 'short-lived', '{}', now()); \
                 DELETE FROM posts WHERE id = '{}'",
                parent.id, parent.id
            ))
            .unwrap();
        let (first, inserted) = next(&comments);
        let (second, deleted) = next(&comments);
        assert_eq!(
            (first, second),
            (Op::Insert, Op::Delete),
            "{feed:?}: in the order they happened"
        );
        assert_eq!((inserted.id, deleted.id), (id, id), "{feed:?}");
    }
}

/// With logical decoding, observe installs no trigger feed (no change table, no row
/// triggers): the server streams the log to a temporary slot, which goes away with the store,
/// so a store that is gone never leaves a slot holding back the server's log.
#[test]
fn on_postgres_logical_decoding_streams_to_a_temporary_slot_that_ends_with_the_store() {
    if !common::logical_decoding() {
        return;
    }
    let Some(db) = common::TestDb::postgres_with(ChangeFeed::LogicalDecoding) else {
        return;
    };
    let schema = db.schema.expect("a schema");
    let store = db.store;
    let mut admin = PgConnection::establish(schema.url()).unwrap();
    let slots = |admin: &mut PgConnection| {
        count(
            admin,
            "SELECT count(*) AS n FROM pg_replication_slots s JOIN pg_stat_activity a \
             ON a.pid = s.active_pid WHERE s.temporary AND s.plugin = 'pgoutput' \
             AND a.application_name = 'datastore listener ' || md5(current_schema())",
        )
    };
    assert_eq!(
        slots(&mut admin),
        0,
        "nothing before the first subscription"
    );

    let comments = store.observe::<Comment>().unwrap();
    assert_eq!(
        slots(&mut admin),
        1,
        "one temporary slot, held by the listener"
    );
    assert_eq!(
        count(
            &mut admin,
            "SELECT count(*) AS n FROM pg_class WHERE relname = 'comments' \
             AND relnamespace = current_schema()::regnamespace AND relreplident = 'f'"
        ),
        1,
        "deletes and updates carry the whole old row"
    );
    assert_eq!(
        count(
            &mut admin,
            "SELECT count(*) AS n FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
             WHERE c.relnamespace = current_schema()::regnamespace \
             AND (t.tgname LIKE 'datastore_observe%' OR t.tgname = 'zz_datastore_observe_delete') \
             OR to_regclass('datastore_change_payloads') IS NOT NULL"
        ),
        0,
        "no trigger feed"
    );
    // A cascade: the reply before the comment whose delete removed it.
    let parent = store.save(post("parent")).unwrap();
    let top = store.save(common::comment(&parent, "top")).unwrap();
    let reply = store
        .save(Comment {
            parent_id: Some(top.id),
            ..common::comment(&parent, "reply")
        })
        .unwrap();
    assert_eq!(next(&comments), (Op::Insert, top.clone()));
    assert_eq!(next(&comments), (Op::Insert, reply.clone()));
    store.delete(&top).unwrap();
    assert_eq!(next(&comments), (Op::Delete, reply), "the child first");
    assert_eq!(next(&comments), (Op::Delete, top));

    drop(comments);
    drop(store);
    let deadline = Instant::now() + Duration::from_secs(10);
    while slots(&mut admin) > 0 {
        assert!(Instant::now() < deadline, "the slot outlived the store");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Logical decoding asked explicitly by a role that may not replicate is `Error::Unsupported`,
/// saying what it needs and naming the trigger feed; the default feed falls back to triggers
/// for the same role, and observes.
#[test]
fn on_postgres_logical_decoding_asked_by_a_role_that_may_not_replicate_is_unsupported() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    let schema = common::PgSchema::new(&url);
    let mut admin = PgConnection::establish(schema.url()).unwrap();
    let schema_name = current_schema(&mut admin);
    let role = Squatter::new(&url, &schema_name);
    let open = |feed: ChangeFeed| {
        Store::builder(&role.url)
            .postgres_schema(&schema_name)
            .migrations(datastore::embed_migrations!())
            .change_feed(feed)
            .open()
            .unwrap()
    };

    let logical = open(ChangeFeed::LogicalDecoding);
    match logical.observe::<Post>() {
        Err(Error::Unsupported(message)) => {
            assert!(message.contains("REPLICATION"), "{message}");
            assert!(message.contains("ChangeFeed::Triggers"), "{message}");
        }
        other => panic!("expected Unsupported, got {:?}", other.map(|_| ())),
    }
    drop(logical);

    let default = open(ChangeFeed::default());
    let posts = default.observe::<Post>().unwrap();
    let saved = default.save(post("observed by triggers")).unwrap();
    assert_eq!(next(&posts), (Op::Insert, saved));
}

/// A partitioned table (its rows live in its partitions, whose changes both feeds would report
/// under the partition's name) or a partition is refused with `Error::Unsupported` naming it,
/// by `observe_all`, before anything is set up, on either feed, also where an earlier version
/// set it up (its triggers, or its publication membership, are not taken as reporting); the
/// schema's other tables are observed as before.
#[test]
fn on_postgres_a_partitioned_table_is_refused_by_name_and_nothing_is_set_up() {
    on_each_feed(|feed, store, admin| {
        admin
            .batch_execute(
                "CREATE TABLE log (id INTEGER NOT NULL, at DATE NOT NULL) PARTITION BY RANGE (at); \
                 CREATE TABLE archive_log PARTITION OF log \
                     FOR VALUES FROM ('2000-01-01') TO ('2026-01-01');",
            )
            .unwrap();
        let refused = |store: &Store| match store.observe_all() {
            Err(Error::Unsupported(message)) => message,
            other => panic!("{feed:?}: expected Unsupported, got {:?}", other.err()),
        };
        // The partition comes first by name.
        let message = refused(store);
        assert!(
            message.contains("`archive_log` is a partition of `log`"),
            "{feed:?}: {message}"
        );
        // Refused before the set-up's transaction: no table got the feed's triggers, none
        // joined a publication, and no function or change table was made.
        assert_eq!(
            count(
                admin,
                "SELECT (SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
                         WHERE c.relnamespace = current_schema()::regnamespace \
                         AND t.tgname LIKE '%datastore%') \
                      + (SELECT count(*) FROM pg_publication_rel r JOIN pg_class c \
                         ON c.oid = r.prrelid \
                         WHERE c.relnamespace = current_schema()::regnamespace) \
                      + (SELECT count(*) FROM pg_proc \
                         WHERE pronamespace = current_schema()::regnamespace) \
                      + (SELECT count(*) FROM pg_class \
                         WHERE relnamespace = current_schema()::regnamespace \
                         AND relname = 'datastore_change_payloads') AS n",
            ),
            0,
            "{feed:?}"
        );
        let posts = store.observe::<Post>().unwrap();
        let saved = store.save(post("still observed")).unwrap();
        assert_eq!(next(&posts), (Op::Insert, saved), "{feed:?}");

        // A partitioned table an earlier version set up as it sets any table up (it had no
        // partition yet): still refused, by name.
        admin
            .batch_execute(
                "DROP TABLE log; \
                 CREATE TABLE events (id INTEGER NOT NULL, at DATE NOT NULL) \
                     PARTITION BY RANGE (at);",
            )
            .unwrap();
        let earlier_set_up = match feed {
            ChangeFeed::Triggers => {
                "CREATE TRIGGER datastore_observe_statement \
                     BEFORE INSERT OR UPDATE OR DELETE ON events \
                     FOR EACH STATEMENT EXECUTE FUNCTION datastore_notify_statement(); \
                 CREATE TRIGGER datastore_observe AFTER INSERT OR UPDATE ON events \
                     FOR EACH ROW EXECUTE FUNCTION datastore_notify('statement'); \
                 CREATE TRIGGER zz_datastore_observe_delete BEFORE DELETE ON events \
                     FOR EACH ROW EXECUTE FUNCTION datastore_notify('statement'); \
                 CREATE TRIGGER datastore_observe_truncate BEFORE TRUNCATE ON events \
                     FOR EACH STATEMENT EXECUTE FUNCTION datastore_notify('statement'); \
                 ALTER TABLE events ENABLE ALWAYS TRIGGER datastore_observe_statement; \
                 ALTER TABLE events ENABLE ALWAYS TRIGGER datastore_observe; \
                 ALTER TABLE events ENABLE ALWAYS TRIGGER zz_datastore_observe_delete; \
                 ALTER TABLE events ENABLE ALWAYS TRIGGER datastore_observe_truncate;"
            }
            _ => {
                "ALTER TABLE events REPLICA IDENTITY FULL; \
                 DO $$ BEGIN EXECUTE format('ALTER PUBLICATION %I ADD TABLE events', \
                     'datastore_' || md5(current_schema())); END $$; \
                 CREATE TRIGGER zz_datastore_observe_cascade BEFORE DELETE ON events \
                     FOR EACH ROW WHEN (pg_trigger_depth() > 0) \
                     EXECUTE FUNCTION datastore_mark_cascade();"
            }
        };
        admin.batch_execute(earlier_set_up).unwrap();
        let message = refused(store);
        assert!(message.contains("`events` is one"), "{feed:?}: {message}");
    });
}

/// An observed table attached as a partition of a partitioned table is no longer followed:
/// its subscription ends with `FeedLost` naming it (its own triggers, or its publication
/// membership, are not taken as reporting), and the next subscription to it is refused by
/// name.
#[test]
fn on_postgres_an_observed_table_made_a_partition_ends_the_feed_and_is_refused_after() {
    on_each_feed(|feed, store, admin| {
        let posts = store.observe::<Post>().unwrap();
        let saved = store.save(post("before")).unwrap();
        assert_eq!(next(&posts), (Op::Insert, saved), "{feed:?}");
        admin
            .batch_execute(
                "CREATE TABLE all_posts (LIKE posts) PARTITION BY LIST (status); \
                 ALTER TABLE all_posts ATTACH PARTITION posts DEFAULT;",
            )
            .unwrap();
        match posts.recv_timeout(WAIT) {
            Some(Observed::FeedLost { reason }) => {
                assert!(reason.contains("posts"), "{feed:?}: {reason}")
            }
            other => panic!("{feed:?}: expected FeedLost, got {other:?}"),
        }
        match store.observe::<Post>() {
            Err(Error::Unsupported(message)) => assert!(
                message.contains("`posts` is a partition of `all_posts`"),
                "{feed:?}: {message}"
            ),
            other => panic!("{feed:?}: expected Unsupported, got {:?}", other.err()),
        }
    });
}

/// Runs `test` on a store of each feed ([`common::each_feed`]), with an admin connection to
/// its schema.
fn on_each_feed(test: impl Fn(ChangeFeed, &Store, &mut PgConnection)) {
    for (feed, db) in common::each_feed() {
        let url = db.schema.as_ref().expect("a schema").url();
        let mut admin = PgConnection::establish(url).unwrap();
        test(feed, &db.store, &mut admin);
    }
}

/// A database of the server in an encoding of the test's (LATIN1, SQL_ASCII), made for one
/// test and dropped with it, however the test ends (named with the time it was made: what a
/// killed run left is dropped by the next after ten minutes).
struct EncodedDatabase {
    admin: PgConnection,
    name: String,
    /// Its URL: the configured one's, with this database.
    url: String,
}

/// What names an [`EncodedDatabase`], with the time it was made (seconds since the epoch).
const ENCODED_PREFIX: &str = "datastore_encoded_";

impl EncodedDatabase {
    fn new(url: &str, encoding: &str) -> Self {
        let mut admin = PgConnection::establish(url).unwrap();
        let made = Replica::now();
        for old in texts(
            &mut admin,
            &format!(
                "SELECT datname::text AS text FROM pg_database \
                 WHERE starts_with(datname, '{ENCODED_PREFIX}')"
            ),
        ) {
            let stale = old
                .strip_prefix(ENCODED_PREFIX)
                .and_then(|rest| rest.split('_').next()?.parse::<u64>().ok())
                .is_some_and(|at| made.saturating_sub(at) > 600);
            if stale {
                let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {old} WITH (FORCE)"));
            }
        }
        let name = format!(
            "{ENCODED_PREFIX}{made}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {name} ENCODING '{encoding}' LC_COLLATE 'C' LC_CTYPE 'C' \
                 TEMPLATE template0"
            ))
            .unwrap();
        let (address, query) = url.split_once('?').unwrap_or((url, ""));
        let server = address.rsplit_once('/').unwrap().0;
        let url = if query.is_empty() {
            format!("{server}/{name}")
        } else {
            format!("{server}/{name}?{query}")
        };
        Self { admin, name, url }
    }

    /// One for a test of the logical feed, with a store of it (migrated, on the logical
    /// feed) and a connection of the test's own; none without a server that decodes its log.
    fn with_logical_store(encoding: &str) -> Option<(Self, Store, PgConnection)> {
        if !common::logical_decoding() {
            return None;
        }
        let database = Self::new(&common::postgres_url()?, encoding);
        let store = Store::builder(&database.url)
            .migrations(datastore::embed_migrations!())
            .change_feed(ChangeFeed::LogicalDecoding)
            .open()
            .unwrap();
        let admin = PgConnection::establish(&database.url).unwrap();
        Some((database, store, admin))
    }
}

impl Drop for EncodedDatabase {
    fn drop(&mut self) {
        // The store's listener, and its temporary slot, end a moment after the store.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self
            .admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .is_err()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The logical feed of a database whose encoding is not UTF-8 (LATIN1 here): the server
/// sends the stream's text in the encoding the replication connection asks for, which is
/// UTF-8, as Diesel asks on the store's connections. Without asking, a row holding `é`
/// arrived in LATIN1, was refused as not UTF-8, and ended every subscription with
/// `FeedLost`.
#[test]
fn on_postgres_the_logical_feed_of_a_latin1_database_delivers_its_text() {
    let Some((database, store, mut admin)) = EncodedDatabase::with_logical_store("LATIN1") else {
        return;
    };
    assert_eq!(
        text(
            &mut admin,
            "SELECT pg_encoding_to_char(encoding)::text AS text FROM pg_database \
             WHERE datname = current_database()"
        ),
        "LATIN1"
    );
    let posts = store.observe::<Post>().unwrap();
    let saved = store.save(post("café")).unwrap();
    assert_eq!(next(&posts), (Op::Insert, saved.clone()));
    assert_eq!(
        text(&mut admin, "SELECT title AS text FROM posts"),
        "café",
        "stored as saved"
    );
    drop((posts, store, admin));
    drop(database);
}

/// In a SQL_ASCII database text is any bytes: a value that is not UTF-8 makes its change one
/// that cannot be read (`Observed::Undecodable`, naming the column), and the feed goes on.
/// Before, the stream took it for a broken stream and ended every subscription with
/// `FeedLost`.
#[test]
fn on_postgres_a_value_that_is_not_utf8_is_one_undecodable_change_not_the_feeds_end() {
    let Some((database, store, mut admin)) = EncodedDatabase::with_logical_store("SQL_ASCII")
    else {
        return;
    };
    let posts = store.observe::<Post>().unwrap();
    // `é` in LATIN1: one byte no UTF-8 text holds alone.
    admin
        .batch_execute(
            "INSERT INTO posts (id, title, rating, status, created_at, updated_at) \
             VALUES (gen_random_uuid(), E'caf\\xe9', 1, 'Active', now(), now())",
        )
        .unwrap();
    match posts.recv_timeout(WAIT) {
        Some(Observed::Undecodable { table, reason }) => {
            assert_eq!(table, "posts");
            assert!(
                reason.contains("`title`") && reason.contains("UTF-8"),
                "{reason}"
            );
        }
        other => panic!("expected the insert, undecodable, got {other:?}"),
    }
    let saved = store.save(post("after it")).unwrap();
    assert_eq!(next(&posts), (Op::Insert, saved));
    drop((posts, store, admin));
    drop(database);
}

/// The table of the next change `everything` delivers, and its operation.
fn next_table(everything: &datastore::observe::AllSubscription) -> (String, Op) {
    match everything.recv_timeout(WAIT) {
        Some(Observed::Change(change)) => (change.table, change.op),
        other => panic!("expected a change, got {other:?}"),
    }
}

/// A row for `users`, written by hand: a table no other observed table refers to.
fn insert_user(conn: &mut PgConnection) {
    conn.batch_execute("INSERT INTO users VALUES (gen_random_uuid(), gen_random_uuid()::text)")
        .unwrap();
}

/// The server's URL, a schema of the test's with a store of it on the logical feed (migrated),
/// and a connection of the test's own to it; none without a server that decodes its log.
fn logical_schema() -> Option<(String, common::PgSchema, Store, PgConnection)> {
    if !common::logical_decoding() {
        return None;
    }
    let db = common::TestDb::postgres_with(ChangeFeed::LogicalDecoding)?;
    let admin = PgConnection::establish(db.url()).unwrap();
    Some((common::postgres_url()?, db.schema?, db.store, admin))
}

/// A table moved out of the store's schema (`ALTER TABLE .. SET SCHEMA`) stays in the schema's
/// publication, and the stream names it by the schema it is in: its changes are not the store's
/// table's, and arrive again once it is moved back (the same table, described again). Before,
/// the feed dropped the schema the stream names, and delivered the other schema's `posts` as
/// the store's.
#[test]
fn on_postgres_a_table_moved_to_another_schema_is_not_delivered_as_the_stores() {
    let Some((url, schema, store, mut admin)) = logical_schema() else {
        return;
    };
    let other = common::PgSchema::new(&url);
    let everything = store.observe_all().unwrap();
    store.save(post("before the move")).unwrap();
    assert_eq!(next_table(&everything), ("posts".into(), Op::Insert));

    admin
        .batch_execute(&format!("ALTER TABLE posts SET SCHEMA {}", other.name()))
        .unwrap();
    admin
        .batch_execute(&format!(
            "INSERT INTO {}.posts (id, title, rating, status, created_at, updated_at) \
             VALUES (gen_random_uuid(), 'moved', 1, 'Active', now(), now())",
            other.name()
        ))
        .unwrap();
    insert_user(&mut admin);
    assert_eq!(next_table(&everything), ("users".into(), Op::Insert));

    admin
        .batch_execute(&format!(
            "ALTER TABLE {}.posts SET SCHEMA {}",
            other.name(),
            schema.name()
        ))
        .unwrap();
    store.save(post("moved back")).unwrap();
    assert_eq!(next_table(&everything), ("posts".into(), Op::Insert));
    drop((everything, store));
}

/// A store whose role may not read a table of its schema (`SELECT`) is not handed its rows:
/// the schema's publication is shared by every role observing it, so another store's tables
/// are in its stream, but `observe_all` delivers only the tables its role may read, and
/// observing such a table by model is refused with the server's permission denied. Before,
/// `observe_all` delivered the other tables' rows, and `observe::<User>` (the role may insert
/// users, not read them) subscribed.
#[test]
fn on_postgres_a_store_is_not_handed_rows_its_role_may_not_read() {
    let Some((url, schema, owner, mut admin)) = logical_schema() else {
        return;
    };
    // The owner's store sets every table up for the feed.
    drop(owner.observe_all().unwrap());
    let role = Squatter::new(&url, schema.name());
    let name = &role.name;
    admin
        .batch_execute(&format!(
            "ALTER ROLE {name} REPLICATION; GRANT SELECT ON posts TO {name}; \
             GRANT INSERT ON users TO {name};"
        ))
        .unwrap();
    let store = Store::builder(format!(
        "{}?options=-csearch_path%3D{}",
        role.url,
        schema.name()
    ))
    .change_feed(ChangeFeed::LogicalDecoding)
    .open()
    .unwrap();
    let everything = store.observe_all().unwrap();
    insert_user(&mut admin);
    owner.save(post("readable")).unwrap();
    assert_eq!(next_table(&everything), ("posts".into(), Op::Insert));
    match store.observe::<common::models::User>() {
        Err(Error::Database(e)) => assert!(e.to_string().contains("permission denied"), "{e}"),
        other => panic!("expected permission denied, got {:?}", other.map(|_| ())),
    }

    // Read no longer: its subscription ends, told, rather than hear nothing more.
    let posts = store.observe::<Post>().unwrap();
    admin
        .batch_execute(&format!("REVOKE SELECT ON posts FROM {name}"))
        .unwrap();
    owner.save(post("no longer readable")).unwrap();
    insert_user(&mut admin);
    match posts.recv_timeout(WAIT) {
        Some(Observed::FeedLost { reason }) => assert!(reason.contains("`posts`"), "{reason}"),
        other => panic!("expected the feed lost, got {other:?}"),
    }
    // The subscription of every table received the table's changes: it ends too (before, it
    // went on, hearing nothing more of `posts`).
    match everything.recv_timeout(WAIT) {
        Some(Observed::FeedLost { reason }) => assert!(reason.contains("`posts`"), "{reason}"),
        other => panic!("expected the feed lost, got {other:?}"),
    }
    drop((posts, everything, store, owner));
    drop(role);
}

/// A typed subscription refused because the store's role may not read its table (`SELECT`)
/// sets nothing up, on either feed: the table gets no trigger and joins no publication, and no
/// function, change table, publication or listener is made for it. The role owns the table (it
/// could set it up, and a readable table beside it is set up and observed after). Before, the
/// subscription set the table up and started the listener, and was refused only after.
#[test]
fn on_postgres_a_subscription_refused_for_want_of_select_sets_nothing_up() {
    on_each_feed_as_the_tables_owner(|feed, store, admin| {
        let refused = |result: datastore::Result<()>| match result {
            Err(Error::Database(e)) => {
                assert!(e.to_string().contains("permission denied"), "{feed:?}: {e}")
            }
            other => panic!("{feed:?}: expected permission denied, got {other:?}"),
        };
        let (result, statements) =
            common::trace::statements(|| store.observe::<common::models::User>().map(drop));
        refused(result);
        assert_eq!(catalog_reads(&statements), 1, "{feed:?}: {statements:#?}");
        assert_eq!(observe_set_up(admin), NOTHING_SET_UP, "{feed:?}");
        refused(
            store
                .observe_id::<common::models::User>(&Id::new())
                .map(drop),
        );
        refused(store.live::<common::models::User>().subscribe().map(drop));
        // A live query's tables too, its first read not yet made.
        refused(store.observe_query::<common::models::User>(|q| q).map(drop));
        assert_eq!(observe_set_up(admin), NOTHING_SET_UP, "{feed:?}");

        // The readable table is set up and observed; the unreadable one still is not set up.
        let posts = store.observe::<Post>().unwrap();
        let saved = store.save(post("readable")).unwrap();
        assert_eq!(next(&posts), (Op::Insert, saved), "{feed:?}");
        assert_eq!(tables_set_up(admin), ["posts"], "{feed:?}");
    });
}

/// A typed subscription refused because its table lacks a column of its model
/// (`MigrationFailure::MissingColumn`) sets nothing up, on either feed, whether it is a model's
/// subscription or a live query whose other table is fine. Before, the subscription set the
/// tables up and started the listener, and was refused only after.
#[test]
fn on_postgres_a_subscription_refused_for_a_missing_column_sets_nothing_up() {
    on_each_feed_as_the_tables_owner(|feed, store, admin| {
        admin
            .batch_execute("ALTER TABLE comments DROP COLUMN author_id")
            .unwrap();
        let refused = |result: datastore::Result<()>| match result {
            Err(Error::Migration {
                failure: MigrationFailure::MissingColumn { table, column },
                ..
            }) => assert_eq!(
                (table.as_str(), column.as_str()),
                ("comments", "author_id"),
                "{feed:?}"
            ),
            other => panic!("{feed:?}: expected the missing column, got {other:?}"),
        };
        let (result, statements) =
            common::trace::statements(|| store.observe::<Comment>().map(drop));
        refused(result);
        assert_eq!(catalog_reads(&statements), 1, "{feed:?}: {statements:#?}");
        assert_eq!(observe_set_up(admin), NOTHING_SET_UP, "{feed:?}");
        refused(store.observe_where::<Comment>(|_| true).map(drop));
        refused(
            store
                .live::<Post>()
                .load(Post::COMMENTS)
                .subscribe()
                .map(drop),
        );
        assert_eq!(observe_set_up(admin), NOTHING_SET_UP, "{feed:?}");

        let posts = store.observe::<Post>().unwrap();
        let saved = store.save(post("fine")).unwrap();
        assert_eq!(next(&posts), (Op::Insert, saved), "{feed:?}");
        assert_eq!(tables_set_up(admin), ["posts"], "{feed:?}");
    });
}

/// On PostgreSQL, where `"Title"` and `title` are two columns, a table whose column is
/// `"Title"` lacks the model's `title`: its subscription is refused, on either feed (SQLite,
/// which names columns without regard to ASCII case, observes it).
#[test]
fn on_postgres_a_column_under_another_case_of_its_name_is_missing() {
    on_each_feed(|feed, store, admin| {
        admin
            .batch_execute("ALTER TABLE posts RENAME COLUMN title TO \"Title\"")
            .unwrap();
        match store.observe::<Post>() {
            Err(Error::Migration {
                failure: MigrationFailure::MissingColumn { table, column },
                ..
            }) => assert_eq!(
                (table.as_str(), column.as_str()),
                ("posts", "title"),
                "{feed:?}"
            ),
            other => panic!(
                "{feed:?}: expected the missing column, got {:?}",
                other.err()
            ),
        }
    });
}

/// How many of `statements` read the catalog (the columns, the privilege, the schema).
fn catalog_reads(statements: &[String]) -> usize {
    statements
        .iter()
        .filter(|sql| {
            ["pg_class", "information_schema", "current_schema"]
                .iter()
                .any(|catalog| sql.contains(catalog))
        })
        .count()
}

/// What [`observe_set_up`] finds in a schema where observe set nothing up.
const NOTHING_SET_UP: [(&str, i64); 7] = [
    ("datastore triggers", 0),
    ("tables in a publication", 0),
    ("publications", 0),
    ("full replica identities", 0),
    ("functions", 0),
    ("change tables", 0),
    ("listeners", 0),
];

/// How many of each thing either feed sets up there are in the schema of `admin` (its
/// tables' triggers and publication membership, and what observing any table makes).
fn observe_set_up(admin: &mut PgConnection) -> [(&'static str, i64); 7] {
    NOTHING_SET_UP.map(|(what, _)| {
        let sql = match what {
            "datastore triggers" => {
                "SELECT count(*) AS n FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
                 WHERE c.relnamespace = current_schema()::regnamespace \
                 AND t.tgname LIKE '%datastore%'"
            }
            "tables in a publication" => {
                "SELECT count(*) AS n FROM pg_publication_tables \
                 WHERE schemaname = current_schema()"
            }
            "publications" => {
                "SELECT count(*) AS n FROM pg_publication \
                 WHERE pubname = 'datastore_' || md5(current_schema())"
            }
            "full replica identities" => {
                "SELECT count(*) AS n FROM pg_class \
                 WHERE relnamespace = current_schema()::regnamespace AND relreplident = 'f'"
            }
            "functions" => {
                "SELECT count(*) AS n FROM pg_proc \
                 WHERE pronamespace = current_schema()::regnamespace"
            }
            "change tables" => {
                "SELECT count(*) AS n FROM pg_class \
                 WHERE relnamespace = current_schema()::regnamespace \
                 AND relname = 'datastore_change_payloads'"
            }
            _ => {
                "SELECT count(*) AS n FROM pg_stat_activity \
                 WHERE application_name = 'datastore listener ' || md5(current_schema())"
            }
        };
        (what, count(admin, sql))
    })
}

/// The tables of the schema of `admin` that have a datastore trigger or are in a publication,
/// by name.
fn tables_set_up(admin: &mut PgConnection) -> Vec<String> {
    texts(
        admin,
        "SELECT c.relname::text AS text FROM pg_class c \
         WHERE c.relnamespace = current_schema()::regnamespace \
         AND (EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid \
                      AND t.tgname LIKE '%datastore%' AND c.relname <> 'datastore_change_payloads') \
              OR EXISTS (SELECT 1 FROM pg_publication_tables p \
                         WHERE p.schemaname = current_schema() AND p.tablename = c.relname)) \
         ORDER BY 1",
    )
}

/// Runs `test` for each feed the server offers, on a schema of its own migrated like the
/// blog's, with a store of another role (not a superuser) on that feed, which owns `posts`,
/// `comments` and `users` but may not read `users` (`SELECT` revoked), may create in the schema
/// and the database (the trigger feed's functions and change table, the logical feed's
/// publication) and may replicate; and with an admin connection to the schema.
fn on_each_feed_as_the_tables_owner(test: impl Fn(ChangeFeed, &Store, &mut PgConnection)) {
    let Some(url) = common::postgres_url() else {
        return;
    };
    for feed in [ChangeFeed::LogicalDecoding, ChangeFeed::Triggers] {
        if feed == ChangeFeed::LogicalDecoding && !common::logical_decoding() {
            continue;
        }
        let schema = common::PgSchema::new(&url);
        drop(common::trigger_feed_store(schema.url()));
        let role = Squatter::new(&url, schema.name());
        // Dropped in this order however the test ends: the schema first, as the role's
        // tables have dependents (foreign keys) of the admin's, which keep its drop from
        // dropping them.
        let dropped = (schema, role);
        let (schema, role) = (&dropped.0, &dropped.1);
        let name = &role.name;
        let mut admin = PgConnection::establish(schema.url()).unwrap();
        // Grants on the database race with other tests' ("tuple concurrently updated").
        let grant = format!(
            "DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO {name}', \
             current_database()); END $$"
        );
        let mut tries = 0;
        while let Err(e) = admin.batch_execute(&grant) {
            tries += 1;
            assert!(tries < 20, "{e}");
            std::thread::sleep(Duration::from_millis(50));
        }
        admin
            .batch_execute(&format!(
                "ALTER ROLE {name} REPLICATION; \
                 ALTER TABLE posts OWNER TO {name}; ALTER TABLE comments OWNER TO {name}; \
                 ALTER TABLE users OWNER TO {name}; REVOKE SELECT ON users FROM {name};"
            ))
            .unwrap();
        assert_eq!(observe_set_up(&mut admin), NOTHING_SET_UP, "{feed:?}");
        let store = Store::builder(format!(
            "{}?options=-csearch_path%3D{}",
            role.url,
            schema.name()
        ))
        .change_feed(feed)
        .open()
        .unwrap();
        test(feed, &store, &mut admin);
        drop((store, admin, dropped));
    }
}

/// A table whose name holds the dollar-quote tag an earlier version wrapped each table's
/// set-up in (`$add$`): the logical feed's set-up quotes with a tag the name does not hold,
/// so the table is set up (before, the quote ended inside the name: a syntax error) and its
/// rows arrive.
#[test]
fn on_postgres_a_table_named_with_a_dollar_quote_tag_is_observed_by_logical_decoding() {
    if !common::logical_decoding() {
        return;
    }
    let Some(db) = common::TestDb::postgres_with(ChangeFeed::LogicalDecoding) else {
        return;
    };
    let mut admin = PgConnection::establish(db.url()).unwrap();
    let _schema = db.schema;
    let store = db.store;
    admin
        .batch_execute(r#"CREATE TABLE "x$add$" (id INTEGER PRIMARY KEY, note TEXT NOT NULL)"#)
        .unwrap();
    let everything = store.observe_all().unwrap();
    admin
        .batch_execute(r#"INSERT INTO "x$add$" VALUES (1, 'quoted')"#)
        .unwrap();
    match everything.recv_timeout(WAIT) {
        Some(Observed::Change(change)) => assert_eq!(
            (change.table.as_str(), change.op, change.values),
            (
                "x$add$",
                Op::Insert,
                vec![RawValue::Integer(1), RawValue::Text("quoted".into())]
            )
        ),
        other => panic!("expected the insert, got {other:?}"),
    }
}

/// A URL ending in `&` (or `?`), which libpq takes for the store's connections, takes for the
/// logical feed's replication connection too: the feed's own parameters follow the URL's
/// without an empty one between (libpq refuses `&&`: the feed could not start before).
#[test]
fn on_postgres_a_url_ending_in_an_ampersand_starts_the_logical_feed() {
    if !common::logical_decoding() {
        return;
    }
    let Some(url) = common::postgres_url() else {
        return;
    };
    let schema = common::PgSchema::new(&url);
    let store = Store::builder(format!("{}&", schema.url()))
        .migrations(datastore::embed_migrations!())
        .change_feed(ChangeFeed::LogicalDecoding)
        .open()
        .unwrap();
    let posts = store.observe::<Post>().unwrap();
    let saved = store.save(post("after an ampersand")).unwrap();
    assert_eq!(next(&posts), (Op::Insert, saved));
}

/// A server that goes silent (its host gone, a network partition) is found gone within about
/// a minute, not after two hours: every connection of the store, the change feeds' listeners
/// above all (they only wait, and their subscribers hear nothing until they fail), probes a
/// silent server after 30 s. Seen in the kernel's own table of this machine's TCP sockets:
/// the keepalive timer of a pooled connection and of each listener connection (the logical
/// feed's control connection, unnamed, is made by the same `establish_postgres` and not read
/// here), at most 30 s away (7,200 s, the system's default, before).
#[test]
fn on_postgres_every_connection_of_a_store_probes_a_silent_server_within_a_minute() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    for (feed, db) in common::each_feed() {
        let _subscription = db.store.observe::<Post>().unwrap();
        let mut admin = PgConnection::establish(db.url()).unwrap();
        let listeners = client_ports(
            &mut admin,
            "SELECT client_port AS port FROM pg_stat_activity \
             WHERE application_name = 'datastore listener ' || md5(current_schema())",
        );
        let pooled = match &mut *db.store.conn().unwrap() {
            datastore::AnyConnection::Postgres(conn) => {
                client_ports(conn, "SELECT inet_client_port() AS port")
            }
            _ => unreachable!("a PostgreSQL store"),
        };
        if pooled.is_empty() {
            println!("NOTE: {url} is reached over a Unix socket, which has no keepalives: not run");
            return;
        }
        assert!(!listeners.is_empty(), "{feed:?}: no listener found");
        for port in pooled.into_iter().chain(listeners) {
            let Some(seconds) = keepalive_due_in(port) else {
                println!(
                    "NOTE: the server sees port {port}, which no socket of this machine has \
                     (a proxy or NAT between): not run"
                );
                return;
            };
            assert!(
                seconds <= 30.5,
                "{feed:?}: the connection from port {port} probes a silent server in {seconds} s"
            );
        }
    }
}

/// The client ports the query `sql` reads (column `port`, none for a Unix socket).
fn client_ports(conn: &mut PgConnection, sql: &str) -> Vec<u16> {
    #[derive(QueryableByName)]
    struct Port {
        #[diesel(sql_type = datastore::diesel::sql_types::Nullable<datastore::diesel::sql_types::Integer>)]
        port: Option<i32>,
    }
    datastore::diesel::sql_query(sql)
        .load::<Port>(conn)
        .unwrap()
        .into_iter()
        .filter_map(|row| Some(u16::try_from(row.port?).unwrap()))
        .collect()
}

/// In how many seconds the kernel sends the first keepalive probe on this machine's TCP
/// socket bound to local port `port`, as `/proc/net/tcp` shows its timer (`tr` 2, the
/// keepalive timer, due in `tm->when` clock ticks of 1/100 s). Read again while another
/// timer runs (a retransmission, while a query is on its way). None if no socket of this
/// machine has that port (the server is reached through a proxy or NAT, which it sees instead).
fn keepalive_due_in(port: u16) -> Option<f64> {
    let local = format!(":{port:04X}");
    let deadline = Instant::now() + WAIT;
    loop {
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap()
            + &std::fs::read_to_string("/proc/net/tcp6").unwrap_or_default();
        let line = table.lines().find(|line| {
            line.split_whitespace()
                .nth(1)
                .is_some_and(|l| l.ends_with(&local))
        })?;
        let timer = line.split_whitespace().nth(5).unwrap();
        let (kind, when) = timer.split_once(':').unwrap();
        if kind == "02" {
            return Some(u64::from_str_radix(when, 16).unwrap() as f64 / 100.0);
        }
        assert!(
            Instant::now() < deadline,
            "the socket on port {port} has no keepalive timer: {line}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// With `standard_conforming_strings` off (a setting any session, role or database may make),
/// PostgreSQL reads a backslash in a plain string literal as an escape: a schema whose name
/// holds a quote and backslashes, one at its end, is still the one each feed sets itself up in
/// (the trigger feed's change table and triggers, the logical feed's publication), and the
/// changes arrive intact. `observe_all` leaves out Diesel's tables (`__diesel…`) only, not one
/// whose name has other letters in their place (`_` would be any letter without its
/// backslash).
#[test]
fn on_postgres_a_schema_named_with_backslashes_is_observed_with_standard_conforming_strings_off() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    let feeds = [ChangeFeed::Triggers, ChangeFeed::LogicalDecoding];
    for feed in feeds
        .into_iter()
        .filter(|&feed| feed != ChangeFeed::LogicalDecoding || common::logical_decoding())
    {
        let schema = common::PgSchema::with_suffix(&url, r#"\'x"\"#);
        let separator = if url.contains('?') { '&' } else { '?' };
        let store = Store::builder(format!(
            "{url}{separator}options=-cstandard_conforming_strings%3Doff"
        ))
        .postgres_schema(schema.name())
        .migrations(datastore::embed_migrations!())
        .change_feed(feed)
        .open()
        .unwrap();
        let posts = store.observe::<Post>().unwrap();
        let saved = store.save(post(r"C:\dir\ it's")).unwrap();
        assert_eq!(next(&posts), (Op::Insert, saved), "{feed:?}");

        let mut conn = store.conn().unwrap();
        conn.batch_execute("CREATE TABLE nodiesel (id INTEGER PRIMARY KEY)")
            .unwrap();
        let everything = store.observe_all().unwrap();
        conn.batch_execute("INSERT INTO nodiesel VALUES (1)")
            .unwrap();
        match everything.recv_timeout(WAIT) {
            Some(Observed::Change(change)) => assert_eq!(
                (change.table.as_str(), change.op, change.values),
                ("nodiesel", Op::Insert, vec![RawValue::Integer(1)]),
                "{feed:?}"
            ),
            other => panic!("{feed:?}: expected the insert into nodiesel, got {other:?}"),
        }
    }
}
