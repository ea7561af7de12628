//! The async store (feature `async`): its typed methods, transactions, cancellation and
//! streams, on a SQLite file and on PostgreSQL.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::models::{Comment, Post, User};
use common::{comment, post, user};
use datastore::diesel::connection::SimpleConnection;
use datastore::observe::{Observed, Op};
use datastore::prelude::*;
use datastore::{AnyConnection, AsyncStore, Error};
use futures_util::StreamExt;

use common::models::{comments, posts};

/// A fresh store for one test, and what keeps its database alive.
struct TestStore {
    store: AsyncStore,
    _keep: Box<dyn std::any::Any + Send>,
}

fn sqlite_file() -> TestStore {
    let (dir, store) = common::file_store();
    TestStore {
        store: AsyncStore::from(store),
        _keep: Box::new(dir),
    }
}

fn postgres() -> Option<TestStore> {
    postgres_built(|builder| builder)
}

/// [`postgres`], its store built further by `build`.
fn postgres_built(
    build: impl FnOnce(datastore::StoreBuilder) -> datastore::StoreBuilder,
) -> Option<TestStore> {
    let db = common::TestDb::postgres_built(build)?;
    Some(TestStore {
        store: AsyncStore::from(db.store),
        _keep: Box::new(db.schema),
    })
}

/// `async_per_backend!(fn name(store) { .. })`: the async tests `name::sqlite` (a database file)
/// and `name::postgres` (skipped when no server is configured, as every PostgreSQL test).
macro_rules! async_per_backend {
    ($(fn $name:ident($store:ident) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($store: AsyncStore) $body

            #[test]
            fn sqlite() {
                let db = sqlite_file();
                runtime().block_on(run(db.store.clone()));
            }

            #[test]
            fn postgres() {
                let Some(db) = super::postgres() else { return };
                runtime().block_on(run(db.store.clone()));
            }
        }
    )*};
}

/// A call whose connection the server ends while it runs is a lost connection, as on the
/// blocking store; the next call runs on a new one.
#[test]
fn on_postgres_a_connection_lost_in_an_async_call_is_a_connection_error() {
    let Some(db) = postgres() else { return };
    runtime().block_on(async {
        let store = db.store.clone();
        store.save(user("nadia")).await.unwrap();
        let ends_its_session =
            diesel::dsl::sql::<diesel::sql_types::Bool>("pg_terminate_backend(pg_backend_pid())");
        match store.query::<User>(|q| q.filter(ends_its_session)).await {
            Err(Error::Connection {
                source: datastore::ConnectionFailure::Lost(_),
                ..
            }) => {}
            other => panic!("expected a lost connection, got {other:?}"),
        }
        assert_eq!(store.count::<User>().await.unwrap(), 1);
    });
}

/// The server ending the connection of an async transaction (an administrator, a restart) is
/// `Error::Connection` with `ConnectionFailure::Lost`, naming the store's URL, as on the
/// blocking store: nothing was committed, and the store goes on.
#[test]
fn on_postgres_a_connection_lost_in_an_async_transaction_is_a_connection_error() {
    let Some(db) = postgres() else { return };
    runtime().block_on(async {
        let store = db.store.clone();
        let lost: datastore::Result<()> = store
            .transaction(|tx| async move {
                tx.save(user("nadia")).await?;
                tx.run(|conn| {
                    diesel::sql_query("SELECT pg_terminate_backend(pg_backend_pid())")
                        .execute(conn)?;
                    Ok(())
                })
                .await
            })
            .await;
        match lost {
            Err(Error::Connection {
                url,
                source: datastore::ConnectionFailure::Lost(message),
            }) => {
                assert_eq!(url, store.url());
                assert!(message.contains("terminating connection"), "{message}");
            }
            other => panic!("expected a lost connection, got {other:?}"),
        }
        assert_eq!(store.count::<User>().await.unwrap(), 0);
        store.save(user("nadia")).await.unwrap();
    });
}

/// PostgreSQL aborts a transaction at its first failed statement and refuses every later one;
/// an async transaction reports that first error, as the blocking store's, whatever the body
/// did with it.
#[test]
fn on_postgres_an_aborted_async_transaction_reports_why() {
    let Some(db) = postgres() else { return };
    runtime().block_on(async {
        let store = db.store.clone();
        for then in ["carries on", "returns it", "fails otherwise"] {
            let result: datastore::Result<()> = store
                .transaction(|tx| async move {
                    tx.save(post("before the fault", 1)).await?;
                    let orphan = tx
                        .save(comment(&post("never saved", 0), "lost"))
                        .await
                        .unwrap_err();
                    assert!(orphan.constraint().is_some(), "{orphan:?}");
                    let refused = tx.count::<Post>().await.unwrap_err();
                    assert!(
                        matches!(refused, Error::TransactionAborted { .. }),
                        "{then}: {refused:?}"
                    );
                    match then {
                        "carries on" => Ok(()),
                        "returns it" => Err(orphan),
                        _ => tx.save(post("after the fault", 2)).await.map(drop),
                    }
                })
                .await;
            let err = result.unwrap_err();
            assert_eq!(
                err.constraint().map(|c| c.kind),
                Some(datastore::ConstraintKind::ForeignKey),
                "{then}: the caller gets the cause: {err:?}"
            );
            assert_eq!(
                store.count::<Post>().await.unwrap(),
                0,
                "{then}: nothing written"
            );
        }
        assert_pool_clean(&store);
    });
}

/// After another session changed the type of a column the pool's connections had read (each
/// keeps its prepared statement, which PostgreSQL then refuses: "cached plan must not change
/// result type"), the store's reads run again on another connection, as the blocking store's:
/// none fails.
#[test]
fn on_postgres_reads_outlive_a_column_type_changed_by_another_session() {
    use diesel::Connection as _;
    let Some(db) = common::TestDb::postgres_built(|b| b.pool_size(2)) else {
        return;
    };
    let blocking = db.store.clone();
    let saved = blocking.save(post("widened", 4)).unwrap();
    // Both connections prepare the reads, held at once so that each is used.
    let mut conns: Vec<_> = (0..2).map(|_| blocking.conn().unwrap()).collect();
    for conn in &mut conns {
        assert_eq!(conn.get::<Post>(&saved.id).unwrap(), saved);
        assert_eq!(conn.all::<Post>().unwrap().len(), 1);
    }
    drop(conns);
    let mut other = diesel::PgConnection::establish(db.url()).unwrap();
    other
        .batch_execute("ALTER TABLE posts ALTER COLUMN rating TYPE bigint")
        .unwrap();
    let store = AsyncStore::from(blocking);
    runtime().block_on(async {
        for _ in 0..3 {
            assert_eq!(store.get::<Post>(&saved.id).await.unwrap(), saved);
            assert_eq!(
                store.find::<Post>(&saved.id).await.unwrap(),
                Some(saved.clone())
            );
            assert_eq!(store.all::<Post>().await.unwrap(), vec![saved.clone()]);
            assert_eq!(store.count::<Post>().await.unwrap(), 1);
        }
    });
}

/// A transaction a closure given to `run` begins with SQL of its own and leaves open is ended
/// as its connection goes back to the pool, as one a connection lent by `Store::conn` is: the
/// next call's write (here on the one connection of the pool) is committed, seen by another
/// store.
#[test]
fn on_postgres_a_transaction_a_run_closure_leaves_open_is_not_handed_on() {
    let Some(db) = common::TestDb::postgres_built(|b| b.pool_size(1)) else {
        return;
    };
    let store = AsyncStore::from(db.store.clone());
    let other = Store::builder(db.url())
        .migrations(datastore::embed_migrations!())
        .open()
        .unwrap();
    runtime().block_on(async {
        store.save(post("before", 1)).await.unwrap();
        store
            .run(|conn| Ok(conn.batch_execute("BEGIN; DELETE FROM posts")?))
            .await
            .unwrap();
        store.save(post("after", 2)).await.unwrap();
    });
    assert_eq!(
        other.count::<Post>().unwrap(),
        2,
        "committed, seen elsewhere"
    );
}

/// A runtime as `#[tokio::main]` makes, on two threads.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn assert_send_sync_static<T: Clone + Send + Sync + 'static>() {}

#[test]
fn the_async_store_fits_an_axum_state() {
    assert_send_sync_static::<AsyncStore>();
}

/// The titles of the posts stored, in order.
async fn titles(store: &AsyncStore) -> Vec<String> {
    let mut titles: Vec<String> = store
        .all::<Post>()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.title)
        .collect();
    titles.sort();
    titles
}

/// Every connection of the pool at once: each works, and none is inside a transaction.
fn assert_pool_clean(store: &AsyncStore) {
    let blocking = store.blocking();
    let mut conns: Vec<_> = (0..8)
        .map(|_| blocking.conn().expect("a connection"))
        .collect();
    for conn in &mut conns {
        let conn: &mut AnyConnection = conn;
        match conn {
            // Fails inside a transaction ("cannot start a transaction within a transaction").
            AnyConnection::Sqlite(c) => c
                .batch_execute("BEGIN IMMEDIATE; ROLLBACK")
                .expect("a connection left inside a transaction"),
            // Refused outside a transaction block, and only there.
            AnyConnection::Postgres(c) => {
                let error = c
                    .batch_execute("SAVEPOINT pool_check")
                    .expect_err("a connection left inside a transaction");
                assert!(error.to_string().contains("transaction block"), "{error}");
                c.batch_execute("SELECT 1").expect("a working connection");
            }
        }
    }
}

async_per_backend! {
    fn the_typed_methods_work_as_async_fns(store) {
        let saved = store.save(post("async", 5)).await.unwrap();
        assert_eq!(store.find::<Post>(&saved.id).await.unwrap(), Some(saved.clone()));
        assert_eq!(store.get::<Post>(&saved.id).await.unwrap(), saved);
        let more = store
            .insert_all((0..10).map(|i| post(&format!("p{i}"), i)).collect())
            .await
            .unwrap();
        assert_eq!(more.len(), 10);
        assert_eq!(store.count::<Post>().await.unwrap(), 11);
        assert_eq!(store.all::<Post>().await.unwrap().len(), 11);
        let high = store
            .query::<Post>(|q| q.filter(posts::rating.ge(5)).order(posts::rating.asc()))
            .await
            .unwrap();
        assert_eq!(high.iter().map(|p| p.rating).collect::<Vec<_>>(), vec![5, 5, 6, 7, 8, 9]);
        assert_eq!(store.delete_where::<Post, _>(posts::rating.lt(3)).await.unwrap(), 3);
        store.delete(&saved).await.unwrap();
        store.delete_by_id::<Post>(&more[9].id).await.unwrap();
        assert!(matches!(
            store.delete_by_id::<Post>(&more[9].id).await,
            Err(Error::NotFound { .. })
        ));
        assert_eq!(store.count::<Post>().await.unwrap(), 6);

        let mut graph = post("graph", 1);
        graph.comments = HasMany::loaded(vec![comment(&graph, "a"), comment(&graph, "b")]);
        let graph = store.save_graph(graph).await.unwrap();
        let comments = store
            .query::<Comment>(move |q| q.filter(comments::post_id.eq(graph.id)))
            .await
            .unwrap();
        assert_eq!(comments.len(), 2);
    }

    fn relations_load_link_and_unlink_in_async_form(store) {
        let first = store.save(post("first", 1)).await.unwrap();
        let second = store.save(post("second", 2)).await.unwrap();
        store.save(comment(&first, "one")).await.unwrap();
        store.save(comment(&first, "two")).await.unwrap();
        let ann = store.save(user("ann")).await.unwrap();

        let link = first.link_editors_async(&store, &ann).await.unwrap();
        assert_eq!(link.post_id, first.id);
        assert_eq!(first.editors_async(&store).await.unwrap(), vec![ann.clone()]);
        assert_eq!(first.comments_async(&store).await.unwrap().len(), 2);

        let posts = Post::load_comments_async(&store, vec![first.clone(), second.clone()])
            .await
            .unwrap();
        assert_eq!(posts[0].comments.get().unwrap().len(), 2);
        assert_eq!(posts[1].comments.get().unwrap().len(), 0);
        let posts = Post::load_editors_async(&store, posts).await.unwrap();
        assert_eq!(posts[0].editors.get().unwrap(), &[ann.clone()][..]);

        let one = store
            .query::<Comment>(|q| q.filter(comments::content.eq("one")))
            .await
            .unwrap()
            .remove(0);
        assert_eq!(one.post_async(&store).await.unwrap().id, first.id);

        // A thread of replies, loaded whole.
        let root = store.save(comment(&second, "root")).await.unwrap();
        let mut reply = comment(&second, "reply");
        reply.parent_id = Some(root.id);
        let reply = store.save(reply).await.unwrap();
        let mut deeper = comment(&second, "deeper");
        deeper.parent_id = Some(reply.id);
        store.save(deeper).await.unwrap();
        let roots = Comment::load_replies_tree_async(&store, vec![root]).await.unwrap();
        let replies = roots[0].replies.get().unwrap();
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].replies.get().unwrap().len(), 1);
        assert_eq!(reply.parent_async(&store).await.unwrap().map(|c| c.id), Some(roots[0].id));

        // In a transaction too.
        store
            .transaction(|tx| async move {
                assert_eq!(first.unlink_editors_async(&tx, &ann).await?, 1);
                assert_eq!(first.editors_async(&tx).await?, vec![]);
                Ok(())
            })
            .await
            .unwrap();
    }

    fn a_transaction_awaits_between_statements_and_commits(store) {
        let (sender, receiver) = tokio::sync::oneshot::channel::<String>();
        let writer = store.clone();
        let committed = tokio::spawn(async move {
            writer
                .transaction(|tx| async move {
                    let first = tx.save(post("before", 1)).await?;
                    let title = receiver.await.unwrap(); // other work, the transaction open
                    let second = tx.save(post(&title, 2)).await?;
                    assert_eq!(tx.count::<Post>().await?, 2);
                    Ok((first, second))
                })
                .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Not committed yet: others do not see it (SQLite's WAL and PostgreSQL alike).
        assert_eq!(store.count::<Post>().await.unwrap(), 0);
        sender.send("after".into()).unwrap();
        let (first, second) = committed.await.unwrap().unwrap();
        assert_eq!(store.get::<Post>(&first.id).await.unwrap().title, "before");
        assert_eq!(store.get::<Post>(&second.id).await.unwrap().title, "after");
        assert_pool_clean(&store);
    }

    fn an_error_in_the_body_rolls_the_transaction_back(store) {
        let result: datastore::Result<()> = store
            .transaction(|tx| async move {
                tx.save(post("gone", 1)).await?;
                tx.get::<Post>(&Id::new()).await?;
                Ok(())
            })
            .await;
        assert!(matches!(result, Err(Error::NotFound { .. })), "{result:?}");
        assert_eq!(store.count::<Post>().await.unwrap(), 0);
        assert_pool_clean(&store);
    }

    fn a_panic_in_the_body_rolls_the_transaction_back(store) {
        let inner = store.clone();
        let panicked = tokio::spawn(async move {
            inner
                .transaction(|tx| async move {
                    tx.save(post("gone", 1)).await?;
                    if tx.count::<Post>().await? == 1 {
                        panic!("the body panics");
                    }
                    Ok(())
                })
                .await
        })
        .await;
        assert!(panicked.unwrap_err().is_panic());
        // A panic inside a statement's closure too.
        let inner = store.clone();
        let panicked = tokio::spawn(async move {
            inner
                .transaction(|tx| async move {
                    tx.save(post("gone", 1)).await?;
                    tx.run(|_conn| -> datastore::Result<()> { panic!("the closure panics") })
                        .await
                })
                .await
        })
        .await;
        assert!(panicked.unwrap_err().is_panic());
        assert_eq!(store.count::<Post>().await.unwrap(), 0);
        assert_pool_clean(&store);
    }

    fn nested_transactions_are_savepoints(store) {
        store
            .transaction(|tx| async move {
                tx.save(post("outer", 1)).await?;
                let failed: datastore::Result<()> = tx
                    .transaction(|tx| async move {
                        tx.save(post("inner, undone", 2)).await?;
                        Err(Error::NotFound { table: "posts".into(), key: "x".into() })
                    })
                    .await;
                assert!(failed.is_err());
                tx.transaction(|tx| async move {
                    tx.save(post("inner, kept", 3)).await?;
                    tx.transaction(|tx| async move { tx.save(post("innermost", 4)).await })
                        .await
                })
                .await?;
                // A savepoint whose future is dropped half-way is rolled back; the
                // transaction goes on.
                let dropped = tokio::time::timeout(
                    Duration::from_millis(30),
                    tx.transaction(|tx| async move {
                        tx.save(post("dropped", 5)).await?;
                        tokio::time::sleep(Duration::from_secs(10)).await;
                        Ok(())
                    }),
                )
                .await;
                assert!(dropped.is_err());
                tx.save(post("after the drop", 6)).await?;
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(titles(&store).await, ["after the drop", "inner, kept", "innermost", "outer"]);
        assert_pool_clean(&store);
    }

    fn a_handle_runs_nothing_while_a_savepoint_inside_it_is_open(store) {
        store
            .transaction(|tx| async move {
                let outer = tx.clone();
                let inner: datastore::Result<()> = tx
                    .transaction(|inner| async move {
                        inner.save(post("in the savepoint", 1)).await?;
                        // The outer handle inside the savepoint's body: refused, not run
                        // inside the savepoint (where the rollback below would undo it).
                        assert!(matches!(
                            outer.save(post("outer, refused", 2)).await,
                            Err(Error::SavepointOpen)
                        ));
                        assert!(matches!(outer.count::<Post>().await, Err(Error::SavepointOpen)));
                        Err(Error::NotFound { table: "posts".into(), key: "x".into() })
                    })
                    .await;
                assert!(matches!(inner, Err(Error::NotFound { .. })));
                // The savepoint has ended: the outer handle runs again, at its own level.
                assert_eq!(tx.count::<Post>().await?, 0);
                tx.save(post("outer, after", 3)).await?;
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(titles(&store).await, ["outer, after"]);
        assert_pool_clean(&store);
    }

    fn a_savepoint_outliving_the_level_above_is_rolled_back_not_committed(store) {
        let (opened, has_opened) = tokio::sync::oneshot::channel();
        let (go, may_go) = tokio::sync::oneshot::channel::<()>();
        store
            .transaction(|tx| async move {
                tx.save(post("outer", 1)).await?;
                let orphan = tx
                    .transaction(|inner| async move {
                        inner.save(post("inner", 2)).await?;
                        // A task given the savepoint's handle opens a savepoint of its own and
                        // is still inside it when this savepoint's body returns.
                        let task = tokio::spawn(async move {
                            inner
                                .transaction(|innermost| async move {
                                    innermost.save(post("unfinished", 3)).await?;
                                    let _ = opened.send(());
                                    may_go.await.unwrap();
                                    innermost.save(post("after its parent ended", 4)).await
                                })
                                .await
                        });
                        has_opened.await.unwrap();
                        Ok(task)
                    })
                    .await?;
                // The level above the unfinished savepoint ended (released); new savepoints
                // at the same depths are not the orphan's: its statements run in none of them.
                tx.transaction(|again| async move {
                    again
                        .transaction(|deepest| async move {
                            let _ = go.send(());
                            let outcome = orphan.await.unwrap();
                            assert!(matches!(outcome, Err(Error::TransactionEnded)), "{outcome:?}");
                            deepest.save(post("a new savepoint", 5)).await
                        })
                        .await
                })
                .await?;
                tx.save(post("outer, after", 6)).await?;
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(titles(&store).await, ["a new savepoint", "inner", "outer", "outer, after"]);
        assert_pool_clean(&store);
    }

    fn a_savepoint_that_never_began_rolls_back_nothing_when_dropped(store) {
        store
            .transaction(|tx| async move {
                let outer = tx.clone();
                tx.transaction(|inner| async move {
                    inner.save(post("kept", 1)).await?;
                    // Asked through the outer handle while this savepoint is open: refused,
                    // and its future dropped at once; the rollback its drop sends must not
                    // undo this savepoint.
                    let refused = outer.transaction(|_| async { Ok(()) }).await;
                    assert!(matches!(refused, Err(Error::SavepointOpen)), "{refused:?}");
                    // Polled once (its begin sent behind a statement that holds the
                    // transaction's thread), then dropped before its answer.
                    let (started, has_started) = tokio::sync::oneshot::channel();
                    let (release, released) = std::sync::mpsc::channel::<()>();
                    let holding = inner.clone();
                    let blocker = tokio::spawn(async move {
                        holding
                            .run(move |_| {
                                let _ = started.send(());
                                let _ = released.recv();
                                Ok(())
                            })
                            .await
                    });
                    has_started.await.unwrap();
                    let dropped = futures_util::FutureExt::now_or_never(
                        outer.transaction(|_| async { Ok(()) }),
                    );
                    assert!(dropped.is_none(), "answered while the thread was held");
                    release.send(()).unwrap();
                    blocker.await.unwrap()?;
                    inner.save(post("kept too", 2)).await?;
                    Ok(())
                })
                .await
            })
            .await
            .unwrap();
        assert_eq!(titles(&store).await, ["kept", "kept too"]);
        assert_pool_clean(&store);
    }

    fn a_transaction_ending_with_a_savepoint_still_open_commits_without_it(store) {
        let (opened, has_opened) = tokio::sync::oneshot::channel();
        let (ended, has_ended) = tokio::sync::oneshot::channel::<()>();
        let orphan = store
            .transaction(|tx| async move {
                tx.save(post("outer", 1)).await?;
                let handle = tx.clone();
                let task = tokio::spawn(async move {
                    handle
                        .transaction(|inner| async move {
                            inner.save(post("unfinished", 2)).await?;
                            let _ = opened.send(());
                            has_ended.await.unwrap();
                            Ok(())
                        })
                        .await
                });
                has_opened.await.unwrap();
                Ok(task)
            })
            .await
            .unwrap();
        // The savepoint's body ends after the transaction did.
        ended.send(()).unwrap();
        let outcome = orphan.await.unwrap();
        assert!(matches!(outcome, Err(Error::TransactionEnded)), "{outcome:?}");
        assert_eq!(titles(&store).await, ["outer"]);
        assert_pool_clean(&store);
    }

    fn a_dropped_transaction_rolls_back_and_its_handle_ends(store) {
        let (leak, leaked) = tokio::sync::oneshot::channel();
        let dropped = tokio::time::timeout(
            Duration::from_millis(50),
            store.transaction(|tx| async move {
                tx.save(post("never", 1)).await?;
                let _ = leak.send(tx.clone());
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok(())
            }),
        )
        .await;
        assert!(dropped.is_err());
        let tx = leaked.await.unwrap();
        // The rollback is under way or done: the handle no longer runs anything.
        assert!(matches!(tx.count::<Post>().await, Err(Error::TransactionEnded)));
        assert_eq!(store.count::<Post>().await.unwrap(), 0);
        assert_pool_clean(&store);
    }

    fn a_transaction_dropped_after_its_body_returned_ok_commits(store) {
        // A savepoint dropped while it awaits its release is released; the transaction goes on.
        store
            .transaction(|tx| async move {
                let (returned, mut release) = (Arc::new(AtomicBool::new(false)), Holder::new());
                let (body_returned, hold) = (returned.clone(), release.hold());
                let savepoint = tx.transaction(move |inner| async move {
                    inner.save(post("released anyway", 1)).await?;
                    hold(&inner);
                    body_returned.store(true, Ordering::SeqCst);
                    Ok(())
                });
                assert!(drop_once_returned(savepoint, &returned).await, "answered before the drop");
                release.release();
                tx.save(post("after the savepoint", 2)).await?;
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(titles(&store).await, ["after the savepoint", "released anyway"]);

        // A transaction dropped while it awaits its commit is committed.
        let (returned, mut release) = (Arc::new(AtomicBool::new(false)), Holder::new());
        let (body_returned, hold) = (returned.clone(), release.hold());
        let transaction = store.transaction(move |tx| async move {
            tx.save(post("committed anyway", 3)).await?;
            hold(&tx);
            body_returned.store(true, Ordering::SeqCst);
            Ok(())
        });
        assert!(drop_once_returned(transaction, &returned).await, "answered before the drop");
        release.release();
        let deadline = Instant::now() + Duration::from_secs(10);
        while titles(&store).await.len() < 3 {
            assert!(Instant::now() < deadline, "the commit sent before the drop never came");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            titles(&store).await,
            ["after the savepoint", "committed anyway", "released anyway"]
        );
        assert_pool_clean(&store);
    }

    fn a_statement_that_panics_after_its_future_was_dropped_rolls_the_transaction_back(store) {
        let inner = store.clone();
        let outcome = tokio::spawn(async move {
            inner
                .transaction(|tx| async move {
                    tx.save(post("before", 1)).await?;
                    let (dropped, was_dropped) = std::sync::mpsc::channel::<()>();
                    let timed_out = tokio::time::timeout(
                        Duration::from_millis(1),
                        tx.run(move |conn| -> datastore::Result<()> {
                            was_dropped.recv_timeout(Duration::from_secs(10)).unwrap();
                            conn.save(post("written, then the closure panicked", 2))?;
                            panic!("the closure panics after its future was dropped");
                        }),
                    )
                    .await;
                    assert!(timed_out.is_err());
                    dropped.send(()).unwrap();
                    // Runs after the closure, which nobody is left to hear.
                    tx.save(post("after", 3)).await?;
                    Ok(())
                })
                .await
        })
        .await;
        assert_eq!(
            titles(&store).await,
            Vec::<String>::new(),
            "committed what a closure wrote before it panicked: {outcome:?}"
        );
        // The panic is not lost: it resumes from the transaction, as the blocking store's.
        let panic = outcome.expect_err("the transaction's future panics").into_panic();
        assert_eq!(
            panic.downcast_ref::<&str>(),
            Some(&"the closure panics after its future was dropped")
        );
        assert_pool_clean(&store);
    }

    fn a_statement_that_fails_after_its_future_was_dropped_rolls_the_transaction_back(store) {
        let outcome: datastore::Result<()> = store
            .transaction(|tx| async move {
                tx.save(post("before", 1)).await?;
                let (dropped, was_dropped) = std::sync::mpsc::channel::<()>();
                let timed_out = tokio::time::timeout(
                    Duration::from_millis(1),
                    tx.run(move |conn| -> datastore::Result<()> {
                        was_dropped.recv_timeout(Duration::from_secs(10)).unwrap();
                        conn.save(post("written, then the closure failed", 2))?;
                        Err(Error::NotFound { table: "posts".into(), key: "unheard".into() })
                    }),
                )
                .await;
                assert!(timed_out.is_err());
                dropped.send(()).unwrap();
                tx.save(post("after", 3)).await?;
                Ok(())
            })
            .await;
        assert_eq!(
            titles(&store).await,
            Vec::<String>::new(),
            "committed what a closure wrote before it failed: {outcome:?}"
        );
        // The transaction's result is the error nobody heard.
        match outcome {
            Err(Error::NotFound { key, .. }) => assert_eq!(key, "unheard"),
            other => panic!("expected the closure's error, got {other:?}"),
        }
        // A statement refused unheard ran nothing: the transaction commits.
        store
            .transaction(|tx| async move {
                let outer = tx.clone();
                tx.transaction(|inner| async move {
                    inner.save(post("kept", 4)).await?;
                    // Sent behind a statement that holds the transaction's thread, and dropped.
                    let (release, released) = std::sync::mpsc::channel::<()>();
                    let held = futures_util::FutureExt::now_or_never(inner.run(move |_| {
                        let _ = released.recv_timeout(Duration::from_secs(10));
                        Ok(())
                    }));
                    assert!(held.is_none());
                    let refused = futures_util::FutureExt::now_or_never(outer.count::<Post>());
                    assert!(refused.is_none(), "answered while the thread was held");
                    release.send(()).unwrap();
                    Ok(())
                })
                .await
            })
            .await
            .unwrap();
        assert_eq!(titles(&store).await, ["kept"]);
        assert_pool_clean(&store);
    }

    fn streams_deliver_committed_changes_in_commit_order(store) {
        let mut all_posts = store.observe::<Post>().await.unwrap();
        let first = store.save(post("first", 1)).await.unwrap();
        let mut of_first = store.observe_id::<Post>(&first.id).await.unwrap();
        let mut rated = store.observe_where(|p: &Post| p.rating > 5).await.unwrap();
        let mut everything = store.observe_all().await.unwrap();
        assert_eq!(store.subscriptions(), 4);

        // Rolled back: never delivered.
        let _ = store
            .transaction(|tx| async move {
                tx.save(post("rolled back", 9)).await?;
                Err::<(), _>(Error::TransactionEnded)
            })
            .await;
        let second = store.save(post("second", 7)).await.unwrap();
        let mut changed = first.clone();
        changed.rating = 2;
        store.save(changed).await.unwrap();
        store.delete(&second).await.unwrap();

        let mut seen = Vec::new();
        for _ in 0..4 {
            match next_within(&mut all_posts).await {
                Observed::Change(c) => seen.push((c.op, c.element.title, c.element.rating)),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            seen,
            [
                (Op::Insert, "first".to_owned(), 1),
                (Op::Insert, "second".to_owned(), 7),
                (Op::Update, "first".to_owned(), 2),
                (Op::Delete, "second".to_owned(), 7),
            ]
        );
        match next_within(&mut of_first).await {
            Observed::Change(c) => assert_eq!((c.op, c.element.rating), (Op::Update, 2)),
            other => panic!("{other:?}"),
        }
        let ops: Vec<Op> = [next_within(&mut rated).await, next_within(&mut rated).await]
            .into_iter()
            .map(|o| match o {
                Observed::Change(c) => c.op,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ops, [Op::Insert, Op::Delete]);
        let mut tables = BTreeSet::new();
        for _ in 0..3 {
            match next_within(&mut everything).await {
                Observed::Change(c) => {
                    tables.insert(c.table);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(tables, BTreeSet::from(["posts".to_owned()]));
        assert!(all_posts.try_next().is_none());

        drop((all_posts, of_first, rated, everything));
        all_unsubscribed(&store).await;
    }

    fn a_lagging_stream_is_told_what_it_missed(store) {
        let mut stream = store.observe::<Post>().await.unwrap();
        let rows: Vec<Post> = (0..5000).map(|i| post(&format!("p{i}"), i)).collect();
        // One commit of 5,000 changes, past the buffer of 4,096.
        store.insert_all(rows).await.unwrap();
        let mut changes = 0usize;
        let mut missed = 0usize;
        while changes + missed < 5000 {
            match next_within(&mut stream).await {
                Observed::Change(_) => changes += 1,
                Observed::Missed(n) => missed += n,
                other => panic!("{other:?}"),
            }
        }
        // Caught up: the next change arrives.
        store.save(post("last", -1)).await.unwrap();
        match next_within(&mut stream).await {
            Observed::Change(c) => assert_eq!(c.element.title, "last"),
            other => panic!("{other:?}"),
        }
        assert!(missed > 0, "the 4096-change buffer overflowed");
        assert_eq!(changes + missed, 5000);
    }

    fn a_live_query_is_a_stream_of_snapshots(store) {
        let mut top = store
            .observe_query::<Post>(|q| q.filter(posts::rating.gt(4)).order(posts::title.asc()))
            .await
            .unwrap();
        assert_eq!(next_within(&mut top).await.unwrap(), vec![]);
        store.save(post("low", 1)).await.unwrap(); // leaves the result as it was
        let high = store.save(post("high", 9)).await.unwrap();
        assert_eq!(next_within(&mut top).await.unwrap(), vec![high.clone()]);
        store.delete(&high).await.unwrap();
        assert_eq!(next_within(&mut top).await.unwrap(), vec![]);
        drop(top);
        all_unsubscribed(&store).await;
    }

    fn a_live_query_over_relations_is_a_stream_of_snapshots(store) {
        let mut top = store
            .live::<Post>()
            .query(|q| q.filter(posts::rating.gt(4)))
            .load(Post::COMMENTS.then(Comment::REPLIES))
            .load(Post::COMMENTS.then(Comment::POST))
            .subscribe_async()
            .await
            .unwrap();
        assert_eq!(next_within(&mut top).await.unwrap(), vec![]);
        let high = store.save(post("high", 9)).await.unwrap();
        let first = next_within(&mut top).await.unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].comments.get().map(<[Comment]>::len), Some(0));
        // A comment on a post of the result: the post's comments are read again.
        let said = store.save(comment(&high, "first!")).await.unwrap();
        let with_comment = next_within(&mut top).await.unwrap();
        let comments = with_comment[0].comments.get().unwrap();
        assert_eq!(comments.len(), 1);
        assert_eq!(comments[0].id, said.id);
        // Its post, a `belongs_to` parent, held by the snapshot.
        assert_eq!(
            with_comment.parent(&comments[0], Comment::POST).map(|p| p.id),
            Some(high.id)
        );
        // A post outside the filter changes nothing; the post's delete (with its comments, by
        // the cascade) empties the result.
        store.save(post("low", 1)).await.unwrap();
        store.delete(&high).await.unwrap();
        assert_eq!(next_within(&mut top).await.unwrap(), vec![]);
        let stats = top.stats().expect("no read in flight between items");
        assert!(stats.partial > 0, "a comment re-read its post only: {stats:?}");
        drop(top);
        all_unsubscribed(&store).await;
    }

    fn dropped_futures_leave_the_pool_clean_and_every_committed_write_observed(store) {
        cancellation_under_load(store).await;
    }
}

/// Holds an async transaction's thread with a statement that waits until released, so that
/// what is sent after it is answered only then.
struct Holder {
    release: std::sync::mpsc::Sender<()>,
    released: Option<std::sync::mpsc::Receiver<()>>,
}

impl Holder {
    fn new() -> Self {
        let (release, released) = std::sync::mpsc::channel();
        Self {
            release,
            released: Some(released),
        }
    }

    /// What holds the thread of the transaction whose handle it is given (its future dropped
    /// once sent).
    fn hold(&mut self) -> impl FnOnce(&datastore::AsyncTransaction) + Send + 'static {
        let released = self.released.take().expect("one hold");
        move |tx| {
            let held = futures_util::FutureExt::now_or_never(tx.run(move |_| {
                let _ = released.recv_timeout(Duration::from_secs(10));
                Ok(())
            }));
            assert!(held.is_none(), "the holding statement returned at once");
        }
    }

    fn release(&self) {
        let _ = self.release.send(());
    }
}

/// Polls `future` until `returned` says its body returned, then drops it: whether it was still
/// pending then.
async fn drop_once_returned<F: std::future::Future>(future: F, returned: &AtomicBool) -> bool {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| match future.as_mut().poll(cx) {
        std::task::Poll::Ready(_) => std::task::Poll::Ready(false),
        std::task::Poll::Pending if returned.load(Ordering::SeqCst) => std::task::Poll::Ready(true),
        std::task::Poll::Pending => std::task::Poll::Pending,
    })
    .await
}

/// The next item of a stream, failing the test after 10 s.
async fn next_within<S: futures_util::Stream + Unpin>(stream: &mut S) -> S::Item {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an item within 10 s")
        .expect("the stream goes on")
}

/// A small deterministic generator (xorshift), seeded per run and printed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// 32 tasks, each 25 times: a write (a save, an `insert_all` of three rows, or a transaction
/// of three saves that awaits between them) under a timeout of 0 to 2 ms or 0 to 50 ms, so that futures are
/// dropped at every await point. Then: the pool is clean, every write reported committed is
/// there, every write is there whole or not at all, a transaction dropped is there exactly
/// when its body had returned `Ok` (its commit sent), and the stream observed exactly the rows
/// that are there.
async fn cancellation_under_load(store: AsyncStore) {
    let seed = Instant::now().elapsed().as_nanos() as u64 ^ 0x9E37_79B9_7F4A_7C15;
    println!("seed {seed}");
    let mut stream = store.observe::<Post>().await.unwrap();
    let next_group = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for task in 0..32u64 {
        let store = store.clone();
        let next_group = next_group.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(seed ^ (task + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
            // Each write's group (its rows' rating), how many rows, whether reported committed,
            // and whether it must be there (`None`: either way).
            let mut writes: Vec<(i32, usize, bool, Option<bool>)> = Vec::new();
            for _ in 0..25 {
                let group = next_group.fetch_add(1, Ordering::SeqCst) as i32;
                // Half of them dropped within 2 ms (mostly before the write ends), half within
                // 50 ms (mostly after).
                let limit = Duration::from_micros(match rng.below(2) {
                    0 => rng.below(2_000),
                    _ => rng.below(50_000),
                });
                let kind = rng.below(3);
                let rows = if kind == 0 { 1 } else { 3 };
                let store = store.clone();
                let returned = Arc::new(AtomicBool::new(false));
                let body_returned = returned.clone();
                let write = async move {
                    match kind {
                        0 => store.save(post("save", group)).await.map(drop),
                        1 => store
                            .insert_all((0..3).map(|_| post("insert_all", group)).collect())
                            .await
                            .map(drop),
                        _ => {
                            store
                                .transaction(|tx| async move {
                                    for _ in 0..3 {
                                        tx.save(post("transaction", group)).await?;
                                        tokio::task::yield_now().await;
                                    }
                                    // No await from here to the commit being sent.
                                    body_returned.store(true, Ordering::SeqCst);
                                    Ok(())
                                })
                                .await
                        }
                    }
                };
                let (reported, timed_out) = match tokio::time::timeout(limit, write).await {
                    Ok(Ok(())) => (true, false),
                    Ok(Err(Error::Busy { .. })) => (false, false),
                    Err(_) => (false, true),
                    Ok(Err(e)) => panic!("unexpected error: {e}"),
                };
                // A transaction is rolled back if dropped before its body returned, committed
                // if after; a call that reached the blocking pool runs to its end, which a
                // call dropped cannot tell.
                let must_be_there = match (reported, kind) {
                    (true, _) => Some(true),
                    (false, 2) => Some(timed_out && returned.load(Ordering::SeqCst)),
                    (false, _) => None,
                };
                writes.push((group, rows, reported, must_be_there));
            }
            writes
        }));
    }
    let mut writes = Vec::new();
    for task in tasks {
        writes.extend(task.await.unwrap());
    }
    // Calls whose futures were dropped may still be running on the blocking pool: wait until
    // the store is quiet (the count stays the same for half a second).
    let mut last = None;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let count = store.count::<Post>().await.unwrap();
        if last == Some(count) {
            break;
        }
        last = Some(count);
    }
    assert_pool_clean(&store);

    let mut stored: BTreeMap<i32, usize> = BTreeMap::new();
    for p in store.all::<Post>().await.unwrap() {
        *stored.entry(p.rating).or_default() += 1;
    }
    let (mut committed, mut dropped_but_committed, mut not_committed) = (0, 0, 0);
    for &(group, rows, reported, must_be_there) in &writes {
        let there = stored.get(&group).copied().unwrap_or(0);
        assert!(
            there == 0 || there == rows,
            "write {group} half there: {there} of {rows}"
        );
        if let Some(must) = must_be_there {
            assert_eq!(
                there == rows,
                must,
                "write {group} (reported committed: {reported}): there is not as its drop says"
            );
        }
        if reported {
            assert_eq!(there, rows, "write {group} reported committed, not there");
            committed += 1;
        } else if there == rows {
            dropped_but_committed += 1;
        } else {
            not_committed += 1;
        }
    }
    let decided = |returned: bool| {
        writes
            .iter()
            .filter(|&&(_, _, reported, must)| !reported && must == Some(returned))
            .count()
    };
    println!(
        "{} writes: {committed} reported committed, {dropped_but_committed} dropped and \
         committed, {not_committed} dropped and not committed; of those dropped, {} \
         transactions after their body returned, {} before it (or failed)",
        writes.len(),
        decided(true),
        decided(false)
    );
    assert!(
        not_committed + dropped_but_committed > 0,
        "no future was dropped"
    );

    // Observed: exactly the rows stored, each once.
    let total: usize = stored.values().sum();
    let mut observed: BTreeMap<i32, usize> = BTreeMap::new();
    for _ in 0..total {
        match next_within(&mut stream).await {
            Observed::Change(c) => {
                assert_eq!(c.op, Op::Insert);
                *observed.entry(c.element.rating).or_default() += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(observed, stored);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        stream.try_next().is_none(),
        "observed more than was committed"
    );
}

/// Holds, on a pooled connection of its own, the lock every call below needs (SQLite: the
/// write lock; PostgreSQL: an `ACCESS EXCLUSIVE` lock on `posts`, which reads wait for too)
/// until `release` says so, or a minute has passed. Returns whether `release` said so.
fn hold_the_lock(
    store: &AsyncStore,
    locked: tokio::sync::oneshot::Sender<()>,
    release: std::sync::mpsc::Receiver<()>,
) -> std::thread::JoinHandle<bool> {
    let blocking = store.blocking().clone();
    std::thread::spawn(move || {
        let mut conn = blocking.conn().unwrap();
        let conn: &mut AnyConnection = &mut conn;
        let (lock, unlock) = match conn {
            AnyConnection::Sqlite(_) => ("BEGIN IMMEDIATE", "ROLLBACK"),
            AnyConnection::Postgres(_) => (
                "BEGIN; LOCK TABLE posts IN ACCESS EXCLUSIVE MODE",
                "ROLLBACK",
            ),
        };
        conn.batch_execute(lock).unwrap();
        locked.send(()).unwrap();
        let released = release.recv_timeout(Duration::from_secs(60)).is_ok();
        conn.batch_execute(unlock).unwrap();
        released
    })
}

type Call = fn(
    AsyncStore,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Error>> + Send>>;

/// The calls that wait for the lock `hold_the_lock` takes: writes on both backends, reads too on
/// PostgreSQL (SQLite's readers never wait for its writer in WAL mode).
fn calls_that_wait(dialect: Dialect) -> Vec<(&'static str, Call)> {
    let mut calls: Vec<(&'static str, Call)> = vec![
        ("save", |s| {
            Box::pin(async move { s.save(post("waits", 1)).await.map(drop) })
        }),
        ("transaction", |s| {
            Box::pin(async move {
                s.transaction(|tx| async move { tx.save(post("waits in a tx", 2)).await.map(drop) })
                    .await
            })
        }),
        ("run", |s| {
            Box::pin(async move {
                s.run(|conn| Ok(conn.batch_execute("DELETE FROM posts WHERE rating = 99")?))
                    .await
            })
        }),
    ];
    if dialect == Dialect::Postgres {
        calls.push(("count", |s| {
            Box::pin(async move { s.count::<Post>().await.map(drop) })
        }));
        calls.push(("query", |s| {
            Box::pin(async move {
                s.query::<Post>(|q| q.filter(posts::rating.gt(0)))
                    .await
                    .map(drop)
            })
        }));
    }
    calls
}

/// No call holds the runtime's thread while it waits for the database: on a `current_thread`
/// runtime, while a call waits for a lock another connection holds, the runtime's one thread
/// runs another task, and that task is the one that releases the lock. A call that waited on
/// the runtime's thread would never let it run: it would fail with a busy error, or end only
/// when the lock holder gives up after a minute, and the test says which call did it.
///
/// (This replaces a test that timed a ticking task: its timing failed on the shared machine.
/// Here nothing is timed; the lock makes the waiting certain.)
fn a_call_waiting_for_the_database_leaves_the_runtime_thread_free(db: TestStore) {
    let store = db.store.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (name, call) in calls_that_wait(store.dialect()) {
        let (locked, is_locked) = tokio::sync::oneshot::channel();
        let (release, released) = std::sync::mpsc::channel();
        let holder = hold_the_lock(&store, locked, released);
        let store = store.clone();
        runtime.block_on(async move {
            is_locked.await.unwrap();
            let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let waiting = tokio::spawn({
                let ended = ended.clone();
                async move {
                    let result = call(store).await;
                    ended.store(true, Ordering::SeqCst);
                    result
                }
            });
            // The spawned call runs whenever this task yields; it cannot end before the
            // release below, unless it took the lock by waiting on this thread.
            for _ in 0..100 {
                tokio::task::yield_now().await;
                assert!(
                    !ended.load(Ordering::SeqCst),
                    "`{name}` ended while another connection held its lock: it waited on the \
                     runtime's thread until it gave up"
                );
            }
            release.send(()).unwrap();
            if let Err(error) = waiting.await.unwrap() {
                panic!("`{name}` failed: {error}");
            }
        });
        assert!(
            holder.join().unwrap(),
            "`{name}` held the runtime's thread while it waited for the database: the task \
             that releases the lock never ran"
        );
    }
}

#[test]
fn a_call_waiting_for_the_database_leaves_the_runtime_thread_free_on_sqlite() {
    a_call_waiting_for_the_database_leaves_the_runtime_thread_free(sqlite_file());
}

#[test]
fn a_call_waiting_for_the_database_leaves_the_runtime_thread_free_on_postgres() {
    if let Some(db) = postgres() {
        a_call_waiting_for_the_database_leaves_the_runtime_thread_free(db);
    }
}

/// On PostgreSQL, a lost listener (a server restart, an administrator) ends every stream it
/// served, saying so, and wakes the tasks reading them: a change stream yields
/// `Observed::FeedLost` as its last item, a live query `Error::FeedLost` once, then both end.
#[test]
fn on_postgres_a_lost_listener_ends_the_streams_saying_so() {
    let Some(db) = postgres() else { return };
    let store = db.store.clone();
    runtime().block_on(async move {
        let mut changes = store.observe::<Post>().await.unwrap();
        let mut live = store
            .observe_query::<Post>(|q| q.filter(posts::rating.gt(4)))
            .await
            .unwrap();
        assert_eq!(next_within(&mut live).await.unwrap(), vec![]);
        // Both readers wait, as tasks, when the listener goes.
        let reading_changes = tokio::spawn(async move {
            let mut items = Vec::new();
            while let Some(item) = changes.next().await {
                items.push(item);
            }
            items
        });
        let reading_live = tokio::spawn(async move {
            let mut items = Vec::new();
            while let Some(item) = live.next().await {
                items.push(item);
            }
            items
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let terminated = store
            .run(|conn| {
                #[derive(QueryableByName)]
                struct Terminated {
                    #[diesel(sql_type = datastore::diesel::sql_types::Bool)]
                    done: bool,
                }
                Ok(datastore::diesel::sql_query(
                    "SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity \
                     WHERE application_name = 'datastore listener ' || md5(current_schema())",
                )
                .load::<Terminated>(conn)?
                .into_iter()
                .filter(|t| t.done)
                .count())
            })
            .await
            .unwrap();
        assert_eq!(terminated, 1);
        let changes = tokio::time::timeout(Duration::from_secs(10), reading_changes)
            .await
            .expect("the change stream ended")
            .unwrap();
        assert!(
            matches!(changes.last(), Some(Observed::FeedLost { .. })),
            "{changes:?}"
        );
        let live = tokio::time::timeout(Duration::from_secs(10), reading_live)
            .await
            .expect("the live query ended")
            .unwrap();
        assert!(
            matches!(live.as_slice(), [Err(Error::FeedLost { .. })]),
            "{live:?}"
        );
    });
}

/// On PostgreSQL, a table's first subscription inside an async transaction that already wrote
/// it waits for that transaction's lock: it fails after the lock timeout (the blocking store,
/// which knows its transaction by its thread, refuses it at once), and the transaction goes on.
#[test]
fn on_postgres_a_first_subscription_after_an_async_transaction_wrote_the_table_fails() {
    // A short lock timeout: while the subscription waits, the transaction that wrote is open,
    // and another test's first subscription starting the logical feed waits for it too
    // (creating a slot waits for every transaction writing on the server), up to its own.
    let Some(db) = postgres_built(|builder| builder.busy_timeout(Duration::from_millis(300)))
    else {
        return;
    };
    let store = db.store.clone();
    runtime().block_on(async move {
        let observer = store.clone();
        let saved = store
            .transaction(|tx| async move {
                tx.save(post("written first", 1)).await?;
                let subscribed = observer.observe::<Post>().await;
                assert!(
                    matches!(subscribed, Err(Error::Busy { .. })),
                    "{subscribed:?}"
                );
                tx.save(post("after", 2)).await
            })
            .await
            .unwrap();
        assert_eq!(store.get::<Post>(&saved.id).await.unwrap().title, "after");
    });
}

/// Waits (at most five seconds) until the store has no subscription left: a dropped one is
/// gone once the hub's publisher, which may be handing its queue a change at that moment,
/// lets go of it.
async fn all_unsubscribed(store: &AsyncStore) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.subscriptions() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(store.subscriptions(), 0, "every subscription was dropped");
}

/// A call made on a runtime that has shut down cannot run: it fails with
/// `Error::RuntimeShutdown` instead of hanging or panicking.
#[test]
fn a_call_on_a_runtime_that_shut_down_is_a_runtime_shutdown_error() {
    use std::task::{Context, Poll, Wake, Waker};

    /// Polls `future` on this thread, outside any runtime (as a foreign executor does).
    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        struct Unpark(std::thread::Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut future = std::pin::pin!(future);
        loop {
            match future.as_mut().poll(&mut Context::from_waker(&waker)) {
                Poll::Ready(output) => return output,
                Poll::Pending => std::thread::park(),
            }
        }
    }

    let db = sqlite_file();
    let first = runtime();
    let handle = first.handle().clone();
    assert_eq!(first.block_on(db.store.count::<Post>()).unwrap(), 0);
    drop(first);

    let after_shutdown = {
        let _entered = handle.enter();
        block_on(db.store.count::<Post>())
    };
    match after_shutdown {
        Err(Error::RuntimeShutdown) => {}
        other => panic!("expected Error::RuntimeShutdown, got {other:?}"),
    }
    // The store itself is intact: a live runtime runs the same call.
    assert_eq!(runtime().block_on(db.store.count::<Post>()).unwrap(), 0);
}

/// The comments' texts of each post of a result.
fn texts(posts: &[Post]) -> Vec<Vec<Option<String>>> {
    posts
        .iter()
        .map(|p| {
            let comments = p.comments.get().expect("comments loaded");
            comments.iter().map(|c| c.content.clone()).collect()
        })
        .collect()
}

/// A commit that lands while a live stream's partial refresh reads (after the read's snapshot,
/// before its fence) is left by the refresh for the next one; the stream handles it before it
/// waits for another commit, so once writes stop its last result equals a fresh query. It
/// waited on its queue instead, which the refresh had emptied, and never woke.
///
/// The second commit is made, on another connection, from the `COMMIT` that ends the read
/// (a tracing hook on the runtime's threads, where the stream reads): deterministic, with
/// no sleep.
fn a_commit_made_while_a_live_stream_reads_comes_in_its_next_result(db: TestStore) {
    let store = db.store.clone();
    type Action = Box<dyn FnOnce() + Send>;
    let at_commit: Arc<std::sync::Mutex<Option<Action>>> = Arc::default();
    let hook = {
        let at_commit = at_commit.clone();
        move |sql: &str| {
            if sql.trim().eq_ignore_ascii_case("COMMIT") {
                let action = at_commit.lock().unwrap().take();
                if let Some(action) = action {
                    action();
                }
            }
        }
    };
    let dispatch = common::trace::statement_hook(hook);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        // Every thread of the runtime, its blocking pool's included, reports to the hook.
        .on_thread_start(move || std::mem::forget(tracing::dispatcher::set_default(&dispatch)))
        .build()
        .unwrap();
    runtime.block_on(async {
        let p = store.save(post("p", 1)).await.unwrap();
        let mut one = store.save(comment(&p, "one")).await.unwrap();
        let mut two = store.save(comment(&p, "two")).await.unwrap();
        let mut view = store
            .live::<Post>()
            .load(Post::COMMENTS)
            .subscribe_async()
            .await
            .unwrap();
        let first = next_within(&mut view).await.unwrap();
        assert_eq!(texts(&first), [[Some("one".into()), Some("two".into())]]);

        one.content = Some("one, edited".into());
        store.save(one).await.unwrap();
        // The next read is the one the first edit starts: as it ends, the second edit commits
        // on a thread of its own (the reading thread holds its connection).
        let writer = store.blocking().clone();
        two.content = Some("two, edited".into());
        *at_commit.lock().unwrap() = Some(Box::new(move || {
            std::thread::spawn(move || writer.save(two).unwrap())
                .join()
                .unwrap();
        }));
        let read = next_within(&mut view).await.unwrap();
        assert!(at_commit.lock().unwrap().is_none(), "the read ended");
        // The refresh read before the second edit: its result is the state between the two.
        assert_eq!(
            texts(&read),
            [[Some("one, edited".into()), Some("two".into())]]
        );

        // No write since: the next result is the state after the second edit.
        let last = next_within(&mut view).await.unwrap();
        assert_eq!(
            texts(&last),
            [[Some("one, edited".into()), Some("two, edited".into())]]
        );
        let fresh = store
            .live::<Post>()
            .load(Post::COMMENTS)
            .subscribe_async()
            .await
            .unwrap()
            .next()
            .await
            .unwrap()
            .unwrap();
        assert_eq!(last, fresh);
    });
}

#[test]
fn a_commit_made_while_a_live_stream_reads_comes_in_its_next_result_on_sqlite() {
    a_commit_made_while_a_live_stream_reads_comes_in_its_next_result(sqlite_file());
}

#[test]
fn a_commit_made_while_a_live_stream_reads_comes_in_its_next_result_on_postgres() {
    let Some(db) = postgres() else { return };
    a_commit_made_while_a_live_stream_reads_comes_in_its_next_result(db);
}

/// Query and live streams whose read fails after they took the changes off their queue (the
/// pool's one connection is taken, and waiting for it times out) read again at once when
/// polled next, with no new commit, as their blocking forms do: they waited for another
/// commit instead, and the result stayed stale.
fn a_stream_whose_read_failed_reads_again_at_once(url: &str) {
    let store = AsyncStore::from(
        Store::builder(url)
            .migrations(datastore::embed_migrations!())
            .pool_size(1)
            .connection_timeout(Duration::from_millis(300))
            .open()
            .unwrap(),
    );
    runtime().block_on(async {
        let mut query = store
            .observe_query::<Post>(|q| q.order(posts::title.asc()))
            .await
            .unwrap();
        let mut live = store
            .live::<Post>()
            .load(Post::COMMENTS)
            .subscribe_async()
            .await
            .unwrap();
        assert_eq!(next_within(&mut query).await.unwrap(), vec![]);
        assert_eq!(next_within(&mut live).await.unwrap(), vec![]);

        let blocking = store.blocking();
        let mut held = blocking.conn().unwrap();
        let saved = held.save(post("while held", 1)).unwrap();
        for failed in [
            next_within(&mut query).await.map(drop),
            next_within(&mut live).await.map(drop),
        ] {
            match failed {
                Err(Error::Connection { .. }) => {}
                other => panic!("expected the pool's wait to time out, got {other:?}"),
            }
        }
        drop(held);

        // Nothing was committed since: a stream that waited for a commit would wait for good.
        assert_eq!(next_within(&mut query).await.unwrap(), vec![saved.clone()]);
        let titles: Vec<String> = next_within(&mut live)
            .await
            .unwrap()
            .iter()
            .map(|p| p.title.clone())
            .collect();
        assert_eq!(titles, [saved.title]);
    });
}

#[test]
fn a_stream_whose_read_failed_reads_again_at_once_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    a_stream_whose_read_failed_reads_again_at_once(
        &dir.path().join("one.db").display().to_string(),
    );
}

#[test]
fn a_stream_whose_read_failed_reads_again_at_once_on_postgres() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    let schema = common::PgSchema::new(&url);
    a_stream_whose_read_failed_reads_again_at_once(schema.url());
}

/// A store on a SQLite file in `dir` whose pool's one connection a transaction holds (having
/// saved one post) while `test` runs, on a runtime of four blocking threads: the set-up of the
/// tests of what waits for that connection as a task and what as a blocking thread. The
/// connection is let go when `test` returns, and the store handed back with it.
fn while_the_pool_is_held<F>(
    dir: &std::path::Path,
    test: impl FnOnce(AsyncStore) -> F,
) -> (tokio::runtime::Runtime, AsyncStore, F::Output)
where
    F: std::future::Future,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let (store, output) = runtime.block_on(async {
        let store = Store::builder(dir.join("held.db").display().to_string())
            .migrations(datastore::embed_migrations!())
            .pool_size(1)
            .connection_timeout(Duration::from_secs(20))
            .open_async()
            .await
            .unwrap();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let (holding, held) = tokio::sync::oneshot::channel::<()>();
        let holder = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .transaction(|tx| async move {
                        tx.save(post("held", 1)).await?;
                        holding.send(()).unwrap();
                        released.await.unwrap();
                        Ok(())
                    })
                    .await
            }
        });
        held.await.unwrap();
        let output = test(store.clone()).await;
        release.send(()).unwrap();
        holder.await.unwrap().unwrap();
        (store, output)
    });
    (runtime, store, output)
}

/// Whether the runtime's own blocking work runs within ten seconds (no blocking thread free:
/// not until the threads waiting for the pool time out).
async fn blocking_work_runs() -> bool {
    let ran = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::task::spawn_blocking(|| "ran"),
    )
    .await;
    matches!(ran, Ok(Ok("ran")))
}

/// A burst of transactions beyond the pool waits as tasks, not as blocking threads queued on
/// the pool: on a runtime of four blocking threads and a pool of one connection that a
/// transaction holds, eight more transactions leave the runtime's blocking work free to run
/// (as eight threads waiting for the connection would not, until they time out).
#[test]
fn transactions_beyond_the_pool_wait_as_tasks_not_as_blocking_threads() {
    let dir = tempfile::tempdir().unwrap();
    let (runtime, store, burst) = while_the_pool_is_held(dir.path(), |store| async move {
        let burst: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .transaction(|tx| async move { tx.save(post("burst", i)).await })
                        .await
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            blocking_work_runs().await,
            "the runtime's blocking threads were all taken by transactions waiting for the pool"
        );
        burst
    });
    runtime.block_on(async {
        for saved in burst {
            saved.await.unwrap().unwrap();
        }
        assert_eq!(store.count::<Post>().await.unwrap(), 9);
    });
}

/// A call whose future is dropped while its blocking work waits for a connection keeps its
/// permit until that work ends, so that calls dropped beyond the pool wait as tasks, not as
/// blocking threads queued on the pool: on a runtime of four blocking threads and a pool of one
/// connection that a transaction holds, eight calls dropped as they wait leave the runtime's
/// blocking work free to run (as up to eight threads waiting for the connection would not, until
/// they time out).
#[test]
fn calls_dropped_while_waiting_for_the_pool_do_not_take_its_blocking_threads() {
    let dir = tempfile::tempdir().unwrap();
    let (runtime, store, ()) = while_the_pool_is_held(dir.path(), |store| async move {
        for _ in 0..8 {
            let dropped =
                tokio::time::timeout(Duration::from_millis(50), store.count::<Post>()).await;
            assert!(dropped.is_err(), "answered while the connection was held");
        }
        assert!(
            blocking_work_runs().await,
            "the runtime's blocking threads were all taken by dropped calls waiting for the pool"
        );
    });
    runtime.block_on(async {
        assert_eq!(store.count::<Post>().await.unwrap(), 1);
    });
}
