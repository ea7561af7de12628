//! The filters by related rows (`Post::having_comments(..)`, `Comment::where_post(..)`):
//! `column IN (SELECT ..)`, and the subqueries they are built from.

use diesel::ExpressionMethods;
use diesel::QueryResult;
use diesel::backend::Backend;
use diesel::dsl::{Filter, IsNotNull, Select};
use diesel::expression::{AppearsOnTable, Expression, SelectableExpression, ValidGrouping};
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::query_dsl::methods::{FilterDsl, SelectDsl};
use diesel::sql_types::{Bool, SqlType, is_nullable};

use super::BelongsTo;
use crate::model::Model;
use crate::schema::Table;

/// `column IN (subquery)`, a condition on the column's table; built by the generated
/// `having_*` and `where_*` filters (`Post::having_comments(..)`), on every backend.
///
/// The subquery selects the column's SQL type (keys, here), which its constructors ensure.
///
/// ```
/// # use datastore::prelude::*;
/// # use datastore_doc_models::{Post, posts, Comment, comments};
/// # fn main() -> datastore::Result<()> {
/// # let store = Store::builder(":memory:")
/// #     .schema(Schema::new().model::<Post>().model::<Comment>())
/// #     .open()?;
/// let liked = store.save(Post { title: "liked".into(), ..Post::default() })?;
/// store.save(Post { title: "ignored".into(), ..Post::default() })?;
/// store.save(Comment { post_id: liked.id, text: "great".into(), ..Comment::default() })?;
/// // `posts.id IN (SELECT post_id FROM comments WHERE text = 'great')`
/// let posts = store.query::<Post>(|q| q.filter(Post::having_comments(comments::text.eq("great"))))?;
/// assert_eq!(posts.len(), 1);
/// assert_eq!(posts[0].title, "liked");
/// // `comments.post_id IN (SELECT id FROM posts WHERE title = 'liked')`
/// let on_liked = store.query::<Comment>(|q| q.filter(Comment::where_post(posts::title.eq("liked"))))?;
/// assert_eq!(on_liked.len(), 1);
/// # Ok(())
/// # }
/// ```
///
/// With `NOT_NULL`, and a column that can be `NULL`, `(column IS NOT NULL AND column IN
/// (subquery))`: a `NULL` column is then no match, and its negation a match, where
/// `NULL IN (..)` is `NULL` (no row, negated or not) unless the subquery is empty.
///
/// A live query ([`Store::live`](crate::Store::live),
/// [`Store::observe_query`](crate::Store::observe_query)) watches the table the subquery
/// reads: the condition tells it when the query is walked (as building its SQL does), so that
/// it may be built anywhere, inside the query's closure or before it.
#[derive(Debug, Clone, Copy)]
pub struct InSubquery<C, Q, const NOT_NULL: bool = false> {
    column: C,
    query: Q,
    /// The table the subquery reads (`Model::table`): a function, called only while a live
    /// query learns the tables of its query.
    reads: fn() -> &'static Table,
}

impl<C, Q, const NOT_NULL: bool> InSubquery<C, Q, NOT_NULL> {
    /// `column IN (query)`, where `query` reads the table `reads` returns.
    pub(crate) fn new(column: C, query: Q, reads: fn() -> &'static Table) -> Self {
        Self {
            column,
            query,
            reads,
        }
    }
}

impl<C: Expression, Q, const NOT_NULL: bool> Expression for InSubquery<C, Q, NOT_NULL> {
    type SqlType = Bool;
}

impl<C, Q, DB, const NOT_NULL: bool> QueryFragment<DB> for InSubquery<C, Q, NOT_NULL>
where
    DB: Backend,
    C: QueryFragment<DB> + Expression,
    C::SqlType: SqlType,
    <C::SqlType as SqlType>::IsNull: Nullability,
    Q: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        // Nothing but a look at a thread-local unless a live query is learning its tables;
        // a subquery nested in `self.query` tells its own table as it is walked below.
        crate::observe::live::filter_reads(self.reads);
        out.push_sql("(");
        // A column that cannot be `NULL` needs no test.
        if NOT_NULL && <<C::SqlType as SqlType>::IsNull as Nullability>::NULLABLE {
            self.column.walk_ast(out.reborrow())?;
            out.push_sql(" IS NOT NULL AND ");
        }
        self.column.walk_ast(out.reborrow())?;
        out.push_sql(" IN (");
        self.query.walk_ast(out.reborrow())?;
        out.push_sql("))");
        Ok(())
    }
}

impl<C: QueryId, Q: QueryId, const NOT_NULL: bool> QueryId for InSubquery<C, Q, NOT_NULL> {
    type QueryId = InSubquery<C::QueryId, Q::QueryId, NOT_NULL>;
    const HAS_STATIC_QUERY_ID: bool = C::HAS_STATIC_QUERY_ID && Q::HAS_STATIC_QUERY_ID;
}

/// The subquery is a complete query of its own: only the column ties the condition to a table.
impl<C, Q, QS, const NOT_NULL: bool> AppearsOnTable<QS> for InSubquery<C, Q, NOT_NULL>
where
    C: AppearsOnTable<QS>,
    Self: Expression,
{
}

impl<C, Q, QS, const NOT_NULL: bool> SelectableExpression<QS> for InSubquery<C, Q, NOT_NULL>
where
    C: SelectableExpression<QS>,
    Self: AppearsOnTable<QS>,
{
}

impl<C, Q, GB, const NOT_NULL: bool> ValidGrouping<GB> for InSubquery<C, Q, NOT_NULL>
where
    C: ValidGrouping<GB>,
{
    type IsAggregate = C::IsAggregate;
}

/// The primary-key column of a model's table.
pub type PrimaryKeyOf<M> = <<M as Model>::Table as diesel::Table>::PrimaryKey;

/// `SELECT id FROM table WHERE predicate`: the keys of the rows matching a condition, as a
/// subquery. Implemented for every model and every condition on its table.
pub trait SelectKeys<Pred>: Model {
    /// The subquery.
    type Query;

    /// The subquery of the keys of the rows matching `predicate`.
    fn keys_where(predicate: Pred) -> Self::Query;
}

impl<M, Pred> SelectKeys<Pred> for M
where
    M: Model,
    M::Table: SelectDsl<PrimaryKeyOf<M>>,
    Select<M::Table, PrimaryKeyOf<M>>: FilterDsl<Pred>,
{
    type Query = Filter<Select<M::Table, PrimaryKeyOf<M>>, Pred>;

    fn keys_where(predicate: Pred) -> Self::Query {
        let table = M::Table::default();
        table
            .select(diesel::Table::primary_key(&table))
            .filter(predicate)
    }
}

/// `SELECT fk FROM children WHERE predicate`: the parents' keys of the children matching a
/// condition, as a subquery. Implemented for every `belongs_to` and every condition on the
/// child's table.
pub trait SelectForeignKeys<P: Model, const FK: u64, Pred>: BelongsTo<P, FK> {
    /// The subquery.
    type Query;

    /// The subquery of the foreign keys of the rows matching `predicate`.
    fn foreign_keys_where(predicate: Pred) -> Self::Query;
}

/// The children whose foreign key is `NULL` are left out: `x IN (.., NULL)` is `NULL`, not
/// false, for an `x` not listed, so that `NOT Post::having_..(..)` would match no row at all.
/// (Only where the foreign key can be `NULL`: the condition is then in the statement.)
impl<Ch, P, const FK: u64, Pred> SelectForeignKeys<P, FK, Pred> for Ch
where
    P: Model,
    Ch: BelongsTo<P, FK>,
    Ch::Table: SelectDsl<Ch::Column>,
    Select<Ch::Table, Ch::Column>: FilterDsl<Pred>,
    <Ch::Column as Expression>::SqlType: SqlType,
    <<Ch::Column as Expression>::SqlType as SqlType>::IsNull:
        NonNull<Filter<Select<Ch::Table, Ch::Column>, Pred>, Ch::Column>,
{
    type Query = <<<Ch::Column as Expression>::SqlType as SqlType>::IsNull as NonNull<
        Filter<Select<Ch::Table, Ch::Column>, Pred>,
        Ch::Column,
    >>::Query;

    fn foreign_keys_where(predicate: Pred) -> Self::Query {
        <<<Ch::Column as Expression>::SqlType as SqlType>::IsNull as NonNull<_, _>>::non_null(
            Ch::Table::default()
                .select(Ch::Column::default())
                .filter(predicate),
        )
    }
}

/// A query left as it is, or with the rows whose `C` is `NULL` left out, as `C` can be `NULL`
/// or not: implemented for Diesel's two kinds of SQL type.
pub trait NonNull<Q, C> {
    /// The query.
    type Query;

    /// `query`, without the rows whose `C` is `NULL`.
    fn non_null(query: Q) -> Self::Query;
}

/// Whether a column of a kind of SQL type can be `NULL`: implemented for Diesel's two kinds.
pub trait Nullability {
    /// Whether it can.
    const NULLABLE: bool;
}

impl Nullability for is_nullable::NotNull {
    const NULLABLE: bool = false;
}

impl Nullability for is_nullable::IsNullable {
    const NULLABLE: bool = true;
}

impl<Q, C> NonNull<Q, C> for is_nullable::NotNull {
    type Query = Q;

    fn non_null(query: Q) -> Q {
        query
    }
}

impl<Q, C> NonNull<Q, C> for is_nullable::IsNullable
where
    Q: FilterDsl<IsNotNull<C>>,
    C: Expression + ExpressionMethods + Default,
    C::SqlType: diesel::sql_types::SingleValue,
{
    type Query = Filter<Q, IsNotNull<C>>;

    fn non_null(query: Q) -> Self::Query {
        query.filter(C::default().is_not_null())
    }
}

/// `parents.id IN (SELECT fk FROM children WHERE predicate)`: see [`having`].
pub type Having<P, Ch, const FK: u64, Pred> =
    InSubquery<PrimaryKeyOf<P>, <Ch as SelectForeignKeys<P, FK, Pred>>::Query>;

/// `children.fk IN (SELECT id FROM parents WHERE predicate)`: see [`parent_where`].
pub type ParentWhere<Ch, P, const FK: u64, Pred> =
    InSubquery<<Ch as BelongsTo<P, FK>>::Column, <P as SelectKeys<Pred>>::Query, true>;

/// `rows.id IN (SELECT fk_row FROM joins WHERE fk_other IN (SELECT id FROM others WHERE
/// predicate))`: see [`linked_where`].
pub type LinkedWhere<P, J, T, const FK_P: u64, const FK_T: u64, Pred> =
    Having<P, J, FK_P, ParentWhere<J, T, FK_T, Pred>>;

/// The parents that have a child matching `predicate` (a condition on the child's table):
/// what `Post::having_comments(..)` returns.
pub fn having<P, Ch, const FK: u64, Pred>(predicate: Pred) -> Having<P, Ch, FK, Pred>
where
    P: Model,
    Ch: Model + SelectForeignKeys<P, FK, Pred>,
{
    InSubquery::new(
        diesel::Table::primary_key(&P::Table::default()),
        Ch::foreign_keys_where(predicate),
        Ch::table,
    )
}

/// The children whose parent matches `predicate` (a condition on the parent's table): what
/// `Comment::where_post(..)` returns.
pub fn parent_where<Ch, P, const FK: u64, Pred>(predicate: Pred) -> ParentWhere<Ch, P, FK, Pred>
where
    P: Model + SelectKeys<Pred>,
    Ch: BelongsTo<P, FK>,
{
    InSubquery::new(Ch::Column::default(), P::keys_where(predicate), P::table)
}

/// The rows linked through `J` to a row of `T` matching `predicate`: what
/// `Post::having_editors(..)` returns.
pub fn linked_where<P, J, T, const FK_P: u64, const FK_T: u64, Pred>(
    predicate: Pred,
) -> LinkedWhere<P, J, T, FK_P, FK_T, Pred>
where
    P: Model,
    T: Model + SelectKeys<Pred>,
    J: Model + BelongsTo<T, FK_T> + SelectForeignKeys<P, FK_P, ParentWhere<J, T, FK_T, Pred>>,
{
    having::<P, J, FK_P, _>(parent_where::<J, T, FK_T, Pred>(predicate))
}
