/* tok_bpe.c — byte-level BPE as llama.cpp runs it (llm_tokenizer_bpe_session
 * and unicode_regex_split).
 *
 * Pre-tokenizer. llama.cpp first decodes the fragment leniently (every
 * invalid byte becomes U+FFFD), then applies a list of regexes one after the
 * other: each regex splits every piece produced so far, and the text between
 * two matches becomes a piece of its own. llama.cpp runs them with hand-written
 * matchers (gpt-2, llama3), or with std::regex on a "collapsed" copy of the
 * text where every non-ASCII code point is replaced by one byte standing for
 * its category and every non-ASCII whitespace by \v. We run the same regexes
 * with PCRE2 (UTF + Unicode properties) on the real code points and keep the
 * two properties that the collapsing gives:
 *   - "\s" is exactly llama.cpp's whitespace set (\t-\r, space, U+0085, U+00A0,
 *     U+1680, U+2000-200A, U+2028/9, U+202F, U+205F, U+3000), and non-ASCII
 *     whitespace never matches a literal range of a regex. Both hold because
 *     the regex subject is a copy of the text where 2-byte whitespace becomes
 *     U+0085 and 3-byte whitespace U+E000 (same byte length, so offsets stay
 *     valid), and "\s" is written as the class [\t-\r \x{85}\x{E000}]. A real
 *     U+E000 (private use) becomes U+E001, which is also private use.
 *   - "$" is the end of the piece (\z), and a match never looks past the
 *     piece, like std::regex_iterator on [begin, end).
 *   - "\p{S}" does not contain "~" in the collapsed form; deepseek-v3's regex
 *     is written accordingly.
 * Category tables are PCRE2's instead of llama.cpp's generated ones; they
 * agree except for code points assigned in recent Unicode versions.
 *
 * Merges. Each piece's bytes are mapped to GPT-2's printable code points,
 * split into characters, and the adjacent pair with the lowest merge rank is
 * merged (ties: leftmost), until no pair has a rank. Pieces that are not
 * tokens in the end are emitted byte by byte when a one-byte token exists
 * (and dropped otherwise, as llama.cpp does). */
#include "infer/tok_internal.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ unicode */

uint32_t tok_utf8_next(const char *s, size_t len, size_t *off)
{
    const uint8_t *u = (const uint8_t *)s;
    size_t o = *off;
    uint8_t c = u[o];
    if (!(c & 0x80)) {
        *off = o + 1;
        return c;
    }
    if (!(c & 0x40))
        goto invalid;
    if (!(c & 0x20)) {
        if (o + 1 >= len || (u[o + 1] & 0xC0) != 0x80)
            goto invalid;
        *off = o + 2;
        return ((uint32_t)(c & 0x1F) << 6) | (u[o + 1] & 0x3F);
    }
    if (!(c & 0x10)) {
        if (o + 2 >= len || (u[o + 1] & 0xC0) != 0x80 || (u[o + 2] & 0xC0) != 0x80)
            goto invalid;
        *off = o + 3;
        return ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(u[o + 1] & 0x3F) << 6) | (u[o + 2] & 0x3F);
    }
    if (!(c & 0x08)) {
        if (o + 3 >= len || (u[o + 1] & 0xC0) != 0x80 || (u[o + 2] & 0xC0) != 0x80 || (u[o + 3] & 0xC0) != 0x80)
            goto invalid;
        *off = o + 4;
        return ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(u[o + 1] & 0x3F) << 12) |
               ((uint32_t)(u[o + 2] & 0x3F) << 6) | (u[o + 3] & 0x3F);
    }
invalid:
    *off = o + 1;
    return 0xFFFD;
}

size_t tok_utf8_put(uint32_t cp, char *out)
{
    if (cp <= 0x7F) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp <= 0x7FF) {
        out[0] = (char)(0xC0 | ((cp >> 6) & 0x1F));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp <= 0xFFFF) {
        out[0] = (char)(0xE0 | ((cp >> 12) & 0x0F));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | ((cp >> 18) & 0x07));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* GPT-2's bytes_to_unicode(): printable Latin-1 bytes map to themselves, the
 * other 68 (0x00-0x20, 0x7F-0xA0, 0xAD) to U+0100.. in byte order. */
static uint32_t byte_to_cpt(uint8_t b)
{
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)
        return b;
    if (b <= 0x20)
        return 256u + b;
    if (b <= 0xA0)
        return 256u + 33u + (uint32_t)(b - 0x7F);
    return 256u + 67u; /* 0xAD */
}

size_t tok_byte_to_utf8(uint8_t b, char out[2])
{
    return tok_utf8_put(byte_to_cpt(b), out);
}

int tok_cpt_to_byte(uint32_t cp)
{
    if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF))
        return (int)cp;
    if (cp < 256 || cp >= 256 + 68)
        return -1;
    uint32_t n = cp - 256;
    if (n < 33)
        return (int)n;
    if (n < 67)
        return (int)(0x7F + n - 33);
    return 0xAD;
}

int tok_cpt_is_space(uint32_t cp)
{
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

/* ------------------------------------------------------------ regexes */

/* "\s" / "\S" of llama.cpp (see the file comment for the placeholders) */
#define WS "\\t-\\r \\x{85}\\x{E000}"
#define S_ "[" WS "]"
#define NS "[^" WS "]"

#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|" S_ "+(?!" NS ")"
#define RE_LLAMA3_HEAD "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
#define RE_LLAMA3_TAIL "| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|" S_ "*[\\r\\n]+|" S_ "+(?!" NS ")|" S_ "+"
#define RE_LLAMA3 RE_LLAMA3_HEAD "\\p{N}{1,3}" RE_LLAMA3_TAIL
#define RE_QWEN2 RE_LLAMA3_HEAD "\\p{N}" RE_LLAMA3_TAIL
#define RE_CJK "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+"
#define RE_PORO " ?[^(" WS "|.,!?\\x{2026}\\x{3002}\\x{FF0C}\\x{3001}\\x{964}\\x{6D4}\\x{60C})]+"

static const char *const re_default[] = {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]", NULL};
static const char *const re_llama3[] = {RE_LLAMA3, NULL};
static const char *const re_deepseek_llm[] = {
    "[\\r\\n]",
    S_ "?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}]+",
    S_ "?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+",
    S_ "+\\z",
    RE_CJK,
    "\\p{N}+",
    NULL};
static const char *const re_deepseek_coder[] = {"[\\r\\n]", S_ "?\\p{L}+", S_ "?\\p{P}+", RE_CJK, "\\p{N}", NULL};
static const char *const re_deepseek3[] = {
    "\\p{N}{1,3}",
    "[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|(?:~|[^\\r\\n\\p{L}\\p{P}\\p{S}])?[\\p{L}\\p{M}]+| "
    "?(?:(?!~)[\\p{P}\\p{S}])+[\\r\\n]*|" S_ "*[\\r\\n]+|" S_ "+(?!" NS ")|" S_ "+",
    NULL};
static const char *const re_falcon[] = {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]", NULL};
static const char *const re_starcoder[] = {"\\p{N}", RE_GPT2, NULL};
static const char *const re_gpt2[] = {RE_GPT2, NULL};
static const char *const re_qwen2[] = {RE_QWEN2, NULL};
static const char *const re_poro[] = {RE_PORO, NULL};
static const char *const re_viking[] = {RE_PORO, "\\p{N}", NULL};
static const char *const re_tekken[] = {
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+("
    "(?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n/]*|" S_ "*[\\r\\n]+|" S_ "+(?!" NS ")|" S_ "+",
    NULL};
static const char *const re_chameleon[] = {"<sentinel:[0-9]+>",
                                           "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
                                           "([\\t\\n]|    |  )",
                                           "\\p{N}",
                                           "[\\p{P}!-/:-@\\[-`{-~]",
                                           RE_GPT2,
                                           NULL};

static const char *const *pre_regexes(int pre)
{
    switch (pre) {
    case TOK_PRE_LLAMA3: return re_llama3;
    case TOK_PRE_DEEPSEEK_LLM: return re_deepseek_llm;
    case TOK_PRE_DEEPSEEK_CODER: return re_deepseek_coder;
    case TOK_PRE_DEEPSEEK3_LLM: return re_deepseek3;
    case TOK_PRE_FALCON: return re_falcon;
    case TOK_PRE_STARCODER: return re_starcoder;
    case TOK_PRE_GPT2: return re_gpt2;
    case TOK_PRE_QWEN2: return re_qwen2;
    case TOK_PRE_PORO: return re_poro;
    case TOK_PRE_CHATGLM4: return re_llama3;
    case TOK_PRE_VIKING: return re_viking;
    case TOK_PRE_TEKKEN: return re_tekken;
    case TOK_PRE_CHAMELEON: return re_chameleon;
    default: return re_default;
    }
}

int tok_bpe_compile(tok_vocab *v, sm_err *err)
{
    const char *const *list = pre_regexes(v->pre);
    for (v->n_re = 0; list[v->n_re]; v->n_re++) {
        int ec = 0;
        PCRE2_SIZE eoff = 0;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)list[v->n_re], PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec,
                                       &eoff, NULL);
        if (!re) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(ec, msg, sizeof msg);
            return sm_err_set(err, SM_EFORMAT, "pre-tokenizer '%s': regex %u: %s at offset %zu", v->pre_name, v->n_re,
                              (const char *)msg, (size_t)eoff);
        }
        /* JIT is only a speed-up: without it pcre2_match interprets */
        (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
        v->re[v->n_re] = re;
    }
    return 0;
}

/* ------------------------------------------------------------ splitting */

typedef struct span {
    size_t a, b; /* byte range [a, b) of the fragment's re-encoded text */
} span;

typedef struct spans {
    span *v; /* [cap] */
    size_t n, cap;
} spans;

static int spans_push(spans *s, size_t a, size_t b)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        span *nv = realloc(s->v, cap * sizeof *nv);
        if (!nv)
            return SM_ENOMEM;
        s->v = nv;
        s->cap = cap;
    }
    s->v[s->n].a = a;
    s->v[s->n].b = b;
    s->n++;
    return 0;
}

/* Splits every span of in with re into out: matches and the gaps between
 * them, in order. */
static int split_spans(const pcre2_code *re, const char *subj, const spans *in, spans *out, pcre2_match_data *md)
{
    int rc;
    for (size_t i = 0; i < in->n; i++) {
        const char *base = subj + in->v[i].a;
        size_t len = in->v[i].b - in->v[i].a;
        size_t pos = 0, prev = 0;
        while (pos <= len) {
            int m = pcre2_match(re, (PCRE2_SPTR)base, len, pos, PCRE2_NO_UTF_CHECK, md, NULL);
            if (m == PCRE2_ERROR_JIT_STACKLIMIT)
                m = pcre2_match(re, (PCRE2_SPTR)base, len, pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
            if (m == PCRE2_ERROR_NOMATCH)
                break;
            if (m < 0)
                return SM_ERANGE; /* resource limit on a pathological input */
            const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            size_t ms = ov[0], me = ov[1];
            if (ms > prev && (rc = spans_push(out, in->v[i].a + prev, in->v[i].a + ms)) < 0)
                return rc;
            if (me > ms) {
                if ((rc = spans_push(out, in->v[i].a + ms, in->v[i].a + me)) < 0)
                    return rc;
                prev = me;
                pos = me;
            } else {
                /* empty match (none of the shipped regexes has one): step
                 * over one character and keep it in the next gap */
                if (me >= len)
                    break;
                size_t o = me;
                (void)tok_utf8_next(base, len, &o);
                pos = o;
            }
        }
        if (prev < len && (rc = spans_push(out, in->v[i].a + prev, in->v[i].b)) < 0)
            return rc;
    }
    return 0;
}

/* ------------------------------------------------------------ merges */

typedef struct bpe_sym {
    int32_t prev, next; /* neighbours, -1 at the ends */
    uint32_t off, n;    /* bytes of the encoded word; n = 0 once merged away */
    int32_t id;         /* token of the text, TOK_NULL when none */
} bpe_sym;

typedef struct bpe_bigram {
    int32_t left, right;
    int32_t rank;
    uint32_t size;
} bpe_bigram;

typedef struct bpe_work {
    char *word;            /* [word_cap] byte-level encoded piece */
    size_t word_cap;
    bpe_sym *syms;         /* [syms_cap] */
    size_t syms_cap;
    bpe_bigram *heap;      /* [heap_cap] min-heap on (rank, left) */
    size_t heap_n, heap_cap;
} bpe_work;

static int bpe_before(const bpe_bigram *a, const bpe_bigram *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static int bpe_heap_push(bpe_work *w, bpe_bigram b)
{
    if (w->heap_n == w->heap_cap) {
        size_t cap = w->heap_cap ? w->heap_cap * 2 : 64;
        bpe_bigram *nv = realloc(w->heap, cap * sizeof *nv);
        if (!nv)
            return SM_ENOMEM;
        w->heap = nv;
        w->heap_cap = cap;
    }
    size_t i = w->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bpe_before(&b, &w->heap[p]))
            break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = b;
    return 0;
}

static bpe_bigram bpe_heap_pop(bpe_work *w)
{
    bpe_bigram top = w->heap[0];
    bpe_bigram last = w->heap[--w->heap_n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= w->heap_n)
            break;
        if (c + 1 < w->heap_n && bpe_before(&w->heap[c + 1], &w->heap[c]))
            c++;
        if (!bpe_before(&w->heap[c], &last))
            break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (w->heap_n > 0)
        w->heap[i] = last;
    return top;
}

static int bpe_add_bigram(const tok_vocab *v, bpe_work *w, int32_t left, int32_t right)
{
    if (left < 0 || right < 0)
        return 0;
    const bpe_sym *l = &w->syms[left], *r = &w->syms[right];
    if (l->id == TOK_NULL || r->id == TOK_NULL)
        return 0; /* every merge names two tokens (checked at load) */
    int32_t rank = tok_merge_rank(v, l->id, r->id);
    if (rank < 0)
        return 0;
    bpe_bigram b = {left, right, rank, l->n + r->n};
    return bpe_heap_push(w, b);
}

/* BPE of one pre-tokenized piece (raw bytes). */
static int bpe_word(const tok_vocab *v, bpe_work *w, const char *raw, size_t raw_len, tok_ids *out)
{
    int rc;
    if (raw_len > INT32_MAX) /* symbol indices are int32 */
        return SM_ERANGE;
    size_t need = raw_len * 2;
    if (need > w->word_cap) {
        char *nw = realloc(w->word, need);
        if (!nw)
            return SM_ENOMEM;
        w->word = nw;
        w->word_cap = need;
    }
    size_t wl = 0;
    for (size_t i = 0; i < raw_len; i++)
        wl += tok_byte_to_utf8((uint8_t)raw[i], w->word + wl);
    if (wl > UINT32_MAX)
        return SM_ERANGE;

    if (v->ignore_merges) {
        int32_t id = tok_lookup(v, w->word, wl);
        if (id != TOK_NULL)
            return tok_ids_push(out, id);
    }

    if (wl > w->syms_cap) {
        bpe_sym *ns = realloc(w->syms, wl * sizeof *ns);
        if (!ns)
            return SM_ENOMEM;
        w->syms = ns;
        w->syms_cap = wl;
    }
    int32_t n_syms = 0;
    for (size_t off = 0; off < wl;) {
        size_t o = off;
        (void)tok_utf8_next(w->word, wl, &o); /* valid UTF-8 by construction */
        bpe_sym *s = &w->syms[n_syms];
        s->off = (uint32_t)off;
        s->n = (uint32_t)(o - off);
        s->id = tok_lookup(v, w->word + off, s->n);
        s->prev = n_syms - 1;
        s->next = o == wl ? -1 : n_syms + 1;
        n_syms++;
        off = o;
    }

    w->heap_n = 0;
    for (int32_t i = 1; i < n_syms; i++)
        if ((rc = bpe_add_bigram(v, w, i - 1, i)) < 0)
            return rc;

    while (w->heap_n > 0) {
        bpe_bigram b = bpe_heap_pop(w);
        bpe_sym *l = &w->syms[b.left], *r = &w->syms[b.right];
        /* outdated: a side was merged away or grew (same test as llama.cpp's
         * text comparison, since both sides are adjacent when non-empty) */
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size)
            continue;
        l->n += r->n;
        r->n = 0;
        l->id = tok_lookup(v, w->word + l->off, l->n);
        l->next = r->next;
        if (r->next >= 0)
            w->syms[r->next].prev = b.left;
        if ((rc = bpe_add_bigram(v, w, l->prev, b.left)) < 0)
            return rc;
        if ((rc = bpe_add_bigram(v, w, b.left, l->next)) < 0)
            return rc;
    }

    for (int32_t i = 0; i < n_syms; i++) {
        const bpe_sym *s = &w->syms[i];
        if (s->n == 0)
            continue;
        if (s->id != TOK_NULL) {
            if ((rc = tok_ids_push(out, s->id)) < 0)
                return rc;
            continue;
        }
        for (uint32_t j = 0; j < s->n; j++) {
            int32_t id = tok_lookup(v, w->word + s->off + j, 1);
            if (id != TOK_NULL && (rc = tok_ids_push(out, id)) < 0)
                return rc;
        }
    }
    return 0;
}

int tok_bpe_encode(const tok_vocab *v, const char *text, size_t len, tok_ids *out)
{
    int rc = 0;
    char *real = NULL, *subj = NULL;
    spans a = {0}, b = {0};
    bpe_work w = {0};
    pcre2_match_data *md = NULL;
    if (len == 0)
        return 0;
    if (len > (SIZE_MAX - 8) / 3) {
        rc = SM_ERANGE;
        goto done;
    }
    /* lenient decode + re-encode: each invalid byte becomes U+FFFD (3 bytes) */
    real = malloc(len * 3 + 4);
    subj = malloc(len * 3 + 4);
    md = pcre2_match_data_create(16, NULL);
    if (!real || !subj || !md) {
        rc = SM_ENOMEM;
        goto done;
    }
    size_t rl = 0;
    for (size_t off = 0; off < len;) {
        uint32_t cp = tok_utf8_next(text, len, &off);
        if (cp > 0x10FFFF)
            cp = 0xFFFD; /* llama.cpp throws here; any choice is ours */
        uint32_t sc = cp;
        if (cp >= 0xD800 && cp <= 0xDFFF)
            sc = 0xE001; /* surrogate: kept in the piece, not valid for PCRE2 */
        else if (cp == 0xE000)
            sc = 0xE001;
        else if (cp >= 0x80 && tok_cpt_is_space(cp))
            sc = cp < 0x800 ? 0x85 : 0xE000;
        size_t n = tok_utf8_put(cp, real + rl);
        size_t n2 = tok_utf8_put(sc, subj + rl);
        (void)n2; /* same length by the choice of placeholders */
        rl += n;
    }

    if ((rc = spans_push(&a, 0, rl)) < 0)
        goto done;
    for (uint32_t r = 0; r < v->n_re; r++) {
        b.n = 0;
        if ((rc = split_spans(v->re[r], subj, &a, &b, md)) < 0)
            goto done;
        spans t = a;
        a = b;
        b = t;
    }
    for (size_t i = 0; i < a.n; i++)
        if ((rc = bpe_word(v, &w, real + a.v[i].a, a.v[i].b - a.v[i].a, out)) < 0)
            goto done;

done:
    pcre2_match_data_free(md);
    free(w.word);
    free(w.syms);
    free(w.heap);
    free(a.v);
    free(b.v);
    free(real);
    free(subj);
    return rc;
}
