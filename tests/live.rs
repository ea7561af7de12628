//! Live queries over relations (`store.live::<Post>()`): posts in a filtered, ordered, limited
//! window, each with its comments, their replies and its editors, kept equal to a fresh query
//! as transactions commit, on a SQLite file and on PostgreSQL. Every snapshot is compared with
//! the result of the same query and loads, hand-written with the eager loaders, at a commit.

mod common;

use std::time::Duration;

use common::models::{comments, posts, users, Comment, Post, User};
use common::{comment, post, user};
use datastore::observe::{LiveSubscription, Snapshot};
use datastore::prelude::*;
use datastore::{AnyConnection, Error};
use proptest::prelude::*;

/// The boxed query of posts.
type PostQuery = <Post as Persist<AnyConnection>>::Query;

/// The window every test watches: posts rated 0 or more, best first, at most five.
fn window(q: PostQuery) -> PostQuery {
    q.filter(posts::rating.ge(0))
        .order((posts::rating.desc(), posts::id.asc()))
        .limit(5)
}

/// The live query: the window, each post's comments with their replies, and its editors.
fn live(store: &Store) -> LiveSubscription<Post> {
    store
        .live::<Post>()
        .query(window)
        .load(Post::COMMENTS.then(Comment::REPLIES))
        .load(Post::EDITORS)
        .subscribe()
        .unwrap()
}

/// The same query and loads, by hand: what a screen would run after every change.
fn fresh(store: &Store) -> Vec<Post> {
    fresh_of(store, Some(window))
}

/// Every post (in key order, as a live query without a query) with its loads, by hand.
fn fresh_all(store: &Store) -> Vec<Post> {
    fresh_of(store, None)
}

fn fresh_of(store: &Store, query: Option<fn(PostQuery) -> PostQuery>) -> Vec<Post> {
    let mut conn = store.conn().unwrap();
    let conn: &mut AnyConnection = &mut conn;
    let mut rows: Vec<Post> = match query {
        Some(query) => conn.query::<Post>(query).unwrap(),
        None => conn.all().unwrap(),
    };
    Post::load_comments(conn, &mut rows).unwrap();
    Comment::load_replies(
        conn,
        rows.iter_mut()
            .flat_map(|p| p.comments.get_mut().unwrap().iter_mut()),
    )
    .unwrap();
    Post::load_editors(conn, &mut rows).unwrap();
    rows
}

/// The next snapshot; fails the test if none comes within a minute.
fn next<M: Persist<AnyConnection> + Clone + PartialEq>(
    live: &mut LiveSubscription<M>,
) -> Snapshot<M> {
    live.recv_timeout(Duration::from_secs(60))
        .expect("a new snapshot")
        .unwrap()
}

/// Snapshots until one equals `expected` (the commits of a step may arrive in two batches).
fn until(live: &mut LiveSubscription<Post>, expected: &[Post]) {
    loop {
        let got = next(live);
        if got[..] == *expected {
            return;
        }
    }
}

/// The stores to run on: a SQLite file, and PostgreSQL when configured.
fn stores(run: impl Fn(&Store)) {
    let (_dir, store) = common::file_store();
    run(&store);
    drop(store);
    if let Some(db) = common::TestDb::postgres() {
        let _schema = db.schema;
        run(&db.store);
    }
}

#[test]
fn a_live_view_follows_comments_links_related_rows_cascades_and_the_window() {
    stores(|store| {
        let ann = store.save(user("ann")).unwrap();
        let bob = store.save(user("bob")).unwrap();
        let first = store.save(post("first", 5)).unwrap();
        let second = store.save(post("second", 3)).unwrap();
        let mut view = live(store);
        assert_eq!(
            store.subscriptions(),
            1,
            "one subscription, however many tables"
        );
        assert_eq!(next(&mut view), fresh(store), "the first snapshot");

        // A comment added, edited, replied to, moved, deleted (its replies with it).
        let c = store.save(comment(&first, "hello")).unwrap();
        until(&mut view, &fresh(store));
        let mut edited = c.clone();
        edited.content = Some("hello, edited".into());
        let c = store.save(edited).unwrap();
        until(&mut view, &fresh(store));
        let reply = Comment {
            parent_id: Some(c.id),
            ..comment(&first, "a reply")
        };
        store.save(reply).unwrap();
        until(&mut view, &fresh(store));
        let moved = Comment {
            post_id: second.id,
            ..c.clone()
        };
        store.save(moved).unwrap();
        until(&mut view, &fresh(store));
        assert!(view.stats().partial > 0, "{:?}", view.stats());
        store.delete(&c).unwrap();
        until(&mut view, &fresh(store));

        // Links added and removed, and a linked row's field changed.
        first
            .link_editors(&mut store.conn().unwrap(), &ann)
            .unwrap();
        until(&mut view, &fresh(store));
        second
            .link_editors(&mut store.conn().unwrap(), &bob)
            .unwrap();
        until(&mut view, &fresh(store));
        store
            .save(User {
                username: "ann2".into(),
                ..ann.clone()
            })
            .unwrap();
        until(&mut view, &fresh(store));
        assert!(view.recv_timeout(Duration::ZERO).is_none(), "nothing more");
        first
            .unlink_editors(&mut store.conn().unwrap(), &ann)
            .unwrap();
        until(&mut view, &fresh(store));

        // A change that touches nothing loaded yields nothing.
        let outside = store.save(post("hidden", -1)).unwrap();
        assert!(
            view.recv_timeout(Duration::from_millis(300)).is_none(),
            "outside the window"
        );
        let untouched = view.stats().untouched;
        store.save(comment(&outside, "unseen")).unwrap();
        assert!(view.recv_timeout(Duration::from_millis(300)).is_none());
        assert!(view.stats().untouched > untouched, "{:?}", view.stats());

        // Rows entering and leaving the ordered, limited window.
        for i in 0..6 {
            store.save(post(&format!("more {i}"), 10 + i)).unwrap();
            until(&mut view, &fresh(store));
        }
        let mut low = store.get::<Post>(&first.id).unwrap();
        low.rating = 100;
        store.save(low).unwrap();
        until(&mut view, &fresh(store));
        assert!(view.recv_timeout(Duration::ZERO).is_none());

        // A parent deleted with its cascade (its links removed first, in one transaction).
        store.save(comment(&second, "doomed")).unwrap();
        let mut up = store.get::<Post>(&second.id).unwrap();
        up.rating = 200;
        store.save(up).unwrap();
        until(&mut view, &fresh(store));
        store.unlink_and_delete::<Post>(&second.id).unwrap();
        until(&mut view, &fresh(store));
        assert!(fresh(store).iter().all(|p| p.id != second.id));
        drop(view);
        assert_eq!(store.subscriptions(), 0, "dropping it unsubscribes");
    });
}

#[test]
fn a_filter_on_related_rows_is_kept_true_when_the_watched_table_changes() {
    stores(|store| {
        let first = store.save(post("first", 5)).unwrap();
        let second = store.save(post("second", 3)).unwrap();
        let about_rust = |q: PostQuery| {
            q.filter(Post::having_comments(comments::content.like("%rust%")))
                .order(posts::title.asc())
        };
        let fresh_rust = || {
            let mut conn = store.conn().unwrap();
            let conn: &mut AnyConnection = &mut conn;
            let mut rows: Vec<Post> = conn.query::<Post>(about_rust).unwrap();
            Post::load_comments(conn, &mut rows).unwrap();
            rows
        };
        let mut view = store
            .live::<Post>()
            .query(about_rust)
            .load(Post::COMMENTS)
            .subscribe()
            .unwrap();
        assert!(next(&mut view).is_empty());
        let c = store.save(comment(&second, "I like rust")).unwrap();
        let got = next(&mut view);
        assert_eq!(got, fresh_rust());
        assert_eq!(got.len(), 1, "the post enters");
        store.save(comment(&first, "no match")).unwrap();
        store.save(comment(&first, "rust again")).unwrap();
        let mut got = next(&mut view);
        while got != fresh_rust() {
            got = next(&mut view);
        }
        assert_eq!(got.len(), 2);
        store
            .save(Comment {
                content: Some("I like go".into()),
                ..c
            })
            .unwrap();
        let mut got = next(&mut view);
        while got != fresh_rust() {
            got = next(&mut view);
        }
        assert_eq!(got.len(), 1, "the post leaves");
    });
}

/// A filter on related rows built before the live query, outside its closure, is watched as
/// one built inside: the tables a query reads are known from the query, not from where its
/// parts were built. A new comment matching `having_comments` brings its post in, and a linked
/// user renamed to match `having_editors` (a subquery in a subquery: the links and the users)
/// brings the post they edit in.
#[test]
fn a_filter_on_related_rows_built_outside_the_closure_is_watched_too() {
    stores(|store| {
        let ann = store.save(user("ann")).unwrap();
        let first = store.save(post("first", 5)).unwrap();
        let second = store.save(post("second", 3)).unwrap();
        second
            .link_editors(&mut store.conn().unwrap(), &ann)
            .unwrap();
        let about_rust = Post::having_comments(comments::content.like("%rust%"));
        let edited_by_bea = Post::having_editors(users::username.eq("bea"));
        let mut discussed = store
            .live::<Post>()
            .query(move |q| q.filter(about_rust))
            .subscribe()
            .unwrap();
        let mut by_bea = store
            .live::<Post>()
            .query(move |q| q.filter(edited_by_bea))
            .subscribe()
            .unwrap();
        let ids = |rows: Snapshot<Post>| rows.iter().map(|p| p.id).collect::<Vec<_>>();
        assert_eq!(ids(next(&mut discussed)), []);
        assert_eq!(ids(next(&mut by_bea)), []);
        store.save(comment(&first, "I like rust")).unwrap();
        assert_eq!(ids(next(&mut discussed)), [first.id], "the post enters");
        store
            .save(User {
                username: "bea".into(),
                ..ann
            })
            .unwrap();
        assert_eq!(ids(next(&mut by_bea)), [second.id], "the post enters");
    });
}

#[test]
fn comments_filtered_by_their_posts_field_enter_and_leave_as_the_watched_posts_change() {
    stores(|store| {
        let good = store.save(post("good", 5)).unwrap();
        let poor = store.save(post("poor", 1)).unwrap();
        let on_good = store.save(comment(&good, "on good")).unwrap();
        store.save(comment(&poor, "on poor")).unwrap();
        let well_rated = |q: <Comment as Persist<AnyConnection>>::Query| {
            q.filter(Comment::where_post(posts::rating.gt(4)))
                .order(comments::content.asc())
        };
        let fresh_comments = || {
            let mut conn = store.conn().unwrap();
            let conn: &mut AnyConnection = &mut conn;
            let mut rows: Vec<Comment> = conn.query::<Comment>(well_rated).unwrap();
            Comment::load_replies(conn, &mut rows).unwrap();
            rows
        };
        let mut view = store
            .live::<Comment>()
            .query(well_rated)
            .load(Comment::REPLIES)
            .subscribe()
            .unwrap();
        let until_fresh = |view: &mut LiveSubscription<Comment>| loop {
            let got = view
                .recv_timeout(Duration::from_secs(60))
                .expect("a new snapshot")
                .unwrap();
            if got == fresh_comments() {
                return got;
            }
        };
        assert_eq!(view.recv().unwrap(), fresh_comments());
        let mut up = poor.clone();
        up.rating = 9;
        store.save(up).unwrap();
        assert_eq!(
            until_fresh(&mut view).len(),
            2,
            "the poor post's comment enters"
        );
        store
            .save(Comment {
                parent_id: Some(on_good.id),
                ..comment(&good, "a reply")
            })
            .unwrap();
        assert_eq!(until_fresh(&mut view).len(), 3);
        let mut down = store.get::<Post>(&good.id).unwrap();
        down.rating = 0;
        store.save(down).unwrap();
        assert_eq!(
            until_fresh(&mut view).len(),
            1,
            "the good post's comments leave"
        );
    });
}

#[test]
fn users_with_their_profile_and_their_posts_comments_follow_has_one_and_nested_paths() {
    stores(|store| {
        let ann = store.save(user("ann")).unwrap();
        let bob = store.save(user("bob")).unwrap();
        let p = store.save(post("p", 1)).unwrap();
        p.link_editors(&mut store.conn().unwrap(), &ann).unwrap();
        let fresh_users = || {
            let mut conn = store.conn().unwrap();
            let conn: &mut AnyConnection = &mut conn;
            let mut rows: Vec<User> = conn.all().unwrap();
            User::load_profile(conn, &mut rows).unwrap();
            User::load_posts(conn, &mut rows).unwrap();
            Post::load_comments(
                conn,
                rows.iter_mut()
                    .flat_map(|u| u.posts.get_mut().unwrap().iter_mut()),
            )
            .unwrap();
            rows
        };
        let mut view = store
            .live::<User>()
            .load(User::PROFILE)
            .load(User::POSTS.then(Post::COMMENTS))
            .subscribe()
            .unwrap();
        let until_fresh = |view: &mut LiveSubscription<User>| loop {
            let got = view
                .recv_timeout(Duration::from_secs(60))
                .expect("a new snapshot")
                .unwrap();
            if got == fresh_users() {
                return;
            }
        };
        assert_eq!(view.recv().unwrap(), fresh_users());
        let profile = store
            .save(common::models::Profile {
                user_id: bob.id,
                bio: Some("hi".into()),
                ..Default::default()
            })
            .unwrap();
        until_fresh(&mut view);
        store
            .save(common::models::Profile {
                bio: Some("edited".into()),
                ..profile.clone()
            })
            .unwrap();
        until_fresh(&mut view);
        store.save(comment(&p, "under a post ann edits")).unwrap();
        until_fresh(&mut view);
        store.delete(&profile).unwrap();
        until_fresh(&mut view);
        store.unlink_and_delete::<User>(&ann.id).unwrap();
        until_fresh(&mut view);
    });
}

#[test]
fn a_subscriber_that_fell_behind_gets_a_full_refresh_never_a_wrong_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path().join("blog.db"))
        .migrations(datastore::embed_migrations!())
        .observe_buffer(2)
        .open()
        .unwrap();
    let first = store.save(post("first", 5)).unwrap();
    let mut view = live(&store);
    next(&mut view);
    let full = view.stats().full;
    for i in 0..20 {
        store.save(comment(&first, &format!("c{i}"))).unwrap();
    }
    until(&mut view, &fresh(&store));
    assert!(view.stats().full > full, "{:?}", view.stats());
}

#[test]
fn a_subscriber_that_fell_behind_on_its_parents_gets_them_in_a_full_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path().join("blog.db"))
        .migrations(datastore::embed_migrations!())
        .observe_buffer(2)
        .open()
        .unwrap();
    let first = store.save(post("first", 5)).unwrap();
    store.save(comment(&first, "hello")).unwrap();
    let mut view = store
        .live::<Comment>()
        .load(Comment::POST)
        .subscribe()
        .unwrap();
    next(&mut view);
    let full = view.stats().full;
    // Only the parent changes (the rows stay as they were), more often than the queue holds.
    for i in 0..20 {
        let mut p = store.get::<Post>(&first.id).unwrap();
        p.title = format!("title {i}");
        store.save(p).unwrap();
    }
    loop {
        let got = next(&mut view);
        if got.parent(&got[0], Comment::POST).unwrap().title == "title 19" {
            break;
        }
    }
    assert!(view.stats().full > full, "{:?}", view.stats());
}

/// How many of the statements `f` ran on this thread read rows (`SELECT`s), with what it
/// returned. On PostgreSQL's trigger feed (a server without `wal_level = logical`), a live
/// query's read ends with a `SELECT pg_notify(..)`, the fence that tells its listener where
/// the read stands: not a read of rows, and not counted.
fn reads<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let (value, statements) = common::trace::statements(f);
    let reads = statements
        .iter()
        .map(|sql| sql.trim_start().to_uppercase())
        .filter(|sql| sql.starts_with("SELECT") && !sql.starts_with("SELECT PG_NOTIFY("))
        .count();
    (value, reads)
}

/// A store whose pool has one connection, so that the live query reads on it.
fn one_connection(url: &str) -> Store {
    Store::builder(url)
        .migrations(datastore::embed_migrations!())
        .pool_size(1)
        .open()
        .unwrap()
}

/// Posts with ten comments each, one reply on each first comment, and an editor each.
fn blog(store: &Store, posts: usize) -> (Vec<Post>, Vec<Comment>, User) {
    let editor = store.save(user("editor")).unwrap();
    let mut saved = Vec::new();
    let mut comments = Vec::new();
    for i in 0..posts {
        let p = store.save(post(&format!("post {i}"), i as i32)).unwrap();
        let mut rows: Vec<Comment> = (0..10).map(|j| comment(&p, &format!("c{j}"))).collect();
        rows = store.insert_all(rows).unwrap();
        store
            .save(Comment {
                parent_id: Some(rows[0].id),
                ..comment(&p, "reply")
            })
            .unwrap();
        p.link_editors(&mut store.conn().unwrap(), &editor).unwrap();
        comments.extend(rows);
        saved.push(p);
    }
    (saved, comments, editor)
}

/// What one committed change costs the live query: the statements it ran that read rows,
/// and how many roots it read again.
fn cost(store: &Store, view: &mut LiveSubscription<Post>, change: impl FnOnce()) -> (usize, usize) {
    change();
    let roots = view.stats().roots_read;
    let (got, spent) = reads(|| next(view));
    assert_eq!(got, fresh_all(store));
    (spent, view.stats().roots_read - roots)
}

fn statement_counts(url: impl Fn() -> (String, Box<dyn std::any::Any>)) {
    for size in [5, 40] {
        let (url, _keep) = url();
        let store = one_connection(&url);
        let (posts, comments, editor) = blog(&store, size);
        let mut view = store
            .live::<Post>()
            .load(Post::COMMENTS.then(Comment::REPLIES))
            .load(Post::EDITORS)
            .subscribe()
            .unwrap();
        next(&mut view);
        // Depth 2 (comments, then their replies): at most 3 statements, one post read again.
        let mut c = comments[3].clone();
        c.content = Some("edited".into());
        let (spent, roots) = cost(&store, &mut view, || {
            store.save(c.clone()).unwrap();
        });
        assert!(
            spent <= 3,
            "an edited comment cost {spent} statements ({size} posts)"
        );
        assert_eq!(roots, 1, "one post read again");
        let (spent, roots) = cost(&store, &mut view, || {
            store
                .save(Comment {
                    parent_id: Some(comments[13].id),
                    ..comment(&posts[1], "new reply")
                })
                .unwrap();
        });
        assert!(
            spent <= 3,
            "a new reply cost {spent} statements ({size} posts)"
        );
        assert_eq!(roots, 1);
        let (spent, roots) = cost(&store, &mut view, || {
            store.delete(&comments[25]).unwrap();
        });
        assert!(
            spent <= 3,
            "a deleted comment cost {spent} statements ({size} posts)"
        );
        assert_eq!(roots, 1);
        // A link: the join rows and the linked rows of that post.
        let (spent, roots) = cost(&store, &mut view, || {
            posts[0]
                .unlink_editors(&mut store.conn().unwrap(), &editor)
                .unwrap();
        });
        assert!(
            spent <= 2,
            "an unlink cost {spent} statements ({size} posts)"
        );
        assert_eq!(roots, 1);
        // A post's own field: the window, read again in one statement.
        let mut p = posts[2].clone();
        p.title = "renamed".into();
        let (spent, roots) = cost(&store, &mut view, || {
            store.save(p.clone()).unwrap();
        });
        assert_eq!(spent, 1, "a post renamed ({size} posts)");
        assert_eq!(roots, 0);
    }
}

#[test]
fn a_change_to_one_comment_costs_at_most_depth_plus_one_statements_whatever_the_result_size() {
    statement_counts(|| {
        let dir = tempfile::tempdir().unwrap();
        (
            dir.path().join("blog.db").display().to_string(),
            Box::new(dir),
        )
    });
}

#[test]
fn on_postgres_a_change_to_one_comment_costs_at_most_depth_plus_one_statements() {
    if let Some(url) = common::postgres_url() {
        statement_counts(|| {
            let schema = common::PgSchema::new(&url);
            (schema.url().to_owned(), Box::new(schema))
        });
    }
}

#[test]
fn a_live_query_inside_a_transaction_reads_committed_data() {
    let (_dir, store) = common::file_store();
    let first = store.save(post("first", 5)).unwrap();
    let mut view = live(&store);
    next(&mut view);
    store
        .transaction(|tx| {
            tx.save(comment(&first, "inside"))?;
            // The view reads committed rows, on observe's own connection: nothing new yet.
            assert!(view.recv_timeout(Duration::from_millis(100)).is_none());
            Ok::<_, Error>(())
        })
        .unwrap();
    until(&mut view, &fresh(&store));
}

/// On PostgreSQL a partial refresh ends with a fence (a marker sent on observe's own
/// connection); when that fails, the result it read was never handed out, so the next call
/// reads the whole result again at once, as after a failed read. It kept the undelivered
/// result instead, and waited for a commit that changed it again.
///
/// The fence fails because observe's connection was ended by the server: the store's
/// connections carry an application name of the test's own, the trigger feed's listener
/// renames its own, and the pool holds one connection, which ends the others.
#[test]
fn on_postgres_a_live_query_whose_fence_failed_reads_its_result_again_at_once() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    let schema = common::PgSchema::new(&url);
    let store = Store::builder(format!(
        "{}&application_name={}",
        schema.url(),
        schema.name()
    ))
    .migrations(datastore::embed_migrations!())
    .change_feed(datastore::observe::ChangeFeed::Triggers)
    .pool_size(1)
    .open()
    .unwrap();
    let first = store.save(post("first", 5)).unwrap();
    let mut view = store
        .live::<Post>()
        .load(Post::COMMENTS)
        .subscribe()
        .unwrap();
    assert_eq!(next(&mut view), fresh_comments(&store));

    #[derive(diesel::QueryableByName)]
    struct Ended {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        done: bool,
    }
    // A connection the store closed a moment ago (its migrations') may still be listed as
    // its backend exits: waited for (5 s at most), so that only observe's own is left.
    let started = std::time::Instant::now();
    loop {
        let listed: Vec<Ended> = diesel::sql_query(
            "SELECT count(*) = 1 AS done FROM pg_stat_activity \
             WHERE application_name = current_setting('application_name') \
             AND pid <> pg_backend_pid()",
        )
        .load(&mut *store.conn().unwrap())
        .unwrap();
        if listed[0].done || started.elapsed() > Duration::from_secs(5) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Waits (5 s at most) for each to end: the fence must find it gone.
    let ended: Vec<Ended> = diesel::sql_query(
        "SELECT pg_terminate_backend(pid, 5000) AS done FROM pg_stat_activity \
         WHERE application_name = current_setting('application_name') \
         AND pid <> pg_backend_pid()",
    )
    .load(&mut *store.conn().unwrap())
    .unwrap();
    assert_eq!(ended.len(), 1, "observe's own connection, and no other");
    assert!(ended[0].done);

    store.save(comment(&first, "hello")).unwrap();
    match view.recv_timeout(Duration::from_secs(60)) {
        Some(Err(_)) => {}
        other => panic!("expected the fence to fail, got {other:?}"),
    }
    // Nothing was committed since, so a call that waited for a commit would find none; the
    // read again comes a tenth of a second after the failure.
    let again = view
        .recv_timeout(Duration::from_secs(2))
        .expect("a read again")
        .unwrap();
    assert_eq!(again, fresh_comments(&store));
    assert_eq!(again[0].comments.get().map(<[Comment]>::len), Some(1));
}

/// Every post with its comments, by hand.
fn fresh_comments(store: &Store) -> Vec<Post> {
    let mut conn = store.conn().unwrap();
    let conn: &mut AnyConnection = &mut conn;
    let mut rows: Vec<Post> = conn.all().unwrap();
    Post::load_comments(conn, &mut rows).unwrap();
    rows
}

/// A live query that subscribes while a transaction is in flight, whose write came before the
/// subscription and whose commit comes after the query's first read, is told of the rows it
/// missed and reads its result again (it kept the first read's result for good before).
#[test]
fn a_write_made_before_a_live_query_subscribed_and_committed_after_its_first_read_is_seen() {
    let (_dir, store) = common::file_store();
    let mut first = store.save(post("first", 5)).unwrap();
    let mut view = None;
    store
        .transaction(|tx| {
            first.title = "renamed".into();
            tx.save(first.clone())?;
            let mut subscribed = live(&store);
            let read = next(&mut subscribed);
            let titles: Vec<&str> = read.iter().map(|p| p.title.as_str()).collect();
            assert_eq!(titles, ["first"], "the first read sees committed data");
            view = Some(subscribed);
            Ok::<_, Error>(())
        })
        .unwrap();
    until(view.as_mut().unwrap(), &fresh(&store));
}

/// Each comment with the post it points at, as a live view shows it.
fn with_posts(snapshot: &Snapshot<Comment>) -> Vec<(Comment, Option<Post>)> {
    snapshot
        .iter()
        .map(|c| (c.clone(), snapshot.parent(c, Comment::POST).cloned()))
        .collect()
}

/// Each comment with the post it points at, by hand.
fn fresh_with_posts(store: &Store) -> Vec<(Comment, Option<Post>)> {
    let mut conn = store.conn().unwrap();
    let comments: Vec<Comment> = conn.all().unwrap();
    comments
        .into_iter()
        .map(|c| {
            let post = conn.find::<Post>(&c.post_id).unwrap();
            (c, post)
        })
        .collect()
}

#[test]
fn comments_with_their_post_follow_post_edits_moves_and_cascades() {
    stores(|store| {
        let first = store.save(post("first", 5)).unwrap();
        let second = store.save(post("second", 3)).unwrap();
        let c = store.save(comment(&first, "hello")).unwrap();
        store.save(comment(&first, "again")).unwrap();
        let mut view = store
            .live::<Comment>()
            .load(Comment::POST)
            .subscribe()
            .unwrap();
        let until_fresh = |view: &mut LiveSubscription<Comment>| loop {
            let got = next(view);
            if with_posts(&got) == fresh_with_posts(store) {
                return got;
            }
        };
        let got = next(&mut view);
        assert_eq!(
            with_posts(&got),
            fresh_with_posts(store),
            "the first snapshot"
        );
        assert_eq!(
            got.parent(&got[0], Comment::POST).map(|p| &p.title),
            Some(&"first".to_string())
        );

        // The post edited: the same rows, a new snapshot with the new parent.
        let mut edited = store.get::<Post>(&first.id).unwrap();
        edited.title = "first, edited".into();
        store.save(edited).unwrap();
        let got = until_fresh(&mut view);
        assert_eq!(
            got.parent(&got[0], Comment::POST).unwrap().title,
            "first, edited"
        );
        assert_eq!(
            got.parent(&got[1], Comment::POST).unwrap().title,
            "first, edited"
        );

        // A post no comment points at changes: nothing read, no snapshot.
        let untouched = view.stats().untouched;
        let mut other = store.get::<Post>(&second.id).unwrap();
        other.rating = 4;
        store.save(other).unwrap();
        assert!(view.recv_timeout(Duration::from_millis(300)).is_none());
        assert!(view.stats().untouched > untouched, "{:?}", view.stats());

        // The comment moved to the other post: its new parent.
        store
            .save(Comment {
                post_id: second.id,
                ..c.clone()
            })
            .unwrap();
        let got = until_fresh(&mut view);
        let moved = got.iter().find(|r| r.id == c.id).unwrap();
        assert_eq!(got.parent(moved, Comment::POST).unwrap().title, "second");

        // The parent deleted with its cascade: the comment is gone.
        store.unlink_and_delete::<Post>(&second.id).unwrap();
        let got = until_fresh(&mut view);
        assert!(got.iter().all(|r| r.id != c.id));
        assert_eq!(got.len(), 1);
        // Exactly the parents a fresh live query holds (the deleted one is not kept).
        assert_eq!(
            got,
            next(
                &mut store
                    .live::<Comment>()
                    .load(Comment::POST)
                    .subscribe()
                    .unwrap()
            )
        );
        assert!(view.stats().partial > 0, "{:?}", view.stats());
    });
}

#[test]
fn comments_authors_follow_renames_author_changes_and_deletes_nested_after_has_many() {
    stores(|store| {
        let ann = store.save(user("ann")).unwrap();
        let bob = store.save(user("bob")).unwrap();
        let p = store.save(post("p", 1)).unwrap();
        let c = store
            .save(Comment {
                author_id: Some(ann.id),
                ..comment(&p, "by ann")
            })
            .unwrap();
        let mut view = store
            .live::<Post>()
            .load(Post::COMMENTS.then(Comment::AUTHOR))
            .subscribe()
            .unwrap();
        let author = |got: &Snapshot<Post>| {
            let comments = got[0].comments.get().unwrap();
            got.parent(&comments[0], Comment::AUTHOR)
                .map(|u| u.username.clone())
        };
        assert_eq!(author(&next(&mut view)).as_deref(), Some("ann"));
        store
            .save(User {
                username: "ann2".into(),
                ..store.get::<User>(&ann.id).unwrap()
            })
            .unwrap();
        assert_eq!(author(&next(&mut view)).as_deref(), Some("ann2"));
        store
            .save(Comment {
                author_id: Some(bob.id),
                ..c.clone()
            })
            .unwrap();
        assert_eq!(author(&next(&mut view)).as_deref(), Some("bob"));
        // Ann is no one's author any more: her rename touches nothing loaded.
        store
            .save(User {
                username: "ann3".into(),
                ..store.get::<User>(&ann.id).unwrap()
            })
            .unwrap();
        assert!(view.recv_timeout(Duration::from_millis(300)).is_none());
        // The author deleted: the comment outlives them, without an author.
        store.unlink_and_delete::<User>(&bob.id).unwrap();
        let got = loop {
            let got = next(&mut view);
            if got[0].comments.get().unwrap()[0].author_id.is_none() {
                break got;
            }
        };
        assert_eq!(author(&got), None);
        assert_eq!(
            got,
            next(
                &mut store
                    .live::<Post>()
                    .load(Post::COMMENTS.then(Comment::AUTHOR))
                    .subscribe()
                    .unwrap()
            )
        );
    });
}

/// What one committed change costs a live view of comments with their post and parent: the
/// statements it ran that read rows, and how many roots it read again.
fn parent_cost(
    store: &Store,
    view: &mut LiveSubscription<Comment>,
    change: impl FnOnce(),
) -> (usize, usize) {
    change();
    let roots = view.stats().roots_read;
    let (got, spent) = reads(|| next(view));
    assert_eq!(got, next(&mut parents_view(store)));
    (spent, view.stats().roots_read - roots)
}

fn parents_view(store: &Store) -> LiveSubscription<Comment> {
    store
        .live::<Comment>()
        .load(Comment::POST)
        .load(Comment::PARENT)
        .subscribe()
        .unwrap()
}

fn parent_statement_counts(url: impl Fn() -> (String, Box<dyn std::any::Any>)) {
    for size in [5, 40] {
        let (url, _keep) = url();
        let store = one_connection(&url);
        let (posts, comments, _) = blog(&store, size);
        let mut view = parents_view(&store);
        next(&mut view);
        // Depth 1: at most 2 statements. A post edited: its 11 comments' post read again (one
        // statement; the comments themselves are not).
        let mut p = posts[2].clone();
        p.title = "renamed".into();
        let (spent, roots) = parent_cost(&store, &mut view, || {
            store.save(p.clone()).unwrap();
        });
        assert_eq!(
            spent, 1,
            "a parent edit cost {spent} statements ({size} posts)"
        );
        assert_eq!(roots, 11, "the post's comments read again, no other");
        // A comment moved: the comments (one statement) and its new post.
        let (spent, roots) = parent_cost(&store, &mut view, || {
            store
                .save(Comment {
                    post_id: posts[3].id,
                    ..comments[4].clone()
                })
                .unwrap();
        });
        assert!(
            spent <= 2,
            "a moved comment cost {spent} statements ({size} posts)"
        );
        assert_eq!(roots, 1);
        // A comment with a reply edited: the comments, and the reply's parent.
        let mut c = comments[10].clone();
        c.content = Some("edited".into());
        let (spent, roots) = parent_cost(&store, &mut view, || {
            store.save(c.clone()).unwrap();
        });
        assert!(
            spent <= 2,
            "an edited parent comment cost {spent} statements ({size} posts)"
        );
        assert_eq!(roots, 1, "its reply");
    }
}

#[test]
fn a_parent_edit_costs_at_most_depth_plus_one_statements_and_reads_only_its_rows() {
    parent_statement_counts(|| {
        let dir = tempfile::tempdir().unwrap();
        (
            dir.path().join("blog.db").display().to_string(),
            Box::new(dir),
        )
    });
}

#[test]
fn on_postgres_a_parent_edit_costs_at_most_depth_plus_one_statements() {
    if let Some(url) = common::postgres_url() {
        parent_statement_counts(|| {
            let schema = common::PgSchema::new(&url);
            (schema.url().to_owned(), Box::new(schema))
        });
    }
}

/// One step of a random history.
#[derive(Debug, Clone)]
enum Op {
    AddPost(i32),
    Rate(usize, i32),
    DeletePost(usize),
    AddComment(usize),
    Reply(usize),
    Edit(usize),
    Move(usize, usize),
    DeleteComment(usize),
    Link(usize, usize),
    Unlink(usize, usize),
    Rename(usize),
    /// Two changes in one transaction: a comment moved and another edited.
    MoveAndEdit(usize, usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    let i = 0..64usize;
    prop_oneof![
        (-2..20i32).prop_map(Op::AddPost),
        (i.clone(), -2..20i32).prop_map(|(p, r)| Op::Rate(p, r)),
        i.clone().prop_map(Op::DeletePost),
        i.clone().prop_map(Op::AddComment),
        i.clone().prop_map(Op::Reply),
        i.clone().prop_map(Op::Edit),
        (i.clone(), i.clone()).prop_map(|(c, p)| Op::Move(c, p)),
        i.clone().prop_map(Op::DeleteComment),
        (i.clone(), i.clone()).prop_map(|(p, u)| Op::Link(p, u)),
        (i.clone(), i.clone()).prop_map(|(p, u)| Op::Unlink(p, u)),
        i.clone().prop_map(Op::Rename),
        (i.clone(), i.clone(), i).prop_map(|(a, p, b)| Op::MoveAndEdit(a, p, b)),
    ]
}

fn pick<T: Clone>(rows: &[T], i: usize) -> Option<T> {
    (!rows.is_empty()).then(|| rows[i % rows.len()].clone())
}

/// Applies one step (nothing when it names rows that do not exist).
fn apply(store: &Store, op: &Op, n: usize) {
    let posts: Vec<Post> = store.all().unwrap();
    let comments: Vec<Comment> = store.all().unwrap();
    let users: Vec<User> = store.all().unwrap();
    let conn = &mut store.conn().unwrap();
    match op {
        Op::AddPost(rating) => {
            store.save(post(&format!("p{n}"), *rating)).unwrap();
        }
        Op::Rate(p, rating) => {
            if let Some(mut p) = pick(&posts, *p) {
                p.rating = *rating;
                store.save(p).unwrap();
            }
        }
        Op::DeletePost(p) => {
            if let Some(p) = pick(&posts, *p) {
                store.unlink_and_delete::<Post>(&p.id).unwrap();
            }
        }
        Op::AddComment(p) => {
            if let Some(p) = pick(&posts, *p) {
                store.save(comment(&p, &format!("c{n}"))).unwrap();
            }
        }
        Op::Reply(c) => {
            if let Some(c) = pick(&comments, *c) {
                store
                    .save(Comment {
                        content: Some(format!("r{n}")),
                        post_id: c.post_id,
                        parent_id: Some(c.id),
                        ..Comment::default()
                    })
                    .unwrap();
            }
        }
        Op::Edit(c) => {
            if let Some(mut c) = pick(&comments, *c) {
                c.content = Some(format!("e{n}"));
                store.save(c).unwrap();
            }
        }
        Op::Move(c, p) => {
            if let (Some(mut c), Some(p)) = (pick(&comments, *c), pick(&posts, *p)) {
                c.post_id = p.id;
                store.save(c).unwrap();
            }
        }
        Op::DeleteComment(c) => {
            if let Some(c) = pick(&comments, *c) {
                store.delete(&c).unwrap();
            }
        }
        Op::Link(p, u) => {
            if let (Some(p), Some(u)) = (pick(&posts, *p), pick(&users, *u)) {
                p.link_editors(conn, &u).unwrap();
            }
        }
        Op::Unlink(p, u) => {
            if let (Some(p), Some(u)) = (pick(&posts, *p), pick(&users, *u)) {
                p.unlink_editors(conn, &u).unwrap();
            }
        }
        Op::Rename(u) => {
            if let Some(mut u) = pick(&users, *u) {
                u.username = format!("u{n}");
                store.save(u).unwrap();
            }
        }
        Op::MoveAndEdit(a, p, b) => {
            if let (Some(mut a), Some(p), Some(b)) =
                (pick(&comments, *a), pick(&posts, *p), pick(&comments, *b))
            {
                store
                    .transaction(|tx| {
                        a.post_id = p.id;
                        tx.save(a)?;
                        let mut b = tx.get::<Comment>(&b.id)?;
                        b.content = Some(format!("m{n}"));
                        tx.save(b)
                    })
                    .unwrap();
            }
        }
    }
}

/// The posts view of the random histories: `live`'s, and each comment's parent comment (a
/// reply's: `belongs_to` after a `has_many`; it may be under another post after a move).
fn threads_view(store: &Store) -> LiveSubscription<Post> {
    store
        .live::<Post>()
        .query(window)
        .load(Post::COMMENTS.then(Comment::REPLIES))
        .load(Post::COMMENTS.then(Comment::PARENT))
        .load(Post::EDITORS)
        .subscribe()
        .unwrap()
}

/// The comments view of the random histories: every comment with its post (and the post's
/// editors: relations after a `belongs_to`) and its parent comment.
fn comments_view(store: &Store) -> LiveSubscription<Comment> {
    store
        .live::<Comment>()
        .load(Comment::POST.then(Post::EDITORS))
        .load(Comment::PARENT)
        .subscribe()
        .unwrap()
}

/// The posts view's result with each comment's parent resolved.
type Threads = Vec<(Post, Vec<Option<Comment>>)>;

/// The comments view's result with each comment's post and parent resolved.
type Resolved = Vec<(Comment, Option<Post>, Option<Comment>)>;

fn threads_of(snapshot: &Snapshot<Post>) -> Threads {
    snapshot
        .iter()
        .map(|p| {
            let parents = p.comments.get().unwrap().iter();
            let parents = parents.map(|c| snapshot.parent(c, Comment::PARENT).cloned());
            (p.clone(), parents.collect())
        })
        .collect()
}

fn resolved_of(snapshot: &Snapshot<Comment>) -> Resolved {
    snapshot
        .iter()
        .map(|c| {
            (
                c.clone(),
                snapshot.parent(c, Comment::POST).cloned(),
                snapshot.parent(c, Comment::PARENT).cloned(),
            )
        })
        .collect()
}

/// The posts view's result, by hand.
fn fresh_threads(store: &Store) -> Threads {
    let mut conn = store.conn().unwrap();
    fresh(store)
        .into_iter()
        .map(|p| {
            let parents = p.comments.get().unwrap().iter();
            let parents = parents.map(|c| {
                c.parent_id
                    .and_then(|id| conn.find::<Comment>(&id).unwrap())
            });
            let parents = parents.collect();
            (p, parents)
        })
        .collect()
}

/// The comments view's result, by hand.
fn fresh_resolved(store: &Store) -> Resolved {
    let mut conn = store.conn().unwrap();
    let conn: &mut AnyConnection = &mut conn;
    let comments: Vec<Comment> = conn.all().unwrap();
    comments
        .into_iter()
        .map(|c| {
            let mut post: Vec<Post> = conn.find::<Post>(&c.post_id).unwrap().into_iter().collect();
            Post::load_editors(conn, &mut post).unwrap();
            let parent = c
                .parent_id
                .and_then(|id| conn.find::<Comment>(&id).unwrap());
            (c, post.pop(), parent)
        })
        .collect()
}

/// Checks that every snapshot is a state, in the states' order, and the last is the last.
fn in_order<T: PartialEq + std::fmt::Debug>(
    snapshots: &[T],
    states: &[T],
) -> Result<(), TestCaseError> {
    let mut at = 0;
    for snapshot in snapshots {
        let found = states[at..].iter().position(|s| s == snapshot);
        prop_assert!(
            found.is_some(),
            "a snapshot that is no commit's result (or goes back), after state {at} of {}: {snapshot:#?}",
            states.len()
        );
        at += found.unwrap();
    }
    prop_assert_eq!(snapshots.last(), states.last());
    Ok(())
}

/// Runs the steps while another thread reads two live views (posts with their relations and
/// their comments' parents; comments with their post and parent); checks that every snapshot
/// is the result at a commit, parents resolved, that they follow commit order, and that the
/// last is the final result, parents and all.
fn follows_every_commit(store: &Store, ops: &[Op]) -> Result<(), TestCaseError> {
    for (i, name) in ["ann", "bob", "cat"].iter().enumerate() {
        store.save(user(name)).unwrap();
        store.save(post(&format!("seed {i}"), i as i32)).unwrap();
    }
    let mut posts = threads_view(store);
    let mut comments = comments_view(store);
    let mut threads = vec![fresh_threads(store)];
    let mut resolved = vec![fresh_resolved(store)];
    let (seen_posts, seen_comments) = std::thread::scope(|scope| {
        let (stop, stopped) = std::sync::mpsc::channel::<(Threads, Resolved)>();
        let reader = scope.spawn(move || {
            let mut seen_posts = vec![next(&mut posts)];
            let mut seen_comments = vec![next(&mut comments)];
            let mut last_wanted: Option<((Threads, Resolved), std::time::Instant)> = None;
            loop {
                if let Ok(wanted) = stopped.try_recv() {
                    last_wanted = Some((wanted, std::time::Instant::now()));
                }
                if let Some(((threads, resolved), since)) = &last_wanted {
                    // Once writes stop, the last snapshots must come to equal a fresh query
                    // (a minute is plenty; the comparison below says what they are otherwise).
                    let caught_up = threads_of(seen_posts.last().unwrap()) == *threads
                        && resolved_of(seen_comments.last().unwrap()) == *resolved;
                    if caught_up || since.elapsed() > Duration::from_secs(60) {
                        return (seen_posts, seen_comments);
                    }
                }
                if let Some(got) = posts.recv_timeout(Duration::from_millis(25)) {
                    seen_posts.push(got.unwrap());
                }
                if let Some(got) = comments.recv_timeout(Duration::from_millis(25)) {
                    seen_comments.push(got.unwrap());
                }
            }
        });
        for (n, op) in ops.iter().enumerate() {
            apply(store, op, n);
            // The only writer: what it reads now is the state after this commit.
            let state = fresh_threads(store);
            if threads.last() != Some(&state) {
                threads.push(state);
            }
            let state = fresh_resolved(store);
            if resolved.last() != Some(&state) {
                resolved.push(state);
            }
        }
        stop.send((
            threads.last().unwrap().clone(),
            resolved.last().unwrap().clone(),
        ))
        .unwrap();
        reader.join().unwrap()
    });
    in_order(
        &seen_posts.iter().map(threads_of).collect::<Vec<_>>(),
        &threads,
    )?;
    in_order(
        &seen_comments.iter().map(resolved_of).collect::<Vec<_>>(),
        &resolved,
    )?;
    // The last snapshots hold exactly the parents a fresh live query loads (none left over).
    prop_assert_eq!(seen_posts.last().unwrap(), &next(&mut threads_view(store)));
    prop_assert_eq!(
        seen_comments.last().unwrap(),
        &next(&mut comments_view(store))
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn on_a_sqlite_file_every_snapshot_is_a_commits_result_in_order_and_the_last_is_fresh(ops in prop::collection::vec(op(), 1..30)) {
        let (_dir, store) = common::file_store();
        follows_every_commit(&store, &ops)?;
    }

    #[test]
    fn on_postgres_every_snapshot_is_a_commits_result_in_order_and_the_last_is_fresh(ops in prop::collection::vec(op(), 1..30)) {
        if let Some(db) = common::TestDb::postgres() {
            let _schema = db.schema;
            follows_every_commit(&db.store, &ops)?;
        }
    }
}

/// A caller's closure that panics while a live query reads inside a `store.transaction` (on
/// observe's own connection, in a read transaction) does not leave that connection inside the
/// read transaction: later reads there see later commits.
#[test]
fn a_panic_in_a_live_querys_closure_leaves_observes_own_connection_fresh() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let (_dir, store) = common::file_store();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        store.transaction(|_tx| {
            let mut live = store
                .live::<Post>()
                .query(move |q| {
                    // The first build learns the tables; the second reads.
                    if counted.fetch_add(1, Ordering::SeqCst) == 1 {
                        panic!("the caller's closure panics");
                    }
                    q
                })
                .subscribe()?;
            live.recv()?;
            Ok(())
        })
    }));
    assert!(panicked.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 2, "it panicked while reading");
    // Each read inside a transaction sees what committed before it (a connection left in the
    // panicked read transaction would keep the snapshot of its first read after it).
    for n in 1..=2 {
        store.save(common::post("after the panic", n)).unwrap();
        let seen = store
            .transaction(|_tx| {
                let mut live = store.live::<Post>().subscribe()?;
                Ok(live.recv()?.len())
            })
            .unwrap();
        assert_eq!(seen, n as usize, "later commits are seen");
    }
}

/// One parent reached on two paths, each loading other relations of it: the snapshot's copy
/// of it holds what both loaded (the first path's copy was kept alone, without the second
/// path's editors).
#[test]
fn a_parent_reached_on_two_paths_holds_what_each_loaded() {
    stores(|store| {
        let ann = store.save(user("ann")).unwrap();
        let p = store.save(post("p", 1)).unwrap();
        p.link_editors(&mut store.conn().unwrap(), &ann).unwrap();
        let root = store.save(comment(&p, "root")).unwrap();
        let reply = store
            .save(Comment {
                parent_id: Some(root.id),
                ..comment(&p, "reply")
            })
            .unwrap();
        let mut view = store
            .live::<Comment>()
            .load(Comment::POST)
            .load(Comment::REPLIES.then(Comment::POST.then(Post::EDITORS)))
            .subscribe()
            .unwrap();
        let got = next(&mut view);
        let root_row = got.iter().find(|c| c.id == root.id).unwrap();
        let replies = root_row.replies.get().unwrap();
        assert_eq!(replies[0].id, reply.id);
        for comment in [root_row, &replies[0]] {
            let post = got.parent(comment, Comment::POST).unwrap();
            let editors = post.editors.get().expect("the second path's editors");
            assert_eq!(editors, std::slice::from_ref(&ann));
        }
    });
}
