//! The derives' expansion for the blog example's models, pinned by snapshots, so that a change
//! to generated code shows in review as a diff (see `Cargo.toml` for how to accept one).

use syn::{DeriveInput, Item};

use crate::{expand, parse};

/// The blog's models, as the example and the integration tests use them.
const BLOG: &str = include_str!("../../examples/blog/models.rs");

/// What `#[derive(..)]` lists on an item.
fn derives(attrs: &[syn::Attribute]) -> Vec<String> {
    let mut names = Vec::new();
    for attr in attrs.iter().filter(|a| a.path().is_ident("derive")) {
        attr.parse_nested_meta(|meta| {
            if let Some(name) = meta.path.get_ident() {
                names.push(name.to_string());
            }
            Ok(())
        })
        .unwrap();
    }
    names
}

/// The expansion as a reviewer reads it.
fn pretty(tokens: proc_macro2::TokenStream) -> String {
    let file: syn::File = syn::parse2(tokens).expect("the expansion parses as items");
    prettyplease::unparse(&file)
}

/// Each of the blog's models and enums with its expansion, under the crate path `krate`
/// (`#[model(crate = ..)]`, `#[db_enum(crate = ..)]`) if given.
fn blog_expanded(krate: Option<syn::Path>) -> Vec<(String, proc_macro2::TokenStream)> {
    let file = syn::parse_file(BLOG).unwrap();
    let mut expanded = Vec::new();
    for item in file.items {
        let (name, input) = match item {
            Item::Struct(s) => (s.ident.to_string(), DeriveInput::from(s)),
            Item::Enum(e) => (e.ident.to_string(), DeriveInput::from(e)),
            _ => continue,
        };
        let derives = derives(&input.attrs);
        let tokens = if derives.iter().any(|d| d == "Model") {
            let mut model = parse::Model::from_ast(&input)
                .unwrap_or_else(|_| panic!("{name}: the derive refuses it"));
            model.krate.clone_from(&krate);
            expand::model(&model)
        } else if derives.iter().any(|d| d == "DbEnum") {
            let mut db_enum = parse::DbEnum::from_ast(&input)
                .unwrap_or_else(|_| panic!("{name}: the derive refuses it"));
            db_enum.krate.clone_from(&krate);
            expand::db_enum(&db_enum)
        } else {
            continue;
        };
        expanded.push((name, tokens));
    }
    assert!(
        expanded.len() >= 7,
        "the blog's six models and its enum, found {}",
        expanded.len()
    );
    expanded
}

#[test]
fn the_blog_models_expand_as_pinned() {
    for (name, tokens) in blog_expanded(None) {
        insta::assert_snapshot!(name, pretty(tokens));
    }
}

/// Under `crate = dbx`, no path of the generated code goes through `::datastore`: the blog's
/// models take more of what the derive generates (one-to-one, a tree, optional parents,
/// unique columns) than the renamed crate's own models (`tests/renamed-models`) do.
#[test]
fn the_blog_models_under_another_crate_path_never_name_datastore() {
    for (name, tokens) in blog_expanded(Some(syn::parse_quote!(dbx))) {
        let code = pretty(tokens);
        assert!(!code.contains("datastore"), "{name}:\n{code}");
        assert!(code.contains("dbx::__private"), "{name}");
    }
}
