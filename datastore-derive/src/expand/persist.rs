//! `impl Persist` for each backend: the typed reads and writes.

use proc_macro2::TokenStream;
use quote::quote;

use crate::parse::{Model, TimestampRole};

pub fn persist(model: &Model) -> TokenStream {
    let sqlite = quote!(diesel::sqlite::SqliteConnection);
    let backend = quote!(diesel::sqlite::Sqlite);
    persist_for(model, &sqlite, &backend)
}

fn persist_for(model: &Model, conn: &TokenStream, backend: &TokenStream) -> TokenStream {
    let ident = model.ident;
    let table = &model.table;
    let key = model.primary_key().ident;

    // Timestamps: both set on insert; on conflict, created_at keeps its stored value.
    let created = model.timestamp(TimestampRole::Created).map(|f| f.ident);
    let updated = model.timestamp(TimestampRole::Updated).map(|f| f.ident);
    let stamp = created
        .iter()
        .chain(updated.iter())
        .map(|f| quote!(self.#f = now;));
    let now = (created.is_some() || updated.is_some())
        .then(|| quote!(let now = ::datastore::Timestamp::now();));

    let non_key: Vec<_> = model
        .columns()
        .filter(|(_, c)| !c.primary_key)
        .map(|(f, _)| f.ident)
        .collect();
    let updates: Vec<_> = non_key
        .iter()
        .filter(|f| Some(**f) != created)
        .map(|f| quote!(diesel::ExpressionMethods::eq(#table::#f, diesel::upsert::excluded(#table::#f))))
        .collect();
    // A row whose data did not change is not written again (nor its updated_at bumped).
    let data: Vec<_> = non_key
        .iter()
        .filter(|f| Some(**f) != created && Some(**f) != updated)
        .collect();
    let changed = data.iter().map(|f| {
        quote!(diesel::expression_methods::SqliteExpressionMethods::is_not(#table::#f, diesel::upsert::excluded(#table::#f)))
    });
    let changed = changed.reduce(|a, b| quote!(diesel::BoolExpressionMethods::or(#a, #b)));

    let upsert = match changed {
        Some(changed) => quote! {
            diesel::query_dsl::methods::FilterDsl::filter(
                diesel::insert_into(#table::table)
                    .values(&self)
                    .on_conflict(#table::#key)
                    .do_update()
                    .set((#(#updates,)*)),
                #changed,
            )
        },
        None => quote! {
            diesel::insert_into(#table::table).values(&self).on_conflict(#table::#key).do_nothing()
        },
    };

    quote! {
        impl ::datastore::Persist<#conn> for #ident {
            type Query = #table::BoxedQuery<'static, #backend>;

            fn query() -> Self::Query {
                diesel::QueryDsl::into_boxed(diesel::QueryDsl::order(
                    #table::table,
                    diesel::ExpressionMethods::asc(#table::#key),
                ))
            }

            fn load(conn: &mut #conn, query: Self::Query) -> ::datastore::Result<::std::vec::Vec<Self>> {
                ::core::result::Result::Ok(diesel::RunQueryDsl::load(query, conn)?)
            }

            fn save(mut self, conn: &mut #conn) -> ::datastore::Result<Self> {
                #now
                #(#stamp)*
                let stored: ::core::option::Option<Self> =
                    diesel::OptionalExtension::optional(diesel::RunQueryDsl::get_result(#upsert, conn))?;
                match stored {
                    ::core::option::Option::Some(row) => ::core::result::Result::Ok(row),
                    // Unchanged: nothing was written; the stored row is the answer.
                    ::core::option::Option::None => {
                        <Self as ::datastore::Persist<#conn>>::find(conn, &self.#key)?.ok_or_else(|| {
                            ::datastore::Error::NotFound {
                                table: ::std::string::ToString::to_string(<Self as ::datastore::Model>::TABLE_NAME),
                                key: ::std::string::ToString::to_string(&self.#key),
                            }
                        })
                    }
                }
            }

            fn find(conn: &mut #conn, id: &::datastore::Id) -> ::datastore::Result<::core::option::Option<Self>> {
                let query = diesel::QueryDsl::find(#table::table, id);
                ::core::result::Result::Ok(diesel::OptionalExtension::optional(diesel::RunQueryDsl::first(query, conn))?)
            }

            fn count(conn: &mut #conn) -> ::datastore::Result<i64> {
                let query = diesel::QueryDsl::count(#table::table);
                ::core::result::Result::Ok(diesel::RunQueryDsl::get_result(query, conn)?)
            }

            fn delete_by_id(conn: &mut #conn, id: &::datastore::Id) -> ::datastore::Result<bool> {
                let target = diesel::QueryDsl::find(#table::table, id);
                ::core::result::Result::Ok(diesel::RunQueryDsl::execute(diesel::delete(target), conn)? > 0)
            }

            fn delete_where(
                conn: &mut #conn,
                predicate: ::datastore::Predicate<Self, #conn>,
            ) -> ::datastore::Result<usize> {
                let target = diesel::QueryDsl::filter(#table::table, predicate);
                ::core::result::Result::Ok(diesel::RunQueryDsl::execute(diesel::delete(target), conn)?)
            }
        }

        impl #ident {
            /// The model's Diesel table, to query with Diesel's DSL:
            /// `Model::query().filter(..).load(&mut conn)`.
            pub fn query() -> #table::table {
                #table::table
            }
        }
    }
}
