//! Says, in the test output, whether the PostgreSQL suite runs (a test target without the
//! libtest harness, so that its line is printed and not captured).

fn main() {
    match std::env::var("DATASTORE_POSTGRES_URL") {
        Ok(url) => println!("PostgreSQL suite: running against {url}"),
        Err(_) => println!(
            "PostgreSQL suite: NOT RUN; set DATASTORE_POSTGRES_URL (for example \
             postgres://root@127.0.0.1:5432/test) to run it, as .ci/run does"
        ),
    }
}
