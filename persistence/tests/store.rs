//! The store against real SQLite and PostgreSQL: fencing, group commit, journal reads,
//! snapshots and trimming. PostgreSQL comes from `HUB_TEST_PG_URL` (see `scripts/test.sh`).

use persistence::{AppendRequest, Journal, JournalEntry, SideEffect, Store, StoreError};
use signaling::workspace::Role;

struct Db {
    store: Store,
    _dir: tempfile::TempDir,
    pg: Option<(String, String)>,
}

impl Db {
    async fn sqlite() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("t.db").display()))
            .await
            .unwrap();
        Db {
            store,
            _dir: dir,
            pg: None,
        }
    }

    async fn postgres() -> Db {
        let admin = std::env::var("HUB_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("hub_store_{}", uuid::Uuid::new_v4().simple());
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
            .await
            .unwrap_or_else(|e| {
                panic!("PostgreSQL at {admin} is not reachable ({e}); run scripts/test.sh")
            });
        sqlx::Executor::execute(
            &mut conn,
            sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")),
        )
        .await
        .unwrap();
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(b, _)| b)
            .to_owned();
        let store = Store::connect(&format!("{base}/{name}")).await.unwrap();
        Db {
            store,
            _dir: tempfile::tempdir().unwrap(),
            pg: Some((admin, name)),
        }
    }

    async fn drop_db(self) {
        self.store.close().await;
        if let Some((admin, name)) = self.pg {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
                .await
                .unwrap();
            let _ = sqlx::Executor::execute(
                &mut conn,
                sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")),
            )
            .await;
        }
    }
}

fn entry(seq: u64) -> JournalEntry {
    JournalEntry {
        seq,
        event: format!(r#"{{"type":"test","n":{seq}}}"#),
    }
}

fn request(room: &str, epoch: u64, seqs: std::ops::RangeInclusive<u64>) -> AppendRequest {
    AppendRequest {
        room: room.into(),
        epoch,
        entries: seqs.map(entry).collect(),
        effect: None,
    }
}

async fn a_stale_epoch_cannot_write(db: Db) {
    let journal = Journal::spawn(db.store.clone(), metrics::Histogram::noop());
    let old = db.store.claim_room("r").await.unwrap();
    journal.append(request("r", old, 1..=2)).await.unwrap();
    let new = db.store.claim_room("r").await.unwrap();
    assert!(new > old);
    assert!(matches!(
        journal.append(request("r", old, 3..=3)).await,
        Err(StoreError::StaleEpoch)
    ));
    assert!(matches!(
        db.store.put_snapshot("r", old, 2, "{}", 0).await,
        Err(StoreError::StaleEpoch)
    ));
    journal.append(request("r", new, 3..=3)).await.unwrap();
    let seqs: Vec<i64> = db
        .store
        .journal_since("r", 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
    drop(journal);
    db.drop_db().await;
}

async fn concurrent_appends_from_many_rooms_all_commit(db: Db) {
    let journal = Journal::spawn(db.store.clone(), metrics::Histogram::noop());
    let mut rooms = Vec::new();
    for i in 0..40 {
        let key = format!("room-{i}");
        rooms.push((key.clone(), db.store.claim_room(&key).await.unwrap()));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (key, epoch) in rooms.clone() {
        let j = journal.clone();
        tasks.spawn(async move {
            for seq in 1..=5 {
                j.append(request(&key, epoch, seq..=seq)).await.unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    for (key, _) in &rooms {
        assert_eq!(
            db.store.journal_since(key, 0, 100).await.unwrap().len(),
            5,
            "{key}"
        );
    }
    // A duplicate offset fails only its own request.
    let (key, epoch) = &rooms[0];
    let dup = journal.append(request(key, *epoch, 5..=5));
    let fine = journal.append(request(&rooms[1].0, rooms[1].1, 6..=6));
    let (dup, fine) = tokio::join!(dup, fine);
    assert!(dup.is_err());
    fine.unwrap();
    drop(journal);
    db.drop_db().await;
}

async fn snapshots_trim_the_journal_but_keep_the_retained_tail(db: Db) {
    let journal = Journal::spawn(db.store.clone(), metrics::Histogram::noop());
    let epoch = db.store.claim_room("r").await.unwrap();
    journal.append(request("r", epoch, 1..=10)).await.unwrap();
    db.store
        .put_snapshot("r", epoch, 10, r#"{"s":10}"#, 3)
        .await
        .unwrap();
    let snap = db.store.snapshot("r").await.unwrap().unwrap();
    assert_eq!((snap.seq, snap.state.as_str()), (10, r#"{"s":10}"#));
    assert_eq!(db.store.journal_first("r").await.unwrap(), Some(8));
    let tail: Vec<i64> = db
        .store
        .journal_since("r", 7, 100)
        .await
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(tail, [8, 9, 10]);
    drop(journal);
    db.drop_db().await;
}

async fn membership_side_effects_commit_with_their_event(db: Db) {
    let journal = Journal::spawn(db.store.clone(), metrics::Histogram::noop());
    let owner = db
        .store
        .create_user(persistence::NewUser {
            email: "o@example.com".into(),
            name: "O".into(),
            password_hash: "x".into(),
        })
        .await
        .unwrap();
    let other = db
        .store
        .create_user(persistence::NewUser {
            email: "m@example.com".into(),
            name: "M".into(),
            password_hash: "x".into(),
        })
        .await
        .unwrap();
    let ws = db.store.create_workspace("W", owner.id).await.unwrap();
    let key = signaling::RoomKey::Workspace(ws.id).to_string();
    let epoch = db.store.claim_room(&key).await.unwrap();
    let mut req = request(&key, epoch, 1..=1);
    req.effect = Some(SideEffect::UpsertMember {
        workspace: ws.id,
        user: other.id,
        role: Role::Viewer,
        by: owner.id,
    });
    journal.append(req).await.unwrap();
    assert_eq!(
        db.store.membership(ws.id, other.id).await.unwrap(),
        Some(Role::Viewer)
    );
    // A fenced append applies no side effect either.
    db.store.claim_room(&key).await.unwrap();
    let mut stale = request(&key, epoch, 2..=2);
    stale.effect = Some(SideEffect::RemoveMember {
        workspace: ws.id,
        user: other.id,
    });
    assert!(journal.append(stale).await.is_err());
    assert_eq!(
        db.store.membership(ws.id, other.id).await.unwrap(),
        Some(Role::Viewer)
    );
    drop(journal);
    db.drop_db().await;
}

macro_rules! both {
    ($($name:ident),*) => {
        mod sqlite { $( #[tokio::test] async fn $name() { super::$name(super::Db::sqlite().await).await } )* }
        mod postgres { $( #[tokio::test] async fn $name() { super::$name(super::Db::postgres().await).await } )* }
    };
}

both!(
    a_stale_epoch_cannot_write,
    concurrent_appends_from_many_rooms_all_commit,
    snapshots_trim_the_journal_but_keep_the_retained_tail,
    membership_side_effects_commit_with_their_event
);
