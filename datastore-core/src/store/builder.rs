//! Opening a store: [`StoreBuilder`]'s options, the URL or path it opens, and what happens
//! when it opens (the first connection, migrations, the pool).

use std::ffi::OsStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::r2d2::Pool;
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use super::connection::{ConnectionSetup, Synchronous};
use super::workers::Workers;
use super::{BackendManager, ObserveConn, Store, migrations, url};
use crate::migrate::BackendMigrations;
use crate::observe::hub::Hub;
use crate::observe::postgres::PgObserve;
use crate::schema::Dialect;
use crate::{AnyConnection, ConnectionFailure, Error, Result};

/// Options for opening a [`Store`]; from [`Store::builder`].
///
/// ```
/// use std::time::Duration;
/// use datastore::{Store, Synchronous};
///
/// # fn main() -> datastore::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::builder(dir.path().join("app.db"))
///     .pool_size(4)
///     .busy_timeout(Duration::from_secs(2))
///     .synchronous(Synchronous::Normal)
///     .open()?;
/// assert!(store.url().ends_with("app.db"));
/// # Ok(())
/// # }
/// ```
#[must_use = "a builder does nothing until `open` is called"]
pub struct StoreBuilder {
    url: String,
    /// Whether `url` is the location as given (a path need not be UTF-8; the drivers take
    /// text).
    url_is_utf8: bool,
    postgres_schema: Option<String>,
    migrations: Option<BackendMigrations>,
    schema: Option<crate::Schema>,
    pool_size: u32,
    setup: ConnectionSetup,
    connection_timeout: Duration,
    observe_buffer: usize,
    change_feed: crate::observe::ChangeFeed,
}

impl Store {
    /// Opens the database at `location` and runs the pending migrations of its backend.
    ///
    /// `location` is a `postgres://` (or `postgresql://`) URL for PostgreSQL. Anything else is
    /// SQLite: a file path (a `&str`, `String`, `&Path` or `PathBuf`; the file is created if
    /// needed), `sqlite:` followed by a path, a SQLite `file:` URI, or `":memory:"` for a private
    /// in-memory database shared by the store's connections. `migrations` is usually
    /// `datastore::embed_migrations!()`.
    ///
    /// ```
    /// use datastore::Store;
    ///
    /// # fn main() -> datastore::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// // An application passes `datastore::embed_migrations!()`: its `migrations/` folders.
    /// let migrations = datastore::embed_migrations!(sqlite = "../migrations/sqlite");
    /// let store = Store::open(dir.path().join("blog.db"), migrations)?;
    /// assert!(store.url().ends_with("blog.db"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn open(location: impl AsRef<OsStr>, migrations: BackendMigrations) -> Result<Self> {
        Self::builder(location).migrations(migrations).open()
    }

    /// A builder to set the pool size, the busy timeout and how the schema is set up; see
    /// [`Store::open`] for what `location` may be.
    ///
    /// ```
    /// use datastore::prelude::*;
    ///
    /// #[derive(Model, Debug, Clone, PartialEq, Default)]
    /// pub struct Note {
    ///     #[primary_key]
    ///     pub id: Id,
    ///     pub text: String,
    /// }
    ///
    /// # fn main() -> datastore::Result<()> {
    /// let store = Store::builder(":memory:")
    ///     .schema(Schema::new().model::<Note>()) // no migrations: tables created from the models
    ///     .pool_size(2)
    ///     .open()?;
    /// assert_eq!(store.count::<Note>()?, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder(location: impl AsRef<OsStr>) -> StoreBuilder {
        let location = location.as_ref();
        StoreBuilder {
            url: location.to_string_lossy().into_owned(),
            url_is_utf8: location.to_str().is_some(),
            postgres_schema: None,
            migrations: None,
            schema: None,
            pool_size: 8,
            setup: ConnectionSetup {
                busy_timeout: Duration::from_secs(5),
                wal: true,
                synchronous: Synchronous::Full,
                hub: Arc::default(),
                slow_statements: Some(Duration::from_secs(1)),
            },
            connection_timeout: Duration::from_secs(30),
            observe_buffer: 4096,
            change_feed: crate::observe::ChangeFeed::default(),
        }
    }
}

impl std::fmt::Debug for StoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreBuilder")
            .field("url", &url::redact(&self.url))
            .field("postgres_schema", &self.postgres_schema)
            .field("migrations", &self.migrations)
            .field("pool_size", &self.pool_size)
            .field("setup", &self.setup)
            .field("connection_timeout", &self.connection_timeout)
            .field("observe_buffer", &self.observe_buffer)
            .field("change_feed", &self.change_feed)
            .finish_non_exhaustive()
    }
}

impl StoreBuilder {
    /// The migrations to run when the store opens (usually `datastore::embed_migrations!()`).
    ///
    /// ```
    /// use datastore::migrate::BackendMigrations;
    /// use datastore::diesel_migrations::{embed_migrations, EmbeddedMigrations};
    /// use datastore::Store;
    ///
    /// const SQLITE: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
    ///
    /// # fn main() -> datastore::Result<()> {
    /// let migrations = BackendMigrations::new().sqlite(SQLITE); // or `embed_migrations!()`
    /// let store = Store::builder(":memory:").migrations(migrations).open()?;
    /// assert_eq!(store.url(), ":memory:");
    /// # Ok(())
    /// # }
    /// ```
    pub fn migrations(mut self, migrations: BackendMigrations) -> Self {
        self.migrations = Some(migrations);
        self
    }

    /// Creates the tables of this schema directly, without migrations, if they do not exist.
    /// Meant for tests and prototypes; applications ship migrations.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// let note = store.save(Note { text: "the table exists".into(), ..Note::default() })?;
    /// assert_eq!(store.get::<Note>(&note.id)?, note);
    /// # Ok(())
    /// # }
    /// ```
    pub fn schema(mut self, schema: crate::Schema) -> Self {
        self.schema = Some(schema);
        self
    }

    /// The most connections the pool holds (default 8; at least 1). A `u32`, as the pool
    /// (r2d2) counts its connections: a setting, not a count of what the store holds.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).pool_size(2).open()?;
    /// let (first, second) = (store.conn()?, store.conn()?); // both connections taken
    /// drop((first, second));
    /// assert_eq!(store.count::<Note>()?, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn pool_size(mut self, size: u32) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// How long a statement waits for a lock held by another connection before failing with
    /// [`Error::Busy`] (default 5 s), from 1 ms (PostgreSQL's `lock_timeout` of 0 would wait
    /// without end) to 2^31 - 1 ms, about 24.8 days (the most SQLite counts): a value outside
    /// is taken as the nearer bound. On PostgreSQL it also bounds how long the first
    /// subscription waits for the logical feed to start, which waits for every transaction
    /// running on the server to end.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # use std::time::Duration;
    /// # fn main() -> datastore::Result<()> {
    /// use std::time::Duration;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = Store::builder(dir.path().join("app.db"))
    ///     .schema(Schema::new().model::<Note>())
    ///     .busy_timeout(Duration::from_millis(250))
    ///     .open()?;
    /// assert_eq!(store.count::<Note>()?, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.setup.busy_timeout = timeout.clamp(MIN_BUSY_TIMEOUT, MAX_BUSY_TIMEOUT);
        self
    }

    /// How long taking a connection from the pool may wait (default 30 s; at least 1 ms, at
    /// most a year).
    ///
    /// ```
    /// use std::time::Duration;
    /// use datastore::Store;
    ///
    /// # fn main() -> datastore::Result<()> {
    /// let store = Store::builder(":memory:")
    ///     .pool_size(1)
    ///     .connection_timeout(Duration::from_millis(100))
    ///     .open()?;
    /// let held = store.conn()?;
    /// // The pool's one connection is taken: the next wait ends after 100 ms.
    /// assert!(matches!(store.conn(), Err(datastore::Error::Connection { .. })));
    /// drop(held);
    /// assert!(store.conn().is_ok());
    /// # Ok(())
    /// # }
    /// ```
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        // r2d2 refuses a zero wait, and adds the wait to the clock (which overflows past it).
        self.connection_timeout = timeout.clamp(MIN_CONNECTION_TIMEOUT, MAX_CONNECTION_TIMEOUT);
        self
    }

    /// How many changes a subscriber's buffer holds before it misses some (default 4096).
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use datastore::observe::Observed;
    ///
    /// # fn main() -> datastore::Result<()> {
    /// let store = Store::builder(":memory:")
    ///     .schema(Schema::new().model::<Note>())
    ///     .observe_buffer(2)
    ///     .open()?;
    /// let notes = store.observe::<Note>()?;
    /// for _ in 0..3 {
    ///     store.save(Note::default())?;
    /// }
    /// assert!(matches!(notes.recv(), Some(Observed::Change(_))));
    /// assert!(matches!(notes.recv(), Some(Observed::Change(_))));
    /// assert!(matches!(notes.recv(), Some(Observed::Missed(1)))); // the buffer held two
    /// # Ok(())
    /// # }
    /// ```
    pub fn observe_buffer(mut self, changes: usize) -> Self {
        self.observe_buffer = changes.max(1);
        self
    }

    /// Where observe learns of committed changes on PostgreSQL (default
    /// [`ChangeFeed::Auto`](crate::observe::ChangeFeed::Auto): logical decoding where the server
    /// allows it, the trigger feed otherwise). Ignored on SQLite.
    ///
    /// ```no_run
    /// use datastore::observe::ChangeFeed;
    /// use datastore::Store;
    ///
    /// # fn main() -> datastore::Result<()> {
    /// let store = Store::builder("postgres://app@db.internal/blog")
    ///     .change_feed(ChangeFeed::Triggers) // a server without logical decoding
    ///     .open()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn change_feed(mut self, feed: crate::observe::ChangeFeed) -> Self {
        self.change_feed = feed;
        self
    }

    /// The durability of commits in WAL mode (default [`Synchronous::Full`]).
    ///
    /// ```
    /// use datastore::{Store, Synchronous};
    ///
    /// # fn main() -> datastore::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// // A commit is durable once the WAL is synced at checkpoints: faster, and still consistent.
    /// let store = Store::builder(dir.path().join("cache.db"))
    ///     .synchronous(Synchronous::Normal)
    ///     .open()?;
    /// assert!(store.url().ends_with("cache.db"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.setup.synchronous = synchronous;
        self
    }

    /// Statements that run `threshold` or longer are reported through `tracing`, at `WARN`
    /// with target `datastore::slow` (their SQL and how long they took); `None` reports none,
    /// `Some(Duration::ZERO)` every statement. Default: one second.
    ///
    /// Statements are timed only while a subscriber of `tracing` listens to `datastore::slow`
    /// at `WARN`: on SQLite by SQLite itself (to the millisecond; it reads the clock twice a
    /// statement, which is why it does not while nobody listens), on PostgreSQL with two reads
    /// of the clock next to each round trip to the server.
    ///
    /// ```
    /// use std::time::Duration;
    /// use datastore::Store;
    ///
    /// # fn main() -> datastore::Result<()> {
    /// let store = Store::builder(":memory:")
    ///     .slow_statement_threshold(Some(Duration::from_millis(100)))
    ///     .open()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn slow_statement_threshold(mut self, threshold: Option<Duration>) -> Self {
        self.setup.slow_statements = threshold;
        self
    }

    /// On PostgreSQL, the schema the store's tables live in: every connection's `search_path`
    /// (set through libpq's `options` parameter, as if the URL said
    /// `?options=-csearch_path%3D..`). The schema must exist. SQLite has no such schemas:
    /// opening a SQLite store with one set fails.
    ///
    /// ```no_run
    /// # use datastore::Store;
    /// # fn main() -> datastore::Result<()> {
    /// let store = Store::builder("postgres://app@db.internal/blog")
    ///     .postgres_schema("tenant_42")
    ///     .open()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn postgres_schema(mut self, schema: impl Into<String>) -> Self {
        self.postgres_schema = Some(schema.into());
        self
    }

    /// Reverts the last applied of the migrations on one connection set up as the store's
    /// would be, as the store runs migrations (one process at a time; a table rebuild with its
    /// triggers kept): the `migrate` command's `down`. The reverted version, or `None` when
    /// none is applied.
    #[cfg(feature = "cli")]
    pub(crate) fn revert_last_migration(mut self) -> Result<Option<String>> {
        let (_, mut conn, handle) = self.first_connection()?;
        let migrations = self.migrations.unwrap_or_default();
        migrations::revert_last(&mut conn, handle, &migrations, self.setup.busy_timeout)
    }

    /// Checks the location and makes it what the driver opens (a PostgreSQL schema set as
    /// the search path; `:memory:` a database of the store's own), then opens the first
    /// connection on it, set up as the pool's will be: the manager that opens the others, the
    /// connection, and its SQLite handle (see
    /// [`ffi::peek_opened`](crate::ffi::sqlite::peek_opened)).
    fn first_connection(
        &mut self,
    ) -> Result<(
        BackendManager,
        AnyConnection,
        Option<crate::ffi::sqlite::Handle>,
    )> {
        if !self.url_is_utf8 {
            return Err(Error::connection(
                &self.url,
                ConnectionFailure::Location,
                "the path is not UTF-8, which the SQLite driver needs",
            ));
        }
        if let Some(schema) = &self.postgres_schema {
            if !is_postgres(&self.url) {
                return Err(Error::connection(
                    &self.url,
                    ConnectionFailure::Location,
                    "a PostgreSQL schema was set (postgres_schema) for a SQLite database",
                ));
            }
            self.url = url::with_search_path(&self.url, schema);
        }
        let (dialect, database, in_memory) = database_url(&self.url)
            .map_err(|reason| Error::connection(&self.url, ConnectionFailure::Location, reason))?;
        self.setup.wal = !in_memory;
        // Before any connection opens (each reports its changes to it). SQLite names tables
        // without regard to ASCII case, and so do its subscriptions.
        self.setup.hub = Arc::new(match dialect {
            Dialect::Sqlite => Hub::sqlite(),
            Dialect::Postgres => Hub::default(),
        });
        let manager = BackendManager {
            url: database,
            dialect,
        };
        // Before any connection opens, so that observe sees every SQLite connection's handle.
        crate::ffi::sqlite::register();
        let mut first = manager
            .establish()
            .map_err(|e| Error::connection(&self.url, ConnectionFailure::Driver, e))?;
        let handle = crate::ffi::sqlite::peek_opened();
        // A database that stays busy past the busy timeout is busy (`Error::Busy`), not
        // unusable.
        self.setup
            .apply_any(&mut first)
            .map_err(Error::from)
            .map_err(|e| match e {
                Error::Busy { .. } => e,
                e => Error::connection(&self.url, ConnectionFailure::Setup, e),
            })?;
        Ok((manager, first, handle))
    }

    /// Opens the store: runs the migrations and sets up the pool.
    ///
    /// ```
    /// use datastore::{Error, Store};
    ///
    /// # fn main() -> datastore::Result<()> {
    /// let store = Store::builder(":memory:").open()?;
    /// assert_eq!(store.dialect(), datastore::schema::Dialect::Sqlite);
    ///
    /// // No such folder: opening fails, saying where and why.
    /// let refused = Store::builder("/no/such/folder/app.db").open();
    /// assert!(matches!(refused, Err(Error::Connection { .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub fn open(mut self) -> Result<Store> {
        // The first connection sets the database up (and, for memory, keeps it alive).
        let (manager, mut first, handle) = self.first_connection()?;
        let dialect = manager.dialect;
        // Set by `first_connection`: a database in memory is the one without WAL.
        let in_memory = !self.setup.wal;
        let observe_conn = ObserveConn::new(
            BackendManager {
                url: manager.url.clone(),
                dialect,
            },
            self.setup.clone(),
            self.url.clone(),
        );
        if let Some(migrations) = &self.migrations {
            migrations::run(&mut first, handle, migrations, self.setup.busy_timeout)?;
        }
        if let Some(schema) = &self.schema {
            schema.create_all(&mut first)?;
        }
        let keepalive = match first {
            AnyConnection::Sqlite(first) if in_memory => Some(Arc::new(Mutex::new(first))),
            _ => None,
        };

        let workers = Workers::new(self.connection_timeout);
        let pool = Pool::builder()
            .thread_pool(workers.threads())
            .max_size(self.pool_size)
            .min_idle(Some(0))
            // No `SELECT 1` each time a connection is taken: a SQLite connection is a handle
            // on a file, and a PostgreSQL connection found broken in use is dropped
            // (`has_broken`) instead of being handed out again.
            .test_on_check_out(false)
            .connection_timeout(self.connection_timeout)
            .connection_customizer(Box::new(self.setup.clone()))
            .build_unchecked(manager);
        Ok(Store {
            pool,
            shown_url: url::redact(&self.url),
            url: self.url,
            dialect,
            hub: self.setup.hub,
            observe_buffer: self.observe_buffer,
            pg_observe: Arc::new(PgObserve::new(self.change_feed, self.setup.busy_timeout)),
            observe_conn: Arc::new(observe_conn),
            _keepalive: keepalive,
            _workers: Arc::new(workers),
        })
    }
}

/// The shortest wait for a pooled connection: r2d2 refuses none.
const MIN_CONNECTION_TIMEOUT: Duration = Duration::from_millis(1);
/// The longest wait for a pooled connection (a year): longer ones would overflow the clock as
/// r2d2 adds them to it.
const MAX_CONNECTION_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// The shortest busy timeout: on PostgreSQL, a `lock_timeout` of 0 means none.
const MIN_BUSY_TIMEOUT: Duration = Duration::from_millis(1);
/// The longest busy timeout: SQLite reads `busy_timeout` as a 32-bit count of milliseconds.
const MAX_BUSY_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

/// The backend a URL names.
#[cfg(feature = "cli")]
pub(crate) fn dialect_of(url: &str) -> Dialect {
    if is_postgres(url) {
        Dialect::Postgres
    } else {
        Dialect::Sqlite
    }
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The backend a URL names, the URL its driver opens, and whether it is a memory database;
/// or why the store cannot open it.
///
/// A store's connections must all reach one database: `:memory:` (or `file::memory:`)
/// becomes a named in-memory database of its own (SQLite's `memdb` VFS), with real locking
/// between the connections; one shared by name (`cache=shared`) becomes the `memdb` database
/// of that name, which every store of the process opening the URI shares, with the same
/// locking; a memory database every connection would open anew (a `file:` URI with
/// `mode=memory`, or a `memdb` name without its leading `/`, and no `cache=shared`) is
/// refused, as is an empty filename (a temporary database of each connection's own).
///
/// A `sqlite://` or `sqlite:` URL is the `file:` URI of the same text, as Diesel and the
/// diesel CLI read `sqlite://` and sqlx reads both: its query holds SQLite's parameters
/// (`mode=rwc`), not part of the file's name.
fn database_url(url: &str) -> std::result::Result<(Dialect, String, bool), String> {
    if is_postgres(url) {
        return Ok((Dialect::Postgres, url.to_owned(), false));
    }
    let url = match url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        Some(rest) => format!("file:{rest}"),
        None => url.to_owned(),
    };
    let url = url.as_str();
    let own_memory = || {
        format!(
            "file:/datastore-{}?vfs=memdb",
            uuid::Uuid::new_v4().simple()
        )
    };
    match SqliteMemory::of(url) {
        SqliteMemory::None => Ok((Dialect::Sqlite, url.to_owned(), false)),
        // SQLite's shared cache locks tables, and a connection that finds one locked fails
        // at once, whatever the busy timeout: the store's connections share the database by
        // its name in `memdb` instead, whose locks wait as a file's do.
        SqliteMemory::SharedCache(name) => Ok((
            Dialect::Sqlite,
            format!(
                "file:/datastore-shared-cache/{}?vfs=memdb",
                utf8_percent_encode(&name, NON_ALPHANUMERIC)
            ),
            true,
        )),
        SqliteMemory::Memdb {
            shared_cache: false,
        } => Ok((Dialect::Sqlite, url.to_owned(), true)),
        // The same `memdb` database without the shared cache's table locks.
        SqliteMemory::Memdb { shared_cache: true } => {
            Ok((Dialect::Sqlite, without_shared_cache(url), true))
        }
        SqliteMemory::Anonymous => Ok((Dialect::Sqlite, own_memory(), true)),
        SqliteMemory::PerConnection => Err(format!(
            "{url} is a database in memory that each connection opens anew, so the store's \
             connections would not share it: use `:memory:`, a name starting with `/` with \
             `vfs=memdb`, or add `cache=shared`"
        )),
        SqliteMemory::Temporary => Err(format!(
            "{url:?} names no file: SQLite opens a temporary database of each connection's \
             own for it, so the store's connections would not share one: name a file, or use \
             `:memory:`"
        )),
    }
}

/// The `file:` URI `uri` without its `cache` parameters.
fn without_shared_cache(uri: &str) -> String {
    let (uri, fragment) = uri.split_once('#').unwrap_or((uri, ""));
    let Some((path, query)) = uri.split_once('?') else {
        return uri.to_owned();
    };
    let is_cache = |pair: &&str| {
        let key = pair.split_once('=').map_or(*pair, |(key, _)| key);
        percent_decode_str(key)
            .decode_utf8_lossy()
            .split('\0')
            .next()
            == Some("cache")
    };
    let query: Vec<&str> = query.split('&').filter(|pair| !is_cache(pair)).collect();
    let mut uri = format!("{path}?{}", query.join("&"));
    if !fragment.is_empty() {
        uri = format!("{uri}#{fragment}");
    }
    uri
}

/// The path of a `file:` URI (the text after `file:`), decoded, and its query (not decoded).
fn uri_parts(uri: &str) -> (String, &str) {
    let uri = uri.split('#').next().unwrap_or_default();
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    // `file://host/path`: the path starts at the authority's end.
    let path = match path.strip_prefix("//") {
        Some(rest) => rest.find('/').map_or("", |i| &rest[i..]),
        None => path,
    };
    (uri_decoded(path), query)
}

/// A part of a `file:` URI as SQLite reads it: `%HH` is the byte it encodes (in the path, and in
/// each parameter's name and value once the query is split at its `&` and `=`), and `%00` ends
/// the part it is in.
fn uri_decoded(text: &str) -> String {
    let text = percent_decode_str(text).decode_utf8_lossy();
    text.split('\0').next().unwrap_or_default().to_owned()
}

/// The file a SQLite location names: the path, or the path of a `sqlite:` URL or `file:` URI
/// as SQLite decodes it; `None` for PostgreSQL, a database in memory, or a location the store
/// refuses (which opening then reports).
#[cfg(feature = "cli")]
pub(crate) fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let Ok((Dialect::Sqlite, database, false)) = database_url(url) else {
        return None;
    };
    Some(match database.strip_prefix("file:") {
        Some(uri) => uri_parts(uri).0.into(),
        None => database.into(),
    })
}

/// Whether SQLite opens a filename or `file:` URI in memory, and for whom.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SqliteMemory {
    /// A file.
    None,
    /// `:memory:` or `file::memory:` without `cache=shared`: a database of the connection's
    /// own, which the store makes one of its own.
    Anonymous,
    /// A database in memory every connection opening the URI reaches through SQLite's shared
    /// cache (`cache=shared`), by this name (decoded; `:memory:` for `file::memory:`).
    SharedCache(String),
    /// A database in memory every connection opening the URI reaches by its `memdb` name
    /// (starting with `/`); through SQLite's shared cache too if `shared_cache`.
    Memdb { shared_cache: bool },
    /// A named database in memory each connection opens anew.
    PerConnection,
    /// An empty filename: a temporary database on disk each connection opens anew.
    Temporary,
}

impl SqliteMemory {
    fn of(url: &str) -> Self {
        if url == ":memory:" {
            return Self::Anonymous;
        }
        let Some(uri) = url.strip_prefix("file:") else {
            return if url.is_empty() {
                Self::Temporary
            } else {
                Self::None
            };
        };
        let (path, query) = uri_parts(uri);
        let params: Vec<(String, String)> = query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (uri_decoded(k), uri_decoded(v)))
            .collect();
        let param = |key: &str| {
            params
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .next_back()
        };
        let memdb = param("vfs") == Some("memdb");
        if path != ":memory:" && param("mode") != Some("memory") && !memdb {
            return if path.is_empty() {
                Self::Temporary
            } else {
                Self::None
            };
        }
        // `mode=memory` opens a database of the connection's own whatever the VFS, which
        // `cache=shared` alone shares; `memdb` shares a name starting with `/` (and longer
        // than it).
        let shared_by_memdb = memdb && param("mode") != Some("memory") && path.len() > 1;
        let by_memdb_name = shared_by_memdb && path.starts_with('/');
        if param("cache") == Some("shared") && !by_memdb_name {
            Self::SharedCache(path)
        } else if by_memdb_name {
            Self::Memdb {
                shared_cache: param("cache") == Some("shared"),
            }
        } else if path == ":memory:" {
            Self::Anonymous
        } else {
            Self::PerConnection
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SqliteMemory;

    #[test]
    fn memory_databases_are_told_by_what_sqlite_opens() {
        for (url, memory) in [
            ("blog.db", SqliteMemory::None),
            ("file:blog.db?mode=rwc", SqliteMemory::None),
            ("file:///tmp/blog.db", SqliteMemory::None),
            (":memory:", SqliteMemory::Anonymous),
            ("file::memory:", SqliteMemory::Anonymous),
            ("file::memory:?cache=private", SqliteMemory::Anonymous),
            (
                "file::memory:?cache=shared",
                SqliteMemory::SharedCache(":memory:".into()),
            ),
            (
                "file:blog?mode=memory&cache=shared",
                SqliteMemory::SharedCache("blog".into()),
            ),
            (
                "file:/blog?vfs=memdb",
                SqliteMemory::Memdb {
                    shared_cache: false,
                },
            ),
            (
                "file:/blog?cache=shared&vfs=memdb",
                SqliteMemory::Memdb { shared_cache: true },
            ),
            ("file:blog?mode=memory", SqliteMemory::PerConnection),
            ("file:blog?vfs=memdb", SqliteMemory::PerConnection),
            ("file:blog.db#mode=memory", SqliteMemory::None),
            (
                "file:/blog?vfs=memdb&mode=memory",
                SqliteMemory::PerConnection,
            ),
            ("file:/?vfs=memdb", SqliteMemory::PerConnection),
            // Percent-encoded, as SQLite decodes them.
            ("file:%3Amemory%3A", SqliteMemory::Anonymous),
            ("file:blog?mode=%6Demory", SqliteMemory::PerConnection),
            (
                "file:my%20blog?mode=memory&%63ache=shared",
                SqliteMemory::SharedCache("my blog".into()),
            ),
            (
                "file:%2Fblog?vfs=memdb",
                SqliteMemory::Memdb {
                    shared_cache: false,
                },
            ),
            // `%00` ends the path, name or value it is in.
            ("file:blog.db%00?mode=memory", SqliteMemory::PerConnection),
            ("file:blog?mode=memory%00x", SqliteMemory::PerConnection),
            ("file:blog?mode=memorx%00&cache=shared", SqliteMemory::None),
            (":memory%00", SqliteMemory::None),
            ("file::memory:%00x", SqliteMemory::Anonymous),
            ("file:blog?mode=memory%26cache=shared", SqliteMemory::None),
            // An empty filename.
            ("", SqliteMemory::Temporary),
            ("file:", SqliteMemory::Temporary),
            ("file:?cache=shared", SqliteMemory::Temporary),
            ("file://localhost", SqliteMemory::Temporary),
            ("file:%00", SqliteMemory::Temporary),
        ] {
            assert_eq!(SqliteMemory::of(url), memory, "{url}");
        }
    }

    #[test]
    fn a_memdb_name_shared_through_the_cache_is_opened_without_it() {
        for (url, opened) in [
            ("file:/blog?vfs=memdb&cache=shared", "file:/blog?vfs=memdb"),
            (
                "file:/blog?%63ache=shared&vfs=memdb",
                "file:/blog?vfs=memdb",
            ),
            (
                "file:/blog?cache=shared&vfs=memdb#x",
                "file:/blog?vfs=memdb#x",
            ),
        ] {
            assert_eq!(super::database_url(url).unwrap().1, opened, "{url}");
        }
    }

    /// The file `migrate status` checks for is the one SQLite opens.
    #[cfg(feature = "cli")]
    #[test]
    fn the_file_a_sqlite_location_names() {
        use std::path::PathBuf;
        for (url, file) in [
            ("blog.db", Some("blog.db")),
            ("/tmp/my blog.db", Some("/tmp/my blog.db")),
            ("sqlite://blog.db?mode=rwc", Some("blog.db")),
            ("sqlite:/tmp/blog.db", Some("/tmp/blog.db")),
            (
                "file:///tmp/my%20blog.db?mode=rw#x",
                Some("/tmp/my blog.db"),
            ),
            ("file://localhost/tmp/blog.db", Some("/tmp/blog.db")),
            (":memory:", None),
            ("file:/blog?vfs=memdb", None),
            ("", None),
            ("postgres://localhost/blog", None),
        ] {
            assert_eq!(super::sqlite_file(url), file.map(PathBuf::from), "{url}");
        }
    }
}
