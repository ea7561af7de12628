//! The relation rules: what follows from the models' declarations for the database.
//!
//! One place decides, from [`ModelDeclaration`]s alone, with related models told apart by their
//! type ([`ModelRef`]), never by their name:
//!
//! - **which `belongs_to` answers which relation**: the foreign key a `has_many`/`has_one`
//!   names with `foreign_key = ..`, or else the child's only `belongs_to` to the parent (a
//!   child with several and no name is a compile error); for a `many_to_many`, the join
//!   model's `belongs_to` to each side, named the same way (`foreign_key = ..` the one to the
//!   declaring side, `other_key = ..` the one to the other), as a model linked to itself must
//!   ([`answering`]);
//! - **which foreign key is unique**: the one answering a `has_one` (one child per parent),
//!   besides the columns declared `#[unique]`; and a join model's pair of foreign keys, which
//!   links two rows at most once (a unique index, unless the pair is the join model's key);
//! - **what a delete does** ([`on_delete`]): what a `belongs_to` states (`on_delete = cascade`,
//!   `restrict` or `set_null`); by default the foreign keys of a join model, the ones a
//!   `many_to_many` uses, are `ON DELETE RESTRICT` (join rows are never deleted implicitly:
//!   unlinking is explicit), and every other foreign key, a `has_many` or `has_one` child's
//!   (optional or not) or one no relation answers, is `ON DELETE CASCADE`;
//! - **what a change of a key does**: a foreign key to a natural key ([`KeyKind::Natural`],
//!   which the application may change) is `ON UPDATE CASCADE`; `Id`s and keys the database
//!   assigns never change.
//!
//! A foreign key's rules depend only on the declarations of the child and of the models it
//! belongs to (a `many_to_many` through a join model is declared by one of the join model's
//! parents), so they are resolved once per model and process, when its table is first needed
//! ([`Model::table`](crate::Model::table)), and every schema holding the model agrees on them.
//!
//! ```
//! use datastore::prelude::*;
//! use datastore::schema::OnDelete;
//!
//! #[derive(Model, Debug, Clone, Default)]
//! pub struct User {
//!     #[primary_key]
//!     pub id: Id,
//!     #[has_one(Passport, foreign_key = holder_id)]
//!     pub passport: HasOne<Passport>,
//! }
//!
//! #[derive(Model, Debug, Clone, Default)]
//! pub struct Passport {
//!     #[primary_key]
//!     pub id: Id,
//!     #[belongs_to(User)]
//!     pub holder_id: Id,
//!     #[belongs_to(User)]
//!     pub issuer_id: Id,
//! }
//!
//! let table = Passport::table();
//! assert!(table.column("holder_id").unwrap().unique, "one passport per holder");
//! assert!(!table.column("issuer_id").unwrap().unique);
//! assert_eq!(table.foreign_key("issuer_id").unwrap().on_delete, OnDelete::Cascade);
//! ```

use std::borrow::Cow;

use super::{
    BelongsToField, ForeignKey, Index, KeyKind, ModelDeclaration, ModelRef, OnDelete, Relation,
    RelationKind, Table,
};

/// The table a model's declaration resolves to: its columns (a foreign key answering a
/// `has_one` made unique), a foreign key per `belongs_to` with what a delete does, and its
/// indexes.
pub(crate) fn resolve(child: &'static ModelDeclaration) -> Table {
    let this = child.model();
    let columns = child
        .columns()
        .iter()
        .map(|column| {
            let mut column = column.clone();
            column.unique |= child
                .belongs_to()
                .iter()
                .any(|fk| fk.column == column.name && answers_has_one(this, fk));
            column
        })
        .collect::<Vec<_>>();
    let foreign_keys = child
        .belongs_to()
        .iter()
        .map(|fk| {
            let parent = fk.parent.declaration();
            ForeignKey {
                column: Cow::Borrowed(fk.column),
                references: Cow::Borrowed(parent.table_name()),
                // A parent is keyed by one column: the derive refuses a `belongs_to` to a model
                // with a composite key.
                referenced_column: Cow::Borrowed(parent.primary_key()[0]),
                on_delete: on_delete(this, fk),
                on_update_cascade: parent.key_kind() == KeyKind::Natural,
            }
        })
        .collect::<Vec<_>>();
    let mut indexes = child.indexes().to_vec();
    for (a, b) in linked_pairs(this) {
        // A join model keyed by its pair is unique by its key already.
        let key = child.primary_key();
        if key.len() == 2 && key.contains(&a) && key.contains(&b) {
            continue;
        }
        indexes.push(Index {
            name: format!("uq_{}_{a}_{b}", child.table_name()).into(),
            columns: vec![Cow::Borrowed(a), Cow::Borrowed(b)].into(),
            unique: true,
        });
    }
    Table {
        name: Cow::Borrowed(child.table_name()),
        primary_key: child
            .primary_key()
            .iter()
            .map(|c| Cow::Borrowed(*c))
            .collect(),
        columns: columns.into(),
        foreign_keys: foreign_keys.into(),
        indexes: indexes.into(),
    }
}

/// The pairs of foreign-key columns a join model links rows by, one per `many_to_many` going
/// through it (each once, whichever side declares it): a pair links two rows at most once.
fn linked_pairs(join: ModelRef) -> Vec<(&'static str, &'static str)> {
    let mut pairs: Vec<(&'static str, &'static str)> = Vec::new();
    for parent in join.declaration().belongs_to().iter().map(|b| b.parent) {
        for relation in parent.declaration().relations() {
            let (Some(this), Some(other)) = (
                answering(join, parent, relation, false),
                answering(join, parent, relation, true),
            ) else {
                continue;
            };
            let pair = (this.column, other.column);
            let known = pairs.iter().any(|&(a, b)| (a, b) == pair || (b, a) == pair);
            if !known && pair.0 != pair.1 {
                pairs.push(pair);
            }
        }
    }
    pairs
}

/// The child's `belongs_to` that answers `relation` of `parent`: for a `has_many`/`has_one`
/// of `child`, the foreign key it names or the child's only one to the parent; for a
/// `many_to_many` through `child`, the join model's foreign key to `parent` (the one it names
/// with `foreign_key = ..`, or the only one), or to the other side when `to_target` (named with
/// `other_key = ..`, or the only one). `None` when the relation is not about `child`, or is
/// ambiguous (which the derive refuses at compile time).
pub fn answering(
    child: ModelRef,
    parent: ModelRef,
    relation: &Relation,
    to_target: bool,
) -> Option<&'static BelongsToField> {
    let declared = child.declaration().belongs_to();
    // The foreign key to `model` named `column`, or else the only one to it.
    let to = |model: ModelRef, column: Option<&str>| match column {
        Some(column) => declared
            .iter()
            .find(|fk| fk.column == column && fk.parent == model),
        None => {
            let mut matching = declared.iter().filter(|fk| fk.parent == model);
            match (matching.next(), matching.next()) {
                (Some(fk), None) => Some(fk),
                _ => None,
            }
        }
    };
    match relation.kind {
        RelationKind::HasMany | RelationKind::HasOne => {
            if relation.target != child || to_target {
                return None;
            }
            to(parent, relation.foreign_key)
        }
        RelationKind::ManyToMany => {
            if relation.through != Some(child) {
                return None;
            }
            if to_target {
                to(relation.target, relation.other_key)
            } else {
                to(parent, relation.foreign_key)
            }
        }
    }
}

/// Whether `fk` of `child` answers a `has_one` its parent declares.
fn answers_has_one(child: ModelRef, fk: &BelongsToField) -> bool {
    fk.parent
        .declaration()
        .relations()
        .iter()
        .filter(|r| r.kind == RelationKind::HasOne)
        .any(|r| answering(child, fk.parent, r, false).is_some_and(|a| a == fk))
}

/// What deleting the parent does to the rows `fk` of `child` points from: what the field
/// states (`on_delete = ..`); otherwise a join model's foreign keys, those a `many_to_many` of
/// either parent uses, restrict, and everything else (optional or not) cascades.
pub fn on_delete(child: ModelRef, fk: &BelongsToField) -> OnDelete {
    if let Some(stated) = fk.on_delete {
        return stated;
    }
    let parents = child.declaration().belongs_to().iter().map(|b| b.parent);
    for parent in parents {
        for relation in parent.declaration().relations() {
            let uses = |to_target| answering(child, parent, relation, to_target) == Some(fk);
            if relation.kind == RelationKind::ManyToMany && (uses(false) || uses(true)) {
                return OnDelete::Restrict;
            }
        }
    }
    OnDelete::Cascade
}

/// A foreign key of `child` that a `many_to_many` goes through (its rows links: restricting,
/// one for each pair) and a `has_many` or `has_one` answers (its rows children: deleted with
/// their parent), whichever models declare them: the rules cannot be both, and the schema is
/// refused ([`SchemaProblem::LinkAndChild`](super::SchemaProblem::LinkAndChild)).
pub(crate) fn link_and_child(child: ModelRef) -> Option<(&'static BelongsToField, ModelRef)> {
    let declared = child.declaration().belongs_to();
    declared.iter().find_map(|fk| {
        let (mut link, mut children_of) = (false, None);
        for parent in declared.iter().map(|b| b.parent) {
            for relation in parent.declaration().relations() {
                let answers = |to_target| answering(child, parent, relation, to_target) == Some(fk);
                match relation.kind {
                    RelationKind::ManyToMany => link |= answers(false) || answers(true),
                    RelationKind::HasMany | RelationKind::HasOne => {
                        if answers(false) {
                            children_of = Some(parent);
                        }
                    }
                }
            }
        }
        children_of.filter(|_| link).map(|parent| (fk, parent))
    })
}
