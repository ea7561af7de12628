mod finite;

use std::ops::{Deref, DerefMut};

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::serialize::{self, Output, ToSql};
use diesel::sqlite::{Sqlite, SqliteValue};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::FieldType;
use super::sql_types;
use crate::error::ValueError;
use crate::schema::ColumnType;

/// A field stored as one JSON document: any serde type, kept whole in a single column.
///
/// Use `serde_json::Value` for schemaless data and `Json<T>` for a typed document.
///
/// ```
/// use datastore::Json;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
/// struct Seo { keywords: Vec<String> }
///
/// let seo = Json(Seo { keywords: vec!["rust".into()] });
/// assert_eq!(seo.keywords[0], "rust"); // derefs to the inner value
/// ```
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    AsExpression,
    FromSqlRow,
)]
#[serde(transparent)]
#[diesel(sql_type = sql_types::JsonDoc)]
#[derive(ref_cast::RefCast)]
#[repr(transparent)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    /// The document.
    ///
    /// ```
    /// use datastore::Json;
    ///
    /// let tags = Json(vec!["rust".to_string()]);
    /// assert_eq!(tags.len(), 1); // derefs to the document
    /// let tags: Vec<String> = tags.into_inner();
    /// assert_eq!(tags, ["rust"]);
    /// ```
    pub fn into_inner(self) -> T {
        self.0
    }
}

/// As derived (`Json(..)` around the document's own `Debug`), for a document nested no deeper
/// than [`MAX_JSON_DEPTH`]; a deeper one is shown as `Json(<nested more than 100 levels deep>)`,
/// and one that cannot be written as JSON at all as `Json(<not serializable as JSON>)`.
/// `Debug` recurses once per level with no bound of its own (a document thousands of levels
/// deep would overflow the stack), and a field's value is shown before it is written and
/// refused: in the SQL that tracing logs with its values.
///
/// ```
/// use datastore::Json;
///
/// let nested = (0..1000).fold(serde_json::json!(1), |inner, _| serde_json::json!([inner]));
/// assert_eq!(format!("{:?}", Json(nested)), "Json(<nested more than 100 levels deep>)");
/// assert_eq!(format!("{:?}", Json(vec![1.5])), "Json([1.5])");
/// // Serializing stops at its first error, before any deeper level is counted.
/// let keyed_by_pairs = std::collections::BTreeMap::from([((1, 2), "a")]);
/// assert_eq!(format!("{:?}", Json(keyed_by_pairs)), "Json(<not serializable as JSON>)");
/// ```
impl<T: Serialize + std::fmt::Debug> std::fmt::Debug for Json<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = f.debug_tuple("Json");
        match unserializable(&self.0) {
            None => shown.field(&self.0),
            Some(Unserializable::TooDeep) => shown.field(&format_args!(
                "<nested more than {MAX_JSON_DEPTH} levels deep>"
            )),
            // Serializing stopped at the first error: deeper levels were not counted.
            Some(Unserializable::Other) => shown.field(&format_args!("<not serializable as JSON>")),
        };
        shown.finish()
    }
}

impl<T> Deref for Json<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Json<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: Serialize + DeserializeOwned + std::fmt::Debug> FieldType for Json<T> {
    type SqlType = sql_types::JsonDoc;
    const COLUMN: ColumnType = ColumnType::Json;
    crate::__field_type_by_ref!(|text| serde_json::from_str(&text)
        .map(Json)
        .map_err(|e| e.to_string()));
}

/// A `serde_json::Value` field is bound and read through [`Json`], since Diesel's traits
/// cannot be implemented for the foreign type itself (bound as a `&Json<Value>` cast from the
/// field, without a copy).
impl FieldType for serde_json::Value {
    type SqlType = sql_types::JsonDoc;
    const COLUMN: ColumnType = ColumnType::Json;
    type Bind<'a> = &'a Json<serde_json::Value>;
    type Read = Json<serde_json::Value>;

    fn bind(&self) -> Self::Bind<'_> {
        ref_cast::RefCast::ref_cast(self)
    }

    fn read(value: Self::Read) -> Self {
        value.0
    }

    fn from_raw(value: crate::observe::RawValueRef<'_>) -> Result<Self, String> {
        match value {
            crate::observe::RawValueRef::Text(text) => {
                serde_json::from_str(&text).map_err(|e| e.to_string())
            }
            other => Err(format!(
                "unexpected {} value for a JSON field",
                other.kind()
            )),
        }
    }
}

/// How deeply arrays and objects may nest in a JSON field (`[[1]]` is nested 2 levels deep).
///
/// Saving a deeper value fails with [`Error::JsonTooDeep`](crate::Error::JsonTooDeep) before
/// anything is written, on every backend: what is stored, `find`, `all` and observe read back
/// (serde_json reads up to 128 levels, and deeper values could not be read; PostgreSQL's
/// change feed delivers up to this depth). Serializing stops at the first level too deep, so a
/// value nested any deeper cannot overflow the stack either. JSON text held as serde_json's
/// `RawValue` (written as it is) counts too, from the level it is written at.
///
/// ```
/// use datastore::prelude::*;
/// use datastore::{Error, MAX_JSON_DEPTH};
///
/// #[derive(Model, Debug, Clone, PartialEq, Default)]
/// pub struct Doc {
///     #[primary_key]
///     pub id: Id,
///     pub body: serde_json::Value,
/// }
///
/// fn nested(depth: usize) -> serde_json::Value {
///     (0..depth).fold(serde_json::json!(1), |inner, _| serde_json::Value::Array(vec![inner]))
/// }
///
/// # fn main() -> datastore::Result<()> {
/// let store = Store::builder(":memory:").schema(Schema::new().model::<Doc>()).open()?;
/// let kept = store.save(Doc { body: nested(MAX_JSON_DEPTH), ..Doc::default() })?;
/// assert_eq!(store.get::<Doc>(&kept.id)?, kept);
/// let refused = store.save(Doc { body: nested(MAX_JSON_DEPTH + 1), ..Doc::default() });
/// assert!(matches!(refused, Err(Error::JsonTooDeep { limit: MAX_JSON_DEPTH })));
/// assert_eq!(store.count::<Doc>()?, 1);
/// # Ok(())
/// # }
/// ```
pub const MAX_JSON_DEPTH: usize = 100;

/// Writes `value` as compact JSON, as `serde_json::to_writer` does, but fails with
/// [`ValueError::JsonTooDeep`] rather than nest arrays and objects beyond [`MAX_JSON_DEPTH`],
/// and with [`ValueError::JsonNonFinite`] rather than write a NaN or an infinity as `null`.
fn write_json<W: std::io::Write, T: Serialize + ?Sized>(
    writer: W,
    value: &T,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut serializer = serde_json::Serializer::with_formatter(writer, DepthLimited(0));
    value
        .serialize(finite::Finite(&mut serializer))
        .map_err(|e| {
            if !e.is_io() && e.to_string().starts_with(finite::NON_FINITE) {
                return Box::new(ValueError::JsonNonFinite) as Box<_>;
            }
            let e = std::io::Error::from(e);
            if e.get_ref().is_some_and(|e| e.is::<TooDeep>()) {
                Box::new(ValueError::JsonTooDeep) as Box<_>
            } else {
                Box::new(e) as Box<_>
            }
        })
}

/// Why `value` cannot be written as JSON, if it cannot: nested beyond [`MAX_JSON_DEPTH`], or
/// another error (found without writing it anywhere, and without going deeper than the limit).
fn unserializable<T: Serialize + ?Sized>(value: &T) -> Option<Unserializable> {
    let mut serializer = serde_json::Serializer::with_formatter(std::io::sink(), DepthLimited(0));
    let error = value.serialize(&mut serializer).err()?;
    let too_deep = error.is_io()
        && std::io::Error::from(error)
            .get_ref()
            .is_some_and(|e| e.is::<TooDeep>());
    Some(if too_deep {
        Unserializable::TooDeep
    } else {
        Unserializable::Other
    })
}

/// Why a document cannot be written as JSON (see [`unserializable`]).
enum Unserializable {
    /// Nested deeper than [`MAX_JSON_DEPTH`].
    TooDeep,
    /// Anything else (a map whose keys are not strings..).
    Other,
}

/// serde_json's compact formatter, counting how deeply arrays and objects nest. Refusing to
/// open one level too many stops serialization there: a value's `Serialize` recurses once per
/// level, so this also bounds the stack it uses.
struct DepthLimited(usize);

/// The error [`DepthLimited`] stops serialization with.
#[derive(Debug, thiserror::Error)]
#[error("a JSON value nested more than {MAX_JSON_DEPTH} levels deep")]
struct TooDeep;

impl DepthLimited {
    fn enter(&mut self) -> std::io::Result<()> {
        if self.0 == MAX_JSON_DEPTH {
            return Err(std::io::Error::other(TooDeep));
        }
        self.0 += 1;
        Ok(())
    }
}

impl serde_json::ser::Formatter for DepthLimited {
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.enter()?;
        writer.write_all(b"[")
    }

    fn end_array<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.0 -= 1;
        writer.write_all(b"]")
    }

    fn begin_object<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.enter()?;
        writer.write_all(b"{")
    }

    fn end_object<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.0 -= 1;
        writer.write_all(b"}")
    }

    /// JSON text written as it is (a `serde_json::value::RawValue`), whose arrays and objects
    /// nest below the level it is written at: they count too.
    fn write_raw_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        if nesting(fragment) > MAX_JSON_DEPTH - self.0 {
            return Err(std::io::Error::other(TooDeep));
        }
        writer.write_all(fragment.as_bytes())
    }
}

/// How deeply arrays and objects nest in `json`, JSON text: its brackets outside strings (a
/// byte of a multi-byte character is never one of them). It reads the text once, whatever its
/// depth.
fn nesting(json: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for byte in json.bytes() {
        match byte {
            _ if escaped => escaped = false,
            b'\\' if in_string => escaped = true,
            b'"' => in_string = !in_string,
            _ if in_string => {}
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

impl<T: Serialize + std::fmt::Debug> ToSql<sql_types::JsonDoc, Sqlite> for Json<T> {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        let mut text = Vec::with_capacity(128);
        write_json(&mut text, &self.0)?;
        // serde_json writes UTF-8 only.
        out.set_value(String::from_utf8(text)?);
        Ok(serialize::IsNull::No)
    }
}

impl<T: DeserializeOwned> FromSql<sql_types::JsonDoc, Sqlite> for Json<T> {
    fn from_sql(mut value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        Ok(Self(serde_json::from_str(value.read_text())?))
    }
}

/// `jsonb`'s binary form: a version byte (1), then the JSON text.
impl<T: Serialize + std::fmt::Debug> ToSql<sql_types::JsonDoc, diesel::pg::Pg> for Json<T> {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, diesel::pg::Pg>) -> serialize::Result {
        std::io::Write::write_all(out, &[1])?;
        write_json(out, &self.0)?;
        Ok(serialize::IsNull::No)
    }
}

impl<T: DeserializeOwned> FromSql<sql_types::JsonDoc, diesel::pg::Pg> for Json<T> {
    fn from_sql(value: diesel::pg::PgValue<'_>) -> deserialize::Result<Self> {
        match value.as_bytes() {
            [1, json @ ..] => Ok(Self(serde_json::from_slice(json)?)),
            _ => Err("unsupported jsonb version".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{DepthLimited, MAX_JSON_DEPTH, TooDeep, nesting};
    use serde_json::ser::Formatter;

    #[test]
    fn nesting_counts_brackets_outside_strings_only() {
        assert_eq!(nesting("1"), 0);
        assert_eq!(nesting(r#"{"a":[1,{"b":[]}],"c":[]}"#), 4);
        assert_eq!(nesting(r#"["[[{", "\"[[", "\\", [["]"]]]"#), 3);
        assert_eq!(nesting(r#" [ "é[" , [ ] ] "#), 2);
    }

    #[test]
    fn raw_json_text_counts_from_the_level_it_is_written_at() {
        let deep = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let mut written = Vec::new();
        let mut formatter = DepthLimited(1);
        formatter
            .write_raw_fragment(&mut written, &deep(MAX_JSON_DEPTH - 1))
            .unwrap();
        assert_eq!(written, deep(MAX_JSON_DEPTH - 1).as_bytes());
        let err = formatter
            .write_raw_fragment(&mut written, &deep(MAX_JSON_DEPTH))
            .unwrap_err();
        assert!(err.get_ref().is_some_and(|e| e.is::<TooDeep>()), "{err}");
        assert_eq!(
            written,
            deep(MAX_JSON_DEPTH - 1).as_bytes(),
            "nothing more written"
        );
        assert_eq!(formatter.0, 1);
    }
}
