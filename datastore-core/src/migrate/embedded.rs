//! The migrations a store runs when it opens: one source per backend.

use std::fmt;

use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel::sqlite::Sqlite;

/// The migrations of an application, one folder per backend, as `Store::open` takes them.
///
/// Usually embedded at compile time with `datastore::embed_migrations!()`, which reads
/// `migrations/sqlite` and `migrations/postgres`. The store runs the set of its backend; a
/// store opened on a backend the set has no migrations for fails with
/// [`Error::Migration`](crate::Error::Migration).
///
/// ```
/// use datastore::migrate::BackendMigrations;
/// use datastore::diesel_migrations::{embed_migrations, EmbeddedMigrations};
///
/// const SQLITE: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
/// let set = BackendMigrations::new().sqlite(SQLITE);
/// assert!(set.has_sqlite() && !set.has_postgres());
/// ```
#[derive(Default)]
pub struct BackendMigrations {
    sqlite: Option<Box<dyn MigrationSource<Sqlite> + Send + Sync>>,
    postgres: Option<Box<dyn MigrationSource<Pg> + Send + Sync>>,
}

impl BackendMigrations {
    /// An empty set.
    ///
    /// ```
    /// use datastore::migrate::BackendMigrations;
    ///
    /// let none = BackendMigrations::new();
    /// assert!(!none.has_sqlite() && !none.has_postgres());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The migrations to run on SQLite.
    ///
    /// ```
    /// use datastore::migrate::BackendMigrations;
    /// use datastore::diesel_migrations::{embed_migrations, EmbeddedMigrations};
    ///
    /// const SQLITE: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
    /// assert!(BackendMigrations::new().sqlite(SQLITE).has_sqlite());
    /// ```
    pub fn sqlite(mut self, source: impl MigrationSource<Sqlite> + Send + Sync + 'static) -> Self {
        self.sqlite = Some(Box::new(source));
        self
    }

    /// The migrations to run on PostgreSQL.
    ///
    /// ```
    /// use datastore::migrate::BackendMigrations;
    /// use datastore::diesel_migrations::{embed_migrations, EmbeddedMigrations};
    ///
    /// const POSTGRES: EmbeddedMigrations = embed_migrations!("../migrations/postgres");
    /// let set = BackendMigrations::new().postgres(POSTGRES);
    /// assert!(set.has_postgres() && !set.has_sqlite());
    /// ```
    pub fn postgres(mut self, source: impl MigrationSource<Pg> + Send + Sync + 'static) -> Self {
        self.postgres = Some(Box::new(source));
        self
    }

    /// Whether the set has SQLite migrations.
    ///
    /// ```
    /// let set = datastore::embed_migrations!(sqlite = "../migrations/sqlite");
    /// assert!(set.has_sqlite());
    /// ```
    pub fn has_sqlite(&self) -> bool {
        self.sqlite.is_some()
    }

    /// Whether the set has PostgreSQL migrations.
    ///
    /// ```
    /// let set = datastore::embed_migrations!(sqlite = "../migrations/sqlite");
    /// assert!(!set.has_postgres()); // a store on PostgreSQL would fail to open
    /// ```
    pub fn has_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    pub(crate) fn for_sqlite(&self) -> Option<impl MigrationSource<Sqlite> + '_> {
        self.sqlite.as_deref().map(Source)
    }

    pub(crate) fn for_postgres(&self) -> Option<impl MigrationSource<Pg> + '_> {
        self.postgres.as_deref().map(Source)
    }
}

impl fmt::Debug for BackendMigrations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendMigrations")
            .field("sqlite", &self.has_sqlite())
            .field("postgres", &self.has_postgres())
            .finish()
    }
}

/// A borrowed boxed source, as Diesel's harness takes one by value.
struct Source<'a, DB>(&'a (dyn MigrationSource<DB> + Send + Sync));

impl<DB: diesel::backend::Backend> MigrationSource<DB> for Source<'_, DB> {
    fn migrations(
        &self,
    ) -> diesel::migration::Result<Vec<Box<dyn diesel::migration::Migration<DB>>>> {
        self.0.migrations()
    }
}
