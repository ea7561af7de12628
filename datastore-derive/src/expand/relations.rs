//! The relations: the child's side of each foreign key, and the parent's loaders, links and
//! filters for each relation field.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Ident, Path};

use super::Private;
use crate::parse::{method_ident, Field, Model, Relation, RelationKind};

/// The [`fk_key`](datastore::relations::fk_key) of the child's foreign key to the parent: the
/// one named, or the child's only one.
pub fn fk_key(private: Private, child: &Path, parent: &Path, named: Option<&Ident>) -> TokenStream {
    match named {
        Some(field) => {
            // The column's name, which is the field's without `r#`.
            let field = field.unraw().to_string();
            quote!(#private::fk_key(#field))
        }
        None => quote!(<#child as #private::ForeignKeysTo<#parent>>::FIRST),
    }
}

/// The foreign keys a `many_to_many` goes through, as [`fk_key`]s: the join model's field
/// pointing at this model's row (`foreign_key = ..`, or its only one to this model) and the
/// one pointing at the linked row (`other_key = ..`, or its only one to the target).
pub fn many_to_many_keys(
    private: Private,
    this: &Path,
    relation: &Relation,
) -> (TokenStream, TokenStream) {
    let through = relation.through.as_ref().expect("checked when parsed");
    (
        fk_key(private, through, this, relation.foreign_key.as_ref()),
        fk_key(
            private,
            through,
            &relation.target,
            relation.other_key.as_ref(),
        ),
    )
}

/// Fails the build, at the attribute at fault, unless the relation's foreign keys are
/// unambiguous: each field it names is a `belongs_to` of the child (or join model) to the
/// right model, checked at the name; each it does not name is the child's only one to that
/// model, else the message shows the form naming it; and a `many_to_many` links by two
/// different fields (one model linked to itself has two `belongs_to` to it, one for each side).
fn assert_keys(
    private: Private,
    model: &Ident,
    relation_field: &Field,
    relation: &Relation,
) -> TokenStream {
    let this: &Path = &syn::parse_quote!(#model);
    let field = relation_field.ident;
    let target = &relation.target;
    let target_name = last(target);
    match relation.kind {
        RelationKind::HasMany | RelationKind::HasOne => {
            let message = format!(
                "ambiguous relation: `{target_name}` has several `#[belongs_to({})]` fields; name \
                 the one `{field}` uses: `#[{}({target_name}, foreign_key = <field>)]`",
                last(this),
                relation.kind.attr(),
            );
            assert_key(
                private,
                target,
                this,
                relation.foreign_key.as_ref(),
                &message,
            )
        }
        RelationKind::ManyToMany => {
            let through = relation.through.as_ref().expect("checked when parsed");
            let join = last(through);
            let form =
                |keys: &str| format!("`#[many_to_many({target_name}, through = {join}, {keys})]`");
            let both = form("foreign_key = <field>, other_key = <field>");
            // A model linked to itself: neither key can be the join model's only one to it.
            if relation.foreign_key.is_none()
                && relation.other_key.is_none()
                && is_self(target, model)
            {
                let message = format!(
                    "many-to-many `{field}` links `{target_name}` with itself: name which \
                     `#[belongs_to({target_name})]` field of `{join}` points at this row and \
                     which at the linked one: {both}"
                );
                return syn::Error::new_spanned(through, message).to_compile_error();
            }
            let ambiguous = |side: &Path, which: &str, keys: &str| {
                format!(
                    "ambiguous many-to-many `{field}`: `{join}` has several `#[belongs_to({})]` \
                     fields; name the one pointing at {which}: {}",
                    last(side),
                    form(keys),
                )
            };
            let linked = format!("the linked `{target_name}`");
            let (fk_this, fk_target) = many_to_many_keys(private, this, relation);
            let message = format!(
                "many-to-many `{field}` links by one field of `{join}` for both sides: a link \
                 needs a `#[belongs_to({target_name})]` field pointing at this row and another \
                 pointing at the linked row: {both}"
            );
            [
                assert_key(
                    private,
                    through,
                    this,
                    relation.foreign_key.as_ref(),
                    &ambiguous(this, "this row", "foreign_key = <field>"),
                ),
                assert_key(
                    private,
                    through,
                    target,
                    relation.other_key.as_ref(),
                    &ambiguous(target, &linked, "other_key = <field>"),
                ),
                {
                    let private = private.at(through.span());
                    quote_spanned! {through.span()=>
                        const _: () = #private::assert_distinct_keys(#fk_this, #fk_target, #message);
                    }
                },
            ]
            .into_iter()
            .collect()
        }
    }
}

/// The check of one foreign key of a relation, from `child` to `parent`: the field `named` is
/// the child's `belongs_to` to the parent (checked at the name); with none named, the child
/// has one `belongs_to` to the parent, or the build fails with `ambiguous`.
fn assert_key(
    private: Private,
    child: &Path,
    parent: &Path,
    named: Option<&Ident>,
    ambiguous: &str,
) -> TokenStream {
    match named {
        Some(named) => {
            let fk = fk_key(private, child, parent, Some(named));
            let private = private.at(named.span());
            quote_spanned! {named.span()=>
                const _: fn() = || {
                    fn named_foreign_key<T: #private::BelongsTo<#parent, { #fk }>>() {}
                    named_foreign_key::<#child>();
                };
            }
        }
        None => {
            let private = private.at(child.span());
            quote_spanned! {child.span()=>
                const _: () = #private::assert_unambiguous(
                    <#child as #private::ForeignKeysTo<#parent>>::COUNT,
                    #ambiguous,
                );
            }
        }
    }
}

/// Whether a relation's target is the model itself (`Self`, or its own name).
fn is_self(target: &Path, ident: &Ident) -> bool {
    target.is_ident("Self") || target.is_ident(ident)
}

fn last(path: &Path) -> String {
    path.segments
        .last()
        .map(|s| s.ident.to_string())
        .unwrap_or_default()
}

/// The child's side, once per model: `BelongsTo` and `ForeignKeysTo` for each `belongs_to`,
/// and the typed `post()`, `with_post()` and `where_post()` of a field `post_id`.
pub fn child_side(model: &Model) -> TokenStream {
    let private = model.private();
    let ident = model.ident;
    let table = &model.table;
    let mut out = TokenStream::new();
    let mut parents: Vec<(String, &Path, Vec<&Field>)> = Vec::new();
    for (field, column) in model.columns() {
        let Some(belongs_to) = &column.belongs_to else {
            continue;
        };
        let parent = &belongs_to.parent;
        let optional = belongs_to.optional;
        let name = quote!(#parent).to_string();
        match parents.iter_mut().find(|(n, _, _)| *n == name) {
            Some((_, _, fields)) => fields.push(field),
            None => parents.push((name, parent, vec![field])),
        }

        let f = field.ident;
        let field_name = field.column_name();
        let fk = quote!({ #private::fk_key(#field_name) });
        let stem = field.method_stem().expect("a belongs_to field");
        let getter = method_ident(&stem, f.span());
        let with = format_ident!("with_{}", stem);
        let where_ = format_ident!("where_{}", stem);
        let getter_doc = if optional {
            format!(
                "The `{}` this row's `{field_name}` points at (one query), or `None` when it is `NULL`.",
                last(parent)
            )
        } else {
            format!(
                "The `{}` this row's `{field_name}` points at (one query).",
                last(parent)
            )
        };
        let find_parent = |key: TokenStream| {
            quote! {
                <#parent as #private::Persist<__C>>::find(conn, #key)?.ok_or_else(|| {
                    #private::Error::NotFound {
                        table: <#parent as #private::Model>::TABLE_NAME.into(),
                        key: #private::KeyValue::describe(#key),
                    }
                })
            }
        };
        let (nullability, parent_key, set_parent, set_parent_from_row, getter_type, getter_body) =
            if optional {
                let found = find_parent(quote!(key));
                (
                    quote!(#private::NullableCondition),
                    quote!(::core::clone::Clone::clone(&self.#f)),
                    quote!(::core::option::Option::Some(parent)),
                    quote!(::core::option::Option::Some(
                        #private::Model::key(parent)
                    )),
                    quote!(::core::option::Option<#parent>),
                    quote! {
                        match &self.#f {
                            ::core::option::Option::None => ::core::result::Result::Ok(::core::option::Option::None),
                            ::core::option::Option::Some(key) => #found.map(::core::option::Option::Some),
                        }
                    },
                )
            } else {
                (
                    quote!(#private::NotNullCondition),
                    quote!(::core::option::Option::Some(::core::clone::Clone::clone(&self.#f))),
                    quote!(parent),
                    quote!(#private::Model::key(parent)),
                    quote!(#parent),
                    find_parent(quote!(&self.#f)),
                )
            };
        let getter_async = format_ident!("{}_async", stem);
        let getter_async_doc = format!(
            "[`{stem}`](Self::{stem}) in async form, on an `AsyncStore` or in an `AsyncTransaction` \
             (feature `async`)."
        );
        // The key through `BelongsTo::parent_key`, whose impl already checks the field's type
        // (a mismatch is reported there once, not again here).
        let parent_key_of_self = quote! {
            <Self as #private::BelongsTo<#parent, #fk>>::parent_key(self)
        };
        let getter_async_body = if optional {
            quote! {
                let key = #parent_key_of_self;
                async move {
                    match key {
                        ::core::option::Option::None => ::core::result::Result::Ok(::core::option::Option::None),
                        ::core::option::Option::Some(key) => {
                            #private::AsyncRepo::get::<#parent>(store, &key).await.map(::core::option::Option::Some)
                        }
                    }
                }
            }
        } else {
            quote! {
                let key = #parent_key_of_self;
                async move {
                    match key {
                        ::core::option::Option::Some(key) => #private::AsyncRepo::get::<#parent>(store, &key).await,
                        // A required parent's key is always there.
                        ::core::option::Option::None => ::core::result::Result::Err(#private::Error::NotFound {
                            table: <#parent as #private::Model>::TABLE_NAME.into(),
                            key: "NULL".into(),
                        }),
                    }
                }
            }
        };
        let constant = format_ident!("{}", stem.to_uppercase());
        let const_doc = format!(
            "The `belongs_to` field `{field_name}` as a value, to load the `{}` it points at with \
             a live query ({}), alone or followed by the parent's \
             relations with `then`; a snapshot holds the parents ({}).",
            last(parent),
            private.doc_link("LiveQuery::load", "observe::LiveQuery::load"),
            private.doc_link("Snapshot::parent", "observe::Snapshot::parent"),
        );
        let with_doc = format!("This row, pointed at this `{}`.", last(parent));
        let where_doc = format!(
            "A condition on this model's table: the rows whose `{}` matches `predicate` (a condition \
             on its table), as a SQL subquery. Works on every backend.",
            last(parent)
        );
        // The field holds the parent's key (in an `Option` for an optional parent): a model
        // keyed by one column, of the field's type.
        let ty = if optional {
            crate::parse::option_of(field.ty).expect("checked when parsed")
        } else {
            field.ty
        };
        let same_type = {
            let private = private.at(ty.span());
            quote_spanned! {ty.span()=>
                const _: fn() = || {
                    fn referenced<K: #private::ReferencedKey>() {}
                    referenced::<<#parent as #private::Model>::Key>();
                    fn key_of_parent<T: #private::KeyOfParent<K>, K>() {}
                    key_of_parent::<#ty, <#parent as #private::Model>::Key>();
                };
            }
        };
        out.extend(quote! {
            #same_type

            impl #private::BelongsTo<#parent, #fk> for #ident {
                const FIELD: &'static str = #field_name;
                type Column = #table::#f;
                type Nullability = #nullability;

                fn parent_key(&self) -> ::core::option::Option<<#parent as #private::Model>::Key> {
                    #parent_key
                }

                fn set_parent_key(&mut self, parent: <#parent as #private::Model>::Key) {
                    self.#f = #set_parent;
                }
            }

            impl #ident {
                #[doc = #const_doc]
                pub const #constant: #private::BelongsToRel<Self, #parent, #fk> =
                    #private::BelongsToRel::new(#stem);

                #[doc = #getter_doc]
                pub fn #getter<__C>(&self, conn: &mut __C) -> #private::Result<#getter_type>
                where
                    __C: diesel::Connection,
                    #parent: #private::Persist<__C>,
                {
                    #getter_body
                }

                #[doc = #getter_async_doc]
                pub fn #getter_async<'__s, __R, __C>(
                    &self,
                    store: &'__s __R,
                ) -> impl ::core::future::Future<Output = #private::Result<#getter_type>> + ::core::marker::Send + use<'__s, __R, __C>
 where
    __R: #private::AsyncRepo<Conn = __C>,
    __C: diesel::Connection + 'static,
    #parent: #private::Persist<__C>, {
                    #getter_async_body
                }

                #[doc = #with_doc]
                pub fn #with(mut self, parent: &#parent) -> Self {
                    self.#f = #set_parent_from_row;
                    self
                }

                #[doc = #where_doc]
                pub fn #where_<__P>(predicate: __P) -> #private::ParentWhere<Self, #parent, #fk, __P>
                where
                    #parent: #private::SelectKeys<__P>,
                {
                    #private::parent_where::<Self, #parent, #fk, __P>(predicate)
                }
            }
        });
    }
    for (_, parent, fields) in parents {
        let count = fields.len();
        let first = fields[0].column_name();
        out.extend(quote! {
            impl #private::ForeignKeysTo<#parent> for #ident {
                const COUNT: usize = #count;
                const FIRST: u64 = #private::fk_key(#first);
            }
        });
    }
    out
}

/// The relation field as a value for live queries: `Post::COMMENTS` for a field `comments`
/// (`ty` names the model `Self`; a nested function cannot, so it names `model`).
fn live_const(
    private: Private,
    model: &Ident,
    field: &Field,
    ty: TokenStream,
    field_ty: TokenStream,
) -> TokenStream {
    let f = field.ident;
    let name = f.unraw().to_string();
    let constant = format_ident!("{}", name.to_uppercase());
    let doc = format!(
        "The relation `{name}` as a value, to load with a live query \
         ({}), alone or followed by its target's relations with `then`.",
        private.doc_link("LiveQuery::load", "observe::LiveQuery::load"),
    );
    quote! {
        impl #model {
            #[doc = #doc]
            pub const #constant: #ty = {
                fn field(row: &mut #model) -> &mut #field_ty {
                    &mut row.#f
                }
                <#ty>::new(#name, field)
            };
        }
    }
}

/// The parent's side, generic over the connection: for each relation field, the lazy loader
/// (`post.comments(conn)`), the eager loader (`Post::load_comments(conn, &mut posts)`), the SQL
/// filter (`Post::having_comments(predicate)`), and for many-to-many `link_*`/`unlink_*`.
pub fn parent_side(model: &Model) -> TokenStream {
    let private = model.private();
    let ident = model.ident;
    let this: Path = syn::parse_quote!(#ident);
    let mut out = TokenStream::new();
    for (field, relation) in model.relations() {
        let f = field.ident;
        let name = f.unraw().to_string();
        let target = &relation.target;
        // What a nested function calls the target (it cannot say `Self`).
        let named_target = if target.is_ident("Self") {
            quote!(#ident)
        } else {
            quote!(#target)
        };
        let load = format_ident!("load_{}", name);
        let having = format_ident!("having_{}", name);
        let load_doc = format!(
            "Loads `{name}` of every row given, with one query per relation level whatever their number."
        );
        let lazy_doc = format!("The `{name}` of this row (loaded now, not cached in the field).");
        let f_async = format_ident!("{}_async", name);
        let load_async = format_ident!("load_{}_async", name);
        let lazy_async_doc = format!(
            "[`{name}`](Self::{name}) in async form, on an `AsyncStore` or in an `AsyncTransaction` \
             (feature `async`)."
        );
        let load_async_doc = format!(
            "[`load_{name}`](Self::load_{name}) in async form, on an `AsyncStore` or in an \
             `AsyncTransaction` (feature `async`): returns the rows given, `{name}` loaded."
        );
        let having_doc = format!(
            "A condition on this model's table: the rows with `{name}` matching `predicate` (a \
             condition on their table), as a SQL subquery. Works on every backend."
        );
        out.extend(assert_keys(private, ident, field, relation));
        match relation.kind {
            RelationKind::HasMany | RelationKind::HasOne => {
                let fk = fk_key(private, target, &this, relation.foreign_key.as_ref());
                let args = quote!(Self, #target, { #fk }, __C);
                let (lazy_type, lazy_body, eager) = if relation.kind == RelationKind::HasMany {
                    (
                        quote!(::std::vec::Vec<#target>),
                        quote!(#private::load::children::<#args>(conn, &__key)),
                        quote!(#private::load::eager_has_many::<#args>),
                    )
                } else {
                    (
                        quote!(::core::option::Option<#target>),
                        quote!(::core::result::Result::Ok(
                            #private::load::children::<#args>(conn, &__key)?
                                .into_iter()
                                .next()
                        )),
                        quote!(#private::load::eager_has_one::<#args>),
                    )
                };
                out.extend(live_const(
                    private,
                    ident,
                    field,
                    if relation.kind == RelationKind::HasMany {
                        quote!(#private::HasManyRel<Self, #target, { #fk }>)
                    } else {
                        quote!(#private::HasOneRel<Self, #target, { #fk }>)
                    },
                    if relation.kind == RelationKind::HasMany {
                        quote!(#private::HasMany<#named_target>)
                    } else {
                        quote!(#private::HasOne<#named_target>)
                    },
                ));
                out.extend(quote! {
                    impl #ident {
                        #[doc = #lazy_doc]
                        pub fn #f<__C>(&self, conn: &mut __C) -> #private::Result<#lazy_type>
                        where
                            __C: diesel::Connection,
                            #target: #private::ChildOf<Self, { #fk }, __C>,
                        {
                            let __key = #private::Model::key(self);
                            #lazy_body
                        }

                        #[doc = #lazy_async_doc]
                        pub fn #f_async<'__s, __R, __C>(
                            &self,
                            store: &'__s __R,
                        ) -> impl ::core::future::Future<Output = #private::Result<#lazy_type>> + ::core::marker::Send + use<'__s, __R, __C>
 where
    __R: #private::AsyncRepo<Conn = __C>,
    __C: diesel::Connection + 'static,
    #target: #private::ChildOf<Self, { #fk }, __C>, {
                            let __key = #private::Model::key(self);
                            #private::AsyncRepo::run(store, move |conn: &mut __C| #lazy_body)
                        }

                        #[doc = #load_async_doc]
                        pub fn #load_async<'__s, __R, __C>(
                            store: &'__s __R,
                            rows: ::std::vec::Vec<Self>,
                        ) -> impl ::core::future::Future<Output = #private::Result<::std::vec::Vec<Self>>> + ::core::marker::Send + use<'__s, __R, __C>
 where
    __R: #private::AsyncRepo<Conn = __C>,
    __C: diesel::Connection + 'static,
    #target: #private::ChildOf<Self, { #fk }, __C>, {
                            #private::AsyncRepo::run(store, move |conn: &mut __C| {
                                let mut rows = rows;
                                Self::#load(conn, rows.iter_mut())?;
                                ::core::result::Result::Ok(rows)
                            })
                        }

                        #[doc = #load_doc]
                        pub fn #load<'a, __C>(
                            conn: &mut __C,
                            rows: impl ::core::iter::IntoIterator<Item = &'a mut Self>,
                        ) -> #private::Result<()>
                        where
                            __C: diesel::Connection,
                            #target: #private::ChildOf<Self, { #fk }, __C>,
                        {
                            #eager(conn, rows, |row| &mut row.#f)
                        }

                        #[doc = #having_doc]
                        pub fn #having<__P>(predicate: __P) -> #private::Having<Self, #target, { #fk }, __P>
                        where
                            #target: #private::SelectForeignKeys<Self, { #fk }, __P>,
                        {
                            #private::having::<Self, #target, { #fk }, __P>(predicate)
                        }
                    }
                });
                // A model's children of its own kind (a reply's replies): the whole tree too.
                if relation.kind == RelationKind::HasMany && is_self(target, ident) {
                    let load_tree = format_ident!("load_{}_tree", name);
                    let load_tree_async = format_ident!("load_{}_tree_async", name);
                    let tree_async_doc = format!(
                        "[`load_{name}_tree`](Self::load_{name}_tree) in async form, on an `AsyncStore` \
                         or in an `AsyncTransaction` (feature `async`): returns the rows given, their \
                         trees loaded."
                    );
                    let tree_doc = format!(
                        "Loads `{name}` of every row given, and theirs, down the whole tree: one query \
                         per level (a tree of depth `d` takes `d + 1`)."
                    );
                    out.extend(quote! {
                        impl #ident {
                            #[doc = #tree_doc]
                            pub fn #load_tree<'a, __C>(
                                conn: &mut __C,
                                rows: impl ::core::iter::IntoIterator<Item = &'a mut Self>,
                            ) -> #private::Result<()>
                            where
                                __C: diesel::Connection,
                                Self: #private::ChildOf<Self, { #fk }, __C>,
                            {
                                #private::load::eager_has_many_tree::<Self, { #fk }, __C>(conn, rows, |row| &mut row.#f)
                            }

                            #[doc = #tree_async_doc]
                            pub fn #load_tree_async<'__s, __R, __C>(
                                store: &'__s __R,
                                rows: ::std::vec::Vec<Self>,
                            ) -> impl ::core::future::Future<Output = #private::Result<::std::vec::Vec<Self>>> + ::core::marker::Send + use<'__s, __R, __C>
 where
    __R: #private::AsyncRepo<Conn = __C>,
    __C: diesel::Connection + 'static,
    Self: #private::ChildOf<Self, { #fk }, __C>, {
                                #private::AsyncRepo::run(store, move |conn: &mut __C| {
                                    let mut rows = rows;
                                    Self::#load_tree(conn, rows.iter_mut())?;
                                    ::core::result::Result::Ok(rows)
                                })
                            }
                        }
                    });
                }
            }
            RelationKind::ManyToMany => {
                let through = relation.through.as_ref().expect("checked when parsed");
                let (fk_this, fk_target) = many_to_many_keys(private, &this, relation);
                let link = format_ident!("link_{}", name);
                let unlink = format_ident!("unlink_{}", name);
                let link_async = format_ident!("link_{}_async", name);
                let unlink_async = format_ident!("unlink_{}_async", name);
                let link_async_doc = format!(
                    "[`link_{name}`](Self::link_{name}) in async form, on an `AsyncStore` or in an \
                     `AsyncTransaction` (feature `async`)."
                );
                let unlink_async_doc = format!(
                    "[`unlink_{name}`](Self::unlink_{name}) in async form, on an `AsyncStore` or in \
                     an `AsyncTransaction` (feature `async`)."
                );
                let link_doc = format!(
                    "Links this row and `other` in `{name}`: the join row, saved unless one already links them."
                );
                let unlink_doc = format!(
                    "Unlinks this row and `other` in `{name}`: deletes their join rows; returns how many."
                );
                out.extend(live_const(
                    private,
                    ident,
                    field,
                    quote!(#private::ManyToManyRel<Self, #through, #target, { #fk_this }, { #fk_target }>),
                    quote!(#private::ManyToMany<#named_target>),
                ));
                let args = quote!(Self, #through, #target, { #fk_this }, { #fk_target }, __C);
                let bounds = quote! {
                    __C: diesel::Connection,
                    #target: #private::Persist<__C> + ::core::clone::Clone,
                    #through: #private::ChildOf<Self, { #fk_this }, __C>
                        + #private::ChildOf<#target, { #fk_target }, __C>,
                };
                out.extend(quote! {
                    impl #ident {
                        #[doc = #lazy_doc]
                        pub fn #f<__C>(&self, conn: &mut __C) -> #private::Result<::std::vec::Vec<#target>>
                        where
                            #bounds
                        {
                            #private::load::linked::<#args>(conn, &#private::Model::key(self))
                        }

                        #[doc = #lazy_async_doc]
                        pub fn #f_async<'__s, __R, __C>(
                            &self,
                            store: &'__s __R,
                        ) -> impl ::core::future::Future<Output = #private::Result<::std::vec::Vec<#target>>> + ::core::marker::Send + use<'__s, __R, __C>
 where
    __R: #private::AsyncRepo<Conn = __C>,
    __C: 'static,
    #bounds {
                            let __key = #private::Model::key(self);
                            #private::AsyncRepo::run(store, move |conn: &mut __C| {
                                #private::load::linked::<#args>(conn, &__key)
                            })
                        }

                        #[doc = #load_async_doc]
                        pub fn #load_async<'__s, __R, __C>(
                            store: &'__s __R,
                            rows: ::std::vec::Vec<Self>,
                        ) -> impl ::core::future::Future<Output = #private::Result<::std::vec::Vec<Self>>> + ::core::marker::Send + use<'__s, __R, __C>
 where
    __R: #private::AsyncRepo<Conn = __C>,
    __C: 'static,
    #bounds {
                            #private::AsyncRepo::run(store, move |conn: &mut __C| {
                                let mut rows = rows;
                                Self::#load(conn, rows.iter_mut())?;
                                ::core::result::Result::Ok(rows)
                            })
                        }

                        #[doc = #link_async_doc]
                        pub fn #link_async<'__s, __R, __C>(
                            &self,
                            store: &'__s __R,
                            other: &#target,
                        ) -> impl ::core::future::Future<Output = #private::Result<#through>> + ::core::marker::Send + use<'__s, __R, __C>
 where
    __R: #private::AsyncRepo<Conn = __C>,
    __C: 'static,
    #bounds {
                            let __this = #private::Model::key(self);
                            let __other = #private::Model::key(other);
                            #private::AsyncRepo::run(store, move |conn: &mut __C| {
                                #private::load::link::<#args>(conn, &__this, &__other)
                            })
                        }

                        #[doc = #unlink_async_doc]
                        pub fn #unlink_async<'__s, __R, __C>(
                            &self,
                            store: &'__s __R,
                            other: &#target,
                        ) -> impl ::core::future::Future<Output = #private::Result<usize>> + ::core::marker::Send + use<'__s, __R, __C>
 where
    __R: #private::AsyncRepo<Conn = __C>,
    __C: 'static,
    #bounds {
                            let __this = #private::Model::key(self);
                            let __other = #private::Model::key(other);
                            #private::AsyncRepo::run(store, move |conn: &mut __C| {
                                #private::load::unlink::<#args>(conn, &__this, &__other)
                            })
                        }

                        #[doc = #load_doc]
                        pub fn #load<'a, __C>(
                            conn: &mut __C,
                            rows: impl ::core::iter::IntoIterator<Item = &'a mut Self>,
                        ) -> #private::Result<()>
                        where
                            #bounds
                        {
                            #private::load::eager_many_to_many::<#args>(conn, rows, |row| &mut row.#f)
                        }

                        #[doc = #link_doc]
                        pub fn #link<__C>(&self, conn: &mut __C, other: &#target) -> #private::Result<#through>
                        where
                            #bounds
                        {
                            #private::load::link::<#args>(conn, &#private::Model::key(self), &#private::Model::key(other))
                        }

                        #[doc = #unlink_doc]
                        pub fn #unlink<__C>(&self, conn: &mut __C, other: &#target) -> #private::Result<usize>
                        where
                            #bounds
                        {
                            #private::load::unlink::<#args>(conn, &#private::Model::key(self), &#private::Model::key(other))
                        }

                        #[doc = #having_doc]
                        pub fn #having<__P>(predicate: __P) -> #private::LinkedWhere<Self, #through, #target, { #fk_this }, { #fk_target }, __P>
                        where
                            #target: #private::SelectKeys<__P>,
                            #through: #private::SelectForeignKeys<
                                Self,
                                { #fk_this },
                                #private::ParentWhere<#through, #target, { #fk_target }, __P>,
                            >,
                        {
                            #private::linked_where::<Self, #through, #target, { #fk_this }, { #fk_target }, __P>(predicate)
                        }
                    }
                });
            }
        }
    }
    out
}
