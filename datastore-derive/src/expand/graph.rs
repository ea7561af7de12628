//! `save_graph`: the row, then each loaded relation field through the runtime's
//! `relations::graph`, in one transaction. Written for each backend's own connection (see
//! `SaveGraph` in the runtime for why not once for every connection).

use proc_macro2::TokenStream;
use quote::quote;

use super::relations::{fk_key, many_to_many_keys};
use crate::parse::{Model, RelationKind};

pub fn save_graph(model: &Model) -> TokenStream {
    let connections = [
        quote!(diesel::sqlite::SqliteConnection),
        quote!(diesel::pg::PgConnection),
    ];
    let impls = connections.iter().map(|conn| save_graph_on(model, conn));
    quote!(#(#impls)*)
}

fn save_graph_on(model: &Model, conn: &TokenStream) -> TokenStream {
    let private = model.private();
    let ident = model.ident;
    let this: syn::Path = syn::parse_quote!(#ident);
    let mut takes = Vec::new();
    let mut stores = Vec::new();
    // The generated locals and parameters start with `__`, and each relation's rows are named
    // by its place (`__taken0`): a field's own name (`saved`, `conn`, `graph`) would shadow them.
    for (i, (field, relation)) in model.relations().enumerate() {
        let f = field.ident;
        let target = &relation.target;
        let taken = quote::format_ident!("__taken{}", i);
        takes.push(quote!(let #taken = ::core::mem::take(&mut self.#f).into_loaded();));
        let store = match relation.kind {
            RelationKind::HasMany | RelationKind::HasOne => {
                let fk = fk_key(private, target, &this, relation.foreign_key.as_ref());
                let children = quote! {
                    #private::graph::save_children::<Self, #target, { #fk }, #conn>(__conn, __graph, #private::Model::key(&__saved), __rows)?
                };
                if relation.kind == RelationKind::HasMany {
                    quote!(#private::HasMany::loaded(#children))
                } else {
                    quote!(#private::HasOne::loaded(::core::iter::IntoIterator::into_iter(#children).next()))
                }
            }
            RelationKind::ManyToMany => {
                let through = relation.through.as_ref().expect("checked when parsed");
                let (fk_this, fk_target) = many_to_many_keys(private, &this, relation);
                quote! {
                    #private::ManyToMany::loaded(
                        #private::graph::save_linked::<Self, #through, #target, { #fk_this }, { #fk_target }, #conn>(__conn, __graph, #private::Model::key(&__saved), __rows)?
                    )
                }
            }
        };
        stores.push(quote! {
            if let ::core::option::Option::Some(__rows) = #taken {
                __saved.#f = #store;
            }
        });
    }
    // Unused by a model without relations, whose graph is the row alone.
    let graph = if takes.is_empty() {
        quote!(_graph)
    } else {
        quote!(__graph)
    };
    let body = if takes.is_empty() {
        quote!(<Self as #private::Persist<#conn>>::save(self, __conn))
    } else {
        quote! {
            #(#takes)*
            #private::transaction(__conn, |__conn| {
                let mut __saved = <Self as #private::Persist<#conn>>::save(self, __conn)?;
                #(#stores)*
                ::core::result::Result::Ok(__saved)
            })
        }
    };
    quote! {
        impl #private::SaveGraph<#conn> for #ident {
            #[allow(unused_mut)]
            fn save_graph(
                mut self,
                __conn: &mut #conn,
                #graph: &mut #private::graph::Saved,
            ) -> #private::Result<Self> {
                #body
            }
        }
    }
}
