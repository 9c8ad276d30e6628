//! SQL errors: a Postgres SQLSTATE and a message that points at the problem.

/// SQLSTATE codes Sluice answers with (Postgres' meanings).
pub mod sqlstate {
    pub const SYNTAX_ERROR: &str = "42601";
    pub const UNDEFINED_COLUMN: &str = "42703";
    pub const UNDEFINED_TABLE: &str = "42P01";
    pub const UNDEFINED_FUNCTION: &str = "42883";
    pub const DUPLICATE_TABLE: &str = "42P07";
    pub const DATATYPE_MISMATCH: &str = "42804";
    pub const INVALID_PARAMETER_VALUE: &str = "22023";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    pub const GROUPING_ERROR: &str = "42803";
    pub const AMBIGUOUS_COLUMN: &str = "42702";
    pub const DUPLICATE_COLUMN: &str = "42701";
    pub const DUPLICATE_OBJECT: &str = "42710";
    pub const WRONG_OBJECT_TYPE: &str = "42809";
    pub const INVALID_SQL_STATEMENT_NAME: &str = "26000";
    pub const INVALID_CURSOR_NAME: &str = "34000";
    pub const NOT_NULL_VIOLATION: &str = "23502";
    pub const INVALID_TEXT_REPRESENTATION: &str = "22P02";
    pub const NUMERIC_VALUE_OUT_OF_RANGE: &str = "22003";
    pub const DEPENDENT_OBJECTS_STILL_EXIST: &str = "2BP01";
    pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
    pub const INTERNAL_ERROR: &str = "XX000";
    pub const IO_ERROR: &str = "58030";
    pub const QUERY_CANCELED: &str = "57014";
    pub const OBJECT_IN_USE: &str = "55006";
    pub const OBJECT_NOT_IN_PREREQUISITE_STATE: &str = "55000";
    pub const PROTOCOL_VIOLATION: &str = "08P01";
}

/// A SQL error as Postgres clients show it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SqlError {
    pub code: &'static str,
    pub message: String,
}

impl SqlError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        SqlError { code, message: message.into() }
    }

    pub fn syntax(message: impl Into<String>) -> Self {
        Self::new(sqlstate::SYNTAX_ERROR, message)
    }

    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(sqlstate::FEATURE_NOT_SUPPORTED, message)
    }

    pub fn mismatch(message: impl Into<String>) -> Self {
        Self::new(sqlstate::DATATYPE_MISMATCH, message)
    }
}

impl From<crate::server::native::protocol::ApiError> for SqlError {
    fn from(e: crate::server::native::protocol::ApiError) -> Self {
        use crate::server::native::protocol::ErrorCode as C;
        let code = match e.code {
            C::UnknownTopic => sqlstate::UNDEFINED_TABLE,
            C::TopicExists => sqlstate::DUPLICATE_TABLE,
            C::InvalidConfig | C::InvalidBatch | C::InvalidRecord => sqlstate::INVALID_PARAMETER_VALUE,
            C::ReadOnly | C::Corrupt | C::Io => sqlstate::IO_ERROR,
            C::ShuttingDown => sqlstate::QUERY_CANCELED,
            _ => sqlstate::INTERNAL_ERROR,
        };
        SqlError::new(code, e.message)
    }
}
