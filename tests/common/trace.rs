//! What the store reports through `tracing`, collected on the test's thread.

use std::fmt::Debug;
use std::sync::{Arc, Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// Runs `f`, and returns what it returned with the SQL of every statement the store ran on
/// this thread meanwhile (the events of target `datastore::sql`), in order.
pub fn statements<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    second_dispatch();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let subscriber = tracing_subscriber::registry().with(Statements(seen.clone()));
    let value = tracing::subscriber::with_default(subscriber, f);
    let statements = std::mem::take(&mut *seen.lock().unwrap());
    (value, statements)
}

/// The first word of each statement `f` ran, joined by spaces (`"BEGIN INSERT COMMIT"`).
pub fn commands<T>(f: impl FnOnce() -> T) -> (T, String) {
    let (value, statements) = statements(f);
    let words: Vec<&str> = statements
        .iter()
        .map(|sql| sql.split_whitespace().next().unwrap_or_default())
        .collect();
    (value, words.join(" "))
}

struct Statements(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> Layer<S> for Statements {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != "datastore::sql" {
            return;
        }
        let mut sql = Sql(None);
        event.record(&mut sql);
        if let Some(sql) = sql.0 {
            self.0.lock().unwrap().push(sql);
        }
    }
}

/// An event's `sql` field.
struct Sql(Option<String>);

impl Visit for Sql {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "sql" {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        if field.name() == "sql" && self.0.is_none() {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

/// A second `Dispatch`, alive for the whole test process. While exactly one exists,
/// tracing-core 0.1.36 decides a callsite's interest from the thread that reaches it first: a
/// test thread without a subscriber would make it "never" for every thread, this one's
/// included (tokio-rs/tracing#3611). With two, it takes the path that asks each of them.
fn second_dispatch() {
    static SECOND: OnceLock<tracing::Dispatch> = OnceLock::new();
    SECOND.get_or_init(|| tracing::Dispatch::new(tracing_subscriber::registry()));
}
