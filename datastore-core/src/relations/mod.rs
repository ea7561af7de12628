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

pub use fields::{HasMany, HasOne, ManyToMany};

use diesel::connection::Connection;

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

    /// The parent's key (`None` for a nullable foreign key that is not set).
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
    /// The boxed subquery selecting the foreign key of the rows matching a predicate
    /// (`SELECT post_id FROM comments WHERE ..`).
    type ParentIds;

    /// `fk = id`.
    fn parent_is(id: Id) -> Predicate<Self, C>;

    /// `fk IN (ids)`; at most [`CHUNK`] keys.
    fn parent_in(ids: &[Id]) -> Predicate<Self, C>;

    /// `fk IN (SELECT id FROM parents WHERE predicate)`.
    fn parent_where(predicate: Predicate<P, C>) -> Predicate<Self, C>
    where
        P: Persist<C>;

    /// See [`ForeignKey::ParentIds`].
    fn parent_ids_where(predicate: Predicate<Self, C>) -> Self::ParentIds;
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
