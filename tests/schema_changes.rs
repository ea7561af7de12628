//! Each kind of schema change, generated from the models and applied to a database holding
//! rows, on SQLite and PostgreSQL: what it keeps (values, foreign keys, indexes), whether it is
//! classified lossy, and that `up`, `down`, `up` again ends where the first `up` did.

mod common;

use std::path::PathBuf;

use common::PgSchema;
use datastore::diesel::connection::SimpleConnection;
use datastore::diesel::sql_types::Text;
use datastore::diesel::{Connection, QueryableByName, RunQueryDsl};
use datastore::diesel_migrations::{FileBasedMigrations, MigrationHarness};
use datastore::migrate::{BackendMigrations, MigrationFailure, Migrations, SchemaObject};
use datastore::prelude::*;
use datastore::schema::{
    Column, ColumnDefault, ColumnType, ForeignKey, Name, OnDelete, SchemaProblem, Table,
};
use datastore::{AnyConnection, ConstraintKind, Error};

/// A folder of migrations and the database they are applied to.
struct Lab {
    dir: tempfile::TempDir,
    dialect: Dialect,
    url: String,
    _schema: Option<PgSchema>,
}

impl Lab {
    /// A lab per backend: SQLite on a file, and PostgreSQL when a server is configured.
    fn all() -> Vec<Lab> {
        let sqlite = {
            let dir = tempfile::tempdir().unwrap();
            let url = dir.path().join("db.sqlite").display().to_string();
            Lab {
                dir,
                dialect: Dialect::Sqlite,
                url,
                _schema: None,
            }
        };
        let mut labs = vec![sqlite];
        if let Some(server) = common::postgres_url() {
            let schema = PgSchema::new(&server);
            labs.push(Lab {
                dir: tempfile::tempdir().unwrap(),
                dialect: Dialect::Postgres,
                url: schema.url().to_owned(),
                _schema: Some(schema),
            });
        }
        labs
    }

    fn migrations(&self) -> Migrations {
        Migrations::new(self.dir.path().join("migrations"), self.dialect)
    }

    /// Generates the migration to `schema`, lossy or not.
    fn generate(
        &self,
        schema: &Schema,
        name: &str,
        allow_lossy: bool,
    ) -> datastore::Result<PathBuf> {
        Ok(self
            .migrations()
            .allow_lossy(allow_lossy)
            .generate(schema, name)?
            .expect("a change"))
    }

    /// Opens a store, which runs the pending migrations.
    fn up(&self) -> datastore::Result<Store> {
        let source = FileBasedMigrations::from_path(self.migrations().dir()).unwrap();
        let migrations = match self.dialect {
            Dialect::Sqlite => BackendMigrations::new().sqlite(source),
            _ => BackendMigrations::new().postgres(source),
        };
        Store::open(&self.url, migrations)
    }

    /// Reverts the last migration, as the diesel CLI does.
    fn down(&self) {
        let source = FileBasedMigrations::from_path(self.migrations().dir()).unwrap();
        let mut conn = self.conn();
        match &mut conn {
            AnyConnection::Sqlite(c) => c.revert_last_migration(source).map(drop),
            AnyConnection::Postgres(c) => c.revert_last_migration(source).map(drop),
        }
        .unwrap();
    }

    /// Reverts the last migration as [`down`](Self::down) does, failing as it may.
    fn try_down(&self) -> diesel::migration::Result<()> {
        let source = FileBasedMigrations::from_path(self.migrations().dir()).unwrap();
        let mut conn = self.conn();
        match &mut conn {
            AnyConnection::Sqlite(c) => c.revert_last_migration(source).map(drop),
            AnyConnection::Postgres(c) => c.revert_last_migration(source).map(drop),
        }
    }

    fn conn(&self) -> AnyConnection {
        let mut conn = AnyConnection::establish(&self.url).unwrap();
        if self.dialect == Dialect::Sqlite {
            conn.batch_execute("PRAGMA foreign_keys = ON").unwrap();
        }
        conn
    }

    fn execute(&self, sql: &str) -> datastore::Result<()> {
        self.conn().batch_execute(sql)?;
        Ok(())
    }

    /// The text of one value per row: `sql` selects a single text column `v`.
    fn rows(&self, sql: &str) -> Vec<String> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = datastore::diesel::sql_types::Nullable<Text>)]
            v: Option<String>,
        }
        // The statement and the error on one line: a failure here is read from a log's tail.
        diesel::sql_query(sql)
            .load::<Row>(&mut self.conn())
            .unwrap_or_else(|e| panic!("{:?} lab, {sql}: {e}", self.dialect))
            .into_iter()
            .map(|r| r.v.unwrap_or_else(|| "NULL".into()))
            .collect()
    }

    /// Everything about the tables that a migration can change (columns and their types,
    /// defaults, constraints, indexes), as text to compare.
    fn fingerprint(&self) -> Vec<String> {
        let sql = match self.dialect {
            // `ALTER TABLE` edits the statement SQLite keeps: compared without whitespace.
            Dialect::Sqlite => {
                "SELECT replace(replace(replace(sql, ' ', ''), char(10), ''), char(9), '') AS v \
                 FROM sqlite_master \
                 WHERE sql IS NOT NULL AND name NOT LIKE '__diesel%' ORDER BY name"
            }
            _ => {
                "SELECT v FROM ( \
                   SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || \
                          is_nullable || ' ' || coalesce(column_default, '') AS v \
                   FROM information_schema.columns WHERE table_schema = current_schema() \
                   UNION ALL \
                   SELECT conrelid::regclass::text || ' ' || conname || ' ' || \
                          pg_get_constraintdef(oid) \
                   FROM pg_constraint WHERE connamespace = current_schema()::regnamespace \
                   UNION ALL \
                   SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() \
                 ) AS f WHERE v NOT LIKE '%__diesel%' ORDER BY v"
            }
        };
        self.rows(sql)
    }

    /// `up`, `down` and `up` again of the last migration: the schema after the `down` is the
    /// one before, and after the second `up` the one after the first.
    fn round_trip(&self, before: &[String]) {
        let after = self.fingerprint();
        self.down();
        assert_eq!(self.fingerprint(), before, "down restores the schema");
        self.up().unwrap();
        assert_eq!(self.fingerprint(), after, "up again gives the same schema");
    }
}

/// A table `items` keyed by an integer `id`, with these columns.
fn items(columns: Vec<Column>) -> Table {
    let mut all = vec![Column::new("id", ColumnType::BigInt, false)];
    all.extend(columns);
    Table {
        name: "items".into(),
        primary_key: vec!["id".into()].into(),
        columns: all.into(),
        foreign_keys: vec![].into(),
        indexes: vec![].into(),
    }
}

/// A table `parents` keyed by an integer `id`.
fn parents() -> Table {
    Table {
        name: "parents".into(),
        ..items(vec![])
    }
}

/// `items` with a `parent_id` column, referencing `parents` if asked.
fn items_of_parents(referencing: bool) -> Table {
    let mut table = items(vec![column("parent_id", ColumnType::BigInt)]);
    if referencing {
        table.foreign_keys = vec![ForeignKey {
            column: "parent_id".into(),
            references: "parents".into(),
            referenced_column: "id".into(),
            on_delete: OnDelete::Cascade,
            on_update_cascade: false,
        }]
        .into();
    }
    table
}

fn column(name: &'static str, ty: ColumnType) -> Column {
    Column::new(name, ty, false)
}

fn nullable(name: &'static str, ty: ColumnType) -> Column {
    Column::new(name, ty, true)
}

fn defaulting(mut column: Column, default: ColumnDefault) -> Column {
    column.default = Some(default);
    column
}

/// An enum column's type, with these names.
fn stage(variants: &[&'static str]) -> ColumnType {
    ColumnType::Enum(
        variants
            .iter()
            .map(|v| (*v).into())
            .collect::<Vec<_>>()
            .into(),
    )
}

fn schema(table: Table) -> Schema {
    Schema::new().table(table)
}

/// Applies `before` to a fresh database, seeds it (`seed` may be empty), generates the change to
/// `after` (which must be lossy or not as `lossy` says: a lossy one is refused until allowed)
/// and applies it; returns the fingerprint from before the change, for
/// [`Lab::round_trip`].
fn change(lab: &Lab, before: Schema, seed: &str, after: &Schema, lossy: bool) -> Vec<String> {
    lab.generate(&before, "before", false).unwrap();
    drop(lab.up().unwrap());
    if !seed.is_empty() {
        lab.execute(seed).unwrap();
    }
    let fingerprint = lab.fingerprint();
    match lab.generate(after, "after", false) {
        Ok(_) => assert!(!lossy, "a lossy change was written unasked"),
        Err(Error::LossyMigration { changes }) => {
            assert!(lossy, "a lossless change was refused: {changes:?}");
            lab.generate(after, "after", true).unwrap();
        }
        Err(e) => panic!("{e}"),
    }
    drop(lab.up().unwrap());
    fingerprint
}

#[test]
fn lossless_changes_keep_every_row() {
    let integer = |ty| items(vec![column("n", ty)]);
    let cases: Vec<(&str, Table, Table, &str, Vec<&str>)> = vec![
        (
            "a nullable column added",
            items(vec![column("name", ColumnType::Text)]),
            items(vec![
                column("name", ColumnType::Text),
                nullable("note", ColumnType::Text),
            ]),
            "SELECT name || '/' || coalesce(note, 'NULL') AS v FROM items ORDER BY id",
            vec!["a/NULL", "b/NULL"],
        ),
        (
            "a NOT NULL column added with its default",
            items(vec![column("name", ColumnType::Text)]),
            items(vec![
                column("name", ColumnType::Text),
                defaulting(
                    column("stars", ColumnType::Integer),
                    ColumnDefault::Integer(3),
                ),
            ]),
            "SELECT name || '/' || CAST(stars AS TEXT) AS v FROM items ORDER BY id",
            vec!["a/3", "b/3"],
        ),
        (
            "an i32 widened to an i64",
            integer(ColumnType::Integer),
            integer(ColumnType::BigInt),
            "SELECT CAST(n AS TEXT) AS v FROM items ORDER BY id",
            vec!["-2147483648", "2147483647"],
        ),
        (
            "an f32 widened to an f64",
            items(vec![column("x", ColumnType::Float)]),
            items(vec![column("x", ColumnType::Double)]),
            "SELECT CAST(x AS TEXT) AS v FROM items ORDER BY id",
            vec!["0.5", "-1.25"],
        ),
        (
            "a column made nullable",
            items(vec![column("name", ColumnType::Text)]),
            items(vec![nullable("name", ColumnType::Text)]),
            "SELECT name AS v FROM items ORDER BY id",
            vec!["a", "b"],
        ),
        (
            "an enum variant added",
            items(vec![column(
                "stage",
                ColumnType::Enum(vec!["Draft".into(), "Done".into()].into()),
            )]),
            items(vec![column(
                "stage",
                ColumnType::Enum(vec!["Draft".into(), "Done".into(), "Archived".into()].into()),
            )]),
            "SELECT stage AS v FROM items ORDER BY id",
            vec!["Draft", "Done"],
        ),
        (
            "an index added",
            items(vec![column("name", ColumnType::Text)]),
            {
                let mut table = items(vec![column("name", ColumnType::Text)]);
                table.indexes = vec![datastore::schema::Index {
                    name: "idx_items_name".into(),
                    columns: vec!["name".into()].into(),
                    unique: false,
                }]
                .into();
                table
            },
            "SELECT name AS v FROM items ORDER BY id",
            vec!["a", "b"],
        ),
    ];
    for lab in Lab::all() {
        for (what, before, after, read, expected) in &cases {
            let lab = fresh(&lab);
            let seed = match (&before.columns[1].name[..], &before.columns[1].ty) {
                ("name", _) => "INSERT INTO items (id, name) VALUES (1, 'a'), (2, 'b');",
                ("n", _) => "INSERT INTO items (id, n) VALUES (1, -2147483648), (2, 2147483647);",
                ("x", _) => "INSERT INTO items (id, x) VALUES (1, 0.5), (2, -1.25);",
                _ => "INSERT INTO items (id, stage) VALUES (1, 'Draft'), (2, 'Done');",
            };
            let before_fingerprint = change(
                &lab,
                schema(before.clone()),
                seed,
                &schema(after.clone()),
                false,
            );
            assert_eq!(lab.rows(read), *expected, "{what} ({:?})", lab.dialect);
            lab.round_trip(&before_fingerprint);
            assert_eq!(
                lab.rows(read),
                *expected,
                "{what}, after down and up ({:?})",
                lab.dialect
            );
        }
    }
}

/// A lab like `lab` (same backend), on a database and folder of its own.
fn fresh(lab: &Lab) -> Lab {
    let dir = tempfile::tempdir().unwrap();
    match lab.dialect {
        Dialect::Sqlite => {
            let url = dir.path().join("db.sqlite").display().to_string();
            Lab {
                dir,
                dialect: Dialect::Sqlite,
                url,
                _schema: None,
            }
        }
        _ => {
            let schema = PgSchema::new(&common::postgres_url().unwrap());
            Lab {
                dir,
                dialect: Dialect::Postgres,
                url: schema.url().to_owned(),
                _schema: Some(schema),
            }
        }
    }
}

#[test]
fn lossy_changes_are_written_only_when_allowed_and_keep_what_they_can() {
    for lab in Lab::all() {
        // A dropped column: the others keep their values; down brings it back, empty.
        let l = fresh(&lab);
        let before = items(vec![
            column("name", ColumnType::Text),
            nullable("note", ColumnType::Text),
        ]);
        let fp = change(
            &l,
            schema(before),
            "INSERT INTO items (id, name, note) VALUES (1, 'a', 'x');",
            &schema(items(vec![column("name", ColumnType::Text)])),
            true,
        );
        assert_eq!(l.rows("SELECT name AS v FROM items"), ["a"]);
        l.round_trip(&fp);

        // An i64 narrowed to an i32: values that fit are kept.
        let l = fresh(&lab);
        change(
            &l,
            schema(items(vec![column("n", ColumnType::BigInt)])),
            "INSERT INTO items (id, n) VALUES (1, 7), (2, -7);",
            &schema(items(vec![column("n", ColumnType::Integer)])),
            true,
        );
        assert_eq!(
            l.rows("SELECT CAST(n AS TEXT) AS v FROM items ORDER BY id"),
            ["7", "-7"]
        );

        // A column made NOT NULL: its NULLs take the declared default.
        let l = fresh(&lab);
        let fp = change(
            &l,
            schema(items(vec![nullable("name", ColumnType::Text)])),
            "INSERT INTO items (id, name) VALUES (1, 'a'), (2, NULL);",
            &schema(items(vec![defaulting(
                column("name", ColumnType::Text),
                ColumnDefault::Text("anonymous".into()),
            )])),
            true,
        );
        assert_eq!(
            l.rows("SELECT name AS v FROM items ORDER BY id"),
            ["a", "anonymous"]
        );
        l.round_trip(&fp);

        // An enum variant removed while no row holds it: rows kept.
        let l = fresh(&lab);
        change(
            &l,
            schema(items(vec![column(
                "stage",
                stage(&["Draft", "Done", "Gone"]),
            )])),
            "INSERT INTO items (id, stage) VALUES (1, 'Draft'), (2, 'Done');",
            &schema(items(vec![column("stage", stage(&["Draft", "Done"]))])),
            true,
        );
        assert_eq!(
            l.rows("SELECT stage AS v FROM items ORDER BY id"),
            ["Draft", "Done"]
        );
        assert!(
            l.execute("INSERT INTO items (id, stage) VALUES (3, 'Gone');")
                .is_err(),
            "the variant is gone"
        );

        // An enum variant removed while a row holds it: the migration stops, changing nothing.
        let l = fresh(&lab);
        l.generate(
            &schema(items(vec![column("stage", stage(&["Draft", "Gone"]))])),
            "before",
            false,
        )
        .unwrap();
        drop(l.up().unwrap());
        l.execute("INSERT INTO items (id, stage) VALUES (1, 'Gone');")
            .unwrap();
        let fp = l.fingerprint();
        l.generate(
            &schema(items(vec![column("stage", stage(&["Draft"]))])),
            "after",
            true,
        )
        .unwrap();
        assert!(l.up().is_err(), "a row holds the removed variant");
        assert_eq!(l.fingerprint(), fp, "nothing changed");
        assert_eq!(l.rows("SELECT stage AS v FROM items"), ["Gone"]);

        // A unique index over rows sharing values: Error::Duplicates, nothing changed.
        let l = fresh(&lab);
        let mut unique = items(vec![column("name", ColumnType::Text)]);
        unique.indexes = vec![datastore::schema::Index {
            name: "uq_items_name".into(),
            columns: vec!["name".into()].into(),
            unique: true,
        }]
        .into();
        l.generate(
            &schema(items(vec![column("name", ColumnType::Text)])),
            "before",
            false,
        )
        .unwrap();
        drop(l.up().unwrap());
        l.execute("INSERT INTO items (id, name) VALUES (1, 'twin'), (2, 'twin');")
            .unwrap();
        assert!(matches!(
            l.generate(&schema(unique.clone()), "after", false),
            Err(Error::LossyMigration { .. })
        ));
        l.generate(&schema(unique), "after", true).unwrap();
        assert!(matches!(l.up(), Err(Error::Duplicates { total: 1, .. })));
        assert_eq!(l.rows("SELECT name AS v FROM items"), ["twin", "twin"]);

        // The same with the column itself made unique (SQLite rebuilds the table for it, and
        // names the rebuilt copy in its error): the rows are the table's.
        let l = fresh(&lab);
        l.generate(
            &schema(items(vec![column("name", ColumnType::Text)])),
            "before",
            false,
        )
        .unwrap();
        drop(l.up().unwrap());
        l.execute("INSERT INTO items (id, name) VALUES (1, 'twin'), (2, 'twin');")
            .unwrap();
        let mut name = column("name", ColumnType::Text);
        name.unique = true;
        l.generate(&schema(items(vec![name])), "after", true)
            .unwrap();
        match l.up() {
            Err(Error::Duplicates {
                table, total: 1, ..
            }) => assert_eq!(table, "items"),
            other => panic!("expected Error::Duplicates, got {other:?}"),
        }
        assert_eq!(l.rows("SELECT name AS v FROM items"), ["twin", "twin"]);
    }
}

/// A new unique column with a default gives every row the same value: the change is lossy
/// (it can be made while the table holds at most one row), and applied to two rows it stops
/// with `Error::Duplicates` listing them by the value they would share, changing nothing.
#[test]
fn a_new_unique_column_with_a_default_is_lossy_and_stops_on_two_rows() {
    for lab in Lab::all() {
        let name = column("name", ColumnType::Text);
        let mut code = defaulting(
            column("code", ColumnType::Text),
            ColumnDefault::Text("x".into()),
        );
        code.unique = true;
        let after = schema(items(vec![name.clone(), code]));
        for (seed, applied) in [
            ("INSERT INTO items (id, name) VALUES (1, 'a');", true),
            (
                "INSERT INTO items (id, name) VALUES (1, 'a'), (2, 'b');",
                false,
            ),
        ] {
            let l = fresh(&lab);
            l.generate(&schema(items(vec![name.clone()])), "before", false)
                .unwrap();
            drop(l.up().unwrap());
            l.execute(seed).unwrap();
            let fp = l.fingerprint();
            match l.generate(&after, "after", false) {
                Err(Error::LossyMigration { changes }) => {
                    let losses: Vec<String> = changes.iter().flat_map(|c| c.losses()).collect();
                    assert!(
                        losses
                            .iter()
                            .any(|loss| loss.contains("items.code")
                                && loss.contains("2 or more rows")),
                        "{losses:?}"
                    );
                }
                other => panic!("{:?}: expected LossyMigration, got {other:?}", l.dialect),
            }
            l.generate(&after, "after", true).unwrap();
            if applied {
                drop(l.up().unwrap());
                assert_eq!(l.rows("SELECT code AS v FROM items"), ["x"]);
                continue;
            }
            match l.up() {
                Err(Error::Duplicates {
                    table,
                    columns,
                    duplicates,
                    total: 1,
                    ..
                }) => {
                    assert_eq!(
                        (table.as_str(), &columns[..]),
                        ("items", &["code".to_owned()][..])
                    );
                    assert_eq!(
                        (&duplicates[0].values[..], duplicates[0].rows),
                        (&["x".to_owned()][..], 2),
                        "{:?}",
                        l.dialect
                    );
                }
                other => panic!("{:?}: expected Duplicates, got {other:?}", l.dialect),
            }
            assert_eq!(l.fingerprint(), fp, "nothing changed");
            assert_eq!(
                l.rows("SELECT name AS v FROM items ORDER BY id"),
                ["a", "b"]
            );
        }
    }
}

/// A new column referencing another table, with a default (nullable or not): every row the
/// table holds takes the default, which must point somewhere. The change is lossy (it stops
/// while the default points nowhere); with the row it points at there it migrates, both ways
/// (SQLite, which adds no such column in place to a table holding rows, rebuilds the table);
/// without it it stops, changing nothing (on SQLite as a rebuild breaking a foreign key).
#[test]
fn a_new_reference_with_a_default_is_lossy_and_stops_while_the_default_points_nowhere() {
    let name = column("name", ColumnType::Text);
    let before = Schema::new()
        .table(parents())
        .table(items(vec![name.clone()]));
    for parent in [
        nullable("parent_id", ColumnType::BigInt),
        column("parent_id", ColumnType::BigInt),
    ] {
        let mut referencing = items(vec![
            name.clone(),
            defaulting(parent.clone(), ColumnDefault::Integer(1)),
        ]);
        referencing.foreign_keys = items_of_parents(true).foreign_keys;
        let after = Schema::new().table(parents()).table(referencing);
        for lab in Lab::all() {
            for (parents_seed, applied) in
                [("INSERT INTO parents (id) VALUES (1);", true), ("", false)]
            {
                let l = fresh(&lab);
                let case = format!("{:?} {parent:?} {parents_seed:?}", l.dialect);
                l.generate(&before, "before", false).unwrap();
                drop(l.up().unwrap());
                l.execute(&format!(
                    "{parents_seed} INSERT INTO items (id, name) VALUES (1, 'a'), (2, 'b');"
                ))
                .unwrap();
                let fp = l.fingerprint();
                match l.generate(&after, "after", false) {
                    Err(Error::LossyMigration { changes }) => {
                        let losses: Vec<String> = changes.iter().flat_map(|c| c.losses()).collect();
                        assert!(
                            losses.iter().any(|loss| loss.contains("items.parent_id")
                                && loss.contains("points nowhere")),
                            "{case}: {losses:?}"
                        );
                    }
                    other => panic!("{case}: expected LossyMigration, got {other:?}"),
                }
                l.generate(&after, "after", true).unwrap();
                if applied {
                    drop(l.up().unwrap());
                    assert_eq!(
                        l.rows("SELECT CAST(parent_id AS TEXT) AS v FROM items ORDER BY id"),
                        ["1", "1"],
                        "{case}"
                    );
                    assert!(
                        l.execute("INSERT INTO items (id, name, parent_id) VALUES (3, 'c', 9);")
                            .is_err(),
                        "{case}: items.parent_id references parents"
                    );
                    l.round_trip(&fp);
                    continue;
                }
                match (l.dialect, l.up()) {
                    (
                        Dialect::Sqlite,
                        Err(Error::Migration {
                            failure: MigrationFailure::BrokenForeignKeys { rows: 2 },
                            ..
                        }),
                    ) => {}
                    (Dialect::Sqlite, other) => {
                        panic!("{case}: expected BrokenForeignKeys of 2 rows, got {other:?}")
                    }
                    (_, Err(e)) => assert!(
                        e.to_string().contains("foreign key"),
                        "{case}: refused for the default pointing nowhere, not {e}"
                    ),
                    (_, Ok(_)) => panic!("{case}: the default points nowhere"),
                }
                assert_eq!(l.fingerprint(), fp, "{case}: nothing changed");
                assert_eq!(
                    l.rows("SELECT name AS v FROM items ORDER BY id"),
                    ["a", "b"],
                    "{case}"
                );
            }
        }
    }
}

/// A parent table dropped while its child stays (its reference dropped too): the child lets go
/// of the parent before the parent goes, which PostgreSQL requires; `down` brings both back.
#[test]
fn a_parent_dropped_while_its_child_stays_migrates_both_ways() {
    for lab in Lab::all() {
        let l = fresh(&lab);
        l.generate(
            &Schema::new().table(parents()).table(items_of_parents(true)),
            "before",
            false,
        )
        .unwrap();
        drop(l.up().unwrap());
        l.execute(
            "INSERT INTO parents (id) VALUES (1); INSERT INTO items (id, parent_id) VALUES (1, 1);",
        )
        .unwrap();
        let before = l.fingerprint();
        l.generate(&Schema::new().table(items_of_parents(false)), "after", true)
            .unwrap();
        drop(l.up().unwrap());
        assert_eq!(
            l.rows("SELECT CAST(parent_id AS TEXT) AS v FROM items"),
            ["1"]
        );
        // The dropped parents' rows do not come back: a child row would then point nowhere.
        l.execute("DELETE FROM items").unwrap();
        l.round_trip(&before);
    }
}

/// A generated table rebuild that leaves a foreign key pointing nowhere (a column gaining a
/// reference that one of its rows breaks) fails with the typed error, not the text of the
/// check the migration carries for runs outside the store; nothing is kept.
#[test]
fn a_rebuild_that_breaks_a_foreign_key_fails_with_broken_foreign_keys() {
    // SQLite: PostgreSQL alters the table in place, and refuses the key at once.
    let l = fresh(&Lab::all().remove(0));
    let before = Schema::new()
        .table(parents())
        .table(items_of_parents(false));
    l.generate(&before, "before", false).unwrap();
    drop(l.up().unwrap());
    l.execute("INSERT INTO items (id, parent_id) VALUES (1, 42);")
        .unwrap();
    let fp = l.fingerprint();
    l.generate(
        &Schema::new().table(parents()).table(items_of_parents(true)),
        "after",
        true,
    )
    .unwrap();
    match l.up() {
        Err(Error::Migration {
            failure: datastore::migrate::MigrationFailure::BrokenForeignKeys { rows: 1 },
            ..
        }) => {}
        other => panic!("expected BrokenForeignKeys, got {other:?}"),
    }
    assert_eq!(l.fingerprint(), fp, "nothing changed");
}

/// A row of another table that points nowhere, left there by another tool, blocks no rebuild:
/// the check after a rebuild counts the rows that point nowhere it leaves beyond those there
/// before, and a rebuild that breaks a key of its own still stops, counting only its own.
#[test]
fn a_row_pointing_nowhere_before_the_rebuild_does_not_stop_it() {
    // SQLite: PostgreSQL alters tables in place, and checks each key as it is added.
    let l = fresh(&Lab::all().remove(0));
    let before = Schema::new()
        .table(parents())
        .table(items_of_parents(false));
    l.generate(&before, "before", false).unwrap();
    drop(l.up().unwrap());
    let stray = "CREATE TABLE strays (parent_id INTEGER REFERENCES parents (id)); \
                 PRAGMA foreign_keys = OFF; INSERT INTO strays VALUES (7); \
                 PRAGMA foreign_keys = ON;";
    l.execute(&format!(
        "{stray} INSERT INTO parents (id) VALUES (1); \
         INSERT INTO items (id, parent_id) VALUES (1, 1);"
    ))
    .unwrap();
    // A rebuild of items (its column made unique) that breaks no key: applied.
    let mut unique = items_of_parents(false);
    let mut columns = unique.columns.to_vec();
    columns[1].unique = true;
    unique.columns = columns.into();
    l.generate(
        &Schema::new().table(parents()).table(unique),
        "unique",
        true,
    )
    .unwrap();
    drop(l.up().unwrap());
    assert_eq!(
        l.rows("SELECT CAST(parent_id AS TEXT) AS v FROM strays"),
        ["7"]
    );
    // Its `down`, a rebuild too, run by Diesel alone: the migration's own check compares too.
    l.down();

    // A rebuild that breaks a key (a column gaining a reference one of its rows breaks):
    // stopped, counting its own row, not the stray one.
    let l = fresh(&l);
    l.generate(&before, "before", false).unwrap();
    drop(l.up().unwrap());
    l.execute(&format!(
        "{stray} INSERT INTO items (id, parent_id) VALUES (1, 42);"
    ))
    .unwrap();
    let fp = l.fingerprint();
    l.generate(
        &Schema::new().table(parents()).table(items_of_parents(true)),
        "after",
        true,
    )
    .unwrap();
    match l.up() {
        Err(Error::Migration {
            failure: MigrationFailure::BrokenForeignKeys { rows: 1 },
            ..
        }) => {}
        other => panic!("expected BrokenForeignKeys of 1 row, got {other:?}"),
    }
    assert_eq!(l.fingerprint(), fp, "nothing changed");
}

/// Seeds `before`, then migrates to `after` (lossy): the migration must fail, changing nothing.
fn refused(lab: &Lab, before: Table, seed: &str, after: Table) -> Error {
    lab.generate(&schema(before), "before", false).unwrap();
    drop(lab.up().unwrap());
    lab.execute(seed).unwrap();
    let (fingerprint, rows) = (
        lab.fingerprint(),
        lab.rows("SELECT CAST(id AS TEXT) AS v FROM items"),
    );
    lab.generate(&schema(after.clone()), "after", true).unwrap();
    let e = lab
        .up()
        .map(drop)
        .expect_err(&format!("the migration to {after:?} stops"));
    assert_eq!(lab.fingerprint(), fingerprint, "nothing changed");
    assert_eq!(lab.rows("SELECT CAST(id AS TEXT) AS v FROM items"), rows);
    e
}

/// Asserts that `e` stopped a migration as a value of `items.n` the new type cannot hold.
fn unconvertible_n(e: Error, case: impl std::fmt::Display) {
    match e {
        Error::Migration {
            failure: MigrationFailure::Unconvertible { table, column },
            ..
        } => assert_eq!((table.as_str(), column.as_str()), ("items", "n"), "{case}"),
        other => panic!("{case}: expected Unconvertible, got {other:?}"),
    }
}

#[test]
fn a_type_change_stops_on_a_value_the_new_type_cannot_hold() {
    let cases = [
        // Out of the narrower integer's range (SQLite stores any integer in either).
        (ColumnType::BigInt, "3000000000", ColumnType::Integer),
        (ColumnType::Integer, "70000", ColumnType::SmallInt),
        (ColumnType::Integer, "2", ColumnType::Bool),
        // Not a whole number (PostgreSQL's cast would round it).
        (ColumnType::Double, "2.7", ColumnType::Integer),
        // Not a number (a STRICT table refuses it as it is copied).
        (ColumnType::Text, "'seven'", ColumnType::BigInt),
        // Text that is not what the new type reads.
        (ColumnType::Text, "'{not json'", ColumnType::Json),
        (ColumnType::Text, "'soon'", ColumnType::Timestamp),
        (
            ColumnType::Text,
            "'2026-02-30T10:00:00Z'",
            ColumnType::Timestamp,
        ),
        (
            ColumnType::Text,
            "'2026-12-03T10:00:00'",
            ColumnType::Timestamp,
        ),
        (ColumnType::Text, "'not-a-uuid'", ColumnType::Uuid),
        // An offset that moves it past the year 9999 (SQLite only: PostgreSQL keeps it).
        (
            ColumnType::Text,
            "'9999-12-31T23:30:00-01:00'",
            ColumnType::Timestamp,
        ),
        // A name the enum no longer has.
        (stage(&["Draft", "Gone"]), "'Gone'", stage(&["Draft"])),
        // Bytes are no text, nor text bytes (PostgreSQL's casts would write the bytes `hi` as
        // the text `\x6869`, and read a backslash in text as an escape).
        (ColumnType::Blob, "X'6869'", ColumnType::Text),
        (ColumnType::Text, "'hi'", ColumnType::Blob),
    ];
    for lab in Lab::all() {
        for (from, value, to) in cases.clone() {
            // PostgreSQL reads a time without an offset in the session's time zone, as it does
            // outside migrations.
            if lab.dialect == Dialect::Postgres
                && (value == "'2026-12-03T10:00:00'" || value.starts_with("'9999"))
            {
                continue;
            }
            // PostgreSQL's bytes literal.
            let value = match (lab.dialect, value) {
                (Dialect::Postgres, "X'6869'") => r"'\x6869'",
                _ => value,
            };
            let l = fresh(&lab);
            let e = refused(
                &l,
                items(vec![column("n", from.clone())]),
                &format!("INSERT INTO items (id, n) VALUES (1, {value});"),
                items(vec![column("n", to.clone())]),
            );
            // PostgreSQL's casts refuse the others by themselves (an untyped `Run`); where
            // one would change the value instead, the migration's own check refuses it.
            let checked_on_postgres = matches!(
                (&from, &to),
                (ColumnType::Double, ColumnType::Integer)
                    | (ColumnType::Integer, ColumnType::Bool)
                    | (ColumnType::Blob, ColumnType::Text)
                    | (ColumnType::Text, ColumnType::Blob)
            );
            if l.dialect == Dialect::Sqlite || checked_on_postgres {
                unconvertible_n(e, format!("{from:?} {value} -> {to:?}"));
            }
        }
        // The same changes keep every value they can hold.
        for (from, value, to) in [
            (ColumnType::BigInt, "-2147483648", ColumnType::Integer),
            (ColumnType::Integer, "1", ColumnType::Bool),
            (ColumnType::Double, "3.0", ColumnType::Integer),
            (ColumnType::Text, "'7'", ColumnType::BigInt),
            (ColumnType::Text, "'{\"a\": 1}'", ColumnType::Json),
            (
                ColumnType::Text,
                "'2026-12-03T10:00:00.5Z'",
                ColumnType::Timestamp,
            ),
            (
                ColumnType::Text,
                "'2026-12-03 10:00:00'",
                ColumnType::Timestamp,
            ),
            (
                ColumnType::Text,
                "'67e55044-10b1-426f-9247-bb680e5fe0c8'",
                ColumnType::Uuid,
            ),
            (
                ColumnType::Text,
                "'{67e55044-10b1-426f-9247-bb680e5fe0c8}'",
                ColumnType::Uuid,
            ),
        ] {
            let l = fresh(&lab);
            change(
                &l,
                schema(items(vec![column("n", from)])),
                &format!("INSERT INTO items (id, n) VALUES (1, {value});"),
                &schema(items(vec![column("n", to.clone())])),
                true,
            );
            assert_eq!(
                l.rows("SELECT CAST(count(*) AS TEXT) AS v FROM items WHERE n IS NOT NULL"),
                ["1"],
                "{to:?}"
            );
        }
    }
}

/// Each number type becomes a boolean and a boolean each number type, both ways (`up`, then
/// its `down`): 0 and 1 are false and true, NULL stays NULL, and another number stops the
/// migration as a value a boolean cannot hold. PostgreSQL casts only its `integer` to and from
/// `boolean`; the other number types convert too.
#[test]
fn numbers_and_booleans_convert_into_each_other_both_ways() {
    let numbers = [
        ColumnType::SmallInt,
        ColumnType::Integer,
        ColumnType::BigInt,
        ColumnType::Float,
        ColumnType::Double,
    ];
    let truths = "SELECT CASE WHEN n THEN 'true' WHEN NOT n THEN 'false' END AS v \
                  FROM items ORDER BY id";
    let digits = "SELECT CASE WHEN n = 1 THEN '1' WHEN n = 0 THEN '0' END AS v \
                  FROM items ORDER BY id";
    let seed = "INSERT INTO items (id, n) VALUES (1, 0), (2, 1), (3, NULL);";
    let seed_truths = "INSERT INTO items (id, n) VALUES (1, FALSE), (2, TRUE), (3, NULL);";
    for lab in Lab::all() {
        for number in numbers.clone() {
            let (numeric, boolean) = (
                items(vec![nullable("n", number.clone())]),
                items(vec![nullable("n", ColumnType::Bool)]),
            );
            let l = fresh(&lab);
            let fp = change(
                &l,
                schema(numeric.clone()),
                seed,
                &schema(boolean.clone()),
                true,
            );
            assert_eq!(
                l.rows(truths),
                ["false", "true", "NULL"],
                "{number:?} -> Bool"
            );
            l.round_trip(&fp);
            assert_eq!(
                l.rows(truths),
                ["false", "true", "NULL"],
                "{number:?} -> Bool"
            );

            let l = fresh(&lab);
            let fp = change(&l, schema(boolean), seed_truths, &schema(numeric), true);
            assert_eq!(l.rows(digits), ["0", "1", "NULL"], "Bool -> {number:?}");
            l.round_trip(&fp);
            assert_eq!(l.rows(digits), ["0", "1", "NULL"], "Bool -> {number:?}");

            let other = match number {
                ColumnType::Float | ColumnType::Double => "0.5",
                _ => "2",
            };
            let l = fresh(&lab);
            let e = refused(
                &l,
                items(vec![column("n", number.clone())]),
                &format!("INSERT INTO items (id, n) VALUES (1, {other});"),
                items(vec![column("n", ColumnType::Bool)]),
            );
            unconvertible_n(e, format!("{:?} {number:?} {other} -> Bool", l.dialect));
        }
    }
}

/// Text becoming a UUID is kept in the one form an `Id` is read and found by (lowercase,
/// hyphenated), whatever form it was written in: on SQLite the rebuild rewrites it, as
/// PostgreSQL's cast does.
#[test]
fn text_becoming_a_uuid_is_stored_in_the_form_keys_are_found_by() {
    let canonical = "67e55044-10b1-426f-9247-bb680e5fe0c8";
    for lab in Lab::all() {
        for written in [
            "67E55044-10B1-426F-9247-BB680E5FE0C8",
            "67e5504410b1426f9247bb680e5fe0c8",
            "{67e55044-10b1-426f-9247-BB680E5FE0C8}",
            "URN:UUID:67e55044-10b1-426f-9247-bb680e5fe0c8",
            canonical,
        ] {
            // PostgreSQL's uuid reads no URN (its cast stops the migration).
            if lab.dialect == Dialect::Postgres && written.starts_with("URN") {
                continue;
            }
            let l = fresh(&lab);
            change(
                &l,
                schema(items(vec![nullable("n", ColumnType::Text)])),
                &format!("INSERT INTO items (id, n) VALUES (1, '{written}'), (2, NULL);"),
                &schema(items(vec![nullable("n", ColumnType::Uuid)])),
                true,
            );
            assert_eq!(
                l.rows("SELECT COALESCE(CAST(n AS TEXT), 'null') AS v FROM items ORDER BY id"),
                [canonical, "null"],
                "{written}"
            );
        }
    }
}

/// Text becoming a timestamp is kept in the one form `Timestamp` binds and compares by on
/// SQLite (`YYYY-MM-DDTHH:MM:SS.ffffffZ`, in UTC), whatever RFC 3339 form it was written in:
/// the rebuild rewrites it, offsets applied, as PostgreSQL's cast reads the instant. Kept as
/// written, a time with an offset or a space for its `T` would compare and sort wrongly
/// against every bound instant.
#[test]
fn text_becoming_a_timestamp_is_stored_in_the_form_instants_compare_by() {
    let cases = [
        ("2026-12-03T10:00:00.5Z", "2026-12-03T10:00:00.500000Z"),
        ("2026-12-03T10:00:00+05:00", "2026-12-03T05:00:00.000000Z"),
        (
            "2026-12-31T23:30:00.123456-01:00",
            "2027-01-01T00:30:00.123456Z",
        ),
        ("2026-12-03 10:00:00z", "2026-12-03T10:00:00.000000Z"),
        (
            "2026-12-03t10:00:00.25+00:30",
            "2026-12-03T09:30:00.250000Z",
        ),
        ("2026-12-03T10:00:00.000000Z", "2026-12-03T10:00:00.000000Z"),
        // `Timestamp` reads a time without an offset as UTC (PostgreSQL's cast, in the
        // session's time zone, which Diesel's connections set to UTC, but `psql` need not),
        // and keeps microseconds by cutting (the cast rounds).
        ("2026-12-03 10:00:00", "2026-12-03T10:00:00.000000Z"),
        (
            "2026-12-03T10:00:00.1234567Z",
            "2026-12-03T10:00:00.123456Z",
        ),
    ];
    for lab in Lab::all() {
        let read = match lab.dialect {
            Dialect::Postgres => {
                "SELECT COALESCE(to_char(n AT TIME ZONE 'UTC', \
                 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), 'null') AS v FROM items ORDER BY id"
            }
            _ => "SELECT COALESCE(n, 'null') AS v FROM items ORDER BY id",
        };
        for (written, stored) in cases {
            let l = fresh(&lab);
            change(
                &l,
                schema(items(vec![nullable("n", ColumnType::Text)])),
                &format!("INSERT INTO items (id, n) VALUES (1, '{written}'), (2, NULL);"),
                &schema(items(vec![nullable("n", ColumnType::Timestamp)])),
                true,
            );
            assert_eq!(l.rows(read), [stored, "null"], "{written}");
        }
    }
}

/// On PostgreSQL the generated migration reads a time without an offset as UTC in a session
/// whose time zone is another (as `psql` may run it; Diesel's connections set UTC).
#[test]
fn on_postgres_text_becoming_a_timestamp_does_not_depend_on_the_sessions_time_zone() {
    let Some(migrated) = text_becoming_a_timestamp_in_a_session(
        "SET TIME ZONE 'Asia/Kolkata'",
        &["2026-12-03 10:00:00", "2026-12-03T10:00:00+05:00"],
    ) else {
        return;
    };
    assert_eq!(
        migrated,
        ["2026-12-03T10:00:00.000000Z", "2026-12-03T05:00:00.000000Z"]
    );
}

/// On PostgreSQL the generated migration cuts a fraction past microseconds in a session whose
/// `standard_conforming_strings` is off (a setting any session, role or database may make),
/// where a backslash in a plain string literal is an escape: its patterns (`\.`, `\1`) are
/// escape strings. Written plainly, `'\1'` was the character 1, which the cast refused.
#[test]
fn on_postgres_text_becoming_a_timestamp_does_not_depend_on_standard_conforming_strings() {
    let Some(migrated) = text_becoming_a_timestamp_in_a_session(
        "SET standard_conforming_strings = off",
        &["2026-12-03T10:00:00.1234567Z", "2026-12-03T10:00:00.5Z"],
    ) else {
        return;
    };
    assert_eq!(
        migrated,
        ["2026-12-03T10:00:00.123456Z", "2026-12-03T10:00:00.500000Z"]
    );
}

/// On PostgreSQL (`None` without a server), the instants (in UTC) that a migration making text
/// a timestamp makes of `texts`, run in a session that ran `setting` before (on its own: a
/// batch is read whole before it runs).
fn text_becoming_a_timestamp_in_a_session(setting: &str, texts: &[&str]) -> Option<Vec<String>> {
    let lab = Lab::all()
        .into_iter()
        .find(|lab| lab.dialect == Dialect::Postgres)?;
    let l = fresh(&lab);
    l.generate(
        &schema(items(vec![nullable("n", ColumnType::Text)])),
        "before",
        false,
    )
    .unwrap();
    drop(l.up().unwrap());
    let rows: Vec<String> = texts
        .iter()
        .enumerate()
        .map(|(id, text)| format!("({id}, '{text}')"))
        .collect();
    l.execute(&format!(
        "INSERT INTO items (id, n) VALUES {};",
        rows.join(", ")
    ))
    .unwrap();
    let dir = l
        .generate(
            &schema(items(vec![nullable("n", ColumnType::Timestamp)])),
            "after",
            true,
        )
        .unwrap();
    let up = std::fs::read_to_string(dir.join("up.sql")).unwrap();
    let mut conn = l.conn();
    conn.batch_execute(setting).unwrap();
    conn.batch_execute(&format!("BEGIN; {up} COMMIT;")).unwrap();
    Some(l.rows(
        "SELECT to_char(n AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS v \
         FROM items ORDER BY id",
    ))
}

/// Text that is no time `Timestamp` reads stops the migration on both backends, rather than
/// becoming an instant it never meant (PostgreSQL's own input reads `now`, `epoch`, zone names
/// and other orders of day and month, `24:00:00`, a 60th second; a day the month lacks would
/// stop it with a bare cast error).
#[test]
fn text_that_is_no_timestamp_stops_the_migration_to_a_timestamp() {
    for lab in Lab::all() {
        for written in [
            "now",
            "epoch",
            "2026-12-03T10:00:00",
            "12/03/2026 10:00:00",
            "2026-12-03 10:00:00 Europe/Paris",
            "2026-12-03",
            "2026-12-03 24:00:00",
            "2026-12-03T10:00:60Z",
            "2026-02-30 10:00:00",
            "2026-13-01T10:00:00Z",
        ] {
            let l = fresh(&lab);
            let e = refused(
                &l,
                items(vec![nullable("n", ColumnType::Text)]),
                &format!("INSERT INTO items (id, n) VALUES (1, '{written}');"),
                items(vec![nullable("n", ColumnType::Timestamp)]),
            );
            unconvertible_n(e, format!("{:?} {written}", lab.dialect));
        }
    }
}

/// A timestamp becoming text is the text `Timestamp` stores on SQLite, on both backends (on
/// PostgreSQL, not the session's `DateStyle`).
#[test]
fn a_timestamp_becoming_text_is_its_rfc_3339_text() {
    for lab in Lab::all() {
        let l = fresh(&lab);
        change(
            &l,
            schema(items(vec![nullable("n", ColumnType::Timestamp)])),
            "INSERT INTO items (id, n) VALUES (1, '2026-12-03T10:00:00.500000Z'), (2, NULL);",
            &schema(items(vec![nullable("n", ColumnType::Text)])),
            true,
        );
        assert_eq!(
            l.rows("SELECT COALESCE(n, 'null') AS v FROM items ORDER BY id"),
            ["2026-12-03T10:00:00.500000Z", "null"],
            "{:?}",
            lab.dialect
        );
    }
    // PostgreSQL keeps instants past the year 9999, which that text cannot write: refused.
    if let Some(lab) = Lab::all()
        .into_iter()
        .find(|lab| lab.dialect == Dialect::Postgres)
    {
        let l = fresh(&lab);
        let e = refused(
            &l,
            items(vec![nullable("n", ColumnType::Timestamp)]),
            "INSERT INTO items (id, n) VALUES (1, '10000-01-01T00:00:00Z');",
            items(vec![nullable("n", ColumnType::Text)]),
        );
        unconvertible_n(e, "a year past 9999");
    }
}

/// A SQLite lab whose `items (id, name)` has a row, and `setup` (triggers, views) run on it;
/// then the migration making `name` unique (a rebuild) is generated, its `up.sql` running `edit`
/// first, and applied.
fn rebuilt_after(setup: &str, edit: &str) -> Lab {
    let l = fresh(&Lab::all().remove(0));
    l.generate(
        &schema(items(vec![column("name", ColumnType::Text)])),
        "before",
        false,
    )
    .unwrap();
    drop(l.up().unwrap());
    l.execute(&format!(
        "{setup} INSERT INTO items (id, name) VALUES (1, 'a');"
    ))
    .unwrap();
    let mut name = column("name", ColumnType::Text);
    name.unique = true;
    let dir = l
        .generate(&schema(items(vec![name])), "after", true)
        .unwrap();
    let up = std::fs::read_to_string(dir.join("up.sql")).unwrap();
    let edited = up.replacen("BEGIN IMMEDIATE;", &format!("BEGIN IMMEDIATE;\n{edit}"), 1);
    assert!(
        edit.is_empty() || up != edited,
        "a rebuild opens its own transaction"
    );
    std::fs::write(dir.join("up.sql"), edited).unwrap();
    drop(l.up().unwrap());
    l
}

/// `log (name)` and a trigger `logged` on `items` writing each new name into it.
const LOGGED: &str = "CREATE TABLE log (name TEXT); \
     CREATE TRIGGER logged AFTER INSERT ON items BEGIN INSERT INTO log VALUES (new.name); END;";

/// SQLite drops a table's triggers with it: a rebuild (here, a column made unique) creates
/// them again (declared on `Items`: SQLite's names have no case), and a view over the table
/// keeps working.
#[test]
fn a_rebuild_keeps_the_triggers_on_the_table_and_the_views_over_it() {
    let l = rebuilt_after(
        &format!(
            "{} CREATE VIEW names AS SELECT name FROM items;",
            LOGGED.replace("ON items", "ON Items")
        ),
        "",
    );
    l.execute("INSERT INTO items (id, name) VALUES (2, 'b');")
        .unwrap();
    assert_eq!(
        l.rows("SELECT name AS v FROM log ORDER BY name"),
        ["a", "b"]
    );
    assert_eq!(
        l.rows("SELECT name AS v FROM names ORDER BY name"),
        ["a", "b"]
    );
    assert!(
        l.execute("INSERT INTO items (id, name) VALUES (3, 'b');")
            .is_err(),
        "the rebuild happened: name is unique"
    );
}

/// SQLite drops a table's indexes with it: a rebuild creates again those no model declares
/// (written by hand in a migration, here a unique one on an expression and a partial one), as
/// they were, so that what they enforce still holds; the models' own are the rebuild's.
#[test]
fn a_rebuild_keeps_the_indexes_no_model_declares() {
    const HAND_WRITTEN: &str = "CREATE UNIQUE INDEX items_upper ON items (upper(name)); \
         CREATE INDEX Items_Named ON Items (name) WHERE name <> '';";
    let l = rebuilt_after(HAND_WRITTEN, "");
    assert_eq!(
        l.rows(
            "SELECT name || ': ' || sql AS v FROM sqlite_master \
             WHERE type = 'index' AND sql IS NOT NULL ORDER BY name"
        ),
        [
            "Items_Named: CREATE INDEX Items_Named ON Items (name) WHERE name <> ''",
            "items_upper: CREATE UNIQUE INDEX items_upper ON items (upper(name))",
        ]
    );
    assert!(
        l.execute("INSERT INTO items (id, name) VALUES (2, 'A');")
            .is_err(),
        "the hand-written unique index still holds ('a' is there)"
    );
    assert!(
        l.execute("INSERT INTO items (id, name) VALUES (3, 'a');")
            .is_err(),
        "the rebuild happened: name is unique"
    );
}

/// A trigger the migration itself drops (an edited rebuild) is not created again.
#[test]
fn a_trigger_a_rebuild_drops_itself_stays_dropped() {
    let l = rebuilt_after(LOGGED, "DROP TRIGGER logged;");
    assert!(
        l.rows("SELECT name AS v FROM sqlite_master WHERE type = 'trigger'")
            .is_empty(),
        "the migration dropped it"
    );
}

/// A trigger is created again as the migration left it before the rebuild dropped it: here the
/// table it writes was renamed first (an edited migration), which SQLite carried into it.
#[test]
fn a_trigger_is_created_again_as_the_migration_left_it() {
    let l = rebuilt_after(LOGGED, "ALTER TABLE log RENAME TO journal;");
    l.execute("INSERT INTO items (id, name) VALUES (2, 'b');")
        .unwrap();
    assert_eq!(
        l.rows("SELECT name AS v FROM journal ORDER BY name"),
        ["a", "b"]
    );
}

/// A rebuild that drops a column a trigger or view uses would leave it failing on every use:
/// the migration stops instead, naming it, and changes nothing.
#[test]
fn a_rebuild_that_breaks_a_trigger_view_or_index_stops_naming_it() {
    dropping_note_stops_naming_what_it_breaks(true);
}

/// SQLite refuses to drop a column in place (`ALTER TABLE .. DROP COLUMN`, no rebuild) that a
/// trigger on its table, a view or an index uses; a trigger on another table that writes the
/// column it does not check, and the store does, as after a rebuild: the migration stops as a
/// rebuild's does, naming it, and changes nothing.
#[test]
fn an_in_place_drop_that_breaks_a_trigger_view_or_index_stops_naming_it() {
    dropping_note_stops_naming_what_it_breaks(false);
}

/// Drops `items.note`, which a trigger, view or index `logged` written by hand uses, by a
/// rebuild (`name` made unique too) or in place: the migration stops with
/// `MigrationFailure::Breaks` naming `logged`, changing nothing (SQLite).
fn dropping_note_stops_naming_what_it_breaks(rebuilt: bool) {
    let uses = [
        (
            SchemaObject::Trigger,
            "CREATE TABLE log (note TEXT); \
             CREATE TRIGGER logged AFTER INSERT ON items BEGIN INSERT INTO log VALUES (new.note); END;",
        ),
        (SchemaObject::View, "CREATE VIEW logged AS SELECT note FROM items;"),
        // An index written by hand on the column.
        (SchemaObject::Index, "CREATE INDEX logged ON items (note);"),
        // A trigger on another table that writes the column.
        (
            SchemaObject::Trigger,
            "CREATE TABLE log (note TEXT); \
             CREATE TRIGGER logged AFTER INSERT ON log BEGIN UPDATE items SET note = new.note; END;",
        ),
    ];
    for (object, sql) in uses {
        let l = fresh(&Lab::all().remove(0));
        let mut name = column("name", ColumnType::Text);
        let before = items(vec![name.clone(), nullable("note", ColumnType::Text)]);
        name.unique = rebuilt;
        let e = refused(
            &l,
            before,
            &format!("{sql} INSERT INTO items (id, name, note) VALUES (1, 'a', 'x');"),
            items(vec![name]),
        );
        let after = std::fs::read_dir(l.migrations().dir())
            .unwrap()
            .flatten()
            .find(|entry| entry.file_name().to_string_lossy().ends_with("_after"))
            .unwrap();
        let up = std::fs::read_to_string(after.path().join("up.sql")).unwrap();
        assert_eq!(!up.contains("DROP COLUMN"), rebuilt, "{up}");
        assert_breaks(e, object, "logged", "note");
    }
}

/// Asserts that `e` is `MigrationFailure::Breaks` naming the `kind` of object called `name`,
/// with a message that mentions `said`.
fn assert_breaks(e: Error, kind: SchemaObject, name: &str, said: &str) {
    match e {
        Error::Migration {
            failure:
                MigrationFailure::Breaks {
                    kind: broken,
                    name: called,
                    message,
                },
            ..
        } => {
            assert_eq!((broken, called.as_str()), (kind, name), "{message}");
            assert!(message.contains(said), "{message}");
        }
        other => panic!("expected Breaks, got {other:?}"),
    }
}

/// PostgreSQL refuses to drop a column that a view or trigger uses ("cannot drop column note
/// of table items because other objects depend on it", each listed in its DETAIL): the
/// migration stops with `MigrationFailure::Breaks` naming it, as SQLite's does, and changes
/// nothing.
#[test]
fn on_postgres_a_drop_that_breaks_a_view_or_trigger_stops_naming_it() {
    let Some(lab) = Lab::all()
        .into_iter()
        .find(|l| l.dialect == Dialect::Postgres)
    else {
        return;
    };
    let uses = [
        (
            SchemaObject::View,
            "CREATE VIEW logged AS SELECT note FROM items;".to_owned(),
        ),
        // A trigger whose condition reads the column depends on it.
        (
            SchemaObject::Trigger,
            "CREATE FUNCTION logged_fn() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RETURN new; END $$; \
             CREATE TRIGGER logged BEFORE UPDATE ON items FOR EACH ROW \
             WHEN (new.note IS NOT NULL) EXECUTE FUNCTION logged_fn();"
                .to_owned(),
        ),
    ];
    for (object, sql) in uses {
        let l = fresh(&lab);
        let name = column("name", ColumnType::Text);
        let e = refused(
            &l,
            items(vec![name.clone(), nullable("note", ColumnType::Text)]),
            &format!("{sql} INSERT INTO items (id, name, note) VALUES (1, 'a', 'x');"),
            items(vec![name]),
        );
        assert_breaks(e, object, "logged", "column note of table items");
        assert_eq!(l.rows("SELECT note AS v FROM items"), ["x"]);
    }
}

/// A column with a default changes type with its default: an `i32` defaulting to `0` becomes
/// a `bool` defaulting to `false` (PostgreSQL would cast the old default along with the
/// column, without the migration's `USING`, and refuse), its values converted, both ways.
#[test]
fn a_type_change_of_a_column_with_a_default_takes_the_new_default() {
    for lab in Lab::all() {
        let l = fresh(&lab);
        let flag = |ty, default| items(vec![defaulting(column("flag", ty), default)]);
        let before = change(
            &l,
            schema(flag(ColumnType::Integer, ColumnDefault::Integer(0))),
            "INSERT INTO items (id, flag) VALUES (1, 0), (2, 1);",
            &schema(flag(ColumnType::Bool, ColumnDefault::Bool(false))),
            true,
        );
        l.execute("INSERT INTO items (id) VALUES (3);").unwrap();
        let read = "SELECT CASE WHEN flag THEN 'true' ELSE 'false' END AS v FROM items ORDER BY id";
        assert_eq!(l.rows(read), ["false", "true", "false"], "{:?}", l.dialect);
        l.execute("DELETE FROM items WHERE id = 3;").unwrap();
        l.round_trip(&before);
        assert_eq!(l.rows(read), ["false", "true"], "{:?}", l.dialect);
    }
}

/// Reverting a column made nullable (a lossless change) while rows hold NULLs in it stops,
/// changing nothing: its `down.sql` gives no NULL an invented value (`''`, `0`), which
/// `migrate redo` would otherwise leave in place of the NULLs for good.
#[test]
fn reverting_a_column_made_nullable_keeps_its_nulls_or_stops() {
    for lab in Lab::all() {
        let l = fresh(&lab);
        change(
            &l,
            schema(items(vec![column("name", ColumnType::Text)])),
            "INSERT INTO items (id, name) VALUES (1, 'a');",
            &schema(items(vec![nullable("name", ColumnType::Text)])),
            false,
        );
        l.execute("INSERT INTO items (id, name) VALUES (2, NULL);")
            .unwrap();
        let read = "SELECT COALESCE(name, 'null') AS v FROM items ORDER BY id";
        let error = l.try_down().expect_err("a NULL stops the revert");
        if l.dialect == Dialect::Sqlite {
            let message = error.to_string();
            assert!(message.contains("datastore_unconvertible"), "{message}");
        }
        assert_eq!(l.rows(read), ["a", "null"], "nothing changed");
        // Without NULLs it reverts.
        l.execute("DELETE FROM items WHERE id = 2;").unwrap();
        l.try_down().unwrap();
        assert_eq!(l.rows(read), ["a"]);
        assert!(
            l.execute("INSERT INTO items (id, name) VALUES (3, NULL);")
                .is_err(),
            "name is NOT NULL again"
        );
    }
}

/// A real default goes into the SQL as it is written: one that is not a finite number literal
/// the column holds (SQL, an infinity, past `f32`'s range) is refused before anything is
/// written, in the models' schema and in a folder's recorded schema alike.
#[test]
fn a_real_default_is_a_finite_number_literal_or_refused() {
    let lab = Lab::all().remove(0);
    for (ty, default) in [
        (ColumnType::Double, "0; DROP TABLE items; --"),
        (ColumnType::Double, "1e400"),
        (ColumnType::Double, "NaN"),
        (ColumnType::Float, "1e39"),
        (ColumnType::Double, ""),
    ] {
        let l = fresh(&lab);
        let table = items(vec![defaulting(
            column("n", ty.clone()),
            ColumnDefault::Real(Name::from(default.to_owned())),
        )]);
        match l.generate(&schema(table), "refused", false) {
            Err(Error::Migration {
                failure: MigrationFailure::InvalidSchema(problem),
                ..
            }) => match *problem {
                SchemaProblem::UnfitDefault {
                    table,
                    column,
                    column_type,
                    ..
                } => assert_eq!(
                    (table.as_str(), column.as_str(), &column_type),
                    ("items", "n", &ty)
                ),
                other => panic!("{ty:?} {default:?}: {other:?}"),
            },
            other => panic!("{ty:?} {default:?}: {other:?}"),
        }
        assert!(!l.migrations().dir().exists(), "nothing written");
    }
    // Written by hand into a folder's recorded schema, it stops the next generation.
    let l = fresh(&lab);
    let real = |text: &str| {
        items(vec![defaulting(
            column("n", ColumnType::Double),
            ColumnDefault::Real(Name::from(text.to_owned())),
        )])
    };
    let dir = l.generate(&schema(real("2.5e3")), "valid", false).unwrap();
    let snapshot = dir.parent().unwrap().join("schema.json");
    let json = std::fs::read_to_string(&snapshot).unwrap();
    assert!(json.contains("2.5e3"), "{json}");
    std::fs::write(&snapshot, json.replace("2.5e3", "0; DROP TABLE items; --")).unwrap();
    match l.generate(&schema(real("1.5")), "after", false) {
        Err(Error::Migration {
            failure: MigrationFailure::SchemaFile { message, .. },
            ..
        }) => assert!(message.contains("items.n"), "{message}"),
        other => panic!("{other:?}"),
    }
}

/// The order of a model's fields is no change to its table: reordered, the models are up to
/// date with their migrations on both backends (on PostgreSQL it was drift, and `generate`
/// wrote an empty migration).
#[test]
fn reordered_fields_are_no_change() {
    for lab in Lab::all() {
        let l = fresh(&lab);
        let mut indexed = items(vec![
            column("a", ColumnType::Text),
            column("b", ColumnType::BigInt),
        ]);
        let index = |name: &'static str, column: &'static str| datastore::schema::Index {
            name: name.into(),
            columns: vec![Name::from(column)].into(),
            unique: false,
        };
        indexed.indexes = vec![index("idx_a", "a"), index("idx_b", "b")].into();
        l.generate(&schema(indexed.clone()), "before", false)
            .unwrap();
        let mut reordered = indexed;
        let mut columns = reordered.columns.to_vec();
        columns.swap(1, 2);
        reordered.columns = columns.into();
        let mut indexes = reordered.indexes.to_vec();
        indexes.reverse();
        reordered.indexes = indexes.into();
        assert!(
            l.migrations().plan(&schema(reordered)).unwrap().is_none(),
            "{:?}",
            lab.dialect
        );
    }
}

/// A table `pairs` of two integers `a` (unique on its own) and `b`, keyed by `key`.
fn pairs_with_unique_a(key: &[&'static str]) -> Table {
    let mut a = column("a", ColumnType::BigInt);
    a.unique = true;
    Table {
        name: "pairs".into(),
        primary_key: key
            .iter()
            .map(|k| Name::from(*k))
            .collect::<Vec<_>>()
            .into(),
        columns: vec![a, column("b", ColumnType::BigInt)].into(),
        foreign_keys: vec![].into(),
        indexes: vec![].into(),
    }
}

/// A column of a composite primary key that is unique on its own (`#[unique]`, or a one-to-one
/// child's foreign key) gets a constraint of its own, on both backends: the key alone lets two
/// rows share it.
#[test]
fn a_unique_column_of_a_composite_key_is_unique() {
    for lab in Lab::all() {
        let l = fresh(&lab);
        l.generate(&schema(pairs_with_unique_a(&["a", "b"])), "pairs", false)
            .unwrap();
        drop(l.up().unwrap());
        l.execute("INSERT INTO pairs (a, b) VALUES (1, 1);")
            .unwrap();
        assert!(
            l.execute("INSERT INTO pairs (a, b) VALUES (1, 2);")
                .is_err(),
            "{:?}",
            lab.dialect
        );
    }
}

/// A unique column that is the whole primary key (no constraint of its own) and becomes part
/// of a composite key is still unique: the migration adds its constraint (PostgreSQL altered
/// the key and added none). And back: it becomes the whole key again, still unique.
#[test]
fn a_unique_key_column_joining_a_composite_key_stays_unique() {
    let pairs = pairs_with_unique_a;
    for lab in Lab::all() {
        let l = fresh(&lab);
        l.generate(&schema(pairs(&["a"])), "whole", false).unwrap();
        drop(l.up().unwrap());
        l.generate(&schema(pairs(&["a", "b"])), "composite", true)
            .unwrap();
        drop(l.up().unwrap());
        l.execute("INSERT INTO pairs (a, b) VALUES (1, 1);")
            .unwrap();
        assert!(
            l.execute("INSERT INTO pairs (a, b) VALUES (1, 2);")
                .is_err(),
            "{:?}: a is unique",
            lab.dialect
        );
        l.generate(&schema(pairs(&["a"])), "whole_again", true)
            .unwrap();
        drop(l.up().unwrap());
        assert!(
            l.execute("INSERT INTO pairs (a, b) VALUES (1, 3);")
                .is_err(),
            "{:?}: a is the key",
            lab.dialect
        );
        l.execute("INSERT INTO pairs (a, b) VALUES (2, 3);")
            .unwrap();
        // No longer marked unique, still the whole key: no change (it was an empty migration,
        // which PostgreSQL refuses to run).
        let mut plain = pairs(&["a"]);
        let mut columns = plain.columns.to_vec();
        columns[0].unique = false;
        plain.columns = columns.into();
        assert!(l.migrations().drift(&schema(plain)).unwrap().is_none());
    }
}

/// A table keyed by a value of its own that becomes keyed by an integer the database assigns
/// (a new `id`) gives each row a key of its own, on both backends: the new key column is
/// neither filled with one value for every row nor added beside the old key. Nothing is lost
/// (no two rows can share the new key, and the old one stays unique): the change is lossless.
#[test]
fn a_new_key_the_database_assigns_gives_each_row_its_own() {
    let by_code = |code: Column| Table {
        name: "items".into(),
        primary_key: vec![Name::from("code")].into(),
        columns: vec![code].into(),
        foreign_keys: vec![].into(),
        indexes: vec![].into(),
    };
    for lab in Lab::all() {
        let l = fresh(&lab);
        let mut id = column("id", ColumnType::BigInt);
        id.generated = true;
        let mut code = column("code", ColumnType::Text);
        code.unique = true;
        let by_id = Table {
            name: "items".into(),
            primary_key: vec![Name::from("id")].into(),
            columns: vec![id, code.clone()].into(),
            foreign_keys: vec![].into(),
            indexes: vec![].into(),
        };
        change(
            &l,
            schema(by_code(column("code", ColumnType::Text))),
            "INSERT INTO items (code) VALUES ('a'), ('b'), ('c');",
            &schema(by_id),
            false,
        );
        assert_eq!(
            l.rows("SELECT CAST(count(DISTINCT id) AS TEXT) AS v FROM items"),
            ["3"],
            "{:?}",
            lab.dialect
        );
        assert_eq!(
            l.rows("SELECT code AS v FROM items ORDER BY code"),
            ["a", "b", "c"]
        );
        // A new row gets a fresh key.
        l.execute("INSERT INTO items (code) VALUES ('d');").unwrap();
        assert_eq!(
            l.rows("SELECT CAST(count(DISTINCT id) AS TEXT) AS v FROM items"),
            ["4"]
        );
    }
}

#[test]
fn a_value_is_never_invented() {
    for lab in Lab::all() {
        let l = fresh(&lab);
        l.generate(
            &schema(items(vec![nullable("name", ColumnType::Text)])),
            "before",
            false,
        )
        .unwrap();
        for (after, unfilled) in [
            // A NOT NULL column added without a default.
            (
                items(vec![
                    nullable("name", ColumnType::Text),
                    column("stars", ColumnType::Integer),
                ]),
                ("stars", true),
            ),
            // A column made NOT NULL without one.
            (
                items(vec![column("name", ColumnType::Text)]),
                ("name", false),
            ),
        ] {
            match l
                .migrations()
                .allow_lossy(true)
                .generate(&schema(after), "after")
            {
                Err(Error::MissingDefault { columns }) => {
                    let found: Vec<_> = columns
                        .iter()
                        .map(|c| (c.table.as_str(), c.column.as_str(), c.added))
                        .collect();
                    assert_eq!(found, [("items", unfilled.0, unfilled.1)]);
                }
                other => panic!("expected MissingDefault, got {other:?}"),
            }
        }
        assert_eq!(
            std::fs::read_dir(l.migrations().dir())
                .unwrap()
                .filter(|e| e.as_ref().unwrap().path().is_dir())
                .count(),
            1,
            "nothing was written"
        );
    }
}

/// A project board, before and after its table and columns were renamed, then after its
/// foreign key changed.
/// A long table with a long unique column, renamed to a name whose constraint PostgreSQL cuts
/// to the same name as the old one's.
mod long_v1 {
    use datastore::prelude::*;

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct OrganizationMembershipInvitation {
        #[primary_key]
        pub id: Id,
        #[unique]
        pub invitation_email_address_normalized: String,
    }
}

mod long_v2 {
    use datastore::prelude::*;

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct OrganizationMembershipInvitation {
        #[primary_key]
        pub id: Id,
        #[unique]
        #[column(renamed_from = "invitation_email_address_normalized")]
        pub invitation_email_address_normalised: String,
    }
}

/// The rename keeps the column's unique constraint, under a name PostgreSQL already gave it.
#[test]
fn a_rename_to_a_name_whose_constraints_are_cut_alike_keeps_them() {
    for lab in Lab::all() {
        let l = fresh(&lab);
        let before = change(
            &l,
            Schema::new().model::<long_v1::OrganizationMembershipInvitation>(),
            "",
            &Schema::new().model::<long_v2::OrganizationMembershipInvitation>(),
            false,
        );
        let store = l.up().unwrap();
        let invitation = |email: &str| long_v2::OrganizationMembershipInvitation {
            invitation_email_address_normalised: email.into(),
            ..Default::default()
        };
        store.save(invitation("a@b")).unwrap();
        assert!(store.save(invitation("a@b")).is_err(), "still unique");
        drop(store);
        l.execute("DELETE FROM organization_membership_invitations;")
            .unwrap();
        l.round_trip(&before);
    }
}

/// A long table with a long indexed column, renamed to a name whose index PostgreSQL cuts to
/// the same name as the old one's.
mod long_indexed_v1 {
    use datastore::prelude::*;

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct OrganizationMembershipInvitation {
        #[primary_key]
        pub id: Id,
        #[index]
        pub invitation_email_address_normalized: String,
    }
}

mod long_indexed_v2 {
    use datastore::prelude::*;

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct OrganizationMembershipInvitation {
        #[primary_key]
        pub id: Id,
        #[index]
        #[column(renamed_from = "invitation_email_address_normalized")]
        pub invitation_email_address_normalised: String,
    }
}

/// The rename keeps the column's index, under the name PostgreSQL already gave it (the first
/// 63 bytes of both names): PostgreSQL refused to rename the index to the name it had.
#[test]
fn a_rename_to_a_name_whose_index_is_cut_alike_keeps_it() {
    let index = "idx_organization_membership_invitations_invitation_email_address_normalised";
    for lab in Lab::all() {
        let l = fresh(&lab);
        let before = change(
            &l,
            Schema::new().model::<long_indexed_v1::OrganizationMembershipInvitation>(),
            "",
            &Schema::new().model::<long_indexed_v2::OrganizationMembershipInvitation>(),
            false,
        );
        let sql = match l.dialect {
            Dialect::Sqlite => {
                "SELECT name || ' ' || sql AS v FROM sqlite_master WHERE type = 'index' \
                 AND name LIKE 'idx_%'"
            }
            _ => {
                "SELECT indexname::text || ' ' || indexdef AS v FROM pg_indexes \
                 WHERE schemaname = current_schema() AND indexname LIKE 'idx_%'"
            }
        };
        let [indexed] = &l.rows(sql)[..] else {
            panic!("{:?} lab: one index", l.dialect)
        };
        let kept = match l.dialect {
            Dialect::Sqlite => index,
            _ => &index[..63],
        };
        // SQLite quotes the names in the statement it keeps.
        let unquoted = indexed.replace('"', "");
        assert!(
            unquoted.starts_with(&format!("{kept} "))
                && unquoted.ends_with("(invitation_email_address_normalised)"),
            "{:?} lab: {indexed}",
            l.dialect
        );
        l.round_trip(&before);
    }
}

mod v1 {
    use datastore::prelude::*;

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Project {
        #[primary_key]
        pub id: Id,
        #[unique]
        pub name: String,
        #[has_many(Task)]
        pub tasks: HasMany<Task>,
    }

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Task {
        #[primary_key]
        pub id: Id,
        #[belongs_to(Project)]
        pub project_id: Id,
        #[index]
        pub owner: String,
    }
}

mod v2 {
    use datastore::prelude::*;

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    #[model(renamed_from = "projects")]
    pub struct Board {
        #[primary_key]
        pub id: Id,
        #[unique]
        pub name: String,
        #[has_many(Task)]
        pub tasks: HasMany<Task>,
    }

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Task {
        #[primary_key]
        pub id: Id,
        #[belongs_to(Board)]
        #[column(renamed_from = "project_id")]
        pub board_id: Id,
        #[index]
        #[column(renamed_from = "owner")]
        pub assignee: String,
    }
}

mod v3 {
    use datastore::prelude::*;

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    #[model(renamed_from = "projects")]
    pub struct Board {
        #[primary_key]
        pub id: Id,
        #[unique]
        pub name: String,
    }

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Task {
        #[primary_key]
        pub id: Id,
        /// A board's tasks no longer go with it: it cannot be deleted while it has some.
        #[belongs_to(Board, on_delete = restrict)]
        #[column(renamed_from = "project_id")]
        pub board_id: Id,
        #[index]
        #[column(renamed_from = "owner")]
        pub assignee: String,
    }
}

#[test]
fn renames_keep_the_data_indexes_and_foreign_keys_and_a_later_change_finds_them() {
    for lab in Lab::all() {
        let l = fresh(&lab);
        l.generate(
            &Schema::new().model::<v1::Project>().model::<v1::Task>(),
            "projects",
            false,
        )
        .unwrap();
        let store = l.up().unwrap();
        let project = store
            .save(v1::Project {
                name: "launch".into(),
                ..Default::default()
            })
            .unwrap();
        let task = store
            .save(v1::Task {
                project_id: project.id,
                owner: "ada".into(),
                ..Default::default()
            })
            .unwrap();
        drop(store);
        let before = l.fingerprint();

        // Renames are lossless: written without being allowed to lose anything.
        let v2 = Schema::new().model::<v2::Board>().model::<v2::Task>();
        let dir = l.generate(&v2, "boards", false).unwrap();
        let up = std::fs::read_to_string(dir.join("up.sql")).unwrap();
        assert!(
            !up.contains("DROP TABLE") && !up.contains("DROP COLUMN"),
            "{up}"
        );
        assert!(up.contains("RENAME"), "{up}");
        let store = l.up().unwrap();
        let board: v2::Board = store.get(&project.id).unwrap();
        assert_eq!(board.name, "launch");
        let moved: v2::Task = store.get(&task.id).unwrap();
        assert_eq!(
            (moved.board_id, moved.assignee.as_str()),
            (project.id, "ada")
        );
        // The unique constraint and the foreign key came along, under their new names.
        assert!(store
            .save(v2::Board {
                name: "launch".into(),
                ..Default::default()
            })
            .is_err());
        assert!(store
            .save(v2::Task {
                board_id: Id::new(),
                ..Default::default()
            })
            .is_err());
        let indexes = match l.dialect {
            Dialect::Sqlite => "SELECT name AS v FROM sqlite_master WHERE type = 'index' AND name LIKE 'idx_%' ORDER BY name",
            _ => "SELECT indexname::text AS v FROM pg_indexes WHERE schemaname = current_schema() AND indexname LIKE 'idx_%' ORDER BY 1",
        };
        assert_eq!(
            l.rows(indexes),
            ["idx_tasks_assignee", "idx_tasks_board_id"]
        );
        if l.dialect == Dialect::Postgres {
            let constraints = l.rows(
                "SELECT conname::text AS v FROM pg_constraint \
                 WHERE connamespace = current_schema()::regnamespace \
                   AND conname NOT LIKE '__diesel%' ORDER BY 1",
            );
            assert_eq!(
                constraints,
                [
                    "boards_name_key",
                    "boards_pkey",
                    "tasks_board_id_fkey",
                    "tasks_pkey"
                ]
            );
        }
        drop(store);
        // The attributes may stay: nothing more to generate.
        assert!(l.migrations().plan(&v2).unwrap().is_none());
        l.round_trip(&before);

        // A later change of the renamed foreign key finds it by its new name.
        let v3 = Schema::new().model::<v3::Board>().model::<v3::Task>();
        l.generate(&v3, "restrict_tasks", true).unwrap();
        let store = l.up().unwrap();
        assert!(
            store.delete_by_id::<v3::Board>(&project.id).is_err(),
            "its task now restricts the delete"
        );
        assert_eq!(store.count::<v3::Task>().unwrap(), 1);
    }
}

mod articles_v1 {
    use datastore::prelude::*;

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Article {
        #[primary_key]
        pub id: Id,
        pub title: String,
    }
}

/// An article whose title became its headline, and a new, optional title.
mod articles_v2 {
    use datastore::prelude::*;

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Article {
        #[primary_key]
        pub id: Id,
        #[column(renamed_from = "title")]
        pub headline: String,
        pub title: Option<String>,
    }
}

/// A table named `name`, shaped as `items` with a text column `title`.
fn titled(name: &'static str) -> Table {
    Table {
        name: name.into(),
        ..items(vec![column("title", ColumnType::Text)])
    }
}

/// A rename whose previous name a new column or table takes is made first, then the new one
/// added: the values stay with the renamed one, not with the new one. Renames in a chain (`b`
/// renamed to `c` and `a` to `b`) are made in the order that frees each name first. The
/// declarations may stay: nothing more to generate.
#[test]
fn a_rename_whose_previous_name_a_new_column_or_table_takes_is_made_first() {
    for lab in Lab::all() {
        let l = fresh(&lab);
        l.generate(
            &Schema::new().model::<articles_v1::Article>(),
            "articles",
            false,
        )
        .unwrap();
        let store = l.up().unwrap();
        let article = store
            .save(articles_v1::Article {
                title: "launch".into(),
                ..Default::default()
            })
            .unwrap();
        drop(store);
        let before = l.fingerprint();
        let v2 = Schema::new().model::<articles_v2::Article>();
        l.generate(&v2, "headline", false).unwrap();
        let store = l.up().unwrap();
        let moved: articles_v2::Article = store.get(&article.id).unwrap();
        assert_eq!(
            (moved.headline.as_str(), moved.title),
            ("launch", None),
            "{:?}",
            l.dialect
        );
        drop(store);
        assert!(l.migrations().plan(&v2).unwrap().is_none());
        l.round_trip(&before);

        // A table renamed while a new table takes its name.
        let l = fresh(&lab);
        l.generate(&schema(titled("drafts")), "drafts", false)
            .unwrap();
        drop(l.up().unwrap());
        l.execute("INSERT INTO drafts (id, title) VALUES (1, 'a');")
            .unwrap();
        let before = l.fingerprint();
        let published = Schema::new()
            .table(titled("posts"))
            .table(titled("drafts"))
            .renamed_table("drafts", "posts");
        l.generate(&published, "published", false).unwrap();
        drop(l.up().unwrap());
        assert_eq!(
            l.rows("SELECT title AS v FROM posts"),
            ["a"],
            "{:?}",
            l.dialect
        );
        assert!(l.rows("SELECT title AS v FROM drafts").is_empty());
        assert!(l.migrations().plan(&published).unwrap().is_none());
        l.round_trip(&before);

        // A chain: `title` becomes `headline` while `draft` becomes `title`.
        let l = fresh(&lab);
        let drafted = items(vec![
            column("draft", ColumnType::Text),
            column("title", ColumnType::Text),
        ]);
        l.generate(&schema(drafted), "drafted", false).unwrap();
        drop(l.up().unwrap());
        l.execute("INSERT INTO items (id, draft, title) VALUES (1, 'd', 't');")
            .unwrap();
        let before = l.fingerprint();
        let chained = schema(items(vec![
            column("title", ColumnType::Text),
            column("headline", ColumnType::Text),
        ]))
        .renamed_column("items", "draft", "title")
        .renamed_column("items", "title", "headline");
        l.generate(&chained, "chained", false).unwrap();
        drop(l.up().unwrap());
        assert_eq!(
            l.rows("SELECT title || '/' || headline AS v FROM items"),
            ["d/t"],
            "{:?}",
            l.dialect
        );
        assert!(l.migrations().plan(&chained).unwrap().is_none());
        l.round_trip(&before);
    }
}

mod contacts_v1 {
    use datastore::prelude::*;

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Contact {
        #[primary_key]
        pub id: Id,
        pub first_name: String,
        pub last_name: String,
    }
}

/// A contact whose two names are declared renamed to each other.
mod contacts_swapped {
    use datastore::prelude::*;

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Contact {
        #[primary_key]
        pub id: Id,
        #[column(renamed_from = "last_name")]
        pub first_name: String,
        #[column(renamed_from = "first_name")]
        pub last_name: String,
    }
}

/// Renames no order of renames makes, which the tables the migrations left cannot tell from
/// renames made already (two names swapped, two renames from one name, a rename to a name the
/// table keeps while the model drops the previous one), are refused as the migration is
/// planned, by `generate` (even allowed to lose data) and by `check`, naming the table and
/// each rename; nothing is written, and the data stays where it was.
#[test]
fn renames_that_cannot_be_made_one_by_one_are_refused_naming_them() {
    let swapped_tables = Schema::new()
        .table(titled("drafts"))
        .table(titled("posts"))
        .renamed_table("drafts", "posts")
        .renamed_table("posts", "drafts");
    let twice = schema(items(vec![
        column("headline", ColumnType::Text),
        column("heading", ColumnType::Text),
    ]))
    .renamed_column("items", "title", "headline")
    .renamed_column("items", "title", "heading");
    let cases = vec![
        (
            Schema::new().model::<contacts_v1::Contact>(),
            Schema::new().model::<contacts_swapped::Contact>(),
            Some("contacts"),
            vec![("last_name", "first_name"), ("first_name", "last_name")],
        ),
        (
            Schema::new().table(titled("drafts")).table(titled("posts")),
            swapped_tables,
            None,
            vec![("drafts", "posts"), ("posts", "drafts")],
        ),
        (
            schema(titled("items")),
            twice,
            Some("items"),
            vec![("title", "headline"), ("title", "heading")],
        ),
    ];
    for lab in Lab::all() {
        for (before, after, table, renames) in &cases {
            let l = fresh(&lab);
            l.generate(before, "before", false).unwrap();
            drop(l.up().unwrap());
            let written = || std::fs::read_dir(l.migrations().dir()).unwrap().count();
            let (files, recorded) = (written(), l.migrations().recorded_schema().unwrap());
            let refused = |result: datastore::Result<()>| match result {
                Err(Error::Migration {
                    failure: MigrationFailure::InvalidSchema(problem),
                    ..
                }) => {
                    let message = problem.to_string();
                    for (from, to) in renames {
                        assert!(message.contains(&format!("{from} -> {to}")), "{message}");
                    }
                    if let Some(table) = table {
                        assert!(message.contains(table), "{message}");
                    }
                    let owned = |(from, to): &(&str, &str)| (from.to_string(), to.to_string());
                    assert_eq!(
                        *problem,
                        SchemaProblem::UnclearRenames {
                            table: table.map(str::to_owned),
                            renames: renames.iter().map(owned).collect(),
                        }
                    );
                }
                other => panic!("{renames:?}: expected the renames refused, got {other:?}"),
            };
            refused(
                l.migrations()
                    .allow_lossy(true)
                    .generate(after, "after")
                    .map(drop),
            );
            refused(l.migrations().check(after));
            assert_eq!(written(), files, "nothing written");
            assert_eq!(l.migrations().recorded_schema().unwrap(), recorded);
        }
    }
}

/// A rename made already whose previous name a newer column took again: the model that keeps
/// its `renamed_from` and now drops that newer column drops it, a lossy change stopped until
/// allowed, the renamed column's values kept.
#[test]
fn a_rename_made_already_whose_previous_name_was_taken_again_drops_it_as_lossy() {
    let both = items(vec![
        column("title", ColumnType::Text),
        column("headline", ColumnType::Text),
    ]);
    let dropped = schema(items(vec![column("headline", ColumnType::Text)]))
        .renamed_column("items", "title", "headline");
    for lab in Lab::all() {
        let l = fresh(&lab);
        change(
            &l,
            schema(both.clone()),
            "INSERT INTO items (id, title, headline) VALUES (1, 'newer', 'renamed')",
            &dropped,
            true,
        );
        assert_eq!(l.rows("SELECT headline AS v FROM items"), ["renamed"]);
    }
}

/// Names longer than PostgreSQL's 63 bytes: the constraints it names itself (cut from the
/// table's and the column's names, keeping `_fkey`, `_key`, `_check`) are found by a later
/// change, both ways.
#[test]
fn constraints_of_long_names_are_found_by_a_later_change() {
    let long = |table: Table| {
        let name = "a_table_whose_name_alone_takes_forty_bytes";
        let rename = |column: &Name| match column.as_ref() {
            "parent_id" => "the_parent_this_row_belongs_to_in_the_tree_id".into(),
            "n" => "a_stage_column_whose_name_is_not_short_either".into(),
            other => other.to_owned().into(),
        };
        let mut columns = table.columns.to_vec();
        for column in &mut columns {
            column.name = rename(&column.name);
        }
        let mut foreign_keys = table.foreign_keys.to_vec();
        for fk in &mut foreign_keys {
            fk.column = rename(&fk.column);
        }
        Table {
            name: name.into(),
            columns: columns.into(),
            foreign_keys: foreign_keys.into(),
            ..table
        }
    };
    let version = |on_delete, unique, variants: &[&'static str]| {
        let mut table = items_of_parents(true);
        let mut columns = table.columns.to_vec();
        columns[1].unique = unique;
        columns.push(column("n", stage(variants)));
        table.columns = columns.into();
        let mut foreign_keys = table.foreign_keys.to_vec();
        foreign_keys[0].on_delete = on_delete;
        table.foreign_keys = foreign_keys.into();
        Schema::new().table(parents()).table(long(table))
    };
    for lab in Lab::all() {
        let l = fresh(&lab);
        l.generate(
            &version(OnDelete::Cascade, true, &["Draft", "Done"]),
            "before",
            false,
        )
        .unwrap();
        drop(l.up().unwrap());
        let fp = l.fingerprint();
        let after = version(OnDelete::Restrict, false, &["Draft", "Done", "Gone"]);
        l.generate(&after, "after", true).unwrap();
        drop(l.up().unwrap());
        l.execute(
            "INSERT INTO parents (id) VALUES (1); \
             INSERT INTO a_table_whose_name_alone_takes_forty_bytes \
             (id, the_parent_this_row_belongs_to_in_the_tree_id, \
              a_stage_column_whose_name_is_not_short_either) VALUES (1, 1, 'Gone'), (2, 1, 'Draft');",
        )
        .unwrap();
        assert!(
            l.execute("DELETE FROM parents;").is_err(),
            "the foreign key restricts now"
        );
        l.execute("DELETE FROM a_table_whose_name_alone_takes_forty_bytes WHERE id = 1;")
            .unwrap();
        l.round_trip(&fp);
    }
}

/// Two long columns of a long table whose constraints PostgreSQL names alike (it cuts both
/// names to the same, and adds a digit to the second): a change of the second column's
/// constraint changes that one, and not the first's.
#[test]
fn a_change_of_one_of_two_alike_named_constraints_changes_that_one() {
    let ledger = |primary: &[&'static str], secondary: &[&'static str]| {
        let table = Table {
            name: "customer_subscription_billing_adjustments".into(),
            ..items(vec![
                column(
                    "adjustment_reason_category_for_primary_ledger",
                    stage(primary),
                ),
                column(
                    "adjustment_reason_category_for_secondary_ledger",
                    stage(secondary),
                ),
            ])
        };
        Schema::new().table(table)
    };
    for lab in Lab::all() {
        let l = fresh(&lab);
        l.generate(&ledger(&["a"], &["a"]), "before", false)
            .unwrap();
        drop(l.up().unwrap());
        let fp = l.fingerprint();
        l.generate(&ledger(&["a"], &["a", "z"]), "after", false)
            .unwrap();
        drop(l.up().unwrap());
        let insert = |primary: &str, secondary: &str| {
            l.execute(&format!(
                "INSERT INTO customer_subscription_billing_adjustments (id, \
                 adjustment_reason_category_for_primary_ledger, \
                 adjustment_reason_category_for_secondary_ledger) \
                 VALUES ((SELECT count(*) FROM customer_subscription_billing_adjustments), \
                 '{primary}', '{secondary}');"
            ))
        };
        insert("a", "z").expect("the secondary column takes 'z' now");
        assert!(
            insert("z", "a").is_err(),
            "the primary column still refuses it"
        );
        l.execute("DELETE FROM customer_subscription_billing_adjustments;")
            .unwrap();
        l.round_trip(&fp);
    }
}

/// Two new tables referencing each other (an author's favourite book, a book's author):
/// PostgreSQL needs the referenced table to exist, so one foreign key is added once both do.
#[test]
fn tables_referencing_each_other_are_created_and_dropped() {
    let fk = |column: &'static str, references: &'static str| ForeignKey {
        column: column.into(),
        references: references.into(),
        referenced_column: "id".into(),
        on_delete: OnDelete::Restrict,
        on_update_cascade: false,
    };
    let table = |name: &'static str, column: Column, key: ForeignKey| Table {
        name: name.into(),
        foreign_keys: vec![key].into(),
        ..items(vec![column])
    };
    let cycle = Schema::new()
        .table(table(
            "authors",
            nullable("favourite_id", ColumnType::BigInt),
            fk("favourite_id", "books"),
        ))
        .table(table(
            "books",
            column("author_id", ColumnType::BigInt),
            fk("author_id", "authors"),
        ));
    let linked = |l: &Lab| {
        l.execute(
            "INSERT INTO authors (id) VALUES (1); \
             INSERT INTO books (id, author_id) VALUES (2, 1); \
             UPDATE authors SET favourite_id = 2 WHERE id = 1;",
        )
        .unwrap();
        assert!(
            l.execute("UPDATE authors SET favourite_id = 3;").is_err(),
            "authors.favourite_id references books"
        );
        assert!(
            l.execute("INSERT INTO books (id, author_id) VALUES (3, 9);")
                .is_err(),
            "books.author_id references authors"
        );
    };
    for lab in Lab::all() {
        let l = fresh(&lab);
        l.generate(&cycle, "cycle", false).unwrap();
        drop(l.up().unwrap());
        linked(&l);
        // Down drops both, rows and all.
        l.round_trip(&[]);

        // Both dropped in one migration, rows and all, and back.
        let both = l.fingerprint();
        linked(&l);
        l.generate(&Schema::new(), "gone", true).unwrap();
        drop(l.up().unwrap());
        assert!(l.execute("SELECT 1 FROM authors;").is_err(), "dropped");
        l.down();
        assert_eq!(l.fingerprint(), both, "down brings both back");
        linked(&l);
        drop(l.up().unwrap());
        assert!(l.execute("SELECT 1 FROM books;").is_err(), "dropped again");

        // The same tables made without migrations, twice (the second time, nothing to do).
        let l = fresh(&lab);
        let mut conn = l.conn();
        cycle.create_all(&mut conn).unwrap();
        cycle.create_all(&mut conn).unwrap();
        linked(&l);

        // One side there already: `authors` gains its reference to a new `books`.
        let l = fresh(&lab);
        let authors = Table {
            name: "authors".into(),
            ..items(vec![])
        };
        l.generate(&Schema::new().table(authors), "authors", false)
            .unwrap();
        drop(l.up().unwrap());
        let before = l.fingerprint();
        l.generate(&cycle, "cycle", false).unwrap();
        drop(l.up().unwrap());
        linked(&l);
        l.execute(
            "UPDATE authors SET favourite_id = NULL; DELETE FROM books; DELETE FROM authors;",
        )
        .unwrap();
        l.round_trip(&before);
    }
}

/// A table whose rows reference each other with `ON DELETE RESTRICT` (a category and its
/// parent), dropped with its rows: by a migration (its model removed), and by the `down` of
/// the migration that created it. SQLite deletes a dropped table's rows first, and a
/// restricting reference refuses the parent's delete at once: it waits for the commit, when
/// the table is gone.
#[test]
fn a_table_referencing_itself_with_restrict_is_dropped_with_its_rows() {
    let categories = Table {
        name: "categories".into(),
        foreign_keys: vec![ForeignKey {
            column: "parent_id".into(),
            references: "categories".into(),
            referenced_column: "id".into(),
            on_delete: OnDelete::Restrict,
            on_update_cascade: false,
        }]
        .into(),
        ..items(vec![nullable("parent_id", ColumnType::BigInt)])
    };
    let nested = "INSERT INTO categories (id) VALUES (1); \
                  INSERT INTO categories (id, parent_id) VALUES (2, 1);";
    let gone = |l: &Lab| l.execute("SELECT 1 FROM categories;").is_err();
    for lab in Lab::all() {
        let l = fresh(&lab);
        l.generate(&schema(categories.clone()), "categories", false)
            .unwrap();
        drop(l.up().unwrap());
        l.execute(nested).unwrap();
        assert!(
            l.execute("DELETE FROM categories WHERE id = 1;").is_err(),
            "the child restricts its parent's delete"
        );
        let fp = l.fingerprint();
        l.generate(&Schema::new(), "gone", true).unwrap();
        drop(l.up().unwrap());
        assert!(gone(&l), "{:?}: dropped", l.dialect);
        l.down();
        assert_eq!(l.fingerprint(), fp, "down brings it back");
        l.execute(nested).unwrap();
        // The creating migration's `down`.
        l.down();
        assert!(gone(&l), "{:?}: dropped by down", l.dialect);
    }
}

/// A table renamed only in the case of its letters (`Users` to `users`: a table described by
/// hand, as a model's name is lowercase), both ways. SQLite, whose names ignore ASCII case,
/// finds the new name taken by the table itself: the rename goes through another name. The
/// rows, the indexes, a trigger, the table's foreign key and the one referencing it are kept.
#[test]
fn a_rename_changing_only_the_case_of_a_tables_name_keeps_it() {
    let teams = Table {
        name: "teams".into(),
        ..items(vec![])
    };
    let reference = |column: &'static str, references: &'static str| ForeignKey {
        column: column.into(),
        references: references.into(),
        referenced_column: "id".into(),
        on_delete: OnDelete::Restrict,
        on_update_cascade: false,
    };
    let users = |name: &'static str| Table {
        name: name.into(),
        foreign_keys: vec![reference("team_id", "teams")].into(),
        ..items(vec![column("team_id", ColumnType::BigInt)])
    };
    let posts = |users: &'static str| Table {
        name: "posts".into(),
        foreign_keys: vec![reference("author_id", users)].into(),
        ..items(vec![column("author_id", ColumnType::BigInt)])
    };
    let before = Schema::new()
        .table(teams.clone())
        .table(users("Users"))
        .table(posts("Users"));
    let after = Schema::new()
        .table(teams)
        .table(users("users"))
        .table(posts("users"))
        .renamed_table("Users", "users");
    for lab in Lab::all() {
        let l = fresh(&lab);
        l.generate(&before, "before", false).unwrap();
        drop(l.up().unwrap());
        l.execute(
            "INSERT INTO teams (id) VALUES (1); \
             INSERT INTO \"Users\" (id, team_id) VALUES (2, 1); \
             INSERT INTO posts (id, author_id) VALUES (3, 2);",
        )
        .unwrap();
        // A trigger written by hand (SQLite: PostgreSQL's rename is a plain one).
        if l.dialect == Dialect::Sqlite {
            l.execute(
                "CREATE TRIGGER users_touched AFTER UPDATE ON \"Users\" \
                 BEGIN UPDATE posts SET id = id; END;",
            )
            .unwrap();
        }
        let fp = l.fingerprint();
        l.generate(&after, "lowercase", false).unwrap();
        drop(l.up().unwrap());
        assert_eq!(
            l.rows("SELECT CAST(team_id AS TEXT) AS v FROM \"users\""),
            ["1"]
        );
        if l.dialect == Dialect::Sqlite {
            assert_eq!(
                l.rows("SELECT tbl_name AS v FROM sqlite_master WHERE type = 'trigger'"),
                ["users"]
            );
        }
        let indexes = match l.dialect {
            Dialect::Sqlite => "SELECT name AS v FROM sqlite_master WHERE type = 'index' AND name LIKE 'idx_%' ORDER BY name",
            _ => "SELECT indexname::text AS v FROM pg_indexes WHERE schemaname = current_schema() AND indexname LIKE 'idx_%' ORDER BY 1",
        };
        assert_eq!(
            l.rows(indexes),
            ["idx_posts_author_id", "idx_users_team_id"]
        );
        assert!(
            l.execute("DELETE FROM \"users\";").is_err(),
            "posts.author_id references users"
        );
        assert!(
            l.execute("INSERT INTO \"users\" (id, team_id) VALUES (4, 9);")
                .is_err(),
            "users.team_id references teams"
        );
        assert!(l.migrations().plan(&after).unwrap().is_none());
        l.round_trip(&fp);
    }
}

/// A catalogue whose categories were keyed by their code, its products pointing at them by it.
mod catalog_v1 {
    use datastore::prelude::*;

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Category {
        #[primary_key]
        pub code: String,
        pub name: String,
    }

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Product {
        #[primary_key]
        pub id: Id,
        #[belongs_to(Category)]
        pub category_code: String,
        pub name: String,
    }
}

/// The catalogue rekeyed: categories by an integer the database assigns, their code kept
/// unique; products point at them by it, not yet known (their code dropped).
mod catalog_v2 {
    use datastore::prelude::*;

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Category {
        #[primary_key]
        pub id: i64,
        #[unique]
        pub code: String,
        pub name: String,
    }

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Product {
        #[primary_key]
        pub id: Id,
        #[belongs_to(Category)]
        pub category_id: Option<i64>,
        pub name: String,
    }
}

/// The catalogue rekeyed, the categories' code dropped.
mod catalog_v3 {
    use datastore::prelude::*;

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Category {
        #[primary_key]
        pub id: i64,
        pub name: String,
    }

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Product {
        #[primary_key]
        pub id: Id,
        #[belongs_to(Category)]
        pub category_id: Option<i64>,
        pub name: String,
    }
}

/// A parent whose key changes (a new column, the old one kept unique or dropped) while a
/// child's foreign key points at the old one: the child lets go of the old key before the
/// parent changes, and its new foreign key points at the new key after; `down` goes back the
/// same way. The parent's rows keep their values, each with a key of its own. PostgreSQL
/// refused to drop the key (or its column) the child's foreign key still depended on.
#[test]
fn a_parent_rekeyed_while_a_child_points_at_its_key_migrates_both_ways() {
    let v1 = Schema::new()
        .model::<catalog_v1::Category>()
        .model::<catalog_v1::Product>();
    let code_kept = Schema::new()
        .model::<catalog_v2::Category>()
        .model::<catalog_v2::Product>();
    let code_dropped = Schema::new()
        .model::<catalog_v3::Category>()
        .model::<catalog_v3::Product>();
    for lab in Lab::all() {
        for (after, code_stays) in [(&code_kept, true), (&code_dropped, false)] {
            let l = fresh(&lab);
            let case = format!("{:?} lab, code kept: {code_stays}", l.dialect);
            l.generate(&v1, "catalog", false).unwrap();
            let store = l.up().unwrap();
            for code in ["tools", "toys"] {
                store
                    .save(catalog_v1::Category {
                        code: code.into(),
                        name: code.to_uppercase(),
                    })
                    .unwrap();
            }
            store
                .save(catalog_v1::Product {
                    category_code: "tools".into(),
                    name: "hammer".into(),
                    ..Default::default()
                })
                .unwrap();
            drop(store);
            let before = l.fingerprint();

            // Each category gets a key of its own, and its code stays unique: only the codes
            // dropped are lost.
            let mut lossy = vec!["drops column products.category_code and its values"];
            if !code_stays {
                lossy.insert(0, "drops column categories.code and its values");
            }
            let plan = l.migrations().plan(after).unwrap().expect("a change");
            assert_eq!(plan.lossy, lossy, "{case}");
            assert!(
                matches!(
                    l.generate(after, "rekeyed", false),
                    Err(Error::LossyMigration { .. })
                ),
                "{case}: written unasked"
            );
            l.generate(after, "rekeyed", true).unwrap();
            let store = l.up().unwrap_or_else(|e| panic!("{case}: {e}"));

            let categories = store.all::<catalog_v3::Category>().unwrap();
            let mut names: Vec<_> = categories.iter().map(|c| c.name.as_str()).collect();
            names.sort();
            assert_eq!(names, ["TOOLS", "TOYS"], "{case}");
            assert_ne!(categories[0].id, categories[1].id, "{case}: a key each");
            let [product] = &store.all::<catalog_v3::Product>().unwrap()[..] else {
                panic!("{case}: one product")
            };
            assert_eq!(
                (product.name.as_str(), product.category_id),
                ("hammer", None)
            );
            // The new foreign key holds: a product points at a category by its new key, and at
            // no key that no category has.
            store
                .save(catalog_v3::Product {
                    category_id: Some(categories[0].id),
                    ..product.clone()
                })
                .unwrap();
            let nowhere = store.save(catalog_v3::Product {
                category_id: Some(categories[0].id + categories[1].id),
                ..product.clone()
            });
            assert!(
                matches!(&nowhere, Err(Error::Constraint(v)) if v.kind == ConstraintKind::ForeignKey),
                "{case}: {nowhere:?}"
            );
            if code_stays {
                let tools = store.save(catalog_v2::Category {
                    code: "tools".into(),
                    name: "Other tools".into(),
                    ..Default::default()
                });
                assert!(
                    matches!(&tools, Err(Error::Constraint(v)) if v.kind == ConstraintKind::Unique),
                    "{case}: the code stays unique: {tools:?}"
                );
            }
            drop(store);
            // `down` gives back no product a category code: it runs on empty tables.
            l.execute("DELETE FROM products; DELETE FROM categories;")
                .unwrap();
            l.round_trip(&before);
        }
    }
}

/// A parent rekeyed by a new key the database assigns, its old key kept unique, while a child
/// that does not change points at the old key: the child's foreign key is taken off while the
/// parent changes and put back after, on the old key's own unique constraint now (PostgreSQL
/// refused to drop the key constraint it depended on). Nothing is lost.
#[test]
fn a_parent_rekeyed_under_a_child_pointing_at_its_old_key_keeps_the_reference() {
    let parents_by = |key: &'static str| {
        let mut id = column("id", ColumnType::BigInt);
        id.generated = true;
        let mut code = column("code", ColumnType::Text);
        code.unique = key == "id";
        Table {
            name: "parents".into(),
            primary_key: vec![Name::from(key)].into(),
            columns: match key {
                "id" => vec![id, code],
                _ => vec![code],
            }
            .into(),
            foreign_keys: vec![].into(),
            indexes: vec![].into(),
        }
    };
    let child = {
        let mut table = items(vec![column("parent_code", ColumnType::Text)]);
        table.foreign_keys = vec![ForeignKey {
            column: "parent_code".into(),
            references: "parents".into(),
            referenced_column: "code".into(),
            on_delete: OnDelete::Cascade,
            on_update_cascade: false,
        }]
        .into();
        table
    };
    for lab in Lab::all() {
        let l = fresh(&lab);
        let before = change(
            &l,
            schema(parents_by("code")).table(child.clone()),
            "INSERT INTO parents (code) VALUES ('a'), ('b'); \
             INSERT INTO items (id, parent_code) VALUES (1, 'a');",
            &schema(parents_by("id")).table(child.clone()),
            false,
        );
        assert_eq!(
            l.rows("SELECT code AS v FROM parents ORDER BY id"),
            ["a", "b"]
        );
        let refused = l.execute("INSERT INTO items (id, parent_code) VALUES (2, 'c');");
        assert!(refused.is_err(), "{:?} lab: the reference holds", l.dialect);
        l.execute("DELETE FROM parents WHERE code = 'a';").unwrap();
        assert!(
            l.rows("SELECT parent_code AS v FROM items").is_empty(),
            "{:?} lab: the delete cascades",
            l.dialect
        );
        l.round_trip(&before);
    }
}

/// The kinds of change not covered above: each one's classification.
#[test]
fn every_change_is_classified() {
    let fk = |on_delete| ForeignKey {
        column: "owner_id".into(),
        references: "owners".into(),
        referenced_column: "id".into(),
        on_delete,
        on_update_cascade: false,
    };
    let owned = |on_delete| {
        let mut table = items(vec![column("owner_id", ColumnType::BigInt)]);
        table.foreign_keys = vec![fk(on_delete)].into();
        table
    };
    let owners = items(vec![]);
    let owners = Table {
        name: "owners".into(),
        ..owners
    };
    let tmp = tempfile::tempdir().unwrap();
    let migrations = Migrations::new(tmp.path(), Dialect::Sqlite);
    migrations
        .generate(
            &Schema::new()
                .table(owners.clone())
                .table(owned(OnDelete::Cascade)),
            "before",
        )
        .unwrap();
    let plan = |table: Table| {
        migrations
            .plan(&Schema::new().table(owners.clone()).table(table))
            .unwrap()
            .unwrap()
            .lossy
    };
    assert_eq!(
        plan(owned(OnDelete::Restrict)),
        ["changes what deleting a row of owners does to items: ON DELETE Cascade becomes Restrict"]
    );
    let mut rekeyed = owned(OnDelete::Cascade);
    rekeyed.columns = vec![
        Column::new("id", ColumnType::Text, false),
        column("owner_id", ColumnType::BigInt),
    ]
    .into();
    assert_eq!(plan(rekeyed).len(), 1, "a key type change is lossy");
    let dropped = migrations
        .plan(&Schema::new().table(owners))
        .unwrap()
        .unwrap();
    assert_eq!(dropped.lossy, ["drops table items and every row in it"]);
}

/// Index names are the schema's, and PostgreSQL keeps only their first 63 bytes: two foreign
/// keys of a long-named table, whose `idx_<table>_<column>` names share their first 63 bytes,
/// would be one index there (the second `CREATE INDEX` refused, or skipped by `IF NOT
/// EXISTS`). Such a schema is refused on both backends before anything is written, naming
/// both indexes; with a shorter table name it migrates, and each index is there.
#[test]
fn index_names_postgres_would_cut_into_one_are_refused() {
    let reference = |column: &'static str| ForeignKey {
        column: column.into(),
        references: "parents".into(),
        referenced_column: "id".into(),
        on_delete: OnDelete::Cascade,
        on_update_cascade: false,
    };
    let subscriptions = |name: &'static str| Table {
        name: name.into(),
        foreign_keys: vec![reference("parent_id_first"), reference("parent_id_second")].into(),
        ..items(vec![
            column("parent_id_first", ColumnType::BigInt),
            column("parent_id_second", ColumnType::BigInt),
        ])
    };
    let long = "subscriptions_to_the_weekly_newsletter_about_gardens";
    let short = "garden_letter_subscriptions";

    for lab in Lab::all() {
        let refused = schema(parents()).table(subscriptions(long));
        match lab.migrations().generate(&refused, "subscriptions") {
            Err(Error::Migration {
                migration: None,
                failure: MigrationFailure::InvalidSchema(problem),
            }) => match *problem {
                SchemaProblem::IndexNamesCollide { indexes, tables } => {
                    assert_eq!(
                        indexes,
                        [
                            format!("idx_{long}_parent_id_first"),
                            format!("idx_{long}_parent_id_second")
                        ]
                    );
                    assert_eq!(tables, [long, long]);
                }
                other => panic!(
                    "{:?} lab: expected IndexNamesCollide, got {other:?}",
                    lab.dialect
                ),
            },
            other => panic!(
                "{:?} lab: expected the schema refused, got {other:?}",
                lab.dialect
            ),
        }
        assert!(
            lab.migrations().plan(&Schema::new()).unwrap().is_none(),
            "nothing written"
        );
        let mut conn = lab.conn();
        assert!(matches!(
            refused.create_all(&mut conn),
            Err(Error::Migration {
                failure: MigrationFailure::InvalidSchema(_),
                ..
            })
        ));

        let before = lab.fingerprint();
        lab.generate(
            &schema(parents()).table(subscriptions(short)),
            "subscriptions",
            false,
        )
        .unwrap();
        drop(
            lab.up()
                .unwrap_or_else(|e| panic!("{:?} lab: {e}", lab.dialect)),
        );
        let sql = match lab.dialect {
            Dialect::Sqlite => format!(
                "SELECT name AS v FROM sqlite_master WHERE type = 'index' AND tbl_name = '{short}' \
                 AND name NOT LIKE 'sqlite_autoindex%' ORDER BY name"
            ),
            _ => format!(
                "SELECT indexname::text AS v FROM pg_indexes \
                 WHERE schemaname = current_schema() AND tablename = '{short}' \
                 AND indexname NOT LIKE '%_pkey' ORDER BY indexname"
            ),
        };
        assert_eq!(
            lab.rows(&sql),
            [
                format!("idx_{short}_parent_id_first"),
                format!("idx_{short}_parent_id_second")
            ],
            "{:?} lab",
            lab.dialect
        );
        lab.round_trip(&before);
    }
}
