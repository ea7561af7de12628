//! `column IN (SELECT ..)`: the SQL node of the filters by related rows.

use diesel::backend::Backend;
use diesel::expression::{AppearsOnTable, Expression, SelectableExpression, ValidGrouping};
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::Bool;
use diesel::QueryResult;

/// `column IN (subquery)`, a condition on the column's table; built by the generated
/// `having_*` and `where_*` filters (`Post::having_comments(..)`), on every backend.
///
/// The subquery selects the column's SQL type (keys, here), which its constructors ensure.
#[derive(Debug, Clone, Copy)]
pub struct InSubquery<C, Q> {
    column: C,
    query: Q,
}

impl<C, Q> InSubquery<C, Q> {
    /// `column IN (query)`.
    pub(crate) fn new(column: C, query: Q) -> Self {
        Self { column, query }
    }
}

impl<C: Expression, Q> Expression for InSubquery<C, Q> {
    type SqlType = Bool;
}

impl<C, Q, DB> QueryFragment<DB> for InSubquery<C, Q>
where
    DB: Backend,
    C: QueryFragment<DB>,
    Q: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql("(");
        self.column.walk_ast(out.reborrow())?;
        out.push_sql(" IN (");
        self.query.walk_ast(out.reborrow())?;
        out.push_sql("))");
        Ok(())
    }
}

impl<C: QueryId, Q: QueryId> QueryId for InSubquery<C, Q> {
    type QueryId = InSubquery<C::QueryId, Q::QueryId>;
    const HAS_STATIC_QUERY_ID: bool = C::HAS_STATIC_QUERY_ID && Q::HAS_STATIC_QUERY_ID;
}

/// The subquery is a complete query of its own: only the column ties the condition to a table.
impl<C, Q, QS> AppearsOnTable<QS> for InSubquery<C, Q>
where
    C: AppearsOnTable<QS>,
    Self: Expression,
{
}

impl<C, Q, QS> SelectableExpression<QS> for InSubquery<C, Q>
where
    C: SelectableExpression<QS>,
    Self: AppearsOnTable<QS>,
{
}

impl<C, Q, GB> ValidGrouping<GB> for InSubquery<C, Q>
where
    C: ValidGrouping<GB>,
{
    type IsAggregate = C::IsAggregate;
}
