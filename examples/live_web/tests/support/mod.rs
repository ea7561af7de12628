//! What the tests share: a server on a fresh store, an HTTP client, and an event-stream reader.

#![allow(dead_code)] // each test file uses part of it

// Schemas of their own on the server, as the library's tests make them.
#[path = "../../../../tests/common/pg_schema.rs"]
mod pg_schema;

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::mpsc;
use std::time::Duration;

use datastore_live_web::Running;
pub use pg_schema::PgSchema;
use serde_json::Value;

/// How long a test waits for something that must come before it fails (a bound against
/// hanging, not a measure: nothing is asserted about how long it took).
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A server on a SQLite file of its own (kept with it, removed after).
pub struct Served {
    pub running: Running,
    pub file: String,
    _dir: tempfile::TempDir,
}

/// A server on a schema of its own on the PostgreSQL server at `DATASTORE_POSTGRES_URL`, and
/// the schema (claimed while it lives, dropped with its feed's publication when it is dropped,
/// and by a later run if this one was killed), or `None` (said on stderr) when it is unset.
pub fn serve_postgres() -> Option<(Running, PgSchema)> {
    let Ok(server) = std::env::var("DATASTORE_POSTGRES_URL") else {
        eprintln!("NOTE: the PostgreSQL test was NOT run: DATASTORE_POSTGRES_URL is unset");
        return None;
    };
    let schema = PgSchema::new(&server);
    let running = Running::start(schema.url(), SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .expect("the server starts");
    Some((running, schema))
}

/// Starts the server on a fresh SQLite file, on any free port.
pub fn serve() -> Served {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("blog.db").display().to_string();
    let running = Running::start(&file, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .expect("the server starts");
    Served {
        running,
        file,
        _dir: dir,
    }
}

/// An HTTP client that answers every status as a response (the tests read error bodies).
pub fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// An answer: its status and its body, as JSON (`Null` when empty).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

/// Sends `method path` with a JSON body (if any) and reads the answer.
pub fn call(base: &str, method: &str, path: &str, body: Option<Value>) -> Answer {
    let agent = client();
    let url = format!("{base}{path}");
    let request = ureq::http::Request::builder()
        .method(method)
        .uri(&url)
        .header("content-type", "application/json")
        .body(body.map(|b| b.to_string()).unwrap_or_default())
        .expect("a request");
    let mut response = agent.run(request).expect("the server answers");
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .read_to_string()
        .expect("a readable body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"))
    };
    Answer { status, body }
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub id: Option<u64>,
    pub data: Value,
}

/// Reads `GET /events` on a thread of its own, handing each event over as it arrives.
pub struct Events {
    received: mpsc::Receiver<Event>,
}

impl Events {
    pub fn open(base: &str) -> Self {
        let mut response = client()
            .get(format!("{base}/events"))
            .call()
            .expect("the event stream opens");
        assert_eq!(response.status().as_u16(), 200);
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        let (tx, received) = mpsc::channel();
        std::thread::spawn(move || {
            let reader = BufReader::new(response.body_mut().as_reader());
            let (mut name, mut id, mut data) = (String::new(), None, String::new());
            for line in reader.lines() {
                let Ok(line) = line else { return };
                if line.is_empty() {
                    if !data.is_empty() {
                        let event = Event {
                            name: std::mem::take(&mut name),
                            id: id.take(),
                            data: serde_json::from_str(&data)
                                .unwrap_or(Value::String(data.clone())),
                        };
                        data.clear();
                        if tx.send(event).is_err() {
                            return;
                        }
                    }
                    name.clear();
                } else if let Some(value) = line.strip_prefix("event: ") {
                    name = value.to_owned();
                } else if let Some(value) = line.strip_prefix("id: ") {
                    id = value.parse().ok();
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data.push_str(value);
                }
            }
        });
        Self { received }
    }

    /// The next event.
    pub fn next(&self) -> Event {
        self.received
            .recv_timeout(PATIENCE)
            .expect("an event on the stream")
    }

    /// The posts of the first `posts` event for which `done` holds, skipping earlier ones:
    /// a stream opened after writes may first send the view as the live query last read it,
    /// before those writes reached it.
    pub fn posts_when(&self, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let posts = self.next_posts();
            if done(&posts) {
                return posts;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no view as expected came; the last: {posts:?}"
            );
        }
    }

    /// The next `posts` event's posts.
    pub fn next_posts(&self) -> Vec<Value> {
        let event = self.next();
        assert_eq!(event.name, "posts", "{event:?}");
        event.data.as_array().expect("an array of posts").clone()
    }
}

/// The contents of a post's comments, as the view shows them.
pub fn comment_texts(post: &Value) -> Vec<String> {
    post["comments"]
        .as_array()
        .expect("comments loaded")
        .iter()
        .map(|c| c["content"].as_str().unwrap_or_default().to_owned())
        .collect()
}
