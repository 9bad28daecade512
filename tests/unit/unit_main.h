/* The main() of every check unit test: runs one suite, exit status 1 on any failure.
 *
 * A suite whose checks are added with add_check has one case per check,
 * named after it, so one check runs alone:
 *   CK_RUN_CASE=<check> build/release/bin/unit/test_<suite>
 * (CK_RUN_SUITE=<suite> selects the suite.) A selection that matches no
 * check fails rather than passing with nothing run. */
#ifndef TESTS_UNIT_MAIN_H
#define TESTS_UNIT_MAIN_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

/* Adds check t to s in a case of its own named after it, with setup and
 * teardown run around it in its process (either may be NULL), and a
 * timeout in seconds (0: check's default). */
static inline void add_check_fixture(Suite *s, const TTest *t, int timeout_s, SFun setup, SFun teardown)
{
    TCase *tc = tcase_create(t->name);
    if (timeout_s > 0)
        tcase_set_timeout(tc, timeout_s);
    if (setup || teardown)
        tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, t);
    suite_add_tcase(s, tc);
}

static inline void add_check(Suite *s, const TTest *t, int timeout_s)
{
    add_check_fixture(s, t, timeout_s, NULL, NULL);
}

static inline int run_suite(Suite *s);

/* The whole main() of most suites: the checks (NULL-terminated), each in a
 * case of its own with the same timeout, setup and teardown. */
static inline int run_checks(const char *suite, const TTest *const *checks, int timeout_s, SFun setup, SFun teardown)
{
    Suite *s = suite_create(suite);
    for (const TTest *const *t = checks; *t; t++)
        add_check_fixture(s, *t, timeout_s, setup, teardown);
    return run_suite(s);
}

static inline int run_suite(Suite *s)
{
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    int ran = srunner_ntests_run(r);
    srunner_free(r);
    if (ran == 0 && (getenv("CK_RUN_CASE") || getenv("CK_RUN_SUITE"))) {
        fprintf(stderr, "no check matches CK_RUN_SUITE=%s CK_RUN_CASE=%s\n",
                getenv("CK_RUN_SUITE") ? getenv("CK_RUN_SUITE") : "",
                getenv("CK_RUN_CASE") ? getenv("CK_RUN_CASE") : "");
        return 1;
    }
    return failed ? 1 : 0;
}

#endif
