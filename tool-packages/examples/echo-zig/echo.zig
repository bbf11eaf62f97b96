//! The smallest Caxton tool in Zig: `echo` returns its `text` argument, `repeat` times.

const caxton = @import("caxton");

/// A panic traps; the host reports it as this call's crash.
pub const panic = caxton.panic;

comptime {
    caxton.serve(.{ .echo = echo });
}

fn echo(args: struct { text: []const u8, repeat: u32 = 1 }, r: *caxton.Result) !void {
    if (args.repeat > 100) return r.fail("repeat must be at most 100, not {d}", .{args.repeat});
    for (0..args.repeat) |_| try r.writeText(args.text);
}
