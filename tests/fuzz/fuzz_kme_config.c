/* Fuzzes the KME's configuration loader (kme_config_load, kme/config.h),
 * which reads a file: the input is written to a memfd once per run and
 * loaded through /proc/self/fd. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
#include "kme/config.h"
#include "runtime/json_wipe.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    json_use_wiping_allocator();
    fd = memfd_create("fuzz_kme_config", MFD_CLOEXEC);
    if (fd < 0) {
        perror("memfd_create");
        abort();
    }
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size))
        abort();
    static kme_config c;
    char err[512];
    if (kme_config_load(path, &c, err, sizeof err) == 0) {
        if (!kme_config_live(&c))
            abort();
        kme_config_free(&c);
    }
    return 0;
}
