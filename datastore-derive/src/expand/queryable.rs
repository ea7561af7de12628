//! Diesel's `Queryable` and `Selectable`: a row becomes the struct, relations not loaded; its
//! selection is the one every statement reading the model selects (`Selection`).

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::parse::{FieldKind, Model};

pub fn queryable(model: &Model) -> TokenStream {
    let private = model.private();
    let ident = model.ident;
    let columns: Vec<_> = model.columns().map(|(f, _)| f).collect();
    let st: Vec<_> = (0..columns.len())
        .map(|i| format_ident!("__ST{i}"))
        .collect();
    let read_types: Vec<_> = columns
        .iter()
        .map(|f| {
            let ty = f.ty;
            let private = private.at(ty.span());
            quote_spanned!(ty.span()=> <#ty as #private::FieldType>::Read)
        })
        .collect();

    let mut index = 0usize;
    let inits = model.fields.iter().map(|field| {
        let name = field.ident;
        match &field.kind {
            FieldKind::Column(_) => {
                let i = syn::Index::from(index);
                index += 1;
                quote!(#name: #private::FieldType::read(row.#i))
            }
            FieldKind::Relation(_) => quote!(#name: ::core::default::Default::default()),
        }
    });

    quote! {
        impl<__DB, #(#st),*> diesel::deserialize::Queryable<(#(#st,)*), __DB> for #ident
        where
            __DB: diesel::backend::Backend,
            (#(#read_types,)*): diesel::deserialize::FromStaticSqlRow<(#(#st,)*), __DB>,
        {
            type Row = (#(#read_types,)*);

            fn build(row: Self::Row) -> diesel::deserialize::Result<Self> {
                ::core::result::Result::Ok(Self { #(#inits),* })
            }
        }

        impl<__DB: diesel::backend::Backend> diesel::Selectable<__DB> for #ident {
            type SelectExpression = #private::Selection<Self>;

            fn construct_selection() -> Self::SelectExpression {
                #private::Selection::new()
            }
        }
    }
}
