//! Models derived in a crate that depends on datastore under another name, and on no crate
//! named `datastore` (`tests/renamed-models`: `#[model(crate = dbx)]`, or through a facade
//! module re-exporting it), are stored, read, related and linked like any other. What matters
//! is that the crate compiles (the generated code differs from the default only in its paths);
//! this drives each kind of generated method once.

use datastore::prelude::*;
use datastore_renamed_models::{schema, Author, Book, BookTag, Shelf, Tag};

#[test]
fn models_of_a_crate_naming_datastore_otherwise_save_load_relate_and_link() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path().join("library.db"))
        .schema(schema())
        .open()
        .unwrap();
    let mut conn = store.conn().unwrap();
    let ada = conn
        .save(Author {
            name: "Ada".into(),
            ..Author::default()
        })
        .unwrap();
    let notes = conn
        .save(Book {
            title: "Notes".into(),
            shelf: Shelf::Reference,
            author_id: ada.id,
            ..Book::default()
        })
        .unwrap();
    let maths = conn
        .save(Tag {
            label: "maths".into(),
            ..Tag::default()
        })
        .unwrap();
    assert_eq!(conn.get::<Book>(&notes.id).unwrap(), notes);

    assert_eq!(notes.author(&mut conn).unwrap(), ada);
    assert_eq!(ada.books(&mut conn).unwrap(), vec![notes.clone()]);
    let mut authors = conn.all::<Author>().unwrap();
    Author::load_books(&mut conn, &mut authors).unwrap();
    assert_eq!(authors[0].books.get(), Some(&[notes.clone()][..]));

    let link = notes.link_tags(&mut conn, &maths).unwrap();
    assert_eq!(
        link,
        BookTag {
            book_id: notes.id,
            tag_id: maths.id
        }
    );
    assert_eq!(notes.tags(&mut conn).unwrap(), vec![maths.clone()]);
    assert_eq!(maths.books(&mut conn).unwrap(), vec![notes.clone()]);
    assert_eq!(maths.unlink_books(&mut conn, &notes).unwrap(), 1);
    assert_eq!(conn.count::<BookTag>().unwrap(), 0);
}
