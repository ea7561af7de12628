//! The `migrate` command line an application gets for its models (cargo feature `cli`).

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use diesel::backend::Backend;
use diesel::migration::{Migration, MigrationSource};
use diesel::pg::Pg;
use diesel::sqlite::Sqlite;
use diesel_migrations::{FileBasedMigrations, MigrationHarness};

use super::{BackendMigrations, Migrations};
use crate::migrate::MigrationFailure;
use crate::schema::Schema;
use crate::schema::ddl::Dialect;
use crate::{AnyConnection, Error, Result, Store};

/// The command line of an application's migrations: `generate NAME`, `check`, `baseline`,
/// `status`, `up`, `down`, `redo` and `diagram`, with `--help` for each. An application gets it from a
/// two-line binary naming its schema, `src/bin/migrate.rs`:
///
/// ```no_run
/// # use datastore::prelude::*;
/// # use datastore_doc_models::{Note, notes};
/// # fn schema() -> Schema { Schema::new().model::<Note>() }
/// fn main() -> std::process::ExitCode {
///     datastore::migrate::Cli::new(schema()).run()
/// }
/// ```
///
/// then `cargo run --bin migrate -- generate add_notes`. The migrations are written to
/// `migrations/sqlite` and `migrations/postgres` (what `datastore::embed_migrations!()`
/// embeds), ordinary Diesel migrations the diesel CLI runs too. `generate` writes both
/// backends' migrations or neither: each is written aside (as
/// [`Migrations::generate`] does) and both are put in place only once both are written; if
/// putting the second in place fails, the first is taken out again. What stays non-atomic: a
/// process killed between the renames that put them in place leaves the first backend's
/// migration without the second's (and the cases [`Migrations::generate`] names). `baseline`
/// adopts a Diesel project's migrations ([`Migrations::baseline`]). `status`,
/// `up`, `down` and `redo` work on the database `--database-url` (or `DATABASE_URL`) names,
/// with the folder of its backend; `status`, `down` and `redo` refuse a SQLite file that is
/// not there ([`MigrationFailure::NoDatabase`](super::MigrationFailure::NoDatabase)) rather
/// than create an empty database, which `up` alone does.
#[derive(Debug, Clone)]
pub struct Cli {
    schema: Schema,
    dir: PathBuf,
    dialects: Vec<Dialect>,
}

#[derive(Parser)]
#[command(
    name = "migrate",
    about = "Generate, check and apply the migrations of this application's models"
)]
struct Args {
    /// The folder holding one folder of migrations per backend.
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the migration that brings each backend's folder up to the models.
    ///
    /// Each backend's migration is written aside and put in place only once all are written:
    /// a failure leaves no backend's folder changed.
    ///
    /// A migration that may lose data (a dropped table or column, a narrowed type, a column
    /// made NOT NULL or unique, a changed key or foreign key) is written only with
    /// --allow-lossy; one that would invent values for existing rows is never written.
    Generate {
        /// The migration's name: ASCII letters, digits and underscores.
        name: String,
        /// Write it even if it may lose data (each lossy statement is marked in up.sql).
        #[arg(long)]
        allow_lossy: bool,
    },
    /// Exit non-zero, printing the missing migration, when the models and migrations differ.
    Check,
    /// Record the schema each backend's existing migrations produce, writing no migration.
    ///
    /// For migrations generate did not write (a Diesel project's, by hand or with the diesel
    /// CLI) in a folder without schema.json: records the models, as what the migrations bring
    /// a database to, so that generate writes what changes from there. A folder that has its
    /// schema.json, or no migration, is left as it is.
    Baseline {
        /// Record that the migrations create none of the models' tables (generate then
        /// creates every one).
        #[arg(long)]
        empty: bool,
    },
    /// List the migrations the database has applied, and those pending.
    ///
    /// A SQLite file that is not there is refused, not created (`up` creates it).
    Status(Database),
    /// Apply the pending migrations.
    Up(Database),
    /// Revert the last applied migration (of a database that exists, as for `status`).
    Down(Database),
    /// Revert the last applied migration and apply it again (of a database that exists).
    Redo(Database),
    /// Print the models as a Mermaid ER diagram.
    Diagram,
}

#[derive(clap::Args)]
struct Database {
    /// The database: a SQLite file, or a postgres:// URL.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
}

impl Cli {
    /// The command line for `schema`, with its migrations in `migrations/` for SQLite and
    /// PostgreSQL.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use datastore::migrate::Cli;
    /// use std::process::ExitCode;
    ///
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let cli = Cli::new(Schema::new().model::<Note>()).dir(dir.path());
    /// let code = cli.run_from(["migrate", "generate", "create_notes"], &mut Vec::new());
    /// assert_eq!(code, ExitCode::SUCCESS);
    /// assert!(dir.path().join("sqlite/schema.json").exists());
    /// assert!(dir.path().join("postgres/schema.json").exists());
    /// ```
    pub fn new(schema: Schema) -> Self {
        Self {
            schema,
            dir: PathBuf::from("migrations"),
            dialects: vec![Dialect::Sqlite, Dialect::Postgres],
        }
    }

    /// The folder holding one folder of migrations per backend (`migrations` by default;
    /// `--dir` overrides it).
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use datastore::migrate::Cli;
    /// use std::process::ExitCode;
    ///
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let cli = Cli::new(Schema::new().model::<Note>()).dir(dir.path().join("db/migrations"));
    /// cli.run_from(["migrate", "generate", "create_notes"], &mut Vec::new());
    /// assert!(dir.path().join("db/migrations/sqlite").is_dir());
    /// ```
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = dir.into();
        self
    }

    /// The backends to generate migrations for (both by default).
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use datastore::migrate::Cli;
    /// use std::process::ExitCode;
    ///
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let cli = Cli::new(Schema::new().model::<Note>()).dir(dir.path()).dialects(&[Dialect::Sqlite]);
    /// cli.run_from(["migrate", "generate", "create_notes"], &mut Vec::new());
    /// assert!(dir.path().join("sqlite").is_dir());
    /// assert!(!dir.path().join("postgres").exists());
    /// ```
    pub fn dialects(mut self, dialects: &[Dialect]) -> Self {
        // Each once: a generation holds each backend's folder in turn (a second hold of one
        // would wait for itself).
        self.dialects = Vec::with_capacity(dialects.len());
        for &dialect in dialects {
            if !self.dialects.contains(&dialect) {
                self.dialects.push(dialect);
            }
        }
        self
    }

    /// Runs the command the process's arguments name; what it prints goes to standard
    /// output, errors to standard error.
    ///
    /// ```no_run
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// fn main() -> std::process::ExitCode {
    ///     // `cargo run --bin migrate -- check`
    ///     datastore::migrate::Cli::new(Schema::new().model::<Note>()).run()
    /// }
    /// ```
    pub fn run(self) -> ExitCode {
        self.run_from(std::env::args_os(), &mut std::io::stdout())
    }

    /// Runs the command `args` names (the first is the program's name), printing to `out`;
    /// errors, and `--help`, are printed to standard error and standard output as clap does.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use datastore::migrate::Cli;
    /// use std::process::ExitCode;
    ///
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let cli = || Cli::new(Schema::new().model::<Note>()).dir(dir.path());
    /// let mut out = Vec::new();
    /// assert_ne!(cli().run_from(["migrate", "check"], &mut out), ExitCode::SUCCESS); // no migration yet
    /// cli().run_from(["migrate", "generate", "create_notes"], &mut out);
    /// assert_eq!(cli().run_from(["migrate", "check"], &mut out), ExitCode::SUCCESS);
    /// assert!(!out.is_empty()); // what each command printed
    /// ```
    pub fn run_from<I, T>(mut self, args: I, out: &mut dyn Write) -> ExitCode
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args = match Args::try_parse_from(args) {
            Ok(args) => args,
            Err(e) => {
                let _ = e.print();
                return if e.use_stderr() {
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                };
            }
        };
        if let Some(dir) = args.dir {
            self.dir = dir;
        }
        match self.command(args.command, out) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }

    fn folder(&self, dialect: Dialect) -> Migrations {
        Migrations::new(self.dir.join(dialect.dir_name()), dialect)
    }

    fn command(&self, command: Command, out: &mut dyn Write) -> Result<ExitCode> {
        let io = |source| Error::Io {
            path: "standard output".into(),
            source,
        };
        match command {
            Command::Generate { name, allow_lossy } => {
                // Every backend's migration is planned and written aside before any is put in
                // place: one that would lose data unasked, or that cannot be written, stops
                // them all, and what was written aside is removed.
                let mut staged = Vec::new();
                for &dialect in &self.dialects {
                    let folder = self.folder(dialect).allow_lossy(allow_lossy);
                    staged.push((folder.stage(&self.schema, &name)?, folder));
                }
                for i in 0..staged.len() {
                    let (done, rest) = staged.split_at_mut(i);
                    let Some(migration) = &mut rest[0].0 else {
                        continue;
                    };
                    if let Err(e) = migration.commit() {
                        // Those put in place already are taken out again.
                        for earlier in done.iter_mut().rev().filter_map(|(m, _)| m.as_mut()) {
                            if let Err(undo) = earlier.undo() {
                                eprintln!(
                                    "error: {} could not be taken out again: {undo}",
                                    earlier.dir().display()
                                );
                            }
                        }
                        return Err(e);
                    }
                }
                for (migration, folder) in &staged {
                    match migration {
                        Some(migration) => {
                            writeln!(out, "wrote {}", migration.dir().display()).map_err(io)?
                        }
                        None => {
                            writeln!(out, "{}: up to date", folder.dir().display()).map_err(io)?
                        }
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::Check => {
                let mut drifted = false;
                for &dialect in &self.dialects {
                    match self.folder(dialect).drift(&self.schema)? {
                        Some(drift) => {
                            drifted = true;
                            write!(out, "{drift}").map_err(io)?;
                        }
                        None => writeln!(
                            out,
                            "{}: matches the models",
                            self.folder(dialect).dir().display()
                        )
                        .map_err(io)?,
                    }
                }
                Ok(if drifted {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                })
            }
            Command::Baseline { empty } => {
                let schema = if empty {
                    Schema::new()
                } else {
                    self.schema.clone()
                };
                for &dialect in &self.dialects {
                    let folder = self.folder(dialect);
                    match folder.baseline(&schema)? {
                        Some(path) => writeln!(out, "wrote {}", path.display()),
                        None => writeln!(
                            out,
                            "{}: left as it is (it has its schema.json, or no migration)",
                            folder.dir().display()
                        ),
                    }
                    .map_err(io)?;
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::Status(db) => {
                let (store, folder) = self.connect(Self::existing(&db)?, false)?;
                let (applied, pending) = folder.status(&store)?;
                for version in &applied {
                    writeln!(out, "applied  {version}").map_err(io)?;
                }
                for name in &pending {
                    writeln!(out, "pending  {name}").map_err(io)?;
                }
                if applied.is_empty() && pending.is_empty() {
                    writeln!(out, "no migrations").map_err(io)?;
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::Up(db) => {
                let (store, folder) = self.connect(&db, false)?;
                let (_, pending) = folder.status(&store)?;
                drop(store);
                // Through the store: pending migrations run one process at a time.
                self.connect(&db, true)?;
                for name in pending {
                    writeln!(out, "applied  {name}").map_err(io)?;
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::Down(db) => {
                let (store, folder) = self.connect(Self::existing(&db)?, false)?;
                let reverted = folder.revert_last(store, &db)?;
                writeln!(out, "reverted {reverted}").map_err(io)?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Redo(db) => {
                let (store, folder) = self.connect(Self::existing(&db)?, false)?;
                let reverted = folder.revert_last(store, &db)?;
                writeln!(out, "reverted {reverted}").map_err(io)?;
                // Through the store, with the folder's migrations up to the reverted one.
                let version = reverted
                    .split('_')
                    .next()
                    .unwrap_or_default()
                    .replace('-', "");
                Store::builder(&db.database_url)
                    .pool_size(1)
                    .migrations(folder.up_to(&version))
                    .open()?;
                writeln!(out, "applied  {reverted}").map_err(io)?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Diagram => {
                write!(out, "{}", self.schema.mermaid()).map_err(io)?;
                Ok(ExitCode::SUCCESS)
            }
        }
    }

    /// Refuses a SQLite file that is not there ([`MigrationFailure::NoDatabase`]), which
    /// opening would create: for the commands that read a database, which `up` alone creates.
    fn existing(db: &Database) -> Result<&Database> {
        if let Some(path) = crate::store::sqlite_file(&db.database_url) {
            // A file that cannot be looked at is left for opening to report.
            if matches!(path.try_exists(), Ok(false)) {
                return Err(Error::migration(
                    None,
                    MigrationFailure::NoDatabase { path },
                ));
            }
        }
        Ok(db)
    }

    /// A store on the database, and the folder of migrations of its backend. With `migrate`,
    /// the store is opened with them, which applies the pending ones (one process at a time).
    fn connect(&self, db: &Database, migrate: bool) -> Result<(Store, Folder)> {
        let dialect = crate::store::dialect_of(&db.database_url);
        let dir = self.folder(dialect).dir().to_owned();
        let files = || {
            FileBasedMigrations::from_path(&dir).map_err(|e| {
                Error::migration(
                    None,
                    MigrationFailure::Run(format!("{}: {e}", dir.display()).into()),
                )
            })
        };
        let mut builder = Store::builder(&db.database_url).pool_size(1);
        if migrate {
            builder = builder.migrations(match dialect {
                Dialect::Sqlite => BackendMigrations::new().sqlite(files()?),
                Dialect::Postgres => BackendMigrations::new().postgres(files()?),
            });
        }
        Ok((builder.open()?, Folder(files()?, dialect)))
    }
}

/// One backend's folder of migrations, as Diesel reads it, and its backend.
struct Folder(FileBasedMigrations, Dialect);

/// A folder's migrations up to a version, inclusive.
struct UpTo {
    files: FileBasedMigrations,
    version: String,
}

impl<DB: Backend> MigrationSource<DB> for UpTo
where
    FileBasedMigrations: MigrationSource<DB>,
{
    fn migrations(&self) -> diesel::migration::Result<Vec<Box<dyn Migration<DB>>>> {
        let mut migrations = self.files.migrations()?;
        migrations.retain(|m| m.name().version().to_string() <= self.version);
        Ok(migrations)
    }
}

fn harness_error(e: Box<dyn std::error::Error + Send + Sync>) -> Error {
    Error::migration(None, MigrationFailure::Run(e))
}

/// `(version, name)` of each migration.
fn names<DB: Backend>(migrations: Vec<Box<dyn Migration<DB>>>) -> Vec<(String, String)> {
    migrations
        .iter()
        .map(|m| (m.name().version().to_string(), m.name().to_string()))
        .collect()
}

impl Folder {
    /// The migrations up to `version`, inclusive, for the store to run.
    fn up_to(&self, version: &str) -> BackendMigrations {
        let up_to = UpTo {
            files: self.0.clone(),
            version: version.to_owned(),
        };
        match self.1 {
            Dialect::Sqlite => BackendMigrations::new().sqlite(up_to),
            Dialect::Postgres => BackendMigrations::new().postgres(up_to),
        }
    }

    /// The migrations applied (by name, or by version for one no longer in the folder), and
    /// those pending.
    fn status(&self, store: &Store) -> Result<(Vec<String>, Vec<String>)> {
        let mut conn = store.pooled()?;
        let (applied, all, pending) = match &mut *conn {
            AnyConnection::Sqlite(c) => (
                c.applied_migrations().map_err(harness_error)?,
                names(MigrationSource::<Sqlite>::migrations(&self.0).map_err(harness_error)?),
                names(
                    c.pending_migrations(self.0.clone())
                        .map_err(harness_error)?,
                ),
            ),
            AnyConnection::Postgres(c) => (
                c.applied_migrations().map_err(harness_error)?,
                names(MigrationSource::<Pg>::migrations(&self.0).map_err(harness_error)?),
                names(
                    c.pending_migrations(self.0.clone())
                        .map_err(harness_error)?,
                ),
            ),
        };
        let mut applied: Vec<String> = applied
            .iter()
            .map(|version| {
                let version = version.to_string();
                all.iter()
                    .find(|(v, _)| *v == version)
                    .map_or(version, |(_, name)| name.clone())
            })
            .collect();
        applied.sort();
        Ok((applied, pending.into_iter().map(|(_, name)| name).collect()))
    }

    /// Reverts the last applied migration, as the store runs migrations (one process at a
    /// time; a table rebuild with foreign keys off in the store's transaction, the table's
    /// triggers kept); its name. `store` (on `db`) is closed first.
    fn revert_last(&self, store: Store, db: &Database) -> Result<String> {
        let (applied, _) = self.status(&store)?;
        drop(store);
        let migrations = match self.1 {
            Dialect::Sqlite => BackendMigrations::new().sqlite(self.0.clone()),
            Dialect::Postgres => BackendMigrations::new().postgres(self.0.clone()),
        };
        let version = Store::builder(&db.database_url)
            .migrations(migrations)
            .revert_last_migration()?
            .ok_or_else(|| harness_error("no migration is applied".into()))?;
        Ok(applied
            .into_iter()
            .find(|name| name.replace('-', "").starts_with(&version))
            .unwrap_or(version))
    }
}

#[cfg(test)]
mod tests {
    use super::{Cli, Command, Database};
    use crate::migrate::MigrationFailure;
    use crate::{Error, Schema};

    /// `status` on a SQLite file that is not there fails with `NoDatabase`, naming the file,
    /// and creates none.
    #[test]
    fn status_on_a_missing_sqlite_file_is_no_database() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("missing.db");
        let db = Database {
            database_url: file.display().to_string(),
        };
        let cli = Cli::new(Schema::new()).dir(tmp.path());
        match cli.command(Command::Status(db), &mut Vec::new()) {
            Err(Error::Migration {
                failure: MigrationFailure::NoDatabase { path },
                ..
            }) => assert_eq!(path, file),
            other => panic!("expected NoDatabase: {other:?}"),
        }
        assert!(!file.exists());
    }
}
