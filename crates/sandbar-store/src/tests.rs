use std::collections::BTreeMap;

use sandbar_core::{
    DesiredState, LaunchedProcess, Sandbox, SandboxResources, SandboxState, VolumeMount,
    VolumeState,
};
use uuid::Uuid;

use crate::{SandboxChange, SandboxFilter, SortField, SortOrder, Store, StoreError};

fn sandbox(org: Uuid, name: &str, labels: &[(&str, &str)]) -> Sandbox {
    let now = sandbar_core::time::now();
    Sandbox {
        id: Uuid::new_v4(),
        organization_id: org,
        name: name.into(),
        user: "daytona".into(),
        env: BTreeMap::from([("FOO".to_string(), "bar".to_string())]),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        public: false,
        network_block_all: false,
        network_allow_list: None,
        target: "local".into(),
        resources: SandboxResources::default(),
        snapshot: "sandbar-default".into(),
        state: SandboxState::Started,
        desired_state: DesiredState::Started,
        error_reason: None,
        state_reason: None,
        state_changed_at: now,
        auto_stop_interval: 15,
        auto_archive_interval: 10080,
        auto_delete_interval: -1,
        volumes: vec![],
        created_at: now,
        updated_at: now,
        last_activity_at: now,
        launched: Some(LaunchedProcess {
            pid: 42,
            start_time: u64::from(u32::MAX) + 7,
        }),
        preview_token: "tok".into(),
    }
}

async fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    (dir, store)
}

#[tokio::test]
async fn keys_authenticate_only_their_organization_until_revoked() {
    let (_dir, store) = open().await;
    let org = store.ensure_default_org().await.unwrap();
    assert_eq!(store.ensure_default_org().await.unwrap().id, org.id);
    let (key, plaintext) = store.create_key(org.id, "admin").await.unwrap();
    assert!(plaintext.starts_with("sb_"));
    assert!(plaintext.starts_with(&key.prefix));
    assert_eq!(store.authenticate(&plaintext).await.unwrap(), Some(org.id));
    assert_eq!(store.authenticate("sb_wrong").await.unwrap(), None);
    let fixed = store.register_key(org.id, "env", "test").await.unwrap();
    assert_eq!(
        store.register_key(org.id, "env", "test").await.unwrap().id,
        fixed.id
    );
    assert_eq!(store.list_keys(org.id).await.unwrap().len(), 2);
    assert!(store.revoke_key(org.id, key.id).await.unwrap());
    assert!(!store.revoke_key(org.id, key.id).await.unwrap());
    assert_eq!(store.authenticate(&plaintext).await.unwrap(), None);
    assert_eq!(store.authenticate("test").await.unwrap(), Some(org.id));
}

#[tokio::test]
async fn sandboxes_round_trip_and_names_conflict_per_organization() {
    let (dir, store) = open().await;
    let org = store.ensure_default_org().await.unwrap();
    let other = store.create_organization("other").await.unwrap();
    let mut sb = sandbox(org.id, "my sandbox/x", &[("app", "seed")]);
    sb.volumes = vec![VolumeMount {
        volume_id: Uuid::new_v4(),
        mount_path: "/workspace".into(),
        subpath: None,
    }];
    store.insert_sandbox(&sb).await.unwrap();
    let conflict = store
        .insert_sandbox(&sandbox(org.id, "my sandbox/x", &[]))
        .await;
    assert!(matches!(conflict, Err(StoreError::NameConflict { .. })));
    store
        .insert_sandbox(&sandbox(other.id, "my sandbox/x", &[]))
        .await
        .unwrap();

    assert_eq!(
        store
            .find_sandbox(org.id, "my sandbox/x")
            .await
            .unwrap()
            .as_ref(),
        Some(&sb)
    );
    assert_eq!(
        store
            .find_sandbox(org.id, &sb.id.to_string())
            .await
            .unwrap()
            .as_ref(),
        Some(&sb)
    );
    assert_eq!(
        store
            .find_sandbox(other.id, &sb.id.to_string())
            .await
            .unwrap(),
        None
    );
    assert!(store.volume_in_use(sb.volumes[0].volume_id).await.unwrap());

    let updated = store
        .update_sandbox(
            sb.id,
            SandboxChange::State {
                state: SandboxState::Error,
                desired_state: DesiredState::Started,
                error_reason: Some("boom".into()),
                reason: Some("out of memory".into()),
                launched: None,
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.state_reason.as_deref(), Some("out of memory"));
    assert_eq!(updated.state, SandboxState::Error);
    assert_eq!(updated.launched, None);
    store.close().await;

    // Durable across a reopen.
    let store = Store::open(dir.path()).await.unwrap();
    let again = store.get_sandbox(sb.id).await.unwrap().unwrap();
    assert_eq!(again.error_reason.as_deref(), Some("boom"));
    assert!(store.delete_sandbox(sb.id).await.unwrap());
    assert_eq!(store.get_sandbox(sb.id).await.unwrap(), None);
}

#[tokio::test]
async fn list_filters_and_paginates() {
    let (_dir, store) = open().await;
    let org = store.ensure_default_org().await.unwrap();
    for i in 0..5 {
        let labels: &[(&str, &str)] = if i % 2 == 0 {
            &[("app", "seed"), ("a b", "c/d")]
        } else {
            &[("app", "other")]
        };
        let mut sb = sandbox(org.id, &format!("sb-{i}"), labels);
        sb.resources.cpu = i + 1;
        store.insert_sandbox(&sb).await.unwrap();
    }
    let mut gone = sandbox(org.id, "gone", &[]);
    gone.state = SandboxState::Destroyed;
    store.insert_sandbox(&gone).await.unwrap();

    let all = store
        .list_sandboxes(
            org.id,
            &SandboxFilter {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(all.items.len(), 5);
    assert_eq!(all.next_cursor, None);

    let labelled = SandboxFilter {
        labels: BTreeMap::from([("a b".to_string(), "c/d".to_string())]),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(
        store
            .list_sandboxes(org.id, &labelled)
            .await
            .unwrap()
            .items
            .len(),
        3
    );

    for (sort, order) in [
        (SortField::CreatedAt, SortOrder::Desc),
        (SortField::Cpu, SortOrder::Asc),
        (SortField::Name, SortOrder::Desc),
    ] {
        let mut filter = SandboxFilter {
            limit: 2,
            sort,
            order,
            ..Default::default()
        };
        let mut seen = Vec::new();
        loop {
            let page = store.list_sandboxes(org.id, &filter).await.unwrap();
            seen.extend(page.items.iter().map(|s| s.name.clone()));
            match page.next_cursor {
                Some(cursor) => filter.cursor = Some(cursor),
                None => break,
            }
        }
        assert_eq!(seen.len(), 5, "{sort:?}");
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 5);
        if sort == SortField::Cpu {
            assert_eq!(seen, ["sb-0", "sb-1", "sb-2", "sb-3", "sb-4"]);
        }
    }

    let prefix = SandboxFilter {
        name_prefix: Some("sb-1".into()),
        min_cpu: Some(2),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(
        store
            .list_sandboxes(org.id, &prefix)
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let destroyed = SandboxFilter {
        states: vec![SandboxState::Destroyed],
        limit: 10,
        ..Default::default()
    };
    assert_eq!(
        store
            .list_sandboxes(org.id, &destroyed)
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let bad = SandboxFilter {
        cursor: Some("zz".into()),
        limit: 10,
        ..Default::default()
    };
    assert!(matches!(
        store.list_sandboxes(org.id, &bad).await,
        Err(StoreError::InvalidCursor)
    ));
}

#[tokio::test]
async fn volumes_and_snapshots() {
    let (_dir, store) = open().await;
    let org = store.ensure_default_org().await.unwrap();
    let vol = store
        .create_volume(org.id, "seed-vol", VolumeState::Ready)
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_volume(org.id, "seed-vol", VolumeState::Ready)
            .await,
        Err(StoreError::NameConflict { .. })
    ));
    assert_eq!(
        store
            .find_volume(org.id, "seed-vol")
            .await
            .unwrap()
            .unwrap()
            .id,
        vol.id
    );
    assert_eq!(
        store
            .find_volume(org.id, &vol.id.to_string())
            .await
            .unwrap()
            .unwrap()
            .name,
        "seed-vol"
    );
    assert_eq!(store.list_volumes(org.id).await.unwrap().len(), 1);
    assert!(!store.volume_in_use(vol.id).await.unwrap());
    assert!(store.delete_volume(org.id, vol.id).await.unwrap());
    assert_eq!(store.get_volume(org.id, vol.id).await.unwrap(), None);

    let snap = store
        .ensure_snapshot("sandbar-default", Some("debian:bookworm"))
        .await
        .unwrap();
    assert_eq!(
        store
            .ensure_snapshot("sandbar-default", None)
            .await
            .unwrap()
            .id,
        snap.id
    );
    assert_eq!(
        store
            .find_snapshot("debian:bookworm")
            .await
            .unwrap()
            .unwrap()
            .id,
        snap.id
    );
    let (items, total) = store.list_snapshots(1, 10).await.unwrap();
    assert_eq!((items.len(), total), (1, 1));
}
