//! What the store reports through [`tracing`]: a span per operation, each statement's SQL, and
//! statements slower than a threshold.
//!
//! | target | level | what |
//! |---|---|---|
//! | `datastore` | `DEBUG` | a span per operation of [`Repo`](crate::Repo) (and so of [`Store`](crate::Store)): `model`, `operation`, `rows`, `duration_us` |
//! | `datastore::sql` | `DEBUG` | an event per statement, as it starts: `sql` (without its values) |
//! | `datastore::sql` | `TRACE` | on PostgreSQL, an event per statement after its `DEBUG` one: `sql` and its bound values, `binds` |
//! | `datastore::slow` | `WARN` | a statement that ran for at least [`StoreBuilder::slow_statement_threshold`](crate::StoreBuilder::slow_statement_threshold): `sql`, `elapsed_ms`, `threshold_ms` |
//!
//! With no subscriber listening, each costs a check of `tracing`'s level per operation and
//! per query, and no clock is read for them: an operation is timed only when its span is
//! enabled, a statement only when a threshold is set and a subscriber listens to
//! `datastore::slow` (on SQLite by SQLite's profile event, whose hooks are otherwise off while
//! nobody observes; on PostgreSQL beside each round trip).

use std::fmt::{self, Write as _};
use std::time::{Duration, Instant};

use diesel::connection::{DebugQuery, InstrumentationEvent};
use tracing::field::Empty;
use tracing::level_filters::{LevelFilter, STATIC_MAX_LEVEL};
use tracing::{Level, Span};

/// The target of the statement events.
pub(crate) const SQL: &str = "datastore::sql";

/// One operation of the store, as a span of target `datastore`: nothing at all unless a
/// subscriber wants `DEBUG` spans.
pub(crate) struct Operation(Option<(Span, Instant)>);

impl Operation {
    /// The span of `operation` (`"save"`, `"find"`..) on `model`'s table.
    #[inline]
    pub(crate) fn new(model: &'static str, operation: &'static str) -> Self {
        // The global level first: with no subscriber (or none at `DEBUG`), not even a disabled
        // span is made (which costs more, with `tracing`'s `log` feature on).
        if Level::DEBUG > STATIC_MAX_LEVEL || Level::DEBUG > LevelFilter::current() {
            return Self(None);
        }
        let span = tracing::debug_span!(
            target: "datastore",
            "datastore",
            model,
            operation,
            rows = Empty,
            duration_us = Empty
        );
        if span.is_disabled() {
            return Self(None);
        }
        Self(Some((span, Instant::now())))
    }

    /// Runs `f` in the span, and records how many rows `rows` says it read or wrote, and how
    /// long it took.
    #[inline]
    pub(crate) fn run<T>(
        self,
        f: impl FnOnce() -> crate::Result<T>,
        rows: impl FnOnce(&T) -> usize,
    ) -> crate::Result<T> {
        let Some((span, started)) = self.0 else {
            return f();
        };
        let result = span.in_scope(f);
        if let Ok(value) = &result {
            span.record("rows", rows(value));
        }
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        span.record("duration_us", micros);
        result
    }
}

/// Whether statement events are wanted (a subscriber listens to `datastore::sql` at `DEBUG`).
#[inline]
pub(crate) fn statements_enabled() -> bool {
    tracing::enabled!(target: SQL, Level::DEBUG)
}

/// A statement about to run.
pub(crate) fn statement(sql: &str) {
    tracing::debug!(target: SQL, sql);
}

/// Whether slow statements are wanted (a subscriber listens to `datastore::slow` at `WARN`):
/// SQLite times statements only then.
#[inline]
pub(crate) fn slow_enabled() -> bool {
    tracing::enabled!(target: "datastore::slow", Level::WARN)
}

/// A statement that ran for `elapsed`, at least `threshold`.
pub(crate) fn slow(sql: &str, elapsed: Duration, threshold: Duration) {
    tracing::warn!(
        target: "datastore::slow",
        sql,
        elapsed_ms = elapsed.as_secs_f64() * 1000.0,
        threshold_ms = threshold.as_secs_f64() * 1000.0,
        "slow statement"
    );
}

/// The statements of a connection whose driver reports them through Diesel's instrumentation
/// (PostgreSQL's): their SQL as they start, and those slower than the threshold as they end.
#[derive(Debug, Default)]
pub(crate) struct StatementLog {
    threshold: Option<Duration>,
    /// When the running statement started, if statements are timed.
    started: Option<Instant>,
}

impl StatementLog {
    /// Statements slower than `threshold` are reported (none if `None`).
    pub(crate) fn new(threshold: Option<Duration>) -> Self {
        Self {
            threshold,
            started: None,
        }
    }

    pub(crate) fn on_event(&mut self, event: &InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartQuery { query, .. } => {
                if self.threshold.is_some() && slow_enabled() {
                    self.started = Some(Instant::now());
                }
                if statements_enabled() {
                    // The values only where `TRACE` is wanted: they are the application's
                    // data. Elsewhere they are not even formatted. They go in an event of
                    // their own, at `TRACE`: a subscriber that filters each of its layers
                    // reports `TRACE` as wanted if any layer wants it, and hands each event
                    // only to the layers that want its level, so that a layer kept at `DEBUG`
                    // never receives them.
                    tracing::debug!(target: SQL, sql = sql_of(*query).as_str());
                    // Not asked with `tracing::enabled!` first: a layer's own filter that
                    // refuses the level so asked would also drop the next event it is handed.
                    // The macro shows the query only where the event is wanted.
                    tracing::trace!(target: SQL, sql = %Part::Sql(*query), binds = %Part::Binds(*query));
                }
            }
            InstrumentationEvent::FinishQuery { query, .. } => {
                if let (Some(threshold), Some(started)) = (self.threshold, self.started.take()) {
                    let elapsed = started.elapsed();
                    if elapsed >= threshold {
                        slow(&sql_of(*query), elapsed, threshold);
                    }
                }
            }
            _ => {}
        }
    }
}

/// One part of a query as Diesel shows it (`SQL -- binds: [values]`), shown when a `TRACE`
/// event is wanted.
enum Part<'a> {
    Sql(&'a dyn DebugQuery),
    Binds(&'a dyn DebugQuery),
}

impl fmt::Display for Part<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Without showing the values, which `Binds` shows.
            Part::Sql(query) => f.write_str(&sql_of(*query)),
            Part::Binds(query) => f.write_str(split_binds(&query.to_string()).1),
        }
    }
}

/// What separates a query's SQL from its values as Diesel shows it: `SQL -- binds: [values]`.
const BINDS: &str = " -- binds: ";

/// Diesel shows a query as `SQL -- binds: [values]`: the SQL, and the values.
fn split_binds(text: &str) -> (&str, &str) {
    text.split_once(BINDS).unwrap_or((text, ""))
}

/// The SQL of `query`, as [`split_binds`] finds it in the query shown whole, without
/// formatting the values: the showing stops where they would begin.
fn sql_of(query: &dyn DebugQuery) -> String {
    let mut sql = UpToBinds(String::new());
    // An error is the stop at the values (or Diesel's failure to show the query): either way,
    // what was written is the SQL.
    let _ = write!(sql, "{query}");
    sql.0
}

/// Text written up to the first [`BINDS`], where it refuses the rest.
struct UpToBinds(String);

impl fmt::Write for UpToBinds {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // The separator may begin in text written before.
        let mut from = self.0.len().saturating_sub(BINDS.len() - 1);
        while !self.0.is_char_boundary(from) {
            from -= 1;
        }
        self.0.push_str(s);
        match self.0[from..].find(BINDS) {
            Some(at) => {
                self.0.truncate(from + at);
                Err(fmt::Error)
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::{UpToBinds, split_binds};

    #[test]
    fn a_query_as_diesel_shows_it_splits_into_sql_and_values() {
        assert_eq!(split_binds("SELECT $1 -- binds: [1]"), ("SELECT $1", "[1]"));
        assert_eq!(split_binds("BEGIN"), ("BEGIN", ""));
    }

    /// Written in any pieces, the text up to the values is what [`split_binds`] finds,
    /// and nothing after the separator is asked for.
    #[test]
    fn text_written_up_to_the_values_is_the_sql_split_binds_finds() {
        let shown = "SELECT 'é' -- binds: [1] -- binds: [2]";
        for piece in 1..=shown.len() {
            let mut sql = UpToBinds(String::new());
            let mut pieces = Vec::new();
            let mut rest = shown;
            while !rest.is_empty() {
                let mut end = piece.min(rest.len());
                while !rest.is_char_boundary(end) {
                    end += 1;
                }
                pieces.push(&rest[..end]);
                rest = &rest[end..];
            }
            let written = pieces
                .iter()
                .take_while(|p| sql.write_str(p).is_ok())
                .count();
            assert_eq!(sql.0, split_binds(shown).0, "in pieces of {piece}");
            assert!(written < pieces.len(), "stopped, in pieces of {piece}");
        }
        let mut sql = UpToBinds(String::new());
        assert!(sql.write_str("BEGIN").is_ok());
        assert_eq!(sql.0, "BEGIN");
    }
}
