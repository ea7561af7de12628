//! `#[derive(DbEnum)]` input: a fieldless enum and the names its variants are stored as.

use proc_macro2::TokenStream;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Ident, LitStr};

use super::attr::{crate_path, Slot};
use crate::ctxt::Ctxt;

pub struct DbEnum<'a> {
    pub ident: &'a Ident,
    /// Each variant with its stored name.
    pub variants: Vec<(&'a Ident, String)>,
    /// `#[db_enum(crate = ..)]` on the enum: the path generated code reaches datastore by,
    /// where the crate deriving names it otherwise; `None` for `::datastore`.
    pub krate: Option<syn::Path>,
}

impl<'a> DbEnum<'a> {
    pub fn from_ast(input: &'a DeriveInput) -> Result<Self, TokenStream> {
        let cx = Ctxt::new();
        let mut variants = Vec::new();
        // The enum's own takes the crate's path alone: an option of the variants', or any
        // other, is refused rather than ignored.
        let mut krate: Slot<syn::Path> = Slot::new("crate");
        for attr in input.attrs.iter().filter(|a| a.path().is_ident("db_enum")) {
            let result = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("crate") {
                    let path = crate_path(&meta, "`#[db_enum(crate = my_db::datastore)]`")?;
                    krate.set(&cx, meta.path.span(), path);
                    Ok(())
                } else {
                    Err(meta.error(
                        "on the enum, `#[db_enum(..)]` takes only `crate = my_db::datastore`: \
                         each variant is stored as its name as written, or as the one it gives \
                         with `#[db_enum(rename = \"name\")]` on the variant",
                    ))
                }
            });
            if let Err(e) = result {
                cx.push(e);
            }
        }
        match &input.data {
            Data::Enum(data) if !data.variants.is_empty() => {
                for variant in &data.variants {
                    if !matches!(variant.fields, Fields::Unit) {
                        cx.error_spanned_by(&variant.fields, "a `DbEnum` variant carries no data: it is stored as its name");
                    }
                    let mut rename: Slot<LitStr> = Slot::new("rename");
                    for attr in variant.attrs.iter().filter(|a| a.path().is_ident("db_enum")) {
                        let result = attr.parse_nested_meta(|meta| {
                            if meta.path.is_ident("rename") {
                                rename.set(&cx, meta.path.get_ident().unwrap().span(), meta.value()?.parse()?);
                                Ok(())
                            } else if meta.path.is_ident("crate") {
                                Err(meta.error("`#[db_enum(crate = ..)]` goes on the enum, not on a variant"))
                            } else {
                                Err(meta.error("unknown db_enum attribute: expected `#[db_enum(rename = \"name\")]`"))
                            }
                        });
                        if let Err(e) = result {
                            cx.push(e);
                        }
                    }
                    let name = rename.get().map_or_else(|| variant.ident.to_string(), |l| l.value());
                    if variants.iter().any(|(_, n)| *n == name) {
                        cx.error_spanned_by(&variant.ident, format!("two variants are stored as {name:?}"));
                    }
                    variants.push((&variant.ident, name));
                }
            }
            _ => cx.error_spanned_by(
                &input.ident,
                "`#[derive(DbEnum)]` needs an enum of unit variants: `enum Status { Active, Inactive }`",
            ),
        }
        if !input.generics.params.is_empty() {
            cx.error_spanned_by(&input.generics, "a `DbEnum` cannot be generic");
        }
        cx.check()?;
        Ok(Self {
            ident: &input.ident,
            variants,
            krate: krate.get(),
        })
    }
}
