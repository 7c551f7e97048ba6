//! Direct links between the nodes of a cluster: how a command reaches the node that runs its
//! room, and how that room's frames reach members connected elsewhere.
//!
//! A node that needs another (a client of it spoke to a room running there) opens one TCP link
//! to it, at the address the other registered (`NodeInfo::link`), and proves it knows the
//! cluster's secret (an HMAC of the other's challenge). Over that link:
//!
//! - the **edge** (the node the client is connected to) sends the client's commands, its
//!   disconnects, and answers to flow-control requests ([`wire::Up`]);
//! - the **owner** (the node running the room) sees each remote client as a [`ConnHandle`] whose
//!   frames go over the link ([`Remote`]); a frame for several members on one node is sent once
//!   with their ids ([`wire::Down::Frame`]), and the edge pushes it into each member's own
//!   outbox, where the class rules (must-deliver, conflation, drop) apply as for any member.
//!   The room's marks (joined, left, catching up) are mirrored to the edge so that its gateway
//!   routes commands and disconnects as it does for local rooms.
//!
//! A link that breaks (the other node died or was cut off, or dropped out of the registry) is
//! forgotten on both sides: the owner drops the members it stood for (as if they disconnected);
//! the edge tells each of its clients that was in a room over there to `resync`, and their next
//! join finds the room wherever it runs next.

pub mod wire;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use dashmap::DashMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use signaling::client::{self, Ref};
use signaling::server::ServerMsg;
use signaling::{ErrorCode, RoomKey};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::Cluster;
use crate::conn::{
    Class, CloseReason, ConnHandle, ConnId, Delivery, Mark, Member, Remote, WireFrame,
};
use crate::room::ReplyTo;
use crate::router::Router;
use wire::{Down, Up};

/// Proxy connection ids have this bit set, so they never meet a local connection's id.
pub const REMOTE_CONN: ConnId = 1 << 63;
/// How long opening a link (connect and handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Commands of one remote client queued at the owner before more are refused (the edge
/// already limits a client's rate; this bounds a misbehaving edge).
const COMMANDS_QUEUED: usize = 256;
/// A remote member is a slow consumer once this many times its outbox is waiting to cross
/// the link (the link itself is stuck: its own outbox over there never fills).
const LINK_SLACK: usize = 4;
/// Rooms whose node is remembered; beyond it the cache starts over (it is only a shortcut).
const MAX_CACHED_PLACES: usize = 100_000;
/// Rooms a connection's unanswered commands are remembered for, per link.
const MAX_ASKED: usize = 64;
/// Bytes written to a link in one go, at most.
const WRITE_BATCH: usize = 64 * 1024;

type HmacSha256 = Hmac<Sha256>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the link layer counts (the hub exports these as metrics).
#[derive(Default)]
pub struct LinkStats {
    /// Commands this node sent to the rooms' owners.
    pub forwarded: AtomicU64,
    /// Frames sent over links (each once per node, however many members it was for).
    pub frames_sent: AtomicU64,
    /// Member deliveries those frames stood for.
    pub remote_deliveries: AtomicU64,
    /// Links that broke while in use.
    pub links_lost: AtomicU64,
    /// Rooms handed to another node (rebalance after a node joined; drains count their own).
    pub handoffs: AtomicU64,
}

/// This node's links to the others, both ways. Cheap to share (`Arc`).
pub struct Links {
    cluster: Arc<Cluster>,
    key: Vec<u8>,
    /// Links this node opened (it is the edge), by the owner's node id.
    edges: Mutex<HashMap<String, Arc<EdgeLink>>>,
    /// Where rooms run elsewhere, as last found.
    owners: DashMap<RoomKey, String>,
    next_proxy: AtomicU64,
    /// Counters.
    pub stats: Arc<LinkStats>,
}

/// Where a room runs, as far as this node can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// Here (running, or to be started here).
    Here,
    /// On another node.
    Node(String),
}

impl Links {
    /// The links of `cluster`'s node; `secret` is shared by every node (it proves a link's
    /// other end is one of them).
    pub fn new(cluster: Arc<Cluster>, secret: &[u8]) -> Arc<Links> {
        let mut key = b"hub-cluster-link:".to_vec();
        key.extend_from_slice(secret);
        Arc::new(Links {
            cluster,
            key,
            edges: Mutex::default(),
            owners: DashMap::new(),
            next_proxy: AtomicU64::new(1),
            stats: Arc::default(),
        })
    }

    /// The cluster this node belongs to.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Where `room` runs: the holder of its lease when a live node holds it, otherwise the node
    /// placement picks among the live ones.
    ///
    /// # Errors
    /// Redis could not be asked (the room is not known to run anywhere yet).
    pub async fn place_of(&self, room: RoomKey) -> Result<Place, super::ClusterError> {
        let me = self.cluster.node_id();
        if let Some(node) = self.owners.get(&room).map(|n| n.clone()) {
            if self.cluster.is_live(&node) {
                return Ok(Place::Node(node));
            }
            self.owners.remove(&room);
        }
        let key = room.to_string();
        match self.cluster.lease_holder(&key).await? {
            Some(holder) if holder == me => Ok(Place::Here),
            // Cached only when a node runs it (so that ids no one runs, a client's guesses
            // included, are never kept).
            Some(holder) if self.cluster.is_live(&holder) => {
                if self.owners.len() >= MAX_CACHED_PLACES {
                    self.owners.clear();
                }
                self.owners.insert(room, holder.clone());
                Ok(Place::Node(holder))
            }
            // Free, or held by a node that is gone (its lease expires soon): where placement
            // says, among the nodes not draining. A node gone without releasing keeps its
            // rooms until then.
            _ => match self.cluster.placed(&key) {
                Some(node) if node != me => Ok(Place::Node(node)),
                _ => Ok(Place::Here),
            },
        }
    }

    /// True when another live node holds `room`'s lease.
    async fn runs_elsewhere(&self, room: RoomKey) -> bool {
        match self.cluster.lease_holder(&room.to_string()).await {
            Ok(Some(holder)) => holder != self.cluster.node_id() && self.cluster.is_live(&holder),
            _ => false,
        }
    }

    /// Forgets where `room` was thought to run (it was found elsewhere, or stopped).
    pub fn forget_place(&self, room: RoomKey) {
        self.owners.remove(&room);
    }

    /// Sends a client's command (`raw`: as the client sent it, already checked here) for `room`
    /// to `node`, which decodes it again, runs it and answers on the client's connection.
    pub async fn forward(self: &Arc<Self>, node: &str, reply: ReplyTo, room: RoomKey, raw: &[u8]) {
        let (conn, reference) = reply.forwarded();
        let link = match self.edge(node).await {
            Ok(link) => link,
            Err(e) => {
                tracing::debug!(node, error = %e, "no link to the room's node");
                self.forget_place(room);
                return answer_unavailable(&conn, reference);
            }
        };
        {
            let mut conns = lock(&link.conns);
            let c = conns.entry(conn.id()).or_insert_with(|| EdgeConn {
                handle: conn.clone(),
                rooms: HashSet::new(),
                asked: HashSet::new(),
            });
            // Bounded: a client asking rooms it is refused (not a member) keeps no more.
            if c.asked.len() >= MAX_ASKED {
                c.asked.clear();
            }
            c.asked.insert(room);
        }
        let sent = link.out.send(Up::Command {
            conn: conn.id(),
            member: conn.member(),
            capacity: u32::try_from(conn.capacity()).unwrap_or(u32::MAX),
            text: Bytes::copy_from_slice(raw),
        });
        if sent.is_err() {
            return answer_unavailable(&conn, reference);
        }
        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
    }

    /// Tells the node running `room` that connection `conn` left it (the client disconnected).
    pub fn disconnected(&self, room: RoomKey, conn: ConnId) {
        for link in self.edge_links() {
            let mut conns = lock(&link.conns);
            if let Some(c) = conns.get_mut(&conn)
                && c.rooms.remove(&room)
            {
                let _ = link.out.send(Up::Disconnected { conn, room });
            }
        }
    }

    /// Tells every node that knew connection `conn` that it is gone.
    pub fn gone(&self, conn: ConnId) {
        for link in self.edge_links() {
            if lock(&link.conns).remove(&conn).is_some() {
                let _ = link.out.send(Up::Gone { conn });
            }
        }
    }

    /// Closes the links to nodes no longer live (cut off without their sockets closing): their
    /// members here resync, and this node's members there are dropped by them.
    pub fn drop_dead_links(&self) {
        for link in self.edge_links() {
            if !self.cluster.is_live(&link.node) {
                link.stop.cancel();
            }
        }
    }

    /// A node joined (one `known` had not seen): the rooms here that placement now gives it
    /// are handed to it, so that it takes its share without anyone restarting.
    fn rebalance(&self, router: &Router, known: &mut HashSet<String>) {
        let live = self.cluster.live_nodes();
        let joined: Vec<&str> = live
            .iter()
            .filter(|n| !n.draining && !known.contains(&n.id))
            .map(|n| n.id.as_str())
            .collect();
        let first_look = known.is_empty();
        known.clear();
        known.extend(live.iter().map(|n| n.id.clone()));
        if first_look || joined.is_empty() || router.is_draining() {
            return;
        }
        let mut moved = 0;
        for room in router.rooms() {
            if let Some(to) = self.cluster.placed(&room.to_string())
                && joined.contains(&to.as_str())
                && router.hand_off(room, Some(to))
            {
                moved += 1;
            }
        }
        if moved > 0 {
            self.stats.handoffs.fetch_add(moved, Ordering::Relaxed);
            tracing::info!(rooms = moved, nodes = ?joined, "rooms handed to the nodes that joined");
        }
    }

    fn edge_links(&self) -> Vec<Arc<EdgeLink>> {
        lock(&self.edges).values().cloned().collect()
    }

    /// The link to `node`, opened if needed.
    async fn edge(self: &Arc<Self>, node: &str) -> Result<Arc<EdgeLink>, String> {
        if let Some(link) = lock(&self.edges).get(node)
            && !link.stop.is_cancelled()
        {
            return Ok(link.clone());
        }
        let info = self
            .cluster
            .live_node(node)
            .ok_or_else(|| format!("node {node} is not live"))?;
        let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let mut stream = TcpStream::connect(&info.link)
                .await
                .map_err(|e| e.to_string())?;
            let _ = stream.set_nodelay(true);
            self.handshake_out(&mut stream, node).await?;
            Ok::<_, String>(stream)
        })
        .await
        .map_err(|_| "timed out opening the link".to_owned())??;
        let _ = stream.flush().await;
        let (out, rx) = mpsc::unbounded_channel();
        let link = Arc::new(EdgeLink {
            node: node.to_owned(),
            out,
            conns: Mutex::default(),
            stop: CancellationToken::new(),
        });
        {
            let mut edges = lock(&self.edges);
            if let Some(other) = edges.get(node)
                && !other.stop.is_cancelled()
            {
                // Opened by another command meanwhile: use that one.
                return Ok(other.clone());
            }
            edges.insert(node.to_owned(), link.clone());
        }
        let (rd, wr) = stream.into_split();
        tokio::spawn(write_up(wr, rx, link.stop.clone()));
        tokio::spawn(self.clone().read_down(rd, link.clone()));
        tracing::debug!(node, "link opened");
        Ok(link)
    }

    /// The edge's reader: frames and marks from the owner, until the link ends.
    async fn read_down(self: Arc<Self>, mut rd: impl AsyncRead + Unpin, link: Arc<EdgeLink>) {
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let end = loop {
            let body = match wire::split(&mut buf) {
                Ok(Some(body)) => body,
                Ok(None) => {
                    let read = tokio::select! {
                        () = link.stop.cancelled() => break "closed",
                        read = rd.read_buf(&mut buf) => read,
                    };
                    match read {
                        Ok(0) | Err(_) => break "the other end closed",
                        Ok(_) => continue,
                    }
                }
                Err(_) => break "bad message",
            };
            match Down::decode(body) {
                Ok(msg) => self.on_down(&link, msg),
                Err(_) => break "bad message",
            }
        };
        link.stop.cancel();
        {
            let mut edges = lock(&self.edges);
            if edges.get(&link.node).is_some_and(|l| Arc::ptr_eq(l, &link)) {
                edges.remove(&link.node);
            }
        }
        self.owners.retain(|_, node| *node != link.node);
        let conns = std::mem::take(&mut *lock(&link.conns));
        let resyncs: usize = conns
            .values()
            .map(|c| c.rooms.union(&c.asked).count())
            .sum();
        if resyncs > 0 {
            self.stats.links_lost.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(node = %link.node, end, members = resyncs, "link to a room's node lost; its members here resync");
        }
        for c in conns.into_values() {
            for room in c.rooms.union(&c.asked) {
                c.handle.unmark_pending(*room);
                c.handle.mark_left(*room);
                c.handle
                    .push(crate::room::resync_frame(*room, None), Class::MustDeliver);
            }
        }
    }

    fn on_down(&self, link: &EdgeLink, msg: Down) {
        match msg {
            Down::Frame {
                conns: ids,
                class,
                frame,
            } => {
                let conns = lock(&link.conns);
                for id in ids {
                    if let Some(c) = conns.get(&id) {
                        c.handle.push(WireFrame::from_bytes(frame.clone()), class);
                    }
                }
            }
            Down::Close { conn, code } => {
                if let Some(c) = lock(&link.conns).get(&conn) {
                    c.handle.close(close_reason(code));
                }
            }
            Down::Mark { conn, room, mark } => {
                let mut conns = lock(&link.conns);
                let Some(c) = conns.get_mut(&conn) else {
                    return;
                };
                match mark {
                    Mark::Joined => {
                        c.rooms.insert(room);
                        c.handle.mark_joined(room);
                    }
                    Mark::Left => {
                        c.rooms.remove(&room);
                        c.handle.mark_left(room);
                    }
                    Mark::Pending => {
                        c.rooms.insert(room);
                        c.handle.mark_pending(room);
                    }
                    Mark::Unpending => {
                        if !c.handle.is_joined(room) {
                            c.rooms.remove(&room);
                        }
                        c.handle.unmark_pending(room);
                    }
                }
            }
            Down::Moved { room } => {
                self.owners.remove_if(&room, |_, node| *node == link.node);
            }
            Down::RoomFor { conn, free, token } => {
                let handle = lock(&link.conns).get(&conn).map(|c| c.handle.clone());
                let out = link.out.clone();
                tokio::spawn(async move {
                    let ok = match handle {
                        Some(h) => h.room_for(free as usize).await,
                        None => false,
                    };
                    let _ = out.send(Up::RoomReady { token, ok });
                });
            }
        }
    }

    /// Accepts the links other nodes open to this one, until `stop`; their commands go to
    /// `router`'s rooms here.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        router: Router,
        stop: CancellationToken,
    ) {
        let mut watch = tokio::time::interval(self.cluster.config.node_ttl / 4);
        let mut known: HashSet<String> = HashSet::new();
        loop {
            let (mut stream, peer) = tokio::select! {
                () = stop.cancelled() => return,
                _ = watch.tick() => {
                    self.drop_dead_links();
                    self.rebalance(&router, &mut known);
                    continue;
                }
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::debug!(error = %e, "link accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let links = self.clone();
            let router = router.clone();
            let stop = stop.child_token();
            tokio::spawn(async move {
                let shaken =
                    tokio::time::timeout(CONNECT_TIMEOUT, links.handshake_in(&mut stream)).await;
                match shaken {
                    Ok(Ok(node)) => links.own(stream, node, router, stop).await,
                    Ok(Err(e)) => tracing::warn!(%peer, error = %e, "link refused"),
                    Err(_) => tracing::warn!(%peer, "link handshake timed out"),
                }
            });
        }
    }

    /// The owner's side of one link: the edge's commands in, its members' frames out.
    async fn own(
        self: Arc<Self>,
        stream: TcpStream,
        node: String,
        router: Router,
        stop: CancellationToken,
    ) {
        tracing::debug!(node, "link accepted");
        let (mut rd, wr) = stream.into_split();
        let (out, rx) = mpsc::unbounded_channel();
        let link = OwnerLink {
            out,
            proxies: HashMap::new(),
            waits: Arc::default(),
            tokens: Arc::new(AtomicU64::new(1)),
        };
        tokio::spawn(write_down(wr, rx, stop.clone(), self.stats.clone()));
        let mut link = link;
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let mut watch = tokio::time::interval(self.cluster.config.node_ttl / 2);
        loop {
            let body = match wire::split(&mut buf) {
                Ok(Some(body)) => body,
                Ok(None) => {
                    let read = tokio::select! {
                        () = stop.cancelled() => break,
                        _ = watch.tick() => {
                            // An edge cut off without its socket closing: drop its members.
                            if self.cluster.live_node(&node).is_none() { break; }
                            continue;
                        }
                        read = rd.read_buf(&mut buf) => read,
                    };
                    match read {
                        Ok(0) | Err(_) => break,
                        Ok(_) => continue,
                    }
                }
                Err(_) => break,
            };
            let Ok(msg) = Up::decode(body) else {
                break;
            };
            self.on_up(&mut link, &router, msg);
        }
        stop.cancel();
        // Flow-control requests still waiting get `false` (their catch-ups end).
        lock(&link.waits).clear();
        // The edge is gone, or cut off: its clients may be reconnecting elsewhere.
        for (_, proxy) in link.proxies.drain() {
            proxy.sink.lost.store(true, Ordering::Relaxed);
            for room in proxy.handle.joined_rooms() {
                router.lost_here(room, proxy.handle.id());
            }
        }
        tracing::debug!(node, "link closed");
    }

    fn on_up(self: &Arc<Self>, link: &mut OwnerLink, router: &Router, msg: Up) {
        match msg {
            Up::Command {
                conn,
                member,
                capacity,
                text,
            } => {
                let proxy = link.proxies.entry(conn).or_insert_with(|| {
                    let id = REMOTE_CONN | self.next_proxy.fetch_add(1, Ordering::Relaxed);
                    let sink = Arc::new(ProxySink {
                        lost: AtomicBool::new(false),
                        edge_conn: conn,
                        out: link.out.clone(),
                        queued: Arc::new(AtomicUsize::new(0)),
                        limit: (capacity as usize).max(1) * LINK_SLACK,
                        waits: link.waits.clone(),
                        tokens: link.tokens.clone(),
                    });
                    let member = Member { conn: id, ..member };
                    let handle = ConnHandle::remote(member, capacity as usize, sink.clone());
                    let (cmds, rx) = mpsc::channel(COMMANDS_QUEUED);
                    tokio::spawn(run_commands(
                        self.clone(),
                        router.clone(),
                        handle.clone(),
                        link.out.clone(),
                        rx,
                    ));
                    Proxy { handle, cmds, sink }
                });
                if proxy.cmds.try_send(text).is_err() {
                    let frame = ServerMsg::Error {
                        reference: None,
                        code: ErrorCode::RateLimited,
                        message: "too many commands waiting for their room",
                        retry_after_ms: Some(1000),
                    };
                    proxy
                        .handle
                        .push(WireFrame::text(frame.to_json()), Class::MustDeliver);
                }
            }
            Up::Disconnected { conn, room } => {
                if let Some(p) = link.proxies.get(&conn) {
                    router.disconnected_here(room, p.handle.id());
                }
            }
            Up::Gone { conn } => {
                if let Some(p) = link.proxies.remove(&conn) {
                    drop_proxy(router, &p.handle);
                }
            }
            Up::RoomReady { token, ok } => {
                if let Some(tx) = lock(&link.waits).remove(&token) {
                    let _ = tx.send(ok);
                }
            }
        }
    }

    /// What this node puts in `x-hub-forwarded` on a REST request it passes to the room's
    /// node: its id and a MAC of it, which only nodes of the cluster can make.
    pub fn forward_proof(&self) -> String {
        let me = self.cluster.node_id();
        let tag = self
            .mac(b"rest-forward:", me)
            .map(|m| m.finalize().into_bytes().to_vec())
            .unwrap_or_default();
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        format!("{me}:{hex}")
    }

    /// True when `proof` ([`Links::forward_proof`]) was made by a node of this cluster.
    pub fn check_forward_proof(&self, proof: &str) -> bool {
        let Some((node, hex)) = proof.rsplit_once(':') else {
            return false;
        };
        let Some(tag) = (0..hex.len())
            .step_by(2)
            .map(|i| {
                hex.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect::<Option<Vec<u8>>>()
        else {
            return false;
        };
        self.mac(b"rest-forward:", node)
            .is_ok_and(|m| m.verify_slice(&tag).is_ok())
    }

    /// The MAC a node named `node` shows for `challenge`.
    fn mac(&self, challenge: &[u8], node: &str) -> Result<HmacSha256, String> {
        let mut mac = HmacSha256::new_from_slice(&self.key).map_err(|e| e.to_string())?;
        mac.update(challenge);
        mac.update(node.as_bytes());
        Ok(mac)
    }

    /// The opener's handshake: read the challenge and the other's id, answer with this node's
    /// id and MAC.
    async fn handshake_out(&self, stream: &mut TcpStream, expect: &str) -> Result<(), String> {
        let mut challenge = [0u8; 16];
        stream
            .read_exact(&mut challenge)
            .await
            .map_err(|e| e.to_string())?;
        let other = read_id(stream).await?;
        if other != expect {
            return Err(format!("expected node {expect}, found {other}"));
        }
        let me = self.cluster.node_id();
        let tag = self.mac(&challenge, me)?.finalize().into_bytes();
        let mut hello = Vec::with_capacity(1 + me.len() + tag.len());
        hello.push(u8::try_from(me.len()).map_err(|_| "node id too long")?);
        hello.extend_from_slice(me.as_bytes());
        hello.extend_from_slice(&tag);
        stream.write_all(&hello).await.map_err(|e| e.to_string())?;
        let mut ok = [0u8; 1];
        stream
            .read_exact(&mut ok)
            .await
            .map_err(|e| e.to_string())?;
        if ok[0] != 1 {
            return Err("the other node refused the link".into());
        }
        Ok(())
    }

    /// The acceptor's handshake: send a challenge and this node's id, check the opener's MAC.
    /// Returns the opener's node id.
    async fn handshake_in(&self, stream: &mut TcpStream) -> Result<String, String> {
        let challenge = *uuid::Uuid::new_v4().as_bytes();
        let me = self.cluster.node_id();
        let mut hello = challenge.to_vec();
        hello.push(u8::try_from(me.len()).map_err(|_| "node id too long")?);
        hello.extend_from_slice(me.as_bytes());
        stream.write_all(&hello).await.map_err(|e| e.to_string())?;
        let node = read_id(stream).await?;
        let mut tag = [0u8; 32];
        stream
            .read_exact(&mut tag)
            .await
            .map_err(|e| e.to_string())?;
        if self.mac(&challenge, &node)?.verify_slice(&tag).is_err() {
            let _ = stream.write_all(&[0]).await;
            return Err(format!("node {node:?} does not know the cluster secret"));
        }
        stream.write_all(&[1]).await.map_err(|e| e.to_string())?;
        Ok(node)
    }
}

/// A link this node opened to a room's owner.
struct EdgeLink {
    node: String,
    out: mpsc::UnboundedSender<Up>,
    /// The clients here that sent commands over this link, and the rooms over there each is in.
    conns: Mutex<HashMap<ConnId, EdgeConn>>,
    /// Cancelled when the link ends.
    stop: CancellationToken,
}

struct EdgeConn {
    handle: ConnHandle,
    /// The rooms over there this connection is in (or joining).
    rooms: HashSet<RoomKey>,
    /// The rooms it sent commands to over this link: if the link breaks, those commands may
    /// never be answered, so their rooms get `resync` too.
    asked: HashSet<RoomKey>,
}

/// The owner's side of a link: the edge's clients, as stand-ins the rooms here hold.
struct OwnerLink {
    out: mpsc::UnboundedSender<Out>,
    proxies: HashMap<ConnId, Proxy>,
    waits: Arc<Mutex<HashMap<u64, oneshot::Sender<bool>>>>,
    tokens: Arc<AtomicU64>,
}

struct Proxy {
    handle: ConnHandle,
    cmds: mpsc::Sender<Bytes>,
    sink: Arc<ProxySink>,
}

/// What the owner's writer sends.
enum Out {
    /// A frame for one remote member; consecutive ones of the same frame go out as one.
    Frame {
        conn: ConnId,
        class: Class,
        frame: Bytes,
        queued: Arc<AtomicUsize>,
    },
    Msg(Down),
}

/// A remote member's end in the rooms here.
struct ProxySink {
    /// Its link was lost: frames go nowhere, quietly, until its rooms have handled the loss
    /// (so that none of them takes it for a plain disconnect meanwhile).
    lost: AtomicBool,
    edge_conn: ConnId,
    out: mpsc::UnboundedSender<Out>,
    queued: Arc<AtomicUsize>,
    limit: usize,
    waits: Arc<Mutex<HashMap<u64, oneshot::Sender<bool>>>>,
    tokens: Arc<AtomicU64>,
}

impl Remote for ProxySink {
    fn push(&self, frame: &WireFrame, class: Class) -> Delivery {
        if self.lost.load(Ordering::Relaxed) {
            return Delivery::Queued;
        }
        if self.queued.load(Ordering::Relaxed) >= self.limit {
            if class == Class::Droppable {
                return Delivery::Dropped;
            }
            self.close(CloseReason::SLOW_CONSUMER);
            return Delivery::Evicted;
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        let sent = self.out.send(Out::Frame {
            conn: self.edge_conn,
            class,
            frame: frame.bytes().clone(),
            queued: self.queued.clone(),
        });
        match sent {
            Ok(()) => Delivery::Queued,
            Err(_) => Delivery::Gone,
        }
    }

    fn mark(&self, room: RoomKey, mark: Mark) {
        let _ = self.out.send(Out::Msg(Down::Mark {
            conn: self.edge_conn,
            room,
            mark,
        }));
    }

    fn close(&self, reason: CloseReason) {
        let _ = self.out.send(Out::Msg(Down::Close {
            conn: self.edge_conn,
            code: reason.code,
        }));
    }

    fn room_for(
        &self,
        free: usize,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + '_>> {
        Box::pin(async move {
            if self.lost.load(Ordering::Relaxed) {
                return false;
            }
            let token = self.tokens.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            lock(&self.waits).insert(token, tx);
            let asked = self.out.send(Out::Msg(Down::RoomFor {
                conn: self.edge_conn,
                free: u32::try_from(free).unwrap_or(u32::MAX),
                token,
            }));
            if asked.is_err() {
                lock(&self.waits).remove(&token);
                return false;
            }
            rx.await.unwrap_or(false)
        })
    }
}

/// A remote client's commands, in order, into the rooms here.
async fn run_commands(
    links: Arc<Links>,
    router: Router,
    handle: ConnHandle,
    out: mpsc::UnboundedSender<Out>,
    mut rx: mpsc::Receiver<Bytes>,
) {
    while let Some(text) = rx.recv().await {
        match client::decode(&text) {
            Ok((reference, msg)) => {
                let room = msg.room();
                let reply = ReplyTo::new(handle.clone(), reference);
                if !router.runs(room) && (router.is_draining() || links.runs_elsewhere(room).await)
                {
                    // The edge's idea of where the room runs is out of date: it forgets it,
                    // and the client's retry finds the right node.
                    let _ = out.send(Out::Msg(Down::Moved { room }));
                    drop(reply);
                    continue;
                }
                router.client_here(reply, msg).await;
            }
            Err(e) => {
                let frame = ServerMsg::Error {
                    reference: e.reference.as_ref(),
                    code: e.code,
                    message: &e.message,
                    retry_after_ms: None,
                };
                handle.push(WireFrame::text(frame.to_json()), Class::MustDeliver);
            }
        }
    }
}

/// A remote client gone: the rooms here drop it.
fn drop_proxy(router: &Router, handle: &ConnHandle) {
    handle.close_here(CloseReason::GOING_AWAY);
    for room in handle.joined_rooms() {
        router.disconnected_here(room, handle.id());
    }
}

/// The edge's writer: its messages, batched while more are ready.
async fn write_up(
    mut wr: impl AsyncWrite + Unpin,
    mut rx: mpsc::UnboundedReceiver<Up>,
    stop: CancellationToken,
) {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        let msg = tokio::select! {
            () = stop.cancelled() => break,
            msg = rx.recv() => match msg { Some(m) => m, None => break },
        };
        msg.encode(&mut buf);
        while buf.len() < WRITE_BATCH
            && let Ok(more) = rx.try_recv()
        {
            more.encode(&mut buf);
        }
        if wr.write_all(&buf).await.is_err() {
            break;
        }
        buf.clear();
    }
    stop.cancel();
}

/// The owner's writer: one message per frame per node, listing the members it is for.
async fn write_down(
    mut wr: impl AsyncWrite + Unpin,
    mut rx: mpsc::UnboundedReceiver<Out>,
    stop: CancellationToken,
    stats: Arc<LinkStats>,
) {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut conns: Vec<ConnId> = Vec::new();
    let mut carry: Option<Out> = None;
    loop {
        let first = match carry.take() {
            Some(out) => out,
            None => tokio::select! {
                () = stop.cancelled() => break,
                out = rx.recv() => match out { Some(o) => o, None => break },
            },
        };
        match first {
            Out::Msg(msg) => msg.encode(&mut buf),
            Out::Frame {
                conn,
                class,
                frame,
                queued,
            } => {
                conns.clear();
                conns.push(conn);
                queued.fetch_sub(1, Ordering::Relaxed);
                // The members of one room get the same frame one after another.
                while let Ok(next) = rx.try_recv() {
                    match next {
                        Out::Frame {
                            conn,
                            class: c,
                            frame: f,
                            queued,
                        } if c == class
                            && f.len() == frame.len()
                            && f.as_ptr() == frame.as_ptr() =>
                        {
                            conns.push(conn);
                            queued.fetch_sub(1, Ordering::Relaxed);
                        }
                        other => {
                            carry = Some(other);
                            break;
                        }
                    }
                }
                Down::encode_frame(&mut buf, &conns, class, &frame);
                stats.frames_sent.fetch_add(1, Ordering::Relaxed);
                stats
                    .remote_deliveries
                    .fetch_add(conns.len() as u64, Ordering::Relaxed);
            }
        }
        // A full batch goes out even mid-run (order is kept: what is carried comes after it).
        if buf.len() >= WRITE_BATCH || (carry.is_none() && rx.is_empty()) {
            if wr.write_all(&buf).await.is_err() {
                break;
            }
            buf.clear();
        }
    }
    stop.cancel();
}

async fn read_id(stream: &mut TcpStream) -> Result<String, String> {
    let mut len = [0u8; 1];
    stream
        .read_exact(&mut len)
        .await
        .map_err(|e| e.to_string())?;
    let mut id = vec![0u8; usize::from(len[0])];
    stream
        .read_exact(&mut id)
        .await
        .map_err(|e| e.to_string())?;
    String::from_utf8(id).map_err(|_| "node id is not UTF-8".to_owned())
}

fn answer_unavailable(conn: &ConnHandle, reference: Option<Ref>) {
    // Dropped unanswered, a reply says `unavailable`.
    drop(ReplyTo::new(conn.clone(), reference));
}

/// The close reason for a code the owner sent.
fn close_reason(code: u16) -> CloseReason {
    [
        CloseReason::SLOW_CONSUMER,
        CloseReason::ACCESS_REVOKED,
        CloseReason::GOING_AWAY,
        CloseReason::NODE_DRAINING,
        CloseReason::IDLE,
    ]
    .into_iter()
    .find(|r| r.code == code)
    .unwrap_or(CloseReason {
        code,
        reason: "closed by the room's node",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(conn: ConnId, bytes: &Bytes, queued: &Arc<AtomicUsize>) -> Out {
        queued.fetch_add(1, Ordering::Relaxed);
        Out::Frame {
            conn,
            class: Class::MustDeliver,
            frame: bytes.clone(),
            queued: queued.clone(),
        }
    }

    #[tokio::test]
    async fn a_frame_for_several_members_of_a_node_crosses_the_link_once() {
        let (tx, rx) = mpsc::unbounded_channel();
        let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
        let queued = Arc::new(AtomicUsize::new(0));
        let event = Bytes::from_static(b"\x81\x05event");
        let other = Bytes::from_static(b"\x81\x05other");
        // A room's fan-out: the same buffer for three members, then another frame, then the
        // first buffer again (after something else: not merged across it).
        for conn in [1, 2, 3] {
            tx.send(frame(conn, &event, &queued)).unwrap();
        }
        tx.send(frame(4, &other, &queued)).unwrap();
        tx.send(Out::Msg(Down::Close {
            conn: 9,
            code: 4008,
        }))
        .unwrap();
        tx.send(frame(5, &event, &queued)).unwrap();
        drop(tx);
        let stats = Arc::new(LinkStats::default());
        write_down(ours, rx, CancellationToken::new(), stats.clone()).await;
        let mut raw = Vec::new();
        theirs.read_to_end(&mut raw).await.unwrap();
        let mut buf = BytesMut::from(&raw[..]);
        let mut got = Vec::new();
        while let Some(body) = wire::split(&mut buf).unwrap() {
            got.push(Down::decode(body).unwrap());
        }
        let conns: Vec<Vec<ConnId>> = got
            .iter()
            .filter_map(|m| match m {
                Down::Frame { conns, .. } => Some(conns.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(conns, vec![vec![1, 2, 3], vec![4], vec![5]], "{got:?}");
        assert!(
            matches!(
                got[2],
                Down::Close {
                    conn: 9,
                    code: 4008
                }
            ),
            "in order: {got:?}"
        );
        assert_eq!(queued.load(Ordering::Relaxed), 0, "every frame counted out");
        assert_eq!(stats.frames_sent.load(Ordering::Relaxed), 3);
        assert_eq!(stats.remote_deliveries.load(Ordering::Relaxed), 5);
    }
}
