//! `#[derive(Record)]`, re-exported as `server::db::Record` and in `server::prelude`.
//!
//! A row type of `server::db::query` is decoded by three drivers: sqlx's SQLite and
//! PostgreSQL rows (pooled connections), and rusqlite's rows (the SQLite writer, which
//! runs its statements on the caller's thread). The derive writes all three decoders
//! from one struct of named fields, each field read from the column of its name.

use proc_macro::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput, Fields, parse_macro_input};

/// Decodes a struct with named fields from a row of either engine: each field from the
/// column of the same name, as a type both engines know (`i64`, `f64`, `bool`,
/// `String`, `Vec<u8>`, `Option` of these).
#[proc_macro_derive(Record)]
pub fn derive_record(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

fn expand(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let name = &input.ident;
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &input.generics,
            "#[derive(Record)] takes a struct without generic parameters",
        ));
    }
    let fields = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(fields) => &fields.named,
            _ => {
                return Err(syn::Error::new_spanned(
                    name,
                    "#[derive(Record)] takes a struct with named fields (one per column)",
                ));
            }
        },
        _ => {
            return Err(syn::Error::new_spanned(
                name,
                "#[derive(Record)] takes a struct with named fields (one per column)",
            ));
        }
    };
    let idents: Vec<_> = fields.iter().filter_map(|f| f.ident.as_ref()).collect();
    let columns: Vec<String> = idents
        .iter()
        .map(|i| i.to_string().trim_start_matches("r#").to_string())
        .collect();
    let private = quote!(::server::db::__private);
    let sqlx_row = |row: proc_macro2::TokenStream| {
        quote! {
            impl<'r> #private::sqlx::FromRow<'r, #row> for #name {
                fn from_row(row: &'r #row) -> ::std::result::Result<Self, #private::sqlx::Error> {
                    use #private::sqlx::Row as _;
                    ::std::result::Result::Ok(Self {
                        #(#idents: row.try_get(#columns)?,)*
                    })
                }
            }
        }
    };
    let sqlite = sqlx_row(quote!(#private::sqlx::sqlite::SqliteRow));
    let postgres = sqlx_row(quote!(#private::sqlx::postgres::PgRow));
    Ok(quote! {
        #sqlite
        #postgres
        impl ::server::db::Record for #name {
            fn from_rusqlite_row(
                row: &#private::rusqlite::Row<'_>,
            ) -> ::std::result::Result<Self, #private::sqlx::Error> {
                ::std::result::Result::Ok(Self {
                    #(#idents: #private::column(row, #columns)?,)*
                })
            }
        }
    })
}
