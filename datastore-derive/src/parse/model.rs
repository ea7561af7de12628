//! `#[derive(Model)]` input: the struct, its table, its columns and its relation fields.

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Ident, LitStr, Type};

use super::attr::{attr_name, crate_path, expr_ident, expr_path, RelationArgs, Slot};
use crate::ctxt::Ctxt;

pub struct Model<'a> {
    pub ident: &'a Ident,
    /// The table's name, which is also the name of the generated `table!` module.
    pub table: Ident,
    pub fields: Vec<Field<'a>>,
    /// The primary key: one field, or several (a composite key), in key order.
    pub key: Key,
    /// `#[model(renamed_from = "..")]`: the table's previous name.
    pub renamed_from: Option<LitStr>,
    /// `#[model(crate = ..)]`: the path generated code reaches datastore by, where the crate
    /// deriving names it otherwise; `None` for `::datastore`.
    pub krate: Option<syn::Path>,
}

/// A model's primary key.
pub struct Key {
    /// The key's fields, as indices into `Model::fields`, in key order.
    pub fields: Vec<usize>,
    pub kind: KeyKind,
}

/// Where a model's keys come from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// An `Id`, made by the application.
    Uuid,
    /// An integer the database assigns.
    Assigned,
    /// A value the application gives (a composite key, `String`, a natural integer).
    Natural,
}

pub struct Field<'a> {
    pub ident: &'a Ident,
    pub ty: &'a Type,
    pub kind: FieldKind,
}

pub enum FieldKind {
    Column(Column),
    Relation(Relation),
}

#[derive(Default)]
pub struct Column {
    /// `#[primary_key]`, and whether it said `natural` (`#[primary_key(natural)]`).
    pub primary_key: Option<PrimaryKey>,
    pub unique: bool,
    pub index: bool,
    /// A `#[belongs_to(Parent)]` foreign key.
    pub belongs_to: Option<BelongsTo>,
    pub timestamp: Option<TimestampRole>,
    /// `#[column(default = ..)]`.
    pub default: Option<Default>,
    /// `#[column(renamed_from = "..")]`: the column's previous name.
    pub renamed_from: Option<LitStr>,
}

/// A column's declared default: a literal, and the attribute that declared it.
pub struct Default {
    pub value: DefaultValue,
    pub span: Span,
}

pub enum DefaultValue {
    Integer(i64),
    Real(String),
    Bool(bool),
    Text(String),
}

/// `#[belongs_to(Parent, on_delete = ..)]` on a field.
pub struct BelongsTo {
    /// The parent model.
    pub parent: syn::Path,
    /// What deleting the parent does, when the attribute says.
    pub on_delete: Option<OnDelete>,
    /// Whether the field is an `Option`: the parent is optional.
    pub optional: bool,
}

/// A foreign key's `ON DELETE`, as a `belongs_to` states it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum OnDelete {
    Cascade,
    Restrict,
    SetNull,
}

/// `#[primary_key]` on a field.
#[derive(Clone, Copy)]
pub struct PrimaryKey {
    /// `#[primary_key(natural)]`: an integer the application gives, not the database (the
    /// span of the word `natural`).
    pub natural: Option<proc_macro2::Span>,
    pub span: proc_macro2::Span,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TimestampRole {
    Created,
    Updated,
}

pub struct Relation {
    pub kind: RelationKind,
    pub target: syn::Path,
    pub through: Option<syn::Path>,
    /// `foreign_key = ..`: the field of the child (of a `has_many`/`has_one`) or of the join
    /// model (of a `many_to_many`) that points at this model's row.
    pub foreign_key: Option<Ident>,
    /// `other_key = ..`: the field of a `many_to_many`'s join model that points at the linked
    /// row.
    pub other_key: Option<Ident>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum RelationKind {
    HasOne,
    HasMany,
    ManyToMany,
}

impl RelationKind {
    pub fn attr(self) -> &'static str {
        match self {
            Self::HasOne => "has_one",
            Self::HasMany => "has_many",
            Self::ManyToMany => "many_to_many",
        }
    }

    /// The wrapper type the field must have.
    pub fn wrapper(self) -> &'static str {
        match self {
            Self::HasOne => "HasOne",
            Self::HasMany => "HasMany",
            Self::ManyToMany => "ManyToMany",
        }
    }
}

impl<'a> Model<'a> {
    pub fn from_ast(input: &'a DeriveInput) -> Result<Self, TokenStream> {
        let cx = Ctxt::new();
        let ModelAttributes {
            table,
            composite,
            renamed_from,
            krate,
        } = parse_model_attributes(&cx, input);
        for attr in &input.attrs {
            if let Some(name) =
                attr_name(attr).filter(|name| FIELD_ATTRIBUTES.contains(&name.as_str()))
            {
                cx.error_spanned_by(
                    attr,
                    format!(
                        "`#[{name}]` goes on a field, not on the struct: the struct's own \
                         attribute is `#[model(..)]`"
                    ),
                );
            }
        }
        if !input.generics.params.is_empty() {
            cx.error_spanned_by(
                &input.generics,
                "a model cannot be generic: remove the type parameters",
            );
        }
        let named = match &input.data {
            Data::Struct(s) => match &s.fields {
                Fields::Named(named) => Some(named),
                _ => None,
            },
            _ => None,
        };
        let Some(named) = named else {
            cx.error_spanned_by(
                &input.ident,
                "`#[derive(Model)]` needs a struct with named fields: `struct Post { #[primary_key] id: Id, .. }`",
            );
            cx.check()?;
            unreachable!()
        };
        let mut fields: Vec<Field> = named
            .named
            .iter()
            .filter_map(|f| Field::from_ast(&cx, f))
            .collect();
        // The generated code names related models outside the struct's impls, where `Self`
        // means nothing: it names the struct.
        for field in &mut fields {
            let paths: Vec<&mut syn::Path> = match &mut field.kind {
                FieldKind::Column(column) => column
                    .belongs_to
                    .iter_mut()
                    .map(|b| &mut b.parent)
                    .collect(),
                FieldKind::Relation(relation) => std::iter::once(&mut relation.target)
                    .chain(relation.through.as_mut())
                    .collect(),
            };
            for path in paths.into_iter().filter(|p| p.is_ident("Self")) {
                let span = path.segments[0].ident.span();
                *path = syn::Path::from(Ident::new(&input.ident.to_string(), span));
            }
        }

        for field in fields.iter().filter(|f| f.column().is_some()) {
            let name = field.column_name();
            if TABLE_MODULE_ITEMS.contains(&name.as_str()) {
                cx.error_spanned_by(
                    field.ident,
                    format!(
                        "a column cannot be named `{name}`: Diesel's `table!` module `{table}` has \
                         an item `{table}::{name}` of its own, which the column's would clash \
                         with; rename the field (a column is named like its field)"
                    ),
                );
            }
            if name.len() > LONGEST_NAME {
                cx.error_spanned_by(
                    field.ident,
                    format!(
                        "the column name `{name}` is {} bytes long: PostgreSQL keeps only the first \
                         {LONGEST_NAME} bytes of a name, so a model's column names are {LONGEST_NAME} \
                         bytes at most (rename the field)",
                        name.len()
                    ),
                );
            }
        }

        super::names::check(&cx, &input.ident, &fields);

        let key = resolve_key(&cx, input, &fields, composite);
        cx.check()?;
        Ok(Self {
            ident: &input.ident,
            table,
            fields,
            key: key.expect("an error was reported otherwise"),
            renamed_from,
            krate,
        })
    }

    /// The key's fields, in key order.
    pub fn key_fields(&self) -> Vec<&Field<'a>> {
        self.key.fields.iter().map(|&i| &self.fields[i]).collect()
    }

    /// Whether a field is part of the primary key.
    pub fn is_key(&self, field: &Field) -> bool {
        self.key_fields().iter().any(|k| k.ident == field.ident)
    }

    pub fn columns(&self) -> impl Iterator<Item = (&Field<'a>, &Column)> {
        self.fields
            .iter()
            .filter_map(|f| f.column().map(|c| (f, c)))
    }

    pub fn relations(&self) -> impl Iterator<Item = (&Field<'a>, &Relation)> {
        self.fields.iter().filter_map(|f| match &f.kind {
            FieldKind::Relation(r) => Some((f, r)),
            FieldKind::Column(_) => None,
        })
    }

    pub fn timestamp(&self, role: TimestampRole) -> Option<&Field<'a>> {
        self.columns()
            .find(|(_, c)| c.timestamp == Some(role))
            .map(|(f, _)| f)
    }
}

impl<'a> Field<'a> {
    fn from_ast(cx: &Ctxt, field: &'a syn::Field) -> Option<Self> {
        let ident = field.ident.as_ref()?;
        let mut primary_key: Slot<PrimaryKey> = Slot::new("primary_key");
        let mut unique = Slot::new("unique");
        let mut index = Slot::new("index");
        let mut belongs_to = Slot::new("belongs_to");
        let mut relation: Slot<Relation> = Slot::new("relation");
        let mut default: Slot<Default> = Slot::new("default");
        let mut renamed_from: Slot<LitStr> = Slot::new("renamed_from");

        for attr in &field.attrs {
            let Some(name) = attr_name(attr) else {
                continue;
            };
            let span = attr.span();
            match name.as_str() {
                "primary_key" => {
                    let natural = match &attr.meta {
                        syn::Meta::Path(_) => None,
                        _ => match attr.parse_args::<Ident>() {
                            Ok(arg) if arg == "natural" => Some(arg.span()),
                            _ => {
                                cx.error_spanned_by(
                                    attr,
                                    "expected `#[primary_key]`, or `#[primary_key(natural)]` for an \
                                     integer key the application gives rather than the database",
                                );
                                None
                            }
                        },
                    };
                    primary_key.set(cx, span, PrimaryKey { natural, span });
                }
                "unique" | "index" => {
                    if let Err(e) = attr.meta.require_path_only() {
                        cx.push(syn::Error::new(
                            e.span(),
                            format!("`#[{name}]` takes no arguments"),
                        ));
                    }
                    let slot = match name.as_str() {
                        "unique" => &mut unique,
                        _ => &mut index,
                    };
                    slot.set(cx, span, ());
                }
                "belongs_to" => match attr.parse_args::<RelationArgs>() {
                    Ok(args) => {
                        let mut on_delete = Slot::new("on_delete");
                        for option in &args.options {
                            if option.key != "on_delete" {
                                cx.error_spanned_by(
                                    &option.key,
                                    format!(
                                        "unknown belongs_to option `{}`: expected `#[belongs_to(Parent)]` \
                                         or `#[belongs_to(Parent, on_delete = cascade | restrict | set_null)]`",
                                        option.key
                                    ),
                                );
                                continue;
                            }
                            let action =
                                match expr_ident(&option.value).map(|i| i.to_string()).as_deref() {
                                    Some("cascade") => OnDelete::Cascade,
                                    Some("restrict") => OnDelete::Restrict,
                                    Some("set_null") => OnDelete::SetNull,
                                    _ => {
                                        cx.error_spanned_by(
                                        &option.value,
                                        "expected `on_delete = cascade`, `restrict` or `set_null`",
                                    );
                                        continue;
                                    }
                                };
                            on_delete.set(cx, option.key.span(), (action, option.value.span()));
                        }
                        belongs_to.set(cx, span, (args.target, on_delete.get()));
                    }
                    Err(e) => cx.push(syn::Error::new(
                        e.span(),
                        format!("{e}: expected `#[belongs_to(Parent)]`"),
                    )),
                },
                "column" => parse_column_options(cx, attr, &mut default, &mut renamed_from),
                "has_one" | "has_many" | "many_to_many" => {
                    let kind = match name.as_str() {
                        "has_one" => RelationKind::HasOne,
                        "has_many" => RelationKind::HasMany,
                        _ => RelationKind::ManyToMany,
                    };
                    if let Some(r) = parse_relation(cx, attr, kind) {
                        if relation.is_set() {
                            cx.push(syn::Error::new(
                                span,
                                "a field holds one relation: remove one of its relation attributes",
                            ));
                        } else {
                            relation.set(cx, span, r);
                        }
                    }
                }
                "model" => cx.error_spanned_by(
                    attr,
                    "`#[model(..)]` goes on the struct, not on a field: a field's own attributes \
                     are `#[primary_key]`, `#[column(..)]`, `#[unique]`, `#[index]` and the \
                     relation attributes",
                ),
                _ => {}
            }
        }

        if let Some(span) = relation.span() {
            for (slot_span, name) in [
                (primary_key.span(), "primary_key"),
                (unique.span(), "unique"),
                (index.span(), "index"),
                (belongs_to.span(), "belongs_to"),
                (default.span(), "column"),
                (renamed_from.span(), "column"),
            ] {
                if let Some(s) = slot_span {
                    cx.push(syn::Error::new(
                        s,
                        format!("`#[{name}]` is for columns; this field is a relation"),
                    ));
                }
            }
            let _ = span;
            let relation = relation.get().expect("span implies value");
            return Some(Self {
                ident,
                ty: ungroup(&field.ty),
                kind: FieldKind::Relation(relation),
            });
        }

        let ty = ungroup(&field.ty);
        if let Some(reason) = unsupported_type(ty) {
            cx.error_spanned_by(
                &field.ty,
                format!(
                    "unsupported field type: {reason}; a column holds String, bool, i16, i32, i64, f32, f64, \
                     Vec<u8>, Id, Timestamp, serde_json::Value, Json<T>, a `DbEnum`, or Option<T> of these \
                     (store a collection as `Json<T>`)"
                ),
            );
        }
        let timestamp = match ident.to_string().as_str() {
            "created_at" if is_named(ty, "Timestamp") => Some(TimestampRole::Created),
            "updated_at" if is_named(ty, "Timestamp") => Some(TimestampRole::Updated),
            _ => None,
        };
        let optional = option_of(ty).is_some();
        let belongs_to = belongs_to.get().map(|(parent, on_delete)| {
            if let Some((OnDelete::SetNull, span)) = on_delete {
                if !optional {
                    cx.push(syn::Error::new(
                        span,
                        "`on_delete = set_null` needs a field that can be NULL: make it \
                         `Option<..>` (an optional parent), or choose `cascade` or `restrict`",
                    ));
                }
            }
            BelongsTo {
                parent,
                on_delete: on_delete.map(|(action, _)| action),
                optional,
            }
        });
        Some(Self {
            ident,
            ty,
            kind: FieldKind::Column(Column {
                primary_key: primary_key.get(),
                unique: unique.is_set(),
                index: index.is_set(),
                belongs_to,
                timestamp,
                default: default.get(),
                renamed_from: renamed_from.get(),
            }),
        })
    }

    pub fn column(&self) -> Option<&Column> {
        match &self.kind {
            FieldKind::Column(c) => Some(c),
            FieldKind::Relation(_) => None,
        }
    }

    /// The column's name in the database (the field's name, without `r#`).
    pub fn column_name(&self) -> String {
        self.ident.unraw().to_string()
    }

    /// The name the field's generated methods are made from: a relation field's own name
    /// (`comments`: `load_comments()`), a `belongs_to` field's without its `_id` (`post_id`:
    /// `post()`), both without `r#`; `None` for a plain column, which makes none.
    pub fn method_stem(&self) -> Option<String> {
        let name = self.ident.unraw().to_string();
        match &self.kind {
            FieldKind::Relation(_) => Some(name),
            FieldKind::Column(c) => c
                .belongs_to
                .as_ref()
                .map(|_| name.strip_suffix("_id").map_or(name.clone(), str::to_owned)),
        }
    }
}

fn parse_relation(cx: &Ctxt, attr: &syn::Attribute, kind: RelationKind) -> Option<Relation> {
    let form = match kind {
        RelationKind::HasOne => "`#[has_one(Child)]` or `#[has_one(Child, foreign_key = field)]`",
        RelationKind::HasMany => {
            "`#[has_many(Child)]` or `#[has_many(Child, foreign_key = field)]`"
        }
        RelationKind::ManyToMany => {
            "`#[many_to_many(Other, through = JoinModel)]`, or with the join model's fields \
             pointing at this row and at the other named: `#[many_to_many(Other, through = \
             JoinModel, foreign_key = field, other_key = field)]`"
        }
    };
    let args = match attr.parse_args::<RelationArgs>() {
        Ok(args) => args,
        Err(e) => {
            cx.push(syn::Error::new(e.span(), format!("{e}: expected {form}")));
            return None;
        }
    };
    let mut through = Slot::new("through");
    let mut foreign_key = Slot::new("foreign_key");
    let mut other_key = Slot::new("other_key");
    for option in &args.options {
        let field_name = |slot: &mut Slot<Ident>| match expr_ident(&option.value) {
            Some(i) => slot.set(cx, option.key.span(), i),
            None => cx.error_spanned_by(&option.value, format!("expected a field name: {form}")),
        };
        match (kind, option.key.to_string().as_str()) {
            (RelationKind::ManyToMany, "through") => match expr_path(&option.value) {
                Some(p) => through.set(cx, option.key.span(), p),
                None => {
                    cx.error_spanned_by(&option.value, format!("expected a model type: {form}"))
                }
            },
            (_, "foreign_key") => field_name(&mut foreign_key),
            (RelationKind::ManyToMany, "other_key") => field_name(&mut other_key),
            (_, other) => cx.error_spanned_by(
                &option.key,
                format!("unknown {} option `{other}`: expected {form}", kind.attr()),
            ),
        }
    }
    if kind == RelationKind::ManyToMany && !through.is_set() {
        cx.error_spanned_by(
            attr,
            format!("a many-to-many relation needs its join model: {form}"),
        );
    }
    Some(Relation {
        kind,
        target: args.target,
        through: through.get(),
        foreign_key: foreign_key.get(),
        other_key: other_key.get(),
    })
}

/// `#[column(default = .., renamed_from = "..")]` on a field.
fn parse_column_options(
    cx: &Ctxt,
    attr: &syn::Attribute,
    default: &mut Slot<Default>,
    renamed_from: &mut Slot<LitStr>,
) {
    const FORM: &str = "expected `#[column(default = <literal>)]` or \
                        `#[column(renamed_from = \"previous_name\")]`";
    let result = attr.parse_nested_meta(|meta| {
        if meta.path.is_ident("default") {
            let expr: syn::Expr = meta.value()?.parse()?;
            match default_value(&expr) {
                Some(value) => default.set(
                    cx,
                    attr.span(),
                    Default {
                        value,
                        span: expr.span(),
                    },
                ),
                None => cx.error_spanned_by(
                    &expr,
                    "a default is a literal: an integer, a float, `true`/`false`, or a string \
                     (an enum's variant by its stored name, `\"Active\"`)",
                ),
            }
            Ok(())
        } else if meta.path.is_ident("renamed_from") {
            let lit: LitStr = meta.value()?.parse()?;
            renamed_from.set(cx, meta.path.span(), lit);
            Ok(())
        } else {
            Err(meta.error(format!("unknown column option: {FORM}")))
        }
    });
    if let Err(e) = result {
        cx.push(e);
    }
}

/// The literal of `#[column(default = ..)]` (a negative number is a unary minus on one).
fn default_value(expr: &syn::Expr) -> Option<DefaultValue> {
    let (negative, lit) = match expr {
        syn::Expr::Lit(lit) => (false, &lit.lit),
        syn::Expr::Unary(syn::ExprUnary {
            op: syn::UnOp::Neg(_),
            expr,
            ..
        }) => match &**expr {
            syn::Expr::Lit(lit) => (true, &lit.lit),
            _ => return None,
        },
        _ => return None,
    };
    let sign = if negative { "-" } else { "" };
    Some(match lit {
        syn::Lit::Int(int) => {
            DefaultValue::Integer(format!("{sign}{}", int.base10_digits()).parse().ok()?)
        }
        syn::Lit::Float(float) => DefaultValue::Real(format!("{sign}{}", float.base10_digits())),
        syn::Lit::Bool(b) if !negative => DefaultValue::Bool(b.value),
        syn::Lit::Str(text) if !negative => DefaultValue::Text(text.value()),
        _ => return None,
    })
}

/// What `#[model(..)]` says.
struct ModelAttributes {
    /// The table's name: given, or the struct's name in snake case, pluralized.
    table: Ident,
    /// The fields of a composite key.
    composite: Option<(Vec<Ident>, Span)>,
    /// The table's previous name.
    renamed_from: Option<LitStr>,
    /// The path of the datastore crate, when given.
    krate: Option<syn::Path>,
}

/// The items of the module Diesel's `table!` writes (beside the columns, which it also holds).
const TABLE_MODULE_ITEMS: [&str; 8] = [
    "table",
    "star",
    "columns",
    "dsl",
    "all_columns",
    "diesel",
    "SqlType",
    "BoxedQuery",
];

/// The derive's attributes that go on a field (the struct's own is `model`).
const FIELD_ATTRIBUTES: [&str; 8] = [
    "column",
    "primary_key",
    "unique",
    "index",
    "has_one",
    "has_many",
    "belongs_to",
    "many_to_many",
];

/// `#[model(table = "...", primary_key(a, b), renamed_from = "...", crate = path)]`.
fn parse_model_attributes(cx: &Ctxt, input: &DeriveInput) -> ModelAttributes {
    let mut table: Slot<LitStr> = Slot::new("table");
    let mut composite: Slot<Vec<Ident>> = Slot::new("primary_key");
    let mut renamed_from: Slot<LitStr> = Slot::new("renamed_from");
    let mut krate: Slot<syn::Path> = Slot::new("crate");
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("model")) {
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("table") {
                let lit: LitStr = meta.value()?.parse()?;
                table.set(cx, meta.path.span(), lit);
                Ok(())
            } else if meta.path.is_ident("primary_key") {
                let mut fields = Vec::new();
                meta.parse_nested_meta(|field| match field.path.get_ident() {
                    Some(ident) => {
                        fields.push(ident.clone());
                        Ok(())
                    }
                    None => {
                        Err(field.error("expected a field name: `#[model(primary_key(a, b))]`"))
                    }
                })?;
                composite.set(cx, meta.path.span(), fields);
                Ok(())
            } else if meta.path.is_ident("renamed_from") {
                let lit: LitStr = meta.value()?.parse()?;
                renamed_from.set(cx, meta.path.span(), lit);
                Ok(())
            } else if meta.path.is_ident("crate") {
                let path = crate_path(&meta, "`#[model(crate = my_db::datastore)]`")?;
                krate.set(cx, meta.path.span(), path);
                Ok(())
            } else {
                let name = meta
                    .path
                    .get_ident()
                    .map(Ident::to_string)
                    .unwrap_or_default();
                Err(meta.error(format!(
                    "unknown model attribute `{name}`: expected `#[model(table = \"name\")]`, \
                     `#[model(primary_key(a, b))]`, `#[model(renamed_from = \"previous_name\")]` \
                     or `#[model(crate = my_db::datastore)]`"
                )))
            }
        });
        if let Err(e) = result {
            cx.push(e);
        }
    }
    let span = composite.span();
    ModelAttributes {
        composite: composite.get().zip(span),
        table: table_name(cx, input, table),
        renamed_from: renamed_from.get(),
        krate: krate.get(),
    }
}

/// The longest name PostgreSQL keeps whole (`NAMEDATALEN` - 1 bytes). It cuts a longer one to
/// that length without an error, so that two names sharing their first 63 bytes would be one
/// table or column, and the catalog would not know the model's name.
const LONGEST_NAME: usize = 63;

/// The table's name: the one given, checked, or the struct's name in snake case, pluralized;
/// either [`LONGEST_NAME`] bytes at most.
fn table_name(cx: &Ctxt, input: &DeriveInput, table: Slot<LitStr>) -> Ident {
    let name = table_name_unchecked(cx, input, table);
    let length = name.to_string().len();
    if length > LONGEST_NAME {
        cx.error_spanned_by(
            &name,
            format!(
                "the table name `{name}` is {length} bytes long: PostgreSQL keeps only the first \
                 {LONGEST_NAME} bytes of a name; give a shorter one with \
                 `#[model(table = \"...\")]`"
            ),
        );
    }
    name
}

/// The table's name, as [`table_name`] describes, before its length is checked.
fn table_name_unchecked(cx: &Ctxt, input: &DeriveInput, table: Slot<LitStr>) -> Ident {
    match table.get() {
        Some(lit) => {
            let name = lit.value();
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && syn::parse_str::<Ident>(&name).is_ok();
            if !valid {
                cx.error_spanned_by(
                    &lit,
                    format!(
                        "bad table name {name:?}: a table name is a snake_case identifier that is not a Rust keyword, \
                         like `#[model(table = \"blog_posts\")]`"
                    ),
                );
                return Ident::new("invalid_table", lit.span());
            }
            Ident::new(&name, lit.span())
        }
        None => Ident::new(
            &plural(&snake_case(&input.ident.to_string())),
            input.ident.span(),
        ),
    }
}

/// The model's key, from its `#[primary_key]` field or its composite `#[model(primary_key(..))]`;
/// `None` after reporting what is wrong.
fn resolve_key(
    cx: &Ctxt,
    input: &DeriveInput,
    fields: &[Field],
    composite: Option<(Vec<Ident>, Span)>,
) -> Option<Key> {
    let marked: Vec<(usize, PrimaryKey)> = fields
        .iter()
        .enumerate()
        .filter_map(|(i, f)| Some((i, f.column()?.primary_key?)))
        .collect();
    if let Some((names, span)) = composite {
        for (_, key) in &marked {
            cx.push(syn::Error::new(
                key.span,
                "the key is declared on the struct (`#[model(primary_key(..))]`): remove \
                 `#[primary_key]` from the field",
            ));
        }
        if names.len() < 2 {
            cx.push(syn::Error::new(
                span,
                "a composite key has two or more fields: for one, mark the field `#[primary_key]`",
            ));
            return None;
        }
        let mut indices = Vec::new();
        for name in &names {
            match fields.iter().position(|f| f.ident == name) {
                Some(i) if fields[i].column().is_some() => {
                    if indices.contains(&i) {
                        cx.error_spanned_by(name, format!("`{name}` is in the key twice"));
                    }
                    indices.push(i);
                }
                Some(_) => cx.error_spanned_by(
                    name,
                    format!("`{name}` is a relation field: a key is made of columns"),
                ),
                None => cx.error_spanned_by(
                    name,
                    format!(
                        "`{}` has no field `{name}` to be part of its key",
                        input.ident
                    ),
                ),
            }
        }
        return Some(Key {
            fields: indices,
            kind: KeyKind::Natural,
        });
    }
    match marked.as_slice() {
        [] => {
            cx.error_spanned_by(
                &input.ident,
                format!(
                    "model `{}` has no primary key: mark its key field `#[primary_key] pub id: Id`, \
                     or declare a composite key `#[model(primary_key(a, b))]`",
                    input.ident
                ),
            );
            None
        }
        [(i, key)] => {
            let ty = fields[*i].ty;
            let integer = ["i16", "i32", "i64"].iter().any(|name| is_named(ty, name));
            if let (Some(natural), false) = (key.natural, integer) {
                cx.push(syn::Error::new(
                    natural,
                    "`natural` is for an integer key the application gives: other keys always are",
                ));
            }
            let kind = if is_named(ty, "Id") {
                KeyKind::Uuid
            } else if integer && key.natural.is_none() {
                KeyKind::Assigned
            } else {
                KeyKind::Natural
            };
            Some(Key {
                fields: vec![*i],
                kind,
            })
        }
        [_, extra @ ..] => {
            for (i, _) in extra {
                cx.error_spanned_by(
                    fields[*i].ident,
                    "two primary keys: only one field can be `#[primary_key]`; for a composite \
                     key, name its fields on the struct: `#[model(primary_key(a, b))]`",
                );
            }
            None
        }
    }
}

pub fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// English plural of a snake_case name: `post` → `posts`, `category` → `categories`,
/// `address` → `addresses`.
fn plural(name: &str) -> String {
    if let Some(stem) = name.strip_suffix('y') {
        if !stem.ends_with(['a', 'e', 'i', 'o', 'u']) {
            return format!("{stem}ies");
        }
    }
    if name.ends_with(['s', 'x', 'z']) || name.ends_with("ch") || name.ends_with("sh") {
        return format!("{name}es");
    }
    format!("{name}s")
}

/// Why a type can never be a column, when that is clear from its form alone. Other types are
/// checked by the compiler against `FieldType`.
fn unsupported_type(ty: &Type) -> Option<String> {
    let ty = ungroup(ty);
    let shown = quote::quote!(#ty).to_string().replace(' ', "");
    match ty {
        Type::Reference(_) => Some(format!("`{shown}` is a reference; a model owns its data")),
        Type::Tuple(_) | Type::Array(_) | Type::Slice(_) => {
            Some(format!("`{shown}` spans several values"))
        }
        Type::Path(p) => {
            let last = p.path.segments.last()?;
            let name = last.ident.to_string();
            let collections = [
                "HashMap",
                "HashSet",
                "BTreeMap",
                "BTreeSet",
                "VecDeque",
                "LinkedList",
                "BinaryHeap",
            ];
            if collections.contains(&name.as_str()) {
                return Some(format!("`{shown}` is a collection"));
            }
            if name == "Vec" && !is_bytes(ty) {
                return Some(format!(
                    "`{shown}` is a collection (only `Vec<u8>` is stored, as bytes)"
                ));
            }
            if ["Box", "Rc", "Arc", "Cell", "RefCell"].contains(&name.as_str()) {
                return Some(format!(
                    "`{shown}` is a pointer or cell; store the value itself"
                ));
            }
            if name == "Option" {
                return option_of(ty).and_then(unsupported_type);
            }
            None
        }
        _ => Some(format!("`{shown}` is not a plain type")),
    }
}

/// The type inside any invisible groups and parentheses around it. A `$t:ty` fragment of a
/// `macro_rules!` macro reaches the derive as a `Type::Group`; `(T)` is `T`.
pub fn ungroup(mut ty: &Type) -> &Type {
    loop {
        ty = match ty {
            Type::Group(group) => &group.elem,
            Type::Paren(paren) => &paren.elem,
            _ => return ty,
        };
    }
}

/// Whether the type's path ends in `name` (`Id`, `datastore::Id`).
pub fn is_named(ty: &Type, name: &str) -> bool {
    matches!(ungroup(ty), Type::Path(p) if p.qself.is_none() && p.path.segments.last().is_some_and(|s| s.ident == name && s.arguments.is_none()))
}

/// `T` of `Option<T>`, ungrouped.
pub fn option_of(ty: &Type) -> Option<&Type> {
    argument_of(ty, "Option")
}

/// Whether the type is `Vec<u8>`.
fn is_bytes(ty: &Type) -> bool {
    argument_of(ty, "Vec").is_some_and(|t| is_named(t, "u8"))
}

/// `T` of `Name<T>` (a path ending in `name` with one type argument), ungrouped.
fn argument_of<'a>(ty: &'a Type, name: &str) -> Option<&'a Type> {
    let Type::Path(p) = ungroup(ty) else {
        return None;
    };
    let last = p.path.segments.last()?;
    if last.ident != name {
        return None;
    }
    match &last.arguments {
        syn::PathArguments::AngleBracketed(args) if args.args.len() == 1 => {
            match args.args.first()? {
                syn::GenericArgument::Type(t) => Some(ungroup(t)),
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_snake_case_plurals() {
        for (model, table) in [
            ("Post", "posts"),
            ("PostEditor", "post_editors"),
            ("Category", "categories"),
            ("Day", "days"),
            ("Address", "addresses"),
            ("Box", "boxes"),
            ("Order", "orders"),
        ] {
            assert_eq!(plural(&snake_case(model)), table);
        }
    }

    #[test]
    fn types_in_invisible_groups_and_parentheses_are_the_types_inside() {
        // `$t:ty` of a `macro_rules!` macro: a group without delimiters.
        let grouped =
            |t: proc_macro2::TokenStream| proc_macro2::Group::new(proc_macro2::Delimiter::None, t);
        let id = grouped(quote::quote!(Id));
        let bytes = grouped(quote::quote!(u8));
        let ty: Type = syn::parse2(quote::quote!(Option<(#id)>)).unwrap();
        assert!(is_named(option_of(&ty).unwrap(), "Id"));
        let vec = grouped(quote::quote!(Vec<#bytes>));
        let ty: Type = syn::parse2(quote::quote!(#vec)).unwrap();
        assert!(matches!(ty, Type::Group(_)));
        assert!(is_bytes(&ty));
        assert_eq!(unsupported_type(&ty), None);
    }
}
