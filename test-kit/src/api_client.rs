//! Clients of the daemon's management API over its Unix socket: a blocking HTTP/1.1 client
//! that writes the request itself (tests, and the set-up of every bench), and the async hyper
//! client the benches time, one fresh connection per request as the `caxton` CLI makes them.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

/// A loopback TCP port nothing listens on right now (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 request over a Unix socket; returns status and JSON body (a body that is not
/// JSON comes back as a JSON string).
pub fn http(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, Value)> {
    let (status, body) = http_text(socket, method, path, body)?;
    Ok((status, json_or_string(body)))
}

/// As [`http`], with the body as text.
pub fn http_text(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut stream = UnixStream::connect(socket)?;
    let body = body.unwrap_or("");
    // Large bodies ask first (as curl does), so a refusal (413) arrives before the body is sent
    // rather than racing a connection the server has already closed.
    let expect = if body.len() > 64 * 1024 {
        "Expect: 100-continue\r\n"
    } else {
        ""
    };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: caxton\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{expect}Connection: close\r\n\r\n",
        body.len()
    )?;
    if !expect.is_empty() {
        let mut first = [0u8; 25];
        let n = stream.read(&mut first)?;
        if !first[..n].starts_with(b"HTTP/1.1 100") {
            let mut rest = first[..n].to_vec();
            stream.read_to_end(&mut rest)?;
            return read_text_response(&mut &rest[..]);
        }
    }
    stream.write_all(body.as_bytes())?;
    read_text_response(&mut stream)
}

/// Read a whole HTTP/1.1 response (the server closes the connection); status and JSON body.
pub fn read_response(stream: &mut impl Read) -> std::io::Result<(u16, Value)> {
    let (status, body) = read_text_response(stream)?;
    Ok((status, json_or_string(body)))
}

/// Read a whole HTTP/1.1 response; status and body text, de-chunked.
pub fn read_text_response(stream: &mut impl Read) -> std::io::Result<(u16, String)> {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

fn json_or_string(body: String) -> Value {
    serde_json::from_str(&body).unwrap_or(Value::String(body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Deploy an agent through `POST /api/v1/agents` (as `NAME.toml`); panics unless it worked.
pub fn deploy_agent(socket: &Path, name: &str, source: &str) {
    let body = json!({"source": source, "file": format!("{name}.toml")});
    match http(socket, "POST", "/api/v1/agents", Some(&body.to_string())) {
        Ok((status, _)) if (200..300).contains(&status) => {}
        Ok((status, answer)) => panic!("deploying {name} answered {status}: {answer}"),
        Err(e) => panic!("deploying {name}: {e}"),
    }
}

/// `GET /metrics` in the Prometheus text format; empty if the daemon did not answer 200.
pub fn fetch_metrics(socket: &Path) -> String {
    match http_text(socket, "GET", "/metrics", None) {
        Ok((200, text)) => text,
        _ => String::new(),
    }
}

/// One request on a fresh connection with hyper, as the `caxton` CLI makes it (the connect is
/// part of what a user waits for): status, headers and body, or why there is no answer.
/// Needs a tokio runtime.
pub async fn call(
    socket: &Path,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Result<(StatusCode, HeaderMap, Bytes), String> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| format!("connect {}: {e}", socket.display()))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(connection);
    let payload = body.map(Value::to_string).unwrap_or_default();
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "caxton")
        .header(header::CONTENT_TYPE, "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(payload)))
        .map_err(|e| format!("request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let (parts, body) = response.into_parts();
    let bytes = body
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((parts.status, parts.headers, bytes))
}

/// `POST /api/v1/agents/NAME/run` with [`call`]; the execution report, or why the run did not
/// answer 200 with one.
pub async fn run_agent(socket: &Path, agent: &str, request: &str) -> Result<Value, String> {
    let body = json!({ "request": request });
    let path = format!("/api/v1/agents/{agent}/run");
    let (status, _, bytes) = call(socket, Method::POST, &path, &[], Some(&body)).await?;
    if status != StatusCode::OK {
        return Err(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&bytes)
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("report is not JSON: {e}"))
}
