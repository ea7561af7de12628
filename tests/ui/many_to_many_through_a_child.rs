use datastore::prelude::*;

#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct User {
    #[primary_key]
    pub id: Id,
}

#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Post {
    #[primary_key]
    pub id: Id,
    #[has_many(Comment)]
    pub comments: HasMany<Comment>,
    // The comments are the post's (deleted with it): they cannot also be its links to users.
    #[many_to_many(User, through = Comment)]
    pub commenters: ManyToMany<User>,
}

#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Comment {
    #[primary_key]
    pub id: Id,
    #[belongs_to(Post)]
    pub post_id: Id,
    #[belongs_to(User)]
    pub author_id: Id,
}

fn main() {}
