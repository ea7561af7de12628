//! Rendering DDL from the schema description.
//!
//! Every identifier is quoted and every literal escaped, so a table named `order` or a column
//! named `group` is as safe as any other.

use std::borrow::Cow;

use super::{Column, ColumnType, ForeignKey, Index, Name, OnDelete, Table, Timestamps};
use super::{LONGEST_NAME, cut_name, postgres_kept};

/// The SQL dialect DDL is rendered for, and the backend a store runs on.
///
/// ```
/// use datastore::schema::Dialect;
/// use datastore::Store;
///
/// # fn main() -> datastore::Result<()> {
/// let store = Store::builder(":memory:").open()?;
/// assert_eq!(store.dialect(), Dialect::Sqlite);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dialect {
    /// SQLite 3.37 or later (tables are `STRICT`).
    Sqlite,
    /// PostgreSQL, with its native types (`uuid`, `timestamptz`, `jsonb`, `boolean`).
    Postgres,
}

/// The SQL dialect of a Diesel backend or connection: fixed for SQLite's and PostgreSQL's own,
/// known at run time for [`AnyBackend`](crate::AnyBackend) and
/// [`AnyConnection`](crate::AnyConnection).
pub trait HasDialect {
    /// The dialect its SQL is written in.
    fn dialect(&self) -> Dialect;
}

impl HasDialect for diesel::sqlite::Sqlite {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }
}

impl HasDialect for diesel::pg::Pg {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }
}

impl HasDialect for diesel::SqliteConnection {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }
}

impl HasDialect for diesel::PgConnection {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }
}

impl HasDialect for crate::AnyConnection {
    fn dialect(&self) -> Dialect {
        match self {
            Self::Sqlite(_) => Dialect::Sqlite,
            Self::Postgres(_) => Dialect::Postgres,
        }
    }
}

impl HasDialect for crate::AnyBackend {
    fn dialect(&self) -> Dialect {
        match self {
            Self::Sqlite(_) => Dialect::Sqlite,
            Self::Postgres(_) => Dialect::Postgres,
        }
    }
}

impl Dialect {
    /// The folder name of this dialect's migrations under `migrations/`.
    ///
    /// ```
    /// use datastore::schema::Dialect;
    ///
    /// assert_eq!(Dialect::Sqlite.dir_name(), "sqlite"); // migrations/sqlite
    /// assert_eq!(Dialect::Postgres.dir_name(), "postgres");
    /// ```
    pub fn dir_name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }

    /// The declared SQL type of a column.
    ///
    /// ```
    /// use datastore::schema::{ColumnType, Dialect};
    ///
    /// assert_eq!(Dialect::Sqlite.column_type(&ColumnType::Uuid), "TEXT");
    /// assert_eq!(Dialect::Postgres.column_type(&ColumnType::Uuid), "UUID");
    /// assert_eq!(Dialect::Postgres.column_type(&ColumnType::Json), "JSONB");
    /// ```
    pub fn column_type(self, ty: &ColumnType) -> &'static str {
        match (self, ty) {
            (Self::Sqlite, ColumnType::SmallInt | ColumnType::Integer | ColumnType::BigInt) => {
                "INTEGER"
            }
            (Self::Sqlite, ColumnType::Bool) => "INTEGER",
            (Self::Sqlite, ColumnType::Float | ColumnType::Double) => "REAL",
            (Self::Sqlite, ColumnType::Blob) => "BLOB",
            (
                Self::Sqlite,
                ColumnType::Text
                | ColumnType::Uuid
                | ColumnType::Timestamp
                | ColumnType::Json
                | ColumnType::Enum(_),
            ) => "TEXT",
            (Self::Postgres, ColumnType::Text | ColumnType::Enum(_)) => "TEXT",
            (Self::Postgres, ColumnType::SmallInt) => "SMALLINT",
            (Self::Postgres, ColumnType::Integer) => "INTEGER",
            (Self::Postgres, ColumnType::BigInt) => "BIGINT",
            (Self::Postgres, ColumnType::Float) => "REAL",
            (Self::Postgres, ColumnType::Double) => "DOUBLE PRECISION",
            (Self::Postgres, ColumnType::Bool) => "BOOLEAN",
            (Self::Postgres, ColumnType::Blob) => "BYTEA",
            (Self::Postgres, ColumnType::Uuid) => "UUID",
            (Self::Postgres, ColumnType::Timestamp) => "TIMESTAMPTZ",
            (Self::Postgres, ColumnType::Json) => "JSONB",
        }
    }

    /// Whether a table change the dialect cannot make with `ALTER TABLE` is made by rebuilding
    /// the table (SQLite); PostgreSQL alters columns and constraints in place.
    ///
    /// ```
    /// use datastore::schema::Dialect;
    ///
    /// assert!(Dialect::Sqlite.rebuilds_tables());
    /// assert!(!Dialect::Postgres.rebuilds_tables());
    /// ```
    pub fn rebuilds_tables(self) -> bool {
        matches!(self, Self::Sqlite)
    }

    /// A value every row can take when a `NOT NULL` column is added to a table that has rows.
    fn filler(self, column: &Column) -> String {
        match (&column.ty, self) {
            (ColumnType::Bool, Self::Postgres) => return "FALSE".into(),
            (ColumnType::Blob, Self::Postgres) => return "''::bytea".into(),
            (ColumnType::Json, Self::Postgres) => return "'null'::jsonb".into(),
            _ => {}
        }
        match &column.ty {
            ColumnType::Text => "''".into(),
            ColumnType::SmallInt | ColumnType::Integer | ColumnType::BigInt | ColumnType::Bool => {
                "0".into()
            }
            ColumnType::Float | ColumnType::Double => "0.0".into(),
            ColumnType::Blob => "X''".into(),
            ColumnType::Uuid => "'00000000-0000-0000-0000-000000000000'".into(),
            ColumnType::Timestamp => "'1970-01-01T00:00:00.000000Z'".into(),
            ColumnType::Json => "'null'".into(),
            ColumnType::Enum(variants) => {
                quote_literal(variants.first().map(|v| v.as_ref()).unwrap_or(""), self)
            }
        }
    }
}

/// Quotes an identifier: `order` becomes `"order"`, and `a"b` becomes `"a""b"`.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal of `dialect`: `it's` becomes `'it''s'`.
///
/// On PostgreSQL a value holding a backslash is written as an escape string, its backslashes
/// doubled (`a\b` becomes `E'a\\b'`), as PostgreSQL's own `quote_literal()` writes it: a plain
/// literal's backslashes are its own only while `standard_conforming_strings` is on, and any
/// session, role or database may turn it off, where `'a\'` would run on past its closing quote.
/// An escape string means the same under either setting: in the SQL the store runs, in the
/// migration files it writes (run later, by whatever session), and in a function's body (which
/// PL/pgSQL reads with the setting of the session that first calls it). SQLite's literals have
/// no escapes.
pub fn quote_literal(value: &str, dialect: Dialect) -> String {
    match dialect {
        Dialect::Postgres if value.contains('\\') => {
            format!("E{}", quote_standard_literal(&value.replace('\\', "\\\\")))
        }
        _ => quote_standard_literal(value),
    }
}

/// Quotes a string literal as standard SQL does, only its quotes doubled: SQLite's, and the
/// only form PostgreSQL's replication commands read (their grammar has no escape strings, and
/// no escapes). Never for PostgreSQL's SQL: see [`quote_literal`].
pub(crate) fn quote_standard_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The definition of one column inside `CREATE TABLE` or `ADD COLUMN`.
pub fn column_definition(table: &Table, column: &Column, dialect: Dialect) -> String {
    let mut def = format!(
        "{} {}",
        quote_ident(&column.name),
        dialect.column_type(&column.ty)
    );
    // A single key column carries its constraint; a composite key is the table's.
    if *table.primary_key == [column.name.clone()] {
        def.push_str(" PRIMARY KEY");
    }
    if !column.nullable {
        def.push_str(" NOT NULL");
    }
    if let Some(default) = &column.default {
        def.push_str(&format!(" DEFAULT {}", default.sql(dialect)));
    }
    // An integer key SQLite assigns is its rowid (an `INTEGER PRIMARY KEY` column).
    if column.generated && dialect == Dialect::Postgres {
        def.push_str(" GENERATED BY DEFAULT AS IDENTITY");
    }
    if column.unique && !table.is_whole_key(&column.name) {
        def.push_str(" UNIQUE");
    }
    if let Some(check) = column.check(dialect) {
        def.push_str(&format!(" CHECK ({check})"));
    }
    // SQLite assigns a key one past the largest rowid, which may be past what a narrower
    // integer field holds: refused as the row is written, rather than read back wrong.
    if column.generated && dialect == Dialect::Sqlite {
        let range = match column.ty {
            ColumnType::SmallInt => Some((i64::from(i16::MIN), i64::from(i16::MAX))),
            ColumnType::Integer => Some((i64::from(i32::MIN), i64::from(i32::MAX))),
            _ => None,
        };
        if let Some((least, most)) = range {
            def.push_str(&format!(
                " CHECK ({} BETWEEN {least} AND {most})",
                quote_ident(&column.name)
            ));
        }
    }
    if let Some(fk) = table.foreign_key(&column.name) {
        def.push_str(&format!(
            " REFERENCES {} ({}) ON DELETE {}",
            quote_ident(&fk.references),
            quote_ident(&fk.referenced_column),
            on_delete_sql(fk.on_delete)
        ));
        if fk.on_update_cascade {
            def.push_str(" ON UPDATE CASCADE");
        }
    }
    def
}

fn on_delete_sql(action: OnDelete) -> &'static str {
    match action {
        OnDelete::Cascade => "CASCADE",
        OnDelete::Restrict => "RESTRICT",
        OnDelete::SetNull => "SET NULL",
    }
}

/// `CREATE TABLE` for a table, under the given name (the table's own, or a temporary one
/// while a table is rebuilt).
pub fn create_table_as(table: &Table, name: &str, dialect: Dialect) -> String {
    let mut columns: Vec<String> = table
        .columns
        .iter()
        .map(|c| format!("    {}", column_definition(table, c, dialect)))
        .collect();
    if table.primary_key.len() > 1 {
        let key: Vec<String> = table.primary_key.iter().map(|c| quote_ident(c)).collect();
        columns.push(format!("    PRIMARY KEY ({})", key.join(", ")));
    }
    let strict = match dialect {
        Dialect::Sqlite => " STRICT",
        Dialect::Postgres => "",
    };
    format!(
        "CREATE TABLE {} (\n{}\n){strict};",
        quote_ident(name),
        columns.join(",\n")
    )
}

/// `CREATE TABLE` for a table.
pub fn create_table(table: &Table, dialect: Dialect) -> String {
    create_table_as(table, &table.name, dialect)
}

/// The same DDL, made a no-op for what exists already: `CREATE TABLE IF NOT EXISTS`,
/// `CREATE INDEX IF NOT EXISTS` (both dialects have them).
pub fn if_not_exists(create: &str) -> String {
    for prefix in ["CREATE TABLE ", "CREATE UNIQUE INDEX ", "CREATE INDEX "] {
        if let Some(rest) = create.strip_prefix(prefix) {
            return format!("{prefix}IF NOT EXISTS {rest}");
        }
    }
    create.to_owned()
}

/// `CREATE INDEX` for one index of a table.
pub fn create_index(table: &str, index: &Index, _dialect: Dialect) -> String {
    let columns: Vec<String> = index.columns.iter().map(|c| quote_ident(c)).collect();
    format!(
        "CREATE {}INDEX {} ON {} ({});",
        if index.unique { "UNIQUE " } else { "" },
        quote_ident(&index.name),
        quote_ident(table),
        columns.join(", ")
    )
}

/// `DROP INDEX`.
pub fn drop_index(index: &Index, _dialect: Dialect) -> String {
    format!("DROP INDEX {};", quote_ident(&index.name))
}

/// `DROP TABLE`.
pub fn drop_table(table: &str, _dialect: Dialect) -> String {
    format!("DROP TABLE {};", quote_ident(table))
}

/// `ALTER TABLE .. ADD COLUMN`. The rows the table holds take the column's default; a
/// `NOT NULL` column without one (which only a `down.sql` adds back: the migration generator
/// refuses to invent values) takes the zero value of its type, since neither database adds it
/// otherwise. PostgreSQL then drops that default, which the column did not have (SQLite cannot
/// drop a default in place: the column keeps it).
pub fn add_column(table: &Table, column: &Column, dialect: Dialect) -> Vec<String> {
    let name = quote_ident(&table.name);
    let mut def = column_definition(table, column, dialect);
    // A key the database assigns gives each row its own value.
    let filled = !column.nullable && column.default.is_none() && !column.generated;
    if filled {
        def.push_str(&format!(" DEFAULT {}", dialect.filler(column)));
    }
    let mut statements = vec![format!("ALTER TABLE {name} ADD COLUMN {def};")];
    if filled && dialect == Dialect::Postgres {
        statements.push(format!(
            "ALTER TABLE {name} ALTER COLUMN {} DROP DEFAULT;",
            quote_ident(&column.name)
        ));
    }
    statements
}

/// The value the rows a table holds take in a column added `NOT NULL`: its default, or (in a
/// `down.sql` only, adding back a column its `up.sql` dropped) the zero value of its type.
fn fill_value(column: &Column, dialect: Dialect) -> String {
    match &column.default {
        Some(default) => default.sql(dialect),
        None => dialect.filler(column),
    }
}

/// The indexes of `old` that are in `new` under another name (same columns, same
/// uniqueness): renamed with their table or column, paired with their new form.
pub fn renamed_indexes(old: &[Index], new: &[Index]) -> Vec<(Index, Index)> {
    let mut pairs: Vec<(Index, Index)> = Vec::new();
    for was in old.iter().filter(|i| !new.contains(i)) {
        let now = new.iter().find(|i| {
            !old.contains(i)
                && i.columns == was.columns
                && i.unique == was.unique
                && !pairs.iter().any(|(_, taken)| taken == *i)
        });
        if let Some(now) = now {
            pairs.push((was.clone(), now.clone()));
        }
    }
    pairs
}

/// Renames an index: `ALTER INDEX .. RENAME` on PostgreSQL, unless the two names are one there
/// (alike in their first 63 bytes: the index has the name already, and PostgreSQL refuses a
/// rename to a name a relation has); on SQLite, which cannot rename an index, it is dropped and
/// created again under its new name.
pub fn rename_index(table: &str, from: &Index, to: &Index, dialect: Dialect) -> Vec<String> {
    match dialect {
        Dialect::Postgres if postgres_kept(&from.name) == postgres_kept(&to.name) => Vec::new(),
        Dialect::Postgres => vec![format!(
            "ALTER INDEX {} RENAME TO {};",
            quote_ident(&from.name),
            quote_ident(&to.name)
        )],
        Dialect::Sqlite => vec![drop_index(from, dialect), create_index(table, to, dialect)],
    }
}

/// The constraints PostgreSQL named after a table and one of its columns when the table was
/// created (`<table>_<column>_fkey`, `_key`, `_check`): what `alter_table` finds them by.
fn column_constraints(table: &Table, column: &Column) -> Vec<&'static str> {
    let mut suffixes = Vec::new();
    if table.foreign_key(&column.name).is_some() {
        suffixes.push("fkey");
    }
    if column.unique && !table.is_whole_key(&column.name) {
        suffixes.push("key");
    }
    if column.check(Dialect::Postgres).is_some() {
        suffixes.push("check");
    }
    suffixes
}

/// The name PostgreSQL gives a constraint it names itself (`makeObjectName` in its source):
/// `<table>_<column>_<label>`, or `<table>_<label>`, where a name longer than 63 bytes loses
/// bytes from the longer of table and column (never from the label), at a character boundary.
/// A statement that names the constraint must use this: PostgreSQL cuts a longer identifier at
/// 63 bytes, which is another name.
pub(crate) fn postgres_constraint(table: &str, column: Option<&str>, label: &str) -> String {
    let overhead = label.len() + 1 + usize::from(column.is_some());
    let available = LONGEST_NAME.saturating_sub(overhead);
    let (mut table_len, mut column_len) = (table.len(), column.map_or(0, str::len));
    while table_len + column_len > available {
        if table_len > column_len {
            table_len -= 1;
        } else {
            column_len -= 1;
        }
    }
    match column {
        Some(column) => format!(
            "{}_{}_{label}",
            cut_name(table, table_len),
            cut_name(column, column_len)
        ),
        None => format!("{}_{label}", cut_name(table, table_len)),
    }
}

/// What [`postgres_constraint_of`] does to the constraint it finds.
enum OnConstraint<'a> {
    /// Drops it; `required`: fails if there is none.
    Drop { required: bool },
    /// Renames it.
    RenameTo(&'a str),
}

/// A statement acting on the constraint of `table` labelled `label` (`pkey`, `fkey`, `key`,
/// `check`) on exactly `column` (none for the primary key), found in PostgreSQL's catalog by
/// what it constrains rather than by name: PostgreSQL named it, cutting long names and adding
/// a digit where another constraint had the name; and constraints named by earlier migrations
/// were named otherwise.
fn postgres_constraint_of(
    table: &str,
    column: Option<&str>,
    label: &str,
    action: OnConstraint<'_>,
) -> String {
    let kind = match label {
        "pkey" => 'p',
        "fkey" => 'f',
        "key" => 'u',
        _ => 'c',
    };
    let pg = Dialect::Postgres;
    let relation = quote_literal(&quote_ident(table), pg);
    let on_column = column.map_or(String::new(), |column| {
        format!(
            " AND conkey = ARRAY[(SELECT attnum FROM pg_attribute \
             WHERE attrelid = {relation}::regclass AND attname = {})]",
            quote_literal(column, pg)
        )
    });
    let what = quote_literal(
        &format!(
            "{table}{} has no {label} constraint",
            column.map_or(String::new(), |c| format!(".{c}"))
        ),
        pg,
    );
    let absent = match action {
        OnConstraint::Drop { required: false } => "RETURN;".to_owned(),
        _ => format!("RAISE EXCEPTION '%', {what};"),
    };
    // A rename is for the names' sake only (lookups go by what a constraint constrains): none
    // if the constraint has the name already, or another constraint or relation has it.
    let taken = match action {
        OnConstraint::Drop { .. } => String::new(),
        OnConstraint::RenameTo(to) => {
            let to = quote_literal(to, pg);
            format!(
                "IF found = {to} OR EXISTS (SELECT 1 FROM pg_constraint WHERE conname = {to} \
                 AND connamespace = (SELECT relnamespace FROM pg_class WHERE oid = {relation}::regclass)) \
                 OR EXISTS (SELECT 1 FROM pg_class WHERE relname = {to} \
                 AND relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = {relation}::regclass)) \
                 THEN RETURN; END IF; "
            )
        }
    };
    // `%I` takes the name found; a `%` of the table's name is written `%%`.
    let statement = match action {
        OnConstraint::Drop { .. } => format!(
            "ALTER TABLE {} DROP CONSTRAINT %I",
            quote_ident(table).replace('%', "%%")
        ),
        OnConstraint::RenameTo(to) => format!(
            "ALTER TABLE {} RENAME CONSTRAINT %I TO {}",
            quote_ident(table).replace('%', "%%"),
            quote_ident(to).replace('%', "%%")
        ),
    };
    do_block(&format!(
        "DECLARE found name; BEGIN \
         SELECT conname INTO found FROM pg_constraint \
         WHERE conrelid = {relation}::regclass AND contype = '{kind}'{on_column}; \
         IF found IS NULL THEN {absent} END IF; {taken}\
         EXECUTE format({}, found); END",
        quote_literal(&statement, pg)
    ))
}

/// A PL/pgSQL `DO` block of `body`, quoted with a dollar tag the body does not hold.
fn do_block(body: &str) -> String {
    let mut tag = "$datastore$".to_owned();
    while body.contains(&tag) {
        tag.insert(tag.len() - 1, '_');
    }
    format!("DO {tag} {body} {tag};")
}

/// Renames a table, keeping its rows, indexes and foreign keys. On PostgreSQL the constraints
/// named after it (its key's `<table>_pkey`, and each column's) are renamed too, to the names
/// `CREATE TABLE` would give them where those are free; later migrations find them by what
/// they constrain, whatever their names.
///
/// SQLite compares names without regard to ASCII case, and finds a name that differs from the
/// table's only so (`Users` to `users`) taken by the table itself: the table goes through
/// `__datastore_renamed_<name>` first.
pub fn rename_table(table: &Table, to: &str, dialect: Dialect) -> Vec<String> {
    let rename = |from: &str, to: &str| {
        format!(
            "ALTER TABLE {} RENAME TO {};",
            quote_ident(from),
            quote_ident(to)
        )
    };
    let mut statements = if dialect == Dialect::Sqlite && table.name.eq_ignore_ascii_case(to) {
        let temp = format!("{RENAMED}{to}");
        vec![rename(&table.name, &temp), rename(&temp, to)]
    } else {
        vec![rename(&table.name, to)]
    };
    if dialect == Dialect::Postgres {
        let rename = |column: Option<&str>, label: &str| {
            let now = postgres_constraint(to, column, label);
            postgres_constraint_of(to, column, label, OnConstraint::RenameTo(&now))
        };
        statements.push(rename(None, "pkey"));
        for column in table.columns.iter() {
            for suffix in column_constraints(table, column) {
                statements.push(rename(Some(&column.name), suffix));
            }
        }
    }
    statements
}

/// Renames a column of `table` (as it is before), keeping its values; on PostgreSQL the
/// constraints named after it are renamed too.
pub fn rename_column(table: &Table, from: &str, to: &str, dialect: Dialect) -> Vec<String> {
    let name = quote_ident(&table.name);
    let mut statements = vec![format!(
        "ALTER TABLE {name} RENAME COLUMN {} TO {};",
        quote_ident(from),
        quote_ident(to)
    )];
    if let (Dialect::Postgres, Some(column)) = (dialect, table.column(from)) {
        for suffix in column_constraints(table, column) {
            let now = postgres_constraint(&table.name, Some(to), suffix);
            statements.push(postgres_constraint_of(
                &table.name,
                Some(to),
                suffix,
                OnConstraint::RenameTo(&now),
            ));
        }
    }
    statements
}

/// `ALTER TABLE .. DROP COLUMN`.
pub fn drop_column(table: &str, column: &str, _dialect: Dialect) -> String {
    format!(
        "ALTER TABLE {} DROP COLUMN {};",
        quote_ident(table),
        quote_ident(column)
    )
}

/// The prefix of the name a table takes on SQLite between two names that differ only in
/// ASCII case (see [`rename_table`]).
const RENAMED: &str = "__datastore_renamed_";

/// The prefix of the name a table is rebuilt under (see [`rebuild_table`]), before it takes
/// the table's name.
pub(crate) const REBUILT: &str = "__datastore_new_";

/// The temporary table in which a rebuild keeps the definitions of the triggers SQLite drops
/// with the table (see [`rebuild_table`]).
pub(crate) const DROPPED_TRIGGERS: &str = "__datastore_dropped_triggers";

/// The temporary table in which a rebuild keeps the definitions of the indexes SQLite drops
/// with the table that the models do not declare (written by hand in a migration): see
/// [`rebuild_table`].
pub(crate) const DROPPED_INDEXES: &str = "__datastore_dropped_indexes";

/// The prefix of the name of the check a rebuild makes of a column whose type it changes (see
/// [`rebuild_table`]); a JSON array `[table, column]` follows it.
pub(crate) const UNCONVERTIBLE: &str = "datastore_unconvertible ";

/// The statements that replace a table by a new definition of it, keeping the rows: create
/// the new table beside the old one, copy the columns both have, drop the old one, rename,
/// and recreate the indexes. SQLite cannot alter a column's type or constraints in place.
///
/// A column whose type changes keeps its values only if its new type holds every one of them
/// (a value its field would refuse to read, such as `70000` in a `SmallInt`, stops the
/// rebuild: the check named [`UNCONVERTIBLE`]`["<table>","<column>"]` fails). The rename runs
/// with `legacy_alter_table` on, so that views selecting from the table, which see no table
/// of its name for that instant, do not stop it.
///
/// The caller must run them with foreign-key enforcement off (outside any transaction), or
/// dropping the old table would cascade to the rows that reference it. Triggers on the table
/// are dropped with it: their definitions are kept in the temporary table
/// [`DROPPED_TRIGGERS`] as the drop finds them, and the store creates them again after the
/// migration (another tool running it does not). So are the indexes no model declares
/// (written by hand in a migration), kept in [`DROPPED_INDEXES`]; the rebuild creates the
/// models' own again.
pub fn rebuild_table(old: &Table, new: &Table, dialect: Dialect) -> Vec<String> {
    let temp = format!("{REBUILT}{}", new.name);
    let mut insert_columns = Vec::new();
    let mut select_columns = Vec::new();
    // Enum values are refused by the new table's own CHECK as they are copied, so they are
    // checked in the old table, before; the others in the new one, after.
    let mut checked_before = Vec::new();
    let mut checked_after = Vec::new();
    for column in new.columns.iter() {
        let name = quote_ident(&column.name);
        let was = old.column(&column.name);
        let retyped = was.filter(|was| was.ty != column.ty);
        // A column that becomes a UUID: its values in the one form keys are found by.
        // A column that becomes a timestamp: in the one form instants compare and sort by.
        let copied = match retyped {
            Some(_) if column.ty == ColumnType::Uuid => sqlite_canonical_uuid(&name),
            Some(_) if column.ty == ColumnType::Timestamp => sqlite_canonical_timestamp(&name),
            _ => name.clone(),
        };
        let tightened = was.is_some_and(|was| was.nullable && !column.nullable);
        let value = match (was, &column.default) {
            // A column that becomes NOT NULL: its NULLs take the column's default.
            (Some(_), Some(default)) if tightened => {
                format!("COALESCE({copied}, {})", default.sql(dialect))
            }
            (Some(_), _) => copied.clone(),
            // A key SQLite assigns (the rowid): each copied row gets its own.
            (None, _) if column.generated => continue,
            (None, _) if !column.nullable => fill_value(column, dialect),
            (None, _) => continue,
        };
        // Conditions on the old rows that stop the rebuild: a NULL where the column becomes
        // NOT NULL without a default (in a `down.sql`: no value is invented for it).
        let mut refused_before =
            (tightened && column.default.is_none()).then(|| format!("{name} IS NULL"));
        if let Some(was) = retyped {
            if let Some(mut held) = sqlite_readable(column) {
                if column.ty == ColumnType::Timestamp {
                    // Its offset applied, still an instant of years 0 to 9999 (SQLite's date
                    // functions give NULL past them, and other text before).
                    held = format!(
                        "{held} AND coalesce({copied}, '') GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-*'"
                    );
                }
                let condition = format!("NOT ({name} IS NULL OR {held})");
                match (&was.ty, &column.ty) {
                    // Checked as written, before the copy rewrites them.
                    (_, ColumnType::Enum(_) | ColumnType::Uuid | ColumnType::Timestamp) => {
                        refused_before = Some(match refused_before {
                            Some(nulls) => format!("{nulls} OR {condition}"),
                            None => condition,
                        });
                    }
                    _ => checked_after.push((&column.name, condition)),
                }
            }
        }
        if let Some(condition) = refused_before {
            checked_before.push((&column.name, condition));
        }
        insert_columns.push(name);
        select_columns.push(value);
    }
    let mut statements = vec![
        // Left by an earlier run that crashed before its version was recorded.
        format!("DROP TABLE IF EXISTS {};", quote_ident(&temp)),
        create_table_as(new, &temp, dialect),
    ];
    statements.extend(unconvertible_check(&new.name, &old.name, &checked_before));
    statements.push(format!(
        "INSERT INTO {} ({}) SELECT {} FROM {};",
        quote_ident(&temp),
        insert_columns.join(", "),
        select_columns.join(", "),
        quote_ident(&old.name)
    ));
    statements.extend(unconvertible_check(&new.name, &temp, &checked_after));
    // SQLite drops the table's triggers and indexes with it: their definitions, as they are
    // now, for the store to create them again once the migration has run (the indexes no model
    // declares: the models' own are created below).
    statements.extend(keep_dropped(
        DROPPED_TRIGGERS,
        "trigger",
        &old.name,
        String::new(),
    ));
    let declared: Vec<String> = old
        .all_indexes()
        .iter()
        .chain(&new.all_indexes())
        .map(|index| quote_literal(&index.name, dialect))
        .collect();
    statements.extend(keep_dropped(
        DROPPED_INDEXES,
        "index",
        &old.name,
        format!(
            " AND sql IS NOT NULL AND name COLLATE NOCASE NOT IN ({})",
            declared.join(", ")
        ),
    ));
    statements.extend([
        drop_table(&old.name, dialect),
        "PRAGMA legacy_alter_table = ON;".to_owned(),
        format!(
            "ALTER TABLE {} RENAME TO {};",
            quote_ident(&temp),
            quote_ident(&new.name)
        ),
        "PRAGMA legacy_alter_table = OFF;".to_owned(),
    ]);
    statements.extend(
        new.all_indexes()
            .iter()
            .map(|i| create_index(&new.name, i, dialect)),
    );
    statements
}

/// The statements that keep, in the temporary table `kept`, the definitions of the objects of
/// type `kind` on `table` that match `and` too, as dropping the table will find them.
fn keep_dropped(kept: &str, kind: &str, table: &str, and: String) -> [String; 2] {
    [
        format!("CREATE TEMP TABLE IF NOT EXISTS {kept} (name TEXT, tbl_name TEXT, sql TEXT);"),
        format!(
            "INSERT INTO temp.{kept} SELECT name, tbl_name, sql FROM main.sqlite_master \
             WHERE type = '{kind}' AND tbl_name = {} COLLATE NOCASE{and};",
            quote_literal(table, Dialect::Sqlite)
        ),
    ]
}

/// The statements that stop a rebuild of `table` if a row of `from` matches one of the
/// `(column, condition)` pairs: a temporary table whose one column per pair must count no
/// rows, under a check named [`UNCONVERTIBLE`]`[table, column]` (SQLite's error names it).
fn unconvertible_check(table: &str, from: &str, checks: &[(&Name, String)]) -> Vec<String> {
    if checks.is_empty() {
        return Vec::new();
    }
    const CHECK: &str = "__datastore_unconvertible";
    let columns = checks.iter().enumerate().map(|(i, (column, _))| {
        let name = format!(
            "{UNCONVERTIBLE}{}",
            serde_json::json!([table, column.as_ref()])
        );
        format!(
            "c{i} INTEGER CONSTRAINT {} CHECK (c{i} = 0)",
            quote_ident(&name)
        )
    });
    let counts = checks
        .iter()
        .map(|(_, matches)| format!("count(*) FILTER (WHERE {matches})"));
    vec![
        format!(
            "CREATE TEMP TABLE {CHECK} ({});",
            columns.collect::<Vec<_>>().join(", ")
        ),
        format!(
            "INSERT INTO {CHECK} SELECT {} FROM {};",
            counts.collect::<Vec<_>>().join(", "),
            quote_ident(from)
        ),
        format!("DROP TABLE {CHECK};"),
    ]
}

/// The text `Timestamp` stores on SQLite (`YYYY-MM-DDTHH:MM:SS.ffffffZ`, in UTC) of the instant
/// `value` holds in any form [`sqlite_readable`] accepts: a `t` or a space for the `T`, any
/// number of fractional digits (cut to six, as `Timestamp` keeps microseconds), `z`, an offset
/// (applied by SQLite's date functions, which keep no fraction: the fraction is carried over,
/// which whole-minute offsets leave alone) or none. `NULL` stays `NULL`.
fn sqlite_canonical_timestamp(value: &str) -> String {
    let rest = format!("substr({value}, 20)");
    let after_point = format!("substr({rest}, 2)");
    let has_fraction = format!("{rest} GLOB '.[0-9]*'");
    let tail =
        format!("CASE WHEN {has_fraction} THEN ltrim({after_point}, '0123456789') ELSE {rest} END");
    let digits = format!(
        "CASE WHEN {has_fraction} THEN substr({after_point}, 1, length({after_point}) - length({tail})) \
         ELSE '' END"
    );
    let offset = format!("CASE WHEN {tail} IN ('Z', 'z') THEN '' ELSE {tail} END");
    format!(
        "strftime('%Y-%m-%dT%H:%M:%S', substr({value}, 1, 10) || ' ' || substr({value}, 12, 8) || {offset}) \
         || '.' || substr({digits} || '000000', 1, 6) || 'Z'"
    )
}

/// The lowercase, hyphenated text of the UUID `value` holds in any form [`sqlite_readable`]
/// accepts (hyphenated, bare, braced, URN; any case): the only form `Id` reads on SQLite, and
/// the one every statement binds keys in. `NULL` stays `NULL`.
fn sqlite_canonical_uuid(value: &str) -> String {
    let hex = format!(
        "lower(replace(replace(replace(substr({value}, CASE WHEN {value} GLOB '[Uu][Rr][Nn]:*' \
         THEN 10 ELSE 1 END), '-', ''), '{{', ''), '}}', ''))"
    );
    [(1, 8), (9, 4), (13, 4), (17, 4), (21, 12)]
        .map(|(at, len)| format!("substr({hex}, {at}, {len})"))
        .join(" || '-' || ")
}

/// A condition true when the value of `column`, stored in a SQLite column of its type, is one
/// its field reads: the checks a `STRICT` column's storage class does not make. `None` where
/// the storage class is enough.
fn sqlite_readable(column: &Column) -> Option<String> {
    let value = quote_ident(&column.name);
    let hex = |n: usize| "[0-9A-Fa-f]".repeat(n);
    Some(match &column.ty {
        ColumnType::SmallInt => format!("{value} BETWEEN -32768 AND 32767"),
        ColumnType::Integer => format!("{value} BETWEEN -2147483648 AND 2147483647"),
        ColumnType::Bool => format!("{value} IN (0, 1)"),
        // Below f32::MAX's rounding boundary (2^128 - 2^103), or infinite (9e999): what an
        // `f32` field reads.
        ColumnType::Float => {
            format!("abs({value}) < 3.4028235677973366e38 OR abs({value}) = 9e999")
        }
        // The forms `Uuid::parse_str` reads: hyphenated, bare, braced, URN.
        ColumnType::Uuid => {
            let hyphenated = [8, 4, 4, 4, 12].map(hex).join("-");
            format!(
                "{value} GLOB '{hyphenated}' OR {value} GLOB '{}' OR {value} GLOB '{{{hyphenated}}}' \
                 OR {value} GLOB '[Uu][Rr][Nn]:[Uu][Uu][Ii][Dd]:{hyphenated}'",
                hex(32)
            )
        }
        // What `Timestamp` parses: RFC 3339 (`T`, `t` or a space, then fractional seconds and
        // `Z` or an offset), or a date and time with a space and no offset; a real date and
        // time (no February 30th, no 24:00), which SQLite's date functions give back unchanged.
        ColumnType::Timestamp => {
            let rest = format!("substr({value}, 20)");
            let tail = format!(
                "CASE WHEN {rest} GLOB '.[0-9]*' THEN ltrim(substr({rest}, 2), '0123456789') \
                 ELSE {rest} END"
            );
            let day_time = format!("substr({value}, 1, 10) || ' ' || substr({value}, 12, 8)");
            format!(
                "{value} GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9][Tt ][0-9][0-9]:[0-9][0-9]:[0-9][0-9]*' \
                 AND datetime(julianday({day_time})) = {day_time} \
                 AND ({tail} IN ('Z', 'z') OR {tail} GLOB '[+-][01][0-9]:[0-5][0-9]' \
                      OR {tail} GLOB '[+-]2[0-3]:[0-5][0-9]' \
                      OR ({tail} = '' AND substr({value}, 11, 1) = ' '))"
            )
        }
        ColumnType::Json => format!("json_valid({value})"),
        ColumnType::Enum(_) => return column.check(Dialect::Sqlite),
        ColumnType::BigInt | ColumnType::Double | ColumnType::Text | ColumnType::Blob => {
            return None;
        }
    })
}

/// Where PostgreSQL's cast from `from` to `to` would change a value rather than refuse it,
/// as SQLite's rebuild does ([`sqlite_readable`]): the condition on the old value `value` under
/// which the cast keeps it. A real number cast to an integer is rounded (`2.7` becomes `3`),
/// a number becoming a boolean is true for any value but 0 (`2` becomes `true`), a
/// timestamp written as text outside the years 1 to 9999 would lose its era or its sign,
/// bytes cast to text are written as hex (`hi` becomes `\x6869`), and text cast to bytes has
/// its backslashes read as escapes.
fn postgres_cast_keeps(value: &str, from: &ColumnType, to: &ColumnType) -> Option<String> {
    use ColumnType::*;
    match (from, to) {
        // SQLite's `STRICT` table refuses bytes in a column of text, and text in a column of
        // bytes, as the rebuild copies them: only NULLs are kept.
        (Blob, Text | Enum(_)) | (Text | Enum(_), Blob) => Some("false".to_owned()),
        (Float | Double, SmallInt | Integer | BigInt) => Some(format!("{value} = trunc({value})")),
        (from, Bool) if from.is_number() => Some(format!("{value} IN (0, 1)")),
        // The text is written as `Timestamp`'s four-digit years (no infinity, no era).
        (Timestamp, Text) => Some(format!(
            "{value} > '-infinity' AND {value} < 'infinity' \
             AND extract(year FROM {value} AT TIME ZONE 'UTC') BETWEEN 1 AND 9999"
        )),
        // The forms `Timestamp` parses, which SQLite's rebuild accepts (`sqlite_readable`):
        // not PostgreSQL's wider input (`now`, `epoch`, `infinity`, zone names, other orders
        // of day and month, `24:00:00`, a 60th second), which would read as instants the text
        // never meant; a day the month has (a cast would fail with no name of the column).
        // Year 0, which PostgreSQL's calendar lacks (SQLite reads it), stops it too.
        (Text, Timestamp) => {
            let date = "(?!0000)[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])";
            let time = r"([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?";
            let offset = "([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])";
            let pattern = |pattern: String| quote_literal(&pattern, Dialect::Postgres);
            Some(format!(
                "CASE WHEN {value} ~ {} OR {value} ~ {} \
                 THEN substr({value}, 9, 2)::int <= extract(day FROM make_date(substr({value}, 1, 4)::int, \
                 substr({value}, 6, 2)::int, 1) + interval '1 month - 1 day') ELSE false END",
                pattern(format!("^{date}[Tt ]{time}{offset}$")),
                pattern(format!("^{date} {time}$")),
            ))
        }
        _ => None,
    }
}

/// A PostgreSQL statement that stops a migration changing the type of `table`'s `column` if a
/// row's value fails `held` (its message names them as SQLite's rebuild check does: see
/// [`UNCONVERTIBLE`]).
fn postgres_unconvertible_check(table: &str, column: &str, held: &str) -> String {
    let message = format!("{UNCONVERTIBLE}{}", serde_json::json!([table, column]));
    let column = quote_ident(column);
    format!(
        "DO $datastore$ BEGIN IF EXISTS (SELECT 1 FROM {} WHERE NOT ({column} IS NULL OR {held})) \
         THEN RAISE EXCEPTION '%', {}; END IF; END $datastore$;",
        quote_ident(table),
        quote_literal(&message, Dialect::Postgres)
    )
}

/// `ALTER TABLE .. ADD FOREIGN KEY` (PostgreSQL), named by PostgreSQL as `CREATE TABLE`'s
/// are.
pub fn add_foreign_key(table: &str, fk: &ForeignKey) -> String {
    format!(
        "ALTER TABLE {} ADD FOREIGN KEY ({}) REFERENCES {} ({}) ON DELETE {}{};",
        quote_ident(table),
        quote_ident(&fk.column),
        quote_ident(&fk.references),
        quote_ident(&fk.referenced_column),
        on_delete_sql(fk.on_delete),
        if fk.on_update_cascade {
            " ON UPDATE CASCADE"
        } else {
            ""
        }
    )
}

/// [`add_foreign_key`], unless the column has a foreign key already (PostgreSQL).
pub fn add_foreign_key_if_absent(table: &str, fk: &ForeignKey) -> String {
    let relation = quote_literal(&quote_ident(table), Dialect::Postgres);
    do_block(&format!(
        "BEGIN IF NOT EXISTS (SELECT 1 FROM pg_constraint \
         WHERE conrelid = {relation}::regclass AND contype = 'f' AND conkey = ARRAY[\
         (SELECT attnum FROM pg_attribute WHERE attrelid = {relation}::regclass AND attname = {})]) \
         THEN {} END IF; END",
        quote_literal(&fk.column, Dialect::Postgres),
        add_foreign_key(table, fk)
    ))
}

/// `ALTER TABLE .. DROP CONSTRAINT` of the foreign key of `column` (PostgreSQL).
pub fn drop_foreign_key(table: &str, column: &str) -> String {
    postgres_constraint_of(
        table,
        Some(column),
        "fkey",
        OnConstraint::Drop { required: true },
    )
}

/// `table` as it can be created before the tables named `later` (created after it, in the same
/// run): on PostgreSQL, without its foreign keys to them, which it returns to be added once they
/// exist ([`add_foreign_key`]); two tables referencing each other cannot be created otherwise.
/// SQLite takes a reference to a table not there yet (and cannot add one later).
pub fn before_tables<'t>(
    table: &'t Table,
    later: &[&str],
    dialect: Dialect,
) -> (Cow<'t, Table>, Vec<&'t ForeignKey>) {
    let forward = |fk: &ForeignKey| fk.references != table.name && later.contains(&&*fk.references);
    if dialect != Dialect::Postgres || !table.foreign_keys.iter().any(forward) {
        return (Cow::Borrowed(table), Vec::new());
    }
    let deferred = table.foreign_keys.iter().filter(|fk| forward(fk)).collect();
    (Cow::Owned(table.without_foreign_keys(forward)), deferred)
}

/// The `ALTER TABLE` statements that change a table's columns in place (PostgreSQL): type,
/// nullability, uniqueness, check and foreign key of each column both definitions have, and the
/// columns one of them lacks. Constraints are added unnamed, so that PostgreSQL names them as
/// it names `CREATE TABLE`'s, and dropped as found in its catalog by what they constrain.
pub fn alter_table(old: &Table, new: &Table, dialect: Dialect) -> Vec<String> {
    let table = quote_ident(&new.name);
    let mut statements = Vec::new();
    let (old_indexes, new_indexes) = (old.all_indexes(), new.all_indexes());
    let renamed = renamed_indexes(&old_indexes, &new_indexes);
    for (from, to) in &renamed {
        statements.extend(rename_index(&new.name, from, to, dialect));
    }
    for index in old_indexes
        .iter()
        .filter(|i| !new_indexes.contains(i) && !renamed.iter().any(|(from, _)| from == *i))
    {
        statements.push(drop_index(index, dialect));
    }
    for column in old.columns.iter().filter(|c| new.column(&c.name).is_none()) {
        statements.push(drop_column(&old.name, &column.name, dialect));
    }
    let key_changes = old.primary_key != new.primary_key;
    if key_changes {
        // Before a column of the new key is added; gone already if its column was dropped.
        statements.push(postgres_constraint_of(
            &new.name,
            None,
            "pkey",
            OnConstraint::Drop { required: false },
        ));
    }
    // Added columns are made the key by `ADD PRIMARY KEY` below, not each by its definition.
    let unkeyed = Table {
        primary_key: Cow::Borrowed(&[]),
        ..new.clone()
    };
    for column in new.columns.iter() {
        let Some(was) = old.column(&column.name) else {
            statements.extend(add_column(&unkeyed, column, dialect));
            continue;
        };
        let name = quote_ident(&column.name);
        let (fk_was, fk_now) = (old.foreign_key(&column.name), new.foreign_key(&column.name));
        if fk_was.is_some() && fk_was != fk_now {
            statements.push(drop_foreign_key(&new.name, &column.name));
        }
        let drop = |label, required| {
            postgres_constraint_of(
                &new.name,
                Some(&column.name),
                label,
                OnConstraint::Drop { required },
            )
        };
        if was.check(dialect).is_some() && was.check(dialect) != column.check(dialect) {
            statements.push(drop("check", true));
        }
        // A unique column that is the whole primary key has no constraint of its own (the
        // key's is enough): one is dropped or added as the column becomes it or stops being it.
        // (A column still unique, becoming the whole key: tables made before composite keys'
        // unique columns had a constraint of their own have none to drop.)
        let had_unique = was.unique && !old.is_whole_key(&was.name);
        let has_unique = column.unique && !new.is_whole_key(&column.name);
        if had_unique && !has_unique {
            statements.push(drop("key", !column.unique));
        }
        let retyped = dialect.column_type(&was.ty) != dialect.column_type(&column.ty);
        // PostgreSQL converts a column's default along with it by a plain cast, not by the
        // `USING` (an integer's `0` becomes no boolean): the old default is dropped first, and
        // the new one set after.
        let default_dropped = retyped && was.default.is_some();
        if default_dropped {
            statements.push(format!(
                "ALTER TABLE {table} ALTER COLUMN {name} DROP DEFAULT;"
            ));
        }
        if retyped {
            let ty = dialect.column_type(&column.ty);
            if let Some(held) = postgres_cast_keeps(&name, &was.ty, &column.ty) {
                statements.push(postgres_unconvertible_check(&new.name, &column.name, &held));
            }
            let using = match (&was.ty, &column.ty) {
                // PostgreSQL casts only `integer` to and from `boolean` (not `smallint`,
                // `bigint` or the real types): a number is compared with 0 (after the check
                // above, which keeps only 0 and 1), and a boolean goes through `integer`.
                (from, ColumnType::Bool) if from.is_number() => format!("({name} <> 0)"),
                (ColumnType::Bool, to) if to.is_number() => format!("{name}::INTEGER::{ty}"),
                // The text a `Timestamp` is on SQLite, not the session's `DateStyle`.
                (ColumnType::Timestamp, ColumnType::Text) => format!(
                    "to_char({name} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
                ),
                // An instant as `Timestamp` reads the text: without an offset in UTC, not in
                // the session's time zone; fractions past microseconds cut, not rounded.
                (ColumnType::Text, ColumnType::Timestamp) => {
                    let text = format!(
                        "regexp_replace({name}, {}, {})",
                        quote_literal(r"(\.[0-9]{6})[0-9]+", dialect),
                        quote_literal(r"\1", dialect)
                    );
                    format!(
                        r"CASE WHEN {name} ~ '([Zz]|[+-][0-9]{{2}}:[0-9]{{2}})$' THEN {text}::{ty} ELSE {text}::timestamp AT TIME ZONE 'UTC' END"
                    )
                }
                _ => format!("{name}::{ty}"),
            };
            statements.push(format!(
                "ALTER TABLE {table} ALTER COLUMN {name} TYPE {ty} USING {using};"
            ));
        }
        if was.default != column.default || default_dropped {
            statements.extend(match &column.default {
                Some(default) => Some(format!(
                    "ALTER TABLE {table} ALTER COLUMN {name} SET DEFAULT {};",
                    default.sql(dialect)
                )),
                None => (!default_dropped)
                    .then(|| format!("ALTER TABLE {table} ALTER COLUMN {name} DROP DEFAULT;")),
            });
        }
        if was.nullable != column.nullable {
            // Its NULLs take the column's default first; without one (in a `down.sql`), a NULL
            // stops the migration: no value is invented for it.
            if let Some(default) = column.default.as_ref().filter(|_| !column.nullable) {
                statements.push(format!(
                    "UPDATE {table} SET {name} = {} WHERE {name} IS NULL;",
                    default.sql(dialect)
                ));
            }
            let change = if column.nullable { "DROP" } else { "SET" };
            statements.push(format!(
                "ALTER TABLE {table} ALTER COLUMN {name} {change} NOT NULL;"
            ));
        }
        // Named by PostgreSQL, as `CREATE TABLE`'s are (found by what they constrain).
        if has_unique && !had_unique {
            statements.push(format!("ALTER TABLE {table} ADD UNIQUE ({name});"));
        }
        if let Some(check) = column
            .check(dialect)
            .filter(|c| was.check(dialect).as_ref() != Some(c))
        {
            statements.push(format!("ALTER TABLE {table} ADD CHECK ({check});"));
        }
        if let Some(fk) = fk_now.filter(|fk| fk_was != Some(*fk)) {
            statements.push(add_foreign_key(&new.name, fk));
        }
        // A key the database assigns: its identity, and a sequence past the keys there are.
        if column.generated && !was.generated {
            statements.push(format!(
                "ALTER TABLE {table} ALTER COLUMN {name} ADD GENERATED BY DEFAULT AS IDENTITY;"
            ));
            statements.push(format!(
                "SELECT setval(pg_get_serial_sequence({}, {}), max({name})) FROM {table} \
                 HAVING max({name}) IS NOT NULL;",
                quote_literal(&table, dialect),
                quote_literal(&column.name, dialect)
            ));
        } else if was.generated && !column.generated {
            statements.push(format!(
                "ALTER TABLE {table} ALTER COLUMN {name} DROP IDENTITY;"
            ));
        }
    }
    if key_changes {
        statements.push(format!(
            "ALTER TABLE {table} ADD PRIMARY KEY ({});",
            key_list(new)
        ));
    }
    for index in new_indexes
        .iter()
        .filter(|i| !old_indexes.contains(i) && !renamed.iter().any(|(_, to)| to == *i))
    {
        statements.push(create_index(&new.name, index, dialect));
    }
    statements
}

/// The statement `save` runs, in two pieces around its bound values (which are separated by
/// commas): `INSERT INTO "table" (..) VALUES (` and what follows.
///
/// It inserts the row, or on a key conflict updates every column but the key and `created_at`,
/// and only when a value other than the timestamps differs, so that saving an unchanged row
/// writes nothing; it returns the row as stored.
pub fn upsert(table: &Table, timestamps: Timestamps, dialect: Dialect) -> [String; 2] {
    let Timestamps {
        created_at,
        updated_at,
    } = timestamps;
    let name = quote_ident(&table.name);
    let columns: Vec<String> = table.columns.iter().map(|c| quote_ident(&c.name)).collect();
    let list = columns.join(", ");
    let is_key = |c: &Column| table.is_key(&c.name);
    let set: Vec<String> = table
        .columns
        .iter()
        .filter(|c| !is_key(c) && Some(c.name.as_ref()) != created_at)
        .map(|c| format!("{0} = excluded.{0}", quote_ident(&c.name)))
        .collect();
    let differs = match dialect {
        Dialect::Sqlite => "IS NOT",
        Dialect::Postgres => "IS DISTINCT FROM",
    };
    let changed: Vec<String> = table
        .columns
        .iter()
        .filter(|c| !is_key(c) && ![created_at, updated_at].contains(&Some(c.name.as_ref())))
        .map(|c| format!("{name}.{0} {differs} excluded.{0}", quote_ident(&c.name)))
        .collect();
    let action = if changed.is_empty() {
        "DO NOTHING".to_owned()
    } else {
        format!(
            "DO UPDATE SET {} WHERE {}",
            set.join(", "),
            changed.join(" OR ")
        )
    };
    let insert = format!("INSERT INTO {name} ({list}) VALUES (");
    let on_conflict = format!(
        ") ON CONFLICT ({}) {action} RETURNING {}",
        key_list(table),
        read_columns(table, dialect, None)
    );
    match generated_key(table) {
        // A key given to a row whose database assigns keys (an import) moves PostgreSQL's
        // sequence past it, in the same statement, so that later rows get fresh keys (SQLite
        // assigns one past the largest rowid by itself).
        Some(column) if dialect == Dialect::Postgres => {
            let key = quote_ident(column);
            let sequence = format!(
                "pg_get_serial_sequence({}, {})",
                quote_literal(&name, dialect),
                quote_literal(column, dialect)
            );
            let saved: Vec<String> = columns.iter().map(|c| format!("saved.{c}")).collect();
            [
                format!("WITH saved AS ({insert}"),
                format!(
                    "{on_conflict}) SELECT {} FROM saved CROSS JOIN LATERAL (SELECT CASE \
                     WHEN saved.{key} > coalesce(pg_sequence_last_value({sequence}::regclass), 0) \
                     THEN setval({sequence}::regclass, saved.{key}) END) AS moved",
                    saved.join(", ")
                ),
            ]
        }
        _ => [insert, on_conflict],
    }
}

/// The statement inserting a row whose key the database assigns, in two pieces around its
/// bound values (every column but the key, separated by commas); it returns the row with its
/// key.
pub fn insert_unkeyed(table: &Table, dialect: Dialect) -> [String; 2] {
    let name = quote_ident(&table.name);
    let all = read_columns(table, dialect, None);
    let given = given_columns(table);
    if given.is_empty() {
        return [
            format!("INSERT INTO {name} DEFAULT VALUES"),
            format!(" RETURNING {all}"),
        ];
    }
    [
        format!("INSERT INTO {name} ({}) VALUES (", given.join(", ")),
        format!(") RETURNING {all}"),
    ]
}

/// Every column of `table`, as the store reads a row of it ([`Selection`](crate::Selection)),
/// each qualified by `qualifier` if one is given: on SQLite, a key or an instant as the bytes
/// SQLite keeps (`CAST(.. AS BLOB)`), which their reads take without Diesel's text read; a type
/// of the caller's own stored as one of those reads a blob as its text.
pub fn read_columns(table: &Table, dialect: Dialect, qualifier: Option<&str>) -> String {
    let qualifier = qualifier
        .map(|q| format!("{}.", quote_ident(q)))
        .unwrap_or_default();
    let columns: Vec<String> = table
        .columns
        .iter()
        .map(|c| {
            let name = quote_ident(&c.name);
            match (dialect, &c.ty) {
                (Dialect::Sqlite, ColumnType::Uuid | ColumnType::Timestamp) => {
                    format!("CAST({qualifier}{name} AS BLOB)")
                }
                _ => format!("{qualifier}{name}"),
            }
        })
        .collect();
    columns.join(", ")
}

/// A multi-row `INSERT` of every column, in three pieces around its rows' bound values: what
/// comes before the first row's, between two rows', and after the last's.
pub fn insert_rows(table: &Table) -> [String; 3] {
    let columns: Vec<String> = table.columns.iter().map(|c| quote_ident(&c.name)).collect();
    [
        format!(
            "INSERT INTO {} ({}) VALUES (",
            quote_ident(&table.name),
            columns.join(", ")
        ),
        "), (".to_owned(),
        ")".to_owned(),
    ]
}

/// A multi-row `INSERT` of rows whose key the database assigns, in [`insert_rows`]' three
/// pieces: every column but the generated key, returning the keys assigned.
pub fn insert_rows_unkeyed(table: &Table) -> [String; 3] {
    let given = given_columns(table);
    [
        format!(
            "INSERT INTO {} ({}) VALUES (",
            quote_ident(&table.name),
            given.join(", ")
        ),
        "), (".to_owned(),
        format!(") RETURNING {}", key_list(table)),
    ]
}

/// The columns a new row is given (all but the key the database assigns), quoted.
fn given_columns(table: &Table) -> Vec<String> {
    table
        .columns
        .iter()
        .filter(|c| !c.generated)
        .map(|c| quote_ident(&c.name))
        .collect()
}

/// The primary key's columns, quoted, separated by commas.
fn key_list(table: &Table) -> String {
    let key: Vec<String> = table.primary_key.iter().map(|c| quote_ident(c)).collect();
    key.join(", ")
}

/// The key column the database assigns, if the table has one.
fn generated_key(table: &Table) -> Option<&str> {
    table
        .columns
        .iter()
        .find(|c| c.generated)
        .map(|c| c.name.as_ref())
}

#[cfg(test)]
mod examples {
    use crate::schema::{Column, Table};
    use std::borrow::Cow;

    /// A table `notes` keyed by `id`, of these columns.
    fn notes(columns: Vec<Column>) -> Table {
        Table {
            name: "notes".into(),
            primary_key: vec!["id".into()].into(),
            columns: columns.into(),
            foreign_keys: Cow::Borrowed(&[]),
            indexes: Cow::Borrowed(&[]),
        }
    }

    /// The names PostgreSQL 15 gave a table of 40 `t`s with a column of 40 `c`s.
    #[test]
    fn constraint_names_are_postgres_own() {
        use super::postgres_constraint;
        let (t, c) = ("t".repeat(40), "c".repeat(40));
        let name = |label| postgres_constraint(&t, Some(&c), label);
        let cut =
            |t: usize, c: usize, label| format!("{}_{}_{label}", "t".repeat(t), "c".repeat(c));
        assert_eq!(name("fkey"), cut(29, 28, "fkey"));
        assert_eq!(name("key"), cut(29, 29, "key"));
        assert_eq!(name("check"), cut(28, 28, "check"));
        assert_eq!(postgres_constraint(&t, None, "pkey"), format!("{t}_pkey"));
        assert_eq!(
            postgres_constraint("posts", Some("author_id"), "fkey"),
            "posts_author_id_fkey"
        );
        // Cut at a character boundary: 'é' is two bytes.
        let accented = postgres_constraint(&"é".repeat(40), Some("c"), "fkey");
        assert_eq!(accented, format!("{}_c_fkey", "é".repeat(28)));
    }

    /// PostgreSQL keeps an index's first 63 bytes, cut at a character boundary: a rename to a
    /// name alike there is none (the index has that name already), one to a name that differs
    /// there is made.
    #[test]
    fn an_index_rename_to_a_name_postgres_keeps_alike_is_none() {
        use super::{Dialect, rename_index};
        use crate::schema::Index;
        let index = |name: String| Index {
            name: name.into(),
            columns: vec!["c".into()].into(),
            unique: false,
        };
        let rename = |from: &str, to: &str| {
            rename_index(
                "t",
                &index(format!("idx_{from}")),
                &index(format!("idx_{to}")),
                Dialect::Postgres,
            )
        };
        // 'é' is two bytes: the 30th spans bytes 62 and 63, and is cut whole.
        let (long, short) = ("é".repeat(30), "é".repeat(29));
        assert!(rename(&format!("{long}a"), &format!("{long}b")).is_empty());
        assert_eq!(
            rename(&format!("{short}a"), &format!("{short}b")),
            [format!(
                r#"ALTER INDEX "idx_{short}a" RENAME TO "idx_{short}b";"#
            )]
        );
        assert_eq!(
            rename_index("t", &index("a".into()), &index("b".into()), Dialect::Sqlite).len(),
            2,
            "dropped and created again"
        );
    }

    #[test]
    fn has_dialect_example() {
        use crate::schema::ddl::{Dialect, HasDialect};
        assert_eq!(crate::diesel::sqlite::Sqlite.dialect(), Dialect::Sqlite);
    }

    #[test]
    fn quote_ident_example() {
        use crate::schema::ddl::quote_ident;
        assert_eq!(quote_ident("group"), r#""group""#);
        assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
    }

    /// SQLite's literals have no escapes: only quotes are doubled. PostgreSQL's hold a
    /// backslash in an escape string, doubled, which reads the same whatever
    /// `standard_conforming_strings` says; without one, the plain form.
    #[test]
    fn literals_are_quoted_for_their_dialect() {
        use crate::schema::ddl::{Dialect, quote_literal};
        for (value, sqlite, postgres) in [
            ("it's", "'it''s'", "'it''s'"),
            ("", "''", "''"),
            (r"C:\dir\", r"'C:\dir\'", r"E'C:\\dir\\'"),
            (
                r"\'; DROP TABLE t; --",
                r"'\''; DROP TABLE t; --'",
                r"E'\\''; DROP TABLE t; --'",
            ),
            (r"\\", r"'\\'", r"E'\\\\'"),
        ] {
            assert_eq!(quote_literal(value, Dialect::Sqlite), sqlite, "{value}");
            assert_eq!(quote_literal(value, Dialect::Postgres), postgres, "{value}");
        }
    }

    #[test]
    fn create_table_example() {
        use crate::schema::ColumnType;
        use crate::schema::ddl::{Dialect, create_table};

        let table = notes(vec![
            Column::new("id", ColumnType::Uuid, false),
            Column::new("text", ColumnType::Text, true),
        ]);
        assert_eq!(
            create_table(&table, Dialect::Sqlite),
            "CREATE TABLE \"notes\" (\n    \"id\" TEXT PRIMARY KEY NOT NULL,\n    \"text\" TEXT\n) STRICT;"
        );
    }

    #[test]
    fn if_not_exists_example() {
        use crate::schema::ddl::if_not_exists;
        assert_eq!(
            if_not_exists("CREATE TABLE \"a\" (\n);"),
            "CREATE TABLE IF NOT EXISTS \"a\" (\n);"
        );
        assert_eq!(
            if_not_exists("CREATE UNIQUE INDEX \"i\" ON \"a\" (\"x\");"),
            "CREATE UNIQUE INDEX IF NOT EXISTS \"i\" ON \"a\" (\"x\");"
        );
    }

    #[test]
    fn upsert_example() {
        use crate::schema::ddl::{Dialect, upsert};
        use crate::schema::{ColumnType, Timestamps};

        let table = notes(vec![
            Column::new("id", ColumnType::Uuid, false),
            Column::new("text", ColumnType::Text, false),
        ]);
        assert_eq!(
            upsert(&table, Timestamps::default(), Dialect::Sqlite).join("?, ?"),
            r#"INSERT INTO "notes" ("id", "text") VALUES (?, ?) ON CONFLICT ("id") DO UPDATE SET "text" = excluded."text" WHERE "notes"."text" IS NOT excluded."text" RETURNING CAST("id" AS BLOB), "text""#
        );
        // Returned as stored on PostgreSQL, whose keys are `uuid`.
        assert!(
            upsert(&table, Timestamps::default(), Dialect::Postgres)[1]
                .ends_with(r#"RETURNING "id", "text""#)
        );
    }

    #[test]
    fn insert_unkeyed_example() {
        use crate::schema::ColumnType;
        use crate::schema::ddl::{Dialect, insert_unkeyed};

        let mut id = Column::new("id", ColumnType::BigInt, false);
        id.generated = true;
        let table = notes(vec![
            id,
            Column::new("text", ColumnType::Text, false),
            Column::new("at", ColumnType::Timestamp, false),
        ]);
        assert_eq!(
            insert_unkeyed(&table, Dialect::Sqlite).join("?, ?"),
            r#"INSERT INTO "notes" ("text", "at") VALUES (?, ?) RETURNING "id", "text", CAST("at" AS BLOB)"#
        );
        assert_eq!(
            insert_unkeyed(&table, Dialect::Postgres).join("?, ?"),
            r#"INSERT INTO "notes" ("text", "at") VALUES (?, ?) RETURNING "id", "text", "at""#
        );
    }

    #[test]
    fn insert_rows_example() {
        use crate::schema::ColumnType;
        use crate::schema::ddl::insert_rows;

        let table = notes(vec![
            Column::new("id", ColumnType::Uuid, false),
            Column::new("text", ColumnType::Text, false),
        ]);
        let [before, between, after] = insert_rows(&table);
        assert_eq!(
            format!("{before}?, ?{between}?, ?{after}"),
            r#"INSERT INTO "notes" ("id", "text") VALUES (?, ?), (?, ?)"#
        );
    }

    #[test]
    fn insert_rows_unkeyed_example() {
        use crate::schema::ColumnType;
        use crate::schema::ddl::insert_rows_unkeyed;

        let mut id = Column::new("id", ColumnType::BigInt, false);
        id.generated = true;
        let table = notes(vec![id, Column::new("text", ColumnType::Text, false)]);
        let [before, between, after] = insert_rows_unkeyed(&table);
        assert_eq!(
            format!("{before}?{between}?{after}"),
            r#"INSERT INTO "notes" ("text") VALUES (?), (?) RETURNING "id""#
        );
    }
}
