//! Saving, finding, querying, counting and deleting models, on a real SQLite database.

mod common;

use common::models::{posts, Comment, Post, PostStatus, Profile, Settings, User};
use common::{file_store, post};
use datastore::diesel::connection::SimpleConnection;
use datastore::prelude::*;
use datastore::{ConstraintKind, Error};

per_backend! {
    fn save_inserts_a_new_row_and_returns_it_as_stored(store) {
        let before = Timestamp::now();
        let saved = store.save(post("My Post", 10)).unwrap();
        assert_eq!(saved.title, "My Post");
        assert!(saved.created_at >= before, "created_at is filled on insert");
        assert_eq!(saved.created_at, saved.updated_at);
        assert_eq!(store.find::<Post>(&saved.id).unwrap(), Some(saved));
    }
}

per_backend! {
    fn save_updates_the_row_with_the_same_key_keeping_created_at(store) {
        let first = store.save(post("Draft", 1)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let mut edited = first.clone();
        edited.title = "Final".into();
        edited.status = PostStatus::Inactive;
        edited.created_at = Timestamp::now(); // ignored: created_at is kept on update
        let updated = store.save(edited).unwrap();
        assert_eq!(updated.id, first.id);
        assert_eq!(updated.title, "Final");
        assert_eq!(updated.status, PostStatus::Inactive);
        assert_eq!(updated.created_at, first.created_at);
        assert!(
            updated.updated_at > first.updated_at,
            "updated_at is refreshed"
        );
        assert_eq!(store.count::<Post>().unwrap(), 1);
    }
}

per_backend! {
    fn saving_an_unchanged_row_writes_nothing(store) {
        let first = store.save(post("Same", 3)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let again = store.save(first.clone()).unwrap();
        assert_eq!(again, first, "not rewritten, updated_at untouched");
    }
}

per_backend! {
    fn insert_all_inserts_every_row_with_its_timestamps(store) {
        let before = Timestamp::now();
        let rows: Vec<Post> = (0..3).map(|i| post(&format!("bulk {i}"), i)).collect();
        let inserted = store.insert_all(rows.clone()).unwrap();
        assert_eq!(inserted.len(), 3);
        for (row, given) in inserted.iter().zip(&rows) {
            assert_eq!((row.id, &row.title), (given.id, &given.title));
            assert!(row.created_at >= before, "created_at is set");
            assert_eq!(row.created_at, row.updated_at);
        }
        assert_eq!(store.all::<Post>().unwrap(), inserted, "returned as stored");
        assert_eq!(store.insert_all(Vec::<Post>::new()).unwrap(), vec![]);
        let one = store.insert_all(vec![post("single", 9)]).unwrap().remove(0);
        assert_eq!(store.find::<Post>(&one.id).unwrap(), Some(one));
    }
}

per_backend! {
    fn insert_all_over_several_statements_writes_all_rows_or_none(store) {
        // Posts bind 7 values each: 5,000 of them take two statements.
        let rows: Vec<Post> = (0..5_000).map(|i| post(&format!("bulk {i}"), i)).collect();
        let mut clashing = rows.clone();
        clashing.push(rows[0].clone());
        match store.insert_all(clashing) {
            Err(Error::Constraint(violation)) => assert_eq!(violation.kind, ConstraintKind::Unique),
            other => panic!("expected a unique violation, got {other:?}"),
        }
        assert_eq!(store.count::<Post>().unwrap(), 0, "the first statement was undone");

        store.insert_all(rows).unwrap();
        assert_eq!(store.count::<Post>().unwrap(), 5_000);
    }
}

per_backend! {
    fn insert_all_sends_one_statement_on_postgres_and_prepared_sizes_on_sqlite(store) {
        use datastore::diesel::Connection;

        let mut conn = store.conn().unwrap();
        let rows: Vec<Post> = (0..10).map(|i| post(&format!("row {i}"), i)).collect();
        let (inserted, statements) =
            common::trace::commands(|| conn.transaction(|tx| tx.insert_all(rows)).unwrap());
        drop(conn);
        assert_eq!(inserted.len(), 10);
        assert_eq!(store.count::<Post>().unwrap(), 10);
        match store.dialect() {
            // Each statement a round trip: ten rows in one, and nothing to undo but it.
            Dialect::Postgres => assert_eq!(statements, "BEGIN INSERT COMMIT"),
            // In process: statements of 4, 4, 1 and 1 rows, each shape prepared once per
            // connection, in a savepoint that undoes them all if one fails.
            _ => assert_eq!(
                statements,
                "BEGIN SAVEPOINT INSERT INSERT INSERT INSERT RELEASE COMMIT"
            ),
        }
    }
}

per_backend! {
    fn insert_all_refuses_a_foreign_key_that_points_nowhere(store) {
        let post = store.save(post("parent", 1)).unwrap();
        let orphan = Comment {
            post_id: Id::new(),
            ..Comment::default()
        };
        let rows = vec![Comment::default().with_post(&post), orphan];
        match store.insert_all(rows) {
            Err(Error::Constraint(violation)) => {
                assert_eq!(violation.kind, ConstraintKind::ForeignKey)
            }
            other => panic!("expected a foreign-key violation, got {other:?}"),
        }
        assert_eq!(store.count::<Comment>().unwrap(), 0, "one statement: nothing written");
    }
}

per_backend! {
    fn find_and_get_report_missing_rows(store) {
        let missing = Id::new();
        assert_eq!(store.find::<Post>(&missing).unwrap(), None);
        match store.get::<Post>(&missing) {
            Err(Error::NotFound { table, key }) => {
                assert_eq!(table, "posts");
                assert_eq!(key, missing.to_string());
            }
            other => panic!("expected NotFound, got {other:?}"),
        }
    }
}

per_backend! {
    fn all_returns_every_row_in_key_order(store) {
        let a = store.save(post("a", 1)).unwrap();
        let b = store.save(post("b", 2)).unwrap();
        let c = store.save(post("c", 3)).unwrap();
        let all: Vec<Post> = store.all().unwrap();
        assert_eq!(
            all,
            vec![a, b, c],
            "ids are time-ordered, so key order is creation order"
        );
    }
}

per_backend! {
    fn query_filters_orders_and_limits_in_sql(store) {
        for (title, rating) in [("low", 1), ("mid", 5), ("high", 9), ("top", 10)] {
            store.save(post(title, rating)).unwrap();
        }
        let top: Vec<Post> = Post::query()
            .filter(posts::rating.gt(4))
            .order(posts::rating.desc())
            .limit(2)
            .load(&mut store.conn().unwrap())
            .unwrap();
        assert_eq!(
            top.iter().map(|p| p.title.as_str()).collect::<Vec<_>>(),
            ["top", "high"]
        );

        let boxed = store
            .query::<Post>(|q| {
                q.filter(posts::rating.between(2, 9))
                    .order(posts::title.asc())
            })
            .unwrap();
        assert_eq!(
            boxed.iter().map(|p| p.title.as_str()).collect::<Vec<_>>(),
            ["high", "mid"]
        );

        // The same query on the backend's own connection, with a captured value, alone and in
        // a transaction.
        let (low, high) = (2, 9);
        let mut conn = store.conn().unwrap();
        let native = datastore::query!(conn, Post, |q| q
            .filter(posts::rating.between(low, high))
            .order(posts::title.asc()))
        .unwrap();
        assert_eq!(native, boxed);
        drop(conn);
        let in_transaction = store
            .transaction(|tx| {
                tx.save(post("added", 5))?;
                datastore::query!(tx, Post, |q| q
                    .filter(posts::rating.between(low, high))
                    .order(posts::title.asc()))
            })
            .unwrap();
        assert_eq!(
            in_transaction.iter().map(|p| p.title.as_str()).collect::<Vec<_>>(),
            ["added", "high", "mid"]
        );
    }
}

per_backend! {
    fn delete_by_instance_and_by_id(store) {
        let a = store.save(post("a", 1)).unwrap();
        let b = store.save(post("b", 2)).unwrap();
        store.delete(&a).unwrap();
        store.delete_by_id::<Post>(&b.id).unwrap();
        assert_eq!(store.count::<Post>().unwrap(), 0);
        assert!(
            matches!(store.delete(&a), Err(Error::NotFound { .. })),
            "deleting twice is an error"
        );
    }
}

per_backend! {
    fn delete_where_removes_only_matching_rows(store) {
        for rating in 1..=6 {
            store.save(post("p", rating)).unwrap();
        }
        assert_eq!(
            store.delete_where::<Post, _>(posts::rating.le(4)).unwrap(),
            4
        );
        let left: Vec<i32> = store
            .all::<Post>()
            .unwrap()
            .iter()
            .map(|p| p.rating)
            .collect();
        assert_eq!(left, [5, 6]);
    }
}

per_backend! {
    fn every_field_type_round_trips(store) {
        let user = store
            .save(User {
                username: "nadia".into(),
                ..User::default()
            })
            .unwrap();
        let profile = Profile {
            user_id: user.id,
            bio: Some("writes about Rust".into()),
            avatar: Some(vec![0, 1, 2, 254, 255]),
            settings: Json(Settings {
                theme: "dark".into(),
                notifications: true,
            }),
            extra: serde_json::json!({ "links": ["a", "b"], "n": 1.5, "nested": { "ok": null } }),
            verified: true,
            karma: i64::MAX,
            score: -1.25e300,
            level: i16::MIN,
            ratio: 0.5,
            ..Profile::default()
        };
        let saved = store.save(profile.clone()).unwrap();
        assert_eq!(saved, profile);
        assert_eq!(store.get::<Profile>(&profile.id).unwrap(), profile);

        let empty = Profile {
            id: Id::new(),
            user_id: store
                .save(User {
                    username: "x".into(),
                    ..User::default()
                })
                .unwrap()
                .id,
            ..Profile::default()
        };
        assert_eq!(
            store.save(empty.clone()).unwrap(),
            empty,
            "None, empty and zero values too"
        );
    }
}

per_backend! {
    fn hostile_strings_round_trip_verbatim(store) {
        for text in [
            "it's \"quoted\"",
            "'; DROP TABLE posts; --",
            "/* comment */ OR 1=1",
            "ünïcödé — 日本語 — עברית",
            "emoji 🦀🔥👩‍👩‍👧",
            "\u{10FFFF}\u{1F600}\t\r\n",
            "",
        ] {
            let saved = store.save(post(text, 1)).unwrap();
            assert_eq!(store.get::<Post>(&saved.id).unwrap().title, text);
            let found: Vec<Post> = store
                .query::<Post>(|q| q.filter(posts::title.eq(text)))
                .unwrap();
            assert_eq!(found.len(), 1, "{text:?} matches itself exactly");
        }
        assert_eq!(
            store.count::<Post>().unwrap(),
            7,
            "the posts table survived"
        );
    }
}

per_backend! {
    fn a_failed_transaction_leaves_nothing_written(store) {
        let result: datastore::Result<()> = store.transaction(|tx| {
            tx.save(post("one", 1))?;
            tx.save(post("two", 2))?;
            tx.get::<Post>(&Id::new())?; // fails
            Ok(())
        });
        assert!(matches!(result, Err(Error::NotFound { .. })));
        assert_eq!(store.count::<Post>().unwrap(), 0);

        let saved = store
            .transaction(|tx| {
                let user = tx.save(User {
                    username: "ann".into(),
                    ..User::default()
                })?;
                tx.save(post("three", 3))?;
                Ok(user)
            })
            .unwrap();
        assert_eq!(store.count::<Post>().unwrap(), 1);
        assert_eq!(store.get::<User>(&saved.id).unwrap().username, "ann");
    }
}

per_backend! {
    fn a_nested_transaction_rolls_back_alone(store) {
        store
            .transaction(|tx| {
                tx.save(post("outer", 1))?;
                let inner: datastore::Result<()> = diesel::Connection::transaction(tx, |tx| {
                    tx.save(post("inner", 2))?;
                    Err(Error::NotFound {
                        table: "x".into(),
                        key: "y".into(),
                    })
                });
                assert!(inner.is_err());
                Ok(())
            })
            .unwrap();
        let titles: Vec<String> = store
            .all::<Post>()
            .unwrap()
            .into_iter()
            .map(|p| p.title)
            .collect();
        assert_eq!(titles, ["outer"]);
    }
}

#[test]
fn the_typed_methods_work_on_a_plain_diesel_connection() {
    use datastore::diesel::{Connection, SqliteConnection};
    use datastore::diesel_migrations::{self, MigrationHarness};

    const MIGRATIONS: diesel_migrations::EmbeddedMigrations =
        diesel_migrations::embed_migrations!("migrations/sqlite");
    let mut conn = SqliteConnection::establish(":memory:").unwrap();
    conn.run_pending_migrations(MIGRATIONS).unwrap();
    let saved = conn.save(post("plain", 4)).unwrap();
    assert_eq!(conn.find::<Post>(&saved.id).unwrap(), Some(saved.clone()));
    assert_eq!(conn.all::<Post>().unwrap().len(), 1);
    let diesel_rows: Vec<Post> = posts::table.load(&mut conn).unwrap();
    assert_eq!(diesel_rows, vec![saved.clone()]);
    conn.delete(&saved).unwrap();
    assert_eq!(conn.count::<Post>().unwrap(), 0);
}

#[test]
fn a_file_store_keeps_its_rows_across_reopening() {
    let (dir, store) = file_store();
    let saved = store.save(post("durable", 7)).unwrap();
    drop(store);
    let path = dir.path().join("blog.db");
    let reopened = Store::open(path, datastore::embed_migrations!()).unwrap();
    assert_eq!(reopened.get::<Post>(&saved.id).unwrap(), saved);
}

per_backend! {
    fn delete_where_takes_a_nullable_condition_with_null_as_false(store) {
        store
            .save(Post {
                body: Some("spam spam".into()),
                ..post("a", 1)
            })
            .unwrap();
        store
            .save(Post {
                body: None,
                ..post("b", 1)
            })
            .unwrap();
        store
            .save(Post {
                body: Some("fine".into()),
                ..post("c", 1)
            })
            .unwrap();
        assert_eq!(
            store
                .delete_where::<Post, _>(posts::body.like("%spam%"))
                .unwrap(),
            1
        );
        assert_eq!(store.count::<Post>().unwrap(), 2);
    }
}

per_backend! {
    fn a_transaction_whose_statement_failed_never_reports_a_commit_it_did_not_make(store) {
        let result = store.transaction(|tx| {
            tx.save(post("before the failure", 1))?;
            let failed = tx.batch_execute("INSERT INTO no_such_table VALUES (1)");
            assert!(failed.is_err());
            Ok(())
        });
        let kept = store.count::<Post>().unwrap();
        match store.dialect() {
            // SQLite undoes the failed statement alone; the rest commits.
            Dialect::Sqlite => {
                result.unwrap();
                assert_eq!(kept, 1);
            }
            // PostgreSQL aborts the whole transaction: it must say so.
            _ => {
                assert!(result.is_err(), "a rolled-back transaction reported as committed");
                assert_eq!(kept, 0);
            }
        }
    }
}

/// Code generic over the backend: any connection the models persist on, here the concrete
/// `SqliteConnection` and `PgConnection` themselves.
fn save_and_list<C>(conn: &mut C) -> datastore::Result<Vec<String>>
where
    C: Repo,
    Post: Persist<C>,
    Comment: datastore::relations::ChildOf<Post, { datastore::relations::fk_key("post_id") }, C>,
{
    let post = conn.save(post("generic", 3))?;
    conn.save(common::comment(&post, "on any backend"))?;
    let comments = post.comments(conn)?;
    assert_eq!(comments.len(), 1);
    Ok(conn.all::<Post>()?.into_iter().map(|p| p.title).collect())
}

#[test]
fn code_generic_over_the_backend_runs_on_each_concrete_connection() {
    use datastore::diesel::{Connection, PgConnection, SqliteConnection};
    use datastore::diesel_migrations::{self, MigrationHarness};

    const SQLITE: diesel_migrations::EmbeddedMigrations =
        diesel_migrations::embed_migrations!("migrations/sqlite");
    const POSTGRES: diesel_migrations::EmbeddedMigrations =
        diesel_migrations::embed_migrations!("migrations/postgres");

    let mut sqlite = SqliteConnection::establish(":memory:").unwrap();
    sqlite.batch_execute("PRAGMA foreign_keys = ON").unwrap();
    sqlite.run_pending_migrations(SQLITE).unwrap();
    assert_eq!(save_and_list(&mut sqlite).unwrap(), ["generic"]);

    if let Some(url) = common::postgres_url() {
        let schema = common::PgSchema::new(&url);
        let mut pg = PgConnection::establish(schema.url()).unwrap();
        pg.run_pending_migrations(POSTGRES).unwrap();
        assert_eq!(save_and_list(&mut pg).unwrap(), ["generic"]);
    }
}
