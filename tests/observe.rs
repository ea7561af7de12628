//! Observe: committed changes as typed streams, on a real SQLite database.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::models::{Comment, Post, Profile, Reaction, User};
use common::{comment, file_store};
use datastore::diesel::connection::SimpleConnection;
use datastore::observe::{Change, ChangeFeed, Observed, Op, Subscription};
use datastore::prelude::*;
use datastore::{Error, Model};

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(100);

fn post(title: &str) -> Post {
    common::post(title, 1)
}

/// The next change, failing the test if none comes.
fn next<M: Model + Clone + std::fmt::Debug>(sub: &Subscription<M>) -> Change<M> {
    match sub.recv_timeout(WAIT) {
        Some(Observed::Change(change)) => change,
        other => panic!("expected a change, got {other:?}"),
    }
}

/// Asserts that nothing (more) is delivered.
fn assert_quiet<M: Model + Clone + std::fmt::Debug>(sub: &Subscription<M>) {
    if let Some(extra) = sub.recv_timeout(QUIET) {
        panic!("expected nothing, got {extra:?}");
    }
}

per_backend! {
    each_feed fn a_bulk_insert_arrives_row_by_row(store) {
        let posts = store.observe::<Post>().unwrap();
        let inserted = store
            .insert_all((0..3).map(|i| post(&format!("bulk {i}"))).collect())
            .unwrap();
        for row in inserted {
            let change = next(&posts);
            assert_eq!((change.op, change.element), (Op::Insert, row));
        }
        assert_quiet(&posts);
    }
}

per_backend! {
    each_feed fn a_bulk_insert_that_fails_in_its_second_statement_delivers_nothing(store) {
        let posts = store.observe::<Post>().unwrap();
        // 5,000 posts take two statements; the last one repeats the first's key.
        let mut rows: Vec<Post> = (0..5_000).map(|i| post(&format!("bulk {i}"))).collect();
        rows.push(rows[0].clone());
        assert!(store.insert_all(rows).is_err());
        assert_quiet(&posts);
        let saved = store.save(post("after")).unwrap();
        assert_eq!(next(&posts).element, saved, "the stream goes on");
    }
}

per_backend! {
    each_feed fn inserts_updates_and_deletes_arrive_with_the_whole_row(store) {
        let posts = store.observe::<Post>().unwrap();
        let saved = store.save(post("hello")).unwrap();
        assert_eq!(
            next(&posts),
            Change {
                model: "Post",
                op: Op::Insert,
                element: saved.clone()
            }
        );

        let mut edited = saved.clone();
        edited.title = "edited".into();
        let edited = store.save(edited).unwrap();
        assert_eq!(
            next(&posts),
            Change {
                model: "Post",
                op: Op::Update,
                element: edited.clone()
            }
        );

        store.delete(&edited).unwrap();
        assert_eq!(
            next(&posts),
            Change {
                model: "Post",
                op: Op::Delete,
                element: edited
            }
        );
        assert_quiet(&posts);
    }
}

per_backend! {
    each_feed fn an_update_that_changes_nothing_delivers_nothing(store) {
        let saved = store.save(post("same")).unwrap();
        let posts = store.observe::<Post>().unwrap();
        store.save(saved.clone()).unwrap();
        store
            .conn()
            .unwrap()
            .batch_execute("UPDATE posts SET title = title")
            .unwrap();
        assert_quiet(&posts);
    }
}

per_backend! {
    each_feed fn a_rolled_back_transaction_delivers_nothing(store) {
        let posts = store.observe::<Post>().unwrap();
        let result: datastore::Result<()> = store.transaction(|tx| {
            tx.save(post("doomed"))?;
            Err(Error::NotFound {
                table: "x".into(),
                key: "y".into(),
            })
        });
        assert!(result.is_err());
        assert_quiet(&posts);
    }
}

per_backend! {
    each_feed fn a_savepoint_rolled_back_inside_a_committed_transaction_delivers_only_the_rest(store) {
        let posts = store.observe::<Post>().unwrap();
        let kept = store
            .transaction(|tx| {
                let kept = tx.save(post("kept"))?;
                let _ = diesel::Connection::transaction::<(), Error, _>(tx, |tx| {
                    tx.save(post("rolled back"))?;
                    Err(Error::NotFound {
                        table: "x".into(),
                        key: "y".into(),
                    })
                });
                Ok(kept)
            })
            .unwrap();
        assert_eq!(next(&posts).element, kept);
        assert_quiet(&posts);
    }
}

// SQLite undoes a failed statement alone; PostgreSQL aborts the transaction, so there the same
// holds only inside a savepoint (the next test).
per_backend! {
    sqlite_only fn a_statement_that_fails_half_way_delivers_nothing_of_its_undone_rows(store) {
        let users = store.observe::<User>().unwrap();
        store
            .transaction(|tx| {
                tx.save(User { username: "taken".into(), ..User::default() })?;
                // Row 1 is inserted, row 2 breaks the unique constraint: the statement is undone.
                let failed = tx.batch_execute(
                    "INSERT INTO users (id, username) VALUES ('00000000-0000-0000-0000-000000000001', 'fresh'), \
                     ('00000000-0000-0000-0000-000000000002', 'taken')",
                );
                assert!(failed.is_err());
                Ok(())
            })
            .unwrap();
        assert_eq!(next(&users).element.username, "taken");
        assert_quiet(&users);
    }
}

per_backend! {
    each_feed fn a_statement_failing_half_way_in_a_savepoint_delivers_nothing_of_its_rows(store) {
        let users = store.observe::<User>().unwrap();
        store
            .transaction(|tx| {
                tx.save(User { username: "taken".into(), ..User::default() })?;
                // Row 1 is inserted, row 2 breaks the unique constraint: the savepoint is undone.
                let failed = tx.transaction::<(), Error, _>(|tx| {
                    tx.batch_execute(
                        "INSERT INTO users (id, username) VALUES ('00000000-0000-0000-0000-000000000001', 'fresh'), \
                         ('00000000-0000-0000-0000-000000000002', 'taken')",
                    )?;
                    Ok(())
                });
                assert!(failed.is_err());
                Ok(())
            })
            .unwrap();
        assert_eq!(next(&users).element.username, "taken");
        assert_quiet(&users);
        assert_eq!(store.count::<User>().unwrap(), 1);
    }
}

per_backend! {
    each_feed fn a_cascade_delivers_each_child_before_the_parent(store) {
        let parent = store.save(post("parent")).unwrap();
        let a = store.save(comment(&parent, "a")).unwrap();
        let b = store.save(comment(&parent, "b")).unwrap();
        let all = store.observe::<Comment>().unwrap();
        let posts = store.observe::<Post>().unwrap();
        let everything = store.observe_all().unwrap();
        store.delete(&parent).unwrap();

        let mut deleted = vec![next(&all), next(&all)];
        deleted.sort_by_key(|c| c.element.content.clone());
        assert_eq!(
            deleted,
            [
                Change {
                    model: "Comment",
                    op: Op::Delete,
                    element: a
                },
                Change {
                    model: "Comment",
                    op: Op::Delete,
                    element: b
                }
            ]
        );
        assert_eq!(
            next(&posts),
            Change {
                model: "Post",
                op: Op::Delete,
                element: parent
            }
        );
        let tables: Vec<String> = (0..3)
            .map(|_| match everything.recv_timeout(WAIT) {
                Some(Observed::Change(change)) => change.table,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            tables,
            ["comments", "comments", "posts"],
            "children before the parent"
        );
    }
}

per_backend! {
    each_feed fn a_delete_without_where_is_reported_row_by_row(store) {
        for title in ["a", "b", "c"] {
            store.save(post(title)).unwrap();
        }
        let posts = store.observe::<Post>().unwrap();
        store
            .conn()
            .unwrap()
            .batch_execute("DELETE FROM posts")
            .unwrap();
        let mut titles: Vec<String> = (0..3)
            .map(|_| {
                let change = next(&posts);
                assert_eq!(change.op, Op::Delete);
                change.element.title
            })
            .collect();
        titles.sort();
        assert_eq!(titles, ["a", "b", "c"]);
        assert_quiet(&posts);
    }
}

per_backend! {
    each_feed fn the_seed_scenario_observes_comments_of_one_post(store) {
        let post_123 = store.save(post("123")).unwrap();
        let other = store.save(post("other")).unwrap();
        let id = post_123.id;
        let of_123 = store
            .observe_where(move |c: &Comment| c.post_id == id)
            .unwrap();
        store.save(comment(&post_123, "for 123")).unwrap();
        store.save(comment(&other, "elsewhere")).unwrap();
        store.save(comment(&post_123, "for 123 again")).unwrap();
        assert_eq!(next(&of_123).element.content.as_deref(), Some("for 123"));
        assert_eq!(
            next(&of_123).element.content.as_deref(),
            Some("for 123 again")
        );
        assert_quiet(&of_123);

        let one = store.observe_id::<Post>(&other.id).unwrap();
        store
            .save(Post {
                rating: 5,
                ..post_123.clone()
            })
            .unwrap();
        store
            .save(Post {
                rating: 7,
                ..other.clone()
            })
            .unwrap();
        assert_eq!(next(&one).element.rating, 7);
        assert_quiet(&one);
    }
}

per_backend! {
    each_feed fn dropping_a_subscription_unsubscribes(store) {
        let a = store.observe::<Post>().unwrap();
        let b = store.observe_all().unwrap();
        assert_eq!(store.subscriptions(), 2);
        drop(a);
        drop(b);
        assert_eq!(store.subscriptions(), 0);
        store.save(post("unobserved")).unwrap();
        let late = store.observe::<Post>().unwrap();
        assert_quiet(&late);
    }
}

/// SQLite clears a table without triggers or foreign keys in one step, without a row-by-row
/// delete (and so without the pre-update hook), for a `DELETE` without `WHERE` prepared while
/// no pre-update hook is installed. A statement prepared while nobody observed, run again
/// (Diesel keeps it prepared) after someone subscribed, must still report each row.
#[test]
fn a_delete_without_where_prepared_while_nobody_observed_is_reported_row_by_row() {
    diesel::table! {
        notes (id) {
            id -> Integer,
            body -> Text,
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let store = pool_of_one(&dir.path().join("notes.db").display().to_string());
    let mut conn = store.conn().unwrap();
    conn.batch_execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        .unwrap();
    let sqlite = as_sqlite(&mut conn);
    // Prepared (and kept) while nobody observes.
    assert_eq!(diesel::delete(notes::table).execute(sqlite).unwrap(), 0);
    sqlite
        .batch_execute("INSERT INTO notes (body) VALUES ('a'), ('b')")
        .unwrap();
    let everything = store.observe_all().unwrap();
    assert_eq!(diesel::delete(notes::table).execute(sqlite).unwrap(), 2);
    for _ in 0..2 {
        match everything.recv_timeout(WAIT) {
            Some(Observed::Change(change)) => {
                assert_eq!((change.table.as_str(), change.op), ("notes", Op::Delete));
            }
            other => panic!("expected a deleted note, got {other:?}"),
        }
    }
    assert!(everything.recv_timeout(QUIET).is_none());
}

/// A kept statement that another connection's schema change made out of date is prepared again
/// as it runs, and run again without a new start reported; the foreign-key actions of its
/// cascade then report starts under its handle, which are no new statement: the row it deleted
/// before them is delivered with the rows they deleted.
#[test]
fn a_cascade_prepared_again_as_it_runs_delivers_the_parent_with_its_children() {
    diesel::table! {
        parents (id) {
            id -> Integer,
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("family.db").display().to_string();
    let store = pool_of_one(&path);
    let mut conn = store.conn().unwrap();
    conn.batch_execute(
        "CREATE TABLE parents (id INTEGER PRIMARY KEY); \
         CREATE TABLE children (id INTEGER PRIMARY KEY, \
             parent INTEGER NOT NULL REFERENCES parents (id) ON DELETE CASCADE); \
         INSERT INTO parents VALUES (1), (2); \
         INSERT INTO children VALUES (10, 1), (20, 2), (21, 2);",
    )
    .unwrap();
    let sqlite = as_sqlite(&mut conn);
    let everything = store.observe_all().unwrap();
    let deleted = |n: usize| -> Vec<String> {
        let mut tables: Vec<String> = (0..n)
            .map(|_| match everything.recv_timeout(WAIT) {
                Some(Observed::Change(change)) => {
                    assert_eq!(change.op, Op::Delete);
                    change.table
                }
                other => panic!("expected a deleted row, got {other:?}"),
            })
            .collect();
        assert!(everything.recv_timeout(QUIET).is_none(), "nothing more");
        tables.sort();
        tables
    };
    // Prepared, and kept.
    assert_eq!(
        diesel::delete(parents::table.find(1))
            .execute(sqlite)
            .unwrap(),
        1
    );
    assert_eq!(deleted(2), ["children", "parents"]);
    <datastore::diesel::SqliteConnection as datastore::diesel::Connection>::establish(&path)
        .unwrap()
        .batch_execute("CREATE TABLE unrelated (x INTEGER)")
        .unwrap();
    assert_eq!(
        diesel::delete(parents::table.find(2))
            .execute(sqlite)
            .unwrap(),
        1
    );
    assert_eq!(deleted(3), ["children", "children", "parents"]);
}

/// A cascade's deletes come before their parent's, but a delete never moves past an earlier
/// change of its table: a trigger that updates a row and then deletes it is delivered so.
#[test]
fn a_trigger_that_updates_then_deletes_a_row_is_delivered_in_that_order() {
    diesel::table! {
        remarks (id) {
            id -> Integer,
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let store = pool_of_one(&dir.path().join("counted.db").display().to_string());
    let mut conn = store.conn().unwrap();
    conn.batch_execute(
        "CREATE TABLE remarks (id INTEGER PRIMARY KEY); \
         CREATE TABLE counters (k TEXT PRIMARY KEY, n INTEGER NOT NULL); \
         CREATE TRIGGER uncount AFTER DELETE ON remarks BEGIN \
             UPDATE counters SET n = n - 1 WHERE k = 'a'; \
             DELETE FROM counters WHERE n = 0; \
         END; \
         INSERT INTO remarks VALUES (1); \
         INSERT INTO counters VALUES ('a', 1);",
    )
    .unwrap();
    let sqlite = as_sqlite(&mut conn);
    let everything = store.observe_all().unwrap();
    assert_eq!(
        diesel::delete(remarks::table.find(1))
            .execute(sqlite)
            .unwrap(),
        1
    );
    let delivered: Vec<(String, Op)> = (0..3)
        .map(|_| match everything.recv_timeout(WAIT) {
            Some(Observed::Change(change)) => (change.table, change.op),
            other => panic!("expected a change, got {other:?}"),
        })
        .collect();
    assert!(everything.recv_timeout(QUIET).is_none());
    let counter: Vec<Op> = delivered
        .iter()
        .filter(|(table, _)| table == "counters")
        .map(|&(_, op)| op)
        .collect();
    assert_eq!(counter, [Op::Update, Op::Delete], "in {delivered:?}");
}

/// A new user named `username`.
fn user_named(username: &str) -> User {
    User {
        username: username.into(),
        ..User::default()
    }
}

/// A store of one connection on a file in `dir` whose users are audited: a trigger that fires
/// `when` (`BEFORE` or `AFTER`) a user is inserted writes the user's name into `audit`.
fn audited(dir: &tempfile::TempDir, when: &str) -> Store {
    let store = pool_of_one(&dir.path().join("audited.db").display().to_string());
    store
        .conn()
        .unwrap()
        .batch_execute(&format!(
            "CREATE TABLE audit (username TEXT NOT NULL); \
             CREATE TRIGGER audited {when} INSERT ON users BEGIN \
                 INSERT INTO audit VALUES (new.username); \
             END;"
        ))
        .unwrap();
    store
}

/// A trigger's rows count as changes while its statement still runs: a statement that fails
/// after its trigger wrote is undone all the same, and delivers nothing, its trigger's rows
/// included.
#[test]
fn a_statement_that_fails_after_its_trigger_wrote_delivers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = audited(&dir, "AFTER");
    let everything = store.observe_all().unwrap();
    store
        .transaction(|tx| {
            tx.save(user_named("taken"))?;
            // Row 1 and its audit row are written, row 2 breaks the unique constraint: the
            // statement is undone.
            let failed = tx.batch_execute(
                "INSERT INTO users (id, username) VALUES \
                 ('00000000-0000-0000-0000-000000000001', 'fresh'), \
                 ('00000000-0000-0000-0000-000000000002', 'taken')",
            );
            assert!(failed.is_err());
            Ok(())
        })
        .unwrap();
    let mut delivered: Vec<String> = (0..2)
        .map(|_| match everything.recv_timeout(WAIT) {
            Some(Observed::Change(change)) => {
                assert_eq!(change.op, Op::Insert);
                change.table
            }
            other => panic!("expected an insert, got {other:?}"),
        })
        .collect();
    delivered.sort();
    assert_eq!(delivered, ["audit", "users"]);
    assert!(
        everything.recv_timeout(QUIET).is_none(),
        "nothing of the undone statement"
    );
}

/// A `BEFORE` trigger writes before its statement's own row, which may then break a constraint:
/// SQLite undoes the trigger's rows with the statement (the default, `ABORT`), and the
/// transaction goes on to commit without them. Or keeps them: under `FAIL` it stops the
/// statement where it failed. The hooks cannot tell the two apart, nor either from a statement
/// that succeeded without writing a row of its own (an `INSERT OR IGNORE` of a row already
/// there, whose trigger's rows stay); the query's error tells a failure. A failed statement's
/// trigger rows are not delivered, and every subscriber is told it may have missed them (those
/// of tables someone observed).
#[test]
fn a_statement_that_fails_after_its_before_trigger_wrote_is_told_missed() {
    let dir = tempfile::tempdir().unwrap();
    let store = audited(&dir, "BEFORE");
    let everything = store.observe_all().unwrap();
    let users = store.observe::<User>().unwrap();
    let taken = |or: &str, id: u8| {
        format!(
            "INSERT {or} INTO users (id, username) \
             VALUES ('00000000-0000-0000-0000-00000000000{id}', 'taken')"
        )
    };
    store
        .transaction(|tx| {
            tx.save(user_named("taken"))?;
            // The audit row is written, then the user's breaks the unique constraint: the
            // statement is undone, through Diesel's prepared statements and through a batch.
            let failed = diesel::sql_query(taken("", 1)).execute(tx);
            assert!(failed.is_err(), "{failed:?}");
            let failed = tx.batch_execute(&taken("", 2));
            assert!(failed.is_err(), "{failed:?}");
            // And through the store's own save (read back with `RETURNING`, whose failure
            // Diesel does not tell the connection's instrumentation).
            let failed = tx.save(user_named("taken"));
            assert!(matches!(failed, Err(Error::Constraint(_))), "{failed:?}");
            // A query that fails before it runs a statement leaves the failure as it is.
            let unprepared = tx.batch_execute("SELEC 1");
            assert!(unprepared.is_err(), "{unprepared:?}");
            // Ignored, not failed: its audit row stays, and is delivered.
            tx.batch_execute(&taken("OR IGNORE", 3))?;
            // Failed under FAIL: its audit row stays, and is told missed.
            let failed = tx.batch_execute(&taken("OR FAIL", 4));
            assert!(failed.is_err(), "{failed:?}");
            // Failed inside a savepoint rolled back after: undone whatever it was, not told.
            let undone = diesel::Connection::transaction(tx, |inner| {
                diesel::sql_query(taken("", 5)).execute(inner)
            });
            assert!(undone.is_err(), "{undone:?}");
            Ok(())
        })
        .unwrap();
    // The save's user and its audit row, the ignored insert's audit row, then the doubt.
    assert_eq!(
        drain(&everything),
        ["audit Insert", "users Insert", "audit Insert", "missed 4"]
    );
    // A subscriber of another table is told too: a commit's gap is a count, told to every
    // subscriber, as for the rows of a transaction a subscription started in.
    assert!(matches!(
        users.recv_timeout(WAIT),
        Some(Observed::Change(_))
    ));
    assert_eq!(users.recv_timeout(WAIT), Some(Observed::Missed(4)));
    assert_eq!(
        rows_in(&store, "audit"),
        3,
        "the save's, the ignored insert's and the failed one's"
    );
}

/// The SQLite connection a store of these tests lends.
fn as_sqlite(conn: &mut datastore::AnyConnection) -> &mut datastore::diesel::SqliteConnection {
    match conn {
        datastore::AnyConnection::Sqlite(sqlite) => sqlite,
        _ => unreachable!("a SQLite store"),
    }
}

/// How many rows `table` holds, read through a pooled connection.
fn rows_in(store: &Store, table: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        rows: i64,
    }
    diesel::sql_query(format!("SELECT count(*) AS rows FROM {table}"))
        .get_result::<Count>(&mut *store.conn().unwrap())
        .unwrap()
        .rows
}

/// The models are tables of `main`: a table of the same name in an attached database (or in
/// `temp`) is another table, and its rows are not delivered as the model's.
#[test]
fn rows_of_a_same_named_table_in_an_attached_database_are_not_the_models() {
    let dir = tempfile::tempdir().unwrap();
    let store = pool_of_one(&dir.path().join("main.db").display().to_string());
    let posts = store.observe::<Post>().unwrap();
    let saved = store.save(post("here")).unwrap();
    assert_eq!(next(&posts).element, saved);
    let mut conn = store.conn().unwrap();
    conn.batch_execute(&format!(
        "ATTACH '{}' AS aux; \
         CREATE TABLE aux.posts AS SELECT * FROM main.posts WHERE 0; \
         INSERT INTO aux.posts SELECT * FROM main.posts; \
         CREATE TEMP TABLE posts AS SELECT * FROM main.posts WHERE 0; \
         INSERT INTO temp.posts SELECT * FROM main.posts; \
         DELETE FROM temp.posts; \
         DROP TABLE temp.posts; \
         DETACH aux;",
        dir.path().join("aux.db").display()
    ))
    .unwrap();
    drop(conn);
    assert_quiet(&posts);
    let saved = store.save(post("here again")).unwrap();
    assert_eq!(next(&posts).element, saved);
}

#[diesel::declare_sql_function]
extern "SQL" {
    /// Called once a row by a test's `UPDATE`, to subscribe and unsubscribe while it runs.
    fn churn() -> diesel::sql_types::Integer;
}

/// Rows a statement writes while nobody observes (every subscriber left since it started) are
/// not captured, and are told missed to a subscription that starts before they commit.
#[test]
fn rows_written_after_every_subscriber_left_mid_statement_are_told_missed() {
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let store = pool_of_one(&dir.path().join("churn.db").display().to_string());
    for title in ["a", "b", "c"] {
        store.save(post(title)).unwrap();
    }
    let first = Arc::new(Mutex::new(Some(store.observe_all().unwrap())));
    let second = Arc::new(Mutex::new(None));
    let mut conn = store.conn().unwrap();
    let sqlite = as_sqlite(&mut conn);
    let (leaving, coming) = (Arc::clone(&first), Arc::clone(&second));
    let subscriber = std::panic::AssertUnwindSafe(store.clone());
    let mut calls = 0;
    churn_utils::register_nondeterministic_impl(sqlite, move || {
        calls += 1;
        match calls {
            // Before the second row: the only subscriber leaves.
            2 => drop(leaving.lock().unwrap().take()),
            // Before the third: another subscribes.
            3 => *coming.lock().unwrap() = Some(subscriber.observe_all().unwrap()),
            _ => {}
        }
        0
    })
    .unwrap();
    sqlite
        .batch_execute("BEGIN; UPDATE posts SET title = title || churn(); COMMIT;")
        .unwrap();
    let second = second
        .lock()
        .unwrap()
        .take()
        .expect("subscribed during the update");
    assert_eq!(drain(&second), ["posts Update", "posts Update", "missed 1"]);
}

/// What everything observes next, until it is quiet: each change as its table and
/// operation, each gap as "missed n".
fn drain(everything: &datastore::observe::AllSubscription) -> Vec<String> {
    let mut seen = Vec::new();
    while let Some(item) = everything.recv_timeout(QUIET) {
        seen.push(match item {
            Observed::Change(change) => format!("{} {:?}", change.table, change.op),
            Observed::Missed(n) => format!("missed {n}"),
            other => format!("{other:?}"),
        });
    }
    seen
}

/// A connection with a table of notes, held (a pool of one), while nobody observes: its
/// statement hooks are off.
fn held_connection_with_notes(dir: &std::path::Path) -> (Store, datastore::PooledConn) {
    let store = pool_of_one(&dir.join("held.db").display().to_string());
    let mut conn = store.conn().unwrap();
    conn.batch_execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        .unwrap();
    (store, conn)
}

/// A transaction begun while nobody observed, with SQL of its own: the statement hooks come
/// on inside it when someone subscribes, and the rows it wrote before are told missed.
#[test]
fn rows_a_transaction_wrote_before_anyone_observed_are_told_missed_at_its_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut conn) = held_connection_with_notes(dir.path());
    conn.batch_execute("BEGIN; INSERT INTO notes VALUES (1, 'a'), (2, 'b')")
        .unwrap();
    let everything = store.observe_all().unwrap();
    conn.batch_execute("INSERT INTO notes VALUES (3, 'c')")
        .unwrap();
    conn.batch_execute("COMMIT").unwrap();
    assert_eq!(drain(&everything), ["notes Insert", "missed 2"]);
}

/// A savepoint taken while nobody observed is not known to the statement hooks, which came on
/// after it: a rollback to it undoes every row captured since, which is not delivered.
#[test]
fn a_rollback_to_a_savepoint_taken_before_anyone_observed_delivers_nothing_it_undid() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut conn) = held_connection_with_notes(dir.path());
    conn.batch_execute("BEGIN; SAVEPOINT early").unwrap();
    let everything = store.observe_all().unwrap();
    conn.batch_execute("INSERT INTO notes VALUES (1, 'undone')")
        .unwrap();
    conn.batch_execute("ROLLBACK TO early; INSERT INTO notes VALUES (2, 'kept'); COMMIT")
        .unwrap();
    assert_eq!(drain(&everything), ["notes Insert"]);
    conn.batch_execute("INSERT INTO notes VALUES (3, 'after')")
        .unwrap();
    assert_eq!(drain(&everything), ["notes Insert"]);
}

/// Registers `churn()` on `sqlite` to subscribe to everything in `store` at its first call;
/// the subscription, once made.
fn subscribe_in_churn(
    sqlite: &mut datastore::diesel::SqliteConnection,
    store: &Store,
) -> std::sync::Arc<std::sync::Mutex<Option<datastore::observe::AllSubscription>>> {
    use std::sync::{Arc, Mutex};
    let subscribed = Arc::new(Mutex::new(None));
    let coming = Arc::clone(&subscribed);
    let subscriber = std::panic::AssertUnwindSafe(store.clone());
    churn_utils::register_nondeterministic_impl(sqlite, move || {
        let mut coming = coming.lock().unwrap();
        if coming.is_none() {
            *coming = Some(subscriber.observe_all().unwrap());
        }
        0
    })
    .unwrap();
    subscribed
}

/// A subscription that starts while a statement runs with the statement hooks off is told
/// the statement's rows as missed, once it has finished (its commit visible to readers).
#[test]
fn a_subscription_made_while_an_unobserved_statement_runs_is_told_its_rows_missed() {
    let dir = tempfile::tempdir().unwrap();
    let store = pool_of_one(&dir.path().join("late.db").display().to_string());
    for title in ["a", "b", "c"] {
        store.save(post(title)).unwrap();
    }
    let mut conn = store.conn().unwrap();
    let sqlite = as_sqlite(&mut conn);
    let subscribed = subscribe_in_churn(sqlite, &store);
    sqlite
        .batch_execute("UPDATE posts SET title = title || churn()")
        .unwrap();
    let everything = subscribed.lock().unwrap().take().expect("subscribed");
    assert_eq!(drain(&everything), ["missed 3"]);
    // The next statement of the connection is captured.
    sqlite
        .batch_execute("UPDATE posts SET title = 'x' WHERE title LIKE 'a%'")
        .unwrap();
    assert_eq!(drain(&everything), ["posts Update"]);
}

/// With the statement hooks off, a commit made while a subscription started is told missed
/// even when a later statement of the same query fails (and rolls back its own statement), and
/// a transaction the query leaves open is told again when it commits.
#[test]
fn a_commit_made_as_a_subscription_started_is_told_whatever_follows_in_its_query() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut conn) = held_connection_with_notes(dir.path());
    let sqlite = as_sqlite(&mut conn);
    let subscribed = subscribe_in_churn(sqlite, &store);
    assert!(sqlite
        .batch_execute(
            "INSERT INTO notes VALUES (1, 'a' || churn()); \
                 INSERT INTO notes VALUES (1, 'the same key')",
        )
        .is_err());
    let everything = subscribed.lock().unwrap().take().expect("subscribed");
    assert_eq!(
        drain(&everything),
        ["missed 1"],
        "the first row was committed"
    );
    drop(everything);
    let subscribed = subscribe_in_churn(sqlite, &store);
    sqlite
        .batch_execute(
            "INSERT INTO notes VALUES (2, 'b' || churn()); BEGIN; \
             INSERT INTO notes VALUES (3, 'c')",
        )
        .unwrap();
    let everything = subscribed.lock().unwrap().take().expect("subscribed");
    // Counted from the query's start: with the row of the transaction left open.
    assert_eq!(drain(&everything), ["missed 2"]);
    sqlite.batch_execute("COMMIT").unwrap();
    assert_eq!(
        drain(&everything),
        ["missed 1"],
        "the open transaction's row, told again once committed"
    );
}

/// A commit that writes nothing, made with the statement hooks off while a subscription
/// started, is told nothing.
#[test]
fn a_commit_that_wrote_nothing_is_not_told_missed() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut conn) = held_connection_with_notes(dir.path());
    let sqlite = as_sqlite(&mut conn);
    let subscribed = subscribe_in_churn(sqlite, &store);
    sqlite
        .batch_execute("BEGIN IMMEDIATE; SELECT churn(); COMMIT")
        .unwrap();
    let everything = subscribed.lock().unwrap().take().expect("subscribed");
    assert_eq!(drain(&everything), Vec::<String>::new());
}

/// Rows a savepoint of Diesel's transaction undid, written while nobody observed, are not told
/// missed when the statement hooks came on inside the savepoint: they know it by its name.
#[test]
fn rows_a_savepoint_taken_before_anyone_observed_undid_are_not_told_missed() {
    let dir = tempfile::tempdir().unwrap();
    let store = pool_of_one(&dir.path().join("undone-later.db").display().to_string());
    let posts = store
        .transaction(|tx| {
            tx.save(post("kept, before"))?;
            let mut subscribed = None;
            let undone = datastore::diesel::Connection::transaction(tx, |tx| {
                tx.save(post("undone"))?;
                subscribed = Some(store.observe::<Post>()?);
                tx.save(post("undone, captured"))?;
                Err::<(), _>(Error::from(
                    datastore::diesel::result::Error::RollbackTransaction,
                ))
            });
            assert!(undone.is_err());
            tx.save(post("after"))?;
            Ok(subscribed.expect("subscribed"))
        })
        .unwrap();
    assert_after_then_one_missed(
        &posts,
        "only the committed post written before the subscription is told as missed",
    );
}

/// Savepoints taken and released while nobody observed are followed (SQLite's authorizer is
/// asked about each as it is prepared): a `ROLLBACK TO` one of them fails, and undoes nothing
/// captured since.
#[test]
fn a_rollback_to_a_savepoint_released_before_anyone_observed_undoes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut conn) = held_connection_with_notes(dir.path());
    conn.batch_execute("BEGIN; SAVEPOINT gone; RELEASE gone; SAVEPOINT kept")
        .unwrap();
    let everything = store.observe_all().unwrap();
    conn.batch_execute("INSERT INTO notes VALUES (1, 'kept')")
        .unwrap();
    assert!(conn.batch_execute("ROLLBACK TO gone").is_err());
    conn.batch_execute("RELEASE kept; COMMIT").unwrap();
    assert_eq!(drain(&everything), ["notes Insert"]);
}

/// A savepoint with a quoted name, taken while nobody observed, is known by that name once the
/// statement hooks come on: a rollback to it delivers nothing it undid.
#[test]
fn a_savepoint_with_a_quoted_name_taken_before_anyone_observed_is_rolled_back_to() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut conn) = held_connection_with_notes(dir.path());
    conn.batch_execute("BEGIN; SAVEPOINT \"My SP\"").unwrap();
    let everything = store.observe_all().unwrap();
    conn.batch_execute("INSERT INTO notes VALUES (1, 'undone')")
        .unwrap();
    conn.batch_execute("ROLLBACK TO \"my sp\"; COMMIT").unwrap();
    assert_eq!(drain(&everything), Vec::<String>::new());
}

/// A transaction whose commit is a query of its own, with the statement hooks off: a
/// subscription that starts during that query is told every row of the transaction missed.
#[test]
fn a_subscription_made_during_a_commit_of_its_own_is_told_the_transactions_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut conn) = held_connection_with_notes(dir.path());
    let sqlite = as_sqlite(&mut conn);
    sqlite
        .batch_execute("BEGIN; INSERT INTO notes VALUES (1, 'a'), (2, 'b')")
        .unwrap();
    let subscribed = subscribe_in_churn(sqlite, &store);
    sqlite.batch_execute("SELECT churn(); COMMIT").unwrap();
    let everything = subscribed.lock().unwrap().take().expect("subscribed");
    assert_eq!(drain(&everything), ["missed 2"]);
}

/// A commit made with the statement hooks off as someone subscribed is told once its query has
/// finished, and holds back no other connection's commit meanwhile.
#[test]
fn a_commit_told_after_its_query_holds_back_no_other_commit() {
    use common::models::posts;
    use datastore::diesel::connection::DefaultLoadingMode;
    use datastore::diesel::{ExpressionMethods, RunQueryDsl};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path().join("cursor.db"))
        .migrations(datastore::embed_migrations!())
        .pool_size(2)
        .open()
        .unwrap();
    let mut conn = store.conn().unwrap();
    let sqlite = as_sqlite(&mut conn);
    let saved = post("through a cursor");
    let mut rows = datastore::diesel::insert_into(posts::table)
        .values((
            posts::id.eq(saved.id),
            posts::title.eq(&saved.title),
            posts::rating.eq(saved.rating),
            posts::status.eq(saved.status),
            posts::created_at.eq(saved.created_at),
            posts::updated_at.eq(saved.updated_at),
        ))
        .returning(posts::title)
        .load_iter::<String, DefaultLoadingMode>(sqlite)
        .unwrap();
    let everything = store.observe_all().unwrap();
    assert_eq!(rows.next().unwrap().unwrap(), "through a cursor");
    assert!(
        rows.next().is_none(),
        "the insert ran to its end and committed"
    );
    store.save(post("on another connection")).unwrap();
    assert_eq!(
        drain(&everything),
        ["posts Insert"],
        "delivered while the cursor is open"
    );
    drop(rows);
    assert_eq!(drain(&everything), ["missed 1"]);
}

/// A write Diesel runs again, its row iterator asked past the last row (SQLite resets a
/// statement stepped after its end and runs it again), is a statement of its own: when the
/// second run fails (here on a unique name), the first run's row, which the transaction
/// commits, is delivered; when it succeeds, both rows are.
#[test]
fn a_write_run_again_by_its_iterator_is_a_statement_of_its_own() {
    use common::models::users;
    use datastore::diesel::connection::DefaultLoadingMode;
    use datastore::diesel::{ExpressionMethods, RunQueryDsl};
    let (_dir, store) = file_store();
    let everything = store.observe_all().unwrap();
    let mut conn = store.conn().unwrap();
    let sqlite = as_sqlite(&mut conn);
    // Asked three times past the end of a one-row insert: one run, then a run again.
    let mut insert_run_again = |name: &str, key: Id| {
        sqlite.batch_execute("BEGIN").unwrap();
        let mut rows = datastore::diesel::insert_into(users::table)
            .values((users::id.eq(key), users::username.eq(name)))
            .returning(users::username)
            .load_iter::<String, DefaultLoadingMode>(sqlite)
            .unwrap();
        let first = rows.next().map(Result::unwrap);
        assert!(rows.next().is_none());
        let again = rows.next().map(|row| row.map_err(|e| e.to_string()));
        drop(rows);
        sqlite.batch_execute("COMMIT").unwrap();
        (first, again)
    };
    let (first, again) = insert_run_again("alice", Id::new());
    assert_eq!(first.as_deref(), Some("alice"));
    assert!(
        matches!(&again, Some(Err(e)) if e.contains("UNIQUE")),
        "the run again fails: {again:?}"
    );
    assert_eq!(store.count::<User>().unwrap(), 1);
    assert_eq!(drain(&everything), ["users Insert"], "the first run's row");
    // Without a unique key of its own (the database assigns one), the run again succeeds.
    sqlite
        .batch_execute("CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        .unwrap();
    let everything = store.observe_all().unwrap();
    sqlite.batch_execute("BEGIN").unwrap();
    let names: Vec<String> = {
        let mut rows =
            datastore::diesel::sql_query("INSERT INTO tags (name) VALUES ('rust') RETURNING name")
                .load_iter::<Name, DefaultLoadingMode>(sqlite)
                .unwrap();
        let first = rows.next().unwrap().unwrap().name;
        assert!(rows.next().is_none());
        let again = rows.next().unwrap().unwrap().name;
        vec![first, again]
    };
    sqlite.batch_execute("COMMIT").unwrap();
    assert_eq!(names, ["rust", "rust"]);
    assert_eq!(drain(&everything), ["tags Insert", "tags Insert"]);
}

/// A store on a file in `dir` that gives up waiting for a lock after 50 ms, and a plain
/// connection to the same file, to hold the lock it waits for.
fn quick_to_give_up(dir: &std::path::Path) -> (Store, datastore::diesel::SqliteConnection) {
    use datastore::diesel::Connection;
    let path = dir.join("busy.db").display().to_string();
    let store = Store::builder(&path)
        .migrations(datastore::embed_migrations!())
        .busy_timeout(Duration::from_millis(50))
        .open()
        .unwrap();
    let other = datastore::diesel::SqliteConnection::establish(&path).unwrap();
    (store, other)
}

/// A row of one text column, `name`, as a `RETURNING` clause gives it back.
#[derive(datastore::diesel::QueryableByName)]
struct Name {
    #[diesel(sql_type = datastore::diesel::sql_types::Text)]
    name: String,
}

/// A run again that waited out the busy timeout and is stepped again resumes without a new
/// start: its named trigger's start is the trigger's, not another run of the statement, and
/// the statement's row is delivered with the trigger's.
#[test]
fn a_run_again_stepped_again_after_busy_keeps_its_rows_with_its_triggers() {
    use datastore::diesel::connection::DefaultLoadingMode;
    use datastore::diesel::RunQueryDsl;
    let dir = tempfile::tempdir().unwrap();
    let (store, mut other) = quick_to_give_up(dir.path());
    let mut conn = store.conn().unwrap();
    let sqlite = as_sqlite(&mut conn);
    sqlite
        .batch_execute(
            "CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT NOT NULL); \
             CREATE TABLE tag_log (id INTEGER PRIMARY KEY, name TEXT NOT NULL); \
             CREATE TRIGGER log_tag AFTER INSERT ON tags \
                 BEGIN INSERT INTO tag_log (name) VALUES (NEW.name); END",
        )
        .unwrap();
    let everything = store.observe_all().unwrap();
    let mut rows =
        datastore::diesel::sql_query("INSERT INTO tags (name) VALUES ('rust') RETURNING name")
            .load_iter::<Name, DefaultLoadingMode>(sqlite)
            .unwrap();
    assert_eq!(rows.next().unwrap().unwrap().name, "rust");
    assert!(rows.next().is_none());
    other.batch_execute("BEGIN IMMEDIATE").unwrap();
    let busy = rows
        .next()
        .map(|row| row.map(|r| r.name).map_err(|e| e.to_string()));
    assert!(
        matches!(&busy, Some(Err(e)) if e.contains("locked")),
        "the run again waits out the busy timeout: {busy:?}"
    );
    other.batch_execute("COMMIT").unwrap();
    assert_eq!(rows.next().unwrap().unwrap().name, "rust");
    assert!(rows.next().is_none());
    drop(rows);
    drop(conn);
    assert_eq!(
        drain(&everything),
        [
            "tags Insert",
            "tag_log Insert",
            "tags Insert",
            "tag_log Insert"
        ]
    );
}

/// The same with a cascade: the foreign-key action's start, reported with the statement's own
/// text, cannot be told from another run, and the parent row the statement deleted before it
/// is then told missed, not dropped unsaid.
#[test]
fn a_cascade_of_a_run_again_stepped_again_after_busy_is_told_missed_not_dropped() {
    use datastore::diesel::connection::DefaultLoadingMode;
    use datastore::diesel::RunQueryDsl;
    let dir = tempfile::tempdir().unwrap();
    let (store, mut other) = quick_to_give_up(dir.path());
    for title in ["a", "b"] {
        let parent = store.save(post(title)).unwrap();
        store.save(comment(&parent, "on it")).unwrap();
    }
    let everything = store.observe_all().unwrap();
    let mut conn = store.conn().unwrap();
    let sqlite = as_sqlite(&mut conn);
    // Each run deletes the first post left, and its comment with it.
    let mut rows = datastore::diesel::sql_query(
        "DELETE FROM posts WHERE id = (SELECT id FROM posts ORDER BY title LIMIT 1) \
         RETURNING title AS name",
    )
    .load_iter::<Name, DefaultLoadingMode>(sqlite)
    .unwrap();
    assert_eq!(rows.next().unwrap().unwrap().name, "a");
    assert!(rows.next().is_none());
    other.batch_execute("BEGIN IMMEDIATE").unwrap();
    assert!(matches!(rows.next(), Some(Err(_))), "busy");
    other.batch_execute("COMMIT").unwrap();
    assert_eq!(rows.next().unwrap().unwrap().name, "b");
    assert!(rows.next().is_none());
    drop(rows);
    drop(conn);
    assert_eq!(store.count::<Post>().unwrap(), 0);
    let seen = drain(&everything);
    assert_eq!(
        seen.iter().filter(|s| *s == "posts Delete").count()
            + seen.iter().filter(|s| *s == "missed 1").count(),
        2,
        "each post's delete delivered or told missed: {seen:?}"
    );
    assert_eq!(
        seen.iter().filter(|s| *s == "comments Delete").count(),
        2,
        "{seen:?}"
    );
}

/// A connection whose user gave it an instrumentation of their own keeps its statement hooks
/// on: what it writes after a subscription starts is captured, not told missed.
#[test]
fn a_connection_with_its_users_own_instrumentation_is_observed_as_any() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut conn) = held_connection_with_notes(dir.path());
    let sqlite = as_sqlite(&mut conn);
    datastore::diesel::Connection::set_instrumentation(
        sqlite,
        |_: datastore::diesel::connection::InstrumentationEvent<'_>| {},
    );
    let everything = store.observe_all().unwrap();
    sqlite
        .batch_execute("INSERT INTO notes VALUES (1, 'seen')")
        .unwrap();
    assert_eq!(drain(&everything), ["notes Insert"]);
}

/// The `RELEASE` of the savepoint that began a transaction commits it, or fails (here, a
/// deferred foreign key still violated) and leaves the transaction and its savepoints in place:
/// a `ROLLBACK TO` after it still undoes what followed the savepoint.
#[test]
fn a_failed_release_of_the_outermost_savepoint_keeps_it_for_a_rollback_to() {
    let dir = tempfile::tempdir().unwrap();
    let store = pool_of_one(&dir.path().join("family.db").display().to_string());
    let mut conn = store.conn().unwrap();
    conn.batch_execute(
        "CREATE TABLE parents (id INTEGER PRIMARY KEY); \
         CREATE TABLE children (id INTEGER PRIMARY KEY, \
             parent INTEGER NOT NULL REFERENCES parents (id));",
    )
    .unwrap();
    let everything = store.observe_all().unwrap();
    conn.batch_execute(
        "SAVEPOINT outer_sp; PRAGMA defer_foreign_keys = ON; \
         INSERT INTO children VALUES (1, 99);",
    )
    .unwrap();
    assert!(
        conn.batch_execute("RELEASE outer_sp").is_err(),
        "a child without parent"
    );
    conn.batch_execute("ROLLBACK TO outer_sp").unwrap();
    conn.batch_execute("RELEASE outer_sp").unwrap();
    assert!(
        everything.recv_timeout(QUIET).is_none(),
        "the child was rolled back"
    );
    // Savepoint commands are told past comments too.
    conn.batch_execute(
        "BEGIN; SAVEPOINT a; INSERT INTO parents VALUES (7); \
         /* undo */ ROLLBACK TO a; -- and keep nothing\n RELEASE a; COMMIT;",
    )
    .unwrap();
    assert!(
        everything.recv_timeout(QUIET).is_none(),
        "the parent was rolled back"
    );
    conn.batch_execute("INSERT INTO parents VALUES (8)")
        .unwrap();
    match everything.recv_timeout(WAIT) {
        Some(Observed::Change(change)) => assert_eq!(change.table, "parents"),
        other => panic!("expected the parent, got {other:?}"),
    }
}

/// The authorizer that keeps such a `DELETE` row by row leaves `DROP` alone: SQLite asks it
/// for `DELETE`s of the schema table's rows and of the dropped table's, and compiles a `DROP`
/// to nothing, silently, when one is refused. Each object dropped here is created again,
/// which fails if it is still there; a table dropped with its trigger takes the trigger along.
#[test]
fn drop_statements_drop_what_they_name_on_the_stores_connections() {
    let dir = tempfile::tempdir().unwrap();
    let store = pool_of_one(&dir.path().join("drops.db").display().to_string());
    let mut conn = store.conn().unwrap();
    let create = [
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)",
        "CREATE INDEX notes_body ON notes (body)",
        "CREATE VIEW note_bodies AS SELECT body FROM notes",
        "CREATE TRIGGER notes_kept AFTER INSERT ON notes BEGIN SELECT 1; END",
        "CREATE TEMP TABLE scratch (x)",
    ];
    for sql in create {
        conn.batch_execute(sql).unwrap();
    }
    let everything = store.observe_all().unwrap(); // the pre-update hook installed
    for (drop, again) in [
        ("DROP TRIGGER notes_kept", create[3]),
        ("DROP VIEW note_bodies", create[2]),
        ("DROP INDEX notes_body", create[1]),
        ("DROP TABLE scratch", create[4]),
        ("DROP TABLE notes", create[0]),
    ] {
        conn.batch_execute(drop).unwrap();
        conn.batch_execute(again)
            .unwrap_or_else(|e| panic!("`{drop}` left it in place: {e}"));
    }
    drop(everything); // and not
    conn.batch_execute(create[3]).unwrap();
    conn.batch_execute("DROP TABLE notes").unwrap();
    conn.batch_execute(create[0]).unwrap();
    conn.batch_execute(create[3])
        .expect("the dropped table's trigger went with it");
}

/// One connection (a pool of one) whose subscribers come and go captures what is written
/// while someone observes, and nothing written while nobody does, in and out of a transaction;
/// a subscription that starts inside a transaction is told, after its changes, how many rows
/// the transaction wrote before it.
#[test]
fn one_connection_captures_again_when_a_subscriber_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = pool_of_one(&dir.path().join("again.db").display().to_string());
    let first = store.observe::<Post>().unwrap();
    store.save(post("observed")).unwrap();
    assert_eq!(next(&first).element.title, "observed");
    drop(first);
    store.save(post("while nobody observes")).unwrap();
    let second = store.observe::<Post>().unwrap();
    store.save(post("observed again")).unwrap();
    assert_eq!(next(&second).element.title, "observed again");
    assert_quiet(&second);
    drop(second);
    // Inside a transaction whose first statement ran unobserved.
    subscribed_inside_a_transaction(&store);
}

/// Checks that `posts` receives the post titled "after", then is told it missed one post
/// (`why`), then nothing.
fn assert_after_then_one_missed(posts: &Subscription<Post>, why: &str) {
    assert_eq!(next(posts).element.title, "after");
    assert!(
        matches!(posts.recv_timeout(WAIT), Some(Observed::Missed(1))),
        "{why}"
    );
    assert_quiet(posts);
}

/// Subscribes to posts inside a transaction between two saves, and checks that the
/// subscription receives the second post, then is told it missed the first.
fn subscribed_inside_a_transaction(store: &Store) {
    let posts = store
        .transaction(|tx| {
            tx.save(post("before"))?;
            let posts = store.observe::<Post>()?;
            tx.save(post("after"))?;
            Ok(posts)
        })
        .unwrap();
    assert_after_then_one_missed(
        &posts,
        "the post written before the subscription is told as missed",
    );
}

/// Rows a `ROLLBACK TO` undid, written while nobody observed, are not told missed to a
/// subscription made later in their transaction: they were never committed.
#[test]
fn rows_a_savepoint_rollback_undid_are_not_told_missed() {
    let dir = tempfile::tempdir().unwrap();
    let store = pool_of_one(&dir.path().join("undone.db").display().to_string());
    let posts = store
        .transaction(|tx| {
            tx.save(post("kept, before"))?;
            // A nested transaction is a savepoint, rolled back on error.
            let undone = datastore::diesel::Connection::transaction(tx, |tx| {
                tx.save(post("undone"))?;
                tx.save(post("undone too"))?;
                Err::<(), _>(Error::from(
                    datastore::diesel::result::Error::RollbackTransaction,
                ))
            });
            assert!(undone.is_err());
            let posts = store.observe::<Post>()?;
            tx.save(post("after"))?;
            Ok(posts)
        })
        .unwrap();
    assert_after_then_one_missed(
        &posts,
        "only the committed post written before the subscription is told as missed",
    );
    assert_eq!(store.count::<Post>().unwrap(), 2);
}

/// Rows written to a table nobody observed, in a transaction during which someone subscribed
/// to it, are told to that subscription as missed; written with no subscription starting or
/// ending in their transaction, they cost the subscribers of other tables nothing.
#[test]
fn rows_of_a_table_nobody_observed_are_told_missed_to_a_subscription_made_in_their_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = pool_of_one(&dir.path().join("unobserved.db").display().to_string());
    let comments = store.observe::<Comment>().unwrap();
    store.save(post("nobody observes posts")).unwrap();
    store
        .transaction(|tx| {
            tx.save(post("still nobody"))?;
            tx.save(post("and again"))
        })
        .unwrap();
    assert_quiet(&comments);
    subscribed_inside_a_transaction(&store);
}

#[test]
fn a_slow_subscriber_never_blocks_writers_and_is_told_what_it_missed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path().join("slow.db"))
        .migrations(datastore::embed_migrations!())
        .observe_buffer(10)
        .open()
        .unwrap();
    let slow = store.observe::<Post>().unwrap();
    store
        .transaction(|tx| {
            for i in 0..25 {
                tx.save(post(&i.to_string()))?;
            }
            Ok(())
        })
        .unwrap();
    let mut seen = Vec::new();
    let mut missed = 0;
    while let Some(observed) = slow.recv_timeout(QUIET) {
        match observed {
            Observed::Change(change) => seen.push(change.element.title),
            Observed::Missed(n) => missed += n,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        seen,
        (0..10).map(|i| i.to_string()).collect::<Vec<_>>(),
        "the buffered ones, in order"
    );
    assert_eq!(missed, 15);
    store.save(post("after")).unwrap();
    assert_eq!(next(&slow).element.title, "after", "delivery resumes");
}

#[test]
fn every_pooled_writer_is_observed_once_per_committed_change_in_commit_order() {
    let (_dir, store) = file_store();
    pooled_writers_are_observed(store);
}

#[test]
fn every_pooled_writer_is_observed_once_per_committed_change_in_commit_order_on_postgres() {
    if let Some(db) = common::TestDb::postgres() {
        let _schema = db.schema;
        pooled_writers_are_observed(db.store);
    }
}

/// 4 writers x 50 transactions through the pool (1 in 5 rolled back), one subscriber.
fn pooled_writers_are_observed(store: Store) {
    let store = std::sync::Arc::new(store);
    let all = store.observe::<Post>().unwrap();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut committed = Vec::new();
                for i in 0..50 {
                    let title = format!("w{w}-{i}");
                    let result = store.transaction(|tx| {
                        let saved = tx.save(post(&title))?;
                        let saved = tx.save(Post { rating: 2, ..saved })?;
                        if i % 5 == 0 {
                            return Err(Error::NotFound {
                                table: "rollback".into(),
                                key: title.clone(),
                            });
                        }
                        Ok(saved)
                    });
                    if let Ok(saved) = result {
                        committed.push(saved);
                    }
                }
                committed
            })
        })
        .collect();
    let committed: Vec<Post> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert_eq!(committed.len(), 4 * 40);

    let mut per_row: std::collections::HashMap<Id, Vec<(Op, i32)>> =
        std::collections::HashMap::new();
    for _ in 0..committed.len() * 2 {
        let change = next(&all);
        per_row
            .entry(change.element.id)
            .or_default()
            .push((change.op, change.element.rating));
    }
    assert_quiet(&all);
    assert_eq!(
        per_row.len(),
        committed.len(),
        "no rolled-back row, none missing"
    );
    for post in &committed {
        assert_eq!(
            per_row[&post.id],
            [(Op::Insert, 1), (Op::Update, 2)],
            "per-row order as committed"
        );
    }
}

per_backend! {
    each_feed fn observe_query_yields_the_result_then_each_result_a_commit_alters(store) {
        use common::models::posts;
        let first = store
            .save(Post {
                rating: 9,
                ..post("top")
            })
            .unwrap();
        let mut top = store
            .observe_query::<Post>(|q| q.filter(posts::rating.gt(4)).order(posts::title.asc()))
            .unwrap();
        let titles = |rows: Vec<Post>| rows.into_iter().map(|p| p.title).collect::<Vec<_>>();
        assert_eq!(titles(top.recv_timeout(WAIT).unwrap().unwrap()), ["top"]);

        store
            .save(Post {
                rating: 1,
                ..post("low")
            })
            .unwrap(); // does not match: no new result
        assert!(top.recv_timeout(QUIET).is_none());

        let second = store
            .save(Post {
                rating: 7,
                ..post("also top")
            })
            .unwrap();
        assert_eq!(
            titles(top.recv_timeout(WAIT).unwrap().unwrap()),
            ["also top", "top"]
        );

        store.save(Post { rating: 2, ..first }).unwrap(); // stops matching
        assert_eq!(
            titles(top.recv_timeout(WAIT).unwrap().unwrap()),
            ["also top"]
        );

        store.delete(&second).unwrap();
        assert!(top.recv_timeout(WAIT).unwrap().unwrap().is_empty());
    }
}

/// A `COMMIT` refused as busy (readers hold a database without WAL, here one in memory) leaves
/// the transaction open: rolled back then, it delivers nothing; committed again, it delivers its
/// changes once. (The bundled SQLite takes the exclusive lock before it calls the commit hook,
/// so a refused `COMMIT` never reaches the hook; an older order would deliver it early.)
#[test]
fn a_commit_refused_as_busy_is_delivered_only_once_it_commits() {
    let store = Store::builder(":memory:")
        .migrations(datastore::embed_migrations!())
        .busy_timeout(Duration::from_millis(50))
        .open()
        .unwrap();
    let posts = store.observe::<Post>().unwrap();
    let hold_readers = || {
        let mut reader = store.conn().unwrap();
        reader
            .batch_execute("BEGIN; SELECT count(*) FROM posts;")
            .unwrap();
        reader
    };
    // Refused, then rolled back (by the store's transaction).
    let mut reader = hold_readers();
    let refused = store.transaction(|tx| tx.save(post("rolled back")).map(drop));
    assert!(matches!(refused, Err(Error::Busy { .. })), "{refused:?}");
    reader.batch_execute("COMMIT").unwrap();
    drop(reader);
    assert_quiet(&posts);
    // Refused, then committed again once the readers are gone.
    let mut reader = hold_readers();
    let mut writer = store.conn().unwrap();
    writer.batch_execute("BEGIN IMMEDIATE").unwrap();
    let saved = writer.save(post("committed at the second try")).unwrap();
    assert!(writer.batch_execute("COMMIT").is_err(), "busy");
    reader.batch_execute("COMMIT").unwrap();
    drop(reader);
    writer.batch_execute("COMMIT").unwrap();
    drop(writer);
    assert_eq!(next(&posts).element, saved);
    assert_quiet(&posts);
    assert_eq!(store.all::<Post>().unwrap(), vec![saved]);
}

/// A column another migration added that SQLite generates (which `pragma_table_info` leaves
/// out, and the pre-update hook counts) does not make the table's changes undecodable.
#[test]
fn a_generated_column_the_model_does_not_declare_leaves_its_changes_readable() {
    let (_dir, store) = file_store();
    store
        .conn()
        .unwrap()
        .batch_execute(
            "ALTER TABLE posts ADD COLUMN doubled INTEGER GENERATED ALWAYS AS (rating * 2) VIRTUAL",
        )
        .unwrap();
    let posts = store.observe::<Post>().unwrap();
    let saved = store.save(post("generated beside")).unwrap();
    match posts.recv_timeout(WAIT) {
        Some(Observed::Change(change)) => assert_eq!(change.element, saved),
        other => panic!("{other:?}"),
    }
}

// A query whose filter reads related rows (`having_comments`) gives a new result when one of
// them changes, not only when a row of its own model does.
per_backend! {
    each_feed fn observe_query_follows_the_related_rows_its_filter_reads(store) {
        use common::models::comments;
        let post = store.save(post("quiet")).unwrap();
        let mut discussed = store
            .observe_query::<Post>(|q| {
                q.filter(Post::having_comments(comments::content.like("%rust%")))
            })
            .unwrap();
        assert!(discussed.recv_timeout(WAIT).unwrap().unwrap().is_empty());
        let comment = store.save(comment(&post, "about rust")).unwrap();
        let rows = discussed.recv_timeout(WAIT).unwrap().unwrap();
        assert_eq!(rows.iter().map(|p| p.id).collect::<Vec<_>>(), [post.id]);
        store.delete(&comment).unwrap();
        assert!(discussed.recv_timeout(WAIT).unwrap().unwrap().is_empty());
    }
}

// The same filter built before `observe_query`, outside its closure: the tables a query reads
// are known from the query, not from where its parts were built.
per_backend! {
    each_feed fn observe_query_follows_the_related_rows_a_filter_built_outside_its_closure_reads(store) {
        use common::models::comments;
        let post = store.save(post("quiet")).unwrap();
        let about_rust = Post::having_comments(comments::content.like("%rust%"));
        let mut discussed = store
            .observe_query::<Post>(move |q| q.filter(about_rust))
            .unwrap();
        assert!(discussed.recv_timeout(WAIT).unwrap().unwrap().is_empty());
        store.save(comment(&post, "about rust")).unwrap();
        let rows = discussed.recv_timeout(WAIT).unwrap().unwrap();
        assert_eq!(rows.iter().map(|p| p.id).collect::<Vec<_>>(), [post.id]);
    }
}

per_backend! {
    each_feed fn a_savepoint_taken_before_subscribing_and_rolled_back_after_delivers_nothing_of_it(store) {
        let mut conn = store.conn().unwrap();
        conn.batch_execute("BEGIN; SAVEPOINT before_anyone_listened")
            .unwrap();
        let posts = store.observe::<Post>().unwrap();
        conn.save(post("rolled back")).unwrap();
        conn.batch_execute("ROLLBACK TO before_anyone_listened")
            .unwrap();
        let kept = conn.save(post("kept")).unwrap();
        conn.batch_execute("COMMIT").unwrap();
        assert_eq!(next(&posts).element, kept);
        assert_quiet(&posts);
    }
}

// On SQLite a change is queued by the time its commit returns; on PostgreSQL it arrives
// asynchronously (a notification), so there is nothing to assert right after the save.
per_backend! {
    sqlite_only fn try_recv_returns_what_is_already_queued(store) {
        let posts = store.observe::<Post>().unwrap();
        let saved = store.save(post("queued")).unwrap();
        match posts.try_recv() {
            Some(Observed::Change(change)) => assert_eq!(change.element, saved),
            other => panic!("expected the queued change, got {other:?}"),
        }
        assert!(posts.try_recv().is_none());
    }
}

/// A commit is delivered once other connections can read it: a reader on another thread,
/// woken by the first change of a transaction of many rows (so that writing the commit takes
/// a while after SQLite's commit hook), reads all of them on another connection of the pool.
#[test]
fn a_store_that_saw_a_commit_is_readable_by_the_time_the_change_arrives() {
    let (_dir, store) = file_store();
    let posts = store.observe::<Post>().unwrap();
    let reader = std::thread::spawn({
        let store = store.clone();
        move || {
            let change = next(&posts);
            (change.element.id, rows_in(&store, "posts"))
        }
    });
    let saved = store
        .insert_all((0..20_000).map(|i| post(&format!("visible {i}"))).collect())
        .unwrap();
    let (first, rows) = reader.join().unwrap();
    assert_eq!(first, saved[0].id);
    assert_eq!(
        rows, 20_000,
        "the change arrived before another connection could read the commit"
    );
}

/// The same for a commit SQLite makes as a statement is reset before its end: an autocommit
/// `INSERT ... RETURNING` of which the caller reads one row (`get_result`) commits as Diesel
/// resets it. Many rows, so that the commit takes a while after SQLite's commit hook.
#[test]
fn a_commit_made_as_a_statement_read_in_part_is_reset_arrives_once_readable() {
    let (_dir, store, mut conn) = notes_on_file();
    let everything = store.observe_all().unwrap();
    let reader = std::thread::spawn({
        let store = store.clone();
        move || {
            let first = everything.recv_timeout(WAIT);
            assert!(matches!(first, Some(Observed::Change(_))), "{first:?}");
            rows_in(&store, "notes")
        }
    });
    let first: NoteId = notes_returning(20_000).get_result(&mut *conn).unwrap();
    assert_eq!(first.id, 1);
    assert_eq!(
        reader.join().unwrap(),
        20_000,
        "the change arrived before another connection could read the commit"
    );
}

/// A commit made by an autocommit statement read to its end through a cursor its caller
/// keeps (Diesel's `load_iter`) arrives once it is written, not when the cursor is dropped
/// (the end of the query Diesel tells): the store's later commits, which come after it, would
/// wait for it until then.
#[test]
fn a_commit_read_to_its_end_through_a_kept_cursor_arrives_before_the_cursor_is_dropped() {
    let (_dir, store, mut conn) = notes_on_file();
    let everything = store.observe_all().unwrap();
    let cursor = three_notes_read_to_their_end(&mut conn);
    store
        .conn()
        .unwrap()
        .batch_execute("INSERT INTO notes (id, body) VALUES (4, 'later')")
        .unwrap();
    assert_eq!(
        drain(&everything),
        ["notes Insert"; 4],
        "both commits, with the cursor kept"
    );
    drop(cursor);
    assert_eq!(drain(&everything), Vec::<String>::new(), "nothing twice");
}

/// SQLite checkpoints a write-ahead log automatically (each time a commit leaves 1,000 pages
/// in it, by default) from the hook the store takes over to publish commits as they are
/// written: the store carries it on, and the log does not grow past about that size however
/// much is written, observed or not.
#[test]
fn the_write_ahead_log_is_still_checkpointed_automatically() {
    let (dir, store, mut conn) = notes_on_file();
    let log = dir.path().join("blog.db-wal");
    for round in 0..30 {
        write_notes(&mut conn, round * 100);
    }
    let everything = store.observe_all().unwrap();
    for round in 30..60 {
        write_notes(&mut conn, round * 100);
    }
    assert_eq!(
        drain(&everything).len(),
        3_000,
        "every row written while observed"
    );
    // About 6,000 pages were written in all, 3,000 of them observed; checkpointed after
    // 1,000, the log is reset and written from its start again (it never shrinks: a phase
    // without checkpoints would have left it larger).
    let size = std::fs::metadata(&log).unwrap().len();
    assert!(
        size < 1_500 * page_size(&mut conn),
        "the log holds {size} bytes"
    );
}

/// A `PRAGMA wal_autocheckpoint = N` (in any of its forms) puts SQLite's own WAL hook back as
/// SQLite compiles it: the store puts its own back as the query ends, with the new threshold,
/// so that commits are still published as soon as they are written, and the log checkpointed
/// at N pages.
#[test]
fn a_threshold_set_by_pragma_keeps_the_store_s_wal_hook() {
    let (dir, store, mut conn) = notes_on_file();
    conn.batch_execute("PRAGMA main.WAL_AutoCheckpoint(200)")
        .unwrap();
    let everything = store.observe_all().unwrap();
    let cursor = three_notes_read_to_their_end(&mut conn);
    assert_eq!(
        drain(&everything),
        ["notes Insert"; 3],
        "with the cursor kept"
    );
    drop(cursor);
    for round in 1..30 {
        write_notes(&mut conn, round * 100);
    }
    assert_eq!(drain(&everything).len(), 2_900);
    // About 3,000 pages written, checkpointed each time 200 or more wait.
    let size = std::fs::metadata(dir.path().join("blog.db-wal"))
        .unwrap()
        .len();
    assert!(
        size < 400 * page_size(&mut conn),
        "the log holds {size} bytes"
    );
}

/// Diesel tells no end of a query whose values fail to bind. On a connection whose user then
/// replaces its instrumentation (no query's end is told after), a commit made as a statement
/// read in part is reset arrives all the same (from SQLite's commit hook, as the store cannot
/// wait for an end no one will tell).
#[test]
fn a_commit_made_at_a_reset_after_the_instrumentation_was_replaced_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut conn) = held_connection_with_notes(dir.path());
    let sqlite = as_sqlite(&mut conn);
    let everything = store.observe_all().unwrap();
    let year_10000 = chrono::NaiveDate::from_ymd_opt(10_000, 1, 1).unwrap();
    let unbindable = Post {
        created_at: Timestamp::from(year_10000.and_hms_opt(0, 0, 0).unwrap().and_utc()),
        ..post("unbindable")
    };
    datastore::diesel::insert_into(common::models::posts::table)
        .values(&unbindable)
        .execute(sqlite)
        .unwrap_err();
    datastore::diesel::Connection::set_instrumentation(
        sqlite,
        |_: datastore::diesel::connection::InstrumentationEvent<'_>| {},
    );
    let first: NoteId = notes_returning(3).get_result(sqlite).unwrap();
    assert_eq!(first.id, 1);
    assert_eq!(drain(&everything), ["notes Insert"; 3]);
}

/// A statement that starts while nobody observes, with the statement hooks on (a subscriber
/// of `tracing` follows the statements), and commits as it is reset, read in part: a
/// subscription made while it runs is told its rows missed once it has finished.
#[test]
fn a_subscription_made_while_an_uncaptured_statement_read_in_part_runs_is_told_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut conn) = held_connection_with_notes(dir.path());
    let sqlite = as_sqlite(&mut conn);
    let subscribed = subscribe_in_churn(sqlite, &store);
    let (first, statements) = common::trace::statements(|| {
        diesel::sql_query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3) \
             INSERT INTO notes (id, body) SELECT i, churn() FROM n RETURNING id",
        )
        .get_result::<NoteId>(sqlite)
        .unwrap()
    });
    assert_eq!(first.id, 1);
    assert_eq!(statements.len(), 1, "followed: {statements:?}");
    let everything = subscribed.lock().unwrap().take().expect("subscribed");
    assert_eq!(drain(&everything), ["missed 3"]);
}

/// A note's key, as `notes_returning` returns it.
#[derive(diesel::QueryableByName)]
struct NoteId {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
}

/// An autocommit insert of three notes read to its end through a cursor, returned kept (its
/// statement is reset, and Diesel's query ends, only as it is dropped).
fn three_notes_read_to_their_end(
    conn: &mut datastore::PooledConn,
) -> impl Iterator<Item = diesel::QueryResult<NoteId>> + '_ {
    let mut cursor = notes_returning(3)
        .load_iter::<NoteId, diesel::connection::DefaultLoadingMode>(as_sqlite(conn))
        .unwrap();
    assert_eq!(
        cursor.by_ref().map(Result::unwrap).count(),
        3,
        "read to its end"
    );
    cursor
}

/// Writes 100 notes of 4,000 bytes from key `from` in one commit: about 100 pages.
fn write_notes(conn: &mut datastore::PooledConn, from: u32) {
    conn.batch_execute(&format!(
        "WITH RECURSIVE n(i) AS (SELECT {from} UNION ALL SELECT i + 1 FROM n \
         WHERE i < {from} + 99) INSERT INTO notes SELECT i, printf('%.4000c', 'x') FROM n"
    ))
    .unwrap();
}

/// The database's page size, in bytes.
fn page_size(conn: &mut datastore::PooledConn) -> u64 {
    #[derive(diesel::QueryableByName)]
    struct PageSize {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        page_size: i64,
    }
    let page = diesel::sql_query("PRAGMA page_size")
        .get_result::<PageSize>(&mut **conn)
        .unwrap();
    page.page_size as u64
}

/// A store on a file (`blog.db` in the directory returned) with a table of notes, and one of
/// its connections.
fn notes_on_file() -> (tempfile::TempDir, Store, datastore::PooledConn) {
    let (dir, store) = file_store();
    let mut conn = store.conn().unwrap();
    conn.batch_execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        .unwrap();
    (dir, store, conn)
}

/// An autocommit insert of `rows` notes (keys 1 to `rows`, bodies of 200 bytes) returning
/// their keys, for a caller to read in part.
fn notes_returning(rows: u32) -> diesel::query_builder::SqlQuery {
    diesel::sql_query(format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) \
         INSERT INTO notes (id, body) SELECT i, printf('%.200c', 'x') FROM n RETURNING id"
    ))
}

// PostgreSQL's column types refuse such a value in the first place.
per_backend! {
    sqlite_only fn a_row_the_model_cannot_read_is_reported_not_skipped(store) {
        let posts = store.observe::<Post>().unwrap();
        store
            .conn()
            .unwrap()
            .batch_execute(
                "INSERT INTO posts (id, title, rating, status, created_at, updated_at) \
                 VALUES ('not-a-uuid', 't', 1, 'Active', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
            )
            .unwrap();
        match posts.recv_timeout(WAIT) {
            Some(Observed::Undecodable { table, reason }) => {
                assert_eq!(table, "posts");
                assert!(reason.contains("posts.id"), "{reason}");
            }
            other => panic!("expected Undecodable, got {other:?}"),
        }
    }
}

per_backend! {
    each_feed fn a_subscription_ends_when_its_store_is_gone(store) {
        let mut posts = store.observe::<Post>().unwrap();
        let saved = store.save(post("last")).unwrap();
        drop(store);
        assert!(matches!(posts.next(), Some(Observed::Change(c)) if c.element == saved));
        assert!(
            posts.next().is_none(),
            "the stream ends instead of blocking forever"
        );
    }
}

#[test]
fn each_overflow_is_reported_where_it_happened() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path().join("gaps.db"))
        .migrations(datastore::embed_migrations!())
        .observe_buffer(2)
        .open()
        .unwrap();
    let posts = store.observe::<Post>().unwrap();
    let save_many = |from: usize, to: usize| {
        store
            .transaction(|tx| {
                for i in from..to {
                    tx.save(post(&i.to_string()))?;
                }
                Ok(())
            })
            .unwrap()
    };
    save_many(0, 5); // 0 and 1 queued, 3 missed
    let mut seen = Vec::new();
    let mut take = |n: usize| {
        for _ in 0..n {
            match posts.recv_timeout(WAIT) {
                Some(Observed::Change(c)) => seen.push(c.element.title),
                Some(Observed::Missed(n)) => seen.push(format!("missed {n}")),
                other => panic!("{other:?}"),
            }
        }
    };
    take(1); // "0": one place free
    save_many(5, 8); // 5 queued, 2 missed
    take(4);
    assert_eq!(seen, ["0", "1", "missed 3", "5", "missed 2"]);
}

per_backend! {
    each_feed fn a_row_larger_than_a_notification_arrives_whole(store) {
        let posts = store.observe::<Post>().unwrap();
        // PostgreSQL refuses notification payloads of 8000 bytes and more.
        let body = "é'\"; ".repeat(100_000);
        let saved = store
            .save(Post {
                body: Some(body.clone()),
                ..post("large")
            })
            .unwrap();
        let small = store.save(post("small")).unwrap();
        let change = next(&posts);
        assert_eq!(change.element, saved);
        assert_eq!(change.element.body.as_deref(), Some(body.as_str()));
        assert_eq!(next(&posts).element, small, "in commit order");
        assert_quiet(&posts);
    }
}

/// Terminates the store's PostgreSQL listener, as a server restart or an administrator would;
/// how many listeners were terminated.
fn terminate_listener(store: &Store) -> usize {
    #[derive(diesel::QueryableByName)]
    struct Terminated {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        done: bool,
    }
    diesel::sql_query(
        "SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity \
         WHERE application_name = 'datastore listener ' || md5(current_schema())",
    )
    .load::<Terminated>(&mut *store.conn().unwrap())
    .unwrap()
    .into_iter()
    .filter(|t| t.done)
    .count()
}

/// Runs `f` on a thread of its own and fails the test if it has not returned within `limit`
/// (a call that blocks or spins forever would otherwise hang the test run).
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("did not return within {limit:?}"))
}

/// The listener's connection can be lost (a server restart, an administrator): the next
/// subscription starts a new listener, and changes flow again.
#[test]
fn on_postgres_a_lost_listener_is_replaced_by_the_next_subscription() {
    let Some(db) = common::TestDb::postgres() else {
        return;
    };
    let _schema = db.schema;
    let store = db.store;
    let first = store.observe::<Post>().unwrap();
    store.save(post("before")).unwrap();
    assert_eq!(next(&first).element.title, "before");

    assert_eq!(
        terminate_listener(&store),
        1,
        "this store's listener, and only it"
    );

    // The listener notices within a poll; a new subscription starts a new one.
    let deadline = std::time::Instant::now() + WAIT;
    let second = loop {
        std::thread::sleep(Duration::from_millis(20));
        // Until the old listener noticed, a subscription is refused, typed.
        assert!(std::time::Instant::now() < deadline, "no new listener");
        let sub = match store.observe::<Post>() {
            Ok(sub) => sub,
            Err(Error::Connection { .. }) => continue,
            Err(e) => panic!("{e}"),
        };
        store.save(post("after")).unwrap();
        if let Some(Observed::Change(change)) = sub.recv_timeout(Duration::from_millis(500)) {
            assert_eq!(change.element.title, "after");
            break sub;
        }
        assert!(std::time::Instant::now() < deadline, "no new listener");
    };
    store.save(post("later")).unwrap();
    assert_eq!(next(&second).element.title, "later");
    // The lost listener's subscription ended, saying so, instead of skipping what it could
    // not see.
    assert!(matches!(
        first.recv_timeout(WAIT),
        Some(Observed::FeedLost { .. })
    ));
    assert!(first.recv_timeout(QUIET).is_none(), "then it ended");
}

/// A lost listener ends a subscription promptly, with a last item that tells it from the end
/// of a store (which ends it with nothing).
#[test]
fn on_postgres_a_subscription_whose_listener_is_lost_ends_with_feed_lost() {
    let Some(db) = common::TestDb::postgres() else {
        return;
    };
    let _schema = db.schema;
    let store = db.store;
    let mut posts = store.observe::<Post>().unwrap();
    let saved = store.save(post("before")).unwrap();
    assert_eq!(next(&posts).element, saved);
    assert_eq!(terminate_listener(&store), 1);
    let (end, after) = within(WAIT, move || (posts.next(), posts.next()));
    match end {
        Some(Observed::FeedLost { reason }) => assert!(!reason.is_empty()),
        other => panic!("expected FeedLost, got {other:?}"),
    }
    assert!(after.is_none(), "the stream ends after saying it was lost");
}

/// A new subscription to `posts` (once its feed was lost) is told of a post saved now.
fn assert_posts_observed_again(store: &Store, feed: ChangeFeed) {
    let posts = store.observe::<Post>().unwrap();
    let saved = store.save(post("after")).unwrap();
    assert_eq!(next(&posts).element, saved, "{feed:?}: observed again");
}

/// Reads `sub` to its end within `WAIT`: `FeedLost` naming `table`, then nothing.
fn assert_ends_with_feed_lost<T: std::fmt::Debug + Send + 'static>(
    mut sub: impl Iterator<Item = Observed<T>> + Send + 'static,
    table: &str,
    feed: ChangeFeed,
) {
    let (end, ended) = within(WAIT, move || (sub.next(), sub.next().is_none()));
    match end {
        Some(Observed::FeedLost { reason }) => {
            assert!(reason.contains(table), "{feed:?}: {reason}")
        }
        other => panic!("{feed:?}: expected FeedLost, got {other:?}"),
    }
    assert!(ended, "{feed:?}: the stream ends after saying it was lost");
}

/// A table dropped and created again while observed (by hand, or by another program's
/// migration) ends the feed with `FeedLost` on either feed, rather than leaving it silent,
/// also while another table takes writes all along (the listener never idle): what the new
/// table commits is not reported until it is set up again, which the next subscription does.
#[test]
fn on_postgres_an_observed_table_dropped_and_created_again_ends_the_feed_with_feed_lost() {
    for (feed, db) in common::each_feed() {
        let _schema = db.schema;
        let store = db.store;
        let posts = store.observe::<Post>().unwrap();
        let users = store.observe::<User>().unwrap();
        let saved = store.save(post("before")).unwrap();
        assert_eq!(next(&posts).element, saved, "{feed:?}");
        // Read as they arrive: a fast writer would otherwise fill the subscription's buffer
        // (4,096 changes) before the feed ends, which is told as missed.
        let reader = std::thread::spawn(move || users.collect::<Vec<Observed<Change<User>>>>());

        let writing = Arc::new(AtomicBool::new(true));
        let writer = std::thread::spawn({
            let (store, writing) = (store.clone(), writing.clone());
            move || {
                let mut saved = 0;
                while writing.load(Ordering::SeqCst) {
                    store
                        .save(common::user(&format!("writer {saved}")))
                        .unwrap();
                    saved += 1;
                }
                saved
            }
        });
        store
            .conn()
            .unwrap()
            .batch_execute(
                "CREATE TABLE posts_again (LIKE posts INCLUDING ALL); \
                 DROP TABLE posts CASCADE; ALTER TABLE posts_again RENAME TO posts",
            )
            .unwrap();
        assert_ends_with_feed_lost(posts, "posts", feed);
        writing.store(false, Ordering::SeqCst);
        let written = writer.join().unwrap();
        // Every user saved before the feed ended was delivered first, in order.
        let delivered = within(WAIT, move || reader.join().unwrap());
        assert!(
            matches!(delivered.last(), Some(Observed::FeedLost { .. })),
            "{feed:?}"
        );
        assert!(written > 0 && delivered.len() <= written + 1, "{feed:?}");
        for (i, change) in delivered[..delivered.len() - 1].iter().enumerate() {
            match change {
                Observed::Change(change) => {
                    assert_eq!(change.element.username, format!("writer {i}"), "{feed:?}")
                }
                other => panic!("{feed:?}: expected a change, got {other:?}"),
            }
        }

        assert_posts_observed_again(&store, feed);
    }
}

/// The listener watches only what its live subscriptions want, and a table dropped for good
/// has nothing to report: a table whose subscription ended, dropped and created again, and an
/// observed table dropped, leave the other subscriptions' feed alone.
#[test]
fn on_postgres_a_table_no_subscription_wants_or_dropped_for_good_leaves_the_feed_alone() {
    for (feed, db) in common::each_feed() {
        let _schema = db.schema;
        let store = db.store;
        drop(store.observe::<Comment>().unwrap());
        let reactions = store.observe::<Reaction>().unwrap();
        let posts = store.observe::<Post>().unwrap();
        store
            .conn()
            .unwrap()
            .batch_execute(
                "CREATE TABLE comments_again (LIKE comments INCLUDING ALL); \
                 DROP TABLE comments CASCADE; ALTER TABLE comments_again RENAME TO comments; \
                 DROP TABLE reactions CASCADE",
            )
            .unwrap();
        // Past two checks of the listener.
        std::thread::sleep(Duration::from_millis(2500));
        assert!(reactions.try_recv().is_none(), "{feed:?}");
        let saved = store.save(post("after")).unwrap();
        assert_eq!(next(&posts).element, saved, "{feed:?}");
    }
}

/// An observed table whose observe triggers were disabled (`ALTER TABLE .. DISABLE TRIGGER`)
/// does not report its changes: the feed ends with `FeedLost`. The lost subscription, even
/// kept, no longer wants the table, so another table's next subscription lives on; the next
/// subscription to the table enables its triggers again.
#[test]
fn on_postgres_an_observed_tables_triggers_disabled_end_the_feed_with_feed_lost() {
    for (feed, db) in common::each_feed() {
        let _schema = db.schema;
        let store = db.store;
        let posts = store.observe::<Post>().unwrap();
        store
            .conn()
            .unwrap()
            .batch_execute("ALTER TABLE posts DISABLE TRIGGER USER")
            .unwrap();
        match posts.recv_timeout(WAIT) {
            Some(Observed::FeedLost { reason }) => {
                assert!(reason.contains("posts"), "{feed:?}: {reason}")
            }
            other => panic!("{feed:?}: expected FeedLost, got {other:?}"),
        }

        let users = store.observe::<User>().unwrap();
        // Past two checks of the new listener, `posts` still without working triggers.
        std::thread::sleep(Duration::from_millis(2500));
        let saved = store.save(common::user("after")).unwrap();
        match users.recv_timeout(WAIT) {
            Some(Observed::Change(change)) => assert_eq!(change.element, saved, "{feed:?}"),
            other => panic!("{feed:?}: the users subscription: expected a change, got {other:?}"),
        }

        assert_posts_observed_again(&store, feed);
        drop(posts);
    }
}

/// Writes of a session with `session_replication_role = replica` (how logical replication's
/// apply workers, and some restore tools, write) are reported on either feed: the trigger
/// feed's triggers fire always, not only where changes originate, as the logical feed reads
/// them from the log like any other.
#[test]
fn on_postgres_a_replica_sessions_writes_are_reported() {
    for (feed, db) in common::each_feed() {
        let posts = db.store.observe::<Post>().unwrap();
        let written = post("applied by a replica");
        common::insert_as_replica(db.url(), &written);
        match posts.recv_timeout(WAIT) {
            Some(Observed::Change(change)) => assert_eq!(change.element, written, "{feed:?}"),
            other => panic!("{feed:?}: expected the replica's insert, got {other:?}"),
        }
    }
}

/// A table created after an `observe_all` began does not report its changes to it: the feed
/// ends with `FeedLost` naming the table, rather than leaving its rows unreported, and the
/// next `observe_all` takes it in.
#[test]
fn on_postgres_a_table_created_after_observe_all_began_ends_its_feed_with_feed_lost() {
    for (feed, db) in common::each_feed() {
        let _schema = db.schema;
        let store = db.store;
        let everything = store.observe_all().unwrap();
        let mut conn = store.conn().unwrap();
        conn.batch_execute("CREATE TABLE remarks (id INTEGER PRIMARY KEY, note TEXT)")
            .unwrap();
        assert_ends_with_feed_lost(everything, "remarks", feed);

        let everything = store.observe_all().unwrap();
        conn.batch_execute("INSERT INTO remarks VALUES (1, 'seen')")
            .unwrap();
        match everything.recv_timeout(WAIT) {
            Some(Observed::Change(change)) => {
                assert_eq!(
                    (&*change.table, change.op),
                    ("remarks", Op::Insert),
                    "{feed:?}"
                )
            }
            other => panic!("{feed:?}: expected the new table's change, got {other:?}"),
        }
    }
}

/// A table created after an `observe_all` began, written, and set up at once by another
/// subscription (before the listener's check could find it unreported) ends the `observe_all`
/// with `FeedLost`: the row written before was never reported to it. The new subscription
/// lives on.
#[test]
fn on_postgres_a_table_set_up_after_observe_all_missed_its_rows_ends_that_feed() {
    for (feed, db) in common::each_feed() {
        let _schema = db.schema;
        let store = db.store;
        let mut conn = store.conn().unwrap();
        conn.batch_execute("DROP TABLE reactions").unwrap();
        let everything = store.observe_all().unwrap();
        conn.batch_execute(
            &Schema::new()
                .model::<Reaction>()
                .create_sql(Dialect::Postgres),
        )
        .unwrap();
        let parent = store.save(post("reacted to")).unwrap();
        let reaction = |emoji: &str| Reaction {
            post_id: parent.id,
            emoji: emoji.into(),
            ..Reaction::default()
        };
        store.save(reaction("unreported")).unwrap();
        let reactions = store.observe::<Reaction>().unwrap();

        let items: Vec<_> = within(WAIT, move || everything.collect());
        match items.last() {
            Some(Observed::FeedLost { reason }) => {
                assert!(reason.contains("reactions"), "{feed:?}: {reason}")
            }
            other => panic!("{feed:?}: expected FeedLost, got {other:?}"),
        }
        let saved = store.save(reaction("reported")).unwrap();
        assert_eq!(next(&reactions).element, saved, "{feed:?}");
    }
}

#[test]
fn on_postgres_an_all_tables_subscription_whose_listener_is_lost_ends_with_feed_lost() {
    let Some(db) = common::TestDb::postgres() else {
        return;
    };
    let _schema = db.schema;
    let store = db.store;
    let mut everything = store.observe_all().unwrap();
    store.save(post("before")).unwrap();
    assert!(matches!(
        everything.recv_timeout(WAIT),
        Some(Observed::Change(_))
    ));
    assert_eq!(terminate_listener(&store), 1);
    let (end, after) = within(WAIT, move || (everything.next(), everything.next()));
    assert!(
        matches!(end, Some(Observed::FeedLost { .. })),
        "expected FeedLost, got {end:?}"
    );
    assert!(after.is_none(), "the stream ends after saying it was lost");
}

#[test]
fn on_postgres_a_live_query_whose_listener_is_lost_fails_with_feed_lost_at_once() {
    use common::models::posts;
    let Some(db) = common::TestDb::postgres() else {
        return;
    };
    let _schema = db.schema;
    let store = db.store;
    let mut top = store
        .observe_query::<Post>(|q| q.filter(posts::rating.gt(4)))
        .unwrap();
    assert!(top.recv().unwrap().is_empty(), "the first result");
    assert_eq!(terminate_listener(&store), 1);
    let started = std::time::Instant::now();
    let (polled, blocking, ended) = within(WAIT, move || {
        let polled = top.recv_timeout(Duration::from_secs(60));
        let blocking = top.recv();
        let ended = top.next();
        (polled, blocking, top.next().is_none() && ended.is_some())
    });
    assert!(
        matches!(polled, Some(Err(Error::FeedLost { .. }))),
        "{polled:?}"
    );
    assert!(
        matches!(blocking, Err(Error::FeedLost { .. })),
        "{blocking:?}"
    );
    assert!(ended, "the iterator yields the error once, then ends");
    assert!(started.elapsed() < WAIT, "promptly");
}

/// A store whose pool holds one connection, and whose callers give up waiting for it quickly.
fn pool_of_one(url: &str) -> Store {
    Store::builder(url)
        .migrations(datastore::embed_migrations!())
        .pool_size(1)
        .connection_timeout(Duration::from_millis(300))
        .open()
        .unwrap()
}

/// Inside `store.transaction` the pool's one connection is taken: every way to subscribe,
/// and a live query's first result, must do without it.
fn subscribing_needs_no_pooled_connection(store: Store) {
    use common::models::posts;
    let existing = store.save(post("existing")).unwrap();
    let (posts, one, rated, everything, mut query) = store
        .transaction(|tx| {
            let posts = store.observe::<Post>()?;
            let one = store.observe_id::<Post>(&existing.id)?;
            let rated = store.observe_where(|p: &Post| p.rating > 0)?;
            let everything = store.observe_all()?;
            let mut query = store.observe_query::<Post>(|q| q.order(posts::title.asc()))?;
            let first: Vec<String> = query.recv()?.into_iter().map(|p| p.title).collect();
            assert_eq!(first, ["existing"], "the committed rows");
            tx.save(post("inside"))?;
            Ok((posts, one, rated, everything, query))
        })
        .unwrap();
    assert_eq!(next(&posts).element.title, "inside");
    assert_eq!(next(&rated).element.title, "inside");
    assert_quiet(&one);
    assert!(matches!(
        everything.recv_timeout(WAIT),
        Some(Observed::Change(change)) if change.table == "posts"
    ));
    let after: Vec<String> = query
        .recv_timeout(WAIT)
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|p| p.title)
        .collect();
    assert_eq!(after, ["existing", "inside"]);
}

#[test]
fn subscribing_inside_a_transaction_with_a_pool_of_one_never_waits_for_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let store = pool_of_one(&dir.path().join("one.db").display().to_string());
    subscribing_needs_no_pooled_connection(store);
}

#[test]
fn subscribing_inside_a_transaction_with_a_pool_of_one_never_waits_for_the_pool_on_postgres() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    let schema = common::PgSchema::new(&url);
    subscribing_needs_no_pooled_connection(pool_of_one(schema.url()));
}

/// An `observe_query` whose read fails after it took the changes off its queue (the pool's one
/// connection is taken, and waiting for it times out) reads again on the next call, with no new
/// commit: the changes it took are not forgotten.
fn a_failed_query_read_is_retried_at_once(store: Store) {
    use common::models::posts;
    let mut query = store
        .observe_query::<Post>(|q| q.order(posts::title.asc()))
        .unwrap();
    assert!(query.recv().unwrap().is_empty());
    let mut held = store.conn().unwrap();
    let saved = held.save(post("while held")).unwrap();
    match query.recv_timeout(WAIT) {
        Some(Err(Error::Connection { .. })) => {}
        other => panic!("expected the pool's wait to time out, got {other:?}"),
    }
    drop(held);
    // Nothing was committed since, so a call that waited for a commit would find none; the
    // read again comes a tenth of a second after the failure.
    let again = query
        .recv_timeout(Duration::from_secs(2))
        .expect("a read again")
        .unwrap();
    assert_eq!(again, vec![saved]);
}

#[test]
fn a_failed_query_read_is_retried_at_once_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = pool_of_one(&dir.path().join("one.db").display().to_string());
    a_failed_query_read_is_retried_at_once(store);
}

#[test]
fn a_failed_query_read_is_retried_at_once_on_postgres() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    let schema = common::PgSchema::new(&url);
    a_failed_query_read_is_retried_at_once(pool_of_one(schema.url()));
}

/// A model with JSON both ways: a non-null document and a nullable one.
#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Doc {
    #[primary_key]
    pub id: Id,
    pub value: serde_json::Value,
    pub maybe: Option<serde_json::Value>,
}

/// A JSON value nested `depth` levels deep (arrays and objects in turn).
fn nested(depth: usize) -> serde_json::Value {
    (1..depth).fold(serde_json::json!([1]), |inner, level| {
        if level % 2 == 0 {
            serde_json::json!([inner])
        } else {
            serde_json::json!({ "k": inner })
        }
    })
}

/// What `save` accepts (nesting up to 100 levels), JSON's null in a non-null column, and
/// `Some(null)` against `None` in a nullable one, arrive as committed.
fn json_values_arrive_as_committed(store: Store) {
    use serde_json::{json, Value};
    let docs = store.observe::<Doc>().unwrap();
    let rows = [
        (Value::Null, None),
        (json!({ "a": null }), Some(Value::Null)),
        (json!("null"), Some(json!(null))),
        (nested(100), Some(nested(100))),
        (json!([1.5, "x", true]), Some(json!({}))),
    ];
    for (value, maybe) in rows {
        let saved = store
            .save(Doc {
                value,
                maybe,
                ..Doc::default()
            })
            .unwrap();
        match docs.recv_timeout(WAIT) {
            Some(Observed::Change(change)) => assert_eq!(change.element, saved),
            other => panic!("expected {saved:?}, got {other:?}"),
        }
    }
    assert_quiet(&docs);
}

#[test]
fn json_values_arrive_as_committed_on_sqlite() {
    let store = Store::builder(":memory:")
        .schema(Schema::new().model::<Doc>())
        .open()
        .unwrap();
    json_values_arrive_as_committed(store);
}

#[test]
fn json_values_arrive_as_committed_on_postgres() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    let schema = common::PgSchema::new(&url);
    let store = Store::builder(schema.url())
        .schema(Schema::new().model::<Doc>())
        .open()
        .unwrap();
    json_values_arrive_as_committed(store);
}

per_backend! {
    each_feed fn a_default_profile_with_a_json_null_arrives_as_committed(store) {
        use common::models::Profile;
        let user = store.save(common::user("json")).unwrap();
        let profiles = store.observe::<Profile>().unwrap();
        let saved = store
            .save(Profile { user_id: user.id, ..Profile::default() })
            .unwrap();
        assert_eq!(next(&profiles).element, saved);
    }
}

/// A change whose stored payload cannot be read is reported, never dropped.
#[test]
fn on_postgres_a_change_whose_payload_does_not_parse_is_reported() {
    let Some(db) = common::TestDb::postgres_with(ChangeFeed::Triggers) else {
        return;
    };
    let _schema = db.schema;
    let store = db.store;
    let posts = store.observe::<Post>().unwrap();
    // Every payload stored from now on is garbage (as a broken or hostile extension of the
    // database could make it).
    store
        .conn()
        .unwrap()
        .batch_execute(
            "CREATE FUNCTION mangle() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN NEW.payload := 'not a change'; RETURN NEW; END $$;
             CREATE TRIGGER mangle BEFORE INSERT ON datastore_change_payloads
             FOR EACH ROW EXECUTE FUNCTION mangle();",
        )
        .unwrap();
    // Large enough for today's trigger to store it too.
    store
        .save(Post {
            body: Some("x".repeat(10_000)),
            ..post("mangled")
        })
        .unwrap();
    match posts.recv_timeout(WAIT) {
        Some(Observed::Undecodable { table, .. }) => assert_eq!(table, "posts"),
        other => panic!("expected Undecodable, got {other:?}"),
    }
}

per_backend! {
    each_feed fn live_queries_read_their_results_side_by_side(store) {
        // The feed started and a pooled connection opened first: what is timed below is the
        // wait for the other live query, not what the store's first subscription sets up.
        drop(store.observe::<Post>().unwrap());
        store.count::<Post>().unwrap();
        // A live query whose result takes long to read (its query is slow to build, but for
        // the first time, when the store asks which tables it reads); once it is made, its
        // first result is being read.
        let (made, reading) = std::sync::mpsc::channel();
        let slow = {
            let store = store.clone();
            std::thread::spawn(move || {
                let built = std::sync::atomic::AtomicUsize::new(0);
                let mut slow = store
                    .observe_query::<Post>(move |q| {
                        if built.fetch_add(1, Ordering::SeqCst) > 0 {
                            std::thread::sleep(Duration::from_millis(1500));
                        }
                        q
                    })
                    .unwrap();
                made.send(()).unwrap();
                slow.recv().unwrap()
            })
        };
        reading.recv().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let started = std::time::Instant::now();
        let mut quick = store.observe_query::<Post>(|q| q).unwrap();
        assert_eq!(quick.recv().unwrap(), vec![]);
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "the quick live query waited for the slow one: {:?}",
            started.elapsed()
        );
        assert_eq!(slow.join().unwrap(), vec![]);
    }
}

/// Text is captured as UTF-8 bytes read straight from SQLite's values when the database is
/// UTF-8, and converted when it is not: a database created in UTF-16 delivers the same rows.
#[test]
fn text_in_a_utf16_database_arrives_as_it_was_saved() {
    use datastore::diesel::{Connection, RunQueryDsl, SqliteConnection};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("utf16.db").display().to_string();
    // The encoding is fixed when the database's first table is created.
    SqliteConnection::establish(&path)
        .unwrap()
        .batch_execute("PRAGMA encoding = 'UTF-16le'; CREATE TABLE made_utf16 (x)")
        .unwrap();
    let store = Store::open(path.clone(), datastore::embed_migrations!()).unwrap();
    #[derive(datastore::diesel::QueryableByName)]
    struct Encoding {
        #[diesel(sql_type = datastore::diesel::sql_types::Text)]
        encoding: String,
    }
    let encoding: Vec<Encoding> = datastore::diesel::sql_query("PRAGMA encoding")
        .load(&mut SqliteConnection::establish(&path).unwrap())
        .unwrap();
    assert_eq!(encoding[0].encoding, "UTF-16le");
    let posts = store.observe::<Post>().unwrap();
    let saved = store.save(post("héllo, wörld ✓ 日本")).unwrap();
    assert_eq!(next(&posts).element, saved);
    let edited = store
        .save(Post {
            body: Some("ünïcode body 🦀".into()),
            ..saved
        })
        .unwrap();
    let change = next(&posts);
    assert_eq!((change.op, change.element), (Op::Update, edited));
}

per_backend! {
    each_feed fn several_subscriptions_of_one_model_each_receive_every_change_whole(store) {
        // Read on threads of their own: the first to reach a row decodes it, the others are
        // handed clones of it, and each must still see every change as committed.
        let readers: Vec<_> = (0..4).map(|_| store.observe::<Post>().unwrap()).collect();
        let even = store.observe_where::<Post>(|post| post.rating % 2 == 0).unwrap();
        let unread = store.observe::<Post>().unwrap(); // holds its changes, never reads them
        let comments = store.observe::<Comment>().unwrap();
        let rows: Vec<Post> = (0..300).map(|i| common::post(&format!("shared {i}"), i)).collect();
        let inserted = store.insert_all(rows).unwrap();
        let edited = store
            .save(Post {
                title: "edited".into(),
                ..inserted[7].clone()
            })
            .unwrap();
        store.delete(&edited).unwrap();
        let expected: Vec<(Op, Post)> = inserted
            .iter()
            .map(|post| (Op::Insert, post.clone()))
            .chain([(Op::Update, edited.clone()), (Op::Delete, edited)])
            .collect();
        let reading: Vec<_> = readers
            .into_iter()
            .map(|posts| {
                let count = expected.len();
                std::thread::spawn(move || {
                    let read: Vec<(Op, Post)> = (0..count)
                        .map(|_| {
                            let change = next(&posts);
                            (change.op, change.element)
                        })
                        .collect();
                    assert_quiet(&posts);
                    read
                })
            })
            .collect();
        for reader in reading {
            assert_eq!(reader.join().unwrap(), expected);
        }
        for (op, post) in expected.iter().filter(|(_, post)| post.rating % 2 == 0) {
            let change = next(&even);
            assert_eq!((change.op, &change.element), (*op, post));
        }
        assert_quiet(&even);
        assert_quiet(&comments);
        drop(unread);
    }
}

/// Text that SQLite holds as bytes that are not UTF-8 arrives made valid (U+FFFD), and a
/// blob beside text arrives byte for byte, whether or not the commit's bytes read whole as
/// UTF-8 (here they do: a text value ending in half a character, and a blob completing it).
#[test]
fn text_that_is_not_utf8_and_blobs_beside_text_arrive_as_sqlite_holds_them() {
    let (_dir, store) = file_store();
    let profiles = store.observe::<Profile>().unwrap();
    let user = store.save(common::user("bytes")).unwrap();
    let saved = store
        .save(Profile {
            user_id: user.id,
            bio: Some("café ✓".into()),
            avatar: Some(vec![0xff, 0x00, 0xfe]),
            ..Profile::default()
        })
        .unwrap();
    assert_eq!(next(&profiles).element, saved);
    let id = saved.id.to_string();
    let raw = |set: &str| {
        store
            .conn()
            .unwrap()
            .batch_execute(&format!("UPDATE profiles SET {set} WHERE id = '{id}'"))
            .unwrap();
        next(&profiles).element
    };
    let invalid = raw("bio = CAST(x'ff41' AS TEXT), avatar = NULL");
    assert_eq!(invalid.bio.as_deref(), Some("\u{FFFD}A"));
    assert_eq!(invalid.avatar, None);
    // The row before the change is captured too: made valid first, so that the commit's
    // bytes below read whole as UTF-8, `E2 82 AC` being "€", split between the text and the
    // blob after it.
    assert_eq!(raw("bio = 'ok'").bio.as_deref(), Some("ok"));
    let split = raw("bio = CAST(x'e2' AS TEXT), avatar = x'82ac'");
    assert_eq!(split.bio.as_deref(), Some("\u{FFFD}"));
    assert_eq!(split.avatar, Some(vec![0x82, 0xac]));
    assert_eq!(split.user_id, user.id, "the values around them are whole");
}

/// A note, for a table created under another spelling of its name.
#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Memo {
    #[primary_key]
    pub id: Id,
    pub text: String,
}

/// A store on a SQLite file whose `memos` table was created as `Memos` (by a hand-written
/// migration, or another tool): SQLite names a table without regard to ASCII case, and
/// reports its changes under the name its schema holds.
fn store_with_memos_created_as_capitalized() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("memos.db").display().to_string();
    let created = Schema::new()
        .model::<Memo>()
        .create_sql(datastore::schema::Dialect::Sqlite)
        .replace("\"memos\"", "\"Memos\"");
    assert!(created.contains("\"Memos\""), "{created}");
    let mut conn = datastore::diesel::SqliteConnection::establish(&path).unwrap();
    conn.batch_execute(&created).unwrap();
    drop(conn);
    let store = Store::builder(&path).open().unwrap();
    (dir, store)
}

fn memo(text: &str) -> Memo {
    Memo {
        text: text.into(),
        ..Memo::default()
    }
}

/// The table of the next change `observe_all` delivers.
fn next_table(all: &datastore::observe::AllSubscription) -> String {
    match all.recv_timeout(WAIT) {
        Some(Observed::Change(change)) => change.table,
        other => panic!("expected a change, got {other:?}"),
    }
}

/// A model's table created under another case of its name is observed: its subscription
/// receives its changes, and `observe_all` names the table as the schema holds it.
#[test]
fn a_table_created_under_another_case_of_its_name_is_observed() {
    let (_dir, store) = store_with_memos_created_as_capitalized();
    let memos = store.observe::<Memo>().unwrap();
    let all = store.observe_all().unwrap();
    let saved = store.save(memo("seen")).unwrap();
    let change = next(&memos);
    assert_eq!((change.op, change.element), (Op::Insert, saved));
    assert_eq!(next_table(&all), "Memos");
}

/// `observe_all` names a change's table the same way whatever else subscribes: as the
/// database's schema holds the name, not as some model spells it. Before, the table created
/// as `Memos` came as `Memos` while only `observe_all` subscribed, and as `memos` once a
/// model's subscription of `memos` existed.
#[test]
fn observe_all_names_a_table_as_the_schema_holds_it_whatever_else_subscribes() {
    let (_dir, store) = store_with_memos_created_as_capitalized();
    let all = store.observe_all().unwrap();
    store.save(memo("alone")).unwrap();
    assert_eq!(next_table(&all), "Memos", "only observe_all subscribes");
    let memos = store.observe::<Memo>().unwrap();
    store.save(memo("with a model's subscription")).unwrap();
    assert_eq!(next(&memos).element.text, "with a model's subscription");
    assert_eq!(
        next_table(&all),
        "Memos",
        "a model of `memos` subscribes too"
    );
    drop(memos);
    store.save(memo("alone again")).unwrap();
    assert_eq!(next_table(&all), "Memos", "its subscription ended");
}

/// A live view of a model whose table was created under another case of its name follows
/// the table: its changes, named as the schema holds the name, are the model's.
#[test]
fn a_live_view_of_a_table_created_under_another_case_of_its_name_follows_it() {
    let (_dir, store) = store_with_memos_created_as_capitalized();
    let mut live = store.live::<Memo>().subscribe().unwrap();
    assert!(live.recv().unwrap().is_empty());
    let saved = store.save(memo("followed")).unwrap();
    let rows = live
        .recv_timeout(WAIT)
        .expect("a snapshot with the new memo")
        .unwrap()
        .into_vec();
    assert_eq!(rows, [saved]);
}

/// A store on a SQLite file whose `memos` table's columns were created as `ID` and `Text`
/// (by hand, or by an older migration): SQLite names columns without regard to ASCII case,
/// so the store's own statements use them as the model's `id` and `text`.
fn store_with_memo_columns_created_capitalized() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("memos.db").display().to_string();
    let created = Schema::new()
        .model::<Memo>()
        .create_sql(datastore::schema::Dialect::Sqlite)
        .replace("\"id\"", "\"ID\"")
        .replace("\"text\"", "\"Text\"");
    assert!(
        created.contains("\"ID\"") && created.contains("\"Text\""),
        "{created}"
    );
    let mut conn = datastore::diesel::SqliteConnection::establish(&path).unwrap();
    conn.batch_execute(&created).unwrap();
    drop(conn);
    let store = Store::builder(&path).open().unwrap();
    (dir, store)
}

/// A model's subscription decodes the rows of a table whose columns were created under
/// another case of their names: SQLite's columns, like its tables, match without regard to
/// ASCII case. Before, the subscription was refused: "table memos has no column text: run the
/// migrations".
#[test]
fn a_subscription_decodes_columns_created_under_another_case_of_their_names() {
    let (_dir, store) = store_with_memo_columns_created_capitalized();
    let memos = store.observe::<Memo>().unwrap();
    let mut saved = store.save(memo("first")).unwrap();
    let change = next(&memos);
    assert_eq!((change.op, &change.element), (Op::Insert, &saved));
    saved.text = "edited".into();
    let saved = store.save(saved).unwrap();
    let change = next(&memos);
    assert_eq!((change.op, &change.element), (Op::Update, &saved));
    store.delete(&saved).unwrap();
    let change = next(&memos);
    assert_eq!((change.op, change.element), (Op::Delete, saved));
    assert_quiet(&memos);
}

/// A live view over a table whose columns were created under another case of their names
/// follows its inserts, updates and deletes.
#[test]
fn a_live_view_follows_columns_created_under_another_case_of_their_names() {
    let (_dir, store) = store_with_memo_columns_created_capitalized();
    let mut live = store.live::<Memo>().subscribe().unwrap();
    assert!(live.recv().unwrap().is_empty());
    let snapshot = |live: &mut datastore::observe::LiveSubscription<Memo>| {
        live.recv_timeout(WAIT)
            .expect("a snapshot")
            .unwrap()
            .into_vec()
    };
    let mut saved = store.save(memo("first")).unwrap();
    assert_eq!(snapshot(&mut live), [saved.clone()]);
    saved.text = "edited".into();
    let saved = store.save(saved).unwrap();
    assert_eq!(snapshot(&mut live), std::slice::from_ref(&saved));
    store.delete(&saved).unwrap();
    assert!(snapshot(&mut live).is_empty());
}

/// A subscription read from two threads holds no writer up: one thread's filter may take as
/// long as it likes over a commit while the other waits for the next. Before, the other
/// thread, woken by the next commit, took it and waited, holding the queue's lock, for the
/// first to finish reading; a writer publishing a commit then waited on that lock (and a
/// filter that wrote to the store deadlocked).
#[test]
fn a_slow_filter_on_one_reading_thread_holds_no_writer_up() {
    use std::sync::{mpsc, Mutex};
    let (_dir, store) = file_store();
    let (entered, filtering) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    let (entered, released) = (Mutex::new(entered), Mutex::new(released));
    let users = store
        .observe_where::<User>(move |user| {
            if user.username == "slow" {
                entered.lock().unwrap().send(()).unwrap();
                let _ = released
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(30));
            }
            true
        })
        .unwrap();
    let (written, mut names) = std::thread::scope(|scope| {
        let readers: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| users.recv_timeout(Duration::from_secs(30))))
            .collect();
        // Both wait for a commit; the one that takes it runs the slow filter.
        std::thread::sleep(Duration::from_millis(200));
        store.save(common::user("slow")).unwrap();
        filtering.recv_timeout(Duration::from_secs(10)).unwrap();
        // The other is woken by this one.
        store.save(common::user("next")).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let (done, writer_done) = mpsc::channel();
        let store = &store;
        let writer = scope.spawn(move || {
            store.save(common::user("writer")).unwrap();
            done.send(()).unwrap();
        });
        let written = writer_done.recv_timeout(Duration::from_secs(5)).is_ok();
        release.send(()).unwrap();
        writer.join().unwrap();
        let names: Vec<String> = readers
            .into_iter()
            .map(|reader| match reader.join().unwrap() {
                Some(Observed::Change(change)) => change.element.username,
                other => panic!("expected a change, got {other:?}"),
            })
            .collect();
        (written, names)
    });
    assert!(
        written,
        "the writer's commit waited for a subscriber's filter"
    );
    names.sort();
    assert_eq!(names, ["next", "slow"]);
}
