//! Code generation: one file per generated block.

mod checks;
mod db_enum;
mod defaults;
mod graph;
mod insertable;
mod key;
mod model_impl;
mod private;
mod queryable;
mod relations;
mod statements;
mod table;

use proc_macro2::TokenStream;
use quote::quote;

use crate::parse;

pub use db_enum::db_enum;
use private::Private;

/// Everything `#[derive(Model)]` generates: what the model declares, and the glue between its
/// types and the runtime's generic code. The `table!` module sits beside the struct; the rest
/// goes in an anonymous constant that brings the re-exported Diesel into scope.
pub fn model(model: &parse::Model) -> TokenStream {
    let private = model.private();
    let table = table::table(model);
    let checks = checks::checks(model);
    let model_impl = model_impl::model_impl(model);
    let queryable = queryable::queryable(model);
    let insertable = insertable::insertable(model);
    let statements = statements::statements(model);
    let save_graph = graph::save_graph(model);
    let child_side = relations::child_side(model);
    let parent_side = relations::parent_side(model);
    quote! {
        #table
        #[allow(non_local_definitions, clippy::all)]
        const _: () = {
            use #private::diesel;
            #checks
            #model_impl
            #queryable
            #insertable
            #statements
            #save_graph
            #child_side
            #parent_side
        };
    }
}
