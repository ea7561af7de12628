//! The page, its JSON API and its event stream.

use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use datastore::prelude::*;
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::watch;

use crate::feed::View;
use crate::models::{posts, users, Comment, Post, User};

/// The handlers' state: the store, and the live view the event streams send.
#[derive(Clone)]
struct App {
    store: AsyncStore,
    view: watch::Receiver<View>,
}

/// The page's routes (see the [crate] documentation) over `store`, with event streams fed by
/// `view` ([`Feed::view`](crate::Feed::view)).
pub fn router(store: AsyncStore, view: watch::Receiver<View>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/app.js", get(script))
        .route("/style.css", get(style))
        .route("/events", get(events))
        .route("/api/posts", get(list_posts).post(create_post))
        .route("/api/posts/{id}", put(edit_post).delete(delete_post))
        .route("/api/posts/{id}/comments", post(create_comment))
        .route(
            "/api/comments/{id}",
            put(edit_comment).delete(delete_comment),
        )
        .route("/api/posts/{id}/editors", post(link_editor))
        .route("/api/posts/{id}/editors/{user_id}", delete(unlink_editor))
        .with_state(App { store, view })
}

async fn page() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("../static/index.html"),
    )
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../static/app.js"),
    )
}

async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../static/style.css"),
    )
}

/// `GET /events`: the view now (once first read), then each new one, as `posts` events
/// (`id` the view's version); `failed` when the live query failed. A slow reader skips to
/// the latest view.
async fn events(State(app): State<App>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut view = app.view;
    view.mark_changed();
    let stream = futures_util::stream::unfold(view, |mut view| async move {
        let current = loop {
            view.changed().await.ok()?;
            let current = view.borrow_and_update().clone();
            if current.version > 0 {
                break current;
            }
        };
        let event = match &current.failure {
            Some(message) => Event::default().event("failed").data(&**message),
            None => Event::default().event("posts").data(&*current.posts),
        }
        .id(current.version.to_string());
        Some((Ok(event), view))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// An error as the API answers it: the store's message, and a status that says what kind.
#[derive(Debug)]
pub struct ApiError(pub datastore::Error);

impl From<datastore::Error> for ApiError {
    fn from(error: datastore::Error) -> Self {
        Self(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        use datastore::Error as E;
        let (status, kind) = match &self.0 {
            E::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            E::DeleteRestricted { .. } => (StatusCode::CONFLICT, "delete_restricted"),
            E::Constraint(_) => (StatusCode::UNPROCESSABLE_ENTITY, "constraint"),
            E::Busy { .. } | E::Conflict { .. } => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let body = serde_json::json!({ "error": self.0.to_string(), "kind": kind });
        (status, Json(body)).into_response()
    }
}

type Answer<T> = Result<Json<T>, ApiError>;

/// `GET /api/posts`: what the page shows, read now.
async fn list_posts(State(app): State<App>) -> Answer<Vec<Post>> {
    let posts = app
        .store
        .query::<Post>(|q| q.order((posts::created_at.desc(), posts::id.desc())))
        .await?;
    let posts = Post::load_comments_async(&app.store, posts).await?;
    let posts = Post::load_editors_async(&app.store, posts).await?;
    Ok(Json(posts))
}

/// A post as the page sends it.
#[derive(Debug, Deserialize)]
struct PostInput {
    title: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    rating: i32,
}

async fn create_post(
    State(app): State<App>,
    Json(input): Json<PostInput>,
) -> Result<(StatusCode, Json<Post>), ApiError> {
    let now = Timestamp::now();
    let post = app
        .store
        .save(Post {
            title: input.title,
            body: input.body,
            rating: input.rating,
            created_at: now,
            updated_at: now,
            ..Post::default()
        })
        .await?;
    Ok((StatusCode::CREATED, Json(post)))
}

async fn edit_post(
    State(app): State<App>,
    Path(id): Path<Id>,
    Json(input): Json<PostInput>,
) -> Answer<Post> {
    let post = app
        .store
        .transaction(|tx| async move {
            let post = tx.get::<Post>(&id).await?;
            tx.save(Post {
                title: input.title,
                body: input.body,
                rating: input.rating,
                updated_at: Timestamp::now(),
                ..post
            })
            .await
        })
        .await?;
    Ok(Json(post))
}

/// Deletes the post and, by the foreign key's cascade, its comments; refused (409) while
/// editors are linked to it.
async fn delete_post(State(app): State<App>, Path(id): Path<Id>) -> Result<StatusCode, ApiError> {
    app.store.delete_by_id::<Post>(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A comment as the page sends it.
#[derive(Debug, Deserialize)]
struct CommentInput {
    content: String,
}

async fn create_comment(
    State(app): State<App>,
    Path(post_id): Path<Id>,
    Json(input): Json<CommentInput>,
) -> Result<(StatusCode, Json<Comment>), ApiError> {
    let comment = app
        .store
        .transaction(|tx| async move {
            let post = tx.get::<Post>(&post_id).await?;
            let comment = Comment {
                content: Some(input.content),
                created_at: Timestamp::now(),
                ..Comment::default()
            };
            tx.save(comment.with_post(&post)).await
        })
        .await?;
    Ok((StatusCode::CREATED, Json(comment)))
}

async fn edit_comment(
    State(app): State<App>,
    Path(id): Path<Id>,
    Json(input): Json<CommentInput>,
) -> Answer<Comment> {
    let comment = app
        .store
        .transaction(|tx| async move {
            let comment = tx.get::<Comment>(&id).await?;
            tx.save(Comment {
                content: Some(input.content),
                ..comment
            })
            .await
        })
        .await?;
    Ok(Json(comment))
}

async fn delete_comment(
    State(app): State<App>,
    Path(id): Path<Id>,
) -> Result<StatusCode, ApiError> {
    app.store.delete_by_id::<Comment>(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An editor to link, by username (made if new).
#[derive(Debug, Deserialize)]
struct EditorInput {
    username: String,
}

async fn link_editor(
    State(app): State<App>,
    Path(post_id): Path<Id>,
    Json(input): Json<EditorInput>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let user = app
        .store
        .transaction(|tx| async move {
            let post = tx.get::<Post>(&post_id).await?;
            let username = input.username;
            let found = tx
                .query::<User>({
                    let username = username.clone();
                    move |q| q.filter(users::username.eq(username))
                })
                .await?;
            let user = match found.into_iter().next() {
                Some(user) => user,
                None => {
                    tx.save(User {
                        username,
                        ..User::default()
                    })
                    .await?
                }
            };
            post.link_editors_async(&tx, &user).await?;
            Ok(user)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(user)))
}

async fn unlink_editor(
    State(app): State<App>,
    Path((post_id, user_id)): Path<(Id, Id)>,
) -> Result<StatusCode, ApiError> {
    app.store
        .transaction(|tx| async move {
            let post = tx.get::<Post>(&post_id).await?;
            let user = tx.get::<User>(&user_id).await?;
            post.unlink_editors_async(&tx, &user).await
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
