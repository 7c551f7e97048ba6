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
        effects: Vec::new(),
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

async fn pipelined_appends_commit_in_order_and_never_leave_a_hole(db: Db) {
    let journal = Journal::spawn(db.store.clone(), metrics::Histogram::noop());
    let epoch = db.store.claim_room("r").await.unwrap();
    // Submitted back to back, committed in order.
    let mut pending = Vec::new();
    for n in 1..=20 {
        pending.push(journal.submit(request("r", epoch, n..=n)).await.unwrap());
    }
    for p in pending {
        p.await.unwrap();
    }
    // An append that does not follow the head writes nothing, and neither does the one after.
    let skipped = journal.submit(request("r", epoch, 22..=22)).await.unwrap();
    let after = journal.submit(request("r", epoch, 23..=23)).await.unwrap();
    assert!(matches!(skipped.await, Err(StoreError::OutOfOrder)));
    assert!(matches!(after.await, Err(StoreError::OutOfOrder)));
    // A snapshot ahead of the journal is refused too.
    assert!(
        db.store
            .put_snapshot("r", epoch, 25, "{}", 0)
            .await
            .is_err()
    );
    journal.append(request("r", epoch, 21..=21)).await.unwrap();
    let seqs: Vec<i64> = db
        .store
        .journal_since("r", 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(seqs, (1..=21).collect::<Vec<i64>>());
    // A new owner declares the head it loaded and continues from it.
    let next = db.store.claim_room("r").await.unwrap();
    db.store.set_room_head("r", next, 21).await.unwrap();
    journal.append(request("r", next, 22..=22)).await.unwrap();
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
    req.effects = vec![SideEffect::UpsertMember {
        workspace: ws.id,
        user: other.id,
        role: Role::Viewer,
        by: owner.id,
    }];
    journal.append(req).await.unwrap();
    assert_eq!(
        db.store.membership(ws.id, other.id).await.unwrap(),
        Some(Role::Viewer)
    );
    // A fenced append applies no side effect either.
    db.store.claim_room(&key).await.unwrap();
    let mut stale = request(&key, epoch, 2..=2);
    stale.effects = vec![SideEffect::RemoveMember {
        workspace: ws.id,
        user: other.id,
    }];
    assert!(journal.append(stale).await.is_err());
    assert_eq!(
        db.store.membership(ws.id, other.id).await.unwrap(),
        Some(Role::Viewer)
    );
    drop(journal);
    db.drop_db().await;
}

async fn user(db: &Db, email: &str) -> signaling::UserId {
    db.store
        .create_user(persistence::NewUser {
            email: email.into(),
            name: "N".into(),
            password_hash: "x".into(),
        })
        .await
        .unwrap()
        .id
}

fn session(creator: signaling::UserId, title: &str) -> persistence::SessionRecord {
    persistence::SessionRecord {
        id: signaling::SessionId::new(),
        created_by: Some(creator),
        title: title.into(),
        description: "about it".into(),
        status: signaling::session::SessionStatus::Scheduled,
        scheduled_at: Some(chrono::DateTime::from_timestamp(1_900_000_000, 0).unwrap()),
        capacity: 250,
        created_at: chrono::DateTime::from_timestamp(1_800_000_000, 123_456_000).unwrap(),
    }
}

async fn sessions_list_newest_first_a_page_at_a_time_for_their_staff(db: Db) {
    use signaling::session::Staff;
    let (ada, bob) = (
        user(&db, "ada@example.com").await,
        user(&db, "bob@example.com").await,
    );
    let mut made = Vec::new();
    for n in 0..5 {
        let s = session(ada, &format!("talk {n}"));
        db.store.create_session(&s).await.unwrap();
        made.push(s);
    }
    db.store
        .create_session(&session(bob, "bob's"))
        .await
        .unwrap();
    assert_eq!(
        db.store.session(made[0].id).await.unwrap().as_ref(),
        Some(&made[0])
    );
    assert_eq!(
        db.store.session(signaling::SessionId::new()).await.unwrap(),
        None
    );

    let first = db.store.sessions_for_user(ada, None, 2).await.unwrap();
    let titles = |page: &[(persistence::SessionRecord, Staff)]| {
        page.iter()
            .map(|(s, _)| s.title.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(titles(&first), ["talk 4", "talk 3"]);
    assert!(first.iter().all(|(_, role)| *role == Staff::Presenter));
    let second = db
        .store
        .sessions_for_user(ada, Some(first[1].0.id), 2)
        .await
        .unwrap();
    assert_eq!(titles(&second), ["talk 2", "talk 1"]);
    let last = db
        .store
        .sessions_for_user(ada, Some(second[1].0.id), 2)
        .await
        .unwrap();
    assert_eq!(titles(&last), ["talk 0"]);
    assert_eq!(
        titles(&db.store.sessions_for_user(bob, None, 10).await.unwrap()),
        ["bob's"]
    );
    assert_eq!(
        db.store.session_staff(made[0].id, ada).await.unwrap(),
        Some(Staff::Presenter)
    );
    assert_eq!(db.store.session_staff(made[0].id, bob).await.unwrap(), None);
    db.drop_db().await;
}

async fn attendees_keep_only_what_they_gave_and_go_with_their_session(db: Db) {
    let ada = user(&db, "ada@example.com").await;
    let s = session(ada, "talk");
    db.store.create_session(&s).await.unwrap();
    let at = chrono::DateTime::from_timestamp(1_800_000_100, 0).unwrap();
    let guest = persistence::AttendeeRecord {
        id: signaling::AttendeeId::new(),
        session: s.id,
        user: None,
        display_name: "Guest Grace".into(),
        email: None,
        joined_at: at,
        left_at: None,
    };
    let member = persistence::AttendeeRecord {
        id: signaling::AttendeeId::new(),
        user: Some(ada),
        display_name: "Ada".into(),
        email: Some("ada@example.com".into()),
        joined_at: at + chrono::Duration::seconds(1),
        ..guest.clone()
    };
    db.store.add_attendee(&guest).await.unwrap();
    db.store.add_attendee(&member).await.unwrap();
    let left = at + chrono::Duration::seconds(60);
    let leave = |at| persistence::SessionFact::Left {
        attendee: guest.id,
        at,
    };
    db.store.record_facts(&[leave(left)]).await.unwrap();
    // The first leave time stays.
    db.store
        .record_facts(&[leave(left + chrono::Duration::seconds(5))])
        .await
        .unwrap();
    let stored = db.store.attendees(s.id).await.unwrap();
    let gone = persistence::AttendeeRecord {
        left_at: Some(left),
        ..guest.clone()
    };
    assert_eq!(stored, vec![gone, member]);
    let orphan = persistence::AttendeeRecord {
        id: signaling::AttendeeId::new(),
        session: signaling::SessionId::new(),
        ..guest.clone()
    };
    assert!(
        db.store.add_attendee(&orphan).await.is_err(),
        "no attendee of a session that does not exist"
    );
    let bob = user(&db, "bob@example.com").await;
    let bobs = persistence::AttendeeRecord {
        id: signaling::AttendeeId::new(),
        user: Some(bob),
        display_name: "Bob".into(),
        email: Some("bob@example.com".into()),
        ..guest.clone()
    };
    db.store.add_attendee(&bobs).await.unwrap();
    assert!(db.store.delete_user(bob).await.unwrap());
    let kept = db.store.attendees(s.id).await.unwrap();
    let after = kept.iter().find(|a| a.id == bobs.id).unwrap();
    assert_eq!(
        (
            after.user,
            after.display_name.as_str(),
            after.email.as_deref()
        ),
        (None, persistence::DELETED_ATTENDEE, None),
        "counted, but no longer who it was"
    );
    db.store.delete_session(s.id).await.unwrap();
    assert_eq!(db.store.session(s.id).await.unwrap(), None);
    assert!(db.store.attendees(s.id).await.unwrap().is_empty());
    assert!(
        db.store
            .sessions_for_user(ada, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
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
    pipelined_appends_commit_in_order_and_never_leave_a_hole,
    concurrent_appends_from_many_rooms_all_commit,
    snapshots_trim_the_journal_but_keep_the_retained_tail,
    membership_side_effects_commit_with_their_event,
    sessions_list_newest_first_a_page_at_a_time_for_their_staff,
    attendees_keep_only_what_they_gave_and_go_with_their_session
);
