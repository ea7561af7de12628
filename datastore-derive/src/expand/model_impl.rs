//! `impl Model`: the model's declaration as a `static` (columns, keys, `belongs_to` fields and
//! relations, related models referred to by type), and the access to its fields.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use crate::parse::{KeyKind, Model, OnDelete, RelationKind, TimestampRole};

pub fn model_impl(model: &Model) -> TokenStream {
    let private = model.private();
    let ident = model.ident;
    let name = ident.to_string();
    let table = &model.table;
    let table_name = table.to_string();
    let key_fields = model.key_fields();
    let key_names: Vec<String> = key_fields.iter().map(|f| f.column_name()).collect();
    let key_type = super::key::key_type(model);
    let key_value = super::key::key_value(model, &quote!(self));
    let (_, key_order_type) = super::key::key_order(model);
    let key_kind = match model.key.kind {
        KeyKind::Uuid => quote!(Uuid),
        KeyKind::Assigned => quote!(Assigned),
        KeyKind::Natural => quote!(Natural),
    };
    // The key the database assigns: its field.
    let assigned = (model.key.kind == KeyKind::Assigned).then(|| key_fields[0].ident);
    let has_unassigned_key = match assigned {
        Some(f) => quote!(#private::KeyColumn::is_unassigned(&self.#f)),
        None => quote!(false),
    };
    let assign_key = match assigned {
        Some(f) => quote!(self.#f = key;),
        None => quote!(let _ = key;),
    };

    let columns = model.columns().map(|(field, column)| {
        let ty = field.ty;
        let column_name = field.column_name();
        let unique = column.unique;
        let generated = assigned == Some(field.ident);
        let default = match &column.default {
            Some(default) => {
                let value = super::defaults::value(private, default);
                quote!(::core::option::Option::Some(#value))
            }
            None => quote!(::core::option::Option::None),
        };
        let private = private.at(ty.span());
        quote_spanned! {ty.span()=>
            #private::schema::Column {
                name: #private::Cow::Borrowed(#column_name),
                ty: <#ty as #private::FieldType>::COLUMN,
                nullable: <#ty as #private::FieldType>::NULLABLE,
                unique: #unique,
                generated: #generated,
                default: #default,
            }
        }
    });

    let belongs_to: Vec<_> = model
        .columns()
        .filter_map(|(field, column)| Some((field, column.belongs_to.as_ref()?)))
        .collect();
    let belongs_to_decls = belongs_to.iter().map(|(field, belongs_to)| {
        let column_name = field.column_name();
        let parent = &belongs_to.parent;
        let optional = belongs_to.optional;
        let on_delete = match belongs_to.on_delete {
            None => quote!(::core::option::Option::None),
            Some(action) => {
                let action = match action {
                    OnDelete::Cascade => quote!(Cascade),
                    OnDelete::Restrict => quote!(Restrict),
                    OnDelete::SetNull => quote!(SetNull),
                };
                quote!(::core::option::Option::Some(#private::schema::OnDelete::#action))
            }
        };
        let private = private.at(parent.span());
        quote_spanned! {parent.span()=>
            #private::schema::BelongsToField {
                column: #column_name,
                parent: #private::schema::ModelRef::of::<#parent>(),
                on_delete: #on_delete,
                optional: #optional,
            }
        }
    });
    let foreign_keys = belongs_to
        .iter()
        .enumerate()
        .map(|(i, (field, belongs_to))| {
            let f = field.ident;
            if belongs_to.optional {
                quote!(#i => self.#f.as_ref().map(|key| key as &dyn #private::KeyValue),)
            } else {
                quote!(#i => ::core::option::Option::Some(&self.#f as &dyn #private::KeyValue),)
            }
        });

    let indexes = model.columns().filter(|(_, c)| c.index).map(|(field, _)| {
        let column = field.column_name();
        let index = format!("idx_{table_name}_{column}");
        quote! {
            #private::schema::Index {
                name: #private::Cow::Borrowed(#index),
                columns: #private::Cow::Borrowed(&[#private::Cow::Borrowed(#column)]),
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
        let target = &relation.target;
        let through = match &relation.through {
            Some(t) => {
                quote!(::core::option::Option::Some(#private::schema::ModelRef::of::<#t>()))
            }
            None => quote!(::core::option::Option::None),
        };
        let column = |named: &Option<syn::Ident>| match named {
            Some(fk) => {
                let fk = syn::ext::IdentExt::unraw(fk).to_string();
                quote!(::core::option::Option::Some(#fk))
            }
            None => quote!(::core::option::Option::None),
        };
        let (foreign_key, other_key) = (column(&relation.foreign_key), column(&relation.other_key));
        quote! {
            #private::schema::Relation {
                field: #field_name,
                kind: #private::schema::RelationKind::#kind,
                target: #private::schema::ModelRef::of::<#target>(),
                through: #through,
                foreign_key: #foreign_key,
                other_key: #other_key,
            }
        }
    });

    let timestamp = |role| match model.timestamp(role).map(|f| f.column_name()) {
        Some(name) => quote!(::core::option::Option::Some(#name)),
        None => quote!(::core::option::Option::None),
    };
    let (created_at, updated_at) = (
        timestamp(TimestampRole::Created),
        timestamp(TimestampRole::Updated),
    );
    let stamped = [TimestampRole::Created, TimestampRole::Updated]
        .into_iter()
        .filter_map(|role| model.timestamp(role))
        .map(|f| {
            let f = f.ident;
            quote!(self.#f = now;)
        });

    // Each relation field `other` loaded that this row did not (taken, not moved out: a model
    // may implement `Drop`).
    let relation_fields: Vec<_> = model.relations().map(|(field, _)| field.ident).collect();
    let fill_loaded = if relation_fields.is_empty() {
        quote!()
    } else {
        quote! {
            fn fill_loaded(&mut self, mut other: Self) {
                #(self.#relation_fields.fill_from(::core::mem::take(&mut other.#relation_fields));)*
            }
        }
    };
    // Each column read into a local of its own, named by its place (`__column0`): a local
    // named like the field would shadow the generated code's own (a field `values`).
    let column_local = |i: usize| quote::format_ident!("__column{}", i);
    let raw_columns = model.columns().enumerate().map(|(i, (field, _))| {
        let (local, ty) = (column_local(i), field.ty);
        let name = field.column_name();
        quote! {
            let #local = <#ty as #private::FieldType>::from_raw(
                __values.next().unwrap_or(#private::RawValueRef::Null),
            )
            .map_err(|e| ::std::format!("{}.{}: {}", #table_name, #name, e))?;
        }
    });
    let mut column = 0;
    let raw_fields = model.fields.iter().map(|field| {
        let f = field.ident;
        match field.kind {
            crate::parse::FieldKind::Column(_) => {
                let local = column_local(column);
                column += 1;
                quote!(#f: #local)
            }
            crate::parse::FieldKind::Relation(_) => quote!(#f: ::core::default::Default::default()),
        }
    });

    let defaults_fit = super::defaults::checks(model);
    let renamed_table = match &model.renamed_from {
        Some(name) => quote!(::core::option::Option::Some(#name)),
        None => quote!(::core::option::Option::None),
    };
    let renamed_columns = model.columns().filter_map(|(field, column)| {
        let name = field.column_name();
        let previous = column.renamed_from.as_ref()?.value();
        Some(quote!((#name, #previous)))
    });
    let renames = quote! {
        #private::schema::Renames {
            table: #renamed_table,
            columns: &[#(#renamed_columns),*],
        }
    };

    let query_doc = format!(
        " them ({}), as `all` and `query!` do.",
        private.doc_link("Selection", "Selection")
    );

    quote! {
        #defaults_fit
        static __COLUMNS: &[#private::schema::Column] = &[#(#columns),*];
        static __INDEXES: &[#private::schema::Index] = &[#(#indexes),*];
        static __BELONGS_TO: &[#private::schema::BelongsToField] = &[#(#belongs_to_decls),*];
        static __RELATIONS: &[#private::schema::Relation] = &[#(#relations),*];
        static __DECLARATION: #private::schema::ModelDeclaration = #private::schema::ModelDeclaration::new(
            #private::schema::ModelRef::of::<#ident>(),
            #name,
            #table_name,
            &[#(#key_names),*],
            #private::schema::KeyKind::#key_kind,
            __COLUMNS,
            __INDEXES,
            #private::schema::Timestamps { created_at: #created_at, updated_at: #updated_at },
            __BELONGS_TO,
            __RELATIONS,
            #renames,
        );

        impl #private::Model for #ident {
            type Table = #table::table;
            const NAME: &'static str = #name;
            const TABLE_NAME: &'static str = #table_name;
            type Key = #key_type;

            fn declaration() -> &'static #private::schema::ModelDeclaration {
                &__DECLARATION
            }

            fn key(&self) -> Self::Key {
                #key_value
            }

            fn has_unassigned_key(&self) -> bool {
                #has_unassigned_key
            }

            fn assign_key(&mut self, key: Self::Key) {
                #assign_key
            }

            fn foreign_key(&self, i: usize) -> ::core::option::Option<&dyn #private::KeyValue> {
                match i {
                    #(#foreign_keys)*
                    _ => ::core::option::Option::None,
                }
            }

            #[allow(unused_variables)]
            fn touch(&mut self, now: #private::Timestamp) {
                #(#stamped)*
            }

            #fill_loaded

            fn from_raw_row<'a>(
                mut __values: impl ::core::iter::Iterator<Item = #private::RawValueRef<'a>>,
            ) -> ::core::result::Result<Self, ::std::string::String> {
                #(#raw_columns)*
                ::core::result::Result::Ok(Self { #(#raw_fields),* })
            }
        }

        impl #ident {
            /// Every row, in key order, as a Diesel query to refine (`filter`, `order`,
            /// `limit`, ..) and run on any connection: the model's columns as the store reads
            #[doc = #query_doc]
            pub fn query() -> diesel::dsl::Order<
                diesel::dsl::Select<#table::table, #private::Selection<Self>>,
                #key_order_type,
            > {
                <Self as #private::Ordered>::ordered()
            }
        }
    }
}
