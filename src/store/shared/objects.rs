//! Objects' reads and the change log, for every backend (object writes are each backend's).

use crate::changes::{Change, ChangeFilter};
use crate::objects::query::ObjectQuery;
use crate::objects::{Obj, ObjectRead};
use crate::page::Page;
use crate::store::exec::Exec;
use crate::store::rows::{self, OBJECT_SELECT};
use crate::store::statements;
use crate::store::{ObjectStore, Result};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

#[async_trait]
impl<E: Exec> ObjectRead for E {
    async fn list_objects(&self, ty: &str, query: &ObjectQuery, limit: i64, offset: i64) -> Result<Page<Obj>> {
        self.page(
            statements::objects_page(self.dialect(), ty, query, limit, offset),
            rows::obj,
        )
        .await
    }

    async fn get_objects(&self, ty: &str, ids: &[i64]) -> Result<Vec<Obj>> {
        let mut q = self.sql(OBJECT_SELECT);
        q.push(" where o.type = ")
            .bind(ty)
            .push(" and o.id in ")
            .ints(ids.iter().copied())
            .push(" order by o.id");
        self.rows(q, rows::obj).await
    }
}

#[async_trait]
impl<E: Exec> ObjectStore for E {
    async fn object_changes(&self, filter: &ChangeFilter, limit: i64, offset: i64) -> Result<Page<Change>> {
        self.page(
            statements::changes_page(self.dialect(), filter, limit, offset),
            rows::change,
        )
        .await
    }

    async fn purge_changes(&self, before: DateTime<Utc>, limit: i64) -> Result<u64> {
        self.exec(statements::purge_changes(self.dialect(), before, limit))
            .await
    }
}
