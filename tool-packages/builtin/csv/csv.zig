//! csv_parser: parse CSV text (RFC 4180: quoted fields with embedded delimiters, quotes and
//! newlines), compute per-column statistics, and filter rows.

const std = @import("std");
const caxton = @import("caxton");
const gpa = caxton.gpa;

/// A panic traps; the host reports it as this call's crash.
pub const panic = caxton.panic;

comptime {
    caxton.serve(.{ .csv_parse = csvParse, .csv_stats = csvStats, .csv_filter = csvFilter });
}

/// Rows csv_parse and csv_filter return unless told otherwise: enough for a model to read, small
/// enough for its context.
const default_max_rows = 1000;

const Record = []const []const u8;

const Table = struct {
    header: Record,
    rows: []const Record,
    delimiter: u8,
};

/// Arguments every tool shares.
const Source = struct {
    csv: []const u8,
    delimiter: ?[]const u8 = null,
    has_header: bool = true,
};

fn delimiterOf(r: *caxton.Result, d: ?[]const u8) caxton.ToolError!u8 {
    const s = d orelse return ',';
    if (std.mem.eql(u8, s, "\\t") or std.mem.eql(u8, s, "tab")) return '\t';
    if (s.len != 1 or s[0] == '"' or s[0] == '\n' or s[0] == '\r')
        return r.fail("delimiter must be one character other than a quote or newline, not \"{s}\"", .{s});
    return s[0];
}

fn lineOf(text: []const u8, at: usize) usize {
    return std.mem.count(u8, text[0..at], "\n") + 1;
}

/// Split CSV text into records. Quoted fields may hold delimiters, doubled quotes and newlines;
/// a quote inside an unquoted field is an ordinary character; blank lines are skipped. Fields
/// are slices of `text` except quoted ones with doubled quotes, so a large file costs little
/// more memory than itself.
fn parseRecords(r: *caxton.Result, text: []const u8, delim: u8) (caxton.ToolError || error{OutOfMemory})![]const Record {
    var records: std.ArrayList(Record) = .empty;
    var fields: std.ArrayList([]const u8) = .empty;
    var i: usize = if (std.mem.startsWith(u8, text, "\xEF\xBB\xBF")) 3 else 0;
    while (i < text.len) {
        var value: []const u8 = undefined;
        const quoted = text[i] == '"';
        if (quoted) {
            const open = i;
            i += 1;
            const start = i;
            var copy: ?std.ArrayList(u8) = null;
            while (true) {
                const q = std.mem.indexOfScalarPos(u8, text, i, '"') orelse
                    return r.fail("unterminated quoted field starting on line {d}", .{lineOf(text, open)});
                if (q + 1 < text.len and text[q + 1] == '"') {
                    // A doubled quote stands for one: this field needs its own copy.
                    if (copy == null) copy = .empty;
                    try copy.?.appendSlice(gpa, text[i .. q + 1]);
                    i = q + 2;
                    continue;
                }
                if (copy) |*c| {
                    try c.appendSlice(gpa, text[i..q]);
                    value = c.items;
                } else value = text[start..q];
                i = q + 1;
                break;
            }
            // Leniency: text between the closing quote and the delimiter belongs to the field.
            const rest = i;
            while (i < text.len and text[i] != delim and text[i] != '\n' and text[i] != '\r') i += 1;
            if (i > rest) value = try std.mem.concat(gpa, u8, &.{ value, text[rest..i] });
        } else {
            const start = i;
            while (i < text.len and text[i] != delim and text[i] != '\n' and text[i] != '\r') i += 1;
            value = text[start..i];
        }
        try fields.append(gpa, value);
        if (i < text.len and text[i] == delim) {
            i += 1;
            continue;
        }
        // End of the record: a line holding nothing at all is not a record.
        if (fields.items.len == 1 and value.len == 0 and !quoted) {
            fields.clearRetainingCapacity();
        } else {
            try records.append(gpa, try fields.toOwnedSlice(gpa));
        }
        if (i < text.len and text[i] == '\r' and i + 1 < text.len and text[i + 1] == '\n') i += 1;
        i += 1;
    }
    // The text ended right after a delimiter: the record's last field is empty.
    if (fields.items.len > 0) {
        try fields.append(gpa, "");
        try records.append(gpa, try fields.toOwnedSlice(gpa));
    }
    return records.items;
}

fn loadTable(r: *caxton.Result, src: Source) !Table {
    const delim = try delimiterOf(r, src.delimiter);
    const records = try parseRecords(r, src.csv, delim);
    if (src.has_header) {
        if (records.len == 0) return r.fail("the CSV is empty: no header row", .{});
        return .{ .header = records[0], .rows = records[1..], .delimiter = delim };
    }
    var width: usize = 0;
    for (records) |rec| width = @max(width, rec.len);
    const header = try gpa.alloc([]const u8, width);
    for (header, 1..) |*h, n| h.* = try std.fmt.allocPrint(gpa, "column_{d}", .{n});
    return .{ .header = header, .rows = records, .delimiter = delim };
}

/// The index of column `name`: an exact match, else the only case-insensitive match of the
/// trimmed name.
fn columnIndex(r: *caxton.Result, t: Table, name: []const u8) !usize {
    for (t.header, 0..) |h, i| if (std.mem.eql(u8, h, name)) return i;
    var found: ?usize = null;
    const want = std.mem.trim(u8, name, " ");
    for (t.header, 0..) |h, i| {
        if (std.ascii.eqlIgnoreCase(std.mem.trim(u8, h, " "), want)) {
            if (found != null) {
                found = null;
                break;
            }
            found = i;
        }
    }
    if (found) |i| return i;
    var names: std.Io.Writer.Allocating = .init(gpa);
    for (t.header, 0..) |h, i| {
        if (i > 0) try names.writer.writeAll(", ");
        try names.writer.print("\"{s}\"", .{h});
    }
    return r.fail("no column \"{s}\"; the columns are {s}", .{ name, names.written() });
}

fn cell(row: Record, i: usize) []const u8 {
    return if (i < row.len) row[i] else "";
}

// ---- csv_parse ------------------------------------------------------------------------------

fn csvParse(args: struct {
    csv: []const u8,
    delimiter: ?[]const u8 = null,
    has_header: bool = true,
    max_rows: usize = default_max_rows,
}, r: *caxton.Result) !void {
    const t = try loadTable(r, .{ .csv = args.csv, .delimiter = args.delimiter, .has_header = args.has_header });
    const shown = t.rows[0..@min(t.rows.len, args.max_rows)];
    try r.json(.{
        .header = t.header,
        .rows = shown,
        .row_count = t.rows.len,
        .truncated = shown.len < t.rows.len,
    });
}

// ---- csv_stats ------------------------------------------------------------------------------

const ColumnStats = struct {
    name: []const u8,
    type: []const u8,
    count: usize,
    missing: usize,
    min: ?caxton.Number = null,
    max: ?caxton.Number = null,
    mean: ?caxton.Number = null,
    sum: ?caxton.Number = null,
    stddev: ?caxton.Number = null,
    distinct: ?usize = null,
};

fn columnStats(t: Table, col: usize) !ColumnStats {
    var s: ColumnStats = .{ .name = t.header[col], .type = "numeric", .count = 0, .missing = 0 };
    // Numeric statistics while every non-empty cell is a number; the first cell that is not
    // makes it a text column (usually on the first row, so the numeric pass costs little).
    // Welford's running mean and squared deviations: stable for large, close values.
    var mean: f64 = 0;
    var m2: f64 = 0;
    var sum: f64 = 0;
    var min: f64 = std.math.inf(f64);
    var max: f64 = -std.math.inf(f64);
    const numeric = for (t.rows) |row| {
        const v = std.mem.trim(u8, cell(row, col), " \t");
        if (v.len == 0) {
            s.missing += 1;
            continue;
        }
        const x = caxton.parseNumber(v) orelse break false;
        s.count += 1;
        const n: f64 = @floatFromInt(s.count);
        const delta = x - mean;
        mean += delta / n;
        m2 += delta * (x - mean);
        sum += x;
        min = @min(min, x);
        max = @max(max, x);
    } else s.count > 0;
    if (!numeric) {
        s = .{ .name = t.header[col], .type = "text", .count = 0, .missing = 0 };
        var distinct: std.StringHashMapUnmanaged(void) = .empty;
        for (t.rows) |row| {
            const v = std.mem.trim(u8, cell(row, col), " \t");
            if (v.len == 0) {
                s.missing += 1;
                continue;
            }
            s.count += 1;
            try distinct.put(gpa, v, {});
        }
        s.distinct = distinct.count();
        return s;
    }
    s.min = .{ .value = min };
    s.max = .{ .value = max };
    s.sum = .{ .value = sum };
    s.mean = .{ .value = mean };
    // Sample standard deviation (n - 1), as spreadsheets' STDEV and pandas' std give.
    if (s.count > 1) s.stddev = .{ .value = @sqrt(m2 / @as(f64, @floatFromInt(s.count - 1))) };
    return s;
}

fn csvStats(args: struct {
    csv: []const u8,
    delimiter: ?[]const u8 = null,
    has_header: bool = true,
    columns: ?[]const []const u8 = null,
}, r: *caxton.Result) !void {
    const t = try loadTable(r, .{ .csv = args.csv, .delimiter = args.delimiter, .has_header = args.has_header });
    var out: std.ArrayList(ColumnStats) = .empty;
    if (args.columns) |names| {
        for (names) |name| try out.append(gpa, try columnStats(t, try columnIndex(r, t, name)));
    } else {
        for (0..t.header.len) |i| try out.append(gpa, try columnStats(t, i));
    }
    try r.json(.{ .row_count = t.rows.len, .columns = out.items });
}

// ---- csv_filter -----------------------------------------------------------------------------

const Op = enum { eq, ne, lt, le, gt, ge, contains };

fn opOf(r: *caxton.Result, s: []const u8) !Op {
    const table = [_]struct { []const u8, Op }{
        .{ "==", .eq },     .{ "=", .eq }, .{ "!=", .ne }, .{ "<>", .ne },
        .{ "<", .lt },      .{ "<=", .le }, .{ ">", .gt }, .{ ">=", .ge },
        .{ "contains", .contains },
    };
    for (table) |e| if (std.mem.eql(u8, s, e[0])) return e[1];
    return r.fail("unknown op \"{s}\"; use one of == != < <= > >= contains", .{s});
}

fn matches(op: Op, cell_text: []const u8, want: []const u8, ignore_case: bool) bool {
    const a = std.mem.trim(u8, cell_text, " \t");
    const b = std.mem.trim(u8, want, " \t");
    if (op == .contains) {
        if (!ignore_case) return std.mem.indexOf(u8, cell_text, want) != null;
        if (want.len > cell_text.len) return false;
        for (0..cell_text.len - want.len + 1) |i| {
            if (std.ascii.eqlIgnoreCase(cell_text[i..][0..want.len], want)) return true;
        }
        return false;
    }
    // Numbers compare as numbers ("10" > "9", "1.0" == "1"); anything else as text.
    const order: std.math.Order = if (caxton.parseNumber(a)) |x| blk: {
        if (caxton.parseNumber(b)) |y| break :blk std.math.order(x, y);
        break :blk textOrder(a, b, ignore_case);
    } else textOrder(a, b, ignore_case);
    return switch (op) {
        .eq => order == .eq,
        .ne => order != .eq,
        .lt => order == .lt,
        .le => order != .gt,
        .gt => order == .gt,
        .ge => order != .lt,
        .contains => unreachable,
    };
}

fn textOrder(a: []const u8, b: []const u8, ignore_case: bool) std.math.Order {
    return if (ignore_case) std.ascii.orderIgnoreCase(a, b) else std.mem.order(u8, a, b);
}

fn writeCsvRecord(w: *std.Io.Writer, rec: Record, delim: u8) !void {
    for (rec, 0..) |f, i| {
        if (i > 0) try w.writeByte(delim);
        const needs_quotes = f.len > 0 and (std.mem.indexOfAny(u8, f, &.{ delim, '"', '\n', '\r' }) != null or
            f[0] == ' ' or f[f.len - 1] == ' ');
        if (!needs_quotes) {
            try w.writeAll(f);
            continue;
        }
        try w.writeByte('"');
        for (f) |c| {
            if (c == '"') try w.writeByte('"');
            try w.writeByte(c);
        }
        try w.writeByte('"');
    }
    try w.writeByte('\n');
}

fn csvFilter(args: struct {
    csv: []const u8,
    column: []const u8,
    op: []const u8,
    value: std.json.Value,
    delimiter: ?[]const u8 = null,
    has_header: bool = true,
    format: []const u8 = "csv",
    ignore_case: bool = false,
    max_rows: usize = default_max_rows,
}, r: *caxton.Result) !void {
    const t = try loadTable(r, .{ .csv = args.csv, .delimiter = args.delimiter, .has_header = args.has_header });
    const col = try columnIndex(r, t, args.column);
    const op = try opOf(r, args.op);
    const as_json = std.mem.eql(u8, args.format, "json");
    if (!as_json and !std.mem.eql(u8, args.format, "csv"))
        return r.fail("format must be \"csv\" or \"json\", not \"{s}\"", .{args.format});
    // The model may pass the value as a number or a string; compare its text either way.
    const want: []const u8 = switch (args.value) {
        .string => |s| s,
        .integer => |n| try std.fmt.allocPrint(gpa, "{d}", .{n}),
        .float => |x| try std.fmt.allocPrint(gpa, "{d}", .{x}),
        .number_string => |s| s,
        .bool => |b| if (b) "true" else "false",
        else => return r.fail("value must be a string or a number", .{}),
    };
    var kept: std.ArrayList(Record) = .empty;
    var matched: usize = 0;
    for (t.rows) |row| {
        if (!matches(op, cell(row, col), want, args.ignore_case)) continue;
        matched += 1;
        if (kept.items.len < args.max_rows) try kept.append(gpa, row);
    }
    const truncated = kept.items.len < matched;
    if (as_json) {
        try r.json(.{ .header = t.header, .rows = kept.items, .matched = matched, .total = t.rows.len, .truncated = truncated });
        return;
    }
    const w = r.writer();
    try writeCsvRecord(w, t.header, t.delimiter);
    for (kept.items) |row| try writeCsvRecord(w, row, t.delimiter);
    try r.json(.{ .matched = matched, .total = t.rows.len, .truncated = truncated });
}
