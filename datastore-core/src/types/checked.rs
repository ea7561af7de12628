//! Numbers bound and read with the checks Diesel does not make: SQLite would store a NaN as
//! `NULL`, and Diesel's SQLite readers truncate a stored value that does not fit the field
//! (4294967297 read as the `i32` 1).

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::{BigInt, Bool, Double, Float, Integer, SmallInt};
use diesel::sqlite::{Sqlite, SqliteType, SqliteValue};

use crate::AnyBackend;
use crate::error::ValueError;

/// A number (or `bool`) as the store binds and reads it: what the field types `i16`, `i32`,
/// `i64`, `bool`, `f32` and `f64` are bound and read through.
///
/// It refuses what Diesel would change without a word: a NaN bound on SQLite (which would
/// store `NULL`) fails with [`Error::NanUnsupported`](crate::Error::NanUnsupported), and a
/// stored value that does not fit the field (a wider integer, a double out of `f32`'s range,
/// or text in a number column, written by another program) fails to read with
/// [`Error::OutOfRange`](crate::Error::OutOfRange) instead of being truncated.
///
/// ```
/// use datastore::prelude::*;
/// use datastore::diesel::connection::SimpleConnection;
///
/// #[derive(Model, Debug, Clone, PartialEq, Default)]
/// pub struct Counter {
///     #[primary_key]
///     pub id: Id,
///     pub value: i32,
/// }
///
/// # fn main() -> datastore::Result<()> {
/// let store = Store::builder(":memory:").schema(Schema::new().model::<Counter>()).open()?;
/// let counter = store.save(Counter::default())?;
/// // Another program writes a value wider than the field.
/// store.conn()?.batch_execute("UPDATE counters SET value = 4294967297").unwrap();
/// assert!(matches!(
///     store.find::<Counter>(&counter.id),
///     Err(datastore::Error::OutOfRange { .. })
/// ));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default, AsExpression, FromSqlRow)]
#[diesel(sql_type = SmallInt)]
#[diesel(sql_type = Integer)]
#[diesel(sql_type = BigInt)]
#[diesel(sql_type = Bool)]
#[diesel(sql_type = Float)]
#[diesel(sql_type = Double)]
pub struct Checked<T>(pub T);

/// A stored value that does not fit a field of type `T`.
fn out_of_range<T>(value: impl ToString) -> Box<dyn std::error::Error + Send + Sync> {
    Box::new(ValueError::OutOfRange {
        value: value.to_string(),
        field_type: std::any::type_name::<T>(),
    })
}

/// A SQLite value of storage class INTEGER, which every integer field requires: a REAL or TEXT
/// value in an integer column is not read as a (truncated) number.
fn sqlite_integer<T>(mut value: SqliteValue<'_, '_, '_>) -> deserialize::Result<i64> {
    match value.value_type() {
        Some(SqliteType::Long) => Ok(value.read_long()),
        Some(SqliteType::Double) => Err(out_of_range::<T>(format!("{:?}", value.read_double()))),
        _ => Err(out_of_range::<T>(format!("{:?}", value.read_text()))),
    }
}

/// A SQLite value of storage class REAL or INTEGER, which every floating-point field requires.
fn sqlite_real<T>(mut value: SqliteValue<'_, '_, '_>) -> deserialize::Result<f64> {
    match value.value_type() {
        Some(SqliteType::Double | SqliteType::Long) => Ok(value.read_double()),
        _ => Err(out_of_range::<T>(format!("{:?}", value.read_text()))),
    }
}

/// A PostgreSQL value of a number or boolean type, told by its type: the same bytes are
/// another number in another type (text `"1234"` is the `integer` 825373492).
enum PgNumber {
    Boolean(bool),
    Integer(i64),
    Real(f64),
}

/// `value` as a number, if its type is one; a value of any other type is out of `T`'s range
/// as SQLite's text in a number column is.
fn pg_number<T>(value: &PgValue<'_>) -> deserialize::Result<PgNumber> {
    // The OIDs of PostgreSQL's built-in types (`pg_type.dat`); Diesel gives an array's
    // elements and a range's bounds the container's.
    const BOOL: &[u32] = &[16, 1000];
    const INT2: &[u32] = &[21, 1005];
    const INT4: &[u32] = &[23, 1007, 3904];
    const INT8: &[u32] = &[20, 1016, 3926];
    const FLOAT4: &[u32] = &[700, 1021];
    const FLOAT8: &[u32] = &[701, 1022];
    // `oid` and `xid`: unsigned 32-bit counts.
    const UNSIGNED4: &[u32] = &[26, 28];
    // `text`, `varchar`, `bpchar`, `name`, `unknown` (a literal's), and their arrays.
    const TEXT: &[u32] = &[25, 1043, 1042, 19, 705, 1009, 1015, 1014];
    const NUMERIC: u32 = 1700;
    let oid = value.get_oid().get();
    let is = |types: &[u32]| types.contains(&oid);
    Ok(match value.as_bytes() {
        &[b] if is(BOOL) => PgNumber::Boolean(b != 0),
        &[a, b] if is(INT2) => PgNumber::Integer(i16::from_be_bytes([a, b]).into()),
        &[a, b, c, d] if is(INT4) => PgNumber::Integer(i32::from_be_bytes([a, b, c, d]).into()),
        &[a, b, c, d] if is(UNSIGNED4) => {
            PgNumber::Integer(u32::from_be_bytes([a, b, c, d]).into())
        }
        &[a, b, c, d, e, f, g, h] if is(INT8) => {
            PgNumber::Integer(i64::from_be_bytes([a, b, c, d, e, f, g, h]))
        }
        &[a, b, c, d] if is(FLOAT4) => PgNumber::Real(f32::from_be_bytes([a, b, c, d]).into()),
        &[a, b, c, d, e, f, g, h] if is(FLOAT8) => {
            PgNumber::Real(f64::from_be_bytes([a, b, c, d, e, f, g, h]))
        }
        // Text shown as such; the binary form of another type (`numeric`'s digit groups,
        // whose bytes may well be valid UTF-8) named by its type.
        bytes if is(TEXT) => {
            return Err(out_of_range::<T>(format!(
                "{:?}",
                String::from_utf8_lossy(bytes)
            )));
        }
        _ => {
            return Err(out_of_range::<T>(match oid {
                NUMERIC => "a value of PostgreSQL type numeric".to_owned(),
                oid => format!("a value of the PostgreSQL type of OID {oid}"),
            }));
        }
    })
}

/// `value` as a double, if it is a number (an integer as SQLite reads one in a real column).
fn pg_real<T>(value: &PgValue<'_>) -> deserialize::Result<f64> {
    match pg_number::<T>(value)? {
        PgNumber::Real(stored) => Ok(stored),
        PgNumber::Integer(stored) => Ok(stored as f64),
        PgNumber::Boolean(stored) => Err(out_of_range::<T>(stored)),
    }
}

macro_rules! integers {
    ($($rust:ty => $sql:ty;)*) => {$(
        impl FromSql<$sql, Sqlite> for Checked<$rust> {
            fn from_sql(value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
                let stored = sqlite_integer::<$rust>(value)?;
                <$rust>::try_from(stored).map(Checked).map_err(|_| out_of_range::<$rust>(stored))
            }
        }

        /// A column another program declared wider or narrower (`smallint`, `integer`,
        /// `bigint`) reads as long as the value fits.
        impl FromSql<$sql, Pg> for Checked<$rust> {
            fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
                let stored = match pg_number::<$rust>(&value)? {
                    PgNumber::Integer(stored) => stored,
                    PgNumber::Boolean(stored) => i64::from(stored),
                    PgNumber::Real(stored) => return Err(out_of_range::<$rust>(format!("{stored:?}"))),
                };
                <$rust>::try_from(stored).map(Checked).map_err(|_| out_of_range::<$rust>(stored))
            }
        }

        impl ToSql<$sql, Sqlite> for Checked<$rust> {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
                <$rust as ToSql<$sql, Sqlite>>::to_sql(&self.0, out)
            }
        }
    )*};
}

integers! {
    i16 => SmallInt;
    i32 => Integer;
    i64 => BigInt;
}

impl FromSql<Bool, Sqlite> for Checked<bool> {
    fn from_sql(value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        // Diesel reads the low 32 bits: 4294967296 would be `false`.
        boolean(sqlite_integer::<bool>(value)?)
    }
}

/// A column another program made an integer reads as long as it holds 0 or 1.
impl FromSql<Bool, Pg> for Checked<bool> {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        match pg_number::<bool>(&value)? {
            PgNumber::Boolean(stored) => Ok(Checked(stored)),
            PgNumber::Integer(stored) => boolean(stored),
            PgNumber::Real(stored) => Err(out_of_range::<bool>(format!("{stored:?}"))),
        }
    }
}

/// 0 or 1 as a `bool`; any other integer is not one.
fn boolean(stored: i64) -> deserialize::Result<Checked<bool>> {
    match stored {
        0 => Ok(Checked(false)),
        1 => Ok(Checked(true)),
        _ => Err(out_of_range::<bool>(stored)),
    }
}

impl ToSql<Bool, Sqlite> for Checked<bool> {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        <bool as ToSql<Bool, Sqlite>>::to_sql(&self.0, out)
    }
}

impl FromSql<Float, Sqlite> for Checked<f32> {
    fn from_sql(value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        fits_f32(sqlite_real::<f32>(value)?)
    }
}

impl FromSql<Float, Pg> for Checked<f32> {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        fits_f32(pg_real::<f32>(&value)?)
    }
}

/// A double as an `f32`, if it is within `f32`'s range (rounding to its precision is what an
/// `f32` field means; becoming infinite is not).
fn fits_f32(stored: f64) -> deserialize::Result<Checked<f32>> {
    let narrowed = stored as f32;
    if narrowed.is_infinite() && stored.is_finite() {
        Err(out_of_range::<f32>(format!("{stored:?}")))
    } else {
        Ok(Checked(narrowed))
    }
}

impl FromSql<Double, Sqlite> for Checked<f64> {
    fn from_sql(value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        sqlite_real::<f64>(value).map(Checked)
    }
}

impl FromSql<Double, Pg> for Checked<f64> {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        pg_real::<f64>(&value).map(Checked)
    }
}

macro_rules! floats {
    ($($rust:ty => $sql:ty;)*) => {$(
        /// SQLite stores a NaN as `NULL`: refused, so that nothing is written.
        impl ToSql<$sql, Sqlite> for Checked<$rust> {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
                if self.0.is_nan() {
                    return Err(Box::new(ValueError::NanUnsupported));
                }
                <$rust as ToSql<$sql, Sqlite>>::to_sql(&self.0, out)
            }
        }
    )*};
}

floats! {
    f32 => Float;
    f64 => Double;
}

/// PostgreSQL stores every value of these types as given, NaN included.
macro_rules! as_given_on_postgres {
    ($($rust:ty => $sql:ty;)*) => {$(
        impl ToSql<$sql, Pg> for Checked<$rust> {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                <$rust as ToSql<$sql, Pg>>::to_sql(&self.0, out)
            }
        }

        impl ToSql<$sql, AnyBackend> for Checked<$rust> {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, AnyBackend>) -> serialize::Result {
                out.set_value((<$sql>::default(), self));
                Ok(serialize::IsNull::No)
            }
        }

        impl FromSql<$sql, AnyBackend> for Checked<$rust> {
            fn from_sql(
                value: <AnyBackend as diesel::backend::Backend>::RawValue<'_>,
            ) -> deserialize::Result<Self> {
                value.from_sql::<Self, $sql>()
            }
        }
    )*};
}

as_given_on_postgres! {
    i16 => SmallInt;
    i32 => Integer;
    i64 => BigInt;
    bool => Bool;
    f32 => Float;
    f64 => Double;
}
