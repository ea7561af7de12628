use datastore::prelude::*;

#[derive(Model)]
#[model(table = "posts_written_by_the_editors_of_the_weekly_newsletter_about_gardens")]
pub struct Post {
    #[primary_key]
    pub id: Id,
    pub the_number_of_readers_who_opened_the_newsletter_within_the_first_day: i64,
}

// The default table name, the struct's pluralized, is held to the same length.
#[derive(Model)]
pub struct CommentWrittenByAReaderOfTheWeeklyNewsletterAboutTheCityGarden {
    #[primary_key]
    pub id: Id,
}

fn main() {}
