//! `cargo run --example live_web [-- DATABASE]`: the blog as a live web page.
//!
//! The page itself is the package in `examples/live_web/` (axum and tokio are its
//! dependencies alone, so that the library and its tests never build them); this example
//! starts it with the same arguments, as `cargo run -p datastore-live-web -- DATABASE` does.

use std::process::{exit, Command};

fn main() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["run", "--quiet", "-p", "datastore-live-web", "--"])
        .args(std::env::args_os().skip(1))
        .status();
    match status {
        Ok(status) => exit(status.code().unwrap_or(1)),
        Err(error) => {
            eprintln!("could not run cargo to start examples/live_web: {error}");
            exit(1);
        }
    }
}
