//! `impl Model`: the table's description as a constant, and the declared relations.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use crate::parse::{Model, RelationKind};

pub fn model_impl(model: &Model) -> TokenStream {
    let ident = model.ident;
    let name = ident.to_string();
    let table = &model.table;
    let table_name = table.to_string();
    let key = model.primary_key();
    let key_ident = key.ident;
    let key_name = key.column_name();
    let model_name = &name;

    let columns = model.columns().map(|(field, column)| {
        let ty = field.ty;
        let column_name = field.column_name();
        let unique = column.unique;
        // A has_one child's foreign key is unique: one child per parent.
        let unique = match &column.belongs_to {
            Some(parent) => quote! {
                #unique || ::datastore::relations::is_has_one(<#parent as ::datastore::Model>::RELATIONS, #name)
            },
            None => quote! { #unique },
        };
        quote_spanned! {ty.span()=>
            ::datastore::schema::Column {
                name: ::datastore::__private::Cow::Borrowed(#column_name),
                ty: <#ty as ::datastore::FieldType>::COLUMN,
                nullable: <#ty as ::datastore::FieldType>::NULLABLE,
                unique: #unique,
            }
        }
    });

    let foreign_keys = model.columns().filter_map(|(field, column)| {
        let parent = column.belongs_to.as_ref()?;
        let column_name = field.column_name();
        Some(quote_spanned! {parent.span()=>
            ::datastore::schema::ForeignKey {
                column: ::datastore::__private::Cow::Borrowed(#column_name),
                references: ::datastore::__private::Cow::Borrowed(<#parent as ::datastore::Model>::TABLE_NAME),
                referenced_column: ::datastore::__private::Cow::Borrowed(<#parent as ::datastore::Model>::PRIMARY_KEY),
                on_delete: ::datastore::relations::on_delete_for(<#parent as ::datastore::Model>::RELATIONS, #model_name),
            }
        })
    });

    let indexes = model.columns().filter(|(_, c)| c.index).map(|(field, _)| {
        let column = field.column_name();
        let index = format!("idx_{table_name}_{column}");
        quote! {
            ::datastore::schema::Index {
                name: ::datastore::__private::Cow::Borrowed(#index),
                columns: ::datastore::__private::Cow::Borrowed(&[::datastore::__private::Cow::Borrowed(#column)]),
                unique: false,
            }
        }
    });

    let relations = model.relations().map(|(field, relation)| {
        let field_name = field.column_name();
        let kind = match relation.kind {
            RelationKind::HasOne => quote!(HasOne),
            RelationKind::HasMany => quote!(HasMany),
            RelationKind::ManyToMany => quote!(ManyToMany),
        };
        let target = last_segment(&relation.target);
        let through = match &relation.through {
            Some(t) => {
                let t = last_segment(t);
                quote!(::core::option::Option::Some(#t))
            }
            None => quote!(::core::option::Option::None),
        };
        let foreign_key = match &relation.foreign_key {
            Some(fk) => {
                let fk = fk.to_string();
                quote!(::core::option::Option::Some(#fk))
            }
            None => quote!(::core::option::Option::None),
        };
        quote! {
            ::datastore::relations::Relation {
                field: #field_name,
                kind: ::datastore::relations::RelationKind::#kind,
                target: #target,
                through: #through,
                foreign_key: #foreign_key,
            }
        }
    });

    let raw_columns = model.columns().map(|(field, _)| {
        let (f, ty) = (field.ident, field.ty);
        let name = field.column_name();
        quote! {
            let #f = <#ty as ::datastore::FieldType>::from_raw(
                values.next().unwrap_or(::datastore::observe::RawValue::Null),
            )
            .map_err(|e| ::std::format!("{}.{}: {}", #table_name, #name, e))?;
        }
    });
    let raw_fields = model.fields.iter().map(|field| {
        let f = field.ident;
        match field.kind {
            crate::parse::FieldKind::Column(_) => quote!(#f),
            crate::parse::FieldKind::Relation(_) => quote!(#f: ::core::default::Default::default()),
        }
    });

    quote! {
        impl ::datastore::Model for #ident {
            type Table = #table::table;
            const NAME: &'static str = #name;
            const TABLE_NAME: &'static str = #table_name;
            const PRIMARY_KEY: &'static str = #key_name;
            const TABLE: ::datastore::schema::Table = ::datastore::schema::Table {
                name: ::datastore::__private::Cow::Borrowed(#table_name),
                primary_key: ::datastore::__private::Cow::Borrowed(#key_name),
                columns: ::datastore::__private::Cow::Borrowed(&[#(#columns),*]),
                foreign_keys: ::datastore::__private::Cow::Borrowed(&[#(#foreign_keys),*]),
                indexes: ::datastore::__private::Cow::Borrowed(&[#(#indexes),*]),
            };
            const RELATIONS: &'static [::datastore::relations::Relation] = &[#(#relations),*];

            fn id(&self) -> &::datastore::Id {
                &self.#key_ident
            }

            fn from_raw_row(
                values: ::std::vec::Vec<::datastore::observe::RawValue>,
            ) -> ::core::result::Result<Self, ::std::string::String> {
                let mut values = values.into_iter();
                #(#raw_columns)*
                ::core::result::Result::Ok(Self { #(#raw_fields),* })
            }
        }

        impl #ident {
            /// Every row, in key order, as a Diesel query to refine (`filter`, `order`,
            /// `limit`, ..) and run on any connection.
            pub fn query() -> diesel::dsl::Order<#table::table, diesel::dsl::Asc<#table::#key_ident>> {
                diesel::QueryDsl::order(#table::table, diesel::ExpressionMethods::asc(#table::#key_ident))
            }
        }
    }
}

fn last_segment(path: &syn::Path) -> String {
    path.segments
        .last()
        .map(|s| s.ident.to_string())
        .unwrap_or_default()
}
