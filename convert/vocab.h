/* vocab.h — the tokenizer side of smelt-convert.
 *
 * Reproduces, byte for byte and in the same order, the tokenizer.* keys that
 * llama.cpp's convert_hf_to_gguf.py (c392e5094) writes for LlamaModel and
 * Qwen2Model, without Python and without running a tokenizer:
 *
 *   tokenizer.model (SentencePiece protobuf)  -> tokenizer.ggml.model "llama"
 *   tokenizer.json  (HF BPE, byte-level)      -> tokenizer.ggml.model "gpt2"
 *
 * followed by gguf-py SpecialVocab's keys (merges, special token ids,
 * add_bos/add_eos, chat template) and, for arch "llama", the
 * add_space_prefix / CodeLlama / granite extras of LlamaModel.set_vocab.
 *
 * The BPE pre-tokenizer name (tokenizer.ggml.pre) is found by matching the
 * pre_tokenizer/normalizer configuration of tokenizer.json against a table of
 * known configurations (llama.cpp hashes the output of the HF tokenizer
 * instead, which we cannot run); opts->pre_override skips the detection.
 *
 * Files: vocab.c (driver, special tokens, tokenizer_config.json, KVs),
 * vocab_spm.c (protobuf decoder), vocab_bpe.c (tokenizer.json + pre). */
#ifndef SMELT_CONVERT_VOCAB_H
#define SMELT_CONVERT_VOCAB_H

#include "err.h"
#include "gguf.h"

#include <stdint.h>

typedef struct cv_vocab_opts {
    const char *pre_override;   /* --pre NAME or NULL (validated against cv_pre_names) */
    uint32_t config_vocab_size; /* config.json vocab_size, 0 if absent */
    const char *arch;           /* "llama" or "qwen2" (NULL = "llama") */
} cv_vocab_opts;

/* What was written, for the converter's summary line. */
typedef struct cv_vocab_info {
    char model[16];        /* "llama" or "gpt2" */
    char pre[32];          /* tokenizer.ggml.pre value */
    uint32_t n_tokens;     /* tokens written (including [PAD{i}] entries) */
    uint32_t n_added;      /* added tokens applied (added_tokens.json / *_decoder / tokenizer.json) */
    uint32_t n_pad;        /* [PAD{i}] entries */
    uint64_t n_merges;     /* merges written (gpt2 only) */
    uint32_t n_kv;         /* tokenizer.* KVs appended */
    int has_chat_template; /* 1 when tokenizer.chat_template was written */
    int pre_detected;      /* 1 detected from tokenizer.json, 0 override / SPM */
} cv_vocab_info;

/* Reads the tokenizer files in model_dir and appends every tokenizer.* KV to
 * w in llama.cpp's order. Errors (negative sm_code, err filled, nothing
 * printed): SM_EMISSING when neither tokenizer.model nor tokenizer.json
 * exists (or a required JSON member is absent), SM_EFORMAT / SM_ERANGE for
 * malformed files (message names the file and the byte offset or JSON path),
 * SM_EUNSUPP for tokenizer kinds smelt does not convert and for a BPE
 * pre-tokenizer not in the table (the message says to pass --pre NAME and
 * lists the names), SM_EINVAL for an unknown --pre name, SM_EDUP when a key
 * already exists in w. On error w may hold some of the keys: the caller
 * discards the writer. */
int cv_vocab_add_kv(gguf_writer *w, const char *model_dir, const cv_vocab_opts *opts, sm_err *err);
/* Same, and fills *info (when non-NULL). */
int cv_vocab_add_kv_info(gguf_writer *w, const char *model_dir, const cv_vocab_opts *opts,
                         cv_vocab_info *info, sm_err *err);

/* Same, with tokenizer_config.json and config.json given as text (tc_text /
 * cfg_text with their lengths; NULL = the file is absent) and tokenizer.model
 * given already parsed (spm, borrowed; NULL = there is none, and
 * tokenizer.json is used). tokenizer.json, added_tokens.json and merges.txt
 * are still read from model_dir when present. The texts go through the same
 * JSON checks and messages as the files, and the KVs are the ones
 * cv_vocab_add_kv_info writes for a directory holding those files (both
 * end in the same builder): this is its in-memory entry, for fuzzing and
 * tests. */
struct cv_spm_model;
int cv_vocab_add_kv_mem(gguf_writer *w, const char *model_dir, const struct cv_spm_model *spm, const char *tc_text,
                        uint64_t tc_len, const char *cfg_text, uint64_t cfg_len, const cv_vocab_opts *opts,
                        cv_vocab_info *info, sm_err *err);

/* NULL-terminated list of the pre-tokenizer names llama.cpp c392e5094 accepts. */
extern const char *const cv_pre_names[];
/* 1 when name is in cv_pre_names. */
int cv_pre_name_known(const char *name);

/* ------------------------------------------------------------ SentencePiece */

/* Piece types of sentencepiece_model.proto (also the GGUF token types). */
enum cv_tok_type {
    CV_TOK_NORMAL = 1,
    CV_TOK_UNKNOWN = 2,
    CV_TOK_CONTROL = 3,
    CV_TOK_USER_DEFINED = 4,
    CV_TOK_UNUSED = 5,
    CV_TOK_BYTE = 6,
};

typedef struct cv_spm_piece {
    const uint8_t *ptr; /* [len] UTF-8 bytes, borrowed from the parsed buffer */
    uint32_t len;
    float score;        /* default 0 */
    int32_t type;       /* enum cv_tok_type, default NORMAL */
} cv_spm_piece;

typedef struct cv_spm_model {
    cv_spm_piece *pieces; /* [n_pieces] (owned array, borrowed bytes) */
    uint32_t n_pieces;
    /* trainer_spec */
    int32_t model_type;   /* 1 unigram (default), 2 bpe, 3 word, 4 char */
    int32_t vocab_size;   /* trainer's, informative only */
    int byte_fallback;    /* default 0 */
    int32_t unk_id, bos_id, eos_id, pad_id; /* defaults 0, 1, 2, -1 */
    /* normalizer_spec */
    int add_dummy_prefix;          /* default 1 */
    int remove_extra_whitespaces;  /* default 1 */
    int escape_whitespaces;        /* default 1 */
} cv_spm_model;

/* Decodes a ModelProto from buf (kept alive by the caller: pieces point into
 * it). name is used in messages. Every varint is bounded to 10 bytes
 * (SM_ERANGE past 64 bits), every length checked against the bytes left of
 * the enclosing message (SM_EFORMAT), wire types checked for the known fields
 * (SM_EFORMAT). Then checks what sentencepiece's loader checks: at least one
 * piece, no empty or duplicate piece, valid UTF-8, exactly one UNKNOWN piece,
 * BYTE pieces only with trainer_spec.byte_fallback and spelled <0xXX>.
 * Free with cv_spm_free (also safe after a failure). */
int cv_spm_parse(cv_spm_model *m, const uint8_t *buf, uint64_t len, const char *name, sm_err *err);
void cv_spm_free(cv_spm_model *m);

/* ------------------------------------------------------------ internals
 * Shared between vocab.c and vocab_bpe.c; not for the converter. */

/* Growable token table: text bytes live in one arena. */
typedef struct cv_toklist {
    char *arena;         /* [arena_len] token bytes */
    uint64_t arena_len, arena_cap;
    uint64_t *off;       /* [n] offset of token i in arena */
    uint32_t *len;       /* [n] byte length of token i */
    float *scores;       /* [n] (SPM only, else NULL) */
    int32_t *types;      /* [n] enum cv_tok_type */
    uint32_t n;
} cv_toklist;

int cv_toklist_init(cv_toklist *t, uint32_t n, int with_scores, sm_err *err);
/* Replaces token i's text (copied). */
int cv_toklist_set(cv_toklist *t, uint32_t i, const void *s, uint64_t len, sm_err *err);
void cv_toklist_free(cv_toklist *t);

/* 1 when s is valid UTF-8 (no overlongs, surrogates, or > U+10FFFF). */
int cv_utf8_valid(const uint8_t *s, uint64_t len);
/* convert_hf_to_gguf.py's Model.does_token_look_special. */
int cv_token_looks_special(const char *s, uint64_t len);

/* BPE tokens from tokenizer.json (vocab + added tokens, padded), merges and
 * the detected pre-tokenizer name. json is a parsed json_t * (void * keeps
 * jansson out of this header). */
typedef struct cv_bpe_result {
    cv_toklist toks;
    char **merges;       /* [n_merges] owned NUL-terminated strings */
    uint64_t n_merges;
    char pre[32];
    uint32_t n_added;
    uint32_t n_pad;
} cv_bpe_result;

int cv_bpe_load(cv_bpe_result *r, const void *tokenizer_json, const void *tokenizer_config,
                const char *model_dir, const cv_vocab_opts *opts, sm_err *err);
void cv_bpe_free(cv_bpe_result *r);
/* Pre-tokenizer name for a tokenizer.json (json_t *); SM_EUNSUPP when no
 * table entry matches (message lists names and says to pass --pre). */
int cv_bpe_detect_pre(const void *tokenizer_json, char *out, uint64_t out_cap, sm_err *err);

#endif
