/* test_formats_stwrite.c — the streaming safetensors writer (round trips
 * through the reader, byte-identical rewrites of the shipped checkpoints,
 * error table) and SHA-256 (FIPS 180-4 test vectors). */
#include "safetensors.h"
#include "safetensors_write.h"
#include "sha256.h"

#include "fileio.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *shared(void)
{
    const char *s = getenv("SMELT_SHARED");
    return s && *s ? s : "../shared";
}

static char *make_tmpdir(void)
{
    char *t = strdup("/tmp/smelt-test-stwrite-XXXXXX");
    cr_assert_not_null(mkdtemp(t));
    return t;
}

static void rm_dir(char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        char p[1024];
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
    free(dir);
}

static int n_entries(const char *dir)
{
    int n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    if (d)
        closedir(d);
    return n;
}

/* ------------------------------------------------------------ sha256 */

Test(sha256, fips_vectors)
{
    char hex[65];
    sm_sha256_hex("", 0, hex);
    cr_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sm_sha256_hex("abc", 3, hex);
    cr_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m2 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sm_sha256_hex(m2, strlen(m2), hex);
    cr_assert_str_eq(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* one million 'a', fed in uneven chunks */
    char *a = malloc(1000000);
    memset(a, 'a', 1000000);
    sm_sha256 s;
    uint8_t d[32];
    sm_sha256_init(&s);
    size_t off = 0, step = 1;
    while (off < 1000000) {
        size_t n = step < 1000000 - off ? step : 1000000 - off;
        sm_sha256_update(&s, a + off, n);
        off += n;
        step = step * 3 % 997 + 1;
    }
    sm_sha256_final(&s, d);
    sm_sha256_to_hex(d, hex);
    cr_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    sm_sha256_hex(a, 1000000, hex);
    cr_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(a);
    /* 55/56/64-byte boundaries of the padding */
    sm_sha256_hex("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 55, hex);
    cr_assert_str_eq(hex, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
    sm_sha256_hex("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 56, hex);
    cr_assert_str_eq(hex, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
}

/* ------------------------------------------------------------ writer */

Test(stwrite, round_trip_through_reader)
{
    char *dir = make_tmpdir();
    char path[1024];
    snprintf(path, sizeof path, "%s/t.safetensors", dir);
    sm_err err = {0};
    for (int last = 0; last < 2; last++) {
        st_writer *w = st_writer_init();
        cr_assert_not_null(w);
        st_writer_set_metadata_last(w, last);
        cr_assert_eq(st_writer_set_metadata(w, "format", "pt", &err), 0);
        const int64_t s1[2] = {2, 3}, s2[1] = {5}, s3[1] = {0}; /* s3: unused, a scalar has no dims */
        cr_assert_eq(st_writer_add_tensor(w, "b.weight", ST_F32, 2, s1, &err), 0);
        cr_assert_eq(st_writer_add_tensor(w, "a \"odd\\name\n", ST_BF16, 1, s2, &err), 0);
        cr_assert_eq(st_writer_add_tensor(w, "scalar", ST_I64, 0, s3, &err), 0);
        cr_assert_eq(st_writer_n_tensors(w), 3);
        cr_assert_eq(st_writer_tensor_nbytes(w, 1), 10);
        cr_assert_eq(st_writer_begin(w, path, &err), 0, "%s", err.msg);
        float f[6] = {1, 2, 3, 4, 5, 6};
        uint16_t h[5] = {0x3f80, 0x4000, 0xbf80, 0, 0x7f80};
        int64_t sc = -7;
        cr_assert_eq(st_writer_write(w, f, 10, &err), 0); /* chunked */
        cr_assert_eq(st_writer_write(w, (uint8_t *)f + 10, 14, &err), 0);
        cr_assert_eq(st_writer_write(w, h, 10, &err), 0);
        cr_assert_eq(st_writer_write(w, &sc, 8, &err), 0);
        uint64_t fsize = st_writer_file_size(w);
        cr_assert_eq(st_writer_finish(w, &err), 0, "%s", err.msg);
        st_writer_free(w);

        sm_map m;
        cr_assert_eq(sm_map_open(&m, path, &err), 0);
        cr_assert_eq(m.len, fsize);
        uint64_t hlen = 0;
        for (int i = 7; i >= 0; i--)
            hlen = hlen << 8 | m.ptr[i];
        cr_assert_eq(hlen % 8, 0, "header padded to 8");
        cr_assert_eq(m.ptr[8 + hlen - 1] == ' ' || m.ptr[8 + hlen - 1] == '}', 1);
        const char *hdr = (const char *)m.ptr + 8;
        if (last)
            cr_assert_eq(strncmp(hdr, "{\"b.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}", 63), 0, "%.80s", hdr);
        else
            cr_assert_eq(strncmp(hdr, "{\"__metadata__\":{\"format\":\"pt\"},\"b.weight\"", 42), 0, "%.60s", hdr);
        sm_map_close(&m);

        st_model st;
        cr_assert_eq(st_open(&st, path, &err), 0, "%s", err.msg);
        cr_assert_eq(st.n_tensors, 3);
        cr_assert_str_eq(st.tensors[0].name, "b.weight");
        cr_assert_str_eq(st.tensors[1].name, "a \"odd\\name\n");
        cr_assert_eq(st.tensors[1].dtype, ST_BF16);
        cr_assert_eq(st.tensors[2].n_dims, 0);
        float back[6];
        cr_assert_eq(st_tensor_read_f32(&st.tensors[0], 0, 6, back, &err), 0);
        cr_assert_eq(memcmp(back, f, sizeof f), 0);
        cr_assert_eq(st_tensor_read_f32(&st.tensors[1], 0, 5, back, &err), 0);
        cr_assert_eq(back[2], -1.0f);
        int64_t sc2;
        memcpy(&sc2, st.tensors[2].data, 8);
        cr_assert_eq(sc2, -7);
        st_close(&st);
    }
    rm_dir(dir);
}

/* Re-writes a checkpoint tensor by tensor in header order; it must come out
 * byte-identical (same JSON layout, padding, metadata position). */
static void rewrite_identical(const char *rel, int meta_last)
{
    char src[1024];
    snprintf(src, sizeof src, "%s/%s", shared(), rel);
    sm_err err = {0};
    st_model st;
    cr_assert_eq(st_open(&st, src, &err), 0, "%s", err.msg);
    char *dir = make_tmpdir();
    char out[1024];
    snprintf(out, sizeof out, "%s/copy.safetensors", dir);
    st_writer *w = st_writer_init();
    st_writer_set_metadata_last(w, meta_last);
    cr_assert_eq(st_writer_set_metadata(w, "format", "pt", &err), 0);
    for (uint64_t i = 0; i < st.n_tensors; i++)
        cr_assert_eq(st_writer_add_tensor(w, st.tensors[i].name, st.tensors[i].dtype, st.tensors[i].n_dims,
                                          st.tensors[i].shape, &err), 0, "%s", err.msg);
    cr_assert_eq(st_writer_begin(w, out, &err), 0, "%s", err.msg);
    for (uint64_t i = 0; i < st.n_tensors; i++)
        cr_assert_eq(st_writer_write(w, st.tensors[i].data, st.tensors[i].nbytes, &err), 0);
    cr_assert_eq(st_writer_finish(w, &err), 0, "%s", err.msg);
    st_writer_free(w);
    sm_map a, b;
    cr_assert_eq(sm_map_open(&a, src, &err), 0);
    cr_assert_eq(sm_map_open(&b, out, &err), 0);
    cr_assert_eq(a.len, b.len, "%s: %llu vs %llu bytes", rel, (unsigned long long)a.len, (unsigned long long)b.len);
    cr_assert_eq(memcmp(a.ptr, b.ptr, a.len), 0, "%s differs", rel);
    sm_map_close(&a);
    sm_map_close(&b);
    st_close(&st);
    rm_dir(dir);
}

Test(stwrite, rewrite_sorted_checkpoint_identical)
{
    rewrite_identical("models/tinystories-3m/model.safetensors", 1);
}

Test(stwrite, rewrite_insertion_order_shard_identical)
{
    rewrite_identical("models/stories260K-bf16-sharded/model-00001-of-00002.safetensors", 0);
}

Test(stwrite, rewrite_adapter_identical)
{
    rewrite_identical("lora/qwen2.5-0.5b-real/adapter_model.safetensors", 0);
}

Test(stwrite, error_table_and_no_leftovers)
{
    char *dir = make_tmpdir();
    char path[1024];
    snprintf(path, sizeof path, "%s/bad.safetensors", dir);
    sm_err err = {0};
    const int64_t shp[2] = {2, 2}, neg[1] = {-1}, huge[3] = {INT64_MAX, INT64_MAX, 4};
    const int64_t many[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    st_writer *w = st_writer_init();
    cr_assert_eq(st_writer_add_tensor(w, "x", ST_F32, 2, shp, &err), 0);
    cr_assert_eq(st_writer_add_tensor(w, "x", ST_F32, 2, shp, &err), SM_EDUP);
    cr_assert_not_null(strstr(err.msg, "duplicate tensor 'x'"), "%s", err.msg);
    cr_assert_eq(st_writer_add_tensor(w, "__metadata__", ST_F32, 2, shp, &err), SM_EDUP);
    cr_assert_not_null(strstr(err.msg, "reserved"), "%s", err.msg);
    cr_assert_eq(st_writer_add_tensor(w, "y", 99, 2, shp, &err), SM_ETYPE);
    cr_assert_not_null(strstr(err.msg, "unknown dtype"), "%s", err.msg);
    cr_assert_eq(st_writer_add_tensor(w, "y", ST_F32, 1, neg, &err), SM_ERANGE);
    cr_assert_not_null(strstr(err.msg, "negative dim"), "%s", err.msg);
    cr_assert_eq(st_writer_add_tensor(w, "y", ST_F32, 3, huge, &err), SM_ERANGE);
    cr_assert_not_null(strstr(err.msg, "overflows"), "%s", err.msg);
    cr_assert_eq(st_writer_add_tensor(w, "y", ST_F32, 9, many, &err), SM_ERANGE);
    cr_assert_not_null(strstr(err.msg, "dims"), "%s", err.msg);
    cr_assert_eq(st_writer_set_metadata(w, "k", "v", &err), 0);
    cr_assert_eq(st_writer_set_metadata(w, "k", "w", &err), SM_EDUP);
    cr_assert_eq(st_writer_write(w, "x", 1, &err), SM_EINVAL); /* before begin */
    cr_assert_eq(st_writer_begin(w, path, &err), 0, "%s", err.msg);
    cr_assert_eq(st_writer_add_tensor(w, "late", ST_F32, 2, shp, &err), SM_EINVAL);
    float f[5] = {0};
    cr_assert_eq(st_writer_write(w, f, 20, &err), SM_ERANGE);
    cr_assert_not_null(strstr(err.msg, "more data bytes"), "%s", err.msg);
    cr_assert_eq(st_writer_write(w, f, 8, &err), 0);
    cr_assert_eq(st_writer_finish(w, &err), SM_EMISMATCH);
    cr_assert_not_null(strstr(err.msg, "tensor 'x' incomplete"), "%s", err.msg);
    st_writer_free(w);
    cr_assert_eq(access(path, F_OK), -1, "no output after a failed finish");
    cr_assert_eq(n_entries(dir), 0, "no temp file left");
    /* freeing an unfinished writer removes its temp file too */
    w = st_writer_init();
    cr_assert_eq(st_writer_add_tensor(w, "x", ST_F16, 2, shp, &err), 0);
    cr_assert_eq(st_writer_begin(w, path, &err), 0);
    cr_assert_eq(n_entries(dir), 1);
    st_writer_free(w);
    cr_assert_eq(n_entries(dir), 0);
    rm_dir(dir);
}
