//! The Rust types a model field can have, and how each maps to a column.
//!
//! [`FieldType`] connects a field's Rust type to its Diesel SQL type and to the column it is
//! stored in. It is implemented for the standard scalar types, for [`Id`], [`Timestamp`],
//! [`Json`] and [`serde_json::Value`], for `Option<T>` of any of them, and by
//! `#[derive(DbEnum)]` for fieldless enums.

mod checked;
mod db_enum;
mod id;
mod json;
pub(crate) mod key;
mod selection;
pub mod sql_types;
mod text_bind;
mod timestamp;

pub use checked::Checked;
pub use db_enum::DbEnum;
pub use id::Id;
pub use json::{Json, MAX_JSON_DEPTH};
pub use key::{Key, KeyColumn, KeyValue};
#[doc(hidden)]
pub use key::{PgQuery, SqliteQuery};
pub use selection::Selection;
pub(crate) use selection::selected_column;
pub use text_bind::AsText;
pub use timestamp::Timestamp;

use crate::observe::RawValueRef;
use crate::schema::ColumnType;

/// A Rust type that can be stored in one column of a model's table.
///
/// `#[derive(Model)]` requires it of every field that is not a relation. Implement it for a
/// type of your own only together with Diesel's `ToSql`/`FromSql` for [`FieldType::SqlType`];
/// for enums, derive `DbEnum` instead.
///
/// ```
/// use datastore::{schema::ColumnType, FieldType};
///
/// assert_eq!(<String as FieldType>::COLUMN, ColumnType::Text);
/// assert!(!<String as FieldType>::NULLABLE);
/// assert!(<Option<i64> as FieldType>::NULLABLE);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be stored in a model column",
    label = "unsupported field type",
    note = "supported field types: String, bool, i16, i32, i64, f32, f64, Vec<u8>, Id, Timestamp, \
            serde_json::Value, Json<T>, enums deriving `DbEnum`, and Option<T> of any of them",
    note = "a relation field needs its attribute: `#[has_many(T)]`, `#[has_one(T)]` or \
            `#[many_to_many(T, through = J)]`"
)]
pub trait FieldType: Sized {
    /// The Diesel SQL type of the column.
    ///
    /// ```
    /// use datastore::diesel::sql_types::{Integer, Nullable, Text};
    /// use datastore::FieldType;
    ///
    /// fn same<T: 'static, U: 'static>() -> bool {
    ///     std::any::TypeId::of::<T>() == std::any::TypeId::of::<U>()
    /// }
    /// assert!(same::<<String as FieldType>::SqlType, Text>());
    /// assert!(same::<<Option<i32> as FieldType>::SqlType, Nullable<Integer>>());
    /// ```
    type SqlType: diesel::sql_types::SqlType + diesel::sql_types::SingleValue;
    /// The column type used to render DDL.
    ///
    /// ```
    /// use datastore::schema::ColumnType;
    /// use datastore::{FieldType, Timestamp};
    ///
    /// assert_eq!(<i64 as FieldType>::COLUMN, ColumnType::BigInt);
    /// assert_eq!(<Timestamp as FieldType>::COLUMN, ColumnType::Timestamp);
    /// ```
    const COLUMN: ColumnType;
    /// Whether the column accepts `NULL` (only `Option<T>` does).
    ///
    /// ```
    /// use datastore::{FieldType, Id, Timestamp};
    ///
    /// assert!(!<Id as FieldType>::NULLABLE);
    /// assert!(<Option<Timestamp> as FieldType>::NULLABLE);
    /// ```
    const NULLABLE: bool = false;

    /// What a borrowed value is bound as (`&'a Self` for all but foreign types).
    ///
    /// ```
    /// use datastore::FieldType;
    ///
    /// let title = String::from("bound as it is");
    /// let bound: <String as FieldType>::Bind<'_> = &title;
    /// # let _ = bound;
    /// ```
    type Bind<'a>: diesel::expression::AsExpression<Self::SqlType>
    where
        Self: 'a;
    /// What a column is read as before it becomes `Self`: `Self` for text, keys and instants;
    /// [`Checked`](crate::Checked) for numbers and `bool` (a stored value out of the field's
    /// range is refused, not truncated); a wrapper for foreign types.
    ///
    /// ```
    /// use datastore::{Checked, FieldType};
    ///
    /// let text: <String as FieldType>::Read = String::from("as stored");
    /// let flag: <bool as FieldType>::Read = Checked(true);
    /// # let _ = (text, flag);
    /// ```
    type Read;

    /// The value to bind for `self`.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # #[derive(Model, Debug, Clone, PartialEq, Default)]
    /// # pub struct Note { #[primary_key] pub id: Id, pub rank: i32 }
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// use datastore::FieldType;
    ///
    /// # let mut conn = store.conn()?;
    /// let note = conn.save(Note { rank: 3, ..Note::default() })?;
    /// let rank = note.rank;
    /// let found: Vec<Note> = notes::table.filter(notes::rank.eq(rank.bind())).load(&mut conn)?;
    /// assert_eq!(found, vec![note]);
    /// # Ok(())
    /// # }
    /// ```
    fn bind(&self) -> Self::Bind<'_>;
    /// The field's value from what was read.
    ///
    /// ```
    /// use datastore::{Checked, FieldType};
    ///
    /// assert_eq!(String::read("hi".to_owned()), "hi"); // read as itself
    /// assert_eq!(i32::read(Checked(4)), 4); // read through a range check
    /// ```
    fn read(value: Self::Read) -> Self;
    /// The field's value from a value of a committed change (observe), as SQLite stores it
    /// (PostgreSQL's values are brought to the same form).
    ///
    /// ```
    /// use datastore::observe::RawValueRef;
    /// use datastore::FieldType;
    ///
    /// assert_eq!(i32::from_raw(RawValueRef::Integer(7)), Ok(7));
    /// assert_eq!(bool::from_raw(RawValueRef::Integer(1)), Ok(true));
    /// assert!(i32::from_raw(RawValueRef::Text("seven".into())).is_err());
    /// ```
    fn from_raw(value: RawValueRef<'_>) -> Result<Self, String>;
}

/// The error of [`FieldType::from_raw`] for a value of the wrong storage class.
pub(crate) fn unexpected<T>(value: &RawValueRef<'_>) -> Result<T, String> {
    Err(format!(
        "unexpected {} value for a {} field",
        value.kind(),
        std::any::type_name::<T>()
    ))
}

macro_rules! field_types {
    ($($rust:ty => $sql:ident, $column:ident, bind $bind:ident, read $read:ident, |$v:ident| $from_raw:expr;)*) => {$(
        impl FieldType for $rust {
            type SqlType = diesel::sql_types::$sql;
            const COLUMN: ColumnType = ColumnType::$column;
            field_types!(@bind $bind);
            field_types!(@read $read);
            fn from_raw($v: RawValueRef<'_>) -> Result<Self, String> {
                $from_raw
            }
        }
    )*};
    // Bound as it is.
    (@bind as_is) => {
        type Bind<'a> = &'a Self where Self: 'a;
        fn bind(&self) -> &Self {
            self
        }
    };
    // Bound through `Checked`, which refuses what the backend cannot store (NaN on SQLite).
    (@bind checked) => {
        type Bind<'a> = Checked<Self> where Self: 'a;
        fn bind(&self) -> Checked<Self> {
            Checked(*self)
        }
    };
    (@read as_is) => {
        type Read = Self;
        fn read(value: Self) -> Self {
            value
        }
    };
    // Read through `Checked`, which refuses a stored value that does not fit the field.
    (@read checked) => {
        type Read = Checked<Self>;
        fn read(value: Checked<Self>) -> Self {
            value.0
        }
    };
}

/// `FieldType` for a type of this crate (or a derived one) that is its own bind and read form,
/// read from text by `FromStr`-like parsing in `$parse`.
#[doc(hidden)]
#[macro_export]
macro_rules! __field_type_by_ref {
    (|$text:ident| $parse:expr) => {
        $crate::__private::field_type_by_ref!();
        fn from_raw(
            value: $crate::observe::RawValueRef<'_>,
        ) -> ::core::result::Result<Self, ::std::string::String> {
            match value {
                $crate::observe::RawValueRef::Text($text) => $parse,
                other => {
                    ::core::result::Result::Err(::std::format!("unexpected {} value", other.kind()))
                }
            }
        }
    };
    () => {
        type Bind<'a>
            = &'a Self
        where
            Self: 'a;
        type Read = Self;
        fn bind(&self) -> &Self {
            self
        }
        fn read(value: Self) -> Self {
            value
        }
    };
}

field_types! {
    String => Text, Text, bind as_is, read as_is,
        |v| match v { RawValueRef::Text(s) => Ok(s.into_owned()), other => unexpected(&other) };
    bool => Bool, Bool, bind as_is, read checked, |v| match v {
        RawValueRef::Integer(0) => Ok(false),
        RawValueRef::Integer(1) => Ok(true),
        RawValueRef::Integer(i) => Err(format!("{i} is out of range for a bool field")),
        other => unexpected(&other),
    };
    i16 => SmallInt, SmallInt, bind as_is, read checked, |v| match v {
        RawValueRef::Integer(i) => i16::try_from(i).map_err(|e| e.to_string()),
        other => unexpected(&other),
    };
    i32 => Integer, Integer, bind as_is, read checked, |v| match v {
        RawValueRef::Integer(i) => i32::try_from(i).map_err(|e| e.to_string()),
        other => unexpected(&other),
    };
    i64 => BigInt, BigInt, bind as_is, read checked,
        |v| match v { RawValueRef::Integer(i) => Ok(i), other => unexpected(&other) };
    f32 => Float, Float, bind checked, read checked, |v| match v {
        RawValueRef::Real(f) => f32_in_range(f),
        RawValueRef::Integer(i) => Ok(i as f32),
        other => unexpected(&other),
    };
    f64 => Double, Double, bind checked, read checked, |v| match v {
        RawValueRef::Real(f) => Ok(f),
        RawValueRef::Integer(i) => Ok(i as f64),
        other => unexpected(&other),
    };
    Vec<u8> => Binary, Blob, bind as_is, read as_is,
        |v| match v { RawValueRef::Blob(b) => Ok(b.to_vec()), other => unexpected(&other) };
}

/// A double as an `f32`, refused when it is beyond `f32`'s range (as reads refuse it).
fn f32_in_range(value: f64) -> Result<f32, String> {
    let narrowed = value as f32;
    if narrowed.is_infinite() && value.is_finite() {
        Err(format!("{value} is out of range for a f32 field"))
    } else {
        Ok(narrowed)
    }
}

impl<T> FieldType for Option<T>
where
    T: FieldType,
    T::SqlType: diesel::sql_types::SqlType<IsNull = diesel::sql_types::is_nullable::NotNull>,
    for<'a> Option<T::Bind<'a>>:
        diesel::expression::AsExpression<diesel::sql_types::Nullable<T::SqlType>>,
{
    type SqlType = diesel::sql_types::Nullable<T::SqlType>;
    const COLUMN: ColumnType = T::COLUMN;
    const NULLABLE: bool = true;
    type Bind<'a>
        = Option<T::Bind<'a>>
    where
        T: 'a;
    type Read = Option<T::Read>;

    fn bind(&self) -> Self::Bind<'_> {
        self.as_ref().map(T::bind)
    }

    fn read(value: Self::Read) -> Self {
        value.map(T::read)
    }

    fn from_raw(value: RawValueRef<'_>) -> Result<Self, String> {
        match value {
            RawValueRef::Null => Ok(None),
            value => T::from_raw(value).map(Some),
        }
    }
}
