//! Relations between models: how they are declared, what they mean in the database, and how
//! they are loaded.
//!
//! A child declares `#[belongs_to(Parent)]` on its foreign-key field; its derive implements
//! [`BelongsTo`] for it, and every model then has [`ChildOf`] (the foreign key as SQL) on every
//! connection. A parent declares `#[has_many(Child)]`, `#[has_one(Child)]` or
//! `#[many_to_many(Other, through = Join)]`; its derive generates the lazy and eager loaders,
//! `link`/`unlink`, and the SQL filters by related fields, all on top of the functions of
//! [`load`].
//!
//! What the declarations mean for the database (which foreign key is unique, what a delete
//! does) is decided in one place, [`schema::rules`](crate::schema::rules); a delete that links
//! refuse is explained by `restrict`.

mod effects;
mod fields;
pub mod graph;
pub mod load;
pub(crate) mod restrict;
mod subquery;

pub(crate) use effects::plan as plan_delete;
pub use effects::{AffectedRows, DeleteEffects};
pub use fields::{HasMany, HasOne, ManyToMany};
pub use subquery::InSubquery;

pub use crate::backend::CHUNK;
pub use crate::schema::{Relation, RelationKind};

use diesel::connection::Connection;
use diesel::dsl::{Filter, Select};
use diesel::expression::BoxableExpression;
use diesel::query_dsl::methods::{FilterDsl, SelectDsl};
use diesel::sql_types::Bool;
use diesel::{BoolExpressionMethods, ExpressionMethods};

use crate::backend::dispatch;
use crate::model::{IntoPredicate, Model, Predicate};
use crate::persist::Persist;
use crate::{AnyBackend, AnyConnection, NativeConnection, PooledConn};
use diesel::expression::AsExpression;
use diesel::helper_types::SqlTypeOf;

/// The key of one `belongs_to` field among a child's foreign keys: a hash of the field's name,
/// so that a child may belong to the same parent through two fields (`author_id`, `editor_id`).
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
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no `#[belongs_to({P})]` field with the foreign key named in the relation",
    label = "no such foreign key",
    note = "the field named by `foreign_key = ..` must be declared `#[belongs_to({P})]` in `{Self}`"
)]
pub trait BelongsTo<P: Model, const FK: u64>: Model {
    /// The foreign-key field's (and column's) name.
    const FIELD: &'static str;

    /// The foreign-key column (`comments::post_id`), of the parent's key's type.
    type Column: diesel::Column<Table = Self::Table> + Default + Copy + Send + 'static;

    /// Whether a condition on the column may be `NULL`: [`NotNullCondition`] for a required
    /// parent, [`NullableCondition`] for an optional one (its column is nullable).
    ///
    /// [`NotNullCondition`]: crate::NotNullCondition
    /// [`NullableCondition`]: crate::NullableCondition
    type Nullability;

    /// The parent's key.
    fn parent_key(&self) -> Option<P::Key>;

    /// Points the foreign key at a parent.
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
pub trait ChildOf<P: Model, const FK: u64, C: Connection>: BelongsTo<P, FK> + Persist<C> {
    /// `fk = key`.
    fn parent_is(key: P::Key) -> Predicate<Self, C>;

    /// `fk = key AND other`.
    fn parent_is_and(key: P::Key, other: Predicate<Self, C>) -> Predicate<Self, C>;

    /// `fk IN (keys)`; at most [`CHUNK`] keys.
    fn parent_in(keys: &[P::Key]) -> Predicate<Self, C>;

    /// The children of one parent, in key order.
    fn children_of_one(conn: &mut C, parent: P::Key) -> crate::Result<Vec<Self>> {
        Self::load_where(conn, Self::parent_is(parent))
    }

    /// The children of these parents (at most [`CHUNK`]), in key order.
    fn children_of(conn: &mut C, parents: &[P::Key]) -> crate::Result<Vec<Self>> {
        Self::load_where(conn, Self::parent_in(parents))
    }
}

/// The conditions on a foreign-key column, boxed for backend `DB`: what [`ChildOf`]'s are
/// built from. Implemented for every `belongs_to` on every backend.
#[doc(hidden)]
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

impl<Ch, P, const FK: u64, Pred> SelectForeignKeys<P, FK, Pred> for Ch
where
    P: Model,
    Ch: BelongsTo<P, FK>,
    Ch::Table: SelectDsl<Ch::Column>,
    Select<Ch::Table, Ch::Column>: FilterDsl<Pred>,
{
    type Query = Filter<Select<Ch::Table, Ch::Column>, Pred>;

    fn foreign_keys_where(predicate: Pred) -> Self::Query {
        Ch::Table::default()
            .select(Ch::Column::default())
            .filter(predicate)
    }
}

/// `parents.id IN (SELECT fk FROM children WHERE predicate)`: see [`having`].
pub type Having<P, Ch, const FK: u64, Pred> =
    InSubquery<PrimaryKeyOf<P>, <Ch as SelectForeignKeys<P, FK, Pred>>::Query>;

/// `children.fk IN (SELECT id FROM parents WHERE predicate)`: see [`parent_where`].
pub type ParentWhere<Ch, P, const FK: u64, Pred> =
    InSubquery<<Ch as BelongsTo<P, FK>>::Column, <P as SelectKeys<Pred>>::Query>;

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
    crate::observe::live::filter_reads(Ch::table());
    InSubquery::new(
        diesel::Table::primary_key(&P::Table::default()),
        Ch::foreign_keys_where(predicate),
    )
}

/// The children whose parent matches `predicate` (a condition on the parent's table): what
/// `Comment::where_post(..)` returns.
pub fn parent_where<Ch, P, const FK: u64, Pred>(predicate: Pred) -> ParentWhere<Ch, P, FK, Pred>
where
    P: Model + SelectKeys<Pred>,
    Ch: BelongsTo<P, FK>,
{
    crate::observe::live::filter_reads(P::table());
    InSubquery::new(Ch::Column::default(), P::keys_where(predicate))
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
