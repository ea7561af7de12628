//! The hand-written Diesel reads that the workloads' Diesel peer (`hand_diesel.rs`) and
//! `profile.rs` (under callgrind) both run, written once so that the two measure the same
//! code. Each expands where the `posts` and `comments` tables and the `Post` row are in scope,
//! for a connection of type `$conn`.

/// `all_posts`: every post, in key order (the trivial query).
macro_rules! all_posts {
    ($conn:ty) => {
        /// Every post, in key order: the trivial query.
        pub fn all_posts(conn: &mut $conn) -> Vec<Post> {
            posts::table.order(posts::id).load::<Post>(conn).unwrap()
        }
    };
}

/// `posts_commented`: the posts with a comment matching a pattern, in key order (the medium
/// query).
macro_rules! posts_commented {
    ($conn:ty) => {
        /// The posts with a comment matching `pattern`, in key order: the medium query.
        pub fn posts_commented(conn: &mut $conn, pattern: &str) -> Vec<Post> {
            let commented = comments::table
                .select(comments::post_id)
                .filter(comments::content.like(pattern));
            posts::table
                .filter(posts::id.eq_any(commented))
                .order(posts::id)
                .load::<Post>(conn)
                .unwrap()
        }
    };
}
