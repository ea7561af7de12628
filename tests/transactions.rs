//! `store.transaction`: what happens inside one when it is misused, and when the database
//! gives it up.

mod common;

use std::time::{Duration, Instant};

use common::models::{posts, Post};
use common::{post, user};
use datastore::diesel::connection::SimpleConnection;
use datastore::prelude::*;
use datastore::Error;

/// On SQLite a file (WAL), where readers never wait for a writer. (On an in-memory database the
/// connections share one lock: a read through the store waits for the transaction too.)
mod a_write_through_the_store_inside_its_transaction_fails_at_once {
    use super::*;

    #[test]
    fn sqlite() {
        let (_dir, store) = common::file_store();
        fails_at_once(&store);
    }

    #[test]
    fn postgres() {
        let Some(db) = common::TestDb::postgres() else {
            return;
        };
        let _schema = db.schema;
        fails_at_once(&db.store);
    }
}

fn fails_at_once(store: &Store) {
    let kept = store.save(post("kept", 1)).unwrap();
    let editor = store.save(user("editor")).unwrap();
    let started = Instant::now();
    store
        .transaction(|tx| {
            tx.save(post("inside", 2))?;
            let outside = [
                store.save(post("outside", 3)).map(drop),
                store.insert_all(vec![post("outside", 3)]).map(drop),
                store.save_graph(post("outside", 3)).map(drop),
                store.delete(&kept),
                store.delete_by_id::<Post>(&kept.id),
                store.delete_where::<Post, _>(posts::rating.eq(1)).map(drop),
                kept.link_editors(&mut store.conn()?, &editor).map(drop),
                store.transaction(|_| Ok(())),
            ];
            for (i, result) in outside.into_iter().enumerate() {
                let err = result.expect_err("a write outside the transaction");
                assert!(
                    matches!(err, Error::WriteOutsideTransaction),
                    "{i}: {err:?}"
                );
                assert!(err.to_string().contains("closure's connection"), "{err}");
            }
            // Reads through the store work, on other connections: committed data only.
            assert_eq!(store.count::<Post>()?, 1);
            assert_eq!(store.find::<Post>(&kept.id)?, Some(kept.clone()));
            assert_eq!(kept.editors(&mut store.conn()?)?, vec![]);
            Ok(())
        })
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "at once, not after the busy timeout: {:?}",
        started.elapsed()
    );
    let titles: Vec<String> = store
        .all::<Post>()
        .unwrap()
        .into_iter()
        .map(|p| p.title)
        .collect();
    assert_eq!(titles, ["kept", "inside"], "only the transaction's write");
    assert_eq!(kept.editors(&mut store.conn().unwrap()).unwrap(), vec![]);

    // Afterwards the same connections write again.
    let mut conns: Vec<_> = (0..3).map(|_| store.conn().unwrap()).collect();
    for conn in &mut conns {
        conn.save(post("after", 4)).unwrap();
    }
    drop(conns);
    kept.link_editors(&mut store.conn().unwrap(), &editor)
        .unwrap();
    assert_eq!(store.count::<Post>().unwrap(), 5);
}

/// A store on a new SQLite file with a pool of one connection, so that a size limit set on it
/// (`PRAGMA max_page_count`, a setting of the connection) holds for every call.
fn file_store_of_one_connection() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path().join("full.db"))
        .migrations(datastore::embed_migrations!())
        .pool_size(1)
        .open()
        .unwrap();
    (dir, store)
}

/// Caps the file at the pages it holds now: the next write that needs another page fails with
/// "database or disk is full".
fn cap(conn: &mut datastore::AnyConnection) {
    conn.batch_execute("PRAGMA max_page_count = 1").unwrap();
}

fn uncap(store: &Store) {
    store
        .conn()
        .unwrap()
        .batch_execute("PRAGMA max_page_count = 1073741823")
        .unwrap();
}

/// More than the capped file can take: a row larger than a page. (A statement of several rows
/// that fails for want of space is rolled back alone, from its statement journal; a statement
/// without one takes the whole transaction with it.)
fn too_large_to_fit() -> Vec<Post> {
    vec![post(&"x".repeat(5000), 0)]
}

fn is_lost_to_a_full_database(err: &Error) -> bool {
    matches!(err, Error::TransactionAborted { cause: Some(cause) } if matches!(**cause, Error::StorageFull { .. }))
}

/// What the closure does once its transaction is lost.
#[derive(Debug, Clone, Copy)]
enum Then {
    /// Swallows the errors and returns `Ok`.
    CarriesOn,
    /// Returns the error of the statement that failed.
    ReturnsIt,
    /// Returns an error of its own.
    FailsOtherwise,
}

#[test]
fn a_transaction_sqlite_rolled_back_by_itself_stays_over_and_reports_why() {
    for then in [Then::CarriesOn, Then::ReturnsIt, Then::FailsOtherwise] {
        let (_dir, store) = file_store_of_one_connection();
        let changes = store.observe_all().unwrap();
        let result: datastore::Result<()> = store.transaction(|tx| {
            tx.save(post("before the fault", 1))?;
            cap(tx);
            let full = tx.insert_all(too_large_to_fit()).unwrap_err();
            assert!(
                matches!(full, Error::StorageFull { .. }),
                "{then:?}: {full:?}"
            );
            // Every later statement fails, saying why: writes, reads, savepoints.
            let after = [
                tx.save(post("after the fault", 2)).map(drop),
                tx.count::<Post>().map(drop),
                tx.transaction(|tx| tx.save(post("in a savepoint", 3)).map(drop)),
            ];
            for (i, result) in after.into_iter().enumerate() {
                let Err(err) = result else {
                    panic!("{then:?} {i}: the transaction is over")
                };
                assert!(is_lost_to_a_full_database(&err), "{then:?} {i}: {err:?}");
                assert!(err.to_string().contains("rolled back"), "{err}");
            }
            match then {
                Then::CarriesOn => Ok(()),
                Then::ReturnsIt => Err(full),
                Then::FailsOtherwise => Err(Error::NotFound {
                    table: "posts".into(),
                    key: "x".into(),
                }),
            }
        });
        assert!(
            matches!(result, Err(Error::StorageFull { .. })),
            "{then:?}: the caller gets the cause: {result:?}"
        );
        uncap(&store);
        assert_eq!(
            store.count::<Post>().unwrap(),
            0,
            "{then:?}: nothing written"
        );
        assert!(
            changes.recv_timeout(Duration::from_millis(20)).is_none(),
            "{then:?}: nothing observed"
        );
        // The connection (the pool's only one) went back as good as new.
        store.transaction(|tx| tx.save(post("later", 4))).unwrap();
        assert_eq!(store.count::<Post>().unwrap(), 1);
        assert!(changes.recv_timeout(Duration::from_secs(1)).is_some());
    }
}

/// A pooled connection its user left inside a transaction begun with SQL of their own (Diesel
/// knows nothing of it) is not handed on inside it: the next user's write is committed, not
/// swallowed by that transaction (and, on SQLite, its write lock is not kept). The transaction
/// is rolled back as the connection goes back to the pool: on SQLite, which says one is open;
/// on PostgreSQL where a failed statement left it aborted, and where nothing failed (ended
/// unasked as a connection lent by `Store::conn` goes back, at no cost to the store's own).
#[test]
fn a_connection_left_inside_its_users_own_transaction_is_not_handed_on_inside_it() {
    // SQLite: open, holding the write lock.
    let (dir, store) = file_store_of_one_connection();
    store
        .conn()
        .unwrap()
        .batch_execute("BEGIN IMMEDIATE; DELETE FROM posts;")
        .unwrap();
    store.save(post("after", 1)).unwrap();
    let other = saved_once_seen_elsewhere(dir.path().join("full.db"));
    other.save(post("elsewhere", 2)).unwrap();

    // SQLite: left open while another connection of the same thread began and ended a
    // transaction of its own before it went back.
    let (dir, store) = common::file_store();
    {
        let mut left_open = store.conn().unwrap();
        let mut other = store.conn().unwrap();
        left_open
            .batch_execute("BEGIN IMMEDIATE; DELETE FROM posts;")
            .unwrap();
        other.batch_execute("BEGIN; SELECT 1; ROLLBACK;").unwrap();
    }
    store.save(post("after", 1)).unwrap();
    saved_once_seen_elsewhere(dir.path().join("blog.db"));

    // PostgreSQL: aborted by a failed statement of the batch.
    let Some(db) = common::TestDb::postgres_built(|b| b.pool_size(1)) else {
        return;
    };
    let store = &db.store;
    assert!(store
        .conn()
        .unwrap()
        .batch_execute("BEGIN; SELECT 1 / 0;")
        .is_err());
    store.save(post("after", 1)).unwrap();
    let other = saved_once_seen_elsewhere(db.url());

    // PostgreSQL: left open with nothing failed, by a batch, by a query of its own (after a
    // transaction of the store's on the same connection), and inside a Diesel transaction
    // whose own the caller ended and began again.
    store
        .conn()
        .unwrap()
        .batch_execute("BEGIN; DELETE FROM posts;")
        .unwrap();
    store.save(post("after the batch", 2)).unwrap();
    store
        .transaction(|tx| tx.save(post("in a transaction", 3)))
        .unwrap();
    {
        let mut conn = store.conn().unwrap();
        datastore::diesel::RunQueryDsl::execute(
            datastore::diesel::sql_query("start transaction"),
            &mut *conn,
        )
        .unwrap();
    }
    store.save(post("after the query", 4)).unwrap();
    {
        let mut conn = store.conn().unwrap();
        // Diesel reads the end of its transaction from libpq, and has none to commit then.
        let ended = datastore::diesel::Connection::transaction(&mut *conn, |conn| {
            conn.batch_execute("COMMIT")?;
            conn.batch_execute("BEGIN; DELETE FROM posts")
        });
        assert!(ended.is_err(), "{ended:?}");
    }
    store.save(post("after the one begun again", 5)).unwrap();
    assert_eq!(
        other.count::<Post>().unwrap(),
        5,
        "committed, seen elsewhere"
    );

    // PostgreSQL: what that costs. A lent connection that ran SQL that may begin a transaction
    // (a word `BEGIN` or `START`, also where it began none) ends any as it goes back, in a
    // round trip (which gives the session the store's settings again); one that ran none, or
    // Diesel's own transactions, and the store's own connections, do not.
    let ended = |sql: &[String]| {
        sql.iter()
            .filter(|s| s.starts_with("BEGIN; ROLLBACK; "))
            .count()
    };
    let (_, lent) = common::trace::statements(|| {
        store
            .conn()
            .unwrap()
            .batch_execute("BEGIN; COMMIT")
            .unwrap();
    });
    assert_eq!(ended(&lent), 1, "{lent:?}");
    let (_, own) = common::trace::statements(|| {
        store.save(post("through the store", 4)).unwrap();
        let mut conn = store.conn().unwrap();
        conn.count::<Post>().unwrap();
        conn.batch_execute("SELECT 'no transaction begins here'")
            .unwrap();
        datastore::diesel::Connection::transaction(&mut *conn, |conn| {
            conn.count::<Post>()
                .map_err(|_| datastore::diesel::result::Error::RollbackTransaction)
        })
        .unwrap();
    });
    assert_eq!(ended(&own), 0, "{own:?}");
    let (_, after_own) = common::trace::statements(|| {
        let mut conn = store.conn().unwrap();
        conn.count::<Post>().unwrap();
        conn.batch_execute("BEGIN").unwrap();
    });
    assert_eq!(ended(&after_own), 1, "{after_own:?}");
    // Past sixteen queries read, the round trip is spent rather than more reading.
    let (_, many) = common::trace::statements(|| {
        let mut conn = store.conn().unwrap();
        for _ in 0..17 {
            conn.batch_execute("SELECT 1").unwrap();
        }
    });
    assert_eq!(ended(&many), 1, "{many:?}");
    let (_, sixteen) = common::trace::statements(|| {
        let mut conn = store.conn().unwrap();
        for _ in 0..16 {
            conn.batch_execute("SELECT 1").unwrap();
        }
    });
    assert_eq!(ended(&sixteen), 0, "{sixteen:?}");

    // PostgreSQL: a lent connection whose instrumentation its caller replaced tells nothing of
    // what it did: it is dropped, and the pool sets up another.
    let backend = |conn: &mut datastore::AnyConnection| {
        datastore::diesel::RunQueryDsl::get_result::<i32>(
            datastore::diesel::select(datastore::diesel::dsl::sql::<
                datastore::diesel::sql_types::Integer,
            >("pg_backend_pid()")),
            conn,
        )
        .unwrap()
    };
    let replaced = {
        let mut conn = store.conn().unwrap();
        datastore::diesel::Connection::set_instrumentation(
            &mut *conn,
            |_: datastore::diesel::connection::InstrumentationEvent<'_>| {},
        );
        backend(&mut conn)
    };
    assert_ne!(backend(&mut store.conn().unwrap()), replaced);

    // PostgreSQL: a lent connection left in a test transaction, which Diesel does not count as
    // broken, is dropped too.
    let tested = {
        let mut conn = store.conn().unwrap();
        datastore::diesel::Connection::begin_test_transaction(&mut *conn).unwrap();
        backend(&mut conn)
    };
    assert_ne!(backend(&mut store.conn().unwrap()), tested);
}

/// Another store on `url`, which sees the one post saved: it was committed.
fn saved_once_seen_elsewhere(url: impl AsRef<std::ffi::OsStr>) -> Store {
    let other = Store::builder(url)
        .migrations(datastore::embed_migrations!())
        .open()
        .unwrap();
    assert_eq!(
        other.count::<Post>().unwrap(),
        1,
        "committed, seen elsewhere"
    );
    other
}

/// PostgreSQL aborts a transaction at its first failed statement and refuses every later one;
/// `store.transaction` reports that first error, whatever the closure did with it.
#[test]
fn a_transaction_postgres_aborted_stays_over_and_reports_why() {
    let Some(db) = common::TestDb::postgres() else {
        return;
    };
    let _schema = db.schema;
    let store = db.store;
    for then in [Then::CarriesOn, Then::ReturnsIt, Then::FailsOtherwise] {
        let result: datastore::Result<()> = store.transaction(|tx| {
            tx.save(post("before the fault", 1))?;
            let orphan = tx
                .save(common::comment(&post("never saved", 0), "lost"))
                .unwrap_err();
            assert!(orphan.constraint().is_some(), "{orphan:?}");
            let after = [
                tx.save(post("after the fault", 2)).map(drop),
                tx.count::<Post>().map(drop),
            ];
            for (i, result) in after.into_iter().enumerate() {
                let Err(err) = result else {
                    panic!("{then:?} {i}: the transaction is over")
                };
                assert!(
                    matches!(err, Error::TransactionAborted { .. }),
                    "{then:?} {i}: {err:?}"
                );
                assert!(err.to_string().contains("rolled back"), "{err}");
            }
            match then {
                Then::CarriesOn => Ok(()),
                Then::ReturnsIt => Err(orphan),
                Then::FailsOtherwise => tx.count::<Post>().map(drop),
            }
        });
        let err = result.unwrap_err();
        assert_eq!(
            err.constraint().map(|c| c.kind),
            Some(datastore::ConstraintKind::ForeignKey),
            "{then:?}: the caller gets the cause: {err:?}"
        );
        assert_eq!(
            store.count::<Post>().unwrap(),
            0,
            "{then:?}: nothing written"
        );
    }
    // A failure undone by a savepoint leaves the transaction usable: it commits.
    store
        .transaction(|tx| {
            let refused = tx.transaction(|tx| tx.save(common::comment(&post("x", 0), "lost")));
            assert!(refused.unwrap_err().constraint().is_some());
            tx.save(post("kept", 3))
        })
        .unwrap();
    assert_eq!(store.count::<Post>().unwrap(), 1);
}

/// After SQLite rolled a transaction back by itself, a nested transaction is refused; so is the
/// next one, however many follow, even once the database has room again: none of them may
/// start a transaction of its own and commit what the lost one's closure goes on to write.
#[test]
fn a_nested_transaction_after_a_lost_one_never_commits_on_its_own() {
    let (_dir, store) = file_store_of_one_connection();
    let changes = store.observe_all().unwrap();
    let result: datastore::Result<()> = store.transaction(|tx| {
        tx.save(post("before the fault", 1))?;
        cap(tx);
        let full = tx.insert_all(too_large_to_fit()).unwrap_err();
        assert!(matches!(full, Error::StorageFull { .. }), "{full:?}");
        for i in 0..3 {
            let nested = tx.transaction(|tx| {
                tx.batch_execute("PRAGMA max_page_count = 1073741823")?;
                tx.save(post("in a nested transaction", i)).map(drop)
            });
            let err = nested.expect_err("the transaction is over");
            assert!(is_lost_to_a_full_database(&err), "{i}: {err:?}");
        }
        tx.save(post("after the nested ones", 9)).map(drop)
    });
    assert!(
        matches!(result, Err(Error::StorageFull { .. })),
        "the caller gets the cause: {result:?}"
    );
    uncap(&store);
    assert_eq!(store.count::<Post>().unwrap(), 0, "nothing written");
    assert!(
        changes.recv_timeout(Duration::from_millis(20)).is_none(),
        "nothing observed"
    );
    store.transaction(|tx| tx.save(post("later", 4))).unwrap();
    assert_eq!(store.count::<Post>().unwrap(), 1);
}

/// A refusal to write that does not come from a connection the store lent inside its
/// transaction is the database's own, not `WriteOutsideTransaction`: here a transaction a
/// PostgreSQL server runs read-only (as every one on a standby), and one on a SQLite file
/// opened read-only (`mode=ro`), where the transaction begins and its first write is refused.
mod a_database_that_refuses_writes_is_not_a_write_outside_the_transaction {
    use super::*;

    fn refused(error: &Error) {
        assert!(
            !matches!(error, Error::WriteOutsideTransaction),
            "the database's own refusal: {error:?}"
        );
        match error {
            Error::Database(datastore::diesel::result::Error::DatabaseError(_, info)) => {
                let message = info.message();
                assert!(
                    message.contains("readonly") || message.contains("read-only"),
                    "{message}"
                );
            }
            other => panic!("the database's refusal: {other:?}"),
        }
    }

    #[test]
    fn sqlite() {
        let (dir, store) = common::file_store();
        store.save(post("kept", 1)).unwrap();
        let path = dir.path().join("blog.db");
        drop(store);
        let read_only = Store::builder(format!("file:{}?mode=ro", path.display()))
            .open()
            .unwrap();
        assert_eq!(read_only.count::<Post>().unwrap(), 1);
        let error = read_only
            .transaction(|tx| {
                // A read through the store lends nothing to the caller.
                assert_eq!(read_only.count::<Post>()?, 1);
                tx.save(post("never", 2))
            })
            .unwrap_err();
        refused(&error);
        refused(&read_only.save(post("never", 2)).unwrap_err());
    }

    #[test]
    fn postgres() {
        let Some(db) = common::TestDb::postgres() else {
            return;
        };
        let _schema = db.schema;
        let store = &db.store;
        let error = store
            .transaction(|tx| {
                tx.batch_execute("SET TRANSACTION READ ONLY")?;
                // A read through the store lends nothing to the caller.
                assert_eq!(store.count::<Post>()?, 0);
                tx.save(post("never", 2))
            })
            .unwrap_err();
        refused(&error);
        // A connection lent inside a transaction still says where the write went.
        let error = store
            .transaction(|_| store.conn()?.save(post("outside", 3)))
            .unwrap_err();
        assert!(matches!(error, Error::WriteOutsideTransaction), "{error:?}");
        assert_eq!(store.count::<Post>().unwrap(), 0);
    }
}

// A nested transaction whose closure panicked, the panic caught by the transaction's own
// closure, is rolled back when the transaction commits: not released with it, and not left
// open so that the commit only released it (reported committed, rolled back as the
// connection closed).
per_backend! {
    fn a_savepoint_left_open_by_a_caught_panic_is_undone_and_the_rest_commits(store) {
        store
            .transaction(|tx| {
                tx.save(post("kept", 1))?;
                let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    tx.transaction(|tx| -> datastore::Result<()> {
                        tx.save(post("half done", 2))?;
                        panic!("inside the nested transaction")
                    })
                }));
                assert!(caught.is_err());
                Ok(())
            })
            .unwrap();
        let titles: Vec<String> = store.all::<Post>().unwrap().into_iter().map(|p| p.title).collect();
        assert_eq!(titles, ["kept"]);
    }
}
