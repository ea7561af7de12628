//! What the store reports through `tracing`, collected on the test's thread.

use std::fmt::Debug;
use std::sync::{Arc, Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// Runs `f`, and returns what it returned with the SQL of every statement the store ran on
/// this thread meanwhile (the events of target `datastore::sql`), in order.
pub fn statements<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    let (value, recorded) = recorded(f);
    let statements = recorded
        .events
        .into_iter()
        // The statements' own events (on PostgreSQL a `TRACE` one with the values follows each).
        .filter(|(target, level, _)| target == "datastore::sql" && *level == tracing::Level::DEBUG)
        .filter_map(|(_, _, mut fields)| fields.remove("sql"))
        .collect();
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

/// What the store reported while `f` ran on this thread: the spans it opened and the events
/// it sent, each with its target and fields (values as their `Debug` text, strings bare).
pub fn recorded<T>(f: impl FnOnce() -> T) -> (T, Recorded) {
    second_dispatch();
    let seen = Arc::new(Mutex::new(Recorded::default()));
    let subscriber = tracing_subscriber::registry().with(Recorder(seen.clone()));
    let value = tracing::subscriber::with_default(subscriber, f);
    let recorded = std::mem::take(&mut *seen.lock().unwrap());
    (value, recorded)
}

/// [`recorded`], with a subscriber that wants nothing more verbose than `level` (at `DEBUG`,
/// a statement's SQL but not its values, which are `TRACE`'s).
pub fn recorded_up_to<T>(level: tracing::Level, f: impl FnOnce() -> T) -> (T, Recorded) {
    second_dispatch();
    let seen = Arc::new(Mutex::new(Recorded::default()));
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::from_level(level))
        .with(Recorder(seen.clone()));
    let value = tracing::subscriber::with_default(subscriber, f);
    let recorded = std::mem::take(&mut *seen.lock().unwrap());
    (value, recorded)
}

/// [`recorded_up_to`], the level kept by a filter of the recording layer alone
/// (`tracing-subscriber`'s per-layer filters), where the subscriber's own is left open: asked
/// whether `TRACE` is wanted, such a subscriber says yes.
pub fn recorded_by_a_layer_up_to<T>(level: tracing::Level, f: impl FnOnce() -> T) -> (T, Recorded) {
    use tracing_subscriber::filter::LevelFilter;
    second_dispatch();
    let seen = Arc::new(Mutex::new(Recorded::default()));
    let subscriber = tracing_subscriber::registry()
        .with(Recorder(seen.clone()).with_filter(LevelFilter::from_level(level)));
    let value = tracing::subscriber::with_default(subscriber, f);
    let recorded = std::mem::take(&mut *seen.lock().unwrap());
    (value, recorded)
}

/// Spans and events, as [`recorded`] collects them.
#[derive(Debug, Default)]
pub struct Recorded {
    /// Each span's target and fields, including those recorded after it opened.
    pub spans: Vec<(String, Fields)>,
    /// Each event's target, level and fields.
    pub events: Vec<(String, tracing::Level, Fields)>,
}

/// A span's or event's fields, by name.
pub type Fields = std::collections::BTreeMap<String, String>;

struct Recorder(Arc<Mutex<Recorded>>);

impl Recorder {
    /// Which recorder it is, among those of one subscriber.
    fn key(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }
}

/// Where each recorder keeps a span: by its key, the span's index in its list.
struct SpanIndices(Vec<(usize, usize)>);

impl<S> Layer<S> for Recorder
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut fields = AllFields::default();
        attrs.record(&mut fields);
        let mut recorded = self.0.lock().unwrap();
        recorded
            .spans
            .push((attrs.metadata().target().to_owned(), fields.0));
        // Where later values of this span go: its index, in this recorder's list (a span
        // other recorders record too holds theirs beside it).
        if let Some(span) = ctx.span(id) {
            let place = (self.key(), recorded.spans.len() - 1);
            let mut extensions = span.extensions_mut();
            match extensions.get_mut::<SpanIndices>() {
                Some(indices) => indices.0.push(place),
                None => extensions.insert(SpanIndices(vec![place])),
            }
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        let mut fields = AllFields::default();
        values.record(&mut fields);
        let Some(span) = ctx.span(id) else { return };
        let Some(index) = span.extensions().get::<SpanIndices>().and_then(|indices| {
            let key = self.key();
            indices
                .0
                .iter()
                .find(|(of, _)| *of == key)
                .map(|&(_, index)| index)
        }) else {
            return;
        };
        self.0.lock().unwrap().spans[index].1.extend(fields.0);
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut fields = AllFields::default();
        event.record(&mut fields);
        let metadata = event.metadata();
        self.0.lock().unwrap().events.push((
            metadata.target().to_owned(),
            *metadata.level(),
            fields.0,
        ));
    }
}

#[derive(Default)]
struct AllFields(Fields);

impl Visit for AllFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
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

/// A subscriber that calls `hook` with the SQL of each statement the store starts (the events
/// of target `datastore::sql`) on a thread it is the default of: a test's way to act at a
/// chosen point inside the store's work, on the thread doing it.
pub fn statement_hook(hook: impl Fn(&str) + Send + Sync + 'static) -> tracing::Dispatch {
    second_dispatch();
    tracing::Dispatch::new(tracing_subscriber::registry().with(Hook(Box::new(hook))))
}

struct Hook(Box<dyn Fn(&str) + Send + Sync>);

impl<S: tracing::Subscriber> Layer<S> for Hook {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != "datastore::sql"
            || *event.metadata().level() != tracing::Level::DEBUG
        {
            return;
        }
        let mut fields = AllFields::default();
        event.record(&mut fields);
        if let Some(sql) = fields.0.get("sql") {
            (self.0)(sql);
        }
    }
}
