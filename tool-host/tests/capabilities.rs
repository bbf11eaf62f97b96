//! What a tool can reach: files only inside its grant, HTTP only to its allowlist, and host calls
//! bounded by the call's time. Each refusal is that call's result; the next call works.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on setup errors")]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use caxton_tool_host::http_access::{HostAllowlist, HttpAccess};
use caxton_tool_host::{CallLimits, DirGrant, Grants, HostLimits, ToolHost, ToolModule};
use serde_json::Value;

/// Opens the path given as raw arguments under preopen fd 3 (following symlinks); tool "read"
/// opens for reading, tool "create" creates for writing, tool "hardlink" makes `hl` a hard link
/// to it. Returns `{"content":[],"errno":"NN"}`.
const OPENER: &str = r#"
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_link"
    (func $path_link (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $next (mut i32) (i32.const 4096))
  (data (i32.const 1024) "{\"content\":[],\"errno\":\"00\"}")
  (data (i32.const 1100) "hl")
  (func (export "caxton_alloc") (param $len i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $next))
    (global.set $next (i32.add (global.get $next) (local.get $len)))
    (local.get $p))
  (func (export "caxton_call") (param $np i32) (param $nl i32) (param $ap i32) (param $al i32) (result i64)
    (local $create i32) (local $errno i32)
    (local.set $create (i32.eq (local.get $nl) (i32.const 6)))
    (local.set $errno
      (if (result i32) (i32.eq (local.get $nl) (i32.const 8))
        (then
          (call $path_link (i32.const 3) (i32.const 0) (local.get $ap) (local.get $al)
            (i32.const 3) (i32.const 1100) (i32.const 2)))
        (else
          (call $path_open (i32.const 3) (i32.const 1) (local.get $ap) (local.get $al)
            (local.get $create)
            (if (result i64) (local.get $create) (then (i64.const 64)) (else (i64.const 2)))
            (i64.const 0) (i32.const 0) (i32.const 2048)))))
    (i32.store8 (i32.const 1047) (i32.add (i32.const 48) (i32.div_u (local.get $errno) (i32.const 10))))
    (i32.store8 (i32.const 1048) (i32.add (i32.const 48) (i32.rem_u (local.get $errno) (i32.const 10))))
    (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 27))))
"#;

/// Passes the raw arguments to `caxton.http_request` (tool "http") or `caxton.sqlite_query`
/// (tool "sql") and returns `{"content":[],"reply":REPLY}`.
const RELAY: &str = r#"
(module
  (import "caxton" "http_request" (func $http (param i32 i32) (result i64)))
  (import "caxton" "sqlite_query" (func $sql (param i32 i32) (result i64)))
  (import "caxton" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 64)
  (global $next (mut i32) (i32.const 4096))
  (data (i32.const 1024) "{\"content\":[],\"reply\":")
  (func $alloc (export "caxton_alloc") (param $len i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $next))
    (global.set $next (i32.add (global.get $next) (local.get $len)))
    (local.get $p))
  (func (export "caxton_call") (param $np i32) (param $nl i32) (param $ap i32) (param $al i32) (result i64)
    (local $r i64) (local $rp i32) (local $rl i32) (local $out i32)
    (call $log (i32.const 2) (local.get $np) (local.get $nl))
    (local.set $r
      (if (result i64) (i32.eq (local.get $nl) (i32.const 4))
        (then (call $http (local.get $ap) (local.get $al)))
        (else (call $sql (local.get $ap) (local.get $al)))))
    (local.set $rp (i32.wrap_i64 (i64.shr_u (local.get $r) (i64.const 32))))
    (local.set $rl (i32.wrap_i64 (local.get $r)))
    (local.set $out (call $alloc (i32.add (local.get $rl) (i32.const 23))))
    (memory.copy (local.get $out) (i32.const 1024) (i32.const 22))
    (memory.copy (i32.add (local.get $out) (i32.const 22)) (local.get $rp) (local.get $rl))
    (i32.store8 (i32.add (local.get $out) (i32.add (local.get $rl) (i32.const 22))) (i32.const 125))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32))
            (i64.extend_i32_u (i32.add (local.get $rl) (i32.const 23))))))
"#;

fn host(cache: &Path) -> ToolHost {
    ToolHost::new(cache, HostLimits::default()).unwrap()
}

fn module(host: &ToolHost, name: &str, wat: &str) -> ToolModule {
    host.load(name, &wat::parse_str(wat).unwrap()).unwrap()
}

fn errno(m: &ToolModule, tool: &str, path: &str, grants: &Grants) -> u64 {
    let r = m
        .call_with(tool, path, grants, CallLimits::default())
        .unwrap();
    r["errno"].as_str().unwrap().parse().unwrap()
}

#[test]
fn files_are_reachable_only_inside_the_grant() {
    let cache = tempfile::tempdir().unwrap();
    let h = host(cache.path());
    let m = module(&h, "opener", OPENER);
    let grant = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(grant.path().join("a.txt"), "inside").unwrap();
    std::fs::create_dir(grant.path().join("sub")).unwrap();
    std::fs::write(outside.path().join("secret.txt"), "secret").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), grant.path().join("link"))
        .unwrap();
    std::os::unix::fs::symlink(outside.path(), grant.path().join("dirlink")).unwrap();
    let secret = outside.path().join("secret.txt");
    let rw = Grants {
        dirs: vec![DirGrant {
            host: grant.path().to_owned(),
            guest: ".".into(),
            writable: true,
        }],
        http: None,
    };

    assert_eq!(
        errno(&m, "read", "a.txt", &rw),
        0,
        "a file inside the grant opens"
    );
    assert_eq!(
        errno(&m, "read", "sub/../a.txt", &rw),
        0,
        "`..` that stays inside is fine"
    );
    let escapes = [
        "../a.txt".to_owned(),
        format!(
            "../{}/secret.txt",
            outside.path().file_name().unwrap().to_str().unwrap()
        ),
        "sub/../../x".to_owned(),
        secret.to_str().unwrap().to_owned(),
        "/etc/passwd".to_owned(),
        "link".to_owned(),
        "dirlink/secret.txt".to_owned(),
        "a.txt/".to_owned(),
        // A trailing slash makes the kernel follow a final symlink even where following is
        // off; out of the grant all the same.
        "link/".to_owned(),
        "dirlink/".to_owned(),
        "dirlink/.".to_owned(),
    ];
    for path in &escapes {
        assert_ne!(errno(&m, "read", path, &rw), 0, "{path} must be refused");
    }

    // A tool cannot make a hard link to a file outside its grant (which would then be a file
    // inside it), nor through a link that leads out; inside the grant it may.
    for path in [
        format!(
            "../{}/secret.txt",
            outside.path().file_name().unwrap().to_str().unwrap()
        ),
        secret.to_str().unwrap().to_owned(),
        "dirlink/secret.txt".to_owned(),
    ] {
        assert_ne!(
            errno(&m, "hardlink", &path, &rw),
            0,
            "{path} must be refused"
        );
        assert!(!grant.path().join("hl").exists(), "{path} was linked");
    }
    assert_eq!(errno(&m, "hardlink", "a.txt", &rw), 0);
    assert_eq!(
        std::fs::read_to_string(grant.path().join("hl")).unwrap(),
        "inside"
    );
    std::fs::remove_file(grant.path().join("hl")).unwrap();
    // A hard link the operator made is a file of the grant: the grant is by path, and only the
    // operator can put another file's inode there.
    std::fs::hard_link(&secret, grant.path().join("operators-link")).unwrap();
    assert_eq!(errno(&m, "read", "operators-link", &rw), 0);
    std::fs::remove_file(grant.path().join("operators-link")).unwrap();

    assert_eq!(errno(&m, "create", "new.txt", &rw), 0);
    assert!(
        grant.path().join("new.txt").exists(),
        "the module's file lands in the grant"
    );

    let ro = Grants {
        dirs: vec![DirGrant {
            writable: false,
            ..rw.dirs[0].clone()
        }],
        http: None,
    };
    assert_ne!(
        errno(&m, "create", "other.txt", &ro),
        0,
        "a read-only grant refuses writes"
    );
    assert!(!grant.path().join("other.txt").exists());
    assert_eq!(errno(&m, "read", "a.txt", &ro), 0);
    assert_ne!(
        errno(&m, "hardlink", "a.txt", &ro),
        0,
        "a read-only grant refuses links"
    );
    assert!(!grant.path().join("hl").exists());

    let none = Grants::default();
    assert_ne!(errno(&m, "read", "a.txt", &none), 0, "no grant, no files");
}

/// A loopback HTTP server: `/ok` answers, `/to-meta` and `/to-other` redirect to refused
/// addresses, `/to-other-by-name` and `/to-self-by-name` redirect to `localhost` on the other
/// server's port or its own, `/slow` never answers within a test's patience.
fn http_server(other_port: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let reply = match path.as_str() {
                    "/ok" => "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-test: yes\r\n\r\nhello".to_owned(),
                    "/to-meta" => "HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/latest/meta-data\r\ncontent-length: 0\r\n\r\n".to_owned(),
                    "/to-other" => format!("HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{other_port}/ok\r\ncontent-length: 0\r\n\r\n"),
                    "/to-ok" => "HTTP/1.1 302 Found\r\nlocation: /ok\r\ncontent-length: 0\r\n\r\n".to_owned(),
                    "/to-other-by-name" => format!("HTTP/1.1 302 Found\r\nlocation: http://localhost:{other_port}/ok\r\ncontent-length: 0\r\n\r\n"),
                    "/to-self-by-name" => format!("HTTP/1.1 302 Found\r\nlocation: http://localhost:{port}/ok\r\ncontent-length: 0\r\n\r\n"),
                    "/slow" => {
                        std::thread::sleep(Duration::from_secs(10));
                        return;
                    }
                    _ => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_owned(),
                };
                let _ = stream.write_all(reply.as_bytes());
            });
        }
    });
    port
}

fn http_grants(entries: &[String]) -> Grants {
    Grants {
        dirs: vec![],
        http: Some(HttpAccess::new(HostAllowlist::parse(entries).unwrap()).unwrap()),
    }
}

fn fetch(m: &ToolModule, grants: &Grants, url: &str, wall: Duration) -> Value {
    let req = serde_json::json!({ "method": "GET", "url": url }).to_string();
    let limits = CallLimits {
        wall,
        ..CallLimits::default()
    };
    m.call_with("http", &req, grants, limits).unwrap()["reply"].clone()
}

#[test]
fn http_goes_only_where_the_allowlist_says() {
    let cache = tempfile::tempdir().unwrap();
    let h = host(cache.path());
    let m = module(&h, "relay", RELAY);
    let other = http_server(1);
    let port = http_server(other);
    let g = http_grants(&[format!("127.0.0.1:{port}")]);
    let sec = Duration::from_secs(5);

    let ok = fetch(&m, &g, &format!("http://127.0.0.1:{port}/ok"), sec);
    assert_eq!(ok["status"], 200, "{ok}");
    assert_eq!(ok["body"], "hello");
    assert_eq!(ok["headers"]["x-test"], "yes");
    let followed = fetch(&m, &g, &format!("http://127.0.0.1:{port}/to-ok"), sec);
    assert_eq!(
        followed["body"], "hello",
        "redirects inside the allowlist are followed"
    );

    let cases = [
        (format!("http://127.0.0.1:{other}/ok"), "allowlist"),
        (
            "http://169.254.169.254/latest/meta-data".to_owned(),
            "allowlist",
        ),
        ("http://example.com/".to_owned(), "allowlist"),
        (
            format!("http://127.0.0.1:{port}/to-meta"),
            "169.254.169.254",
        ),
        (format!("http://127.0.0.1:{port}/to-other"), "refused"),
        ("file:///etc/passwd".to_owned(), "scheme"),
    ];
    for (url, why) in &cases {
        let reply = fetch(&m, &g, url, sec);
        let error = reply["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{url}: {reply}"));
        assert!(error.contains(why), "{url}: {error}");
    }
    // Listed by name, but the name resolves to loopback: refused at connect time.
    let by_name = http_grants(&[format!("localhost:{other}")]);
    let reply = fetch(&m, &by_name, &format!("http://localhost:{other}/ok"), sec);
    let error = reply["error"].as_str().unwrap_or_else(|| panic!("{reply}"));
    assert!(error.contains("loopback"), "{error}");

    let after = fetch(&m, &g, &format!("http://127.0.0.1:{port}/ok"), sec);
    assert_eq!(
        after["body"], "hello",
        "refusals cost nothing to the next call"
    );

    let none = fetch(
        &m,
        &Grants::default(),
        &format!("http://127.0.0.1:{port}/ok"),
        sec,
    );
    assert!(
        none["error"]
            .as_str()
            .unwrap()
            .contains("no http_hosts capability"),
        "{none}"
    );
}

#[test]
fn internal_addresses_in_any_literal_form_are_refused() {
    let cache = tempfile::tempdir().unwrap();
    let h = host(cache.path());
    let m = module(&h, "relay", RELAY);
    let port = http_server(1);
    // Listed: a public name only. Every form below names this machine's loopback server.
    let g = http_grants(&["example.com:443".to_owned()]);
    for url in [
        format!("http://2130706433:{port}/ok"), // 127.0.0.1 as one decimal number
        format!("http://0177.0.0.1:{port}/ok"), // octal first byte
        format!("http://0x7f.1:{port}/ok"),     // hexadecimal, shortened
        format!("http://127.1:{port}/ok"),      // shortened
        format!("http://[::1]:{port}/ok"),      // IPv6 loopback
        format!("http://[::ffff:127.0.0.1]:{port}/ok"), // IPv4-mapped IPv6
        format!("http://[::ffff:7f00:1]:{port}/ok"), // the same, in hex
    ] {
        let error = refused(&m, &g, &url);
        assert!(error.contains("allowlist"), "{url}: {error}");
    }
    // Listed by the operator as a literal loopback address, the other spellings of it are the
    // same address and reach it; nothing else on loopback does.
    let listed = http_grants(&[format!("127.0.0.1:{port}")]);
    let reply = fetch(
        &m,
        &listed,
        &format!("http://2130706433:{port}/ok"),
        Duration::from_secs(5),
    );
    assert_eq!(reply["body"], "hello", "{reply}");
    let error = refused(&m, &listed, &format!("http://[::1]:{port}/ok"));
    assert!(
        error.contains("allowlist") || error.contains("loopback"),
        "{error}"
    );
}

/// The `error` of a fetch that must be refused.
fn refused(m: &ToolModule, grants: &Grants, url: &str) -> String {
    let reply = fetch(m, grants, url, Duration::from_secs(5));
    reply["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{url} must be refused: {reply}"))
        .to_owned()
}

#[test]
fn a_connection_needs_one_entry_for_its_host_and_its_port() {
    let cache = tempfile::tempdir().unwrap();
    let h = host(cache.path());
    let m = module(&h, "relay", RELAY);
    // Two loopback servers; only `port` is listed by address.
    let other = http_server(1);
    let port = http_server(other);
    let sec = Duration::from_secs(5);

    // A port-less name entry grants port 80 only, and does not borrow the listed address's port.
    let g = http_grants(&["localhost".to_owned(), format!("127.0.0.1:{port}")]);
    for p in [other, port] {
        let error = refused(&m, &g, &format!("http://localhost:{p}/ok"));
        assert!(
            error.contains(&format!("localhost:{p} is not in")),
            "{error}"
        );
    }
    let error = refused(&m, &g, "http://localhost/ok");
    assert!(error.contains("127.0.0.1:80 (loopback)"), "{error}");
    assert_eq!(
        fetch(&m, &g, &format!("http://127.0.0.1:{port}/ok"), sec)["body"],
        "hello"
    );

    // The name listed for the other port: it resolves to an address listed for `port` only.
    let g = http_grants(&[format!("localhost:{other}"), format!("127.0.0.1:{port}")]);
    let error = refused(&m, &g, &format!("http://localhost:{other}/ok"));
    assert!(
        error.contains(&format!("127.0.0.1:{other} (loopback)")),
        "{error}"
    );
    // Nor through a redirect, by address or by name.
    let error = refused(&m, &g, &format!("http://127.0.0.1:{port}/to-other"));
    assert!(error.contains("redirect"), "{error}");
    let error = refused(&m, &g, &format!("http://127.0.0.1:{port}/to-other-by-name"));
    assert!(
        error.contains(&format!("127.0.0.1:{other} (loopback)")),
        "{error}"
    );

    // Name and address both listed for the same port: reachable, directly and by redirect.
    let g = http_grants(&[format!("localhost:{port}"), format!("127.0.0.1:{port}")]);
    let ok = fetch(&m, &g, &format!("http://localhost:{port}/ok"), sec);
    assert_eq!(ok["body"], "hello", "{ok}");
    let ok = fetch(
        &m,
        &g,
        &format!("http://127.0.0.1:{port}/to-self-by-name"),
        sec,
    );
    assert_eq!(ok["body"], "hello", "{ok}");
    let error = refused(&m, &g, &format!("http://localhost:{other}/ok"));
    assert!(error.contains("allowlist"), "{error}");
}

#[test]
fn a_slow_host_call_ends_with_the_calls_time() {
    let cache = tempfile::tempdir().unwrap();
    let h = host(cache.path());
    let m = module(&h, "relay", RELAY);
    let port = http_server(1);
    let g = http_grants(&[format!("127.0.0.1:{port}")]);
    let started = Instant::now();
    let reply = fetch(
        &m,
        &g,
        &format!("http://127.0.0.1:{port}/slow"),
        Duration::from_millis(300),
    );
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("no response within"),
        "{reply}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let ok = fetch(
        &m,
        &g,
        &format!("http://127.0.0.1:{port}/ok"),
        Duration::from_secs(5),
    );
    assert_eq!(ok["body"], "hello");
}

#[test]
fn sqlite_queries_run_read_only_inside_the_grant() {
    let cache = tempfile::tempdir().unwrap();
    let h = host(cache.path());
    let m = module(&h, "relay", RELAY);
    let dir = tempfile::tempdir().unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("sales.db")).unwrap();
    conn.execute_batch("CREATE TABLE s(region TEXT, total INT); INSERT INTO s VALUES ('north', 10), ('south', 32);")
        .unwrap();
    drop(conn);
    let g = Grants {
        dirs: vec![DirGrant {
            host: dir.path().to_owned(),
            guest: ".".into(),
            writable: false,
        }],
        http: None,
    };
    let ask = |sql: &str, db: &str| {
        let req = serde_json::json!({ "database": db, "sql": sql }).to_string();
        m.call_with("sql", &req, &g, CallLimits::default()).unwrap()["reply"].clone()
    };
    let r = ask(
        "SELECT region, total FROM s ORDER BY total DESC",
        "sales.db",
    );
    assert_eq!(r["rows"], serde_json::json!([["south", 32], ["north", 10]]));
    let r = ask("DROP TABLE s", "sales.db");
    assert!(r["error"].as_str().unwrap().contains("read-only"), "{r}");
    let r = ask("SELECT 1", "/etc/passwd");
    assert!(r["error"].as_str().unwrap().contains("outside"), "{r}");
    let r = ask("SELECT count(*) FROM s", "sales.db");
    assert_eq!(r["rows"], serde_json::json!([[2]]));
}
