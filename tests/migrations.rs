//! Migrations are generated from the models, and a model that no longer matches them fails
//! here with the missing migration spelled out.

#[path = "../examples/blog/models.rs"]
#[allow(dead_code)]
mod models;

use std::path::Path;

use datastore::diesel_migrations::{FileBasedMigrations, MigrationHarness};
use datastore::migrate::{BackendMigrations, Change, Migrations};
use datastore::prelude::*;
use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::SqliteConnection;

/// `migrations/sqlite` and `migrations/postgres` of this repository are generated from the
/// blog's models. When this fails, generate the missing migrations:
/// `DATASTORE_GENERATE=<name> cargo test --test migrations`.
#[test]
fn repository_migrations_match_the_models() {
    for dialect in [Dialect::Sqlite, Dialect::Postgres] {
        check_repository_migrations(dialect);
    }
}

fn check_repository_migrations(dialect: Dialect) {
    let migrations = Migrations::new(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(dialect.dir_name()),
        dialect,
    );
    let schema = models::schema();
    if let Ok(name) = std::env::var("DATASTORE_GENERATE") {
        if let Some(dir) = migrations.generate(&schema, &name).unwrap() {
            eprintln!("wrote {}", dir.display());
        }
    }
    if let Some(drift) = migrations.drift(&schema).unwrap() {
        panic!("{drift}\ngenerate it with: DATASTORE_GENERATE=<name> cargo test --test migrations");
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
    assert!(matches!(plan.changes.as_slice(), [Change::CreateTable(t)] if t.name == "tags"));
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
    migrations.generate(&v2_and_tag, "pin_notes").unwrap();

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
        matches!(plan.changes.as_slice(), [Change::RebuildTable { new, .. }] if new.name == "shelves")
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
