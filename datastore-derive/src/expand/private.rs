//! How generated code names the runtime's hidden module: `::datastore::__private`, or the
//! same module under the path `#[model(crate = ..)]` or `#[db_enum(crate = ..)]` gave, for a
//! crate that depends on datastore under another name or reaches it through a re-export.

use proc_macro2::{Span, TokenStream};
use quote::{quote_spanned, ToTokens};
use syn::Path;

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

    /// The path of a public item of datastore (`observe::LiveQuery::load`) as a documentation
    /// link of generated code gives it.
    pub fn doc_link(self, item: &str) -> String {
        let krate = match self.krate {
            None => "::datastore".to_owned(),
            Some(path) => {
                let segments: Vec<String> =
                    path.segments.iter().map(|s| s.ident.to_string()).collect();
                let root = if path.leading_colon.is_some() {
                    "::"
                } else {
                    ""
                };
                format!("{root}{}", segments.join("::"))
            }
        };
        format!("{krate}::{item}")
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
