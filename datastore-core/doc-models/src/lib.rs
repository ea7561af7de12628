//! The models that `datastore-core`'s documentation examples share, declared once.
//!
//! An example that declares its own model pays for its `#[derive(Model)]` expansion when the
//! examples are compiled; the common ones live here, so that an example imports them with a
//! hidden line (`# use datastore_doc_models::{Note, notes};`) and reads as if it had declared
//! them. An example that needs a model of another shape, or whose point is the declaration,
//! declares its own.

use datastore::prelude::*;

/// A note: the examples' one-table model.
#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Note {
    #[primary_key]
    pub id: Id,
    pub text: String,
    /// Nullable, for the examples of `NULL` in conditions.
    pub tag: Option<String>,
}

/// A post with its comments: the examples' one-to-many.
#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Post {
    #[primary_key]
    pub id: Id,
    pub title: String,
    #[has_many(Comment)]
    pub comments: HasMany<Comment>,
}

/// A post's comment.
#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Comment {
    #[primary_key]
    pub id: Id,
    #[belongs_to(Post)]
    pub post_id: Id,
    pub text: String,
}

/// A course and its students, through enrolments: the examples' many-to-many.
#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Course {
    #[primary_key]
    pub id: Id,
    #[many_to_many(Student, through = Enrolment)]
    pub students: ManyToMany<Student>,
}

/// A student.
#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Student {
    #[primary_key]
    pub id: Id,
}

/// The join model of courses and students.
#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Enrolment {
    #[primary_key]
    pub id: Id,
    #[belongs_to(Course)]
    pub course_id: Id,
    #[belongs_to(Student)]
    pub student_id: Id,
}

/// A task, done or not.
#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Task {
    #[primary_key]
    pub id: Id,
    pub title: String,
    pub done: bool,
}
