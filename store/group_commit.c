/* The store's single writer: runs the operations queued by concurrent callers
 * in one LMDB write transaction and one sync (group commit), then wakes each
 * caller. Each operation runs in a nested transaction of its own: one that
 * refuses (returns non-zero) has its writes undone alone, and the others of
 * its batch run once and commit. A refusal costs only itself. A batch of one
 * operation runs it in the batch's transaction itself: aborting that undoes
 * the same writes, and a nested transaction costs LMDB two page lists
 * (3 MiB) to allocate. */
#include "store/store.h"
#include "runtime/log.h"
#include "store/store_usage.h"

#include <semaphore.h>
#include <stdlib.h>

#define BATCH_MAX 512

struct store_op_item {
    store_op op;
    void *arg;
    int result;
    int refused;        /* took itself out of the batch */
    store_done done_fn; /* asynchronous: called after the commit, item freed */
    void *done_arg;
    sem_t done; /* synchronous: the waiter is woken */
    store_op_item *next;
};

static void fail_all(store_op_item *batch)
{
    for (store_op_item *it = batch; it; it = it->next)
        if (!it->refused)
            it->result = STORE_ECOMMIT;
}

/* A write LMDB refused leaves the operation's transaction unusable (a cursor
 * on it is refused with MDB_BAD_TXN): on a sound store, for want of room in
 * the map (MDB_MAP_FULL). */
static void note_refused_write(kme_store *s, MDB_txn *own)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(own, s->meta, &c);
    if (rc == 0)
        mdb_cursor_close(c);
    else if (rc == MDB_BAD_TXN)
        store_note_full(s);
}

/* Runs each operation of batch in a nested transaction of its own under txn;
 * -1 (txn aborted, the batch failed) when LMDB cannot begin one. */
static int run_each_nested(kme_store *s, MDB_txn *txn, store_op_item *batch)
{
    int rc;
    for (store_op_item *it = batch; it; it = it->next) {
        MDB_txn *own;
        if ((rc = mdb_txn_begin(s->env, txn, 0, &own))) {
            log_error("store: cannot begin an operation's transaction: %s", mdb_strerror(rc));
            mdb_txn_abort(txn);
            fail_all(batch);
            return -1;
        }
        it->result = it->op(s, own, it->arg);
        if (it->result != 0) {
            note_refused_write(s, own);
            mdb_txn_abort(own); /* its writes, and only its, are undone */
            it->refused = 1;
        } else if ((rc = mdb_txn_commit(own))) {
            log_error("store: cannot keep an operation's changes: %s", mdb_strerror(rc));
            it->result = STORE_ECOMMIT;
            it->refused = 1;
        }
    }
    return 0;
}

static void run_batch(kme_store *s, store_op_item *batch)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc) {
        log_error("store: cannot begin a write transaction: %s", mdb_strerror(rc));
        fail_all(batch);
        return;
    }
    if (!batch->next) { /* alone: its refusal aborts the batch's transaction */
        batch->result = batch->op(s, txn, batch->arg);
        if (batch->result != 0) {
            note_refused_write(s, txn);
            mdb_txn_abort(txn);
            batch->refused = 1;
            return;
        }
    } else if (run_each_nested(s, txn, batch) < 0) {
        return;
    }
    if ((rc = mdb_txn_commit(txn))) {
        log_error("store: cannot commit a batch: %s", mdb_strerror(rc));
        if (rc == MDB_MAP_FULL)
            store_note_full(s);
        fail_all(batch);
    }
}

static void *writer_main(void *arg)
{
    kme_store *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->queue_head && !s->stopping)
            pthread_cond_wait(&s->work, &s->lock);
        if (!s->queue_head && s->stopping)
            break;
        store_op_item *batch = s->queue_head, *last = batch;
        int n = 1;
        while (last->next && n < BATCH_MAX) {
            last = last->next;
            n++;
        }
        s->queue_head = last->next;
        if (!s->queue_head)
            s->queue_tail = NULL;
        last->next = NULL;
        s->batches++;
        s->ops += (uint64_t)n;
        pthread_mutex_unlock(&s->lock);

        run_batch(s, batch);
        for (store_op_item *it = batch, *next; it; it = next) {
            next = it->next; /* the waiter owns it once posted */
            if (it->done_fn) {
                it->done_fn(it->done_arg, it->result);
                free(it);
            } else {
                sem_post(&it->done);
            }
        }
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* Queues item for the next batch; -1 when the store is stopping. */
static int enqueue(kme_store *s, store_op_item *item)
{
    pthread_mutex_lock(&s->lock);
    if (!s->writer_started) {
        if (pthread_create(&s->writer, NULL, writer_main, s) != 0) {
            pthread_mutex_unlock(&s->lock);
            return -1;
        }
        s->writer_started = 1;
    }
    if (s->stopping) {
        pthread_mutex_unlock(&s->lock);
        return -1;
    }
    if (s->queue_tail)
        s->queue_tail->next = item;
    else
        s->queue_head = item;
    s->queue_tail = item;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

int store_commit(kme_store *s, store_op op, void *arg)
{
    store_op_item item = {op, arg, 0, 0, NULL, NULL, {{0}}, NULL};
    sem_init(&item.done, 0, 0);
    if (enqueue(s, &item) < 0) {
        sem_destroy(&item.done);
        return STORE_ECOMMIT;
    }
    while (sem_wait(&item.done) != 0)
        ;
    sem_destroy(&item.done);
    return item.result;
}

void store_commit_async(kme_store *s, store_op op, void *arg, store_done done, void *done_arg)
{
    store_op_item *item = calloc(1, sizeof *item);
    if (item) {
        *item = (store_op_item){op, arg, 0, 0, done, done_arg, {{0}}, NULL};
        if (enqueue(s, item) == 0)
            return;
        free(item);
    }
    done(done_arg, STORE_ECOMMIT);
}

void store_close(kme_store *s)
{
    if (!s->env)
        return;
    pthread_mutex_lock(&s->lock);
    s->stopping = 1;
    pthread_cond_broadcast(&s->work);
    int started = s->writer_started;
    pthread_mutex_unlock(&s->lock);
    if (started)
        pthread_join(s->writer, NULL);
    mdb_env_close(s->env);
    s->env = NULL;
    epoch_keys_close(&s->epochs);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->work);
}
