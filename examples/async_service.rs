//! The store in a tokio service, as an axum application uses it: the `AsyncStore` is the
//! handlers' state, a transaction awaits other work while it is open, and a change feed is
//! consumed as a stream by a task of its own.
//!
//! `cargo run --example async_service --features async` (or with a `postgres://` URL as its
//! argument). The handlers are plain `async fn`s here; in axum each takes
//! `State(store): State<AsyncStore>` and its request's extractors, and runs unchanged.

#[path = "blog/models.rs"]
#[allow(dead_code)]
mod models;

use std::time::Duration;

use datastore::observe::Observed;
use datastore::prelude::*;
use futures_util::StreamExt;

use models::{Comment, Post};

/// A handler's error (axum: `impl IntoResponse for ApiError`, mapping `NotFound` to 404).
#[derive(Debug)]
pub struct ApiError(pub datastore::Error);

impl From<datastore::Error> for ApiError {
    fn from(error: datastore::Error) -> Self {
        Self(error)
    }
}

/// `POST /posts` (axum: `State(store): State<AsyncStore>, Json(title): Json<String>`).
pub async fn create_post(store: AsyncStore, title: String) -> Result<Post, ApiError> {
    Ok(store
        .save(Post {
            title,
            ..Post::default()
        })
        .await?)
}

/// `GET /posts/{id}`: the post with its comments.
pub async fn get_post(store: AsyncStore, id: Id) -> Result<Post, ApiError> {
    let post = store.get::<Post>(&id).await?;
    let mut loaded = Post::load_comments_async(&store, vec![post]).await?;
    Ok(loaded.remove(0))
}

/// `POST /posts/{id}/comments`: checks the text elsewhere (an HTTP call, say) while the
/// transaction is open; a refusal, an error or a client gone (the future dropped) leaves
/// nothing written.
pub async fn comment_on(store: AsyncStore, id: Id, text: String) -> Result<Comment, ApiError> {
    Ok(store
        .transaction(|tx| async move {
            let post = tx.get::<Post>(&id).await?;
            if !moderate(&text).await {
                return Err(datastore::Error::Unsupported(
                    "refused by moderation".into(),
                ));
            }
            let comment = Comment {
                content: Some(text),
                ..Comment::default()
            };
            tx.save(comment.with_post(&post)).await
        })
        .await?)
}

/// Stands for a call to another service.
async fn moderate(text: &str) -> bool {
    tokio::time::sleep(Duration::from_millis(5)).await;
    !text.contains("spam")
}

#[tokio::main]
async fn main() -> Result<(), ApiError> {
    let url = std::env::args().nth(1).unwrap_or_else(|| ":memory:".into());
    let store = AsyncStore::open(url, datastore::embed_migrations!()).await?;

    // A consumer of the change feed, on a task of its own: reading it never blocks a thread.
    let mut comments = store.observe::<Comment>().await?;
    let consumer = tokio::spawn(async move {
        let mut seen = 0;
        while let Some(observed) = comments.next().await {
            match observed {
                Observed::Change(change) => {
                    println!("{:?} comment {:?}", change.op, change.element.content);
                    seen += 1;
                    if seen == 2 {
                        break;
                    }
                }
                Observed::Missed(n) => println!("fell behind: missed {n} changes"),
                Observed::FeedLost { reason } => println!("feed lost: {reason}"),
                _ => {}
            }
        }
    });

    // Handlers run on tasks, as a server runs them (`tokio::spawn` needs `Send` futures).
    let post = tokio::spawn(create_post(store.clone(), "Hello, async".into()))
        .await
        .unwrap()?;
    for text in ["first!", "buy spam", "nice post"] {
        let result = tokio::spawn(comment_on(store.clone(), post.id, text.into()))
            .await
            .unwrap();
        println!(
            "comment {text:?}: {}",
            if result.is_ok() { "saved" } else { "refused" }
        );
    }
    let post = tokio::spawn(get_post(store.clone(), post.id))
        .await
        .unwrap()?;
    println!(
        "{:?} has {} comments",
        post.title,
        post.comments.get().map_or(0, <[Comment]>::len)
    );
    consumer.await.unwrap();
    Ok(())
}
