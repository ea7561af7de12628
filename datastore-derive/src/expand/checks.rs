//! Compile-time checks whose failures point at the field at fault.

use proc_macro2::{Group, Ident, TokenStream, TokenTree};
use quote::{format_ident, quote_spanned, ToTokens};
use syn::spanned::Spanned;

use crate::parse::{FieldKind, Model, RelationKind};

pub fn checks(model: &Model) -> TokenStream {
    let private = model.private();
    // A key's fields have types a key column can have.
    let keys = model.key_fields().into_iter().map(|field| {
        let ty = field.ty;
        let private = private.at(ty.span());
        quote_spanned! {ty.span()=>
            const _: fn() = || {
                fn key_column<K: #private::KeyColumn>() {}
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
                // type must be the one the `table!` was given (`ColumnSqlType`'s message says
                // why it may not be: an alias).
                FieldKind::Column(_) => {
                    let sql_type = super::table::sql_type(private, ty);
                    let private = private.at(ty.span());
                    // A const's type, checked with the item's signature: reported before the
                    // errors of the generated code that a wrong SQL type causes.
                    quote_spanned! {ty.span()=>
                        const _: ::core::option::Option<
                            #private::ColumnOf<#ty, #sql_type>,
                        > = ::core::option::Option::None;
                    }
                }
                FieldKind::Relation(relation) => {
                    let target = &relation.target;
                    let wrapper = format_ident!("{}", relation.kind.wrapper());
                    let private = private.at(target.span());
                    let is_model = quote_spanned! {target.span()=>
                        fn model<T: #private::Model>() {}
                        model::<#target>();
                    };
                    // Outside the struct's impls, where `Self` (`HasMany<Self>`) means nothing.
                    let named_ty = naming_self(ty.to_token_stream(), model.ident);
                    let private = private.at(ty.span());
                    let field_type = quote_spanned! {ty.span()=>
                        let _: #named_ty = #private::#wrapper::<#target>::default();
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
    let join_models = join_models_that_are_children(model);
    quote::quote!(#keys #fields #join_models)
}

/// `tokens` with each `Self` naming `model` instead, spanned as it was.
fn naming_self(tokens: TokenStream, model: &Ident) -> TokenStream {
    tokens
        .into_iter()
        .map(|token| match token {
            TokenTree::Ident(ident) if ident == "Self" => {
                TokenTree::Ident(Ident::new(&model.to_string(), ident.span()))
            }
            TokenTree::Group(group) => {
                let mut named = Group::new(group.delimiter(), naming_self(group.stream(), model));
                named.set_span(group.span());
                TokenTree::Group(named)
            }
            other => other,
        })
        .collect()
}

/// Refuses, at its `through`, a `many_to_many` going through a model the struct also declares
/// as a `has_many` or `has_one` child: the same rows cannot be both links (one for each pair,
/// a linked row's delete refused until it is unlinked) and children (deleted with their
/// parent). Emitted beside the expansion, so that the model stays a model for the code that
/// names it. Told by the paths as written (one path names one type within the struct):
/// `Schema::validate` refuses every case by type, a join model of one model that another
/// declares as its children included.
fn join_models_that_are_children(model: &Model) -> TokenStream {
    let written = |path: &syn::Path| path.to_token_stream().to_string();
    let relations: Vec<_> = model.relations().map(|(_, r)| r).collect();
    relations
        .iter()
        .filter_map(|r| r.through.as_ref())
        .filter_map(|through| {
            let child = relations.iter().find(|r| {
                r.kind != RelationKind::ManyToMany && written(&r.target) == written(through)
            })?;
            let model = written(through);
            let message = format!(
                "`{model}` is this model's `{}` child and this many-to-many's join model: a \
                 child's rows are deleted with their parent, a join model's rows are links (one \
                 for each pair, a linked row's delete refused until it is unlinked); give the \
                 many-to-many a join model of its own",
                child.kind.attr()
            );
            Some(syn::Error::new_spanned(through, message).to_compile_error())
        })
        .collect()
}
