//! Models of a crate that depends on datastore under another name (`dbx`) and on no crate
//! named `datastore`: their derives reach the runtime through `#[model(crate = ..)]` and
//! `#[db_enum(crate = ..)]`, by the crate's name or through a re-export of it, written as a
//! path or as a string. `tests/renamed_crate.rs` stores them.

use dbx::prelude::*;

/// A facade module re-exporting the ORM, as a crate wrapping datastore for its users would.
pub mod facade {
    pub use dbx as db;
}

/// Where a book is shelved: an enum stored as text, derived through the facade (the path
/// given as a string).
#[derive(DbEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[db_enum(crate = "crate::facade::db")]
pub enum Shelf {
    #[default]
    Fiction,
    Reference,
}

/// An author of books.
#[derive(Model, Debug, Clone, PartialEq, Default)]
#[model(crate = dbx)]
pub struct Author {
    #[primary_key]
    pub id: Id,
    #[unique]
    pub name: String,
    #[has_many(Book)]
    pub books: HasMany<Book>,
}

/// A book, by one author, with tags.
#[derive(Model, Debug, Clone, PartialEq, Default)]
#[model(crate = dbx)]
pub struct Book {
    #[primary_key]
    pub id: Id,
    #[index]
    pub title: String,
    pub shelf: Shelf,
    /// A default (generated code of its own).
    #[column(default = 1)]
    pub edition: i32,
    #[belongs_to(Author)]
    pub author_id: Id,
    #[many_to_many(Tag, through = BookTag)]
    pub tags: ManyToMany<Tag>,
}

/// A tag, keyed by an integer the database assigns, derived through the facade.
#[derive(Model, Debug, Clone, PartialEq, Default)]
#[model(crate = crate::facade::db)]
pub struct Tag {
    #[primary_key]
    pub id: i64,
    pub label: String,
    #[many_to_many(Book, through = BookTag)]
    pub books: ManyToMany<Book>,
}

/// The join model of books and tags, keyed by its two foreign keys.
#[derive(Model, Debug, Clone, PartialEq, Default)]
#[model(crate = dbx, primary_key(book_id, tag_id))]
pub struct BookTag {
    #[belongs_to(Book)]
    pub book_id: Id,
    #[belongs_to(Tag)]
    pub tag_id: i64,
}

/// The schema of these models.
pub fn schema() -> dbx::Schema {
    Schema::new()
        .model::<Author>()
        .model::<Book>()
        .model::<Tag>()
        .model::<BookTag>()
}
