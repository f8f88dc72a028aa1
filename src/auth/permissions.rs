//! Permissions as NetBox has them: a permission grants actions (view, add, change, delete) on
//! object types to users and groups; a user may do what any enabled permission of theirs, or
//! of one of their groups, grants. Superusers may do everything.

use super::User;
use chrono::{DateTime, Utc};
use std::collections::HashSet;

/// What a request does to a type of object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    View,
    Add,
    Change,
    Delete,
}

impl Action {
    pub const ALL: [Action; 4] = [Action::View, Action::Add, Action::Change, Action::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::View => "view",
            Action::Add => "add",
            Action::Change => "change",
            Action::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// The object types of what is not inventory: permissions name them as they name `dcim.site`.
pub mod types {
    pub const WEBHOOK: &str = "extras.webhook";
    pub const EVENT_RULE: &str = "extras.eventrule";
    /// The delivery log and the queue's hand controls.
    pub const DELIVERY: &str = "extras.delivery";
    /// Events: posting them, and seeing the object data they carry.
    pub const EVENT: &str = "extras.event";
    pub const OBJECT_CHANGE: &str = "core.objectchange";
    pub const USER: &str = "users.user";
    pub const GROUP: &str = "users.group";
    pub const TOKEN: &str = "users.token";
    pub const PERMISSION: &str = "users.objectpermission";

    /// Every one of them.
    pub const ALL: [&str; 9] = [
        WEBHOOK,
        EVENT_RULE,
        DELIVERY,
        EVENT,
        OBJECT_CHANGE,
        USER,
        GROUP,
        TOKEN,
        PERMISSION,
    ];
}

/// A group of users.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub id: i64,
    pub name: String,
    pub description: String,
}

/// One permission (NetBox's ObjectPermission, without constraints).
#[derive(Debug, Clone, PartialEq)]
pub struct Permission {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub enabled: bool,
    pub object_types: Vec<String>,
    pub actions: Vec<Action>,
    /// Users it is given to.
    pub users: Vec<i64>,
    /// Groups it is given to.
    pub groups: Vec<i64>,
    pub created: DateTime<Utc>,
    pub last_updated: DateTime<Utc>,
}

/// Who is asking, and what they may do.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user: User,
    grants: HashSet<(String, Action)>,
}

impl Actor {
    /// `user` with the permissions that apply to them (their own and their groups').
    pub fn new(user: User, permissions: &[Permission]) -> Actor {
        let grants = permissions
            .iter()
            .filter(|p| p.enabled)
            .flat_map(|p| {
                p.object_types
                    .iter()
                    .flat_map(move |t| p.actions.iter().map(move |a| (t.clone(), *a)))
            })
            .collect();
        Actor { user, grants }
    }

    /// Herald itself, or its operator at the command line: may do everything.
    pub fn system() -> Actor {
        Actor {
            user: User {
                id: 0,
                username: "herald".into(),
                password_hash: String::new(),
                is_superuser: true,
                created: Utc::now(),
            },
            grants: HashSet::new(),
        }
    }

    /// Whether the actor may `action` objects of `object_type`.
    pub fn can(&self, object_type: &str, action: Action) -> bool {
        self.user.is_superuser || self.grants.contains(&(object_type.to_string(), action))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(superuser: bool) -> User {
        User {
            id: 1,
            username: "u".into(),
            password_hash: String::new(),
            is_superuser: superuser,
            created: Utc::now(),
        }
    }

    fn perm(enabled: bool, types: &[&str], actions: &[Action]) -> Permission {
        Permission {
            id: 1,
            name: "p".into(),
            description: String::new(),
            enabled,
            object_types: types.iter().map(|t| t.to_string()).collect(),
            actions: actions.to_vec(),
            users: vec![1],
            groups: vec![],
            created: Utc::now(),
            last_updated: Utc::now(),
        }
    }

    #[test]
    fn grants_are_per_type_and_action() {
        let perms = [
            perm(true, &["dcim.site", types::WEBHOOK], &[Action::View, Action::Change]),
            perm(false, &["dcim.device"], &[Action::Delete]),
        ];
        let a = Actor::new(user(false), &perms);
        assert!(a.can("dcim.site", Action::View));
        assert!(a.can(types::WEBHOOK, Action::Change));
        assert!(!a.can("dcim.site", Action::Delete));
        assert!(
            !a.can("dcim.device", Action::Delete),
            "disabled permissions grant nothing"
        );
        assert!(Actor::new(user(true), &[]).can("dcim.device", Action::Delete));
        assert_eq!(Action::parse("change"), Some(Action::Change));
    }
}
