//! Compile-time checks whose failures point at the field at fault.

use proc_macro2::TokenStream;
use quote::{format_ident, quote_spanned};
use syn::spanned::Spanned;

use crate::parse::{FieldKind, Model};

pub fn checks(model: &Model) -> TokenStream {
    // A key's fields have types a key column can have.
    let keys = model.key_fields().into_iter().map(|field| {
        let ty = field.ty;
        quote_spanned! {ty.span()=>
            const _: fn() = || {
                fn key_column<K: ::datastore::__private::KeyColumn>() {}
                key_column::<#ty>();
            };
        }
    });
    let keys: TokenStream = keys.collect();
    let fields: TokenStream = model
        .fields
        .iter()
        .map(|field| {
            let ty = field.ty;
            match &field.kind {
                // `FieldType`'s `on_unimplemented` message lists what is supported; the SQL
                // type must be the one the `table!` was given.
                FieldKind::Column(_) => {
                    let sql_type = super::table::sql_type(ty);
                    quote_spanned! {ty.span()=>
                        const _: fn() = || {
                            fn column_type<T: ::datastore::__private::FieldType<SqlType = S>, S>() {}
                            column_type::<#ty, #sql_type>();
                        };
                    }
                }
                FieldKind::Relation(relation) => {
                    let target = &relation.target;
                    let wrapper = format_ident!("{}", relation.kind.wrapper());
                    let is_model = quote_spanned! {target.span()=>
                        fn model<T: ::datastore::__private::Model>() {}
                        model::<#target>();
                    };
                    let field_type = quote_spanned! {ty.span()=>
                        let _: #ty = ::datastore::__private::#wrapper::<#target>::default();
                    };
                    quote_spanned! {ty.span()=>
                        const _: fn() = || {
                            #is_model
                            #field_type
                        };
                    }
                }
            }
        })
        .collect();
    quote::quote!(#keys #fields)
}
