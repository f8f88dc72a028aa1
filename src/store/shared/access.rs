//! Groups and permissions, for every backend.

use super::users::{delete_by_id, insert_returning_id};
use crate::auth::{Group, Permission};
use crate::store::exec::{found, Exec, Tx};
use crate::store::rows::{self, one, PERMISSION_MEMBERS, PERMISSION_SELECT};
use crate::store::sql::{Arg, Sql};
use crate::store::{AccessStore, Result, StoreResultExt, Unique};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// Members written per statement.
const MEMBERS_PER_INSERT: usize = 400;

/// Permissions matching `q` (over `permissions p`), with their users and groups.
async fn load_permissions<E: Exec>(e: &E, mut q: Sql) -> Result<Vec<Permission>> {
    q.push(" order by p.name, p.id");
    let mut perms = e.rows(q, rows::permission).await?;
    let ids: Vec<i64> = perms.iter().map(|p| p.id).collect();
    if ids.is_empty() {
        return Ok(perms);
    }
    for (table, column, users) in PERMISSION_MEMBERS {
        let mut q = e.sql(&format!(
            "select permission_id, {column} as member from {table} where permission_id in "
        ));
        q.ints(ids.iter().copied()).push(" order by member");
        let pairs = e.rows(q, |r| Ok((r.int("permission_id")?, r.int("member")?))).await?;
        rows::attach_members(&mut perms, pairs, users);
    }
    Ok(perms)
}

/// Writes rows `(owner, member)` of `table`, after clearing the owner's old ones.
async fn replace_members(
    tx: &mut dyn Tx,
    table: &str,
    columns: (&str, &str),
    owner: i64,
    members: &[i64],
) -> Result<()> {
    let mut clear = tx.sql(&format!("delete from {table} where {} = ", columns.0));
    clear.bind(owner);
    tx.exec(&clear).await?;
    for chunk in members.chunks(MEMBERS_PER_INSERT) {
        let mut q = tx.sql(&format!("insert into {table} ({}, {}) values ", columns.0, columns.1));
        for (i, m) in chunk.iter().enumerate() {
            if i > 0 {
                q.push(", ");
            }
            q.list([owner, *m]);
        }
        q.push(" on conflict do nothing");
        tx.exec(&q).await?;
    }
    Ok(())
}

/// Writes a permission's users and groups.
async fn write_members(tx: &mut dyn Tx, p: &Permission) -> Result<()> {
    for (table, column, users) in PERMISSION_MEMBERS {
        let members = rows::members(p, users);
        replace_members(tx, table, ("permission_id", column), p.id, members).await?;
    }
    Ok(())
}

#[async_trait]
impl<E: Exec> AccessStore for E {
    async fn create_group(&self, name: &str, description: &str) -> Result<Group> {
        let mut q = self.sql("insert into groups (name, description) values ");
        q.list([name, description]).push(" returning id");
        let id = insert_returning_id(self, q).await.on_unique(Unique::GROUP_NAME)?;
        Ok(Group {
            id,
            name: name.to_string(),
            description: description.to_string(),
        })
    }

    async fn groups(&self) -> Result<Vec<Group>> {
        self.rows(self.sql("select * from groups order by name, id"), rows::group)
            .await
    }

    async fn group(&self, id: i64) -> Result<Group> {
        let mut q = self.sql("select * from groups where id = ");
        q.bind(id);
        one(self.rows(q, rows::group).await?)
    }

    async fn update_group(&self, group: &Group) -> Result<()> {
        let mut q = self.sql("update groups set name = ");
        q.bind(&group.name)
            .push(", description = ")
            .bind(&group.description)
            .push(" where id = ")
            .bind(group.id);
        found(self.exec(q).await.on_unique(Unique::GROUP_NAME)?)
    }

    async fn delete_group(&self, id: i64) -> Result<()> {
        delete_by_id(self, "groups", id).await
    }

    async fn user_groups(&self, user_ids: &[i64]) -> Result<Vec<(i64, i64)>> {
        let mut q = self.sql("select user_id, group_id from user_groups where user_id in ");
        q.ints(user_ids.iter().copied()).push(" order by user_id, group_id");
        self.rows(q, |r| Ok((r.int("user_id")?, r.int("group_id")?))).await
    }

    async fn set_user_groups(&self, user_id: i64, group_ids: &[i64]) -> Result<()> {
        let groups = Arc::new(group_ids.to_vec());
        self.transact(Arc::new(move |tx| {
            let groups = groups.clone();
            Box::pin(async move { replace_members(tx, "user_groups", ("user_id", "group_id"), user_id, &groups).await })
        }))
        .await
    }

    async fn create_permission(&self, permission: &Permission, now: DateTime<Utc>) -> Result<Permission> {
        let (types, actions) = rows::permission_args(permission)?;
        let mut q = self.sql(
            "insert into permissions (name, description, enabled, object_types, actions, created_at, updated_at) values ",
        );
        q.list([
            Arg::from(&permission.name),
            Arg::from(&permission.description),
            Arg::Bool(permission.enabled),
            types,
            actions,
            Arg::from(now),
            Arg::from(now),
        ])
        .push(" returning id");
        let (q, p) = (Arc::new(q), Arc::new(permission.clone()));
        let id = self
            .transact(Arc::new(move |tx| {
                let (q, p) = (q.clone(), p.clone());
                Box::pin(async move {
                    let mut with_id = (*p).clone();
                    with_id.id = tx.int(&q, "id").await?;
                    write_members(tx, &with_id).await?;
                    Ok(with_id.id)
                })
            }))
            .await
            .on_unique(Unique::PERMISSION_NAME)?;
        let mut p = permission.clone();
        (p.id, p.created, p.last_updated) = (id, now, now);
        Ok(p)
    }

    async fn permissions(&self) -> Result<Vec<Permission>> {
        load_permissions(self, self.sql(PERMISSION_SELECT)).await
    }

    async fn permission(&self, id: i64) -> Result<Permission> {
        let mut q = self.sql(PERMISSION_SELECT);
        q.push(" where p.id = ").bind(id);
        one(load_permissions(self, q).await?)
    }

    async fn update_permission(&self, permission: &Permission, now: DateTime<Utc>) -> Result<Permission> {
        let (types, actions) = rows::permission_args(permission)?;
        let mut q = self.sql("update permissions set name = ");
        q.bind(&permission.name)
            .push(", description = ")
            .bind(&permission.description)
            .push(", enabled = ")
            .bind(permission.enabled)
            .push(", object_types = ")
            .bind(types)
            .push(", actions = ")
            .bind(actions)
            .push(", updated_at = ")
            .bind(now)
            .push(" where id = ")
            .bind(permission.id);
        let (q, p) = (Arc::new(q), Arc::new(permission.clone()));
        self.transact(Arc::new(move |tx| {
            let (q, p) = (q.clone(), p.clone());
            Box::pin(async move {
                found(tx.exec(&q).await?)?;
                write_members(tx, &p).await
            })
        }))
        .await
        .on_unique(Unique::PERMISSION_NAME)?;
        let mut p = permission.clone();
        p.last_updated = now;
        Ok(p)
    }

    async fn delete_permission(&self, id: i64) -> Result<()> {
        delete_by_id(self, "permissions", id).await
    }

    async fn permissions_of_user(&self, user_id: i64) -> Result<Vec<Permission>> {
        let mut q = self.sql(PERMISSION_SELECT);
        q.push(" where p.id in (select permission_id from permission_users where user_id = ")
            .bind(user_id)
            .push(" union select pg.permission_id from permission_groups pg join user_groups ug on ug.group_id = pg.group_id where ug.user_id = ")
            .bind(user_id)
            .push(")");
        load_permissions(self, q).await
    }
}
