//! Caxton tool SDK for Zig: implements the tool ABI (see docs/tool-abi.md) so that a tool server
//! is a set of typed handler functions.
//!
//! ```zig
//! const std = @import("std");
//! const caxton = @import("caxton");
//! pub const panic = caxton.panic;
//! comptime {
//!     caxton.serve(.{ .echo = echo });
//! }
//! fn echo(args: struct { text: []const u8 }, r: *caxton.Result) !void {
//!     try r.writeText(args.text);
//! }
//! ```
//!
//! Build: `zig build-exe -target wasm32-wasi -fno-entry -rdynamic -O ReleaseSmall
//!   --dep caxton -Mroot=tool.zig -Mcaxton=tool-packages/sdk/caxton.zig -femit-bin=tool.wasm`.
//!
//! Every call runs in a fresh instance, so nothing a handler allocates needs freeing.

const std = @import("std");

/// ABI version this SDK implements.
pub const abi_version = 1;

/// The allocator handlers should use (std's WebAssembly allocator). Freeing is optional: the host
/// throws the whole instance away after the call.
pub const gpa: std.mem.Allocator = std.heap.wasm_allocator;

/// Panic handler for tool modules: a panic is a trap, which the host reports as that call's
/// crash. Put `pub const panic = caxton.panic;` in the root file; the default handler would print
/// through WASI and so import `fd_write`.
pub const panic = std.debug.no_panic;

/// Returned by `Result.fail`: the handler stops and the call answers with `isError: true`.
pub const ToolError = error{ToolFailed};

/// The answer being built for one call: text content, optional JSON structured content, and
/// whether it is a tool-level error.
pub const Result = struct {
    text: std.Io.Writer.Allocating,
    structured: ?[]const u8 = null,
    is_error: bool = false,

    /// The writer for the text content (for `print`, `writeAll` and the JSON writers of std).
    pub fn writer(r: *Result) *std.Io.Writer {
        return &r.text.writer;
    }

    /// Append formatted text to the text content.
    pub fn print(r: *Result, comptime fmt: []const u8, args: anytype) error{OutOfMemory}!void {
        r.text.writer.print(fmt, args) catch return error.OutOfMemory;
    }

    /// Append bytes to the text content.
    pub fn writeText(r: *Result, bytes: []const u8) error{OutOfMemory}!void {
        r.text.writer.writeAll(bytes) catch return error.OutOfMemory;
    }

    /// Set `structuredContent` to `value` (a struct, map or `std.json.Value` that serialises to
    /// a JSON object). When no text was written, the same JSON becomes the text content too, as
    /// MCP asks for clients that only read text.
    pub fn json(r: *Result, value: anytype) error{OutOfMemory}!void {
        const bytes = try std.json.Stringify.valueAlloc(gpa, value, .{ .emit_null_optional_fields = false });
        r.structuredRaw(bytes);
    }

    /// Set `structuredContent` to JSON text the caller already has (it must be a JSON object).
    pub fn structuredRaw(r: *Result, json_object: []const u8) void {
        r.structured = json_object;
    }

    /// Make this call's answer a tool-level error (`isError: true`) whose text is the formatted
    /// message, and return `error.ToolFailed` for the handler to return.
    pub fn fail(r: *Result, comptime fmt: []const u8, args: anytype) ToolError {
        r.setError(fmt, args);
        return error.ToolFailed;
    }

    /// Like `fail`, for code that does not return an error.
    pub fn setError(r: *Result, comptime fmt: []const u8, args: anytype) void {
        r.text.clearRetainingCapacity();
        r.structured = null;
        r.is_error = true;
        r.text.writer.print(fmt, args) catch {};
    }

    /// Serialise as an MCP `CallToolResult`.
    fn render(r: *Result) error{OutOfMemory}![]u8 {
        var out: std.Io.Writer.Allocating = .init(gpa);
        const w = &out.writer;
        var text: []const u8 = r.text.written();
        if (text.len == 0 and !r.is_error) {
            if (r.structured) |s| text = s;
        }
        render_body(w, text, r.structured, r.is_error) catch return error.OutOfMemory;
        return out.written();
    }
};

fn render_body(w: *std.Io.Writer, text: []const u8, structured: ?[]const u8, is_error: bool) std.Io.Writer.Error!void {
    try w.writeAll("{\"content\":[{\"type\":\"text\",\"text\":");
    try std.json.Stringify.encodeJsonString(text, .{}, w);
    try w.writeAll("}]");
    if (structured) |s| {
        try w.writeAll(",\"structuredContent\":");
        try w.writeAll(s);
    }
    try w.writeAll(if (is_error) ",\"isError\":true}" else ",\"isError\":false}");
}

/// Pack a slice of this module's memory as the ABI's `(ptr << 32) | len`.
pub fn pack(bytes: []const u8) i64 {
    const ptr: u64 = @intFromPtr(bytes.ptr);
    return @bitCast((ptr << 32) | @as(u64, bytes.len));
}

/// The slice of this module's memory that a packed `(ptr << 32) | len` names.
pub fn unpack(packed_ptr_len: i64) []u8 {
    const v: u64 = @bitCast(packed_ptr_len);
    const ptr: [*]u8 = @ptrFromInt(@as(usize, @intCast(v >> 32)));
    return ptr[0..@as(usize, @intCast(v & 0xffff_ffff))];
}

/// The ABI's allocator export: `len` writable bytes for the host (arguments, host replies).
fn caxtonAlloc(len: i32) callconv(.c) i32 {
    const n: usize = @intCast(@max(len, 0));
    const bytes = gpa.alloc(u8, @max(n, 1)) catch @trap();
    return @intCast(@intFromPtr(bytes.ptr));
}

/// Export the ABI (`caxton_alloc`, `caxton_call`) for a server whose tools are the fields of
/// `tools`: `.{ .tool_name = handler, ... }`. A handler is
/// `fn (args: Args, r: *Result) !void`; the SDK parses the call's JSON arguments into `Args`
/// (unknown fields ignored; `std.json.Value` for untyped arguments, whose numbers stay as
/// written, in `.number_string`). Returning
/// `error.ToolFailed` (from `r.fail`) answers with the message; any other error answers with
/// `isError: true` naming the error.
pub fn serve(comptime tools: anytype) void {
    const Tools = @TypeOf(tools);
    const Server = struct {
        fn call(name_ptr: [*]const u8, name_len: i32, args_ptr: [*]const u8, args_len: i32) callconv(.c) i64 {
            const name = name_ptr[0..@intCast(name_len)];
            const args = args_ptr[0..@intCast(args_len)];
            var r: Result = .{ .text = .init(gpa) };
            dispatch(name, args, &r);
            const bytes = r.render() catch @trap();
            return pack(bytes);
        }

        fn dispatch(name: []const u8, args: []const u8, r: *Result) void {
            inline for (@typeInfo(Tools).@"struct".field_names) |tool| {
                if (std.mem.eql(u8, name, tool)) {
                    run(@field(tools, tool), tool, args, r);
                    return;
                }
            }
            r.setError("unknown tool \"{s}\"", .{name});
        }

        fn run(comptime handler: anytype, comptime tool: []const u8, args: []const u8, r: *Result) void {
            const Args = @typeInfo(@TypeOf(handler)).@"fn".param_types[0].?;
            const parsed = std.json.parseFromSliceLeaky(Args, gpa, args, .{
                .ignore_unknown_fields = true,
                .allocate = .alloc_always,
                // Untyped values keep numbers exactly as written (`.number_string`).
                .parse_numbers = false,
            }) catch |e| {
                r.setError("{s}: invalid arguments: {s}", .{ tool, @errorName(e) });
                return;
            };
            handler(parsed, r) catch |e| switch (e) {
                error.ToolFailed => {},
                else => r.setError("{s}: {s}", .{ tool, @errorName(e) }),
            };
        }
    };
    @export(&Server.call, .{ .name = "caxton_call" });
    @export(&caxtonAlloc, .{ .name = "caxton_alloc" });
}

// ---------------------------------------------------------------------------------------------
// Host functions (module "caxton"). A module imports only those it calls.

const host = struct {
    extern "caxton" fn log(level: i32, ptr: [*]const u8, len: usize) void;
    extern "caxton" fn http_request(ptr: [*]const u8, len: usize) i64;
    extern "caxton" fn sqlite_query(ptr: [*]const u8, len: usize) i64;
};

/// Severity of a `log` message.
pub const Level = enum(i32) { err = 0, warn = 1, info = 2, debug = 3 };

/// Write a message to the host's log (imports `caxton.log`).
pub fn log(level: Level, comptime fmt: []const u8, args: anytype) void {
    const msg = std.fmt.allocPrint(gpa, fmt, args) catch return;
    host.log(@intFromEnum(level), msg.ptr, msg.len);
}

/// A host reply: the decoded value, or the host's `{"error": ...}` message.
pub fn HostReply(comptime T: type) type {
    return union(enum) {
        ok: T,
        /// Why the host refused or failed the request, in the host's words.
        failed: []const u8,
    };
}

/// An HTTP request for `httpRequest`.
pub const HttpRequest = struct {
    method: []const u8 = "GET",
    url: []const u8,
    headers: ?std.json.ArrayHashMap([]const u8) = null,
    body: ?[]const u8 = null,
};

/// The host's answer to an HTTP request.
pub const HttpResponse = struct {
    status: u16,
    headers: std.json.ArrayHashMap([]const u8) = .{},
    body: []const u8 = "",
};

/// Send an HTTP request through the host, which enforces the manifest's allowlist (imports
/// `caxton.http_request`). The raw reply JSON is in `raw` when the caller wants to pass it on.
pub fn httpRequest(req: HttpRequest) error{ OutOfMemory, BadHostReply }!HostReply(HttpResponse) {
    const body = try std.json.Stringify.valueAlloc(gpa, req, .{ .emit_null_optional_fields = false });
    const reply = unpack(host.http_request(body.ptr, body.len));
    return decodeReply(HttpResponse, reply);
}

/// A read-only SQL query for `sqliteQuery`.
pub const SqliteRequest = struct {
    database: []const u8,
    sql: []const u8,
    params: []const std.json.Value = &.{},
    max_rows: ?u32 = null,
};

/// The host's answer to a query.
pub const SqliteResponse = struct {
    columns: []const []const u8,
    rows: []const []const std.json.Value,
    truncated: bool = false,
};

/// Run a read-only query through the host (imports `caxton.sqlite_query`). `raw` is the reply
/// JSON as the host wrote it.
pub fn sqliteQuery(req: SqliteRequest) error{ OutOfMemory, BadHostReply }!struct { reply: HostReply(SqliteResponse), raw: []const u8 } {
    const body = try std.json.Stringify.valueAlloc(gpa, req, .{ .emit_null_optional_fields = false });
    const raw = unpack(host.sqlite_query(body.ptr, body.len));
    return .{ .reply = try decodeReply(SqliteResponse, raw), .raw = raw };
}

fn decodeReply(comptime T: type, reply: []const u8) error{ OutOfMemory, BadHostReply }!HostReply(T) {
    const Failure = struct { @"error": []const u8 };
    if (std.json.parseFromSliceLeaky(Failure, gpa, reply, .{ .ignore_unknown_fields = true })) |f| {
        return .{ .failed = f.@"error" };
    } else |_| {}
    const ok = std.json.parseFromSliceLeaky(T, gpa, reply, .{
        .ignore_unknown_fields = true,
        .allocate = .alloc_always,
    }) catch |e| switch (e) {
        error.OutOfMemory => return error.OutOfMemory,
        else => return error.BadHostReply,
    };
    return .{ .ok = ok };
}

// ---------------------------------------------------------------------------------------------
// Small helpers tools share.

/// Append `s` to `w` as XML/SVG/HTML text or attribute content (`& < > " '` escaped).
pub fn writeXmlEscaped(w: *std.Io.Writer, s: []const u8) std.Io.Writer.Error!void {
    for (s) |c| switch (c) {
        '&' => try w.writeAll("&amp;"),
        '<' => try w.writeAll("&lt;"),
        '>' => try w.writeAll("&gt;"),
        '"' => try w.writeAll("&quot;"),
        '\'' => try w.writeAll("&#39;"),
        else => try w.writeByte(c),
    };
}

/// A number that serialises in plain decimal (`2.5`, `3`, not `2.5e0`), or as `null` when it is
/// not finite (JSON has no NaN or infinity).
pub const Number = struct {
    value: f64,

    /// std.json hook.
    pub fn jsonStringify(self: Number, jw: anytype) !void {
        if (std.math.isFinite(self.value)) {
            try jw.print("{d}", .{self.value});
        } else {
            try jw.write(null);
        }
    }
};

/// Parse `s` (surrounding spaces allowed) as a finite decimal number, or null.
pub fn parseNumber(s: []const u8) ?f64 {
    const t = std.mem.trim(u8, s, " \t");
    if (t.len == 0) return null;
    // std.fmt.parseFloat accepts "inf", "nan" and hex floats; data columns mean none of those.
    for (t) |c| switch (c) {
        '0'...'9', '.', '-', '+', 'e', 'E' => {},
        else => return null,
    };
    const v = std.fmt.parseFloat(f64, t) catch return null;
    return if (std.math.isFinite(v)) v else null;
}
