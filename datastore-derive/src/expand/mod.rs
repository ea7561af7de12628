//! Code generation: one file per generated block.

mod checks;
mod db_enum;
mod insertable;
mod model_impl;
mod persist;
mod queryable;
mod relations;
mod table;

use proc_macro2::TokenStream;
use quote::quote;

use crate::parse;

pub use db_enum::db_enum;

/// Everything `#[derive(Model)]` generates. The `table!` module sits beside the struct; the
/// impls go in an anonymous constant that brings the re-exported Diesel into scope.
pub fn model(model: &parse::Model) -> TokenStream {
    let table = table::table(model);
    let checks = checks::checks(model);
    let model_impl = model_impl::model_impl(model);
    let queryable = queryable::queryable(model);
    let insertable = insertable::insertable(model);
    let sqlite = relations::Backend {
        conn: quote!(diesel::sqlite::SqliteConnection),
        backend: quote!(diesel::sqlite::Sqlite),
    };
    let persist = persist::persist(model, &sqlite);
    let child_side = relations::child_side(model, &sqlite);
    let parent_side = relations::parent_side(model, &sqlite);
    quote! {
        #table
        #[allow(non_local_definitions, clippy::all)]
        const _: () = {
            use ::datastore::__private::diesel;
            #checks
            #model_impl
            #queryable
            #insertable
            #persist
            #child_side
            #parent_side
        };
    }
}
