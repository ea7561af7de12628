//! On PostgreSQL, the change feed is private: a role that may only connect to the database
//! can `LISTEN` on the store's channel and `NOTIFY` on it, but learns no value or key of an
//! observed row from it, and nothing it sends reaches a subscriber.

mod common;

use std::time::{Duration, Instant};

use common::models::Post;
use datastore::diesel::connection::SimpleConnection;
use datastore::diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use datastore::observe::{Observed, Op, Subscription};
use datastore::prelude::*;

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(300);

/// A role of the test's own with only CONNECT on the database (and USAGE on the test's schema,
/// so that only the privileges of the observe machinery's own objects stand in its way),
/// dropped when the test ends, passing or not.
struct Spy {
    admin: PgConnection,
    name: String,
    url: String,
}

impl Spy {
    fn new(admin_url: &str, schema: &str) -> Self {
        let mut admin = PgConnection::establish(admin_url).unwrap();
        let name = format!("datastore_spy_{}", uuid::Uuid::new_v4().simple());
        let password = uuid::Uuid::new_v4().simple().to_string();
        admin
            .batch_execute(&format!(
                // Grants on the database update its one catalog row: made at once by the tests
                // running side by side, the server refuses all but one ("tuple concurrently
                // updated"); a lock of the transaction's makes them take turns.
                "BEGIN;
                 SELECT pg_advisory_xact_lock(hashtext('datastore_spy_grants'));
                 CREATE ROLE {name} LOGIN PASSWORD '{password}';
                 DO $$ BEGIN EXECUTE format('GRANT CONNECT ON DATABASE %I TO {name}', current_database()); END $$;
                 GRANT USAGE ON SCHEMA {schema} TO {name};
                 COMMIT;"
            ))
            .unwrap();
        // The same server and database, as this role.
        let (scheme, rest) = admin_url.split_once("://").unwrap();
        let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        let url = format!("{scheme}://{name}:{password}@{host}");
        Self { admin, name, url }
    }

    fn connect(&self) -> PgConnection {
        PgConnection::establish(&self.url).unwrap()
    }
}

impl Drop for Spy {
    fn drop(&mut self) {
        let name = &self.name;
        let _ = self.admin.batch_execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{name}';
             BEGIN;
             SELECT pg_advisory_xact_lock(hashtext('datastore_spy_grants'));
             DROP OWNED BY {name}; DROP ROLE {name};
             COMMIT;"
        ));
    }
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = datastore::diesel::sql_types::Text)]
    name: String,
}

/// Everything that arrives on `conn` within `quiet` of the last notification.
fn drain(conn: &mut PgConnection, quiet: Duration) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < quiet {
        let mut any = false;
        while let Some(n) = conn.notifications_iter().next() {
            payloads.push(n.unwrap().payload);
            any = true;
        }
        if any {
            last = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    payloads
}

fn next(sub: &Subscription<Post>) -> (Op, Post) {
    match sub.recv_timeout(WAIT) {
        Some(Observed::Change(c)) => (c.op, c.element),
        other => panic!("expected a change, got {other:?}"),
    }
}

fn assert_quiet(sub: &Subscription<Post>) {
    if let Some(extra) = sub.recv_timeout(QUIET) {
        panic!("expected nothing more, got {extra:?}");
    }
}

#[test]
fn on_postgres_a_role_that_can_only_connect_learns_nothing_and_forges_nothing() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    let schema = common::PgSchema::new(&url);
    let store = common::trigger_feed_store(schema.url());
    let posts = store.observe::<Post>().unwrap();
    let schema_name: String = diesel::sql_query("SELECT current_schema()::text AS name")
        .load::<Name>(&mut *store.conn().unwrap())
        .unwrap()
        .remove(0)
        .name;
    let spy = Spy::new(&url, &schema_name);
    let mut spy_conn = spy.connect();
    let channel: String = diesel::sql_query("SELECT 'datastore:' || md5($1) AS name")
        .bind::<diesel::sql_types::Text, _>(&schema_name)
        .load::<Name>(&mut spy_conn)
        .unwrap()
        .remove(0)
        .name;
    spy_conn
        .batch_execute(&format!("LISTEN \"{channel}\""))
        .unwrap();

    // The spy cannot read the change table, nor run the trigger function.
    assert!(
        spy_conn
            .batch_execute(&format!(
                "SELECT * FROM {schema_name}.datastore_change_payloads"
            ))
            .is_err(),
        "the change table is its owner's"
    );
    let may_run: Vec<Name> = diesel::sql_query(format!(
        "SELECT has_function_privilege('{schema_name}.datastore_notify()', 'EXECUTE')::text AS name"
    ))
    .load(&mut spy_conn)
    .unwrap();
    assert_eq!(
        may_run[0].name, "false",
        "the trigger function is its owner's"
    );

    // Writes whose every value and key is distinctive.
    let secret = uuid::Uuid::new_v4().simple().to_string();
    let saved = store
        .save(Post {
            title: format!("title-{secret}"),
            body: Some(format!("body-{secret}")),
            rating: 918_273,
            ..Post::default()
        })
        .unwrap();
    let updated = store
        .save(Post {
            title: format!("edited-{secret}"),
            ..saved.clone()
        })
        .unwrap();
    let large = store
        .save(Post {
            title: format!("large-{secret}"),
            body: Some(format!("{secret} ").repeat(1000)),
            ..Post::default()
        })
        .unwrap();
    store.delete(&updated).unwrap();
    let expected = [
        (Op::Insert, saved.clone()),
        (Op::Update, updated.clone()),
        (Op::Insert, large.clone()),
        (Op::Delete, updated.clone()),
    ];
    for want in &expected {
        assert_eq!(&next(&posts), want);
    }

    let heard = drain(&mut spy_conn, QUIET);
    assert!(!heard.is_empty(), "the spy does hear the channel");
    let keys = [saved.id, large.id].map(|id| id.to_string());
    for payload in &heard {
        assert!(!payload.contains(&secret), "a value leaked: {payload}");
        assert!(!payload.contains("918273"), "a value leaked: {payload}");
        for key in &keys {
            assert!(
                !payload.contains(key.as_str()) && !payload.contains(&key.replace('-', "")),
                "a key leaked: {payload}"
            );
        }
    }

    // Forgeries: each notification heard sent again (changes, fences, markers), a change of
    // today's and yesterday's forms, guessed ids, fences and markers.
    let mut forged: Vec<String> = heard.clone();
    forged.extend([
        format!(
            r#"{{"seq":1,"xid":1,"schema":"{schema_name}","table":"posts","op":"INSERT","depth":0,"statement":"x","old":null,"new":["{}","forged",1,"Active",null,"2026-01-01T00:00:00+00:00","2026-01-01T00:00:00+00:00"]}}"#,
            Id::new()
        ),
        r#"{"stored":1}"#.to_owned(),
        r#"{"fence":1,"listener":1}"#.to_owned(),
        r#"{"marker":"x-0"}"#.to_owned(),
    ]);
    for id in 0..50 {
        forged.push(format!("{id}:{}", uuid::Uuid::new_v4()));
    }
    forged.push(format!("f:{}", uuid::Uuid::new_v4()));
    forged.push(format!("m:{}", uuid::Uuid::new_v4()));
    for payload in &forged {
        diesel::sql_query("SELECT pg_notify($1, $2)")
            .bind::<diesel::sql_types::Text, _>(&channel)
            .bind::<diesel::sql_types::Text, _>(payload)
            .execute(&mut spy_conn)
            .unwrap();
    }
    assert_quiet(&posts);

    // The stream goes on, exactly.
    let after = store.save(Post {
        title: "after".into(),
        ..Post::default()
    });
    assert_eq!(next(&posts), (Op::Insert, after.unwrap()));
    assert_quiet(&posts);
    drop(spy_conn);
}

/// Forged fences sent as fast as a role can send them do not hold back, reorder or drop a
/// change.
#[test]
fn on_postgres_a_flood_of_forged_fences_holds_nothing_back() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    let schema = common::PgSchema::new(&url);
    let store = common::trigger_feed_store(schema.url());
    let posts = store.observe::<Post>().unwrap();
    let schema_name: String = diesel::sql_query("SELECT current_schema()::text AS name")
        .load::<Name>(&mut *store.conn().unwrap())
        .unwrap()
        .remove(0)
        .name;
    let spy = Spy::new(&url, &schema_name);
    let mut spy_conn = spy.connect();
    let channel = format!("datastore:{}", md5_hex(&schema_name));
    let flooding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flood = {
        let flooding = flooding.clone();
        std::thread::spawn(move || {
            let mut sent = 0;
            while flooding.load(std::sync::atomic::Ordering::Relaxed) {
                let forged = diesel::sql_query("SELECT pg_notify($1, $2)")
                    .bind::<diesel::sql_types::Text, _>(&channel)
                    .bind::<diesel::sql_types::Text, _>(format!(
                        "f:{}",
                        uuid::Uuid::new_v4().simple()
                    ))
                    .execute(&mut spy_conn);
                if forged.is_err() {
                    break; // the test ended, and its role with it
                }
                sent += 1;
            }
            sent
        })
    };
    for i in 0..20 {
        let saved = store
            .save(Post {
                title: format!("during the flood {i}"),
                ..Post::default()
            })
            .unwrap();
        assert_eq!(next(&posts), (Op::Insert, saved), "change {i}");
    }
    flooding.store(false, std::sync::atomic::Ordering::Relaxed);
    assert!(flood.join().unwrap() > 0);
    assert_quiet(&posts);
}

/// The channel's name, as the store computes it (`datastore:` and the md5 of the schema).
fn md5_hex(text: &str) -> String {
    let url = common::postgres_url().unwrap();
    let mut conn = PgConnection::establish(&url).unwrap();
    diesel::sql_query("SELECT md5($1) AS name")
        .bind::<diesel::sql_types::Text, _>(text)
        .load::<Name>(&mut conn)
        .unwrap()
        .remove(0)
        .name
}

/// A store observing as a role that may write the tables but not read the change table (made
/// by the role that observed first) fails to subscribe, at once, rather than lose its feed.
#[test]
fn on_postgres_observing_without_rights_on_the_change_table_fails_at_once() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    let schema = common::PgSchema::new(&url);
    let owner = common::trigger_feed_store(schema.url());
    let _posts = owner.observe::<Post>().unwrap();
    let schema_name: String = diesel::sql_query("SELECT current_schema()::text AS name")
        .load::<Name>(&mut *owner.conn().unwrap())
        .unwrap()
        .remove(0)
        .name;
    let writer = Spy::new(&url, &schema_name);
    let mut admin = PgConnection::establish(&url).unwrap();
    admin
        .batch_execute(&format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON {schema_name}.posts, \
             {schema_name}.__diesel_schema_migrations TO {}",
            writer.name
        ))
        .unwrap();
    let separator = if writer.url.contains('?') { '&' } else { '?' };
    let as_writer = Store::builder(format!(
        "{}{separator}options=-csearch_path%3D{schema_name}",
        writer.url
    ))
    .open()
    .unwrap();
    as_writer.save(Post::default()).unwrap();
    let grant = |admin: &mut PgConnection, right: &str| {
        admin
            .batch_execute(&format!(
                "GRANT {right} ON {schema_name}.datastore_change_payloads TO {}",
                writer.name
            ))
            .unwrap()
    };
    for right in ["SELECT", "DELETE"] {
        match as_writer.observe::<Post>() {
            Err(e) => assert!(e.to_string().contains("permission denied"), "{e}"),
            Ok(_) => panic!("subscribed without {right} on the change table"),
        }
        grant(&mut admin, right);
    }
    let posts = as_writer.observe::<Post>().unwrap();
    let saved = as_writer.save(Post::default()).unwrap();
    assert_eq!(
        next(&posts),
        (Op::Insert, saved),
        "with both rights granted"
    );
}
