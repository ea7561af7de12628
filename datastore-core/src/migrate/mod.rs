//! Migrations generated from the models.
//!
//! A [`Schema`] is the set of models an application stores. [`Migrations`] is a folder of
//! ordinary Diesel migrations (`<version>_<name>/up.sql` and `down.sql`, the layout the diesel
//! CLI runs too) plus `schema.json`, the schema those migrations produce. Comparing the models
//! with that recorded schema gives the exact change to write as the next migration
//! ([`Migrations::generate`]), or the drift a test reports ([`Migrations::check`]).
//!
//! ```
//! # use datastore::prelude::*;
//! # use datastore_doc_models::{Note, notes};
//! use datastore::migrate::Migrations;
//! use datastore::schema::Dialect;
//!
//! # fn main() -> datastore::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let folder = Migrations::new(dir.path(), Dialect::Sqlite);
//! let schema = Schema::new().model::<Note>();
//! assert!(folder.check(&schema).is_err()); // no migration creates `notes` yet
//! folder.generate(&schema, "create_notes")?;
//! folder.check(&schema)?; // the folder now brings a database to the models
//! # Ok(())
//! # }
//! ```

#[cfg(feature = "cli")]
mod cli;
mod diff;
mod embedded;
mod stage;

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

#[cfg(feature = "cli")]
pub use cli::Cli;
pub use diff::{SchemaChange, UnfilledColumn};
pub use embedded::BackendMigrations;
pub(crate) use stage::Staged;

use crate::schema::Schema;
use crate::schema::ddl::Dialect;
use crate::{Error, Result};

const RECORDED_SCHEMA: &str = "schema.json";

/// A folder of generated migrations for one SQL dialect, such as `migrations/sqlite`.
///
/// ```no_run
/// use datastore::prelude::*;
/// use datastore::migrate::Migrations;
/// # use datastore_doc_models::{Note, notes};
///
/// # fn main() -> datastore::Result<()> {
/// let schema = Schema::new().model::<Note>();
/// let migrations = Migrations::new("migrations/sqlite", Dialect::Sqlite);
/// if let Some(dir) = migrations.generate(&schema, "add_notes")? {
///     println!("wrote {}", dir.display());
/// }
/// migrations.check(&schema)?; // now in sync
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Migrations {
    dir: PathBuf,
    dialect: Dialect,
    allow_lossy: bool,
}

/// A migration to be written: the changes, and their SQL both ways.
///
/// ```
/// # use datastore::prelude::*;
/// # use datastore_doc_models::{Note, notes};
/// use datastore::migrate::Migrations;
///
/// # fn main() -> datastore::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let plan = Migrations::new(dir.path(), Dialect::Sqlite)
///     .plan(&Schema::new().model::<Note>())?
///     .expect("a migration is needed");
/// assert!(plan.up.starts_with(r#"CREATE TABLE "notes""#));
/// assert_eq!(plan.down.trim(), r#"DROP TABLE "notes";"#);
/// assert!(!plan.outside_transaction && plan.lossy.is_empty() && plan.missing_defaults.is_empty());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Migration {
    /// What changes, in the order applied.
    pub changes: Vec<SchemaChange>,
    /// `up.sql`.
    pub up: String,
    /// `down.sql`.
    pub down: String,
    /// Whether it must run outside a transaction (it rebuilds a table, which needs foreign-key
    /// enforcement off; it then manages its own transaction).
    pub outside_transaction: bool,
    /// What it may lose or refuse ([`SchemaChange::losses`]), each marked `-- LOSSY:` in `up`:
    /// [`Migrations::generate`] writes it only when told to
    /// ([`Migrations::allow_lossy`]).
    pub lossy: Vec<String>,
    /// The columns it would fill with invented values ([`SchemaChange::missing_defaults`]):
    /// [`Migrations::generate`] never writes it; declare a default.
    pub missing_defaults: Vec<UnfilledColumn>,
}

/// The difference between the models and their migrations: the migration that is missing.
///
/// ```
/// # use datastore::prelude::*;
/// # use datastore_doc_models::{Note, notes};
/// use datastore::migrate::Migrations;
///
/// # fn main() -> datastore::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let folder = Migrations::new(dir.path(), Dialect::Sqlite);
/// let drift = folder.drift(&Schema::new().model::<Note>())?.expect("no migration yet");
/// assert!(drift.missing.up.contains("CREATE TABLE \"notes\""));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Drift {
    /// The folder whose migrations are behind.
    pub dir: PathBuf,
    /// The migration that would bring them up to date.
    pub missing: Migration,
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "the models and the migrations in {} differ:",
            self.dir.display()
        )?;
        for change in &self.missing.changes {
            writeln!(f, "  {change}")?;
        }
        writeln!(f, "the missing migration's up.sql would be:")?;
        for line in self.missing.up.lines() {
            writeln!(f, "  | {line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Drift {}

/// What failed in a migration: the data of [`Error::Migration`].
///
/// ```
/// use datastore::migrate::{MigrationFailure, Migrations};
/// use datastore::schema::Dialect;
/// use datastore::{Error, Schema};
///
/// let dir = tempfile::tempdir().unwrap();
/// let folder = Migrations::new(dir.path(), Dialect::Sqlite);
/// match folder.generate(&Schema::new(), "not a name!") {
///     Err(Error::Migration { failure: MigrationFailure::Name(name), .. }) => {
///         assert_eq!(name, "not a name!")
///     }
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrationFailure {
    /// The models changed and no migration was generated for it ([`Migrations::check`]).
    #[error("{0}")]
    Drift(Box<Drift>),
    /// The folder's recorded schema (`schema.json`) cannot be read as one.
    #[error("{path}: not a recorded schema: {message}")]
    SchemaFile {
        /// The file's path.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The folder holds migrations but not its recorded schema (`schema.json`, which
    /// [`Migrations::generate`] writes beside them and which is kept with them, in version
    /// control): the schema they produce is unknown, and a migration planned from none would
    /// create every table again. Nothing was written. Restore the file; if it is lost and the
    /// migrations bring a database exactly to the current models, the `schema.json` that
    /// `generate` writes into an empty folder is the one to put back.
    #[error(
        "{} is missing, and its folder holds {migrations} migration(s): the schema they produce \
         is unknown (a migration generated from none would create every table again); restore \
         it, from version control, and generate again",
        path.display()
    )]
    SchemaFileMissing {
        /// The file's path.
        path: PathBuf,
        /// How many migrations the folder holds.
        migrations: usize,
    },
    /// A migration's name is not one: it must be non-empty ASCII letters, digits and
    /// underscores.
    #[error("migration name {0:?} must be non-empty ASCII letters, digits and underscores")]
    Name(String),
    /// The models do not make a schema ([`Schema::validate`]), a recorded schema's defaults are
    /// not values of their columns, or the renames the models declare cannot be made from the
    /// recorded schema: what is wrong, as data.
    #[error(transparent)]
    InvalidSchema(Box<crate::schema::SchemaProblem>),
    /// A table in the database lacks a column of its model: its migrations did not run
    /// (found as observe starts decoding the table's changes).
    #[error("table {table} has no column {column}: run the migrations")]
    MissingColumn {
        /// The table.
        table: String,
        /// The model's column it lacks.
        column: String,
    },
    /// The database a command of the `migrate` command line reads (`Cli`'s `status`, `down`
    /// and `redo`, cargo feature `cli`) does not exist: a SQLite file that is not there, which
    /// those commands do not create (an empty database would list every migration as
    /// pending); `up` creates it. Nothing was created.
    #[error(
        "{}: no such SQLite database (status, down and redo create none; up creates it)",
        path.display()
    )]
    NoDatabase {
        /// The file.
        path: PathBuf,
    },
    /// The migrations given to the store have none for its backend.
    #[error(
        "the store's database is {backend}, and the migrations given have none for it (embed \
         `migrations/{}`)",
        backend.to_lowercase()
    )]
    NoneForBackend {
        /// The store's backend (`SQLite`, `PostgreSQL`).
        backend: &'static str,
    },
    /// A migration that runs with foreign keys off left rows whose foreign key points nowhere,
    /// more in a table than it had before (rows another tool left pointing nowhere are not
    /// counted); nothing of it was kept.
    #[error("it leaves {rows} rows whose foreign key points nowhere; nothing of it was kept")]
    BrokenForeignKeys {
        /// How many rows, beyond those that pointed nowhere before.
        rows: usize,
    },
    /// A migration that changes a column's type met a value the new type cannot hold (text
    /// that is no number, a number out of the new type's range, a name an enum lacks); nothing
    /// of it was kept.
    #[error("{table}.{column} holds values its new type cannot hold; nothing of it was kept")]
    Unconvertible {
        /// The table.
        table: String,
        /// The column whose type the migration changes.
        column: String,
    },
    /// A migration that rebuilds a table (SQLite), or drops a column in place, would leave a
    /// trigger, view or index that uses it broken (it names a column the table no longer
    /// has; on PostgreSQL, which refuses the drop, the first of the objects that depend on the
    /// column); nothing of it was kept.
    #[error("it breaks {kind} {name}: {message}; nothing of it was kept")]
    Breaks {
        /// What it breaks.
        kind: SchemaObject,
        /// The trigger's, view's or index's name.
        name: String,
        /// The database's error on using it (on PostgreSQL, the DETAIL of its refusal, which
        /// lists every object that depends on the column).
        message: String,
    },
    /// Reading the migrations, or running one, failed: Diesel's or the database's error, whose
    /// message this shows and whose own cause is this failure's
    /// [`source`](std::error::Error::source).
    #[error(transparent)]
    Run(Box<dyn std::error::Error + Send + Sync>),
}

/// A database object that uses tables, which a migration can break
/// ([`MigrationFailure::Breaks`]).
///
/// ```
/// use datastore::migrate::SchemaObject;
///
/// assert_eq!(SchemaObject::Trigger.to_string(), "trigger");
/// assert_eq!(SchemaObject::View.to_string(), "view");
/// assert_eq!(SchemaObject::Index.to_string(), "index");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SchemaObject {
    /// A trigger.
    Trigger,
    /// A view.
    View,
    /// An index no model declares (written by hand in a migration), which a SQLite rebuild
    /// drops with its table and the store creates again.
    Index,
}

impl std::fmt::Display for SchemaObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Trigger => "trigger",
            Self::View => "view",
            Self::Index => "index",
        })
    }
}

impl Migrations {
    /// The migrations in `dir`, rendered for `dialect`.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use datastore::migrate::Migrations;
    ///
    /// let folder = Migrations::new("migrations/postgres", Dialect::Postgres);
    /// assert!(folder.dir().ends_with("postgres"));
    /// ```
    pub fn new(dir: impl Into<PathBuf>, dialect: Dialect) -> Self {
        Self {
            dir: dir.into(),
            dialect,
            allow_lossy: false,
        }
    }

    /// Whether [`generate`](Self::generate) writes a migration that may lose data (drops a
    /// table or a column, narrows a type, makes a column `NOT NULL` or unique, adds a unique
    /// column with a default, changes a key or a foreign key: see [`SchemaChange::losses`]). Off by default: such a migration stops
    /// generation with [`Error::LossyMigration`] listing each change.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # #[derive(Model, Debug, Clone, PartialEq, Default)]
    /// # pub struct Note { #[primary_key] pub id: Id, pub text: String }
    /// use datastore::migrate::Migrations;
    ///
    /// # fn main() -> datastore::Result<()> {
    /// # #[derive(Model, Debug, Clone, PartialEq, Default)]
    /// # #[model(table = "notes")]
    /// # pub struct Shorter { #[primary_key] pub id: Id }
    /// let dir = tempfile::tempdir().unwrap();
    /// let folder = Migrations::new(dir.path(), Dialect::Sqlite);
    /// folder.generate(&Schema::new().model::<Note>(), "create_notes")?;
    /// // The model lost its `text` column: dropping it loses data.
    /// let refused = folder.generate(&Schema::new().model::<Shorter>(), "drop_text");
    /// assert!(matches!(refused, Err(datastore::Error::LossyMigration { .. })));
    /// let written = folder.allow_lossy(true).generate(&Schema::new().model::<Shorter>(), "drop_text")?;
    /// assert!(written.is_some());
    /// # Ok(())
    /// # }
    /// ```
    pub fn allow_lossy(mut self, allow: bool) -> Self {
        self.allow_lossy = allow;
        self
    }

    /// The folder.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use datastore::migrate::Migrations;
    ///
    /// let folder = Migrations::new("migrations/sqlite", Dialect::Sqlite);
    /// assert_eq!(folder.dir(), std::path::Path::new("migrations/sqlite"));
    /// ```
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The schema the existing migrations produce (empty when there are none). A folder
    /// holding migrations without its `schema.json` fails with
    /// [`MigrationFailure::SchemaFileMissing`], and so do [`plan`](Self::plan),
    /// [`drift`](Self::drift), [`check`](Self::check) and [`generate`](Self::generate).
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use datastore::migrate::Migrations;
    ///
    /// # fn main() -> datastore::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let folder = Migrations::new(dir.path(), Dialect::Sqlite);
    /// assert!(folder.recorded_schema()?.tables().is_empty()); // no migrations yet
    /// folder.generate(&Schema::new().model::<Note>(), "create_notes")?;
    /// assert_eq!(folder.recorded_schema()?, Schema::new().model::<Note>());
    /// # Ok(())
    /// # }
    /// ```
    pub fn recorded_schema(&self) -> Result<Schema> {
        let path = self.dir.join(RECORDED_SCHEMA);
        let malformed = |message: String| {
            Error::migration(
                None,
                MigrationFailure::SchemaFile {
                    path: path.clone(),
                    message,
                },
            )
        };
        match fs::read_to_string(&path) {
            Ok(json) => {
                let schema: Schema =
                    serde_json::from_str(&json).map_err(|e| malformed(e.to_string()))?;
                // Its defaults go into the SQL of the migrations written from it.
                match schema.invalid_default() {
                    Some(invalid) => Err(malformed(invalid.to_string())),
                    None => Ok(schema),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match self.migration_count() {
                0 => Ok(Schema::new()),
                migrations => Err(Error::migration(
                    None,
                    MigrationFailure::SchemaFileMissing { path, migrations },
                )),
            },
            Err(source) => Err(Error::Io {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// The migration that would bring the folder up to date with `schema`, if one is needed.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use datastore::migrate::Migrations;
    ///
    /// # fn main() -> datastore::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let folder = Migrations::new(dir.path(), Dialect::Sqlite);
    /// let schema = Schema::new().model::<Note>();
    /// assert!(folder.plan(&schema)?.is_some()); // nothing written yet: nothing is written now either
    /// folder.generate(&schema, "create_notes")?;
    /// assert!(folder.plan(&schema)?.is_none()); // up to date
    /// # Ok(())
    /// # }
    /// ```
    pub fn plan(&self, schema: &Schema) -> Result<Option<Migration>> {
        schema.validate()?;
        let changes =
            diff::diff(&self.recorded_schema()?, schema, self.dialect).map_err(|problem| {
                Error::migration(None, MigrationFailure::InvalidSchema(Box::new(problem)))
            })?;
        Ok((!changes.is_empty()).then(|| diff::render(&changes, self.dialect)))
    }

    /// The [`Drift`] between the models and the migrations, if they differ.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use datastore::migrate::Migrations;
    ///
    /// # fn main() -> datastore::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let folder = Migrations::new(dir.path(), Dialect::Sqlite);
    /// let schema = Schema::new().model::<Note>();
    /// let drift = folder.drift(&schema)?.expect("behind");
    /// assert!(drift.to_string().contains(r#"CREATE TABLE "notes""#));
    /// folder.generate(&schema, "create_notes")?;
    /// assert!(folder.drift(&schema)?.is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub fn drift(&self, schema: &Schema) -> Result<Option<Drift>> {
        Ok(self.plan(schema)?.map(|missing| Drift {
            dir: self.dir.clone(),
            missing,
        }))
    }

    /// Fails when the models changed and no migration was generated for it: with
    /// [`Error::Migration`] holding the [`Drift`] ([`MigrationFailure::Drift`]; or the error
    /// that kept the migration from being planned).
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use datastore::migrate::Migrations;
    ///
    /// # fn main() -> datastore::Result<()> {
    /// // In a test of the application: fails when a model changed without a migration.
    /// let dir = tempfile::tempdir().unwrap();
    /// let folder = Migrations::new(dir.path(), Dialect::Sqlite);
    /// let schema = Schema::new().model::<Note>();
    /// assert!(folder.check(&schema).is_err());
    /// folder.generate(&schema, "create_notes")?;
    /// folder.check(&schema)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn check(&self, schema: &Schema) -> Result<()> {
        match self.drift(schema)? {
            Some(drift) => Err(drift.into()),
            None => Ok(()),
        }
    }

    /// Writes the migration that brings the folder up to date with `schema`, as
    /// `<version>_<name>/`, and updates the recorded schema. Writes nothing and returns `None` when
    /// nothing changed.
    ///
    /// The migration is written whole or not at all: its files and the recorded schema are
    /// written into a staging folder inside the folder (`.generate-<random>`, hidden from
    /// Diesel, which skips names starting with `.`), each flushed to the disk, and only then
    /// moved into place, the migration first and `schema.json` last, each with a rename. A
    /// failure (a full disk, a refused permission) leaves nothing new in the folder, the
    /// folder itself not even when it was made for the migration, so generating again writes
    /// exactly one migration. What stays non-atomic: the two renames are two steps, so a
    /// process killed (or a machine stopping) between them leaves the migration in place with
    /// the previous `schema.json` (generating again would write its change a second time:
    /// delete that migration's folder first), and one killed while writing leaves its hidden
    /// staging folder, which nothing reads and which may be deleted. Parent folders made for
    /// the folder stay.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use datastore::migrate::Migrations;
    ///
    /// # fn main() -> datastore::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let folder = Migrations::new(dir.path(), Dialect::Sqlite);
    /// let schema = Schema::new().model::<Note>();
    /// let written = folder.generate(&schema, "create_notes")?.expect("a new migration");
    /// assert!(written.file_name().unwrap().to_str().unwrap().ends_with("_create_notes"));
    /// assert!(written.join("up.sql").exists() && written.join("down.sql").exists());
    /// assert_eq!(folder.generate(&schema, "again")?, None); // nothing changed
    /// # Ok(())
    /// # }
    /// ```
    pub fn generate(&self, schema: &Schema, name: &str) -> Result<Option<PathBuf>> {
        let Some(mut staged) = self.stage(schema, name)? else {
            return Ok(None);
        };
        staged.commit()?;
        Ok(Some(staged.dir()))
    }

    /// What [`generate`](Self::generate) writes, written into a staging folder, not yet in
    /// place ([`Staged::commit`] puts it there); `None` when nothing changed. Everything that
    /// refuses the migration (its name, a lossy change unasked, a missing default) refuses it
    /// before anything is written.
    pub(crate) fn stage(&self, schema: &Schema, name: &str) -> Result<Option<Staged>> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::migration(
                None,
                MigrationFailure::Name(name.to_owned()),
            ));
        }
        let Some(migration) = self.plan(schema)? else {
            return Ok(None);
        };
        if !migration.missing_defaults.is_empty() {
            return Err(Error::MissingDefault {
                columns: migration.missing_defaults,
            });
        }
        if !migration.lossy.is_empty() && !self.allow_lossy {
            return Err(Error::lossy_migration(&migration.changes));
        }
        let mut files = vec![
            ("up.sql", migration.up.as_str()),
            ("down.sql", migration.down.as_str()),
        ];
        if migration.outside_transaction {
            files.push(("metadata.toml", "run_in_transaction = false\n"));
        }
        let recorded = serde_json::to_string_pretty(schema).expect("a schema always serializes");
        Staged::write(&self.dir, self.next_name(name), &files, &(recorded + "\n")).map(Some)
    }

    /// How many migrations the folder holds, as Diesel counts them: its entries that are not
    /// files and whose names do not start with `.` (0 when there is no folder).
    fn migration_count(&self) -> usize {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return 0;
        };
        entries
            .flatten()
            .filter(|entry| {
                !entry.file_name().to_string_lossy().starts_with('.')
                    && entry.metadata().is_ok_and(|m| !m.is_file())
            })
            .count()
    }

    /// `<version>_<name>`, with the version in the diesel CLI's form, later than every
    /// existing one.
    fn next_name(&self, name: &str) -> String {
        let mut latest = String::new();
        if let Ok(entries) = fs::read_dir(&self.dir) {
            for entry in entries.flatten().filter(|e| e.path().is_dir()) {
                let file = entry.file_name().to_string_lossy().into_owned();
                // A staging folder left by a generation that was killed is no migration.
                if file.starts_with('.') {
                    continue;
                }
                if let Some(version) = file.split('_').next() {
                    latest = latest.max(version.to_owned());
                }
            }
        }
        // Versions compare as text; a later second is always found within a few steps of
        // the latest existing one, since both have the same fixed-width form.
        let mut now = chrono::Utc::now();
        if let Ok(latest) = chrono::NaiveDateTime::parse_from_str(&latest, "%Y-%m-%d-%H%M%S") {
            now = now.max(latest.and_utc() + chrono::Duration::seconds(1));
        }
        format!("{}_{name}", now.format("%Y-%m-%d-%H%M%S"))
    }
}

impl From<Drift> for Error {
    fn from(drift: Drift) -> Self {
        Error::migration(None, MigrationFailure::Drift(Box::new(drift)))
    }
}
