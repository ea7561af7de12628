//! Many writers through a small pool on one WAL file: nothing lost, no deadlock, busy waits
//! absorbed by the busy timeout (or returned typed), and observe sees exactly what committed.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::models::{Comment, Post};
use datastore::observe::{Observed, Op};
use datastore::prelude::*;
use datastore::{Error, Synchronous};

const THREADS: usize = 8;
const WRITES: usize = 1000;

#[derive(Default, Debug)]
struct Tally {
    posts: Vec<Id>,
    comments_kept: usize,
    inserts: usize,
    updates: usize,
    deletes: usize,
    busy: usize,
}

/// Runs `op` until it is not refused as busy (or, on PostgreSQL, as a conflict); counts the
/// refusals.
fn retry_busy<T>(tally: &mut Tally, mut op: impl FnMut() -> datastore::Result<T>) -> T {
    loop {
        match op() {
            Err(e) if e.is_retryable() => tally.busy += 1,
            other => return other.unwrap(),
        }
    }
}

#[test]
fn eight_writers_through_four_connections_lose_nothing_and_observe_everything() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path().join("busy.db")).synchronous(Synchronous::Normal);
    writers_lose_nothing(store);
}

#[test]
fn eight_writers_through_four_connections_lose_nothing_and_observe_everything_on_postgres() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    let schema = common::PgSchema::new(&url);
    writers_lose_nothing(Store::builder(schema.url()));
}

/// 8 threads x 1000 mixed writes through a pool of 4.
fn writers_lose_nothing(builder: datastore::StoreBuilder) {
    let store = Arc::new(
        builder
            .migrations(datastore::embed_migrations!())
            .pool_size(4)
            .busy_timeout(Duration::from_secs(10))
            .observe_buffer(1 << 20)
            .open()
            .unwrap(),
    );
    let posts = store.observe::<Post>().unwrap();
    let comments = store.observe::<Comment>().unwrap();

    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut tally = Tally::default();
                let mut last_comment: Option<Comment> = None;
                for i in 0..WRITES {
                    match i % 4 {
                        // A post and a comment, in one transaction.
                        0 => {
                            let (post, comment) = retry_busy(&mut tally, || {
                                store.transaction(|tx| {
                                    let post = tx.save(Post {
                                        title: format!("{t}-{i}"),
                                        ..Post::default()
                                    })?;
                                    let comment = tx.save(
                                        Comment {
                                            content: Some(format!("{t}-{i}")),
                                            ..Comment::default()
                                        }
                                        .with_post(&post),
                                    )?;
                                    Ok((post, comment))
                                })
                            });
                            tally.posts.push(post.id);
                            tally.inserts += 2;
                            tally.comments_kept += 1;
                            last_comment = Some(comment);
                        }
                        // An update of one of this writer's posts.
                        1 => {
                            let id = tally.posts[tally.posts.len() - 1];
                            let mut post: Post = retry_busy(&mut tally, || store.get(&id));
                            post.rating += 1;
                            retry_busy(&mut tally, || store.save(post.clone()));
                            tally.updates += 1;
                        }
                        // A transaction that rolls back: nothing of it counts.
                        2 => {
                            let result: datastore::Result<()> = store.transaction(|tx| {
                                tx.save(Post {
                                    title: "rolled back".into(),
                                    ..Post::default()
                                })?;
                                Err(Error::NotFound {
                                    table: "none".into(),
                                    key: "none".into(),
                                })
                            });
                            match result {
                                Err(Error::NotFound { .. }) => {}
                                Err(e) if e.is_retryable() => tally.busy += 1,
                                other => panic!("{other:?}"),
                            }
                        }
                        // A delete of the last comment.
                        _ => {
                            if let Some(comment) = last_comment.take() {
                                retry_busy(&mut tally, || store.delete(&comment));
                                tally.deletes += 1;
                                tally.comments_kept -= 1;
                            }
                        }
                    }
                }
                tally
            })
        })
        .collect();
    let tallies: Vec<Tally> = writers
        .into_iter()
        .map(|w| w.join().expect("no writer panicked"))
        .collect();

    let expected_posts: usize = tallies.iter().map(|t| t.posts.len()).sum();
    let expected_comments: usize = tallies.iter().map(|t| t.comments_kept).sum();
    assert_eq!(
        store.count::<Post>().unwrap(),
        expected_posts,
        "no write lost"
    );
    assert_eq!(store.count::<Comment>().unwrap(), expected_comments);
    for tally in &tallies {
        for id in &tally.posts {
            assert_eq!(
                store.get::<Post>(id).unwrap().rating,
                1,
                "each post updated once"
            );
        }
    }

    let mut seen: HashMap<(&str, Op), usize> = HashMap::new();
    while let Some(Observed::Change(c)) = posts.recv_timeout(Duration::from_millis(500)) {
        *seen.entry(("posts", c.op)).or_default() += 1;
    }
    while let Some(Observed::Change(c)) = comments.recv_timeout(Duration::from_millis(500)) {
        *seen.entry(("comments", c.op)).or_default() += 1;
    }
    let inserts: usize = tallies.iter().map(|t| t.inserts).sum();
    let updates: usize = tallies.iter().map(|t| t.updates).sum();
    let deletes: usize = tallies.iter().map(|t| t.deletes).sum();
    let count = |table, op| seen.get(&(table, op)).copied().unwrap_or(0);
    assert_eq!(
        count("posts", Op::Insert) + count("comments", Op::Insert),
        inserts
    );
    assert_eq!(count("posts", Op::Update), updates);
    assert_eq!(count("comments", Op::Delete), deletes);
    assert_eq!(
        count("posts", Op::Delete) + count("comments", Op::Update),
        0
    );
    eprintln!(
        "busy refusals retried: {}",
        tallies.iter().map(|t| t.busy).sum::<usize>()
    );
}

/// Two transactions taking the same two rows in opposite orders: PostgreSQL detects the
/// deadlock and fails one, which is reported as a typed conflict and leaves nothing behind.
#[test]
fn a_deadlock_on_postgres_is_a_typed_conflict_that_leaves_nothing_behind() {
    let Some(db) = common::TestDb::postgres() else {
        return;
    };
    let _schema = db.schema;
    let store = Arc::new(db.store);
    let a = store.save(common::post("a", 0)).unwrap();
    let b = store.save(common::post("b", 0)).unwrap();
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let run = |first: Post, second: Post, rating: i32| {
        let (store, barrier) = (store.clone(), barrier.clone());
        std::thread::spawn(move || {
            store.transaction(|tx| {
                tx.save(Post {
                    rating,
                    ..first.clone()
                })?;
                barrier.wait();
                tx.save(Post {
                    rating,
                    ..second.clone()
                })?;
                Ok(())
            })
        })
    };
    let one = run(a.clone(), b.clone(), 1);
    let two = run(b.clone(), a.clone(), 2);
    let results = [one.join().unwrap(), two.join().unwrap()];
    let conflicts = results
        .iter()
        .filter(|r| matches!(r, Err(Error::Conflict { .. })))
        .count();
    assert_eq!(conflicts, 1, "{results:?}");
    assert!(results.iter().any(Result::is_ok));
    assert!(results
        .iter()
        .all(|r| r.as_ref().map_or_else(Error::is_retryable, |_| true)));
    // The winner's rating is on both rows; nothing of the loser's.
    let winner = if results[0].is_ok() { 1 } else { 2 };
    assert_eq!(store.get::<Post>(&a.id).unwrap().rating, winner);
    assert_eq!(store.get::<Post>(&b.id).unwrap().rating, winner);
}

/// A serializable transaction that lost to a concurrent one is a typed, retryable conflict.
#[test]
fn a_serialization_failure_on_postgres_is_a_typed_conflict() {
    use datastore::diesel::connection::SimpleConnection;

    let Some(db) = common::TestDb::postgres() else {
        return;
    };
    let _schema = db.schema;
    let store = Arc::new(db.store);
    let post = store.save(common::post("contended", 0)).unwrap();
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let run = |rating: i32| {
        let (store, barrier, post) = (store.clone(), barrier.clone(), post.clone());
        std::thread::spawn(move || {
            store.transaction(|tx| {
                tx.batch_execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")?;
                let current: Post = tx.get(&post.id)?;
                barrier.wait();
                tx.save(Post {
                    rating: current.rating + rating,
                    ..current
                })?;
                Ok(())
            })
        })
    };
    let one = run(1);
    let two = run(10);
    let results = [one.join().unwrap(), two.join().unwrap()];
    assert_eq!(
        results
            .iter()
            .filter(|r| matches!(r, Err(Error::Conflict { .. })))
            .count(),
        1,
        "{results:?}"
    );
    let rating = store.get::<Post>(&post.id).unwrap().rating;
    assert!(
        rating == 1 || rating == 10,
        "one update, not both: {rating}"
    );
}

#[test]
fn eight_threads_linking_one_pair_at_once_leave_one_link_and_no_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path().join("links.db"));
    linking_one_pair_at_once_keeps_one_link(store);
}

#[test]
fn eight_threads_linking_one_pair_at_once_leave_one_link_and_no_error_on_postgres() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    let schema = common::PgSchema::new(&url);
    linking_one_pair_at_once_keeps_one_link(Store::builder(schema.url()));
}

/// Rounds of 8 threads linking one post to one editor at the same instant: each round leaves
/// one join row, and every thread is handed that row.
fn linking_one_pair_at_once_keeps_one_link(builder: datastore::StoreBuilder) {
    use common::models::{post_editors, PostEditor};
    const ROUNDS: usize = 20;
    let store = builder
        .migrations(datastore::embed_migrations!())
        .pool_size(THREADS as u32)
        .open()
        .unwrap();
    for round in 0..ROUNDS {
        let post = store
            .save(common::post(&format!("round {round}"), 0))
            .unwrap();
        let editor = store
            .save(common::user(&format!("editor {round}")))
            .unwrap();
        let start = Arc::new(std::sync::Barrier::new(THREADS));
        let links: Vec<PostEditor> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..THREADS)
                .map(|_| {
                    let (store, start, post, editor) = (&store, start.clone(), &post, &editor);
                    scope.spawn(move || {
                        let mut conn = store.conn().unwrap();
                        start.wait();
                        post.link_editors(&mut conn, editor)
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| {
                    t.join()
                        .unwrap()
                        .expect("linking an already linked pair is no error")
                })
                .collect()
        });
        let stored: Vec<PostEditor> = store
            .query::<PostEditor>(|q| q.filter(post_editors::post_id.eq(post.id)))
            .unwrap();
        assert_eq!(stored.len(), 1, "round {round}: {stored:?}");
        assert!(
            links.iter().all(|link| link == &stored[0]),
            "round {round}: every thread is handed the one link: {links:?}"
        );
    }
}

/// On PostgreSQL a link whose insert waits for another transaction's link of the same pair,
/// then loses to it, is handed that link, and leaves its own transaction usable.
#[test]
fn a_link_that_loses_the_race_inside_a_transaction_leaves_it_usable_on_postgres() {
    use common::models::PostEditor;
    let Some(url) = common::postgres_url() else {
        return;
    };
    let schema = common::PgSchema::new(&url);
    let store = Store::open(schema.url(), datastore::embed_migrations!()).unwrap();
    let post = store.save(common::post("raced", 0)).unwrap();
    let editor = store.save(common::user("ed")).unwrap();
    let (linked, first_linked) = std::sync::mpsc::channel();
    let (store, post, editor) = (&store, &post, &editor);
    std::thread::scope(|scope| {
        let first = scope.spawn(move || {
            store.transaction(|conn| {
                let link = post.link_editors(conn, editor)?;
                linked.send(()).unwrap();
                // The other transaction's insert now waits for this one to end.
                std::thread::sleep(Duration::from_millis(300));
                Ok(link)
            })
        });
        first_linked.recv().unwrap();
        let (second_link, comment) = store
            .transaction(|conn| {
                let link = post.link_editors(conn, editor)?;
                let comment = conn.save(common::comment(post, "after the race"))?;
                Ok((link, comment))
            })
            .expect("the losing link is no error, and its transaction goes on");
        let first_link = first.join().unwrap().unwrap();
        assert_eq!(second_link, first_link);
        assert_eq!(store.count::<PostEditor>().unwrap(), 1);
        assert!(store
            .find::<common::models::Comment>(&comment.id)
            .unwrap()
            .is_some());
    });
}

/// On PostgreSQL, a post with a comment and an editor, and `unlink_and_delete` of it started
/// while another session holds the editor's link, so that it waits after counting; `meanwhile`
/// commits then, and the delete goes on. Its outcome, with the store and the post.
fn unlink_and_delete_while(
    meanwhile: impl FnOnce(&Store, &Post),
) -> Option<(
    datastore::Result<datastore::relations::DeleteEffects>,
    common::TestDb,
    Post,
)> {
    use datastore::diesel::connection::SimpleConnection;
    use datastore::diesel::{Connection, PgConnection};

    #[derive(datastore::diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = datastore::diesel::sql_types::BigInt)]
        n: i64,
    }
    #[derive(datastore::diesel::QueryableByName)]
    struct Pid {
        #[diesel(sql_type = datastore::diesel::sql_types::Integer)]
        pid: i32,
    }

    let db = common::TestDb::postgres()?;
    let store = db.store.clone();
    let url = db.url().to_owned();
    let post = store.save(common::post("linked", 1)).unwrap();
    store.save(common::comment(&post, "first")).unwrap();
    let editor = store.save(common::user("editor")).unwrap();
    post.link_editors(&mut store.conn().unwrap(), &editor)
        .unwrap();

    // Another session holds the link's row, so the delete waits after counting.
    let mut holder = PgConnection::establish(&url).unwrap();
    let holder_pid = datastore::diesel::sql_query("SELECT pg_backend_pid() AS pid")
        .get_result::<Pid>(&mut holder)
        .unwrap()
        .pid;
    holder
        .batch_execute(&format!(
            "BEGIN; SELECT * FROM post_editors WHERE post_id = '{}' FOR UPDATE;",
            post.id
        ))
        .unwrap();
    let deleting = {
        let (store, id) = (store.clone(), post.id);
        std::thread::spawn(move || store.unlink_and_delete::<Post>(&id))
    };
    // Until a session waits for the holder.
    let mut watcher = PgConnection::establish(&url).unwrap();
    let started = std::time::Instant::now();
    while datastore::diesel::sql_query(format!(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE {holder_pid} = ANY(pg_blocking_pids(pid))"
    ))
    .get_result::<Count>(&mut watcher)
    .unwrap()
    .n == 0
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the delete never waited"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    meanwhile(&store, &post);
    holder.batch_execute("ROLLBACK").unwrap();
    let outcome = deleting.join().unwrap();
    Some((outcome, db, post))
}

/// On PostgreSQL, `unlink_and_delete` reports what it removed when another session commits a
/// row its delete reaches between its count and its delete (here a comment added to the post
/// while it waits): it counted in one snapshot, found the conflict, and ran again.
#[test]
fn on_postgres_unlink_and_delete_reports_what_it_removed_when_a_child_comes_meanwhile() {
    use common::models::comments;
    let Some((outcome, db, post)) = unlink_and_delete_while(|store, post| {
        store.save(common::comment(post, "meanwhile")).unwrap();
    }) else {
        return;
    };
    let effects = outcome.unwrap();
    let comments_left = db
        .store
        .query::<Comment>(|q| q.filter(comments::post_id.eq(post.id)))
        .unwrap()
        .len() as u64;
    assert_eq!(
        (effects.removed_from("comments"), comments_left),
        (2, 0),
        "{effects:?}"
    );
}

/// On PostgreSQL, a link committed while `unlink_and_delete` waits is unlinked too: its first
/// try, whose snapshot did not hold it, is refused by it and runs again.
#[test]
fn on_postgres_unlink_and_delete_unlinks_a_link_made_meanwhile() {
    use common::models::{post_editors, PostEditor};
    let Some((outcome, db, post)) = unlink_and_delete_while(|store, post| {
        let other = store.save(common::user("other editor")).unwrap();
        post.link_editors(&mut store.conn().unwrap(), &other)
            .unwrap();
    }) else {
        return;
    };
    let effects = outcome.unwrap();
    assert_eq!(effects.removed_from("posts"), 1, "{effects:?}");
    let links = db
        .store
        .query::<PostEditor>(|q| q.filter(post_editors::post_id.eq(post.id)))
        .unwrap();
    assert!(links.is_empty(), "{links:?}");
    assert!(db.store.find::<Post>(&post.id).unwrap().is_none());
}

/// On PostgreSQL, where the connection's transactions are `SERIALIZABLE` by default (here as
/// the connection's options set it; a role's or a database's default works the same way), the
/// store's own transactions, which need at least one snapshot (`REPEATABLE READ`), run at that
/// level too, rather than step out of the serializable transactions' checks: the reads of a
/// delete's preview and of a live query (deferrable, so never cancelled), and the writes of
/// `unlink_and_delete`, whose delete a trigger sees run in a serializable transaction. Under
/// the server's own default (`READ COMMITTED`) they read at `REPEATABLE READ`.
#[test]
fn on_postgres_the_stores_own_transactions_keep_a_serializable_default() {
    use datastore::diesel::connection::SimpleConnection;
    use datastore::diesel::RunQueryDsl;

    #[derive(datastore::diesel::QueryableByName)]
    struct Seen {
        #[diesel(sql_type = datastore::diesel::sql_types::Text)]
        level: String,
    }

    let Some(url) = common::postgres_url() else {
        return;
    };
    for (default, reads, writes) in [
        (
            "serializable",
            "SERIALIZABLE READ ONLY DEFERRABLE",
            "serializable",
        ),
        (
            "read%20committed",
            "REPEATABLE READ READ ONLY",
            "repeatable read",
        ),
    ] {
        let schema = common::PgSchema::new(&url);
        let url = format!(
            "{}%20-cdefault_transaction_isolation%3D{}",
            schema.url(),
            default.replace("%20", "\\%20")
        );
        let store = Store::builder(&url)
            .migrations(datastore::embed_migrations!())
            .open()
            .unwrap();
        store
            .conn()
            .unwrap()
            .batch_execute(
                "CREATE TABLE isolation_seen (level TEXT NOT NULL);
                 CREATE FUNCTION note_isolation() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN
                     INSERT INTO isolation_seen
                         VALUES (current_setting('transaction_isolation'));
                     RETURN OLD;
                 END $$;
                 CREATE TRIGGER note_isolation BEFORE DELETE ON posts
                     FOR EACH ROW EXECUTE FUNCTION note_isolation();",
            )
            .unwrap();
        let post = store.save(common::post("deleted", 1)).unwrap();
        let read_at = |statements: &[String]| {
            statements
                .iter()
                .filter_map(|sql| {
                    sql.strip_prefix("BEGIN TRANSACTION ISOLATION LEVEL ")
                        .or_else(|| sql.strip_prefix("SET TRANSACTION ISOLATION LEVEL "))
                })
                .map(|level| level.replace(',', ""))
                .collect::<Vec<_>>()
        };
        let (effects, previewed) =
            common::trace::statements(|| store.preview_delete::<Post>(&post.id).unwrap());
        assert_eq!(
            (effects.removed[0].table.as_str(), effects.removed[0].rows),
            ("posts", 1)
        );
        assert_eq!(
            read_at(&previewed),
            [reads],
            "{default}: the preview's reads"
        );
        let (_first, looked) = common::trace::statements(|| {
            let mut live = store.live::<Post>().subscribe().unwrap();
            live.recv_timeout(Duration::from_secs(10))
        });
        assert_eq!(
            read_at(&looked),
            [reads],
            "{default}: the live query's read"
        );
        store.unlink_and_delete::<Post>(&post.id).unwrap();
        let seen = datastore::diesel::sql_query("SELECT level FROM isolation_seen")
            .load::<Seen>(&mut *store.conn().unwrap())
            .unwrap();
        let levels: Vec<&str> = seen.iter().map(|s| s.level.as_str()).collect();
        assert_eq!(levels, [writes], "{default}: the delete's writes");
    }
}

/// The last handle of a store closes every connection of its pool before its drop returns,
/// even one the pool opened on a thread of its own a moment before: the file is closed (its
/// WAL folded back and removed), so that it can be copied, moved or deleted at once, and
/// another client finds it free.
#[test]
fn dropping_the_last_handle_of_a_store_closes_its_connections_before_it_returns() {
    use std::sync::atomic::{AtomicBool, Ordering};

    // A busy machine: a pool thread that has just handed a connection over is often paused
    // before it lets go of the pool, which then ends on that thread, later.
    let stop = Arc::new(AtomicBool::new(false));
    let busy: Vec<_> = (0..4)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.db");
    let wal = dir.path().join("app.db-wal");
    let still_open = (0..300_i32)
        .filter(|&round| {
            let store = Store::open(&file, datastore::embed_migrations!()).unwrap();
            store.save(common::post("kept", round)).unwrap();
            drop(store);
            wal.exists()
        })
        .count();
    stop.store(true, Ordering::Relaxed);
    busy.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(
        still_open, 0,
        "of 300 stores dropped, this many left a connection open"
    );
    let store = Store::open(&file, datastore::embed_migrations!()).unwrap();
    assert_eq!(store.count::<Post>().unwrap(), 300);
}
