//! A small HTTP/1.1 client for the management API over its Unix socket.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use caxton_api_contract::ErrorAnswer;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a request to the daemon failed before it produced an API answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No daemon listens on the socket.
    #[error("no caxton daemon is running on {} (start one with `caxton serve`)", .0.display())]
    NotRunning(PathBuf),
    /// Connecting failed for another reason (permissions, ...).
    #[error("cannot connect to the daemon at {}: {}", .0.display(), .1)]
    Connect(PathBuf, std::io::Error),
    /// The daemon closed the connection before answering.
    #[error(
        "the daemon at {} closed the connection without answering (it may be at its connection \
         limit, or stopping; its log says why)",
        .0.display()
    )]
    Closed(PathBuf),
    /// The HTTP exchange failed.
    #[error("talking to the daemon: {0}")]
    Http(String),
}

/// The daemon's refusal: its error answer.
#[derive(Debug)]
pub struct Refusal {
    /// The error answer (one made up from the status when the body was not one).
    pub answer: ErrorAnswer,
    /// The body as it came (a draining daemon's health answer is not an error answer).
    pub body: Bytes,
}

impl Refusal {
    /// Read an error answer; a body that is not one still names the status.
    pub fn read(status: StatusCode, body: Bytes) -> Self {
        let answer = serde_json::from_slice::<ErrorAnswer>(&body).unwrap_or_else(|_| {
            ErrorAnswer::new("http", format!("the daemon answered HTTP {status}"))
        });
        Self { answer, body }
    }

    /// What the user reads.
    pub fn message(&self) -> &str {
        &self.answer.error.message
    }
}

/// Client bound to one socket path.
pub struct ApiClient {
    socket: PathBuf,
}

impl ApiClient {
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_owned(),
        }
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// A hyper failure, told apart when the daemon simply hung up (hyper calls that "operation
    /// was canceled" or "connection closed before message completed").
    fn exchange_error(&self, e: &hyper::Error) -> ClientError {
        if e.is_canceled() || e.is_incomplete_message() || e.is_closed() {
            ClientError::Closed(self.socket.clone())
        } else {
            ClientError::Http(e.to_string())
        }
    }

    /// Whether a daemon accepts connections on the socket (`NotRunning` when nobody listens).
    pub async fn probe(&self) -> Result<(), ClientError> {
        self.connect().await.map(drop)
    }

    /// Send one request with a typed body and read the typed answer, or the daemon's refusal.
    pub async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<Result<T, Refusal>, ClientError> {
        let payload = match body {
            Some(b) => Bytes::from(serde_json::to_vec(b).map_err(|e| http_error(&e))?),
            None => Bytes::new(),
        };
        let response = self
            .send_bytes(method, path, "application/json", payload)
            .await?;
        let status = response.status();
        let bytes = body_bytes(response).await?;
        if !status.is_success() {
            return Ok(Err(Refusal::read(status, bytes)));
        }
        serde_json::from_slice(&bytes)
            .map(Ok)
            .map_err(|e| ClientError::Http(format!("the daemon's answer to {path}: {e}")))
    }

    /// Send one request whose answer is newline-delimited JSON of `T`, handing each line to
    /// `on_line` as it arrives; a refusal before the stream began is returned instead.
    pub async fn request_lines<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &impl Serialize,
        mut on_line: impl FnMut(T),
    ) -> Result<Result<(), Refusal>, ClientError> {
        let payload = Bytes::from(serde_json::to_vec(body).map_err(|e| http_error(&e))?);
        let response = self
            .send_bytes(method, path, "application/json", payload)
            .await?;
        let status = response.status();
        if !status.is_success() {
            let bytes = body_bytes(response).await?;
            return Ok(Err(Refusal::read(status, bytes)));
        }
        let mut body = response.into_body();
        let mut pending: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ClientError::Http(e.to_string()))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            pending.extend_from_slice(&data);
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let parsed = serde_json::from_slice(&line).map_err(|e| {
                    ClientError::Http(format!("a line of the daemon's answer to {path}: {e}"))
                })?;
                on_line(parsed);
            }
        }
        Ok(Ok(()))
    }

    /// Send one request with a body of any type and return the answer's bytes unparsed (memory
    /// exports and imports are files, and may not be UTF-8).
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let response = self.send_bytes(method, path, content_type, body).await?;
        let status = response.status();
        Ok((status, body_bytes(response).await?))
    }

    async fn send_bytes(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        payload: Bytes,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        let stream = self.connect().await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.exchange_error(&e))?;
        tokio::spawn(connection);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "caxton")
            .header(header::CONTENT_TYPE, content_type)
            .body(Full::new(payload))
            .map_err(|e| http_error(&e))?;
        sender
            .send_request(request)
            .await
            .map_err(|e| self.exchange_error(&e))
    }
}

impl ApiClient {
    async fn connect(&self) -> Result<tokio::net::UnixStream, ClientError> {
        match tokio::net::UnixStream::connect(&self.socket).await {
            Ok(s) => Ok(s),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                Err(ClientError::NotRunning(self.socket.clone()))
            }
            Err(e) => Err(ClientError::Connect(self.socket.clone(), e)),
        }
    }
}

fn http_error(e: &dyn std::fmt::Display) -> ClientError {
    ClientError::Http(e.to_string())
}

/// The whole body of an answer.
async fn body_bytes(
    response: hyper::Response<hyper::body::Incoming>,
) -> Result<Bytes, ClientError> {
    Ok(response
        .into_body()
        .collect()
        .await
        .map_err(|e| http_error(&e))?
        .to_bytes())
}
