//! The change log: one record per create, update or delete of an object (NetBox's
//! ObjectChange), with who made it, in which request, and the object before and after in
//! NetBox's minimal form.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// What a change did to its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeAction {
    Create,
    Update,
    Delete,
}

impl ChangeAction {
    pub const ALL: [ChangeAction; 3] = [ChangeAction::Create, ChangeAction::Update, ChangeAction::Delete];

    /// The value NetBox stores and filters by: `create`, `update`, `delete`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeAction::Create => "create",
            ChangeAction::Update => "update",
            ChangeAction::Delete => "delete",
        }
    }

    /// NetBox's label: `Created`, `Updated`, `Deleted`.
    pub fn label(self) -> &'static str {
        match self {
            ChangeAction::Create => "Created",
            ChangeAction::Update => "Updated",
            ChangeAction::Delete => "Deleted",
        }
    }

    pub fn parse(s: &str) -> Option<ChangeAction> {
        ChangeAction::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// One recorded change.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// 0 until stored.
    pub id: i64,
    pub time: DateTime<Utc>,
    pub user_id: Option<i64>,
    pub user_name: String,
    pub request_id: String,
    pub action: ChangeAction,
    pub object_type: String,
    pub object_id: i64,
    pub object_repr: String,
    pub prechange_data: Value,
    pub postchange_data: Value,
}

/// Filters of the change log. Empty lists do not filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChangeFilter {
    pub id: Vec<i64>,
    pub request_id: Vec<String>,
    pub action: Vec<ChangeAction>,
    pub object_type: Vec<String>,
    pub object_id: Vec<i64>,
    pub user_id: Vec<i64>,
    pub user_name: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip() {
        for a in ChangeAction::ALL {
            assert_eq!(ChangeAction::parse(a.as_str()), Some(a));
        }
        assert_eq!(ChangeAction::parse("move"), None);
        assert_eq!(ChangeAction::Delete.label(), "Deleted");
    }
}
