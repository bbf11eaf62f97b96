//! file_system: read, write and list files inside the directories the host preopens (WASI
//! preview 1). Relative paths resolve in the preopen named "." (the agent's workspace); a path
//! starting with another preopen's name resolves there. The host's sandbox refuses `..`,
//! absolute paths and symlinks that leave a preopen; every refusal is a tool error.
//!
//! This calls `std.os.wasi` directly. In Zig 0.17 std's file API goes through an `std.Io`
//! implementation (`std.Io.Threaded`) and learns the preopens from a command module's start-up
//! code (`start.zig`); a reactor called through `caxton_call` has neither, and building them would
//! pull in far more code than these few preview-1 calls.

const std = @import("std");
const caxton = @import("caxton");
const wasi = std.os.wasi;
const gpa = caxton.gpa;

/// A panic traps; the host reports it as this call's crash.
pub const panic = caxton.panic;

comptime {
    caxton.serve(.{ .fs_read = fsRead, .fs_write = fsWrite, .fs_list = fsList });
}

/// Bytes fs_read returns unless told otherwise.
const default_max_bytes = 1 << 20;

const read_rights: wasi.rights_t = .{
    .FD_READ = true,
    .FD_SEEK = true,
    .FD_TELL = true,
    .FD_FILESTAT_GET = true,
    .FD_READDIR = true,
    .PATH_OPEN = true,
    .PATH_FILESTAT_GET = true,
};
const write_rights: wasi.rights_t = .{
    .FD_WRITE = true,
    .FD_SEEK = true,
    .FD_TELL = true,
    .FD_FILESTAT_GET = true,
    .FD_FILESTAT_SET_SIZE = true,
};

/// What an errno means to someone who asked for a path.
fn describe(e: wasi.errno_t) []const u8 {
    return switch (e) {
        .NOENT => "not found",
        .ACCES, .PERM, .NOTCAPABLE => "permission denied (outside the granted directory, or not allowed by the grant)",
        .ROFS => "permission denied (the directory is granted read-only)",
        .ISDIR => "is a directory",
        .NOTDIR => "not a directory",
        .EXIST => "already exists",
        .NOTEMPTY => "directory not empty",
        .NOSPC => "no space left on the device",
        .NAMETOOLONG => "name too long",
        .LOOP => "too many levels of symbolic links",
        .INVAL => "invalid path",
        .BADF => "no directory is granted to this tool server",
        else => @tagName(e),
    };
}

fn fail(r: *caxton.Result, path: []const u8, e: wasi.errno_t) caxton.ToolError {
    return r.fail("{s}: {s}", .{ path, describe(e) });
}

/// A preopened directory and the name the module sees it by.
const Preopen = struct { fd: wasi.fd_t, name: []const u8 };

fn preopens() ![]const Preopen {
    var out: std.ArrayList(Preopen) = .empty;
    var fd: wasi.fd_t = 3;
    while (true) : (fd += 1) {
        var stat: wasi.prestat_t = undefined;
        switch (wasi.fd_prestat_get(fd, &stat)) {
            .SUCCESS => {},
            else => break,
        }
        const name = try gpa.alloc(u8, stat.u.dir.pr_name_len);
        if (wasi.fd_prestat_dir_name(fd, name.ptr, name.len) != .SUCCESS) break;
        // Some hosts count a trailing NUL in the length.
        const trimmed = std.mem.trimEnd(u8, name, "\x00");
        try out.append(gpa, .{ .fd = fd, .name = trimmed });
    }
    return out.items;
}

/// A directory descriptor and a path relative to it.
const Target = struct { dir: wasi.fd_t, rel: []const u8 };

fn resolve(r: *caxton.Result, path: []const u8) !Target {
    const dirs = try preopens();
    if (dirs.len == 0) return r.fail("no directory is granted to this tool server", .{});
    // The longest named preopen the path starts with; else the "." preopen.
    var best: ?Preopen = null;
    for (dirs) |d| {
        const name = std.mem.trimEnd(u8, d.name, "/");
        if (name.len == 0 or std.mem.eql(u8, name, ".")) continue;
        const under = std.mem.eql(u8, path, name) or
            (std.mem.startsWith(u8, path, name) and path.len > name.len and path[name.len] == '/');
        if (under and (best == null or name.len > best.?.name.len)) best = d;
    }
    if (best) |d| {
        const name = std.mem.trimEnd(u8, d.name, "/");
        const rest = std.mem.trimStart(u8, path[name.len..], "/");
        return .{ .dir = d.fd, .rel = if (rest.len == 0) "." else rest };
    }
    for (dirs) |d| {
        if (std.mem.eql(u8, d.name, ".") or std.mem.eql(u8, d.name, "./")) {
            var rel = path;
            while (std.mem.startsWith(u8, rel, "./")) rel = rel[2..];
            return .{ .dir = d.fd, .rel = if (rel.len == 0) "." else rel };
        }
    }
    // No "." preopen: relative paths mean the first granted directory.
    return .{ .dir = dirs[0].fd, .rel = if (path.len == 0) "." else path };
}

fn open(dir: wasi.fd_t, rel: []const u8, oflags: wasi.oflags_t, rights: wasi.rights_t, fdflags: wasi.fdflags_t) union(enum) { fd: wasi.fd_t, err: wasi.errno_t } {
    var fd: wasi.fd_t = undefined;
    const e = wasi.path_open(dir, .{ .SYMLINK_FOLLOW = true }, rel.ptr, rel.len, oflags, rights, .{}, fdflags, &fd);
    return if (e == .SUCCESS) .{ .fd = fd } else .{ .err = e };
}

// ---- fs_read --------------------------------------------------------------------------------

fn fsRead(args: struct {
    path: []const u8,
    max_bytes: u64 = default_max_bytes,
    offset: u64 = 0,
    encoding: []const u8 = "utf8",
}, r: *caxton.Result) !void {
    const base64 = std.mem.eql(u8, args.encoding, "base64");
    if (!base64 and !std.mem.eql(u8, args.encoding, "utf8"))
        return r.fail("encoding must be \"utf8\" or \"base64\", not \"{s}\"", .{args.encoding});
    const t = try resolve(r, args.path);
    const fd = switch (open(t.dir, t.rel, .{}, read_rights, .{})) {
        .fd => |fd| fd,
        .err => |e| return fail(r, args.path, e),
    };
    defer _ = wasi.fd_close(fd);
    var stat: wasi.filestat_t = undefined;
    if (wasi.fd_filestat_get(fd, &stat) != .SUCCESS) stat.size = 0;
    if (stat.filetype == .DIRECTORY) return r.fail("{s}: is a directory (use fs_list)", .{args.path});
    const want: usize = @intCast(@min(args.max_bytes, if (stat.size > args.offset) stat.size - args.offset else 0, 64 << 20));
    const buf = try gpa.alloc(u8, want);
    var got: usize = 0;
    while (got < want) {
        const iov = [_]wasi.iovec_t{.{ .base = buf[got..].ptr, .len = want - got }};
        var n: usize = 0;
        const e = wasi.fd_pread(fd, &iov, 1, args.offset + got, &n);
        if (e != .SUCCESS) return fail(r, args.path, e);
        if (n == 0) break;
        got += n;
    }
    const data = buf[0..got];
    const truncated = args.offset + got < stat.size;
    if (base64) {
        const encoded = try gpa.alloc(u8, std.base64.standard.Encoder.calcSize(data.len));
        try r.writeText(std.base64.standard.Encoder.encode(encoded, data));
    } else {
        // A cut in the middle of a character is not a reason to refuse the text before it.
        var valid = data;
        if (truncated) {
            var k = data.len;
            while (k > 0 and data.len - k < 4 and (data[k - 1] & 0xC0) == 0x80) k -= 1;
            if (k > 0 and data[k - 1] >= 0xC0) valid = data[0 .. k - 1];
        }
        if (!std.unicode.utf8ValidateSlice(valid))
            return r.fail("{s}: not UTF-8 text ({d} bytes); read it with encoding \"base64\"", .{ args.path, stat.size });
        try r.writeText(valid);
    }
    try r.json(.{ .path = args.path, .size = stat.size, .offset = args.offset, .bytes = got, .truncated = truncated, .encoding = args.encoding });
}

// ---- fs_write -------------------------------------------------------------------------------

fn fsWrite(args: struct {
    path: []const u8,
    content: []const u8,
    encoding: []const u8 = "utf8",
    append: bool = false,
    create_dirs: bool = false,
}, r: *caxton.Result) !void {
    const data = if (std.mem.eql(u8, args.encoding, "base64")) blk: {
        const d = std.base64.standard.Decoder;
        const n = d.calcSizeForSlice(args.content) catch return r.fail("content is not valid base64", .{});
        const out = try gpa.alloc(u8, n);
        d.decode(out, args.content) catch return r.fail("content is not valid base64", .{});
        break :blk out;
    } else if (std.mem.eql(u8, args.encoding, "utf8")) args.content else return r.fail("encoding must be \"utf8\" or \"base64\", not \"{s}\"", .{args.encoding});
    const t = try resolve(r, args.path);
    if (args.create_dirs) {
        var i: usize = 0;
        while (std.mem.indexOfScalarPos(u8, t.rel, i, '/')) |slash| : (i = slash + 1) {
            if (slash == 0) continue;
            const e = wasi.path_create_directory(t.dir, t.rel.ptr, slash);
            if (e != .SUCCESS and e != .EXIST) return fail(r, t.rel[0..slash], e);
        }
    }
    const oflags: wasi.oflags_t = .{ .CREAT = true, .TRUNC = !args.append };
    const fd = switch (open(t.dir, t.rel, oflags, write_rights, .{ .APPEND = args.append })) {
        .fd => |fd| fd,
        .err => |e| return fail(r, args.path, e),
    };
    defer _ = wasi.fd_close(fd);
    var done: usize = 0;
    while (done < data.len) {
        const iov = [_]wasi.ciovec_t{.{ .base = data[done..].ptr, .len = data.len - done }};
        var n: usize = 0;
        const e = wasi.fd_write(fd, &iov, 1, &n);
        if (e != .SUCCESS) return fail(r, args.path, e);
        done += n;
    }
    var stat: wasi.filestat_t = undefined;
    const size: u64 = if (wasi.fd_filestat_get(fd, &stat) == .SUCCESS) stat.size else done;
    try r.print("{s} {d} bytes to {s} (now {d} bytes)", .{ if (args.append) "appended" else "wrote", done, args.path, size });
    try r.json(.{ .path = args.path, .bytes_written = done, .size = size });
}

// ---- fs_list --------------------------------------------------------------------------------

const Entry = struct {
    name: []const u8,
    type: []const u8,
    size: ?u64 = null,
};

fn typeName(t: wasi.filetype_t) []const u8 {
    return switch (t) {
        .DIRECTORY => "directory",
        .REGULAR_FILE => "file",
        .SYMBOLIC_LINK => "symlink",
        else => "other",
    };
}

/// A directory entry as read, before it is sorted and described.
const Name = struct { name: []const u8, type: wasi.filetype_t };

fn nameLess(_: void, a: Name, b: Name) bool {
    return std.mem.order(u8, a.name, b.name) == .lt;
}

const Lister = struct {
    r: *caxton.Result,
    entries: std.ArrayList(Entry) = .empty,
    max: usize,
    truncated: bool = false,

    /// Add the entries of directory `fd` (shown under `prefix`), descending `depth` more levels.
    fn list(l: *Lister, fd: wasi.fd_t, prefix: []const u8, depth: u32, shown: []const u8) !void {
        var names: std.ArrayList(Name) = .empty;
        var buf = try gpa.alloc(u8, 16 << 10);
        var cookie: wasi.dircookie_t = wasi.DIRCOOKIE_START;
        const header = @sizeOf(wasi.dirent_t);
        outer: while (true) {
            var used: usize = 0;
            const e = wasi.fd_readdir(fd, buf.ptr, buf.len, cookie, &used);
            if (e != .SUCCESS) return fail(l.r, shown, e);
            var at: usize = 0;
            while (at + header <= used) {
                var d: wasi.dirent_t = undefined;
                @memcpy(std.mem.asBytes(&d), buf[at..][0..header]);
                if (at + header + d.namlen > used) {
                    // The entry was cut off at the end of the buffer: read again from it.
                    if (at == 0) buf = try gpa.alloc(u8, buf.len * 2);
                    continue :outer;
                }
                const name = buf[at + header ..][0..d.namlen];
                if (!std.mem.eql(u8, name, ".") and !std.mem.eql(u8, name, ".."))
                    try names.append(gpa, .{ .name = try gpa.dupe(u8, name), .type = d.type });
                cookie = d.next;
                at += header + d.namlen;
            }
            if (used < buf.len) break;
        }
        std.mem.sort(Name, names.items, {}, nameLess);
        for (names.items) |n| {
            if (l.entries.items.len >= l.max) {
                l.truncated = true;
                return;
            }
            const full = if (prefix.len == 0) n.name else try std.fmt.allocPrint(gpa, "{s}/{s}", .{ prefix, n.name });
            var entry: Entry = .{ .name = full, .type = typeName(n.type) };
            if (n.type == .REGULAR_FILE) {
                var st: wasi.filestat_t = undefined;
                if (wasi.path_filestat_get(fd, .{}, n.name.ptr, n.name.len, &st) == .SUCCESS) entry.size = st.size;
            }
            try l.entries.append(gpa, entry);
            if (n.type == .DIRECTORY and depth > 0) {
                switch (open(fd, n.name, .{ .DIRECTORY = true }, read_rights, .{})) {
                    .fd => |sub| {
                        defer _ = wasi.fd_close(sub);
                        try l.list(sub, full, depth - 1, full);
                    },
                    // An unreadable subdirectory is listed but not descended into.
                    .err => {},
                }
            }
        }
    }
};

fn fsList(args: struct {
    path: []const u8 = ".",
    recursive: bool = false,
    max_entries: usize = 1000,
}, r: *caxton.Result) !void {
    const t = try resolve(r, args.path);
    const fd = switch (open(t.dir, t.rel, .{ .DIRECTORY = true }, read_rights, .{})) {
        .fd => |fd| fd,
        .err => |e| return fail(r, args.path, e),
    };
    defer _ = wasi.fd_close(fd);
    var l: Lister = .{ .r = r, .max = args.max_entries };
    try l.list(fd, "", if (args.recursive) 16 else 0, args.path);
    try r.json(.{ .path = args.path, .entries = l.entries.items, .truncated = l.truncated });
}
