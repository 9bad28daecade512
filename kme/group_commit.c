/* The store's single writer: batches concurrent operations into one LMDB
 * transaction (each in a nested transaction of its own) and one sync. */
#include "kme/store.h"
#include "kme/log.h"

#include <stdlib.h>

#define BATCH_MAX 512

struct store_op_item {
    store_op op;
    void *arg;
    int result;
    int finished;
    store_op_item *next;
};

static void run_batch(kme_store *s, store_op_item *batch)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc) {
        log_error("store: cannot begin a write transaction: %s", mdb_strerror(rc));
        for (store_op_item *it = batch; it; it = it->next)
            it->result = STORE_ECOMMIT;
        return;
    }
    for (store_op_item *it = batch; it; it = it->next) {
        MDB_txn *child;
        if ((rc = mdb_txn_begin(s->env, txn, 0, &child))) {
            it->result = STORE_ECOMMIT;
            continue;
        }
        it->result = it->op(s, child, it->arg);
        if (it->result == 0) {
            if ((rc = mdb_txn_commit(child))) {
                log_error("store: cannot commit an operation: %s", mdb_strerror(rc));
                it->result = STORE_ECOMMIT;
            }
        } else {
            mdb_txn_abort(child);
        }
    }
    if ((rc = mdb_txn_commit(txn))) {
        log_error("store: cannot commit a batch: %s", mdb_strerror(rc));
        for (store_op_item *it = batch; it; it = it->next)
            it->result = STORE_ECOMMIT;
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
        /* Take up to BATCH_MAX queued operations. */
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
        pthread_mutex_unlock(&s->lock);

        run_batch(s, batch);

        pthread_mutex_lock(&s->lock);
        s->batches++;
        s->ops += (uint64_t)n;
        for (store_op_item *it = batch; it; it = it->next)
            it->finished = 1;
        pthread_cond_broadcast(&s->done);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

int store_commit(kme_store *s, store_op op, void *arg)
{
    store_op_item item = {op, arg, 0, 0, NULL};
    pthread_mutex_lock(&s->lock);
    if (!s->writer_started) {
        if (pthread_create(&s->writer, NULL, writer_main, s) != 0) {
            pthread_mutex_unlock(&s->lock);
            return STORE_ECOMMIT;
        }
        s->writer_started = 1;
    }
    if (s->stopping) {
        pthread_mutex_unlock(&s->lock);
        return STORE_ECOMMIT;
    }
    if (s->queue_tail)
        s->queue_tail->next = &item;
    else
        s->queue_head = &item;
    s->queue_tail = &item;
    pthread_cond_signal(&s->work);
    while (!item.finished)
        pthread_cond_wait(&s->done, &s->lock);
    pthread_mutex_unlock(&s->lock);
    return item.result;
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
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->work);
    pthread_cond_destroy(&s->done);
}
