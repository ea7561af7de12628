//! Every kind of error, provoked for real, arrives typed and leaves nothing half-written.

mod common;

use std::time::Duration;

use common::models::{Comment, Post, User};
use common::{file_store, memory_store, user};
use datastore::diesel::connection::SimpleConnection;
use datastore::diesel::sql_types::{BigInt, Text};
use datastore::prelude::*;
use datastore::{ConstraintKind, Error};

#[test]
fn a_duplicate_unique_value_names_table_and_column() {
    let store = memory_store();
    store.save(user("nadia")).unwrap();
    let err = store.save(user("nadia")).unwrap_err();
    let violation = err.constraint().expect("a constraint violation");
    assert_eq!(violation.kind, ConstraintKind::Unique);
    assert_eq!(violation.table.as_deref(), Some("users"));
    assert_eq!(violation.column.as_deref(), Some("username"));
    assert_eq!(store.count::<User>().unwrap(), 1);
}

#[test]
fn a_foreign_key_that_points_nowhere_is_refused() {
    let store = memory_store();
    let orphan = Comment {
        post_id: Id::new(),
        content: Some("lost".into()),
        ..Comment::default()
    };
    let err = store.save(orphan).unwrap_err();
    assert_eq!(
        err.constraint().map(|c| c.kind),
        Some(ConstraintKind::ForeignKey),
        "{err}"
    );
    assert_eq!(store.count::<Comment>().unwrap(), 0);
}

#[test]
fn a_value_outside_an_enum_breaks_its_check() {
    let store = memory_store();
    let post = store
        .save(Post {
            title: "t".into(),
            ..Post::default()
        })
        .unwrap();
    let err: Error = diesel::sql_query("UPDATE posts SET status = 'Deleted' WHERE id = ?")
        .bind::<Text, _>(post.id.to_string())
        .execute(&mut store.conn().unwrap())
        .unwrap_err()
        .into();
    assert_eq!(
        err.constraint().map(|c| c.kind),
        Some(ConstraintKind::Check),
        "{err}"
    );
    assert!(err.to_string().contains("status"), "{err}");
    assert_eq!(store.get::<Post>(&post.id).unwrap().status, post.status);
}

#[test]
fn a_missing_required_value_names_the_column() {
    let store = memory_store();
    let err: Error = diesel::sql_query("INSERT INTO users (id) VALUES ('x')")
        .execute(&mut store.conn().unwrap())
        .unwrap_err()
        .into();
    let violation = err.constraint().expect("a constraint violation");
    assert_eq!(violation.kind, ConstraintKind::NotNull);
    assert_eq!(
        (violation.table.as_deref(), violation.column.as_deref()),
        (Some("users"), Some("username"))
    );
}

#[test]
fn a_lock_held_past_the_busy_timeout_is_a_busy_error() {
    let (dir, store) = file_store();
    let path = dir.path().join("blog.db").display().to_string();
    let impatient = Store::builder(&path)
        .busy_timeout(Duration::from_millis(50))
        .open()
        .unwrap();
    let mut holder = store.conn().unwrap();
    holder.batch_execute("BEGIN IMMEDIATE").unwrap();
    let err = impatient.save(user("blocked")).unwrap_err();
    assert!(err.is_busy(), "expected Busy, got {err:?}");
    holder.batch_execute("ROLLBACK").unwrap();
    impatient.save(user("after")).unwrap();
    assert_eq!(
        store.count::<User>().unwrap(),
        1,
        "the blocked write never happened"
    );
}

/// Two migrations: a good one (table `a`), then one that fails half-way (creates `b`, then a
/// malformed statement).
fn good_then_bad_migration(
    dir: &std::path::Path,
) -> datastore::diesel_migrations::FileBasedMigrations {
    let migrations = dir.join("migrations");
    let good = migrations.join("2026-01-01-000000_good");
    let bad = migrations.join("2026-01-02-000000_bad");
    std::fs::create_dir_all(&good).unwrap();
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(good.join("up.sql"), "CREATE TABLE a (x INTEGER);").unwrap();
    std::fs::write(good.join("down.sql"), "DROP TABLE a;").unwrap();
    // Fails half-way: the first statement succeeds, the second is malformed.
    std::fs::write(
        bad.join("up.sql"),
        "CREATE TABLE b (y INTEGER);\nCREATE TABLE c (;",
    )
    .unwrap();
    std::fs::write(bad.join("down.sql"), "DROP TABLE c; DROP TABLE b;").unwrap();
    datastore::diesel_migrations::FileBasedMigrations::from_path(&migrations).unwrap()
}

#[test]
fn a_failing_migration_is_a_migration_error_and_leaves_the_database_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let source = good_then_bad_migration(dir.path());
    let db = dir.path().join("m.db").display().to_string();
    let err = Store::open(
        &db,
        datastore::migrate::BackendMigrations::new().sqlite(source),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Migration(_)), "{err:?}");
    assert!(err.to_string().contains("syntax error"), "{err}");

    let store = Store::builder(&db).open().unwrap();
    let tables: String = diesel::select(diesel::dsl::sql::<Text>(
        "(SELECT group_concat(name, ',') FROM (SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name IN ('a', 'b', 'c') ORDER BY name))",
    ))
    .get_result(&mut store.conn().unwrap())
    .unwrap();
    assert_eq!(
        tables, "a",
        "the good migration stays; nothing of the bad one does"
    );
}

#[test]
fn a_failing_migration_on_postgres_leaves_the_database_as_it_was() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    let schema = common::PgSchema::new(&url);
    let dir = tempfile::tempdir().unwrap();
    let source = good_then_bad_migration(dir.path());
    let err = Store::open(
        schema.url(),
        datastore::migrate::BackendMigrations::new().postgres(source),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Migration(_)), "{err:?}");
    assert!(err.to_string().contains("syntax error"), "{err}");

    let store = Store::builder(schema.url()).open().unwrap();
    let tables: String = diesel::select(diesel::dsl::sql::<Text>(
        "(SELECT string_agg(table_name::text, ',' ORDER BY table_name) FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_name IN ('a', 'b', 'c'))",
    ))
    .get_result(&mut store.conn().unwrap())
    .unwrap();
    assert_eq!(
        tables, "a",
        "the good migration stays; nothing of the bad one does"
    );
}

#[test]
fn an_unopenable_database_is_a_connection_error() {
    let err = Store::builder("/nonexistent-dir/sub/blog.db")
        .open()
        .unwrap_err();
    match err {
        Error::Connection { url, message } => {
            assert_eq!(url, "/nonexistent-dir/sub/blog.db");
            assert!(message.contains("unable to open"), "{message}");
        }
        other => panic!("expected Connection, got {other:?}"),
    }
}

#[test]
fn every_pooled_connection_has_foreign_keys_busy_timeout_and_wal() {
    let (_dir, store) = file_store();
    // Hold several connections at once, so that the pool opens new ones.
    let mut conns: Vec<_> = (0..3).map(|_| store.conn().unwrap()).collect();
    for conn in &mut conns {
        let fk: i64 = diesel::select(diesel::dsl::sql::<BigInt>(
            "(SELECT foreign_keys FROM pragma_foreign_keys)",
        ))
        .get_result(&mut **conn)
        .unwrap();
        let timeout: i64 = diesel::select(diesel::dsl::sql::<BigInt>(
            "(SELECT timeout FROM pragma_busy_timeout)",
        ))
        .get_result(&mut **conn)
        .unwrap();
        let mode: String = diesel::select(diesel::dsl::sql::<Text>(
            "(SELECT journal_mode FROM pragma_journal_mode)",
        ))
        .get_result(&mut **conn)
        .unwrap();
        assert_eq!((fk, timeout, mode.as_str()), (1, 5000, "wal"));
    }
}

#[test]
fn a_memory_store_shares_one_database_across_its_pool() {
    let store = memory_store();
    let mut a = store.conn().unwrap();
    let mut b = store.conn().unwrap();
    let saved = a.save(user("shared")).unwrap();
    assert_eq!(b.find::<User>(&saved.id).unwrap(), Some(saved));
    let other = memory_store();
    assert_eq!(
        other.count::<User>().unwrap(),
        0,
        "each memory store is its own database"
    );
}

/// Whether `text` shows the password of the URLs below.
fn shows_password(text: &str) -> bool {
    text.contains("secret") || text.contains("sec?ret") || text.contains("hunter2")
}

#[test]
fn a_connection_error_never_shows_the_password() {
    // Nothing listens on port 1: the connection is refused.
    for url in [
        "postgres://user:secret@127.0.0.1:1/db",
        "postgresql://user:secret@127.0.0.1:1/db?sslmode=disable",
        "postgres://user@127.0.0.1:1/db?password=secret",
        // libpq takes the user information up to the first '@' (or '/'): the '?' is the
        // password's.
        "postgres://user:sec?ret@127.0.0.1:1/db",
        // libpq decodes percent-escapes in parameter names: this is `password`.
        "postgres://user@127.0.0.1:1/db?pass%77ord=hunter2",
    ] {
        let builder = Store::builder(url);
        assert!(!shows_password(&format!("{builder:?}")), "{builder:?}");
        let err = builder.open().unwrap_err();
        assert!(matches!(err, Error::Connection { .. }), "{err:?}");
        assert!(!shows_password(&err.to_string()), "{err}");
        assert!(!shows_password(&format!("{err:?}")), "{err:?}");
        let Error::Connection { url: shown, .. } = &err else {
            unreachable!()
        };
        assert!(
            shown.contains("127.0.0.1:1"),
            "the URL is still shown: {shown}"
        );
    }
}

#[test]
fn a_store_on_a_server_never_shows_the_password() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    let schema = common::PgSchema::new(&url);
    // A password parameter the server does not need (trust authentication) is still one to
    // keep out of messages.
    let url = format!("{}&password=secret", schema.url());
    let store = Store::builder(&url)
        .pool_size(1)
        .connection_timeout(Duration::from_millis(100))
        .open()
        .unwrap();
    assert!(!shows_password(&format!("{store:?}")), "{store:?}");
    assert!(!shows_password(store.url()), "{}", store.url());
    let _held = store.conn().unwrap();
    let Err(err) = store.conn() else {
        panic!("the pool's only connection is taken")
    };
    assert!(matches!(err, Error::Connection { .. }), "{err:?}");
    assert!(!shows_password(&err.to_string()), "{err}");
    assert!(!shows_password(&format!("{err:?}")), "{err:?}");
}
