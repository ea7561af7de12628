//! # datastore
//!
//! Annotated Rust structs become a typed, relational data store over SQL databases, on top of
//! [Diesel](diesel).
//!
//! ```
//! use datastore::prelude::*;
//!
//! #[derive(DbEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
//! pub enum PostStatus {
//!     #[default]
//!     Active,
//!     Inactive,
//! }
//!
//! #[derive(Model, Debug, Clone, PartialEq, Default)]
//! pub struct Post {
//!     #[primary_key]
//!     pub id: Id,
//!     pub title: String,
//!     pub rating: i32,
//!     pub status: PostStatus,
//!     pub body: Option<String>,
//!     pub created_at: Timestamp,
//!     pub updated_at: Timestamp,
//! }
//!
//! # fn main() -> datastore::Result<()> {
//! let store = Store::builder(":memory:").schema(Schema::new().model::<Post>()).open()?;
//! let post = store.save(Post { title: "My Post".into(), rating: 10, ..Post::default() })?;
//! assert_eq!(store.find::<Post>(&post.id)?, Some(post.clone()));
//!
//! // Plain Diesel DSL on the generated table.
//! let top: Vec<Post> = Post::query()
//!     .filter(posts::rating.gt(4))
//!     .order(posts::rating.desc())
//!     .limit(10)
//!     .load(&mut store.conn()?)?;
//! assert_eq!(top, vec![post.clone()]);
//!
//! store.delete(&post)?;
//! assert_eq!(store.count::<Post>()?, 0);
//! # Ok(())
//! # }
//! ```
//!
//! Applications ship migrations generated from their models (see [`migrate`]) and open the
//! store with them: `Store::open("blog.db", datastore::embed_migrations!())`.
//!
//! Generated code uses Diesel's `table!`, which needs `diesel` among the application's own
//! dependencies (the same 2.3 release as this crate's).
//!
//! # Tracing
//!
//! The store reports what it does through [`tracing`](https://docs.rs/tracing): install any
//! subscriber (`tracing-subscriber`'s `fmt`, an OpenTelemetry layer..) to see it.
//!
//! | target | level | what |
//! |---|---|---|
//! | `datastore` | `DEBUG` | a span per operation of [`Repo`] and [`Store`] (`save`, `find`, `query`, `delete`..): `model` (its table), `operation`, `rows` read or written, `duration_us` |
//! | `datastore::sql` | `DEBUG` | an event per statement as it starts: `sql`, without its values |
//! | `datastore::sql` | `TRACE` | on PostgreSQL, an event per statement after its `DEBUG` one: `sql` and its values, `binds` |
//! | `datastore::slow` | `WARN` | a statement that ran as long as [`StoreBuilder::slow_statement_threshold`] or longer (default one second): `sql`, `elapsed_ms`, `threshold_ms` |
//!
//! With no subscriber listening, this costs a check of `tracing`'s level per operation and per
//! statement. Operations are timed only when their span is enabled; SQLite times statements
//! itself, and on PostgreSQL a statement is timed (two clock reads beside a round trip) only
//! while a slow-statement threshold is set.

#![forbid(unsafe_code)]

pub use datastore_core::*;
/// Makes a struct a model: a table, its typed repository methods and its foreign keys.
///
/// On the struct: `#[model(table = "..")]` (the table's name; the default is the struct's
/// name in snake case, plural), `#[model(renamed_from = "..")]` (the table's name before,
/// which migrations rename), `#[model(primary_key(a, b))]` (a composite key),
/// `#[model(crate = path)]` (where this crate is named otherwise: see below). On fields:
/// `#[primary_key]`, `#[unique]`, `#[index]`, `#[column(default = .., renamed_from = "..")]`,
/// and the relations: `#[belongs_to(Parent)]` on a foreign-key field (`on_delete = ..` to
/// choose what deleting the parent does), `#[has_many(Child)]`, `#[has_one(Child)]` and
/// `#[many_to_many(Other, through = JoinModel)]` on fields of types
/// [`HasMany`](relations::HasMany), [`HasOne`](relations::HasOne) and
/// [`ManyToMany`](relations::ManyToMany). Where the child or join model has several
/// `belongs_to` to one model, the relation names the field it uses: `foreign_key = ..` the one
/// pointing at this row, and for a `many_to_many` `other_key = ..` the one pointing at the
/// linked row (a model linked to itself names both). Misuse is a compile error pointing at the
/// attribute at fault. The README's "A model" and "Relations" say what each generates.
///
/// ```
/// use datastore::prelude::*;
///
/// #[derive(Model, Debug, Clone, PartialEq, Default)]
/// pub struct Author {
///     #[primary_key]
///     pub id: Id,
///     #[unique]
///     pub name: String,
///     #[has_many(Book)]
///     pub books: HasMany<Book>,
/// }
///
/// #[derive(Model, Debug, Clone, PartialEq, Default)]
/// pub struct Book {
///     #[primary_key]
///     pub id: Id,
///     pub title: String,
///     #[belongs_to(Author)]
///     pub author_id: Id,
/// }
///
/// # fn main() -> datastore::Result<()> {
/// let store = Store::builder(":memory:")
///     .schema(Schema::new().model::<Author>().model::<Book>())
///     .open()?;
/// let ada = store.save(Author { name: "Ada".into(), ..Author::default() })?;
/// store.save(Book { title: "Notes".into(), author_id: ada.id, ..Book::default() })?;
///
/// let mut authors = store.all::<Author>()?;
/// Author::load_books(&mut store.conn()?, &mut authors)?;
/// assert_eq!(authors[0].books.get().unwrap()[0].title, "Notes");
/// // A required child is deleted with its parent (`ON DELETE CASCADE`).
/// store.delete(&ada)?;
/// assert_eq!(store.count::<Book>()?, 0);
/// # Ok(())
/// # }
/// ```
///
/// # Where datastore is named otherwise
///
/// Generated code reaches this crate as `::datastore`. A crate that depends on it under
/// another name (`db = { package = "datastore", .. }` in its `Cargo.toml`), or only through a
/// crate of its own that re-exports it, gives the path the derives are to use instead:
/// `#[model(crate = db)]`, `#[model(crate = my_db::datastore)]`, or the same path as a string,
/// `#[model(crate = "my_db::datastore")]` (as serde's `#[serde(crate = "..")]` is written);
/// [`DbEnum`] takes `#[db_enum(crate = ..)]`. Give the crate's name or a path from the crate
/// root: the derive uses the path in the struct's module and in the `table!` module inside it.
/// `diesel` is still needed under its own name, which Diesel's `table!` uses.
///
/// ```
/// // Stands in for a crate of the application's that re-exports the ORM.
/// mod my_db {
///     pub(crate) use datastore as orm;
/// }
/// use my_db::orm::prelude::*;
///
/// #[derive(Model, Debug, Clone, PartialEq, Default)]
/// #[model(crate = crate::my_db::orm)]
/// pub struct Memo {
///     #[primary_key]
///     pub id: Id,
///     pub text: String,
/// }
///
/// # fn main() -> datastore::Result<()> {
/// let store = Store::builder(":memory:").schema(Schema::new().model::<Memo>()).open()?;
/// let memo = store.save(Memo { text: "kept".into(), ..Memo::default() })?;
/// assert_eq!(store.get::<Memo>(&memo.id)?, memo);
/// # Ok(())
/// # }
/// ```
pub use datastore_derive::Model;

/// Makes a fieldless enum a field type: stored as its variant's name, in a text column that
/// accepts no other (`CHECK (status IN ('Draft', 'Published'))`). `#[db_enum(rename = "..")]`
/// on a variant stores it under another name. `#[db_enum(crate = path)]` on the enum is the
/// path generated code reaches this crate by, where it is named otherwise (as
/// [`#[model(crate = ..)]`](Model#where-datastore-is-named-otherwise) says).
///
/// ```
/// use datastore::prelude::*;
///
/// #[derive(DbEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
/// pub enum Status {
///     #[default]
///     Draft,
///     Published,
/// }
///
/// #[derive(Model, Debug, Clone, PartialEq, Default)]
/// pub struct Article {
///     #[primary_key]
///     pub id: Id,
///     pub status: Status,
/// }
///
/// # fn main() -> datastore::Result<()> {
/// let store = Store::builder(":memory:").schema(Schema::new().model::<Article>()).open()?;
/// let article = store.save(Article { status: Status::Published, ..Article::default() })?;
/// assert_eq!(store.get::<Article>(&article.id)?.status, Status::Published);
/// # Ok(())
/// # }
/// ```
pub use datastore_derive::DbEnum;

/// Embeds the application's migrations into the binary, one folder per backend, as a
/// [`BackendMigrations`](migrate::BackendMigrations) for [`Store::open`].
///
/// Paths are relative to the crate's `Cargo.toml`. Without arguments it embeds
/// `migrations/sqlite` and `migrations/postgres`; name the backends to embed others or only one:
/// `embed_migrations!(sqlite = "migrations/sqlite")`.
///
/// ```
/// use datastore::Store;
///
/// # fn main() -> datastore::Result<()> {
/// let migrations = datastore::embed_migrations!(); // migrations/sqlite and migrations/postgres
/// assert!(migrations.has_sqlite() && migrations.has_postgres());
/// let store = Store::open(":memory:", migrations)?; // runs the SQLite ones
/// assert_eq!(store.dialect(), datastore::schema::Dialect::Sqlite);
///
/// let only_sqlite = datastore::embed_migrations!(sqlite = "migrations/sqlite");
/// assert!(!only_sqlite.has_postgres());
/// # Ok(())
/// # }
/// ```
#[macro_export]
macro_rules! embed_migrations {
    () => {
        $crate::embed_migrations!(sqlite = "migrations/sqlite", postgres = "migrations/postgres")
    };
    ($($backend:ident = $path:literal),+ $(,)?) => {{
        use $crate::__private::diesel_migrations;
        let set = $crate::migrate::BackendMigrations::new();
        $(
            let set = set.$backend({
                const MIGRATIONS: diesel_migrations::EmbeddedMigrations =
                    diesel_migrations::embed_migrations!($path);
                MIGRATIONS
            });
        )+
        set
    }};
}

/// Everything a model file needs: the derives, the field types, the store, and Diesel's DSL.
///
/// ```
/// use datastore::prelude::*;
///
/// #[derive(Model, Debug, Clone, PartialEq, Default)]
/// pub struct Note {
///     #[primary_key]
///     pub id: Id,
///     pub text: String,
///     pub at: Timestamp,
/// }
///
/// # fn main() -> datastore::Result<()> {
/// let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
/// store.save(Note { text: "kept".into(), ..Note::default() })?;
/// // Diesel's DSL on the generated table, through a connection of the store.
/// let texts: Vec<String> = notes::table.select(notes::text).load(&mut store.conn()?)?;
/// assert_eq!(texts, ["kept"]);
/// # Ok(())
/// # }
/// ```
pub mod prelude {
    #[allow(unused_imports)] // empty without the feature `async`
    pub use crate::__private::async_prelude::*;
    pub use crate::diesel::prelude::*;
    pub use crate::relations::{HasMany, HasOne, ManyToMany};
    pub use crate::schema::Dialect;
    pub use crate::{AsyncRepo, DbEnum, Id, Json, Model, Persist, Repo, Schema, Store, Timestamp};
}
