//! Groups and permissions in SQLite.

use super::{found, map_err, sql, Run, SqliteStore};
use crate::auth::{Group, Permission};
use crate::store::rows::{self, one, Columns, PERMISSION_MEMBERS, PERMISSION_SELECT};
use crate::store::{AccessStore, Result, StoreResultExt, Unique};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};

/// Permissions matching `where_` (over `permissions p`), with their users and groups.
fn load_permissions(conn: &Connection, mut q: super::Sql) -> Result<Vec<Permission>> {
    q.push(" order by p.name, p.id");
    let mut perms = q.rows(conn, |r| rows::permission(r))?;
    for (table, column, users) in PERMISSION_MEMBERS {
        let pairs = sql(&format!(
            "select permission_id, {column} as member from {table} order by member"
        ))
        .rows(conn, |r| Ok((r.int("permission_id")?, r.int("member")?)))?;
        rows::attach_members(&mut perms, pairs, users);
    }
    Ok(perms)
}

/// Writes a permission's users and groups (after clearing the old ones).
fn write_members(conn: &Connection, p: &Permission) -> Result<()> {
    for (table, column, users) in PERMISSION_MEMBERS {
        conn.execute(&format!("delete from {table} where permission_id = ?"), params![p.id])
            .map_err(map_err)?;
        let text = format!("insert or ignore into {table} (permission_id, {column}) values (?, ?)");
        let mut stmt = conn.prepare_cached(&text).map_err(map_err)?;
        for id in rows::members(p, users) {
            stmt.execute(params![p.id, id]).map_err(map_err)?;
        }
    }
    Ok(())
}

#[async_trait]
impl AccessStore for SqliteStore {
    async fn create_group(&self, name: &str, description: &str) -> Result<Group> {
        let (name, description) = (name.to_string(), description.to_string());
        self.write
            .run(move |c| {
                let id: i64 = c
                    .query_row(
                        "insert into groups (name, description) values (?, ?) returning id",
                        params![name, description],
                        |r| r.get(0),
                    )
                    .map_err(map_err)?;
                Ok(Group { id, name, description })
            })
            .await
            .on_unique(Unique::GROUP_NAME)
    }

    async fn groups(&self) -> Result<Vec<Group>> {
        self.read
            .run(|c| sql("select * from groups order by name, id").rows(c, |r| rows::group(r)))
            .await
    }

    async fn group(&self, id: i64) -> Result<Group> {
        self.read
            .run(move |c| {
                let mut q = sql("select * from groups where id = ");
                q.bind(id);
                one(q.rows(c, |r| rows::group(r))?)
            })
            .await
    }

    async fn update_group(&self, group: &Group) -> Result<()> {
        let g = group.clone();
        self.write
            .run(move |c| {
                found(
                    c.execute(
                        "update groups set name = ?, description = ? where id = ?",
                        params![g.name, g.description, g.id],
                    )
                    .map_err(map_err)?,
                )
            })
            .await
            .on_unique(Unique::GROUP_NAME)
    }

    async fn delete_group(&self, id: i64) -> Result<()> {
        self.write
            .run(move |c| {
                found(
                    c.execute("delete from groups where id = ?", params![id])
                        .map_err(map_err)?,
                )
            })
            .await
    }

    async fn user_groups(&self, user_ids: &[i64]) -> Result<Vec<(i64, i64)>> {
        let mut q = sql("select user_id, group_id from user_groups where user_id in ");
        q.ints(user_ids.iter().copied()).push(" order by user_id, group_id");
        self.read
            .run(move |c| q.rows(c, |r| Ok((r.int("user_id")?, r.int("group_id")?))))
            .await
    }

    async fn set_user_groups(&self, user_id: i64, group_ids: &[i64]) -> Result<()> {
        let groups = group_ids.to_vec();
        self.write_tx(move |c| {
            c.execute("delete from user_groups where user_id = ?", params![user_id])
                .map_err(map_err)?;
            let mut stmt = c
                .prepare_cached("insert or ignore into user_groups (user_id, group_id) values (?, ?)")
                .map_err(map_err)?;
            for g in groups {
                stmt.execute(params![user_id, g]).map_err(map_err)?;
            }
            Ok(())
        })
        .await
    }

    async fn create_permission(&self, permission: &Permission, now: DateTime<Utc>) -> Result<Permission> {
        let mut p = permission.clone();
        let (types, actions) = rows::permission_args(&p)?;
        let (types, actions) = (super::sql_value(&types), super::sql_value(&actions));
        self.write_tx(move |c| {
            p.id = c
                .query_row(
                    "insert into permissions (name, description, enabled, object_types, actions, created_at, updated_at) \
                     values (?, ?, ?, ?, ?, ?, ?) returning id",
                    params![p.name, p.description, p.enabled, types, actions, now.timestamp_micros(), now.timestamp_micros()],
                    |r| r.get(0),
                )
                .map_err(map_err)?;
            write_members(c, &p)?;
            (p.created, p.last_updated) = (now, now);
            Ok(p)
        })
        .await
        .on_unique(Unique::PERMISSION_NAME)
    }

    async fn permissions(&self) -> Result<Vec<Permission>> {
        self.read.run(|c| load_permissions(c, sql(PERMISSION_SELECT))).await
    }

    async fn permission(&self, id: i64) -> Result<Permission> {
        self.read
            .run(move |c| {
                let mut q = sql(PERMISSION_SELECT);
                q.push(" where p.id = ").bind(id);
                one(load_permissions(c, q)?)
            })
            .await
    }

    async fn update_permission(&self, permission: &Permission, now: DateTime<Utc>) -> Result<Permission> {
        let mut p = permission.clone();
        let (types, actions) = rows::permission_args(&p)?;
        let (types, actions) = (super::sql_value(&types), super::sql_value(&actions));
        self.write_tx(move |c| {
            found(
                c.execute(
                    "update permissions set name = ?, description = ?, enabled = ?, object_types = ?, actions = ?, \
                     updated_at = ? where id = ?",
                    params![
                        p.name,
                        p.description,
                        p.enabled,
                        types,
                        actions,
                        now.timestamp_micros(),
                        p.id
                    ],
                )
                .map_err(map_err)?,
            )?;
            write_members(c, &p)?;
            p.last_updated = now;
            Ok(p)
        })
        .await
        .on_unique(Unique::PERMISSION_NAME)
    }

    async fn delete_permission(&self, id: i64) -> Result<()> {
        self.write
            .run(move |c| {
                found(
                    c.execute("delete from permissions where id = ?", params![id])
                        .map_err(map_err)?,
                )
            })
            .await
    }

    async fn permissions_of_user(&self, user_id: i64) -> Result<Vec<Permission>> {
        let mut q = sql(PERMISSION_SELECT);
        q.push(" where p.id in (select permission_id from permission_users where user_id = ")
            .bind(user_id)
            .push(" union select pg.permission_id from permission_groups pg join user_groups ug on ug.group_id = pg.group_id where ug.user_id = ")
            .bind(user_id)
            .push(")");
        self.read.run(move |c| load_permissions(c, q)).await
    }
}
