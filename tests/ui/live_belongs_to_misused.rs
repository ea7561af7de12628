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
    // A `belongs_to` starts at the child: a live query of posts cannot load `Comment::POST`.
    let _ = store.live::<Post>().load(Comment::POST);
    // A snapshot's parent is asked for with a row of the relation's child.
    let posts = store.live::<Post>().subscribe().unwrap().recv().unwrap();
    let _ = posts.parent(&posts[0], Comment::POST);
}
