//! The Socket.IO event stream the SDKs listen to (`shared/daytona-api.md` §1.1):
//! `GET /api/socket.io/?EIO=4&transport=websocket`, Engine.IO v4 / Socket.IO v5, WebSocket
//! transport only, default namespace only, server → client events only.
//!
//! A connection: the server sends the Engine.IO open packet; the client sends a Socket.IO
//! CONNECT with `{"token": "<api key>"}` (the upgrade request has no Authorization header);
//! the key is looked up like the auth middleware does, and the connection then receives
//! `sandbox.created` and `sandbox.state.updated` for the sandboxes of the key's organization,
//! from [`Lifecycle::subscribe`](crate::Lifecycle::subscribe), with the same Sandbox JSON the
//! REST API returns. The server pings every [`PING_INTERVAL`] and closes a client that does not
//! answer within [`PING_TIMEOUT`].
//!
//! Back-pressure: each connection has a bounded send queue written by its own task; a client
//! that cannot keep up (queue full, or the state-change channel lagged past it) is dropped.
//! It reconnects, and the SDKs poll in the meantime anyway.
//!
//! A polling-transport request, or a GET that is no WebSocket upgrade, gets a 400 envelope at
//! once (clients then fall back to polling the REST API).

use std::future::Future;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::State;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use rand::distributions::{Alphanumeric, DistString};
use sandbar_core::state::SandboxState;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::error::ApiError;
use crate::lifecycle::StateChange;
use crate::AppState;

/// How often the server pings.
pub const PING_INTERVAL: Duration = Duration::from_secs(25);
/// How long a client has to answer a ping.
pub const PING_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a client has to send its CONNECT after the Engine.IO handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(45);
/// Largest message a client may send (announced in the open packet).
const MAX_PAYLOAD: usize = 1_000_000;
/// Messages queued for one client before it counts as too slow and is dropped.
const SEND_QUEUE: usize = 256;
/// After the session ended: how long queued messages (a connect error, the close) may take.
const FLUSH_GRACE: Duration = Duration::from_secs(5);

pub const EVENT_CREATED: &str = "sandbox.created";
pub const EVENT_STATE_UPDATED: &str = "sandbox.state.updated";

/// `GET /api/socket.io/?EIO=4&transport=websocket` (no API-key middleware: the key comes in
/// the CONNECT packet).
pub async fn handler(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let query = uri.query().unwrap_or("");
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
    };
    let invalid = |name: &'static str, message: &str| {
        ApiError::InvalidParameter {
            name,
            message: message.to_owned(),
        }
        .into_response()
    };
    if param("EIO") != Some("4") {
        return invalid("EIO", "only Engine.IO protocol version 4 is supported");
    }
    if param("transport") != Some("websocket") {
        return invalid(
            "transport",
            "only the websocket transport is supported (no long-polling)",
        );
    }
    if param("sid").is_some() {
        return invalid("sid", "upgrading a polling session is not supported");
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return invalid(
                "transport",
                &format!("expected a WebSocket upgrade request: {rejection}"),
            )
        }
    };
    let header_token = bearer(&headers);
    upgrade
        .max_message_size(MAX_PAYLOAD)
        .on_upgrade(move |socket| {
            let (sink, stream) = socket.split();
            run(sink, stream, state, header_token, Timing::DEFAULT)
        })
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !key.trim().is_empty()).then(|| key.trim().to_owned())
}

/// What a connection needs from the server (a trait so that the session runs in unit tests
/// without a store).
pub trait Backend: Send + Sync + 'static {
    type Event: Clone + Send + 'static;
    /// The organization of an API key; `Err` is a lookup failure.
    fn authenticate(
        &self,
        token: &str,
    ) -> impl Future<Output = Result<Option<Uuid>, String>> + Send;
    fn subscribe(&self) -> broadcast::Receiver<Self::Event>;
    /// The `42[…]` packet of `event` for a client of `org`, `None` when it is not for it.
    fn render(&self, org: Uuid, event: &Self::Event) -> Option<String>;
    /// Resolves when the server shuts down.
    fn closed(&self) -> impl Future<Output = ()> + Send;
}

impl Backend for AppState {
    type Event = StateChange;

    async fn authenticate(&self, token: &str) -> Result<Option<Uuid>, String> {
        self.store()
            .authenticate(token)
            .await
            .map_err(|err| crate::lifecycle::error_chain(&err))
    }

    fn subscribe(&self) -> broadcast::Receiver<StateChange> {
        self.lifecycle().subscribe()
    }

    fn render(&self, org: Uuid, change: &StateChange) -> Option<String> {
        if change.sandbox.organization_id != org {
            return None;
        }
        let dto = super::sandbox::to_wire(self, &change.sandbox);
        // The lifecycle publishes an insert as a change from `unknown`.
        let packet = if change.old_state == SandboxState::Unknown {
            codec::event(EVENT_CREATED, &dto)
        } else {
            codec::event(
                EVENT_STATE_UPDATED,
                &serde_json::json!({
                    "sandbox": dto,
                    "oldState": change.old_state.as_str(),
                    "newState": change.sandbox.state.as_str(),
                }),
            )
        };
        match packet {
            Ok(packet) => Some(packet),
            Err(err) => {
                warn!(sandbox = %change.sandbox.id, error = %err, "cannot encode a sandbox event");
                None
            }
        }
    }

    async fn closed(&self) {
        self.shutdown_token().cancelled().await;
    }
}

/// Heartbeat and handshake timers of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub connect_timeout: Duration,
}

impl Timing {
    pub const DEFAULT: Self = Self {
        ping_interval: PING_INTERVAL,
        ping_timeout: PING_TIMEOUT,
        connect_timeout: CONNECT_TIMEOUT,
    };
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Close frame, Engine.IO close packet, or the transport failed.
    ClientClosed,
    PingTimeout,
    ConnectTimeout,
    /// The send queue was full.
    TooSlow,
    /// The state-change channel overtook the connection (it would have missed events).
    Lagged,
    /// A packet that is no Engine.IO / Socket.IO packet.
    Protocol,
    Shutdown,
    /// The writer task ended (the transport failed).
    WriterGone,
}

fn random_sid() -> String {
    Alphanumeric.sample_string(&mut rand::thread_rng(), 20)
}

/// Runs one connection: a writer task drains the bounded queue into `sink` while the session
/// reads `stream`, answers the handshake and forwards events.
async fn run<K, S, B, E>(
    sink: K,
    mut stream: S,
    backend: B,
    header_token: Option<String>,
    timing: Timing,
) where
    K: Sink<Message> + Send + Unpin + 'static,
    S: Stream<Item = Result<Message, E>> + Send + Unpin,
    B: Backend,
{
    let (tx, mut rx) = mpsc::channel::<Message>(SEND_QUEUE);
    let mut sink = sink;
    let mut writer = tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            let close = matches!(message, Message::Close(_));
            if sink.send(message).await.is_err() || close {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let engine_sid = random_sid();
    let end = session(
        &mut stream,
        &tx,
        &backend,
        header_token,
        timing,
        &engine_sid,
    )
    .await;
    match end {
        End::ClientClosed | End::Shutdown => {
            debug!(sid = %engine_sid, ?end, "socket.io connection closed")
        }
        _ => info!(sid = %engine_sid, ?end, "socket.io connection dropped"),
    }
    if end == End::TooSlow {
        writer.abort();
        return;
    }
    if !matches!(end, End::ClientClosed | End::WriterGone) {
        let _ = tx.try_send(Message::Close(None));
    }
    drop(tx);
    if tokio::time::timeout(FLUSH_GRACE, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

/// Queues a text message; a full queue ends the connection.
fn send(tx: &mpsc::Sender<Message>, text: String) -> Result<(), End> {
    tx.try_send(Message::Text(text.into()))
        .map_err(|err| match err {
            mpsc::error::TrySendError::Full(_) => End::TooSlow,
            mpsc::error::TrySendError::Closed(_) => End::WriterGone,
        })
}

async fn next_event<T: Clone>(
    events: &mut Option<broadcast::Receiver<T>>,
) -> Result<T, broadcast::error::RecvError> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

async fn session<S, B, E>(
    stream: &mut S,
    tx: &mpsc::Sender<Message>,
    backend: &B,
    header_token: Option<String>,
    timing: Timing,
    engine_sid: &str,
) -> End
where
    S: Stream<Item = Result<Message, E>> + Unpin,
    B: Backend,
{
    match session_inner(stream, tx, backend, header_token, timing, engine_sid).await {
        Ok(()) => End::ClientClosed,
        Err(end) => end,
    }
}

async fn session_inner<S, B, E>(
    stream: &mut S,
    tx: &mpsc::Sender<Message>,
    backend: &B,
    header_token: Option<String>,
    timing: Timing,
    engine_sid: &str,
) -> Result<(), End>
where
    S: Stream<Item = Result<Message, E>> + Unpin,
    B: Backend,
{
    send(tx, codec::open(engine_sid, timing, MAX_PAYLOAD))?;
    // The organization once the default namespace is joined, and its event feed.
    let mut org: Option<Uuid> = None;
    let mut events: Option<broadcast::Receiver<B::Event>> = None;
    let mut connect_deadline = Some(Instant::now() + timing.connect_timeout);
    let mut next_ping = Instant::now() + timing.ping_interval;
    let mut pong_deadline: Option<Instant> = None;
    let closed = backend.closed();
    tokio::pin!(closed);
    loop {
        let heartbeat = pong_deadline.unwrap_or(next_ping);
        let timer = match connect_deadline {
            Some(deadline) if deadline < heartbeat => deadline,
            _ => heartbeat,
        };
        tokio::select! {
            () = &mut closed => return Err(End::Shutdown),
            () = tokio::time::sleep_until(timer) => {
                let now = Instant::now();
                if connect_deadline.is_some_and(|deadline| deadline <= now) {
                    return Err(End::ConnectTimeout);
                }
                if pong_deadline.is_some_and(|deadline| deadline <= now) {
                    return Err(End::PingTimeout);
                }
                if pong_deadline.is_none() && next_ping <= now {
                    send(tx, codec::PING.to_owned())?;
                    pong_deadline = Some(now + timing.ping_timeout);
                }
            }
            event = next_event(&mut events) => match event {
                Ok(event) => {
                    if let Some(packet) = org.and_then(|org| backend.render(org, &event)) {
                        send(tx, packet)?;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => return Err(End::Lagged),
                Err(broadcast::error::RecvError::Closed) => return Err(End::Shutdown),
            },
            message = stream.next() => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return Ok(()),
                };
                match codec::decode_engine(text.as_str()) {
                    Some(codec::EnginePacket::Pong(_)) => {
                        if pong_deadline.take().is_some() {
                            next_ping = Instant::now() + timing.ping_interval;
                        }
                    }
                    Some(codec::EnginePacket::Ping(data)) => send(tx, format!("3{data}"))?,
                    Some(codec::EnginePacket::Close) => return Ok(()),
                    Some(codec::EnginePacket::Upgrade | codec::EnginePacket::Noop) => {}
                    Some(codec::EnginePacket::Message(payload)) => {
                        match codec::decode_socket(payload).ok_or(End::Protocol)? {
                            codec::SocketPacket::Connect { namespace: "/", auth } => {
                                let token = token(auth.as_ref(), header_token.as_deref());
                                match join(backend, token).await {
                                    Ok(found) => {
                                        // Subscribe before the ack: nothing after it is missed.
                                        if org != Some(found) {
                                            events = Some(backend.subscribe());
                                        }
                                        org = Some(found);
                                        connect_deadline = None;
                                        send(tx, codec::connected(&random_sid()))?;
                                    }
                                    Err(message) => send(tx, codec::connect_error("/", message))?,
                                }
                            }
                            codec::SocketPacket::Connect { namespace, .. } => {
                                send(tx, codec::connect_error(namespace, "Invalid namespace"))?;
                            }
                            codec::SocketPacket::Disconnect { namespace: "/" } => {
                                org = None;
                                events = None;
                                connect_deadline = Some(Instant::now() + timing.connect_timeout);
                            }
                            // Other namespaces, client events and acks: nothing listens.
                            codec::SocketPacket::Disconnect { .. }
                            | codec::SocketPacket::Other => {}
                        }
                    }
                    None => return Err(End::Protocol),
                }
            }
        }
    }
}

/// The API key of a CONNECT: `auth.token`, else the upgrade request's bearer token.
fn token<'a>(auth: Option<&'a serde_json::Value>, header: Option<&'a str>) -> Option<&'a str> {
    auth.and_then(|auth| auth.get("token"))
        .and_then(serde_json::Value::as_str)
        .filter(|token| !token.is_empty())
        .or(header)
}

/// The organization of `token`, or the message of the connect error.
async fn join<B: Backend>(backend: &B, token: Option<&str>) -> Result<Uuid, &'static str> {
    const UNAUTHORIZED: &str = "Unauthorized: missing or invalid API key";
    let token = token.ok_or(UNAUTHORIZED)?;
    match backend.authenticate(token).await {
        Ok(Some(org)) => Ok(org),
        Ok(None) => Err(UNAUTHORIZED),
        Err(err) => {
            warn!(error = %err, "socket.io: key lookup failed");
            Err("Internal server error")
        }
    }
}

/// The Engine.IO v4 / Socket.IO v5 text packets this server reads and writes.
pub mod codec {
    use serde::Serialize;
    use serde_json::Value;

    use super::Timing;

    /// Engine.IO ping (server → client).
    pub const PING: &str = "2";

    /// An Engine.IO packet from a client (text frames).
    #[derive(Debug, PartialEq, Eq)]
    pub enum EnginePacket<'a> {
        Close,
        Ping(&'a str),
        Pong(&'a str),
        /// A Socket.IO packet.
        Message(&'a str),
        Upgrade,
        Noop,
    }

    /// `None` when `text` is no client Engine.IO packet (`0` open is server-only).
    pub fn decode_engine(text: &str) -> Option<EnginePacket<'_>> {
        let mut chars = text.chars();
        let kind = chars.next()?;
        let data = chars.as_str();
        Some(match kind {
            '1' => EnginePacket::Close,
            '2' => EnginePacket::Ping(data),
            '3' => EnginePacket::Pong(data),
            '4' => EnginePacket::Message(data),
            '5' => EnginePacket::Upgrade,
            '6' => EnginePacket::Noop,
            _ => return None,
        })
    }

    /// A Socket.IO packet from a client, as far as this server cares.
    #[derive(Debug, PartialEq)]
    pub enum SocketPacket<'a> {
        Connect {
            namespace: &'a str,
            auth: Option<Value>,
        },
        Disconnect {
            namespace: &'a str,
        },
        /// Events, acks, binary packets: accepted and ignored.
        Other,
    }

    /// Splits `[<namespace>,]rest` (a namespace starts with `/`; without one it is `/`).
    fn namespace(text: &str) -> (&str, &str) {
        if text.starts_with('/') {
            match text.split_once(',') {
                Some((namespace, rest)) => (namespace, rest),
                None => (text, ""),
            }
        } else {
            ("/", text)
        }
    }

    /// `None` when `text` is no Socket.IO v5 packet.
    pub fn decode_socket(text: &str) -> Option<SocketPacket<'_>> {
        let mut chars = text.chars();
        let kind = chars.next()?;
        let rest = chars.as_str();
        match kind {
            '0' => {
                let (namespace, data) = namespace(rest);
                let auth = if data.is_empty() {
                    None
                } else {
                    let value: Value = serde_json::from_str(data).ok()?;
                    if !value.is_object() {
                        return None;
                    }
                    Some(value)
                };
                Some(SocketPacket::Connect { namespace, auth })
            }
            '1' => Some(SocketPacket::Disconnect {
                namespace: namespace(rest).0,
            }),
            '2'..='6' => Some(SocketPacket::Other),
            _ => None,
        }
    }

    /// Engine.IO open packet: `0{"sid",…}` (no upgrades: WebSocket from the start).
    pub fn open(sid: &str, timing: Timing, max_payload: usize) -> String {
        let body = serde_json::json!({
            "sid": sid,
            "upgrades": [],
            "pingInterval": timing.ping_interval.as_millis() as u64,
            "pingTimeout": timing.ping_timeout.as_millis() as u64,
            "maxPayload": max_payload,
        });
        format!("0{body}")
    }

    /// Successful CONNECT of the default namespace: `40{"sid":…}`.
    pub fn connected(sid: &str) -> String {
        format!("40{}", serde_json::json!({ "sid": sid }))
    }

    /// CONNECT_ERROR: `44{"message":…}` (`44/ns,{…}` for another namespace).
    pub fn connect_error(namespace: &str, message: &str) -> String {
        let body = serde_json::json!({ "message": message });
        if namespace == "/" {
            format!("44{body}")
        } else {
            format!("44{namespace},{body}")
        }
    }

    /// EVENT of the default namespace: `42["name",payload]`.
    pub fn event(name: &str, payload: &impl Serialize) -> serde_json::Result<String> {
        Ok(format!("42{}", serde_json::to_string(&(name, payload))?))
    }
}

#[cfg(test)]
mod tests {
    use super::codec::*;
    use super::*;
    use serde_json::{json, Value};
    use tokio_util::sync::CancellationToken;

    #[test]
    fn decodes_engine_packets() {
        assert_eq!(decode_engine("3"), Some(EnginePacket::Pong("")));
        assert_eq!(decode_engine("2probe"), Some(EnginePacket::Ping("probe")));
        assert_eq!(decode_engine("1"), Some(EnginePacket::Close));
        assert_eq!(decode_engine("40"), Some(EnginePacket::Message("0")));
        assert_eq!(decode_engine("6"), Some(EnginePacket::Noop));
        assert_eq!(decode_engine(""), None);
        assert_eq!(decode_engine("0{}"), None);
        assert_eq!(decode_engine("x"), None);
    }

    #[test]
    fn decodes_socket_packets() {
        assert_eq!(
            decode_socket("0"),
            Some(SocketPacket::Connect {
                namespace: "/",
                auth: None
            })
        );
        assert_eq!(
            decode_socket(r#"0{"token":"sb_x"}"#),
            Some(SocketPacket::Connect {
                namespace: "/",
                auth: Some(json!({"token": "sb_x"}))
            })
        );
        assert_eq!(
            decode_socket(r#"0/admin,{"token":"t"}"#),
            Some(SocketPacket::Connect {
                namespace: "/admin",
                auth: Some(json!({"token": "t"}))
            })
        );
        assert_eq!(
            decode_socket("0/admin,"),
            Some(SocketPacket::Connect {
                namespace: "/admin",
                auth: None
            })
        );
        assert_eq!(
            decode_socket("1"),
            Some(SocketPacket::Disconnect { namespace: "/" })
        );
        assert_eq!(
            decode_socket("1/admin,"),
            Some(SocketPacket::Disconnect {
                namespace: "/admin"
            })
        );
        assert_eq!(
            decode_socket(r#"212["hello",1]"#),
            Some(SocketPacket::Other)
        );
        assert_eq!(decode_socket("0{not json"), None);
        assert_eq!(decode_socket("0[1]"), None);
        assert_eq!(decode_socket("9"), None);
        assert_eq!(decode_socket(""), None);
    }

    #[test]
    fn encodes_server_packets() {
        let open = open("abc", Timing::DEFAULT, 1_000_000);
        assert!(open.starts_with('0'));
        let body: Value = serde_json::from_str(&open[1..]).unwrap();
        assert_eq!(
            body,
            json!({"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000})
        );
        assert_eq!(connected("s1"), r#"40{"sid":"s1"}"#);
        assert_eq!(connect_error("/", "no"), r#"44{"message":"no"}"#);
        assert_eq!(connect_error("/x", "no"), r#"44/x,{"message":"no"}"#);
        assert_eq!(
            event("sandbox.created", &json!({"id": "a\"b"})).unwrap(),
            r#"42["sandbox.created",{"id":"a\"b"}]"#
        );
    }

    // ---- sessions over an in-memory transport, on paused time ----------------------------

    const ORG_A: Uuid = Uuid::from_u128(1);
    const ORG_B: Uuid = Uuid::from_u128(2);

    #[derive(Clone)]
    struct Fake {
        events: broadcast::Sender<(Uuid, String)>,
        shutdown: CancellationToken,
    }

    impl Backend for Fake {
        type Event = (Uuid, String);

        async fn authenticate(&self, token: &str) -> Result<Option<Uuid>, String> {
            Ok(match token {
                "key-a" => Some(ORG_A),
                "key-b" => Some(ORG_B),
                "broken" => return Err("store down".into()),
                _ => None,
            })
        }

        fn subscribe(&self) -> broadcast::Receiver<(Uuid, String)> {
            self.events.subscribe()
        }

        fn render(&self, org: Uuid, (to, text): &(Uuid, String)) -> Option<String> {
            (*to == org).then(|| event("e", &text).unwrap())
        }

        async fn closed(&self) {
            self.shutdown.cancelled().await;
        }
    }

    struct Client {
        to_server: mpsc::Sender<Message>,
        from_server: mpsc::Receiver<Message>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Client {
        async fn send(&self, text: &str) {
            self.to_server
                .send(Message::Text(text.into()))
                .await
                .unwrap();
        }

        /// The next text message, `None` once the server closed.
        async fn recv(&mut self) -> Option<String> {
            loop {
                match self.from_server.recv().await? {
                    Message::Text(text) => return Some(text.as_str().to_owned()),
                    Message::Close(_) => return None,
                    _ => {}
                }
            }
        }

        async fn connect(&mut self, token: &str) -> String {
            let open = self.recv().await.unwrap();
            assert!(open.starts_with("0{"), "{open}");
            self.send(&format!("40{}", json!({ "token": token }))).await;
            self.recv().await.unwrap()
        }
    }

    fn start(backend: &Fake, outgoing: usize) -> Client {
        let (to_server, incoming) = mpsc::channel::<Message>(16);
        let (out_tx, from_server) = mpsc::channel::<Message>(outgoing);
        let stream = futures_util::stream::unfold(incoming, |mut rx| async move {
            rx.recv()
                .await
                .map(|message| (Ok::<_, std::convert::Infallible>(message), rx))
        });
        let sink = futures_util::sink::unfold(out_tx, |tx, message: Message| async move {
            tx.send(message).await.map_err(|_| ())?;
            Ok::<_, ()>(tx)
        });
        let backend = backend.clone();
        let task = tokio::spawn(run(
            Box::pin(sink),
            Box::pin(stream),
            backend,
            None,
            Timing::DEFAULT,
        ));
        Client {
            to_server,
            from_server,
            task,
        }
    }

    fn fake() -> Fake {
        Fake {
            events: broadcast::channel(1024).0,
            shutdown: CancellationToken::new(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn connect_and_receive_own_organization_events() {
        let backend = fake();
        let mut a = start(&backend, 64);
        let mut b = start(&backend, 64);
        let ack = a.connect("key-a").await;
        assert!(ack.starts_with(r#"40{"sid":""#), "{ack}");
        assert!(b.connect("key-b").await.starts_with("40{"));
        backend.events.send((ORG_A, "for a".into())).unwrap();
        backend.events.send((ORG_B, "for b".into())).unwrap();
        assert_eq!(a.recv().await.unwrap(), r#"42["e","for a"]"#);
        assert_eq!(b.recv().await.unwrap(), r#"42["e","for b"]"#);
        // Client events are ignored; a ping from the client is answered.
        a.send(r#"42["hello"]"#).await;
        a.send("2probe").await;
        assert_eq!(a.recv().await.unwrap(), "3probe");
        // Close packet ends the connection.
        a.send("1").await;
        a.task.await.unwrap();
        backend.shutdown.cancel();
        assert_eq!(b.recv().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn refuses_a_wrong_token_and_keeps_the_engine_open() {
        let backend = fake();
        let mut c = start(&backend, 64);
        assert_eq!(
            c.connect("nope").await,
            r#"44{"message":"Unauthorized: missing or invalid API key"}"#
        );
        // Not subscribed: nobody receives this.
        assert!(backend.events.send((ORG_A, "x".into())).is_err());
        c.send("40").await;
        assert!(c.recv().await.unwrap().starts_with("44{"));
        c.send(r#"40{"token":"broken"}"#).await;
        assert_eq!(
            c.recv().await.unwrap(),
            r#"44{"message":"Internal server error"}"#
        );
        c.send(r#"40/other,{"token":"key-a"}"#).await;
        assert_eq!(
            c.recv().await.unwrap(),
            r#"44/other,{"message":"Invalid namespace"}"#
        );
        c.send(r#"40{"token":"key-a"}"#).await;
        assert!(c.recv().await.unwrap().starts_with("40{"));
        backend.events.send((ORG_A, "y".into())).unwrap();
        assert_eq!(c.recv().await.unwrap(), r#"42["e","y"]"#);
    }

    #[tokio::test(start_paused = true)]
    async fn pings_and_closes_a_client_that_does_not_answer() {
        let backend = fake();
        let mut c = start(&backend, 64);
        c.connect("key-a").await;
        let started = Instant::now();
        assert_eq!(c.recv().await.unwrap(), "2");
        assert_eq!(started.elapsed(), PING_INTERVAL);
        c.send("3").await;
        assert_eq!(c.recv().await.unwrap(), "2");
        assert_eq!(started.elapsed(), PING_INTERVAL * 2);
        // No pong this time.
        assert_eq!(c.recv().await, None);
        assert_eq!(started.elapsed(), PING_INTERVAL * 2 + PING_TIMEOUT);
        c.task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn closes_a_client_that_never_connects() {
        let backend = fake();
        let mut c = start(&backend, 64);
        let started = Instant::now();
        assert!(c.recv().await.unwrap().starts_with("0{"));
        // Answers pings, but never joins a namespace.
        while let Some(ping) = c.recv().await {
            assert_eq!(ping, "2");
            c.send("3").await;
        }
        assert_eq!(started.elapsed(), CONNECT_TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn drops_a_client_that_does_not_read() {
        let backend = fake();
        // The transport accepts one message, then blocks: the queue fills up.
        let mut c = start(&backend, 1);
        c.connect("key-a").await;
        for i in 0..SEND_QUEUE + 8 {
            if backend.events.send((ORG_A, i.to_string())).is_err() {
                break; // dropped already
            }
            tokio::task::yield_now().await;
        }
        tokio::time::timeout(Duration::from_secs(1), &mut c.task)
            .await
            .expect("the connection is dropped")
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn drops_a_client_the_event_channel_overtook() {
        let backend = Fake {
            events: broadcast::channel(4).0,
            shutdown: CancellationToken::new(),
        };
        let mut c = start(&backend, 64);
        c.connect("key-a").await;
        // Published faster than the session can run: the receiver lags.
        for i in 0..16 {
            backend.events.send((ORG_A, i.to_string())).unwrap();
        }
        while c.recv().await.is_some() {}
        c.task.await.unwrap();
    }
}
