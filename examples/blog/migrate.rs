//! The blog's `migrate` command line: `cargo run --example migrate --features cli -- --help`.

#[allow(dead_code)]
mod models;

fn main() -> std::process::ExitCode {
    datastore::migrate::Cli::new(models::schema()).run()
}
