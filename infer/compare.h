/* compare.h — `smelt-infer compare`: choose a quantization preset for a RAM
 * budget. For the base model and each candidate (a GGUF file, or a preset
 * name quantized from the base on the fly with smelt-quantize) it measures
 * file size, bits per weight, RAM at the context (weights + KV cache +
 * buffers, and the measured peak RSS of the perplexity run), PPL and ΔPPL,
 * mean KLD and same-top-p against the base, and pp/tg tokens/s; marks what
 * fits the budget and recommends the lowest-KLD candidate that fits. Writes
 * REPORT.md, REPORT.json, REPORT.csv and REPORT.svg (size against KLD, the
 * budget drawn as a line).
 *
 * PPL and KLD come from running `smelt-infer perplexity --json` and
 * `smelt-infer kld --json` as child processes, so the report's numbers are
 * exactly what those commands print, and each run's peak RSS is measured on
 * its own. */
#ifndef SMELT_INFER_COMPARE_H
#define SMELT_INFER_COMPARE_H

#include <stdint.h>

/* Parses "2G", "1.5GiB", "800M", "123456" into bytes (K/M/G/T powers of
 * 1024). Returns 0 on success. */
int compare_parse_size(const char *s, uint64_t *out);

/* CLI entry: argv[0] is "compare". */
int compare_main(int argc, char **argv);

#endif
