//! SQL: statements over the Postgres wire protocol and HTTP, planned into views
//! (dataflows) and queries over views.
//!
//! Owns: value types and expressions (`types`, `expr`), errors with SQLSTATEs (`error`),
//! parsing (`parse`), name resolution and lowering (`scope`, `lower`), and planning of
//! views (`plan_view`), queries over views (`plan_query`) and every other statement
//! (`statement`). Executing a plan is the server's job (`server/sql.rs`).

pub mod error;
pub mod expr;
pub mod lower;
pub mod parse;
pub mod plan_query;
pub mod plan_view;
pub mod scope;
pub mod statement;
pub mod types;
