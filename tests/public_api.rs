//! The public API, pinned: every public item of `datastore-core` (what applications reach
//! through `datastore`) and of the facade, with its signature, as `tests/snapshots/` holds it.
//! A change to the API shows in review as a diff there; accept one with
//! `INSTA_UPDATE=always cargo test --test public_api` (or `cargo insta review`).
//!
//! The listing is read from rustdoc's JSON output, which the stable toolchain writes when told
//! that unstable options are allowed (`RUSTC_BOOTSTRAP=1`, for this one command only). Items
//! hidden from the documentation (`__private`, what generated code goes through) are not part
//! of it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// rustdoc's JSON for `package`'s library, in a target directory of its own (so that the
/// build running this test is not waited for).
fn rustdoc_json(package: &str) -> PathBuf {
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
