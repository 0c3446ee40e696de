/* faultalloc.h — an allocation-failure shim for the fault-injection suite.
 *
 * Linked only into tests/test_faults (the Makefile adds this object and
 * -Wl,--wrap=malloc,calloc,realloc,free,strdup,strndup to that binary), so
 * every allocation the statically linked smelt libraries make goes through
 * it; jansson's allocations are routed here with json_set_alloc_funcs() by
 * fa_install(). PCRE2 and libc-internal allocations (fopen, opendir,
 * realpath) are not counted: they are outside our code's control.
 * jansson 2.14 cannot survive a failed allocation inside its parser (its
 * lexer drops the failure and later hits assert(0)), so json_loadb,
 * json_loads and json_load_file are wrapped too: a parse counts as one
 * allocation and fails as a whole, while allocations during parsing are
 * tracked but never failed. Building JSON values (json_object(), ...) fails
 * normally.
 *
 * fa_arm(n) makes the n-th allocation from now (1-based) return NULL, once;
 * later ones succeed again, so each run exercises exactly one error path.
 * Every pointer handed out is kept in a set, so fa_live() counts what is
 * still allocated and a test can check a failed call released everything.
 * Thread-safe (the quantizer allocates from worker threads). */
#ifndef SMELT_TEST_FAULTALLOC_H
#define SMELT_TEST_FAULTALLOC_H

#include <stddef.h>
#include <stdint.h>

/* Routes jansson through the shim. Call once before any JSON is parsed. */
void fa_install(void);
/* Fails the n-th allocation from now (n >= 1); 0 disarms. Resets fa_count. */
void fa_arm(uint64_t n);
/* Allocation calls made since the last fa_arm. */
uint64_t fa_count(void);
/* 1 when the armed failure has happened since the last fa_arm. */
int fa_fired(void);
/* Allocations made through the shim and not yet freed. */
uint64_t fa_live(void);

/* Largest single allocation requested since fa_reset_max() (bytes; calloc
 * n*m, SIZE_MAX when that overflows). Lets a test show that a crafted
 * few-byte file cannot make a parser ask for gigabytes. */
void fa_reset_max(void);
size_t fa_max_request(void);
/* Writes the call stack of the last injected failure to fd (debugging). */
void fa_print_trace(int fd);

#endif
