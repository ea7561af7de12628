//! The store in async applications (feature `async`): [`AsyncStore`], its transactions
//! ([`AsyncTransaction`]) and its subscriptions as streams.
//!
//! Each call runs the blocking store's own code on tokio's blocking pool
//! (`spawn_blocking`), over the same r2d2 pool: a runtime worker thread never waits for
//! SQLite or PostgreSQL, and the async store behaves exactly as [`Store`](crate::Store) does
//! (the same SQL, errors and observe events). A call whose future is dropped still runs to its
//! end on the blocking pool, so a write is committed entirely or not at all, and is observed if
//! committed. An async transaction is one pooled connection held by one blocking thread for the
//! transaction's life, running the statements its handle sends, in order, so that the body can
//! `.await` anything between them.
//!
//! [`AsyncRepo`], the typed methods as `async fn`s over one `run`, is always compiled: the
//! relation methods `#[derive(Model)]` writes in async form (`post.comments_async(&store)`,
//! `Post::load_comments_async(&store, posts)`, `post.link_editors_async(&store, &user)`) call
//! it, whatever the features.
//!
//! ```
//! # use datastore::prelude::*;
//! # use datastore_doc_models::{Note, notes};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> datastore::Result<()> {
//! let store = AsyncStore::from(
//!     Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?,
//! );
//! let note = store.save(Note { text: "async".into(), ..Note::default() }).await?;
//! let stored = store
//!     .transaction(|tx| async move { tx.find::<Note>(&note.id).await })
//!     .await?;
//! assert_eq!(stored.map(|n| n.text).as_deref(), Some("async"));
//! # Ok(())
//! # }
//! ```

use std::future::Future;

#[cfg(doc)]
use crate::AnyConnection;
use crate::Result;
use crate::model::IntoPredicate;
use crate::persist::Persist;
use crate::relations::DeleteEffects;
use crate::repo::Repo;
use diesel::Connection;

#[cfg(feature = "async")]
mod store;
#[cfg(feature = "async")]
mod stream;
#[cfg(feature = "async")]
mod transaction;

#[cfg(feature = "async")]
pub use store::AsyncStore;
#[cfg(feature = "async")]
pub use stream::{AllChangeStream, ChangeStream, LiveStream, QueryStream};
#[cfg(feature = "async")]
pub use transaction::AsyncTransaction;

/// The typed model methods as `async fn`s, on whatever runs a blocking closure on a connection
/// without blocking the caller: an [`AsyncStore`] (a pooled connection, on tokio's blocking
/// pool) or an [`AsyncTransaction`] (the transaction's connection). Each method is
/// [`Repo`]'s, run through [`run`](AsyncRepo::run); see there for what each does.
///
/// In `datastore::prelude`. The arguments move into the call (`'static`), since it runs on
/// another thread.
///
/// ```
/// use datastore::prelude::*;
///
/// #[derive(Model, Debug, Clone, PartialEq, Default)]
/// pub struct Note {
///     #[primary_key]
///     pub id: Id,
///     pub text: String,
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> datastore::Result<()> {
/// let store = AsyncStore::builder(":memory:")
///     .schema(Schema::new().model::<Note>())
///     .open_async()
///     .await?;
/// let note = store.save(Note { text: "hi".into(), ..Note::default() }).await?;
/// assert_eq!(store.get::<Note>(&note.id).await?.text, "hi");
/// let long = store.query::<Note>(|q| q.filter(notes::text.like("h%"))).await?;
/// assert_eq!(long, vec![note.clone()]);
/// assert_eq!(store.count::<Note>().await?, 1);
/// store.delete_by_id::<Note>(&note.id).await?;
/// # Ok(())
/// # }
/// ```
pub trait AsyncRepo: Send + Sync {
    /// The connection [`run`](AsyncRepo::run) lends: [`AnyConnection`] for the store and its
    /// transactions, so that code written once runs on either.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use datastore::AnyConnection;
    ///
    /// /// The texts of the notes, through a store or inside one of its transactions.
    /// async fn texts<R: AsyncRepo<Conn = AnyConnection>>(repo: &R) -> datastore::Result<Vec<String>> {
    ///     repo.run(|conn: &mut AnyConnection| Ok(notes::table.select(notes::text).load(conn)?))
    ///         .await
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> datastore::Result<()> {
    /// # let store = AsyncStore::builder(":memory:").schema(Schema::new().model::<Note>()).open_async().await?;
    /// let seen_inside = store
    ///     .transaction(|tx| async move {
    ///         tx.save(Note { text: "draft".into(), ..Note::default() }).await?;
    ///         texts(&tx).await
    ///     })
    ///     .await?;
    /// assert_eq!(seen_inside, ["draft"]);
    /// assert_eq!(texts(&store).await?, ["draft"]);
    /// # Ok(())
    /// # }
    /// ```
    type Conn: Repo + 'static;

    /// Runs `f` on a connection (the transaction's, on a transaction) on a blocking thread,
    /// and returns what it returns: Diesel's DSL, [`Repo`] and the generated relation methods
    /// all work inside. If `f` panics, the panic resumes in the caller (in a transaction, once
    /// the caller dropped this future: from the transaction's future, which rolls back).
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> datastore::Result<()> {
    /// # let store = AsyncStore::builder(":memory:").schema(Schema::new().model::<Note>()).open_async().await?;
    /// let texts: Vec<String> = store
    ///     .run(|conn| Ok(notes::table.select(notes::text).load(conn)?))
    ///     .await?;
    /// assert!(texts.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    fn run<T, F>(&self, f: F) -> impl Future<Output = Result<T>> + Send
    where
        T: Send + 'static,
        F: FnOnce(&mut Self::Conn) -> Result<T> + Send + 'static;

    /// [`run`](AsyncRepo::run) for the provided methods below but the reads, which run only
    /// the store's statements, or one prepared statement the caller built (`query`,
    /// `delete_where`), none of which can be a `BEGIN`: a closure given to `run` may begin a
    /// transaction with SQL of its own and leave it open, which the store ends as the
    /// connection goes back (on PostgreSQL it reads the text of the closure's queries for it:
    /// see [`Store::conn`](crate::Store::conn)); these cannot. Called by the provided
    /// methods; not part of the API.
    #[doc(hidden)]
    fn run_own<T, F>(&self, f: F) -> impl Future<Output = Result<T>> + Send
    where
        T: Send + 'static,
        F: FnOnce(&mut Self::Conn) -> Result<T> + Send + 'static,
    {
        self.run(f)
    }

    /// [`run`](AsyncRepo::run) for one of the reads above, which change nothing: the store
    /// runs it again on another connection where the blocking store does (after PostgreSQL
    /// refused a prepared statement another session's schema change outdated). Called by the
    /// provided methods; not part of the API.
    #[doc(hidden)]
    fn run_read<T, F>(&self, f: F) -> impl Future<Output = Result<T>> + Send
    where
        T: Send + 'static,
        F: FnMut(&mut Self::Conn) -> Result<T> + Send + 'static,
    {
        self.run(f)
    }

    /// See [`Repo::save`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> datastore::Result<()> {
    /// # let store = AsyncStore::builder(":memory:").schema(Schema::new().model::<Note>()).open_async().await?;
    /// let mut note = store.save(Note { text: "draft".into(), ..Note::default() }).await?;
    /// note.text = "final".into();
    /// store.save(note.clone()).await?; // the same key: an update
    /// assert_eq!(store.all::<Note>().await?, vec![note]);
    /// # Ok(())
    /// # }
    /// ```
    fn save<M>(&self, model: M) -> impl Future<Output = Result<M>> + Send
    where
        M: Persist<Self::Conn> + Send + 'static,
    {
        self.run_own(move |conn| conn.save(model))
    }

    /// See [`Repo::insert_all`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> datastore::Result<()> {
    /// # let store = AsyncStore::builder(":memory:").schema(Schema::new().model::<Note>()).open_async().await?;
    /// let notes = (0..100).map(|i| Note { text: format!("note {i}"), ..Note::default() });
    /// let inserted = store.insert_all(notes.collect()).await?;
    /// assert_eq!(inserted.len(), 100);
    /// assert_eq!(store.count::<Note>().await?, 100);
    /// # Ok(())
    /// # }
    /// ```
    fn insert_all<M>(&self, rows: Vec<M>) -> impl Future<Output = Result<Vec<M>>> + Send
    where
        M: Persist<Self::Conn> + Send + 'static,
    {
        self.run_own(move |conn| conn.insert_all(rows))
    }

    /// See [`Repo::save_graph`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Post, posts, Comment, comments};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> datastore::Result<()> {
    /// # let store = AsyncStore::builder(":memory:")
    /// #     .schema(Schema::new().model::<Post>().model::<Comment>())
    /// #     .open_async()
    /// #     .await?;
    /// let post = Post {
    ///     comments: HasMany::loaded(vec![Comment::default(), Comment::default()]),
    ///     ..Post::default()
    /// };
    /// let post = store.save_graph(post).await?;
    /// assert_eq!(post.comments.get().unwrap()[0].post_id, post.id);
    /// assert_eq!(store.count::<Comment>().await?, 2);
    /// # Ok(())
    /// # }
    /// ```
    fn save_graph<M>(&self, model: M) -> impl Future<Output = Result<M>> + Send
    where
        M: Persist<Self::Conn> + Send + 'static,
    {
        self.run_own(move |conn| conn.save_graph(model))
    }

    /// See [`Repo::find`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> datastore::Result<()> {
    /// # let store = AsyncStore::builder(":memory:").schema(Schema::new().model::<Note>()).open_async().await?;
    /// let note = store.save(Note::default()).await?;
    /// assert_eq!(store.find::<Note>(&note.id).await?, Some(note));
    /// assert_eq!(store.find::<Note>(&Id::new()).await?, None);
    /// # Ok(())
    /// # }
    /// ```
    fn find<M>(&self, key: &M::Key) -> impl Future<Output = Result<Option<M>>> + Send
    where
        M: Persist<Self::Conn> + Send + 'static,
    {
        let key = key.clone();
        self.run_read(move |conn| conn.find::<M>(&key))
    }

    /// See [`Repo::get`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> datastore::Result<()> {
    /// # let store = AsyncStore::builder(":memory:").schema(Schema::new().model::<Note>()).open_async().await?;
    /// let note = store.save(Note { text: "hi".into(), ..Note::default() }).await?;
    /// assert_eq!(store.get::<Note>(&note.id).await?.text, "hi");
    /// let missing = store.get::<Note>(&Id::new()).await;
    /// assert!(matches!(missing, Err(datastore::Error::NotFound { .. })));
    /// # Ok(())
    /// # }
    /// ```
    fn get<M>(&self, key: &M::Key) -> impl Future<Output = Result<M>> + Send
    where
        M: Persist<Self::Conn> + Send + 'static,
    {
        let key = key.clone();
        self.run_read(move |conn| conn.get::<M>(&key))
    }

    /// See [`Repo::all`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> datastore::Result<()> {
    /// # let store = AsyncStore::builder(":memory:").schema(Schema::new().model::<Note>()).open_async().await?;
    /// store.save(Note { text: "a".into(), ..Note::default() }).await?;
    /// store.save(Note { text: "b".into(), ..Note::default() }).await?;
    /// assert_eq!(store.all::<Note>().await?.len(), 2);
    /// # Ok(())
    /// # }
    /// ```
    fn all<M>(&self) -> impl Future<Output = Result<Vec<M>>> + Send
    where
        M: Persist<Self::Conn> + Send + 'static,
    {
        self.run_read(|conn| conn.all::<M>())
    }

    /// See [`Repo::query`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> datastore::Result<()> {
    /// # let store = AsyncStore::builder(":memory:").schema(Schema::new().model::<Note>()).open_async().await?;
    /// store.save(Note { text: "hello".into(), ..Note::default() }).await?;
    /// store.save(Note { text: "bye".into(), ..Note::default() }).await?;
    /// let found = store.query::<Note>(|q| q.filter(notes::text.like("he%"))).await?;
    /// assert_eq!(found.len(), 1);
    /// assert_eq!(found[0].text, "hello");
    /// # Ok(())
    /// # }
    /// ```
    fn query<M>(
        &self,
        build: impl FnOnce(M::Query) -> M::Query + Send + 'static,
    ) -> impl Future<Output = Result<Vec<M>>> + Send
    where
        M: Persist<Self::Conn> + Send + 'static,
    {
        self.run_own(move |conn| conn.query::<M>(build))
    }

    /// See [`Repo::count`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> datastore::Result<()> {
    /// # let store = AsyncStore::builder(":memory:").schema(Schema::new().model::<Note>()).open_async().await?;
    /// assert_eq!(store.count::<Note>().await?, 0);
    /// store.save(Note::default()).await?;
    /// assert_eq!(store.count::<Note>().await?, 1);
    /// # Ok(())
    /// # }
    /// ```
    fn count<M>(&self) -> impl Future<Output = Result<usize>> + Send
    where
        M: Persist<Self::Conn> + Send + 'static,
    {
        self.run_read(|conn| conn.count::<M>())
    }

    /// See [`Repo::delete`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> datastore::Result<()> {
    /// # let store = AsyncStore::builder(":memory:").schema(Schema::new().model::<Note>()).open_async().await?;
    /// let note = store.save(Note::default()).await?;
    /// store.delete(&note).await?;
    /// assert_eq!(store.count::<Note>().await?, 0);
    /// assert!(store.delete(&note).await.is_err()); // no longer stored: `NotFound`
    /// # Ok(())
    /// # }
    /// ```
    fn delete<M>(&self, model: &M) -> impl Future<Output = Result<()>> + Send
    where
        M: Persist<Self::Conn> + Send + 'static,
    {
        let key = model.key();
        self.run_own(move |conn| conn.delete_by_id::<M>(&key))
    }

    /// See [`Repo::delete_by_id`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> datastore::Result<()> {
    /// # let store = AsyncStore::builder(":memory:").schema(Schema::new().model::<Note>()).open_async().await?;
    /// let note = store.save(Note::default()).await?;
    /// store.delete_by_id::<Note>(&note.id).await?;
    /// assert_eq!(store.find::<Note>(&note.id).await?, None);
    /// # Ok(())
    /// # }
    /// ```
    fn delete_by_id<M>(&self, key: &M::Key) -> impl Future<Output = Result<()>> + Send
    where
        M: Persist<Self::Conn> + Send + 'static,
    {
        let key = key.clone();
        self.run_own(move |conn| conn.delete_by_id::<M>(&key))
    }

    /// See [`Repo::delete_where`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> datastore::Result<()> {
    /// # let store = AsyncStore::builder(":memory:").schema(Schema::new().model::<Note>()).open_async().await?;
    /// store.save(Note { text: "keep".into(), ..Note::default() }).await?;
    /// store.save(Note { text: "drop".into(), ..Note::default() }).await?;
    /// let deleted = store.delete_where::<Note, _>(notes::text.eq("drop")).await?;
    /// assert_eq!(deleted, 1);
    /// assert_eq!(store.count::<Note>().await?, 1);
    /// # Ok(())
    /// # }
    /// ```
    fn delete_where<M, C>(
        &self,
        predicate: impl IntoPredicate<M::Table, <Self::Conn as Connection>::Backend, C> + Send + 'static,
    ) -> impl Future<Output = Result<usize>> + Send
    where
        M: Persist<Self::Conn> + Send + 'static,
        C: 'static,
    {
        self.run_own(move |conn| conn.delete_where::<M, C>(predicate))
    }

    /// See [`Repo::preview_delete`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Course, courses, Student, students, Enrolment, enrolments};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> datastore::Result<()> {
    /// # let store = AsyncStore::builder(":memory:")
    /// #     .schema(Schema::new().model::<Course>().model::<Student>().model::<Enrolment>())
    /// #     .open_async()
    /// #     .await?;
    /// let course = store.save(Course::default()).await?;
    /// let student = store.save(Student::default()).await?;
    /// course.link_students_async(&store, &student).await?;
    /// let effects = store.preview_delete::<Course>(&course.id).await?;
    /// assert!(effects.is_refused()); // the enrolment refuses it
    /// assert_eq!(effects.refused_by_rows_of("enrolments"), 1);
    /// # Ok(())
    /// # }
    /// ```
    fn preview_delete<M>(&self, key: &M::Key) -> impl Future<Output = Result<DeleteEffects>> + Send
    where
        M: Persist<Self::Conn> + Send + 'static,
    {
        let key = key.clone();
        self.run_read(move |conn| conn.preview_delete::<M>(&key))
    }

    /// See [`Repo::unlink_and_delete`].
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Course, courses, Student, students, Enrolment, enrolments};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> datastore::Result<()> {
    /// # let store = AsyncStore::builder(":memory:")
    /// #     .schema(Schema::new().model::<Course>().model::<Student>().model::<Enrolment>())
    /// #     .open_async()
    /// #     .await?;
    /// let course = store.save(Course::default()).await?;
    /// let student = store.save(Student::default()).await?;
    /// course.link_students_async(&store, &student).await?;
    /// let effects = store.unlink_and_delete::<Course>(&course.id).await?;
    /// assert_eq!(effects.removed_from("courses"), 1);
    /// assert_eq!(store.count::<Enrolment>().await?, 0); // unlinked first
    /// assert_eq!(store.count::<Course>().await?, 0);
    /// assert_eq!(store.count::<Student>().await?, 1);
    /// # Ok(())
    /// # }
    /// ```
    fn unlink_and_delete<M>(
        &self,
        key: &M::Key,
    ) -> impl Future<Output = Result<DeleteEffects>> + Send
    where
        M: Persist<Self::Conn> + Send + 'static,
    {
        let key = key.clone();
        self.run_own(move |conn| conn.unlink_and_delete::<M>(&key))
    }
}

/// Runs `f` on tokio's blocking pool; a panic in `f` resumes in the caller.
#[cfg(feature = "async")]
pub(crate) async fn unblock<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    joined(tokio::task::spawn_blocking(f).await)
}

/// The result of a blocking task: its own, its panic resumed, or the runtime's shutdown.
#[cfg(feature = "async")]
fn joined<T>(result: std::result::Result<Result<T>, tokio::task::JoinError>) -> Result<T> {
    match result {
        Ok(result) => result,
        Err(error) => match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(_) => Err(crate::Error::RuntimeShutdown),
        },
    }
}
