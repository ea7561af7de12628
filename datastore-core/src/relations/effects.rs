//! What deleting a row does, found before it is done: the rows it removes down the whole
//! cascade, the rows whose foreign key it sets to `NULL`, and the rows that refuse it.
//!
//! The foreign keys are read from the catalog, as the database applies them, and the rows are
//! followed from the deleted one level by level: each level's rows are read by the foreign
//! key that reaches them, with the values they reference written into the statement as
//! literals the database rendered itself (SQLite's `quote`, PostgreSQL's `format('%L')` with
//! the column's type), so that every key type round-trips exactly and the foreign key's index
//! is used. A row is known by its physical identity (SQLite's `rowid`, PostgreSQL's `ctid`),
//! which holds within the one transaction the reading runs in: a row reached twice (two
//! paths, a self-reference) counts once, and a cycle ends.
//!
//! [`plan`] runs inside a transaction its caller opened: a read transaction for
//! [`Persist::preview_delete`](crate::Persist::preview_delete), the delete's own for
//! [`Persist::unlink_and_delete`](crate::Persist::unlink_and_delete).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;

use crate::backend::CHUNK;
use crate::schema::ddl::{Dialect, quote_ident};
use crate::schema::{ForeignKey, ModelDeclaration, OnDelete};
use crate::{KeyValue, NativeConnection};

/// What deleting a row does, down the whole cascade: what
/// [`Repo::preview_delete`](crate::Repo::preview_delete) finds before a delete, and what
/// [`Repo::unlink_and_delete`](crate::Repo::unlink_and_delete) did.
///
/// ```
/// use datastore::prelude::*;
///
/// #[derive(Model, Debug, Clone, PartialEq, Default)]
/// pub struct Author {
///     #[primary_key]
///     pub id: Id,
///     #[has_many(Book)]
///     pub books: HasMany<Book>,
/// }
///
/// #[derive(Model, Debug, Clone, PartialEq, Default)]
/// pub struct Book {
///     #[primary_key]
///     pub id: Id,
///     #[belongs_to(Author)]
///     pub author_id: Id,
/// }
///
/// # fn main() -> datastore::Result<()> {
/// let store = Store::builder(":memory:")
///     .schema(Schema::new().model::<Author>().model::<Book>())
///     .open()?;
/// let author = store.save(Author::default())?;
/// store.save(Book { author_id: author.id, ..Book::default() })?;
/// store.save(Book { author_id: author.id, ..Book::default() })?;
///
/// let effects = store.preview_delete::<Author>(&author.id)?;
/// assert_eq!(effects.removed_from("authors"), 1);
/// assert_eq!(effects.removed_from("books"), 2);
/// assert!(!effects.is_refused());
/// assert_eq!(store.count::<Book>()?, 2, "a preview deletes nothing");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeleteEffects {
    /// The rows the delete removes, per table: the deleted row's table first, then the tables
    /// `ON DELETE CASCADE` reaches, in the order it reaches them.
    pub removed: Vec<AffectedRows>,
    /// The rows that stay, with the named foreign key set to `NULL` (`on_delete = set_null`).
    pub set_null: Vec<AffectedRows>,
    /// The rows that refuse the delete, per table and foreign key: join rows of a
    /// many-to-many, or any row whose foreign key restricts deletes. While there is one, a
    /// delete fails with [`Error::DeleteRestricted`](crate::Error::DeleteRestricted) and
    /// changes nothing; [`Repo::unlink_and_delete`](crate::Repo::unlink_and_delete) deletes
    /// them first when they are links (join rows), and refuses otherwise.
    pub refused_by: Vec<AffectedRows>,
}

/// Rows of one table a delete reaches: see [`DeleteEffects`].
///
/// ```
/// # use datastore::prelude::*;
/// # #[derive(Model, Debug, Clone, PartialEq, Default)]
/// # pub struct Author { #[primary_key] pub id: Id, #[has_many(Book)] pub books: HasMany<Book> }
/// # #[derive(Model, Debug, Clone, PartialEq, Default)]
/// # pub struct Book { #[primary_key] pub id: Id, #[belongs_to(Author)] pub author_id: Id }
/// # fn main() -> datastore::Result<()> {
/// # let store = Store::builder(":memory:")
/// #     .schema(Schema::new().model::<Author>().model::<Book>())
/// #     .open()?;
/// let author = store.save(Author::default())?;
/// store.save(Book { author_id: author.id, ..Book::default() })?;
/// let effects = store.preview_delete::<Author>(&author.id)?;
/// let tables: Vec<(&str, usize)> = effects.removed.iter().map(|r| (r.table.as_str(), r.rows)).collect();
/// assert_eq!(tables, [("authors", 1), ("books", 1)]);
/// assert_eq!(effects.removed[1].column, None);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AffectedRows {
    /// The table.
    pub table: String,
    /// The foreign key by which the delete reaches them; `None` for removed rows.
    pub column: Option<String>,
    /// How many rows.
    pub rows: usize,
}

impl DeleteEffects {
    /// How many rows of `table` the delete removes.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # #[derive(Model, Debug, Clone, PartialEq, Default)]
    /// # pub struct Author { #[primary_key] pub id: Id, #[has_many(Book)] pub books: HasMany<Book> }
    /// # #[derive(Model, Debug, Clone, PartialEq, Default)]
    /// # pub struct Book { #[primary_key] pub id: Id, #[belongs_to(Author)] pub author_id: Id }
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:")
    /// #     .schema(Schema::new().model::<Author>().model::<Book>())
    /// #     .open()?;
    /// let author = store.save(Author::default())?;
    /// store.save(Book { author_id: author.id, ..Book::default() })?;
    /// let effects = store.preview_delete::<Author>(&author.id)?;
    /// assert_eq!(effects.removed_from("books"), 1);
    /// assert_eq!(effects.removed_from("nowhere"), 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn removed_from(&self, table: &str) -> usize {
        count_in(&self.removed, table)
    }

    /// How many rows of `table` the delete leaves with a foreign key set to `NULL`.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # #[derive(Model, Debug, Clone, PartialEq, Default)]
    /// # pub struct Author { #[primary_key] pub id: Id }
    /// # #[derive(Model, Debug, Clone, PartialEq, Default)]
    /// # pub struct Book { #[primary_key] pub id: Id, #[belongs_to(Author, on_delete = set_null)] pub author_id: Option<Id> }
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:")
    /// #     .schema(Schema::new().model::<Author>().model::<Book>())
    /// #     .open()?;
    /// let author = store.save(Author::default())?;
    /// store.save(Book { author_id: Some(author.id), ..Book::default() })?;
    /// let effects = store.preview_delete::<Author>(&author.id)?;
    /// assert_eq!(effects.set_null_in("books"), 1);
    /// assert_eq!(effects.removed_from("books"), 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_null_in(&self, table: &str) -> usize {
        count_in(&self.set_null, table)
    }

    /// How many rows of `table` refuse the delete.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Course, courses, Student, students, Enrolment, enrolments};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:")
    /// #     .schema(Schema::new().model::<Course>().model::<Student>().model::<Enrolment>())
    /// #     .open()?;
    /// let course = store.save(Course::default())?;
    /// let student = store.save(Student::default())?;
    /// course.link_students(&mut store.conn()?, &student)?;
    /// let effects = store.preview_delete::<Course>(&course.id)?;
    /// assert_eq!(effects.refused_by_rows_of("enrolments"), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn refused_by_rows_of(&self, table: &str) -> usize {
        count_in(&self.refused_by, table)
    }

    /// Whether rows refuse the delete: a plain delete would fail and change nothing.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Course, courses, Student, students, Enrolment, enrolments};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:")
    /// #     .schema(Schema::new().model::<Course>().model::<Student>().model::<Enrolment>())
    /// #     .open()?;
    /// let course = store.save(Course::default())?;
    /// assert!(!store.preview_delete::<Course>(&course.id)?.is_refused());
    /// let student = store.save(Student::default())?;
    /// course.link_students(&mut store.conn()?, &student)?;
    /// assert!(store.preview_delete::<Course>(&course.id)?.is_refused());
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_refused(&self) -> bool {
        !self.refused_by.is_empty()
    }
}

fn count_in(rows: &[AffectedRows], table: &str) -> usize {
    rows.iter()
        .filter(|r| r.table == table)
        .map(|r| r.rows)
        .sum()
}

impl fmt::Display for DeleteEffects {
    /// `removes posts: 1, comments: 3; sets NULL in comments.author_id: 2; refused by
    /// post_editors.post_id: 1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |rows: &[AffectedRows]| {
            rows.iter()
                .map(|r| match &r.column {
                    Some(column) => format!("{}.{column}: {}", r.table, r.rows),
                    None => format!("{}: {}", r.table, r.rows),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        if self.removed.is_empty() {
            f.write_str("removes nothing")?;
        } else {
            write!(f, "removes {}", list(&self.removed))?;
        }
        if !self.set_null.is_empty() {
            write!(f, "; sets NULL in {}", list(&self.set_null))?;
        }
        if !self.refused_by.is_empty() {
            write!(f, "; refused by {}", list(&self.refused_by))?;
        }
        Ok(())
    }
}

/// What a [`plan`] is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A plain delete's preview: the rows that refuse it are counted, and nothing below them.
    Preview,
    /// An unlink and delete: the links that refuse it are deleted first, so what their delete
    /// does is followed too; any other row that refuses it refuses it whole.
    Unlink,
}

/// A delete's effects, and what [`Plan::unlink`] needs to remove the links that refuse it.
pub(crate) struct Plan {
    pub effects: DeleteEffects,
    /// Per refusing link's foreign key, its table and column and the literals of the values
    /// it references among the rows the delete removes (for [`Purpose::Unlink`] only).
    refusing: Vec<(String, String, Vec<String>)>,
    /// The first rows found that refuse the delete and are no links, for
    /// [`Purpose::Unlink`]: nothing may delete them.
    blocked: Option<Blocked>,
    /// Whether the cascade goes round a cycle of tables.
    cyclic: bool,
}

/// Rows that refuse an unlink and delete: see [`Plan::blocked`].
pub(crate) struct Blocked {
    /// Their table.
    pub table: String,
    /// The table of the rows they reference, when the delete cascades to those rather than
    /// refers to the deleted row itself.
    pub via: Option<String>,
    /// How many of them.
    pub rows: usize,
}

impl Plan {
    /// Rows that refuse the delete and are no links, which [`Plan::unlink`] leaves: the
    /// delete would fail on them.
    pub fn blocked(&self) -> Option<&Blocked> {
        self.blocked.as_ref()
    }

    /// Whether the delete may go deeper than SQLite follows a cascade
    /// ([`Error::CascadeTooDeep`](crate::Error::CascadeTooDeep)): one level is a row at least,
    /// and a cascade through tables that do not cycle is no deeper than they are many.
    pub fn may_cascade_too_deep(&self) -> bool {
        let reached: usize = self
            .effects
            .removed
            .iter()
            .chain(&self.effects.set_null)
            .map(|rows| rows.rows)
            .sum();
        self.cyclic
            && !self.effects.is_refused()
            && reached >= crate::Error::SQLITE_CASCADE_LIMIT as usize
    }

    /// Deletes the links that refuse the delete (and, by the database's own rules, what
    /// their delete cascades to): the last reached first, so that a link below another goes
    /// before it.
    pub fn unlink<C: NativeConnection>(&self, conn: &mut C) -> diesel::QueryResult<()> {
        for (table, column, literals) in self.refusing.iter().rev() {
            for chunk in literals.chunks(CHUNK) {
                conn.batch_execute(&format!(
                    "DELETE FROM {} WHERE {} IN ({})",
                    quote_ident(table),
                    quote_ident(column),
                    chunk.join(", ")
                ))?;
            }
        }
        Ok(())
    }
}

/// The rows reached so far of one table, or by one foreign key, by their identities.
type Reached = HashSet<String>;

/// What deleting the row of `deleted`'s table keyed `key` does, planned for `purpose`; `None`
/// when there is no such row.
pub(crate) fn plan<C: NativeConnection>(
    conn: &mut C,
    deleted: &ModelDeclaration,
    key: &dyn KeyValue,
    purpose: Purpose,
) -> diesel::QueryResult<Option<Plan>> {
    let foreign_keys = conn.catalog_foreign_keys()?;
    let links = match purpose {
        Purpose::Preview => Vec::new(),
        Purpose::Unlink => link_columns(&foreign_keys, &conn.catalog_unique_pairs()?),
    };
    let reading = Reading {
        dialect: conn.dialect(),
        foreign_keys: &foreign_keys,
    };
    let root = deleted.table_name();
    let matches_key = deleted
        .primary_key()
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let placeholder = match reading.dialect {
                Dialect::Sqlite => "?".to_owned(),
                Dialect::Postgres => format!("${}", i + 1),
            };
            format!("{} = {placeholder}", quote_ident(column))
        })
        .collect::<Vec<_>>()
        .join(" AND ");
    let rows = conn.reached_rows(&reading.select(root, &matches_key), Some(key))?;
    if rows.is_empty() {
        return Ok(None);
    }

    // Tables in the order the cascade reaches them, with their rows.
    let mut removed: Vec<(&str, Reached)> = vec![(root, Reached::default())];
    let mut set_null: Vec<((&str, &str), Reached)> = Vec::new();
    let mut refused: Vec<((&str, &str), Reached)> = Vec::new();
    // The links an unlink deletes, by the values their key references, in the order they
    // were reached.
    let mut refusing = Vec::new();
    // The rows that refuse an unlink and delete (no links), by table, key, and the table of
    // the rows they reference when those are not the deleted row itself.
    let mut blocking: Vec<(Refusing, Reached)> = Vec::new();
    // Rows reached whose children are yet to be read: their table, a referenced column, its
    // values as literals, and whether they are the deleted row itself.
    let mut pending: VecDeque<Pending> = VecDeque::new();
    reading.reach(root, rows, &mut removed[0].1, true, &mut pending)?;

    while let Some((parent, column, literals, deleted_row)) = pending.pop_front() {
        for (child, fk) in reading.referencing(parent, column) {
            for chunk in literals.chunks(CHUNK) {
                let condition = format!("{} IN ({})", quote_ident(&fk.column), chunk.join(", "));
                let rows = conn.reached_rows(&reading.select(child, &condition), None)?;
                if rows.is_empty() {
                    continue;
                }
                let at = (child, &*fk.column);
                match fk.on_delete {
                    OnDelete::Cascade => {
                        let reached = entry(&mut removed, child);
                        reading.reach(child, rows, reached, false, &mut pending)?;
                    }
                    OnDelete::SetNull => {
                        let reached = entry(&mut set_null, at);
                        reached.extend(rows.into_iter().map(|(id, _)| id));
                    }
                    // A link an unlink deletes: what its delete does follows.
                    OnDelete::Restrict if links.contains(&at) => {
                        let reached = entry(&mut refused, at);
                        reading.reach(child, rows, reached, false, &mut pending)?;
                        refusing.push((child.to_owned(), fk.column.to_string(), chunk.to_vec()));
                    }
                    OnDelete::Restrict => {
                        let ids: Vec<String> = rows.into_iter().map(|(id, _)| id).collect();
                        if purpose == Purpose::Unlink {
                            let via = (!deleted_row).then_some(parent);
                            entry(&mut blocking, (child, at.1, via)).extend(ids.iter().cloned());
                        }
                        entry(&mut refused, at).extend(ids);
                    }
                }
            }
        }
    }

    let removed_rows: HashMap<&str, &HashSet<String>> =
        removed.iter().map(|(t, r)| (*t, r)).collect();
    let nothing = Reached::default();
    let removed_from = |table: &str| removed_rows.get(table).copied().unwrap_or(&nothing);
    // Links deleted are no rows set to NULL.
    let mut unlinked: HashMap<&str, Reached> = HashMap::new();
    for ((table, column), reached) in &refused {
        if links.contains(&(*table, *column)) {
            unlinked
                .entry(table)
                .or_default()
                .extend(reached.iter().cloned());
        }
    }
    let affected = |(table, column): (&str, &str), rows: usize| AffectedRows {
        table: table.to_owned(),
        column: Some(column.to_owned()),
        rows,
    };
    let refused_by = {
        // Each row once, under the first key that reached it; for an unlink, none the
        // delete removes anyway.
        let mut counted: HashMap<&str, Reached> = HashMap::new();
        refused
            .iter()
            .map(|(at, reached)| {
                let counted = counted.entry(at.0).or_insert_with(|| match purpose {
                    Purpose::Preview => Reached::default(),
                    Purpose::Unlink => removed_from(at.0).clone(),
                });
                let new = reached
                    .iter()
                    .filter(|id| counted.insert((*id).clone()))
                    .count();
                affected(*at, new)
            })
            .filter(|rows| rows.rows > 0)
            .collect()
    };
    let effects = DeleteEffects {
        set_null: set_null
            .iter()
            .map(|(at, reached)| {
                // A row the delete removes is not set to NULL.
                let gone = |id: &String| {
                    removed_from(at.0).contains(id)
                        || unlinked.get(at.0).is_some_and(|rows| rows.contains(id))
                };
                affected(*at, reached.iter().filter(|id| !gone(id)).count())
            })
            .filter(|rows| rows.rows > 0)
            .collect(),
        refused_by,
        removed: removed
            .iter()
            .map(|(table, reached)| AffectedRows {
                table: (*table).to_owned(),
                column: None,
                rows: reached.len(),
            })
            .collect(),
    };
    let blocked = blocking.first().map(|((table, _, via), reached)| Blocked {
        table: (*table).to_owned(),
        via: via.map(str::to_owned),
        rows: reached.len(),
    });
    Ok(Some(Plan {
        effects,
        refusing,
        blocked,
        cyclic: cascades_in_a_cycle(&foreign_keys, removed.iter().map(|(table, _)| *table)),
    }))
}

/// Whether the cascade among `tables` goes round a cycle (a table whose rows cascade, through
/// those tables, to rows of its own, as a self-reference does): only then can it go deeper
/// than there are tables.
fn cascades_in_a_cycle<'a>(
    foreign_keys: &'a [(String, ForeignKey)],
    tables: impl Iterator<Item = &'a str>,
) -> bool {
    let tables: Vec<&str> = tables.collect();
    // Each table's cascades to the others: `(parent, child)`.
    let edges: Vec<(&str, &str)> = foreign_keys
        .iter()
        .filter(|(child, fk)| {
            fk.on_delete == OnDelete::Cascade
                && tables.contains(&child.as_str())
                && tables.contains(&&*fk.references)
        })
        .map(|(child, fk)| (&*fk.references, child.as_str()))
        .collect();
    let children = |parent: &str| {
        edges
            .iter()
            .filter(|(p, _)| *p == parent)
            .map(|(_, child)| *child)
            .collect::<Vec<_>>()
    };
    // From each table, the tables its cascades reach: a cycle reaches its start again.
    tables.iter().any(|&start| {
        let mut seen: Vec<&str> = Vec::new();
        let mut next = children(start);
        while let Some(table) = next.pop() {
            if table == start {
                return true;
            }
            if !seen.contains(&table) {
                seen.push(table);
                next.extend(children(table));
            }
        }
        false
    })
}

/// Rows that refuse an unlink and delete: their table, their key, and the table of the rows
/// they reference when those are not the deleted row itself.
type Refusing<'a> = (&'a str, &'a str, Option<&'a str>);

/// A table's rows reached whose children are yet to be read: the table, a column other
/// tables' foreign keys reference, its values as literals, and whether the rows are the
/// deleted row itself.
type Pending<'a> = (&'a str, &'a str, Vec<String>, bool);

/// The foreign keys, `(table, column)`, by which rows link two rows: the catalog's
/// single-column foreign keys that a unique index pairs with another one of their table, as
/// a join model's pair is (by its unique index, or as its primary key).
fn link_columns<'a>(
    foreign_keys: &'a [(String, ForeignKey)],
    unique_pairs: &[(String, String, String)],
) -> Vec<(&'a str, &'a str)> {
    let foreign_key = |table: &str, column: &str| {
        foreign_keys
            .iter()
            .find(|(t, fk)| t == table && fk.column == column)
            .map(|(t, fk)| (t.as_str(), &*fk.column))
    };
    let mut links = Vec::new();
    for (table, a, b) in unique_pairs {
        if let (Some(a), Some(b)) = (foreign_key(table, a), foreign_key(table, b)) {
            links.extend([a, b]);
        }
    }
    links
}

/// The entry of `at` in a list kept in the order entries were first made.
fn entry<K: PartialEq + Copy, V: Default>(list: &mut Vec<(K, V)>, at: K) -> &mut V {
    let i = match list.iter().position(|(k, _)| *k == at) {
        Some(i) => i,
        None => {
            list.push((at, V::default()));
            list.len() - 1
        }
    };
    &mut list[i].1
}

/// How rows are read along the catalog's foreign keys.
struct Reading<'a> {
    dialect: Dialect,
    foreign_keys: &'a [(String, ForeignKey)],
}

impl<'a> Reading<'a> {
    /// The foreign keys referencing `table`'s `column`, with their tables.
    fn referencing(
        &self,
        table: &'a str,
        column: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a ForeignKey)> + use<'a> {
        self.foreign_keys
            .iter()
            .filter(move |(_, fk)| fk.references == table && fk.referenced_column == column)
            .map(|(child, fk)| (child.as_str(), fk))
    }

    /// `table`'s columns other tables' foreign keys reference.
    fn referenced_columns(&self, table: &str) -> Vec<&'a str> {
        let mut columns: Vec<&str> = Vec::new();
        for (_, fk) in self.foreign_keys {
            if fk.references == table && !columns.contains(&&*fk.referenced_column) {
                columns.push(&fk.referenced_column);
            }
        }
        columns
    }

    /// Reads `table`'s rows matching `condition`: each row's identity, and the values of its
    /// referenced columns as literals, in a JSON array.
    fn select(&self, table: &str, condition: &str) -> String {
        let literals = self
            .referenced_columns(table)
            .into_iter()
            .map(|column| {
                let column = quote_ident(column);
                match self.dialect {
                    Dialect::Sqlite => format!("quote({column})"),
                    Dialect::Postgres => format!("format('%L::%s', {column}, pg_typeof({column}))"),
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        let (id, array) = match self.dialect {
            Dialect::Sqlite => ("CAST(rowid AS TEXT)", format!("json_array({literals})")),
            Dialect::Postgres => ("ctid::text", format!("json_build_array({literals})::text")),
        };
        format!(
            "SELECT {id} AS id, {array} AS literals FROM {} WHERE {condition}",
            quote_ident(table)
        )
    }

    /// Records `rows` of `table` as reached (`deleted_row`: they are the deleted row); those
    /// not reached before have their children read next.
    fn reach(
        &self,
        table: &'a str,
        rows: Vec<(String, String)>,
        reached: &mut Reached,
        deleted_row: bool,
        pending: &mut VecDeque<Pending<'a>>,
    ) -> diesel::QueryResult<()> {
        let columns = self.referenced_columns(table);
        let mut literals: Vec<Vec<String>> = vec![Vec::new(); columns.len()];
        for (id, row_literals) in rows {
            if !reached.insert(id) {
                continue;
            }
            let row_literals: Vec<String> = serde_json::from_str(&row_literals)
                .map_err(|e| diesel::result::Error::DeserializationError(e.into()))?;
            for (column, literal) in literals.iter_mut().zip(row_literals) {
                column.push(literal);
            }
        }
        for (column, literals) in columns.into_iter().zip(literals) {
            if !literals.is_empty() {
                pending.push_back((table, column, literals, deleted_row));
            }
        }
        Ok(())
    }
}
