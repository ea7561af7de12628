//! How generated code names the runtime's hidden module: `::datastore::__private`, or the
//! same module under the path `#[model(crate = ..)]` or `#[db_enum(crate = ..)]` gave, for a
//! crate that depends on datastore under another name or reaches it through a re-export.

use proc_macro2::{Span, TokenStream};
use quote::{quote_spanned, ToTokens};
use syn::Path;

use crate::parse;

/// `::datastore::__private` (or `<crate>::__private`), written into generated code as `#private`.
#[derive(Clone, Copy)]
pub struct Private<'a> {
    /// The path given; `None` for `::datastore`.
    krate: Option<&'a Path>,
    span: Span,
}

impl<'a> Private<'a> {
    pub fn new(krate: Option<&'a Path>) -> Self {
        Self {
            krate,
            span: Span::call_site(),
        }
    }

    /// The same module, its tokens spanned at `span`: inside a `quote_spanned!`, so that an
    /// error the compiler reports at a bound points where the other tokens do. A given path
    /// keeps its own spans (its names resolve by them: `$crate` in a `macro_rules!`).
    pub fn at(self, span: Span) -> Self {
        Self { span, ..self }
    }

    /// A documentation link of generated code, shown as `text`, to the public item `item` of
    /// datastore (`observe::LiveQuery::load`) under the path the code writes; plain code text
    /// under `$crate`, which rustdoc cannot resolve in a link.
    pub fn doc_link(self, text: &str, item: &str) -> String {
        let krate = match self.krate {
            None => "::datastore".to_owned(),
            Some(path) if path.segments.first().is_some_and(|s| s.ident == "$crate") => {
                return format!("`{text}`");
            }
            Some(path) => path.to_token_stream().to_string().replace(' ', ""),
        };
        format!("[`{text}`]({krate}::{item})")
    }
}

impl parse::Model<'_> {
    /// The runtime's hidden module, as this model's generated code names it.
    pub fn private(&self) -> Private<'_> {
        Private::new(self.krate.as_ref())
    }
}

impl parse::DbEnum<'_> {
    /// The runtime's hidden module, as this enum's generated code names it.
    pub fn private(&self) -> Private<'_> {
        Private::new(self.krate.as_ref())
    }
}

impl ToTokens for Private<'_> {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        let span = self.span;
        tokens.extend(match self.krate {
            None => quote_spanned!(span=> ::datastore::__private),
            Some(krate) => quote_spanned!(span=> #krate::__private),
        });
    }
}
