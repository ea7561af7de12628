//! The model's typed statements: `Statements` (its fixed statements, on a backend's own
//! connection) and `Queries` (built from a condition or by the caller, on any connection). One
//! impl each, for every connection whose backend can run them: the bounds name the statement
//! types, and the bodies are one Diesel statement each. What a model does around them lives in
//! the runtime (`Persist`).

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use crate::parse::Model;

pub fn statements(model: &Model) -> TokenStream {
    let ident = model.ident;
    let table = &model.table;
    let key = model.primary_key().ident;
    let columns: Vec<_> = model.columns().map(|(f, _)| f).collect();
    let assignment_types = columns.iter().map(|f| {
        let (column, ty) = (f.ident, f.ty);
        quote_spanned!(ty.span()=> diesel::dsl::Eq<#table::#column, <#ty as ::datastore::FieldType>::Bind<'a>>)
    });
    let assignments = super::insertable::assignments(table, &columns, &quote!(row));

    let ordered = quote!(diesel::dsl::Order<#table::table, diesel::dsl::Asc<#table::#key>>);
    let by_key =
        quote!(diesel::dsl::Filter<#table::table, diesel::dsl::Eq<#table::#key, ::datastore::Id>>);
    let by_keys = quote! {
        diesel::dsl::Order<
            diesel::dsl::Filter<#table::table, diesel::dsl::EqAny<#table::#key, ::std::vec::Vec<::datastore::Id>>>,
            diesel::dsl::Asc<#table::#key>,
        >
    };
    let insertable = quote!(<&'a #ident as diesel::Insertable<#table::table>>::Values);
    let bind_types: Vec<_> = columns
        .iter()
        .map(|f| {
            let ty = f.ty;
            quote_spanned!(ty.span()=> <#ty as ::datastore::FieldType>::Bind<'a>)
        })
        .collect();
    let sql_types: Vec<_> = columns
        .iter()
        .map(|f| {
            let column = f.ident;
            quote!(<#table::#column as diesel::Expression>::SqlType)
        })
        .collect();
    let binds = columns.iter().map(|f| {
        let f = f.ident;
        quote!(::datastore::FieldType::bind(&row.#f))
    });
    let walk_binds = sql_types.iter().enumerate().map(|(i, sql_type)| {
        let index = syn::Index::from(i);
        let comma = (i > 0).then(|| quote!(out.push_sql(", ");));
        quote! {
            #comma
            out.push_bind_param::<#sql_type, _>(&self.0.#index)?;
        }
    });
    let predicate = quote!(::datastore::Predicate<Self, __C>);
    let boxed = quote!(#table::BoxedQuery<'static, __C::Backend>);
    let filtered = quote!(diesel::dsl::Filter<#table::table, &'p #predicate>);

    quote! {
        /// One row's values, as `insert_many` binds them.
        type __Assignments<'a> = (#(#assignment_types,)*);

        /// One row's values, as `save` binds them (`Upsert` writes the SQL around them).
        struct __Binds<'a>((#(#bind_types,)*));

        impl<'a> __Binds<'a> {
            fn new(row: &'a #ident) -> Self {
                Self((#(#binds,)*))
            }
        }

        impl<'a, __DB> diesel::query_builder::QueryFragment<__DB> for __Binds<'a>
        where
            __DB: diesel::backend::Backend #(+ diesel::sql_types::HasSqlType<#sql_types>)*,
            #(#bind_types: diesel::serialize::ToSql<#sql_types, __DB>,)*
        {
            fn walk_ast<'b>(&'b self, mut out: diesel::query_builder::AstPass<'_, 'b, __DB>) -> diesel::QueryResult<()> {
                #(#walk_binds)*
                ::core::result::Result::Ok(())
            }
        }

        impl<__C> ::datastore::__private::Statements<__C> for #ident
        where
            __C: diesel::connection::LoadConnection,
            #ordered: diesel::query_dsl::LoadQuery<'static, __C, Self>,
            #by_key: diesel::query_dsl::LoadQuery<'static, __C, Self>,
            #by_keys: diesel::query_dsl::LoadQuery<'static, __C, Self>,
            diesel::dsl::Select<#table::table, diesel::dsl::CountStar>: diesel::query_dsl::LoadQuery<'static, __C, i64>,
            diesel::dsl::delete<#by_key>: diesel::query_dsl::methods::ExecuteDsl<__C>,
        {
            fn all(conn: &mut __C) -> diesel::QueryResult<::std::vec::Vec<Self>> {
                // The unboxed query: its SQL is built and prepared once per connection, where a
                // boxed query's is built again on every call.
                diesel::RunQueryDsl::load(diesel::QueryDsl::order(#table::table, diesel::ExpressionMethods::asc(#table::#key)), conn)
            }

            fn find(conn: &mut __C, id: ::datastore::Id) -> diesel::QueryResult<::core::option::Option<Self>> {
                // A key matches one row at most: no `LIMIT`, which SQLite would bind anew on every call.
                let query = diesel::QueryDsl::filter(#table::table, diesel::ExpressionMethods::eq(#table::#key, id));
                diesel::RunQueryDsl::load(query, conn).map(|rows: ::std::vec::Vec<Self>| ::core::iter::IntoIterator::into_iter(rows).next())
            }

            fn find_in(conn: &mut __C, ids: &[::datastore::Id]) -> diesel::QueryResult<::std::vec::Vec<Self>> {
                let query = diesel::QueryDsl::order(
                    diesel::QueryDsl::filter(#table::table, diesel::ExpressionMethods::eq_any(#table::#key, ids.to_vec())),
                    diesel::ExpressionMethods::asc(#table::#key),
                );
                diesel::RunQueryDsl::load(query, conn)
            }

            fn count(conn: &mut __C) -> diesel::QueryResult<i64> {
                diesel::RunQueryDsl::get_result(diesel::QueryDsl::count(#table::table), conn)
            }

            fn delete_key(conn: &mut __C, id: ::datastore::Id) -> diesel::QueryResult<usize> {
                let target = diesel::QueryDsl::filter(#table::table, diesel::ExpressionMethods::eq(#table::#key, id));
                diesel::RunQueryDsl::execute(diesel::delete(target), conn)
            }
        }

        impl<'a, __C> ::datastore::__private::Writes<'a, __C> for #ident
        where
            __C: diesel::connection::LoadConnection,
            ::datastore::__private::Upsert<Self, __Binds<'a>>: diesel::query_dsl::LoadQuery<'a, __C, Self>,
            diesel::query_builder::InsertStatement<#table::table, #insertable>: diesel::query_dsl::methods::ExecuteDsl<__C>,
            diesel::query_builder::InsertStatement<
                #table::table,
                <::std::vec::Vec<__Assignments<'a>> as diesel::Insertable<#table::table>>::Values,
            >: diesel::query_dsl::methods::ExecuteDsl<__C>,
        {
            fn upsert(&'a self, conn: &mut __C) -> diesel::QueryResult<::core::option::Option<Self>> {
                // Read to the end (`load`, not `get_result`), so that an autocommit save commits
                // inside `sqlite3_step` and observers hear of it once it is visible.
                let statement = ::datastore::__private::Upsert::<Self, _>::new(__Binds::new(self));
                diesel::RunQueryDsl::load(statement, conn).map(|rows: ::std::vec::Vec<Self>| ::core::iter::IntoIterator::into_iter(rows).next())
            }

            fn insert_one(&'a self, conn: &mut __C) -> diesel::QueryResult<usize> {
                diesel::RunQueryDsl::execute(diesel::insert_into(#table::table).values(self), conn)
            }

            fn insert_many(rows: &'a [Self], conn: &mut __C) -> diesel::QueryResult<usize> {
                let values: ::std::vec::Vec<__Assignments<'a>> = rows.iter().map(|row| (#(#assignments,)*)).collect();
                diesel::RunQueryDsl::execute(diesel::insert_into(#table::table).values(values), conn)
            }

        }

        impl<__C> ::datastore::__private::Queries<__C> for #ident
        where
            __C: diesel::connection::LoadConnection,
            __C::Backend: 'static,
            #ordered: diesel::query_dsl::methods::BoxedDsl<'static, __C::Backend, Output = #boxed>,
            #boxed: diesel::query_dsl::LoadQuery<'static, __C, Self>
                + diesel::query_dsl::methods::FilterDsl<#predicate, Output = #boxed>,
            diesel::dsl::Select<diesel::dsl::Filter<#table::table, #predicate>, diesel::dsl::CountStar>:
                diesel::query_dsl::LoadQuery<'static, __C, i64>,
            for<'p> diesel::dsl::delete<#filtered>: diesel::query_dsl::methods::ExecuteDsl<__C>,
            for<'p> diesel::dsl::Order<diesel::dsl::Select<#filtered, #table::#key>, diesel::dsl::Asc<#table::#key>>:
                diesel::query_dsl::LoadQuery<'p, __C, ::datastore::Id>,
        {
            type Query = #boxed;

            fn query() -> Self::Query {
                diesel::QueryDsl::into_boxed(diesel::QueryDsl::order(#table::table, diesel::ExpressionMethods::asc(#table::#key)))
            }

            fn load(conn: &mut __C, query: Self::Query) -> diesel::QueryResult<::std::vec::Vec<Self>> {
                diesel::RunQueryDsl::load(query, conn)
            }

            fn load_where(conn: &mut __C, predicate: #predicate) -> diesel::QueryResult<::std::vec::Vec<Self>> {
                let query = diesel::QueryDsl::filter(<Self as ::datastore::__private::Queries<__C>>::query(), predicate);
                diesel::RunQueryDsl::load(query, conn)
            }

            fn count_where(conn: &mut __C, predicate: #predicate) -> diesel::QueryResult<i64> {
                diesel::RunQueryDsl::get_result(diesel::QueryDsl::count(diesel::QueryDsl::filter(#table::table, predicate)), conn)
            }

            fn delete_where(conn: &mut __C, predicate: &#predicate) -> diesel::QueryResult<usize> {
                diesel::RunQueryDsl::execute(diesel::delete(diesel::QueryDsl::filter(#table::table, predicate)), conn)
            }

            fn keys_where(conn: &mut __C, predicate: &#predicate) -> diesel::QueryResult<::std::vec::Vec<::datastore::Id>> {
                let query = diesel::QueryDsl::order(
                    diesel::QueryDsl::select(diesel::QueryDsl::filter(#table::table, predicate), #table::#key),
                    diesel::ExpressionMethods::asc(#table::#key),
                );
                diesel::RunQueryDsl::load(query, conn)
            }
        }
    }
}
