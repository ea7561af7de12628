//! `#[column(default = ..)]`: the default as a `ColumnDefault`, and a compile-time check that
//! the column can hold it.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};

use super::Private;
use crate::parse::{Default, DefaultValue, Model};

/// The default as a `datastore::schema::ColumnDefault` constant expression.
pub fn value(private: Private, default: &Default) -> TokenStream {
    let cow = quote!(#private::Cow::Borrowed);
    match &default.value {
        DefaultValue::Integer(n) => {
            quote!(#private::schema::ColumnDefault::Integer(#n))
        }
        DefaultValue::Real(text) => {
            quote!(#private::schema::ColumnDefault::Real(#cow(#text)))
        }
        DefaultValue::Bool(b) => quote!(#private::schema::ColumnDefault::Bool(#b)),
        DefaultValue::Text(text) => {
            quote!(#private::schema::ColumnDefault::Text(#cow(#text)))
        }
    }
}

/// One constant per default, failing to compile, at the attribute, when the field's column
/// cannot hold the default (a string for an integer, an enum variant that does not exist, a
/// number out of the column's range).
pub fn checks(model: &Model) -> TokenStream {
    let private = model.private();
    let checks = model.columns().filter_map(|(field, column)| {
        let default = column.default.as_ref()?;
        let ty = field.ty;
        let value = value(private, default);
        let private = private.at(default.span);
        let message = format!(
            "`#[column(default = ..)]` on `{}`: the column cannot hold this default \
             (a number within the column's range for a number, `true`/`false` for a bool, a string for a String or for \
             one of a DbEnum's stored names)",
            field.column_name()
        );
        Some(quote_spanned! {default.span=>
            const _: () = {
                let column = <#ty as #private::FieldType>::COLUMN;
                let fits = #value.fits(&column);
                // A column type may own its enum's names: not dropped at compile time.
                ::core::mem::forget(column);
                if !fits {
                    ::core::panic!(#message);
                }
            };
        })
    });
    quote!(#(#checks)*)
}
