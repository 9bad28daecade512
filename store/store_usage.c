/* The store's map usage and its high-water mark (see store_usage.h). */
#include "store/store_usage.h"
#include "runtime/clock.h"
#include "runtime/log.h"

#include <string.h>

/* Pages on the free list: each record of LMDB's free database (dbi 0) is a
 * list of page numbers that starts with its length. */
static int free_pages(MDB_txn *txn, uint64_t *pages)
{
    MDB_cursor *c;
    MDB_val k, v;
    *pages = 0;
    int rc = mdb_cursor_open(txn, 0, &c);
    if (rc)
        return rc;
    while ((rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) == 0) {
        size_t n;
        if (v.mv_size < sizeof n)
            continue;
        memcpy(&n, v.mv_data, sizeof n);
        *pages += n;
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int store_usage_read(kme_store *s, store_usage *u)
{
    MDB_envinfo info;
    MDB_stat st;
    MDB_txn *txn;
    uint64_t freed = 0;
    int rc = mdb_env_stat(s->env, &st);
    if (rc || (rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn)))
        return rc;
    rc = mdb_env_info(s->env, &info);
    if (rc == 0)
        rc = free_pages(txn, &freed);
    mdb_txn_abort(txn);
    if (rc)
        return rc;
    uint64_t pages = (uint64_t)info.me_last_pgno + 1;
    u->page_bytes = st.ms_psize;
    u->map_bytes = info.me_mapsize;
    u->file_bytes = pages * st.ms_psize;
    u->used_bytes = (pages > freed ? pages - freed : 0) * st.ms_psize;
    return 0;
}

void store_set_high_water(kme_store *s, unsigned percent)
{
    atomic_store(&s->high_water_percent, percent < 1 ? 1 : percent > 100 ? 100 : percent);
}

int store_check_high_water(kme_store *s)
{
    store_usage u;
    unsigned percent = atomic_load(&s->high_water_percent);
    if (percent == 0)
        percent = 100;
    if (store_usage_read(s, &u) || u.map_bytes == 0)
        return atomic_load(&s->above_high_water);
    /* Percent of the map in use, in hundredths to log it. */
    uint64_t share = u.used_bytes * 10000 / u.map_bytes;
    int above = atomic_load(&s->above_high_water);
    if (!above && percent < 100 && share >= (uint64_t)percent * 100) {
        if (atomic_exchange(&s->above_high_water, 1) == 0)
            log_warn("store: %llu.%02llu%% of the map used (%llu of %llu bytes), at or above the high-water mark of "
                     "%u%%: link ingest pauses until it falls below %u%%",
                     (unsigned long long)share / 100, (unsigned long long)share % 100, (unsigned long long)u.used_bytes,
                     (unsigned long long)u.map_bytes, percent, percent - HIGH_WATER_HYSTERESIS);
        return 1;
    }
    if (above && (percent >= 100 || share < (uint64_t)(percent - HIGH_WATER_HYSTERESIS) * 100)) {
        if (atomic_exchange(&s->above_high_water, 0) == 1)
            log_info("store: %llu.%02llu%% of the map used (%llu of %llu bytes), below %u%%: link ingest resumes",
                     (unsigned long long)share / 100, (unsigned long long)share % 100, (unsigned long long)u.used_bytes,
                     (unsigned long long)u.map_bytes, percent - HIGH_WATER_HYSTERESIS);
        return 0;
    }
    return above;
}

int store_above_high_water(kme_store *s)
{
    return atomic_load(&s->above_high_water);
}

void store_note_full(kme_store *s)
{
    atomic_store(&s->full_ms, clock_mono_ms());
}

int store_is_full(kme_store *s)
{
    int64_t at = atomic_load(&s->full_ms);
    return at != 0 && clock_mono_ms() - at < STORE_FULL_MEMORY_MS;
}
