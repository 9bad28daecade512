/* The keyring file of a store: its wrapped data key and its epoch keys, each
 * in a fixed slot overwritten in place (see epoch_keys.h).
 *
 * Layout: a 512-byte header, then 256-byte slots.
 *   header: magic (16) | store ID (16) | wrap kind (1) | wrapped length (1) |
 *           the wrapped data key (up to SEAL_WRAPPED_MAX) | zeros
 *   slot:   used (1) | class (1) | peer length (1) | zeros (5) | be64 ID |
 *           be64 bucket | peer (64) | the epoch key sealed under the data key
 *           (nonce | 32 | tag, bound to the store ID and bytes 1..87) | zeros
 * A free or erased slot is all zeros. */
#include "store/epoch_keys.h"
#include "store/file_io.h"
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#define MAGIC "QKD-KME-EPOCHS1\n"
#define HEADER_BYTES 512
#define SLOT_BYTES 256
#define SLOT_BOUND 88 /* the slot bytes [1, 88) bound into the sealed key */
#define SLOT_SEALED (SEAL_KEY_BYTES + SEAL_AEAD_OVERHEAD)
#define DB_EPOCH "epoch"

static off_t slot_offset(uint32_t slot)
{
    return (off_t)HEADER_BYTES + (off_t)slot * SLOT_BYTES;
}

/* The identity a slot's key is sealed for: the store ID, then the slot's
 * class, peer length, ID, bucket and peer. */
static size_t slot_identity(const epoch_keys *r, const unsigned char *slot, unsigned char *id)
{
    memcpy(id, r->store_id, EPOCH_STORE_ID_BYTES);
    memcpy(id + EPOCH_STORE_ID_BYTES, slot + 1, SLOT_BOUND - 1);
    return EPOCH_STORE_ID_BYTES + SLOT_BOUND - 1;
}

/* ---- the header: the data key ---------------------------------------------------------- */

static int encode_header(const epoch_keys *r, const unsigned char key[SEAL_KEY_BYTES], const seal_wrapper *wrap,
                         unsigned char h[HEADER_BYTES], char *err, size_t errlen)
{
    memset(h, 0, HEADER_BYTES);
    memcpy(h, MAGIC, 16);
    memcpy(h + 16, r->store_id, EPOCH_STORE_ID_BYTES);
    size_t len = SEAL_WRAPPED_MAX;
    if (!wrap) {
        h[32] = 'N';
        memcpy(h + 34, key, SEAL_KEY_BYTES);
        len = SEAL_KEY_BYTES;
    } else {
        if (wrap->wrap(wrap->ctx, key, h + 34, &len, err, errlen) < 0)
            return -1;
        h[32] = (unsigned char)wrap->kind;
    }
    h[33] = (unsigned char)len;
    return 0;
}

static const char *kept_by(char kind)
{
    return kind == 'N'   ? "kept in clear (store_key none-insecure)"
           : kind == 'F' ? "wrapped by a key file"
           : kind == 'P' ? "wrapped by a PKCS#11 token"
                         : "kept in an unknown way";
}

static int decode_header(epoch_keys *r, const unsigned char h[HEADER_BYTES], const seal_wrapper *wrap, char *err,
                         size_t errlen)
{
    if (memcmp(h, MAGIC, 16) != 0) {
        snprintf(err, errlen, "%s is not a keyring of this KME's stores", r->path);
        return -1;
    }
    if (memcmp(h + 16, r->store_id, EPOCH_STORE_ID_BYTES) != 0) {
        snprintf(err, errlen, "%s is the keyring of another store, not of the data.mdb beside it", r->path);
        return -1;
    }
    char kind = (char)h[32], wanted = wrap ? wrap->kind : 'N';
    size_t len = h[33];
    if (kind != wanted) {
        snprintf(err, errlen, "the data key in %s is %s, but the configuration's store_key says %s", r->path,
                 kept_by(kind), wrap ? wrap->what : "none-insecure");
        return -1;
    }
    unsigned char key[SEAL_KEY_BYTES];
    if (!wrap) {
        if (len != SEAL_KEY_BYTES) {
            snprintf(err, errlen, "%s holds a damaged data key", r->path);
            return -1;
        }
        memcpy(key, h + 34, SEAL_KEY_BYTES);
    } else {
        char why[256] = "";
        if (len == 0 || len > SEAL_WRAPPED_MAX || wrap->unwrap(wrap->ctx, h + 34, len, key, why, sizeof why) < 0) {
            snprintf(err, errlen,
                     "cannot unwrap the data key in %s with %s: %s (a wrong key or token, or the store of another "
                     "site); nothing is served",
                     r->path, wrap->what, why[0] ? why : "damaged");
            return -1;
        }
    }
    int rc = seal_key_set(&r->data_key, key);
    OPENSSL_cleanse(key, sizeof key);
    if (rc < 0)
        snprintf(err, errlen, "cannot set up AES-256-GCM for the store");
    r->wrap_kind = kind;
    return rc;
}

/* ---- open and close -------------------------------------------------------------------- */

static void init(epoch_keys *r, const char *dir, const unsigned char store_id[EPOCH_STORE_ID_BYTES])
{
    memset(r, 0, sizeof *r);
    r->fd = -1;
    r->next_id = 1;
    snprintf(r->path, sizeof r->path, "%s/epochs", dir);
    memcpy(r->store_id, store_id, EPOCH_STORE_ID_BYTES);
    pthread_rwlock_init(&r->lock, NULL);
}

int epoch_keys_create(epoch_keys *r, const char *dir, const unsigned char store_id[EPOCH_STORE_ID_BYTES],
                      const seal_wrapper *wrap, char *err, size_t errlen)
{
    init(r, dir, store_id);
    unsigned char key[SEAL_KEY_BYTES], h[HEADER_BYTES];
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.new", r->path);
    if (RAND_priv_bytes(key, sizeof key) != 1) {
        snprintf(err, errlen, "cannot make the store's data key: no randomness");
        return -1;
    }
    int rc = encode_header(r, key, wrap, h, err, errlen);
    if (rc == 0 && seal_key_set(&r->data_key, key) < 0) {
        snprintf(err, errlen, "cannot set up AES-256-GCM for the store");
        rc = -1;
    }
    OPENSSL_cleanse(key, sizeof key);
    if (rc == 0) {
        unlink(tmp);
        int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        rc = fd < 0 || file_write_all_at(fd, h, sizeof h, 0) < 0 || fsync(fd) < 0 || rename(tmp, r->path) < 0 ||
                     file_sync_path(dir, O_RDONLY | O_DIRECTORY) < 0
                 ? -1
                 : 0;
        if (rc < 0) {
            snprintf(err, errlen, "cannot write %s: %s", r->path, strerror(errno));
            if (fd >= 0)
                close(fd);
            unlink(tmp);
        } else {
            r->fd = fd;
            r->wrap_kind = wrap ? wrap->kind : 'N';
        }
    }
    OPENSSL_cleanse(h, sizeof h);
    if (rc < 0)
        epoch_keys_close(r);
    return rc;
}

static int add_entry(epoch_keys *r, const epoch_entry *e)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 64;
        epoch_entry *n = malloc(cap * sizeof *n);
        if (!n)
            return -1;
        if (r->n)
            memcpy(n, r->entries, r->n * sizeof *n);
        OPENSSL_cleanse(r->entries, r->n * sizeof *n);
        free(r->entries);
        r->entries = n, r->cap = cap;
    }
    size_t i = r->n;
    while (i > 0 && r->entries[i - 1].id > e->id) {
        r->entries[i] = r->entries[i - 1];
        i--;
    }
    r->entries[i] = *e;
    r->n++;
    if (e->id >= r->next_id)
        r->next_id = e->id + 1;
    return 0;
}

static int mark_slot(epoch_keys *r, uint32_t slot, unsigned char used)
{
    if (slot >= r->nslots) {
        unsigned char *u = realloc(r->slot_used, (size_t)slot + 1);
        if (!u)
            return -1;
        memset(u + r->nslots, 0, slot + 1 - r->nslots);
        r->slot_used = u, r->nslots = slot + 1;
    }
    r->slot_used[slot] = used;
    return 0;
}

/* Reads every used slot into the table. */
static int load_slots(epoch_keys *r, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(r->fd, &st) < 0)
        return -1;
    uint32_t slots = st.st_size > HEADER_BYTES ? (uint32_t)((st.st_size - HEADER_BYTES) / SLOT_BYTES) : 0;
    unsigned char s[SLOT_BYTES], id[EPOCH_STORE_ID_BYTES + SLOT_BOUND], key[SEAL_KEY_BYTES];
    int rc = 0;
    for (uint32_t i = 0; i < slots && rc == 0; i++) {
        if (file_read_all_at(r->fd, s, sizeof s, slot_offset(i)) < 0) {
            snprintf(err, errlen, "cannot read %s: %s", r->path, strerror(errno));
            rc = -1;
            break;
        }
        if (s[0] == 0) {
            rc = mark_slot(r, i, 0);
            continue;
        }
        epoch_entry e;
        memset(&e, 0, sizeof e);
        e.cls = (char)s[1];
        e.id = store_get_be64(s + 8);
        e.bucket = store_get_be64(s + 16);
        e.slot = i;
        size_t plen = s[2] <= EPOCH_PEER_MAX ? s[2] : EPOCH_PEER_MAX;
        memcpy(e.peer, s + 24, plen);
        if (seal_open(&r->data_key, DB_EPOCH, id, slot_identity(r, s, id), s + SLOT_BOUND, SLOT_SEALED, key) < 0) {
            snprintf(err, errlen, "%s: the epoch key in slot %u does not authenticate (tampered or damaged)", r->path,
                     i);
            rc = -1;
        } else {
            rc = seal_key_set(&e.key, key) < 0 || mark_slot(r, i, 1) < 0 || add_entry(r, &e) < 0 ? -1 : 0;
            if (rc < 0) {
                seal_key_clear(&e.key);
                snprintf(err, errlen, "cannot load %s: out of memory", r->path);
            }
        }
    }
    OPENSSL_cleanse(s, sizeof s);
    OPENSSL_cleanse(key, sizeof key);
    return rc;
}

int epoch_keys_open(epoch_keys *r, const char *dir, const unsigned char store_id[EPOCH_STORE_ID_BYTES],
                    const seal_wrapper *wrap, char *err, size_t errlen)
{
    init(r, dir, store_id);
    r->fd = open(r->path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (r->fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s (the store's keyring: without it nothing of the store opens)",
                 r->path, strerror(errno));
        epoch_keys_close(r);
        return -1;
    }
    if (fstat(r->fd, &st) < 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077)) {
        snprintf(err, errlen, "%s must be a regular file readable by the KME alone (mode 0600)", r->path);
        epoch_keys_close(r);
        return -1;
    }
    unsigned char h[HEADER_BYTES];
    int rc = file_read_all_at(r->fd, h, sizeof h, 0) < 0 ? -1 : 0;
    if (rc < 0)
        snprintf(err, errlen, "%s is too short to be a keyring", r->path);
    else
        rc = decode_header(r, h, wrap, err, errlen);
    OPENSSL_cleanse(h, sizeof h);
    if (rc == 0)
        rc = load_slots(r, err, errlen);
    if (rc < 0)
        epoch_keys_close(r);
    return rc;
}

void epoch_keys_close(epoch_keys *r)
{
    if (!r->path[0])
        return; /* never opened, or closed already */
    for (size_t i = 0; i < r->n; i++)
        seal_key_clear(&r->entries[i].key);
    if (r->entries)
        OPENSSL_cleanse(r->entries, r->cap * sizeof *r->entries);
    free(r->entries);
    free(r->slot_used);
    seal_key_clear(&r->data_key);
    if (r->fd >= 0)
        close(r->fd);
    pthread_rwlock_destroy(&r->lock);
    r->entries = NULL, r->slot_used = NULL, r->fd = -1, r->n = r->cap = 0, r->nslots = 0;
    r->path[0] = '\0';
}

int epoch_keys_rewrap(epoch_keys *r, const seal_wrapper *wrap, char *err, size_t errlen)
{
    unsigned char h[HEADER_BYTES];
    pthread_rwlock_wrlock(&r->lock);
    int rc = encode_header(r, r->data_key.key, wrap, h, err, errlen);
    if (rc == 0 && (file_write_all_at(r->fd, h, sizeof h, 0) < 0 || fdatasync(r->fd) < 0)) {
        snprintf(err, errlen, "cannot write %s: %s", r->path, strerror(errno));
        rc = -1;
    }
    if (rc == 0)
        r->wrap_kind = wrap ? wrap->kind : 'N';
    pthread_rwlock_unlock(&r->lock);
    OPENSSL_cleanse(h, sizeof h);
    return rc;
}

/* ---- epochs ---------------------------------------------------------------------------- */

static epoch_entry *find_epoch(epoch_keys *r, const seal_epoch *ep)
{
    for (size_t i = r->n; i > 0; i--) {
        epoch_entry *e = &r->entries[i - 1];
        if (e->cls == ep->cls && e->bucket == ep->bucket && strcmp(e->peer, ep->peer) == 0)
            return e;
    }
    return NULL;
}

static epoch_entry *find_id(epoch_keys *r, uint64_t id)
{
    size_t lo = 0, hi = r->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->entries[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < r->n && r->entries[lo].id == id ? &r->entries[lo] : NULL;
}

/* A new epoch: its key made, sealed into a free slot and synced (write lock held). */
static epoch_entry *make_epoch(epoch_keys *r, const seal_epoch *ep)
{
    size_t plen = strlen(ep->peer);
    if (plen > EPOCH_PEER_MAX)
        return NULL;
    uint32_t slot = 0;
    while (slot < r->nslots && r->slot_used[slot])
        slot++;
    epoch_entry e;
    memset(&e, 0, sizeof e);
    e.id = r->next_id;
    e.cls = ep->cls;
    e.bucket = ep->bucket;
    memcpy(e.peer, ep->peer, plen);
    e.slot = slot;
    unsigned char s[SLOT_BYTES], id[EPOCH_STORE_ID_BYTES + SLOT_BOUND], key[SEAL_KEY_BYTES];
    memset(s, 0, sizeof s);
    s[0] = 1;
    s[1] = (unsigned char)e.cls;
    s[2] = (unsigned char)plen;
    store_put_be64(s + 8, e.id);
    store_put_be64(s + 16, e.bucket);
    memcpy(s + 24, ep->peer, plen);
    int ok = RAND_priv_bytes(key, sizeof key) == 1 &&
             seal_value(&r->data_key, DB_EPOCH, id, slot_identity(r, s, id), key, sizeof key, s + SLOT_BOUND) == 0 &&
             seal_key_set(&e.key, key) == 0 && mark_slot(r, slot, 1) == 0;
    OPENSSL_cleanse(key, sizeof key);
    /* Durable before any value sealed under it can be committed. */
    ok = ok && file_write_all_at(r->fd, s, sizeof s, slot_offset(slot)) == 0 && fdatasync(r->fd) == 0 &&
         add_entry(r, &e) == 0;
    if (!ok) {
        seal_key_clear(&e.key);
        if (slot < r->nslots)
            r->slot_used[slot] = 0;
        return NULL;
    }
    return find_id(r, e.id);
}

int epoch_keys_seal(epoch_keys *r, const seal_epoch *ep, const char *db, const void *id, size_t idlen,
                    const unsigned char *plain, size_t len, unsigned char *out)
{
    pthread_rwlock_rdlock(&r->lock);
    epoch_entry *e = find_epoch(r, ep);
    if (!e) {
        pthread_rwlock_unlock(&r->lock);
        pthread_rwlock_wrlock(&r->lock);
        e = find_epoch(r, ep);
        if (!e)
            e = make_epoch(r, ep);
    }
    int rc = -1;
    if (e) {
        store_put_be64(out, e->id);
        rc = seal_value(&e->key, db, id, idlen, plain, len, out + SEAL_EPOCH_BYTES);
    }
    pthread_rwlock_unlock(&r->lock);
    return rc;
}

int epoch_keys_open_value(epoch_keys *r, const char *db, const void *id, size_t idlen, const unsigned char *sealed,
                          size_t sealed_len, unsigned char *out)
{
    if (sealed_len < SEAL_OVERHEAD)
        return -1;
    pthread_rwlock_rdlock(&r->lock);
    epoch_entry *e = find_id(r, store_get_be64(sealed));
    int rc = e ? seal_open(&e->key, db, id, idlen, sealed + SEAL_EPOCH_BYTES, sealed_len - SEAL_EPOCH_BYTES, out) : -2;
    pthread_rwlock_unlock(&r->lock);
    if (rc == -2)
        OPENSSL_cleanse(out, sealed_len - SEAL_OVERHEAD);
    return rc;
}

int epoch_keys_merge_for_backup(const unsigned char *earlier, size_t elen, const unsigned char *later, size_t llen,
                                char cls, unsigned char **out, size_t *outlen)
{
    if (llen < HEADER_BYTES || memcmp(later, MAGIC, 16) != 0 || (elen >= 16 && memcmp(earlier, MAGIC, 16) != 0))
        return -1;
    size_t ne = elen > HEADER_BYTES ? (elen - HEADER_BYTES) / SLOT_BYTES : 0;
    size_t nl = (llen - HEADER_BYTES) / SLOT_BYTES;
    unsigned char *o = calloc(1, HEADER_BYTES + (ne + nl) * SLOT_BYTES);
    if (!o)
        return -1;
    memcpy(o, later, HEADER_BYTES);
    size_t n = 0;
    const unsigned char *reads[2] = {later, earlier};
    size_t counts[2] = {nl, ne};
    for (int r = 0; r < 2; r++)
        for (size_t i = 0; i < counts[r]; i++) {
            const unsigned char *slot = reads[r] + HEADER_BYTES + i * SLOT_BYTES;
            if (slot[0] == 0 || (char)slot[1] != cls)
                continue;
            int dup = 0;
            for (size_t j = 0; j < n && !dup; j++)
                dup = memcmp(o + HEADER_BYTES + j * SLOT_BYTES + 8, slot + 8, 8) == 0;
            if (!dup)
                memcpy(o + HEADER_BYTES + n++ * SLOT_BYTES, slot, SLOT_BYTES);
        }
    *out = o;
    *outlen = HEADER_BYTES + n * SLOT_BYTES;
    return 0;
}

int epoch_keys_list(epoch_keys *r, epoch_entry **out, size_t *n)
{
    pthread_rwlock_rdlock(&r->lock);
    *n = r->n;
    *out = malloc((r->n ? r->n : 1) * sizeof **out);
    if (*out)
        for (size_t i = 0; i < r->n; i++) {
            (*out)[i] = r->entries[i];
            memset(&(*out)[i].key, 0, sizeof(*out)[i].key);
        }
    pthread_rwlock_unlock(&r->lock);
    return *out ? 0 : -1;
}

int epoch_keys_erase(epoch_keys *r, const uint64_t *ids, size_t n)
{
    static const unsigned char zeros[SLOT_BYTES];
    pthread_rwlock_wrlock(&r->lock);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        epoch_entry *e = find_id(r, ids[i]);
        if (e && file_write_all_at(r->fd, zeros, sizeof zeros, slot_offset(e->slot)) < 0)
            rc = -1;
    }
    if (rc == 0 && n > 0 && fdatasync(r->fd) < 0)
        rc = -1;
    int erased = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        epoch_entry *e = find_id(r, ids[i]);
        if (!e)
            continue;
        r->slot_used[e->slot] = 0;
        seal_key_clear(&e->key);
        size_t at = (size_t)(e - r->entries);
        memmove(e, e + 1, (r->n - at - 1) * sizeof *e);
        r->n--;
        OPENSSL_cleanse(&r->entries[r->n], sizeof r->entries[r->n]);
        erased++;
    }
    r->erased += (uint64_t)erased;
    pthread_rwlock_unlock(&r->lock);
    return rc < 0 ? -1 : erased;
}

void epoch_keys_counts(epoch_keys *r, size_t *live, uint64_t *erased)
{
    pthread_rwlock_rdlock(&r->lock);
    *live = r->n;
    *erased = r->erased;
    pthread_rwlock_unlock(&r->lock);
}
