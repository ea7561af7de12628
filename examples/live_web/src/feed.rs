//! The page's view, kept live: one live query over relations (posts, newest first, with
//! their comments and editors) on a thread of its own, whose results are handed to every
//! event stream through a `watch` channel (a slow page gets the latest view, never a queue).

use std::sync::Arc;
use std::time::{Duration, Instant};

use datastore::observe::LiveSubscription;
use datastore::prelude::*;
use diesel::sql_types::BigInt;
use tokio::sync::watch;

use crate::models::{posts, Post};

/// How often the feed looks for other processes' writes to the SQLite file, and for the
/// end of its readers.
const POLL: Duration = Duration::from_millis(200);

/// One state of the page: the posts with their comments and editors as JSON, or why they
/// could not be read.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Counts the views handed out, from 1 (0: nothing read yet).
    pub version: u64,
    /// The posts, as the JSON array the page renders.
    pub posts: Arc<str>,
    /// The store's message, when the live query failed (it is subscribed again).
    pub failure: Option<Arc<str>>,
}

/// The live view's source. Its thread ends once every [`View`] receiver is gone.
#[derive(Debug)]
pub struct Feed {
    view: watch::Receiver<View>,
}

impl Feed {
    /// Starts the live query on `store`. `sqlite_file`, when the store works on one, is
    /// watched for commits made by other processes, which the store's change feed does not
    /// see (see the README's Observe section): after one, the view is read again whole.
    pub fn start(store: AsyncStore, sqlite_file: Option<String>) -> Self {
        let (tx, view) = watch::channel(View::default());
        std::thread::Builder::new()
            .name("live-view".into())
            .spawn(move || run(store.blocking(), sqlite_file, &tx))
            .expect("a thread for the live view");
        Self { view }
    }

    /// A receiver of the latest view.
    pub fn view(&self) -> watch::Receiver<View> {
        self.view.clone()
    }
}

/// The live query the page shows.
pub fn subscribe(store: &Store) -> datastore::Result<LiveSubscription<Post>> {
    store
        .live::<Post>()
        .query(|q| q.order((posts::created_at.desc(), posts::id.desc())))
        .load(Post::COMMENTS)
        .load(Post::EDITORS)
        .subscribe()
}

fn run(store: &Store, sqlite_file: Option<String>, tx: &watch::Sender<View>) {
    let mut others = sqlite_file.and_then(|path| match DataVersion::open(&path) {
        Ok(version) => Some(version),
        Err(e) => {
            eprintln!("other processes' writes to {path} will not show: {e}");
            None
        }
    });
    let mut published: Arc<str> = "".into();
    'subscribe: while !tx.is_closed() {
        let mut view = match subscribe(store) {
            Ok(view) => view,
            Err(e) => {
                fail(tx, &e);
                published = "".into(); // the next view replaces the failure
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        let mut checked = Instant::now();
        while !tx.is_closed() {
            match view.recv_timeout(POLL) {
                Some(Ok(posts)) => {
                    let json: Arc<str> = serde_json::to_string(&posts[..])
                        .expect("posts serialize")
                        .into();
                    // A view read again whole after another process's write may be the
                    // one already shown.
                    if json != published {
                        published = json.clone();
                        tx.send_modify(|view| {
                            view.version += 1;
                            view.posts = json;
                            view.failure = None;
                        });
                    }
                }
                Some(Err(e)) => {
                    fail(tx, &e);
                    published = "".into();
                    std::thread::sleep(POLL);
                    continue 'subscribe;
                }
                None => {}
            }
            if checked.elapsed() >= POLL {
                checked = Instant::now();
                if let Some(others) = &mut others {
                    match others.changed() {
                        // Another connection committed: the store's own (already in the
                        // view) or another process's (not seen). A new subscription reads
                        // the view whole, as of now, and goes on from there.
                        Ok(true) => continue 'subscribe,
                        Ok(false) => {}
                        Err(e) => eprintln!("reading the SQLite file's data_version: {e}"),
                    }
                }
            }
        }
    }
}

fn fail(tx: &watch::Sender<View>, error: &datastore::Error) {
    eprintln!("the live view failed: {error}");
    let message: Arc<str> = error.to_string().into();
    tx.send_modify(|view| {
        view.version += 1;
        view.failure = Some(message);
    });
}

/// SQLite's `PRAGMA data_version` on a connection of its own: it changes when any other
/// connection, of this process or another, commits to the file.
struct DataVersion {
    conn: SqliteConnection,
    last: i64,
}

#[derive(QueryableByName)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite))]
struct Version {
    #[diesel(sql_type = BigInt)]
    data_version: i64,
}

impl DataVersion {
    fn open(path: &str) -> Result<Self, String> {
        let mut conn = SqliteConnection::establish(path).map_err(|e| e.to_string())?;
        let last = Self::read(&mut conn).map_err(|e| e.to_string())?;
        Ok(Self { conn, last })
    }

    fn read(conn: &mut SqliteConnection) -> QueryResult<i64> {
        diesel::sql_query("PRAGMA data_version")
            .get_result::<Version>(conn)
            .map(|v| v.data_version)
    }

    /// Whether another connection committed since the last call.
    fn changed(&mut self) -> QueryResult<bool> {
        let now = Self::read(&mut self.conn)?;
        let changed = now != self.last;
        self.last = now;
        Ok(changed)
    }
}
