//! sqlite_query: read-only SQL over a database file inside the granted directory, through the
//! host's `caxton.sqlite_query` (rusqlite, opened read-only, with row and time limits).

const std = @import("std");
const caxton = @import("caxton");

/// A panic traps; the host reports it as this call's crash.
pub const panic = caxton.panic;

comptime {
    caxton.serve(.{ .sqlite_query = sqliteQuery });
}

fn sqliteQuery(args: struct {
    database: []const u8,
    sql: []const u8,
    params: []const std.json.Value = &.{},
    max_rows: u32 = 100,
}, r: *caxton.Result) !void {
    const answer = caxton.sqliteQuery(.{
        .database = args.database,
        .sql = args.sql,
        .params = args.params,
        .max_rows = args.max_rows,
    }) catch |e| switch (e) {
        error.OutOfMemory => return e,
        error.BadHostReply => return r.fail("{s}: the host's reply could not be read", .{args.database}),
    };
    switch (answer.reply) {
        .failed => |why| return r.fail("{s}", .{why}),
        // The host's JSON goes out as it came: columns, rows, truncated.
        .ok => r.structuredRaw(answer.raw),
    }
}
