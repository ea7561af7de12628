//! Every kind of error, provoked for real, arrives typed and leaves nothing half-written.

mod common;

use std::time::Duration;

use common::models::{Comment, Post, Reaction, User};
use common::{file_store, memory_store, user};
use datastore::diesel::connection::SimpleConnection;
use datastore::diesel::sql_types::{BigInt, Text};
use datastore::migrate::MigrationFailure;
use datastore::prelude::*;
use datastore::{ConnectionFailure, ConstraintKind, Error};

per_backend! {
    fn a_duplicate_unique_value_names_table_and_column(store) {
        store.save(user("nadia")).unwrap();
        let err = store.save(user("nadia")).unwrap_err();
        let violation = err.constraint().expect("a constraint violation");
        assert_eq!(violation.kind, ConstraintKind::Unique);
        assert_eq!(violation.table.as_deref(), Some("users"));
        assert_eq!(violation.column.as_deref(), Some("username"));
        assert_eq!(store.count::<User>().unwrap(), 1);
    }
}

per_backend! {
    fn a_foreign_key_that_points_nowhere_names_its_table_and_column(store) {
        let post = store.save(Post::default()).unwrap();
        let nowhere = Id::new();
        let names_post_id = |err: Error, table: &str| {
            let violation = err.constraint().expect("a constraint violation").clone();
            assert_eq!(violation.kind, ConstraintKind::ForeignKey, "{err}");
            assert_eq!(
                (violation.table.as_deref(), violation.column.as_deref()),
                (Some(table), Some("post_id")),
                "{err}"
            );
            assert!(violation.message.contains(&nowhere.to_string()), "{err}");
        };
        let orphan = |i: usize| Comment {
            post_id: if i == 2 { nowhere } else { post.id },
            content: Some(format!("comment {i}")),
            ..Comment::default()
        };

        names_post_id(store.save(orphan(2)).unwrap_err(), "comments");
        // Several rows, the third of them the orphan: one statement, and then several.
        names_post_id(store.insert_all((0..3).map(orphan).collect()).unwrap_err(), "comments");
        let many = (0..20_000).map(orphan).collect();
        names_post_id(store.insert_all(many).unwrap_err(), "comments");
        // Rows whose keys the database assigns.
        let reaction = |post_id| Reaction { post_id, emoji: "+1".into(), ..Reaction::default() };
        names_post_id(
            store.insert_all(vec![reaction(post.id), reaction(nowhere)]).unwrap_err(),
            "reactions",
        );

        assert_eq!(store.count::<Comment>().unwrap(), 0);
        assert_eq!(store.count::<Reaction>().unwrap(), 0);
    }
}

/// A table made by hand, without the model's `email`.
#[derive(Model, Debug, Clone, Default)]
#[model(table = "handmade")]
pub struct Handmade {
    #[primary_key]
    pub id: Id,
    pub name: String,
    pub email: String,
}

per_backend! {
    fn observing_a_table_that_lacks_a_column_of_its_model_names_both(store) {
        let id = match store.dialect() {
            datastore::schema::Dialect::Sqlite => "TEXT",
            _ => "UUID",
        };
        store
            .conn()
            .unwrap()
            .batch_execute(&format!(
                "CREATE TABLE handmade (id {id} PRIMARY KEY, name TEXT NOT NULL)"
            ))
            .unwrap();
        match store.observe::<Handmade>() {
            Err(Error::Migration {
                migration: None,
                failure: MigrationFailure::MissingColumn { table, column },
            }) => assert_eq!((table.as_str(), column.as_str()), ("handmade", "email")),
            other => panic!("expected the missing column, got {:?}", other.err()),
        }
    }
}

per_backend! {
    fn a_value_its_column_check_refuses_names_the_column(store) {
        let post = store.save(Post::default()).unwrap();
        let err: Error = diesel::sql_query("UPDATE posts SET status = 'Deleted' WHERE id = $1")
            .bind::<datastore::sql_types::Uuid, _>(post.id)
            .execute(&mut store.conn().unwrap())
            .unwrap_err()
            .into();
        let violation = err.constraint().expect("a constraint violation");
        assert_eq!(violation.kind, ConstraintKind::Check, "{err}");
        assert_eq!(violation.column.as_deref(), Some("status"), "{err}");
        // SQLite's message names the column of a column's CHECK, not its table.
        let table = (store.dialect() == datastore::schema::Dialect::Postgres).then_some("posts");
        assert_eq!(violation.table.as_deref(), table, "{err}");
        assert_eq!(store.get::<Post>(&post.id).unwrap().status, post.status);
    }
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

per_backend! {
    fn a_missing_required_value_names_the_column(store) {
        let err: Error = diesel::sql_query(
            "INSERT INTO users (id) VALUES ('00000000-0000-7000-8000-000000000001')",
        )
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
    match &err {
        Error::Migration {
            migration: Some(name),
            failure: MigrationFailure::Run(cause),
        } => {
            assert!(name.contains("bad"), "the failing migration named: {name}");
            assert!(cause.to_string().contains("syntax error"), "{cause}");
        }
        other => panic!("expected the bad migration's run error, got {other:?}"),
    }

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
    assert!(
        matches!(&err, Error::Migration { migration: Some(name), failure: MigrationFailure::Run(_) } if name.contains("bad")),
        "{err:?}"
    );
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
        Error::Connection {
            url,
            source: ConnectionFailure::Driver(message),
        } => {
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

/// A busy timeout means the same on both backends at its extremes: none shorter than 1 ms
/// (PostgreSQL's 0 would wait without end), none longer than SQLite counts.
#[test]
fn a_busy_timeout_is_bounded_alike_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite_timeout = |timeout: Duration| -> i64 {
        let store = Store::builder(dir.path().join("bounds.db"))
            .busy_timeout(timeout)
            .open()
            .unwrap();
        diesel::select(diesel::dsl::sql::<BigInt>(
            "(SELECT timeout FROM pragma_busy_timeout)",
        ))
        .get_result(&mut *store.conn().unwrap())
        .unwrap()
    };
    assert_eq!(sqlite_timeout(Duration::MAX), i64::from(i32::MAX));
    assert_eq!(sqlite_timeout(Duration::ZERO), 1);
    if let Some(url) = common::postgres_url() {
        let store = Store::builder(&url)
            .busy_timeout(Duration::ZERO)
            .open()
            .unwrap();
        let lock_timeout: String =
            diesel::select(diesel::dsl::sql::<Text>("current_setting('lock_timeout')"))
                .get_result(&mut *store.conn().unwrap())
                .unwrap();
        assert_eq!(lock_timeout, "1ms");
    }
}

/// A connection timeout at its extremes opens a working store: zero waits at least 1 ms (r2d2
/// refuses none), and `Duration::MAX` waits a year (r2d2 adds the wait to the clock, which
/// would overflow): both panicked before.
#[test]
fn a_connection_timeout_at_its_extremes_opens_a_working_store() {
    for timeout in [Duration::ZERO, Duration::MAX] {
        let store = Store::builder(":memory:")
            .pool_size(1)
            .connection_timeout(timeout)
            .migrations(datastore::embed_migrations!())
            .open()
            .unwrap();
        // A wait of 1 ms can run out on a loaded machine while the one connection is still
        // on its way back to the pool: a few tries.
        let patiently = |call: &mut dyn FnMut() -> datastore::Result<()>| {
            let mut tries = 0;
            loop {
                match call() {
                    Err(Error::Connection { .. }) if tries < 100 => tries += 1,
                    done => return done.unwrap(),
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        patiently(&mut || store.save(user("in time")).map(drop));
        if timeout.is_zero() {
            // The pool's one connection is taken: the wait ends at once, with an error.
            let mut held = None;
            patiently(&mut || {
                held = Some(store.conn()?);
                Ok(())
            });
            assert!(matches!(store.conn(), Err(Error::Connection { .. })));
            drop(held);
        }
        patiently(&mut || {
            assert_eq!(store.count::<User>()?, 1);
            Ok(())
        });
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
    text.contains("secret")
        || text.contains("sec?ret")
        || text.contains("hunter2")
        || text.contains("pwfrag")
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
        // A '/' in the password (unencoded) makes libpq read its head as the port, and say so.
        "postgres://user:pwfrag/tail@127.0.0.1:1/db",
        // ... or, a port, its tail as the database's name.
        "postgres://user:5432/pwfrag@127.0.0.1:1/db",
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

#[test]
fn an_exhausted_pool_is_a_pool_connection_error() {
    let store = Store::builder(":memory:")
        .pool_size(1)
        .connection_timeout(Duration::from_millis(50))
        .open()
        .unwrap();
    let _held = store.conn().unwrap();
    match store.conn() {
        Err(Error::Connection {
            url,
            source: ConnectionFailure::Pool(_),
        }) => assert_eq!(url, ":memory:"),
        Err(other) => panic!("expected a pool timeout, got {other:?}"),
        Ok(_) => panic!("the pool's only connection is taken"),
    }
}

#[test]
fn a_location_that_cannot_be_opened_as_given_is_refused_before_connecting() {
    // A PostgreSQL schema means nothing to SQLite.
    match Store::builder(":memory:").postgres_schema("tenant").open() {
        Err(Error::Connection {
            source: ConnectionFailure::Location(message),
            ..
        }) => assert!(message.contains("postgres_schema"), "{message}"),
        other => panic!("expected a location error, got {other:?}"),
    }
    // A database in memory each connection would open anew: the store's connections would
    // not share it.
    for url in [
        "file:blog?mode=memory",
        "file:blog?vfs=memdb",
        "file:blog?mode=%6Demory",
    ] {
        match Store::open(url, datastore::embed_migrations!()) {
            Err(Error::Connection {
                source: ConnectionFailure::Location(message),
                ..
            }) => assert!(message.contains("cache=shared"), "{message}"),
            other => panic!("{url}: expected a location error, got {other:?}"),
        }
    }
    // The drivers take text: a path that is not UTF-8 is refused, not mangled.
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir
            .path()
            .join(std::ffi::OsStr::from_bytes(b"blog-\xff.db"));
        match Store::open(&path, datastore::embed_migrations!()) {
            Err(Error::Connection {
                source: ConnectionFailure::Location(_),
                ..
            }) => {}
            other => panic!("expected a location error, got {other:?}"),
        }
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "no file made"
        );
    }
}

#[test]
fn an_empty_location_is_refused_rather_than_a_temporary_database_per_connection() {
    // SQLite opens an empty filename as a temporary database of the connection's own, deleted
    // as it closes: the store's connections would each write to one of their own.
    for url in ["", "sqlite:", "sqlite://", "file:", "file:?cache=shared"] {
        match Store::open(url, datastore::embed_migrations!()) {
            Err(Error::Connection {
                source: ConnectionFailure::Location(message),
                ..
            }) => assert!(message.contains("temporary"), "{url:?}: {message}"),
            other => panic!("{url:?}: expected a location error, got {other:?}"),
        }
    }
}

#[test]
fn a_database_the_store_cannot_set_up_is_a_connection_error() {
    // A file opened read-only that is not in WAL mode yet: switching it (what the store does
    // to every file it opens) needs a write.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let mut plain = datastore::diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
    plain
        .batch_execute("CREATE TABLE kept (x INTEGER)")
        .unwrap();
    drop(plain);
    let url = format!("file:{}?mode=ro", path.display());
    match Store::open(&url, datastore::embed_migrations!()) {
        Err(Error::Connection {
            source: ConnectionFailure::Setup(message),
            ..
        }) => assert!(message.contains("readonly"), "{message}"),
        other => panic!("expected a set-up error, got {other:?}"),
    }
}

#[test]
fn a_sqlite_url_opens_the_file_it_names_without_its_query() {
    // `sqlite://` and `sqlite:` URLs are `file:` URIs, as Diesel and the diesel CLI read
    // `sqlite://` and sqlx reads both: the query is SQLite's parameters, not part of the file's
    // name.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db").display().to_string();
    for url in [
        format!("sqlite://{path}?mode=rwc"),
        format!("sqlite:{path}?mode=rwc"),
    ] {
        let store = Store::open(&url, datastore::embed_migrations!()).unwrap();
        store.save(common::post("in app.db", 1)).unwrap();
        drop(store);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| !name.ends_with("-wal") && !name.ends_with("-shm"))
            .collect();
        assert_eq!(names, ["app.db"], "{url}");
    }
    let store = Store::open(&path, datastore::embed_migrations!()).unwrap();
    assert_eq!(store.count::<Post>().unwrap(), 2);
    // In memory, as sqlx spells it: a database of the store's own.
    let store = Store::open("sqlite::memory:", datastore::embed_migrations!()).unwrap();
    store.save(common::post("in memory", 1)).unwrap();
    assert_eq!(store.count::<Post>().unwrap(), 1);
}

#[test]
fn a_path_and_a_postgres_schema_open_as_their_urls_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blog.db");
    let store = Store::open(&path, datastore::embed_migrations!()).unwrap();
    store.save(user("on a path")).unwrap();
    assert!(path.exists());
    assert_eq!(store.url(), path.to_str().unwrap());

    let Some(url) = common::postgres_url() else {
        return;
    };
    let schema = common::PgSchema::new(&url);
    // The server's URL as given, the schema by name: tables go there and nowhere else.
    let store = Store::builder(&url)
        .postgres_schema(schema.name())
        .migrations(datastore::embed_migrations!())
        .open()
        .unwrap();
    store.save(user("in a schema")).unwrap();
    let in_schema = Store::builder(schema.url()).open().unwrap();
    assert_eq!(in_schema.count::<User>().unwrap(), 1);
}

#[test]
fn migration_failures_say_what_failed_as_data() {
    use datastore::migrate::{BackendMigrations, Migrations};
    use datastore::schema::{Dialect, SchemaProblem};

    let dir = tempfile::tempdir().unwrap();
    let folder = Migrations::new(dir.path(), Dialect::Sqlite);
    let blog = Schema::new()
        .model::<Post>()
        .model::<Comment>()
        .model::<User>();

    // A name that is not one.
    match folder.generate(&blog, "add comments!") {
        Err(Error::Migration {
            failure: MigrationFailure::Name(name),
            ..
        }) => assert_eq!(name, "add comments!"),
        other => panic!("expected a name error, got {other:?}"),
    }
    // Models and migrations differ: the missing migration, as data.
    match folder.check(&blog) {
        Err(Error::Migration {
            migration: None,
            failure: MigrationFailure::Drift(drift),
        }) => {
            assert_eq!(drift.dir, dir.path());
            assert!(
                drift.missing.up.contains("CREATE TABLE"),
                "{}",
                drift.missing.up
            );
        }
        other => panic!("expected a drift, got {other:?}"),
    }
    // A schema whose foreign key points at a model it lacks.
    match Schema::new().model::<Comment>().validate() {
        Err(Error::Migration {
            migration: None,
            failure: MigrationFailure::InvalidSchema(problem),
        }) => assert_eq!(
            *problem,
            SchemaProblem::UnknownTable {
                table: "comments".into(),
                column: "post_id".into(),
                references: "posts".into(),
            }
        ),
        other => panic!("expected a schema error, got {other:?}"),
    }
    // Two models stored in one table.
    #[derive(Model, Debug, Clone, Default)]
    #[model(table = "users")]
    pub struct Account {
        #[primary_key]
        pub id: Id,
    }
    match Schema::new().model::<User>().model::<Account>().validate() {
        Err(Error::Migration {
            failure: MigrationFailure::InvalidSchema(problem),
            ..
        }) => match *problem {
            SchemaProblem::SharedTable { table, models } => {
                assert_eq!(table, "users");
                assert!(
                    models[0].ends_with("User") && models[1].ends_with("Account"),
                    "{models:?}"
                );
            }
            other => panic!("expected two models in one table, got {other:?}"),
        },
        other => panic!("expected two models in one table, got {other:?}"),
    }
    // A recorded schema that is not one.
    std::fs::write(dir.path().join("schema.json"), "{ not json").unwrap();
    match folder.recorded_schema() {
        Err(Error::Migration {
            failure: MigrationFailure::SchemaFile { path, .. },
            ..
        }) => assert_eq!(path, dir.path().join("schema.json")),
        other => panic!("expected a recorded-schema error, got {other:?}"),
    }
    // Migrations for another backend only.
    match Store::open(":memory:", BackendMigrations::new()) {
        Err(Error::Migration {
            failure: MigrationFailure::NoneForBackend { backend },
            ..
        }) => assert_eq!(backend, "SQLite"),
        other => panic!("expected no migrations for SQLite, got {other:?}"),
    }
}

#[test]
fn a_migration_run_with_foreign_keys_off_that_breaks_them_is_undone() {
    let dir = tempfile::tempdir().unwrap();
    let migrations = dir.path().join("migrations");
    let tables = migrations.join("2026-01-01-000000_tables");
    let orphan = migrations.join("2026-01-02-000000_orphan");
    for (folder, up) in [
        (
            &tables,
            "CREATE TABLE parents (id INTEGER PRIMARY KEY); \
             CREATE TABLE children (id INTEGER PRIMARY KEY, \
             parent_id INTEGER NOT NULL REFERENCES parents (id));",
        ),
        (
            &orphan,
            "INSERT INTO children (id, parent_id) VALUES (1, 42);",
        ),
    ] {
        std::fs::create_dir_all(folder).unwrap();
        std::fs::write(folder.join("up.sql"), up).unwrap();
        std::fs::write(folder.join("down.sql"), "").unwrap();
    }
    std::fs::write(orphan.join("metadata.toml"), "run_in_transaction = false\n").unwrap();
    let source = datastore::diesel_migrations::FileBasedMigrations::from_path(&migrations).unwrap();
    let db = dir.path().join("fk.db");
    match Store::open(
        &db,
        datastore::migrate::BackendMigrations::new().sqlite(source),
    ) {
        Err(Error::Migration {
            migration: Some(name),
            failure: MigrationFailure::BrokenForeignKeys { rows },
        }) => {
            assert!(name.contains("orphan"), "{name}");
            assert_eq!(rows, 1);
        }
        other => panic!("expected broken foreign keys, got {other:?}"),
    }
    let store = Store::builder(&db).open().unwrap();
    let children: i64 = diesel::select(diesel::dsl::sql::<BigInt>(
        "(SELECT count(*) FROM children)",
    ))
    .get_result(&mut store.conn().unwrap())
    .unwrap();
    assert_eq!(children, 0, "nothing of the migration was kept");
}

/// A stored value the model cannot read (a key that is not a UUID, written behind the store's
/// back) fails the read with `Error::Conversion`, saying what was wrong; the other rows stay
/// readable.
#[test]
fn a_stored_value_the_model_cannot_read_is_a_conversion_error() {
    let (_dir, store) = file_store();
    let kept = store.save(Post::default()).unwrap();
    let mut conn = store.conn().unwrap();
    conn.batch_execute(
        "INSERT INTO posts (id, title, rating, status, created_at, updated_at) VALUES \
         ('not-a-uuid', 'by hand', 0, 'Active', '2026-12-02T10:00:00.000000Z', \
          '2026-12-02T10:00:00.000000Z')",
    )
    .unwrap();
    drop(conn);
    match store.all::<Post>() {
        Err(Error::Conversion { column, message }) => {
            assert_eq!(column.as_deref(), Some("id"));
            assert!(message.contains("invalid character"), "{message}");
        }
        other => panic!("expected a conversion error, got {other:?}"),
    }
    assert_eq!(store.find::<Post>(&kept.id).unwrap(), Some(kept));
}

// A statement the database rejects for a reason of its own (here, its syntax) is
// `Error::Database` with the database's error, and the transaction it ran in changed nothing.
per_backend! {
    fn a_statement_the_database_rejects_is_a_database_error(store) {
        let rejected = store.transaction(|tx| {
            tx.save(user("nadia"))?;
            diesel::sql_query("SELEC 1").execute(tx)?;
            Ok(())
        });
        match rejected {
            Err(Error::Database(diesel::result::Error::DatabaseError(_, info))) => {
                assert!(info.message().contains("syntax error"), "{}", info.message())
            }
            other => panic!("expected a database error, got {other:?}"),
        }
        assert_eq!(store.count::<User>().unwrap(), 0);
    }
}

/// Migration files that cannot be read or written are `Error::Io`, naming the path.
#[test]
fn migration_files_that_cannot_be_written_are_an_io_error_naming_the_path() {
    use datastore::migrate::Migrations;
    use datastore::schema::Dialect;

    let dir = tempfile::tempdir().unwrap();
    let blog = Schema::new()
        .model::<Post>()
        .model::<Comment>()
        .model::<User>();
    // The migrations' folder is a file.
    let file = dir.path().join("migrations");
    std::fs::write(&file, "not a folder").unwrap();
    match Migrations::new(&file, Dialect::Sqlite).generate(&blog, "init") {
        Err(Error::Io { path, source }) => {
            assert!(path.starts_with(&file.display().to_string()), "{path}");
            assert!(source.raw_os_error().is_some(), "{source:?}");
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a folder");
    // Its recorded schema is a folder.
    let folder = dir.path().join("sqlite");
    std::fs::create_dir_all(folder.join("schema.json")).unwrap();
    match Migrations::new(&folder, Dialect::Sqlite).recorded_schema() {
        Err(Error::Io { path, .. }) => {
            assert_eq!(path, folder.join("schema.json").display().to_string())
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

/// The server ending the connection of a transaction (an administrator, a restart) is
/// `Error::Connection` with `ConnectionFailure::Lost`, naming the store's URL: nothing was
/// committed, and the pool replaces the connection, so the store goes on.
#[test]
fn on_postgres_a_connection_lost_in_a_transaction_is_a_connection_error() {
    let Some(db) = common::TestDb::postgres() else {
        return;
    };
    let store = db.store;
    let lost = store.transaction(|tx| {
        tx.save(user("nadia"))?;
        diesel::sql_query("SELECT pg_terminate_backend(pg_backend_pid())").execute(tx)?;
        Ok(())
    });
    match lost {
        Err(Error::Connection {
            url,
            source: ConnectionFailure::Lost(message),
        }) => {
            assert_eq!(url, store.url());
            assert!(message.contains("terminating connection"), "{message}");
        }
        other => panic!("expected a lost connection, got {other:?}"),
    }
    assert_eq!(store.count::<User>().unwrap(), 0);
    store.save(user("nadia")).unwrap();
}

/// A call on the store whose connection the server ends while it runs is a lost connection
/// too; the next call runs on a new one.
#[test]
fn on_postgres_a_connection_lost_in_a_store_call_is_a_connection_error() {
    let Some(db) = common::TestDb::postgres() else {
        return;
    };
    let store = db.store;
    store.save(user("nadia")).unwrap();
    let ends_its_session =
        diesel::dsl::sql::<diesel::sql_types::Bool>("pg_terminate_backend(pg_backend_pid())");
    match store.query::<User>(|q| q.filter(ends_its_session)) {
        Err(Error::Connection {
            source: ConnectionFailure::Lost(_),
            ..
        }) => {}
        other => panic!("expected a lost connection, got {other:?}"),
    }
    assert_eq!(store.count::<User>().unwrap(), 1);
}

/// A connection the store lent read-only inside a transaction, then ended by the server while
/// it waited in the pool, is a lost connection when it is next taken (the store makes it
/// writable again first), not a bare database error.
#[test]
fn on_postgres_a_lent_connection_the_server_ended_is_a_lost_connection() {
    let Some(db) = common::TestDb::postgres_built(|b| b.pool_size(2)) else {
        return;
    };
    let store = &db.store;
    let pid = std::sync::Mutex::new(0);
    store
        .transaction(|_tx| {
            let mut lent = store.conn()?;
            let row: i32 = diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>(
                "pg_backend_pid()",
            ))
            .get_result(&mut *lent)?;
            *pid.lock().unwrap() = row;
            Ok(())
        })
        .unwrap();
    let pid = *pid.lock().unwrap();
    let mut admin = diesel::PgConnection::establish(db.url()).unwrap();
    // Waits (up to 5 s) until the backend has exited, rather than a guess at how long it takes.
    let exited: bool = diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(&format!(
        "pg_terminate_backend({pid}, 5000)"
    )))
    .get_result(&mut admin)
    .unwrap();
    assert!(exited, "the lent connection's backend exited");
    // Both pooled connections taken: one of them is the lent one.
    let taken: Vec<_> = (0..2).map(|_| store.conn()).collect();
    assert!(
        taken.iter().any(|conn| matches!(
            conn,
            Err(Error::Connection {
                source: ConnectionFailure::Lost(_),
                ..
            })
        )),
        "{:?}",
        taken.iter().map(|c| c.as_ref().err()).collect::<Vec<_>>()
    );
}

/// Every way of naming a database in memory that the store's connections can share opens one
/// database, which lives as long as the store: what one connection writes, the others read.
#[test]
fn a_database_in_memory_is_one_database_for_the_whole_pool() {
    for url in [
        ":memory:",
        "file::memory:",
        "file::memory:?cache=shared",
        "file:errors-shared?mode=memory&cache=shared",
        "file:/errors-memdb?vfs=memdb",
        // Percent-encoded, as SQLite reads URIs.
        "file:%3Amemory%3A?cache=%73hared",
        "file:%2Ferrors-encoded?vfs=memdb",
    ] {
        let store = Store::builder(url)
            .migrations(datastore::embed_migrations!())
            .pool_size(3)
            .open()
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let saved = store.save(user("nadia")).unwrap();
        // Three connections at once, each reading what the first wrote.
        let conns: Vec<_> = (0..3).map(|_| store.conn().unwrap()).collect();
        for mut conn in conns {
            assert_eq!(conn.get::<User>(&saved.id).unwrap(), saved, "{url}");
        }
    }
}

/// A database in memory shared by name waits for a writer as a file does: a read through
/// another of the store's connections while a transaction writes waits for its commit (the
/// busy timeout), instead of failing at once with SQLite's table lock of a shared cache.
#[test]
fn a_shared_database_in_memory_waits_for_a_writer() {
    // Names of this test's own: a database shared by name is the process's, and the tests of
    // this file run at once (`file::memory:?cache=shared` is another test's).
    for url in [
        "file:errors-waits?mode=memory&cache=shared",
        "file:/errors-waits-memdb?vfs=memdb",
    ] {
        let store = Store::builder(url)
            .migrations(datastore::embed_migrations!())
            .pool_size(2)
            .busy_timeout(Duration::from_secs(5))
            .open()
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        store.save(user("first")).unwrap();
        let (started, writing) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                store
                    .transaction(|tx| {
                        tx.save(user("nadia"))?;
                        started.send(()).unwrap();
                        std::thread::sleep(Duration::from_millis(300));
                        Ok::<_, Error>(())
                    })
                    .unwrap();
            });
            writing.recv().unwrap();
            // The writer holds its transaction open: the read waits for it, then sees its commit
            // or (where readers do not wait) what was there before.
            let count = store
                .count::<User>()
                .unwrap_or_else(|e| panic!("{url}: {e:?}"));
            assert!(count == 1 || count == 2, "{url}: {count}");
        });
        assert_eq!(store.count::<User>().unwrap(), 2, "{url}");
        // Shared by name: another store of the process opening the URI has the same database.
        let other = Store::builder(url)
            .migrations(datastore::embed_migrations!())
            .open()
            .unwrap();
        assert_eq!(other.count::<User>().unwrap(), 2, "{url}");
    }
}

/// Another session changing the type of a column the store reads (here `rating` to
/// `bigint` and back, which the model's `i32` reads) makes PostgreSQL refuse the statements each
/// connection prepared before ("cached plan must not change result type"), and Diesel keeps
/// them: the connection would fail so for as long as it lives. The store's reads run again on
/// a fresh connection, so they never fail; a query of the caller's own fails once on each
/// connection at most, the pool dropping it after.
#[test]
fn a_connection_whose_prepared_statements_a_schema_change_outdated_is_replaced() {
    let Some(db) = common::TestDb::postgres_built(|b| b.pool_size(2)) else {
        return;
    };
    let store = &db.store;
    let saved = store.save(common::post("widened", 4)).unwrap();
    let retype = |to: &str| {
        let mut other = diesel::PgConnection::establish(db.url()).unwrap();
        other
            .batch_execute(&format!("ALTER TABLE posts ALTER COLUMN rating TYPE {to}"))
            .unwrap();
    };
    // Both connections prepare the query, then a column it reads changes type.
    let prepare_on_every_connection = || {
        let mut conns: Vec<_> = (0..2).map(|_| store.conn().unwrap()).collect();
        for conn in &mut conns {
            assert_eq!(conn.get::<Post>(&saved.id).unwrap(), saved);
        }
    };
    prepare_on_every_connection();
    retype("bigint");
    for _ in 0..4 {
        assert_eq!(store.get::<Post>(&saved.id).unwrap(), saved);
        assert_eq!(store.all::<Post>().unwrap(), vec![saved.clone()]);
    }
    prepare_on_every_connection();
    retype("integer");
    let results: Vec<_> = (0..6)
        .map(|_| {
            let mut conn = store.conn().unwrap();
            conn.get::<Post>(&saved.id)
        })
        .collect();
    let failures = results.iter().filter(|r| r.is_err()).count();
    assert!(
        failures <= 2,
        "each connection fails once at most: {results:?}"
    );
    for result in &results[4..] {
        assert_eq!(result.as_ref().unwrap(), &saved);
    }
}

/// The locale the tests ask PostgreSQL's messages in, where the server machine has it:
/// `.ci/run` generates it, and sets `DATASTORE_EXPECT_LOCALE=1`, which makes a server without
/// it fail these tests rather than skip them.
const TRANSLATED: &str = "de_DE.UTF-8";

/// Whether the server at `url` speaks German (the locale on its machine, and its messages
/// translated); says so when a test is not run for it.
fn server_speaks_german(url: &str, test: &str) -> bool {
    let mut admin = diesel::PgConnection::establish(url).unwrap();
    let speaks = admin
        .batch_execute(&format!("SET lc_messages TO '{TRANSLATED}'"))
        .is_ok()
        && admin
            .batch_execute("SELECT 1 / 0")
            .is_err_and(|e| !e.to_string().contains("division by zero"));
    if !speaks {
        assert!(
            std::env::var("DATASTORE_EXPECT_LOCALE").as_deref() != Ok("1"),
            "DATASTORE_EXPECT_LOCALE=1, but the server does not speak {TRANSLATED}"
        );
        eprintln!(
            "{test} not run: the PostgreSQL server does not speak {TRANSLATED} (.ci/run \
             generates the locale)"
        );
    }
    speaks
}

/// On a server whose messages are translated (`lc_messages` of the server, database, role or
/// connection), errors the store tells by PostgreSQL's text are still told: a lock waited
/// for past the busy timeout is `Error::Busy`. The store sets its sessions' messages to
/// English (its role may: a superuser here); a lock timeout was an unknown database error
/// before.
#[test]
fn on_postgres_a_lock_timeout_is_busy_in_whatever_language_the_server_speaks() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    if !server_speaks_german(&url, "on_postgres_a_lock_timeout_is_busy_...") {
        return;
    }
    let schema = common::PgSchema::new(&url);
    let german = schema
        .url()
        .replace("options=", "options=-clc_messages%3Dde_DE.UTF-8%20");
    let store = Store::builder(&german)
        .migrations(datastore::embed_migrations!())
        .busy_timeout(Duration::from_millis(50))
        .open()
        .unwrap();
    let mut holder = diesel::PgConnection::establish(schema.url()).unwrap();
    holder
        .batch_execute("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let err = store.save(user("blocked")).unwrap_err();
    assert!(err.is_busy(), "expected Busy, got {err:?}");
    holder.batch_execute("ROLLBACK").unwrap();
    store.save(user("after")).unwrap();
    assert_eq!(
        store.count::<User>().unwrap(),
        1,
        "the blocked write never happened"
    );
}

/// A caller's `RESET ALL` or `DISCARD ALL` on a connection the store lent it takes back the
/// settings the store gave its session (`lock_timeout`, English messages: without them a
/// lock waited for would not be `Error::Busy`, nor a deadlock told) and those Diesel gave it
/// (UTC, whose timestamps a column without a time zone holds as written, and UTF-8, the text
/// Diesel reads; before, a reset left the URL's `Europe/Berlin` and `LATIN1`): the connection has them
/// again as it goes back to the pool, also where the reset came past the queries whose text is
/// read. `DISCARD ALL` also deallocates Diesel's prepared statements: the store's next
/// statements run all the same (on a connection that replaced it). Where the server speaks
/// German, the role's messages are German, which a reset would bring back.
#[test]
fn on_postgres_a_connection_its_caller_reset_goes_back_to_the_pool_set_up() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    let german = server_speaks_german(
        &url,
        "on_postgres_a_connection_its_caller_reset_goes_back_to_the_pool_set_up (in German)",
    );
    let schema = common::PgSchema::new(&url);
    // The session's defaults, which a `RESET ALL` goes back to: a time zone and an encoding
    // other than those Diesel sets as it connects, and German messages where the server has
    // them.
    let defaults = match german {
        true => "options=-cTimeZone%3DEurope/Berlin%20-cclient_encoding%3DLATIN1%20-clc_messages%3Dde_DE.UTF-8%20",
        false => "options=-cTimeZone%3DEurope/Berlin%20-cclient_encoding%3DLATIN1%20",
    };
    let url = schema.url().replace("options=", defaults);
    let store = Store::builder(&url)
        .migrations(datastore::embed_migrations!())
        .busy_timeout(Duration::from_millis(50))
        .pool_size(1)
        .open()
        .unwrap();
    #[derive(QueryableByName, Debug, PartialEq)]
    struct Settings {
        #[diesel(sql_type = Text)]
        lock_timeout: String,
        #[diesel(sql_type = Text)]
        lc_messages: String,
        #[diesel(sql_type = Text)]
        time_zone: String,
        #[diesel(sql_type = Text)]
        client_encoding: String,
    }
    let settings = || -> Settings {
        diesel::sql_query(
            "SELECT current_setting('lock_timeout') AS lock_timeout, \
             current_setting('lc_messages') AS lc_messages, \
             current_setting('TimeZone') AS time_zone, \
             current_setting('client_encoding') AS client_encoding",
        )
        .get_result(&mut *store.conn().unwrap())
        .unwrap()
    };
    let set_up = settings();
    assert_eq!(set_up.lock_timeout, "50ms");
    assert_eq!(
        (&*set_up.time_zone, &*set_up.client_encoding),
        ("UTC", "UTF8")
    );
    if german {
        assert_eq!(set_up.lc_messages, "C");
    }
    // Each reset, after as many queries of the caller's (sixteen are read).
    let resets = [
        (0, "RESET ALL"),
        (0, "select 1; reset all"),
        (0, "DISCARD ALL"),
        (16, "RESET ALL"),
    ];
    for (i, (queries_before, reset)) in resets.into_iter().enumerate() {
        // A statement Diesel prepares, on the pool's one connection.
        store.save(user(&format!("user {i}"))).unwrap();
        let mut conn = store.conn().unwrap();
        for _ in 0..queries_before {
            conn.batch_execute("SELECT 1").unwrap();
        }
        conn.batch_execute(reset).unwrap();
        drop(conn);
        let after = format!("{reset} after {queries_before} queries");
        assert_eq!(settings(), set_up, "{after}");
        assert_eq!(store.count::<User>().unwrap(), i + 1, "{after}");
    }
}

/// A role whose messages are translated and that may not set them is refused as the store
/// opens (`ConnectionFailure::Setup`), saying which setting to change, rather than open a store
/// that would take a deadlock or a lock timeout for an unknown error.
#[test]
fn on_postgres_a_role_that_cannot_have_english_messages_is_refused() {
    let Some(url) = common::postgres_url() else {
        return;
    };
    if !server_speaks_german(
        &url,
        "on_postgres_a_role_that_cannot_have_english_messages_is_refused",
    ) {
        return;
    }
    // The same server and database, as a role of the test's own (without a password: the
    // test's server lets its roles in by trust).
    let Some((scheme, rest)) = url.split_once("://") else {
        eprintln!("not run: DATASTORE_POSTGRES_URL is not a URL");
        return;
    };
    let host = rest.split_once('@').map_or(rest, |(_, host)| host);
    let role = format!("datastore_test_{}", uuid::Uuid::new_v4().simple());
    let as_role = format!("{scheme}://{role}@{host}");
    let mut admin = diesel::PgConnection::establish(&url).unwrap();
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN; ALTER ROLE {role} SET lc_messages = '{TRANSLATED}'"
        ))
        .unwrap();
    let opened = Store::builder(&as_role).open();
    let _ = admin.batch_execute(&format!("DROP ROLE {role}"));
    match opened {
        Err(Error::Connection {
            source: ConnectionFailure::Setup(message),
            ..
        }) => assert!(message.contains("lc_messages"), "{message}"),
        other => panic!("expected a refused setup, got {other:?}"),
    }
}
