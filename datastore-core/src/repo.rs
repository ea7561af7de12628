//! Typed model methods on a plain Diesel connection.

use diesel::connection::Connection;

use crate::model::IntoPredicate;
use crate::persist::Persist;
use crate::relations::DeleteEffects;
use crate::trace::Operation;
use crate::{Error, KeyValue, Result};

/// The typed methods of every model, on a Diesel connection.
///
/// Implemented for `SqliteConnection`, `PgConnection` and [`AnyConnection`](crate::AnyConnection)
/// (another connection type gets it with an empty `impl Repo for MyConnection {}`), so code that already uses Diesel can read and write
/// models on its own connections, inside its own transactions. [`Store`](crate::Store) offers
/// the same methods on its pool.
///
/// Each method runs in a `tracing` span of target `datastore` (its model, the operation, the
/// rows it read or wrote, how long it took): see the crate's documentation on tracing.
///
/// ```
/// use datastore::prelude::*;
/// use datastore::diesel::{Connection, SqliteConnection};
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
///
/// let note = conn.save(Note { text: "hello".into(), ..Note::default() })?;
/// assert_eq!(conn.find::<Note>(&note.id)?, Some(note.clone()));
/// assert_eq!(conn.count::<Note>()?, 1);
/// conn.delete(&note)?;
/// assert_eq!(conn.count::<Note>()?, 0);
/// # Ok(())
/// # }
/// ```
pub trait Repo: Connection + Sized {
    /// Inserts the row, or updates the row with the same primary key, and returns it as stored
    /// (with `created_at`/`updated_at` maintained). Saving a row that did not change writes
    /// nothing.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// let mut conn = store.conn()?;
    /// let mut note = conn.save(Note { text: "draft".into(), ..Note::default() })?;
    /// note.text = "final".into();
    /// let note = conn.save(note)?; // the same key: an update
    /// assert_eq!(conn.all::<Note>()?, vec![note]);
    /// # Ok(())
    /// # }
    /// ```
    fn save<M: Persist<Self>>(&mut self, model: M) -> Result<M> {
        Operation::new(M::TABLE_NAME, "save").run(|| model.save(self), |_| 1)
    }

    /// Inserts new rows in as few statements as the backend allows, without reading them
    /// back, and returns them with their timestamps set; see [`Persist::insert_all`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// let mut conn = store.conn()?;
    /// let notes = (0..1000).map(|i| Note { text: format!("note {i}"), ..Note::default() });
    /// let inserted = conn.insert_all(notes.collect())?;
    /// assert_eq!(conn.count::<Note>()?, 1000);
    /// assert_eq!(conn.find::<Note>(&inserted[999].id)?, Some(inserted[999].clone()));
    /// # Ok(())
    /// # }
    /// ```
    fn insert_all<M: Persist<Self>>(&mut self, rows: Vec<M>) -> Result<Vec<M>> {
        Operation::new(M::TABLE_NAME, "insert_all").run(|| M::insert_all(rows, self), Vec::len)
    }

    /// Saves the row with its loaded relations, in one transaction; see [`Persist::save_graph`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Post, posts, Comment, comments};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:")
    /// #     .schema(Schema::new().model::<Post>().model::<Comment>())
    /// #     .open()?;
    /// let mut conn = store.conn()?;
    /// let post = Post { comments: HasMany::loaded(vec![Comment::default()]), ..Post::default() };
    /// let post = conn.save_graph(post)?;
    /// assert_eq!(post.comments.get().unwrap()[0].post_id, post.id);
    /// assert_eq!(conn.count::<Comment>()?, 1);
    /// # Ok(())
    /// # }
    /// ```
    fn save_graph<M: Persist<Self>>(&mut self, model: M) -> Result<M> {
        Operation::new(M::TABLE_NAME, "save_graph").run(|| model.save_graph(self), |_| 1)
    }

    /// The row with this primary key, if there is one.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// let mut conn = store.conn()?;
    /// let note = conn.save(Note::default())?;
    /// assert_eq!(conn.find::<Note>(&note.id)?, Some(note));
    /// assert_eq!(conn.find::<Note>(&Id::new())?, None);
    /// # Ok(())
    /// # }
    /// ```
    fn find<M: Persist<Self>>(&mut self, key: &M::Key) -> Result<Option<M>> {
        Operation::new(M::TABLE_NAME, "find").run(|| M::find(self, key), |row| row.iter().len())
    }

    /// The row with this primary key, or [`Error::NotFound`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// let mut conn = store.conn()?;
    /// let note = conn.save(Note { text: "hi".into(), ..Note::default() })?;
    /// assert_eq!(conn.get::<Note>(&note.id)?.text, "hi");
    /// assert!(matches!(conn.get::<Note>(&Id::new()), Err(datastore::Error::NotFound { .. })));
    /// # Ok(())
    /// # }
    /// ```
    fn get<M: Persist<Self>>(&mut self, key: &M::Key) -> Result<M> {
        Operation::new(M::TABLE_NAME, "get").run(
            || M::find(self, key)?.ok_or_else(|| Error::not_found(M::TABLE_NAME, key.describe())),
            |_| 1,
        )
    }

    /// Every row of the model's table, in primary-key order.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// let mut conn = store.conn()?;
    /// let a = conn.save(Note { text: "a".into(), ..Note::default() })?;
    /// let b = conn.save(Note { text: "b".into(), ..Note::default() })?;
    /// let mut expected = vec![a, b];
    /// expected.sort_by_key(|n| n.id); // in primary-key order
    /// assert_eq!(conn.all::<Note>()?, expected);
    /// # Ok(())
    /// # }
    /// ```
    fn all<M: Persist<Self>>(&mut self) -> Result<Vec<M>> {
        Operation::new(M::TABLE_NAME, "all").run(|| M::all(self), Vec::len)
    }

    /// The rows of a query refined from the model's boxed query.
    ///
    /// `conn.query::<Post>(|q| q.filter(posts::rating.gt(4)).order(posts::rating.desc()))`
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// let mut conn = store.conn()?;
    /// for text in ["cherry", "apple", "banana"] {
    ///     conn.save(Note { text: text.into(), ..Note::default() })?;
    /// }
    /// let found = conn.query::<Note>(|q| q.filter(notes::text.ne("apple")).order(notes::text.desc()))?;
    /// let texts: Vec<&str> = found.iter().map(|n| n.text.as_str()).collect();
    /// assert_eq!(texts, ["cherry", "banana"]);
    /// # Ok(())
    /// # }
    /// ```
    fn query<M: Persist<Self>>(
        &mut self,
        build: impl FnOnce(M::Query) -> M::Query,
    ) -> Result<Vec<M>> {
        Operation::new(M::TABLE_NAME, "query").run(|| M::load(self, build(M::query())), Vec::len)
    }

    /// The number of rows of the model's table.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// let mut conn = store.conn()?;
    /// conn.insert_all(vec![Note::default(), Note::default()])?;
    /// assert_eq!(conn.count::<Note>()?, 2);
    /// # Ok(())
    /// # }
    /// ```
    fn count<M: Persist<Self>>(&mut self) -> Result<usize> {
        Operation::new(M::TABLE_NAME, "count").run(|| M::count(self), |_| 0)
    }

    /// Deletes this row (and, through `ON DELETE CASCADE`, its children), or fails with
    /// [`Error::NotFound`] if it is not stored.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Post, posts, Comment, comments};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:")
    /// #     .schema(Schema::new().model::<Post>().model::<Comment>())
    /// #     .open()?;
    /// let mut conn = store.conn()?;
    /// let post = conn.save(Post::default())?;
    /// conn.save(Comment { post_id: post.id, ..Comment::default() })?;
    /// conn.delete(&post)?;
    /// assert_eq!(conn.count::<Comment>()?, 0); // the cascade removed its comment
    /// assert!(matches!(conn.delete(&post), Err(datastore::Error::NotFound { .. })));
    /// # Ok(())
    /// # }
    /// ```
    fn delete<M: Persist<Self>>(&mut self, model: &M) -> Result<()> {
        self.delete_by_id::<M>(&model.key())
    }

    /// Deletes the row with this primary key, or fails with [`Error::NotFound`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// let mut conn = store.conn()?;
    /// let note = conn.save(Note::default())?;
    /// conn.delete_by_id::<Note>(&note.id)?;
    /// assert_eq!(conn.find::<Note>(&note.id)?, None);
    /// # Ok(())
    /// # }
    /// ```
    fn delete_by_id<M: Persist<Self>>(&mut self, key: &M::Key) -> Result<()> {
        Operation::new(M::TABLE_NAME, "delete").run(
            || {
                if M::delete_by_id(self, key)? {
                    Ok(())
                } else {
                    Err(Error::not_found(M::TABLE_NAME, key.describe()))
                }
            },
            |_| 1,
        )
    }

    /// What deleting the row with this key would do, down the whole cascade: the rows it
    /// would remove (per table), the rows whose foreign key it would set to `NULL`, and the
    /// rows that refuse it (a many-to-many's join rows). Read in one read transaction (or in
    /// the transaction open on this connection); a delete run right after on the same data
    /// does exactly that. [`Error::NotFound`] if there is no such row;
    /// [`Error::CascadeTooDeep`] if the delete would fail so (SQLite: a cascade through tables
    /// that cycle, as a self-reference does, reaching [`Error::SQLITE_CASCADE_LIMIT`] rows or
    /// more, is tried in a savepoint and undone, so such a preview writes, and waits for the
    /// right to; on a connection that may not write, such as one lent beside a store
    /// transaction, it says what it reads without that check).
    ///
    /// ```
    /// use datastore::prelude::*;
    ///
    /// #[derive(Model, Debug, Clone, PartialEq, Default)]
    /// pub struct Course {
    ///     #[primary_key]
    ///     pub id: Id,
    ///     #[many_to_many(Student, through = Enrolment)]
    ///     pub students: ManyToMany<Student>,
    /// }
    ///
    /// #[derive(Model, Debug, Clone, PartialEq, Default)]
    /// pub struct Student {
    ///     #[primary_key]
    ///     pub id: Id,
    /// }
    ///
    /// #[derive(Model, Debug, Clone, PartialEq, Default)]
    /// pub struct Enrolment {
    ///     #[primary_key]
    ///     pub id: Id,
    ///     #[belongs_to(Course)]
    ///     pub course_id: Id,
    ///     #[belongs_to(Student)]
    ///     pub student_id: Id,
    /// }
    ///
    /// # fn main() -> datastore::Result<()> {
    /// let store = Store::builder(":memory:")
    ///     .schema(Schema::new().model::<Course>().model::<Student>().model::<Enrolment>())
    ///     .open()?;
    /// let mut conn = store.conn()?;
    /// let course = conn.save(Course::default())?;
    /// let student = conn.save(Student::default())?;
    /// course.link_students(&mut conn, &student)?;
    ///
    /// let effects = conn.preview_delete::<Course>(&course.id)?;
    /// assert_eq!(effects.refused_by_rows_of("enrolments"), 1);
    /// assert!(matches!(
    ///     conn.delete(&course),
    ///     Err(datastore::Error::DeleteRestricted { .. })
    /// ));
    ///
    /// // Unlinking is explicit: this removes the enrolment, then the course.
    /// conn.unlink_and_delete::<Course>(&course.id)?;
    /// assert_eq!(conn.count::<Enrolment>()?, 0);
    /// assert_eq!(conn.count::<Student>()?, 1);
    /// # Ok(())
    /// # }
    /// ```
    fn preview_delete<M: Persist<Self>>(&mut self, key: &M::Key) -> Result<DeleteEffects> {
        Operation::new(M::TABLE_NAME, "preview_delete").run(|| M::preview_delete(self, key), |_| 0)
    }

    /// Deletes the links that refuse the delete of the row with this key (the join rows
    /// linking it or the rows its cascade removes: what
    /// [`preview_delete`](Repo::preview_delete) lists as `refused_by`, and what their own
    /// delete cascades to), then the row, in one transaction; returns what that removed. A
    /// plain [`delete`](Repo::delete) never unlinks. [`Error::NotFound`] if there is no such
    /// row; [`Error::DeleteRestricted`], with nothing deleted, if a row that is no link
    /// refuses the delete (see [`Persist::unlink_and_delete`](crate::Persist::unlink_and_delete)).
    ///
    /// What it returns is what it removed: on PostgreSQL its transaction reads one snapshot
    /// (`REPEATABLE READ`, or `SERIALIZABLE` where that was the connection's default as the
    /// store set it up), and a row another transaction
    /// commits meanwhile that the delete would reach (a child its cascade removes, a new link,
    /// an update of a row it deletes) makes it run again (three times at most, then
    /// [`Error::Conflict`]). Inside a transaction of the caller's, it runs at that
    /// transaction's isolation level, in a savepoint, and such a row is [`Error::Conflict`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Course, courses, Student, students, Enrolment, enrolments};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:")
    /// #     .schema(Schema::new().model::<Course>().model::<Student>().model::<Enrolment>())
    /// #     .open()?;
    /// let mut conn = store.conn()?;
    /// let course = conn.save(Course::default())?;
    /// let student = conn.save(Student::default())?;
    /// course.link_students(&mut conn, &student)?;
    /// assert!(conn.delete(&course).is_err()); // refused: the enrolment links it
    /// let effects = conn.unlink_and_delete::<Course>(&course.id)?;
    /// assert_eq!(effects.removed_from("courses"), 1);
    /// assert_eq!((conn.count::<Enrolment>()?, conn.count::<Student>()?), (0, 1));
    /// # Ok(())
    /// # }
    /// ```
    fn unlink_and_delete<M: Persist<Self>>(&mut self, key: &M::Key) -> Result<DeleteEffects> {
        Operation::new(M::TABLE_NAME, "unlink_and_delete").run(
            || M::unlink_and_delete(self, key),
            |effects| effects.removed.iter().map(|r| r.rows).sum(),
        )
    }

    /// Deletes the rows matching a predicate on the model's table; returns how many.
    ///
    /// `conn.delete_where::<Post, _>(posts::rating.lt(3))`: the condition may be
    /// nullable (`posts::body.like("%x%")`), where `NULL` counts as false.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # #[derive(Model, Debug, Clone, PartialEq, Default)]
    /// # pub struct Task { #[primary_key] pub id: Id, pub done: bool, pub note: Option<String> }
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Task>()).open()?;
    /// let mut conn = store.conn()?;
    /// conn.save(Task { done: true, ..Task::default() })?;
    /// conn.save(Task { note: Some("tmp".into()), ..Task::default() })?;
    /// conn.save(Task::default())?;
    /// assert_eq!(conn.delete_where::<Task, _>(tasks::done.eq(true))?, 1);
    /// // A nullable condition: rows whose `note` is `NULL` do not match.
    /// assert_eq!(conn.delete_where::<Task, _>(tasks::note.eq("tmp"))?, 1);
    /// assert_eq!(conn.count::<Task>()?, 1);
    /// # Ok(())
    /// # }
    /// ```
    fn delete_where<M: Persist<Self>, C>(
        &mut self,
        predicate: impl IntoPredicate<M::Table, Self::Backend, C>,
    ) -> Result<usize> {
        let predicate = predicate.into_predicate();
        Operation::new(M::TABLE_NAME, "delete_where")
            .run(|| M::delete_where(self, predicate), |n| *n)
    }
}

// Not a blanket impl: Diesel implements `Connection` for r2d2's pooled connections too, and
// methods must reach the connection inside (`store.conn()?.save(..)`) through `Deref`.
impl Repo for diesel::SqliteConnection {}
impl Repo for diesel::PgConnection {}
impl Repo for crate::AnyConnection {}

/// [`Repo::query`] on the backend's own connection inside a store's connection, unboxed: the
/// rows of a query refined from the model's, the closure written once and compiled once for
/// each backend.
///
/// `conn.query::<M>(|q| ..)` on a store's connection ([`AnyConnection`](crate::AnyConnection))
/// refines a boxed query and runs it through Diesel's `MultiConnection`, which builds the
/// query's SQL again on each call and dispatches every bound and every read value between
/// SQLite and PostgreSQL at run time: on SQLite about 1.2 times the time of the same query on
/// `SqliteConnection`, from ten rows up (`BENCHMARKS.md`). `query!(conn, M, |q| ..)` runs on the
/// connection's own backend, as everything the model knows (`all`, `find`, relation loads)
/// already runs, and hands the closure the model's query unboxed (its rows in key order): each
/// refinement is a type of its own, whose SQL Diesel prepares once per connection.
///
/// Write the closure in the macro call: each backend's copy is typed against that backend's
/// query, so a closure stored in a variable beforehand does not fit both. A refinement chosen
/// at run time (a filter added only in some cases) starts with `q.into_boxed()`, whose SQL is
/// built on every call again.
///
/// `conn` is anything that derefs to an [`AnyConnection`](crate::AnyConnection): a
/// [`PooledConn`](crate::PooledConn), or the connection of a
/// [`Store::transaction`](crate::Store::transaction).
///
/// ```
/// # use datastore::prelude::*;
/// # #[derive(Model, Debug, Clone, PartialEq, Default)]
/// # pub struct Note { #[primary_key] pub id: Id, pub text: String, pub stars: i32 }
/// # fn main() -> datastore::Result<()> {
/// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
/// let mut conn = store.conn()?;
/// for (text, stars) in [("cherry", 5), ("apple", 2), ("banana", 4)] {
///     conn.save(Note { text: text.into(), stars, ..Note::default() })?;
/// }
/// let at_least = 3;
/// let liked = datastore::query!(conn, Note, |q| q
///     .filter(notes::stars.ge(at_least))
///     .order(notes::stars.desc()))?;
/// let texts: Vec<&str> = liked.iter().map(|n| n.text.as_str()).collect();
/// assert_eq!(texts, ["cherry", "banana"]);
///
/// // The same inside a transaction.
/// let counted = store.transaction(|tx| {
///     Ok(datastore::query!(tx, Note, |q| q.filter(notes::stars.lt(at_least)))?.len())
/// })?;
/// assert_eq!(counted, 1);
///
/// // A refinement chosen at run time, on the boxed query.
/// let only_liked = false;
/// let chosen = datastore::query!(conn, Note, |q| {
///     let mut q = q.into_boxed();
///     if only_liked {
///         q = q.filter(notes::stars.ge(at_least));
///     }
///     q
/// })?;
/// assert_eq!(chosen.len(), 3);
/// # Ok(())
/// # }
/// ```
#[macro_export]
macro_rules! query {
    ($conn:expr, $model:ty, $build:expr $(,)?) => {
        match $crate::__private::any_connection(&mut *$conn) {
            $crate::AnyConnection::Sqlite(conn) => {
                $crate::__private::load_refined::<$model, _, _>(conn, $build)
            }
            $crate::AnyConnection::Postgres(conn) => {
                $crate::__private::load_refined::<$model, _, _>(conn, $build)
            }
        }
    };
}
