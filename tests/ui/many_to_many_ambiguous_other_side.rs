use datastore::prelude::*;

// The join model has one foreign key to `Paper` and two to `Member`: the one pointing at the
// linked member must be named (`other_key = ..`).
#[derive(Model, Clone, Default)]
pub struct Paper {
    #[primary_key]
    pub id: Id,
    #[many_to_many(Member, through = Review)]
    pub reviewers: ManyToMany<Member>,
}

#[derive(Model, Clone, Default)]
pub struct Member {
    #[primary_key]
    pub id: Id,
}

#[derive(Model, Clone, Default)]
pub struct Review {
    #[primary_key]
    pub id: Id,
    #[belongs_to(Paper)]
    pub paper_id: Id,
    #[belongs_to(Member)]
    pub reviewer_id: Id,
    #[belongs_to(Member)]
    pub assigned_by_id: Id,
}

fn main() {}
