//! http_client: HTTP GET and POST through the host's `caxton.http_request`, which allows only
//! the manifest's hosts and refuses loopback, private, link-local and metadata addresses that
//! are not listed. A refusal, a failure or an HTTP error status is a tool error naming the cause.

const std = @import("std");
const caxton = @import("caxton");
const gpa = caxton.gpa;
const Headers = std.json.ArrayHashMap([]const u8);

/// A panic traps; the host reports it as this call's crash.
pub const panic = caxton.panic;

comptime {
    caxton.serve(.{ .http_get = httpGet, .http_post = httpPost });
}

/// Characters of a response body returned unless told otherwise.
const default_max_chars = 100_000;
/// Characters of the body quoted in an HTTP error.
const error_body_chars = 2_000;

fn hasHeader(h: ?Headers, name: []const u8) bool {
    const map = h orelse return false;
    for (map.map.keys()) |k| if (std.ascii.eqlIgnoreCase(k, name)) return true;
    return false;
}

/// `s` cut to at most `max` bytes, on a UTF-8 character boundary.
fn cut(s: []const u8, max: usize) []const u8 {
    if (s.len <= max) return s;
    var k = max;
    while (k > 0 and (s[k] & 0xC0) == 0x80) k -= 1;
    return s[0..k];
}

fn send(r: *caxton.Result, req: caxton.HttpRequest, max_chars: usize) !void {
    const reply = caxton.httpRequest(req) catch |e| switch (e) {
        error.OutOfMemory => return e,
        error.BadHostReply => return r.fail("{s} {s}: the host's reply could not be read", .{ req.method, req.url }),
    };
    const resp = switch (reply) {
        .failed => |why| return r.fail("{s} {s} refused or failed: {s}", .{ req.method, req.url, why }),
        .ok => |resp| resp,
    };
    const content_type = resp.headers.map.get("content-type") orelse "";
    if (resp.status >= 400) {
        const excerpt = cut(resp.body, error_body_chars);
        return r.fail("{s} {s}: HTTP {d}{s}{s}", .{ req.method, req.url, resp.status, if (excerpt.len > 0) "\n\n" else "", excerpt });
    }
    const body = cut(resp.body, max_chars);
    try r.writeText(body);
    try r.json(.{
        .status = resp.status,
        .content_type = content_type,
        .bytes = resp.body.len,
        .truncated = body.len < resp.body.len,
    });
}

fn httpGet(args: struct {
    url: []const u8,
    headers: ?Headers = null,
    max_chars: usize = default_max_chars,
}, r: *caxton.Result) !void {
    try send(r, .{ .method = "GET", .url = args.url, .headers = args.headers }, args.max_chars);
}

fn httpPost(args: struct {
    url: []const u8,
    body: []const u8,
    content_type: ?[]const u8 = null,
    headers: ?Headers = null,
    max_chars: usize = default_max_chars,
}, r: *caxton.Result) !void {
    var headers: Headers = args.headers orelse .{};
    if (!hasHeader(headers, "content-type")) {
        // JSON-looking bodies are sent as JSON unless the caller says otherwise.
        const trimmed = std.mem.trimStart(u8, args.body, " \t\r\n");
        const guess = if (trimmed.len > 0 and (trimmed[0] == '{' or trimmed[0] == '[')) "application/json" else "text/plain; charset=utf-8";
        try headers.map.put(gpa, "Content-Type", args.content_type orelse guess);
    }
    try send(r, .{ .method = "POST", .url = args.url, .headers = headers, .body = args.body }, args.max_chars);
}
