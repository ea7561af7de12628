//! Models keyed by integers the database assigns, by natural keys and by composite keys, on
//! SQLite and PostgreSQL.

mod common;

use common::PgSchema;
use datastore::diesel::connection::SimpleConnection;
use datastore::prelude::*;
use datastore::{Error, KeyValue, Persist};

/// A shop: customers and orders keyed by integers the database assigns, products by their SKU,
/// order lines by their order and product, countries by a code the application gives.
mod shop {
    use datastore::prelude::*;

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Customer {
        #[primary_key]
        pub id: i64,
        pub name: String,
        #[belongs_to(Country)]
        pub country_code: i32,
        #[has_many(Order)]
        pub orders: HasMany<Order>,
    }

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Order {
        #[primary_key]
        pub id: i64,
        #[belongs_to(Customer)]
        pub customer_id: i64,
        pub total: i32,
        #[has_many(Payment)]
        pub payments: HasMany<Payment>,
        #[many_to_many(Product, through = OrderLine)]
        pub products: ManyToMany<Product>,
    }

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Payment {
        #[primary_key]
        pub id: i32,
        #[belongs_to(Order)]
        pub order_id: i64,
        pub amount: i32,
    }

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Product {
        #[primary_key]
        pub sku: String,
        pub name: String,
        #[many_to_many(Order, through = OrderLine)]
        pub orders: ManyToMany<Order>,
    }

    /// The join model, keyed by its two foreign keys.
    #[derive(Model, Debug, Clone, PartialEq, Default)]
    #[model(primary_key(order_id, sku))]
    pub struct OrderLine {
        #[belongs_to(Order)]
        pub order_id: i64,
        #[belongs_to(Product)]
        pub sku: String,
        pub quantity: i32,
    }

    /// Shelves hold products; a placement is keyed by a label the application gives, which
    /// a link leaves empty.
    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Shelf {
        #[primary_key]
        pub id: i64,
        #[many_to_many(Product, through = Placement)]
        pub products: ManyToMany<Product>,
    }

    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Placement {
        #[primary_key]
        pub label: String,
        #[belongs_to(Shelf)]
        pub shelf_id: i64,
        #[belongs_to(Product)]
        pub sku: String,
    }

    /// Nothing but the number the database gives it.
    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Ticket {
        #[primary_key]
        pub id: i64,
    }

    /// Keyed by a small number the database gives.
    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Seat {
        #[primary_key]
        pub id: i16,
        pub label: String,
    }

    /// Keyed by a small number the application gives.
    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Floor {
        #[primary_key(natural)]
        pub level: i16,
        pub name: String,
    }

    /// Keyed by a number the application gives (ISO 3166 numeric codes).
    #[derive(Model, Debug, Clone, PartialEq, Default)]
    pub struct Country {
        #[primary_key(natural)]
        pub code: i32,
        pub name: String,
    }

    pub fn schema() -> Schema {
        Schema::new()
            .model::<Country>()
            .model::<Customer>()
            .model::<Order>()
            .model::<Payment>()
            .model::<Product>()
            .model::<OrderLine>()
            .model::<Shelf>()
            .model::<Placement>()
            .model::<Ticket>()
            .model::<Seat>()
            .model::<Floor>()
    }
}

use shop::{
    customers, orders, Country, Customer, Floor, Order, OrderLine, Payment, Placement, Product,
    Seat, Shelf, Ticket,
};

/// A store with the shop's tables: in memory, or in a schema of its own on the server.
fn stores() -> Vec<(Store, Option<PgSchema>)> {
    let sqlite = Store::builder(":memory:")
        .schema(shop::schema())
        .open()
        .unwrap();
    let mut stores = vec![(sqlite, None)];
    if let Some(url) = common::postgres_url() {
        let schema = PgSchema::new(&url);
        let store = Store::builder(schema.url())
            .schema(shop::schema())
            .open()
            .unwrap();
        stores.push((store, Some(schema)));
    }
    stores
}

fn france(store: &Store) -> Country {
    store
        .save(Country {
            code: 250,
            name: "France".into(),
        })
        .unwrap()
}

fn customer(store: &Store, name: &str) -> Customer {
    let country = france(store);
    store
        .save(Customer {
            name: name.into(),
            country_code: country.code,
            ..Customer::default()
        })
        .unwrap()
}

#[test]
fn a_new_row_gets_the_key_the_database_assigns_and_saving_it_again_updates_it() {
    for (store, _schema) in stores() {
        let ada = customer(&store, "Ada");
        assert_ne!(ada.id, 0, "the saved row carries its key");
        let bob = customer(&store, "Bob");
        assert!(bob.id > ada.id);

        let renamed = store
            .save(Customer {
                name: "Ada L.".into(),
                ..ada.clone()
            })
            .unwrap();
        assert_eq!(renamed.id, ada.id);
        assert_eq!(
            store.count::<Customer>().unwrap(),
            2,
            "an update, not a new row"
        );
        assert_eq!(store.get::<Customer>(&ada.id).unwrap().name, "Ada L.");
        assert_eq!(store.find::<Customer>(&-1).unwrap(), None);
    }
}

#[test]
fn a_row_saved_with_its_key_keeps_it_and_later_rows_get_fresh_keys() {
    for (store, _schema) in stores() {
        let country = france(&store);
        let imported = store
            .save(Customer {
                id: 1000,
                name: "imported".into(),
                country_code: country.code,
                ..Customer::default()
            })
            .unwrap();
        assert_eq!(imported.id, 1000);
        let next = customer(&store, "after the import");
        assert!(next.id > 1000, "{} follows the imported key", next.id);

        let bulk = store
            .insert_all(vec![
                Customer {
                    id: 5000,
                    name: "bulk import".into(),
                    country_code: country.code,
                    ..Customer::default()
                },
                Customer {
                    name: "bulk new".into(),
                    country_code: country.code,
                    ..Customer::default()
                },
            ])
            .unwrap();
        assert_eq!(bulk[0].id, 5000);
        assert!(bulk[1].id > 5000, "{}", bulk[1].id);
        let later = customer(&store, "later");
        assert!(later.id > bulk[1].id);
    }
}

/// A key the database assigns past what the model's integer holds (`i32` here: SQLite assigns
/// one past the largest rowid, PostgreSQL's `integer` sequence ends there) is refused as the
/// row is written, on both backends: nothing is written, rather than a row whose key reads back
/// wrong (SQLite's `RETURNING` value cut to 32 bits).
#[test]
fn a_key_the_database_assigns_past_the_fields_range_is_refused_with_nothing_written() {
    for (store, _schema) in stores() {
        let ada = customer(&store, "Ada");
        let order = store
            .save(Order {
                customer_id: ada.id,
                ..Order::default()
            })
            .unwrap();
        let last = store
            .save(Payment {
                id: i32::MAX,
                order_id: order.id,
                amount: 1,
            })
            .unwrap();
        assert_eq!(last.id, i32::MAX);
        let next = |amount| Payment {
            id: 0,
            order_id: order.id,
            amount,
        };
        assert!(store.save(next(2)).is_err(), "{:?}", store.dialect());
        assert!(store.insert_all(vec![next(3), next(4)]).is_err());
        assert_eq!(store.count::<Payment>().unwrap(), 1, "nothing written");
    }
}

/// An `i16` key is a key the database assigns, as an `i32` or `i64` one is (unless declared
/// `natural`): each new row gets its own, up to the field's largest value.
#[test]
fn a_small_integer_key_is_assigned_by_the_database_unless_natural() {
    for (store, _schema) in stores() {
        let seat = |label: &str| Seat {
            label: label.into(),
            ..Seat::default()
        };
        let a = store.save(seat("a")).unwrap();
        let b = store.save(seat("b")).unwrap();
        assert!(a.id != 0 && b.id != 0 && a.id != b.id, "{a:?} {b:?}");
        let more = store.insert_all(vec![seat("c"), seat("d")]).unwrap();
        assert_eq!(store.count::<Seat>().unwrap(), 4, "{:?}", store.dialect());
        assert!(more.iter().all(|s| s.id != 0));
        store
            .save(Seat {
                id: i16::MAX,
                label: "last".into(),
            })
            .unwrap();
        assert!(store.save(seat("past the range")).is_err());
        assert_eq!(store.count::<Seat>().unwrap(), 5, "nothing written");

        // Declared natural: the application's number, 0 included.
        let ground = store
            .save(Floor {
                level: 0,
                name: "ground".into(),
            })
            .unwrap();
        assert_eq!(ground.level, 0);
        store
            .save(Floor {
                level: 0,
                name: "lobby".into(),
            })
            .unwrap();
        assert_eq!(store.count::<Floor>().unwrap(), 1, "the same row, updated");
        assert_eq!(store.get::<Floor>(&0).unwrap().name, "lobby");
    }
}

/// On PostgreSQL, rows inserted with keys of their own into a table whose database assigns
/// keys move its sequence past them in the same transaction: when the sequence cannot be
/// moved (here, past its largest value), no row is written, one row or several.
#[test]
fn on_postgres_rows_with_given_keys_are_written_with_the_sequence_moved_or_not_at_all() {
    for (store, _schema) in stores() {
        if store.dialect() != Dialect::Postgres {
            continue;
        }
        let country = france(&store);
        store
            .conn()
            .unwrap()
            .batch_execute("ALTER TABLE customers ALTER COLUMN id SET MAXVALUE 10000")
            .unwrap();
        for rows in [1, 3] {
            let given = (0..rows)
                .map(|i| Customer {
                    id: 20_000 + i,
                    name: format!("imported {i}"),
                    country_code: country.code,
                    ..Customer::default()
                })
                .collect();
            assert!(store.insert_all(given).is_err(), "{rows} rows");
            assert_eq!(store.count::<Customer>().unwrap(), 0, "{rows} rows");
        }
    }
}

/// On PostgreSQL `insert_all` sends a call's rows in one statement. An insert of up to 16 rows
/// is kept prepared on its connection, one statement for each number of rows, so that the
/// server parses it once: rows with their keys and rows whose keys the database assigns alike.
/// A larger insert is not kept (but for 64 and 256 rows, which every backend keeps), as a
/// statement for each larger number would pile up on the server.
#[test]
fn on_postgres_inserts_of_up_to_16_rows_are_prepared_once_per_connection() {
    for (store, _schema) in stores() {
        if store.dialect() != Dialect::Postgres {
            continue;
        }
        let country = france(&store);
        let mut conn = store.conn().unwrap();
        let kept = |conn: &mut datastore::PooledConn, table: &str| -> i64 {
            datastore::diesel::select(datastore::diesel::dsl::sql::<
                datastore::diesel::sql_types::BigInt,
            >(&format!(
                "(SELECT count(*) FROM pg_prepared_statements \
                  WHERE statement LIKE 'INSERT INTO \"{table}\"%')"
            )))
            .get_result(&mut **conn)
            .unwrap()
        };
        let customers = |n: usize| -> Vec<Customer> {
            (0..n)
                .map(|i| Customer {
                    name: format!("customer {i}"),
                    country_code: country.code,
                    ..Customer::default()
                })
                .collect()
        };
        let countries = |codes: std::ops::Range<i32>| -> Vec<Country> {
            codes
                .map(|code| Country {
                    code,
                    name: format!("country {code}"),
                })
                .collect()
        };
        for _ in 0..3 {
            assert_eq!(conn.insert_all(customers(10)).unwrap().len(), 10);
        }
        assert_eq!(kept(&mut conn, "customers"), 1, "10 rows, three times");
        conn.insert_all(customers(11)).unwrap();
        conn.insert_all(customers(15)).unwrap();
        assert_eq!(kept(&mut conn, "customers"), 3, "and 11, and 15 rows");
        let inserted = conn.insert_all(customers(17)).unwrap();
        assert_eq!(inserted.len(), 17);
        assert!(inserted.windows(2).all(|pair| pair[0].id < pair[1].id));
        assert_eq!(kept(&mut conn, "customers"), 3, "17 rows are not kept");
        // France's save is kept too (an upsert, which begins the same way).
        let saves = kept(&mut conn, "countries");
        conn.insert_all(countries(1..11)).unwrap();
        conn.insert_all(countries(11..21)).unwrap();
        assert_eq!(
            kept(&mut conn, "countries"),
            saves + 1,
            "rows with their keys"
        );
        conn.insert_all(countries(21..38)).unwrap();
        assert_eq!(kept(&mut conn, "countries"), saves + 1, "17 of them");
        assert_eq!(conn.count::<Country>().unwrap(), 38);
        assert_eq!(conn.count::<Customer>().unwrap(), 3 * 10 + 11 + 15 + 17);
    }
}

#[test]
fn insert_all_returns_rows_with_the_keys_the_database_assigned() {
    for (store, _schema) in stores() {
        let country = france(&store);
        let rows: Vec<Customer> = (0..2500)
            .map(|i| Customer {
                name: format!("customer {i}"),
                country_code: country.code,
                ..Customer::default()
            })
            .collect();
        let inserted = store.insert_all(rows).unwrap();
        assert_eq!(inserted.len(), 2500);
        for pair in inserted.windows(2) {
            assert!(pair[0].id < pair[1].id, "keys in the rows' order");
        }
        for row in [&inserted[0], &inserted[1234], &inserted[2499]] {
            assert_eq!(store.get::<Customer>(&row.id).unwrap(), *row);
        }
        let orders: Vec<Order> = inserted
            .iter()
            .take(3)
            .map(|c| Order {
                customer_id: c.id,
                total: 1,
                ..Order::default()
            })
            .collect();
        let orders = store.insert_all(orders).unwrap();
        assert!(orders.iter().all(|o| o.id != 0));
    }
}

/// Rows of nothing but a key the database assigns are inserted one statement each: a failure
/// on the third leaves none of them written.
#[test]
fn insert_all_of_key_only_rows_writes_all_or_none() {
    let store = Store::builder(":memory:")
        .schema(shop::schema())
        .open()
        .unwrap();
    let mut conn = store.conn().unwrap();
    conn.batch_execute(
        "CREATE TRIGGER third AFTER INSERT ON tickets WHEN new.id = 3 \
         BEGIN SELECT RAISE(ABORT, 'no third ticket'); END;",
    )
    .unwrap();
    assert!(conn.insert_all(vec![Ticket::default(); 4]).is_err());
    assert_eq!(conn.count::<Ticket>().unwrap(), 0, "nothing written");
    conn.batch_execute("DROP TRIGGER third").unwrap();
    let tickets = conn.insert_all(vec![Ticket::default(); 4]).unwrap();
    assert_eq!(
        tickets.iter().map(|t| t.id).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
}

#[test]
fn a_natural_key_is_found_by_its_value_and_its_changes_follow_into_children() {
    for (store, _schema) in stores() {
        let customer = customer(&store, "Chloé");
        let keyboard = store
            .save(Product {
                sku: "KB-1".into(),
                name: "keyboard".into(),
                ..Product::default()
            })
            .unwrap();
        assert_eq!(store.get::<Product>(&"KB-1".to_owned()).unwrap(), keyboard);
        let order = store
            .save(Order {
                customer_id: customer.id,
                ..Order::default()
            })
            .unwrap();
        order
            .link_products(&mut store.conn().unwrap(), &keyboard)
            .unwrap();

        // A key changed by an UPDATE of the key column: the foreign keys follow.
        let mut conn = store.conn().unwrap();
        diesel::update(shop::products::table.find("KB-1"))
            .set(shop::products::sku.eq("KB-2"))
            .execute(&mut conn)
            .unwrap();
        let lines: Vec<OrderLine> = conn.all().unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].sku, "KB-2", "ON UPDATE CASCADE");
        assert_eq!(order.products(&mut conn).unwrap()[0].sku, "KB-2");
        diesel::update(shop::countries::table.find(250))
            .set(shop::countries::code.eq(251))
            .execute(&mut conn)
            .unwrap();
        assert_eq!(
            conn.get::<Customer>(&customer.id).unwrap().country_code,
            251
        );
    }
}

#[test]
fn a_join_model_keyed_by_its_pair_links_once_and_unlinks() {
    for (store, _schema) in stores() {
        let customer = customer(&store, "Dan");
        let order = store
            .save(Order {
                customer_id: customer.id,
                ..Order::default()
            })
            .unwrap();
        let mut conn = store.conn().unwrap();
        let products: Vec<Product> = ["A", "B"]
            .into_iter()
            .map(|sku| {
                conn.save(Product {
                    sku: sku.into(),
                    ..Product::default()
                })
                .unwrap()
            })
            .collect();
        for product in &products {
            order.link_products(&mut conn, product).unwrap();
            order.link_products(&mut conn, product).unwrap();
        }
        assert_eq!(
            conn.count::<OrderLine>().unwrap(),
            2,
            "linking twice keeps one link"
        );
        let key = (order.id, "A".to_owned());
        let line = conn.get::<OrderLine>(&key).unwrap();
        assert_eq!(line.key(), key);
        // In key order, each once, whatever the order and repetitions of the keys asked.
        let found = OrderLine::find_many(
            &mut conn,
            &[(order.id, "B".into()), key.clone(), (order.id, "B".into())],
        )
        .unwrap();
        assert_eq!(
            found.iter().map(|l| l.sku.as_str()).collect::<Vec<_>>(),
            ["A", "B"]
        );
        let saved = conn
            .save(OrderLine {
                quantity: 3,
                ..line
            })
            .unwrap();
        assert_eq!((saved.quantity, conn.count::<OrderLine>().unwrap()), (3, 2));

        // The product is linked: deleting it is refused, naming it.
        match conn.delete(&products[1]).unwrap_err() {
            Error::DeleteRestricted {
                table,
                key,
                join_table,
                count,
                ..
            } => assert_eq!(
                (table.as_str(), key.as_str(), join_table.as_str(), count),
                ("products", "B", "order_lines", 1)
            ),
            other => panic!("expected DeleteRestricted, got {other:?}"),
        }
        assert_eq!(order.unlink_products(&mut conn, &products[1]).unwrap(), 1);
        conn.delete(&products[1]).unwrap();
        conn.delete_by_id::<OrderLine>(&key).unwrap();
        assert_eq!(conn.count::<OrderLine>().unwrap(), 0);
        assert!(matches!(
            conn.delete_by_id::<OrderLine>(&key),
            Err(Error::NotFound { key, .. }) if key == format!("({}, A)", order.id)
        ));
    }
}

/// A link inserts its join row: one whose key is not fresh (a label left empty) is refused
/// as a duplicate key, and never takes over the row of another link.
#[test]
fn a_link_never_takes_over_another_links_row() {
    for (store, _schema) in stores() {
        let mut conn = store.conn().unwrap();
        let shelf = conn.save(Shelf::default()).unwrap();
        for sku in ["A", "B"] {
            conn.save(Product {
                sku: sku.into(),
                ..Product::default()
            })
            .unwrap();
        }
        let product = |sku: &str| store.get::<Product>(&sku.to_owned()).unwrap();
        shelf.link_products(&mut conn, &product("A")).unwrap();
        match shelf.link_products(&mut conn, &product("B")) {
            Err(Error::Constraint(violation)) => {
                assert_eq!(violation.kind, datastore::ConstraintKind::Unique)
            }
            other => panic!("expected a unique violation, got {other:?}"),
        }
        let placements = conn.all::<Placement>().unwrap();
        assert_eq!(
            placements
                .iter()
                .map(|p| (p.shelf_id, p.sku.as_str()))
                .collect::<Vec<_>>(),
            [(shelf.id, "A")],
            "the first link is kept"
        );
    }
}

#[test]
fn a_new_graph_gets_its_key_written_into_its_children_and_links() {
    for (store, _schema) in stores() {
        let customer = customer(&store, "Eve");
        let mut conn = store.conn().unwrap();
        let mut order = Order {
            customer_id: customer.id,
            total: 30,
            ..Order::default()
        };
        order.payments = HasMany::loaded(
            (1..=3)
                .map(|amount| Payment {
                    amount,
                    ..Payment::default()
                })
                .collect(),
        );
        order.products = ManyToMany::loaded(
            ["P1", "P2"]
                .into_iter()
                .map(|sku| Product {
                    sku: sku.into(),
                    ..Product::default()
                })
                .collect(),
        );
        let saved = conn.save_graph(order).unwrap();
        assert_ne!(saved.id, 0);
        let payments = saved.payments.get().unwrap();
        assert_eq!(payments.len(), 3);
        assert!(payments.iter().all(|p| p.order_id == saved.id && p.id != 0));
        let lines: Vec<OrderLine> = conn.all().unwrap();
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.order_id == saved.id));

        // The order's own failure leaves nothing of the graph (tests/relations.rs covers
        // failures further in, on the same path).
        let mut orphan = Order {
            customer_id: -1,
            ..Order::default()
        };
        orphan.payments = HasMany::loaded(vec![Payment::default()]);
        assert!(conn.save_graph(orphan).is_err());
        assert_eq!(
            (
                conn.count::<Order>().unwrap(),
                conn.count::<Payment>().unwrap()
            ),
            (1, 3)
        );
    }
}

#[test]
fn relations_load_and_filter_by_integer_keys() {
    for (store, _schema) in stores() {
        let mut conn = store.conn().unwrap();
        let country = conn
            .save(Country {
                code: 826,
                name: "UK".into(),
            })
            .unwrap();
        let mut customers = Vec::new();
        for name in ["Fay", "Gus", "Hal"] {
            let customer = conn
                .save(Customer {
                    name: name.into(),
                    country_code: country.code,
                    ..Customer::default()
                })
                .unwrap();
            for total in [5, 50] {
                conn.save(Order {
                    customer_id: customer.id,
                    total,
                    ..Order::default()
                })
                .unwrap();
            }
            customers.push(customer);
        }
        Customer::load_orders(&mut conn, &mut customers).unwrap();
        assert!(customers.iter().all(|c| c.orders.get().unwrap().len() == 2
            && c.orders
                .get()
                .unwrap()
                .iter()
                .all(|o| o.customer_id == c.id)));
        let big: Vec<Customer> = conn
            .query::<Customer>(|q| q.filter(Customer::having_orders(orders::total.gt(10))))
            .unwrap();
        assert_eq!(big.len(), 3);
        let of_fay: Vec<Order> = conn
            .query::<Order>(|q| q.filter(Order::where_customer(customers::name.eq("Fay"))))
            .unwrap();
        assert_eq!(of_fay.len(), 2);
        assert_eq!(of_fay[0].customer(&mut conn).unwrap().name, "Fay");
        // The field has no `_id` to strip: the parent's getter takes the field's name.
        assert_eq!(customers[0].country_code(&mut conn).unwrap(), country);
    }
}

#[test]
fn observe_reports_rows_by_their_own_keys() {
    for (store, _schema) in stores() {
        let customer = customer(&store, "Ivy");
        let watched = store.observe_id::<Customer>(&customer.id).unwrap();
        store
            .save(Customer {
                name: "Ivy II".into(),
                ..customer.clone()
            })
            .unwrap();
        customer_other_change(&store);
        match watched.recv_timeout(std::time::Duration::from_secs(5)) {
            Some(datastore::observe::Observed::Change(change)) => {
                assert_eq!(change.element.key(), customer.id);
                assert_eq!(change.element.name, "Ivy II");
            }
            other => panic!("expected the change, got {other:?}"),
        }
        assert!(watched.try_recv().is_none(), "only the watched row");
    }
}

fn customer_other_change(store: &Store) {
    customer(store, "someone else");
}

#[test]
fn keys_describe_themselves_for_messages() {
    assert_eq!(42i64.describe(), "42");
    assert_eq!((7i64, "A".to_owned()).describe(), "(7, A)");
}
