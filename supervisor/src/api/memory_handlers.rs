//! `/api/v1/memory/...`: the embedded memory over the management API.
//!
//! Only HTTP lives here: every route is a [`MemoryRoute`]; [`parse`] turns a route, its query
//! string and its body into a checked [`MemoryOp`] (`crate::memory::operations`, which runs it),
//! and [`reply`] turns the operation's result into the answer: status, error kind and JSON.
//!
//! Every request names the memory it works in with `scope=agent-only:NAME`,
//! `scope=workspace:NAME` or `scope=global`; there is no default. Search may name several
//! scopes (`scope` repeated); stats and export without a scope cover every scope.

use std::str::FromStr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use caxton_api_contract::memory::{
    GraphParams, MemoryRequest, MemoryRoute, ObservationsBody, SearchParams,
};
use caxton_memory::{EmbedError, MemoryError, text_from_bytes};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::Instrument;

use super::error::ApiError;
use crate::Supervisor;
use crate::memory::{Export, MemoryOp, OperationError, OperationReply};

type Shared = State<Arc<Supervisor>>;
type Body = Result<Bytes, BytesRejection>;

/// Most bytes an import request may carry. An export with embeddings takes about 2.5 KB per
/// observation, so this holds roughly 100,000 of them; larger memories move scope by scope or
/// without embeddings (`embeddings=false`), which the importing side recomputes.
pub const MAX_IMPORT_BODY: usize = 256 << 20;

/// Query parameters, decoded, checked against what the route understands.
struct Params(Vec<(String, String)>);

impl Params {
    fn new(route: &MemoryRoute, query: &str) -> Result<Self, ApiError> {
        let allowed = route.parameters();
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if let Some((k, _)) = pairs.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            return Err(bad_request(format!(
                "unknown query parameter {k:?}: {} {} takes {}",
                route.method(),
                route.path(),
                allowed.join(", ")
            )));
        }
        Ok(Self(pairs))
    }

    fn all(&self, key: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn one(&self, key: &str) -> Result<Option<&str>, ApiError> {
        let mut values = self.all(key);
        let first = values.next();
        if values.next().is_some() {
            return Err(bad_request(format!(
                "query parameter {key} is given more than once"
            )));
        }
        Ok(first)
    }

    fn parsed<T: FromStr>(&self, key: &str, what: &str) -> Result<Option<T>, ApiError> {
        self.one(key)?
            .map(|v| {
                v.parse()
                    .map_err(|_| bad_request(format!("query parameter {key}={v:?} is not {what}")))
            })
            .transpose()
    }

    fn flag(&self, key: &str, default: bool) -> Result<bool, ApiError> {
        match self.one(key)? {
            None => Ok(default),
            Some("true" | "1" | "yes") => Ok(true),
            Some("false" | "0" | "no") => Ok(false),
            Some(v) => Err(bad_request(format!(
                "query parameter {key}={v:?} is not true or false"
            ))),
        }
    }

    fn graph(&self) -> Result<GraphParams, ApiError> {
        Ok(GraphParams {
            depth: self.parsed("depth", "a number of hops")?,
            relation_types: self.texts("relation_type"),
            direction: self.text("direction")?,
            limit: self.parsed("limit", "a number")?,
        })
    }

    fn text(&self, key: &str) -> Result<Option<String>, ApiError> {
        Ok(self.one(key)?.map(str::to_owned))
    }

    fn texts(&self, key: &str) -> Vec<String> {
        self.all(key).map(str::to_owned).collect()
    }

    /// The one scope of a route on one memory; empty when absent, which the operation refuses.
    fn scope(&self) -> Result<String, ApiError> {
        self.required("scope")
    }

    /// A parameter the operation requires; empty when absent, which the operation refuses.
    fn required(&self, key: &str) -> Result<String, ApiError> {
        Ok(self.one(key)?.unwrap_or_default().to_owned())
    }
}

/// A JSON body: refused with a message naming the problem when it is not UTF-8, empty, not
/// JSON, or has a missing or unknown field.
fn json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let text = text_from_bytes(body, "request body").map_err(|e| memory_error(&e))?;
    if text.trim().is_empty() {
        return Err(bad_request(
            "the request body is empty: expected a JSON object",
        ));
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad_request(format!("request body: {e}")))?;
    // serde would otherwise read an array as the struct's fields in order.
    if !value.is_object() {
        return Err(bad_request(format!(
            "the request body must be a JSON object, not {}",
            super::handlers::json_kind(&value)
        )));
    }
    serde_json::from_value(value).map_err(|e| bad_request(format!("request body: {e}")))
}

/// Read a request to `route` (its query string and body) into the API's [`MemoryRequest`],
/// then check it into an operation. Only HTTP is read here: which parameters a route takes,
/// numbers and flags in the query, the JSON body; the rest is the operation's to check.
pub fn parse(route: MemoryRoute, query: &str, body: Bytes) -> Result<MemoryOp, ApiError> {
    let p = Params::new(&route, query)?;
    let request = match route {
        MemoryRoute::UpsertEntity => MemoryRequest::Upsert {
            scope: p.scope()?,
            entity: json_body(&body)?,
        },
        MemoryRoute::ShowEntity(name) => MemoryRequest::Show {
            scope: p.scope()?,
            name,
        },
        MemoryRoute::DeleteEntity(name) => MemoryRequest::Delete {
            scope: p.scope()?,
            name,
        },
        MemoryRoute::AddObservations(name) => MemoryRequest::AddObservations {
            scope: p.scope()?,
            name,
            observations: json_body::<ObservationsBody>(&body)?.observations,
        },
        MemoryRoute::DeleteObservations(name) => MemoryRequest::DeleteObservations {
            scope: p.scope()?,
            name,
            observations: json_body::<ObservationsBody>(&body)?.observations,
        },
        MemoryRoute::Neighbours(name) => MemoryRequest::Neighbours {
            scope: p.scope()?,
            name,
            graph: p.graph()?,
        },
        MemoryRoute::Relate => MemoryRequest::Relate {
            scope: p.scope()?,
            relation: json_body(&body)?,
        },
        MemoryRoute::Unrelate => MemoryRequest::Unrelate {
            scope: p.scope()?,
            from: p.required("from")?,
            to: p.required("to")?,
            relation_type: p.required("relation_type")?,
        },
        MemoryRoute::Search => MemoryRequest::Search(SearchParams {
            query: p.required("query")?,
            scopes: p.texts("scope"),
            mode: p.text("mode")?,
            limit: p.parsed("limit", "a number")?,
            min_similarity: p.parsed("min_similarity", "a number")?,
            types: p.texts("type"),
            since: p.text("since")?,
            until: p.text("until")?,
        }),
        MemoryRoute::Path => MemoryRequest::Path {
            scope: p.scope()?,
            from: p.required("from")?,
            to: p.required("to")?,
            depth: p.parsed("depth", "a number of hops")?,
            relation_types: p.texts("relation_type"),
            direction: p.text("direction")?,
        },
        MemoryRoute::Export => MemoryRequest::Export {
            scopes: p.texts("scope"),
            format: p.text("format")?,
            embeddings: Some(p.flag("embeddings", true)?),
        },
        MemoryRoute::Import => MemoryRequest::Import {
            scope: p.text("scope")?,
            format: p.text("format")?,
            file: body.to_vec(),
        },
        MemoryRoute::Stats => MemoryRequest::Stats {
            scopes: p.texts("scope"),
            check: p.flag("check", false)?,
        },
    };
    MemoryOp::from_request(request).map_err(bad_request)
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
}

/// A JSON answer or an export file.
#[derive(Debug)]
pub enum Reply {
    /// A JSON document with its status.
    Json(StatusCode, Value),
    /// An export file.
    File {
        /// `application/json` or `application/x-ndjson`.
        content_type: &'static str,
        /// The file.
        bytes: Vec<u8>,
    },
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        match self {
            Self::Json(status, value) => (status, axum::Json(value)).into_response(),
            Self::File {
                content_type,
                bytes,
            } => ([(header::CONTENT_TYPE, content_type)], bytes).into_response(),
        }
    }
}

/// The answer for an operation's result: a new entity is 201, an error as [`memory_error`],
/// a missing relation 404.
pub fn reply(result: Result<OperationReply, OperationError>) -> Result<Reply, ApiError> {
    match result {
        Ok(OperationReply::Json { created, body }) => Ok(Reply::Json(
            if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            },
            body,
        )),
        Ok(OperationReply::File {
            content_type,
            bytes,
        }) => Ok(Reply::File {
            content_type,
            bytes,
        }),
        Err(OperationError::Memory(e)) => Err(memory_error(&e)),
        Err(e @ OperationError::RelationNotFound { .. }) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "relation_not_found",
            e.to_string(),
        )),
    }
}

/// The answer for a memory error: the caller's fault is a 400 naming the field or record, a
/// missing entity 404, a full disk 507, a lock held too long 503, the rest 500.
pub fn memory_error(e: &MemoryError) -> ApiError {
    let (status, kind) = match e {
        MemoryError::InvalidInput { .. } => (StatusCode::BAD_REQUEST, "invalid_input"),
        MemoryError::InvalidUtf8 { .. } => (StatusCode::BAD_REQUEST, "invalid_utf8"),
        MemoryError::Import { .. } => (StatusCode::BAD_REQUEST, "import_refused"),
        MemoryError::EntityNotFound { .. } => (StatusCode::NOT_FOUND, "entity_not_found"),
        MemoryError::DiskFull => (StatusCode::INSUFFICIENT_STORAGE, "disk_full"),
        MemoryError::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
        MemoryError::SchemaTooNew { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "schema_too_new"),
        // Fetching the model fixes it without a restart.
        MemoryError::Embedding(EmbedError::Missing { .. }) => {
            (StatusCode::SERVICE_UNAVAILABLE, "embedding_model_missing")
        }
        MemoryError::Embedding(_) => (StatusCode::INTERNAL_SERVER_ERROR, "embedding_failed"),
        MemoryError::Open { .. } | MemoryError::Database(_) | MemoryError::Io(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "memory_error")
        }
    };
    ApiError::new(status, kind, e.to_string())
}

/// Parse, run on the blocking pool inside a span naming the operation and its scopes, answer.
async fn serve(
    sup: Arc<Supervisor>,
    route: MemoryRoute,
    query: Option<String>,
    body: Body,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(r) => return body_rejection(&r).into_response(),
    };
    let op = match parse(route, query.as_deref().unwrap_or(""), body) {
        Ok(op) => op,
        Err(e) => {
            tracing::debug!(error = %e.message, "memory request refused");
            return e.into_response();
        }
    };
    let span = tracing::info_span!(
        "memory",
        op = op.name(),
        scope = %op.scope_label(),
        status = tracing::field::Empty,
    );
    // Exports are streamed rather than built whole in memory; everything else runs whole.
    let op = match op {
        MemoryOp::Export(export) => return stream_export(&sup, export, span),
        op => op,
    };
    let (name, started) = (op.name(), std::time::Instant::now());
    let inner = span.clone();
    let result = sup
        .memory()
        .run(move |m| {
            let _entered = inner.enter();
            Ok(reply(op.run(m)))
        })
        .instrument(span.clone())
        .await;
    let status = match &result {
        Ok(Ok(Reply::Json(status, _))) => *status,
        Ok(Ok(Reply::File { .. })) => StatusCode::OK,
        Ok(Err(e)) => e.status,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let outcome = match status.as_u16() {
        200..=299 => "ok",
        400..=499 => "refused",
        _ => "failed",
    };
    sup.memory().record(name, outcome, started);
    let reply = match result {
        Ok(Ok(reply)) => reply,
        Ok(Err(e)) => {
            span.record("status", e.status.as_u16());
            if e.status.is_server_error() {
                tracing::warn!(parent: &span, kind = e.kind, error = %e.message, "memory operation failed");
            }
            return e.into_response();
        }
        // The blocking task itself failed (a panic).
        Err(e) => return memory_error(&e).into_response(),
    };
    if let Reply::Json(status, _) = &reply {
        span.record("status", status.as_u16());
    }
    reply.into_response()
}

/// Answer an export with the file as it is read, 64 KiB at a time, so that exporting a large
/// memory never holds the whole file in the daemon. A failure after the first byte aborts the
/// response, so a client never takes a cut-off file for a whole one.
fn stream_export(sup: &Arc<Supervisor>, export: Export, span: tracing::Span) -> Response {
    let (chunks, body) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    let content_type = export.content_type();
    let memory = sup.memory().memory().clone();
    let service = sup.clone();
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        let started = std::time::Instant::now();
        let mut out = std::io::BufWriter::with_capacity(64 << 10, ChunkWriter(chunks.clone()));
        let written = export
            .write(&memory, &mut out)
            .and_then(|()| std::io::Write::flush(&mut out).map_err(MemoryError::from));
        service
            .memory()
            .record("export", crate::memory::outcome_of(&written), started);
        match written {
            Ok(()) => {
                span.record("status", 200);
                tracing::info!("memory exported");
            }
            Err(e) => {
                tracing::warn!(error = %e, "memory export stopped");
                let _ = chunks.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        }
    });
    let stream = futures_util::stream::unfold(body, |mut body| async move {
        body.recv().await.map(|chunk| (chunk, body))
    });
    (
        [(header::CONTENT_TYPE, content_type)],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

/// Hands what is written to the response body; fails once the client has gone.
struct ChunkWriter(tokio::sync::mpsc::Sender<std::io::Result<Bytes>>);

impl std::io::Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
            })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn body_rejection(r: &BytesRejection) -> ApiError {
    let status = r.status();
    let kind = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "body_too_large"
    } else {
        "bad_request"
    };
    ApiError::new(status, kind, r.body_text())
}

fn name_of(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(name)| name)
        .map_err(|r| bad_request(format!("entity name in the path: {}", r.body_text())))
}

/// A route on one entity: its name from the path, then as [`serve`].
async fn serve_entity(
    sup: Arc<Supervisor>,
    route: fn(String) -> MemoryRoute,
    name: Result<Path<String>, PathRejection>,
    query: Option<String>,
    body: Body,
) -> Response {
    match name_of(name) {
        Ok(n) => serve(sup, route(n), query, body).await,
        Err(e) => e.into_response(),
    }
}

/// `POST /api/v1/memory/entities`
pub async fn upsert_entity(State(sup): Shared, RawQuery(q): RawQuery, body: Body) -> Response {
    serve(sup, MemoryRoute::UpsertEntity, q, body).await
}

/// `GET /api/v1/memory/entities/{name}`
pub async fn show_entity(
    State(sup): Shared,
    name: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
    body: Body,
) -> Response {
    serve_entity(sup, MemoryRoute::ShowEntity, name, q, body).await
}

/// `DELETE /api/v1/memory/entities/{name}`
pub async fn delete_entity(
    State(sup): Shared,
    name: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
    body: Body,
) -> Response {
    serve_entity(sup, MemoryRoute::DeleteEntity, name, q, body).await
}

/// `POST /api/v1/memory/entities/{name}/observations`
pub async fn add_observations(
    State(sup): Shared,
    name: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
    body: Body,
) -> Response {
    serve_entity(sup, MemoryRoute::AddObservations, name, q, body).await
}

/// `DELETE /api/v1/memory/entities/{name}/observations`
pub async fn delete_observations(
    State(sup): Shared,
    name: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
    body: Body,
) -> Response {
    serve_entity(sup, MemoryRoute::DeleteObservations, name, q, body).await
}

/// `GET /api/v1/memory/entities/{name}/neighbours`
pub async fn neighbours(
    State(sup): Shared,
    name: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
    body: Body,
) -> Response {
    serve_entity(sup, MemoryRoute::Neighbours, name, q, body).await
}

/// `POST /api/v1/memory/relations`
pub async fn relate(State(sup): Shared, RawQuery(q): RawQuery, body: Body) -> Response {
    serve(sup, MemoryRoute::Relate, q, body).await
}

/// `DELETE /api/v1/memory/relations`
pub async fn unrelate(State(sup): Shared, RawQuery(q): RawQuery, body: Body) -> Response {
    serve(sup, MemoryRoute::Unrelate, q, body).await
}

/// `GET /api/v1/memory/search`
pub async fn search(State(sup): Shared, RawQuery(q): RawQuery, body: Body) -> Response {
    serve(sup, MemoryRoute::Search, q, body).await
}

/// `GET /api/v1/memory/path`
pub async fn path(State(sup): Shared, RawQuery(q): RawQuery, body: Body) -> Response {
    serve(sup, MemoryRoute::Path, q, body).await
}

/// `GET /api/v1/memory/export`
pub async fn export(State(sup): Shared, RawQuery(q): RawQuery, body: Body) -> Response {
    serve(sup, MemoryRoute::Export, q, body).await
}

/// `POST /api/v1/memory/import`
pub async fn import(State(sup): Shared, RawQuery(q): RawQuery, body: Body) -> Response {
    serve(sup, MemoryRoute::Import, q, body).await
}

/// `GET /api/v1/memory/stats`
pub async fn stats(State(sup): Shared, RawQuery(q): RawQuery, body: Body) -> Response {
    serve(sup, MemoryRoute::Stats, q, body).await
}

/// Refuse an import whose declared length is over [`MAX_IMPORT_BODY`] before reading it, with
/// a message saying what to do instead.
pub async fn refuse_oversized_import(request: Request, next: Next) -> Response {
    match super::handlers::declared_length(&request) {
        Some(len) if len > MAX_IMPORT_BODY as u64 => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "import file of {len} bytes exceeds the {}-MiB import limit: export and import one scope at a time, or export with embeddings=false",
                MAX_IMPORT_BODY >> 20
            ),
        )
        .into_response(),
        _ => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use caxton_api_contract::memory::{EntityUpsert, RelationBody};

    use super::*;
    use crate::memory::FileFormat;

    /// A client's request, sent as the contract writes it in HTTP and read back here, is the
    /// operation the same request makes in the client's own process.
    #[test]
    fn a_request_over_http_is_the_same_operation_as_in_process() {
        let graph = GraphParams {
            depth: Some(2),
            relation_types: vec!["works at".into(), "knows".into()],
            direction: Some("incoming".into()),
            limit: Some(7),
        };
        let requests = [
            MemoryRequest::Upsert {
                scope: "workspace:ops team".into(),
                entity: EntityUpsert {
                    name: "Ada+Lovelace / 1".into(),
                    entity_type: Some("person".into()),
                    observations: vec!["writes & counts".into()],
                    metadata: Some(serde_json::Map::from_iter([("k".into(), 1.into())])),
                },
            },
            MemoryRequest::Show {
                scope: "global".into(),
                name: "Ada+Lovelace / 1".into(),
            },
            MemoryRequest::AddObservations {
                scope: "agent-only:bot".into(),
                name: "x?y#z".into(),
                observations: vec!["a".into(), "b".into()],
            },
            MemoryRequest::Neighbours {
                scope: "global".into(),
                name: "Ada".into(),
                graph: graph.clone(),
            },
            MemoryRequest::Relate {
                scope: "global".into(),
                relation: RelationBody {
                    from: "A".into(),
                    to: "B".into(),
                    relation_type: "knows".into(),
                    strength: Some(0.5),
                },
            },
            MemoryRequest::Unrelate {
                scope: "global".into(),
                from: "A".into(),
                to: "B & C".into(),
                relation_type: "knows".into(),
            },
            MemoryRequest::Search(SearchParams {
                query: "tea, earl grey=hot".into(),
                scopes: vec!["global".into(), "workspace:w".into()],
                mode: Some("keyword".into()),
                limit: Some(3),
                min_similarity: Some(0.25),
                types: vec!["drink".into()],
                since: Some("2026-01-31T09:00:00Z".into()),
                until: None,
            }),
            MemoryRequest::Path {
                scope: "global".into(),
                from: "A".into(),
                to: "B".into(),
                depth: Some(3),
                relation_types: graph.relation_types.clone(),
                direction: Some("both".into()),
            },
            MemoryRequest::Export {
                scopes: vec!["global".into()],
                format: Some("mcp".into()),
                embeddings: Some(false),
            },
            MemoryRequest::Import {
                scope: Some("global".into()),
                format: None,
                file: br#"{"type":"entity","name":"A","entityType":"t","observations":[]}"#
                    .to_vec(),
            },
            MemoryRequest::Stats {
                scopes: vec![],
                check: true,
            },
        ];
        for request in requests {
            let direct = format!("{:?}", MemoryOp::from_request(request.clone()).unwrap());
            let target = request.path_and_query();
            let (path, query) = target.split_once('?').unwrap_or((&target, ""));
            assert_eq!(path, request.route().path());
            let (_, body) = request.body();
            let over_http = parse(request.route(), query, Bytes::from(body)).unwrap();
            assert_eq!(format!("{over_http:?}"), direct, "{target}");
        }
    }

    fn refused(route: MemoryRoute, query: &str, body: &[u8]) -> ApiError {
        match parse(route, query, Bytes::copy_from_slice(body)) {
            Ok(op) => panic!("{} was accepted", op.name()),
            Err(e) => e,
        }
    }

    #[test]
    fn every_request_names_its_scope_and_a_bad_one_is_explained() {
        let e = refused(MemoryRoute::UpsertEntity, "", br#"{"name":"Ada"}"#);
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("scope is required"), "{}", e.message);
        let e = refused(MemoryRoute::ShowEntity("Ada".into()), "scope=agent:x", b"");
        assert!(
            e.message.contains("scope=\"agent:x\"") && e.message.contains("agent-only:NAME"),
            "{}",
            e.message
        );
        let e = refused(MemoryRoute::Search, "query=tea", b"");
        assert!(e.message.contains("scope is required"), "{}", e.message);
        assert!(parse(MemoryRoute::Stats, "", Bytes::new()).is_ok());
    }

    #[test]
    fn unknown_parameters_and_fields_are_named() {
        let e = refused(MemoryRoute::Search, "scope=global&query=x&limt=3", b"");
        assert!(
            e.message.contains("\"limt\"") && e.message.contains("limit"),
            "{}",
            e.message
        );
        let e = refused(
            MemoryRoute::UpsertEntity,
            "scope=global",
            br#"{"name":"Ada","observation":["x"]}"#,
        );
        assert!(e.message.contains("observation"), "{}", e.message);
        let e = refused(
            MemoryRoute::UpsertEntity,
            "scope=global",
            b"{\"name\":\"A\xffda\"}",
        );
        assert_eq!(e.kind, "invalid_utf8");
        assert!(e.message.contains("offset 10"), "{}", e.message);
    }

    #[test]
    fn import_detects_the_mcp_format_and_needs_a_scope_for_it() {
        let mcp = br#"{"type":"entity","name":"A","entityType":"t","observations":[]}"#;
        assert_eq!(FileFormat::detect(mcp), FileFormat::Mcp);
        assert_eq!(
            FileFormat::detect(b"\n{\"type\":\"entity\",\"name\":\"\xff\"}"),
            FileFormat::Mcp,
            "a bad byte does not hide the format"
        );
        assert_eq!(FileFormat::detect(b"{\"type\":\"ent"), FileFormat::Mcp);
        assert_eq!(
            FileFormat::detect(b"{\n  \"format\": \"caxton-memory\"\n}"),
            FileFormat::Caxton
        );
        let e = refused(MemoryRoute::Import, "", mcp);
        assert!(e.message.contains("scope is required"), "{}", e.message);
        assert!(
            parse(
                MemoryRoute::Import,
                "scope=workspace:w",
                Bytes::from_static(mcp)
            )
            .is_ok()
        );
        let e = refused(MemoryRoute::Export, "format=mcp", b"");
        assert!(e.message.contains("one scope"), "{}", e.message);
    }
}
