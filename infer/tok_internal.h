/* tok_internal.h — the tok_vocab layout shared by tokenizer.c (load, special
 * tokens, decode), tok_spm.c, tok_bpe.c, tok_wpm.c (the three algorithms)
 * and tok_unicode_data.c (generated tables). Not part of the public API. */
#ifndef SMELT_TOK_INTERNAL_H
#define SMELT_TOK_INTERNAL_H

#include "infer/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#define TOK_MAX_REGEX 8

/* Pre-tokenizer families: llama.cpp's LLAMA_VOCAB_PRE_TYPE_* that differ in
 * their split regexes. */
enum tok_pre {
    TOK_PRE_DEFAULT = 0,
    TOK_PRE_LLAMA3,
    TOK_PRE_DEEPSEEK_LLM,
    TOK_PRE_DEEPSEEK_CODER,
    TOK_PRE_DEEPSEEK3_LLM,
    TOK_PRE_FALCON,
    TOK_PRE_STARCODER, /* also refact, command-r, smollm, codeshell, exaone, minerva */
    TOK_PRE_GPT2,      /* also mpt, olmo, jais, phi-2, roberta-bpe, jina-* */
    TOK_PRE_QWEN2,     /* also stablelm2, deepseek-r1-qwen, megrez */
    TOK_PRE_PORO,      /* also bloom, gpt3-finnish */
    TOK_PRE_CHATGLM4,
    TOK_PRE_VIKING,
    TOK_PRE_TEKKEN,
    TOK_PRE_CHAMELEON,
};

/* Growable id list used while encoding. */
typedef struct tok_ids {
    int32_t *v; /* [cap] */
    size_t n, cap;
} tok_ids;

struct tok_vocab {
    int kind;                /* enum tok_kind */
    int pre;                 /* enum tok_pre (BPE only) */
    char pre_name[32];
    uint32_t n_tokens;
    char *arena;             /* all token texts back to back (owned) */
    uint64_t *text_off;      /* [n_tokens] offset in arena */
    uint32_t *text_len;      /* [n_tokens] */
    float *scores;           /* [n_tokens] */
    uint32_t *attr;          /* [n_tokens] enum tok_attr bits */
    uint32_t max_token_len;  /* longest token text in bytes */

    uint32_t *tok_ht;        /* [tok_ht_mask+1] token id + 1, 0 = empty */
    uint64_t tok_ht_mask;

    uint64_t *merge_keys;    /* [merge_ht_mask+1] (left id << 32 | right id) + 1, 0 = empty */
    int32_t *merge_rank;     /* [merge_ht_mask+1] */
    uint64_t merge_ht_mask;
    uint32_t n_merges;

    int32_t byte_tok[256];   /* SPM: token of each raw byte (<0xXX> or the char), TOK_NULL */

    int32_t bos, eos, eot, eom, unk, sep, pad, nl;
    int32_t *eog;            /* [n_eog] end-of-generation ids */
    uint32_t n_eog;
    bool add_space_prefix, add_bos, add_eos, ignore_merges, clean_spaces;

    int32_t *special;        /* [n_special] control/user/unknown ids, longest text first */
    uint32_t n_special;

    pcre2_code *re[TOK_MAX_REGEX]; /* BPE pre-tokenizer, applied in order */
    uint32_t n_re;
    pcre2_code *cat_re;      /* WPM: (\p{P})|(\p{S})|(control) of one code point */
};

/* Generated Unicode tables (tok_unicode_data.c). */
typedef struct tok_nfd_range {
    uint32_t first, last; /* code point range */
    uint32_t nfd;         /* first code point of their NFD */
} tok_nfd_range;
extern const tok_nfd_range tok_nfd_ranges[];   /* [tok_n_nfd_ranges], sorted */
extern const uint32_t tok_n_nfd_ranges;
extern const uint32_t tok_lower_pairs[][2];    /* [tok_n_lower_pairs] {cp, lower}, sorted */
extern const uint32_t tok_n_lower_pairs;

/* Token id of the exact bytes s[0..len), TOK_NULL when none. */
int32_t tok_lookup(const tok_vocab *v, const char *s, size_t len);
/* Merge rank of (left, right) token ids, -1 when none. */
int32_t tok_merge_rank(const tok_vocab *v, int32_t left, int32_t right);
/* Appends one id; SM_ENOMEM on failure. */
int tok_ids_push(tok_ids *o, int32_t id);

/* Compiles the split regexes of v->pre into v->re (PCRE2, UTF + UCP, JIT
 * when available). SM_EFORMAT with the PCRE2 message if one fails. */
int tok_bpe_compile(tok_vocab *v, sm_err *err);
/* Compiles the category matcher WPM needs into v->cat_re. */
int tok_wpm_compile(tok_vocab *v, sm_err *err);
/* WordPiece of one raw-text fragment (BERT): NFD first char, lowercase,
 * split on whitespace and punctuation, greedy longest match. */
int tok_wpm_encode(const tok_vocab *v, const char *text, size_t len, tok_ids *out);
/* llama.cpp's whitespace set (unicode_set_whitespace). */
int tok_cpt_is_space(uint32_t cp);
/* SentencePiece merge of one raw-text fragment (spaces already "▁"). */
int tok_spm_encode(const tok_vocab *v, const char *text, size_t len, tok_ids *out);
/* Byte-level BPE of one raw-text fragment: pre-tokenizer split + merges. */
int tok_bpe_encode(const tok_vocab *v, const char *text, size_t len, tok_ids *out);
/* The GPT-2 byte->unicode mapping: UTF-8 of the char for byte b (1 or 2 bytes). */
size_t tok_byte_to_utf8(uint8_t b, char out[2]);
/* Reverse mapping of one code point; -1 when cp is not one of the 256. */
int tok_cpt_to_byte(uint32_t cp);
/* llama.cpp's lenient UTF-8 decoder: decodes one code point at s[*off],
 * advancing *off; invalid sequences give U+FFFD and advance one byte. */
uint32_t tok_utf8_next(const char *s, size_t len, size_t *off);
/* Encodes cp (<= 0x10FFFF) as UTF-8; returns bytes written (1..4). */
size_t tok_utf8_put(uint32_t cp, char *out);

#endif
