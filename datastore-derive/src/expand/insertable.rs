//! Diesel's `Insertable` and `AsChangeset` for `&Model`: every column, relations aside.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::Private;
use crate::parse::Model;

pub fn insertable(model: &Model) -> TokenStream {
    let private = model.private();
    let ident = model.ident;
    let table = &model.table;
    let assignment_types = |fields: &[&crate::parse::Field]| -> Vec<TokenStream> {
        fields
            .iter()
            .map(|f| {
                let (column, ty) = (f.ident, f.ty);
                let private = private.at(ty.span());
                quote_spanned!(ty.span()=> diesel::dsl::Eq<#table::#column, <#ty as #private::FieldType>::Bind<'a>>)
            })
            .collect()
    };

    let all: Vec<_> = model.columns().map(|(f, _)| f).collect();
    let (all_types, all_values) = (
        assignment_types(&all),
        assignments(private, table, &all, &quote!(self)),
    );
    let insertable = quote! {
        impl<'a> diesel::Insertable<#table::table> for &'a #ident {
            type Values = <(#(#all_types,)*) as diesel::Insertable<#table::table>>::Values;

            fn values(self) -> Self::Values {
                diesel::Insertable::values((#(#all_values,)*))
            }
        }
    };

    let rest: Vec<_> = model
        .columns()
        .filter(|(f, _)| !model.is_key(f))
        .map(|(f, _)| f)
        .collect();
    if rest.is_empty() {
        return insertable;
    }
    let (rest_types, rest_values) = (
        assignment_types(&rest),
        assignments(private, table, &rest, &quote!(self)),
    );
    quote! {
        #insertable

        impl<'a> diesel::AsChangeset for &'a #ident {
            type Target = #table::table;
            type Changeset = <(#(#rest_types,)*) as diesel::AsChangeset>::Changeset;

            fn as_changeset(self) -> Self::Changeset {
                diesel::AsChangeset::as_changeset((#(#rest_values,)*))
            }
        }
    }
}

/// `column.eq(bind(&row.field))` for each field: one row's values, as Diesel inserts them.
fn assignments(
    private: Private,
    table: &syn::Ident,
    fields: &[&crate::parse::Field],
    row: &TokenStream,
) -> Vec<TokenStream> {
    fields
        .iter()
        .map(|f| {
            let column = f.ident;
            quote!(diesel::ExpressionMethods::eq(#table::#column, #private::FieldType::bind(&#row.#column)))
        })
        .collect()
}
