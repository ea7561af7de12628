use datastore::prelude::*;

#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Post {
    #[primary_key]
    pub id: Id,
    #[has_many(Comment)]
    pub comments: HasMany<Comment>,
}

#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Comment {
    #[primary_key]
    pub id: Id,
    #[belongs_to(Post)]
    pub post_id: Id,
}

fn main() {
    let store = Store::builder(":memory:").open().unwrap();
    // A path must start at the live query's model, and each step at the last one's target.
    let _ = store.live::<Comment>().load(Post::COMMENTS);
    let _ = store.live::<Post>().load(Post::COMMENTS.then(Post::COMMENTS));
}
