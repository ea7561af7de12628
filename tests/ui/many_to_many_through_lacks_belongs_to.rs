use datastore::prelude::*;

#[derive(Model, Clone, Default)]
pub struct Post {
    #[primary_key]
    pub id: Id,
    #[many_to_many(User, through = PostEditor)]
    pub editors: ManyToMany<User>,
}

#[derive(Model, Clone, Default)]
pub struct User {
    #[primary_key]
    pub id: Id,
}

#[derive(Model, Clone, Default)]
pub struct PostEditor {
    #[primary_key]
    pub id: Id,
    #[belongs_to(Post)]
    pub post_id: Id,
    pub editor_id: Id,
}

fn main() {}
