/* The device source's pieces that need no device: the link_ids message
 * (api/kme_link_ids.h), the block seq counter (store/device_seq.h) on a real
 * store, and the "source" setting of a link (kme/config.c). */
#include <check.h>
#include <string.h>
#include "api/kme_link_ids.h"
#include "runtime/json_wipe.h"
#include "store/device_seq.h"
#include "store/link_blocks.h"
#include "config_file.h"
#include "temp_store.h"
#include "unit_main.h"

static const char *const ID1 = "01a241da-4ece-7e60-b12a-9cc52b8dcf19";
static const char *const ID2 = "01A241DA-4ECE-78E4-937A-8C7BB5B61E7F";
static const char *const ID3 = "01a241da-4ece-78e4-937a-8c7bb5b61e80";

START_TEST(link_ids_round_trip)
{
    kme_link_ids req = {0}, in = {0}, ans = {0}, back = {0};
    etsi_problem p;
    req.seq = 42;
    req.size_bits = 256;
    ck_assert_int_eq(kme_link_ids_add(&req, ID1), 0);
    ck_assert_int_eq(kme_link_ids_add(&req, ID2), 0);
    ck_assert_int_eq(kme_link_ids_add(&req, ID3), 0);
    ck_assert_int_eq(kme_link_ids_add(&req, "not-a-uuid"), -1);
    char *text = kme_link_ids_request_to_json(&req);
    ck_assert_int_eq(kme_link_ids_request_from_json(text, strlen(text), &in, &p), 0);
    ck_assert_uint_eq(in.seq, 42);
    ck_assert_int_eq(in.size_bits, 256);
    ck_assert_uint_eq(in.count, 3);
    ck_assert_str_eq(in.ids[1], "01a241da-4ece-78e4-937a-8c7bb5b61e7f"); /* canonical lower case */
    etsi_text_free(text);
    /* The answer: a subsequence of the request, in its order. */
    ans.seq = 42;
    ans.next_seq = 43;
    kme_link_ids_add(&ans, ID1);
    kme_link_ids_add(&ans, ID3);
    text = kme_link_ids_response_to_json(&ans);
    ck_assert_int_eq(kme_link_ids_response_from_json(text, strlen(text), &in, &back, &p), 0);
    ck_assert_uint_eq(back.count, 2);
    ck_assert_uint_eq(back.next_seq, 43);
    ck_assert_str_eq(back.ids[1], ID3);
    ck_assert(!back.has_tag);
    etsi_text_free(text);
    kme_link_ids_clear(&back);
    /* With the MAC members: they come back whole, and so does the tag. */
    req.auth.key_count = 1;
    req.auth.key[0] = (kme_range){2, 0, 32};
    req.auth.answer_count = 2;
    req.auth.answer[0] = (kme_range){2, 32, 16};
    req.auth.answer[1] = (kme_range){4, 0, 16};
    req.auth.tag[15] = 0xab;
    kme_link_ids_clear(&in);
    text = kme_link_ids_request_to_json(&req);
    ck_assert_int_eq(kme_link_ids_request_from_json(text, strlen(text), &in, &p), 0);
    ck_assert_mem_eq(&in.auth, &req.auth, sizeof in.auth);
    etsi_text_free(text);
    ans.has_tag = 1;
    ans.tag[0] = 0xcd;
    text = kme_link_ids_response_to_json(&ans);
    ck_assert_int_eq(kme_link_ids_response_from_json(text, strlen(text), &in, &back, &p), 0);
    ck_assert(back.has_tag);
    ck_assert_uint_eq(back.tag[0], 0xcd);
    etsi_text_free(text);
    kme_link_ids_clear(&back);
    const char *bad_answers[] = {
        "{\"seq\":41,\"key_IDs\":[],\"next_seq\":43}", /* another seq */
        "{\"seq\":42,\"key_IDs\":[\"01a241da-4ece-78e4-937a-8c7bb5b61e80\",\"01a241da-4ece-7e60-b12a-9cc52b8dcf19\"],"
        "\"next_seq\":43}",                                                                    /* out of order */
        "{\"seq\":42,\"key_IDs\":[\"01a241da-4ece-78e4-937a-8c7bb5b61e81\"],\"next_seq\":43}", /* not asked */
        "{\"seq\":42,\"key_IDs\":[]}",                                                         /* no next_seq */
        "{\"seq\":42,\"key_IDs\":[],\"next_seq\":43,\"tag\":\"0011\"}",                        /* short tag */
        "[]",
    };
    for (size_t i = 0; i < sizeof bad_answers / sizeof bad_answers[0]; i++)
        ck_assert_msg(kme_link_ids_response_from_json(bad_answers[i], strlen(bad_answers[i]), &in, &back, &p) == -1,
                      "accepted %s", bad_answers[i]);
    const char *bad_requests[] = {
        "{\"seq\":1,\"size\":256,\"key_IDs\":[]}",
        "{\"seq\":1,\"size\":12,\"key_IDs\":[\"01a241da-4ece-7e60-b12a-9cc52b8dcf19\"]}",
        "{\"seq\":-1,\"size\":256,\"key_IDs\":[\"01a241da-4ece-7e60-b12a-9cc52b8dcf19\"]}",
        "{\"seq\":1,\"size\":256,\"key_IDs\":[\"01a241da-4ece-7e60-b12a-9cc52b8dcf19\","
        "\"01A241DA-4ECE-7E60-B12A-9CC52B8DCF19\"]}",
        "{\"seq\":1,\"size\":256,\"key_IDs\":[7]}",
        "{\"seq\":1,\"size\":256}",
        /* a MAC without its answer key, or without its tag */
        "{\"seq\":1,\"size\":256,\"key_IDs\":[\"01a241da-4ece-7e60-b12a-9cc52b8dcf19\"],\"mac_key\":[[2,0,32]],"
        "\"tag\":\"00000000000000000000000000000000\"}",
        "{\"seq\":1,\"size\":256,\"key_IDs\":[\"01a241da-4ece-7e60-b12a-9cc52b8dcf19\"],\"mac_key\":[[2,0,32]],"
        "\"answer_key\":[[2,32,32]]}",
    };
    for (size_t i = 0; i < sizeof bad_requests / sizeof bad_requests[0]; i++) {
        ck_assert_msg(kme_link_ids_request_from_json(bad_requests[i], strlen(bad_requests[i]), &back, &p) == -1,
                      "accepted %s", bad_requests[i]);
        ck_assert_ptr_null(back.ids);
    }
    kme_link_ids_clear(&req);
    kme_link_ids_clear(&in);
    kme_link_ids_clear(&ans);
}
END_TEST

typedef struct {
    uint64_t floor, seq;
    lb_link *l;
    const unsigned char *block;
    int rc;
} seq_arg;

static int take_op(kme_store *s, MDB_txn *txn, void *arg)
{
    seq_arg *a = arg;
    return device_seq_take(s, txn, "KME_B", a->floor, 1, &a->seq);
}

static int take_many_op(kme_store *s, MDB_txn *txn, void *arg)
{
    seq_arg *a = arg;
    return device_seq_take(s, txn, "KME_B", a->floor, 16, &a->seq);
}

static int ingest_op(kme_store *s, MDB_txn *txn, void *arg)
{
    seq_arg *a = arg;
    a->rc = lb_ingest(s, txn, a->l, a->seq, a->block, 128);
    return 0;
}

START_TEST(device_seq_never_repeats)
{
    temp_store t;
    temp_store_open(&t, "KME_A");
    lb_link l;
    lb_link_init(&l, "KME_A", "KME_B");
    unsigned char block[128] = {1};
    seq_arg a = {0, 0, &l, block, 0};
    ck_assert_int_eq(store_commit(&t.store, take_op, &a), 0);
    ck_assert_uint_eq(a.seq, 1);
    ck_assert_int_eq(store_commit(&t.store, take_op, &a), 0);
    ck_assert_uint_eq(a.seq, 2);
    /* A floor (the peer's ingest mark) moves it on, never back. */
    a.floor = 10;
    ck_assert_int_eq(store_commit(&t.store, take_op, &a), 0);
    ck_assert_uint_eq(a.seq, 10);
    a.floor = 3;
    ck_assert_int_eq(store_commit(&t.store, take_op, &a), 0);
    ck_assert_uint_eq(a.seq, 11);
    /* A block stored beyond it (a link fed by files before) moves it past. */
    a.seq = 20;
    ck_assert_int_eq(store_commit(&t.store, ingest_op, &a), 0);
    ck_assert_int_eq(a.rc, LB_OK);
    ck_assert_int_eq(store_commit(&t.store, take_op, &a), 0);
    ck_assert_uint_eq(a.seq, 21);
    /* Across a close and open of the store. */
    store_close(&t.store);
    char err[256];
    ck_assert_int_eq(store_open(&t.store, t.dir, 64, "KME_A", NULL, err, sizeof err), 0);
    ck_assert_int_eq(store_commit(&t.store, take_op, &a), 0);
    ck_assert_uint_eq(a.seq, 22);
    /* Several at once: the next take starts after them. */
    ck_assert_int_eq(store_commit(&t.store, take_many_op, &a), 0);
    ck_assert_uint_eq(a.seq, 23);
    ck_assert_int_eq(store_commit(&t.store, take_op, &a), 0);
    ck_assert_uint_eq(a.seq, 39);
    temp_store_remove(&t);
}
END_TEST

#define LINK "{\"peer\":\"KME_B\",\"url\":\"https://h:9\","
#define DEV                                                                                                            \
    "\"source\":{\"type\":\"etsi014\",\"url\":\"https://dev:1\",\"sae_id\":\"KME_A\",\"peer_sae_id\":\"KME_B\","       \
    "\"cert\":\"c\",\"key\":\"k\",\"ca\":\"a\""

START_TEST(source_setting)
{
    kme_config c;
    char err[256];
    ck_assert_int_eq(
        config_load_text("{" CONFIG_BASE ",\"saes\":[],\"links\":[" LINK DEV ",\"batch\":8}}]}", &c, err, sizeof err),
        0);
    ck_assert_int_eq(c.links[0].source, LINK_SOURCE_ETSI014);
    ck_assert_str_eq(c.links[0].device.peer_sae_id, "KME_B");
    ck_assert_int_eq(c.links[0].device.key_size_bits, 256);
    ck_assert_int_eq(c.links[0].device.batch, 8);
    ck_assert_int_eq(c.links[0].device.timeout_ms, 5000);
    kme_config_free(&c);
    ck_assert_int_eq(config_load_text("{" CONFIG_BASE ",\"saes\":[],\"links\":[" LINK
                                      "\"key_dir\":\"/l\",\"source\":{\"type\":\"files\"}}]}",
                                      &c, err, sizeof err),
                     0);
    ck_assert_int_eq(c.links[0].source, LINK_SOURCE_FILES);
    kme_config_free(&c);
    const char *bad[] = {
        "{" CONFIG_BASE ",\"saes\":[],\"links\":[" LINK DEV ",\"batch\":2}}]}",                 /* 64 bytes a block */
        "{" CONFIG_BASE ",\"saes\":[],\"links\":[" LINK DEV ",\"key_size\":260}}]}",            /* not bytes */
        "{" CONFIG_BASE ",\"saes\":[],\"links\":[" LINK DEV ",\"batch\":2000}}]}",              /* above the message */
        "{" CONFIG_BASE ",\"saes\":[],\"links\":[" LINK DEV ",\"color\":1}}]}",                 /* unknown setting */
        "{" CONFIG_BASE ",\"saes\":[],\"links\":[" LINK DEV "},\"key_dir\":\"/l\"}]}",          /* key_dir too */
        "{" CONFIG_BASE ",\"saes\":[],\"links\":[" LINK "\"source\":{\"type\":\"etsi014\"}}]}", /* no device */
        "{" CONFIG_BASE ",\"saes\":[],\"links\":[" LINK "\"source\":{\"type\":\"qkd\"},\"key_dir\":\"/l\"}]}",
        "{" CONFIG_BASE ",\"saes\":[],\"links\":[" LINK "\"source\":\"files\",\"key_dir\":\"/l\"}]}",
        "{" CONFIG_BASE ",\"saes\":[],\"links\":[" LINK "\"source\":{\"type\":\"files\"}}]}", /* no key_dir */
        "{" CONFIG_BASE ",\"saes\":[],\"links\":[" LINK
        "\"source\":{\"type\":\"etsi014\",\"url\":\"http://dev:1\",\"sae_id\":\"KME_A\",\"peer_sae_id\":\"KME_B\","
        "\"cert\":\"c\",\"key\":\"k\",\"ca\":\"a\"}}]}", /* not https */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        ck_assert_msg(config_load_text(bad[i], &c, err, sizeof err) == -1, "accepted %s", bad[i]);
        ck_assert(err[0]);
    }
}
END_TEST

int main(void)
{
    json_use_wiping_allocator();
    const TTest *const checks[] = {link_ids_round_trip, device_seq_never_repeats, source_setting, NULL};
    return run_checks("link_source", checks, 0, NULL, NULL);
}
