/* Unit tests of the store's group commit on a real LMDB store: operations
 * queued together commit together, and one that refuses costs only itself
 * (the others of its batch run once, and keep their writes). */
#include <check.h>
#include "tests/unit/temp_store.h"
#include "tests/unit/unit_main.h"
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "store/store.h"

static temp_store ts;
#define st (ts.store)

static void setup(void)
{
    temp_store_open(&ts, "KME_A");
}

static void teardown(void)
{
    temp_store_remove(&ts);
}

/* An operation that writes name -> "v" into the meta database, counts its
 * runs, and refuses when told to (after writing). */
typedef struct {
    char name[32];
    int refuse;
    atomic_int runs;
    int result;
    sem_t finished;
} write_op;

static int write_meta(kme_store *s, MDB_txn *txn, void *arg)
{
    write_op *w = arg;
    atomic_fetch_add(&w->runs, 1);
    MDB_val k = {strlen(w->name), w->name}, v = {1, "v"};
    if (mdb_put(txn, s->meta, &k, &v, 0))
        return -1;
    return w->refuse ? 7 : 0;
}

static void write_done(void *arg, int result)
{
    write_op *w = arg;
    w->result = result;
    sem_post(&w->finished);
}

/* The first batch: an operation that holds the writer until released, so
 * that the operations queued meanwhile make up the next batch together. */
static sem_t gate_entered, gate_open;
static int hold_writer(kme_store *s, MDB_txn *txn, void *arg)
{
    (void)s;
    (void)txn;
    (void)arg;
    sem_post(&gate_entered);
    sem_wait(&gate_open);
    return 0;
}
static void ignore_done(void *arg, int result)
{
    (void)result;
    sem_post((sem_t *)arg);
}

static int has_meta(const char *name)
{
    MDB_txn *t;
    ck_assert_int_eq(store_read_begin(&st, &t), 0);
    MDB_val k = {strlen(name), (void *)name}, v;
    int found = mdb_get(t, st.meta, &k, &v) == 0;
    mdb_txn_abort(t);
    return found;
}

START_TEST(a_refusal_costs_only_itself)
{
    enum { N = 9, REFUSER = 4 };
    static write_op ops[N];
    sem_t first_done;
    sem_init(&gate_entered, 0, 0);
    sem_init(&gate_open, 0, 0);
    sem_init(&first_done, 0, 0);
    store_commit_async(&st, hold_writer, NULL, ignore_done, &first_done);
    sem_wait(&gate_entered); /* the writer is busy: what follows queues up */
    for (unsigned i = 0; i < N; i++) {
        memset(&ops[i], 0, sizeof ops[i]);
        snprintf(ops[i].name, sizeof ops[i].name, "gc_op_%u", i);
        ops[i].refuse = i == REFUSER;
        sem_init(&ops[i].finished, 0, 0);
        store_commit_async(&st, write_meta, &ops[i], write_done, &ops[i]);
    }
    uint64_t batches_before = st.batches;
    sem_post(&gate_open);
    sem_wait(&first_done);
    for (int i = 0; i < N; i++)
        sem_wait(&ops[i].finished);
    ck_assert_uint_eq(st.batches - batches_before, 1); /* the nine went in one batch */
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(atomic_load(&ops[i].runs), 1); /* each ran once, the refusal too */
        if (i == REFUSER) {
            ck_assert_int_eq(ops[i].result, 7);
            ck_assert(!has_meta(ops[i].name)); /* its write is undone */
        } else {
            ck_assert_int_eq(ops[i].result, 0);
            ck_assert(has_meta(ops[i].name)); /* the others' writes are kept */
        }
    }
}
END_TEST

START_TEST(synchronous_commit_returns_the_result)
{
    write_op good, bad;
    memset(&good, 0, sizeof good);
    memset(&bad, 0, sizeof bad);
    strcpy(good.name, "gc_sync_good");
    strcpy(bad.name, "gc_sync_bad");
    bad.refuse = 1;
    ck_assert_int_eq(store_commit(&st, write_meta, &good), 0);
    ck_assert_int_eq(store_commit(&st, write_meta, &bad), 7);
    ck_assert(has_meta("gc_sync_good"));
    ck_assert(!has_meta("gc_sync_bad"));
}
END_TEST

int main(void)
{
    const TTest *const checks[] = {a_refusal_costs_only_itself, synchronous_commit_returns_the_result, NULL};
    return run_checks("group_commit", checks, 60, setup, teardown);
}
