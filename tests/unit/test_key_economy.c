/* Unit tests of the key economy (kme/sae_policy, kme/key_economy) on a
 * clock of the test's own: the policy's parsing, an SAE's token bucket, the
 * floor kept for critical SAEs, class order and shares by weight on a
 * scarce link, refunds, and the figures the metrics and status page show. */
#include <check.h>
#include "tests/unit/unit_main.h"
#include <string.h>
#include "kme/key_economy.h"

static int64_t fake_ms = 1000000;

static int64_t fake_clock(void)
{
    return fake_ms;
}

static key_economy *economy_at_zero(void)
{
    key_economy *e = economy_new();
    ck_assert_ptr_nonnull(e);
    economy_set_clock(e, fake_clock);
    return e;
}

static void policy_from(const char *json, sae_policy_set *set)
{
    char err[256] = "";
    json_error_t jerr;
    json_t *root = json_loads(json, 0, &jerr);
    ck_assert_ptr_nonnull(root);
    ck_assert_msg(sae_policy_parse(root, set, err, sizeof err) == 0, "%s", err);
    json_decref(root);
}

static int policy_refused(const char *json, const char *expect)
{
    sae_policy_set set;
    char err[256] = "";
    json_t *root = json_loads(json, 0, NULL);
    ck_assert_ptr_nonnull(root);
    int rc = sae_policy_parse(root, &set, err, sizeof err);
    json_decref(root);
    ck_assert_msg(rc < 0, "accepted: %s", json);
    ck_assert_msg(strstr(err, expect), "error '%s' lacks '%s'", err, expect);
    return 1;
}

/* Link 0 as this end sees it: its owned stock grows at link_rate
 * (bytes/s) as the clock moves, and shrinks by what is charged. */
static double link_stock, link_rate;

static void advance(int64_t ms)
{
    fake_ms += ms;
    link_stock += link_rate * (double)ms / 1000;
}

static void measure(key_economy *e)
{
    economy_link_stock(e, 0, (uint64_t)link_stock);
}

/* The link at stock bytes yielding rate, measured twice a second apart. */
static void link_with(key_economy *e, double stock, double rate)
{
    link_stock = stock;
    link_rate = rate;
    measure(e);
    advance(1000);
    measure(e);
}

static int charge(key_economy *e, const sae_policy_set *p, const char *sae, long bytes, economy_reason *reason)
{
    economy_refusal why;
    int rc = economy_charge(e, p, sae, 0, "KME_B", bytes, &why);
    if (rc == 0)
        link_stock -= (double)bytes;
    if (rc != 0 && reason)
        *reason = why.reason;
    if (rc != 0)
        ck_assert_msg(why.retry_after_s >= 1 && why.detail[0], "a refusal names its limit and when to ask again");
    return rc;
}

START_TEST(policy)
{
    sae_policy_set set;
    policy_from("{}", &set);
    ck_assert_int_eq(sae_policy_of(&set, "SAE_X")->cls, SAE_CLASS_STANDARD);
    ck_assert_int_eq(sae_policy_of(&set, "SAE_X")->weight, 1);
    ck_assert_int_eq(sae_policy_of(&set, "SAE_X")->rate_bps, 0);
    policy_from("{\"key_economy\":{\"critical_floor_bytes\":4096,\"default\":{\"class\":\"bulk\",\"rate_bps\":8000},"
                "\"saes\":{\"SAE_A\":{\"class\":\"critical\",\"weight\":3},\"SAE_B\":{\"max_key_count\":10}}}}",
                &set);
    ck_assert_int_eq(set.critical_floor_bytes, 4096);
    ck_assert_int_eq(sae_policy_of(&set, "SAE_A")->cls, SAE_CLASS_CRITICAL);
    ck_assert_int_eq(sae_policy_of(&set, "SAE_A")->weight, 3);
    /* A listed SAE takes the default's other members. */
    ck_assert_int_eq(sae_policy_of(&set, "SAE_A")->rate_bps, 8000);
    ck_assert_int_eq(sae_policy_of(&set, "SAE_B")->cls, SAE_CLASS_BULK);
    ck_assert_int_eq(sae_policy_of(&set, "SAE_B")->max_key_count, 10);
    ck_assert_int_eq(sae_policy_of(&set, "SAE_Z")->cls, SAE_CLASS_BULK);
    policy_refused("{\"key_economy\":{\"floor\":1}}", "floor");
    policy_refused("{\"key_economy\":{\"saes\":{\"SAE_A\":{\"class\":\"gold\"}}}}", "class must be");
    policy_refused("{\"key_economy\":{\"default\":{\"weight\":0}}}", "weight");
    policy_refused("{\"key_economy\":{\"saes\":{\"bad id\":{}}}}", "not a valid SAE ID");
    policy_refused("{\"key_economy\":[]}", "must be an object");
}
END_TEST

START_TEST(own_rate_is_a_token_bucket)
{
    key_economy *e = economy_at_zero();
    sae_policy_set set;
    /* 80 kbit/s = 10000 bytes/s, burst 65536 bytes. */
    policy_from("{\"key_economy\":{\"saes\":{\"SAE_A\":{\"rate_bps\":80000,\"burst_bytes\":65536}}}}", &set);
    economy_reason why = ECONOMY_REASONS;
    ck_assert_int_eq(charge(e, &set, "SAE_A", 65536, NULL), 0);
    ck_assert_int_ne(charge(e, &set, "SAE_A", 1000, &why), 0);
    ck_assert_int_eq(why, ECONOMY_RATE);
    /* Others are not limited by SAE_A's rate. */
    ck_assert_int_eq(charge(e, &set, "SAE_B", 65536, NULL), 0);
    fake_ms += 100; /* 1000 bytes of tokens */
    ck_assert_int_eq(charge(e, &set, "SAE_A", 1000, NULL), 0);
    ck_assert_int_ne(charge(e, &set, "SAE_A", 1000, NULL), 0);
    /* A refund gives the tokens back. */
    economy_refund(e, "SAE_A", 0, 1000);
    ck_assert_int_eq(charge(e, &set, "SAE_A", 1000, NULL), 0);
    economy_free(e);
}
END_TEST

START_TEST(floor_kept_for_critical)
{
    key_economy *e = economy_at_zero();
    sae_policy_set set;
    policy_from("{\"key_economy\":{\"critical_floor_bytes\":100000,\"fair_share_below_bytes\":0,"
                "\"saes\":{\"SAE_CRIT\":{\"class\":\"critical\"}}}}",
                &set);
    link_with(e, 150000, 1000);
    economy_reason why = ECONOMY_REASONS;
    ck_assert_int_eq(charge(e, &set, "SAE_STD", 40000, NULL), 0);
    /* 110000 left: 20000 more would go below the floor. */
    ck_assert_int_ne(charge(e, &set, "SAE_STD", 20000, &why), 0);
    ck_assert_int_eq(why, ECONOMY_FLOOR);
    ck_assert_int_eq(charge(e, &set, "SAE_CRIT", 100000, NULL), 0);
    economy_free(e);
}
END_TEST

START_TEST(scarce_link_serves_classes_in_order)
{
    key_economy *e = economy_at_zero();
    sae_policy_set set;
    policy_from(
        "{\"key_economy\":{\"saes\":{\"SAE_CRIT\":{\"class\":\"critical\"},\"SAE_BULK\":{\"class\":\"bulk\"}}}}", &set);
    link_with(e, 500000, 10000); /* below the default 1 MiB: scarce */
    economy_reason why = ECONOMY_REASONS;
    ck_assert_int_eq(charge(e, &set, "SAE_BULK", 1000, NULL), 0); /* alone: served */
    ck_assert_int_eq(charge(e, &set, "SAE_CRIT", 1000, NULL), 0);
    ck_assert_int_ne(charge(e, &set, "SAE_BULK", 1000, &why), 0);
    ck_assert_int_eq(why, ECONOMY_SHARE);
    /* The critical SAE stops asking: the bulk one is served again. */
    advance(3000);
    ck_assert_int_eq(charge(e, &set, "SAE_BULK", 1000, NULL), 0);
    /* Alone on the scarce link, an SAE takes what is there, beyond the rate. */
    advance(3000);
    link_with(e, 500000, 10000);
    ck_assert_int_eq(charge(e, &set, "SAE_BULK", 200000, NULL), 0);
    ck_assert_int_eq(charge(e, &set, "SAE_BULK", 200000, NULL), 0);
    /* With plenty of stock nobody is ordered. */
    link_with(e, 8 << 20, 10000);
    ck_assert_int_eq(charge(e, &set, "SAE_CRIT", 1000, NULL), 0);
    ck_assert_int_eq(charge(e, &set, "SAE_BULK", 1000, NULL), 0);
    economy_free(e);
}
END_TEST

typedef struct {
    uint64_t charged[3];
    uint64_t refused_share;
    double share[3];
} figures;

static void take_row(void *ctx, const economy_view *v)
{
    figures *f = ctx;
    int i = strcmp(v->sae, "SAE_W2") == 0 ? 0 : strcmp(v->sae, "SAE_W1a") == 0 ? 1 : 2;
    f->charged[i] = v->charged;
    f->refused_share += v->refused[ECONOMY_SHARE];
    f->share[i] = v->share_Bps[0];
}

START_TEST(scarce_link_shared_by_weight)
{
    key_economy *e = economy_at_zero();
    sae_policy_set set;
    policy_from("{\"key_economy\":{\"saes\":{\"SAE_W2\":{\"weight\":2}}}}", &set);
    link_with(e, 200000, 40000); /* 40000 bytes/s shared 2:1:1 */
    static const char *const saes[] = {"SAE_W2", "SAE_W1a", "SAE_W1b"};
    /* For 60 s each SAE asks for 1000 bytes every 10 ms: far more than the
     * link yields. The stock is measured once a second. */
    for (int step = 0; step < 6000; step++) {
        advance(10);
        if (step % 100 == 0)
            measure(e);
        for (int s = 0; s < 3; s++)
            charge(e, &set, saes[s], 1000, NULL);
    }
    figures f;
    memset(&f, 0, sizeof f);
    economy_each_sae(e, take_row, &f);
    /* 60 s of 40000 bytes/s: 1.2 MB, 0.6 MB and 0.6 MB within 10%, and the
     * stock neither drained nor grown by much. */
    ck_assert_msg(link_stock > 100000 && link_stock < 300000, "stock %.0f", link_stock);
    double want[3] = {1200000, 600000, 600000};
    for (int s = 0; s < 3; s++)
        ck_assert_msg(f.charged[s] > want[s] * 0.9 && f.charged[s] < want[s] * 1.1, "%s charged %llu, want %.0f",
                      saes[s], (unsigned long long)f.charged[s], want[s]);
    ck_assert_uint_gt(f.refused_share, 0);
    /* The shares the status page shows. */
    ck_assert_msg(f.share[0] > 19000 && f.share[0] < 21000, "share %.0f", f.share[0]);
    ck_assert_msg(f.share[1] > 9000 && f.share[1] < 11000, "share %.0f", f.share[1]);
    economy_free(e);
}
END_TEST

int main(void)
{
    const TTest *const checks[] = {policy,
                                   own_rate_is_a_token_bucket,
                                   floor_kept_for_critical,
                                   scarce_link_serves_classes_in_order,
                                   scarce_link_shared_by_weight,
                                   NULL};
    return run_checks("key_economy", checks, 30, NULL, NULL);
}
