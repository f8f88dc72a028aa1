//! Sessions, users, tokens, groups and permissions.

use crate::*;

pub(crate) async fn sessions(store: &dyn Store) {
    let bob = store.create_user("bob", "hash-b", false, t0()).await.unwrap();
    let alice = store.create_user("alice", "hash-a", false, t0()).await.unwrap();
    for s in [
        session("b1", bob.id, t0() + secs(60)),
        session("b2", bob.id, t0() + secs(10)),
        session("a1", alice.id, t0() + secs(60)),
    ] {
        store.create_session(&s).await.unwrap();
    }
    assert!(matches!(
        store.create_session(&session("b1", bob.id, t0())).await,
        Err(StoreError::Unique(_))
    ));
    let (found, user) = store.session("b1").await.unwrap();
    assert_eq!((found, user), (session("b1", bob.id, t0() + secs(60)), bob.clone()));
    assert!(matches!(store.session("nope").await, Err(StoreError::NotFound)));

    store.touch_session("b1", t0() + secs(120)).await.unwrap();
    assert_eq!(store.session("b1").await.unwrap().0.expires, t0() + secs(120));
    assert!(matches!(
        store.touch_session("nope", t0()).await,
        Err(StoreError::NotFound)
    ));

    // Expired before t0 + 30 s: b2 only.
    assert_eq!(store.purge_sessions(t0() + secs(30), 100).await.unwrap(), 1);
    assert!(matches!(store.session("b2").await, Err(StoreError::NotFound)));

    // Every session of a user but one; then a user's deletion ends theirs.
    store
        .create_session(&session("b3", bob.id, t0() + secs(60)))
        .await
        .unwrap();
    assert_eq!(store.delete_user_sessions(bob.id, Some("b1")).await.unwrap(), 1);
    assert!(store.session("b1").await.is_ok());
    store.delete_session("b1").await.unwrap();
    store.delete_session("b1").await.unwrap();
    assert!(matches!(store.session("b1").await, Err(StoreError::NotFound)));
    store.delete_user(alice.id).await.unwrap();
    assert!(matches!(store.session("a1").await, Err(StoreError::NotFound)));
}

/// Ids given before a type is readied are never given again after, and readying twice changes
/// nothing.
pub(crate) async fn ids_continue_when_types_are_readied(store: &dyn Store) {
    let next = |ty: &'static str| in_write_tx(store, move |tx| Box::pin(async move { Ok(tx.next_id(ty).await?) }));
    assert_eq!(next("dcim.site").await.unwrap(), 1);
    assert_eq!(next("dcim.site").await.unwrap(), 2);
    store.prepare_object_types(&["dcim.site", "dcim.region"]).await.unwrap();
    store.prepare_object_types(&["dcim.site", "dcim.region"]).await.unwrap();
    assert_eq!(next("dcim.site").await.unwrap(), 3);
    assert_eq!(next("dcim.region").await.unwrap(), 1);
    // A rollback may leave a gap, never a repeat.
    let _: Result<(), WriteError> = in_write_tx(store, |tx| {
        Box::pin(async move {
            tx.next_id("dcim.site").await?;
            Err(WriteError::Conflict("rolled back".into()))
        })
    })
    .await;
    assert!(next("dcim.site").await.unwrap() >= 4);
}

pub(crate) async fn users_and_tokens(store: &dyn Store) {
    assert_eq!(store.user_count().await.unwrap(), 0);
    let bob = store.create_user("bob", "hash-b", false, t0()).await.unwrap();
    let alice = store.create_user("alice", "hash-a", true, t0()).await.unwrap();
    assert_eq!(
        (bob.username.as_str(), bob.is_superuser, bob.created),
        ("bob", false, t0())
    );
    assert!(matches!(
        store.create_user("bob", "x", false, t0()).await,
        Err(StoreError::Unique(u)) if u == Unique::USERNAME
    ));
    assert_eq!(store.user_count().await.unwrap(), 2);
    assert_eq!(store.user(alice.id).await.unwrap(), alice);
    assert_eq!(store.user_by_name("bob").await.unwrap().id, bob.id);
    assert!(matches!(store.user_by_name("carol").await, Err(StoreError::NotFound)));
    let names: Vec<String> = store.users().await.unwrap().into_iter().map(|u| u.username).collect();
    assert_eq!(names, ["alice", "bob"]);

    let mut renamed = bob.clone();
    renamed.username = "robert".into();
    renamed.is_superuser = true;
    store.update_user(&renamed).await.unwrap();
    assert_eq!(store.user(bob.id).await.unwrap(), renamed);
    renamed.username = "alice".into();
    assert!(matches!(store.update_user(&renamed).await, Err(StoreError::Unique(u)) if u == Unique::USERNAME));
    let mut ghost = alice.clone();
    ghost.id = 999;
    assert!(matches!(store.update_user(&ghost).await, Err(StoreError::NotFound)));

    let t1 = store.create_token(bob.id, "key-1", true, "first", t0()).await.unwrap();
    let t2 = store.create_token(bob.id, "key-2", false, "", t0()).await.unwrap();
    let t3 = store.create_token(alice.id, "key-3", true, "", t0()).await.unwrap();
    assert!(matches!(
        store.create_token(alice.id, "key-1", true, "", t0()).await,
        Err(StoreError::Unique(u)) if u == Unique::TOKEN_KEY
    ));
    assert_eq!((t1.write_enabled, t1.description.as_str()), (true, "first"));
    let (found, owner) = store.token_by_hash("key-2").await.unwrap();
    assert_eq!((found.id, found.write_enabled, owner.id), (t2.id, false, bob.id));
    assert!(matches!(store.token_by_hash("nope").await, Err(StoreError::NotFound)));
    assert_eq!(store.token(t3.id).await.unwrap().1.username, "alice");
    let all: Vec<i64> = store.tokens(None).await.unwrap().iter().map(|(t, _)| t.id).collect();
    assert_eq!(all, [t1.id, t2.id, t3.id]);
    let bobs: Vec<i64> = store
        .tokens(Some(bob.id))
        .await
        .unwrap()
        .iter()
        .map(|(t, _)| t.id)
        .collect();
    assert_eq!(bobs, [t1.id, t2.id]);
    store.delete_token(t1.id).await.unwrap();
    assert!(matches!(store.delete_token(t1.id).await, Err(StoreError::NotFound)));
    store.delete_user(bob.id).await.unwrap();
    assert!(matches!(store.token(t2.id).await, Err(StoreError::NotFound)));
    assert!(matches!(store.delete_user(bob.id).await, Err(StoreError::NotFound)));
    assert_eq!(store.user_count().await.unwrap(), 1);
}

pub(crate) fn permission(
    name: &str,
    types: &[&str],
    actions: &[Action],
    users: Vec<i64>,
    groups: Vec<i64>,
) -> Permission {
    Permission {
        id: 0,
        name: name.into(),
        description: format!("{name} for the contract"),
        enabled: true,
        object_types: types.iter().map(|t| t.to_string()).collect(),
        actions: actions.to_vec(),
        users,
        groups,
        created: t0(),
        last_updated: t0(),
    }
}

/// Groups and permissions: names unique, members kept with them, a user's permissions found
/// directly and through groups.
pub(crate) async fn groups_and_permissions(store: &dyn Store) {
    let alice = store.create_user("alice", "h", false, t0()).await.unwrap();
    let bob = store.create_user("bob", "h", false, t0()).await.unwrap();
    let ops = store.create_group("ops", "Operators").await.unwrap();
    let dev = store.create_group("dev", "").await.unwrap();
    assert!(matches!(store.create_group("ops", "").await, Err(StoreError::Unique(u)) if u == Unique::GROUP_NAME));
    assert_eq!(
        store
            .groups()
            .await
            .unwrap()
            .iter()
            .map(|g| g.name.as_str())
            .collect::<Vec<_>>(),
        ["dev", "ops"]
    );
    assert_eq!(store.group(ops.id).await.unwrap(), ops);
    let mut renamed = dev.clone();
    renamed.name = "developers".into();
    store.update_group(&renamed).await.unwrap();
    assert_eq!(store.group(dev.id).await.unwrap().name, "developers");
    renamed.name = "ops".into();
    assert!(matches!(store.update_group(&renamed).await, Err(StoreError::Unique(_))));
    assert!(matches!(store.group(999).await, Err(StoreError::NotFound)));

    store.set_user_groups(bob.id, &[ops.id, dev.id]).await.unwrap();
    store.set_user_groups(bob.id, &[ops.id]).await.unwrap();
    assert!(matches!(
        store.set_user_groups(alice.id, &[999]).await,
        Err(StoreError::ForeignKey)
    ));
    assert_eq!(
        store.user_groups(&[alice.id, bob.id]).await.unwrap(),
        vec![(bob.id, ops.id)]
    );

    let sites = permission(
        "sites",
        &["dcim.site"],
        &[Action::View, Action::Add],
        vec![alice.id],
        vec![],
    );
    let hooks = permission("hooks", &["extras.webhook"], &[Action::Change], vec![], vec![ops.id]);
    let sites = store.create_permission(&sites, t0()).await.unwrap();
    let hooks = store.create_permission(&hooks, t0()).await.unwrap();
    assert!(sites.id > 0 && hooks.id > sites.id);
    assert!(
        matches!(store.create_permission(&hooks, t0()).await, Err(StoreError::Unique(u)) if u == Unique::PERMISSION_NAME)
    );
    let ghost = permission("ghost", &["dcim.site"], &[Action::View], vec![999], vec![]);
    assert!(matches!(
        store.create_permission(&ghost, t0()).await,
        Err(StoreError::ForeignKey)
    ));
    assert_eq!(
        store.permissions().await.unwrap(),
        vec![hooks.clone(), sites.clone()],
        "by name, every field"
    );
    assert_eq!(store.permission(sites.id).await.unwrap(), sites);
    assert_eq!(store.permissions_of_user(alice.id).await.unwrap(), vec![sites.clone()]);
    assert_eq!(
        store.permissions_of_user(bob.id).await.unwrap(),
        vec![hooks.clone()],
        "through the group"
    );

    let mut shared = sites.clone();
    shared.groups = vec![ops.id];
    shared.enabled = false;
    let later = t0() + secs(3);
    let saved = store.update_permission(&shared, later).await.unwrap();
    assert_eq!(saved.last_updated, later);
    assert_eq!(store.permissions_of_user(bob.id).await.unwrap().len(), 2);
    store.delete_group(ops.id).await.unwrap();
    assert!(store.permissions_of_user(bob.id).await.unwrap().is_empty());
    assert!(store.permission(sites.id).await.unwrap().groups.is_empty());
    store.delete_user(alice.id).await.unwrap();
    assert!(store.permission(sites.id).await.unwrap().users.is_empty());
    store.delete_permission(sites.id).await.unwrap();
    assert!(matches!(
        store.delete_permission(sites.id).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.permissions().await.unwrap().len(), 1);
}
