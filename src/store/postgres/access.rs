//! Groups and permissions in PostgreSQL.

use super::{execute, fetch, found, map_err, query, sql, PgStore};
use crate::auth::{Group, Permission};
use crate::store::rows::{self, one, Columns, PERMISSION_MEMBERS, PERMISSION_SELECT};
use crate::store::sql::{Arg, Sql};
use crate::store::{AccessStore, Result, StoreResultExt, Unique};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

/// Permissions matching `q` (over `permissions p`), with their users and groups.
async fn load_permissions<C: GenericClient>(c: &C, mut q: Sql) -> Result<Vec<Permission>> {
    q.push(" order by p.name, p.id");
    let mut perms = fetch(c, &q, rows::permission).await?;
    let ids: Vec<i64> = perms.iter().map(|p| p.id).collect();
    for (table, column, users) in PERMISSION_MEMBERS {
        let mut q = sql(&format!(
            "select permission_id, {column} as member from {table} where permission_id in "
        ));
        q.ints(ids.iter().copied()).push(" order by member");
        let pairs = fetch(c, &q, |r| Ok((r.int("permission_id")?, r.int("member")?))).await?;
        rows::attach_members(&mut perms, pairs, users);
    }
    Ok(perms)
}

/// Writes a permission's users and groups (after clearing the old ones).
async fn write_members<C: GenericClient>(c: &C, p: &Permission) -> Result<()> {
    for (table, column, users) in PERMISSION_MEMBERS {
        let mut q = sql(&format!("delete from {table} where permission_id = "));
        q.bind(p.id);
        execute(c, &q).await?;
        let members = rows::members(p, users);
        if members.is_empty() {
            continue;
        }
        let mut q = sql(&format!("insert into {table} (permission_id, {column}) select "));
        q.bind(p.id)
            .push("::bigint, m from unnest(")
            .bind(Arg::IntSet(members.to_vec()))
            .push("::bigint[]) m on conflict do nothing");
        execute(c, &q).await?;
    }
    Ok(())
}

#[async_trait]
impl AccessStore for PgStore {
    async fn create_group(&self, name: &str, description: &str) -> Result<Group> {
        let mut q = sql("insert into groups (name, description) values ");
        q.list([name, description]).push(" returning id");
        let id = self.value(&q).await.on_unique(Unique::GROUP_NAME)?;
        Ok(Group {
            id,
            name: name.to_string(),
            description: description.to_string(),
        })
    }

    async fn groups(&self) -> Result<Vec<Group>> {
        self.read(&sql("select * from groups order by name, id"), rows::group)
            .await
    }

    async fn group(&self, id: i64) -> Result<Group> {
        let mut q = sql("select * from groups where id = ");
        q.bind(id);
        one(self.read(&q, rows::group).await?)
    }

    async fn update_group(&self, group: &Group) -> Result<()> {
        let mut q = sql("update groups set name = ");
        q.bind(&group.name)
            .push(", description = ")
            .bind(&group.description)
            .push(" where id = ")
            .bind(group.id);
        found(self.exec(&q).await.on_unique(Unique::GROUP_NAME)?)
    }

    async fn delete_group(&self, id: i64) -> Result<()> {
        let mut q = sql("delete from groups where id = ");
        q.bind(id);
        found(self.exec(&q).await?)
    }

    async fn user_groups(&self, user_ids: &[i64]) -> Result<Vec<(i64, i64)>> {
        let mut q = sql("select user_id, group_id from user_groups where user_id in ");
        q.ints(user_ids.iter().copied()).push(" order by user_id, group_id");
        self.read(&q, |r| Ok((r.int("user_id")?, r.int("group_id")?))).await
    }

    async fn set_user_groups(&self, user_id: i64, group_ids: &[i64]) -> Result<()> {
        let mut clear = sql("delete from user_groups where user_id = ");
        clear.bind(user_id);
        let mut add = sql("insert into user_groups (user_id, group_id) select ");
        add.bind(user_id)
            .push("::bigint, g from unnest(")
            .bind(Arg::IntSet(group_ids.to_vec()))
            .push("::bigint[]) g on conflict do nothing");
        self.in_tx(move |tx| {
            Box::pin(async move {
                execute(tx, &clear).await?;
                execute(tx, &add).await.map(|_| ())
            })
        })
        .await
    }

    async fn create_permission(&self, permission: &Permission, now: DateTime<Utc>) -> Result<Permission> {
        let mut p = permission.clone();
        let (types, actions) = rows::permission_args(&p)?;
        let mut q = sql("insert into permissions (name, description, enabled, object_types, actions, created_at, updated_at) values ");
        q.list([
            Arg::from(&p.name),
            Arg::from(&p.description),
            Arg::Bool(p.enabled),
            types,
            actions,
            Arg::from(now),
            Arg::from(now),
        ])
        .push(" returning id");
        let mut with_id = p.clone();
        p.id = self
            .in_tx(move |tx| {
                Box::pin(async move {
                    let rows = query(tx, &q).await?;
                    with_id.id = one(rows)?.try_get(0).map_err(map_err)?;
                    write_members(tx, &with_id).await?;
                    Ok(with_id.id)
                })
            })
            .await
            .on_unique(Unique::PERMISSION_NAME)?;
        (p.created, p.last_updated) = (now, now);
        Ok(p)
    }

    async fn permissions(&self) -> Result<Vec<Permission>> {
        let c = self.client().await?;
        load_permissions(&c, sql(PERMISSION_SELECT)).await
    }

    async fn permission(&self, id: i64) -> Result<Permission> {
        let mut q = sql(PERMISSION_SELECT);
        q.push(" where p.id = ").bind(id);
        let c = self.client().await?;
        one(load_permissions(&c, q).await?)
    }

    async fn update_permission(&self, permission: &Permission, now: DateTime<Utc>) -> Result<Permission> {
        let mut p = permission.clone();
        let (types, actions) = rows::permission_args(&p)?;
        let mut q = sql("update permissions set name = ");
        q.bind(&p.name)
            .push(", description = ")
            .bind(&p.description)
            .push(", enabled = ")
            .bind(p.enabled)
            .push(", object_types = ")
            .bind(types)
            .push(", actions = ")
            .bind(actions)
            .push(", updated_at = ")
            .bind(now)
            .push(" where id = ")
            .bind(p.id);
        let written = p.clone();
        self.in_tx(move |tx| {
            Box::pin(async move {
                found(execute(tx, &q).await?)?;
                write_members(tx, &written).await
            })
        })
        .await
        .on_unique(Unique::PERMISSION_NAME)?;
        p.last_updated = now;
        Ok(p)
    }

    async fn delete_permission(&self, id: i64) -> Result<()> {
        let mut q = sql("delete from permissions where id = ");
        q.bind(id);
        found(self.exec(&q).await?)
    }

    async fn permissions_of_user(&self, user_id: i64) -> Result<Vec<Permission>> {
        let mut q = sql(PERMISSION_SELECT);
        q.push(" where p.id in (select permission_id from permission_users where user_id = ")
            .bind(user_id)
            .push(" union select pg.permission_id from permission_groups pg join user_groups ug on ug.group_id = pg.group_id where ug.user_id = ")
            .bind(user_id)
            .push(")");
        let c = self.client().await?;
        load_permissions(&c, q).await
    }
}
