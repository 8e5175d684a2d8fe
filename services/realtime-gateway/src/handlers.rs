//! The Socket.IO handlers: the handshake (authentication), `join-progress`, `leave-progress`,
//! `cancel-import`, and disconnect. Every client event answers its ack with `{ok:true,...}` or
//! `{ok:false, error:{code, message}}`.

use std::{sync::Arc, time::Duration};

use serde_json::{Value, json};
use shared::{ProgressEvent, events::now_ms, names};
use socketioxide::{
    ParserError, SocketIo,
    extract::{AckSender, Extension, SocketRef, State, TryData},
    handler::ConnectHandler,
};
use uuid::Uuid;

use crate::{
    emit::tenant_room,
    error::{Error, Result, StepExt, ok_ack},
    rooms::Entry,
    session::Session,
    state::RealtimeState,
    throttle::EventKind,
};

/// Registers the default namespace, guarded by the authentication middleware.
pub fn register(io: &SocketIo) {
    io.ns("/", on_connect.with(authenticate));
}

/// Why a handshake was refused; the client's `connect_error` carries this message.
#[derive(Debug)]
pub struct Refused(shared::auth::AuthError);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unauthorized: {}", self.0)
    }
}

/// Checks the handshake's `auth: {token}`, stores the socket's [`Session`] and sets the socket
/// up, all before the client hears that it is connected.
async fn authenticate(
    socket: SocketRef,
    TryData(auth): TryData<Value>,
    State(state): State<RealtimeState>,
) -> Result<(), Refused> {
    let token = auth.ok().and_then(|auth| auth.get("token").and_then(Value::as_str).map(str::to_owned));
    match state.auth.authenticate_until(token.as_deref()) {
        Ok((identity, valid_until)) => {
            tracing::debug!(sid = %socket.id, user = %identity.user, tenant = %identity.tenant, "socket authenticated");
            let session = Arc::new(Session::new(identity, valid_until, &state.options));
            socket.extensions.insert(session.clone());
            set_up(&socket, &session, &state);
            disconnect_at_expiry(&socket, &session);
            Ok(())
        }
        Err(err) => {
            state.metrics.refused.inc();
            tracing::info!(sid = %socket.id, reason = %err, "handshake refused");
            Err(Refused(err))
        }
    }
}

/// A token is checked once, at the handshake, and a socket may live for days: when the token
/// expires, the socket hears `session-expired` (code `TOKEN_EXPIRED`) and is disconnected, so the
/// client reconnects with a fresh token (or learns that it has none). Events that arrive in
/// between are refused with `TOKEN_EXPIRED` by [`Session::spend`].
fn disconnect_at_expiry(socket: &SocketRef, session: &Session) {
    let Some(until) = session.valid_until else { return };
    let left = Duration::from_secs(u64::try_from(until - now_ms() / 1000 + 1).unwrap_or(0));
    let (socket, closed) = (socket.clone(), session.closed.clone());
    tokio::spawn(async move {
        tokio::select! {
            () = closed.cancelled() => {}
            () = tokio::time::sleep(left) => {
                tracing::info!(sid = %socket.id, "token expired; disconnecting the socket");
                let _ = socket.emit("session-expired", &Error::TokenExpired.to_ack()["error"]);
                let _ = socket.disconnect();
            }
        }
    });
}

/// The connect handler runs in a task of its own after the client has been told it is
/// connected, so a client that emits at once could find no handler yet (and its event would be
/// dropped unanswered). Everything is therefore set up by [`authenticate`], before the answer.
async fn on_connect() {}

/// Rooms, handlers and counters of an accepted socket.
fn set_up(socket: &SocketRef, session: &Session, state: &RealtimeState) {
    socket.join(tenant_room(&session.identity.tenant));
    // A room of its own lets room emits skip this socket while it joins (`except(sid)`).
    socket.join(socket.id);
    state.metrics.sockets.add(1);
    socket.on("join-progress", join_progress);
    socket.on("leave-progress", leave_progress);
    socket.on("cancel-import", cancel_import);
    socket.on_disconnect(on_disconnect);
}

async fn join_progress(
    socket: SocketRef,
    TryData(data): TryData<Value>,
    ack: AckSender,
    Extension(session): Extension<Arc<Session>>,
    State(state): State<RealtimeState>,
) {
    answer(ack, &state, join(&socket, &session, &state, data).await);
}

async fn leave_progress(
    socket: SocketRef,
    TryData(data): TryData<Value>,
    ack: AckSender,
    Extension(session): Extension<Arc<Session>>,
    State(state): State<RealtimeState>,
) {
    answer(ack, &state, leave(&socket, &session, &state, data).await);
}

async fn cancel_import(
    TryData(data): TryData<Value>,
    ack: AckSender,
    Extension(session): Extension<Arc<Session>>,
    State(state): State<RealtimeState>,
) {
    answer(ack, &state, cancel(&session, &state, data).await);
}

async fn on_disconnect(
    socket: SocketRef,
    Extension(session): Extension<Arc<Session>>,
    State(state): State<RealtimeState>,
) {
    session.closed.cancel();
    for id in session.take_watching() {
        state.rooms.leave(id, socket.id).await;
    }
    state.metrics.sockets.add(-1);
    state.metrics.rooms.set(state.rooms.active() as i64);
}

/// Joins the room, then shows the socket where the import stands: `progress-status` at once
/// (plus the terminal event if it has ended), and the same snapshot in the ack.
async fn join(socket: &SocketRef, session: &Session, state: &RealtimeState, data: Data) -> Result<Value> {
    session.spend()?;
    let id = session_id(data)?;
    state.owners.authorize(&session.identity, id).await?;
    session.watch(id)?;
    socket.join(names::progress_room(id));
    let shown = match state.rooms.enter(id, socket.id).await {
        Entry::Live(room) => {
            let snapshot = state.nats.last_progress(id).await.step("reading the progress snapshot");
            let mut room_guard = room.lock().await;
            let shown = match snapshot {
                Ok(snapshot) => room_guard.welcome(socket.id, snapshot),
                Err(err) => {
                    drop(room_guard);
                    undo_join(socket, session, state, id).await;
                    return Err(err);
                }
            };
            // Still under the room lock: no room emit can slip in before the snapshot.
            show(socket, shown.as_ref());
            let ended = room_guard.throttle.ended();
            drop(room_guard);
            if ended {
                state.rooms.retire(id);
            }
            shown
        }
        Entry::Ended => {
            let shown = state.nats.last_progress(id).await.step("reading the progress snapshot")?;
            show(socket, shown.as_ref());
            shown
        }
    };
    state.metrics.rooms.set(state.rooms.active() as i64);
    tracing::debug!(sid = %socket.id, import_id = %id, seq = ?shown.as_ref().map(|s| s.seq), "joined");
    Ok(ok_ack(json!({ "sessionId": id, "snapshot": shown })))
}

fn show(socket: &SocketRef, shown: Option<&ProgressEvent>) {
    let Some(event) = shown else { return };
    let _ = socket.emit("progress-status", event);
    if event.is_terminal() {
        // The room will not send it again to this socket; a client listening for terminal
        // events only still learns how it ended.
        let _ = socket.emit(EventKind::of(event).name(), event);
    }
}

async fn undo_join(socket: &SocketRef, session: &Session, state: &RealtimeState, id: Uuid) {
    session.unwatch(id);
    socket.leave(names::progress_room(id));
    state.rooms.leave(id, socket.id).await;
}

async fn leave(socket: &SocketRef, session: &Session, state: &RealtimeState, data: Data) -> Result<Value> {
    session.spend()?;
    let id = session_id(data)?;
    if session.unwatch(id) {
        socket.leave(names::progress_room(id));
        state.rooms.leave(id, socket.id).await;
        state.metrics.rooms.set(state.rooms.active() as i64);
    }
    Ok(ok_ack(json!({ "sessionId": id })))
}

/// Records and publishes the cancel request, as `POST /api/imports/{id}/cancel` does; the room
/// gets `progress-cancelled` when the worker has stopped.
async fn cancel(session: &Session, state: &RealtimeState, data: Data) -> Result<Value> {
    session.spend()?;
    let id = session_id(data)?;
    state.owners.authorize(&session.identity, id).await?;
    state.owners.record_cancel(id).await?;
    state.nats.request_cancel(id, &session.identity.user).await.step("publishing the cancel request")?;
    tracing::info!(import_id = %id, user = %session.identity.user, "cancel requested over Socket.IO");
    Ok(ok_ack(json!({ "sessionId": id, "status": "cancelling" })))
}

/// A client event's payload, as decoded (or not) by socketioxide.
type Data = Result<Value, ParserError>;

/// The `sessionId` of a `{sessionId: "<uuid>"}` payload.
fn session_id(data: Data) -> Result<Uuid> {
    const EXPECTED: &str = "expected {sessionId: \"<import id, a UUID>\"}";
    let value = data.map_err(|_| Error::InvalidRequest(format!("the payload is not JSON; {EXPECTED}")))?;
    let raw = value
        .get("sessionId")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::InvalidRequest(format!("sessionId is missing; {EXPECTED}")))?;
    Uuid::parse_str(raw)
        .map_err(|_| Error::InvalidRequest(format!("sessionId {} is not a UUID; {EXPECTED}", quote(raw))))
}

/// How much of a bad value an ack repeats.
const QUOTE_CHARS: usize = 40;

/// A bad value as acks show it: debug-quoted, cut to [`QUOTE_CHARS`] characters.
fn quote(raw: &str) -> String {
    match raw.char_indices().nth(QUOTE_CHARS) {
        Some((cut, _)) => format!("{:?}…", &raw[..cut]),
        None => format!("{raw:?}"),
    }
}

fn answer(ack: AckSender, state: &RealtimeState, result: Result<Value>) {
    let reply = match result {
        Ok(reply) => reply,
        Err(err) => {
            if matches!(err, Error::RateLimited) {
                state.metrics.rate_limited.inc();
            }
            err.to_ack()
        }
    };
    let _ = ack.send(&reply);
}
