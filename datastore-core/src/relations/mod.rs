//! Relations between models: how they are declared, what they mean in the database, and how
//! they are loaded.
//!
//! A child declares `#[belongs_to(Parent)]` on its foreign-key field; its derive implements
//! [`BelongsTo`] and [`ForeignKey`] for it. A parent declares `#[has_many(Child)]`,
//! `#[has_one(Child)]` or `#[many_to_many(Other, through = Join)]`; its derive generates the
//! lazy and eager loaders, `link`/`unlink`, and the SQL filters by related fields, all on top
//! of the functions of [`load`].
//!
//! What a delete does is decided in the schema: a child of `has_many`/`has_one` is
//! `ON DELETE CASCADE`, a join row of `many_to_many` is `ON DELETE RESTRICT`
//! ([`on_delete_for`]).

mod fields;
pub mod load;
mod subquery;

pub use fields::{HasMany, HasOne, ManyToMany};
pub use subquery::InSubquery;

use diesel::connection::Connection;
use diesel::dsl::{Filter, Select};
use diesel::query_dsl::methods::{FilterDsl, SelectDsl};

use crate::model::{Model, Persist, Predicate};
use crate::schema::OnDelete;
use crate::Id;

/// How many keys one `IN (..)` list holds: below SQLite's limit of 32766 bound parameters and
/// PostgreSQL's of 65535, and large enough that a relation level of up to this many parents
/// costs one statement.
pub const CHUNK: usize = 10_000;

/// The kind of a relation field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelationKind {
    /// `#[has_one(T)]`: one child row whose unique foreign key references this row.
    HasOne,
    /// `#[has_many(T)]`: child rows whose foreign key references this row.
    HasMany,
    /// `#[many_to_many(T, through = J)]`: rows of `T` linked through rows of the join model `J`.
    ManyToMany,
}

/// A relation field as declared on a model (its entry in [`Model::RELATIONS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relation {
    /// The field's name.
    pub field: &'static str,
    /// The kind of relation.
    pub kind: RelationKind,
    /// The related model's name.
    pub target: &'static str,
    /// The join model of a many-to-many relation.
    pub through: Option<&'static str>,
    /// The child's foreign-key field, when the parent names it (`foreign_key = author_id`).
    pub foreign_key: Option<&'static str>,
}

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

    /// The foreign-key column (`comments::post_id`).
    type Column: diesel::Column<Table = Self::Table> + Default;

    /// The parent's key.
    fn parent_id(&self) -> Option<Id>;

    /// Points the foreign key at a parent.
    fn set_parent_id(&mut self, parent: Id);
}

/// The `belongs_to` fields a child has to one parent. Implemented by the child's derive for
/// each parent it belongs to.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no `#[belongs_to({P})]` field, which this relation needs",
    label = "`{Self}` does not belong to `{P}`",
    note = "add the foreign key to `{Self}`: `#[belongs_to({P})] pub <name>_id: Id`"
)]
pub trait ForeignKeysTo<P: Model>: Model {
    /// How many `#[belongs_to(P)]` fields the child has.
    const COUNT: usize;
    /// The [`fk_key`] of the first of them.
    const FIRST: u64;
}

/// A `belongs_to` foreign key as SQL, on one backend's connection. Implemented by the child's
/// derive.
pub trait ForeignKey<P: Model, const FK: u64, C: Connection>:
    BelongsTo<P, FK> + Persist<C>
{
    /// `fk = id`.
    fn parent_is(id: Id) -> Predicate<Self, C>;

    /// `fk = id AND other`.
    fn parent_is_and(id: Id, other: Predicate<Self, C>) -> Predicate<Self, C>;

    /// `fk IN (ids)`; at most [`CHUNK`] keys.
    fn parent_in(ids: &[Id]) -> Predicate<Self, C>;

    /// The children of one parent, in key order.
    fn children_of_one(conn: &mut C, parent: Id) -> crate::Result<Vec<Self>> {
        Self::load_where(conn, Self::parent_is(parent))
    }

    /// The children of these parents (at most [`CHUNK`]), in key order.
    fn children_of(conn: &mut C, parents: &[Id]) -> crate::Result<Vec<Self>> {
        Self::load_where(conn, Self::parent_in(parents))
    }

    /// How many children the parent has.
    fn count_children(conn: &mut C, parent: Id) -> crate::Result<i64> {
        Self::count_where(conn, Self::parent_is(parent))
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
    Ch: SelectForeignKeys<P, FK, Pred>,
{
    InSubquery::new(
        diesel::Table::primary_key(&P::Table::default()),
        Ch::foreign_keys_where(predicate),
    )
}

/// The children whose parent matches `predicate` (a condition on the parent's table): what
/// `Comment::where_post(..)` returns.
pub fn parent_where<Ch, P, const FK: u64, Pred>(predicate: Pred) -> ParentWhere<Ch, P, FK, Pred>
where
    P: SelectKeys<Pred>,
    Ch: BelongsTo<P, FK>,
{
    InSubquery::new(Ch::Column::default(), P::keys_where(predicate))
}

/// The rows linked through `J` to a row of `T` matching `predicate`: what
/// `Post::having_editors(..)` returns.
pub fn linked_where<P, J, T, const FK_P: u64, const FK_T: u64, Pred>(
    predicate: Pred,
) -> LinkedWhere<P, J, T, FK_P, FK_T, Pred>
where
    P: Model,
    T: SelectKeys<Pred>,
    J: BelongsTo<T, FK_T> + SelectForeignKeys<P, FK_P, ParentWhere<J, T, FK_T, Pred>>,
{
    having::<P, J, FK_P, _>(parent_where::<J, T, FK_T, Pred>(predicate))
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// What deleting a parent does to a child that `belongs_to` it, decided by how the parent
/// declares the relation: the link rows of a many-to-many (`through`) restrict the delete;
/// everything else (has_many, has_one, or no inverse at all) cascades.
///
/// Evaluated at compile time by the derive, over the parent's relations.
pub const fn on_delete_for(parent_relations: &[Relation], child: &str) -> OnDelete {
    let mut i = 0;
    while i < parent_relations.len() {
        if let Some(through) = parent_relations[i].through {
            if str_eq(through, child) {
                return OnDelete::Restrict;
            }
        }
        i += 1;
    }
    OnDelete::Cascade
}

/// Whether the parent declares `has_one` of the child, which makes the child's foreign key
/// unique. Evaluated at compile time by the derive.
pub const fn is_has_one(parent_relations: &[Relation], child: &str) -> bool {
    let mut i = 0;
    while i < parent_relations.len() {
        let r = &parent_relations[i];
        if matches!(r.kind, RelationKind::HasOne) && str_eq(r.target, child) {
            return true;
        }
        i += 1;
    }
    false
}

/// Fails compilation, with a message naming the fields, when a relation's child has several
/// `belongs_to` fields to the parent and the relation does not say which one it uses.
/// Called by the derive in a constant.
pub const fn assert_unambiguous(count: usize, message: &'static str) {
    if count > 1 {
        panic!("{}", message);
    }
}

/// The foreign keys on a pooled connection are those of the [`AnyConnection`](crate::AnyConnection)
/// inside (see the matching `Persist` impl).
impl<P, Ch, const FK: u64> ForeignKey<P, FK, crate::PooledConn> for Ch
where
    P: Model,
    Ch: ForeignKey<P, FK, crate::AnyConnection>,
{
    fn parent_is(id: Id) -> Predicate<Self, crate::PooledConn> {
        <Ch as ForeignKey<P, FK, crate::AnyConnection>>::parent_is(id)
    }

    fn parent_is_and(
        id: Id,
        other: Predicate<Self, crate::PooledConn>,
    ) -> Predicate<Self, crate::PooledConn> {
        <Ch as ForeignKey<P, FK, crate::AnyConnection>>::parent_is_and(id, other)
    }

    fn parent_in(ids: &[Id]) -> Predicate<Self, crate::PooledConn> {
        <Ch as ForeignKey<P, FK, crate::AnyConnection>>::parent_in(ids)
    }

    fn children_of_one(conn: &mut crate::PooledConn, parent: Id) -> crate::Result<Vec<Self>> {
        <Ch as ForeignKey<P, FK, crate::AnyConnection>>::children_of_one(conn, parent)
    }

    fn children_of(conn: &mut crate::PooledConn, parents: &[Id]) -> crate::Result<Vec<Self>> {
        <Ch as ForeignKey<P, FK, crate::AnyConnection>>::children_of(conn, parents)
    }

    fn count_children(conn: &mut crate::PooledConn, parent: Id) -> crate::Result<i64> {
        <Ch as ForeignKey<P, FK, crate::AnyConnection>>::count_children(conn, parent)
    }
}
