/* A fixed pool of threads for work that blocks (waiting on a neighbour KME or
 * on a commit), so the listeners' event threads never do. */
#ifndef RUNTIME_WORKER_POOL_H
#define RUNTIME_WORKER_POOL_H

#include <stddef.h>

typedef struct worker_pool worker_pool;
typedef void (*worker_job)(void *arg);

worker_pool *worker_pool_start(size_t threads);
/* Queues job(arg); 0 on success, -1 when the pool is stopping. */
int worker_pool_submit(worker_pool *p, worker_job job, void *arg);
/* Runs what is queued, then stops and frees the pool. */
void worker_pool_stop(worker_pool *p);

#endif
