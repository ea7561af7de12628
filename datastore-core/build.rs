//! Tells the crate whether the bundled SQLite is compiled with the pre-update hook: that is
//! the case when the final build sets `LIBSQLITE3_FLAGS=-DSQLITE_ENABLE_PREUPDATE_HOOK`, which
//! libsqlite3-sys compiles SQLite with. Without it, referencing the hook would fail to link.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(datastore_preupdate_hook)");
    println!("cargo::rerun-if-env-changed=LIBSQLITE3_FLAGS");
    let flags = std::env::var("LIBSQLITE3_FLAGS").unwrap_or_default();
    if flags
        .split_whitespace()
        .any(|f| f == "-DSQLITE_ENABLE_PREUPDATE_HOOK")
    {
        println!("cargo::rustc-cfg=datastore_preupdate_hook");
    }
}
