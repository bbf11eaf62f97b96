/* caxton_tool.h: the Caxton tool ABI (docs/tool-abi.md) for tool modules written in C.
 *
 * One translation unit defines CAXTON_TOOL_IMPLEMENTATION before including this header; that
 * unit then exports `caxton_alloc` and `caxton_call`, and the tool author implements
 *
 *     void caxton_tool_call(caxton_str tool, caxton_str args, caxton_result *result);
 *
 * which reads the JSON arguments with caxton_arg_* and answers with caxton_result_*.
 *
 * Build (wasi-libc from Zig; the module imports nothing it does not call):
 *     python3 -m ziglang cc --target=wasm32-wasi -Os -mexec-model=reactor \
 *         -I tool-packages/sdk -o tool.wasm tool.c
 *
 * Memory: every call runs in a fresh instance, so nothing needs freeing. caxton_alloc and the
 * buffers here use libc's malloc, which grows the module's memory as needed; the host's memory
 * limit bounds it.
 */
#ifndef CAXTON_TOOL_H
#define CAXTON_TOOL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ABI version this header implements. */
#define CAXTON_ABI_VERSION 1

/* A byte string in the module's memory (not NUL-terminated unless said so). */
typedef struct {
    const char *ptr;
    size_t len;
} caxton_str;

/* A growable byte buffer. */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
} caxton_buf;

/* The answer being built for one call. */
typedef struct {
    caxton_buf text;       /* text content */
    caxton_buf structured; /* structuredContent: a JSON object, or empty for none */
    int is_error;          /* isError */
} caxton_result;

/* Log levels for caxton_log. */
enum { CAXTON_LOG_ERROR = 0, CAXTON_LOG_WARN = 1, CAXTON_LOG_INFO = 2, CAXTON_LOG_DEBUG = 3 };

/* Implemented by the tool author: run `tool` with the JSON object `args`, filling `result`. */
void caxton_tool_call(caxton_str tool, caxton_str args, caxton_result *result);

/* ---- strings and buffers ---- */

/* A caxton_str of a NUL-terminated string. */
caxton_str caxton_cstr(const char *s);
/* Whether `s` equals the NUL-terminated `lit`. */
int caxton_str_eq(caxton_str s, const char *lit);
/* Append bytes; abort (trap) when memory runs out, which the host reports as out of memory. */
void caxton_buf_append(caxton_buf *b, const char *bytes, size_t len);
/* Append printf-formatted text. */
void caxton_buf_printf(caxton_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append `s` as a quoted, escaped JSON string. */
void caxton_buf_json_string(caxton_buf *b, const char *s, size_t len);

/* ---- reading the arguments (a JSON object) ---- */

/* The raw JSON text of member `key` of the JSON object `object`; 0 when absent or not an object. */
int caxton_json_member(caxton_str object, const char *key, caxton_str *value);
/* Decode a JSON string value (with its quotes) into a new NUL-terminated UTF-8 buffer; 0 when
 * `value` is not a JSON string. */
int caxton_json_string(caxton_str value, caxton_str *out);
/* Member `key` of `args` as a decoded string; 0 when absent or not a string. */
int caxton_arg_string(caxton_str args, const char *key, caxton_str *out);
/* Member `key` of `args` as a number; 0 when absent or not a number. */
int caxton_arg_number(caxton_str args, const char *key, double *out);
/* Member `key` of `args` as a boolean; 0 when absent or not a boolean. */
int caxton_arg_bool(caxton_str args, const char *key, int *out);

/* ---- building the result ---- */

/* Append text content. */
void caxton_result_text(caxton_result *r, const char *text, size_t len);
/* Append printf-formatted text content. */
void caxton_result_printf(caxton_result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Set structuredContent to the JSON object `json` (copied). */
void caxton_result_structured(caxton_result *r, const char *json, size_t len);
/* Make the answer a tool-level error (isError: true) with this message as its only text. */
void caxton_result_error(caxton_result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- host functions (module "caxton"; imported only when called) ---- */

/* Write a message to the host's log. */
void caxton_log(int level, const char *msg, size_t len);
/* Send an HTTP request (JSON, see docs/tool-abi.md) through the host's allowlist; the reply JSON
 * is {"status":..,"headers":{..},"body":".."} or {"error":"..."}. */
caxton_str caxton_http_request(const char *request_json, size_t len);
/* Run a read-only SQL query (JSON request) through the host; the reply JSON is
 * {"columns":[..],"rows":[[..]],"truncated":false} or {"error":"..."}. */
caxton_str caxton_sqlite_query(const char *request_json, size_t len);

#ifdef __cplusplus
}
#endif

#ifdef CAXTON_TOOL_IMPLEMENTATION

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((import_module("caxton"), import_name("log"))) extern void caxton_host_log(int32_t level, const char *ptr,
                                                                                         size_t len);
__attribute__((import_module("caxton"), import_name("http_request"))) extern int64_t
caxton_host_http_request(const char *ptr, size_t len);
__attribute__((import_module("caxton"), import_name("sqlite_query"))) extern int64_t
caxton_host_sqlite_query(const char *ptr, size_t len);

/* Append a string literal. */
#define CAXTON_APPEND_LIT(b, lit) caxton_buf_append((b), (lit), sizeof(lit) - 1)

static caxton_str caxton_unpack(int64_t packed) {
    uint64_t v = (uint64_t)packed;
    caxton_str s = {(const char *)(uintptr_t)(v >> 32), (size_t)(v & 0xffffffffu)};
    return s;
}

static int64_t caxton_pack(const char *ptr, size_t len) {
    return (int64_t)(((uint64_t)(uintptr_t)ptr << 32) | (uint64_t)len);
}

/* ABI export: `len` writable bytes for the host. */
__attribute__((export_name("caxton_alloc"))) int32_t caxton_alloc(int32_t len) {
    void *p = malloc(len > 0 ? (size_t)len : 1);
    if (!p) __builtin_trap();
    return (int32_t)(uintptr_t)p;
}

caxton_str caxton_cstr(const char *s) {
    caxton_str r = {s, strlen(s)};
    return r;
}

int caxton_str_eq(caxton_str s, const char *lit) {
    size_t n = strlen(lit);
    return s.len == n && memcmp(s.ptr, lit, n) == 0;
}

static void caxton_buf_reserve(caxton_buf *b, size_t extra) {
    if (b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap < b->len + extra + 1) cap *= 2;
    char *d = (char *)realloc(b->data, cap);
    if (!d) __builtin_trap();
    b->data = d;
    b->cap = cap;
}

void caxton_buf_append(caxton_buf *b, const char *bytes, size_t len) {
    caxton_buf_reserve(b, len);
    memcpy(b->data + b->len, bytes, len);
    b->len += len;
    b->data[b->len] = 0;
}

static void caxton_buf_vprintf(caxton_buf *b, const char *fmt, va_list ap) {
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, again);
    va_end(again);
    if (n <= 0) return;
    caxton_buf_reserve(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void caxton_buf_printf(caxton_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    caxton_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void caxton_buf_json_string(caxton_buf *b, const char *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    caxton_buf_append(b, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': caxton_buf_append(b, "\\\"", 2); break;
        case '\\': caxton_buf_append(b, "\\\\", 2); break;
        case '\n': caxton_buf_append(b, "\\n", 2); break;
        case '\r': caxton_buf_append(b, "\\r", 2); break;
        case '\t': caxton_buf_append(b, "\\t", 2); break;
        default:
            if (c < 0x20) {
                char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                caxton_buf_append(b, u, 6);
            } else {
                caxton_buf_append(b, (const char *)&c, 1);
            }
        }
    }
    caxton_buf_append(b, "\"", 1);
}

/* ---- a small JSON reader: enough to find members and decode strings ---- */

static size_t caxton_json_ws(caxton_str j, size_t i) {
    while (i < j.len && (j.ptr[i] == ' ' || j.ptr[i] == '\t' || j.ptr[i] == '\n' || j.ptr[i] == '\r')) i++;
    return i;
}

/* Index just past the value starting at `i`, or 0 on malformed input. */
static size_t caxton_json_skip(caxton_str j, size_t i) {
    i = caxton_json_ws(j, i);
    if (i >= j.len) return 0;
    char c = j.ptr[i];
    if (c == '"') {
        for (i++; i < j.len; i++) {
            if (j.ptr[i] == '\\') i++;
            else if (j.ptr[i] == '"') return i + 1;
        }
        return 0;
    }
    if (c == '{' || c == '[') {
        int depth = 0;
        for (; i < j.len; i++) {
            char d = j.ptr[i];
            if (d == '"') {
                size_t end = caxton_json_skip(j, i);
                if (!end) return 0;
                i = end - 1;
            } else if (d == '{' || d == '[') {
                depth++;
            } else if (d == '}' || d == ']') {
                if (--depth == 0) return i + 1;
            }
        }
        return 0;
    }
    size_t start = i;
    while (i < j.len && j.ptr[i] != ',' && j.ptr[i] != '}' && j.ptr[i] != ']' && j.ptr[i] != ' ' &&
           j.ptr[i] != '\n' && j.ptr[i] != '\r' && j.ptr[i] != '\t')
        i++;
    return i > start ? i : 0;
}

static void caxton_utf8(caxton_buf *b, uint32_t cp) {
    char u[4];
    size_t n;
    if (cp < 0x80) { u[0] = (char)cp; n = 1; }
    else if (cp < 0x800) { u[0] = (char)(0xc0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 0x3f)); n = 2; }
    else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | (cp >> 12)); u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f)); n = 3;
    } else {
        u[0] = (char)(0xf0 | (cp >> 18)); u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); u[3] = (char)(0x80 | (cp & 0x3f)); n = 4;
    }
    caxton_buf_append(b, u, n);
}

static int caxton_hex4(const char *p, uint32_t *out) {
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p[k];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

int caxton_json_string(caxton_str value, caxton_str *out) {
    size_t i = caxton_json_ws(value, 0);
    if (i >= value.len || value.ptr[i] != '"') return 0;
    caxton_buf b = {0};
    caxton_buf_reserve(&b, 0);
    for (i++; i < value.len; i++) {
        char c = value.ptr[i];
        if (c == '"') {
            out->ptr = b.data;
            out->len = b.len;
            return 1;
        }
        if (c != '\\') {
            caxton_buf_append(&b, &c, 1);
            continue;
        }
        if (++i >= value.len) return 0;
        switch (value.ptr[i]) {
        case '"': caxton_buf_append(&b, "\"", 1); break;
        case '\\': caxton_buf_append(&b, "\\", 1); break;
        case '/': caxton_buf_append(&b, "/", 1); break;
        case 'b': caxton_buf_append(&b, "\b", 1); break;
        case 'f': caxton_buf_append(&b, "\f", 1); break;
        case 'n': caxton_buf_append(&b, "\n", 1); break;
        case 'r': caxton_buf_append(&b, "\r", 1); break;
        case 't': caxton_buf_append(&b, "\t", 1); break;
        case 'u': {
            uint32_t cp, lo;
            if (i + 4 >= value.len || !caxton_hex4(value.ptr + i + 1, &cp)) return 0;
            i += 4;
            /* A surrogate pair is two escapes; a lone surrogate becomes U+FFFD. */
            if (cp >= 0xd800 && cp < 0xdc00 && i + 6 < value.len && value.ptr[i + 1] == '\\' &&
                value.ptr[i + 2] == 'u' && caxton_hex4(value.ptr + i + 3, &lo) && lo >= 0xdc00 && lo < 0xe000) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                i += 6;
            } else if (cp >= 0xd800 && cp < 0xe000) {
                cp = 0xfffd;
            }
            caxton_utf8(&b, cp);
            break;
        }
        default: return 0;
        }
    }
    return 0;
}

int caxton_json_member(caxton_str object, const char *key, caxton_str *value) {
    size_t i = caxton_json_ws(object, 0);
    if (i >= object.len || object.ptr[i] != '{') return 0;
    i++;
    for (;;) {
        i = caxton_json_ws(object, i);
        if (i >= object.len || object.ptr[i] == '}') return 0;
        size_t key_end = caxton_json_skip(object, i);
        if (!key_end) return 0;
        caxton_str raw_key = {object.ptr + i, key_end - i}, name;
        if (!caxton_json_string(raw_key, &name)) return 0;
        i = caxton_json_ws(object, key_end);
        if (i >= object.len || object.ptr[i] != ':') return 0;
        size_t start = caxton_json_ws(object, i + 1);
        size_t end = caxton_json_skip(object, start);
        if (!end) return 0;
        if (caxton_str_eq(name, key)) {
            value->ptr = object.ptr + start;
            value->len = end - start;
            return 1;
        }
        i = caxton_json_ws(object, end);
        if (i < object.len && object.ptr[i] == ',') i++;
    }
}

int caxton_arg_string(caxton_str args, const char *key, caxton_str *out) {
    caxton_str v;
    return caxton_json_member(args, key, &v) && caxton_json_string(v, out);
}

int caxton_arg_number(caxton_str args, const char *key, double *out) {
    caxton_str v;
    if (!caxton_json_member(args, key, &v) || v.len == 0) return 0;
    char c = v.ptr[0];
    if (c != '-' && (c < '0' || c > '9')) return 0;
    char tmp[64];
    if (v.len >= sizeof tmp) return 0;
    memcpy(tmp, v.ptr, v.len);
    tmp[v.len] = 0;
    char *end;
    *out = strtod(tmp, &end);
    return *end == 0;
}

int caxton_arg_bool(caxton_str args, const char *key, int *out) {
    caxton_str v;
    if (!caxton_json_member(args, key, &v)) return 0;
    if (caxton_str_eq(v, "true")) { *out = 1; return 1; }
    if (caxton_str_eq(v, "false")) { *out = 0; return 1; }
    return 0;
}

void caxton_result_text(caxton_result *r, const char *text, size_t len) {
    caxton_buf_append(&r->text, text, len);
}

void caxton_result_printf(caxton_result *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    caxton_buf_vprintf(&r->text, fmt, ap);
    va_end(ap);
}

void caxton_result_structured(caxton_result *r, const char *json, size_t len) {
    r->structured.len = 0;
    caxton_buf_append(&r->structured, json, len);
}

void caxton_result_error(caxton_result *r, const char *fmt, ...) {
    r->text.len = 0;
    r->structured.len = 0;
    r->is_error = 1;
    va_list ap;
    va_start(ap, fmt);
    caxton_buf_vprintf(&r->text, fmt, ap);
    va_end(ap);
}

void caxton_log(int level, const char *msg, size_t len) { caxton_host_log(level, msg, len); }

caxton_str caxton_http_request(const char *request_json, size_t len) {
    return caxton_unpack(caxton_host_http_request(request_json, len));
}

caxton_str caxton_sqlite_query(const char *request_json, size_t len) {
    return caxton_unpack(caxton_host_sqlite_query(request_json, len));
}

/* ABI export: run one call and return its CallToolResult JSON. */
__attribute__((export_name("caxton_call"))) int64_t caxton_call(const char *name_ptr, int32_t name_len,
                                                                const char *args_ptr, int32_t args_len) {
    caxton_str name = {name_ptr, (size_t)name_len}, args = {args_ptr, (size_t)args_len};
    caxton_result r = {{0}, {0}, 0};
    caxton_tool_call(name, args, &r);
    caxton_buf out = {0};
    CAXTON_APPEND_LIT(&out, "{\"content\":[{\"type\":\"text\",\"text\":");
    /* With structured content and no text, the JSON is the text too, as MCP asks. */
    if (r.text.len == 0 && r.structured.len > 0 && !r.is_error)
        caxton_buf_json_string(&out, r.structured.data, r.structured.len);
    else
        caxton_buf_json_string(&out, r.text.data ? r.text.data : "", r.text.len);
    CAXTON_APPEND_LIT(&out, "}]");
    if (r.structured.len > 0) {
        CAXTON_APPEND_LIT(&out, ",\"structuredContent\":");
        caxton_buf_append(&out, r.structured.data, r.structured.len);
    }
    if (r.is_error) CAXTON_APPEND_LIT(&out, ",\"isError\":true}");
    else CAXTON_APPEND_LIT(&out, ",\"isError\":false}");
    return caxton_pack(out.data, out.len);
}

#endif /* CAXTON_TOOL_IMPLEMENTATION */
#endif /* CAXTON_TOOL_H */
