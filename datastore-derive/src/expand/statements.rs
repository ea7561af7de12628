//! The model's typed statements: `Statements` (its fixed statements, on a backend's own
//! connection), `Writes` (those that bind borrowed rows) and `Queries` (built from a condition
//! or by the caller, on any connection). One impl each, for every connection whose backend can
//! run them: the bounds name the statement types, and the bodies are one Diesel statement each.
//! What a model does around them lives in the runtime (`Persist`).

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::key::{key_columns, key_filter, key_order, key_type};
use crate::parse::{Field, KeyKind, Model};

/// The bound values of a row's `columns`, walked one by one with commas between them: a struct
/// `name` holding them, and its `QueryFragment` on every backend.
fn binds(model: &Model, name: &syn::Ident, columns: &[&Field]) -> TokenStream {
    let private = model.private();
    let ident = model.ident;
    let table = &model.table;
    let bind_types: Vec<_> = columns
        .iter()
        .map(|f| {
            let ty = f.ty;
            let private = private.at(ty.span());
            quote_spanned!(ty.span()=> <#ty as #private::FieldType>::Bind<'a>)
        })
        .collect();
    let sql_types: Vec<_> = columns
        .iter()
        .map(|f| {
            let column = f.ident;
            quote!(<#table::#column as diesel::Expression>::SqlType)
        })
        .collect();
    let values = columns.iter().map(|f| {
        let f = f.ident;
        quote!(#private::FieldType::bind(&row.#f))
    });
    let walk = sql_types.iter().enumerate().map(|(i, sql_type)| {
        let index = syn::Index::from(i);
        let comma = (i > 0).then(|| quote!(out.push_sql(", ");));
        quote! {
            #comma
            out.push_bind_param::<#sql_type, _>(&self.0.#index)?;
        }
    });
    quote! {
        struct #name<'a>((#(#bind_types,)*), ::core::marker::PhantomData<&'a #ident>);

        impl<'a> #name<'a> {
            fn new(row: &'a #ident) -> Self {
                let _ = row;
                Self((#(#values,)*), ::core::marker::PhantomData)
            }
        }

        impl<'a, __DB> diesel::query_builder::QueryFragment<__DB> for #name<'a>
        where
            __DB: diesel::backend::Backend #(+ diesel::sql_types::HasSqlType<#sql_types>)*,
            #(#bind_types: diesel::serialize::ToSql<#sql_types, __DB>,)*
        {
            fn walk_ast<'b>(&'b self, mut out: diesel::query_builder::AstPass<'_, 'b, __DB>) -> diesel::QueryResult<()> {
                #(#walk)*
                ::core::result::Result::Ok(())
            }
        }
    }
}

pub fn statements(model: &Model) -> TokenStream {
    let private = model.private();
    let ident = model.ident;
    let table = &model.table;
    let columns: Vec<_> = model.columns().map(|(f, _)| f).collect();
    let key_type = key_type(model);
    let key_columns = key_columns(model);
    // A column's name is its type too (`posts::id`).
    let key_columns_type = key_columns.clone();
    let (order, order_type) = key_order(model);
    let (by_key_filter, by_key_type) = key_filter(model, &quote!(key));
    let composite = model.key.fields.len() > 1;

    let all_binds = binds(model, &syn::parse_quote!(__Binds), &columns);

    // Rows are read through the model's `Selection`.
    let selection = quote!(#private::Selection<#ident>);
    let selected = quote!(diesel::dsl::Select<#table::table, #selection>);
    let select = quote!(diesel::QueryDsl::select(#table::table, <#selection>::new()));
    let ordered = quote!(diesel::dsl::Order<#selected, #order_type>);
    let by_key = quote!(diesel::dsl::Filter<#table::table, #by_key_type>);
    let read_by_key = quote!(diesel::dsl::Filter<#selected, #by_key_type>);

    // Rows by keys: one `IN` list for a one-column key, a lookup per key for a composite one
    // (Diesel has no row-value `IN`).
    let (find_in, by_keys_bound) = if composite {
        (
            quote! {
                let mut rows = ::std::vec::Vec::with_capacity(keys.len());
                for key in keys {
                    rows.extend(<Self as #private::Statements<__C>>::find(conn, key)?);
                }
                ::core::result::Result::Ok(rows)
            },
            quote!(),
        )
    } else {
        let key = key_columns.clone();
        let by_keys = quote! {
            diesel::dsl::Order<
                diesel::dsl::Filter<#selected, diesel::dsl::EqAny<#key, ::std::vec::Vec<#key_type>>>,
                #order_type,
            >
        };
        (
            quote! {
                let query = diesel::QueryDsl::order(
                    diesel::QueryDsl::filter(#select, diesel::ExpressionMethods::eq_any(#key, keys.to_vec())),
                    #order,
                );
                diesel::RunQueryDsl::load(query, conn)
            },
            quote!(#by_keys: diesel::query_dsl::LoadQuery<'static, __C, Self>,),
        )
    };

    // The numbers of rows `InsertRows` statements hold (`datastore::__private::INSERT_ROWS`).
    let insert_sizes: Vec<usize> = vec![256, 64, 16, 4, 1];

    // Rows whose key the database assigns: inserted without it, which comes back.
    let (unkeyed, unkeyed_bounds, insert_unkeyed, insert_many_unkeyed) = match model.key.kind {
        KeyKind::Assigned => {
            let key_field = model.key_fields()[0];
            let rest: Vec<&Field> = columns
                .iter()
                .copied()
                .filter(|f| f.ident != key_field.ident)
                .collect();
            let new_binds = binds(model, &syn::parse_quote!(__NewBinds), &rest);
            let key = key_field.ident;
            let key_field_type = key_field.ty;
            let returning_keys = quote! {
                #private::ReturningKeys<<#key_field_type as #private::FieldType>::SqlType>
            };
            let insert_unkeyed = quote! {
                let statement = #private::Unkeyed::<Self, _>::new(__NewBinds::new(self));
                diesel::RunQueryDsl::get_result(statement, conn)
            };
            if rest.is_empty() {
                // Nothing but the key: one `DEFAULT VALUES` insert per row.
                (
                    new_binds,
                    quote! {
                        #private::Unkeyed<Self, __NewBinds<'a>>: diesel::query_dsl::LoadQuery<'a, __C, Self>,
                    },
                    insert_unkeyed,
                    quote! {
                        rows.iter()
                            .map(|row| #private::Writes::insert_unkeyed(row, conn).map(|row| row.#key))
                            .collect()
                    },
                )
            } else {
                (
                    new_binds,
                    quote! {
                        #private::Unkeyed<Self, __NewBinds<'a>>: diesel::query_dsl::LoadQuery<'a, __C, Self>,
                        #private::InsertAnyRows<Self, __NewBinds<'a>, #returning_keys>:
                            diesel::query_dsl::LoadQuery<'a, __C, #key_type>,
                        #(#private::InsertRows<Self, __NewBinds<'a>, #insert_sizes, #returning_keys>:
                            diesel::query_dsl::LoadQuery<'a, __C, #key_type>,)*
                    },
                    insert_unkeyed,
                    quote! {
                        // A number of rows a statement is prepared for (see `InsertRows`), or any other.
                        match rows.len() {
                            #(#insert_sizes => diesel::RunQueryDsl::load(
                                #private::InsertRows::<Self, _, #insert_sizes, #returning_keys>::new(
                                    rows.iter().map(__NewBinds::new).collect(),
                                ),
                                conn,
                            ),)*
                            0 => ::core::result::Result::Ok(::std::vec::Vec::new()),
                            _ => diesel::RunQueryDsl::load(
                                #private::InsertAnyRows::<Self, _, #returning_keys>::new(
                                    rows.iter().map(__NewBinds::new).collect(),
                                ),
                                conn,
                            ),
                        }
                    },
                )
            }
        }
        KeyKind::Uuid | KeyKind::Natural => (
            quote!(),
            quote!(),
            quote!(#private::no_such_statement()),
            quote!(#private::no_such_statement()),
        ),
    };

    let predicate = quote!(#private::Predicate<Self, __C>);
    let boxed = quote!(#table::BoxedQuery<'static, __C::Backend>);
    let filtered = quote!(diesel::dsl::Filter<#table::table, &'p #predicate>);

    quote! {
        /// One row's values, as `save` binds them (`Upsert` writes the SQL around them).
        #all_binds

        #unkeyed

        impl<__C> #private::Statements<__C> for #ident
        where
            __C: diesel::connection::LoadConnection,
            #ordered: diesel::query_dsl::LoadQuery<'static, __C, Self>,
            #read_by_key: diesel::query_dsl::LoadQuery<'static, __C, Self>,
            #by_keys_bound
            diesel::dsl::Select<#table::table, diesel::dsl::CountStar>: diesel::query_dsl::LoadQuery<'static, __C, i64>,
            diesel::dsl::delete<#by_key>: diesel::query_dsl::methods::ExecuteDsl<__C>,
        {
            fn all(conn: &mut __C) -> diesel::QueryResult<::std::vec::Vec<Self>> {
                // The unboxed query: its SQL is built and prepared once per connection, where a
                // boxed query's is built again on every call.
                diesel::RunQueryDsl::load(<Self as #private::Ordered>::ordered(), conn)
            }

            fn find(conn: &mut __C, key: &#key_type) -> diesel::QueryResult<::core::option::Option<Self>> {
                // A key matches one row at most: no `LIMIT`, which SQLite would bind anew on every call.
                let key = ::core::clone::Clone::clone(key);
                let query = diesel::QueryDsl::filter(#select, #by_key_filter);
                // The first row, read as the statement steps: no vector to collect it in.
                let mut rows = diesel::RunQueryDsl::load_iter::<Self, diesel::connection::DefaultLoadingMode>(query, conn)?;
                ::core::iter::Iterator::next(&mut rows).transpose()
            }

            fn find_in(conn: &mut __C, keys: &[#key_type]) -> diesel::QueryResult<::std::vec::Vec<Self>> {
                #find_in
            }

            fn count(conn: &mut __C) -> diesel::QueryResult<i64> {
                diesel::RunQueryDsl::get_result(diesel::QueryDsl::count(#table::table), conn)
            }

            fn delete_key(conn: &mut __C, key: &#key_type) -> diesel::QueryResult<usize> {
                let key = ::core::clone::Clone::clone(key);
                let target = diesel::QueryDsl::filter(#table::table, #by_key_filter);
                diesel::RunQueryDsl::execute(diesel::delete(target), conn)
            }
        }

        impl #private::Ordered for #ident {
            type Query = #ordered;

            fn ordered() -> Self::Query {
                diesel::QueryDsl::order(#select, #order)
            }
        }

        impl<'a, __C> #private::Writes<'a, __C> for #ident
        where
            __C: diesel::connection::LoadConnection,
            #private::Upsert<Self, __Binds<'a>>: diesel::query_dsl::LoadQuery<'a, __C, Self>,
            diesel::query_builder::InsertStatement<#table::table, <&'a #ident as diesel::Insertable<#table::table>>::Values>:
                diesel::query_dsl::methods::ExecuteDsl<__C>,
            #private::InsertAnyRows<Self, __Binds<'a>>: diesel::query_dsl::methods::ExecuteDsl<__C>,
            #(#private::InsertRows<Self, __Binds<'a>, #insert_sizes>: diesel::query_dsl::methods::ExecuteDsl<__C>,)*
            #unkeyed_bounds
        {
            fn upsert(&'a self, conn: &mut __C) -> diesel::QueryResult<::core::option::Option<Self>> {
                // Read to the end (`load`, not `get_result`), so that an autocommit save commits
                // inside `sqlite3_step` and observers hear of it once it is visible.
                let statement = #private::Upsert::<Self, _>::new(__Binds::new(self));
                diesel::RunQueryDsl::load(statement, conn).map(|rows: ::std::vec::Vec<Self>| ::core::iter::IntoIterator::into_iter(rows).next())
            }

            fn insert_one(&'a self, conn: &mut __C) -> diesel::QueryResult<usize> {
                diesel::RunQueryDsl::execute(diesel::insert_into(#table::table).values(self), conn)
            }

            fn insert_many(rows: &'a [Self], conn: &mut __C) -> diesel::QueryResult<usize> {
                // A number of rows a statement is prepared for (see `InsertRows`), or any other.
                match rows.len() {
                    #(#insert_sizes => diesel::RunQueryDsl::execute(
                        #private::InsertRows::<Self, _, #insert_sizes>::new(rows.iter().map(__Binds::new).collect()),
                        conn,
                    ),)*
                    0 => ::core::result::Result::Ok(0),
                    _ => diesel::RunQueryDsl::execute(
                        #private::InsertAnyRows::<Self, _>::new(rows.iter().map(__Binds::new).collect()),
                        conn,
                    ),
                }
            }

            fn insert_unkeyed(&'a self, conn: &mut __C) -> diesel::QueryResult<Self> {
                #insert_unkeyed
            }

            fn insert_many_unkeyed(rows: &'a [Self], conn: &mut __C) -> diesel::QueryResult<::std::vec::Vec<#key_type>> {
                #insert_many_unkeyed
            }
        }

        impl<__C> #private::Queries<__C> for #ident
        where
            __C: diesel::connection::LoadConnection,
            __C::Backend: 'static,
            #ordered: diesel::query_dsl::methods::BoxedDsl<'static, __C::Backend, Output = #boxed>,
            #boxed: diesel::query_dsl::LoadQuery<'static, __C, Self>
                + diesel::query_dsl::methods::FilterDsl<#predicate, Output = #boxed>,
            diesel::dsl::Select<diesel::dsl::Filter<#table::table, #predicate>, diesel::dsl::CountStar>:
                diesel::query_dsl::LoadQuery<'static, __C, i64>,
            for<'p> diesel::dsl::delete<#filtered>: diesel::query_dsl::methods::ExecuteDsl<__C>,
            for<'p> diesel::dsl::Order<diesel::dsl::Select<#filtered, #key_columns_type>, #order_type>:
                diesel::query_dsl::LoadQuery<'p, __C, #key_type>,
        {
            type Query = #boxed;

            fn query() -> Self::Query {
                diesel::QueryDsl::into_boxed(<Self as #private::Ordered>::ordered())
            }

            fn load(conn: &mut __C, query: Self::Query) -> diesel::QueryResult<::std::vec::Vec<Self>> {
                diesel::RunQueryDsl::load(query, conn)
            }

            fn load_where(conn: &mut __C, predicate: #predicate) -> diesel::QueryResult<::std::vec::Vec<Self>> {
                let query = diesel::QueryDsl::filter(<Self as #private::Queries<__C>>::query(), predicate);
                diesel::RunQueryDsl::load(query, conn)
            }

            fn count_where(conn: &mut __C, predicate: #predicate) -> diesel::QueryResult<i64> {
                diesel::RunQueryDsl::get_result(diesel::QueryDsl::count(diesel::QueryDsl::filter(#table::table, predicate)), conn)
            }

            fn delete_where(conn: &mut __C, predicate: &#predicate) -> diesel::QueryResult<usize> {
                diesel::RunQueryDsl::execute(diesel::delete(diesel::QueryDsl::filter(#table::table, predicate)), conn)
            }

            fn keys_where(conn: &mut __C, predicate: &#predicate) -> diesel::QueryResult<::std::vec::Vec<#key_type>> {
                let query = diesel::QueryDsl::order(
                    diesel::QueryDsl::select(diesel::QueryDsl::filter(#table::table, predicate), #key_columns),
                    #order,
                );
                diesel::RunQueryDsl::load(query, conn)
            }
        }
    }
}
