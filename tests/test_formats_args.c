/* Strict command-line number parsing shared by the tools. */
#include <criterion/criterion.h>

#include "formats/args.h"

Test(args, i32_table)
{
    static const struct {
        const char *s;
        int ok;
        int32_t v;
    } t[] = {{"0", 1, 0},       {"128", 1, 128}, {"-7", 1, -7},          {"2147483647", 1, 2147483647},
             {"2147483648", 0, 0}, {"", 0, 0},   {"12x", 0, 0},           {"x", 0, 0},
             {" 5", 1, 5},      {"5 ", 0, 0},   {"99999999999999999999", 0, 0}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        int32_t v = -1;
        int rc = sm_parse_i32(t[i].s, &v);
        cr_expect_eq(rc == 0, t[i].ok, "'%s'", t[i].s);
        if (t[i].ok)
            cr_expect_eq(v, t[i].v, "'%s' -> %d", t[i].s, v);
        else
            cr_expect_eq(v, -1, "'%s' changed the output", t[i].s);
    }
}

Test(args, f32_table)
{
    float v = 0;
    cr_assert_eq(sm_parse_f32("0.8", &v), 0);
    cr_assert_eq(v, 0.8f);
    cr_assert_eq(sm_parse_f32("1e-5", &v), 0);
    cr_assert_eq(v, 1e-5f);
    cr_assert_neq(sm_parse_f32("", &v), 0);
    cr_assert_neq(sm_parse_f32("0.8x", &v), 0);
}
