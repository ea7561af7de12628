//! Attribute arguments, and slots that know when they were given twice.

use proc_macro2::Span;
use syn::meta::ParseNestedMeta;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Attribute, Ident, LitStr, Path, Token};

use crate::ctxt::Ctxt;

/// One attribute value that may be set at most once.
pub struct Slot<T> {
    name: &'static str,
    value: Option<(T, Span)>,
}

impl<T> Slot<T> {
    pub fn new(name: &'static str) -> Self {
        Self { name, value: None }
    }

    /// Sets the value; a second time is an error at the second occurrence.
    pub fn set(&mut self, cx: &Ctxt, span: Span, value: T) {
        if self.value.is_some() {
            cx.push(syn::Error::new(
                span,
                format!("duplicate attribute `{}`: give it once", self.name),
            ));
        } else {
            self.value = Some((value, span));
        }
    }

    pub fn get(self) -> Option<T> {
        self.value.map(|(v, _)| v)
    }

    pub fn span(&self) -> Option<Span> {
        self.value.as_ref().map(|(_, s)| *s)
    }

    pub fn is_set(&self) -> bool {
        self.value.is_some()
    }
}

/// `key = value` after the leading path of a relation attribute.
pub struct KeyValue {
    pub key: Ident,
    pub value: syn::Expr,
}

impl Parse for KeyValue {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let key = input.parse()?;
        input.parse::<Token![=]>()?;
        Ok(Self {
            key,
            value: input.parse()?,
        })
    }
}

/// The arguments of `#[has_many(Target, key = value, ..)]` and its siblings.
pub struct RelationArgs {
    pub target: syn::Path,
    pub options: Vec<KeyValue>,
}

impl Parse for RelationArgs {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let target = input.parse()?;
        let mut options = Vec::new();
        if input.parse::<Option<Token![,]>>()?.is_some() {
            options = Punctuated::<KeyValue, Token![,]>::parse_terminated(input)?
                .into_iter()
                .collect();
        }
        Ok(Self { target, options })
    }
}

/// The identifier an expression names (`post_id` in `foreign_key = post_id`).
pub fn expr_ident(expr: &syn::Expr) -> Option<Ident> {
    match expr {
        syn::Expr::Path(p) => p.path.get_ident().cloned(),
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s),
            ..
        }) => s.parse().ok(),
        _ => None,
    }
}

/// The path an expression names (`PostEditor` in `through = PostEditor`).
pub fn expr_path(expr: &syn::Expr) -> Option<syn::Path> {
    match expr {
        syn::Expr::Path(p) if p.qself.is_none() => Some(p.path.clone()),
        _ => None,
    }
}

/// Whether an attribute is one of ours on a field.
pub fn attr_name(attr: &Attribute) -> Option<String> {
    attr.path().get_ident().map(Ident::to_string)
}

/// The value of `crate = ..` in `#[model(..)]` or `#[db_enum(..)]` (`form` shows it): the path
/// generated code reaches datastore by, as a path (`crate = my_db::datastore`) or a string
/// holding one (`crate = "my_db::datastore"`, as serde's `#[serde(crate = "..")]` is written).
/// A module path: no generic arguments.
pub fn crate_path(meta: &ParseNestedMeta, form: &str) -> syn::Result<Path> {
    let expected = |span: Span| {
        syn::Error::new(
            span,
            format!("expected the path of the datastore crate, as it is named here: {form}"),
        )
    };
    let value = meta.value()?;
    if value.peek(LitStr) {
        let lit: LitStr = value.parse()?;
        // The path's tokens are spanned at the literal.
        return lit
            .parse_with(Path::parse_mod_style)
            .map_err(|_| expected(lit.span()));
    }
    let path = Path::parse_mod_style(value).map_err(|e| expected(e.span()))?;
    if !(value.is_empty() || value.peek(Token![,])) {
        return Err(expected(value.span()));
    }
    Ok(path)
}
