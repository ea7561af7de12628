use datastore::prelude::*;

// A model linked to itself by one field of the join model named for both sides: a link needs
// one for each side.
#[derive(Model, Clone, Default)]
pub struct Member {
    #[primary_key]
    pub id: Id,
    #[many_to_many(Member, through = Mention, foreign_key = member_id, other_key = member_id)]
    pub mentions: ManyToMany<Member>,
}

#[derive(Model, Clone, Default)]
pub struct Mention {
    #[primary_key]
    pub id: Id,
    #[belongs_to(Member)]
    pub member_id: Id,
}

fn main() {}
