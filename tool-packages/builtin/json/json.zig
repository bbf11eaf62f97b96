//! json_query: select values from a JSON document by a JSONPath-style path.
//!
//! Paths: an optional `$`, then steps: `.name`, `['name']` or `["name"]`, `[3]` (negative counts
//! from the end), `[1:3]` (slice), `[*]` or `.*` (every element or member), `..name` and `..*`
//! (recursive descent). A path may start with a bare name: `a.b[0]` is `$.a.b[0]`.

const std = @import("std");
const caxton = @import("caxton");
const gpa = caxton.gpa;
const Value = std.json.Value;

/// A panic traps; the host reports it as this call's crash.
pub const panic = caxton.panic;

comptime {
    caxton.serve(.{ .json_query = jsonQuery });
}

const Step = union(enum) {
    key: []const u8,
    index: i64,
    slice: struct { start: ?i64, end: ?i64 },
    wildcard,
    descend_key: []const u8,
    descend_wildcard,
};

const PathError = struct { at: usize, what: []const u8 };

fn isNameChar(c: u8) bool {
    return std.ascii.isAlphanumeric(c) or c == '_' or c == '-' or c == '$' or c >= 0x80;
}

/// Parse a path into steps, or say where it goes wrong.
fn parsePath(path: []const u8, steps: *std.ArrayList(Step)) !?PathError {
    var i: usize = 0;
    const p = std.mem.trim(u8, path, " ");
    if (p.len > 0 and p[0] == '$') {
        i = 1;
    } else if (p.len > 0 and isNameChar(p[0])) {
        // A bare leading name, as in `a.b[0]`.
        const start = i;
        while (i < p.len and isNameChar(p[i])) i += 1;
        try steps.append(gpa, .{ .key = p[start..i] });
    }
    while (i < p.len) {
        switch (p[i]) {
            '.' => {
                var descend = false;
                i += 1;
                if (i < p.len and p[i] == '.') {
                    descend = true;
                    i += 1;
                }
                if (i < p.len and p[i] == '*') {
                    i += 1;
                    try steps.append(gpa, if (descend) .descend_wildcard else .wildcard);
                    continue;
                }
                if (descend and i < p.len and p[i] == '[') {
                    // `..[0]` and `..['k']`: descend, then apply the bracket step to every node.
                    try steps.append(gpa, .descend_wildcard);
                    continue;
                }
                const start = i;
                while (i < p.len and isNameChar(p[i])) i += 1;
                if (i == start) return .{ .at = i, .what = "expected a member name" };
                const name = p[start..i];
                try steps.append(gpa, if (descend) .{ .descend_key = name } else .{ .key = name });
            },
            '[' => {
                i += 1;
                while (i < p.len and p[i] == ' ') i += 1;
                if (i >= p.len) return .{ .at = i, .what = "unclosed [" };
                if (p[i] == '*') {
                    i += 1;
                    try steps.append(gpa, .wildcard);
                } else if (p[i] == '\'' or p[i] == '"') {
                    const quote = p[i];
                    i += 1;
                    var name: std.ArrayList(u8) = .empty;
                    while (i < p.len and p[i] != quote) : (i += 1) {
                        if (p[i] == '\\' and i + 1 < p.len) i += 1;
                        try name.append(gpa, p[i]);
                    }
                    if (i >= p.len) return .{ .at = i, .what = "unterminated quoted name" };
                    i += 1;
                    try steps.append(gpa, .{ .key = name.items });
                } else {
                    const start = i;
                    while (i < p.len and p[i] != ']') i += 1;
                    const inner = std.mem.trim(u8, p[start..i], " ");
                    if (std.mem.indexOfScalar(u8, inner, ':')) |colon| {
                        const a = std.mem.trim(u8, inner[0..colon], " ");
                        const b = std.mem.trim(u8, inner[colon + 1 ..], " ");
                        const s = if (a.len == 0) null else std.fmt.parseInt(i64, a, 10) catch return .{ .at = start, .what = "bad slice start" };
                        const e = if (b.len == 0) null else std.fmt.parseInt(i64, b, 10) catch return .{ .at = start, .what = "bad slice end" };
                        try steps.append(gpa, .{ .slice = .{ .start = s, .end = e } });
                    } else {
                        const n = std.fmt.parseInt(i64, inner, 10) catch
                            return .{ .at = start, .what = "expected an index, a slice, * or a quoted name" };
                        try steps.append(gpa, .{ .index = n });
                    }
                }
                while (i < p.len and p[i] == ' ') i += 1;
                if (i >= p.len or p[i] != ']') return .{ .at = i, .what = "expected ]" };
                i += 1;
            },
            else => return .{ .at = i, .what = "expected . or [" },
        }
    }
    return null;
}

fn resolveIndex(n: i64, len: usize) ?usize {
    const l: i64 = @intCast(len);
    const k = if (n < 0) l + n else n;
    return if (k >= 0 and k < l) @intCast(k) else null;
}

fn clampBound(n: i64, len: usize) usize {
    const l: i64 = @intCast(len);
    const k = if (n < 0) l + n else n;
    return @intCast(std.math.clamp(k, 0, l));
}

/// Every node under `v` (itself first), in document order.
fn descendants(v: Value, out: *std.ArrayList(Value)) !void {
    try out.append(gpa, v);
    switch (v) {
        .array => |a| for (a.items) |item| try descendants(item, out),
        .object => |o| for (o.values()) |item| try descendants(item, out),
        else => {},
    }
}

fn children(v: Value, out: *std.ArrayList(Value)) !void {
    switch (v) {
        .array => |a| try out.appendSlice(gpa, a.items),
        .object => |o| try out.appendSlice(gpa, o.values()),
        else => {},
    }
}

fn apply(step: Step, nodes: []const Value) ![]const Value {
    var out: std.ArrayList(Value) = .empty;
    for (nodes) |v| switch (step) {
        .key => |k| if (v == .object) {
            if (v.object.get(k)) |x| try out.append(gpa, x);
        },
        .index => |n| if (v == .array) {
            if (resolveIndex(n, v.array.items.len)) |k| try out.append(gpa, v.array.items[k]);
        },
        .slice => |s| if (v == .array) {
            const len = v.array.items.len;
            const a = if (s.start) |x| clampBound(x, len) else 0;
            const b = if (s.end) |x| clampBound(x, len) else len;
            if (a < b) try out.appendSlice(gpa, v.array.items[a..b]);
        },
        .wildcard => try children(v, &out),
        .descend_key => |k| {
            var all: std.ArrayList(Value) = .empty;
            try descendants(v, &all);
            for (all.items) |d| if (d == .object) {
                if (d.object.get(k)) |x| try out.append(gpa, x);
            };
        },
        .descend_wildcard => {
            var all: std.ArrayList(Value) = .empty;
            try descendants(v, &all);
            // Every descendant except the node itself.
            try out.appendSlice(gpa, all.items[1..]);
        },
    };
    return out.items;
}

/// Deepest nesting of a document json_query accepts: results travel inside two more levels
/// (`matches`, `structuredContent`), and JSON readers commonly stop at 128.
const max_depth = 100;

/// Whether `v` nests deeper than `limit` levels; recursion stops at the limit.
fn tooDeep(v: Value, limit: usize) bool {
    if (limit == 0) return v == .array or v == .object;
    switch (v) {
        .array => |a| for (a.items) |item| if (tooDeep(item, limit - 1)) return true,
        .object => |o| for (o.values()) |item| if (tooDeep(item, limit - 1)) return true,
        else => {},
    }
    return false;
}

fn jsonQuery(args: struct {
    document: Value,
    path: []const u8,
    max_matches: usize = 1000,
}, r: *caxton.Result) !void {
    var doc = args.document;
    if (doc == .string) {
        // Numbers stay as written, so large integers and exact decimals come back unchanged.
        doc = std.json.parseFromSliceLeaky(Value, gpa, doc.string, .{ .parse_numbers = false }) catch |e|
            return r.fail("document is a string that is not JSON text ({s})", .{@errorName(e)});
    }
    if (tooDeep(doc, max_depth)) return r.fail("document nests more than {d} levels deep", .{max_depth});
    var steps: std.ArrayList(Step) = .empty;
    if (try parsePath(args.path, &steps)) |err|
        return r.fail("bad path \"{s}\" at character {d}: {s}", .{ args.path, err.at + 1, err.what });
    var nodes: []const Value = &.{doc};
    for (steps.items) |step| nodes = try apply(step, nodes);
    const shown = nodes[0..@min(nodes.len, args.max_matches)];
    try r.json(.{ .count = nodes.len, .matches = shown, .truncated = shown.len < nodes.len });
}
