/*
 * test.h — the shared main() of cairn's cmocka test programs.
 *
 * A test program lists its cases in a CMUnitTest array and ends with
 * CAIRN_TEST_MAIN(cases).  Run with no argument it runs them all; with one
 * argument it runs only the case of that name (ctest registers each case
 * separately this way, see cmake/tests.cmake), and fails if no case has
 * that name, so a typo in a registration cannot pass silently.
 */
#ifndef CAIRN_TEST_H
#define CAIRN_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static inline int cairn__test_main(const struct CMUnitTest *cases, size_t n,
                                   const char *group, int argc, char **argv)
{
    if (argc > 1) {
        size_t i;
        for (i = 0; i < n; i++)
            if (strcmp(cases[i].name, argv[1]) == 0)
                break;
        if (i == n) {
            fprintf(stderr, "%s: no test case named '%s'\n", group, argv[1]);
            return 2;
        }
        return _cmocka_run_group_tests(group, &cases[i], 1, NULL, NULL);
    }
    return _cmocka_run_group_tests(group, cases, n, NULL, NULL);
}

#define CAIRN_TEST_MAIN(cases)                                                 \
    int main(int argc, char **argv)                                            \
    {                                                                          \
        return cairn__test_main(cases, sizeof(cases) / sizeof((cases)[0]),    \
                                __FILE__, argc, argv);                         \
    }

#endif
