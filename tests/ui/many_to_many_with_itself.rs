use datastore::prelude::*;

// A model linked to itself: the join model has two foreign keys to it, and which one points
// at the declaring row (`foreign_key = ..`) and which at the linked one (`other_key = ..`)
// must be named.
#[derive(Model, Clone, Default)]
pub struct Member {
    #[primary_key]
    pub id: Id,
    #[many_to_many(Member, through = Friendship)]
    pub friends: ManyToMany<Member>,
}

#[derive(Model, Clone, Default)]
pub struct Friendship {
    #[primary_key]
    pub id: Id,
    #[belongs_to(Member)]
    pub member_id: Id,
    #[belongs_to(Member)]
    pub friend_id: Id,
}

fn main() {}
