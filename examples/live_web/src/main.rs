//! Serves the blog as a live web page: `cargo run -p datastore-live-web` on a SQLite file
//! (`live-web.db` in the system's temporary directory, or the path given), or
//! `cargo run -p datastore-live-web -- postgres://user@host/db` (or `DATABASE_URL=...`).
//! `PORT` chooses the port (8080 by default, 0 for any free one).

use std::net::{Ipv4Addr, SocketAddr};

fn main() -> std::io::Result<()> {
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .unwrap_or_else(|| {
            std::env::temp_dir()
                .join("live-web.db")
                .display()
                .to_string()
        });
    let port = match std::env::var("PORT") {
        Ok(port) => port
            .parse()
            .map_err(|e| std::io::Error::other(format!("PORT {port:?}: {e}")))?,
        Err(_) => 8080,
    };
    let running =
        datastore_live_web::Running::start(&url, SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
    // Not the URL itself on PostgreSQL, which may hold a password.
    let store = if url.starts_with("postgres") {
        "PostgreSQL"
    } else {
        url.as_str()
    };
    println!("serving the blog of {store} at {}", running.url());
    running.wait();
    Ok(())
}
