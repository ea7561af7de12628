//! The one error type of the crate.
//!
//! Every fallible operation returns [`Result<T>`](Result). The variants separate what a caller
//! can act on: a missing row, a violated constraint, a busy database, a failed migration, a
//! connection that could not be made, and a delete that links still block.

use std::fmt;

use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// The result type of every fallible operation in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when talking to the store.
///
/// ```
/// use datastore::{ConstraintKind, Error};
///
/// fn describe(err: &Error) -> &'static str {
///     match err {
///         Error::NotFound { .. } => "no such row",
///         Error::Constraint(c) if c.kind == ConstraintKind::Unique => "duplicate",
///         Error::Busy { .. } => "try again later",
///         _ => "something else",
///     }
/// }
/// # let _ = describe;
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A row that was required does not exist.
    #[error("{table} '{key}' not found")]
    NotFound {
        /// The table that was searched.
        table: String,
        /// The primary key that was looked up.
        key: String,
    },

    /// A write violated a constraint of the schema; nothing of it was written.
    #[error(transparent)]
    Constraint(#[from] ConstraintViolation),

    /// A delete was refused because rows of a many-to-many join table still link to the row.
    ///
    /// Join rows are never deleted implicitly: unlink them first.
    #[error(
        "cannot delete {table} '{key}': {count} row{plural} in {join_table} still link{verb} to it; \
         unlink {them} first",
        plural = if *count == 1 { "" } else { "s" },
        verb = if *count == 1 { "s" } else { "" },
        them = if *count == 1 { "it" } else { "them" }
    )]
    DeleteRestricted {
        /// The table of the row that was to be deleted.
        table: String,
        /// The primary key of that row.
        key: String,
        /// The join table whose rows still reference it.
        join_table: String,
        /// How many join rows reference it.
        count: i64,
    },

    /// The database stayed locked by another connection for longer than the busy timeout.
    #[error("database is busy: {message}; another connection held the lock past the busy timeout, retry later")]
    Busy {
        /// The database's own message (SQLite's `database is locked`, PostgreSQL's
        /// `canceling statement due to lock timeout`).
        message: String,
    },

    /// The transaction lost a conflict with a concurrent one: PostgreSQL's serialization
    /// failure (SQLSTATE 40001) or deadlock (40P01). Nothing it wrote will remain:
    /// `Store::transaction` has rolled it back (in a transaction of your own, roll back); running
    /// the whole transaction again is safe and usually succeeds.
    #[error("transaction conflict: {message}; roll back and run the transaction again")]
    Conflict {
        /// The server's message.
        message: String,
    },

    /// Running or generating migrations failed; the failing migration left nothing behind.
    #[error("migration failed: {0}")]
    Migration(String),

    /// A connection could not be opened or taken from the pool.
    #[error("cannot connect to {url}: {message}")]
    Connection {
        /// The database the store was opened on.
        url: String,
        /// What went wrong.
        message: String,
    },

    /// A live query's feed of changes was lost: on PostgreSQL, the store's listener lost its
    /// connection (a server restart, an administrator ending it). Changes committed since may
    /// have been missed, and the subscription delivers nothing more: read the data again and
    /// subscribe again (a new subscription starts a new listener).
    #[error(
        "the change feed was lost ({reason}); changes committed since may have been missed: \
         read the data again and subscribe again"
    )]
    FeedLost {
        /// What happened to the feed.
        reason: String,
    },

    /// A value could not be converted to or from its column (Diesel does not say which).
    #[error("cannot convert a stored value: {0}")]
    Conversion(String),

    /// The build lacks a capability the call needs; the message says how to turn it on.
    #[error("unsupported: {0}")]
    Unsupported(String),

    /// Reading or writing files (migrations) failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Any other error reported by the database or by Diesel.
    #[error(transparent)]
    Database(DieselError),
}

/// Which kind of constraint a write violated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConstraintKind {
    /// A `UNIQUE` constraint or primary key.
    Unique,
    /// A `FOREIGN KEY`: the referenced row does not exist, or a row still references this one.
    ForeignKey,
    /// A `CHECK` constraint, such as the set of values an enum column allows.
    Check,
    /// A `NOT NULL` constraint.
    NotNull,
}

impl fmt::Display for ConstraintKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unique => "unique",
            Self::ForeignKey => "foreign key",
            Self::Check => "check",
            Self::NotNull => "not null",
        })
    }
}

/// A write that the database refused because it broke a constraint.
///
/// `table` and `column` are filled where the database names them (SQLite names them for
/// unique and not-null violations) or where the store knows them (a `belongs_to` whose parent
/// does not exist).
///
/// ```
/// use datastore::prelude::*;
/// use datastore::ConstraintKind;
///
/// #[derive(Model, Debug, Clone, PartialEq, Default)]
/// pub struct Account {
///     #[primary_key]
///     pub id: Id,
///     #[unique]
///     pub email: String,
/// }
///
/// # fn main() -> datastore::Result<()> {
/// let store = Store::builder(":memory:").schema(Schema::new().model::<Account>()).open()?;
/// store.save(Account { email: "a@example.com".into(), ..Account::default() })?;
/// let err = store.save(Account { email: "a@example.com".into(), ..Account::default() }).unwrap_err();
/// let violation = err.constraint().unwrap();
/// assert_eq!(violation.kind, ConstraintKind::Unique);
/// assert_eq!(violation.column.as_deref(), Some("email"));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} constraint violated{}: {message}", self.location())]
pub struct ConstraintViolation {
    /// The kind of constraint.
    pub kind: ConstraintKind,
    /// The table the constraint belongs to, when known.
    pub table: Option<String>,
    /// The column the constraint is on, when known.
    pub column: Option<String>,
    /// The database's own message.
    pub message: String,
}

impl ConstraintViolation {
    fn location(&self) -> String {
        match (&self.table, &self.column) {
            (Some(t), Some(c)) => format!(" on {t}.{c}"),
            (Some(t), None) => format!(" on {t}"),
            _ => String::new(),
        }
    }

    /// Builds a violation from SQLite's message, which reads
    /// `UNIQUE constraint failed: posts.title` or `CHECK constraint failed: <expr>`.
    fn from_message(kind: ConstraintKind, message: &str) -> Self {
        let (table, column) = match message.split_once("constraint failed: ") {
            Some((_, names))
                if matches!(kind, ConstraintKind::Unique | ConstraintKind::NotNull) =>
            {
                // Several columns are listed comma-separated; keep the first table and all columns.
                let mut table = None;
                let mut columns = Vec::new();
                for name in names.split(", ") {
                    if let Some((t, c)) = name.split_once('.') {
                        table.get_or_insert_with(|| t.to_owned());
                        columns.push(c.to_owned());
                    }
                }
                (table, (!columns.is_empty()).then(|| columns.join(", ")))
            }
            _ => (None, None),
        };
        Self {
            kind,
            table,
            column,
            message: message.to_owned(),
        }
    }
}

impl Error {
    /// The constraint violation behind this error, if it is one.
    pub fn constraint(&self) -> Option<&ConstraintViolation> {
        match self {
            Self::Constraint(c) => Some(c),
            _ => None,
        }
    }

    /// Whether this error reports a busy or locked database (worth retrying later).
    pub fn is_busy(&self) -> bool {
        matches!(self, Self::Busy { .. })
    }

    /// Whether running the same work again may succeed: [`Error::Busy`] and
    /// [`Error::Conflict`], after which nothing of the failed attempt remains.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Busy { .. } | Self::Conflict { .. })
    }

    pub(crate) fn not_found(table: &str, key: impl fmt::Display) -> Self {
        Self::NotFound {
            table: table.to_owned(),
            key: key.to_string(),
        }
    }
}

impl From<DieselError> for Error {
    fn from(err: DieselError) -> Self {
        match err {
            DieselError::DatabaseError(kind, info) => {
                let message = info.message().to_owned();
                let constraint = match kind {
                    DatabaseErrorKind::UniqueViolation => Some(ConstraintKind::Unique),
                    DatabaseErrorKind::ForeignKeyViolation => Some(ConstraintKind::ForeignKey),
                    DatabaseErrorKind::CheckViolation => Some(ConstraintKind::Check),
                    DatabaseErrorKind::NotNullViolation => Some(ConstraintKind::NotNull),
                    // SQLite reports an `ON DELETE RESTRICT` violation with a generic code.
                    _ if message.starts_with("FOREIGN KEY constraint failed") => {
                        Some(ConstraintKind::ForeignKey)
                    }
                    _ => None,
                };
                if let Some(kind) = constraint {
                    let mut violation = ConstraintViolation::from_message(kind, &message);
                    // Servers that report the names structurally (PostgreSQL) fill them here.
                    if violation.table.is_none() {
                        violation.table = info.table_name().map(str::to_owned);
                    }
                    if violation.column.is_none() {
                        violation.column = info.column_name().map(str::to_owned);
                    }
                    return Self::Constraint(violation);
                }
                if is_busy_message(&message) {
                    return Self::Busy { message };
                }
                if matches!(kind, DatabaseErrorKind::SerializationFailure)
                    || is_conflict_message(&message)
                {
                    return Self::Conflict { message };
                }
                Self::Database(DieselError::DatabaseError(kind, info))
            }
            DieselError::DeserializationError(e) | DieselError::SerializationError(e) => {
                Self::Conversion(e.to_string())
            }
            other => Self::Database(other),
        }
    }
}

/// SQLite reports `SQLITE_BUSY` and `SQLITE_LOCKED` only through their messages in Diesel 2.3,
/// and PostgreSQL's `lock_not_available` (55P03, from `lock_timeout`) has no kind of its own.
fn is_busy_message(message: &str) -> bool {
    message.starts_with("database is locked")
        || message.starts_with("database table is locked")
        || message.starts_with("database schema is locked")
        || message.starts_with("database is busy")
        || message.starts_with("canceling statement due to lock timeout")
}

/// PostgreSQL's deadlock (40P01) has no kind of its own in Diesel 2.3 either.
fn is_conflict_message(message: &str) -> bool {
    message.starts_with("deadlock detected")
}

impl From<r2d2::Error> for Error {
    fn from(err: r2d2::Error) -> Self {
        Self::Connection {
            url: String::new(),
            message: err.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_message_names_table_and_column() {
        let v = ConstraintViolation::from_message(
            ConstraintKind::Unique,
            "UNIQUE constraint failed: users.username",
        );
        assert_eq!(v.table.as_deref(), Some("users"));
        assert_eq!(v.column.as_deref(), Some("username"));
        assert_eq!(
            v.to_string(),
            "unique constraint violated on users.username: UNIQUE constraint failed: users.username"
        );
    }

    #[test]
    fn delete_restricted_message_says_what_to_do() {
        let err = Error::DeleteRestricted {
            table: "posts".into(),
            key: "abc".into(),
            join_table: "post_editors".into(),
            count: 2,
        };
        assert_eq!(
            err.to_string(),
            "cannot delete posts 'abc': 2 rows in post_editors still link to it; unlink them first"
        );
    }
}
