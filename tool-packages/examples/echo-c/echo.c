/* The smallest Caxton tool in C: `echo` returns its `text` argument, `repeat` times. */
#define CAXTON_TOOL_IMPLEMENTATION
#include "caxton_tool.h"

void caxton_tool_call(caxton_str tool, caxton_str args, caxton_result *result) {
    if (!caxton_str_eq(tool, "echo")) {
        caxton_result_error(result, "unknown tool \"%.*s\"", (int)tool.len, tool.ptr);
        return;
    }
    caxton_str text;
    if (!caxton_arg_string(args, "text", &text)) {
        caxton_result_error(result, "echo: invalid arguments: \"text\" must be a string");
        return;
    }
    double repeat = 1;
    caxton_arg_number(args, "repeat", &repeat);
    if (repeat < 1 || repeat > 100) {
        caxton_result_error(result, "repeat must be between 1 and 100, not %g", repeat);
        return;
    }
    for (int i = 0; i < (int)repeat; i++) caxton_result_text(result, text.ptr, text.len);
}
