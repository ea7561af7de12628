//! The model's primary key in generated code: its type, its value, and the Diesel expressions
//! that find a row by it or order rows by it. One field, or a tuple of fields for a composite
//! key.

use proc_macro2::TokenStream;
use quote::quote;

use crate::parse::Model;

/// The key's type: the field's, or a tuple of the fields'.
pub fn key_type(model: &Model) -> TokenStream {
    let types = model.key_fields().into_iter().map(|f| f.ty);
    tuple_or_one(types.map(|ty| quote!(#ty)).collect())
}

/// The key of the row `row` (an expression of the model's type, or a reference to it).
pub fn key_value(model: &Model, row: &TokenStream) -> TokenStream {
    let values = model.key_fields().into_iter().map(|f| {
        let f = f.ident;
        quote!(::core::clone::Clone::clone(&#row.#f))
    });
    tuple_or_one(values.collect())
}

/// The key's columns (`posts::id`, or `(lines::order_id, lines::line)`).
pub fn key_columns(model: &Model) -> TokenStream {
    let table = &model.table;
    let columns = model.key_fields().into_iter().map(|f| {
        let f = f.ident;
        quote!(#table::#f)
    });
    tuple_or_one(columns.collect())
}

/// The order of the key (`asc(posts::id)`), and its type.
pub fn key_order(model: &Model) -> (TokenStream, TokenStream) {
    let table = &model.table;
    let fields = model.key_fields();
    let orders = fields.iter().map(|f| {
        let f = f.ident;
        quote!(diesel::ExpressionMethods::asc(#table::#f))
    });
    let types = fields.iter().map(|f| {
        let f = f.ident;
        quote!(diesel::dsl::Asc<#table::#f>)
    });
    (
        tuple_or_one(orders.collect()),
        tuple_or_one(types.collect()),
    )
}

/// `key column = key value` (and-ed for a composite key), for the owned key `key`, and its
/// type.
pub fn key_filter(model: &Model, key: &TokenStream) -> (TokenStream, TokenStream) {
    let table = &model.table;
    let fields = model.key_fields();
    let composite = fields.len() > 1;
    let mut filter: Option<TokenStream> = None;
    let mut ty: Option<TokenStream> = None;
    for (i, f) in fields.iter().enumerate() {
        let (column, field_ty) = (f.ident, f.ty);
        let value = if composite {
            let index = syn::Index::from(i);
            quote!(#key.#index)
        } else {
            quote!(#key)
        };
        let eq = quote!(diesel::ExpressionMethods::eq(#table::#column, #value));
        let eq_ty = quote!(diesel::dsl::Eq<#table::#column, #field_ty>);
        filter = Some(match filter {
            None => eq,
            Some(before) => quote!(diesel::BoolExpressionMethods::and(#before, #eq)),
        });
        ty = Some(match ty {
            None => eq_ty,
            Some(before) => quote!(diesel::dsl::And<#before, #eq_ty>),
        });
    }
    (
        filter.expect("a key has a field"),
        ty.expect("a key has a field"),
    )
}

fn tuple_or_one(items: Vec<TokenStream>) -> TokenStream {
    match items.as_slice() {
        [one] => one.clone(),
        many => quote!((#(#many),*)),
    }
}
