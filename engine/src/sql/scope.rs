//! Name resolution: the columns an expression can see, by (optional) relation and name.

use super::error::{sqlstate, SqlError};
use super::types::DataType;

/// One visible column.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopeColumn {
    /// The relation it comes from (its alias, or its name), for `rel.col`.
    pub relation: Option<String>,
    pub name: String,
    pub ty: DataType,
}

/// The columns visible to an expression, in row order: column `i` of the scope is
/// column `i` of the row the expression will be evaluated over.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scope {
    pub columns: Vec<ScopeColumn>,
}

impl Scope {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, relation: Option<&str>, name: &str, ty: DataType) {
        self.columns.push(ScopeColumn { relation: relation.map(str::to_string), name: name.to_string(), ty });
    }

    pub fn len(&self) -> usize {
        self.columns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// Whether `relation` names a relation in scope.
    pub fn has_relation(&self, relation: &str) -> bool {
        self.columns.iter().any(|c| c.relation.as_deref() == Some(relation))
    }

    /// Finds a column: its index and type. Unknown and ambiguous names are errors that
    /// say which names exist.
    pub fn resolve(&self, relation: Option<&str>, name: &str) -> Result<(usize, DataType), SqlError> {
        let mut found = self
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.name == name && relation.is_none_or(|r| c.relation.as_deref() == Some(r)));
        let Some((i, c)) = found.next() else {
            let shown = match relation {
                Some(r) if !self.has_relation(r) => {
                    return Err(SqlError::new(
                        sqlstate::UNDEFINED_TABLE,
                        format!("missing FROM-clause entry for table \"{r}\""),
                    ))
                }
                Some(r) => format!("{r}.{name}"),
                None => name.to_string(),
            };
            let names: Vec<String> = self.columns.iter().map(|c| c.name.clone()).collect();
            return Err(SqlError::new(
                sqlstate::UNDEFINED_COLUMN,
                format!("column \"{shown}\" does not exist (columns: {})", names.join(", ")),
            ));
        };
        if found.next().is_some() {
            return Err(SqlError::new(
                sqlstate::AMBIGUOUS_COLUMN,
                format!("column reference \"{name}\" is ambiguous: qualify it with its table"),
            ));
        }
        Ok((i, c.ty))
    }
}
