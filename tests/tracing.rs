//! What the store reports through `tracing`: a span per operation, each statement's SQL, and
//! slow statements, on both backends.

mod common;

use std::time::Duration;

use common::models::Post;
use common::post;
use common::trace::recorded;
use datastore::prelude::*;

per_backend! {
    fn each_operation_is_a_span_with_its_model_rows_and_duration(store) {
        let saved = store.save(post("traced", 3)).unwrap();
        let (found, traced) = recorded(|| store.find::<Post>(&saved.id).unwrap());
        assert_eq!(found.as_ref(), Some(&saved));
        let operations: Vec<_> = traced
            .spans
            .iter()
            .filter(|(target, _)| target == "datastore")
            .map(|(_, fields)| fields)
            .collect();
        assert_eq!(operations.len(), 1, "{:?}", traced.spans);
        let find = operations[0];
        assert_eq!(find["model"], "posts");
        assert_eq!(find["operation"], "find");
        assert_eq!(find["rows"], "1");
        assert!(find["duration_us"].parse::<u64>().is_ok(), "{find:?}");

        // The statement it ran, inside it, without its values.
        let statements: Vec<_> = traced
            .events
            .iter()
            .filter(|(target, level, _)| target == "datastore::sql" && *level == tracing::Level::DEBUG)
            .map(|(_, _, fields)| fields["sql"].clone())
            .collect();
        assert_eq!(statements.len(), 1, "{statements:?}");
        assert!(statements[0].starts_with("SELECT"), "{statements:?}");
        assert!(!statements[0].contains(&saved.id.to_string()), "values stay out: {statements:?}");

        let (count, traced) = recorded(|| store.insert_all(vec![post("a", 1), post("b", 2)]).unwrap().len());
        assert_eq!(count, 2);
        let insert = traced.spans.iter().find(|(t, _)| t == "datastore").unwrap();
        assert_eq!((insert.1["operation"].as_str(), insert.1["rows"].as_str()), ("insert_all", "2"));
    }
}

#[test]
fn statements_slower_than_the_threshold_are_warned_about() {
    let stores = std::iter::once(
        Store::builder(":memory:")
            .migrations(datastore::embed_migrations!())
            .slow_statement_threshold(Some(Duration::ZERO))
            .open()
            .unwrap(),
    );
    let schema = common::postgres_url().map(|url| common::PgSchema::new(&url));
    let pg = schema.as_ref().map(|schema| {
        Store::builder(schema.url())
            .migrations(datastore::embed_migrations!())
            .slow_statement_threshold(Some(Duration::ZERO))
            .open()
            .unwrap()
    });
    for store in stores.chain(pg) {
        let ((), traced) = recorded(|| {
            store.save(post("slow", 1)).unwrap();
        });
        let slow: Vec<_> = traced
            .events
            .iter()
            .filter(|(target, level, _)| {
                target == "datastore::slow" && *level == tracing::Level::WARN
            })
            .collect();
        assert!(
            slow.iter()
                .any(|(_, _, fields)| fields["sql"].starts_with("INSERT")),
            "{:?}: {slow:?}",
            store.dialect()
        );
        assert!(slow.iter().all(|(_, _, f)| f.contains_key("elapsed_ms")));
    }

    // Without a threshold, none.
    let quiet = Store::builder(":memory:")
        .migrations(datastore::embed_migrations!())
        .slow_statement_threshold(None)
        .open()
        .unwrap();
    let ((), traced) = recorded(|| {
        quiet.save(post("quiet", 1)).unwrap();
    });
    assert!(!traced.events.iter().any(|(t, _, _)| t == "datastore::slow"));
}

per_backend! {
    fn a_cascade_delete_is_traced_as_the_one_statement_it_is(store) {
        use common::comment;
        use common::models::Comment;
        let parent = store.save(post("parent", 1)).unwrap();
        for text in ["one", "two", "three"] {
            store.save(comment(&parent, text)).unwrap();
        }
        // SQLite runs a foreign key's cascade as a subprogram for each row it deletes, and
        // reports each one's start under the deleting statement: still one statement.
        let ((), traced) = recorded(|| store.delete_by_id::<Post>(&parent.id).unwrap());
        assert_eq!(store.count::<Comment>().unwrap(), 0);
        let deletes: Vec<_> = traced
            .events
            .iter()
            .filter(|(target, level, _)| target == "datastore::sql" && *level == tracing::Level::DEBUG)
            .map(|(_, _, fields)| fields["sql"].clone())
            .filter(|sql| sql.starts_with("DELETE"))
            .collect();
        assert_eq!(deletes.len(), 1, "{deletes:?}");
    }
}

/// The application's own Diesel instrumentation (`set_default_instrumentation`) still hears
/// the statements of the store's connections, whose instrumentation the store sets: it passes
/// every event on.
#[test]
fn the_applications_default_instrumentation_hears_the_stores_statements() {
    use datastore::diesel::connection::{Instrumentation, InstrumentationEvent};
    use std::sync::atomic::{AtomicUsize, Ordering};

    static QUERIES: AtomicUsize = AtomicUsize::new(0);
    struct Counting;
    impl Instrumentation for Counting {
        fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
            if let InstrumentationEvent::FinishQuery { .. } = event {
                QUERIES.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    fn counting() -> Option<Box<dyn Instrumentation>> {
        Some(Box::new(Counting))
    }
    datastore::diesel::connection::set_default_instrumentation(counting).unwrap();

    let (_dir, store) = common::file_store();
    let mut stores = vec![store];
    let db = common::TestDb::postgres();
    if let Some(db) = &db {
        stores.push(db.store.clone());
    }
    for store in &stores {
        let before = QUERIES.load(Ordering::SeqCst);
        store.save(post("heard", 1)).unwrap();
        assert!(
            QUERIES.load(Ordering::SeqCst) > before,
            "no statement heard"
        );
    }
}

/// A document whose `Debug` counts how often it is shown: how often the store formats the
/// values it binds.
#[derive(Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Counted(String);

static SHOWN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl std::fmt::Debug for Counted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        SHOWN.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        f.debug_tuple("Counted").field(&self.0).finish()
    }
}

#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Tally {
    #[primary_key]
    pub id: Id,
    pub doc: datastore::Json<Counted>,
}

/// On PostgreSQL, statements traced at `DEBUG` but not `TRACE` show their SQL without
/// formatting their bound values at all (they are shown only at `TRACE`): the values are the
/// application's data, and formatting every one of every statement only to drop it cost time.
/// Before, each statement formatted all its values at `DEBUG` too. The values come in an
/// event of their own at `TRACE`, so that a layer filtered to `DEBUG` never receives them.
#[test]
fn on_postgres_bound_values_are_formatted_only_where_trace_is_wanted() {
    use std::sync::atomic::Ordering;
    use tracing::Level;
    let Some(url) = common::postgres_url() else {
        return;
    };
    let schema = common::PgSchema::new(&url);
    let created = Schema::new()
        .model::<Tally>()
        .create_sql(datastore::schema::Dialect::Postgres);
    let mut admin = datastore::diesel::PgConnection::establish(schema.url()).unwrap();
    datastore::diesel::connection::SimpleConnection::batch_execute(&mut admin, &created).unwrap();
    let store = Store::builder(schema.url()).open().unwrap();
    let tally = |text: &str| Tally {
        doc: datastore::Json(Counted(text.into())),
        ..Tally::default()
    };
    let statements = |traced: &common::trace::Recorded| -> Vec<(String, Option<String>)> {
        traced
            .events
            .iter()
            .filter(|(target, level, _)| target == "datastore::sql" && *level == Level::DEBUG)
            .map(|(_, _, fields)| (fields["sql"].clone(), fields.get("binds").cloned()))
            .collect()
    };

    let before = SHOWN.load(Ordering::SeqCst);
    let (saved, debug) =
        common::trace::recorded_up_to(Level::DEBUG, || store.save(tally("at debug")).unwrap());
    assert_eq!(
        SHOWN.load(Ordering::SeqCst),
        before,
        "no value was formatted at DEBUG"
    );
    let debug = statements(&debug);
    let insert = debug
        .iter()
        .find(|(sql, _)| sql.starts_with("INSERT"))
        .unwrap_or_else(|| panic!("the insert's SQL: {debug:?}"));
    assert!(!insert.0.contains("binds"), "{insert:?}");
    assert_eq!(insert.1, None, "{insert:?}");
    assert_eq!(
        store.find::<Tally>(&saved.id).unwrap().map(|t| t.doc.0 .0),
        Some("at debug".to_owned())
    );

    let (_, trace) =
        common::trace::recorded_up_to(Level::TRACE, || store.save(tally("at trace")).unwrap());
    assert!(
        SHOWN.load(Ordering::SeqCst) > before,
        "the values are formatted at TRACE"
    );
    let values = |traced: &common::trace::Recorded| -> Vec<(String, String)> {
        traced
            .events
            .iter()
            .filter(|(target, level, _)| target == "datastore::sql" && *level == Level::TRACE)
            .map(|(_, _, fields)| (fields["sql"].clone(), fields["binds"].clone()))
            .collect()
    };
    let insert_at_trace = statements(&trace)
        .into_iter()
        .find(|(sql, _)| sql.starts_with("INSERT"))
        .unwrap_or_else(|| panic!("the insert's SQL: {trace:?}"));
    assert_eq!(
        insert_at_trace,
        (insert.0.clone(), None),
        "the same DEBUG event"
    );
    let values_at_trace = values(&trace);
    let (sql, binds) = values_at_trace
        .iter()
        .find(|(sql, _)| sql.starts_with("INSERT"))
        .unwrap_or_else(|| panic!("the insert's values: {trace:?}"));
    assert_eq!(sql, &insert.0, "the same SQL at either level");
    assert!(binds.contains(r#"Json(Counted("at trace"))"#), "{binds:?}");

    // A layer filtered to `DEBUG` by a filter of its own: the subscriber says `TRACE` is
    // wanted (a layer could want it), and the layer gets the statements, never their values
    // (before, they came as a field of the `DEBUG` event).
    let (_, by_layer) = common::trace::recorded_by_a_layer_up_to(Level::DEBUG, || {
        store.save(tally("by a layer")).unwrap()
    });
    let at_debug = statements(&by_layer);
    assert!(
        at_debug.iter().any(|(sql, _)| sql.starts_with("INSERT")),
        "{at_debug:?}"
    );
    assert!(
        at_debug.iter().all(|(_, binds)| binds.is_none()),
        "{at_debug:?}"
    );
    assert!(values(&by_layer).is_empty(), "{by_layer:?}");
}
