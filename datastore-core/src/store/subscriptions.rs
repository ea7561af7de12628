//! The store's side of observe: subscriptions on its hub, and on PostgreSQL the feed that
//! fills it (see [`observe`](crate::observe) for what a subscriber is promised).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::{Store, transaction};
use crate::migrate::MigrationFailure;
use crate::model::Model;
use crate::observe::postgres as pg_observe;
use crate::observe::{self, Decoder, Subscription};
use crate::persist::Persist;
use crate::schema::Dialect;
use crate::{AnyConnection, Error, Result};

impl Store {
    /// Every committed change of `M`'s rows.
    ///
    /// `M` is `Clone` (as for `observe_where`, `observe_id`, and the live queries): when
    /// several subscriptions of one model read a commit, each of its rows is decoded once and
    /// the others receive clones. On SQLite, which names tables without regard to ASCII case,
    /// the changes are those of the table whose name differs from `M`'s at most in case (one
    /// created as `Notes` for a model's `notes`), to every model of that table.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use datastore::observe::{Observed, Op};
    ///
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// let notes = store.observe::<Note>()?;
    /// let note = store.save(Note { text: "hi".into(), ..Note::default() })?;
    /// store.delete(&note)?;
    /// let Some(Observed::Change(inserted)) = notes.recv() else { panic!("a change") };
    /// let Some(Observed::Change(deleted)) = notes.recv() else { panic!("a change") };
    /// assert_eq!((inserted.op, deleted.op), (Op::Insert, Op::Delete));
    /// assert_eq!(deleted.element, note); // the row as it was
    /// # Ok(())
    /// # }
    /// ```
    pub fn observe<M: Model + Clone>(&self) -> Result<Subscription<M>> {
        self.subscribe(None)
    }

    /// The committed changes of `M`'s rows that match `filter` (before or after the change).
    /// Name the model and the closure's parameter type is inferred:
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore::observe::Observed;
    /// # #[derive(Model, Debug, Clone, PartialEq, Default)]
    /// # pub struct Note { #[primary_key] pub id: Id, pub text: String, pub pinned: bool }
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// let pinned = store.observe_where::<Note>(|note| note.pinned)?;
    /// store.save(Note { text: "not this one".into(), ..Note::default() })?;
    /// let kept = store.save(Note { text: "this one".into(), pinned: true, ..Note::default() })?;
    /// let Some(Observed::Change(change)) = pinned.recv() else { panic!("a change") };
    /// assert_eq!(change.element, kept);
    /// # Ok(())
    /// # }
    /// ```
    pub fn observe_where<M: Model + Clone>(
        &self,
        filter: impl Fn(&M) -> bool + Send + Sync + 'static,
    ) -> Result<Subscription<M>> {
        self.subscribe(Some(Box::new(filter)))
    }

    /// A query's result now, then again after every committed change that alters it:
    /// `store.observe_query::<Post>(|q| q.filter(posts::rating.gt(4)))`. A filter on related
    /// rows in it (`Post::having_comments(..)`), built in the closure or before it, makes it
    /// watch the tables the filter reads too. The results are read on a pooled connection;
    /// inside a [`transaction`](Store::transaction) of this store on the same thread, on
    /// observe's own connection, outside the pool: they are committed data either way, and
    /// reading them there never waits for a pooled connection. On PostgreSQL, a store whose role
    /// may not read one of the tables (`SELECT`) is refused at once, with the server's
    /// permission denied, before anything is set up to observe them.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// let mut his = store.observe_query::<Note>(|q| q.filter(notes::text.eq("hi")))?;
    /// assert_eq!(his.recv()?, vec![]); // the result now
    /// store.save(Note { text: "bye".into(), ..Note::default() })?; // leaves it as it was
    /// let note = store.save(Note { text: "hi".into(), ..Note::default() })?;
    /// assert_eq!(his.recv()?, vec![note]); // the result after the change
    /// # Ok(())
    /// # }
    /// ```
    pub fn observe_query<M>(
        &self,
        build: impl Fn(M::Query) -> M::Query + Send + Sync + 'static,
    ) -> Result<observe::QuerySubscription<M>>
    where
        M: Persist<AnyConnection> + PartialEq + Clone,
    {
        // Also the tables its filters on related rows read (learnt by walking the query once,
        // wherever they were built): a new matching child changes the result as much as a new
        // row of `M`.
        let tables = crate::observe::live::tables_of_query::<M>(&build, self.dialect())?;
        if self.dialect == Dialect::Postgres {
            // Refused as its first read would be, but before anything is set up for it.
            self.observe_conn
                .with(|conn| readable_columns(conn, &tables))?;
        }
        let queue = self.queue_of(Some(&tables))?;
        Ok(observe::QuerySubscription::new(
            self.clone(),
            queue,
            Box::new(build),
        ))
    }

    /// A live query over relations: the rows of `M` a query selects, each with the relations
    /// asked for, now and again after every committed transaction that changes them. See
    /// [`observe::live`].
    ///
    /// ```
    /// use datastore::prelude::*;
    ///
    /// #[derive(Model, Debug, Clone, PartialEq, Default)]
    /// pub struct Post {
    ///     #[primary_key]
    ///     pub id: Id,
    ///     #[has_many(Comment)]
    ///     pub comments: HasMany<Comment>,
    /// }
    ///
    /// #[derive(Model, Debug, Clone, PartialEq, Default)]
    /// pub struct Comment {
    ///     #[primary_key]
    ///     pub id: Id,
    ///     #[belongs_to(Post)]
    ///     pub post_id: Id,
    /// }
    ///
    /// # fn main() -> datastore::Result<()> {
    /// let store = Store::builder(":memory:")
    ///     .schema(Schema::new().model::<Post>().model::<Comment>())
    ///     .open()?;
    /// let mut posts = store.live::<Post>().load(Post::COMMENTS).subscribe()?;
    /// assert!(posts.recv()?.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn live<M>(&self) -> observe::LiveQuery<M>
    where
        M: Persist<AnyConnection> + PartialEq + Clone,
    {
        observe::LiveQuery::new(self.clone())
    }

    /// Every committed change of every table, as raw rows, each naming its table as the
    /// database's schema holds the name, whatever else subscribes (on SQLite, which names
    /// tables without regard to ASCII case, that may differ in case from a model's name for
    /// the table: see [`RowChange::table`](observe::RowChange::table)).
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use datastore::observe::{Observed, Op};
    ///
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// let everything = store.observe_all()?;
    /// store.save(Note::default())?;
    /// let Some(Observed::Change(row)) = everything.recv() else { panic!("a change") };
    /// assert_eq!((row.table.as_str(), row.op), ("notes", Op::Insert));
    /// # Ok(())
    /// # }
    /// ```
    pub fn observe_all(&self) -> Result<observe::AllSubscription> {
        Ok(observe::AllSubscription::new(self.queue_of(None)?))
    }

    /// How many subscriptions are live (each dropped one unsubscribes).
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// let notes = store.observe::<Note>()?;
    /// let everything = store.observe_all()?;
    /// assert_eq!(store.subscriptions(), 2);
    /// drop((notes, everything));
    /// assert_eq!(store.subscriptions(), 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn subscriptions(&self) -> usize {
        self.hub.subscriptions()
    }

    /// The committed changes of one row.
    ///
    /// ```
    /// # use datastore::prelude::*;
    /// # use datastore_doc_models::{Note, notes};
    /// use datastore::observe::{Observed, Op};
    ///
    /// # fn main() -> datastore::Result<()> {
    /// # let store = Store::builder(":memory:").schema(Schema::new().model::<Note>()).open()?;
    /// let mut note = store.save(Note { text: "draft".into(), ..Note::default() })?;
    /// let this_one = store.observe_id::<Note>(&note.id)?;
    /// store.save(Note { text: "another note".into(), ..Note::default() })?; // not delivered
    /// note.text = "final".into();
    /// store.save(note)?;
    /// let Some(Observed::Change(change)) = this_one.recv() else { panic!("a change") };
    /// assert_eq!((change.op, change.element.text.as_str()), (Op::Update, "final"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn observe_id<M: Model + Clone>(&self, key: &M::Key) -> Result<Subscription<M>> {
        let key = key.clone();
        self.observe_where(move |row: &M| row.key() == key)
    }

    /// A subscriber's queue for the changes of `tables` (every table for `None`), committed
    /// from now on, in one commit order. On SQLite the build must have the pre-update hook; on
    /// PostgreSQL the tables get their triggers (or join the publication) and the store its
    /// listener.
    pub(crate) fn queue_of(&self, tables: Option<&[String]>) -> Result<Arc<observe::hub::Queue>> {
        let timeout = pg_observe::MARKER_TIMEOUT;
        self.queue_within(tables, None)?.ok_or_else(|| Error::Busy {
            message: format!(
                "observe's listener did not reach the new subscription's start within {} s",
                timeout.as_secs()
            ),
        })
    }

    /// [`queue_of`](Self::queue_of), `None` if PostgreSQL's listener did not reach the
    /// subscription's start by `deadline` (or, without one, within
    /// [`MARKER_TIMEOUT`](pg_observe::MARKER_TIMEOUT) of the marker's sending).
    fn queue_within(
        &self,
        tables: Option<&[String]>,
        deadline: Option<std::time::Instant>,
    ) -> Result<Option<Arc<observe::hub::Queue>>> {
        if self.dialect == Dialect::Sqlite {
            // No connection taken: subscribing inside a transaction must not wait for one.
            unsupported_without_preupdate()?;
            return Ok(Some(self.hub.subscribe(tables, self.observe_buffer)));
        }
        // A subscription made as a lost feed's listener winds down (its subscriptions already
        // told `FeedLost`, and subscribing again at once) finds that listener still running,
        // and it ends before reaching the marker: then once more, with a new listener.
        let mut deadline = deadline;
        let mut attempts = 0;
        loop {
            attempts += 1;
            // Observe's own connection: the caller's transaction may hold the pool's.
            let pending = self.observe_conn.with(|conn| match conn {
                AnyConnection::Sqlite(_) => unreachable!("the store's dialect is PostgreSQL"),
                AnyConnection::Postgres(conn) => {
                    let triggered = match tables {
                        Some(tables) => tables.to_vec(),
                        None => {
                            let schema = pg_observe::current_schema(conn)?;
                            pg_observe::observable_tables(conn, &schema)?
                        }
                    };
                    self.pg_observe.subscribe(
                        conn,
                        &self.url,
                        &self.hub,
                        &triggered,
                        tables,
                        self.observe_buffer,
                        transaction::open_backend(self.id()),
                    )
                }
            })?;
            // Not holding the connection while the listener reaches the marker.
            // One deadline for both attempts, from the first marker's sending if none was given.
            let until = *deadline
                .get_or_insert_with(|| std::time::Instant::now() + pg_observe::MARKER_TIMEOUT);
            let wait = until.saturating_duration_since(std::time::Instant::now());
            match pending.wait(&self.url, wait) {
                Err(Error::Connection {
                    source: crate::ConnectionFailure::Lost(_),
                    ..
                }) if attempts == 1 => continue,
                answer => return answer,
            }
        }
    }

    /// Waits until every commit visible to a read that began before this call was handed
    /// to the store's subscribers' queues (false if it took longer than `timeout`). On
    /// SQLite by the commits' sequence numbers; on PostgreSQL by a marker sent now, which the
    /// listener reaches once it has read every notification committed before it.
    pub(crate) fn fence(&self, tables: &[String], timeout: Duration) -> Result<bool> {
        if self.dialect == Dialect::Sqlite {
            return Ok(self.hub.wait_delivered(self.hub.fence(), timeout));
        }
        // A queue opens when the listener reaches its marker, after every earlier commit.
        // Counted from here: starting the listener and setting tables up take their share.
        let deadline = std::time::Instant::now() + timeout;
        Ok(self.queue_within(Some(tables), Some(deadline))?.is_some())
    }

    /// The queue of the changes of `tables` and a decoder of each one's rows, by name: what a
    /// subscription that hands out models (a model's, a live query's) reads. On PostgreSQL the
    /// decoders first, every table's columns and the store's right to read it (`SELECT`) in one
    /// round trip: a subscription refused (a table its role may not read, or one without a
    /// column of its model) sets nothing up, and starts no listener. (The rows of either feed
    /// name their columns: read before the set-up or after, the columns only decide whether
    /// the subscription is refused.) A table not there is left to the set-up, which fails on
    /// it; one made meanwhile is read after. On SQLite the queue first: a subscription begins a
    /// schema epoch (`Hub::subscribe`), whose columns the decoders then read, once.
    pub(crate) fn decoded_queue(
        &self,
        tables: &[&crate::schema::Table],
    ) -> Result<(Arc<observe::hub::Queue>, HashMap<String, Decoder>)> {
        let mut names: Vec<String> = Vec::new();
        for table in tables {
            if !names.iter().any(|name| name == table.name.as_ref()) {
                names.push(table.name.to_string());
            }
        }
        let mut decoders = HashMap::new();
        if self.dialect == Dialect::Postgres {
            let found = self
                .observe_conn
                .with(|conn| readable_columns(conn, &names))?;
            for table in tables {
                if let Some(columns) = found.get(table.name.as_ref())
                    && !decoders.contains_key(table.name.as_ref())
                {
                    let decoder = postgres_decoder(table, columns)?;
                    decoders.insert(table.name.to_string(), decoder);
                }
            }
        }
        let queue = self.queue_of(Some(&names))?;
        for table in tables {
            if !decoders.contains_key(table.name.as_ref()) {
                decoders.insert(table.name.to_string(), self.decoder_of(table)?);
            }
        }
        Ok((queue, decoders))
    }

    /// The queues' decoder of a table's rows, its columns read now.
    fn decoder_of(&self, table: &crate::schema::Table) -> Result<Decoder> {
        match self.dialect {
            Dialect::Sqlite => {
                unsupported_without_preupdate()?;
                let catalog = observe::sqlite::catalog::Catalog::new(&self.hub, &self.observe_conn);
                let layout = catalog.resolve(&table.name)?;
                Decoder::for_sqlite(&table.name, &model_columns(table), catalog, layout)
                    .map_err(missing_column)
            }
            Dialect::Postgres => {
                let name = [table.name.to_string()];
                let mut found = self
                    .observe_conn
                    .with(|conn| readable_columns(conn, &name))?;
                postgres_decoder(table, &found.remove(&name[0]).unwrap_or_default())
            }
        }
    }

    /// Runs `f` on observe's own connection (outside the pool, never in a caller's
    /// transaction).
    pub(crate) fn with_observe_conn<T>(
        &self,
        f: impl FnOnce(&mut AnyConnection) -> Result<T>,
    ) -> Result<T> {
        self.observe_conn.with(f)
    }

    fn subscribe<M: Model + Clone>(
        &self,
        filter: Option<observe::Filter<M>>,
    ) -> Result<Subscription<M>> {
        let (queue, mut decoders) = self.decoded_queue(&[M::table()])?;
        let decoder = decoders
            .remove(M::table().name.as_ref())
            .expect("a decoder of each table");
        Ok(Subscription::new(queue, decoder, filter))
    }
}

/// The names of a model's columns.
fn model_columns(table: &crate::schema::Table) -> Vec<&str> {
    table.columns.iter().map(|c| c.name.as_ref()).collect()
}

/// PostgreSQL: the decoder of a model's rows from `columns`, the table's now.
fn postgres_decoder(table: &crate::schema::Table, columns: &[String]) -> Result<Decoder> {
    Decoder::for_postgres(&table.name, &model_columns(table), columns).map_err(missing_column)
}

/// The columns of those of `tables` that are there, by table (see
/// [`readable_columns`](pg_observe::readable_columns)).
fn readable_columns(
    conn: &mut AnyConnection,
    tables: &[String],
) -> Result<HashMap<String, Vec<String>>> {
    match conn {
        AnyConnection::Sqlite(_) => unreachable!("SQLite's columns are read by observe's catalog"),
        AnyConnection::Postgres(conn) => pg_observe::readable_columns(conn, tables),
    }
}

/// A table without a column of its model: its migrations did not run.
fn missing_column(missing: observe::MissingColumn) -> Error {
    Error::migration(
        None,
        MigrationFailure::MissingColumn {
            table: missing.table,
            column: missing.column,
        },
    )
}

fn unsupported_without_preupdate() -> Result<()> {
    if observe::AVAILABLE {
        return Ok(());
    }
    Err(Error::Unsupported(
        "observe needs SQLite's pre-update hook: build with the environment variable \
         LIBSQLITE3_FLAGS=-DSQLITE_ENABLE_PREUPDATE_HOOK (for example in .cargo/config.toml [env])"
            .into(),
    ))
}
