//! Relations between models: how they are declared, what they mean in the database, and how
//! they are loaded.
//!
//! A child declares `#[belongs_to(Parent)]` on its foreign-key field; its derive implements
//! [`BelongsTo`] for it, and every model then has [`ChildOf`] (the foreign key as SQL) on every
//! connection. A parent declares `#[has_many(Child)]`, `#[has_one(Child)]` or
//! `#[many_to_many(Other, through = Join)]`; its derive generates the lazy and eager loaders,
//! `link`/`unlink`, and the SQL filters by related fields, all on top of generic functions
//! written once for every relation (in `relations/load.rs` and `relations/graph.rs`).
//!
//! What the declarations mean for the database (which foreign key is unique, what a delete
//! does) is decided in one place, `schema/rules.rs`; what a delete does at run time, and why
//! links refuse one, is worked out in `relations/effects.rs` and `relations/restrict.rs`.

pub(crate) mod belongs_to;
mod effects;
mod fields;
pub(crate) mod graph;
pub(crate) mod load;
pub(crate) mod restrict;
pub(crate) mod subquery;

pub use belongs_to::{BelongsTo, ChildOf, fk_key};
pub use effects::{AffectedRows, DeleteEffects};
pub(crate) use effects::{Purpose, plan as plan_delete};
pub use fields::{HasMany, HasOne, ManyToMany};
pub use subquery::InSubquery;

pub use crate::backend::CHUNK;
