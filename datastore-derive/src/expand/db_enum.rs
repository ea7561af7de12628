//! `#[derive(DbEnum)]`: the enum as text, in and out of the database.

use proc_macro2::TokenStream;
use quote::quote;

use crate::parse::DbEnum;

pub fn db_enum(input: &DbEnum) -> TokenStream {
    let ident = input.ident;
    let private = input.private();
    let idents: Vec<_> = input.variants.iter().map(|(v, _)| *v).collect();
    let names: Vec<_> = input.variants.iter().map(|(_, n)| n.as_str()).collect();
    // After the name read (`"Gone" is not a ..`); an argument of `format!`, not part of its
    // format string, since a variant's name may hold braces.
    let unknown = format!("is not a {ident}: expected one of {}", names.join(", "));
    quote! {
        #[allow(non_local_definitions, clippy::all)]
        const _: () = {
            use #private::diesel;
            use diesel::dsl::AsExprOf;
            use diesel::expression::AsExpression;
            use diesel::sql_types::{Nullable, Text};

            impl #private::DbEnum for #ident {
                const VARIANTS: &'static [&'static str] = &[#(#names),*];

                fn as_str(&self) -> &'static str {
                    match self {
                        #(Self::#idents => #names,)*
                    }
                }

                fn from_name(name: &str) -> ::core::option::Option<Self> {
                    match name {
                        #(#names => ::core::option::Option::Some(Self::#idents),)*
                        _ => ::core::option::Option::None,
                    }
                }
            }

            impl #private::FieldType for #ident {
                type SqlType = Text;
                const COLUMN: #private::schema::ColumnType = #private::schema::ColumnType::Enum(
                    #private::Cow::Borrowed(&[#(#private::Cow::Borrowed(#names)),*]),
                );
                #private::field_type_by_ref!(|name| {
                    <Self as #private::DbEnum>::from_name(&name).ok_or_else(|| ::std::format!("{:?} {}", name, #unknown))
                });
            }

            // Bound as its stored name, a `&'static str`, through Diesel's public API.
            impl AsExpression<Text> for #ident {
                type Expression = AsExprOf<&'static str, Text>;
                fn as_expression(self) -> Self::Expression {
                    <&'static str as AsExpression<Text>>::as_expression(#private::DbEnum::as_str(&self))
                }
            }

            impl<'a> AsExpression<Text> for &'a #ident {
                type Expression = AsExprOf<&'static str, Text>;
                fn as_expression(self) -> Self::Expression {
                    <&'static str as AsExpression<Text>>::as_expression(#private::DbEnum::as_str(self))
                }
            }

            impl AsExpression<Nullable<Text>> for #ident {
                type Expression = AsExprOf<&'static str, Nullable<Text>>;
                fn as_expression(self) -> Self::Expression {
                    <&'static str as AsExpression<Nullable<Text>>>::as_expression(#private::DbEnum::as_str(&self))
                }
            }

            impl<'a> AsExpression<Nullable<Text>> for &'a #ident {
                type Expression = AsExprOf<&'static str, Nullable<Text>>;
                fn as_expression(self) -> Self::Expression {
                    <&'static str as AsExpression<Nullable<Text>>>::as_expression(#private::DbEnum::as_str(self))
                }
            }

            impl<__DB> diesel::serialize::ToSql<Text, __DB> for #ident
            where
                __DB: diesel::backend::Backend,
                str: diesel::serialize::ToSql<Text, __DB>,
            {
                fn to_sql<'b>(&'b self, out: &mut diesel::serialize::Output<'b, '_, __DB>) -> diesel::serialize::Result {
                    <str as diesel::serialize::ToSql<Text, __DB>>::to_sql(#private::DbEnum::as_str(self), out)
                }
            }

            impl<__DB> diesel::deserialize::FromSql<Text, __DB> for #ident
            where
                __DB: diesel::backend::Backend,
                ::std::string::String: diesel::deserialize::FromSql<Text, __DB>,
            {
                fn from_sql(value: <__DB as diesel::backend::Backend>::RawValue<'_>) -> diesel::deserialize::Result<Self> {
                    let name = <::std::string::String as diesel::deserialize::FromSql<Text, __DB>>::from_sql(value)?;
                    <Self as #private::DbEnum>::from_name(&name)
                        .ok_or_else(|| ::std::format!("{:?} {}", name, #unknown).into())
                }
            }

            impl<__DB> diesel::deserialize::Queryable<Text, __DB> for #ident
            where
                __DB: diesel::backend::Backend,
                Self: diesel::deserialize::FromSql<Text, __DB>,
            {
                type Row = Self;
                fn build(row: Self) -> diesel::deserialize::Result<Self> {
                    ::core::result::Result::Ok(row)
                }
            }
        };
    }
}
