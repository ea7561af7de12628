//! `impl Persist` for each backend: the typed reads and writes.

use proc_macro2::TokenStream;
use quote::quote;

use super::relations::{fk_key, Backend};
use crate::parse::{Model, RelationKind, TimestampRole};

/// The statement `save` runs: an upsert that writes a row only if its data changed, and returns
/// the row as stored. Written out rather than built with Diesel's DSL, because Diesel never
/// caches the prepared statement of an `ON CONFLICT` query: this one is prepared once per
/// connection, which makes `save` several times faster. Generated once per model; see
/// [`upsert_for`] for each backend's half.
pub fn upsert(model: &Model) -> TokenStream {
    let ident = model.ident;
    let table = &model.table;
    let columns: Vec<_> = model.columns().collect();
    let bind_types = columns.iter().map(|(f, _)| {
        let ty = f.ty;
        quote!(<#ty as ::datastore::FieldType>::Bind<'a>)
    });
    let binds = columns.iter().map(|(f, _)| {
        let f = f.ident;
        quote!(::datastore::FieldType::bind(&row.#f))
    });
    quote! {
        /// The prepared `save` statement of one row.
        struct __Upsert<'a>((#(#bind_types,)*));

        /// The statement's identity for Diesel's statement cache.
        struct __UpsertId;

        /// Its SQL, rendered from the table's description like the rest of its DDL.
        static __UPSERT_SQL: ::datastore::schema::ddl::UpsertSql = ::datastore::schema::ddl::UpsertSql::new();

        impl<'a> __Upsert<'a> {
            fn new(row: &'a #ident) -> Self {
                Self((#(#binds,)*))
            }
        }

        impl diesel::query_builder::QueryId for __Upsert<'_> {
            type QueryId = __UpsertId;
            const HAS_STATIC_QUERY_ID: bool = true;
        }

        impl diesel::query_builder::Query for __Upsert<'_> {
            type SqlType = #table::SqlType;
        }
    }
}

/// The upsert on one backend: its SQL walk, and running it on the backend's connection.
fn upsert_for(model: &Model, conn: &TokenStream, backend: &TokenStream) -> TokenStream {
    let ident = model.ident;
    let table = &model.table;
    let columns: Vec<_> = model.columns().collect();
    let timestamp = |role| match model.timestamp(role).map(|f| f.column_name()) {
        Some(name) => quote!(::core::option::Option::Some(#name)),
        None => quote!(::core::option::Option::None),
    };
    let (created, updated) = (
        timestamp(TimestampRole::Created),
        timestamp(TimestampRole::Updated),
    );
    let walk = columns.iter().enumerate().map(|(i, (f, _))| {
        let column = f.ident;
        let index = syn::Index::from(i);
        quote! {
            out.push_sql(&sql[#i]);
            out.push_bind_param::<<#table::#column as diesel::Expression>::SqlType, _>(&self.0.#index)?;
        }
    });
    let last = columns.len();
    quote! {
        impl diesel::query_builder::QueryFragment<#backend> for __Upsert<'_> {
            fn walk_ast<'b>(&'b self, mut out: diesel::query_builder::AstPass<'_, 'b, #backend>) -> diesel::QueryResult<()> {
                let dialect = ::datastore::schema::ddl::HasDialect::dialect(out.backend());
                let sql = __UPSERT_SQL.get(&<#ident as ::datastore::Model>::TABLE, #created, #updated, dialect);
                #(#walk)*
                out.push_sql(&sql[#last]);
                ::core::result::Result::Ok(())
            }
        }

        impl diesel::RunQueryDsl<#conn> for __Upsert<'_> {}
    }
}

/// `save_graph`: the row, then each loaded relation under it, in one transaction.
fn save_graph(model: &Model, conn: &TokenStream) -> TokenStream {
    let ident = model.ident;
    let this: syn::Path = syn::parse_quote!(#ident);
    let key = model.primary_key().ident;
    let mut takes = Vec::new();
    let mut stores = Vec::new();
    for (field, relation) in model.relations() {
        let f = field.ident;
        let target = &relation.target;
        takes.push(quote!(let #f = ::core::mem::take(&mut self.#f).into_loaded();));
        match relation.kind {
            RelationKind::HasMany | RelationKind::HasOne => {
                let fk = fk_key(target, &this, relation.foreign_key.as_ref());
                let wrap = if relation.kind == RelationKind::HasMany {
                    quote!(::datastore::relations::HasMany::loaded(stored))
                } else {
                    quote!(::datastore::relations::HasOne::loaded(
                        stored.into_iter().next()
                    ))
                };
                stores.push(quote! {
                    if let ::core::option::Option::Some(children) = #f {
                        let mut stored = ::std::vec::Vec::new();
                        for mut child in ::core::iter::IntoIterator::into_iter(children) {
                            <#target as ::datastore::relations::BelongsTo<Self, { #fk }>>::set_parent_id(&mut child, saved.#key);
                            stored.push(<#target as ::datastore::Persist<#conn>>::save_graph(child, conn)?);
                        }
                        saved.#f = #wrap;
                    }
                });
            }
            RelationKind::ManyToMany => {
                let through = relation.through.as_ref().expect("checked when parsed");
                let fk_this = fk_key(through, &this, None);
                let fk_target = fk_key(through, target, None);
                stores.push(quote! {
                    if let ::core::option::Option::Some(others) = #f {
                        let mut stored = ::std::vec::Vec::new();
                        for other in others {
                            let other = <#target as ::datastore::Persist<#conn>>::save_graph(other, conn)?;
                            ::datastore::relations::load::link::<Self, #through, #target, { #fk_this }, { #fk_target }, #conn>(
                                conn, &saved.#key, ::datastore::Model::id(&other),
                            )?;
                            stored.push(other);
                        }
                        saved.#f = ::datastore::relations::ManyToMany::loaded(stored);
                    }
                });
            }
        }
    }
    if takes.is_empty() {
        return quote! {
            fn save_graph(self, conn: &mut #conn) -> ::datastore::Result<Self> {
                <Self as ::datastore::Persist<#conn>>::save(self, conn)
            }
        };
    }
    quote! {
        fn save_graph(mut self, conn: &mut #conn) -> ::datastore::Result<Self> {
            diesel::Connection::transaction(conn, |conn| {
                #(#takes)*
                #[allow(unused_mut)]
                let mut saved = <Self as ::datastore::Persist<#conn>>::save(self, conn)?;
                #(#stores)*
                ::core::result::Result::Ok(saved)
            })
        }
    }
}

pub fn persist(model: &Model, backend: &Backend) -> TokenStream {
    let Backend { conn, backend } = backend;
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

    let stamped: Vec<_> = created.iter().chain(updated.iter()).collect();
    let stamp_rows = (!stamped.is_empty()).then(|| {
        quote! {
            let mut rows = rows;
            let now = ::datastore::Timestamp::now();
            for row in &mut rows {
                #(row.#stamped = now;)*
            }
        }
    });
    let column_count = model.columns().count();
    let columns: Vec<_> = model.columns().map(|(f, _)| f).collect();
    let assignments = super::insertable::assignments(table, &columns, &quote!(row));

    let upsert_statement = upsert_for(model, conn, backend);
    let upsert = quote!(__Upsert::new(&self));

    // A foreign key that points nowhere: name the column and the missing parent.
    let missing_parents = model.columns().filter_map(|(field, column)| {
        let parent = column.belongs_to.as_ref()?;
        let f = field.ident;
        let name = field.column_name();
        Some(quote! {
            // On PostgreSQL the failure aborted an enclosing transaction, and this lookup fails
            // too: the server's own message, which names the constraint, then stands.
            if let ::core::result::Result::Ok(::core::option::Option::None) = <#parent as ::datastore::Persist<#conn>>::find(conn, &self.#f) {
                violation.table = ::core::option::Option::Some(<Self as ::datastore::Model>::TABLE_NAME.into());
                violation.column = ::core::option::Option::Some(#name.into());
                violation.message = ::std::format!(
                    "{}.{} references {} '{}', which does not exist",
                    <Self as ::datastore::Model>::TABLE_NAME, #name,
                    <#parent as ::datastore::Model>::TABLE_NAME, self.#f,
                );
                return ::core::result::Result::Err(::datastore::Error::Constraint(violation));
            }
        })
    });

    // A delete that join rows still reference: name the join table and count the links.
    let restricting_links = model.relations().filter(|(_, r)| r.kind == RelationKind::ManyToMany).map(|(_, r)| {
        let through = r.through.as_ref().expect("checked when parsed");
        let fk = fk_key(through, &syn::parse_quote!(#ident), None);
        quote! {
            let count = ::datastore::relations::load::count_links::<Self, #through, { #fk }, #conn>(conn, id)?;
            if count > 0 {
                return ::core::result::Result::Err(::datastore::Error::DeleteRestricted {
                    table: <Self as ::datastore::Model>::TABLE_NAME.into(),
                    key: ::std::string::ToString::to_string(id),
                    join_table: <#through as ::datastore::Model>::TABLE_NAME.into(),
                    count,
                });
            }
        }
    });

    let graph = save_graph(model, conn);
    let queries = queries(model, conn, backend);

    // A delete that join rows may refuse runs so that its failure leaves an enclosing
    // transaction usable (a savepoint on PostgreSQL), to count the links for the error.
    let delete_statement = if model
        .relations()
        .any(|(_, r)| r.kind == RelationKind::ManyToMany)
    {
        quote!(let deleted = ::datastore::__private::statement_scope(conn, delete);)
    } else {
        quote!(let deleted = delete(conn);)
    };

    quote! {
        #upsert_statement

        impl ::datastore::Persist<#conn> for #ident {
            #graph

            #queries

            fn all(conn: &mut #conn) -> ::datastore::Result<::std::vec::Vec<Self>> {
                // The unboxed query, not `query()`: its SQL is built and prepared once per
                // connection, where a boxed query's is built again on every call.
                let query = diesel::QueryDsl::order(#table::table, diesel::ExpressionMethods::asc(#table::#key));
                ::core::result::Result::Ok(diesel::RunQueryDsl::load(query, conn)?)
            }

            fn save(mut self, conn: &mut #conn) -> ::datastore::Result<Self> {
                #now
                #(#stamp)*
                // Read to the end (`load`, not `get_result`), so that an autocommit save commits
                // inside `sqlite3_step` and observers hear of it once it is visible.
                let result = diesel::RunQueryDsl::load::<Self>(#upsert, conn)
                    .map(|rows| ::core::iter::IntoIterator::into_iter(rows).next());
                let stored: ::core::option::Option<Self> = match result.map_err(::datastore::Error::from) {
                    ::core::result::Result::Ok(stored) => stored,
                    ::core::result::Result::Err(::datastore::Error::Constraint(mut violation))
                        if violation.kind == ::datastore::ConstraintKind::ForeignKey =>
                    {
                        #(#missing_parents)*
                        return ::core::result::Result::Err(::datastore::Error::Constraint(violation));
                    }
                    ::core::result::Result::Err(e) => return ::core::result::Result::Err(e),
                };
                match stored {
                    ::core::option::Option::Some(row) => ::core::result::Result::Ok(row),
                    // Unchanged: nothing was written; the stored row is the answer.
                    ::core::option::Option::None => {
                        <Self as ::datastore::Persist<#conn>>::find(conn, &self.#key)?.ok_or_else(|| {
                            ::datastore::Error::NotFound {
                                table: <Self as ::datastore::Model>::TABLE_NAME.into(),
                                key: ::std::string::ToString::to_string(&self.#key),
                            }
                        })
                    }
                }
            }

            fn insert_all(rows: ::std::vec::Vec<Self>, conn: &mut #conn) -> ::datastore::Result<::std::vec::Vec<Self>> {
                const ROWS_PER_STATEMENT: usize = ::datastore::MAX_BIND_PARAMS / #column_count;
                #stamp_rows
                let insert_chunks = |conn: &mut #conn| -> ::datastore::Result<()> {
                    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                        let values: ::std::vec::Vec<_> = chunk.iter().map(|row| (#(#assignments,)*)).collect();
                        diesel::RunQueryDsl::execute(diesel::insert_into(#table::table).values(values), conn)?;
                    }
                    ::core::result::Result::Ok(())
                };
                match rows.as_slice() {
                    [] => {}
                    // A statement of fixed shape, which Diesel prepares only once.
                    [row] => {
                        diesel::RunQueryDsl::execute(diesel::insert_into(#table::table).values(row), conn)?;
                    }
                    rows if rows.len() <= ROWS_PER_STATEMENT => insert_chunks(conn)?,
                    _ => diesel::Connection::transaction(conn, insert_chunks)?,
                }
                ::core::result::Result::Ok(rows)
            }

            fn find(conn: &mut #conn, id: &::datastore::Id) -> ::datastore::Result<::core::option::Option<Self>> {
                let query = diesel::QueryDsl::find(#table::table, id);
                ::core::result::Result::Ok(diesel::OptionalExtension::optional(diesel::RunQueryDsl::first(query, conn))?)
            }

            fn find_many(conn: &mut #conn, ids: &[::datastore::Id]) -> ::datastore::Result<::std::vec::Vec<Self>> {
                let mut rows = ::std::vec::Vec::with_capacity(ids.len());
                for chunk in ids.chunks(::datastore::relations::CHUNK) {
                    let query = diesel::QueryDsl::filter(
                        <Self as ::datastore::Persist<#conn>>::query(),
                        diesel::ExpressionMethods::eq_any(#table::#key, chunk),
                    );
                    rows.extend(diesel::RunQueryDsl::load::<Self>(query, conn)?);
                }
                ::core::result::Result::Ok(rows)
            }

            fn count(conn: &mut #conn) -> ::datastore::Result<i64> {
                let query = diesel::QueryDsl::count(#table::table);
                ::core::result::Result::Ok(diesel::RunQueryDsl::get_result(query, conn)?)
            }


            fn delete_by_id(conn: &mut #conn, id: &::datastore::Id) -> ::datastore::Result<bool> {
                let target = diesel::QueryDsl::find(#table::table, id);
                let delete = |conn: &mut #conn| diesel::RunQueryDsl::execute(diesel::delete(target), conn);
                #delete_statement
                match deleted.map_err(::datastore::Error::from) {
                    ::core::result::Result::Ok(deleted) => ::core::result::Result::Ok(deleted > 0),
                    ::core::result::Result::Err(::datastore::Error::Constraint(violation))
                        if violation.kind == ::datastore::ConstraintKind::ForeignKey =>
                    {
                        #(#restricting_links)*
                        ::core::result::Result::Err(::datastore::Error::Constraint(violation))
                    }
                    ::core::result::Result::Err(e) => ::core::result::Result::Err(e),
                }
            }

        }
    }
}

/// `impl Persist<AnyConnection>`: queries built by the caller run on the multi-backend
/// connection; every operation the model knows in full runs on the backend's own connection
/// inside, where its statements are prepared and decoded without run-time dispatch per value.
pub fn persist_any(model: &Model) -> TokenStream {
    let ident = model.ident;
    let any = quote!(::datastore::AnyConnection);
    let backend = quote!(::datastore::AnyBackend);
    let dispatch = |call: TokenStream| {
        quote! {
            match conn {
                ::datastore::AnyConnection::Sqlite(conn) => <Self as ::datastore::Persist<diesel::sqlite::SqliteConnection>>::#call,
                ::datastore::AnyConnection::Postgres(conn) => <Self as ::datastore::Persist<diesel::pg::PgConnection>>::#call,
            }
        }
    };
    let all = dispatch(quote!(all(conn)));
    let save = dispatch(quote!(save(self, conn)));
    let insert_all = dispatch(quote!(insert_all(rows, conn)));
    let save_graph = dispatch(quote!(save_graph(self, conn)));
    let find = dispatch(quote!(find(conn, id)));
    let find_many = dispatch(quote!(find_many(conn, ids)));
    let count = dispatch(quote!(count(conn)));
    let delete_by_id = dispatch(quote!(delete_by_id(conn, id)));
    let queries = queries(model, &any, &backend);
    quote! {
        impl ::datastore::Persist<#any> for #ident {
            #queries

            fn all(conn: &mut #any) -> ::datastore::Result<::std::vec::Vec<Self>> {
                #all
            }

            fn save(self, conn: &mut #any) -> ::datastore::Result<Self> {
                #save
            }

            fn insert_all(rows: ::std::vec::Vec<Self>, conn: &mut #any) -> ::datastore::Result<::std::vec::Vec<Self>> {
                #insert_all
            }

            fn save_graph(self, conn: &mut #any) -> ::datastore::Result<Self> {
                #save_graph
            }

            fn find(conn: &mut #any, id: &::datastore::Id) -> ::datastore::Result<::core::option::Option<Self>> {
                #find
            }

            fn find_many(conn: &mut #any, ids: &[::datastore::Id]) -> ::datastore::Result<::std::vec::Vec<Self>> {
                #find_many
            }

            fn count(conn: &mut #any) -> ::datastore::Result<i64> {
                #count
            }

            fn delete_by_id(conn: &mut #any, id: &::datastore::Id) -> ::datastore::Result<bool> {
                #delete_by_id
            }
        }
    }
}

/// The `Persist` methods that run a query built from a predicate or by the caller: the same
/// on every connection type, the multi-backend one included.
fn queries(model: &Model, conn: &TokenStream, backend: &TokenStream) -> TokenStream {
    let table = &model.table;
    let key = model.primary_key().ident;
    quote! {
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

        fn load_where(
            conn: &mut #conn,
            predicate: ::datastore::Predicate<Self, #conn>,
        ) -> ::datastore::Result<::std::vec::Vec<Self>> {
            let query = diesel::QueryDsl::filter(<Self as ::datastore::Persist<#conn>>::query(), predicate);
            ::core::result::Result::Ok(diesel::RunQueryDsl::load(query, conn)?)
        }

        fn count_where(
            conn: &mut #conn,
            predicate: ::datastore::Predicate<Self, #conn>,
        ) -> ::datastore::Result<i64> {
            let query = diesel::QueryDsl::count(diesel::QueryDsl::filter(#table::table, predicate));
            ::core::result::Result::Ok(diesel::RunQueryDsl::get_result(query, conn)?)
        }

        fn delete_where(
            conn: &mut #conn,
            predicate: ::datastore::Predicate<Self, #conn>,
        ) -> ::datastore::Result<usize> {
            let target = diesel::QueryDsl::filter(#table::table, predicate);
            ::core::result::Result::Ok(diesel::RunQueryDsl::execute(diesel::delete(target), conn)?)
        }
    }
}
