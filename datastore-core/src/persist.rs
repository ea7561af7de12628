//! A model's reads and writes on a connection ([`Persist`]), written once for every model:
//! timestamps, the upsert and what an unchanged row returns, bulk inserts in statements under
//! the bind limit, and errors that say which parent is missing or which links refuse a
//! delete. Each model contributes only its typed statements ([`Statements`], [`Queries`],
//! [`SaveGraph`]), which the derive writes.

use std::collections::HashMap;

use diesel::connection::Connection;
use diesel::query_builder::QueryFragment;

use crate::__private::{INSERT_ROWS, Queries, SaveGraph, Statements, Writes};
use crate::backend::{CHUNK, MAX_BIND_PARAMS, dispatch, transaction};
use crate::error::{ConstraintKind, ConstraintViolation};
use crate::model::{Model, Predicate};
use crate::relations::graph::{Saved, save_once};
use crate::relations::{DeleteEffects, Purpose, plan_delete, restrict};
use crate::schema::{Dialect, KeyKind, ModelRef};
use crate::{
    AnyBackend, AnyConnection, Error, KeyValue, NativeConnection, PooledConn, Result, Timestamp,
};

/// A model's typed data access on one connection `C`.
///
/// Every model has it on `SqliteConnection`, `PgConnection`, [`AnyConnection`] and the
/// store's pooled connections. Call it through [`Repo`](crate::Repo) on a connection, or
/// through a [`Store`](crate::Store); both translate errors into [`Error`].
///
/// ```
/// use datastore::prelude::*;
/// use datastore::diesel::SqliteConnection;
///
/// #[derive(Model, Debug, Clone, PartialEq, Default)]
/// pub struct Note {
///     #[primary_key]
///     pub id: Id,
///     pub text: String,
/// }
///
/// # fn main() -> datastore::Result<()> {
/// let mut conn = SqliteConnection::establish(":memory:").unwrap();
/// Schema::new().model::<Note>().create_all(&mut conn)?;
/// let note = Note { text: "direct".into(), ..Note::default() }.save(&mut conn)?;
/// assert_eq!(<Note as Persist<SqliteConnection>>::count(&mut conn)?, 1);
/// assert!(Note::find(&mut conn, &note.id)?.is_some());
/// # Ok(())
/// # }
/// ```
pub trait Persist<C: Connection>: Model {
    /// The model's query, boxed so that it can be refined in a closure (`posts::BoxedQuery`).
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use datastore::{AnyConnection, Persist};
    ///
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// store.save(Note { text: "kept".into(), ..Note::default() })?;
    /// let query: <Note as Persist<AnyConnection>>::Query =
    ///     <Note as Persist<AnyConnection>>::query().filter(notes::text.eq("kept"));
    /// assert_eq!(Note::load(&mut store.conn()?, query)?.len(), 1);
    /// # Ok(())
    /// # }
    /// ```
    type Query;

    /// The query selecting every row, ready to be filtered and ordered.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore::diesel::{Connection, SqliteConnection};
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let mut conn = SqliteConnection::establish(":memory:").unwrap();
    /// # Schema::new().model::<Note>().create_all(&mut conn)?;
    /// // Boxed for the connection's backend: refined in closures, as `Repo::query` does.
    /// let boxed = <Note as Persist<SqliteConnection>>::query();
    /// let query = boxed.filter(notes::text.eq("hi")).order(notes::id.asc());
    /// assert!(Note::load(&mut conn, query)?.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    fn query() -> Self::Query;

    /// Runs a query built from [`Persist::query`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore::diesel::{Connection, SqliteConnection};
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let mut conn = SqliteConnection::establish(":memory:").unwrap();
    /// # Schema::new().model::<Note>().create_all(&mut conn)?;
    /// Note { text: "b".into(), ..Note::default() }.save(&mut conn)?;
    /// Note { text: "a".into(), ..Note::default() }.save(&mut conn)?;
    /// let query = <Note as Persist<SqliteConnection>>::query().order(notes::text.asc());
    /// let texts: Vec<String> = Note::load(&mut conn, query)?.into_iter().map(|n| n.text).collect();
    /// assert_eq!(texts, ["a", "b"]);
    /// # Ok(())
    /// # }
    /// ```
    fn load(conn: &mut C, query: Self::Query) -> Result<Vec<Self>>;

    /// Walks `query` as building its SQL for `backend` does, without building it or running
    /// it: the filters on related rows in it tell a live query the tables they read (see
    /// `observe::live`), wherever they were built.
    #[doc(hidden)]
    fn walk_query(query: &Self::Query, backend: &C::Backend) -> Result<()>;

    /// Every row, in key order.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore::diesel::{Connection, SqliteConnection};
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let mut conn = SqliteConnection::establish(":memory:").unwrap();
    /// # Schema::new().model::<Note>().create_all(&mut conn)?;
    /// let note = Note::default().save(&mut conn)?;
    /// assert_eq!(Note::all(&mut conn)?, vec![note]);
    /// # Ok(())
    /// # }
    /// ```
    fn all(conn: &mut C) -> Result<Vec<Self>>;

    /// The rows matching a predicate, in key order.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore::diesel::{Connection, SqliteConnection};
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let mut conn = SqliteConnection::establish(":memory:").unwrap();
    /// # Schema::new().model::<Note>().create_all(&mut conn)?;
    /// Note { text: "hi".into(), ..Note::default() }.save(&mut conn)?;
    /// let his = Note::load_where(&mut conn, Box::new(notes::text.eq("hi")))?;
    /// assert_eq!(his.len(), 1);
    /// # Ok(())
    /// # }
    /// ```
    fn load_where(conn: &mut C, predicate: Predicate<Self, C>) -> Result<Vec<Self>>;

    /// Inserts the row, or updates the row with the same primary key, and returns it as stored.
    /// A foreign key that points nowhere fails with a [`ConstraintViolation`] naming the column
    /// and the missing parent.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore::diesel::{Connection, SqliteConnection};
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let mut conn = SqliteConnection::establish(":memory:").unwrap();
    /// # Schema::new().model::<Note>().create_all(&mut conn)?;
    /// let mut note = Note { text: "draft".into(), ..Note::default() }.save(&mut conn)?;
    /// note.text = "final".into();
    /// let note = note.save(&mut conn)?;
    /// assert_eq!(Note::all(&mut conn)?, vec![note]);
    /// # Ok(())
    /// # }
    /// ```
    fn save(self, conn: &mut C) -> Result<Self>;

    /// Inserts new rows, with `created_at`/`updated_at` set to now, and returns them as
    /// written. Meant for bulk loads: multi-row `INSERT`s under 32,766 bound values, nothing
    /// read back, where [`save`](Persist::save) runs an upsert per row and
    /// returns it. On SQLite the statements hold 256, 64, 16, 4 or 1 rows, each prepared once
    /// per connection; on PostgreSQL, where each statement is a round trip, as many rows as
    /// the bind limit allows. A row whose key exists fails the whole call, as does any other
    /// violated constraint; rows spanning several statements are inserted in one transaction,
    /// so an error leaves none of them written. Unlike `save`'s, a foreign-key error does not
    /// name the row whose parent is missing. Rows of a model that refers to itself (a thread
    /// of replies) may point at each other in any order: they are inserted parents first, and
    /// returned in the order given.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore::diesel::{Connection, SqliteConnection};
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let mut conn = SqliteConnection::establish(":memory:").unwrap();
    /// # Schema::new().model::<Note>().create_all(&mut conn)?;
    /// let rows = (0..300).map(|i| Note { text: i.to_string(), ..Note::default() }).collect();
    /// let inserted = Note::insert_all(rows, &mut conn)?;
    /// assert_eq!(<Note as Persist<SqliteConnection>>::count(&mut conn)?, 300);
    /// assert_eq!(Note::find(&mut conn, &inserted[7].id)?.unwrap().text, "7");
    /// # Ok(())
    /// # }
    /// ```
    fn insert_all(rows: Vec<Self>, conn: &mut C) -> Result<Vec<Self>>;

    /// Inserts the row, never updating one: a row of its key there already is a unique
    /// violation. Links insert their join rows with it, so that a join model whose key is not
    /// fresh (a `String` key's empty default) cannot take over another link's row.
    #[doc(hidden)]
    fn insert(self, conn: &mut C) -> Result<Self>;

    /// Saves the row and, in the same transaction, every loaded relation under it: children
    /// (pointed at it, recursively) and many-to-many rows (saved, and linked if they were not).
    /// Relations not loaded are left alone. An error anywhere leaves nothing written.
    ///
    /// Each row is saved once a graph, as first reached (the row itself first, then its
    /// relation fields in order, depth first): a later copy of a row already saved, such as
    /// the stale copy of a user among the editors of the user's own loaded posts, is not saved
    /// again (nor its relations), and comes back as the row is stored.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore::diesel::{Connection, SqliteConnection};
    /// # use datastore_doc_models::{Post, posts, Comment, comments};
    /// # fn main() -> datastore::Result<()> {
    /// # let mut conn = SqliteConnection::establish(":memory:").unwrap();
    /// # Schema::new().model::<Post>().model::<Comment>().create_all(&mut conn)?;
    /// let post = Post { comments: HasMany::loaded(vec![Comment::default()]), ..Post::default() };
    /// let post = post.save_graph(&mut conn)?;
    /// assert_eq!(Comment::all(&mut conn)?[0].post_id, post.id);
    /// # Ok(())
    /// # }
    /// ```
    fn save_graph(self, conn: &mut C) -> Result<Self>;

    /// [`save_graph`](Self::save_graph) of a row reached inside a graph whose rows `saved`
    /// holds: not saved again if it is among them (see `relations::graph`).
    #[doc(hidden)]
    fn save_graph_within(self, conn: &mut C, saved: &mut Saved) -> Result<Self>;

    /// The row with this primary key.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore::diesel::{Connection, SqliteConnection};
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let mut conn = SqliteConnection::establish(":memory:").unwrap();
    /// # Schema::new().model::<Note>().create_all(&mut conn)?;
    /// let note = Note::default().save(&mut conn)?;
    /// assert_eq!(Note::find(&mut conn, &note.id)?, Some(note));
    /// assert_eq!(Note::find(&mut conn, &Id::new())?, None);
    /// # Ok(())
    /// # }
    /// ```
    fn find(conn: &mut C, key: &Self::Key) -> Result<Option<Self>>;

    /// The rows with these keys, each once, in key order (the key type's `Ord`): one statement
    /// per [`CHUNK`](crate::relations::CHUNK) keys for a key of one column; a lookup per key
    /// for a composite key (Diesel has no row-value `IN`).
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore::diesel::{Connection, SqliteConnection};
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let mut conn = SqliteConnection::establish(":memory:").unwrap();
    /// # Schema::new().model::<Note>().create_all(&mut conn)?;
    /// let a = Note::default().save(&mut conn)?;
    /// let b = Note::default().save(&mut conn)?;
    /// let found = Note::find_many(&mut conn, &[a.id, b.id, Id::new()])?;
    /// assert_eq!(found.len(), 2); // the missing key finds nothing
    /// # Ok(())
    /// # }
    /// ```
    fn find_many(conn: &mut C, keys: &[Self::Key]) -> Result<Vec<Self>>;

    /// The number of rows.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore::diesel::{Connection, SqliteConnection};
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let mut conn = SqliteConnection::establish(":memory:").unwrap();
    /// # Schema::new().model::<Note>().create_all(&mut conn)?;
    /// Note::default().save(&mut conn)?;
    /// assert_eq!(<Note as Persist<SqliteConnection>>::count(&mut conn)?, 1);
    /// # Ok(())
    /// # }
    /// ```
    fn count(conn: &mut C) -> Result<usize>;

    /// Deletes the row with this primary key (and, through `ON DELETE CASCADE`, its children);
    /// returns whether there was one. A delete that links refuse, here or further down the
    /// cascade, fails with [`Error::DeleteRestricted`] and deletes nothing.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore::diesel::{Connection, SqliteConnection};
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let mut conn = SqliteConnection::establish(":memory:").unwrap();
    /// # Schema::new().model::<Note>().create_all(&mut conn)?;
    /// let note = Note::default().save(&mut conn)?;
    /// assert!(Note::delete_by_id(&mut conn, &note.id)?);
    /// assert!(!Note::delete_by_id(&mut conn, &note.id)?); // gone already
    /// # Ok(())
    /// # }
    /// ```
    fn delete_by_id(conn: &mut C, key: &Self::Key) -> Result<bool>;

    /// The number of rows matching the predicate.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore::diesel::{Connection, SqliteConnection};
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let mut conn = SqliteConnection::establish(":memory:").unwrap();
    /// # Schema::new().model::<Note>().create_all(&mut conn)?;
    /// Note { text: "hi".into(), ..Note::default() }.save(&mut conn)?;
    /// Note::default().save(&mut conn)?;
    /// assert_eq!(Note::count_where(&mut conn, Box::new(notes::text.eq("hi")))?, 1);
    /// # Ok(())
    /// # }
    /// ```
    fn count_where(conn: &mut C, predicate: Predicate<Self, C>) -> Result<usize>;

    /// Deletes the rows matching the predicate; returns how many. Refused as
    /// [`delete_by_id`](Persist::delete_by_id) is, naming the first refused row.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore::diesel::{Connection, SqliteConnection};
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let mut conn = SqliteConnection::establish(":memory:").unwrap();
    /// # Schema::new().model::<Note>().create_all(&mut conn)?;
    /// Note { text: "tmp".into(), ..Note::default() }.save(&mut conn)?;
    /// Note::default().save(&mut conn)?;
    /// assert_eq!(Note::delete_where(&mut conn, Box::new(notes::text.eq("tmp")))?, 1);
    /// assert_eq!(<Note as Persist<SqliteConnection>>::count(&mut conn)?, 1);
    /// # Ok(())
    /// # }
    /// ```
    fn delete_where(conn: &mut C, predicate: Predicate<Self, C>) -> Result<usize>;

    /// What deleting the row with this key would do, read in one read transaction (or in the
    /// transaction open on `conn`); [`Error::NotFound`] if there is no such row,
    /// [`Error::CascadeTooDeep`] if the delete would fail so: see
    /// [`Repo::preview_delete`](crate::Repo::preview_delete).
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore::diesel::{Connection, SqliteConnection};
    /// # use datastore_doc_models::{Course, courses, Student, students, Enrolment, enrolments};
    /// # fn main() -> datastore::Result<()> {
    /// # let mut conn = SqliteConnection::establish(":memory:").unwrap();
    /// # Schema::new().model::<Course>().model::<Student>().model::<Enrolment>().create_all(&mut conn)?;
    /// let course = Course::default().save(&mut conn)?;
    /// let student = Student::default().save(&mut conn)?;
    /// course.link_students(&mut conn, &student)?;
    ///
    /// let effects = Course::preview_delete(&mut conn, &course.id)?;
    /// assert_eq!(effects.refused_by_rows_of("enrolments"), 1);
    /// # Ok(())
    /// # }
    /// ```
    fn preview_delete(conn: &mut C, key: &Self::Key) -> Result<DeleteEffects>;

    /// In one transaction, deletes the links that refuse the delete of the row with this key
    /// (the join rows linking it, or linking the rows its cascade removes), then the row;
    /// returns what that did, the rows the links' own delete cascades to included.
    /// [`Error::NotFound`] if there is no such row; [`Error::DeleteRestricted`], with nothing
    /// deleted, if a row that is no link refuses the delete (a child declared
    /// `on_delete = restrict`, or a row that keeps a link).
    ///
    /// A link is a row whose refusing foreign key is one of a pair its table makes unique
    /// together, as a join model's pair is (by its unique index, or as its key).
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore::diesel::{Connection, SqliteConnection};
    /// # use datastore_doc_models::{Course, courses, Student, students, Enrolment, enrolments};
    /// # fn main() -> datastore::Result<()> {
    /// # let mut conn = SqliteConnection::establish(":memory:").unwrap();
    /// # Schema::new().model::<Course>().model::<Student>().model::<Enrolment>().create_all(&mut conn)?;
    /// let course = Course::default().save(&mut conn)?;
    /// let student = Student::default().save(&mut conn)?;
    /// course.link_students(&mut conn, &student)?;
    ///
    /// Course::unlink_and_delete(&mut conn, &course.id)?;
    /// assert!(Enrolment::all(&mut conn)?.is_empty());
    /// assert_eq!(Student::all(&mut conn)?.len(), 1);
    /// # Ok(())
    /// # }
    /// ```
    fn unlink_and_delete(conn: &mut C, key: &Self::Key) -> Result<DeleteEffects>;
}

/// On a backend's own connection: the model's statements, with the behaviour every model
/// shares around them.
#[diagnostic::do_not_recommend]
impl<M, C> Persist<C> for M
where
    C: NativeConnection,
    M: Statements<C> + Queries<C> + SaveGraph<C> + for<'a> Writes<'a, C>,
    <M as Queries<C>>::Query: QueryFragment<C::Backend>,
{
    type Query = <M as Queries<C>>::Query;

    fn query() -> Self::Query {
        <M as Queries<C>>::query()
    }

    fn load(conn: &mut C, query: Self::Query) -> Result<Vec<Self>> {
        conn.own(|conn| Ok(<M as Queries<C>>::load(conn, query)?))
    }

    fn walk_query(query: &Self::Query, backend: &C::Backend) -> Result<()> {
        walk(query, backend)
    }

    fn all(conn: &mut C) -> Result<Vec<Self>> {
        conn.own(|conn| Ok(<M as Statements<C>>::all(conn)?))
    }

    fn load_where(conn: &mut C, predicate: Predicate<Self, C>) -> Result<Vec<Self>> {
        conn.own(|conn| Ok(<M as Queries<C>>::load_where(conn, predicate)?))
    }

    fn save(mut self, conn: &mut C) -> Result<Self> {
        conn.own(|conn| {
            stamp(std::slice::from_mut(&mut self));
            // A new row whose key the database assigns is inserted without one; any other row is
            // inserted or updated by its key.
            let saved = if self.has_unassigned_key() {
                conn.run_returning(|conn| self.insert_unkeyed(conn))
                    .map(Some)
            } else {
                conn.run_returning(|conn| self.upsert(conn))
            };
            match saved.map_err(Error::from) {
                Ok(Some(stored)) => Ok(stored),
                // Unchanged: nothing was written; the stored row is the answer.
                Ok(None) => <M as Statements<C>>::find(conn, &self.key())?
                    .ok_or_else(|| Error::not_found(M::TABLE_NAME, self.key().describe())),
                Err(Error::Constraint(mut violation))
                    if violation.kind == ConstraintKind::ForeignKey =>
                {
                    missing_parent(conn, &self, &mut violation);
                    Err(Error::Constraint(violation))
                }
                Err(e) => Err(e),
            }
        })
    }

    fn insert(mut self, conn: &mut C) -> Result<Self> {
        conn.own(|conn| {
            stamp(std::slice::from_mut(&mut self));
            // The row the database gave a key, or none for this one as it is.
            let inserted = if self.has_unassigned_key() {
                conn.run_returning(|conn| self.insert_unkeyed(conn))
                    .map(Some)
                    .map_err(Error::from)
            } else {
                insert_keyed(std::slice::from_ref(&self), conn).map(|()| None)
            };
            match inserted {
                Ok(stored) => Ok(stored.unwrap_or(self)),
                Err(Error::Constraint(mut violation))
                    if violation.kind == ConstraintKind::ForeignKey =>
                {
                    missing_parent(conn, &self, &mut violation);
                    Err(Error::Constraint(violation))
                }
                Err(e) => Err(e),
            }
        })
    }

    fn insert_all(mut rows: Vec<Self>, conn: &mut C) -> Result<Vec<Self>> {
        conn.own(|conn| {
            stamp(&mut rows);
            if !rows.iter().any(M::has_unassigned_key) {
                let (rows, order) = parents_first(rows);
                let statements = insert_statements::<M, C>(rows.len());
                let inserted = if statements > 1 {
                    transaction(conn, |conn| insert_keyed(&rows, conn))
                } else {
                    insert_keyed(&rows, conn)
                };
                return match inserted {
                    Ok(()) => Ok(in_given_order(rows, order)),
                    Err(e) => Err(explained(conn, &rows, e)),
                };
            }
            // Rows waiting for the keys the database assigns: the others go first, then these,
            // whose keys come back.
            let waiting: Vec<bool> = rows.iter().map(M::has_unassigned_key).collect();
            let (mut unkeyed, keyed): (Vec<Self>, Vec<Self>) =
                rows.into_iter().partition(M::has_unassigned_key);
            let (keyed, order) = parents_first(keyed);
            // A row of nothing but the key the database assigns is a statement of its own
            // (`DEFAULT VALUES`): rows spanning several statements go in one transaction.
            let unkeyed_statements = if M::declaration().columns().len() == 1 {
                unkeyed.len()
            } else {
                insert_statements::<M, C>(unkeyed.len())
            };
            let statements = insert_statements::<M, C>(keyed.len()) + unkeyed_statements;
            let mut insert = |conn: &mut C| -> Result<()> {
                insert_keyed(&keyed, conn)?;
                insert_unkeyed(&mut unkeyed, conn)
            };
            let inserted = if statements > 1 {
                transaction(conn, insert)
            } else {
                insert(conn)
            };
            if let Err(e) = inserted {
                return Err(explained(conn, keyed.iter().chain(&unkeyed), e));
            }
            let keyed = in_given_order(keyed, order);
            let (mut unkeyed, mut keyed) = (unkeyed.into_iter(), keyed.into_iter());
            Ok(waiting
                .into_iter()
                .filter_map(|waited| if waited { unkeyed.next() } else { keyed.next() })
                .collect())
        })
    }

    fn save_graph(self, conn: &mut C) -> Result<Self> {
        conn.own(|conn| save_once(self, conn, &mut Saved::default()))
    }

    fn save_graph_within(self, conn: &mut C, saved: &mut Saved) -> Result<Self> {
        save_once(self, conn, saved)
    }

    fn find(conn: &mut C, key: &Self::Key) -> Result<Option<Self>> {
        conn.own(|conn| Ok(<M as Statements<C>>::find(conn, key)?))
    }

    fn find_many(conn: &mut C, keys: &[Self::Key]) -> Result<Vec<Self>> {
        conn.own(|conn| {
            // Each key once, whichever chunk it falls in.
            let mut keys = keys.to_vec();
            keys.sort_unstable();
            keys.dedup();
            let mut rows = Vec::with_capacity(keys.len());
            for chunk in keys.chunks(CHUNK) {
                rows.extend(M::find_in(conn, chunk)?);
            }
            // In key order across chunks and for composite keys (looked up one by one), and by
            // the keys' own order where a database collates text otherwise.
            if !rows.is_sorted_by_key(Model::key) {
                rows.sort_by_cached_key(Model::key);
            }
            Ok(rows)
        })
    }

    fn count(conn: &mut C) -> Result<usize> {
        conn.own(|conn| row_count(<M as Statements<C>>::count(conn)?))
    }

    fn delete_by_id(conn: &mut C, key: &Self::Key) -> Result<bool> {
        conn.own(|conn| match conn.scoped(|conn| M::delete_key(conn, key)) {
            Ok(deleted) => Ok(deleted > 0),
            Err(e) => Err(restrict::explain(
                conn,
                M::declaration(),
                e.into(),
                vec![key.clone()],
            )),
        })
    }

    fn count_where(conn: &mut C, predicate: Predicate<Self, C>) -> Result<usize> {
        conn.own(|conn| row_count(<M as Queries<C>>::count_where(conn, predicate)?))
    }

    fn delete_where(conn: &mut C, predicate: Predicate<Self, C>) -> Result<usize> {
        conn.own(|conn| {
            match conn.scoped(|conn| <M as Queries<C>>::delete_where(conn, &predicate)) {
                Ok(deleted) => Ok(deleted),
                Err(e) => Err(refused_where(
                    conn,
                    e.into(),
                    |conn| conn.scoped(|conn| M::keys_where(conn, &predicate)),
                    |conn, error, roots| restrict::explain(conn, M::declaration(), error, roots),
                )),
            }
        })
    }

    fn preview_delete(conn: &mut C, key: &Self::Key) -> Result<DeleteEffects> {
        conn.own(|conn| {
            let plan = |conn: &mut C| {
                plan_delete(conn, M::declaration(), key, Purpose::Preview)?
                    .ok_or_else(|| Error::not_found(M::TABLE_NAME, key.describe()))
            };
            let read = conn.read_transaction(plan)?;
            if conn.dialect() != Dialect::Sqlite || !read.may_cascade_too_deep() {
                return Ok(read.effects);
            }
            // SQLite follows a cascade as nested triggers, each row's actions inside the one that
            // reached it, in an order of its own: whether one through a cycle of tables goes too
            // deep is found by deleting and undoing it, with the right to write held from the
            // start.
            let tried: Result<DeleteEffects> = conn.write_transaction(|conn| {
                let plan = plan(conn)?;
                if plan.may_cascade_too_deep() {
                    delete_and_undo::<M, C>(conn, key)?;
                }
                Ok(plan.effects)
            });
            match tried {
                // A connection that may not write (lent beside a store transaction, or on a
                // read-only database) previews what it can read.
                Err(e) if e.is_read_only_refusal() => Ok(read.effects),
                tried => tried,
            }
        })
    }

    fn unlink_and_delete(conn: &mut C, key: &Self::Key) -> Result<DeleteEffects> {
        conn.own(|conn| {
            conn.write_transaction(|conn| {
                let plan = plan_delete(conn, M::declaration(), key, Purpose::Unlink)?
                    .ok_or_else(|| Error::not_found(M::TABLE_NAME, key.describe()))?;
                if let Some(blocked) = plan.blocked() {
                    return Err(Error::DeleteRestricted {
                        table: M::TABLE_NAME.to_owned(),
                        key: key.describe(),
                        join_table: blocked.table.clone(),
                        via: blocked.via.clone(),
                        count: blocked.rows,
                    });
                }
                plan.unlink(conn)?;
                match <M as Persist<C>>::delete_by_id(conn, key) {
                    Ok(true) => Ok(plan.effects),
                    Ok(false) => Err(Error::not_found(M::TABLE_NAME, key.describe())),
                    // Refused by a row the plan did not see: committed by another transaction
                    // since it read (PostgreSQL). Run again, it unlinks it or names it.
                    Err(refused)
                        if matches!(refused, Error::DeleteRestricted { .. })
                            || restrict::refused(&refused) =>
                    {
                        Err(Error::Conflict {
                            message: format!(
                                "a row committed meanwhile refused the delete: {refused}"
                            ),
                        })
                    }
                    Err(error) => Err(error),
                }
            })
        })
    }
}

/// Deletes the row of `M` with this key and undoes it at once, in a savepoint: `Ok` if the
/// delete succeeds, its error if it fails.
fn delete_and_undo<M: Statements<C>, C: NativeConnection>(
    conn: &mut C,
    key: &M::Key,
) -> Result<()> {
    /// How the savepoint ends: rolled back either way.
    enum Tried {
        Deleted,
        Failed(Error),
    }
    impl From<diesel::result::Error> for Tried {
        fn from(e: diesel::result::Error) -> Self {
            Tried::Failed(e.into())
        }
    }
    match transaction(conn, |conn| {
        M::delete_key(conn, key)?;
        Err::<(), _>(Tried::Deleted)
    }) {
        Ok(()) | Err(Tried::Deleted) => Ok(()),
        Err(Tried::Failed(e)) => Err(e),
    }
}

/// The error of a `delete_where` that failed with `error`: if links refused it, explained by
/// `explain` with the keys of the rows it was to delete (read by `keys`); otherwise, or if the
/// keys cannot be read, `error` itself.
fn refused_where<C, K>(
    conn: &mut C,
    error: Error,
    keys: impl FnOnce(&mut C) -> diesel::QueryResult<Vec<K>>,
    explain: impl FnOnce(&mut C, Error, Vec<K>) -> Error,
) -> Error {
    if !restrict::refused(&error) {
        return error;
    }
    match keys(conn) {
        Ok(roots) => explain(conn, error, roots),
        Err(_) => error,
    }
}

/// How many statements [`insert_keyed`] (and [`insert_unkeyed`]) take for `rows` rows.
fn insert_statements<M: Model, C: NativeConnection>(rows: usize) -> usize {
    statement_sizes::<M, C>(rows).count()
}

/// The numbers of rows of the statements inserting `rows` rows, each under the bind limit. On
/// SQLite, the sizes prepared once per connection ([`INSERT_ROWS`]), largest first; where a
/// statement costs a round trip (`Native::ROUND_TRIPS`), as few statements as the
/// bind limit allows (ten rows: one statement, not four of 4, 4, 1 and 1 rows).
fn statement_sizes<M: Model, C: NativeConnection>(rows: usize) -> impl Iterator<Item = usize> {
    let limit = rows_per_statement(M::declaration().columns().len());
    let mut rest = rows;
    std::iter::from_fn(move || {
        let size = if C::ROUND_TRIPS {
            rest.min(limit)
        } else {
            INSERT_ROWS
                .into_iter()
                .find(|&size| size <= rest && size <= limit)?
        };
        rest -= size;
        (size > 0).then_some(size)
    })
}

/// How many rows of `columns` bound values one statement holds.
fn rows_per_statement(columns: usize) -> usize {
    MAX_BIND_PARAMS / columns.max(1)
}

/// `rows` in an order to insert them in, parents first: a row whose foreign key to its own
/// table points at another of them comes after it (SQLite checks a foreign key at the end of
/// each statement, and rows beyond one statement's take several), rows otherwise in the order
/// given; with the order given, where it changed, for [`in_given_order`]. Rows that point at
/// each other in a cycle are placed in some order (none inserts them a statement at a time).
/// Only rows keyed before they are inserted are ordered: no row can point at one whose key
/// the database has yet to assign.
fn parents_first<M: Model>(rows: Vec<M>) -> (Vec<M>, Option<Vec<usize>>) {
    let own = ModelRef::of::<M>();
    let self_keys: Vec<usize> = M::declaration()
        .belongs_to()
        .iter()
        .enumerate()
        .filter(|(_, fk)| fk.parent == own)
        .map(|(i, _)| i)
        .collect();
    let points_at_own = |row: &M| self_keys.iter().any(|&fk| row.foreign_key(fk).is_some());
    if rows.len() < 2 || !rows.iter().any(points_at_own) {
        return (rows, None);
    }
    // Keys told by their text: a parent's key is one column (a composite key cannot be one),
    // whose text is the key's alone.
    let position: HashMap<String, usize> = rows
        .iter()
        .enumerate()
        .map(|(i, row)| (row.key().describe(), i))
        .collect();
    let parents: Vec<Vec<usize>> = rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            self_keys
                .iter()
                .filter_map(|&fk| position.get(&row.foreign_key(fk)?.describe()).copied())
                .filter(|&parent| parent != i)
                .collect()
        })
        .collect();
    if parents
        .iter()
        .enumerate()
        .all(|(i, of_i)| of_i.iter().all(|&parent| parent < i))
    {
        return (rows, None);
    }
    // Depth first, each row after its parents (without recursion: a thread can be a chain as
    // long as the batch).
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Visiting,
        Placed,
    }
    let mut marks = vec![Mark::New; rows.len()];
    let mut order = Vec::with_capacity(rows.len());
    for root in 0..rows.len() {
        let mut stack = vec![(root, 0)];
        while let Some((row, next)) = stack.pop() {
            if next == 0 {
                if marks[row] != Mark::New {
                    continue;
                }
                marks[row] = Mark::Visiting;
            }
            match parents[row].get(next) {
                Some(&parent) => {
                    stack.push((row, next + 1));
                    // A parent being visited closes a cycle: no order satisfies it.
                    if marks[parent] == Mark::New {
                        stack.push((parent, 0));
                    }
                }
                None => {
                    marks[row] = Mark::Placed;
                    order.push(row);
                }
            }
        }
    }
    let mut slots: Vec<Option<M>> = rows.into_iter().map(Some).collect();
    let ordered = order
        .iter()
        .map(|&i| slots[i].take().expect("each row placed once"))
        .collect();
    (ordered, Some(order))
}

/// Rows [`parents_first`] ordered, back in the order they were given.
fn in_given_order<M>(rows: Vec<M>, order: Option<Vec<usize>>) -> Vec<M> {
    let Some(order) = order else {
        return rows;
    };
    let mut slots: Vec<Option<M>> = (0..rows.len()).map(|_| None).collect();
    for (row, i) in rows.into_iter().zip(order) {
        slots[i] = Some(row);
    }
    slots
        .into_iter()
        .map(|row| row.expect("each row given back once"))
        .collect()
}

/// Inserts rows that have their keys: one row with a statement of fixed shape, more in the
/// multi-row statements [`statement_sizes`] gives. On PostgreSQL, keys given to a model whose
/// database assigns keys move its sequence past them, in the same transaction as the rows: the
/// rows are not written if the sequence cannot be moved (a role without `UPDATE` on it).
fn insert_keyed<M, C>(rows: &[M], conn: &mut C) -> Result<()>
where
    C: NativeConnection,
    M: for<'a> Writes<'a, C>,
{
    if rows.is_empty() {
        return Ok(());
    }
    if !(C::KEYS_FROM_SEQUENCE && M::declaration().key_kind() == KeyKind::Assigned) {
        return insert_rows(rows, conn);
    }
    let insert_and_move = |conn: &mut C| -> Result<()> {
        insert_rows(rows, conn)?;
        if let Some(largest) = rows.iter().map(M::key).max() {
            let table = M::table();
            conn.keys_assigned_past(&table.name, &table.primary_key[0], &largest)?;
        }
        Ok(())
    };
    // Inside a transaction already (the caller's, or `insert_all`'s), they stand or fall
    // with it.
    if crate::backend::in_transaction(conn) {
        insert_and_move(conn)
    } else {
        transaction(conn, insert_and_move)
    }
}

/// [`insert_keyed`]'s statements.
fn insert_rows<M, C>(rows: &[M], conn: &mut C) -> Result<()>
where
    C: NativeConnection,
    M: for<'a> Writes<'a, C>,
{
    match rows {
        [] => {}
        [row] => {
            row.insert_one(conn)?;
        }
        rows => {
            let mut rest = rows;
            for size in statement_sizes::<M, C>(rows.len()) {
                let (chunk, more) = rest.split_at(size);
                M::insert_many(chunk, conn)?;
                rest = more;
            }
        }
    }
    Ok(())
}

/// Inserts rows whose keys the database assigns, and returns them with their keys. A
/// statement's keys are assigned in the order of its rows, each larger than the last (one
/// past the largest rowid on SQLite, the sequence's next on PostgreSQL): sorted, they are the
/// rows' in order, whatever order `RETURNING` gives them in.
/// Inserts rows that wait for the keys the database assigns, and gives each its key.
fn insert_unkeyed<M, C>(rows: &mut [M], conn: &mut C) -> Result<()>
where
    C: NativeConnection,
    M: for<'a> Writes<'a, C>,
{
    // One row: a statement of fixed shape, which Diesel prepares only once.
    if let [row] = rows {
        *row = conn.run_returning(|conn| row.insert_unkeyed(conn))?;
        return Ok(());
    }
    // The statements `statement_sizes` gives, as for rows that have their keys (each binds
    // one value fewer a row).
    let mut rest = rows;
    for size in statement_sizes::<M, C>(rest.len()) {
        let (chunk, more) = rest.split_at_mut(size);
        let mut keys = conn.run_returning(|conn| M::insert_many_unkeyed(chunk, conn))?;
        keys.sort_unstable();
        for (row, key) in chunk.iter_mut().zip(keys) {
            row.assign_key(key);
        }
        rest = more;
    }
    Ok(())
}

/// Sets the rows' timestamps to now (read once, and only for a model that has them).
fn stamp<M: Model>(rows: &mut [M]) {
    if M::declaration().timestamps().any() {
        let now = Timestamp::now();
        for row in rows {
            row.touch(now);
        }
    }
}

/// `error`, a failure to insert `rows`: a foreign-key violation names the first row whose
/// parent does not exist, as [`missing_parent`] finds it.
fn explained<'r, M: Model + 'r, C: NativeConnection>(
    conn: &mut C,
    rows: impl IntoIterator<Item = &'r M>,
    error: Error,
) -> Error {
    match error {
        Error::Constraint(mut violation) if violation.kind == ConstraintKind::ForeignKey => {
            for row in rows {
                if missing_parent(conn, row, &mut violation) != Lookup::Exists {
                    break;
                }
            }
            Error::Constraint(violation)
        }
        other => other,
    }
}

/// What looking up a row's parents found.
#[derive(Debug, PartialEq, Eq)]
enum Lookup {
    /// Each parent exists.
    Exists,
    /// One does not: the violation now names its column.
    Missing,
    /// The connection could not tell.
    Unknown,
}

/// A foreign-key violation of writing `row`, naming the column whose parent does not exist.
/// On PostgreSQL the failure aborted an enclosing transaction and the lookup fails too: the
/// server's own message, which names the constraint, then stands.
fn missing_parent<M: Model, C: NativeConnection>(
    conn: &mut C,
    row: &M,
    violation: &mut ConstraintViolation,
) -> Lookup {
    for (i, belongs_to) in M::declaration().belongs_to().iter().enumerate() {
        let Some(key) = row.foreign_key(i) else {
            continue;
        };
        let parent = belongs_to.parent.declaration();
        match conn.row_exists(parent.table_name(), parent.primary_key()[0], key) {
            Ok(true) => {}
            Ok(false) => {
                violation.table = Some(M::TABLE_NAME.into());
                violation.column = Some(belongs_to.column.into());
                violation.message = format!(
                    "{}.{} references {} '{}', which does not exist",
                    M::TABLE_NAME,
                    belongs_to.column,
                    parent.table_name(),
                    key.describe(),
                );
                return Lookup::Missing;
            }
            Err(_) => return Lookup::Unknown,
        }
    }
    Lookup::Exists
}

/// Walks `query` as building its SQL does, with Diesel's pass that only asks whether the
/// statement may be cached: every part of the query is visited, and no SQL is written.
fn walk<Q: QueryFragment<DB>, DB: diesel::backend::Backend>(query: &Q, backend: &DB) -> Result<()> {
    query.is_safe_to_cache_prepared(backend)?;
    Ok(())
}

/// On the multi-backend connection: what the model knows in full runs on the backend's own
/// connection inside, where its statements are prepared and decoded without run-time dispatch
/// per value; queries built by the caller run on the multi-backend connection.
#[diagnostic::do_not_recommend]
impl<M> Persist<AnyConnection> for M
where
    M: Queries<AnyConnection> + Persist<diesel::SqliteConnection> + Persist<diesel::PgConnection>,
    <M as Queries<AnyConnection>>::Query: QueryFragment<AnyBackend>,
{
    type Query = <M as Queries<AnyConnection>>::Query;

    fn query() -> Self::Query {
        <M as Queries<AnyConnection>>::query()
    }

    fn load(conn: &mut AnyConnection, query: Self::Query) -> Result<Vec<Self>> {
        Ok(<M as Queries<AnyConnection>>::load(conn, query)?)
    }

    fn walk_query(query: &Self::Query, backend: &AnyBackend) -> Result<()> {
        walk(query, backend)
    }

    fn all(conn: &mut AnyConnection) -> Result<Vec<Self>> {
        dispatch!(conn, |c| <M as Persist<_>>::all(c))
    }

    fn load_where(
        conn: &mut AnyConnection,
        predicate: Predicate<Self, AnyConnection>,
    ) -> Result<Vec<Self>> {
        Ok(<M as Queries<AnyConnection>>::load_where(conn, predicate)?)
    }

    fn save(self, conn: &mut AnyConnection) -> Result<Self> {
        dispatch!(conn, |c| <M as Persist<_>>::save(self, c))
    }

    fn insert_all(rows: Vec<Self>, conn: &mut AnyConnection) -> Result<Vec<Self>> {
        dispatch!(conn, |c| <M as Persist<_>>::insert_all(rows, c))
    }

    fn insert(self, conn: &mut AnyConnection) -> Result<Self> {
        dispatch!(conn, |c| <M as Persist<_>>::insert(self, c))
    }

    fn save_graph(self, conn: &mut AnyConnection) -> Result<Self> {
        dispatch!(conn, |c| <M as Persist<_>>::save_graph(self, c))
    }

    fn save_graph_within(self, conn: &mut AnyConnection, saved: &mut Saved) -> Result<Self> {
        dispatch!(conn, |c| <M as Persist<_>>::save_graph_within(
            self, c, saved
        ))
    }

    fn find(conn: &mut AnyConnection, key: &Self::Key) -> Result<Option<Self>> {
        dispatch!(conn, |c| <M as Persist<_>>::find(c, key))
    }

    fn find_many(conn: &mut AnyConnection, keys: &[Self::Key]) -> Result<Vec<Self>> {
        dispatch!(conn, |c| <M as Persist<_>>::find_many(c, keys))
    }

    fn count(conn: &mut AnyConnection) -> Result<usize> {
        dispatch!(conn, |c| <M as Persist<_>>::count(c))
    }

    fn delete_by_id(conn: &mut AnyConnection, key: &Self::Key) -> Result<bool> {
        dispatch!(conn, |c| <M as Persist<_>>::delete_by_id(c, key))
    }

    fn preview_delete(conn: &mut AnyConnection, key: &Self::Key) -> Result<DeleteEffects> {
        dispatch!(conn, |c| <M as Persist<_>>::preview_delete(c, key))
    }

    fn unlink_and_delete(conn: &mut AnyConnection, key: &Self::Key) -> Result<DeleteEffects> {
        dispatch!(conn, |c| <M as Persist<_>>::unlink_and_delete(c, key))
    }

    fn count_where(
        conn: &mut AnyConnection,
        predicate: Predicate<Self, AnyConnection>,
    ) -> Result<usize> {
        row_count(<M as Queries<AnyConnection>>::count_where(conn, predicate)?)
    }

    fn delete_where(
        conn: &mut AnyConnection,
        predicate: Predicate<Self, AnyConnection>,
    ) -> Result<usize> {
        match conn.scoped(|conn| <M as Queries<AnyConnection>>::delete_where(conn, &predicate)) {
            Ok(deleted) => Ok(deleted),
            // The refused rows are found with the caller's condition, on this connection; the
            // rest of the explanation runs on the backend's own.
            Err(e) => Err(refused_where(
                conn,
                e.into(),
                |conn| conn.scoped(|conn| M::keys_where(conn, &predicate)),
                |conn, error, roots| {
                    dispatch!(conn, |c| restrict::explain(
                        c,
                        M::declaration(),
                        error,
                        roots
                    ))
                },
            )),
        }
    }
}

/// A connection taken from a [`Store`](crate::Store)'s pool is a connection in its own right
/// (Diesel implements `Connection` for it): every model's methods work on it directly, as they
/// do on the [`AnyConnection`] inside.
#[diagnostic::do_not_recommend]
impl<M: Persist<AnyConnection>> Persist<PooledConn> for M {
    type Query = <M as Persist<AnyConnection>>::Query;

    fn query() -> Self::Query {
        <M as Persist<AnyConnection>>::query()
    }

    fn load(conn: &mut PooledConn, query: Self::Query) -> Result<Vec<Self>> {
        <M as Persist<AnyConnection>>::load(conn, query)
    }

    fn walk_query(query: &Self::Query, backend: &AnyBackend) -> Result<()> {
        <M as Persist<AnyConnection>>::walk_query(query, backend)
    }

    fn all(conn: &mut PooledConn) -> Result<Vec<Self>> {
        <M as Persist<AnyConnection>>::all(conn)
    }

    fn load_where(
        conn: &mut PooledConn,
        predicate: Predicate<Self, PooledConn>,
    ) -> Result<Vec<Self>> {
        <M as Persist<AnyConnection>>::load_where(conn, predicate)
    }

    fn save(self, conn: &mut PooledConn) -> Result<Self> {
        <M as Persist<AnyConnection>>::save(self, conn)
    }

    fn insert_all(rows: Vec<Self>, conn: &mut PooledConn) -> Result<Vec<Self>> {
        <M as Persist<AnyConnection>>::insert_all(rows, conn)
    }

    fn insert(self, conn: &mut PooledConn) -> Result<Self> {
        <M as Persist<AnyConnection>>::insert(self, conn)
    }

    fn save_graph(self, conn: &mut PooledConn) -> Result<Self> {
        <M as Persist<AnyConnection>>::save_graph(self, conn)
    }

    fn save_graph_within(self, conn: &mut PooledConn, saved: &mut Saved) -> Result<Self> {
        <M as Persist<AnyConnection>>::save_graph_within(self, conn, saved)
    }

    fn find(conn: &mut PooledConn, key: &Self::Key) -> Result<Option<Self>> {
        <M as Persist<AnyConnection>>::find(conn, key)
    }

    fn find_many(conn: &mut PooledConn, keys: &[Self::Key]) -> Result<Vec<Self>> {
        <M as Persist<AnyConnection>>::find_many(conn, keys)
    }

    fn count(conn: &mut PooledConn) -> Result<usize> {
        <M as Persist<AnyConnection>>::count(conn)
    }

    fn delete_by_id(conn: &mut PooledConn, key: &Self::Key) -> Result<bool> {
        <M as Persist<AnyConnection>>::delete_by_id(conn, key)
    }

    fn preview_delete(conn: &mut PooledConn, key: &Self::Key) -> Result<DeleteEffects> {
        <M as Persist<AnyConnection>>::preview_delete(conn, key)
    }

    fn unlink_and_delete(conn: &mut PooledConn, key: &Self::Key) -> Result<DeleteEffects> {
        <M as Persist<AnyConnection>>::unlink_and_delete(conn, key)
    }

    fn count_where(conn: &mut PooledConn, predicate: Predicate<Self, PooledConn>) -> Result<usize> {
        <M as Persist<AnyConnection>>::count_where(conn, predicate)
    }

    fn delete_where(
        conn: &mut PooledConn,
        predicate: Predicate<Self, PooledConn>,
    ) -> Result<usize> {
        <M as Persist<AnyConnection>>::delete_where(conn, predicate)
    }
}

/// A `COUNT(*)` as a collection's length: SQL counts are `BIGINT`, never negative, and no
/// table a `usize` cannot count fits in memory or on disk of a machine with that `usize`.
fn row_count(count: i64) -> Result<usize> {
    usize::try_from(count).map_err(|_| Error::Conversion {
        column: None,
        message: format!("row count {count} out of range"),
    })
}
