//! Deleting an object as Django does: what refers to it through a PROTECT key refuses the
//! delete, CASCADE keys go with it (each with its own change and event), SET_NULL keys and
//! tags are cleared without a change record.

use super::{Fail, Run};
use crate::catalog::{ObjectType, OnDelete};
use crate::changes::ChangeAction;
use crate::error::StoreError;
use crate::events::EventKind;
use crate::objects::view::{self, load_related, TAG_TYPE};
use crate::objects::{Lock, Obj, Referrer, TxLoader};
use serde_json::{json, Value};
use std::collections::HashSet;

/// How many protecting objects a refusal names.
const NAMED_DEPENDENTS: usize = 20;

/// What deleting one object takes with it.
#[derive(Default)]
struct Plan {
    /// Everything deleted, dependents before what they depend on.
    doomed: Vec<(String, i64)>,
    visited: HashSet<(String, i64)>,
    /// Objects outside the plan whose PROTECT keys point into it.
    protecting: Vec<Referrer>,
    /// Objects outside the plan whose SET_NULL keys (or tags) point into it.
    unlink: Vec<Referrer>,
}

impl Run<'_> {
    pub(super) async fn delete(&mut self, ty: &ObjectType, id: i64) -> Result<(), Fail> {
        let name = ty.name().to_string();
        self.tx.lock(&name, &[id], Lock::Update).await?;
        if self.tx.get(&name, &[id]).await?.is_empty() {
            // Already gone with something this request deleted (a bulk delete naming a parent
            // and its child): nothing more to do, as NetBox's bulk delete does.
            let key = (name, id);
            if self
                .index
                .get(&key)
                .is_some_and(|&i| self.touched[i].kind == EventKind::Deleted)
            {
                return Ok(());
            }
            return Err(Fail::Missing(id));
        }
        let plan = self.plan_delete(name, id).await?;
        if !plan.protecting.is_empty() {
            return Err(Fail::Conflict(self.refusal(&plan.protecting).await?));
        }
        // Views and snapshots first: dependents' views name what they belong to.
        let mut gone = Vec::with_capacity(plan.doomed.len());
        for (t, i) in &plan.doomed {
            let Some(dt) = self.catalog.get(t) else { continue };
            let Some(obj) = self.tx.get(t, &[*i]).await?.pop() else {
                continue;
            };
            let mut related = self.fresh_related();
            load_related(self.catalog, &mut TxLoader(&mut *self.tx), dt, &[&obj], &mut related).await?;
            let shown = view::view(self.catalog, dt, &obj, &related, false);
            let pre = view::snapshot(dt, &obj, &related);
            self.related = related;
            gone.push((dt, obj, shown, pre));
        }
        for r in &plan.unlink {
            self.unlink(r, &plan.visited).await?;
        }
        for (dt, obj, shown, pre) in gone {
            self.tx.remove(dt.name(), obj.id).await?;
            self.latest.remove(&(dt.name().to_string(), obj.id));
            self.record(dt, &obj, ChangeAction::Delete, pre.clone(), Value::Null)
                .await?;
            self.touch(dt, obj.id, EventKind::Deleted, pre, Value::Null, shown);
        }
        Ok(())
    }

    /// Walks what refers to `ty` `id`, depth first, following CASCADE keys.
    async fn plan_delete(&mut self, ty: String, id: i64) -> Result<Plan, StoreError> {
        let mut plan = Plan::default();
        let mut stack = vec![(ty, id, false)];
        while let Some((t, i, expanded)) = stack.pop() {
            if expanded {
                plan.doomed.push((t, i));
                continue;
            }
            if !plan.visited.insert((t.clone(), i)) {
                continue;
            }
            stack.push((t.clone(), i, true));
            // Locked first: nothing can start pointing at it while its referrers are read.
            self.tx.lock(&t, &[i], Lock::Update).await?;
            for r in self.tx.referrers(&t, i).await? {
                match self.on_delete(&r) {
                    OnDelete::Cascade => stack.push((r.object_type, r.id, false)),
                    OnDelete::Protect => plan.protecting.push(r),
                    OnDelete::SetNull => plan.unlink.push(r),
                }
            }
        }
        let inside = |r: &Referrer| plan.visited.contains(&(r.object_type.clone(), r.id));
        let (protecting, unlink) = (
            plan.protecting.iter().filter(|r| !inside(r)).cloned().collect(),
            plan.unlink.iter().filter(|r| !inside(r)).cloned().collect(),
        );
        plan.protecting = protecting;
        plan.unlink = unlink;
        Ok(plan)
    }

    /// The rule of the key `r` refers through (tags are unlinked).
    fn on_delete(&self, r: &Referrer) -> OnDelete {
        if r.field == "tags" {
            return OnDelete::SetNull;
        }
        self.catalog
            .get(&r.object_type)
            .and_then(|rt| rt.field(&r.field))
            .and_then(|f| f.on_delete)
            .unwrap_or(OnDelete::Protect)
    }

    /// NetBox's refusal, naming the first dependents.
    async fn refusal(&mut self, protecting: &[Referrer]) -> Result<String, StoreError> {
        let mut names = Vec::new();
        for r in protecting.iter().take(NAMED_DEPENDENTS) {
            let rt = self.catalog.get(&r.object_type);
            let shown = match (rt, self.tx.get(&r.object_type, &[r.id]).await?.pop()) {
                (Some(rt), Some(o)) => format!("{} {} (id {})", rt.verbose_name, self.display_of(rt, &o).await?, r.id),
                _ => format!("{} {}", r.object_type, r.id),
            };
            names.push(shown);
        }
        Ok(format!(
            "Unable to delete object. {} dependent objects were found: {}",
            protecting.len(),
            names.join(", ")
        ))
    }

    /// Clears the reference `r` makes into what is being deleted.
    async fn unlink(&mut self, r: &Referrer, deleted: &HashSet<(String, i64)>) -> Result<(), Fail> {
        let Some(rt) = self.catalog.get(&r.object_type) else {
            return Ok(());
        };
        let Some(mut obj): Option<Obj> = self.tx.get(&r.object_type, &[r.id]).await?.pop() else {
            return Ok(());
        };
        if r.field == "tags" {
            // A tag's deletion takes it off its objects without changing them, as NetBox's
            // does (the tagging rows go; the objects are not saved).
            let ids: Vec<i64> = obj
                .tag_ids()
                .into_iter()
                .filter(|i| !deleted.contains(&(TAG_TYPE.to_string(), *i)))
                .collect();
            obj.data.insert("tags".into(), json!(ids));
            return self.store(rt, &obj, false).await;
        }
        // A foreign key cleared by SET_NULL changes its object, as NetBox 4 saves it: a change
        // record and an `updated` event (a region's deletion updates its sites).
        let pre = self.snapshot(rt, &obj).await?;
        obj.data.insert(r.field.clone(), Value::Null);
        obj.last_updated = self.req.now;
        self.store(rt, &obj, false).await?;
        let post = self.snapshot(rt, &obj).await?;
        self.record(rt, &obj, ChangeAction::Update, pre.clone(), post.clone())
            .await?;
        self.touch(rt, obj.id, EventKind::Updated, pre, post, Value::Null);
        Ok(())
    }
}
