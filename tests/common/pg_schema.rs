//! Schemas of their own on the PostgreSQL server, for the tests and the benchmarks (which
//! include this file by path): each claimed by the session that made it while it lives,
//! dropped with its logical feed's publication when it is dropped, and, if a killed run left
//! it behind, dropped by the next one made with the same prefix.

use datastore::diesel::connection::SimpleConnection;
use datastore::diesel::{Connection, PgConnection, RunQueryDsl};

/// What every test schema's name starts with (then a UUID).
pub const TEST_SCHEMA_PREFIX: &str = "datastore_test_";

/// What every benchmark schema's name starts with (then a UUID).
pub const BENCH_SCHEMA_PREFIX: &str = "datastore_bench_";

/// The session advisory lock that claims the schema `name` while its test or benchmark runs:
/// a key of 64 bits from the name's MD5, as SQL over the text `name` is.
fn schema_claim(name: &str) -> String {
    format!("('x' || substr(md5({name}), 1, 16))::bit(64)::bigint")
}

/// `name` quoted as an identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `name` as a string literal that means `name` whatever `standard_conforming_strings` says
/// (an escape string, its backslashes doubled).
fn literal(name: &str) -> String {
    format!("E'{}'", name.replace('\\', "\\\\").replace('\'', "''"))
}

/// Creates the schema `name` through `admin`, first claimed by `admin`'s session (released
/// when it closes, also when the process is killed), so that [`drop_abandoned_schemas`] never
/// takes it for a leftover.
pub fn create_claimed_schema(admin: &mut PgConnection, name: &str) {
    admin
        .batch_execute(&format!(
            "SELECT pg_advisory_lock({}); CREATE SCHEMA {}",
            schema_claim(&literal(name)),
            ident(name)
        ))
        .expect("create a schema of its own");
}

/// Drops the schemas of this database whose names start with `prefix` and that no session
/// claims: those of a run killed before it dropped them (a schema's claim ends with its
/// session). Each is claimed while it is dropped, so that two runs starting together do not
/// both drop it; with it the logical feed's publication for it, which is the database's.
pub fn drop_abandoned_schemas(admin: &mut PgConnection, prefix: &str) {
    #[derive(datastore::diesel::QueryableByName)]
    struct Abandoned {
        /// The name, quoted as an identifier.
        #[diesel(sql_type = datastore::diesel::sql_types::Text)]
        ident: String,
        /// The name, quoted as a string.
        #[diesel(sql_type = datastore::diesel::sql_types::Text)]
        literal: String,
    }
    let abandoned = datastore::diesel::sql_query(format!(
        "SELECT quote_ident(nspname) AS ident, quote_literal(nspname) AS literal \
         FROM pg_namespace \
         WHERE CASE WHEN starts_with(nspname, $1) THEN pg_try_advisory_lock({}) END",
        schema_claim("nspname::text")
    ))
    .bind::<datastore::diesel::sql_types::Text, _>(prefix)
    .load::<Abandoned>(admin)
    .expect("list the schemas nobody claims");
    for Abandoned { ident, literal } in abandoned {
        // Each on its own, so that one failing leaves none of the others undone.
        let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {ident} CASCADE"));
        let _ = admin.batch_execute(&drop_publication_sql(&literal));
        let _ = admin.batch_execute(&format!(
            "SELECT pg_advisory_unlock({})",
            schema_claim(&literal)
        ));
    }
}

/// The SQL that drops the logical feed's publication for the schema named by `literal` (a
/// quoted string): the database's, not the schema's, so that dropping the schema leaves it
/// behind.
pub fn drop_publication_sql(literal: &str) -> String {
    format!(
        "DO $$ BEGIN EXECUTE format('DROP PUBLICATION IF EXISTS %I', \
             'datastore_' || md5({literal})); END $$"
    )
}

/// A schema of its own on the PostgreSQL server, claimed while it lives and dropped with it.
pub struct PgSchema {
    admin: PgConnection,
    url: String,
    name: String,
}

impl PgSchema {
    /// A test's schema on the server at `url` (unclaimed test schemas dropped first).
    pub fn new(url: &str) -> Self {
        Self::with_prefix(url, TEST_SCHEMA_PREFIX)
    }

    /// A schema whose name starts with `prefix` on the server at `url`, the unclaimed schemas
    /// of the same prefix dropped first.
    pub fn with_prefix(url: &str, prefix: &str) -> Self {
        Self::named(url, prefix, "")
    }

    /// A test's schema whose name ends in `suffix` (any text: quotes, backslashes), after the
    /// prefix and a UUID.
    pub fn with_suffix(url: &str, suffix: &str) -> Self {
        Self::named(url, TEST_SCHEMA_PREFIX, suffix)
    }

    fn named(url: &str, prefix: &str, suffix: &str) -> Self {
        let mut admin = PgConnection::establish(url).unwrap_or_else(|e| {
            panic!("DATASTORE_POSTGRES_URL is set, but {url} is unreachable: {e}")
        });
        drop_abandoned_schemas(&mut admin, prefix);
        let name = format!("{prefix}{}{suffix}", uuid::Uuid::new_v4().simple());
        create_claimed_schema(&mut admin, &name);
        let separator = if url.contains('?') { '&' } else { '?' };
        // The identifier, each space and backslash escaped for libpq's options, percent-encoded.
        let option: String = format!("-csearch_path={}", ident(&name))
            .replace('\\', "\\\\")
            .replace(' ', "\\ ")
            .bytes()
            .map(|b| match b.is_ascii_alphanumeric() || b == b'_' {
                true => char::from(b).to_string(),
                false => format!("%{b:02X}"),
            })
            .collect();
        Self {
            admin,
            url: format!("{url}{separator}options={option}"),
            name,
        }
    }

    /// The server's URL, with the schema as the connections' search path.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let _ = self
            .admin
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", ident(&self.name)));
        // The logical feed's publication is the database's, not the schema's: dropped too
        // (whether the schema's drop went through or not), or every run would leave its own
        // behind on the server.
        let _ = self
            .admin
            .batch_execute(&drop_publication_sql(&literal(&self.name)));
    }
}
