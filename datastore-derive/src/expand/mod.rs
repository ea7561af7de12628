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
    let upsert = persist::upsert(model);
    let backends = [
        relations::Backend {
            conn: quote!(diesel::sqlite::SqliteConnection),
            backend: quote!(diesel::sqlite::Sqlite),
        },
        relations::Backend {
            conn: quote!(diesel::pg::PgConnection),
            backend: quote!(diesel::pg::Pg),
        },
    ];
    // The multi-backend connection runs what it can on the backend's own connection inside.
    let persist = backends
        .iter()
        .map(|b| persist::persist(model, b))
        .chain([persist::persist_any(model)]);
    let child_side = relations::child_side(model);
    let foreign_keys = backends
        .iter()
        .map(|b| relations::foreign_keys(model, b))
        .chain([relations::foreign_keys_any(model)]);
    let parent_side = relations::parent_side(model);
    quote! {
        #table
        #[allow(non_local_definitions, clippy::all)]
        const _: () = {
            use ::datastore::__private::diesel;
            #checks
            #model_impl
            #queryable
            #insertable
            #upsert
            #(#persist)*
            #child_side
            #(#foreign_keys)*
            #parent_side
        };
    }
}
