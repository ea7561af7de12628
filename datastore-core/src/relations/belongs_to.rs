//! A child's foreign keys: [`BelongsTo`] (what the derive implements for each `belongs_to`
//! field) and [`ChildOf`] (the foreign key as SQL on each connection).

use diesel::connection::Connection;
use diesel::expression::{AsExpression, BoxableExpression};
use diesel::helper_types::SqlTypeOf;
use diesel::sql_types::Bool;
use diesel::{BoolExpressionMethods, ExpressionMethods};

use crate::backend::dispatch;
use crate::model::{IntoPredicate, Model, Predicate};
use crate::persist::Persist;
use crate::{AnyBackend, AnyConnection, NativeConnection, PooledConn};

/// The key of one `belongs_to` field among a child's foreign keys: a hash of the field's name,
/// so that a child may belong to the same parent through two fields (`author_id`, `editor_id`).
/// Code generic over a foreign key names it as `{ fk_key("post_id") }` (see [`ChildOf`]).
///
/// ```
/// use datastore::relations::fk_key;
///
/// const AUTHOR: u64 = fk_key("author_id");
/// assert_ne!(AUTHOR, fk_key("editor_id"));
/// assert_eq!(AUTHOR, fk_key("author_id"));
/// ```
pub const fn fk_key(field: &str) -> u64 {
    // FNV-1a.
    let bytes = field.as_bytes();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

/// A child's `#[belongs_to(P)]` field `FK` (a [`fk_key`]). Implemented by the child's derive.
///
/// ```
/// # use datastore::prelude::*;
/// #[derive(Model, Debug, Clone, Default)]
/// pub struct Post {
///     #[primary_key]
///     pub id: Id,
///     pub title: String,
///     #[has_many(Comment)]
///     pub comments: HasMany<Comment>,
/// }
///
/// #[derive(Model, Debug, Clone, Default)]
/// pub struct Comment {
///     #[primary_key]
///     pub id: Id,
///     #[belongs_to(Post)]
///     pub post_id: Id,
///     pub text: String,
/// }
/// use datastore::relations::{fk_key, BelongsTo};
///
/// const POST: u64 = fk_key("post_id");
/// assert_eq!(<Comment as BelongsTo<Post, POST>>::FIELD, "post_id");
///
/// let post = Post::default();
/// let mut comment = Comment::default();
/// <Comment as BelongsTo<Post, POST>>::set_parent_key(&mut comment, post.id);
/// assert_eq!(<Comment as BelongsTo<Post, POST>>::parent_key(&comment), Some(post.id));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no `#[belongs_to({P})]` field with the foreign key named in the relation",
    label = "no such foreign key",
    note = "the field named by `foreign_key = ..` (or a many-to-many's `other_key = ..`) must be declared `#[belongs_to({P})]` in `{Self}`"
)]
pub trait BelongsTo<P: Model, const FK: u64>: Model {
    /// The foreign-key field's (and column's) name.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Post, posts, Comment, comments};
    /// use datastore::relations::{fk_key, BelongsTo};
    ///
    /// assert_eq!(<Comment as BelongsTo<Post, { fk_key("post_id") }>>::FIELD, "post_id");
    /// ```
    const FIELD: &'static str;

    /// The foreign-key column (`comments::post_id`), of the parent's key's type.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Post, posts, Comment, comments};
    /// use datastore::relations::{fk_key, BelongsTo};
    ///
    /// let column: <Comment as BelongsTo<Post, { fk_key("post_id") }>>::Column = comments::post_id;
    /// # let _ = column;
    /// ```
    type Column: diesel::Column<Table = Self::Table> + Default + Copy + Send + 'static;

    /// Whether a condition on the column may be `NULL`: [`NotNullCondition`] for a required
    /// parent, [`NullableCondition`] for an optional one (its column is nullable).
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Post, posts, Comment, comments};
    /// use datastore::relations::{fk_key, BelongsTo};
    /// use datastore::NotNullCondition;
    ///
    /// fn required<C, P, const FK: u64>()
    /// where
    ///     C: BelongsTo<P, FK, Nullability = NotNullCondition>,
    ///     P: Model,
    /// {
    /// }
    /// required::<Comment, Post, { fk_key("post_id") }>(); // a comment's post is required
    /// ```
    ///
    /// [`NotNullCondition`]: crate::NotNullCondition
    /// [`NullableCondition`]: crate::NullableCondition
    type Nullability;

    /// The parent's key.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Post, posts, Comment, comments};
    /// use datastore::relations::{fk_key, BelongsTo, ChildOf};
    /// use datastore::AnyConnection;
    ///
    /// const POST: u64 = fk_key("post_id");
    ///
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:")
    /// #     .schema(Schema::new().model::<Post>().model::<Comment>())
    /// #     .open()?;
    /// # let mut conn = store.conn()?;
    /// # let conn: &mut AnyConnection = &mut conn;
    /// let (a, b) = (conn.save(Post::default())?, conn.save(Post::default())?);
    /// conn.save(Comment { post_id: a.id, text: "on a".into(), ..Comment::default() })?;
    /// conn.save(Comment { post_id: b.id, text: "on b".into(), ..Comment::default() })?;
    ///
    /// let comment = Comment { post_id: a.id, ..Comment::default() };
    /// assert_eq!(<Comment as BelongsTo<Post, POST>>::parent_key(&comment), Some(a.id));
    /// # Ok(())
    /// # }
    /// ```
    fn parent_key(&self) -> Option<P::Key>;

    /// Points the foreign key at a parent.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Post, posts, Comment, comments};
    /// use datastore::relations::{fk_key, BelongsTo, ChildOf};
    /// use datastore::AnyConnection;
    ///
    /// const POST: u64 = fk_key("post_id");
    ///
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:")
    /// #     .schema(Schema::new().model::<Post>().model::<Comment>())
    /// #     .open()?;
    /// # let mut conn = store.conn()?;
    /// # let conn: &mut AnyConnection = &mut conn;
    /// let (a, b) = (conn.save(Post::default())?, conn.save(Post::default())?);
    /// conn.save(Comment { post_id: a.id, text: "on a".into(), ..Comment::default() })?;
    /// conn.save(Comment { post_id: b.id, text: "on b".into(), ..Comment::default() })?;
    ///
    /// let mut comment = Comment::default();
    /// <Comment as BelongsTo<Post, POST>>::set_parent_key(&mut comment, b.id);
    /// assert_eq!(comment.post_id, b.id);
    /// # Ok(())
    /// # }
    /// ```
    fn set_parent_key(&mut self, parent: P::Key);
}

/// The `belongs_to` fields a child has to one parent. Implemented by the child's derive for
/// each parent it belongs to.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no `#[belongs_to({P})]` field, which this relation needs",
    label = "`{Self}` does not belong to `{P}`",
    note = "add the foreign key to `{Self}`: `#[belongs_to({P})] pub <name>_id: <its key type>`"
)]
pub trait ForeignKeysTo<P: Model>: Model {
    /// How many `#[belongs_to(P)]` fields the child has.
    const COUNT: usize;
    /// The [`fk_key`] of the first of them.
    const FIRST: u64;
}

/// A `belongs_to` foreign key as SQL on connection `C`: the conditions on it, and the loads of
/// a parent's children. Every `belongs_to` has it on every connection.
///
/// Generated relation methods (`post.comments(conn)`) ask for it on their connection; code
/// generic over the connection names it in its bounds:
///
/// ```
/// # use datastore::prelude::*;
/// #[derive(Model, Debug, Clone, Default)]
/// pub struct Post {
///     #[primary_key]
///     pub id: Id,
///     pub title: String,
///     #[has_many(Comment)]
///     pub comments: HasMany<Comment>,
/// }
///
/// #[derive(Model, Debug, Clone, Default)]
/// pub struct Comment {
///     #[primary_key]
///     pub id: Id,
///     #[belongs_to(Post)]
///     pub post_id: Id,
///     pub text: String,
/// }
/// use datastore::relations::{fk_key, ChildOf};
///
/// fn comment_count<C>(conn: &mut C, post: &Post) -> datastore::Result<usize>
/// where
///     C: Repo,
///     Comment: ChildOf<Post, { fk_key("post_id") }, C>,
/// {
///     Ok(post.comments(conn)?.len())
/// }
///
/// # fn main() -> datastore::Result<()> {
/// let store = Store::builder(":memory:")
///     .schema(Schema::new().model::<Post>().model::<Comment>())
///     .open()?;
/// let post = store.save(Post { title: "Hello".into(), ..Post::default() })?;
/// store.save(Comment { post_id: post.id, text: "First".into(), ..Comment::default() })?;
/// let mut conn = store.conn()?;
/// assert_eq!(comment_count(&mut *conn, &post)?, 1); // the `AnyConnection` inside the pool's
/// # Ok(())
/// # }
/// ```
pub trait ChildOf<P: Model, const FK: u64, C: Connection>: BelongsTo<P, FK> + Persist<C> {
    /// `fk = key`.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Post, posts, Comment, comments};
    /// use datastore::relations::{fk_key, BelongsTo, ChildOf};
    /// use datastore::AnyConnection;
    ///
    /// const POST: u64 = fk_key("post_id");
    ///
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:")
    /// #     .schema(Schema::new().model::<Post>().model::<Comment>())
    /// #     .open()?;
    /// # let mut conn = store.conn()?;
    /// # let conn: &mut AnyConnection = &mut conn;
    /// let (a, b) = (conn.save(Post::default())?, conn.save(Post::default())?);
    /// conn.save(Comment { post_id: a.id, text: "on a".into(), ..Comment::default() })?;
    /// conn.save(Comment { post_id: b.id, text: "on b".into(), ..Comment::default() })?;
    ///
    /// let on_a = Comment::load_where(conn, <Comment as ChildOf<Post, POST, AnyConnection>>::parent_is(a.id))?;
    /// assert_eq!(on_a[0].text, "on a");
    /// # Ok(())
    /// # }
    /// ```
    fn parent_is(key: P::Key) -> Predicate<Self, C>;

    /// `fk = key AND other`.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Post, posts, Comment, comments};
    /// use datastore::relations::{fk_key, BelongsTo, ChildOf};
    /// use datastore::AnyConnection;
    ///
    /// const POST: u64 = fk_key("post_id");
    /// use datastore::Predicate;
    ///
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:")
    /// #     .schema(Schema::new().model::<Post>().model::<Comment>())
    /// #     .open()?;
    /// # let mut conn = store.conn()?;
    /// # let conn: &mut AnyConnection = &mut conn;
    /// let (a, b) = (conn.save(Post::default())?, conn.save(Post::default())?);
    /// conn.save(Comment { post_id: a.id, text: "on a".into(), ..Comment::default() })?;
    /// conn.save(Comment { post_id: b.id, text: "on b".into(), ..Comment::default() })?;
    ///
    /// let text_is = |t: &str| -> Predicate<Comment, AnyConnection> { Box::new(comments::text.eq(t.to_owned())) };
    /// let both = <Comment as ChildOf<Post, POST, AnyConnection>>::parent_is_and(a.id, text_is("on b"));
    /// assert!(Comment::load_where(conn, both)?.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    fn parent_is_and(key: P::Key, other: Predicate<Self, C>) -> Predicate<Self, C>;

    /// `fk IN (keys)`; at most [`CHUNK`](crate::relations::CHUNK) keys.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Post, posts, Comment, comments};
    /// use datastore::relations::{fk_key, BelongsTo, ChildOf};
    /// use datastore::AnyConnection;
    ///
    /// const POST: u64 = fk_key("post_id");
    ///
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:")
    /// #     .schema(Schema::new().model::<Post>().model::<Comment>())
    /// #     .open()?;
    /// # let mut conn = store.conn()?;
    /// # let conn: &mut AnyConnection = &mut conn;
    /// let (a, b) = (conn.save(Post::default())?, conn.save(Post::default())?);
    /// conn.save(Comment { post_id: a.id, text: "on a".into(), ..Comment::default() })?;
    /// conn.save(Comment { post_id: b.id, text: "on b".into(), ..Comment::default() })?;
    ///
    /// let either = <Comment as ChildOf<Post, POST, AnyConnection>>::parent_in(&[a.id, b.id]);
    /// assert_eq!(Comment::load_where(conn, either)?.len(), 2);
    /// # Ok(())
    /// # }
    /// ```
    fn parent_in(keys: &[P::Key]) -> Predicate<Self, C>;

    /// The children of one parent, in key order.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Post, posts, Comment, comments};
    /// use datastore::relations::{fk_key, BelongsTo, ChildOf};
    /// use datastore::AnyConnection;
    ///
    /// const POST: u64 = fk_key("post_id");
    ///
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:")
    /// #     .schema(Schema::new().model::<Post>().model::<Comment>())
    /// #     .open()?;
    /// # let mut conn = store.conn()?;
    /// # let conn: &mut AnyConnection = &mut conn;
    /// let (a, b) = (conn.save(Post::default())?, conn.save(Post::default())?);
    /// conn.save(Comment { post_id: a.id, text: "on a".into(), ..Comment::default() })?;
    /// conn.save(Comment { post_id: b.id, text: "on b".into(), ..Comment::default() })?;
    ///
    /// let on_b = <Comment as ChildOf<Post, POST, AnyConnection>>::children_of_one(conn, b.id)?;
    /// assert_eq!(on_b[0].text, "on b");
    /// # Ok(())
    /// # }
    /// ```
    fn children_of_one(conn: &mut C, parent: P::Key) -> crate::Result<Vec<Self>> {
        Self::load_where(conn, Self::parent_is(parent))
    }

    /// The children of these parents (at most [`CHUNK`](crate::relations::CHUNK)), in key order.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Post, posts, Comment, comments};
    /// use datastore::relations::{fk_key, BelongsTo, ChildOf};
    /// use datastore::AnyConnection;
    ///
    /// const POST: u64 = fk_key("post_id");
    ///
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:")
    /// #     .schema(Schema::new().model::<Post>().model::<Comment>())
    /// #     .open()?;
    /// # let mut conn = store.conn()?;
    /// # let conn: &mut AnyConnection = &mut conn;
    /// let (a, b) = (conn.save(Post::default())?, conn.save(Post::default())?);
    /// conn.save(Comment { post_id: a.id, text: "on a".into(), ..Comment::default() })?;
    /// conn.save(Comment { post_id: b.id, text: "on b".into(), ..Comment::default() })?;
    ///
    /// let all = <Comment as ChildOf<Post, POST, AnyConnection>>::children_of(conn, &[a.id, b.id])?;
    /// assert_eq!(all.len(), 2);
    /// # Ok(())
    /// # }
    /// ```
    fn children_of(conn: &mut C, parents: &[P::Key]) -> crate::Result<Vec<Self>> {
        Self::load_where(conn, Self::parent_in(parents))
    }
}

/// The conditions on a foreign-key column, boxed for backend `DB`: what [`ChildOf`]'s are
/// built from. Implemented for every `belongs_to` on every backend.
pub trait Conditions<P: Model, const FK: u64, DB>: BelongsTo<P, FK> {
    /// `fk = key`.
    fn is(key: P::Key) -> Box<dyn BoxableExpression<Self::Table, DB, SqlType = Bool>>;
    /// `fk = key AND other`.
    fn is_and(
        key: P::Key,
        other: Box<dyn BoxableExpression<Self::Table, DB, SqlType = Bool>>,
    ) -> Box<dyn BoxableExpression<Self::Table, DB, SqlType = Bool>>;
    /// `fk IN (keys)`.
    fn within(keys: &[P::Key]) -> Box<dyn BoxableExpression<Self::Table, DB, SqlType = Bool>>;
}

impl<P, Ch, const FK: u64, DB> Conditions<P, FK, DB> for Ch
where
    P: Model,
    Ch: BelongsTo<P, FK>,
    DB: diesel::backend::Backend + 'static,
    SqlTypeOf<Ch::Column>: diesel::sql_types::SqlType + diesel::sql_types::SingleValue,
    P::Key: AsExpression<SqlTypeOf<Ch::Column>>,
    diesel::dsl::Eq<Ch::Column, P::Key>: IntoPredicate<Ch::Table, DB, Ch::Nullability>,
    diesel::dsl::EqAny<Ch::Column, Vec<P::Key>>: IntoPredicate<Ch::Table, DB, Ch::Nullability>,
    diesel::dsl::And<
        Box<dyn BoxableExpression<Ch::Table, DB, SqlType = Bool>>,
        Box<dyn BoxableExpression<Ch::Table, DB, SqlType = Bool>>,
    >: BoxableExpression<Ch::Table, DB, SqlType = Bool>,
{
    fn is(key: P::Key) -> Box<dyn BoxableExpression<Ch::Table, DB, SqlType = Bool>> {
        Ch::Column::default().eq(key).into_predicate()
    }

    fn is_and(
        key: P::Key,
        other: Box<dyn BoxableExpression<Ch::Table, DB, SqlType = Bool>>,
    ) -> Box<dyn BoxableExpression<Ch::Table, DB, SqlType = Bool>> {
        Box::new(Self::is(key).and(other))
    }

    fn within(keys: &[P::Key]) -> Box<dyn BoxableExpression<Ch::Table, DB, SqlType = Bool>> {
        Ch::Column::default().eq_any(keys.to_vec()).into_predicate()
    }
}

/// On a backend's own connection: the conditions, and the loads through them.
impl<P, Ch, const FK: u64, C> ChildOf<P, FK, C> for Ch
where
    P: Model,
    C: NativeConnection,
    Ch: BelongsTo<P, FK> + Persist<C> + Conditions<P, FK, C::Backend>,
{
    fn parent_is(key: P::Key) -> Predicate<Self, C> {
        Ch::is(key)
    }

    fn parent_is_and(key: P::Key, other: Predicate<Self, C>) -> Predicate<Self, C> {
        Ch::is_and(key, other)
    }

    fn parent_in(keys: &[P::Key]) -> Predicate<Self, C> {
        Ch::within(keys)
    }
}

/// On the multi-backend connection: conditions for it, and the loads run on the backend's own
/// connection inside.
impl<P, Ch, const FK: u64> ChildOf<P, FK, AnyConnection> for Ch
where
    P: Model,
    Ch: ChildOf<P, FK, diesel::SqliteConnection>
        + ChildOf<P, FK, diesel::PgConnection>
        + Persist<AnyConnection>
        + Conditions<P, FK, AnyBackend>,
{
    fn parent_is(key: P::Key) -> Predicate<Self, AnyConnection> {
        Ch::is(key)
    }

    fn parent_is_and(
        key: P::Key,
        other: Predicate<Self, AnyConnection>,
    ) -> Predicate<Self, AnyConnection> {
        Ch::is_and(key, other)
    }

    fn parent_in(keys: &[P::Key]) -> Predicate<Self, AnyConnection> {
        Ch::within(keys)
    }

    fn children_of_one(conn: &mut AnyConnection, parent: P::Key) -> crate::Result<Vec<Self>> {
        dispatch!(conn, |c| <Ch as ChildOf<P, FK, _>>::children_of_one(
            c, parent
        ))
    }

    fn children_of(conn: &mut AnyConnection, parents: &[P::Key]) -> crate::Result<Vec<Self>> {
        dispatch!(conn, |c| <Ch as ChildOf<P, FK, _>>::children_of(c, parents))
    }
}

/// The foreign keys on a pooled connection are those of the [`AnyConnection`] inside (see
/// the matching `Persist` impl).
impl<P, Ch, const FK: u64> ChildOf<P, FK, PooledConn> for Ch
where
    P: Model,
    Ch: ChildOf<P, FK, AnyConnection>,
{
    fn parent_is(key: P::Key) -> Predicate<Self, PooledConn> {
        <Ch as ChildOf<P, FK, AnyConnection>>::parent_is(key)
    }

    fn parent_is_and(
        key: P::Key,
        other: Predicate<Self, PooledConn>,
    ) -> Predicate<Self, PooledConn> {
        <Ch as ChildOf<P, FK, AnyConnection>>::parent_is_and(key, other)
    }

    fn parent_in(keys: &[P::Key]) -> Predicate<Self, PooledConn> {
        <Ch as ChildOf<P, FK, AnyConnection>>::parent_in(keys)
    }

    fn children_of_one(conn: &mut PooledConn, parent: P::Key) -> crate::Result<Vec<Self>> {
        <Ch as ChildOf<P, FK, AnyConnection>>::children_of_one(conn, parent)
    }

    fn children_of(conn: &mut PooledConn, parents: &[P::Key]) -> crate::Result<Vec<Self>> {
        <Ch as ChildOf<P, FK, AnyConnection>>::children_of(conn, parents)
    }
}
