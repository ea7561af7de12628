//! Values are stored as given or refused with a typed error, and read back as stored or refused:
//! never changed without a word (a NaN turned into NULL, a wide integer truncated).

mod common;

use std::time::Duration;

use datastore::diesel::connection::SimpleConnection;
use datastore::diesel::RunQueryDsl;
use datastore::observe::{Observed, Op};
use datastore::prelude::*;
use datastore::{Error, MAX_JSON_DEPTH};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Reading {
    #[primary_key]
    pub id: Id,
    pub exact: f64,
    pub maybe: Option<f64>,
    pub narrow: f32,
    pub count: i32,
    pub level: i16,
    pub flag: bool,
}

/// A document of both JSON kinds: schemaless, and typed.
#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Document {
    #[primary_key]
    pub id: Id,
    pub body: serde_json::Value,
    pub outline: Json<Outline>,
    pub measure: Json<Measure>,
}

/// A typed document holding numbers: JSON has no NaN or infinity.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Measure {
    pub value: f64,
    pub maybe: Option<f64>,
    pub samples: Vec<f32>,
}

/// A typed document whose nesting has no bound of its own: each level is an object holding an
/// array (two levels of JSON).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Outline {
    pub sections: Vec<Outline>,
}

/// Documents kept as the JSON text they were given (serde_json's `RawValue`, written verbatim):
/// whole, and inside a typed document.
#[derive(Model, Debug, Clone, Default)]
pub struct RawDocument {
    #[primary_key]
    pub id: Id,
    pub body: Json<Box<RawValue>>,
    pub envelope: Json<Envelope>,
}

/// A typed document holding JSON text, one level below its own.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Envelope {
    pub payload: Box<RawValue>,
}

/// An instant.
#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Stamp {
    #[primary_key]
    pub id: Id,
    pub at: Timestamp,
}

fn schema() -> Schema {
    Schema::new()
        .model::<Reading>()
        .model::<Document>()
        .model::<RawDocument>()
        .model::<Stamp>()
}

/// One test body, run on SQLite in memory and on the PostgreSQL server (in a schema of its
/// own), each with the `readings` table.
macro_rules! per_backend {
    (fn $name:ident($store:ident) $body:block) => {
        mod $name {
            use super::*;

            #[test]
            fn sqlite() {
                let $store = Store::builder(":memory:").schema(schema()).open().unwrap();
                $body
            }

            #[test]
            fn postgres() {
                let Some(url) = common::postgres_url() else {
                    return;
                };
                // Declared first, dropped last: the schema outlives the store.
                let pg = common::PgSchema::new(&url);
                let $store = Store::builder(pg.url()).schema(schema()).open().unwrap();
                $body
            }
        }
    };
}

/// Readings holding a NaN in each floating-point field.
fn with_nan() -> Vec<Reading> {
    vec![
        Reading {
            maybe: Some(f64::NAN),
            ..Reading::default()
        },
        Reading {
            exact: f64::NAN,
            ..Reading::default()
        },
        Reading {
            narrow: f32::NAN,
            ..Reading::default()
        },
    ]
}

fn is_nan_as_saved(saved: &Reading, stored: &Reading) -> bool {
    let same = |a: f64, b: f64| a == b || (a.is_nan() && b.is_nan());
    same(saved.exact, stored.exact)
        && match (saved.maybe, stored.maybe) {
            (Some(a), Some(b)) => same(a, b),
            (a, b) => a == b,
        }
        && same(saved.narrow as f64, stored.narrow as f64)
}

per_backend!(
    fn a_nan_is_stored_as_given_or_refused_with_a_typed_error(store) {
        for reading in with_nan() {
            if store.dialect() == Dialect::Sqlite {
                let err = store.save(reading.clone()).unwrap_err();
                assert!(matches!(err, Error::NanUnsupported), "{err:?}");
                assert!(err.to_string().contains("NaN"), "{err}");
                let err = store.insert_all(vec![reading]).unwrap_err();
                assert!(matches!(err, Error::NanUnsupported), "{err:?}");
                assert_eq!(store.count::<Reading>().unwrap(), 0, "nothing was written");
            } else {
                let saved = store.save(reading.clone()).unwrap();
                let stored: Reading = store.get(&saved.id).unwrap();
                assert!(is_nan_as_saved(&reading, &stored), "{stored:?}");
            }
        }
    }
);

per_backend!(
    fn infinities_and_extremes_round_trip(store) {
        let reading = store
            .save(Reading {
                exact: f64::NEG_INFINITY,
                maybe: Some(f64::MAX),
                narrow: f32::INFINITY,
                count: i32::MIN,
                level: i16::MAX,
                flag: true,
                ..Reading::default()
            })
            .unwrap();
        assert_eq!(store.get::<Reading>(&reading.id).unwrap(), reading);
    }
);

/// Makes the columns able to hold wider values, as another program (or an older schema) might:
/// SQLite columns hold any integer or double already.
fn widen(store: &Store) {
    if store.dialect() == Dialect::Postgres {
        store
            .conn()
            .unwrap()
            .batch_execute(
                "ALTER TABLE readings ALTER COLUMN count TYPE bigint, \
                 ALTER COLUMN level TYPE bigint, ALTER COLUMN narrow TYPE double precision, \
                 ALTER COLUMN flag TYPE bigint USING flag::int",
            )
            .unwrap();
    }
}

per_backend!(
    fn a_stored_value_wider_than_its_field_is_refused_not_truncated(store) {
        let reading = store.save(Reading::default()).unwrap();
        widen(&store);
        let set = |assignment: &str| {
            store
                .conn()
                .unwrap()
                .batch_execute(&format!("UPDATE readings SET {assignment}"))
                .unwrap();
        };
        for (assignment, value, field_type) in [
            ("count = 4294967297", "4294967297", "i32"),
            ("level = 70000", "70000", "i16"),
            ("narrow = 1e300", "1e300", "f32"),
            ("flag = 4294967296", "4294967296", "bool"),
        ] {
            set(assignment);
            let refused = |err: &Error| match err {
                Error::OutOfRange {
                    value: shown,
                    field_type: shown_type,
                    ..
                } => shown == value && *shown_type == field_type,
                _ => false,
            };
            let err = store.find::<Reading>(&reading.id).unwrap_err();
            assert!(refused(&err), "{assignment}: {err:?}");
            let err = store.all::<Reading>().unwrap_err();
            assert!(refused(&err), "{assignment}: {err:?}");
            let err = store
                .query::<Reading>(|q| q.filter(readings::id.eq(reading.id)))
                .unwrap_err();
            assert!(refused(&err), "{assignment}: {err:?}");
            set("count = 0, level = 0, narrow = 0, flag = 0");
        }
        // A value that fits reads as stored, whatever the column's width.
        set("count = -2147483648, level = 32767, narrow = 0.5, flag = 1");
        let stored: Reading = store.get(&reading.id).unwrap();
        assert_eq!(
            (stored.count, stored.level, stored.narrow, stored.flag),
            (i32::MIN, i16::MAX, 0.5, true)
        );
    }
);

/// A JSON value nesting `depth` arrays around a number, built without recursion (`json!`
/// would copy the inner value each time, recursively).
fn nested(depth: usize) -> serde_json::Value {
    (0..depth).fold(serde_json::json!(1), |inner, _| {
        serde_json::Value::Array(vec![inner])
    })
}

/// An outline nesting `depth` levels of JSON (`depth` even): the innermost,
/// `{"sections":[]}`, is 2 levels, and each around it 2 more.
fn nested_outline(depth: usize) -> Outline {
    (1..depth / 2).fold(Outline::default(), |inner, _| Outline {
        sections: vec![inner],
    })
}

per_backend!(
    fn json_nested_to_the_limit_is_saved_and_read_back(store) {
        let saved = store
            .save(Document {
                body: nested(MAX_JSON_DEPTH),
                outline: Json(nested_outline(MAX_JSON_DEPTH)),
                ..Document::default()
            })
            .unwrap();
        let inserted = store
            .insert_all(vec![Document {
                body: nested(MAX_JSON_DEPTH),
                ..Document::default()
            }])
            .unwrap();
        assert_eq!(store.find::<Document>(&saved.id).unwrap(), Some(saved.clone()));
        assert_eq!(store.all::<Document>().unwrap(), vec![saved, inserted[0].clone()]);
    }
);

/// Each of `documents`, saved and inserted, is refused with `JsonTooDeep` (the caller checks
/// that nothing was written).
fn refused_as_too_deep<M>(store: &Store, documents: impl IntoIterator<Item = M>)
where
    M: datastore::Persist<datastore::AnyConnection> + Clone + std::fmt::Debug,
{
    for document in documents {
        let err = store.save(document.clone()).unwrap_err();
        assert!(
            matches!(
                err,
                Error::JsonTooDeep {
                    limit: MAX_JSON_DEPTH
                }
            ),
            "{document:?}: {err:?}"
        );
        let err = store.insert_all(vec![document]).unwrap_err();
        assert!(matches!(err, Error::JsonTooDeep { .. }), "{err:?}");
    }
}

per_backend!(
    fn json_nested_past_the_limit_is_refused_and_nothing_is_written(store) {
        let too_deep = [
            Document {
                body: nested(MAX_JSON_DEPTH + 1),
                ..Document::default()
            },
            Document {
                outline: Json(nested_outline(MAX_JSON_DEPTH + 2)),
                ..Document::default()
            },
        ];
        refused_as_too_deep(&store, too_deep);
        assert_eq!(store.count::<Document>().unwrap(), 0);
        assert_eq!(store.all::<Document>().unwrap(), vec![]);
    }
);

per_backend!(
    fn json_nested_ten_thousand_levels_is_refused_without_overflowing_the_stack(store) {
        // A thread with the default 2 MiB stack of test threads.
        let on_small_stack = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let document = Document {
                    body: nested(10_000),
                    outline: Json(nested_outline(10_000)),
                    ..Document::default()
                };
                let err = store.save(document).unwrap_err();
                assert!(matches!(err, Error::JsonTooDeep { .. }), "{err:?}");
                let err = store
                    .insert_all(vec![Document {
                        outline: Json(nested_outline(10_000)),
                        ..Document::default()
                    }])
                    .unwrap_err();
                assert!(matches!(err, Error::JsonTooDeep { .. }), "{err:?}");
                assert_eq!(store.count::<Document>().unwrap(), 0);
            })
            .unwrap();
        on_small_stack.join().expect("no stack overflow, no panic");
    }
);

/// JSON text nesting `depth` arrays around a number, as a `RawValue` (which serde_json reads
/// and writes without nesting into it).
fn raw_nested(depth: usize) -> Box<RawValue> {
    RawValue::from_string(format!("{}1{}", "[".repeat(depth), "]".repeat(depth))).unwrap()
}

per_backend!(
    fn raw_json_text_nested_past_the_limit_is_refused_and_nothing_is_written(store) {
        // To the limit, the envelope's own level counted; brackets in strings are text.
        let in_strings = format!(r#"["\"\\{}", "{}"]"#, "[".repeat(200), "{".repeat(200));
        let fits = [
            RawDocument {
                body: Json(raw_nested(MAX_JSON_DEPTH)),
                envelope: Json(Envelope { payload: raw_nested(MAX_JSON_DEPTH - 1) }),
                ..RawDocument::default()
            },
            RawDocument {
                body: Json(RawValue::from_string(in_strings.clone()).unwrap()),
                ..RawDocument::default()
            },
        ];
        for document in fits {
            let saved = store.save(document).unwrap();
            let found = store.get::<RawDocument>(&saved.id).unwrap();
            let text = |raw: &RawValue| serde_json::from_str::<serde_json::Value>(raw.get()).ok();
            assert_eq!(text(&found.body), text(&saved.body));
            assert_eq!(text(&found.envelope.payload), text(&saved.envelope.payload));
        }
        let too_deep = [
            RawDocument {
                body: Json(raw_nested(MAX_JSON_DEPTH + 1)),
                ..RawDocument::default()
            },
            RawDocument {
                envelope: Json(Envelope { payload: raw_nested(MAX_JSON_DEPTH) }),
                ..RawDocument::default()
            },
            RawDocument {
                body: Json(raw_nested(200)),
                ..RawDocument::default()
            },
        ];
        refused_as_too_deep(&store, too_deep);
        assert_eq!(store.count::<RawDocument>().unwrap(), 2, "nothing more was written");
    }
);

per_backend!(
    fn json_nested_ten_thousand_levels_is_refused_with_statements_and_their_values_traced(store) {
        // A thread with the default 2 MiB stack of test threads, where every statement and its
        // values are traced (PostgreSQL's values are formatted as the statement starts, before
        // they are written).
        let on_small_stack = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let (err, traced) = common::trace::recorded(|| {
                    store
                        .save(Document {
                            body: nested(10_000),
                            ..Document::default()
                        })
                        .unwrap_err()
                });
                assert!(matches!(err, Error::JsonTooDeep { .. }), "{err:?}");
                let binds: Vec<&String> =
                    traced.events.iter().filter_map(|(_, _, fields)| fields.get("binds")).collect();
                if store.dialect() == Dialect::Postgres {
                    assert!(
                        binds.iter().any(|binds| binds.contains("nested more than 100 levels deep")),
                        "{binds:?}"
                    );
                }
                assert_eq!(store.count::<Document>().unwrap(), 0);

                // A value within the limit is traced as it is.
                let document = Document {
                    body: serde_json::json!({"tags": ["traced"]}),
                    ..Document::default()
                };
                let (_, traced) = common::trace::recorded(|| store.save(document).unwrap());
                let binds: Vec<&String> =
                    traced.events.iter().filter_map(|(_, _, fields)| fields.get("binds")).collect();
                if store.dialect() == Dialect::Postgres {
                    assert!(
                        binds.iter().any(|binds| binds.contains(r#"Json(Object {"tags": Array [String("traced")]})"#)),
                        "{binds:?}"
                    );
                }
            })
            .unwrap();
        on_small_stack.join().expect("no stack overflow, no panic");
    }
);

per_backend!(
    fn a_json_value_holding_a_nan_or_an_infinity_is_refused_and_nothing_is_written(store) {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            // serde_json would write each as null: the first would not read back, the second
            // would read back as None, the third as nothing at all.
            for measure in [
                Measure { value: bad, ..Measure::default() },
                Measure { maybe: Some(bad), ..Measure::default() },
                Measure { samples: vec![1.0, bad as f32], ..Measure::default() },
            ] {
                let document = Document { measure: Json(measure), ..Document::default() };
                let err = store.save(document.clone()).unwrap_err();
                assert!(matches!(err, Error::JsonNonFinite), "{err:?}");
                assert!(err.to_string().contains("nothing was written"), "{err}");
                let err = store.insert_all(vec![document]).unwrap_err();
                assert!(matches!(err, Error::JsonNonFinite), "{err:?}");
            }
        }
        assert_eq!(store.count::<Document>().unwrap(), 0, "nothing was written");
        assert_eq!(store.all::<Document>().unwrap(), vec![]);
        // Finite numbers, however large or small, are stored and read back as given.
        let finite = Measure { value: f64::MAX, maybe: Some(-f64::MIN_POSITIVE), samples: vec![f32::MIN] };
        let saved = store
            .save(Document { measure: Json(finite), ..Document::default() })
            .unwrap();
        assert_eq!(store.get::<Document>(&saved.id).unwrap(), saved);
    }
);

per_backend!(
    fn an_integer_column_of_another_width_reads_when_the_value_fits(store) {
        let reading = store.save(Reading { level: -7, count: 9, ..Reading::default() }).unwrap();
        if store.dialect() == Dialect::Postgres {
            // As another program (or an older schema) may have declared them.
            store
                .conn()
                .unwrap()
                .batch_execute(
                    "ALTER TABLE readings ALTER COLUMN level TYPE integer, \
                     ALTER COLUMN count TYPE smallint",
                )
                .unwrap();
        }
        assert_eq!(store.get::<Reading>(&reading.id).unwrap(), reading);
        store
            .conn()
            .unwrap()
            .batch_execute("UPDATE readings SET level = 70000")
            .unwrap();
        let err = store.get::<Reading>(&reading.id).unwrap_err();
        assert!(
            matches!(&err, Error::OutOfRange { value, field_type: "i16", .. } if value == "70000"),
            "{err:?}"
        );
    }
);

per_backend!(
    fn an_instant_no_timestamp_can_hold_is_refused_when_read(store) {
        let stamp = store.save(Stamp::default()).unwrap();
        // PostgreSQL's infinities, and the years past chrono's range that PostgreSQL holds;
        // SQLite's text that is no instant.
        let stored = match store.dialect() {
            Dialect::Postgres => &["'infinity'", "'-infinity'", "'294000-01-01 00:00:00Z'"][..],
            _ => &["'infinity'", "'2026-13-01T00:00:00Z'"][..],
        };
        for value in stored {
            store
                .conn()
                .unwrap()
                .batch_execute(&format!("UPDATE stamps SET at = {value}"))
                .unwrap();
            assert!(store.find::<Stamp>(&stamp.id).is_err(), "{value}");
            assert!(store.all::<Stamp>().is_err(), "{value}");
        }
    }
);

per_backend!(
    fn a_timestamp_past_four_digit_years_is_refused_on_sqlite_and_kept_on_postgres(store) {
        let kept = store.save(Stamp::default()).unwrap();
        for (year, month, day) in [(10_000, 1, 1), (-1, 12, 31)] {
            let date = chrono::NaiveDate::from_ymd_opt(year, month, day).unwrap();
            let at = Timestamp::from(date.and_hms_opt(0, 0, 0).unwrap().and_utc());
            let stamp = Stamp {
                at,
                ..Stamp::default()
            };
            if store.dialect() == Dialect::Sqlite {
                // Stored as text, "+10000-..." would sort before "2026-...", and compare so.
                for err in [
                    store.save(stamp.clone()).unwrap_err(),
                    store.insert_all(vec![stamp.clone()]).unwrap_err(),
                    store
                        .save(Stamp {
                            at,
                            ..kept.clone()
                        })
                        .unwrap_err(),
                    store.query::<Stamp>(|q| q.filter(stamps::at.lt(at))).unwrap_err(),
                ] {
                    assert!(
                        matches!(err, Error::TimestampOutOfRange { value } if value == at),
                        "{err:?}"
                    );
                    assert!(err.to_string().contains("9999"), "{err}");
                }
                assert_eq!(store.all::<Stamp>().unwrap(), vec![kept.clone()], "nothing written");
            } else {
                // Observed as read: the feed's text is the instant's.
                let stamps = store.observe::<Stamp>().unwrap();
                let saved = store.save(stamp).unwrap();
                assert_eq!(store.get::<Stamp>(&saved.id).unwrap().at, at);
                match stamps.recv_timeout(Duration::from_secs(10)) {
                    Some(Observed::Change(change)) => assert_eq!(change.element.at, at),
                    other => panic!("{year}: {other:?}"),
                }
                store.delete(&saved).unwrap();
            }
        }
        // Before PostgreSQL's earliest instant (4714-11-24 BC), which chrono holds: refused on
        // both backends before anything runs, not failed by the server with an error of no
        // kind.
        let earliest = |year| {
            let date = chrono::NaiveDate::from_ymd_opt(year, 11, 24).unwrap();
            Timestamp::from(date.and_hms_opt(0, 0, 0).unwrap().and_utc())
        };
        let too_early = Timestamp::from(chrono::DateTime::<chrono::Utc>::from(earliest(-4713)) - chrono::Duration::microseconds(1));
        for err in [
            store
                .save(Stamp {
                    at: too_early,
                    ..Stamp::default()
                })
                .unwrap_err(),
            store.query::<Stamp>(|q| q.filter(stamps::at.lt(too_early))).unwrap_err(),
        ] {
            assert!(
                matches!(err, Error::TimestampOutOfRange { value } if value == too_early),
                "{:?}: {err:?}",
                store.dialect()
            );
        }
        if store.dialect() == Dialect::Postgres {
            let saved = store
                .save(Stamp {
                    at: earliest(-4713),
                    ..Stamp::default()
                })
                .unwrap();
            assert_eq!(store.get::<Stamp>(&saved.id).unwrap().at, earliest(-4713));
            store.delete(&saved).unwrap();
        }
        assert_eq!(store.all::<Stamp>().unwrap(), vec![kept], "nothing written");
    }
);

per_backend!(
    fn a_key_stored_in_another_spelling_is_refused_not_read_as_unfindable(store) {
        let stamps = store.observe::<Stamp>().unwrap();
        // As another program may write a UUID: uppercase, or without its hyphens.
        for (written, id) in [
            (
                "0193A4F2-7C1E-7D3A-8B2C-5E6F7A8B9C0D",
                "0193a4f2-7c1e-7d3a-8b2c-5e6f7a8b9c0d",
            ),
            (
                "0193a4f27c1e7d3a8b2c5e6f7a8b9c0e",
                "0193a4f2-7c1e-7d3a-8b2c-5e6f7a8b9c0e",
            ),
        ] {
            store
                .conn()
                .unwrap()
                .batch_execute(&format!(
                    "INSERT INTO stamps (id, at) VALUES ('{written}', '2026-12-04T10:00:00Z')"
                ))
                .unwrap();
            let id: Id = id.parse().unwrap();
            // The change is reported as the read would be: undecodable on SQLite.
            match (store.dialect(), stamps.recv_timeout(Duration::from_secs(10))) {
                (Dialect::Sqlite, Some(Observed::Undecodable { reason, .. })) => {
                    assert!(reason.contains(written) && reason.contains("lowercase"), "{reason}")
                }
                (Dialect::Postgres, Some(Observed::Change(change))) => {
                    assert_eq!(change.element.id, id)
                }
                (_, other) => panic!("{other:?}"),
            }
            if store.dialect() == Dialect::Sqlite {
                // Read, the row would carry a key that finds nothing: refused, naming the text.
                let err = store.all::<Stamp>().unwrap_err();
                match &err {
                    Error::OutOfRange { value, .. } => assert_eq!(value, written),
                    other => panic!("{other:?}"),
                }
                assert!(err.to_string().contains("lowercase"), "{err}");
                assert!(store.find::<Stamp>(&id).unwrap().is_none());
            } else {
                // PostgreSQL's uuid type keeps the value, not its spelling.
                assert_eq!(store.get::<Stamp>(&id).unwrap().id, id);
            }
            store
                .conn()
                .unwrap()
                .batch_execute("DELETE FROM stamps")
                .unwrap();
            // Its delete, reported likewise.
            match stamps.recv_timeout(Duration::from_secs(10)) {
                Some(Observed::Undecodable { reason, .. }) => assert!(reason.contains(written)),
                Some(Observed::Change(change)) => assert_eq!(change.op, Op::Delete),
                other => panic!("{other:?}"),
            }
        }
    }
);

/// Runs `postgres` on PostgreSQL, `sqlite` on SQLite.
fn change(store: &Store, postgres: &str, sqlite: &str) {
    let sql = match store.dialect() {
        Dialect::Postgres => postgres,
        _ => sqlite,
    };
    store.conn().unwrap().batch_execute(sql).unwrap();
}

per_backend!(
    fn text_in_a_number_column_is_refused_not_read_as_a_number(store) {
        let reading = store.save(Reading { count: 1234, ..Reading::default() }).unwrap();
        let mut conn = store.conn().unwrap();
        if store.dialect() != Dialect::Postgres {
            // A STRICT table holds no text in a number column.
            assert!(conn.batch_execute("UPDATE readings SET count = '1234 apples'").is_err());
            return;
        }
        // Numbers in an array (whose elements Diesel reads under the array's type) read.
        if let datastore::AnyConnection::Postgres(pg) = &mut *conn {
            use datastore::diesel::sql_types::{Array, Integer};
            let read: Vec<datastore::Checked<i32>> =
                datastore::diesel::select(datastore::diesel::dsl::sql::<Array<Integer>>(
                    "ARRAY[1, -2]::integer[]",
                ))
                .get_result(pg)
                .unwrap();
            assert_eq!(read, [datastore::Checked(1), datastore::Checked(-2)]);
        }
        // As another program (or a newer schema, during a rolling deploy) may have made it:
        // the text's bytes would be another number (`"1234"` is the integer 825373492).
        conn.batch_execute("ALTER TABLE readings ALTER COLUMN count TYPE text")
            .unwrap();
        drop(conn);
        let err = store.get::<Reading>(&reading.id).unwrap_err();
        assert!(
            matches!(&err, Error::OutOfRange { value, field_type: "i32", .. }
                if value == "\"1234\""),
            "{err:?}"
        );
        // A type whose binary form is no number of ours is named, not shown as its bytes
        // (numeric 1's are valid UTF-8: control characters).
        store
            .conn()
            .unwrap()
            .batch_execute(
                "ALTER TABLE readings ALTER COLUMN count TYPE numeric USING count::numeric; \
                 UPDATE readings SET count = 1",
            )
            .unwrap();
        let err = store.get::<Reading>(&reading.id).unwrap_err();
        assert!(
            matches!(&err, Error::OutOfRange { value, field_type: "i32", .. }
                if value == "a value of PostgreSQL type numeric"),
            "{err:?}"
        );
    }
);

per_backend!(
    fn a_number_column_of_another_type_reads_the_number_it_holds(store) {
        let reading = store.save(Reading { exact: 2.5, narrow: 0.5, ..Reading::default() }).unwrap();
        // An integer in a double's column, a double in a float's.
        change(
            &store,
            "ALTER TABLE readings ALTER COLUMN exact TYPE bigint USING 3, \
             ALTER COLUMN narrow TYPE double precision",
            "UPDATE readings SET exact = 3",
        );
        let stored = store.get::<Reading>(&reading.id).unwrap();
        assert_eq!((stored.exact, stored.narrow), (3.0, 0.5));
    }
);

/// Keys and instants are read from the bytes SQLite keeps (`datastore::Selection`): in a UTF-8
/// database and in one created in UTF-16 (either byte order), every read (`find`, `all`, a
/// query, `save`'s returned row) gives back what was saved, another form of an instant reads as
/// the same instant, and a key in another spelling is refused, naming its text.
#[test]
fn keys_and_instants_read_back_from_utf8_and_utf16_databases() {
    use datastore::diesel::{Connection, SqliteConnection};

    for encoding in ["UTF-8", "UTF-16le", "UTF-16be"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("values.db").display().to_string();
        // The encoding is fixed when the database's first table is created.
        SqliteConnection::establish(&path)
            .unwrap()
            .batch_execute(&format!(
                "PRAGMA encoding = '{encoding}'; CREATE TABLE made_first (x)"
            ))
            .unwrap();
        let store = Store::builder(&path).schema(schema()).open().unwrap();

        let saved = store.save(Stamp::default()).unwrap();
        assert_eq!(
            store.find::<Stamp>(&saved.id).unwrap().as_ref(),
            Some(&saved),
            "{encoding}"
        );
        assert_eq!(
            store.all::<Stamp>().unwrap(),
            vec![saved.clone()],
            "{encoding}"
        );
        let at = saved.at;
        let queried = store
            .query::<Stamp>(|q| q.filter(stamps::at.eq(at)))
            .unwrap();
        assert_eq!(queried, vec![saved.clone()], "{encoding}");

        // Another program's forms of one instant: SQLite's own, and RFC 3339 with an offset.
        let noon: Timestamp = "2026-12-04T10:00:00Z".parse().unwrap();
        for (key, written) in [
            (
                "0193a4f2-7c1e-7d3a-8b2c-5e6f7a8b9c01",
                "2026-12-04 10:00:00",
            ),
            (
                "0193a4f2-7c1e-7d3a-8b2c-5e6f7a8b9c02",
                "2026-12-04T11:00:00+01:00",
            ),
        ] {
            store
                .conn()
                .unwrap()
                .batch_execute(&format!(
                    "INSERT INTO stamps (id, at) VALUES ('{key}', '{written}')"
                ))
                .unwrap();
            let id: Id = key.parse().unwrap();
            let found = store.get::<Stamp>(&id).unwrap();
            assert_eq!((found.id, found.at), (id, noon), "{encoding}: {written}");
        }
        assert_eq!(store.all::<Stamp>().unwrap().len(), 3, "{encoding}");

        let upper = "0193A4F2-7C1E-7D3A-8B2C-5E6F7A8B9C0D";
        store
            .conn()
            .unwrap()
            .batch_execute(&format!(
                "INSERT INTO stamps (id, at) VALUES ('{upper}', '2026-12-04T10:00:00Z')"
            ))
            .unwrap();
        match store.all::<Stamp>().unwrap_err() {
            Error::OutOfRange { value, .. } => assert_eq!(value, upper, "{encoding}"),
            other => panic!("{encoding}: {other:?}"),
        }
    }
}
