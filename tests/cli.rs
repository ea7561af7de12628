//! The `migrate` command line an application gets (`datastore::migrate::Cli`, cargo feature
//! `cli`), run as its binary would be, on SQLite files and on the PostgreSQL server.

#![cfg(feature = "cli")]

mod common;

use std::path::Path;
use std::process::ExitCode;

use datastore::diesel::connection::SimpleConnection;
use datastore::diesel::RunQueryDsl;
use datastore::migrate::Cli;
use datastore::prelude::*;

mod v1 {
    use datastore::prelude::*;

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Note {
        #[primary_key]
        pub id: Id,
        pub text: String,
        pub draft: Option<String>,
    }
}

/// v1 with its draft required: a change SQLite makes by rebuilding the table.
mod v1_required {
    use datastore::prelude::*;

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Note {
        #[primary_key]
        pub id: Id,
        pub text: String,
        #[column(default = "")]
        pub draft: String,
    }
}

mod v2 {
    use datastore::prelude::*;

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Note {
        #[primary_key]
        pub id: Id,
        #[column(renamed_from = "text")]
        pub body: String,
        #[column(default = 0)]
        pub stars: i32,
    }
}

/// Runs `migrate <args>` for `schema` with its migrations in `dir`: its exit code and output.
fn migrate(schema: Schema, dir: &Path, args: &[&str]) -> (ExitCode, String) {
    let mut out = Vec::new();
    let args = ["migrate", "--dir", dir.to_str().unwrap()]
        .into_iter()
        .chain(args.iter().copied());
    let code = Cli::new(schema).run_from(args, &mut out);
    (code, String::from_utf8(out).unwrap())
}

fn dirs(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().filter(|e| e.path().is_dir()).count())
        .unwrap_or(0)
}

#[test]
fn generate_and_check_write_and_verify_both_backends_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let v1 = || Schema::new().model::<v1::Note>();
    let v2 = || Schema::new().model::<v2::Note>();

    let (code, out) = migrate(v1(), tmp.path(), &["check"]);
    assert_eq!(code, ExitCode::FAILURE, "nothing generated yet: {out}");
    assert!(out.contains("+ table notes"), "{out}");

    let (code, out) = migrate(v1(), tmp.path(), &["generate", "create_notes"]);
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert_eq!(out.matches("wrote").count(), 2, "{out}");
    assert_eq!(
        (
            dirs(&tmp.path().join("sqlite")),
            dirs(&tmp.path().join("postgres"))
        ),
        (1, 1)
    );
    assert_eq!(migrate(v1(), tmp.path(), &["check"]).0, ExitCode::SUCCESS);

    // v2 renames a column (lossless), adds one with a default, and drops `draft` (lossy):
    // refused without --allow-lossy, on both backends alike, and nothing is written.
    let (code, _) = migrate(v2(), tmp.path(), &["generate", "notes_v2"]);
    assert_eq!(code, ExitCode::FAILURE);
    assert_eq!(
        (
            dirs(&tmp.path().join("sqlite")),
            dirs(&tmp.path().join("postgres"))
        ),
        (1, 1)
    );
    let (code, out) = migrate(v2(), tmp.path(), &["generate", "notes_v2", "--allow-lossy"]);
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert_eq!(migrate(v2(), tmp.path(), &["check"]).0, ExitCode::SUCCESS);
    let (code, out) = migrate(v2(), tmp.path(), &["generate", "again"]);
    assert_eq!(code, ExitCode::SUCCESS);
    assert_eq!(out.matches("up to date").count(), 2, "{out}");
}

/// `generate` writes both backends' migrations or neither: here PostgreSQL's folder cannot be
/// made (`postgres` is a link to a folder that does not exist), and SQLite's, planned and
/// writable, is not written either. Once the cause is gone, generating again writes exactly one
/// migration in each.
#[cfg(unix)]
#[test]
fn generate_writes_both_backends_folders_or_neither() {
    let tmp = tempfile::tempdir().unwrap();
    let v1 = || Schema::new().model::<v1::Note>();
    let postgres = tmp.path().join("postgres");
    std::os::unix::fs::symlink(tmp.path().join("nowhere/postgres"), &postgres).unwrap();

    let (code, out) = migrate(v1(), tmp.path(), &["generate", "create_notes"]);
    assert_eq!(code, ExitCode::FAILURE, "{out}");
    assert!(
        !tmp.path().join("sqlite").exists(),
        "SQLite's migration was written without PostgreSQL's"
    );

    std::fs::remove_file(&postgres).unwrap();
    let (code, out) = migrate(v1(), tmp.path(), &["generate", "create_notes"]);
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert_eq!(
        (
            dirs(&tmp.path().join("sqlite")),
            dirs(&tmp.path().join("postgres"))
        ),
        (1, 1)
    );
    assert_eq!(migrate(v1(), tmp.path(), &["check"]).0, ExitCode::SUCCESS);
}

/// `status`, `up`, `down` and `redo` on a database, for the folder of its backend.
fn apply_and_revert(url: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let v1 = || Schema::new().model::<v1::Note>();
    let v2 = || Schema::new().model::<v2::Note>();
    let db = ["--database-url", url];
    migrate(v1(), tmp.path(), &["generate", "create_notes"]);
    migrate(v2(), tmp.path(), &["generate", "notes_v2", "--allow-lossy"]);

    let (code, out) = migrate(v2(), tmp.path(), &[&["status"][..], &db].concat());
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("pending")).count(),
        2,
        "{out}"
    );

    let (code, out) = migrate(v2(), tmp.path(), &[&["up"][..], &db].concat());
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert!(
        out.contains("create_notes") && out.contains("notes_v2"),
        "{out}"
    );
    let store = Store::builder(url).open().unwrap();
    store
        .save(v2::Note {
            body: "kept".into(),
            ..Default::default()
        })
        .unwrap();
    drop(store);

    // Down to v1 and back: the rename is reversible and keeps the text.
    let (code, out) = migrate(v2(), tmp.path(), &[&["down"][..], &db].concat());
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert!(
        out.starts_with("reverted") && out.contains("notes_v2"),
        "{out}"
    );
    let store = Store::builder(url).open().unwrap();
    let notes: Vec<v1::Note> = store.all().unwrap();
    assert_eq!(notes[0].text, "kept");
    drop(store);
    let (_, out) = migrate(v2(), tmp.path(), &[&["status"][..], &db].concat());
    assert!(
        out.lines()
            .any(|l| l.starts_with("pending") && l.ends_with("notes_v2")),
        "{out}"
    );
    let (code, _) = migrate(v2(), tmp.path(), &[&["up"][..], &db].concat());
    assert_eq!(code, ExitCode::SUCCESS);
    // Redo runs the last applied migration again, and only it.
    let (code, out) = migrate(v2(), tmp.path(), &[&["redo"][..], &db].concat());
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.lines().all(|l| l.ends_with("notes_v2")), "{out}");
    let store = Store::builder(url).open().unwrap();
    let notes: Vec<v2::Note> = store.all().unwrap();
    assert_eq!((notes[0].body.as_str(), notes[0].stars), ("kept", 0));

    let (_, out) = migrate(v2(), tmp.path(), &[&["status"][..], &db].concat());
    assert_eq!(
        out.lines().filter(|l| l.starts_with("applied")).count(),
        2,
        "{out}"
    );
}

#[test]
fn status_up_down_and_redo_on_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    // An empty file is an empty database, on which `status` lists every migration pending
    // (on no file at all it fails: see the next test).
    let file = tmp.path().join("notes.db");
    std::fs::File::create(&file).unwrap();
    apply_and_revert(&file.display().to_string());
}

/// `status`, `down` and `redo` read a database that exists: on a SQLite file that is not there
/// they fail, creating no file (they would list every migration as pending in an empty one),
/// whichever way the URL names it; `up` creates it.
#[test]
fn status_down_and_redo_on_a_missing_sqlite_file_fail_without_creating_it() {
    let tmp = tempfile::tempdir().unwrap();
    let v1 = || Schema::new().model::<v1::Note>();
    migrate(v1(), tmp.path(), &["generate", "create_notes"]);
    let file = tmp.path().join("missing.db");
    let path = file.display().to_string();
    for url in [
        path.clone(),
        format!("sqlite://{path}"),
        format!("file:{path}"),
    ] {
        for command in ["status", "down", "redo"] {
            let (code, out) = migrate(v1(), tmp.path(), &[command, "--database-url", &url]);
            assert_eq!(code, ExitCode::FAILURE, "{command} {url}: {out}");
            assert!(!file.exists(), "{command} {url} created the file");
        }
    }
    let (code, out) = migrate(v1(), tmp.path(), &["up", "--database-url", &path]);
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    let (code, out) = migrate(v1(), tmp.path(), &["status", "--database-url", &path]);
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert!(
        out.starts_with("applied") && out.contains("create_notes"),
        "{out}"
    );
}

#[test]
fn status_up_down_and_redo_on_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    let schema = common::PgSchema::new(&server);
    apply_and_revert(schema.url());
}

#[test]
fn the_diagram_shows_tables_keys_and_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, out) = migrate(common::models::schema(), tmp.path(), &["diagram"]);
    assert_eq!(code, ExitCode::SUCCESS);
    assert!(out.starts_with("erDiagram\n"), "{out}");
    for line in [
        "        uuid user_id FK, UK",
        r#"    posts ||--o{ comments : "post_id, on delete cascade""#,
        r#"    comments |o--o{ comments : "parent_id, on delete cascade""#,
        r#"    users |o--o{ comments : "author_id, on delete set null""#,
        r#"    posts ||--o{ post_editors : "post_id, on delete restrict""#,
        r#"    users ||--o| profiles : "user_id, on delete cascade""#,
    ] {
        assert!(out.lines().any(|l| l == line), "{line}\nnot in\n{out}");
    }
}

/// `down` of a migration that rebuilds a SQLite table keeps the table's triggers, as the
/// store's own migrations do (a rebuild drops the table, and SQLite its triggers with it).
#[test]
fn down_keeps_the_triggers_of_a_table_it_rebuilds() {
    let tmp = tempfile::tempdir().unwrap();
    let url = tmp.path().join("notes.db").display().to_string();
    let db = ["--database-url", url.as_str()];
    let v1 = || Schema::new().model::<v1::Note>();
    let required = || Schema::new().model::<v1_required::Note>();
    migrate(v1(), tmp.path(), &["generate", "create_notes"]);
    migrate(
        required(),
        tmp.path(),
        &["generate", "draft_required", "--allow-lossy"],
    );
    let (code, out) = migrate(required(), tmp.path(), &[&["up"][..], &db].concat());
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    let rebuilds = std::fs::read_dir(tmp.path().join("sqlite"))
        .unwrap()
        .flatten()
        .filter(|dir| {
            dir.file_name()
                .to_string_lossy()
                .ends_with("draft_required")
        })
        .map(|dir| std::fs::read_to_string(dir.path().join("down.sql")).unwrap())
        .any(|down| down.contains("PRAGMA foreign_keys = OFF"));
    assert!(rebuilds, "the down migration rebuilds the table");

    let store = Store::builder(&url).open().unwrap();
    store
        .conn()
        .unwrap()
        .batch_execute(
            "CREATE TABLE audit (note TEXT); \
             CREATE TRIGGER notes_audit AFTER INSERT ON notes BEGIN \
               INSERT INTO audit VALUES (NEW.id); END;",
        )
        .unwrap();
    drop(store);

    let (code, out) = migrate(required(), tmp.path(), &[&["down"][..], &db].concat());
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert!(out.contains("draft_required"), "{out}");
    let store = Store::builder(&url).open().unwrap();
    store.save(v1::Note::default()).unwrap();
    let audited: i64 = datastore::diesel::select(datastore::diesel::dsl::sql::<
        datastore::diesel::sql_types::BigInt,
    >("(SELECT count(*) FROM audit)"))
    .get_result(&mut *store.conn().unwrap())
    .unwrap();
    assert_eq!(audited, 1, "the trigger is there after down");
}

/// A staging folder a `generate` killed while writing left in SQLite's folder (holding what
/// looks like a migration) confuses neither `status` nor `up`, which read the folder as Diesel
/// does; the next `generate` removes it.
#[test]
fn a_staging_folder_left_behind_is_not_a_migration_and_the_next_generate_removes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let v1 = || Schema::new().model::<v1::Note>();
    let v2 = || Schema::new().model::<v2::Note>();
    migrate(v1(), tmp.path(), &["generate", "create_notes"]);
    let left = tmp
        .path()
        .join("sqlite/.generate-0123456789abcdef0123456789abcdef");
    let staged = left.join("2099-01-01-000000_notes_v2");
    std::fs::create_dir_all(&staged).unwrap();
    std::fs::write(staged.join("up.sql"), "SELECT no_such_function();").unwrap();
    std::fs::write(staged.join("down.sql"), "SELECT 1;").unwrap();

    let url = tmp.path().join("notes.db").display().to_string();
    let db = ["--database-url", url.as_str()];
    let (code, out) = migrate(v1(), tmp.path(), &[&["up"][..], &db].concat());
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    let (code, out) = migrate(v1(), tmp.path(), &[&["status"][..], &db].concat());
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.starts_with("applied") && out.contains("create_notes"),
        "{out}"
    );

    let (code, out) = migrate(v2(), tmp.path(), &["generate", "notes_v2", "--allow-lossy"]);
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert!(!left.exists(), "the staging folder was left");
    assert_eq!(dirs(&tmp.path().join("sqlite")), 2);
}

/// `baseline` adopts a Diesel project's migrations: `generate` refuses a folder of migrations
/// it did not write and without schema.json, saying so; `baseline` records the models as what
/// they produce, in each backend's folder; from there nothing is left to generate.
#[test]
fn baseline_adopts_migrations_generate_did_not_write() {
    let tmp = tempfile::tempdir().unwrap();
    let v1 = || Schema::new().model::<v1::Note>();
    for backend in ["sqlite", "postgres"] {
        let dir = tmp
            .path()
            .join(backend)
            .join("2024-01-01-000000_create_notes");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("up.sql"), "CREATE TABLE notes (..);").unwrap();
        std::fs::write(dir.join("down.sql"), "DROP TABLE notes;").unwrap();
    }
    let (code, out) = migrate(v1(), tmp.path(), &["generate", "create_notes"]);
    assert_eq!(code, ExitCode::FAILURE, "{out}");
    assert_eq!(dirs(&tmp.path().join("sqlite")), 1);

    let (code, out) = migrate(v1(), tmp.path(), &["baseline"]);
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert_eq!(out.matches("wrote").count(), 2, "{out}");
    assert_eq!(migrate(v1(), tmp.path(), &["check"]).0, ExitCode::SUCCESS);
    let (code, out) = migrate(v1(), tmp.path(), &["generate", "again"]);
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert_eq!(out.matches("up to date").count(), 2, "{out}");
    let (code, out) = migrate(v1(), tmp.path(), &["baseline"]);
    assert_eq!(code, ExitCode::SUCCESS, "{out}");
    assert_eq!(out.matches("left as it is").count(), 2, "{out}");
}
