//! The public API, pinned: every public item of `datastore-core` (what applications reach
//! through `datastore`) and of the facade, with its signature, as `tests/snapshots/` holds it.
//! A change to the API shows in review as a diff there; accept one with
//! `INSTA_UPDATE=always cargo test --test public_api` (or `cargo insta review`).
//!
//! The listing is read from rustdoc's JSON output, which the stable toolchain writes when told
//! that unstable options are allowed (`RUSTC_BOOTSTRAP=1`, for this one command only). Items
//! hidden from the documentation (`__private`, what generated code goes through) are not part
//! of it. The same listing checks that every item a user meets shows how it is used.

use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// rustdoc's JSON for `package`'s library, written once for both tests.
fn rustdoc_json(package: &str) -> PathBuf {
    static WRITTEN: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let mut written = WRITTEN.get_or_init(Default::default).lock().unwrap();
    written
        .entry(package.to_owned())
        .or_insert_with(|| write_rustdoc_json(package))
        .clone()
}

/// Writes rustdoc's JSON for `package`'s library, in a target directory of its own (so that
/// the build running this test is not waited for).
fn write_rustdoc_json(package: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = root.join("target").join("public-api");
    let status = Command::new(env!("CARGO"))
        .current_dir(root)
        .args([
            "rustdoc",
            "--quiet",
            "--lib",
            "--all-features",
            "-p",
            package,
        ])
        .arg("--target-dir")
        .arg(&target)
        .args(["--", "-Z", "unstable-options", "--output-format", "json"])
        .env("RUSTC_BOOTSTRAP", "1")
        .status()
        .expect("cargo runs");
    assert!(status.success(), "rustdoc --output-format json failed");
    target
        .join("doc")
        .join(format!("{}.json", package.replace('-', "_")))
}

/// The public items of `package`, one per line, without the impls every type gets anyway
/// (auto traits, blanket impls, derives).
fn public_api(package: &str) -> String {
    public_api::Builder::from_rustdoc_json(rustdoc_json(package))
        .omit_auto_trait_impls(true)
        .omit_blanket_impls(true)
        .omit_auto_derived_impls(true)
        .build()
        .expect("rustdoc's JSON reads as a public API")
        .to_string()
}

#[test]
fn the_public_api_is_as_pinned() {
    insta::assert_snapshot!("datastore_core", public_api("datastore-core"));
    insta::assert_snapshot!("datastore", public_api("datastore"));
}

/// Items whose documentation has no example by design, each with the reason.
const WITHOUT_EXAMPLE: &[(&str, &str)] = &[
    // The runtime crate's front page sends readers to the facade's, where the examples are.
    (
        "datastore_core",
        "the facade's crate documentation is the place to start",
    ),
    // Written by Diesel's `MultiConnection` derive on the backend behind `AnyBackend`.
    (
        "datastore_core::AnyBackend::lookup_sql_type",
        "Diesel's generated code",
    ),
    (
        "datastore_core::AnyBackend::walk_variant_ast",
        "Diesel's generated code",
    ),
];

/// The public items of the crate behind `json` (rustdoc's JSON) that users meet, by path,
/// each with its documentation: modules, types, traits, functions, methods and associated
/// items, reached from the crate root as a user reaches them (re-exports under their public
/// name, with the re-export's documentation). Enum variants and fields are documented by
/// their type's examples, and impls of traits by the trait's; neither is listed. Items
/// hidden from the documentation are not in the JSON at all.
fn documented_items(json: &Value) -> Vec<(String, String)> {
    let index = json["index"].as_object().expect("an index");
    // What every re-export of an item says of it (the documentation rustdoc shows with it).
    let mut re_export_docs: HashMap<String, String> = HashMap::new();
    for item in index.values() {
        if let (Some(target), Some(docs)) = (item["inner"]["use"].get("id"), item["docs"].as_str())
        {
            let docs_of_target = re_export_docs.entry(target.to_string()).or_default();
            docs_of_target.push_str(docs);
        }
    }
    let mut walk = Walk {
        index,
        re_export_docs,
        seen: HashSet::new(),
        items: Vec::new(),
    };
    walk.visit(&json["root"], "", None);
    walk.items
}

/// A walk over rustdoc's JSON from the crate root, as [`documented_items`] describes.
struct Walk<'a> {
    index: &'a serde_json::Map<String, Value>,
    re_export_docs: HashMap<String, String>,
    seen: HashSet<String>,
    items: Vec<(String, String)>,
}

impl Walk<'_> {
    /// Lists the item `id` under `parent` (by `name`, for a re-export), and what it holds.
    fn visit(&mut self, id: &Value, parent: &str, name: Option<&str>) {
        let Some(item) = self.index.get(&id.to_string()) else {
            return; // another crate's item
        };
        if item["crate_id"] != 0 || !self.seen.insert(id.to_string()) {
            return;
        }
        let (kind, inner) = item["inner"]
            .as_object()
            .and_then(|inner| inner.iter().next())
            .expect("an item has one kind");
        let children = |key: &str| inner[key].as_array().cloned().unwrap_or_default();
        if kind == "use" {
            let target = self.index.get(&inner["id"].to_string());
            match target.and_then(|target| target["inner"]["module"]["items"].as_array()) {
                // A glob re-export of a module: its items, here.
                Some(items) if inner["is_glob"] == true => {
                    for child in items.clone() {
                        self.visit(&child, parent, None);
                    }
                }
                _ => self.visit(&inner["id"], parent, inner["name"].as_str()),
            }
            return;
        }
        let path = match name.or(item["name"].as_str()) {
            Some(name) if !parent.is_empty() => format!("{parent}::{name}"),
            Some(name) => name.to_owned(),
            None => parent.to_owned(),
        };
        match kind.as_str() {
            "module" | "trait" => {
                for child in children("items") {
                    self.visit(&child, &path, None);
                }
            }
            "struct" | "enum" | "union" => {
                for implementation in children("impls") {
                    let implementation = &self.index[&implementation.to_string()]["inner"]["impl"];
                    if !implementation["trait"].is_null()
                        || !implementation["blanket_impl"].is_null()
                    {
                        continue;
                    }
                    for child in implementation["items"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                    {
                        if self.index[&child.to_string()]["visibility"] == "public" {
                            self.visit(&child, &path, None);
                        }
                    }
                }
            }
            "variant" | "struct_field" | "impl" => return,
            _ => {}
        }
        let docs = format!(
            "{}\n{}",
            self.re_export_docs
                .get(&id.to_string())
                .map_or("", String::as_str),
            item["docs"].as_str().unwrap_or("")
        );
        self.items.push((path, docs));
    }
}

#[test]
fn every_public_item_shows_how_it_is_used() {
    for package in ["datastore-core", "datastore"] {
        let json = std::fs::read(rustdoc_json(package)).expect("rustdoc wrote its JSON");
        let json: Value = serde_json::from_slice(&json).expect("rustdoc's JSON is JSON");
        let items = documented_items(&json);
        assert!(
            items.len() > 100 || package == "datastore",
            "{package}: {} items",
            items.len()
        );
        let without: Vec<&str> = items
            .iter()
            .filter(|(path, docs)| {
                !docs.contains("```") && !WITHOUT_EXAMPLE.iter().any(|(known, _)| known == path)
            })
            .map(|(path, _)| path.as_str())
            .collect();
        assert!(
            without.is_empty(),
            "public items of {package} whose documentation has no example: {without:#?}"
        );
    }
}
