/* vocab_spm.c — SentencePiece tokenizer.model (ModelProto) decoder.
 *
 * Only the protobuf wire format is needed: varints, fixed32 and
 * length-delimited fields. Each message is read through a cursor bounded by
 * its own length, so a length that runs past the enclosing message is caught
 * where it is read. Field numbers are those of sentencepiece_model.proto:
 *   ModelProto      1 pieces (msg, repeated)  2 trainer_spec  3 normalizer_spec
 *   SentencePiece   1 piece (string)  2 score (float)  3 type (enum)
 *   TrainerSpec     3 model_type  4 vocab_size  35 byte_fallback
 *                   40 unk_id  41 bos_id  42 eos_id  43 pad_id
 *   NormalizerSpec  3 add_dummy_prefix  4 remove_extra_whitespaces
 *                   5 escape_whitespaces
 * Unknown fields are skipped (protobuf semantics); a repeated singular field
 * keeps its last value and a repeated sub-message merges, as protobuf does. */
#include "vocab.h"

#include <stdlib.h>
#include <string.h>

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

typedef struct pb_cur {
    const uint8_t *base; /* start of the whole file (offsets in messages) */
    uint64_t pos;        /* absolute offset of the next byte */
    uint64_t end;        /* absolute end of the current message */
    const char *name;    /* file name for messages */
    const char *msg;     /* message being decoded, for messages */
} pb_cur;

static int pb_varint(pb_cur *c, uint64_t *out, sm_err *err)
{
    uint64_t v = 0;
    uint64_t start = c->pos;
    for (int i = 0; i < 10; i++) {
        if (c->pos >= c->end)
            return sm_err_set(err, SM_EFORMAT, "%s: offset %llu: truncated varint in %s (message ends at %llu)",
                              c->name, (unsigned long long)start, c->msg, (unsigned long long)c->end);
        uint8_t b = c->base[c->pos++];
        /* the 10th byte holds bit 63 only: anything more overflows 64 bits */
        if (i == 9 && b > 1)
            return sm_err_set(err, SM_ERANGE, "%s: offset %llu: varint overflows 64 bits in %s",
                              c->name, (unsigned long long)start, c->msg);
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return sm_err_set(err, SM_ERANGE, "%s: offset %llu: varint longer than 10 bytes in %s",
                      c->name, (unsigned long long)start, c->msg);
}

/* Reads a field key; *field 0 never returned (rejected). */
static int pb_key(pb_cur *c, uint32_t *field, uint32_t *wt, sm_err *err)
{
    uint64_t key_off = c->pos;
    uint64_t k;
    int rc = pb_varint(c, &k, err);
    if (rc < 0)
        return rc;
    uint64_t f = k >> 3;
    if (f == 0 || f > 536870911u)
        return sm_err_set(err, SM_EFORMAT, "%s: offset %llu: invalid field number %llu in %s",
                          c->name, (unsigned long long)key_off, (unsigned long long)f, c->msg);
    *field = (uint32_t)f;
    *wt = (uint32_t)(k & 7);
    return 0;
}

/* Reads the length of a WT_LEN field and checks it fits the message. */
static int pb_len(pb_cur *c, uint64_t *len, sm_err *err)
{
    uint64_t off = c->pos;
    int rc = pb_varint(c, len, err);
    if (rc < 0)
        return rc;
    if (*len > c->end - c->pos)
        return sm_err_set(err, SM_EFORMAT,
                          "%s: offset %llu: length %llu runs past the end of %s (%llu bytes left)",
                          c->name, (unsigned long long)off, (unsigned long long)*len, c->msg,
                          (unsigned long long)(c->end - c->pos));
    return 0;
}

static int pb_skip(pb_cur *c, uint32_t field, uint32_t wt, sm_err *err)
{
    uint64_t off = c->pos;
    uint64_t v = 0;
    switch (wt) {
    case WT_VARINT:
        return pb_varint(c, &v, err);
    case WT_I64:
    case WT_I32: {
        uint64_t n = wt == WT_I64 ? 8 : 4;
        if (c->end - c->pos < n)
            return sm_err_set(err, SM_EFORMAT, "%s: offset %llu: truncated fixed%d field %u in %s",
                              c->name, (unsigned long long)off, (int)(n * 8), field, c->msg);
        c->pos += n;
        return 0;
    }
    case WT_LEN: {
        int rc = pb_len(c, &v, err);
        if (rc < 0)
            return rc;
        c->pos += v;
        return 0;
    }
    default:
        /* groups (3, 4) are not used by sentencepiece; 6 and 7 do not exist */
        return sm_err_set(err, SM_EFORMAT, "%s: offset %llu: unsupported wire type %u for field %u in %s",
                          c->name, (unsigned long long)off, wt, field, c->msg);
    }
}

static int pb_want(pb_cur *c, uint32_t field, uint32_t wt, uint32_t want, uint64_t key_off, sm_err *err)
{
    if (wt == want)
        return 0;
    return sm_err_set(err, SM_EFORMAT, "%s: offset %llu: field %u of %s has wire type %u, expected %u",
                      c->name, (unsigned long long)key_off, field, c->msg, wt, want);
}

static int pb_fixed32(pb_cur *c, uint32_t *out, sm_err *err)
{
    if (c->end - c->pos < 4)
        return sm_err_set(err, SM_EFORMAT, "%s: offset %llu: truncated fixed32 in %s",
                          c->name, (unsigned long long)c->pos, c->msg);
    const uint8_t *p = c->base + c->pos;
    *out = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    c->pos += 4;
    return 0;
}

static int parse_piece(pb_cur *c, cv_spm_piece *p, uint32_t index, sm_err *err)
{
    p->ptr = NULL;
    p->len = 0;
    p->score = 0.0f;
    p->type = CV_TOK_NORMAL;
    int seen_piece = 0;
    while (c->pos < c->end) {
        uint64_t key_off = c->pos;
        uint32_t field = 0, wt = 0;
        int rc = pb_key(c, &field, &wt, err);
        if (rc < 0)
            return rc;
        if (field == 1) {
            uint64_t len = 0;
            if ((rc = pb_want(c, field, wt, WT_LEN, key_off, err)) < 0 || (rc = pb_len(c, &len, err)) < 0)
                return rc;
            if (len > UINT32_MAX)
                return sm_err_set(err, SM_ERANGE, "%s: offset %llu: piece %u is %llu bytes long",
                                  c->name, (unsigned long long)c->pos, index, (unsigned long long)len);
            p->ptr = c->base + c->pos;
            p->len = (uint32_t)len;
            c->pos += len;
            seen_piece = 1;
        } else if (field == 2) {
            uint32_t bits = 0;
            if ((rc = pb_want(c, field, wt, WT_I32, key_off, err)) < 0 || (rc = pb_fixed32(c, &bits, err)) < 0)
                return rc;
            memcpy(&p->score, &bits, 4);
        } else if (field == 3) {
            uint64_t v = 0;
            if ((rc = pb_want(c, field, wt, WT_VARINT, key_off, err)) < 0 || (rc = pb_varint(c, &v, err)) < 0)
                return rc;
            /* proto2 keeps an unknown enum value as an unknown field and the
             * field at its default, NORMAL: do the same */
            if (v >= CV_TOK_NORMAL && v <= CV_TOK_BYTE)
                p->type = (int32_t)v;
            else
                p->type = CV_TOK_NORMAL;
        } else if ((rc = pb_skip(c, field, wt, err)) < 0) {
            return rc;
        }
    }
    if (!seen_piece)
        return sm_err_set(err, SM_EFORMAT, "%s: offset %llu: piece %u has no text (field 1)",
                          c->name, (unsigned long long)c->pos, index);
    return 0;
}

static int parse_trainer(pb_cur *c, cv_spm_model *m, sm_err *err)
{
    while (c->pos < c->end) {
        uint64_t key_off = c->pos;
        uint32_t field = 0, wt = 0;
        int rc = pb_key(c, &field, &wt, err);
        if (rc < 0)
            return rc;
        int32_t *dst = NULL;
        switch (field) {
        case 3: dst = &m->model_type; break;
        case 4: dst = &m->vocab_size; break;
        case 40: dst = &m->unk_id; break;
        case 41: dst = &m->bos_id; break;
        case 42: dst = &m->eos_id; break;
        case 43: dst = &m->pad_id; break;
        default: break;
        }
        if (dst || field == 35) {
            uint64_t v = 0;
            if ((rc = pb_want(c, field, wt, WT_VARINT, key_off, err)) < 0 || (rc = pb_varint(c, &v, err)) < 0)
                return rc;
            if (dst)
                *dst = (int32_t)(uint32_t)v; /* int32 fields: low 32 bits, sign-extended on the wire */
            else
                m->byte_fallback = v != 0;
        } else if ((rc = pb_skip(c, field, wt, err)) < 0) {
            return rc;
        }
    }
    return 0;
}

static int parse_normalizer(pb_cur *c, cv_spm_model *m, sm_err *err)
{
    while (c->pos < c->end) {
        uint64_t key_off = c->pos;
        uint32_t field = 0, wt = 0;
        int rc = pb_key(c, &field, &wt, err);
        if (rc < 0)
            return rc;
        int *dst = NULL;
        if (field == 3)
            dst = &m->add_dummy_prefix;
        else if (field == 4)
            dst = &m->remove_extra_whitespaces;
        else if (field == 5)
            dst = &m->escape_whitespaces;
        if (dst) {
            uint64_t v = 0;
            if ((rc = pb_want(c, field, wt, WT_VARINT, key_off, err)) < 0 || (rc = pb_varint(c, &v, err)) < 0)
                return rc;
            *dst = v != 0;
        } else if ((rc = pb_skip(c, field, wt, err)) < 0) {
            return rc;
        }
    }
    return 0;
}

/* FNV-1a over the piece bytes, for the duplicate check. */
static uint64_t piece_hash(const cv_spm_piece *p)
{
    uint64_t h = 1469598103934665603ull;
    for (uint32_t i = 0; i < p->len; i++) {
        h ^= p->ptr[i];
        h *= 1099511628211ull;
    }
    return h;
}

static int is_hex_upper(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

static int is_byte_piece(const cv_spm_piece *p)
{
    return p->len == 6 && memcmp(p->ptr, "<0x", 3) == 0 && is_hex_upper(p->ptr[3]) && is_hex_upper(p->ptr[4]) &&
           p->ptr[5] == '>';
}

static int check_pieces(const cv_spm_model *m, const char *name, sm_err *err)
{
    int rc = 0;
    uint32_t n_unk = 0;
    uint64_t cap = 16;
    while (cap < (uint64_t)m->n_pieces * 2)
        cap <<= 1;
    uint32_t *slots = malloc(cap * sizeof *slots); /* piece index + 1, 0 = empty */
    if (!slots)
        return sm_err_set(err, SM_ENOMEM, "%s: out of memory checking %u pieces", name, m->n_pieces);
    memset(slots, 0, cap * sizeof *slots);
    for (uint32_t i = 0; i < m->n_pieces; i++) {
        const cv_spm_piece *p = &m->pieces[i];
        if (p->len == 0) {
            rc = sm_err_set(err, SM_EFORMAT, "%s: piece %u is empty", name, i);
            goto done;
        }
        if (!cv_utf8_valid(p->ptr, p->len)) {
            rc = sm_err_set(err, SM_EFORMAT, "%s: piece %u is not valid UTF-8", name, i);
            goto done;
        }
        if (p->type == CV_TOK_UNKNOWN)
            n_unk++;
        /* sentencepiece accepts BYTE pieces only with byte_fallback and
         * only spelled "<0xXX>" (upper-case hex) */
        if (p->type == CV_TOK_BYTE) {
            if (!m->byte_fallback) {
                rc = sm_err_set(err, SM_EFORMAT, "%s: byte piece %u found although trainer_spec.byte_fallback is false",
                                name, i);
                goto done;
            }
            if (!is_byte_piece(p)) {
                rc = sm_err_set(err, SM_EFORMAT, "%s: byte piece %u is \"%.*s\", expected <0xXX>", name, i,
                                (int)(p->len > 32 ? 32 : p->len), (const char *)p->ptr);
                goto done;
            }
        }
        uint64_t h = piece_hash(p) & (cap - 1);
        while (slots[h]) {
            const cv_spm_piece *q = &m->pieces[slots[h] - 1];
            if (q->len == p->len && memcmp(q->ptr, p->ptr, p->len) == 0) {
                rc = sm_err_set(err, SM_EDUP, "%s: piece %u \"%.*s\" is already defined as piece %u",
                                name, i, (int)(p->len > 64 ? 64 : p->len), (const char *)p->ptr, slots[h] - 1);
                goto done;
            }
            h = (h + 1) & (cap - 1);
        }
        slots[h] = i + 1;
    }
    if (n_unk != 1)
        rc = sm_err_set(err, SM_EFORMAT, "%s: expected exactly one UNKNOWN piece (type 2), found %u", name, n_unk);
done:
    free(slots);
    return rc;
}

int cv_spm_parse(cv_spm_model *m, const uint8_t *buf, uint64_t len, const char *name, sm_err *err)
{
    memset(m, 0, sizeof *m);
    m->model_type = 1;
    m->vocab_size = 8000;
    m->unk_id = 0;
    m->bos_id = 1;
    m->eos_id = 2;
    m->pad_id = -1;
    m->add_dummy_prefix = 1;
    m->remove_extra_whitespaces = 1;
    m->escape_whitespaces = 1;
    if (!name)
        name = "tokenizer.model";

    int rc = 0;
    uint32_t cap = 0;
    pb_cur c = {buf, 0, len, name, "ModelProto"};
    while (c.pos < c.end) {
        uint64_t key_off = c.pos;
        uint32_t field = 0, wt = 0;
        if ((rc = pb_key(&c, &field, &wt, err)) < 0)
            goto fail;
        if (field >= 1 && field <= 3) {
            uint64_t sub_len = 0;
            if ((rc = pb_want(&c, field, wt, WT_LEN, key_off, err)) < 0 || (rc = pb_len(&c, &sub_len, err)) < 0)
                goto fail;
            pb_cur sub = {buf, c.pos, c.pos + sub_len, name, ""};
            if (field == 1) {
                if (m->n_pieces == cap) {
                    uint32_t ncap = cap ? cap * 2 : 1024;
                    if (cap > UINT32_MAX / 2) {
                        rc = sm_err_set(err, SM_ERANGE, "%s: too many pieces", name);
                        goto fail;
                    }
                    cv_spm_piece *np = realloc(m->pieces, (size_t)ncap * sizeof *np);
                    if (!np) {
                        rc = sm_err_set(err, SM_ENOMEM, "%s: out of memory for %u pieces", name, ncap);
                        goto fail;
                    }
                    m->pieces = np;
                    cap = ncap;
                }
                sub.msg = "SentencePiece";
                if ((rc = parse_piece(&sub, &m->pieces[m->n_pieces], m->n_pieces, err)) < 0)
                    goto fail;
                m->n_pieces++;
            } else if (field == 2) {
                sub.msg = "TrainerSpec";
                if ((rc = parse_trainer(&sub, m, err)) < 0)
                    goto fail;
            } else {
                sub.msg = "NormalizerSpec";
                if ((rc = parse_normalizer(&sub, m, err)) < 0)
                    goto fail;
            }
            c.pos += sub_len;
        } else if ((rc = pb_skip(&c, field, wt, err)) < 0) {
            goto fail;
        }
    }
    if (m->n_pieces == 0) {
        rc = sm_err_set(err, SM_EFORMAT, "%s: no pieces (ModelProto field 1) in %llu bytes",
                        name, (unsigned long long)len);
        goto fail;
    }
    if ((rc = check_pieces(m, name, err)) < 0)
        goto fail;
    return 0;
fail:
    cv_spm_free(m);
    return rc;
}

void cv_spm_free(cv_spm_model *m)
{
    if (!m)
        return;
    free(m->pieces);
    m->pieces = NULL;
    m->n_pieces = 0;
}
