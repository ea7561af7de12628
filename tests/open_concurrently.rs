//! Several processes opening one SQLite file at the same moment, new or with migrations
//! pending: every one opens it, and each migration runs exactly once.
//!
//! The processes are this test binary run again as children (`open_child`), each waiting for the
//! same instant before it opens the store.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use datastore::diesel::sql_types::Text;
use datastore::diesel_migrations::FileBasedMigrations;
use datastore::migrate::BackendMigrations;
use datastore::prelude::*;

const PROCESSES: usize = 6;
const ROUNDS: usize = 4;

/// The child: waits for `DATASTORE_OPEN_AT` (milliseconds since the epoch), then opens
/// `DATASTORE_OPEN_DB` with the blog's migrations, or with those in `DATASTORE_OPEN_MIGRATIONS`.
#[test]
#[ignore = "the child process of the tests below"]
fn open_child() {
    let path = std::env::var("DATASTORE_OPEN_DB").expect("run by a test below");
    let at: u128 = std::env::var("DATASTORE_OPEN_AT").unwrap().parse().unwrap();
    while now_millis() < at {
        std::thread::sleep(Duration::from_micros(200));
    }
    let migrations = match std::env::var("DATASTORE_OPEN_MIGRATIONS") {
        Ok(dir) => BackendMigrations::new().sqlite(FileBasedMigrations::from_path(dir).unwrap()),
        Err(_) => datastore::embed_migrations!(),
    };
    if let Err(e) = Store::open(&path, migrations) {
        eprintln!("could not open: {e}");
        std::process::exit(1);
    }
}

fn now_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// Starts `PROCESSES` children opening `db` at the same instant; the error output of each that
/// failed.
fn open_at_once(db: &Path, migrations: Option<&Path>) -> Vec<String> {
    let at = now_millis() + 400;
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            let mut child = Command::new(std::env::current_exe().unwrap());
            child
                .args([
                    "--exact",
                    "open_child",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("DATASTORE_OPEN_DB", db)
                .env("DATASTORE_OPEN_AT", at.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            if let Some(dir) = migrations {
                child.env("DATASTORE_OPEN_MIGRATIONS", dir);
            }
            child.spawn().unwrap()
        })
        .collect();
    children
        .into_iter()
        .filter_map(|child| {
            let output = child.wait_with_output().unwrap();
            (!output.status.success()).then(|| String::from_utf8_lossy(&output.stderr).into_owned())
        })
        .collect()
}

#[derive(QueryableByName, Debug, PartialEq)]
struct Row {
    #[diesel(sql_type = Text)]
    value: String,
}

/// The rows of a one-column query.
fn rows(store: &Store, sql: &str) -> Vec<String> {
    diesel::sql_query(sql)
        .load::<Row>(&mut store.conn().unwrap())
        .unwrap()
        .into_iter()
        .map(|r| r.value)
        .collect()
}

#[test]
fn processes_opening_one_new_file_at_once_all_open_it() {
    for round in 0..ROUNDS {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("blog.db");
        let failed = open_at_once(&db, None);
        assert!(failed.is_empty(), "round {round}: {failed:#?}");
        let store = Store::open(db, datastore::embed_migrations!()).unwrap();
        assert_eq!(
            rows(
                &store,
                "SELECT version AS value FROM __diesel_schema_migrations"
            ),
            ["20261125121626", "20261201164536", "20261201171055"],
            "round {round}: the migration was recorded once"
        );
        store.save(common::post("after", 1)).unwrap();
    }
}

/// Migrations that record each run in `runs`: the second inserts, the third is not run in a
/// transaction (it opens its own with foreign keys off, as a generated table rebuild does),
/// the fourth inserts again.
fn write_migrations(dir: &Path, up_to: usize) {
    let migrations: [(&str, &str, bool); 4] = [
        (
            "2026-01-01-000001_runs",
            "CREATE TABLE runs (migration TEXT NOT NULL);",
            true,
        ),
        (
            "2026-01-01-000002_notes",
            "INSERT INTO runs VALUES ('notes');\nCREATE TABLE notes (id INTEGER PRIMARY KEY);",
            true,
        ),
        (
            "2026-01-01-000003_rebuild_notes",
            "PRAGMA foreign_keys = OFF;\nBEGIN IMMEDIATE;\nINSERT INTO runs VALUES ('rebuild');\n\
             CREATE TABLE new_notes (id INTEGER PRIMARY KEY, text TEXT);\n\
             INSERT INTO new_notes (id) SELECT id FROM notes;\nDROP TABLE notes;\n\
             ALTER TABLE new_notes RENAME TO notes;\nCOMMIT;\nPRAGMA foreign_keys = ON;",
            false,
        ),
        (
            "2026-01-01-000004_tags",
            "INSERT INTO runs VALUES ('tags');\nCREATE TABLE tags (id INTEGER PRIMARY KEY);",
            true,
        ),
    ];
    for (name, up, in_transaction) in &migrations[..up_to] {
        let path = dir.join(name);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("up.sql"), up).unwrap();
        std::fs::write(path.join("down.sql"), "SELECT 1;").unwrap();
        if !in_transaction {
            std::fs::write(path.join("metadata.toml"), "run_in_transaction = false\n").unwrap();
        }
    }
}

fn open_with(db: &Path, migrations: &Path) -> Store {
    Store::open(
        db.display().to_string(),
        BackendMigrations::new().sqlite(FileBasedMigrations::from_path(migrations).unwrap()),
    )
    .unwrap()
}

#[test]
fn processes_opening_one_outdated_file_at_once_run_each_migration_once() {
    for round in 0..ROUNDS {
        let dir = tempfile::tempdir().unwrap();
        let (db, migrations) = (dir.path().join("app.db"), dir.path().join("migrations"));
        // A file one version behind, and a new one.
        write_migrations(&migrations, 2);
        drop(open_with(&db, &migrations));
        write_migrations(&migrations, 4);
        let new_db = dir.path().join("new.db");
        for (db, runs) in [
            (&db, ["notes", "rebuild", "tags"]),
            (&new_db, ["notes", "rebuild", "tags"]),
        ] {
            let failed = open_at_once(db, Some(&migrations));
            assert!(failed.is_empty(), "round {round}: {failed:#?}");
            let store = open_with(db, &migrations);
            assert_eq!(
                rows(&store, "SELECT migration AS value FROM runs ORDER BY rowid"),
                runs,
                "round {round}: each migration ran once"
            );
            assert_eq!(
                rows(
                    &store,
                    "SELECT version AS value FROM __diesel_schema_migrations ORDER BY version"
                ),
                [
                    "20260101000001",
                    "20260101000002",
                    "20260101000003",
                    "20260101000004"
                ],
                "round {round}"
            );
        }
    }
}

/// A database with nothing pending opens while another connection (another process, as far as
/// SQLite can tell) holds a long write transaction: opening takes no lock then, and waits for
/// nobody.
#[test]
fn a_store_opens_with_nothing_pending_while_another_connection_writes() {
    use datastore::diesel::connection::SimpleConnection;
    use datastore::diesel::{Connection, SqliteConnection};

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("blog.db").display().to_string();
    drop(Store::open(&db, datastore::embed_migrations!()).unwrap());
    let mut writer = SqliteConnection::establish(&db).unwrap();
    writer.batch_execute("BEGIN IMMEDIATE").unwrap();
    let (opened, wait) = std::sync::mpsc::channel();
    let opening = std::thread::spawn(move || {
        let store = Store::builder(&db)
            .migrations(datastore::embed_migrations!())
            .busy_timeout(Duration::from_millis(200))
            .open();
        let _ = opened.send(store.map(drop).map_err(|e| e.to_string()));
    });
    let result = wait.recv_timeout(Duration::from_secs(5));
    // Lets a hanging open finish, so that the test ends either way.
    writer.batch_execute("ROLLBACK").unwrap();
    opening.join().unwrap();
    match result {
        Ok(opened) => opened.unwrap(),
        Err(_) => panic!("the open waited for the other connection's write transaction"),
    }
}
