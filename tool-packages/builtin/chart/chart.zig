//! chart_generator: render a bar or line chart as a standalone SVG document, with axes, "nice"
//! tick values, category labels, a legend for several series, and every label escaped.

const std = @import("std");
const caxton = @import("caxton");
const gpa = caxton.gpa;

/// A panic traps; the host reports it as this call's crash.
pub const panic = caxton.panic;

comptime {
    caxton.serve(.{ .chart_svg = chartSvg });
}

const palette = [_][]const u8{ "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7" };

const Series = struct {
    name: ?[]const u8 = null,
    /// `null` is a gap: no bar, and a break in the line.
    values: []const ?f64,
};

const Args = struct {
    kind: []const u8 = "bar",
    title: ?[]const u8 = null,
    labels: []const []const u8,
    series: []const Series,
    x_label: ?[]const u8 = null,
    y_label: ?[]const u8 = null,
    width: u32 = 640,
    height: u32 = 400,
};

/// Ticks at 1, 2 or 5 times a power of ten, covering [lo, hi] with about `want` intervals.
const Ticks = struct {
    lo: f64,
    hi: f64,
    step: f64,
    decimals: u8,

    fn nice(lo_in: f64, hi_in: f64, want: f64) Ticks {
        var lo = lo_in;
        var hi = hi_in;
        if (hi == lo) {
            hi += if (hi == 0) 1 else @abs(hi) * 0.1;
            lo -= if (lo == 0) 0 else @abs(lo) * 0.1;
        }
        const raw = (hi - lo) / want;
        const mag = std.math.pow(f64, 10, @floor(std.math.log10(raw)));
        const f = raw / mag;
        const step = mag * @as(f64, if (f <= 1) 1 else if (f <= 2) 2 else if (f <= 5) 5 else 10);
        const decimals: u8 = if (step >= 1) 0 else @intFromFloat(@min(6, -@floor(std.math.log10(step))));
        return .{ .lo = @floor(lo / step) * step, .hi = @ceil(hi / step) * step, .step = step, .decimals = decimals };
    }
};

fn printTick(w: *std.Io.Writer, x: f64, decimals: u8) !void {
    // Avoid "-0" for a tick that is zero up to rounding.
    const v = if (@abs(x) < 1e-12) 0 else x;
    switch (decimals) {
        0 => try w.print("{d:.0}", .{v}),
        1 => try w.print("{d:.1}", .{v}),
        2 => try w.print("{d:.2}", .{v}),
        3 => try w.print("{d:.3}", .{v}),
        4 => try w.print("{d:.4}", .{v}),
        5 => try w.print("{d:.5}", .{v}),
        else => try w.print("{d:.6}", .{v}),
    }
}

/// Longest category label shown, in characters; longer ones end in an ellipsis.
const max_label = 24;

fn chars(s: []const u8) usize {
    return std.unicode.utf8CountCodepoints(s) catch s.len;
}

/// `s` cut to `max_label` characters (on a character boundary) with an ellipsis.
fn shorten(s: []const u8) ![]const u8 {
    if (chars(s) <= max_label) return s;
    var it = std.unicode.Utf8View.initUnchecked(s).iterator();
    var n: usize = 0;
    while (n < max_label - 1) : (n += 1) _ = it.nextCodepointSlice();
    return std.fmt.allocPrint(gpa, "{s}\u{2026}", .{s[0..it.i]});
}

fn text(w: *std.Io.Writer, x: f64, y: f64, anchor: []const u8, extra: []const u8, s: []const u8) !void {
    try w.print("<text x=\"{d:.1}\" y=\"{d:.1}\" text-anchor=\"{s}\"{s}>", .{ x, y, anchor, extra });
    try caxton.writeXmlEscaped(w, s);
    try w.writeAll("</text>\n");
}

fn chartSvg(args: Args, r: *caxton.Result) !void {
    const is_bar = std.mem.eql(u8, args.kind, "bar");
    if (!is_bar and !std.mem.eql(u8, args.kind, "line"))
        return r.fail("kind must be \"bar\" or \"line\", not \"{s}\"", .{args.kind});
    if (args.labels.len == 0) return r.fail("labels is empty: a chart needs at least one category", .{});
    if (args.series.len == 0) return r.fail("series is empty: a chart needs at least one series", .{});
    if (args.width < 200 or args.height < 150 or args.width > 4000 or args.height > 4000)
        return r.fail("width must be 200-4000 and height 150-4000, not {d}x{d}", .{ args.width, args.height });
    var lo: f64 = 0;
    var hi: f64 = 0;
    var any = false;
    for (args.series, 1..) |s, n| {
        if (s.values.len != args.labels.len)
            return r.fail("series {d} ({s}) has {d} values for {d} labels", .{ n, s.name orelse "unnamed", s.values.len, args.labels.len });
        for (s.values) |v| if (v) |x| {
            if (!any) {
                // Bars grow from zero, so zero is always on the axis; a line may float.
                lo = if (is_bar) @min(0, x) else x;
                hi = if (is_bar) @max(0, x) else x;
                any = true;
            }
            lo = @min(lo, x);
            hi = @max(hi, x);
        };
    }
    const ticks = Ticks.nice(lo, hi, 5);

    const width: f64 = @floatFromInt(args.width);
    const height: f64 = @floatFromInt(args.height);
    const legend = args.series.len > 1 or args.series[0].name != null;
    // Long or many category labels are written slanted so they do not overlap, shortened to
    // max_label characters; the margins grow to fit them (about 7 px a character at 12 px).
    var longest: f64 = 0;
    const labels = try gpa.alloc([]const u8, args.labels.len);
    for (args.labels, labels) |l, *shown| {
        shown.* = try shorten(l);
        longest = @max(longest, @as(f64, @floatFromInt(chars(shown.*))));
    }
    const n_labels: f64 = @floatFromInt(args.labels.len);
    var left: f64 = if (args.y_label != null) 70 else 55;
    const right: f64 = if (legend) 130 else 20;
    const top: f64 = if (args.title != null) 45 else 20;
    const slant = longest * 7 > (width - left - right) / n_labels;
    if (slant) {
        // A label slanted at 40 degrees reaches left by cos(40) of its length from its tick.
        left = @max(left, longest * 7 * 0.77 - (width - left - right) / n_labels / 2 + 10);
    }
    const label_room: f64 = if (slant) 25 + longest * 7 * 0.65 else 35;
    const bottom: f64 = label_room + (if (args.x_label != null) @as(f64, 20) else 0);
    const pw = width - left - right;
    const ph = height - top - bottom;
    if (pw < 50 or ph < 50) return r.fail("the chart is too small for its labels; make it larger", .{});
    const yOf = struct {
        fn f(t: Ticks, t_ph: f64, t_top: f64, v: f64) f64 {
            return t_top + t_ph - (v - t.lo) / (t.hi - t.lo) * t_ph;
        }
    }.f;
    const band = pw / n_labels;

    const w = r.writer();
    try w.print(
        \\<svg xmlns="http://www.w3.org/2000/svg" width="{d}" height="{d}" viewBox="0 0 {d} {d}" font-family="sans-serif" font-size="12">
        \\<rect width="100%" height="100%" fill="white"/>
        \\
    , .{ args.width, args.height, args.width, args.height });
    if (args.title) |t| try text(w, width / 2, 25, "middle", " font-size=\"16\" font-weight=\"bold\"", t);

    // Horizontal grid lines with their tick values.
    var tick = ticks.lo;
    while (tick <= ticks.hi + ticks.step / 2) : (tick += ticks.step) {
        const y = yOf(ticks, ph, top, tick);
        try w.print("<line x1=\"{d:.1}\" y1=\"{d:.1}\" x2=\"{d:.1}\" y2=\"{d:.1}\" stroke=\"#e0e0e0\"/>\n", .{ left, y, left + pw, y });
        try w.print("<text x=\"{d:.1}\" y=\"{d:.1}\" text-anchor=\"end\">", .{ left - 6, y + 4 });
        try printTick(w, tick, ticks.decimals);
        try w.writeAll("</text>\n");
    }

    // Data.
    const zero_y = yOf(ticks, ph, top, std.math.clamp(0, ticks.lo, ticks.hi));
    const n_series: f64 = @floatFromInt(args.series.len);
    for (args.series, 0..) |s, si| {
        const color = palette[si % palette.len];
        const name = s.name orelse "";
        if (is_bar) {
            const group = band * 0.8;
            const bw = group / n_series;
            for (s.values, 0..) |v, i| if (v) |x| {
                const bx = left + @as(f64, @floatFromInt(i)) * band + band * 0.1 + @as(f64, @floatFromInt(si)) * bw;
                const y = yOf(ticks, ph, top, x);
                try w.print("<rect x=\"{d:.1}\" y=\"{d:.1}\" width=\"{d:.1}\" height=\"{d:.1}\" fill=\"{s}\"><title>", .{ bx, @min(y, zero_y), bw, @abs(zero_y - y), color });
                try caxton.writeXmlEscaped(w, args.labels[i]);
                if (name.len > 0) {
                    try w.writeAll(" / ");
                    try caxton.writeXmlEscaped(w, name);
                }
                try w.print(": {d}</title></rect>\n", .{x});
            };
        } else {
            // One polyline per run of values without gaps, then a dot per point.
            var open = false;
            for (s.values, 0..) |v, i| {
                if (v) |x| {
                    const px = left + (@as(f64, @floatFromInt(i)) + 0.5) * band;
                    if (!open) try w.print("<polyline fill=\"none\" stroke=\"{s}\" stroke-width=\"2\" points=\"", .{color});
                    try w.print("{s}{d:.1},{d:.1}", .{ if (open) " " else "", px, yOf(ticks, ph, top, x) });
                    open = true;
                } else if (open) {
                    try w.writeAll("\"/>\n");
                    open = false;
                }
            }
            if (open) try w.writeAll("\"/>\n");
            for (s.values, 0..) |v, i| if (v) |x| {
                const px = left + (@as(f64, @floatFromInt(i)) + 0.5) * band;
                try w.print("<circle cx=\"{d:.1}\" cy=\"{d:.1}\" r=\"3\" fill=\"{s}\"><title>", .{ px, yOf(ticks, ph, top, x), color });
                try caxton.writeXmlEscaped(w, args.labels[i]);
                try w.print(": {d}</title></circle>\n", .{x});
            };
        }
    }

    // Axes over the data: the y axis at the left, the x axis at zero (or the bottom).
    try w.print("<line x1=\"{d:.1}\" y1=\"{d:.1}\" x2=\"{d:.1}\" y2=\"{d:.1}\" stroke=\"black\"/>\n", .{ left, top, left, top + ph });
    try w.print("<line x1=\"{d:.1}\" y1=\"{d:.1}\" x2=\"{d:.1}\" y2=\"{d:.1}\" stroke=\"black\"/>\n", .{ left, zero_y, left + pw, zero_y });
    for (labels, 0..) |l, i| {
        const x = left + (@as(f64, @floatFromInt(i)) + 0.5) * band;
        const base = top + ph;
        try w.print("<line x1=\"{d:.1}\" y1=\"{d:.1}\" x2=\"{d:.1}\" y2=\"{d:.1}\" stroke=\"black\"/>\n", .{ x, base, x, base + 5 });
        if (slant) {
            const rot = try std.fmt.allocPrint(gpa, " transform=\"rotate(-40 {d:.1} {d:.1})\"", .{ x, base + 16 });
            try text(w, x, base + 16, "end", rot, l);
        } else {
            try text(w, x, base + 18, "middle", "", l);
        }
    }
    if (args.x_label) |l| try text(w, left + pw / 2, height - 8, "middle", "", l);
    if (args.y_label) |l| {
        const rot = try std.fmt.allocPrint(gpa, " transform=\"rotate(-90 16 {d:.1})\"", .{top + ph / 2});
        try text(w, 16, top + ph / 2, "middle", rot, l);
    }
    if (legend) {
        for (args.series, 0..) |s, si| {
            const y = top + 10 + @as(f64, @floatFromInt(si)) * 18;
            try w.print("<rect x=\"{d:.1}\" y=\"{d:.1}\" width=\"12\" height=\"12\" fill=\"{s}\"/>\n", .{ left + pw + 12, y - 10, palette[si % palette.len] });
            const fallback = try std.fmt.allocPrint(gpa, "series {d}", .{si + 1});
            try text(w, left + pw + 30, y, "start", "", s.name orelse fallback);
        }
    }
    try w.writeAll("</svg>\n");
}
