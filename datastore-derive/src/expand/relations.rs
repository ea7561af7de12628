//! The relations: the child's side of each foreign key, and the parent's loaders, links and
//! filters for each relation field.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, Path};

use crate::parse::{Field, Model, RelationKind};

/// One backend the code is generated for.
pub struct Backend {
    /// The connection type.
    pub conn: TokenStream,
    /// The Diesel backend type.
    pub backend: TokenStream,
}

/// The [`fk_key`](datastore::relations::fk_key) of the child's foreign key to the parent: the
/// one named, or the child's only one.
pub fn fk_key(child: &Path, parent: &Path, named: Option<&Ident>) -> TokenStream {
    match named {
        Some(field) => {
            let field = field.to_string();
            quote!(::datastore::relations::fk_key(#field))
        }
        None => quote!(<#child as ::datastore::relations::ForeignKeysTo<#parent>>::FIRST),
    }
}

/// Fails the build, at the relation attribute, when the child has several foreign keys to the
/// parent and the relation does not name one.
fn assert_unambiguous(
    child: &Path,
    parent: &Path,
    relation_field: &Field,
    kind: RelationKind,
) -> TokenStream {
    let child_name = last(child);
    let parent_name = last(parent);
    let message = format!(
        "ambiguous relation: `{child_name}` has several `#[belongs_to({parent_name})]` fields; name the one \
         `{}` uses: `#[{}({child_name}, foreign_key = <field>)]`",
        relation_field.ident,
        kind.attr(),
    );
    quote_spanned! {child.span()=>
        const _: () = ::datastore::relations::assert_unambiguous(
            <#child as ::datastore::relations::ForeignKeysTo<#parent>>::COUNT,
            #message,
        );
    }
}

fn last(path: &Path) -> String {
    path.segments
        .last()
        .map(|s| s.ident.to_string())
        .unwrap_or_default()
}

/// The child's side: `BelongsTo`, `ForeignKeysTo` and `ForeignKey` for each `belongs_to`,
/// and the typed `post()`, `with_post()` and `where_post()` of a field `post_id`.
pub fn child_side(model: &Model, backend: &Backend) -> TokenStream {
    let Backend { conn, backend } = backend;
    let ident = model.ident;
    let table = &model.table;
    let mut out = TokenStream::new();
    let mut parents: Vec<(String, &Path, Vec<&Field>)> = Vec::new();
    for (field, column) in model.columns() {
        let Some(parent) = &column.belongs_to else {
            continue;
        };
        let name = quote!(#parent).to_string();
        match parents.iter_mut().find(|(n, _, _)| *n == name) {
            Some((_, _, fields)) => fields.push(field),
            None => parents.push((name, parent, vec![field])),
        }

        let f = field.ident;
        let field_name = field.column_name();
        let fk = quote!({ ::datastore::relations::fk_key(#field_name) });
        let stem = field_name
            .strip_suffix("_id")
            .unwrap_or(&field_name)
            .to_owned();
        let getter = format_ident!("{}", stem);
        let with = format_ident!("with_{}", stem);
        let where_ = format_ident!("where_{}", stem);
        let getter_doc = format!(
            "The `{}` this row's `{field_name}` points at (one query).",
            last(parent)
        );
        let with_doc = format!("This row, pointed at this `{}`.", last(parent));
        let where_doc = format!(
            "A predicate on this model's table: the rows whose `{}` matches `predicate`, as a SQL subquery.",
            last(parent)
        );
        out.extend(quote! {
            impl ::datastore::relations::BelongsTo<#parent, #fk> for #ident {
                const FIELD: &'static str = #field_name;

                fn parent_id(&self) -> ::core::option::Option<::datastore::Id> {
                    ::core::option::Option::Some(self.#f)
                }

                fn set_parent_id(&mut self, parent: ::datastore::Id) {
                    self.#f = parent;
                }
            }

            impl ::datastore::relations::ForeignKey<#parent, #fk, #conn> for #ident {
                type ParentIds = #table::BoxedQuery<'static, #backend, ::datastore::sql_types::Uuid>;

                fn parent_is(id: ::datastore::Id) -> ::datastore::Predicate<Self, #conn> {
                    ::std::boxed::Box::new(diesel::ExpressionMethods::eq(#table::#f, id))
                }

                fn parent_in(ids: &[::datastore::Id]) -> ::datastore::Predicate<Self, #conn> {
                    ::std::boxed::Box::new(diesel::ExpressionMethods::eq_any(#table::#f, ids.to_vec()))
                }

                fn parent_where(predicate: ::datastore::Predicate<#parent, #conn>) -> ::datastore::Predicate<Self, #conn> {
                    ::std::boxed::Box::new(diesel::ExpressionMethods::eq_any(
                        #table::#f,
                        <#parent as ::datastore::Persist<#conn>>::ids_where(predicate),
                    ))
                }

                fn parent_ids_where(predicate: ::datastore::Predicate<Self, #conn>) -> Self::ParentIds {
                    diesel::QueryDsl::into_boxed(diesel::QueryDsl::filter(
                        diesel::QueryDsl::select(#table::table, #table::#f),
                        predicate,
                    ))
                }
            }

            impl #ident {
                #[doc = #getter_doc]
                pub fn #getter(&self, conn: &mut #conn) -> ::datastore::Result<#parent> {
                    <#parent as ::datastore::Persist<#conn>>::find(conn, &self.#f)?.ok_or_else(|| {
                        ::datastore::Error::NotFound {
                            table: <#parent as ::datastore::Model>::TABLE_NAME.into(),
                            key: ::std::string::ToString::to_string(&self.#f),
                        }
                    })
                }

                #[doc = #with_doc]
                pub fn #with(mut self, parent: &#parent) -> Self {
                    self.#f = *::datastore::Model::id(parent);
                    self
                }

                #[doc = #where_doc]
                pub fn #where_<__M>(
                    predicate: impl ::datastore::IntoPredicate<<#parent as ::datastore::Model>::Table, #backend, __M>,
                ) -> ::datastore::Predicate<Self, #conn> {
                    <Self as ::datastore::relations::ForeignKey<#parent, #fk, #conn>>::parent_where(
                        predicate.into_predicate(),
                    )
                }
            }
        });
    }
    for (_, parent, fields) in parents {
        let count = fields.len();
        let first = fields[0].column_name();
        out.extend(quote! {
            impl ::datastore::relations::ForeignKeysTo<#parent> for #ident {
                const COUNT: usize = #count;
                const FIRST: u64 = ::datastore::relations::fk_key(#first);
            }
        });
    }
    out
}

/// The parent's side: for each relation field, the lazy loader (`post.comments(conn)`), the
/// eager loader (`Post::load_comments(conn, &mut posts)`), the SQL filter
/// (`Post::having_comments(predicate)`), and for many-to-many `link_*`/`unlink_*`.
pub fn parent_side(model: &Model, backend: &Backend) -> TokenStream {
    let Backend { conn, backend } = backend;
    let ident = model.ident;
    let this: Path = syn::parse_quote!(#ident);
    let table = &model.table;
    let key = model.primary_key().ident;
    let mut out = TokenStream::new();
    for (field, relation) in model.relations() {
        let f = field.ident;
        let name = f.to_string();
        let target = &relation.target;
        let load = format_ident!("load_{}", name);
        let having = format_ident!("having_{}", name);
        let load_doc = format!(
            "Loads `{name}` of every row given, with one query per relation level whatever their number."
        );
        let lazy_doc = format!("The `{name}` of this row (loaded now, not cached in the field).");
        let having_doc = format!(
            "A predicate on this model's table: the rows with `{name}` matching `predicate`, as a SQL subquery."
        );
        match relation.kind {
            RelationKind::HasMany | RelationKind::HasOne => {
                let fk = fk_key(target, &this, relation.foreign_key.as_ref());
                if relation.foreign_key.is_none() {
                    out.extend(assert_unambiguous(target, &this, field, relation.kind));
                }
                let (lazy_type, lazy_body, eager) = if relation.kind == RelationKind::HasMany {
                    (
                        quote!(::std::vec::Vec<#target>),
                        quote!(::datastore::relations::load::children::<Self, #target, { #fk }, #conn>(conn, &self.#key)),
                        quote!(::datastore::relations::load::eager_has_many::<Self, #target, { #fk }, #conn>),
                    )
                } else {
                    (
                        quote!(::core::option::Option<#target>),
                        quote!(::core::result::Result::Ok(
                            ::datastore::relations::load::children::<Self, #target, { #fk }, #conn>(conn, &self.#key)?
                                .into_iter()
                                .next()
                        )),
                        quote!(::datastore::relations::load::eager_has_one::<Self, #target, { #fk }, #conn>),
                    )
                };
                out.extend(quote! {
                    impl #ident {
                        #[doc = #lazy_doc]
                        pub fn #f(&self, conn: &mut #conn) -> ::datastore::Result<#lazy_type> {
                            #lazy_body
                        }

                        #[doc = #load_doc]
                        pub fn #load<'a>(
                            conn: &mut #conn,
                            rows: impl ::core::iter::IntoIterator<Item = &'a mut Self>,
                        ) -> ::datastore::Result<()> {
                            #eager(conn, rows, |row| &mut row.#f)
                        }

                        #[doc = #having_doc]
                        pub fn #having<__M>(
                            predicate: impl ::datastore::IntoPredicate<<#target as ::datastore::Model>::Table, #backend, __M>,
                        ) -> ::datastore::Predicate<Self, #conn> {
                            let parents = <#target as ::datastore::relations::ForeignKey<Self, { #fk }, #conn>>::parent_ids_where(
                                predicate.into_predicate(),
                            );
                            ::std::boxed::Box::new(diesel::ExpressionMethods::eq_any(#table::#key, parents))
                        }
                    }
                });
            }
            RelationKind::ManyToMany => {
                let through = relation.through.as_ref().expect("checked when parsed");
                let fk_this = fk_key(through, &this, None);
                let fk_target = fk_key(through, target, None);
                out.extend(assert_unambiguous(through, &this, field, relation.kind));
                out.extend(assert_unambiguous(through, target, field, relation.kind));
                let link = format_ident!("link_{}", name);
                let unlink = format_ident!("unlink_{}", name);
                let link_doc = format!(
                    "Links this row and `other` in `{name}`: the join row, saved unless one already links them."
                );
                let unlink_doc = format!(
                    "Unlinks this row and `other` in `{name}`: deletes their join rows; returns how many."
                );
                let args = quote!(Self, #through, #target, { #fk_this }, { #fk_target }, #conn);
                out.extend(quote! {
                    impl #ident {
                        #[doc = #lazy_doc]
                        pub fn #f(&self, conn: &mut #conn) -> ::datastore::Result<::std::vec::Vec<#target>> {
                            ::datastore::relations::load::linked::<#args>(conn, &self.#key)
                        }

                        #[doc = #load_doc]
                        pub fn #load<'a>(
                            conn: &mut #conn,
                            rows: impl ::core::iter::IntoIterator<Item = &'a mut Self>,
                        ) -> ::datastore::Result<()> {
                            ::datastore::relations::load::eager_many_to_many::<#args>(conn, rows, |row| &mut row.#f)
                        }

                        #[doc = #link_doc]
                        pub fn #link(&self, conn: &mut #conn, other: &#target) -> ::datastore::Result<#through> {
                            ::datastore::relations::load::link::<#args>(conn, &self.#key, ::datastore::Model::id(other))
                        }

                        #[doc = #unlink_doc]
                        pub fn #unlink(&self, conn: &mut #conn, other: &#target) -> ::datastore::Result<usize> {
                            ::datastore::relations::load::unlink::<#args>(conn, &self.#key, ::datastore::Model::id(other))
                        }

                        #[doc = #having_doc]
                        pub fn #having<__M>(
                            predicate: impl ::datastore::IntoPredicate<<#target as ::datastore::Model>::Table, #backend, __M>,
                        ) -> ::datastore::Predicate<Self, #conn> {
                            let links = <#through as ::datastore::relations::ForeignKey<#target, { #fk_target }, #conn>>::parent_where(
                                predicate.into_predicate(),
                            );
                            let parents = <#through as ::datastore::relations::ForeignKey<Self, { #fk_this }, #conn>>::parent_ids_where(links);
                            ::std::boxed::Box::new(diesel::ExpressionMethods::eq_any(#table::#key, parents))
                        }
                    }
                });
            }
        }
    }
    out
}
