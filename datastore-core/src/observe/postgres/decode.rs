//! The text forms the PostgreSQL change feed is made of, read back: notifications, snapshots,
//! stored payloads (a row as PostgreSQL's composite-value text, its columns as an array
//! literal), and column values turned into what SQLite would have stored.

use std::sync::Arc;

use serde::Deserialize;

use super::super::{Columns, Op, Rows};

/// A notification on the store's channel, as the listener reads it. Anything else is not
/// ours (a role that can connect may send anything there) and is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Note {
    /// A committed change: its row in the change table, and the token stored with it.
    Change { id: i64, token: String },
    /// A listener's fence, by its nonce.
    Fence(String),
    /// A subscription's start, by its nonce.
    Marker(String),
}

impl Note {
    /// `<id>:<token>`, `f:<nonce>`, `m:<nonce>`; nonces and tokens are UUIDs.
    pub fn parse(payload: &str) -> Option<Self> {
        let (head, tail) = payload.split_once(':')?;
        if !is_uuid(tail) {
            return None;
        }
        match head {
            "f" => Some(Self::Fence(tail.to_owned())),
            "m" => Some(Self::Marker(tail.to_owned())),
            _ if !head.is_empty() && head.bytes().all(|b| b.is_ascii_digit()) => {
                Some(Self::Change {
                    id: head.parse().ok()?,
                    token: tail.to_owned(),
                })
            }
            _ => None,
        }
    }
}

/// A UUID in its hyphenated or simple lowercase form, as PostgreSQL and `uuid` write them.
fn is_uuid(text: &str) -> bool {
    matches!(text.len(), 32 | 36)
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b'-')
}

/// Which transactions had ended when a snapshot was taken (`pg_current_snapshot()`'s text,
/// `xmin:xmax:xip,..`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Snapshot {
    pub xmin: i64,
    pub xmax: i64,
    pub running: Vec<i64>,
}

impl Snapshot {
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.splitn(3, ':');
        let xmin = parts.next()?.parse().ok()?;
        let xmax = parts.next()?.parse().ok()?;
        let running = match parts.next()? {
            "" => Vec::new(),
            list => list
                .split(',')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?,
        };
        Some(Self {
            xmin,
            xmax,
            running,
        })
    }

    /// Whether the transaction `xid` had ended (committed or rolled back).
    pub fn ended(&self, xid: i64) -> bool {
        xid < self.xmin || (xid < self.xmax && !self.running.contains(&xid))
    }
}

/// What the trigger stores for a change (beside its transaction and token): flat JSON whose
/// values are strings, so that reading it back adds no nesting to the row's own JSON.
#[derive(Debug, Deserialize)]
pub(super) struct Payload {
    pub op: String,
    pub depth: i32,
    /// When the change's statement started: tells statements apart.
    pub statement: String,
    /// The table's columns when the trigger ran (`{"name oid",..}`).
    pub columns: String,
    /// The rows, as composite-value text.
    pub old: Option<String>,
    pub new: Option<String>,
}

impl Payload {
    pub fn op(&self) -> Option<Op> {
        match self.op.as_str() {
            "INSERT" => Some(Op::Insert),
            "UPDATE" => Some(Op::Update),
            "DELETE" | "TRUNCATE" => Some(Op::Delete),
            _ => None,
        }
    }
}

/// A table's columns from their array literal: each element is a name, a space, and the
/// type's OID (split at the last space: names may hold spaces).
pub(super) fn parse_columns(text: &str) -> Option<Columns> {
    let mut names = Vec::new();
    let mut types = Vec::new();
    for element in parse_array(text)? {
        let (name, oid) = element.rsplit_once(' ')?;
        names.push(Arc::from(name));
        types.push(oid.parse().ok()?);
    }
    Some(Columns { names, types })
}

/// The elements of a one-dimensional array literal without NULLs: `{a,"b c","d\"e"}`.
fn parse_array(text: &str) -> Option<Vec<String>> {
    let inner = text.strip_prefix('{')?.strip_suffix('}')?;
    if inner.is_empty() {
        return Some(Vec::new());
    }
    let mut elements = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        let mut element = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '\\' => element.push(chars.next()?),
                    '"' => break,
                    c => element.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                element.push(c);
                chars.next();
            }
        }
        elements.push(element);
        match chars.next() {
            None => return Some(elements),
            Some(',') => {}
            Some(_) => return None,
        }
    }
}

/// The fields of a composite value's text (`record_out`): `(1,,"a ""b""",\x)`. An empty
/// field is SQL NULL; a quoted one (an empty string is `""`) doubles its quotes and
/// backslashes. `count` is how many fields the row has (a row of no columns is `()`).
fn parse_record(text: &str, count: usize) -> Option<Vec<Option<String>>> {
    let inner = text.strip_prefix('(')?.strip_suffix(')')?;
    if count == 0 {
        return inner.is_empty().then(Vec::new);
    }
    let mut fields = Vec::with_capacity(count);
    let mut chars = inner.chars().peekable();
    loop {
        let field = match chars.peek() {
            None | Some(',') => None,
            Some('"') => {
                chars.next();
                let mut value = String::new();
                loop {
                    match chars.next()? {
                        '"' if chars.peek() == Some(&'"') => {
                            chars.next();
                            value.push('"');
                        }
                        '"' => break,
                        '\\' => value.push(chars.next()?),
                        c => value.push(c),
                    }
                }
                Some(value)
            }
            Some(_) => {
                let mut value = String::new();
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
                Some(value)
            }
        };
        fields.push(field);
        match chars.next() {
            None => break,
            Some(',') => {}
            Some(_) => return None,
        }
    }
    (fields.len() == count).then_some(fields)
}

/// Type OIDs the feed decodes by (PostgreSQL's built-in types keep theirs).
mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const NUMERIC: u32 = 1700;
    pub const TIMESTAMPTZ: u32 = 1184;
}

/// Pushes a row's values, read from its composite text by its columns' types; why not, if
/// the text does not fit them.
pub(super) fn push_row(rows: &mut Rows, columns: &Columns, text: &str) -> Result<(), String> {
    let fields = parse_record(text, columns.types.len()).ok_or_else(|| {
        format!(
            "the stored row does not have the {} columns its table had",
            columns.types.len()
        )
    })?;
    for (field, &ty) in fields.iter().zip(&columns.types) {
        push_value(rows, ty, field.as_deref());
    }
    Ok(())
}

/// One column's value from its text form (written with `DateStyle` ISO, `TimeZone` UTC,
/// `bytea_output` hex), as SQLite would have stored it: what `FieldType::from_raw` reads.
/// JSON stays its text, so SQL NULL (`None`) and JSON's `null` stay apart.
pub(super) fn push_value(rows: &mut Rows, ty: u32, text: Option<&str>) {
    let Some(text) = text else {
        return rows.push_null();
    };
    match ty {
        oid::BOOL => match text {
            "t" => rows.push_integer(1),
            "f" => rows.push_integer(0),
            other => rows.push_text(other.as_bytes()),
        },
        oid::INT2 | oid::INT4 | oid::INT8 => match text.parse() {
            Ok(i) => rows.push_integer(i),
            Err(_) => rows.push_text(text.as_bytes()),
        },
        oid::FLOAT4 | oid::FLOAT8 => match parse_float(text) {
            Some(f) => rows.push_real(f),
            None => rows.push_text(text.as_bytes()),
        },
        oid::NUMERIC => match (text.parse(), parse_float(text)) {
            (Ok(i), _) => rows.push_integer(i),
            (_, Some(f)) => rows.push_real(f),
            _ => rows.push_text(text.as_bytes()),
        },
        oid::BYTEA => match decode_hex(text) {
            Some(bytes) => rows.push_blob(&bytes),
            None => rows.push_text(text.as_bytes()),
        },
        oid::TIMESTAMPTZ => match rfc_3339(text) {
            Some(text) => rows.push_text(text.as_bytes()),
            None => rows.push_text(text.as_bytes()),
        },
        _ => rows.push_text(text.as_bytes()),
    }
}

/// A `timestamptz`'s text in UTC (`2026-01-02 03:04:05.678+00`) as RFC 3339, as the timestamps
/// SQLite holds and `Timestamp` reads: years past 9999 signed (`10000-..` as `+10000-..`), and
/// years before Christ (`0002-.. BC`) as the astronomical years chrono writes (`-0001-..`).
fn rfc_3339(text: &str) -> Option<String> {
    let (text, before_christ) = match text.strip_suffix(" BC") {
        Some(text) => (text, true),
        None => (text, false),
    };
    let (date, time) = text.strip_suffix("+00")?.split_once(' ')?;
    let (year, month_day) = date.split_once('-')?;
    let year: i64 = year.parse().ok()?;
    let year = if before_christ { 1 - year } else { year };
    let year = match year {
        0..=9999 => format!("{year:04}"),
        10_000.. => format!("+{year}"),
        _ => format!("-{:04}", -year),
    };
    Some(format!("{year}-{month_day}T{time}+00:00"))
}

/// A float's text, `NaN` and the infinities included.
fn parse_float(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

/// `bytea`'s hex form, `\x0aff..`; `None` for anything else.
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let digits = text.strip_prefix("\\x")?.as_bytes();
    if digits.len() % 2 != 0 {
        return None;
    }
    let nibble = |d: u8| (d as char).to_digit(16).map(|n| n as u8);
    digits
        .chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::super::RawValue;
    use super::*;

    #[test]
    fn bytea_hex_decodes() {
        assert_eq!(decode_hex("\\x00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(decode_hex("\\x0"), None);
        assert_eq!(decode_hex("00"), None);
        assert_eq!(decode_hex("\\xaé"), None, "not hex, and no panic");
    }

    #[test]
    fn notes_are_ours_or_ignored() {
        let uuid = "662a1868-ec69-42ac-9828-ee5f897e4740";
        assert_eq!(
            Note::parse(&format!("42:{uuid}")),
            Some(Note::Change {
                id: 42,
                token: uuid.into()
            })
        );
        assert_eq!(
            Note::parse(&format!("f:{uuid}")),
            Some(Note::Fence(uuid.into()))
        );
        assert_eq!(
            Note::parse(&format!("m:{uuid}")),
            Some(Note::Marker(uuid.into()))
        );
        for junk in [
            "",
            "42",
            "42:",
            "42:xyz",
            "-1:662a1868-ec69-42ac-9828-ee5f897e4740",
            "x:662a1868-ec69-42ac-9828-ee5f897e4740",
            "99999999999999999999:662a1868-ec69-42ac-9828-ee5f897e4740",
            r#"{"fence":1}"#,
        ] {
            assert_eq!(Note::parse(junk), None, "{junk}");
        }
    }

    #[test]
    fn snapshots_tell_which_transactions_ended() {
        let s = Snapshot::parse("10:20:12,15").unwrap();
        assert!(s.ended(9) && s.ended(11) && s.ended(19));
        assert!(!s.ended(12) && !s.ended(15) && !s.ended(20) && !s.ended(25));
        assert_eq!(
            Snapshot::parse("5:5:"),
            Some(Snapshot {
                xmin: 5,
                xmax: 5,
                running: vec![]
            })
        );
        assert_eq!(Snapshot::parse("5:x:"), None);
    }

    #[test]
    fn composite_text_keeps_null_empty_and_quotes_apart() {
        assert_eq!(
            parse_record(r#"(1,,"","a ""b"" \\c",null,"(x,y)")"#, 6),
            Some(vec![
                Some("1".into()),
                None,
                Some("".into()),
                Some(r#"a "b" \c"#.into()),
                Some("null".into()),
                Some("(x,y)".into()),
            ])
        );
        assert_eq!(parse_record("(,)", 2), Some(vec![None, None]));
        assert_eq!(parse_record("()", 1), Some(vec![None]));
        assert_eq!(parse_record("()", 0), Some(vec![]));
        assert_eq!(parse_record("(1,2)", 3), None, "a row of another shape");
        assert_eq!(parse_record(r#"("open"#, 1), None);
    }

    #[test]
    fn column_lists_read_names_with_spaces_and_quotes() {
        let columns = parse_columns(r#"{"id 2950","a b 25","q\"x 3802"}"#).unwrap();
        let names: Vec<&str> = columns.names.iter().map(|n| &**n).collect();
        assert_eq!(names, ["id", "a b", "q\"x"]);
        assert_eq!(columns.types, [2950, 25, 3802]);
        assert_eq!(parse_columns("{}").unwrap().types, Vec::<u32>::new());
        assert!(parse_columns("{id}").is_none());
    }

    #[test]
    fn values_become_what_sqlite_stores() {
        let columns = Columns {
            names: ["b", "i", "f", "n", "j", "t", "x", "s"]
                .map(Arc::from)
                .to_vec(),
            types: vec![16, 20, 701, 1700, 3802, 1184, 17, 25],
        };
        let mut rows = Rows::default();
        let mark = rows.mark();
        push_row(
            &mut rows,
            &columns,
            r#"(t,-5,NaN,1.5,null,"2026-01-02 03:04:05.5+00","\\x00ff",)"#,
        )
        .unwrap();
        let values = rows.row(rows.since(mark)).values();
        assert_eq!(values[0], RawValue::Integer(1));
        assert_eq!(values[1], RawValue::Integer(-5));
        assert!(matches!(values[2], RawValue::Real(f) if f.is_nan()));
        assert_eq!(values[3], RawValue::Real(1.5));
        assert_eq!(
            values[4],
            RawValue::Text("null".into()),
            "JSON's null, not NULL"
        );
        assert_eq!(
            values[5],
            RawValue::Text("2026-01-02T03:04:05.5+00:00".into())
        );
        assert_eq!(values[6], RawValue::Blob(vec![0, 255]));
        assert_eq!(values[7], RawValue::Null);
    }
}
