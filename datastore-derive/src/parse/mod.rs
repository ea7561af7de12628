//! The typed model of the input: what the user declared, checked as it is read.

mod attr;
mod db_enum;
mod model;

pub use db_enum::DbEnum;
pub use model::{
    option_of, Default, DefaultValue, Field, FieldKind, KeyKind, Model, OnDelete, Relation,
    RelationKind, TimestampRole,
};
