//! Migrations are generated from the models, and a model that no longer matches them fails
//! here with the missing migration spelled out.

mod common;

use common::models;

use std::path::Path;

use datastore::diesel_migrations::{FileBasedMigrations, MigrationHarness};
use datastore::migrate::{BackendMigrations, MigrationFailure, Migrations, SchemaChange};
use datastore::prelude::*;
use datastore::{AnyConnection, ConstraintKind, ConstraintViolation, Error};
use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::SqliteConnection;

/// `migrations/sqlite` and `migrations/postgres` of this repository are generated from the
/// blog's models. When this fails, generate the missing migrations with the command line
/// applications get: `cargo run --example migrate --features cli -- generate <name>`.
#[test]
fn repository_migrations_match_the_models() {
    for dialect in [Dialect::Sqlite, Dialect::Postgres] {
        let migrations = Migrations::new(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(dialect.dir_name()),
            dialect,
        );
        if let Some(drift) = migrations.drift(&models::schema()).unwrap() {
            panic!(
                "{drift}\ngenerate it with: cargo run --example migrate --features cli -- \
                 generate <name>"
            );
        }
    }
}

/// The same table, before and after a change (two modules, since each has its `table!`).
mod v1 {
    use datastore::prelude::*;

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    #[model(table = "notes")]
    pub struct NoteV1 {
        #[primary_key]
        pub id: Id,
        pub text: String,
        pub obsolete: Option<String>,
    }
}

mod v2 {
    use datastore::prelude::*;

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    #[model(table = "notes")]
    pub struct NoteV2 {
        #[primary_key]
        pub id: Id,
        pub text: String,
        #[index]
        #[column(default = false)]
        pub pinned: bool,
    }
}

use v1::NoteV1;
use v2::NoteV2;

#[derive(Model, Debug, Clone, PartialEq, Default)]
struct Tag {
    #[primary_key]
    id: Id,
    label: String,
}

fn run_all(dir: &Path, conn: &mut SqliteConnection) {
    let source = FileBasedMigrations::from_path(dir).unwrap();
    conn.run_pending_migrations(source).unwrap();
}

fn migration_dirs(dir: &Path) -> Vec<String> {
    let mut dirs: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    dirs
}

fn columns(conn: &mut SqliteConnection, table: &str) -> Vec<String> {
    diesel::select(
        diesel::dsl::sql::<Text>("(SELECT group_concat(name, ',') FROM pragma_table_info(")
            .bind::<Text, _>(table)
            .sql("))"),
    )
    .get_result::<String>(conn)
    .unwrap()
    .split(',')
    .map(str::to_owned)
    .collect()
}

#[test]
fn generating_when_nothing_changed_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let migrations = Migrations::new(tmp.path(), Dialect::Sqlite);
    let schema = Schema::new().model::<NoteV1>();
    assert!(migrations
        .generate(&schema, "create_notes")
        .unwrap()
        .is_some());
    let snapshot = std::fs::read_to_string(tmp.path().join("schema.json")).unwrap();
    assert_eq!(migrations.generate(&schema, "again").unwrap(), None);
    assert_eq!(migration_dirs(tmp.path()).len(), 1);
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("schema.json")).unwrap(),
        snapshot
    );
    assert!(migrations.check(&schema).is_ok());
}

/// A generation that fails partway writes nothing: here the path of the migration's `down.sql`
/// (as staged, in the folder's `.generate-<32 hex digits>/`) is longer than Linux opens
/// (PATH_MAX), that of its `up.sql` one byte shorter, so the write fails between the two, as
/// a full disk or a refused permission would. Nothing new is left in the folder, and
/// generating again once the cause is gone (the folder moved to a shorter path) writes exactly
/// one migration.
#[cfg(target_os = "linux")]
#[test]
fn a_generation_that_fails_partway_leaves_nothing_and_a_rerun_writes_one_migration() {
    const PATH_MAX: usize = 4096;
    let tmp = tempfile::tempdir().unwrap();
    let name = "create_notes";
    // `<folder>/.generate-<32 hex>/<version>_<name>/up.sql`, the version 17 characters:
    // PATH_MAX - 1 long.
    let staging = "/.generate-".len() + 32;
    let folder_len =
        PATH_MAX - 1 - staging - "/2026-01-01-000000_".len() - name.len() - "/up.sql".len();
    let mut folder = tmp.path().to_path_buf();
    while folder.as_os_str().len() < folder_len {
        // `/` and a name of at most 255 bytes (NAME_MAX), the last one at least 1.
        let left = folder_len - folder.as_os_str().len() - 1;
        folder.push("d".repeat(if left > 255 { 200 } else { left }));
    }
    assert_eq!(folder.as_os_str().len(), folder_len);
    std::fs::create_dir_all(&folder).unwrap();

    let schema = Schema::new().model::<NoteV1>();
    let migrations = Migrations::new(&folder, Dialect::Sqlite);
    match migrations.generate(&schema, name) {
        // Failed partway: the `up.sql` before it was written.
        Err(Error::Io { path, .. }) if path.ends_with("/down.sql") => {}
        other => panic!("expected the write of down.sql to fail: {other:?}"),
    }
    let left: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "the failed generation left {left:?}");

    let moved = tmp.path().join("migrations");
    std::fs::rename(&folder, &moved).unwrap();
    let migrations = Migrations::new(&moved, Dialect::Sqlite);
    let written = migrations.generate(&schema, name).unwrap().unwrap();
    assert_eq!(migration_dirs(&moved).len(), 1);
    assert!(written.join("up.sql").is_file() && written.join("down.sql").is_file());
    migrations.check(&schema).unwrap();
}

/// A folder with migrations but without its `schema.json` does not know the schema they
/// produce: generating (or checking) refuses, naming the file, rather than write a migration
/// that creates every table again; with the file restored, nothing is left to generate.
#[test]
fn a_folder_with_migrations_but_no_schema_json_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let migrations = Migrations::new(tmp.path(), Dialect::Sqlite);
    let schema = Schema::new().model::<NoteV1>();
    migrations.generate(&schema, "create_notes").unwrap();
    let recorded = tmp.path().join("schema.json");
    let kept = std::fs::read_to_string(&recorded).unwrap();
    std::fs::remove_file(&recorded).unwrap();

    let refused = |result: Result<_, Error>| match result {
        Err(Error::Migration {
            failure: MigrationFailure::SchemaFileMissing { path, migrations },
            ..
        }) => {
            assert_eq!((path, migrations), (recorded.clone(), 1));
        }
        other => panic!("expected SchemaFileMissing: {other:?}"),
    };
    refused(migrations.generate(&schema, "again").map(|_| ()));
    refused(migrations.check(&schema));
    assert_eq!(migration_dirs(tmp.path()).len(), 1);
    assert!(!recorded.exists());

    std::fs::write(&recorded, kept).unwrap();
    assert_eq!(migrations.generate(&schema, "again").unwrap(), None);
}

/// Writes the migration `name` as a Diesel project has it (by hand, or with the diesel CLI).
fn write_by_hand(folder: &Path, name: &str, up: &str, down: &str) {
    let dir = folder.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("up.sql"), up).unwrap();
    std::fs::write(dir.join("down.sql"), down).unwrap();
}

/// A Diesel project adopting datastore: its migrations, none written by `generate`, and no
/// `schema.json`. Beside diesel's initial setup alone (which creates no table), `generate`
/// writes the first migration. Beside a migration written by hand, which tables exist is
/// unknown: generating (or checking) refuses, naming it, rather than write a migration that
/// creates its table again; `baseline` records that it brings a database to the models, and
/// from there `generate` writes what changes, which runs over the rows it holds.
#[test]
fn a_diesel_projects_migrations_are_adopted_with_a_baseline() {
    let tmp = tempfile::tempdir().unwrap();
    let migrations = Migrations::new(tmp.path(), Dialect::Sqlite);
    let v1 = Schema::new().model::<NoteV1>();
    write_by_hand(
        tmp.path(),
        "00000000000000_diesel_initial_setup",
        "-- diesel's functions",
        "-- dropped",
    );
    assert_eq!(
        migrations.baseline(&v1).unwrap(),
        None,
        "no table to record"
    );
    let first = migrations.generate(&v1, "create_notes").unwrap().unwrap();
    assert_eq!(migration_dirs(tmp.path()).len(), 2);
    std::fs::remove_dir_all(first).unwrap();
    std::fs::remove_file(tmp.path().join("schema.json")).unwrap();

    write_by_hand(
        tmp.path(),
        "2024-01-01-000000_notes_by_hand",
        "CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, text TEXT NOT NULL, \
         obsolete TEXT);",
        "DROP TABLE notes;",
    );
    let recorded = tmp.path().join("schema.json");
    let refused = |result: Result<_, Error>| match result {
        Err(Error::Migration {
            failure: MigrationFailure::NotGenerated { path, migrations },
            ..
        }) => {
            assert_eq!(path, recorded);
            assert_eq!(migrations, ["2024-01-01-000000_notes_by_hand"]);
        }
        other => panic!("expected NotGenerated: {other:?}"),
    };
    refused(migrations.generate(&v1, "create_notes").map(|_| ()));
    refused(migrations.check(&v1));
    assert_eq!(migration_dirs(tmp.path()).len(), 2);
    assert!(!recorded.exists());
    let message = migrations.check(&v1).unwrap_err().to_string();
    assert!(
        message.contains("2024-01-01-000000_notes_by_hand") && message.contains("baseline"),
        "{message}"
    );

    let mut conn =
        SqliteConnection::establish(&tmp.path().join("db.sqlite").display().to_string()).unwrap();
    run_all(tmp.path(), &mut conn);
    conn.save(NoteV1 {
        text: "kept".into(),
        ..NoteV1::default()
    })
    .unwrap();

    assert_eq!(migrations.baseline(&v1).unwrap(), Some(recorded.clone()));
    assert_eq!(migrations.baseline(&v1).unwrap(), None, "recorded already");
    migrations.check(&v1).unwrap();
    assert_eq!(migrations.generate(&v1, "again").unwrap(), None);
    let v1_and_tag = Schema::new().model::<NoteV1>().model::<Tag>();
    let plan = migrations.plan(&v1_and_tag).unwrap().unwrap();
    assert!(matches!(plan.changes.as_slice(), [SchemaChange::CreateTable(t)] if t.name == "tags"));
    migrations.generate(&v1_and_tag, "create_tags").unwrap();
    run_all(tmp.path(), &mut conn);
    let notes: Vec<NoteV1> = conn.all().unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(conn.count::<Tag>().unwrap(), 0);
}

/// A staging folder that a generation killed while writing left (`.generate-<32 hex digits>`,
/// holding what looks like a migration) is read by nothing: not by Diesel's runner, nor by
/// `check`. The next generation removes it, and only what is named exactly so.
#[test]
fn a_staging_folder_a_killed_generation_left_is_skipped_and_then_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let migrations = Migrations::new(tmp.path(), Dialect::Sqlite);
    let v1 = Schema::new().model::<NoteV1>();
    migrations.generate(&v1, "create_notes").unwrap();
    let left = tmp
        .path()
        .join(".generate-0123456789abcdef0123456789abcdef");
    write_by_hand(
        &left,
        "2099-01-01-000000_create_tags",
        "CREATE TABLE tags (id TEXT);",
        "DROP TABLE tags;",
    );
    std::fs::write(left.join("schema.json"), "{}").unwrap();
    let kept = [
        ".generate-0123456789ABCDEF0123456789ABCDEF",
        ".generate-0123456789abcdef",
        ".generate-notes",
        ".git",
    ];
    for name in kept {
        std::fs::create_dir(tmp.path().join(name)).unwrap();
    }

    let mut conn =
        SqliteConnection::establish(&tmp.path().join("db.sqlite").display().to_string()).unwrap();
    run_all(tmp.path(), &mut conn);
    let applied = conn.applied_migrations().unwrap();
    assert_eq!(applied.len(), 1, "{applied:?}");
    let tags: i64 = diesel::select(diesel::dsl::sql::<BigInt>(
        "(SELECT count(*) FROM sqlite_master WHERE name = 'tags')",
    ))
    .get_result(&mut conn)
    .unwrap();
    assert_eq!(tags, 0, "the staged migration ran");
    migrations.check(&v1).unwrap();

    let v1_and_tag = Schema::new().model::<NoteV1>().model::<Tag>();
    migrations.generate(&v1_and_tag, "create_tags").unwrap();
    assert!(!left.exists(), "the staging folder was left");
    for name in kept {
        assert!(tmp.path().join(name).is_dir(), "{name} was removed");
    }
    run_all(tmp.path(), &mut conn);
    assert_eq!(columns(&mut conn, "tags"), ["id", "label"]);
}

/// Generations of the same change running at once write it once: one writes it, the others,
/// waiting for the folder, find nothing left to write.
#[test]
fn generations_running_at_once_write_a_change_once() {
    let tmp = tempfile::tempdir().unwrap();
    let start = std::sync::Barrier::new(4);
    let written: Vec<_> = std::thread::scope(|scope| {
        let generations: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    let migrations = Migrations::new(tmp.path(), Dialect::Sqlite);
                    start.wait();
                    migrations
                        .generate(&Schema::new().model::<NoteV1>(), "create_notes")
                        .unwrap()
                })
            })
            .collect();
        generations.into_iter().map(|g| g.join().unwrap()).collect()
    });
    assert_eq!(written.iter().flatten().count(), 1, "{written:?}");
    assert_eq!(migration_dirs(tmp.path()).len(), 1);
}

#[test]
fn each_change_produces_exactly_that_migration_and_keeps_the_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let migrations = Migrations::new(tmp.path(), Dialect::Sqlite);
    let mut conn =
        SqliteConnection::establish(&tmp.path().join("db.sqlite").display().to_string()).unwrap();
    conn.batch_execute("PRAGMA foreign_keys = ON").unwrap();

    migrations
        .generate(&Schema::new().model::<NoteV1>(), "create_notes")
        .unwrap();
    run_all(tmp.path(), &mut conn);
    conn.save(NoteV1 {
        text: "kept".into(),
        ..NoteV1::default()
    })
    .unwrap();

    // A new model: one new table, nothing else.
    let v1_and_tag = Schema::new().model::<NoteV1>().model::<Tag>();
    let plan = migrations.plan(&v1_and_tag).unwrap().unwrap();
    assert!(matches!(plan.changes.as_slice(), [SchemaChange::CreateTable(t)] if t.name == "tags"));
    migrations.generate(&v1_and_tag, "create_tags").unwrap();

    // A new column, a dropped column, a new index.
    let v2_and_tag = Schema::new().model::<NoteV2>().model::<Tag>();
    let plan = migrations.plan(&v2_and_tag).unwrap().unwrap();
    let described: Vec<String> = plan.changes.iter().map(ToString::to_string).collect();
    assert_eq!(
        described,
        [
            "- column notes.obsolete",
            "+ column notes.pinned (Bool)",
            "+ index idx_notes_pinned on notes"
        ]
    );
    let drift = migrations.check(&v2_and_tag).unwrap_err().to_string();
    assert!(drift.contains("- column notes.obsolete"), "{drift}");
    assert!(
        drift.contains(r#"ALTER TABLE "notes" ADD COLUMN "pinned" INTEGER NOT NULL DEFAULT 0;"#),
        "{drift}"
    );
    // Dropping a column loses its values: generation stops, listing it, and writes nothing
    // until told to.
    match migrations.generate(&v2_and_tag, "pin_notes") {
        Err(Error::LossyMigration { changes }) => {
            match changes.as_slice() {
                [SchemaChange::DropColumn { table, column }] => {
                    assert_eq!((&*table.name, &*column.name), ("notes", "obsolete"))
                }
                other => panic!("expected the dropped column, got {other:?}"),
            }
            assert_eq!(
                changes[0].losses(),
                ["drops column notes.obsolete and its values"]
            );
        }
        other => panic!("expected LossyMigration, got {other:?}"),
    }
    assert_eq!(migration_dirs(tmp.path()).len(), 2);
    let dir = migrations
        .clone()
        .allow_lossy(true)
        .generate(&v2_and_tag, "pin_notes")
        .unwrap()
        .unwrap();
    let up = std::fs::read_to_string(dir.join("up.sql")).unwrap();
    assert!(
        up.starts_with(
            "-- Generated by datastore from the models.\n\
             -- LOSSY: drops column notes.obsolete and its values\n\
             ALTER TABLE \"notes\" DROP COLUMN \"obsolete\";"
        ),
        "{up}"
    );

    run_all(tmp.path(), &mut conn);
    assert_eq!(migration_dirs(tmp.path()).len(), 3);
    assert_eq!(columns(&mut conn, "notes"), ["id", "text", "pinned"]);
    let notes: Vec<NoteV2> = conn.all().unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!((notes[0].text.as_str(), notes[0].pinned), ("kept", false));
    assert!(migrations.check(&v2_and_tag).is_ok());

    // Every down.sql undoes its up.sql.
    conn.revert_all_migrations(FileBasedMigrations::from_path(tmp.path()).unwrap())
        .unwrap();
    let tables: i64 = diesel::select(diesel::dsl::sql::<BigInt>(
        "(SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('notes', 'tags'))",
    ))
    .get_result(&mut conn)
    .unwrap();
    assert_eq!(tables, 0);
}

mod before_rebuild {
    use datastore::prelude::*;

    #[derive(DbEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum Shelf {
        #[default]
        Fiction,
        Poetry,
    }

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    #[model(table = "shelves")]
    pub struct Bookcase {
        #[primary_key]
        pub id: Id,
        pub shelf: Shelf,
        #[has_many(Volume)]
        pub volumes: HasMany<Volume>,
    }

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    #[model(table = "volumes")]
    pub struct Volume {
        #[primary_key]
        pub id: Id,
        #[belongs_to(Bookcase)]
        pub bookcase_id: Id,
    }
}

mod after_rebuild {
    use datastore::prelude::*;

    #[derive(DbEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum Shelf {
        #[default]
        Fiction,
        Poetry,
        Essays,
    }

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    #[model(table = "shelves")]
    pub struct Bookcase {
        #[primary_key]
        pub id: Id,
        pub shelf: Shelf,
        #[has_many(Volume)]
        pub volumes: HasMany<Volume>,
    }

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    #[model(table = "volumes")]
    pub struct Volume {
        #[primary_key]
        pub id: Id,
        #[belongs_to(Bookcase)]
        pub bookcase_id: Id,
    }
}

/// A new enum variant changes a CHECK, which SQLite cannot alter: the table is rebuilt, with
/// its rows, and without cascading to the rows that reference it.
#[test]
fn a_change_sqlite_cannot_make_in_place_rebuilds_the_table_keeping_every_row() {
    let tmp = tempfile::tempdir().unwrap();
    let migrations = Migrations::new(tmp.path(), Dialect::Sqlite);
    let db = tmp.path().join("db.sqlite").display().to_string();
    let old = Schema::new()
        .model::<before_rebuild::Bookcase>()
        .model::<before_rebuild::Volume>();
    migrations.generate(&old, "create").unwrap();
    let store = Store::open(
        &db,
        BackendMigrations::new().sqlite(FileBasedMigrations::from_path(tmp.path()).unwrap()),
    )
    .unwrap();
    let case = store.save(before_rebuild::Bookcase::default()).unwrap();
    store
        .save(before_rebuild::Volume {
            bookcase_id: case.id,
            ..Default::default()
        })
        .unwrap();
    drop(store);

    let new = Schema::new()
        .model::<after_rebuild::Bookcase>()
        .model::<after_rebuild::Volume>();
    let plan = migrations.plan(&new).unwrap().unwrap();
    assert!(
        matches!(plan.changes.as_slice(), [SchemaChange::RebuildTable { new, .. }] if new.name == "shelves")
    );
    assert!(plan.outside_transaction);
    migrations.generate(&new, "add_essays").unwrap();

    let store = Store::open(
        &db,
        BackendMigrations::new().sqlite(FileBasedMigrations::from_path(tmp.path()).unwrap()),
    )
    .unwrap();
    let cases: Vec<after_rebuild::Bookcase> = store.all().unwrap();
    assert_eq!(cases.len(), 1);
    assert_eq!(
        store.count::<after_rebuild::Volume>().unwrap(),
        1,
        "the rebuild cascaded nothing"
    );
    let essays = after_rebuild::Bookcase {
        shelf: after_rebuild::Shelf::Essays,
        ..Default::default()
    };
    store.save(essays).unwrap();
    let mut conn = store.conn().unwrap();
    let fk_on: i64 = diesel::select(diesel::dsl::sql::<BigInt>(
        "(SELECT foreign_keys FROM pragma_foreign_keys)",
    ))
    .get_result(&mut *conn)
    .unwrap();
    assert_eq!(fk_on, 1);
    conn.delete(&cases[0]).unwrap();
    assert_eq!(
        conn.count::<after_rebuild::Volume>().unwrap(),
        0,
        "the rebuilt table still cascades"
    );
}

/// The blog's migrations of `backend` up to, not including, the one that makes each post and
/// editor linked at most once, copied to `to`; returns that migration's directory.
fn migrations_before_unique_links(backend: &str, to: &Path) -> std::path::PathBuf {
    const UNIQUE_LINKS: &str = "threads_authors_and_unique_links";
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    let mut unique_links = None;
    for name in migration_dirs(&from) {
        if name.ends_with(UNIQUE_LINKS) {
            unique_links = Some(from.join(&name));
            continue;
        }
        copy_dir(&from.join(&name), &to.join(&name));
    }
    unique_links.expect("the blog has the migration making links unique")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// A database linking one post to one editor twice, then given the migration that makes a
/// link unique: opening the store stops, lists the pair, and changes nothing; once the
/// duplicate is gone, the migration runs.
fn duplicate_links_stop_the_migration(backend: &str, url: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("migrations");
    let unique_links = migrations_before_unique_links(backend, &dir);
    let open = || {
        let source = FileBasedMigrations::from_path(&dir).unwrap();
        let migrations = match backend {
            "sqlite" => BackendMigrations::new().sqlite(source),
            _ => BackendMigrations::new().postgres(source),
        };
        Store::open(url, migrations)
    };

    let store = open().unwrap();
    let post = store
        .save(models::Post {
            title: "Twice".into(),
            ..Default::default()
        })
        .unwrap();
    let editor = store
        .save(models::User {
            username: "ed".into(),
            ..Default::default()
        })
        .unwrap();
    let link = || models::PostEditor {
        id: Id::new(),
        post_id: post.id,
        editor_id: editor.id,
    };
    let first = store.save(link()).unwrap();
    store.save(link()).unwrap();
    store.save(link()).unwrap();
    drop(store);

    let name = unique_links.file_name().unwrap().to_owned();
    copy_dir(&unique_links, &dir.join(&name));
    let err = match open() {
        Ok(_) => panic!("the migration ran over duplicate links"),
        Err(err) => err,
    };
    match &err {
        Error::Duplicates {
            migration,
            table,
            columns,
            duplicates,
            total,
        } => {
            assert!(
                migration.ends_with("threads_authors_and_unique_links"),
                "{migration}"
            );
            assert_eq!(table, "post_editors");
            assert_eq!(columns, &["post_id", "editor_id"]);
            assert_eq!(*total, 1);
            assert_eq!(duplicates.len(), 1);
            assert_eq!(
                duplicates[0].values,
                [post.id.to_string(), editor.id.to_string()]
            );
            assert_eq!(duplicates[0].rows, 3);
        }
        other => panic!("expected Error::Duplicates, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&post.id.to_string()) && message.contains("3 rows"),
        "{message}"
    );

    // Nothing changed: the rows are all there, the migration is not recorded, and the tables
    // are as they were.
    let mut conn = AnyConnection::establish(url).unwrap();
    let count = |conn: &mut AnyConnection, sql: &str| -> i64 {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        diesel::sql_query(sql).get_result::<N>(conn).unwrap().n
    };
    assert_eq!(
        count(&mut conn, "SELECT COUNT(*) AS n FROM post_editors"),
        3
    );
    let version = name
        .to_str()
        .unwrap()
        .split('_')
        .next()
        .unwrap()
        .replace('-', "");
    assert_eq!(
        count(
            &mut conn,
            &format!(
                "SELECT COUNT(*) AS n FROM __diesel_schema_migrations WHERE version = '{version}'"
            )
        ),
        0
    );
    let parent_columns = match backend {
        "sqlite" => {
            "SELECT COUNT(*) AS n FROM pragma_table_info('comments') WHERE name = 'parent_id'"
        }
        _ => {
            "SELECT COUNT(*) AS n FROM information_schema.columns \
              WHERE table_schema = current_schema() AND table_name = 'comments' \
              AND column_name = 'parent_id'"
        }
    };
    assert_eq!(
        count(&mut conn, parent_columns),
        0,
        "the migration left a column"
    );

    // The user decides which rows go; then the migration runs.
    diesel::sql_query(format!(
        "DELETE FROM post_editors WHERE id <> '{}'",
        first.id
    ))
    .execute(&mut conn)
    .unwrap();
    drop(conn);
    let store = open().unwrap();
    assert_eq!(store.count::<models::PostEditor>().unwrap(), 1);
    assert!(
        matches!(
            store.save(link()),
            Err(Error::Constraint(ConstraintViolation {
                kind: ConstraintKind::Unique,
                ..
            }))
        ),
        "the pair is unique now"
    );
}

#[test]
fn adding_link_uniqueness_over_duplicate_links_stops_and_lists_them_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    let url = tmp.path().join("blog.db").display().to_string();
    duplicate_links_stop_the_migration("sqlite", &url);
}

#[test]
fn adding_link_uniqueness_over_duplicate_links_stops_and_lists_them_postgres() {
    let Some(url) = std::env::var("DATASTORE_POSTGRES_URL").ok() else {
        return;
    };
    let schema = common::PgSchema::new(&url);
    duplicate_links_stop_the_migration("postgres", schema.url());
}

/// Stored names and defaults holding backslashes (one ending in one) and quotes, before and
/// after a change that adds columns with such defaults and a variant to the enum's check.
mod escapes_v1 {
    use datastore::prelude::*;

    #[derive(DbEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum Drive {
        #[default]
        #[db_enum(rename = r"C:\")]
        C,
        #[db_enum(rename = r"it's \' D:\")]
        D,
    }

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    #[model(table = "paths")]
    pub struct PathV1 {
        #[primary_key]
        pub id: Id,
        #[column(default = r"C:\dir\")]
        pub path: String,
        pub drive: Drive,
    }
}

mod escapes_v2 {
    use datastore::prelude::*;

    #[derive(DbEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum Drive {
        #[default]
        #[db_enum(rename = r"C:\")]
        C,
        #[db_enum(rename = r"it's \' D:\")]
        D,
        #[db_enum(rename = r"E:\'")]
        E,
    }

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    #[model(table = "paths")]
    pub struct PathV2 {
        #[primary_key]
        pub id: Id,
        #[column(default = r"C:\dir\")]
        pub path: String,
        pub drive: Drive,
        #[column(default = r"it's \' a \n")]
        pub note: String,
        #[column(default = r"E:\'")]
        pub other: Drive,
    }
}

/// With `standard_conforming_strings` off (a setting any session, role or database may make),
/// PostgreSQL reads a backslash in a plain string literal as an escape, and one before the
/// closing quote runs the literal on into the statement. The migrations generated from models
/// whose defaults and enum names hold backslashes and quotes run there all the same, and write
/// what the models say: the defaults fill the rows, the enum's checks take its names.
#[test]
fn backslashes_in_defaults_and_enum_names_mean_themselves_with_standard_conforming_strings_off_postgres(
) {
    let Some(url) = std::env::var("DATASTORE_POSTGRES_URL").ok() else {
        return;
    };
    let schema = common::PgSchema::new(&url);
    // Another option after the schema's search path.
    let url = format!("{}%20-cstandard_conforming_strings%3Doff", schema.url());
    let tmp = tempfile::tempdir().unwrap();
    let migrations = Migrations::new(tmp.path(), Dialect::Postgres);
    let open = || {
        let source = FileBasedMigrations::from_path(tmp.path()).unwrap();
        Store::open(&url, BackendMigrations::new().postgres(source)).unwrap()
    };

    migrations
        .generate(&Schema::new().model::<escapes_v1::PathV1>(), "create_paths")
        .unwrap();
    let store = open();
    let saved = store
        .save(escapes_v1::PathV1 {
            path: "saved".into(),
            drive: escapes_v1::Drive::D,
            ..Default::default()
        })
        .unwrap();
    // A row the default fills.
    diesel::sql_query("INSERT INTO paths (id, drive) VALUES (gen_random_uuid(), $1)")
        .bind::<Text, _>(r"C:\")
        .execute(&mut *store.conn().unwrap())
        .unwrap();
    drop(store);

    migrations
        .generate(&Schema::new().model::<escapes_v2::PathV2>(), "more_drives")
        .unwrap();
    let store = open();
    let mut rows: Vec<escapes_v2::PathV2> = store.all().unwrap();
    rows.sort_by(|a, b| a.path.cmp(&b.path));
    let filled = |id, path: &str, drive| escapes_v2::PathV2 {
        id,
        path: path.into(),
        drive,
        note: r"it's \' a \n".into(),
        other: escapes_v2::Drive::E,
    };
    assert_eq!(
        rows,
        [
            filled(rows[0].id, r"C:\dir\", escapes_v2::Drive::C),
            filled(saved.id, "saved", escapes_v2::Drive::D),
        ]
    );
    // The new variant passes the check.
    let new = filled(Id::new(), "new", escapes_v2::Drive::E);
    store.save(new.clone()).unwrap();
    assert_eq!(store.get::<escapes_v2::PathV2>(&new.id).unwrap(), new);
}
