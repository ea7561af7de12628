//! Hostile input: quotes, comment markers, statement separators, very long values, every
//! Unicode plane, and identifiers that are SQL keywords all round-trip; nothing is ever
//! concatenated into SQL unquoted.

mod common;

use datastore::prelude::*;

/// A model named like a keyword, with fields named like keywords.
#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Order {
    #[primary_key]
    pub id: Id,
    pub group: String,
    pub select: Option<String>,
    pub from: i64,
    #[has_many(Where)]
    pub wheres: HasMany<Where>,
}

#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Where {
    #[primary_key]
    pub id: Id,
    #[belongs_to(Order)]
    pub order_id: Id,
    pub values: Vec<u8>,
}

fn schema() -> Schema {
    Schema::new().model::<Order>().model::<Where>()
}

/// Runs `test` on SQLite in memory, and on the PostgreSQL server when one is configured (in a
/// schema of its own).
fn on_each_backend(test: impl Fn(Store)) {
    test(Store::builder(":memory:").schema(schema()).open().unwrap());
    if let Some(url) = common::postgres_url() {
        let pg = common::PgSchema::new(&url);
        test(Store::builder(pg.url()).schema(schema()).open().unwrap());
    }
}

#[test]
fn keyword_tables_and_columns_work_everywhere() {
    on_each_backend(keywords);
}

fn keywords(store: Store) {
    let mut conn = store.conn().unwrap();
    let order = conn
        .save(Order {
            group: "g".into(),
            select: Some("s".into()),
            from: 3,
            ..Order::default()
        })
        .unwrap();
    conn.save(
        Where {
            values: vec![1, 2],
            ..Where::default()
        }
        .with_order(&order),
    )
    .unwrap();
    let found: Vec<Order> = conn
        .query::<Order>(|q| q.filter(orders::group.eq("g")).order(orders::from.desc()))
        .unwrap();
    assert_eq!(found, vec![order.clone()]);
    let mut orders = found;
    Order::load_wheres(&mut conn, &mut orders).unwrap();
    assert_eq!(orders[0].wheres.get().unwrap()[0].values, [1, 2]);
    let having: Vec<Order> = conn
        .query::<Order>(|q| q.filter(Order::having_wheres(wheres::values.eq(vec![1u8, 2]))))
        .unwrap();
    assert_eq!(having.len(), 1);
    conn.delete(&order).unwrap();
    assert_eq!(
        conn.count::<Where>().unwrap(),
        0,
        "the keyword-named child cascaded"
    );

    let ddl = schema().create_sql(store.dialect());
    assert!(ddl.contains(r#""group" TEXT NOT NULL"#), "{ddl}");
    assert!(ddl.contains(r#"CREATE TABLE "wheres""#), "{ddl}");
}

#[test]
fn hostile_and_huge_values_round_trip() {
    on_each_backend(hostile_values);
}

fn hostile_values(store: Store) {
    let every_plane: String = (0..=16u32)
        .filter_map(|plane| char::from_u32(plane * 0x10000 + 0x41))
        .collect();
    let megabyte = "x'\"; --".repeat((1 << 20) / 7 + 1);
    let blob: Vec<u8> = (0..(1usize << 20)).map(|i| (i % 251) as u8).collect();
    for text in [
        "'; DROP TABLE orders; --".to_owned(),
        "\" OR \"\"=\"".to_owned(),
        "/* */ ; SELECT 1; --".to_owned(),
        "tab\tnewline\nreturn\r".to_owned(),
        every_plane.clone(),
        megabyte.clone(),
    ] {
        let saved = store
            .save(Order {
                group: text.clone(),
                select: Some(text.clone()),
                ..Order::default()
            })
            .unwrap();
        let read = store.get::<Order>(&saved.id).unwrap();
        assert_eq!(read.group, text);
        assert_eq!(read.select.as_deref(), Some(text.as_str()));
        let matching = store
            .query::<Order>(|q| q.filter(orders::group.eq(text.clone())))
            .unwrap();
        assert_eq!(matching.len(), 1);
    }
    let order = store.save(Order::default()).unwrap();
    let big = store
        .save(
            Where {
                values: blob.clone(),
                ..Where::default()
            }
            .with_order(&order),
        )
        .unwrap();
    assert_eq!(store.get::<Where>(&big.id).unwrap().values, blob);
    assert_eq!(every_plane.chars().count(), 17);
    assert!(megabyte.len() >= 1 << 20);
}

/// A parent whose columns and relation fields are raw identifiers (`r#type`, `r#move`), and
/// whose children point at it through keys named after keywords: `match_id` makes `r#match()`,
/// `r#type` makes `r#type()`, and `foreign_key = r#type` names the field `type`.
#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Match {
    #[primary_key]
    pub id: Id,
    pub r#type: String,
    #[has_many(Move, foreign_key = match_id)]
    pub r#move: HasMany<Move>,
    #[has_many(Move, foreign_key = r#type)]
    pub r#ref: HasMany<Move>,
}

#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Move {
    #[primary_key]
    pub id: Id,
    #[belongs_to(Match)]
    pub match_id: Id,
    #[belongs_to(Match, on_delete = set_null)]
    pub r#type: Option<Id>,
}

#[test]
fn keys_and_relations_named_after_keywords_work_everywhere() {
    let schema = || Schema::new().model::<Match>().model::<Move>();
    let test = |store: Store| {
        let mut conn = store.conn().unwrap();
        let game = conn
            .save(Match {
                r#type: "final".into(),
                ..Match::default()
            })
            .unwrap();
        let other = conn.save(Match::default()).unwrap();
        let step = conn
            .save(Move::default().with_match(&game).with_type(&other))
            .unwrap();

        assert_eq!(step.r#match(&mut conn).unwrap(), game);
        assert_eq!(step.r#type(&mut conn).unwrap(), Some(other.clone()));
        assert_eq!(game.r#move(&mut conn).unwrap(), vec![step.clone()]);
        assert_eq!(game.r#ref(&mut conn).unwrap(), []);
        assert_eq!(other.r#ref(&mut conn).unwrap(), vec![step.clone()]);

        let mut matches = conn.all::<Match>().unwrap();
        Match::load_move(&mut conn, &mut matches).unwrap();
        Match::load_ref(&mut conn, &mut matches).unwrap();
        let loaded = matches.iter().find(|m| m.id == other.id).unwrap();
        assert_eq!(loaded.r#ref.get().unwrap(), vec![step.clone()]);

        let of_final: Vec<Move> = conn
            .query::<Move>(|q| q.filter(Move::where_match(matches::r#type.eq("final"))))
            .unwrap();
        assert_eq!(of_final, vec![step.clone()]);
        let with_moves: Vec<Match> = conn
            .query::<Match>(|q| q.filter(Match::having_move(moves::id.eq(step.id))))
            .unwrap();
        assert_eq!(with_moves, vec![game.clone()]);

        let relations = Match::declaration().relations();
        assert_eq!(
            relations
                .iter()
                .map(|r| (r.field, r.foreign_key))
                .collect::<Vec<_>>(),
            [("move", Some("match_id")), ("ref", Some("type"))]
        );
        assert_eq!((Move::MATCH.name(), Match::MOVE.name()), ("match", "move"));

        conn.delete(&other).unwrap();
        assert_eq!(store.get::<Move>(&step.id).unwrap().r#type, None);
    };
    test(Store::builder(":memory:").schema(schema()).open().unwrap());
    if let Some(url) = common::postgres_url() {
        let pg = common::PgSchema::new(&url);
        test(Store::builder(pg.url()).schema(schema()).open().unwrap());
    }
}

/// Fields named like the generated code's own variables: `values` (not the last column) like
/// the iterator the row reader reads, `saved`, `conn` and `graph` like `save_graph`'s.
#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Local {
    #[primary_key]
    pub id: Id,
    pub values: String,
    pub rows: i64,
    #[has_many(Note)]
    pub saved: HasMany<Note>,
    #[has_one(Pin)]
    pub conn: HasOne<Pin>,
    #[many_to_many(Order, through = LocalOrder)]
    pub graph: ManyToMany<Order>,
}

#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Note {
    #[primary_key]
    pub id: Id,
    #[belongs_to(Local)]
    pub local_id: Id,
    pub text: String,
}

#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Pin {
    #[primary_key]
    pub id: Id,
    #[belongs_to(Local)]
    pub local_id: Id,
}

#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct LocalOrder {
    #[primary_key]
    pub id: Id,
    #[belongs_to(Local)]
    pub local_id: Id,
    #[belongs_to(Order)]
    pub order_id: Id,
}

#[test]
fn fields_named_like_the_generated_codes_variables_work_everywhere() {
    let schema = || {
        Schema::new()
            .model::<Order>()
            .model::<Where>()
            .model::<Local>()
            .model::<Note>()
            .model::<Pin>()
            .model::<LocalOrder>()
    };
    let test = |store: Store| {
        let order = store.save(Order::default()).unwrap();
        let saved = store
            .save_graph(Local {
                values: "v".into(),
                rows: 7,
                saved: HasMany::loaded(vec![Note {
                    text: "n".into(),
                    ..Note::default()
                }]),
                conn: HasOne::loaded(Some(Pin::default())),
                graph: ManyToMany::loaded(vec![order.clone()]),
                ..Local::default()
            })
            .unwrap();
        assert_eq!(saved.saved.get().unwrap()[0].local_id, saved.id);
        assert_eq!(saved.conn.get().unwrap().unwrap().local_id, saved.id);

        let mut conn = store.conn().unwrap();
        let mut read = vec![store.get::<Local>(&saved.id).unwrap()];
        assert_eq!((read[0].values.as_str(), read[0].rows), ("v", 7));
        Local::load_saved(&mut conn, &mut read).unwrap();
        Local::load_conn(&mut conn, &mut read).unwrap();
        Local::load_graph(&mut conn, &mut read).unwrap();
        assert_eq!(read[0].saved.get().unwrap()[0].text, "n");
        assert_eq!(
            read[0].conn.get().unwrap().map(|pin| pin.id),
            saved.conn.get().unwrap().map(|pin| pin.id)
        );
        assert_eq!(read[0].graph.get().unwrap(), [order]);
    };
    test(Store::builder(":memory:").schema(schema()).open().unwrap());
    if let Some(url) = common::postgres_url() {
        let pg = common::PgSchema::new(&url);
        test(Store::builder(pg.url()).schema(schema()).open().unwrap());
    }
}

/// Variants stored under names holding format braces.
#[derive(DbEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Brace {
    #[default]
    #[db_enum(rename = "{x}")]
    Named,
    #[db_enum(rename = "{}")]
    Empty,
    #[db_enum(rename = "}{{")]
    Unbalanced,
}

#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Braced {
    #[primary_key]
    pub id: Id,
    pub shape: Brace,
}

#[test]
fn enum_names_holding_braces_round_trip() {
    let schema = || Schema::new().model::<Braced>();
    let test = |store: Store| {
        for shape in [Brace::Named, Brace::Empty, Brace::Unbalanced] {
            let saved = store.save(Braced {
                shape,
                ..Braced::default()
            });
            let saved = saved.unwrap();
            assert_eq!(store.get::<Braced>(&saved.id).unwrap().shape, shape);
            let matching = store
                .query::<Braced>(|q| q.filter(braceds::shape.eq(shape)))
                .unwrap();
            assert_eq!(matching, vec![saved]);
        }
        assert_eq!(<Brace as DbEnum>::as_str(&Brace::Named), "{x}");
    };
    test(Store::builder(":memory:").schema(schema()).open().unwrap());
    if let Some(url) = common::postgres_url() {
        let pg = common::PgSchema::new(&url);
        test(Store::builder(pg.url()).schema(schema()).open().unwrap());
    }

    // A stored name that is no variant's (written with the CHECK off) is an error naming it
    // and the variants' names as they are.
    let store = Store::builder(":memory:").schema(schema()).open().unwrap();
    let mut conn = store.conn().unwrap();
    diesel::connection::SimpleConnection::batch_execute(
        &mut *conn,
        "PRAGMA ignore_check_constraints = ON; \
         INSERT INTO braceds (id, shape) VALUES ('0190a5b2-0000-7000-8000-000000000000', '{y}')",
    )
    .unwrap();
    match conn.all::<Braced>() {
        Err(datastore::Error::Conversion { message, .. }) => assert!(
            message.contains(r#""{y}" is not a Brace: expected one of {x}, {}, }{{"#),
            "{message}"
        ),
        other => panic!("expected a conversion error, got {other:?}"),
    }
}

/// Declares a parent model and its children through `macro_rules!`, as a family of similar
/// models often is: each `$t:ty` reaches the derive wrapped in an invisible group, alone
/// (`$key`), inside `Option<..>` and as a relation (`$children`).
macro_rules! shelf_family {
    (
        key: $key:ty, children: $children:ty,
        $parent:ident { $($field:ident: $t:ty,)* }
        $child:ident { $($child_field:ident: $child_t:ty,)* }
    ) => {
        #[derive(Model, Debug, Clone, PartialEq, Default)]
        pub struct $parent {
            #[primary_key]
            pub id: $key,
            $(pub $field: $t,)*
            pub previous_id: Option<$key>,
            #[has_many($child)]
            pub children: $children,
        }

        #[derive(Model, Debug, Clone, PartialEq, Default)]
        pub struct $child {
            #[primary_key]
            pub id: $key,
            #[belongs_to($parent)]
            pub shelf_id: $key,
            $(pub $child_field: $child_t,)*
        }
    };
}

shelf_family! {
    key: Id, children: HasMany<Book>,
    Shelf {
        label: String,
        count: i64,
        note: Option<String>,
        tags: Json<Vec<String>>,
        shape: Brace,
        created_at: Timestamp,
    }
    Book { title: String, cover: Vec<u8>, }
}

#[test]
fn models_declared_by_a_macro_rules_macro_save_and_load() {
    let store = Store::builder(":memory:")
        .schema(Schema::new().model::<Shelf>().model::<Book>())
        .open()
        .unwrap();
    let previous = store.save(Shelf::default()).unwrap();
    let saved = store
        .save_graph(Shelf {
            label: "fiction".into(),
            count: 2,
            note: Some("top".into()),
            tags: Json(vec!["a".into(), "b".into()]),
            shape: Brace::Empty,
            previous_id: Some(previous.id),
            children: HasMany::loaded(vec![Book {
                title: "Dune".into(),
                cover: vec![0, 1, 2],
                ..Book::default()
            }]),
            ..Shelf::default()
        })
        .unwrap();
    // `created_at` was recognised as the creation stamp: the save set it.
    assert_ne!(saved.created_at, Timestamp::default());

    let mut conn = store.conn().unwrap();
    let mut found = store
        .query::<Shelf>(|q| q.filter(shelfs::previous_id.eq(Some(previous.id))))
        .unwrap();
    assert_eq!(found.len(), 1);
    Shelf::load_children(&mut conn, &mut found).unwrap();
    let shelf = &found[0];
    assert_eq!(
        (shelf.label.as_str(), shelf.count, shelf.note.as_deref()),
        ("fiction", 2, Some("top"))
    );
    assert_eq!(
        (&shelf.tags.0[..], shelf.shape),
        (&["a".to_string(), "b".to_string()][..], Brace::Empty)
    );
    assert_eq!(shelf.created_at, saved.created_at);
    let books = shelf.children.get().unwrap();
    assert_eq!(
        (books[0].title.as_str(), &books[0].cover[..]),
        ("Dune", &[0, 1, 2][..])
    );
    assert_eq!(books[0].shelf_id, saved.id);
}
