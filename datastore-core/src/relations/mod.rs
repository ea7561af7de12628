//! Relations between models: how they are declared, what they mean in the database, and how
//! they are loaded.
//!
//! A child declares `#[belongs_to(Parent)]` on its foreign-key field; its derive implements
//! [`BelongsTo`] for it, and every model then has [`ChildOf`] (the foreign key as SQL) on every
//! connection. A parent declares `#[has_many(Child)]`, `#[has_one(Child)]` or
//! `#[many_to_many(Other, through = Join)]`; its derive generates the lazy and eager loaders,
//! `link`/`unlink`, and the SQL filters by related fields, all on top of generic functions
//! written once for every relation (in `relations/load.rs` and `relations/graph.rs`).
//!
//! What the declarations mean for the database (which foreign key is unique, what a delete
//! does) is decided in one place, `schema/rules.rs`; what a delete does at run time, and why
//! links refuse one, is worked out in `relations/effects.rs` and `relations/restrict.rs`.
//!
//! ```
//! # use datastore::prelude::*;
//! # use datastore_doc_models::{Post, posts, Comment, comments};
//! # fn main() -> datastore::Result<()> {
//! # let store = Store::builder(":memory:")
//! #     .schema(Schema::new().model::<Post>().model::<Comment>())
//! #     .open()?;
//! let post = store.save(Post::default())?;
//! store.save(Comment { post_id: post.id, text: "first".into(), ..Comment::default() })?;
//! // Lazily, one post's comments; eagerly, the comments of many posts in one query.
//! assert_eq!(post.comments(&mut store.conn()?)?.len(), 1);
//! let mut posts = store.all::<Post>()?;
//! Post::load_comments(&mut store.conn()?, &mut posts)?;
//! assert_eq!(posts[0].comments.get().map(<[_]>::len), Some(1));
//! # Ok(())
//! # }
//! ```

pub(crate) mod belongs_to;
mod effects;
mod fields;
pub(crate) mod graph;
pub(crate) mod load;
pub(crate) mod restrict;
pub(crate) mod subquery;

pub use belongs_to::{BelongsTo, ChildOf, fk_key};
pub use effects::{AffectedRows, DeleteEffects};
pub(crate) use effects::{Purpose, plan as plan_delete};
pub use fields::{HasMany, HasOne, ManyToMany};
pub use subquery::InSubquery;

pub use crate::backend::CHUNK;
