//! The names of the items `#[derive(Model)]` makes for a field (`post()`, `with_post()` and
//! `POST` for a `belongs_to` field `post_id`; `comments()`, `load_comments()` and `COMMENTS`
//! for a relation field `comments`), checked once with the fields: each can be written in
//! Rust, and no two fields make the same one.

use proc_macro2::Span;
use syn::Ident;

use super::model::{Field, FieldKind, RelationKind};
use crate::ctxt::Ctxt;

/// The items a model makes whatever its fields.
const MODEL_METHODS: [&str; 1] = ["query"];

/// Keywords that cannot be raw identifiers either (`r#self` is no identifier).
const NOT_EVEN_RAW: [&str; 4] = ["self", "super", "crate", "Self"];

/// An identifier for a generated item's name, raw (`r#match`) when the name is a keyword.
/// The name is one [`check`] accepted.
pub fn method_ident(name: &str, span: Span) -> Ident {
    match syn::parse_str::<Ident>(name) {
        Ok(_) => Ident::new(name, span),
        Err(_) => Ident::new_raw(name, span),
    }
}

/// Reports, at the field, each field whose items cannot be named, or are named like an item
/// the model or an earlier field makes.
pub fn check(cx: &Ctxt, model: &Ident, fields: &[Field]) {
    let mut made: Vec<(String, &Ident)> = Vec::new();
    for field in fields {
        let Some(stem) = field.method_stem() else {
            continue;
        };
        let shown = field.ident;
        let belongs_to = matches!(field.kind, FieldKind::Column(_));
        // A `belongs_to` field's getter is its name without `_id`: say so, since it is that
        // name, not the field's, that is at fault.
        let origin = if belongs_to {
            format!(
                "the `belongs_to` field `{shown}` makes a getter for its parent named like the field \
                 without `_id`"
            )
        } else {
            format!("the relation field `{shown}` makes a lazy loader named like the field")
        };
        if stem.is_empty() || stem == "_" || NOT_EVEN_RAW.contains(&stem.as_str()) {
            cx.error_spanned_by(
                shown,
                format!(
                    "{origin}: `{stem}()`, which Rust cannot name: rename the field \
                     (`parent_id`, say)"
                ),
            );
            continue;
        }
        if MODEL_METHODS.contains(&stem.as_str()) {
            cx.error_spanned_by(
                shown,
                format!(
                    "{origin}: `{stem}()`, but every model has `{model}::{stem}()` (its rows as a \
                     Diesel query): rename the field"
                ),
            );
            continue;
        }
        let names = generated_names(field, &stem, model);
        if let Some((name, other)) = names
            .iter()
            .find_map(|name| made.iter().find(|(n, _)| n == name))
        {
            cx.error_spanned_by(
                shown,
                format!(
                    "the field `{shown}` makes `{model}::{name}`, which the field `{other}` makes \
                     too: rename one of them"
                ),
            );
            continue;
        }
        made.extend(names.into_iter().map(|name| (name, shown)));
    }
}

/// What `expand::relations` calls the items it makes for the field (`stem` is
/// [`Field::method_stem`]).
fn generated_names(field: &Field, stem: &str, model: &Ident) -> Vec<String> {
    let mut names = vec![
        stem.to_owned(),
        format!("{stem}_async"),
        stem.to_uppercase(),
    ];
    match &field.kind {
        FieldKind::Column(_) => {
            names.extend([format!("with_{stem}"), format!("where_{stem}")]);
        }
        FieldKind::Relation(relation) => {
            names.extend([
                format!("load_{stem}"),
                format!("load_{stem}_async"),
                format!("having_{stem}"),
            ]);
            match relation.kind {
                RelationKind::ManyToMany => names.extend([
                    format!("link_{stem}"),
                    format!("unlink_{stem}"),
                    format!("link_{stem}_async"),
                    format!("unlink_{stem}_async"),
                ]),
                RelationKind::HasMany if relation.target.is_ident(model) => names.extend([
                    format!("load_{stem}_tree"),
                    format!("load_{stem}_tree_async"),
                ]),
                _ => {}
            }
        }
    }
    names
}
