/* Fixed thread pool with a FIFO job queue (see worker_pool.h). */
#include "runtime/worker_pool.h"

#include <pthread.h>
#include <stdlib.h>

typedef struct job {
    worker_job fn;
    void *arg;
    struct job *next;
} job;

struct worker_pool {
    pthread_mutex_t lock;
    pthread_cond_t work;
    job *head, *tail;
    int stopping;
    size_t nthreads;
    pthread_t threads[];
};

static void *worker_main(void *arg)
{
    worker_pool *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->head && !p->stopping)
            pthread_cond_wait(&p->work, &p->lock);
        job *j = p->head;
        if (!j)
            break;
        p->head = j->next;
        if (!p->head)
            p->tail = NULL;
        pthread_mutex_unlock(&p->lock);
        j->fn(j->arg);
        free(j);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

worker_pool *worker_pool_start(size_t threads)
{
    worker_pool *p = calloc(1, sizeof *p + threads * sizeof(pthread_t));
    if (!p)
        return NULL;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    for (; p->nthreads < threads; p->nthreads++)
        if (pthread_create(&p->threads[p->nthreads], NULL, worker_main, p) != 0)
            break;
    if (p->nthreads == 0) {
        worker_pool_stop(p);
        return NULL;
    }
    return p;
}

int worker_pool_submit(worker_pool *p, worker_job fn, void *arg)
{
    job *j = malloc(sizeof *j);
    if (!j)
        return -1;
    *j = (job){fn, arg, NULL};
    pthread_mutex_lock(&p->lock);
    if (p->stopping) {
        pthread_mutex_unlock(&p->lock);
        free(j);
        return -1;
    }
    if (p->tail)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

void worker_pool_stop(worker_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    for (size_t i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->work);
    free(p);
}
