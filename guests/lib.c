/*
 * lib.c - the few C library pieces the built-in guest needs.  The memory
 * functions use rep movsb/stosb, so the compiler cannot turn them back into
 * calls to themselves.
 */
#include <stdarg.h>

#include "guest.h"

void *memset(void *s, int c, size_t n)
{
    void *d = s;

    __asm__ __volatile__("rep stosb"
                         : "+D"(d), "+c"(n)
                         : "a"((uint8_t)c)
                         : "memory");
    return s;
}

void *memcpy(void *d, const void *s, size_t n)
{
    void *r = d;

    __asm__ __volatile__("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
    return r;
}

void *memmove(void *d, const void *s, size_t n)
{
    unsigned char *dp = d;
    const unsigned char *sp = s;

    if (dp <= sp || dp >= sp + n)
        return memcpy(d, s, n);
    while (n--)
        WRITE_ONCE(dp[n], sp[n]);
    return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;

    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i])
            return x[i] - y[i];
    return 0;
}

size_t strlen(const char *s)
{
    size_t n = 0;

    while (s[n])
        n++;
    return n;
}

int strncmp(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (a[i] != b[i])
            return (unsigned char)a[i] - (unsigned char)b[i];
        if (!a[i])
            return 0;
    }
    return 0;
}

uint64_t parse_u64(const char *s, const char **end)
{
    uint64_t v = 0;

    while (*s >= '0' && *s <= '9')
        v = v * 10 + (uint64_t)(*s++ - '0');
    if (end)
        *end = s;
    return v;
}

const char *cmdline_get(const char *cmdline, const char *key, size_t *len)
{
    size_t klen = strlen(key);
    const char *p = cmdline;

    while (p && *p) {
        while (*p == ' ')
            p++;
        const char *w = p;
        while (*p && *p != ' ')
            p++;
        if ((size_t)(p - w) > klen && !strncmp(w, key, klen) &&
            w[klen] == '=') {
            *len = (size_t)(p - w) - klen - 1;
            return w + klen + 1;
        }
    }
    return NULL;
}

uint64_t cmdline_u64(const char *cmdline, const char *key, uint64_t dflt)
{
    size_t len;
    const char *v = cmdline_get(cmdline, key, &len);
    const char *end;
    uint64_t n;

    if (!v || !len)
        return dflt;
    n = parse_u64(v, &end);
    if (end != v + len) {
        /* K, M, G suffixes for sizes */
        if (end + 1 == v + len && *end == 'K')
            return n << 10;
        if (end + 1 == v + len && *end == 'M')
            return n << 20;
        if (end + 1 == v + len && *end == 'G')
            return n << 30;
        return dflt;
    }
    return n;
}

struct outbuf {
    char *buf;
    size_t size, len;
};

static void put(struct outbuf *o, char c)
{
    if (o->len + 1 < o->size)
        o->buf[o->len] = c;
    o->len++;
}

static void put_num(struct outbuf *o, uint64_t v, unsigned int base, int width,
                    char pad)
{
    char tmp[24];
    int n = 0;

    do {
        tmp[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    while (width-- > n)
        put(o, pad);
    while (n)
        put(o, tmp[--n]);
}

static void vformat(struct outbuf *o, const char *fmt, va_list ap)
{
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            put(o, *fmt);
            continue;
        }
        fmt++;
        char pad = ' ';
        int width = 0, lng = 0;
        if (*fmt == '0')
            pad = '0';
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l') {
            lng++;
            fmt++;
        }
        switch (*fmt) {
        case 'd': {
            int64_t v = lng ? va_arg(ap, int64_t) : va_arg(ap, int);
            if (v < 0) {
                put(o, '-');
                v = -v;
            }
            put_num(o, (uint64_t)v, 10, width, pad);
            break;
        }
        case 'u':
        case 'x': {
            uint64_t v = lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned int);
            put_num(o, v, *fmt == 'u' ? 10 : 16, width, pad);
            break;
        }
        case 's': {
            const char *s = va_arg(ap, const char *);
            for (s = s ? s : "(null)"; *s; s++)
                put(o, *s);
            break;
        }
        case 'c':
            put(o, (char)va_arg(ap, int));
            break;
        case '%':
            put(o, '%');
            break;
        default:
            put(o, '?');
            if (!*fmt)
                return;
        }
    }
}

int ksnprintf(char *buf, size_t size, const char *fmt, ...)
{
    struct outbuf o = {buf, size, 0};
    va_list ap;

    va_start(ap, fmt);
    vformat(&o, fmt, ap);
    va_end(ap);
    if (size)
        buf[o.len < size ? o.len : size - 1] = 0;
    return (int)o.len;
}

void kprintf(const char *fmt, ...)
{
    char buf[256];
    struct outbuf o = {buf, sizeof(buf), 0};
    va_list ap;

    va_start(ap, fmt);
    vformat(&o, fmt, ap);
    va_end(ap);
    console_write(buf, o.len < sizeof(buf) ? o.len : sizeof(buf) - 1);
}
