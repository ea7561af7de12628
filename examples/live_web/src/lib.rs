//! The blog as a live web page: posts with their comments and editors, a JSON API to save,
//! edit and delete them, and a stream of server-sent events fed by a live query over
//! relations, so that every open page follows every committed change without reloading.
//!
//! `cargo run -p datastore-live-web` serves it on an embedded SQLite file and prints its
//! address; `cargo run -p datastore-live-web -- postgres://..` (or `DATABASE_URL`) serves it
//! from a PostgreSQL database.
//!
//! | route | what it does |
//! | --- | --- |
//! | `GET /` | the page (`static/index.html`, `app.js`, `style.css`) |
//! | `GET /events` | server-sent events: `posts` (the whole view, as JSON, at once and after each change), `failed` (the view could not be read) |
//! | `GET /api/posts` | the posts with comments and editors, read now |
//! | `POST /api/posts`, `PUT /api/posts/{id}`, `DELETE /api/posts/{id}` | save, edit, delete a post (its comments go with it) |
//! | `POST /api/posts/{id}/comments`, `PUT /api/comments/{id}`, `DELETE /api/comments/{id}` | save, edit, delete a comment |
//! | `POST /api/posts/{id}/editors`, `DELETE /api/posts/{id}/editors/{user_id}` | link an editor (by username), unlink one |
//!
//! An error is a JSON body `{"error": <the store's message>, "kind": ..}` with a status that
//! says which: 404 not found, 409 a delete refused by editor links, 422 a request the store
//! refused, 500 anything else.

#[path = "../../blog/models.rs"]
#[allow(dead_code)]
pub mod models;

mod api;
mod feed;

use std::net::SocketAddr;

use datastore::prelude::*;

pub use api::router;
pub use feed::{Feed, View};

/// Opens the store at `url` (a SQLite file or `:memory:`, or a `postgres://` URL) and runs
/// the blog's migrations.
pub async fn open(url: &str) -> datastore::Result<AsyncStore> {
    AsyncStore::open(
        url,
        datastore::embed_migrations!(
            sqlite = "../../migrations/sqlite",
            postgres = "../../migrations/postgres"
        ),
    )
    .await
}

/// The page's server, running on a thread of its own with its own runtime: what the tests
/// and `main` start. Dropping it stops the server.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Opens the store at `url` and serves the page on `addr` (port 0 for any free port).
    pub fn start(url: &str, addr: SocketAddr) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let url = url.to_owned();
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let started = async {
                    let store = open(&url).await.map_err(std::io::Error::other)?;
                    let listener = tokio::net::TcpListener::bind(addr).await?;
                    let addr = listener.local_addr()?;
                    let feed = Feed::start(store.clone(), sqlite_file(&store));
                    Ok::<_, std::io::Error>((listener, addr, router(store, feed.view())))
                };
                let (listener, app) = match started.await {
                    Ok((listener, addr, app)) => {
                        let _ = ready_tx.send(Ok(addr));
                        (listener, app)
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                tokio::select! {
                    served = axum::serve(listener, app) => {
                        if let Err(e) = served {
                            eprintln!("the server stopped: {e}");
                        }
                    }
                    _ = stopped => {}
                }
            });
            // The event streams never end by themselves: leave them to the runtime's end.
            runtime.shutdown_background();
        });
        let addr = ready_rx
            .recv()
            .map_err(|_| std::io::Error::other("the server's thread ended before it listened"))??;
        Ok(Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The page's address, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves until the process is stopped.
    pub fn wait(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The SQLite file the store works on, whose other writers (other processes) the feed
/// watches for; `None` on PostgreSQL, whose change feed sees every writer, and in memory.
pub fn sqlite_file(store: &AsyncStore) -> Option<String> {
    let url = store.url();
    (store.dialect() == Dialect::Sqlite
        && !url.contains(":memory:")
        && !url.contains("mode=memory"))
    .then(|| url.to_owned())
}
