//! Derive macros of the `datastore` ORM: `#[derive(Model)]` and `#[derive(DbEnum)]`.
//!
//! Each derive works in three layers: `parse` builds a typed model of the struct and its
//! attributes, checking as it goes and collecting every error with its span (`ctxt`);
//! `expand` then generates one block of code per concern from that model.
//!
//! Use them through the `datastore` crate, whose documentation describes the attributes.

#![forbid(unsafe_code)]

mod ctxt;
mod expand;
mod parse;
#[cfg(test)]
mod snapshots;

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

/// Makes a struct a model stored in a table. See the `datastore` crate.
#[proc_macro_derive(
    Model,
    attributes(
        model,
        column,
        primary_key,
        unique,
        index,
        has_one,
        has_many,
        belongs_to,
        many_to_many
    )
)]
pub fn derive_model(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match parse::Model::from_ast(&input) {
        Ok(model) => expand::model(&model).into(),
        Err(errors) => errors.into(),
    }
}

/// Makes a fieldless enum storable as text constrained to its variants. See the `datastore`
/// crate.
#[proc_macro_derive(DbEnum, attributes(db_enum))]
pub fn derive_db_enum(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match parse::DbEnum::from_ast(&input) {
        Ok(db_enum) => expand::db_enum(&db_enum).into(),
        Err(errors) => errors.into(),
    }
}
