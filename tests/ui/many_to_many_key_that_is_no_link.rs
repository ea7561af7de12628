use datastore::prelude::*;

// A key naming no field of the join model, and one naming a field that points at another
// model.
#[derive(Model, Clone, Default)]
pub struct Member {
    #[primary_key]
    pub id: Id,
    #[many_to_many(Member, through = Follow, foreign_key = follower_id, other_key = followed_id)]
    pub following: ManyToMany<Member>,
    #[many_to_many(Member, through = Follow, foreign_key = club_id, other_key = follower_id)]
    pub followers: ManyToMany<Member>,
}

#[derive(Model, Clone, Default)]
pub struct Club {
    #[primary_key]
    pub id: Id,
}

#[derive(Model, Clone, Default)]
pub struct Follow {
    #[primary_key]
    pub id: Id,
    #[belongs_to(Member)]
    pub follower_id: Id,
    #[belongs_to(Member)]
    pub followee_id: Id,
    #[belongs_to(Club)]
    pub club_id: Id,
}

fn main() {}
