//! Serving one API listener under limits: a header timeout (also closing idle keep-alive
//! connections), an idle timeout on request bodies, and a cap on open connections, with a smaller
//! cap for connections whose peer is not yet known to be allowed.
//!
//! When a cap is reached, the oldest connection that is between requests is closed to make room
//! (one not yet allowed first); only when every connection is inside a request is the new one
//! refused. A slow or idle client therefore cannot keep a working one out, and no request in
//! progress is ever cut. Refusals are logged at most once per [`LOG_INTERVAL`] per listener, as
//! a count.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::task::JoinSet;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tower_http::timeout::TimeoutBody;

use super::error::ApiError;
use super::listener::CheckedUnixListener;

/// Refusals on one listener are summarised at most this often.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The limits one listener serves under.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Longest wait for a request's headers, and for the next request on an idle connection.
    pub header_timeout: Duration,
    /// Longest wait for the next piece of a request body.
    pub body_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most connections open at once whose peer is not yet allowed.
    pub max_unauthenticated: usize,
}

/// What is known about a peer when its connection is accepted.
pub enum Admission {
    /// Allowed by its credentials (Unix socket).
    Allowed,
    /// Allowed only once a request carries the token (TCP).
    Pending,
    /// Refused by its credentials; it is told why in a 403.
    Refused(String),
}

/// A listener the API is served on.
pub enum ApiListener {
    /// The Unix socket, peer credentials checked.
    Unix(CheckedUnixListener),
    /// TCP, bearer token checked per request.
    Tcp(TcpListener),
}

type Stream = Either<UnixStream, TcpStream>;

impl ApiListener {
    fn name(&self) -> &'static str {
        match self {
            Self::Unix(_) => "unix",
            Self::Tcp(_) => "tcp",
        }
    }

    async fn accept(&mut self) -> std::io::Result<(Stream, Admission)> {
        match self {
            Self::Unix(l) => {
                let (stream, admission) = l.accept_checked().await?;
                Ok((Either::Left(stream), admission))
            }
            Self::Tcp(l) => {
                let (stream, _) = l.accept().await?;
                Ok((Either::Right(stream), Admission::Pending))
            }
        }
    }
}

/// Marks the connection a request came in on as allowed (the TCP token check found the token).
#[derive(Clone)]
pub struct ConnectionHandle(Arc<ConnState>);

impl ConnectionHandle {
    /// The peer proved itself; it no longer counts against the unauthenticated cap.
    pub fn mark_allowed(&self) {
        self.0.allowed.store(true, Ordering::SeqCst);
    }
}

/// `active` holds this once a connection has been chosen for closing; no request starts on it.
const EVICTED: usize = usize::MAX;

struct ConnState {
    allowed: AtomicBool,
    /// Requests in progress (response not yet fully written), or [`EVICTED`].
    active: AtomicUsize,
    close: CancellationToken,
}

impl ConnState {
    /// Count a request in, unless the connection is being closed.
    fn begin_request(self: &Arc<Self>) -> Option<RequestGuard> {
        self.active
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |a| {
                (a != EVICTED).then(|| a + 1)
            })
            .ok()
            .map(|_| RequestGuard(self.clone()))
    }

    /// Claim the connection for closing if no request is in progress on it.
    fn try_evict(&self) -> bool {
        self.active
            .compare_exchange(0, EVICTED, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }
}

/// Held by a request until its response has been written (or dropped).
struct RequestGuard(Arc<ConnState>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The open connections of one listener, oldest first.
struct Registry {
    limits: ServeLimits,
    next_id: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<ConnState>>>,
}

/// Why a connection was refused or closed early (the log's `reason` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Refusal {
    /// Every connection is inside a request.
    Full,
    /// Every unauthenticated connection is inside a request.
    UnauthenticatedFull,
    /// An idle connection closed to make room for a new one.
    Evicted,
    /// Peer credentials not allowed (answered with 403).
    PeerNotAllowed,
    /// accept(2) failed (out of descriptors and the like).
    AcceptFailed,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Self::Full => "connection cap reached, all connections busy",
            Self::UnauthenticatedFull => "unauthenticated connection cap reached, all of them busy",
            Self::Evicted => "idle connection closed to make room",
            Self::PeerNotAllowed => "peer not allowed",
            Self::AcceptFailed => "accept failed",
        }
    }
}

impl Registry {
    fn new(limits: ServeLimits) -> Self {
        Self {
            limits,
            next_id: AtomicU64::new(0),
            open: Mutex::new(BTreeMap::new()),
        }
    }

    /// Register a new connection, closing the oldest idle one if a cap is reached. Returns the
    /// connection's id and state, and how many were closed to make room; `Err` when it must be
    /// refused instead.
    fn admit(&self, allowed: bool) -> Result<(u64, Arc<ConnState>, usize), Refusal> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let mut evicted = 0;
        if !allowed {
            let unauthenticated = open
                .values()
                .filter(|c| !c.allowed.load(Ordering::SeqCst))
                .count();
            if unauthenticated >= self.limits.max_unauthenticated {
                if !evict_oldest(&mut open, |c| !c.allowed.load(Ordering::SeqCst)) {
                    return Err(Refusal::UnauthenticatedFull);
                }
                evicted += 1;
            }
        }
        if open.len() >= self.limits.max_connections {
            let made_room = evict_oldest(&mut open, |c| !c.allowed.load(Ordering::SeqCst))
                || evict_oldest(&mut open, |_| true);
            if !made_room {
                return Err(Refusal::Full);
            }
            evicted += 1;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState {
            allowed: AtomicBool::new(allowed),
            active: AtomicUsize::new(0),
            close: CancellationToken::new(),
        });
        open.insert(id, state.clone());
        Ok((id, state, evicted))
    }

    fn remove(&self, id: u64) {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }
}

/// Close the oldest idle connection that `eligible` accepts; false when there is none.
fn evict_oldest(
    open: &mut BTreeMap<u64, Arc<ConnState>>,
    eligible: impl Fn(&ConnState) -> bool,
) -> bool {
    let victim = open
        .iter()
        .find(|(_, c)| eligible(c) && c.try_evict())
        .map(|(id, _)| *id);
    match victim.and_then(|id| open.remove(&id)) {
        Some(conn) => {
            conn.close.cancel();
            true
        }
        None => false,
    }
}

/// Counts refusals and logs them at most once per interval: the first one of a quiet period at
/// once, the rest as one summary line.
struct RefusalLog {
    listener: &'static str,
    counts: BTreeMap<Refusal, u64>,
    quiet_until: Option<tokio::time::Instant>,
}

impl RefusalLog {
    fn new(listener: &'static str) -> Self {
        Self {
            listener,
            counts: BTreeMap::new(),
            quiet_until: None,
        }
    }

    fn record(&mut self, refusal: Refusal, detail: &str) {
        let now = tokio::time::Instant::now();
        if self.quiet_until.is_none_or(|t| now >= t) && self.counts.is_empty() {
            self.quiet_until = Some(now + LOG_INTERVAL);
            tracing::warn!(
                listener = self.listener,
                reason = refusal.label(),
                detail,
                summary_every_s = LOG_INTERVAL.as_secs(),
                "API connection refused; further refusals on this listener are summarised"
            );
            return;
        }
        *self.counts.entry(refusal).or_default() += 1;
    }

    /// Log the summary of the interval that ended, if anything was counted.
    fn flush(&mut self) {
        if self.counts.is_empty() {
            return;
        }
        let total: u64 = self.counts.values().sum();
        let reasons = self
            .counts
            .iter()
            .map(|(r, n)| format!("{}: {n}", r.label()))
            .collect::<Vec<_>>()
            .join("; ");
        tracing::warn!(
            listener = self.listener,
            refused = total,
            reasons,
            "API connections refused or closed early in the last interval"
        );
        self.counts.clear();
        self.quiet_until = Some(tokio::time::Instant::now() + LOG_INTERVAL);
    }
}

/// Serve `router` on `listener` until `shutdown`; then finish the requests in progress and
/// return once every connection is closed.
pub async fn serve(
    mut listener: ApiListener,
    router: Router,
    limits: ServeLimits,
    shutdown: CancellationToken,
) {
    let name = listener.name();
    let registry = Arc::new(Registry::new(limits));
    let mut log = RefusalLog::new(name);
    let mut summary = tokio::time::interval(LOG_INTERVAL);
    summary.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut connections = JoinSet::new();
    loop {
        let (stream, admission) = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = summary.tick() => { log.flush(); continue; }
            Some(_) = connections.join_next() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    log.record(Refusal::AcceptFailed, &e.to_string());
                    // Out of descriptors and the like: back off rather than spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let allowed = matches!(admission, Admission::Allowed);
        let (id, state, evicted) = match registry.admit(allowed) {
            Ok(admitted) => admitted,
            Err(refusal) => {
                log.record(refusal, "");
                continue;
            }
        };
        for _ in 0..evicted {
            log.record(Refusal::Evicted, "");
        }
        let refused = match admission {
            Admission::Refused(reason) => {
                log.record(Refusal::PeerNotAllowed, &reason);
                Some(Arc::new(reason))
            }
            Admission::Allowed | Admission::Pending => None,
        };
        let service = connection_service(router.clone(), state.clone(), limits, refused);
        connections.spawn(serve_connection(
            stream,
            service,
            state,
            limits,
            shutdown.clone(),
            registry.clone(),
            id,
        ));
    }
    log.flush();
    // Requests in progress finish; the daemon bounds how long it waits for this.
    while connections.join_next().await.is_some() {}
}

type ServiceFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response, Infallible>> + Send>>;

/// The routes, with the body timeout, the connection's handle in the request's extensions, and
/// the request counted as in progress until its response has been written. For a peer refused by
/// its credentials, every request is answered 403 with the reason instead.
fn connection_service(
    router: Router,
    state: Arc<ConnState>,
    limits: ServeLimits,
    refused: Option<Arc<String>>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response,
    Error = Infallible,
    Future = ServiceFuture,
> {
    hyper::service::service_fn(move |request: Request<Incoming>| {
        let router = router.clone();
        let state = state.clone();
        let refused = refused.clone();
        Box::pin(async move {
            if let Some(reason) = refused {
                let mut response =
                    ApiError::new(StatusCode::FORBIDDEN, "peer_not_allowed", reason.as_str())
                        .into_response();
                // One answer is all a refused peer gets.
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return Ok(response);
            }
            let Some(guard) = state.begin_request() else {
                return Ok(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "connection_closing",
                    "this connection is being closed to make room for others; retry on a new one",
                )
                .into_response());
            };
            let mut request =
                request.map(|body| Body::new(TimeoutBody::new(limits.body_timeout, body)));
            request
                .extensions_mut()
                .insert(ConnectionHandle(state.clone()));
            let response = match router.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            // The guard lives in the body, so a streamed answer counts until its last byte.
            Ok(response.map(|body| {
                Body::new(body.map_frame(move |frame| {
                    let _in_progress = &guard;
                    frame
                }))
            }))
        }) as ServiceFuture
    })
}

/// One connection: served until it ends, is closed to make room, or the listener shuts down (then
/// the request in progress finishes first).
async fn serve_connection<S>(
    stream: Stream,
    service: S,
    state: Arc<ConnState>,
    limits: ServeLimits,
    shutdown: CancellationToken,
    registry: Arc<Registry>,
    id: u64,
) where
    S: hyper::service::Service<Request<Incoming>, Response = Response, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut draining = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::trace!(error = %e, "connection ended with an error");
                }
                break;
            }
            // Chosen to make room: no request is in progress on it, so just close.
            _ = state.close.cancelled() => break,
            _ = shutdown.cancelled(), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
    registry.remove(id);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, unauth: usize) -> ServeLimits {
        ServeLimits {
            header_timeout: Duration::from_secs(1),
            body_timeout: Duration::from_secs(1),
            max_connections: max,
            max_unauthenticated: unauth,
        }
    }

    #[test]
    fn a_full_listener_closes_its_oldest_idle_connection_not_a_busy_one() {
        let registry = Registry::new(limits(2, 2));
        let (_, first, _) = registry.admit(true).unwrap();
        let (_, second, _) = registry.admit(true).unwrap();
        let _busy = first.begin_request().unwrap();
        let (_, _third, evicted) = registry.admit(true).unwrap();
        assert_eq!(evicted, 1);
        assert!(!first.close.is_cancelled());
        assert!(second.close.is_cancelled());
        assert!(second.begin_request().is_none(), "no request starts on it");
    }

    #[test]
    fn unauthenticated_connections_go_first_and_have_their_own_cap() {
        let registry = Registry::new(limits(3, 1));
        let (_, allowed, _) = registry.admit(true).unwrap();
        let (_, stranger, _) = registry.admit(false).unwrap();
        // A second stranger replaces the first rather than growing their share.
        let (_, newer, evicted) = registry.admit(false).unwrap();
        assert_eq!(evicted, 1);
        assert!(stranger.close.is_cancelled());
        // Full: the stranger goes before the allowed connection that is older.
        registry.admit(true).unwrap();
        let (_, _, evicted) = registry.admit(true).unwrap();
        assert_eq!(evicted, 1);
        assert!(newer.close.is_cancelled());
        assert!(!allowed.close.is_cancelled());
    }

    #[test]
    fn a_listener_whose_connections_are_all_busy_refuses() {
        let registry = Registry::new(limits(1, 1));
        let (_, only, _) = registry.admit(true).unwrap();
        let _busy = only.begin_request().unwrap();
        assert_eq!(registry.admit(true).err(), Some(Refusal::Full));
        assert_eq!(registry.admit(false).err(), Some(Refusal::Full));
        let registry = Registry::new(limits(3, 1));
        let (_, stranger, _) = registry.admit(false).unwrap();
        let _busy = stranger.begin_request().unwrap();
        assert_eq!(
            registry.admit(false).err(),
            Some(Refusal::UnauthenticatedFull)
        );
        assert!(registry.admit(true).is_ok());
    }
}
