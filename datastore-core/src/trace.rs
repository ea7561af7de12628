//! What the store reports through [`tracing`]: a span per operation, each statement's SQL, and
//! statements slower than a threshold.
//!
//! | target | level | what |
//! |---|---|---|
//! | `datastore` | `DEBUG` | a span per operation of [`Repo`](crate::Repo) (and so of [`Store`](crate::Store)): `model`, `operation`, `rows`, `duration_us` |
//! | `datastore::sql` | `DEBUG` | an event per statement, as it starts: `sql` (without its values) |
//! | `datastore::sql` | `DEBUG` | on PostgreSQL, with `TRACE` enabled, the statement's bound values too: `binds` |
//! | `datastore::slow` | `WARN` | a statement that ran for at least [`StoreBuilder::slow_statement_threshold`](crate::StoreBuilder::slow_statement_threshold): `sql`, `elapsed_ms`, `threshold_ms` |
//!
//! With no subscriber listening, each costs a check of `tracing`'s level per operation and
//! per query, and no clock is read for them: an operation is timed only when its span is
//! enabled, a statement only when a threshold is set and a subscriber listens to
//! `datastore::slow` (on SQLite by SQLite's profile event, whose hooks are otherwise off while
//! nobody observes; on PostgreSQL beside each round trip).

use std::time::{Duration, Instant};

use diesel::connection::InstrumentationEvent;
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
                    let text = query.to_string();
                    let (sql, binds) = split_binds(&text);
                    // The values only where `TRACE` is wanted: they are the application's data.
                    let binds = tracing::enabled!(target: SQL, Level::TRACE).then_some(binds);
                    tracing::debug!(target: SQL, sql, binds);
                }
            }
            InstrumentationEvent::FinishQuery { query, .. } => {
                if let (Some(threshold), Some(started)) = (self.threshold, self.started.take()) {
                    let elapsed = started.elapsed();
                    if elapsed >= threshold {
                        let text = query.to_string();
                        slow(split_binds(&text).0, elapsed, threshold);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Diesel shows a query as `SQL -- binds: [values]`: the SQL, and the values.
fn split_binds(text: &str) -> (&str, &str) {
    text.split_once(" -- binds: ").unwrap_or((text, ""))
}

#[cfg(test)]
mod tests {
    use super::split_binds;

    #[test]
    fn a_query_as_diesel_shows_it_splits_into_sql_and_values() {
        assert_eq!(split_binds("SELECT $1 -- binds: [1]"), ("SELECT $1", "[1]"));
        assert_eq!(split_binds("BEGIN"), ("BEGIN", ""));
    }
}
