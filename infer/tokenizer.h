/* tokenizer.h — runtime tokenizers built from a GGUF vocabulary, matching
 * llama.cpp c392e5094 (src/llama-vocab.cpp, src/unicode.cpp) token for token.
 *
 * Supported tokenizer.ggml.model values:
 *   "llama" — SentencePiece: scores, <0xXX> byte fallback, add-space prefix,
 *             llama.cpp's bigram priority-queue merge.
 *   "gpt2"  — byte-level BPE: merge ranks, GPT-2 byte<->unicode mapping, and
 *             the pre-tokenizer split of tokenizer.ggml.pre (llama3/llama-bpe,
 *             qwen2, deepseek-llm, deepseek-coder, falcon, gpt-2, starcoder,
 *             refact, mpt, ...) run with PCRE2 (UTF + Unicode properties).
 *   "bert"  — WordPiece: accent stripping (first code point of NFD),
 *             lowercasing, punctuation/CJK split, greedy longest match.
 * Others (t5, rwkv, none) give SM_EUNSUPP.
 *
 * Special tokens: control/user-defined/unknown token text found in the input
 * is cut out first (control and unknown ones only with parse_special, as
 * llama.cpp does); add_bos/add_eos come from tokenizer.ggml.add_bos_token /
 * add_eos_token with llama.cpp's per-model defaults (WordPiece always adds
 * [CLS] ... [SEP] with add_special, as llama.cpp does).
 *
 * A loaded tok_vocab is immutable: every function taking a const tok_vocab*
 * may be called from several threads at once. It copies what it needs from
 * the gguf_file, which may be closed after tok_load returns. */
#ifndef SMELT_TOKENIZER_H
#define SMELT_TOKENIZER_H

#include "formats/err.h"
#include "formats/gguf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tok_vocab tok_vocab;

enum tok_kind {
    TOK_KIND_SPM = 1, /* tokenizer.ggml.model = llama */
    TOK_KIND_BPE = 2, /* tokenizer.ggml.model = gpt2 */
    TOK_KIND_WPM = 3, /* tokenizer.ggml.model = bert (WordPiece) */
};

/* Token attributes (bit set), the values of llama.cpp's llama_token_attr. */
enum tok_attr {
    TOK_ATTR_UNDEFINED = 0,
    TOK_ATTR_UNKNOWN = 1 << 0,
    TOK_ATTR_UNUSED = 1 << 1,
    TOK_ATTR_NORMAL = 1 << 2,
    TOK_ATTR_CONTROL = 1 << 3,
    TOK_ATTR_USER_DEFINED = 1 << 4,
    TOK_ATTR_BYTE = 1 << 5,
    TOK_ATTR_NORMALIZED = 1 << 6,
    TOK_ATTR_LSTRIP = 1 << 7,
    TOK_ATTR_RSTRIP = 1 << 8,
    TOK_ATTR_SINGLE_WORD = 1 << 9,
};

#define TOK_NULL (-1) /* "no such token" (llama.cpp's LLAMA_TOKEN_NULL) */

/* Builds the tokenizer from the tokenizer.ggml.* keys of g. *out is owned by
 * the caller (tok_free). Errors (message names the key and the index):
 *   SM_EMISSING  tokenizer.ggml.model / tokens / merges (gpt2) absent
 *   SM_ETYPE     a key has the wrong type (tokens not strings, scores not f32,
 *                token_type not i32, ...)
 *   SM_EMISMATCH scores / token_type count differs from the token count
 *   SM_EFORMAT   bad token type value, duplicate token text, malformed merge
 *                or merge naming a text that is not a token
 *   SM_EUNSUPP   tokenizer model or pre-tokenizer not supported
 *   SM_ENOMEM */
int tok_load(tok_vocab **out, const gguf_file *g, sm_err *err);
/* Frees v (NULL is fine). */
void tok_free(tok_vocab *v);

/* Tokenizes len bytes of text (any bytes: invalid UTF-8 is handled as
 * llama.cpp does) like llama_tokenize(vocab, text, len, add_special,
 * parse_special). add_special adds BOS/EOS as the vocabulary asks
 * (tok_add_bos/tok_add_eos); parse_special turns control-token text such as
 * "<s>" or "<|im_end|>" into that token. On success *ids is a malloc'd array
 * of *n ids (caller frees; may be NULL when *n == 0). Errors: SM_ENOMEM,
 * SM_ERANGE (text longer than 2 GiB, or a PCRE2 match/heap limit hit by a
 * pathological input), SM_EMISSING (BOS/EOS/SEP needed but the vocabulary
 * has none). */
int tok_encode(const tok_vocab *v, const char *text, size_t len, bool add_special, bool parse_special,
               int32_t **ids, size_t *n, sm_err *err);

/* Writes the text of token id into buf (no NUL), as llama_token_to_piece():
 * SPM "▁" becomes a space and <0xXX> the raw byte, BPE pieces are byte-level
 * decoded, control/unknown tokens give "" unless special is true. Up to
 * lstrip leading spaces are skipped. Returns the length, or -(needed length)
 * when cap is too small (nothing written), or 0 for an id out of range. */
int32_t tok_piece(const tok_vocab *v, int32_t id, char *buf, size_t cap, int32_t lstrip, bool special);

/* Detokenizes n ids like llama_detokenize(): the leading space the SPM
 * add-space prefix introduced is removed from the first piece,
 * remove_special drops a leading BOS / trailing EOS the vocabulary adds,
 * unparse_special renders control tokens as their text, and BPE vocabularies
 * with clean_spaces get the " ." / " 's" clean-up. *out is a malloc'd
 * NUL-terminated string of *out_len bytes (caller frees). SM_ENOMEM only. */
int tok_detokenize(const tok_vocab *v, const int32_t *ids, size_t n, bool remove_special, bool unparse_special,
                   char **out, size_t *out_len, sm_err *err);

/* Accessors. Ids are TOK_NULL when the vocabulary has none. */
uint32_t tok_n_vocab(const tok_vocab *v);
int tok_kind(const tok_vocab *v);           /* enum tok_kind */
const char *tok_pre_name(const tok_vocab *v); /* pre-tokenizer ("default" for SPM) */
int32_t tok_bos(const tok_vocab *v);
int32_t tok_eos(const tok_vocab *v);
int32_t tok_eot(const tok_vocab *v);
int32_t tok_unk(const tok_vocab *v);
int32_t tok_nl(const tok_vocab *v);         /* the newline token (llama.cpp's linefeed_id) */
bool tok_add_bos(const tok_vocab *v);
bool tok_add_eos(const tok_vocab *v);
bool tok_add_space_prefix(const tok_vocab *v);
/* End of generation: EOS, EOT, EOM and the tokens llama.cpp treats so by text
 * ("<|endoftext|>", "<|im_end|>", "<|eot_id|>", ...). */
bool tok_is_eog(const tok_vocab *v, int32_t id);
/* enum tok_attr bits of id (0 when out of range). */
uint32_t tok_attr(const tok_vocab *v, int32_t id);
/* Stored text of id (not NUL-terminated; *len bytes), NULL when out of range. */
const char *tok_text(const tok_vocab *v, int32_t id, size_t *len);
float tok_score(const tok_vocab *v, int32_t id);
/* Id of an exact token text, or TOK_NULL. */
int32_t tok_find(const tok_vocab *v, const char *text, size_t len);

#endif
