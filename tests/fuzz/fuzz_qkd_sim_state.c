/* Fuzzes qkd-sim's persistent state file (state_load in qkd-sim/qkd_sim.c:
 * the next seq as a decimal number) and its parse of block file names
 * (parse_block_name: "<seq>.key", ".<seq>.key.tmp"), the bytes it reads
 * back from disk. The key-file ingest of the KME (relay/link_worker.c) has
 * no parser beyond a size check of each <seq>.key file, so this is what
 * parses the key files' side of a link. The program is included whole, its
 * main renamed and its messages sent to /dev/null. A state that loads must
 * be stored and loaded again to the same seq. */
#include <stdint.h>
#include <stdio.h>

int qkd_sim_main(int argc, char **argv);
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FILE *quiet;
#define main qkd_sim_main
#undef stderr
#define stderr quiet
#include "qkd-sim/qkd_sim.c"
#undef stderr
#define stderr stderr
#undef main

/* The device mode (qkd-sim/device.c) is not linked: nothing here reaches it. */
int device_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return 2;
}

static char dir[64], path[96];
static struct state_file st;

static void cleanup(void)
{
    unlinkat(st.dirfd, st.base, 0);
    state_close(&st);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    quiet = fopen("/dev/null", "w");
    snprintf(dir, sizeof dir, "%s/fuzz_qkd_sim.XXXXXX", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!quiet || !mkdtemp(dir)) {
        perror("fuzz_qkd_sim_state");
        abort();
    }
    snprintf(path, sizeof path, "%s/%s", dir, STATE_NAME);
    if (state_open(&st, path) != 0)
        abort();
    atexit(cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char name[256];
    size_t n = size < sizeof name ? size : sizeof name - 1;
    memcpy(name, data, n);
    name[n] = '\0';
    uint64_t seq, next, again;
    int is_tmp;
    parse_block_name(name, &seq, &is_tmp);

    int fd = openat(st.dirfd, st.base, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, data, size) != (ssize_t)size || close(fd) != 0)
        abort();
    if (state_load(&st, path, &next) != 0)
        return 0;
    if (next == 0 || state_store(&st, path, next) != 0 || state_load(&st, path, &again) != 0 || again != next)
        abort();
    return 0;
}
