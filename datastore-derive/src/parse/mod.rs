//! The typed model of the input: what the user declared, checked as it is read.

mod attr;
mod db_enum;
mod model;
mod names;

pub use db_enum::DbEnum;
pub use model::{
    option_of, ungroup, Default, DefaultValue, Field, FieldKind, KeyKind, Model, OnDelete,
    Relation, RelationKind, TimestampRole,
};
pub use names::method_ident;
