//! Property tests of the workspace room's state machine ([`WorkspaceState`]).
//!
//! The unit tests in `state.rs` pin one rule each; these throw random *sequences* of commands at
//! the state, from owners, admins, members, viewers and strangers, many of them invalid, stale or
//! forbidden, and commit the accepted ones exactly as the actor does (decide, journal at the next
//! offset, apply). They check what the rest of the hub relies on whatever the clients send:
//!
//! - a refused command changes nothing; a stranger gets nothing accepted (and learns only that
//!   they are not a member); a viewer gets no task-changing event accepted;
//! - the journal's offsets grow by exactly one per accepted event;
//! - the workspace keeps an owner; every task has `completed == (status == Done)`, no assignee
//!   or a current member, and a version of 1 plus its accepted updates;
//! - replaying the journal (through JSON, as it is stored) onto the initial state, or onto a
//!   snapshot taken anywhere in the sequence, rebuilds the live state exactly. That is how the
//!   supervisor brings a crashed room back.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::Index;
use signaling::rank::Rank;
use signaling::rest::MAX_NAME_CHARS;
use signaling::server::Event;
use signaling::task::{
    MAX_DESCRIPTION_CHARS, MAX_TITLE_CHARS, Priority, Status, TaskChanges, TaskDraft,
};
use signaling::workspace::{Member, Role};
use signaling::{TaskId, UserId, WorkspaceId};
use uuid::Uuid;

use super::messages::RoomError;
use super::state::WorkspaceState;

/// How many people the scenarios know: user 0 owns the workspace at the start, users 1 to 4 may
/// or may not be members, and the last one is an outsider nobody ever adds.
const USERS: usize = 6;
/// The user who is never a member.
const OUTSIDER: usize = USERS - 1;
/// How many task ids clients pick their own ids from, so that they collide.
const POOLED_TASKS: usize = 3;

/// Person `i`, with a stable id so that a shrunk failure reads the same every run.
fn user(i: usize) -> UserId {
    UserId::from_uuid(Uuid::from_u128(i as u128 + 1))
}

/// A client-chosen task id; there are only [`POOLED_TASKS`] of them.
fn pooled_task(i: usize) -> TaskId {
    TaskId::from_uuid(Uuid::from_u128(0x7a5c_0000 + i as u128))
}

fn member(i: usize, role: Role) -> Member {
    Member {
        user_id: user(i),
        role,
        name: format!("user {i}"),
        email: format!("user{i}@example.com"),
    }
}

/// The clock of step `n`: deterministic, so replays compare equal.
fn clock(n: usize) -> DateTime<Utc> {
    let start = DateTime::from_timestamp(1_700_000_000, 0).expect("a valid timestamp");
    start + Duration::seconds(n as i64)
}

/// Which task a command names.
#[derive(Debug, Clone)]
enum TaskPick {
    /// One that exists now (if any does), picked among the live tasks by id.
    Existing(Index),
    /// A client-chosen id, which may or may not exist.
    Pooled(usize),
}

/// The version an update claims to be based on.
#[derive(Debug, Clone)]
enum Base {
    /// The task's current version.
    Current,
    /// A version this far from the current one (older when it can be, else newer).
    Stale(u64),
    /// No version: last writer wins.
    LastWriterWins,
}

/// Who sends a command.
#[derive(Debug, Clone)]
enum Actor {
    /// A current member (picked by user id), so that most commands get past the door.
    Member(Index),
    /// Person `i`, member or not.
    Anyone(usize),
}

/// A command and who sends it.
#[derive(Debug, Clone)]
enum Cmd {
    Create {
        by: Actor,
        draft: TaskDraft,
    },
    Update {
        by: Actor,
        task: TaskPick,
        base: Base,
        changes: TaskChanges,
    },
    Delete {
        by: Actor,
        task: TaskPick,
    },
    AddMember {
        by: Actor,
        user: usize,
        role: Role,
    },
    SetRole {
        by: Actor,
        user: usize,
        role: Role,
    },
    RemoveMember {
        by: Actor,
        user: usize,
    },
    Leave {
        by: Actor,
    },
    Rename {
        by: Actor,
        name: String,
    },
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![
        Just(Role::Owner),
        Just(Role::Admin),
        Just(Role::Member),
        Just(Role::Viewer),
    ]
}

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![
        Just(Status::Todo),
        Just(Status::InProgress),
        Just(Status::Done)
    ]
}

fn priority() -> impl Strategy<Value = Priority> {
    prop_oneof![
        Just(Priority::Low),
        Just(Priority::Medium),
        Just(Priority::High)
    ]
}

/// Mostly valid titles, sometimes empty, blank or too long.
fn title() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[a-z]{1,12}",
        1 => " [a-z]{1,8} ",
        1 => Just(String::new()),
        1 => "[ \t]{1,3}",
        1 => Just("t".repeat(MAX_TITLE_CHARS + 1)),
    ]
}

fn description() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[a-z ]{0,20}",
        1 => Just("d".repeat(MAX_DESCRIPTION_CHARS + 1)),
    ]
}

/// Small positions, so that they collide. The extremes have their own property below.
fn position() -> impl Strategy<Value = Rank> {
    (-3..10i64).prop_map(Rank::from_i64)
}

fn due_date() -> impl Strategy<Value = DateTime<Utc>> {
    (0..1000usize).prop_map(|days| clock(days * 86_400))
}

/// Anyone, the outsider included, as an assignee.
fn anyone() -> impl Strategy<Value = UserId> {
    (0..USERS).prop_map(user)
}

fn draft() -> impl Strategy<Value = TaskDraft> {
    (
        option::of((0..POOLED_TASKS).prop_map(pooled_task)),
        title(),
        option::of(description()),
        priority(),
        option::of(status()),
        any::<bool>(),
        option::of(position()),
        option::of(anyone()),
        option::of(due_date()),
    )
        .prop_map(
            |(id, title, description, priority, status, completed, position, assignee, due)| {
                TaskDraft {
                    id,
                    title,
                    description,
                    priority,
                    status,
                    completed,
                    position,
                    assignee,
                    due_date: due,
                    category_id: None,
                    tags: Vec::new(),
                    parent_id: None,
                    recurrence: None,
                }
            },
        )
}

/// Any mix of fields, `Some(None)` being an explicit `null` that clears.
fn changes() -> impl Strategy<Value = TaskChanges> {
    (
        option::of(title()),
        option::of(option::of(description())),
        option::of(any::<bool>()),
        option::of(priority()),
        option::of(status()),
        option::of(position()),
        option::of(option::of(anyone())),
        option::of(option::of(due_date())),
    )
        .prop_map(
            |(title, description, completed, priority, status, position, assignee, due)| {
                TaskChanges {
                    title,
                    description,
                    completed,
                    priority,
                    status,
                    position,
                    assignee,
                    due_date: due,
                    ..TaskChanges::default()
                }
            },
        )
}

fn task_pick() -> impl Strategy<Value = TaskPick> {
    prop_oneof![
        4 => any::<Index>().prop_map(TaskPick::Existing),
        1 => (0..POOLED_TASKS).prop_map(TaskPick::Pooled),
    ]
}

fn base() -> impl Strategy<Value = Base> {
    prop_oneof![
        3 => Just(Base::Current),
        1 => (1..3u64).prop_map(Base::Stale),
        2 => Just(Base::LastWriterWins),
    ]
}

fn workspace_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z ]{0,12}",
        1 => Just("n".repeat(MAX_NAME_CHARS + 1)),
    ]
}

fn actor() -> impl Strategy<Value = Actor> {
    prop_oneof![
        4 => any::<Index>().prop_map(Actor::Member),
        1 => (0..USERS).prop_map(Actor::Anyone),
    ]
}

fn cmd() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        4 => (actor(), draft()).prop_map(|(by, draft)| Cmd::Create { by, draft }),
        5 => (actor(), task_pick(), base(), changes())
            .prop_map(|(by, task, base, changes)| Cmd::Update { by, task, base, changes }),
        1 => (actor(), task_pick()).prop_map(|(by, task)| Cmd::Delete { by, task }),
        3 => (actor(), 0..OUTSIDER, role())
            .prop_map(|(by, user, role)| Cmd::AddMember { by, user, role }),
        2 => (actor(), 0..USERS, role())
            .prop_map(|(by, user, role)| Cmd::SetRole { by, user, role }),
        1 => (actor(), 0..USERS).prop_map(|(by, user)| Cmd::RemoveMember { by, user }),
        1 => actor().prop_map(|by| Cmd::Leave { by }),
        1 => (actor(), workspace_name()).prop_map(|(by, name)| Cmd::Rename { by, name }),
    ]
}

/// A starting membership, the commands, and where in them to take a snapshot.
#[derive(Debug, Clone)]
struct Scenario {
    /// Roles of users 1 to 4 at the start (`None`: not a member); user 0 is the owner.
    roles: Vec<Option<Role>>,
    cmds: Vec<Cmd>,
    /// The snapshot is taken before this command (or at the end).
    cut: Index,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        vec(option::of(role()), OUTSIDER - 1),
        vec(cmd(), 0..=60),
        any::<Index>(),
    )
        .prop_map(|(roles, cmds, cut)| Scenario { roles, cmds, cut })
}

impl Scenario {
    fn initial_state(&self) -> WorkspaceState {
        let id = WorkspaceId::from_uuid(Uuid::from_u128(0x5ace));
        let mut state = WorkspaceState::new(id, "Team".into());
        let founders = std::iter::once((0, Some(Role::Owner)))
            .chain((1..).zip(&self.roles).map(|(i, r)| (i, *r)));
        for (i, role) in founders {
            if let Some(role) = role {
                state.members.insert(user(i), member(i, role));
            }
        }
        state
    }
}

/// What running a scenario left behind.
struct Run {
    initial: WorkspaceState,
    live: WorkspaceState,
    /// The accepted events with the offsets they were journaled at.
    journal: Vec<(u64, Event)>,
    /// The live state as JSON at the cut, and how many journal entries it includes.
    snapshot: (String, usize),
}

/// Resolves a task pick against the live tasks (sorted, so that the pick is deterministic).
fn resolve(state: &WorkspaceState, pick: &TaskPick) -> TaskId {
    match pick {
        TaskPick::Pooled(i) => pooled_task(*i),
        TaskPick::Existing(index) => {
            let mut ids: Vec<TaskId> = state.tasks.keys().copied().collect();
            ids.sort();
            if ids.is_empty() {
                TaskId::from_uuid(Uuid::from_u128(u128::MAX))
            } else {
                ids[index.index(ids.len())]
            }
        }
    }
}

impl Cmd {
    fn actor(&self) -> &Actor {
        match self {
            Cmd::Create { by, .. }
            | Cmd::Update { by, .. }
            | Cmd::Delete { by, .. }
            | Cmd::AddMember { by, .. }
            | Cmd::SetRole { by, .. }
            | Cmd::RemoveMember { by, .. }
            | Cmd::Leave { by }
            | Cmd::Rename { by, .. } => by,
        }
    }
}

/// Resolves an actor against the current members (sorted, so that the pick is deterministic).
fn resolve_actor(state: &WorkspaceState, actor: &Actor) -> UserId {
    match actor {
        Actor::Anyone(i) => user(*i),
        Actor::Member(index) => {
            let mut ids: Vec<UserId> = state.members.keys().copied().collect();
            ids.sort();
            // There is always an owner; should that break, the outsider stands in and
            // `check_invariants` reports the real problem.
            ids.get(index.index(ids.len().max(1)))
                .copied()
                .unwrap_or(user(OUTSIDER))
        }
    }
}

/// Decides a command as the actor would: who sent it and what the state says.
fn decide(
    state: &WorkspaceState,
    cmd: &Cmd,
    now: DateTime<Utc>,
) -> (UserId, Result<Event, RoomError>) {
    let by = resolve_actor(state, cmd.actor());
    let decision = match cmd {
        Cmd::Create { draft, .. } => state.decide_create(by, draft.clone(), now),
        Cmd::Update {
            task,
            base,
            changes,
            ..
        } => {
            let task_id = resolve(state, task);
            let current = state.tasks.get(&task_id).map_or(1, |t| t.version);
            let base_version = match base {
                Base::Current => Some(current),
                Base::Stale(d) if current > *d => Some(current - d),
                Base::Stale(d) => Some(current + d),
                Base::LastWriterWins => None,
            };
            state.decide_update(by, task_id, base_version, changes.clone(), now)
        }
        Cmd::Delete { task, .. } => state.decide_delete(by, resolve(state, task)),
        Cmd::AddMember { user: u, role, .. } => state.decide_add_member(by, member(*u, *role)),
        Cmd::SetRole { user: u, role, .. } => state.decide_set_role(by, user(*u), *role),
        Cmd::RemoveMember { user: u, .. } => state.decide_remove_member(by, user(*u)),
        Cmd::Leave { .. } => state.decide_remove_member(by, by),
        Cmd::Rename { name, .. } => state.decide_rename(by, name.clone()),
    };
    (by, decision)
}

/// Who an event says did it.
fn author(event: &Event) -> UserId {
    match event {
        Event::TaskCreated { by, .. }
        | Event::TaskUpdated { by, .. }
        | Event::TaskDeleted { by, .. }
        | Event::MemberJoined { by, .. }
        | Event::MemberUpdated { by, .. }
        | Event::MemberLeft { by, .. }
        | Event::WorkspaceRenamed { by, .. }
        | Event::CategoryCreated { by, .. }
        | Event::CategoryUpdated { by, .. }
        | Event::CategoryDeleted { by, .. }
        | Event::SyncConflicted { by, .. }
        | Event::ConflictResolved { by, .. } => *by,
    }
}

fn changes_tasks(event: &Event) -> bool {
    matches!(
        event,
        Event::TaskCreated { .. }
            | Event::TaskUpdated { .. }
            | Event::TaskDeleted { .. }
            | Event::CategoryCreated { .. }
            | Event::CategoryUpdated { .. }
            | Event::CategoryDeleted { .. }
            | Event::SyncConflicted { .. }
            | Event::ConflictResolved { .. }
    )
}

/// Whether only owners and admins may cause the event (leaving is anyone's right).
fn manages(event: &Event) -> bool {
    match event {
        Event::MemberJoined { .. }
        | Event::MemberUpdated { .. }
        | Event::WorkspaceRenamed { .. } => true,
        Event::MemberLeft { user_id, by } => user_id != by,
        _ => false,
    }
}

/// Checks who got a command refused or accepted, from the state before it.
fn check_decision(
    before: &WorkspaceState,
    by: UserId,
    decision: &Result<Event, RoomError>,
) -> Result<(), TestCaseError> {
    let role = before.members.get(&by).map(|m| m.role);
    match (role, decision) {
        (None, Err(e)) => prop_assert!(
            matches!(e, RoomError::NotAMember),
            "a stranger was told more than that they are not a member: {e:?}"
        ),
        (None, Ok(event)) => prop_assert!(false, "a stranger got {event:?} accepted"),
        (Some(Role::Viewer), Ok(event)) if changes_tasks(event) => {
            prop_assert!(false, "a viewer got {event:?} accepted")
        }
        (Some(role), Ok(event)) if manages(event) => prop_assert!(
            role.can_manage_members(),
            "a {role:?} got {event:?} accepted"
        ),
        _ => {}
    }
    if let Ok(event) = decision {
        prop_assert_eq!(
            author(event),
            by,
            "the event names someone else as its author"
        );
    }
    Ok(())
}

/// Checks what must hold of the state after every accepted command. `updates` counts the
/// accepted updates of each live task.
fn check_invariants(
    state: &WorkspaceState,
    updates: &HashMap<TaskId, u64>,
) -> Result<(), TestCaseError> {
    let owners = state
        .members
        .values()
        .filter(|m| m.role == Role::Owner)
        .count();
    prop_assert!(owners >= 1, "no owner left: {:?}", state.members);
    prop_assert_eq!(
        state.tasks.len(),
        updates.len(),
        "tasks appeared or vanished unseen"
    );
    for (id, task) in &state.tasks {
        prop_assert_eq!(*id, task.id, "a task is filed under another id");
        prop_assert_eq!(
            task.completed,
            task.status == Status::Done,
            "completed and status disagree: {:?}",
            task
        );
        if let Some(a) = task.assignee {
            prop_assert!(
                state.members.contains_key(&a),
                "assigned to a non-member: {task:?}"
            );
        }
        let n = updates.get(id).copied();
        prop_assert_eq!(
            Some(task.version),
            n.map(|n| n + 1),
            "version is not 1 + updates: {:?}",
            task
        );
    }
    Ok(())
}

/// Runs the scenario through decide and apply, checking each step.
fn run(s: &Scenario) -> Result<Run, TestCaseError> {
    let initial = s.initial_state();
    let mut live = initial.clone();
    let mut journal: Vec<(u64, Event)> = Vec::new();
    let mut updates: HashMap<TaskId, u64> = HashMap::new();
    let cut = s.cut.index(s.cmds.len() + 1);
    let mut snapshot = None;
    for (n, cmd) in s.cmds.iter().enumerate() {
        if n == cut {
            snapshot = Some((to_json(&live), journal.len()));
        }
        let before = live.clone();
        let (by, decision) = decide(&live, cmd, clock(n));
        check_decision(&before, by, &decision)?;
        let Ok(event) = decision else {
            prop_assert_eq!(&live, &before, "a refused command changed the state");
            continue;
        };
        match &event {
            Event::TaskCreated { task, .. } => {
                prop_assert!(
                    !before.tasks.contains_key(&task.id),
                    "a create replaced {:?}",
                    task.id
                );
                prop_assert_eq!(task.version, 1, "a new task starts at version 1");
                updates.insert(task.id, 0);
            }
            Event::TaskUpdated { task_id, .. } => *updates.entry(*task_id).or_default() += 1,
            Event::TaskDeleted { task_id, .. } => {
                updates.remove(task_id);
            }
            _ => {}
        }
        let offset = before.offset + 1;
        live.apply(offset, &event);
        prop_assert_eq!(
            live.offset,
            offset,
            "apply did not move to the event's offset"
        );
        check_invariants(&live, &updates)?;
        journal.push((offset, event));
    }
    let snapshot = snapshot.unwrap_or_else(|| (to_json(&live), journal.len()));
    Ok(Run {
        initial,
        live,
        journal,
        snapshot,
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("state and events serialize")
}

/// Applies journal entries through their stored JSON, as recovery does.
fn replay(mut state: WorkspaceState, entries: &[(u64, Event)]) -> WorkspaceState {
    for (offset, event) in entries {
        let stored: Event =
            serde_json::from_str(&to_json(event)).expect("a journaled event reads back");
        state.apply(*offset, &stored);
    }
    state
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_accepted_command_keeps_the_invariants(s in scenario()) {
        let run = run(&s)?;
        let offsets: Vec<u64> = run.journal.iter().map(|(o, _)| *o).collect();
        let expected: Vec<u64> = (1..=run.journal.len() as u64).collect();
        prop_assert_eq!(offsets, expected, "offsets are not 1, 2, 3...");
        prop_assert_eq!(run.live.offset, run.journal.len() as u64);
    }

    #[test]
    fn replaying_the_journal_rebuilds_the_live_state(s in scenario()) {
        let run = run(&s)?;
        let replayed = replay(run.initial, &run.journal);
        prop_assert_eq!(replayed, run.live);
    }

    #[test]
    fn a_snapshot_plus_the_tail_rebuilds_the_live_state(s in scenario()) {
        let run = run(&s)?;
        let (json, included) = &run.snapshot;
        let restored: WorkspaceState = serde_json::from_str(json).expect("a snapshot reads back");
        prop_assert_eq!(restored.offset, *included as u64, "the snapshot's offset is not its journal position");
        let rebuilt = replay(restored, &run.journal[*included..]);
        prop_assert_eq!(rebuilt, run.live);
    }
}

/// Creates a task at each position, then one without a position, and says where that one went.
fn create_after(positions: &[Rank]) -> Result<(), TestCaseError> {
    let owner = user(0);
    let mut state = WorkspaceState::new(
        WorkspaceId::from_uuid(Uuid::from_u128(0x5ace)),
        "Team".into(),
    );
    state.members.insert(owner, member(0, Role::Owner));
    for (n, position) in positions.iter().enumerate() {
        let mut draft = TaskDraft::titled(format!("t{n}"));
        draft.position = Some(position.clone());
        let event = state
            .decide_create(owner, draft, clock(n))
            .expect("a valid create");
        state.apply(state.offset + 1, &event);
    }
    let event = state
        .decide_create(owner, TaskDraft::titled("new"), clock(positions.len()))
        .expect("a valid create");
    let Event::TaskCreated { task, .. } = &event else {
        panic!("a create produced {event:?}");
    };
    state.apply(state.offset + 1, &event);
    let last = state.tasks_in_order().last().map(|t| t.id);
    prop_assert_eq!(
        last,
        Some(task.id),
        "a task created without a position is not last: {:?}",
        task
    );
    Ok(())
}

/// Positions as a client may send them: small ones, integers at the ends of the range (as older
/// clients send them) and the largest integer part a key can have.
fn any_position() -> impl Strategy<Value = Rank> {
    prop_oneof![
        3 => (-3..10i64).prop_map(Rank::from_i64),
        1 => Just(Rank::from_i64(i64::MAX)),
        1 => Just(Rank::from_i64(i64::MIN)),
        1 => any::<i64>().prop_map(Rank::from_i64),
        1 => Just(Rank::parse(&"z".repeat(27)).expect("the largest integer key")),
        1 => Just(Rank::parse(&format!("{}V", "z".repeat(27))).expect("a key past it")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_task_created_without_a_position_goes_last(positions in vec(position(), 0..8)) {
        create_after(&positions)?;
    }

    /// Regression: one task at `i64::MAX`, then a create without a position, used to overflow
    /// (a panic that crashed the room in debug builds; a task at the top of the board in
    /// release builds).
    #[test]
    fn a_task_created_without_a_position_goes_last_whatever_the_positions(
        positions in vec(any_position(), 0..8),
    ) {
        create_after(&positions)?;
    }
}
